/* Online backup (cs_backup) through the public API: the copy of an empty database and of one
 * with a checkpoint and WAL opens, holds the same records and passes cs_verify; the checkpoint
 * is a hard link and the segment being appended to a private copy (writes after the backup do
 * not reach the copy); a backup taken while four threads write durably holds, per shard, a
 * prefix of the acknowledged history (every write acknowledged before the call, none submitted
 * after it returned, and no write missing that was acknowledged before another one present on
 * the same shard; no torn frame); bad targets (not empty, a file, NULL, a missing parent) are
 * refused and change nothing; durability=none is CS_ENOTSUP; a backup that fails half way
 * removes what it created. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"

#define SHARDS 2
#define WRITERS 4
#define WRITES_MAX 100000u     /* per writer: a bound, far above what a run takes */
#define WRITES_AROUND 150u     /* each writer's writes acknowledged before and after the backup */
#define VALUE_PAD 300u         /* value bytes after "t<writer>:<seq>:": WAL segments fill fast */
#define KEYS_PER_WRITER SHARDS /* one key per shard */

static char root[256];
static int dirseq;

static void fresh(char *path, size_t size, const char *what)
{
    snprintf(path, size, "%s/%s%d", root, what, dirseq++);
}

/* Open dir with shards=SHARDS and extra "name=value" pairs (NULL-terminated). */
#define open_with(dir, db, ...) cst_open(dir, db, "shards=" CS_STRINGIFY(SHARDS), __VA_ARGS__)
#define CS_STRINGIFY(x) CS_STRINGIFY_(x)
#define CS_STRINGIFY_(x) #x

static size_t value_of(int i, int version, char *v)
{
    int n = snprintf(v, 600, "v%d.%d:", i, version);
    memset(v + n, 'a' + (i % 26), 400);
    return (size_t)n + 400;
}

static void put_i(cs_db *db, int i, int version)
{
    char k[32], v[600];
    snprintf(k, sizeof(k), "key-%06d", i);
    size_t vl = value_of(i, version, v);
    int rc = cs_put(db, "d", k, strlen(k), v, vl);
    if (rc)
        fail_msg("put %d: %s", i, cs_strerror(rc));
}

/* version 0: the key must be absent */
static void check_i(cs_db *db, int i, int version)
{
    char k[32], v[600];
    snprintf(k, sizeof(k), "key-%06d", i);
    void *got;
    size_t gl;
    int rc = cs_get(db, "d", k, strlen(k), &got, &gl);
    if (version == 0) {
        if (rc != CS_ENOTFOUND)
            fail_msg("key %d: expected absent, got %s", i, cs_strerror(rc));
        return;
    }
    if (rc)
        fail_msg("get %d: %s", i, cs_strerror(rc));
    size_t vl = value_of(i, version, v);
    if (gl != vl || memcmp(got, v, vl) != 0)
        fail_msg("key %d: wrong value (expected version %d)", i, version);
    cs_free(got);
}

static size_t cs_min8(size_t n)
{
    return n < 8 ? n : 8;
}

static size_t entries_of(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    unsigned long n = 0;
    assert_int_equal(fscanf(p, "%lu", &n), 1);
    pclose(p);
    return n;
}

/* The name of the newest WAL segment in dir (the one being appended to). */
static void newest_segment(const char *dir, char *name, size_t size)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "ls '%s' | grep '^wal-.*\\.log$' | sort | tail -n 1", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(name, (int)size, p));
    name[strcspn(name, "\n")] = '\0';
    pclose(p);
}

static void stat_of(const char *dir, const char *name, struct stat *st)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (stat(path, st) != 0)
        fail_msg("stat %s: %s", path, strerror(errno));
}

/* In every shard folder of the copy: the checkpoint is the source's file (a hard link: same
 * filesystem here), the segment being appended to is a file of its own. */
