/* Unit tests of the RESP module (server/resp.c). Parser: multibulk and inline requests give the
 * arguments Redis would; empty requests come back as argc 0; every request split at every
 * position, or fed a byte at a time, gives the same requests and the same error as fed whole;
 * pipelines of thousands of requests; each error message, in Redis's words; the limits on
 * arguments, bulk length, line length and request size; sdssplitargs's quoting; binary-safe
 * bulks that point into the caller's buffer; linear work however the bytes arrive. Writer: the
 * exact bytes of each reply, the cap on pending bytes, partial sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/resp.h"

#define S(lit) lit, sizeof(lit) - 1 /* a string literal as (bytes, length), NULs included */

static struct resp_limits small_limits(void)
{
    struct resp_limits l = {
        .args_max = 3, .bulk_bytes_max = 10, .inline_bytes_max = 8, .request_bytes_max = 16};
    return l;
}

static void parser_init(struct resp_parser *p, const struct resp_limits *l)
{
    struct resp_limits def;
    resp_limits_default(&def);
    assert_int_equal(resp_parser_init(p, l ? l : &def), 0);
}

/* Feed in[0..n) as a connection receives it: first `first` bytes, then `step` more at a time.
 * Every time bytes arrive or a request is consumed, the unconsumed bytes move to a new
 * allocation (a parser that kept a pointer would read freed memory under ASan). Returns a
 * transcript: each request as "argc[len:bytes]...;" (a NUL byte written \0), then
 * "more:<unconsumed>" or "err:<msg>". */
static char *feed(const struct resp_limits *l, const char *in, size_t n, size_t first, size_t step)
{
    struct resp_parser p;
    parser_init(&p, l);
    char *out = NULL;
    size_t out_len = 0;
    FILE *f = open_memstream(&out, &out_len);
    assert_non_null(f);
    size_t start = 0;
    size_t avail = first < n ? first : n;
    for (;;) {
        char *buf = malloc(avail - start + 1);
        assert_non_null(buf);
        memcpy(buf, in + start, avail - start);
        size_t used = 12345;
        int rc = resp_parse(&p, buf, avail - start, &used);
        if (rc == RESP_OK) {
            assert_true(used > 0 && used <= avail - start);
            fprintf(f, "%zu", resp_parser_argc(&p));
            for (size_t i = 0; i < resp_parser_argc(&p); i++) {
                size_t len;
                const char *a = resp_parser_arg(&p, i, &len);
                fprintf(f, "[%zu:", len);
                for (size_t j = 0; j < len; j++) /* NUL as \0: the transcript is a C string */
                    fputs(a[j] ? (char[]){a[j], '\0'} : "\\0", f);
                fputc(']', f);
            }
            fputc(';', f);
            start += used;
        } else if (rc == RESP_MORE) {
            assert_int_equal(used, 0);
            if (avail == n) {
                fprintf(f, "more:%zu", n - start);
                free(buf);
                break;
            }
            avail = n - avail < step ? n : avail + step;
        } else {
            assert_int_equal(rc, RESP_EPROTO);
            assert_int_equal(used, 0);
            fprintf(f, "err:%s", resp_parser_error(&p));
            assert_int_equal(resp_parse(&p, buf, avail - start, &used), RESP_EPROTO);
            free(buf);
            break;
        }
        free(buf);
    }
    assert_int_equal(fclose(f), 0);
    resp_parser_free(&p);
    return out;
}

static char *feed_whole(const struct resp_limits *l, const char *in, size_t n)
{
    return feed(l, in, n, n, n);
}

/* Whole, split once at every position, and a byte at a time: the same transcript. */
static void check_every_split(const struct resp_limits *l, const char *in, size_t n)
{
    char *whole = feed_whole(l, in, n);
    for (size_t k = 0; k <= n; k++) {
        char *split = feed(l, in, n, k, n);
        assert_string_equal(split, whole);
        free(split);
    }
    char *bytes = feed(l, in, n, 1, 1);
    assert_string_equal(bytes, whole);
    free(bytes);
    free(whole);
}

static void expect(const struct resp_limits *l, const char *in, size_t n, const char *want)
{
    char *got = feed_whole(l, in, n);
    assert_string_equal(got, want);
    free(got);
    check_every_split(l, in, n);
}

