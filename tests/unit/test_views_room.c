/* Unit tests of views (shards/views.c), through one shard and its lock-free readers: a reader
 * that misses gets a view published; a pinned view stays unchanged while the shard rewrites,
 * drops and recreates its collection; a retired view's memory is held while pinned and released
 * once unpinned, and an unpinned one after the epoch; freshness: a reader never sees a write
 * before it is acknowledged (async: once acknowledged it never sees what it replaced), and in
 * sync mode never a write that is not durable (a frame that fails is never seen). A gate request
 * holds the shard thread right after it applied a write, before the frame is sealed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "shards/shard_int.h"
#include "tests/unit/shard_harness.h"

#define WAIT_ROUNDS 1000000 /* round trips a condition may take (it normally takes a few) */

/* What a lock-free get of key returns: its value (malloc, NUL-terminated), or NULL with *miss
 * telling a miss from an absent key. */
static char *view_get(struct hs *h, const char *coll, const char *key, bool *miss)
{
    void *v = NULL;
    size_t vl = 0;
    int rc = shard_view_get(h->sh, coll, strlen(coll), key, strlen(key), &v, &vl);
    *miss = rc == SHARD_VIEW_MISS;
    if (rc == SHARD_VIEW_MISS || rc == CS_ENOTFOUND)
        return NULL;
    assert_int_equal(rc, 0);
    char *s = malloc(vl + 1);
    assert_non_null(s);
    memcpy(s, v, vl);
    s[vl] = 0;
    cs_mem_free(v);
    return s;
}

/* The view answers (no miss) with want. A miss asks the shard to publish; it does so at the end
 * of the loop iteration that sees the request, so a few round trips through the queue pass. */
static void view_expect(struct hs *h, const char *coll, const char *key, const char *want)
{
    for (int i = 0; i < WAIT_ROUNDS; i++) {
        bool miss;
        char *got = view_get(h, coll, key, &miss);
        if (!miss) {
            if (!want != !got || (want && strcmp(got, want) != 0))
                fail_msg("view of %s/%s: %s, expected %s", coll, key, got ? got : "(absent)",
                         want ? want : "(absent)");
            free(got);
            return;
        }
        (void)hs_stats(h);
    }
    fail_msg("view of %s/%s never published", coll, key);
}

/* The view may miss, but when it answers it holds want (NULL: absent). */
static void view_never_other(struct hs *h, const char *coll, const char *key, const char *want)
{
    bool miss;
    char *got = view_get(h, coll, key, &miss);
    if (!miss && (!want != !got || (want && strcmp(got, want) != 0)))
        fail_msg("view of %s/%s: %s, expected %s or a miss", coll, key, got ? got : "(absent)",
                 want ? want : "(absent)");
    free(got);
}