static void check_links(const char *src, const char *copy)
{
    for (int s = 0; s < SHARDS; s++) {
        char sd[400], cd[400], seg[64], snap[64];
        snprintf(sd, sizeof(sd), "%s/shard-%03d", src, s);
        snprintf(cd, sizeof(cd), "%s/shard-%03d", copy, s);
        newest_segment(cd, seg, sizeof(seg));
        struct stat a, b;
        char path[700];
        stat_of(cd, seg, &b);
        assert_int_equal(b.st_nlink, 1);
        snprintf(path, sizeof(path), "%s/%s", sd, seg);
        if (stat(path, &a) == 0) /* (unless a checkpoint of the source removed it since) */
            assert_true(a.st_ino != b.st_ino);
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "ls '%s' | grep '^snap-' | head -n 1", cd);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(snap, sizeof(snap), p));
        pclose(p);
        snap[strcspn(snap, "\n")] = '\0';
        stat_of(cd, snap, &b);
        snprintf(path, sizeof(path), "%s/%s", sd, snap);
        if (stat(path, &a) == 0) /* (unless a checkpoint of the source removed it since) */
            assert_true(a.st_ino == b.st_ino);
    }
}

static void verify_ok(const char *dir)
{
    char *report = NULL;
    int rc = cs_verify(dir, NULL, &report);
    if (rc)
        fail_msg("verify %s: %s: %s", dir, cs_strerror(rc), report ? report : "");
    assert_non_null(strstr(report, "torn tail 0 bytes"));
    cs_free(report);
}

static void test_backup_of_an_empty_database_opens_and_verifies(void **state)
{
    (void)state;
    char src[300], bak[300];
    fresh(src, sizeof(src), "db");
    fresh(bak, sizeof(bak), "bak");
    cs_db *db;
    assert_int_equal(open_with(src, &db, NULL), 0);
    assert_int_equal(cs_backup(db, bak), 0);
    assert_int_equal(cs_close(db), 0);
    verify_ok(bak);
    assert_int_equal(open_with(bak, &db, NULL), 0);
    char **names;
    size_t count;
    assert_int_equal(cs_collection_list(db, &names, &count), 0);
    assert_int_equal(count, 0);
    cs_free(names);
    /* the copy is a database of its own: it takes writes and keeps them */
    put_i(db, 1, 1);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(open_with(bak, &db, NULL), 0);
    check_i(db, 1, 1);
    assert_int_equal(cs_close(db), 0);
    verify_ok(bak);
    assert_int_equal(open_with(src, &db, NULL), 0);
    check_i(db, 1, 0);
    assert_int_equal(cs_close(db), 0);
}

static void test_backup_holds_checkpoint_and_wal_and_nothing_written_after_it(void **state)
{
    (void)state;
    char src[300], bak[300];
    fresh(src, sizeof(src), "db");
    fresh(bak, sizeof(bak), "bak");
    cs_db *db;
    assert_int_equal(open_with(src, &db, "wal_segment_bytes=1M", "checkpoint_wal_bytes=0", NULL),
                     0);
    for (int i = 0; i < 3000; i++)
        put_i(db, i, 1);
    assert_int_equal(cs_checkpoint(db), 0);
    for (int i = 0; i < 3000; i += 2)
        put_i(db, i, 2); /* WAL after the checkpoint, over several segments */
    assert_int_equal(cs_del(db, "d", "key-000001", 10), 0);
    assert_int_equal(cs_backup(db, bak), 0);
    check_links(src, bak);
    /* writes after the backup stay out of the copy, also while the source keeps appending to
     * the segment the backup copied */
    for (int i = 0; i < 3000; i += 3)
        put_i(db, i, 3);
    put_i(db, 5000, 1);
    verify_ok(bak); /* while the source is open and writing */
    assert_int_equal(cs_close(db), 0);
    verify_ok(bak);
    assert_int_equal(open_with(bak, &db, NULL), 0);
    for (int i = 0; i < 3000; i++)
        check_i(db, i, i == 1 ? 0 : i % 2 == 0 ? 2 : 1);
    check_i(db, 5000, 0);
    for (int s = 0; s < SHARDS; s++) {
        struct cs_shard_stats st;
        assert_int_equal(cs_stats(db, (unsigned)s, &st), 0);
        assert_int_equal(st.recovery_torn_bytes, 0);
    }
    assert_int_equal(cs_close(db), 0);
    /* the source is intact */
    assert_int_equal(open_with(src, &db, NULL), 0);
    check_i(db, 0, 3);
    check_i(db, 5000, 1);
    assert_int_equal(cs_close(db), 0);
    verify_ok(src);
}

