/* The ground the cstore-fault scenarios stand on: seeded randomness, opening a database with
 * the scenario's options, the workload (threads that each own their keys, log every operation's
 * intent and outcome, and feed the records to the model or to a pipe), the check after a
 * reopen, the scenario folders (made and removed by the tool only: a marker file says so) and
 * the pacing of iterations by count or by duration. Everything shared lives in struct fault_ctx,
 * passed explicitly. */
#include "tools/fault_scenario.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *const scenario_names[SC_COUNT] = {"crash",   "eio",  "torn",     "enospc",
                                              "bitflip", "slow", "powercut", "fileio",
                                              "alloc",   "txn",  "server"};

/* Iterations run per scenario when neither --iterations nor --duration is given. */
const unsigned scenario_default_iterations[SC_COUNT] = {20, 6, 10, 4, 20, 3, 30, 6, 6, 12, 12};

/* ---- small helpers ---- */

uint64_t rng_next(struct rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

/* Uniform in [0, n), n > 0. */
uint64_t rng_below(struct rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool drain_records(int fd, void *buf, size_t cap, size_t *have, size_t rec_size,
                   uint64_t deadline_ms, void (*apply)(void *arg, const void *rec), void *arg,
                   struct model *m)
{
    for (;;) {
        int timeout = -1;
        if (deadline_ms) {
            uint64_t now = now_ms();
            if (now >= deadline_ms)
                return false;
            timeout = (int)(deadline_ms - now);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        ssize_t got = read(fd, (char *)buf + *have, cap - *have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (*have)
                model_violation(m, "log ends in a partial record (%zu bytes)", *have);
            *have = 0;
            return true;
        }
        *have += (size_t)got;
        size_t whole = *have / rec_size;
        for (size_t i = 0; i < whole; i++)
            apply(arg, (const char *)buf + i * rec_size);
        *have -= whole * rec_size;
        memmove(buf, (char *)buf + whole * rec_size, *have);
    }
}

/* out = a + sep + b; a path that does not fit is a set-up error. */
void path_join(char *out, size_t size, const char *a, const char *sep, const char *b)
{
    int n = snprintf(out, size, "%s%s%s", a, sep, b);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "cstore-fault: path too long: %s%s%s\n", a, sep, b);
        exit(2);
    }
}

void note(struct fault_ctx *ctx, const char *fmt, ...)
{
    if (!ctx->cfg.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

int db_open(struct fault_ctx *ctx, const char *dir, const struct open_opts *oo, cs_db **db)
{
    cs_options *o = cs_options_new();
    if (!o)
        return -ENOMEM;
    char shards[16];
    snprintf(shards, sizeof(shards), "%u", ctx->cfg.shards);
    int rc = cs_options_set(o, "shards", shards);
    if (!rc)
        rc = cs_options_set(o, "durability", oo && oo->durability ? oo->durability : "sync");
    if (!rc && oo && oo->fault)
        rc = cs_options_set(o, "fault", oo->fault);
    if (!rc && oo && oo->segment)
        rc = cs_options_set(o, "wal_segment_bytes", oo->segment);
    if (!rc && oo && oo->ckpt_bytes)
        rc = cs_options_set(o, "checkpoint_wal_bytes", oo->ckpt_bytes);
    if (!rc && oo && oo->no_compress)
        rc = cs_options_set(o, "wal_compress_bytes", "0");
    if (!rc)
        rc = cs_open(dir, o, db);
    cs_options_free(o);
    return rc;
}

/* ---- the workload ---- */

enum { OP_PUT, OP_DEL, OP_BATCH };

struct worker {
    struct workload *w; /* shared */
    unsigned thread;    /* index */
};

static void log_rec(struct workload *w, const struct op_rec *r)
{
    struct fault_ctx *ctx = w->ctx;
    if (w->log_fd < 0) {
        model_apply(&ctx->model, r);
        return;
    }
    for (unsigned tries = 0; tries < 1000; tries++) {
        ssize_t n = write(w->log_fd, r, sizeof(*r));
        if (n == (ssize_t)sizeof(*r))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        _exit(5); /* the parent is gone or the pipe broke: nothing left to prove */
    }
    _exit(5);
}

static void workload_index(struct workload *w)
{
    struct fault_ctx *ctx = w->ctx;
    memset(w->count, 0, sizeof(w->count));
    for (unsigned t = 0; t < ctx->cfg.threads; t++) {
        for (uint32_t i = 0; i < KEYS_PER_THREAD; i++) {
            uint32_t key = t * KEYS_PER_THREAD + i;
            unsigned s = key_shard(key, ctx->cfg.shards) % 8u;
            w->by_shard[t][s][w->count[t][s]++] = key;
        }
    }
}

/* Build the next operation of a thread into r (kind REC_INTENT). */
static void op_build(struct workload *w, unsigned t, struct rng *rng, uint32_t seq,
                     struct op_rec *r)
{
    struct fault_ctx *ctx = w->ctx;
    memset(r, 0, sizeof(*r));
    r->magic = REC_MAGIC;
    r->kind = REC_INTENT;
    r->thread = (uint16_t)t;
    r->op_id = (uint64_t)w->iteration << 32 | (uint64_t)t << 24 | (seq & 0xffffffu);
    uint64_t dice = rng_below(rng, 100);
    int op = dice < 50 ? OP_PUT : dice < 70 ? OP_DEL : OP_BATCH;
    uint32_t first = t * KEYS_PER_THREAD + (uint32_t)rng_below(rng, KEYS_PER_THREAD);
    r->count = 1;
    r->key[0] = first;
    r->val[0] = op == OP_DEL ? 0 : r->op_id << 3 | 1u;
    if (op != OP_BATCH)
        return;
    unsigned s = key_shard(first, ctx->cfg.shards) % 8u;
    uint32_t avail = w->count[t][s];
    unsigned want = 2 + (unsigned)rng_below(rng, BATCH_KEYS_MAX - 1);
    for (unsigned tries = 0; tries < 16 && r->count < want && avail > 1; tries++) {
        uint32_t k = w->by_shard[t][s][rng_below(rng, avail)];
        bool dup = false;
        for (unsigned i = 0; i < r->count; i++)
            dup |= r->key[i] == k;
        if (dup)
            continue;
        r->key[r->count] = k;
        r->val[r->count] = rng_below(rng, 4) == 0 ? 0 : r->op_id << 3 | (r->count + 1u);
        r->count++;
    }
}

static int op_run(struct workload *w, const struct op_rec *r, char *vbuf)
{
    char key[32];
    if (r->count == 1) {
        size_t klen = key_make(r->key[0], key, sizeof(key));
        if (r->val[0] == 0)
            return cs_del(w->db, COLL, key, klen);
        size_t vlen = value_make(r->val[0], w->filler_max, vbuf);
        return cs_put(w->db, COLL, key, klen, vbuf, vlen);
    }
    cs_batch *b = cs_batch_new();
    if (!b)
        return -ENOMEM;
    int rc = 0;
    for (unsigned i = 0; i < r->count && rc == 0; i++) {
        size_t klen = key_make(r->key[i], key, sizeof(key));
        if (r->val[i] == 0) {
            rc = cs_batch_del(b, COLL, key, klen);
        } else {
            size_t vlen = value_make(r->val[i], w->filler_max, vbuf);
            rc = cs_batch_put(b, COLL, key, klen, vbuf, vlen);
        }
    }
    if (rc == 0)
        rc = cs_write(w->db, b);
    cs_batch_free(b);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct workload *w = wk->w;
    struct fault_ctx *ctx = w->ctx;
    struct rng rng = {mix64(w->seed ^ (0x1000u + wk->thread))};
    char *vbuf = malloc(VAL_HEAD_BYTES + w->filler_max + 1);
    if (!vbuf)
        return NULL;
    uint32_t fails_in_row = 0;
    for (uint32_t seq = 1; seq < 0xffffffu; seq++) {
        if (atomic_load(&w->stop) || (w->ops_per_thread && seq > w->ops_per_thread))
            break;
        if (w->fail_stop && fails_in_row >= w->fail_stop)
            break;
        struct op_rec r;
        op_build(w, wk->thread, &rng, seq, &r);
        log_rec(w, &r);
        int rc = op_run(w, &r, vbuf);
        /* A single delete of an absent key answers CS_ENOTFOUND: acknowledged, key absent. */
        bool acked = rc == 0 || (rc == CS_ENOTFOUND && r.count == 1 && r.val[0] == 0);
        r.kind = acked ? REC_ACK : REC_FAIL;
        r.rc = rc;
        log_rec(w, &r);
        fails_in_row = acked || rc == CS_ENOTSUP ? 0 : fails_in_row + 1;
        if (w->checkpoints && wk->thread == 0 && rng_below(&rng, 200) == 0)
            if (cs_checkpoint(w->db) != 0) /* errors that matter show up in the writes */
                atomic_fetch_add(&ctx->ckpt_failures, 1);
    }
    free(vbuf);
    return NULL;
}

/* Run the workload with ctx->cfg.threads threads until each did ops_per_thread operations (or
 * w->stop when that is 0). */
void workload_run(struct workload *w)
{
    struct fault_ctx *ctx = w->ctx;
    pthread_t tid[THREADS_MAX];
    struct worker wk[THREADS_MAX];
    unsigned started = 0;
    for (unsigned t = 0; t < ctx->cfg.threads; t++) {
        wk[t].w = w;
        wk[t].thread = t;
        if (pthread_create(&tid[t], NULL, worker_main, &wk[t]) != 0)
            break;
        started++;
    }
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

struct workload *workload_new(struct fault_ctx *ctx, cs_db *db, uint64_t seed, uint32_t iteration,
                              uint32_t ops_per_thread, size_t filler_max)
{
    struct workload *w = calloc(1, sizeof(*w));
    if (!w) {
        fprintf(stderr, "cstore-fault: out of memory\n");
        exit(2);
    }
    w->ctx = ctx;
    w->db = db;
    w->log_fd = -1;
    w->seed = seed;
    w->iteration = iteration;
    w->ops_per_thread = ops_per_thread;
    w->filler_max = filler_max;
    atomic_init(&w->stop, false);
    workload_index(w);
    return w;
}

/* ---- the check after a reopen ---- */

/* Shards that cut a torn tail at open, as a bit mask; *torn_total counts them. */
uint64_t torn_mask(struct fault_ctx *ctx, cs_db *db, unsigned *torn_total)
{
    uint64_t mask = 0;
    *torn_total = 0;
    for (unsigned s = 0; s < ctx->cfg.shards; s++) {
        struct cs_shard_stats st;
        if (cs_stats(db, s, &st) == 0 && st.recovery_torn_bytes > 0) {
            mask |= 1ull << (s % 64u);
            (*torn_total)++;
        }
    }
    return mask;
}

/* Reopen without faults, check everything, close. Returns the cs_open result. */
int reopen_and_check(struct fault_ctx *ctx, const char *dir, const struct open_opts *oo,
                     bool lenient_torn, size_t filler_max)
{
    cs_db *db = NULL;
    struct open_opts plain = oo ? *oo : (struct open_opts){0};
    plain.fault = "";
    int rc = db_open(ctx, dir, &plain, &db);
    if (rc)
        return rc;
    ctx->model.stage = "check after reopen";
    unsigned torn;
    uint64_t mask = torn_mask(ctx, db, &torn);
    ctx->model.res->damage += torn;
    model_check_db(&ctx->model, db, mask, lenient_torn, true, filler_max);
    uint64_t segments = 0, recovered = 0, ckpt_lsn_min = UINT64_MAX, recovery_us = 0;
    for (unsigned s = 0; s < ctx->cfg.shards; s++) {
        struct cs_shard_stats st;
        if (cs_stats(db, s, &st) != 0)
            continue;
        segments += st.wal_segments;
        recovered += st.recovered_records;
        recovery_us += st.recovery_us;
        ckpt_lsn_min = st.checkpoint_lsn < ckpt_lsn_min ? st.checkpoint_lsn : ckpt_lsn_min;
    }
    note(ctx,
         "  reopened: %" PRIu64 " WAL segments, %" PRIu64 " records replayed in %" PRIu64
         " us, oldest shard checkpoint LSN %" PRIu64 ", %u torn tails\n",
         segments, recovered, recovery_us, ckpt_lsn_min, torn);
    rc = cs_close(db);
    if (rc)
        model_violation(&ctx->model, "close after a clean check failed: %s", cs_strerror(rc));
    return 0;
}

/* ---- folders ---- */

int remove_tree(const char *path, unsigned depth)
{
    if (depth > 4)
        return -1;
    DIR *d = opendir(path);
    if (!d)
        return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[PATH_BYTES_MAX];
        path_join(sub, sizeof(sub), path, "/", e->d_name);
        if (e->d_type == DT_DIR)
            rc |= remove_tree(sub, depth + 1);
        else
            rc |= unlink(sub);
    }
    closedir(d);
    return rc | rmdir(path);
}

/* Copy folder src (files and subfolders, depth-limited) to dst, which must not exist. */
int copy_tree(const char *src, const char *dst, unsigned depth)
{
    static char buf[1u << 16];
    if (depth > 4 || mkdir(dst, 0777) != 0)
        return -1;
    DIR *d = opendir(src);
    if (!d)
        return -1;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char from[PATH_BYTES_MAX], to[PATH_BYTES_MAX];
        path_join(from, sizeof(from), src, "/", e->d_name);
        path_join(to, sizeof(to), dst, "/", e->d_name);
        if (e->d_type == DT_DIR) {
            rc = copy_tree(from, to, depth + 1);
            continue;
        }
        int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0666);
        rc = in < 0 || out < 0 ? -1 : 0;
        for (unsigned chunks = 0; rc == 0 && chunks < (1u << 20); chunks++) {
            ssize_t n = read(in, buf, sizeof(buf));
            if (n <= 0) {
                rc = n < 0 ? -1 : 0;
                break;
            }
            rc = write(out, buf, (size_t)n) == n ? 0 : -1;
        }
        if (in >= 0)
            close(in);
        if (out >= 0 && close(out) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

/* A fresh database folder for scenario sc: <db>/<name>. One we made before (it holds our
 * marker) is removed first; any other existing path is refused. */
void scenario_dir(struct fault_ctx *ctx, enum scenario sc, char *dir, size_t size)
{
    path_join(dir, size, ctx->cfg.db, "/", scenario_names[sc]);
    char marker[PATH_BYTES_MAX];
    path_join(marker, sizeof(marker), dir, ".", "cstore-fault");
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (stat(marker, &st) != 0) {
            fprintf(stderr, "cstore-fault: %s exists and was not made by cstore-fault\n", dir);
            exit(2);
        }
        if (remove_tree(dir, 0)) {
            fprintf(stderr, "cstore-fault: cannot remove %s\n", dir);
            exit(2);
        }
    }
    FILE *f = fopen(marker, "w");
    if (!f) {
        fprintf(stderr, "cstore-fault: cannot write %s: %s\n", marker, strerror(errno));
        exit(2);
    }
    fclose(f);
}

void scenario_dir_done(struct fault_ctx *ctx, const char *dir)
{
    char marker[PATH_BYTES_MAX];
    path_join(marker, sizeof(marker), dir, ".", "cstore-fault");
    if (ctx->model.res->violations == 0 || !ctx->cfg.db_given) {
        remove_tree(dir, 0);
        unlink(marker);
    } else {
        fprintf(stderr, "cstore-fault: database kept for inspection: %s\n", dir);
    }
}

/* ---- iteration control ---- */

struct pacer pacer_for(struct fault_ctx *ctx, enum scenario sc, unsigned share)
{
    struct pacer p = {.max = ctx->cfg.iterations, .end_ms = 0};
    if (ctx->cfg.duration_s) {
        p.end_ms = now_ms() + (uint64_t)ctx->cfg.duration_s * 1000u / share;
        if (!ctx->cfg.iterations)
            p.max = 1000000u;
    } else if (!p.max) {
        p.max = scenario_default_iterations[sc];
    }
    return p;
}

bool pacer_more(const struct pacer *p, unsigned done)
{
    if (done >= p->max)
        return false;
    return p->end_ms == 0 || done == 0 || now_ms() < p->end_ms;
}

/* Start scenario sc: a fresh folder in dir (scenario_dir), its pacer for a share of --duration
 * in *p and an empty model. Returns the scenario's seeded random stream. */
struct rng scenario_begin(struct fault_ctx *ctx, enum scenario sc, unsigned share, char *dir,
                          size_t size, struct pacer *p)
{
    scenario_dir(ctx, sc, dir, size);
    struct rng rng = {mix64(ctx->cfg.seed ^ (0xc0de0000u + (unsigned)sc))};
    *p = pacer_for(ctx, sc, share);
    model_reset(&ctx->model, ctx->cfg.threads * KEYS_PER_THREAD, ctx->cfg.shards);
    return rng;
}
