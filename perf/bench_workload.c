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
 *   transfer             a transaction reads two distinct uniformly random records (in record
 *                        index order, so that an engine that locks cannot deadlock on it) and
 *                        writes both back with one unit moved from one balance to the other
 *                        (the balance: a little-endian uint64 at value offset 8, wrapping
 *                        arithmetic; the first 8 bytes stay the record index); --cross-shard
 *                        draws the second record until it lives on another shard than the first
 *                        (engines with shards). The invariant, checked with a scan from the main
 *                        thread before the phase and after it (unmeasured; bench.c counts a
 *                        change as a wrong value): the sum of all balances mod 2^64 and the
 *                        record count stay the same, so a lost or half-applied transfer shows.
 * Transactions: a transfer is one; with --txn N, every N consecutive requests of a thread of
 * overwrite, readrandom, seekrandom, ycsb-a..d and ycsb-f form one transaction: gets through the
 * transaction's get, updates and inserts through its put, seeks through a cursor inside it. A
 * transaction that writes nothing is read-only (a snapshot: seekrandom --txn 1 runs each seek in
 * its own read-only transaction). A conflict aborts the attempt and retries the whole
 * transaction with the same requests (a new begin), counting an abort, at most
 * WL_TXN_ATTEMPTS_MAX times (then its requests fail with -EBUSY). A request's latency runs from
 * when its transaction's first attempt ran it to the commit that succeeded; for the first request
 * of a transaction (and a transfer) from the first begin, so that the begin is charged. With
 * --inflight K > 1 and an engine that pipelines commits (cstore sessions), a thread keeps K
 * transactions in flight: each is built with blocking calls, then its commit is submitted, and a
 * conflicted one is rebuilt and submitted again when its completion is reaped.
 * --rate does not apply to transactional phases (bench.c refuses it).
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
#define WL_TXN_ATTEMPTS_MAX 10000u   /* attempts of one transaction before its requests fail */
#define WL_CROSS_DRAWS_MAX 64u       /* --cross-shard: draws of the second record of a transfer */
#define WL_BALANCE_OFFSET 8u         /* transfer: the balance's offset in a value */
#define WL_BALANCE_VALUE_BYTES 16u   /* transfer: shortest value (index, then balance) */
#define WL_COUNT_WEIGHT 0x9e3779b97f4a7c15ull /* invariant: odd weight of the record count */

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

/* A transaction to run: its requests, and when its first attempt ran each. */
struct wl_txn {
    unsigned count;                       /* requests (a transfer is one) */
    int writes;                           /* some request writes: read-write, else read-only */
    int upward;                           /* transfer: the unit moves from rec[1] to rec[0] */
    uint64_t rec[2];                      /* transfer: its records, lower index first */
    uint64_t start_ns;                    /* the first attempt's begin */
    unsigned attempts;                    /* attempts that conflicted so far */
    unsigned missed;                      /* gets of the last attempt that found nothing */
    struct wl_req req[BENCH_TXN_OPS_MAX]; /* the requests (not a transfer) */
    uint64_t req_ns[BENCH_TXN_OPS_MAX];   /* when the first attempt ran each request */
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
    int transfer;          /* each request is a transfer (the transfer workload) */
    struct wl_txn *txns;   /* transactional phases: one per slot, else NULL */
    char *txn_vals;        /* transactional phases: two values of value_bytes (a transfer's) */
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
    free(s->txns);
    free(s->txn_vals);
}

