/* Options: one table, engine/options.c's options_table, is the only list of the engine's
 * options. Each row gives an option's name, the field of struct cs_options it sets, the type of
 * its value (count, size, choice, CPU list, fault plan), its range, its default and one line of
 * help. Everything else is driven by it:
 *   - cs_options_set() finds the row by name and parses the value by its type;
 *   - the INI file (read with inih: `name = value` lines, with or without a `[cstore]` section;
 *     other sections are refused so typos are not silently ignored) and the CLI's flags
 *     (`--NAME VALUE`, tools/cli.c) go through cs_options_set();
 *   - options_defaults() sets each row's default through the same parser, so a default is
 *     always in range;
 *   - `cstore --help` prints options_write_help(), and the README's options table is
 *     options_write_markdown()'s output: tests/unit/test_options.c fails when they differ
 *     (`make readme-options` rewrites the README's table).
 *
 * Values are checked here for syntax and range; combinations that depend on the machine or the
 * data folder (cpuset against shards and existing CPUs, the shard count recorded at creation)
 * are checked by cs_open(). Sizes accept a K, M or G suffix (powers of 1024), optionally followed
 * by B or iB. A refused value leaves the options unchanged. */
#include "options.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fault.h"
#include "util.h"

#define WAL_SEGMENT_BYTES_MIN (1ull << 20)
#define WAL_SEGMENT_BYTES_MAX (1ull << 30)
#define BATCH_MAX_MAX 65536u
#define INTERVAL_MS_MAX 3600000u
#define DELAY_US_MAX 1000000u
#define HELP_COLUMNS 80u     /* width of the --help text */
#define HELP_INDENT 28u      /* column where --help's descriptions start */
#define VALUES_TEXT_MAX 128u /* bytes of one entry's values text */

/* A choice is stored through a uint32_t: the enum's size must match. */
_Static_assert(sizeof(enum shard_durability) == sizeof(uint32_t), "durability field width");

#define OPTIONS_FIELD(f) offsetof(struct cs_options, f), sizeof(((struct cs_options *)0)->f)

static const struct options_choice durability_choices[] = {
    {"sync", SHARD_SYNC}, {"async", SHARD_ASYNC}, {"none", SHARD_NONE}, {NULL, 0}};
static const struct options_choice bool_choices[] = {
    {"true", 1}, {"false", 0}, {"1", 1}, {"0", 0}, {NULL, 0}};

/* The spellings of an OPTIONS_CHOICE or OPTIONS_BOOL entry. */
static const struct options_choice *entry_choices(const struct options_entry *e)
{
    return e->type == OPTIONS_BOOL ? bool_choices : e->choices;
}

/* The options, in the order --help and the README list them. */
const struct options_entry options_table[] = {
    {"shards", OPTIONS_COUNT, OPTIONS_FIELD(shards), 1, CS_SHARDS_MAX, NULL, "CPUs in `cpuset`",
     NULL, "shard threads; fixed when the database is created"},
    {"cpuset", OPTIONS_CPUSET, OPTIONS_FIELD(cpuset), 0, 0, NULL, "the process's CPUs", NULL,
     "CPUs to pin shards to; must hold at least `shards` CPUs"},
    {"durability", OPTIONS_CHOICE, OPTIONS_FIELD(durability), 0, 0, "sync", NULL,
     durability_choices,
     "when a write returns: once durable (`sync`), once applied with a background `fdatasync` "
     "(`async`) or with no log at all (`none`); see Durability"},
    {"sync_interval_ms", OPTIONS_COUNT, OPTIONS_FIELD(sync_interval_ms), 1, INTERVAL_MS_MAX, "10",
     NULL, NULL, "`async`: period of the background `fdatasync`"},
    {"group_commit_delay_us", OPTIONS_COUNT, OPTIONS_FIELD(group_commit_delay_us), 0, DELAY_US_MAX,
     "0", NULL, NULL, "wait up to this long for more writes before writing a frame"},
    {"wait_yield_us", OPTIONS_COUNT, OPTIONS_FIELD(wait_yield_us), 0, DELAY_US_MAX, "1000", NULL,
     NULL,
     "`sync`: a blocking durable write (one caller at a time) and a shard after each WAL write "
     "wait this long with `sched_yield` before sleeping; 0: sleep at once"},
    {"wal_segment_bytes", OPTIONS_SIZE, OPTIONS_FIELD(wal_segment_bytes), WAL_SEGMENT_BYTES_MIN,
     WAL_SEGMENT_BYTES_MAX, "64M", NULL, NULL, "size of a preallocated WAL segment file"},
    {"wal_compress_bytes", OPTIONS_SIZE, OPTIONS_FIELD(wal_compress_bytes), 0, WAL_FRAME_RAW_MAX,
     "4096", NULL, NULL, "LZ4-compress frame bodies at least this big; 0: never"},
    {"checkpoint_wal_bytes", OPTIONS_SIZE, OPTIONS_FIELD(checkpoint_wal_bytes), 0, UINT64_MAX,
     "256M", NULL, NULL, "WAL bytes after which a shard starts a checkpoint by itself; 0: never"},
    {"batch_max", OPTIONS_COUNT, OPTIONS_FIELD(batch_max), 1, BATCH_MAX_MAX, "256", NULL, NULL,
     "requests a shard takes per loop iteration"},
    {"memory_limit", OPTIONS_SIZE, OPTIONS_FIELD(memory_limit), 0, UINT64_MAX, "0", NULL, NULL,
     "tree bytes for the whole database (split over shards); writes past it get `CS_EFULL`; "
     "0: no limit"},
    {"salvage", OPTIONS_BOOL, OPTIONS_FIELD(salvage), 0, 0, "false", NULL, NULL,
     "recovery cuts at the first damage instead of failing with `CS_ECORRUPT`, and reports "
     "what it dropped; see Recovery and `cstore salvage`"},
    {"fault", OPTIONS_FAULT, OPTIONS_FIELD(fault), 0, 0, NULL, "`$CSTORE_FAULT`, else off", NULL,
     "failures to inject, for testing; see Fault injection"},
};

