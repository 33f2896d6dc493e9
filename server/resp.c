/* RESP2 for cstored: requests in, replies out. Pure: the server reads and writes the sockets.
 *
 * Why not hiredis: its reader parses replies into allocated objects; the server needs requests
 * (including inline commands), zero-copy arguments that point into its receive buffer, state kept
 * across partial reads, and a limit per argument and per request.
 *
 * Requests. The first byte of a request picks its form, as in Redis (processInputBuffer):
 *   multibulk  '*' <count> CRLF, then count times: '$' <len> CRLF <len bytes> CRLF
 *   inline     anything else: a line up to LF (a CR before the LF is dropped), split into words
 * <count> and <len> are Redis's string2ll: an optional '-', then "0" or a digit 1-9 followed by
 * digits, at most 20 bytes, within long long. Nothing else (no '+', no blanks, no leading 0).
 *   - count <= 0 ("*0", "*-1", "*-7") is an empty request, as in Redis: RESP_OK with argc 0.
 *   - count > args_max: "Protocol error: invalid multibulk length" (Redis 6's test, with its
 *     1048576 as the default; Redis 7 allows up to INT_MAX).
 *   - the line after the count must start with '$': "Protocol error: expected '$', got 'x'"
 *     (CR, LF and NUL are shown as a space, as Redis's error writer does for CR and LF).
 *   - len < 0 or > bulk_bytes_max: "Protocol error: invalid bulk length". The lengths of one
 *     request together over request_bytes_max: "Protocol error: too big request" (Redis has no
 *     such limit per request, only client-query-buffer-limit, 1 GiB, whose default this takes).
 *   - a '*' or '$' line with no CR within its first inline_bytes_max + 1 bytes: "Protocol error:
 *     too big mbulk count string" / "Protocol error: too big bulk count string".
 *   - the argument bytes are opaque (NUL, CR, LF allowed); nothing scans them.
 * Inline lines follow sdssplitargs: words are separated by blanks (isspace in the C locale);
 * "..." takes the escapes \n \r \t \b \a \xHH and \<any other byte> for that byte; '...' takes
 * \' only; a closing quote must be followed by a blank or the end of the line; quotes may start
 * in the middle of a word (a"b c" is one word, "ab c"). A quote left open, or closed and followed
 * by something else: "Protocol error: unbalanced quotes in request". A line of more than
 * inline_bytes_max bytes before its LF: "Protocol error: too big inline request". More than
 * args_max words: "Protocol error: too many arguments in inline request" (not in Redis). A line
 * with no words (empty, or blanks only) is an empty request: RESP_OK with argc 0, which Redis
 * skips without a reply.
 *
 * Where this is stricter than Redis, on purpose (a client that does these is out of step with
 * the protocol, and guessing hides it):
 *   - a '*' or '$' line must end in CRLF: Redis finds the CR and skips the next byte unseen; here
 *     CR followed by anything else is "invalid multibulk length" / "invalid bulk length".
 *   - an argument must be followed by CRLF: Redis skips two bytes unseen; here anything else is
 *     "Protocol error: expected CRLF after bulk data".
 *   - NUL is an ordinary byte in '*' and '$' lines and ends an inline line's words (sdssplitargs
 *     sees a C string); Redis's strchr stops at a NUL and waits for more input instead.
 *   - the line-length limits apply to the bytes, not to how they arrived: Redis tests them only
 *     when a read leaves no line end in its buffer, so a long line arriving in one read passes.
 *     Here the same bytes give the same answer however they are split.
 * A request that is invalid is reported as soon as its bytes show it, in the same words Redis
 * uses once it has the whole line.
 *
 * Invariants. The parser keeps offsets from the first byte of the request (the caller moves its
 * buffer between calls) and resumes where it stopped: each byte of a '*', '$' or inline line is
 * examined once (the CR of a line whose LF has not come yet, once per call), argument bytes never,
 * an inline line once more when it is split: O(n) for a request of n bytes however it is fed.
 * args[0..argc) hold offsets of arguments already complete; argc <= args_max; request_bytes <=
 * request_bytes_max. An error is final: every later call returns it.
 *
 * Replies: resp_out is a byte buffer with a cap on the bytes pending (the client output buffer
 * limit). Each writer appends one whole reply or nothing. CR and LF in simple strings and errors
 * become spaces (Redis does this in addReplyErrorFormat); bulks are binary-safe. */
