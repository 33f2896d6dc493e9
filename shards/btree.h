/* Copy-on-write B+ tree of byte-string keys (memcmp order) and byte-string values.
 *
 * One tree per collection and shard, touched by one thread only (no internal locking).
 * Snapshots are O(1): a reference on the root. A writer copies a node only while a snapshot
 * still shares it (node reference counts), so snapshots stay valid and unchanged while the
 * tree keeps being written. Descent keeps a bounded path array: no recursion anywhere.
 *
 * Limits: keys 1..CS_KEY_MAX bytes, values 0..CS_VALUE_MAX bytes (checked by the caller too;
 * the tree asserts them). Large values live out of line and are shared, not copied, by CoW.
 */
#ifndef CS_BTREE_H
#define CS_BTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define BTREE_DEPTH_MAX 24 /* path array size; far above any reachable height */

struct btree_node;

/* A tree. Fields are private to btree.c; callers embed the struct. */
struct btree {
    struct btree_node *root; /* NULL when empty */
    uint64_t count;          /* records in the tree */
    uint64_t bytes;          /* bytes allocated for nodes and values */
    unsigned arena;          /* jemalloc arena all memory comes from */
    /* Private to btree.c. */
    struct btree_node *spare;           /* free nodes kept for the next writes (in bytes) */
    uint32_t spare_count;               /* nodes on the spare list */
    uint32_t snap_count;                /* snapshots taken and not yet released */
    uint32_t fail_alloc_in;             /* tests: the n-th next allocation fails; 0 = never */
    uint16_t last_pos;                  /* slot of the last in-place insert in last_leaf */
    const struct btree_node *last_leaf; /* leaf of the last insert: sequential-load hint */
};

/* An O(1) snapshot: a counted reference on a root. */
struct btree_snap {
    struct btree_node *root; /* NULL when the tree was empty */
    uint64_t count;          /* records in the snapshot */
};

/* A cursor over a snapshot. Valid while the snapshot is held. */
struct btree_cursor {
    const struct btree_snap *snap;            /* what is read */
    int depth;                                /* entries in path[]; 0 = not positioned */
    struct btree_node *node[BTREE_DEPTH_MAX]; /* path from root to leaf */
    uint16_t index[BTREE_DEPTH_MAX];          /* slot taken at each level */
};

void btree_init(struct btree *t, unsigned arena);
/* Free every node and value that no snapshot still holds. Snapshots stay valid: release them
 * later with btree_snap_release() on this same (destroyed) struct, which keeps their bytes. */
void btree_destroy(struct btree *t);

/* Insert or replace. Returns 0 or -ENOMEM (the tree is unchanged on error). *replaced (may be
 * NULL) is set to whether the key existed. */
CS_MUST_CHECK int btree_put(struct btree *t, const void *key, size_t klen, const void *val,
                            size_t vlen, bool *replaced);
/* btree_put of a record that expires at expire_ms (Unix milliseconds; 0: never). The tree keeps
 * the expiry with the record (8 bytes, only when non-zero) and hands it back; it reads no clock,
 * so an expired record is still in the tree: hiding it is the reader's part. */
CS_MUST_CHECK int btree_put_exp(struct btree *t, const void *key, size_t klen, const void *val,
                                size_t vlen, uint64_t expire_ms, bool *replaced);
/* Remove. Returns 0, CS_ENOTFOUND, or -ENOMEM (copy-on-write may need memory). */
CS_MUST_CHECK int btree_del(struct btree *t, const void *key, size_t klen);

/* What a write hands back of the record it replaces or removes: called once the write has found
 * the key's leaf and allocated everything it needs, before it changes anything. had says whether
 * the key holds a value; val/vlen view it (valid during the call only; NULL and 0 when !had) and
 * expire_ms is its expiry (0: none).
 * The callback may read the tree and take snapshots of it (the write then copies what they
 * share), never write it. Returning non-zero (e.g. -ENOMEM) cancels the write: it returns that
 * code with the tree's records unchanged. Returning 0 commits it: the write then cannot fail. */
