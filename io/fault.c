/* Fault injection for cstore's I/O: the plan (what fails, when) and the decisions.
 *
 * SPEC. A comma-separated list of key=value pairs, e.g. "seed=7,write_eio=20,fsync_eio=0.5%":
 *   seed=U64          seeds every random decision (default 0)
 *   WAL writes and fdatasyncs through the ring (io/ring.c):
 *   write_eio=T       the write fails with -EIO; nothing reaches the file
 *   write_enospc=T    the write fails with -ENOSPC; nothing reaches the file
 *   short_write=T     only a random prefix of the write reaches the file; the short count is
 *                     reported (the caller sees a short write)
 *   torn_write=T      only a random non-empty prefix reaches the file, then the process is killed
 *                     with SIGKILL (a torn write followed by a crash)
 *   fsync_eio=T       the fdatasync reports -EIO (the data it covers may or may not be durable)
 *   enospc=T          the preallocation of a file (a WAL segment) fails with -ENOSPC
 *   latency_us=U32    sleep this long before every write and fdatasync is submitted
 *   File and folder operations of io/file.c (each fails with -EIO before reaching the system):
 *   create_eio=T      a creation: io_file_open with O_CREAT, io_dir_ensure's mkdir
 *   read_eio=T        a read: io_file_pread, io_file_read_at, io_file_read_all
 *   file_write_eio=T  a write through io_file_pwrite or io_file_zero (checkpoint files, segment
 *                     headers, cutting a torn tail; not the ring's WAL writes)
 *   file_sync_eio=T   an io_file_sync (fdatasync of a checkpoint or a segment)
 *   dirsync_eio=T     an io_dir_sync (fsync of a folder)
 *   rename_eio=T      an io_file_rename / io_file_publish
 *   unlink_eio=T      an io_file_unlink
 *   list_eio=T        an io_dir_list or io_file_written
 *   ring_eio=T        a shard's io_uring enter call (submit and wait): the ring itself fails,
 *                     not one operation (io_ring_run)
 *   Memory:
 *   alloc_fail=T      an allocation through cs_mem_alloc / cs_mem_realloc on a thread that
 *                     installed the plan (io_fault_thread_enter: the shard threads) returns NULL
 *   Transactions:
 *   txn_crash=T       a cross-shard commit kills the process (SIGKILL) when every vote is in and
 *                     before any outcome is sent (engine/txn.c): its PREPAREs are left in doubt
 *   txn_ckpt_crash=T  the same, after every participant wrote a checkpoint (which must then
 *                     carry the prepared transaction)
 *   Power cuts (io/powercut.c):
 *   powercut_log=PATH journal every disk operation's undo information to PATH (started afresh;
 *                     hard links of removed or replaced files are kept beside it), so that
 *                     io_powercut_apply can later cut the power "at the moment of the kill"
 *   powercut=T        the process kills itself (SIGKILL) just before the Tth journaled disk
 *                     operation (writes, syncs, folder syncs, creations, renames, removals;
 *                     ring writes and fdatasyncs included); needs powercut_log
 * A trigger T is either N (a positive integer: the Nth call of that kind in the database,
 * counted from 1, fires exactly once) or P% (P a decimal in 0..100 with at most 7 digits after
 * the point: each call of that kind fires independently with probability P/100). Each key may
 * appear once. Anything else (unknown key, empty value, trailing junk, overflow, P > 100,
 * powercut without powercut_log) makes the spec invalid: CS_EOPTVAL. A journal that cannot be
 * created fails io_fault_create with its -errno.
 *
 * KINDS AND COUNTERS. Each kind of call has its own counter shared by every shard of the
 * database: ring writes (io_fault_on_write), ring fdatasyncs (io_fault_on_fsync), preallocations
 * (io_fault_on_allocate), one counter per enum io_op (io_fault_on_op), allocations (alloc_fail) and
 * journaled operations (powercut). write_eio, write_enospc, short_write and torn_write all look at
 * the same write counter; when several fire on one write, torn_write wins over short_write,
 * short_write over write_eio, write_eio over write_enospc. A power cut is decided before the
 * operation's own fault.
 *
 * REPRODUCIBILITY. No shared random state: the decision for the call numbered n of a kind is a
 * pure function of (seed, trigger, n) — a SplitMix64 hash — and counters are atomics. So the
 * same spec and the same sequence of calls of a kind give the same faults, however the calls of
 * different kinds or different shards interleave; and the plan is lock-free and thread-safe
 * (the power-cut journal has its own lock).
 *
 * What a decision does to the I/O is io/ring.c's and io/file.c's business (synthetic
 * completions, short submissions, the kill); io/fault.c only decides. */