/* ---- four writers during the backup ---- */

struct wrec {
    uint32_t seq;    /* the writer's sequence number (its value) */
    uint8_t shard;   /* shard of the key written */
    uint64_t submit; /* ticket taken before the put */
    uint64_t ack;    /* ticket taken after it returned 0 */
};

struct writer {
    cs_db *db;                      /* the source */
    int id;                         /* 0..WRITERS-1 */
    char keys[KEYS_PER_WRITER][32]; /* its key on each shard */
    size_t klen[KEYS_PER_WRITER];   /* their lengths */
    struct wrec *recs;              /* its acknowledged writes, in order */
    uint32_t n;                     /* entries of recs */
    int rc;                         /* first failure */
};

static _Atomic uint64_t ticket;     /* orders submissions and acknowledgments */
static _Atomic uint64_t backup_end; /* ticket taken after cs_backup returned (or max) */
static _Atomic int writers_stop;    /* the main thread has seen enough */
static sem_t before_sem;            /* posted by each writer after WRITES_AROUND acks */
static sem_t after_sem;             /* and after WRITES_AROUND acks past backup_end */

static size_t writer_value(int id, uint32_t seq, char *v)
{
    int n = snprintf(v, 64, "t%d:%" PRIu32 ":", id, seq);
    memset(v + n, 'a' + (int)(seq % 26), VALUE_PAD);
    return (size_t)n + VALUE_PAD;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint32_t after = 0;
    char v[64 + VALUE_PAD];
    for (uint32_t seq = 1; seq <= WRITES_MAX && !atomic_load(&writers_stop); seq++) {
        unsigned s = seq % SHARDS;
        size_t vl = writer_value(w->id, seq, v);
        uint64_t submit = atomic_fetch_add(&ticket, 1);
        int rc = cs_put(w->db, "c", w->keys[s], w->klen[s], v, vl);
        uint64_t ack = atomic_fetch_add(&ticket, 1);
        if (rc) {
            w->rc = rc;
            break;
        }
        w->recs[w->n++] =
            (struct wrec){.seq = seq, .shard = (uint8_t)s, .submit = submit, .ack = ack};
        if (w->n == WRITES_AROUND)
            sem_post(&before_sem);
        if (ack > atomic_load(&backup_end) && ++after == WRITES_AROUND)
            sem_post(&after_sem);
    }
    if (w->n < WRITES_AROUND)
        sem_post(&before_sem); /* failed: do not leave the main thread waiting */
    if (after < WRITES_AROUND)
        sem_post(&after_sem);
    return NULL;
}

/* A key for writer id on shard s. */
static void writer_key(cs_db *db, struct writer *w, unsigned s)
{
    for (int i = 0; i < 100000; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "w%d-%d", w->id, i);
        if (cst_key_shard(db, k, (size_t)n) == s) {
            memcpy(w->keys[s], k, (size_t)n + 1);
            w->klen[s] = (size_t)n;
            return;
        }
    }
    fail_msg("no key for shard %u", s);
}

/* The sequence number the copy holds for writer w's key on shard s (0: absent); its value must be
 * exactly what w wrote with that number. */
static uint32_t held_seq(cs_db *copy, const struct writer *w, unsigned s)
{
    void *got;
    size_t gl;
    int rc = cs_get(copy, "c", w->keys[s], w->klen[s], &got, &gl);
    if (rc == CS_ENOTFOUND)
        return 0;
    if (rc)
        fail_msg("get %s: %s", w->keys[s], cs_strerror(rc));
    int id = -1;
    uint32_t seq = 0;
    if (sscanf(got, "t%d:%" SCNu32 ":", &id, &seq) != 2 || id != w->id || seq % SHARDS != s)
        fail_msg("key %s holds a value its writer never wrote", w->keys[s]);
    char v[64 + VALUE_PAD];
    size_t vl = writer_value(w->id, seq, v);
    if (gl != vl || memcmp(got, v, vl) != 0)
        fail_msg("key %s: the value of seq %" PRIu32 " is damaged", w->keys[s], seq);
    cs_free(got);
    return seq;
}

