/* The in-process scenarios: eio, enospc, slow, fileio and alloc. The database runs in this
 * process with a fault armed (write_eio, fsync_eio, short_write; enospc, write_enospc;
 * latency_us; the checkpoint and segment file faults; alloc_fail), rounds of workload run until
 * the fault fired, and then: every shard that turned read-only must refuse writes with CS_EIO
 * (check_fail_stop), reads keep working and show only acknowledged or in-flight states (a
 * check before close, without adopting), enospc must take writes again afterwards, and after a
 * reopen without the fault every acknowledged write is there. */
#include "tools/fault_scenario.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define ROUNDS_MAX 8u /* eio, enospc: rounds of work per iteration waiting for the fault */

/* ---- eio, enospc, slow, fileio, alloc: in-process ---- */

/* Every shard that turned read-only must refuse a write with CS_EIO. Returns the failed shards. */
static unsigned check_fail_stop(struct fault_ctx *ctx, cs_db *db, uint32_t iteration,
                                size_t filler_max)
{
    unsigned failed = 0;
    char *vbuf = malloc(VAL_HEAD_BYTES + filler_max + 1);
    if (!vbuf)
        exit(2);
    for (unsigned s = 0; s < ctx->cfg.shards; s++) {
        struct cs_shard_stats st;
        if (cs_stats(db, s, &st) != 0 || st.io_error == 0)
            continue;
        failed++;
        if (st.io_error != CS_EIO && st.io_error != -EIO)
            note(ctx, "shard %u io_error %d (%s)\n", s, st.io_error, cs_strerror(st.io_error));
        /* A probe put on a key of that shard: logged like any write, must fail. */
        for (uint32_t k = 0; k < ctx->model.nkeys; k++) {
            if (key_shard(k, ctx->cfg.shards) != s)
                continue;
            struct op_rec r = {.magic = REC_MAGIC, .kind = REC_INTENT, .count = 1, .key = {k}};
            r.op_id = (uint64_t)(0xff00000u | iteration) << 32 | s; /* unique: values are too */
            r.val[0] = r.op_id << 3 | 1u;
            model_apply(&ctx->model, &r);
            char key[32];
            size_t klen = key_make(k, key, sizeof(key));
            size_t vlen = value_make(r.val[0], filler_max, vbuf);
            int rc = cs_put(db, COLL, key, klen, vbuf, vlen);
            r.kind = rc == 0 ? REC_ACK : REC_FAIL;
            r.rc = rc;
            model_apply(&ctx->model, &r);
            if (rc != CS_EIO && !(rc == -ENOMEM && ctx->model.enomem_ok))
                model_violation(&ctx->model,
                                "shard %u is read-only (io_error %d) but a put returned %s", s,
                                st.io_error, cs_strerror(rc));
            break;
        }
    }
    free(vbuf);
    return failed;
}

