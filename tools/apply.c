/* The reader of the CLI's `apply` command: a file of writes applied as one transaction.
 *
 * Input: one operation per line, its fields separated by one TAB each (like load's
 * KEY<TAB>VALUE, so a raw TAB never occurs inside a field):
 *   put<TAB>COLL<TAB>KEY<TAB>VALUE
 *   del<TAB>COLL<TAB>KEY
 * KEY and VALUE use the escapes of tools/lineformat.c ("\\" "\t" "\n" "\r" "\0" "\xHH"); COLL is
 * the collection name as it is. A final line without LF counts; NUL bytes are data. A line is
 * refused, never guessed at, when it is empty, has no TAB, names another operation, has too few
 * or too many fields, or holds a bad escape; a line longer than LOAD_LINE_BYTES_MAX is refused
 * before it is buffered whole. A later write of a key replaces an earlier one of the same
 * transaction (so the last line on a key wins); deleting an absent key is not an error.
 *
 * Atomicity: every line goes into one cs_txn (nothing reaches the database before commit), and
 * the transaction is committed only after the last line was read and accepted. A refused line, an
 * operation the transaction refuses (a bad name, a key or value over the limits, the
 * transaction's own limits CS_TXN_OPS_MAX and CS_TXN_BYTES_MAX: CS_EBATCH) or a read error
 * aborts it: nothing is applied. The commit applies all of it or, on CS_ECONFLICT or an error,
 * none of it (include/cstore.h). The input is read once, as it comes (a pipe works). */
#include "tools/apply.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tools/lineformat.h"
#include "tools/load.h"
#include "util.h"

/* Split line[0..n) at its TABs into at most APPLY_FIELDS_MAX fields. Returns the field count,
 * or APPLY_FIELDS_MAX + 1 when there are more. */
static unsigned apply_split(const char *line, size_t n, const char **start, size_t *len)
{
    unsigned count = 0;
    size_t from = 0;
    for (;;) {
        const char *tab = memchr(line + from, '\t', n - from);
        size_t end = tab != NULL ? (size_t)(tab - line) : n;
        if (count == APPLY_FIELDS_MAX)
            return APPLY_FIELDS_MAX + 1;
        start[count] = line + from;
        len[count] = end - from;
        count++;
        if (tab == NULL)
            return count;
        from = end + 1;
    }
}

const char *apply_parse_line(const char *line, size_t n, char *out, struct apply_op *op,
                             const char **field)
{
    *field = NULL;
    memset(op, 0, sizeof(*op));
    if (n == 0)
        return "empty (an operation is put<TAB>COLL<TAB>KEY<TAB>VALUE or del<TAB>COLL<TAB>KEY)";
    const char *f[APPLY_FIELDS_MAX];
    size_t flen[APPLY_FIELDS_MAX];
    unsigned count = apply_split(line, n, f, flen);
    if (count == 1)
        return "no TAB (fields are separated by TABs: put<TAB>COLL<TAB>KEY<TAB>VALUE)";
    if (flen[0] == 3 && memcmp(f[0], "put", 3) == 0) {
        if (count != 4)
            return count < 4 ? "put needs COLL, KEY and VALUE, separated by TABs"
                             : "too many TABs (write a TAB inside a key or value as \\t)";
    } else if (flen[0] == 3 && memcmp(f[0], "del", 3) == 0) {
        if (count != 3)
            return count < 3 ? "del needs COLL and KEY, separated by a TAB"
                             : "del takes COLL and KEY only (a TAB inside a key is \\t)";
        op->del = 1;
    } else {
        return "unknown operation (put or del)";
    }
    /* out: COLL NUL KEY VALUE; each unescaped field is no longer than its input */
    memcpy(out, f[1], flen[1]);
    out[flen[1]] = '\0';
    op->coll = out;
    char *key = out + flen[1] + 1;
    const char *bad = lineformat_unescape(f[2], flen[2], key, &op->klen);
    if (bad != NULL) {
        *field = "key";
        return bad;
    }
    op->key = key;
    if (op->del)
        return NULL;
    char *val = key + op->klen;
    bad = lineformat_unescape(f[3], flen[3], val, &op->vlen);
    if (bad != NULL) {
        *field = "value";
        return bad;
    }
    op->val = val;
    cs_assert(flen[1] + 1 + op->klen + op->vlen <= n + 1);
    return NULL;
}

