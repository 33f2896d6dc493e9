/* cstore-fault: a stress tool that proves cstore's durability promises under injected faults.
 *
 *   cstore-fault <crash|eio|torn|enospc|bitflip|slow|powercut|fileio|alloc|txn|server|all>
 *                [--seed N] [--iterations N] [--duration SECONDS] [--db DIR] [--shards N]
 *                [--threads N] [--plan P] [--cstored PATH] [--durability MODE] [--verbose]
 *
 * WORKLOAD. Several threads run mixed single-key puts, deletes and atomic batches (2..4 keys that
 * the documented router, XXH3_64(key) % shards, places on one shard; a CS_ENOTSUP answer is
 * accepted and counted) with durability=sync. Each thread owns its own keys, so the operations on
 * a key form one sequence. Every value is unique and self-describing: "v<16 hex digits id>"
 * followed by filler derived from the id, so a value read back is either exactly one that was
 * written or garbage.
 *
 * LOG AND MODEL. Each operation produces an INTENT record before the call and an ACK (returned 0)
 * or FAIL (returned an error) record after it: one fixed-size record, one write(2) (atomic on a
 * pipe). In-process scenarios feed the records to the model directly; `crash` and `torn` run the
 * workload in a forked child that writes them to a pipe, so a SIGKILL can only lose the tail of
 * the log, never garble it. The model keeps per key: the last acknowledged state (a value id, or
 * absent), the state before it, and the operations in flight (intent seen, no ack: they may or
 * may not have happened). A FAIL with -ENOSPC or CS_ENOTSUP means "not applied": it leaves the
 * in-flight set; so does CS_EIO under write_eio (nothing reached the disk, so the failed writes
 * must never come back). Any other error leaves the operation in flight.
 *
 * CHECK (after every reopen, and before closing in the in-process scenarios). Per key, the value
 * read must be the acknowledged state or one of the states in flight. A cursor scan must show
 * only model keys, with the values the gets returned (nothing that was never written appears).
 * An atomic batch in flight must have landed whole or not at all. A shard that reports a torn WAL
 * tail cut at open (cs_shard_stats.recovery_torn_bytes) may have lost its last frame: for keys
 * of that shard in `bitflip`, the state before the last acknowledgement is accepted too and
 * counted as reported damage. After a check the model adopts what it read.
 *
 * SCENARIOS (the same --seed gives the same fault schedule, kill delays and operations):
 *   crash   fork a writer child, SIGKILL it after a random delay (sometimes during recovery),
 *           reopen, check; many times on the same database. Small WAL segments and checkpoints
 *           (cs_checkpoint and checkpoint_wal_bytes) so kills also land in rotation and
 *           checkpointing.
 *   torn    like crash, but the child runs with fault torn_write=N: a prefix of the Nth WAL write
 *           reaches the file and the child kills itself.
 *   eio     in-process, fault write_eio=N, fsync_eio=N or short_write=N in turn: the failing
 *           frame's writes and every later write on that shard must return CS_EIO, reads must keep
 *           working (checked while the shard is read-only), and after reopening without the fault
 *           every acknowledged write is there.
 *   enospc  in-process, fault enospc=N (the Nth WAL segment preallocation fails; 1 MiB segments
 *           and large values make them frequent) or, every other iteration, write_enospc=N (the
 *           Nth WAL write fails): writes may fail with -ENOSPC and must then not be applied;
 *           afterwards the database must take writes again; after reopening acked writes are
 *           there.
 *   bitflip write, close, flip 1..3 random bits in random WAL segments and snap-* files (mostly
 *           within the written part), reopen: CS_ECORRUPT (then the bits are flipped back and the
 *           database must open and check out), or success with every acked write intact, except
 *           what a reported torn tail accounts for.
 *   slow    fault latency_us with a normal workload; everything must check out.
 *   powercut fork a writer child whose database journals every disk operation
 *           (powercut_log=<db>/powercut.journal) and kills itself before the Nth
 *           (powercut=N; the parent kills it after a random delay if that comes later), with
 *           durability sync, async and none in turn, checkpoints and 1 MiB segments; then play
 *           a seeded power cut (io_powercut_apply: unsynced writes kept, torn at 512-byte
 *           sectors or lost; unsynced creations, renames and removals undone), reopen without
 *           faults and check. The database must always open (CS_ECORRUPT is a violation).
 *           sync: nothing acknowledged lost. async: a key may also read as any state it was
 *           acknowledged in since the last reopen (the unsynced tail; counted in "damage").
 *           none: every key must read as the last clean close left it.
 *   fileio  in-process, fault file_write_eio, file_sync_eio, rename_eio, dirsync_eio,
 *           create_eio or unlink_eio in turn, with frequent checkpoints and WAL rotations:
 *           writes return 0 or CS_EIO; a shard that turned read-only refuses writes with
 *           CS_EIO; reads keep working; after reopening without the fault every acknowledged
 *           write is there. "faults" counts iterations where a shard turned read-only or a
 *           cs_checkpoint failed; an open refused by the fault counts too (the database must
 *           then open without it).
 *   alloc   in-process, alloc_fail=P% on the shard threads (even iterations) or write_eio=N
 *           with alloc_fail at 50..95% (odd ones: taking the failed frame back runs out of
 *           memory and the shard is fenced): writes return 0, -ENOMEM (left in flight) or
 *           CS_EIO; gets may fail with CS_EIO on a fenced shard (counted in "damage"); no
 *           crash; after reopening without faults every acknowledged write is there.
 *   txn     bank transfers as interactive transactions across every shard, in a child killed at
 *           random moments, some iterations with the fault plan's txn_crash, txn_ckpt_crash,
 *           fsync_eio or write_eio and with small checkpoints: after each reopen the money is all
 *           there, every acknowledged transfer is there, none is half applied, committed
 *           read-only transactions summed the total (tools/fault_txn.c says how). It prints one
 *           line per iteration and "N passed, M failed". --plan P runs only plan P (kill,
 *           kill+ckpt, txn_crash, txn_ckpt_crash, fsync_eio, write_eio) in every iteration.
 *   server  the crash check through the network: cstored (beside this executable, or
 *           --cstored PATH) on a loopback port with the database, --threads connections
 *           pipelining SET, DEL, MSET (across shards) and INCR, a SIGKILL of cstored at a seeded
 *           moment (some during its start-up and recovery), a restart, and a check through
 *           MGET, SCAN and DBSIZE: every acknowledged write there (or a later one in flight), no
 *           MSET in part, counters between acknowledged and acknowledged + in flight; every
 *           fourth iteration also under redis-benchmark load (tools/fault_server.c says how).
 *           It prints one line per iteration and "N passed, M failed". --durability async|none
 *           runs cstored without its promise: the check must then report lost writes.
 *   all     each of the above in turn.
 * It prints one line per scenario (iterations, acknowledged operations, keys checked, damage
 * reports, violations) and exits 1 on any violation, 2 on a usage or set-up error.
 *
 * FILES. This one: the command line and the scenario loop. tools/fault_model.c: values, keys,
 * the operation log, the model and the checker (linked by tests/unit/test_fault_model.c too).
 * tools/fault_common.c: the context, opening, the workload, folders, pacing. The scenario
 * families: tools/fault_child.c (crash, torn, powercut), tools/fault_inprocess.c (eio, enospc,
 * slow, fileio, alloc), tools/fault_bitflip.c (bitflip), tools/fault_txn.c (txn),
 * tools/fault_server.c (server). No state lives
 * at file scope: one struct fault_ctx, made in main, is passed to whatever needs it.
 */