#include "server/resp.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGS_CAP_MIN 16     /* argument entries allocated at the first request */
#define ARGS_CAP_KEEP 1024  /* a larger argument array is shrunk back to this between requests */
#define NUMBER_BYTES_MAX 20 /* string2ll refuses 21 bytes or more */
#define LIMIT_MAX (SIZE_MAX / 4) /* no limit above this: sums and + 2 cannot overflow */
#define OUT_CAP_MIN (16u * 1024) /* first reply buffer (Redis's PROTO_REPLY_CHUNK_BYTES) */
#define ERRORF_BYTES_MAX 1024    /* resp_out_errorf's message */

static const char MSG_MBULK_LEN[] = "Protocol error: invalid multibulk length";
static const char MSG_BULK_LEN[] = "Protocol error: invalid bulk length";
static const char MSG_MBULK_LINE[] = "Protocol error: too big mbulk count string";
static const char MSG_BULK_LINE[] = "Protocol error: too big bulk count string";
static const char MSG_INLINE_LINE[] = "Protocol error: too big inline request";
static const char MSG_QUOTES[] = "Protocol error: unbalanced quotes in request";
static const char MSG_BULK_CRLF[] = "Protocol error: expected CRLF after bulk data";
static const char MSG_REQUEST[] = "Protocol error: too big request";
static const char MSG_INLINE_ARGS[] = "Protocol error: too many arguments in inline request";

void resp_limits_default(struct resp_limits *l)
{
    l->args_max = RESP_ARGS_MAX_DEFAULT;
    l->bulk_bytes_max = RESP_BULK_BYTES_MAX_DEFAULT;
    l->inline_bytes_max = RESP_INLINE_BYTES_MAX_DEFAULT;
    l->request_bytes_max = RESP_REQUEST_BYTES_MAX_DEFAULT;
}

static bool limit_ok(size_t v)
{
    return v > 0 && v <= LIMIT_MAX;
}

int resp_parser_init(struct resp_parser *p, const struct resp_limits *l)
{
    if (!limit_ok(l->args_max) || !limit_ok(l->bulk_bytes_max) || !limit_ok(l->inline_bytes_max) ||
        !limit_ok(l->request_bytes_max))
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    p->lim = *l;
    p->state = RESP_ST_START;
    return 0;
}

void resp_parser_free(struct resp_parser *p)
{
    free(p->args);
    free(p->scratch);
    memset(p, 0, sizeof(*p));
}

static int fail(struct resp_parser *p, const char *msg)
{
    p->state = RESP_ST_ERROR;
    p->error = msg;
    return RESP_EPROTO;
}

/* Redis's string2ll over s[0..n): see the opening comment. */
static bool parse_ll(const char *s, size_t n, long long *v)
{
    if (n == 0 || n > NUMBER_BYTES_MAX)
        return false;
    if (n == 1 && s[0] == '0') {
        *v = 0;
        return true;
    }
    size_t i = 0;
    bool negative = s[0] == '-';
    if (negative && ++i == n)
        return false;
    if (s[i] < '1' || s[i] > '9')
        return false;
    unsigned long long u = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned digit = (unsigned)(s[i] - '0');
        if (u > ULLONG_MAX / 10 || u * 10 > ULLONG_MAX - digit)
            return false;
        u = u * 10 + digit;
    }
    if (negative) {
        if (u > (unsigned long long)LLONG_MAX + 1)
            return false;
        *v = u == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)u;
    } else {
        if (u > (unsigned long long)LLONG_MAX)
            return false;
        *v = (long long)u;
    }
    return true;
}

/* Look for byte c from p->pos on, within the first inline_bytes_max + 1 bytes of the line that
 * starts at p->line_off. Found: p->pos = its offset, returns true. Not found: p->pos = the end of
 * what was examined, *too_long tells whether the window is used up. */
