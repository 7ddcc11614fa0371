#!/usr/bin/env node
// Development server for the web view (a dev tool, not part of the product: cascaded itself embeds
// and serves the built files). It serves a build directory the way cascaded does and proxies the
// API to a running cascaded, so the pages can be worked on before/without rebuilding the server:
//
//   node web/build.mjs --outdir /tmp/web && \
//   node web/dev-server.mjs --dir /tmp/web --port 20080 --api http://127.0.0.1:7402
//
//   /assets/app.js, /assets/app.css   the built files (re-read on every request: rebuild and reload)
//   /, /ui, /ui/...                    index.html (client-side routing)
//   /v1/..., /metrics, /healthz        proxied to --api
// It listens on 127.0.0.1 only.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const dir = resolve(args.dir || 'dist');
const port = Number(args.port || 20080);
const api = new URL(args.api || 'http://127.0.0.1:7402');

// The same Content-Security-Policy cascaded sends (src/query/web.h), so that a violation shows here first.
const CSP =
  "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";
const types = { 'app.js': 'text/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' };

async function send(res, file, type) {
  try {
    const body = await readFile(join(dir, file));
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', 'content-security-policy': CSP });
    res.end(body);
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`dev-server: cannot read ${join(dir, file)}: ${e.message}\n`);
  }
}

function proxy(req, res) {
  const up = http.request(
    { host: api.hostname, port: api.port, path: req.url, method: req.method, headers: { ...req.headers, host: api.host } },
    (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    },
  );
  up.on('error', (e) => {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 502, message: `dev-server: cascaded at ${api.host} unreachable: ${e.message}` } }));
  });
  req.pipe(up);
}

http
  .createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path.startsWith('/v1/') || path === '/metrics' || path === '/healthz') return proxy(req, res);
    if (path === '/assets/app.js' || path === '/assets/app.css') {
      const f = path.slice('/assets/'.length);
      return send(res, f, types[f]);
    }
    if (path === '/' || path === '/ui' || path.startsWith('/ui/')) return send(res, 'index.html', 'text/html; charset=utf-8');
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  })
  .listen(port, '127.0.0.1', () => console.log(`dev-server: http://127.0.0.1:${port}/ (api ${api.origin}, files ${dir})`));