static void test_multibulk_request_gives_its_arguments_in_place(void **state)
{
    (void)state;
    struct resp_parser p;
    parser_init(&p, NULL);
    const char in[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
    size_t used = 0;
    assert_int_equal(resp_parse(&p, in, sizeof(in) - 1, &used), RESP_OK);
    assert_int_equal(used, sizeof(in) - 1);
    assert_int_equal(resp_parser_argc(&p), 3);
    size_t len;
    const char *a = resp_parser_arg(&p, 0, &len);
    assert_ptr_equal(a, in + 8); /* zero-copy: into the caller's buffer */
    assert_int_equal(len, 3);
    assert_ptr_equal(resp_parser_arg(&p, 1, &len), in + 17);
    assert_int_equal(len, 1);
    assert_ptr_equal(resp_parser_arg(&p, 2, &len), in + 24);
    assert_int_equal(len, 5);
    assert_null(resp_parser_error(&p));
    /* Nothing more: RESP_MORE, and argc no longer describes a request. */
    assert_int_equal(resp_parse(&p, in, 0, &used), RESP_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(resp_parser_argc(&p), 0);
    resp_parser_free(&p);
    expect(NULL, S("*2\r\n$4\r\nPING\r\n$0\r\n\r\n"), "2[4:PING][0:];more:0");
}

static void test_inline_request_is_split_on_blanks(void **state)
{
    (void)state;
    expect(NULL, S("SET k v\r\n"), "3[3:SET][1:k][1:v];more:0");
    expect(NULL, S("PING\n"), "1[4:PING];more:0");
    expect(NULL, S("  get\t\tkey  \r\n"), "2[3:get][3:key];more:0");
    expect(NULL, S("PING"), "more:4");
    expect(NULL, S("PING\r"), "more:5");
    /* Only the CR right before the LF is dropped; one in the middle separates words. */
    expect(NULL, S("a\rb\r\r\n"), "2[1:a][1:b];more:0");
}

static void test_empty_requests_come_back_with_no_arguments(void **state)
{
    (void)state;
    expect(NULL, S("\r\n"), "0;more:0");
    expect(NULL, S("\n"), "0;more:0");
    expect(NULL, S(" \t\v\f\r\n"), "0;more:0");
    expect(NULL, S("*0\r\n"), "0;more:0");
    expect(NULL, S("*-1\r\n"), "0;more:0");
    expect(NULL, S("*-7\r\n"), "0;more:0");
    expect(NULL, S("*-9223372036854775808\r\n"), "0;more:0");
    expect(NULL, S("\n\n*0\r\nPING\n"), "0;0;0;1[4:PING];more:0");
}

static void test_inline_quoting_follows_sdssplitargs(void **state)
{
    (void)state;
    expect(NULL, S("set \"a b\" 'c d'\n"), "3[3:set][3:a b][3:c d];more:0");
    expect(NULL, S("\"\\n\\r\\t\\b\\a\\\\\\\"\\x41\\x6a\\xzz\\q\"\n"),
           "1[13:\n\r\t\b\a\\\"Ajxzzq];more:0");
    expect(NULL, S("\"\\x4\" \"\\x\"\n"), "2[2:x4][1:x];more:0");
    expect(NULL, S("'it\\'s' 'a\\nb' 'a\\\\b'\n"), "3[4:it's][4:a\\nb][4:a\\\\b];more:0");
    /* In '...' only \' is an escape, so '\\' leaves the quote open. */
    expect(NULL, S("'\\\\'\n"), "err:Protocol error: unbalanced quotes in request");
    expect(NULL, S("\"\" '' x\n"), "3[0:][0:][1:x];more:0");
    expect(NULL, S("a\"b c\" d'e f'\n"), "2[4:ab c][4:de f];more:0");
    /* After a closing quote any isspace byte will do; inside a plain word \v and \f are bytes. */
    expect(NULL, S("\"a\"\tb \"c\"\vd\n"), "4[1:a][1:b][1:c][1:d];more:0");
    expect(NULL, S("\vfoo\vbar\n"), "1[7:foo\vbar];more:0");
    /* A quoted CR and LF are bytes of the word. */
    expect(NULL, S("\"a\\r\\nb\"\r\n"), "1[4:a\r\nb];more:0");
    /* sdssplitargs reads a C string: a NUL ends the words of the line. */
    expect(NULL, S("a b\0c d\nPING\n"), "2[1:a][1:b];1[4:PING];more:0");
    expect(NULL, S("\"a\0\"\n"), "err:Protocol error: unbalanced quotes in request");
}

static void test_unbalanced_quotes_are_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "set \"a\n", "set \"a\"b\n", "set 'a'b\n", "set 'a\n", "\"\\\"\n", "'\\'\n", "\"a\\\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect(NULL, bad[i], strlen(bad[i]), "err:Protocol error: unbalanced quotes in request");
}

static void test_binary_bulks_keep_nul_and_crlf(void **state)
{
    (void)state;
    expect(NULL, S("*2\r\n$6\r\n\0\r\n*$\n\r\n$2\r\n\r\n\r\n"), "2[6:\\0\r\n*$\n][2:\r\n];more:0");
    struct resp_parser p;
    parser_init(&p, NULL);
    const char in[] = "*1\r\n$5\r\na\0b\r\n\r\n";
    size_t used, len;
    assert_int_equal(resp_parse(&p, in, sizeof(in) - 1, &used), RESP_OK);
    const char *a = resp_parser_arg(&p, 0, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(a, "a\0b\r\n", 5);
    resp_parser_free(&p);
}

static void test_each_error_has_redis_wording(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *msg;
    } cases[] = {
        {"*abc\r\n", "invalid multibulk length"},
        {"*01\r\n", "invalid multibulk length"},
        {"*+1\r\n", "invalid multibulk length"},
        {"*-0\r\n", "invalid multibulk length"},
        {"*\r\n", "invalid multibulk length"},
        {"* 1\r\n", "invalid multibulk length"},
        {"*1 \r\n", "invalid multibulk length"},
        {"*1\rX", "invalid multibulk length"},
        {"*9223372036854775808\r\n", "invalid multibulk length"},
        {"*-9223372036854775809\r\n", "invalid multibulk length"},
        {"*1048577\r\n", "invalid multibulk length"},
        {"*1\r\nx3\r\n", "expected '$', got 'x'"},
        {"*1\r\n\r\n", "expected '$', got ' '"},
        {"*2\r\n$1\r\na\r\n:1\r\n", "expected '$', got ':'"},
        {"*1\r\n$-1\r\n", "invalid bulk length"},
        {"*1\r\n$abc\r\n", "invalid bulk length"},
        {"*1\r\n$\r\n", "invalid bulk length"},
        {"*1\r\n$03\r\n", "invalid bulk length"},
        {"*1\r\n$3\rX", "invalid bulk length"},
        {"*1\r\n$536870913\r\n", "invalid bulk length"},
        {"*1\r\n$3\r\nfooXY", "expected CRLF after bulk data"},
        {"*1\r\n$3\r\nfoo\rX", "expected CRLF after bulk data"},
        {"*1\r\n$3\r\nfoo\n\r", "expected CRLF after bulk data"},
        {"get \"k\n", "unbalanced quotes in request"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "err:Protocol error: %s", cases[i].msg);
        expect(NULL, cases[i].in, strlen(cases[i].in), want);
    }
    /* Right under the limits: waiting for more, not an error. */
    expect(NULL, S("*1048576\r\n"), "more:10");
    expect(NULL, S("*1\r\n$536870912\r\n"), "more:16");
}

/* A line of n bytes: prefix, then filler up to n. */
static char *long_line(const char *prefix, char filler, size_t n)
{
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, filler, n);
    memcpy(s, prefix, strlen(prefix));
    return s;
}

