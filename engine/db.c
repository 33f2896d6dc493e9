/* Database open/close, the router, the single-key calls, collections and statistics.
 *
 * DATA FOLDER
 *   LOCK        flock()ed exclusively while the database is open (a second opener, in this or
 *               another process, gets CS_ELOCKED); its first byte is the clean-close mark
 *               ('C' after a clean close, 'D' while open: see clean_mark_take)
 *   CSTORE      format record, written once at creation (tmp file, fsync, rename, fsync folder):
 *                  0  8  magic "CSTOREDB"
 *                  8  4  format version (1)
 *                 12  4  shard count
 *                 16  8  zero
 *                 24  8  XXH3_64 of bytes 0..23
 *   shard-NNN/  one folder per shard: its WAL segments (see shards/wal.c)
 *
 * ROUTING. A key lives on shard XXH3_64(key) % shards, whatever its collection; the shard count
 * is fixed at creation (reopening with another count is CS_ESHARDS: resharding is a tool's job).
 *
 * THREADS. Every call may come from any application thread. A blocking call puts one request on
 * the caller's stack, queues it to the key's shard and waits on a futex in the request (after a
 * short spin): no lock, no allocation. Collection create/drop take a mutex among themselves only.
 */
#include "db.h"

#include <ck_pr.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include "endian.h"
#include "io/fault.h"
#include "io/file.h"
#include "engine/txn.h"
#include <sys/random.h>

#define META_NAME "CSTORE"
#define META_MAGIC "CSTOREDB"
#define META_VERSION 1u
#define META_BYTES 32u
#define WAITER_SPIN_MAX 200u /* polls before a blocking caller sleeps on its futex */

enum { WAITER_PENDING, WAITER_SLEEPING, WAITER_DONE };

static _Thread_local char last_error[PATH_MAX + 256];

const char *cs_last_error(void)
{
    return last_error;
}

void cs_free(void *p)
{
    cs_mem_free(p);
}

/* ---- waiting for one request ---- */

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

static void waiter_done(struct shard_req *r)
{
    struct waiter *w = (struct waiter *)r;
    if (atomic_exchange(&w->state, WAITER_DONE) == WAITER_SLEEPING)
        futex(&w->state, FUTEX_WAKE_PRIVATE, 1);
}

void waiter_init(struct waiter *w, enum shard_op op)
{
    memset(&w->req, 0, sizeof(w->req));
    w->req.op = (uint8_t)op;
    w->req.done = waiter_done;
    atomic_store_explicit(&w->state, WAITER_PENDING, memory_order_relaxed);
}

void waiter_wait(struct waiter *w, bool spin)
{
    for (unsigned i = 0; spin && i < WAITER_SPIN_MAX; i++) {
        if (atomic_load_explicit(&w->state, memory_order_acquire) == WAITER_DONE)
            return;
        ck_pr_stall();
    }
    uint32_t expect = WAITER_PENDING;
    if (!atomic_compare_exchange_strong(&w->state, &expect, WAITER_SLEEPING))
        return; /* already done */
    while (atomic_load_explicit(&w->state, memory_order_acquire) != WAITER_DONE)
        futex(&w->state, FUTEX_WAIT_PRIVATE, WAITER_SLEEPING);
}

/* A durable write waits for a disk flush: tens to hundreds of microseconds. Polling for it with
 * pause only takes the CPU that the shard and the other callers need (with 64 callers on two
 * cores it cost a quarter of the throughput), and sleeping at once costs a wake-up of a halted
 * CPU on the way back (a third of a lone writer's latency on a virtual machine). So one caller
 * at a time waits with sched_yield for up to wait_yield_us, which gives the CPU to any other
 * runnable thread (the shard it waits for among them) but keeps the CPU awake; the others sleep
 * at once. RocksDB's write thread waits the same way (enable_write_thread_adaptive_yield). */
