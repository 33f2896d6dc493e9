/* cstore-bench: throughput and latency of cstore and its peers, phase by phase.
 *
 *   cstore-bench --engine cstore|rocksdb|lmdb|sqlite --workload W[,W...] [--threads N]
 *                [--inflight K] [--keys N] [--key-size B] [--value-size B]
 *                [--durability sync|async|none] [--ops N | --duration S] [--rate R]
 *                [--shards N] [--cpuset LIST] [--db DIR] [--json] [more: see --help]
 *
 * It measures the machine's two floors first, in the store folder (same filesystem), one small
 * write + fdatasync at a time: overwriting a block of a file written in full before (what a
 * preallocated log such as cstore's pays) and appending to a growing file (what RocksDB's and
 * SQLite's logs pay: the size changes, so the inode is written too). Then it opens one store,
 * runs the phases in order, closes the store, measures both floors again and prints, per phase:
 * requests, wall seconds, requests per second, p50/p99/p99.9/max latency of a request in
 * microseconds, CPU seconds of the process (getrusage, all threads) and CPU microseconds per
 * request, peak RSS, the anonymous and file-backed resident bytes (RssAnon, RssFile of
 * /proc/self/status: a memory-mapped store such as LMDB's shows in RssFile, heap in RssAnon),
 * RssAnon grown since before the open divided by the records held (bytes per record), the
 * bytes the store folder takes on disk, plus misses, wrong values and errors. --json prints
 * one JSON object per measured phase, one per line. The store folder is used as it is
 * (bench.sh removes it first).
 *
 * Phases: --workload W runs W, preceded by an unmeasured load phase (fillrandom of --keys
 * records, --load-threads threads, --load-inflight requests in flight for engines that
 * pipeline, --load-batch writes per commit for engines with transactions) when W reads what is
 * there. --phases P[:T],... (the older form) runs each phase as given and measures them all.
 *
 * Timing: each thread of a phase opens its handle (a session when pipelining, a connection,
 * a transaction handle) and meets the others at a first barrier; the main thread then reads the
 * clock and releases a second barrier, so the wall clock covers the requests (and waking the
 * threads), not starting them or opening handles. It stops when the last thread ends or, with
 * --persist on a write phase, when the engine's persist call (everything on disk) returns.
 * --warmup S runs each measured non-fill phase for S seconds first, unmeasured; --duration does
 * not stop a fill phase, which writes every key. After the load phase of
 * --workload (and, with --settle, after every measured write phase that another phase
 * follows), an engine with a settle step (RocksDB: flush and compact) runs it, unmeasured, so
 * that reads see the store in its steady state: --workload fillrandom:1,readrandom:2 --persist
 * --settle measures a load and then reads of what it loaded. Latency is per request (see
 * bench_workload.c). Transactional phases (transfer, or --txn N) report the transactions they
 * committed, the attempts that conflicted and were retried (aborts) and the abort rate, aborts /
 * (commits + aborts); a workload with an invariant (transfer: the sum of the balances) has it
 * computed before and after each of its runs, unmeasured, and a change counts as a wrong value.
 * Exit status: 0; 1 when a request failed or returned a wrong value; 2 on bad options. The parts
 * of the program are described in bench.h. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define PHASES_MAX 32u          /* phases in --phases or --workload */
#define DESCRIBE_BYTES 2048u    /* engine description */
#define FLOOR_OPS_MAX 100000u   /* --floor-ops */
#define FLOOR_FILE_BYTES 65536u /* the floor file, written once before timing */
#define PATH_BYTES 4096u        /* paths built from --db */
#define ZIPF_THETA_MAX 0.9999   /* the zipfian generator needs theta < 1 */
#define DU_FDS_MAX 16           /* nftw's open folders while summing the store's disk bytes */
#define PHASE_NOTE_BYTES 256u   /* the engine's note after a phase */

static const struct bench_engine *const bench_engines[] = {
    &bench_engine_cstore,
#ifdef BENCH_HAVE_ROCKSDB
    &bench_engine_rocksdb,
#endif
#ifdef BENCH_HAVE_LMDB
    &bench_engine_lmdb,
#endif
#ifdef BENCH_HAVE_SQLITE
    &bench_engine_sqlite,
#endif
};

/* A phase to run and, once run, its figures. */
struct phase {
    const struct bench_workload *workload;
    unsigned threads;            /* threads it runs with */
    unsigned depth;              /* requests in flight per thread it asks for */
    unsigned batch;              /* writes per commit it asks for */
    int measured;                /* reported in --json (the load phase is not) */
    uint64_t wall_ns;            /* barrier to last thread's end */
    uint64_t ops;                /* requests completed, all threads */
    uint64_t misses;             /* gets that found nothing */
    uint64_t mismatches;         /* wrong values or key order */
    uint64_t errors;             /* failed requests */
    int first_error;             /* first failure's code, or 0 */
    int txn;                     /* runs transactions (bench_workload_txn) */
    uint64_t commits;            /* transactions committed */
    uint64_t aborts;             /* transaction attempts retried after a conflict */
    double cpu_s;                /* user + system CPU seconds of the process during the phase */
    uint64_t rss_peak_bytes;     /* peak RSS of the process at the phase's end */
    uint64_t rss_bytes;          /* RSS at the phase's end */
    uint64_t rss_anon_bytes;     /* RssAnon at the phase's end */
    uint64_t rss_file_bytes;     /* RssFile at the phase's end */
    uint64_t disk_bytes;         /* bytes the store folder takes on disk at the phase's end */
    uint64_t persist_ns;         /* --persist: the engine's persist call, inside wall_ns */
    uint64_t warmup_ops;         /* requests of the unmeasured warm-up run */
    uint64_t records;            /* records the store holds at the phase's end (as far as known) */
    char note[PHASE_NOTE_BYTES]; /* the engine's phase_note after the phase, or "" */
    struct bench_shared shared;
    struct bench_hist hist; /* latency of every request */
};

