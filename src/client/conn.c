/* libcascade-client's TCP connections (see cascade/client.h): name resolution, a connect bounded
 * by a timeout, and waiting on a socket against a deadline. The one TCP connect of the tools. */
#include "cascade/client.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void cc_where(char *buf, size_t len, const char *host, const char *port)
{
    int v6 = strchr(host, ':') != NULL;
    snprintf(buf, len, "%s%.255s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

double cc_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int cc_wait(int fd, short events, double deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - cc_now();
            if (left <= 0)
                return 0;
            ms = (int)ceil(left * 1000);
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 1; /* let the following call report the error */
    }
}

/* One address: a non-blocking connect, waited for until the deadline. The fd or -errno. */
static int connect_one(const struct addrinfo *ai, double deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    int err = errno;
    if (err == EINPROGRESS) {
        socklen_t len = sizeof(err);
        if (!cc_wait(fd, POLLOUT, deadline))
            err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len))
            err = errno;
        if (!err)
            return fd;
    }
    close(fd);
    return -err;
}

int cc_connect(const char *host, const char *port, double timeout_s, int flags, char *why,
               size_t whylen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        snprintf(why, whylen, "%s", gai_strerror(rc));
        return -CC_ERESOLVE;
    }
    int fd = -EADDRNOTAVAIL;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_one(ai, timeout_s > 0 ? cc_now() + timeout_s : 0);
        if (fd >= 0)
            break;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(why, whylen, "%s", fd == -EADDRNOTAVAIL ? "no address" : strerror(-fd));
        return fd;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((flags & CC_BLOCKING) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)) {
        int err = errno;
        close(fd);
        snprintf(why, whylen, "%s", strerror(err));
        return -err;
    }
    return fd;
}
