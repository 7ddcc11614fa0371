/* store/trash: a file removed through the trash is gone from its name at once and unlinked by
 * the trash's thread; a crash's leftovers go at the next open; without a trash, unlinked here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/trash.h"

static char dir[64];

static void make_file(const char *path, size_t bytes)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)bytes), 0);
    close(fd);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Entries of DIR/trash, waiting up to 5 s for them to drop to want. */
static int trash_entries(int want)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/trash", dir);
    int n = -1;
    for (int tries = 0; tries < 500; tries++) {
        DIR *d = opendir(path);
        assert_non_null(d);
        n = 0;
        for (struct dirent *de; (de = readdir(d));)
            n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
        closedir(d);
        if (n == want)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    return n;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test-trash-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static void test_removed_at_once_unlinked_later(void **state)
{
    (void)state;
    char err[256], path[128];
    struct trash *t;
    assert_int_equal(trash_open(dir, &t, err, sizeof(err)), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof(path), "%s/big%d", dir, i);
        make_file(path, 64u << 20);
        assert_int_equal(trash_remove(t, AT_FDCWD, path), 0);
        assert_false(exists(path)); /* gone from its name before the call returns */
    }
    assert_int_equal(trash_entries(0), 0); /* and unlinked by the thread */
    assert_int_equal(trash_remove(t, AT_FDCWD, path), -ENOENT);
    /* relative to a directory fd, as the WAL removes its segments */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    snprintf(path, sizeof(path), "%s/seg", dir);
    make_file(path, 4096);
    assert_int_equal(trash_remove(t, dfd, "seg"), 0);
    assert_false(exists(path));
    close(dfd);
    trash_close(t);
    trash_close(NULL);
}

static void test_leftovers_go_at_open(void **state)
{
    (void)state;
    char err[256], path[128];
    snprintf(path, sizeof(path), "%s/trash", dir);
    mkdir(path, 0755);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/trash/left%d", dir, i);
        make_file(path, 1u << 20);
    }
    struct trash *t;
    assert_int_equal(trash_open(dir, &t, err, sizeof(err)), 0);
    assert_int_equal(trash_entries(0), 0);
    trash_close(t);
}

static void test_without_a_trash(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/plain", dir);
    make_file(path, 4096);
    assert_int_equal(trash_remove(NULL, AT_FDCWD, path), 0);
    assert_false(exists(path));
    assert_int_equal(trash_remove(NULL, AT_FDCWD, path), -ENOENT);
}

static void test_open_fails_with_a_message(void **state)
{
    (void)state;
    char err[256] = "", path[128];
    snprintf(path, sizeof(path), "%s/afile", dir);
    make_file(path, 1);
    struct trash *t = NULL;
    assert_true(trash_open(path, &t, err, sizeof(err)) < 0); /* a file, not a directory */
    assert_null(t);
    assert_non_null(strstr(err, "trash"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_removed_at_once_unlinked_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftovers_go_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_a_trash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_fails_with_a_message, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