struct worker_arg {
    struct bench_worker w;
    const struct bench_workload *workload;
    pthread_t tid;
    int rc; /* the workload's return */
};

static const char bench_usage[] =
    "usage: cstore-bench [OPTIONS]\n"
    "  --engine NAME          cstore, rocksdb, lmdb or sqlite (see the list below; default\n"
    "                         cstore)\n"
    "  --workload W[,W...]    phases to measure, after a load phase when the first reads\n"
    "                         fillseq fillrandom overwrite readrandom seekrandom deleterandom\n"
    "                         scan ycsb-a ycsb-b ycsb-c ycsb-d ycsb-e ycsb-f\n"
    "  --phases P[:T],...     phases to run and measure as given (default\n"
    "                         fillrandom,readrandom,scan); T = threads of that phase\n"
    "  --db DIR               store folder (default ./data/bench; used as it is)\n"
    "  --threads N            threads per phase (default 4)\n"
    "  --inflight K           requests in flight per thread; 1 = blocking calls (default 1);\n"
    "                         only engines with asynchronous calls (cstore sessions) pipeline\n"
    "  --keys N               records loaded; the key space (default 100000)\n"
    "  --ops N                requests of each non-fill phase, all threads (default --keys);\n"
    "                         --reads is the same\n"
    "  --duration S           stop each phase after S seconds (decimals allowed); a fill\n"
    "                         phase writes every key regardless\n"
    "  --rate R               open loop at R requests/s over all threads; latency counts from\n"
    "                         each request's intended start\n"
    "  --key-size B           bytes per key, 8..1024 (default 16)\n"
    "  --value-size B         bytes per value (default 100)\n"
    "  --scan-length N        records read per seek (seekrandom; ycsb-e draws 1..N) (100)\n"
    "  --zipf THETA           zipfian constant of the ycsb workloads (default 0.99)\n"
    "  --batch N              writes per commit (default 1): a transaction of the peers; for\n"
    "                         cstore (blocking calls) one cs_batch per shard, written at N\n"
    "                         operations (at most 65536)\n"
    "  --txn N                every N consecutive requests of a thread are one transaction\n"
    "                         (overwrite readrandom seekrandom ycsb-a..d ycsb-f; 1..64): reads\n"
    "                         and writes inside it, conflicts retried and counted as aborts;\n"
    "                         without writes a read-only one (seekrandom --txn 1: each seek in\n"
    "                         a snapshot). transfer is always transactional\n"
    "  --cross-shard          transfer: its two records on different shards (cstore)\n"
    "  --load-threads N, --load-inflight K, --load-batch N\n"
    "                         the load phase (defaults --threads, 64, 1000)\n"
    "  --seed S               key generator seed (default 1)\n"
    "  --durability MODE      sync | async | none (default: the engine's, sync for cstore)\n"
    "  --persist              write phases end with the engine's persist (all on disk), timed\n"
    "  --settle               the engine's settle step (RocksDB: flush and compact) after every\n"
    "                         measured write phase that another phase follows, unmeasured\n"
    "  --warmup S             run each measured read or mixed phase S seconds first, unmeasured\n"
    "  --values KIND          random (default: incompressible, a PRNG seeded by the record index)\n"
    "                         or compressible (about 2:1)\n"
    "  --shards N, --cpuset LIST, --set NAME=VALUE   cstore options (cs_options_set names);\n"
    "                         for peers --cpuset pins the whole process; rocksdb takes --set\n"
    "                         allow_concurrent_memtable_write=true|false, table=plain,\n"
    "                         block_cache=SIZE (K, M, G) and txn=pessimistic|optimistic|none\n"
    "                         (TransactionDB, OptimisticTransactionDB or a plain DB; default\n"
    "                         pessimistic when a phase writes in transactions, else none)\n"
    "  --floor-ops N          write+fdatasync samples of each floor (default 200; 0 = skip)\n"
    "  --json                 one JSON object per measured phase instead of a table\n";

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

/* Decimal number in [lo, hi]; 0 on success. */
BENCH_MUST_CHECK static int parse_double(const char *s, double lo, double hi, double *out)
{
    if ((*s < '0' || *s > '9') && *s != '.')
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= lo) || !(v <= hi))
        return -1;
    *out = v;
    return 0;
}

struct bench_args {
    struct bench_config cfg;
    const struct bench_engine *engine;
    char *phase_list;       /* --phases or --workload, owned */
    int workload_mode;      /* phase_list came from --workload */
    int json;               /* --json */
    unsigned batch;         /* --batch */
    unsigned load_threads;  /* --load-threads; 0 = --threads */
    unsigned load_inflight; /* --load-inflight */
    unsigned load_batch;    /* --load-batch */
    unsigned floor_ops;     /* --floor-ops */
};

/* Parse "P[:T],..." into phases; see the file comment for --workload's load phase. */
BENCH_MUST_CHECK static int parse_phases(const struct bench_args *a, struct phase *phases,
                                         unsigned *count)
{
    unsigned n = 0;
    const struct bench_config *c = &a->cfg;
    char *list = a->phase_list;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (n + 1 >= PHASES_MAX)
            return bench_usage_error("too many phases at", tok);
        char *colon = strchr(tok, ':');
        uint64_t threads = c->threads;
        if (colon != NULL) {
            *colon = '\0';
            if (parse_u64(colon + 1, 1, BENCH_THREADS_MAX, &threads) != 0)
                return bench_usage_error("bad thread count in phase", tok);
        }
        const struct bench_workload *wl = bench_workload_find(tok);
        if (wl == NULL)
            return bench_usage_error("unknown workload", tok);
        if (n == 0 && a->workload_mode && wl->needs_load) {
            memset(&phases[n], 0, sizeof(phases[n]));
            phases[n].workload = bench_workload_find("fillrandom");
            phases[n].threads = a->load_threads != 0 ? a->load_threads : c->threads;
            phases[n].depth = a->load_inflight;
            phases[n].batch = a->load_batch;
            n++;
        }
        memset(&phases[n], 0, sizeof(phases[n]));
        phases[n].workload = wl;
        phases[n].threads = wl->single_thread ? 1 : (unsigned)threads;
        phases[n].depth = wl->blocking_only ? 1 : c->inflight;
        phases[n].batch = a->batch;
        phases[n].measured = 1;
        n++;
    }
    if (n == 0)
        return bench_usage_error("no phases in", "");
    *count = n;
    return 0;
}

