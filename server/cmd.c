/* The server's commands: the Redis commands on the default collection (server_config.collection,
 * option resp_collection) and the CS.* commands on named collections.
 *
 * HOW EACH KIND RUNS
 *   - answered at once on the connection's shard: PING ECHO QUIT HELLO AUTH CLIENT COMMAND CONFIG
 *     SELECT, and every arity or syntax error;
 *   - key operations through the shard's session, each to its key's shard, the reply built when
 *     the last completes: GET STRLEN TTL PTTL EXISTS MGET DEL SET (plain) CS.GET CS.PUT CS.DEL;
 *   - one write transaction submitted through the session (atomic across shards, never refused
 *     for a conflict): MSET;
 *   - one read-modify-write on the key's shard, atomic there (host_session_update): SET with NX,
 *     XX, GET or an expiry option, SETNX, SETEX, PSETEX, GETDEL, GETEX, INCR, INCRBY, DECR,
 *     DECRBY, APPEND, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST, and TTL and PTTL (which
 *     read the expiry there and write nothing);
 *   - on the slow lane (server/slow.c): MSETNX as a transaction with reads (serializable, retried
 *     on conflict; after CMD_TXN_EXCL_AFTER conflicts with the other clients' writes held, see
 *     "EXCLUSIVE" in slow.c), and the whole-collection ones: SCAN, CS.SCAN,
 *     DBSIZE, FLUSHALL, INFO, CS.COLLECTIONS, CS.STAT;
 *   - MULTI, DISCARD, UNWATCH and queueing at once; WATCH through the session (it reads its
 *     keys); EXEC on the slow lane (below).
 *
 * MULTI/EXEC. A connection's transaction state (struct multi) changes as its commands start,
 * which is in request order (net.c). After MULTI a command is checked as a run would check it
 * before touching data (name, arity, the cmd_def's check: options, MSET's pairs, INCRBY's
 * integer, expiry amounts) and for what the engine would refuse (key and value sizes), then queued
 * (+QUEUED); whole-collection and connection commands (SCAN, CS.SCAN, DBSIZE, FLUSHALL, INFO,
 * HELLO, AUTH, CLIENT, COMMAND, CONFIG, CS.COLLECTIONS, CS.STAT) are refused at queue time. A
 * refusal, or a block over CMD_MULTI_CMDS_MAX commands or CMD_MULTI_BYTES_MAX argument bytes,
 * makes EXEC answer -EXECABORT (Redis answers some of these checks inside EXEC's array instead).
 * EXEC runs the block on the slow lane as ONE cstore transaction: each command through its
 * cmd_def's txn function, reading the transaction's own earlier writes, its reply as it would
 * be alone; an attempt that conflicts is dropped whole (replies included) and run again, so
 * nothing is applied twice (after CMD_TXN_EXCL_AFTER conflicts with the other clients' writes
 * held: "EXCLUSIVE" in slow.c, so that a block does not fail for contention). WATCH reads its keys
 * and keeps a hash of each value (or its absence); EXEC reads them again inside its transaction and
 * answers the null array if one differs, and the commit validates those reads up to the commit.
 * With keys watched, a conflict is the null array too (the client retries), never a silent re-run.
 * Watching compares values: a key changed and changed back does not abort (Redis would abort).
 *
 * KEYS AND VALUES. Redis allows an empty key; the engine does not (CS_EKEYSIZE): such a command
 * gets -ERR with the engine's message, as does a key over CS_KEY_MAX or a value over
 * CS_VALUE_MAX. Nothing is written then.
 *
 * EXPIRY. Each record may carry an expiry (the engine's, see "Expiry" in include/cstore.h: an
 * absolute Unix time in ms, hidden from reads once past, removed in the background). As in
 * Redis: SET EX/PX/EXAT/PXAT and SETEX/PSETEX set it, SET KEEPTTL keeps it, any other SET (and
 * MSET, MSETNX, CS.PUT) clears it; INCR's family and APPEND keep it (the update hands the current
 * expiry to its function, which writes it back); EXPIRE PEXPIRE EXPIREAT PEXPIREAT set it (NX:
 * only without one, XX: only with one, GT: only later than the current one, LT: only earlier;
 * no expiry counts as infinite) and delete the key when the time given is already past; PERSIST
 * removes it; GETEX reads the value and sets (EX PX EXAT PXAT) or removes (PERSIST) it; TTL and
 * PTTL answer -2 for a missing key, -1 for one without expiry, else the time left (TTL in
 * seconds, rounded). An amount that is not an integer, or whose time passes CS_EXPIRE_MAX_MS,
 * is -ERR with nothing written; SET, SETEX and GETEX also refuse amounts <= 0. Every time is
 * taken from the engine's clock (cs_clock_ms) on the key's shard when the command runs. Inside
 * EXEC the same rules run in the block's transaction (cs_txn_put_ttl, cs_txn_get_expiry): the
 * transaction validates the values it read, not their expiries (see cs_txn_get_expiry).
 *
 * SCAN. Records are kept in key order, so a cursor resumes after the last key it returned. The
 * cursor number names that key in a table of SCAN_TABLE_SIZE positions (least recently used
 * reused); a cursor that is no longer in the table is -ERR invalid cursor (the client starts
 * again), never a silent restart that would loop forever. COUNT is how many records to return
 * (at most SCAN_COUNT_MAX); MATCH filters them with glob patterns (fnmatch), counting the
 * records looked at, as Redis does. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "server/server_int.h"

#define CMD_F_NOAUTH 1u   /* allowed before AUTH */
#define CMD_F_WRITE 2u    /* writes (COMMAND's flags) */
#define CMD_F_READONLY 4u /* reads only */
#define CMD_F_ALLKEYS 8u  /* reads or writes the whole collection: a barrier to the others */
#define CMD_F_COLL 16u    /* argument 1 names the collection of its keys (CS.*) */
/* Runs as single-key operations through the shard rings (a put, delete or update per key), so
 * two of them on a key reach its shard, and execute there, in the order they were submitted: they
 * need not wait for each other (see "ORDER" in net.c). Writes only: a read may be answered from
 * a published view, ahead of a write still queued. */
#define CMD_F_INBOX 128u
#define CMD_F_NOQUEUE 32u /* runs at once inside MULTI (EXEC DISCARD MULTI WATCH QUIT) */
#define CMD_F_BARRIER                                                                              \
    64u /* ordered as a barrier, though it touches no key (EXEC DISCARD UNWATCH) */

struct cmd_def {
    const char *name;                  /* lower case, as COMMAND shows it */
    int arity;                         /* Redis's: argc exactly, or -n: at least n */
    unsigned flags;                    /* CMD_F_* */
    int first_key, last_key, key_step; /* COMMAND's key positions */
    void (*exec)(struct cmd *c);       /* runs it (replies at once or later) */
    /* The checks a run makes before touching any data (syntax, options): false after replying
     * the error. NULL: none. exec makes them too; inside MULTI they are made at queue time. */
    bool (*check)(struct cmd *c);
    /* Runs it inside EXEC's transaction t, its reply in q->reply: 0, or an engine error that
     * ends the attempt (CS_ECONFLICT: retried). NULL: not allowed inside MULTI. */
    int (*txn)(struct cmd *q, cs_txn *t);
};

/* ---- replies ---- */

static void out_failed(struct cmd *c)
{
    c->close_after = true; /* a reply over output_bytes_max: the connection goes */
}

static void reply_simple(struct cmd *c, const char *s)
{
    if (resp_out_simple(&c->reply, s) != 0)
        out_failed(c);
}

void reply_error(struct cmd *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Redis's convention: an error starts with its code word (ERR, WRONGPASS, NOPROTO...) */
    if (resp_out_error(&c->reply, msg) != 0)
        out_failed(c);
}

static void reply_int(struct cmd *c, long long v)
{
    if (resp_out_int(&c->reply, v) != 0)
        out_failed(c);
}

static void reply_bulk(struct cmd *c, const void *p, size_t n)
{
    if (resp_out_bulk(&c->reply, p, n) != 0)
        out_failed(c);
}

static void reply_str(struct cmd *c, const char *s)
{
    reply_bulk(c, s, strlen(s));
}

static void reply_null(struct cmd *c)
{
    if (resp_out_null(&c->reply) != 0)
        out_failed(c);
}

static void reply_array(struct cmd *c, size_t n)
{
    if (resp_out_array(&c->reply, n) != 0)
        out_failed(c);
}

void reply_rc(struct cmd *c, int rc)
{
    reply_error(c, "ERR %s", cs_strerror(rc));
}

static void done(struct cmd *c)
{
    net_cmd_done(c);
}

static bool arg_is(const struct cmd *c, size_t i, const char *word)
{
    return i < c->argc && strcasecmp(c->argv[i], word) == 0;
}

/* A whole decimal long long, as Redis's string2ll takes it. */
static bool parse_ll(const char *s, size_t len, long long *out)
{
    if (len == 0 || len > 20)
        return false;
    char buf[24];
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] == '+' || buf[0] == ' ' || (buf[0] == '0' && len > 1) ||
        (buf[0] == '-' && (len == 1 || buf[1] == '0')))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* ---- subs: key operations through the session ---- */

/* Give c n subs (in its own allocation). Returns false on out of memory (the reply says so). */
static bool subs_alloc(struct cmd *c, size_t n)
{
    if (c->subs_cap < n) { /* a recycled command keeps its array */
        struct sub *a = realloc(c->subs, n * sizeof(*a));
        if (!a) {
            reply_rc(c, -ENOMEM);
            done(c);
            return false;
        }
        c->subs = a;
        c->subs_cap = n;
    }
    memset(c->subs, 0, n * sizeof(*c->subs));
    c->nsubs = n;
    for (size_t i = 0; i < n; i++)
        c->subs[i].cmd = c;
    return true;
}

static void sub_set(struct cmd *c, size_t i, enum sub_op op, const char *coll, size_t arg)
{
    c->subs[i].op = (uint8_t)op;
    c->subs[i].coll = coll;
    c->subs[i].arg = arg;
}

static const char *redis_coll(const struct cmd *c)
{
    return c->conn->net->srv->collection;
}

/* One key operation on the default collection (or coll), finished by fin. */
static void one_sub(struct cmd *c, enum sub_op op, const char *coll, size_t arg,
                    void (*fin)(struct cmd *c))
{
    if (!subs_alloc(c, 1))
        return;
    sub_set(c, 0, op, coll, arg);
    c->finish = fin;
    net_submit(c);
}

/* An engine error of a sub, or 0 when every sub succeeded or found nothing. */
static int subs_error(const struct cmd *c)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].rc && c->subs[i].rc != CS_ENOTFOUND)
            return c->subs[i].rc;
    return 0;
}

void cmd_subs_done(struct cmd *c)
{
    c->finish(c); /* replies and calls done(), or submits again (a retried transaction) */
}

static void fin_get(struct cmd *c)
{
    struct sub *s = &c->subs[0];
    if (s->rc == CS_ENOTFOUND)
        reply_null(c);
    else if (s->rc)
        reply_rc(c, s->rc);
    else
        reply_bulk(c, s->val, s->vlen);
    done(c);
}

static void fin_strlen(struct cmd *c)
{
    struct sub *s = &c->subs[0];
    if (s->rc && s->rc != CS_ENOTFOUND)
        reply_rc(c, s->rc);
    else
        reply_int(c, s->rc ? 0 : (long long)s->vlen);
    done(c);
}

/* TTL and PTTL's answer: -2 missing, -1 no expiry, else the time left (TTL: seconds, rounded
 * as Redis rounds them). */
static void ttl_answer(struct cmd *c, bool found, uint64_t exp)
{
    if (!found) {
        reply_int(c, -2);
        return;
    }
    if (exp == 0) {
        reply_int(c, -1);
        return;
    }
    uint64_t now_ms = cs_clock_ms();
    long long left_ms = exp > now_ms ? (long long)(exp - now_ms) : 0;
    reply_int(c, arg_is(c, 0, "PTTL") ? left_ms : (left_ms + 500) / 1000);
}

static void fin_ttl(struct cmd *c)
{
    struct sub *s = &c->subs[0];
    if (s->rc)
        reply_rc(c, s->rc);
    else
        ttl_answer(c, s->found, (uint64_t)s->number);
    done(c);
}

/* EXPIRE's family and PERSIST: 1 or 0. */
static void fin_number(struct cmd *c)
{
    struct sub *s = &c->subs[0];
    if (s->rc)
        reply_rc(c, s->rc);
    else
        reply_int(c, s->number);
    done(c);
}

static void fin_getex(struct cmd *c)
{
    struct sub *s = &c->subs[0];
    if (s->rc)
        reply_rc(c, s->rc);
    else if (!s->found)
        reply_null(c);
    else
        reply_bulk(c, s->val, s->vlen);
    done(c);
}

