/* procmem: a forked child's own memory grows as the parent writes to pages they shared (the
 * copy-on-write a snapshot child costs), and the watcher thread reports it without blocking. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/procmem.h"

#define MIB  (1024u * 1024u)
#define SIZE (64u * MIB)

/* A child that shares buf with us and waits on a pipe until we close it. */
static pid_t fork_sleeper(int *wfd)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[1]);
        char c;
        while (read(p[0], &c, 1) > 0)
            ;
        _exit(0);
    }
    close(p[0]);
    *wfd = p[1];
    return pid;
}

static void end_sleeper(pid_t pid, int wfd)
{
    close(wfd);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void test_copy_on_write_shows_in_the_child(void **state)
{
    (void)state;
    unsigned char *buf = malloc(SIZE);
    assert_non_null(buf);
    memset(buf, 1, SIZE);
    int wfd;
    pid_t pid = fork_sleeper(&wfd);
    uint64_t before = 0, after = 0;
    assert_int_equal(procmem_private_bytes(pid, &before), 0);
    assert_true(before < SIZE / 4); /* still shared with us */
    for (size_t i = 0; i < SIZE; i += 4096)
        buf[i] = 2; /* each write gives us a copy; the child keeps the original alone */
    assert_int_equal(procmem_private_bytes(pid, &after), 0);
    assert_true(after >= before + SIZE / 8 * 7);
    end_sleeper(pid, wfd);
    assert_int_equal(procmem_private_bytes(pid, &after), -ENOENT); /* reaped */
    free(buf);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_watcher_follows_the_pid(void **state)
{
    (void)state;
    struct procmem_watch *w;
    assert_int_equal(procmem_watch_start(20, &w), 0);
    assert_int_equal(procmem_watch_bytes(w, NULL), 0); /* nothing watched */
    unsigned char *buf = malloc(SIZE);
    assert_non_null(buf);
    memset(buf, 1, SIZE);
    int wfd;
    pid_t pid = fork_sleeper(&wfd);
    procmem_watch_set(w, pid);
    for (size_t i = 0; i < SIZE; i += 4096)
        buf[i] = 2;
    uint64_t b = 0, peak = 0;
    for (int i = 0; i < 500 && b < SIZE / 8 * 7; i++) { /* up to 5 s on a loaded machine */
        nap_ms(10);
        b = procmem_watch_bytes(w, &peak);
    }
    assert_true(b >= SIZE / 8 * 7);
    assert_true(peak >= b);
    procmem_watch_set(w, 0);
    assert_int_equal(procmem_watch_bytes(w, &peak), 0);
    assert_int_equal(peak, 0);
    end_sleeper(pid, wfd);
    procmem_watch_stop(w);
    procmem_watch_stop(NULL);
    free(buf);
}

static void test_no_such_process(void **state)
{
    (void)state;
    uint64_t b = 7;
    int wfd;
    pid_t pid = fork_sleeper(&wfd);
    end_sleeper(pid, wfd); /* a pid that is gone (reuse within the test is not a worry) */
    assert_int_equal(procmem_private_bytes(pid, &b), -ENOENT);
    assert_int_equal(b, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_on_write_shows_in_the_child),
        cmocka_unit_test(test_watcher_follows_the_pid),
        cmocka_unit_test(test_no_such_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
