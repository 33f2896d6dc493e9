/* Integration tests of the metrics (engine/metrics.c) on a real database: after a known number
 * of puts, gets, deletes, a batch, a transaction and a checkpoint, the Prometheus text counts
 * exactly those (the put histograms of the shards sum to the puts made, view-answered and
 * shard-executed gets to the gets made, one in 16 view-answered gets timed, one commit), every
 * line is valid exposition syntax,
 * each family has one HELP and one TYPE line before its samples and its samples together, and
 * every histogram series is cumulative and ends with +Inf equal to its _count; the summaries
 * agree; async mode records its lone fdatasyncs; bad arguments get CS_EINVAL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"

#define PUTS 300u
#define SESSION_PUTS 40u
#define GETS 200u
#define DELS 10u
#define SAMPLES_MAX 20000u
#define FAMILIES_MAX 128u
#define NAME_MAX_BYTES 96u
#define LABELS_MAX_BYTES 128u

struct sample {
    char name[NAME_MAX_BYTES];     /* metric name as written (with _bucket etc.) */
    char family[NAME_MAX_BYTES];   /* its family */
    char labels[LABELS_MAX_BYTES]; /* labels without le, as written */
    char le[64];                   /* le label ("" when none) */
    double value;                  /* its value */
};

struct family {
    char name[NAME_MAX_BYTES]; /* family name */
    char type[16];             /* from its TYPE line ("" before it) */
    bool help;                 /* HELP seen */
    bool samples;              /* samples seen */
    bool finished;             /* another family's samples came after its own */
};

struct parsed {
    struct sample *s;              /* samples in text order (SAMPLES_MAX allocated) */
    size_t n;                      /* samples used */
    struct family f[FAMILIES_MAX]; /* families in order of their first line */
    size_t nf;                     /* families used */
};

static struct family *family_get(struct parsed *p, const char *name)
{
    for (size_t i = 0; i < p->nf; i++)
        if (strcmp(p->f[i].name, name) == 0)
            return &p->f[i];
    assert_true(p->nf < FAMILIES_MAX);
    struct family *f = &p->f[p->nf++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

static bool name_char(char c, bool first)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':' ||
           (!first && isdigit((unsigned char)c));
}

/* Read a metric or label name at *pp into out; false when there is none. */
static bool read_name(const char **pp, char *out, size_t size)
{
    const char *p = *pp;
    size_t n = 0;
    while (name_char(p[n], n == 0) && n + 1 < size) {
        out[n] = p[n];
        n++;
    }
    out[n] = '\0';
    *pp = p + n;
    return n > 0;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && strcmp(s + a - b, suffix) == 0;
}

/* The family a sample name belongs to: a declared histogram's name less _bucket/_sum/_count. */
static struct family *family_of(struct parsed *p, const char *name)
{
    const char *suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        if (!has_suffix(name, suffixes[i]))
            continue;
        char base[NAME_MAX_BYTES];
        snprintf(base, sizeof(base), "%.*s", (int)(strlen(name) - strlen(suffixes[i])), name);
        for (size_t j = 0; j < p->nf; j++)
            if (strcmp(p->f[j].name, base) == 0 && strcmp(p->f[j].type, "histogram") == 0)
                return &p->f[j];
    }
    for (size_t j = 0; j < p->nf; j++)
        if (strcmp(p->f[j].name, name) == 0)
            return &p->f[j];
    return NULL;
}

