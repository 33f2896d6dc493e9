/* cstore-bench workloads: what each thread of a phase does.
 *
 * Keys and values are a pure function of a record index i and the seed, so every engine and
 * every run with the same options sees the same bytes:
 * - key(i): 8 bytes big-endian of mix(i + seed), a bijection of 64-bit integers (the splitmix64
 *   finalizer), so keys are unique and spread uniformly over the key space; then key_bytes - 8
 *   letters. Writing i = 0, 1, 2... therefore inserts in random key order (fillrandom). When
 *   fillseq is among the phases (cfg->sequential_keys), the first 8 bytes are i big-endian
 *   instead, so i = 0, 1, 2... is key order, for every phase of that run.
 * - value(i): value_bytes from a PRNG (splitmix64) seeded by i and the seed, so values are
 *   incompressible, alone and together (a block of many values does not compress either); with
 *   --values compressible the second half of the value repeats the first, so LZ-style
 *   compressors halve it (db_bench's compression_ratio=0.5). The first 8 bytes (fewer for short
 *   values) are then replaced by i, so a get can check that it got the value of its own key.
 *
 * Phases ("ops" is --ops over all threads, default --keys; a thread does its share):
 *   fillseq, fillrandom  thread t of T puts records t, t+T, t+2T... (every key once).
 *   overwrite            puts of uniformly random existing keys.
 *   readrandom           gets of uniformly random keys, values checked (missing = miss).
 *   seekrandom           a cursor per request: seek to a random key, read --scan-length records.
 *   deleterandom         deletes of distinct keys (records t, t+T..., random key order).
 *   scan                 one thread reads the whole collection, checks that keys increase.
 *   ycsb-a .. ycsb-f     the YCSB core workloads over the loaded keys: A 50% reads 50% updates;
 *                        B 95/5; C reads only; D 95% reads of the latest records, 5% inserts;
 *                        E 95% scans of 1..scan-length records, 5% inserts; F 50% reads, 50%
 *                        read-modify-writes. Request keys are zipfian (YCSB's generator, Gray et
 *                        al., theta --zipf, default 0.99), scrambled by a hash as in YCSB's
 *                        ScrambledZipfianGenerator; D draws "latest" as YCSB's SkewedLatest.
 *                        An update writes the record's whole value.
 * Timing: a request's latency runs from its start to its end; with --inflight K > 1 (and an
 * engine that pipelines) each thread keeps K requests in flight and latency runs from the
 * submission to the reap that returned it. With --rate R the run is open-loop: the n-th request
 * of a thread is due at phase start + n * threads / R, is not sent before, and its latency is
 * measured from that intended time, so a stall delays and charges every request behind it (no
 * coordinated omission). --duration stops a thread at its deadline, except in fill phases (the
 * driver gives them none: a fill writes every key). Neither applies to the load phase that
 * --workload adds, which always writes every key as fast as it can. Workloads that seek
 * or read-modify-write use the blocking calls only. A thread opens its engine handle and its
 * buffers before the clock starts (bench_worker_start). */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WL_PERCENT 100u              /* operation mixes are in percent */
#define WL_OPEN_LOOP_SLEEP_NS 50000u /* open loop: longest nap while requests are in flight */
#define WL_OPEN_LOOP_SPIN_NS 20000u  /* open loop: wait this close to a due time by spinning */

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

/* Wait until the monotonic clock reads ns: not at all when it is past, by spinning when it is
 * less than WL_OPEN_LOOP_SPIN_NS away, else by sleeping. A sleep costs tens of microseconds on
 * a virtual machine even when its time has already come, which would cap an open loop at a few
 * tens of thousands of requests per second per thread; the spin costs the client's CPU only
 * for gaps shorter than a sleep could honour. */
