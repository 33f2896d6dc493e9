/* The scenarios whose writer is a child process: crash and torn (the child is killed, or kills
 * itself at a torn WAL write) and powercut (the child journals its disk operations and dies at
 * the Nth; the parent then plays a seeded power cut on the files). The child sends its
 * operation log through a pipe, one record per write(2), so a kill can only lose the tail of
 * the log, never garble it; the parent feeds the records to the model (drain_log), reopens the
 * database without faults and checks it. */
#include "tools/fault_scenario.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/powercut.h"

#define CHILD_WAIT_MS_MAX 20000u   /* torn: kill a child whose fault never fired after this long */
#define POWERCUT_SETTLE_US 100000u /* powercut: wait after the child's death before the cut */

/* ---- crash and torn: a child writes, the parent keeps the log ---- */

static void op_apply_cb(void *arg, const void *rec)
{
    model_apply(arg, rec);
}

/* Read log records from fd until EOF or until deadline_ms (0: EOF only). Returns true at EOF. */
static bool drain_log(struct fault_ctx *ctx, int fd, uint64_t deadline_ms)
{
    return drain_records(fd, ctx->log_buf, sizeof(ctx->log_buf), &ctx->log_have,
                         sizeof(struct op_rec), deadline_ms, op_apply_cb, &ctx->model, &ctx->model);
}

struct child_run {
    const char *dir;        /* database */
    struct open_opts oo;    /* options of the child's open */
    uint64_t seed;          /* workload seed */
    uint32_t iteration;     /* operation ids */
    size_t filler_max;      /* values */
    uint64_t kill_after_ms; /* SIGKILL after this long (0: wait for the child to die) */
    bool checkpoints;       /* the workload calls cs_checkpoint now and then */
};

/* The child: open, run the workload until killed. Exit 3: cs_open failed (reported on stderr). */
static void child_main(struct fault_ctx *ctx, const struct child_run *cr, int fd)
{
    signal(SIGPIPE, SIG_IGN);
    cs_db *db = NULL;
    int rc = db_open(ctx, cr->dir, &cr->oo, &db);
    if (rc) {
        fprintf(stderr, "cstore-fault: child: cs_open: %s: %s\n", cs_strerror(rc), cs_last_error());
        _exit(3);
    }
    struct workload *w = workload_new(ctx, db, cr->seed, cr->iteration, 0, cr->filler_max);
    w->log_fd = fd;
    w->checkpoints = cr->checkpoints;
    ctx->model.stage = "workload";
    workload_run(w);
    _exit(4);
}

/* Fork a child writer, kill it (or let the fault kill it), collect its log. Returns the child's
 * wait status, or -1 when the fork failed; *killed tells whether this process sent the SIGKILL. */
static int child_run(struct fault_ctx *ctx, const struct child_run *cr, bool *killed)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(ctx, cr, fds[1]);
    }
    close(fds[1]);
    uint64_t start = now_ms();
    uint64_t deadline = start + (cr->kill_after_ms ? cr->kill_after_ms : CHILD_WAIT_MS_MAX);
    bool eof = drain_log(ctx, fds[0], deadline);
    *killed = !eof;
    if (!eof)
        kill(pid, SIGKILL);
    if (!eof)
        drain_log(ctx, fds[0], 0);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* No fault was armed in the child (or none that fails a write): any failed write is a
 * violation. The failure counts start again. */
static void check_no_failures(struct model *m, unsigned it)
{
    if (m->other_fails || m->eio_fails || m->enospc_fails) {
        model_violation(m, "iteration %u: %" PRIu64 " writes failed without a fault (last: %s)", it,
                        m->other_fails + m->eio_fails + m->enospc_fails,
                        cs_strerror(m->last_other_rc ? m->last_other_rc : CS_EIO));
        m->other_fails = m->eio_fails = m->enospc_fails = 0;
    }
}

