/* The txn scenario of cstore-fault: bank transfers between accounts on every shard, in a child
 * process that is killed at random moments, with the database's fault plan armed in some
 * iterations; after each reopen the parent proves that every transaction is all or nothing,
 * that every acknowledged one is there, and that the money is all there.
 *
 * DATA. TXN_ACCOUNTS_PER_SHARD accounts per shard (keys "acct-NNNNN" chosen with cs_key_shard
 * so that every shard holds as many) in collection TXN_COLL_ACCTS, each a decimal balance,
 * TXN_BALANCE_START at the start (written by one cs_write whose batch spans every shard). Each
 * transfer is one interactive transaction: cs_txn_get of both balances, then cs_txn_put of
 * both new balances and of a marker "x-<id>" in TXN_COLL_MARKS whose value names the
 * transfer: "f=<from> t=<to> a=<amount>"; commit; retry from the start on CS_ECONFLICT (at most
 * TXN_RETRIES_MAX times). Ids are unique in the scenario (iteration, thread, sequence). Most
 * transfers cross shards (the two accounts, and often the marker, on different shards); some
 * stay on one. The markers make the check exact: the balances the database holds must be the
 * start balances moved by exactly the transfers whose markers it holds.
 *
 * THE CHILD opens the database (recovery resolves what the last kill left in doubt), runs
 * cfg.threads transfer threads and one checker thread, and reports through a pipe, one
 * fixed-size record per write(2) (atomic on a pipe: a kill loses whole records only): INTENT
 * (before the first attempt of a transfer), ACK (cs_txn_commit returned 0: from, to, amount),
 * FAIL (an error other than a conflict, or too many conflicts), and CHECK (a sum the checker
 * read). The checker, in a loop: a CS_TXN_READONLY transaction reading every account (committed
 * with 0, its sum must be the total: the transaction is serializable); a plain cursor over the
 * accounts while transfers run (it must see every account, each a well-formed balance; its sum
 * is not a snapshot across shards and is not judged); and, now and then, at quiescence (the
 * transfer threads are held at a write lock between transactions), the sum of cs_get read one
 * by one and the sum of a cursor, both of which must then be the total.
 *
 * THE PARENT feeds the records to its book (per transfer id: intent, acknowledged with its
 * amount, failed with its error, and after a check: present or absent), kills the child after
 * a seeded delay (or the child's fault plan kills it), reopens without faults and checks:
 *   - every account holds a well-formed balance, and their sum is the total;
 *   - every marker names a transfer the child announced (INTENT), with the accounts and, for an
 *     acknowledged one, the amount it acknowledged;
 *   - every acknowledged transfer's marker is there, and one settled at an earlier check
 *     (present or absent) is still so;
 *   - no transfer whose commit returned an error (CS_ECONFLICT included) is there: the header
 *     promises "nothing applied";
 *   - each balance equals its start balance moved by the transfers whose markers are there: a
 *     transfer half applied (one balance moved without the other, or without its marker) breaks
 *     this for some account;
 *   - the child's CHECK records: sums from committed read-only transactions and quiescent reads
 *     equal the total, and a live cursor saw every account;
 *   - cs_verify of the closed database passes.
 * A transfer in flight at the kill may be there or not (either, whole); the check then settles
 * it.
 *
 * ITERATIONS, in turn: a plain kill; a kill with checkpoint_wal_bytes=64K and cs_checkpoint
 * calls (checkpoints then carry prepared transactions); fault txn_crash=N (the child dies at
 * its Nth cross-shard commit's decision, every PREPARE in doubt); txn_ckpt_crash=N (the same,
 * after each participant wrote a checkpoint); fsync_eio=N and write_eio=N (a shard turns
 * read-only; transfers touching it fail with CS_EIO; an open the fault refuses is accepted).
 * --plan NAME runs one of them in every iteration. Each iteration prints one line; the scenario
 * ends with "N passed, M failed" (iterations with and without violations). */
#include "tools/fault_scenario.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define TXN_ACCOUNTS_PER_SHARD 6u
#define TXN_ACCOUNTS_MAX (TXN_ACCOUNTS_PER_SHARD * 8u) /* cfg.shards <= 8 */
#define TXN_KEY_TRIES_MAX 100000u                      /* candidate keys to fill every shard */
#define TXN_BALANCE_START 1000u
#define TXN_AMOUNT_MAX 50u
#define TXN_RETRIES_MAX 100000u      /* attempts of one transfer (conflicts) */
#define TXN_RETRY_SPIN 64u           /* attempts before the retries back off */
#define TXN_BACKOFF_US_MAX 8000u     /* longest pause between two attempts */
#define TXN_RO_TRIES_MAX 4u          /* attempts of a checker's read-only transaction */
#define TXN_FAILS_IN_ROW_MAX 64u     /* a thread stops after this many failed transfers */
#define TXN_QUIET_EVERY 2u           /* checker rounds per quiescent check (the first is one) */
#define TXN_CHECKER_PAUSE_US 5000u   /* between checker rounds */
#define TXN_CHILD_WAIT_MS_MAX 20000u /* a child still alive after this is killed */
#define TXN_BOOK_MIN 4096u           /* first capacity of the book (power of two) */
#define TXN_COLL_ACCTS "txn_accts"
#define TXN_COLL_MARKS "txn_marks"
#define TXN_VALUE_BYTES_MAX 64u
#define TXN_REC_MAGIC 0x43535458u /* "CSTX" */

