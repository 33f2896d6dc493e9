/* libFuzzer target for the Raft message decoder (raft/raft_msg.c) and for raft_step on whatever
 * it accepts.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -DCS_NO_JEMALLOC \
 *       -Iinclude -Icommon -I. tests/fuzz/fuzz_raft_msg.c raft/raft.c raft/raft_msg.c \
 *       common/util.c -lxxhash -o build/fuzz_raft_msg
 *   build/fuzz_raft_msg -max_total_time=60 tests/fuzz/corpus_raft_msg
 *
 * Input: byte 0 selects the mode. Bit 2 clear: the rest is one frame; bit 2 set: the rest is a
 * sequence of frames, each behind a 16-bit little-endian length, stepped in order into one node
 * (so the fuzzer reaches states that take several messages). Bit 0 set: the harness rewrites
 * each frame's body length and checksum first, so the fuzzer reaches the body rules behind the
 * checksum. Bit 1 set: the node is the leader of a three-node group whose log is compacted past
 * node 3's (a snapshot of FUZZ_IMAGE_BYTES in chunks of 16 bytes, two in flight: node 3's answers
 * drive a transfer), else a follower. Bit 3 set (with bit 1): the leader has also proposed a joint
 * change (thesis §4.3) to voters {1, 4, 5} with node 2 turning learner, so answers from nodes 2
 * to 5 drive decisions that need both majorities and the automatic leave.
 *
 * Properties checked: the decoder returns 0 or CS_ECORRUPT and never reads outside the input
 * (ASan); a frame it accepts re-encodes to the same bytes; and stepping what it accepts never
 * trips an assertion in the core (a message that passed the decoder is still input, not
 * trusted). */
#include "raft/raft.h"

#include <cstore.h>

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t counter_rand(void *ctx)
{
    uint64_t *c = ctx;
    return (*c)++;
}

#define FUZZ_IMAGE_BYTES 100u

/* cfg.snapshot_read: a made-up image of FUZZ_IMAGE_BYTES bytes, whatever the index. */
static int image_read(void *ctx, uint64_t index, uint64_t offset, uint8_t *buf, uint32_t len)
{
    (void)ctx;
    if (offset + len > FUZZ_IMAGE_BYTES)
        abort(); /* the core asked for bytes past the image it declared */
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(index + offset + i);
    return 0;
}

static struct raft *node(uint64_t id, uint64_t *rnd)
{
    struct raft_config c = {
        .id = id,
        .election_ticks = 10,
        .heartbeat_ticks = 1,
        .pre_vote = true,
        .check_quorum = true,
        .inflight_msgs_max = 4,
        .msg_bytes_max = 1 << 20,
        .uncommitted_bytes_max = 1 << 20,
        .rand = counter_rand,
        .rand_ctx = rnd,
        .snapshot_chunk_bytes = 16,
        .snapshot_inflight_max = 2,
        .snapshot_read = image_read,
        .bootstrap = {.voters_n = 3, .voters = {1, 2, 3}},
    };
    struct raft *r;
    if (raft_new(&c, NULL, &r) != 0)
        abort();
    return r;
}

static void drain(struct raft *r)
{
    struct raft_ready rd;
    for (int k = 0; k < 8 && raft_has_ready(r); k++) {
        raft_ready(r, &rd);
        raft_advance(r);
    }
}

/* Node 1 as leader of term 2 with a few entries, committed with node 2 and compacted: node 3
 * (match 0) gets a snapshot transfer when it answers. With joint, it then enters C_old,new. */
