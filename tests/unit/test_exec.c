/* Unit tests of request execution (shards/exec.c), driven through one shard (shard_harness.h):
 * puts, gets and deletes and their misses in every durability mode; atomic batches that apply
 * every operation, or none when one in the middle fails; collections created, dropped, listed
 * and the CS_COLLECTIONS_MAX limit; the memory limit (CS_EFULL for writes that add, not for
 * deletes); a shard that lost a write refuses every write with CS_EIO and goes on reading.
 * Replay: every record type written by a live shard comes back after a reopen, and records that
 * contradict the state before them (fed to shard_replay_apply on a hand-built shard) are
 * CS_ECORRUPT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "endian.h"
#include "shards/shard_int.h"
#include "tests/unit/shard_harness.h"

/* ---- helpers ---- */

static struct shard_batch_op bop(uint8_t type, const char *coll, const char *key, const char *val)
{
    struct shard_batch_op op = {.type = type,
                                .coll_len = (uint8_t)strlen(coll),
                                .coll = coll,
                                .key = key,
                                .klen = (uint32_t)strlen(key),
                                .val = val,
                                .vlen = val ? (uint32_t)strlen(val) : 0};
    return op;
}

static int hs_batch(struct hs *h, const struct shard_batch_op *ops, size_t n)
{
    struct hreq q;
    hreq_init(&q, SHARD_BATCH, NULL, NULL, NULL);
    q.r.ops = ops;
    q.r.nops = n;
    return hs_run(h, &q);
}

/* The shard lists exactly the names of want (count n), in any order. */
static void list_is(struct hs *h, const char *const *want, uint32_t n)
{
    struct hreq q;
    hreq_init(&q, SHARD_COLL_LIST, NULL, NULL, NULL);
    assert_int_equal(hs_run(h, &q), 0);
    assert_int_equal(q.r.out_count, n);
    uint32_t seen = 0;
    for (const char *p = q.r.out; p < (const char *)q.r.out + q.r.out_len && *p;
         p += strlen(p) + 1) {
        bool known = false;
        for (uint32_t i = 0; i < n && !known; i++)
            known = strcmp(p, want[i]) == 0;
        if (!known)
            fail_msg("collection %s listed", p);
        seen++;
    }
    assert_int_equal(seen, n);
    cs_mem_free(q.r.out);
}

/* Submit n requests at once (one or a few frames) and wait for them all; each must return rc. */
static void run_all(struct hs *h, struct hreq *q, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++)
        shard_submit(h->sh, &q[i].r);
    for (size_t i = 0; i < n; i++) {
        int got = hreq_wait(&q[i]);
        if (got != rc)
            fail_msg("request %zu: %s, expected %s", i, cs_strerror(got), cs_strerror(rc));
        cs_mem_free(q[i].r.out);
    }
}

/* Create collections fill_names[0, n) (n <= CS_COLLECTIONS_MAX), all submitted at once. */
static char fill_names[CS_COLLECTIONS_MAX][12];

static void fill_collections(struct hs *h, unsigned n)
{
    assert_true(n <= CS_COLLECTIONS_MAX);
    struct hreq *q = calloc(n, sizeof(*q));
    assert_non_null(q);
    for (unsigned i = 0; i < n; i++) {
        snprintf(fill_names[i], sizeof(fill_names[i]), "f%04u", i);
        hreq_init(&q[i], SHARD_COLL_CREATE, fill_names[i], NULL, NULL);
    }
    run_all(h, q, n, 0);
    free(q);
}

/* ---- puts, gets, deletes ---- */

