/* cascade-replay's internal interfaces. Data flows one way: a file (plain, gzip or zstd) → its
 * format's reader (NDJSON, CSV, msgpack) → one record per event → a connection's batch → cascaded.
 * Every buffer has a fixed bound, so memory stays bounded whatever the input holds. */
#ifndef CASCADE_REPLAY_H
#define CASCADE_REPLAY_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>
#include <zlib.h>
#include <zstd.h>

#include "cascade/client.h"
#include "cascade/event.h"
#include "cascade/proto.h"

/* The fuzz targets (tests/fuzz) build the readers with small values of these two, so that inputs
 * of a few KiB reach every limit. */
#ifndef RP_CHUNK
#define RP_CHUNK (256u << 10) /* bytes asked of a file, or of a decompressor, at a time */
#endif
#ifndef RP_RECORD_MAX
#define RP_RECORD_MAX (1u << 20) /* one NDJSON line, CSV record or msgpack event, at most */
#endif
#define RP_BUF_CAP (RP_RECORD_MAX + RP_CHUNK)
/* Strings of known keys longer than this are cut to it before sending: every limit of DESIGN §2
 * is below it, so the server's verdict (too_long, bad_type) is unchanged, and its 64 KiB limit on
 * any string, which would end the connection, is never reached. */
#define RP_STR_KEEP 4096

enum rp_format { RP_FMT_AUTO = 0, RP_FMT_NDJSON, RP_FMT_CSV, RP_FMT_MSGPACK };

/* ------------------------------------------------------------------ records */

/* The DESIGN §2 keys, in the order event_validate checks them: proto's. */
enum rp_key {
    RK_POST = PROTO_EV_POST,
    RK_ACTOR = PROTO_EV_ACTOR,
    RK_TS = PROTO_EV_TS,
    RK_PARENT = PROTO_EV_PARENT,
    RK_KIND = PROTO_EV_KIND,
    RK_ACTOR_TYPE = PROTO_EV_ACTOR_TYPE,
    RK_CONTENT = PROTO_EV_CONTENT,
    RK_LABEL = PROTO_EV_LABEL,
    RK_COUNT = PROTO_EV_NKEYS, /* the keys the server reads */
    RK_ROOT = RK_COUNT, /* `root`: a routing hint for --nats (DESIGN §9), not sent over TCP */
    RK_READ             /* the keys the readers keep */
};

/* What a dump held for one key. Types beyond those of struct event_field are kept apart so that
 * they can be forwarded as what they were (the server then rejects them as bad_type itself). */
enum rp_vtype {
    RV_ABSENT = 0,
    RV_NIL,
    RV_UINT,
    RV_NEGINT,
    RV_STR,
    RV_FLOAT,
    RV_BOOL,
    RV_ARRAY,
    RV_MAP,
    RV_BIN,
    RV_EXT,
};

struct rp_value {
    uint8_t type;  /* enum rp_vtype */
    uint8_t b;     /* RV_BOOL */
    int8_t ext;    /* RV_EXT: its type */
    uint32_t len;  /* RV_STR */
    const char *s; /* RV_STR: borrowed from the reader, valid until its next record */
    uint64_t u;    /* RV_UINT */
    int64_t i;     /* RV_NEGINT */
    double d;      /* RV_FLOAT */
};

struct rp_record {
    struct rp_value v[RK_READ];
};

/* RK_* for a key spelled exactly as in DESIGN §2, or -1 (unknown keys are dropped). */
int rp_key_lookup(const char *s, size_t len);
const char *rp_key_name(int key);
/* r as read (for --dry-run's event_validate), or as sent: strings cut to RP_STR_KEEP. The
 * strings stay r's. */
void rp_record_to_raw(const struct rp_record *r, struct event_raw *raw);
void rp_record_to_wire(const struct rp_record *r, struct event_raw *raw);
/* Appends r as sent: proto_event_pack of rp_record_to_wire. 0 or -ENOMEM. */
int rp_record_pack(const struct rp_record *r, msgpack_packer *pk);
/* A usable id (a non-empty string or an unsigned int) as bytes: 1, or 0 when there is none. */
int rp_value_id(const struct rp_value *v, char num[24], const char **s, size_t *len);
/* ts as an integer: 1, or 0 when missing or not an integer. */
int rp_record_ts(const struct rp_record *r, int64_t *ts);