static void fin_ok(struct cmd *c)
{
    int rc = subs_error(c);
    if (rc)
        reply_rc(c, rc);
    else
        reply_simple(c, "OK");
    done(c);
}

/* DEL and EXISTS: how many found (a key named twice counts twice, as in Redis). */
static void fin_count(struct cmd *c)
{
    int rc = subs_error(c);
    if (rc) {
        reply_rc(c, rc);
    } else {
        long long n = 0;
        for (size_t i = 0; i < c->nsubs; i++)
            n += c->subs[i].rc == 0;
        reply_int(c, n);
    }
    done(c);
}

static void fin_mget(struct cmd *c)
{
    int rc = subs_error(c);
    if (rc) {
        reply_rc(c, rc);
    } else {
        reply_array(c, c->nsubs);
        for (size_t i = 0; i < c->nsubs; i++) {
            if (c->subs[i].rc)
                reply_null(c);
            else
                reply_bulk(c, c->subs[i].val, c->subs[i].vlen);
        }
    }
    done(c);
}

/* Keys from argument first on, every step-th, each a sub of op on coll. */
static void many_subs(struct cmd *c, enum sub_op op, const char *coll, size_t first, size_t step,
                      void (*fin)(struct cmd *c))
{
    size_t n = (c->argc - first) / step;
    if (!subs_alloc(c, n))
        return;
    for (size_t i = 0; i < n; i++)
        sub_set(c, i, op, coll, first + i * step);
    c->finish = fin;
    net_submit(c);
}

/* ---- MSET: one write transaction through the session ---- */

static void fin_mset(struct cmd *c);

static int mset_build(struct cmd *c)
{
    cs_txn *t;
    int rc = cs_txn_begin(c->conn->net->srv->db, 0, &t);
    if (rc)
        return rc;
    for (size_t i = 1; i + 1 < c->argc; i += 2) {
        rc = cs_txn_put(t, redis_coll(c), c->argv[i], c->argl[i], c->argv[i + 1], c->argl[i + 1]);
        if (rc) {
            cs_txn_abort(t);
            return rc;
        }
    }
    c->txn = t;
    c->txn_submitted = false;
    c->submitted = 0;
    c->completed = 0;
    c->subs[0].rc = 0;
    return 0;
}

static void fin_mset(struct cmd *c)
{
    /* never CS_ECONFLICT: a transaction that only writes is never refused for a conflict
     * (engine/txn_core.h, ORDERED WRITES), as Redis's MSET never fails */
    int rc = c->subs[0].rc;
    c->txn_submitted = false;
    if (rc)
        reply_rc(c, rc);
    else
        reply_simple(c, "OK");
    done(c);
}

/* MSET and MSETNX: keys and values in pairs. */
static bool check_pairs(struct cmd *c)
{
    if (c->argc % 2 == 1)
        return true;
    reply_error(c, "ERR wrong number of arguments for '%s' command", c->def->name);
    return false;
}

static void exec_mset(struct cmd *c)
{
    if (!check_pairs(c)) {
        done(c);
        return;
    }
    if (!subs_alloc(c, 1))
        return;
    c->finish = fin_mset;
    int rc = mset_build(c);
    if (rc) {
        reply_rc(c, rc);
        done(c);
        return;
    }
    net_submit(c);
}

/* ---- read-modify-write commands: transactions on the slow lane ---- */

/* What one attempt of a read-modify-write decides, given the key's current value. */
enum rmw_write { RMW_NONE, RMW_PUT, RMW_DEL };
struct rmw {
    enum rmw_write write; /* what to write */
    const void *val;      /* RMW_PUT: the new value */
    size_t vlen;
    uint64_t expire_ms; /* RMW_PUT: the expiry written (Unix ms, 0: none); holds the key's
                           current expiry when fn is called, so a put keeps it by default */
    char num[32];       /* INCR's new value, as text */
    char *owned;        /* APPEND's new value (freed after the attempt) */
};
/* Decide from the value read (found false: none), reply into c only through rmw_reply later. */
typedef int (*rmw_fn)(struct cmd *c, const void *old, size_t oldlen, bool found, struct rmw *w);

/* The reply of a read-modify-write, from what its committed attempt read and decided. */
typedef void (*rmw_reply_fn)(struct cmd *c, int verdict, bool found, const void *old,
                             size_t oldlen);

/* One attempt's work inside t: read key argument ki, let fn decide, buffer the write. Returns 0
 * with *verdict (nonzero: the command refuses, e.g. not an integer, and nothing is written),
 * found and old (cs_free; the previous *old is freed) as read, or an engine error. */
static int rmw_step(struct cmd *c, cs_txn *t, size_t ki, rmw_fn fn, void **old, size_t *oldlen,
                    bool *found, int *verdict)
{
    cs_free(*old);
    *old = NULL;
    *oldlen = 0;
    int rc = cs_txn_get(t, redis_coll(c), c->argv[ki], c->argl[ki], old, oldlen);
    if (rc && rc != CS_ENOTFOUND)
        return rc;
    *found = rc == 0;
    struct rmw w = {.write = RMW_NONE};
    if (*found) {
        rc = cs_txn_get_expiry(t, redis_coll(c), c->argv[ki], c->argl[ki], &w.expire_ms);
        if (rc && rc != CS_ENOTFOUND)
            return rc;
    }
    *verdict = fn(c, *old, *oldlen, *found, &w);
    rc = 0;
    if (*verdict == 0 && w.write == RMW_PUT)
        rc = cs_txn_put_ttl(t, redis_coll(c), c->argv[ki], c->argl[ki], w.val, w.vlen, w.expire_ms);
    else if (*verdict == 0 && w.write == RMW_DEL)
        rc = cs_txn_del(t, redis_coll(c), c->argv[ki], c->argl[ki]);
    free(w.owned);
    return rc;
}

/* SET's options (and SETNX's), as set_flags finds them. */
#define SET_NX 1u
#define SET_XX 2u
#define SET_GET 4u

static unsigned set_flags(const struct cmd *c)
{
    unsigned f = 0;
    for (size_t i = 3; i < c->argc; i++) {
        if (arg_is(c, i, "NX"))
            f |= SET_NX;
        else if (arg_is(c, i, "XX"))
            f |= SET_XX;
        else if (arg_is(c, i, "GET"))
            f |= SET_GET;
    }
    if (arg_is(c, 0, "SETNX"))
        f |= SET_NX;
    return f;
}

/* ---- expiry options ----
 * EX seconds, PX milliseconds (from now), EXAT seconds, PXAT milliseconds (Unix time), as SET,
 * GETEX and the EXPIRE family take them. An amount is an integer; the absolute time it means must
 * not pass CS_EXPIRE_MAX_MS (else "invalid expire time", nothing written); a time at or before
 * now (EXPIRE's may be) means the key goes at once. */
enum exp_kind { EXP_NONE, EXP_EX, EXP_PX, EXP_EXAT, EXP_PXAT, EXP_KEEPTTL, EXP_PERSIST };

static enum exp_kind exp_word(const struct cmd *c, size_t i)
{
    static const char *const words[] = {"EX", "PX", "EXAT", "PXAT"};
    for (unsigned k = 0; k < 4; k++)
        if (arg_is(c, i, words[k]))
            return (enum exp_kind)(EXP_EX + k);
    return EXP_NONE;
}

/* The absolute expiry (Unix ms) that amount v of kind k means at now_ms, into *out (1 when it is
 * in the past); false when out of range. */
static bool exp_abs(enum exp_kind k, long long v, uint64_t now_ms, uint64_t *out)
{
    long long unit = k == EXP_EX || k == EXP_EXAT ? 1000 : 1;
    long long max = (long long)CS_EXPIRE_MAX_MS;
    if (v > max / unit || v < -(max / unit))
        return false;
    long long ms = v * unit + (k == EXP_EX || k == EXP_PX ? (long long)now_ms : 0);
    if (ms > max)
        return false;
    *out = ms > 0 ? (uint64_t)ms : 1;
    return true;
}

/* SET's expiry option (kind, and the index of its amount): at most one of EX PX EXAT PXAT
 * KEEPTTL; check_set has checked the syntax. */
static enum exp_kind set_exp_kind(const struct cmd *c, size_t *amount)
{
    for (size_t i = 3; i < c->argc; i++) {
        enum exp_kind k = exp_word(c, i);
        if (k != EXP_NONE && i + 1 < c->argc) {
            *amount = i + 1;
            return k;
        }
        if (arg_is(c, i, "KEEPTTL"))
            return EXP_KEEPTTL;
    }
    return EXP_NONE;
}

/* The expiry a SET writes over a key whose expiry is cur: its option's, cur with KEEPTTL, or none
 * (a plain SET clears it, as Redis does). */
static uint64_t set_expiry(const struct cmd *c, uint64_t cur, uint64_t now_ms)
{
    size_t ai = 0;
    enum exp_kind k = set_exp_kind(c, &ai);
    if (k == EXP_KEEPTTL)
        return cur;
    if (k == EXP_NONE)
        return 0;
    long long v = 0;
    uint64_t exp = 0;
    if (!parse_ll(c->argv[ai], c->argl[ai], &v) || !exp_abs(k, v, now_ms, &exp))
        return 1; /* check_set refused it: not reached */
    return exp;
}

/* An amount that must be a positive integer with an absolute time in range (SET, SETEX, GETEX):
 * false after replying the error. */
static bool check_exp_amount(struct cmd *c, size_t i, enum exp_kind k, const char *cmd)
{
    long long v;
    uint64_t exp;
    if (!parse_ll(c->argv[i], c->argl[i], &v)) {
        reply_error(c, "ERR value is not an integer or out of range");
        return false;
    }
    if (v <= 0 || !exp_abs(k, v, cs_clock_ms(), &exp)) {
        reply_error(c, "ERR invalid expire time in '%s' command", cmd);
        return false;
    }
    return true;
}

static int set_decide(struct cmd *c, const void *old, size_t oldlen, bool found, struct rmw *w)
{
    (void)old;
    (void)oldlen;
    unsigned f = set_flags(c);
    if ((f & SET_NX) && found)
        return 0;
    if ((f & SET_XX) && !found)
        return 0;
    w->write = RMW_PUT;
    w->val = c->argv[2];
    w->vlen = c->argl[2];
    w->expire_ms = set_expiry(c, w->expire_ms, cs_clock_ms());
    return 0;
}

static void set_reply(struct cmd *c, int verdict, bool found, const void *old, size_t oldlen)
{
    (void)verdict;
    unsigned f = set_flags(c);
    bool wrote = !((f & SET_NX) && found) && !((f & SET_XX) && !found);
    if (arg_is(c, 0, "SETNX"))
        reply_int(c, wrote ? 1 : 0);
    else if (f & SET_GET)
        found ? reply_bulk(c, old, oldlen) : reply_null(c);
    else if (wrote)
        reply_simple(c, "OK");
    else
        reply_null(c);
}

static int getdel_decide(struct cmd *c, const void *old, size_t oldlen, bool found, struct rmw *w)
{
    (void)c;
    (void)old;
    (void)oldlen;
    w->write = found ? RMW_DEL : RMW_NONE;
    return 0;
}

static void getdel_reply(struct cmd *c, int verdict, bool found, const void *old, size_t oldlen)
{
    (void)verdict;
    if (found)
        reply_bulk(c, old, oldlen);
    else
        reply_null(c);
}

#define RMW_NOT_INT 1
#define RMW_OVERFLOW 2

/* INCR, INCRBY, DECR, DECRBY: the step (argument 2 for the BY forms). */
static bool incr_step(const struct cmd *c, long long *step)
{
    bool by = arg_is(c, 0, "INCRBY") || arg_is(c, 0, "DECRBY");
    bool down = arg_is(c, 0, "DECR") || arg_is(c, 0, "DECRBY");
    long long v = 1;
    if (by && !parse_ll(c->argv[2], c->argl[2], &v))
        return false;
    if (down) {
        if (v == LLONG_MIN)
            return false;
        v = -v;
    }
    *step = v;
    return true;
}

static int incr_decide(struct cmd *c, const void *old, size_t oldlen, bool found, struct rmw *w)
{
    long long cur = 0, step;
    if (found && !parse_ll(old, oldlen, &cur))
        return RMW_NOT_INT;
    if (!incr_step(c, &step))
        return RMW_NOT_INT;
    if ((step > 0 && cur > LLONG_MAX - step) || (step < 0 && cur < LLONG_MIN - step))
        return RMW_OVERFLOW;
    int n = snprintf(w->num, sizeof(w->num), "%lld", cur + step);
    w->write = RMW_PUT;
    w->val = w->num;
    w->vlen = (size_t)n;
    return 0;
}