#include "fault.h"

#include "cstore.h"
#include "powercut.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAULT_SPEC_MAX 1024u        /* longest spec accepted, in bytes */
#define FAULT_PROB_SCALE 1000000000 /* probabilities are kept in parts per 10^9 */
#define FAULT_FRAC_DIGITS_MAX 7u    /* digits after the point in "P%": 10^-7 percent = 1 ppb */
#define FAULT_OPS 9u                /* kinds of enum io_op */
#define FAULT_PATH_MAX 4096u        /* longest powercut_log path, in bytes with the NUL */

/* One trigger: off, "the Nth call", or "each call with probability ppb / 10^9". */
struct fault_trigger {
    uint64_t nth; /* fire on call number nth (1-based); 0 = not an Nth trigger */
    uint32_t ppb; /* probability per call in parts per 10^9; 0 = never */
    uint32_t id;  /* distinct per trigger: salts the hash so triggers draw independently */
};

struct io_fault {
    uint64_t seed;                          /* seeds every random decision */
    uint32_t latency_us;                    /* added before every write and fdatasync */
    struct fault_trigger write_eio;         /* writes failing with -EIO */
    struct fault_trigger write_enospc;      /* writes failing with -ENOSPC */
    struct fault_trigger short_write;       /* writes cut short */
    struct fault_trigger torn_write;        /* writes cut short, then SIGKILL */
    struct fault_trigger fsync_eio;         /* fdatasyncs failing with -EIO */
    struct fault_trigger enospc;            /* preallocations failing with -ENOSPC */
    struct fault_trigger op_eio[FAULT_OPS]; /* file operations failing with -EIO, by io_op */
    struct fault_trigger alloc_fail;        /* cs_mem allocations returning NULL */
    struct fault_trigger powercut;          /* journaled operations before which power is cut */
    struct fault_trigger txn_crash;         /* cross-shard commits killed at their decision */
    struct fault_trigger txn_ckpt_crash;    /* the same, after checkpoints */
    char powercut_log[FAULT_PATH_MAX];      /* the power-cut journal's path, "" = none */
    struct io_powercut *cut;                /* the journal's writer, or NULL */
    _Atomic uint64_t writes;                /* io_fault_on_write calls so far */
    _Atomic uint64_t fsyncs;                /* io_fault_on_fsync calls so far */
    _Atomic uint64_t allocs;                /* io_fault_on_allocate calls so far */
    _Atomic uint64_t ops[FAULT_OPS];        /* io_fault_on_op calls so far, by io_op */
    _Atomic uint64_t mem_allocs;            /* allocations seen by the alloc_fail injector */
    _Atomic uint64_t cut_ops;               /* operations seen by the powercut trigger */
    _Atomic uint64_t txn_decisions;         /* io_fault_on_txn_decide calls so far */
};

/* io_op names in the spec, in enum order. */
static const char *const op_names[FAULT_OPS] = {
    "create_eio", "read_eio",   "file_write_eio", "file_sync_eio", "dirsync_eio",
    "rename_eio", "unlink_eio", "list_eio",       "ring_eio",
};
_Static_assert(IO_OP_RING + 1 == FAULT_OPS, "one name per io_op");