/* ---- the log records ---- */

enum txn_rec_kind { TR_INTENT = 1, TR_ACK, TR_FAIL, TR_CHECK };

/* What a TR_CHECK record's sum was read by. */
enum txn_check_kind {
    CK_RO_TXN,       /* a committed read-only transaction: sum must be the total */
    CK_QUIET_GET,    /* cs_get one by one at quiescence: sum must be the total */
    CK_QUIET_CURSOR, /* a cursor at quiescence: sum and count */
    CK_LIVE_CURSOR,  /* a cursor while transfers run: count only */
    CK_GARBAGE,      /* a balance that does not parse: account index in `from` */
};

struct txn_rec {
    uint32_t magic;  /* TXN_REC_MAGIC */
    uint8_t kind;    /* enum txn_rec_kind */
    uint8_t check;   /* TR_CHECK: enum txn_check_kind */
    uint16_t thread; /* writing thread */
    int32_t rc;      /* TR_FAIL: the error */
    uint32_t from;   /* account indexes */
    uint32_t to;     /*   (TR_CHECK: count of accounts seen in `to`) */
    uint32_t amount; /* TR_ACK: amount moved */
    uint32_t tries;  /* TR_ACK, TR_FAIL: attempts (1 + conflicts) */
    uint64_t id;     /* transfer id */
    uint64_t sum;    /* TR_CHECK: the sum read; TR_ACK, TR_FAIL: milliseconds taken */
};
_Static_assert(sizeof(struct txn_rec) <= 512, "a log record must be written atomically");

/* ---- the book: what the parent knows of each transfer ---- */

enum txn_state {
    TS_NONE,    /* empty slot */
    TS_INTENT,  /* announced, no answer: may be there or not */
    TS_ACKED,   /* commit returned 0: must be there */
    TS_FAILED,  /* commit returned an error: must not be there */
    TS_PRESENT, /* settled present at a check */
    TS_ABSENT,  /* settled absent at a check */
};

struct txn_entry {
    uint64_t id;     /* transfer id (0: empty slot) */
    uint8_t state;   /* enum txn_state */
    bool seen;       /* check: its marker was found */
    uint16_t from;   /* account debited (from the INTENT record) */
    uint16_t to;     /* account credited */
    uint32_t amount; /* TS_ACKED: the amount acknowledged */
    int32_t rc;      /* TS_FAILED: the error */
};

struct txn_book {
    struct txn_entry *e; /* open addressing by id */
    size_t cap;          /* slots (power of two) */
    size_t used;         /* slots in use */
};

/* Per-iteration figures. */
struct txn_counts {
    uint64_t intents;       /* transfers begun */
    uint64_t acked;         /* transfers whose commit returned 0 */
    uint64_t failed;        /* transfers that ended in an error (or too many conflicts) */
    uint64_t conflicts;     /* attempts that returned CS_ECONFLICT */
    uint64_t ro_ok;         /* committed read-only transactions that summed the accounts */
    uint64_t quiet_ok;      /* sums read at quiescence */
    uint64_t live_ok;       /* cursors over the accounts while transfers ran */
    uint64_t doubt_present; /* transfers in flight at the kill, found there */
    uint64_t doubt_absent;  /* transfers in flight at the kill, found absent */
    uint64_t markers;       /* markers found at the check */
    uint64_t slowest_ms;    /* the longest transfer, retries included */
};

/* The scenario's state, shared with the child by fork. */
struct txn_run {
    struct fault_ctx *ctx;               /* the run */
    unsigned naccounts;                  /* accounts in use */
    char keys[TXN_ACCOUNTS_MAX][16];     /* account keys, NUL-terminated */
    unsigned shard_of[TXN_ACCOUNTS_MAX]; /* each account's shard */
    uint64_t total;                      /* the sum of all balances */
    struct txn_book book;                /* parent only */
    struct txn_counts n;                 /* this iteration */
    struct txn_rec buf[64];              /* drain: records read */
    size_t have;                         /* bytes of buf holding a partial record */
    /* the child */
    cs_db *db;              /* open database */
    int log_fd;             /* pipe to the parent */
    uint32_t iteration;     /* goes into transfer ids */
    uint64_t seed;          /* per iteration */
    bool checkpoints;       /* thread 0 calls cs_checkpoint now and then */
    pthread_rwlock_t quiet; /* transfers read-hold it; quiescent checks write */
    atomic_bool stop;       /* end the checker */
};

static struct txn_entry *book_slot(struct txn_book *b, uint64_t id)
{
    size_t mask = b->cap - 1;
    for (size_t i = mix64(id) & mask;; i = (i + 1) & mask)
        if (b->e[i].id == id || b->e[i].id == 0)
            return &b->e[i];
}

