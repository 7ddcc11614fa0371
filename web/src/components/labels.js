// Colours and order of verdict labels, shared by the tables and the charts. "false" and "true"
// come first (the comparison analysts want), then other labels alphabetically, unlabelled last.
import { schemeTableau10 } from 'd3-scale-chromatic';
import { h } from '../dom.js';

const FIXED = {
  false: '#d1495b',
  true: '#2a9d6f',
  unverified: '#e09f1f',
  mixed: '#8e6cc9',
  'non-rumor': '#3b7dd8',
  'non-rumour': '#3b7dd8',
};
const UNLABELLED = '#8a94a6';
const extra = new Map();

export function labelColor(label) {
  if (label === null || label === undefined) return UNLABELLED;
  const k = String(label).toLowerCase();
  if (FIXED[k]) return FIXED[k];
  if (!extra.has(k)) extra.set(k, schemeTableau10[(extra.size + 5) % 10]);
  return extra.get(k);
}

export function labelName(label) {
  return label === null || label === undefined ? 'unlabelled' : String(label);
}

export function labelRank(label) {
  if (label === null || label === undefined) return 3;
  const k = String(label).toLowerCase();
  return k === 'false' ? 0 : k === 'true' ? 1 : 2;
}

export function sortLabels(rows) {
  return [...rows].sort(
    (a, b) => labelRank(a.label) - labelRank(b.label) || labelName(a.label).localeCompare(labelName(b.label)),
  );
}

export function labelBadge(label) {
  return h(
    'span',
    { class: `badge${label == null ? ' badge-none' : ''}`, style: `--c:${labelColor(label)}` },
    labelName(label),
  );
}
