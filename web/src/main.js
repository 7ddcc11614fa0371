// Entry point: client-side routing between the three pages.
//   /                      overview (live counters, viral now, top amplifiers, labels compared)
//   /ui/cascade/<post id>  one cascade's tree
//   /ui/actor/<actor id>   one actor and its ego network
// The server answers index.html for /, /ui and /ui/*, so deep links work on reload. Ids are
// percent-encoded in the path (they are arbitrary strings) and decoded here. Each page module
// exports mount(root, params, signal); aborting the signal stops its pollers and requests, which
// is how a page is left.
import { h, errorBox } from './dom.js';
import { mountOverview } from './pages/overview.js';
import { mountCascade } from './pages/cascade.js';
import { mountActor } from './pages/actor.js';

const root = document.getElementById('app');
let current = null; // AbortController of the page on screen

function parse(pathname) {
  if (pathname === '/' || pathname === '/ui' || pathname === '/ui/') return { page: 'overview' };
  const m = /^\/ui\/(cascade|actor)\/(.+)$/.exec(pathname);
  if (m) {
    let id;
    try {
      id = decodeURIComponent(m[2]);
    } catch {
      return { page: 'bad', message: `the id in ${pathname} is not valid percent-encoding` };
    }
    return { page: m[1], id };
  }
  return { page: 'bad', message: `no page at ${pathname}` };
}

function route() {
  if (current) current.abort();
  current = new AbortController();
  const { signal } = current;
  const r = parse(location.pathname);
  // Tests (and anyone scripting the page) wait for data-ready="1": set once a page shows its
  // first data, or an error it could not get past.
  delete document.body.dataset.ready;
  document.body.dataset.page = r.page;
  for (const a of document.querySelectorAll('[data-nav]'))
    a.setAttribute('aria-current', a.dataset.nav === r.page ? 'page' : 'false');
  root.replaceChildren();
  if (r.page === 'overview') mountOverview(root, {}, signal);
  else if (r.page === 'cascade') mountCascade(root, { post: r.id }, signal);
  else if (r.page === 'actor') mountActor(root, { id: r.id }, signal);
  else {
    document.title = 'Not found · cascaded';
    root.append(h('div', { class: 'page' }, h('h1', {}, 'Page not found'), errorBox(r.message, 'Try the overview.')));
    document.body.dataset.ready = '1';
  }
}

export function navigate(href) {
  if (href === location.pathname + location.search) return;
  history.pushState(null, '', href);
  route();
  window.scrollTo(0, 0);
}

// Same-origin links marked data-link change page without a reload; modified clicks (new tab,
// download) keep the browser's behaviour.
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[data-link]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  // getAttribute: an SVG <a>'s .href is not a string.
  const url = new URL(a.getAttribute('href'), location.href);
  if (url.origin !== location.origin) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', route);

// The top bar's "open by id" box: one field, a button for each kind of page.
document.getElementById('jump')?.addEventListener('submit', (e) => {
  e.preventDefault();
  const input = e.target.elements.id;
  const id = input.value.trim();
  if (!id) return input.focus();
  const kind = e.submitter?.value === 'actor' ? 'actor' : 'cascade';
  navigate(`/ui/${kind}/${encodeURIComponent(id)}`);
});

// Pages call this so that other modules can navigate without importing main.js (no cycles).
window.addEventListener('cascaded:navigate', (e) => navigate(e.detail));
window.addEventListener('cascaded:reload', route);

route();
