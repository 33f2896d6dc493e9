/* Unit tests of request completion (shards/completion.c). The pending list is driven directly on
 * a hand-built struct shard (no thread: the test is its owner): requests that wait for
 * durability complete in LSN order, each once its LSN is durable and with its own result, and
 * fail together with one error. Then through a real shard: a failed frame fails every request
 * queued behind its writes, reads included, with CS_EIO; a stream of durable writes over many
 * frames completes in submission (LSN) order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "shards/shard_int.h"
#include "tests/unit/shard_harness.h"

/* Completion order, recorded by done() (on the shard thread, or the test's own). */
#define ORDER_MAX 512
static struct shard_req *order[ORDER_MAX];
static _Atomic unsigned norder;

static void record_done(struct shard_req *r)
{
    unsigned i = atomic_fetch_add(&norder, 1);
    assert_true(i < ORDER_MAX);
    order[i] = r;
}

static struct shard *bare_shard(enum shard_durability d)
{
    struct shard *sh = calloc(1, sizeof(*sh));
    assert_non_null(sh);
    sh->owner = pthread_self();
    sh->cfg.durability = d;
    atomic_store(&norder, 0);
    return sh;
}

static void bare_req(struct shard_req *r, uint8_t op)
{
    memset(r, 0, sizeof(*r));
    r->op = op;
    r->rc = 1;
    r->done = record_done;
}

static void
test_pending_requests_complete_in_lsn_order_once_durable_with_their_results(void **state)
{
    (void)state;
    struct shard *sh = bare_shard(SHARD_SYNC);
    struct shard_req a, b, b2, c, now;
    bare_req(&a, SHARD_PUT);
    bare_req(&b, SHARD_DEL);
    bare_req(&b2, SHARD_GET);
    bare_req(&c, SHARD_PUT);
    bare_req(&now, SHARD_GET);
    sh->applied_lsn = 1;
    req_finish(sh, &a, 0);
    sh->applied_lsn = 2;
    req_finish(sh, &b, 0);
    req_finish(sh, &b2, CS_ENOTFOUND); /* a read after b: waits for b's LSN */
    sh->applied_lsn = 3;
    req_finish(sh, &c, 0);
    assert_int_equal(atomic_load(&norder), 0); /* nothing is durable yet */

    sh->durable_lsn = 2;
    pending_complete(sh);
    assert_int_equal(atomic_load(&norder), 3);
    assert_ptr_equal(order[0], &a);
    assert_ptr_equal(order[1], &b);
    assert_ptr_equal(order[2], &b2);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b2.rc, CS_ENOTFOUND);
    assert_ptr_equal(sh->pending_head, &c); /* LSN 3 is not durable: c waits */

    sh->durable_lsn = 3;
    pending_complete(sh);
    assert_int_equal(atomic_load(&norder), 4);
    assert_ptr_equal(order[3], &c);
    assert_null(sh->pending_head);
    assert_null(sh->pending_tail);

    /* everything applied is durable: a request completes at once */
    req_finish(sh, &now, 0);
    assert_int_equal(atomic_load(&norder), 5);
    assert_ptr_equal(order[4], &now);
    free(sh);
}

static void test_async_and_none_complete_at_once_without_waiting_for_durability(void **state)
{
    (void)state;
    enum shard_durability modes[] = {SHARD_ASYNC, SHARD_NONE};
    for (unsigned m = 0; m < 2; m++) {
        struct shard *sh = bare_shard(modes[m]);
        struct shard_req r;
        bare_req(&r, SHARD_PUT);
        sh->applied_lsn = 5;
        req_finish(sh, &r, 0);
        assert_int_equal(atomic_load(&norder), 1);
        assert_int_equal(r.rc, 0);
        assert_null(sh->pending_head);
        free(sh);
    }
}

