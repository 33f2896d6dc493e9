/* Unit tests of the CLI's loader (tools/load.c). The line reader splits at LF only, keeps NUL and
 * CR bytes as data, counts a final line without LF, joins a line across read(2) chunks, and
 * refuses a line over LOAD_LINE_BYTES_MAX with -EMSGSIZE. The line parser refuses an empty line,
 * a line without TAB, a second raw TAB and bad escapes (naming key or value), and unescapes the
 * rest. A whole load into a real database stores every line (a key given twice keeps the later
 * value), stops at a refused line with the records before it stored, reports a put the engine
 * refuses with its line, stops before reading when asked to, and calls progress. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"
#include "tools/load.h"

/* A readable descriptor holding n bytes of p, positioned at its start. */
static int input_fd(const void *p, size_t n)
{
    int fd = memfd_create("load-input", 0);
    assert_true(fd >= 0);
    const char *c = p;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, c + done, n - done);
        assert_true(w > 0);
        done += (size_t)w;
    }
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static void test_reader_splits_at_lf_and_keeps_other_bytes(void **state)
{
    (void)state;
    static const char in[] = "a\tb\n\nc\0d\r\te\nlast";
    int fd = input_fd(in, sizeof(in) - 1);
    struct load_reader r;
    assert_int_equal(load_reader_init(&r, fd), 0);
    assert_int_equal(load_reader_next(&r, NULL), 1);
    assert_int_equal(r.line_len, 3);
    assert_memory_equal(r.line, "a\tb", 3);
    assert_int_equal(r.line_no, 1);
    assert_int_equal(load_reader_next(&r, NULL), 1); /* an empty line is a line */
    assert_int_equal(r.line_len, 0);
    assert_int_equal(load_reader_next(&r, NULL), 1);
    assert_int_equal(r.line_len, 6);
    assert_memory_equal(r.line, "c\0d\r\te", 6);
    assert_int_equal(load_reader_next(&r, NULL), 1); /* no final LF */
    assert_int_equal(r.line_len, 4);
    assert_memory_equal(r.line, "last", 4);
    assert_int_equal(r.line_no, 4);
    assert_int_equal(load_reader_next(&r, NULL), 0);
    assert_int_equal(load_reader_next(&r, NULL), 0);
    load_reader_free(&r);
    close(fd);
}

static void test_reader_joins_a_line_across_chunks_and_refuses_overlong(void **state)
{
    (void)state;
    size_t big = 3 * LOAD_READ_CHUNK_BYTES + 17;
    char *in = malloc(big + 3);
    assert_non_null(in);
    memset(in, 'x', big);
    memcpy(in + big, "\ny\n", 3);
    int fd = input_fd(in, big + 3);
    struct load_reader r;
    assert_int_equal(load_reader_init(&r, fd), 0);
    assert_int_equal(load_reader_next(&r, NULL), 1);
    assert_int_equal(r.line_len, big);
    assert_memory_equal(r.line, in, big);
    assert_int_equal(load_reader_next(&r, NULL), 1);
    assert_int_equal(r.line_len, 1);
    assert_int_equal(r.line_no, 2);
    load_reader_free(&r);
    close(fd);
    free(in);

    size_t over = LOAD_LINE_BYTES_MAX + 1;
    in = malloc(over + 2);
    assert_non_null(in);
    memcpy(in, "k\n", 2);
    memset(in + 2, 'z', over);
    fd = input_fd(in, over + 2);
    assert_int_equal(load_reader_init(&r, fd), 0);
    assert_int_equal(load_reader_next(&r, NULL), 1);
    assert_int_equal(load_reader_next(&r, NULL), -EMSGSIZE);
    assert_int_equal(r.line_no, 1); /* the line before the long one */
    load_reader_free(&r);
    close(fd);
    free(in);
}

/* Parse line (a C string) and return the reason it is refused, or NULL. */
static const char *parse(const char *line, char *out, size_t *klen, size_t *vlen,
                         const char **field)
{
    return load_parse_line(line, strlen(line), out, klen, vlen, field);
}

static void test_parser_refuses_bad_lines_with_a_reason(void **state)
{
    (void)state;
    char out[64];
    size_t klen = 99, vlen = 99;
    const char *field = "x";
    assert_null(parse("k\\tey\tv\\x41\\\\", out, &klen, &vlen, &field));
    assert_null(field);
    assert_int_equal(klen, 4);
    assert_memory_equal(out, "k\tey", 4);
    assert_int_equal(vlen, 3);
    assert_memory_equal(out + 4, "vA\\", 3);
    assert_null(parse("\t", out, &klen, &vlen, &field)); /* the engine refuses the empty key */
    assert_int_equal(klen, 0);
    assert_int_equal(vlen, 0);

    const char *why = parse("", out, &klen, &vlen, &field);
    assert_non_null(why);
    assert_non_null(strstr(why, "empty"));
    assert_null(field);
    why = parse("no tab here", out, &klen, &vlen, &field);
    assert_non_null(why);
    assert_non_null(strstr(why, "no TAB"));
    why = parse("a\tb\tc", out, &klen, &vlen, &field);
    assert_non_null(why);
    assert_non_null(strstr(why, "second TAB"));
    assert_null(field);
    why = parse("a\\q\tb", out, &klen, &vlen, &field);
    assert_non_null(why);
    assert_string_equal(field, "key");
    why = parse("a\tb\\", out, &klen, &vlen, &field);
    assert_non_null(why);
    assert_string_equal(field, "value");
}

/* ---- Whole loads into a database ---- */

struct db_fixture {
    char root[CST_PATH_MAX]; /* temporary folder */
    cs_db *db;               /* open database in it */
};

