/* Recovery of one shard's write-ahead log (wal_open): the format is at the top of wal.c.
 *
 * Segments are read in LSN order, through pread (a read error is an error
 * code, not a signal). base = the LSN of the checkpoint recovery loaded: records up to it are
 * skipped, and damage confined to them costs nothing. E = the next LSN the log must hold.
 *   1. A segment must start at E, or anywhere in (E, base + 1] (what it skips is in the
 *      checkpoint); the first segment at most at base + 1. Else: records are missing, corruption.
 *   2. In a segment, frames are read from WAL_IO_ALIGN on, one per fresh block. A valid frame must
 *      start at E, or in (E, base + 1]; its records after base are applied, E moves past it.
 *   3. A header of zeros ends the segment's data. A header or body that fails its checks is
 *      damage. Either way the rest of the segment (the written extents only: FIEMAP, else
 *      SEEK_DATA; a frame whose header is valid is not searched inside) is searched for the next
 *      frame whose header is valid, G:
 *      - G starts at most at base + 1: the damage lies in what the checkpoint holds; go on at G.
 *        (A damaged frame whose valid header says all its records are <= base is skipped the same
 *        way.)
 *      - G starts after E and its durable LSN < E: the damaged frames were not yet synced when G
 *        was sealed (a frame that starts at or before E is no later frame: damage). An async
 *        mode write-back that a power cut left with holes. The log is cut here (nothing synced
 *        is lost: async mode promises only what was synced). Only in the last segment.
 *      - otherwise: frames known durable are damaged: CS_ECORRUPT naming file and offset
 *        (salvage: cut here).
 *      With no G: in the last segment the tail is torn (zeros, or a frame a crash interrupted):
 *      cut here. In an earlier segment, zeros end its data (the next segment must start at E),
 *      and damage is corruption unless the next segment starts at most at base + 1.
 *   4. Cutting zeroes the rest of the segment and fdatasyncs it (not in verify mode, which
 *      changes nothing and opens every file read-only), and drops later segments. Appending
 *      then continues at the cut. When the checkpoint lies past the end of the log (base + 1 > E:
 *      damage within covered frames was cut), appending starts a new segment at base + 1, so the
 *      log never has a gap inside a segment.
 *   Leftover `.tmp` segments (never made visible) are removed, except in verify mode.
 */
#include "wal.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "cstore.h"
#include "io/fault.h"
#include "io/file.h"
#include "shards/wal_int.h"

/* ---- recovery ---- */

/* A window over one segment file, read with pread. */
struct seg_reader {
    struct io_fault *f; /* fault plan or NULL */
    int fd;             /* the segment */
    uint64_t size;      /* its size */
    uint8_t *buf;       /* window bytes */
    size_t cap;         /* bytes allocated for buf */
    uint64_t base;      /* file offset of buf[0] */
    size_t len;         /* valid bytes in buf */
};

/* Bytes [off, off + n) of the segment (off + n <= size), or NULL with *rc set. */
static const uint8_t *rd_at(struct seg_reader *rd, uint64_t off, size_t n, int *rc)
{
    cs_assert(off + n <= rd->size);
    if (off >= rd->base && off + n <= rd->base + rd->len)
        return rd->buf + (off - rd->base);
    size_t want = (size_t)cs_min_u64(rd->size - off, cs_max_size(n, WAL_READ_WINDOW));
    if (want > rd->cap) {
        uint8_t *p = realloc(rd->buf, want);
        if (!p) {
            *rc = -ENOMEM;
            return NULL;
        }
        rd->buf = p;
        rd->cap = want;
    }
    rd->len = 0;
    *rc = io_file_pread(rd->f, rd->fd, rd->buf, want, off);
    if (*rc)
        return NULL;
    rd->base = off;
    rd->len = want;
    return rd->buf;
}

struct replay {
    struct wal *w;             /* the log being opened */
    wal_apply_fn apply;        /* record consumer */
    void *arg;                 /* its argument */
    struct wal_recovery *info; /* results */
    struct seg_reader rd;      /* the segment being read */
    uint64_t salt;             /* its salt */
    uint8_t *raw;              /* decompression buffer */
    size_t raw_cap;            /* its size */
    uint64_t expect_lsn;       /* E: the LSN the log must continue with */
    uint64_t base_lsn;         /* records up to this LSN are in a checkpoint: skipped */
    enum wal_open_mode mode;   /* normal, verify or salvage */
    bool cut;                  /* the log ends in the segment just read; later ones are dropped */
    uint64_t end;              /* where the frames of the segment just read end */
    uint64_t prev_end;         /* and of the one before it (0: none) */
};

