/* Unit tests of the shard runtime's edges, driven through shard.h directly (shard_harness.h): a
 * request that reaches a shard whose loop is gone completes with CS_ECLOSED instead of waiting
 * forever (or tripping an assertion), and every request queued before the stop is answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "tests/unit/shard_harness.h"

enum { QUEUED = 64 }; /* requests queued behind a gate before the stop */

static void test_requests_after_stop_complete_with_closed(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_NONE, NULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "before", "v"), 0);

    /* queued while the shard is held in a gate: the stop comes after them, so each is answered */
    static struct hreq q[QUEUED];
    static char keys[QUEUED][16];
    struct hgate g;
    hgate_close(&h, &g);
    for (int i = 0; i < QUEUED; i++) {
        snprintf(keys[i], sizeof(keys[i]), "queued%02d", i);
        hreq_init(&q[i], SHARD_PUT, "c", keys[i], "v");
        shard_submit(h.sh, &q[i].r);
    }
    hgate_open(&g);
    assert_int_equal(shard_stop(h.sh), 0);
    for (int i = 0; i < QUEUED; i++) /* answered by the time the stop returned: no wait */
        assert_int_equal(q[i].r.rc, 0);

    /* the loop is gone: the request is answered at once, on the submitting thread */
    struct hreq after;
    hreq_init(&after, SHARD_PUT, "c", "after", "v");
    shard_submit(h.sh, &after.r);
    assert_int_equal(sem_trywait(&after.done), 0);
    assert_int_equal(after.r.rc, CS_ECLOSED);
    sem_destroy(&after.done);
    for (int i = 0; i < QUEUED; i++)
        assert_int_equal(hreq_wait(&q[i]), 0);
    shard_free(h.sh);
    io_fault_destroy(h.fault);
    assert_int_equal(cst_tmpdir_remove(h.dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_after_stop_complete_with_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