#include "tools/fault_scenario.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void run_scenario(struct fault_ctx *ctx, enum scenario sc, struct result *res,
                         unsigned share)
{
    ctx->model.res = res;
    switch (sc) {
    case SC_CRASH:
    case SC_TORN:
        run_crash_like(ctx, sc, res, share);
        break;
    case SC_EIO:
    case SC_ENOSPC:
    case SC_SLOW:
    case SC_FILEIO:
    case SC_ALLOC:
        run_inprocess(ctx, sc, res, share);
        break;
    case SC_POWERCUT:
        run_powercut(ctx, res, share);
        break;
    case SC_BITFLIP:
        run_bitflip(ctx, res, share);
        break;
    case SC_TXN:
        run_txn(ctx, res, share);
        break;
    case SC_SERVER:
        run_server(ctx, res, share);
        break;
    case SC_COUNT:
        break;
    }
}

/* Open and close a scratch database with the options the scenarios use: a configuration the
 * machine cannot run (more shards than CPUs...) is a set-up error, not a violation. */
static void preflight(struct fault_ctx *ctx)
{
    char dir[PATH_BYTES_MAX];
    path_join(dir, sizeof(dir), ctx->cfg.db, "/", ".cstore-fault-preflight");
    remove_tree(dir, 0);
    cs_db *db = NULL;
    int rc = db_open(ctx, dir, NULL, &db);
    if (rc == 0)
        rc = cs_close(db);
    remove_tree(dir, 0);
    if (rc) {
        fprintf(stderr, "cstore-fault: cannot open a database with %u shards: %s: %s\n",
                ctx->cfg.shards, cs_strerror(rc), cs_last_error());
        if (!ctx->cfg.db_given)
            rmdir(ctx->cfg.db);
        exit(2);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cstore-fault <scenario|all> [--seed N] [--iterations N] [--duration SECONDS]\n"
            "                    [--db DIR] [--shards N] [--threads N] [--plan P]\n"
            "                    [--cstored PATH] [--durability MODE] [--verbose]\n"
            "scenarios:\n"
            "  crash     SIGKILL a writer child at random moments, reopen, check\n"
            "  eio       a WAL write, fdatasync or short write fails (write_eio, fsync_eio,\n"
            "            short_write): CS_EIO, read-only shard, nothing acknowledged lost\n"
            "  torn      a torn WAL write, then the child dies (torn_write)\n"
            "  enospc    a WAL preallocation or write fails with ENOSPC (enospc, write_enospc)\n"
            "  bitflip   bits flipped in closed files: CS_ECORRUPT or intact\n"
            "  slow      latency_us on every write and fdatasync\n"
            "  powercut  a child in sync, async or none mode journals its disk operations\n"
            "            (powercut_log) and is killed at the Nth (powercut=N); the parent plays\n"
            "            a seeded power cut (unsynced writes kept, torn at sectors or lost;\n"
            "            unsynced creations, renames, removals undone), reopens and checks\n"
            "  fileio    checkpoint and segment file operations fail: file_write_eio,\n"
            "            file_sync_eio, rename_eio, dirsync_eio, create_eio, unlink_eio\n"
            "  alloc     shard allocations fail (alloc_fail), alone or while a failed WAL\n"
            "            frame is taken back (the shard is then fenced)\n"
            "  txn       bank transfers in transactions across shards in a child killed at\n"
            "            random moments (also txn_crash, txn_ckpt_crash, fsync_eio, write_eio):\n"
            "            the total holds, acknowledged transfers are there, none half applied;\n"
            "            --plan kill|kill+ckpt|txn_crash|txn_ckpt_crash|fsync_eio|write_eio\n"
            "            runs only that one\n"
            "  server    cstored (beside this tool, or --cstored PATH) under pipelined SET, DEL,\n"
            "            MSET and INCR from --threads connections (some iterations also under\n"
            "            redis-benchmark), SIGKILLed at random moments (also during start-up),\n"
            "            restarted, checked through MGET, SCAN and DBSIZE; --durability\n"
            "            async|none runs it without its promise (the check must then fail)\n"
            "faults are set with the fault option / $CSTORE_FAULT; see README and io/fault.c\n");
    exit(2);
}

