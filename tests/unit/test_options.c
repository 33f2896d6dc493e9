/* Unit tests of the options table (engine/options.c): the table is well formed (unique names,
 * ranges that fit their fields, a default for each option that its own parser accepts, one line
 * of help without markdown table breakers); the defaults are the documented ones; every count
 * and size accepts its range's ends and refuses one past them, leaving the options unchanged;
 * choices accept exactly their spellings; the INI loader goes through the same table; --help's
 * list names every option within 80 columns; and the README's options table is exactly what
 * options_write_markdown() prints, so the documentation cannot drift from the code (on a
 * mismatch, `make readme-options` rewrites the README's table). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cstore.h"
#include "engine/options.h"
#include "tests/test_util.h"

#define README_BEGIN "<!-- options:begin"
#define README_END "<!-- options:end"
#define README_BYTES_MAX (1u << 20)

/* The whole of path into a malloc'ed NUL-terminated string. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(README_BYTES_MAX + 1);
    assert_non_null(buf);
    size_t n = fread(buf, 1, README_BYTES_MAX, f);
    assert_true(n < README_BYTES_MAX);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* What a writer of the documentation prints, as a malloc'ed string. */
static char *captured(void (*write)(FILE *f))
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    assert_non_null(f);
    write(f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_table_is_well_formed(void **state)
{
    (void)state;
    assert_true(options_count >= 13);
    for (unsigned i = 0; i < options_count; i++) {
        const struct options_entry *e = &options_table[i];
        assert_non_null(e->name);
        assert_non_null(e->help);
        assert_true(strlen(e->help) > 10);
        assert_null(strchr(e->help, '|'));
        assert_null(strchr(e->help, '\n'));
        assert_ptr_equal(options_find(e->name), e);
        assert_true(e->value_default != NULL || e->shown_default != NULL);
        assert_true(e->field_offset + e->field_bytes <= sizeof(struct cs_options));
        switch (e->type) {
        case OPTIONS_COUNT:
        case OPTIONS_SIZE:
            assert_true(e->min <= e->max);
            assert_true(e->field_bytes == 4 || e->field_bytes == 8);
            if (e->field_bytes == 4)
                assert_true(e->max <= UINT32_MAX);
            assert_null(e->choices);
            break;
        case OPTIONS_CHOICE:
            assert_non_null(e->choices);
            assert_non_null(e->choices[0].name);
            assert_int_equal(e->field_bytes, 4);
            break;
        case OPTIONS_BOOL:
            assert_int_equal(e->field_bytes, 1);
            assert_null(e->choices);
            break;
        case OPTIONS_CPUSET:
        case OPTIONS_FAULT:
            assert_null(e->choices);
            break;
        }
        cs_options *o = cs_options_new();
        assert_non_null(o);
        if (e->value_default != NULL)
            assert_int_equal(cs_options_set(o, e->name, e->value_default), 0);
        cs_options_free(o);
    }
    assert_null(options_find("nonsense"));
}

static void test_defaults_are_the_documented_ones(void **state)
{
    (void)state;
    struct cs_options o;
    options_defaults(&o);
    assert_int_equal(o.shards, 0);
    assert_false(o.cpuset_given);
    assert_int_equal(o.durability, SHARD_SYNC);
    assert_int_equal(o.sync_interval_ms, 10);
    assert_int_equal(o.group_commit_delay_us, 0);
    assert_int_equal(o.wait_yield_us, 1000);
    assert_int_equal(o.wal_segment_bytes, 64ull << 20);
    assert_int_equal(o.wal_compress_bytes, 4096);
    assert_int_equal(o.batch_max, 256);
    assert_int_equal(o.memory_limit, 0);
    assert_int_equal(o.checkpoint_wal_bytes, 256ull << 20);
    assert_string_equal(o.fault, "");
    assert_false(o.salvage);
}

/* name=value is refused and leaves the options as they were. */
static void assert_refused(cs_options *o, const char *name, const char *value)
{
    struct cs_options before = *o;
    assert_int_equal(cs_options_set(o, name, value), CS_EOPTVAL);
    assert_memory_equal(&before, o, sizeof(before));
}

static void test_ranges_accept_their_ends_and_refuse_beyond(void **state)
{
    (void)state;
    cs_options *o = cs_options_new();
    assert_non_null(o);
    for (unsigned i = 0; i < options_count; i++) {
        const struct options_entry *e = &options_table[i];
        if (e->type != OPTIONS_COUNT && e->type != OPTIONS_SIZE)
            continue;
        char buf[32];
        uint64_t got = 0;
        snprintf(buf, sizeof(buf), "%" PRIu64, e->min);
        assert_int_equal(cs_options_set(o, e->name, buf), 0);
        memcpy(&got, (char *)o + e->field_offset, e->field_bytes); /* little-endian host */
        assert_int_equal(got, e->min);
        snprintf(buf, sizeof(buf), "%" PRIu64, e->max);
        assert_int_equal(cs_options_set(o, e->name, buf), 0);
        got = 0;
        memcpy(&got, (char *)o + e->field_offset, e->field_bytes);
        assert_int_equal(got, e->max);
        if (e->max < UINT64_MAX) {
            snprintf(buf, sizeof(buf), "%" PRIu64, e->max + 1);
            assert_refused(o, e->name, buf);
        }
        if (e->min > 0) {
            snprintf(buf, sizeof(buf), "%" PRIu64, e->min - 1);
            assert_refused(o, e->name, buf);
        }
        assert_refused(o, e->name, "");
        assert_refused(o, e->name, "-1");
        assert_refused(o, e->name, "12x");
        if (e->type == OPTIONS_COUNT)
            assert_refused(o, e->name, "1K");
    }
    assert_int_equal(cs_options_set(o, "wal_segment_bytes", "2M"), 0);
    assert_int_equal(o->wal_segment_bytes, 2ull << 20);
    assert_int_equal(cs_options_set(o, "memory_limit", "3GiB"), 0);
    assert_int_equal(o->memory_limit, 3ull << 30);
    assert_refused(o, "memory_limit", "99999999999G");
    cs_options_free(o);
}

static void test_choices_accept_exactly_their_spellings(void **state)
{
    (void)state;
    cs_options *o = cs_options_new();
    assert_non_null(o);
    assert_int_equal(cs_options_set(o, "durability", "async"), 0);
    assert_int_equal(o->durability, SHARD_ASYNC);
    assert_int_equal(cs_options_set(o, "durability", "none"), 0);
    assert_int_equal(o->durability, SHARD_NONE);
    assert_int_equal(cs_options_set(o, "durability", "sync"), 0);
    assert_int_equal(o->durability, SHARD_SYNC);
    assert_refused(o, "durability", "SYNC");
    assert_refused(o, "durability", "syncx");
    assert_int_equal(cs_options_set(o, "salvage", "true"), 0);
    assert_true(o->salvage);
    assert_int_equal(cs_options_set(o, "salvage", "0"), 0);
    assert_false(o->salvage);
    assert_int_equal(cs_options_set(o, "salvage", "1"), 0);
    assert_true(o->salvage);
    assert_int_equal(cs_options_set(o, "salvage", "false"), 0);
    assert_false(o->salvage);
    assert_refused(o, "salvage", "yes");
    assert_int_equal(cs_options_set(o, "cpuset", "0-1,3"), 0);
    assert_true(o->cpuset_given);
    assert_int_equal(CPU_COUNT(&o->cpuset), 3);
    assert_refused(o, "cpuset", "1-");
    assert_int_equal(cs_options_set(o, "fault", "write_eio=3"), 0);
    assert_string_equal(o->fault, "write_eio=3");
    assert_refused(o, "fault", "no_such_fault=1");
    char long_plan[300];
    memset(long_plan, 'a', sizeof(long_plan) - 1);
    long_plan[sizeof(long_plan) - 1] = '\0';
    assert_refused(o, "fault", long_plan);
    assert_int_equal(cs_options_set(o, "fault", ""), 0);
    assert_string_equal(o->fault, "");
    assert_int_equal(cs_options_set(o, "nonsense", "1"), CS_EOPTION);
    cs_options_free(o);
}

/* An INI file of every option at its default loads to the defaults: the loader and
 * cs_options_set share the table. */
static void test_ini_loader_uses_the_table(void **state)
{
    (void)state;
    char dir[CST_PATH_MAX], path[CST_PATH_MAX + 16];
    cst_tmpdir_make(dir, sizeof(dir), "options");
    snprintf(path, sizeof(path), "%s/cstore.ini", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[cstore]\n", f);
    for (unsigned i = 0; i < options_count; i++)
        if (options_table[i].value_default != NULL)
            fprintf(f, "%s = %s\n", options_table[i].name, options_table[i].value_default);
    fputs("durability = none\n", f);
    assert_int_equal(fclose(f), 0);
    cs_options *o = cs_options_new();
    assert_non_null(o);
    o->batch_max = 7;
    int line = -1;
    assert_int_equal(cs_options_load(o, path, &line), 0);
    assert_int_equal(line, 0);
    struct cs_options want;
    options_defaults(&want);
    want.durability = SHARD_NONE;
    assert_memory_equal(&want, o, sizeof(want));
    cs_options_free(o);
    assert_int_equal(cst_tmpdir_remove(dir), 0);
}

static void test_help_lists_every_option_within_80_columns(void **state)
{
    (void)state;
    char *help = captured(options_write_help);
    for (unsigned i = 0; i < options_count; i++) {
        char flag[80];
        snprintf(flag, sizeof(flag), "  --%s ", options_table[i].name);
        assert_non_null(strstr(help, flag));
    }
    assert_null(strchr(help, '`'));
    for (const char *line = help; *line != '\0';) {
        size_t n = strcspn(line, "\n");
        if (n > 80)
            fail_msg("--help line over 80 columns: %.*s", (int)n, line);
        line += n + (line[n] == '\n');
    }
    free(help);
}

/* The README's table, between its markers, is what options_write_markdown() prints. The test
 * runs from the repository's root (make test); $CS_README names another copy. */
static void test_readme_table_is_the_generated_one(void **state)
{
    (void)state;
    const char *path = getenv("CS_README") ? getenv("CS_README") : "README.md";
    char *readme = read_text(path);
    char *begin = strstr(readme, README_BEGIN);
    assert_non_null(begin);
    begin = strchr(begin, '\n');
    assert_non_null(begin);
    begin++;
    char *end = strstr(begin, README_END);
    assert_non_null(end);
    *end = '\0';
    char *want = captured(options_write_markdown);
    if (strcmp(begin, want) != 0)
        fail_msg("README.md's options table differs from engine/options.c's table; "
                 "run `make readme-options`. Expected:\n%s",
                 want);
    free(want);
    free(readme);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_well_formed),
        cmocka_unit_test(test_defaults_are_the_documented_ones),
        cmocka_unit_test(test_ranges_accept_their_ends_and_refuse_beyond),
        cmocka_unit_test(test_choices_accept_exactly_their_spellings),
        cmocka_unit_test(test_ini_loader_uses_the_table),
        cmocka_unit_test(test_help_lists_every_option_within_80_columns),
        cmocka_unit_test(test_readme_table_is_the_generated_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