static void waiter_yield(cs_db *db, struct waiter *w)
{
    if (atomic_fetch_add_explicit(&db->yielders, 1, memory_order_relaxed) == 0) {
        uint64_t end = cs_now_ns() + (uint64_t)db->opt.wait_yield_us * 1000u;
        for (unsigned i = 1; atomic_load_explicit(&w->state, memory_order_acquire) != WAITER_DONE;
             i++) {
            sched_yield();
            if ((i & 15u) == 0 && cs_now_ns() >= end)
                break;
        }
    }
    atomic_fetch_sub_explicit(&db->yielders, 1, memory_order_relaxed);
    waiter_wait(w, false);
}

int db_call(cs_db *db, unsigned shard, struct waiter *w)
{
    cs_assert(shard < db->nshards);
    shard_submit(db->shards[shard], &w->req);
    uint8_t op = w->req.op;
    if (db->opt.durability == SHARD_SYNC &&
        (op == SHARD_PUT || op == SHARD_DEL || op == SHARD_BATCH)) {
        if (db->opt.wait_yield_us)
            waiter_yield(db, w);
        else
            waiter_wait(w, false);
    } else {
        waiter_wait(w, true);
    }
    return w->req.rc;
}

/* Submit one copy of w's request to every shard, then wait for all. Returns the count of
 * shards that answered 0 and the first other answer than skip_rc in *first_err. */
static unsigned db_broadcast(cs_db *db, struct waiter *ws, int skip_rc, int *first_err)
{
    for (unsigned i = 0; i < db->nshards; i++)
        shard_submit(db->shards[i], &ws[i].req);
    unsigned ok = 0;
    *first_err = 0;
    for (unsigned i = 0; i < db->nshards; i++) {
        waiter_wait(&ws[i], true);
        int rc = ws[i].req.rc;
        if (rc == 0)
            ok++;
        else if (rc != skip_rc && *first_err == 0)
            *first_err = rc;
    }
    return ok;
}

/* ---- argument checks and routing ---- */

int db_check_name(const char *coll, uint16_t *len)
{
    if (!coll)
        return CS_ENAME;
    size_t n = strnlen(coll, CS_NAME_MAX + 1);
    if (n == 0 || n > CS_NAME_MAX || memchr(coll, '/', n))
        return CS_ENAME;
    *len = (uint16_t)n;
    return 0;
}

int db_check_key(const void *key, size_t klen)
{
    if (klen == 0 || klen > CS_KEY_MAX)
        return CS_EKEYSIZE;
    return key ? 0 : CS_EINVAL;
}

int db_check_expiry(uint64_t expire_ms)
{
    return expire_ms > CS_EXPIRE_MAX_MS ? CS_EINVAL : 0;
}

int db_check_value(const void *val, size_t vlen)
{
    if (vlen > CS_VALUE_MAX)
        return CS_EVALSIZE;
    return val || vlen == 0 ? 0 : CS_EINVAL;
}

int db_check_record(const char *coll, const void *key, size_t klen, const void *val, size_t vlen,
                    uint16_t *nlen)
{
    int rc = db_check_name(coll, nlen);
    if (!rc)
        rc = db_check_key(key, klen);
    if (!rc)
        rc = db_check_value(val, vlen);
    return rc;
}

unsigned db_shard_of(const cs_db *db, const void *key, size_t klen)
{
    return (unsigned)(XXH3_64bits(key, klen) % db->nshards);
}

/* ---- metrics recorded here ---- */

/* The calling thread's view gets since its last timed one (see DB_VIEW_GET_SAMPLE).
 * initial-exec: a plain %fs-relative access, no __tls_get_addr call, even in the shared
 * library. */
static __thread unsigned view_get_tick __attribute__((tls_model("initial-exec")));

/* The calling thread's stripe (db_view_stripe): a hash of the address of its thread-local tick
 * (threads' TLS blocks lie pages apart), so it costs no state and no system call. Two threads
 * may share a stripe: the adds are atomic, the stripes only spread them. */
static unsigned db_stripe(void)
{
    uint64_t h = ((uintptr_t)&view_get_tick >> 12) * 0x9e3779b97f4a7c15ull;
    _Static_assert((DB_VIEW_STRIPES & (DB_VIEW_STRIPES - 1)) == 0, "a power of two");
    return (unsigned)(h >> 32) & (DB_VIEW_STRIPES - 1);
}

