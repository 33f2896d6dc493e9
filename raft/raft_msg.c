/* Raft messages on the wire: versioned, checksummed frames, and a decoder that never trusts a
 * length; and the byte encoding of a configuration, which CONF entries and snapshots carry.
 *
 * Configuration layout (raft_conf_encode, at most RAFT_CONF_BYTES_MAX bytes):
 *
 *   offset size          field
 *   0      1             voters_n (1..RAFT_NODES_MAX)
 *   1      1             learners_n
 *   2      8 * voters_n  voter ids, u64 each
 *   ...    8 * learners  learner ids, u64 each
 *   joint configurations only (thesis §4.3), C_old:
 *   ...    1             old_only_n: voters of C_old that are not voters of C_new
 *   ...    2             old_mask: bit i set = voters[i] is a voter of C_old too
 *   ...    2             next_mask: bit j set = old_only[j] becomes a learner when leaving
 *   ...    8 * old_only  the ids of C_old's other voters, u64 each
 *
 * A configuration is joint exactly when the C_old part is there; then C_old is not empty
 * (old_mask or old_only_n non-zero). Decoding lists C_old as the voters of old_mask in their
 * order, then old_only; learners_next in old_only's order (so decode then encode gives the
 * same bytes). Validity: raft_conf_valid's rules (configuration.c), an exact length, no mask
 * bit past its list, no voter of C_new among old_only; anything else is CS_ECORRUPT.
 *
 * Frame layout (all integers little-endian):
 *
 *   offset size field
 *   0      4    magic 0x54465241 ("ARFT")
 *   4      1    version (RAFT_WIRE_VERSION = 1)
 *   5      1    message type (enum raft_msg_type)
 *   6      2    flags: bit 0 reject, bit 1 has snapshot; other bits 0
 *   8      4    body bytes (frame bytes - 24)
 *   12     4    reserved, 0
 *   16     8    checksum: XXH3_64(body, seed = XXH3_64(bytes 0..16))
 *   24     ...  body
 *
 * Body:
 *   term u64, from u64, to u64, index u64, log_term u64, commit u64, hint u64, context u64
 *   entries_n u32, then entries_n times: term u64, type u8, len u32, data[len]
 *     (entry i has index = index + 1 + i)
 *   if has snapshot (SNAP, one chunk of a transfer): index u64, term u64, conf_len u8,
 *     conf[conf_len] (raft_conf_encode), bytes u64 (the whole image), transfer u64, offset u64,
 *     last u8, len u32, data[len] (the image's bytes offset .. offset + len - 1)
 *
 * Validity rules (anything else is CS_ECORRUPT): magic, version, a known type, no unknown flag
 * bit, reserved 0, body bytes equal to the rest of the frame, checksum, every field inside the
 * body, no trailing bytes, entries only in APP and a snapshot only in SNAP (and always there),
 * entries_n <= RAFT_MSG_ENTRIES_MAX, entry type known, entry len <= RAFT_ENTRY_BYTES_MAX, entry
 * terms <= message term, CONF entries and the snapshot configuration decode, non-zero and
 * distinct from/to, indexes that do not overflow; for a chunk: bytes <= RAFT_SNAPSHOT_BYTES_MAX,
 * transfer non-zero, len <= RAFT_CHUNK_BYTES_MAX, offset + len <= bytes, last is 0 or 1 and is 1
 * exactly when offset + len == bytes, len 0 only for an empty image. */
#include "raft.h"
#include "endian.h"

#include <cstore.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define RAFT_WIRE_MAGIC 0x54465241u
#define RAFT_WIRE_VERSION 1u
#define FLAG_REJECT 1u
#define FLAG_SNAPSHOT 2u
#define BODY_FIXED_BYTES (8u * 8u + 4u)
#define ENTRY_HEAD_BYTES 13u

struct wbuf {
    uint8_t *p;
    size_t off;
};

struct rbuf {
    const uint8_t *p;
    size_t len;
    size_t off;
    bool bad; /* a read ran past the end */
};

static void w_u8(struct wbuf *w, uint8_t v)
{
    w->p[w->off++] = v;
}

static void w_u32(struct wbuf *w, uint32_t v)
{
    cs_put_le32(w->p + w->off, v);
    w->off += 4;
}

