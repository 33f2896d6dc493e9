/* cstore: an embeddable storage engine for Linux.
 *
 * Named collections of key/value records, hash-partitioned over shards (one pinned thread per
 * CPU), each shard holding copy-on-write B+ trees made durable by its own write-ahead log,
 * written with batched io_uring writes (group commit).
 *
 * Conventions of this header:
 * - Every fallible call returns int: 0 on success, a negative errno value for an operating
 *   system failure (-ENOMEM, -EACCES, -ENOSPC, ...), or one of the CS_E* codes below.
 *   cs_strerror() describes any of them. Nothing the caller must parse.
 * - Pointer parameters are borrowed for the duration of the call unless documented otherwise.
 * - Memory that cstore hands to the caller (values, names) is released with cs_free(), never
 *   with free(): cstore allocates from its own jemalloc arenas.
 * - Every entry point is safe to call from many application threads at once, on the same
 *   cs_db. A cs_session and a cs_cursor belong to one thread at a time.
 */
#ifndef CSTORE_H
#define CSTORE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CS_VERSION_MAJOR 0
#define CS_VERSION_MINOR 1
#define CS_VERSION_PATCH 0
#define CS_VERSION_STRING "0.1.0"

/* ---- Error codes: a reserved negative band, far from any -errno value. ---- */
#define CS_ERR_BASE (-30900)
#define CS_ENOTFOUND (-30900) /* key or collection not found */
#define CS_EINVAL (-30901)    /* invalid argument (NULL pointer, empty key, bad handle) */
#define CS_ECORRUPT (-30902)  /* bad bytes on disk or on the wire; data is damaged */
#define CS_ECONFLICT (-30903) /* transaction conflict; retry */
#define CS_EFULL (-30904)     /* a bounded queue or table is full */
#define CS_EKEYSIZE (-30905)  /* key empty or longer than CS_KEY_MAX */
#define CS_EVALSIZE (-30906)  /* value longer than CS_VALUE_MAX */
#define CS_ENAME (-30907)     /* collection name empty, too long, or holding '/' or NUL */
#define CS_EOPTION (-30908)   /* unknown option name */
#define CS_EOPTVAL (-30909)   /* invalid option value */
#define CS_ESHARDS (-30910)   /* shard count differs from the one the database was made with */
#define CS_ECPUSET (-30911)   /* cpuset names absent CPUs, or has fewer CPUs than shards */
#define CS_ELOCKED (-30912)   /* the data folder is open in another process */
#define CS_ENOTSUP (-30913)   /* not supported (yet): e.g. a batch spanning several shards */
#define CS_EIO (-30914)       /* an earlier write failed: the shard is read-only until reopen */
#define CS_EEXIST (-30915)    /* collection already exists; backup target folder not empty */
#define CS_ENOTDIR (-30916)   /* the data path exists and is not a folder */
#define CS_EVERSION (-30917)  /* the data folder has an unknown format version */
#define CS_ECLOSED (-30918)   /* the database is closing */
#define CS_EBATCH (-30919)    /* batch too large (over CS_BATCH_OPS_MAX or CS_BATCH_BYTES_MAX) */
#define CS_ERR_LAST (-30919)

/* ---- Limits. Exceeding one is an error code, never a crash. ---- */
#define CS_KEY_MAX 1024u              /* bytes in a key (keys are 1..CS_KEY_MAX bytes) */
#define CS_VALUE_MAX (1024u * 1024u)  /* bytes in a value (0..CS_VALUE_MAX) */
#define CS_NAME_MAX 64u               /* bytes in a collection name, without the NUL */
#define CS_BATCH_OPS_MAX 65536u       /* operations in one cs_batch */
#define CS_BATCH_BYTES_MAX (8u << 20) /* key+value bytes in one cs_batch */
#define CS_SHARDS_MAX 256u            /* shards in one database */
#define CS_COLLECTIONS_MAX 4096u      /* collections a shard holds; one more is CS_EFULL */
#define CS_SESSION_DEPTH_MAX 65536u   /* requests in flight in one session */

/* Every fallible call is marked: ignoring its result is a compiler warning (GCC, Clang). */
#ifndef CS_MUST_CHECK
#if defined(__GNUC__)
#define CS_MUST_CHECK __attribute__((warn_unused_result))
#else
#define CS_MUST_CHECK
#endif
#endif

typedef struct cs_db cs_db;
typedef struct cs_options cs_options;
typedef struct cs_batch cs_batch;
typedef struct cs_cursor cs_cursor;
typedef struct cs_session cs_session;

/* Describe any return code of this API (CS_E* or -errno). Never NULL: static storage for 0 and
 * the CS_E* codes; for -errno a thread-local buffer, valid until the next call on this thread. */
const char *cs_strerror(int rc);

/* Details of the last error cs_open() returned on this thread: the damaged file and offset, the
 * reason recovery or start-up failed; "" when there are none. Thread-local, valid until the next
 * cs_open() on this thread. */
const char *cs_last_error(void);

/* Release memory that cstore returned (values from cs_get, completions, name lists). NULL ok. */
void cs_free(void *p);