static int corrupt(struct replay *r, const char *path, uint64_t off, const char *what)
{
    snprintf(r->info->message, sizeof(r->info->message), "%s at %s offset %" PRIu64, what, path,
             off);
    return CS_ECORRUPT;
}

static void note(struct replay *r, const char *fmt, const char *path, uint64_t off)
{
    size_t n = strlen(r->info->message);
    if (n + 2 >= sizeof(r->info->message))
        return;
    if (n)
        n += (size_t)snprintf(r->info->message + n, sizeof(r->info->message) - n, "; ");
    snprintf(r->info->message + n, sizeof(r->info->message) - n, fmt, path, off);
}

/* The frame at off: its state, with its header in *h when that is valid. */
static int frame_at(struct replay *r, uint64_t off, struct frame_hdr *h, enum frame_state *st)
{
    int rc = 0;
    uint64_t avail = r->rd.size - off;
    size_t n = (size_t)cs_min_u64(avail, WAL_FRAME_HEADER_BYTES);
    const uint8_t *p = rd_at(&r->rd, off, n, &rc);
    if (!p)
        return rc;
    if (n < WAL_FRAME_HEADER_BYTES) {
        *st = all_zero(p, n) ? FRAME_ZERO : FRAME_BAD_HEAD;
        return 0;
    }
    *st = wal_head_state(p, r->salt, h);
    if (*st != FRAME_OK)
        return 0;
    if (h->body > avail - WAL_FRAME_HEADER_BYTES) {
        *st = FRAME_BAD_BODY;
        return 0;
    }
    p = rd_at(&r->rd, off, WAL_FRAME_HEADER_BYTES + (size_t)h->body, &rc);
    if (!p)
        return rc;
    if (XXH3_64bits_withSeed(p + WAL_FRAME_HEADER_BYTES, h->body, r->salt) != h->body_sum)
        *st = FRAME_BAD_BODY;
    return 0;
}

/* The search for the next frame with a valid header (see the top comment, step 3). */
struct later {
    struct replay *r;     /* the replay */
    uint64_t from;        /* first offset to look at */
    uint64_t off;         /* where G was found (UINT64_MAX: not yet) */
    struct frame_hdr hdr; /* G's header */
    int rc;               /* read error */
};

static int later_extent(void *arg, uint64_t off, uint64_t len)
{
    struct later *l = arg;
    uint64_t end = off + len;
    for (uint64_t o = align_io(cs_max_u64(off, l->from)); o < end; o += WAL_IO_ALIGN) {
        if (l->r->rd.size - o < WAL_FRAME_HEADER_BYTES)
            break;
        const uint8_t *p = rd_at(&l->r->rd, o, WAL_FRAME_HEADER_BYTES, &l->rc);
        if (!p)
            return 1;
        if (cs_get_le32(p) == WAL_FRAME_MAGIC &&
            wal_head_state(p, l->r->salt, &l->hdr) == FRAME_OK) {
            l->off = o;
            return 1;
        }
    }
    return 0;
}

/* Find G in [from, size); l->off stays UINT64_MAX when there is none. */
static int find_later(struct replay *r, uint64_t from, struct later *l)
{
    memset(l, 0, sizeof(*l));
    l->r = r;
    l->from = from;
    l->off = UINT64_MAX;
    int rc = io_file_written(r->w->fault, r->rd.fd, from, r->rd.size, later_extent, l);
    if (rc == 1)
        rc = l->rc;
    return rc;
}

/* Apply the records of the valid frame at off (header h) that lie after the checkpoint, and
 * move E past it. A body that does not decode, or a record the shard refuses as inconsistent
 * with the state before it, is CS_ECORRUPT naming path and off. */
