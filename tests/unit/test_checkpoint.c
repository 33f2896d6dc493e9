/* Unit tests of the checkpoint module: a checkpoint written from tree snapshots loads back to
 * the same collections and records in key order; the LSN and id counter round-trip; publishing
 * replaces older checkpoints and removes leftovers; every kind of damage (header, block payload,
 * block length, footer, truncation) is CS_ECORRUPT naming the file and offset; salvage keeps the
 * records before the damage; an image in memory loads as its file does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"
#include "shards/btree.h"
#include "endian.h"
#include "shards/checkpoint.h"
#include <xxhash.h>

#define RECORDS 20000

static char dir[256];

struct loaded {
    uint32_t colls;        /* collections seen */
    uint32_t ids[4];       /* their ids */
    char names[4][16];     /* their names */
    uint64_t records[4];   /* records per collection */
    bool ordered;          /* keys strictly increasing within each collection */
    char last[CS_KEY_MAX]; /* previous key */
    size_t last_len;       /* its length */
    uint64_t value_errors; /* values that differ from what was written */
    uint64_t expiring;     /* records loaded with an expiry */
};

static struct loaded got;

static int on_coll(void *arg, uint32_t id, const char *name, size_t len)
{
    (void)arg;
    assert_true(got.colls < 4);
    got.ids[got.colls] = id;
    snprintf(got.names[got.colls], sizeof(got.names[0]), "%.*s", (int)len, name);
    got.colls++;
    got.last_len = 0;
    return 0;
}

static void value_for(const void *key, size_t klen, char *v, size_t *vlen)
{
    /* the value repeats the key and a tail whose length depends on it: checkable, compressible */
    size_t n = 10 + ((const unsigned char *)key)[klen - 1] % 200;
    for (size_t i = 0; i < n; i++)
        v[i] = ((const char *)key)[i % klen];
    *vlen = n;
}

static int on_rec(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
                  uint64_t expire_ms)
{
    (void)arg;
    got.expiring += expire_ms != 0;
    struct loaded *l = &got;
    l->records[l->colls - 1]++;
    if (l->last_len) {
        size_t m = klen < l->last_len ? klen : l->last_len;
        int c = memcmp(l->last, key, m);
        if (c > 0 || (c == 0 && l->last_len >= klen))
            l->ordered = false;
    }
    memcpy(l->last, key, klen);
    l->last_len = klen;
    char want[256];
    size_t wl;
    value_for(key, klen, want, &wl);
    if (wl != vlen || memcmp(want, val, vlen) != 0)
        l->value_errors++;
    return 0;
}

static void fill(struct btree *t, int n, uint32_t seed)
{
    btree_init(t, 0);
    for (int i = 0; i < n; i++) {
        char k[32], v[256];
        seed = seed * 1103515245u + 12345u;
        int kl = snprintf(k, sizeof(k), "k%08x-%d", seed, i);
        size_t vl;
        value_for(k, (size_t)kl, v, &vl);
        assert_int_equal(btree_put(t, k, (size_t)kl, v, vl, NULL), 0);
    }
}

/* Write a checkpoint of two collections (one empty) at LSN 777 into dir. */
static void write_two(struct btree *a, struct btree *b, struct ckpt_job *job)
{
    fill(a, RECORDS, 1);
    btree_init(b, 0);
    memset(job, 0, sizeof(*job));
    snprintf(job->dir, sizeof(job->dir), "%s", dir);
    job->shard = 3;
    job->lsn = 777;
    job->next_coll_id = 42;
    job->ncolls = 2;
    job->colls = calloc(2, sizeof(*job->colls));
    job->colls[0].id = 7;
    job->colls[0].name_len = 5;
    memcpy(job->colls[0].name, "users", 5);
    btree_snap_take(a, &job->colls[0].snap);
    job->colls[1].id = 9;
    job->colls[1].name_len = 5;
    memcpy(job->colls[1].name, "empty", 5);
    btree_snap_take(b, &job->colls[1].snap);
    assert_int_equal(ckpt_write(job), 0);
    assert_int_equal(job->records, RECORDS);
    assert_int_equal(ckpt_publish(NULL, dir, 777, 0), 0);
}

static void release_two(struct btree *a, struct btree *b, struct ckpt_job *job)
{
    btree_snap_release(a, &job->colls[0].snap);
    btree_snap_release(b, &job->colls[1].snap);
    btree_destroy(a);
    btree_destroy(b);
    free(job->colls);
}

static int load(uint64_t *lsn, uint32_t *next, bool salvage, bool *salvaged, char *msg)
{
    memset(&got, 0, sizeof(got));
    got.ordered = true;
    msg[0] = 0;
    return ckpt_load(NULL, dir, 3, on_coll, on_rec, NULL, NULL, lsn, next,
                     salvage ? CKPT_LOAD_SALVAGE : 0, salvaged, msg, 512);
}

