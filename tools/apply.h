/* The reader of the CLI's `apply` command: put and del lines (tools/lineformat.h escapes) from a
 * file descriptor, applied as one transaction. The rules are in apply.c. */
#ifndef CS_APPLY_H
#define CS_APPLY_H

#include <stddef.h>

#include "cstore.h"

#define APPLY_FIELDS_MAX 4u /* put, COLL, KEY, VALUE */

/* One parsed line. The views point into the caller's buffers (see apply_parse_line). */
struct apply_op {
    int del;          /* 1: del COLL KEY; 0: put COLL KEY VALUE */
    const char *coll; /* NUL-terminated collection name */
    const char *key;  /* key bytes (unescaped) */
    size_t klen;      /* key bytes */
    const char *val;  /* value bytes (unescaped; put only, else NULL) */
    size_t vlen;      /* value bytes (put only, else 0) */
};

/* Parse line[0..n): put<TAB>COLL<TAB>KEY<TAB>VALUE or del<TAB>COLL<TAB>KEY, KEY and VALUE with
 * the escapes of the line format, COLL raw. out has room for n + 1 bytes and receives the
 * collection name (with its NUL), the key and the value; op's views point into it and live as
 * long as out is unchanged. Returns NULL; or a static reason the line is refused: empty, no TAB,
 * an unknown operation, the wrong number of fields, or a bad escape (then *field names "key"
 * or "value"; else *field is NULL). Engine limits (names, sizes) are not checked here: the
 * transaction does. */
const char *apply_parse_line(const char *line, size_t n, char *out, struct apply_op *op,
                             const char **field);

/* How an apply ended. */
enum apply_stop {
    APPLY_COMMITTED,     /* every line was applied, as one transaction */
    APPLY_BAD_LINE,      /* apply_parse_line refused line_no: reason, field */
    APPLY_TOO_LONG,      /* line_no is longer than LOAD_LINE_BYTES_MAX */
    APPLY_READ_FAILED,   /* reading after line_no failed with rc */
    APPLY_OP_FAILED,     /* the transaction refused line_no's operation with rc (CS_EBATCH: the
                          * transaction's limits; CS_ENAME, CS_EKEYSIZE, CS_EVALSIZE, -ENOMEM) */
    APPLY_COMMIT_FAILED, /* cs_txn_commit returned rc (CS_ECONFLICT: retry) */
};

struct apply_result {
    enum apply_stop stop;       /* how it ended */
    unsigned long long puts;    /* put lines read (and applied when stop is APPLY_COMMITTED) */
    unsigned long long dels;    /* del lines read (likewise) */
    unsigned long long line_no; /* the line it stopped at; the last line when committed */
    unsigned shards;            /* shards the operations touch (cs_key_shard) */
    int rc;                     /* APPLY_READ_FAILED, _OP_FAILED, _COMMIT_FAILED: the error */
    const char *reason;         /* APPLY_BAD_LINE: why, static */
    const char *field;          /* APPLY_BAD_LINE: "key" or "value" for an escape, else NULL */
};

/* Read every line of fd into one transaction on db and commit it: all of it is applied, or (on a
 * refused line, an operation or a read that fails, or a failed commit) none of it. Returns 0
 * with *res telling how it ended, or -ENOMEM (or cs_txn_begin's error) when it could not
 * start; nothing was applied then either. */
__attribute__((warn_unused_result)) int apply_run(cs_db *db, int fd, struct apply_result *res);

#endif
