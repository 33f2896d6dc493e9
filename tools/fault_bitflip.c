/* The bitflip scenario: write, close, flip 1..FLIPS_MAX random bits in random WAL segments and
 * checkpoint files (mostly within the written part, a quarter of WAL flips in the last frame),
 * reopen. The open must fail with CS_ECORRUPT (then the copy taken before the flips is put back
 * and must check out) or succeed with every acknowledged write intact, except what a reported
 * torn tail accounts for. */
#include "tools/fault_scenario.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLIPS_MAX 3u   /* bits flipped per bitflip iteration */
#define FILES_MAX 256u /* data files considered by bitflip */

/* ---- bitflip ---- */

struct flip {
    char path[PATH_BYTES_MAX]; /* file */
    uint64_t off;              /* byte */
    uint8_t mask;              /* bit */
};

/* WAL segments and checkpoint files of the database, into paths[]; returns the count. */
static unsigned data_files(const char *dir, char (*paths)[PATH_BYTES_MAX], unsigned max)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        if (strncmp(e->d_name, "shard-", 6) != 0)
            continue;
        char sub[PATH_BYTES_MAX];
        path_join(sub, sizeof(sub), dir, "/", e->d_name);
        DIR *sd = opendir(sub);
        struct dirent *f;
        while (sd && (f = readdir(sd)) && n < max) {
            if (strncmp(f->d_name, "wal-", 4) == 0 || strncmp(f->d_name, "snap-", 5) == 0)
                path_join(paths[n++], PATH_BYTES_MAX, sub, "/", f->d_name);
        }
        if (sd)
            closedir(sd);
    }
    if (d)
        closedir(d);
    return n;
}

/* Bytes up to and including the last non-zero one (preallocated WAL space is zeros). */
static uint64_t used_bytes(int fd, uint64_t size)
{
    static uint8_t buf[1u << 16];
    uint64_t end = size;
    for (unsigned steps = 0; end > 0 && steps < (1u << 16); steps++) {
        uint64_t start = end > sizeof(buf) ? end - sizeof(buf) : 0;
        ssize_t n = pread(fd, buf, (size_t)(end - start), (off_t)start);
        if (n != (ssize_t)(end - start))
            return size;
        for (size_t i = (size_t)n; i > 0; i--)
            if (buf[i - 1])
                return start + i;
        end = start;
    }
    return 0;
}