/* ---- Options ----
 * One set of names, used alike by cs_options_set(), the INI config file and the CLI flags:
 *
 *   shards                 shards (pinned threads); default: CPUs in cpuset. 1..CS_SHARDS_MAX
 *   cpuset                 CPUs to pin shards to, e.g. "0-3,6"; default: the process affinity
 *   durability             sync (default) | async | none (in memory: what the folder holds is
 *                          loaded, nothing is written to it)
 *   sync_interval_ms       async mode: fdatasync period; default 10
 *   group_commit_delay_us  wait this long for more writes before a WAL write; default 0
 *   wait_yield_us          sync mode: a blocking durable write (one caller at a time), and a
 *                          shard after each WAL write, yield the CPU (sched_yield) for up to
 *                          this long before sleeping; 0 = sleep at once; default 1000
 *   wal_segment_bytes      size of a preallocated WAL segment; default 64 MiB (1 MiB..1 GiB)
 *   wal_compress_bytes     LZ4-compress frame bodies at least this big; 0 = never; default 4096
 *   batch_max              requests a shard takes per loop iteration; default 256
 *   checkpoint_wal_bytes   a shard checkpoints once it wrote this much WAL; 0 = only on request;
 *                          default 256 MiB
 *   memory_limit           bytes of tree memory per database; 0 = no limit (default)
 *   salvage                true: recovery cuts the WAL (or checkpoint) at the first damage and
 *                          goes on, reporting what it dropped on stderr; false (default): damage
 *                          fails cs_open with CS_ECORRUPT
 *   fault                  fault-injection plan for testing, e.g. "seed=3,write_eio=100" (see
 *                          io/fault.h); "" = off (default). $CSTORE_FAULT sets it too.
 *
 * An unknown name is CS_EOPTION; a malformed value is CS_EOPTVAL. Combinations (cpuset vs
 * shards, CPUs that do not exist) are checked by cs_open(). */
cs_options *cs_options_new(void); /* NULL on out of memory */
/* Set one option. Errors: CS_EINVAL (o, name or value NULL), CS_EOPTION, CS_EOPTVAL; on error
 * o is unchanged. */
CS_MUST_CHECK int cs_options_set(cs_options *o, const char *name, const char *value);
/* Read an INI file ("name = value" lines, optional [cstore] section). Stops at the first bad
 * line and returns its error; *bad_line (may be NULL) gets its number. Errors: CS_EINVAL,
 * CS_EOPTION, CS_EOPTVAL, -ENOENT / -EACCES / other -errno (the file), -ENOMEM. */
CS_MUST_CHECK int cs_options_load(cs_options *o, const char *path, int *bad_line);
void cs_options_free(cs_options *o);

/* ---- Open and close ----
 * cs_open: open or create the database in folder dir (created if missing, parents must
 * exist), replaying each shard's write-ahead log. o may be NULL for the defaults. Locks the
 * folder: a second process gets CS_ELOCKED. On success *db is set; on failure *db is NULL and
 * nothing on disk was changed beyond what recovery repairs (cutting a torn WAL tail).
 * Errors: CS_EINVAL, CS_EOPTVAL, CS_ECPUSET, CS_ESHARDS, CS_ELOCKED, CS_ENOTDIR, CS_EVERSION,
 * CS_ECORRUPT, -EACCES, -ENOMEM, other -errno. */
CS_MUST_CHECK int cs_open(const char *dir, const cs_options *o, cs_db **db);
/* Flush and close; waits for every request in flight. db must not be used afterwards (a call
 * racing with cs_close gets CS_ECLOSED). Returns the first error a shard met (CS_EIO: a shard
 * was read-only after a write error; the last fdatasync failed), or CS_EINVAL for NULL; the
 * database is closed regardless. */
CS_MUST_CHECK int cs_close(cs_db *db);

/* ---- Single-key calls (blocking) ----
 * Keys are 1..CS_KEY_MAX bytes, values 0..CS_VALUE_MAX bytes, compared with memcmp.
 * A put into a collection that does not exist creates it. With durability=sync (default) a
 * write returns after its WAL frame is on disk, and a read never returns data that a crash
 * could still lose. On any error a write changed nothing.
 * Errors of all three: CS_EINVAL (db or coll NULL), CS_ENAME, CS_EKEYSIZE, CS_ECLOSED.
 * cs_put: also CS_EVALSIZE; CS_EFULL (memory_limit reached, or a new collection past
 * CS_COLLECTIONS_MAX); CS_EIO (the shard is read-only after a write error); -ENOSPC (the disk is
 * full: the database goes on once space is freed); -ENOMEM.
 * cs_get: *val (from cs_free's allocator; NULL when vlen is 0) and *vlen are set on success;
 * also CS_ENOTFOUND (the key or the collection is missing), CS_EIO (a shard fenced after it
 * could not take back a failed write), -ENOMEM.
 * cs_del: also CS_ENOTFOUND, CS_EIO, -ENOSPC, -ENOMEM. */
CS_MUST_CHECK int cs_put(cs_db *db, const char *coll, const void *key, size_t klen, const void *val,
                         size_t vlen);
