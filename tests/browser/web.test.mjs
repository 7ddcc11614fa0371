#!/usr/bin/env node
// Browser test of cascaded's web view: starts the real cascaded (ports picked by the kernel),
// replays tests/data/sample.ndjson.gz, and drives Debian's Chromium (/usr/bin/chromium) with
// playwright-core from web/node_modules through the overview, a cascade, an unknown post, an
// actor, live updates while events stream in, and the "cannot reach cascaded" banner. Every
// figure checked is compared with what the /v1 API answers to the test itself.
//
// Run by hand from the repository's top directory (after `make`, and `npm ci` in web/):
//
//   node tests/browser/web.test.mjs build build/tools /tmp/web-artifacts
//
// Arguments: the directory of the cascaded binary, the directory of cascade-replay, and where
// to write screenshots (overview.png, cascade.png, actor.png, error.png, offline.png). The page
// under test is the one embedded in that cascaded binary. Prints one line per check and a final
// line "N passed, M failed"; exits 0 only when nothing failed. The server and the browser are
// stopped by PID on every exit path.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const [binDir, toolsDir, artifacts] = process.argv.slice(2).map((p) => p && resolve(p));
if (!binDir || !toolsDir || !artifacts) {
  console.error('usage: node tests/browser/web.test.mjs <cascaded dir> <tools dir> <artifacts dir>');
  process.exit(2);
}
const require = createRequire(join(repo, 'web/package.json'));
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error(`cannot load playwright-core from ${repo}/web/node_modules (run \`npm ci\` in web/): ${e.message}`);
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing (apt-get install -y chromium)`);
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const work = mkdtempSync(join(tmpdir(), 'cascaded-web-test-'));
let server = null;
let context = null;
let passed = 0;
let failed = 0;

function cleanup() {
  if (server && server.exitCode === null && server.signalCode === null) {
    try {
      process.kill(server.pid, 'SIGKILL');
    } catch {}
  }
  try {
    rmSync(work, { recursive: true, force: true });
  } catch {}
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'])
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });

async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message.split('\n').slice(0, 6).join('\n     ')}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Retries fn until it returns without throwing, or the time is up (the page polls the API, so
// what it shows may lag by a second or two).
async function eventually(fn, ms = 6000, step = 200) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, step));
    }
  }
}

function run(cmd, args) {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${cmd} exited ${code}: ${out.slice(-500)}`))));
  });
}

async function startServer(extra = [], dataDir = join(work, 'data')) {
  const bin = join(binDir, 'cascaded');
  server = spawn(bin, ['--bind', '127.0.0.1', '--ingest-port', '0', '--query-port', '0', '--http-port', '0', '--data-dir', dataDir, '--analytics-interval', '0', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  server.stderr.on('data', (d) => (log = (log + d).slice(-4000)));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`cascaded did not print "ready" in 10 s; stderr: ${log}`)), 10000);
    server.on('error', (e) => reject(new Error(`cannot start ${bin}: ${e.message}`)));
    server.on('exit', (code) => reject(new Error(`cascaded exited ${code} before ready; stderr: ${log}`)));
    createInterface({ input: server.stdout }).on('line', (line) => {
      const m = /^ready ingest=(\d+) query=(\d+) http=(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ ingest: +m[1], query: +m[2], http: +m[3] });
      }
    });
  });
}

const ports = await startServer().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
const base = `http://127.0.0.1:${ports.http}`;
console.log(`cascaded pid ${server.pid}: ${base}`);

