/* Cascade tree exports (see cascade/format.h): GraphML for Gephi, DOT for Graphviz. Both walk the
 * `nodes` of a cascade result once; an edge runs parent → child and is found through a hash
 * index over the nodes' post ids, so a parent the answer left out (a `limit`) gets no edge
 * rather than a phantom node. Strings are repaired to UTF-8 and escaped for the target syntax. */
#include "cascade/format.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/mpmap.h"
#include "core/strbuf.h"

/* The fields of a node, with their GraphML types (NULL: not a node attribute). */
enum { F_POST, F_PARENT, F_ACTOR, F_TS, F_DEPTH, F_KIND, F_PLACEHOLDER, NFIELDS };
static const struct {
    const char *name, *type;
} FIELDS[NFIELDS] = {
    {"post", "string"}, {"parent", NULL},   {"actor", "string"},        {"ts", "long"},
    {"depth", "int"},   {"kind", "string"}, {"placeholder", "boolean"},
};

static const char REPLACEMENT[] = "\xef\xbf\xbd"; /* U+FFFD */

/* ---------------------------------------------------------------- the tree */

/* A post id as text: strings as they are, unsigned integers in decimal (the engine treats the
 * id 17 and the string "17" as one post). n == 0: no usable id. */
struct idtext {
    const char *p;
    size_t n;
    char buf[24];
};

struct tree {
    const msgpack_object_array *nodes;
    struct idtext *ids; /* one per node */
    uint32_t *slot;     /* open addressing: node index + 1, 0 for empty */
    size_t mask;
};

static int str_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

/* f[F_*] = the node's field values (NULL when absent or when o is not a map). */
static void node_fields(const msgpack_object *o, const msgpack_object *f[NFIELDS])
{
    memset(f, 0, NFIELDS * sizeof(*f));
    for (int k = 0; k < NFIELDS; k++) /* a later duplicate key wins, as it always has here */
        f[k] = mp_map_get_last(o, FIELDS[k].name);
}

static void id_of(const msgpack_object *v, struct idtext *t)
{
    t->n = 0;
    if (v && v->type == MSGPACK_OBJECT_STR) {
        t->p = v->via.str.ptr, t->n = v->via.str.size;
    } else if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        t->n = (size_t)snprintf(t->buf, sizeof(t->buf), "%" PRIu64, v->via.u64);
        t->p = t->buf;
    }
}

static int id_eq(const struct idtext *a, const struct idtext *b)
{
    return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

/* The node whose post is id, or -1. */
static int64_t tree_find(const struct tree *t, const struct idtext *id)
{
    if (id->n == 0)
        return -1;
    for (size_t h = hash_bytes(id->p, id->n) & t->mask;; h = (h + 1) & t->mask) {
        if (!t->slot[h])
            return -1;
        if (id_eq(&t->ids[t->slot[h] - 1], id))
            return t->slot[h] - 1;
    }
}

static void tree_free(struct tree *t)
{
    free(t->ids);
    free(t->slot);
}

static int tree_index(struct tree *t)
{
    uint32_t n = t->nodes->size;
    size_t cap = 16;
    while (cap < 2 * (size_t)n)
        cap *= 2;
    t->mask = cap - 1;
    t->ids = calloc(n ? n : 1, sizeof(*t->ids));
    t->slot = calloc(cap, sizeof(*t->slot));
    if (!t->ids || !t->slot)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *f[NFIELDS];
        node_fields(&t->nodes->ptr[i], f);
        struct idtext *id = &t->ids[i];
        id_of(f[F_POST], id);
        if (tree_find(t, id) >= 0 || id->n == 0)
            continue; /* a repeated post keeps its first node */
        size_t h = hash_bytes(id->p, id->n) & t->mask;
        while (t->slot[h])
            h = (h + 1) & t->mask;
        t->slot[h] = i + 1;
    }
    return 0;
}

/* -EINVAL unless result is a map with a `nodes` array; -ENOMEM (out->oom set). */
static int tree_load(const msgpack_object *result, struct tree *t, struct strbuf *out)
{
    memset(t, 0, sizeof(*t));
    if (result->type != MSGPACK_OBJECT_MAP)
        return -EINVAL;
    for (uint32_t i = 0; i < result->via.map.size; i++)
        if (str_is(&result->via.map.ptr[i].key, "nodes") &&
            result->via.map.ptr[i].val.type == MSGPACK_OBJECT_ARRAY)
            t->nodes = &result->via.map.ptr[i].val.via.array;
    if (!t->nodes)
        return -EINVAL;
    if (tree_index(t)) {
        tree_free(t);
        out->oom = 1;
        return -ENOMEM;
    }
    return 0;
}

