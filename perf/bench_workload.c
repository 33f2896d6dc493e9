/* cstore-bench workloads: what each thread of a phase does.
 *
 * Keys and values are a pure function of a record index i in [0, keys) and the seed, so every
 * engine and every run with the same options sees the same bytes:
 * - key(i): 8 bytes big-endian of mix(i + seed), a bijection of 64-bit integers (the splitmix64
 *   finalizer), so keys are unique and spread uniformly over the key space; then key_bytes - 8
 *   letters. Writing i = 0, 1, 2... therefore inserts in random key order (fillrandom).
 * - value(i): value_bytes of incompressible filler starting at an offset that depends on i,
 *   with the first 8 bytes (fewer for short values) replaced by i, so a get can check that it
 *   got the value of its own key.
 *
 * fillrandom: thread t of T puts records t, t+T, t+2T... (all keys, once).
 * readrandom: the threads share cfg->reads gets of uniformly random indexes (seeded per
 *   thread) and check each value; a missing key is a miss, a wrong value a mismatch.
 * scan:       one thread reads the whole collection with a cursor, checks that keys strictly
 *   increase, and times every step.
 * With --inflight K > 1 (and an engine that pipelines), each thread keeps K requests in flight
 * and a request's latency runs from its submission to the reap that returned it. */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WL_FILLER_SPAN 256u /* distinct filler offsets */

#define wl_assert(e) ((e) ? (void)0 : wl_panic(__LINE__, #e))

