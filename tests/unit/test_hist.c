/* Unit tests of the log-linear histogram (common/hist.c): every bucket's bounds meet the next
 * bucket's with no gap, widths stay within 1/16 of the lower bound, powers of two are exact
 * bounds; quantiles lie within the stated relative error of the true order statistics; values
 * above the range are clamped into the overflow bucket and counted there; merging equals
 * recording everything into one; cumulative counts at chosen bounds are exact and monotone; and
 * several threads recording at once (hist_record_mw) lose nothing while a reader snapshots. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"

static struct hist *hist_new(void)
{
    struct hist *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    return h;
}

/* xorshift64*: deterministic values for the tests */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void test_buckets_are_contiguous_upper_inclusive_and_narrow(void **state)
{
    (void)state;
    assert_int_equal(hist_index(0), 0);
    assert_int_equal(hist_index(1), 0);
    assert_int_equal(hist_index(2), 1);
    assert_int_equal(hist_bucket_max(0), 1);
    uint64_t prev_max = 1;
    for (unsigned i = 1; i < HIST_OVERFLOW; i++) {
        uint64_t lo = prev_max + 1, hi = hist_bucket_max(i);
        assert_true(hi >= lo);
        assert_int_equal(hist_index(lo), i);
        assert_int_equal(hist_index(hi), i);
        assert_int_equal(hist_index(lo - 1), i - 1);
        if (lo > 2u * HIST_SUB_COUNT) /* the log part: width <= lo / 16 */
            assert_true((hi - lo + 1) * HIST_SUB_COUNT <= lo - 1);
        prev_max = hi;
    }
    assert_int_equal(prev_max, HIST_VALUE_MAX);
    assert_int_equal(hist_index(HIST_VALUE_MAX + 1), HIST_OVERFLOW);
    assert_int_equal(hist_index(UINT64_MAX), HIST_OVERFLOW);
    assert_int_equal(hist_bucket_max(HIST_OVERFLOW), UINT64_MAX);
    for (unsigned k = 0; k <= HIST_VALUE_BITS; k++)
        assert_true(hist_bound_exact(1ull << k));
    assert_false(hist_bound_exact(0));
    assert_false(hist_bound_exact(1000)); /* inside the bucket (992, 1024] */
    assert_false(hist_bound_exact(HIST_VALUE_MAX * 2));
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The reported quantile r of sorted v[n] at q: the true value t = v[ceil(q n) - 1] satisfies
 * t <= r <= t * (1 + 1/16). */
static void check_quantiles(const struct hist *h, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), u64_cmp);
    const double qs[] = {0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t j = 0; j < sizeof(qs) / sizeof(qs[0]); j++) {
        size_t rank = (size_t)(qs[j] * (double)n);
        if ((double)rank < qs[j] * (double)n)
            rank++;
        uint64_t t = v[rank ? rank - 1 : 0];
        uint64_t r = hist_quantile(h, qs[j]);
        if (r < t || (double)r > (double)t * (1.0 + 1.0 / HIST_SUB_COUNT))
            fail_msg("q %.3f: reported %llu, true %llu", qs[j], (unsigned long long)r,
                     (unsigned long long)t);
    }
}

static void test_quantiles_are_within_the_relative_error(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    struct hist *h = hist_new();
    assert_int_equal(hist_quantile(h, 0.5), 0); /* empty */
    for (size_t i = 0; i < N; i++) {            /* uniform 1..N */
        v[i] = i + 1;
        hist_record_sw(h, v[i]);
    }
    assert_int_equal(hist_count(h), N);
    assert_int_equal(h->sum, (uint64_t)N * (N + 1) / 2);
    check_quantiles(h, v, N);
    memset(h, 0, sizeof(*h));
    uint64_t s = 42;
    for (size_t i = 0; i < N; i++) { /* log-uniform over 1 ns .. 17 s */
        uint64_t x = rnd(&s);
        v[i] = (x >> (30 + x % 30)) + 1;
        hist_record_sw(h, v[i]);
    }
    check_quantiles(h, v, N);
    free(v);
    free(h);
}

static void test_values_above_the_range_are_clamped_and_counted(void **state)
{
    (void)state;
    struct hist *h = hist_new();
    hist_record_sw(h, HIST_VALUE_MAX); /* the largest value that is not clamped */
    assert_int_equal(hist_overflow(h), 0);
    hist_record_sw(h, HIST_VALUE_MAX + 1);
    hist_record_mw(h, UINT64_MAX);
    assert_int_equal(hist_overflow(h), 2);
    assert_int_equal(hist_count(h), 3);
    assert_int_equal(h->sum, 3 * HIST_VALUE_MAX);
    assert_int_equal(hist_quantile(h, 1.0), HIST_VALUE_MAX);
    uint64_t bound = HIST_VALUE_MAX, cum;
    hist_cumulative(h, &bound, 1, &cum);
    assert_int_equal(cum, 1); /* the clamped ones only count under +Inf */
    free(h);
}

