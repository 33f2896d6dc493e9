/* Unit tests of the frame undo log (shards/undo.c), driven through one shard in sync mode: the
 * shard is filled, reopened with a fault plan whose first WAL write fails, and then a gate holds
 * its thread while a burst of writes is submitted, so that the whole burst is one WAL frame.
 * That frame fails: every write of it completes with CS_EIO, and the trees, the catalog and the
 * published views must equal the state before the frame. Each test puts one edge of the room in
 * the frame (test_durability.c covers many frames of plain puts and deletes through the public
 * API): the same key written several times, a key inserted then deleted, the switch from the log
 * to a snapshot (a large old value, a log past UNDO_LOG_BYTES_MAX) with logged writes on both
 * sides of it, empty old values and old values of exactly UNDO_VALUE_MAX bytes, an atomic batch
 * among logged writes, collections created, dropped and recreated. One more test drives
 * undo_log_old on a hand-built shard, fed by the tree writes themselves (btree_put_old,
 * btree_del_old), and checks each log entry against the value the write replaced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "shards/shard_int.h"
#include "tests/unit/shard_harness.h"

#define BIG 1000 /* bytes of a large value (> UNDO_VALUE_MAX: snapshot path) */

_Static_assert(BIG > UNDO_VALUE_MAX, "large values take the snapshot path");

static char big_old[BIG + 1], big_new[BIG + 1], big_other[BIG + 1];
static char at_max[UNDO_VALUE_MAX + 1]; /* the largest old value the log copies */

/* The state before the frame: what each key held (NULL: absent). */
struct want {
    const char *coll;
    const char *key;
    const char *val;
};

static const struct want before[] = {
    {"a", "k1", "old1"}, {"a", "k2", "old2"},    {"a", "k3", "old3"},      {"a", "k4", "old4"},
    {"a", "k5", "old5"}, {"a", "big", big_old},  {"a", "big2", big_other}, {"a", "new1", NULL},
    {"a", "new2", NULL}, {"a", "newbig", NULL},  {"b", "b0", "bold0"},     {"b", "b1", "bold1"},
    {"b", "b9", NULL},   {"gone", "g0", "gold"}, {"gone", "g1", NULL},     {"n", "x", NULL},
    {"m", "y", NULL},    {"c", "x", NULL},       {"a", "empty", ""},       {"a", "atmax", at_max},
};

static void fill_values(void)
{
    memset(big_old, 'O', BIG);
    memset(big_new, 'N', BIG);
    memset(big_other, 'T', BIG);
    memset(at_max, 'M', UNDO_VALUE_MAX);
}

/* A shard holding `before`, reopened so that its next WAL write (the burst's frame) fails. */
static void start_filled(struct hs *h)
{
    fill_values();
    hs_start(h, SHARD_SYNC, NULL);
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++)
        if (before[i].val)
            assert_int_equal(hs_op(h, SHARD_PUT, before[i].coll, before[i].key, before[i].val), 0);
    hs_reopen(h, SHARD_SYNC, "write_eio=1");
}

/* Submit reqs[0..n) as one frame (the gate holds the shard until all are queued); every one of
 * them must fail with CS_EIO, and no frame reached the log. */
static void burst_fails(struct hs *h, struct hreq *reqs, size_t n)
{
    struct hgate g;
    hgate_close(h, &g);
    for (size_t i = 0; i < n; i++)
        shard_submit(h->sh, &reqs[i].r);
    hgate_open(&g);
    for (size_t i = 0; i < n; i++) {
        int rc = hreq_wait(&reqs[i]);
        if (rc != CS_EIO)
            fail_msg("write %zu of the failed frame: %s, expected CS_EIO", i, cs_strerror(rc));
        cs_mem_free(reqs[i].r.out);
    }
    assert_int_equal(hs_stats(h).wal_frames, 0);
}

/* Every key of `before` reads as it was, through the queue and through the views (which may
 * miss, never show something else); the trees pass their checks; the catalog lists exactly the
 * collections `before` has, and the record count is the same. */