static void flip_lsn(unsigned lsn, long off)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/snap-%016x", dir, lsn);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void flip(long off)
{
    flip_lsn(777, off);
}

static long snap_size(void)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/snap-%016x", dir, 777);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "%s/cs-test-ckpt-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static void test_checkpoint_round_trips_collections_and_records(void **state)
{
    (void)state;
    struct btree a, b;
    struct ckpt_job job;
    write_two(&a, &b, &job);
    uint64_t lsn;
    uint32_t next;
    bool salvaged;
    char msg[512];
    assert_int_equal(load(&lsn, &next, false, &salvaged, msg), 0);
    assert_false(salvaged);
    assert_int_equal(lsn, 777);
    assert_int_equal(next, 42);
    assert_int_equal(got.colls, 2);
    assert_string_equal(got.names[0], "users");
    assert_int_equal(got.ids[0], 7);
    assert_int_equal(got.records[0], RECORDS);
    assert_string_equal(got.names[1], "empty");
    assert_int_equal(got.records[1], 0);
    assert_true(got.ordered);
    assert_int_equal(got.value_errors, 0);
    /* compressible values: the file is far smaller than the raw records */
    assert_true(snap_size() < (long)RECORDS * 60);
    release_two(&a, &b, &job);
}

static void test_no_checkpoint_loads_nothing(void **state)
{
    (void)state;
    char empty[300];
    snprintf(empty, sizeof(empty), "%s/none", dir);
    assert_int_equal(mkdir(empty, 0755), 0);
    uint64_t lsn = 5;
    uint32_t next = 5;
    bool salvaged;
    char msg[64];
    assert_int_equal(ckpt_load(NULL, empty, 0, on_coll, on_rec, NULL, NULL, &lsn, &next, 0,
                               &salvaged, msg, sizeof(msg)),
                     0);
    assert_int_equal(lsn, 0);
    assert_int_equal(next, 0);
}

static void test_publish_replaces_older_and_removes_leftovers(void **state)
{
    (void)state;
    struct btree a, b;
    struct ckpt_job job;
    write_two(&a, &b, &job);
    /* a newer checkpoint, plus a leftover .tmp from an interrupted one */
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s/snap-%016x.tmp", dir, 900);
    FILE *f = fopen(tmp, "w");
    fputs("partial", f);
    fclose(f);
    job.lsn = 800;
    assert_int_equal(ckpt_write(&job), 0);
    assert_int_equal(ckpt_publish(NULL, dir, 800, 777), 0); /* 777 stays: the fallback */
    int snaps = 0, tmps = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "snap-", 5) == 0)
            *(strstr(e->d_name, ".tmp") ? &tmps : &snaps) += 1;
    closedir(d);
    assert_int_equal(snaps, 2);
    assert_int_equal(tmps, 0);
    uint64_t lsn;
    uint32_t next;
    bool salvaged;
    char msg[512];
    assert_int_equal(load(&lsn, &next, false, &salvaged, msg), 0);
    assert_int_equal(lsn, 800);
    assert_int_equal(msg[0], 0);
    /* the newest damaged: the one before it is loaded whole, and the message says so */
    flip_lsn(800, 64 + 32 + 100);
    assert_int_equal(load(&lsn, &next, false, &salvaged, msg), 0);
    assert_int_equal(lsn, 777);
    assert_false(salvaged);
    assert_int_equal(got.records[0], RECORDS);
    assert_int_equal(got.value_errors, 0);
    assert_non_null(strstr(msg, "before it"));
    /* a third one: the oldest goes, the one before the newest stays */
    job.lsn = 850;
    assert_int_equal(ckpt_write(&job), 0);
    assert_int_equal(ckpt_publish(NULL, dir, 850, 800), 0);
    snprintf(tmp, sizeof(tmp), "%s/snap-%016x", dir, 777);
    assert_int_equal(access(tmp, F_OK), -1);
    snprintf(tmp, sizeof(tmp), "%s/snap-%016x", dir, 850);
    assert_int_equal(unlink(tmp), 0);
    snprintf(tmp, sizeof(tmp), "%s/snap-%016x", dir, 800);
    assert_int_equal(unlink(tmp), 0);
    release_two(&a, &b, &job);
    /* back to one checkpoint at 777 for the damage tests */
    char path[400];
    snprintf(path, sizeof(path), "%s/snap-%016x", dir, 800);
    unlink(path);
}

