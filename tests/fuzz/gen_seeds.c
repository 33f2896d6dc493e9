/* Writes the seed corpora of the fuzz targets (tests/fuzz/corpus_<target>/) from real files that
 * the library itself writes: a WAL segment of a few frames (every record type, a batch, an LZ4
 * body) and checkpoints (one block stored raw, one LZ4), plus small option and line-format
 * texts, and Raft frames encoded by raft_msg_encode (snapshot chunks and their answers). `make
 * fuzz-seeds` runs it; its output is committed, so that `make fuzz` starts from valid
 * inputs and reaches past the magic numbers and checksums at once. Each seed is laid out as its
 * target's header comment describes (mode byte first).
 *
 *   build/fuzz-seeds tests/fuzz */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"
#include "io/file.h"
#include "raft/raft.h"
#include "shards/btree.h"
#include "shards/checkpoint.h"
#include "shards/wal.h"

#define FRAMES_MAX 8u

static const char *out_root; /* tests/fuzz */

static void die(const char *what)
{
    fprintf(stderr, "fuzz-seeds: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Write corpus_<target>/<name>: the prefix bytes, then data. */
static void seed(const char *target, const char *name, const void *prefix, size_t plen,
                 const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/corpus_%s", out_root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/corpus_%s/%s", out_root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(prefix, 1, plen, f) != plen || fwrite(data, 1, len, f) != len || fclose(f))
        die(path);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0)
        die(path);
    long n = ftell(f);
    uint8_t *p = malloc((size_t)n + 1);
    rewind(f);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n)
        die(path);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void append(struct wal *w, uint8_t type, uint32_t coll, const char *key, const void *val,
                   size_t vlen)
{
    struct wal_rec r = {.type = type,
                        .coll = coll,
                        .key = key,
                        .klen = key ? strlen(key) : 0,
                        .val = val,
                        .vlen = vlen};
    if (wal_reserve(w, wal_rec_bytes(&r)) != 0)
        die("wal_reserve");
    wal_append(w, &r);
}

static void seal(struct wal *w, uint64_t durable)
{
    struct wal_io io;
    if (wal_seal(w, durable, &io) != 0 || io_file_pwrite(NULL, io.fd, io.buf, io.len, io.off) ||
        io_file_sync(NULL, io.fd))
        die("wal_seal");
    wal_io_done(w);
}

static int ignore_rec(void *arg, uint64_t lsn, const struct wal_rec *rec)
{
    (void)arg;
    (void)lsn;
    (void)rec;
    return 0;
}

/* One chunk of the recovery target's input: 16-bit length, bytes. */
static size_t chunk(uint8_t *out, const uint8_t *p, size_t len)
{
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    memcpy(out + 2, p, len);
    return len + 2;
}

struct piece {
    size_t frame; /* index of the frame */
    size_t len;   /* its bytes to take (SIZE_MAX: all; 0: a hole) */
};

struct segment {
    const uint8_t *salt;     /* 8 bytes */
    const uint8_t **frame;   /* frame images */
    const size_t *frame_len; /* their header and body bytes */
};

/* One input of fuzz_wal_recovery: mode, base LSN, salt, then a chunk per piece. */
static void recovery_seed(const struct segment *sg, const char *name, uint8_t mode, uint8_t base,
                          const struct piece *pieces, size_t n)
{
    uint8_t in[16384];
    size_t len = 10;
    in[0] = mode;
    in[1] = base;
    memcpy(in + 2, sg->salt, 8);
    for (size_t i = 0; i < n; i++) {
        size_t take = pieces[i].len;
        if (take > sg->frame_len[pieces[i].frame])
            take = sg->frame_len[pieces[i].frame];
        if (len + 2 + take > sizeof(in))
            die("seed too big");
        len += chunk(in + len, sg->frame[pieces[i].frame], take);
    }
    seed("wal_recovery", name, in, len, "", 0);
}

