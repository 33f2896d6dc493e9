/* Copy-on-write B+ tree: the in-memory index of one collection on one shard.
 *
 * NODE LAYOUT. Every node is one NODE_BYTES (4 KiB) allocation:
 *
 *   offset  size         field
 *   0       4            refs       references: parents, the tree root pointer, snapshots
 *   4       2            count      slots in use
 *   6       1            level      0 = leaf; a child's level is its parent's minus one
 *   7       1            pfx_len    bytes of pfx that every key of the node starts with
 *   8       2            heap_off   start of the entry heap, which grows down from NODE_BYTES
 *   10      2            dead_bytes heap bytes no slot points to (reclaimed by compaction)
 *   16      16           pfx        the node's common key prefix (at most NODE_PFX_MAX bytes)
 *   32      8 * count    slot[]     {prefix u32, off u16, klen u16}, in key order
 *   ...                  free space
 *   heap_off ..4096      entries    packed, in any order
 *
 * slot.prefix holds key bytes [pfx_len, pfx_len + 4) big-endian, zero padded, so that comparing
 * prefixes as integers is memcmp order. A search first compares the key with pfx (in the header
 * line: a key outside it is below or above the whole node), then binary-searches the slot array
 * (8 slots per cache line) and touches a key only when prefixes tie: keys with long common
 * starts (counters, name spaces) still compare on bytes that differ. Entries are the key
 * followed by a body:
 *   leaf:     key, vtag u16, then (when vtag has bit VTAG_EXPIRY = 0x8000) the record's expiry
 *             (u64 Unix milliseconds, never 0, host order), then the value: the low 15 bits of
 *             vtag are its length and its bytes follow inline (<= VALUE_INLINE_MAX = 256), or
 *             they are VTAG_BLOB (0x7fff) and an 8-byte pointer to a refcounted blob {refs, len,
 *             data} follows. A record without an expiry spends nothing on it. The tree stores the
 *             expiry and hands it back (btree_get_exp, btree_cursor_expiry); it never reads a
 *             clock: hiding expired records is the readers' part (shards/shard.h, shard_expired).
 *   internal: key, 8-byte child pointer. Slot 0 has no key (klen 0): child i holds the keys k
 *             with key[i] <= k < key[i + 1]. Leaf-split separators are suffix-truncated (the
 *             shortest prefix of the right node's first key above the left node's last key).
 *
 * COPY-ON-WRITE. A node (or blob) with refs > 1 is shared and never changes. A writer first
 * descends read-only, then walks the path top-down and copies each shared node (the copy takes
 * a reference on every child or blob; the original drops the reference its parent held), so
 * that it only modifies nodes with refs == 1. A sibling touched by rebalancing is unshared the
 * same way. A snapshot is a reference on the root, so everything it reaches stays intact.
 * Freeing (snapshot release, restore, destroy) drops references iteratively with an explicit
 * DFS stack of at most BTREE_DEPTH_MAX frames; no recursion anywhere.
 *
 * ERRORS. Before changing anything a write reserves the worst case of nodes it may need
 * (3 * height + 2: one path copy, one sibling copy and one split per level, and a new root) on
 * the tree's spare list, and allocates the value blob; only these can fail (-ENOMEM), so a
 * failed write leaves the tree unchanged. Spare nodes are counted in t->bytes. A write that
 * hands back the old value (btree_put_old, btree_del_old: the undo log's one descent) calls its
 * callback after those, at the leaf it found and before the path is unshared; the callback's
 * error is the last way the write can fail, and a snapshot the callback takes is honoured by
 * the path copy that follows (the reservation already counts a copy of every node on the path).
 *
 * INVARIANTS (all verified by btree_check): keys strictly increasing within a node and across
 * leaves; separators bound their subtrees; all leaves at level 0 and every child one level
 * below its parent; a non-root leaf holds >= 1 record, every internal node >= 2 children; an
 * empty tree has no root; every key starts with its node's pfx and slot prefixes are current;
 * slots + live entries + dead_bytes account for the node exactly and entries do not overlap;
 * refs >= 1; t->count records; without live snapshots every refs is 1
 * and t->bytes equals the nodes, spares and blobs exactly. There is no minimum fill in bytes:
 * inserts split a full node in the middle, but at the insertion point for sequential loads (so a
 * bulk load leaves full leaves), and before splitting a leaf they move records into a sibling with
 * room (keeps random-insert fill high). Deletes merge a node that falls under a quarter full with a
 * sibling when both fit in one node, or else rebalance the two.
 *
 * COSTS. get: height binary searches (height 3 at 1M small records). put/del: the same descent,
 * a slot memmove, and on overflow or underflow a rebuild of one or two nodes per level (copying
 * <= 8 KiB); copies of shared nodes while snapshots are alive. Snapshot take: O(1); release:
 * O(nodes freed). Memory per record: 8 (slot) + key + 2 + value (inline) at the leaf fill
 * factor (plus 8 for a record with an expiry); large values cost their blob, shared across copies.
 * Measured at 1M records of 16-byte keys and 100-byte values (116 raw bytes): 157 bytes per record
 * inserted in random order, 130 in key order, spares and internal nodes included. Stack: a write's
 * slow path (split, merge) uses about 32 KiB of stack for its scratch copies; nothing is allocated
 * besides nodes and blobs. Keys passed to a write must not point into the tree's own unshared nodes
 * (views from btree_get); views from a cursor over a held snapshot are fine. */
#include "btree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cstore.h"

#define NODE_BYTES 4096u
#define NODE_HDR_BYTES 32u
#define NODE_PFX_MAX 16u /* bytes of the common key prefix a node header holds */
#define NODE_CAP_BYTES (NODE_BYTES - NODE_HDR_BYTES) /* slots + entries */
#define SLOT_BYTES 8u
#define CHILD_BYTES 8u
#define VTAG_BYTES 2u
#define VALUE_INLINE_MAX 256u
#define VTAG_BLOB 0x7fffu       /* value bits of vtag: the value is a blob */
#define VTAG_EXPIRY 0x8000u     /* vtag flag: an expiry follows vtag */
#define VTAG_VALUE_MASK 0x7fffu /* vtag bits that give the value's length (or VTAG_BLOB) */
#define EXPIRY_BYTES 8u
#define UNDERFLOW_BYTES (NODE_CAP_BYTES / 4)     /* deletes rebalance nodes below this */
#define REDIST_SLACK_BYTES (NODE_CAP_BYTES / 16) /* room left in each node after moving */
#define LEAF_ENTRY_MIN_BYTES (SLOT_BYTES + 1 + VTAG_BYTES)
#define SEQ_ENTRIES_MAX (2 * (NODE_CAP_BYTES / LEAF_ENTRY_MIN_BYTES) + 2)

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "key_prefix assumes little endian");

struct btree_slot {
    uint32_t prefix; /* first 4 key bytes, big-endian, zero padded */
    uint16_t off;    /* entry offset from the node start */
    uint16_t klen;   /* key bytes; 0 only in slot 0 of an internal node */
};

struct btree_node {
    uint32_t refs;             /* references held on this node */
    uint16_t count;            /* slots in use */
    uint8_t level;             /* 0 = leaf */
    uint8_t pfx_len;           /* every key of the node starts with pfx[0, pfx_len) */
    uint16_t heap_off;         /* lowest entry byte; entries fill [heap_off, NODE_BYTES) */
    uint16_t dead_bytes;       /* heap bytes of removed or replaced entries */
    uint32_t unused32;         /* zero */
    uint8_t pfx[NODE_PFX_MAX]; /* common prefix of the node's keys (slot 0 of internal: none) */
    struct btree_slot slot[];
};

struct btree_blob {
    uint32_t refs; /* leaves pointing here */
    uint32_t len;  /* value bytes */
    uint8_t data[];
};

_Static_assert(sizeof(struct btree_slot) == SLOT_BYTES, "slot size");
_Static_assert(sizeof(struct btree_node) == NODE_HDR_BYTES, "node header size");
_Static_assert(CS_KEY_MAX + VTAG_BYTES + EXPIRY_BYTES + VALUE_INLINE_MAX + SLOT_BYTES <=
                   NODE_CAP_BYTES / 3,
               "a node holds at least three of the largest entries");