CS_MUST_CHECK int cs_get(cs_db *db, const char *coll, const void *key, size_t klen, void **val,
                         size_t *vlen);
CS_MUST_CHECK int cs_del(cs_db *db, const char *coll, const void *key,
                         size_t klen); /* CS_ENOTFOUND if absent (or expired) */

/* ---- Expiry (time to live) ----
 * A record may carry an expiry: an absolute wall-clock time in Unix milliseconds (UTC), 0 for
 * none. From that millisecond on the record is absent to every reader (cs_get, cursors, views,
 * transactions, sessions, cs_get_expiry: CS_ENOTFOUND, as if it had been deleted), and each
 * shard removes it in the background, in bounded passes every 100 ms while it holds records with
 * an expiry, by logging an ordinary delete (cs_shard_stats.expired counts them). Checkpoints
 * leave expired records out. The clock is CLOCK_REALTIME (cs_clock_ms): an expiry is only as
 * good as the host's clock, and a clock set back makes expired-but-not-yet-removed records
 * visible again. Records without an expiry cost nothing more than before (no clock read, no
 * byte stored).
 * Which writes set, keep or clear an expiry (the rules of Redis):
 *   cs_put, cs_batch_put, cs_session_put, cs_txn_put   clear it (as SET does)
 *   cs_put_ttl, cs_batch_put_ttl, cs_session_put_ttl   set it (0: clear it)
 *   cs_expire                                          change it, keeping the value
 *   cs_del, a batch or transaction delete              remove the record with it
 * Counts are not exact: cs_shard_stats.records includes expired records until they are
 * removed. Names: a "_ttl" variant of each put takes the expiry as its last value argument
 * (before a session's user_data). expire_at_ms past CS_EXPIRE_MAX_MS is CS_EINVAL; one at or
 * before now is accepted and the record is absent at once (Redis SET PXAT in the past). */
#define CS_EXPIRE_MAX_MS ((1ull << 53) - 1) /* the largest expiry (about the year 287,000) */
/* The engine's expiry clock: wall-clock time in Unix milliseconds. Compute expire_at_ms from it
 * (e.g. cs_clock_ms() + 60000 for one minute). */
uint64_t cs_clock_ms(void);
/* cs_put with an expiry (0: none, which clears an earlier one). Errors: cs_put's, and CS_EINVAL
 * for expire_at_ms > CS_EXPIRE_MAX_MS. */
CS_MUST_CHECK int cs_put_ttl(cs_db *db, const char *coll, const void *key, size_t klen,
                             const void *val, size_t vlen, uint64_t expire_at_ms);
/* The expiry of the record at key: *expire_at_ms gets it (0: the record has none). CS_ENOTFOUND
 * when the record (or the collection) is missing or expired; *expire_at_ms is then 0. Costs a
 * round trip to the key's shard. Errors: also CS_EINVAL (NULL), CS_ENAME, CS_EKEYSIZE, CS_EIO,
 * CS_ECLOSED. */
CS_MUST_CHECK int cs_get_expiry(cs_db *db, const char *coll, const void *key, size_t klen,
                                uint64_t *expire_at_ms);
/* Set the expiry of an existing record atomically, keeping its value: expire_at_ms 0 removes the
 * expiry (Redis PERSIST), one at or before now makes the record absent at once. Logged as a put
 * of the same value (the WAL holds the value again). CS_ENOTFOUND when the record is missing or
 * expired (nothing is written). Errors: cs_put's, CS_EINVAL for expire_at_ms >
 * CS_EXPIRE_MAX_MS. */
CS_MUST_CHECK int cs_expire(cs_db *db, const char *coll, const void *key, size_t klen,
                            uint64_t expire_at_ms);

/* ---- Collections ----
 * create: CS_EEXIST if it exists; drop: CS_ENOTFOUND if it does not. Both also CS_EINVAL,
 * CS_ENAME, CS_EIO, CS_ECLOSED, -ENOSPC, -ENOMEM, and create CS_EFULL (CS_COLLECTIONS_MAX). They
 * are sent to every shard: a failure on one shard after others succeeded is reported as is. */
CS_MUST_CHECK int cs_collection_create(cs_db *db, const char *coll);
CS_MUST_CHECK int cs_collection_drop(cs_db *db, const char *coll);
/* *names: an array of *count NUL-terminated names in byte order; release it with one cs_free()
 * (names and array are one allocation). Errors: CS_EINVAL, CS_ECLOSED, -ENOMEM. */
CS_MUST_CHECK int cs_collection_list(cs_db *db, char ***names, size_t *count);

/* ---- Atomic write batch ----
 * Puts and deletes applied all-or-nothing. Keys and values are copied into the batch. A batch
 * whose keys live on one shard commits as one WAL record; one that spans shards commits through
 * two-phase commit (a PREPARE record on each shard, one fsync round in parallel: see
 * Transactions). Deleting an absent key in a batch is not an error. */
cs_batch *cs_batch_new(void); /* NULL on out of memory */
/* cs_batch_put / cs_batch_del: CS_EINVAL, CS_ENAME, CS_EKEYSIZE, CS_EVALSIZE, CS_EBATCH (over
 * CS_BATCH_OPS_MAX or CS_BATCH_BYTES_MAX), -ENOMEM; on error the batch is unchanged. */