void run_inprocess(struct fault_ctx *ctx, enum scenario sc, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    struct pacer p;
    struct rng rng = scenario_begin(ctx, sc, share, dir, sizeof(dir), &p);
    size_t filler_max = sc == SC_ENOSPC ? 12000 : sc == SC_FILEIO ? 1000 : 200;
    struct open_opts oo = {0};
    if (sc == SC_ENOSPC) {
        oo.segment = "1M";
        oo.no_compress = true;
    }
    if (sc == SC_FILEIO) {
        oo.segment = "1M"; /* rotations */
        oo.ckpt_bytes = "128K";
        oo.no_compress = true;
    }
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        char fault[128];
        uint64_t fseed = rng_next(&rng) >> 1;
        uint32_t ops = 60;
        if (sc == SC_EIO) {
            static const char *const kinds[] = {"write_eio", "fsync_eio", "short_write"};
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",%s=%" PRIu64, fseed, kinds[it % 3],
                     1 + rng_below(&rng, 150));
            /* A failed write puts nothing on disk: its records must never come back. A failed
             * fdatasync follows a write that did reach the file; a short write may have missed
             * only the frame's zero padding, leaving a whole frame behind. */
            ctx->model.eio_not_applied = it % 3 == 0;
        } else if (sc == SC_ENOSPC) {
            /* Odd iterations: a WAL write itself fails with -ENOSPC instead. */
            if (it % 2)
                snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",write_enospc=%" PRIu64, fseed,
                         1 + rng_below(&rng, 100));
            else
                snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",enospc=%" PRIu64, fseed,
                         2 + rng_below(&rng, 3));
            ops = 80;
        } else if (sc == SC_FILEIO) {
            /* The operations of checkpoints (writes, fdatasync, rename, folder fsync, removal
             * of covered WAL segments) and of WAL segment rotation. */
            static const char *const kinds[] = {"file_write_eio", "file_sync_eio", "rename_eio",
                                                "dirsync_eio",    "create_eio",    "unlink_eio"};
            unsigned kind = it % CS_ARRAY_SIZE(kinds);
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",%s=%" PRIu64, fseed, kinds[kind],
                     1 + rng_below(&rng, kind == 0 ? 40 : 8));
        } else if (sc == SC_ALLOC) {
            /* Even iterations: allocations of the shard threads fail now and then. Odd ones: a
             * WAL write fails while many allocations do, so that taking its frame back runs
             * out of memory and the shard is fenced. */
            if (it % 2 == 0)
                snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",alloc_fail=%" PRIu64 ".5%%", fseed,
                         rng_below(&rng, 4));
            else
                snprintf(fault, sizeof(fault),
                         "seed=%" PRIu64 ",write_eio=%" PRIu64 ",alloc_fail=%" PRIu64 "%%", fseed,
                         1 + rng_below(&rng, 10), 50 + rng_below(&rng, 45));
        } else {
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",latency_us=%" PRIu64, fseed,
                     100 + rng_below(&rng, 1900));
        }
        oo.fault = fault;
        ctx->model.enomem_ok = sc == SC_ALLOC;
        cs_db *db = NULL;
        int rc = db_open(ctx, dir, &oo, &db);
        if (rc == -ENOSPC && sc == SC_ENOSPC) {
            /* The fault hit the preallocation at open: a clear refusal, nothing changed. */
            res->faults++;
            res->iterations++;
            continue;
        }
        if ((rc == -EIO || rc == CS_EIO || rc == -ENOMEM) && (sc == SC_FILEIO || sc == SC_ALLOC)) {
            /* The fault hit the open itself: a clear refusal; the database must still open
             * without it and hold every acknowledged write. */
            res->faults++;
            note(ctx, "%s %u: open with \"%s\" refused: %s\n", scenario_names[sc], it, fault,
                 cs_strerror(rc));
            rc = reopen_and_check(ctx, dir, &oo, false, filler_max);
            if (rc)
                model_violation(
                    &ctx->model,
                    "%s iteration %u: reopen after a refused open (\"%s\") failed: %s: %s", dir, it,
                    fault, cs_strerror(rc), cs_last_error());
            res->iterations++;
            continue;
        }
        if (rc) {
            model_violation(&ctx->model, "%s iteration %u: open with fault \"%s\" failed: %s: %s",
                            dir, it, fault, cs_strerror(rc), cs_last_error());
            break;
        }
        uint64_t eio_before = ctx->model.eio_fails, enospc_before = ctx->model.enospc_fails;
        uint64_t ckpt_fails_before = atomic_load(&ctx->ckpt_failures);
        uint64_t failed_reads_before = ctx->model.failed_reads;
        /* Rounds of work until the fault fired (a round may end before the Nth call). */
        for (uint32_t round = 0; round < ROUNDS_MAX; round++) {
            struct workload *w =
                workload_new(ctx, db, rng_next(&rng), round << 20 | (it + 1), ops, filler_max);
            w->fail_stop = 40;
            w->checkpoints = sc == SC_FILEIO;
            ctx->model.stage = "workload";
            workload_run(w);
            free(w);
            if (sc == SC_SLOW || ctx->model.eio_fails > eio_before ||
                ctx->model.enospc_fails > enospc_before)
                break;
            if ((sc == SC_FILEIO || sc == SC_ALLOC) && round >= 2)
                break; /* a checkpoint fault may leave the shard writable: nothing to wait for */
        }
        unsigned failed = check_fail_stop(ctx, db, it, filler_max);
        bool eio_seen = ctx->model.eio_fails > eio_before;
        bool may_fail = sc == SC_EIO || sc == SC_FILEIO || sc == SC_ALLOC;
        if (failed && !eio_seen)
            model_violation(
                &ctx->model,
                "iteration %u (%s): a shard turned read-only but no write returned CS_EIO", it,
                fault);
        if (!may_fail && failed)
            model_violation(&ctx->model, "iteration %u (%s): a shard turned read-only", it, fault);
        if (may_fail && eio_seen && !failed)
            model_violation(&ctx->model,
                            "iteration %u (%s): CS_EIO returned but no shard is read-only", it,
                            fault);
        if (failed || ctx->model.enospc_fails > enospc_before ||
            atomic_load(&ctx->ckpt_failures) > ckpt_fails_before)
            res->faults++;
        /* Reads keep working (on a fenced shard they may fail with CS_EIO), and show only
         * acknowledged or in-flight states. */
        ctx->model.stage = "check before close";
        ctx->model.reads_may_fail = sc == SC_ALLOC;
        model_check_db(&ctx->model, db, 0, false, false, filler_max);
        ctx->model.reads_may_fail = false;
        if (ctx->model.failed_reads > failed_reads_before)
            res->damage++; /* alloc: a fenced shard refused reads of its live trees */
        if (sc == SC_ENOSPC && !failed) {
            /* After the fault the database takes writes again. */
            ctx->model.stage = "writes after the fault";
            struct workload *again =
                workload_new(ctx, db, rng_next(&rng), ROUNDS_MAX << 20 | (it + 1), 10, filler_max);
            uint64_t fails = ctx->model.failed_ops;
            workload_run(again);
            free(again);
            if (ctx->model.failed_ops != fails)
                model_violation(&ctx->model,
                                "iteration %u (%s): %" PRIu64 " writes failed after the fault", it,
                                fault, ctx->model.failed_ops - fails);
        }
        int close_rc = cs_close(db); /* a read-only shard reports its error here */
        (void)close_rc;
        ctx->model.eio_not_applied = false;
        ctx->model.enomem_ok = false;
        rc = reopen_and_check(ctx, dir, &oo, false, filler_max);
        if (rc)
            model_violation(&ctx->model, "%s iteration %u: reopen after \"%s\" failed: %s: %s", dir,
                            it, fault, cs_strerror(rc), cs_last_error());
        if (ctx->model.other_fails) {
            model_violation(&ctx->model, "iteration %u (%s): %" PRIu64 " writes failed with %s", it,
                            fault, ctx->model.other_fails, cs_strerror(ctx->model.last_other_rc));
            ctx->model.other_fails = 0;
        }
        note(ctx,
             "%s %u: fault \"%s\": read-only shards %u, EIO %" PRIu64 ", ENOSPC %" PRIu64
             ", violations %" PRIu64 "\n",
             scenario_names[sc], it, fault, failed, ctx->model.eio_fails - eio_before,
             ctx->model.enospc_fails - enospc_before, res->violations);
        res->iterations++;
    }
    res->acked_ops += ctx->model.acked_ops;
    res->failed_ops += ctx->model.failed_ops;
    scenario_dir_done(ctx, dir);
}
