// One actor (account or page): its metrics (/v1/actor, polled every 3 s), its ego network and the
// lists behind it (/v1/actor_links), its cascades (/v1/actor_cascades) and the coordinated groups it
// is in (/v1/coordination, filtered here by membership). actor_links and actor_cascades are newer
// than some servers: an "unknown method" answer is shown as such, not as a broken page. Coordination
// answers 503 until the analytics worker ran: shown as "not computed yet" and asked again later.
import { api, poll, retrying, ApiError, NetworkError, isUnknownMethod } from '../api.js';
import { h, link, replace, actorHref, cascadeHref, errorBox, emptyBox } from '../dom.js';
import { int, num, utc, utcShort, duration, pagerank } from '../format.js';
import { createMetrics } from '../components/metrics.js';
import { createTable } from '../components/table.js';
import { labelBadge, labelName } from '../components/labels.js';
import { drawEgo, EGO_COLORS } from '../components/ego-network.js';

const LINKS = 25;
const CASCADES = 50;

function section(title, sub, ...body) {
  return h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', {}, title)), sub ? h('p', { class: 'panel-sub' }, sub) : null, ...body);
}

function unavailable(method) {
  return emptyBox(`Not available on this server.`, `cascaded answered “unknown method ${method}”: this view needs a newer server.`);
}