static void expect_before(struct hs *h)
{
    uint64_t records = 0;
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        const struct want *w = &before[i];
        hs_expect(h, w->coll, w->key, w->val);
        records += w->val != NULL;
        void *v = NULL;
        size_t vl = 0;
        int rc = shard_view_get(h->sh, w->coll, strlen(w->coll), w->key, strlen(w->key), &v, &vl);
        if (rc == 0) {
            if (!w->val || vl != strlen(w->val) || (vl && memcmp(v, w->val, vl) != 0))
                fail_msg("view of %s/%s holds a write of the failed frame", w->coll, w->key);
        } else if (rc != SHARD_VIEW_MISS && !(rc == CS_ENOTFOUND && !w->val)) {
            fail_msg("view of %s/%s: %s", w->coll, w->key, cs_strerror(rc));
        }
        cs_mem_free(v);
    }
    hs_check(h);
    struct cs_shard_stats st = hs_stats(h);
    assert_int_equal(st.records, records);
    assert_int_equal(st.collections, 3);

    struct hreq q;
    hreq_init(&q, SHARD_COLL_LIST, NULL, NULL, NULL);
    assert_int_equal(hs_run(h, &q), 0);
    assert_int_equal(q.r.out_count, 3);
    bool seen_a = false, seen_b = false, seen_gone = false;
    for (const char *p = q.r.out; p < (const char *)q.r.out + q.r.out_len && *p;
         p += strlen(p) + 1) {
        seen_a |= strcmp(p, "a") == 0;
        seen_b |= strcmp(p, "b") == 0;
        seen_gone |= strcmp(p, "gone") == 0;
    }
    cs_mem_free(q.r.out);
    assert_true(seen_a && seen_b && seen_gone);
}

static void finish(struct hs *h)
{
    assert_int_equal(hs_stop(h), CS_EIO);
}

static void
test_failed_frame_restores_keys_written_several_times_and_inserted_then_deleted(void **state)
{
    (void)state;
    struct hs h;
    start_filled(&h);
    struct hreq r[13];
    size_t n = 0;
    hreq_init(&r[n++], SHARD_PUT, "a", "k1", "new1");  /* overwrite */
    hreq_init(&r[n++], SHARD_PUT, "a", "k2", "n1");    /* overwrite twice */
    hreq_init(&r[n++], SHARD_PUT, "a", "k2", "n2");    /* (the log holds old2, then n1) */
    hreq_init(&r[n++], SHARD_DEL, "a", "k3", NULL);    /* delete */
    hreq_init(&r[n++], SHARD_DEL, "a", "k4", NULL);    /* delete, then insert again */
    hreq_init(&r[n++], SHARD_PUT, "a", "k4", "again"); /* (the log holds "absent" second) */
    hreq_init(&r[n++], SHARD_PUT, "a", "new1", "x");   /* insert */
    hreq_init(&r[n++], SHARD_PUT, "a", "new2", "y");   /* insert, then delete */
    hreq_init(&r[n++], SHARD_DEL, "a", "new2", NULL);
    hreq_init(&r[n++], SHARD_PUT, "b", "b0", "bnew"); /* a second tree in the frame */
    hreq_init(&r[n++], SHARD_PUT, "a", "k2", "n3");   /* and back to the first */
    hreq_init(&r[n++], SHARD_DEL, "b", "b1", NULL);
    hreq_init(&r[n++], SHARD_DEL, "a", "absent", NULL); /* deletes nothing: logs nothing */
    burst_fails(&h, r, n);
    expect_before(&h);
    finish(&h);
}

static void
test_failed_frame_restores_large_values_with_logged_writes_around_the_snapshot(void **state)
{
    (void)state;
    struct hs h;
    start_filled(&h);
    struct hreq r[10];
    size_t n = 0;
    hreq_init(&r[n++], SHARD_PUT, "a", "k1", "logged");    /* logged, before the snapshot */
    hreq_init(&r[n++], SHARD_DEL, "a", "k3", NULL);        /* logged */
    hreq_init(&r[n++], SHARD_PUT, "a", "newbig", big_new); /* insert a large value: logged */
    hreq_init(&r[n++], SHARD_PUT, "a", "big", big_new);    /* large old value: snapshot */
    hreq_init(&r[n++], SHARD_PUT, "a", "k1", "after");     /* covered by the snapshot */
    hreq_init(&r[n++], SHARD_PUT, "a", "new1", "after");
    hreq_init(&r[n++], SHARD_DEL, "a", "big2", NULL);  /* delete of a large value */
    hreq_init(&r[n++], SHARD_PUT, "b", "b0", big_new); /* b: logged, small old value */
    hreq_init(&r[n++], SHARD_PUT, "b", "b0", "again"); /* b: large old value, snapshot */
    hreq_init(&r[n++], SHARD_DEL, "a", "newbig", NULL);
    burst_fails(&h, r, n);
    expect_before(&h);
    finish(&h);
}