CS_MUST_CHECK int cs_batch_put(cs_batch *b, const char *coll, const void *key, size_t klen,
                               const void *val, size_t vlen);
/* cs_batch_put with an expiry (see Expiry); also CS_EINVAL for expire_at_ms > CS_EXPIRE_MAX_MS. A
 * batch over several shards keeps each put's expiry through its PREPARE records. */
CS_MUST_CHECK int cs_batch_put_ttl(cs_batch *b, const char *coll, const void *key, size_t klen,
                                   const void *val, size_t vlen, uint64_t expire_at_ms);
CS_MUST_CHECK int cs_batch_del(cs_batch *b, const char *coll, const void *key, size_t klen);
size_t cs_batch_count(const cs_batch *b);
void cs_batch_clear(cs_batch *b);
void cs_batch_free(cs_batch *b);
/* Commit b (which stays as it was). Never CS_ECONFLICT: a batch reads nothing, so it waits for
 * the keys that transactions in progress hold (across shards, a batch that meets them is run
 * again with its shards locked one after another, each waiting as long as needed). Errors:
 * CS_EINVAL, CS_EFULL, CS_EIO, CS_ECLOSED, -ENOSPC, -ENOMEM; on any error nothing of b was
 * applied. */
CS_MUST_CHECK int cs_write(cs_db *db, const cs_batch *b);
/* *shard receives the shard that key lives on (0 .. cs_shard_count() - 1; the same for every
 * collection and for the life of the database): keys with the same shard can share a batch. A
 * bulk load that keeps one batch per shard commits each with one request and one WAL record.
 * Returns 0, or CS_EINVAL (db, key or shard NULL) or CS_EKEYSIZE (*shard is then unchanged). */
CS_MUST_CHECK int cs_key_shard(const cs_db *db, const void *key, size_t klen, unsigned *shard);

/* ---- Transactions ----
 * Optimistic and strictly serializable, over any keys of any collections and shards. Writes are
 * buffered in the handle until commit (a transaction reads its own writes); every read records
 * what it saw, and commit applies the writes only if every read still holds then, else it
 * returns CS_ECONFLICT and applies nothing: retry the whole transaction. A transaction on one
 * shard commits in one step with one WAL record; one over several shards writes a PREPARE record
 * on each, in parallel, and is committed once all are durable (one fsync round; in sync mode
 * nothing is acknowledged before that). A commit that meets a key locked by another
 * transaction's commit in progress waits for that one's outcome (about one fsync) and then
 * validates again; a commit over several shards is refused at once instead when the other one
 * is younger (began its commit later) and not decided yet: waits go from younger to older
 * only, so they cannot deadlock; any commit is refused when too many wait already. A
 * transaction that only writes (no reads, no cursor) is never refused for a conflict, as
 * cs_write: it waits instead. A commit
 * over several shards returns at its decision, while the shards may still be installing its
 * writes: every read that starts after it returns (its caller's, or anyone's it tells) sees
 * them all. Readers never see part of a committed transaction through cs_get. A crash between
 * PREPARE and install is resolved at the next open: committed iff every participant holds its
 * PREPARE.
 * A handle belongs to one thread. Using it after commit or abort is undefined (debug builds
 * assert). Limits: CS_TXN_OPS_MAX reads and writes, CS_TXN_BYTES_MAX key and value bytes;
 * over them CS_EBATCH.
 * A read-only transaction (CS_TXN_READONLY) reads one snapshot of every collection taken at
 * begin: it sees each transaction whole or not at all, never aborts (its commit returns 0) and
 * never waits for another transaction's commit; its begin pins every collection on every shard.
 * Cursors (cs_cursor_open) likewise never show part of a transaction that spans shards.
 * Commits can also be submitted through a session (cs_session_commit), many in flight at once.
 * Transaction cursors (cs_txn_cursor_open) validate the ranges they walk: no phantoms. */
typedef struct cs_txn cs_txn;
#define CS_TXN_READONLY 1u          /* a snapshot; puts and deletes are CS_EINVAL */
#define CS_TXN_OPS_MAX 65536u       /* reads and writes recorded by one transaction */
#define CS_TXN_BYTES_MAX (8u << 20) /* key and value bytes buffered by one transaction */
/* Errors: CS_EINVAL (db or txn NULL, unknown flags), -ENOMEM; read-only: also CS_EIO (a fenced
 * shard), CS_ECLOSED. */
CS_MUST_CHECK int cs_txn_begin(cs_db *db, unsigned flags, cs_txn **txn);
/* As cs_get (CS_ENOTFOUND when absent, *val released with cs_free), seeing the transaction's own
 * writes. Also CS_EBATCH (limits). */
CS_MUST_CHECK int cs_txn_get(cs_txn *t, const char *coll, const void *key, size_t klen, void **val,
                             size_t *vlen);
