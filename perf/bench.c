/* cstore-bench: throughput and latency of cstore, phase by phase.
 *
 *   cstore-bench [--engine NAME] [--db DIR] [--threads N] [--inflight K] [--keys N]
 *                [--reads N] [--key-size B] [--value-size B] [--seed S]
 *                [--durability sync|async|none] [--shards N] [--cpuset LIST]
 *                [--set NAME=VALUE]... [--phases P[:T],...] [--json]
 *
 * It opens one store, runs the phases in the order given (default fillrandom,readrandom,scan;
 * "P:T" runs phase P with T threads instead of --threads), closes the store and prints, per
 * phase: requests, wall seconds, requests per second, and the p50/p99/p99.9/max latency of a
 * request in microseconds, plus misses, wrong values and errors. --json prints the same as one
 * JSON object. The store folder is used as it is (bench.sh removes it first).
 *
 * Timing: the threads of a phase meet at a barrier, then each opens its handle (a session when
 * pipelining) and runs; the wall clock runs from the barrier to the last thread's end, so it
 * includes opening the handles (microseconds). Latency is per request (see bench_workload.c).
 * Exit status: 0; 1 when a request failed or returned a wrong value; 2 on bad options.
 * The parts of the program are described in bench.h. */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PHASES_MAX 32u      /* phases in --phases */
#define DESCRIBE_BYTES 256u /* engine description */

static const struct bench_engine *const bench_engines[] = {
    &bench_engine_cstore,
};

/* A phase to run and, once run, its figures. */
struct phase {
    const struct bench_workload *workload;
    unsigned threads;       /* threads it runs with */
    uint64_t wall_ns;       /* barrier to last thread's end */
    uint64_t ops;           /* requests completed, all threads */
    uint64_t misses;        /* gets that found nothing */
    uint64_t mismatches;    /* wrong values or key order */
    uint64_t errors;        /* failed requests */
    int first_error;        /* first failure's code, or 0 */
    struct bench_hist hist; /* latency of every request */
};

struct worker_arg {
    struct bench_worker w;
    const struct bench_workload *workload;
    pthread_barrier_t *start;
    pthread_t tid;
    int rc; /* the workload's return */
};

static const char bench_usage[] =
    "usage: cstore-bench [OPTIONS]\n"
    "  --engine NAME          engine to measure (cstore)\n"
    "  --db DIR               store folder (default ./data/bench; used as it is)\n"
    "  --threads N            threads per phase (default 4)\n"
    "  --inflight K           requests in flight per thread; 1 = blocking calls (default 1)\n"
    "  --keys N               records written by fillrandom (default 100000)\n"
    "  --reads N              gets done by readrandom (default: --keys)\n"
    "  --key-size B           bytes per key, 8..1024 (default 16)\n"
    "  --value-size B         bytes per value (default 100)\n"
    "  --seed S               key generator seed (default 1)\n"
    "  --durability MODE      sync | async | none (default: the engine's, sync for cstore)\n"
    "  --shards N, --cpuset LIST, --set NAME=VALUE   engine options\n"
    "  --phases LIST          comma-separated PHASE[:THREADS] (default\n"
    "                         fillrandom,readrandom,scan); phases: fillrandom, readrandom, scan\n"
    "  --json                 print one JSON object instead of a table\n";

static int bench_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "cstore-bench: %s '%s'\n%s", what, arg, bench_usage);
    return 2;
}

/* Whole decimal number in [lo, hi]; 0 on success. */
BENCH_MUST_CHECK static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Parse "P[:T],..." into phases; threads default to def_threads. */
BENCH_MUST_CHECK static int parse_phases(char *list, unsigned def_threads, struct phase *phases,
                                         unsigned *count)
{
    unsigned n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (n == PHASES_MAX)
            return bench_usage_error("too many phases at", tok);
        char *colon = strchr(tok, ':');
        uint64_t threads = def_threads;
        if (colon != NULL) {
            *colon = '\0';
            if (parse_u64(colon + 1, 1, BENCH_THREADS_MAX, &threads) != 0)
                return bench_usage_error("bad thread count in phase", tok);
        }
        const struct bench_workload *wl = bench_workload_find(tok);
        if (wl == NULL)
            return bench_usage_error("unknown phase", tok);
        memset(&phases[n], 0, sizeof(phases[n]));
        phases[n].workload = wl;
        phases[n].threads = wl->single_thread ? 1 : (unsigned)threads;
        n++;
    }
    if (n == 0)
        return bench_usage_error("no phases in", "");
    *count = n;
    return 0;
}