/* An empty old value is a value (put back, not deleted), an insert of an empty value is taken
 * out, and an old value of exactly UNDO_VALUE_MAX bytes goes through the log whole. */
static void test_failed_frame_restores_empty_values_and_values_at_the_log_limit(void **state)
{
    (void)state;
    struct hs h;
    start_filled(&h);
    struct hreq r[6];
    size_t n = 0;
    hreq_init(&r[n++], SHARD_PUT, "a", "empty", "filled"); /* old: present and empty */
    hreq_init(&r[n++], SHARD_DEL, "a", "empty", NULL);
    hreq_init(&r[n++], SHARD_PUT, "a", "atmax", "small"); /* old: UNDO_VALUE_MAX bytes */
    hreq_init(&r[n++], SHARD_PUT, "a", "atmax", at_max + 1);
    hreq_init(&r[n++], SHARD_PUT, "a", "new1", ""); /* insert of an empty value */
    hreq_init(&r[n++], SHARD_PUT, "b", "b9", "");
    burst_fails(&h, r, n);
    expect_before(&h);
    finish(&h);
}

static void test_failed_frame_takes_back_a_batch_between_logged_writes(void **state)
{
    (void)state;
    struct hs h;
    start_filled(&h);
    const struct shard_batch_op ops[] = {
        {.type = SHARD_BATCH_PUT,
         .coll_len = 1,
         .coll = "a",
         .key = "k2",
         .klen = 2,
         .val = "batch",
         .vlen = 5},
        {.type = SHARD_BATCH_DEL, .coll_len = 1, .coll = "a", .key = "k3", .klen = 2},
        {.type = SHARD_BATCH_PUT,
         .coll_len = 1,
         .coll = "c",
         .key = "x",
         .klen = 1, /* new */
         .val = "cx",
         .vlen = 2},
        {.type = SHARD_BATCH_DEL, .coll_len = 1, .coll = "b", .key = "b1", .klen = 2},
        {.type = SHARD_BATCH_PUT,
         .coll_len = 1,
         .coll = "a",
         .key = "big",
         .klen = 3,
         .val = "small",
         .vlen = 5},
    };
    struct hreq r[4];
    size_t n = 0;
    hreq_init(&r[n++], SHARD_PUT, "a", "k1", "logged"); /* logged before the batch */
    hreq_init(&r[n], SHARD_BATCH, NULL, NULL, NULL);
    r[n].r.ops = ops;
    r[n++].r.nops = sizeof(ops) / sizeof(ops[0]);
    hreq_init(&r[n++], SHARD_PUT, "a", "k2", "after"); /* after it, in the snapshotted tree */
    hreq_init(&r[n++], SHARD_PUT, "b", "b9", "after");
    burst_fails(&h, r, n);
    expect_before(&h);
    finish(&h);
}

static void test_failed_frame_takes_back_collection_create_drop_and_recreate(void **state)
{
    (void)state;
    struct hs h;
    start_filled(&h);
    struct hreq r[12];
    size_t n = 0;
    hreq_init(&r[n++], SHARD_COLL_CREATE, "n", NULL, NULL); /* create */
    hreq_init(&r[n++], SHARD_PUT, "n", "x", "nx");
    hreq_init(&r[n++], SHARD_PUT, "m", "y", "my");           /* created by a put */
    hreq_init(&r[n++], SHARD_PUT, "gone", "g1", "g1");       /* written, then dropped */
    hreq_init(&r[n++], SHARD_PUT, "gone", "g0", "changed");  /* (old value in the log) */
    hreq_init(&r[n++], SHARD_COLL_DROP, "gone", NULL, NULL); /* drop with records */
    hreq_init(&r[n++], SHARD_COLL_DROP, "b", NULL, NULL);    /* drop, then recreated */
    hreq_init(&r[n++], SHARD_PUT, "b", "b9", "new b");
    hreq_init(&r[n++], SHARD_COLL_DROP, "n", NULL, NULL); /* created and dropped in the frame */
    hreq_init(&r[n++], SHARD_COLL_CREATE, "n", NULL, NULL);
    burst_fails(&h, r, n);
    expect_before(&h);
    finish(&h);
}