static void expect_damage(long off, const char *what)
{
    struct btree a, b;
    struct ckpt_job job;
    write_two(&a, &b, &job);
    flip(off);
    uint64_t lsn;
    uint32_t next;
    bool salvaged;
    char msg[512];
    int rc = load(&lsn, &next, false, &salvaged, msg);
    if (rc != CS_ECORRUPT)
        fail_msg("%s: rc %d, expected CS_ECORRUPT", what, rc);
    assert_non_null(strstr(msg, "snap-"));
    assert_non_null(strstr(msg, "offset"));
    release_two(&a, &b, &job);
}

static void test_damage_anywhere_is_corruption(void **state)
{
    (void)state;
    expect_damage(10, "header");
    expect_damage(64 + 8, "block length");
    expect_damage(64 + 32 + 100, "block payload");
    expect_damage(snap_size() - 40, "footer");
    expect_damage(snap_size() - 64 - 3, "last block's payload");
}

static void test_truncated_checkpoint_is_corruption(void **state)
{
    (void)state;
    struct btree a, b;
    struct ckpt_job job;
    write_two(&a, &b, &job);
    char path[400];
    snprintf(path, sizeof(path), "%s/snap-%016x", dir, 777);
    assert_int_equal(truncate(path, snap_size() - 100), 0); /* into the last block */
    uint64_t lsn;
    uint32_t next;
    bool salvaged;
    char msg[512];
    assert_int_equal(load(&lsn, &next, false, &salvaged, msg), CS_ECORRUPT);
    /* salvage keeps the whole blocks before the cut */
    assert_int_equal(load(&lsn, &next, true, &salvaged, msg), 0);
    assert_true(salvaged);
    assert_int_equal(lsn, 777);
    assert_true(got.records[0] > 0);
    assert_true(got.records[0] < RECORDS);
    assert_true(got.ordered);
    assert_int_equal(got.value_errors, 0);
    assert_non_null(strstr(msg, "salvage"));
    release_two(&a, &b, &job);
}

/* ckpt_load_image checks and loads a checkpoint held in memory as ckpt_load does the file: the
 * same entries; damage anywhere, or another shard or LSN, loads nothing. */
static void test_image_in_memory_loads_like_the_file(void **state)
{
    (void)state;
    struct btree a, b;
    struct ckpt_job job;
    write_two(&a, &b, &job);
    char path[400];
    snprintf(path, sizeof(path), "%s/snap-%016x", dir, 777);
    size_t size = (size_t)snap_size();
    uint8_t *img = malloc(size);
    assert_non_null(img);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(img, 1, size, f), size);
    fclose(f);
    uint32_t next;
    bool salvaged;
    char msg[512];
    memset(&got, 0, sizeof(got));
    got.ordered = true;
    assert_int_equal(ckpt_load_image(img, size, 3, 777, on_coll, on_rec, NULL, NULL, &next, 0,
                                     &salvaged, msg, sizeof(msg)),
                     0);
    assert_false(salvaged);
    assert_int_equal(next, 42);
    assert_int_equal(got.colls, 2);
    assert_int_equal(got.records[0], RECORDS);
    assert_true(got.ordered);
    assert_int_equal(got.value_errors, 0);
    memset(&got, 0, sizeof(got));
    assert_int_equal(ckpt_load_image(img, size, 3, 778, on_coll, on_rec, NULL, NULL, &next, 0,
                                     &salvaged, msg, sizeof(msg)),
                     CS_ECORRUPT);
    assert_int_equal(ckpt_load_image(img, size, 2, 777, on_coll, on_rec, NULL, NULL, &next, 0,
                                     &salvaged, msg, sizeof(msg)),
                     CS_ECORRUPT);
    img[size / 2] ^= 0x20;
    assert_int_equal(ckpt_load_image(img, size, 3, 777, on_coll, on_rec, NULL, NULL, &next, 0,
                                     &salvaged, msg, sizeof(msg)),
                     CS_ECORRUPT);
    assert_non_null(strstr(msg, "checkpoint image"));
    assert_int_equal(got.colls, 0); /* checked whole before anything is loaded */
    assert_int_equal(ckpt_load_image(img, 10, 3, 777, on_coll, on_rec, NULL, NULL, &next, 0,
                                     &salvaged, msg, sizeof(msg)),
                     CS_ECORRUPT);
    free(img);
    release_two(&a, &b, &job);
}

struct exp_seen {
    uint64_t count;       /* records */
    uint64_t exp_sum;     /* their expiries, summed */
    uint64_t with_expiry; /* records that had one */
};
static struct exp_seen exp_got;

static int on_rec_exp(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
                      uint64_t expire_ms)
{
    (void)arg;
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    struct exp_seen *e = &exp_got;
    e->count++;
    e->exp_sum += expire_ms;
    e->with_expiry += expire_ms != 0;
    return 0;
}

/* Write and publish a checkpoint of tree t alone (collection 1 "c") at lsn into dir, leaving out
 * what expired by now_ms; job holds t's snapshot (release it, and free job->colls). Then read
 * the file back into img as version 2 (header checksum redone): *size gets its bytes. */
