/* cstore-fault's model of what a database may hold: values and keys, the operation log, the
 * model and its checker (see tools/fault_model.c). */
#ifndef CS_TOOLS_FAULT_MODEL_H
#define CS_TOOLS_FAULT_MODEL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cstore.h"

#define THREADS_MAX 16u      /* workload threads */
#define KEYS_PER_THREAD 128u /* keys each thread owns */
#define KEYS_MAX (THREADS_MAX * KEYS_PER_THREAD)
#define BATCH_KEYS_MAX 4u                   /* keys in one atomic batch */
#define MAYBE_MAX 24u                       /* operations in flight remembered per key */
#define PENDING_BATCHES_MAX 4096u           /* batches in flight remembered by the model */
#define VIOLATIONS_SHOWN_MAX 20u            /* violations printed in full per scenario */
#define RECORDS_SCAN_MAX (KEYS_MAX + 1000u) /* cursor steps per check */
#define HIST_MAX 64u /* acknowledged states remembered per key since the last reopen (async) */
#define COLL "fault"

#define VAL_ID_HEX 16u
#define VAL_HEAD_BYTES (1u + VAL_ID_HEX)

/* What a check after a reopen accepts for a key, besides its acknowledged state and the states
 * of operations in flight. */
enum check_rule {
    RULE_EXACT,   /* nothing else (sync mode: nothing acknowledged may be lost) */
    RULE_HISTORY, /* any acknowledged state since the last reopen (async: the unsynced tail) */
    RULE_BASE,    /* only the state at the last reopen (durability=none: nothing was written) */
};

/* The outcome of one scenario, printed as one line. */
struct result {
    unsigned iterations;   /* iterations run */
    uint64_t acked_ops;    /* acknowledged operations (batch operations count one per key) */
    uint64_t keys_checked; /* per-key verifications made */
    uint64_t failed_ops;   /* operations that returned an error */
    uint64_t damage;       /* damage reported: CS_ECORRUPT at open, torn tails cut */
    uint64_t faults;       /* iterations in which the injected fault visibly fired */
    uint64_t violations;   /* broken promises */
};

/* ---- the operation log ---- */

enum rec_kind { REC_INTENT = 1, REC_ACK, REC_FAIL };
#define REC_MAGIC 0x43534654u /* "CSFT" */

/* One log record: what an operation does to which keys. val 0 = delete. Fits PIPE_BUF. */
struct op_rec {
    uint32_t magic;               /* REC_MAGIC */
    uint8_t kind;                 /* enum rec_kind */
    uint8_t count;                /* keys touched: 1, or 2..BATCH_KEYS_MAX for a batch */
    uint16_t thread;              /* writing thread */
    int32_t rc;                   /* REC_FAIL: the error returned */
    uint32_t pad;                 /* zero */
    uint64_t op_id;               /* unique operation id */
    uint32_t key[BATCH_KEYS_MAX]; /* key indexes */
    uint64_t val[BATCH_KEYS_MAX]; /* value ids put, 0 for a delete */
};
_Static_assert(sizeof(struct op_rec) <= 512, "a log record must be written atomically");

struct key_state {
    uint64_t acked;                /* value id of the last acknowledged state, 0 = absent */
    uint64_t prev;                 /* the acknowledged state before it */
    uint64_t maybe_val[MAYBE_MAX]; /* states that operations in flight would leave */
    uint64_t maybe_op[MAYBE_MAX];  /* their operation ids */
    uint32_t maybe_count;          /* entries in use */
    bool overflow;                 /* more in flight than remembered: the key is not checked */
    uint64_t fail_op;              /* the last operation on the key that returned an error */
    int fail_rc;                   /* and its error */
    uint64_t base;                 /* the state read at the last reopen (adopted) */
    uint64_t hist[HIST_MAX];       /* acknowledged states since then (newest last) */
    uint32_t nhist;                /* entries of hist[] in use */
    bool hist_overflow;            /* more than HIST_MAX: RULE_HISTORY does not judge the key */
};

