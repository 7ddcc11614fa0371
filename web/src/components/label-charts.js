// "False vs true vs the rest": the label summary (/v1/labels) as small multiples, one SVG per
// metric, one row per label. For size, depth, breadth and structural virality a row shows the mean
// as a bar, the median as a tick and the p90 as a diamond, because these distributions are heavy
// tailed: the mean alone hides that most cascades are a single post. Rows are joined by label
// with d3-selection and updated in place on every refresh. Exact figures sit in a table below.
import { select } from 'd3-selection';
import { scaleLinear } from 'd3-scale';
import { axisBottom } from 'd3-axis';
import { h, setText } from '../dom.js';
import { int, num, duration, shortDuration } from '../format.js';
import { labelColor, labelName, sortLabels, labelBadge } from './labels.js';
import { createTable } from './table.js';

const W = 340;
const NAME_W = 86;
const VALUE_W = 58;
const ROW = 22;
const TOP = 6;
const AXIS = 22;

const PANELS = [
  { key: 'cascades', title: 'Cascades', kind: 'count' },
  { key: 'size', title: 'Size (posts)', kind: 'dist' },
  { key: 'depth', title: 'Depth', kind: 'dist' },
  { key: 'max_breadth', title: 'Max breadth', kind: 'dist' },
  { key: 'structural_virality', title: 'Structural virality', kind: 'dist' },
  { key: 'duration_ms_median', title: 'Duration (median)', kind: 'duration' },
];

function value(p, r) {
  if (p.kind === 'count') return r.cascades;
  if (p.kind === 'duration') return r.duration_ms_median;
  return r[`${p.key}_mean`];
}

function tip(p, r) {
  const n = labelName(r.label);
  if (p.kind === 'count') return `${n}: ${int(r.cascades)} cascades`;
  if (p.kind === 'duration') return `${n}: median duration ${duration(r.duration_ms_median)} (${int(r.cascades)} cascades)`;
  const m = (s) => num(r[`${p.key}_${s}`]);
  return `${n}: mean ${m('mean')}, median ${m('median')}, p90 ${m('p90')}, max ${m('max')} (${int(r.cascades)} cascades)`;
}

function panel(p) {
  const svg = select(document.createElementNS('http://www.w3.org/2000/svg', 'svg'))
    .attr('class', 'chart')
    .attr('role', 'img')
    .attr('aria-label', p.title);
  svg.append('g').attr('class', 'rows');
  svg.append('g').attr('class', 'axis');
  const el = h('figure', { class: 'chart-panel' }, h('figcaption', {}, p.title), svg.node());
  return { p, svg, el };
}

function draw({ p, svg }, rows, total) {
  const height = TOP + rows.length * ROW + AXIS;
  svg.attr('viewBox', `0 0 ${W} ${height}`);
  let vmax =
    p.kind === 'dist'
      ? Math.max(1e-9, ...rows.map((r) => Math.max(r[`${p.key}_mean`], r[`${p.key}_p90`], r[`${p.key}_median`])))
      : Math.max(1e-9, ...rows.map((r) => value(p, r)));
  // All zero (e.g. median durations when most cascades are one post): a unit axis, not five "0"s.
  const x = scaleLinear()
    .domain([0, vmax > 1e-9 ? vmax * 1.05 : 1])
    .nice()
    .range([NAME_W, W - VALUE_W]);

  const g = svg
    .select('g.rows')
    .selectAll('g.row')
    .data(rows, (r) => labelName(r.label))
    .join((enter) => {
      const e = enter.append('g').attr('class', 'row');
      e.append('title');
      e.append('text').attr('class', 'name').attr('x', NAME_W - 8).attr('dy', '0.35em').attr('text-anchor', 'end');
      e.append('rect').attr('class', 'bar').attr('rx', 2);
      e.append('line').attr('class', 'median');
      e.append('path').attr('class', 'p90').attr('d', 'M0,-4L4,0L0,4L-4,0Z');
      e.append('text').attr('class', 'value').attr('x', W - 2).attr('dy', '0.35em').attr('text-anchor', 'end');
      return e;
    });
  g.attr('transform', (_, i) => `translate(0,${TOP + i * ROW + ROW / 2})`);
  g.select('title').text((r) => tip(p, r));
  g.select('text.name').text((r) => labelName(r.label));
  g.select('rect.bar')
    .attr('x', NAME_W)
    .attr('y', -7)
    .attr('height', 14)
    .attr('width', (r) => Math.max(0, x(value(p, r)) - NAME_W))
    .attr('fill', (r) => labelColor(r.label));
  const dist = p.kind === 'dist';
  g.select('line.median')
    .attr('display', dist ? null : 'none')
    .attr('x1', (r) => (dist ? x(r[`${p.key}_median`]) : 0))
    .attr('x2', (r) => (dist ? x(r[`${p.key}_median`]) : 0))
    .attr('y1', -9)
    .attr('y2', 9);
  g.select('path.p90')
    .attr('display', dist ? null : 'none')
    .attr('transform', (r) => `translate(${dist ? x(r[`${p.key}_p90`]) : 0},0)`);
  g.select('text.value').text((r) => {
    const v = value(p, r);
    if (p.kind === 'count') return total ? `${int(v)} · ${Math.round((100 * v) / total)}%` : int(v);
    if (p.kind === 'duration') return duration(v);
    return num(v);
  });

  const axis = axisBottom(x)
    .ticks(4)
    .tickSizeOuter(0)
    .tickFormat(p.kind === 'duration' ? (v) => (v ? shortDuration(v) : '0') : (v) => num(v));
  svg
    .select('g.axis')
    .attr('transform', `translate(0,${TOP + rows.length * ROW + 2})`)
    .call(axis);
}

