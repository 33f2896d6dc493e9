/* The reader of the CLI's `load` command.
 *
 * Input: one record per line, KEY<TAB>VALUE<LF>, with the escapes of tools/lineformat.c inside
 * key and value; a final line without LF counts; NUL bytes are data. A line is refused, never
 * guessed at, when it is empty, has no TAB or a second raw TAB, or holds a bad escape; a line
 * longer than LOAD_LINE_BYTES_MAX is refused before it is buffered whole. Keys and values that
 * break the engine's limits are refused by their put. The first refused line, failed put, read
 * error or stop request ends the load; records before it are stored, and the result names the
 * line.
 *
 * Pipeline: up to LOAD_DEPTH puts are in flight through one cs_session (so a durable load
 * shares fdatasyncs), and at most LOAD_INFLIGHT_BYTES_MAX bytes of keys and values (one line
 * may exceed it alone). Each put owns a slot whose buffer holds its key and value until it
 * completes; a free slot is taken from a stack, and buffers that grew past LOAD_SLOT_KEEP_BYTES
 * are freed on completion so one huge record does not pin LOAD_DEPTH copies. Invariants: every
 * slot is either on the free stack or in flight, never both; inflight_bytes is the sum of the
 * keys and values of the slots in flight. When puts fail, the one of the earliest line is
 * reported. */
#include "tools/load.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/lineformat.h"
#include "util.h"

#define LOAD_SLOT_KEEP_BYTES (64u << 10) /* slot buffers above this are freed on reap */
#define LOAD_REAP_MAX 64u                /* completions reaped per poll */
#define LOAD_LINE_CAP_MIN 4096u          /* first allocation of the line buffer */
#define LOAD_SLOT_CAP_MIN 256u           /* first allocation of a slot's buffer */
#define LOAD_PROGRESS_LINES 256u         /* lines between progress calls */

int load_reader_init(struct load_reader *r, int fd)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->buf = malloc(LOAD_READ_CHUNK_BYTES);
    return r->buf != NULL ? 0 : -ENOMEM;
}

void load_reader_free(struct load_reader *r)
{
    free(r->buf);
    free(r->line);
    r->buf = NULL;
    r->line = NULL;
    r->line_cap = 0;
}

/* Make room for need bytes in r->line. Returns 0 or -ENOMEM (r->line unchanged). */
static int reader_reserve(struct load_reader *r, size_t need)
{
    if (need <= r->line_cap)
        return 0;
    size_t cap = r->line_cap ? r->line_cap : LOAD_LINE_CAP_MIN;
    while (cap < need)
        cap *= 2;
    char *p = realloc(r->line, cap);
    if (p == NULL)
        return -ENOMEM;
    r->line = p;
    r->line_cap = cap;
    return 0;
}

int load_reader_next(struct load_reader *r, const volatile sig_atomic_t *stop)
{
    cs_assert(r->buf != NULL);
    r->line_len = 0;
    int got = 0; /* some byte of this line was seen */
    for (;;) {
        if (r->pos == r->len) {
            if (r->eof)
                break;
            ssize_t n = read(r->fd, r->buf, LOAD_READ_CHUNK_BYTES);
            if (n < 0) {
                if (errno == EINTR && (stop == NULL || !*stop))
                    continue;
                return -errno;
            }
            if (n == 0) {
                r->eof = 1;
                break;
            }
            r->pos = 0;
            r->len = (size_t)n;
        }
        got = 1;
        const char *start = r->buf + r->pos;
        size_t avail = r->len - r->pos;
        const char *lf = memchr(start, '\n', avail);
        size_t take = lf != NULL ? (size_t)(lf - start) : avail;
        if (r->line_len + take > LOAD_LINE_BYTES_MAX)
            return -EMSGSIZE;
        int rc = reader_reserve(r, r->line_len + take);
        if (rc != 0)
            return rc;
        if (take > 0) /* r->line is still NULL before the first byte */
            memcpy(r->line + r->line_len, start, take);
        r->line_len += take;
        r->pos += take;
        if (lf != NULL) {
            r->pos++; /* the LF */
            break;
        }
    }
    cs_assert(r->line_len <= LOAD_LINE_BYTES_MAX);
    if (!got)
        return 0;
    r->line_no++;
    return 1;
}

