// An actor's ego network from /v1/actor_links: who amplifies it (direction "in": they reshared its
// posts; drawn on the left, arrows pointing at it) and whom it amplifies ("out": it reshared
// theirs; on the right). At most a few dozen nodes, so SVG (one focusable link per actor, native
// tooltips) with a d3-force layout run to rest before drawing: the picture does not wobble.
// Node area ~ reach, edge width ~ weight (the number of reshares).
import { forceSimulation, forceLink, forceManyBody, forceCollide, forceX, forceY } from 'd3-force';
import { scaleSqrt } from 'd3-scale';
import { select } from 'd3-selection';
import { actorHref } from '../dom.js';
import { int } from '../format.js';

const SVG = 'http://www.w3.org/2000/svg';
const IN = '#3461c1';
const OUT = '#e4572e';
const BOTH = '#7b4fb3';

export function drawEgo(center, links) {
  const byId = new Map();
  for (const l of links) {
    if (l.actor === center.id) continue;
    let n = byId.get(l.actor);
    if (!n) byId.set(l.actor, (n = { id: l.actor, type: l.actor_type, reach: l.reach, in: 0, out: 0 }));
    n[l.direction === 'in' ? 'in' : 'out'] += l.weight;
  }
  const others = [...byId.values()];
  const me = { id: center.id, type: center.actor_type, reach: center.reach, me: true, fx: 0, fy: 0 };
  const nodes = [me, ...others];
  const edges = [];
  for (const n of others) {
    if (n.in) edges.push({ source: n, target: me, weight: n.in, dir: 'in' });
    if (n.out) edges.push({ source: me, target: n, weight: n.out, dir: 'out' });
  }
  const maxReach = Math.max(1, ...nodes.map((n) => n.reach || 0));
  const radius = scaleSqrt().domain([0, maxReach]).range([4, 20]);
  const maxW = Math.max(1, ...edges.map((e) => e.weight));
  const width = scaleSqrt().domain([1, maxW]).range([1, 6]);
  const side = (n) => (n.me ? 0 : n.in && n.out ? 0 : n.in ? -1 : 1);

  const sim = forceSimulation(nodes)
    .force('link', forceLink(edges).distance(110).strength(0.6))
    .force('charge', forceManyBody().strength(-160))
    .force('collide', forceCollide((n) => radius(n.reach || 0) + 10))
    .force('x', forceX((n) => side(n) * 170).strength(0.25))
    .force('y', forceY(0).strength(0.06))
    .stop();
  for (let i = 0; i < 300; i++) sim.tick();

  const pad = 40;
  const xs = nodes.map((n) => n.x);
  const ys = nodes.map((n) => n.y);
  const x0 = Math.min(...xs) - pad - 40;
  const x1 = Math.max(...xs) + pad + 40;
  const y0 = Math.min(...ys) - pad;
  const y1 = Math.max(...ys) + pad;

  const svg = select(document.createElementNS(SVG, 'svg'))
    .attr('class', 'ego')
    .attr('viewBox', `${x0} ${y0} ${x1 - x0} ${y1 - y0}`)
    .attr('role', 'group')
    .attr('aria-label', `Ego network of ${center.id}`);
  const defs = svg.append('defs');
  for (const [id, c] of [
    ['in', IN],
    ['out', OUT],
  ])
    defs
      .append('marker')
      .attr('id', `arrow-${id}`)
      .attr('viewBox', '0 -5 10 10')
      .attr('refX', 10)
      .attr('markerWidth', 6)
      .attr('markerHeight', 6)
      .attr('markerUnits', 'userSpaceOnUse')
      .attr('orient', 'auto')
      .append('path')
      .attr('d', 'M0,-5L10,0L0,5')
      .attr('fill', c);

  // Edges end at the target's rim so that the arrowhead is visible.
  svg
    .append('g')
    .attr('class', 'ego-edges')
    .selectAll('line')
    .data(edges)
    .join('line')
    .attr('x1', (e) => e.source.x)
    .attr('y1', (e) => e.source.y)
    .attr('x2', (e) => trim(e).x)
    .attr('y2', (e) => trim(e).y)
    .attr('stroke', (e) => (e.dir === 'in' ? IN : OUT))
    .attr('stroke-opacity', 0.55)
    .attr('stroke-width', (e) => width(e.weight))
    .attr('marker-end', (e) => `url(#arrow-${e.dir})`)
    .append('title')
    .text((e) => (e.dir === 'in' ? `${e.source.id} reshared ${center.id} ${int(e.weight)}×` : `${center.id} reshared ${e.target.id} ${int(e.weight)}×`));

  function trim(e) {
    const dx = e.target.x - e.source.x;
    const dy = e.target.y - e.source.y;
    const d = Math.hypot(dx, dy) || 1;
    const r = radius(e.target.reach || 0) + 3;
    return { x: e.target.x - (dx / d) * r, y: e.target.y - (dy / d) * r };
  }

  const g = svg
    .append('g')
    .attr('class', 'ego-nodes')
    .selectAll('a')
    .data(nodes)
    .join((enter) => enter.append(() => document.createElementNS(SVG, 'a')))
    .attr('href', (n) => actorHref(n.id))
    .attr('data-link', '')
    .attr('class', (n) => (n.me ? 'me' : ''))
    .attr('transform', (n) => `translate(${n.x},${n.y})`);
  g.append('title').text((n) =>
    n.me
      ? `${n.id} (${n.type}) · reach ${int(n.reach)}`
      : `${n.id} (${n.type}) · reach ${int(n.reach)}` +
        (n.in ? ` · reshared ${center.id} ${int(n.in)}×` : '') +
        (n.out ? ` · reshared by ${center.id} ${int(n.out)}×` : ''),
  );
  const fill = (n) => (n.me ? '#1f2a44' : n.in && n.out ? BOTH : n.in ? IN : OUT);
  g.filter((n) => n.type === 'page')
    .append('rect')
    .attr('x', (n) => -radius(n.reach || 0))
    .attr('y', (n) => -radius(n.reach || 0))
    .attr('width', (n) => 2 * radius(n.reach || 0))
    .attr('height', (n) => 2 * radius(n.reach || 0))
    .attr('rx', 2)
    .attr('fill', fill);
  g.filter((n) => n.type !== 'page')
    .append('circle')
    .attr('r', (n) => radius(n.reach || 0))
    .attr('fill', fill);
  g.append('text')
    .attr('class', 'ego-label')
    .attr('dy', (n) => radius(n.reach || 0) + 12)
    .attr('text-anchor', 'middle')
    .text((n) => n.id);
  return { el: svg.node(), counts: { in: others.filter((n) => n.in).length, out: others.filter((n) => n.out).length } };
}

export const EGO_COLORS = { IN, OUT, BOTH };