struct bench_args {
    struct bench_config cfg;
    const struct bench_engine *engine;
    char *phase_list; /* --phases, owned */
    int json;
    int reads_given;
};

BENCH_MUST_CHECK static int parse_args(int argc, char **argv, struct bench_args *a)
{
    struct bench_config *c = &a->cfg;
    c->engine = "cstore";
    c->db_path = "./data/bench";
    c->threads = 4;
    c->inflight = 1;
    c->keys = 100000;
    c->key_bytes = 16;
    c->value_bytes = 100;
    c->seed = 1;
    const char *phases = "fillrandom,readrandom,scan";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            fputs(bench_usage, stdout);
            exit(0);
        }
        if (i + 1 >= argc)
            return bench_usage_error("missing value or unknown option", o);
        const char *v = argv[++i];
        uint64_t n = 0;
        int bad = 0;
        if (strcmp(o, "--engine") == 0)
            c->engine = v;
        else if (strcmp(o, "--db") == 0)
            c->db_path = v;
        else if (strcmp(o, "--durability") == 0)
            c->durability = v;
        else if (strcmp(o, "--shards") == 0)
            c->shards = v;
        else if (strcmp(o, "--cpuset") == 0)
            c->cpuset = v;
        else if (strcmp(o, "--phases") == 0)
            phases = v;
        else if (strcmp(o, "--set") == 0) {
            if (c->set_count == BENCH_SETS_MAX)
                return bench_usage_error("too many --set at", v);
            c->sets[c->set_count++] = v;
        } else if (strcmp(o, "--threads") == 0) {
            bad = parse_u64(v, 1, BENCH_THREADS_MAX, &n);
            c->threads = (unsigned)n;
        } else if (strcmp(o, "--inflight") == 0) {
            bad = parse_u64(v, 1, BENCH_INFLIGHT_MAX, &n);
            c->inflight = (unsigned)n;
        } else if (strcmp(o, "--keys") == 0) {
            bad = parse_u64(v, 0, UINT64_MAX / 2, &c->keys);
        } else if (strcmp(o, "--reads") == 0) {
            bad = parse_u64(v, 0, UINT64_MAX / 2, &c->reads);
            a->reads_given = 1;
        } else if (strcmp(o, "--key-size") == 0) {
            bad = parse_u64(v, BENCH_KEY_BYTES_MIN, BENCH_KEY_BYTES_MAX, &n);
            c->key_bytes = (unsigned)n;
        } else if (strcmp(o, "--value-size") == 0) {
            bad = parse_u64(v, 0, BENCH_VALUE_BYTES_MAX, &n);
            c->value_bytes = (unsigned)n;
        } else if (strcmp(o, "--seed") == 0) {
            bad = parse_u64(v, 0, UINT64_MAX, &c->seed);
        } else {
            return bench_usage_error("unknown option", o);
        }
        if (bad)
            return bench_usage_error(o, v);
    }
    if (!a->reads_given)
        c->reads = c->keys;
    if ((uint64_t)c->inflight * (c->key_bytes + c->value_bytes) > (1ull << 30))
        return bench_usage_error("--inflight times record size is over 1 GiB:", "--inflight");
    a->engine = NULL;
    for (size_t i = 0; i < sizeof(bench_engines) / sizeof(bench_engines[0]); i++)
        if (strcmp(bench_engines[i]->name, c->engine) == 0)
            a->engine = bench_engines[i];
    if (a->engine == NULL)
        return bench_usage_error("unknown engine", c->engine);
    a->phase_list = strdup(phases);
    if (a->phase_list == NULL)
        return bench_usage_error("out of memory", phases);
    return 0;
}

static void *worker_main(void *p)
{
    struct worker_arg *arg = p;
    pthread_barrier_wait(arg->start);
    arg->rc = arg->workload->run(&arg->w);
    return NULL;
}