static bool find_line_end(struct resp_parser *p, const char *buf, size_t len, char c,
                          bool *too_long)
{
    size_t end = cs_min_size(len, p->line_off + p->lim.inline_bytes_max + 1);
    cs_assert(p->pos >= p->line_off);
    cs_assert(p->pos <= end);
    const char *hit = memchr(buf + p->pos, c, end - p->pos);
    if (hit) {
        size_t at = (size_t)(hit - buf);
        p->scanned_bytes += at + 1 - p->pos;
        p->pos = at;
        return true;
    }
    p->scanned_bytes += end - p->pos;
    p->pos = end;
    *too_long = end - p->line_off > p->lim.inline_bytes_max;
    return false;
}

/* Room for one more argument. */
static int args_reserve(struct resp_parser *p)
{
    cs_assert(p->argc < p->lim.args_max);
    if (p->argc < p->args_cap)
        return 0;
    size_t cap = cs_min_size(p->args_cap ? p->args_cap * 2 : ARGS_CAP_MIN, p->lim.args_max);
    struct resp_arg *a = realloc(p->args, cap * sizeof(*a));
    if (!a)
        return -ENOMEM;
    p->args = a;
    p->args_cap = cap;
    return 0;
}

/* Between requests: give back an argument array a huge request grew (if realloc cannot, keep
 * it). */
static void args_shrink(struct resp_parser *p)
{
    if (p->args_cap <= ARGS_CAP_KEEP)
        return;
    struct resp_arg *a = realloc(p->args, ARGS_CAP_KEEP * sizeof(*a));
    if (a) {
        p->args = a;
        p->args_cap = ARGS_CAP_KEEP;
    }
}

/* A '*' or '$' line from p->line_off: RESP_OK with the number in *v and p->pos past its CRLF,
 * RESP_MORE, or RESP_EPROTO. For '$' lines, dollar is true: the first byte must be '$'. */
static int read_number_line(struct resp_parser *p, const char *buf, size_t len, bool dollar,
                            long long *v)
{
    const char *invalid = dollar ? MSG_BULK_LEN : MSG_MBULK_LEN;
    bool too_long = false;
    if (!find_line_end(p, buf, len, '\r', &too_long))
        return too_long ? fail(p, dollar ? MSG_BULK_LINE : MSG_MBULK_LINE) : RESP_MORE;
    size_t cr = p->pos;
    if (cr + 1 == len)
        return RESP_MORE; /* the CR is examined again next time */
    if (dollar && buf[p->line_off] != '$') {
        char got = buf[p->line_off];
        if (got == '\r' || got == '\n' || got == '\0')
            got = ' ';
        snprintf(p->err_buf, sizeof(p->err_buf), "Protocol error: expected '$', got '%c'", got);
        return fail(p, p->err_buf);
    }
    if (buf[cr + 1] != '\n')
        return fail(p, invalid);
    p->scanned_bytes += 1;
    if (!parse_ll(buf + p->line_off + 1, cr - p->line_off - 1, v))
        return fail(p, invalid);
    p->pos = cr + 2;
    return RESP_OK;
}

/* The rest of a multibulk request, from the state p is in. */
static int parse_multibulk(struct resp_parser *p, const char *buf, size_t len)
{
    /* Each pass ends a line or an argument; args_left <= args_max bounds the loop. */
    for (;;) {
        long long v;
        int rc;
        switch (p->state) {
        case RESP_ST_COUNT:
            rc = read_number_line(p, buf, len, false, &v);
            if (rc != RESP_OK)
                return rc;
            if (v <= 0)
                return RESP_OK; /* "*0", "*-1": an empty request */
            if ((unsigned long long)v > p->lim.args_max)
                return fail(p, MSG_MBULK_LEN);
            p->args_left = (size_t)v;
            p->state = RESP_ST_BULK_LEN;
            p->line_off = p->pos;
            break;
        case RESP_ST_BULK_LEN:
            rc = read_number_line(p, buf, len, true, &v);
            if (rc != RESP_OK)
                return rc;
            if (v < 0 || (unsigned long long)v > p->lim.bulk_bytes_max)
                return fail(p, MSG_BULK_LEN);
            if ((size_t)v > p->lim.request_bytes_max - p->request_bytes)
                return fail(p, MSG_REQUEST);
            p->request_bytes += (size_t)v;
            p->bulk_len = (size_t)v;
            p->state = RESP_ST_BULK_DATA;
            break;
        case RESP_ST_BULK_DATA: {
            if (len - p->pos < p->bulk_len + 2)
                return RESP_MORE;
            size_t end = p->pos + p->bulk_len;
            p->scanned_bytes += 2;
            if (buf[end] != '\r' || buf[end + 1] != '\n')
                return fail(p, MSG_BULK_CRLF);
            rc = args_reserve(p);
            if (rc != 0)
                return rc; /* nothing changed: the call may be repeated */
            p->args[p->argc++] = (struct resp_arg){.off = p->pos, .len = p->bulk_len};
            p->pos = end + 2;
            cs_assert(p->args_left > 0);
            if (--p->args_left == 0)
                return RESP_OK;
            p->state = RESP_ST_BULK_LEN;
            p->line_off = p->pos;
            break;
        }
        default:
            cs_assert(!"parse_multibulk: not in a multibulk state");
        }
    }
}

