/* Epoch-based reclamation: the process-wide ck_epoch and per-thread reader records.
 *
 * Readers (application threads) bracket each lock-free read with ck_epoch_begin/end on their own
 * record. A shard that unpublishes a view hands it to ck_epoch_call on its record and polls;
 * the callback runs on the shard thread once every reader that could have seen the view has left
 * its section. Records are never freed, only recycled (ck_epoch_recycle), so a thread exiting in
 * the middle of nothing costs one record for the life of the process at most. */
#include "epoch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__SANITIZE_THREAD__)
char cs_epoch_tsan_sync;
#endif

static ck_epoch_t epoch;
static pthread_once_t epoch_once = PTHREAD_ONCE_INIT;
static pthread_key_t reader_key;
static __thread ck_epoch_record_t *reader;

static void reader_exit(void *rec)
{
    ck_epoch_unregister(rec);
}

static void epoch_init(void)
{
    ck_epoch_init(&epoch);
    cs_assert(pthread_key_create(&reader_key, reader_exit) == 0);
}

static ck_epoch_record_t *record_get(void)
{
    pthread_once(&epoch_once, epoch_init);
    ck_epoch_record_t *rec = ck_epoch_recycle(&epoch, NULL);
    if (rec)
        return rec;
    rec = aligned_alloc(64, sizeof(*rec)); /* the record is cache-line aligned */
    if (rec) {
        memset(rec, 0, sizeof(*rec));
        ck_epoch_register(&epoch, rec, NULL);
    }
    return rec;
}

ck_epoch_record_t *cs_epoch_reader(void)
{
    if (cs_likely(reader != NULL))
        return reader;
    ck_epoch_record_t *rec = record_get();
    if (!rec)
        return NULL;
    if (pthread_setspecific(reader_key, rec) != 0) {
        ck_epoch_unregister(rec);
        return NULL;
    }
    reader = rec;
    return rec;
}

ck_epoch_record_t *cs_epoch_record_new(void)
{
    return record_get();
}

void cs_epoch_record_free(ck_epoch_record_t *rec)
{
    if (!rec)
        return;
    ck_epoch_barrier(rec);
    ck_epoch_unregister(rec);
}
