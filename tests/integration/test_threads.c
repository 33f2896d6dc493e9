/* Sixteen application threads hammer one database with a random mix of puts, gets, deletes,
 * batches and scans, each against its own model of the keys it owns (thread t owns the keys
 * "t<t>-..."; every thread reads the whole collection through cursors). Checked while running:
 * each get and delete agrees with the owner's model; each scan is in strict key order and, for the
 * scanning thread's own keys, shows exactly its model at the time the cursor was opened. Checked
 * at the end, and again after a reopen: the database equals the union of the models. Now and
 * then a thread takes a checkpoint while the others write, so the reopen loads checkpoints too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"

#define THREADS 16
#define KEYS_PER_THREAD 200
#define VALUE_MAX_TEST 64

struct model {
    bool present[KEYS_PER_THREAD];     /* key exists */
    uint32_t version[KEYS_PER_THREAD]; /* value = "<thread>:<key>:<version>" */
};

struct worker {
    cs_db *db;          /* database */
    int id;             /* thread index */
    unsigned ops;       /* operations to run */
    uint64_t seed;      /* RNG state */
    struct model model; /* what this thread wrote */
    int failures;       /* mismatches seen */
    char msg[256];      /* first mismatch */
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int key_of(int t, int k, char *buf)
{
    return snprintf(buf, 32, "t%02d-%04d", t, k);
}

static int value_of(int t, int k, uint32_t v, char *buf)
{
    return snprintf(buf, VALUE_MAX_TEST, "%d:%d:%u", t, k, v);
}

static void fail_once(struct worker *w, const char *what, const char *key, int rc)
{
    if (w->failures++ == 0)
        snprintf(w->msg, sizeof(w->msg), "thread %d: %s %s (rc %d: %s)", w->id, what, key, rc,
                 cs_strerror(rc));
}

static void do_put(struct worker *w, int k)
{
    char key[32], val[VALUE_MAX_TEST];
    uint32_t v = w->model.version[k] + 1;
    int kl = key_of(w->id, k, key), vl = value_of(w->id, k, v, val);
    int rc = cs_put(w->db, "mt", key, (size_t)kl, val, (size_t)vl);
    if (rc) {
        fail_once(w, "put", key, rc);
        return;
    }
    w->model.present[k] = true;
    w->model.version[k] = v;
}

static void do_get(struct worker *w, int k)
{
    char key[32], want[VALUE_MAX_TEST];
    int kl = key_of(w->id, k, key);
    void *val = NULL;
    size_t vlen = 0;
    int rc = cs_get(w->db, "mt", key, (size_t)kl, &val, &vlen);
    if (!w->model.present[k]) {
        if (rc != CS_ENOTFOUND)
            fail_once(w, "get of a deleted key", key, rc);
    } else {
        int wl = value_of(w->id, k, w->model.version[k], want);
        if (rc || vlen != (size_t)wl || memcmp(val, want, vlen) != 0)
            fail_once(w, "get returned another value for", key, rc);
    }
    cs_free(val);
}

static void do_del(struct worker *w, int k)
{
    char key[32];
    int kl = key_of(w->id, k, key);
    int rc = cs_del(w->db, "mt", key, (size_t)kl);
    int want = w->model.present[k] ? 0 : CS_ENOTFOUND;
    if (rc != want)
        fail_once(w, "del", key, rc);
    w->model.present[k] = false;
}

/* A batch of puts on this thread's keys that land on one shard with key k (others refused). */
static void do_batch(struct worker *w, int k)
{
    cs_batch *b = cs_batch_new();
    char key[32], val[VALUE_MAX_TEST];
    int k2 = (k + 1) % KEYS_PER_THREAD;
    int kl = key_of(w->id, k, key);
    int vl = value_of(w->id, k, w->model.version[k] + 1, val);
    int rc = cs_batch_put(b, "mt", key, (size_t)kl, val, (size_t)vl);
    kl = key_of(w->id, k2, key);
    vl = value_of(w->id, k2, w->model.version[k2] + 1, val);
    if (!rc)
        rc = cs_batch_put(b, "mt", key, (size_t)kl, val, (size_t)vl);
    if (!rc)
        rc = cs_write(w->db, b);
    cs_batch_free(b);
    if (rc == CS_ENOTSUP)
        return; /* the two keys live on different shards: nothing was applied */
    if (rc) {
        fail_once(w, "batch", key, rc);
        return;
    }
    int ks[2] = {k, k2};
    for (int i = 0; i < 2; i++) {
        w->model.present[ks[i]] = true;
        w->model.version[ks[i]]++;
    }
}

static void do_scan(struct worker *w)
{
    struct model snap = w->model; /* nobody else writes this thread's keys */
    cs_cursor *c;
    int rc = cs_cursor_open(w->db, "mt", &c);
    if (rc) {
        fail_once(w, "cursor open", "", rc);
        return;
    }
    char prev[32] = "";
    size_t prev_len = 0;
    bool seen[KEYS_PER_THREAD] = {false};
    char own[8];
    int own_len = snprintf(own, sizeof(own), "t%02d-", w->id);
    for (rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c)) {
        const void *k, *v;
        size_t kl, vl;
        if (cs_cursor_key(c, &k, &kl) || cs_cursor_value(c, &v, &vl)) {
            fail_once(w, "cursor view", "", -1);
            break;
        }
        size_t m = kl < prev_len ? kl : prev_len;
        int cmp = memcmp(prev, k, m);
        if (prev_len && (cmp > 0 || (cmp == 0 && prev_len >= kl)))
            fail_once(w, "scan out of order at", prev, 0);
        memcpy(prev, k, kl);
        prev_len = kl;
        if (kl == 8 && memcmp(k, own, (size_t)own_len) == 0) {
            const char *d = (const char *)k + own_len;
            int idx = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0');
            char want[VALUE_MAX_TEST];
            int wl = value_of(w->id, idx, snap.version[idx], want);
            if (!snap.present[idx] || vl != (size_t)wl || memcmp(v, want, vl) != 0)
                fail_once(w, "scan shows a value the model does not have for", prev, 0);
            seen[idx] = true;
        }
    }
    if (rc != CS_ENOTFOUND)
        fail_once(w, "scan ended with", "", rc);
    for (int i = 0; i < KEYS_PER_THREAD; i++)
        if (snap.present[i] && !seen[i]) {
            char key[32];
            key_of(w->id, i, key);
            fail_once(w, "scan missed", key, 0);
        }
    cs_cursor_close(c);
}

