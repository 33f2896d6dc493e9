/* txn-sim: a deterministic simulator of cross-shard commit, driven by one seed per run.
 *
 *   txn-sim --seeds N [--first-seed S] [--shards K] [--steps M] [--verbose]
 *
 * Each seed builds K simulated shards (2..TS_SHARDS_MAX; default: drawn 2..5) holding
 * TS_ACCOUNTS bank accounts (account a lives on shard a % K), and TS_CLIENTS clients that move
 * money between two random accounts in optimistic transactions, for M scheduler steps. The shards
 * follow the rules of shards/txn.c, and the decisions are the very functions the engine uses
 * (engine/txn_core.c: votes to outcome, recovery's resolution of transactions in doubt):
 *   - a read records the balance it saw; commit sends PREPARE to every participant (shards
 *     written or read); a participant validates (each read still holds, no key read is locked by
 *     another's write, no key written is locked at all), locks, and appends a PREPARE record
 *     (participants and writes, with a marker of the transaction) to its log; its vote is
 *     delivered once the record is durable; one participant alone validates and applies in one
 *     step (one record);
 *   - when every vote is in, the coordinator decides (txn_votes_decide); the outcome goes to
 *     every participant, which installs (commit) or forgets, appends COMMIT/ABORT, and unlocks;
 *     the client is answered then, or, when a vote was an error, once the ABORT is durable on
 *     every participant that can still write;
 *   - a participant keeps a transaction until every participant's outcome record is durable;
 *     a checkpoint (store, markers, log position) carries the transactions kept then.
 * The scheduler picks among: deliver any queued message (so messages between shards and
 * coordinators are reordered freely), make a shard's log tail durable (an fsync; with a small
 * probability it fails: the shard stops writing, and any part of the tail may have reached the
 * disk all the same), take a checkpoint, start or advance a client, settle, and crash (every
 * shard loses its memory and the tail that was not durable; in-flight transactions are never
 * answered). After a crash, each shard loads its checkpoint, replays its durable log, reports
 * what it holds in doubt, and recovery decides with txn_resolver and makes the outcomes durable.
 *
 * Some clients write a batch instead: both accounts set without reading anything (cs_write of a
 * batch over two shards). It must never be refused for a conflict: when its parallel attempt is
 * refused, the client runs it again as an ordered write (engine/txn_core.h, ORDERED WRITES):
 * a new transaction whose PREPAREs go one at a time in shard order and always wait, the shard's
 * waiting one (its head) reserving its accounts, which transactions then may not wait for.
 *
 * Checks, after every recovery and at the end:
 *   - liveness: with no new work, crashes or failures, every client gets its answer (no cycle of
 *     transactions waiting for each other's locks) and nothing stays parked;
 *   - atomicity: a transaction's marker is on every shard it wrote, or on none;
 *   - durability: every transaction answered "committed" is there; none answered "refused"
 *     (conflict or error) is;
 *   - no batch is answered CS_ECONFLICT;
 *   - serializability: replaying the committed transactions in the order their last PREPARE
 *     became durable, from the initial balances, every read a transaction made equals the
 *     balance at that point, and the result equals the shards' balances (so money is neither
 *     made nor lost).
 * Prints per-seed failures and "N passed, M failed" last; exits non-zero on any failure. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "engine/txn_core.h"

#define TS_SHARDS_MAX 6
#define TS_ACCOUNTS 8
#define TS_CLIENTS 8
#define TS_TXNS_MAX 4096
#define TS_LOG_MAX 16384
#define TS_MSGS_MAX 256
#define TS_INITIAL 100
#define TS_BLIND_SCALE 10 /* a blind write sets the balance to amount * this */
#define TS_PARKED_MAX 64  /* requests parked on one shard */

/* ---- random ---- */

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}
static bool chance(unsigned per_mille)
{
    return rnd_below(1000) < per_mille;
}

/* ---- transactions (what the clients did; the checker's history) ---- */

enum answer { ANS_NONE, ANS_COMMITTED, ANS_REFUSED };

struct ts_txn {
    uint64_t id;
    int from, to, amount;
    int read_from, read_to; /* balances read */
    bool blind;             /* to is set to amount * TS_BLIND_SCALE without being read */
    bool batch;             /* nothing read: from and to are set to amount * TS_BLIND_SCALE */
    bool ordered;           /* a batch's second attempt: an ordered write */
    bool ordered_locked;    /* ordered: locked on its last participant (waits no more) */
    int audit;              /* an account only read (its shard is from's or to's), -1: none */
    int read_audit;         /* its balance read */
    unsigned nparts;
    unsigned parts[2]; /* participant shards, increasing */
    enum answer answer;
    int refused_rc;            /* the answer's error */
    long prepared_at;          /* durable_seq when its last PREPARE (or its one-shard record)
                                  became durable (-1: never): its place in the serial order */
    unsigned durable_prepares; /* of nparts */
    bool single;               /* one participant: no PREPARE */
    /* the shared state a real shard_txn holds */
    int state;          /* 0 pending, 1 committed, 2 aborted */
    unsigned unsettled; /* participants whose outcome record is not durable */
};

static struct ts_txn txns[TS_TXNS_MAX];
static unsigned ntxns;

/* ---- shards ---- */

