/* cstore-bench driver for SQLite, through its C API (sqlite3.h, Debian libsqlite3-dev).
 *
 * One database file, <db>/bench.sqlite, in WAL mode, with one table
 *   kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID
 * (a clustered B-tree on the key, the closest SQLite has to a key/value store). Each thread
 * opens its own connection (SQLITE_OPEN_NOMUTEX) with prepared statements for put (INSERT OR
 * REPLACE), get, delete, seek (k >= ? ORDER BY k) and full scan, prepared once with
 * SQLITE_PREPARE_PERSISTENT and reset after each use. Expert settings, all in sqlb_tune (each
 * connection): mmap_size as large as the library allows, so that reads come from the page cache
 * by memory map instead of copying pages into SQLite's cache (read(2) per page); cache_size of
 * SQLB_CACHE_KIB per connection (default 2 MiB), so that a write transaction of a bulk load
 * keeps its B-tree pages; temp_store=MEMORY.
 * Writers: SQLite admits one writer at a time and its busy handler sleeps for milliseconds
 * between retries, so writers take a mutex of the store, as an application sharing one SQLite
 * database between threads would; readers never wait (WAL). With batch N a thread commits every
 * N writes inside BEGIN IMMEDIATE ... COMMIT, holding the mutex for the transaction.
 * Durability: sync (the default, as cstore's) = synchronous=FULL, the WAL is fsynced at every
 * commit; async = synchronous=NORMAL, which in WAL mode syncs only at checkpoints, so the last
 * commits may be lost; none = synchronous=OFF, no sync at all. persist (--persist) opens a
 * connection with synchronous=FULL, runs a full checkpoint (the WAL is synced and copied into the
 * database file, which is synced) and then fsyncs the database file and the WAL itself: a
 * checkpoint that finds the WAL already copied (by the automatic checkpoints of a load with
 * synchronous=OFF) syncs nothing, so without them what those wrote could still be in the page
 * cache. Then everything committed is on disk.
 * Transactions: a read-write one is BEGIN IMMEDIATE ... COMMIT on the thread's connection, with
 * the prepared statements of the plain calls inside it, under the writer mutex (so transactions
 * take turns, as SQLite's single writer makes them, without sleeping in the busy handler); the
 * busy timeout stays for what else may hold the lock (a checkpoint), and a BUSY or LOCKED that
 * outlasts it is BENCH_CONFLICT (rolled back, retried), not an error. Durability as above:
 * synchronous=FULL in WAL mode syncs the WAL at every COMMIT, the equivalent of an fdatasync
 * per commit (NORMAL in WAL mode would sync only at checkpoints, which is not durable per
 * commit). A read-only transaction is BEGIN (deferred: a WAL read snapshot from its first read)
 * ... COMMIT, without the mutex.
 * SQLite has no asynchronous calls: the driver is blocking only. Error codes: SQLite result
 * codes as -(SQLB_ERR_BASE + code), errno values as -errno. When the Makefile found no
 * sqlite3.h this file compiles to nothing. */
#include "bench.h"

#ifdef BENCH_HAVE_SQLITE

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SQLB_ERR_BASE 20000          /* SQLite code c is returned as -(SQLB_ERR_BASE + c) */
#define SQLB_PATH_BYTES 4096u        /* <db>/bench.sqlite */
#define SQLB_BUSY_TIMEOUT_MS 60000   /* checkpoints and schema locks: wait, do not fail */
#define SQLB_MMAP_BYTES 0x7fff0000ll /* SQLite's default SQLITE_MAX_MMAP_SIZE caps mmap_size */
#define SQLB_CACHE_KIB 65536         /* page cache per connection (default 2 MiB) */

struct sqlb_store {
    char path[SQLB_PATH_BYTES]; /* the database file */
    const char *sync_pragma;    /* PRAGMA synchronous=... for every connection */
    pthread_mutex_t writer;     /* one writer at a time */
};

