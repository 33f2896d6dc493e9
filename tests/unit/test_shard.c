/* Unit tests of the shard runtime's edges, driven through shard.h directly: a request that
 * reaches a shard whose loop is gone completes with CS_ECLOSED instead of waiting forever (or
 * tripping an assertion), and every request queued before the stop is answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"
#include "shards/shard.h"

static char dir[CST_PATH_MAX];
static _Atomic int completions;

static void on_done(struct shard_req *r)
{
    (void)r;
    atomic_fetch_add(&completions, 1);
}

static struct shard *start(void)
{
    cst_tmpdir_make(dir, sizeof(dir), "shard");
    struct shard_config cfg = {.dir = dir,
                               .index = 0,
                               .cpu = -1,
                               .durability = SHARD_NONE,
                               .wal_segment_bytes = 1u << 20,
                               .batch_max = 16,
                               .open_mode = WAL_OPEN_NORMAL};
    struct shard *sh = NULL;
    assert_int_equal(shard_launch(&cfg, &sh), 0);
    assert_int_equal(shard_await(sh), 0);
    return sh;
}

static void put_req(struct shard_req *r, const char *key)
{
    memset(r, 0, sizeof(*r));
    r->op = SHARD_PUT;
    r->coll = "c";
    r->coll_len = 1;
    r->key = key;
    r->klen = strlen(key);
    r->val = "v";
    r->vlen = 1;
    r->done = on_done;
    r->rc = 1; /* not yet answered */
}

static void test_requests_after_stop_complete_with_closed(void **state)
{
    (void)state;
    struct shard *sh = start();
    struct shard_req r;
    put_req(&r, "before");
    atomic_store(&completions, 0);
    shard_submit(sh, &r);
    while (atomic_load(&completions) == 0)
        usleep(100);
    assert_int_equal(r.rc, 0);
    assert_int_equal(shard_stop(sh), 0);
    /* the loop is gone: the request is answered at once, on the submitting thread */
    put_req(&r, "after");
    atomic_store(&completions, 0);
    shard_submit(sh, &r);
    assert_int_equal(atomic_load(&completions), 1);
    assert_int_equal(r.rc, CS_ECLOSED);
    shard_free(sh);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_after_stop_complete_with_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
