/* The reader of the CLI's `load` command: KEY<TAB>VALUE lines (tools/lineformat.h) from a file
 * descriptor, stored through a cs_session with many puts in flight. The rules are in load.c. */
#ifndef CS_LOAD_H
#define CS_LOAD_H

#include <signal.h>
#include <stddef.h>

#include "cstore.h"

#define LOAD_DEPTH 1024u                    /* puts in flight */
#define LOAD_INFLIGHT_BYTES_MAX (64u << 20) /* key+value bytes in flight */
#define LOAD_READ_CHUNK_BYTES (64u << 10)   /* read(2) size of the line reader */
/* An escaped line is at most 2 bytes per key or value byte, plus TAB and LF; \xHH input can
 * take 4 per byte, which is also accepted. `apply` lines (tools/apply.h) put "put<TAB>COLL<TAB>"
 * in front, hence the room for a name and 8 more bytes. */
#define LOAD_LINE_BYTES_MAX (4u * (CS_KEY_MAX + CS_VALUE_MAX) + CS_NAME_MAX + 8u)

/* Reads LF-terminated lines of at most LOAD_LINE_BYTES_MAX bytes through read(2); NUL bytes are
 * data; a final line without LF counts. */
struct load_reader {
    int fd;                     /* input, borrowed (not closed by load_reader_free) */
    char *buf;                  /* LOAD_READ_CHUNK_BYTES of read-ahead */
    size_t pos;                 /* next unread byte in buf */
    size_t len;                 /* bytes valid in buf */
    char *line;                 /* the current line, without its LF */
    size_t line_len;            /* bytes in line */
    size_t line_cap;            /* bytes allocated for line */
    unsigned long long line_no; /* 1-based number of the current line; 0 before the first */
    int eof;                    /* read(2) returned 0 */
};

/* Prepare r to read fd. Returns 0 or -ENOMEM (then r holds nothing to free). */
__attribute__((warn_unused_result)) int load_reader_init(struct load_reader *r, int fd);

/* Free r's buffers; fd stays open. */
void load_reader_free(struct load_reader *r);

/* The next line into r->line[0..r->line_len), valid until the next call. Returns 1 with a line,
 * 0 at the end of the input, -EMSGSIZE for a line longer than LOAD_LINE_BYTES_MAX (r->line_no
 * is then the line before it), -EINTR when read(2) is interrupted and *stop is set (stop may be
 * NULL: interrupted reads are retried), -ENOMEM or another -errno of read(2). */
__attribute__((warn_unused_result)) int load_reader_next(struct load_reader *r,
                                                         const volatile sig_atomic_t *stop);

/* Split line[0..n) at its TAB and unescape key and value into out (room for n bytes): the key
 * at out[0..*klen), the value right after it, *vlen bytes. Returns NULL; or a static reason
 * the line is refused: empty, no TAB, a second raw TAB, or a bad escape (then *field names
 * "key" or "value"; else *field is NULL). Engine limits are not checked here: the put does. */
const char *load_parse_line(const char *line, size_t n, char *out, size_t *klen, size_t *vlen,
                            const char **field);

/* How a load ended. */
enum load_stop {
    LOAD_END,         /* every line was stored */
    LOAD_BAD_LINE,    /* load_parse_line refused line_no: reason, field */
    LOAD_TOO_LONG,    /* line_no is longer than LOAD_LINE_BYTES_MAX */
    LOAD_INTERRUPTED, /* *stop was set after line_no */
    LOAD_READ_FAILED, /* reading after line_no failed with rc */
    LOAD_PUT_FAILED,  /* the put of line_no (the first that failed) returned rc */
};

struct load_config {
    cs_db *db;                         /* open database, borrowed */
    const char *coll;                  /* target collection (created by the first put) */
    int fd;                            /* input, borrowed */
    const volatile sig_atomic_t *stop; /* set (by a signal handler) to stop reading, or NULL */
    void (*progress)(void *arg, unsigned long long loaded); /* every 256 lines, or NULL */
    void *progress_arg;                                     /* passed to progress */
};

struct load_result {
    enum load_stop stop;        /* how it ended */
    unsigned long long loaded;  /* puts that completed successfully */
    unsigned long long line_no; /* the line it stopped at (see enum load_stop) */
    int rc;                     /* LOAD_READ_FAILED, LOAD_PUT_FAILED: the error */
    const char *reason;         /* LOAD_BAD_LINE: why, static */
    const char *field;          /* LOAD_BAD_LINE: "key" or "value" for an escape, else NULL */
};

/* Store every line of cfg->fd into cfg->coll, keeping up to LOAD_DEPTH puts in flight; stops at
 * the first refused line, failed put, read error or *stop, after waiting for the puts in
 * flight. Records before that are stored (a load is not atomic). Puts of one key reach its shard
 * in submission order, so a key given twice keeps the later line's value. Returns 0 with *res
 * telling how it ended, or -ENOMEM or the error of cs_session_open when it could not start. */
__attribute__((warn_unused_result)) int load_run(const struct load_config *cfg,
                                                 struct load_result *res);

#endif