/* Options that take a number; returns 0, or -1 when o is not one of them, or 2 on a bad value. */
static int parse_number_option(struct bench_args *a, const char *o, const char *v)
{
    struct bench_config *c = &a->cfg;
    uint64_t n = 0;
    double d = 0.0;
    int bad = 0;
    if (strcmp(o, "--threads") == 0) {
        bad = parse_u64(v, 1, BENCH_THREADS_MAX, &n);
        c->threads = (unsigned)n;
    } else if (strcmp(o, "--inflight") == 0) {
        bad = parse_u64(v, 1, BENCH_INFLIGHT_MAX, &n);
        c->inflight = (unsigned)n;
    } else if (strcmp(o, "--keys") == 0) {
        bad = parse_u64(v, 0, UINT64_MAX / 4, &c->keys);
    } else if (strcmp(o, "--ops") == 0 || strcmp(o, "--reads") == 0) {
        bad = parse_u64(v, 0, UINT64_MAX / 4, &c->ops);
    } else if (strcmp(o, "--duration") == 0) {
        bad = parse_double(v, 0.001, 1e6, &d);
        c->duration_ns = (uint64_t)(d * 1e9);
    } else if (strcmp(o, "--rate") == 0) {
        bad = parse_double(v, 0.001, 1e9, &c->rate);
    } else if (strcmp(o, "--key-size") == 0) {
        bad = parse_u64(v, BENCH_KEY_BYTES_MIN, BENCH_KEY_BYTES_MAX, &n);
        c->key_bytes = (unsigned)n;
    } else if (strcmp(o, "--value-size") == 0) {
        bad = parse_u64(v, 0, BENCH_VALUE_BYTES_MAX, &n);
        c->value_bytes = (unsigned)n;
    } else if (strcmp(o, "--scan-length") == 0) {
        bad = parse_u64(v, 1, BENCH_SCAN_LENGTH_MAX, &n);
        c->scan_length = (unsigned)n;
    } else if (strcmp(o, "--zipf") == 0) {
        bad = parse_double(v, 0.0, ZIPF_THETA_MAX, &c->zipf_theta);
    } else if (strcmp(o, "--batch") == 0) {
        bad = parse_u64(v, 1, BENCH_BATCH_MAX, &n);
        a->batch = (unsigned)n;
        c->batch = (unsigned)n;
    } else if (strcmp(o, "--txn") == 0) {
        bad = parse_u64(v, 1, BENCH_TXN_OPS_MAX, &n);
        c->txn_ops = (unsigned)n;
    } else if (strcmp(o, "--warmup") == 0) {
        bad = parse_double(v, 0.0, 1e6, &d);
        c->warmup_ns = (uint64_t)(d * 1e9);
    } else if (strcmp(o, "--load-threads") == 0) {
        bad = parse_u64(v, 1, BENCH_THREADS_MAX, &n);
        a->load_threads = (unsigned)n;
    } else if (strcmp(o, "--load-inflight") == 0) {
        bad = parse_u64(v, 1, BENCH_INFLIGHT_MAX, &n);
        a->load_inflight = (unsigned)n;
    } else if (strcmp(o, "--load-batch") == 0) {
        bad = parse_u64(v, 1, BENCH_BATCH_MAX, &n);
        a->load_batch = (unsigned)n;
    } else if (strcmp(o, "--floor-ops") == 0) {
        bad = parse_u64(v, 0, FLOOR_OPS_MAX, &n);
        a->floor_ops = (unsigned)n;
    } else if (strcmp(o, "--seed") == 0) {
        bad = parse_u64(v, 0, UINT64_MAX, &c->seed);
    } else {
        return -1;
    }
    return bad ? bench_usage_error(o, v) : 0;
}

static void set_defaults(struct bench_args *a)
{
    struct bench_config *c = &a->cfg;
    c->engine = "cstore";
    c->db_path = "./data/bench";
    c->threads = 4;
    c->inflight = 1;
    c->keys = 100000;
    c->ops = UINT64_MAX;
    c->key_bytes = 16;
    c->value_bytes = 100;
    c->scan_length = 100;
    c->zipf_theta = 0.99;
    c->seed = 1;
    a->batch = 1;
    c->batch = 1;
    a->load_inflight = 64;
    a->load_batch = 1000;
    a->floor_ops = 200;
}