/* Buffer a write (nothing is sent before commit). cs_txn_put clears the key's expiry (as Redis
 * SET does); cs_txn_put_ttl sets it (0: none; also CS_EINVAL over CS_EXPIRE_MAX_MS). Errors:
 * CS_EINVAL (NULL, or a read-only transaction), CS_ENAME, CS_EKEYSIZE,
 * CS_EVALSIZE, CS_EBATCH, -ENOMEM; the transaction stays usable. */
CS_MUST_CHECK int cs_txn_put(cs_txn *t, const char *coll, const void *key, size_t klen,
                             const void *val, size_t vlen);
CS_MUST_CHECK int cs_txn_put_ttl(cs_txn *t, const char *coll, const void *key, size_t klen,
                                 const void *val, size_t vlen, uint64_t expire_at_ms);
CS_MUST_CHECK int cs_txn_del(cs_txn *t, const char *coll, const void *key, size_t klen);
/* The expiry of key as the transaction sees it (0: none): its own write's, else (read-only) its
 * snapshot's, else the record's now (as cs_get_expiry). CS_ENOTFOUND when missing or expired.
 * Not a validated read: commit checks the values read with cs_txn_get, not expiries, so a
 * concurrent cs_expire that changes only a key's expiry does not conflict (read the value too,
 * and write it back with cs_txn_put_ttl, to make the expiry part of the transaction's
 * decision). Errors: CS_EINVAL, CS_ENAME, CS_EKEYSIZE, CS_EIO, CS_ECLOSED. */
CS_MUST_CHECK int cs_txn_get_expiry(cs_txn *t, const char *coll, const void *key, size_t klen,
                                    uint64_t *expire_at_ms);
/* 0: every write applied, durably in sync mode. CS_ECONFLICT: a read no longer holds (checked
 * again after any wait for another commit's lock), or a key is locked by a younger
 * transaction's commit, or the wait was over its limits: nothing applied, retry. Else an error
 * as cs_write's: nothing applied — except that CS_EIO, as for any write whose WAL write fails,
 * means "not applied now": when the failed write reached the disk all the same, the next open
 * may apply it, unless a participant that did not fail made the transaction's ABORT durable
 * (the commit waits for that before it returns). Frees t in every case. */
CS_MUST_CHECK int cs_txn_commit(cs_txn *t);
/* Drop the transaction (nothing was sent); frees t. NULL is fine. */
void cs_txn_abort(cs_txn *t);
/* A cursor over coll inside t (cs_cursor_* move and read it; close it with cs_cursor_close).
 * Read-write: it shows t's own writes to coll as of the open over a fresh cut of the shards, and
 * every range it walks is validated at commit like a read (so no phantom: an insert, change or
 * delete in a walked range by another transaction makes the commit CS_ECONFLICT). Read-only: it
 * reads t's snapshot. Ranges are recorded until commit or abort (which end open cursors' recording;
 * close them afterwards). Errors: CS_EINVAL, CS_ENAME, CS_EIO, CS_ECLOSED, -ENOMEM. */
CS_MUST_CHECK int cs_txn_cursor_open(cs_txn *t, const char *coll, cs_cursor **c);

/* ---- Change feed ----
 * Committed writes, read back from the shards' logs, as events: per key in commit order, a
 * transaction's (or a batch's) events one after another. Only what is durable is shown. Every
 * event carries a position token (a string) that resumes after its transaction or batch;
 * cs_feed_open with it goes on from there, also after a reopen, as long as the logs still hold
 * what the token needs (checkpoints remove old log segments: then CS_ENOTFOUND). Not in
 * durability=none (no log: CS_ENOTSUP). Deletions have deleted set and no value. A feed belongs
 * to one thread; it reads the log files itself and costs the shards a statistics request per
 * poll. */
typedef struct cs_feed cs_feed;
struct cs_feed_event {
    const char *coll; /* collection (NUL-terminated) */
    const void *key;  /* key bytes */
    size_t klen;
    const void *val; /* value (NULL for a deletion or an empty value) */
    size_t vlen;
    bool deleted;         /* a deletion */
    uint64_t txn_id;      /* the cross-shard transaction, 0 for other writes */
    const char *position; /* token that resumes after this event's transaction or batch */
};
/* coll NULL: every collection; from NULL: from now on. Errors: CS_EINVAL (db or feed NULL, a
 * malformed token or one of another shard count or beyond the log), CS_ENAME, CS_ENOTSUP,
 * CS_ENOTFOUND (the logs no longer hold the position), CS_ECORRUPT, -ENOMEM. */
CS_MUST_CHECK int cs_feed_open(cs_db *db, const char *coll, const char *from, cs_feed **feed);
/* The next event (its pointers valid until the next call or close), waiting up to timeout_ms
 * (0: do not wait; negative: forever). CS_ENOTFOUND when none came in time. */
CS_MUST_CHECK int cs_feed_next(cs_feed *feed, struct cs_feed_event *ev, int timeout_ms);
void cs_feed_close(cs_feed *feed);

/* ---- Cursors ----
 * A cursor reads a consistent snapshot of each shard (taken at cs_cursor_open; writes made
 * later are not seen) and yields the collection in global key order (memcmp), merging the
 * shards' sorted streams. A cursor over a missing collection is valid and empty.
 * Positioning calls return 0 when the cursor is on a record, CS_ENOTFOUND when it ran off
 * either end (then only first/last/seek are allowed), or an error. */