/* One sample line: name, optional {l="v",...}, one space, a number, nothing else. */
static void parse_sample(struct parsed *p, const char *line, struct family **current)
{
    assert_true(p->n < SAMPLES_MAX);
    struct sample *s = &p->s[p->n++];
    memset(s, 0, sizeof(*s));
    const char *q = line;
    if (!read_name(&q, s->name, sizeof(s->name)))
        fail_msg("no metric name: %s", line);
    size_t ll = 0;
    if (*q == '{') {
        q++;
        while (*q != '}') {
            char lname[NAME_MAX_BYTES], lval[64];
            if (!read_name(&q, lname, sizeof(lname)) || q[0] != '=' || q[1] != '"')
                fail_msg("bad label: %s", line);
            q += 2;
            size_t n = 0;
            while (*q && *q != '"' && *q != '\\' && *q != '\n' && n + 1 < sizeof(lval))
                lval[n++] = *q++;
            lval[n] = '\0';
            if (*q != '"')
                fail_msg("bad label value: %s", line);
            q++;
            if (strcmp(lname, "le") == 0) {
                snprintf(s->le, sizeof(s->le), "%s", lval);
            } else {
                int w = snprintf(s->labels + ll, sizeof(s->labels) - ll, "%s%s=\"%s\"",
                                 ll ? "," : "", lname, lval);
                assert_true(w > 0 && (size_t)w < sizeof(s->labels) - ll);
                ll += (size_t)w;
            }
            if (*q == ',')
                q++;
            else if (*q != '}')
                fail_msg("bad label list: %s", line);
        }
        q++;
    }
    if (*q != ' ')
        fail_msg("no space before the value: %s", line);
    q++;
    char *end;
    s->value = strtod(q, &end);
    if (end == q || *end != '\0')
        fail_msg("bad value: %s", line);
    struct family *f = family_of(p, s->name);
    if (!f || !f->help || !f->type[0])
        fail_msg("sample before its HELP and TYPE: %s", line);
    if (f->finished)
        fail_msg("samples of %s are not together: %s", f->name, line);
    if (*current && *current != f)
        (*current)->finished = true;
    *current = f;
    f->samples = true;
    snprintf(s->family, sizeof(s->family), "%s", f->name);
}

static void parse_text(struct parsed *p, char *text)
{
    p->s = calloc(SAMPLES_MAX, sizeof(*p->s));
    assert_non_null(p->s);
    p->n = p->nf = 0;
    struct family *current = NULL;
    size_t len = strlen(text);
    assert_true(len > 0);
    assert_true(text[len - 1] == '\n');
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        assert_true(line[0] != '\0'); /* no empty lines */
        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[NAME_MAX_BYTES];
            const char *q = line + 7;
            assert_true(read_name(&q, name, sizeof(name)));
            assert_true(*q == ' ' && q[1] != '\0');
            assert_true(strncmp(name, "cstore_", 7) == 0);
            struct family *f = family_get(p, name);
            if (f->help || f->samples)
                fail_msg("second HELP, or HELP after samples: %s", line);
            f->help = true;
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[NAME_MAX_BYTES];
            const char *q = line + 7;
            assert_true(read_name(&q, name, sizeof(name)));
            assert_true(*q == ' ');
            struct family *f = family_get(p, name);
            if (f->type[0] || f->samples)
                fail_msg("second TYPE, or TYPE after samples: %s", line);
            q++;
            assert_true(strcmp(q, "counter") == 0 || strcmp(q, "gauge") == 0 ||
                        strcmp(q, "histogram") == 0);
            snprintf(f->type, sizeof(f->type), "%s", q);
            if (strcmp(q, "counter") == 0)
                assert_true(has_suffix(name, "_total"));
        } else {
            assert_true(line[0] != '#');
            parse_sample(p, line, &current);
        }
    }
    for (size_t i = 0; i < p->nf; i++) {
        assert_true(p->f[i].help);
        assert_true(p->f[i].type[0] != '\0');
        assert_true(p->f[i].samples);
    }
}

/* The value of the sample name{labels} (it must exist once). */
static double sample_value(const struct parsed *p, const char *name, const char *labels)
{
    int found = 0;
    double v = 0;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->s[i].name, name) == 0 && strcmp(p->s[i].labels, labels) == 0 &&
            !p->s[i].le[0]) {
            v = p->s[i].value;
            found++;
        }
    if (found != 1)
        fail_msg("%s{%s}: %d samples", name, labels, found);
    return v;
}

