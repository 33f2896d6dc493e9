/* Sessions: asynchronous submission and completion, io_uring style.
 *
 * A session owns `depth` request slots, allocated once at open. A submit call takes a free slot,
 * fills its shard request (pointing at the caller's buffers, which must stay valid until the
 * completion is reaped) and queues it to the key's shard: no allocation, no lock. When a shard
 * completes a slot, it pushes the slot onto the session's completion stack (a Concurrency Kit
 * lock-free stack, reusing the request's inbox link, which the shard no longer needs) and wakes
 * the session's thread through a futex if it sleeps in poll. The owner takes the whole stack with
 * one exchange; completions come back in no particular order anyway. A get that the shard's
 * published view answers (see "VIEWS" in shards/views.c) completes at once, inside the submit
 * call, onto the owner's own list of taken completions: no shard, no wake-up.
 *
 * A transaction's commit (cs_session_commit) is a state machine of several rounds of requests
 * (engine/txn.c): when a round completes, its last request pushes the slot onto the completion
 * stack like any completion, and the owner, reaping it, runs the next step on its own thread;
 * only the last step makes it a completion the caller sees. A cross-shard commit completes at its
 * decision: its installs go on without the slot (engine/txn.c: the tail), and the owner's next
 * requests reach each shard after them.
 *
 * A session is used by one application thread at a time. */
#include <ck_pr.h>
#include <errno.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/db.h"
#include "engine/host.h"
#include "engine/txn.h"

#define SESSION_SPIN_MAX 200u /* polls for completions before the owner sleeps on its futex */
#define SESSION_SLEEPING 1u   /* futex word bit: the owner sleeps (or is about to) */
#define SESSION_TICK 2u       /* what each completion adds to the futex word */

struct session_slot {
    struct shard_req req;  /* must stay first */
    struct cs_session *s;  /* owner */
    uint64_t user_data;    /* caller's tag */
    struct txn_commit *tc; /* a transaction's commit in flight (cs_session_commit), or NULL */
};

struct cs_session {
    cs_db *db;                    /* database */
    unsigned depth;               /* slots */
    unsigned inflight;            /* slots submitted and not reaped */
    struct session_slot *slots;   /* all slots */
    struct session_slot **free;   /* stack of free slots */
    unsigned nfree;               /* entries on it */
    struct ck_stack done;         /* completed slots, pushed by shards */
    struct ck_stack_entry *taken; /* slots taken from `done`, not yet reaped */
    _Atomic uint32_t word;        /* futex word: completions << 1 | SESSION_SLEEPING */
    _Atomic uint32_t signalling;  /* shards inside slot_done() */
    struct ck_stack_entry *later; /* commits whose step must be tried again (TXN_STEP_LATER) */
    void (*notify)(void *arg);    /* host_session_open: called after each completion, or NULL */
    void *notify_arg;             /* its argument */
};

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

static void slot_done(struct shard_req *r)
{
    struct session_slot *slot = (struct session_slot *)r;
    struct cs_session *s = slot->s;
    /* Once the slot is in the ring the owner may reap it and close the session: `signalling`
     * keeps the session alive until this function no longer touches it. */
    atomic_fetch_add(&s->signalling, 1);
    ck_stack_push_upmc(&s->done, &slot->req.link);
    if (s->notify) { /* an owner that sleeps in its own event loop, not on the futex */
        s->notify(s->notify_arg);
        atomic_fetch_sub_explicit(&s->signalling, 1, memory_order_release);
        return;
    }
    /* Counting the completion and reading the sleeping bit is one atomic step, so a completion
     * is never matched with a sleep that began after it (a separate flag, cleared by a late
     * completion of an earlier round, once left the owner asleep with completions waiting).
     * Only the completion that clears the bit pays for the wake-up. */
    uint32_t cur = atomic_fetch_add(&s->word, SESSION_TICK) + SESSION_TICK;
    while (cur & SESSION_SLEEPING) {
        if (atomic_compare_exchange_weak(&s->word, &cur, cur & ~SESSION_SLEEPING)) {
            futex(&s->word, FUTEX_WAKE_PRIVATE, 1);
            break;
        }
    }
    atomic_fetch_sub_explicit(&s->signalling, 1, memory_order_release);
}