/* child_run, and judge how the child ended: it must die of a SIGKILL, ours or its fault's.
 * A failed fork is a set-up error (exit 2). Returns the wait status. */
static int child_run_judged(struct fault_ctx *ctx, const struct child_run *cr, unsigned it,
                            bool *killed)
{
    int status = child_run(ctx, cr, killed);
    if (status == -1) {
        fprintf(stderr, "cstore-fault: fork failed: %s\n", strerror(errno));
        exit(2);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
        model_violation(&ctx->model,
                        "%s iteration %u: the writer child could not open the database", cr->dir,
                        it);
    else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        model_violation(&ctx->model,
                        "%s iteration %u: the writer child ended unexpectedly (status %#x)",
                        cr->dir, it, status);
    return status;
}

void run_crash_like(struct fault_ctx *ctx, enum scenario sc, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    struct pacer p;
    struct rng rng = scenario_begin(ctx, sc, share, dir, sizeof(dir), &p);
    const size_t filler_max = 200;
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        char fault[128] = "";
        struct child_run cr = {
            .dir = dir, .seed = rng_next(&rng), .iteration = it + 1, .filler_max = filler_max};
        /* Even iterations: frequent checkpoints (API and WAL size); odd ones: rarely, so that
         * the WAL grows over 1 MiB segments and kills land in rotations too. */
        cr.oo.segment = "1M";
        cr.oo.ckpt_bytes = it % 2 ? "4M" : "512K";
        cr.checkpoints = it % 2 == 0;
        if (sc == SC_TORN) {
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",torn_write=%" PRIu64,
                     rng_next(&rng) >> 1, 1 + rng_below(&rng, 120));
            cr.oo.fault = fault;
        } else {
            /* Mostly early kills (open, recovery, first frames), some later ones. */
            cr.kill_after_ms =
                rng_below(&rng, 4) == 0 ? 1 + rng_below(&rng, 20) : 20 + rng_below(&rng, 400);
        }
        bool killed = false;
        int status = child_run_judged(ctx, &cr, it, &killed);
        if (sc == SC_TORN && !killed && WIFSIGNALED(status))
            res->faults++; /* the child died of its torn write, not of our timeout */
        int rc = reopen_and_check(ctx, dir, NULL, false, filler_max);
        if (rc)
            model_violation(&ctx->model, "%s iteration %u: reopen after a kill failed: %s: %s", dir,
                            it, cs_strerror(rc), cs_last_error());
        check_no_failures(&ctx->model, it);
        note(ctx,
             "%s %u: fault \"%s\" kill %" PRIu64 " ms, acked %" PRIu64 ", violations %" PRIu64 "\n",
             scenario_names[sc], it, fault, cr.kill_after_ms, ctx->model.acked_ops,
             res->violations);
        res->iterations++;
    }
    res->acked_ops += ctx->model.acked_ops;
    res->failed_ops += ctx->model.failed_ops;
    scenario_dir_done(ctx, dir);
}

/* ---- powercut: a child writes with the power-cut journal; the parent cuts, reopens, checks ----
 */

