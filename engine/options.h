/* Database options: one set of names for cs_options_set(), the INI config file and CLI flags. */
#ifndef CS_OPTIONS_H
#define CS_OPTIONS_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

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

void options_defaults(struct cs_options *o);
/* Parse "0-3,6" into set. CS_EOPTVAL on syntax errors or CPUs >= CPU_SETSIZE. */
CS_MUST_CHECK int options_parse_cpuset(const char *s, cpu_set_t *set);

#endif