const unsigned options_count = CS_ARRAY_SIZE(options_table);

const struct options_entry *options_find(const char *name)
{
    for (unsigned i = 0; i < options_count; i++)
        if (strcmp(options_table[i].name, name) == 0)
            return &options_table[i];
    return NULL;
}

/* Parse an unsigned integer with an optional K/M/G suffix into [min, max]. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, bool sizes, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return CS_EOPTVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return CS_EOPTVAL;
    unsigned shift = 0;
    if (sizes && *end) {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return CS_EOPTVAL;
        }
        end++;
        if (*end == 'B' || *end == 'b' || *end == 'i')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
    }
    if (*end)
        return CS_EOPTVAL;
    if (shift && v > (ULLONG_MAX >> shift))
        return CS_EOPTVAL;
    v <<= shift;
    if (v < min || v > max)
        return CS_EOPTVAL;
    *out = v;
    return 0;
}

int options_parse_cpuset(const char *s, cpu_set_t *set)
{
    CPU_ZERO(set);
    if (!s || !*s)
        return CS_EOPTVAL;
    const char *p = s;
    for (int items = 0; items < CPU_SETSIZE; items++) {
        char *end;
        if (*p < '0' || *p > '9')
            return CS_EOPTVAL;
        unsigned long a = strtoul(p, &end, 10), b = a;
        p = end;
        if (*p == '-') {
            p++;
            if (*p < '0' || *p > '9')
                return CS_EOPTVAL;
            b = strtoul(p, &end, 10);
            p = end;
        }
        if (a > b || b >= CPU_SETSIZE)
            return CS_EOPTVAL;
        for (unsigned long c = a; c <= b; c++)
            CPU_SET(c, set);
        if (*p == '\0')
            return 0;
        if (*p != ',')
            return CS_EOPTVAL;
        p++;
    }
    return CS_EOPTVAL;
}

/* Store v into e's integer field of o (1, 4 or 8 bytes; the table keeps max within them). */
static void options_store(struct cs_options *o, const struct options_entry *e, uint64_t v)
{
    char *field = (char *)o + e->field_offset;
    if (e->field_bytes == sizeof(uint64_t)) {
        memcpy(field, &v, sizeof(v));
    } else if (e->field_bytes == sizeof(uint32_t)) {
        cs_assert(v <= UINT32_MAX);
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, sizeof(x));
    } else {
        cs_assert(e->field_bytes == sizeof(bool));
        cs_assert(v <= 1);
        bool b = v != 0;
        memcpy(field, &b, sizeof(b));
    }
}