void run_powercut(struct fault_ctx *ctx, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX], journal[PATH_BYTES_MAX];
    struct pacer p;
    struct rng rng = scenario_begin(ctx, SC_POWERCUT, share, dir, sizeof(dir), &p);
    path_join(journal, sizeof(journal), dir, ".", "journal");
    const size_t filler_max = 600;
    static const char *const modes[] = {"sync", "async", "none"};
    static const enum check_rule rules[] = {RULE_EXACT, RULE_HISTORY, RULE_BASE};
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        unsigned mode = it % 3u;
        char fault[PATH_BYTES_MAX + 128];
        uint64_t cut_seed = rng_next(&rng);
        snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",powercut=%" PRIu64 ",powercut_log=%s",
                 rng_next(&rng) >> 1, 1 + rng_below(&rng, it % 4 == 0 ? 3000 : 400), journal);
        struct child_run cr = {
            .dir = dir, .seed = rng_next(&rng), .iteration = it + 1, .filler_max = filler_max};
        cr.oo.fault = fault;
        cr.oo.durability = modes[mode];
        cr.oo.segment = "1M";
        cr.oo.ckpt_bytes = it % 2 ? "2M" : "128K";
        cr.checkpoints = true;
        /* The cut usually comes at the seeded operation; without one soon (async and none make
         * few), the parent kills the child itself: the journal is whole at any moment. */
        cr.kill_after_ms = 30 + rng_below(&rng, it % 4 == 0 ? 2500 : 600);
        bool killed = false;
        int status = child_run_judged(ctx, &cr, it, &killed);
        if (!killed && WIFSIGNALED(status))
            res->faults++; /* cut at the seeded operation */
        /* The dead child's io_uring instance is torn down by the kernel after the child is
         * reaped, and operations it had in flight (an async-mode fdatasync, a WAL write in an
         * io-wq worker) can still complete then: cut under them and the reopen saw transient
         * -EIO (seed 777, async iterations). No event says when the teardown is over, so the
         * cut waits a moment. A real power cut has no such afterlife. */
        usleep(POWERCUT_SETTLE_US);
        struct io_powercut_report rep;
        memset(&rep, 0, sizeof(rep));
        int rc = io_powercut_apply(journal, cut_seed, &rep);
        if (rc) {
            fprintf(stderr, "cstore-fault: cannot apply the power cut of %s: %s\n", journal,
                    cs_strerror(rc));
            exit(2);
        }
        unlink(journal);
        /* With --db, the state after the cut is kept until the reopen succeeded, so that a
         * failing one can be replayed. */
        char before[PATH_BYTES_MAX], keep[PATH_BYTES_MAX];
        path_join(before, sizeof(before), dir, ".", "cut");
        path_join(keep, sizeof(keep), dir, ".", "failed");
        bool kept =
            ctx->cfg.db_given && remove_tree(before, 0) == 0 && copy_tree(dir, before, 0) == 0;
        ctx->model.rule = rules[mode];
        ctx->model.lost_acked = 0;
        rc = reopen_and_check(ctx, dir, NULL, false, filler_max);
        ctx->model.rule = RULE_EXACT;
        res->damage += ctx->model.lost_acked;
        if (rc) {
            model_violation(&ctx->model,
                            "%s iteration %u (%s, \"%s\", cut seed %" PRIu64
                            "): reopen after a power cut failed: %s: %s",
                            dir, it, modes[mode], fault, cut_seed, cs_strerror(rc),
                            cs_last_error());
            /* Keep the first failing state for inspection (the next reopen may repair it). */
            if (kept && access(keep, F_OK) != 0 && rename(before, keep) == 0)
                fprintf(stderr, "cstore-fault: the state after the cut, which failed to open: %s\n",
                        keep);
        }
        if (kept)
            remove_tree(before, 0);
        check_no_failures(&ctx->model, it);
        note(ctx,
             "powercut %u: %s, \"%s\", %s; cut seed %" PRIu64 ": %" PRIu64 " records, writes "
             "%" PRIu64 " durable / %" PRIu64 " kept / %" PRIu64 " torn / %" PRIu64
             " lost, metadata %" PRIu64 " undone, %" PRIu64 " truncated; acked lost %" PRIu64
             ", violations %" PRIu64 "\n",
             it, modes[mode], fault, killed ? "killed by the parent" : "cut at its operation",
             cut_seed, rep.records, rep.writes_durable, rep.writes_kept, rep.writes_torn,
             rep.writes_lost, rep.meta_undone, rep.truncated, ctx->model.lost_acked,
             res->violations);
        res->iterations++;
    }
    res->acked_ops += ctx->model.acked_ops;
    res->failed_ops += ctx->model.failed_ops;
    unlink(journal);
    scenario_dir_done(ctx, dir);
}