enum rec_type { R_PREPARE, R_COMMIT, R_ABORT, R_APPLY };

struct ts_rec {
    uint8_t type;
    unsigned txn; /* index in txns */
    bool durable;
};

struct ts_part { /* a transaction kept by a shard */
    bool used;
    unsigned txn;
    bool settling; /* outcome logged */
    bool committed;
    int outcome_rec; /* log index of the outcome record, -1: none */
    bool counted;
};

enum msg_type { M_PREPARE, M_VOTE, M_DECIDE, M_DONE, M_COMMIT1 };
struct ts_msg {
    uint8_t type;
    unsigned txn;
    unsigned shard;
    unsigned parks; /* prepare, commit1: times parked on a lock */
    int acct;       /* parked: the account whose lock it waits for */
    int rc;         /* votes, done */
    bool logged;    /* done: the outcome record was appended here */
    bool commit;    /* decide */
    int wait_rec;   /* a vote or done waiting for this log record to be durable (-1: none) */
};

struct ts_shard {
    /* disk */
    struct ts_rec log[TS_LOG_MAX];
    int nlog;
    struct {
        bool taken;
        int lsn; /* log records < lsn are in it */
        int bal[TS_ACCOUNTS];
        bool marker[TS_TXNS_MAX];
        int carried[64];           /* transactions carried */
        bool carried_prepared[64]; /* prepared (else settling outcome below) */
        bool carried_committed[64];
        int ncarried;
    } ckpt;
    /* memory */
    int bal[TS_ACCOUNTS];
    bool marker[TS_TXNS_MAX];
    int writer[TS_ACCOUNTS];          /* txn index + 1 holding the write lock */
    int readers[TS_ACCOUNTS];         /* read marks */
    uint64_t reader_max[TS_ACCOUNTS]; /* largest id that took a read mark */
    unsigned waiters[TS_ACCOUNTS];    /* requests parked on the account's lock */
    bool reserved[TS_ACCOUNTS];       /* written by the waiting ordered write (head) */
    int head;                         /* txn index + 1 of the waiting ordered write, 0: none */
    struct ts_msg oq[TS_CLIENTS];     /* ordered PREPAREs queued behind the head */
    unsigned noq;
    struct ts_part parts[64];
    bool failed;                         /* an fsync failed: no more writes */
    struct ts_msg parked[TS_PARKED_MAX]; /* requests parked on locks (shards/txn.c: park) */
    unsigned nparked;
};

static struct ts_shard sh[TS_SHARDS_MAX];
static unsigned nshards;
static long step;
static long durable_seq; /* counts records as they become durable, in log order */
static bool verbose;
static char fail_msg[512];
static unsigned long ordered_runs; /* batches run again as ordered writes, over all seeds */

static unsigned shard_of(int acct)
{
    return (unsigned)acct % nshards;
}

/* ---- messages ---- */

static struct ts_msg msgs[TS_MSGS_MAX];
static unsigned nmsgs;

static void send(struct ts_msg m)
{
    if (nmsgs == TS_MSGS_MAX) {
        snprintf(fail_msg, sizeof(fail_msg), "message queue full");
        return;
    }
    msgs[nmsgs++] = m;
}

/* ---- shard actions (the rules of shards/txn.c) ---- */

static int log_append(struct ts_shard *s, uint8_t type, unsigned txn)
{
    if (s->nlog == TS_LOG_MAX)
        return -1;
    s->log[s->nlog] = (struct ts_rec){.type = type, .txn = txn, .durable = false};
    return s->nlog++;
}

static struct ts_part *part_of(struct ts_shard *s, unsigned txn)
{
    for (int i = 0; i < 64; i++)
        if (s->parts[i].used && s->parts[i].txn == txn)
            return &s->parts[i];
    return NULL;
}

static struct ts_part *part_new(struct ts_shard *s, unsigned txn)
{
    for (int i = 0; i < 64; i++)
        if (!s->parts[i].used) {
            s->parts[i] = (struct ts_part){.used = true, .txn = txn, .outcome_rec = -1};
            return &s->parts[i];
        }
    return NULL;
}

/* The writes of t on shard si: (account, new balance). */
static int writes_on(const struct ts_txn *t, unsigned si, int acct[2], int val[2])
{
    int n = 0;
    if (shard_of(t->from) == si) {
        acct[n] = t->from;
        val[n++] = t->batch ? t->amount * TS_BLIND_SCALE : t->read_from - t->amount;
    }
    if (shard_of(t->to) == si) {
        acct[n] = t->to;
        val[n++] = t->blind || t->batch ? t->amount * TS_BLIND_SCALE : t->read_to + t->amount;
    }
    return n;
}

/* What validation met: prepared transactions' locks (shards/txn.c: struct txn_block). */
struct ts_block {
    bool any;
    int acct;            /* the first account met: the request parks on its lock */
    uint64_t holder_max; /* largest id among the holders met */
    bool ordered;        /* an ordered write that may still wait, or a reservation, was met */
};

static void block_add(struct ts_block *b, int acct, uint64_t holder, bool ordered)
{
    if (!b->any) {
        *b = (struct ts_block){.any = true, .acct = acct, .holder_max = holder};
    } else if (holder > b->holder_max) {
        b->holder_max = holder;
    }
    b->ordered |= ordered;
}

