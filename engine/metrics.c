/* Metrics: summaries of the histograms (cs_metrics_summary) and the Prometheus text exporter
 * (cs_metrics_prometheus), for an embedded database (`cstore stat --prometheus`) and for a
 * server's /metrics endpoint, which appends its own families to the text.
 *
 * WHERE THE NUMBERS COME FROM
 *   - histograms a shard records on its own thread (shards/completion.c, shard.c, shard_ckpt.c):
 *     request latency of puts, gets, deletes and batches, WAL sync latency, WAL frame sizes,
 *     checkpoint durations; read here from any thread with relaxed loads (shard_hist_read);
 *   - histograms the engine records on application threads (struct db_shard_metrics): gets the
 *     published views answered (engine/db.c, engine/session.c), commits (engine/txn.c);
 *   - counters and gauges of struct cs_shard_stats, one SHARD_STATS round trip per shard.
 * Each histogram series is exported from one snapshot: its buckets, _count (the sum of the
 * snapshot's buckets, so equal to the +Inf bucket) and _sum. A snapshot taken while values are
 * recorded may hold a value in a bucket and not yet in the sum (see common/hist.h), and the
 * counters come from a moment a little later or earlier than the histograms.
 *
 * FORMAT (text exposition format 0.0.4): per family "# HELP name text" and "# TYPE name type",
 * once, then its samples "name{labels} value", one per line, '\n' line ends. Bucket bounds
 * (le) are powers of two, in seconds (2^10 .. 2^34 ns) or bytes (2^7 .. 2^26): every power of
 * two is a bucket bound of the histograms, so the cumulative counts are exact. Durations are
 * printed as exact decimals of their nanoseconds. The HELP texts hold no backslash or newline
 * (which would need escapes). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db.h"

#define OUT_BYTES_MIN 16384u     /* first allocation of the text */
#define OUT_BYTES_MAX (1u << 30) /* limit of the text: past it, -ENOMEM */
#define SECONDS_LOG2_MIN 10u     /* smallest duration bound: 2^10 ns (1.024 us) */
#define SECONDS_LOG2_MAX 34u     /* largest: 2^34 ns (17.2 s) */
#define BYTES_LOG2_MIN 7u        /* smallest size bound: 128 B */
#define BYTES_LOG2_MAX 26u       /* largest: 64 MiB (WAL_FRAME_RAW_MAX) */
#define BOUNDS_MAX 32u           /* bounds of one histogram family */
#define OPS_MAX 7u               /* op labels of one counter family, and a NULL */

/* The text being built: grows by doubling; the first failure sticks. */
struct out {
    char *p;    /* cs_mem allocation (NUL-terminated while err is 0) */
    size_t len; /* bytes used, without the NUL */
    size_t cap; /* bytes allocated */
    int err;    /* 0, or -ENOMEM */
};