static void w_u64(struct wbuf *w, uint64_t v)
{
    cs_put_le64(w->p + w->off, v);
    w->off += 8;
}

static void w_bytes(struct wbuf *w, const uint8_t *d, size_t n)
{
    if (n)
        memcpy(w->p + w->off, d, n);
    w->off += n;
}

static bool r_has(struct rbuf *r, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint8_t r_u8(struct rbuf *r)
{
    if (!r_has(r, 1))
        return 0;
    return r->p[r->off++];
}

static uint32_t r_u32(struct rbuf *r)
{
    if (!r_has(r, 4))
        return 0;
    uint32_t v = cs_get_le32(r->p + r->off);
    r->off += 4;
    return v;
}

static uint64_t r_u64(struct rbuf *r)
{
    if (!r_has(r, 8))
        return 0;
    uint64_t v = cs_get_le64(r->p + r->off);
    r->off += 8;
    return v;
}

/* A view of the next n bytes, or NULL (and bad) if they are not there. */
static const uint8_t *r_view(struct rbuf *r, size_t n)
{
    if (!r_has(r, n))
        return NULL;
    const uint8_t *v = r->p + r->off;
    r->off += n;
    return v;
}

static bool ids_have(const uint64_t *ids, unsigned n, uint64_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* The C_old part of a joint configuration (see the layout above). */
static void w_joint(struct wbuf *w, const struct raft_conf *c)
{
    uint16_t old_mask = 0, next_mask = 0;
    uint64_t only[RAFT_NODES_MAX];
    unsigned only_n = 0;
    for (unsigned i = 0; i < c->voters_n; i++)
        if (ids_have(c->old, c->old_n, c->voters[i]))
            old_mask |= (uint16_t)(1u << i);
    for (unsigned i = 0; i < c->old_n; i++) {
        if (ids_have(c->voters, c->voters_n, c->old[i]))
            continue;
        if (ids_have(c->learners_next, c->learners_next_n, c->old[i]))
            next_mask |= (uint16_t)(1u << only_n);
        only[only_n++] = c->old[i];
    }
    w_u8(w, (uint8_t)only_n);
    w_u8(w, (uint8_t)old_mask);
    w_u8(w, (uint8_t)(old_mask >> 8));
    w_u8(w, (uint8_t)next_mask);
    w_u8(w, (uint8_t)(next_mask >> 8));
    for (unsigned i = 0; i < only_n; i++)
        w_u64(w, only[i]);
}

size_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf)
{
    cs_assert(raft_conf_valid(c));
    struct wbuf w = {.p = buf, .off = 0};
    w_u8(&w, c->voters_n);
    w_u8(&w, c->learners_n);
    for (unsigned i = 0; i < c->voters_n; i++)
        w_u64(&w, c->voters[i]);
    for (unsigned i = 0; i < c->learners_n; i++)
        w_u64(&w, c->learners[i]);
    if (c->old_n)
        w_joint(&w, c);
    cs_assert(w.off <= RAFT_CONF_BYTES_MAX);
    return w.off;
}

/* The C_old part of a joint configuration; r is past the learners. CS_ECORRUPT on a bad length,
 * an empty C_old or a mask bit past its list. */
static int r_joint(struct rbuf *r, struct raft_conf *c)
{
    unsigned only_n = r_u8(r);
    uint16_t old_mask = r_u8(r);
    old_mask |= (uint16_t)(r_u8(r) << 8);
    uint16_t next_mask = r_u8(r);
    next_mask |= (uint16_t)(r_u8(r) << 8);
    if (r->bad || only_n > RAFT_NODES_MAX || r->len - r->off != 8 * (size_t)only_n)
        return CS_ECORRUPT;
    if ((old_mask >> c->voters_n) != 0 || (next_mask >> only_n) != 0)
        return CS_ECORRUPT;
    if (old_mask == 0 && only_n == 0)
        return CS_ECORRUPT; /* a joint configuration without C_old */
    unsigned n = 0;
    for (unsigned i = 0; i < c->voters_n; i++)
        if (old_mask & (1u << i))
            c->old[n++] = c->voters[i];
    for (unsigned j = 0; j < only_n; j++) {
        uint64_t id = r_u64(r);
        if (n >= RAFT_NODES_MAX || ids_have(c->voters, c->voters_n, id))
            return CS_ECORRUPT; /* a voter of C_new is in C_old through old_mask only */
        c->old[n++] = id;
        if (next_mask & (1u << j))
            c->learners_next[c->learners_next_n++] = id;
    }
    c->old_n = (uint8_t)n;
    cs_assert(!r->bad && r->off == r->len);
    return 0;
}

int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *c)
{
    memset(c, 0, sizeof(*c));
    if (!buf || len < 2)
        return CS_ECORRUPT;
    unsigned nv = buf[0], nl = buf[1];
    if (nv > RAFT_NODES_MAX || nl > RAFT_NODES_MAX)
        return CS_ECORRUPT;
    size_t plain = 2 + 8 * (size_t)(nv + nl);
    if (len != plain && len < plain + 5)
        return CS_ECORRUPT;
    struct rbuf r = {.p = buf, .len = len, .off = 2};
    c->voters_n = (uint8_t)nv;
    c->learners_n = (uint8_t)nl;
    for (unsigned i = 0; i < nv; i++)
        c->voters[i] = r_u64(&r);
    for (unsigned i = 0; i < nl; i++)
        c->learners[i] = r_u64(&r);
    cs_assert(!r.bad && r.off == plain);
    if (len != plain && r_joint(&r, c) != 0) {
        memset(c, 0, sizeof(*c));
        return CS_ECORRUPT;
    }
    return raft_conf_valid(c) ? 0 : CS_ECORRUPT;
}