// The size-matched comparison of two labels (/v1/labels_matched, DESIGN §3): per metric the van
// Elteren z and p over cascades of equal size (strata by floor(log2 size)) beside the plain
// Mann-Whitney z and p. A difference that vanishes once sizes are matched is the size's, not the
// label's (Juul & Ugander, PNAS 2021), so the matched p is the one marked.
const METRIC_NAMES = {
  depth: 'Depth',
  max_breadth: 'Breadth',
  structural_virality: 'Virality',
  unique_actors: 'Actors',
  duration_ms: 'Duration',
};

function pValue(p, testid) {
  if (p === null || p === undefined) return h('span', { class: 'muted', 'data-testid': testid, 'data-p': '' }, '—');
  const text = p < 0.001 ? '< 0.001' : p.toFixed(3);
  const sig = p < 0.05;
  return h(
    'span',
    { class: sig ? 'significant' : 'muted', 'data-testid': testid, 'data-p': String(p), title: sig ? 'p < 0.05' : 'not significant (p ≥ 0.05)' },
    sig ? `${text} *` : text,
  );
}

export function createMatchedTable() {
  const c = (f, title, help) => ({ title, cls: 'num', text: f, help });
  const table = createTable({
    key: (r) => r.metric,
    caption: 'Label a against label b, cascades of equal size compared',
    empty: 'No cascades of these labels yet.',
    rowAttrs: (r) => ({ 'data-testid': 'matched-row', 'data-metric': r.metric }),
    columns: [
      { title: 'Metric', node: (r) => h('span', {}, METRIC_NAMES[r.metric] || r.metric), sig: (r) => r.metric },
      c((r) => `${int(r.a_cascades)} / ${int(r.b_cascades)}`, 'Cascades', 'cascades of each label'),
      c((r) => (r.metric === 'duration_ms' ? `${duration(r.median_a)} / ${duration(r.median_b)}` : `${num(r.median_a)} / ${num(r.median_b)}`), 'Medians'),
      c((r) => int(r.strata), 'Strata', 'size strata (floor(log2 size)) holding both labels'),
      c((r) => num(r.z_matched), 'z, size-matched', 'van Elteren over the strata: > 0 when label a runs higher'),
      { title: 'p, size-matched', cls: 'num', node: (r) => pValue(r.p_matched, 'p-matched'), sig: (r) => String(r.p_matched) },
      c((r) => num(r.z_unmatched), 'z, all sizes', 'Mann-Whitney over all cascades of both labels'),
      { title: 'p, all sizes', cls: 'num', node: (r) => pValue(r.p_unmatched, 'p-unmatched'), sig: (r) => String(r.p_unmatched) },
    ],
  });
  const title = h('h3', { class: 'matched-title' }, '');
  const el = h(
    'div',
    { class: 'matched', 'data-testid': 'matched' },
    title,
    h(
      'p',
      { class: 'chart-legend muted' },
      'Bigger cascades run deeper and broader whatever their label, so cascades are compared with others of the same size class first. ',
      '* marks p < 0.05; with five metrics tested, one such mark can be chance.',
    ),
    h('div', { class: 'table-wrap' }, table.el),
  );
  return {
    el,
    update(rows) {
      const r = rows[0];
      setText(title, r ? `“${r.a}” against “${r.b}”, size-matched` : '');
      table.update(rows);
    },
  };
}

export function createLabelCharts() {
  const panels = PANELS.map(panel);
  const c = (f, title) => ({ title, cls: 'num', text: f });
  const table = createTable({
    key: (r) => labelName(r.label),
    caption: 'Label summary, exact figures',
    columns: [
      { title: 'Label', node: (r) => labelBadge(r.label), sig: (r) => labelName(r.label) },
      c((r) => int(r.cascades), 'Cascades'),
      c((r) => num(r.size_mean), 'Size mean'),
      c((r) => num(r.size_median), 'median'),
      c((r) => num(r.size_p90), 'p90'),
      c((r) => num(r.size_max), 'max'),
      c((r) => num(r.depth_mean), 'Depth mean'),
      c((r) => num(r.depth_max), 'max'),
      c((r) => num(r.max_breadth_mean), 'Breadth mean'),
      c((r) => num(r.max_breadth_max), 'max'),
      c((r) => num(r.structural_virality_mean), 'Virality mean'),
      c((r) => num(r.structural_virality_p90), 'p90'),
      c((r) => num(r.unique_actors_mean), 'Actors mean'),
      c((r) => duration(r.duration_ms_median), 'Duration median'),
    ],
  });
  const el = h(
    'div',
    { class: 'label-charts' },
    h(
      'p',
      { class: 'chart-legend muted' },
      h('span', { class: 'key key-bar' }),
      ' mean ',
      h('span', { class: 'key key-median' }),
      ' median ',
      h('span', { class: 'key key-p90' }),
      ' 90th percentile — hover a row for all figures',
    ),
    h('div', { class: 'chart-grid' }, panels.map((p) => p.el)),
    h('details', { class: 'exact' }, h('summary', {}, 'Exact figures'), h('div', { class: 'table-wrap' }, table.el)),
  );
  return {
    el,
    update(labels) {
      const rows = sortLabels(labels);
      const total = rows.reduce((s, r) => s + r.cascades, 0);
      for (const p of panels) draw(p, rows, total);
      table.update(rows);
    },
  };
}