/* cs_cursor_open: CS_EINVAL, CS_ENAME, CS_EIO (a fenced shard), CS_ECLOSED, -ENOMEM. */
CS_MUST_CHECK int cs_cursor_open(cs_db *db, const char *coll, cs_cursor **c);
CS_MUST_CHECK int cs_cursor_first(cs_cursor *c);
CS_MUST_CHECK int cs_cursor_last(cs_cursor *c);
CS_MUST_CHECK int cs_cursor_seek(cs_cursor *c, const void *key, size_t klen); /* first key >= key */
CS_MUST_CHECK int cs_cursor_next(cs_cursor *c);
CS_MUST_CHECK int cs_cursor_prev(cs_cursor *c);
/* Views of the current record, valid until the cursor moves or closes. CS_EINVAL when the
 * cursor is not on a record. */
CS_MUST_CHECK int cs_cursor_key(const cs_cursor *c, const void **key, size_t *klen);
CS_MUST_CHECK int cs_cursor_value(const cs_cursor *c, const void **val, size_t *vlen);
void cs_cursor_close(cs_cursor *c);

/* ---- Sessions: asynchronous submission and completion ----
 * A session lets one thread keep up to `depth` requests in flight, io_uring style. The caller
 * keeps coll, key and value buffers valid and unchanged until the request's completion has been
 * reaped. A submit call returns CS_EFULL when `depth` requests are already in flight.
 * Completions come back in any order, each with the caller's user_data. */
struct cs_completion {
    uint64_t user_data; /* as given at submission */
    int rc;             /* result, as the blocking call would return it */
    void *val;          /* gets: value (release with cs_free); NULL otherwise */
    size_t vlen;        /* gets: value length */
};
/* cs_session_open: CS_EINVAL (db or s NULL, depth 0 or over CS_SESSION_DEPTH_MAX), -ENOMEM.
 * Submissions: CS_EFULL (depth requests in flight), CS_EINVAL, CS_ENAME, CS_EKEYSIZE,
 * CS_EVALSIZE (nothing was submitted); the completion's rc is what the blocking call would
 * return. */
CS_MUST_CHECK int cs_session_open(cs_db *db, unsigned depth, cs_session **s);
CS_MUST_CHECK int cs_session_put(cs_session *s, const char *coll, const void *key, size_t klen,
                                 const void *val, size_t vlen, uint64_t user_data);
/* cs_session_put with an expiry (see Expiry); CS_EINVAL for expire_at_ms > CS_EXPIRE_MAX_MS. */
CS_MUST_CHECK int cs_session_put_ttl(cs_session *s, const char *coll, const void *key, size_t klen,
                                     const void *val, size_t vlen, uint64_t expire_at_ms,
                                     uint64_t user_data);
CS_MUST_CHECK int cs_session_get(cs_session *s, const char *coll, const void *key, size_t klen,
                                 uint64_t user_data);
CS_MUST_CHECK int cs_session_del(cs_session *s, const char *coll, const void *key, size_t klen,
                                 uint64_t user_data);
/* Submit a transaction's commit (cs_txn_commit's work) and return at once; the session takes t,
 * which the caller no longer touches. Its completion's rc is what cs_txn_commit would return.
 * One thread keeps many commits in flight this way. Errors: CS_EINVAL (s or t NULL), CS_EFULL,
 * -ENOMEM: nothing was submitted, and t is freed (aborted). */
CS_MUST_CHECK int cs_session_commit(cs_session *s, cs_txn *t, uint64_t user_data);
/* Reap up to max completions into out[], waiting until at least min are there (min <= the
 * number in flight). Returns the number reaped (>= 0), or CS_EINVAL (s or out NULL, max 0, or
 * min over max or over the number in flight). */
CS_MUST_CHECK int cs_session_poll(cs_session *s, struct cs_completion *out, unsigned max,
                                  unsigned min);
unsigned cs_session_inflight(const cs_session *s);
/* Waits for every request in flight (their completions are dropped; values are released),
 * then frees the session. */
void cs_session_close(cs_session *s);

/* ---- Verification ----
 * Check a closed database without changing anything on disk: every checksum of its newest
 * checkpoints and of its WAL, then every invariant of every tree. Returns 0 when all is well,
 * CS_ECORRUPT when something is damaged (cs_last_error() names the first problem), or the error
 * that kept it from looking (CS_ELOCKED, CS_ENOTFOUND when dir holds no database, ...).
 * *report (may be NULL) receives a summary, one line per shard, released with cs_free(), also
 * on CS_ECORRUPT. */
CS_MUST_CHECK int cs_verify(const char *dir, const cs_options *o, char **report);