static void test_put_get_del_and_their_misses_in_every_durability(void **state)
{
    (void)state;
    const enum shard_durability modes[] = {SHARD_SYNC, SHARD_ASYNC, SHARD_NONE};
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        struct hs h;
        hs_start(&h, modes[m], NULL);
        assert_int_equal(hs_op(&h, SHARD_GET, "c", "k", NULL), CS_ENOTFOUND); /* no collection */
        assert_int_equal(hs_op(&h, SHARD_DEL, "c", "k", NULL), CS_ENOTFOUND);
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "v1"), 0);
        hs_expect(&h, "c", "k", "v1");
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", "k", "value two"), 0); /* replace */
        hs_expect(&h, "c", "k", "value two");
        assert_int_equal(hs_op(&h, SHARD_PUT, "c", "e", ""), 0); /* an empty value is a value */
        hs_expect(&h, "c", "e", "");
        hs_expect(&h, "c", "missing", NULL);
        assert_int_equal(hs_op(&h, SHARD_DEL, "c", "missing", NULL), CS_ENOTFOUND);
        assert_int_equal(hs_op(&h, SHARD_DEL, "c", "k", NULL), 0);
        hs_expect(&h, "c", "k", NULL);
        assert_int_equal(hs_op(&h, SHARD_DEL, "c", "k", NULL), CS_ENOTFOUND);
        struct cs_shard_stats st = hs_stats(&h);
        assert_int_equal(st.puts, 3); /* successful writes only */
        assert_int_equal(st.dels, 1);
        assert_int_equal(st.gets, 6); /* every read, misses too */
        assert_int_equal(st.records, 1);
        assert_int_equal(st.collections, 1);
        hs_check(&h);
        assert_int_equal(hs_stop(&h), 0);
    }
}

/* ---- atomic batches ---- */

static void test_batch_applies_every_operation(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, NULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k1", "old1"), 0);
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k2", "old2"), 0);
    const struct shard_batch_op ops[] = {
        bop(SHARD_BATCH_PUT, "a", "k1", "new1"),     bop(SHARD_BATCH_DEL, "a", "k2", NULL),
        bop(SHARD_BATCH_PUT, "b", "x", "bx"),    /* creates b */
        bop(SHARD_BATCH_DEL, "a", "none", NULL), /* deletes nothing: not an error */
        bop(SHARD_BATCH_DEL, "nowhere", "k", NULL),  bop(SHARD_BATCH_PUT, "a", "k3", "v3"),
        bop(SHARD_BATCH_PUT, "a", "k3", "v3 again"), /* the later write of a key wins */
    };
    assert_int_equal(hs_batch(&h, ops, sizeof(ops) / sizeof(ops[0])), 0);
    hs_expect(&h, "a", "k1", "new1");
    hs_expect(&h, "a", "k2", NULL);
    hs_expect(&h, "a", "k3", "v3 again");
    hs_expect(&h, "b", "x", "bx");
    struct cs_shard_stats st = hs_stats(&h);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.collections, 2);
    hs_check(&h);
    assert_int_equal(hs_stop(&h), 0);
}

/* A delete in a collection this shard does not hold does nothing and logs nothing, also when
 * the batch's per-operation state reuses memory a previous batch of the same size left set
 * (that batch's operations all changed the tree). */
static void test_batch_delete_in_a_missing_collection_is_not_logged(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, NULL);
    enum { N = 8 };
    static char keys[N][8];
    struct shard_batch_op ops[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        ops[i] = bop(SHARD_BATCH_PUT, "a", keys[i], "first");
    }
    assert_int_equal(hs_batch(&h, ops, N), 0);
    for (int i = 0; i < N; i++)
        ops[i] = bop(SHARD_BATCH_PUT, "a", keys[i], "second");
    ops[N - 1] = bop(SHARD_BATCH_DEL, "nowhere", keys[N - 1], NULL);
    assert_int_equal(hs_batch(&h, ops, N), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < N; i++)
            hs_expect(&h, "a", keys[i], i < N - 1 ? "second" : "first");
        const char *const a[] = {"a"};
        list_is(&h, a, 1);
        hs_check(&h);
        if (pass == 0)
            hs_reopen(&h, SHARD_SYNC, NULL); /* the log holds both batches, nothing else */
    }
    assert_int_equal(hs_stats(&h).recovered_records, 3); /* create a, two batches */
    assert_int_equal(hs_stop(&h), 0);
}

/* An operation in the middle fails (it would create a collection past CS_COLLECTIONS_MAX): the
 * operations before it, already applied to the trees, are taken back, and those after it never
 * happen; the batch is not logged (a reopen replays the same state). */
