/* Log-linear latency histogram; the bucket layout is described in bench_hist.h.
 *
 * Bucket index of v: v itself when v < SUB_COUNT; otherwise, with m the index of the highest
 * set bit of v and shift = m - SUB_BITS, the index is shift * SUB_COUNT + (v >> shift), where
 * v >> shift lies in [SUB_COUNT, 2 * SUB_COUNT). The mapping is monotonic and contiguous:
 * values 64..127 map to 64..127, 128..255 to 128..191 by pairs, and so on. */
#include "bench_hist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define hist_assert(e) ((e) ? (void)0 : hist_panic(__LINE__, #e))

static void hist_panic(int line, const char *expr)
{
    fprintf(stderr, "cstore-bench: bench_hist.c:%d: assertion failed: %s\n", line, expr);
    abort();
}

static unsigned hist_index(uint64_t v)
{
    if (v < BENCH_HIST_SUB_COUNT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - BENCH_HIST_SUB_BITS;
    unsigned idx = shift * BENCH_HIST_SUB_COUNT + (unsigned)(v >> shift);
    hist_assert(idx < BENCH_HIST_BUCKETS);
    return idx;
}

/* Largest value that maps to bucket idx. */
static uint64_t hist_upper(unsigned idx)
{
    if (idx < 2 * BENCH_HIST_SUB_COUNT)
        return idx;
    unsigned shift = idx / BENCH_HIST_SUB_COUNT - 1;
    uint64_t sub = idx % BENCH_HIST_SUB_COUNT + BENCH_HIST_SUB_COUNT;
    return (sub << shift) + ((1ull << shift) - 1);
}

void bench_hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_ns = UINT64_MAX;
}

void bench_hist_record(struct bench_hist *h, uint64_t ns)
{
    h->buckets[hist_index(ns)]++;
    h->count++;
    h->sum_ns += ns;
    if (ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns)
        dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

uint64_t bench_hist_quantile_ns(const struct bench_hist *h, double q)
{
    hist_assert(q > 0.0);
    hist_assert(q <= 1.0);
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t up = hist_upper(i);
            return up < h->max_ns ? up : h->max_ns;
        }
    }
    return h->max_ns;
}