/* Checkpoints run while the other threads write; the final reopen checks what they hold. */
static void do_checkpoint(struct worker *w)
{
    int rc = cs_checkpoint(w->db);
    if (rc && rc != CS_ENOTSUP)
        fail_once(w, "checkpoint", "", rc);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < w->ops; i++) {
        uint64_t r = rnd(&w->seed);
        int k = (int)((r >> 8) % KEYS_PER_THREAD);
        unsigned op = (unsigned)(r % 100);
        if (op < 40)
            do_put(w, k);
        else if (op < 75)
            do_get(w, k);
        else if (op < 90)
            do_del(w, k);
        else if (op < 98)
            do_batch(w, k);
        else if (op < 99 || (r >> 20) % 8 != 0)
            do_scan(w);
        else
            do_checkpoint(w);
    }
    return NULL;
}

static void verify_all(cs_db *db, struct worker *ws)
{
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < KEYS_PER_THREAD; k++) {
            char key[32], want[VALUE_MAX_TEST];
            int kl = key_of(t, k, key);
            void *val = NULL;
            size_t vlen;
            int rc = cs_get(db, "mt", key, (size_t)kl, &val, &vlen);
            if (!ws[t].model.present[k]) {
                if (rc != CS_ENOTFOUND)
                    fail_msg("%s should be absent (rc %d)", key, rc);
                continue;
            }
            int wl = value_of(t, k, ws[t].model.version[k], want);
            if (rc || vlen != (size_t)wl || memcmp(val, want, vlen))
                fail_msg("%s: rc %d, value differs from the model", key, rc);
            cs_free(val);
        }
}

/* yield_us: the wait_yield_us option, or NULL for its default */
static void run(const char *durability, const char *yield_us, unsigned ops)
{
    char dir[CST_PATH_MAX];
    cst_tmpdir_make(dir, sizeof(dir), "mt");
    cs_options *o = cs_options_new();
    assert_int_equal(cs_options_set(o, "durability", durability), 0);
    if (yield_us)
        assert_int_equal(cs_options_set(o, "wait_yield_us", yield_us), 0);
    cs_db *db;
    assert_int_equal(cs_open(dir, o, &db), 0);
    static struct worker ws[THREADS];
    pthread_t th[THREADS];
    uint64_t seed = getenv("CS_SEED") ? strtoull(getenv("CS_SEED"), NULL, 10) : 12345;
    printf("# %s: seed %llu, %u shards\n", durability, (unsigned long long)seed,
           cs_shard_count(db));
    for (int t = 0; t < THREADS; t++) {
        memset(&ws[t], 0, sizeof(ws[t]));
        ws[t].db = db;
        ws[t].id = t;
        ws[t].ops = ops;
        ws[t].seed = seed * 7919 + (uint64_t)t + 1;
        assert_int_equal(pthread_create(&th[t], NULL, worker_main, &ws[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        if (ws[t].failures)
            fail_msg("%d failures; first: %s", ws[t].failures, ws[t].msg);
    verify_all(db, ws);
    assert_int_equal(cs_close(db), 0);
    if (strcmp(durability, "none") != 0) {
        assert_int_equal(cs_open(dir, o, &db), 0);
        verify_all(db, ws);
        assert_int_equal(cs_close(db), 0);
    }
    cs_options_free(o);
    assert_int_equal(cst_tmpdir_remove(dir), 0);
}

static unsigned ops_per_thread(void)
{
    return getenv("CS_TEST_LONG") ? 20000 : 1500;
}

static void test_sixteen_threads_sync_match_their_models(void **state)
{
    (void)state;
    run("sync", NULL, ops_per_thread());
}

/* Durable writers and shards that sleep at once instead of yielding first. */
static void test_sixteen_threads_sync_without_yield_match_their_models(void **state)
{
    (void)state;
    run("sync", "0", ops_per_thread());
}

static void test_sixteen_threads_async_match_their_models(void **state)
{
    (void)state;
    run("async", NULL, ops_per_thread());
}

static void test_sixteen_threads_in_memory_match_their_models(void **state)
{
    (void)state;
    run("none", NULL, ops_per_thread());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sixteen_threads_sync_match_their_models),
        cmocka_unit_test(test_sixteen_threads_sync_without_yield_match_their_models),
        cmocka_unit_test(test_sixteen_threads_async_match_their_models),
        cmocka_unit_test(test_sixteen_threads_in_memory_match_their_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