BENCH_MUST_CHECK static int parse_args(int argc, char **argv, struct bench_args *a)
{
    struct bench_config *c = &a->cfg;
    set_defaults(a);
    const char *phases = "fillrandom,readrandom,scan";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (strcmp(o, "--persist") == 0) {
            c->persist = 1;
            continue;
        }
        if (strcmp(o, "--settle") == 0) {
            c->settle = 1;
            continue;
        }
        if (strcmp(o, "--cross-shard") == 0) {
            c->cross_shard = 1;
            continue;
        }
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            fputs(bench_usage, stdout);
            fputs("engines built in:", stdout);
            for (size_t k = 0; k < sizeof(bench_engines) / sizeof(bench_engines[0]); k++)
                printf(" %s", bench_engines[k]->name);
            putchar('\n');
            exit(0);
        }
        if (i + 1 >= argc)
            return bench_usage_error("missing value or unknown option", o);
        const char *v = argv[++i];
        int num = parse_number_option(a, o, v);
        if (num >= 0) {
            if (num != 0)
                return num;
        } else if (strcmp(o, "--engine") == 0) {
            c->engine = v;
        } else if (strcmp(o, "--db") == 0) {
            c->db_path = v;
        } else if (strcmp(o, "--durability") == 0) {
            if (strcmp(v, "sync") != 0 && strcmp(v, "async") != 0 && strcmp(v, "none") != 0)
                return bench_usage_error("--durability", v);
            c->durability = v;
        } else if (strcmp(o, "--values") == 0) {
            if (strcmp(v, "random") != 0 && strcmp(v, "compressible") != 0)
                return bench_usage_error("--values", v);
            c->compressible = strcmp(v, "compressible") == 0;
        } else if (strcmp(o, "--shards") == 0) {
            c->shards = v;
        } else if (strcmp(o, "--cpuset") == 0) {
            c->cpuset = v;
        } else if (strcmp(o, "--phases") == 0) {
            phases = v;
            a->workload_mode = 0;
        } else if (strcmp(o, "--workload") == 0) {
            phases = v;
            a->workload_mode = 1;
        } else if (strcmp(o, "--set") == 0) {
            if (c->set_count == BENCH_SETS_MAX)
                return bench_usage_error("too many --set at", v);
            c->sets[c->set_count++] = v;
        } else {
            return bench_usage_error("unknown option", o);
        }
    }
    if (c->ops == UINT64_MAX)
        c->ops = c->duration_ns != 0 ? UINT64_MAX / 4 : c->keys;
    if ((uint64_t)c->inflight * (c->key_bytes + c->value_bytes) > (1ull << 30))
        return bench_usage_error("--inflight times record size is over 1 GiB:", "--inflight");
    a->engine = NULL;
    for (size_t i = 0; i < sizeof(bench_engines) / sizeof(bench_engines[0]); i++)
        if (strcmp(bench_engines[i]->name, c->engine) == 0)
            a->engine = bench_engines[i];
    if (a->engine == NULL)
        return bench_usage_error("unknown engine (or not built in)", c->engine);
    a->phase_list = strdup(phases);
    if (a->phase_list == NULL)
        return bench_usage_error("out of memory", phases);
    return 0;
}

/* Pin the process to a CPU list such as "0-3,6" (peers: cstore pins its shards itself). */
BENCH_MUST_CHECK static int pin_process(const char *list)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    const char *p = list;
    for (unsigned guard = 0; *p != '\0' && guard < CPU_SETSIZE; guard++) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p || lo < 0 || lo >= CPU_SETSIZE)
            return -EINVAL;
        p = end;
        if (*p == '-') {
            hi = strtol(p + 1, &end, 10);
            if (end == p + 1 || hi < lo || hi >= CPU_SETSIZE)
                return -EINVAL;
            p = end;
        }
        for (long cpu = lo; cpu <= hi; cpu++)
            CPU_SET((int)cpu, &set);
        if (*p == ',')
            p++;
        else if (*p != '\0')
            return -EINVAL;
    }
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

void bench_worker_start(struct bench_worker *w)
{
    if (w->started)
        return;
    w->started = 1;
    pthread_barrier_wait(w->ready);
    pthread_barrier_wait(w->go);
}

static void *worker_main(void *p)
{
    struct worker_arg *arg = p;
    arg->rc = arg->workload->run(&arg->w);
    bench_worker_start(&arg->w); /* a workload that failed before it started */
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t rss_peak_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024u;
}

/* The RssAnon and RssFile lines of /proc/self/status, in bytes (0 when absent). */
static void rss_split_bytes(uint64_t *anon, uint64_t *file)
{
    *anon = 0;
    *file = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return;
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "RssAnon: %llu kB", &kb) == 1)
            *anon = (uint64_t)kb * 1024u;
        else if (sscanf(line, "RssFile: %llu kB", &kb) == 1)
            *file = (uint64_t)kb * 1024u;
    }
    fclose(f);
}

/* nftw has no user pointer: the running sum of du_bytes (main thread only). */
static uint64_t du_sum;

static int du_add(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (type == FTW_F)
        du_sum += (uint64_t)st->st_blocks * 512u;
    return 0;
}

/* Bytes the files under dir take on disk (allocated blocks, so sparse files count what they
 * hold); 0 when it cannot be walked. */
static uint64_t du_bytes(const char *dir)
{
    du_sum = 0;
    if (nftw(dir, du_add, DU_FDS_MAX, FTW_PHYS) != 0)
        return 0;
    return du_sum;
}

/* Resident bytes now, from /proc/self/statm (0 when it cannot be read). */
static uint64_t rss_now_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void phase_collect(struct phase *ph, const struct worker_arg *args)
{
    bench_hist_init(&ph->hist);
    for (unsigned i = 0; i < ph->threads; i++) {
        const struct bench_worker *w = &args[i].w;
        bench_hist_merge(&ph->hist, &w->hist);
        ph->ops += w->ops;
        ph->misses += w->misses;
        ph->mismatches += w->mismatches;
        ph->errors += w->errors;
        ph->commits += w->commits;
        ph->aborts += w->aborts;
        if (ph->first_error == 0)
            ph->first_error = w->first_error;
        if (args[i].rc != 0) {
            ph->errors++;
            if (ph->first_error == 0)
                ph->first_error = args[i].rc;
        }
    }
}

/* After a phase (or its warm-up) of a workload with an invariant: compute it again, unmeasured,
 * and count a change from before (the value before) as a wrong value of the phase. Returns 0,
 * or the error of the scan that computes it. */
BENCH_MUST_CHECK static int phase_check_invariant(const struct bench_engine *e,
                                                  const struct bench_config *cfg, void *store,
                                                  struct phase *ph, uint64_t before)
{
    if (ph->workload->invariant == NULL)
        return 0;
    uint64_t after = 0;
    int rc = ph->workload->invariant(e, cfg, store, &after);
    if (rc != 0)
        return rc;
    if (after != before) {
        fprintf(stderr, "cstore-bench: %s %s: the invariant changed (%llx before, %llx after)\n",
                e->name, ph->workload->name, (unsigned long long)before, (unsigned long long)after);
        ph->mismatches++;
    }
    return 0;
}