int cs_session_open(cs_db *db, unsigned depth, cs_session **out)
{
    if (!out)
        return CS_EINVAL;
    *out = NULL;
    if (!db || depth == 0 || depth > CS_SESSION_DEPTH_MAX)
        return CS_EINVAL;
    cs_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->db = db;
    s->depth = depth;
    s->slots = calloc(depth, sizeof(*s->slots));
    s->free = calloc(depth, sizeof(*s->free));
    if (!s->slots || !s->free) {
        free(s->slots);
        free(s->free);
        free(s);
        return -ENOMEM;
    }
    ck_stack_init(&s->done);
    for (unsigned i = 0; i < depth; i++) {
        s->slots[i].s = s;
        s->free[depth - 1 - i] = &s->slots[i];
    }
    s->nfree = depth;
    *out = s;
    return 0;
}

static int submit(cs_session *s, enum shard_op op, const char *coll, const void *key, size_t klen,
                  const void *val, size_t vlen, const struct shard_update *update,
                  uint64_t user_data, uint64_t expire_ms)
{
    if (!s)
        return CS_EINVAL;
    uint16_t nlen;
    int rc = db_check_record(coll, key, klen, val, vlen, &nlen);
    if (!rc)
        rc = db_check_expiry(expire_ms);
    if (rc)
        return rc;
    if (s->nfree == 0)
        return CS_EFULL;
    struct session_slot *slot = s->free[--s->nfree];
    memset(&slot->req, 0, sizeof(slot->req));
    slot->req.op = (uint8_t)op;
    slot->req.done = slot_done;
    slot->req.coll = coll;
    slot->req.coll_len = nlen;
    slot->req.key = key;
    slot->req.klen = klen;
    slot->req.val = val;
    slot->req.vlen = vlen;
    slot->req.update = update;       /* SHARD_UPDATE only */
    slot->req.expire_ms = expire_ms; /* SHARD_PUT only */
    slot->user_data = user_data;
    s->inflight++;
    unsigned shard = db_shard_of(s->db, key, klen);
    struct shard *sh = s->db->shards[shard];
    if (op == SHARD_GET) {
        uint64_t start_ns = 0;
        bool timed = db_view_get_timed(&start_ns);
        rc = shard_view_get(sh, coll, nlen, key, klen, &slot->req.out, &slot->req.out_len);
        if (rc != SHARD_VIEW_MISS) { /* answered from the published view: complete it here */
            db_view_get_done(s->db, shard, timed, start_ns);
            slot->req.rc = rc;
            slot->req.link.next = s->taken;
            s->taken = &slot->req.link;
            return 0;
        }
        slot->req.out = NULL;
        slot->req.out_len = 0;
    }
    shard_submit(sh, &slot->req);
    return 0;
}

static void slot_step(void *arg)
{
    slot_done(arg);
}

int cs_session_commit(cs_session *s, cs_txn *t, uint64_t user_data)
{
    if (!s || !t) {
        cs_txn_abort(t);
        return CS_EINVAL;
    }
    if (s->nfree == 0) {
        cs_txn_abort(t);
        return CS_EFULL;
    }
    struct session_slot *slot = s->free[--s->nfree];
    memset(&slot->req, 0, sizeof(slot->req));
    slot->req.op = SHARD_TXN_COMMIT1; /* marks a commit for reap (never sent itself) */
    slot->user_data = user_data;
    int rc = txn_commit_new(t, slot_step, slot, &slot->tc); /* frees t on error */
    if (rc) {
        slot->tc = NULL;
        s->free[s->nfree++] = slot;
        return rc;
    }
    if (s->notify)
        txn_commit_nowait(slot->tc);
    s->inflight++;
    if (!txn_commit_step(slot->tc, &slot->req.rc)) { /* done at once (nothing to commit) */
        slot->req.link.next = s->taken;
        s->taken = &slot->req.link;
    }
    return 0;
}

int cs_session_put(cs_session *s, const char *coll, const void *key, size_t klen, const void *val,
                   size_t vlen, uint64_t user_data)
{
    return submit(s, SHARD_PUT, coll, key, klen, val, vlen, NULL, user_data, 0);
}

int cs_session_put_ttl(cs_session *s, const char *coll, const void *key, size_t klen,
                       const void *val, size_t vlen, uint64_t expire_at_ms, uint64_t user_data)
{
    return submit(s, SHARD_PUT, coll, key, klen, val, vlen, NULL, user_data, expire_at_ms);
}

int cs_session_get(cs_session *s, const char *coll, const void *key, size_t klen,
                   uint64_t user_data)
{
    return submit(s, SHARD_GET, coll, key, klen, NULL, 0, NULL, user_data, 0);
}

int cs_session_del(cs_session *s, const char *coll, const void *key, size_t klen,
                   uint64_t user_data)
{
    return submit(s, SHARD_DEL, coll, key, klen, NULL, 0, NULL, user_data, 0);
}