/* Run one phase: its threads start together; the wall clock covers them all. */
BENCH_MUST_CHECK static int run_phase(const struct bench_engine *e, const struct bench_config *cfg,
                                      void *store, struct phase *ph)
{
    struct worker_arg *args = calloc(ph->threads, sizeof(*args));
    if (args == NULL)
        return -ENOMEM;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, ph->threads + 1);
    unsigned started = 0;
    int rc = 0;
    for (; started < ph->threads; started++) {
        struct worker_arg *a = &args[started];
        a->w.engine = e;
        a->w.cfg = cfg;
        a->w.store = store;
        a->w.index = started;
        a->w.count = ph->threads;
        bench_hist_init(&a->w.hist);
        a->workload = ph->workload;
        a->start = &start;
        rc = -pthread_create(&a->tid, NULL, worker_main, a);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        /* The started threads wait at a barrier that can no longer fill: give up. */
        fprintf(stderr, "cstore-bench: cannot start thread %u: %s\n", started, strerror(-rc));
        exit(1);
    }
    pthread_barrier_wait(&start);
    uint64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < ph->threads; i++)
        pthread_join(args[i].tid, NULL);
    ph->wall_ns = bench_now_ns() - t0;
    pthread_barrier_destroy(&start);
    bench_hist_init(&ph->hist);
    for (unsigned i = 0; i < ph->threads; i++) {
        const struct bench_worker *w = &args[i].w;
        bench_hist_merge(&ph->hist, &w->hist);
        ph->ops += w->ops;
        ph->misses += w->misses;
        ph->mismatches += w->mismatches;
        ph->errors += w->errors;
        if (ph->first_error == 0)
            ph->first_error = w->first_error;
        if (args[i].rc != 0) {
            ph->errors++;
            if (ph->first_error == 0)
                ph->first_error = args[i].rc;
        }
    }
    free(args);
    return 0;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static double phase_rate(const struct phase *ph)
{
    return ph->wall_ns > 0 ? (double)ph->ops * 1e9 / (double)ph->wall_ns : 0.0;
}

static void report_text(const struct bench_args *a, const char *desc, const struct phase *ph,
                        unsigned n, uint64_t open_ns, uint64_t close_ns)
{
    const struct bench_config *c = &a->cfg;
    printf("cstore-bench: %s; db %s; durability %s; %llu keys of %u B, values %u B; "
           "inflight %u per thread\n",
           desc, c->db_path, c->durability != NULL ? c->durability : "default",
           (unsigned long long)c->keys, c->key_bytes, c->value_bytes, c->inflight);
    printf("%-11s %7s %10s %8s %11s %9s %9s %9s %9s %s\n", "phase", "threads", "ops", "secs",
           "ops/s", "p50_us", "p99_us", "p99.9_us", "max_us", "notes");
    for (unsigned i = 0; i < n; i++) {
        const struct phase *p = &ph[i];
        printf("%-11s %7u %10llu %8.3f %11.0f %9.2f %9.2f %9.2f %9.2f", p->workload->name,
               p->threads, (unsigned long long)p->ops, (double)p->wall_ns / 1e9, phase_rate(p),
               us(bench_hist_quantile_ns(&p->hist, 0.50)),
               us(bench_hist_quantile_ns(&p->hist, 0.99)),
               us(bench_hist_quantile_ns(&p->hist, 0.999)), us(p->hist.max_ns));
        if (p->misses)
            printf(" misses=%llu", (unsigned long long)p->misses);
        if (p->mismatches)
            printf(" WRONG=%llu", (unsigned long long)p->mismatches);
        if (p->errors)
            printf(" ERRORS=%llu (%s)", (unsigned long long)p->errors,
                   a->engine->strerror(p->first_error));
        putchar('\n');
    }
    printf("open %.1f ms, close %.1f ms\n", (double)open_ns / 1e6, (double)close_ns / 1e6);
}