BENCH_MUST_CHECK static int wl_state_init(struct wl_state *s, struct bench_worker *w,
                                          wl_next_fn next)
{
    const struct bench_config *cfg = w->cfg;
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->next = next;
    s->rng = cfg->seed * 0x2545f4914f6cdd1dull + w->index + 1;
    int pipelines = w->txn ? w->engine->txn_submit_commit != NULL : w->engine->submit_put != NULL;
    s->depth = w->depth > 1 && pipelines ? w->depth : 1;
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
    if (w->txn) {
        s->txns = calloc(s->depth, sizeof(*s->txns));
        s->txn_vals = malloc(2 * (size_t)cfg->value_bytes + 1);
    }
    if (s->get_buf == NULL || s->slots == NULL || s->free_slots == NULL || s->arena == NULL ||
        (w->txn && (s->txns == NULL || s->txn_vals == NULL))) {
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

/* A cursor per request: seek to the key of r, read up to r->scan records; the cursor is the
 * thread's (txn NULL) or one inside the read-only transaction txn. Returns 0 or the engine's
 * error; *found gets the records read. */
static int wl_seek(struct wl_state *s, void *th, void *txn, const struct wl_req *r, const char *key,
                   unsigned *found)
{
    const struct bench_engine *e = s->w->engine;
    void *cur = NULL;
    *found = 0;
    if (txn != NULL && e->txn_scan_open == NULL)
        return -ENOTSUP;
    int rc = txn != NULL ? e->txn_scan_open(txn, &cur) : e->scan_open(th, &cur);
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
        int rc = wl_seek(s, th, NULL, r, sl->key, &found);
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

static uint64_t wl_le64(const char *p)
{
    uint64_t x = 0;
    for (unsigned b = 0; b < 8; b++)
        x |= (uint64_t)(unsigned char)p[b] << (8 * b);
    return x;
}

static void wl_le64_put(char *p, uint64_t x)
{
    for (unsigned b = 0; b < 8; b++)
        p[b] = (char)(x >> (8 * b));
}

/* The shard of record i, or 0 when the engine has none (or cannot tell). */
static unsigned wl_shard_of(struct wl_state *s, uint64_t i)
{
    const struct bench_worker *w = s->w;
    unsigned shard = 0;
    wl_key(w->cfg, i, s->slots[0].key);
    if (w->engine->key_shard == NULL ||
        w->engine->key_shard(w->store, s->slots[0].key, w->cfg->key_bytes, &shard) != 0)
        return 0;
    return shard;
}

/* A transfer's two distinct records, uniformly random (on two shards with --cross-shard, when
 * WL_CROSS_DRAWS_MAX draws find one), lower index first, and its direction. */
static void wl_transfer_pick(struct wl_state *s, struct wl_txn *x)
{
    const struct bench_config *cfg = s->w->cfg;
    wl_assert(cfg->keys >= 2);
    uint64_t a = wl_rand(&s->rng) % cfg->keys, b = a;
    int cross = cfg->cross_shard && s->w->engine->key_shard != NULL;
    unsigned shard_a = cross ? wl_shard_of(s, a) : 0;
    for (unsigned draw = 0; draw < WL_CROSS_DRAWS_MAX; draw++) {
        b = wl_rand(&s->rng) % (cfg->keys - 1);
        b += b >= a ? 1 : 0;
        if (!cross || wl_shard_of(s, b) != shard_a)
            break;
    }
    wl_assert(a != b);
    x->rec[0] = a < b ? a : b;
    x->rec[1] = a < b ? b : a;
    x->upward = (int)(wl_rand(&s->rng) & 1u);
}

/* Choose the next transaction of this thread, from its n-th request on (count in all): a
 * transfer, or up to --txn requests chosen by s->next. Returns the requests it took (>= 1). */
static uint64_t wl_txn_choose(struct wl_state *s, uint64_t n, uint64_t count, struct wl_txn *x)
{
    x->attempts = 0;
    x->missed = 0;
    x->start_ns = bench_now_ns();
    if (s->transfer) {
        wl_transfer_pick(s, x);
        x->count = 1;
        x->writes = 1;
        return 1;
    }
    uint64_t k = s->w->cfg->txn_ops;
    k = count - n < k ? count - n : k;
    wl_assert(k >= 1);
    wl_assert(k <= BENCH_TXN_OPS_MAX);
    x->count = (unsigned)k;
    x->writes = 0;
    for (unsigned i = 0; i < x->count; i++) {
        s->next(s, n + i, &x->req[i]);
        x->req_ns[i] = x->start_ns;
        if (x->req[i].op == WL_PUT || x->req[i].op == WL_RMW)
            x->writes = 1;
    }
    return k;
}

/* A transfer inside txn: get both records, move one unit, put both. Returns 0,
 * BENCH_NOTFOUND (a record is missing), BENCH_CONFLICT, or an error (-EILSEQ: a value that is
 * not its record's, also counted as a wrong value). */
static int wl_transfer_ops(struct wl_state *s, void *txn, struct wl_txn *x)
{
    struct bench_worker *w = s->w;
    const struct bench_engine *e = w->engine;
    const struct bench_config *cfg = w->cfg;
    char *key = s->slots[0].key, *val[2] = {s->txn_vals, s->txn_vals + cfg->value_bytes};
    for (unsigned r = 0; r < 2; r++) {
        size_t vlen = 0;
        wl_key(cfg, x->rec[r], key);
        int rc = e->txn_get(txn, key, cfg->key_bytes, 1, val[r], cfg->value_bytes, &vlen);
        if (rc != 0)
            return rc;
        if (!wl_value_ok(cfg, x->rec[r], val[r], vlen)) {
            w->mismatches++;
            return -EILSEQ;
        }
    }
    uint64_t up = x->upward ? 1u : (uint64_t)-1;
    wl_le64_put(val[0] + WL_BALANCE_OFFSET, wl_le64(val[0] + WL_BALANCE_OFFSET) + up);
    wl_le64_put(val[1] + WL_BALANCE_OFFSET, wl_le64(val[1] + WL_BALANCE_OFFSET) - up);
    for (unsigned r = 0; r < 2; r++) {
        wl_key(cfg, x->rec[r], key);
        int rc = e->txn_put(txn, key, cfg->key_bytes, val[r], cfg->value_bytes);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Whether a request of x after the i-th writes the i-th's record. */
static int wl_txn_writes_later(const struct wl_txn *x, unsigned i)
{
    for (unsigned j = i + 1; j < x->count; j++)
        if (x->req[j].index == x->req[i].index && x->req[j].op != WL_GET && x->req[j].op != WL_SEEK)
            return 1;
    return 0;
}

/* The requests of x inside txn, in order; gets that find nothing count in x->missed. Returns
 * 0, BENCH_CONFLICT or an error. */
static int wl_txn_ops(struct wl_state *s, void *txn, struct wl_txn *x)
{
    struct bench_worker *w = s->w;
    const struct bench_engine *e = w->engine;
    const struct bench_config *cfg = w->cfg;
    char *key = s->slots[0].key, *val = s->slots[0].val;
    for (unsigned i = 0; i < x->count; i++) {
        const struct wl_req *r = &x->req[i];
        if (x->attempts == 0 && i > 0) /* the first request's start is the first begin */
            x->req_ns[i] = bench_now_ns();
        wl_key(cfg, r->index, key);
        int rc = 0;
        size_t vlen = 0;
        unsigned found = 0;
        switch (r->op) {
        case WL_GET:
        case WL_RMW:
            rc = e->txn_get(txn, key, cfg->key_bytes, r->op == WL_RMW || wl_txn_writes_later(x, i),
                            s->get_buf, cfg->value_bytes, &vlen);
            if (rc == BENCH_NOTFOUND) {
                x->missed++;
                rc = 0;
                break;
            }
            if (rc == 0 && !wl_value_ok(cfg, r->index, s->get_buf, vlen))
                w->mismatches++;
            if (rc != 0 || r->op == WL_GET)
                break;
            __attribute__((fallthrough)); /* the write of a read-modify-write */
        case WL_PUT:
            wl_value(s, r->index, val);
            rc = e->txn_put(txn, key, cfg->key_bytes, val, cfg->value_bytes);
            break;
        case WL_SEEK:
            rc = x->writes ? -EINVAL : wl_seek(s, NULL, txn, r, key, &found);
            x->missed += rc == 0 && found == 0 ? 1u : 0u;
            break;
        case WL_DEL:
            rc = -EINVAL; /* no workload deletes in transactions */
            break;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* One attempt of x up to its commit: begin (read-only when x writes nothing), then its
 * requests. Returns 0 with *txn open and ready to commit, or BENCH_NOTFOUND (a transfer's
 * record is missing), BENCH_CONFLICT or an error with the transaction ended. */
static int wl_txn_build(struct wl_state *s, void *th, struct wl_txn *x, void **txn)
{
    const struct bench_engine *e = s->w->engine;
    x->missed = 0;
    *txn = NULL;
    int rc = e->txn_begin(th, x->writes ? 0 : BENCH_TXN_READONLY, txn);
    if (rc != 0)
        return rc;
    rc = s->transfer ? wl_transfer_ops(s, *txn, x) : wl_txn_ops(s, *txn, x);
    if (rc != 0) {
        e->txn_abort(*txn);
        *txn = NULL;
    }
    return rc;
}

/* After an attempt of x ended with rc: whether to retry it (a conflict, attempts left), and
 * then the abort is counted. */
static int wl_txn_retry(struct wl_state *s, struct wl_txn *x, int rc)
{
    if (rc != BENCH_CONFLICT)
        return 0;
    s->w->aborts++;
    x->attempts++;
    return x->attempts < WL_TXN_ATTEMPTS_MAX;
}

/* Account for the requests of x, whose last attempt ended with rc at end_ns. */
static void wl_txn_finish(struct wl_state *s, const struct wl_txn *x, int rc, uint64_t end_ns)
{
    struct bench_worker *w = s->w;
    if (rc == BENCH_CONFLICT)
        rc = -EBUSY; /* out of attempts */
    if (rc == 0)
        w->commits++;
    if (s->transfer) {
        wl_finish(w, x->rec[0], rc, NULL, 0, end_ns - x->start_ns);
        return;
    }
    for (unsigned i = 0; i < x->count; i++) {
        bench_hist_record(&w->hist, end_ns - x->req_ns[i]);
        w->ops++;
        if (rc != 0)
            wl_error(w, rc);
    }
    if (rc == 0)
        w->misses += x->missed;
}

/* Run x until it commits, runs out of attempts or fails: blocking commits, or with a pipeline
 * (s->depth > 1) a read-write transaction's commit is submitted with tag. Returns 1 when a
 * commit is in flight (its completion decides), 0 when x is finished and accounted for. */
static int wl_txn_run(struct wl_state *s, void *th, struct wl_txn *x, uint64_t tag)
{
    const struct bench_engine *e = s->w->engine;
    for (unsigned attempt = 0; attempt <= WL_TXN_ATTEMPTS_MAX; attempt++) {
        void *txn = NULL;
        int rc = wl_txn_build(s, th, x, &txn);
        if (rc == 0 && s->depth > 1 && x->writes) {
            rc = e->txn_submit_commit(th, txn, tag);
            if (rc == 0)
                return 1;
        } else if (rc == 0) {
            rc = e->txn_commit(txn);
        }
        if (!wl_txn_retry(s, x, rc)) {
            wl_txn_finish(s, x, rc, bench_now_ns());
            return 0;
        }
    }
    wl_assert(!"a transaction outlived WL_TXN_ATTEMPTS_MAX attempts");
    return 0;
}

BENCH_MUST_CHECK static int wl_drive_txn_blocking(struct wl_state *s, void *th, uint64_t count,
                                                  const struct wl_clock *c)
{
    struct wl_txn *x = &s->txns[0];
    for (uint64_t n = 0; n < count;) {
        if (c->deadline_ns != 0 && bench_now_ns() >= c->deadline_ns)
            break;
        n += wl_txn_choose(s, n, count, x);
        int inflight = wl_txn_run(s, th, x, 0);
        wl_assert(!inflight);
    }
    return 0;
}

/* Up to s->depth transactions in flight: each is built with blocking calls and its commit
 * submitted; a completion that conflicted is rebuilt and submitted again. */
BENCH_MUST_CHECK static int wl_drive_txn_pipelined(struct wl_state *s, void *th, uint64_t count,
                                                   const struct wl_clock *c)
{
    struct bench_done done[BENCH_REAP_MAX];
    unsigned inflight = 0;
    uint64_t n = 0;
    int stopped = 0;
    while ((n < count && !stopped) || inflight > 0) {
        if (c->deadline_ns != 0 && bench_now_ns() >= c->deadline_ns)
            stopped = 1;
        while (n < count && !stopped && s->free_count > 0) {
            unsigned k = s->free_slots[--s->free_count];
            n += wl_txn_choose(s, n, count, &s->txns[k]);
            if (wl_txn_run(s, th, &s->txns[k], k))
                inflight++;
            else
                s->free_slots[s->free_count++] = k;
        }
        if (inflight == 0)
            continue;
        int got = s->w->engine->reap(th, done, BENCH_REAP_MAX, 1);
        if (got < 0)
            return got; /* the engine lost track: stop this thread */
        for (int j = 0; j < got; j++) {
            wl_assert(done[j].tag < s->depth);
            struct wl_txn *x = &s->txns[done[j].tag];
            if (!wl_txn_retry(s, x, done[j].rc))
                wl_txn_finish(s, x, done[j].rc, bench_now_ns());
            else if (wl_txn_run(s, th, x, done[j].tag))
                continue; /* in flight again */
            s->free_slots[s->free_count++] = (unsigned)done[j].tag;
            inflight--;
        }
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
    if (w->txn && s->depth == 1)
        rc = wl_drive_txn_blocking(s, th, count, &c);
    else if (w->txn)
        rc = wl_drive_txn_pipelined(s, th, count, &c);
    else if (s->depth == 1)
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

static int wl_transfer(struct bench_worker *w)
{
    const struct bench_config *cfg = w->cfg;
    if (cfg->keys < 2 || cfg->value_bytes < WL_BALANCE_VALUE_BYTES || !w->txn ||
        w->engine->txn_begin == NULL)
        return -EINVAL; /* bench.c refuses these options */
    struct wl_state s;
    int rc = wl_state_init(&s, w, wl_next_overwrite);
    if (rc != 0)
        return rc;
    s.transfer = 1;
    rc = wl_drive(&s, wl_share(w, w->ops_total));
    wl_state_free(&s);
    return rc;
}

/* The transfer's invariant: the sum of every record's balance (mod 2^64) plus the record count
 * times WL_COUNT_WEIGHT, from a scan of the whole collection on a handle of the main thread. */
static int wl_balance_invariant(const struct bench_engine *e, const struct bench_config *cfg,
                                void *store, uint64_t *value)
{
    (void)cfg;
    void *th = NULL, *cur = NULL;
    uint64_t sum = 0, count = 0;
    int rc = e->thread_open(store, 1, 1, &th);
    if (rc != 0)
        return rc;
    rc = e->scan_open(th, &cur);
    for (uint64_t guard = 0; rc == 0 && guard < UINT64_MAX; guard++) {
        const void *k, *v;
        size_t klen = 0, vlen = 0;
        int got = e->scan_next(cur, &k, &klen, &v, &vlen);
        if (got < 0)
            rc = got;
        if (got <= 0)
            break;
        count++;
        if (vlen >= WL_BALANCE_VALUE_BYTES)
            sum += wl_le64((const char *)v + WL_BALANCE_OFFSET);
    }
    if (cur != NULL)
        e->scan_close(cur);
    e->thread_close(th);
    *value = sum + count * WL_COUNT_WEIGHT;
    return rc;
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

#define WL_NEVER BENCH_TXN_NEVER
#define WL_OPTION BENCH_TXN_OPTION

/* name, run, single_thread, fill, needs_load, blocking_only, writes, txn, invariant, describe */
static const struct bench_workload wl_table[] = {
    {"fillseq", wl_fill, 0, 1, 0, 0, 1, WL_NEVER, NULL, "puts of every key, in key order"},
    {"fillrandom", wl_fill, 0, 1, 0, 0, 1, WL_NEVER, NULL,
     "puts of every key, in random key order"},
    {"overwrite", wl_overwrite, 0, 0, 1, 0, 1, WL_OPTION, NULL, "puts of random existing keys"},
    {"readrandom", wl_readrandom, 0, 0, 1, 0, 0, WL_OPTION, NULL,
     "gets of random keys, values checked"},
    {"seekrandom", wl_seekrandom, 0, 0, 1, 1, 0, WL_OPTION, NULL,
     "seek to a random key, read --scan-length records"},
    {"deleterandom", wl_deleterandom, 0, 0, 1, 0, 1, WL_NEVER, NULL,
     "deletes of distinct keys in random order"},
    {"scan", wl_scan, 1, 0, 1, 1, 0, WL_NEVER, NULL,
     "one cursor over the whole collection, order checked"},
    {"ycsb-a", wl_ycsb_a, 0, 0, 1, 0, 1, WL_OPTION, NULL,
     "YCSB A: 50% reads, 50% updates, zipfian"},
    {"ycsb-b", wl_ycsb_b, 0, 0, 1, 0, 1, WL_OPTION, NULL, "YCSB B: 95% reads, 5% updates, zipfian"},
    {"ycsb-c", wl_ycsb_c, 0, 0, 1, 0, 0, WL_OPTION, NULL, "YCSB C: reads, zipfian"},
    {"ycsb-d", wl_ycsb_d, 0, 0, 1, 0, 1, WL_OPTION, NULL,
     "YCSB D: 95% reads of the latest, 5% inserts"},
    {"ycsb-e", wl_ycsb_e, 0, 0, 1, 1, 1, WL_NEVER, NULL, "YCSB E: 95% short scans, 5% inserts"},
    {"ycsb-f", wl_ycsb_f, 0, 0, 1, 1, 1, WL_OPTION, NULL,
     "YCSB F: 50% reads, 50% read-modify-writes"},
    {"transfer", wl_transfer, 0, 0, 1, 0, 1, BENCH_TXN_ALWAYS, wl_balance_invariant,
     "transactions moving a unit between two random records' balances"},
};

int bench_workload_txn(const struct bench_workload *wl, const struct bench_config *cfg)
{
    return wl->txn == BENCH_TXN_ALWAYS || (wl->txn == BENCH_TXN_OPTION && cfg->txn_ops > 0);
}

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
           "ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-e, ycsb-f, transfer";
}