/* The entry of id, made (TS_NONE) when absent. Exits 2 when out of memory. */
static struct txn_entry *book_get(struct txn_book *b, uint64_t id)
{
    cs_assert(id != 0);
    if ((b->used + 1) * 2 > b->cap) {
        struct txn_book nb = {.cap = b->cap ? b->cap * 2 : TXN_BOOK_MIN, .used = b->used};
        nb.e = calloc(nb.cap, sizeof(*nb.e));
        if (!nb.e) {
            fprintf(stderr, "cstore-fault: out of memory\n");
            exit(2);
        }
        for (size_t i = 0; i < b->cap; i++)
            if (b->e[i].id)
                *book_slot(&nb, b->e[i].id) = b->e[i];
        free(b->e);
        *b = nb;
    }
    struct txn_entry *e = book_slot(b, id);
    if (e->id == 0) {
        e->id = id;
        b->used++;
    }
    return e;
}

static struct txn_entry *book_find(struct txn_book *b, uint64_t id)
{
    if (!b->cap || id == 0)
        return NULL;
    struct txn_entry *e = book_slot(b, id);
    return e->id ? e : NULL;
}

/* ---- values ---- */

static size_t balance_make(uint64_t v, char *buf)
{
    return (size_t)snprintf(buf, TXN_VALUE_BYTES_MAX, "%" PRIu64, v);
}

/* A balance read back: true and *v when the bytes are exactly one we write. */
static bool balance_parse(const void *val, size_t vlen, uint64_t *v)
{
    char s[TXN_VALUE_BYTES_MAX], again[TXN_VALUE_BYTES_MAX];
    if (vlen == 0 || vlen >= sizeof(s))
        return false;
    memcpy(s, val, vlen);
    s[vlen] = '\0';
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || s[0] < '0' || s[0] > '9')
        return false;
    *v = x;
    return balance_make(x, again) == vlen && memcmp(again, s, vlen) == 0;
}

static size_t marker_key(uint64_t id, char *buf)
{
    return (size_t)snprintf(buf, 32, "x-%016" PRIx64, id);
}

static size_t marker_value(uint32_t from, uint32_t to, uint32_t amount, char *buf)
{
    return (size_t)snprintf(buf, TXN_VALUE_BYTES_MAX, "f=%u t=%u a=%u", from, to, amount);
}

/* A marker read back: true with its id and transfer when key and value are exactly ours. */
static bool marker_parse(const void *key, size_t klen, const void *val, size_t vlen, uint64_t *id,
                         uint32_t *from, uint32_t *to, uint32_t *amount)
{
    char s[TXN_VALUE_BYTES_MAX], again[TXN_VALUE_BYTES_MAX];
    if (klen != 18 || memcmp(key, "x-", 2) != 0 || vlen == 0 || vlen >= sizeof(s))
        return false;
    memcpy(s, (const char *)key + 2, 16);
    s[16] = '\0';
    char *end;
    *id = strtoull(s, &end, 16);
    if (*end || marker_key(*id, again) != klen || memcmp(again, key, klen) != 0)
        return false;
    memcpy(s, val, vlen);
    s[vlen] = '\0';
    if (sscanf(s, "f=%u t=%u a=%u", from, to, amount) != 3)
        return false;
    return marker_value(*from, *to, *amount, again) == vlen && memcmp(again, s, vlen) == 0;
}

/* ---- accounts ---- */

/* Choose TXN_ACCOUNTS_PER_SHARD keys on every shard of db. Exits 2 when it cannot. */
static void accounts_choose(struct txn_run *tr, cs_db *db)
{
    unsigned shards = tr->ctx->cfg.shards, per[8] = {0};
    tr->naccounts = 0;
    for (unsigned i = 0; i < TXN_KEY_TRIES_MAX && tr->naccounts < TXN_ACCOUNTS_PER_SHARD * shards;
         i++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "acct-%05u", i);
        unsigned s = 0;
        if (cs_key_shard(db, key, (size_t)n, &s) != 0 || s >= shards || s >= 8u ||
            per[s] == TXN_ACCOUNTS_PER_SHARD)
            continue;
        per[s]++;
        memcpy(tr->keys[tr->naccounts], key, (size_t)n + 1);
        tr->shard_of[tr->naccounts++] = s;
    }
    if (tr->naccounts != TXN_ACCOUNTS_PER_SHARD * shards) {
        fprintf(stderr, "cstore-fault: txn: cannot place accounts on every shard\n");
        exit(2);
    }
    tr->total = (uint64_t)tr->naccounts * TXN_BALANCE_START;
}

/* Write every start balance with one cs_write (its batch spans every shard). */
static int accounts_open(struct txn_run *tr, cs_db *db)
{
    cs_batch *b = cs_batch_new();
    if (!b)
        return -ENOMEM;
    int rc = 0;
    char val[TXN_VALUE_BYTES_MAX];
    size_t vlen = balance_make(TXN_BALANCE_START, val);
    for (unsigned a = 0; a < tr->naccounts && !rc; a++)
        rc = cs_batch_put(b, TXN_COLL_ACCTS, tr->keys[a], strlen(tr->keys[a]), val, vlen);
    if (!rc)
        rc = cs_write(db, b);
    cs_batch_free(b);
    return rc;
}

/* ---- the child ---- */

static void rec_send(struct txn_run *tr, const struct txn_rec *r)
{
    for (unsigned tries = 0; tries < 1000; tries++) {
        ssize_t n = write(tr->log_fd, r, sizeof(*r));
        if (n == (ssize_t)sizeof(*r))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        _exit(5); /* the parent is gone: nothing left to prove */
    }
    _exit(5);
}