static int replay_frame(struct replay *r, uint64_t off, const struct frame_hdr *h, const char *path)
{
    int rc = 0;
    const uint8_t *p = rd_at(&r->rd, off, WAL_FRAME_HEADER_BYTES + (size_t)h->body, &rc);
    if (!p)
        return rc;
    uint64_t applied = 0;
    rc = wal_frame_decode(p, h, r->base_lsn, &r->raw, &r->raw_cap, r->apply, r->arg, &applied);
    r->info->records += applied;
    if (rc == CS_ECORRUPT)
        return corrupt(r, path, off,
                       "malformed WAL frame body, or a record inconsistent with the log before it");
    if (rc)
        return rc;
    r->info->frames++;
    r->info->last_lsn = frame_last(h);
    r->expect_lsn = frame_last(h) + 1;
    return 0;
}

/* May the log continue at lsn? At E, or past E over records the checkpoint holds. */
static bool continues(const struct replay *r, uint64_t lsn)
{
    return lsn == r->expect_lsn || (lsn > r->expect_lsn && lsn <= r->base_lsn + 1);
}

/* The log ends at off of this segment (cut): what follows is dropped. */
static void cut_at(struct replay *r, uint64_t off, uint64_t *end)
{
    r->cut = true;
    *end = off;
}

/* Damage or the end of data at off, in a segment (next_first: the next segment's first LSN, 0
 * for the last). Decides per step 3 of the top comment; *resume receives where to go on
 * (UINT64_MAX: the segment's data ends at *end). */
static int at_gap(struct replay *r, const char *path, uint64_t off, enum frame_state st,
                  const struct frame_hdr *h, uint64_t next_first, uint64_t *resume, uint64_t *end)
{
    *resume = UINT64_MAX;
    *end = off;
    if (st == FRAME_BAD_BODY && frame_last(h) <= r->base_lsn) {
        r->info->skipped_bytes += frame_total(h);
        note(r, "skipped a damaged WAL frame the checkpoint holds at %s offset %" PRIu64, path,
             off);
        *resume = off + cs_max_u64(frame_total(h), WAL_IO_ALIGN);
        return 0;
    }
    uint64_t from =
        off + (st == FRAME_BAD_BODY ? cs_max_u64(frame_total(h), WAL_IO_ALIGN) : WAL_IO_ALIGN);
    struct later g = {.off = UINT64_MAX};
    int rc = from < r->rd.size ? find_later(r, from, &g) : 0;
    if (rc)
        return rc;
    if (from >= r->rd.size)
        g.off = UINT64_MAX;
    bool salvage = r->mode == WAL_OPEN_SALVAGE;
    if (g.off != UINT64_MAX) {
        if (g.hdr.first_lsn <= r->base_lsn + 1 && g.hdr.first_lsn >= r->expect_lsn) {
            if (st != FRAME_ZERO) {
                r->info->skipped_bytes += g.off - off;
                /* G continuing at E: the damaged blocks held no record the log needs */
                note(r,
                     g.hdr.first_lsn == r->expect_lsn
                         ? "skipped damaged WAL bytes that hold no record at %s offset %" PRIu64
                         : "skipped damaged WAL bytes the checkpoint holds at %s offset %" PRIu64,
                     path, off);
            }
            *resume = g.off;
            return 0;
        }
        if (g.hdr.durable_lsn < r->expect_lsn && g.hdr.first_lsn > r->expect_lsn &&
            next_first == 0) {
            /* frames after the damage were sealed before it was synced: an unsynced tail */
            r->info->torn_bytes += r->rd.size - off;
            r->info->lost_frames++;
            note(r, "cut a WAL tail that was never synced at %s offset %" PRIu64, path, off);
            cut_at(r, off, end);
            return 0;
        }
        rc = corrupt(r, path, off,
                     st == FRAME_ZERO ? "WAL frames missing before valid ones"
                                      : "damaged WAL frame before valid ones");
        if (salvage) {
            r->info->salvaged_bytes += r->rd.size - off;
            cut_at(r, off, end);
            return 0;
        }
        return rc;
    }
    if (next_first == 0) {
        if (st != FRAME_ZERO) {
            r->info->torn_bytes += r->rd.size - off;
            note(r, "cut a torn WAL tail at %s offset %" PRIu64, path, off);
            cut_at(r, off, end);
        }
        return 0;
    }
    if (st == FRAME_ZERO || next_first <= r->base_lsn + 1) {
        if (st != FRAME_ZERO) {
            r->info->skipped_bytes += r->rd.size - off;
            note(r, "skipped damaged WAL bytes the checkpoint holds at %s offset %" PRIu64, path,
                 off);
        }
        return 0; /* the next segment must continue the log (replay_file checks) */
    }
    rc = corrupt(r, path, off, "damaged WAL frame in a full segment");
    if (salvage) {
        r->info->salvaged_bytes += r->rd.size - off;
        cut_at(r, off, end);
        return 0;
    }
    return rc;
}

