// One cascade: its metrics (the cascade record), its reshare tree on a canvas, a time slider that
// replays how it grew, the path from a clicked post to the root (/v1/path) and GraphML/DOT
// downloads. Any post of the cascade can be the URL's id: the page then opens with that post
// selected. The metrics are polled every 3 s; when the cascade grew, the tree is not re-laid out
// under the analyst's eyes: a button offers to load the new posts.
import { api, apiUrl, poll, retrying, ApiError, NetworkError, authHeaders, download } from '../api.js';
import { h, link, setText, replace, actorHref, cascadeHref, errorBox } from '../dom.js';
import { int, num, utc, utcShort, duration, isoTime, shortDuration } from '../format.js';
import { createMetrics } from '../components/metrics.js';
import { labelBadge } from '../components/labels.js';
import { createCascadeTree, buildTree, timeColor, timeFraction, depthColor } from '../components/cascade-tree.js';

const TREE_LIMIT = 100000;
const TYPE_LOOKUPS = 400; // actor records fetched at most to tell pages from accounts
const SLIDER_MAX = 1000;

function segmented(name, legend, options, value, onchange) {
  return h(
    'fieldset',
    { class: 'segmented' },
    h('legend', {}, legend),
    options.map((o) =>
      h(
        'label',
        {},
        h('input', {
          type: 'radio',
          name,
          value: o.value,
          checked: o.value === value,
          'data-testid': `${name}-${o.value}`,
          onchange: (e) => e.target.checked && onchange(o.value),
        }),
        h('span', {}, o.text),
      ),
    ),
  );
}