static void incr_reply(struct cmd *c, int verdict, bool found, const void *old, size_t oldlen)
{
    long long cur = 0, step = 0;
    if (verdict == RMW_NOT_INT)
        reply_error(c, "ERR value is not an integer or out of range");
    else if (verdict == RMW_OVERFLOW)
        reply_error(c, "ERR increment or decrement would overflow");
    else if ((found && !parse_ll(old, oldlen, &cur)) || !incr_step(c, &step))
        reply_error(c, "ERR value is not an integer or out of range");
    else
        reply_int(c, cur + step);
}

static int append_decide(struct cmd *c, const void *old, size_t oldlen, bool found, struct rmw *w)
{
    size_t olen = found ? oldlen : 0;
    if (olen + c->argl[2] > CS_VALUE_MAX)
        return CS_EVALSIZE; /* the command's error, as the write's would be */
    w->owned = malloc(olen + c->argl[2] + 1);
    if (!w->owned)
        return -ENOMEM;
    if (olen)
        memcpy(w->owned, old, olen);
    memcpy(w->owned + olen, c->argv[2], c->argl[2]);
    w->write = RMW_PUT;
    w->val = w->owned;
    w->vlen = olen + c->argl[2];
    return 0;
}

static void append_reply(struct cmd *c, int verdict, bool found, const void *old, size_t oldlen)
{
    (void)old;
    if (verdict)
        reply_rc(c, verdict);
    else
        reply_int(c, (long long)((found ? oldlen : 0) + c->argl[2]));
}

/* ---- read-modify-writes outside EXEC: one atomic update on the key's shard ----
 * Run alone, SET with NX, XX or GET, SETNX, GETDEL, the INCR family and APPEND read the key and
 * write it in one step on its shard (host_session_update): no transaction, no extra round trip,
 * and the write joins the shard's group commit like a plain SET. The functions below run on the
 * key's shard thread and write what the reply needs into the sub; the reply is built on the
 * connection's shard when the update completes. Inside EXEC the same commands run through the
 * decide functions above, in the block's transaction. */

/* Keep a copy of the value read (SET GET, GETDEL): the view dies with the call. */
static int keep_old(struct sub *s, const void *old, size_t oldlen)
{
    if (oldlen == 0)
        return 0;
    s->val = malloc(oldlen);
    if (!s->val)
        return -ENOMEM;
    memcpy(s->val, old, oldlen);
    s->vlen = oldlen;
    s->val_malloced = true;
    return 0;
}

static int upd_set(void *arg, const void *old, size_t oldlen, bool found,
                   struct shard_update_out *out)
{
    struct sub *s = arg;
    struct cmd *c = s->cmd;
    unsigned f = set_flags(c);
    s->found = found;
    if ((f & SET_GET) && found && keep_old(s, old, oldlen) != 0)
        return -ENOMEM;
    s->wrote = !((f & SET_NX) && found) && !((f & SET_XX) && !found);
    if (s->wrote) {
        out->write = SHARD_UPDATE_PUT;
        out->val = c->argv[2];
        out->vlen = c->argl[2];
        out->expire_ms = set_expiry(c, out->expire_ms, cs_clock_ms());
    }
    return 0;
}

/* SETEX key seconds value, PSETEX key milliseconds value. */
static int upd_setex(void *arg, const void *old, size_t oldlen, bool found,
                     struct shard_update_out *out)
{
    (void)old;
    (void)oldlen;
    (void)found;
    struct sub *s = arg;
    struct cmd *c = s->cmd;
    long long v = 0;
    uint64_t exp = 1;
    if (parse_ll(c->argv[2], c->argl[2], &v))
        (void)exp_abs(arg_is(c, 0, "SETEX") ? EXP_EX : EXP_PX, v, cs_clock_ms(), &exp);
    out->write = SHARD_UPDATE_PUT;
    out->val = c->argv[3];
    out->vlen = c->argl[3];
    out->expire_ms = exp;
    return 0;
}

/* EXPIRE PEXPIRE EXPIREAT PEXPIREAT: the new expiry's kind, and whether it applies given the
 * key's current one (cur, 0: none) and the NX XX GT LT options (no expiry counts as infinite,
 * as in Redis). */
static enum exp_kind expire_kind(const struct cmd *c)
{
    if (arg_is(c, 0, "EXPIRE"))
        return EXP_EX;
    if (arg_is(c, 0, "PEXPIRE"))
        return EXP_PX;
    return arg_is(c, 0, "EXPIREAT") ? EXP_EXAT : EXP_PXAT;
}

static bool expire_applies(const struct cmd *c, uint64_t cur, uint64_t exp)
{
    for (size_t i = 3; i < c->argc; i++) {
        if (arg_is(c, i, "NX") && cur != 0)
            return false;
        if (arg_is(c, i, "XX") && cur == 0)
            return false;
        if (arg_is(c, i, "GT") && (cur == 0 || exp <= cur))
            return false;
        if (arg_is(c, i, "LT") && cur != 0 && exp >= cur)
            return false;
    }
    return true;
}

/* What EXPIRE does to a key found with expiry cur: 0 (nothing), 1 and *exp set (a new expiry),
 * or 2 (the new expiry is past: delete the key, as Redis does). */
static int expire_decide_at(const struct cmd *c, uint64_t cur, uint64_t now_ms, uint64_t *exp)
{
    long long v = 0;
    if (!parse_ll(c->argv[2], c->argl[2], &v) || !exp_abs(expire_kind(c), v, now_ms, exp))
        return 0; /* check_expire refused it: not reached */
    if (!expire_applies(c, cur, *exp))
        return 0;
    return *exp <= now_ms ? 2 : 1;
}

static int upd_expire(void *arg, const void *old, size_t oldlen, bool found,
                      struct shard_update_out *out)
{
    (void)old;
    (void)oldlen;
    struct sub *s = arg;
    uint64_t exp = 0;
    int d = found ? expire_decide_at(s->cmd, out->expire_ms, cs_clock_ms(), &exp) : 0;
    s->number = d != 0;
    if (d == 2)
        out->write = SHARD_UPDATE_DEL;
    if (d == 1) {
        out->write = SHARD_UPDATE_EXPIRE;
        out->expire_ms = exp;
    }
    return 0;
}

/* TTL, PTTL: the key's expiry into number (found says whether it exists). */
static int upd_ttl(void *arg, const void *old, size_t oldlen, bool found,
                   struct shard_update_out *out)
{
    (void)old;
    (void)oldlen;
    struct sub *s = arg;
    s->found = found;
    s->number = (long long)out->expire_ms;
    return 0;
}

static int upd_persist(void *arg, const void *old, size_t oldlen, bool found,
                       struct shard_update_out *out)
{
    (void)old;
    (void)oldlen;
    struct sub *s = arg;
    s->number = found && out->expire_ms != 0;
    if (s->number) {
        out->write = SHARD_UPDATE_EXPIRE;
        out->expire_ms = 0;
    }
    return 0;
}

/* GETEX's option: the expiry to set (*exp; 0 with PERSIST), or false for none. */
static bool getex_expiry(const struct cmd *c, uint64_t now_ms, uint64_t *exp)
{
    if (c->argc < 3)
        return false;
    if (arg_is(c, 2, "PERSIST")) {
        *exp = 0;
        return true;
    }
    long long v = 0;
    return c->argc == 4 && parse_ll(c->argv[3], c->argl[3], &v) &&
           exp_abs(exp_word(c, 2), v, now_ms, exp);
}

static int upd_getex(void *arg, const void *old, size_t oldlen, bool found,
                     struct shard_update_out *out)
{
    struct sub *s = arg;
    s->found = found;
    if (!found)
        return 0;
    if (keep_old(s, old, oldlen) != 0)
        return -ENOMEM;
    uint64_t exp;
    if (getex_expiry(s->cmd, cs_clock_ms(), &exp)) {
        out->write = SHARD_UPDATE_EXPIRE;
        out->expire_ms = exp;
    }
    return 0;
}

static int upd_getdel(void *arg, const void *old, size_t oldlen, bool found,
                      struct shard_update_out *out)
{
    struct sub *s = arg;
    s->found = found;
    if (found && keep_old(s, old, oldlen) != 0)
        return -ENOMEM;
    out->write = found ? SHARD_UPDATE_DEL : SHARD_UPDATE_NONE;
    return 0;
}

static int upd_incr(void *arg, const void *old, size_t oldlen, bool found,
                    struct shard_update_out *out)
{
    struct sub *s = arg;
    long long cur = 0, step = 0;
    if ((found && !parse_ll(old, oldlen, &cur)) || !incr_step(s->cmd, &step)) {
        s->verdict = RMW_NOT_INT;
        return 0;
    }
    if ((step > 0 && cur > LLONG_MAX - step) || (step < 0 && cur < LLONG_MIN - step)) {
        s->verdict = RMW_OVERFLOW;
        return 0;
    }
    s->number = cur + step;
    int n = snprintf(s->num, sizeof(s->num), "%lld", s->number);
    out->write = SHARD_UPDATE_PUT;
    out->val = s->num;
    out->vlen = (size_t)n;
    return 0;
}

static int upd_append(void *arg, const void *old, size_t oldlen, bool found,
                      struct shard_update_out *out)
{
    struct sub *s = arg;
    struct cmd *c = s->cmd;
    size_t olen = found ? oldlen : 0;
    if (olen + c->argl[2] > CS_VALUE_MAX)
        return CS_EVALSIZE;
    s->val = malloc(olen + c->argl[2] + 1);
    if (!s->val)
        return -ENOMEM;
    s->val_malloced = true;
    if (olen)
        memcpy(s->val, old, olen);
    memcpy((char *)s->val + olen, c->argv[2], c->argl[2]);
    s->vlen = olen + c->argl[2];
    out->write = SHARD_UPDATE_PUT;
    out->val = s->val;
    out->vlen = s->vlen;
    return 0;
}

/* An update's reply, built by the same function EXEC's run of the command uses. */
static void fin_reply(struct cmd *c, rmw_reply_fn reply)
{
    struct sub *s = &c->subs[0];
    if (s->rc)
        reply_rc(c, s->rc);
    else
        reply(c, 0, s->found, s->val, s->vlen);
    done(c);
}

static void fin_set(struct cmd *c)
{
    fin_reply(c, set_reply);
}

static void fin_getdel(struct cmd *c)
{
    fin_reply(c, getdel_reply);
}

static void fin_incr(struct cmd *c)
{
    struct sub *s = &c->subs[0];
    if (s->rc)
        reply_rc(c, s->rc);
    else if (s->verdict == RMW_NOT_INT)
        reply_error(c, "ERR value is not an integer or out of range");
    else if (s->verdict == RMW_OVERFLOW)
        reply_error(c, "ERR increment or decrement would overflow");
    else
        reply_int(c, s->number);
    done(c);
}

static void fin_append(struct cmd *c)
{
    struct sub *s = &c->subs[0];
    if (s->rc)
        reply_rc(c, s->rc);
    else
        reply_int(c, (long long)s->vlen);
    done(c);
}

/* One update of key argument 1 of the default collection. */
static void update_sub(struct cmd *c,
                       int (*fn)(void *arg, const void *old, size_t oldlen, bool found,
                                 struct shard_update_out *out),
                       void (*fin)(struct cmd *c))
{
    if (!subs_alloc(c, 1))
        return;
    sub_set(c, 0, SUB_UPDATE, redis_coll(c), 1);
    c->subs[0].upd.fn = fn;
    c->subs[0].upd.arg = &c->subs[0];
    c->finish = fin;
    net_submit(c);
}

/* MSETNX: all keys set, or none if any exists; one transaction over all of them. */
static void slow_msetnx(struct cmd *c)
{
    cs_db *db = c->conn->net->srv->db;
    int rc = CS_ECONFLICT;
    bool any = false;
    for (unsigned attempt = 0; attempt <= CMD_TXN_RETRIES && rc == CS_ECONFLICT; attempt++) {
        if (attempt == CMD_TXN_EXCL_AFTER)
            slow_exclusive(c);
        cs_txn *t;
        rc = cs_txn_begin(db, 0, &t);
        if (rc)
            break;
        any = false;
        for (size_t i = 1; i + 1 < c->argc && !rc && !any; i += 2) {
            void *v = NULL;
            size_t vl;
            rc = cs_txn_get(t, redis_coll(c), c->argv[i], c->argl[i], &v, &vl);
            cs_free(v);
            if (rc == 0)
                any = true;
            else if (rc == CS_ENOTFOUND)
                rc = 0;
        }
        for (size_t i = 1; i + 1 < c->argc && !rc && !any; i += 2)
            rc = cs_txn_put(t, redis_coll(c), c->argv[i], c->argl[i], c->argv[i + 1],
                            c->argl[i + 1]);
        if (rc || any) {
            cs_txn_abort(t);
            break;
        }
        rc = cs_txn_commit(t);
    }
    if (rc)
        reply_rc(c, rc);
    else
        reply_int(c, any ? 0 : 1);
}

