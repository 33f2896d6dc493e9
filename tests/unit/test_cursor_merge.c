/* Unit tests of the cursor's k-way merge (engine/cursor.c) through the public API on up to 4
 * shards (a shard needs a CPU of its own; with one CPU the merge has nothing to merge: skipped):
 * a walk forward or backward yields every key once in global order; seek lands on the first key
 * >= its argument, wherever the shards split; next and prev alternate across shard boundaries
 * (each change of direction re-positions every shard's stream); shards where the collection is
 * absent or empty are skipped; the cursor stays on its snapshot while writes go on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"

enum { N = 600 };

static char dir[CST_PATH_MAX];
static cs_db *db;
static unsigned shards; /* 2 to 4 */

static void key_of(int i, char *k)
{
    snprintf(k, 16, "k%04d", i * 2); /* even numbers: odd ones fall between keys */
}

static int setup(void **state)
{
    (void)state;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 2)
        return 0; /* every test skips */
    shards = cpus >= 4 ? 4 : (unsigned)cpus;
    char opt[32];
    snprintf(opt, sizeof(opt), "shards=%u", shards);
    cst_tmpdir_make(dir, sizeof(dir), "cursor");
    assert_int_equal(cst_open(dir, &db, opt, "durability=none", NULL), 0);
    for (int i = 0; i < N; i++) {
        char k[16];
        key_of(i, k);
        assert_int_equal(cs_put(db, "c", k, strlen(k), k, strlen(k)), 0);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!db)
        return 0;
    assert_int_equal(cs_close(db), 0);
    return cst_tmpdir_remove(dir);
}

/* The cursor is on the i-th key (its value is its key). */
static void on(cs_cursor *c, int i)
{
    char want[16];
    key_of(i, want);
    const void *k, *v;
    size_t kl, vl;
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
    if (kl != strlen(want) || memcmp(k, want, kl) != 0)
        fail_msg("cursor on %.*s, expected %s", (int)kl, (const char *)k, want);
    assert_memory_equal(v, want, vl);
}

static void test_the_keys_of_all_shards_are_one_stream_in_global_order(void **state)
{
    (void)state;
    if (!db)
        skip();
    /* the keys really are spread: neighbours often live on different shards */
    int crossings = 0;
    unsigned used = 0;
    for (int i = 0; i < N; i++) {
        char a[16], b[16];
        key_of(i, a);
        key_of((i + 1) % N, b);
        unsigned sa = cst_key_shard(db, a, strlen(a));
        crossings += sa != cst_key_shard(db, b, strlen(b));
        used |= 1u << sa;
    }
    assert_true(crossings > N / 4);
    assert_int_equal(used, (1u << shards) - 1);

    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "c", &c), 0);
    assert_int_equal(cs_cursor_first(c), 0);
    for (int i = 0; i < N; i++) {
        on(c, i);
        assert_int_equal(cs_cursor_next(c), i + 1 < N ? 0 : CS_ENOTFOUND);
    }
    assert_int_equal(cs_cursor_last(c), 0);
    for (int i = N - 1; i >= 0; i--) {
        on(c, i);
        assert_int_equal(cs_cursor_prev(c), i > 0 ? 0 : CS_ENOTFOUND);
    }
    cs_cursor_close(c);
}

static void test_seek_lands_on_the_first_key_at_or_after_wherever_the_shards_split(void **state)
{
    (void)state;
    if (!db)
        skip();
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "c", &c), 0);
    for (int i = 0; i < N; i++) {
        char k[16];
        key_of(i, k);
        assert_int_equal(cs_cursor_seek(c, k, strlen(k)), 0); /* exact */
        on(c, i);
        snprintf(k, sizeof(k), "k%04d", i * 2 - 1); /* between i-1 and i */
        assert_int_equal(cs_cursor_seek(c, k, strlen(k)), 0);
        on(c, i);
        snprintf(k, sizeof(k), "k%04d~", i * 2); /* just after i */
        assert_int_equal(cs_cursor_seek(c, k, strlen(k)), i + 1 < N ? 0 : CS_ENOTFOUND);
        if (i + 1 < N)
            on(c, i + 1);
    }
    assert_int_equal(cs_cursor_seek(c, "a", 1), 0); /* before every key */
    on(c, 0);
    assert_int_equal(cs_cursor_seek(c, "z", 1), CS_ENOTFOUND);
    cs_cursor_close(c);
}

static void test_next_and_prev_alternate_across_shard_boundaries(void **state)
{
    (void)state;
    if (!db)
        skip();
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "c", &c), 0);
    char k[16];
    key_of(N / 2, k);
    assert_int_equal(cs_cursor_seek(c, k, strlen(k)), 0);
    int at = N / 2;
    /* a walk of steps +1, -1, +1, +1, -1, +1, +1, +1, -1 ... */
    for (int step = 0; step < 200; step++) {
        int d = step % 3 == 1 ? -1 : 1;
        assert_int_equal(d > 0 ? cs_cursor_next(c) : cs_cursor_prev(c), 0);
        at += d;
        on(c, at);
    }
    /* then all the way back and forth */
    while (at > 0) {
        assert_int_equal(cs_cursor_prev(c), 0);
        on(c, --at);
    }
    assert_int_equal(cs_cursor_prev(c), CS_ENOTFOUND);
    assert_int_equal(cs_cursor_first(c), 0);
    assert_int_equal(cs_cursor_next(c), 0);
    on(c, 1);
    assert_int_equal(cs_cursor_prev(c), 0);
    on(c, 0);
    cs_cursor_close(c);
}