/* Parse value as e's type and set it; CS_EOPTVAL (o unchanged) when it is refused. */
static int options_set_entry(struct cs_options *o, const struct options_entry *e, const char *value)
{
    uint64_t x = 0;
    int rc;
    switch (e->type) {
    case OPTIONS_COUNT:
    case OPTIONS_SIZE:
        rc = parse_u64(value, e->min, e->max, e->type == OPTIONS_SIZE, &x);
        if (rc == 0)
            options_store(o, e, x);
        return rc;
    case OPTIONS_CHOICE:
    case OPTIONS_BOOL: {
        const struct options_choice *c = entry_choices(e);
        for (unsigned i = 0; i < OPTIONS_CHOICES_MAX && c[i].name; i++) {
            if (strcmp(value, c[i].name) == 0) {
                options_store(o, e, c[i].value);
                return 0;
            }
        }
        return CS_EOPTVAL;
    }
    case OPTIONS_CPUSET: {
        cpu_set_t set;
        cs_assert(e->field_bytes == sizeof(set));
        rc = options_parse_cpuset(value, &set);
        if (rc == 0) {
            memcpy((char *)o + e->field_offset, &set, sizeof(set));
            o->cpuset_given = true;
        }
        return rc;
    }
    case OPTIONS_FAULT: {
        size_t len = strlen(value);
        if (len >= e->field_bytes)
            return CS_EOPTVAL;
        struct io_fault *f = NULL;
        rc = value[0] ? io_fault_create(value, &f) : 0;
        io_fault_destroy(f);
        if (rc == 0)
            memcpy((char *)o + e->field_offset, value, len + 1);
        return rc;
    }
    }
    cs_assert(!"unknown option type");
    return CS_EOPTVAL;
}

void options_defaults(struct cs_options *o)
{
    memset(o, 0, sizeof(*o));
    for (unsigned i = 0; i < options_count; i++) {
        const struct options_entry *e = &options_table[i];
        if (e->value_default == NULL)
            continue;
        int rc = options_set_entry(o, e, e->value_default);
        cs_assert(rc == 0); /* tests/unit/test_options.c checks every default */
    }
}

cs_options *cs_options_new(void)
{
    cs_options *o = malloc(sizeof(*o));
    if (o)
        options_defaults(o);
    return o;
}

void cs_options_free(cs_options *o)
{
    free(o);
}

int cs_options_set(cs_options *o, const char *name, const char *value)
{
    if (!o || !name || !value)
        return CS_EINVAL;
    const struct options_entry *e = options_find(name);
    if (e == NULL)
        return CS_EOPTION;
    return options_set_entry(o, e, value);
}

struct ini_state {
    cs_options *o; /* target */
    int rc;        /* first error */
};

static int ini_line(void *user, const char *section, const char *name, const char *value)
{
    struct ini_state *st = user;
    if (section[0] && strcmp(section, "cstore") != 0) {
        st->rc = CS_EOPTION;
        return 0;
    }
    st->rc = cs_options_set(st->o, name, value);
    return st->rc == 0;
}

int cs_options_load(cs_options *o, const char *path, int *bad_line)
{
    if (!o || !path)
        return CS_EINVAL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -errno;
    if (S_ISDIR(sb.st_mode))
        return -EISDIR;
    struct ini_state st = {.o = o, .rc = 0};
    int line = ini_parse(path, ini_line, &st);
    if (bad_line)
        *bad_line = line > 0 ? line : 0;
    if (line == -1)
        return errno ? -errno : -ENOENT;
    if (line == -2)
        return -ENOMEM;
    if (line > 0)
        return st.rc ? st.rc : CS_EOPTVAL;
    return 0;
}

/* ---- Documentation: --help and the README's table ---- */

/* v as the shortest exact size: "64M", "4096", "1G". */
static void format_size(uint64_t v, char *buf, size_t size)
{
    static const char suffix[] = "GMK";
    for (unsigned i = 0; i < 3; i++) {
        unsigned shift = 30 - 10 * i;
        if (v != 0 && v % (1ull << shift) == 0) {
            snprintf(buf, size, "%" PRIu64 "%c", v >> shift, suffix[i]);
            return;
        }
    }
    snprintf(buf, size, "%" PRIu64, v);
}

