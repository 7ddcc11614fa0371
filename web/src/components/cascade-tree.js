// A cascade's reshare tree on one <canvas>: thousands of posts stay fluid because nothing is a DOM
// node per post. d3-hierarchy lays the tree out (radial by default: cascades are shallow and very
// broad, a left-to-right tree is offered too), d3-zoom pans and zooms, a d3-quadtree finds the node
// under the pointer for tooltips and clicks. Every draw repaints the whole canvas from the layout
// (no incremental state to get wrong) and writes how many nodes it drew into data-drawn.
//
// Encoding:
//   colour  time since the root on a log scale (reshare delays are roughly log-normal: seconds,
//           minutes and hours all get their own hues), or depth (a toggle)
//   shape   square: a page; circle: an account, or an actor whose type was not fetched
//   hollow, dashed outline: a placeholder (a parent referred to but never received)
//   edges   share: solid; quote: dashed; reply: dotted
import { stratify, tree as d3tree } from 'd3-hierarchy';
import { zoom as d3zoom, zoomIdentity } from 'd3-zoom';
import { select } from 'd3-selection';
import { quadtree } from 'd3-quadtree';
import { interpolatePlasma, schemeTableau10 } from 'd3-scale-chromatic';
import { h } from '../dom.js';
import { isoTime, shortDuration } from '../format.js';

const R = 3.5; // node radius in layout units
const SPACING = 9; // minimum distance between neighbouring leaves
const LEVEL = 110; // distance between depths in the left-to-right tree
const TIME_BUCKETS = 48; // colours are batched: one canvas path per colour

export const timeColor = (f) => interpolatePlasma(0.02 + 0.8 * Math.max(0, Math.min(1, f)));
// Where a time falls on the colour scale: log of the delay after the root, in seconds.
export const timeFraction = (dt, span) => (span > 0 ? Math.log1p(Math.max(0, dt) / 1000) / Math.log1p(span / 1000) : 0);
export const depthColor = (d) => (d === 0 ? '#1f2a44' : schemeTableau10[(d - 1) % 10]);
const EDGE_DASH = { share: [], post: [], quote: [4, 3], reply: [1, 2.5] };

// Builds the hierarchy from the API's node list (root first, breadth-first). Nodes whose parent is
// not in the list (only possible when the list was truncated) are left out and counted.
export function buildTree(nodes) {
  const ids = new Set(nodes.map((n) => n.post));
  const kept = nodes.filter((n, i) => i === 0 || (n.parent !== null && ids.has(n.parent)));
  if (kept.length && kept[0].parent !== null) kept[0] = { ...kept[0], parent: null };
  const root = stratify()
    .id((d) => d.post)
    .parentId((d) => d.parent)(kept);
  // A placeholder has no time of its own (ts 0): it appears with its first known descendant.
  root.eachAfter((n) => {
    const d = n.data;
    let t = d.placeholder ? Infinity : d.ts;
    if (d.placeholder && n.children) for (const c of n.children) t = Math.min(t, c.t);
    n.t = t;
  });
  return { root, dropped: nodes.length - kept.length };
}

function layoutRadial(root) {
  const counts = [];
  root.each((n) => (counts[n.depth] = (counts[n.depth] || 0) + 1));
  // Ring spacing so that the busiest depth has room for its nodes around its circle.
  let ring = 60;
  counts.forEach((c, d) => {
    if (d > 0) ring = Math.max(ring, (c * SPACING) / (2 * Math.PI * d));
  });
  ring = Math.min(ring, 4000);
  d3tree()
    .size([2 * Math.PI, 1])
    .separation((a, b) => (a.parent === b.parent ? 1 : 2) / Math.max(1, a.depth))(root);
  root.each((n) => {
    const r = n.depth * ring;
    const a = n.x - Math.PI / 2;
    n.px = r * Math.cos(a);
    n.py = r * Math.sin(a);
  });
}