static void wal_seeds(const char *dir)
{
    struct wal w;
    struct wal_recovery info;
    struct wal_config c = {.dir = dir, .segment_bytes = 1u << 20, .compress_bytes = 4096};
    if (wal_open(&w, &c, ignore_rec, NULL, &info) != 0)
        die("wal_open");
    static char big[6000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = "compressible "[i % 13];
    append(&w, WAL_COLL_CREATE, 1, "users", NULL, 0); /* LSN 1 */
    append(&w, WAL_PUT, 1, "alice", "{\"age\":31}", 10);
    seal(&w, 0);
    wal_batch_begin(&w); /* LSN 3 */
    struct wal_rec b1 = {.type = WAL_PUT,
                         .coll = 1,
                         .key = "bob",
                         .klen = 3,
                         .val = "x",
                         .vlen = 1,
                         .expire_ms = 4102444800000ull}; /* a put with an expiry (2100) */
    struct wal_rec b2 = {.type = WAL_DEL, .coll = 1, .key = "alice", .klen = 5};
    if (wal_reserve(&w, wal_rec_bytes(&b1) + wal_rec_bytes(&b2) + WAL_RECORD_HEADER_BYTES))
        die("wal_reserve");
    wal_batch_add(&w, &b1);
    wal_batch_add(&w, &b2);
    wal_batch_end(&w);
    append(&w, WAL_PUT, 1, "carol", "", 0); /* LSN 4 */
    seal(&w, 2);
    append(&w, WAL_PUT, 1, "dave", big, sizeof(big)); /* LSN 5, LZ4 */
    seal(&w, 4);
    append(&w, WAL_DEL, 1, "dave", NULL, 0); /* LSN 6 */
    append(&w, WAL_COLL_DROP, 1, NULL, NULL, 0);
    seal(&w, 5);
    wal_close(&w);

    char path[512];
    snprintf(path, sizeof(path), "%s/wal-%016x.log", dir, 1);
    size_t size;
    uint8_t *seg = read_file(path, &size);
    uint8_t salt[8];
    memcpy(salt, seg + 32, 8);
    const uint8_t *frame[FRAMES_MAX];
    size_t frame_len[FRAMES_MAX], n = 0;
    for (size_t off = WAL_IO_ALIGN; off + WAL_FRAME_HEADER_BYTES <= size && n < FRAMES_MAX;) {
        uint64_t lsn;
        uint32_t recs;
        size_t total;
        if (wal_frame_check(seg + off, size - off, get64(salt), &lsn, &recs, &total) != 0)
            break;
        frame[n] = seg + off;
        frame_len[n++] = WAL_FRAME_HEADER_BYTES + get32(seg + off + 20);
        off += total;
    }
    if (n != 4)
        die("frames");

    /* fuzz_wal_frame: mode, salt, frame */
    static const char *names[] = {"create-put", "batch-put", "lz4-put", "del-drop"};
    for (size_t i = 0; i < n; i++) {
        uint8_t pre[9] = {0};
        memcpy(pre + 1, salt, 8);
        seed("wal_frame", names[i], pre, 9, frame[i], frame_len[i]);
        pre[0] = 1;
        char name[64];
        snprintf(name, sizeof(name), "%s-fixed", names[i]);
        seed("wal_frame", name, pre, 9, frame[i], frame_len[i]);
    }
    uint8_t pre[9] = {2};
    memcpy(pre + 1, salt, 8); /* a bare record sequence: the batch frame's body */
    seed("wal_frame", "records", pre, 9, frame[1] + WAL_FRAME_HEADER_BYTES,
         frame_len[1] - WAL_FRAME_HEADER_BYTES);

    /* fuzz_wal_recovery: mode, base LSN, salt, chunks (frame index and bytes; 0 bytes: a hole) */
    const struct piece all[] = {{0, SIZE_MAX}, {1, SIZE_MAX}, {2, SIZE_MAX}, {3, SIZE_MAX}};
    const struct piece torn[] = {{0, SIZE_MAX}, {1, SIZE_MAX}, {2, SIZE_MAX}, {3, 60}};
    const struct piece hole[] = {{0, SIZE_MAX}, {0, 0}, {1, SIZE_MAX}, {2, SIZE_MAX}};
    const struct piece one[] = {{0, SIZE_MAX}};
    struct segment sg = {.salt = salt, .frame = frame, .frame_len = frame_len};
    recovery_seed(&sg, "log", 0, 0, all, 4);
    recovery_seed(&sg, "log-covered", 1, 3, all, 4);
    recovery_seed(&sg, "torn-tail", 4, 0, torn, 4);
    recovery_seed(&sg, "hole", 2, 0, hole, 4);
    recovery_seed(&sg, "short-file", 16, 0, one, 1);
    free(seg);
}

static void fill(struct btree *t, int n, size_t vlen, unsigned seed_v)
{
    btree_init(t, 0);
    for (int i = 0; i < n; i++) {
        char k[32], v[512];
        int kl = snprintf(k, sizeof(k), "key%04d", i);
        for (size_t j = 0; j < vlen; j++) {
            seed_v = seed_v * 1103515245u + 12345u;
            v[j] = seed_v & 8 ? (char)(seed_v >> 16) : 'a'; /* compressible when seed_v is 0 */
        }
        uint64_t exp = i % 3 == 1 ? 4102444800000ull + (uint64_t)i : 0; /* some expire */
        if (btree_put_exp(t, k, (size_t)kl, v, vlen, exp, NULL) != 0)
            die("btree_put");
    }
}

static void ckpt_seed(const char *dir, const char *name, uint64_t lsn, int n, size_t vlen,
                      unsigned seed_v)
{
    struct btree a, b;
    fill(&a, n, vlen, seed_v);
    btree_init(&b, 0);
    struct ckpt_coll colls[2] = {{.id = 1, .name_len = 5}, {.id = 2, .name_len = 5}};
    memcpy(colls[0].name, "users", 5);
    memcpy(colls[1].name, "empty", 5);
    btree_snap_take(&a, &colls[0].snap);
    btree_snap_take(&b, &colls[1].snap);
    struct ckpt_job job = {.lsn = lsn, .next_coll_id = 3, .colls = colls, .ncolls = 2};
    snprintf(job.dir, sizeof(job.dir), "%s", dir);
    if (ckpt_write(&job) != 0)
        die("ckpt_write");
    btree_snap_release(&a, &colls[0].snap);
    btree_snap_release(&b, &colls[1].snap);
    btree_destroy(&a);
    btree_destroy(&b);
    char path[512];
    snprintf(path, sizeof(path), "%s/snap-%016llx.tmp", dir, (unsigned long long)lsn);
    size_t size;
    uint8_t *img = read_file(path, &size);
    unlink(path);
    char nm[64];
    for (uint8_t mode = 0; mode < 3; mode++) {
        snprintf(nm, sizeof(nm), "%s-%u", name, mode);
        seed("checkpoint", nm, &mode, 1, img, mode == 2 ? size - 40 : size);
    }
    free(img);
}

/* Append frame m behind a 16-bit little-endian length to out (fuzz_raft_msg's sequence mode). */
static size_t raft_frame(uint8_t *out, size_t off, size_t cap, const struct raft_msg *m)
{
    size_t len;
    if (cap - off < 2 || raft_msg_encode(m, out + off + 2, cap - off - 2, &len) != 0)
        die("raft_msg_encode");
    out[off] = (uint8_t)len;
    out[off + 1] = (uint8_t)(len >> 8);
    return off + 2 + len;
}

/* Chunk k (16 bytes, the last shorter) of transfer 7 of a 100-byte image of the snapshot at
 * index 5, from node `from` in `term`. */
static struct raft_msg raft_chunk_msg(uint64_t term, uint64_t from, unsigned k, const uint8_t *img)
{
    struct raft_msg m = {.type = RAFT_MSG_SNAP,
                         .term = term,
                         .from = from,
                         .to = 1,
                         .has_snapshot = true,
                         .snapshot = {.index = 5, .term = 1, .bytes = 100},
                         .chunk = {.transfer = 7, .offset = 16u * k}};
    m.chunk.len = m.chunk.offset + 16 <= 100 ? 16 : (uint32_t)(100 - m.chunk.offset);
    m.chunk.last = m.chunk.offset + m.chunk.len == 100;
    m.chunk.data = img + m.chunk.offset;
    m.snapshot.conf.voters_n = 3;
    for (unsigned i = 0; i < 3; i++)
        m.snapshot.conf.voters[i] = i + 1;
    return m;
}

/* A CONF entry of C_old,new: C_old = {1, 2, 3}, C_new = {1, 4, 5}, node 2 turning learner
 * (thesis §4.3), encoded into buf (RAFT_CONF_BYTES_MAX bytes); or C_new after it. */
static struct raft_entry raft_joint_entry(uint64_t term, uint64_t index, bool leave, uint8_t *buf)
{
    struct raft_conf c = {.voters_n = 3, .voters = {1, 4, 5}};
    if (leave) {
        c.learners_n = 1;
        c.learners[0] = 2;
    } else {
        c.old_n = 3;
        c.old[0] = 1;
        c.old[1] = 2;
        c.old[2] = 3;
        c.learners_next_n = 1;
        c.learners_next[0] = 2;
    }
    struct raft_entry e = {.term = term, .index = index, .type = RAFT_ENTRY_CONF};
    e.len = (uint32_t)raft_conf_encode(&c, buf);
    e.data = buf;
    return e;
}

/* fuzz_raft_msg: joint configurations (thesis §4.3) in appends, in snapshots and on a leader. */
static void raft_joint_seeds(const uint8_t *img)
{
    uint8_t out[4096], jb[RAFT_CONF_BYTES_MAX], lb[RAFT_CONF_BYTES_MAX];
    /* a follower enters C_old,new, leaves it, commits; then a new leader truncates both */
    struct raft_entry es[3] = {{.term = 1, .index = 1},
                               raft_joint_entry(1, 2, false, jb),
                               raft_joint_entry(1, 3, true, lb)};
    struct raft_msg a = {.type = RAFT_MSG_APP, .term = 1, .from = 2, .to = 1, .entries = es};
    a.entries_n = 2;
    size_t off = raft_frame(out, 0, sizeof(out), &a);
    a.index = 2;
    a.log_term = 1;
    a.entries = es + 2;
    a.entries_n = 1;
    a.commit = 2;
    off = raft_frame(out, off, sizeof(out), &a);
    struct raft_entry t2 = {.term = 2, .index = 2};
    struct raft_msg b = {.type = RAFT_MSG_APP,
                         .term = 2,
                         .from = 3,
                         .to = 1,
                         .index = 1,
                         .log_term = 1,
                         .entries = &t2,
                         .entries_n = 1};
    off = raft_frame(out, off, sizeof(out), &b);
    uint8_t mode = 4;
    seed("raft_msg", "joint-append", &mode, 1, out, off);
    /* a snapshot taken while joint, in chunks */
    off = 0;
    for (unsigned k = 0; k < 7; k++) {
        struct raft_msg m = raft_chunk_msg(1, 2, k, img);
        m.snapshot.conf = (struct raft_conf){.voters_n = 3, .voters = {1, 4, 5}, .old_n = 3};
        m.snapshot.conf.old[0] = 1;
        m.snapshot.conf.old[1] = 2;
        m.snapshot.conf.old[2] = 3;
        off = raft_frame(out, off, sizeof(out), &m);
    }
    mode = 5;
    seed("raft_msg", "joint-snapshot", &mode, 1, out, off);
    /* the leader of term 1 in C_old,new (index 3): acknowledgements from C_new, then from C_old
     * (C_old,new commits), then of C_new (index 4, appended by the leader) */
    off = 0;
    static const uint64_t from[] = {4, 5, 3, 2, 4, 5, 2};
    static const uint64_t index[] = {3, 3, 3, 3, 4, 4, 4};
    for (unsigned k = 0; k < 7; k++) {
        struct raft_msg r = {
            .type = RAFT_MSG_APP_RESP, .term = 1, .from = from[k], .to = 1, .index = index[k]};
        off = raft_frame(out, off, sizeof(out), &r);
    }
    mode = 4 | 2 | 8;
    seed("raft_msg", "joint-leader", &mode, 1, out, off);
}

/* fuzz_raft_msg: snapshot transfers (raft.h "Snapshots"), as one frame and as sequences. */
static void raft_seeds(void)
{
    uint8_t img[100], out[4096];
    for (unsigned i = 0; i < sizeof(img); i++)
        img[i] = (uint8_t)(i * 7);
    size_t len;
    struct raft_msg m = raft_chunk_msg(1, 2, 0, img);
    if (raft_msg_encode(&m, out, sizeof(out), &len) != 0)
        die("raft_msg_encode");
    uint8_t mode = 0;
    seed("raft_msg", "chunk-one", &mode, 1, out, len);
    /* a follower gets a whole transfer, with a duplicate and a reordered chunk */
    static const unsigned order[] = {0, 1, 1, 3, 2, 3, 4, 5, 6};
    size_t off = 0;
    for (unsigned i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        m = raft_chunk_msg(1, 2, order[i], img);
        off = raft_frame(out, off, sizeof(out), &m);
    }
    mode = 4;
    seed("raft_msg", "chunk-transfer", &mode, 1, out, off);
    /* a transfer cut by a new leader in term 2, which starts its own */
    off = 0;
    for (unsigned k = 0; k < 3; k++) {
        m = raft_chunk_msg(1, 2, k, img);
        off = raft_frame(out, off, sizeof(out), &m);
    }
    for (unsigned k = 0; k < 7; k++) {
        m = raft_chunk_msg(2, 3, k, img);
        off = raft_frame(out, off, sizeof(out), &m);
    }
    mode = 5; /* checksums rewritten by the harness: mutations reach the body rules */
    seed("raft_msg", "chunk-new-leader", &mode, 1, out, off);
    /* the leader (term 1, compacted at 2) hears from node 3: a transfer, acknowledged */
    off = 0;
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT_RESP, .term = 1, .from = 3, .to = 1};
    off = raft_frame(out, off, sizeof(out), &hb);
    for (unsigned k = 1; k <= 7; k++) {
        struct raft_msg a = {.type = RAFT_MSG_SNAP_RESP,
                             .term = 1,
                             .from = 3,
                             .to = 1,
                             .index = 2,
                             .context = 1,
                             .hint = k == 7 ? 100 : 16u * (k / 2)};
        off = raft_frame(out, off, sizeof(out), &a);
    }
    struct raft_msg done = {.type = RAFT_MSG_APP_RESP, .term = 1, .from = 3, .to = 1, .index = 2};
    off = raft_frame(out, off, sizeof(out), &done);
    mode = 6;
    seed("raft_msg", "chunk-leader", &mode, 1, out, off);
    struct raft_msg rej = {.type = RAFT_MSG_SNAP_RESP,
                           .reject = true,
                           .term = 1,
                           .from = 3,
                           .to = 1,
                           .index = 2,
                           .context = 1};
    off = raft_frame(out, 0, sizeof(out), &hb);
    off = raft_frame(out, off, sizeof(out), &rej);
    seed("raft_msg", "chunk-leader-reject", &mode, 1, out, off);
    raft_joint_seeds(img);
}

