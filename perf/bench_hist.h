/* Latency histogram of cstore-bench: log-linear buckets (HdrHistogram style).
 *
 * Values (nanoseconds) below 2^BENCH_HIST_SUB_BITS get a bucket each; above, every power of two
 * is split into 2^BENCH_HIST_SUB_BITS equal buckets, so a reported percentile is within 1/64
 * (1.6%) of the true value, over the whole uint64_t range, in a fixed 30 KiB of counters.
 * Recording is O(1) with no allocation; a histogram belongs to one thread, and histograms are
 * merged after the threads have stopped. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 6u
#define BENCH_HIST_SUB_COUNT (1u << BENCH_HIST_SUB_BITS)
/* Highest bucket index + 1: the top octave (bit 63) has shift 63 - SUB_BITS. */
#define BENCH_HIST_BUCKETS                                                                         \
    ((64u - BENCH_HIST_SUB_BITS) * BENCH_HIST_SUB_COUNT + BENCH_HIST_SUB_COUNT)

struct bench_hist {
    uint64_t count;                       /* values recorded */
    uint64_t sum_ns;                      /* their sum (for the mean) */
    uint64_t min_ns;                      /* smallest value; UINT64_MAX when empty */
    uint64_t max_ns;                      /* largest value, exact */
    uint64_t buckets[BENCH_HIST_BUCKETS]; /* values per bucket */
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_record(struct bench_hist *h, uint64_t ns);
/* Add every value of src to dst. */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* The value at quantile q (0 < q <= 1): the upper bound of the bucket holding the
 * ceil(q * count)-th smallest value, capped at max_ns. 0 when empty. */
uint64_t bench_hist_quantile_ns(const struct bench_hist *h, double q);

#endif