/* isspace in the C locale, which sdssplitargs uses between words and after a closing quote. */
static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* s[i], or NUL past the end (sdssplitargs reads a C string). */
static char at(const char *s, size_t n, size_t i)
{
    return i < n ? s[i] : '\0';
}

/* The escape \c inside "...". */
static char dq_escape(char c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return c;
    }
}

/* One word of sdssplitargs, starting at s[*i] (not a blank): unescaped to out + *o. Advances *i
 * past it (and past its closing quote) and *o by its length, which is at most the bytes read.
 * Returns false on unbalanced quotes. */
static bool split_word(const char *s, size_t n, size_t *i_io, char *out, size_t *o_io)
{
    enum { PLAIN, DOUBLE, SINGLE } quote = PLAIN;
    size_t i = *i_io;
    size_t o = *o_io;
    /* Each pass reads at least one byte or ends: at most n + 1 passes. */
    for (;;) {
        cs_assert(o - *o_io <= i - *i_io);
        char c = at(s, n, i);
        if (quote == DOUBLE) {
            int hi = hex_value(at(s, n, i + 2));
            int lo = hex_value(at(s, n, i + 3));
            if (c == '\\' && at(s, n, i + 1) == 'x' && hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi * 16 + lo);
                i += 4;
            } else if (c == '\\' && i + 1 < n) {
                out[o++] = dq_escape(s[i + 1]);
                i += 2;
            } else if (c == '"') {
                if (i + 1 < n && !is_blank(s[i + 1]))
                    return false;
                i++;
                break;
            } else if (i >= n) {
                return false;
            } else {
                out[o++] = c;
                i++;
            }
        } else if (quote == SINGLE) {
            if (c == '\\' && at(s, n, i + 1) == '\'') {
                out[o++] = '\'';
                i += 2;
            } else if (c == '\'') {
                if (i + 1 < n && !is_blank(s[i + 1]))
                    return false;
                i++;
                break;
            } else if (i >= n) {
                return false;
            } else {
                out[o++] = c;
                i++;
            }
        } else {
            if (i >= n || c == ' ' || c == '\n' || c == '\r' || c == '\t')
                break;
            if (c == '"')
                quote = DOUBLE;
            else if (c == '\'')
                quote = SINGLE;
            else
                out[o++] = c;
            i++;
        }
    }
    *i_io = i;
    *o_io = o;
    return true;
}

/* Split line[0..n) into p's scratch and arguments. */
static int split_inline(struct resp_parser *p, const char *line, size_t n)
{
    const char *nul = memchr(line, '\0', n);
    if (nul)
        n = (size_t)(nul - line); /* sdssplitargs stops at a NUL */
    cs_assert(n <= p->lim.inline_bytes_max);
    if (n > p->scratch_cap) {
        char *s = realloc(p->scratch, n);
        if (!s)
            return -ENOMEM;
        p->scratch = s;
        p->scratch_cap = n;
    }
    p->scanned_bytes += n;
    p->argc = 0;
    size_t i = 0;
    size_t o = 0;
    while (i < n) { /* each pass reads at least one byte */
        if (is_blank(line[i])) {
            i++;
            continue;
        }
        size_t start = o;
        if (!split_word(line, n, &i, p->scratch, &o))
            return fail(p, MSG_QUOTES);
        if (p->argc == p->lim.args_max)
            return fail(p, MSG_INLINE_ARGS);
        if (o > p->lim.request_bytes_max)
            return fail(p, MSG_REQUEST);
        int rc = args_reserve(p);
        if (rc != 0)
            return rc; /* the line is split again on the next call */
        p->args[p->argc++] = (struct resp_arg){.off = start, .len = o - start};
    }
    return RESP_OK;
}