/* As shards/txn.c holder_id: a decided holder counts as none against the age rule. */
static uint64_t holder_id(unsigned ti)
{
    return txns[ti].state == 0 ? txns[ti].id : 0;
}

/* As shards/txn.c holder_ordered. */
static bool holder_ordered(unsigned ti)
{
    return txns[ti].ordered && txns[ti].state == 0 && !txns[ti].ordered_locked;
}

/* The rules of shards/txn.c validate(): a read that changed is a conflict; a read of a key a
 * prepared transaction writes, or of a read-marked key other transactions wait on, and a write of
 * a key locked at all, meet that lock (b). */
static int validate(struct ts_shard *s, unsigned si, const struct ts_txn *t, struct ts_block *b)
{
    int reads[3] = {t->batch ? -1 : t->from, t->blind || t->batch ? -1 : t->to, t->audit};
    int seen[3] = {t->read_from, t->read_to, t->read_audit};
    for (int i = 0; i < 3; i++) {
        int a = reads[i];
        if (a < 0 || shard_of(a) != si)
            continue;
        if (s->bal[a] != seen[i])
            return CS_ECONFLICT;
        if (s->writer[a])
            block_add(b, a, holder_id(s->writer[a] - 1), holder_ordered(s->writer[a] - 1));
        else if (s->readers[a] && s->waiters[a])
            block_add(b, a, s->reader_max[a], false);
        if (s->reserved[a])
            block_add(b, a, 0, true);
    }
    int acct[2], val[2];
    int n = writes_on(t, si, acct, val);
    bool head = s->head == (int)(t - txns) + 1;
    for (int i = 0; i < n; i++) {
        int a = acct[i];
        if (s->writer[a])
            block_add(b, a, holder_id(s->writer[a] - 1), holder_ordered(s->writer[a] - 1));
        else if (s->readers[a])
            block_add(b, a, s->reader_max[a], false);
        if (s->reserved[a] && !head)
            block_add(b, a, 0, true);
    }
    return 0;
}

/* m met locks (b): park it (true) or refuse it, as txn_may_wait rules. */
static bool park_or_refuse(struct ts_shard *s, struct ts_msg m, uint64_t id, bool ordered,
                           const struct ts_block *b)
{
    if (!txn_may_wait(id, ordered, b->holder_max, b->ordered, m.parks, s->waiters[b->acct]))
        return false;
    if (s->nparked == TS_PARKED_MAX) {
        snprintf(fail_msg, sizeof(fail_msg), "too many requests parked on one shard");
        return false;
    }
    m.parks++;
    m.acct = b->acct;
    s->waiters[b->acct]++;
    s->parked[s->nparked++] = m;
    return true;
}

/* The lock of acct went (no writer, no read mark): its parked requests run again. */
static void unpark(struct ts_shard *s, int acct)
{
    if (s->writer[acct] || s->readers[acct] || !s->waiters[acct])
        return;
    for (unsigned i = 0; i < s->nparked;) {
        if (s->parked[i].acct != acct) {
            i++;
            continue;
        }
        send(s->parked[i]);
        s->parked[i] = s->parked[--s->nparked];
    }
    s->waiters[acct] = 0;
}

static void install(struct ts_shard *s, unsigned si, unsigned ti)
{
    int acct[2], val[2];
    int n = writes_on(&txns[ti], si, acct, val);
    for (int i = 0; i < n; i++)
        s->bal[acct[i]] = val[i];
    s->marker[ti] = true;
}

static void lock(struct ts_shard *s, unsigned si, unsigned ti, int delta)
{
    const struct ts_txn *t = &txns[ti];
    int acct[2], val[2];
    int n = writes_on(t, si, acct, val);
    for (int i = 0; i < n; i++)
        s->writer[acct[i]] = delta > 0 ? (int)ti + 1 : 0;
    /* read marks: from and to are written whenever read; the audited account is only read */
    if (t->audit >= 0 && shard_of(t->audit) == si) {
        int a = t->audit;
        if (delta > 0) {
            if (!s->readers[a] || t->id > s->reader_max[a])
                s->reader_max[a] = t->id;
            s->readers[a]++;
        } else {
            s->readers[a]--;
        }
    }
    for (int i = 0; delta < 0 && i < n; i++)
        unpark(s, acct[i]);
    if (delta < 0 && t->audit >= 0 && shard_of(t->audit) == si)
        unpark(s, t->audit);
}

/* The ordered write ti (the head) is done waiting on s: its reservations go, and the ordered
 * PREPAREs queued behind it run again. */
static void ordered_end(struct ts_shard *s, unsigned si, unsigned ti)
{
    int acct[2], val[2];
    int n = writes_on(&txns[ti], si, acct, val);
    s->head = 0;
    for (int i = 0; i < n; i++) {
        s->reserved[acct[i]] = false;
        unpark(s, acct[i]); /* what waited on the reservation alone */
    }
    for (unsigned i = 0; i < s->noq; i++)
        send(s->oq[i]);
    s->noq = 0;
}