/* SplitMix64's finaliser: a well-mixed 64-bit hash of x. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The random draw of trigger t (or salt) for call number n. */
static uint64_t fault_draw(const struct io_fault *f, uint32_t salt, uint64_t n)
{
    return mix64(mix64(f->seed ^ ((uint64_t)salt << 48)) ^ n);
}

static bool trigger_fires(const struct io_fault *f, const struct fault_trigger *t, uint64_t n)
{
    cs_assert(n > 0);
    if (t->nth)
        return n == t->nth;
    if (t->ppb == 0)
        return false;
    return fault_draw(f, t->id, n) % FAULT_PROB_SCALE < t->ppb;
}

/* ---- parsing ---- */

/* Parse a decimal u64 from s[0..len): digits only, no sign, no overflow. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return CS_EOPTVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CS_EOPTVAL;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CS_EOPTVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Parse "P%" (P = digits[.digits], 0 <= P <= 100) into parts per 10^9. */
static int parse_percent(const char *s, size_t len, uint32_t *ppb)
{
    cs_assert(len > 0 && s[len - 1] == '%');
    len--;
    const char *dot = memchr(s, '.', len);
    size_t int_len = dot ? (size_t)(dot - s) : len;
    size_t frac_len = dot ? len - int_len - 1 : 0;
    uint64_t whole, frac = 0;
    if (int_len > 3 || parse_u64(s, int_len, &whole))
        return CS_EOPTVAL;
    if (dot &&
        (frac_len == 0 || frac_len > FAULT_FRAC_DIGITS_MAX || parse_u64(dot + 1, frac_len, &frac)))
        return CS_EOPTVAL;
    for (size_t i = frac_len; i < FAULT_FRAC_DIGITS_MAX; i++)
        frac *= 10; /* frac in units of 10^-7 percent = 1 ppb */
    uint64_t v = whole * 10000000ull + frac;
    if (v > FAULT_PROB_SCALE)
        return CS_EOPTVAL;
    *ppb = (uint32_t)v;
    return 0;
}

static int parse_trigger(const char *s, size_t len, struct fault_trigger *t)
{
    if (len == 0)
        return CS_EOPTVAL;
    if (s[len - 1] == '%')
        return parse_percent(s, len, &t->ppb);
    uint64_t n = 0;
    if (parse_u64(s, len, &n) || n == 0)
        return CS_EOPTVAL;
    t->nth = n;
    return 0;
}

static bool key_is(const char *key, size_t klen, const char *name)
{
    return strlen(name) == klen && memcmp(key, name, klen) == 0;
}

/* Apply one "key=value" pair; seen is a bit per key, so that each key appears once. */
static int parse_pair(struct io_fault *f, const char *key, size_t klen, const char *val,
                      size_t vlen, uint32_t *seen)
{
    struct fault_trigger *triggers[] = {
        &f->write_eio,  &f->write_enospc, &f->short_write, &f->torn_write,     &f->fsync_eio,
        &f->enospc,     &f->op_eio[0],    &f->op_eio[1],   &f->op_eio[2],      &f->op_eio[3],
        &f->op_eio[4],  &f->op_eio[5],    &f->op_eio[6],   &f->op_eio[7],      &f->op_eio[8],
        &f->alloc_fail, &f->powercut,     &f->txn_crash,   &f->txn_ckpt_crash,
    };
    const char *names[] = {
        "write_eio",  "write_enospc", "short_write", "torn_write",     "fsync_eio",
        "enospc",     op_names[0],    op_names[1],   op_names[2],      op_names[3],
        op_names[4],  op_names[5],    op_names[6],   op_names[7],      op_names[8],
        "alloc_fail", "powercut",     "txn_crash",   "txn_ckpt_crash",
    };
    _Static_assert(CS_ARRAY_SIZE(triggers) == CS_ARRAY_SIZE(names), "one name per trigger");
    _Static_assert(CS_ARRAY_SIZE(names) < 28, "bits 28..30 are the other keys");
    uint32_t bit;
    int rc = CS_EOPTVAL;
    uint64_t n = 0;
    if (key_is(key, klen, "seed")) {
        bit = 1u << 30;
        rc = parse_u64(val, vlen, &f->seed);
    } else if (key_is(key, klen, "latency_us")) {
        bit = 1u << 29;
        rc = parse_u64(val, vlen, &n);
        if (rc == 0 && n > UINT32_MAX)
            rc = CS_EOPTVAL;
        f->latency_us = (uint32_t)n;
    } else if (key_is(key, klen, "powercut_log")) {
        bit = 1u << 28;
        if (vlen > 0 && vlen < sizeof(f->powercut_log) && !memchr(val, '\0', vlen)) {
            memcpy(f->powercut_log, val, vlen);
            f->powercut_log[vlen] = '\0';
            rc = 0;
        }
    } else {
        for (bit = 0; bit < CS_ARRAY_SIZE(names); bit++) {
            if (key_is(key, klen, names[bit])) {
                rc = parse_trigger(val, vlen, triggers[bit]);
                break;
            }
        }
        if (bit == CS_ARRAY_SIZE(names))
            return CS_EOPTVAL; /* unknown key */
        bit = 1u << bit;
    }
    if (rc)
        return rc;
    if (*seen & bit)
        return CS_EOPTVAL; /* a key given twice */
    *seen |= bit;
    return 0;
}

