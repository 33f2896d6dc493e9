/* libFuzzer target for the RESP module (server/resp.c). Built and run by `make fuzz`.
 *
 * Input: byte 0 picks the limits (even: Redis's defaults; odd: small limits derived from it, so
 * that every limit is reached), byte 1 seeds the piece sizes, the rest is what a client sent.
 *   - Whole against pieces: the stream parsed as one buffer, and again as a connection receives
 *     it (pieces of 1 to 64 bytes, the unconsumed bytes moved to a new allocation whenever they
 *     are few), must give the same transcript: the same requests with the same arguments, then
 *     the same end (the bytes left over, or the same error message). Each request must respect
 *     the limits and its arguments must lie within the bytes it consumed (multibulk) .
 *   - Round trip: arguments cut from the stream, written as a multibulk request by the reply
 *     writer (resp_out_array + resp_out_bulk) and as an inline line with every unsafe byte
 *     "\xHH"-escaped, must parse back to the same arguments.
 *   - The writer's error reply from the stream holds no CR or LF but its final CRLF. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PIECE_BYTES_MAX 64  /* largest piece the connection receives at once */
#define COPY_BYTES_MAX 1024 /* unconsumed bytes moved to a new allocation up to this many */
#define ROUND_TRIP_ARGS_MAX 64

static void check(bool ok)
{
    if (!ok)
        abort();
}

static struct resp_limits limits_for(uint8_t cfg)
{
    struct resp_limits l;
    resp_limits_default(&l);
    if (cfg & 1) {
        l.args_max = 1 + ((cfg >> 1) & 7);
        l.bulk_bytes_max = 1 + ((cfg >> 4) & 3) * 8;
        l.inline_bytes_max = 4 + (cfg >> 6) * 6;
        l.request_bytes_max = 8 + ((cfg >> 3) & 3) * 10;
    }
    return l;
}

/* A transcript: each request (argc, then each argument's length and bytes), then the end: the
 * bytes left over or the error message. Binary, compared with memcmp. */
struct transcript {
    char *buf;  /* open_memstream's buffer */
    size_t len; /* its bytes */
    FILE *f;    /* open while recording */
};

static void transcript_open(struct transcript *t)
{
    t->buf = NULL;
    t->len = 0;
    t->f = open_memstream(&t->buf, &t->len);
    check(t->f != NULL);
}

static void transcript_close(struct transcript *t)
{
    check(fclose(t->f) == 0);
}

/* Record the request p just returned (spanning buf[0..used)) and check its invariants. */
static void record_request(struct transcript *t, const struct resp_parser *p,
                           const struct resp_limits *l, const char *buf, size_t used)
{
    size_t argc = resp_parser_argc(p);
    check(argc <= l->args_max);
    fwrite(&argc, sizeof(argc), 1, t->f);
    size_t total = 0;
    for (size_t i = 0; i < argc; i++) {
        size_t len;
        const char *a = resp_parser_arg(p, i, &len);
        total += len;
        if (buf[0] == '*') /* zero-copy: inside the request's bytes */
            check(a >= buf && len <= used && a - buf <= (ptrdiff_t)(used - len));
        fwrite(&len, sizeof(len), 1, t->f);
        fwrite(a, 1, len, t->f);
    }
    check(total <= l->request_bytes_max);
}

static void record_end(struct transcript *t, int rc, const struct resp_parser *p, size_t left)
{
    if (rc == RESP_MORE) {
        fprintf(t->f, "more:%zu", left);
        return;
    }
    check(rc == RESP_EPROTO);
    const char *msg = resp_parser_error(p);
    check(msg != NULL && strncmp(msg, "Protocol error: ", 16) == 0);
    fprintf(t->f, "err:%s", msg);
}

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Parse in[0..n) as it arrives in pieces (piece 0: all of it). */
static void run(const struct resp_limits *l, const char *in, size_t n, uint8_t seed, bool pieces,
                struct transcript *t)
{
    struct resp_parser p;
    check(resp_parser_init(&p, l) == 0);
    transcript_open(t);
    uint32_t rng = 0x9e3779b9u ^ seed;
    size_t start = 0;
    size_t avail = pieces ? 0 : n;
    char *copy = NULL;
    /* Each pass consumes a request or receives at least one byte: at most 2n + 2 passes. */
    for (size_t pass = 0; pass <= 2 * n + 2; pass++) {
        size_t have = avail - start;
        const char *buf = in + start;
        free(copy);
        copy = NULL;
        if (pieces && have <= COPY_BYTES_MAX) {
            copy = malloc(have ? have : 1);
            check(copy != NULL);
            memcpy(copy, buf, have);
            buf = copy;
        }
        size_t used = 1;
        int rc = resp_parse(&p, buf, have, &used);
        if (rc == RESP_OK) {
            check(used > 0 && used <= have);
            record_request(t, &p, l, buf, used);
            start += used;
            continue;
        }
        check(used == 0);
        if (rc == RESP_MORE && avail < n) {
            size_t piece = 1 + xorshift(&rng) % (xorshift(&rng) % 4 ? 8 : PIECE_BYTES_MAX);
            avail = n - avail < piece ? n : avail + piece;
            continue;
        }
        record_end(t, rc, &p, n - start);
        /* An error is final. */
        if (rc == RESP_EPROTO)
            check(resp_parse(&p, buf, have, &used) == RESP_EPROTO);
        free(copy);
        transcript_close(t);
        resp_parser_free(&p);
        return;
    }
    abort(); /* no progress */
}