static void check_send(struct txn_run *tr, enum txn_check_kind how, uint64_t sum, uint32_t count,
                       uint32_t account)
{
    struct txn_rec r = {.magic = TXN_REC_MAGIC, .kind = TR_CHECK, .check = (uint8_t)how};
    r.sum = sum;
    r.to = count;
    r.from = account;
    rec_send(tr, &r);
}

/* Read a balance in t; 0 and *v, or the error (CS_EINVAL for a value that does not parse:
 * reported as garbage). */
static int txn_balance(struct txn_run *tr, cs_txn *t, unsigned a, uint64_t *v)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = cs_txn_get(t, TXN_COLL_ACCTS, tr->keys[a], strlen(tr->keys[a]), &val, &vlen);
    if (rc)
        return rc;
    bool ok = balance_parse(val, vlen, v);
    cs_free(val);
    if (!ok) {
        check_send(tr, CK_GARBAGE, 0, 0, a);
        return CS_EINVAL;
    }
    return 0;
}

/* One attempt of a transfer: 0 (committed: *amount moved), or the error of a call. */
static int transfer_try(struct txn_run *tr, uint64_t id, unsigned from, unsigned to,
                        struct rng *rng, uint32_t *amount)
{
    cs_txn *t = NULL;
    int rc = cs_txn_begin(tr->db, 0, &t);
    if (rc)
        return rc;
    uint64_t bf = 0, bt = 0;
    rc = txn_balance(tr, t, from, &bf);
    if (!rc)
        rc = txn_balance(tr, t, to, &bt);
    char val[TXN_VALUE_BYTES_MAX], key[32];
    uint32_t amt = (uint32_t)rng_below(rng, TXN_AMOUNT_MAX + 1);
    if (amt > bf)
        amt = (uint32_t)bf;
    if (!rc)
        rc = cs_txn_put(t, TXN_COLL_ACCTS, tr->keys[from], strlen(tr->keys[from]), val,
                        balance_make(bf - amt, val));
    if (!rc)
        rc = cs_txn_put(t, TXN_COLL_ACCTS, tr->keys[to], strlen(tr->keys[to]), val,
                        balance_make(bt + amt, val));
    if (!rc) {
        size_t klen = marker_key(id, key);
        rc = cs_txn_put(t, TXN_COLL_MARKS, key, klen, val, marker_value(from, to, amt, val));
    }
    if (rc) {
        cs_txn_abort(t);
        return rc;
    }
    *amount = amt;
    return cs_txn_commit(t);
}

/* Two distinct accounts: on different shards three times in four (when there are several). */
static void transfer_pick(struct txn_run *tr, struct rng *rng, unsigned *from, unsigned *to)
{
    bool cross = tr->ctx->cfg.shards > 1 && rng_below(rng, 4) != 0;
    *from = (unsigned)rng_below(rng, tr->naccounts);
    for (unsigned tries = 0; tries < 1000; tries++) {
        *to = (unsigned)rng_below(rng, tr->naccounts);
        if (*to != *from && (tr->shard_of[*to] != tr->shard_of[*from]) == cross)
            return;
    }
    *to = (*from + 1) % tr->naccounts;
}

struct txn_worker {
    struct txn_run *tr; /* shared */
    unsigned thread;    /* index */
};

static void *transfer_main(void *arg)
{
    struct txn_worker *wk = arg;
    struct txn_run *tr = wk->tr;
    struct rng rng = {mix64(tr->seed ^ (0x7000u + wk->thread))};
    unsigned fails_in_row = 0;
    for (uint32_t seq = 1; seq < 0xffffffu && fails_in_row < TXN_FAILS_IN_ROW_MAX; seq++) {
        struct txn_rec r = {
            .magic = TXN_REC_MAGIC, .kind = TR_INTENT, .thread = (uint16_t)wk->thread};
        r.id = (uint64_t)tr->iteration << 32 | (uint64_t)wk->thread << 24 | seq;
        unsigned from, to;
        transfer_pick(tr, &rng, &from, &to);
        r.from = from;
        r.to = to;
        rec_send(tr, &r);
        int rc = CS_ECONFLICT;
        uint64_t start_ms = now_ms();
        unsigned pause_us = 16;
        for (r.tries = 0; rc == CS_ECONFLICT && r.tries < TXN_RETRIES_MAX; r.tries++) {
            if (r.tries >= TXN_RETRY_SPIN) { /* a lock held over an fsync: back off */
                usleep(pause_us);
                pause_us = pause_us * 2 < TXN_BACKOFF_US_MAX ? pause_us * 2 : TXN_BACKOFF_US_MAX;
            }
            pthread_rwlock_rdlock(&tr->quiet);
            rc = transfer_try(tr, r.id, from, to, &rng, &r.amount);
            pthread_rwlock_unlock(&tr->quiet);
        }
        r.kind = rc ? TR_FAIL : TR_ACK;
        r.rc = rc;
        r.sum = now_ms() - start_ms; /* how long it took, retries included */
        rec_send(tr, &r);
        fails_in_row = rc ? fails_in_row + 1 : 0;
        if (tr->checkpoints && wk->thread == 0 && rng_below(&rng, 100) == 0)
            if (cs_checkpoint(tr->db) != 0) /* a failure that matters shows in the transfers */
                atomic_fetch_add(&tr->ctx->ckpt_failures, 1);
    }
    return NULL;
}