static unsigned reap(cs_session *s, struct cs_completion *out, unsigned max)
{
    unsigned n = 0;
    if (s->later) { /* commits that found the gate closed: their step runs again */
        struct ck_stack_entry *e = s->later;
        while (e->next)
            e = e->next;
        e->next = s->taken;
        s->taken = s->later;
        s->later = NULL;
    }
    while (n < max) {
        if (!s->taken)
            s->taken = ck_stack_batch_pop_upmc(&s->done);
        if (!s->taken)
            break;
        struct ck_stack_entry *e = s->taken;
        s->taken = e->next;
        struct session_slot *slot =
            (struct session_slot *)((char *)e - offsetof(struct shard_req, link));
        if (slot->tc) { /* a commit: the next step, or its answer */
            int more = txn_commit_step(slot->tc, &slot->req.rc);
            if (more == TXN_STEP_LATER) {
                e->next = s->later;
                s->later = e;
                continue;
            }
            if (more)
                continue;
            txn_commit_free(slot->tc);
            slot->tc = NULL;
        }
        if (out) {
            out[n].user_data = slot->user_data;
            out[n].rc = slot->req.rc;
            out[n].val = slot->req.op == SHARD_GET ? slot->req.out : NULL;
            out[n].vlen = slot->req.op == SHARD_GET ? slot->req.out_len : 0;
        } else if (slot->req.op == SHARD_GET) {
            cs_mem_free(slot->req.out);
        }
        s->free[s->nfree++] = slot;
        s->inflight--;
        n++;
    }
    return n;
}

/* Reap what is there; with nothing there, sleep until a completion arrives. The owner sets the
 * sleeping bit only if the word is unchanged since it read it, looks once more, and sleeps on
 * the word with the bit set: any completion counted after that read changes the word, so the
 * kernel does not let it sleep, or finds the bit and wakes it. Returns the completions reaped. */
static unsigned session_wait(cs_session *s, struct cs_completion *out, unsigned max)
{
    uint32_t w = atomic_load(&s->word) & ~SESSION_SLEEPING;
    uint32_t expect = w;
    if (!atomic_compare_exchange_strong(&s->word, &expect, w | SESSION_SLEEPING))
        return reap(s, out, max); /* a completion came meanwhile */
    unsigned got = reap(s, out, max);
    if (!got)
        futex(&s->word, FUTEX_WAIT_PRIVATE, w | SESSION_SLEEPING);
    uint32_t cur = atomic_load(&s->word);
    while ((cur & SESSION_SLEEPING) &&
           !atomic_compare_exchange_weak(&s->word, &cur, cur & ~SESSION_SLEEPING))
        ;
    return got;
}

int cs_session_poll(cs_session *s, struct cs_completion *out, unsigned max, unsigned min)
{
    if (!s || (!out && max) || min > max || min > s->inflight)
        return CS_EINVAL;
    unsigned n = reap(s, out, max);
    /* completions come in bursts (a shard finishes a whole loop iteration at once): look again
     * for a moment before sleeping */
    for (unsigned spin = 0; n < min && spin < SESSION_SPIN_MAX; spin++) {
        ck_pr_stall();
        if (__atomic_load_n(&s->done.head, __ATOMIC_RELAXED))
            n += reap(s, out + n, max - n);
    }
    while (n < min)
        n += session_wait(s, out ? out + n : NULL, max - n);
    return (int)n;
}

int host_session_open(cs_db *db, unsigned depth, void (*notify)(void *arg), void *arg,
                      cs_session **s)
{
    int rc = cs_session_open(db, depth, s);
    if (rc == 0) {
        (*s)->notify = notify;
        (*s)->notify_arg = arg;
    }
    return rc;
}

int host_session_update(cs_session *s, const char *coll, const void *key, size_t klen,
                        const struct shard_update *u, uint64_t user_data)
{
    if (!s || !u || !u->fn)
        return CS_EINVAL;
    return submit(s, SHARD_UPDATE, coll, key, klen, NULL, 0, u, user_data, 0);
}

bool host_session_ready(cs_session *s)
{
    return s->taken != NULL || s->later != NULL ||
           __atomic_load_n(&s->done.head, __ATOMIC_ACQUIRE) != NULL;
}

unsigned cs_session_inflight(const cs_session *s)
{
    return s ? s->inflight : 0;
}

void cs_session_close(cs_session *s)
{
    if (!s)
        return;
    while (s->inflight > 0)
        (void)session_wait(s, NULL, s->depth);
    while (atomic_load_explicit(&s->signalling, memory_order_acquire) != 0)
        sched_yield();
    free(s->slots);
    free(s->free);
    free(s);
}