export function mountActor(root, { id }, signal) {
  document.title = `Actor ${id} · cascaded`;
  const page = h('div', { class: 'page actor' });
  root.append(page);
  page.append(h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/', 'Overview'), ' › ', 'Actor'));
  const loading = h('p', { class: 'muted loading' }, `Loading actor ${id}…`);
  page.append(loading);

  retrying(() => api('actor', { id }, { signal }), signal)
    .then(render)
    .catch((e) => {
      if (e.name === 'AbortError') return;
      loading.remove();
      page.append(
        h('div', { class: 'page-head' }, h('h1', {}, 'Actor ', h('code', {}, id))),
        errorBox(e.message, e instanceof ApiError && e.code === 404 ? 'No event from this actor has been received (ids are case-sensitive).' : null),
      );
      document.body.dataset.ready = '1';
    });

  function render(actor) {
    loading.remove();
    const typeBadge = h('span', { class: `type type-${actor.actor_type}` }, actor.actor_type);
    const metrics = createMetrics([
      { key: 'posts', label: 'Posts', fmt: int },
      { key: 'roots', label: 'Original posts', fmt: int, help: 'posts without a parent' },
      { key: 'shares', label: 'Reshares made', fmt: int },
      { key: 'reshares_received', label: 'Reshares received', fmt: int, help: 'posts whose direct parent is this actor’s post' },
      { key: 'amplifiers', label: 'Amplifiers', fmt: int, help: 'distinct other actors who reshared it' },
      { key: 'reach', label: 'Reach', fmt: int, help: 'posts with one of its posts as a proper ancestor' },
      { key: 'cascades', label: 'Cascades', fmt: int },
      { key: 'first_ts', label: 'First post (UTC)', fmt: utcShort },
      { key: 'last_ts', label: 'Last post (UTC)', fmt: utcShort },
      {
        key: 'pagerank',
        label: 'PageRank',
        fmt: (v, r) => (v === null || v === undefined ? 'not computed yet' : `${pagerank(v)}`),
        help: 'PageRank on the amplification graph, from the last analytics snapshot',
      },
      { key: 'pagerank_age_ms', label: 'PageRank age', fmt: (v) => (v === null || v === undefined ? '—' : duration(v)) },
    ]);
    metrics.update(actor);
    page.append(
      h('div', { class: 'page-head' }, h('h1', {}, 'Actor ', h('code', { class: 'id' }, actor.id), ' ', typeBadge)),
      metrics.el,
    );

    // --- ego network and its lists --------------------------------------------------------------
    const egoBox = h('div', { class: 'ego-box' }, h('p', { class: 'muted' }, 'Loading links…'));
    const linkTable = () =>
      createTable({
        key: (r) => r.actor,
        empty: 'None.',
        columns: [
          { title: 'Actor', node: (r) => link(actorHref(r.actor), r.actor, { class: 'id' }), sig: (r) => r.actor },
          { title: 'Type', node: (r) => h('span', { class: `type type-${r.actor_type}` }, r.actor_type), sig: (r) => r.actor_type },
          { title: 'Reshares', cls: 'num', text: (r) => int(r.weight) },
          { title: 'Reach', cls: 'num', text: (r) => int(r.reach) },
        ],
      });
    const inTable = linkTable();
    const outTable = linkTable();
    const lists = h(
      'div',
      { class: 'link-lists' },
      h('h3', {}, h('span', { class: 'dot', style: `background:${EGO_COLORS.IN}` }), ` Amplified by (they reshared ${actor.id})`),
      h('div', { class: 'table-wrap' }, inTable.el),
      h('h3', {}, h('span', { class: 'dot', style: `background:${EGO_COLORS.OUT}` }), ` Amplifies (${actor.id} reshared them)`),
      h('div', { class: 'table-wrap' }, outTable.el),
    );
    page.append(
      h(
        'div',
        { class: 'grid-ego' },
        section(
          'Ego network',
          `Left: who reshared ${actor.id}’s posts; right: whose posts it reshared (purple: both). Size: reach; width: reshares. Click an actor to open it.`,
          egoBox,
        ),
        section('Links', `Heaviest first, up to ${LINKS} each way.`, lists),
      ),
    );
    retrying(() => api('actor_links', { id: actor.id, limit: LINKS, direction: 'both' }, { signal }), signal)
      .then((links) => {
        const ins = links.filter((l) => l.direction === 'in');
        const outs = links.filter((l) => l.direction === 'out');
        inTable.update(ins);
        outTable.update(outs);
        if (!links.length) replace(egoBox, emptyBox('No links.', `Nobody reshared ${actor.id}, and it reshared nobody else.`));
        else replace(egoBox, drawEgo(actor, links).el);
      })
      .catch((e) => {
        if (e.name === 'AbortError') return;
        const box = isUnknownMethod(e) ? unavailable('actor_links') : errorBox(e.message);
        replace(egoBox, box);
        replace(lists, isUnknownMethod(e) ? unavailable('actor_links') : errorBox(e.message));
      });

    // --- cascades -------------------------------------------------------------------------------
    const cascTable = createTable({
      key: (r) => r.root,
      empty: 'No cascades.',
      rowAttrs: (r) => ({ 'data-testid': 'actor-cascade-row', 'data-post': r.root }),
      columns: [
        { title: 'Root post', node: (r) => link(cascadeHref(r.root), r.root, { class: 'id' }), sig: (r) => r.root },
        { title: 'Label', node: (r) => labelBadge(r.label), sig: (r) => labelName(r.label) },
        { title: 'Its posts', cls: 'num', help: `${actor.id}’s posts in this cascade`, text: (r) => int(r.actor_posts) },
        { title: 'Size', cls: 'num', text: (r) => int(r.size) },
        { title: 'Depth', cls: 'num', text: (r) => int(r.depth) },
        { title: 'Virality', cls: 'num', text: (r) => num(r.structural_virality) },
        {
          title: 'Root actor',
          node: (r) => (r.root_actor ? link(actorHref(r.root_actor), r.root_actor, { class: 'id' }) : h('span', { class: 'muted' }, '—')),
          sig: (r) => r.root_actor ?? '',
        },
        { title: 'First post', cls: 'nowrap', text: (r) => utc(r.first_ts) },
        { title: 'Duration', cls: 'nowrap', text: (r) => duration(r.duration_ms) },
      ],
    });
    const cascBox = h('div', { class: 'table-wrap' }, cascTable.el);
    page.append(section('Cascades', `Cascades ${actor.id} posted in, largest first (up to ${CASCADES}).`, cascBox));
    retrying(() => api('actor_cascades', { id: actor.id, limit: CASCADES }, { signal }), signal)
      .then((rows) => cascTable.update(rows))
      .catch((e) => {
        if (e.name === 'AbortError') return;
        replace(cascBox, isUnknownMethod(e) ? unavailable('actor_cascades') : errorBox(e.message));
      });

    // --- coordination ---------------------------------------------------------------------------
    const coordBox = h('div', { class: 'coord-box' }, h('p', { class: 'muted' }, 'Loading…'));
    page.append(
      section(
        'Coordinated groups',
        'Groups of accounts that repeatedly posted the same links within seconds of each other (defaults: 10 s window, 3 links, ratio 0.3).',
        coordBox,
      ),
    );
    poll(
      async () => {
        let groups;
        try {
          groups = await api('coordination', { limit: 1000 }, { signal });
        } catch (e) {
          if (e instanceof ApiError && e.code === 503) {
            replace(coordBox, emptyBox('Not computed yet.', `${e.message}. This panel asks again every 10 s.`));
            return 10000;
          }
          if (!(e instanceof NetworkError)) replace(coordBox, errorBox(e.message));
          throw e;
        }
        const mine = groups.filter((g) => Array.isArray(g.members) && g.members.includes(actor.id));
        if (!mine.length) {
          replace(coordBox, h('p', { class: 'muted', 'data-testid': 'coordination-none' }, `${actor.id} is in none of the ${int(groups.length)} coordinated groups found.`));
          return 60000;
        }
        replace(
          coordBox,
          mine.map((g) =>
            h(
              'div',
              { class: 'coord-group', 'data-testid': 'coordination-group' },
              h(
                'p',
                {},
                h('strong', {}, `Group of ${int(g.members.length)}`),
                ` · ${int(g.contents ?? g.content_keys.length)} shared links · ${int(g.pairs)} pairs · weight ${int(g.weight)} · median gap `,
                h('strong', {}, duration(g.median_gap_ms)),
                g.exact === false ? h('span', { class: 'notice-inline' }, ' · approximate (a crowded key was capped)') : null,
              ),
              h('p', { class: 'members' }, 'Members: ', g.members.map((m, i) => [i ? ', ' : '', m === actor.id ? h('strong', { class: 'id' }, m) : link(actorHref(m), m, { class: 'id' })])),
              h('details', {}, h('summary', {}, `Links they co-shared (${int(g.content_keys.length)})`), h('ul', { class: 'keys' }, g.content_keys.map((k) => h('li', { class: 'id' }, k)))),
            ),
          ),
        );
        return 60000;
      },
      10000,
      signal,
    );

    document.body.dataset.ready = '1';

    // The actor's figures move while events stream in.
    let first = true;
    poll(
      async () => {
        if (first) return void (first = false);
        try {
          metrics.update(await api('actor', { id: actor.id }, { signal }));
        } catch (e) {
          if (e instanceof ApiError) return 10000;
          throw e;
        }
      },
      3000,
      signal,
    );
  }
}
