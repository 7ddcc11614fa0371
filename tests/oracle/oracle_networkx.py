#!/usr/bin/python3
"""Oracle test: cascaded's engine against networkx and igraph.

Usage: oracle_networkx.py ENGINE_DUMP TWITTER15_SAMPLE [--seed N] [--trees N] [--full]
                          [--keep DIR] [--no-shrink]

Builds event streams, feeds them to ENGINE_DUMP (tests/oracle/engine_dump.c, which applies them to
libcascade's engine and prints the metrics asked for) and compares every metric of DESIGN §3 that
the engine maintains with values computed here, from the same events, by code that is not ours:
  - Wiener index: networkx.wiener_index on the undirected tree (igraph's all-pairs distances as a
    second opinion, and instead of networkx on trees too large for its pure-Python O(n^2) within
    the time budget; --full uses networkx everywhere);
  - structural virality W / (n(n-1)/2), depth (largest shortest-path distance from the root),
    max breadth (most nodes at one BFS level), per-node depths of the tree walk;
  - actor reach (networkx.descendants, distinct), reshares received, amplifiers, roots/shares,
    cascades, first/last ts, actor type; the amplification graph's edge count.
Integers must match exactly, W exactly, structural virality to 1e-12 relative.

Streams:
  random:  a few hundred random trees (random recursive, preferential attachment, star, chain,
           caterpillar, k-ary; 1 to 2000 nodes), each delivered in its own random order (shuffled,
           children before parents, BFS, post-order), riffled together; some nodes never
           delivered (placeholders: `missing`), resends (duplicates, some with altered fields that
           must be ignored), cycle and self-parent attempts, invalid events; checked half-way and
           at the end.
  twitter: real Twitter15 cascades, in the file's order and shuffled: both must give the metrics
           networkx computes from the file.
The expected state is computed from the events the model accepts (DESIGN §2: duplicates ignored,
late parents under placeholders that are filled in later), never from the generator's intent.

Exit status 0 when every check passed, 1 otherwise. The last line is `N passed, M failed`. On a
failure the script is kept, and the failing case is shrunk to a small reproducer when it can be.
"""
import argparse
import ast
import collections
import gzip
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import igraph
import networkx as nx

NX_LIMIT = 400  # largest tree networkx.wiener_index gets by default (pure Python, O(n^2))
SV_RTOL = 1e-12
OUTCOMES = ["ok", "dup", "missing_post", "missing_actor", "missing_ts", "bad_type", "too_long",
            "self_parent", "cycle", "nomem"]  # event_outcome_name(), in enum order
KINDS = {"post": 0, "share": 1, "quote": 2, "reply": 3}
BASE_TS = 1_700_000_000_000


class Ev:
    """One event as sent. Fields are strings or None (key absent). `expect` is set only for
    events that validation must reject: their outcome does not depend on engine state."""

    __slots__ = ("post", "parent", "actor", "ts", "actor_type", "content", "label", "kind",
                 "expect")

    def __init__(self, post, parent, actor, ts, actor_type=None, content=None, label=None,
                 kind=None, expect=None):
        self.post, self.parent, self.actor, self.ts = post, parent, actor, ts
        self.actor_type, self.content, self.label, self.kind = actor_type, content, label, kind
        self.expect = expect

    def line(self):
        fields = [self.post, self.parent, self.actor,
                  None if self.ts is None else str(self.ts),
                  self.actor_type, self.content, self.label, self.kind]
        while len(fields) > 4 and fields[-1] is None:
            fields.pop()
        line = "\t".join(esc_field(f) for f in fields)
        if line[:1] in ("?", "#"):  # would read as a query or a comment
            line = f"\\x{ord(line[0]):02x}{line[1:]}"
        return line


ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\x7f\\]")


def esc(s):
    return NEEDS_ESCAPE.sub(lambda m: ESCAPES.get(m[0]) or f"\\x{ord(m[0]):02x}", s)


def esc_field(s):
    if s is None:
        return ""
    if s == "":
        return "\\E"
    return esc(s)