/* The state of one apply: the transaction being built and what it touched. */
struct apply {
    cs_db *db;                               /* borrowed */
    cs_txn *txn;                             /* open until commit or abort */
    char *out;                               /* apply_parse_line's output buffer */
    size_t out_cap;                          /* bytes allocated for out */
    unsigned char shard_seen[CS_SHARDS_MAX]; /* per shard: an operation touched it */
};

/* Parse and buffer the current line of r. Returns 0, or sets res and returns 1. */
static int apply_line(struct apply *ap, const struct load_reader *r, struct apply_result *res)
{
    if (r->line_len + 1 > ap->out_cap) {
        size_t cap = r->line_len + 1 > 4096 ? r->line_len + 1 : 4096;
        char *p = realloc(ap->out, cap);
        if (p == NULL) {
            res->stop = APPLY_OP_FAILED;
            res->rc = -ENOMEM;
            return 1;
        }
        ap->out = p;
        ap->out_cap = cap;
    }
    struct apply_op op;
    const char *field;
    const char *why = apply_parse_line(r->line, r->line_len, ap->out, &op, &field);
    if (why != NULL) {
        res->stop = APPLY_BAD_LINE;
        res->reason = why;
        res->field = field;
        return 1;
    }
    int rc = op.del ? cs_txn_del(ap->txn, op.coll, op.key, op.klen)
                    : cs_txn_put(ap->txn, op.coll, op.key, op.klen, op.val, op.vlen);
    if (rc != 0) {
        res->stop = APPLY_OP_FAILED;
        res->rc = rc;
        return 1;
    }
    unsigned shard = 0;
    if (cs_key_shard(ap->db, op.key, op.klen, &shard) == 0 && shard < CS_SHARDS_MAX &&
        !ap->shard_seen[shard]) {
        ap->shard_seen[shard] = 1;
        res->shards++;
    }
    if (op.del)
        res->dels++;
    else
        res->puts++;
    return 0;
}

int apply_run(cs_db *db, int fd, struct apply_result *res)
{
    cs_assert(db != NULL);
    cs_assert(res != NULL);
    memset(res, 0, sizeof(*res));
    struct apply *ap = calloc(1, sizeof(*ap));
    if (ap == NULL)
        return -ENOMEM;
    ap->db = db;
    struct load_reader r;
    int rc = load_reader_init(&r, fd);
    if (rc == 0)
        rc = cs_txn_begin(db, 0, &ap->txn);
    if (rc != 0) {
        load_reader_free(&r); /* after a failed init it holds NULLs */
        free(ap);
        return rc;
    }
    int stopped = 0;
    while (!stopped) {
        rc = load_reader_next(&r, NULL);
        if (rc == 0)
            break;
        if (rc == -EMSGSIZE) {
            res->stop = APPLY_TOO_LONG;
            res->line_no = r.line_no + 1;
            stopped = 1;
        } else if (rc < 0) {
            res->stop = APPLY_READ_FAILED;
            res->rc = rc;
            res->line_no = r.line_no;
            stopped = 1;
        } else {
            res->line_no = r.line_no;
            stopped = apply_line(ap, &r, res);
        }
    }
    if (stopped) {
        cs_txn_abort(ap->txn);
    } else {
        rc = cs_txn_commit(ap->txn); /* frees the transaction in every case */
        res->stop = rc == 0 ? APPLY_COMMITTED : APPLY_COMMIT_FAILED;
        res->rc = rc;
    }
    load_reader_free(&r);
    free(ap->out);
    free(ap);
    return 0;
}