static void check_prefix(cs_db *copy, struct writer *ws, uint64_t start, uint64_t end)
{
    uint64_t max_submit_in[SHARDS], min_ack_out[SHARDS];
    unsigned in_count[SHARDS];
    for (int s = 0; s < SHARDS; s++) {
        max_submit_in[s] = 0;
        min_ack_out[s] = UINT64_MAX;
        in_count[s] = 0;
    }
    for (int t = 0; t < WRITERS; t++) {
        struct writer *w = &ws[t];
        uint32_t held[KEYS_PER_WRITER];
        for (unsigned s = 0; s < SHARDS; s++) {
            held[s] = held_seq(copy, w, s);
            /* a writer stops between two puts: every write it submitted was acknowledged */
            assert_true(held[s] <= w->n);
        }
        for (uint32_t i = 0; i < w->n; i++) {
            const struct wrec *r = &w->recs[i];
            bool in = held[r->shard] >= r->seq;
            if (r->ack < start && !in)
                fail_msg("writer %d seq %" PRIu32 ": acknowledged before the backup, missing", t,
                         r->seq);
            if (r->submit > end && in)
                fail_msg("writer %d seq %" PRIu32 ": submitted after the backup, in the copy", t,
                         r->seq);
            if (in) {
                in_count[r->shard]++;
                if (r->submit > max_submit_in[r->shard])
                    max_submit_in[r->shard] = r->submit;
            } else if (r->ack < min_ack_out[r->shard]) {
                min_ack_out[r->shard] = r->ack;
            }
        }
    }
    for (int s = 0; s < SHARDS; s++) {
        /* no write missing that was acknowledged before one present was submitted */
        if (min_ack_out[s] < max_submit_in[s])
            fail_msg("shard %d: not a prefix (a write acknowledged at %" PRIu64
                     " is missing, one submitted at %" PRIu64 " is there)",
                     s, min_ack_out[s], max_submit_in[s]);
        assert_true(in_count[s] >= WRITES_AROUND); /* the writes before the backup at least */
    }
}

/* Load PRELOAD_RECORDS records of hardly compressible values into collection "p" (one batch per
 * shard at a time), so that a checkpoint takes a while and the writers' frames pile up in the
 * WAL after the checkpoint the backup takes. */
#define PRELOAD_RECORDS 60000u
#define PRELOAD_VALUE_BYTES 200u
#define PRELOAD_BATCH 10000u
static void preload(cs_db *db)
{
    cs_batch *b[SHARDS];
    for (int s = 0; s < SHARDS; s++)
        assert_non_null(b[s] = cs_batch_new());
    uint64_t x = 88172645463325252ull;
    char v[PRELOAD_VALUE_BYTES];
    for (uint32_t i = 0; i < PRELOAD_RECORDS; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "p%08" PRIu32, i);
        for (size_t j = 0; j < sizeof(v); j += 8) {
            x ^= x << 13; /* xorshift64 */
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(v + j, &x, cs_min8(sizeof(v) - j));
        }
        unsigned s = cst_key_shard(db, k, (size_t)n);
        assert_int_equal(cs_batch_put(b[s], "p", k, (size_t)n, v, sizeof(v)), 0);
        if (cs_batch_count(b[s]) == PRELOAD_BATCH) {
            assert_int_equal(cs_write(db, b[s]), 0);
            cs_batch_clear(b[s]);
        }
    }
    for (int s = 0; s < SHARDS; s++) {
        if (cs_batch_count(b[s]))
            assert_int_equal(cs_write(db, b[s]), 0);
        cs_batch_free(b[s]);
    }
}