bool db_view_get_timed(uint64_t *start_ns)
{
    if (++view_get_tick < DB_VIEW_GET_SAMPLE)
        return false;
    view_get_tick = 0;
    *start_ns = cs_now_ns();
    return true;
}

void db_view_get_done(cs_db *db, unsigned shard, bool timed, uint64_t start_ns)
{
    struct db_view_stripe *v = &db->metrics[shard].view[db_stripe()];
    __atomic_fetch_add(&v->gets, 1, __ATOMIC_RELAXED);
    if (timed) {
        uint64_t now_ns = cs_now_ns();
        hist_record_mw(&v->sampled, now_ns > start_ns ? now_ns - start_ns : 0);
    }
}

/* ---- the format record ---- */

static int meta_read(const char *dir, unsigned *shards)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, META_NAME) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    void *buf;
    size_t len;
    int rc = io_file_read_all(NULL, path, 4096, &buf, &len);
    if (rc == -ENOENT) {
        *shards = 0;
        return 0;
    }
    if (rc)
        return rc;
    const uint8_t *p = buf;
    uint32_t version, n;
    uint64_t sum;
    rc = CS_ECORRUPT;
    if (len == META_BYTES && memcmp(p, META_MAGIC, 8) == 0) {
        version = cs_get_le32(p + 8);
        n = cs_get_le32(p + 12);
        sum = cs_get_le64(p + 24);
        if (sum != XXH3_64bits(p, 24))
            rc = CS_ECORRUPT;
        else if (version != META_VERSION)
            rc = CS_EVERSION;
        else if (n == 0 || n > CS_SHARDS_MAX)
            rc = CS_ECORRUPT;
        else
            rc = 0;
    }
    cs_mem_free(buf);
    if (rc == CS_ECORRUPT)
        snprintf(last_error, sizeof(last_error), "bad format record %s", path);
    if (!rc)
        *shards = n;
    return rc;
}

static int meta_write(struct io_fault *f, const char *dir, unsigned shards)
{
    uint8_t p[META_BYTES];
    memset(p, 0, sizeof(p));
    memcpy(p, META_MAGIC, 8);
    cs_put_le32(p + 8, META_VERSION);
    cs_put_le32(p + 12, shards);
    cs_put_le64(p + 24, XXH3_64bits(p, 24));
    return io_file_replace(f, dir, META_NAME, p, sizeof(p));
}

/* ---- open ---- */

/* Decide the shard count and the CPU of each shard. */
static int plan_shards(cs_db *db, unsigned recorded, int *cpus)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return -errno;
    cpu_set_t set = allowed;
    if (db->opt.cpuset_given) {
        set = db->opt.cpuset;
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set) && !CPU_ISSET(c, &allowed)) {
                snprintf(last_error, sizeof(last_error),
                         "cpuset names CPU %d, which this process cannot run on", c);
                return CS_ECPUSET;
            }
    }
    unsigned ncpu = (unsigned)CPU_COUNT(&set);
    unsigned n = db->opt.shards ? db->opt.shards : (recorded ? recorded : ncpu);
    if (recorded && n != recorded) {
        snprintf(last_error, sizeof(last_error),
                 "the database was created with %u shards; %u were asked for", recorded, n);
        return CS_ESHARDS;
    }
    if (n == 0 || n > CS_SHARDS_MAX)
        return CS_EOPTVAL;
    if (n > ncpu) {
        snprintf(last_error, sizeof(last_error), "%u shards need %u CPUs; the cpuset has %u", n, n,
                 ncpu);
        return CS_ECPUSET;
    }
    unsigned i = 0;
    for (int c = 0; c < CPU_SETSIZE && i < n; c++)
        if (CPU_ISSET(c, &set))
            cpus[i++] = c;
    db->nshards = n;
    return 0;
}