static void snap_expect(const struct shard_view *v, const char *key, const char *want)
{
    const void *p;
    size_t n;
    int rc = btree_snap_get(shard_view_snap(v), key, strlen(key), &p, &n);
    if (!want) {
        assert_int_equal(rc, CS_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static struct shard_view *pin(struct hs *h, const char *coll)
{
    struct shard_view *v = NULL;
    for (int i = 0; i < WAIT_ROUNDS; i++) {
        if (shard_view_pin(h->sh, coll, strlen(coll), &v) == 0)
            return v;
        (void)hs_stats(h);
    }
    fail_msg("no view of %s published", coll);
    return NULL;
}

static void test_a_reader_that_misses_gets_a_view_with_every_acknowledged_write(void **state)
{
    (void)state;
    enum shard_durability modes[] = {SHARD_SYNC, SHARD_ASYNC, SHARD_NONE};
    for (unsigned m = 0; m < 3; m++) {
        struct hs h;
        hs_start(&h, modes[m], NULL);
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v1"), 0);
        uint64_t published = hs_stats(&h).views;
        view_expect(&h, "c", "k", "v1");
        assert_true(hs_stats(&h).views > published);
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v2"), 0);
        assert_int_equal(hs_op(&h, SHARD_DEL, "c", "k", NULL), 0);
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", "j", "j1"), 0);
        view_never_other(&h, "c", "k", NULL); /* acknowledged: the old view is not shown */
        view_expect(&h, "c", "k", NULL);
        view_expect(&h, "c", "j", "j1");
        assert_int_equal(hs_op(&h, SHARD_COLL_DROP, "c", NULL, NULL), 0);
        bool miss;
        assert_null(view_get(&h, "c", "j", &miss)); /* a dropped collection has no view */
        assert_true(miss);
        assert_int_equal(hs_stop(&h), 0);
    }
}

static void
test_pinned_view_stays_unchanged_while_the_shard_rewrites_drops_and_recreates(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct hs h;
    hs_start(&h, SHARD_SYNC, NULL);
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "key%05d", i);
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", keys[i], "old"), 0);
    }
    struct shard_view *v = pin(&h, "c");
    assert_int_equal(shard_view_snap(v)->count, N);
    for (int i = 0; i < N; i++) /* rewrite, delete, insert: every node changes */
        assert_int_equal(i % 2 ? hs_op(&h, SHARD_PUT, "c", keys[i], "new")
                               : hs_op(&h, SHARD_DEL, "c", keys[i], NULL),
                         0);
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "added", "x"), 0);
    view_expect(&h, "c", "key00001", "new"); /* a newer view was published: v is retired */
    assert_int_equal(hs_op(&h, SHARD_COLL_DROP, "c", NULL, NULL), 0);
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "key00000", "recreated"), 0);
    view_expect(&h, "c", "key00000", "recreated");
    /* the pinned view still holds exactly the state it was taken at */
    assert_int_equal(shard_view_snap(v)->count, N);
    for (int i = 0; i < N; i++)
        snap_expect(v, keys[i], "old");
    snap_expect(v, "added", NULL);
    char msg[128];
    assert_int_equal(btree_snap_check(shard_view_snap(v), msg, sizeof(msg)), 0);
    shard_view_unpin(h.sh, v);
    assert_int_equal(hs_stop(&h), 0);
}

/* The 100-byte value of letter c, into out[101]. */
static const char *val_of(char c, char *out)
{
    memset(out, c, 100);
    out[100] = 0;
    return out;
}

/* Write keys 0..n-1 of collection c with the value of letter c. */
static void fill(struct hs *h, int n, char c)
{
    char key[16], val[101];
    val_of(c, val);
    struct hreq *r = calloc((size_t)n, sizeof(*r));
    static char keys[4000][16];
    assert_true(n <= 4000);
    assert_non_null(r);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key%05d", i);
        memcpy(keys[i], key, sizeof(key));
        hreq_init(&r[i], SHARD_PUT, "c", keys[i], val);
        shard_submit(h->sh, &r[i].r);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(hreq_wait(&r[i]), 0);
    free(r);
}

/* Round trips until the shard's trees hold at most `most` bytes. */
static void await_tree_bytes_at_most(struct hs *h, uint64_t most)
{
    for (int i = 0; i < WAIT_ROUNDS; i++)
        if (hs_stats(h).tree_bytes <= most)
            return;
    fail_msg("tree bytes stay at %" PRIu64 ", expected at most %" PRIu64, hs_stats(h).tree_bytes,
             most);
}

