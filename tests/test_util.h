/* Helpers the test programs share: temporary folders (made with mkdtemp under $TMPDIR, removed
 * with nftw: no shell), opening a database with "name=value" options, reading a whole file, and
 * waiting for a condition up to a deadline.
 * Header-only (static inline), so that each test links only what it uses. Include after
 * cmocka.h: failures are cmocka assertions. */
#ifndef CS_TEST_UTIL_H
#define CS_TEST_UTIL_H

#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cstore.h"

#define CST_PATH_MAX 512 /* bytes of a test path */

/* Make a fresh temporary folder "$TMPDIR/cs-test-<tag>-XXXXXX" into path. */
static inline void cst_tmpdir_make(char *path, size_t size, const char *tag)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int n = snprintf(path, size, "%s/cs-test-%s-XXXXXX", tmp, tag);
    assert_true(n > 0 && (size_t)n < size);
    assert_non_null(mkdtemp(path));
}

static inline int cst_remove_entry(const char *path, const struct stat *st, int type,
                                   struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : -1;
}

/* Remove dir and everything below it (not following links). 0, or -1 when something stayed. */
static inline int cst_tmpdir_remove(const char *dir)
{
    return nftw(dir, cst_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Apply "name=value" strings, up to a NULL, to o. */
static inline void cst_options_apply(cs_options *o, va_list ap)
{
    for (const char *kv; (kv = va_arg(ap, const char *)) != NULL;) {
        char name[64];
        const char *eq = strchr(kv, '=');
        assert_non_null(eq);
        assert_true((size_t)(eq - kv) < sizeof(name));
        snprintf(name, sizeof(name), "%.*s", (int)(eq - kv), kv);
        int rc = cs_options_set(o, name, eq + 1);
        if (rc)
            fail_msg("option %s: %s", kv, cs_strerror(rc));
    }
}

/* Open dir with the options "name=value", ... NULL; returns cs_open's result. */
static inline int cst_open(const char *dir, cs_db **db, ...)
{
    cs_options *o = cs_options_new();
    assert_non_null(o);
    va_list ap;
    va_start(ap, db);
    cst_options_apply(o, ap);
    va_end(ap);
    *db = NULL;
    int rc = cs_open(dir, o, db);
    cs_options_free(o);
    return rc;
}

/* The shard key lives on (cs_key_shard must succeed). */
static inline unsigned cst_key_shard(cs_db *db, const void *key, size_t klen)
{
    unsigned shard = 0;
    int rc = cs_key_shard(db, key, klen, &shard);
    if (rc)
        fail_msg("cs_key_shard: %s", cs_strerror(rc));
    return shard;
}

#define CST_POLL_NS 1000000L /* how often cst_wait_until checks its condition again */

/* Wait until cond(arg) holds or deadline_ms have passed; returns whether it holds. For what the
 * library does by itself and announces to nobody (a checkpoint its helper thread writes, views
 * a shard publishes at the end of a loop iteration, memory freed after an epoch): the condition
 * is checked again every CST_POLL_NS. The deadline only bounds a test that would otherwise hang:
 * make it generous (a loaded machine is slow) and assert on the condition, never on the time. */
static inline bool cst_wait_until(bool (*cond)(void *arg), void *arg, unsigned deadline_ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (cond(arg))
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t waited_ms =
            (int64_t)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited_ms >= (int64_t)deadline_ms)
            return cond(arg);
        struct timespec pause = {0, CST_POLL_NS};
        nanosleep(&pause, NULL);
    }
}

#endif