static void test_batch_failing_in_the_middle_changes_no_record(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, NULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k1", "old1"), 0);
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k3", "old3"), 0);
    fill_collections(&h, CS_COLLECTIONS_MAX - 2); /* a, the fill, and room for one more */
    const struct shard_batch_op ops[] = {
        bop(SHARD_BATCH_PUT, "a", "k1", "changed"),  bop(SHARD_BATCH_DEL, "a", "k3", NULL),
        bop(SHARD_BATCH_PUT, "a", "k9", "inserted"), bop(SHARD_BATCH_PUT, "last", "x", "fits"),
        bop(SHARD_BATCH_PUT, "over", "x", "over"), /* one collection too many */
        bop(SHARD_BATCH_PUT, "a", "k10", "after"),
    };
    uint64_t lsn = hs_stats(&h).wal_lsn;
    assert_int_equal(hs_batch(&h, ops, sizeof(ops) / sizeof(ops[0])), CS_EFULL);
    for (int pass = 0; pass < 2; pass++) {
        hs_expect(&h, "a", "k1", "old1");
        hs_expect(&h, "a", "k3", "old3");
        hs_expect(&h, "a", "k9", NULL);
        hs_expect(&h, "a", "k10", NULL);
        hs_expect(&h, "last", "x", NULL);
        hs_expect(&h, "over", "x", NULL);
        struct cs_shard_stats st = hs_stats(&h);
        assert_int_equal(st.records, 2);
        assert_int_equal(st.batches, 0);
        assert_true(st.wal_lsn <= lsn + 1); /* at most the create of "last"; no batch record */
        hs_check(&h);
        if (pass == 0)
            hs_reopen(&h, SHARD_SYNC, NULL);
    }
    assert_int_equal(hs_stop(&h), 0);
}

/* ---- collections ---- */

static void test_collections_create_drop_list_and_their_limit(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, NULL);
    list_is(&h, NULL, 0);
    assert_int_equal(hs_op(&h, SHARD_COLL_CREATE, "x", NULL, NULL), 0);
    assert_int_equal(hs_op(&h, SHARD_COLL_CREATE, "x", NULL, NULL), CS_EEXIST);
    assert_int_equal(hs_op(&h, SHARD_PUT, "y", "k", "v"), 0); /* a put creates y */
    const char *const xy[] = {"x", "y"};
    list_is(&h, xy, 2);
    assert_int_equal(hs_op(&h, SHARD_PUT, "x", "k", "v"), 0);
    assert_int_equal(hs_op(&h, SHARD_COLL_DROP, "x", NULL, NULL), 0);
    hs_expect(&h, "x", "k", NULL);
    assert_int_equal(hs_op(&h, SHARD_COLL_DROP, "x", NULL, NULL), CS_ENOTFOUND);
    list_is(&h, xy + 1, 1);
    assert_int_equal(hs_stats(&h).records, 1); /* x's record went with it */
    assert_int_equal(hs_op(&h, SHARD_COLL_CREATE, "x", NULL, NULL), 0);
    hs_expect(&h, "x", "k", NULL); /* a new, empty x */

    fill_collections(&h, CS_COLLECTIONS_MAX - 2);
    assert_int_equal(hs_stats(&h).collections, CS_COLLECTIONS_MAX);
    assert_int_equal(hs_op(&h, SHARD_COLL_CREATE, "over", NULL, NULL), CS_EFULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "over", "k", "v"), CS_EFULL);
    hs_expect(&h, "over", "k", NULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "x", "k2", "v"), 0); /* existing ones take writes */
    assert_int_equal(hs_op(&h, SHARD_COLL_DROP, fill_names[0], NULL, NULL), 0);
    assert_int_equal(hs_op(&h, SHARD_COLL_CREATE, "over", NULL, NULL), 0); /* room again */
    assert_int_equal(hs_stats(&h).collections, CS_COLLECTIONS_MAX);
    hs_check(&h);
    assert_int_equal(hs_stop(&h), 0);
}

/* ---- limits and failures ---- */

