/* Database options: one table of names (options.c) behind cs_options_set(), the INI config
 * file, the CLI's flags, `cstore --help` and the README's options table. */
#ifndef CS_OPTIONS_H
#define CS_OPTIONS_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cstore.h"
#include "shards/shard.h"

struct cs_options {
    unsigned shards;                  /* 0 = one per CPU of the cpuset */
    cpu_set_t cpuset;                 /* CPUs to pin to */
    bool cpuset_given;                /* cpuset was set (else: the process affinity) */
    enum shard_durability durability; /* sync, async, none */
    uint32_t sync_interval_ms;        /* async fdatasync period */
    uint32_t group_commit_delay_us;   /* frame sealing delay */
    uint32_t wait_yield_us;           /* a durable writer yields this long before it sleeps */
    uint64_t wal_segment_bytes;       /* WAL segment size */
    uint32_t wal_compress_bytes;      /* LZ4 threshold, 0 = off */
    uint32_t batch_max;               /* requests per loop iteration */
    uint64_t memory_limit;            /* tree bytes per database, 0 = unlimited */
    uint64_t checkpoint_wal_bytes;    /* WAL bytes that trigger a shard checkpoint, 0 = never */
    char fault[256];                  /* fault-injection spec ("" = off; see io/fault.h) */
    bool salvage;                     /* recovery cuts at the first damage instead of failing */
};

/* How an option's value is written and checked. */
enum options_type {
    OPTIONS_COUNT,  /* a decimal number in [min, max] */
    OPTIONS_SIZE,   /* a number of bytes in [min, max], with an optional K, M or G suffix */
    OPTIONS_CHOICE, /* one of the names of choices, stored as its value */
    OPTIONS_BOOL,   /* true, false, 1 or 0 */
    OPTIONS_CPUSET, /* a CPU list such as "0-3,6"; also sets cpuset_given */
    OPTIONS_FAULT,  /* a fault plan that io_fault_create() accepts, or "" (off) */
};

/* One accepted spelling of an OPTIONS_CHOICE value. */
struct options_choice {
    const char *name; /* as written */
    unsigned value;   /* stored into the field */
};

#define OPTIONS_CHOICES_MAX 4u /* spellings of one OPTIONS_CHOICE option */

/* One row of the options table. */
struct options_entry {
    const char *name;          /* the option's name, as cs_options_set() takes it */
    enum options_type type;    /* syntax and check of its value */
    size_t field_offset;       /* of its field in struct cs_options */
    size_t field_bytes;        /* size of that field */
    uint64_t min;              /* OPTIONS_COUNT, OPTIONS_SIZE: smallest value accepted */
    uint64_t max;              /* OPTIONS_COUNT, OPTIONS_SIZE: largest value accepted */
    const char *value_default; /* set by options_defaults(); NULL: the field starts zeroed */
    const char *shown_default; /* the default as documented when value_default is NULL */
    const struct options_choice *choices; /* OPTIONS_CHOICE: its spellings, NULL-terminated */
    const char *help; /* one line (markdown: `code` spans) for --help and README */
};

/* The table, in documentation order, and its length. */
extern const struct options_entry options_table[];
extern const unsigned options_count;

/* The entry named name, or NULL. O(entries). */
const struct options_entry *options_find(const char *name);

/* Every field of o to the table's defaults (fields without one are zeroed). */
void options_defaults(struct cs_options *o);

/* Parse "0-3,6" into set. CS_EOPTVAL on syntax errors or CPUs >= CPU_SETSIZE. */
CS_MUST_CHECK int options_parse_cpuset(const char *s, cpu_set_t *set);

/* The values an entry accepts, as markdown ("`1`..`256`", "`sync`, `async`, `none`") into
 * buf; truncated to size bytes (NUL included). */
void options_describe_values(const struct options_entry *e, char *buf, size_t size);

/* The README's options table: a markdown table (name, default, values, meaning) with one row
 * per entry, in table order. Write errors are left in f's error flag. */
void options_write_markdown(FILE *f);

/* The option list of `cstore --help`: "  --NAME VALUE  help" per entry, wrapped to 80 columns,
 * with the markdown backticks left out. Write errors are left in f's error flag. */
void options_write_help(FILE *f);

#endif
