/* Small utilities shared by every layer: assertions that stay on in release builds, branch
 * hints, min/max, and the allocation wrappers that route memory to a shard's own jemalloc
 * arena. Nothing here knows about trees, logs or Raft. */
#ifndef CS_UTIL_H
#define CS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define cs_likely(x) __builtin_expect(!!(x), 1)
#define cs_unlikely(x) __builtin_expect(!!(x), 0)
#ifndef CS_MUST_CHECK
#define CS_MUST_CHECK __attribute__((warn_unused_result))
#endif
#define CS_NORETURN __attribute__((noreturn))
#define CS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

CS_NORETURN void cs_panic(const char *file, int line, const char *expr);

/* Cheap invariant checks: on in every build. A failure is a bug in cstore, never a reaction to
 * bad input (bad input gets an error code). */
#define cs_assert(expr)                                                                            \
    do {                                                                                           \
        if (cs_unlikely(!(expr)))                                                                  \
            cs_panic(__FILE__, __LINE__, #expr);                                                   \
    } while (0)

/* Expensive checks: debug builds only (CS_DEBUG). */
#ifdef CS_DEBUG
#define cs_debug_assert(expr) cs_assert(expr)
#else
#define cs_debug_assert(expr) ((void)0)
#endif

static inline size_t cs_min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static inline size_t cs_max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

static inline uint64_t cs_max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static inline uint64_t cs_min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Memory. Each shard allocates from its own jemalloc arena (arena 0 means the default one).
 * Builds with CS_NO_JEMALLOC (the sanitizer builds) use libc malloc so that the sanitizers see
 * every allocation. Memory returned by cs_mem_alloc() is released with cs_mem_free() from any
 * thread; that is also what the public cs_free() calls. */
#define CS_ARENA_POOL_MAX 1024u /* arenas of closed shards kept for the next ones */
/* An arena for a shard: one a closed shard gave back, or a new one. */
CS_MUST_CHECK int cs_mem_arena_create(unsigned *arena);
/* The shard is gone: its arena serves the next one (memory still in use stays valid). */
void cs_mem_arena_release(unsigned arena);
void *cs_mem_alloc(unsigned arena, size_t size);
/* Give the arena's unused pages back to the system (after a large release). */
void cs_mem_arena_purge(unsigned arena);
void *cs_mem_realloc(unsigned arena, void *p, size_t size);
void cs_mem_free(void *p);

/* Allocation-failure injection (tests only: io/fault.c's alloc_fail). While a thread has an
 * injector installed, each cs_mem_alloc / cs_mem_realloc on that thread first calls fn(arg) and
 * returns NULL (allocating nothing) when it answers true. fn NULL removes it. Per thread: other
 * threads are unaffected. Off (the default), an allocation pays one thread-local load. */
typedef bool (*cs_mem_fail_fn)(void *arg);
void cs_mem_fail_set(cs_mem_fail_fn fn, void *arg);

/* Monotonic clock in nanoseconds. */
uint64_t cs_now_ns(void);

/* Record expiry (time to live). The one clock expiries are compared with: wall-clock time
 * (CLOCK_REALTIME) in Unix milliseconds, plus the shift tests set with cs_clock_shift_ms (0
 * otherwise). Every reader that hides expired records and the shards' background reclaim read
 * it here, and only for records that have an expiry. */
uint64_t cs_clock_ms(void);
/* Tests only: move the expiry clock of the whole process by delta_ms (negative: back), so that
 * tests need not wait for a TTL to run out. Atomic; the shift adds up over calls. */
void cs_clock_shift_ms(int64_t delta_ms);
/* Whether a record with expiry expire_ms (0: none) is expired at now_ms: expiries are
 * inclusive (a record expiring at t is gone at t). */
static inline bool cs_expired_at(uint64_t expire_ms, uint64_t now_ms)
{
    return expire_ms != 0 && expire_ms <= now_ms;
}
/* The same against cs_clock_ms(), which is read only when the record has an expiry. */
static inline bool cs_expired(uint64_t expire_ms)
{
    return expire_ms != 0 && expire_ms <= cs_clock_ms();
}

#endif