static void shard_prepare(struct ts_msg m)
{
    unsigned si = m.shard, ti = m.txn;
    struct ts_shard *s = &sh[si];
    struct ts_txn *t = &txns[ti];
    if (t->ordered && s->head && s->head != (int)ti + 1) {
        s->oq[s->noq++] = m; /* behind the head; at most one request per client */
        return;
    }
    struct ts_block b = {0};
    int rc = s->failed ? CS_EIO : validate(s, si, t, &b);
    if (t->ordered && rc == CS_ECONFLICT)
        snprintf(fail_msg, sizeof(fail_msg), "an ordered write failed validation");
    if (!rc && b.any) {
        if (t->ordered && !s->head) { /* it becomes the head: it reserves what it writes */
            int acct[2], val[2];
            int n = writes_on(t, si, acct, val);
            for (int i = 0; i < n; i++)
                s->reserved[acct[i]] = true;
            s->head = (int)ti + 1;
        }
        if (park_or_refuse(s, m, t->id, t->ordered, &b))
            return;
        rc = CS_ECONFLICT;
    }
    struct ts_part *p = rc ? NULL : part_new(s, ti);
    if (!rc && !p)
        rc = -ENOMEM;
    if (!rc) {
        lock(s, si, ti, +1);
        if (t->ordered && t->parts[t->nparts - 1] == si)
            t->ordered_locked = true;
    }
    if (s->head == (int)ti + 1)
        ordered_end(s, si, ti);
    if (rc) {
        send((struct ts_msg){.type = M_VOTE, .txn = ti, .shard = si, .rc = rc, .wait_rec = -1});
        return;
    }
    int r = log_append(s, R_PREPARE, ti);
    send((struct ts_msg){.type = M_VOTE, .txn = ti, .shard = si, .rc = 0, .wait_rec = r});
}

static void shard_commit1(struct ts_msg m)
{
    unsigned si = m.shard, ti = m.txn;
    struct ts_shard *s = &sh[si];
    struct ts_block b = {0};
    int rc = s->failed ? CS_EIO : validate(s, si, &txns[ti], &b);
    if (!rc && b.any) {
        if (park_or_refuse(s, m, 0, txns[ti].batch, &b)) /* nothing read: waits as a put */
            return;
        rc = CS_ECONFLICT;
    }
    int r = -1;
    if (!rc) {
        install(s, si, ti);
        r = log_append(s, R_APPLY, ti);
    }
    send((struct ts_msg){.type = M_DONE, .txn = ti, .shard = si, .rc = rc, .wait_rec = r});
}

static void shard_decide(unsigned si, unsigned ti, bool commit, bool durable)
{
    struct ts_shard *s = &sh[si];
    struct ts_part *p = part_of(s, ti);
    if (!p || p->settling) { /* it voted no */
        send((struct ts_msg){.type = M_DONE, .txn = ti, .shard = si, .rc = 0, .wait_rec = -1});
        return;
    }
    if (commit)
        install(s, si, ti);
    p->committed = commit;
    p->settling = true;
    if (!s->failed)
        p->outcome_rec = log_append(s, commit ? R_COMMIT : R_ABORT, ti);
    lock(s, si, ti, -1);
    send((struct ts_msg){.type = M_DONE,
                         .txn = ti,
                         .shard = si,
                         .rc = 0,
                         .logged = p->outcome_rec >= 0,
                         .wait_rec = durable && !s->failed ? p->outcome_rec : -1});
}

static bool rec_durable(unsigned si, int r)
{
    return r < 0 || sh[si].log[r].durable;
}

/* Settle: an outcome durable here counts once; a transaction is forgotten when every
 * participant's is durable. */
static void shard_settle(unsigned si)
{
    struct ts_shard *s = &sh[si];
    for (int i = 0; i < 64; i++) {
        struct ts_part *p = &s->parts[i];
        if (!p->used || !p->settling)
            continue;
        if (!p->counted && p->outcome_rec >= 0 && s->log[p->outcome_rec].durable) {
            p->counted = true;
            txns[p->txn].unsettled--;
        }
        if (p->counted && txns[p->txn].unsettled == 0)
            p->used = false;
    }
}

static void make_durable(struct ts_shard *s, int r)
{
    s->log[r].durable = true;
    durable_seq++;
    struct ts_txn *t = &txns[s->log[r].txn];
    if (s->log[r].type == R_PREPARE && ++t->durable_prepares == t->nparts)
        t->prepared_at = durable_seq;
    if (s->log[r].type == R_APPLY)
        t->prepared_at = durable_seq;
}

/* An fsync: the tail becomes durable; a failure stops the shard, and any prefix of the tail may
 * have reached the disk anyway. */
static void shard_flush(unsigned si, bool may_fail)
{
    struct ts_shard *s = &sh[si];
    if (s->failed)
        return;
    int first = s->nlog;
    while (first > 0 && !s->log[first - 1].durable)
        first--;
    if (first == s->nlog)
        return;
    bool fail = may_fail && chance(30);
    int upto = fail ? first + (int)rnd_below((unsigned)(s->nlog - first + 1)) : s->nlog;
    for (int r = first; r < upto; r++)
        make_durable(s, r);
    if (fail) {
        s->failed = true;
        /* what was waiting on the tail fails: votes become errors */
        for (unsigned m = 0; m < nmsgs; m++)
            if (msgs[m].shard == si && msgs[m].wait_rec >= first) {
                /* failed, even where the record reached the disk by chance */
                msgs[m].rc = CS_EIO;
                msgs[m].logged = false;
                msgs[m].wait_rec = -1;
            }
    }
}