static int is_placeholder(const msgpack_object *f[NFIELDS])
{
    if (f[F_PLACEHOLDER] && f[F_PLACEHOLDER]->type == MSGPACK_OBJECT_BOOLEAN)
        return f[F_PLACEHOLDER]->via.boolean;
    return !f[F_ACTOR] || f[F_ACTOR]->type == MSGPACK_OBJECT_NIL;
}

/* ---------------------------------------------------------------- escaping */

/* XML 1.0 text or attribute value: the five entities, and U+FFFD for what XML cannot hold
 * (invalid UTF-8, control characters but tab/newline/return, U+FFFE/U+FFFF). */
static void put_xml(struct strbuf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t len = format_utf8_next(s + i, n - i, &c);
        if ((c == 0xfffd && len == 1) || c == 0xfffe || c == 0xffff ||
            (c < 0x20 && c != '\t' && c != '\n' && c != '\r'))
            sb_puts(out, REPLACEMENT);
        else if (c == '&')
            sb_puts(out, "&amp;");
        else if (c == '<')
            sb_puts(out, "&lt;");
        else if (c == '>')
            sb_puts(out, "&gt;");
        else if (c == '"')
            sb_puts(out, "&quot;");
        else if (c == '\'')
            sb_puts(out, "&apos;");
        else
            sb_append(out, s + i, len);
        i += len;
    }
}

/* Inside a DOT quoted string: quotes and backslashes escaped (so every id maps to a distinct
 * string and none ends in a lone backslash), newlines as \n, other controls as U+FFFD. */
static void put_dot(struct strbuf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t len = format_utf8_next(s + i, n - i, &c);
        if (c == '"' || c == '\\')
            sb_putc(out, '\\'), sb_putc(out, (char)c);
        else if (c == '\n')
            sb_puts(out, "\\n");
        else if (c < 0x20 || c == 0x7f || (c == 0xfffd && len == 1))
            sb_puts(out, REPLACEMENT);
        else
            sb_append(out, s + i, len);
        i += len;
    }
}

/* A scalar's text through esc: strings as they are, anything else as its JSON text. */
static void put_value(struct strbuf *out, const msgpack_object *v,
                      void (*esc)(struct strbuf *, const char *, size_t))
{
    if (v->type == MSGPACK_OBJECT_STR) {
        esc(out, v->via.str.ptr, v->via.str.size);
        return;
    }
    struct strbuf tmp = STRBUF_INIT;
    format_json(v, &tmp);
    if (tmp.oom)
        out->oom = 1;
    esc(out, tmp.p ? tmp.p : "", tmp.n);
    sb_free(&tmp);
}

/* ---------------------------------------------------------------- GraphML */

/* The GraphML type of a graph attribute (a scalar metric), or NULL to leave it out. */
static const char *graph_attr_type(const msgpack_object_kv *kv)
{
    if (kv->key.type != MSGPACK_OBJECT_STR || str_is(&kv->key, "nodes"))
        return NULL;
    switch (kv->val.type) {
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_NIL:
        return "string";
    case MSGPACK_OBJECT_BOOLEAN:
        return "boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "long";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return isfinite(kv->val.via.f64) ? "double" : NULL;
    default:
        return NULL;
    }
}

static void graphml_keys(const msgpack_object *result, struct strbuf *out)
{
    for (int k = 0; k < NFIELDS; k++)
        if (FIELDS[k].type)
            sb_printf(out, "  <key id=\"%s\" for=\"node\" attr.name=\"%s\" attr.type=\"%s\"/>\n",
                      FIELDS[k].name, FIELDS[k].name, FIELDS[k].type);
    /* graph keys get ids by position: metric names are free text, ids are tokens */
    for (uint32_t i = 0; i < result->via.map.size; i++) {
        const msgpack_object_kv *kv = &result->via.map.ptr[i];
        const char *type = graph_attr_type(kv);
        if (!type)
            continue;
        sb_printf(out, "  <key id=\"g%" PRIu32 "\" for=\"graph\" attr.name=\"", i);
        put_xml(out, kv->key.via.str.ptr, kv->key.via.str.size);
        sb_printf(out, "\" attr.type=\"%s\"/>\n", type);
    }
}

static void graphml_graph_data(const msgpack_object *result, struct strbuf *out)
{
    for (uint32_t i = 0; i < result->via.map.size; i++) {
        const msgpack_object_kv *kv = &result->via.map.ptr[i];
        if (!graph_attr_type(kv) || kv->val.type == MSGPACK_OBJECT_NIL)
            continue;
        sb_printf(out, "    <data key=\"g%" PRIu32 "\">", i);
        put_value(out, &kv->val, put_xml);
        sb_puts(out, "</data>\n");
    }
}

