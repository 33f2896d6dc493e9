/* Unit and property tests of the copy-on-write B+ tree (shards/btree.c).
 *
 * The property tests run random puts, deletes, reads, snapshots and restores against a model
 * (a presence flag and a value descriptor per key of a fixed, sorted key set), run the checker
 * after every batch, and verify each held snapshot against the model copy taken with it,
 * through a cursor in both directions. Seeded: CS_SEED=<n> replays a run; CS_TEST_LONG=1 runs
 * ten times more operations. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shards/btree.h"
#include "cstore.h"
#include "util.h"

static uint64_t test_seed;
static int height_seen_max; /* tallest tree a property test walked (cursor depth) */

/* ---- Helpers ------------------------------------------------------------------------------- */

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

static void assert_tree_ok(const struct btree *t)
{
    char msg[256] = "";
    int rc = btree_check(t, msg, sizeof(msg));
    if (rc)
        fail_msg("btree_check: %s (seed %llu)", msg, (unsigned long long)test_seed);
}

static void assert_snap_ok(const struct btree_snap *s)
{
    char msg[256] = "";
    int rc = btree_snap_check(s, msg, sizeof(msg));
    if (rc)
        fail_msg("btree_snap_check: %s (seed %llu)", msg, (unsigned long long)test_seed);
}

static uint8_t value_byte(size_t i, uint32_t seed)
{
    return (uint8_t)(seed + i * 131u + (i >> 8));
}

/* Deterministic value bytes of a value descriptor. */
static void value_fill(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = value_byte(i, seed);
}

static uint8_t *value_buf(size_t len, uint32_t seed)
{
    uint8_t *v = malloc(len ? len : 1);
    assert_non_null(v);
    value_fill(v, len, seed);
    return v;
}

static void put_ok(struct btree *t, const void *k, size_t klen, const void *v, size_t vlen,
                   bool want_replaced)
{
    bool replaced = !want_replaced;
    assert_int_equal(btree_put(t, k, klen, v, vlen, &replaced), 0);
    assert_true(replaced == want_replaced);
}

static void get_equals(const struct btree *t, const void *k, size_t klen, const void *v,
                       size_t vlen)
{
    const void *got;
    size_t got_len;
    assert_int_equal(btree_get(t, k, klen, &got, &got_len), 0);
    assert_int_equal(got_len, vlen);
    if (vlen)
        assert_memory_equal(got, v, vlen);
}

/* Key of number i: 16 bytes, big-endian number first so that number order is key order. */
static void key16(uint8_t *k, uint64_t i)
{
    for (int b = 0; b < 8; b++)
        k[b] = (uint8_t)(i >> (56 - 8 * b));
    memcpy(k + 8, "-padkey-", 8);
}

static void cursor_at(const struct btree_cursor *c, const void *k, size_t klen)
{
    const void *key, *val;
    size_t got_klen, vlen;
    btree_cursor_get(c, &key, &got_klen, &val, &vlen);
    assert_int_equal(got_klen, klen);
    assert_memory_equal(key, k, klen);
}

/* ---- Unit tests ---------------------------------------------------------------------------- */

