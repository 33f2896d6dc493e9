/* Helpers for the unit tests that drive one shard directly through shards/shard.h: launch it in
 * a temporary folder with a fault plan, run requests and wait for them on a semaphore (never by
 * polling), and a gate: a request whose completion blocks the shard thread until the test opens
 * it, so that whatever the test submits meanwhile is taken by the shard in one loop iteration
 * (one WAL frame). Header-only (static inline); include after cmocka.h. */
#ifndef CS_SHARD_HARNESS_H
#define CS_SHARD_HARNESS_H

#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

#include "io/fault.h"
#include "shards/shard.h"
#include "tests/test_util.h"

struct hs {
    struct shard *sh;
    struct io_fault *fault;
    char dir[CST_PATH_MAX];
};

/* The configuration the harness launches a shard of h with (h->dir, h->fault); the caller may
 * change fields before hs_launch. */
static inline struct shard_config hs_config(struct hs *h, enum shard_durability durability)
{
    struct shard_config cfg = {.dir = h->dir,
                               .index = 0,
                               .cpu = -1,
                               .durability = durability,
                               .sync_interval_ms = 10,
                               .group_commit_delay_us = 0,
                               .yield_us = 0,
                               .wal_segment_bytes = 4u << 20,
                               .wal_compress_bytes = 0,
                               .batch_max = 65536,
                               .open_mode = WAL_OPEN_NORMAL,
                               .fault = h->fault};
    return cfg;
}

/* Launch a shard with cfg and wait until it has recovered (which must succeed). */
static inline void hs_launch(struct hs *h, const struct shard_config *cfg)
{
    assert_int_equal(shard_launch(cfg, &h->sh), 0);
    assert_int_equal(shard_await(h->sh), 0);
}

/* Launch a shard in a fresh folder; fault: a fault plan spec or NULL; delay_us: its group
 * commit delay. */
static inline void hs_start_delay(struct hs *h, enum shard_durability durability, const char *fault,
                                  uint32_t delay_us)
{
    memset(h, 0, sizeof(*h));
    cst_tmpdir_make(h->dir, sizeof(h->dir), "shard");
    if (fault)
        assert_int_equal(io_fault_create(fault, &h->fault), 0);
    struct shard_config cfg = hs_config(h, durability);
    cfg.group_commit_delay_us = delay_us;
    hs_launch(h, &cfg);
}

static inline void hs_start(struct hs *h, enum shard_durability durability, const char *fault)
{
    hs_start_delay(h, durability, fault, 0);
}

/* Stop the shard (which must have had no I/O error) and open its folder again with a new fault
 * plan (a spec, or NULL): recovery replays what the shard wrote. */
static inline void hs_reopen(struct hs *h, enum shard_durability durability, const char *fault)
{
    assert_int_equal(shard_stop(h->sh), 0);
    shard_free(h->sh);
    io_fault_destroy(h->fault);
    h->fault = NULL;
    if (fault)
        assert_int_equal(io_fault_create(fault, &h->fault), 0);
    struct shard_config cfg = hs_config(h, durability);
    hs_launch(h, &cfg);
}

/* Stop the shard (returns shard_stop's result), free it and remove its folder. */
static inline int hs_stop(struct hs *h)
{
    int rc = shard_stop(h->sh);
    shard_free(h->sh);
    io_fault_destroy(h->fault);
    assert_int_equal(cst_tmpdir_remove(h->dir), 0);
    return rc;
}

/* A request the test waits for. */
struct hreq {
    struct shard_req r; /* first: done() gets it */
    sem_t done;
    struct cs_shard_stats stats;
};

static inline void hreq_done(struct shard_req *r)
{
    sem_post(&((struct hreq *)r)->done);
}

static inline void hreq_init(struct hreq *q, uint8_t op, const char *coll, const char *key,
                             const char *val)
{
    memset(q, 0, sizeof(*q));
    sem_init(&q->done, 0, 0);
    q->r.op = op;
    q->r.coll = coll;
    q->r.coll_len = coll ? (uint16_t)strlen(coll) : 0;
    q->r.key = key;
    q->r.klen = key ? strlen(key) : 0;
    q->r.val = val;
    q->r.vlen = val ? strlen(val) : 0;
    q->r.stats = &q->stats;
    q->r.rc = 1; /* not answered yet */
    q->r.done = hreq_done;
}