const char *load_parse_line(const char *line, size_t n, char *out, size_t *klen, size_t *vlen,
                            const char **field)
{
    *field = NULL;
    if (n == 0)
        return "empty (a record is KEY<TAB>VALUE)";
    const char *tab = memchr(line, '\t', n);
    if (tab == NULL)
        return "no TAB between key and value";
    size_t kraw = (size_t)(tab - line);
    if (memchr(tab + 1, '\t', n - kraw - 1) != NULL)
        return "a second TAB (write a TAB inside a key or value as \\t)";
    const char *bad = lineformat_unescape(line, kraw, out, klen);
    if (bad != NULL) {
        *field = "key";
        return bad;
    }
    cs_assert(*klen <= kraw);
    bad = lineformat_unescape(tab + 1, n - kraw - 1, out + *klen, vlen);
    if (bad != NULL) {
        *field = "value";
        return bad;
    }
    cs_assert(*klen + *vlen < n);
    return NULL;
}

/* A put in flight: its key and value bytes, which must stay put until it completes. */
struct load_slot {
    char *buf;                  /* key then value */
    size_t cap;                 /* bytes allocated for buf */
    size_t klen;                /* key bytes at buf */
    size_t vlen;                /* value bytes after the key */
    unsigned long long line_no; /* input line, for the result */
};

struct load {
    const struct load_config *cfg; /* what to load where */
    cs_session *session;           /* LOAD_DEPTH deep */
    struct load_slot *slots;       /* LOAD_DEPTH slots */
    unsigned *free_slots;          /* stack of free slot indexes */
    unsigned free_count;           /* entries in free_slots */
    size_t inflight_bytes;         /* key+value bytes of the puts in flight */
    unsigned long long loaded;     /* puts completed successfully */
    int err;                       /* the earliest failed put's code, or 0 */
    unsigned long long err_line;   /* its line */
};

/* Record a failure of line line_no, keeping the earliest. */
static void load_note_error(struct load *ld, int rc, unsigned long long line_no)
{
    cs_assert(rc != 0);
    if (ld->err == 0 || line_no < ld->err_line) {
        ld->err = rc;
        ld->err_line = line_no;
    }
}

/* Reap at least min completions, returning their slots to the free stack. Returns 0 or the
 * error of cs_session_poll. */
__attribute__((warn_unused_result)) static int load_reap(struct load *ld, unsigned min)
{
    struct cs_completion done[LOAD_REAP_MAX];
    unsigned want = min;
    do {
        unsigned m = want < LOAD_REAP_MAX ? want : LOAD_REAP_MAX;
        int n = cs_session_poll(ld->session, done, LOAD_REAP_MAX, m);
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) {
            uint64_t idx = done[i].user_data;
            cs_assert(idx < LOAD_DEPTH);
            struct load_slot *s = &ld->slots[idx];
            if (done[i].rc == 0)
                ld->loaded++;
            else
                load_note_error(ld, done[i].rc, s->line_no);
            cs_free(done[i].val);
            cs_assert(ld->inflight_bytes >= s->klen + s->vlen);
            ld->inflight_bytes -= s->klen + s->vlen;
            if (s->cap > LOAD_SLOT_KEEP_BYTES) {
                free(s->buf);
                s->buf = NULL;
                s->cap = 0;
            }
            cs_assert(ld->free_count < LOAD_DEPTH);
            ld->free_slots[ld->free_count++] = (unsigned)idx;
        }
        want = (unsigned)n >= want ? 0 : want - (unsigned)n;
    } while (want > 0);
    return 0;
}

/* Take a free slot with room for n bytes, reaping completions until one is free and the bytes
 * in flight leave room for n. Returns 0 and *idx, or an error (ld->err is set). */
static int load_take_slot(struct load *ld, size_t n, unsigned long long line_no, unsigned *idx)
{
    while (ld->free_count == 0 ||
           (ld->free_count < LOAD_DEPTH && ld->inflight_bytes + n > LOAD_INFLIGHT_BYTES_MAX)) {
        int rc = load_reap(ld, 1);
        if (rc != 0) {
            load_note_error(ld, rc, line_no);
            return rc;
        }
    }
    *idx = ld->free_slots[ld->free_count - 1];
    struct load_slot *s = &ld->slots[*idx];
    if (s->cap < n) {
        size_t cap = n < LOAD_SLOT_CAP_MIN ? LOAD_SLOT_CAP_MIN : n;
        char *p = realloc(s->buf, cap);
        if (p == NULL) {
            load_note_error(ld, -ENOMEM, line_no);
            return -ENOMEM;
        }
        s->buf = p;
        s->cap = cap;
    }
    return 0;
}