static void test_merge_equals_recording_into_one(void **state)
{
    (void)state;
    struct hist *a = hist_new(), *b = hist_new(), *all = hist_new(), *m = hist_new();
    uint64_t s = 7;
    for (int i = 0; i < 50000; i++) {
        uint64_t x = rnd(&s) >> (rnd(&s) % 64);
        hist_record_sw(i % 3 ? a : b, x);
        hist_record_sw(all, x);
    }
    hist_merge(m, a);
    hist_merge(m, b);
    assert_memory_equal(m, all, sizeof(*m));
    assert_int_equal(hist_count(m), 50000);
    free(a);
    free(b);
    free(all);
    free(m);
}

static void test_cumulative_counts_are_exact_and_monotone(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    struct hist *h = hist_new();
    uint64_t s = 99;
    for (size_t i = 0; i < N; i++) {
        uint64_t x = rnd(&s);
        v[i] = x >> (22 + x % 42); /* below 2^42 */
        hist_record_sw(h, v[i]);
    }
    hist_record_sw(h, UINT64_MAX); /* one clamped */
    uint64_t bounds[HIST_VALUE_BITS + 1], cum[HIST_VALUE_BITS + 1];
    for (unsigned k = 0; k <= HIST_VALUE_BITS; k++)
        bounds[k] = 1ull << k;
    hist_cumulative(h, bounds, HIST_VALUE_BITS + 1, cum);
    for (unsigned k = 0; k <= HIST_VALUE_BITS; k++) {
        uint64_t truth = 0;
        for (size_t i = 0; i < N; i++)
            truth += v[i] <= bounds[k];
        assert_int_equal(cum[k], truth);
        if (k)
            assert_true(cum[k] >= cum[k - 1]);
    }
    assert_int_equal(cum[HIST_VALUE_BITS], N);
    assert_int_equal(hist_count(h), N + 1);
    free(v);
    free(h);
}

enum { WRITERS = 4, PER_WRITER = 200000 };

struct rec_arg {
    struct hist *h;  /* shared histogram */
    unsigned seed;   /* per writer */
    uint64_t sum;    /* what this writer added */
    bool mw;         /* hist_record_mw (else the single-writer call) */
    int *stop;       /* the reader's: writers are done (atomic) */
    uint64_t checks; /* reader: snapshots taken */
};

static void *writer(void *p)
{
    struct rec_arg *a = p;
    uint64_t s = a->seed;
    for (int i = 0; i < PER_WRITER; i++) {
        uint64_t x = rnd(&s) >> (34 + i % 30);
        a->sum += x;
        if (a->mw)
            hist_record_mw(a->h, x);
        else
            hist_record_sw(a->h, x);
    }
    return NULL;
}

/* Snapshots taken while writers run: each snapshot's count is the sum of its buckets, and never
 * falls behind the one before (counters only grow). */
static void *reader(void *p)
{
    struct rec_arg *a = p;
    struct hist *snap = malloc(sizeof(*snap));
    assert_non_null(snap);
    uint64_t last = 0;
    while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
        memset(snap, 0, sizeof(*snap));
        hist_merge(snap, a->h);
        uint64_t n = hist_count(snap);
        assert_true(n >= last);
        last = n;
        a->checks++;
    }
    free(snap);
    return NULL;
}

static void run_writers(unsigned nwriters, bool mw)
{
    struct hist *h = hist_new();
    int stop = 0;
    struct rec_arg args[WRITERS], rd = {.h = h, .stop = &stop};
    pthread_t th[WRITERS], rt;
    assert_int_equal(pthread_create(&rt, NULL, reader, &rd), 0);
    for (unsigned i = 0; i < nwriters; i++) {
        args[i] = (struct rec_arg){.h = h, .seed = 1000 + i, .mw = mw};
        assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
    }
    uint64_t sum = 0;
    for (unsigned i = 0; i < nwriters; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        sum += args[i].sum;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(rt, NULL), 0);
    assert_int_equal(hist_count(h), (uint64_t)nwriters * PER_WRITER);
    assert_int_equal(h->sum, sum);
    free(h);
}

static void test_several_writers_lose_nothing_while_a_reader_snapshots(void **state)
{
    (void)state;
    run_writers(WRITERS, true);
}

static void test_one_writer_without_atomic_adds_loses_nothing(void **state)
{
    (void)state;
    run_writers(1, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_are_contiguous_upper_inclusive_and_narrow),
        cmocka_unit_test(test_quantiles_are_within_the_relative_error),
        cmocka_unit_test(test_values_above_the_range_are_clamped_and_counted),
        cmocka_unit_test(test_merge_equals_recording_into_one),
        cmocka_unit_test(test_cumulative_counts_are_exact_and_monotone),
        cmocka_unit_test(test_several_writers_lose_nothing_while_a_reader_snapshots),
        cmocka_unit_test(test_one_writer_without_atomic_adds_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