/* The model of one scenario. model_apply may be called from many threads; the checks hold
 * `lock` themselves (model_check_db) or expect a single thread (the others). */
struct model {
    pthread_mutex_t lock; /* guards everything below (model_apply, model_check_db) */
    uint32_t nkeys;       /* keys in use: threads * KEYS_PER_THREAD */
    struct key_state keys[KEYS_MAX];
    struct op_rec batches[PENDING_BATCHES_MAX]; /* batches in flight */
    uint32_t batch_count;                       /* entries of batches[] in use */
    uint64_t acked_ops;                         /* acknowledged key operations */
    uint64_t failed_ops;                        /* operations that returned an error */
    uint64_t eio_fails;                         /* of which CS_EIO */
    uint64_t enospc_fails;                      /* of which -ENOSPC */
    uint64_t other_fails;                       /* of which anything else, CS_ENOTSUP excepted */
    int last_other_rc;                          /* the last "anything else" */
    bool eio_not_applied;   /* CS_EIO means "not applied": no failed frame reached the disk */
    bool enomem_ok;         /* -ENOMEM is an expected failure (alloc): left in flight */
    enum check_rule rule;   /* what model_check_key accepts after a reopen */
    bool reads_may_fail;    /* gets may fail with CS_EIO or -ENOMEM (a fenced shard: alloc) */
    uint64_t lost_acked;    /* keys read back older than acknowledged, accepted by the rule */
    uint64_t failed_reads;  /* gets refused under reads_may_fail (a fenced shard) */
    unsigned shards;        /* shards of the database (key_shard) */
    struct result *res;     /* result of the scenario running: checks and violations count here */
    const char *stage;      /* what the scenario is doing, for violation messages */
    uint64_t got[KEYS_MAX]; /* model_check_db: the state each key read as */
};

uint64_t mix64(uint64_t x); /* SplitMix64's finalizer */

/* Write value id into buf (room for VAL_HEAD_BYTES + filler_max bytes); returns its length. */
size_t value_make(uint64_t id, size_t filler_max, char *buf);
/* The id of a well-formed value, or 0 when the bytes are not exactly a value we write; scratch
 * has room for VAL_HEAD_BYTES + filler_max bytes. */
uint64_t value_parse(const void *val, size_t vlen, size_t filler_max, char *scratch);
size_t key_make(uint32_t index, char *buf, size_t size);
/* The model key index of a key read back, or UINT32_MAX when it is not one of ours. */
uint32_t key_parse(const void *key, size_t klen, uint32_t nkeys);
/* The documented router (engine/db.c): a key lives on shard XXH3_64(key) % shards. */
unsigned key_shard(uint32_t index, unsigned shards);

/* Forget everything: nkeys (<= KEYS_MAX) keys, all absent, on a database of shards shards. The
 * lock, res and stage are left as they are. */
void model_reset(struct model *m, uint32_t nkeys, unsigned shards);
/* Apply one log record (records with a bad magic, count or key are ignored). Takes m->lock. */
void model_apply(struct model *m, const struct op_rec *r);
/* Count a violation in m->res and print it (the first VIOLATIONS_SHOWN_MAX). */
void model_violation(struct model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t model_read_value(struct model *m, const char *key, const void *val, size_t vlen,
                          size_t filler_max, char *scratch);
void model_check_key(struct model *m, uint32_t i, uint64_t g, uint64_t torn_shards,
                     bool lenient_torn);
/* Atomic batches in flight: all of their keys landed, or none. got[] = states read. */
void model_check_batches(struct model *m, const uint64_t *got);
void model_adopt(struct model *m, const uint64_t *got);
/* Check the open database against the model; torn_shards: bit s = shard s reported a torn tail
 * (its last acknowledged frame may be gone: accepted only when lenient_torn). With adopt (after
 * a reopen: what is on disk is now settled), what was read becomes the acknowledged state and
 * nothing is in flight any more; without (a live database whose failed writes may still be on
 * disk), the model is left as it was. */
void model_check_db(struct model *m, cs_db *db, uint64_t torn_shards, bool lenient_torn, bool adopt,
                    size_t filler_max);

#endif