/* Parse the reader's line into a free slot and submit its put. Returns 0; 1 when the line is
 * refused (res says why); or a negative code with ld->err set. */
static int load_line(struct load *ld, const struct load_reader *r, struct load_result *res)
{
    unsigned idx;
    int rc = load_take_slot(ld, r->line_len, r->line_no, &idx);
    if (rc != 0)
        return rc;
    struct load_slot *s = &ld->slots[idx];
    const char *field;
    const char *bad = load_parse_line(r->line, r->line_len, s->buf, &s->klen, &s->vlen, &field);
    if (bad != NULL) {
        res->stop = LOAD_BAD_LINE;
        res->line_no = r->line_no;
        res->reason = bad;
        res->field = field;
        return 1;
    }
    s->line_no = r->line_no;
    rc =
        cs_session_put(ld->session, ld->cfg->coll, s->buf, s->klen, s->buf + s->klen, s->vlen, idx);
    if (rc != 0) {
        load_note_error(ld, rc, r->line_no);
        return rc;
    }
    ld->free_count--;
    ld->inflight_bytes += s->klen + s->vlen;
    return 0;
}

/* Read and submit every line until the input ends or something stops the load; res->stop is
 * set for every cause but a failed put (ld->err). */
static void load_lines(struct load *ld, struct load_reader *r, struct load_result *res)
{
    const struct load_config *cfg = ld->cfg;
    for (;;) {
        if (cfg->stop != NULL && *cfg->stop) {
            res->stop = LOAD_INTERRUPTED;
            res->line_no = r->line_no;
            return;
        }
        int rc = load_reader_next(r, cfg->stop);
        if (rc == 0)
            return;
        if (rc == -EINTR && cfg->stop != NULL && *cfg->stop)
            continue;
        if (rc == -EMSGSIZE) {
            res->stop = LOAD_TOO_LONG;
            res->line_no = r->line_no + 1;
            return;
        }
        if (rc < 0) {
            res->stop = LOAD_READ_FAILED;
            res->line_no = r->line_no;
            res->rc = rc;
            return;
        }
        if (load_line(ld, r, res) != 0 || ld->err != 0)
            return;
        if (cfg->progress != NULL && (r->line_no % LOAD_PROGRESS_LINES) == 0)
            cfg->progress(cfg->progress_arg, ld->loaded);
    }
}

int load_run(const struct load_config *cfg, struct load_result *res)
{
    cs_assert(cfg->db != NULL);
    cs_assert(cfg->coll != NULL);
    memset(res, 0, sizeof(*res));
    res->stop = LOAD_END;
    struct load ld = {.cfg = cfg};
    struct load_reader r;
    int rc = load_reader_init(&r, cfg->fd);
    if (rc != 0)
        return rc;
    ld.slots = calloc(LOAD_DEPTH, sizeof(*ld.slots));
    ld.free_slots = malloc(LOAD_DEPTH * sizeof(*ld.free_slots));
    if (ld.slots == NULL || ld.free_slots == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < LOAD_DEPTH; i++)
        ld.free_slots[i] = LOAD_DEPTH - 1 - i;
    ld.free_count = LOAD_DEPTH;
    rc = cs_session_open(cfg->db, LOAD_DEPTH, &ld.session);
    if (rc != 0)
        goto fail;

    load_lines(&ld, &r, res);
    int reap = load_reap(&ld, cs_session_inflight(ld.session));
    if (reap != 0)
        load_note_error(&ld, reap, r.line_no);
    cs_assert(reap != 0 || ld.free_count == LOAD_DEPTH);
    cs_session_close(ld.session);
    if (ld.err != 0 && res->stop == LOAD_END) {
        res->stop = LOAD_PUT_FAILED;
        res->line_no = ld.err_line;
        res->rc = ld.err;
    }
    res->loaded = ld.loaded;
    rc = 0;
fail:
    if (ld.slots != NULL)
        for (unsigned i = 0; i < LOAD_DEPTH; i++)
            free(ld.slots[i].buf);
    free(ld.slots);
    free(ld.free_slots);
    load_reader_free(&r);
    return rc;
}