/* Run one phase: its threads open their handles, then start together on the clock; the wall
 * clock covers them all (and, with cfg->persist on a write phase, the engine's persist).
 * warmup: an unmeasured run of warmup_ns instead (its requests go to ph->warmup_ops only). */
BENCH_MUST_CHECK static int run_phase(const struct bench_engine *e, const struct bench_config *cfg,
                                      void *store, struct phase *ph, uint64_t warmup_ns)
{
    uint64_t invariant = 0;
    int irc =
        ph->workload->invariant != NULL ? ph->workload->invariant(e, cfg, store, &invariant) : 0;
    if (irc != 0)
        return irc;
    struct worker_arg *args = calloc(ph->threads, sizeof(*args));
    if (args == NULL)
        return -ENOMEM;
    pthread_barrier_t ready, go;
    pthread_barrier_init(&ready, NULL, ph->threads + 1);
    pthread_barrier_init(&go, NULL, ph->threads + 1);
    struct bench_shared warm_shared = {0};
    unsigned started = 0;
    int rc = 0;
    for (; started < ph->threads; started++) {
        struct worker_arg *a = &args[started];
        a->w.engine = e;
        a->w.cfg = cfg;
        a->w.store = store;
        a->w.shared = warmup_ns != 0 ? &warm_shared : &ph->shared;
        a->w.ready = &ready;
        a->w.go = &go;
        a->w.index = started;
        a->w.count = ph->threads;
        a->w.depth = ph->depth;
        a->w.batch = ph->batch;
        a->w.txn = ph->txn;
        a->w.ops_total = cfg->ops;
        int timed = ph->measured && !ph->workload->fill; /* a fill writes every key */
        a->w.duration_ns = warmup_ns != 0 ? warmup_ns : timed ? cfg->duration_ns : 0;
        a->w.rate = ph->measured ? cfg->rate : 0.0;
        bench_hist_init(&a->w.hist);
        a->workload = ph->workload;
        rc = -pthread_create(&a->tid, NULL, worker_main, a);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        /* The started threads wait at a barrier that can no longer fill: give up. */
        fprintf(stderr, "cstore-bench: cannot start thread %u: %s\n", started, strerror(-rc));
        exit(1);
    }
    /* Every handle is open once the first barrier fills. The clock starts before the main
     * thread releases the second: after it, the workers may run (and even finish) before the
     * main thread is scheduled again. */
    pthread_barrier_wait(&ready);
    double cpu0 = cpu_seconds();
    uint64_t t0 = bench_now_ns();
    pthread_barrier_wait(&go);
    for (unsigned i = 0; i < ph->threads; i++)
        pthread_join(args[i].tid, NULL);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&go);
    if (warmup_ns != 0) {
        for (unsigned i = 0; i < ph->threads; i++)
            ph->warmup_ops += args[i].w.ops;
        free(args);
        return phase_check_invariant(e, cfg, store, ph, invariant);
    }
    int persist_rc = 0;
    if (cfg->persist && ph->workload->writes && e->persist != NULL) {
        uint64_t p0 = bench_now_ns();
        persist_rc = e->persist(store);
        ph->persist_ns = bench_now_ns() - p0;
    }
    ph->wall_ns = bench_now_ns() - t0;
    ph->cpu_s = cpu_seconds() - cpu0;
    ph->rss_peak_bytes = rss_peak_bytes();
    ph->rss_bytes = rss_now_bytes();
    rss_split_bytes(&ph->rss_anon_bytes, &ph->rss_file_bytes);
    ph->disk_bytes = du_bytes(cfg->db_path);
    if (ph->measured && e->phase_note != NULL)
        e->phase_note(store, ph->note, sizeof(ph->note));
    phase_collect(ph, args);
    if (persist_rc != 0) {
        ph->errors++;
        if (ph->first_error == 0)
            ph->first_error = persist_rc;
    }
    free(args);
    return phase_check_invariant(e, cfg, store, ph, invariant);
}

/* A floor: p50 of one small record written with pwrite + fdatasync, one at a time, in dir.
 * append = 0: at increasing offsets (wrapping) of a file written in full first, as a
 * preallocated log is (cstore's WAL); append = 1: at the end of a file that grows with every
 * write, as RocksDB's and SQLite's logs grow, so each fdatasync also writes the new size.
 * 0 when skipped or when the file cannot be made. */
static uint64_t measure_floor_ns(const char *dir, unsigned ops, size_t record_bytes, int append)
{
    char path[PATH_BYTES];
    if (ops == 0 || snprintf(path, sizeof(path), "%s/.bench-floor", dir) >= (int)sizeof(path))
        return 0;
    if (record_bytes > FLOOR_FILE_BYTES)
        record_bytes = FLOOR_FILE_BYTES;
    char *buf = calloc(1, FLOOR_FILE_BYTES);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint64_t p50 = 0;
    if (buf == NULL || fd < 0)
        goto out;
    if (!append &&
        (pwrite(fd, buf, FLOOR_FILE_BYTES, 0) != (ssize_t)FLOOR_FILE_BYTES || fdatasync(fd) != 0))
        goto out;
    struct bench_hist h;
    bench_hist_init(&h);
    size_t slots = FLOOR_FILE_BYTES / record_bytes;
    for (unsigned i = 0; i < ops; i++) {
        memset(buf, (int)(i + 1), record_bytes);
        off_t at = (off_t)((append ? i : i % slots) * record_bytes);
        uint64_t t0 = bench_now_ns();
        if (pwrite(fd, buf, record_bytes, at) != (ssize_t)record_bytes || fdatasync(fd) != 0)
            goto out;
        bench_hist_record(&h, bench_now_ns() - t0);
    }
    p50 = bench_hist_quantile_ns(&h, 0.5);
out:
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    free(buf);
    return p50;
}