static void test_lines_without_end_are_refused_past_the_inline_limit(void **state)
{
    (void)state;
    size_t max = RESP_INLINE_BYTES_MAX_DEFAULT;
    /* max + 1 bytes with no line end are too many; max bytes may still get one. */
    char *s = long_line("", 'a', max + 1);
    char *r = feed(NULL, s, max, 4096, 4096);
    assert_string_equal(r, "more:65536");
    free(r);
    r = feed(NULL, s, max + 1, 4096, 4096);
    assert_string_equal(r, "err:Protocol error: too big inline request");
    free(r);
    free(s);
    s = long_line("*", '1', max + 1);
    r = feed(NULL, s, max + 1, 1000, 1000);
    assert_string_equal(r, "err:Protocol error: too big mbulk count string");
    free(r);
    free(s);
    s = long_line("*1\r\n$", '1', max + 5);
    r = feed(NULL, s, max + 5, 1000, 1000);
    assert_string_equal(r, "err:Protocol error: too big bulk count string");
    free(r);
    /* The same bytes whole: the same error (not "invalid bulk length" at a later CR). */
    s = realloc(s, max + 10);
    assert_non_null(s);
    memcpy(s + max + 5, "\r\n", 2);
    r = feed_whole(NULL, s, max + 7);
    assert_string_equal(r, "err:Protocol error: too big bulk count string");
    free(r);
    free(s);
}