static void graphml_node(const struct tree *t, uint32_t i, struct strbuf *out)
{
    const msgpack_object *f[NFIELDS];
    node_fields(&t->nodes->ptr[i], f);
    sb_printf(out, "    <node id=\"n%" PRIu32 "\">", i);
    for (int k = 0; k < NFIELDS; k++) {
        if (!FIELDS[k].type || k == F_PLACEHOLDER || !f[k] || f[k]->type == MSGPACK_OBJECT_NIL)
            continue;
        sb_printf(out, "<data key=\"%s\">", FIELDS[k].name);
        put_value(out, f[k], put_xml);
        sb_puts(out, "</data>");
    }
    sb_printf(out, "<data key=\"placeholder\">%s</data></node>\n",
              is_placeholder(f) ? "true" : "false");
}

/* The node index of node i's parent, or -1 (a root, or a parent not in the answer). */
static int64_t parent_of(const struct tree *t, uint32_t i)
{
    const msgpack_object *f[NFIELDS];
    struct idtext pid;
    node_fields(&t->nodes->ptr[i], f);
    id_of(f[F_PARENT], &pid);
    return tree_find(t, &pid);
}

static int exportable(const struct tree *t, uint32_t i)
{
    return t->ids[i].n > 0;
}

int format_graphml(const msgpack_object *result, struct strbuf *out)
{
    struct tree t;
    int rc = tree_load(result, &t, out);
    if (rc)
        return rc;
    sb_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\" "
                 "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
                 "xsi:schemaLocation=\"http://graphml.graphdrawing.org/xmlns "
                 "http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n");
    graphml_keys(result, out);
    sb_puts(out, "  <graph id=\"cascade\" edgedefault=\"directed\">\n");
    graphml_graph_data(result, out);
    for (uint32_t i = 0; i < t.nodes->size && !out->oom; i++)
        if (exportable(&t, i))
            graphml_node(&t, i, out);
    for (uint32_t i = 0; i < t.nodes->size && !out->oom; i++) {
        int64_t p = exportable(&t, i) ? parent_of(&t, i) : -1;
        if (p >= 0 && (uint32_t)p != i)
            sb_printf(out, "    <edge source=\"n%" PRId64 "\" target=\"n%" PRIu32 "\"/>\n", p, i);
    }
    sb_puts(out, "  </graph>\n</graphml>\n");
    tree_free(&t);
    return out->oom ? -ENOMEM : 0;
}

/* ---------------------------------------------------------------- DOT */

static void dot_id(const struct idtext *id, struct strbuf *out)
{
    sb_putc(out, '"');
    put_dot(out, id->p, id->n);
    sb_putc(out, '"');
}

static void dot_node(const struct tree *t, uint32_t i, struct strbuf *out)
{
    const msgpack_object *f[NFIELDS];
    node_fields(&t->nodes->ptr[i], f);
    int ph = is_placeholder(f);
    sb_puts(out, "  ");
    dot_id(&t->ids[i], out);
    sb_puts(out, " [label=\"");
    put_dot(out, t->ids[i].p, t->ids[i].n);
    sb_puts(out, "\\n");
    if (ph || !f[F_ACTOR] || f[F_ACTOR]->type == MSGPACK_OBJECT_NIL)
        sb_puts(out, "(missing)");
    else
        put_value(out, f[F_ACTOR], put_dot);
    sb_puts(out, ph ? "\", style=dashed];\n" : "\"];\n");
}

int format_dot(const msgpack_object *result, struct strbuf *out)
{
    struct tree t;
    int rc = tree_load(result, &t, out);
    if (rc)
        return rc;
    sb_puts(out, "digraph cascade {\n  node [shape=box];\n");
    for (uint32_t i = 0; i < t.nodes->size && !out->oom; i++)
        if (exportable(&t, i))
            dot_node(&t, i, out);
    for (uint32_t i = 0; i < t.nodes->size && !out->oom; i++) {
        int64_t p = exportable(&t, i) ? parent_of(&t, i) : -1;
        if (p < 0 || (uint32_t)p == i)
            continue;
        sb_puts(out, "  ");
        dot_id(&t.ids[p], out);
        sb_puts(out, " -> ");
        dot_id(&t.ids[i], out);
        sb_puts(out, ";\n");
    }
    sb_puts(out, "}\n");
    tree_free(&t);
    return out->oom ? -ENOMEM : 0;
}