static void wl_panic(int line, const char *expr)
{
    fprintf(stderr, "cstore-bench: bench_workload.c:%d: assertion failed: %s\n", line, expr);
    abort();
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t wl_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* splitmix64: the per-thread generator of random read indexes. */
static uint64_t wl_rand(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return wl_mix(*state);
}

static void wl_key(const struct bench_config *cfg, uint64_t i, char *key)
{
    uint64_t h = wl_mix(i + cfg->seed);
    for (unsigned b = 0; b < 8; b++)
        key[b] = (char)(h >> (56 - 8 * b));
    for (unsigned b = 8; b < cfg->key_bytes; b++)
        key[b] = (char)('a' + (i + b) % 26);
}

/* Per-thread state of a workload: filler, buffers, and the slots of pipelined requests. */
struct wl_slot {
    uint64_t start_ns; /* submission time */
    uint64_t index;    /* record index of the request */
    char *key;         /* key_bytes */
    char *val;         /* value_bytes (puts) */
};

struct wl_state {
    struct bench_worker *w;
    char *filler;          /* value_bytes + WL_FILLER_SPAN random bytes */
    char *get_buf;         /* value_bytes: blocking gets copy here */
    struct wl_slot *slots; /* depth slots */
    unsigned *free_slots;  /* stack of free slot indexes */
    unsigned free_count;   /* entries on free_slots */
    unsigned depth;        /* slots; 1 for blocking calls */
    char *arena;           /* the slots' key and value bytes */
};

static void wl_value(const struct wl_state *s, uint64_t i, char *val)
{
    const struct bench_config *cfg = s->w->cfg;
    memcpy(val, s->filler + i % WL_FILLER_SPAN, cfg->value_bytes);
    unsigned n = cfg->value_bytes < 8 ? cfg->value_bytes : 8;
    for (unsigned b = 0; b < n; b++)
        val[b] = (char)(i >> (8 * b));
}

/* Whether val is the value of record i. */
static int wl_value_ok(const struct bench_config *cfg, uint64_t i, const char *val, size_t vlen)
{
    if (vlen != cfg->value_bytes)
        return 0;
    unsigned n = cfg->value_bytes < 8 ? cfg->value_bytes : 8;
    for (unsigned b = 0; b < n; b++)
        if (val[b] != (char)(i >> (8 * b)))
            return 0;
    return 1;
}

static void wl_state_free(struct wl_state *s)
{
    free(s->filler);
    free(s->get_buf);
    free(s->slots);
    free(s->free_slots);
    free(s->arena);
}

BENCH_MUST_CHECK static int wl_state_init(struct wl_state *s, struct bench_worker *w)
{
    const struct bench_config *cfg = w->cfg;
    memset(s, 0, sizeof(*s));
    s->w = w;
    int pipelined = cfg->inflight > 1 && w->engine->submit_put != NULL;
    s->depth = pipelined ? cfg->inflight : 1;
    size_t per_slot = (size_t)cfg->key_bytes + cfg->value_bytes;
    s->filler = malloc(cfg->value_bytes + WL_FILLER_SPAN);
    s->get_buf = malloc(cfg->value_bytes + 1);
    s->slots = calloc(s->depth, sizeof(*s->slots));
    s->free_slots = calloc(s->depth, sizeof(*s->free_slots));
    s->arena = malloc(per_slot * s->depth);
    if (s->filler == NULL || s->get_buf == NULL || s->slots == NULL || s->free_slots == NULL ||
        s->arena == NULL) {
        wl_state_free(s);
        return -ENOMEM;
    }
    uint64_t r = cfg->seed ^ 0x5eedf111e5ull;
    for (size_t b = 0; b < cfg->value_bytes + WL_FILLER_SPAN; b++)
        s->filler[b] = (char)wl_rand(&r);
    for (unsigned k = 0; k < s->depth; k++) {
        s->slots[k].key = s->arena + per_slot * k;
        s->slots[k].val = s->slots[k].key + cfg->key_bytes;
        s->free_slots[k] = s->depth - 1 - k;
    }
    s->free_count = s->depth;
    return 0;
}

static void wl_error(struct bench_worker *w, int rc)
{
    w->errors++;
    if (w->first_error == 0)
        w->first_error = rc;
}

/* Account for one finished request; val is checked for gets (NULL for puts). */
static void wl_finish(struct bench_worker *w, uint64_t index, int rc, const void *val, size_t vlen,
                      uint64_t latency_ns)
{
    bench_hist_record(&w->hist, latency_ns);
    w->ops++;
    if (rc == BENCH_NOTFOUND)
        w->misses++;
    else if (rc != 0)
        wl_error(w, rc);
    else if (val != NULL && !wl_value_ok(w->cfg, index, val, vlen))
        w->mismatches++;
}

/* Chooses the record index of the n-th request of this thread. */
typedef uint64_t (*wl_next_fn)(struct wl_state *s, uint64_t n, uint64_t *rng);

/* Run count requests (puts when is_put, else gets), blocking or pipelined. */
BENCH_MUST_CHECK static int wl_drive(struct wl_state *s, uint64_t count, int is_put,
                                     wl_next_fn next, uint64_t *rng)
{
    struct bench_worker *w = s->w;
    const struct bench_engine *e = w->engine;
    const struct bench_config *cfg = w->cfg;
    void *th = NULL;
    int rc = e->thread_open(w->store, s->depth, &th);
    if (rc != 0)
        return rc;
    uint64_t n = 0;
    if (s->depth == 1) {
        struct wl_slot *sl = &s->slots[0];
        for (; n < count; n++) {
            uint64_t i = next(s, n, rng);
            wl_key(cfg, i, sl->key);
            size_t vlen = 0;
            if (is_put)
                wl_value(s, i, sl->val);
            uint64_t t0 = bench_now_ns();
            if (is_put)
                rc = e->put(th, sl->key, cfg->key_bytes, sl->val, cfg->value_bytes);
            else
                rc = e->get(th, sl->key, cfg->key_bytes, s->get_buf, cfg->value_bytes, &vlen);
            uint64_t t1 = bench_now_ns();
            wl_finish(w, i, rc, is_put ? NULL : s->get_buf, vlen, t1 - t0);
        }
        e->thread_close(th);
        return 0;
    }
    struct bench_done done[BENCH_REAP_MAX];
    unsigned inflight = 0;
    rc = 0;
    while (n < count || inflight > 0) {
        while (n < count && s->free_count > 0) {
            unsigned k = s->free_slots[--s->free_count];
            struct wl_slot *sl = &s->slots[k];
            sl->index = next(s, n, rng);
            wl_key(cfg, sl->index, sl->key);
            if (is_put)
                wl_value(s, sl->index, sl->val);
            sl->start_ns = bench_now_ns();
            int src = is_put
                          ? e->submit_put(th, sl->key, cfg->key_bytes, sl->val, cfg->value_bytes, k)
                          : e->submit_get(th, sl->key, cfg->key_bytes, k);
            n++;
            if (src != 0) {
                wl_error(w, src);
                s->free_slots[s->free_count++] = k;
                continue;
            }
            inflight++;
        }
        if (inflight == 0)
            continue;
        int got = e->reap(th, done, BENCH_REAP_MAX, 1);
        if (got < 0) {
            rc = got; /* the engine lost track: stop this thread */
            break;
        }
        uint64_t now = bench_now_ns();
        for (int j = 0; j < got; j++) {
            wl_assert(done[j].tag < s->depth);
            struct wl_slot *sl = &s->slots[done[j].tag];
            wl_finish(w, sl->index, done[j].rc, is_put ? NULL : done[j].val, done[j].vlen,
                      now - sl->start_ns);
            s->free_slots[s->free_count++] = (unsigned)done[j].tag;
        }
        inflight -= (unsigned)got;
    }
    e->thread_close(th);
    return rc;
}

static uint64_t wl_next_fill(struct wl_state *s, uint64_t n, uint64_t *rng)
{
    (void)rng;
    return (uint64_t)s->w->index + n * s->w->count;
}

static uint64_t wl_next_random(struct wl_state *s, uint64_t n, uint64_t *rng)
{
    (void)n;
    return wl_rand(rng) % s->w->cfg->keys;
}

static int wl_fillrandom(struct bench_worker *w)
{
    struct wl_state s;
    int rc = wl_state_init(&s, w);
    if (rc != 0)
        return rc;
    uint64_t keys = w->cfg->keys;
    uint64_t mine = keys / w->count + (w->index < keys % w->count ? 1 : 0);
    rc = wl_drive(&s, mine, 1, wl_next_fill, NULL);
    wl_state_free(&s);
    return rc;
}

static int wl_readrandom(struct bench_worker *w)
{
    struct wl_state s;
    if (w->cfg->keys == 0)
        return 0;
    int rc = wl_state_init(&s, w);
    if (rc != 0)
        return rc;
    uint64_t reads = w->cfg->reads;
    uint64_t mine = reads / w->count + (w->index < reads % w->count ? 1 : 0);
    uint64_t rng = w->cfg->seed * 0x2545f4914f6cdd1dull + w->index + 1;
    rc = wl_drive(&s, mine, 0, wl_next_random, &rng);
    wl_state_free(&s);
    return rc;
}

static int wl_scan(struct bench_worker *w)
{
    const struct bench_engine *e = w->engine;
    void *th = NULL, *cur = NULL;
    int rc = e->thread_open(w->store, 1, &th);
    if (rc != 0)
        return rc;
    rc = e->scan_open(th, &cur);
    if (rc != 0) {
        e->thread_close(th);
        return rc;
    }
    char *prev = malloc(BENCH_KEY_BYTES_MAX);
    size_t prev_len = 0;
    while (prev != NULL) {
        const void *k, *v;
        size_t klen = 0, vlen = 0;
        uint64_t t0 = bench_now_ns();
        int r = e->scan_next(cur, &k, &klen, &v, &vlen);
        uint64_t t1 = bench_now_ns();
        if (r <= 0) {
            if (r < 0)
                wl_error(w, r);
            break;
        }
        bench_hist_record(&w->hist, t1 - t0);
        w->ops++;
        if (klen > BENCH_KEY_BYTES_MAX)
            continue;
        size_t m = klen < prev_len ? klen : prev_len;
        int c = memcmp(prev, k, m);
        if (w->ops > 1 && (c > 0 || (c == 0 && prev_len >= klen)))
            w->mismatches++; /* keys must strictly increase */
        memcpy(prev, k, klen);
        prev_len = klen;
    }
    if (prev == NULL)
        rc = -ENOMEM;
    free(prev);
    e->scan_close(cur);
    e->thread_close(th);
    return rc;
}

static const struct bench_workload wl_table[] = {
    {"fillrandom", wl_fillrandom, 0, "puts of every key, in random key order"},
    {"readrandom", wl_readrandom, 0, "gets of random keys, values checked"},
    {"scan", wl_scan, 1, "one cursor over the whole collection, order checked"},
};

const struct bench_workload *bench_workload_find(const char *name)
{
    for (size_t i = 0; i < sizeof(wl_table) / sizeof(wl_table[0]); i++)
        if (strcmp(wl_table[i].name, name) == 0)
            return &wl_table[i];
    return NULL;
}

const char *bench_workload_names(void)
{
    return "fillrandom, readrandom, scan";
}