/* ------------------------------------------------------------------ input */

enum rp_zip { RP_Z_UNKNOWN = 0, RP_Z_NONE, RP_Z_GZIP, RP_Z_ZSTD };

/* One file, decompressed into buf[start..end). */
struct rp_input {
    const char *name; /* for messages: the path, or "<stdin>" */
    int fd, own_fd, regular;
    uint64_t size;       /* compressed bytes, when regular */
    uint64_t bytes_read; /* compressed bytes read so far */
    enum rp_zip zip;
    unsigned char *raw; /* compressed bytes read, not yet decompressed: raw[raw_off..raw_len) */
    size_t raw_off, raw_len;
    int raw_eof, eof, gz_member_done;
    size_t zstd_left; /* ZSTD_decompressStream's last hint: 0 at the end of a frame */
    z_stream zs;
    int zs_init;
    ZSTD_DStream *zd;
    char *buf;
    size_t start, end;
    char err[160]; /* why the rest of the file cannot be read */
};

/* path "-" is stdin. 0 or -errno. */
int rp_input_open(struct rp_input *in, const char *path);
void rp_input_close(struct rp_input *in);
/* Moves buf[start..end) to the front and reads more after it: 1 (more bytes), 0 (end of file),
 * -EAGAIN (stdin has nothing yet), -ENOBUFS (the buffer is full: a record is too long), -EIO
 * (unreadable or corrupt: see in->err; the file cannot go on), -ENOMEM. */
int rp_input_fill(struct rp_input *in);
const char *rp_zip_name(enum rp_zip z);

/* ------------------------------------------------------------------ readers */

struct rp_reader {
    struct rp_input in;
    enum rp_format fmt;
    uint64_t line;      /* where the last record (or bad record) starts: line, or event number */
    uint64_t next_line; /* where the next one starts */
    uint64_t offset;    /* decompressed bytes consumed before buf[start] (msgpack messages) */
    size_t scan;        /* bytes after start already searched for the record's end */
    int discarding;     /* skipping the rest of an over-long line or record */
    int bom_checked;
    char msg[256]; /* why the last record was bad, or why the file stopped */
    /* NDJSON */
    json_t *json;
    int fast_json; /* try rp_json_fast before jansson (CASCADE_REPLAY_JSON=jansson: never) */
    /* CSV */
    int header_done, quoted, scan_quoted;
    uint64_t scan_lines; /* newlines inside quotes so far in the record being searched */
    int8_t *col_key;     /* RK_* of each header column, -1 for unknown */
    uint32_t ncols;
    char *cells; /* unquoted cell text of the current record */
    /* msgpack */
    msgpack_unpacked mp;
    int mp_init;
    uint64_t array_left; /* events left in the current top-level array */
    uint64_t skip_left;  /* values left to skip in an over-long event */
    uint64_t skip_body;  /* bytes left of a str/bin/ext body being skipped */
};

/* 0 or -errno (the file cannot be opened; nothing to close). */
int rp_reader_open(struct rp_reader *rd, const char *path, enum rp_format fmt);
void rp_reader_close(struct rp_reader *rd);
/* The next event: 1 (in *rec, valid until the next call), 0 (end of file), -EAGAIN (stdin not
 * ready), -EBADMSG (a bad record at rd->line, why in rd->msg: report it and call again), or any
 * other negative errno: the rest of the file cannot be read (why in rd->msg). */
int rp_reader_next(struct rp_reader *rd, struct rp_record *rec);
enum rp_format rp_format_from_name(const char *path);
const char *rp_format_name(enum rp_format f);

/* Per format, called by rp_reader_next once the format is known. */
int rp_ndjson_next(struct rp_reader *rd, struct rp_record *rec);
int rp_csv_next(struct rp_reader *rd, struct rp_record *rec);
int rp_msgpack_next(struct rp_reader *rd, struct rp_record *rec);
/* The common NDJSON line (a flat object of plain strings, small integers and literals) read in
 * place: 1, or 0 when jansson must parse it (rec may then hold part of the line: clear it). */
int rp_json_fast(const char *line, size_t len, struct rp_record *rec);
/* Shared by the text formats: past a line over RP_RECORD_MAX, up to the next newline that ends
 * it (outside quotes for CSV). 1 when the end was found, else what rp_input_fill said. */