static void write_one_as_v2(struct btree *t, struct ckpt_job *job, uint64_t lsn, uint64_t now_ms,
                            uint8_t *img, size_t cap, size_t *size)
{
    memset(job, 0, sizeof(*job));
    snprintf(job->dir, sizeof(job->dir), "%s", dir);
    job->shard = 3;
    job->lsn = lsn;
    job->now_ms = now_ms;
    job->ncolls = 1;
    job->colls = calloc(1, sizeof(*job->colls));
    job->colls[0].id = 1;
    job->colls[0].name_len = 1;
    memcpy(job->colls[0].name, "c", 1);
    btree_snap_take(t, &job->colls[0].snap);
    assert_int_equal(ckpt_write(job), 0);
    assert_int_equal(ckpt_publish(NULL, dir, lsn, 0), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/snap-%016llx", dir, (unsigned long long)lsn);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    *size = fread(img, 1, cap, f);
    fclose(f);
    assert_int_equal(cs_get_le32(img + 8), 3);
    cs_put_le32(img + 8, 2);
    cs_put_le64(img + 56, XXH3_64bits(img, 56));
}

/* Records with an expiry keep it through a checkpoint; those expired at the snapshot's time
 * (job.now_ms) are left out; the file is version 3, a version 2 file (no such records) still
 * loads, and a version 2 file holding one is CS_ECORRUPT. */
static void test_expiry_round_trips_and_expired_records_are_left_out(void **state)
{
    (void)state;
    struct btree t;
    btree_init(&t, 0);
    for (uint64_t i = 0; i < 300; i++) {
        char k[16];
        int kl = snprintf(k, sizeof(k), "e%05u", (unsigned)i);
        uint64_t exp = i % 3 == 0 ? 0 : (i % 3 == 1 ? 500 + i : 5000 + i); /* 100 expired */
        assert_int_equal(btree_put_exp(&t, k, (size_t)kl, "val", 3, exp, NULL), 0);
    }
    struct ckpt_job job;
    static uint8_t img[1 << 20];
    size_t size;
    write_one_as_v2(&t, &job, 900, 1000, img, sizeof(img), &size); /* expiries 500..799: past */
    assert_int_equal(job.records, 200);
    uint64_t lsn;
    uint32_t next;
    bool salvaged = false;
    char msg[512];
    memset(&exp_got, 0, sizeof(exp_got));
    assert_int_equal(ckpt_load(NULL, dir, 3, on_coll, on_rec_exp, NULL, NULL, &lsn, &next, 0,
                               &salvaged, msg, sizeof(msg)),
                     0);
    assert_int_equal(exp_got.count, 200);
    assert_int_equal(exp_got.with_expiry, 100);
    uint64_t want = 0;
    for (uint64_t i = 2; i < 300; i += 3)
        want += 5000 + i;
    assert_int_equal(exp_got.exp_sum, want);
    /* the same file as version 2: its type 5 entries are unknown there */
    memset(&got, 0, sizeof(got));
    assert_int_equal(ckpt_load_image(img, size, 3, 900, on_coll, on_rec_exp, NULL, NULL, &next, 0,
                                     &salvaged, msg, sizeof(msg)),
                     CS_ECORRUPT);
    btree_snap_release(&t, &job.colls[0].snap);
    free(job.colls);

    btree_destroy(&t); /* without expiries, a version 2 file loads as it always did */
    fill(&t, 50, 5);
    write_one_as_v2(&t, &job, 901, 0, img, sizeof(img), &size);
    memset(&got, 0, sizeof(got));
    memset(&exp_got, 0, sizeof(exp_got));
    assert_int_equal(ckpt_load_image(img, size, 3, 901, on_coll, on_rec_exp, NULL, NULL, &next, 0,
                                     &salvaged, msg, sizeof(msg)),
                     0);
    assert_int_equal(exp_got.count, 50);
    assert_int_equal(exp_got.with_expiry, 0);
    btree_snap_release(&t, &job.colls[0].snap);
    btree_destroy(&t);
    free(job.colls);
    char path[600];
    snprintf(path, sizeof(path), "%s/snap-%016x", dir, 900);
    unlink(path);
    snprintf(path, sizeof(path), "%s/snap-%016x", dir, 901);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_round_trips_collections_and_records),
        cmocka_unit_test(test_no_checkpoint_loads_nothing),
        cmocka_unit_test(test_publish_replaces_older_and_removes_leftovers),
        cmocka_unit_test(test_damage_anywhere_is_corruption),
        cmocka_unit_test(test_truncated_checkpoint_is_corruption),
        cmocka_unit_test(test_image_in_memory_loads_like_the_file),
        cmocka_unit_test(test_expiry_round_trips_and_expired_records_are_left_out),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