/* ---- whole-collection commands (slow lane) ---- */

/* A SCAN position: the table entry of cursor, or a free/least recently used one for a new
 * cursor. Slow lane only. */
static struct scan_pos *scan_find(struct server *s, uint64_t cursor)
{
    for (unsigned i = 0; i < SCAN_TABLE_SIZE; i++)
        if (s->scans[i].cursor == cursor)
            return &s->scans[i];
    return NULL;
}

static struct scan_pos *scan_new(struct server *s)
{
    struct scan_pos *victim = &s->scans[0];
    for (unsigned i = 0; i < SCAN_TABLE_SIZE; i++) {
        if (s->scans[i].cursor == 0) {
            victim = &s->scans[i];
            break;
        }
        if (s->scans[i].used < victim->used)
            victim = &s->scans[i];
    }
    free(victim->coll);
    free(victim->key);
    memset(victim, 0, sizeof(*victim));
    return victim;
}

static uint64_t scan_cursor_number(struct server *s)
{
    for (;;) {
        uint64_t x = ++s->scan_clock * 0x9e3779b97f4a7c15ull;
        x ^= x >> 31;
        x &= (1ull << 62) - 1; /* positive in a signed 64-bit integer too */
        if (x && !scan_find(s, x))
            return x;
    }
}

/* Walk coll from after the cursor's key (or from lo), returning up to count records that match
 * pattern (NULL: all) and stop before hi (NULL: no bound). Reply: [next cursor, [keys...]] for
 * SCAN; with values [next cursor, [k, v, ...]] for CS.SCAN. */
static void scan_common(struct cmd *c, const char *coll, uint64_t cursor, const char *pattern,
                        size_t count, const char *lo, size_t lolen, const char *hi, size_t hilen,
                        bool values)
{
    struct server *s = c->conn->net->srv;
    struct scan_pos *pos = NULL;
    if (cursor) {
        pos = scan_find(s, cursor);
        if (!pos || strcmp(pos->coll, coll) != 0) {
            reply_error(c, "ERR invalid cursor");
            return;
        }
    }
    cs_cursor *cur;
    int rc = cs_cursor_open(s->db, coll, &cur);
    if (rc) {
        reply_rc(c, rc);
        return;
    }
    if (pos) {
        rc = cs_cursor_seek(cur, pos->key, pos->klen);
        if (rc == 0) {
            const void *k;
            size_t kl;
            if (cs_cursor_key(cur, &k, &kl) == 0 && kl == pos->klen && memcmp(k, pos->key, kl) == 0)
                rc = cs_cursor_next(cur);
        }
    } else if (lo) {
        rc = cs_cursor_seek(cur, lo, lolen);
    } else {
        rc = cs_cursor_first(cur);
    }
    struct resp_out body;
    resp_out_init(&body, s->cfg.output_bytes_max);
    size_t n = 0, seen = 0;
    const void *k = NULL, *v = NULL;
    size_t kl = 0, vl = 0;
    const void *last = NULL;
    size_t lastlen = 0;
    bool overflow = false;
    while (rc == 0 && seen < count) {
        if (cs_cursor_key(cur, &k, &kl) != 0 || cs_cursor_value(cur, &v, &vl) != 0)
            break;
        if (hi) {
            size_t m = kl < hilen ? kl : hilen;
            int cmp = memcmp(k, hi, m);
            if (cmp > 0 || (cmp == 0 && kl >= hilen)) {
                rc = CS_ENOTFOUND; /* past TO: the end */
                break;
            }
        }
        seen++;
        last = k;
        lastlen = kl;
        bool match = true;
        if (pattern) {
            char z[CS_KEY_MAX + 1]; /* keys are at most CS_KEY_MAX bytes: no allocation per key */
            memcpy(z, k, kl);
            z[kl] = '\0';
            match = memchr(k, '\0', kl) == NULL && fnmatch(pattern, z, 0) == 0;
        }
        if (match) {
            n++;
            overflow |= resp_out_bulk(&body, k, kl) != 0;
            if (values)
                overflow |= resp_out_bulk(&body, v, vl) != 0;
        }
        rc = cs_cursor_next(cur);
    }
    if (rc != 0 && rc != CS_ENOTFOUND) {
        reply_rc(c, rc);
    } else if (overflow) {
        reply_error(c, "ERR reply too large: use a smaller COUNT or LIMIT");
    } else {
        uint64_t next = 0;
        if (rc == 0 && last) { /* more records follow: remember where this call stopped */
            struct scan_pos *p = pos ? pos : scan_new(s);
            void *key = malloc(lastlen ? lastlen : 1);
            char *cn = pos ? NULL : strdup(coll);
            if (!key || (!pos && !cn)) {
                free(key);
                free(cn);
                cs_cursor_close(cur);
                resp_out_free(&body);
                reply_rc(c, -ENOMEM);
                return;
            }
            memcpy(key, last, lastlen);
            free(p->key);
            p->key = key;
            p->klen = lastlen;
            if (!pos) {
                p->coll = cn;
                p->cursor = scan_cursor_number(s);
            }
            p->used = ++s->scan_clock;
            next = p->cursor;
        } else if (pos) { /* the end: the cursor is done */
            free(pos->coll);
            free(pos->key);
            memset(pos, 0, sizeof(*pos));
        }
        char num[24];
        snprintf(num, sizeof(num), "%" PRIu64, next);
        reply_array(c, 2);
        reply_str(c, num);
        reply_array(c, values ? 2 * n : n);
        size_t blen;
        const char *b = resp_out_pending(&body, &blen);
        if (resp_out_append(&c->reply, b, blen) != 0)
            out_failed(c);
    }
    resp_out_free(&body);
    cs_cursor_close(cur);
}

static bool parse_cursor(const struct cmd *c, size_t i, uint64_t *out)
{
    long long v;
    if (!parse_ll(c->argv[i], c->argl[i], &v) || v < 0)
        return false;
    *out = (uint64_t)v;
    return true;
}

static void slow_scan(struct cmd *c)
{
    uint64_t cursor;
    const char *pattern = NULL;
    long long count = 10;
    if (!parse_cursor(c, 1, &cursor)) {
        reply_error(c, "ERR invalid cursor");
        return;
    }
    for (size_t i = 2; i < c->argc; i += 2) {
        if (i + 1 >= c->argc) {
            reply_error(c, "ERR syntax error");
            return;
        }
        if (arg_is(c, i, "MATCH")) {
            pattern = c->argv[i + 1];
        } else if (arg_is(c, i, "COUNT")) {
            if (!parse_ll(c->argv[i + 1], c->argl[i + 1], &count) || count < 1) {
                reply_error(c, "ERR value is not an integer or out of range");
                return;
            }
        } else if (arg_is(c, i, "TYPE")) {
            if (!arg_is(c, i + 1, "string")) {
                reply_array(c, 2);
                reply_str(c, "0");
                reply_array(c, 0);
                return;
            }
        } else {
            reply_error(c, "ERR syntax error");
            return;
        }
    }
    if (pattern && strcmp(pattern, "*") == 0)
        pattern = NULL;
    if (count > (long long)SCAN_COUNT_MAX)
        count = SCAN_COUNT_MAX;
    scan_common(c, redis_coll(c), cursor, pattern, (size_t)count, NULL, 0, NULL, 0, false);
}

/* CS.SCAN coll [FROM k] [TO k] [LIMIT n] [CURSOR c]: records in key order, FROM inclusive, TO
 * exclusive; the reply is [next cursor, [key, value, ...]] (next cursor 0: the end). */
static void slow_cs_scan(struct cmd *c)
{
    const char *lo = NULL, *hi = NULL;
    size_t lolen = 0, hilen = 0;
    long long limit = 100;
    uint64_t cursor = 0;
    for (size_t i = 2; i < c->argc; i += 2) {
        if (i + 1 >= c->argc) {
            reply_error(c, "ERR syntax error");
            return;
        }
        if (arg_is(c, i, "FROM")) {
            lo = c->argv[i + 1];
            lolen = c->argl[i + 1];
        } else if (arg_is(c, i, "TO")) {
            hi = c->argv[i + 1];
            hilen = c->argl[i + 1];
        } else if (arg_is(c, i, "LIMIT")) {
            if (!parse_ll(c->argv[i + 1], c->argl[i + 1], &limit) || limit < 1) {
                reply_error(c, "ERR value is not an integer or out of range");
                return;
            }
        } else if (arg_is(c, i, "CURSOR")) {
            if (!parse_cursor(c, i + 1, &cursor)) {
                reply_error(c, "ERR invalid cursor");
                return;
            }
        } else {
            reply_error(c, "ERR syntax error");
            return;
        }
    }
    if (limit > (long long)SCAN_COUNT_MAX)
        limit = SCAN_COUNT_MAX;
    scan_common(c, c->argv[1], cursor, NULL, (size_t)limit, lo, lolen, hi, hilen, true);
}

static void slow_dbsize(struct cmd *c)
{
    cs_cursor *cur;
    int rc = cs_cursor_open(c->conn->net->srv->db, redis_coll(c), &cur);
    if (rc) {
        reply_rc(c, rc);
        return;
    }
    long long n = 0;
    for (rc = cs_cursor_first(cur); rc == 0; rc = cs_cursor_next(cur))
        n++;
    cs_cursor_close(cur);
    if (rc != CS_ENOTFOUND)
        reply_rc(c, rc);
    else
        reply_int(c, n);
}

static void slow_flushall(struct cmd *c)
{
    struct server *s = c->conn->net->srv;
    int rc = cs_collection_drop(s->db, redis_coll(c));
    if (rc == 0 || rc == CS_ENOTFOUND)
        rc = cs_collection_create(s->db, redis_coll(c));
    if (rc && rc != CS_EEXIST)
        reply_rc(c, rc);
    else
        reply_simple(c, "OK");
}

static void slow_collections(struct cmd *c)
{
    char **names;
    size_t count;
    int rc = cs_collection_list(c->conn->net->srv->db, &names, &count);
    if (rc) {
        reply_rc(c, rc);
        return;
    }
    reply_array(c, count);
    for (size_t i = 0; i < count; i++)
        reply_str(c, names[i]);
    cs_free(names);
}

/* INFO's text (and CS.STAT's): Redis's "# Section" blocks of "name:value" lines. */
static void info_text(struct cmd *c, const char *section)
{
    struct server *s = c->conn->net->srv;
    size_t cap = 4096 + (size_t)s->nshards * 2048, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        reply_rc(c, -ENOMEM);
        return;
    }