static void test_memory_limit_refuses_writes_that_add_but_not_deletes(void **state)
{
    (void)state;
    struct hs h;
    memset(&h, 0, sizeof(h));
    cst_tmpdir_make(h.dir, sizeof(h.dir), "exec");
    struct shard_config cfg = hs_config(&h, SHARD_SYNC);
    cfg.memory_bytes_max = 256u << 10;
    hs_launch(&h, &cfg);
    char key[16], val[201];
    memset(val, 'v', 200);
    val[200] = 0;
    int rc = 0, n = 0;
    for (; n < 100000 && rc == 0; n++) { /* bounded: 256 KiB hold far fewer records */
        snprintf(key, sizeof(key), "k%06d", n);
        rc = hs_op(&h, SHARD_PUT, "c", key, val);
    }
    assert_int_equal(rc, CS_EFULL);
    assert_true(n > 100);
    struct cs_shard_stats st = hs_stats(&h);
    assert_true(st.tree_bytes >= cfg.memory_bytes_max);
    assert_int_equal(st.records, (uint64_t)n - 1); /* the refused put added nothing */
    hs_expect(&h, "c", key, NULL);
    const struct shard_batch_op ops[] = {bop(SHARD_BATCH_DEL, "c", "k000000", NULL)};
    assert_int_equal(hs_batch(&h, ops, 1), CS_EFULL); /* a batch may add: refused whole */
    hs_expect(&h, "c", "k000000", val);
    assert_int_equal(hs_op(&h, SHARD_DEL, "c", "k000000", NULL), 0); /* a delete frees */
    hs_expect(&h, "c", "k000000", NULL);
    hs_check(&h);
    assert_int_equal(hs_stop(&h), 0);
}

/* The second WAL write fails: that frame's put is taken back, and from then on every write is
 * refused with CS_EIO (the shard is read-only until reopened) while reads still answer. */
static void test_writes_fail_with_eio_after_a_write_error_while_reads_go_on(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, "write_eio=2");
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k", "v"), 0); /* write 1 */
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "lost", "v"), CS_EIO);
    hs_expect(&h, "a", "lost", NULL);
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k2", "v"), CS_EIO);
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k", "changed"), CS_EIO);
    assert_int_equal(hs_op(&h, SHARD_DEL, "a", "k", NULL), CS_EIO);
    const struct shard_batch_op ops[] = {bop(SHARD_BATCH_PUT, "a", "b", "v")};
    assert_int_equal(hs_batch(&h, ops, 1), CS_EIO);
    assert_int_equal(hs_op(&h, SHARD_COLL_CREATE, "z", NULL, NULL), CS_EIO);
    assert_int_equal(hs_op(&h, SHARD_COLL_DROP, "a", NULL, NULL), CS_EIO);
    hs_expect(&h, "a", "k", "v");
    hs_expect(&h, "a", "k2", NULL);
    hs_expect(&h, "z", "k", NULL);
    const char *const a[] = {"a"};
    list_is(&h, a, 1);
    assert_int_equal(hs_stats(&h).wal_frames, 1);
    assert_int_equal(hs_stop(&h), CS_EIO);
}

/* ---- replay ---- */

/* Every record type a live shard logs (collection create and drop, put, delete, a batch with a
 * collection it creates) comes back through replay after a reopen, in order. */
static void test_replay_restores_every_record_type(void **state)
{
    (void)state;
    struct hs h;
    hs_start(&h, SHARD_SYNC, NULL);
    assert_int_equal(hs_op(&h, SHARD_COLL_CREATE, "e", NULL, NULL), 0); /* create: 1 */
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k1", "v1"), 0);         /* create + put: 3 */
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k2", "v2"), 0);         /* 4 */
    assert_int_equal(hs_op(&h, SHARD_DEL, "a", "k1", NULL), 0);         /* 5 */
    const struct shard_batch_op ops[] = {
        bop(SHARD_BATCH_PUT, "a", "k3", "v3"),
        bop(SHARD_BATCH_DEL, "a", "k2", NULL),
        bop(SHARD_BATCH_PUT, "b", "x", "bx"), /* creates b */
        bop(SHARD_BATCH_DEL, "a", "none", NULL),
    };
    assert_int_equal(hs_batch(&h, ops, sizeof(ops) / sizeof(ops[0])), 0); /* create + batch: 7 */
    assert_int_equal(hs_op(&h, SHARD_PUT, "gone", "g", "v"), 0);          /* 9 */
    assert_int_equal(hs_op(&h, SHARD_COLL_DROP, "gone", NULL, NULL), 0);  /* 10 */
    assert_int_equal(hs_op(&h, SHARD_PUT, "gone", "g2", "again"), 0);     /* a new id: 12 */
    assert_int_equal(hs_op(&h, SHARD_PUT, "a", "k4", ""), 0);             /* 13 */
    struct cs_shard_stats live = hs_stats(&h);
    assert_int_equal(live.wal_lsn, 13);
    hs_reopen(&h, SHARD_SYNC, NULL);
    struct cs_shard_stats st = hs_stats(&h);
    assert_int_equal(st.recovered_records, 13);
    assert_int_equal(st.wal_lsn, live.wal_lsn);
    assert_int_equal(st.records, live.records);
    assert_int_equal(st.records, 4);
    hs_expect(&h, "a", "k1", NULL);
    hs_expect(&h, "a", "k2", NULL);
    hs_expect(&h, "a", "k3", "v3");
    hs_expect(&h, "a", "k4", "");
    hs_expect(&h, "b", "x", "bx");
    hs_expect(&h, "gone", "g", NULL);
    hs_expect(&h, "gone", "g2", "again");
    const char *const names[] = {"a", "b", "e", "gone"};
    list_is(&h, names, 4);
    hs_check(&h);
    assert_int_equal(hs_stop(&h), 0);
}