size_t raft_msg_encoded_bytes(const struct raft_msg *m)
{
    size_t n = RAFT_FRAME_HEADER_BYTES + BODY_FIXED_BYTES;
    for (uint32_t i = 0; i < m->entries_n; i++)
        n += ENTRY_HEAD_BYTES + m->entries[i].len;
    if (m->has_snapshot)
        n += 8 + 8 + 1 + RAFT_CONF_BYTES_MAX + 8 + 8 + 8 + 1 + 4 + m->chunk.len;
    return n;
}

static bool encodable(const struct raft_msg *m)
{
    if (m->type < RAFT_MSG_APP || m->type >= RAFT_MSG_TYPE_END)
        return false;
    if (m->entries_n > RAFT_MSG_ENTRIES_MAX)
        return false;
    if (m->has_snapshot &&
        (m->snapshot.bytes > RAFT_SNAPSHOT_BYTES_MAX || !raft_conf_valid(&m->snapshot.conf) ||
         m->chunk.len > RAFT_CHUNK_BYTES_MAX))
        return false;
    for (uint32_t i = 0; i < m->entries_n; i++)
        if (m->entries[i].len > RAFT_ENTRY_BYTES_MAX)
            return false;
    return raft_msg_encoded_bytes(m) <= RAFT_FRAME_BYTES_MAX;
}