/* Verify changes nothing: the folders must be there already. */
static int dir_exists(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return errno == ENOENT ? CS_ENOTFOUND : -errno;
    return S_ISDIR(st.st_mode) ? 0 : CS_ENOTDIR;
}

static int start_shards(cs_db *db, const int *cpus, enum wal_open_mode mode)
{
    unsigned n = db->nshards;
    uint64_t mem = db->opt.memory_limit ? cs_max_size(db->opt.memory_limit / n, 1) : 0;
    int rc = 0;
    unsigned launched = 0;
    for (; launched < n && !rc; launched++) {
        char dir[PATH_MAX];
        if (snprintf(dir, sizeof(dir), "%s/shard-%03u", db->dir, launched) >= (int)sizeof(dir)) {
            rc = -ENAMETOOLONG;
            break;
        }
        rc = mode == WAL_OPEN_VERIFY ? dir_exists(dir) : io_dir_ensure(db->fault, dir);
        if (rc)
            break;
        struct shard_config cfg = {
            .dir = dir,
            .index = launched,
            .cpu = cpus[launched],
            .durability = db->opt.durability,
            .sync_interval_ms = db->opt.sync_interval_ms,
            .group_commit_delay_us = db->opt.group_commit_delay_us,
            .yield_us = db->opt.wait_yield_us,
            .wal_segment_bytes = db->opt.wal_segment_bytes,
            .wal_compress_bytes = db->opt.wal_compress_bytes,
            .batch_max = db->opt.batch_max,
            .memory_bytes_max = mem,
            .fault = db->fault,
            .checkpoint_wal_bytes = db->opt.checkpoint_wal_bytes,
            .open_mode = mode,
            .fresh_segment = db->unclean,
        };
        rc = shard_launch(&cfg, &db->shards[launched]);
        if (rc)
            break;
    }
    int sync_rc = mode == WAL_OPEN_VERIFY ? 0 : io_dir_sync(db->fault, db->dir);
    for (unsigned i = 0; i < launched; i++) {
        int r = shard_await(db->shards[i]);
        if (r && !rc) {
            rc = r;
            snprintf(last_error, sizeof(last_error), "shard %u: %s", i,
                     shard_start_message(db->shards[i])[0] ? shard_start_message(db->shards[i])
                                                           : cs_strerror(r));
        }
    }
    if (!rc)
        rc = sync_rc;
    if (rc)
        for (unsigned i = 0; i < launched; i++) {
            (void)shard_stop(db->shards[i]);
            shard_free(db->shards[i]);
            db->shards[i] = NULL;
        }
    return rc;
}

static void db_free(cs_db *db)
{
    if (db->lock_fd >= 0)
        close(db->lock_fd);
    pthread_mutex_destroy(&db->ddl);
    pthread_mutex_destroy(&db->xgate.mu);
    pthread_cond_destroy(&db->xgate.cv);
    io_fault_destroy(db->fault);
    free(db->metrics);
    free(db->shards);
    free(db);
}

/* The LOCK file's first byte says whether the last open closed cleanly: 'C' once cs_close is
 * done without an error, 'D' while the database is open. After anything else (a killed process),
 * writes the dead process submitted to io_uring may still be landing: the shards then append to
 * new WAL segments (see "LATE WRITES" in shards/wal.c). The mark needs no fsync: after a power
 * cut nothing is in flight any more. A fresh LOCK file (empty) is a first open: clean. */
#define CLEAN_MARK 'C'
#define DIRTY_MARK 'D'

static int clean_mark_take(cs_db *db)
{
    uint8_t mark = 0;
    size_t got = 0;
    int rc = io_file_read_at(NULL, db->lock_fd, &mark, 1, 0, &got);
    if (rc)
        return rc;
    db->unclean = got == 1 && mark != CLEAN_MARK;
    mark = DIRTY_MARK;
    return io_file_pwrite(NULL, db->lock_fd, &mark, 1, 0);
}

static void clean_mark_put(cs_db *db)
{
    uint8_t mark = CLEAN_MARK;
    if (db->lock_fd >= 0 && io_file_pwrite(NULL, db->lock_fd, &mark, 1, 0) != 0)
        return; /* the next open starts new segments: harmless */
}