/* Root-to-leaf path of a write: node[d] and the slot taken there. */
struct btree_path {
    struct btree_node *node[BTREE_DEPTH_MAX];
    uint16_t index[BTREE_DEPTH_MAX];
    int depth;
};

enum mod_kind { MOD_INSERT, MOD_REPLACE, MOD_REMOVE };

/* One change to one node: insert an entry at pos, replace the one at pos, or remove it. */
struct mod {
    enum mod_kind kind;
    unsigned pos;
    const uint8_t *key;
    size_t klen;
    const uint8_t *body;
    size_t body_len;
};

enum seq_hint { HINT_NONE, HINT_ASCENDING, HINT_DESCENDING };

/* ---- Entries and keys ---------------------------------------------------------------------- */

/* Key bytes [skip, skip + 4) big-endian, zero padded: integer order is memcmp order. */
static inline uint32_t key_prefix(const uint8_t *key, size_t klen, size_t skip)
{
    if (cs_likely(klen >= skip + 4)) {
        uint32_t v;
        memcpy(&v, key + skip, 4);
        return __builtin_bswap32(v);
    }
    uint32_t v = 0;
    for (size_t i = skip; i < klen; i++)
        v |= (uint32_t)key[i] << (24 - 8 * (i - skip));
    return v;
}

static size_t key_common_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t common = 0, max = cs_min_size(alen, blen);
    while (common < max && a[common] == b[common])
        common++;
    return common;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int r = memcmp(a, b, cs_min_size(alen, blen));
    if (r)
        return r;
    return (alen > blen) - (alen < blen);
}

static inline uint8_t *node_entry(const struct btree_node *n, unsigned i)
{
    return (uint8_t *)n + n->slot[i].off;
}

/* Compare key with the node's common prefix: < 0 (> 0) when key is below (above) every key of
 * the node, 0 when key starts with the prefix. */
static inline int node_pfx_cmp(const struct btree_node *n, const uint8_t *key, size_t klen)
{
    size_t len = cs_min_size(klen, n->pfx_len);
    for (size_t i = 0; i < len; i++) /* a few bytes: cheaper inline than a memcmp call */
        if (key[i] != n->pfx[i])
            return key[i] < n->pfx[i] ? -1 : 1;
    return klen < n->pfx_len ? -1 : 0;
}

/* Compare key, which starts with the node's prefix, against the key of slot i; prefix is
 * key_prefix(key, klen, n->pfx_len). */
static inline int node_key_cmp(const struct btree_node *n, unsigned i, const uint8_t *key,
                               size_t klen, uint32_t prefix)
{
    const struct btree_slot *s = &n->slot[i];
    if (prefix != s->prefix)
        return prefix < s->prefix ? -1 : 1;
    size_t common = klen < s->klen ? klen : s->klen, skip = n->pfx_len + 4u;
    if (common > skip) {
        int r = memcmp(key + skip, (const uint8_t *)n + s->off + skip, common - skip);
        if (r)
            return r;
    }
    return (klen > s->klen) - (klen < s->klen);
}

static inline struct btree_node *node_child(const struct btree_node *n, unsigned i)
{
    struct btree_node *c;
    memcpy(&c, node_entry(n, i) + n->slot[i].klen, sizeof(c));
    return c;
}

/* Start loading a child's header and first slots (a leaf's whole slot array at typical fill)
 * while the parent's search finishes: the misses of one level overlap instead of queueing. */
static inline void node_prefetch(const struct btree_node *n)
{
    const char *p = (const char *)n;
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(p + 128);
    __builtin_prefetch(p + 192);
}

static inline void node_set_child(struct btree_node *n, unsigned i, struct btree_node *c)
{
    memcpy(node_entry(n, i) + n->slot[i].klen, &c, sizeof(c));
}

static inline unsigned leaf_vtag(const struct btree_node *n, unsigned i)
{
    uint16_t v;
    memcpy(&v, node_entry(n, i) + n->slot[i].klen, sizeof(v));
    return v;
}

/* Bytes between vtag and the value (the expiry, when vtag says there is one). */
static inline size_t vtag_expiry_bytes(unsigned vtag)
{
    return (vtag & VTAG_EXPIRY) ? EXPIRY_BYTES : 0;
}

/* Where the value (inline bytes or blob pointer) of leaf slot i starts. */
static inline uint8_t *leaf_value_at(const struct btree_node *n, unsigned i, unsigned vtag)
{
    return node_entry(n, i) + n->slot[i].klen + VTAG_BYTES + vtag_expiry_bytes(vtag);
}

static struct btree_blob *leaf_blob(const struct btree_node *n, unsigned i)
{
    unsigned vtag = leaf_vtag(n, i);
    if ((vtag & VTAG_VALUE_MASK) != VTAG_BLOB)
        return NULL;
    struct btree_blob *b;
    memcpy(&b, leaf_value_at(n, i, vtag), sizeof(b));
    return b;
}

static void leaf_value(const struct btree_node *n, unsigned i, const void **val, size_t *vlen)
{
    unsigned vtag = leaf_vtag(n, i);
    if ((vtag & VTAG_VALUE_MASK) == VTAG_BLOB) {
        struct btree_blob *b = leaf_blob(n, i);
        *val = b->data;
        *vlen = b->len;
        return;
    }
    *val = leaf_value_at(n, i, vtag);
    *vlen = vtag & VTAG_VALUE_MASK;
}

/* The expiry of leaf slot i, 0 when it has none. */
static inline uint64_t leaf_expiry(const struct btree_node *n, unsigned i)
{
    unsigned vtag = leaf_vtag(n, i);
    if (cs_likely(!(vtag & VTAG_EXPIRY)))
        return 0;
    uint64_t exp;
    memcpy(&exp, node_entry(n, i) + n->slot[i].klen + VTAG_BYTES, sizeof(exp));
    return exp;
}

static inline size_t body_bytes(const struct btree_node *n, unsigned i)
{
    if (n->level > 0)
        return CHILD_BYTES;
    unsigned vtag = leaf_vtag(n, i), v = vtag & VTAG_VALUE_MASK;
    return VTAG_BYTES + vtag_expiry_bytes(vtag) +
           (v == VTAG_BLOB ? sizeof(struct btree_blob *) : v);
}

static inline size_t entry_heap_bytes(const struct btree_node *n, unsigned i)
{
    return n->slot[i].klen + body_bytes(n, i);
}

static inline size_t node_used_bytes(const struct btree_node *n)
{
    return (size_t)n->count * SLOT_BYTES + (NODE_BYTES - n->heap_off - n->dead_bytes);
}

static inline size_t node_free_contig_bytes(const struct btree_node *n)
{
    return n->heap_off - NODE_HDR_BYTES - (size_t)n->count * SLOT_BYTES;
}

static bool node_underflows(const struct btree_node *n)
{
    unsigned count_min = n->level > 0 ? 2 : 1;
    return n->count < count_min || node_used_bytes(n) < UNDERFLOW_BYTES;
}