/* Replay the frames of the segment open in r->rd (path names it in messages), from its first
 * frame block on: valid frames that continue the log are applied (step 2 of the top comment),
 * anything else goes to at_gap (step 3). *end receives where its frames end; r->cut says the
 * log is cut there. */
static int replay_segment(struct replay *r, const char *path, uint64_t next_first, uint64_t *end)
{
    uint64_t off = WAL_IO_ALIGN;
    for (uint64_t steps = 0; off < r->rd.size; steps++) {
        cs_assert(steps <= r->rd.size / WAL_IO_ALIGN); /* every step moves off forward */
        struct frame_hdr h;
        enum frame_state st = FRAME_ZERO;
        int rc = frame_at(r, off, &h, &st);
        if (rc)
            return rc;
        if (st == FRAME_OK && continues(r, h.first_lsn)) {
            rc = replay_frame(r, off, &h, path);
            if (rc == CS_ECORRUPT && r->mode == WAL_OPEN_SALVAGE) {
                r->info->salvaged_bytes += r->rd.size - off;
                cut_at(r, off, end);
                return 0;
            }
            if (rc)
                return rc;
            off += frame_total(&h);
            continue;
        }
        if (st == FRAME_OK) {
            rc = corrupt(r, path, off, "WAL frame out of LSN sequence");
            if (r->mode != WAL_OPEN_SALVAGE)
                return rc;
            r->info->salvaged_bytes += r->rd.size - off;
            cut_at(r, off, end);
            return 0;
        }
        uint64_t resume;
        rc = at_gap(r, path, off, st, &h, next_first, &resume, end);
        if (rc || resume == UINT64_MAX)
            return rc;
        off = resume;
    }
    *end = off;
    return 0;
}

/* One segment file, opened once. The header of every segment but the first is read before the
 * segment before it is replayed (its prev_end field limits that one) and kept for its own
 * replay, so that each header is read once; the first segment's header comes with its first
 * window of frames. */
struct seg_file {
    int fd;                                /* the open file, or -1 */
    int rc;                                /* the open's error (0: none), reported by its replay */
    uint64_t size;                         /* file bytes */
    bool have_hdr;                         /* hdr holds the header bytes */
    uint8_t hdr[WAL_SEGMENT_HEADER_BYTES]; /* as read (not yet checked) */
};

/* Open segment first_lsn (read-only in verify mode) and, with read_hdr, read its header. A
 * failed header read is not an error here: the segment's replay reads it again and reports. */
static void seg_file_open(struct replay *r, uint64_t first_lsn, bool read_hdr, struct seg_file *sf)
{
    struct wal *w = r->w;
    char path[PATH_MAX];
    sf->fd = -1;
    sf->size = 0;
    sf->have_hdr = false;
    int rc = wal_seg_path(path, sizeof(path), w->dir, first_lsn, false);
    if (!rc)
        rc = io_file_open(w->fault, path, r->mode == WAL_OPEN_VERIFY ? O_RDONLY : O_RDWR, &sf->fd);
    if (!rc)
        rc = io_file_size(sf->fd, &sf->size);
    sf->rc = rc;
    if (!rc && read_hdr)
        sf->have_hdr = io_file_pread(w->fault, sf->fd, sf->hdr, sizeof(sf->hdr), 0) == 0;
}

/* Where segment first_lsn (sf) says the segment before it ends (0: not recorded, or its header
 * could not be read or is not valid: replaying that segment reports it). */
static uint64_t seg_file_prev_end(const struct replay *r, uint64_t first_lsn,
                                  const struct seg_file *sf)
{
    uint64_t salt = 0, prev_end = 0;
    if (!sf->have_hdr || wal_seg_header_check(sf->hdr, r->w->shard, first_lsn, &salt, &prev_end))
        return 0;
    return prev_end;
}

/* Replay segment first_lsn, open in sf (the call takes its fd: closed, or kept as the log's
 * append target when this is the last segment). next_first: the next segment's first LSN (0:
 * this is the last); limit: where the next segment says this one's frames end (0: its whole
 * size). */