int rp_discard_line(struct rp_reader *rd, int csv);

/* ------------------------------------------------------------------ routing */

/* Which connection an event goes over: its cascade's, so that parents go before children. */
struct rp_route;
int rp_route_new(unsigned nconns, struct rp_route **out);
void rp_route_free(struct rp_route *rt);
unsigned rp_route_pick(struct rp_route *rt, const struct rp_record *rec);

/* ------------------------------------------------------------------ NATS (--nats) */

/* Publishing to a cluster's JetStream stream (DESIGN §9) through libcascade-client's cc_nats_*:
 * each event goes to the partition of its routing key: its `root` when given, else its
 * cascade's root as tracked while reading (the routing key of its parent), else its parent,
 * else its post. The tracker keeps two generations of at most RP_NATS_TRACK posts each; a
 * parent it forgot routes by its own id, and the cluster's resolution step (docs/cluster.md)
 * puts such a subtree where its root is. */
struct rp_nats_opts {
    const char *urls, *stream;
    uint32_t partitions; /* 0: the default (16) */
    int replicas;        /* 0: 3 with 3 or more URLs, else 1 */
};
struct rp_nats;
struct cc_nats;
/* 0, or -errno with a message in err. */
int rp_nats_open(const struct rp_nats_opts *o, struct rp_nats **out, char *err, size_t errlen);
void rp_nats_close(struct rp_nats *n);
struct cc_nats *rp_nats_pub(struct rp_nats *n);
/* The partition of rec's routing key; with skip (before --from), tracked but not published.
 * 0, -ENOBUFS (the window is full: service, then call again with the same record), -EPIPE,
 * -ENOMEM. */
int rp_nats_add(struct rp_nats *n, const struct rp_record *rec, uint64_t global, int skip);

/* ------------------------------------------------------------------ connections */

/* Where an event came from, kept until its ack to name it in messages. The connections are
 * libcascade-client's ingest streams (cascade/client.h); these are cascade-replay's own. */
struct rp_slot {
    uint64_t global; /* its number among all events read, as --from counts */
    uint64_t line;   /* line, or event number in a msgpack file */
    uint32_t file;   /* index of its file on the command line */
};

struct rp_conn;
typedef void (*rp_reject_fn)(void *ctx, const struct rp_slot *s, const char *reason);

struct rp_net {
    struct rp_conn *c;
    unsigned n;
    char where[300]; /* "host:port" */
    uint32_t window_events;
    size_t window_bytes;
    rp_reject_fn on_reject;
    void *ctx;
    int failed;  /* a connection was lost or got a fatal message */
    char *token; /* --auth-token-file's secret (malloc'd, freed by rp_net_close), or NULL */
};

/* Opens n connections. 0, or -errno with a message in err. */
int rp_net_open(struct rp_net *net, const char *host, const char *port, unsigned n, char *err,
                size_t errlen);
void rp_net_close(struct rp_net *net);
/* Encodes one event into connection k's batch (sent when full or at rp_net_flush). 0/-ENOMEM. */
int rp_net_add(struct rp_net *net, unsigned k, const struct rp_record *rec,
               const struct rp_slot *where);
void rp_net_flush(struct rp_net *net);
/* Whether some connection has a full window of unacknowledged events. */
int rp_net_full(const struct rp_net *net);
/* Whether every event queued has been acknowledged (or its connection is gone). */
int rp_net_idle(const struct rp_net *net);
/* pollfd entries for the connections (n of them). */
void rp_net_pollfds(const struct rp_net *net, struct pollfd *pfd);
/* Writes and reads what poll reported; returns 1 if some ack arrived. */
int rp_net_service(struct rp_net *net, const struct pollfd *pfd);
/* Totals over the connections. */
void rp_net_totals(const struct rp_net *net, uint64_t *sent, uint64_t *ok, uint64_t *dup,
                   uint64_t *rej);
/* The first event (by --from numbering) not known to be acknowledged, or UINT64_MAX. */
uint64_t rp_net_resume_point(const struct rp_net *net);
/* Prints why each failed connection failed. */
void rp_net_report_failures(const struct rp_net *net);

#endif
