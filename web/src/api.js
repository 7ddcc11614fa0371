// The page's only way to the data: GET /v1/<method> on the server that served it (the public JSON
// API, so every number shown can be checked with curl). Also the "cannot reach cascaded" banner and
// the polling loop every live panel uses, because both hinge on telling the two kinds of failure apart:
//   ApiError      the server answered with an error ({"error":{"code","message"}}): show its message;
//   NetworkError  no answer at all (server down, restarting): show the banner and keep retrying.

export class ApiError extends Error {
  constructor(code, message, method) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.method = method;
  }
}

export class NetworkError extends Error {
  constructor(message) {
    super(message);
    this.name = 'NetworkError';
  }
}

// --- connection state: the banner and the "live" indicator in the top bar ---------------------

let lastOk = 0;
let down = false;

function banner() {
  return document.getElementById('banner');
}

function markDown(reason) {
  if (!down) {
    down = true;
    const b = banner();
    if (b) {
      b.textContent = `Cannot reach cascaded at ${location.origin}, retrying… (${reason})`;
      b.hidden = false;
    }
  }
}

function markUp() {
  lastOk = Date.now();
  if (down) {
    down = false;
    const b = banner();
    if (b) b.hidden = true;
  }
}

// The top bar's dot: green while answers keep coming, grey when the last one is old.
setInterval(() => {
  const el = document.getElementById('live');
  if (!el) return;
  const age = lastOk ? Date.now() - lastOk : Infinity;
  const state = down ? 'down' : age < 5000 ? 'live' : 'idle';
  el.dataset.state = state;
  el.textContent = state === 'down' ? 'offline' : state === 'live' ? 'live' : lastOk ? 'idle' : '';
}, 500);

// --- access token ------------------------------------------------------------------------------
// A cascaded started with --auth-token-file serves this page openly but answers /v1 with 401
// unless the request carries "Authorization: Bearer TOKEN". The page then asks for the token once
// and keeps it for the browser tab only (sessionStorage), never in the URL.
const TOKEN_KEY = 'cascaded.token';

export function authHeaders() {
  let t = null;
  try {
    t = sessionStorage.getItem(TOKEN_KEY);
  } catch {}
  return t ? { authorization: `Bearer ${t}` } : {};
}

function askToken(message) {
  if (document.getElementById('auth-form')) return;
  const form = document.createElement('form');
  form.id = 'auth-form';
  form.className = 'auth-form';
  form.innerHTML =
    '<strong>This cascaded needs an access token.</strong> <span class="auth-msg"></span>' +
    '<label class="sr-only" for="auth-token">Access token</label>' +
    '<input id="auth-token" type="password" autocomplete="current-password" placeholder="token" required>' +
    '<button type="submit" class="btn">Use token</button>';
  form.querySelector('.auth-msg').textContent = `(${message})`;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    try {
      sessionStorage.setItem(TOKEN_KEY, form.querySelector('input').value.trim());
    } catch {}
    form.remove();
    window.dispatchEvent(new CustomEvent('cascaded:reload'));
  });
  document.querySelector('.topbar')?.after(form);
  form.querySelector('input').focus();
}

// Downloads (GraphML, DOT) are plain links; with a token they must carry the header, so the
// file is fetched here and handed to the browser as a blob.
export async function download(url, filename) {
  const res = await fetch(url, { headers: authHeaders(), cache: 'no-store' });
  if (!res.ok) throw new ApiError(res.status, `${url}: HTTP ${res.status}`);
  const href = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement('a'), { href, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}

// --- requests ----------------------------------------------------------------------------------

export function apiUrl(method, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
  const q = qs.toString();
  return `/v1/${method}${q ? `?${q}` : ''}`;
}

export async function api(method, params = {}, { signal } = {}) {
  const url = apiUrl(method, params);
  let res, text;
  try {
    res = await fetch(url, { signal, cache: 'no-store', headers: { accept: 'application/json', ...authHeaders() } });
    text = await res.text();
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    markDown(e.message || 'network error');
    throw new NetworkError(`cannot reach cascaded at ${location.origin}`);
  }
  // A proxy in front of cascaded (or the dev server) answers 502/504 when cascaded is gone.
  if (res.status === 502 || res.status === 504) {
    markDown(`HTTP ${res.status}`);
    throw new NetworkError(`cannot reach cascaded at ${location.origin}`);
  }
  markUp();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(res.status, `${url}: HTTP ${res.status}, and the answer is not JSON`, method);
  }
  if (!res.ok || (body && typeof body === 'object' && !Array.isArray(body) && body.error && res.status >= 400)) {
    const msg = body && body.error && body.error.message ? body.error.message : `HTTP ${res.status}`;
    if (res.status === 401) askToken(msg);
    throw new ApiError(body?.error?.code ?? res.status, msg, method);
  }
  return body;
}

// "unknown method X": the server predates that method (actor_links, actor_cascades are newer).
export function isUnknownMethod(e) {
  return e instanceof ApiError && e.code === 404 && /unknown method/i.test(e.message);
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

// Calls fn until it does not fail with a NetworkError (the banner says we are retrying).
export async function retrying(fn, signal, delay = 2000) {
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof NetworkError) || signal?.aborted) throw e;
      await sleep(delay, signal);
      if (signal?.aborted) throw new DOMException('aborted', 'AbortError');
    }
  }
}

// Runs `tick` now and then again `interval` ms after each run ends (never two at once, so a slow
// server is not flooded). `tick` may return a number: the delay before the next run. Errors other
// than network errors are the tick's business; network errors just mean "try again later".
// Hidden tabs poll 5x slower: nobody is looking, and the server has better things to do.
export function poll(tick, interval, signal) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    if (signal.aborted) return;
    running = true;
    let next = interval;
    try {
      const r = await tick();
      if (typeof r === 'number') next = r;
    } catch (e) {
      if (e.name === 'AbortError' || signal.aborted) return;
      if (!(e instanceof NetworkError)) console.error(e);
    } finally {
      running = false;
    }
    if (signal.aborted) return;
    if (again) {
      again = false;
      next = 0;
    } else if (document.hidden) next *= 5;
    timer = setTimeout(run, next);
  };
  signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  run();
  // Run at once when asked (a control changed) instead of waiting for the timer; if a run is in
  // flight, the next one starts as soon as it ends (never two at once).
  return {
    now() {
      if (running) again = true;
      else {
        clearTimeout(timer);
        run();
      }
    },
  };
}