static void test_empty_tree_has_no_records(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    const void *v;
    size_t vlen;
    assert_int_equal(btree_get(&t, "a", 1, &v, &vlen), CS_ENOTFOUND);
    assert_int_equal(btree_del(&t, "a", 1), CS_ENOTFOUND);
    assert_tree_ok(&t);
    struct btree_snap s;
    btree_snap_take(&t, &s);
    assert_int_equal(s.count, 0);
    struct btree_cursor c;
    btree_cursor_init(&c, &s);
    assert_false(btree_cursor_first(&c));
    assert_false(btree_cursor_last(&c));
    assert_false(btree_cursor_seek(&c, "a", 1));
    assert_false(btree_cursor_seek_le(&c, "a", 1));
    assert_false(btree_cursor_next(&c));
    assert_false(btree_cursor_prev(&c));
    assert_snap_ok(&s);
    btree_snap_release(&t, &s);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_put_get_replace_del_single_key(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    put_ok(&t, "key", 3, "v1", 2, false);
    get_equals(&t, "key", 3, "v1", 2);
    assert_int_equal(t.count, 1);
    put_ok(&t, "key", 3, "value-two", 9, true);
    get_equals(&t, "key", 3, "value-two", 9);
    put_ok(&t, "key", 3, NULL, 0, true);
    get_equals(&t, "key", 3, NULL, 0);
    assert_int_equal(t.count, 1);
    const void *v;
    size_t vlen;
    assert_int_equal(btree_get(&t, "ke", 2, &v, &vlen), CS_ENOTFOUND);
    assert_int_equal(btree_get(&t, "key\0", 4, &v, &vlen), CS_ENOTFOUND);
    assert_int_equal(btree_del(&t, "kez", 3), CS_ENOTFOUND);
    assert_int_equal(btree_del(&t, "key", 3), 0);
    assert_int_equal(btree_del(&t, "key", 3), CS_ENOTFOUND);
    assert_int_equal(t.count, 0);
    assert_null(t.root);
    assert_tree_ok(&t);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_memcmp_order_puts_shorter_key_first(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    const char *keys[] = {"ab", "a", "a\xff", "b", "a\0", "abc", "\x01", "\xff\xff\xff\xff\xff"};
    size_t lens[] = {2, 1, 2, 1, 2, 3, 1, 5};
    for (size_t i = 0; i < CS_ARRAY_SIZE(keys); i++)
        put_ok(&t, keys[i], lens[i], keys[i], lens[i], false);
    const char *order[] = {"\x01", "a", "a\0", "ab", "abc", "a\xff", "b", "\xff\xff\xff\xff\xff"};
    size_t order_lens[] = {1, 1, 2, 2, 3, 2, 1, 5};
    struct btree_snap s;
    btree_snap_take(&t, &s);
    struct btree_cursor c;
    btree_cursor_init(&c, &s);
    bool on = btree_cursor_first(&c);
    for (size_t i = 0; i < CS_ARRAY_SIZE(order); i++) {
        assert_true(on);
        cursor_at(&c, order[i], order_lens[i]);
        on = btree_cursor_next(&c);
    }
    assert_false(on);
    btree_snap_release(&t, &s);
    assert_tree_ok(&t);
    btree_destroy(&t);
}

static void test_max_key_and_value_sizes_round_trip(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    uint8_t key[CS_KEY_MAX];
    size_t sizes[] = {0, 1, 255, 256, 257, 4096, CS_VALUE_MAX};
    for (size_t i = 0; i < CS_ARRAY_SIZE(sizes); i++) {
        memset(key, 'k', sizeof(key));
        key[CS_KEY_MAX - 1] = (uint8_t)i;
        uint8_t *v = value_buf(sizes[i], (uint32_t)i);
        put_ok(&t, key, CS_KEY_MAX, v, sizes[i], false);
        free(v);
    }
    /* many maximal keys force multi-level trees with few entries per node */
    for (unsigned i = 0; i < 200; i++) {
        memset(key, 'm', sizeof(key));
        memcpy(key + CS_KEY_MAX - 4, &i, 4);
        uint8_t *v = value_buf(256, i);
        put_ok(&t, key, CS_KEY_MAX, v, 256, false);
        free(v);
    }
    assert_tree_ok(&t);
    for (size_t i = 0; i < CS_ARRAY_SIZE(sizes); i++) {
        memset(key, 'k', sizeof(key));
        key[CS_KEY_MAX - 1] = (uint8_t)i;
        uint8_t *v = value_buf(sizes[i], (uint32_t)i);
        get_equals(&t, key, CS_KEY_MAX, v, sizes[i]);
        free(v);
    }
    for (unsigned i = 0; i < 200; i += 2) {
        memset(key, 'm', sizeof(key));
        memcpy(key + CS_KEY_MAX - 4, &i, 4);
        assert_int_equal(btree_del(&t, key, CS_KEY_MAX), 0);
    }
    assert_tree_ok(&t);
    assert_int_equal(t.count, CS_ARRAY_SIZE(sizes) + 100);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

/* Tree of keys key16(10), key16(20), ..., key16(10 * n). */
static void fill_tens(struct btree *t, unsigned n)
{
    uint8_t k[16];
    for (unsigned i = 1; i <= n; i++) {
        key16(k, 10ull * i);
        put_ok(t, k, 16, k, 16, false);
    }
}

static void test_cursor_positions_at_edges(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    const unsigned n = 5000; /* several levels */
    fill_tens(&t, n);
    assert_tree_ok(&t);
    assert_true(t.root != NULL);
    struct btree_snap s;
    btree_snap_take(&t, &s);
    struct btree_cursor c;
    btree_cursor_init(&c, &s);
    uint8_t k[16];

    assert_true(btree_cursor_first(&c));
    key16(k, 10);
    cursor_at(&c, k, 16);
    assert_false(btree_cursor_prev(&c));
    assert_false(btree_cursor_next(&c)); /* fell off: not positioned */

    assert_true(btree_cursor_last(&c));
    key16(k, 10ull * n);
    cursor_at(&c, k, 16);
    assert_false(btree_cursor_next(&c));

    key16(k, 5); /* below everything */
    assert_true(btree_cursor_seek(&c, k, 16));
    key16(k, 10);
    cursor_at(&c, k, 16);
    key16(k, 5);
    assert_false(btree_cursor_seek_le(&c, k, 16));

    key16(k, 10ull * n + 1); /* above everything */
    assert_false(btree_cursor_seek(&c, k, 16));
    assert_true(btree_cursor_seek_le(&c, k, 16));
    key16(k, 10ull * n);
    cursor_at(&c, k, 16);

    for (unsigned i = 1; i < n; i += 37) { /* exact and between keys, across leaf edges */
        key16(k, 10ull * i);
        assert_true(btree_cursor_seek(&c, k, 16));
        cursor_at(&c, k, 16);
        assert_true(btree_cursor_seek_le(&c, k, 16));
        cursor_at(&c, k, 16);
        key16(k, 10ull * i + 5);
        assert_true(btree_cursor_seek(&c, k, 16));
        key16(k, 10ull * (i + 1));
        cursor_at(&c, k, 16);
        key16(k, 10ull * i + 5);
        assert_true(btree_cursor_seek_le(&c, k, 16));
        key16(k, 10ull * i);
        cursor_at(&c, k, 16);
        assert_true(btree_cursor_prev(&c) == (i > 1));
    }

    unsigned seen = 0; /* full walks both ways */
    for (bool on = btree_cursor_first(&c); on; on = btree_cursor_next(&c)) {
        key16(k, 10ull * ++seen);
        cursor_at(&c, k, 16);
    }
    assert_int_equal(seen, n);
    for (bool on = btree_cursor_last(&c); on; on = btree_cursor_prev(&c)) {
        key16(k, 10ull * seen--);
        cursor_at(&c, k, 16);
    }
    assert_int_equal(seen, 0);
    btree_snap_release(&t, &s);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_snapshot_unchanged_by_later_writes(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    fill_tens(&t, 3000);
    struct btree_snap s;
    btree_snap_take(&t, &s);
    uint8_t k[16];
    for (unsigned i = 1; i <= 3000; i++) { /* rewrite every other key, delete the rest */
        key16(k, 10ull * i);
        if (i % 2)
            put_ok(&t, k, 16, "new", 3, true);
        else
            assert_int_equal(btree_del(&t, k, 16), 0);
        key16(k, 10ull * i + 1);
        put_ok(&t, k, 16, "added", 5, false);
    }
    assert_tree_ok(&t);
    assert_snap_ok(&s);
    assert_int_equal(s.count, 3000);
    struct btree_cursor c;
    btree_cursor_init(&c, &s);
    unsigned i = 0;
    for (bool on = btree_cursor_first(&c); on; on = btree_cursor_next(&c)) {
        const void *key, *val;
        size_t klen, vlen;
        btree_cursor_get(&c, &key, &klen, &val, &vlen);
        key16(k, 10ull * ++i);
        assert_int_equal(klen, 16);
        assert_memory_equal(key, k, 16);
        assert_int_equal(vlen, 16);
        assert_memory_equal(val, k, 16);
    }
    assert_int_equal(i, 3000);
    btree_snap_release(&t, &s);
    assert_tree_ok(&t); /* nothing shared now: byte accounting is exact */
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_restore_returns_to_snapshot(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    fill_tens(&t, 1000);
    struct btree_snap s;
    btree_snap_take(&t, &s);
    uint64_t bytes_before = t.bytes;
    uint8_t k[16];
    for (unsigned i = 1; i <= 1000; i += 3) {
        key16(k, 10ull * i);
        assert_int_equal(btree_del(&t, k, 16), 0);
        key16(k, 10ull * i + 7);
        put_ok(&t, k, 16, "x", 1, false);
    }
    btree_restore(&t, &s);
    assert_int_equal(t.count, 1000);
    assert_tree_ok(&t);
    for (unsigned i = 1; i <= 1000; i++) {
        key16(k, 10ull * i);
        get_equals(&t, k, 16, k, 16);
        key16(k, 10ull * i + 7);
        const void *v;
        size_t vlen;
        assert_int_equal(btree_get(&t, k, 16, &v, &vlen), CS_ENOTFOUND);
    }
    btree_snap_release(&t, &s);
    assert_tree_ok(&t);
    assert_true(t.bytes <= bytes_before + 64 * 4096); /* at most the spare nodes on top */
    /* the restored tree is writable and the snapshot-less tree frees to nothing */
    key16(k, 5);
    put_ok(&t, k, 16, "y", 1, false);
    assert_tree_ok(&t);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_restore_to_empty_snapshot_empties_tree(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    struct btree_snap s;
    btree_snap_take(&t, &s);
    fill_tens(&t, 500);
    btree_restore(&t, &s);
    assert_int_equal(t.count, 0);
    assert_null(t.root);
    assert_tree_ok(&t);
    btree_snap_release(&t, &s);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_destroy_keeps_live_snapshots_readable(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    fill_tens(&t, 2000);
    uint8_t *big = value_buf(5000, 7);
    put_ok(&t, "big", 3, big, 5000, false);
    struct btree_snap s1, s2;
    btree_snap_take(&t, &s1);
    uint8_t k[16];
    key16(k, 10);
    assert_int_equal(btree_del(&t, k, 16), 0);
    btree_snap_take(&t, &s2);
    btree_destroy(&t);
    assert_snap_ok(&s1);
    assert_snap_ok(&s2);
    assert_int_equal(s1.count, 2001);
    assert_int_equal(s2.count, 2000);
    struct btree_cursor c;
    btree_cursor_init(&c, &s1);
    assert_true(btree_cursor_seek(&c, "big", 3));
    const void *key, *val;
    size_t klen, vlen;
    btree_cursor_get(&c, &key, &klen, &val, &vlen);
    assert_int_equal(vlen, 5000);
    assert_memory_equal(val, big, 5000);
    btree_cursor_init(&c, &s2);
    assert_true(btree_cursor_first(&c));
    key16(k, 20);
    cursor_at(&c, k, 16);
    btree_snap_release(&t, &s1);
    assert_snap_ok(&s2);
    assert_true(t.bytes > 0);
    btree_snap_release(&t, &s2);
    assert_int_equal(t.bytes, 0); /* the last holder freed every node and value */
    free(big);
}

static void test_delete_everything_frees_all_nodes(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    struct rng r = {test_seed};
    enum { N = 20000 };
    static uint32_t ids[N];
    for (uint32_t i = 0; i < N; i++)
        ids[i] = i;
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = (uint32_t)rng_below(&r, i + 1), x = ids[i];
        ids[i] = ids[j];
        ids[j] = x;
    }
    uint8_t k[16], v[300];
    memset(v, 'v', sizeof(v));
    for (uint32_t i = 0; i < N; i++) {
        key16(k, ids[i]);
        put_ok(&t, k, 16, v, (i % 3) ? 16 : 300, false);
    }
    assert_tree_ok(&t);
    for (uint32_t i = 0; i < N; i++) {
        key16(k, (i * 7919u) % N);
        assert_int_equal(btree_del(&t, k, 16), 0);
        if (i % 1000 == 0)
            assert_tree_ok(&t);
    }
    assert_int_equal(t.count, 0);
    assert_null(t.root);
    assert_tree_ok(&t);
    assert_true(t.bytes <= 16 * 4096); /* spare nodes only */
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_checker_reports_damaged_key(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    fill_tens(&t, 300);
    assert_tree_ok(&t);
    struct btree_snap s;
    btree_snap_take(&t, &s);
    struct btree_cursor c;
    btree_cursor_init(&c, &s);
    assert_true(btree_cursor_first(&c));
    const void *key, *val;
    size_t klen, vlen;
    btree_cursor_get(&c, &key, &klen, &val, &vlen);
    uint8_t *byte = (uint8_t *)key + 6; /* key16(10) -> larger than its successor */
    uint8_t saved = *byte;
    *byte = 0xff;
    char msg[256] = "";
    assert_int_equal(btree_check(&t, msg, sizeof(msg)), CS_ECORRUPT);
    assert_true(strlen(msg) > 0);
    assert_int_equal(btree_snap_check(&s, msg, sizeof(msg)), CS_ECORRUPT);
    *byte = saved;
    assert_tree_ok(&t);
    btree_snap_release(&t, &s);
    btree_destroy(&t);
}

static int cstr_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t xl = strlen(x), yl = strlen(y);
    int r = memcmp(x, y, xl < yl ? xl : yl);
    return r ? r : (xl > yl) - (xl < yl);
}

/* Nodes keep their keys' common prefix aside: keys outside it, shorter than it, or equal to it
 * must still be found, ordered and inserted right. */
static void test_keys_outside_node_prefix_order_right(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    enum { SHARED = 400, EXTRA = 9 };
    static char shared[SHARED][32];
    const char *extra[EXTRA] = {"user:profile:",       "user:profil", "user:profile:0000",
                                "user:profile:00399x", "v",           "u",
                                "user:profile;",       "user",        "user:profile:001"};
    const char *all[SHARED + EXTRA];
    for (unsigned i = 0; i < SHARED; i++) {
        snprintf(shared[i], sizeof(shared[i]), "user:profile:%05u", i);
        all[i] = shared[i];
        put_ok(&t, shared[i], strlen(shared[i]), "v", 1, false);
    }
    assert_tree_ok(&t);
    struct btree_snap s;
    for (unsigned i = 0; i < EXTRA; i++) { /* absent: get misses, seeks land on neighbours */
        const void *v;
        size_t vlen;
        assert_int_equal(btree_get(&t, extra[i], strlen(extra[i]), &v, &vlen), CS_ENOTFOUND);
        btree_snap_take(&t, &s);
        struct btree_cursor c;
        btree_cursor_init(&c, &s);
        const char *ge = NULL, *le = NULL;
        for (unsigned j = 0; j < SHARED; j++) {
            const char *k[2] = {shared[j], extra[i]};
            if (cstr_cmp(&k[0], &k[1]) > 0 && !ge)
                ge = shared[j];
            if (cstr_cmp(&k[0], &k[1]) < 0)
                le = shared[j];
        }
        assert_true(btree_cursor_seek(&c, extra[i], strlen(extra[i])) == (ge != NULL));
        if (ge)
            cursor_at(&c, ge, strlen(ge));
        assert_true(btree_cursor_seek_le(&c, extra[i], strlen(extra[i])) == (le != NULL));
        if (le)
            cursor_at(&c, le, strlen(le));
        btree_snap_release(&t, &s);
    }
    for (unsigned i = 0; i < EXTRA; i++) {
        all[SHARED + i] = extra[i];
        put_ok(&t, extra[i], strlen(extra[i]), "x", 1, false);
        assert_tree_ok(&t);
    }
    qsort(all, SHARED + EXTRA, sizeof(all[0]), cstr_cmp);
    btree_snap_take(&t, &s);
    struct btree_cursor c;
    btree_cursor_init(&c, &s);
    unsigned i = 0;
    for (bool on = btree_cursor_first(&c); on; on = btree_cursor_next(&c)) {
        cursor_at(&c, all[i], strlen(all[i]));
        i++;
    }
    assert_int_equal(i, SHARED + EXTRA);
    btree_snap_release(&t, &s);
    btree_destroy(&t);
}

/* Walk two snapshots side by side: same records in the same order. */
static void snaps_equal(const struct btree_snap *a, const struct btree_snap *b)
{
    struct btree_cursor ca, cb;
    btree_cursor_init(&ca, a);
    btree_cursor_init(&cb, b);
    assert_int_equal(a->count, b->count);
    bool on_a = btree_cursor_first(&ca), on_b = btree_cursor_first(&cb);
    while (on_a && on_b) {
        const void *ka, *va, *kb, *vb;
        size_t kla, vla, klb, vlb;
        btree_cursor_get(&ca, &ka, &kla, &va, &vla);
        btree_cursor_get(&cb, &kb, &klb, &vb, &vlb);
        assert_int_equal(kla, klb);
        assert_int_equal(vla, vlb);
        assert_true(memcmp(ka, kb, kla) == 0);
        assert_true(memcmp(va, vb, vla) == 0);
        on_a = btree_cursor_next(&ca);
        on_b = btree_cursor_next(&cb);
    }
    assert_false(on_a);
    assert_false(on_b);
}

/* The tree holds exactly what snapshot s holds. */
static void tree_equals_snap(struct btree *t, const struct btree_snap *s)
{
    struct btree_snap now;
    btree_snap_take(t, &now);
    snaps_equal(s, &now);
    btree_snap_release(t, &now);
}

/* What a btree_old_fn was handed, and what it answers. */
struct old_seen {
    unsigned calls;
    bool had;
    uint8_t *val; /* a copy (malloc) of the value handed */
    size_t vlen;
    uint64_t expire_ms;     /* the expiry handed */
    int answer;             /* returned to the write */
    struct btree *snap_of;  /* non-NULL: take a snapshot of this tree in the call */
    struct btree_snap snap; /* that snapshot */
};

static int old_record(void *arg, bool had, const void *val, size_t vlen, uint64_t expire_ms)
{
    struct old_seen *o = arg;
    o->calls++;
    o->expire_ms = expire_ms;
    o->had = had;
    assert_true(had || (val == NULL && vlen == 0));
    free(o->val);
    o->val = malloc(vlen ? vlen : 1);
    assert_non_null(o->val);
    if (vlen)
        memcpy(o->val, val, vlen);
    o->vlen = vlen;
    if (o->snap_of)
        btree_snap_take(o->snap_of, &o->snap);
    return o->answer;
}

/* The last call handed had and the value v[0, vlen). */
static void old_was(struct old_seen *o, unsigned calls, bool had, const void *v, size_t vlen)
{
    assert_int_equal(o->calls, calls);
    assert_true(o->had == had);
    assert_int_equal(o->vlen, vlen);
    if (vlen)
        assert_memory_equal(o->val, v, vlen);
}

static void test_put_old_and_del_old_hand_back_the_value_they_replace(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    struct old_seen o = {0};
    uint8_t *big = value_buf(3000, 7), *big2 = value_buf(5000, 8);
    assert_int_equal(btree_put_old(&t, "k", 1, "v1", 2, 0, old_record, &o), 0); /* empty tree */
    old_was(&o, 1, false, NULL, 0);
    assert_int_equal(btree_put_old(&t, "k", 1, "", 0, 0, old_record, &o), 0);
    old_was(&o, 2, true, "v1", 2);
    assert_int_equal(btree_put_old(&t, "k", 1, big, 3000, 0, old_record, &o), 0);
    old_was(&o, 3, true, NULL, 0); /* an empty value is there: had, not absent */
    assert_int_equal(btree_put_old(&t, "k", 1, big2, 5000, 0, old_record, &o), 0);
    old_was(&o, 4, true, big, 3000); /* out-of-line value, whole */
    fill_tens(&t, 2000);             /* a taller tree around "k" */
    uint8_t k[16];
    key16(k, 10 * 777);
    assert_int_equal(btree_put_old(&t, k, 16, "new", 3, 0, old_record, &o), 0);
    old_was(&o, 5, true, k, 16); /* fill_tens stores each key as its value */
    key16(k, 10 * 777 + 1);
    assert_int_equal(btree_put_old(&t, k, 16, "ins", 3, 0, old_record, &o), 0);
    old_was(&o, 6, false, NULL, 0);
    assert_int_equal(btree_del_old(&t, k, 16, old_record, &o), 0);
    old_was(&o, 7, true, "ins", 3);
    assert_int_equal(btree_del_old(&t, k, 16, old_record, &o), CS_ENOTFOUND);
    assert_int_equal(o.calls, 7); /* a missing key: no call */
    assert_int_equal(btree_del_old(&t, "k", 1, old_record, &o), 0);
    old_was(&o, 8, true, big2, 5000);
    assert_int_equal(btree_put_old(&t, "k", 1, "x", 1, 0, NULL, NULL), 0); /* no callback */
    assert_int_equal(btree_del_old(&t, "k", 1, NULL, NULL), 0);
    assert_tree_ok(&t);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
    free(o.val);
    free(big);
    free(big2);
}

static void test_old_value_callback_error_cancels_the_write(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    fill_tens(&t, 3000);
    uint8_t *big = value_buf(1000, 3);
    struct old_seen o = {.answer = -ENOMEM};
    uint8_t k[16];
    for (unsigned i = 0; i < 200; i++) {
        struct btree_snap before;
        btree_snap_take(&t, &before);
        uint64_t count = t.count;
        bool absent = (i / 4) % 2, del = i % 4 == 1;
        key16(k, 10 * (1 + i * 13 % 3000) + absent);
        size_t vlen = i % 3 == 0 ? 1000 : 16;
        int rc = del ? btree_del_old(&t, k, 16, old_record, &o)
                     : btree_put_old(&t, k, 16, big, vlen, 0, old_record, &o);
        assert_int_equal(rc, del && absent ? CS_ENOTFOUND : -ENOMEM);
        assert_int_equal(t.count, count);
        assert_tree_ok(&t);
        tree_equals_snap(&t, &before);
        btree_snap_release(&t, &before);
    }
    free(o.val);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0); /* a cancelled put left no value blob behind */
    free(big);
}

/* The frame undo log's pattern: the callback snapshots the tree it is called from. The snapshot
 * holds the state before the write, the tree the state after it, and the write copies the path
 * it shares with the snapshot instead of changing it. */
static void test_snapshot_taken_in_the_old_value_callback_keeps_the_state_before(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    fill_tens(&t, 3000);
    struct old_seen o = {.snap_of = &t};
    uint8_t k[16];
    for (unsigned i = 0; i < 300; i++) {
        key16(k, 10 * (1 + i * 7 % 3000) + i % 2);
        const void *was;
        size_t was_len = 0;
        bool had = btree_get(&t, k, 16, &was, &was_len) == 0;
        uint8_t copy[16];
        assert_true(was_len <= sizeof(copy));
        if (had)
            memcpy(copy, was, was_len);
        int rc = i % 3 == 0 ? btree_del_old(&t, k, 16, old_record, &o)
                            : btree_put_old(&t, k, 16, "after", 5, 0, old_record, &o);
        if (rc == CS_ENOTFOUND) {
            assert_false(had);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_true(o.had == had);
        assert_snap_ok(&o.snap);
        assert_tree_ok(&t);
        const void *v;
        size_t vlen;
        int in_snap = btree_snap_get(&o.snap, k, 16, &v, &vlen);
        if (had) {
            assert_int_equal(in_snap, 0);
            assert_int_equal(vlen, was_len);
            assert_memory_equal(v, copy, vlen);
        } else {
            assert_int_equal(in_snap, CS_ENOTFOUND);
        }
        if (i % 3 == 0)
            assert_int_equal(btree_get(&t, k, 16, &v, &vlen), CS_ENOTFOUND);
        else
            get_equals(&t, k, 16, "after", 5);
        if (i % 2) /* roll back through it, as undo_rollback does */
            btree_restore(&t, &o.snap);
        btree_snap_release(&t, &o.snap);
    }
    free(o.val);
    assert_tree_ok(&t);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
}

static void test_failed_allocation_leaves_tree_unchanged(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    fill_tens(&t, 3000);
    struct rng r = {test_seed ^ 0xa11c};
    uint8_t *big = value_buf(1000, 3);
    uint8_t k[16];
    unsigned failures = 0;
    for (unsigned i = 0; i < 3000; i++) {
        struct btree_snap before;
        btree_snap_take(&t, &before); /* shares the root: a write must copy its path */
        uint64_t count = t.count;
        t.fail_alloc_in = 1 + (uint32_t)rng_below(&r, 4);
        int rc;
        key16(k, 10 * (1 + rng_below(&r, 3000)) + rng_below(&r, 2));
        bool with_old = rng_below(&r, 2) == 0;
        struct old_seen o = {0};
        if (rng_below(&r, 3) == 0)
            rc = with_old ? btree_del_old(&t, k, 16, old_record, &o) : btree_del(&t, k, 16);
        else if (with_old)
            rc = btree_put_old(&t, k, 16, big, rng_below(&r, 2) ? 1000 : 16, 0, old_record, &o);
        else
            rc = btree_put(&t, k, 16, big, rng_below(&r, 2) ? 1000 : 16, NULL);
        t.fail_alloc_in = 0;
        free(o.val);
        assert_true(rc == 0 || rc == -ENOMEM || rc == CS_ENOTFOUND);
        /* the callback comes after the last allocation: once per write that succeeds, never
         * for one that fails (so its caller has nothing to take back) */
        assert_int_equal(o.calls, with_old && rc == 0 ? 1 : 0);
        assert_tree_ok(&t);
        if (rc == -ENOMEM) {
            failures++;
            assert_int_equal(t.count, count);
            tree_equals_snap(&t, &before);
        }
        btree_snap_release(&t, &before);
    }
    print_message("%u writes failed to allocate\n", failures);
    assert_true(failures > 100);
    assert_tree_ok(&t);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
    free(big);
}

/* Bytes per record of n records of 16-byte keys and 100-byte values, in the given order. */
static double load_bytes_per_record(bool random_order, unsigned n)
{
    struct btree t;
    btree_init(&t, 0);
    struct rng r = {test_seed ^ 0x55};
    uint8_t k[16], v[100];
    memset(v, 'v', sizeof(v));
    for (unsigned i = 0; i < n; i++) {
        key16(k, random_order ? rng_next(&r) : i);
        assert_int_equal(btree_put(&t, k, 16, v, sizeof(v), NULL), 0);
    }
    assert_tree_ok(&t);
    double per = (double)t.bytes / (double)t.count;
    btree_destroy(&t);
    return per;
}

static void test_loads_pack_leaves_within_memory_target(void **state)
{
    (void)state;
    double seq = load_bytes_per_record(false, 200000);
    double rnd = load_bytes_per_record(true, 200000);
    print_message("bytes/record (116 raw): sequential %.1f, random %.1f\n", seq, rnd);
    assert_true(seq <= 1.25 * 116);
    assert_true(rnd <= 1.5 * 116);
}

/* ---- Property test against a model --------------------------------------------------------- */

struct model_key {
    uint8_t *key;
    uint16_t klen;
};

struct model_val {
    bool present;
    uint32_t vlen;
    uint32_t seed;
};

enum { SNAPS_MAX = 4 };

struct model {
    unsigned key_count;
    struct model_key *keys; /* sorted in memcmp order, distinct */
    struct model_val *vals; /* current state per key */
    uint64_t present;
    struct btree_snap snap[SNAPS_MAX];
    struct model_val *snap_vals[SNAPS_MAX];
    uint64_t snap_present[SNAPS_MAX];
    bool snap_held[SNAPS_MAX];
};

static int model_key_cmp(const void *a, const void *b)
{
    const struct model_key *x = a, *y = b;
    int r = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);
    return r ? r : (int)x->klen - (int)y->klen;
}

enum key_shape { SHAPE_SHORT, SHAPE_PREFIXED, SHAPE_LONG };

/* Random distinct keys of one shape, sorted. */
static void model_keys_make(struct model *m, struct rng *r, unsigned want, enum key_shape shape)
{
    m->keys = calloc(want, sizeof(*m->keys));
    assert_non_null(m->keys);
    unsigned n = 0;
    for (unsigned i = 0; i < want; i++) {
        size_t klen;
        if (shape == SHAPE_SHORT)
            klen = 1 + rng_below(r, 16);
        else if (shape == SHAPE_PREFIXED)
            klen = 20 + rng_below(r, 30);
        else
            klen = rng_below(r, 3) == 0 ? 1001 + rng_below(r, CS_KEY_MAX - 1000)
                                        : 1 + rng_below(r, 600);
        uint8_t *k = malloc(klen);
        assert_non_null(k);
        for (size_t b = 0; b < klen; b++)
            k[b] = (uint8_t)(rng_below(r, 4) ? 'a' + rng_below(r, 3) : rng_next(r));
        if (shape == SHAPE_PREFIXED) /* long shared prefix: ties in the slot prefix */
            memcpy(k, "user:profile:", 13);
        if (shape == SHAPE_LONG && klen > 1000 && rng_below(r, 2)) /* ~1000-byte separators */
            memset(k, 'p', 1000);
        m->keys[n].key = k;
        m->keys[n].klen = (uint16_t)klen;
        n++;
    }
    qsort(m->keys, n, sizeof(*m->keys), model_key_cmp);
    unsigned w = 0;
    for (unsigned i = 0; i < n; i++) {
        if (w > 0 && model_key_cmp(&m->keys[w - 1], &m->keys[i]) == 0) {
            free(m->keys[i].key);
            continue;
        }
        m->keys[w++] = m->keys[i];
    }
    m->key_count = w;
}

static uint32_t model_value_len(struct rng *r)
{
    unsigned p = (unsigned)rng_below(r, 1000);
    if (p < 700)
        return (uint32_t)rng_below(r, 120);
    if (p < 900)
        return (uint32_t)(200 + rng_below(r, 100)); /* around the inline limit */
    if (p < 999)
        return (uint32_t)(300 + rng_below(r, 4000));
    return (uint32_t)rng_below(r, CS_VALUE_MAX + 1);
}

static void model_check_value(const struct model_val *v, const void *val, size_t vlen, uint8_t *buf)
{
    assert_int_equal(vlen, v->vlen);
    value_fill(buf, v->vlen, v->seed);
    assert_true(memcmp(val, buf, vlen) == 0);
}

/* Length and the first and last 32 bytes (the value's seed shows in all of them). */
static void model_check_value_ends(const struct model_val *v, const void *val, size_t vlen)
{
    const uint8_t *p = val;
    assert_int_equal(vlen, v->vlen);
    for (size_t i = 0; i < vlen && i < 32; i++)
        assert_true(p[i] == value_byte(i, v->seed));
    for (size_t i = vlen > 32 ? vlen - 32 : 0; i < vlen; i++)
        assert_true(p[i] == value_byte(i, v->seed));
}

/* A btree_old_fn that checks what the write hands back against the model's value. */
struct model_old {
    const struct model_val *want; /* the key's value in the model */
    unsigned calls;
};

static int model_old_check(void *arg, bool had, const void *val, size_t vlen, uint64_t expire_ms)
{
    assert_int_equal(expire_ms, 0);
    struct model_old *o = arg;
    o->calls++;
    assert_true(had == o->want->present);
    if (had)
        model_check_value_ends(o->want, val, vlen);
    else
        assert_int_equal(vlen, 0);
    return 0;
}

static void model_put(struct model *m, struct btree *t, struct rng *r, unsigned i, uint8_t *buf)
{
    struct model_val v = {true, model_value_len(r), (uint32_t)rng_next(r)};
    value_fill(buf, v.vlen, v.seed);
    const struct model_key *k = &m->keys[i];
    if (rng_below(r, 2)) {
        struct model_old o = {&m->vals[i], 0};
        assert_int_equal(btree_put_old(t, k->key, k->klen, buf, v.vlen, 0, model_old_check, &o), 0);
        assert_int_equal(o.calls, 1);
    } else {
        bool replaced;
        assert_int_equal(btree_put(t, k->key, k->klen, buf, v.vlen, &replaced), 0);
        assert_true(replaced == m->vals[i].present);
    }
    m->present += !m->vals[i].present;
    m->vals[i] = v;
}

static void model_del(struct model *m, struct btree *t, struct rng *r, unsigned i)
{
    const struct model_key *k = &m->keys[i];
    struct model_old o = {&m->vals[i], 0};
    int rc = rng_below(r, 2) ? btree_del_old(t, k->key, k->klen, model_old_check, &o)
                             : btree_del(t, k->key, k->klen);
    assert_int_equal(rc, m->vals[i].present ? 0 : CS_ENOTFOUND);
    assert_true(o.calls <= (rc == 0 ? 1u : 0u));
    m->present -= m->vals[i].present;
    m->vals[i].present = false;
}

/* Walk snapshot s forward and backward; it must hold exactly the present keys of vals. */
static void model_verify_snap(const struct model *m, const struct btree_snap *s,
                              const struct model_val *vals, uint64_t present, uint8_t *buf)
{
    assert_int_equal(s->count, present);
    assert_snap_ok(s);
    struct btree_cursor c;
    btree_cursor_init(&c, s);
    for (int dir = 0; dir < 2; dir++) {
        bool back = dir == 1;
        long i = back ? (long)m->key_count - 1 : 0;
        uint64_t seen = 0;
        for (bool on = back ? btree_cursor_last(&c) : btree_cursor_first(&c); on;
             on = back ? btree_cursor_prev(&c) : btree_cursor_next(&c)) {
            while (i >= 0 && i < (long)m->key_count && !vals[i].present)
                i += back ? -1 : 1;
            assert_true(i >= 0 && i < (long)m->key_count);
            const void *key, *val;
            size_t klen, vlen;
            btree_cursor_get(&c, &key, &klen, &val, &vlen);
            assert_int_equal(klen, m->keys[i].klen);
            assert_memory_equal(key, m->keys[i].key, klen);
            if (vlen <= 512) /* large values: their ends (get compares them in full) */
                model_check_value(&vals[i], val, vlen, buf);
            else
                model_check_value_ends(&vals[i], val, vlen);
            i += back ? -1 : 1;
            seen++;
            if (c.depth > height_seen_max)
                height_seen_max = c.depth;
        }
        assert_int_equal(seen, present);
    }
}

/* Seek to a random key of the set in a held snapshot and compare with the model. */
static void model_check_seek(const struct model *m, unsigned slot, struct rng *r)
{
    struct btree_cursor c;
    const struct model_val *vals = m->snap_vals[slot];
    unsigned i = (unsigned)rng_below(r, m->key_count);
    btree_cursor_init(&c, &m->snap[slot]);
    long ge = i, le = i;
    while (ge < (long)m->key_count && !vals[ge].present)
        ge++;
    while (le >= 0 && !vals[le].present)
        le--;
    bool on = btree_cursor_seek(&c, m->keys[i].key, m->keys[i].klen);
    assert_true(on == (ge < (long)m->key_count));
    if (on)
        cursor_at(&c, m->keys[ge].key, m->keys[ge].klen);
    on = btree_cursor_seek_le(&c, m->keys[i].key, m->keys[i].klen);
    assert_true(on == (le >= 0));
    if (on)
        cursor_at(&c, m->keys[le].key, m->keys[le].klen);
}

static void model_snap_take(struct model *m, struct btree *t, unsigned slot)
{
    btree_snap_take(t, &m->snap[slot]);
    memcpy(m->snap_vals[slot], m->vals, m->key_count * sizeof(*m->vals));
    m->snap_present[slot] = m->present;
    m->snap_held[slot] = true;
}

static void model_snap_release(struct model *m, struct btree *t, unsigned slot, uint8_t *buf)
{
    model_verify_snap(m, &m->snap[slot], m->snap_vals[slot], m->snap_present[slot], buf);
    btree_snap_release(t, &m->snap[slot]);
    m->snap_held[slot] = false;
}

/* One random operation. */
static void model_step(struct model *m, struct btree *t, struct rng *r, uint8_t *buf,
                       unsigned put_pct, unsigned snap_div)
{
    unsigned op = (unsigned)rng_below(r, 1000);
    if (op >= 990 && rng_below(r, snap_div) != 0)
        op = 900; /* snapshot actions 1/snap_div as often: a read instead */
    unsigned i = (unsigned)rng_below(r, m->key_count);
    if (op < put_pct * 10) {
        model_put(m, t, r, i, buf);
    } else if (op < 900) {
        model_del(m, t, r, i);
    } else if (op < 990) {
        const void *val;
        size_t vlen;
        int rc = btree_get(t, m->keys[i].key, m->keys[i].klen, &val, &vlen);
        assert_int_equal(rc, m->vals[i].present ? 0 : CS_ENOTFOUND);
        if (rc == 0)
            model_check_value(&m->vals[i], val, vlen, buf);
    } else {
        unsigned slot = (unsigned)rng_below(r, SNAPS_MAX);
        if (!m->snap_held[slot]) {
            model_snap_take(m, t, slot);
        } else if (op < 993) { /* roll back to the snapshot, then drop it */
            btree_restore(t, &m->snap[slot]);
            memcpy(m->vals, m->snap_vals[slot], m->key_count * sizeof(*m->vals));
            m->present = m->snap_present[slot];
            model_snap_release(m, t, slot, buf);
        } else if (op < 996) {
            model_check_seek(m, slot, r);
        } else {
            model_snap_release(m, t, slot, buf);
        }
    }
    assert_int_equal(t->count, m->present);
}

static uint64_t ops_scale(uint64_t ops)
{
    return getenv("CS_TEST_LONG") ? ops * 10 : ops;
}

static void model_run(enum key_shape shape, unsigned key_want, uint64_t ops, unsigned batch,
                      unsigned snap_div)
{
    struct rng r = {test_seed * 31 + shape};
    struct model m;
    memset(&m, 0, sizeof(m));
    model_keys_make(&m, &r, key_want, shape);
    m.vals = calloc(m.key_count, sizeof(*m.vals));
    assert_non_null(m.vals);
    for (unsigned s = 0; s < SNAPS_MAX; s++) {
        m.snap_vals[s] = calloc(m.key_count, sizeof(*m.vals));
        assert_non_null(m.snap_vals[s]);
    }
    uint8_t *buf = malloc(CS_VALUE_MAX);
    assert_non_null(buf);
    struct btree t;
    btree_init(&t, 0);
    ops = ops_scale(ops);
    height_seen_max = 0;
    for (uint64_t done = 0; done < ops; done += batch) {
        /* phases: grow, churn, shrink, so that the tree size sweeps up and down */
        uint64_t phase = (done / (batch * 64)) % 3;
        unsigned put_pct = phase == 0 ? 75 : phase == 1 ? 50 : 25;
        for (unsigned j = 0; j < batch; j++)
            model_step(&m, &t, &r, buf, put_pct, snap_div);
        assert_tree_ok(&t);
    }
    struct btree_snap now;
    btree_snap_take(&t, &now);
    model_verify_snap(&m, &now, m.vals, m.present, buf);
    btree_snap_release(&t, &now);
    print_message("%u keys, %llu ops, tallest tree walked: %d levels\n", m.key_count,
                  (unsigned long long)ops, height_seen_max);
    for (unsigned s = 0; s < SNAPS_MAX; s++)
        if (m.snap_held[s])
            model_snap_release(&m, &t, s, buf);
    assert_tree_ok(&t);
    btree_destroy(&t);
    assert_int_equal(t.bytes, 0);
    for (unsigned i = 0; i < m.key_count; i++)
        free(m.keys[i].key);
    for (unsigned s = 0; s < SNAPS_MAX; s++)
        free(m.snap_vals[s]);
    free(m.keys);
    free(m.vals);
    free(buf);
}

static void test_random_ops_short_keys_match_model(void **state)
{
    (void)state;
    model_run(SHAPE_SHORT, 4000, 1200000, 2000, 1);
}

static void test_random_ops_many_keys_match_model(void **state)
{
    (void)state;
    model_run(SHAPE_SHORT, 60000, 600000, 20000, 50);
}

static void test_random_ops_prefixed_keys_match_model(void **state)
{
    (void)state;
    model_run(SHAPE_PREFIXED, 6000, 800000, 2000, 1);
}

static void test_random_ops_long_keys_match_model(void **state)
{
    (void)state;
    model_run(SHAPE_LONG, 1500, 300000, 1000, 1);
}

/* Ascending and descending bulk loads (the split-point hint) interleaved with snapshots. */
static void test_sequential_loads_with_snapshots_match(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    uint8_t k[16];
    struct btree_snap s;
    for (uint64_t i = 0; i < 50000; i++) {
        key16(k, 1000000 + i);
        put_ok(&t, k, 16, k, 16, false);
        key16(k, 1000000 - i - 1);
        put_ok(&t, k, 16, k, 16, false);
        if (i == 25000)
            btree_snap_take(&t, &s);
    }
    assert_tree_ok(&t);
    assert_snap_ok(&s);
    assert_int_equal(s.count, 50002);
    struct btree_cursor c;
    btree_cursor_init(&c, &s);
    uint64_t want = 1000000 - 25001;
    for (bool on = btree_cursor_first(&c); on; on = btree_cursor_next(&c), want++) {
        key16(k, want);
        cursor_at(&c, k, 16);
    }
    assert_int_equal(want, 1000000 + 25001);
    btree_snap_release(&t, &s);
    assert_tree_ok(&t);
    btree_destroy(&t);
}

/* Records with an expiry: mixed with records without one, inline and blob values, through
 * inserts that split leaves, replaces that add, change or drop the expiry, copy-on-write under a
 * snapshot (which keeps the old expiries), cursors, the old-value callback and deletes; every
 * invariant holds after each step (btree_check also checks the expiry flag). */
static void test_expiry_entries_round_trip(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    static char big[2000];
    memset(big, 'x', sizeof(big));
    char msg[256];
    for (uint64_t i = 0; i < 3000; i++) {
        char k[16];
        int kl = snprintf(k, sizeof(k), "key%06u", (unsigned)i);
        uint64_t exp = i % 3 ? 1000000 + i : 0; /* two in three have one */
        size_t vl = i % 50 == 0 ? sizeof(big) : i % 40;
        assert_int_equal(btree_put_exp(&t, k, (size_t)kl, big, vl, exp, NULL), 0);
    }
    assert_int_equal(btree_check(&t, msg, sizeof(msg)), 0);
    struct btree_snap snap;
    btree_snap_take(&t, &snap);
    for (uint64_t i = 0; i < 3000; i += 7) { /* change expiries under the snapshot */
        char k[16];
        int kl = snprintf(k, sizeof(k), "key%06u", (unsigned)i);
        struct old_seen o = {0};
        uint64_t exp = i % 2 ? 5 : 0;
        assert_int_equal(btree_put_old(&t, k, (size_t)kl, "new", 3, exp, old_record, &o), 0);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.expire_ms, i % 3 ? 1000000 + i : 0);
        free(o.val);
    }
    assert_int_equal(btree_check(&t, msg, sizeof(msg)), 0);
    assert_int_equal(btree_snap_check(&snap, msg, sizeof(msg)), 0);
    struct btree_cursor c;
    btree_cursor_init(&c, &snap);
    uint64_t i = 0;
    for (bool on = btree_cursor_first(&c); on; on = btree_cursor_next(&c), i++) {
        const void *k, *v;
        size_t kl, vl;
        btree_cursor_get(&c, &k, &kl, &v, &vl);
        assert_int_equal(btree_cursor_expiry(&c), i % 3 ? 1000000 + i : 0);
        assert_int_equal(vl, i % 50 == 0 ? sizeof(big) : i % 40);
        assert_memory_equal(v, big, vl);
    }
    assert_int_equal(i, 3000);
    for (i = 0; i < 3000; i++) {
        char k[16];
        int kl = snprintf(k, sizeof(k), "key%06u", (unsigned)i);
        const void *v;
        size_t vl;
        uint64_t exp = 99;
        assert_int_equal(btree_get_exp(&t, k, (size_t)kl, &v, &vl, &exp), 0);
        if (i % 7 == 0) {
            assert_int_equal(exp, i % 2 ? 5 : 0);
            assert_int_equal(vl, 3);
            assert_memory_equal(v, "new", 3);
        } else {
            assert_int_equal(exp, i % 3 ? 1000000 + i : 0);
        }
        assert_int_equal(btree_snap_get_exp(&snap, k, (size_t)kl, &v, &vl, &exp), 0);
        assert_int_equal(exp, i % 3 ? 1000000 + i : 0);
    }
    btree_snap_release(&t, &snap);
    for (i = 0; i < 3000; i += 2) {
        char k[16];
        int kl = snprintf(k, sizeof(k), "key%06u", (unsigned)i);
        assert_int_equal(btree_del(&t, k, (size_t)kl), 0);
    }
    assert_int_equal(t.count, 1500);
    assert_int_equal(btree_check(&t, msg, sizeof(msg)), 0);
    btree_destroy(&t);
}

int main(void)
{
    const char *env = getenv("CS_SEED");
    test_seed = env ? strtoull(env, NULL, 0) : (uint64_t)cs_now_ns();
    printf("test_btree: seed %llu (CS_SEED=%llu replays)\n", (unsigned long long)test_seed,
           (unsigned long long)test_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_tree_has_no_records),
        cmocka_unit_test(test_put_get_replace_del_single_key),
        cmocka_unit_test(test_memcmp_order_puts_shorter_key_first),
        cmocka_unit_test(test_max_key_and_value_sizes_round_trip),
        cmocka_unit_test(test_cursor_positions_at_edges),
        cmocka_unit_test(test_snapshot_unchanged_by_later_writes),
        cmocka_unit_test(test_restore_returns_to_snapshot),
        cmocka_unit_test(test_restore_to_empty_snapshot_empties_tree),
        cmocka_unit_test(test_destroy_keeps_live_snapshots_readable),
        cmocka_unit_test(test_delete_everything_frees_all_nodes),
        cmocka_unit_test(test_checker_reports_damaged_key),
        cmocka_unit_test(test_keys_outside_node_prefix_order_right),
        cmocka_unit_test(test_put_old_and_del_old_hand_back_the_value_they_replace),
        cmocka_unit_test(test_old_value_callback_error_cancels_the_write),
        cmocka_unit_test(test_snapshot_taken_in_the_old_value_callback_keeps_the_state_before),
        cmocka_unit_test(test_failed_allocation_leaves_tree_unchanged),
        cmocka_unit_test(test_loads_pack_leaves_within_memory_target),
        cmocka_unit_test(test_sequential_loads_with_snapshots_match),
        cmocka_unit_test(test_random_ops_short_keys_match_model),
        cmocka_unit_test(test_random_ops_many_keys_match_model),
        cmocka_unit_test(test_random_ops_prefixed_keys_match_model),
        cmocka_unit_test(test_random_ops_long_keys_match_model),
        cmocka_unit_test(test_expiry_entries_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