export function mountCascade(root, { post }, signal) {
  document.title = `Cascade ${post} · cascaded`;
  const page = h('div', { class: 'page cascade' });
  root.append(page);
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/', 'Overview'), ' › ', 'Cascade');
  const loading = h('p', { class: 'muted loading' }, `Loading cascade of ${post}…`);
  page.append(crumbs, loading);

  retrying(() => api('cascade', { post, tree: true, limit: TREE_LIMIT }, { signal }), signal)
    .then((rec) => render(rec))
    .catch((e) => {
      if (e.name === 'AbortError') return;
      loading.remove();
      const msg = e instanceof ApiError ? e.message : String(e.message || e);
      page.append(
        h('div', { class: 'page-head' }, h('h1', {}, 'Cascade ', h('code', {}, post))),
        errorBox(
          msg,
          e instanceof ApiError && e.code === 404
            ? 'No post with this id has been received (ids are case-sensitive). Open a cascade from the overview, or check the id with /v1/path?post=….'
            : null,
        ),
      );
      document.body.dataset.ready = '1';
    });

  function render(rec) {
    loading.remove();
    const tree = buildTree(rec.nodes || []);
    const total = tree.root.descendants().length;
    const placeholders = tree.root.descendants().filter((n) => n.data.placeholder).length;
    document.title = `Cascade ${rec.root} · cascaded`;

    // --- head and metrics ----------------------------------------------------------------------
    const metrics = createMetrics([
      { key: 'size', label: 'Posts', fmt: int, help: 'observed posts' },
      { key: 'missing', label: 'Placeholders', fmt: int, help: 'parents referred to but never received' },
      { key: 'depth', label: 'Depth', fmt: int },
      { key: 'max_breadth', label: 'Max breadth', fmt: int, help: 'most nodes at one depth' },
      { key: 'structural_virality', label: 'Structural virality', fmt: num, help: 'mean distance between two nodes (Goel et al. 2016)' },
      { key: 'unique_actors', label: 'Unique actors', fmt: int },
      { key: 'first_ts', label: 'First post (UTC)', fmt: utcShort },
      { key: 'last_ts', label: 'Last post (UTC)', fmt: utcShort },
      { key: 'duration_ms', label: 'Duration', fmt: duration },
    ]);
    metrics.update(rec);
    const head = h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Cascade ', h('code', { class: 'id' }, rec.root), ' ', labelBadge(rec.label)),
      h(
        'p',
        { class: 'page-sub' },
        'Root post by ',
        rec.root_actor ? link(actorHref(rec.root_actor), rec.root_actor, { class: 'id' }) : h('span', { class: 'muted' }, 'unknown (placeholder root)'),
        ' · content ',
        rec.content ? h('span', { class: 'content id' }, rec.content) : h('span', { class: 'muted' }, 'none'),
      ),
    );
    const notices = h('div', { class: 'notices' });
    if (rec.nodes_truncated)
      notices.append(h('p', { class: 'notice' }, `The tree has more than ${int(TREE_LIMIT)} nodes: only the first ${int(TREE_LIMIT)} (breadth-first) are drawn.`));
    if (tree.dropped) notices.append(h('p', { class: 'notice' }, `${int(tree.dropped)} nodes whose parent was cut off are not drawn.`));

    // --- actor types: bounded lookups, nearest the root first ------------------------------------
    const types = new Map();
    const distinct = [];
    const seenActors = new Set();
    for (const n of tree.root.descendants())
      if (n.data.actor !== null && !seenActors.has(n.data.actor)) {
        seenActors.add(n.data.actor);
        distinct.push(n.data.actor);
      }
    const toFetch = distinct.slice(0, TYPE_LOOKUPS);

    // --- tree, toolbar, replay -----------------------------------------------------------------
    const view = createCascadeTree({ onSelect: (p) => choose(p), actorType: (a) => types.get(a) });
    const [tmin, tmax] = [rec.first_ts, rec.last_ts];
    const colourLegend = h('div', { class: 'colour-legend' });
    let colorBy = 'time';
    function drawColourLegend() {
      if (colorBy === 'time') {
        const span = Math.max(0, tmax - tmin);
        const stops = Array.from({ length: 11 }, (_, i) => `${timeColor(i / 10)} ${i * 10}%`).join(',');
        // Tick marks at round delays that fall inside the cascade's life, placed on the log scale.
        const ticks = [60e3, 600e3, 3600e3, 86400e3, 7 * 86400e3]
          .filter((d) => d < span * 0.85 && timeFraction(d, span) > 0.15)
          .map((d) => h('span', { class: 'tick', style: `left:${(100 * timeFraction(d, span)).toFixed(1)}%` }, shortDuration(d)));
        replace(
          colourLegend,
          h('span', {}, 'root'),
          h('span', { class: 'gradient', style: `background:linear-gradient(90deg,${stops})`, title: 'time since the root post, log scale' }, ticks),
          h('span', {}, `+${shortDuration(span)}`),
        );
      } else {
        const depths = Array.from({ length: Math.min(view.maxDepth(), 12) + 1 }, (_, d) => d);
        replace(
          colourLegend,
          h('span', {}, 'depth'),
          depths.map((d) => h('span', { class: 'swatch', style: `background:${depthColor(d)}`, title: `depth ${d}` }, String(d))),
        );
      }
    }

    const legend = h(
      'div',
      {
        class: 'tree-count',
        'data-testid': 'cascade-legend',
        'data-nodes': String(total),
        'data-posts': String(total - placeholders),
        'data-placeholders': String(placeholders),
      },
      `${int(total - placeholders)} posts`,
      placeholders ? ` · ${int(placeholders)} placeholders` : '',
    );
    const typeNote = h('span', { class: 'muted type-note' });
    const updateTypeNote = () =>
      setText(
        typeNote,
        distinct.length <= TYPE_LOOKUPS
          ? `actor types: ${int(types.size)} of ${int(distinct.length)} looked up`
          : `actor types looked up for the ${int(TYPE_LOOKUPS)} actors nearest the root (of ${int(distinct.length)}); others drawn as circles`,
      );
    updateTypeNote();
    const shapes = h(
      'div',
      { class: 'shape-legend' },
      h('span', { class: 'shape shape-circle' }),
      ' account ',
      h('span', { class: 'shape shape-square' }),
      ' page ',
      h('span', { class: 'shape shape-hollow' }),
      ' placeholder ',
      h('span', { class: 'edge edge-solid' }),
      ' share ',
      h('span', { class: 'edge edge-dashed' }),
      ' quote ',
      h('span', { class: 'edge edge-dotted' }),
      ' reply',
    );

    const slider = h('input', {
      type: 'range',
      min: 0,
      max: SLIDER_MAX,
      step: 1,
      value: SLIDER_MAX,
      'data-testid': 'time-slider',
      'aria-label': 'Replay: show the posts up to this time',
      id: 'time-slider',
    });
    const timeLabel = h('output', { class: 'time-label', for: 'time-slider', 'aria-live': 'off' });
    const play = h('button', { type: 'button', class: 'btn play', 'aria-label': 'Play the cascade’s growth' }, '▶ Replay');
    const timeAt = (v) => (v >= SLIDER_MAX ? Infinity : tmin + (v / SLIDER_MAX) * (tmax - tmin));
    function onSlide() {
      const v = Number(slider.value);
      const t = timeAt(v);
      view.setTime(t);
      const shown = view.countAt(t);
      const at = Number.isFinite(t) ? t : tmax;
      const text = `${utc(at)} · +${shortDuration(Math.max(0, at - tmin))} · ${int(shown)} of ${int(total)} nodes`;
      setText(timeLabel, text);
      slider.setAttribute('aria-valuetext', text);
    }
    slider.addEventListener('input', onSlide);
    let anim = 0;
    function stop() {
      cancelAnimationFrame(anim);
      anim = 0;
      setText(play, '▶ Replay');
    }
    play.addEventListener('click', () => {
      if (anim) return stop();
      if (Number(slider.value) >= SLIDER_MAX) slider.value = 0;
      const start = performance.now();
      const from = Number(slider.value);
      const ms = 8000 * (1 - from / SLIDER_MAX);
      setText(play, '❚❚ Pause');
      const step = (now) => {
        const v = Math.min(SLIDER_MAX, from + ((now - start) / Math.max(1, ms)) * (SLIDER_MAX - from));
        slider.value = Math.round(v);
        onSlide();
        if (v < SLIDER_MAX && !signal.aborted) anim = requestAnimationFrame(step);
        else stop();
      };
      anim = requestAnimationFrame(step);
    });
    signal.addEventListener('abort', () => cancelAnimationFrame(anim));

    const toolbar = h(
      'div',
      { class: 'toolbar' },
      segmented(
        'colour',
        'Colour',
        [
          { value: 'time', text: 'Time' },
          { value: 'depth', text: 'Depth' },
        ],
        'time',
        (v) => {
          colorBy = v;
          view.setColorBy(v);
          drawColourLegend();
        },
      ),
      segmented(
        'layout',
        'Layout',
        [
          { value: 'radial', text: 'Radial' },
          { value: 'tree', text: 'Tree' },
        ],
        'radial',
        (v) => view.setLayout(v),
      ),
      h(
        'div',
        { class: 'btn-group', role: 'group', 'aria-label': 'Zoom' },
        h('button', { type: 'button', class: 'btn', title: 'Zoom in (+)', 'aria-label': 'Zoom in', onclick: () => view.zoomBy(1.5) }, '+'),
        h('button', { type: 'button', class: 'btn', title: 'Zoom out (−)', 'aria-label': 'Zoom out', onclick: () => view.zoomBy(1 / 1.5) }, '−'),
        h('button', { type: 'button', class: 'btn', title: 'Fit the tree (0)', onclick: () => view.fit() }, 'Fit'),
      ),
      h(
        'div',
        {
          class: 'downloads',
          // Plain links unless a token is in use (then the request must carry it: see download()).
          onclick: (e) => {
            const a = e.target.closest('a[download]');
            if (!a || !authHeaders().authorization) return;
            e.preventDefault();
            download(a.getAttribute('href'), a.getAttribute('download')).catch((err) => alert(err.message));
          },
        },
        h('a', { class: 'btn', href: apiUrl('cascade', { post: rec.root, format: 'graphml' }), download: `${rec.root}.graphml`, 'data-testid': 'download-graphml' }, '⤓ GraphML'),
        h('a', { class: 'btn', href: apiUrl('cascade', { post: rec.root, format: 'dot' }), download: `${rec.root}.dot`, 'data-testid': 'download-dot' }, '⤓ DOT'),
      ),
    );

    // --- side panel: selected post and its path to the root ---------------------------------------
    const pathBox = h('div', { class: 'path-box', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Click a post in the tree (or type its id) to see its path to the root.'));
    const pathInput = h('input', { type: 'search', id: 'path-post', placeholder: 'post id', spellcheck: 'false', autocomplete: 'off' });
    const pathForm = h(
      'form',
      {
        class: 'inline-form',
        onsubmit: (e) => {
          e.preventDefault();
          const v = pathInput.value.trim();
          if (v) choose(v);
        },
      },
      h('label', { for: 'path-post', class: 'sr-only' }, 'Post id'),
      pathInput,
      h('button', { type: 'submit', class: 'btn' }, 'Path to root'),
    );
    let choosing = 0;
    async function choose(p) {
      const my = ++choosing;
      pathInput.value = p;
      view.select(p, []);
      replace(pathBox, h('p', { class: 'muted' }, `Loading the path of ${p}…`));
      try {
        const path = await api('path', { post: p }, { signal });
        if (my !== choosing) return;
        view.select(p, path.map((s) => s.post));
        const inTree = path.length && path[path.length - 1].post === rec.root;
        replace(
          pathBox,
          h('h3', {}, `${p}: ${path.length - 1} ${path.length === 2 ? 'hop' : 'hops'} to the root`),
          inTree ? null : h('p', { class: 'notice' }, 'This post is not in this cascade. ', link(cascadeHref(p), 'Open its cascade')),
          h(
            'ol',
            { class: 'path', 'data-testid': 'path' },
            path.map((s) =>
              h(
                'li',
                { 'data-post': s.post },
                h('span', { class: 'path-depth', title: 'depth' }, String(s.depth)),
                h(
                  'div',
                  {},
                  h('code', { class: 'id' }, s.post),
                  ' by ',
                  s.actor === null ? h('span', { class: 'muted' }, 'placeholder (never received)') : link(actorHref(s.actor), s.actor, { class: 'id' }),
                  h('div', { class: 'muted small' }, s.actor === null ? '' : isoTime(s.ts)),
                ),
              ),
            ),
          ),
        );
      } catch (e) {
        if (e.name === 'AbortError' || my !== choosing) return;
        replace(pathBox, errorBox(e instanceof NetworkError ? 'cannot reach cascaded' : e.message));
      }
    }

    const update = h('div', { class: 'notices' });
    page.append(
      head,
      metrics.el,
      notices,
      update,
      h(
        'div',
        { class: 'cascade-main' },
        h(
          'section',
          { class: 'panel tree-panel', 'aria-label': 'Reshare tree' },
          toolbar,
          view.el,
          h('div', { class: 'replay' }, play, slider, timeLabel),
          h('div', { class: 'legend-row' }, legend, colourLegend, shapes, typeNote),
        ),
        h('aside', { class: 'panel side', 'aria-label': 'Path to the root' }, h('h2', {}, 'Path to the root'), pathForm, pathBox),
      ),
    );
    view.setData(tree);
    drawColourLegend();
    onSlide();
    if (post !== rec.root) choose(post);
    document.body.dataset.ready = '1';

    // Actor types after the first draw: a few requests at a time, redraw as they arrive.
    (async () => {
      let i = 0;
      const worker = async () => {
        while (i < toFetch.length && !signal.aborted) {
          const id = toFetch[i++];
          try {
            const a = await api('actor', { id }, { signal });
            types.set(id, a.actor_type);
          } catch (e) {
            if (e.name === 'AbortError' || e instanceof NetworkError) return;
          }
          if (types.size % 20 === 0) {
            view.redraw();
            updateTypeNote();
          }
        }
      };
      await Promise.all(Array.from({ length: 6 }, worker));
      view.redraw();
      updateTypeNote();
    })();

    // Growth while the page is open.
    const loaded = rec.size + rec.missing;
    poll(
      async () => {
        let now;
        try {
          now = await api('cascade', { post: rec.root }, { signal });
        } catch (e) {
          if (e instanceof ApiError) return 10000;
          throw e;
        }
        metrics.update(now);
        const grown = now.size + now.missing - loaded;
        if (grown > 0 && !update.firstChild)
          update.append(
            h(
              'p',
              { class: 'notice' },
              h('span', { class: 'grown' }),
              ' ',
              h('button', { type: 'button', class: 'btn', onclick: () => window.dispatchEvent(new CustomEvent('cascaded:reload')) }, 'Redraw the tree'),
            ),
          );
        if (grown > 0) setText(update.querySelector('.grown'), `${int(grown)} new nodes since the tree was drawn.`);
        return 3000;
      },
      3000,
      signal,
    );
  }
}
