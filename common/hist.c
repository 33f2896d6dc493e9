/* Log-linear histograms: the reading side (bucket bounds, snapshots, quantiles, cumulative counts);
 * recording is inline in hist.h, where the bucket layout and the concurrency rules are described.
 *
 * Why not a library: Debian packages HdrHistogram for Java and Go only, not the C implementation
 * (HdrHistogram_c), and that one allocates its counts array at init, sized at run time, and
 * records with a plain or an atomic increment per call chosen by a separate type. What is needed
 * here is a fixed-size struct that can live inside a shard or a database handle, one layout that
 * both the shard thread (single writer, no read-modify-write) and application threads (relaxed
 * atomic adds) record into, and upper-inclusive buckets that match Prometheus's `le` exactly at
 * powers of two: about a hundred lines.
 *
 * Bucket bounds. With x = v - 1 (v >= 1; v = 0 shares bucket 0 with v = 1), bucket i < 32 holds
 * x = i; above, with shift = i / 16 - 1 and sub = i % 16 + 16, it holds x in
 * [sub << shift, ((sub + 1) << shift) - 1], so v in ((sub << shift), (sub + 1) << shift]. */
#include "hist.h"

#include "util.h"

uint64_t hist_bucket_max(unsigned i)
{
    cs_assert(i < HIST_BUCKETS);
    if (i == HIST_OVERFLOW)
        return UINT64_MAX;
    if (i < 2u * HIST_SUB_COUNT)
        return (uint64_t)i + 1u;
    unsigned shift = i / HIST_SUB_COUNT - 1u;
    uint64_t sub = i % HIST_SUB_COUNT + HIST_SUB_COUNT;
    return (sub + 1u) << shift;
}

bool hist_bound_exact(uint64_t bound)
{
    if (bound == 0 || bound > HIST_VALUE_MAX)
        return false;
    return hist_bucket_max(hist_index(bound)) == bound;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += __atomic_load_n(&src->buckets[i], __ATOMIC_RELAXED);
    dst->sum += __atomic_load_n(&src->sum, __ATOMIC_RELAXED);
}

uint64_t hist_count(const struct hist *h)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        n += h->buckets[i];
    return n;
}

uint64_t hist_overflow(const struct hist *h)
{
    return h->buckets[HIST_OVERFLOW];
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    cs_assert(q > 0.0);
    cs_assert(q <= 1.0);
    uint64_t count = hist_count(h);
    if (count == 0)
        return 0;
    double want = q * (double)count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++; /* ceil */
    if (rank == 0)
        rank = 1;
    if (rank > count)
        rank = count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank)
            return i == HIST_OVERFLOW ? HIST_VALUE_MAX : hist_bucket_max(i);
    }
    cs_assert(false); /* seen reaches count */
    return 0;
}

void hist_cumulative(const struct hist *h, const uint64_t *bounds, size_t n, uint64_t *cum)
{
    unsigned i = 0;
    uint64_t seen = 0;
    for (size_t j = 0; j < n; j++) {
        cs_assert(j == 0 || bounds[j] > bounds[j - 1]);
        while (i < HIST_BUCKETS && hist_bucket_max(i) <= bounds[j])
            seen += h->buckets[i++];
        cum[j] = seen;
    }
}
