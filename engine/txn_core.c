/* Pure decisions of cross-shard commit: votes to outcome, who may wait for a prepared
 * transaction's lock, and the resolution of transactions a crash left in doubt. See txn_core.h; the
 * protocol is described in engine/txn.c.
 *
 * WHY THE RECOVERY RULE IS SAFE. A coordinator answers "committed" only after every participant
 * voted yes, and a yes vote is a durable PREPARE; a participant forgets a transaction (and so a
 * checkpoint stops carrying it) only once every participant's outcome record is durable
 * (shards/txn.c, "settling"). So after any crash, for a transaction that was acknowledged, either
 * some participant still holds its COMMIT (or a settling commit in a checkpoint), or every
 * participant still holds its PREPARE: the rule commits it. For one that was refused: a no vote
 * writes nothing, so some participant lacks the PREPARE (unless that participant's PREPARE
 * reached the disk although its write failed: then the vote was an error, and the coordinator
 * made the ABORT durable on the others before answering, which the rule honours). */
#include "engine/txn_core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"

void txn_votes_init(struct txn_votes *v, unsigned participants)
{
    memset(v, 0, sizeof(*v));
    v->expected = participants;
}

void txn_votes_add(struct txn_votes *v, int vote)
{
    v->got++;
    if (vote && (!v->rc || v->rc == CS_ECONFLICT))
        v->rc = vote;
    v->error |= vote && vote != CS_ECONFLICT;
}

int txn_votes_decide(const struct txn_votes *v, bool *commit, bool *abort_durable)
{
    cs_assert(v->got == v->expected);
    *commit = v->rc == 0;
    *abort_durable = v->error;
    return v->rc;
}

bool txn_may_wait(uint64_t id, bool ordered, uint64_t holder_max, bool met_ordered, unsigned parks,
                  unsigned queued)
{
    if (ordered)
        return true; /* an ordered write waits for anyone, without limit (txn_core.h) */
    if (met_ordered && id != 0)
        return false; /* a transaction never waits for an ordered write that may wait itself */
    if (parks >= TXN_WAIT_PARKS_MAX || queued >= TXN_WAIT_QUEUE_MAX)
        return false;
    return id == 0 || id > holder_max; /* younger waits for older; an older requester dies */
}

bool txn_retry_ordered(bool blind, bool ordered, unsigned participants, int rc)
{
    return blind && !ordered && participants > 1 && rc == CS_ECONFLICT;
}

void txn_resolver_init(struct txn_resolver *r, unsigned shards)
{
    memset(r, 0, sizeof(*r));
    r->shards = shards;
}

void txn_resolver_free(struct txn_resolver *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i].parts);
        free(r->e[i].held);
    }
    free(r->e);
    memset(r, 0, sizeof(*r));
}

static struct txn_resolve_entry *entry_of(struct txn_resolver *r, uint64_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->e[i].id == id)
            return &r->e[i];
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct txn_resolve_entry *e = realloc(r->e, cap * sizeof(*e));
        if (!e)
            return NULL;
        r->e = e;
        r->cap = cap;
    }
    struct txn_resolve_entry *e = &r->e[r->n];
    memset(e, 0, sizeof(*e));
    e->id = id;
    e->held = calloc((r->shards + 63) / 64, sizeof(uint64_t));
    if (!e->held)
        return NULL;
    r->n++;
    return e;
}

int txn_resolver_add(struct txn_resolver *r, unsigned shard, uint64_t id, uint8_t state,
                     uint16_t nparts, const uint16_t *parts)
{
    if (shard >= r->shards || state > TXN_REPORT_ABORTED)
        return CS_ECORRUPT;
    struct txn_resolve_entry *e = entry_of(r, id);
    if (!e)
        return -ENOMEM;
    if (state != TXN_REPORT_PREPARED) {
        if (e->outcome && e->outcome != state)
            return CS_ECORRUPT; /* committed on one shard, aborted on another */
        e->outcome = state;
        return 0;
    }
    bool mine = false;
    for (uint16_t i = 0; i < nparts; i++)
        mine |= parts[i] == shard;
    if (!mine || nparts < 2)
        return CS_ECORRUPT;
    if (e->nparts) {
        if (e->nparts != nparts || memcmp(e->parts, parts, nparts * sizeof(*parts)) != 0)
            return CS_ECORRUPT;
    } else {
        e->parts = malloc(nparts * sizeof(*parts));
        if (!e->parts)
            return -ENOMEM;
        memcpy(e->parts, parts, nparts * sizeof(*parts));
        e->nparts = nparts;
    }
    e->held[shard / 64] |= 1ull << (shard % 64);
    return 0;
}

bool txn_resolver_holds(const struct txn_resolver *r, size_t i, unsigned s)
{
    return s < r->shards && (r->e[i].held[s / 64] >> (s % 64)) & 1u;
}

bool txn_resolver_commits(const struct txn_resolver *r, size_t i)
{
    const struct txn_resolve_entry *e = &r->e[i];
    if (e->outcome)
        return e->outcome == TXN_REPORT_COMMITTED;
    if (!e->nparts)
        return false;
    for (uint16_t j = 0; j < e->nparts; j++)
        if (!txn_resolver_holds(r, i, e->parts[j]))
            return false;
    return true;
}
