/* Log-linear histograms of integer values (nanoseconds, bytes), HdrHistogram style: fixed memory,
 * no allocation and no lock to record, a bounded relative error, readable from any thread.
 *
 * BUCKETS. Bucket i holds the values in (hist_bucket_max(i - 1), hist_bucket_max(i)]: upper
 * bounds are inclusive, as Prometheus's `le` is. Bucket 0 holds 0 and 1; below 32 every value
 * has its own bucket; above, every power of two [2^k + 1, 2^(k+1)] is split into HIST_SUB_COUNT
 * equal buckets. So any bucket's width is at most 1/HIST_SUB_COUNT of its lower bound, and
 * hist_quantile (a bucket's upper bound) is at most 6.25% above the true value, never below it.
 * Values up to HIST_VALUE_MAX (2^42: 73 minutes in nanoseconds) are bucketed so; larger ones
 * are clamped: they go to the overflow bucket HIST_OVERFLOW (counted, and reported by
 * hist_overflow) and add HIST_VALUE_MAX to the sum. Every power of two up to HIST_VALUE_MAX is a
 * bucket's upper bound, so cumulative counts at powers of two are exact (hist_bound_exact).
 *
 * CONCURRENCY. The counters are plain uint64_t accessed with relaxed atomics:
 *   hist_record_sw  one writing thread per histogram (a shard thread): a relaxed load and store,
 *                   no read-modify-write;
 *   hist_record_mw  any number of writing threads: relaxed atomic adds.
 * A histogram is written with one of the two only, never both. Readers (hist_merge) may run on
 * any thread at any time and read relaxed atomics: a snapshot taken while values are recorded
 * may hold a value's bucket and not yet its sum, or the other way round, and buckets from
 * different moments. There is no separate count: hist_count sums the buckets of the snapshot,
 * so a snapshot's count always equals the sum of its buckets. A histogram is 5 KB. */
#ifndef CS_HIST_H
#define CS_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 4u
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS) /* buckets per power of two */
#define HIST_VALUE_BITS 42u
#define HIST_VALUE_MAX (1ull << HIST_VALUE_BITS) /* largest value bucketed without clamping */
/* The overflow bucket: one past the bucket of HIST_VALUE_MAX (38 powers of two of 16 buckets
 * above the 16 first values). */
#define HIST_OVERFLOW ((HIST_VALUE_BITS - HIST_SUB_BITS) * HIST_SUB_COUNT + HIST_SUB_COUNT)
#define HIST_BUCKETS (HIST_OVERFLOW + 1u) /* with the overflow bucket */

struct hist {
    uint64_t sum;                   /* sum of the values recorded (clamped ones as VALUE_MAX) */
    uint64_t buckets[HIST_BUCKETS]; /* values per bucket; [HIST_OVERFLOW]: clamped ones */
};

/* The bucket of value v (HIST_OVERFLOW above HIST_VALUE_MAX). */
static inline unsigned hist_index(uint64_t v)
{
    if (v > HIST_VALUE_MAX)
        return HIST_OVERFLOW;
    uint64_t x = v ? v - 1 : 0; /* bucket i holds x in [lo, hi]: v in (lo, hi + 1] */
    if (x < 2u * HIST_SUB_COUNT)
        return (unsigned)x;
    unsigned msb = 63u - (unsigned)__builtin_clzll(x);
    unsigned shift = msb - HIST_SUB_BITS;
    return shift * HIST_SUB_COUNT + (unsigned)(x >> shift);
}

/* One writing thread only (see CONCURRENCY). */
static inline void hist_record_sw(struct hist *h, uint64_t v)
{
    unsigned i = hist_index(v);
    uint64_t add = v > HIST_VALUE_MAX ? HIST_VALUE_MAX : v;
    __atomic_store_n(&h->buckets[i], __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&h->sum, __atomic_load_n(&h->sum, __ATOMIC_RELAXED) + add, __ATOMIC_RELAXED);
}

/* Any number of writing threads (see CONCURRENCY). */
static inline void hist_record_mw(struct hist *h, uint64_t v)
{
    unsigned i = hist_index(v);
    uint64_t add = v > HIST_VALUE_MAX ? HIST_VALUE_MAX : v;
    __atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum, add, __ATOMIC_RELAXED);
}

/* Largest value bucket i holds (inclusive); UINT64_MAX for HIST_OVERFLOW. */
uint64_t hist_bucket_max(unsigned i);
/* Whether bound is some bucket's upper bound, so that hist_cumulative is exact at it. */
bool hist_bound_exact(uint64_t bound);
/* Add src's counters to dst's. src may be written meanwhile by its writers (relaxed loads: see
 * CONCURRENCY); dst belongs to the caller. A zeroed struct hist is an empty histogram. */
void hist_merge(struct hist *dst, const struct hist *src);
/* Values in a snapshot (the sum of its buckets). */
uint64_t hist_count(const struct hist *h);
/* Values a snapshot holds above HIST_VALUE_MAX. */
uint64_t hist_overflow(const struct hist *h);
/* The value at quantile q (0 < q <= 1) of a snapshot: the upper bound of the bucket holding the
 * ceil(q * count)-th smallest value; HIST_VALUE_MAX when that is the overflow bucket; 0 when
 * empty. At most 6.25% above the true value, never below it. */
uint64_t hist_quantile(const struct hist *h, double q);
/* Cumulative counts of a snapshot: cum[j] = values <= bounds[j] (bounds strictly increasing;
 * exact where hist_bound_exact(bounds[j]), else the values of the buckets whose upper bound is
 * <= bounds[j]). One pass over the buckets. */
void hist_cumulative(const struct hist *h, const uint64_t *bounds, size_t n, uint64_t *cum);

#endif