/* mkdir -p: every missing folder of path (existing ones are fine). */
static void make_folders(const char *path)
{
    char buf[PATH_BYTES];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        mkdir(buf, 0755); /* EEXIST is fine; a real failure shows at the engine's open */
        buf[i] = saved;
    }
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static double phase_rate(const struct phase *ph)
{
    return ph->wall_ns > 0 ? (double)ph->ops * 1e9 / (double)ph->wall_ns : 0.0;
}

/* Aborts / (commits + aborts): the share of transaction attempts that conflicted. */
static double phase_abort_rate(const struct phase *ph)
{
    uint64_t attempts = ph->commits + ph->aborts;
    return attempts > 0 ? (double)ph->aborts / (double)attempts : 0.0;
}

static double phase_cpu_us_per_op(const struct phase *ph)
{
    return ph->ops > 0 ? ph->cpu_s * 1e6 / (double)ph->ops : 0.0;
}

/* What the report says about a run as a whole. */
struct run_facts {
    const char *desc;               /* engine description */
    uint64_t open_ns;               /* time to open the store */
    uint64_t close_ns;              /* time to close it */
    uint64_t floor_ns;              /* p50 of an overwrite + fdatasync; 0 when not measured */
    uint64_t floor_append_ns;       /* p50 of an append + fdatasync; 0 when not measured */
    uint64_t floor_after_ns;        /* floor_ns measured again after the run */
    uint64_t floor_append_after_ns; /* floor_append_ns measured again after the run */
    uint64_t settle_ns;             /* the engine's settle steps (after the load, and after
                                     * write phases with --settle), summed; 0 = none */
    uint64_t rss_base;              /* RSS before the store was opened */
    uint64_t rss_anon_base;         /* RssAnon before the store was opened */
    unsigned engine_depth1;         /* the engine has no pipelined calls */
};

/* RssAnon grown since before the open, per record held: the heap an engine keeps per record
 * (a memory-mapped store's pages are RssFile, the page cache's, and are not counted). */
static double bytes_per_record(const struct run_facts *f, const struct phase *p)
{
    if (p->records == 0 || p->rss_anon_bytes < f->rss_anon_base)
        return 0.0;
    return (double)(p->rss_anon_bytes - f->rss_anon_base) / (double)p->records;
}

static unsigned phase_inflight(const struct run_facts *f, const struct phase *p)
{
    return f->engine_depth1 ? 1 : p->depth;
}