/* Every series of every histogram: le strictly increasing, counts non-decreasing, the last
 * bucket +Inf and equal to _count, a _sum. Returns the series checked. */
static unsigned check_histograms(const struct parsed *p)
{
    unsigned series = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct sample *s = &p->s[i];
        if (!has_suffix(s->name, "_count"))
            continue;
        const struct family *f = NULL;
        for (size_t j = 0; j < p->nf; j++)
            if (strcmp(p->f[j].name, s->family) == 0)
                f = &p->f[j];
        if (!f || strcmp(f->type, "histogram") != 0)
            continue;
        char bucket[NAME_MAX_BYTES + 8], sum[NAME_MAX_BYTES + 8];
        snprintf(bucket, sizeof(bucket), "%s_bucket", f->name);
        snprintf(sum, sizeof(sum), "%s_sum", f->name);
        double last_le = -1, last_count = -1;
        bool inf = false;
        unsigned nb = 0;
        for (size_t j = 0; j < p->n; j++) {
            const struct sample *b = &p->s[j];
            if (strcmp(b->name, bucket) != 0 || strcmp(b->labels, s->labels) != 0)
                continue;
            assert_false(inf); /* +Inf is the last bucket */
            assert_true(b->le[0] != '\0');
            double le = strcmp(b->le, "+Inf") == 0 ? INFINITY : strtod(b->le, NULL);
            inf = isinf(le);
            assert_true(le > last_le);
            assert_true(b->value >= last_count);
            last_le = le;
            last_count = b->value;
            nb++;
        }
        assert_true(inf);
        assert_true(nb >= 10);
        assert_true(last_count == s->value);
        double total = sample_value(p, sum, s->labels);
        assert_true(total >= 0);
        assert_true(s->value > 0 || total == 0);
        series++;
    }
    return series;
}

/* The sum over shards of name{shard="i"[,op="op"]}. */
static double sum_shards(const struct parsed *p, const char *name, const char *op, unsigned n)
{
    double total = 0;
    for (unsigned i = 0; i < n; i++) {
        char labels[LABELS_MAX_BYTES];
        if (op)
            snprintf(labels, sizeof(labels), "shard=\"%u\",op=\"%s\"", i, op);
        else
            snprintf(labels, sizeof(labels), "shard=\"%u\"", i);
        total += sample_value(p, name, labels);
    }
    return total;
}

static unsigned test_shards(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2 : 1;
}

struct fx {
    char dir[CST_PATH_MAX]; /* the database folder (removed at teardown) */
    cs_db *db;              /* open database, or NULL */
    unsigned shards;        /* its shard count */
};

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    cst_tmpdir_make(fx->dir, sizeof(fx->dir), "metrics");
    fx->shards = test_shards();
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    if (fx->db)
        assert_int_equal(cs_close(fx->db), 0);
    assert_int_equal(cst_tmpdir_remove(fx->dir), 0);
    free(fx);
    return 0;
}

static void open_db(struct fx *fx, const char *durability)
{
    char shards[16];
    snprintf(shards, sizeof(shards), "shards=%u", fx->shards);
    char dur[32];
    snprintf(dur, sizeof(dur), "durability=%s", durability);
    int rc = cst_open(fx->dir, &fx->db, shards, dur, (const char *)NULL);
    if (rc)
        fail_msg("cs_open: %s (%s)", cs_strerror(rc), cs_last_error());
}

/* Two keys on different shards (or two keys when there is one shard). */
static void keys_apart(struct fx *fx, char *a, char *b, size_t size)
{
    snprintf(a, size, "txn-a");
    unsigned sa = cst_key_shard(fx->db, a, strlen(a));
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(b, size, "txn-b%u", i);
        if (fx->shards == 1 || cst_key_shard(fx->db, b, strlen(b)) != sa)
            return;
    }
    fail_msg("no key on another shard");
}

