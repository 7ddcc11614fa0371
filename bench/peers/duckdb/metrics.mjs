// DuckDB peer: an analyst's batch route to the per-cascade metrics of DESIGN §3, in SQL over the
// NDJSON dump (@duckdb/node-api, an in-memory database, DuckDB's default threads).
//
// Usage: node bench/peers/duckdb/metrics.mjs DUMP.ndjson[.gz] [--top K] [--no-top]
//
// Load: read_ndjson with every key taken as JSON, then validated roughly like the server (post,
// actor, ts present and of the right type, ids of 1..256 bytes, integer ids as their decimal
// strings, no self-parent); duplicate posts dropped, the first in file order wins. Posts that
// would close a loop of parents (the server rejects the later one as `cycle`) are not checked
// for: they hang below no root, so the recursive walk never reaches them.
// Query: parents never seen become placeholder nodes; a recursive CTE walks every cascade from
// its root down (roots: posts without parent, and placeholders), giving each node its root and
// depth -> size, missing, depth, max_breadth, unique_actors, first/last ts. The Wiener index is
// W = sum over non-root nodes of s * (n - s), s the size of the node's subtree, with s counted
// from a second recursive CTE that lists every (node, ancestor) pair and groups by ancestor.
// Prints one JSON line like the other peers, with the top K by size, depth, max_breadth and
// structural_virality (ties broken by root id) for check_agree.py.
import { DuckDBInstance } from '@duckdb/node-api';

const args = process.argv.slice(2);
let file = null;
let topK = 10;
let withTop = true;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') topK = Number(args[++i]);
  else if (args[i] === '--no-top') withTop = false;
  else if (args[i] === '-h' || args[i] === '--help') {
    console.log('usage: node metrics.mjs DUMP.ndjson[.gz] [--top K] [--no-top]');
    process.exit(0);
  } else file = args[i];
}
if (!file || !Number.isInteger(topK) || topK < 1) {
  console.error('usage: node metrics.mjs DUMP.ndjson[.gz] [--top K] [--no-top]');
  process.exit(2);
}

const quote = (s) => `'${s.replaceAll("'", "''")}'`;
const now = () => Number(process.hrtime.bigint()) / 1e9;

// A JSON value as an id: a string of 1..256 bytes or a non-negative integer, as text; else NULL.
const idOf = (col) => `CASE
    WHEN json_type(${col}) = 'VARCHAR' AND octet_length(encode(${col} ->> '$')) BETWEEN 1 AND 256
      THEN ${col} ->> '$'
    WHEN json_type(${col}) = 'UBIGINT' THEN ${col} ->> '$'
  END`;

const LOAD = `
CREATE TABLE raw AS
  SELECT row_number() OVER () AS seq, post, actor, ts, parent
  FROM read_ndjson(${quote(file)},
                   columns = {post: 'JSON', actor: 'JSON', ts: 'JSON', parent: 'JSON'},
                   ignore_errors = true);
CREATE TABLE ev AS
  SELECT seq, ${idOf('post')} AS post, ${idOf('actor')} AS actor,
         CASE WHEN json_type(ts) IN ('UBIGINT', 'BIGINT') THEN CAST(ts AS BIGINT) END AS ts,
         parent IS NULL OR json_type(parent) = 'NULL' AS no_parent,
         ${idOf('parent')} AS parent
  FROM raw;
CREATE TABLE posts AS
  SELECT post, parent, actor, ts FROM ev
  WHERE post IS NOT NULL AND actor IS NOT NULL AND ts IS NOT NULL
    AND (no_parent OR parent IS NOT NULL) AND post IS DISTINCT FROM parent
  QUALIFY row_number() OVER (PARTITION BY post ORDER BY seq) = 1;
`;