static void test_a_collection_on_some_shards_only_and_writes_after_open_are_not_seen(void **state)
{
    (void)state;
    if (!db)
        skip();
    /* keys of one shard only: the other shards have no such collection */
    char k[16];
    int mine[N], n = 0;
    for (int i = 0; i < N; i++) {
        key_of(i, k);
        if (cst_key_shard(db, k, strlen(k)) == 1) {
            assert_int_equal(cs_put(db, "one", k, strlen(k), k, strlen(k)), 0);
            mine[n++] = i;
        }
    }
    assert_true(n > 0);
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "one", &c), 0);
    for (int i = 0; i < N; i++) { /* writes on every shard after the open */
        key_of(i, k);
        assert_int_equal(cs_put(db, "one", k, strlen(k), "late", 4), 0);
    }
    assert_int_equal(cs_cursor_first(c), 0);
    for (int j = 0; j < n; j++) {
        on(c, mine[j]);
        assert_int_equal(cs_cursor_next(c), j + 1 < n ? 0 : CS_ENOTFOUND);
    }
    cs_cursor_close(c);

    assert_int_equal(cs_cursor_open(db, "missing", &c), 0);
    assert_int_equal(cs_cursor_first(c), CS_ENOTFOUND);
    assert_int_equal(cs_cursor_last(c), CS_ENOTFOUND);
    cs_cursor_close(c);
}

/* Keys that are prefixes of one another ("x" < "xx" < ...), spread over the shards. */
static void test_a_key_that_is_a_prefix_of_another_comes_first_across_shards(void **state)
{
    (void)state;
    if (!db)
        skip();
    enum { L = 24 };
    char k[L + 1];
    memset(k, 'x', L);
    unsigned used = 0;
    for (int n = 1; n <= L; n++) {
        assert_int_equal(cs_put(db, "len", k, (size_t)n, "v", 1), 0);
        used |= 1u << cst_key_shard(db, k, (size_t)n);
    }
    assert_true(used != 1u && (used & (used - 1)) != 0); /* on more than one shard */
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "len", &c), 0);
    const void *key;
    size_t kl;
    assert_int_equal(cs_cursor_first(c), 0);
    for (int n = 1; n <= L; n++) {
        assert_int_equal(cs_cursor_key(c, &key, &kl), 0);
        assert_int_equal(kl, n);
        assert_int_equal(cs_cursor_next(c), n < L ? 0 : CS_ENOTFOUND);
    }
    assert_int_equal(cs_cursor_last(c), 0);
    for (int n = L; n >= 1; n--) {
        assert_int_equal(cs_cursor_key(c, &key, &kl), 0);
        assert_int_equal(kl, n);
        assert_int_equal(cs_cursor_prev(c), n > 1 ? 0 : CS_ENOTFOUND);
    }
    cs_cursor_close(c);
}

/* Keys whose first 8 bytes are equal and that differ only after them (the merge compares 8-byte
 * prefixes first and must fall back to the whole keys), spread over the shards, both ways. */
static void test_keys_that_tie_on_their_first_8_bytes_merge_in_order(void **state)
{
    (void)state;
    if (!db)
        skip();
    enum { M = 40 };
    unsigned used = 0;
    for (int i = 0; i < M; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "samepref%03d", i);
        assert_int_equal(cs_put(db, "tie", k, (size_t)n, k, (size_t)n), 0);
        used |= 1u << cst_key_shard(db, k, (size_t)n);
    }
    assert_true((used & (used - 1)) != 0); /* on more than one shard */
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "tie", &c), 0);
    int i = 0;
    for (int rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c), i++) {
        const void *key;
        size_t kl;
        char want[32];
        int n = snprintf(want, sizeof(want), "samepref%03d", i);
        assert_int_equal(cs_cursor_key(c, &key, &kl), 0);
        assert_int_equal(kl, n);
        assert_memory_equal(key, want, kl);
    }
    assert_int_equal(i, M);
    for (int rc = cs_cursor_last(c); rc == 0; rc = cs_cursor_prev(c)) {
        const void *key;
        size_t kl;
        char want[32];
        int n = snprintf(want, sizeof(want), "samepref%03d", --i);
        assert_int_equal(cs_cursor_key(c, &key, &kl), 0);
        assert_int_equal(kl, n);
        assert_memory_equal(key, want, kl);
    }
    assert_int_equal(i, 0);
    cs_cursor_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_keys_of_all_shards_are_one_stream_in_global_order),
        cmocka_unit_test(test_seek_lands_on_the_first_key_at_or_after_wherever_the_shards_split),
        cmocka_unit_test(test_next_and_prev_alternate_across_shard_boundaries),
        cmocka_unit_test(test_a_collection_on_some_shards_only_and_writes_after_open_are_not_seen),
        cmocka_unit_test(test_a_key_that_is_a_prefix_of_another_comes_first_across_shards),
        cmocka_unit_test(test_keys_that_tie_on_their_first_8_bytes_merge_in_order),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
