// Small DOM helpers: build elements declaratively and update text without touching unchanged
// nodes (live panels are refreshed every second or two and must never flicker).

// h('a', {href, class, dataset: {...}, onclick}, ...children)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

// Replace an element's children (used for panels that render a one-off state: error, empty).
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// Internal links: the router intercepts clicks on a[data-link] and uses history.pushState.
export function link(href, text, attrs = {}) {
  return h('a', { href, 'data-link': true, ...attrs }, text);
}

export const cascadeHref = (post) => `/ui/cascade/${encodeURIComponent(post)}`;
export const actorHref = (id) => `/ui/actor/${encodeURIComponent(id)}`;

export function errorBox(message, hint) {
  return h(
    'div',
    { class: 'error-box', role: 'alert' },
    h('strong', {}, 'Error: '),
    h('span', { 'data-testid': 'error' }, message),
    hint ? h('p', { class: 'muted' }, hint) : null,
  );
}

export function emptyBox(title, ...body) {
  return h('div', { class: 'empty' }, h('strong', {}, title), body.length ? h('p', {}, ...body) : null);
}