/* First slot whose key is >= key; *found says whether it is equal. */
static inline unsigned leaf_lower_bound(const struct btree_node *n, const uint8_t *key, size_t klen,
                                        bool *found)
{
    int pc = node_pfx_cmp(n, key, klen);
    *found = false;
    if (pc != 0)
        return pc < 0 ? 0 : n->count;
    uint32_t prefix = key_prefix(key, klen, n->pfx_len);
    unsigned lo = 0, hi = n->count;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (node_key_cmp(n, mid, key, klen, prefix) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < n->count && node_key_cmp(n, lo, key, klen, prefix) == 0;
    return lo;
}

/* Child slot whose subtree holds key: the last slot i >= 1 with key[i] <= key, else 0. */
static inline unsigned inner_child_index(const struct btree_node *n, const uint8_t *key,
                                         size_t klen)
{
    int pc = node_pfx_cmp(n, key, klen);
    if (pc != 0)
        return pc < 0 ? 0 : n->count - 1u;
    uint32_t prefix = key_prefix(key, klen, n->pfx_len);
    unsigned lo = 1, hi = n->count;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (node_key_cmp(n, mid, key, klen, prefix) >= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* ---- Allocation ---------------------------------------------------------------------------- */

/* Bytes jemalloc really hands out for a request (its size classes: 4 per doubling). */
static size_t alloc_class_bytes(size_t size)
{
    if (size <= 16)
        return 16;
    unsigned lg = 63u - (unsigned)__builtin_clzll(size - 1);
    size_t step = (size_t)1 << (lg < 6 ? 4 : lg - 2);
    return (size + step - 1) & ~(step - 1);
}

/* All memory of the tree comes from here; t->fail_alloc_in lets tests make it fail. */
static void *tree_alloc(struct btree *t, size_t size)
{
    if (cs_unlikely(t->fail_alloc_in > 0) && --t->fail_alloc_in == 0)
        return NULL;
    return cs_mem_alloc(t->arena, size);
}

static struct btree_blob *blob_alloc(struct btree *t, const void *val, size_t vlen)
{
    struct btree_blob *b = tree_alloc(t, sizeof(*b) + vlen);
    if (!b)
        return NULL;
    b->refs = 1;
    b->len = (uint32_t)vlen;
    memcpy(b->data, val, vlen);
    t->bytes += alloc_class_bytes(sizeof(*b) + vlen);
    return b;
}

static void blob_unref(struct btree *t, struct btree_blob *b)
{
    cs_assert(b->refs >= 1);
    if (--b->refs > 0)
        return;
    size_t bytes = alloc_class_bytes(sizeof(*b) + b->len);
    cs_assert(t->bytes >= bytes);
    t->bytes -= bytes;
    cs_mem_free(b);
}

static void node_free_mem(struct btree *t, struct btree_node *n)
{
    cs_assert(t->bytes >= NODE_BYTES);
    t->bytes -= NODE_BYTES;
    cs_mem_free(n);
}

static void spare_push(struct btree *t, struct btree_node *n)
{
    memcpy(n, &t->spare, sizeof(t->spare));
    t->spare = n;
    t->spare_count++;
}

static struct btree_node *spare_take(struct btree *t)
{
    cs_assert(t->spare_count > 0);
    struct btree_node *n = t->spare;
    memcpy(&t->spare, n, sizeof(t->spare));
    t->spare_count--;
    memset(n, 0, NODE_HDR_BYTES);
    n->refs = 1;
    n->heap_off = NODE_BYTES;
    return n;
}

static unsigned spares_needed(unsigned height)
{
    return 3 * height + 2;
}

/* Keep a node freed by a write for the next one, up to what a write may need. */
static void spare_recycle(struct btree *t, struct btree_node *n)
{
    unsigned height = t->root ? t->root->level + 1u : 1u;
    if (t->spare_count < spares_needed(height))
        spare_push(t, n);
    else
        node_free_mem(t, n);
}

CS_MUST_CHECK static int spares_reserve(struct btree *t, unsigned need)
{
    while (t->spare_count < need) {
        struct btree_node *n = tree_alloc(t, NODE_BYTES);
        if (!n)
            return -ENOMEM;
        t->bytes += NODE_BYTES;
        spare_push(t, n);
    }
    return 0;
}

/* Drop one reference on n; free what nobody holds any more, depth first, without recursion. */
static void node_unref(struct btree *t, struct btree_node *root)
{
    struct {
        struct btree_node *n;
        unsigned next;
    } stack[BTREE_DEPTH_MAX];
    cs_assert(root->refs >= 1);
    if (--root->refs > 0)
        return;
    int top = 0;
    stack[0].n = root;
    stack[0].next = 0;
    while (top >= 0) {
        struct btree_node *n = stack[top].n;
        if (n->level == 0 || stack[top].next == n->count) {
            for (unsigned i = 0; n->level == 0 && i < n->count; i++) {
                struct btree_blob *b = leaf_blob(n, i);
                if (b)
                    blob_unref(t, b);
            }
            node_free_mem(t, n);
            top--;
            continue;
        }
        struct btree_node *c = node_child(n, stack[top].next++);
        cs_assert(c->refs >= 1);
        cs_assert(c->level + 1 == n->level);
        if (--c->refs == 0) {
            cs_assert(top + 1 < BTREE_DEPTH_MAX);
            top++;
            stack[top].n = c;
            stack[top].next = 0;
        }
    }
}

/* ---- Node edits (on unshared nodes) -------------------------------------------------------- */

static void node_reset(struct btree_node *n)
{
    n->pfx_len = 0;
    n->count = 0;
    n->heap_off = NODE_BYTES;
    n->dead_bytes = 0;
}

static void node_append(struct btree_node *n, const uint8_t *key, size_t klen, const uint8_t *body,
                        size_t body_len)
{
    size_t len = klen + body_len;
    cs_assert(node_free_contig_bytes(n) >= len + SLOT_BYTES);
    n->heap_off = (uint16_t)(n->heap_off - len);
    uint8_t *p = (uint8_t *)n + n->heap_off;
    memcpy(p, key, klen);
    memcpy(p + klen, body, body_len);
    struct btree_slot *s = &n->slot[n->count++];
    cs_debug_assert(klen == 0 || node_pfx_cmp(n, key, klen) == 0);
    s->prefix = key_prefix(key, klen, n->pfx_len);
    s->off = n->heap_off;
    s->klen = (uint16_t)klen;
}

/* Rewrite the heap without dead bytes. */
static void node_compact(struct btree_node *n)
{
    _Alignas(16) uint8_t copy[NODE_BYTES];
    memcpy(copy, n, NODE_BYTES);
    const struct btree_node *src = (const struct btree_node *)copy;
    n->heap_off = NODE_BYTES;
    n->dead_bytes = 0;
    for (unsigned i = 0; i < n->count; i++) {
        size_t len = entry_heap_bytes(src, i);
        n->heap_off = (uint16_t)(n->heap_off - len);
        memcpy((uint8_t *)n + n->heap_off, node_entry(src, i), len);
        n->slot[i].off = n->heap_off;
    }
}

static void node_remove(struct btree_node *n, unsigned pos)
{
    cs_assert(pos < n->count);
    n->dead_bytes = (uint16_t)(n->dead_bytes + entry_heap_bytes(n, pos));
    memmove(&n->slot[pos], &n->slot[pos + 1], (n->count - pos - 1) * sizeof(n->slot[0]));
    n->count--;
    if (n->count == 0)
        node_reset(n);
}

/* Make the node's common prefix one that key (klen > 0) starts with too: shorten it and
 * recompute the slot prefixes (O(count); only when a key outside the prefix comes in). */
static void node_pfx_admit(struct btree_node *n, const uint8_t *key, size_t klen)
{
    if (klen == 0 || node_pfx_cmp(n, key, klen) == 0)
        return;
    n->pfx_len = (uint8_t)key_common_bytes(key, klen, n->pfx, n->pfx_len);
    for (unsigned i = 0; i < n->count; i++)
        n->slot[i].prefix = key_prefix(node_entry(n, i), n->slot[i].klen, n->pfx_len);
}

/* Insert at pos if the entry fits (compacting if needed); false leaves n unchanged. */
static bool node_insert(struct btree_node *n, unsigned pos, const uint8_t *key, size_t klen,
                        const uint8_t *body, size_t body_len)
{
    size_t len = klen + body_len;
    cs_assert(pos <= n->count);
    if (node_free_contig_bytes(n) < len + SLOT_BYTES) {
        if (node_free_contig_bytes(n) + n->dead_bytes < len + SLOT_BYTES)
            return false;
        node_compact(n);
    }
    node_pfx_admit(n, key, klen);
    memmove(&n->slot[pos + 1], &n->slot[pos], (n->count - pos) * sizeof(n->slot[0]));
    n->heap_off = (uint16_t)(n->heap_off - len);
    uint8_t *p = (uint8_t *)n + n->heap_off;
    memcpy(p, key, klen);
    memcpy(p + klen, body, body_len);
    n->slot[pos].prefix = key_prefix(key, klen, n->pfx_len);
    n->slot[pos].off = n->heap_off;
    n->slot[pos].klen = (uint16_t)klen;
    n->count++;
    return true;
}

/* Replace the entry at pos if the new one fits; false leaves n unchanged. */
static bool node_replace(struct btree_node *n, unsigned pos, const uint8_t *key, size_t klen,
                         const uint8_t *body, size_t body_len)
{
    size_t old_len = entry_heap_bytes(n, pos), len = klen + body_len;
    if (len <= old_len) { /* overwrite in place */
        node_pfx_admit(n, key, klen);
        uint8_t *p = node_entry(n, pos);
        memmove(p, key, klen);
        memcpy(p + klen, body, body_len);
        n->dead_bytes = (uint16_t)(n->dead_bytes + old_len - len);
        n->slot[pos].prefix = key_prefix(key, klen, n->pfx_len);
        n->slot[pos].klen = (uint16_t)klen;
        return true;
    }
    if (node_free_contig_bytes(n) + n->dead_bytes + old_len < len)
        return false;
    node_remove(n, pos);
    bool ok = node_insert(n, pos, key, klen, body, body_len);
    cs_assert(ok);
    return true;
}

static bool node_apply(struct btree_node *n, const struct mod *m)
{
    switch (m->kind) {
    case MOD_INSERT:
        return node_insert(n, m->pos, m->key, m->klen, m->body, m->body_len);
    case MOD_REPLACE:
        return node_replace(n, m->pos, m->key, m->klen, m->body, m->body_len);
    case MOD_REMOVE:
        node_remove(n, m->pos);
        return true;
    }
    cs_assert(!"bad mod kind");
    return false;
}

/* Copy a shared node into a spare: the copy takes references on what the node points to, and
 * the original loses the reference of the parent that now points to the copy. */
static struct btree_node *node_copy(struct btree *t, struct btree_node *src)
{
    cs_assert(src->refs > 1);
    struct btree_node *dst = spare_take(t);
    memcpy(dst, src, NODE_HDR_BYTES + (size_t)src->count * SLOT_BYTES);
    memcpy((uint8_t *)dst + src->heap_off, (uint8_t *)src + src->heap_off,
           NODE_BYTES - src->heap_off);
    dst->refs = 1;
    for (unsigned i = 0; i < src->count; i++) {
        if (src->level > 0) {
            node_child(src, i)->refs++;
        } else {
            struct btree_blob *b = leaf_blob(src, i);
            if (b)
                b->refs++;
        }
    }
    src->refs--;
    return dst;
}

static struct btree_node *unshare_child(struct btree *t, struct btree_node *parent, unsigned i)
{
    struct btree_node *c = node_child(parent, i);
    if (c->refs == 1)
        return c;
    c = node_copy(t, c);
    node_set_child(parent, i, c);
    return c;
}

static void path_unshare(struct btree *t, struct btree_path *p)
{
    if (t->root->refs > 1)
        t->root = node_copy(t, t->root);
    p->node[0] = t->root;
    for (int d = 1; d < p->depth; d++)
        p->node[d] = unshare_child(t, p->node[d - 1], p->index[d - 1]);
}

/* Read-only descent; the leaf's index is the lower bound of key. */
static bool path_descend(struct btree_node *root, const uint8_t *key, size_t klen,
                         struct btree_path *p)
{
    struct btree_node *n = root;
    for (int d = 0;; d++) {
        cs_assert(d < BTREE_DEPTH_MAX);
        p->node[d] = n;
        if (n->level == 0) {
            bool found;
            p->index[d] = (uint16_t)leaf_lower_bound(n, key, klen, &found);
            p->depth = d + 1;
            return found;
        }
        unsigned i = inner_child_index(n, key, klen);
        p->index[d] = (uint16_t)i;
        n = node_child(n, i);
        node_prefetch(n);
    }
}

/* ---- Rebuilding nodes: splits, merges, redistribution --------------------------------------- */

/* An entry of a sequence being redistributed; points into scratch copies or mod buffers. */
struct seq_ent {
    const uint8_t *key;
    const uint8_t *body;
    uint16_t klen;
    uint16_t body_len;
};

struct seq {
    unsigned count;
    size_t bytes; /* sum of slot + key + body bytes */
    struct seq_ent e[SEQ_ENTRIES_MAX];
};

/* State of one write's slow path: per-level buffers alternate by level parity. */
struct fix {
    struct btree *t;
    struct btree_path *p;
    enum seq_hint hint;
    bool shrink; /* a delete: rebalance nodes that underflow */
    struct mod mod[2];
    uint8_t key_buf[2][CS_KEY_MAX];
    _Alignas(8) uint8_t body_buf[2][CHILD_BYTES];
    _Alignas(16) uint8_t scratch[2][NODE_BYTES];
    struct seq seq;
};

static size_t seq_ent_bytes(const struct seq_ent *e)
{
    return SLOT_BYTES + e->klen + e->body_len;
}

static void seq_insert(struct seq *s, unsigned pos, const struct seq_ent *e)
{
    cs_assert(s->count < SEQ_ENTRIES_MAX);
    cs_assert(pos <= s->count);
    memmove(&s->e[pos + 1], &s->e[pos], (s->count - pos) * sizeof(s->e[0]));
    s->e[pos] = *e;
    s->count++;
    s->bytes += seq_ent_bytes(e);
}

/* Append (or prepend) the entries of n, which must stay put while s is used. */
static void seq_add_node(struct seq *s, const struct btree_node *n, bool prepend)
{
    cs_assert(s->count + n->count <= SEQ_ENTRIES_MAX);
    unsigned base = prepend ? 0 : s->count;
    if (prepend)
        memmove(&s->e[n->count], &s->e[0], s->count * sizeof(s->e[0]));
    for (unsigned i = 0; i < n->count; i++) {
        struct seq_ent *e = &s->e[base + i];
        e->key = node_entry(n, i);
        e->klen = n->slot[i].klen;
        e->body = e->key + e->klen;
        e->body_len = (uint16_t)body_bytes(n, i);
        s->bytes += seq_ent_bytes(e);
    }
    s->count += n->count;
}

static void seq_apply(struct seq *s, const struct mod *m)
{
    struct seq_ent e = {m->key, m->body, (uint16_t)m->klen, (uint16_t)m->body_len};
    cs_assert(m->kind != MOD_REMOVE);
    if (m->kind == MOD_INSERT) {
        seq_insert(s, m->pos, &e);
        return;
    }
    cs_assert(m->pos < s->count);
    s->bytes = s->bytes - seq_ent_bytes(&s->e[m->pos]) + seq_ent_bytes(&e);
    s->e[m->pos] = e;
}

/* Bytes of a node built from e[a, b): an internal node drops the key of its first entry. */
static size_t seq_range_bytes(const struct seq *s, unsigned a, unsigned b, bool internal)
{
    size_t bytes = 0;
    for (unsigned i = a; i < b; i++)
        bytes += seq_ent_bytes(&s->e[i]);
    return bytes - (internal ? s->e[a].klen : 0);
}

/* The k in [k_min, k_max] that splits s into the two most even nodes that both fit, or 0 if
 * there is none (possible only when redistributing two nearly full nodes of large entries). */
static unsigned seq_split_balanced(const struct seq *s, bool internal, unsigned k_min,
                                   unsigned k_max)
{
    size_t left = 0, total = seq_range_bytes(s, 0, s->count, false);
    size_t best_diff = SIZE_MAX;
    unsigned best = 0;
    for (unsigned i = 0; i < k_min; i++)
        left += seq_ent_bytes(&s->e[i]);
    for (unsigned k = k_min; k <= k_max; k++) {
        size_t right = total - left - (internal ? s->e[k].klen : 0);
        size_t l = left - (internal ? s->e[0].klen : 0);
        size_t diff = l > right ? l - right : right - l;
        if (l <= NODE_CAP_BYTES && right <= NODE_CAP_BYTES && diff < best_diff) {
            best_diff = diff;
            best = k;
        }
        left += seq_ent_bytes(&s->e[k]);
    }
    return best;
}

static void node_build(struct btree_node *n, const struct seq *s, unsigned a, unsigned b)
{
    bool internal = n->level > 0;
    node_reset(n);
    unsigned first = internal ? a + 1 : a; /* keys sorted: first and last share what all do */
    if (first + 1 < b) {
        const struct seq_ent *lo = &s->e[first], *hi = &s->e[b - 1];
        size_t common = key_common_bytes(lo->key, lo->klen, hi->key, hi->klen);
        n->pfx_len = (uint8_t)cs_min_size(common, NODE_PFX_MAX);
        memcpy(n->pfx, lo->key, n->pfx_len);
    }
    for (unsigned i = a; i < b; i++) {
        const struct seq_ent *e = &s->e[i];
        size_t klen = internal && i == a ? 0 : e->klen;
        node_append(n, e->key, klen, e->body, e->body_len);
    }
}

/* The separator for a split between e[k - 1] and e[k] into out; returns its length. A leaf
 * separator is the shortest prefix of e[k] above e[k - 1]; an internal one is e[k]'s key. */
static size_t seq_separator(const struct seq *s, unsigned k, bool internal, uint8_t *out)
{
    const struct seq_ent *r = &s->e[k];
    size_t len = r->klen;
    if (!internal) {
        const struct seq_ent *l = &s->e[k - 1];
        size_t common = 0, max = cs_min_size(l->klen, r->klen);
        while (common < max && l->key[common] == r->key[common])
            common++;
        cs_assert(common < r->klen);
        len = common + 1;
    }
    cs_assert(len >= 1 && len <= CS_KEY_MAX);
    memcpy(out, r->key, len);
    return len;
}

/* Set pm (the parent's change) to the separator of e[k] for child `child` at pos. */
static void parent_mod_set(struct fix *f, int d, enum mod_kind kind, unsigned pos, unsigned k,
                           bool internal, struct btree_node *child)
{
    int b = (d - 1) & 1;
    struct mod *pm = &f->mod[b];
    pm->kind = kind;
    pm->pos = pos;
    pm->klen = seq_separator(&f->seq, k, internal, f->key_buf[b]);
    pm->key = f->key_buf[b];
    memcpy(f->body_buf[b], &child, sizeof(child));
    pm->body = f->body_buf[b];
    pm->body_len = CHILD_BYTES;
}

/* Load node n (copied to scratch) and change m into f->seq. */
static void fix_load(struct fix *f, const struct btree_node *n, const struct mod *m)
{
    memcpy(f->scratch[0], n, NODE_BYTES);
    f->seq.count = 0;
    f->seq.bytes = 0;
    seq_add_node(&f->seq, (const struct btree_node *)f->scratch[0], false);
    seq_apply(&f->seq, m);
}

/* Leaf overflow: move records into the emptier sibling if both then keep some room. */
static bool fix_redistribute(struct fix *f, int d)
{
    struct btree_node *parent = f->p->node[d - 1], *n = f->p->node[d];
    unsigned idx = f->p->index[d - 1], j = UINT32_MAX;
    size_t best = SIZE_MAX;
    if (idx > 0) {
        j = idx - 1;
        best = node_used_bytes(node_child(parent, j));
    }
    if (idx + 1u < parent->count && node_used_bytes(node_child(parent, idx + 1)) < best) {
        j = idx + 1;
        best = node_used_bytes(node_child(parent, j));
    }
    if (j == UINT32_MAX || f->seq.bytes + best > 2 * (NODE_CAP_BYTES - REDIST_SLACK_BYTES))
        return false;
    struct btree_node *s = unshare_child(f->t, parent, j);
    memcpy(f->scratch[1], s, NODE_BYTES);
    seq_add_node(&f->seq, (const struct btree_node *)f->scratch[1], j < idx);
    unsigned k = seq_split_balanced(&f->seq, false, 1, f->seq.count - 1);
    if (k == 0)
        return false; /* the caller splits instead; s was only unshared */
    struct btree_node *left = j < idx ? s : n, *right = j < idx ? n : s;
    node_build(left, &f->seq, 0, k);
    node_build(right, &f->seq, k, f->seq.count);
    parent_mod_set(f, d, MOD_REPLACE, j < idx ? idx : idx + 1, k, false, right);
    f->t->last_leaf = NULL;
    return true;
}

/* Where to split a leaf or an internal node that overflowed with change m. */
static unsigned fix_split_point(struct fix *f, const struct mod *m, bool internal)
{
    unsigned count = f->seq.count;
    if (!internal && m->kind == MOD_INSERT) {
        if (f->hint == HINT_ASCENDING && m->pos == count - 1)
            return count - 1;
        if (f->hint == HINT_DESCENDING && m->pos == 0)
            return 1;
    }
    unsigned k = internal ? seq_split_balanced(&f->seq, true, 2, count - 2)
                          : seq_split_balanced(&f->seq, false, 1, count - 1);
    cs_assert(k > 0);
    return k;
}

/* Split node d (its content with the change is in f->seq). Returns whether the parent
 * changes (false when a new root was made). */
static bool fix_split(struct fix *f, int d, const struct mod *m)
{
    struct btree *t = f->t;
    struct btree_node *n = f->p->node[d];
    bool internal = n->level > 0;
    unsigned k = fix_split_point(f, m, internal);
    struct btree_node *r = spare_take(t);
    r->level = n->level;
    node_build(n, &f->seq, 0, k);
    node_build(r, &f->seq, k, f->seq.count);
    t->last_leaf = NULL;
    if (!internal && f->hint != HINT_NONE) {
        t->last_leaf = f->hint == HINT_ASCENDING ? r : n;
        t->last_pos = 0;
    }
    if (d > 0) {
        parent_mod_set(f, d, MOD_INSERT, f->p->index[d - 1] + 1u, k, internal, r);
        return true;
    }
    uint8_t sep[CS_KEY_MAX];
    size_t sep_len = seq_separator(&f->seq, k, internal, sep);
    cs_assert(n->level + 1 < BTREE_DEPTH_MAX);
    struct btree_node *root = spare_take(t);
    root->level = (uint8_t)(n->level + 1);
    node_append(root, sep, 0, (const uint8_t *)&n, CHILD_BYTES);
    node_append(root, sep, sep_len, (const uint8_t *)&r, CHILD_BYTES);
    t->root = root;
    return false;
}

/* Node d underflowed after a delete: merge it with a sibling, or even the two out. */
static bool fix_underflow(struct fix *f, int d)
{
    struct btree_node *parent = f->p->node[d - 1], *n = f->p->node[d];
    bool internal = n->level > 0;
    unsigned idx = f->p->index[d - 1], j;
    cs_assert(parent->count >= 2);
    if (idx == 0)
        j = 1;
    else if (idx + 1u == parent->count)
        j = idx - 1;
    else
        j = node_used_bytes(node_child(parent, idx - 1)) <=
                    node_used_bytes(node_child(parent, idx + 1))
                ? idx - 1
                : idx + 1;
    unshare_child(f->t, parent, j);
    unsigned li = j < idx ? j : idx, ri = li + 1;
    struct btree_node *left = node_child(parent, li), *right = node_child(parent, ri);
    memcpy(f->scratch[0], left, NODE_BYTES);
    memcpy(f->scratch[1], right, NODE_BYTES);
    f->seq.count = 0;
    f->seq.bytes = 0;
    seq_add_node(&f->seq, (const struct btree_node *)f->scratch[0], false);
    unsigned first_right = f->seq.count;
    seq_add_node(&f->seq, (const struct btree_node *)f->scratch[1], false);
    if (internal) { /* the right node's first child gets the parent's separator as key */
        f->seq.e[first_right].key = node_entry(parent, ri);
        f->seq.e[first_right].klen = parent->slot[ri].klen;
        f->seq.bytes += parent->slot[ri].klen;
    }
    if (seq_range_bytes(&f->seq, 0, f->seq.count, internal) <= NODE_CAP_BYTES) {
        node_build(left, &f->seq, 0, f->seq.count);
        spare_recycle(f->t, right);
        struct mod *pm = &f->mod[(d - 1) & 1];
        pm->kind = MOD_REMOVE;
        pm->pos = ri;
        return true;
    }
    unsigned count = f->seq.count;
    unsigned k = internal ? seq_split_balanced(&f->seq, true, 2, count - 2)
                          : seq_split_balanced(&f->seq, false, 1, count - 1);
    cs_assert(k > 0);
    node_build(left, &f->seq, 0, k);
    node_build(right, &f->seq, k, count);
    parent_mod_set(f, d, MOD_REPLACE, ri, k, internal, right);
    return true;
}

/* The root after a change: drop an internal root with one child, or an empty leaf root. */
static void fix_root(struct btree *t)
{
    struct btree_node *n = t->root;
    if (n->level > 0 && n->count == 1) {
        t->root = node_child(n, 0);
        spare_recycle(t, n);
    } else if (n->level == 0 && n->count == 0) {
        t->root = NULL;
        spare_recycle(t, n);
    }
}

/* Slow path of a write: change m on node d did not fit (applied false), or node d underflowed;
 * fix level by level up to the root. */
__attribute__((noinline)) static void fix_slow(struct btree *t, struct btree_path *p,
                                               const struct mod *m, bool applied, bool shrink,
                                               enum seq_hint hint)
{
    struct fix f;
    f.t = t;
    f.p = p;
    f.hint = hint;
    f.shrink = shrink;
    for (int d = p->depth - 1; d >= 0; d--) {
        bool up;
        if (applied) {
            if (d == 0) {
                fix_root(t);
                return;
            }
            up = shrink && node_underflows(p->node[d]) && fix_underflow(&f, d);
        } else {
            fix_load(&f, p->node[d], m);
            bool internal = p->node[d]->level > 0;
            unsigned loaded = f.seq.count;
            up = !internal && d > 0 && (hint == HINT_NONE || m->kind != MOD_INSERT) &&
                 fix_redistribute(&f, d);
            if (!up) {
                if (f.seq.count != loaded) /* the sibling's entries were added */
                    fix_load(&f, p->node[d], m);
                up = fix_split(&f, d, m);
            }
        }
        if (!up)
            return;
        m = &f.mod[(d - 1) & 1];
        applied = node_apply(p->node[d - 1], m);
    }
}

/* Apply change m to the leaf of p, then restore the invariants. Cannot fail: spares are
 * reserved. */
static void tree_change(struct btree *t, struct btree_path *p, const struct mod *m, bool shrink,
                        enum seq_hint hint)
{
    struct btree_node *leaf = p->node[p->depth - 1];
    bool applied = node_apply(leaf, m);
    if (applied && p->depth == 1) {
        fix_root(t);
        return;
    }
    if (applied && !(shrink && node_underflows(leaf)))
        return;
    fix_slow(t, p, m, applied, shrink, hint);
}

/* ---- Public API ---------------------------------------------------------------------------- */

void btree_init(struct btree *t, unsigned arena)
{
    memset(t, 0, sizeof(*t));
    t->arena = arena;
}

void btree_destroy(struct btree *t)
{
    if (t->root)
        node_unref(t, t->root);
    t->root = NULL;
    t->count = 0;
    while (t->spare_count > 0)
        node_free_mem(t, spare_take(t));
    t->last_leaf = NULL;
}

/* Hand old what the leaf of a descent p holds at its slot (found) or that it holds nothing.
 * Before path_unshare: a shared leaf still holds the same record. */
static int leaf_hand_old(const struct btree_path *p, bool found, btree_old_fn old, void *arg)
{
    if (!found)
        return old(arg, false, NULL, 0, 0);
    cs_assert(p->depth >= 1);
    const void *val;
    size_t vlen;
    const struct btree_node *leaf = p->node[p->depth - 1];
    unsigned i = p->index[p->depth - 1];
    leaf_value(leaf, i, &val, &vlen);
    return old(arg, true, val, vlen, leaf_expiry(leaf, i));
}

static enum seq_hint insert_hint(const struct btree *t, const struct btree_node *leaf, unsigned pos)
{
    if (t->last_leaf != leaf)
        return HINT_NONE;
    if (pos == leaf->count && pos > 0 && t->last_pos == pos - 1)
        return HINT_ASCENDING;
    if (pos == 0 && t->last_pos == 0)
        return HINT_DESCENDING;
    return HINT_NONE;
}

/* Insert or replace; old (may be NULL) is handed what key held once nothing can fail. */
static int tree_put(struct btree *t, const void *key, size_t klen, const void *val, size_t vlen,
                    uint64_t expire_ms, bool *replaced, btree_old_fn old, void *arg)
{
    cs_assert(klen >= 1 && klen <= CS_KEY_MAX);
    cs_assert(vlen <= CS_VALUE_MAX);
    cs_assert(val || vlen == 0);
    uint8_t body[VTAG_BYTES + EXPIRY_BYTES + VALUE_INLINE_MAX];
    size_t at = VTAG_BYTES; /* where the value goes */
    uint16_t vtag = 0;
    if (expire_ms) {
        vtag = VTAG_EXPIRY;
        memcpy(body + at, &expire_ms, sizeof(expire_ms));
        at += EXPIRY_BYTES;
    }
    struct mod m = {MOD_INSERT, 0, key, klen, body, at + vlen};
    struct btree_blob *blob = NULL;
    if (vlen > VALUE_INLINE_MAX) {
        blob = blob_alloc(t, val, vlen);
        if (!blob)
            return -ENOMEM;
        vtag |= VTAG_BLOB;
        memcpy(body + at, &blob, sizeof(blob));
        m.body_len = at + sizeof(blob);
    } else {
        vtag |= (uint16_t)vlen;
        if (vlen > 0)
            memcpy(body + at, val, vlen);
    }
    memcpy(body, &vtag, sizeof(vtag));

    struct btree_path p;
    bool found = false;
    unsigned height = 0;
    if (t->root) {
        found = path_descend(t->root, key, klen, &p);
        height = (unsigned)p.depth;
    }
    int rc = spares_reserve(t, spares_needed(height));
    if (!rc && old)
        rc = leaf_hand_old(&p, found, old, arg);
    if (rc) {
        if (blob)
            blob_unref(t, blob);
        return rc;
    }
    if (replaced)
        *replaced = found;
    if (!t->root) {
        struct btree_node *n = spare_take(t);
        node_append(n, key, klen, m.body, m.body_len);
        t->root = n;
        t->count = 1;
        t->last_leaf = n;
        t->last_pos = 0;
        return 0;
    }
    path_unshare(t, &p);
    struct btree_node *leaf = p.node[p.depth - 1];
    m.pos = p.index[p.depth - 1];
    struct btree_blob *old_blob = NULL;
    enum seq_hint hint = HINT_NONE;
    if (found) {
        m.kind = MOD_REPLACE;
        old_blob = leaf_blob(leaf, m.pos);
    } else {
        hint = insert_hint(t, leaf, m.pos);
        t->last_leaf = leaf;
        t->last_pos = (uint16_t)m.pos;
        t->count++;
    }
    tree_change(t, &p, &m, false, hint);
    if (old_blob)
        blob_unref(t, old_blob);
    return 0;
}

int btree_put(struct btree *t, const void *key, size_t klen, const void *val, size_t vlen,
              bool *replaced)
{
    return tree_put(t, key, klen, val, vlen, 0, replaced, NULL, NULL);
}

int btree_put_exp(struct btree *t, const void *key, size_t klen, const void *val, size_t vlen,
                  uint64_t expire_ms, bool *replaced)
{
    return tree_put(t, key, klen, val, vlen, expire_ms, replaced, NULL, NULL);
}

int btree_put_old(struct btree *t, const void *key, size_t klen, const void *val, size_t vlen,
                  uint64_t expire_ms, btree_old_fn old, void *arg)
{
    return tree_put(t, key, klen, val, vlen, expire_ms, NULL, old, arg);
}

int btree_del_old(struct btree *t, const void *key, size_t klen, btree_old_fn old, void *arg)
{
    cs_assert(klen >= 1 && klen <= CS_KEY_MAX);
    if (!t->root)
        return CS_ENOTFOUND;
    struct btree_path p;
    if (!path_descend(t->root, key, klen, &p))
        return CS_ENOTFOUND;
    int rc = spares_reserve(t, spares_needed((unsigned)p.depth));
    if (!rc && old)
        rc = leaf_hand_old(&p, true, old, arg);
    if (rc)
        return rc;
    path_unshare(t, &p);
    struct btree_node *leaf = p.node[p.depth - 1];
    struct mod m = {MOD_REMOVE, p.index[p.depth - 1], NULL, 0, NULL, 0};
    struct btree_blob *old_blob = leaf_blob(leaf, m.pos);
    t->last_leaf = NULL;
    tree_change(t, &p, &m, true, HINT_NONE);
    if (old_blob)
        blob_unref(t, old_blob);
    cs_assert(t->count > 0);
    t->count--;
    return 0;
}

int btree_del(struct btree *t, const void *key, size_t klen)
{
    return btree_del_old(t, key, klen, NULL, NULL);
}

static int root_get(const struct btree_node *n, const void *key, size_t klen, const void **val,
                    size_t *vlen, uint64_t *expire_ms)
{
    cs_assert(klen >= 1 && klen <= CS_KEY_MAX);
    if (!n)
        return CS_ENOTFOUND;
    while (n->level > 0) {
        n = node_child(n, inner_child_index(n, key, klen));
        node_prefetch(n);
    }
    bool found;
    unsigned pos = leaf_lower_bound(n, key, klen, &found);
    if (!found)
        return CS_ENOTFOUND;
    leaf_value(n, pos, val, vlen);
    if (expire_ms)
        *expire_ms = leaf_expiry(n, pos);
    return 0;
}

int btree_get(const struct btree *t, const void *key, size_t klen, const void **val, size_t *vlen)
{
    return root_get(t->root, key, klen, val, vlen, NULL);
}

int btree_get_exp(const struct btree *t, const void *key, size_t klen, const void **val,
                  size_t *vlen, uint64_t *expire_ms)
{
    return root_get(t->root, key, klen, val, vlen, expire_ms);
}

int btree_snap_get(const struct btree_snap *s, const void *key, size_t klen, const void **val,
                   size_t *vlen)
{
    return root_get(s->root, key, klen, val, vlen, NULL);
}

int btree_snap_get_exp(const struct btree_snap *s, const void *key, size_t klen, const void **val,
                       size_t *vlen, uint64_t *expire_ms)
{
    return root_get(s->root, key, klen, val, vlen, expire_ms);
}

void btree_snap_take(struct btree *t, struct btree_snap *s)
{
    s->root = t->root;
    s->count = t->count;
    t->snap_count++;
    if (s->root)
        s->root->refs++;
}

void btree_snap_release(struct btree *t, struct btree_snap *s)
{
    cs_assert(t->snap_count > 0);
    t->snap_count--;
    if (s->root)
        node_unref(t, s->root);
    s->root = NULL;
    s->count = 0;
}

void btree_restore(struct btree *t, const struct btree_snap *s)
{
    struct btree_node *old = t->root;
    if (s->root)
        s->root->refs++;
    t->root = s->root;
    t->count = s->count;
    t->last_leaf = NULL;
    if (old)
        node_unref(t, old);
}

/* ---- Cursors ------------------------------------------------------------------------------- */

void btree_cursor_init(struct btree_cursor *c, const struct btree_snap *s)
{
    c->snap = s;
    c->depth = 0;
}

/* Descend from node[d] to a leaf along the first (or last) children. */
static void cursor_descend_edge(struct btree_cursor *c, int d, bool last)
{
    for (;; d++) {
        cs_assert(d < BTREE_DEPTH_MAX);
        struct btree_node *n = c->node[d];
        cs_assert(n->count > 0);
        c->index[d] = (uint16_t)(last ? n->count - 1u : 0u);
        if (n->level == 0) {
            c->depth = d + 1;
            return;
        }
        c->node[d + 1] = node_child(n, c->index[d]);
    }
}

static bool cursor_edge(struct btree_cursor *c, bool last)
{
    c->depth = 0;
    if (!c->snap->root)
        return false;
    c->node[0] = c->snap->root;
    cursor_descend_edge(c, 0, last);
    return true;
}

bool btree_cursor_first(struct btree_cursor *c)
{
    return cursor_edge(c, false);
}

bool btree_cursor_last(struct btree_cursor *c)
{
    return cursor_edge(c, true);
}

/* Step to the next (or previous) record. */
static bool cursor_step(struct btree_cursor *c, bool back)
{
    if (c->depth == 0)
        return false;
    int d = c->depth - 1;
    for (; d >= 0; d--) {
        unsigned i = c->index[d];
        if (back ? i > 0 : i + 1u < c->node[d]->count)
            break;
    }
    if (d < 0) {
        c->depth = 0;
        return false;
    }
    c->index[d] = (uint16_t)(back ? c->index[d] - 1 : c->index[d] + 1);
    if (d < c->depth - 1) {
        c->node[d + 1] = node_child(c->node[d], c->index[d]);
        cursor_descend_edge(c, d + 1, back);
    }
    return true;
}

bool btree_cursor_next(struct btree_cursor *c)
{
    return cursor_step(c, false);
}

bool btree_cursor_prev(struct btree_cursor *c)
{
    return cursor_step(c, true);
}

/* Position on the lower bound of key; returns whether key itself is there. */
static void cursor_descend_key(struct btree_cursor *c, const void *key, size_t klen, bool *found)
{
    struct btree_node *n = c->snap->root;
    for (int d = 0;; d++) {
        cs_assert(d < BTREE_DEPTH_MAX);
        c->node[d] = n;
        if (n->level == 0) {
            c->index[d] = (uint16_t)leaf_lower_bound(n, key, klen, found);
            c->depth = d + 1;
            return;
        }
        c->index[d] = (uint16_t)inner_child_index(n, key, klen);
        n = node_child(n, c->index[d]);
    }
}

bool btree_cursor_seek(struct btree_cursor *c, const void *key, size_t klen)
{
    cs_assert(klen >= 1 && klen <= CS_KEY_MAX);
    c->depth = 0;
    if (!c->snap->root)
        return false;
    bool found;
    cursor_descend_key(c, key, klen, &found);
    int leaf = c->depth - 1;
    if (c->index[leaf] < c->node[leaf]->count)
        return true;
    c->index[leaf]--; /* past the leaf's last record: the answer starts the next leaf */
    return cursor_step(c, false);
}

bool btree_cursor_seek_le(struct btree_cursor *c, const void *key, size_t klen)
{
    cs_assert(klen >= 1 && klen <= CS_KEY_MAX);
    c->depth = 0;
    if (!c->snap->root)
        return false;
    bool found;
    cursor_descend_key(c, key, klen, &found);
    if (found)
        return true;
    int leaf = c->depth - 1;
    if (c->index[leaf] > 0) {
        c->index[leaf]--;
        return true;
    }
    return cursor_step(c, true);
}

void btree_cursor_get(const struct btree_cursor *c, const void **key, size_t *klen,
                      const void **val, size_t *vlen)
{
    cs_assert(c->depth > 0);
    const struct btree_node *n = c->node[c->depth - 1];
    unsigned i = c->index[c->depth - 1];
    cs_assert(n->level == 0);
    cs_assert(i < n->count);
    *key = node_entry(n, i);
    *klen = n->slot[i].klen;
    leaf_value(n, i, val, vlen);
}

uint64_t btree_cursor_expiry(const struct btree_cursor *c)
{
    cs_assert(c->depth > 0);
    const struct btree_node *n = c->node[c->depth - 1];
    unsigned i = c->index[c->depth - 1];
    cs_assert(n->level == 0);
    cs_assert(i < n->count);
    return leaf_expiry(n, i);
}

/* ---- Checker ------------------------------------------------------------------------------- */

struct check_bound {
    const uint8_t *key; /* NULL: unbounded */
    size_t klen;
};

struct check_frame {
    const struct btree_node *n;
    unsigned next;         /* next child to visit */
    struct check_bound lo; /* every key >= lo */
    struct check_bound hi; /* every key < hi */
};

struct check_sum {
    uint64_t records;
    uint64_t nodes;
    uint64_t blob_bytes;
    bool shared; /* some node or blob has refs > 1 */
};

__attribute__((format(printf, 3, 4))) static int check_fail(char *msg, size_t msg_size,
                                                            const char *fmt, ...)
{
    if (msg && msg_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_size, fmt, ap);
        va_end(ap);
    }
    return CS_ECORRUPT;
}

/* Slots, offsets, lengths and byte accounting of one node. */
static int check_layout(const struct btree_node *n, char *msg, size_t msg_size)
{
    uint8_t used[NODE_BYTES]; /* 1 where an entry lies */
    size_t live = 0;
    if (n->pfx_len > NODE_PFX_MAX)
        return check_fail(msg, msg_size, "node %p: prefix of %u bytes", (void *)n, n->pfx_len);
    if (n->heap_off > NODE_BYTES || n->heap_off < NODE_HDR_BYTES + (size_t)n->count * SLOT_BYTES)
        return check_fail(msg, msg_size, "node %p: heap_off %u, count %u", (void *)n, n->heap_off,
                          n->count);
    memset(used, 0, sizeof(used));
    for (unsigned i = 0; i < n->count; i++) {
        const struct btree_slot *s = &n->slot[i];
        size_t body_min = n->level > 0 ? CHILD_BYTES : VTAG_BYTES;
        if (s->off < n->heap_off || s->off + s->klen + body_min > NODE_BYTES)
            return check_fail(msg, msg_size, "node %p slot %u: off %u out of heap", (void *)n, i,
                              s->off);
        size_t len = entry_heap_bytes(n, i);
        if (s->off + len > NODE_BYTES)
            return check_fail(msg, msg_size, "node %p slot %u: entry past the end", (void *)n, i);
        if (memchr(used + s->off, 1, len))
            return check_fail(msg, msg_size, "node %p slot %u: entries overlap", (void *)n, i);
        memset(used + s->off, 1, len);
        live += len;
        if (s->klen > 0 && node_pfx_cmp(n, node_entry(n, i), s->klen) != 0)
            return check_fail(msg, msg_size, "node %p slot %u: key outside the node prefix",
                              (void *)n, i);
        if (s->prefix != key_prefix(node_entry(n, i), s->klen, n->pfx_len))
            return check_fail(msg, msg_size, "node %p slot %u: stale prefix", (void *)n, i);
    }
    if (live + n->dead_bytes != NODE_BYTES - (size_t)n->heap_off)
        return check_fail(msg, msg_size, "node %p: live %zu + dead %u != heap %u", (void *)n, live,
                          n->dead_bytes, NODE_BYTES - n->heap_off);
    return 0;
}

/* Key lengths, order, bounds and values of one node. */
static int check_keys(const struct btree_node *n, const struct check_frame *f,
                      struct check_sum *sum, char *msg, size_t msg_size)
{
    unsigned first = n->level > 0 ? 1 : 0;
    if (n->level > 0 && n->slot[0].klen != 0)
        return check_fail(msg, msg_size, "node %p: internal slot 0 has a key", (void *)n);
    for (unsigned i = first; i < n->count; i++) {
        const uint8_t *k = node_entry(n, i);
        size_t klen = n->slot[i].klen;
        if (klen < 1 || klen > CS_KEY_MAX)
            return check_fail(msg, msg_size, "node %p slot %u: klen %zu", (void *)n, i, klen);
        if (i > first && key_cmp(node_entry(n, i - 1), n->slot[i - 1].klen, k, klen) >= 0)
            return check_fail(msg, msg_size, "node %p slot %u: keys out of order", (void *)n, i);
        int lo_cmp = f->lo.key ? key_cmp(k, klen, f->lo.key, f->lo.klen) : 1;
        if (lo_cmp < 0 || (n->level > 0 && lo_cmp == 0))
            return check_fail(msg, msg_size, "node %p slot %u: key below its bound", (void *)n, i);
        if (f->hi.key && key_cmp(k, klen, f->hi.key, f->hi.klen) >= 0)
            return check_fail(msg, msg_size, "node %p slot %u: key above its bound", (void *)n, i);
    }
    for (unsigned i = 0; n->level == 0 && i < n->count; i++) {
        unsigned vtag = leaf_vtag(n, i), v = vtag & VTAG_VALUE_MASK;
        if (v != VTAG_BLOB && v > VALUE_INLINE_MAX)
            return check_fail(msg, msg_size, "leaf %p slot %u: vtag %u", (void *)n, i, vtag);
        if ((vtag & VTAG_EXPIRY) && leaf_expiry(n, i) == 0)
            return check_fail(msg, msg_size, "leaf %p slot %u: expiry flag with expiry 0",
                              (void *)n, i);
        struct btree_blob *b = leaf_blob(n, i);
        if (!b)
            continue;
        if (b->refs < 1 || b->len <= VALUE_INLINE_MAX || b->len > CS_VALUE_MAX)
            return check_fail(msg, msg_size, "leaf %p slot %u: blob refs %u len %u", (void *)n, i,
                              b->refs, b->len);
        sum->shared |= b->refs > 1;
        sum->blob_bytes += alloc_class_bytes(sizeof(*b) + b->len);
    }
    return 0;
}

static int check_node(const struct btree_node *n, const struct check_frame *f, unsigned level,
                      bool is_root, struct check_sum *sum, char *msg, size_t msg_size)
{
    if (n->refs < 1)
        return check_fail(msg, msg_size, "node %p: refs 0", (void *)n);
    if (n->level != level)
        return check_fail(msg, msg_size, "node %p: level %u, expected %u", (void *)n, n->level,
                          level);
    unsigned count_min = n->level > 0 ? 2 : 1;
    if (n->count < count_min)
        return check_fail(msg, msg_size, "node %p (%s): %u entries", (void *)n,
                          is_root ? "root" : "inner", n->count);
    int rc = check_layout(n, msg, msg_size);
    if (rc)
        return rc;
    rc = check_keys(n, f, sum, msg, msg_size);
    if (rc)
        return rc;
    sum->nodes++;
    sum->shared |= n->refs > 1;
    if (n->level == 0)
        sum->records += n->count;
    return 0;
}

static struct check_bound check_slot_key(const struct btree_node *n, unsigned i)
{
    struct check_bound b = {node_entry(n, i), n->slot[i].klen};
    return b;
}

static int check_tree(const struct btree_node *root, uint64_t count, struct check_sum *sum,
                      char *msg, size_t msg_size)
{
    struct check_frame stack[BTREE_DEPTH_MAX];
    memset(sum, 0, sizeof(*sum));
    if (!root)
        return count == 0
                   ? 0
                   : check_fail(msg, msg_size, "empty tree, count %llu", (unsigned long long)count);
    if (root->level >= BTREE_DEPTH_MAX)
        return check_fail(msg, msg_size, "root level %u", root->level);
    int top = 0;
    memset(&stack[0], 0, sizeof(stack[0]));
    stack[0].n = root;
    int rc = check_node(root, &stack[0], root->level, true, sum, msg, msg_size);
    while (rc == 0 && top >= 0) {
        struct check_frame *f = &stack[top];
        if (f->n->level == 0 || f->next == f->n->count) {
            top--;
            continue;
        }
        unsigned i = f->next++;
        const struct btree_node *c = node_child(f->n, i);
        if (!c)
            return check_fail(msg, msg_size, "node %p slot %u: NULL child", (void *)f->n, i);
        struct check_frame *cf = &stack[++top];
        cf->n = c;
        cf->next = 0;
        cf->lo = i == 0 ? f->lo : check_slot_key(f->n, i);
        cf->hi = i + 1u == f->n->count ? f->hi : check_slot_key(f->n, i + 1);
        rc = check_node(c, cf, f->n->level - 1u, false, sum, msg, msg_size);
    }
    if (rc == 0 && sum->records != count)
        rc = check_fail(msg, msg_size, "%llu records, count says %llu",
                        (unsigned long long)sum->records, (unsigned long long)count);
    return rc;
}

int btree_check(const struct btree *t, char *msg, size_t msg_size)
{
    struct check_sum sum;
    int rc = check_tree(t->root, t->count, &sum, msg, msg_size);
    if (rc)
        return rc;
    uint64_t spares = 0;
    for (const struct btree_node *n = t->spare; n && spares <= t->spare_count; spares++)
        memcpy(&n, n, sizeof(n));
    if (spares != t->spare_count)
        return check_fail(msg, msg_size, "spare list holds %llu nodes, count says %u",
                          (unsigned long long)spares, t->spare_count);
    uint64_t bytes = (sum.nodes + spares) * NODE_BYTES + sum.blob_bytes;
    if (t->snap_count == 0 && sum.shared) /* nothing but the tree holds its nodes */
        return check_fail(msg, msg_size, "a node or value has refs > 1 without snapshots");
    if (t->snap_count == 0 && bytes != t->bytes)
        return check_fail(msg, msg_size, "bytes %llu, nodes and values take %llu",
                          (unsigned long long)t->bytes, (unsigned long long)bytes);
    if (t->bytes < bytes)
        return check_fail(msg, msg_size, "bytes %llu below the %llu the tree takes",
                          (unsigned long long)t->bytes, (unsigned long long)bytes);
    return 0;
}

int btree_snap_check(const struct btree_snap *s, char *msg, size_t msg_size)
{
    struct check_sum sum;
    return check_tree(s->root, s->count, &sum, msg, msg_size);
}
