// Live counters from /v1/stats. Each counter is one element updated in place (its text and its
// data-value, the raw number, which tests compare with the API). The events/s card also keeps a
// sparkline of the last two minutes of ingest_rate, drawn on a small canvas.
import { h, setText } from '../dom.js';
import { int, rate, utc } from '../format.js';

const CARDS = [
  { name: 'rate', label: 'Events / s', value: (s) => s.ingest_rate, fmt: rate, sub: (s) => `${int(s.accepted)} accepted` },
  { name: 'posts', label: 'Posts', value: (s) => s.posts, fmt: int, sub: (s) => `${int(s.placeholders)} placeholders` },
  { name: 'cascades', label: 'Cascades', value: (s) => s.cascades, fmt: int, sub: (s) => `${int(s.contents)} content keys` },
  { name: 'actors', label: 'Actors', value: (s) => s.actors, fmt: int, sub: (s) => `${int(s.edges)} amplification edges` },
  { name: 'rejected', label: 'Rejected', value: (s) => s.rejected, fmt: int, sub: (s) => `${int(s.duplicate)} duplicates` },
];

const HISTORY = 120;

export function createStats() {
  const cards = new Map();
  const history = [];
  const spark = h('canvas', { class: 'spark', width: 160, height: 36, 'aria-hidden': 'true' });
  const el = h(
    'section',
    { class: 'stats', 'aria-label': 'Live counters' },
    CARDS.map((c) => {
      const value = h('div', { class: 'stat-value', 'data-testid': `stat-${c.name}`, 'data-value': '' }, '—');
      const sub = h('div', { class: 'stat-sub' }, '');
      cards.set(c.name, { value, sub, def: c });
      return h(
        'div',
        { class: `stat-card stat-${c.name}` },
        h('div', { class: 'stat-label' }, c.label),
        value,
        sub,
        c.name === 'rate' ? spark : null,
      );
    }),
  );

  function drawSpark() {
    const dpr = window.devicePixelRatio || 1;
    const w = spark.clientWidth || 160;
    const hgt = spark.clientHeight || 36;
    if (spark.width !== Math.round(w * dpr)) spark.width = Math.round(w * dpr);
    if (spark.height !== Math.round(hgt * dpr)) spark.height = Math.round(hgt * dpr);
    const ctx = spark.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    if (history.length < 2) return;
    const max = Math.max(1, ...history);
    const x = (i) => (i / (HISTORY - 1)) * w;
    const y = (v) => hgt - 2 - (v / max) * (hgt - 4);
    const off = HISTORY - history.length;
    ctx.beginPath();
    history.forEach((v, i) => (i ? ctx.lineTo(x(i + off), y(v)) : ctx.moveTo(x(i + off), y(v))));
    ctx.strokeStyle = '#3461c1';
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.lineTo(x(HISTORY - 1), hgt);
    ctx.lineTo(x(off), hgt);
    ctx.closePath();
    ctx.fillStyle = 'rgba(52,97,193,0.12)';
    ctx.fill();
  }

  return {
    el,
    update(stats) {
      for (const { value, sub, def } of cards.values()) {
        const v = def.value(stats);
        setText(value, def.fmt(v));
        if (value.dataset.value !== String(v)) value.dataset.value = String(v);
        setText(sub, def.sub(stats));
      }
      history.push(stats.ingest_rate || 0);
      if (history.length > HISTORY) history.shift();
      drawSpark();
    },
    newest: (stats) => (stats.newest_ts ? utc(stats.newest_ts) : null),
  };
}