static void shard_checkpoint(unsigned si)
{
    struct ts_shard *s = &sh[si];
    if (s->failed)
        return;
    /* a checkpoint holds the state as of now, which covers every record appended so far */
    s->ckpt.taken = true;
    s->ckpt.lsn = s->nlog;
    memcpy(s->ckpt.bal, s->bal, sizeof(s->bal));
    memcpy(s->ckpt.marker, s->marker, sizeof(s->marker));
    s->ckpt.ncarried = 0;
    for (int i = 0; i < 64; i++) {
        struct ts_part *p = &s->parts[i];
        if (!p->used)
            continue;
        s->ckpt.carried[s->ckpt.ncarried] = (int)p->txn;
        s->ckpt.carried_prepared[s->ckpt.ncarried] = !p->settling;
        s->ckpt.carried_committed[s->ckpt.ncarried++] = p->committed;
    }
    /* the checkpoint file is written and synced before it counts: so is the log it covers */
    for (int r = 0; r < s->nlog; r++)
        if (!s->log[r].durable)
            make_durable(s, r);
}

/* ---- clients and coordinators ---- */

enum cstate { C_IDLE, C_VOTING, C_ORDERED, C_DECIDING };
struct client {
    enum cstate st;
    unsigned txn;
    unsigned next; /* C_ORDERED: the participant whose PREPARE is out */
    struct txn_votes votes;
    unsigned done;
    unsigned logged; /* participants that logged the outcome */
    bool commit, durable;
    int answer_rc;
};
static struct client clients[TS_CLIENTS];

static void client_start(struct client *c)
{
    if (ntxns == TS_TXNS_MAX)
        return;
    struct ts_txn *t = &txns[ntxns];
    memset(t, 0, sizeof(*t));
    t->id = ntxns + 1;
    t->prepared_at = -1;
    t->from = (int)rnd_below(TS_ACCOUNTS);
    do
        t->to = (int)rnd_below(TS_ACCOUNTS);
    while (t->to == t->from);
    t->amount = 1 + (int)rnd_below(10);
    t->blind = chance(200);
    t->batch = !t->blind && chance(150);
    t->audit = -1;
    if (!t->batch &&
        chance(600)) { /* read one more account of from's or to's shard, and write nothing to it */
        int x = (int)rnd_below(TS_ACCOUNTS);
        unsigned xs = shard_of(x);
        if (x != t->from && x != t->to && (xs == shard_of(t->from) || xs == shard_of(t->to)))
            t->audit = x;
    }
    /* reads go to the shards' memory */
    t->read_from = t->batch ? 0 : sh[shard_of(t->from)].bal[t->from];
    t->read_to = t->blind || t->batch ? 0 : sh[shard_of(t->to)].bal[t->to];
    t->read_audit = t->audit >= 0 ? sh[shard_of(t->audit)].bal[t->audit] : 0;
    unsigned a = shard_of(t->from), b = shard_of(t->to);
    t->single = a == b;
    t->nparts = t->single ? 1 : 2;
    t->parts[0] = a < b ? a : b;
    t->parts[1] = a < b ? b : a;
    t->unsettled = t->nparts;
    c->txn = ntxns++;
    c->done = 0;
    c->logged = 0;
    if (t->single) {
        send((struct ts_msg){.type = M_COMMIT1, .txn = c->txn, .shard = a, .wait_rec = -1});
        c->st = C_DECIDING;
        return;
    }
    txn_votes_init(&c->votes, 2);
    for (unsigned i = 0; i < 2; i++)
        send((struct ts_msg){
            .type = M_PREPARE, .txn = c->txn, .shard = t->parts[i], .wait_rec = -1});
    c->st = C_VOTING;
}

/* c's batch was refused for a conflict: run it again as an ordered write (a new transaction),
 * one PREPARE at a time in shard order. */
static void client_order(struct client *c)
{
    if (ntxns == TS_TXNS_MAX) {
        snprintf(fail_msg, sizeof(fail_msg), "out of transaction slots");
        return;
    }
    const struct ts_txn *first = &txns[c->txn];
    struct ts_txn *t = &txns[ntxns];
    *t = (struct ts_txn){.id = ntxns + 1,
                         .from = first->from,
                         .to = first->to,
                         .amount = first->amount,
                         .batch = true,
                         .ordered = true,
                         .audit = -1,
                         .nparts = first->nparts,
                         .parts = {first->parts[0], first->parts[1]},
                         .prepared_at = -1,
                         .unsettled = first->nparts};
    c->txn = ntxns++;
    ordered_runs++;
    c->next = 0;
    c->done = 0;
    c->logged = 0;
    txn_votes_init(&c->votes, t->nparts);
    send((struct ts_msg){.type = M_PREPARE, .txn = c->txn, .shard = t->parts[0], .wait_rec = -1});
    c->st = C_ORDERED;
}

static struct client *client_of(unsigned ti)
{
    for (int i = 0; i < TS_CLIENTS; i++)
        if (clients[i].st != C_IDLE && clients[i].txn == ti)
            return &clients[i];
    return NULL;
}