/* A hand-built shard for shard_replay_apply (the test thread is its owner). */
static struct shard *bare_shard(void)
{
    struct shard *sh = aligned_alloc(64, (sizeof(*sh) + 63) & ~(size_t)63);
    assert_non_null(sh);
    memset(sh, 0, sizeof(*sh));
    sh->owner = pthread_self();
    sh->by_name = calloc(COLL_BUCKETS, sizeof(*sh->by_name));
    sh->by_id = calloc(COLL_BUCKETS, sizeof(*sh->by_id));
    assert_non_null(sh->by_name);
    assert_non_null(sh->by_id);
    return sh;
}

/* Every collection ever added is on the dirty list (nothing publishes views here). */
static void bare_free(struct shard *sh)
{
    for (struct shard_coll *c = sh->dirty, *next; c; c = next) {
        next = c->next_dirty;
        btree_destroy(&c->tree);
        cs_mem_free(c);
    }
    free(sh->by_name);
    free(sh->by_id);
    free(sh);
}

static struct wal_rec rec_of(uint8_t type, uint32_t coll, const char *key, const char *val)
{
    struct wal_rec r = {.type = type,
                        .coll = coll,
                        .key = key,
                        .klen = key ? strlen(key) : 0,
                        .val = val,
                        .vlen = val ? strlen(val) : 0};
    return r;
}

/* Append the encoding of r (the RECORD layout of wal.c) to buf at *len. */
static void rec_add(uint8_t *buf, size_t cap, size_t *len, struct wal_rec r)
{
    assert_true(*len + WAL_RECORD_HEADER_BYTES + r.klen + r.vlen <= cap);
    uint8_t *p = buf + *len;
    p[0] = r.type;
    p[1] = 0;
    cs_put_le16(p + 2, (uint16_t)r.klen);
    cs_put_le32(p + 4, r.coll);
    cs_put_le32(p + 8, (uint32_t)r.vlen);
    memcpy(p + WAL_RECORD_HEADER_BYTES, r.key, r.klen);
    if (r.vlen)
        memcpy(p + WAL_RECORD_HEADER_BYTES + r.klen, r.val, r.vlen);
    *len += WAL_RECORD_HEADER_BYTES + r.klen + r.vlen;
}

static int apply(struct shard *sh, struct wal_rec r)
{
    return shard_replay_apply(sh, sh->applied_lsn + 1, &r);
}

static int apply_batch(struct shard *sh, const uint8_t *body, size_t len)
{
    struct wal_rec r = {.type = WAL_BATCH, .val = body, .vlen = len};
    return apply(sh, r);
}

