/* cascade-replay: one dump file (or stdin) read into a bounded buffer, gzip or zstd decompressed
 * on the way; the compression is told by the magic bytes, so a renamed or piped file works. */
#include "cascade-replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *rp_zip_name(enum rp_zip z)
{
    return z == RP_Z_GZIP ? "gzip" : z == RP_Z_ZSTD ? "zstd" : "plain";
}

int rp_input_open(struct rp_input *in, const char *path)
{
    struct stat st;
    memset(in, 0, sizeof(*in));
    in->fd = -1;
    if (strcmp(path, "-") == 0) {
        in->name = "<stdin>";
        in->fd = STDIN_FILENO;
    } else {
        in->name = path;
        in->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (in->fd < 0)
            return -errno;
        in->own_fd = 1;
    }
    if (fstat(in->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rp_input_close(in);
        return -EISDIR;
    }
    if (fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode)) {
        in->regular = 1;
        in->size = (uint64_t)st.st_size;
    }
    in->raw = malloc(RP_CHUNK);
    in->buf = malloc(RP_BUF_CAP);
    if (!in->raw || !in->buf) {
        rp_input_close(in);
        return -ENOMEM;
    }
    return 0;
}

void rp_input_close(struct rp_input *in)
{
    if (in->own_fd && in->fd >= 0)
        close(in->fd);
    in->fd = -1;
    if (in->zs_init)
        inflateEnd(&in->zs);
    in->zs_init = 0;
    ZSTD_freeDStream(in->zd);
    in->zd = NULL;
    free(in->raw);
    free(in->buf);
    in->raw = NULL;
    in->buf = NULL;
}

/* read(2) into dst: bytes read, 0 at end of file, -EAGAIN when a pipe or terminal has nothing
 * yet (checked with poll first, because stdin may be a blocking descriptor we do not own). A slow
 * producer on a pipe then never stops the replay from reading acks and sending what it has. */