static void test_limits_are_enforced_at_their_edge(void **state)
{
    (void)state;
    struct resp_limits l = small_limits();
    expect(&l, S("*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"), "3[1:a][1:b][1:c];more:0");
    expect(&l, S("*4\r\n"), "err:Protocol error: invalid multibulk length");
    expect(&l, S("*1\r\n$10\r\n0123456789\r\n"), "1[10:0123456789];more:0");
    expect(&l, S("*1\r\n$11\r\n"), "err:Protocol error: invalid bulk length");
    /* request_bytes_max 16: 8 + 8 fits, 8 + 9 does not (refused at the second length). */
    expect(&l, S("*2\r\n$8\r\n01234567\r\n$8\r\n01234567\r\n"), "2[8:01234567][8:01234567];more:0");
    expect(&l, S("*2\r\n$8\r\n01234567\r\n$9\r\n"), "err:Protocol error: too big request");
    /* inline_bytes_max 8: bytes before the LF, a CR included. */
    expect(&l, S("1234 678\n"), "2[4:1234][3:678];more:0");
    expect(&l, S("1234567\r\n"), "1[7:1234567];more:0");
    expect(&l, S("123456789\n"), "err:Protocol error: too big inline request");
    expect(&l, S("12345678\r\n"), "err:Protocol error: too big inline request");
    expect(&l, S("a b c d\n"), "err:Protocol error: too many arguments in inline request");
    /* The '*' and '$' lines: at most 8 bytes before the CR. */
    expect(&l, S("*0000001"), "more:8");
    expect(&l, S("*00000001"), "err:Protocol error: too big mbulk count string");
    expect(&l, S("*1\r\n$-000000"), "more:12");
    expect(&l, S("*1\r\n$-0000000"), "err:Protocol error: too big bulk count string");
}

static void test_init_refuses_zero_limits(void **state)
{
    (void)state;
    struct resp_parser p;
    struct resp_limits l;
    resp_limits_default(&l);
    assert_int_equal(l.args_max, 1048576);
    assert_int_equal(l.bulk_bytes_max, 512u * 1024 * 1024);
    assert_int_equal(l.inline_bytes_max, 64 * 1024);
    assert_int_equal(l.request_bytes_max, 1024u * 1024 * 1024);
    l.args_max = 0;
    assert_int_equal(resp_parser_init(&p, &l), -EINVAL);
    resp_limits_default(&l);
    l.inline_bytes_max = SIZE_MAX;
    assert_int_equal(resp_parser_init(&p, &l), -EINVAL);
}