static int replay_file(struct replay *r, uint64_t first_lsn, struct seg_file *sf,
                       uint64_t next_first, uint64_t limit, bool *last)
{
    struct wal *w = r->w;
    char path[PATH_MAX];
    int fd = sf->fd;
    sf->fd = -1;
    int rc = sf->rc;
    bool readonly = r->mode == WAL_OPEN_VERIFY;
    if (!rc)
        rc = wal_seg_path(path, sizeof(path), w->dir, first_lsn, false);
    if (rc) {
        io_file_close(fd);
        return rc;
    }
    uint64_t size = sf->size;
    r->rd.fd = fd;
    r->rd.size = limit && limit < size ? limit : size; /* past limit: late writes, never read */
    r->rd.len = 0;
    uint64_t end = 0;
    if (size < WAL_IO_ALIGN) {
        rc = corrupt(r, path, 0, "WAL segment shorter than its header block");
    } else {
        const uint8_t *p = sf->have_hdr ? sf->hdr : rd_at(&r->rd, 0, WAL_SEGMENT_HEADER_BYTES, &rc);
        if (p) {
            uint64_t prev_end;
            rc = wal_seg_header_check(p, w->shard, first_lsn, &r->salt, &prev_end);
            if (rc == CS_EVERSION)
                snprintf(r->info->message, sizeof(r->info->message),
                         "WAL segment %s has another format version", path);
            else if (rc)
                rc = corrupt(r, path, 0, "bad WAL segment header");
            else if (!continues(r, first_lsn))
                rc = corrupt(r, path, 0, "WAL segment does not continue the log before it");
        }
    }
    if (rc == CS_ECORRUPT && r->mode == WAL_OPEN_SALVAGE) {
        io_file_close(fd);
        return -EXDEV; /* this segment and every later one are dropped */
    }
    if (!rc) {
        r->expect_lsn = first_lsn;
        rc = replay_segment(r, path, next_first, &end);
    }
    if (!rc) {
        r->prev_end = r->end;
        r->end = align_io(end);
    }
    if (r->cut)
        *last = true; /* the log ends here: later segments are dropped */
    if (!rc && r->cut && !readonly) {
        rc = io_file_zero(w->fault, fd, end, size - end);
        if (!rc)
            rc = io_file_sync(w->fault, fd);
    }
    if (rc || !*last) {
        io_file_close(fd);
        return rc;
    }
    w->fd = fd;
    w->seg_first_lsn = first_lsn;
    w->seg_size = size;
    w->seg_off = align_io(end);
    w->seg_salt = r->salt;
    w->zeroed_end = align_io(end); /* at least; what lies beyond is zeros or dead bytes */
    w->direct = !readonly && io_file_direct(fd) == 0;
    return 0;
}

/* Salvage or a cut: remove segments [from, count) and sync the folder. */
static int seg_remove_from(struct wal *w, const struct seg_list *segs, size_t from)
{
    for (size_t i = from; i < segs->count; i++) {
        char path[PATH_MAX];
        int rc = wal_seg_path(path, sizeof(path), w->dir, segs->lsn[i], false);
        if (!rc)
            rc = io_file_unlink(w->fault, path);
        if (rc)
            return rc;
    }
    return io_dir_sync(w->fault, w->dir);
}

/* Replay every segment of segs, each opened once, the next one before the current one is
 * replayed (its header limits the current one); on return *used is the count of segments
 * kept. */
static int replay_all(struct replay *r, const struct seg_list *segs, size_t *used)
{
    size_t i = 0;
    int rc = 0;
    struct seg_file cur = {.fd = -1}, next = {.fd = -1};
    if (segs->count)
        seg_file_open(r, segs->lsn[0], false, &cur);
    for (; i < segs->count && !rc && !r->cut; i++) {
        bool last = i + 1 == segs->count;
        uint64_t next_first = last ? 0 : segs->lsn[i + 1];
        uint64_t limit = 0;
        if (!last) {
            seg_file_open(r, next_first, true, &next);
            limit = seg_file_prev_end(r, next_first, &next);
        }
        rc = replay_file(r, segs->lsn[i], &cur, next_first, limit, &last);
        cur = next;
        next.fd = -1;
    }
    io_file_close(cur.fd); /* opened for a segment the loop did not reach (an error, a cut) */
    if (rc == -EXDEV) {    /* salvage: segment i - 1 and later ones go */
        i--;
        r->cut = true;
        rc = 0;
    }
    *used = i;
    return rc;
}