int raft_msg_encode(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *len)
{
    if (!encodable(m) || cap < raft_msg_encoded_bytes(m))
        return CS_EINVAL;
    struct wbuf w = {.p = buf, .off = RAFT_FRAME_HEADER_BYTES};
    w_u64(&w, m->term);
    w_u64(&w, m->from);
    w_u64(&w, m->to);
    w_u64(&w, m->index);
    w_u64(&w, m->log_term);
    w_u64(&w, m->commit);
    w_u64(&w, m->hint);
    w_u64(&w, m->context);
    w_u32(&w, m->entries_n);
    for (uint32_t i = 0; i < m->entries_n; i++) {
        const struct raft_entry *e = &m->entries[i];
        w_u64(&w, e->term);
        w_u8(&w, e->type);
        w_u32(&w, e->len);
        w_bytes(&w, e->data, e->len);
    }
    if (m->has_snapshot) {
        uint8_t conf[RAFT_CONF_BYTES_MAX];
        size_t cl = raft_conf_encode(&m->snapshot.conf, conf);
        w_u64(&w, m->snapshot.index);
        w_u64(&w, m->snapshot.term);
        w_u8(&w, (uint8_t)cl);
        w_bytes(&w, conf, cl);
        w_u64(&w, m->snapshot.bytes);
        w_u64(&w, m->chunk.transfer);
        w_u64(&w, m->chunk.offset);
        w_u8(&w, m->chunk.last ? 1 : 0);
        w_u32(&w, m->chunk.len);
        w_bytes(&w, m->chunk.data, m->chunk.len);
    }
    size_t body = w.off - RAFT_FRAME_HEADER_BYTES;
    cs_assert(w.off <= cap);
    struct wbuf h = {.p = buf, .off = 0};
    w_u32(&h, RAFT_WIRE_MAGIC);
    w_u8(&h, RAFT_WIRE_VERSION);
    w_u8(&h, m->type);
    uint16_t flags = (m->reject ? FLAG_REJECT : 0) | (m->has_snapshot ? FLAG_SNAPSHOT : 0);
    w_u8(&h, (uint8_t)flags);
    w_u8(&h, (uint8_t)(flags >> 8));
    w_u32(&h, (uint32_t)body);
    w_u32(&h, 0);
    uint64_t seed = XXH3_64bits(buf, 16);
    w_u64(&h, XXH3_64bits_withSeed(buf + RAFT_FRAME_HEADER_BYTES, body, seed));
    cs_assert(h.off == RAFT_FRAME_HEADER_BYTES);
    *len = w.off;
    return 0;
}

static int decode_entries(struct rbuf *r, struct raft_msg *m, uint32_t n)
{
    if (n > RAFT_MSG_ENTRIES_MAX || (uint64_t)n > UINT64_MAX - m->index)
        return CS_ECORRUPT;
    /* each entry needs at least its head: refuse counts the body cannot hold before
     * allocating */
    if ((size_t)n * ENTRY_HEAD_BYTES > r->len - r->off)
        return CS_ECORRUPT;
    if (n == 0)
        return 0;
    struct raft_entry *es = calloc(n, sizeof(*es));
    if (!es)
        return -ENOMEM;
    m->entries = es;
    m->entries_n = n;
    for (uint32_t i = 0; i < n; i++) {
        struct raft_entry *e = &es[i];
        e->index = m->index + 1 + i;
        e->term = r_u64(r);
        e->type = r_u8(r);
        e->len = r_u32(r);
        if (r->bad || e->len > RAFT_ENTRY_BYTES_MAX || e->term > m->term || e->term == 0)
            return CS_ECORRUPT;
        e->data = e->len ? r_view(r, e->len) : NULL;
        if (r->bad)
            return CS_ECORRUPT;
        if (e->type == RAFT_ENTRY_CONF) {
            struct raft_conf c;
            if (raft_conf_decode(e->data, e->len, &c) != 0)
                return CS_ECORRUPT;
        } else if (e->type != RAFT_ENTRY_NORMAL) {
            return CS_ECORRUPT;
        }
    }
    return 0;
}

static int decode_snapshot(struct rbuf *r, struct raft_msg *m)
{
    struct raft_snapshot *s = &m->snapshot;
    s->index = r_u64(r);
    s->term = r_u64(r);
    uint8_t cl = r_u8(r);
    const uint8_t *conf = r_view(r, cl);
    if (r->bad || s->index == 0 || s->term == 0 || s->term > m->term)
        return CS_ECORRUPT;
    if (raft_conf_decode(conf, cl, &s->conf) != 0)
        return CS_ECORRUPT;
    struct raft_chunk *c = &m->chunk;
    s->bytes = r_u64(r);
    c->transfer = r_u64(r);
    c->offset = r_u64(r);
    uint8_t last = r_u8(r);
    c->len = r_u32(r);
    if (r->bad || s->bytes > RAFT_SNAPSHOT_BYTES_MAX || c->transfer == 0 || last > 1 ||
        c->len > RAFT_CHUNK_BYTES_MAX)
        return CS_ECORRUPT;
    if (c->offset > s->bytes || c->len > s->bytes - c->offset)
        return CS_ECORRUPT;
    c->last = last;
    if (c->last != (c->offset + c->len == s->bytes) || (c->len == 0 && s->bytes != 0))
        return CS_ECORRUPT;
    c->data = c->len ? r_view(r, c->len) : NULL;
    return r->bad ? CS_ECORRUPT : 0;
}