static bool trigger_set(const struct fault_trigger *t)
{
    return t->nth != 0 || t->ppb != 0;
}

static int parse_spec(struct io_fault *f, const char *spec)
{
    size_t len = strnlen(spec, FAULT_SPEC_MAX + 1);
    if (len == 0 || len > FAULT_SPEC_MAX)
        return CS_EOPTVAL;
    uint32_t seen = 0;
    const char *p = spec, *end = spec + len;
    for (unsigned pairs = 0; p <= end; pairs++) {
        cs_assert(pairs <= FAULT_SPEC_MAX);
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (!eq || eq == p)
            return CS_EOPTVAL; /* "key" without "=value", or an empty key or item */
        int rc = parse_pair(f, p, (size_t)(eq - p), eq + 1, (size_t)(stop - eq - 1), &seen);
        if (rc)
            return rc;
        p = stop + 1;
    }
    return 0;
}

int io_fault_create(const char *spec, struct io_fault **out)
{
    cs_assert(out != NULL);
    *out = NULL;
    if (!spec)
        return CS_EOPTVAL;
    struct io_fault *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->write_eio.id = 1;
    f->write_enospc.id = 2;
    f->short_write.id = 3;
    f->torn_write.id = 4;
    f->fsync_eio.id = 5;
    f->enospc.id = 6;
    for (uint32_t i = 0; i < FAULT_OPS; i++)
        f->op_eio[i].id = 7 + i;
    f->alloc_fail.id = 7 + FAULT_OPS;
    f->powercut.id = 8 + FAULT_OPS;
    f->txn_crash.id = 9 + FAULT_OPS;
    f->txn_ckpt_crash.id = 10 + FAULT_OPS;
    int rc = parse_spec(f, spec);
    if (!rc && trigger_set(&f->powercut) && !f->powercut_log[0])
        rc = CS_EOPTVAL; /* a cut with nothing to say what to undo */
    if (!rc && f->powercut_log[0])
        rc = io_powercut_open(f->powercut_log, &f->cut);
    if (rc) {
        free(f);
        return rc;
    }
    atomic_init(&f->writes, 0);
    atomic_init(&f->fsyncs, 0);
    atomic_init(&f->allocs, 0);
    for (uint32_t i = 0; i < FAULT_OPS; i++)
        atomic_init(&f->ops[i], 0);
    atomic_init(&f->mem_allocs, 0);
    atomic_init(&f->cut_ops, 0);
    *out = f;
    return 0;
}

void io_fault_destroy(struct io_fault *f)
{
    if (f && f->cut)
        io_powercut_close(f->cut);
    free(f);
}

/* ---- decisions ---- */