enum sqlb_stmt {
    SQLB_PUT,
    SQLB_GET,
    SQLB_DEL,
    SQLB_SEEK,
    SQLB_SCAN,
    SQLB_BEGIN,
    SQLB_COMMIT,
    SQLB_BEGIN_READ,
    SQLB_ROLLBACK,
    SQLB_N
};

static const char *const sqlb_sql[SQLB_N] = {
    "INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)",
    "SELECT v FROM kv WHERE k = ?1",
    "DELETE FROM kv WHERE k = ?1",
    "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k",
    "SELECT k, v FROM kv ORDER BY k",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "BEGIN",
    "ROLLBACK",
};

struct sqlb_thread {
    struct sqlb_store *st;
    sqlite3 *db;
    sqlite3_stmt *stmt[SQLB_N];
    unsigned batch;   /* writes per transaction */
    unsigned pending; /* writes in the open transaction (the writer mutex is held while > 0) */
    int cursor_open;  /* the seek or scan statement is in use */
    int txn_readonly; /* the open transaction (txn_begin) is read-only: no writer mutex */
};

struct sqlb_cursor {
    struct sqlb_thread *t;
    sqlite3_stmt *stmt; /* the seek or scan statement */
    int pending;        /* a seek stepped it: the next scan_next returns that row */
    int pending_rc;     /* that step's result */
};

static int sqlb_rc(int rc)
{
    return -(SQLB_ERR_BASE + rc);
}

/* Run one statement that returns no rows; 0 or an error. */
static int sqlb_exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sqlb_rc(rc);
}

static int sqlb_open(const struct bench_config *cfg, void **store)
{
    struct sqlb_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    if (snprintf(st->path, sizeof(st->path), "%s/bench.sqlite", cfg->db_path) >=
        (int)sizeof(st->path)) {
        free(st);
        return -ENAMETOOLONG;
    }
    const char *d = cfg->durability != NULL ? cfg->durability : "sync";
    st->sync_pragma = strcmp(d, "sync") == 0    ? "PRAGMA synchronous=FULL"
                      : strcmp(d, "async") == 0 ? "PRAGMA synchronous=NORMAL"
                                                : "PRAGMA synchronous=OFF";
    pthread_mutex_init(&st->writer, NULL);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    rc = rc == SQLITE_OK ? 0 : sqlb_rc(rc);
    if (rc == 0)
        rc = sqlb_exec(db, "PRAGMA journal_mode=WAL");
    if (rc == 0)
        rc = sqlb_exec(db, "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) "
                           "WITHOUT ROWID");
    sqlite3_close(db);
    if (rc != 0) {
        pthread_mutex_destroy(&st->writer);
        free(st);
        return rc;
    }
    *store = st;
    return 0;
}

static int sqlb_close(void *store)
{
    struct sqlb_store *st = store;
    pthread_mutex_destroy(&st->writer);
    free(st);
    return 0;
}

/* The expert settings of a connection (see the file comment). */
static int sqlb_tune(sqlite3 *db)
{
    char sql[128];
    snprintf(sql, sizeof(sql),
             "PRAGMA mmap_size=%lld; PRAGMA cache_size=-%d; "
             "PRAGMA temp_store=MEMORY",
             SQLB_MMAP_BYTES, SQLB_CACHE_KIB);
    return sqlb_exec(db, sql);
}

/* fsync a file by name (syncs its dirty pages whoever wrote them); a missing file is fine. */
static int sqlb_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int sqlb_persist(void *store)
{
    struct sqlb_store *st = store;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    rc = rc == SQLITE_OK ? 0 : sqlb_rc(rc);
    if (rc == 0)
        rc = sqlite3_busy_timeout(db, SQLB_BUSY_TIMEOUT_MS) == SQLITE_OK ? 0 : -EINVAL;
    if (rc == 0)
        rc = sqlb_exec(db, "PRAGMA synchronous=FULL");
    if (rc == 0)
        rc = sqlb_exec(db, "PRAGMA wal_checkpoint(FULL)");
    sqlite3_close(db);
    char wal[SQLB_PATH_BYTES + 8];
    snprintf(wal, sizeof(wal), "%s-wal", st->path);
    if (rc == 0)
        rc = sqlb_fsync_path(st->path);
    if (rc == 0)
        rc = sqlb_fsync_path(wal);
    return rc;
}