// Left to right. Cascades are far broader than deep, so the distance between depths stretches
// to the view's aspect ratio (at least LEVEL): otherwise "fit" shows a thin vertical sliver.
function layoutTree(root, aspect) {
  d3tree().nodeSize([SPACING, 1])(root);
  let x0 = Infinity,
    x1 = -Infinity;
  root.each((n) => {
    x0 = Math.min(x0, n.x);
    x1 = Math.max(x1, n.x);
  });
  const level = Math.max(LEVEL, Math.min(4000, ((x1 - x0) * aspect) / Math.max(1, root.height) / 1.15));
  root.each((n) => {
    n.px = n.depth * level;
    n.py = n.x;
  });
}

export function createCascadeTree({ onSelect, actorType = () => undefined } = {}) {
  const canvas = h('canvas', {
    class: 'tree-canvas',
    'data-testid': 'cascade-canvas',
    'data-drawn': '0',
    tabindex: '0',
    role: 'img',
    'aria-label': 'Reshare tree. Drag or use the arrow keys to pan, scroll or + and − to zoom, 0 to fit.',
  });
  const tip = h('div', { class: 'tree-tip', role: 'tooltip', hidden: true });
  const el = h('div', { class: 'tree-wrap' }, canvas, tip);

  let root = null;
  let nodes = []; // hierarchy nodes, breadth-first
  let colorBy = 'time';
  let layout = 'radial';
  let tmin = 0;
  let tmax = 0;
  let timeNow = Infinity;
  let transform = zoomIdentity;
  let selected = null;
  let pathSet = new Set();
  let qt = null; // quadtree over drawn nodes, rebuilt lazily
  let width = 0;
  let height = 0;
  let frame = 0;
  let hoverNode = null;

  const zoomer = d3zoom()
    .scaleExtent([0.005, 40])
    .on('zoom', (e) => {
      transform = e.transform;
      hideTip();
      request();
    });
  const sel = select(canvas).call(zoomer).on('dblclick.zoom', null);

  function request() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function colorOf(n) {
    if (colorBy === 'depth') return depthColor(n.depth);
    const f = Math.round(timeFraction(n.t - tmin, tmax - tmin) * TIME_BUCKETS) / TIME_BUCKETS;
    return timeColor(f);
  }

  function isDrawn(n) {
    return n.t <= timeNow;
  }

  function draw() {
    frame = 0;
    const ctx = canvas.getContext('2d');
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!root) return;
    ctx.setTransform(dpr * transform.k, 0, 0, dpr * transform.k, dpr * transform.x, dpr * transform.y);
    const k = transform.k;
    const drawn = nodes.filter(isDrawn);

    // Edges, one path per kind (a dash pattern per kind). Placeholder edges are dashed too.
    const byKind = new Map();
    for (const n of drawn) {
      if (!n.parent || !isDrawn(n.parent)) continue;
      const kind = n.data.placeholder || n.parent.data.placeholder ? 'placeholder' : n.data.kind || 'share';
      if (!byKind.has(kind)) byKind.set(kind, []);
      byKind.get(kind).push(n);
    }
    ctx.lineWidth = Math.max(0.6 / k, Math.min(1, 1.2 / k));
    ctx.strokeStyle = 'rgba(70, 80, 105, 0.38)';
    for (const [kind, list] of byKind) {
      const dash = kind === 'placeholder' ? [3, 3] : EDGE_DASH[kind] || [];
      ctx.setLineDash(dash.map((v) => v / k));
      ctx.beginPath();
      for (const n of list) edge(ctx, n.parent, n);
      ctx.stroke();
    }
    ctx.setLineDash([]);

    // The selected post's path to the root, on top of the other edges.
    if (pathSet.size) {
      ctx.strokeStyle = '#e4572e';
      ctx.lineWidth = 2.5 / k;
      ctx.beginPath();
      for (const n of drawn) if (pathSet.has(n.data.post) && n.parent && pathSet.has(n.parent.data.post)) edge(ctx, n.parent, n);
      ctx.stroke();
    }

    // Nodes, batched by colour and shape.
    const r = Math.max(R, 1.6 / k);
    const batches = new Map();
    const hollow = [];
    for (const n of drawn) {
      if (n.data.placeholder) {
        hollow.push(n);
        continue;
      }
      const page = actorType(n.data.actor) === 'page';
      const key = `${colorOf(n)}|${page ? 's' : 'c'}`;
      if (!batches.has(key)) batches.set(key, []);
      batches.get(key).push(n);
    }
    for (const [key, list] of batches) {
      const [color, shape] = key.split('|');
      ctx.fillStyle = color;
      ctx.beginPath();
      for (const n of list) {
        const rr = n.depth === 0 ? r * 2 : r;
        if (shape === 's') ctx.rect(n.px - rr, n.py - rr, 2 * rr, 2 * rr);
        else {
          ctx.moveTo(n.px + rr, n.py);
          ctx.arc(n.px, n.py, rr, 0, 2 * Math.PI);
        }
      }
      ctx.fill();
    }
    if (hollow.length) {
      ctx.fillStyle = '#ffffff';
      ctx.strokeStyle = '#5b6478';
      ctx.lineWidth = 1.2 / k;
      ctx.setLineDash([2 / k, 1.5 / k]);
      ctx.beginPath();
      for (const n of hollow) {
        const rr = n.depth === 0 ? r * 2 : r * 1.1;
        ctx.moveTo(n.px + rr, n.py);
        ctx.arc(n.px, n.py, rr, 0, 2 * Math.PI);
      }
      ctx.fill();
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // Root ring, selection and hover rings: screen-constant widths.
    ring(ctx, root, isDrawn(root) ? '#1f2a44' : null, r * 2 + 2.5 / k, 1.5 / k);
    if (selected && isDrawn(selected)) ring(ctx, selected, '#e4572e', (selected.depth ? r : 2 * r) + 4 / k, 2.5 / k);
    if (hoverNode && isDrawn(hoverNode)) ring(ctx, hoverNode, '#1f2a44', (hoverNode.depth ? r : 2 * r) + 3 / k, 1.5 / k);

    canvas.dataset.drawn = String(drawn.length);
  }

  function ring(ctx, n, color, rr, lw) {
    if (!color) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = lw;
    ctx.beginPath();
    ctx.arc(n.px, n.py, rr, 0, 2 * Math.PI);
    ctx.stroke();
  }

  function edge(ctx, a, b) {
    ctx.moveTo(a.px, a.py);
    if (layout === 'tree') {
      const mx = (a.px + b.px) / 2;
      ctx.bezierCurveTo(mx, a.py, mx, b.py, b.px, b.py);
    } else ctx.lineTo(b.px, b.py);
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = el.clientWidth;
    const hgt = el.clientHeight;
    if (!w || !hgt) return;
    const first = !width;
    width = w;
    height = hgt;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${hgt}px`;
    if (first) fit(false);
    request();
  }
  new ResizeObserver(resize).observe(el);

  function bounds() {
    let x0 = Infinity,
      y0 = Infinity,
      x1 = -Infinity,
      y1 = -Infinity;
    for (const n of nodes) {
      x0 = Math.min(x0, n.px);
      y0 = Math.min(y0, n.py);
      x1 = Math.max(x1, n.px);
      y1 = Math.max(y1, n.py);
    }
    return [x0, y0, x1, y1];
  }

  function fit() {
    if (!root || !width) return;
    const [x0, y0, x1, y1] = bounds();
    const pad = 24;
    const k = Math.min(4, (width - 2 * pad) / Math.max(1, x1 - x0 + 4 * R), (height - 2 * pad) / Math.max(1, y1 - y0 + 4 * R));
    const t = zoomIdentity
      .translate(width / 2, height / 2)
      .scale(k)
      .translate(-(x0 + x1) / 2, -(y0 + y1) / 2);
    sel.call(zoomer.transform, t);
  }

  function doLayout() {
    if (!root) return;
    if (layout === 'radial') layoutRadial(root);
    else layoutTree(root, width && height ? width / height : 1.6);
    qt = null;
    fit();
    request();
  }

  // --- pointer: tooltip on hover, select on click ------------------------------------------------
  function nodeAt(ev) {
    if (!root) return null;
    if (!qt)
      qt = quadtree()
        .x((n) => n.px)
        .y((n) => n.py)
        .addAll(nodes.filter(isDrawn));
    const rect = canvas.getBoundingClientRect();
    const [x, y] = transform.invert([ev.clientX - rect.left, ev.clientY - rect.top]);
    const radius = Math.max(2 * R, 8 / transform.k);
    return qt.find(x, y, radius) || null;
  }

  function hideTip() {
    tip.hidden = true;
    if (hoverNode) {
      hoverNode = null;
      request();
    }
  }

  function showTip(n, ev) {
    const d = n.data;
    const type = actorType(d.actor);
    tip.replaceChildren(
      h('div', { class: 'tip-title' }, d.placeholder ? `${d.post} (placeholder)` : d.post),
      h(
        'dl',
        {},
        h('dt', {}, 'actor'),
        h('dd', {}, d.actor ?? '— (never received)', type ? ` · ${type}` : ''),
        h('dt', {}, 'ts'),
        h('dd', {}, d.placeholder ? '— (placeholder)' : isoTime(d.ts)),
        h('dt', {}, 'depth'),
        h('dd', {}, String(n.depth)),
        h('dt', {}, 'kind'),
        h('dd', {}, d.kind ?? '—'),
        !d.placeholder && n.depth > 0 ? [h('dt', {}, 'after root'), h('dd', {}, `+${shortDuration(d.ts - tmin)}`)] : null,
        h('dt', {}, 'reshares'),
        h('dd', {}, String(n.children ? n.children.length : 0)),
      ),
    );
    tip.hidden = false;
    const rect = el.getBoundingClientRect();
    let x = ev.clientX - rect.left + 14;
    let y = ev.clientY - rect.top + 14;
    if (x + tip.offsetWidth > rect.width - 4) x = ev.clientX - rect.left - tip.offsetWidth - 14;
    if (y + tip.offsetHeight > rect.height - 4) y = ev.clientY - rect.top - tip.offsetHeight - 14;
    tip.style.transform = `translate(${Math.max(0, x)}px, ${Math.max(0, y)}px)`;
  }

  canvas.addEventListener('pointermove', (ev) => {
    const n = nodeAt(ev);
    canvas.style.cursor = n ? 'pointer' : 'grab';
    if (!n) return hideTip();
    if (n !== hoverNode) {
      hoverNode = n;
      request();
    }
    showTip(n, ev);
  });
  canvas.addEventListener('pointerleave', hideTip);
  canvas.addEventListener('click', (ev) => {
    const n = nodeAt(ev);
    if (n) onSelect?.(n.data.post);
  });
  canvas.addEventListener('keydown', (ev) => {
    const step = 60;
    const keys = {
      ArrowLeft: () => zoomer.translateBy(sel, step / transform.k, 0),
      ArrowRight: () => zoomer.translateBy(sel, -step / transform.k, 0),
      ArrowUp: () => zoomer.translateBy(sel, 0, step / transform.k),
      ArrowDown: () => zoomer.translateBy(sel, 0, -step / transform.k),
      '+': () => zoomer.scaleBy(sel, 1.4),
      '=': () => zoomer.scaleBy(sel, 1.4),
      '-': () => zoomer.scaleBy(sel, 1 / 1.4),
      0: () => fit(),
    };
    if (keys[ev.key]) {
      ev.preventDefault();
      keys[ev.key]();
    }
  });

  return {
    el,
    canvas,
    setData(tree) {
      root = tree.root;
      nodes = root.descendants();
      tmin = Infinity;
      tmax = -Infinity;
      for (const n of nodes)
        if (Number.isFinite(n.t)) {
          tmin = Math.min(tmin, n.t);
          tmax = Math.max(tmax, n.t);
        }
      if (!Number.isFinite(tmin)) tmin = tmax = 0;
      timeNow = Infinity;
      doLayout();
    },
    timeRange: () => [tmin, tmax],
    setTime(t) {
      timeNow = t;
      qt = null;
      request();
    },
    countAt(t) {
      let c = 0;
      for (const n of nodes) if (n.t <= t) c++;
      return c;
    },
    setColorBy(c) {
      colorBy = c;
      request();
    },
    setLayout(l) {
      if (l === layout) return;
      layout = l;
      doLayout();
    },
    select(post, pathPosts = []) {
      selected = nodes.find((n) => n.data.post === post) || null;
      pathSet = new Set(pathPosts);
      request();
    },
    redraw: request,
    fit,
    zoomBy: (f) => zoomer.scaleBy(sel, f),
    maxDepth: () => (root ? root.height : 0),
  };
}