/* undo_log_old driven by the tree writes themselves on a hand-built shard (no thread: the test is
 * its owner): each log entry holds the key and exactly the old value the write handed back (or
 * "absent"); a write that fails for memory, or deletes nothing, logs nothing; an old value over
 * UNDO_VALUE_MAX switches the tree to a snapshot; rolling back restores the tree. */
static void test_undo_log_holds_the_old_value_each_write_hands_back(void **state)
{
    (void)state;
    fill_values();
    struct shard *sh = calloc(1, sizeof(*sh));
    struct shard_coll *c = calloc(1, sizeof(*c));
    assert_non_null(sh);
    assert_non_null(c);
    sh->owner = pthread_self();
    sh->undo_on = true;
    sh->frame_seq = 1;
    c->refs = 1; /* the catalog's reference: the log's own come and go */
    c->name_len = 1;
    c->name[0] = 'c';
    c->sh = sh;
    btree_init(&c->tree, 0);
    char over[UNDO_VALUE_MAX + 2];
    memset(over, 'V', sizeof(over) - 1);
    over[sizeof(over) - 1] = 0;
    assert_int_equal(btree_put(&c->tree, "a", 1, "A1", 2, NULL), 0);
    assert_int_equal(btree_put(&c->tree, "e", 1, "", 0, NULL), 0);
    assert_int_equal(btree_put(&c->tree, "m", 1, at_max, UNDO_VALUE_MAX, NULL), 0);
    assert_int_equal(btree_put(&c->tree, "v", 1, over, UNDO_VALUE_MAX + 1, NULL), 0);
    struct btree_snap was;
    btree_snap_take(&c->tree, &was);

    struct frame_undo *u = &sh->undo[0];
    assert_int_equal(undo_reserve(sh, 1, 0), 0); /* as exec does before a write */
    struct undo_write w = {.sh = sh, .coll = c, .key = "a", .klen = 1};
    assert_int_equal(btree_put_old(&c->tree, "a", 1, "A2", 2, 0, undo_log_old, &w), 0);
    w.key = "n";
    assert_int_equal(btree_put_old(&c->tree, "n", 1, "N", 1, 0, undo_log_old, &w), 0);
    w.key = "e";
    assert_int_equal(btree_del_old(&c->tree, "e", 1, undo_log_old, &w), 0);
    w.key = "m";
    assert_int_equal(btree_put_old(&c->tree, "m", 1, "", 0, 0, undo_log_old, &w), 0);
    w.key = "x";
    assert_int_equal(btree_del_old(&c->tree, "x", 1, undo_log_old, &w), CS_ENOTFOUND);
    c->tree.fail_alloc_in = 1; /* the value's blob */
    assert_int_equal(btree_put_old(&c->tree, "a", 1, big_new, BIG, 0, undo_log_old, &w), -ENOMEM);
    c->tree.fail_alloc_in = 0;

    struct {
        const char *key;
        bool had;
        const char *old;
        uint32_t vlen;
    } want[] = {{"a", true, "A1", 2},
                {"n", false, "", 0},
                {"e", true, "", 0},
                {"m", true, at_max, UNDO_VALUE_MAX}};
    assert_int_equal(u->nrecs, 4);
    assert_int_equal(u->ntrees, 1);
    assert_false(u->trees[0].snapped);
    for (uint32_t i = 0; i < u->nrecs; i++) {
        const struct undo_rec *r = &u->recs[i];
        assert_ptr_equal(r->coll, c);
        assert_int_equal(r->klen, 1);
        assert_memory_equal(u->bytes + r->off, want[i].key, 1);
        assert_true(r->had == want[i].had);
        assert_int_equal(r->vlen, want[i].vlen);
        if (r->vlen)
            assert_memory_equal(u->bytes + r->off + 1, want[i].old, r->vlen);
    }

    w.key = "v"; /* an old value over UNDO_VALUE_MAX: a snapshot from here on, no record */
    assert_int_equal(btree_put_old(&c->tree, "v", 1, "small", 5, 0, undo_log_old, &w), 0);
    assert_true(u->trees[0].snapped);
    w.key = "a";
    assert_int_equal(btree_put_old(&c->tree, "a", 1, "A3", 2, 0, undo_log_old, &w), 0);
    assert_int_equal(u->nrecs, 4);

    assert_true(undo_rollback(sh, u));
    assert_int_equal(u->nrecs, 0);
    struct btree_snap after;
    btree_snap_take(&c->tree, &after);
    assert_int_equal(after.count, was.count);
    struct btree_cursor ca, cb;
    btree_cursor_init(&ca, &was);
    btree_cursor_init(&cb, &after);
    bool on_b = btree_cursor_first(&cb);
    for (bool on = btree_cursor_first(&ca); on;
         on = btree_cursor_next(&ca), on_b = btree_cursor_next(&cb)) {
        assert_true(on_b);
        const void *k1, *v1, *k2, *v2;
        size_t kl1, vl1, kl2, vl2;
        btree_cursor_get(&ca, &k1, &kl1, &v1, &vl1);
        btree_cursor_get(&cb, &k2, &kl2, &v2, &vl2);
        assert_int_equal(kl1, kl2);
        assert_memory_equal(k1, k2, kl1);
        assert_int_equal(vl1, vl2);
        if (vl1)
            assert_memory_equal(v1, v2, vl1);
    }
    char msg[256];
    assert_int_equal(btree_check(&c->tree, msg, sizeof(msg)), 0);
    btree_snap_release(&c->tree, &after);
    btree_snap_release(&c->tree, &was);
    btree_destroy(&c->tree);
    undo_free(&sh->undo[0]);
    undo_free(&sh->undo[1]);
    free(c);
    free(sh);
}