static void sqlb_thread_free(struct sqlb_thread *t)
{
    for (unsigned i = 0; i < SQLB_N; i++)
        sqlite3_finalize(t->stmt[i]);
    sqlite3_close(t->db);
    free(t);
}

static int sqlb_thread_open(void *store, unsigned depth, unsigned batch, void **th)
{
    (void)depth;
    struct sqlb_thread *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->st = store;
    t->batch = batch > 1 ? batch : 1;
    int rc =
        sqlite3_open_v2(t->st->path, &t->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    rc = rc == SQLITE_OK ? 0 : sqlb_rc(rc);
    if (rc == 0)
        rc = sqlite3_busy_timeout(t->db, SQLB_BUSY_TIMEOUT_MS) == SQLITE_OK ? 0 : -EINVAL;
    if (rc == 0)
        rc = sqlb_exec(t->db, t->st->sync_pragma);
    if (rc == 0)
        rc = sqlb_tune(t->db);
    for (unsigned i = 0; rc == 0 && i < SQLB_N; i++) {
        int prc = sqlite3_prepare_v3(t->db, sqlb_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &t->stmt[i],
                                     NULL);
        rc = prc == SQLITE_OK ? 0 : sqlb_rc(prc);
    }
    if (rc != 0) {
        sqlb_thread_free(t);
        return rc;
    }
    *th = t;
    return 0;
}

/* Step a statement that returns no row, then reset it; 0 or an error. */
static int sqlb_step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : sqlb_rc(rc);
}

static int sqlb_flush(void *th)
{
    struct sqlb_thread *t = th;
    if (t->pending == 0)
        return 0;
    int rc = sqlb_step_done(t->stmt[SQLB_COMMIT]);
    if (rc != 0)
        sqlb_exec(t->db, "ROLLBACK");
    t->pending = 0;
    pthread_mutex_unlock(&t->st->writer);
    return rc;
}

static void sqlb_thread_close(void *th)
{
    struct sqlb_thread *t = th;
    if (t->pending > 0) {
        sqlb_exec(t->db, "ROLLBACK");
        t->pending = 0;
        pthread_mutex_unlock(&t->st->writer);
    }
    sqlb_thread_free(t);
}

/* Run a bound write statement s under the writer mutex, in a batch when batch > 1. */
static int sqlb_write(struct sqlb_thread *t, sqlite3_stmt *s)
{
    int rc = 0;
    if (t->pending == 0) {
        pthread_mutex_lock(&t->st->writer);
        if (t->batch > 1)
            rc = sqlb_step_done(t->stmt[SQLB_BEGIN]);
    }
    if (rc == 0)
        rc = sqlb_step_done(s);
    int missing = rc == 0 && sqlite3_changes(t->db) == 0;
    sqlite3_clear_bindings(s);
    if (t->batch == 1 || rc != 0) {
        if (t->pending > 0 || (t->batch > 1 && rc != 0))
            sqlb_exec(t->db, "ROLLBACK");
        t->pending = 0;
        pthread_mutex_unlock(&t->st->writer);
        return rc != 0 ? rc : missing ? BENCH_NOTFOUND : 0;
    }
    if (++t->pending >= t->batch)
        rc = sqlb_flush(t);
    return rc != 0 ? rc : missing ? BENCH_NOTFOUND : 0;
}

