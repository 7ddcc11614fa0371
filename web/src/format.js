// Number and time formatting, in one place so that every page writes a figure the same way.
// Integers get thousands separators; floats keep a few significant digits (the raw value is
// always in the API, and in data-value/title attributes where tests or users need it).
import { format } from 'd3-format';

const intFmt = format(',d');
const fixed2 = format(',.2f');
const sig3 = format('.3~g');
const sig4 = format(',.4~r');

export const dash = '—';

export function int(n) {
  return n === null || n === undefined || Number.isNaN(n) ? dash : intFmt(Math.round(n));
}

// A float where the absolute size matters (means, virality): 2 decimals, or 3 significant digits
// for tiny values such as PageRank.
export function num(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return dash;
  if (Number.isInteger(x)) return intFmt(x);
  if (Math.abs(x) >= 0.1) return fixed2(x);
  if (x === 0) return '0';
  return sig3(x);
}

export function rate(x) {
  if (x === null || x === undefined) return dash;
  return x >= 100 ? intFmt(Math.round(x)) : sig4(x);
}

export function pagerank(x) {
  return x === null || x === undefined ? dash : sig3(x);
}

// Event times are ms since the epoch; shown in UTC so that two analysts in different places read
// the same figure the API returns.
export function isoTime(ts) {
  if (ts === null || ts === undefined) return dash;
  return new Date(ts).toISOString();
}

export function utc(ts) {
  if (ts === null || ts === undefined) return dash;
  return new Date(ts).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

// "2023-11-15 14:24:46": for figures whose label already says UTC.
export function utcShort(ts) {
  if (ts === null || ts === undefined) return dash;
  return new Date(ts).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return dash;
  const s = Math.round(ms / 1000);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hh = Math.floor(m / 60);
  if (hh < 48) return `${hh} h ${m % 60} min`;
  const d = Math.floor(hh / 24);
  return `${d} d ${hh % 24} h`;
}

// Short relative durations for ticks ("+5 min").
export function shortDuration(ms) {
  if (ms === 0) return '0 s';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60e3) return `${+(ms / 1000).toFixed(1)} s`;
  if (ms < 3600e3) return `${+(ms / 60e3).toFixed(1)} min`;
  if (ms < 86400e3) return `${+(ms / 3600e3).toFixed(1)} h`;
  return `${+(ms / 86400e3).toFixed(1)} d`;
}
