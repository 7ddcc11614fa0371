// The overview: what is in cascaded and what is spreading now. Polls /v1/stats every second; the
// other panels are refreshed when the data changed (stats' accepted count moved) and at most every
// 2 s, plus every 15 s regardless (PageRank changes when analytics run, not when events arrive).
// /v1/labels scans every cascade on the server's engine thread, so it is polled more slowly when
// it is slow (100x its own latency, so at most 1 % of the engine thread): a dashboard left open
// must not steal the ingest's time.
import { api, poll, NetworkError, ApiError } from '../api.js';
import { h, link, setText, replace, cascadeHref, actorHref, errorBox, emptyBox } from '../dom.js';
import { int, num, pagerank, utc, duration, shortDuration } from '../format.js';
import { createStats } from '../components/stats.js';
import { createTable } from '../components/table.js';
import { createLabelCharts, createMatchedTable } from '../components/label-charts.js';
import { labelBadge, labelName } from '../components/labels.js';

// Windows of *event* time (the newest event's ts is "now"), as the growth method counts them.
export const WINDOWS = [
  { ms: 60_000, text: '1 min' },
  { ms: 600_000, text: '10 min' },
  { ms: 3_600_000, text: '1 hour' },
  { ms: 86_400_000, text: '1 day' },
  { ms: 604_800_000, text: '1 week' },
];
const DEFAULT_WINDOW = 3_600_000;
const DEFAULT_LIMIT = 10;
const ACTOR_ORDERS = [
  { by: 'reach', text: 'reach' },
  { by: 'reshares_received', text: 'reshares received' },
  { by: 'amplifiers', text: 'amplifiers' },
  { by: 'pagerank', text: 'PageRank' },
];

function select(id, label, options, value, onchange, testid) {
  const sel = h(
    'select',
    { id, 'data-testid': testid, onchange: (e) => onchange(e.target.value) },
    options.map((o) => h('option', { value: o.value, selected: String(o.value) === String(value) }, o.text)),
  );
  return h('label', { class: 'control', for: id }, h('span', {}, label), sel);
}