/* Arguments cut from in[0..n): a length byte, then that many bytes (modulo 32). */
static size_t cut_args(const char *in, size_t n, const char **a, size_t *len)
{
    size_t argc = 0;
    size_t i = 0;
    while (i < n && argc < ROUND_TRIP_ARGS_MAX) {
        size_t want = (unsigned char)in[i++] % 32;
        len[argc] = want < n - i ? want : n - i;
        a[argc] = in + i;
        i += len[argc++];
    }
    return argc;
}

/* req[0..req_len) must parse as one request of exactly these arguments. */
static void expect_args(const char *req, size_t req_len, const char **a, const size_t *len,
                        size_t argc)
{
    struct resp_limits l;
    resp_limits_default(&l);
    struct resp_parser p;
    check(resp_parser_init(&p, &l) == 0);
    size_t used;
    check(resp_parse(&p, req, req_len, &used) == RESP_OK);
    check(used == req_len);
    check(resp_parser_argc(&p) == argc);
    for (size_t i = 0; i < argc; i++) {
        size_t got_len;
        const char *got = resp_parser_arg(&p, i, &got_len);
        check(got_len == len[i]);
        check(got_len == 0 || memcmp(got, a[i], got_len) == 0);
    }
    resp_parser_free(&p);
}

static void round_trip_multibulk(const char **a, const size_t *len, size_t argc)
{
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_MAX_DEFAULT);
    check(resp_out_array(&o, argc) == 0);
    for (size_t i = 0; i < argc; i++)
        check(resp_out_bulk(&o, a[i], len[i]) == 0);
    size_t req_len;
    const char *req = resp_out_pending(&o, &req_len);
    expect_args(req, req_len, a, len, argc);
    resp_out_free(&o);
}

static void round_trip_inline(const char **a, const size_t *len, size_t argc)
{
    if (argc == 0)
        return;
    char *line = NULL;
    size_t line_len = 0;
    FILE *f = open_memstream(&line, &line_len);
    check(f != NULL);
    for (size_t i = 0; i < argc; i++) {
        fputs(i ? " \"" : "\"", f);
        for (size_t j = 0; j < len[i]; j++) {
            unsigned char c = (unsigned char)a[i][j];
            if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
                fputc(c, f);
            else
                fprintf(f, "\\x%02x", c);
        }
        fputc('"', f);
    }
    fputs("\r\n", f);
    check(fclose(f) == 0);
    check(line_len - 1 <= RESP_INLINE_BYTES_MAX_DEFAULT);
    expect_args(line, line_len, a, len, argc);
    free(line);
}

static void error_reply_has_one_line(const char *in, size_t n)
{
    char *msg = malloc(n + 1);
    check(msg != NULL);
    memcpy(msg, in, n);
    msg[n] = '\0';
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_MAX_DEFAULT);
    check(resp_out_error(&o, msg) == 0);
    size_t len;
    const char *out = resp_out_pending(&o, &len);
    size_t m = strlen(msg);
    check(len == m + 3 && out[0] == '-' && out[len - 2] == '\r' && out[len - 1] == '\n');
    for (size_t i = 1; i < len - 2; i++)
        check(out[i] != '\r' && out[i] != '\n');
    resp_out_free(&o);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct resp_limits l = limits_for(data[0]);
    const char *in = (const char *)data + 2;
    size_t n = size - 2;

    struct transcript whole, pieces;
    run(&l, in, n, data[1], false, &whole);
    run(&l, in, n, data[1], true, &pieces);
    check(whole.len == pieces.len);
    check(memcmp(whole.buf, pieces.buf, whole.len) == 0);
    free(whole.buf);
    free(pieces.buf);

    const char *a[ROUND_TRIP_ARGS_MAX];
    size_t len[ROUND_TRIP_ARGS_MAX];
    size_t argc = cut_args(in, n, a, len);
    round_trip_multibulk(a, len, argc);
    round_trip_inline(a, len, argc);
    error_reply_has_one_line(in, cs_min_size(n, 256));
    return 0;
}