/* A read-only transaction over every account; committed, its sum must be the total. Returns
 * its commit's result (CS_ECONFLICT: try again), or another error. */
static int check_ro_txn(struct txn_run *tr)
{
    cs_txn *t = NULL;
    int brc = cs_txn_begin(tr->db, CS_TXN_READONLY, &t);
    if (brc)
        return brc;
    uint64_t sum = 0;
    int rc = 0;
    for (unsigned a = 0; a < tr->naccounts && !rc; a++) {
        uint64_t v = 0;
        rc = txn_balance(tr, t, a, &v);
        sum += v;
    }
    if (rc) {
        cs_txn_abort(t);
        return rc;
    }
    rc = cs_txn_commit(t);
    if (rc == 0)
        check_send(tr, CK_RO_TXN, sum, tr->naccounts, 0);
    return rc;
}

/* A cursor over the accounts: their sum and count; false when it could not read them all. */
static bool cursor_sum(struct txn_run *tr, uint64_t *sum, uint32_t *count)
{
    cs_cursor *c = NULL;
    *sum = 0;
    *count = 0;
    if (cs_cursor_open(tr->db, TXN_COLL_ACCTS, &c))
        return false;
    int rc = cs_cursor_first(c);
    for (unsigned steps = 0; rc == 0 && steps <= TXN_ACCOUNTS_MAX; steps++) {
        const void *k, *v;
        size_t klen, vlen;
        uint64_t x = 0;
        if (cs_cursor_key(c, &k, &klen) || cs_cursor_value(c, &v, &vlen))
            break;
        if (!balance_parse(v, vlen, &x))
            check_send(tr, CK_GARBAGE, 0, 0, UINT32_MAX);
        *sum += x;
        (*count)++;
        rc = cs_cursor_next(c);
    }
    cs_cursor_close(c);
    return rc == CS_ENOTFOUND;
}

/* cs_get of every account one by one: false when one failed. */
static bool get_sum(struct txn_run *tr, uint64_t *sum)
{
    *sum = 0;
    for (unsigned a = 0; a < tr->naccounts; a++) {
        void *val = NULL;
        size_t vlen = 0;
        uint64_t v = 0;
        if (cs_get(tr->db, TXN_COLL_ACCTS, tr->keys[a], strlen(tr->keys[a]), &val, &vlen))
            return false;
        bool ok = balance_parse(val, vlen, &v);
        cs_free(val);
        if (!ok) {
            check_send(tr, CK_GARBAGE, 0, 0, a);
            return false;
        }
        *sum += v;
    }
    return true;
}

static void *checker_main(void *arg)
{
    struct txn_run *tr = arg;
    for (unsigned round = 0; !atomic_load(&tr->stop); round++) {
        for (unsigned i = 0; i < TXN_RO_TRIES_MAX && check_ro_txn(tr) == CS_ECONFLICT; i++)
            ;
        uint64_t sum;
        uint32_t count;
        if (cursor_sum(tr, &sum, &count))
            check_send(tr, CK_LIVE_CURSOR, sum, count, 0);
        if (round % TXN_QUIET_EVERY == 0) {
            pthread_rwlock_wrlock(&tr->quiet);
            if (get_sum(tr, &sum))
                check_send(tr, CK_QUIET_GET, sum, tr->naccounts, 0);
            if (cursor_sum(tr, &sum, &count))
                check_send(tr, CK_QUIET_CURSOR, sum, count, 0);
            pthread_rwlock_unlock(&tr->quiet);
        }
        usleep(TXN_CHECKER_PAUSE_US);
    }
    return NULL;
}

/* The child: open, transfer until killed. Exit 3: cs_open failed (reported on stderr). */
static void child_main(struct txn_run *tr, const char *dir, const struct open_opts *oo)
{
    signal(SIGPIPE, SIG_IGN);
    int rc = db_open(tr->ctx, dir, oo, &tr->db);
    if (rc) {
        fprintf(stderr, "cstore-fault: txn child: cs_open: %s: %s\n", cs_strerror(rc),
                cs_last_error());
        _exit(3);
    }
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* a quiescent check must not starve behind a stream of transfers */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&tr->quiet, &attr);
    atomic_init(&tr->stop, false);
    pthread_t tid[THREADS_MAX], checker;
    struct txn_worker wk[THREADS_MAX];
    unsigned started = 0;
    for (unsigned t = 0; t < tr->ctx->cfg.threads; t++) {
        wk[t] = (struct txn_worker){.tr = tr, .thread = t};
        if (pthread_create(&tid[t], NULL, transfer_main, &wk[t]) != 0)
            break;
        started++;
    }
    bool checking = pthread_create(&checker, NULL, checker_main, tr) == 0;
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    atomic_store(&tr->stop, true); /* every transfer thread gave up: wait for the kill */
    if (checking)
        pthread_join(checker, NULL);
    for (;;)
        pause();
}

/* ---- the parent ---- */

