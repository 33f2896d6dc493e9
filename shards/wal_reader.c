/* Reading a live WAL from any thread: the records of one shard's log in LSN order, from a given
 * LSN up to one known durable, while the shard goes on appending (the change feed reads this way:
 * engine/feed.c). Format and rules: wal.c; recovery (wal_recovery.c) is the reader that may
 * repair, this one only reads.
 *
 * Why it is safe beside the writer: it reads only frames whose records are all at or below the
 * limit the caller gives, which must be durable (the shard's durable LSN): such a frame is whole on
 * disk and its blocks are never written again (a frame starts a fresh block; the next write
 * rewrites the block it ends in with the same bytes up to its end). Segments are opened by name;
 * one that a checkpoint removes meanwhile stays readable through the open descriptor, and one
 * removed before it was opened makes the position unreadable (CS_ENOTFOUND). After an unclean
 * close the writer starts a new segment at the LSN after the last good frame, so frames a dead
 * process wrote late into the old segment carry LSNs the new segment holds: the reader switches
 * to a segment as soon as the next LSN is its first, and never reads past that point.
 * Bad bytes are CS_ECORRUPT, never an assertion. */
#include "shards/wal_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "io/file.h"
#include "shards/wal_int.h"

struct seg_names {
    uint64_t *lsn;
    size_t n, cap;
};

static int seg_name(void *arg, const char *name)
{
    struct seg_names *s = arg;
    uint64_t lsn;
    char tail[8];
    if (strncmp(name, "wal-", 4) != 0 || strlen(name) != 4 + 16 + 4 ||
        sscanf(name + 4, "%16" SCNx64 "%7s", &lsn, tail) != 2 || strcmp(tail, ".log") != 0)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        uint64_t *l = realloc(s->lsn, cap * sizeof(*l));
        if (!l)
            return -ENOMEM;
        s->lsn = l;
        s->cap = cap;
    }
    s->lsn[s->n++] = lsn;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segments of the folder, sorted by first LSN. */
static int list_segments(const char *dir, struct seg_names *s)
{
    s->n = 0;
    int rc = io_dir_list(NULL, dir, seg_name, s);
    if (!rc)
        qsort(s->lsn, s->n, sizeof(uint64_t), cmp_u64);
    return rc;
}

static void seg_close(struct wal_reader *r)
{
    if (r->fd >= 0)
        io_file_close(r->fd);
    r->fd = -1;
}

/* Open the segment whose first LSN is first. */
static int seg_open(struct wal_reader *r, uint64_t first)
{
    seg_close(r);
    char path[PATH_MAX];
    int rc = wal_seg_path(path, sizeof(path), r->dir, first, false);
    if (!rc)
        rc = io_file_open(NULL, path, O_RDONLY, &r->fd);
    if (rc == -ENOENT)
        return CS_ENOTFOUND; /* removed by a checkpoint before we came */
    if (rc)
        return rc;
    uint8_t h[WAL_SEGMENT_HEADER_BYTES];
    uint64_t prev_end;
    rc = io_file_pread(NULL, r->fd, h, sizeof(h), 0);
    if (!rc)
        rc = wal_seg_header_check(h, r->shard, first, &r->salt, &prev_end);
    if (rc) {
        seg_close(r);
        return rc;
    }
    r->seg_first = first;
    r->off = WAL_IO_ALIGN;
    return 0;
}

int wal_reader_open(struct wal_reader *r, const char *dir, unsigned shard, uint64_t from)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->shard = shard;
    r->next = from ? from : 1;
    if (snprintf(r->dir, sizeof(r->dir), "%s", dir) >= (int)sizeof(r->dir))
        return -ENAMETOOLONG;
    struct seg_names s = {0};
    int rc = list_segments(dir, &s);
    size_t pick = s.n;
    for (size_t i = 0; !rc && i < s.n; i++)
        if (s.lsn[i] <= r->next)
            pick = i;
    if (!rc && pick == s.n)
        rc = CS_ENOTFOUND; /* older than every segment the folder still has */
    if (!rc)
        rc = seg_open(r, s.lsn[pick]);
    free(s.lsn);
    return rc;
}