/* The known workload: PUTS blocking puts and SESSION_PUTS session puts, GETS gets (half through
 * the session), DELS deletes, one batch, one transaction (across shards when there are two), a
 * checkpoint. */
static void workload(struct fx *fx)
{
    char key[32];
    for (unsigned i = 0; i < PUTS; i++) {
        snprintf(key, sizeof(key), "key%05u", i);
        assert_int_equal(cs_put(fx->db, "m", key, strlen(key), "value", 5), 0);
    }
    cs_session *s;
    assert_int_equal(cs_session_open(fx->db, 256, &s), 0); /* holds every request */
    static char skeys[SESSION_PUTS][32];
    for (unsigned i = 0; i < SESSION_PUTS; i++) {
        snprintf(skeys[i], sizeof(skeys[i]), "skey%05u", i);
        assert_int_equal(cs_session_put(s, "m", skeys[i], strlen(skeys[i]), "v", 1, i), 0);
    }
    struct cs_completion c[64];
    for (unsigned got = 0; got < SESSION_PUTS;) {
        int n = cs_session_poll(s, c, 64, 1);
        assert_true(n > 0);
        for (int j = 0; j < n; j++)
            assert_int_equal(c[j].rc, 0);
        got += (unsigned)n;
    }
    static char gkeys[GETS / 2][32];
    for (unsigned i = 0; i < GETS / 2; i++) {
        snprintf(gkeys[i], sizeof(gkeys[i]), "key%05u", i);
        assert_int_equal(cs_session_get(s, "m", gkeys[i], strlen(gkeys[i]), i), 0);
    }
    for (unsigned got = 0; got < GETS / 2;) {
        int n = cs_session_poll(s, c, 64, 1);
        assert_true(n > 0);
        for (int j = 0; j < n; j++) {
            assert_int_equal(c[j].rc, 0);
            cs_free(c[j].val);
        }
        got += (unsigned)n;
    }
    cs_session_close(s);
    for (unsigned i = 0; i < GETS - GETS / 2; i++) {
        snprintf(key, sizeof(key), "key%05u", i);
        void *v;
        size_t vlen;
        assert_int_equal(cs_get(fx->db, "m", key, strlen(key), &v, &vlen), 0);
        cs_free(v);
    }
    for (unsigned i = 0; i < DELS; i++) {
        snprintf(key, sizeof(key), "key%05u", PUTS - 1 - i);
        assert_int_equal(cs_del(fx->db, "m", key, strlen(key)), 0);
    }
    cs_batch *b = cs_batch_new();
    assert_non_null(b);
    assert_int_equal(cs_batch_put(b, "m", "batch-key", 9, "v", 1), 0);
    assert_int_equal(cs_write(fx->db, b), 0);
    cs_batch_free(b);
    char ka[32], kb[32];
    keys_apart(fx, ka, kb, sizeof(ka));
    cs_txn *t;
    assert_int_equal(cs_txn_begin(fx->db, 0, &t), 0);
    assert_int_equal(cs_txn_put(t, "m", ka, strlen(ka), "1", 1), 0);
    assert_int_equal(cs_txn_put(t, "m", kb, strlen(kb), "2", 1), 0);
    assert_int_equal(cs_txn_commit(t), 0);
    assert_int_equal(cs_checkpoint(fx->db), 0);
}