typedef int (*btree_old_fn)(void *arg, bool had, const void *val, size_t vlen, uint64_t expire_ms);

/* btree_put_exp that hands the old value to old(arg, ...) in the same descent (old may be NULL).
 * Returns 0, -ENOMEM, or what old returned; on error the tree's records are unchanged. */
CS_MUST_CHECK int btree_put_old(struct btree *t, const void *key, size_t klen, const void *val,
                                size_t vlen, uint64_t expire_ms, btree_old_fn old, void *arg);
/* btree_del that hands the removed value to old(arg, true, ...) in the same descent (old may be
 * NULL). A missing key returns CS_ENOTFOUND without calling old. Returns 0, CS_ENOTFOUND,
 * -ENOMEM, or what old returned; on error the tree's records are unchanged. */
CS_MUST_CHECK int btree_del_old(struct btree *t, const void *key, size_t klen, btree_old_fn old,
                                void *arg);
/* Look up. Returns 0 and a view of the value valid until the next write to the tree, or
 * CS_ENOTFOUND. */
CS_MUST_CHECK int btree_get(const struct btree *t, const void *key, size_t klen, const void **val,
                            size_t *vlen);
/* btree_get that also gives the record's expiry (*expire_ms, 0: none). Expired records are
 * found like any other. */
CS_MUST_CHECK int btree_get_exp(const struct btree *t, const void *key, size_t klen,
                                const void **val, size_t *vlen, uint64_t *expire_ms);

/* Look up in a snapshot. Reads nothing but the snapshot's nodes, which never change while it is
 * held, so any thread may call it as long as the snapshot stays held meanwhile. */
CS_MUST_CHECK int btree_snap_get(const struct btree_snap *s, const void *key, size_t klen,
                                 const void **val, size_t *vlen);
CS_MUST_CHECK int btree_snap_get_exp(const struct btree_snap *s, const void *key, size_t klen,
                                     const void **val, size_t *vlen, uint64_t *expire_ms);

/* Take a snapshot (O(1)); release it with btree_snap_release(). */
void btree_snap_take(struct btree *t, struct btree_snap *s);
/* Drop the snapshot's reference; frees the nodes only it held (O(nodes freed)). */
void btree_snap_release(struct btree *t, struct btree_snap *s);
/* Make the tree equal to snapshot s again (O(1) plus releasing the replaced root); s stays
 * held by the caller. Used to roll back a failed batch. */
void btree_restore(struct btree *t, const struct btree_snap *s);

/* Cursors. Positioning calls return true when the cursor is on a record. */
void btree_cursor_init(struct btree_cursor *c, const struct btree_snap *s);
bool btree_cursor_first(struct btree_cursor *c);
bool btree_cursor_last(struct btree_cursor *c);
bool btree_cursor_seek(struct btree_cursor *c, const void *key, size_t klen);    /* >= key */
bool btree_cursor_seek_le(struct btree_cursor *c, const void *key, size_t klen); /* <= key */
bool btree_cursor_next(struct btree_cursor *c);
bool btree_cursor_prev(struct btree_cursor *c);
/* Views valid while the snapshot is held. The cursor must be on a record. */
void btree_cursor_get(const struct btree_cursor *c, const void **key, size_t *klen,
                      const void **val, size_t *vlen);
/* The current record's expiry (Unix ms), 0 when it has none. The cursor must be on a record. */
uint64_t btree_cursor_expiry(const struct btree_cursor *c);

/* Verify every invariant of the tree (order, fill, depth, separators, counts, reference counts
 * >= 1). Returns 0, or CS_ECORRUPT with a description in msg. O(n). */
CS_MUST_CHECK int btree_check(const struct btree *t, char *msg, size_t msg_size);
/* Same for a snapshot. */
CS_MUST_CHECK int btree_snap_check(const struct btree_snap *s, char *msg, size_t msg_size);

#endif