static void rec_apply(struct txn_run *tr, const struct txn_rec *r)
{
    struct model *m = &tr->ctx->model;
    if (r->magic != TXN_REC_MAGIC) {
        model_violation(m, "a log record with a bad magic");
        return;
    }
    if (r->kind == TR_CHECK) {
        bool sum_ok = r->sum == tr->total, count_ok = r->to == tr->naccounts;
        switch (r->check) {
        case CK_RO_TXN:
            tr->n.ro_ok++;
            if (!sum_ok)
                model_violation(m,
                                "a committed read-only transaction summed %" PRIu64 ", not %" PRIu64
                                " (not serializable)",
                                r->sum, tr->total);
            break;
        case CK_QUIET_GET:
        case CK_QUIET_CURSOR:
            tr->n.quiet_ok++;
            if (!sum_ok || !count_ok)
                model_violation(m,
                                "at quiescence, %s read %u accounts summing %" PRIu64
                                " (expected %u, %" PRIu64 "): part of a transaction is visible",
                                r->check == CK_QUIET_GET ? "cs_get" : "a cursor", r->to, r->sum,
                                tr->naccounts, tr->total);
            break;
        case CK_LIVE_CURSOR:
            tr->n.live_ok++;
            if (!count_ok)
                model_violation(m, "a cursor saw %u accounts, not %u", r->to, tr->naccounts);
            break;
        default:
            model_violation(m, "account %u read as a value we never write", r->from);
        }
        return;
    }
    if (r->id == 0 || r->from >= tr->naccounts || r->to >= tr->naccounts) {
        model_violation(m, "a log record with a bad id or account");
        return;
    }
    struct txn_entry *e = book_get(&tr->book, r->id);
    if (r->kind != TR_INTENT && r->sum > tr->n.slowest_ms)
        tr->n.slowest_ms = r->sum;
    e->from = (uint16_t)r->from;
    e->to = (uint16_t)r->to;
    if (r->kind == TR_INTENT) {
        e->state = TS_INTENT;
        tr->n.intents++;
    } else if (r->kind == TR_ACK) {
        e->state = TS_ACKED;
        e->amount = r->amount;
        tr->n.acked++;
        tr->n.conflicts += r->tries - 1;
    } else {
        /* An I/O error leaves the outcome to the next open (include/cstore.h, cs_txn_commit: the
         * failed write may be on disk all the same, as for any write that fails with CS_EIO,
         * unless a participant that did not fail made the ABORT durable): in doubt, not absent.
         * Any other error means not applied. */
        bool io = r->rc == CS_EIO || r->rc == -EIO || r->rc == -ENOSPC;
        e->state = io ? TS_INTENT : TS_FAILED;
        e->rc = r->rc;
        note(tr->ctx,
             "transfer %016" PRIx64 " (%u -> %u) failed after %u tries, %" PRIu64 " ms: %s\n",
             r->id, r->from, r->to, r->tries, r->sum, cs_strerror(r->rc));
        tr->n.failed++;
        tr->n.conflicts += r->tries - (r->rc != CS_ECONFLICT);
    }
}

static void rec_apply_cb(void *arg, const void *rec)
{
    rec_apply(arg, rec);
}

/* Read records from fd until EOF or deadline_ms (0: EOF only). Returns true at EOF. */
static bool drain(struct txn_run *tr, int fd, uint64_t deadline_ms)
{
    return drain_records(fd, tr->buf, sizeof(tr->buf), &tr->have, sizeof(struct txn_rec),
                         deadline_ms, rec_apply_cb, tr, &tr->ctx->model);
}

/* Fork the child, kill it after kill_ms (unless it died first), collect its log. Returns its
 * wait status; *killed: this process sent the SIGKILL. Exits 2 when it cannot fork. */