static void deliver(unsigned m)
{
    struct ts_msg x = msgs[m];
    msgs[m] = msgs[--nmsgs];
    struct client *c = client_of(x.txn);
    switch (x.type) {
    case M_PREPARE:
        shard_prepare(x);
        break;
    case M_COMMIT1:
        shard_commit1(x);
        break;
    case M_DECIDE:
        shard_decide(x.shard, x.txn, x.commit, c && c->durable);
        break;
    case M_VOTE:
        if (!c || (c->st != C_VOTING && c->st != C_ORDERED))
            break;
        txn_votes_add(&c->votes, x.rc);
        if (c->st == C_ORDERED) {
            if (x.rc == CS_ECONFLICT)
                snprintf(fail_msg, sizeof(fail_msg), "an ordered PREPARE was refused");
            if (!x.rc && ++c->next < txns[c->txn].nparts) {
                send((struct ts_msg){.type = M_PREPARE,
                                     .txn = c->txn,
                                     .shard = txns[c->txn].parts[c->next],
                                     .wait_rec = -1});
                break;
            }
            while (c->votes.got < c->votes.expected) /* never sent: the same no vote */
                txn_votes_add(&c->votes, x.rc);
        }
        if (c->votes.got == c->votes.expected) {
            c->answer_rc = txn_votes_decide(&c->votes, &c->commit, &c->durable);
            struct ts_txn *t = &txns[c->txn];
            t->state = c->commit ? 1 : 2;
            for (unsigned i = 0; i < 2; i++)
                send((struct ts_msg){.type = M_DECIDE,
                                     .txn = c->txn,
                                     .shard = t->parts[i],
                                     .commit = c->commit,
                                     .wait_rec = -1});
            c->st = C_DECIDING;
            if (txn_retry_ordered(t->batch, t->ordered, t->nparts, c->answer_rc)) {
                t->answer = ANS_REFUSED; /* the first attempt: aborted, on its way out */
                t->refused_rc = c->answer_rc;
                client_order(c);
            }
        }
        break;
    case M_DONE:
        if (!c || c->st != C_DECIDING)
            break;
        if (txns[x.txn].single)
            c->answer_rc = x.rc;
        c->logged += x.logged && !x.rc;
        if (++c->done == txns[x.txn].nparts) {
            txns[x.txn].answer = c->answer_rc ? ANS_REFUSED : ANS_COMMITTED;
            if (txns[x.txn].batch && c->answer_rc == CS_ECONFLICT)
                snprintf(fail_msg, sizeof(fail_msg), "batch %" PRIu64 " was refused: a conflict",
                         txns[x.txn].id);
            txns[x.txn].refused_rc = c->answer_rc;
            /* An I/O error leaves the outcome to the next open when nothing durable says abort:
             * a one-shard record whose write failed may be on disk all the same (as any write
             * that fails with CS_EIO), and so may the PREPAREs when no participant could make
             * the ABORT durable (documented in include/cstore.h). */
            if (c->answer_rc && c->answer_rc != CS_ECONFLICT && (txns[x.txn].single || !c->logged))
                txns[x.txn].answer = ANS_NONE;
            c->st = C_IDLE;
        }
        break;
    }
}

/* ---- crash and recovery ---- */