static struct raft *leader(uint64_t *rnd, bool joint)
{
    struct raft *r = node(1, rnd);
    for (int i = 0; i < 30 && raft_role(r) != RAFT_PRECANDIDATE; i++)
        raft_tick(r);
    drain(r);
    struct raft_msg m = {
        .type = RAFT_MSG_PREVOTE_RESP, .term = raft_term(r) + 1, .from = 2, .to = 1};
    if (raft_step(r, &m) != 0)
        abort();
    drain(r);
    m.type = RAFT_MSG_VOTE_RESP;
    m.term = raft_term(r);
    if (raft_step(r, &m) != 0 || raft_role(r) != RAFT_LEADER)
        abort();
    drain(r);
    uint8_t d[4] = {1, 2, 3, 4};
    uint64_t index;
    if (raft_propose(r, d, sizeof(d), &index) != 0)
        abort();
    drain(r);
    struct raft_msg ack = {
        .type = RAFT_MSG_APP_RESP, .term = raft_term(r), .from = 2, .to = 1, .index = index};
    if (raft_step(r, &ack) != 0 || raft_commit(r) != index)
        abort();
    drain(r);
    if (raft_compact(r, index, FUZZ_IMAGE_BYTES) != 0)
        abort();
    struct raft_conf target = {
        .voters_n = 3, .voters = {1, 4, 5}, .learners_n = 1, .learners = {2}};
    if (joint && raft_propose_members(r, &target, 0, NULL) != 0)
        abort();
    drain(r);
    return r;
}

static void fix_frame(uint8_t *f, size_t len)
{
    uint32_t body = (uint32_t)(len - RAFT_FRAME_HEADER_BYTES);
    for (unsigned i = 0; i < 4; i++)
        f[8 + i] = (uint8_t)(body >> (8 * i));
    uint64_t sum = XXH3_64bits_withSeed(f + RAFT_FRAME_HEADER_BYTES, body, XXH3_64bits(f, 16));
    for (unsigned i = 0; i < 8; i++)
        f[16 + i] = (uint8_t)(sum >> (8 * i));
}

#define FUZZ_FRAMES_MAX 64u /* frames stepped per input */

/* Decode f (fixing its length and checksum first if fix), check that it re-encodes to the same
 * bytes, and step it into *r (created on first use). */
static void one_frame(uint8_t *f, size_t len, uint8_t mode, struct raft **r, uint64_t *rnd)
{
    if ((mode & 1) && len >= RAFT_FRAME_HEADER_BYTES)
        fix_frame(f, len);
    struct raft_msg m;
    int rc = raft_msg_decode(f, len, &m);
    if (rc != 0 && rc != CS_ECORRUPT)
        abort();
    if (rc != 0)
        return;
    size_t cap = raft_msg_encoded_bytes(&m), out_len;
    uint8_t *g = malloc(cap);
    if (!g || raft_msg_encode(&m, g, cap, &out_len) != 0 || out_len != len ||
        memcmp(f, g, len) != 0)
        abort();
    free(g);
    if (!*r)
        *r = mode & 2 ? leader(rnd, mode & 8) : node(1, rnd);
    m.to = 1;
    if (m.from == 1)
        m.from = 2;
    if (raft_step(*r, &m) != 0)
        abort();
    drain(*r);
    raft_tick(*r);
    drain(*r);
    raft_msg_release(&m);
}

/* Byte 0 is the mode; with mode bit 2 the rest is a sequence of frames, each behind a 16-bit
 * little-endian length, all stepped into one node; otherwise the rest is one frame. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    uint64_t rnd = 7;
    struct raft *r = NULL;
    size_t off = 1;
    for (unsigned k = 0; k < FUZZ_FRAMES_MAX && off < size; k++) {
        size_t len = size - off;
        if (mode & 4) {
            if (size - off < 2)
                break;
            len = (size_t)data[off] | (size_t)data[off + 1] << 8;
            off += 2;
            if (len > size - off)
                len = size - off;
        }
        uint8_t *f = malloc(len ? len : 1);
        if (!f)
            break;
        memcpy(f, data + off, len);
        off += len;
        one_frame(f, len, mode, &r, &rnd);
        free(f);
    }
    raft_free(r);
    return 0;
}