#define ADD(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + len, cap - len, __VA_ARGS__);                                      \
        if (w_ > 0 && (size_t)w_ < cap - len)                                                      \
            len += (size_t)w_;                                                                     \
    } while (0)
    bool all = section == NULL || strcasecmp(section, "all") == 0 ||
               strcasecmp(section, "everything") == 0 || strcasecmp(section, "default") == 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (all || strcasecmp(section, "server") == 0) {
        ADD("# Server\r\nredis_version:7.0.0\r\ncstore_version:%s\r\nredis_mode:standalone\r\n"
            "process_id:%d\r\ntcp_port:%u\r\nuptime_in_seconds:%" PRIu64 "\r\nshards:%u\r\n"
            "resp_collection:%s\r\n\r\n",
            CS_VERSION_STRING, (int)getpid(), s->port, (now - s->start_ns) / 1000000000u,
            s->nshards, s->collection);
    }
    if (all || strcasecmp(section, "clients") == 0)
        ADD("# Clients\r\nconnected_clients:%u\r\nmaxclients:%u\r\n\r\n", atomic_load(&s->clients),
            s->cfg.maxclients);
    struct cs_shard_stats tot;
    memset(&tot, 0, sizeof(tot));
    struct cs_shard_stats *per = calloc(s->nshards, sizeof(*per));
    if (!per) {
        free(buf);
        reply_rc(c, -ENOMEM);
        return;
    }
    for (unsigned i = 0; i < s->nshards; i++) {
        if (cs_stats(s->db, i, &per[i]) != 0)
            continue;
        tot.records += per[i].records;
        tot.tree_bytes += per[i].tree_bytes;
        tot.puts += per[i].puts;
        tot.dels += per[i].dels;
        tot.wal_bytes += per[i].wal_bytes;
        tot.wal_frames += per[i].wal_frames;
        tot.wal_syncs += per[i].wal_syncs;
        tot.checkpoints += per[i].checkpoints;
        tot.txn_commits += per[i].txn_commits;
        tot.txn_conflicts += per[i].txn_conflicts;
        if (per[i].io_error && !tot.io_error)
            tot.io_error = per[i].io_error;
    }
    if (all || strcasecmp(section, "memory") == 0)
        ADD("# Memory\r\nused_memory:%" PRIu64 "\r\n\r\n", tot.tree_bytes);
    if (all || strcasecmp(section, "persistence") == 0)
        ADD("# Persistence\r\nloading:0\r\naof_enabled:1\r\nwal_bytes:%" PRIu64
            "\r\nwal_frames:%" PRIu64 "\r\nwal_syncs:%" PRIu64 "\r\ncheckpoints:%" PRIu64
            "\r\nio_error:%s\r\n\r\n",
            tot.wal_bytes, tot.wal_frames, tot.wal_syncs, tot.checkpoints,
            tot.io_error ? cs_strerror(tot.io_error) : "none");
    if (all || strcasecmp(section, "stats") == 0)
        ADD("# Stats\r\ntotal_connections_received:%" PRIu64 "\r\ntotal_commands_processed:%" PRIu64
            "\r\nrejected_connections:%" PRIu64 "\r\nrecords:%" PRIu64 "\r\nputs:%" PRIu64
            "\r\ndels:%" PRIu64 "\r\ntxn_commits:%" PRIu64 "\r\ntxn_conflicts:%" PRIu64
            "\r\nexclusive_runs:%" PRIu64 "\r\n\r\n",
            atomic_load(&s->connections), atomic_load(&s->commands), atomic_load(&s->rejected),
            tot.records, tot.puts, tot.dels, tot.txn_commits, tot.txn_conflicts,
            atomic_load(&s->excl_runs));
    if (all || strcasecmp(section, "shards") == 0) {
        ADD("# Shards\r\n");
        for (unsigned i = 0; i < s->nshards; i++)
            ADD("shard%u:cpu=%d,records=%" PRIu64 ",tree_bytes=%" PRIu64 ",puts=%" PRIu64
                ",gets=%" PRIu64 ",dels=%" PRIu64 ",wal_frames=%" PRIu64 ",wal_syncs=%" PRIu64
                ",wal_durable_lsn=%" PRIu64 ",checkpoints=%" PRIu64 "\r\n",
                i, per[i].cpu, per[i].records, per[i].tree_bytes, per[i].puts, per[i].gets,
                per[i].dels, per[i].wal_frames, per[i].wal_syncs, per[i].wal_durable_lsn,
                per[i].checkpoints);
        ADD("\r\n");
    }
    if (all || strcasecmp(section, "keyspace") == 0)
        ADD("# Keyspace\r\n");
#undef ADD
    free(per);
    reply_bulk(c, buf, len);
    free(buf);
}

static void slow_info(struct cmd *c)
{
    info_text(c, c->argc > 1 ? c->argv[1] : NULL);
}

static void slow_cs_stat(struct cmd *c)
{
    info_text(c, "shards");
}

/* ---- the commands ---- */

static void to_slow(struct cmd *c, void (*fn)(struct cmd *c))
{
    c->slow = fn;
    slow_submit(c);
}

static void ping_reply(struct cmd *c)
{
    if (c->argc > 2)
        reply_error(c, "ERR wrong number of arguments for 'ping' command");
    else if (c->argc == 2)
        reply_bulk(c, c->argv[1], c->argl[1]);
    else
        reply_simple(c, "PONG");
}

static void exec_ping(struct cmd *c)
{
    ping_reply(c);
    done(c);
}

static void exec_echo(struct cmd *c)
{
    reply_bulk(c, c->argv[1], c->argl[1]);
    done(c);
}

static void exec_quit(struct cmd *c)
{
    reply_simple(c, "OK");
    c->close_after = true;
    done(c);
}

static void select_reply(struct cmd *c)
{
    long long db;
    if (!parse_ll(c->argv[1], c->argl[1], &db))
        reply_error(c, "ERR value is not an integer or out of range");
    else if (db != 0)
        reply_error(c, "ERR DB index is out of range");
    else
        reply_simple(c, "OK");
}

static void exec_select(struct cmd *c)
{
    select_reply(c);
    done(c);
}

/* Constant-time comparison: the time does not depend on where the first difference is (the
 * length of the configured password is not hidden). */
static bool password_ok(const struct server *s, const char *p, size_t len)
{
    unsigned char diff = (unsigned char)(len != s->password_len);
    for (size_t i = 0; i < s->password_len; i++)
        diff |= (unsigned char)(s->password[i] ^ (i < len ? p[i] : 0));
    return diff == 0;
}

/* AUTH [user] password, also HELLO's AUTH: true when accepted (or replied with an error). */
static bool auth_check(struct cmd *c, const char *user, size_t ulen, const char *pass, size_t plen)
{
    struct server *s = c->conn->net->srv;
    if (!s->password) {
        reply_error(c, "ERR AUTH <password> called without any password configured for the "
                       "default user. Are you sure your configuration is correct?");
        return false;
    }
    bool user_ok = user == NULL || (ulen == 7 && memcmp(user, "default", 7) == 0);
    if (!password_ok(s, pass, plen) || !user_ok) {
        reply_error(c, "WRONGPASS invalid username-password pair or user is disabled.");
        return false;
    }
    c->conn->authed = true;
    return true;
}

static void exec_auth(struct cmd *c)
{
    if (c->argc > 3) {
        reply_error(c, "ERR syntax error");
    } else if (c->argc == 3) {
        if (auth_check(c, c->argv[1], c->argl[1], c->argv[2], c->argl[2]))
            reply_simple(c, "OK");
    } else if (auth_check(c, NULL, 0, c->argv[1], c->argl[1])) {
        reply_simple(c, "OK");
    }
    done(c);
}

static void exec_hello(struct cmd *c)
{
    size_t i = 1;
    if (c->argc > 1) {
        long long ver;
        if (!parse_ll(c->argv[1], c->argl[1], &ver)) {
            reply_error(c, "ERR Protocol version is not an integer or out of range");
            done(c);
            return;
        }
        if (ver != 2) {
            reply_error(c, "NOPROTO unsupported protocol version");
            done(c);
            return;
        }
        i = 2;
    }
    for (; i < c->argc; i++) {
        if (arg_is(c, i, "AUTH") && i + 2 < c->argc) {
            if (!auth_check(c, c->argv[i + 1], c->argl[i + 1], c->argv[i + 2], c->argl[i + 2])) {
                done(c);
                return;
            }
            i += 2;
        } else if (arg_is(c, i, "SETNAME") && i + 1 < c->argc) {
            if (c->argl[i + 1] > NET_NAME_BYTES_MAX) {
                reply_error(c, "ERR client name too long");
                done(c);
                return;
            }
            memcpy(c->conn->name, c->argv[i + 1], c->argl[i + 1] + 1);
            i++;
        } else {
            reply_error(c, "ERR Syntax error in HELLO option '%s'", c->argv[i]);
            done(c);
            return;
        }
    }
    if (!c->conn->authed) {
        reply_error(c, "NOAUTH HELLO must be called with the client already authenticated, "
                       "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                       "authenticate the client and select the RESP protocol version at the "
                       "same time");
        done(c);
        return;
    }
    reply_array(c, 14);
    reply_str(c, "server");
    reply_str(c, "cstored");
    reply_str(c, "version");
    reply_str(c, CS_VERSION_STRING);
    reply_str(c, "proto");
    reply_int(c, 2);
    reply_str(c, "id");
    reply_int(c, (long long)c->conn->id);
    reply_str(c, "mode");
    reply_str(c, "standalone");
    reply_str(c, "role");
    reply_str(c, "master");
    reply_str(c, "modules");
    reply_array(c, 0);
    done(c);
}

static void exec_client(struct cmd *c)
{
    if (arg_is(c, 1, "SETNAME") && c->argc == 3) {
        bool ok = c->argl[2] <= NET_NAME_BYTES_MAX;
        for (size_t i = 0; ok && i < c->argl[2]; i++)
            ok = c->argv[2][i] > ' ' && c->argv[2][i] <= '~';
        if (!ok) {
            reply_error(c, "ERR Client names cannot contain spaces, newlines or special "
                           "characters.");
        } else {
            memcpy(c->conn->name, c->argv[2], c->argl[2] + 1);
            reply_simple(c, "OK");
        }
    } else if (arg_is(c, 1, "GETNAME") && c->argc == 2) {
        if (c->conn->name[0])
            reply_str(c, c->conn->name);
        else
            reply_null(c);
    } else if (arg_is(c, 1, "ID") && c->argc == 2) {
        reply_int(c, (long long)c->conn->id);
    } else {
        reply_error(c, "ERR unknown subcommand or wrong number of arguments for 'CLIENT|%s'",
                    c->argc > 1 ? c->argv[1] : "");
    }
    done(c);
}

static void exec_get(struct cmd *c)
{
    one_sub(c, SUB_GET, redis_coll(c), 1, fin_get);
}

static void exec_strlen(struct cmd *c)
{
    one_sub(c, SUB_GET, redis_coll(c), 1, fin_strlen);
}

static void exec_ttl(struct cmd *c)
{
    update_sub(c, upd_ttl, fin_ttl); /* the expiry is read on the key's shard */
}

static void exec_persist(struct cmd *c)
{
    update_sub(c, upd_persist, fin_number);
}

