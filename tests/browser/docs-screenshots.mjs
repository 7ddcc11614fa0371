#!/usr/bin/env node
// Takes the README's screenshots of the web view (docs/web-overview.png, docs/web-cascade.png)
// from a running cascaded that has the sample loaded and analytics refreshed:
//
//   node tests/browser/docs-screenshots.mjs http://127.0.0.1:<http port> docs
//
// The cascade shot is the largest cascade, opened on its deepest post (so that the path to the
// root is shown). Uses playwright-core from web/node_modules and /usr/bin/chromium, like web.test.mjs.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const [base, out = join(repo, 'docs')] = process.argv.slice(2);
if (!base) {
  console.error('usage: node tests/browser/docs-screenshots.mjs <base url> [out dir]');
  process.exit(2);
}
const { chromium } = createRequire(join(repo, 'web/package.json'))('playwright-core');
const profile = mkdtempSync(join(tmpdir(), 'cascaded-shots-'));
const ctx = await chromium.launchPersistentContext(profile, {
  headless: true,
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  const api = async (p) => (await fetch(`${base}${p}`)).json();
  await page.goto(`${base}/?window_ms=86400000&limit=10&by=reach`);
  await page.waitForSelector('body[data-ready="1"]');
  await page.waitForTimeout(2500);
  await page.screenshot({ path: join(out, 'web-overview.png') });
  const [big] = await api('/v1/top_cascades?by=size&limit=1');
  const tree = await api(`/v1/cascade?post=${encodeURIComponent(big.root)}&tree=true`);
  const deepest = tree.nodes[tree.nodes.length - 1].post;
  await page.goto(`${base}/ui/cascade/${encodeURIComponent(deepest)}`);
  await page.waitForSelector('body[data-ready="1"]');
  await page.waitForSelector('[data-testid="path"]');
  await page.setViewportSize({ width: 1280, height: 940 });
  await page.waitForTimeout(1500);
  await page.screenshot({ path: join(out, 'web-cascade.png') });
  console.log(`wrote ${join(out, 'web-overview.png')} and ${join(out, 'web-cascade.png')}`);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