int wal_open(struct wal *w, const struct wal_config *cfg, wal_apply_fn apply, void *arg,
             struct wal_recovery *info)
{
    cs_assert(cfg->segment_bytes >= WAL_SEGMENT_BYTES_MIN);
    memset(w, 0, sizeof(*w));
    memset(info, 0, sizeof(*info));
    w->fd = -1;
    if (snprintf(w->dir, sizeof(w->dir), "%s", cfg->dir) >= (int)sizeof(w->dir))
        return -ENAMETOOLONG;
    w->shard = cfg->shard;
    w->arena = cfg->arena;
    w->segment_bytes = cfg->segment_bytes;
    w->compress_bytes = cfg->compress_bytes;
    w->fault = cfg->fault;
    w->readonly = cfg->mode == WAL_OPEN_VERIFY;
    int rc = wal_slot_init(w, &w->slot[0]);
    if (!rc)
        rc = wal_slot_init(w, &w->slot[1]);
    struct seg_list segs = {0};
    if (!rc)
        rc = wal_seg_list_read(w, w->readonly, &segs);
    struct replay r = {.w = w,
                       .apply = apply,
                       .arg = arg,
                       .info = info,
                       .rd = {.f = cfg->fault, .fd = -1},
                       .base_lsn = cfg->base_lsn,
                       .mode = cfg->mode};
    r.expect_lsn = segs.count ? segs.lsn[0] : cfg->base_lsn + 1;
    if (!rc && segs.count && segs.lsn[0] > cfg->base_lsn + 1) {
        char path[PATH_MAX];
        if (wal_seg_path(path, sizeof(path), w->dir, segs.lsn[0], false) == 0)
            rc = corrupt(&r, path, 0,
                         "WAL records between the checkpoint and this segment are missing");
    }
    size_t used = 0;
    if (!rc)
        rc = replay_all(&r, &segs, &used);
    if (!rc && used < segs.count && !w->readonly) {
        rc = seg_remove_from(w, &segs, used);
        info->salvaged_segments = segs.count - used;
    }
    if (!rc && (info->salvaged_bytes || info->salvaged_segments)) {
        size_t n = strlen(info->message);
        snprintf(info->message + n, sizeof(info->message) - n,
                 "%ssalvage dropped %" PRIu64 " bytes and %" PRIu64 " later segments",
                 n ? "; " : "", info->salvaged_bytes, info->salvaged_segments);
    }
    w->segments = used;
    w->next_lsn = cs_max_u64(r.expect_lsn, cfg->base_lsn + 1);
    free(segs.lsn);
    free(r.raw);
    free(r.rd.buf);
    /* A log that ends before the checkpoint continues in a new segment: no gap inside one. After
     * an unclean close, too: late writes of the dead process may still land where the last
     * segment's frames end (see "LATE WRITES" in wal.c). */
    uint64_t prev_end = 0;
    if (!rc && w->fd >= 0 && !w->readonly && (w->next_lsn != r.expect_lsn || cfg->fresh_segment)) {
        prev_end = w->seg_off;
        /* The segment is never written again: give back its preallocated tail, which nothing
         * reads (the new segment's header says where it ends). Otherwise every unclean reopen
         * (a crash loop) would keep another whole segment of disk until a checkpoint. */
        if (w->seg_size > align_io(prev_end))
            io_file_release(w->fd, align_io(prev_end), w->seg_size - align_io(prev_end));
        io_file_close(w->fd);
        w->fd = -1;
        if (w->seg_first_lsn == w->next_lsn) {
            /* it holds no frame and the new one takes its name: remove it first (a late write
             * into it then lands in a file nobody reads); the new one ends the one before */
            char path[PATH_MAX];
            rc = wal_seg_path(path, sizeof(path), w->dir, w->seg_first_lsn, false);
            if (!rc)
                rc = io_file_unlink(w->fault, path);
            if (!rc)
                w->segments--;
            prev_end = r.prev_end;
        }
    }
    if (!rc && w->fd < 0 && !w->readonly)
        rc = wal_seg_create(w, w->next_lsn, w->segment_bytes, prev_end);
    if (rc)
        wal_close(w);
    return rc;
}
