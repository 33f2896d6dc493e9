/* Options.
 *
 * One table of names serves cs_options_set(), the INI file (read with inih: `name = value` lines,
 * with or without a `[cstore]` section; other sections are refused so typos are not silently
 * ignored) and the CLI's flags. Values are checked here for syntax and range; combinations that
 * depend on the machine or the data folder (cpuset against shards and existing CPUs, the shard
 * count recorded at creation) are checked by cs_open().
 *
 * Sizes accept a K, M or G suffix (powers of 1024). */
#include "options.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fault.h"
#include "shards/wal.h"

#define WAL_SEGMENT_BYTES_MIN (1ull << 20)
#define WAL_SEGMENT_BYTES_MAX (1ull << 30)
#define BATCH_MAX_MAX 65536u
#define INTERVAL_MS_MAX 3600000u
#define DELAY_US_MAX 1000000u

void options_defaults(struct cs_options *o)
{
    memset(o, 0, sizeof(*o));
    o->durability = SHARD_SYNC;
    o->sync_interval_ms = 10;
    o->wait_yield_us = 1000;
    o->wal_segment_bytes = 64ull << 20;
    o->wal_compress_bytes = 4096;
    o->batch_max = 256;
    o->checkpoint_wal_bytes = 256ull << 20;
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

static int set_u32(uint32_t *dst, const char *v, uint64_t min, uint64_t max, bool sizes)
{
    uint64_t x;
    int rc = parse_u64(v, min, max, sizes, &x);
    if (!rc)
        *dst = (uint32_t)x;
    return rc;
}

int cs_options_set(cs_options *o, const char *name, const char *value)
{
    if (!o || !name || !value)
        return CS_EINVAL;
    uint64_t x;
    int rc;
    if (strcmp(name, "shards") == 0) {
        rc = parse_u64(value, 1, CS_SHARDS_MAX, false, &x);
        if (!rc)
            o->shards = (unsigned)x;
        return rc;
    }
    if (strcmp(name, "cpuset") == 0) {
        cpu_set_t set;
        rc = options_parse_cpuset(value, &set);
        if (!rc) {
            o->cpuset = set;
            o->cpuset_given = true;
        }
        return rc;
    }
    if (strcmp(name, "durability") == 0) {
        if (strcmp(value, "sync") == 0)
            o->durability = SHARD_SYNC;
        else if (strcmp(value, "async") == 0)
            o->durability = SHARD_ASYNC;
        else if (strcmp(value, "none") == 0)
            o->durability = SHARD_NONE;
        else
            return CS_EOPTVAL;
        return 0;
    }
    if (strcmp(name, "sync_interval_ms") == 0)
        return set_u32(&o->sync_interval_ms, value, 1, INTERVAL_MS_MAX, false);
    if (strcmp(name, "group_commit_delay_us") == 0)
        return set_u32(&o->group_commit_delay_us, value, 0, DELAY_US_MAX, false);
    if (strcmp(name, "wait_yield_us") == 0)
        return set_u32(&o->wait_yield_us, value, 0, DELAY_US_MAX, false);
    if (strcmp(name, "wal_segment_bytes") == 0) {
        rc = parse_u64(value, WAL_SEGMENT_BYTES_MIN, WAL_SEGMENT_BYTES_MAX, true, &x);
        if (!rc)
            o->wal_segment_bytes = x;
        return rc;
    }
    if (strcmp(name, "wal_compress_bytes") == 0)
        return set_u32(&o->wal_compress_bytes, value, 0, WAL_FRAME_RAW_MAX, true);
    if (strcmp(name, "batch_max") == 0)
        return set_u32(&o->batch_max, value, 1, BATCH_MAX_MAX, false);
    if (strcmp(name, "checkpoint_wal_bytes") == 0) {
        rc = parse_u64(value, 0, UINT64_MAX, true, &x);
        if (!rc)
            o->checkpoint_wal_bytes = x;
        return rc;
    }
    if (strcmp(name, "memory_limit") == 0) {
        rc = parse_u64(value, 0, UINT64_MAX, true, &x);
        if (!rc)
            o->memory_limit = x;
        return rc;
    }
    if (strcmp(name, "salvage") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
            o->salvage = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
            o->salvage = false;
        else
            return CS_EOPTVAL;
        return 0;
    }
    if (strcmp(name, "fault") == 0) {
        if (strlen(value) >= sizeof(o->fault))
            return CS_EOPTVAL;
        struct io_fault *f = NULL;
        rc = value[0] ? io_fault_create(value, &f) : 0;
        io_fault_destroy(f);
        if (!rc)
            snprintf(o->fault, sizeof(o->fault), "%s", value);
        return rc;
    }
    return CS_EOPTION;
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
