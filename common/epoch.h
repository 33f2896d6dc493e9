/* Epoch-based reclamation for lock-free readers (Concurrency Kit's ck_epoch).
 *
 * One process-wide epoch. Every thread that reads published shard views gets its own record on
 * first use (kept in thread-local storage, handed back for reuse when the thread exits); each
 * shard thread registers a record of its own, through which it defers frees until no reader can
 * still hold what it retires. */
#ifndef CS_EPOCH_H
#define CS_EPOCH_H

#include <ck_epoch.h>

/* ThreadSanitizer cannot see the grace period: Concurrency Kit's epoch code is not instrumented
 * and orders with standalone fences. Under TSan, every read section's end releases one shared
 * sync object and every deferred callback acquires it, which states what ck_epoch guarantees:
 * a callback runs after the sections that could reach its object. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char cs_epoch_tsan_sync;
#define CS_EPOCH_TSAN_RELEASE() __tsan_release(&cs_epoch_tsan_sync)
#define CS_EPOCH_TSAN_ACQUIRE() __tsan_acquire(&cs_epoch_tsan_sync)
#else
#define CS_EPOCH_TSAN_RELEASE() ((void)0)
#define CS_EPOCH_TSAN_ACQUIRE() ((void)0)
#endif

static inline void cs_epoch_begin(ck_epoch_record_t *rec)
{
    ck_epoch_begin(rec, NULL);
}

static inline void cs_epoch_end(ck_epoch_record_t *rec)
{
    CS_EPOCH_TSAN_RELEASE();
    ck_epoch_end(rec, NULL);
}

/* First thing in every deferred callback (ck_epoch_call): the grace period has passed. */
static inline void cs_epoch_grace(void)
{
    CS_EPOCH_TSAN_ACQUIRE();
}

/* The calling thread's reader record, registered on first use; NULL only when it could not be
 * allocated (callers then take their slow path). */
ck_epoch_record_t *cs_epoch_reader(void);
/* A record for a shard thread (deferring frees); NULL when out of memory. */
ck_epoch_record_t *cs_epoch_record_new(void);
/* Run every deferral of rec (waiting for a grace period) and hand the record back for reuse. */
void cs_epoch_record_free(ck_epoch_record_t *rec);

#endif