static void crash_and_recover(void)
{
    nmsgs = 0;
    for (int i = 0; i < TS_CLIENTS; i++)
        clients[i].st = C_IDLE; /* never answered */
    struct txn_resolver res;
    txn_resolver_init(&res, nshards);
    for (unsigned si = 0; si < nshards; si++) {
        struct ts_shard *s = &sh[si];
        int keep = 0; /* the log loses its tail that is not durable */
        while (keep < s->nlog && s->log[keep].durable)
            keep++;
        /* durable records after a lost one cannot exist: a tail is written in order */
        s->nlog = keep;
        memset(s->parts, 0, sizeof(s->parts));
        memset(s->writer, 0, sizeof(s->writer));
        memset(s->readers, 0, sizeof(s->readers));
        memset(s->waiters, 0, sizeof(s->waiters));
        memset(s->reserved, 0, sizeof(s->reserved));
        s->head = 0;
        s->noq = 0;     /* queued ordered PREPAREs are lost with the shard's memory */
        s->nparked = 0; /* parked requests are lost with the shard's memory */
        s->failed = false;
        int from = 0;
        if (s->ckpt.taken) {
            memcpy(s->bal, s->ckpt.bal, sizeof(s->bal));
            memcpy(s->marker, s->ckpt.marker, sizeof(s->marker));
            from = s->ckpt.lsn;
            for (int i = 0; i < s->ckpt.ncarried; i++) {
                unsigned ti = (unsigned)s->ckpt.carried[i];
                if (s->ckpt.carried_prepared[i]) {
                    struct ts_part *p = part_new(s, ti);
                    p->settling = false;
                } else if (txn_resolver_add(&res, si, txns[ti].id,
                                            s->ckpt.carried_committed[i] ? TXN_REPORT_COMMITTED
                                                                         : TXN_REPORT_ABORTED,
                                            0, NULL)) {
                    snprintf(fail_msg, sizeof(fail_msg), "resolver refused a carried outcome");
                }
            }
        } else {
            for (int a = 0; a < TS_ACCOUNTS; a++)
                s->bal[a] = TS_INITIAL;
            memset(s->marker, 0, sizeof(s->marker));
        }
        for (int r = from; r < s->nlog; r++) {
            unsigned ti = s->log[r].txn;
            struct ts_part *p = part_of(s, ti);
            switch (s->log[r].type) {
            case R_APPLY:
                install(s, si, ti);
                break;
            case R_PREPARE:
                part_new(s, ti);
                break;
            case R_COMMIT:
            case R_ABORT:
                if (!p) {
                    snprintf(fail_msg, sizeof(fail_msg),
                             "shard %u: outcome of txn %" PRIu64 " without its PREPARE", si,
                             txns[ti].id);
                    break;
                }
                if (s->log[r].type == R_COMMIT)
                    install(s, si, ti);
                p->used = false;
                if (txn_resolver_add(&res, si, txns[ti].id,
                                     s->log[r].type == R_COMMIT ? TXN_REPORT_COMMITTED
                                                                : TXN_REPORT_ABORTED,
                                     0, NULL))
                    snprintf(fail_msg, sizeof(fail_msg), "resolver refused an outcome");
                break;
            }
        }
        for (int i = 0; i < 64; i++) {
            struct ts_part *p = &s->parts[i];
            if (!p->used)
                continue;
            uint16_t parts[2] = {(uint16_t)txns[p->txn].parts[0], (uint16_t)txns[p->txn].parts[1]};
            if (txn_resolver_add(&res, si, txns[p->txn].id, TXN_REPORT_PREPARED, 2, parts))
                snprintf(fail_msg, sizeof(fail_msg), "resolver refused a PREPARE");
        }
    }
    /* decide; outcomes are logged and made durable before serving */
    for (size_t i = 0; i < res.n; i++) {
        bool commit = txn_resolver_commits(&res, i);
        unsigned ti = (unsigned)(res.e[i].id - 1);
        for (unsigned si = 0; si < nshards; si++) {
            if (!txn_resolver_holds(&res, i, si))
                continue;
            struct ts_part *p = part_of(&sh[si], ti);
            if (commit)
                install(&sh[si], si, ti);
            p->used = false;
            int r = log_append(&sh[si], commit ? R_COMMIT : R_ABORT, ti);
            sh[si].log[r].durable = true;
        }
    }
    txn_resolver_free(&res);
}

/* ---- checks ---- */

static int cmp_prepared(const void *a, const void *b)
{
    const struct ts_txn *x = *(struct ts_txn *const *)a, *y = *(struct ts_txn *const *)b;
    return x->prepared_at < y->prepared_at ? -1 : x->prepared_at > y->prepared_at;
}

static bool check(const char *when)
{
    if (fail_msg[0])
        return false;
    static struct ts_txn *order[TS_TXNS_MAX];
    unsigned n = 0;
    for (unsigned ti = 0; ti < ntxns; ti++) {
        const struct ts_txn *t = &txns[ti];
        int on = 0;
        for (unsigned i = 0; i < t->nparts; i++)
            on += sh[t->parts[i]].marker[ti];
        if (on != 0 && on != (int)t->nparts) {
            snprintf(fail_msg, sizeof(fail_msg), "%s: txn %" PRIu64 " applied on %d of %u shards",
                     when, t->id, on, t->nparts);
            return false;
        }
        if (t->answer == ANS_COMMITTED && !on) {
            snprintf(fail_msg, sizeof(fail_msg), "%s: committed txn %" PRIu64 " is lost", when,
                     t->id);
            return false;
        }
        if (t->answer == ANS_REFUSED && on) {
            snprintf(fail_msg, sizeof(fail_msg),
                     "%s: refused txn %" PRIu64 " (%s, rc %d) was applied", when, t->id,
                     t->single ? "one shard" : "two shards", t->refused_rc);
            return false;
        }
        if (on) {
            if (t->prepared_at < 0) {
                snprintf(fail_msg, sizeof(fail_msg),
                         "%s: txn %" PRIu64 " applied but never durably prepared", when, t->id);
                return false;
            }
            order[n++] = &txns[ti];
        }
    }
    qsort(order, n, sizeof(order[0]), cmp_prepared);
    int bal[TS_ACCOUNTS];
    for (int a = 0; a < TS_ACCOUNTS; a++)
        bal[a] = TS_INITIAL;
    for (unsigned i = 0; i < n; i++) {
        const struct ts_txn *t = order[i];
        if ((!t->batch && bal[t->from] != t->read_from) ||
            (!t->blind && !t->batch && bal[t->to] != t->read_to) ||
            (t->audit >= 0 && bal[t->audit] != t->read_audit)) {
            snprintf(fail_msg, sizeof(fail_msg),
                     "%s: txn %" PRIu64 " read %d/%d/%d but the serial order has %d/%d/%d", when,
                     t->id, t->read_from, t->read_to, t->read_audit, bal[t->from], bal[t->to],
                     t->audit >= 0 ? bal[t->audit] : 0);
            return false;
        }
        bal[t->from] = t->batch ? t->amount * TS_BLIND_SCALE : bal[t->from] - t->amount;
        bal[t->to] = t->blind || t->batch ? t->amount * TS_BLIND_SCALE : bal[t->to] + t->amount;
    }
    /* only settled state is compared: transactions still installing in memory are skipped */
    for (int a = 0; a < TS_ACCOUNTS; a++)
        if (sh[shard_of(a)].bal[a] != bal[a] && !sh[shard_of(a)].writer[a]) {
            snprintf(fail_msg, sizeof(fail_msg), "%s: account %d holds %d, the serial order %d",
                     when, a, sh[shard_of(a)].bal[a], bal[a]);
            return false;
        }
    return true;
}