static void test_backup_while_four_threads_write_holds_a_prefix_per_shard(void **state)
{
    (void)state;
    char src[300], bak[300];
    fresh(src, sizeof(src), "db");
    fresh(bak, sizeof(bak), "bak");
    cs_db *db;
    /* small segments and automatic checkpoints: segments fill and are removed during the
     * backup */
    assert_int_equal(open_with(src, &db, "wal_segment_bytes=1M", "checkpoint_wal_bytes=1M", NULL),
                     0);
    assert_int_equal(cs_collection_create(db, "c"), 0);
    preload(db);
    static struct writer ws[WRITERS];
    pthread_t th[WRITERS];
    atomic_store(&ticket, 1);
    atomic_store(&backup_end, UINT64_MAX);
    atomic_store(&writers_stop, 0);
    assert_int_equal(sem_init(&before_sem, 0, 0), 0);
    assert_int_equal(sem_init(&after_sem, 0, 0), 0);
    for (int t = 0; t < WRITERS; t++) {
        memset(&ws[t], 0, sizeof(ws[t]));
        ws[t].db = db;
        ws[t].id = t;
        for (unsigned s = 0; s < SHARDS; s++)
            writer_key(db, &ws[t], s);
        ws[t].recs = calloc(WRITES_MAX, sizeof(struct wrec));
        assert_non_null(ws[t].recs);
    }
    for (int t = 0; t < WRITERS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer_main, &ws[t]), 0);
    for (int t = 0; t < WRITERS; t++)
        while (sem_wait(&before_sem) != 0)
            ;
    uint64_t start = atomic_fetch_add(&ticket, 1);
    int rc = cs_backup(db, bak);
    uint64_t end = atomic_fetch_add(&ticket, 1);
    atomic_store(&backup_end, end);
    for (int t = 0; t < WRITERS; t++)
        while (sem_wait(&after_sem) != 0)
            ;
    atomic_store(&writers_stop, 1);
    for (int t = 0; t < WRITERS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(rc, 0);
    for (int t = 0; t < WRITERS; t++)
        assert_int_equal(ws[t].rc, 0);
    check_links(src, bak);
    print_message("writers: %u %u %u %u acknowledged puts\n", ws[0].n, ws[1].n, ws[2].n, ws[3].n);
    assert_int_equal(cs_close(db), 0);
    sem_destroy(&before_sem);
    sem_destroy(&after_sem);

    verify_ok(bak);
    assert_int_equal(open_with(bak, &db, NULL), 0);
    for (int s = 0; s < SHARDS; s++) {
        struct cs_shard_stats st;
        assert_int_equal(cs_stats(db, (unsigned)s, &st), 0);
        assert_int_equal(st.recovery_torn_bytes, 0);
    }
    check_prefix(db, ws, start, end);
    for (int s = 0; s < SHARDS; s++) {
        struct cs_shard_stats st;
        assert_int_equal(cs_stats(db, (unsigned)s, &st), 0);
        print_message("copy of shard %d: checkpoint LSN %" PRIu64 ", %" PRIu64
                      " WAL records replayed, %" PRIu64 " records\n",
                      s, st.checkpoint_lsn, st.recovered_records, st.records);
    }
    assert_int_equal(cs_close(db), 0);
    /* the source holds every acknowledged write: its last one per key */
    assert_int_equal(open_with(src, &db, NULL), 0);
    for (int t = 0; t < WRITERS; t++) {
        uint32_t last[KEYS_PER_WRITER] = {0};
        for (uint32_t i = 0; i < ws[t].n; i++)
            last[ws[t].recs[i].shard] = ws[t].recs[i].seq;
        for (unsigned s = 0; s < SHARDS; s++)
            assert_true(held_seq(db, &ws[t], s) >= last[s]);
        free(ws[t].recs);
    }
    assert_int_equal(cs_close(db), 0);
}

/* ---- refusals and failures ---- */

static void test_backup_into_a_non_empty_folder_fails_and_changes_nothing(void **state)
{
    (void)state;
    char src[300], bak[300], path[400];
    fresh(src, sizeof(src), "db");
    fresh(bak, sizeof(bak), "bak");
    cs_db *db;
    assert_int_equal(open_with(src, &db, NULL), 0);
    put_i(db, 1, 1);
    assert_int_equal(mkdir(bak, 0755), 0);
    snprintf(path, sizeof(path), "%s/keep", bak);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("mine", f);
    fclose(f);
    assert_int_equal(cs_backup(db, bak), CS_EEXIST);
    assert_int_equal(entries_of(bak), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4);
    /* the database's own folder is not empty either */
    assert_int_equal(cs_backup(db, src), CS_EEXIST);
    /* a file */
    assert_int_equal(cs_backup(db, path), CS_ENOTDIR);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4);
    /* a missing parent */
    snprintf(path, sizeof(path), "%s/no/such", bak);
    assert_int_equal(cs_backup(db, path), -ENOENT);
    assert_int_equal(entries_of(bak), 1);
    /* bad arguments */
    assert_int_equal(cs_backup(NULL, bak), CS_EINVAL);
    assert_int_equal(cs_backup(db, NULL), CS_EINVAL);
    assert_int_equal(cs_backup(db, ""), CS_EINVAL);
    /* an empty folder is fine */
    char empty[300];
    fresh(empty, sizeof(empty), "empty");
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_int_equal(cs_backup(db, empty), 0);
    assert_int_equal(cs_close(db), 0);
    verify_ok(empty);
    assert_int_equal(open_with(empty, &db, NULL), 0);
    check_i(db, 1, 1);
    assert_int_equal(cs_close(db), 0);
}