static void test_pending_requests_fail_together_in_order_and_read_only_is_kept(void **state)
{
    (void)state;
    struct shard *sh = bare_shard(SHARD_SYNC);
    struct shard_req r[4];
    for (int i = 0; i < 4; i++) {
        bare_req(&r[i], i == 2 ? SHARD_GET : SHARD_PUT);
        sh->applied_lsn = (uint64_t)i + 1;
        req_finish(sh, &r[i], 0);
    }
    sh->durable_lsn = 1;
    pending_complete(sh); /* r[0] is durable */
    assert_int_equal(atomic_load(&norder), 1);

    /* ENOSPC: the frame's requests fail, the shard goes on */
    pending_fail(sh, -ENOSPC, false);
    assert_int_equal(atomic_load(&norder), 4);
    for (int i = 1; i < 4; i++) {
        assert_ptr_equal(order[i], &r[i]);
        assert_int_equal(r[i].rc, -ENOSPC);
    }
    assert_null(sh->pending_head);
    assert_null(sh->pending_tail);
    assert_int_equal(sh->io_error, 0);

    /* an I/O error: they fail with CS_EIO and the shard turns read-only */
    for (int i = 0; i < 2; i++) {
        bare_req(&r[i], SHARD_PUT);
        sh->applied_lsn = 10 + (uint64_t)i;
        req_finish(sh, &r[i], 0);
    }
    pending_fail(sh, CS_EIO, true);
    assert_int_equal(atomic_load(&norder), 6);
    assert_ptr_equal(order[4], &r[0]);
    assert_ptr_equal(order[5], &r[1]);
    assert_int_equal(r[0].rc, CS_EIO);
    assert_int_equal(r[1].rc, CS_EIO);
    assert_int_equal(sh->io_error, CS_EIO);
    assert_int_equal(sh->stats.io_error, CS_EIO);
    free(sh);
}

/* Through a real shard: a frame of writes with reads and a cursor pin queued between them; the
 * frame's write fails: every request after the first write fails with CS_EIO, in order. */
static void test_failed_frame_fails_its_writes_and_the_reads_queued_behind_them(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, "write_eio=2");
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v"), 0); /* frame 1 */

    struct hreq r[6];
    hreq_init(&r[0], SHARD_PUT, "c", "a", "1");
    hreq_init(&r[1], SHARD_GET, "c", "k", NULL);
    hreq_init(&r[2], SHARD_VIEW_PIN, "c", NULL, NULL);
    hreq_init(&r[3], SHARD_DEL, "c", "k", NULL);
    hreq_init(&r[4], SHARD_COLL_CREATE, "d", NULL, NULL);
    hreq_init(&r[5], SHARD_GET, "c", "a", NULL);
    struct hgate g;
    hgate_close(&h, &g);
    for (int i = 0; i < 6; i++)
        shard_submit(h.sh, &r[i].r);
    hgate_open(&g);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(hreq_wait(&r[i]), CS_EIO);
        assert_null(r[i].r.out);  /* a failed read hands back nothing */
        assert_null(r[i].r.view); /* nor a pin */
    }
    /* reads go on and see the durable state; writes are refused */
    hs_expect(&h, "c", "k", "v");
    hs_expect(&h, "c", "a", NULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "x", "y"), CS_EIO);
    assert_int_equal(hs_stats(&h).io_error, CS_EIO);
    assert_int_equal(hs_stop(&h), CS_EIO);
}

/* Many durable writes in flight at once (frames in flight while the next fills): each completes
 * after every write submitted before it. */
static void test_durable_writes_over_many_frames_complete_in_submission_order(void **state)
{
    (void)state;
    enum { N = 400 };
    struct hs h;
    hs_start(&h, SHARD_SYNC, "latency_us=200");
    static struct hreq r[N];
    static char keys[N][8];
    atomic_store(&norder, 0);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%03d", i);
        hreq_init(&r[i], SHARD_PUT, "c", keys[i], "v");
        r[i].r.done = record_done;
        shard_submit(h.sh, &r[i].r);
    }
    struct hreq last;
    hreq_init(&last, SHARD_GET, "c", keys[N - 1], NULL); /* completes after every write */
    assert_int_equal(hs_run(&h, &last), 0);
    cs_mem_free(last.r.out);
    assert_int_equal(atomic_load(&norder), N);
    for (int i = 0; i < N; i++) {
        assert_ptr_equal(order[i], &r[i].r);
        assert_int_equal(r[i].r.rc, 0);
    }
    assert_int_equal(hs_stop(&h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_pending_requests_complete_in_lsn_order_once_durable_with_their_results),
        cmocka_unit_test(test_async_and_none_complete_at_once_without_waiting_for_durability),
        cmocka_unit_test(test_pending_requests_fail_together_in_order_and_read_only_is_kept),
        cmocka_unit_test(test_failed_frame_fails_its_writes_and_the_reads_queued_behind_them),
        cmocka_unit_test(test_durable_writes_over_many_frames_complete_in_submission_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