def unesc(s):
    if s == "\\N":
        return None
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and s[i + 1] == "x":
            out.append(chr(int(s[i + 2:i + 4], 16)))
            i += 4
        elif c == "\\":
            out.append(UNESCAPES[s[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The model: which events the engine must accept, and the resulting forest (DESIGN §2).

class Model:
    def __init__(self):
        self.ev = {}                # post -> accepted Ev
        self.order = []             # accepted posts, in order
        self.seq = {}               # post -> its index in order
        self.children = collections.defaultdict(list)  # parent id -> child posts
        self.actor_type = {}        # actor -> first explicit type
        self.outcomes = collections.Counter()

    def outcome(self, e):
        """What the engine must answer for e, without applying it."""
        if e.expect is not None:
            return e.expect
        if e.post in self.ev:
            return "dup"
        if e.parent == e.post:
            return "self_parent"
        if e.post not in self.children:
            return "ok"  # nothing hangs below e.post yet: no parent chain can lead back to it
        p = e.parent
        while p is not None:
            if p == e.post:
                return "cycle"
            if p not in self.ev:
                break
            p = self.ev[p].parent
        return "ok"

    def apply(self, e):
        o = self.outcome(e)
        self.outcomes[o] += 1
        if o == "ok":
            self.ev[e.post] = e
            self.seq[e.post] = len(self.order)
            self.order.append(e.post)
            if e.parent is not None:
                self.children[e.parent].append(e.post)
            if e.actor_type is not None and e.actor not in self.actor_type:
                self.actor_type[e.actor] = e.actor_type
        return o

    def component(self, post):
        """A model of the cascade that holds post alone: its accepted events, in order."""
        root = post
        while root in self.ev and self.ev[root].parent is not None:
            root = self.ev[root].parent
        nodes = [root] + self.descendants_observed(root)
        sub = Model()
        for p in sorted((p for p in nodes if p in self.ev), key=self.seq.__getitem__):
            sub.apply(self.ev[p])
        return sub, root

    def descendants_observed(self, node):
        out, stack = [], list(self.children.get(node, ()))
        while stack:
            c = stack.pop()
            out.append(c)
            stack.extend(self.children.get(c, ()))
        return out


class Oracle:
    """Expected metrics for a model's current state, from networkx (and igraph)."""

    def __init__(self, model, full_nx, stats):
        self.m = model
        self.full_nx = full_nx
        self.stats = stats  # shared counters: networkx / igraph trees, oracle disagreements
        ev = model.ev
        placeholders = {e.parent for e in ev.values()
                        if e.parent is not None and e.parent not in ev}
        self.placeholders = placeholders
        self.digraph = nx.DiGraph()  # parent -> child, every node of the forest
        self.digraph.add_nodes_from(ev)
        self.digraph.add_nodes_from(placeholders)
        self.digraph.add_edges_from((e.parent, p) for p, e in ev.items() if e.parent is not None)
        self.root_of = {}
        self.members = collections.defaultdict(list)
        for comp in nx.weakly_connected_components(self.digraph):
            roots = [n for n in comp if self.digraph.in_degree(n) == 0]
            assert len(roots) == 1, "a component of the model is not a tree"
            for n in comp:
                self.root_of[n] = roots[0]
            self.members[roots[0]] = list(comp)
        self._cascades = {}

    # -- cascades -------------------------------------------------------------------------------
    def wiener(self, tree):
        n = tree.number_of_nodes()
        ix = {v: i for i, v in enumerate(tree)}
        g = igraph.Graph(n=n, edges=[(ix[a], ix[b]) for a, b in tree.edges()])
        w_ig = sum(map(sum, g.distances())) // 2 if n > 1 else 0
        if n <= NX_LIMIT or self.full_nx:
            w_nx = int(nx.wiener_index(tree)) if n > 1 else 0
            self.stats["wiener_networkx"] += 1
            if w_nx != w_ig:
                self.stats["oracle_disagreements"] += 1
                print(f"ORACLE: networkx W {w_nx} != igraph W {w_ig} (n={n})")
            return w_nx
        self.stats["wiener_igraph_only"] += 1
        return w_ig

    def cascade(self, root):
        if root in self._cascades:
            return self._cascades[root]
        ev = self.m.ev
        nodes = self.members[root]
        tree = self.digraph.subgraph(nodes).to_undirected(as_view=False)
        n = len(nodes)
        dist = nx.single_source_shortest_path_length(tree, root)
        levels = collections.Counter(dist.values())
        w = self.wiener(tree)
        obs = [ev[v] for v in nodes if v in ev]
        labelled = [e for e in obs if e.label is not None]
        r = ev.get(root)
        if r is not None and r.label is not None:
            label = r.label
        elif not labelled:
            label = None
        else:
            # engine.h: "else the earliest (by ts) labelled post's"; a tie is unspecified
            first = min(e.ts for e in labelled)
            tied = {e.label for e in labelled if e.ts == first}
            label = tied.pop() if len(tied) == 1 else ANY
        c = {
            "root": root,
            "root_actor": r.actor if r is not None else None,
            "size": len(obs),
            "missing": n - len(obs),
            "depth": max(dist.values()),
            "max_breadth": max(levels.values()),
            "wiener": w,
            "sv": w / (n * (n - 1) / 2) if n > 1 else 0.0,
            "unique_actors": len({e.actor for e in obs}),
            "first_ts": min(e.ts for e in obs),  # a placeholder has an observed child
            "last_ts": max(e.ts for e in obs),
            "content": r.content if r is not None else None,
            "label": label,
            "_dist": dist,
        }
        c["duration_ms"] = c["last_ts"] - c["first_ts"]
        self._cascades[root] = c
        return c

    # -- actors ---------------------------------------------------------------------------------
    def actors(self):
        ev = self.m.ev
        posts = collections.defaultdict(list)
        for p in self.m.order:
            posts[ev[p].actor].append(p)
        out = {}
        reshares = collections.Counter()
        amplifiers = collections.defaultdict(set)
        edges = set()
        for p, e in ev.items():
            par = ev.get(e.parent) if e.parent is not None else None
            if par is None:
                continue
            reshares[par.actor] += 1
            if par.actor != e.actor:
                amplifiers[par.actor].add(e.actor)
                edges.add((e.actor, par.actor))
        for a, ps in posts.items():
            reach = set()
            # BFS only from posts not already inside the reach: the regions stay disjoint
            for p in sorted(ps, key=lambda q: self._depth(q)):
                if p not in reach:
                    reach |= nx.descendants(self.digraph, p)
            tss = [ev[p].ts for p in ps]
            out[a] = {
                "posts": len(ps),
                "roots": sum(1 for p in ps if ev[p].parent is None),
                "shares": sum(1 for p in ps if ev[p].parent is not None),
                "reshares_received": reshares[a],
                "amplifiers": len(amplifiers[a]),
                "reach": len(reach),
                "cascades": len({self.root_of[p] for p in ps}),
                "first_ts": min(tss),
                "last_ts": max(tss),
                "actor_type": self.m.actor_type.get(a, "account"),
            }
        self.amplification_edges = len(edges)
        return out

    def _depth(self, p):
        return self.cascade(self.root_of[p])["_dist"][p]

    def expected_stats(self):
        return {
            "posts": len(self.m.ev),
            "placeholders": len(self.placeholders),
            "cascades": len(self.members),
            "actors": len({e.actor for e in self.m.ev.values()}),
            "edges": self.amplification_edges,
            **{k: self.m.outcomes[k] for k in OUTCOMES},
        }


class _Any:
    def __eq__(self, other):
        return True

    def __repr__(self):
        return "<any>"


ANY = _Any()


# ---------------------------------------------------------------------------------------------
# Scripts: events and queries for engine_dump, with what each query must answer.

class Script:
    def __init__(self, name):
        self.name = name
        self.lines = []
        self.events = []            # (line number, Ev, expected outcome)
        self.queries = []           # (kind, key, expected)
        self.model = Model()

    def event(self, e):
        o = self.model.apply(e)
        self.lines.append(e.line())
        self.events.append((len(self.lines), e, o))
        return o

    def checkpoint(self, rng, full_nx, stats, trees=0, actors=True):
        """Queries every cascade (through a random member), every actor, the stats, and the tree
        of a few cascades, with their expected answers."""
        orc = Oracle(self.model, full_nx, stats)
        roots = sorted(orc.members)
        for root in roots:
            via = rng.choice(orc.members[root])
            self._query("cascade", via, orc.cascade(root))
        for root in rng.sample(roots, min(trees, len(roots))):
            self._query("tree", root, self._tree_expect(orc, root))
        acts = orc.actors()
        if actors:
            for a in sorted(acts):
                self._query("actor", a, acts[a])
        self._query("cascade", "never-seen-post", None)
        self._query("actor", "never-seen-actor", None)
        self.lines.append("?stats")
        self.queries.append(("stats", None, orc.expected_stats()))
        return orc

    def spot_check(self, rng, full_nx, stats, n):
        """Queries the cascades of n random accepted posts: cheap checks of intermediate states."""
        m = self.model
        for post in rng.sample(m.order, min(n, len(m.order))):
            sub, root = m.component(post)
            self._query("cascade", post, Oracle(sub, full_nx, stats).cascade(root))

    def _query(self, kind, key, expect):
        self.lines.append(f"?{kind}\t{esc_field(key)}")
        self.queries.append((kind, key, expect))

    def _tree_expect(self, orc, root):
        ev = self.model.ev
        c = orc.cascade(root)
        nodes = {}
        for v, d in c["_dist"].items():
            e = ev.get(v)
            if e is None:
                nodes[v] = (None, None, 0, d, None, 1)
            else:
                kind = KINDS[e.kind] if e.kind else (0 if e.parent is None else 1)
                nodes[v] = (e.parent, e.actor, e.ts, d, kind, 0)
        return nodes

    def text(self):
        return "\n".join(self.lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Running engine_dump and judging its answers.

class Result:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []  # (script name, what, details)

    def check(self, script, what, problems):
        if problems:
            self.failed += 1
            self.failures.append((script, what, problems))
        else:
            self.passed += 1


def run_dump(binary, text, timeout=600):
    p = subprocess.run([binary], input=text.encode("utf-8"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


CASCADE_COLS = ["root", "root_actor", "size", "missing", "depth", "max_breadth", "wiener", "sv",
                "unique_actors", "first_ts", "last_ts", "duration_ms", "content", "label"]
ACTOR_COLS = ["posts", "roots", "shares", "reshares_received", "amplifiers", "reach", "cascades",
              "first_ts", "last_ts", "actor_type"]
INT_COLS = {"size", "missing", "depth", "max_breadth", "wiener", "unique_actors", "first_ts",
            "last_ts", "duration_ms", "posts", "roots", "shares", "reshares_received",
            "amplifiers", "reach", "cascades"}


def compare_fields(expect, got):
    problems = []
    for k, want in expect.items():
        if k.startswith("_"):
            continue
        have = got.get(k)
        if k == "sv":
            ok = abs(have - want) <= SV_RTOL * max(abs(want), 1e-300) or have == want
        else:
            ok = want == have
        if not ok:
            problems.append(f"{k}: expected {want!r}, engine {have!r}")
    return problems


def parse_cascade(cols):
    got = dict(zip(CASCADE_COLS, cols))
    for k in CASCADE_COLS:
        if k in INT_COLS:
            got[k] = int(got[k])
        elif k == "sv":
            got[k] = float(got[k])
        else:
            got[k] = unesc(got[k])
    return got


def parse_actor(cols):
    got = dict(zip(ACTOR_COLS, cols))
    for k in ACTOR_COLS:
        got[k] = int(got[k]) if k in INT_COLS else got[k]
    return got


def judge(script, rc, out, err, result):
    """Compares engine_dump's output with the script's expectations; returns the failures of
    this run (also recorded in result)."""
    name = script.name
    before = len(result.failures)
    if rc != 0:
        result.check(name, "engine_dump exit status",
                     [f"exit status {rc}", *err.strip().splitlines()[-20:]])
    queries = collections.deque(script.queries)
    outcomes = {}
    tree_nodes = []
    end_seen = False
    for raw in out.splitlines():
        cols = raw.split("\t")
        tag = cols[0]
        if tag == "outcome":
            outcomes[int(cols[1])] = cols[3]
            continue
        if tag == "node":
            tree_nodes.append(cols[2:])
            continue
        if tag == "bad":
            result.check(name, f"script line {cols[1]}", [f"engine_dump: bad line: {cols[2]}"])
            continue
        if tag == "end":
            end_seen = True
            continue
        if not queries:
            result.check(name, "output", [f"unexpected line {raw!r}"])
            continue
        kind, key, expect = queries.popleft()
        what = f"{kind} {key!r}"
        if tag == "stats":
            got = dict(kv.split("=", 1) for kv in cols[1:])
            problems = [f"{k}: expected {v}, engine {got.get(k)}" for k, v in expect.items()
                        if str(v) != got.get(k)]
            result.check(name, what, problems)
        elif tag in ("nocascade", "noactor"):
            result.check(name, what, [] if expect is None else ["engine: unknown (-ENOENT)"])
        elif expect is None:
            result.check(name, what, [f"expected unknown, engine answered {raw!r}"])
        elif tag == "cascade":
            result.check(name, what, compare_fields(expect, parse_cascade(cols[2:])))
        elif tag == "actor":
            result.check(name, what, compare_fields(expect, parse_actor(cols[2:])))
        elif tag == "tree":
            result.check(name, what, compare_tree(expect, tree_nodes, int(cols[2])))
            tree_nodes = []
        else:
            result.check(name, what, [f"unexpected line {raw!r}"])
    if queries:
        result.check(name, "output", [f"{len(queries)} queries unanswered (engine_dump died?)"])
    if not end_seen:
        result.check(name, "output", ["no `end` line (engine_dump died?)"])
    want = {ln: o for ln, _, o in script.events if o != "ok"}
    problems = []
    script.wrong_outcomes = []
    for ln in sorted(set(want) | set(outcomes)):
        if want.get(ln, "ok") != outcomes.get(ln, "ok"):
            script.wrong_outcomes.append(ln)
            problems.append(f"line {ln} ({script.lines[ln - 1][:80]!r}): expected "
                            f"{want.get(ln, 'ok')}, engine {outcomes.get(ln, 'ok')}")
    result.check(name, "event outcomes", problems[:20] + (
        [f"... {len(problems) - 20} more"] if len(problems) > 20 else []))
    return result.failures[before:]


def compare_tree(expect, nodes, count):
    problems = []
    if count != len(expect) or len(nodes) != len(expect):
        problems.append(f"nodes: expected {len(expect)}, engine walked {len(nodes)} "
                        f"and returned {count}")
    last_depth = 0
    seen = set()
    for cols in nodes:
        post, parent, actor = unesc(cols[0]), unesc(cols[1]), unesc(cols[2])
        ts, depth, kind, ph = int(cols[3]), int(cols[4]), int(cols[5]), int(cols[6])
        if depth < last_depth:
            problems.append(f"{post!r}: depth {depth} after {last_depth}: not breadth-first")
        last_depth = depth
        if post in seen:
            problems.append(f"{post!r} walked twice")
        seen.add(post)
        if post not in expect:
            problems.append(f"{post!r} is not in the cascade")
            continue
        e_parent, e_actor, e_ts, e_depth, e_kind, e_ph = expect[post]
        got = (parent, actor, ts, depth, kind if e_kind is not None else None, ph)
        if got != (e_parent, e_actor, e_ts, e_depth, e_kind, e_ph):
            problems.append(f"{post!r}: expected (parent, actor, ts, depth, kind, placeholder) "
                            f"{(e_parent, e_actor, e_ts, e_depth, e_kind, e_ph)}, engine {got}")
        if len(problems) > 10:
            problems.append("...")
            break
    return problems


# ---------------------------------------------------------------------------------------------
# Random trees.

def tree_shape(rng, n, shape):
    """Parent index of each node 1..n-1 (node 0 is the root)."""
    par = [None]
    if shape == "recursive":
        par += [rng.randrange(i) for i in range(1, n)]
    elif shape == "preferential":
        targets = [0]  # node i appears 1 + (its child count) times: degree-proportional choice
        for i in range(1, n):
            p = rng.choice(targets)
            par.append(p)
            targets += [p, i]
    elif shape == "star":
        par += [0] * (n - 1)
    elif shape == "chain":
        par += list(range(n - 1))
    elif shape == "caterpillar":
        spine = max(1, n // rng.randint(2, 6))
        par += list(range(spine - 1))
        par += [rng.randrange(spine) for _ in range(spine, n)]
    elif shape == "kary":
        k = rng.randint(2, 4)
        par += [(i - 1) // k for i in range(1, n)]
    return par


def delivery_order(rng, par, mode):
    n = len(par)
    kids = collections.defaultdict(list)
    for i in range(1, n):
        kids[par[i]].append(i)
    bfs = [0]
    for v in bfs:
        bfs.extend(kids[v])
    if mode == "bfs":
        return bfs
    if mode == "reverse":  # every parent after all its children: every arrival joins subtrees
        return bfs[::-1]
    if mode == "postorder":
        out, stack = [], [(0, False)]
        while stack:
            v, done = stack.pop()
            if done:
                out.append(v)
            else:
                stack.append((v, True))
                stack.extend((c, False) for c in kids[v])
        return out
    order = list(range(n))
    rng.shuffle(order)
    return order


ODD_POSTS = ["t{}\t{}\\odd", "?t{}-{}", "#t{}-{}", "t{}\0{}", "t{}\n{}\r", "t{} {} ünï"]
ODD_ACTORS = ["user with space", "tab\there", "back\\slash", "ünïcødé-名前", "page:Daily News",
              "page:Truth Hub", "123456789", "x", "?who", "#tag", "nul\0actor"]


def random_script(rng, n_trees, full_nx, stats):
    s = Script("random")
    actors = [f"a{i}" for i in range(60)] + ODD_ACTORS
    weights = [1.0 / (i + 1) for i in range(len(actors))]
    rng.shuffle(weights)
    labels = ["false", "true", "mixed", "unverified"]
    contents = [f"https://example.org/claim/{i}" for i in range(40)] + ["tab\tcontent"]

    trees = []
    sizes = ([1, 2, 2, 3] + [rng.randint(1, 40) for _ in range(n_trees * 6 // 10)]
             + [rng.randint(40, 200) for _ in range(n_trees * 3 // 10)])
    while len(sizes) < n_trees - 10:
        sizes.append(rng.randint(200, 600))
    sizes += [2000, 2000, 1500, 1200, 1000, 900, 800, 700]
    shapes = ["recursive", "preferential", "star", "chain", "caterpillar", "kary"]
    big_shapes = ["chain", "star", "recursive", "preferential", "caterpillar", "kary", "chain",
                  "recursive"]
    for t, n in enumerate(sizes):
        shape = big_shapes[t - len(sizes) + 8] if t >= len(sizes) - 8 else rng.choice(shapes)
        par = tree_shape(rng, n, shape)
        ids = [f"t{t}-{i}" if rng.random() > 0.02 else rng.choice(ODD_POSTS).format(t, i)
               for i in range(n)]
        ts = [BASE_TS + rng.randrange(10**9)]
        for i in range(1, n):
            ts.append(ts[par[i]] + rng.choice([0, rng.randrange(1, 3_600_000)]))
        evs = []
        for i in range(n):
            a = rng.choices(actors, weights)[0]
            atype = None
            if rng.random() < 0.1:
                atype = "page" if a.startswith("page:") and rng.random() < 0.8 else "account"
            parent = ids[par[i]] if i else None
            kind = None
            if parent is not None and rng.random() < 0.05:
                kind = rng.choice(["share", "quote", "reply"])
            evs.append(Ev(ids[i], parent, a, ts[i], atype,
                          rng.choice(contents) if (i == 0 and rng.random() < 0.7)
                          or rng.random() < 0.03 else None,
                          rng.choice(labels) if (i == 0 and rng.random() < 0.5)
                          or rng.random() < 0.01 else None, kind))
        mode = rng.choice(["shuffle", "shuffle", "reverse", "bfs", "postorder"])
        order = delivery_order(rng, par, mode)
        if n > 3 and rng.random() < 0.15:  # withhold a few: placeholders that stay
            withheld = set(rng.sample(range(n), rng.randint(1, min(4, n // 2))))
            order = [i for i in order if i not in withheld]
        trees.append([evs[i] for i in order])

    # riffle the trees together, each keeping its own order
    stream = []
    cursors = [0] * len(trees)
    live = [t for t in range(len(trees)) if trees[t]]
    pending = [(i, t) for t in live for i in range(len(trees[t]))]
    rng.shuffle(pending)
    for _, t in pending:
        stream.append(trees[t][cursors[t]])
        cursors[t] += 1

    invalid = [
        Ev(None, None, "a1", BASE_TS, expect="missing_post"),
        Ev("inv-1", None, None, BASE_TS, expect="missing_actor"),
        Ev("inv-2", None, "a1", None, expect="missing_ts"),
        Ev("p" * 257, None, "a1", BASE_TS, expect="too_long"),
        Ev("inv-3", None, "a" * 257, BASE_TS, expect="too_long"),
        Ev("inv-4", None, "a1", BASE_TS, content="c" * 2049, expect="too_long"),
        Ev("inv-5", None, "a1", BASE_TS, label="l" * 65, expect="too_long"),
        Ev("inv-6", "", "a1", BASE_TS, expect="bad_type"),
        Ev("", None, "a1", BASE_TS, expect="missing_post"),
        Ev("inv-7", None, "", BASE_TS, expect="missing_actor"),
        Ev("inv-8", "inv-8", "a1", BASE_TS, expect="self_parent"),
        Ev("inv-9", None, "a1", BASE_TS, actor_type="robot", expect="bad_type"),
        Ev("inv-10", "t0-0", "a1", BASE_TS, kind="like", expect="bad_type"),
    ]
    # and the longest valid fields, accepted
    edge_ok = [Ev("q" * 256, None, "b" * 256, BASE_TS, content="c" * 2048, label="l" * 64),
               Ev("edge-child", "q" * 256, "b" * 256, BASE_TS + 1)]
    for e in invalid + edge_ok:
        stream.insert(rng.randrange(len(stream) + 1), e)
    # resends: identical, or altered (the altered fields must be ignored)
    for _ in range(len(stream) // 50):
        i = rng.randrange(len(stream))
        e = stream[i]
        if e.expect is not None:
            continue
        if rng.random() < 0.5:
            e = Ev(e.post, rng.choice([None, "t0-0", e.parent]), rng.choice(actors),
                   e.ts + 5, "page", "altered", "altered")
        stream.insert(rng.randrange(i + 1, len(stream) + 1), e)

    half = len(stream) // 2
    spots = set(rng.sample(range(len(stream)), min(40, len(stream))))
    for k, e in enumerate(stream):
        if k == half:
            s.checkpoint(rng, full_nx, stats, trees=5)
        elif k in spots:
            s.spot_check(rng, full_nx, stats, 3)
        m = s.model
        if e.expect is None and e.post not in m.ev and e.post in m.children:
            # e fills a placeholder that has observed posts below it: first try to hang it under
            # one of them (a cycle) or under itself; both must be rejected and change nothing
            r = rng.random()
            if r < 0.2:
                below = m.descendants_observed(e.post)
                s.event(Ev(e.post, rng.choice(below), e.actor, e.ts))
            elif r < 0.25:
                s.event(Ev(e.post, e.post, e.actor, e.ts))
        s.event(e)
    s.checkpoint(rng, full_nx, stats, trees=12)
    return s


# ---------------------------------------------------------------------------------------------
# Twitter15.

def twitter_events(path):
    evs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            evs.append(Ev(str(d["post"]), None if d.get("parent") is None else str(d["parent"]),
                          str(d["actor"]), int(d["ts"]), d.get("actor_type"), d.get("content"),
                          d.get("label"), d.get("kind")))
    return evs


def twitter_scripts(evs, rng, full_nx, stats):
    """The sample in its file order (parents first), then shuffled (parents late): the final
    state, hence the expected answers (computed once), must be the same."""
    s1 = Script("twitter15 in file order")
    for e in evs:
        s1.event(e)
    n_events = len(s1.lines)
    s1.checkpoint(rng, full_nx, stats, trees=4)
    shuffled = list(evs)
    rng.shuffle(shuffled)
    s2 = Script("twitter15 shuffled")
    for e in shuffled:
        s2.event(e)
    assert s2.model.ev.keys() == s1.model.ev.keys() and s2.model.outcomes == s1.model.outcomes
    s2.lines += s1.lines[n_events:]
    s2.queries = s1.queries
    return s1, s2


# ---------------------------------------------------------------------------------------------
# Shrinking a failure to a reproducer.

def failing(binary, evs, full_nx):
    """Runs evs alone, checking every cascade and actor at the end; the failures, or []."""
    s = Script("shrink")
    for e in evs:
        s.event(e)
    s.checkpoint(random.Random(0), full_nx, collections.Counter(), trees=0)
    rc, out, err = run_dump(binary, s.text())
    r = Result()
    return judge(s, rc, out, err, r), s


def ddmin(items, fails_on, deadline):
    """Greedy delta debugging: drops chunks of items, then single items, while fails_on() still
    holds for what is left."""
    chunk = max(1, len(items) // 2)
    while chunk >= 1 and time.time() < deadline:
        i, progressed = 0, False
        while i < len(items) and time.time() < deadline:
            trial = items[:i] + items[i + chunk:]
            if trial and fails_on(trial):
                items, progressed = trial, True
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    return items


def reproducer(binary, script, fails, full_nx, budget_s=90):
    """A small event list on which the engine fails: first the cascades involved in the failures
    (of failing cascades, or where failing actors posted), narrowed to as few cascades as still
    fail, then to as few events. None when they do not fail without the rest of the stream."""
    m = script.model
    orc = Oracle(m, full_nx, collections.Counter())
    roots = set()
    for _, what, _ in fails:
        kind, _, key = what.partition(" ")
        if kind not in ("cascade", "actor", "tree"):
            continue
        key = ast.literal_eval(key)  # repr() of a str, written by judge()
        if kind == "actor":
            roots |= {orc.root_of[p] for p in m.order if m.ev[p].actor == key}
        elif key in orc.root_of:
            roots.add(orc.root_of[key])
    posts = {e.post for ln, e, _ in script.events if ln in getattr(script, "wrong_outcomes", ())}
    roots |= {orc.root_of[p] for p in posts if p in orc.root_of}
    # each cascade's events, rejected attempts on its posts included, kept in stream order
    index = {}
    for i, (_, e, _) in enumerate(script.events):
        r = orc.root_of.get(e.post)
        if r in roots:
            index.setdefault(r, []).append(i)
    groups = sorted(index.values(), key=len)

    def events_of(gs):
        return [script.events[i][1] for i in sorted(i for g in gs for i in g)]

    def fails_on(gs):
        return bool(failing(binary, events_of(gs), full_nx)[0])

    deadline = time.time() + budget_s
    if not groups or not fails_on(groups):
        return None
    groups = ddmin(groups, fails_on, deadline)
    evs = ddmin(events_of(groups), lambda evs: bool(failing(binary, evs, full_nx)[0]), deadline)
    fails, s = failing(binary, evs, full_nx)
    return s, fails


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("engine_dump")
    ap.add_argument("twitter_sample")
    ap.add_argument("--seed", type=int, default=20250501)
    ap.add_argument("--trees", type=int, default=300, help="random trees (default 300)")
    ap.add_argument("--full", action="store_true",
                    help="networkx.wiener_index on every tree, however large (slow)")
    ap.add_argument("--keep", metavar="DIR", help="write every script and output here")
    ap.add_argument("--no-shrink", action="store_true", help="do not shrink failures")
    args = ap.parse_args()

    t0 = time.time()
    rng = random.Random(args.seed)
    stats = collections.Counter()
    result = Result()
    scripts = []

    s = random_script(rng, args.trees, args.full, stats)
    scripts.append(s)
    print(f"random: {args.trees} trees, {len(s.events)} events, {len(s.queries)} queries "
          f"(seed {args.seed})")

    tw = twitter_events(args.twitter_sample)
    s1, s2 = twitter_scripts(tw, rng, args.full, stats)
    scripts += [s1, s2]
    print(f"twitter15 sample: {len(tw)} events, {len(s1.queries)} queries, twice")
    print(f"oracle built in {time.time() - t0:.1f} s: W by networkx on "
          f"{stats['wiener_networkx']} trees (igraph agreeing), by igraph alone on "
          f"{stats['wiener_igraph_only']} larger ones")
    if stats["oracle_disagreements"]:
        result.check("oracle", "networkx vs igraph", [
            f"{stats['oracle_disagreements']} trees where networkx and igraph disagree on W"])

    keep = args.keep
    for s in scripts:
        t1 = time.time()
        rc, out, err = run_dump(args.engine_dump, s.text())
        fails = judge(s, rc, out, err, result)
        print(f"{s.name}: engine_dump {time.time() - t1:.1f} s, "
              f"{'FAILED ' + str(len(fails)) + ' checks' if fails else 'ok'}")
        if fails and keep is None:
            keep = tempfile.mkdtemp(prefix="oracle-")
        if keep:
            os.makedirs(keep, exist_ok=True)
            base = os.path.join(keep, s.name.replace(" ", "-"))
            with open(base + ".script", "w", encoding="utf-8") as f:
                f.write(s.text())
            with open(base + ".out", "w", encoding="utf-8") as f:
                f.write(out)
        for name, what, problems in fails[:15]:
            print(f"FAIL [{name}] {what}")
            for p in problems[:12]:
                print(f"    {p}")
        if len(fails) > 15:
            print(f"... and {len(fails) - 15} more failures in {s.name}")
        if fails:
            print(f"script and output kept: {base}.script / .out "
                  f"(replay: {args.engine_dump} < {base}.script)")
        rep = None
        if fails and not args.no_shrink:
            rep = reproducer(args.engine_dump, s, fails, args.full)
        if fails and not args.no_shrink and rep is None:
            print("no reproducer: the failures need more of the stream than their cascades")
        if rep is not None:
            rs, rfails = rep
            n = len([ln for ln in rs.lines if not ln.startswith("?")])
            print(f"reproducer: {n} events (engine_dump script syntax: post parent actor ts "
                  f"[actor_type content label kind]) on which the engine fails alone:")
            for line in rs.lines:
                if not line.startswith("?"):
                    print(f"    {line}")
            for name, what, problems in rfails[:5]:
                print(f"  -> {what}: " + "; ".join(problems[:6]))

    print(f"total {time.time() - t0:.1f} s")
    print(f"{result.passed} passed, {result.failed} failed")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