/* Print s as a JSON string (the strings here are option values and error texts). */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void report_json(const struct bench_args *a, const char *desc, const struct phase *ph,
                        unsigned n, uint64_t open_ns, uint64_t close_ns)
{
    const struct bench_config *c = &a->cfg;
    printf("{\"engine\": ");
    json_string(c->engine);
    printf(", \"describe\": ");
    json_string(desc);
    printf(", \"db\": ");
    json_string(c->db_path);
    printf(", \"durability\": ");
    json_string(c->durability != NULL ? c->durability : "default");
    printf(", \"keys\": %llu, \"reads\": %llu, \"key_bytes\": %u, \"value_bytes\": %u, "
           "\"inflight\": %u, \"seed\": %llu, \"open_ms\": %.3f, \"close_ms\": %.3f, "
           "\"phases\": [",
           (unsigned long long)c->keys, (unsigned long long)c->reads, c->key_bytes, c->value_bytes,
           c->inflight, (unsigned long long)c->seed, (double)open_ns / 1e6, (double)close_ns / 1e6);
    for (unsigned i = 0; i < n; i++) {
        const struct phase *p = &ph[i];
        printf("%s\n  {\"name\": \"%s\", \"threads\": %u, \"ops\": %llu, \"seconds\": %.6f, "
               "\"ops_per_sec\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, "
               "\"max_us\": %.2f, \"mean_us\": %.2f, \"misses\": %llu, \"mismatches\": %llu, "
               "\"errors\": %llu, \"first_error\": ",
               i ? "," : "", p->workload->name, p->threads, (unsigned long long)p->ops,
               (double)p->wall_ns / 1e9, phase_rate(p), us(bench_hist_quantile_ns(&p->hist, 0.50)),
               us(bench_hist_quantile_ns(&p->hist, 0.99)),
               us(bench_hist_quantile_ns(&p->hist, 0.999)), us(p->hist.max_ns),
               p->hist.count ? us(p->hist.sum_ns / p->hist.count) : 0.0,
               (unsigned long long)p->misses, (unsigned long long)p->mismatches,
               (unsigned long long)p->errors);
        if (p->first_error != 0)
            json_string(a->engine->strerror(p->first_error));
        else
            printf("null");
        putchar('}');
    }
    printf("]}\n");
}

int main(int argc, char **argv)
{
    struct bench_args a;
    memset(&a, 0, sizeof(a));
    int ex = parse_args(argc, argv, &a);
    if (ex != 0)
        return ex;
    struct phase *phases = calloc(PHASES_MAX, sizeof(*phases));
    unsigned nphases = 0;
    if (phases == NULL) {
        fputs("cstore-bench: out of memory\n", stderr);
        return 1;
    }
    ex = parse_phases(a.phase_list, a.cfg.threads, phases, &nphases);
    if (ex != 0)
        return ex;

    const struct bench_engine *e = a.engine;
    void *store = NULL;
    uint64_t t0 = bench_now_ns();
    int rc = e->open(&a.cfg, &store);
    uint64_t open_ns = bench_now_ns() - t0;
    if (rc != 0) {
        fprintf(stderr, "cstore-bench: cannot open %s store '%s': %s\n", e->name, a.cfg.db_path,
                e->strerror(rc));
        return 1;
    }
    char desc[DESCRIBE_BYTES] = "";
    if (e->describe != NULL)
        e->describe(store, desc, sizeof(desc));
    else
        snprintf(desc, sizeof(desc), "%s", e->name);

    for (unsigned i = 0; i < nphases; i++) {
        if (!a.json)
            fprintf(stderr, "cstore-bench: %s, %u thread(s)...\n", phases[i].workload->name,
                    phases[i].threads);
        rc = run_phase(e, &a.cfg, store, &phases[i]);
        if (rc != 0) {
            fprintf(stderr, "cstore-bench: phase %s: %s\n", phases[i].workload->name,
                    strerror(-rc));
            return 1;
        }
    }
    t0 = bench_now_ns();
    rc = e->close(store);
    uint64_t close_ns = bench_now_ns() - t0;
    if (rc != 0)
        fprintf(stderr, "cstore-bench: close: %s\n", e->strerror(rc));

    if (a.json)
        report_json(&a, desc, phases, nphases, open_ns, close_ns);
    else
        report_text(&a, desc, phases, nphases, open_ns, close_ns);
    ex = rc != 0 ? 1 : 0;
    for (unsigned i = 0; i < nphases; i++)
        if (phases[i].errors || phases[i].mismatches)
            ex = 1;
    free(phases);
    free(a.phase_list);
    return ex;
}