/* ---- Checkpoints ----
 * Write every shard's trees (from copy-on-write snapshots: writers go on) into a checkpoint file,
 * then remove the WAL segments the checkpoint before it covers (that one stays, with the WAL since
 * it, as the fallback should this one be found damaged); returns once all shards published
 * theirs. Recovery then loads the checkpoint and replays only the WAL after it. Shards also
 * checkpoint on their own after `checkpoint_wal_bytes` of WAL. Errors: CS_EINVAL, CS_ENOTSUP
 * (durability=none), CS_EIO (a read-only shard), CS_ECLOSED, -ENOSPC, -EIO, -ENOMEM. */
CS_MUST_CHECK int cs_checkpoint(cs_db *db);

/* ---- Online backup ----
 * Write a consistent copy of the open database db into the folder dir while db keeps serving
 * (reads and writes go on; each shard only takes a fresh checkpoint, as cs_checkpoint does).
 * dir must not exist (it is created; its parent must exist) or be an empty folder. The copy is a
 * database folder: cs_open and cs_verify take it as they take any other, with the shard count
 * of db.
 *
 * What the copy holds, per shard: the shard's state after some point of its history (a
 * checkpoint taken for the backup, then the whole WAL frames written after it up to the last one
 * whose write had completed: never a torn frame). In durability=sync that is every write
 * acknowledged before cs_backup was called, possibly some acknowledged during the call, and
 * nothing that was not durable; in durability=async it is every write acknowledged before the
 * call and possibly later ones, up to some point. Shards are copied one after another, so a
 * write on one shard and a later one on another may be in the copy without the first (a batch
 * never spans shards, so no batch is ever split).
 *
 * Files: each shard's checkpoint and its full WAL segments are hard links to db's files where
 * the filesystem allows (cstore never writes them again; only salvage of damage inside one would
 * change both copies), copies otherwise (another filesystem); the WAL segment being appended to
 * is copied up to its last complete frame, the rest of the copy reading as zeros (a sparse file).
 * Everything is fsynced, folders too; the format record CSTORE is written last, so a folder
 * without it is an unfinished backup. Costs a checkpoint of each shard (one at a time), and the
 * bytes of what cannot be linked.
 *
 * Returns 0, or:
 *   CS_EINVAL    db or dir is NULL, or dir is ""
 *   CS_ENOTSUP   durability=none: there is no WAL or checkpoint to copy (copy the folder of a
 *                closed database instead); nothing is changed
 *   CS_EEXIST    dir exists and is not empty (nothing is changed)
 *   CS_ENOTDIR   dir exists and is not a folder (nothing is changed)
 *   CS_EIO       a shard is read-only after a write error
 *   CS_EFULL     a shard folder holds more than its limit of WAL segments
 *   CS_ECORRUPT  a shard folder does not hold what the shard's WAL says: the segment being
 *                appended to is missing or shorter, or a segment name lies after it
 *   -errno       a system call failed: -ENOENT (the parent of dir is missing), -EACCES, -ENOSPC,
 *                -ENAMETOOLONG, -EIO, -ENOMEM, ...
 * On any error but CS_EINVAL, CS_EEXIST and CS_ENOTDIR, what the call created is removed again
 * (dir too, when the call created it). Safe to call from any thread, also while other backups of
 * db run (into other folders). */
CS_MUST_CHECK int cs_backup(cs_db *db, const char *dir);

/* ---- Statistics ---- */
struct cs_shard_stats {
    unsigned shard;                   /* shard index */
    int cpu;                          /* CPU the shard is pinned to */
    uint64_t records;                 /* records in all collections of this shard */
    uint64_t collections;             /* collections present on this shard */
    uint64_t puts;                    /* puts executed since open */
    uint64_t gets;                    /* gets the shard thread executed since open (most gets are
                                       * answered from a published view without it) */
    uint64_t dels;                    /* deletes executed since open */
    uint64_t batches;                 /* atomic batches executed since open */
    uint64_t scans;                   /* cursor snapshots the shard thread took since open (a
                                       * cursor normally pins the published view instead) */
    uint64_t views;                   /* views published to lock-free readers since open */
    uint64_t loops;                   /* event loop iterations that did work */
    uint64_t wal_frames;              /* WAL frames written since open */
    uint64_t wal_records;             /* WAL records written since open */
    uint64_t wal_bytes;               /* WAL bytes written since open (after compression) */
    uint64_t wal_syncs;               /* fdatasync calls since open */
    uint64_t wal_lsn;                 /* last LSN assigned */
    uint64_t wal_durable_lsn;         /* last LSN known durable */
    uint64_t wal_segments;            /* WAL segment files on disk */
    uint64_t recovered_records;       /* WAL records replayed at open */
    uint64_t recovery_us;             /* time this shard spent recovering at open */
    uint64_t recovery_torn_bytes;     /* bytes of a torn WAL tail cut off at open (0: none) */
    uint64_t recovery_salvaged_bytes; /* WAL bytes salvage dropped at open (0: none) */
    uint64_t tree_bytes;              /* bytes held by the shard's trees */
    uint64_t wal_enospc;              /* frames refused for want of disk space (rolled back) */
    uint64_t checkpoints;             /* checkpoints published since open */
    uint64_t checkpoint_lsn;          /* LSN of the newest checkpoint (0: none) */
    int io_error;                     /* 0, or the error that made the shard read-only */
    uint64_t txn_commits;             /* transactions committed here (one-shard ones, and each
                                       * shard's part of a cross-shard one) since open */
    uint64_t txn_conflicts;           /* transactions this shard refused (CS_ECONFLICT) */
    uint64_t txn_cross_commits;       /* cross-shard transactions committed whose first
                                       * participant (lowest shard index) is this shard: the
                                       * sum over shards counts each once */
    uint64_t requests_queued;         /* requests the shard took from its inbox and has not
                                       * executed yet (the inbox itself is a lock-free stack
                                       * that is not counted) */
    uint64_t requests_pending;        /* requests executed and waiting for their WAL frame to be
                                       * durable (durability=sync) */
    uint64_t view_gets;               /* gets that application threads answered from this
                                       * shard's published views since open (gets + view_gets:
                                       * every get of the shard's keys) */
    uint64_t expired;                 /* expired records the shard's background reclaim deleted
                                       * since open (each logged as a delete) */
};
unsigned cs_shard_count(const cs_db *db);
/* Errors: CS_EINVAL (db or out NULL, shard >= cs_shard_count()), CS_ECLOSED. */
CS_MUST_CHECK int cs_stats(cs_db *db, unsigned shard, struct cs_shard_stats *out);