static inline int hreq_wait(struct hreq *q)
{
    while (sem_wait(&q->done) != 0)
        ;
    sem_destroy(&q->done);
    return q->r.rc;
}

static inline int hs_run(struct hs *h, struct hreq *q)
{
    shard_submit(h->sh, &q->r);
    return hreq_wait(q);
}

static inline int hs_op(struct hs *h, uint8_t op, const char *coll, const char *key,
                        const char *val)
{
    struct hreq q;
    hreq_init(&q, op, coll, key, val);
    int rc = hs_run(h, &q);
    cs_mem_free(q.r.out);
    return rc;
}

/* Read key through the shard's queue: its value (malloc, NUL-terminated) or NULL when absent. */
static inline char *hs_get(struct hs *h, const char *coll, const char *key)
{
    struct hreq q;
    hreq_init(&q, SHARD_GET, coll, key, NULL);
    int rc = hs_run(h, &q);
    if (rc == CS_ENOTFOUND)
        return NULL;
    if (rc)
        fail_msg("get %s/%s: %s", coll, key, cs_strerror(rc));
    char *s = malloc(q.r.out_len + 1);
    assert_non_null(s);
    if (q.r.out_len) /* out is NULL for an empty value */
        memcpy(s, q.r.out, q.r.out_len);
    s[q.r.out_len] = 0;
    cs_mem_free(q.r.out);
    return s;
}

/* key holds want (NULL: absent), read through the queue. */
static inline void hs_expect(struct hs *h, const char *coll, const char *key, const char *want)
{
    char *got = hs_get(h, coll, key);
    if (!want != !got || (want && strcmp(want, got) != 0))
        fail_msg("%s/%s: got %.40s, expected %.40s", coll, key, got ? got : "(absent)",
                 want ? want : "(absent)");
    free(got);
}

/* The shard's trees pass their invariant checks. */
static inline void hs_check(struct hs *h)
{
    struct hreq q;
    hreq_init(&q, SHARD_CHECK, NULL, NULL, NULL);
    int rc = hs_run(h, &q);
    if (rc)
        fail_msg("check: %s", q.r.out ? (char *)q.r.out : cs_strerror(rc));
}

static inline struct cs_shard_stats hs_stats(struct hs *h)
{
    struct hreq q;
    hreq_init(&q, SHARD_STATS, NULL, NULL, NULL);
    assert_int_equal(hs_run(h, &q), 0);
    return q.stats;
}

/* A gate: a SHARD_STATS request (completed at once, whatever the durability) whose completion
 * holds the shard thread until hgate_open. */
struct hgate {
    struct shard_req r; /* first */
    struct cs_shard_stats stats;
    sem_t entered, release;
};

static inline void hgate_done(struct shard_req *r)
{
    struct hgate *g = (struct hgate *)r;
    sem_post(&g->entered);
    while (sem_wait(&g->release) != 0)
        ;
}

/* Submit the gate without waiting (it holds the shard once the shard reaches it). */
static inline void hgate_submit(struct hs *h, struct hgate *g)
{
    memset(g, 0, sizeof(*g));
    sem_init(&g->entered, 0, 0);
    sem_init(&g->release, 0, 0);
    g->r.op = SHARD_STATS;
    g->r.stats = &g->stats;
    g->r.done = hgate_done;
    shard_submit(h->sh, &g->r);
}

static inline void hgate_wait_entered(struct hgate *g)
{
    while (sem_wait(&g->entered) != 0)
        ;
}

/* Submit the gate and wait until the shard thread is held in it. */
static inline void hgate_close(struct hs *h, struct hgate *g)
{
    hgate_submit(h, g);
    hgate_wait_entered(g);
}

static inline void hgate_open(struct hgate *g)
{
    sem_post(&g->release);
}

#endif