/* EXPIRE key amount [NX|XX|GT|LT] and its family. */
static bool check_expire(struct cmd *c)
{
    long long v;
    uint64_t exp;
    if (!parse_ll(c->argv[2], c->argl[2], &v)) {
        reply_error(c, "ERR value is not an integer or out of range");
        return false;
    }
    if (!exp_abs(expire_kind(c), v, cs_clock_ms(), &exp)) {
        reply_error(c, "ERR invalid expire time in '%s' command", c->def->name);
        return false;
    }
    bool nx = false, xx = false, gt = false, lt = false;
    for (size_t i = 3; i < c->argc; i++) {
        if (arg_is(c, i, "NX"))
            nx = true;
        else if (arg_is(c, i, "XX"))
            xx = true;
        else if (arg_is(c, i, "GT"))
            gt = true;
        else if (arg_is(c, i, "LT"))
            lt = true;
        else {
            reply_error(c, "ERR Unsupported option %s", c->argv[i]);
            return false;
        }
    }
    if (nx && (xx || gt || lt)) {
        reply_error(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return false;
    }
    if (gt && lt) {
        reply_error(c, "ERR GT and LT options at the same time are not compatible");
        return false;
    }
    return true;
}

static void exec_expire(struct cmd *c)
{
    if (!check_expire(c)) {
        done(c);
        return;
    }
    update_sub(c, upd_expire, fin_number);
}

static bool check_setex(struct cmd *c)
{
    return check_exp_amount(c, 2, arg_is(c, 0, "SETEX") ? EXP_EX : EXP_PX, c->def->name);
}

static void exec_setex(struct cmd *c)
{
    if (!check_setex(c)) {
        done(c);
        return;
    }
    update_sub(c, upd_setex, fin_ok);
}

/* GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]. */
static bool check_getex(struct cmd *c)
{
    if (c->argc == 2 || (c->argc == 3 && arg_is(c, 2, "PERSIST")))
        return true;
    enum exp_kind k = c->argc == 4 ? exp_word(c, 2) : EXP_NONE;
    if (k == EXP_NONE) {
        reply_error(c, "ERR syntax error");
        return false;
    }
    return check_exp_amount(c, 3, k, "getex");
}

static void exec_getex(struct cmd *c)
{
    if (!check_getex(c)) {
        done(c);
        return;
    }
    update_sub(c, upd_getex, fin_getex);
}

/* SET's options: NX or XX, GET, and one of EX PX EXAT PXAT KEEPTTL. */
static bool check_set(struct cmd *c)
{
    unsigned f = 0;
    bool exp = false;
    for (size_t i = 3; i < c->argc; i++) {
        enum exp_kind k = exp_word(c, i);
        if (arg_is(c, i, "NX") && !(f & SET_XX)) {
            f |= SET_NX;
        } else if (arg_is(c, i, "XX") && !(f & SET_NX)) {
            f |= SET_XX;
        } else if (arg_is(c, i, "GET")) {
            f |= SET_GET;
        } else if (arg_is(c, i, "KEEPTTL") && !exp) {
            exp = true;
        } else if (k != EXP_NONE && !exp && i + 1 < c->argc) {
            exp = true;
            if (!check_exp_amount(c, ++i, k, "set"))
                return false;
        } else {
            reply_error(c, "ERR syntax error");
            return false;
        }
    }
    return true;
}

static void exec_set(struct cmd *c)
{
    if (!check_set(c)) {
        done(c);
        return;
    }
    size_t ai;
    if (set_flags(c) || set_exp_kind(c, &ai) != EXP_NONE) {
        update_sub(c, upd_set, fin_set); /* reads the key, or writes an expiry */
        return;
    }
    one_sub(c, SUB_PUT, redis_coll(c), 1, fin_ok); /* a plain put: clears any expiry */
}

static void exec_setnx(struct cmd *c)
{
    update_sub(c, upd_set, fin_set);
}

static void exec_getdel(struct cmd *c)
{
    update_sub(c, upd_getdel, fin_getdel);
}

static bool check_incr(struct cmd *c)
{
    long long step;
    if (incr_step(c, &step))
        return true;
    reply_error(c, "ERR value is not an integer or out of range");
    return false;
}

static void exec_incr(struct cmd *c)
{
    if (!check_incr(c)) {
        done(c);
        return;
    }
    update_sub(c, upd_incr, fin_incr);
}

static void exec_append(struct cmd *c)
{
    update_sub(c, upd_append, fin_append);
}

static void exec_del(struct cmd *c)
{
    many_subs(c, SUB_DEL, redis_coll(c), 1, 1, fin_count);
}

static void exec_exists(struct cmd *c)
{
    many_subs(c, SUB_GET, redis_coll(c), 1, 1, fin_count);
}

static void exec_mget(struct cmd *c)
{
    many_subs(c, SUB_GET, redis_coll(c), 1, 1, fin_mget);
}

static void exec_msetnx(struct cmd *c)
{
    if (!check_pairs(c)) {
        done(c);
        return;
    }
    to_slow(c, slow_msetnx);
}

static void exec_scan(struct cmd *c)
{
    to_slow(c, slow_scan);
}

static void exec_dbsize(struct cmd *c)
{
    to_slow(c, slow_dbsize);
}

static void exec_flushall(struct cmd *c)
{
    if (c->argc > 2 || (c->argc == 2 && !arg_is(c, 1, "SYNC") && !arg_is(c, 1, "ASYNC"))) {
        reply_error(c, "ERR syntax error");
        done(c);
        return;
    }
    to_slow(c, slow_flushall);
}

static void exec_info(struct cmd *c)
{
    to_slow(c, slow_info);
}

static void exec_cs_put(struct cmd *c)
{
    one_sub(c, SUB_PUT, c->argv[1], 2, fin_ok);
}

static void exec_cs_get(struct cmd *c)
{
    one_sub(c, SUB_GET, c->argv[1], 2, fin_get);
}

static void exec_cs_del(struct cmd *c)
{
    one_sub(c, SUB_DEL, c->argv[1], 2, fin_count);
}

static void exec_cs_scan(struct cmd *c)
{
    to_slow(c, slow_cs_scan);
}

static void exec_cs_collections(struct cmd *c)
{
    to_slow(c, slow_collections);
}

static void exec_cs_stat(struct cmd *c)
{
    to_slow(c, slow_cs_stat);
}

/* ---- MULTI, EXEC, DISCARD, WATCH, UNWATCH ---- */

void multi_free(struct multi *m)
{
    if (!m)
        return;
    struct cmd *q = m->head;
    for (size_t i = 0; i < m->count && q; i++) {
        struct cmd *next = q->next;
        resp_out_free(&q->reply);
        free(q->mem);
        free(q);
        q = next;
    }
    for (size_t i = 0; i < m->nwatches; i++)
        free(m->watches[i].key);
    free(m->watches);
    free(m);
}

/* The connection's transaction state, made on first use; NULL on out of memory. */
static struct multi *conn_multi(struct conn *conn)
{
    if (!conn->multi)
        conn->multi = calloc(1, sizeof(*conn->multi));
    return conn->multi;
}

/* The MULTI block and the watches end (EXEC, DISCARD, UNWATCH). */
static void multi_reset(struct conn *conn)
{
    multi_free(conn->multi);
    conn->multi = NULL;
}

static bool in_multi(const struct conn *conn)
{
    return conn->multi && conn->multi->on;
}

static const char *key_coll(const struct cmd *c)
{
    return c->def->flags & CMD_F_COLL ? c->argv[1] : redis_coll(c);
}

/* Argument index of q's last key. */
static size_t last_key(const struct cmd *q)
{
    return q->def->last_key < 0 ? q->argc - 1 : (size_t)q->def->last_key;
}

/* Read key argument ki of q inside t: 0 with *found and, when found, *val (cs_free), or an
 * engine error. */
static int txn_read(struct cmd *q, cs_txn *t, size_t ki, void **val, size_t *vlen, bool *found)
{
    *val = NULL;
    *vlen = 0;
    int rc = cs_txn_get(t, key_coll(q), q->argv[ki], q->argl[ki], val, vlen);
    *found = rc == 0;
    return rc == CS_ENOTFOUND ? 0 : rc;
}

/* GET, CS.GET, STRLEN: read the key, reply as the command does. */
static int txn_get_like(struct cmd *q, cs_txn *t,
                        void (*reply)(struct cmd *q, bool found, const void *v, size_t vl))
{
    void *v;
    size_t vl;
    bool found;
    int rc = txn_read(q, t, (size_t)q->def->first_key, &v, &vl, &found);
    if (rc)
        return rc;
    reply(q, found, v, vl);
    cs_free(v);
    return 0;
}

static void get_reply(struct cmd *q, bool found, const void *v, size_t vl)
{
    found ? reply_bulk(q, v, vl) : reply_null(q);
}

static void strlen_reply(struct cmd *q, bool found, const void *v, size_t vl)
{
    (void)v;
    reply_int(q, found ? (long long)vl : 0);
}

static int txn_get(struct cmd *q, cs_txn *t)
{
    return txn_get_like(q, t, get_reply);
}

static int txn_strlen(struct cmd *q, cs_txn *t)
{
    return txn_get_like(q, t, strlen_reply);
}

/* TTL, PTTL, PERSIST, EXPIRE..., GETEX inside EXEC: the key's value (a read commit validates)
 * and its expiry. */
static int txn_read_exp(struct cmd *q, cs_txn *t, void **v, size_t *vl, bool *found, uint64_t *exp)
{
    int rc = txn_read(q, t, 1, v, vl, found);
    *exp = 0;
    if (!rc && *found) {
        rc = cs_txn_get_expiry(t, key_coll(q), q->argv[1], q->argl[1], exp);
        if (rc == CS_ENOTFOUND) { /* gone since: commit finds the value changed */
            *found = false;
            rc = 0;
        }
    }
    if (rc) {
        cs_free(*v);
        *v = NULL;
    }
    return rc;
}

static int txn_ttl(struct cmd *q, cs_txn *t)
{
    void *v;
    size_t vl;
    bool found;
    uint64_t exp;
    int rc = txn_read_exp(q, t, &v, &vl, &found, &exp);
    if (rc)
        return rc;
    ttl_answer(q, found, exp);
    cs_free(v);
    return 0;
}

/* Write the value v back with expiry exp (PERSIST, EXPIRE, GETEX). */
static int txn_reexpire(struct cmd *q, cs_txn *t, const void *v, size_t vl, uint64_t exp)
{
    return cs_txn_put_ttl(t, key_coll(q), q->argv[1], q->argl[1], v, vl, exp);
}

static int txn_expire(struct cmd *q, cs_txn *t)
{
    void *v;
    size_t vl;
    bool found;
    uint64_t cur, exp = 0;
    int rc = txn_read_exp(q, t, &v, &vl, &found, &cur);
    if (rc)
        return rc;
    int d = found ? expire_decide_at(q, cur, cs_clock_ms(), &exp) : 0;
    if (d == 1)
        rc = txn_reexpire(q, t, v, vl, exp);
    else if (d == 2)
        rc = cs_txn_del(t, key_coll(q), q->argv[1], q->argl[1]);
    cs_free(v);
    if (!rc)
        reply_int(q, d != 0);
    return rc;
}

static int txn_setex(struct cmd *q, cs_txn *t)
{
    long long v = 0;
    uint64_t exp = 1;
    if (parse_ll(q->argv[2], q->argl[2], &v))
        (void)exp_abs(arg_is(q, 0, "SETEX") ? EXP_EX : EXP_PX, v, cs_clock_ms(), &exp);
    int rc = cs_txn_put_ttl(t, key_coll(q), q->argv[1], q->argl[1], q->argv[3], q->argl[3], exp);
    if (!rc)
        reply_simple(q, "OK");
    return rc;
}

static int txn_getex(struct cmd *q, cs_txn *t)
{
    void *v;
    size_t vl;
    bool found;
    uint64_t cur, exp;
    int rc = txn_read_exp(q, t, &v, &vl, &found, &cur);
    if (rc)
        return rc;
    if (found && getex_expiry(q, cs_clock_ms(), &exp))
        rc = txn_reexpire(q, t, v, vl, exp);
    if (!rc)
        found ? reply_bulk(q, v, vl) : reply_null(q);
    cs_free(v);
    return rc;
}

/* SET (plain) and CS.PUT: the value follows the key. */
static int txn_put(struct cmd *q, cs_txn *t)
{
    size_t ki = (size_t)q->def->first_key;
    int rc = cs_txn_put(t, key_coll(q), q->argv[ki], q->argl[ki], q->argv[ki + 1], q->argl[ki + 1]);
    if (rc)
        return rc;
    reply_simple(q, "OK");
    return 0;
}

static int txn_rmw(struct cmd *q, cs_txn *t, rmw_fn fn, rmw_reply_fn reply)
{
    void *old = NULL;
    size_t oldlen = 0;
    bool found = false;
    int verdict = 0;
    int rc = rmw_step(q, t, 1, fn, &old, &oldlen, &found, &verdict);
    if (rc == 0)
        reply(q, verdict, found, old, oldlen);
    cs_free(old);
    return rc;
}

static int txn_set(struct cmd *q, cs_txn *t)
{
    size_t ai;
    if (set_flags(q) || set_exp_kind(q, &ai) != EXP_NONE) /* NX XX GET SETNX, expiries */
        return txn_rmw(q, t, set_decide, set_reply);
    return txn_put(q, t); /* clears any expiry */
}

static int txn_getdel(struct cmd *q, cs_txn *t)
{
    return txn_rmw(q, t, getdel_decide, getdel_reply);
}

static int txn_incr(struct cmd *q, cs_txn *t)
{
    return txn_rmw(q, t, incr_decide, incr_reply);
}

static int txn_append(struct cmd *q, cs_txn *t)
{
    return txn_rmw(q, t, append_decide, append_reply);
}

/* DEL and CS.DEL: how many of the keys existed (reads see the earlier deletes: DEL k k is 1). */
static int txn_del(struct cmd *q, cs_txn *t)
{
    long long n = 0;
    for (size_t i = (size_t)q->def->first_key; i <= last_key(q); i++) {
        void *v;
        size_t vl;
        bool found;
        int rc = txn_read(q, t, i, &v, &vl, &found);
        cs_free(v);
        if (rc == 0 && found)
            rc = cs_txn_del(t, key_coll(q), q->argv[i], q->argl[i]);
        if (rc)
            return rc;
        n += found;
    }
    reply_int(q, n);
    return 0;
}

static int txn_exists(struct cmd *q, cs_txn *t)
{
    long long n = 0;
    for (size_t i = 1; i < q->argc; i++) {
        void *v;
        size_t vl;
        bool found;
        int rc = txn_read(q, t, i, &v, &vl, &found);
        cs_free(v);
        if (rc)
            return rc;
        n += found;
    }
    reply_int(q, n);
    return 0;
}

static int txn_mget(struct cmd *q, cs_txn *t)
{
    reply_array(q, q->argc - 1);
    for (size_t i = 1; i < q->argc; i++) {
        void *v;
        size_t vl;
        bool found;
        int rc = txn_read(q, t, i, &v, &vl, &found);
        if (rc)
            return rc;
        get_reply(q, found, v, vl);
        cs_free(v);
    }
    return 0;
}

static int txn_mset(struct cmd *q, cs_txn *t)
{
    for (size_t i = 1; i + 1 < q->argc; i += 2) {
        int rc =
            cs_txn_put(t, redis_coll(q), q->argv[i], q->argl[i], q->argv[i + 1], q->argl[i + 1]);
        if (rc)
            return rc;
    }
    reply_simple(q, "OK");
    return 0;
}

static int txn_msetnx(struct cmd *q, cs_txn *t)
{
    bool any = false;
    for (size_t i = 1; i + 1 < q->argc && !any; i += 2) {
        void *v;
        size_t vl;
        int rc = txn_read(q, t, i, &v, &vl, &any);
        cs_free(v);
        if (rc)
            return rc;
    }
    for (size_t i = 1; i + 1 < q->argc && !any; i += 2) {
        int rc =
            cs_txn_put(t, redis_coll(q), q->argv[i], q->argl[i], q->argv[i + 1], q->argl[i + 1]);
        if (rc)
            return rc;
    }
    reply_int(q, any ? 0 : 1);
    return 0;
}

static int txn_ping(struct cmd *q, cs_txn *t)
{
    (void)t;
    ping_reply(q);
    return 0;
}

static int txn_echo(struct cmd *q, cs_txn *t)
{
    (void)t;
    reply_bulk(q, q->argv[1], q->argl[1]);
    return 0;
}

static int txn_select(struct cmd *q, cs_txn *t)
{
    (void)t;
    select_reply(q);
    return 0;
}

static int txn_persist(struct cmd *q, cs_txn *t)
{
    void *v;
    size_t vl;
    bool found;
    uint64_t cur;
    int rc = txn_read_exp(q, t, &v, &vl, &found, &cur);
    if (rc)
        return rc;
    if (found && cur)
        rc = txn_reexpire(q, t, v, vl, 0);
    if (!rc)
        reply_int(q, found && cur);
    cs_free(v);
    return rc;
}

/* UNWATCH inside MULTI: EXEC drops the watches anyway. */
static int txn_ok(struct cmd *q, cs_txn *t)
{
    (void)t;
    reply_simple(q, "OK");
    return 0;
}

/* Keys over CS_KEY_MAX (or empty) and arguments over CS_VALUE_MAX: what the engine refuses,
 * found at queue time so that EXEC never stops half-way through a command's writes. */
static bool check_sizes(struct cmd *c)
{
    const struct cmd_def *d = c->def;
    for (size_t i = 1; d->first_key > 0 && i < c->argc; i++) {
        bool key = i >= (size_t)d->first_key && i <= last_key(c) &&
                   (i - (size_t)d->first_key) % (size_t)d->key_step == 0;
        if (key && (c->argl[i] == 0 || c->argl[i] > CS_KEY_MAX)) {
            reply_rc(c, CS_EKEYSIZE);
            return false;
        }
        if (c->argl[i] > CS_VALUE_MAX) {
            reply_rc(c, CS_EVALSIZE);
            return false;
        }
    }
    return true;
}

/* A command inside MULTI: checked as a run would check it, then queued (its arguments move to
 * a queued command of the block) and answered +QUEUED. A refusal answers the error and makes
 * EXEC answer EXECABORT. Once refused, later commands are answered +QUEUED and not kept. */
static void multi_queue(struct cmd *c, struct multi *m)
{
    const struct cmd_def *d = c->def;
    size_t bytes = 0;
    for (size_t i = 0; i < c->argc; i++)
        bytes += c->argl[i];
    if ((d->check && !d->check(c)) || (d->txn && !check_sizes(c))) {
        m->dirty = true;
    } else if (!d->txn) {
        reply_error(c,
                    "ERR Command not allowed inside a transaction: '%s' runs on its own "
                    "(whole-collection and connection commands)",
                    d->name);
        m->dirty = true;
    } else if (m->count >= CMD_MULTI_CMDS_MAX || bytes > CMD_MULTI_BYTES_MAX - m->bytes) {
        reply_error(c, "ERR transaction too large: at most %u commands and %u bytes of arguments",
                    (unsigned)CMD_MULTI_CMDS_MAX, (unsigned)CMD_MULTI_BYTES_MAX);
        m->dirty = true;
    } else if (m->dirty) {
        reply_simple(c, "QUEUED"); /* EXEC will refuse it all: nothing kept */
    } else {
        struct cmd *q = calloc(1, sizeof(*q));
        if (!q) {
            reply_rc(c, -ENOMEM);
            m->dirty = true;
            done(c);
            return;
        }
        q->conn = c->conn;
        q->def = d;
        q->argc = c->argc;
        q->argv = c->argv;
        q->argl = c->argl;
        q->mem = c->mem;
        c->mem = NULL; /* the arguments are the queued command's now */
        c->mem_cap = 0;
        c->argv = NULL;
        c->argl = NULL;
        c->argc = 0;
        resp_out_init(&q->reply, c->conn->net->srv->cfg.output_bytes_max);
        if (m->tail)
            m->tail->next = q;
        else
            m->head = q;
        m->tail = q;
        m->count++;
        m->bytes += bytes;
        reply_simple(c, "QUEUED");
    }
    done(c);
}

static void exec_multi(struct cmd *c)
{
    struct multi *m = c->conn->multi;
    if (m && m->on) {
        reply_error(c, "ERR MULTI calls can not be nested");
    } else if (!(m = conn_multi(c->conn))) {
        reply_rc(c, -ENOMEM);
    } else {
        m->on = true;
        reply_simple(c, "OK");
    }
    done(c);
}

static void exec_discard(struct cmd *c)
{
    if (!in_multi(c->conn)) {
        reply_error(c, "ERR DISCARD without MULTI");
    } else {
        multi_reset(c->conn);
        reply_simple(c, "OK");
    }
    done(c);
}

static void exec_unwatch(struct cmd *c)
{
    multi_reset(c->conn); /* not inside MULTI (it is queued there): only watches to drop */
    reply_simple(c, "OK");
    done(c);
}

static void fin_watch(struct cmd *c)
{
    int rc = subs_error(c);
    struct multi *m = rc ? NULL : conn_multi(c->conn);
    if (rc) {
        reply_rc(c, rc);
    } else if (!m) {
        reply_rc(c, -ENOMEM);
    } else if (m->nwatches + c->nsubs > CMD_WATCH_KEYS_MAX) {
        reply_error(c, "ERR too many WATCHed keys (at most %u)", CMD_WATCH_KEYS_MAX);
    } else {
        if (m->watches_cap < m->nwatches + c->nsubs) {
            size_t cap = m->watches_cap ? m->watches_cap * 2 : 8;
            while (cap < m->nwatches + c->nsubs)
                cap *= 2; /* at most log2(CMD_WATCH_KEYS_MAX) times */
            struct watch *w = realloc(m->watches, cap * sizeof(*w));
            if (!w) {
                reply_rc(c, -ENOMEM);
                done(c);
                return;
            }
            m->watches = w;
            m->watches_cap = cap;
        }
        for (size_t i = 0; i < c->nsubs; i++) {
            const struct sub *s = &c->subs[i];
            struct watch *w = &m->watches[m->nwatches];
            w->key = malloc(c->argl[s->arg] + 1);
            if (!w->key) {
                reply_rc(c, -ENOMEM);
                done(c);
                return;
            }
            memcpy(w->key, c->argv[s->arg], c->argl[s->arg]);
            w->klen = c->argl[s->arg];
            w->found = s->rc == 0;
            w->vhash = w->found ? XXH3_64bits(s->val, s->vlen) : 0;
            m->nwatches++;
        }
        reply_simple(c, "OK");
    }
    done(c);
}

/* WATCH k...: reads each key now (through the session) and remembers a hash of its value, or
 * its absence; EXEC reads them again inside its transaction. */
static void exec_watch(struct cmd *c)
{
    if (in_multi(c->conn)) {
        reply_error(c, "ERR WATCH inside MULTI is not allowed");
        done(c);
        return;
    }
    many_subs(c, SUB_GET, redis_coll(c), 1, 1, fin_watch);
}

/* Whether every watched key still holds what WATCH saw, read inside t (so that the commit
 * validates it until then): 0 with *changed, or an engine error. */
static int watches_check(struct cmd *c, cs_txn *t, const struct multi *m, bool *changed)
{
    *changed = false;
    for (size_t i = 0; i < m->nwatches && !*changed; i++) {
        const struct watch *w = &m->watches[i];
        void *v = NULL;
        size_t vl = 0;
        int rc = cs_txn_get(t, redis_coll(c), w->key, w->klen, &v, &vl);
        if (rc && rc != CS_ENOTFOUND)
            return rc;
        bool found = rc == 0;
        *changed = found != w->found || (found && XXH3_64bits(v, vl) != w->vhash);
        cs_free(v);
    }
    return 0;
}

/* One attempt of EXEC inside t: the watches, then every queued command, each replying into its
 * own buffer (emptied first: an attempt that conflicts leaves nothing behind). */
static int exec_attempt(struct cmd *c, cs_txn *t, bool *changed)
{
    struct multi *m = c->multi;
    int rc = watches_check(c, t, m, changed);
    struct cmd *q = m->head;
    for (size_t i = 0; i < m->count && q && rc == 0 && !*changed; i++, q = q->next) {
        resp_out_reset(&q->reply);
        q->close_after = false;
        rc = q->def->txn(q, t);
    }
    return rc;
}

/* EXEC on the slow lane: the queued commands as one transaction (atomic across shards,
 * serializable), retried from scratch on CS_ECONFLICT up to CMD_TXN_RETRIES times when nothing
 * is watched; with watches, a watched key that changed or any conflict is Redis's null array.
 * A command's own refusal (INCR on a non-integer) is its reply and the others go on, as in
 * Redis; any other engine error is -ERR for the whole EXEC, with nothing applied. */
static void slow_exec(struct cmd *c)
{
    struct multi *m = c->multi;
    cs_db *db = c->conn->net->srv->db;
    int rc = CS_ECONFLICT;
    bool changed = false;
    for (unsigned attempt = 0; attempt <= CMD_TXN_RETRIES && rc == CS_ECONFLICT; attempt++) {
        if (attempt == CMD_TXN_EXCL_AFTER)
            slow_exclusive(c);
        cs_txn *t;
        rc = cs_txn_begin(db, 0, &t);
        if (rc)
            break;
        rc = exec_attempt(c, t, &changed);
        if (rc || changed)
            cs_txn_abort(t);
        else
            rc = cs_txn_commit(t);
        if (changed || (rc == CS_ECONFLICT && m->nwatches > 0)) {
            if (resp_out_null_array(&c->reply) != 0)
                out_failed(c);
            return;
        }
    }
    if (rc) {
        reply_rc(c, rc);
        return;
    }
    reply_array(c, m->count);
    struct cmd *q = m->head;
    for (size_t i = 0; i < m->count && q; i++, q = q->next) {
        size_t len;
        const char *r = resp_out_pending(&q->reply, &len);
        if (q->close_after || q->reply.over || resp_out_append(&c->reply, r, len) != 0)
            out_failed(c);
    }
}

static void exec_exec(struct cmd *c)
{
    struct conn *conn = c->conn;
    if (!in_multi(conn)) {
        reply_error(c, "ERR EXEC without MULTI");
        done(c);
        return;
    }
    if (conn->multi->dirty) {
        multi_reset(conn);
        reply_error(c, "EXECABORT Transaction discarded because of previous errors.");
        done(c);
        return;
    }
    c->multi = conn->multi; /* the block and its watches are the command's now */
    conn->multi = NULL;
    if (c->multi->count == 0 && c->multi->nwatches == 0) {
        reply_array(c, 0);
        done(c);
        return;
    }
    to_slow(c, slow_exec);
}

static void exec_command(struct cmd *c);
static void exec_config(struct cmd *c);

#define W CMD_F_WRITE
#define R CMD_F_READONLY
#define N CMD_F_NOAUTH
#define A CMD_F_ALLKEYS
#define C CMD_F_COLL
#define I CMD_F_INBOX
#define Q CMD_F_NOQUEUE
#define B CMD_F_BARRIER
static const struct cmd_def cmds[] = {
    {"ping", -1, 0, 0, 0, 0, exec_ping, NULL, txn_ping},
    {"echo", 2, 0, 0, 0, 0, exec_echo, NULL, txn_echo},
    {"quit", -1, N | Q, 0, 0, 0, exec_quit, NULL, NULL},
    {"hello", -1, N, 0, 0, 0, exec_hello, NULL, NULL},
    {"auth", -2, N, 0, 0, 0, exec_auth, NULL, NULL},
    {"client", -2, 0, 0, 0, 0, exec_client, NULL, NULL},
    {"command", -1, 0, 0, 0, 0, exec_command, NULL, NULL},
    {"config", -2, 0, 0, 0, 0, exec_config, NULL, NULL},
    {"info", -1, 0, 0, 0, 0, exec_info, NULL, NULL},
    {"dbsize", 1, R | A, 0, 0, 0, exec_dbsize, NULL, NULL},
    {"select", 2, 0, 0, 0, 0, exec_select, NULL, txn_select},
    {"get", 2, R, 1, 1, 1, exec_get, NULL, txn_get},
    {"set", -3, W | I, 1, 1, 1, exec_set, check_set, txn_set},
    {"setnx", 3, W | I, 1, 1, 1, exec_setnx, NULL, txn_set},
    {"getdel", 2, W | I, 1, 1, 1, exec_getdel, NULL, txn_getdel},
    {"del", -2, W | I, 1, -1, 1, exec_del, NULL, txn_del},
    {"exists", -2, R, 1, -1, 1, exec_exists, NULL, txn_exists},
    {"mget", -2, R, 1, -1, 1, exec_mget, NULL, txn_mget},
    {"mset", -3, W, 1, -1, 2, exec_mset, check_pairs, txn_mset},
    {"msetnx", -3, W, 1, -1, 2, exec_msetnx, check_pairs, txn_msetnx},
    {"incr", 2, W | I, 1, 1, 1, exec_incr, check_incr, txn_incr},
    {"incrby", 3, W | I, 1, 1, 1, exec_incr, check_incr, txn_incr},
    {"decr", 2, W | I, 1, 1, 1, exec_incr, check_incr, txn_incr},
    {"decrby", 3, W | I, 1, 1, 1, exec_incr, check_incr, txn_incr},
    {"append", 3, W | I, 1, 1, 1, exec_append, NULL, txn_append},
    {"strlen", 2, R, 1, 1, 1, exec_strlen, NULL, txn_strlen},
    {"scan", -2, R | A, 0, 0, 0, exec_scan, NULL, NULL},
    {"ttl", 2, R, 1, 1, 1, exec_ttl, NULL, txn_ttl},
    {"pttl", 2, R, 1, 1, 1, exec_ttl, NULL, txn_ttl},
    {"expire", -3, W | I, 1, 1, 1, exec_expire, check_expire, txn_expire},
    {"pexpire", -3, W | I, 1, 1, 1, exec_expire, check_expire, txn_expire},
    {"expireat", -3, W | I, 1, 1, 1, exec_expire, check_expire, txn_expire},
    {"pexpireat", -3, W | I, 1, 1, 1, exec_expire, check_expire, txn_expire},
    {"persist", 2, W | I, 1, 1, 1, exec_persist, NULL, txn_persist},
    {"setex", 4, W | I, 1, 1, 1, exec_setex, check_setex, txn_setex},
    {"psetex", 4, W | I, 1, 1, 1, exec_setex, check_setex, txn_setex},
    {"getex", -2, W | I, 1, 1, 1, exec_getex, check_getex, txn_getex},
    {"flushall", -1, W | A, 0, 0, 0, exec_flushall, NULL, NULL},
    {"multi", 1, Q, 0, 0, 0, exec_multi, NULL, NULL},
    {"exec", 1, Q | B, 0, 0, 0, exec_exec, NULL, NULL},
    {"discard", 1, Q | B, 0, 0, 0, exec_discard, NULL, NULL},
    {"watch", -2, R | Q, 1, -1, 1, exec_watch, NULL, NULL},
    {"unwatch", 1, B, 0, 0, 0, exec_unwatch, NULL, txn_ok},
    {"cs.put", 4, W | C | I, 2, 2, 1, exec_cs_put, NULL, txn_put},
    {"cs.get", 3, R | C, 2, 2, 1, exec_cs_get, NULL, txn_get},
    {"cs.del", 3, W | C | I, 2, 2, 1, exec_cs_del, NULL, txn_del},
    {"cs.scan", -2, R | A, 0, 0, 0, exec_cs_scan, NULL, NULL},
    {"cs.collections", 1, R, 0, 0, 0, exec_cs_collections, NULL, NULL},
    {"cs.stat", 1, R, 0, 0, 0, exec_cs_stat, NULL, NULL},
};
#undef W
#undef R
#undef N
#undef A
#undef C
#undef I
#undef Q
#undef B
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

size_t cmd_count(void)
{
    return NCMDS;
}

static void command_info(struct cmd *c, const struct cmd_def *d)
{
    reply_array(c, 6);
    reply_str(c, d->name);
    reply_int(c, d->arity);
    unsigned nflags = !!(d->flags & CMD_F_WRITE) + !!(d->flags & CMD_F_READONLY);
    reply_array(c, nflags);
    if (d->flags & CMD_F_WRITE)
        if (resp_out_simple(&c->reply, "write") != 0)
            out_failed(c);
    if (d->flags & CMD_F_READONLY)
        if (resp_out_simple(&c->reply, "readonly") != 0)
            out_failed(c);
    reply_int(c, d->first_key);
    reply_int(c, d->last_key);
    reply_int(c, d->key_step);
}

static void exec_command(struct cmd *c)
{
    if (c->argc == 1) {
        reply_array(c, NCMDS);
        for (size_t i = 0; i < NCMDS; i++)
            command_info(c, &cmds[i]);
    } else if (arg_is(c, 1, "COUNT") && c->argc == 2) {
        reply_int(c, (long long)NCMDS);
    } else if (arg_is(c, 1, "DOCS")) {
        reply_array(c, 0); /* no documentation: redis-cli then shows no hints */
    } else if (arg_is(c, 1, "INFO")) {
        reply_array(c, c->argc - 2);
        for (size_t i = 2; i < c->argc; i++) {
            const struct cmd_def *d = NULL;
            for (size_t j = 0; j < NCMDS && !d; j++)
                if (strcasecmp(cmds[j].name, c->argv[i]) == 0)
                    d = &cmds[j];
            if (d)
                command_info(c, d);
            else if (resp_out_null_array(&c->reply) != 0)
                out_failed(c);
        }
    } else {
        reply_error(c, "ERR unknown subcommand '%s'.", c->argv[1]);
    }
    done(c);
}

/* CONFIG GET pattern: save and appendonly (what Redis tools ask), then the engine options that
 * were set, and the server's own. */
static void exec_config(struct cmd *c)
{
    if (!arg_is(c, 1, "GET") || c->argc != 3) {
        if (arg_is(c, 1, "SET") || arg_is(c, 1, "RESETSTAT") || arg_is(c, 1, "REWRITE"))
            reply_error(c, "ERR CONFIG %s is not supported: restart cstored with the option",
                        c->argv[1]);
        else
            reply_error(c,
                        "ERR unknown subcommand or wrong number of arguments for "
                        "'CONFIG|%s'",
                        c->argc > 1 ? c->argv[1] : "");
        done(c);
        return;
    }
    struct server *s = c->conn->net->srv;
    const char *pat = c->argv[2];
    char port[8], maxc[16];
    snprintf(port, sizeof(port), "%u", s->port);
    snprintf(maxc, sizeof(maxc), "%u", s->cfg.maxclients);
    const char *fixed[][2] = {{"save", ""},
                              {"appendonly", "yes"},
                              {"appendfsync", "always"},
                              {"databases", "1"},
                              {"port", port},
                              {"maxclients", maxc},
                              {"resp_collection", s->collection}};
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
    size_t n = 0;
    for (size_t i = 0; i < nfixed; i++)
        n += fnmatch(pat, fixed[i][0], FNM_CASEFOLD) == 0;
    for (size_t i = 0; i < s->cfg.noptions; i++) {
        const char *o = s->cfg.options[i];
        size_t nl = strcspn(o, "=");
        char name[64];
        if (nl >= sizeof(name))
            continue;
        memcpy(name, o, nl);
        name[nl] = '\0';
        n += fnmatch(pat, name, FNM_CASEFOLD) == 0;
    }
    reply_array(c, 2 * n);
    for (size_t i = 0; i < nfixed; i++) {
        if (fnmatch(pat, fixed[i][0], FNM_CASEFOLD) == 0) {
            reply_str(c, fixed[i][0]);
            reply_str(c, fixed[i][1]);
        }
    }
    for (size_t i = 0; i < s->cfg.noptions; i++) {
        const char *o = s->cfg.options[i];
        size_t nl = strcspn(o, "=");
        char name[64];
        if (nl >= sizeof(name))
            continue;
        memcpy(name, o, nl);
        name[nl] = '\0';
        if (fnmatch(pat, name, FNM_CASEFOLD) == 0) {
            reply_str(c, name);
            reply_str(c, o[nl] ? o + nl + 1 : "");
        }
    }
    done(c);
}

/* The commands by name, sorted once (case-insensitive), for a binary search: a linear scan of
 * strcasecmp over the table showed in profiles of pipelined GETs. */
static const struct cmd_def *cmds_sorted[NCMDS];
static pthread_once_t cmds_once = PTHREAD_ONCE_INIT;

static int def_cmp(const void *a, const void *b)
{
    return strcasecmp((*(const struct cmd_def *const *)a)->name,
                      (*(const struct cmd_def *const *)b)->name);
}

static void cmds_sort(void)
{
    for (size_t i = 0; i < NCMDS; i++)
        cmds_sorted[i] = &cmds[i];
    qsort(cmds_sorted, NCMDS, sizeof(cmds_sorted[0]), def_cmp);
}

static const struct cmd_def *cmd_find(const char *name)
{
    pthread_once(&cmds_once, cmds_sort);
    size_t lo = 0, hi = NCMDS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcasecmp(name, cmds_sorted[mid]->name);
        if (c == 0)
            return cmds_sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static bool arity_ok(const struct cmd_def *d, size_t argc)
{
    return (d->arity > 0 && argc == (size_t)d->arity) ||
           (d->arity < 0 && argc >= (size_t)-d->arity);
}

int cmd_prepare(struct cmd *c)
{
    const struct cmd_def *d = cmd_find(c->argv[0]);
    c->def = d;
    if (d && arity_ok(d, c->argc) && (d->flags & CMD_F_BARRIER)) {
        c->access = CMD_ACCESS_WRITE; /* EXEC runs the MULTI block: see "ORDER" in net.c */
        c->barrier = true;
        return 0;
    }
    if (!d || !arity_ok(d, c->argc) || (!(d->flags & (CMD_F_WRITE | CMD_F_READONLY))))
        return 0; /* answered at once, touches nothing */
    c->access = d->flags & CMD_F_WRITE ? CMD_ACCESS_WRITE : CMD_ACCESS_READ;
    c->inbox = (d->flags & CMD_F_INBOX) != 0;
    if ((d->flags & CMD_F_ALLKEYS) || d->first_key == 0) {
        c->barrier = true;
        return 0;
    }
    size_t last = d->last_key < 0 ? c->argc - 1 : (size_t)d->last_key;
    size_t step = (size_t)d->key_step;
    size_t n = last >= (size_t)d->first_key ? (last - (size_t)d->first_key) / step + 1 : 0;
    if (n > CMD_KEYS_TRACKED_MAX) {
        c->barrier = true;
        return 0;
    }
    if (c->keys_cap < n) { /* a recycled command keeps its array */
        uint64_t *k = realloc(c->keys, n * sizeof(*k));
        if (!k)
            return -ENOMEM;
        c->keys = k;
        c->keys_cap = n;
    }
    const char *coll = d->flags & CMD_F_COLL ? c->argv[1] : redis_coll(c);
    uint64_t seed = XXH3_64bits(coll, strlen(coll));
    for (size_t i = 0; i < n; i++) {
        size_t a = (size_t)d->first_key + i * step;
        c->keys[i] = XXH3_64bits_withSeed(c->argv[a], c->argl[a], seed);
    }
    c->nkeys = n;
    return 0;
}

bool cmd_conflicts(const struct cmd *c, const struct cmd *d)
{
    if (c->access == CMD_ACCESS_NONE || d->access == CMD_ACCESS_NONE)
        return false;
    if (c->barrier || d->barrier)
        return true;
    if (c->access == CMD_ACCESS_READ && d->access == CMD_ACCESS_READ)
        return false;
    if (c->inbox && d->inbox)
        return false; /* their shards execute them in submission order */
    for (size_t i = 0; i < c->nkeys; i++)
        for (size_t j = 0; j < d->nkeys; j++)
            if (c->keys[i] == d->keys[j])
                return true;
    return false;
}

void cmd_exec(struct cmd *c)
{
    const struct cmd_def *d = c->def;
    /* inside MULTI a refused command makes EXEC answer EXECABORT, as in Redis */
    struct multi *m = in_multi(c->conn) ? c->conn->multi : NULL;
    if (m && (!d || !arity_ok(d, c->argc)))
        m->dirty = true;
    if (!d) {
        char shown[128];
        size_t n = c->argl[0] < sizeof(shown) - 1 ? c->argl[0] : sizeof(shown) - 1;
        for (size_t i = 0; i < n; i++) /* the name as text in the reply */
            shown[i] = c->argv[0][i] >= ' ' && c->argv[0][i] <= '~' ? c->argv[0][i] : '?';
        shown[n] = '\0';
        reply_error(c, "ERR unknown command '%s', with args beginning with: ", shown);
        done(c);
        return;
    }
    if (!c->conn->authed && !(d->flags & CMD_F_NOAUTH)) {
        reply_error(c, "NOAUTH Authentication required.");
        done(c);
        return;
    }
    if (!arity_ok(d, c->argc)) {
        reply_error(c, "ERR wrong number of arguments for '%s' command", d->name);
        done(c);
        return;
    }
    if (m && !(d->flags & CMD_F_NOQUEUE)) {
        multi_queue(c, m);
        return;
    }
    d->exec(c);
}