static int db_prepare_dir(cs_db *db, const char *dir, enum wal_open_mode mode)
{
    if (snprintf(db->dir, sizeof(db->dir), "%s", dir) >= (int)sizeof(db->dir))
        return -ENAMETOOLONG;
    bool readonly = mode == WAL_OPEN_VERIFY;
    int rc = readonly ? dir_exists(dir) : io_dir_ensure(db->fault, dir);
    if (rc == CS_ENOTDIR)
        snprintf(last_error, sizeof(last_error), "%s exists and is not a folder", dir);
    if (rc)
        return rc;
    rc = io_dir_lock(dir, readonly, &db->lock_fd);
    if (rc == CS_ELOCKED)
        snprintf(last_error, sizeof(last_error), "%s is open in another process or handle", dir);
    if (rc)
        return rc;
    if (!readonly && db->lock_fd >= 0)
        rc = clean_mark_take(db);
    if (rc)
        return rc;
    /* root may write anywhere; others get a clear error here rather than at the first WAL. */
    return readonly || access(dir, W_OK | X_OK) == 0 ? 0 : -errno;
}

static int db_open(const char *dir, const cs_options *o, enum wal_open_mode mode, cs_db **out)
{
    last_error[0] = '\0';
    if (!out)
        return CS_EINVAL;
    *out = NULL;
    if (!dir || !*dir)
        return CS_EINVAL;
    cs_db *db = calloc(1, sizeof(*db));
    if (!db)
        return -ENOMEM;
    db->lock_fd = -1;
    pthread_mutex_init(&db->ddl, NULL);
    pthread_mutex_init(&db->xgate.mu, NULL);
    pthread_cond_init(&db->xgate.cv, NULL);
    if (o)
        db->opt = *o;
    else
        options_defaults(&db->opt);
    unsigned recorded = 0;
    int cpus[CS_SHARDS_MAX];
    const char *fault = db->opt.fault[0] ? db->opt.fault : getenv("CSTORE_FAULT");
    int rc = fault && fault[0] ? io_fault_create(fault, &db->fault) : 0;
    if (rc == CS_EOPTVAL)
        snprintf(last_error, sizeof(last_error), "bad fault-injection spec \"%s\"", fault);
    if (!rc)
        rc = db_prepare_dir(db, dir, mode);
    if (!rc)
        rc = meta_read(db->dir, &recorded);
    if (!rc)
        rc = plan_shards(db, recorded, cpus);
    if (!rc && !recorded && mode == WAL_OPEN_VERIFY) {
        snprintf(last_error, sizeof(last_error), "%s holds no cstore database", dir);
        rc = CS_ENOTFOUND;
    }
    if (!rc && !recorded)
        rc = meta_write(db->fault, db->dir, db->nshards);
    if (!rc) {
        db->shards = calloc(db->nshards, sizeof(*db->shards));
        db->metrics = calloc(db->nshards, sizeof(*db->metrics));
        rc = db->shards && db->metrics ? start_shards(db, cpus, mode) : -ENOMEM;
    }
    if (!rc && getrandom(&db->txn_base, sizeof(db->txn_base), 0) != sizeof(db->txn_base))
        db->txn_base = cs_now_ns() * 0x9e3779b97f4a7c15ull; /* no entropy yet: still distinct */
    if (!rc && mode != WAL_OPEN_VERIFY) {
        rc = txn_recover(db); /* in-doubt transactions are decided before anyone reads */
        if (rc) {
            snprintf(last_error, sizeof(last_error),
                     "%s: could not resolve the transactions left in doubt: %s", dir,
                     cs_strerror(rc));
            for (unsigned i = 0; i < db->nshards; i++) {
                (void)shard_stop(db->shards[i]);
                shard_free(db->shards[i]);
            }
        }
    }
    if (rc) {
        if (!last_error[0])
            snprintf(last_error, sizeof(last_error), "%s: %s", dir, cs_strerror(rc));
        db_free(db);
        return rc;
    }
    *out = db;
    return 0;
}