static void test_backup_with_durability_none_is_not_supported(void **state)
{
    (void)state;
    char src[300], bak[300];
    fresh(src, sizeof(src), "db");
    fresh(bak, sizeof(bak), "bak");
    cs_db *db;
    assert_int_equal(open_with(src, &db, "durability=none", NULL), 0);
    put_i(db, 1, 1);
    assert_int_equal(cs_backup(db, bak), CS_ENOTSUP);
    struct stat st;
    assert_int_equal(stat(bak, &st), -1);
    assert_int_equal(cs_close(db), 0);
}

static void test_backup_in_async_mode_holds_what_was_acknowledged(void **state)
{
    (void)state;
    char src[300], bak[300];
    fresh(src, sizeof(src), "db");
    fresh(bak, sizeof(bak), "bak");
    cs_db *db;
    assert_int_equal(open_with(src, &db, "durability=async", NULL), 0);
    for (int i = 0; i < 500; i++)
        put_i(db, i, 1);
    assert_int_equal(cs_backup(db, bak), 0);
    put_i(db, 1000, 1);
    assert_int_equal(cs_close(db), 0);
    verify_ok(bak);
    assert_int_equal(open_with(bak, &db, NULL), 0);
    for (int i = 0; i < 500; i++)
        check_i(db, i, 1);
    check_i(db, 1000, 0);
    assert_int_equal(cs_close(db), 0);
}

/* Shard 1 turns read-only (a failed WAL write): the backup fails there, after shard 0's part
 * was made, and takes everything back. */
static void test_a_failed_backup_removes_what_it_created(void **state)
{
    (void)state;
    char src[300], bak[300], empty[300];
    fresh(src, sizeof(src), "db");
    fresh(bak, sizeof(bak), "bak");
    fresh(empty, sizeof(empty), "empty");
    cs_db *db;
    assert_int_equal(open_with(src, &db, "fault=write_eio=1", NULL), 0);
    const char *k = NULL;
    char kb[32];
    for (int i = 0; i < 1000 && !k; i++) {
        int n = snprintf(kb, sizeof(kb), "k%d", i);
        if (cst_key_shard(db, kb, (size_t)n) == 1)
            k = kb;
    }
    assert_non_null(k);
    assert_int_equal(cs_put(db, "d", k, strlen(k), "x", 1), CS_EIO); /* shard 1: read-only */
    assert_int_equal(cs_backup(db, bak), CS_EIO);
    struct stat st;
    assert_int_equal(stat(bak, &st), -1); /* created by the call, removed again */
    assert_int_equal(errno, ENOENT);
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_int_equal(cs_backup(db, empty), CS_EIO);
    assert_int_equal(entries_of(empty), 0); /* kept, and empty again */
    assert_int_equal(cs_close(db), CS_EIO); /* the read-only shard's error */
}

static int setup(void **state)
{
    (void)state;
    cst_tmpdir_make(root, sizeof(root), "backup");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return cst_tmpdir_remove(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_of_an_empty_database_opens_and_verifies),
        cmocka_unit_test(test_backup_holds_checkpoint_and_wal_and_nothing_written_after_it),
        cmocka_unit_test(test_backup_while_four_threads_write_holds_a_prefix_per_shard),
        cmocka_unit_test(test_backup_into_a_non_empty_folder_fails_and_changes_nothing),
        cmocka_unit_test(test_backup_with_durability_none_is_not_supported),
        cmocka_unit_test(test_backup_in_async_mode_holds_what_was_acknowledged),
        cmocka_unit_test(test_a_failed_backup_removes_what_it_created),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