static ssize_t read_fd(struct rp_input *in, void *dst, size_t len)
{
    if (!in->regular) {
        struct pollfd p = {.fd = in->fd, .events = POLLIN};
        int n = poll(&p, 1, 0);
        if (n == 0 || (n < 0 && errno == EINTR)) /* a signal is not data: read would block */
            return -EAGAIN;
    }
    for (;;) {
        ssize_t n = read(in->fd, dst, len);
        if (n >= 0) {
            in->bytes_read += (uint64_t)n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        snprintf(in->err, sizeof(in->err), "read failed: %s", strerror(errno));
        return -EIO;
    }
}

/* More compressed bytes into raw[raw_len..]; 1, 0 at end of file, or <0 from read_fd. */
static int read_raw(struct rp_input *in)
{
    if (in->raw_off == in->raw_len)
        in->raw_off = in->raw_len = 0;
    if (in->raw_eof || in->raw_len == RP_CHUNK)
        return in->raw_eof ? 0 : 1;
    ssize_t n = read_fd(in, in->raw + in->raw_len, RP_CHUNK - in->raw_len);
    if (n < 0)
        return (int)n;
    if (n == 0) {
        in->raw_eof = 1;
        return 0;
    }
    in->raw_len += (size_t)n;
    return 1;
}

static int detect_zip(struct rp_input *in)
{
    static const unsigned char gz[2] = {0x1f, 0x8b}, zs[4] = {0x28, 0xb5, 0x2f, 0xfd};
    while (in->raw_len < 4 && !in->raw_eof) {
        int rc = read_raw(in);
        if (rc < 0)
            return rc;
    }
    in->zip = RP_Z_NONE;
    if (in->raw_len >= 2 && memcmp(in->raw, gz, 2) == 0) {
        /* 15 + 32: a window of 2^15 with the gzip or zlib header detected by zlib itself */
        if (inflateInit2(&in->zs, 15 + 32) != Z_OK)
            return -ENOMEM;
        in->zs_init = 1;
        in->zip = RP_Z_GZIP;
    } else if (in->raw_len >= 4 && memcmp(in->raw, zs, 4) == 0) {
        in->zd = ZSTD_createDStream();
        if (!in->zd || ZSTD_isError(ZSTD_initDStream(in->zd)))
            return -ENOMEM;
        in->zip = RP_Z_ZSTD;
        in->zstd_left = 1;
    }
    return 0;
}

static int fill_plain(struct rp_input *in, size_t space)
{
    if (in->raw_off < in->raw_len) { /* the bytes read to detect the compression */
        size_t n = in->raw_len - in->raw_off;
        n = n < space ? n : space;
        memcpy(in->buf + in->end, in->raw + in->raw_off, n);
        in->raw_off += n;
        in->end += n;
        return 1;
    }
    if (in->raw_eof)
        return 0;
    ssize_t n = read_fd(in, in->buf + in->end, space);
    if (n <= 0)
        return n == 0 ? 0 : (int)n;
    in->end += (size_t)n;
    return 1;
}

/* After a gzip member, another may follow (as `cat a.gz b.gz` makes): start it over. */
static int gzip_next_member(struct rp_input *in)
{
    if (in->raw_off == in->raw_len) {
        int rc = read_raw(in);
        if (rc <= 0)
            return rc;
    }
    inflateReset(&in->zs);
    in->gz_member_done = 0;
    return 1;
}

static int fill_gzip(struct rp_input *in, size_t space)
{
    if (in->err[0])
        return -EIO; /* corrupt data, held back while the bytes before it were read */
    for (;;) {
        if (in->gz_member_done) {
            int rc = gzip_next_member(in);
            if (rc <= 0)
                return rc;
        }
        if (in->raw_off == in->raw_len && !in->raw_eof) {
            int rc = read_raw(in);
            if (rc < 0)
                return rc;
        }
        in->zs.next_in = in->raw + in->raw_off;
        in->zs.avail_in = (uInt)(in->raw_len - in->raw_off);
        in->zs.next_out = (Bytef *)in->buf + in->end;
        in->zs.avail_out = (uInt)(space < RP_CHUNK ? space : RP_CHUNK);
        uInt before = in->zs.avail_out;
        int ret = inflate(&in->zs, Z_NO_FLUSH);
        in->raw_off = in->raw_len - in->zs.avail_in;
        in->end += before - in->zs.avail_out;
        if (ret == Z_STREAM_END)
            in->gz_member_done = 1;
        else if (ret != Z_OK && ret != Z_BUF_ERROR) {
            snprintf(in->err, sizeof(in->err), "corrupt gzip data (%s)",
                     in->zs.msg ? in->zs.msg : "inflate failed");
            /* what this call inflated first is read before the error, as it would have been
             * had it come in an earlier call */
            return before != in->zs.avail_out ? 1 : -EIO;
        }
        if (before != in->zs.avail_out)
            return 1;
        if (in->raw_eof && in->raw_off == in->raw_len && !in->gz_member_done) {
            snprintf(in->err, sizeof(in->err), "truncated gzip data");
            return -EIO;
        }
    }
}

static int fill_zstd(struct rp_input *in, size_t space)
{
    if (in->err[0])
        return -EIO; /* as in fill_gzip */
    for (;;) {
        if (in->raw_off == in->raw_len && !in->raw_eof) {
            int rc = read_raw(in);
            if (rc < 0)
                return rc;
        }
        ZSTD_inBuffer src = {in->raw, in->raw_len, in->raw_off};
        ZSTD_outBuffer dst = {in->buf + in->end, space < RP_CHUNK ? space : RP_CHUNK, 0};
        size_t ret = ZSTD_decompressStream(in->zd, &dst, &src);
        int moved = src.pos != in->raw_off || dst.pos > 0;
        in->raw_off = src.pos;
        in->end += dst.pos;
        if (ZSTD_isError(ret)) {
            snprintf(in->err, sizeof(in->err), "corrupt zstd data (%s)", ZSTD_getErrorName(ret));
            return dst.pos > 0 ? 1 : -EIO;
        }
        /* 0 means a frame is complete; a call that moved nothing after it says what the next
         * frame would need, which is not a truncation */
        if (moved)
            in->zstd_left = ret;
        if (dst.pos > 0)
            return 1;
        if (in->raw_eof && in->raw_off == in->raw_len) {
            if (in->zstd_left == 0)
                return 0;
            snprintf(in->err, sizeof(in->err), "truncated zstd data");
            return -EIO;
        }
    }
}

int rp_input_fill(struct rp_input *in)
{
    if (in->start > 0) {
        memmove(in->buf, in->buf + in->start, in->end - in->start);
        in->end -= in->start;
        in->start = 0;
    }
    if (in->eof)
        return 0;
    if (in->end == RP_BUF_CAP)
        return -ENOBUFS;
    if (in->zip == RP_Z_UNKNOWN) {
        int rc = detect_zip(in);
        if (rc < 0)
            return rc;
    }
    size_t space = RP_BUF_CAP - in->end;
    int rc = in->zip == RP_Z_GZIP   ? fill_gzip(in, space)
             : in->zip == RP_Z_ZSTD ? fill_zstd(in, space)
                                    : fill_plain(in, space);
    if (rc == 0)
        in->eof = 1;
    return rc;
}