/* An inline request: find its LF (from where the last call stopped), then split the line. */
static int parse_inline(struct resp_parser *p, const char *buf, size_t len)
{
    bool too_long = false;
    if (!find_line_end(p, buf, len, '\n', &too_long))
        return too_long ? fail(p, MSG_INLINE_LINE) : RESP_MORE;
    size_t lf = p->pos;
    size_t n = lf > 0 && buf[lf - 1] == '\r' ? lf - 1 : lf;
    int rc = split_inline(p, buf, n);
    if (rc != RESP_OK)
        return rc;
    p->pos = lf + 1;
    return RESP_OK;
}

int resp_parse(struct resp_parser *p, const char *buf, size_t len, size_t *used)
{
    cs_assert(len >= p->pos); /* the caller passes at least the bytes it passed before */
    *used = 0;
    p->base = NULL;
    if (p->state == RESP_ST_ERROR)
        return RESP_EPROTO;
    if (p->state == RESP_ST_START) {
        if (len == 0)
            return RESP_MORE;
        args_shrink(p);
        p->argc = 0;
        p->request_bytes = 0;
        p->pos = 0;
        p->line_off = 0;
        p->state = buf[0] == '*' ? RESP_ST_COUNT : RESP_ST_INLINE;
    }
    bool inline_req = p->state == RESP_ST_INLINE;
    int rc = inline_req ? parse_inline(p, buf, len) : parse_multibulk(p, buf, len);
    if (rc != RESP_OK)
        return rc;
    cs_assert(p->pos > 0);
    cs_assert(p->pos <= len);
    *used = p->pos;
    p->base = inline_req && p->scratch ? p->scratch : buf;
    p->state = RESP_ST_START;
    p->pos = 0;
    return RESP_OK;
}

size_t resp_parser_argc(const struct resp_parser *p)
{
    return p->base ? p->argc : 0;
}

const char *resp_parser_arg(const struct resp_parser *p, size_t i, size_t *len)
{
    cs_assert(p->base != NULL);
    cs_assert(i < p->argc);
    *len = p->args[i].len;
    return p->base + p->args[i].off;
}

const char *resp_parser_error(const struct resp_parser *p)
{
    return p->state == RESP_ST_ERROR ? p->error : NULL;
}

uint64_t resp_parser_scanned_bytes(const struct resp_parser *p)
{
    return p->scanned_bytes;
}

/* ---- replies ---- */

void resp_out_init(struct resp_out *o, size_t bytes_max)
{
    cs_assert(bytes_max > 0);
    cs_assert(bytes_max <= LIMIT_MAX);
    memset(o, 0, sizeof(*o));
    o->bytes_max = bytes_max;
}

void resp_out_free(struct resp_out *o)
{
    free(o->buf);
    memset(o, 0, sizeof(*o));
}

/* Room for n more bytes at o->buf + o->len. Pending bytes move to the front only when at least
 * as many have been sent (so moving costs no more than sending did); otherwise the buffer
 * doubles. */