static void test_every_split_gives_the_same_requests(void **state)
{
    (void)state;
    static const char *inputs[] = {
        "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
        "set 'a b' \"c\\x41\"\r\n\r\n*0\r\n*-1\r\nget a\n",
        "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n*1\r\n$3\r\nfoo",
        "*1\r\n$3\r\nfoo\r\n*1\r\n$3\r\nfooXY",
        "PING\r\n*1\r\nx\r\n",
        "*1\r\n$2\r\n\r\n\r\n*1\r\n$1\r\n\n\r\n",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        check_every_split(NULL, inputs[i], strlen(inputs[i]));
    struct resp_limits l = small_limits();
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        check_every_split(&l, inputs[i], strlen(inputs[i]));
}

static void test_pipeline_of_many_requests(void **state)
{
    (void)state;
    const size_t count = 10000;
    char *in = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&in, &n);
    assert_non_null(f);
    for (size_t i = 0; i < count; i++) {
        if (i % 3 == 0)
            fprintf(f, "SET key:%zu \"v %zu\"\r\n", i, i);
        else if (i % 3 == 1)
            fprintf(f, "*2\r\n$3\r\nGET\r\n$%d\r\nkey:%zu\r\n", snprintf(NULL, 0, "key:%zu", i), i);
        else
            fprintf(f, "*1\r\n$4\r\nPING\r\n");
    }
    assert_int_equal(fclose(f), 0);

    struct resp_parser p;
    parser_init(&p, NULL);
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        size_t used, len;
        assert_int_equal(resp_parse(&p, in + off, n - off, &used), RESP_OK);
        off += used;
        char want[64];
        const char *a = resp_parser_arg(&p, resp_parser_argc(&p) - 1, &len);
        if (i % 3 == 0) {
            assert_int_equal(resp_parser_argc(&p), 3);
            snprintf(want, sizeof(want), "v %zu", i);
        } else if (i % 3 == 1) {
            assert_int_equal(resp_parser_argc(&p), 2);
            snprintf(want, sizeof(want), "key:%zu", i);
        } else {
            assert_int_equal(resp_parser_argc(&p), 1);
            snprintf(want, sizeof(want), "PING");
        }
        assert_int_equal(len, strlen(want));
        assert_memory_equal(a, want, len);
    }
    assert_int_equal(off, n);
    resp_parser_free(&p);

    /* In pieces of 7 bytes: the same transcript. */
    char *whole = feed_whole(NULL, in, n);
    char *pieces = feed(NULL, in, n, 7, 7);
    assert_string_equal(whole, pieces);
    free(whole);
    free(pieces);
    free(in);
}

/* Feed in[0..n) in pieces of `piece` bytes without copying (the buffer stays where it is) and
 * return the bytes the parser examined; the input must end with one whole request. */
static uint64_t scanned_for(const char *in, size_t n, size_t piece, size_t *calls)
{
    struct resp_parser p;
    parser_init(&p, NULL);
    size_t avail = 0;
    size_t used = 0;
    int rc = RESP_MORE;
    *calls = 0;
    while (rc == RESP_MORE) {
        avail = n - avail < piece ? n : avail + piece;
        rc = resp_parse(&p, in, avail, &used);
        (*calls)++;
    }
    assert_int_equal(rc, RESP_OK);
    assert_int_equal(used, n);
    uint64_t scanned = resp_parser_scanned_bytes(&p);
    resp_parser_free(&p);
    return scanned;
}

static void test_work_stays_linear_when_fed_in_pieces(void **state)
{
    (void)state;
    /* A 1 MiB bulk in 1 KiB pieces: the lines and the CRLF, not the bulk, over ~1025 calls. */
    const size_t mib = 1024 * 1024;
    char *in = malloc(mib + 64);
    assert_non_null(in);
    int h = snprintf(in, 64, "*1\r\n$%zu\r\n", mib);
    memset(in + h, 'x', mib);
    memcpy(in + h + mib, "\r\n", 2);
    size_t n = (size_t)h + mib + 2, calls;
    uint64_t scanned = scanned_for(in, n, 1024, &calls);
    assert_true(calls >= 1024);
    assert_true(scanned <= 64);
    free(in);

    /* An inline line of 60000 bytes a byte at a time: each byte found once and split once. */
    n = 60000;
    in = long_line("SET k ", 'v', n);
    in[n - 1] = '\n';
    scanned = scanned_for(in, n, 1, &calls);
    assert_int_equal(calls, n);
    assert_true(scanned <= 2 * n + calls);
    free(in);

    /* 100000 small arguments in 100-byte pieces. */
    const size_t args = 100000;
    in = NULL;
    FILE *f = open_memstream(&in, &n);
    assert_non_null(f);
    fprintf(f, "*%zu\r\n", args);
    for (size_t i = 0; i < args; i++)
        fprintf(f, "$1\r\n%c\r\n", (char)('a' + i % 26));
    assert_int_equal(fclose(f), 0);
    scanned = scanned_for(in, n, 100, &calls);
    assert_true(scanned <= n + calls);
    free(in);
}