static bool flip_bit(const struct flip *f)
{
    int fd = open(f->path, O_RDWR);
    if (fd < 0)
        return false;
    uint8_t b;
    bool ok = pread(fd, &b, 1, (off_t)f->off) == 1;
    b ^= f->mask;
    ok = ok && pwrite(fd, &b, 1, (off_t)f->off) == 1 && fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Choose and apply up to FLIPS_MAX flips; returns how many were applied. */
static unsigned flip_some(const char *dir, struct rng *rng, struct flip *flips)
{
    static char paths[FILES_MAX][PATH_BYTES_MAX];
    unsigned nfiles = data_files(dir, paths, FILES_MAX);
    unsigned want = 1 + (unsigned)rng_below(rng, FLIPS_MAX), done = 0;
    for (unsigned i = 0; i < want && nfiles; i++) {
        struct flip *f = &flips[done];
        path_join(f->path, sizeof(f->path), paths[rng_below(rng, nfiles)], "", "");
        int fd = open(f->path, O_RDONLY);
        if (fd < 0)
            continue;
        struct stat st;
        uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        uint64_t used = size ? used_bytes(fd, size) : 0;
        close(fd);
        if (size == 0)
            continue;
        /* Mostly where the data is; a quarter of WAL flips in the last bytes written (the last
         * frame: a torn tail); now and then anywhere (stale or preallocated space). */
        uint64_t dice = rng_below(rng, 12);
        bool wal = strstr(f->path, "/wal-") != NULL;
        if (used && wal && dice < 3)
            f->off = used - 1 - rng_below(rng, used < 64 ? used : 64);
        else if (used && dice < 11)
            f->off = rng_below(rng, used);
        else
            f->off = rng_below(rng, size);
        f->mask = (uint8_t)(1u << rng_below(rng, 8));
        if (flip_bit(f))
            done++;
    }
    return done;
}

void run_bitflip(struct fault_ctx *ctx, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    struct pacer p;
    struct rng rng = scenario_begin(ctx, SC_BITFLIP, share, dir, sizeof(dir), &p);
    const size_t filler_max = 3000; /* big enough for compressed frames and rotation */
    struct open_opts oo = {.segment = "1M"};
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        cs_db *db = NULL;
        int rc = db_open(ctx, dir, &oo, &db);
        if (rc) {
            model_violation(&ctx->model, "%s iteration %u: open before writing failed: %s: %s", dir,
                            it, cs_strerror(rc), cs_last_error());
            break;
        }
        struct workload *w = workload_new(ctx, db, rng_next(&rng), it + 1, 40, filler_max);
        ctx->model.stage = "workload";
        workload_run(w);
        free(w);
        if (it % 3 == 2 && (rc = cs_checkpoint(db)) != 0)
            model_violation(&ctx->model, "iteration %u: cs_checkpoint failed: %s", it,
                            cs_strerror(rc));
        if (it % 3 == 2) {
            /* a few writes after the checkpoint, so that both kinds of file hold data */
            w = workload_new(ctx, db, rng_next(&rng), 0x400000u + it, 10, filler_max);
            ctx->model.stage = "workload";
            workload_run(w);
            free(w);
        }
        rc = cs_close(db);
        if (rc)
            model_violation(&ctx->model, "iteration %u: close failed: %s", it, cs_strerror(rc));
        if (ctx->model.failed_ops) {
            model_violation(&ctx->model, "iteration %u: %" PRIu64 " writes failed before any flip",
                            it, ctx->model.failed_ops);
            ctx->model.failed_ops = 0;
        }
        struct flip flips[FLIPS_MAX];
        char backup[PATH_BYTES_MAX];
        path_join(backup, sizeof(backup), dir, ".", "backup");
        remove_tree(backup, 0);
        if (copy_tree(dir, backup, 0) != 0) {
            fprintf(stderr, "cstore-fault: cannot copy %s to %s\n", dir, backup);
            exit(2);
        }
        unsigned nflips = flip_some(dir, &rng, flips);
        ctx->model.stage = "open after bit flips";
        rc = db_open(ctx, dir, &oo, &db);
        const char *outcome;
        if (rc) {
            outcome = rc == CS_ECORRUPT ? "CS_ECORRUPT" : "error";
            if (rc == CS_ECORRUPT)
                res->damage++;
            else
                model_violation(
                    &ctx->model,
                    "iteration %u: open after bit flips failed with %s (not CS_ECORRUPT): %s", it,
                    cs_strerror(rc), cs_last_error());
            note(ctx, "bitflip %u: %s\n", it, cs_last_error());
            /* Back to the state before the flips (a failed open may still have cut a torn tail
             * on another shard, so flipping the bits back is not enough): it must check out. */
            if (remove_tree(dir, 0) != 0 || rename(backup, dir) != 0) {
                fprintf(stderr, "cstore-fault: cannot restore %s\n", dir);
                exit(2);
            }
            rc = reopen_and_check(ctx, dir, &oo, false, filler_max);
            if (rc)
                model_violation(&ctx->model,
                                "iteration %u: open of the restored database failed: %s: %s", it,
                                cs_strerror(rc), cs_last_error());
        } else {
            unsigned torn;
            uint64_t mask = torn_mask(ctx, db, &torn);
            outcome = torn ? "torn tail" : "opened";
            res->damage += torn;
            model_check_db(&ctx->model, db, mask, true, true, filler_max);
            rc = cs_close(db);
            if (rc)
                model_violation(&ctx->model, "iteration %u: close failed: %s", it, cs_strerror(rc));
        }
        note(ctx, "bitflip %u: %u flips (%s +%" PRIu64 "), %s, violations %" PRIu64 "\n", it,
             nflips, nflips ? flips[0].path : "-", nflips ? flips[0].off : 0, outcome,
             res->violations);
        remove_tree(backup, 0);
        res->iterations++;
    }
    res->acked_ops += ctx->model.acked_ops;
    res->failed_ops += ctx->model.failed_ops;
    scenario_dir_done(ctx, dir);
}
