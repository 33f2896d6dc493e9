/* Small utilities shared by every layer: the panic path of cs_assert, the allocation wrappers
 * over jemalloc's per-arena API (mallocx with MALLOCX_ARENA), the per-thread allocation-failure
 * injector tests install, and the monotonic clock.
 *
 * Why jemalloc's non-standard API and not malloc(): libcstore must not replace the
 * application's malloc, yet each shard wants its own arena so that shards never contend on
 * allocator locks. mallocx/dallocx are resolved from libjemalloc explicitly, so memory handed
 * out by cstore must be released with cs_free() (never free()). */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#ifndef CS_NO_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

void cs_panic(const char *file, int line, const char *expr)
{
    fprintf(stderr, "cstore: assertion failed at %s:%d: %s\n", file, line, expr);
    abort();
}

/* The calling thread's allocation-failure injector (cs_mem_fail_set); NULL = off. initial-exec:
 * a plain %fs-relative load, no __tls_get_addr call, even in the shared library. */
static __thread cs_mem_fail_fn mem_fail_fn __attribute__((tls_model("initial-exec")));
static __thread void *mem_fail_arg __attribute__((tls_model("initial-exec")));

void cs_mem_fail_set(cs_mem_fail_fn fn, void *arg)
{
    mem_fail_arg = arg;
    mem_fail_fn = fn;
}

/* true: the injector wants this allocation to fail. */
static inline bool mem_fail(void)
{
    return cs_unlikely(mem_fail_fn != NULL) && mem_fail_fn(mem_fail_arg);
}

#ifndef CS_NO_JEMALLOC
/* Arenas given back by closed shards, handed to the next ones. jemalloc cannot destroy an
 * arena whose memory is still in use (values returned to the application may outlive the
 * database), and it creates at most a few thousand: a process that opened and closed
 * databases in a loop ran out of them. */
static pthread_mutex_t arena_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned arena_pool[CS_ARENA_POOL_MAX];
static unsigned arena_pool_count;

int cs_mem_arena_create(unsigned *arena)
{
    pthread_mutex_lock(&arena_pool_lock);
    bool reused = arena_pool_count > 0;
    if (reused)
        *arena = arena_pool[--arena_pool_count];
    pthread_mutex_unlock(&arena_pool_lock);
    if (reused)
        return 0;
    size_t sz = sizeof(*arena);
    int rc = mallctl("arenas.create", arena, &sz, NULL, 0);
    return rc ? -rc : 0;
}

void cs_mem_arena_release(unsigned arena)
{
    if (arena == 0)
        return;
    cs_mem_arena_purge(arena);
    pthread_mutex_lock(&arena_pool_lock);
    if (arena_pool_count < CS_ARENA_POOL_MAX)
        arena_pool[arena_pool_count++] = arena;
    pthread_mutex_unlock(&arena_pool_lock);
}

void cs_mem_arena_purge(unsigned arena)
{
    char name[64];
    snprintf(name, sizeof(name), "arena.%u.purge", arena);
    (void)mallctl(name, NULL, NULL, NULL, 0); /* best effort: memory stays usable either way */
}

void *cs_mem_alloc(unsigned arena, size_t size)
{
    cs_assert(size > 0);
    if (mem_fail())
        return NULL;
    return mallocx(size, arena ? MALLOCX_ARENA(arena) : 0);
}

void *cs_mem_realloc(unsigned arena, void *p, size_t size)
{
    cs_assert(size > 0);
    if (!p)
        return cs_mem_alloc(arena, size);
    if (mem_fail())
        return NULL;
    return rallocx(p, size, arena ? MALLOCX_ARENA(arena) : 0);
}

void cs_mem_free(void *p)
{
    if (p)
        dallocx(p, 0);
}
#else
int cs_mem_arena_create(unsigned *arena)
{
    *arena = 0;
    return 0;
}

void cs_mem_arena_release(unsigned arena)
{
    (void)arena;
}

void cs_mem_arena_purge(unsigned arena)
{
    (void)arena;
}

void *cs_mem_alloc(unsigned arena, size_t size)
{
    (void)arena;
    cs_assert(size > 0);
    if (mem_fail())
        return NULL;
    return malloc(size);
}

void *cs_mem_realloc(unsigned arena, void *p, size_t size)
{
    (void)arena;
    cs_assert(size > 0);
    if (mem_fail())
        return NULL;
    return realloc(p, size);
}

void cs_mem_free(void *p)
{
    free(p);
}
#endif

/* The expiry clock's test shift (cs_clock_shift_ms): the one piece of process-wide state here,
 * for tests only; 0 in any program that does not call it. */
static int64_t clock_shift_ms;

uint64_t cs_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    ms += __atomic_load_n(&clock_shift_ms, __ATOMIC_RELAXED);
    return ms > 0 ? (uint64_t)ms : 1;
}

void cs_clock_shift_ms(int64_t delta_ms)
{
    __atomic_fetch_add(&clock_shift_ms, delta_ms, __ATOMIC_RELAXED);
}

uint64_t cs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