static void test_error_is_final(void **state)
{
    (void)state;
    struct resp_parser p;
    parser_init(&p, NULL);
    size_t used = 1;
    assert_int_equal(resp_parse(&p, S("*x\r\n"), &used), RESP_EPROTO);
    assert_int_equal(used, 0);
    assert_string_equal(resp_parser_error(&p), "Protocol error: invalid multibulk length");
    assert_int_equal(resp_parse(&p, S("PING\r\n"), &used), RESP_EPROTO);
    assert_string_equal(resp_parser_error(&p), "Protocol error: invalid multibulk length");
    assert_int_equal(resp_parser_argc(&p), 0);
    resp_parser_free(&p);
    /* Initialized again after free: usable. */
    parser_init(&p, NULL);
    assert_int_equal(resp_parse(&p, S("PING\r\n"), &used), RESP_OK);
    assert_int_equal(used, 6);
    resp_parser_free(&p);
}

static void test_huge_argument_array_is_given_back(void **state)
{
    (void)state;
    const size_t args = 5000;
    char *in = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&in, &n);
    assert_non_null(f);
    fprintf(f, "*%zu\r\n", args);
    for (size_t i = 0; i < args; i++)
        fputs("$0\r\n\r\n", f);
    assert_int_equal(fclose(f), 0);
    struct resp_parser p;
    parser_init(&p, NULL);
    size_t used;
    assert_int_equal(resp_parse(&p, in, n, &used), RESP_OK);
    assert_int_equal(resp_parser_argc(&p), args);
    assert_true(p.args_cap >= args);
    assert_int_equal(resp_parse(&p, S("PING\n"), &used), RESP_OK);
    assert_true(p.args_cap <= 1024);
    resp_parser_free(&p);
    free(in);
}

/* ---- writer ---- */

static void expect_out(struct resp_out *o, const char *want, size_t n)
{
    size_t len;
    const char *got = resp_out_pending(o, &len);
    assert_int_equal(len, n);
    assert_memory_equal(got, want, n);
    resp_out_consume(o, len);
    got = resp_out_pending(o, &len);
    assert_int_equal(len, 0);
}

static void test_writer_writes_each_reply_type_exactly(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_MAX_DEFAULT);
    assert_int_equal(resp_out_simple(&o, "OK"), 0);
    expect_out(&o, S("+OK\r\n"));
    assert_int_equal(resp_out_simple(&o, "a\r\nb"), 0);
    expect_out(&o, S("+a  b\r\n"));
    assert_int_equal(resp_out_error(&o, "ERR bad\r\nthing\n"), 0);
    expect_out(&o, S("-ERR bad  thing \r\n"));
    assert_int_equal(resp_out_errorf(&o, "ERR unknown command '%s'", "FOO"), 0);
    expect_out(&o, S("-ERR unknown command 'FOO'\r\n"));
    assert_int_equal(resp_out_int(&o, 0), 0);
    assert_int_equal(resp_out_int(&o, -1), 0);
    assert_int_equal(resp_out_int(&o, LLONG_MIN), 0);
    assert_int_equal(resp_out_int(&o, LLONG_MAX), 0);
    expect_out(&o, S(":0\r\n:-1\r\n:-9223372036854775808\r\n:9223372036854775807\r\n"));
    assert_int_equal(resp_out_bulk(&o, "a\0b\r\n", 5), 0);
    assert_int_equal(resp_out_bulk(&o, NULL, 0), 0);
    expect_out(&o, S("$5\r\na\0b\r\n\r\n$0\r\n\r\n"));
    assert_int_equal(resp_out_null(&o), 0);
    assert_int_equal(resp_out_null_array(&o), 0);
    assert_int_equal(resp_out_array(&o, 2), 0);
    assert_int_equal(resp_out_array(&o, 0), 0);
    expect_out(&o, S("$-1\r\n*-1\r\n*2\r\n*0\r\n"));
    assert_false(o.over);
    resp_out_free(&o);
}

