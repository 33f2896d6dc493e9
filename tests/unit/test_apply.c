/* Unit tests of the CLI's transaction reader (tools/apply.c). The line parser takes put and del
 * lines, unescapes KEY and VALUE, and refuses, with a reason, an empty line, a line without TAB,
 * an unknown operation, too few or too many fields and bad escapes (naming key or value). A
 * whole apply into a real database of two shards commits every line as one transaction across
 * both shards (the later write of a key wins, a delete of an absent key is fine); a bad line, an
 * operation the engine refuses, and a transaction over CS_TXN_OPS_MAX apply nothing, naming
 * the line. */
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
#include "tools/apply.h"

/* A readable descriptor holding n bytes of p, positioned at its start. */
static int input_fd(const void *p, size_t n)
{
    int fd = memfd_create("apply-input", 0);
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

/* Parse a C string; returns the reason (NULL: accepted). */
static const char *parse(const char *line, char *out, struct apply_op *op, const char **field)
{
    return apply_parse_line(line, strlen(line), out, op, field);
}

static void test_parser_takes_put_and_del_with_escapes(void **state)
{
    (void)state;
    char out[64];
    struct apply_op op;
    const char *field;
    assert_null(parse("put\taccts\tal\\tice\t1\\x30\\n", out, &op, &field));
    assert_int_equal(op.del, 0);
    assert_string_equal(op.coll, "accts");
    assert_int_equal(op.klen, 6);
    assert_memory_equal(op.key, "al\tice", 6);
    assert_int_equal(op.vlen, 3);
    assert_memory_equal(op.val, "10\n", 3);
    assert_null(parse("put\tc\tk\t", out, &op, &field)); /* an empty value */
    assert_int_equal(op.vlen, 0);
    assert_null(parse("del\tc\tk\\0", out, &op, &field));
    assert_int_equal(op.del, 1);
    assert_string_equal(op.coll, "c");
    assert_int_equal(op.klen, 2);
    assert_memory_equal(op.key, "k\0", 2);
    assert_null(op.val);
}

static void test_parser_refuses_bad_lines_with_a_reason(void **state)
{
    (void)state;
    char out[64];
    struct apply_op op;
    const char *field;
    static const char *const bad[] = {
        "",                     /* empty */
        "put accts alice 100",  /* spaces are not separators */
        "get\taccts\talice",    /* unknown operation */
        "PUT\taccts\talice\t1", /* operations are lower case */
        "put\taccts\talice",    /* no value */
        "put\ta\tb\tc\td",      /* a fifth field */
        "del\taccts",           /* no key */
        "del\taccts\talice\t1", /* a value */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = parse(bad[i], out, &op, &field);
        if (why == NULL)
            fail_msg("accepted: '%s'", bad[i]);
        assert_null(field);
    }
    assert_non_null(parse("put\tc\tk\\q\tv", out, &op, &field));
    assert_string_equal(field, "key");
    assert_non_null(parse("put\tc\tk\tv\\", out, &op, &field));
    assert_string_equal(field, "value");
    assert_non_null(parse("del\tc\t\\x4", out, &op, &field));
    assert_string_equal(field, "key");
}

struct db_fixture {
    char root[CST_PATH_MAX];
    cs_db *db;
};

static int db_setup(void **state)
{
    struct db_fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    cst_tmpdir_make(f->root, sizeof(f->root), "apply");
    char dir[CST_PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/db", f->root);
    assert_int_equal(cst_open(dir, &f->db, "shards=2", "durability=none", NULL), 0);
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

/* The value of key in coll as a malloc'ed C string, or NULL when absent. */
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
    if (want == NULL) {
        if (got != NULL)
            fail_msg("%s/%s holds '%s', expected nothing", coll, key, got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void apply_text(cs_db *db, const char *text, struct apply_result *res)
{
    int fd = input_fd(text, strlen(text));
    assert_int_equal(apply_run(db, fd, res), 0);
    close(fd);
}

/* Two keys on different shards of db: k0 and k1 receive "key-<n>" names. */
static void keys_on_two_shards(cs_db *db, char *k0, char *k1, size_t size)
{
    unsigned first = 0;
    snprintf(k0, size, "key-0");
    first = cst_key_shard(db, k0, strlen(k0));
    for (unsigned i = 1; i < 1000; i++) {
        snprintf(k1, size, "key-%u", i);
        if (cst_key_shard(db, k1, strlen(k1)) != first)
            return;
    }
    fail_msg("no key on a second shard");
}

static void test_apply_commits_every_line_across_shards(void **state)
{
    struct db_fixture *f = *state;
    char k0[32], k1[32], text[512];
    keys_on_two_shards(f->db, k0, k1, sizeof(k0));
    assert_int_equal(cs_put(f->db, "a", "gone", 4, "x", 1), 0);
    snprintf(text, sizeof(text),
             "put\ta\t%s\t100\nput\ta\t%s\t50\nput\ta\t%s\t90\ndel\ta\tgone\ndel\ta\tnever\n"
             "put\tb\t%s\tt\\tab",
             k0, k1, k0, k1);
    struct apply_result res;
    apply_text(f->db, text, &res);
    assert_int_equal(res.stop, APPLY_COMMITTED);
    assert_int_equal(res.rc, 0);
    assert_int_equal(res.puts, 4);
    assert_int_equal(res.dels, 2);
    assert_int_equal(res.line_no, 6);
    assert_true(res.shards == 2);
    assert_value(f->db, "a", k0, "90"); /* the later write wins */
    assert_value(f->db, "a", k1, "50");
    assert_value(f->db, "a", "gone", NULL);
    assert_value(f->db, "b", k1, "t\tab");
    apply_text(f->db, "", &res); /* nothing to do is fine */
    assert_int_equal(res.stop, APPLY_COMMITTED);
    assert_int_equal(res.puts + res.dels, 0);
}

static void test_apply_of_a_bad_line_applies_nothing(void **state)
{
    struct db_fixture *f = *state;
    char k0[32], k1[32], text[512];
    keys_on_two_shards(f->db, k0, k1, sizeof(k0));
    assert_int_equal(cs_put(f->db, "a", k0, strlen(k0), "old", 3), 0);
    snprintf(text, sizeof(text), "put\ta\t%s\tnew\nput\ta\t%s\tnew\ndel\ta\t%s\nput a b c\n", k0,
             k1, k0);
    struct apply_result res;
    apply_text(f->db, text, &res);
    assert_int_equal(res.stop, APPLY_BAD_LINE);
    assert_int_equal(res.line_no, 4);
    assert_non_null(res.reason);
    assert_value(f->db, "a", k0, "old");
    assert_value(f->db, "a", k1, NULL);

    snprintf(text, sizeof(text), "put\ta\t%s\tnew\nput\tbad/name\tk\tv\n", k1);
    apply_text(f->db, text, &res);
    assert_int_equal(res.stop, APPLY_OP_FAILED);
    assert_int_equal(res.rc, CS_ENAME);
    assert_int_equal(res.line_no, 2);
    assert_value(f->db, "a", k1, NULL);
}

static void test_apply_over_the_transaction_limit_applies_nothing(void **state)
{
    struct db_fixture *f = *state;
    size_t lines = CS_TXN_OPS_MAX + 1;
    size_t cap = lines * 24;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = 0;
    for (size_t i = 0; i < lines; i++)
        n += (size_t)snprintf(text + n, cap - n, "put\tbig\tk%zu\tv\n", i);
    struct apply_result res;
    apply_text(f->db, text, &res);
    free(text);
    assert_int_equal(res.stop, APPLY_OP_FAILED);
    assert_int_equal(res.rc, CS_EBATCH);
    assert_int_equal(res.line_no, lines);
    assert_value(f->db, "big", "k0", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_takes_put_and_del_with_escapes),
        cmocka_unit_test(test_parser_refuses_bad_lines_with_a_reason),
        cmocka_unit_test_setup_teardown(test_apply_commits_every_line_across_shards, db_setup,
                                        db_teardown),
        cmocka_unit_test_setup_teardown(test_apply_of_a_bad_line_applies_nothing, db_setup,
                                        db_teardown),
        cmocka_unit_test_setup_teardown(test_apply_over_the_transaction_limit_applies_nothing,
                                        db_setup, db_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
