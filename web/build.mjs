#!/usr/bin/env node
// Builds cascaded's web view into exactly three files: DIR/index.html, DIR/app.js, DIR/app.css.
//
//   node web/build.mjs --outdir DIR        (from any directory; needs `npm ci` in web/ first)
//
// The server embeds these three files and serves index.html for /, /ui and /ui/*; index.html
// therefore names its assets by absolute paths (/assets/app.js, /assets/app.css) so that deep
// links under /ui/... load them too. app.js is one minified IIFE with the d3 modules bundled in
// (nothing is fetched from a CDN: the page works offline); no source maps are written.
// Exits non-zero with a message on any failure.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function fail(msg) {
  console.error(`build.mjs: ${msg}`);
  process.exit(1);
}

function parseArgs(argv) {
  let outdir = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--outdir') outdir = argv[++i];
    else if (a.startsWith('--outdir=')) outdir = a.slice('--outdir='.length);
    else if (a === '--help' || a === '-h') {
      console.log('usage: node build.mjs --outdir DIR');
      process.exit(0);
    } else fail(`unknown argument ${a} (usage: node build.mjs --outdir DIR)`);
  }
  if (!outdir) fail('missing --outdir DIR (usage: node build.mjs --outdir DIR)');
  return { outdir: resolve(outdir) };
}

async function main() {
  const { outdir } = parseArgs(process.argv.slice(2));
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch (e) {
    fail(`cannot load esbuild (${e.message}); run \`npm ci\` in ${here} first`);
  }
  await mkdir(outdir, { recursive: true });
  const common = {
    bundle: true,
    minify: true,
    sourcemap: false,
    write: false,
    logLevel: 'silent',
    legalComments: 'eof',
    absWorkingDir: here,
  };
  let js, css;
  try {
    [js, css] = await Promise.all([
      esbuild.build({
        ...common,
        entryPoints: [join(here, 'src/main.js')],
        format: 'iife',
        target: ['es2020'],
        outfile: join(outdir, 'app.js'),
      }),
      esbuild.build({
        ...common,
        entryPoints: [join(here, 'src/app.css')],
        outfile: join(outdir, 'app.css'),
      }),
    ]);
  } catch (e) {
    // esbuild's error carries file:line:column for each problem; print them all.
    const lines = (e.errors || []).map(
      (m) => `${m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : ''}${m.text}`,
    );
    fail(`esbuild failed\n${lines.join('\n') || e.message}`);
  }
  const html = await readFile(join(here, 'src/index.html'), 'utf8');
  if (!html.includes('/assets/app.js') || !html.includes('/assets/app.css'))
    fail('src/index.html must reference /assets/app.js and /assets/app.css');
  const outputs = [
    ['index.html', html],
    ['app.js', js.outputFiles[0].contents],
    ['app.css', css.outputFiles[0].contents],
  ];
  for (const [name, contents] of outputs) await writeFile(join(outdir, name), contents);
  const size = (c) => (typeof c === 'string' ? Buffer.byteLength(c) : c.length);
  console.log(outputs.map(([n, c]) => `${n} ${(size(c) / 1024).toFixed(1)} KiB`).join(', ') + ` -> ${outdir}`);
}

main().catch((e) => fail(e.stack || String(e)));