__attribute__((format(printf, 2, 3))) static void out_printf(struct out *o, const char *fmt, ...)
{
    for (int tries = 0; !o->err && tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        cs_assert(n >= 0);
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap;
        while (cap - o->len <= (size_t)n)
            cap *= 2;
        char *p = cap <= OUT_BYTES_MAX ? cs_mem_realloc(0, o->p, cap) : NULL;
        if (!p) {
            o->err = -ENOMEM;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

/* An exact decimal of ns / 10^9 (or of v when not a duration), trailing zeros trimmed. */
static void fmt_value(char *buf, size_t size, uint64_t v, bool seconds)
{
    if (!seconds) {
        snprintf(buf, size, "%" PRIu64, v);
        return;
    }
    int n = snprintf(buf, size, "%" PRIu64 ".%09" PRIu64, v / 1000000000u, v % 1000000000u);
    cs_assert(n > 0 && (size_t)n < size);
    while (n > 1 && buf[n - 1] == '0')
        buf[--n] = '\0';
    if (buf[n - 1] == '.')
        buf[n - 1] = '\0';
}

/* ---- histogram families ---- */

/* Where a histogram series comes from. */
enum hsrc { HSRC_SHARD, HSRC_VIEW_GET, HSRC_COMMIT };

struct hfamily {
    const char *name;      /* family name */
    const char *help;      /* what it measures */
    bool seconds;          /* values are ns, exported as seconds (else bytes) */
    enum hsrc src;         /* recorded by the shard, or by the engine */
    const char *ops[4];    /* op label of each series per shard (NULL: no op label) */
    enum shard_hist hs[4]; /* HSRC_SHARD: the shard histogram of each series */
};

static const struct hfamily hfamilies[] = {
    {"cstore_request_duration_seconds",
     "Latency of the requests a shard thread executed, by operation (put, get, del, batch = an "
     "atomic cs_write batch on one shard): from the calling thread queueing the request to the "
     "shard to its completion on the shard thread, in durability=sync including the wait for "
     "its WAL frame to be durable; every outcome (not found, errors) counts, except requests "
     "failed by a WAL write error. op=get covers only gets the published view could not answer: "
     "see cstore_view_get_duration_seconds for the others.",
     true,
     HSRC_SHARD,
     {"put", "get", "del", "batch"},
     {SHARD_HIST_PUT, SHARD_HIST_GET, SHARD_HIST_DEL, SHARD_HIST_BATCH}},
    {"cstore_view_get_duration_seconds",
     "Latency of the gets (cs_get, cs_session_get) that the calling thread answered from the "
     "shard's published view, lock-free and without the shard thread: the view lookup and the "
     "copy of the value. A sample: each thread times one in 16 of these gets (timing them all "
     "would cost 12% of such a get); cstore_operations_total{op=\"view_get\"} counts them all.",
     true,
     HSRC_VIEW_GET,
     {NULL},
     {0}},
    {"cstore_txn_commit_duration_seconds",
     "Latency of commits (cs_txn_commit, cs_session_commit, and cs_write batches whose keys span "
     "shards), from the start of the commit to its answer, on the transaction's first shard "
     "(lowest index); every outcome, conflicts included. Commits that read and write nothing "
     "are not recorded.",
     true,
     HSRC_COMMIT,
     {NULL},
     {0}},
    {"cstore_wal_sync_duration_seconds",
     "Latency of making the WAL durable, from submission to io_uring completion: in "
     "durability=sync each WAL frame's write with RWF_DSYNC (the write and the flush), in "
     "durability=async each lone fdatasync. Failed ones are not recorded.",
     true,
     HSRC_SHARD,
     {NULL},
     {SHARD_HIST_WAL_SYNC}},
    {"cstore_wal_frame_size_bytes",
     "Size of each WAL frame written (group commit: the records of many requests), in bytes on "
     "disk after compression.",
     false,
     HSRC_SHARD,
     {NULL},
     {SHARD_HIST_FRAME_BYTES}},
    {"cstore_checkpoint_duration_seconds",
     "Duration of each checkpoint published, from the snapshot of the shard's trees to its "
     "publication (file written by a helper thread, renamed, folder synced). Failed and "
     "discarded checkpoints are not recorded.",
     true,
     HSRC_SHARD,
     {NULL},
     {SHARD_HIST_CHECKPOINT}},
};

/* Read series i of family f on shard into h (zeroed first). */
static void hist_snapshot(cs_db *db, const struct hfamily *f, unsigned i, unsigned shard,
                          struct hist *h)
{
    memset(h, 0, sizeof(*h));
    switch (f->src) {
    case HSRC_SHARD:
        shard_hist_read(db->shards[shard], f->hs[i], h);
        break;
    case HSRC_VIEW_GET:
        for (unsigned s = 0; s < DB_VIEW_STRIPES; s++)
            hist_merge(h, &db->metrics[shard].view[s].sampled);
        break;
    case HSRC_COMMIT:
        hist_merge(h, &db->metrics[shard].commit);
        break;
    }
}

static void emit_hist_series(struct out *o, const struct hfamily *f, const char *labels,
                             const struct hist *h)
{
    uint64_t bounds[BOUNDS_MAX], cum[BOUNDS_MAX];
    unsigned lo = f->seconds ? SECONDS_LOG2_MIN : BYTES_LOG2_MIN;
    unsigned hi = f->seconds ? SECONDS_LOG2_MAX : BYTES_LOG2_MAX;
    unsigned n = 0;
    for (unsigned k = lo; k <= hi; k++) {
        cs_assert(n < BOUNDS_MAX);
        bounds[n] = 1ull << k;
        cs_assert(hist_bound_exact(bounds[n]));
        n++;
    }
    hist_cumulative(h, bounds, n, cum);
    char v[48];
    for (unsigned j = 0; j < n; j++) {
        fmt_value(v, sizeof(v), bounds[j], f->seconds);
        out_printf(o, "%s_bucket{%s,le=\"%s\"} %" PRIu64 "\n", f->name, labels, v, cum[j]);
    }
    uint64_t count = hist_count(h);
    out_printf(o, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", f->name, labels, count);
    fmt_value(v, sizeof(v), h->sum, f->seconds);
    out_printf(o, "%s_sum{%s} %s\n", f->name, labels, v);
    out_printf(o, "%s_count{%s} %" PRIu64 "\n", f->name, labels, count);
}

static void emit_hist_family(struct out *o, cs_db *db, const struct hfamily *f, struct hist *h)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", f->name, f->help, f->name);
    unsigned nops = 0;
    while (nops < 4 && f->ops[nops])
        nops++;
    for (unsigned shard = 0; shard < db->nshards; shard++)
        for (unsigned i = 0; i < (nops ? nops : 1u); i++) {
            char labels[64];
            if (nops)
                snprintf(labels, sizeof(labels), "shard=\"%u\",op=\"%s\"", shard, f->ops[i]);
            else
                snprintf(labels, sizeof(labels), "shard=\"%u\"", shard);
            hist_snapshot(db, f, i, shard, h);
            emit_hist_series(o, f, labels, h);
        }
}

/* ---- counters and gauges of struct cs_shard_stats ---- */

#define SS(field) offsetof(struct cs_shard_stats, field)

struct sfamily {
    const char *name;          /* family name */
    const char *type;          /* "counter" or "gauge" */
    const char *help;          /* what it counts */
    size_t offset;             /* its uint64_t field of struct cs_shard_stats (ops NULL) */
    const char *ops[OPS_MAX];  /* op labels (NULL-terminated), or NULL */
    size_t op_offset[OPS_MAX]; /* their fields */
};

static const struct sfamily sfamilies[] = {
    {"cstore_operations_total",
     "counter",
     "Operations on the shard: put and del count the successful ones the shard thread executed, "
     "get every get it executed, view_get the gets application threads answered from its "
     "published views without it, batch the atomic batches applied, scan the cursor snapshots "
     "the shard thread took itself.",
     0,
     {"put", "get", "view_get", "del", "batch", "scan"},
     {SS(puts), SS(gets), SS(view_gets), SS(dels), SS(batches), SS(scans)}},
    {"cstore_views_published_total",
     "counter",
     "Views (snapshots for lock-free readers) the shard published.",
     SS(views),
     {NULL},
     {0}},
    {"cstore_loop_iterations_total",
     "counter",
     "Iterations of the shard's event loop that executed requests.",
     SS(loops),
     {NULL},
     {0}},
    {"cstore_queued_requests",
     "gauge",
     "Requests the shard took from its inbox and has not executed yet (the inbox itself, a "
     "lock-free stack, is not counted).",
     SS(requests_queued),
     {NULL},
     {0}},
    {"cstore_pending_requests",
     "gauge",
     "Requests executed and waiting for their WAL frame to be durable (durability=sync).",
     SS(requests_pending),
     {NULL},
     {0}},
    {"cstore_records",
     "gauge",
     "Records in all collections of the shard.",
     SS(records),
     {NULL},
     {0}},
    {"cstore_collections",
     "gauge",
     "Collections present on the shard.",
     SS(collections),
     {NULL},
     {0}},
    {"cstore_tree_bytes",
     "gauge",
     "Memory held by the shard's B+ trees (nodes of live trees and of snapshots still pinned), "
     "in bytes.",
     SS(tree_bytes),
     {NULL},
     {0}},
    {"cstore_wal_frames_total",
     "counter",
     "WAL frames written (one write each).",
     SS(wal_frames),
     {NULL},
     {0}},
    {"cstore_wal_records_total", "counter", "WAL records written.", SS(wal_records), {NULL}, {0}},
    {"cstore_wal_bytes_total",
     "counter",
     "WAL bytes written, after compression.",
     SS(wal_bytes),
     {NULL},
     {0}},
    {"cstore_wal_syncs_total",
     "counter",
     "Times the WAL was made durable (RWF_DSYNC frame writes, or lone fdatasyncs).",
     SS(wal_syncs),
     {NULL},
     {0}},
    {"cstore_wal_enospc_total",
     "counter",
     "WAL frames refused for want of disk space (rolled back, their requests failed).",
     SS(wal_enospc),
     {NULL},
     {0}},
    {"cstore_wal_segments", "gauge", "WAL segment files on disk.", SS(wal_segments), {NULL}, {0}},
    {"cstore_wal_lsn", "gauge", "Last log sequence number assigned.", SS(wal_lsn), {NULL}, {0}},
    {"cstore_wal_durable_lsn",
     "gauge",
     "Last log sequence number known durable.",
     SS(wal_durable_lsn),
     {NULL},
     {0}},
    {"cstore_checkpoints_total", "counter", "Checkpoints published.", SS(checkpoints), {NULL}, {0}},
    {"cstore_checkpoint_lsn",
     "gauge",
     "Log sequence number of the newest checkpoint (0: none).",
     SS(checkpoint_lsn),
     {NULL},
     {0}},
    {"cstore_txn_commits_total",
     "counter",
     "Transactions committed on the shard: one-shard ones, and each shard's part of a "
     "cross-shard one.",
     SS(txn_commits),
     {NULL},
     {0}},
    {"cstore_txn_conflicts_total",
     "counter",
     "Transactions the shard refused with a conflict.",
     SS(txn_conflicts),
     {NULL},
     {0}},
    {"cstore_txn_cross_commits_total",
     "counter",
     "Cross-shard transactions committed whose first participant is the shard (the sum over "
     "shards counts each once).",
     SS(txn_cross_commits),
     {NULL},
     {0}},
    {"cstore_recovered_records",
     "gauge",
     "WAL records the shard replayed when it was opened.",
     SS(recovered_records),
     {NULL},
     {0}},
};

static void emit_stat_family(struct out *o, const struct sfamily *f,
                             const struct cs_shard_stats *st, unsigned nshards)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
    for (unsigned shard = 0; shard < nshards; shard++) {
        const char *base = (const char *)&st[shard];
        uint64_t v;
        if (!f->ops[0]) {
            memcpy(&v, base + f->offset, sizeof(v));
            out_printf(o, "%s{shard=\"%u\"} %" PRIu64 "\n", f->name, shard, v);
            continue;
        }
        for (unsigned i = 0; i < OPS_MAX && f->ops[i]; i++) {
            memcpy(&v, base + f->op_offset[i], sizeof(v));
            out_printf(o, "%s{shard=\"%u\",op=\"%s\"} %" PRIu64 "\n", f->name, shard, f->ops[i], v);
        }
    }
}

/* The families that are not plain uint64_t fields. */
static void emit_other_families(struct out *o, const struct cs_shard_stats *st, unsigned nshards)
{
    out_printf(o, "# HELP cstore_read_only 1 when the shard turned read-only after a failed WAL "
                  "write or fdatasync (until the database is reopened), else 0.\n"
                  "# TYPE cstore_read_only gauge\n");
    for (unsigned shard = 0; shard < nshards; shard++)
        out_printf(o, "cstore_read_only{shard=\"%u\"} %d\n", shard, st[shard].io_error != 0);
    out_printf(o, "# HELP cstore_recovery_seconds Time the shard spent recovering (checkpoint "
                  "load and WAL replay) when the database was opened.\n"
                  "# TYPE cstore_recovery_seconds gauge\n");
    for (unsigned shard = 0; shard < nshards; shard++) {
        char v[48];
        fmt_value(v, sizeof(v), st[shard].recovery_us * 1000u, true);
        out_printf(o, "cstore_recovery_seconds{shard=\"%u\"} %s\n", shard, v);
    }
}

int cs_metrics_prometheus(cs_db *db, char **text, size_t *len)
{
    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!db || !text || !len)
        return CS_EINVAL;
    struct cs_shard_stats *st = calloc(db->nshards, sizeof(*st));
    struct hist *h = malloc(sizeof(*h));
    struct out o = {.p = cs_mem_alloc(0, OUT_BYTES_MIN), .cap = OUT_BYTES_MIN};
    int rc = st && h && o.p ? 0 : -ENOMEM;
    for (unsigned i = 0; !rc && i < db->nshards; i++)
        rc = cs_stats(db, i, &st[i]);
    if (!rc) {
        o.p[0] = '\0';
        for (size_t i = 0; i < CS_ARRAY_SIZE(hfamilies); i++)
            emit_hist_family(&o, db, &hfamilies[i], h);
        for (size_t i = 0; i < CS_ARRAY_SIZE(sfamilies); i++)
            emit_stat_family(&o, &sfamilies[i], st, db->nshards);
        emit_other_families(&o, st, db->nshards);
        rc = o.err;
    }
    free(st);
    free(h);
    if (rc) {
        cs_mem_free(o.p);
        return rc;
    }
    *text = o.p;
    *len = o.len;
    return 0;
}

/* ---- summaries ---- */

int cs_metrics_summary(cs_db *db, unsigned shard, unsigned metric, struct cs_metric_summary *out)
{
    if (!db || !out || shard >= db->nshards || metric >= CS_METRICS)
        return CS_EINVAL;
    struct hist snap; /* 5 KB */
    struct hist *h = &snap;
    memset(h, 0, sizeof(*h));
    static const enum shard_hist of_shard[CS_METRICS] = {
        [CS_METRIC_PUT] = SHARD_HIST_PUT,
        [CS_METRIC_GET] = SHARD_HIST_GET,
        [CS_METRIC_DEL] = SHARD_HIST_DEL,
        [CS_METRIC_BATCH] = SHARD_HIST_BATCH,
        [CS_METRIC_WAL_SYNC] = SHARD_HIST_WAL_SYNC,
        [CS_METRIC_WAL_FRAME_BYTES] = SHARD_HIST_FRAME_BYTES,
        [CS_METRIC_CHECKPOINT] = SHARD_HIST_CHECKPOINT,
    };
    if (metric == CS_METRIC_VIEW_GET)
        for (unsigned s = 0; s < DB_VIEW_STRIPES; s++)
            hist_merge(h, &db->metrics[shard].view[s].sampled);
    else if (metric == CS_METRIC_COMMIT)
        hist_merge(h, &db->metrics[shard].commit);
    else
        shard_hist_read(db->shards[shard], of_shard[metric], h);
    memset(out, 0, sizeof(*out));
    out->count = hist_count(h);
    out->sum = h->sum;
    if (out->count) {
        out->p50 = hist_quantile(h, 0.5);
        out->p90 = hist_quantile(h, 0.9);
        out->p99 = hist_quantile(h, 0.99);
        out->p999 = hist_quantile(h, 0.999);
        out->max = hist_quantile(h, 1.0);
    }
    return 0;
}
