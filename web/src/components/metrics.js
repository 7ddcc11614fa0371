// A grid of labelled figures (a cascade's or an actor's metrics). Each figure carries its raw API
// value in data-value and data-testid="metric-<field>", so that tests can compare it with the API;
// update() rewrites only the text that changed.
import { h, setText } from '../dom.js';

// defs: [{ key, label, fmt(value, record) -> string, help?, raw?(record) }]
export function createMetrics(defs) {
  const items = defs.map((d) => {
    const value = h('dd', { 'data-testid': `metric-${d.key}`, 'data-value': '' }, '—');
    return { d, value, el: h('div', { class: 'metric', title: d.help || null }, h('dt', {}, d.label), value) };
  });
  return {
    el: h('dl', { class: 'metrics' }, items.map((i) => i.el)),
    update(rec) {
      for (const { d, value } of items) {
        const raw = d.raw ? d.raw(rec) : rec[d.key];
        setText(value, d.fmt(raw, rec));
        const dv = raw === null || raw === undefined ? '' : String(raw);
        if (value.dataset.value !== dv) value.dataset.value = dv;
      }
    },
  };
}