/* ---- liveness ---- */

#define TS_QUIESCE_STEPS 200000L

/* No new transactions, crashes or failures: deliver, flush and settle until nothing moves. Every
 * client must then have its answer and no request may stay parked: a wait that never ends (a
 * cycle of transactions waiting for each other's locks) fails the run. */
static bool quiesce(void)
{
    for (long i = 0; i < TS_QUIESCE_STEPS && !fail_msg[0]; i++) {
        bool busy = nmsgs > 0;
        for (int c = 0; c < TS_CLIENTS; c++)
            busy |= clients[c].st != C_IDLE;
        if (!busy)
            break;
        unsigned pick = rnd_below(10);
        if (pick < 6 && nmsgs) {
            unsigned m = rnd_below(nmsgs);
            if (rec_durable(msgs[m].shard, msgs[m].wait_rec))
                deliver(m);
        } else if (pick < 9) {
            shard_flush(rnd_below(nshards), false);
        } else {
            shard_settle(rnd_below(nshards));
        }
    }
    if (fail_msg[0])
        return false;
    for (int c = 0; c < TS_CLIENTS; c++)
        if (clients[c].st != C_IDLE) {
            unsigned parked = 0;
            for (unsigned si = 0; si < nshards; si++)
                parked += sh[si].nparked;
            snprintf(fail_msg, sizeof(fail_msg),
                     "txn %" PRIu64 " is never answered (%u requests parked): a wait cycle",
                     txns[clients[c].txn].id, parked);
            return false;
        }
    return true;
}

/* ---- one run ---- */

static bool run(uint64_t seed, unsigned want_shards, long steps, unsigned *crashes)
{
    rng = seed * 0x9e3779b97f4a7c15ull + 1;
    nshards = want_shards ? want_shards : 2 + rnd_below(4);
    memset(sh, 0, sizeof(sh));
    memset(clients, 0, sizeof(clients));
    ntxns = 0;
    nmsgs = 0;
    durable_seq = 0;
    fail_msg[0] = '\0';
    for (unsigned si = 0; si < nshards; si++)
        for (int a = 0; a < TS_ACCOUNTS; a++)
            sh[si].bal[a] = TS_INITIAL;
    unsigned crash_pm = 2 + rnd_below(8); /* per mille of steps */
    for (step = 0; step < steps && !fail_msg[0]; step++) {
        unsigned pick = rnd_below(100);
        if (pick < 45 && nmsgs) {
            /* any queued message whose durability wait is over */
            unsigned m = rnd_below(nmsgs);
            if (rec_durable(msgs[m].shard, msgs[m].wait_rec))
                deliver(m);
        } else if (pick < 65) {
            shard_flush(rnd_below(nshards), true);
        } else if (pick < 70) {
            shard_checkpoint(rnd_below(nshards));
        } else if (pick < 85) {
            struct client *c = &clients[rnd_below(TS_CLIENTS)];
            if (c->st == C_IDLE)
                client_start(c);
        } else {
            shard_settle(rnd_below(nshards));
        }
        if (chance(crash_pm)) {
            crash_and_recover();
            (*crashes)++;
            if (!check("after recovery"))
                break;
        }
    }
    if (!fail_msg[0] && quiesce()) {
        crash_and_recover();
        check("at the end");
    }
    if (fail_msg[0]) {
        printf("seed %" PRIu64 " (%u shards, step %ld): %s\n", seed, nshards, step, fail_msg);
        return false;
    }
    if (verbose)
        printf("seed %" PRIu64 ": %u shards, %u transactions, ok\n", seed, nshards, ntxns);
    return true;
}

int main(int argc, char **argv)
{
    uint64_t seeds = 200, first = 1;
    unsigned want = 0;
    long steps = 4000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
            seeds = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--first-seed") && i + 1 < argc)
            first = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            want = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--verbose"))
            verbose = true;
        else {
            fprintf(stderr, "usage: txn-sim [--seeds N] [--first-seed S] [--shards K] [--steps M] "
                            "[--verbose]\n");
            return 2;
        }
    }
    if (want == 1 || want > TS_SHARDS_MAX || steps <= 0) {
        fprintf(stderr, "txn-sim: --shards must be 2..%d, --steps positive\n", TS_SHARDS_MAX);
        return 2;
    }
    uint64_t passed = 0, failed = 0;
    unsigned crashes = 0;
    for (uint64_t s = first; s < first + seeds; s++)
        run(s, want, steps, &crashes) ? passed++ : failed++;
    printf("crashes %u, ordered writes %lu\n", crashes, ordered_runs);
    printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    return failed ? 1 : 0;
}