static void test_prometheus_text_counts_the_workload_in_valid_syntax(void **state)
{
    struct fx *fx = *state;
    open_db(fx, "sync");
    workload(fx);
    char *text;
    size_t len;
    assert_int_equal(cs_metrics_prometheus(fx->db, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    struct parsed p;
    parse_text(&p, text);
    unsigned n = fx->shards;
    /* request, view get, commit, wal sync, frame size and checkpoint series per shard */
    assert_int_equal(check_histograms(&p), n * (4 + 5));
    const char *req = "cstore_request_duration_seconds_count";
    assert_true(sum_shards(&p, req, "put", n) == PUTS + SESSION_PUTS);
    assert_true(sum_shards(&p, req, "del", n) == DELS);
    assert_true(sum_shards(&p, req, "batch", n) == 1);
    double view_gets = sum_shards(&p, "cstore_operations_total", "view_get", n);
    assert_true(sum_shards(&p, req, "get", n) + view_gets == GETS);
    /* one thread made them all: it timed one in 16 (each shard's share may round either way) */
    double timed = sum_shards(&p, "cstore_view_get_duration_seconds_count", NULL, n);
    assert_true(timed >= floor(view_gets / 16) - n);
    assert_true(timed <= ceil(view_gets / 16) + n);
    assert_true(sum_shards(&p, "cstore_txn_commit_duration_seconds_count", NULL, n) == 1);
    assert_true(sum_shards(&p, "cstore_operations_total", "put", n) == PUTS + SESSION_PUTS);
    assert_true(sum_shards(&p, "cstore_operations_total", "del", n) == DELS);
    assert_true(sum_shards(&p, "cstore_txn_commits_total", NULL, n) == n);
    for (unsigned i = 0; i < n; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "shard=\"%u\"", i);
        /* every shard wrote frames in sync mode: each was a timed RWF_DSYNC write */
        double syncs = sample_value(&p, "cstore_wal_syncs_total", labels);
        assert_true(syncs > 0);
        assert_true(sample_value(&p, "cstore_wal_sync_duration_seconds_count", labels) == syncs);
        assert_true(sample_value(&p, "cstore_wal_frame_size_bytes_count", labels) ==
                    sample_value(&p, "cstore_wal_frames_total", labels));
        assert_true(sample_value(&p, "cstore_wal_frame_size_bytes_sum", labels) ==
                    sample_value(&p, "cstore_wal_bytes_total", labels));
        assert_true(sample_value(&p, "cstore_checkpoint_duration_seconds_count", labels) ==
                    sample_value(&p, "cstore_checkpoints_total", labels));
        assert_true(sample_value(&p, "cstore_checkpoints_total", labels) >= 1);
        assert_true(sample_value(&p, "cstore_tree_bytes", labels) > 0);
        assert_true(sample_value(&p, "cstore_read_only", labels) == 0);
        assert_true(sample_value(&p, "cstore_pending_requests", labels) == 0);
        /* the put series: a positive sum, and +Inf equal to _count */
        snprintf(labels, sizeof(labels), "shard=\"%u\",op=\"put\"", i);
        double puts = sample_value(&p, req, labels);
        assert_true(sample_value(&p, "cstore_request_duration_seconds_sum", labels) > 0);
        for (size_t j = 0; j < p.n; j++)
            if (strcmp(p.s[j].name, "cstore_request_duration_seconds_bucket") == 0 &&
                strcmp(p.s[j].labels, labels) == 0 && strcmp(p.s[j].le, "+Inf") == 0)
                assert_true(p.s[j].value == puts);
    }
    free(p.s);
    cs_free(text);
}

static void test_summaries_agree_with_the_workload(void **state)
{
    struct fx *fx = *state;
    open_db(fx, "sync");
    workload(fx);
    uint64_t puts = 0, commits = 0, gets = 0;
    for (unsigned i = 0; i < fx->shards; i++) {
        struct cs_metric_summary s;
        assert_int_equal(cs_metrics_summary(fx->db, i, CS_METRIC_PUT, &s), 0);
        puts += s.count;
        if (s.count) {
            assert_true(s.p50 > 0);
            assert_true(s.p50 <= s.p90);
            assert_true(s.p90 <= s.p99);
            assert_true(s.p99 <= s.p999);
            assert_true(s.p999 <= s.max);
            assert_true(s.sum >= s.count); /* every put took at least 1 ns */
        }
        assert_int_equal(cs_metrics_summary(fx->db, i, CS_METRIC_COMMIT, &s), 0);
        commits += s.count;
        assert_int_equal(cs_metrics_summary(fx->db, i, CS_METRIC_GET, &s), 0);
        gets += s.count;
        struct cs_shard_stats st;
        assert_int_equal(cs_stats(fx->db, i, &st), 0);
        gets += st.view_gets;
        assert_int_equal(cs_metrics_summary(fx->db, i, CS_METRIC_CHECKPOINT, &s), 0);
        assert_true(s.count >= 1);
        assert_true(s.p50 > 0);
        assert_int_equal(cs_metrics_summary(fx->db, i, CS_METRIC_WAL_FRAME_BYTES, &s), 0);
        assert_true(s.count > 0);
        assert_true(s.p50 >= 56); /* a frame header is 56 bytes */
    }
    assert_int_equal(puts, PUTS + SESSION_PUTS);
    assert_int_equal(commits, 1);
    assert_int_equal(gets, GETS);
}

struct async_wait {
    cs_db *db;      /* the database */
    unsigned shard; /* the shard that was written */
};

static bool fdatasync_recorded(void *arg)
{
    struct async_wait *w = arg;
    struct cs_metric_summary s;
    assert_int_equal(cs_metrics_summary(w->db, w->shard, CS_METRIC_WAL_SYNC, &s), 0);
    return s.count > 0;
}

static void test_async_mode_records_its_lone_fdatasyncs(void **state)
{
    struct fx *fx = *state;
    open_db(fx, "async");
    assert_int_equal(cs_put(fx->db, "m", "k", 1, "v", 1), 0);
    struct async_wait w = {.db = fx->db, .shard = cst_key_shard(fx->db, "k", 1)};
    /* the shard syncs every sync_interval_ms (10) */
    assert_true(cst_wait_until(fdatasync_recorded, &w, 20000));
    struct cs_metric_summary s;
    assert_int_equal(cs_metrics_summary(fx->db, w.shard, CS_METRIC_PUT, &s), 0);
    assert_int_equal(s.count, 1);
}

static void test_bad_arguments_are_refused(void **state)
{
    struct fx *fx = *state;
    open_db(fx, "sync");
    char *text = (char *)1;
    size_t len = 1;
    assert_int_equal(cs_metrics_prometheus(NULL, &text, &len), CS_EINVAL);
    assert_null(text);
    assert_int_equal(len, 0);
    assert_int_equal(cs_metrics_prometheus(fx->db, NULL, &len), CS_EINVAL);
    assert_int_equal(cs_metrics_prometheus(fx->db, &text, NULL), CS_EINVAL);
    struct cs_metric_summary s;
    assert_int_equal(cs_metrics_summary(NULL, 0, CS_METRIC_PUT, &s), CS_EINVAL);
    assert_int_equal(cs_metrics_summary(fx->db, fx->shards, CS_METRIC_PUT, &s), CS_EINVAL);
    assert_int_equal(cs_metrics_summary(fx->db, 0, CS_METRICS, &s), CS_EINVAL);
    assert_int_equal(cs_metrics_summary(fx->db, 0, CS_METRIC_PUT, NULL), CS_EINVAL);
    /* a fresh database: every histogram is empty, and the text is still complete */
    assert_int_equal(cs_metrics_summary(fx->db, 0, CS_METRIC_PUT, &s), 0);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.p99, 0);
    assert_int_equal(cs_metrics_prometheus(fx->db, &text, &len), 0);
    struct parsed p;
    parse_text(&p, text);
    assert_int_equal(check_histograms(&p), fx->shards * 9);
    free(p.s);
    cs_free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prometheus_text_counts_the_workload_in_valid_syntax,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_summaries_agree_with_the_workload, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_async_mode_records_its_lone_fdatasyncs, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments_are_refused, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