// init: fetch's options (state-changing calls are POSTs with a JSON Content-Type, DESIGN §5)
async function api(path, init) {
  const r = await fetch(`${base}${path}`, init);
  const body = await r.json();
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${JSON.stringify(body)}`);
  return body;
}

try {
  const replay = join(toolsDir, 'cascade-replay');
  await run(replay, ['--port', String(ports.ingest), join(repo, 'tests/data/sample.ndjson.gz')]);
  await api('/v1/analytics?refresh=true', { method: 'POST', headers: { 'Content-Type': 'application/json' } });
  await eventually(async () => assert((await api('/v1/analytics')).snapshot_age_ms !== null, 'analytics not done'), 15000);

  context = await chromium.launchPersistentContext(join(work, 'profile'), {
    headless: true,
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const ready = () => page.waitForSelector('body[data-ready="1"]', { timeout: 15000 });
  const attr = (sel, name) => page.getAttribute(sel, name);

  await check('the bundle is embedded (not the fallback page)', async () => {
    const r = await fetch(`${base}/assets/app.js`);
    assert(r.ok, `/assets/app.js: HTTP ${r.status}: was cascaded built with web/node_modules present?`);
    assert(/javascript/.test(r.headers.get('content-type')), `content-type ${r.headers.get('content-type')}`);
  });

  // --- overview -------------------------------------------------------------------------------
  await page.goto(`${base}/`);
  await check('overview renders', ready);
  await check('counters equal /v1/stats', async () => {
    await eventually(async () => {
      const s = await api('/v1/stats');
      for (const name of ['posts', 'cascades', 'actors', 'rejected']) {
        const v = await attr(`[data-testid="stat-${name}"]`, 'data-value');
        assert(v === String(s[name]), `stat-${name}: page ${v}, API ${s[name]}`);
        const text = (await page.textContent(`[data-testid="stat-${name}"]`)).replace(/[,\s]/g, '');
        assert(text === String(s[name]), `stat-${name} text ${text}, API ${s[name]}`);
      }
      const rate = await attr('[data-testid="stat-rate"]', 'data-value');
      assert(Number.isFinite(Number(rate)) && rate !== '', `stat-rate data-value ${rate}`);
    });
  });
  await check('viral now rows equal /v1/top_cascades?by=growth', async () => {
    await eventually(async () => {
      const list = '[data-testid="viral-list"]';
      const win = await attr(list, 'data-window');
      const limit = await attr(list, 'data-limit');
      assert(win && limit, `viral list has no data-window/data-limit (${win}, ${limit})`);
      const want = (await api(`/v1/top_cascades?by=growth&window_ms=${win}&limit=${limit}`)).map((r) => r.root);
      const got = await page.$$eval('[data-testid="viral-row"]', (rows) => rows.map((r) => r.dataset.post));
      assert(want.length > 0, 'the API lists no cascade in the window');
      assert(JSON.stringify(got) === JSON.stringify(want), `page ${JSON.stringify(got)}\n API ${JSON.stringify(want)}`);
    });
  });
  await check('label charts drawn', async () => {
    const labels = await api('/v1/labels');
    await eventually(async () => {
      const rows = await page.$$eval('svg.chart', (svgs) => svgs[0].querySelectorAll('g.row').length);
      assert(rows === labels.length, `first chart has ${rows} rows, /v1/labels ${labels.length}`);
    });
  });
  await check('size-matched comparison: false against true, each p as /v1/labels_matched gives it, p < 0.05 marked', async () => {
    const want = await api('/v1/labels_matched?a=false&b=true');
    assert(want.length === 5 && want[0].a_cascades > 0 && want[0].b_cascades > 0, `the sample has no false and true cascades: ${JSON.stringify(want[0])}`);
    const exp = want.map((r) => [r.metric, r.p_matched === null ? '' : String(r.p_matched), r.p_unmatched === null ? '' : String(r.p_unmatched)]);
    await eventually(async () => {
      const got = await page.$$eval('[data-testid="matched-row"]', (rows) =>
        rows.map((r) => [r.dataset.metric, r.querySelector('[data-testid="p-matched"]').dataset.p, r.querySelector('[data-testid="p-unmatched"]').dataset.p]),
      );
      assert(JSON.stringify(got) === JSON.stringify(exp), `page ${JSON.stringify(got)}\n API ${JSON.stringify(exp)}`);
      const marked = await page.$$eval('[data-testid="matched"] .significant', (els) => els.length);
      const sig = want.reduce((n, r) => n + (r.p_matched !== null && r.p_matched < 0.05) + (r.p_unmatched !== null && r.p_unmatched < 0.05), 0);
      assert(marked === sig, `${marked} p values marked significant, ${sig} below 0.05`);
    });
  });
  await page.screenshot({ path: join(artifacts, 'overview.png') });

  // --- a cascade ------------------------------------------------------------------------------
  const [big] = await api('/v1/top_cascades?by=size&limit=1');
  const nodes = big.size + big.missing;
  await page.goto(`${base}/ui/cascade/${encodeURIComponent(big.root)}`);
  await check(`cascade ${big.root} renders`, ready);
  await check('legend and canvas count size + missing nodes', async () => {
    const legend = '[data-testid="cascade-legend"]';
    assert((await attr(legend, 'data-nodes')) === String(nodes), `legend data-nodes ${await attr(legend, 'data-nodes')}, API ${nodes}`);
    assert((await attr(legend, 'data-posts')) === String(big.size), `legend data-posts ${await attr(legend, 'data-posts')}, API size ${big.size}`);
    const text = (await page.textContent(legend)).replace(/,/g, '');
    assert(text.includes(`${big.size} posts`), `legend reads "${text}"`);
    await eventually(async () => {
      const drawn = await attr('[data-testid="cascade-canvas"]', 'data-drawn');
      assert(drawn === String(nodes), `canvas data-drawn ${drawn}, API ${nodes}`);
    });
  });
  await check('metrics equal /v1/cascade', async () => {
    for (const k of ['size', 'missing', 'depth', 'max_breadth', 'structural_virality', 'unique_actors', 'first_ts', 'last_ts']) {
      const v = await attr(`[data-testid="metric-${k}"]`, 'data-value');
      assert(v === String(big[k]), `metric-${k}: page ${v}, API ${big[k]}`);
    }
  });
  await page.screenshot({ path: join(artifacts, 'cascade.png') });
  await check('time slider replays the growth (keyboard: Home, End)', async () => {
    const slider = page.locator('[data-testid="time-slider"]');
    await slider.focus();
    await page.keyboard.press('Home');
    await eventually(async () => {
      const drawn = Number(await attr('[data-testid="cascade-canvas"]', 'data-drawn'));
      assert(drawn > 0 && drawn < nodes, `at the start ${drawn} of ${nodes} nodes drawn`);
    });
    await page.keyboard.press('End');
    await eventually(async () => {
      const drawn = Number(await attr('[data-testid="cascade-canvas"]', 'data-drawn'));
      assert(drawn === nodes, `at the end ${drawn} of ${nodes} nodes drawn`);
    });
  });
  await check('tree layout and depth colours redraw every node', async () => {
    await page.check('[data-testid="layout-tree"]');
    await page.check('[data-testid="colour-depth"]');
    await page.waitForTimeout(200);
    const drawn = await attr('[data-testid="cascade-canvas"]', 'data-drawn');
    assert(drawn === String(nodes), `tree layout: ${drawn} of ${nodes} nodes drawn`);
    await page.screenshot({ path: join(artifacts, 'cascade-tree.png') });
    await page.check('[data-testid="layout-radial"]');
    await page.check('[data-testid="colour-time"]');
  });
  await check('path to the root of a deep post equals /v1/path', async () => {
    const tree = await api(`/v1/cascade?post=${encodeURIComponent(big.root)}&tree=true`);
    const deepest = tree.nodes[tree.nodes.length - 1].post;
    const path = await api(`/v1/path?post=${encodeURIComponent(deepest)}`);
    await page.fill('#path-post', deepest);
    await page.press('#path-post', 'Enter');
    await eventually(async () => {
      const got = await page.$$eval('[data-testid="path"] li', (lis) => lis.map((li) => li.dataset.post));
      assert(JSON.stringify(got) === JSON.stringify(path.map((p) => p.post)), `page ${JSON.stringify(got)}, API ${JSON.stringify(path.map((p) => p.post))}`);
    });
  });
  await check('download links point at GraphML and DOT', async () => {
    for (const f of ['graphml', 'dot']) {
      const href = await attr(`[data-testid="download-${f}"]`, 'href');
      const r = await fetch(new URL(href, base));
      const body = await r.text();
      assert(r.ok && body.length > 100, `${href}: HTTP ${r.status}, ${body.length} bytes`);
      assert(f === 'dot' ? /digraph/.test(body) : /<graphml/.test(body), `${href} is not ${f}`);
    }
  });

  // --- an unknown post ------------------------------------------------------------------------
  await page.goto(`${base}/ui/cascade/does-not-exist`);
  await check('unknown post shows the API error message', async () => {
    const r = await fetch(`${base}/v1/cascade?post=does-not-exist`);
    const { error } = await r.json();
    await page.waitForSelector('[data-testid="error"]', { timeout: 10000 });
    const text = (await page.textContent('[data-testid="error"]')).trim();
    assert(r.status === 404, `API status ${r.status}`);
    assert(text === error.message, `page says "${text}", API "${error.message}"`);
  });
  await page.screenshot({ path: join(artifacts, 'error.png') });

  // --- an actor -------------------------------------------------------------------------------
  const [top] = await api('/v1/top_actors?by=reach&limit=1');
  await page.goto(`${base}/ui/actor/${encodeURIComponent(top.id)}`);
  await check(`actor ${top.id} renders`, ready);
  await check('actor metrics equal /v1/actor', async () => {
    const a = await api(`/v1/actor?id=${encodeURIComponent(top.id)}`);
    for (const k of ['posts', 'roots', 'shares', 'reshares_received', 'amplifiers', 'reach', 'cascades', 'first_ts', 'last_ts', 'pagerank']) {
      const v = await attr(`[data-testid="metric-${k}"]`, 'data-value');
      const want = a[k] === null ? '' : String(a[k]);
      assert(v === want, `metric-${k}: page ${v}, API ${a[k]}`);
    }
  });
  await check('ego network, cascades and coordination panels settle', async () => {
    await page.waitForSelector('svg.ego, .ego-box .empty', { timeout: 10000 });
    await page.waitForSelector('[data-testid="coordination-none"], [data-testid="coordination-group"], .coord-box .empty', { timeout: 10000 });
  });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(artifacts, 'actor.png'), fullPage: true });

  // --- live updates ---------------------------------------------------------------------------
  await page.goto(`${base}/`);
  await ready();
  await check('counters and viral now follow new events without a reload', async () => {
    await page.evaluate(() => (window.__sameDocument = true));
    const before = await api('/v1/stats');
    // A fresh cascade at the newest event time: it must become the top "viral now" row.
    const t = before.newest_ts + 1000;
    const lines = [JSON.stringify({ post: 'live-r0', actor: 'live-a0', ts: t, content: 'https://live.example/1', label: 'false' })];
    for (let i = 1; i <= 400; i++)
      lines.push(JSON.stringify({ post: `live-r${i}`, actor: `live-a${i % 97}`, ts: t + i * 50, parent: `live-r${Math.floor((i - 1) / 3)}` }));
    const file = join(work, 'live.ndjson');
    writeFileSync(file, lines.join('\n') + '\n');
    await run(replay, ['--port', String(ports.ingest), file]);
    const after = await api('/v1/stats');
    assert(after.posts === before.posts + 401, `API posts ${before.posts} -> ${after.posts}`);
    await eventually(async () => {
      const v = await attr('[data-testid="stat-posts"]', 'data-value');
      assert(v === String(after.posts), `stat-posts ${v}, API ${after.posts}`);
      const first = await attr('[data-testid="viral-row"]', 'data-post');
      assert(first === 'live-r0', `first viral row ${first}, expected live-r0`);
    }, 5000);
    assert(await page.evaluate(() => window.__sameDocument === true), 'the page reloaded');
  });

  await check('no uncaught errors in the page', async () => {
    assert(pageErrors.length === 0, pageErrors.join('\n'));
  });

  // --- server gone ----------------------------------------------------------------------------
  await check('"cannot reach cascaded" banner when the server stops', async () => {
    process.kill(server.pid, 'SIGTERM');
    await page.waitForSelector('[data-testid="offline-banner"]:not([hidden])', { timeout: 8000 });
    const text = await page.textContent('[data-testid="offline-banner"]');
    assert(/cannot reach cascaded at/i.test(text) && /retrying/i.test(text), `banner reads "${text}"`);
    await page.screenshot({ path: join(artifacts, 'offline.png') });
  });

  // --- a server with --auth-token-file ---------------------------------------------------------
  await check('with --auth-token-file: the page asks for the token, then shows the data', async () => {
    const token = 'browser-test-token-0123456789';
    const tokenFile = join(work, 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    await new Promise((r) => (server.exitCode !== null || server.signalCode !== null ? r() : server.once('exit', r)));
    const p2 = await startServer(['--auth-token-file', tokenFile], join(work, 'data-auth'));
    const denied = await fetch(`http://127.0.0.1:${p2.http}/v1/stats`);
    assert(denied.status === 401, `/v1/stats without the token: HTTP ${denied.status}`);
    await page.goto(`http://127.0.0.1:${p2.http}/`);
    await page.waitForSelector('#auth-form input', { timeout: 8000 });
    await page.screenshot({ path: join(artifacts, 'token.png') });
    await page.fill('#auth-form input', token);
    await page.click('#auth-form button');
    await page.waitForSelector('body[data-ready="1"]', { timeout: 15000 });
    await eventually(async () => {
      const posts = await page.getAttribute('[data-testid="stat-posts"]', 'data-value');
      assert(posts === '0', `posts counter reads ${posts} on an empty server`);
    });
    assert((await page.$('#auth-form')) === null, 'the token form is still there');
  });
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${e.stack || e.message}`);
} finally {
  if (context) await context.close().catch(() => {});
  cleanup();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
