/* The model of cstore-fault: the operation log, what it allows each key to hold, and the checker
 * that compares a database with it. Split from the tool (tools/cstore_fault.c) so that a unit
 * test (tests/unit/test_fault_model.c) can feed it a log and see what it accepts.
 *
 * Values and keys: every value is "v<16 hex digits id>" and filler derived from the id, so a
 * value read back is exactly one that was written (value_parse gives its id) or garbage (0).
 * Keys are "key-%06u" (key_make), placed on shard XXH3_64(key) % shards (key_shard).
 *
 * The operation log: each operation writes an INTENT record before the call and an ACK
 * (returned 0) or FAIL (returned an error) record after it (struct op_rec, fixed size, one
 * write(2), atomic on a pipe). model_apply takes them in order, from any thread.
 *
 * The model keeps per key the last acknowledged state, the one before it, the operations in
 * flight (intent seen, no ack: they may or may not have happened, at most MAYBE_MAX), the
 * acknowledged states since the last reopen (HIST_MAX) and the state read at that reopen. An
 * acknowledgement supersedes the operations on the key announced before it; those announced
 * after it stay in flight (a pipelined client has several on a key, applied in order). A
 * FAIL with -ENOSPC or CS_ENOTSUP means "not applied" and leaves the in-flight set, and so does
 * CS_EIO when eio_not_applied is set; any other error leaves the operation in flight.
 *
 * The check (model_check_key, model_check_batches, model_check_db): a key must read as its
 * acknowledged state or a state in flight; under RULE_HISTORY (async durability) also as any
 * state acknowledged since the last reopen, and under RULE_BASE (durability none) only as the
 * state at the last reopen; with lenient_torn, a key of a shard that reported a torn tail may
 * read as the state before its last acknowledgement (counted as damage). A value that was never
 * written, a batch in flight that landed in part, and a scan that disagrees with the gets are
 * violations. After a reopen the model adopts what it read (model_adopt). Every violation is
 * counted in the scenario's result; the first VIOLATIONS_SHOWN_MAX are printed. */
#include "tools/fault_model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util.h"

uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- values and keys ---- */

#define VAL_ID_HEX 16u
#define VAL_HEAD_BYTES (1u + VAL_ID_HEX)

static size_t value_len(uint64_t id, size_t filler_max)
{
    return VAL_HEAD_BYTES + (size_t)(mix64(id ^ 0x5151) % (filler_max + 1));
}

/* Write value id into buf (room for value_len bytes); returns its length. */
size_t value_make(uint64_t id, size_t filler_max, char *buf)
{
    size_t len = value_len(id, filler_max);
    char head[VAL_HEAD_BYTES + 1];
    snprintf(head, sizeof(head), "v%016" PRIx64, id);
    memcpy(buf, head, VAL_HEAD_BYTES);
    uint64_t h = mix64(id);
    for (size_t i = VAL_HEAD_BYTES; i < len; i++) {
        if ((i & 7u) == 0)
            h = mix64(h + i);
        buf[i] = (char)('a' + (h >> ((i & 7u) * 8)) % 26u);
    }
    return len;
}