void options_describe_values(const struct options_entry *e, char *buf, size_t size)
{
    cs_assert(size > 0);
    char lo[32], hi[32];
    size_t len = 0;
    buf[0] = '\0';
    switch (e->type) {
    case OPTIONS_COUNT:
        snprintf(buf, size, "`%" PRIu64 "`..`%" PRIu64 "`", e->min, e->max);
        return;
    case OPTIONS_SIZE:
        if (e->max == UINT64_MAX) {
            format_size(e->min, lo, sizeof(lo));
            snprintf(buf, size, "`%s` or more", lo);
            return;
        }
        format_size(e->min, lo, sizeof(lo));
        format_size(e->max, hi, sizeof(hi));
        snprintf(buf, size, "`%s`..`%s`", lo, hi);
        return;
    case OPTIONS_CHOICE:
    case OPTIONS_BOOL: {
        const struct options_choice *c = entry_choices(e);
        for (unsigned i = 0; i < OPTIONS_CHOICES_MAX && c[i].name; i++)
            len += (size_t)snprintf(buf + len, size - cs_min_size(len, size), "%s`%s`",
                                    i ? ", " : "", c[i].name);
        return;
    }
    case OPTIONS_CPUSET:
        snprintf(buf, size, "a CPU list such as `0-3,6`");
        return;
    case OPTIONS_FAULT:
        snprintf(buf, size, "a fault plan");
        return;
    }
    cs_assert(!"unknown option type");
}

void options_write_markdown(FILE *f)
{
    fputs("| name | default | values | meaning |\n| --- | --- | --- | --- |\n", f);
    for (unsigned i = 0; i < options_count; i++) {
        const struct options_entry *e = &options_table[i];
        char values[VALUES_TEXT_MAX];
        options_describe_values(e, values, sizeof(values));
        fprintf(f, "| `%s` | ", e->name);
        if (e->value_default != NULL)
            fprintf(f, "`%s`", e->value_default);
        else
            fputs(e->shown_default, f);
        fprintf(f, " | %s | %s |\n", values, e->help);
    }
}

/* The placeholder of an entry's value in --help. */
static const char *help_metavar(const struct options_entry *e)
{
    switch (e->type) {
    case OPTIONS_COUNT:
        return "N";
    case OPTIONS_SIZE:
        return "BYTES";
    case OPTIONS_CHOICE:
        return "MODE";
    case OPTIONS_BOOL:
        return "BOOL";
    case OPTIONS_CPUSET:
        return "LIST";
    case OPTIONS_FAULT:
        return "PLAN";
    }
    return "VALUE";
}

/* Write text wrapped to HELP_COLUMNS, starting at column *col, continuation lines indented to
 * HELP_INDENT; backticks are left out. Words longer than a line are written whole. */
static void help_wrap(FILE *f, const char *text, unsigned *col)
{
    const char *p = text;
    while (*p != '\0') {
        size_t word = strcspn(p, " ");
        unsigned shown = 0;
        for (size_t i = 0; i < word; i++)
            shown += p[i] != '`';
        if (*col > HELP_INDENT && *col + 1 + shown > HELP_COLUMNS) {
            fprintf(f, "\n%*s", (int)HELP_INDENT, "");
            *col = HELP_INDENT;
        } else if (*col > HELP_INDENT) {
            fputc(' ', f);
            (*col)++;
        }
        for (size_t i = 0; i < word; i++)
            if (p[i] != '`')
                fputc(p[i], f);
        *col += shown;
        p += word;
        p += strspn(p, " ");
    }
}

void options_write_help(FILE *f)
{
    for (unsigned i = 0; i < options_count; i++) {
        const struct options_entry *e = &options_table[i];
        int left = fprintf(f, "  --%s %s", e->name, help_metavar(e));
        unsigned col = left > 0 ? (unsigned)left : 0;
        if (col + 2 > HELP_INDENT) { /* at least two spaces before the text */
            fputc('\n', f);
            col = 0;
        }
        fprintf(f, "%*s", (int)(HELP_INDENT - col), "");
        col = HELP_INDENT;
        char values[VALUES_TEXT_MAX], extra[2 * VALUES_TEXT_MAX];
        options_describe_values(e, values, sizeof(values));
        const char *shown = e->value_default ? e->value_default : e->shown_default;
        if (e->type == OPTIONS_FAULT) /* the help says where its values are described */
            snprintf(extra, sizeof(extra), "(default %s)", shown);
        else
            snprintf(extra, sizeof(extra), "(default %s; %s)", shown, values);
        help_wrap(f, e->help, &col);
        help_wrap(f, extra, &col);
        fputc('\n', f);
    }
}