static void test_retired_view_memory_is_held_while_pinned_and_released_once_unpinned(void **state)
{
    (void)state;
    enum { N = 4000 };
    enum shard_durability modes[] = {SHARD_SYNC, SHARD_NONE};
    for (unsigned m = 0; m < 2; m++) {
        struct hs h;
        hs_start(&h, modes[m], NULL);
        fill(&h, N, 'a');
        char want[101];
        view_expect(&h, "c", "key00000", val_of('a', want));
        struct shard_view *v = pin(&h, "c");
        uint64_t base = hs_stats(&h).tree_bytes; /* one tree, shared by the view */

        /* unpinned views are released after the epoch: rewrite twice, publishing each time */
        shard_view_unpin(h.sh, v);
        fill(&h, N, 'b');
        view_expect(&h, "c", "key00000", val_of('b', want));
        fill(&h, N, 'c');
        view_expect(&h, "c", "key00000", val_of('c', want));
        await_tree_bytes_at_most(&h, base + base / 4);

        /* a pinned view keeps its nodes after it is retired */
        v = pin(&h, "c");
        fill(&h, N, 'd'); /* every node copied: the view's old ones stay */
        view_expect(&h, "c", "key00000", val_of('d', want));
        for (int i = 0; i < WAIT_ROUNDS; i++) /* the epoch passed: v is retired, and pinned */
            if (__atomic_load_n(&v->pins, __ATOMIC_ACQUIRE) & VIEW_RETIRED)
                break;
            else
                (void)hs_stats(&h);
        assert_true(__atomic_load_n(&v->pins, __ATOMIC_ACQUIRE) & VIEW_RETIRED);
        uint64_t pinned = hs_stats(&h).tree_bytes;
        assert_true(pinned > base + base / 2);
        snap_expect(v, "key00000", val_of('c', want));
        snap_expect(v, "key03999", want);
        shard_view_unpin(h.sh, v); /* the last pin releases it */
        await_tree_bytes_at_most(&h, base + base / 4);
        assert_int_equal(hs_stop(&h), 0);
    }
}

/* Hold the shard thread right after it applied writes[], before their frame is sealed: gate g1
 * is closed, the writes and a second gate are queued, g1 opens; returns once the shard is held
 * in g2 (the caller opens it). */
static void hold_after(struct hs *h, struct hreq *writes, int n, struct hgate *g2)
{
    struct hgate g1;
    hgate_close(h, &g1);
    for (int i = 0; i < n; i++)
        shard_submit(h->sh, &writes[i].r);
    hgate_submit(h, g2);
    hgate_open(&g1);
    hgate_wait_entered(g2);
}

static void test_sync_reader_never_sees_an_applied_write_before_it_is_durable(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, NULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v1"), 0);
    view_expect(&h, "c", "k", "v1");
    struct shard_view *v = pin(&h, "c");
    shard_view_unpin(h.sh, v);

    struct hreq w[2];
    hreq_init(&w[0], SHARD_PUT, "c", "k", "v2");
    hreq_init(&w[1], SHARD_PUT, "c", "j", "j2");
    struct hgate g2;
    hold_after(&h, w, 2, &g2);
    /* applied, not sealed: neither acknowledged nor durable */
    view_never_other(&h, "c", "k", "v1");
    view_never_other(&h, "c", "j", NULL);
    struct shard_view *p;
    if (shard_view_pin(h.sh, "c", 1, &p) == 0) {
        snap_expect(p, "k", "v1");
        snap_expect(p, "j", NULL);
        shard_view_unpin(h.sh, p);
    }
    hgate_open(&g2);
    assert_int_equal(hreq_wait(&w[0]), 0);
    assert_int_equal(hreq_wait(&w[1]), 0);
    view_never_other(&h, "c", "k", "v2"); /* acknowledged: never the old value again */
    view_expect(&h, "c", "k", "v2");
    view_expect(&h, "c", "j", "j2");
    assert_int_equal(hs_stop(&h), 0);
}

static void test_async_reader_sees_an_acknowledged_write_before_it_is_durable(void **state)
{
    (void)state;
    enum shard_durability modes[] = {SHARD_ASYNC, SHARD_NONE};
    for (unsigned m = 0; m < 2; m++) {
        struct hs h;
        hs_start(&h, modes[m], NULL);
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v1"), 0);
        view_expect(&h, "c", "k", "v1");
        struct hreq w[1];
        hreq_init(&w[0], SHARD_PUT, "c", "k", "v2");
        struct hgate g2;
        hold_after(&h, w, 1, &g2);
        /* acknowledged at once (the shard is held: nothing was published since) */
        assert_int_equal(hreq_wait(&w[0]), 0);
        view_never_other(&h, "c", "k", "v2");
        hgate_open(&g2);
        view_expect(&h, "c", "k", "v2");
        assert_int_equal(hs_stop(&h), 0);
    }
}

/* A write waits for its frame to be sealed (group commit delay) while a reader asks for views:
 * the shard may publish only what is durable, and this frame's write fails, so its value must
 * never be shown, neither while it waits nor after. */
