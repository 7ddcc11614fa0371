// A table whose rows are keyed (a cascade's root, an actor's id) and updated in place: a refresh
// moves existing <tr>s into the new order and rewrites only the cells whose content changed, so a
// live list never blanks out or loses the keyboard focus on its links.
//
// columns: [{ title, cls, text(row) -> string } or { title, cls, node(row) -> Node, sig(row) -> string }]
import { h, setText } from '../dom.js';

export function createTable({ columns, key, rowAttrs = () => ({}), caption, empty = 'Nothing yet.' }) {
  const tbody = h('tbody');
  const emptyRow = h('tr', { class: 'empty-row' }, h('td', { colspan: columns.length }, empty));
  const table = h(
    'table',
    { class: 'data' },
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.cls || '', scope: 'col', title: c.help || null }, c.title)))),
    tbody,
  );
  const rows = new Map(); // key -> { tr, cells, sigs }

  function fill(entry, row) {
    columns.forEach((c, i) => {
      const td = entry.cells[i];
      if (c.text) setText(td, c.text(row));
      else {
        const sig = c.sig(row);
        if (entry.sigs[i] !== sig) {
          entry.sigs[i] = sig;
          td.replaceChildren(c.node(row));
        }
      }
    });
    for (const [k, v] of Object.entries(rowAttrs(row))) if (entry.tr.getAttribute(k) !== String(v)) entry.tr.setAttribute(k, v);
  }

  return {
    el: table,
    update(data) {
      const seen = new Set();
      let prev = null;
      for (const row of data) {
        const k = key(row);
        seen.add(k);
        let entry = rows.get(k);
        if (!entry) {
          const cells = columns.map((c) => h('td', { class: c.cls || '' }));
          entry = { tr: h('tr', {}, cells), cells, sigs: [] };
          rows.set(k, entry);
        }
        fill(entry, row);
        // Insert only when out of place: nodes already in order are not touched.
        const want = prev ? prev.nextSibling : tbody.firstChild;
        if (want !== entry.tr) tbody.insertBefore(entry.tr, want);
        prev = entry.tr;
      }
      for (const [k, entry] of rows)
        if (!seen.has(k)) {
          entry.tr.remove();
          rows.delete(k);
        }
      if (data.length === 0) {
        if (!emptyRow.isConnected) tbody.append(emptyRow);
      } else emptyRow.remove();
    },
    setEmpty(text) {
      setText(emptyRow.firstChild, text);
    },
  };
}