/* Deletes of values just under UNDO_VALUE_MAX: each logs about 260 bytes and writes a WAL
 * record of about 30, so the frame's log passes UNDO_LOG_BYTES_MAX long before the frame is
 * full; the writes after that point are covered by a snapshot, those before it by the log. */
enum { LOG_KEYS = UNDO_LOG_BYTES_MAX / UNDO_VALUE_MAX + 2000 };

static void test_failed_frame_restores_writes_past_the_undo_log_limit(void **state)
{
    (void)state;
    struct hs h;
    fill_values();
    hs_start(&h, SHARD_SYNC, NULL);
    static char keys[LOG_KEYS][16];
    char val[UNDO_VALUE_MAX + 1];
    memset(val, 'v', UNDO_VALUE_MAX);
    val[UNDO_VALUE_MAX] = 0;
    {
        struct hreq *fill = calloc(LOG_KEYS, sizeof(*fill));
        assert_non_null(fill);
        for (int i = 0; i < LOG_KEYS; i++) {
            snprintf(keys[i], sizeof(keys[i]), "key%06d", i);
            hreq_init(&fill[i], SHARD_PUT, "a", keys[i], val);
            shard_submit(h.sh, &fill[i].r);
        }
        for (int i = 0; i < LOG_KEYS; i++)
            assert_int_equal(hreq_wait(&fill[i]), 0);
        free(fill);
    }
    hs_reopen(&h, SHARD_SYNC, "write_eio=1");

    /* delete every key, then put the first and the last back with other values */
    size_t n = LOG_KEYS + 2;
    struct hreq *r = calloc(n, sizeof(*r));
    assert_non_null(r);
    for (int i = 0; i < LOG_KEYS; i++)
        hreq_init(&r[i], SHARD_DEL, "a", keys[i], NULL);
    hreq_init(&r[LOG_KEYS], SHARD_PUT, "a", keys[0], "first");
    hreq_init(&r[LOG_KEYS + 1], SHARD_PUT, "a", keys[LOG_KEYS - 1], "last");
    burst_fails(&h, r, n);
    free(r);
    for (int i = 0; i < LOG_KEYS; i++)
        hs_expect(&h, "a", keys[i], val);
    hs_check(&h);
    assert_int_equal(hs_stats(&h).records, LOG_KEYS);
    finish(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_failed_frame_restores_keys_written_several_times_and_inserted_then_deleted),
        cmocka_unit_test(
            test_failed_frame_restores_large_values_with_logged_writes_around_the_snapshot),
        cmocka_unit_test(test_failed_frame_restores_empty_values_and_values_at_the_log_limit),
        cmocka_unit_test(test_failed_frame_takes_back_a_batch_between_logged_writes),
        cmocka_unit_test(test_failed_frame_takes_back_collection_create_drop_and_recreate),
        cmocka_unit_test(test_failed_frame_restores_writes_past_the_undo_log_limit),
        cmocka_unit_test(test_undo_log_holds_the_old_value_each_write_hands_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