static int db_setup(void **state)
{
    struct db_fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    cst_tmpdir_make(f->root, sizeof(f->root), "load");
    cs_options *o = cs_options_new();
    assert_non_null(o);
    assert_int_equal(cs_options_set(o, "shards", "2"), 0);
    assert_int_equal(cs_options_set(o, "durability", "none"), 0);
    char dir[CST_PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/db", f->root);
    assert_int_equal(cs_open(dir, o, &f->db), 0);
    cs_options_free(o);
    *state = f;
    return 0;
}

static int db_teardown(void **state)
{
    struct db_fixture *f = *state;
    assert_int_equal(cs_close(f->db), 0);
    assert_int_equal(cst_tmpdir_remove(f->root), 0);
    free(f);
    return 0;
}

/* The value of key in coll, as a malloc'ed C string, or NULL when absent. */
static char *value_of(cs_db *db, const char *coll, const char *key)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = cs_get(db, coll, key, strlen(key), &val, &vlen);
    if (rc == CS_ENOTFOUND)
        return NULL;
    assert_int_equal(rc, 0);
    char *s = malloc(vlen + 1);
    assert_non_null(s);
    if (vlen > 0)
        memcpy(s, val, vlen);
    s[vlen] = '\0';
    cs_free(val);
    return s;
}

static void assert_value(cs_db *db, const char *coll, const char *key, const char *want)
{
    char *got = value_of(db, coll, key);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* Load text into coll; returns load_run's result in *res. */
static void load_text(cs_db *db, const char *coll, const char *text,
                      const volatile sig_atomic_t *stop, struct load_result *res)
{
    int fd = input_fd(text, strlen(text));
    struct load_config cfg = {.db = db, .coll = coll, .fd = fd, .stop = stop};
    assert_int_equal(load_run(&cfg, res), 0);
    close(fd);
}

static void progress_count(void *arg, unsigned long long loaded)
{
    (void)loaded;
    (*(unsigned *)arg)++;
}

static void test_load_stores_every_line_and_the_later_duplicate_wins(void **state)
{
    struct db_fixture *f = *state;
    size_t cap = 3000u * 32u;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    for (unsigned i = 0; i < 3000; i++)
        len += (size_t)snprintf(text + len, cap - len, "key%u\tvalue%u\n", i, i);
    len += (size_t)snprintf(text + len, cap - len, "key7\tlater\\tone");
    int fd = input_fd(text, len);
    unsigned calls = 0;
    struct load_config cfg = {
        .db = f->db, .coll = "c", .fd = fd, .progress = progress_count, .progress_arg = &calls};
    struct load_result res;
    assert_int_equal(load_run(&cfg, &res), 0);
    close(fd);
    free(text);
    assert_int_equal(res.stop, LOAD_END);
    assert_int_equal(res.loaded, 3001);
    assert_int_equal(calls, 3001 / 256);
    assert_value(f->db, "c", "key0", "value0");
    assert_value(f->db, "c", "key2999", "value2999");
    assert_value(f->db, "c", "key7", "later\tone");
}

static void test_load_stops_at_a_bad_line_keeping_the_ones_before(void **state)
{
    struct db_fixture *f = *state;
    struct load_result res;
    load_text(f->db, "b", "a\t1\nb\t2\nno tab\nd\t4\n", NULL, &res);
    assert_int_equal(res.stop, LOAD_BAD_LINE);
    assert_int_equal(res.line_no, 3);
    assert_non_null(strstr(res.reason, "no TAB"));
    assert_int_equal(res.loaded, 2);
    assert_value(f->db, "b", "a", "1");
    assert_value(f->db, "b", "b", "2");
    assert_null(value_of(f->db, "b", "d"));

    load_text(f->db, "b", "e\t5\nf\tbad\\q\n", NULL, &res);
    assert_int_equal(res.stop, LOAD_BAD_LINE);
    assert_int_equal(res.line_no, 2);
    assert_string_equal(res.field, "value");
    assert_int_equal(res.loaded, 1);
}

static void test_load_reports_a_refused_put_with_its_line(void **state)
{
    struct db_fixture *f = *state;
    struct load_result res;
    load_text(f->db, "p", "a\t1\n\tempty key\nc\t3\n", NULL, &res);
    assert_int_equal(res.stop, LOAD_PUT_FAILED);
    assert_int_equal(res.line_no, 2);
    assert_int_equal(res.rc, CS_EKEYSIZE);
    assert_value(f->db, "p", "a", "1");
}

static void test_load_stops_when_asked(void **state)
{
    struct db_fixture *f = *state;
    volatile sig_atomic_t stop = 1;
    struct load_result res;
    load_text(f->db, "s", "a\t1\n", &stop, &res);
    assert_int_equal(res.stop, LOAD_INTERRUPTED);
    assert_int_equal(res.line_no, 0);
    assert_int_equal(res.loaded, 0);
    assert_null(value_of(f->db, "s", "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_splits_at_lf_and_keeps_other_bytes),
        cmocka_unit_test(test_reader_joins_a_line_across_chunks_and_refuses_overlong),
        cmocka_unit_test(test_parser_refuses_bad_lines_with_a_reason),
        cmocka_unit_test_setup_teardown(test_load_stores_every_line_and_the_later_duplicate_wins,
                                        db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_load_stops_at_a_bad_line_keeping_the_ones_before,
                                        db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_load_reports_a_refused_put_with_its_line, db_setup,
                                        db_teardown),
        cmocka_unit_test_setup_teardown(test_load_stops_when_asked, db_setup, db_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