static int decode_body(struct rbuf *r, struct raft_msg *m, uint16_t flags)
{
    m->term = r_u64(r);
    m->from = r_u64(r);
    m->to = r_u64(r);
    m->index = r_u64(r);
    m->log_term = r_u64(r);
    m->commit = r_u64(r);
    m->hint = r_u64(r);
    m->context = r_u64(r);
    uint32_t n = r_u32(r);
    if (r->bad || m->from == 0 || m->to == 0 || m->from == m->to)
        return CS_ECORRUPT;
    if (n && m->type != RAFT_MSG_APP)
        return CS_ECORRUPT;
    int rc = decode_entries(r, m, n);
    if (rc)
        return rc;
    bool snap = flags & FLAG_SNAPSHOT;
    if (snap != (m->type == RAFT_MSG_SNAP))
        return CS_ECORRUPT;
    if (snap && (rc = decode_snapshot(r, m)) != 0)
        return rc;
    m->has_snapshot = snap;
    if (r->off != r->len)
        return CS_ECORRUPT; /* trailing bytes */
    return 0;
}

int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m)
{
    memset(m, 0, sizeof(*m));
    if (len < RAFT_FRAME_HEADER_BYTES || len > RAFT_FRAME_BYTES_MAX)
        return CS_ECORRUPT;
    struct rbuf h = {.p = buf, .len = RAFT_FRAME_HEADER_BYTES};
    uint32_t magic = r_u32(&h);
    uint8_t version = r_u8(&h), type = r_u8(&h);
    uint16_t flags = r_u8(&h);
    flags |= (uint16_t)(r_u8(&h) << 8);
    uint32_t body = r_u32(&h), reserved = r_u32(&h);
    uint64_t sum = r_u64(&h);
    cs_assert(!h.bad);
    if (magic != RAFT_WIRE_MAGIC || version != RAFT_WIRE_VERSION || reserved != 0)
        return CS_ECORRUPT;
    if (type < RAFT_MSG_APP || type >= RAFT_MSG_TYPE_END)
        return CS_ECORRUPT;
    if ((flags & ~(FLAG_REJECT | FLAG_SNAPSHOT)) != 0)
        return CS_ECORRUPT;
    if ((size_t)body != len - RAFT_FRAME_HEADER_BYTES)
        return CS_ECORRUPT;
    uint64_t seed = XXH3_64bits(buf, 16);
    if (XXH3_64bits_withSeed(buf + RAFT_FRAME_HEADER_BYTES, body, seed) != sum)
        return CS_ECORRUPT;
    m->type = type;
    m->reject = flags & FLAG_REJECT;
    struct rbuf r = {.p = buf + RAFT_FRAME_HEADER_BYTES, .len = body};
    int rc = decode_body(&r, m, flags);
    if (rc) {
        raft_msg_release(m);
        memset(m, 0, sizeof(*m));
    }
    return rc;
}

void raft_msg_release(struct raft_msg *m)
{
    free((void *)m->entries);
    m->entries = NULL;
    m->entries_n = 0;
}

const char *raft_msg_type_name(uint8_t type)
{
    static const char *const names[RAFT_MSG_TYPE_END] = {
        [RAFT_MSG_APP] = "App",
        [RAFT_MSG_APP_RESP] = "AppResp",
        [RAFT_MSG_VOTE] = "Vote",
        [RAFT_MSG_VOTE_RESP] = "VoteResp",
        [RAFT_MSG_PREVOTE] = "PreVote",
        [RAFT_MSG_PREVOTE_RESP] = "PreVoteResp",
        [RAFT_MSG_HEARTBEAT] = "Heartbeat",
        [RAFT_MSG_HEARTBEAT_RESP] = "HeartbeatResp",
        [RAFT_MSG_SNAP] = "Snap",
        [RAFT_MSG_TIMEOUT_NOW] = "TimeoutNow",
        [RAFT_MSG_READ_INDEX] = "ReadIndex",
        [RAFT_MSG_READ_INDEX_RESP] = "ReadIndexResp",
        [RAFT_MSG_SNAP_RESP] = "SnapResp",
    };
    if (type >= RAFT_MSG_TYPE_END || !names[type])
        return "?";
    return names[type];
}