int cs_open(const char *dir, const cs_options *o, cs_db **out)
{
    bool salvage = o && o->salvage;
    return db_open(dir, o, salvage ? WAL_OPEN_SALVAGE : WAL_OPEN_NORMAL, out);
}

static int verify_shards(cs_db *db, char *report, size_t size)
{
    size_t len = 0;
    int rc = 0;
    for (unsigned i = 0; i < db->nshards; i++) {
        struct cs_shard_stats st;
        int r = cs_stats(db, i, &st);
        struct waiter w;
        waiter_init(&w, SHARD_CHECK);
        int check = r ? r : db_call(db, i, &w);
        if (check && !rc) {
            rc = check;
            snprintf(last_error, sizeof(last_error), "%s",
                     w.req.out ? (char *)w.req.out : cs_strerror(check));
        }
        len += (size_t)snprintf(
            report + len, size - cs_min_size(len, size),
            "shard %u: %" PRIu64 " collections, %" PRIu64 " records, checkpoint LSN %" PRIu64
            ", %" PRIu64 " WAL records replayed, torn tail %" PRIu64 " bytes: %s\n",
            i, st.collections, st.records, st.checkpoint_lsn, st.recovered_records,
            st.recovery_torn_bytes,
            check ? (w.req.out ? (char *)w.req.out : cs_strerror(check)) : "ok");
        cs_mem_free(w.req.out);
    }
    return rc;
}

int cs_verify(const char *dir, const cs_options *o, char **report)
{
    if (report)
        *report = NULL;
    cs_db *db;
    int rc = db_open(dir, o, WAL_OPEN_VERIFY, &db);
    size_t size = sizeof(last_error) + 2;
    char *text = cs_mem_alloc(0, size);
    if (!text) {
        if (!rc && cs_close(db) != 0)
            return -ENOMEM; /* the first problem is memory: report that */
        return -ENOMEM;
    }
    text[0] = '\0';
    if (rc) {
        snprintf(text, size, "%s\n", last_error[0] ? last_error : cs_strerror(rc));
    } else {
        size = 256 + (size_t)db->nshards * 256;
        char *bigger = cs_mem_realloc(0, text, size);
        if (bigger)
            text = bigger;
        else
            size = sizeof(last_error) + 2;
        rc = verify_shards(db, text, size);
        int close_rc = cs_close(db);
        if (!rc)
            rc = close_rc;
    }
    if (report)
        *report = text;
    else
        cs_mem_free(text);
    return rc;
}

int cs_close(cs_db *db)
{
    if (!db)
        return CS_EINVAL;
    int rc = 0;
    for (unsigned i = 0; i < db->nshards; i++) {
        int r = shard_stop(db->shards[i]);
        if (r && !rc)
            rc = r;
        shard_free(db->shards[i]);
        db->shards[i] = NULL;
    }
    if (!rc)
        clean_mark_put(db);
    db_free(db);
    return rc;
}

/* ---- single-key calls ---- */

static int key_call(cs_db *db, enum shard_op op, const char *coll, const void *key, size_t klen,
                    struct waiter *w)
{
    if (!db)
        return CS_EINVAL;
    uint16_t nlen;
    int rc = db_check_name(coll, &nlen);
    if (!rc)
        rc = db_check_key(key, klen);
    if (rc)
        return rc;
    waiter_init(w, op);
    w->req.coll = coll;
    w->req.coll_len = nlen;
    w->req.key = key;
    w->req.klen = klen;
    return 0;
}

int cs_put(cs_db *db, const char *coll, const void *key, size_t klen, const void *val, size_t vlen)
{
    return cs_put_ttl(db, coll, key, klen, val, vlen, 0);
}

int cs_put_ttl(cs_db *db, const char *coll, const void *key, size_t klen, const void *val,
               size_t vlen, uint64_t expire_at_ms)
{
    struct waiter w;
    int rc = key_call(db, SHARD_PUT, coll, key, klen, &w);
    if (!rc)
        rc = db_check_value(val, vlen);
    if (!rc)
        rc = db_check_expiry(expire_at_ms);
    if (rc)
        return rc;
    w.req.val = val;
    w.req.vlen = vlen;
    w.req.expire_ms = expire_at_ms;
    return db_call(db, db_shard_of(db, key, klen), &w);
}