function truncate(s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

// Content keys are mostly URLs: the scheme is noise in a narrow column (the full key is the title).
function content(c) {
  return c ? h('span', { class: 'content', title: c }, truncate(c.replace(/^https?:\/\//, ''), 22)) : h('span', { class: 'muted' }, '—');
}

export function mountOverview(root, _params, signal) {
  document.title = 'Overview · cascaded';
  const url = new URL(location.href);
  const state = {
    window: Number(url.searchParams.get('window_ms')) || DEFAULT_WINDOW,
    limit: Number(url.searchParams.get('limit')) || DEFAULT_LIMIT,
    by: url.searchParams.get('by') || 'reach',
  };
  // Keep the choices in the URL so that a view can be shared or reloaded as it is.
  const remember = () => {
    const u = new URL(location.href);
    u.searchParams.set('window_ms', state.window);
    u.searchParams.set('limit', state.limit);
    u.searchParams.set('by', state.by);
    history.replaceState(null, '', u.pathname + u.search);
  };

  const stats = createStats();
  const newest = h('span', { class: 'muted' }, '');
  const emptyNote = h('div', { hidden: true });

  // --- viral now --------------------------------------------------------------------------------
  let maxGrowth = 1;
  let newestTs = 0; // newest event time, from stats: "now" for event-time windows
  const viral = createTable({
    key: (r) => r.root,
    caption: 'Cascades with the most posts in the window',
    empty: 'No posts in this window of event time.',
    rowAttrs: (r) => ({ 'data-testid': 'viral-row', 'data-post': r.root }),
    columns: [
      {
        title: 'Root post',
        node: (r) => link(cascadeHref(r.root), r.root, { class: 'id' }),
        sig: (r) => r.root,
      },
      {
        title: 'In window',
        cls: 'num growth',
        help: 'posts of the cascade with ts in the window (up to the newest event)',
        node: (r) =>
          h(
            'span',
            { class: 'growth-cell' },
            h('span', { class: 'growth-bar', style: `width:${Math.max(2, (100 * r.growth) / maxGrowth)}%` }),
            h('span', { class: 'growth-num' }, `+${int(r.growth)}`),
          ),
        sig: (r) => `${r.growth}/${maxGrowth}`,
      },
      { title: 'Size', cls: 'num', text: (r) => int(r.size) },
      { title: 'Virality', cls: 'num', help: 'structural virality', text: (r) => num(r.structural_virality) },
      { title: 'Label', node: (r) => labelBadge(r.label), sig: (r) => labelName(r.label) },
      {
        title: 'Root actor',
        node: (r) => link(actorHref(r.root_actor), r.root_actor, { class: 'id' }),
        sig: (r) => r.root_actor,
      },
      { title: 'Content', node: (r) => content(r.content), sig: (r) => r.content ?? '' },
      {
        title: 'Last post',
        cls: 'num nowrap',
        help: 'event time of its last post, before the newest event received',
        node: (r) => h('span', { title: utc(r.last_ts) }, newestTs === r.last_ts ? 'newest' : newestTs && newestTs > r.last_ts ? `−${shortDuration(newestTs - r.last_ts)}` : utc(r.last_ts)),
        sig: (r) => `${r.last_ts}/${newestTs}`,
      },
    ],
  });
  viral.el.dataset.testid = 'viral-table';
  const viralStatus = h('div', { class: 'panel-status' });
  const windowText = () => WINDOWS.find((w) => w.ms === state.window)?.text ?? duration(state.window);
  const viralSub = h('p', { class: 'panel-sub' });
  const viralList = h('div', { class: 'table-wrap', 'data-testid': 'viral-list' }, viral.el);

  // --- top amplifiers ---------------------------------------------------------------------------
  const actors = createTable({
    key: (r) => r.id,
    caption: 'Top actors',
    empty: 'No actors yet.',
    rowAttrs: (r) => ({ 'data-testid': 'actor-row', 'data-actor': r.id }),
    columns: [
      // Pages are the exception among actors: only they carry a badge (the column stays narrow).
      {
        title: 'Actor',
        cls: 'nowrap',
        node: (r) =>
          h('span', {}, link(actorHref(r.id), r.id, { class: 'id' }), r.actor_type === 'page' ? [' ', h('span', { class: 'type type-page' }, 'page')] : null),
        sig: (r) => `${r.id}/${r.actor_type}`,
      },
      { title: 'Reach', cls: 'num', help: 'posts below this actor’s posts', text: (r) => int(r.reach) },
      { title: 'Reshares', cls: 'num', help: 'reshares received', text: (r) => int(r.reshares_received) },
      { title: 'Amplifiers', cls: 'num', help: 'distinct actors who reshared it', text: (r) => int(r.amplifiers) },
      { title: 'PageRank', cls: 'num', text: (r) => pagerank(r.pagerank) },
    ],
  });
  const actorsStatus = h('div', { class: 'panel-status' });

  // --- labels -----------------------------------------------------------------------------------
  const charts = createLabelCharts();
  const matched = createMatchedTable();
  matched.el.hidden = true;
  const labelsStatus = h('div', { class: 'panel-status' });

  const viralPanel = h(
    'section',
    { class: 'panel viral', 'aria-labelledby': 'viral-h' },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', { id: 'viral-h' }, 'Viral now'),
      h(
        'div',
        { class: 'controls' },
        select(
          'viral-window',
          'Window',
          WINDOWS.map((w) => ({ value: w.ms, text: w.text })),
          state.window,
          (v) => {
            state.window = Number(v);
            remember();
            refreshViral.now();
          },
          'viral-window',
        ),
        select(
          'viral-limit',
          'Show',
          [10, 20, 50, 100].map((n) => ({ value: n, text: String(n) })),
          state.limit,
          (v) => {
            state.limit = Number(v);
            remember();
            refreshViral.now();
          },
          'viral-limit',
        ),
      ),
    ),
    viralSub,
    viralStatus,
    viralList,
  );
  // data-window / data-limit: the query behind the rows on screen (tests repeat it against the API).
  let shown = { window: null, limit: null };

  const actorsPanel = h(
    'section',
    { class: 'panel actors', 'aria-labelledby': 'actors-h' },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', { id: 'actors-h' }, 'Top amplifiers'),
      h(
        'div',
        { class: 'controls' },
        select(
          'actors-by',
          'By',
          ACTOR_ORDERS.map((o) => ({ value: o.by, text: o.text })),
          state.by,
          (v) => {
            state.by = v;
            remember();
            refreshActors.now();
          },
          'actors-by',
        ),
      ),
    ),
    h('p', { class: 'panel-sub' }, 'Who sits above the most reshares. Reach: posts below the actor’s posts.'),
    actorsStatus,
    h('div', { class: 'table-wrap' }, actors.el),
  );

  root.append(
    h(
      'div',
      { class: 'page overview' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), h('p', { class: 'page-sub' }, newest)),
      emptyNote,
      stats.el,
      h('div', { class: 'grid-2' }, viralPanel, actorsPanel),
      h(
        'section',
        { class: 'panel labels', 'aria-labelledby': 'labels-h' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'labels-h' }, 'False vs true vs the rest')),
        h('p', { class: 'panel-sub' }, 'Cascades compared by the verdict label of their content.'),
        labelsStatus,
        charts.el,
        matched.el,
      ),
    ),
  );

  // --- refresh logic ----------------------------------------------------------------------------
  let version = null; // stats.accepted at the last stats poll
  const seen = { viral: null, actors: null, labels: null };
  const last = { viral: 0, actors: 0, labels: 0 };
  const firstData = new Set();
  const ready = (what) => {
    firstData.add(what);
    if (firstData.size === 4) document.body.dataset.ready = '1';
  };
  // A panel is due when the data moved since it last looked, or it has not looked for 15 s.
  const due = (k) => version === null || seen[k] !== version || Date.now() - last[k] > 15000;

  function panelError(status, e) {
    if (e instanceof NetworkError) return; // the banner says it
    replace(status, errorBox(e.message));
  }

  poll(
    async () => {
      const s = await api('stats', {}, { signal });
      stats.update(s);
      version = `${s.accepted}`;
      newestTs = s.newest_ts;
      setText(newest, s.newest_ts ? `Newest event ${utc(s.newest_ts)} · up ${duration(s.uptime_ms)} · cascaded ${s.version}` : `cascaded ${s.version} · no events yet`);
      if (s.posts === 0) {
        emptyNote.hidden = false;
        if (!emptyNote.firstChild)
          emptyNote.append(
            emptyBox(
              'No events yet.',
              'Send share events to the ingest port, for example ',
              h('code', {}, 'build/tools/cascade-replay tests/data/sample.ndjson.gz'),
              '. This page updates by itself as they arrive.',
            ),
          );
      } else emptyNote.hidden = true;
      ready('stats');
    },
    1000,
    signal,
  );

  const refreshViral = poll(
    async () => {
      if (!due('viral') && shown.window === state.window && shown.limit === state.limit) return 500;
      const v = version;
      const want = { window: state.window, limit: state.limit };
      try {
        const rows = await api('top_cascades', { by: 'growth', window_ms: want.window, limit: want.limit }, { signal });
        if (want.window !== state.window || want.limit !== state.limit) return 0; // changed meanwhile
        maxGrowth = Math.max(1, ...rows.map((r) => r.growth));
        viral.update(rows);
        shown = want;
        viralList.dataset.window = String(want.window);
        viralList.dataset.limit = String(want.limit);
        setText(viralSub, `Cascades ranked by their posts in the last ${windowText()} of event time (up to the newest event).`);
        viralStatus.replaceChildren();
        seen.viral = v;
        last.viral = Date.now();
        ready('viral');
      } catch (e) {
        panelError(viralStatus, e);
        if (!(e instanceof NetworkError)) ready('viral');
        throw e;
      }
      return 2000;
    },
    2000,
    signal,
  );

  const refreshActors = poll(
    async () => {
      if (!due('actors') && actors.el.dataset.by === state.by) return 500;
      const v = version;
      const by = state.by;
      try {
        const rows = await api('top_actors', { by, limit: 10 }, { signal });
        if (by !== state.by) return 0;
        actors.update(rows);
        actors.el.dataset.by = by;
        actorsStatus.replaceChildren();
      } catch (e) {
        if (e instanceof ApiError && e.code === 503) {
          // PageRank before the analytics worker ran: say so instead of an error.
          actors.update([]);
          actors.el.dataset.by = by;
          actors.setEmpty('PageRank is not computed yet: the analytics worker has not taken its first snapshot.');
          actorsStatus.replaceChildren();
        } else {
          panelError(actorsStatus, e);
          if (!(e instanceof NetworkError)) ready('actors');
          throw e;
        }
      }
      actors.setEmpty('No actors yet.');
      seen.actors = v;
      last.actors = Date.now();
      ready('actors');
      return 2000;
    },
    2000,
    signal,
  );

  poll(
    async () => {
      if (!due('labels')) return 500;
      const v = version;
      const t0 = performance.now();
      try {
        const rows = await api('labels', {}, { signal });
        charts.update(rows);
        // false against true, size-matched, once both labels have cascades
        const both = rows.some((r) => r.label === 'false') && rows.some((r) => r.label === 'true');
        if (both) matched.update(await api('labels_matched', { a: 'false', b: 'true' }, { signal }));
        matched.el.hidden = !both;
        labelsStatus.replaceChildren(
          rows.length ? '' : emptyBox('No cascades yet.', 'The comparison appears once labelled content arrives.'),
        );
      } catch (e) {
        panelError(labelsStatus, e);
        if (!(e instanceof NetworkError)) ready('labels');
        throw e;
      }
      seen.labels = v;
      last.labels = Date.now();
      ready('labels');
      return Math.max(2000, 100 * (performance.now() - t0));
    },
    2000,
    signal,
  );
}