static int child_run(struct txn_run *tr, const char *dir, const struct open_opts *oo,
                     uint64_t kill_ms, bool *killed)
{
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "cstore-fault: pipe: %s\n", strerror(errno));
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "cstore-fault: fork: %s\n", strerror(errno));
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        tr->log_fd = fds[1];
        child_main(tr, dir, oo);
    }
    close(fds[1]);
    bool eof = drain(tr, fds[0], now_ms() + (kill_ms ? kill_ms : TXN_CHILD_WAIT_MS_MAX));
    *killed = !eof;
    if (!eof) {
        kill(pid, SIGKILL);
        drain(tr, fds[0], 0);
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* Balances after a reopen: each account must read as a well-formed balance. */
static void check_balances(struct txn_run *tr, cs_db *db, uint64_t *bal)
{
    struct model *m = &tr->ctx->model;
    uint64_t sum = 0;
    for (unsigned a = 0; a < tr->naccounts; a++) {
        void *val = NULL;
        size_t vlen = 0;
        bal[a] = 0;
        int rc = cs_get(db, TXN_COLL_ACCTS, tr->keys[a], strlen(tr->keys[a]), &val, &vlen);
        if (rc)
            model_violation(m, "account %s: %s", tr->keys[a], cs_strerror(rc));
        else if (!balance_parse(val, vlen, &bal[a]))
            model_violation(m, "account %s holds a value we never write", tr->keys[a]);
        cs_free(val);
        sum += bal[a];
        tr->ctx->model.res->keys_checked++;
    }
    if (sum != tr->total)
        model_violation(m, "the accounts sum to %" PRIu64 ", not %" PRIu64, sum, tr->total);
}

/* One marker found: judge it against the book and move the expected balances. */
static void check_marker(struct txn_run *tr, uint64_t id, uint32_t from, uint32_t to,
                         uint32_t amount, int64_t *expect)
{
    struct model *m = &tr->ctx->model;
    struct txn_entry *e = book_find(&tr->book, id);
    tr->n.markers++;
    if (!e || e->state == TS_NONE) {
        model_violation(m, "marker of transfer %016" PRIx64 ", which was never begun", id);
        return;
    }
    if (e->seen) {
        model_violation(m, "two markers of transfer %016" PRIx64, id);
        return;
    }
    e->seen = true;
    if (from >= tr->naccounts || to >= tr->naccounts || from != e->from || to != e->to)
        model_violation(m, "marker of transfer %016" PRIx64 " names other accounts", id);
    else if (e->state == TS_ACKED && amount != e->amount)
        model_violation(m, "transfer %016" PRIx64 ": marker amount %u, acknowledged %u", id, amount,
                        e->amount);
    else if (e->state == TS_FAILED)
        model_violation(m, "transfer %016" PRIx64 " returned %s but is there", id,
                        cs_strerror(e->rc));
    else if (e->state == TS_ABSENT)
        model_violation(m, "transfer %016" PRIx64 " was absent at an earlier check, now there", id);
    if (from < tr->naccounts && to < tr->naccounts) {
        expect[from] -= amount;
        expect[to] += amount;
    }
}

/* Every marker, then the book: settle each transfer present or absent. */
static void check_markers(struct txn_run *tr, cs_db *db, int64_t *expect)
{
    struct model *m = &tr->ctx->model;
    cs_cursor *c = NULL;
    int rc = cs_cursor_open(db, TXN_COLL_MARKS, &c);
    if (rc) {
        model_violation(m, "cursor over the markers: %s", cs_strerror(rc));
        return;
    }
    for (rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c)) {
        const void *k, *v;
        size_t klen, vlen;
        uint64_t id;
        uint32_t from, to, amount;
        if (cs_cursor_key(c, &k, &klen) || cs_cursor_value(c, &v, &vlen) ||
            !marker_parse(k, klen, v, vlen, &id, &from, &to, &amount)) {
            model_violation(m, "a marker we never write");
            continue;
        }
        check_marker(tr, id, from, to, amount, expect);
    }
    cs_cursor_close(c);
    if (rc != CS_ENOTFOUND)
        model_violation(m, "cursor over the markers: %s", cs_strerror(rc));
    for (size_t i = 0; i < tr->book.cap; i++) {
        struct txn_entry *e = &tr->book.e[i];
        if (!e->id)
            continue;
        if (!e->seen && e->state == TS_ACKED)
            model_violation(m, "acknowledged transfer %016" PRIx64 " (%u -> %u, %u) is lost", e->id,
                            e->from, e->to, e->amount);
        if (!e->seen && e->state == TS_PRESENT)
            model_violation(m, "transfer %016" PRIx64 " was there at an earlier check, now lost",
                            e->id);
        if (e->state == TS_INTENT)
            e->seen ? tr->n.doubt_present++ : tr->n.doubt_absent++;
        e->state = e->seen ? TS_PRESENT : TS_ABSENT;
        e->seen = false;
    }
}

/* Reopen without faults and check everything (top comment); then cs_verify. */
static void reopen_check(struct txn_run *tr, const char *dir)
{
    struct model *m = &tr->ctx->model;
    struct open_opts plain = {.fault = ""};
    cs_db *db = NULL;
    m->stage = "txn check after reopen";
    int rc = db_open(tr->ctx, dir, &plain, &db);
    if (rc) {
        model_violation(m, "%s: reopen failed: %s: %s", dir, cs_strerror(rc), cs_last_error());
        return;
    }
    uint64_t bal[TXN_ACCOUNTS_MAX];
    int64_t expect[TXN_ACCOUNTS_MAX];
    check_balances(tr, db, bal);
    for (unsigned a = 0; a < tr->naccounts; a++)
        expect[a] = TXN_BALANCE_START;
    check_markers(tr, db, expect);
    for (unsigned a = 0; a < tr->naccounts; a++)
        if ((int64_t)bal[a] != expect[a])
            model_violation(m,
                            "account %s holds %" PRIu64 " but its transfers leave %" PRId64
                            ": a transfer is half applied",
                            tr->keys[a], bal[a], expect[a]);
    rc = cs_close(db);
    if (rc)
        model_violation(m, "close after the check: %s", cs_strerror(rc));
    cs_options *o = cs_options_new();
    char shards[16];
    snprintf(shards, sizeof(shards), "%u", tr->ctx->cfg.shards);
    char *report = NULL;
    rc = o ? cs_options_set(o, "shards", shards) : -ENOMEM;
    if (!rc)
        rc = cs_verify(dir, o, &report);
    if (rc)
        model_violation(m, "cs_verify after the check: %s: %s", cs_strerror(rc), cs_last_error());
    cs_free(report);
    cs_options_free(o);
}