static void report_text(const struct bench_args *a, const struct run_facts *f,
                        const struct phase *ph, unsigned n)
{
    const struct bench_config *c = &a->cfg;
    printf("cstore-bench: %s; db %s; durability %s; %llu keys of %u B, values %u B\n", f->desc,
           c->db_path, c->durability != NULL ? c->durability : "default",
           (unsigned long long)c->keys, c->key_bytes, c->value_bytes);
    printf("%-13s %7s %8s %10s %8s %11s %9s %9s %9s %9s %7s %7s %8s %8s %8s %6s %s\n", "phase",
           "threads", "inflight", "ops", "secs", "ops/s", "p50_us", "p99_us", "p99.9_us", "max_us",
           "cpu_s", "cpu_us", "anon_MiB", "file_MiB", "disk_MiB", "B/rec", "notes");
    for (unsigned i = 0; i < n; i++) {
        const struct phase *p = &ph[i];
        printf("%-13s %7u %8u %10llu %8.3f %11.0f %9.2f %9.2f %9.2f %9.2f %7.2f %7.2f %8.1f %8.1f "
               "%8.1f %6.0f",
               p->workload->name, p->threads, phase_inflight(f, p), (unsigned long long)p->ops,
               (double)p->wall_ns / 1e9, phase_rate(p), us(bench_hist_quantile_ns(&p->hist, 0.50)),
               us(bench_hist_quantile_ns(&p->hist, 0.99)),
               us(bench_hist_quantile_ns(&p->hist, 0.999)), us(p->hist.max_ns), p->cpu_s,
               phase_cpu_us_per_op(p), (double)p->rss_anon_bytes / 1048576.0,
               (double)p->rss_file_bytes / 1048576.0, (double)p->disk_bytes / 1048576.0,
               bytes_per_record(f, p));
        if (!p->measured)
            printf(" (load)");
        if (p->persist_ns)
            printf(" persist=%.1fms", (double)p->persist_ns / 1e6);
        if (p->warmup_ops)
            printf(" warmup=%llu", (unsigned long long)p->warmup_ops);
        if (p->note[0] != '\0')
            printf(" [%s]", p->note);
        if (p->txn)
            printf(" commits=%llu aborts=%llu (%.2f%%)", (unsigned long long)p->commits,
                   (unsigned long long)p->aborts, 100.0 * phase_abort_rate(p));
        if (p->misses)
            printf(" misses=%llu", (unsigned long long)p->misses);
        if (p->mismatches)
            printf(" WRONG=%llu", (unsigned long long)p->mismatches);
        if (p->errors)
            printf(" ERRORS=%llu (%s)", (unsigned long long)p->errors,
                   a->engine->strerror(p->first_error));
        putchar('\n');
    }
    printf("open %.1f ms, close %.1f ms", (double)f->open_ns / 1e6, (double)f->close_ns / 1e6);
    if (f->settle_ns != 0)
        printf(", settle (unmeasured) %.1f ms", (double)f->settle_ns / 1e6);
    if (f->floor_ns != 0) {
        printf("; floors (small write + fdatasync, p50, before/after): overwrite %.2f/%.2f us, "
               "append %.2f/%.2f us",
               us(f->floor_ns), us(f->floor_after_ns), us(f->floor_append_ns),
               us(f->floor_append_after_ns));
        for (unsigned i = 0; i < n; i++)
            if (ph[i].measured && ph[i].workload->fill && ph[i].hist.count > 0)
                printf("; %s p50 / floor = %.2f", ph[i].workload->name,
                       (double)bench_hist_quantile_ns(&ph[i].hist, 0.5) / (double)f->floor_ns);
    }
    putchar('\n');
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

static void report_json_phase(const struct bench_args *a, const struct run_facts *f,
                              const struct phase *p)
{
    const struct bench_config *c = &a->cfg;
    uint64_t p50 = bench_hist_quantile_ns(&p->hist, 0.50);
    printf("{\"engine\": ");
    json_string(c->engine);
    printf(", \"workload\": \"%s\", \"threads\": %u, \"inflight\": %u, \"ops\": %llu, "
           "\"seconds\": %.6f, \"ops_per_sec\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, "
           "\"p999_us\": %.2f, \"max_us\": %.2f, \"rss_bytes\": %llu, "
           "\"bytes_per_record\": %.1f",
           p->workload->name, p->threads, phase_inflight(f, p), (unsigned long long)p->ops,
           (double)p->wall_ns / 1e9, phase_rate(p), us(p50),
           us(bench_hist_quantile_ns(&p->hist, 0.99)), us(bench_hist_quantile_ns(&p->hist, 0.999)),
           us(p->hist.max_ns), (unsigned long long)p->rss_peak_bytes, bytes_per_record(f, p));
    printf(", \"rss_anon_bytes\": %llu, \"rss_file_bytes\": %llu, \"disk_bytes\": %llu, "
           "\"cpu_us_per_op\": %.3f, \"persist_ms\": %.3f, \"warmup_ops\": %llu",
           (unsigned long long)p->rss_anon_bytes, (unsigned long long)p->rss_file_bytes,
           (unsigned long long)p->disk_bytes, phase_cpu_us_per_op(p), (double)p->persist_ns / 1e6,
           (unsigned long long)p->warmup_ops);
    printf(", \"mean_us\": %.2f, \"cpu_seconds\": %.3f, \"records\": %llu, \"misses\": %llu, "
           "\"mismatches\": %llu, \"errors\": %llu, \"first_error\": ",
           p->hist.count ? us(p->hist.sum_ns / p->hist.count) : 0.0, p->cpu_s,
           (unsigned long long)p->records, (unsigned long long)p->misses,
           (unsigned long long)p->mismatches, (unsigned long long)p->errors);
    if (p->first_error != 0)
        json_string(a->engine->strerror(p->first_error));
    else
        printf("null");
    printf(", \"txn\": %d, \"txn_ops\": %u, \"commits\": %llu, \"aborts\": %llu, "
           "\"abort_rate\": %.6f, \"cross_shard\": %d",
           p->txn,
           p->workload->txn == BENCH_TXN_OPTION && p->txn ? c->txn_ops
           : p->txn                                       ? 1u
                                                          : 0u,
           (unsigned long long)p->commits, (unsigned long long)p->aborts, phase_abort_rate(p),
           c->cross_shard);
    printf(", \"durability\": ");
    json_string(c->durability != NULL ? c->durability : "default");
    printf(", \"keys\": %llu, \"key_bytes\": %u, \"value_bytes\": %u, \"batch\": %u, "
           "\"rate\": %.1f, \"scan_length\": %u, \"zipf\": %.4f, \"seed\": %llu, "
           "\"floor_p50_us\": %.2f, \"p50_over_floor\": %.3f, \"floor_append_p50_us\": %.2f, "
           "\"p50_over_append_floor\": %.3f, \"floor_after_p50_us\": %.2f, "
           "\"floor_append_after_p50_us\": %.2f, \"open_ms\": %.3f, \"close_ms\": %.3f, "
           "\"settle_ms\": %.3f, \"values\": \"%s\", \"warmup_s\": %.3f, \"describe\": ",
           (unsigned long long)c->keys, c->key_bytes, c->value_bytes, p->batch, c->rate,
           c->scan_length, c->zipf_theta, (unsigned long long)c->seed, us(f->floor_ns),
           f->floor_ns ? (double)p50 / (double)f->floor_ns : 0.0, us(f->floor_append_ns),
           f->floor_append_ns ? (double)p50 / (double)f->floor_append_ns : 0.0,
           us(f->floor_after_ns), us(f->floor_append_after_ns), (double)f->open_ns / 1e6,
           (double)f->close_ns / 1e6, (double)f->settle_ns / 1e6,
           c->compressible ? "compressible" : "random", (double)c->warmup_ns / 1e9);
    json_string(f->desc);
    printf(", \"engine_note\": ");
    json_string(p->note);
    printf(", \"shards\": ");
    json_string(c->shards != NULL ? c->shards : "default");
    printf(", \"sets\": [");
    for (unsigned i = 0; i < c->set_count; i++) {
        printf(i ? ", " : "");
        json_string(c->sets[i]);
    }
    printf("]}\n");
}

/* Records the store holds after phase p, as far as the workloads tell. */
static uint64_t records_after(const struct bench_config *c, const struct phase *ph, unsigned p,
                              uint64_t before)
{
    const struct phase *x = &ph[p];
    const char *name = x->workload->name;
    if (x->workload->fill)
        return c->keys > before ? c->keys : before;
    if (strcmp(name, "deleterandom") == 0)
        return before > x->ops - x->misses ? before - (x->ops - x->misses) : 0;
    return before + x->shared.inserted;
}

/* Derived configuration: sequential keys when fillseq runs; the zipfian constants; which phases
 * run transactions, and whether any writes in them. */
static void config_derive(struct bench_config *c, struct phase *ph, unsigned n)
{
    int ycsb = 0;
    for (unsigned i = 0; i < n; i++) {
        ph[i].txn = bench_workload_txn(ph[i].workload, c);
        if (ph[i].txn && ph[i].workload->writes)
            c->txn_writes = 1;
        if (strcmp(ph[i].workload->name, "fillseq") == 0)
            c->sequential_keys = 1;
        if (strncmp(ph[i].workload->name, "ycsb-", 5) == 0)
            ycsb = 1;
    }
    if (ycsb && c->keys > 0) {
        c->zipf_zetan = bench_zeta(c->keys, c->zipf_theta);
        c->zipf_zeta2 = bench_zeta(2, c->zipf_theta);
    }
}

/* Transactional phases need the engine's transactions, a closed loop, and for a transfer two
 * records with room for a balance; returns 0 or 2 (bad options). */
BENCH_MUST_CHECK static int check_txn_phases(const struct bench_args *a, const struct phase *ph,
                                             unsigned n)
{
    const struct bench_config *c = &a->cfg;
    for (unsigned i = 0; i < n; i++) {
        const char *name = ph[i].workload->name;
        if (!ph[i].txn)
            continue;
        if (a->engine->txn_begin == NULL)
            return bench_usage_error("the engine has no transactions for", name);
        if (c->rate > 0.0)
            return bench_usage_error("--rate does not apply to transactional phases:", name);
        if (strcmp(name, "transfer") == 0 && (c->keys < 2 || c->value_bytes < 16))
            return bench_usage_error("transfer needs --keys >= 2 and --value-size >= 16:", name);
    }
    return 0;
}

BENCH_MUST_CHECK static int run_all(struct bench_args *a, struct phase *phases, unsigned n,
                                    struct run_facts *f, char *desc)
{
    const struct bench_engine *e = a->engine;
    void *store = NULL;
    make_folders(a->cfg.db_path); /* every engine gets an existing folder */
    size_t rec = (size_t)a->cfg.key_bytes + a->cfg.value_bytes + 16;
    f->floor_ns = measure_floor_ns(a->cfg.db_path, a->floor_ops, rec, 0);
    f->floor_append_ns = measure_floor_ns(a->cfg.db_path, a->floor_ops, rec, 1);
    f->rss_base = rss_now_bytes();
    uint64_t file_base;
    rss_split_bytes(&f->rss_anon_base, &file_base);
    uint64_t t0 = bench_now_ns();
    int rc = e->open(&a->cfg, &store);
    f->open_ns = bench_now_ns() - t0;
    if (rc != 0) {
        fprintf(stderr, "cstore-bench: cannot open %s store '%s': %s\n", e->name, a->cfg.db_path,
                e->strerror(rc));
        return 1;
    }
    if (e->describe != NULL)
        e->describe(store, desc, DESCRIBE_BYTES);
    else
        snprintf(desc, DESCRIBE_BYTES, "%s", e->name);
    f->desc = desc;
    uint64_t records = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!a->json)
            fprintf(stderr, "cstore-bench: %s %s, %u thread(s)...\n", e->name,
                    phases[i].workload->name, phases[i].threads);
        struct phase *ph = &phases[i];
        if (ph->measured && a->cfg.warmup_ns != 0 && !ph->workload->fill)
            rc = run_phase(e, &a->cfg, store, ph, a->cfg.warmup_ns);
        if (rc == 0)
            rc = run_phase(e, &a->cfg, store, ph, 0);
        int settle = !ph->measured || (a->cfg.settle && ph->workload->writes && i + 1 < n);
        if (rc == 0 && settle && e->settle != NULL) {
            t0 = bench_now_ns();
            rc = e->settle(store);
            f->settle_ns += bench_now_ns() - t0;
            if (rc != 0) {
                fprintf(stderr, "cstore-bench: %s settle: %s\n", e->name, e->strerror(rc));
                return 1;
            }
        }
        if (rc != 0) {
            fprintf(stderr, "cstore-bench: phase %s: %s\n", phases[i].workload->name,
                    strerror(-rc));
            return 1;
        }
        records = records_after(&a->cfg, phases, i, records);
        phases[i].records = records;
    }
    t0 = bench_now_ns();
    rc = e->close(store);
    f->close_ns = bench_now_ns() - t0;
    if (rc != 0) {
        fprintf(stderr, "cstore-bench: close: %s\n", e->strerror(rc));
        return 1;
    }
    f->floor_after_ns = measure_floor_ns(a->cfg.db_path, a->floor_ops, rec, 0);
    f->floor_append_after_ns = measure_floor_ns(a->cfg.db_path, a->floor_ops, rec, 1);
    return 0;
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
    ex = parse_phases(&a, phases, &nphases);
    if (ex != 0)
        return ex;
    config_derive(&a.cfg, phases, nphases);
    ex = check_txn_phases(&a, phases, nphases);
    if (ex != 0)
        return ex;
    /* Open loop: wake at the intended time, not up to 50 us later (the default timer slack,
     * inherited by the worker threads). */
    prctl(PR_SET_TIMERSLACK, 1ul, 0ul, 0ul, 0ul);
    if (strcmp(a.engine->name, "cstore") != 0 && (a.cfg.shards != NULL || a.cfg.set_count > 0))
        fprintf(stderr,
                "cstore-bench: --shards and --set are cstore options (rocksdb takes --set "
                "allow_concurrent_memtable_write=true|false, table=plain, block_cache=SIZE and "
                "txn=pessimistic|optimistic|none); %s ignores the others\n",
                a.engine->name);
    if (a.cfg.cpuset != NULL && strcmp(a.engine->name, "cstore") != 0) {
        int prc = pin_process(a.cfg.cpuset);
        if (prc != 0)
            return bench_usage_error("cannot pin to --cpuset", a.cfg.cpuset);
    }

    struct run_facts f;
    memset(&f, 0, sizeof(f));
    f.engine_depth1 = a.engine->submit_put == NULL;
    char desc[DESCRIBE_BYTES] = "";
    ex = run_all(&a, phases, nphases, &f, desc);
    if (ex != 0)
        return ex;
    if (a.json) {
        for (unsigned i = 0; i < nphases; i++)
            if (phases[i].measured || !a.workload_mode)
                report_json_phase(&a, &f, &phases[i]);
    } else {
        report_text(&a, &f, phases, nphases);
    }
    for (unsigned i = 0; i < nphases; i++)
        if (phases[i].errors || phases[i].mismatches)
            ex = 1;
    free(phases);
    free(a.phase_list);
    return ex;
}