/* ---- Metrics ----
 * Histograms of latencies and sizes since open, per shard, recorded without locks or allocation
 * on the paths they time, in log-linear buckets (16 per power of two: a quantile reported is at
 * most 6.25% above the true value, never below it; values above 2^42 (73 minutes in ns) count
 * as 2^42). What each one measures: */
enum cs_metric {
    CS_METRIC_PUT = 0,      /* puts (cs_put, session puts), from queueing to the shard to the
                             * completion on the shard thread (in durability=sync including the
                             * wait for the WAL frame to be durable), ns; every outcome */
    CS_METRIC_GET = 1,      /* the same for gets the shard thread executed: those the published
                             * view could not answer (CS_METRIC_VIEW_GET has the others), ns */
    CS_METRIC_DEL = 2,      /* the same for deletes, ns */
    CS_METRIC_BATCH = 3,    /* the same for atomic batches on one shard (cs_write), ns */
    CS_METRIC_VIEW_GET = 4, /* gets the calling thread answered from the shard's published view
                             * without the shard thread (cs_get, cs_session_get): the lookup and
                             * the value's copy, ns. A sample: one in 16 of each thread's such
                             * gets is timed (cs_shard_stats.view_gets counts them all) */
    CS_METRIC_COMMIT = 5,   /* commits (cs_txn_commit, cs_session_commit, and cs_write batches
                             * spanning shards), from the commit's start to its answer, on the
                             * transaction's first shard (lowest index); every outcome,
                             * CS_ECONFLICT included; commits that touch nothing are not
                             * recorded, ns */
    CS_METRIC_WAL_SYNC = 6, /* durability=sync: a WAL frame's write with RWF_DSYNC (write and
                             * flush), durability=async: a lone fdatasync; from submission to
                             * completion; ns */
    CS_METRIC_WAL_FRAME_BYTES = 7, /* bytes of each WAL frame written (after compression) */
    CS_METRIC_CHECKPOINT = 8,      /* checkpoints published, from the trees' snapshot to the
                                    * publication (file written, renamed, folder synced), ns */
};
#define CS_METRICS 9u /* values of enum cs_metric */

struct cs_metric_summary {
    uint64_t count;               /* values recorded since open */
    uint64_t sum;                 /* their sum (ns, or bytes) */
    uint64_t p50, p90, p99, p999; /* quantiles (each a bucket's upper bound); 0 when empty */
    uint64_t max;                 /* upper bound of the highest non-empty bucket */
};
/* A summary of one histogram of one shard, read without a round trip to the shard (a snapshot
 * taken while values are recorded may miss the latest ones). Errors: CS_EINVAL (db or out NULL,
 * shard >= cs_shard_count(), metric >= CS_METRICS). */
CS_MUST_CHECK int cs_metrics_summary(cs_db *db, unsigned shard, unsigned metric,
                                     struct cs_metric_summary *out);

/* Every metric of the database in the Prometheus text exposition format 0.0.4: for each family a
 * "# HELP" line saying exactly what it measures and a "# TYPE" line, then one sample per shard
 * (label shard="N", and op="..." where a family has operations). Names start with "cstore_";
 * latencies are histograms in seconds (buckets at 2^10 .. 2^34 ns, about 1 us .. 17 s, and
 * +Inf: exact counts, as they fall on bucket bounds), counters end in "_total", queue depths,
 * memory and LSNs are gauges. The families are listed in README.md ("Metrics"). *text receives
 * the text (NUL-terminated, from cs_free's allocator: release it with cs_free) and *len its
 * length without the NUL; a caller (an HTTP endpoint) may append families of its own. Costs one
 * statistics request per shard (as cs_stats) and a read of each histogram.
 * Errors: CS_EINVAL (db, text or len NULL), CS_ECLOSED, -ENOMEM; on error *text is NULL and
 * *len 0. */
CS_MUST_CHECK int cs_metrics_prometheus(cs_db *db, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