static void text_seed(const char *target, const char *name, uint8_t mode, const char *text)
{
    seed(target, name, &mode, 1, text, strlen(text));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz-seeds DIR (tests/fuzz)\n");
        return 2;
    }
    out_root = argv[1];
    char dir[] = "/tmp/cs-fuzz-seeds-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp");
    wal_seeds(dir);
    ckpt_seed(dir, "raw", 77, 12, 24, 1);
    ckpt_seed(dir, "lz4", 78, 20, 200, 0);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        die("rm");

    text_seed("options", "set-shards", 0, "shards=4");
    text_seed("options", "set-cpuset", 0, "cpuset=0-3,6");
    text_seed("options", "set-size", 0, "wal_segment_bytes=64MiB");
    text_seed("options", "set-fault", 0, "fault=seed=7,write_eio=3");
    text_seed("options", "pick-durability", 1, "\002async");
    text_seed("options", "pick-memory", 1, "\012512M");
    text_seed("options", "pick-fault", 1, "\014fsync_eio=2%");
    text_seed("options", "ini", 2,
              "; comment\n[cstore]\nshards = 2\ndurability = async\nsync_interval_ms = 5\n"
              "wal_compress_bytes = 4K\nsalvage = true\n");
    text_seed("options", "ini-bad-section", 2, "[other]\nshards = 2\n");

    raft_seeds();

    text_seed("lineformat", "plain", 'k', "ey\tvalue");
    text_seed("lineformat", "escapes", '\\', "\\\\t\\n\\r\\0\\x41\\xfF end");
    text_seed("lineformat", "bad", '\\', "q \\x4");
    return 0;
}