static void test_writer_refuses_past_the_cap_and_keeps_what_it_has(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, 20);
    assert_int_equal(resp_out_simple(&o, "OK"), 0);                  /* 5 pending */
    assert_int_equal(resp_out_bulk(&o, "0123456789", 10), -ENOBUFS); /* + 17 > 20 */
    assert_true(o.over);
    expect_out(&o, S("+OK\r\n")); /* the failed reply left nothing behind */
    resp_out_free(&o);

    resp_out_init(&o, 20);
    assert_int_equal(resp_out_simple(&o, "OK"), 0);
    assert_int_equal(resp_out_bulk(&o, "012345678", 9), 0); /* 5 + 15 = 20: at the cap */
    assert_false(o.over);
    assert_int_equal(resp_out_int(&o, 1), -ENOBUFS);
    assert_true(o.over);
    size_t len;
    resp_out_pending(&o, &len);
    assert_int_equal(len, 20);
    /* A partial send makes room. */
    resp_out_consume(&o, 5);
    assert_int_equal(resp_out_int(&o, 1), 0);
    expect_out(&o, S("$9\r\n012345678\r\n:1\r\n"));
    assert_true(o.over); /* sticky until reset */
    assert_int_equal(resp_out_bulk(&o, NULL, 21), -ENOBUFS);
    assert_int_equal(resp_out_error(&o, "ERR this message is too long"), -ENOBUFS);
    resp_out_reset(&o);
    assert_false(o.over);
    resp_out_pending(&o, &len);
    assert_int_equal(len, 0);
    resp_out_free(&o);
}

static void test_writer_partial_sends_keep_the_byte_stream(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, 1024 * 1024);
    char *want = NULL;
    size_t want_len = 0;
    FILE *f = open_memstream(&want, &want_len);
    assert_non_null(f);
    char *got = malloc(4 * 1024 * 1024);
    assert_non_null(got);
    size_t got_len = 0;
    char val[3000];
    memset(val, 'v', sizeof(val));
    /* Replies of growing sizes, sent a prime number of bytes at a time. */
    for (size_t i = 0; i < 2000; i++) {
        size_t n = (i * 37) % sizeof(val);
        assert_int_equal(resp_out_bulk(&o, val, n), 0);
        fprintf(f, "$%zu\r\n", n);
        fwrite(val, 1, n, f);
        fputs("\r\n", f);
        assert_int_equal(resp_out_int(&o, (long long)i), 0);
        fprintf(f, ":%zu\r\n", i);
        size_t len;
        const char *p = resp_out_pending(&o, &len);
        size_t send = cs_min_size(len, 1021);
        memcpy(got + got_len, p, send);
        got_len += send;
        resp_out_consume(&o, send);
    }
    size_t len;
    const char *p = resp_out_pending(&o, &len);
    memcpy(got + got_len, p, len);
    got_len += len;
    resp_out_consume(&o, len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, got_len);
    assert_false(o.over);
    free(got);
    free(want);
    resp_out_free(&o);
}

static void test_writer_output_parses_back(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_MAX_DEFAULT);
    assert_int_equal(resp_out_array(&o, 3), 0);
    assert_int_equal(resp_out_bulk(&o, "SET", 3), 0);
    assert_int_equal(resp_out_bulk(&o, "k\r\n", 3), 0);
    assert_int_equal(resp_out_bulk(&o, "", 0), 0);
    size_t len;
    const char *req = resp_out_pending(&o, &len);
    char *got = feed_whole(NULL, req, len);
    assert_string_equal(got, "3[3:SET][3:k\r\n][0:];more:0");
    free(got);
    resp_out_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk_request_gives_its_arguments_in_place),
        cmocka_unit_test(test_inline_request_is_split_on_blanks),
        cmocka_unit_test(test_empty_requests_come_back_with_no_arguments),
        cmocka_unit_test(test_inline_quoting_follows_sdssplitargs),
        cmocka_unit_test(test_unbalanced_quotes_are_refused),
        cmocka_unit_test(test_binary_bulks_keep_nul_and_crlf),
        cmocka_unit_test(test_each_error_has_redis_wording),
        cmocka_unit_test(test_lines_without_end_are_refused_past_the_inline_limit),
        cmocka_unit_test(test_limits_are_enforced_at_their_edge),
        cmocka_unit_test(test_init_refuses_zero_limits),
        cmocka_unit_test(test_every_split_gives_the_same_requests),
        cmocka_unit_test(test_pipeline_of_many_requests),
        cmocka_unit_test(test_work_stays_linear_when_fed_in_pieces),
        cmocka_unit_test(test_error_is_final),
        cmocka_unit_test(test_huge_argument_array_is_given_back),
        cmocka_unit_test(test_writer_writes_each_reply_type_exactly),
        cmocka_unit_test(test_writer_refuses_past_the_cap_and_keeps_what_it_has),
        cmocka_unit_test(test_writer_partial_sends_keep_the_byte_stream),
        cmocka_unit_test(test_writer_output_parses_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