static void wl_sleep_until(uint64_t ns)
{
    uint64_t now = bench_now_ns();
    if (now >= ns)
        return;
    if (ns - now < WL_OPEN_LOOP_SPIN_NS) {
        for (unsigned guard = 0; bench_now_ns() < ns && guard < WL_OPEN_LOOP_SPIN_NS; guard++)
            ;
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
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

/* splitmix64: the per-thread generator of random indexes. */
static uint64_t wl_rand(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return wl_mix(*state);
}

/* Uniform in [0, 1). */
static double wl_rand01(uint64_t *state)
{
    return (double)(wl_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

double bench_zeta(uint64_t n, double theta)
{
    double sum = 0.0;
    for (uint64_t i = 1; i <= n; i++)
        sum += 1.0 / pow((double)i, theta);
    return sum;
}

static void wl_key(const struct bench_config *cfg, uint64_t i, char *key)
{
    uint64_t h = cfg->sequential_keys ? i : wl_mix(i + cfg->seed);
    for (unsigned b = 0; b < 8; b++)
        key[b] = (char)(h >> (56 - 8 * b));
    for (unsigned b = 8; b < cfg->key_bytes; b++)
        key[b] = (char)('a' + (i + b) % 26);
}

enum wl_op { WL_GET, WL_PUT, WL_DEL, WL_SEEK, WL_RMW };

/* One request to make. */
struct wl_req {
    enum wl_op op;
    uint64_t index; /* record index */
    unsigned scan;  /* WL_SEEK: records to read after the seek */
};

/* Per-thread state of a workload: filler, buffers, generators, pipelined request slots. */
struct wl_slot {
    uint64_t start_ns; /* submission time (or intended start, open loop) */
    struct wl_req req; /* the request */
    char *key;         /* key_bytes */
    char *val;         /* value_bytes (puts) */
};

struct wl_state;
/* Chooses the n-th request of this thread. */
typedef void (*wl_next_fn)(struct wl_state *s, uint64_t n, struct wl_req *r);

struct wl_state {
    struct bench_worker *w;
    wl_next_fn next;       /* request chooser */
    unsigned read_pct;     /* ycsb: percent of reads (or scans); the rest is the other op */
    enum wl_op other_op;   /* ycsb: the non-read op (WL_PUT, WL_RMW, or WL_PUT as insert) */
    int inserts;           /* ycsb: other_op inserts new records */
    int latest;            /* ycsb: reads draw the latest records */
    enum wl_op read_op;    /* ycsb: WL_GET or WL_SEEK */
    uint64_t rng;          /* generator state */
    double zipf_alpha;     /* 1 / (1 - theta) */
    double zipf_eta;       /* Gray et al.'s eta */
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
    unsigned len = cfg->value_bytes, random_len = cfg->compressible ? (len + 1) / 2 : len;
    uint64_t r = wl_mix(i ^ (cfg->seed * 0x9e3779b97f4a7c15ull)) ^ 0x76a1e5ull;
    for (unsigned b = 0; b < random_len; b += 8) {
        uint64_t x = wl_rand(&r);
        unsigned m = random_len - b < 8 ? random_len - b : 8;
        memcpy(val + b, &x, m);
    }
    if (random_len < len)
        memcpy(val + random_len, val, len - random_len);
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
    free(s->get_buf);
    free(s->slots);
    free(s->free_slots);
    free(s->arena);
}

BENCH_MUST_CHECK static int wl_state_init(struct wl_state *s, struct bench_worker *w,
                                          wl_next_fn next)
{
    const struct bench_config *cfg = w->cfg;
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->next = next;
    s->rng = cfg->seed * 0x2545f4914f6cdd1dull + w->index + 1;
    s->depth = w->depth > 1 && w->engine->submit_put != NULL ? w->depth : 1;
    double theta = cfg->zipf_theta;
    s->zipf_alpha = 1.0 / (1.0 - theta);
    if (cfg->zipf_zetan > 0.0 && cfg->keys > 0)
        s->zipf_eta = (1.0 - pow(2.0 / (double)cfg->keys, 1.0 - theta)) /
                      (1.0 - cfg->zipf_zeta2 / cfg->zipf_zetan);
    size_t per_slot = (size_t)cfg->key_bytes + cfg->value_bytes;
    s->get_buf = malloc(cfg->value_bytes + 1);
    s->slots = calloc(s->depth, sizeof(*s->slots));
    s->free_slots = calloc(s->depth, sizeof(*s->free_slots));
    s->arena = malloc(per_slot * s->depth);
    if (s->get_buf == NULL || s->slots == NULL || s->free_slots == NULL || s->arena == NULL) {
        wl_state_free(s);
        return -ENOMEM;
    }
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

/* Account for one finished request; val is checked for gets (NULL for writes). */
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

/* A cursor per request: seek to the key of r, read up to r->scan records. Returns 0 or the
 * engine's error; *found gets the records read. */
static int wl_seek(struct wl_state *s, void *th, const struct wl_req *r, const char *key,
                   unsigned *found)
{
    const struct bench_engine *e = s->w->engine;
    void *cur = NULL;
    *found = 0;
    int rc = e->scan_open(th, &cur);
    if (rc != 0)
        return rc;
    rc = e->scan_seek(cur, key, s->w->cfg->key_bytes);
    for (unsigned k = 0; rc == 0 && k < r->scan; k++) {
        const void *kp, *vp;
        size_t klen = 0, vlen = 0;
        int got = e->scan_next(cur, &kp, &klen, &vp, &vlen);
        if (got < 0)
            rc = got;
        if (got <= 0)
            break;
        (*found)++;
    }
    e->scan_close(cur);
    return rc;
}

/* Run one request with the blocking calls; returns its result for wl_finish. */
static int wl_exec(struct wl_state *s, void *th, struct wl_slot *sl, const void **val, size_t *vlen)
{
    const struct bench_engine *e = s->w->engine;
    const struct bench_config *cfg = s->w->cfg;
    const struct wl_req *r = &sl->req;
    *val = NULL;
    *vlen = 0;
    switch (r->op) {
    case WL_PUT:
        return e->put(th, sl->key, cfg->key_bytes, sl->val, cfg->value_bytes);
    case WL_DEL:
        return e->del(th, sl->key, cfg->key_bytes);
    case WL_SEEK: {
        unsigned found = 0;
        int rc = wl_seek(s, th, r, sl->key, &found);
        return rc == 0 && found == 0 ? BENCH_NOTFOUND : rc;
    }
    case WL_GET:
    case WL_RMW: {
        int rc = e->get(th, sl->key, cfg->key_bytes, s->get_buf, cfg->value_bytes, vlen);
        *val = s->get_buf;
        if (rc != 0 || r->op == WL_GET)
            return rc;
        if (!wl_value_ok(cfg, r->index, s->get_buf, *vlen))
            s->w->mismatches++;
        *val = NULL;
        return e->put(th, sl->key, cfg->key_bytes, sl->val, cfg->value_bytes);
    }
    }
    return -EINVAL;
}

/* Fill a slot's key and value for its request. */
static void wl_prepare(struct wl_state *s, struct wl_slot *sl)
{
    wl_key(s->w->cfg, sl->req.index, sl->key);
    if (sl->req.op == WL_PUT || sl->req.op == WL_RMW)
        wl_value(s, sl->req.index, sl->val);
}

static int wl_submit(struct wl_state *s, void *th, struct wl_slot *sl, uint64_t tag)
{
    const struct bench_engine *e = s->w->engine;
    const struct bench_config *cfg = s->w->cfg;
    switch (sl->req.op) {
    case WL_PUT:
        return e->submit_put(th, sl->key, cfg->key_bytes, sl->val, cfg->value_bytes, tag);
    case WL_GET:
        return e->submit_get(th, sl->key, cfg->key_bytes, tag);
    case WL_DEL:
        return e->submit_del(th, sl->key, cfg->key_bytes, tag);
    case WL_SEEK:
    case WL_RMW:
        break;
    }
    return -EINVAL; /* blocking_only workloads never get here */
}

/* The open-loop schedule of one thread: request n is due at start + n * interval. */
struct wl_clock {
    uint64_t start_ns;    /* the thread's start */
    uint64_t interval_ns; /* 0: closed loop */
    uint64_t deadline_ns; /* 0: none */
};

static uint64_t wl_due(const struct wl_clock *c, uint64_t n)
{
    return c->start_ns + n * c->interval_ns;
}

BENCH_MUST_CHECK static int wl_drive_blocking(struct wl_state *s, void *th, uint64_t count,
                                              const struct wl_clock *c)
{
    struct bench_worker *w = s->w;
    struct wl_slot *sl = &s->slots[0];
    for (uint64_t n = 0; n < count; n++) {
        s->next(s, n, &sl->req);
        wl_prepare(s, sl);
        uint64_t t0;
        if (c->interval_ns != 0) {
            t0 = wl_due(c, n);
            wl_sleep_until(t0);
        } else {
            t0 = bench_now_ns();
        }
        if (c->deadline_ns != 0 && t0 >= c->deadline_ns)
            break;
        const void *val;
        size_t vlen;
        int rc = wl_exec(s, th, sl, &val, &vlen);
        wl_finish(w, sl->req.index, rc, val, vlen, bench_now_ns() - t0);
    }
    return 0;
}

BENCH_MUST_CHECK static int wl_drive_pipelined(struct wl_state *s, void *th, uint64_t count,
                                               const struct wl_clock *c)
{
    struct bench_worker *w = s->w;
    struct bench_done done[BENCH_REAP_MAX];
    unsigned inflight = 0;
    uint64_t n = 0;
    int stopped = 0;
    while ((n < count && !stopped) || inflight > 0) {
        uint64_t now = bench_now_ns();
        if (c->deadline_ns != 0 && now >= c->deadline_ns)
            stopped = 1;
        while (n < count && !stopped && s->free_count > 0) {
            uint64_t due = c->interval_ns != 0 ? wl_due(c, n) : now;
            if (due > now)
                break;
            unsigned k = s->free_slots[--s->free_count];
            struct wl_slot *sl = &s->slots[k];
            s->next(s, n, &sl->req);
            wl_prepare(s, sl);
            sl->start_ns = c->interval_ns != 0 ? due : bench_now_ns();
            int src = wl_submit(s, th, sl, k);
            n++;
            if (src != 0) {
                wl_error(w, src);
                s->free_slots[s->free_count++] = k;
                continue;
            }
            inflight++;
        }
        if (inflight == 0) {
            if (n < count && !stopped && c->interval_ns != 0)
                wl_sleep_until(wl_due(c, n));
            continue;
        }
        /* Open loop: do not block past the next due time. */
        unsigned min = 1;
        if (c->interval_ns != 0 && n < count && !stopped && s->free_count > 0)
            min = 0;
        int got = w->engine->reap(th, done, BENCH_REAP_MAX, min);
        if (got < 0)
            return got; /* the engine lost track: stop this thread */
        if (got == 0) {
            uint64_t due = wl_due(c, n), t = bench_now_ns();
            if (due > t)
                wl_sleep_until(due - t > WL_OPEN_LOOP_SLEEP_NS ? t + WL_OPEN_LOOP_SLEEP_NS : due);
            continue;
        }
        now = bench_now_ns();
        for (int j = 0; j < got; j++) {
            wl_assert(done[j].tag < s->depth);
            struct wl_slot *sl = &s->slots[done[j].tag];
            int is_get = sl->req.op == WL_GET;
            wl_finish(w, sl->req.index, done[j].rc, is_get ? done[j].val : NULL, done[j].vlen,
                      now - sl->start_ns);
            s->free_slots[s->free_count++] = (unsigned)done[j].tag;
        }
        inflight -= (unsigned)got;
    }
    return 0;
}

/* Run count requests chosen by s->next, blocking or pipelined, then flush the engine's batch. */
BENCH_MUST_CHECK static int wl_drive(struct wl_state *s, uint64_t count)
{
    struct bench_worker *w = s->w;
    const struct bench_engine *e = w->engine;
    void *th = NULL;
    int rc = e->thread_open(w->store, s->depth, w->batch, &th);
    bench_worker_start(w);
    if (rc != 0)
        return rc;
    struct wl_clock c = {.start_ns = bench_now_ns()};
    if (w->rate > 0.0)
        c.interval_ns = (uint64_t)(1e9 * (double)w->count / w->rate);
    if (w->duration_ns != 0)
        c.deadline_ns = c.start_ns + w->duration_ns;
    if (s->depth == 1)
        rc = wl_drive_blocking(s, th, count, &c);
    else
        rc = wl_drive_pipelined(s, th, count, &c);
    if (e->flush != NULL) {
        int frc = e->flush(th);
        if (frc != 0)
            wl_error(w, frc);
    }
    e->thread_close(th);
    return rc;
}

/* This thread's share of total requests. */
static uint64_t wl_share(const struct bench_worker *w, uint64_t total)
{
    return total / w->count + (w->index < total % w->count ? 1 : 0);
}

static void wl_next_fill(struct wl_state *s, uint64_t n, struct wl_req *r)
{
    r->op = WL_PUT;
    r->index = (uint64_t)s->w->index + n * s->w->count;
}

static void wl_next_delete(struct wl_state *s, uint64_t n, struct wl_req *r)
{
    wl_next_fill(s, n, r);
    r->op = WL_DEL;
}

static void wl_next_overwrite(struct wl_state *s, uint64_t n, struct wl_req *r)
{
    (void)n;
    r->op = WL_PUT;
    r->index = wl_rand(&s->rng) % s->w->cfg->keys;
}

static void wl_next_read(struct wl_state *s, uint64_t n, struct wl_req *r)
{
    (void)n;
    r->op = WL_GET;
    r->index = wl_rand(&s->rng) % s->w->cfg->keys;
}

static void wl_next_seek(struct wl_state *s, uint64_t n, struct wl_req *r)
{
    (void)n;
    r->op = WL_SEEK;
    r->index = wl_rand(&s->rng) % s->w->cfg->keys;
    r->scan = s->w->cfg->scan_length;
}

/* Zipfian rank in [0, keys): 0 is the most popular (YCSB ZipfianGenerator). */
static uint64_t wl_zipf(struct wl_state *s)
{
    const struct bench_config *cfg = s->w->cfg;
    double u = wl_rand01(&s->rng);
    double uz = u * cfg->zipf_zetan;
    if (uz < 1.0)
        return 0;
    if (uz < 1.0 + pow(0.5, cfg->zipf_theta))
        return 1;
    uint64_t k =
        (uint64_t)((double)cfg->keys * pow(s->zipf_eta * u - s->zipf_eta + 1.0, s->zipf_alpha));
    return k < cfg->keys ? k : cfg->keys - 1;
}

static void wl_next_ycsb(struct wl_state *s, uint64_t n, struct wl_req *r)
{
    (void)n;
    const struct bench_config *cfg = s->w->cfg;
    uint64_t *inserted = &s->w->shared->inserted;
    int read = wl_rand(&s->rng) % WL_PERCENT < s->read_pct;
    if (!read && s->inserts) {
        r->op = WL_PUT;
        r->index = cfg->keys + __atomic_fetch_add(inserted, 1, __ATOMIC_RELAXED);
        return;
    }
    uint64_t z = wl_zipf(s);
    if (s->latest) {
        uint64_t last = cfg->keys + __atomic_load_n(inserted, __ATOMIC_RELAXED);
        r->index = last - 1 - z % last;
    } else {
        r->index = wl_mix(z ^ 0x9c5a3e1f0ull) % cfg->keys; /* scrambled zipfian */
    }
    r->op = read ? s->read_op : s->other_op;
    r->scan = 1 + (unsigned)(wl_rand(&s->rng) % cfg->scan_length);
}

/* A workload that runs share(total) requests chosen by next; ycsb parameters when mix != NULL. */
struct wl_mix_spec {
    unsigned read_pct;
    enum wl_op read_op;
    enum wl_op other_op;
    int inserts;
    int latest;
};

static int wl_run(struct bench_worker *w, wl_next_fn next, uint64_t total,
                  const struct wl_mix_spec *mix)
{
    struct wl_state s;
    if (w->cfg->keys == 0 && next != wl_next_fill)
        return 0;
    int rc = wl_state_init(&s, w, next);
    if (rc != 0)
        return rc;
    if (mix != NULL) {
        s.read_pct = mix->read_pct;
        s.read_op = mix->read_op;
        s.other_op = mix->other_op;
        s.inserts = mix->inserts;
        s.latest = mix->latest;
    }
    rc = wl_drive(&s, wl_share(w, total));
    wl_state_free(&s);
    return rc;
}

static int wl_fill(struct bench_worker *w)
{
    return wl_run(w, wl_next_fill, w->cfg->keys, NULL);
}

static int wl_overwrite(struct bench_worker *w)
{
    return wl_run(w, wl_next_overwrite, w->ops_total, NULL);
}

static int wl_readrandom(struct bench_worker *w)
{
    return wl_run(w, wl_next_read, w->ops_total, NULL);
}

static int wl_seekrandom(struct bench_worker *w)
{
    return wl_run(w, wl_next_seek, w->ops_total, NULL);
}

static int wl_deleterandom(struct bench_worker *w)
{
    uint64_t total = w->ops_total < w->cfg->keys ? w->ops_total : w->cfg->keys;
    return wl_run(w, wl_next_delete, total, NULL);
}

static const struct wl_mix_spec wl_ycsb_specs[6] = {
    {50, WL_GET, WL_PUT, 0, 0}, {95, WL_GET, WL_PUT, 0, 0},  {100, WL_GET, WL_PUT, 0, 0},
    {95, WL_GET, WL_PUT, 1, 1}, {95, WL_SEEK, WL_PUT, 1, 0}, {50, WL_GET, WL_RMW, 0, 0},
};

static int wl_ycsb(struct bench_worker *w, unsigned which)
{
    wl_assert(which < 6);
    return wl_run(w, wl_next_ycsb, w->ops_total, &wl_ycsb_specs[which]);
}

static int wl_ycsb_a(struct bench_worker *w)
{
    return wl_ycsb(w, 0);
}
static int wl_ycsb_b(struct bench_worker *w)
{
    return wl_ycsb(w, 1);
}
static int wl_ycsb_c(struct bench_worker *w)
{
    return wl_ycsb(w, 2);
}
static int wl_ycsb_d(struct bench_worker *w)
{
    return wl_ycsb(w, 3);
}
static int wl_ycsb_e(struct bench_worker *w)
{
    return wl_ycsb(w, 4);
}
static int wl_ycsb_f(struct bench_worker *w)
{
    return wl_ycsb(w, 5);
}

static int wl_scan(struct bench_worker *w)
{
    const struct bench_engine *e = w->engine;
    void *th = NULL, *cur = NULL;
    int rc = e->thread_open(w->store, 1, 1, &th);
    bench_worker_start(w);
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

/* name, run, single_thread, fill, needs_load, blocking_only, writes, describe */
static const struct bench_workload wl_table[] = {
    {"fillseq", wl_fill, 0, 1, 0, 0, 1, "puts of every key, in key order"},
    {"fillrandom", wl_fill, 0, 1, 0, 0, 1, "puts of every key, in random key order"},
    {"overwrite", wl_overwrite, 0, 0, 1, 0, 1, "puts of random existing keys"},
    {"readrandom", wl_readrandom, 0, 0, 1, 0, 0, "gets of random keys, values checked"},
    {"seekrandom", wl_seekrandom, 0, 0, 1, 1, 0,
     "seek to a random key, read --scan-length records"},
    {"deleterandom", wl_deleterandom, 0, 0, 1, 0, 1, "deletes of distinct keys in random order"},
    {"scan", wl_scan, 1, 0, 1, 1, 0, "one cursor over the whole collection, order checked"},
    {"ycsb-a", wl_ycsb_a, 0, 0, 1, 0, 1, "YCSB A: 50% reads, 50% updates, zipfian"},
    {"ycsb-b", wl_ycsb_b, 0, 0, 1, 0, 1, "YCSB B: 95% reads, 5% updates, zipfian"},
    {"ycsb-c", wl_ycsb_c, 0, 0, 1, 0, 0, "YCSB C: reads, zipfian"},
    {"ycsb-d", wl_ycsb_d, 0, 0, 1, 0, 1, "YCSB D: 95% reads of the latest, 5% inserts"},
    {"ycsb-e", wl_ycsb_e, 0, 0, 1, 1, 1, "YCSB E: 95% short scans, 5% inserts"},
    {"ycsb-f", wl_ycsb_f, 0, 0, 1, 1, 1, "YCSB F: 50% reads, 50% read-modify-writes"},
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
    return "fillseq, fillrandom, overwrite, readrandom, seekrandom, deleterandom, scan, "
           "ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-e, ycsb-f";
}