enum io_fault_action io_fault_on_write(struct io_fault *f, size_t len, size_t *prefix)
{
    cs_assert(f != NULL);
    cs_assert(prefix != NULL);
    uint64_t n = atomic_fetch_add(&f->writes, 1) + 1;
    if (trigger_fires(f, &f->torn_write, n)) {
        /* A non-empty prefix when there is room for one: a torn write, not just a lost one. */
        *prefix = len > 1 ? 1 + fault_draw(f, 100, n) % (len - 1) : 0;
        return IO_FAULT_TORN_CRASH;
    }
    if (trigger_fires(f, &f->short_write, n)) {
        *prefix = len > 0 ? fault_draw(f, 101, n) % len : 0;
        return IO_FAULT_SHORT;
    }
    if (trigger_fires(f, &f->write_eio, n))
        return IO_FAULT_EIO;
    if (trigger_fires(f, &f->write_enospc, n))
        return IO_FAULT_ENOSPC;
    return IO_FAULT_NONE;
}

bool io_fault_on_fsync(struct io_fault *f)
{
    cs_assert(f != NULL);
    uint64_t n = atomic_fetch_add(&f->fsyncs, 1) + 1;
    return trigger_fires(f, &f->fsync_eio, n);
}

int io_fault_on_txn_decide(struct io_fault *f)
{
    if (!f || (!trigger_set(&f->txn_crash) && !trigger_set(&f->txn_ckpt_crash)))
        return 0;
    uint64_t n = atomic_fetch_add(&f->txn_decisions, 1) + 1;
    if (trigger_fires(f, &f->txn_crash, n))
        return 1;
    return trigger_fires(f, &f->txn_ckpt_crash, n) ? 2 : 0;
}

bool io_fault_on_allocate(struct io_fault *f)
{
    cs_assert(f != NULL);
    uint64_t n = atomic_fetch_add(&f->allocs, 1) + 1;
    return trigger_fires(f, &f->enospc, n);
}

uint32_t io_fault_latency_us(const struct io_fault *f)
{
    cs_assert(f != NULL);
    return f->latency_us;
}

struct io_powercut *io_fault_powercut(const struct io_fault *f)
{
    return f ? f->cut : NULL;
}

void io_fault_powercut_tick(struct io_fault *f)
{
    cs_assert(f != NULL);
    if (!f->cut)
        return;
    uint64_t n = atomic_fetch_add(&f->cut_ops, 1) + 1;
    if (!trigger_fires(f, &f->powercut, n))
        return;
    /* The journal is complete up to here (each record is written before its operation): the
     * power goes out now. */
    kill(getpid(), SIGKILL);
    for (unsigned i = 0; i < 1000; i++)
        pause(); /* SIGKILL is delivered before kill() returns; this is belt and braces */
    abort();
}

int io_fault_on_op(struct io_fault *f, enum io_op op)
{
    cs_assert(f != NULL);
    cs_assert((unsigned)op < FAULT_OPS);
    if (op != IO_OP_READ && op != IO_OP_LIST && op != IO_OP_RING)
        io_fault_powercut_tick(f); /* only operations that change the disk are cut before */
    uint64_t n = atomic_fetch_add(&f->ops[op], 1) + 1;
    return trigger_fires(f, &f->op_eio[op], n) ? -EIO : 0;
}

/* The allocation injector a thread installs (cs_mem_fail_set): true = fail this allocation. */
static bool fault_alloc_fails(void *arg)
{
    struct io_fault *f = arg;
    uint64_t n = atomic_fetch_add(&f->mem_allocs, 1) + 1;
    return trigger_fires(f, &f->alloc_fail, n);
}

void io_fault_thread_enter(struct io_fault *f)
{
    if (f && trigger_set(&f->alloc_fail))
        cs_mem_fail_set(fault_alloc_fails, f);
}

void io_fault_thread_leave(struct io_fault *f)
{
    if (f && trigger_set(&f->alloc_fail))
        cs_mem_fail_set(NULL, NULL);
}