static unsigned long long arg_num(const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *which = argv[1];
    struct fault_ctx *ctx = calloc(1, sizeof(*ctx)); /* the model is megabytes: not the stack */
    if (!ctx) {
        fprintf(stderr, "cstore-fault: out of memory\n");
        return 2;
    }
    ctx->cfg.seed = 1;
    ctx->cfg.shards = 2;
    ctx->cfg.threads = 4;
    ctx->cfg.txn_plan = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--verbose") == 0) {
            ctx->cfg.verbose = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--seed") == 0)
            ctx->cfg.seed = arg_num(v, UINT64_MAX);
        else if (strcmp(a, "--iterations") == 0)
            ctx->cfg.iterations = (unsigned)arg_num(v, 100000000u);
        else if (strcmp(a, "--duration") == 0)
            ctx->cfg.duration_s = (unsigned)arg_num(v, 86400u * 7);
        else if (strcmp(a, "--shards") == 0)
            ctx->cfg.shards = (unsigned)arg_num(v, 8);
        else if (strcmp(a, "--threads") == 0)
            ctx->cfg.threads = (unsigned)arg_num(v, THREADS_MAX);
        else if (strcmp(a, "--plan") == 0 && txn_plan_index(v) >= 0)
            ctx->cfg.txn_plan = txn_plan_index(v);
        else if (strcmp(a, "--cstored") == 0 && strlen(v) < PATH_BYTES_MAX)
            snprintf(ctx->cfg.cstored, sizeof(ctx->cfg.cstored), "%s", v);
        else if (strcmp(a, "--durability") == 0 &&
                 (strcmp(v, "sync") == 0 || strcmp(v, "async") == 0 || strcmp(v, "none") == 0))
            snprintf(ctx->cfg.durability, sizeof(ctx->cfg.durability), "%s", v);
        else if (strcmp(a, "--db") == 0 && strlen(v) < PATH_BYTES_MAX - 64) {
            snprintf(ctx->cfg.db, sizeof(ctx->cfg.db), "%s", v);
            ctx->cfg.db_given = true;
        } else
            usage();
    }
    if (ctx->cfg.shards == 0 || ctx->cfg.threads == 0)
        usage();
    bool run[SC_COUNT] = {false};
    unsigned nrun = 0;
    for (unsigned s = 0; s < SC_COUNT; s++) {
        run[s] = strcmp(which, "all") == 0 || strcmp(which, scenario_names[s]) == 0;
        nrun += run[s];
    }
    if (nrun == 0)
        usage();
    if (!ctx->cfg.db_given) {
        snprintf(ctx->cfg.db, sizeof(ctx->cfg.db), "%s/cstore-fault-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(ctx->cfg.db)) {
            fprintf(stderr, "cstore-fault: mkdtemp: %s\n", strerror(errno));
            return 2;
        }
    } else if (mkdir(ctx->cfg.db, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cstore-fault: mkdir %s: %s\n", ctx->cfg.db, strerror(errno));
        return 2;
    }
    pthread_mutex_init(&ctx->model.lock, NULL);
    ctx->model.stage = "";
    preflight(ctx);
    uint64_t violations = 0;
    printf("%-8s %10s %12s %12s %8s %8s %10s\n", "scenario", "iterations", "acked_ops",
           "keys_checked", "faults", "damage", "violations");
    fflush(stdout);
    for (unsigned s = 0; s < SC_COUNT; s++) {
        if (!run[s])
            continue;
        struct result *r = &ctx->results[s];
        run_scenario(ctx, (enum scenario)s, r, nrun);
        printf("%-8s %10u %12" PRIu64 " %12" PRIu64 " %8" PRIu64 " %8" PRIu64 " %10" PRIu64 "\n",
               scenario_names[s], r->iterations, r->acked_ops, r->keys_checked, r->faults,
               r->damage, r->violations);
        fflush(stdout);
        violations += r->violations;
    }
    if (!ctx->cfg.db_given)
        rmdir(ctx->cfg.db);
    printf("seed %" PRIu64 ": %s\n", ctx->cfg.seed, violations ? "VIOLATIONS" : "ok");
    pthread_mutex_destroy(&ctx->model.lock);
    free(ctx);
    return violations ? 1 : 0;
}