static int out_reserve(struct resp_out *o, size_t n)
{
    size_t pending = o->len - o->head;
    if (n > o->bytes_max - pending) {
        o->over = true;
        return -ENOBUFS;
    }
    if (n <= o->cap - o->len)
        return 0;
    if (o->head > 0 && o->head >= pending) {
        memmove(o->buf, o->buf + o->head, pending);
        o->head = 0;
        o->len = pending;
        if (n <= o->cap - o->len)
            return 0;
    }
    size_t cap = o->cap ? o->cap : OUT_CAP_MIN;
    while (cap - o->len < n) /* at most log2(LIMIT_MAX) doublings */
        cap *= 2;
    char *b = realloc(o->buf, cap);
    if (!b) {
        o->over = true;
        return -ENOMEM;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static void out_put(struct resp_out *o, const void *p, size_t n)
{
    cs_assert(n <= o->cap - o->len);
    if (n > 0)
        memcpy(o->buf + o->len, p, n);
    o->len += n;
}

/* <type><line>\r\n with CR and LF in line turned into spaces. */
static int out_line(struct resp_out *o, char type, const char *line)
{
    size_t n = strlen(line);
    if (n > LIMIT_MAX)
        return -ENOBUFS;
    int rc = out_reserve(o, n + 3);
    if (rc != 0)
        return rc;
    char *d = o->buf + o->len;
    d[0] = type;
    for (size_t i = 0; i < n; i++)
        d[1 + i] = line[i] == '\r' || line[i] == '\n' ? ' ' : line[i];
    d[n + 1] = '\r';
    d[n + 2] = '\n';
    o->len += n + 3;
    return 0;
}

int resp_out_simple(struct resp_out *o, const char *s)
{
    return out_line(o, '+', s);
}

int resp_out_error(struct resp_out *o, const char *msg)
{
    return out_line(o, '-', msg);
}

int resp_out_errorf(struct resp_out *o, const char *fmt, ...)
{
    char msg[ERRORF_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    return out_line(o, '-', msg);
}

/* A header line such as ":12\r\n", "*3\r\n", "$-1\r\n", written whole. */
static int out_header(struct resp_out *o, const char *hdr, int n)
{
    cs_assert(n > 0);
    int rc = out_reserve(o, (size_t)n);
    if (rc != 0)
        return rc;
    out_put(o, hdr, (size_t)n);
    return 0;
}

/* hdr = type, [-]digits of v, CRLF; returns its length. Every reply has one of these lines, so
 * they are written by hand: snprintf's format parsing cost a few percent of a pipelined GET. */
static int header_line(char hdr[32], char type, bool negative, unsigned long long v)
{
    char digits[24];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    int n = 0;
    hdr[n++] = type;
    if (negative)
        hdr[n++] = '-';
    while (nd)
        hdr[n++] = digits[--nd];
    hdr[n++] = '\r';
    hdr[n++] = '\n';
    return n;
}

int resp_out_int(struct resp_out *o, long long v)
{
    char hdr[32];
    unsigned long long mag = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    return out_header(o, hdr, header_line(hdr, ':', v < 0, mag));
}

int resp_out_array(struct resp_out *o, size_t n)
{
    char hdr[32];
    return out_header(o, hdr, header_line(hdr, '*', false, n));
}

int resp_out_null(struct resp_out *o)
{
    return out_header(o, "$-1\r\n", 5);
}

int resp_out_null_array(struct resp_out *o)
{
    return out_header(o, "*-1\r\n", 5);
}

int resp_out_append(struct resp_out *o, const void *p, size_t n)
{
    if (n > o->bytes_max) {
        o->over = true;
        return -ENOBUFS;
    }
    int rc = out_reserve(o, n);
    if (rc != 0)
        return rc;
    out_put(o, p, n);
    return 0;
}

int resp_out_bulk(struct resp_out *o, const void *p, size_t n)
{
    if (n > o->bytes_max) {
        o->over = true;
        return -ENOBUFS;
    }
    char hdr[32];
    int h = header_line(hdr, '$', false, n);
    int rc = out_reserve(o, (size_t)h + n + 2);
    if (rc != 0)
        return rc;
    out_put(o, hdr, (size_t)h);
    out_put(o, p, n);
    out_put(o, "\r\n", 2);
    return 0;
}

const char *resp_out_pending(const struct resp_out *o, size_t *len)
{
    *len = o->len - o->head;
    return o->buf ? o->buf + o->head : "";
}

void resp_out_consume(struct resp_out *o, size_t n)
{
    cs_assert(n <= o->len - o->head);
    o->head += n;
    if (o->head == o->len)
        o->head = o->len = 0;
}

void resp_out_reset(struct resp_out *o)
{
    o->head = o->len = 0;
    o->over = false;
}