const QUERY = `
CREATE TABLE nodes AS
  SELECT post AS id, parent, actor, ts, false AS placeholder FROM posts
  UNION ALL
  SELECT DISTINCT p.parent, NULL, NULL, NULL, true FROM posts p
  WHERE p.parent IS NOT NULL AND p.parent NOT IN (SELECT post FROM posts);
CREATE TABLE walk AS
  WITH RECURSIVE w(id, root, depth) AS (
    SELECT id, id, 0 FROM nodes WHERE parent IS NULL
    UNION ALL
    SELECT c.post, w.root, w.depth + 1 FROM w JOIN posts c ON c.parent = w.id
  )
  SELECT * FROM w;
CREATE TABLE subtree AS
  WITH RECURSIVE a(id, anc) AS (
    SELECT id, id FROM walk
    UNION ALL
    SELECT a.id, p.parent FROM a JOIN posts p ON p.post = a.anc WHERE p.parent IS NOT NULL
  )
  SELECT anc AS id, count(*) AS s FROM a GROUP BY anc;
CREATE TABLE cascades AS
  WITH per AS (
    SELECT w.root, count(n.actor) AS size, count(*) FILTER (WHERE n.placeholder) AS missing,
           count(*) AS n, max(w.depth) AS depth, count(DISTINCT n.actor) AS unique_actors,
           min(n.ts) AS first_ts, max(n.ts) AS last_ts
    FROM walk w JOIN nodes n USING (id) GROUP BY w.root
  ), breadth AS (
    SELECT root, max(c) AS max_breadth
    FROM (SELECT root, depth, count(*) AS c FROM walk GROUP BY root, depth) GROUP BY root
  ), wiener AS (
    SELECT w.root, sum(t.s * (per.n - t.s))::HUGEINT AS wiener
    FROM walk w JOIN subtree t USING (id) JOIN per USING (root)
    WHERE w.depth > 0 GROUP BY w.root
  )
  SELECT per.root, size, missing, depth, max_breadth, coalesce(wiener, 0) AS wiener,
         CASE WHEN n > 1 THEN coalesce(wiener, 0) / (n * (n - 1) / 2.0) ELSE 0.0 END
           AS structural_virality,
         unique_actors, first_ts, last_ts
  FROM per JOIN breadth USING (root) LEFT JOIN wiener USING (root);
`;

const BY = ['size', 'depth', 'max_breadth', 'structural_virality'];

async function main() {
  const instance = await DuckDBInstance.create(':memory:');
  const con = await instance.connect();

  const t0 = now();
  await con.run(LOAD);
  const t1 = now();
  await con.run(QUERY);
  const top = {};
  for (const by of BY) {
    const reader = await con.runAndReadAll(
      `SELECT root, size::BIGINT AS size, missing::BIGINT AS missing, depth::BIGINT AS depth,
              max_breadth::BIGINT AS max_breadth, wiener::BIGINT AS wiener,
              structural_virality::DOUBLE AS structural_virality,
              unique_actors::BIGINT AS unique_actors, first_ts, last_ts
       FROM cascades ORDER BY ${by} DESC, root LIMIT ${topK}`);
    top[by] = reader.getRowObjectsJS().map((r) => {
      const o = {};
      for (const [k, v] of Object.entries(r)) o[k] = typeof v === 'bigint' ? Number(v) : v;
      return o;
    });
  }
  const t2 = now();

  const counts = (await con.runAndReadAll(`
    SELECT (SELECT count(*) FROM raw) AS events, (SELECT count(*) FROM posts) AS accepted,
           (SELECT count(*) FROM cascades) AS cascades,
           (SELECT count(*) FROM nodes WHERE placeholder) AS placeholders,
           (SELECT count(*) FROM posts) - (SELECT count(*) FROM walk WHERE NOT EXISTS
             (SELECT 1 FROM nodes n WHERE n.id = walk.id AND n.placeholder)) AS unreached`))
    .getRowObjectsJS()[0];
  const num = (v) => Number(v);
  const result = {
    peer: 'duckdb',
    events: num(counts.events),
    accepted: num(counts.accepted),
    cascades: num(counts.cascades),
    placeholders: num(counts.placeholders),
    unreached_posts: num(counts.unreached),
    load_s: +(t1 - t0).toFixed(3),
    compute_s: +(t2 - t1).toFixed(3),
    total_s: +(t2 - t0).toFixed(3),
    wiener: 'SQL: sum of s*(n-s) over non-root nodes, subtree sizes from a recursive CTE of ancestors',
    duckdb_threads: num((await con.runAndReadAll(
      "SELECT current_setting('threads') AS t")).getRowObjectsJS()[0].t),
    top10_structural_virality: top.structural_virality.map((r) => r.root),
  };
  if (withTop) result.top = top;
  console.log(JSON.stringify(result));
  con.closeSync();
}

main().catch((err) => {
  console.error(`duckdb peer: ${err.message}`);
  process.exit(1);
});