static void test_sync_reader_never_sees_a_write_waiting_for_its_frame(void **state)
{
    (void)state;
    struct hs h;
    hs_start_delay(&h, SHARD_SYNC, "write_eio=2", 300000);
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v1"), 0);
    view_expect(&h, "c", "k", "v1");
    struct hreq w[2];
    hreq_init(&w[0], SHARD_PUT, "c", "k", "v2");
    hreq_init(&w[1], SHARD_PUT, "d", "k", "d2"); /* a new collection: its reader misses */
    struct hgate g2;
    hold_after(&h, w, 2, &g2);
    view_never_other(&h, "d", "k", NULL); /* a miss: the reader asks for views */
    hgate_open(&g2);
    for (int i = 0; i < 3; i++) { /* loop iterations pass; the frame waits for its delay */
        (void)hs_stats(&h);
        view_never_other(&h, "c", "k", "v1");
        view_never_other(&h, "d", "k", NULL);
    }
    assert_int_equal(hreq_wait(&w[0]), CS_EIO);
    assert_int_equal(hreq_wait(&w[1]), CS_EIO);
    view_never_other(&h, "c", "k", "v1");
    view_never_other(&h, "d", "k", NULL);
    hs_expect(&h, "c", "k", "v1");
    assert_int_equal(hs_stop(&h), CS_EIO);
}

/* A reader thread reads k in a loop while a frame that changes k is in flight and fails. */
struct reader {
    struct hs *h;
    _Atomic int stop;
    _Atomic int saw_failed; /* observations of the failed frame's value */
    _Atomic long reads;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    while (!atomic_load(&rd->stop)) {
        void *v = NULL;
        size_t vl = 0;
        int rc = shard_view_get(rd->h->sh, "c", 1, "k", 1, &v, &vl);
        if (rc == 0 && vl == 2 && memcmp(v, "v2", 2) == 0)
            atomic_fetch_add(&rd->saw_failed, 1);
        struct shard_view *p;
        if (shard_view_pin(rd->h->sh, "c", 1, &p) == 0) {
            const void *pv;
            size_t pn;
            if (btree_snap_get(shard_view_snap(p), "k", 1, &pv, &pn) == 0 && pn == 2 &&
                memcmp(pv, "v2", 2) == 0)
                atomic_fetch_add(&rd->saw_failed, 1);
            shard_view_unpin(rd->h->sh, p);
        }
        cs_mem_free(v);
        atomic_fetch_add(&rd->reads, 1);
    }
    return NULL;
}

static void test_sync_reader_never_sees_a_frame_that_fails(void **state)
{
    (void)state;
    struct hs h;
    /* the second frame fails; every frame is slow, so readers look while it is in flight */
    hs_start(&h, SHARD_SYNC, "write_eio=2,latency_us=20000");
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v1"), 0);
    view_expect(&h, "c", "k", "v1");
    struct reader rd = {.h = &h};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader_main, &rd), 0);
    while (atomic_load(&rd.reads) == 0) /* the reader runs (and asks for views) */
        (void)hs_stats(&h);
    assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v2"), CS_EIO);
    long after = atomic_load(&rd.reads);
    while (atomic_load(&rd.reads) < after + 100) /* and reads after the rollback */
        (void)hs_stats(&h);
    atomic_store(&rd.stop, 1);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&rd.saw_failed), 0);
    view_expect(&h, "c", "k", "v1");
    hs_expect(&h, "c", "k", "v1");
    assert_int_equal(hs_stop(&h), CS_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_reader_that_misses_gets_a_view_with_every_acknowledged_write),
        cmocka_unit_test(
            test_pinned_view_stays_unchanged_while_the_shard_rewrites_drops_and_recreates),
        cmocka_unit_test(test_retired_view_memory_is_held_while_pinned_and_released_once_unpinned),
        cmocka_unit_test(test_sync_reader_never_sees_an_applied_write_before_it_is_durable),
        cmocka_unit_test(test_async_reader_sees_an_acknowledged_write_before_it_is_durable),
        cmocka_unit_test(test_sync_reader_never_sees_a_write_waiting_for_its_frame),
        cmocka_unit_test(test_sync_reader_never_sees_a_frame_that_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