/* cs_get_expiry and cs_expire: one read-modify-write of the key on its shard (SHARD_UPDATE). */
struct expiry_op {
    bool set;           /* cs_expire: set the expiry (else only read it) */
    uint64_t expire_ms; /* cs_expire: the new expiry; out: the record's expiry */
};

static int expiry_update(void *arg, const void *old, size_t oldlen, bool found,
                         struct shard_update_out *out)
{
    (void)old;
    (void)oldlen;
    struct expiry_op *op = arg;
    if (!found)
        return CS_ENOTFOUND;
    if (!op->set) {
        op->expire_ms = out->expire_ms;
        return 0;
    }
    out->write = SHARD_UPDATE_EXPIRE;
    out->expire_ms = op->expire_ms;
    return 0;
}

static int expiry_call(cs_db *db, const char *coll, const void *key, size_t klen,
                       struct expiry_op *op)
{
    struct waiter w;
    int rc = key_call(db, SHARD_UPDATE, coll, key, klen, &w);
    if (rc)
        return rc;
    struct shard_update u = {.fn = expiry_update, .arg = op};
    w.req.update = &u;
    return db_call(db, db_shard_of(db, key, klen), &w);
}

int cs_get_expiry(cs_db *db, const char *coll, const void *key, size_t klen, uint64_t *expire_at_ms)
{
    if (!expire_at_ms)
        return CS_EINVAL;
    struct expiry_op op = {.set = false};
    int rc = expiry_call(db, coll, key, klen, &op);
    *expire_at_ms = rc ? 0 : op.expire_ms;
    return rc;
}

int cs_expire(cs_db *db, const char *coll, const void *key, size_t klen, uint64_t expire_at_ms)
{
    int rc = db_check_expiry(expire_at_ms);
    if (rc)
        return rc;
    struct expiry_op op = {.set = true, .expire_ms = expire_at_ms};
    return expiry_call(db, coll, key, klen, &op);
}

int cs_get(cs_db *db, const char *coll, const void *key, size_t klen, void **val, size_t *vlen)
{
    if (!val || !vlen)
        return CS_EINVAL;
    *val = NULL;
    *vlen = 0;
    struct waiter w;
    int rc = key_call(db, SHARD_GET, coll, key, klen, &w);
    if (rc)
        return rc;
    unsigned shard = db_shard_of(db, key, klen);
    uint64_t start_ns = 0;
    bool timed = db_view_get_timed(&start_ns);
    rc = shard_view_get(db->shards[shard], coll, w.req.coll_len, key, klen, val, vlen);
    if (rc != SHARD_VIEW_MISS) {
        db_view_get_done(db, shard, timed, start_ns);
        return rc;
    }
    rc = db_call(db, shard, &w);
    if (rc)
        return rc;
    *val = w.req.out;
    *vlen = w.req.out_len;
    return 0;
}

int cs_del(cs_db *db, const char *coll, const void *key, size_t klen)
{
    struct waiter w;
    int rc = key_call(db, SHARD_DEL, coll, key, klen, &w);
    if (rc)
        return rc;
    return db_call(db, db_shard_of(db, key, klen), &w);
}

/* ---- collections ---- */

static int coll_broadcast(cs_db *db, enum shard_op op, const char *coll, int skip_rc, unsigned *ok)
{
    uint16_t nlen;
    if (!db)
        return CS_EINVAL;
    int rc = db_check_name(coll, &nlen);
    if (rc)
        return rc;
    struct waiter *ws = calloc(db->nshards, sizeof(*ws));
    if (!ws)
        return -ENOMEM;
    for (unsigned i = 0; i < db->nshards; i++) {
        waiter_init(&ws[i], op);
        ws[i].req.coll = coll;
        ws[i].req.coll_len = nlen;
    }
    pthread_mutex_lock(&db->ddl);
    *ok = db_broadcast(db, ws, skip_rc, &rc);
    pthread_mutex_unlock(&db->ddl);
    free(ws);
    return rc;
}