static void bare_expect(struct shard *sh, uint32_t coll, const char *key, const char *val)
{
    struct shard_coll *c = coll_find_id(sh, coll);
    assert_non_null(c);
    const void *v;
    size_t vlen;
    int rc = btree_get(&c->tree, key, strlen(key), &v, &vlen);
    if (!val) {
        assert_int_equal(rc, CS_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(vlen, strlen(val));
    assert_memory_equal(v, val, vlen);
}

static void test_replay_refuses_records_that_contradict_the_state(void **state)
{
    (void)state;
    struct shard *sh = bare_shard();
    assert_int_equal(apply(sh, rec_of(WAL_PUT, 1, "k", "v")), CS_ECORRUPT); /* no such id */
    assert_int_equal(apply(sh, rec_of(WAL_COLL_DROP, 1, NULL, NULL)), CS_ECORRUPT);
    assert_int_equal(apply(sh, rec_of(WAL_COLL_CREATE, 1, "a", NULL)), 0);
    assert_int_equal(apply(sh, rec_of(WAL_COLL_CREATE, 1, "b", NULL)), CS_ECORRUPT); /* id */
    assert_int_equal(apply(sh, rec_of(WAL_COLL_CREATE, 2, "a", NULL)), CS_ECORRUPT); /* name */
    assert_int_equal(apply(sh, rec_of(WAL_PUT, 1, "k", "v")), 0);
    assert_int_equal(apply(sh, rec_of(WAL_PUT, 1, "k", "v2")), 0); /* a replace is fine */
    assert_int_equal(apply(sh, rec_of(WAL_DEL, 1, "missing", NULL)), CS_ECORRUPT);
    assert_int_equal(apply(sh, rec_of(99, 1, "k", NULL)), CS_ECORRUPT); /* unknown type */
    bare_expect(sh, 1, "k", "v2");

    uint8_t body[512];
    size_t len = 0; /* a batch holding a record a batch may not hold: nothing applied */
    rec_add(body, sizeof(body), &len, rec_of(WAL_PUT, 1, "b1", "x"));
    rec_add(body, sizeof(body), &len, rec_of(WAL_COLL_CREATE, 3, "c", NULL));
    assert_int_equal(apply_batch(sh, body, len), CS_ECORRUPT);
    bare_expect(sh, 1, "b1", NULL);
    len = 0; /* a batch whose last record is cut short: nothing applied */
    rec_add(body, sizeof(body), &len, rec_of(WAL_PUT, 1, "b1", "x"));
    rec_add(body, sizeof(body), &len, rec_of(WAL_PUT, 1, "b2", "y"));
    assert_int_equal(apply_batch(sh, body, len - 1), CS_ECORRUPT);
    bare_expect(sh, 1, "b1", NULL);
    len = 0; /* a batch deleting a missing key contradicts the state */
    rec_add(body, sizeof(body), &len, rec_of(WAL_DEL, 1, "missing", NULL));
    assert_int_equal(apply_batch(sh, body, len), CS_ECORRUPT);
    len = 0; /* a valid batch */
    rec_add(body, sizeof(body), &len, rec_of(WAL_PUT, 1, "b1", "x"));
    rec_add(body, sizeof(body), &len, rec_of(WAL_DEL, 1, "k", NULL));
    rec_add(body, sizeof(body), &len, rec_of(WAL_PUT, 1, "b2", "y"));
    assert_int_equal(apply_batch(sh, body, len), 0);
    bare_expect(sh, 1, "b1", "x");
    bare_expect(sh, 1, "b2", "y");
    bare_expect(sh, 1, "k", NULL);

    assert_int_equal(apply(sh, rec_of(WAL_COLL_DROP, 1, NULL, NULL)), 0);
    assert_int_equal(apply(sh, rec_of(WAL_PUT, 1, "k", "v")), CS_ECORRUPT); /* dropped id */
    assert_int_equal(apply(sh, rec_of(WAL_COLL_CREATE, 2, "a", NULL)), 0);  /* the name again */
    assert_null(coll_find_id(sh, 1));
    assert_int_equal(sh->next_coll_id, 3);
    bare_free(sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del_and_their_misses_in_every_durability),
        cmocka_unit_test(test_batch_applies_every_operation),
        cmocka_unit_test(test_batch_delete_in_a_missing_collection_is_not_logged),
        cmocka_unit_test(test_batch_failing_in_the_middle_changes_no_record),
        cmocka_unit_test(test_collections_create_drop_list_and_their_limit),
        cmocka_unit_test(test_memory_limit_refuses_writes_that_add_but_not_deletes),
        cmocka_unit_test(test_writes_fail_with_eio_after_a_write_error_while_reads_go_on),
        cmocka_unit_test(test_replay_restores_every_record_type),
        cmocka_unit_test(test_replay_refuses_records_that_contradict_the_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
