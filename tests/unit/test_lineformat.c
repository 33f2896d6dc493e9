/* Unit tests of the CLI's line format (tools/lineformat.c): the writer escapes exactly backslash,
 * TAB, LF, CR and NUL; what it writes unescapes back to the same bytes for every byte value; the
 * reader accepts \xHH in either case and refuses, with a reason, unknown escapes, a short \x and
 * a lone trailing backslash; unescaping never writes more bytes than it reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/lineformat.h"

/* Escape p[0..n) into a malloc'ed string; *len receives its length. */
static char *escaped(const void *p, size_t n, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    assert_non_null(f);
    lineformat_write_escaped(f, p, n);
    assert_int_equal(fclose(f), 0);
    *len = size;
    return buf;
}

static void test_writer_escapes_the_five_bytes_and_nothing_else(void **state)
{
    (void)state;
    const char in[] = "a\\b\tc\nd\re\0f\x01\x7f\xff";
    size_t len;
    char *out = escaped(in, sizeof(in) - 1, &len);
    const char want[] = "a\\\\b\\tc\\nd\\re\\0f\x01\x7f\xff";
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(out, want, len);
    free(out);
    out = escaped(NULL, 0, &len); /* an empty value may come as NULL */
    assert_int_equal(len, 0);
    free(out);
}

static void test_every_byte_value_round_trips(void **state)
{
    (void)state;
    unsigned char in[512];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 7 + i / 256);
    size_t len;
    char *esc = escaped(in, sizeof(in), &len);
    assert_true(len <= 2 * sizeof(in));
    for (size_t i = 0; i < len; i++) {
        assert_int_not_equal(esc[i], '\t');
        assert_int_not_equal(esc[i], '\n');
        assert_int_not_equal(esc[i], '\r');
        assert_int_not_equal(esc[i], '\0');
    }
    char *out = malloc(len);
    assert_non_null(out);
    size_t out_len = 0;
    assert_null(lineformat_unescape(esc, len, out, &out_len));
    assert_int_equal(out_len, sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    free(out);
    free(esc);
}

static void test_hex_escapes_in_either_case(void **state)
{
    (void)state;
    const char in[] = "\\x41\\x7e\\xFF\\xa0z";
    char out[sizeof(in)];
    size_t len = 0;
    assert_null(lineformat_unescape(in, sizeof(in) - 1, out, &len));
    assert_int_equal(len, 5);
    assert_memory_equal(out, "A~\xff\xa0z", 5);
}

static void test_bad_escapes_are_refused_with_a_reason(void **state)
{
    (void)state;
    const char *bad[] = {"\\", "ab\\", "\\q", "\\x", "\\x4", "\\x4g", "\\xg4", "a\\ b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[16];
        size_t len = 12345;
        const char *why = lineformat_unescape(bad[i], strlen(bad[i]), out, &len);
        assert_non_null(why);
        assert_true(strlen(why) > 0);
        assert_int_equal(len, 12345); /* untouched on failure */
    }
}

static void test_unescape_writes_no_more_than_it_reads(void **state)
{
    (void)state;
    /* out has exactly n bytes and a guard after them */
    const char in[] = "plain\\\\\\x00\\0\\t";
    size_t n = sizeof(in) - 1;
    char out[sizeof(in) + 1];
    memset(out, '#', sizeof(out));
    size_t len = 0;
    assert_null(lineformat_unescape(in, n, out, &len));
    assert_int_equal(len, 9);
    assert_memory_equal(out, "plain\\\0\0\t", 9);
    assert_int_equal(out[len], '#');
    assert_int_equal(out[n], '#');
    assert_null(lineformat_unescape("", 0, out, &len));
    assert_int_equal(len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_escapes_the_five_bytes_and_nothing_else),
        cmocka_unit_test(test_every_byte_value_round_trips),
        cmocka_unit_test(test_hex_escapes_in_either_case),
        cmocka_unit_test(test_bad_escapes_are_refused_with_a_reason),
        cmocka_unit_test(test_unescape_writes_no_more_than_it_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