void wal_reader_close(struct wal_reader *r)
{
    seg_close(r);
    free(r->frame);
    free(r->raw);
    free(r->recs);
    r->frame = r->raw = NULL;
    r->recs = NULL;
}

/* A segment after the current one starts at r->next: move to it. */
static int maybe_switch(struct wal_reader *r, bool *switched)
{
    *switched = false;
    struct seg_names s = {0};
    int rc = list_segments(r->dir, &s);
    for (size_t i = 0; !rc && i < s.n; i++)
        if (s.lsn[i] > r->seg_first && s.lsn[i] <= r->next) {
            rc = seg_open(r, s.lsn[i]);
            *switched = !rc;
        }
    free(s.lsn);
    return rc;
}

static int collect(void *arg, uint64_t lsn, const struct wal_rec *rec)
{
    struct wal_reader *r = arg;
    if (r->nrecs == r->cap_recs) {
        size_t cap = r->cap_recs ? r->cap_recs * 2 : 64;
        struct wal_reader_rec *n = realloc(r->recs, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        r->recs = n;
        r->cap_recs = cap;
    }
    r->recs[r->nrecs].lsn = lsn;
    r->recs[r->nrecs++].rec = *rec;
    return 0;
}

/* Load the frame holding r->next (all of whose records are <= limit). 1: not there yet. */
static int load_frame(struct wal_reader *r, uint64_t limit)
{
    for (;;) {
        bool switched;
        int rc = maybe_switch(r, &switched);
        if (rc)
            return rc;
        uint8_t h[WAL_FRAME_HEADER_BYTES];
        size_t got = 0;
        rc = io_file_read_at(NULL, r->fd, h, sizeof(h), r->off, &got);
        if (rc)
            return rc;
        struct frame_hdr fh;
        if (got < sizeof(h) || wal_head_state(h, r->salt, &fh) != FRAME_OK)
            return switched ? CS_ECORRUPT : 1; /* not written yet (or the next segment is due) */
        if (frame_last(&fh) > limit && fh.first_lsn <= r->next)
            return 1; /* the frame holding the next record is not durable yet */
        size_t total = frame_total(&fh);
        if (total > r->cap_frame) {
            uint8_t *n = realloc(r->frame, total);
            if (!n)
                return -ENOMEM;
            r->frame = n;
            r->cap_frame = total;
        }
        rc = io_file_pread(NULL, r->fd, r->frame, total, r->off);
        if (!rc && wal_frame_state(r->frame, total, r->salt, &fh) != FRAME_OK)
            rc = CS_ECORRUPT;
        if (rc)
            return rc;
        r->off += total;
        if (frame_last(&fh) < r->next)
            continue; /* before the position: skip */
        if (fh.first_lsn > r->next)
            return CS_ECORRUPT; /* a hole in the log */
        r->nrecs = r->at = 0;
        uint64_t applied = 0;
        rc = wal_frame_decode(r->frame, &fh, r->next - 1, &r->raw, &r->cap_raw, collect, r,
                              &applied);
        return rc;
    }
}

int wal_reader_next(struct wal_reader *r, uint64_t limit, uint64_t *lsn, struct wal_rec *rec)
{
    if (r->fd < 0)
        return CS_EINVAL;
    while (r->at == r->nrecs) {
        if (r->next > limit)
            return 1;
        int rc = load_frame(r, limit);
        if (rc)
            return rc;
    }
    *lsn = r->recs[r->at].lsn;
    *rec = r->recs[r->at++].rec;
    r->next = *lsn + 1;
    return 0;
}

void wal_reader_unread(struct wal_reader *r)
{
    cs_assert(r->at > 0);
    r->at--;
    r->next = r->recs[r->at].lsn;
}