/* The id of a well-formed value, or 0 when the bytes are not exactly a value we write. */
uint64_t value_parse(const void *val, size_t vlen, size_t filler_max, char *scratch)
{
    const char *v = val;
    if (vlen < VAL_HEAD_BYTES || v[0] != 'v')
        return 0;
    uint64_t id = 0;
    for (unsigned i = 1; i < VAL_HEAD_BYTES; i++) {
        char c = v[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16u;
        if (d == 16u)
            return 0;
        id = id << 4 | d;
    }
    if (id == 0 || value_make(id, filler_max, scratch) != vlen || memcmp(scratch, v, vlen) != 0)
        return 0;
    return id;
}

size_t key_make(uint32_t index, char *buf, size_t size)
{
    return (size_t)snprintf(buf, size, "key-%06u", index);
}

/* The model key index of a key read back, or UINT32_MAX when it is not one of ours. */
uint32_t key_parse(const void *key, size_t klen, uint32_t nkeys)
{
    char buf[32];
    if (klen != 10 || memcmp(key, "key-", 4) != 0)
        return UINT32_MAX;
    uint32_t idx = 0;
    for (size_t i = 4; i < klen; i++) {
        char c = ((const char *)key)[i];
        if (c < '0' || c > '9')
            return UINT32_MAX;
        idx = idx * 10u + (uint32_t)(c - '0');
    }
    key_make(idx, buf, sizeof(buf));
    return idx < nkeys && memcmp(buf, key, klen) == 0 ? idx : UINT32_MAX;
}

/* The documented router (engine/db.c): a key lives on shard XXH3_64(key) % shards. */
unsigned key_shard(uint32_t index, unsigned shards)
{
    char buf[32];
    size_t len = key_make(index, buf, sizeof(buf));
    return (unsigned)(XXH3_64bits(buf, len) % shards);
}

void model_reset(struct model *m, uint32_t nkeys, unsigned shards)
{
    cs_assert(nkeys <= KEYS_MAX);
    cs_assert(shards > 0);
    memset(m->keys, 0, sizeof(m->keys));
    m->nkeys = nkeys;
    m->shards = shards;
    m->batch_count = 0;
    m->acked_ops = m->failed_ops = 0;
    m->eio_fails = m->enospc_fails = m->other_fails = 0;
    m->last_other_rc = 0;
    m->enomem_ok = false;
    m->rule = RULE_EXACT;
    m->reads_may_fail = false;
    m->lost_acked = 0;
}

static void maybe_remove(struct key_state *k, uint64_t op_id)
{
    for (uint32_t i = 0; i < k->maybe_count; i++) {
        if (k->maybe_op[i] == op_id) {
            memmove(&k->maybe_val[i], &k->maybe_val[i + 1],
                    (k->maybe_count - i - 1) * sizeof(uint64_t));
            memmove(&k->maybe_op[i], &k->maybe_op[i + 1],
                    (k->maybe_count - i - 1) * sizeof(uint64_t));
            k->maybe_count--;
            return;
        }
    }
}

/* Operation op_id on key k is acknowledged: it and the operations announced on the key before
 * it are superseded and leave the in-flight set; those announced after it (a pipelined client
 * has several in flight on a key, applied in order) stay. When op_id is not remembered (the set
 * overflowed), everything goes. Once nothing is left in flight, nothing is unknown either. */
static void maybe_ack(struct key_state *k, uint64_t op_id)
{
    uint32_t upto = k->maybe_count;
    for (uint32_t i = 0; i < k->maybe_count; i++) {
        if (k->maybe_op[i] == op_id) {
            upto = i + 1;
            break;
        }
    }
    memmove(&k->maybe_val[0], &k->maybe_val[upto], (k->maybe_count - upto) * sizeof(uint64_t));
    memmove(&k->maybe_op[0], &k->maybe_op[upto], (k->maybe_count - upto) * sizeof(uint64_t));
    k->maybe_count -= upto;
    if (k->maybe_count == 0)
        k->overflow = false;
}

static void batch_forget(struct model *m, uint64_t op_id)
{
    for (uint32_t i = 0; i < m->batch_count; i++) {
        if (m->batches[i].op_id == op_id) {
            m->batches[i] = m->batches[--m->batch_count];
            return;
        }
    }
}

/* Apply one log record. Caller holds m->lock. */
static void model_apply_locked(struct model *m, const struct op_rec *r)
{
    if (r->magic != REC_MAGIC || r->count == 0 || r->count > BATCH_KEYS_MAX)
        return;
    for (unsigned i = 0; i < r->count; i++)
        if (r->key[i] >= m->nkeys)
            return;
    switch (r->kind) {
    case REC_INTENT:
        for (unsigned i = 0; i < r->count; i++) {
            struct key_state *k = &m->keys[r->key[i]];
            if (k->maybe_count == MAYBE_MAX) {
                k->overflow = true;
                continue;
            }
            k->maybe_val[k->maybe_count] = r->val[i];
            k->maybe_op[k->maybe_count] = r->op_id;
            k->maybe_count++;
        }
        if (r->count > 1 && m->batch_count < PENDING_BATCHES_MAX)
            m->batches[m->batch_count++] = *r;
        break;
    case REC_ACK:
        for (unsigned i = 0; i < r->count; i++) {
            struct key_state *k = &m->keys[r->key[i]];
            if (r->rc == CS_ENOTFOUND && k->acked != 0 && k->maybe_count <= 1 && !k->overflow)
                model_violation(
                    m, "delete of key-%06u found nothing; acknowledged value %016" PRIx64 " lost",
                    r->key[i], k->acked);
            k->prev = k->acked;
            k->acked = r->val[i];
            if (k->nhist < HIST_MAX)
                k->hist[k->nhist++] = r->val[i];
            else
                k->hist_overflow = true;
            maybe_ack(k, r->op_id);
        }
        m->acked_ops += r->count;
        if (r->count > 1)
            batch_forget(m, r->op_id);
        break;
    case REC_FAIL:
        m->failed_ops++;
        for (unsigned i = 0; i < r->count; i++) {
            m->keys[r->key[i]].fail_op = r->op_id;
            m->keys[r->key[i]].fail_rc = r->rc;
        }
        if (r->rc == CS_EIO)
            m->eio_fails++;
        else if (r->rc == -ENOSPC)
            m->enospc_fails++;
        else if (r->rc != CS_ENOTSUP && !(r->rc == -ENOMEM && m->enomem_ok)) {
            m->other_fails++;
            m->last_other_rc = r->rc;
        }
        if (r->rc == -ENOSPC || r->rc == CS_ENOTSUP || (r->rc == CS_EIO && m->eio_not_applied)) {
            /* Refused whole: not applied, now or later. */
            for (unsigned i = 0; i < r->count; i++)
                maybe_remove(&m->keys[r->key[i]], r->op_id);
            if (r->count > 1)
                batch_forget(m, r->op_id);
        }
        break;
    }
}

void model_apply(struct model *m, const struct op_rec *r)
{
    pthread_mutex_lock(&m->lock);
    model_apply_locked(m, r);
    pthread_mutex_unlock(&m->lock);
}

void model_violation(struct model *m, const char *fmt, ...)
{
    m->res->violations++;
    if (m->res->violations > VIOLATIONS_SHOWN_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "VIOLATION (%s): ", m->stage);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- the check ---- */

static bool in_maybe(const struct key_state *k, uint64_t v)
{
    for (uint32_t i = 0; i < k->maybe_count; i++)
        if (k->maybe_val[i] == v)
            return true;
    return false;
}

static bool in_hist(const struct key_state *k, uint64_t v)
{
    for (uint32_t i = 0; i < k->nhist; i++)
        if (k->hist[i] == v)
            return true;
    return false;
}

/* Atomic batches in flight: all of their keys landed, or none. got[] = states read. */
void model_check_batches(struct model *m, const uint64_t *got)
{
    for (uint32_t b = 0; b < m->batch_count; b++) {
        const struct op_rec *r = &m->batches[b];
        unsigned landed = 0, missing = 0;
        bool latest = true;
        for (unsigned i = 0; i < r->count; i++) {
            const struct key_state *k = &m->keys[r->key[i]];
            /* Only judge a batch that is the latest operation on every key it touches. */
            if (k->maybe_count == 0 || k->maybe_op[k->maybe_count - 1] != r->op_id || k->overflow)
                latest = false;
        }
        if (!latest)
            continue;
        for (unsigned i = 0; i < r->count; i++) {
            uint64_t g = got[r->key[i]];
            if (g != r->val[i])
                missing++;
            else if (r->val[i] != 0)
                landed++;
        }
        if (landed && missing)
            model_violation(
                m, "batch %016" PRIx64 " landed in part: %u of its puts there, %u keys not",
                r->op_id, landed, missing);
    }
}

/* Check the open database against the model; torn_shards: bit s = shard s reported a torn tail
 * (its last acknowledged frame may be gone: accepted only when lenient_torn). With adopt (after
 * a reopen: what is on disk is now settled), what was read becomes the acknowledged state and
 * nothing is in flight any more; without (a live database whose failed writes may still be on
 * disk), the model is left as it was. */
/* The id of the value bytes read back for key, or 0 (a violation) when they are not exactly a
 * value the workload writes. */
uint64_t model_read_value(struct model *m, const char *key, const void *val, size_t vlen,
                          size_t filler_max, char *scratch)
{
    uint64_t g = value_parse(val, vlen, filler_max, scratch);
    if (g == 0)
        model_violation(m, "%s holds a value that was never written (%zu bytes)", key, vlen);
    return g;
}

/* Judge key i read back as state g (a value id, 0 = absent) by the rule in force. */
void model_check_key(struct model *m, uint32_t i, uint64_t g, uint64_t torn_shards,
                     bool lenient_torn)
{
    cs_assert(i < m->nkeys);
    char key[32];
    key_make(i, key, sizeof(key));
    struct key_state *k = &m->keys[i];
    m->res->keys_checked++;
    if (m->rule == RULE_BASE) {
        if (g != k->base)
            model_violation(m,
                            "%s (shard %u): read %016" PRIx64 ", but durability=none must leave "
                            "%016" PRIx64 " (the state the last clean close left)",
                            key, key_shard(i, m->shards), g, k->base);
        return;
    }
    if (k->overflow || g == k->acked || in_maybe(k, g))
        return;
    if (m->rule == RULE_HISTORY && (k->hist_overflow || g == k->base || in_hist(k, g))) {
        m->lost_acked++; /* an acknowledged write of the unsynced tail was lost */
        return;
    }
    if (lenient_torn && (torn_shards >> (key_shard(i, m->shards) % 64u) & 1u) && g == k->prev) {
        m->res->damage++; /* lost with a reported torn tail */
        return;
    }
    model_violation(m,
                    "%s (shard %u): read %016" PRIx64 ", last acknowledged %016" PRIx64
                    " (%u in flight; last failed operation %016" PRIx64 ": %s)",
                    key, key_shard(i, m->shards), g, k->acked, k->maybe_count, k->fail_op,
                    k->fail_rc ? cs_strerror(k->fail_rc) : "none");
}

/* After a reopen what was read is settled: it becomes the acknowledged state and the base of
 * the next check, and nothing is in flight any more. */
void model_adopt(struct model *m, const uint64_t *got)
{
    for (uint32_t i = 0; i < m->nkeys; i++) {
        struct key_state *k = &m->keys[i];
        if (got[i] != k->acked) {
            k->prev = k->acked;
            k->acked = got[i];
        }
        k->maybe_count = 0;
        k->overflow = false;
        k->base = got[i];
        k->nhist = 0;
        k->hist_overflow = false;
    }
    m->batch_count = 0;
}

/* Read every key and scan, judge both (see the file comment); got[] (in m) receives the states
 * read. */
void model_check_db(struct model *m, cs_db *db, uint64_t torn_shards, bool lenient_torn, bool adopt,
                    size_t filler_max)
{
    uint64_t *got = m->got;
    char *scratch = malloc(VAL_HEAD_BYTES + filler_max + 1);
    if (!scratch)
        exit(2);
    pthread_mutex_lock(&m->lock);
    for (uint32_t i = 0; i < m->nkeys; i++) {
        char key[32];
        size_t klen = key_make(i, key, sizeof(key));
        void *val = NULL;
        size_t vlen = 0;
        int rc = cs_get(db, COLL, key, klen, &val, &vlen);
        uint64_t g = 0;
        if (rc == 0) {
            g = model_read_value(m, key, val, vlen, filler_max, scratch);
            cs_free(val);
        } else if (rc != CS_ENOTFOUND) {
            if (!m->reads_may_fail || (rc != CS_EIO && rc != -ENOMEM))
                model_violation(m, "get %s failed: %s", key, cs_strerror(rc));
            else
                m->failed_reads++;
            g = m->keys[i].acked; /* unknown; keep the model */
        }
        got[i] = g;
        model_check_key(m, i, g, torn_shards, lenient_torn);
    }
    model_check_batches(m, got);
    /* A scan sees exactly what the gets saw, and nothing else. */
    cs_cursor *c = NULL;
    int rc = cs_cursor_open(db, COLL, &c);
    bool refused = m->reads_may_fail && (rc == CS_EIO || rc == -ENOMEM);
    if (refused) {
        m->failed_reads++; /* a fenced shard: its live trees cannot be read */
    } else if (rc) {
        model_violation(m, "cursor open failed: %s", cs_strerror(rc));
    } else {
        uint32_t seen = 0;
        rc = cs_cursor_first(c);
        for (uint32_t steps = 0; rc == 0 && steps < RECORDS_SCAN_MAX; steps++) {
            const void *key, *val;
            size_t klen, vlen;
            if (cs_cursor_key(c, &key, &klen) || cs_cursor_value(c, &val, &vlen)) {
                model_violation(m, "cursor key/value failed on a record");
                break;
            }
            uint32_t idx = key_parse(key, klen, m->nkeys);
            if (idx == UINT32_MAX) {
                model_violation(m, "scan shows a key that was never written (%zu bytes)", klen);
            } else if (value_parse(val, vlen, filler_max, scratch) != got[idx]) {
                model_violation(m, "scan and get disagree on key-%06u", idx);
            }
            seen++;
            rc = cs_cursor_next(c);
        }
        if (rc != CS_ENOTFOUND && rc != 0 && m->reads_may_fail && (rc == CS_EIO || rc == -ENOMEM)) {
            m->failed_reads++;
            cs_cursor_close(c);
            goto scanned;
        }
        if (rc != CS_ENOTFOUND && rc != 0)
            model_violation(m, "scan failed: %s", cs_strerror(rc));
        uint32_t present = 0;
        for (uint32_t i = 0; i < m->nkeys; i++)
            present += got[i] != 0;
        if (present != seen)
            model_violation(m, "scan saw %u records, gets found %u", seen, present);
        cs_cursor_close(c);
    }
scanned:
    if (adopt)
        model_adopt(m, got);
    pthread_mutex_unlock(&m->lock);
    free(scratch);
}