static int sqlb_put(void *th, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct sqlb_thread *t = th;
    sqlite3_stmt *s = t->stmt[SQLB_PUT];
    sqlite3_bind_blob(s, 1, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, vlen > 0 ? val : "", (int)vlen, SQLITE_STATIC);
    return sqlb_write(t, s);
}

static int sqlb_del(void *th, const void *key, size_t klen)
{
    struct sqlb_thread *t = th;
    sqlite3_stmt *s = t->stmt[SQLB_DEL];
    sqlite3_bind_blob(s, 1, key, (int)klen, SQLITE_STATIC);
    return sqlb_write(t, s);
}

static int sqlb_get(void *th, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    struct sqlb_thread *t = th;
    sqlite3_stmt *s = t->stmt[SQLB_GET];
    sqlite3_bind_blob(s, 1, key, (int)klen, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(s, 0);
        *vlen = (size_t)sqlite3_column_bytes(s, 0);
        if (v != NULL)
            memcpy(buf, v, *vlen < cap ? *vlen : cap);
    } else {
        ret = rc == SQLITE_DONE ? BENCH_NOTFOUND : sqlb_rc(rc);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return ret;
}

static int sqlb_scan_open(void *th, void **cursor)
{
    struct sqlb_thread *t = th;
    if (t->cursor_open)
        return -EBUSY;
    struct sqlb_cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->t = t;
    c->stmt = t->stmt[SQLB_SCAN];
    t->cursor_open = 1;
    *cursor = c;
    return 0;
}

static int sqlb_scan_seek(void *cursor, const void *key, size_t klen)
{
    struct sqlb_cursor *c = cursor;
    sqlite3_reset(c->stmt);
    c->stmt = c->t->stmt[SQLB_SEEK];
    sqlite3_bind_blob(c->stmt, 1, key, (int)klen, SQLITE_TRANSIENT);
    c->pending_rc = sqlite3_step(c->stmt);
    c->pending = 1;
    return c->pending_rc == SQLITE_ROW || c->pending_rc == SQLITE_DONE ? 0 : sqlb_rc(c->pending_rc);
}

static int sqlb_scan_next(void *cursor, const void **key, size_t *klen, const void **val,
                          size_t *vlen)
{
    struct sqlb_cursor *c = cursor;
    int rc = c->pending ? c->pending_rc : sqlite3_step(c->stmt);
    c->pending = 0;
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return sqlb_rc(rc);
    *key = sqlite3_column_blob(c->stmt, 0);
    *klen = (size_t)sqlite3_column_bytes(c->stmt, 0);
    *val = sqlite3_column_blob(c->stmt, 1);
    *vlen = (size_t)sqlite3_column_bytes(c->stmt, 1);
    return 1;
}

static void sqlb_scan_close(void *cursor)
{
    struct sqlb_cursor *c = cursor;
    sqlite3_reset(c->stmt);
    sqlite3_clear_bindings(c->stmt);
    c->t->cursor_open = 0;
    free(c);
}

/* A result inside a transaction: BUSY or LOCKED (another connection kept the lock past the
 * busy timeout) is BENCH_CONFLICT, anything else stays as it is. */
static int sqlb_txn_rc(int rc)
{
    return rc == sqlb_rc(SQLITE_BUSY) || rc == sqlb_rc(SQLITE_LOCKED) ? BENCH_CONFLICT : rc;
}

/* End the open transaction after a failure: roll back, let the next writer in. */
static void sqlb_txn_rollback(struct sqlb_thread *t)
{
    if (sqlite3_get_autocommit(t->db) == 0) /* still in the transaction */
        (void)sqlb_step_done(t->stmt[SQLB_ROLLBACK]);
    if (!t->txn_readonly)
        pthread_mutex_unlock(&t->st->writer);
}

static int sqlb_txn_begin(void *th, unsigned flags, void **txn)
{
    struct sqlb_thread *t = th;
    int rc = sqlb_flush(t); /* a batch still open */
    if (rc != 0)
        return rc;
    t->txn_readonly = (flags & BENCH_TXN_READONLY) != 0;
    if (!t->txn_readonly)
        pthread_mutex_lock(&t->st->writer);
    rc = sqlb_step_done(t->stmt[t->txn_readonly ? SQLB_BEGIN_READ : SQLB_BEGIN]);
    if (rc != 0) {
        sqlb_txn_rollback(t);
        return sqlb_txn_rc(rc);
    }
    *txn = t;
    return 0;
}

static int sqlb_txn_get(void *txn, const void *key, size_t klen, int for_update, void *buf,
                        size_t cap, size_t *vlen)
{
    (void)for_update; /* BEGIN IMMEDIATE holds the write lock already */
    return sqlb_txn_rc(sqlb_get(txn, key, klen, buf, cap, vlen));
}

static int sqlb_txn_put(void *txn, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct sqlb_thread *t = txn;
    if (t->txn_readonly)
        return -EINVAL;
    sqlite3_stmt *s = t->stmt[SQLB_PUT];
    sqlite3_bind_blob(s, 1, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, vlen > 0 ? val : "", (int)vlen, SQLITE_STATIC);
    int rc = sqlb_step_done(s);
    sqlite3_clear_bindings(s);
    return sqlb_txn_rc(rc);
}

static int sqlb_txn_commit(void *txn)
{
    struct sqlb_thread *t = txn;
    int rc = sqlb_step_done(t->stmt[SQLB_COMMIT]);
    if (rc != 0) {
        sqlb_txn_rollback(t);
        return sqlb_txn_rc(rc);
    }
    if (!t->txn_readonly)
        pthread_mutex_unlock(&t->st->writer);
    return 0;
}

static void sqlb_txn_abort(void *txn)
{
    sqlb_txn_rollback(txn);
}

static int sqlb_txn_scan_open(void *txn, void **cursor)
{
    struct sqlb_thread *t = txn;
    if (!t->txn_readonly)
        return -ENOTSUP; /* the workloads seek in read-only transactions only */
    return sqlb_scan_open(t, cursor);
}

static void sqlb_describe(void *store, char *buf, size_t cap)
{
    struct sqlb_store *st = store;
    snprintf(buf, cap,
             "sqlite %s (Debian package), WAL, %s, WITHOUT ROWID table, persistent prepared "
             "statements, mmap_size=%lld, cache_size=-%d, temp_store=MEMORY, writers serialised "
             "by a mutex",
             sqlite3_libversion(), st->sync_pragma + 7, SQLB_MMAP_BYTES, SQLB_CACHE_KIB);
}

static const char *sqlb_strerror(int rc)
{
    if (rc <= -SQLB_ERR_BASE)
        return sqlite3_errstr(-rc - SQLB_ERR_BASE);
    return rc < 0 ? strerror(-rc) : "not an error";
}

const struct bench_engine bench_engine_sqlite = {
    .name = "sqlite",
    .open = sqlb_open,
    .close = sqlb_close,
    .thread_open = sqlb_thread_open,
    .flush = sqlb_flush,
    .thread_close = sqlb_thread_close,
    .put = sqlb_put,
    .get = sqlb_get,
    .del = sqlb_del,
    .scan_open = sqlb_scan_open,
    .scan_seek = sqlb_scan_seek,
    .scan_next = sqlb_scan_next,
    .scan_close = sqlb_scan_close,
    .persist = sqlb_persist,
    .describe = sqlb_describe,
    .strerror = sqlb_strerror,
    .txn_begin = sqlb_txn_begin,
    .txn_get = sqlb_txn_get,
    .txn_put = sqlb_txn_put,
    .txn_commit = sqlb_txn_commit,
    .txn_abort = sqlb_txn_abort,
    .txn_scan_open = sqlb_txn_scan_open,
};

#else
typedef int bench_sqlite_absent; /* keeps the translation unit non-empty */
#endif