int cs_collection_create(cs_db *db, const char *coll)
{
    unsigned created;
    int rc = coll_broadcast(db, SHARD_COLL_CREATE, coll, CS_EEXIST, &created);
    if (rc)
        return rc;
    return created == db->nshards ? 0 : CS_EEXIST;
}

int cs_collection_drop(cs_db *db, const char *coll)
{
    unsigned dropped;
    int rc = coll_broadcast(db, SHARD_COLL_DROP, coll, CS_ENOTFOUND, &dropped);
    if (rc)
        return rc;
    return dropped ? 0 : CS_ENOTFOUND;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Pack the distinct names of the shards' lists into one allocation: pointers, then strings. */
static int names_pack(struct waiter *ws, unsigned n, char ***names, size_t *count)
{
    size_t total = 0, bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        total += ws[i].req.out_count;
        bytes += ws[i].req.out_len;
    }
    char **tmp = malloc((total ? total : 1) * sizeof(char *));
    if (!tmp)
        return -ENOMEM;
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        const char *p = ws[i].req.out;
        for (uint32_t j = 0; j < ws[i].req.out_count; j++, p += strlen(p) + 1)
            tmp[k++] = (char *)p;
    }
    qsort(tmp, total, sizeof(char *), name_cmp);
    char **arr = cs_mem_alloc(0, (total ? total : 1) * sizeof(char *) + bytes + 1);
    if (!arr) {
        free(tmp);
        return -ENOMEM;
    }
    char *s = (char *)(arr + (total ? total : 1));
    size_t m = 0;
    for (size_t i = 0; i < total; i++) {
        if (m && strcmp(arr[m - 1], tmp[i]) == 0)
            continue;
        size_t len = strlen(tmp[i]) + 1;
        memcpy(s, tmp[i], len);
        arr[m++] = s;
        s += len;
    }
    free(tmp);
    *names = arr;
    *count = m;
    return 0;
}

int cs_collection_list(cs_db *db, char ***names, size_t *count)
{
    if (!db || !names || !count)
        return CS_EINVAL;
    struct waiter *ws = calloc(db->nshards, sizeof(*ws));
    if (!ws)
        return -ENOMEM;
    for (unsigned i = 0; i < db->nshards; i++)
        waiter_init(&ws[i], SHARD_COLL_LIST);
    int rc;
    db_broadcast(db, ws, 0, &rc);
    if (!rc)
        rc = names_pack(ws, db->nshards, names, count);
    for (unsigned i = 0; i < db->nshards; i++)
        cs_mem_free(ws[i].req.out);
    free(ws);
    return rc;
}

/* ---- checkpoints ---- */

int cs_checkpoint(cs_db *db)
{
    if (!db)
        return CS_EINVAL;
    struct waiter *ws = calloc(db->nshards, sizeof(*ws));
    if (!ws)
        return -ENOMEM;
    for (unsigned i = 0; i < db->nshards; i++)
        waiter_init(&ws[i], SHARD_CHECKPOINT);
    int rc;
    db_broadcast(db, ws, 0, &rc);
    free(ws);
    return rc;
}

/* ---- statistics ---- */

unsigned cs_shard_count(const cs_db *db)
{
    return db ? db->nshards : 0;
}

int cs_stats(cs_db *db, unsigned shard, struct cs_shard_stats *out)
{
    if (!db || !out || shard >= db->nshards)
        return CS_EINVAL;
    struct waiter w;
    waiter_init(&w, SHARD_STATS);
    w.req.stats = out;
    int rc = db_call(db, shard, &w);
    if (rc)
        return rc;
    out->view_gets = 0; /* counted by the application threads, not the shard */
    for (unsigned i = 0; i < DB_VIEW_STRIPES; i++)
        out->view_gets += __atomic_load_n(&db->metrics[shard].view[i].gets, __ATOMIC_RELAXED);
    return 0;
}