/* The first database: accounts on every shard, written with one cross-shard cs_write. */
static void txn_setup(struct txn_run *tr, const char *dir)
{
    cs_db *db = NULL;
    int rc = db_open(tr->ctx, dir, NULL, &db);
    if (rc) {
        fprintf(stderr, "cstore-fault: txn: cs_open: %s: %s\n", cs_strerror(rc), cs_last_error());
        exit(2);
    }
    accounts_choose(tr, db);
    rc = accounts_open(tr, db);
    if (rc)
        model_violation(&tr->ctx->model, "the cross-shard cs_write of the accounts: %s",
                        cs_strerror(rc));
    if (cs_close(db))
        model_violation(&tr->ctx->model, "close after the set-up failed");
}

static const char *const txn_plan_names[] = {"kill",           "kill+ckpt", "txn_crash",
                                             "txn_ckpt_crash", "fsync_eio", "write_eio"};
#define TXN_PLANS (sizeof(txn_plan_names) / sizeof(txn_plan_names[0]))

int txn_plan_index(const char *name)
{
    for (unsigned i = 0; i < TXN_PLANS; i++)
        if (strcmp(name, txn_plan_names[i]) == 0)
            return (int)i;
    return -1;
}

/* The fault plan of iteration it (see the top comment; --plan fixes it); "" for none. */
static const char *txn_plan(const struct fault_ctx *ctx, unsigned it, struct rng *rng, char *fault,
                            size_t size, struct open_opts *oo, bool *checkpoints)
{
    const char *const *names = txn_plan_names;
    unsigned kind = ctx->cfg.txn_plan >= 0 ? (unsigned)ctx->cfg.txn_plan : it % TXN_PLANS;
    uint64_t seed = rng_next(rng) >> 1;
    fault[0] = '\0';
    *checkpoints = kind != 0;
    oo->ckpt_bytes = kind == 0 ? NULL : "64K";
    oo->segment = "1M";
    if (kind == 2 || kind == 3)
        snprintf(fault, size, "seed=%" PRIu64 ",%s=%" PRIu64, seed, names[kind],
                 1 + rng_below(rng, 200));
    else if (kind == 4 || kind == 5)
        snprintf(fault, size, "seed=%" PRIu64 ",%s=%" PRIu64, seed, names[kind],
                 10 + rng_below(rng, 300));
    oo->fault = fault;
    return names[kind];
}

void run_txn(struct fault_ctx *ctx, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    struct pacer p;
    struct rng rng = scenario_begin(ctx, SC_TXN, share, dir, sizeof(dir), &p);
    struct txn_run *tr = calloc(1, sizeof(*tr));
    if (!tr) {
        fprintf(stderr, "cstore-fault: out of memory\n");
        exit(2);
    }
    tr->ctx = ctx;
    ctx->model.stage = "txn set-up";
    txn_setup(tr, dir);
    unsigned passed = 0, failed = 0;
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        uint64_t violations_before = res->violations;
        char fault[128];
        struct open_opts oo = {0};
        const char *plan = txn_plan(ctx, it, &rng, fault, sizeof(fault), &oo, &tr->checkpoints);
        uint64_t kill_ms = 50 + rng_below(&rng, it % 4 == 3 ? 1500 : 500);
        tr->iteration = it + 1;
        tr->seed = rng_next(&rng);
        memset(&tr->n, 0, sizeof(tr->n));
        ctx->model.stage = "txn child";
        bool killed = false;
        int status = child_run(tr, dir, &oo, kill_ms, &killed);
        bool open_refused = WIFEXITED(status) && WEXITSTATUS(status) == 3;
        if (open_refused && !fault[0])
            model_violation(&ctx->model, "iteration %u: the child could not open the database", it);
        else if (!open_refused && (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL))
            model_violation(&ctx->model, "iteration %u: the child ended unexpectedly (%#x)", it,
                            status);
        bool fired = !killed || tr->n.failed > 0;
        res->faults += fired && fault[0];
        res->acked_ops += tr->n.acked;
        res->failed_ops += tr->n.failed;
        reopen_check(tr, dir);
        bool ok = res->violations == violations_before;
        passed += ok;
        failed += !ok;
        res->iterations++;
        printf("txn %u: %s%s%s%s, %s after %" PRIu64 " ms: %" PRIu64 " acked, %" PRIu64
               " failed, %" PRIu64 " conflicts (slowest %" PRIu64 " ms), in doubt %" PRIu64
               " there / %" PRIu64 " not; checks %" PRIu64 " read-only txn, %" PRIu64
               " quiescent, %" PRIu64 " live; %" PRIu64 " markers: %s\n",
               it, plan, fault[0] ? " \"" : "", fault, fault[0] ? "\"" : "",
               open_refused ? "open refused"
               : killed     ? "killed"
                            : "died of its fault",
               kill_ms, tr->n.acked, tr->n.failed, tr->n.conflicts, tr->n.slowest_ms,
               tr->n.doubt_present, tr->n.doubt_absent, tr->n.ro_ok, tr->n.quiet_ok, tr->n.live_ok,
               tr->n.markers, ok ? "ok" : "VIOLATIONS");
        fflush(stdout);
    }
    printf("txn: %u passed, %u failed\n", passed, failed);
    free(tr->book.e);
    free(tr);
    scenario_dir_done(ctx, dir);
}
