/* Unit tests of the Raft core (raft/), one rule each, named after the section of the Raft paper
 * (§) or of Ongaro's thesis (thesis §) that states it. A tiny in-test network moves encoded
 * frames between nodes in FIFO order; persistence is implicit (each ready is acknowledged at
 * once), which the rules tested here do not depend on. The randomized cluster runs, with crashes
 * and real persistence, are in tests/sim. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "raft/raft.h"

#include <cstore.h>

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define T_NODES_MAX 5u
#define T_QUEUE_MAX 4096u
#define T_ELECTION 10u

struct tnet {
    struct raft *nodes[T_NODES_MAX];
    unsigned n;
    uint64_t rnd;
    bool cut[T_NODES_MAX + 1][T_NODES_MAX + 1]; /* by id: frames from -> to dropped */
    uint8_t *q[T_QUEUE_MAX];
    size_t qlen[T_QUEUE_MAX];
    unsigned qhead;
    unsigned qn;
    struct raft_read_state reads[16]; /* read states handed out, any node */
    uint64_t reads_node[16];          /* ... and the node that got each */
    unsigned reads_n;
};

static uint64_t counter_rand(void *ctx)
{
    uint64_t *c = ctx;
    return (*c)++;
}

/* Byte i of every snapshot image in these tests (the application's bytes, raft.h "Snapshots"). */
static uint8_t image_byte(uint64_t i)
{
    return (uint8_t)(i * 31 + 7);
}

/* cfg.snapshot_read: the test image, whatever the index. */
static int image_read(void *ctx, uint64_t index, uint64_t offset, uint8_t *buf, uint32_t len)
{
    (void)ctx;
    (void)index;
    for (uint32_t i = 0; i < len; i++)
        buf[i] = image_byte(offset + i);
    return 0;
}

static struct raft_config config(uint64_t id, unsigned voters, uint64_t *rnd, bool pre_vote,
                                 bool check_quorum)
{
    struct raft_config c = {
        .id = id,
        .election_ticks = T_ELECTION,
        .heartbeat_ticks = 1,
        .pre_vote = pre_vote,
        .check_quorum = check_quorum,
        .inflight_msgs_max = 2,
        .msg_bytes_max = 1 << 20,
        .uncommitted_bytes_max = 1 << 20,
        .rand = counter_rand,
        .rand_ctx = rnd,
        .snapshot_read = image_read,
    };
    c.bootstrap.voters_n = (uint8_t)voters;
    for (unsigned i = 0; i < voters; i++)
        c.bootstrap.voters[i] = i + 1;
    return c;
}

static struct raft *node_new(uint64_t id, unsigned voters, uint64_t *rnd, bool pre_vote,
                             bool check_quorum)
{
    struct raft_config c = config(id, voters, rnd, pre_vote, check_quorum);
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    return r;
}

static void net_init(struct tnet *t, unsigned n, bool pre_vote, bool check_quorum)
{
    memset(t, 0, sizeof(*t));
    t->n = n;
    for (unsigned i = 0; i < n; i++)
        t->nodes[i] = node_new(i + 1, n, &t->rnd, pre_vote, check_quorum);
}

/* net_init with small snapshot chunks: chunk_bytes per chunk, window chunks in flight, resend
 * after resend_ticks. */
static void net_init_chunks(struct tnet *t, unsigned n, uint32_t chunk_bytes, unsigned window,
                            unsigned resend_ticks)
{
    memset(t, 0, sizeof(*t));
    t->n = n;
    for (unsigned i = 0; i < n; i++) {
        struct raft_config c = config(i + 1, n, &t->rnd, false, false);
        c.snapshot_chunk_bytes = chunk_bytes;
        c.snapshot_inflight_max = window;
        c.snapshot_resend_ticks = resend_ticks;
        assert_int_equal(raft_new(&c, NULL, &t->nodes[i]), 0);
    }
}

/* n nodes of which 1..voters are the voters of the bootstrap configuration (the others are not
 * members until a change adds them). */
static void net_init_voters(struct tnet *t, unsigned n, unsigned voters)
{
    memset(t, 0, sizeof(*t));
    t->n = n;
    for (unsigned i = 0; i < n; i++)
        t->nodes[i] = node_new(i + 1, voters, &t->rnd, false, false);
}

static void net_free(struct tnet *t)
{
    for (unsigned i = 0; i < t->n; i++)
        raft_free(t->nodes[i]);
    for (unsigned k = 0; k < t->qn; k++)
        free(t->q[(t->qhead + k) % T_QUEUE_MAX]);
}

static struct raft *N(struct tnet *t, uint64_t id)
{
    return t->nodes[id - 1];
}

static void enqueue(struct tnet *t, const struct raft_msg *m)
{
    if (t->cut[m->from][m->to] || m->to > t->n || t->qn >= T_QUEUE_MAX)
        return;
    size_t cap = raft_msg_encoded_bytes(m), len;
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    assert_int_equal(raft_msg_encode(m, b, cap, &len), 0);
    unsigned at = (t->qhead + t->qn) % T_QUEUE_MAX;
    t->q[at] = b;
    t->qlen[at] = len;
    t->qn++;
}

/* Hand every ready batch of node id to the network. */
static void collect(struct tnet *t, uint64_t id)
{
    struct raft *r = N(t, id);
    for (int k = 0; k < 16 && raft_has_ready(r); k++) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        for (size_t i = 0; i < rd.msgs_n; i++)
            enqueue(t, &rd.msgs[i]);
        for (size_t i = 0; i < rd.reads_n && t->reads_n < 16; i++) {
            t->reads_node[t->reads_n] = id;
            t->reads[t->reads_n++] = rd.reads[i];
        }
        raft_advance(r);
    }
}

/* Deliver until the network is quiet (bounded). */
static void settle(struct tnet *t)
{
    for (unsigned i = 1; i <= t->n; i++)
        collect(t, i);
    for (unsigned k = 0; k < 100000 && t->qn > 0; k++) {
        uint8_t *b = t->q[t->qhead];
        size_t len = t->qlen[t->qhead];
        t->qhead = (t->qhead + 1) % T_QUEUE_MAX;
        t->qn--;
        struct raft_msg m;
        assert_int_equal(raft_msg_decode(b, len, &m), 0);
        if (!t->cut[m.from][m.to]) {
            assert_int_equal(raft_step(N(t, m.to), &m), 0);
            collect(t, m.to);
        }
        raft_msg_release(&m);
        free(b);
    }
    assert_int_equal(t->qn, 0);
}

static void tick_all(struct tnet *t, unsigned ticks)
{
    for (unsigned k = 0; k < ticks; k++) {
        for (unsigned i = 1; i <= t->n; i++)
            raft_tick(N(t, i));
        settle(t);
    }
}

/* Make node id campaign now (a TimeoutNow as in a transfer) and let the election finish. */
static void elect(struct tnet *t, uint64_t id)
{
    struct raft *r = N(t, id);
    struct raft_msg m = {
        .type = RAFT_MSG_TIMEOUT_NOW, .term = raft_term(r), .from = id == 1 ? 2 : 1, .to = id};
    if (m.term == 0) {
        m.term = 1;
        m.type = RAFT_MSG_HEARTBEAT; /* learn term 1 first */
        assert_int_equal(raft_step(r, &m), 0);
        m.type = RAFT_MSG_TIMEOUT_NOW;
    }
    assert_int_equal(raft_step(r, &m), 0);
    settle(t);
    assert_int_equal(raft_role(r), RAFT_LEADER);
}

static void propose(struct tnet *t, uint64_t id, const char *s)
{
    assert_int_equal(raft_propose(N(t, id), s, (uint32_t)strlen(s), NULL), 0);
}

/* Copy the messages of node r's next ready batch (entries are not kept). */
static size_t take_msgs(struct raft *r, struct raft_msg *out, size_t max)
{
    size_t n = 0;
    if (!raft_has_ready(r))
        return 0;
    struct raft_ready rd;
    raft_ready(r, &rd);
    for (size_t i = 0; i < rd.msgs_n && n < max; i++) {
        out[n] = rd.msgs[i];
        out[n].entries = NULL;
        out[n].has_snapshot = false;
        n++;
    }
    raft_advance(r);
    return n;
}

static struct raft_msg app(uint64_t term, uint64_t from, uint64_t prev, uint64_t prev_term,
                           const struct raft_entry *es, uint32_t n, uint64_t commit)
{
    struct raft_msg m = {.type = RAFT_MSG_APP,
                         .term = term,
                         .from = from,
                         .to = 1,
                         .index = prev,
                         .log_term = prev_term,
                         .entries = es,
                         .entries_n = n,
                         .commit = commit};
    return m;
}

/* ---- §5.2 leader election ---------------------------------------------------------------- */

static void test_5_2_follower_campaigns_after_election_timeout(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    for (unsigned k = 0; k < 2 * T_ELECTION && raft_role(r) == RAFT_FOLLOWER; k++)
        raft_tick(r);
    assert_int_equal(raft_role(r), RAFT_CANDIDATE);
    assert_int_equal(raft_term(r), 1);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_true(rd.hard_state_changed);
    assert_int_equal(rd.hard_state.vote, 1); /* votes for itself, persisted with the requests */
    assert_int_equal(rd.msgs_n, 2);
    for (size_t i = 0; i < rd.msgs_n; i++) {
        assert_int_equal(rd.msgs[i].type, RAFT_MSG_VOTE);
        assert_int_equal(rd.msgs[i].term, 1);
    }
    raft_advance(r);
    raft_free(r);
}

static void test_5_2_election_timeout_is_randomized(void **state)
{
    (void)state;
    uint64_t rnd = 3; /* the injected source decides: timeout = 10 + 3 % 10 */
    struct raft *r = node_new(1, 3, &rnd, false, false);
    unsigned k = 0;
    while (raft_role(r) == RAFT_FOLLOWER && k < 3 * T_ELECTION) {
        raft_tick(r);
        k++;
    }
    assert_int_equal(k, T_ELECTION + 3);
    raft_free(r);
}

static void test_5_2_majority_of_votes_elects_a_leader(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 2);
    assert_int_equal(raft_leader(N(&t, 1)), 2);
    assert_int_equal(raft_leader(N(&t, 3)), 2);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_FOLLOWER);
    net_free(&t);
}

static void test_5_2_at_most_one_vote_per_term(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .term = 1, .from = 2, .to = 1};
    struct raft_msg out[4];
    assert_int_equal(raft_step(r, &v), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_false(out[0].reject);
    v.from = 3;
    assert_int_equal(raft_step(r, &v), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_true(out[0].reject);
    v.from = 2; /* a retransmission to the same candidate is granted again */
    assert_int_equal(raft_step(r, &v), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_false(out[0].reject);
    raft_free(r);
}

/* §5.2 with one voter: its own vote is a majority once persisted; commitment follows its own
 * persistence. */
static void test_5_2_single_voter_leads_and_commits_alone(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 1, &rnd, true, true);
    for (unsigned k = 0; k < 2 * T_ELECTION && raft_role(r) == RAFT_FOLLOWER; k++)
        raft_tick(r);
    assert_int_equal(raft_role(r), RAFT_CANDIDATE); /* no PreVote round to run alone */
    assert_int_equal(raft_term(r), 1);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_true(rd.hard_state_changed); /* its vote for itself, to persist first */
    assert_int_equal(rd.entries_n, 0);
    assert_int_equal(rd.msgs_n, 0);
    raft_advance(r);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    raft_ready(r, &rd);
    assert_int_equal(rd.entries_n, 1); /* the no-op */
    assert_int_equal(rd.msgs_n, 0);
    raft_advance(r);
    assert_int_equal(raft_commit(r), 1); /* counted once persisted */
    assert_int_equal(raft_propose(r, "v", 1, NULL), 0);
    assert_int_equal(raft_commit(r), 1);
    raft_ready(r, &rd);
    assert_int_equal(rd.committed_n, 1); /* the no-op, committed by the previous advance */
    raft_advance(r);
    assert_int_equal(raft_commit(r), 2);
    assert_int_equal(raft_read_index(r, 5), 0);
    raft_ready(r, &rd);
    assert_int_equal(rd.committed_n, 1);
    assert_int_equal(rd.committed[0].index, 2);
    assert_int_equal(rd.reads_n, 1);
    assert_int_equal(rd.reads[0].index, 2);
    raft_advance(r);
    raft_free(r);
}

/* thesis §4.2.1: a learner never starts an election. */
static void test_4_2_1_learner_never_campaigns(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft_config c = config(4, 3, &rnd, false, false);
    c.bootstrap.learners_n = 1;
    c.bootstrap.learners[0] = 4;
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    for (unsigned k = 0; k < 5 * T_ELECTION; k++)
        raft_tick(r);
    assert_int_equal(raft_role(r), RAFT_FOLLOWER);
    assert_int_equal(raft_term(r), 0);
    assert_false(raft_has_ready(r));
    raft_free(r);
}

/* §5.1: a server persists its vote before answering: both leave in the same ready batch. */
static void test_5_1_vote_is_persisted_with_the_response(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .term = 4, .from = 2, .to = 1};
    assert_int_equal(raft_step(r, &v), 0);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_true(rd.hard_state_changed);
    assert_int_equal(rd.hard_state.term, 4);
    assert_int_equal(rd.hard_state.vote, 2);
    assert_int_equal(rd.msgs_n, 1);
    assert_int_equal(rd.msgs[0].type, RAFT_MSG_VOTE_RESP);
    raft_advance(r);
    raft_free(r);
}

/* §5.4.1: deny a vote to a candidate whose log is less up-to-date. */
static void test_5_4_1_vote_denied_to_stale_log(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry es[2] = {{.term = 2, .index = 1}, {.term = 2, .index = 2}};
    struct raft_msg a = app(2, 2, 0, 0, es, 2, 0);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_msg out[4];
    take_msgs(r, out, 4);
    /* higher term, but last entry (5, term 1) is older than ours (2, term 2) */
    struct raft_msg v = {
        .type = RAFT_MSG_VOTE, .term = 3, .from = 3, .to = 1, .index = 5, .log_term = 1};
    assert_int_equal(raft_step(r, &v), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_true(out[0].reject);
    assert_int_equal(raft_term(r), 3); /* the term still advances (§5.1) */
    /* same last term, shorter log: denied too */
    v.term = 4;
    v.index = 1;
    v.log_term = 2;
    assert_int_equal(raft_step(r, &v), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_true(out[0].reject);
    raft_free(r);
}

/* Tick follower c until it campaigns; its vote request to node `to`. */
static struct raft_msg campaign_to(struct raft *c, uint64_t to)
{
    for (unsigned k = 0; k < 2 * T_ELECTION && raft_role(c) == RAFT_FOLLOWER; k++)
        raft_tick(c);
    assert_int_equal(raft_role(c), RAFT_CANDIDATE);
    struct raft_msg out[4];
    size_t n = take_msgs(c, out, 4);
    for (size_t i = 0; i < n; i++)
        if (out[i].type == RAFT_MSG_VOTE && out[i].to == to)
            return out[i];
    fail_msg("no vote request to %llu", (unsigned long long)to);
    return out[0];
}

/* Figure 2, RequestVote receiver 1: a request of an older term is refused with the receiver's
 * term (not dropped), the candidate takes that term, and its next campaign can win. Dropped, a
 * candidate whose terms trail those a disruptive server keeps raising (one that missed its
 * demotion, PreVote off) never learns of them and nobody who could win ever does: raft-sim
 * seed 47576 at 3 nodes. */
static void test_5_1_stale_vote_request_refused_with_our_term(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false), *c = node_new(2, 3, &rnd, false, false);
    struct raft_msg out[4];
    /* node 1 reaches term 5: a vote request from node 3, refused to its stale log */
    struct raft_entry es[1] = {{.term = 1, .index = 1}};
    struct raft_msg a = app(1, 3, 0, 0, es, 1, 0);
    assert_int_equal(raft_step(r, &a), 0);
    take_msgs(r, out, 4);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .term = 5, .from = 3, .to = 1};
    assert_int_equal(raft_step(r, &v), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_true(out[0].reject);
    assert_int_equal(raft_term(r), 5);
    /* node 2 campaigns in term 1 with the same log */
    struct raft_msg a2 = app(1, 3, 0, 0, es, 1, 0);
    a2.to = 2;
    assert_int_equal(raft_step(c, &a2), 0);
    take_msgs(c, out, 4);
    struct raft_msg stale = campaign_to(c, 1);
    assert_int_equal(stale.term, 2);
    assert_int_equal(raft_step(r, &stale), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_int_equal(out[0].type, RAFT_MSG_VOTE_RESP);
    assert_true(out[0].reject);
    assert_int_equal(out[0].term, 5); /* our term, so that the candidate learns it */
    assert_int_equal(raft_term(r), 5);
    struct raft_msg resp = out[0];
    assert_int_equal(raft_step(c, &resp), 0);
    assert_int_equal(raft_term(c), 5);
    assert_int_equal(raft_role(c), RAFT_FOLLOWER);
    take_msgs(c, out, 4);
    /* its next campaign is in term 6, above node 1's: granted */
    struct raft_msg fresh = campaign_to(c, 1);
    assert_int_equal(fresh.term, 6);
    assert_int_equal(raft_step(r, &fresh), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_false(out[0].reject);
    assert_int_equal(out[0].term, 6);
    raft_free(r);
    raft_free(c);
}

/* §5.1: a leader that sees a higher term becomes a follower. */
static void test_5_1_leader_steps_down_on_higher_term(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    uint64_t term = raft_term(N(&t, 1));
    struct raft_msg m = {.type = RAFT_MSG_APP_RESP, .term = term + 3, .from = 2, .to = 1};
    assert_int_equal(raft_step(N(&t, 1), &m), 0);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_FOLLOWER);
    assert_int_equal(raft_term(N(&t, 1)), term + 3);
    net_free(&t);
}

/* ---- §5.3 log replication --------------------------------------------------------------- */

static void test_5_3_append_rejected_when_prev_entry_missing(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry e = {.term = 1, .index = 8};
    struct raft_msg a = app(1, 2, 7, 1, &e, 1, 0);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_msg out[4];
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_int_equal(out[0].type, RAFT_MSG_APP_RESP);
    assert_true(out[0].reject);
    assert_int_equal(out[0].index, 7);
    assert_int_equal(out[0].hint, 0); /* our log ends at 0: probe from there */
    assert_int_equal(raft_last_index(r), 0);
    raft_free(r);
}

/* Fast backtracking (thesis §5.3 end): the rejection skips a whole term of conflicting entries. */
static void test_5_3_rejection_hint_skips_conflicting_term(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry t1[3] = {
        {.term = 1, .index = 1}, {.term = 1, .index = 2}, {.term = 1, .index = 3}};
    struct raft_entry t2[2] = {{.term = 2, .index = 4}, {.term = 2, .index = 5}};
    struct raft_msg a = app(1, 2, 0, 0, t1, 3, 0), b = app(2, 3, 3, 1, t2, 2, 0);
    struct raft_msg out[4];
    assert_int_equal(raft_step(r, &a), 0);
    assert_int_equal(raft_step(r, &b), 0);
    take_msgs(r, out, 4);
    /* a leader of term 3 whose entry 5 has term 1 */
    struct raft_msg c = app(3, 2, 5, 1, NULL, 0, 0);
    assert_int_equal(raft_step(r, &c), 0);
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_true(out[0].reject);
    assert_int_equal(out[0].hint, 3);     /* last index with term <= 1 */
    assert_int_equal(out[0].log_term, 1); /* its term */
    raft_free(r);
}

/* §5.3 receiver step 3: a conflicting entry and all that follow it are deleted. */
static void test_5_3_conflicting_suffix_is_replaced(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry t1[3] = {
        {.term = 1, .index = 1}, {.term = 1, .index = 2}, {.term = 1, .index = 3}};
    struct raft_msg a = app(1, 2, 0, 0, t1, 3, 0);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_entry n2 = {.term = 2, .index = 2, .len = 1, .data = (const uint8_t *)"x"};
    struct raft_msg b = app(2, 3, 1, 1, &n2, 1, 0);
    assert_int_equal(raft_step(r, &b), 0);
    assert_int_equal(raft_last_index(r), 2);
    uint64_t term;
    assert_true(raft_term_at(r, 2, &term));
    assert_int_equal(term, 2);
    /* a stale, shorter append does not truncate what follows (§5.3 "if an existing entry
     * conflicts": nothing conflicts here) */
    struct raft_msg c = app(2, 3, 0, 0, NULL, 0, 0);
    assert_int_equal(raft_step(r, &c), 0);
    assert_int_equal(raft_last_index(r), 2);
    raft_free(r);
}

/* §5.4.2: a leader never commits an entry of an earlier term by counting replicas; it commits
 * it only through an entry of its own term. */
/* A heartbeat carries min(match, commit), so a commit past the recipient's last index is a bug
 * in the sender (or a log lost under the recipient): the message is refused and counted, never
 * capped silently to the last index. */
static void test_5_3_heartbeat_commit_past_last_index_is_refused(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry es[3] = {
        {.term = 1, .index = 1}, {.term = 1, .index = 2}, {.term = 1, .index = 3}};
    struct raft_msg a = app(1, 2, 0, 0, es, 3, 1);
    assert_int_equal(raft_step(r, &a), 0);
    assert_int_equal(raft_commit(r), 1);
    struct raft_msg out[4];
    take_msgs(r, out, 4);
    assert_int_equal(raft_msgs_refused(r), 0);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .term = 1, .from = 2, .to = 1, .commit = 9};
    assert_int_equal(raft_step(r, &hb), 0);
    assert_int_equal(raft_commit(r), 1);
    assert_int_equal(raft_msgs_refused(r), 1);
    assert_int_equal(take_msgs(r, out, 4), 0); /* no answer */
    hb.commit = 3;                             /* within the log: taken */
    assert_int_equal(raft_step(r, &hb), 0);
    assert_int_equal(raft_commit(r), 3);
    assert_int_equal(raft_msgs_refused(r), 1);
    raft_free(r);
}

/* §5.1: an acknowledgement leaves only with the batch that persists what it promises. When a
 * newer leader truncates entries acknowledged earlier in the same, unpersisted batch, that
 * acknowledgement is dropped: the entries never reach the disk. */
static void test_5_1_ack_of_entries_truncated_in_the_same_batch_is_dropped(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry t1[3] = {
        {.term = 1, .index = 1}, {.term = 1, .index = 2}, {.term = 1, .index = 3}};
    struct raft_msg a = app(1, 2, 0, 0, t1, 3, 0);
    assert_int_equal(raft_step(r, &a), 0); /* ack of 3 queued, nothing persisted yet */
    struct raft_entry t2 = {.term = 2, .index = 2};
    struct raft_msg b = app(2, 3, 1, 1, &t2, 1, 0);
    assert_int_equal(raft_step(r, &b), 0); /* truncates 2..3 */
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_int_equal(rd.entries_n, 2); /* 1 (term 1) and 2 (term 2) */
    for (size_t i = 0; i < rd.msgs_n; i++)
        if (rd.msgs[i].type == RAFT_MSG_APP_RESP && !rd.msgs[i].reject)
            assert_true(rd.msgs[i].index <= 2);
    assert_int_equal(rd.msgs_n, 1); /* only the ack of 2 to node 3 */
    assert_int_equal(rd.msgs[0].to, 3);
    raft_advance(r);
    raft_free(r);
}

static void test_5_4_2_old_term_entries_not_committed_by_count(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry t1[2] = {{.term = 1, .index = 1}, {.term = 1, .index = 2}};
    struct raft_msg a = app(1, 2, 0, 0, t1, 2, 0);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_msg out[8];
    take_msgs(r, out, 8);
    struct raft_msg tn = {.type = RAFT_MSG_TIMEOUT_NOW, .term = 1, .from = 2, .to = 1};
    assert_int_equal(raft_step(r, &tn), 0);
    take_msgs(r, out, 8);
    struct raft_msg vr = {.type = RAFT_MSG_VOTE_RESP, .term = 2, .from = 3, .to = 1};
    assert_int_equal(raft_step(r, &vr), 0);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    take_msgs(r, out, 8); /* persists the no-op at 3 */
    struct raft_msg ack = {.type = RAFT_MSG_APP_RESP, .term = 2, .from = 3, .to = 1, .index = 2};
    assert_int_equal(raft_step(r, &ack), 0);
    assert_int_equal(raft_commit(r), 0); /* entry 2 is on a majority, but of term 1 */
    ack.index = 3;
    assert_int_equal(raft_step(r, &ack), 0);
    assert_int_equal(raft_commit(r), 3);
    raft_free(r);
}

/* §5.3 with flow control (etcd): at most inflight_msgs_max appends in flight to a follower. */
static void test_5_3_pipelined_appends_bounded_by_window(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    propose(&t, 1, "a");
    settle(&t); /* follower 2 is now in the pipelined (replicate) state */
    t.cut[1][2] = true;
    unsigned apps = 0;
    for (int k = 0; k < 6; k++) {
        propose(&t, 1, "b");
        struct raft_msg out[16];
        size_t n = take_msgs(N(&t, 1), out, 16);
        for (size_t i = 0; i < n; i++)
            apps += out[i].to == 2 && out[i].type == RAFT_MSG_APP;
    }
    assert_int_equal(apps, 2); /* the window (inflight_msgs_max = 2) is full */
    net_free(&t);
}

static void test_5_3_lagging_follower_catches_up(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    t.cut[1][3] = true;
    for (int k = 0; k < 20; k++)
        propose(&t, 1, "payload");
    settle(&t);
    assert_true(raft_last_index(N(&t, 3)) < raft_last_index(N(&t, 1)));
    t.cut[1][3] = false;
    tick_all(&t, 3);
    assert_int_equal(raft_last_index(N(&t, 3)), raft_last_index(N(&t, 1)));
    assert_int_equal(raft_commit(N(&t, 3)), raft_commit(N(&t, 1)));
    net_free(&t);
}

/* §5.3 "if AppendEntries fails ... retry": a pipelined append that was lost, with nothing
 * proposed after it, is recovered through the heartbeat round (regression: found by raft-sim). */
/* etcd: a probe answered with index == match moves the follower to replicate at once, so the
 * next proposal goes out without waiting for a heartbeat. */
static void test_3_5_probe_answered_at_match_moves_to_replicate(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    propose(&t, 1, "a");
    settle(&t); /* follower 2 replicates, match = last */
    uint64_t last = raft_last_index(N(&t, 1));
    assert_int_equal(raft_last_index(N(&t, 2)), last);
    /* a rejection beyond match sends the leader back to probing node 2 */
    struct raft_msg rej = {.type = RAFT_MSG_APP_RESP,
                           .term = raft_term(N(&t, 1)),
                           .from = 2,
                           .to = 1,
                           .reject = true,
                           .index = last + 1,
                           .hint = last};
    assert_int_equal(raft_step(N(&t, 1), &rej), 0);
    settle(&t); /* the probe (no entries) is answered with index == match */
    propose(&t, 1, "b");
    struct raft_msg out[16];
    size_t n = take_msgs(N(&t, 1), out, 16);
    unsigned apps = 0;
    for (size_t i = 0; i < n; i++)
        apps += out[i].to == 2 && out[i].type == RAFT_MSG_APP && out[i].entries_n == 1;
    assert_int_equal(apps, 1); /* sent at once: node 2 is replicating, not paused in a probe */
    net_free(&t);
}

static void test_5_3_lost_pipelined_append_is_recovered_without_new_proposals(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    propose(&t, 1, "a");
    settle(&t); /* follower 2 replicates (pipelined state) */
    t.cut[1][2] = true;
    propose(&t, 1, "b");
    settle(&t); /* the append carrying "b" to node 2 is lost */
    t.cut[1][2] = false;
    assert_true(raft_last_index(N(&t, 2)) < raft_last_index(N(&t, 1)));
    tick_all(&t, 3); /* heartbeats only: no proposal follows */
    assert_int_equal(raft_last_index(N(&t, 2)), raft_last_index(N(&t, 1)));
    net_free(&t);
}

/* ---- thesis §9.6 PreVote, §6.2 CheckQuorum, §4.2.3 disruptive servers -------------------- */

static void test_9_6_prevote_does_not_raise_terms(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, true, false);
    t.cut[1][2] = t.cut[1][3] = true; /* node 1 is cut off: its prevotes go nowhere */
    for (unsigned k = 0; k < 5 * T_ELECTION; k++) {
        raft_tick(N(&t, 1));
        settle(&t);
    }
    assert_int_equal(raft_term(N(&t, 1)), 0);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_PRECANDIDATE);
    /* a prevote request leaves the receiver's term alone */
    struct raft_msg pv = {.type = RAFT_MSG_PREVOTE, .term = 1, .from = 1, .to = 2};
    assert_int_equal(raft_step(N(&t, 2), &pv), 0);
    assert_int_equal(raft_term(N(&t, 2)), 0);
    net_free(&t);
}

/* thesis §9.6: a follower that heard from a leader within the election timeout refuses a
 * pre-vote, even with CheckQuorum off; once the leader is silent for a timeout it grants one. */
static void test_9_6_prevote_refused_while_leader_is_heard(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, true, false);
    elect(&t, 1);
    propose(&t, 1, "x");
    settle(&t);
    uint64_t term = raft_term(N(&t, 2));
    struct raft_msg pv = {.type = RAFT_MSG_PREVOTE,
                          .term = term + 1,
                          .from = 3,
                          .to = 2,
                          .index = raft_last_index(N(&t, 2)) + 5,
                          .log_term = term};
    assert_int_equal(raft_step(N(&t, 2), &pv), 0);
    struct raft_msg out[4];
    assert_int_equal(take_msgs(N(&t, 2), out, 4), 1);
    assert_int_equal(out[0].type, RAFT_MSG_PREVOTE_RESP);
    assert_true(out[0].reject);
    assert_int_equal(raft_term(N(&t, 2)), term);
    /* the leader itself refuses too */
    pv.to = 1;
    assert_int_equal(raft_step(N(&t, 1), &pv), 0);
    assert_int_equal(take_msgs(N(&t, 1), out, 4), 1);
    assert_true(out[0].reject);
    /* the leader goes silent for an election timeout: node 2 grants */
    for (unsigned k = 0; k < T_ELECTION; k++)
        raft_tick(N(&t, 2));
    assert_int_equal(raft_role(N(&t, 2)), RAFT_FOLLOWER); /* its timeout is 2 x T_ELECTION-ish */
    take_msgs(N(&t, 2), out, 4);
    pv.to = 2;
    assert_int_equal(raft_step(N(&t, 2), &pv), 0);
    assert_int_equal(take_msgs(N(&t, 2), out, 4), 1);
    assert_int_equal(out[0].type, RAFT_MSG_PREVOTE_RESP);
    assert_false(out[0].reject);
    net_free(&t);
}

static void test_6_2_check_quorum_leader_steps_down_alone(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, true);
    elect(&t, 1);
    for (unsigned a = 2; a <= 3; a++)
        t.cut[a][1] = true;
    for (unsigned k = 0; k < 2 * T_ELECTION; k++) {
        raft_tick(N(&t, 1));
        settle(&t);
    }
    assert_int_equal(raft_role(N(&t, 1)), RAFT_FOLLOWER);
    net_free(&t);
}

static void test_4_2_3_vote_ignored_while_leader_is_heard(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, true);
    elect(&t, 1);
    uint64_t term = raft_term(N(&t, 2));
    struct raft_msg v = {.type = RAFT_MSG_VOTE,
                         .term = term + 1,
                         .from = 3,
                         .to = 2,
                         .index = 100,
                         .log_term = term};
    assert_int_equal(raft_step(N(&t, 2), &v), 0);
    assert_int_equal(raft_term(N(&t, 2)), term);
    assert_false(raft_has_ready(N(&t, 2)));
    v.context = 1; /* a leadership transfer is honoured */
    assert_int_equal(raft_step(N(&t, 2), &v), 0);
    assert_int_equal(raft_term(N(&t, 2)), term + 1);
    net_free(&t);
}

/* ---- thesis §6.4 ReadIndex ---------------------------------------------------------------- */

/* thesis §6.4 step 1: a read that reaches a new leader before it committed an entry of its term
 * waits (it is not refused) and is answered, at the commit index, once that commit happened and
 * a quorum confirmed a heartbeat round. */
static void test_6_4_read_index_queued_until_commit_in_term(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    t.cut[1][2] = t.cut[1][3] = true;
    struct raft_msg tn = {.type = RAFT_MSG_HEARTBEAT, .term = 1, .from = 2, .to = 1};
    assert_int_equal(raft_step(N(&t, 1), &tn), 0);
    tn.type = RAFT_MSG_TIMEOUT_NOW;
    assert_int_equal(raft_step(N(&t, 1), &tn), 0);
    collect(&t, 1); /* its vote is persisted (the requests are cut off) */
    struct raft_msg vr = {.type = RAFT_MSG_VOTE_RESP, .term = 2, .from = 3, .to = 1};
    assert_int_equal(raft_step(N(&t, 1), &vr), 0);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_LEADER);
    assert_int_equal(raft_commit(N(&t, 1)), 0);
    assert_int_equal(raft_read_index(N(&t, 1), 7), 0); /* queued */
    assert_int_equal(raft_read_index(N(&t, 2), 7), RAFT_ENOTLEADER);
    tick_all(&t, 3); /* heartbeats go nowhere; nothing commits */
    assert_int_equal(t.reads_n, 0);
    t.cut[1][2] = t.cut[1][3] = false;
    tick_all(&t, 3); /* the no-op reaches the followers and commits; then a round confirms */
    assert_int_equal(raft_commit(N(&t, 1)), 1);
    assert_int_equal(t.reads_n, 1);
    assert_int_equal(t.reads_node[0], 1);
    assert_int_equal(t.reads[0].request_id, 7);
    assert_int_equal(t.reads[0].index, 1);
    net_free(&t);
}

static void test_6_4_read_index_waits_for_quorum_heartbeat(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    propose(&t, 1, "w");
    settle(&t);
    uint64_t commit = raft_commit(N(&t, 1));
    t.cut[2][1] = t.cut[3][1] = true; /* no acks */
    assert_int_equal(t.reads_n, 0);
    assert_int_equal(raft_read_index(N(&t, 1), 42), 0);
    settle(&t);                     /* the read's heartbeat round goes out; no answer comes back */
    tick_all(&t, 3);                /* more rounds, still unanswered */
    assert_int_equal(t.reads_n, 0); /* settle() collected every batch: no read state in any */
    assert_false(raft_has_ready(N(&t, 1)));
    t.cut[2][1] = false;
    tick_all(&t, 1); /* a heartbeat round that node 2 acknowledges: with the leader, a quorum */
    assert_int_equal(t.reads_n, 1);
    assert_int_equal(t.reads_node[0], 1);
    assert_int_equal(t.reads[0].request_id, 42);
    assert_int_equal(t.reads[0].index, commit);
    /* the same by hand: a read, then one acknowledgement of a round at least as new */
    struct raft_ready rd;
    assert_int_equal(raft_read_index(N(&t, 1), 43), 0);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT_RESP,
                          .term = raft_term(N(&t, 1)),
                          .from = 2,
                          .to = 1,
                          .context = UINT64_MAX};
    assert_int_equal(raft_step(N(&t, 1), &hb), 0);
    raft_ready(N(&t, 1), &rd);
    assert_int_equal(rd.reads_n, 1);
    assert_int_equal(rd.reads[0].request_id, 43);
    assert_int_equal(rd.reads[0].index, commit);
    raft_advance(N(&t, 1));
    net_free(&t);
}

/* thesis §6.4.1: a follower gets a read index from the leader and serves the read itself. */
static void test_6_4_1_follower_read_index_via_leader(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    propose(&t, 1, "w");
    settle(&t);
    assert_int_equal(raft_read_index(N(&t, 2), 77), 0);
    settle(&t);
    assert_int_equal(t.reads_n, 1);
    assert_int_equal(t.reads_node[0], 2);
    assert_int_equal(t.reads[0].request_id, 77);
    assert_int_equal(t.reads[0].index, raft_commit(N(&t, 1)));
    /* a node that knows no leader refuses */
    uint64_t rnd = 0;
    struct raft *lone = node_new(1, 3, &rnd, false, false);
    assert_int_equal(raft_read_index(lone, 1), RAFT_ENOTLEADER);
    raft_free(lone);
    net_free(&t);
}

/* ---- thesis §3.10 leadership transfer ------------------------------------------------------ */

static void test_3_10_transfer_hands_leadership_over(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, true, true);
    elect(&t, 1);
    propose(&t, 1, "x");
    settle(&t);
    assert_int_equal(raft_transfer_leader(N(&t, 1), 3), 0);
    assert_int_equal(raft_propose(N(&t, 1), "y", 1, NULL), RAFT_EBUSY);
    settle(&t);
    assert_int_equal(raft_role(N(&t, 3)), RAFT_LEADER);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_FOLLOWER);
    assert_int_equal(raft_leader(N(&t, 2)), 3);
    net_free(&t);
}

static bool has_msg(const struct raft_msg *ms, size_t n, uint8_t type, uint64_t to)
{
    for (size_t i = 0; i < n; i++)
        if (ms[i].type == type && ms[i].to == to)
            return true;
    return false;
}

/* thesis §3.10: a TimeoutNow lost on the way is sent again once the caught-up target answers a
 * heartbeat, so the transfer completes before its timeout. */
static void test_3_10_lost_timeout_now_is_resent(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    propose(&t, 1, "x");
    settle(&t);
    t.cut[1][3] = true; /* the TimeoutNow is lost */
    assert_int_equal(raft_transfer_leader(N(&t, 1), 3), 0);
    settle(&t);
    t.cut[1][3] = false;
    assert_int_equal(raft_role(N(&t, 3)), RAFT_FOLLOWER);
    for (unsigned k = 0; k < 3; k++) { /* heartbeats only: followers do not tick */
        raft_tick(N(&t, 1));
        settle(&t);
    }
    assert_int_equal(raft_role(N(&t, 3)), RAFT_LEADER);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_FOLLOWER);
    net_free(&t);
}

/* thesis §3.10: asking again for a transfer to the same target while the first is stuck sends
 * again (here the TimeoutNow, the target being caught up); it is not a no-op. */
static void test_3_10_repeated_transfer_request_sends_again(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    propose(&t, 1, "x");
    settle(&t);
    struct raft_msg out[8];
    assert_int_equal(raft_transfer_leader(N(&t, 1), 3), 0);
    size_t n = take_msgs(N(&t, 1), out, 8); /* lost */
    assert_true(has_msg(out, n, RAFT_MSG_TIMEOUT_NOW, 3));
    assert_int_equal(raft_transfer_leader(N(&t, 1), 3), 0);
    n = take_msgs(N(&t, 1), out, 8);
    assert_true(has_msg(out, n, RAFT_MSG_TIMEOUT_NOW, 3));
    assert_int_equal(raft_propose(N(&t, 1), "y", 1, NULL), RAFT_EBUSY);
    net_free(&t);
}

static void test_3_10_transfer_to_non_voter_refused(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    assert_int_equal(raft_transfer_leader(N(&t, 1), 1), CS_EINVAL);
    assert_int_equal(raft_transfer_leader(N(&t, 1), 9), CS_EINVAL);
    assert_int_equal(raft_transfer_leader(N(&t, 2), 3), RAFT_ENOTLEADER);
    net_free(&t);
}

static void test_3_10_transfer_aborts_after_election_timeout(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    t.cut[1][3] = t.cut[3][1] = true;
    propose(&t, 1, "x");
    settle(&t); /* node 3 now lags and cannot catch up */
    assert_int_equal(raft_transfer_leader(N(&t, 1), 3), 0);
    assert_int_equal(raft_propose(N(&t, 1), "y", 1, NULL), RAFT_EBUSY);
    for (unsigned k = 0; k < T_ELECTION; k++) {
        raft_tick(N(&t, 1));
        settle(&t);
    }
    assert_int_equal(raft_role(N(&t, 1)), RAFT_LEADER);
    assert_int_equal(raft_propose(N(&t, 1), "y", 1, NULL), 0);
    net_free(&t);
}

/* ---- §7 log compaction and InstallSnapshot ------------------------------------------------ */

static void test_7_compacted_log_reaches_follower_as_snapshot(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    t.cut[1][3] = true;
    for (int k = 0; k < 10; k++)
        propose(&t, 1, "entry");
    settle(&t);
    struct raft *l = N(&t, 1);
    uint64_t applied = raft_applied(l);
    assert_true(applied >= 10);
    assert_int_equal(raft_compact(l, applied, 5), 0);
    assert_int_equal(raft_first_index(l), applied + 1);
    assert_int_equal(raft_compact(l, applied, 5), CS_EINVAL); /* not above the last */
    t.cut[1][3] = false;
    /* deliver by hand to look at node 3's batch */
    raft_tick(l);
    collect(&t, 1);
    bool installed = false;
    for (unsigned k = 0; k < 100 && t.qn > 0 && !installed; k++) {
        uint8_t *b = t.q[t.qhead];
        size_t len = t.qlen[t.qhead];
        t.qhead = (t.qhead + 1) % T_QUEUE_MAX;
        t.qn--;
        struct raft_msg m;
        assert_int_equal(raft_msg_decode(b, len, &m), 0);
        assert_int_equal(raft_step(N(&t, m.to), &m), 0);
        raft_msg_release(&m);
        free(b);
        if (raft_has_ready(N(&t, 3))) {
            struct raft_ready rd;
            raft_ready(N(&t, 3), &rd);
            if (rd.snapshot) {
                installed = true;
                assert_int_equal(rd.snapshot->index, applied);
                assert_int_equal(rd.snapshot->bytes, 5);
                assert_non_null(rd.chunk); /* the one chunk comes with the install */
                assert_int_equal(rd.chunk->offset, 0);
                assert_int_equal(rd.chunk->len, 5);
                for (unsigned i = 0; i < 5; i++)
                    assert_int_equal(rd.chunk->data[i], image_byte(i));
                assert_int_equal(rd.committed_n, 0);
            }
            for (size_t i = 0; i < rd.msgs_n; i++)
                enqueue(&t, &rd.msgs[i]);
            raft_advance(N(&t, 3));
        }
        collect(&t, 1);
        collect(&t, 2);
    }
    assert_true(installed);
    settle(&t);
    assert_int_equal(raft_first_index(N(&t, 3)), applied + 1);
    assert_int_equal(raft_commit(N(&t, 3)), raft_commit(l));
    net_free(&t);
}

/* A failed InstallSnapshot reported by the transport sends the follower back to probing, so the
 * next heartbeat answer triggers a new snapshot instead of waiting an election timeout. */
static void test_7_reported_snapshot_failure_retries_at_next_heartbeat(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    t.cut[1][3] = true;
    for (int k = 0; k < 5; k++)
        propose(&t, 1, "entry");
    settle(&t);
    struct raft *l = N(&t, 1);
    assert_int_equal(raft_compact(l, raft_applied(l), 3), 0);
    struct raft_msg hb = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .term = raft_term(l), .from = 3, .to = 1};
    assert_int_equal(raft_step(l, &hb), 0);
    struct raft_msg out[8];
    size_t n = take_msgs(l, out, 8);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].type, RAFT_MSG_SNAP);
    assert_int_equal(raft_step(l, &hb), 0); /* waiting for the snapshot: nothing new */
    assert_int_equal(take_msgs(l, out, 8), 0);
    raft_report_snapshot(l, 3, false);
    raft_tick(l); /* heartbeat round */
    take_msgs(l, out, 8);
    assert_int_equal(raft_step(l, &hb), 0);
    n = take_msgs(l, out, 8);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].type, RAFT_MSG_SNAP);
    net_free(&t);
}

/* §7: a snapshot the follower already covers with its log only moves the commit index. */
static void test_7_snapshot_covered_by_log_keeps_the_log(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry t1[3] = {
        {.term = 1, .index = 1}, {.term = 1, .index = 2}, {.term = 1, .index = 3}};
    struct raft_msg a = app(1, 2, 0, 0, t1, 3, 0);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_msg s = {.type = RAFT_MSG_SNAP,
                         .term = 1,
                         .from = 2,
                         .to = 1,
                         .has_snapshot = true,
                         .chunk = {.transfer = 1, .last = true}};
    s.snapshot.index = 2;
    s.snapshot.term = 1;
    s.snapshot.conf.voters_n = 3;
    s.snapshot.conf.voters[0] = 1;
    s.snapshot.conf.voters[1] = 2;
    s.snapshot.conf.voters[2] = 3;
    assert_int_equal(raft_step(r, &s), 0);
    assert_int_equal(raft_last_index(r), 3);
    assert_int_equal(raft_commit(r), 2);
    assert_int_equal(raft_first_index(r), 1);
    raft_free(r);
}

/* A snapshot whose configuration does not name this node is refused: the log stays as it was
 * and the refusal is counted. */
static void test_7_snapshot_without_this_node_is_refused(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_entry e = {.term = 1, .index = 1};
    struct raft_msg a = app(1, 2, 0, 0, &e, 1, 0);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_msg s = {.type = RAFT_MSG_SNAP,
                         .term = 1,
                         .from = 2,
                         .to = 1,
                         .has_snapshot = true,
                         .chunk = {.transfer = 1, .last = true}};
    s.snapshot.index = 5;
    s.snapshot.term = 1;
    s.snapshot.conf.voters_n = 3;
    s.snapshot.conf.voters[0] = 2;
    s.snapshot.conf.voters[1] = 3;
    s.snapshot.conf.voters[2] = 4;
    assert_int_equal(raft_step(r, &s), 0);
    assert_int_equal(raft_last_index(r), 1);
    assert_int_equal(raft_commit(r), 0);
    assert_int_equal(raft_snapshot(r)->index, 0);
    assert_true(raft_conf_is_voter(raft_conf(r), 1));
    assert_int_equal(raft_msgs_refused(r), 1);
    /* the same snapshot naming node 1 as a learner is installed */
    s.snapshot.conf.learners_n = 1;
    s.snapshot.conf.learners[0] = 1;
    assert_int_equal(raft_step(r, &s), 0);
    assert_int_equal(raft_snapshot(r)->index, 5);
    assert_int_equal(raft_last_index(r), 5);
    raft_free(r);
}

/* ---- §7 / thesis §5.3 snapshots in chunks (raft.h "Snapshots") --------------------------- */

#define T_IMAGE_BYTES 40u /* 10 chunks of 4 bytes */

/* Leader 1 of three nodes (chunks of 4 bytes, `window` in flight, resend after 2 ticks) whose log
 * is compacted past node 3's: node 3 is cut off while entries commit. */
static struct raft *leader_with_lagging_follower(struct tnet *t, unsigned window)
{
    net_init_chunks(t, 3, 4, window, 2);
    elect(t, 1);
    t->cut[1][3] = true;
    for (int k = 0; k < 5; k++)
        propose(t, 1, "entry");
    settle(t);
    struct raft *l = N(t, 1);
    assert_int_equal(raft_compact(l, raft_applied(l), T_IMAGE_BYTES), 0);
    return l;
}

/* The chunks among msgs, checked to be chunks of one transfer of the test image; their offsets
 * go to offs. */
static size_t chunks_in(const struct raft_msg *msgs, size_t n, uint64_t *offs, uint64_t *transfer)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].type != RAFT_MSG_SNAP)
            continue;
        assert_int_equal(msgs[i].snapshot.bytes, T_IMAGE_BYTES);
        assert_int_equal(msgs[i].chunk.len, 4);
        assert_int_equal(msgs[i].chunk.last, msgs[i].chunk.offset == T_IMAGE_BYTES - 4);
        *transfer = msgs[i].chunk.transfer;
        offs[k++] = msgs[i].chunk.offset;
    }
    return k;
}

static struct raft_msg snap_ack(const struct raft *l, uint64_t transfer, uint64_t held)
{
    struct raft_msg a = {.type = RAFT_MSG_SNAP_RESP,
                         .term = raft_term(l),
                         .from = 3,
                         .to = 1,
                         .index = raft_snapshot(l)->index,
                         .context = transfer,
                         .hint = held};
    return a;
}

/* At most cfg.snapshot_inflight_max chunks are unacknowledged; acknowledgements move the window,
 * stale or duplicate ones do not. */
static void test_7_snapshot_chunks_bounded_by_window(void **state)
{
    (void)state;
    struct tnet t;
    struct raft *l = leader_with_lagging_follower(&t, 3);
    struct raft_msg hb = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .term = raft_term(l), .from = 3, .to = 1};
    assert_int_equal(raft_step(l, &hb), 0);
    struct raft_msg out[16];
    uint64_t offs[16], transfer = 0;
    size_t n = chunks_in(out, take_msgs(l, out, 16), offs, &transfer);
    assert_int_equal(n, 3);
    assert_int_equal(offs[0], 0);
    assert_int_equal(offs[1], 4);
    assert_int_equal(offs[2], 8);
    assert_int_equal(raft_step(l, &hb), 0); /* a full window: nothing more */
    assert_int_equal(take_msgs(l, out, 16), 0);
    struct raft_msg a = snap_ack(l, transfer, 8); /* two chunks held: two more go */
    assert_int_equal(raft_step(l, &a), 0);
    n = chunks_in(out, take_msgs(l, out, 16), offs, &transfer);
    assert_int_equal(n, 2);
    assert_int_equal(offs[0], 12);
    assert_int_equal(offs[1], 16);
    assert_int_equal(raft_step(l, &a), 0); /* the same again: a gap, resend the window */
    n = chunks_in(out, take_msgs(l, out, 16), offs, &transfer);
    assert_int_equal(n, 3);
    assert_int_equal(offs[0], 8);
    assert_int_equal(offs[2], 16);
    assert_int_equal(raft_step(l, &a), 0); /* once per level only */
    a.hint = 4;                            /* an older one, reordered: nothing */
    assert_int_equal(raft_step(l, &a), 0);
    a = snap_ack(l, transfer + 1, 20); /* another transfer's: nothing */
    assert_int_equal(raft_step(l, &a), 0);
    assert_int_equal(take_msgs(l, out, 16), 0);
    net_free(&t);
}

/* A lost chunk (or its acknowledgement) is resent from the first unacknowledged chunk after
 * cfg.snapshot_resend_ticks; without any progress for an election timeout the transfer starts
 * over with a new id. */
static void test_7_lost_chunks_resent_after_resend_ticks(void **state)
{
    (void)state;
    struct tnet t;
    struct raft *l = leader_with_lagging_follower(&t, 2);
    struct raft_msg hb = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .term = raft_term(l), .from = 3, .to = 1};
    assert_int_equal(raft_step(l, &hb), 0);
    struct raft_msg out[16];
    uint64_t offs[16], transfer = 0, first;
    assert_int_equal(chunks_in(out, take_msgs(l, out, 16), offs, &transfer), 2);
    first = transfer;
    struct raft_msg a = snap_ack(l, transfer, 4); /* chunk 0 held; chunk 1 and 2 get lost */
    assert_int_equal(raft_step(l, &a), 0);
    assert_int_equal(chunks_in(out, take_msgs(l, out, 16), offs, &transfer), 1);
    assert_int_equal(offs[0], 8);
    raft_tick(l); /* one tick: nothing resent yet */
    size_t n = chunks_in(out, take_msgs(l, out, 16), offs, &transfer);
    assert_int_equal(n, 0);
    raft_tick(l); /* resend_ticks = 2: from the first unacknowledged chunk, a window's worth */
    n = chunks_in(out, take_msgs(l, out, 16), offs, &transfer);
    assert_int_equal(n, 2);
    assert_int_equal(offs[0], 4);
    assert_int_equal(offs[1], 8);
    assert_int_equal(transfer, first);
    for (unsigned k = 2; k < T_ELECTION; k++)
        raft_tick(l); /* no acknowledgement for an election timeout: abandoned */
    take_msgs(l, out, 16);
    assert_int_equal(raft_step(l, &hb), 0); /* the next probe starts a new transfer */
    n = chunks_in(out, take_msgs(l, out, 16), offs, &transfer);
    assert_int_equal(n, 2);
    assert_int_equal(offs[0], 0);
    assert_true(transfer > first);
    net_free(&t);
}

/* What a follower's storage holds: the partial snapshot its save batches wrote and the image it
 * installed, and the answers of the batches. */
struct rxstore {
    uint8_t partial[T_IMAGE_BYTES];
    uint64_t partial_len; /* bytes written in order (a gap would be a bug) */
    uint64_t partial_transfer;
    unsigned writes;           /* chunks written */
    bool installed;            /* a batch installed the partial snapshot */
    unsigned installs_partial; /* installs of a partial snapshot shorter than the image */
    struct raft_msg acks[32];  /* SNAP_RESP and APP_RESP sent, in order */
    unsigned acks_n;
};

/* Handle node r's ready batches as a storage would (raft.h struct raft_batch). */
static void rx_drain(struct raft *r, struct rxstore *x)
{
    for (int k = 0; k < 8 && raft_has_ready(r); k++) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        if (rd.chunk) {
            const struct raft_chunk *c = rd.chunk;
            if (c->offset == 0) {
                x->partial_len = 0;
                x->partial_transfer = c->transfer;
            }
            assert_int_equal(c->offset, x->partial_len); /* in order, no gap */
            assert_int_equal(c->transfer, x->partial_transfer);
            assert_true(c->offset + c->len <= T_IMAGE_BYTES);
            memcpy(x->partial + c->offset, c->data, c->len);
            x->partial_len += c->len;
            x->writes++;
        }
        if (rd.snapshot) {
            assert_non_null(rd.chunk); /* the install rides with the last chunk */
            x->installed = true;
            x->installs_partial += x->partial_len != rd.snapshot->bytes;
        }
        for (size_t i = 0; i < rd.msgs_n && x->acks_n < 32; i++)
            if (rd.msgs[i].type == RAFT_MSG_SNAP_RESP || rd.msgs[i].type == RAFT_MSG_APP_RESP)
                x->acks[x->acks_n++] = rd.msgs[i];
        raft_advance(r);
    }
}

static uint8_t t_image[T_IMAGE_BYTES];

/* Chunk k (4 bytes) of transfer `transfer` of the test image: snapshot at index 5 of term 1. */
static struct raft_msg chunk_msg(uint64_t term, uint64_t from, uint64_t transfer, unsigned k)
{
    for (unsigned i = 0; i < T_IMAGE_BYTES; i++)
        t_image[i] = image_byte(i);
    struct raft_msg m = {.type = RAFT_MSG_SNAP,
                         .term = term,
                         .from = from,
                         .to = 1,
                         .has_snapshot = true,
                         .snapshot = {.index = 5, .term = 1, .bytes = T_IMAGE_BYTES},
                         .chunk = {.transfer = transfer,
                                   .offset = 4u * k,
                                   .len = 4,
                                   .last = 4u * k + 4 == T_IMAGE_BYTES,
                                   .data = t_image + 4u * k}};
    m.snapshot.conf.voters_n = 3;
    for (unsigned i = 0; i < 3; i++)
        m.snapshot.conf.voters[i] = i + 1;
    return m;
}

static const struct raft_msg *last_ack(const struct rxstore *x)
{
    assert_true(x->acks_n > 0);
    return &x->acks[x->acks_n - 1];
}

/* The follower takes chunks in offset order only: duplicates and reordered chunks are not
 * written and their answer repeats the bytes held; the install comes with the last chunk and the
 * image assembled equals the leader's. */
static void test_7_follower_takes_chunks_in_order_and_installs_on_the_last(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct rxstore x;
    memset(&x, 0, sizeof(x));
    struct raft_msg m = chunk_msg(1, 2, 7, 1); /* chunk 1 first: a transfer we do not know */
    assert_int_equal(raft_step(r, &m), 0);
    rx_drain(r, &x);
    assert_int_equal(x.writes, 0);
    assert_int_equal(last_ack(&x)->type, RAFT_MSG_SNAP_RESP);
    assert_true(last_ack(&x)->reject);
    for (unsigned k = 0; k < T_IMAGE_BYTES / 4; k++) {
        m = chunk_msg(1, 2, 7, k);
        assert_int_equal(raft_step(r, &m), 0);
        if (k == 3) { /* a duplicate and one from the future, in the same batch */
            assert_int_equal(raft_step(r, &m), 0);
            struct raft_msg ahead = chunk_msg(1, 2, 7, 6);
            assert_int_equal(raft_step(r, &ahead), 0);
        }
        rx_drain(r, &x);
        assert_int_equal(x.partial_len, 4u * (k + 1));
        assert_int_equal(x.installed, k == T_IMAGE_BYTES / 4 - 1);
        if (k < T_IMAGE_BYTES / 4 - 1) {
            const struct raft_msg *a = last_ack(&x);
            assert_int_equal(a->type, RAFT_MSG_SNAP_RESP);
            assert_false(a->reject);
            assert_int_equal(a->context, 7);
            assert_int_equal(a->hint, 4u * (k + 1));
        }
    }
    assert_int_equal(x.writes, T_IMAGE_BYTES / 4);
    assert_int_equal(x.installs_partial, 0);
    assert_memory_equal(x.partial, t_image, T_IMAGE_BYTES);
    assert_int_equal(last_ack(&x)->type, RAFT_MSG_APP_RESP);
    assert_int_equal(last_ack(&x)->index, 5);
    assert_int_equal(raft_snapshot(r)->index, 5);
    assert_int_equal(raft_commit(r), 5);
    m = chunk_msg(1, 2, 7, T_IMAGE_BYTES / 4 - 1); /* the last chunk again: no second install */
    x.installed = false;
    assert_int_equal(raft_step(r, &m), 0);
    rx_drain(r, &x);
    assert_false(x.installed);
    raft_free(r);
}

/* A new leader (a new term) ends the transfer in progress: its chunks are refused, its partial
 * snapshot is never installed, and the new leader's transfer begins at offset 0 (the storage
 * discards the partial one). */
static void test_7_transfer_aborted_on_leader_change(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct rxstore x;
    memset(&x, 0, sizeof(x));
    for (unsigned k = 0; k < 3; k++) {
        struct raft_msg m = chunk_msg(1, 2, 7, k);
        assert_int_equal(raft_step(r, &m), 0);
    }
    rx_drain(r, &x);
    assert_int_equal(x.partial_len, 12);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .term = 2, .from = 3, .to = 1};
    assert_int_equal(raft_step(r, &hb), 0); /* leader 3 in term 2 */
    rx_drain(r, &x);
    for (unsigned k = 3; k < T_IMAGE_BYTES / 4; k++) { /* the old leader goes on: stale term */
        struct raft_msg m = chunk_msg(1, 2, 7, k);
        assert_int_equal(raft_step(r, &m), 0);
    }
    rx_drain(r, &x);
    assert_int_equal(x.partial_len, 12);
    assert_false(x.installed);
    struct raft_msg m = chunk_msg(2, 3, 7, 3); /* new leader, same transfer id, mid-way */
    assert_int_equal(raft_step(r, &m), 0);
    rx_drain(r, &x);
    assert_true(last_ack(&x)->reject);
    assert_int_equal(x.partial_len, 12);
    for (unsigned k = 0; k < T_IMAGE_BYTES / 4; k++) {
        m = chunk_msg(2, 3, 1, k);
        assert_int_equal(raft_step(r, &m), 0);
        rx_drain(r, &x);
        if (k == 0)
            assert_int_equal(x.partial_len, 4); /* the partial snapshot began again */
    }
    assert_true(x.installed);
    assert_int_equal(x.installs_partial, 0);
    assert_int_equal(x.partial_transfer, 1);
    assert_memory_equal(x.partial, t_image, T_IMAGE_BYTES);
    assert_int_equal(raft_snapshot(r)->index, 5);
    raft_free(r);
}

/* A follower that restarted in the middle of a transfer refuses its next chunk; the leader then
 * starts a new transfer from offset 0 at once, which completes through the network. */
static void test_7_restarted_follower_gets_a_new_transfer(void **state)
{
    (void)state;
    struct tnet t;
    struct raft *l = leader_with_lagging_follower(&t, 2);
    struct raft_msg hb = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .term = raft_term(l), .from = 3, .to = 1};
    assert_int_equal(raft_step(l, &hb), 0);
    struct raft_msg out[16];
    uint64_t offs[16], transfer = 0;
    assert_int_equal(chunks_in(out, take_msgs(l, out, 16), offs, &transfer), 2);
    /* node 3 held chunk 0 and 1, then restarted: it knows nothing of the transfer */
    struct raft_msg a = snap_ack(l, transfer, 8);
    assert_int_equal(raft_step(l, &a), 0);
    size_t n = take_msgs(l, out, 16);
    assert_int_equal(n, 2);
    a.reject = true;
    a.hint = 0;
    assert_int_equal(raft_step(l, &a), 0);
    uint64_t old = transfer;
    n = chunks_in(out, take_msgs(l, out, 16), offs, &transfer);
    assert_int_equal(n, 2);
    assert_int_equal(offs[0], 0);
    assert_true(transfer > old);
    /* the real node 3 gets the whole image through the network */
    t.cut[1][3] = false;
    for (unsigned k = 0; k < 4 * T_ELECTION && raft_snapshot(N(&t, 3))->index == 0; k++)
        tick_all(&t, 1);
    assert_int_equal(raft_snapshot(N(&t, 3))->index, raft_snapshot(l)->index);
    assert_int_equal(raft_snapshot(N(&t, 3))->bytes, T_IMAGE_BYTES);
    settle(&t);
    assert_int_equal(raft_commit(N(&t, 3)), raft_commit(l));
    net_free(&t);
}

/* ---- thesis §4 membership ------------------------------------------------------------------ */

static void test_4_1_one_membership_change_at_a_time(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    settle(&t);
    uint64_t idx;
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_ADD_LEARNER, 4, &idx), 0);
    /* the configuration is in force as soon as it is in the log */
    assert_true(raft_conf_is_learner(raft_conf(N(&t, 1)), 4));
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_REMOVE, 3, NULL), RAFT_EBUSY);
    settle(&t);
    assert_true(raft_commit(N(&t, 1)) >= idx);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_REMOVE, 3, NULL), 0);
    assert_false(raft_conf_is_voter(raft_conf(N(&t, 1)), 3));
    net_free(&t);
}

static void test_4_1_leader_waits_for_commit_in_its_term(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    t.cut[1][2] = t.cut[1][3] = true;
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .term = 1, .from = 2, .to = 1};
    assert_int_equal(raft_step(N(&t, 1), &m), 0);
    m.type = RAFT_MSG_TIMEOUT_NOW;
    assert_int_equal(raft_step(N(&t, 1), &m), 0);
    collect(&t, 1); /* its vote is persisted (the requests are cut off) */
    struct raft_msg vr = {.type = RAFT_MSG_VOTE_RESP, .term = 2, .from = 3, .to = 1};
    assert_int_equal(raft_step(N(&t, 1), &vr), 0);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_LEADER);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_ADD_LEARNER, 4, NULL), RAFT_EBUSY);
    net_free(&t);
}

/* thesis §4.2.1: a new server joins as a learner and is promoted only once caught up. */
static void test_4_2_1_promotion_waits_for_learner_catch_up(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    settle(&t);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_ADD_LEARNER, 4, NULL), 0);
    settle(&t); /* node 4 does not exist: it never acknowledges */
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_PROMOTE, 4, NULL), RAFT_EBUSY);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_PROMOTE, 2, NULL), CS_EINVAL);
    /* node 4 acknowledges everything: now it may become a voter */
    struct raft_msg ack = {.type = RAFT_MSG_APP_RESP,
                           .term = raft_term(N(&t, 1)),
                           .from = 4,
                           .to = 1,
                           .index = raft_last_index(N(&t, 1))};
    assert_int_equal(raft_step(N(&t, 1), &ack), 0);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_PROMOTE, 4, NULL), 0);
    assert_true(raft_conf_is_voter(raft_conf(N(&t, 1)), 4));
    assert_int_equal(raft_conf(N(&t, 1))->learners_n, 0);
    net_free(&t);
}

static void test_4_1_changes_that_do_not_apply_are_refused(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    settle(&t);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_REMOVE, 7, NULL), CS_EINVAL);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_ADD_LEARNER, 2, NULL), CS_EINVAL);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_PROMOTE, 2, NULL), CS_EINVAL);
    struct raft_conf same = *raft_conf(N(&t, 1));
    assert_int_equal(raft_propose_members(N(&t, 1), &same, 0, NULL), CS_EINVAL);
    assert_int_equal(raft_propose_members(N(&t, 1), &same, RAFT_CONF_JOINT, NULL), CS_EINVAL);
    struct raft_conf none = {.voters_n = 0};
    assert_int_equal(raft_propose_members(N(&t, 1), &none, 0, NULL), CS_EINVAL);
    assert_int_equal(raft_last_index(N(&t, 1)), 1); /* nothing appended */
    net_free(&t);
}

/* thesis §4.2.2: a leader removed from the configuration keeps leading until C_new commits,
 * without counting itself in C_new's majority, then steps down; the others elect a leader. */
static void test_4_2_2_removed_leader_steps_down_once_c_new_commits(void **state)
{
    (void)state;
    struct tnet t;
    net_init(&t, 3, false, false);
    elect(&t, 1);
    settle(&t);
    t.cut[1][3] = t.cut[3][1] = true; /* of C_new = {2, 3} only node 2 hears the leader */
    uint64_t idx;
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_REMOVE, 1, &idx), 0);
    assert_false(raft_conf_is_voter(raft_conf(N(&t, 1)), 1));
    settle(&t);
    /* the leader and node 2 hold the entry: a majority of {1, 2, 3}, not of {2, 3} */
    assert_int_equal(raft_last_index(N(&t, 2)), idx);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_LEADER);
    assert_true(raft_commit(N(&t, 1)) < idx);
    t.cut[1][3] = t.cut[3][1] = false;
    tick_all(&t, 1); /* a heartbeat round: node 3 catches up, C_new commits */
    assert_true(raft_commit(N(&t, 1)) >= idx);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_FOLLOWER);
    assert_true(raft_commit(N(&t, 2)) >= idx); /* the commit went out before it stepped down */
    tick_all(&t, 3 * T_ELECTION);
    bool led = raft_role(N(&t, 2)) == RAFT_LEADER || raft_role(N(&t, 3)) == RAFT_LEADER;
    assert_true(led);
    assert_int_equal(raft_role(N(&t, 1)), RAFT_FOLLOWER); /* not a voter: never campaigns */
    net_free(&t);
}

/* thesis §4.2.2: a voter that its latest configuration, still uncommitted, removes may be needed
 * until that configuration commits: it still campaigns (its own vote counting in no majority);
 * once the removal is committed it never does. */
static void test_4_2_2_removed_voter_campaigns_until_its_removal_commits(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_conf c = {.voters_n = 2, .voters = {2, 3}};
    uint8_t buf[RAFT_CONF_BYTES_MAX];
    size_t len = raft_conf_encode(&c, buf);
    struct raft_entry e = {
        .term = 1, .index = 1, .type = RAFT_ENTRY_CONF, .len = (uint32_t)len, .data = buf};
    struct raft_msg a = app(1, 2, 0, 0, &e, 1, 0);
    assert_int_equal(raft_step(r, &a), 0);
    assert_false(raft_conf_is_voter(raft_conf(r), 1));
    for (unsigned k = 0; k < 2 * T_ELECTION && raft_role(r) == RAFT_FOLLOWER; k++)
        raft_tick(r);
    assert_int_equal(raft_role(r), RAFT_CANDIDATE);
    struct raft_msg out[4];
    assert_int_equal(take_msgs(r, out, 4), 3); /* the append's answer, votes asked of 2 and 3 */
    struct raft_msg vr = {.type = RAFT_MSG_VOTE_RESP, .term = raft_term(r), .from = 2, .to = 1};
    assert_int_equal(raft_step(r, &vr), 0);
    assert_int_equal(raft_role(r), RAFT_CANDIDATE); /* 2 of {2, 3} needed: its own counts not */
    vr.from = 3;
    assert_int_equal(raft_step(r, &vr), 0);
    assert_int_equal(raft_role(r), RAFT_LEADER); /* leads until C_new commits */
    raft_free(r);

    r = node_new(1, 3, &rnd, false, false);
    a.commit = 1; /* the removal is committed */
    assert_int_equal(raft_step(r, &a), 0);
    for (unsigned k = 0; k < 3 * T_ELECTION; k++)
        raft_tick(r);
    assert_int_equal(raft_role(r), RAFT_FOLLOWER);
    raft_free(r);
}

/* ---- thesis §4.3 joint consensus ---------------------------------------------------------- */

static struct raft_conf conf_of(unsigned nv, const uint64_t *v, unsigned nl, const uint64_t *l)
{
    struct raft_conf c;
    memset(&c, 0, sizeof(c));
    c.voters_n = (uint8_t)nv;
    c.learners_n = (uint8_t)nl;
    for (unsigned i = 0; i < nv; i++)
        c.voters[i] = v[i];
    for (unsigned i = 0; i < nl; i++)
        c.learners[i] = l[i];
    return c;
}

/* A change of two voters enters C_old,new with one entry, in force on the leader at once and on
 * a follower as soon as the entry is in its log (thesis §4.1, §4.3); a change of one voter is one
 * entry unless RAFT_CONF_JOINT asks for the joint path. */
static void test_4_3_change_of_two_voters_enters_joint_configuration(void **state)
{
    (void)state;
    struct tnet t;
    net_init_voters(&t, 5, 3);
    elect(&t, 1);
    settle(&t);
    t.cut[1][3] = true; /* keep it uncommitted: node 3 never acknowledges */
    t.cut[1][2] = true;
    struct raft_conf target = conf_of(3, (uint64_t[]){1, 4, 5}, 0, NULL);
    uint64_t idx;
    assert_int_equal(raft_propose_members(N(&t, 1), &target, 0, &idx), 0);
    const struct raft_conf *c = raft_conf(N(&t, 1));
    assert_true(raft_conf_is_joint(c));
    assert_int_equal(c->voters_n, 3);
    assert_int_equal(c->old_n, 3);
    for (uint64_t id = 1; id <= 5; id++)
        assert_true(raft_conf_is_voter(c, id)); /* a voter of one half votes */
    tick_all(&t, 1);                            /* new members are probed at the next heartbeat */
    assert_true(raft_conf_is_joint(raft_conf(N(&t, 4))));
    assert_false(raft_conf_is_joint(raft_conf(N(&t, 2))));
    assert_int_equal(raft_last_index(N(&t, 1)), idx); /* no C_new before C_old,new commits */
    net_free(&t);

    net_init(&t, 3, false, false);
    elect(&t, 1);
    settle(&t);
    target = conf_of(2, (uint64_t[]){1, 2}, 0, NULL);
    assert_int_equal(raft_propose_members(N(&t, 1), &target, 0, &idx), 0);
    assert_false(raft_conf_is_joint(raft_conf(N(&t, 1)))); /* one voter: one entry */
    settle(&t);
    target = conf_of(3, (uint64_t[]){1, 2, 3}, 0, NULL);
    assert_int_equal(raft_propose_members(N(&t, 1), &target, RAFT_CONF_JOINT, &idx), 0);
    assert_true(raft_conf_is_joint(raft_conf(N(&t, 1)))); /* asked for explicitly */
    net_free(&t);
}

/* thesis §4.3: while joint, commitment needs a majority of C_old and of C_new. The leader and the
 * two new voters make C_new's majority; with C_old's other two cut off nothing commits. Healed,
 * C_old,new commits and the leader appends C_new by itself (auto-leave). */
static void test_4_3_joint_commit_needs_both_majorities_then_leaves(void **state)
{
    (void)state;
    struct tnet t;
    net_init_voters(&t, 5, 3);
    elect(&t, 1);
    settle(&t);
    t.cut[1][2] = t.cut[1][3] = true;
    struct raft_conf target = conf_of(3, (uint64_t[]){1, 4, 5}, 0, NULL);
    uint64_t idx;
    assert_int_equal(raft_propose_members(N(&t, 1), &target, 0, &idx), 0);
    propose(&t, 1, "x");
    settle(&t);
    assert_int_equal(raft_last_index(N(&t, 4)), idx + 1);
    assert_int_equal(raft_last_index(N(&t, 5)), idx + 1);
    assert_true(raft_commit(N(&t, 1)) < idx);
    assert_true(raft_conf_is_joint(raft_conf(N(&t, 1))));
    t.cut[1][2] = t.cut[1][3] = false;
    tick_all(&t, 2);
    assert_true(raft_commit(N(&t, 1)) >= idx + 1);
    const struct raft_conf *c = raft_conf(N(&t, 1));
    assert_false(raft_conf_is_joint(c)); /* C_new appended ... */
    assert_int_equal(raft_last_index(N(&t, 1)), idx + 2);
    assert_int_equal(raft_entry_at(N(&t, 1), idx + 2)->type, RAFT_ENTRY_CONF);
    assert_int_equal(raft_commit(N(&t, 1)), idx + 2); /* ... and committed */
    assert_true(raft_conf_is_voter(c, 4));
    assert_false(raft_conf_is_voter(c, 2));
    assert_false(raft_conf_is_joint(raft_conf(N(&t, 4))));
    net_free(&t);
}

/* thesis §4.3: while joint, an election needs a majority of C_old and of C_new. Node 4 gets the
 * vote of node 5 (with its own, a majority of C_new = {1, 4, 5}), which does not elect it; the
 * votes of 2 and 3 (C_old = {1, 2, 3}) do. */
static void test_4_3_joint_election_needs_both_majorities(void **state)
{
    (void)state;
    struct tnet t;
    net_init_voters(&t, 5, 3);
    elect(&t, 1);
    settle(&t);
    t.cut[1][2] = t.cut[1][3] = true; /* C_old,new stays uncommitted */
    struct raft_conf target = conf_of(3, (uint64_t[]){1, 4, 5}, 0, NULL);
    assert_int_equal(raft_propose_members(N(&t, 1), &target, 0, NULL), 0);
    tick_all(&t, 1);
    assert_true(raft_conf_is_joint(raft_conf(N(&t, 4))));
    for (uint64_t id = 1; id <= 3; id++)
        t.cut[4][id] = t.cut[id][4] = true;
    struct raft_msg tn = {
        .type = RAFT_MSG_TIMEOUT_NOW, .term = raft_term(N(&t, 4)), .from = 1, .to = 4};
    assert_int_equal(raft_step(N(&t, 4), &tn), 0);
    settle(&t);
    assert_int_equal(raft_role(N(&t, 4)), RAFT_CANDIDATE);
    struct raft_msg vr = {
        .type = RAFT_MSG_VOTE_RESP, .term = raft_term(N(&t, 4)), .from = 2, .to = 4};
    assert_int_equal(raft_step(N(&t, 4), &vr), 0);
    assert_int_equal(raft_role(N(&t, 4)), RAFT_CANDIDATE); /* C_old: 2 of 3 needed, 1 has */
    vr.from = 3;
    assert_int_equal(raft_step(N(&t, 4), &vr), 0);
    assert_int_equal(raft_role(N(&t, 4)), RAFT_LEADER);
    net_free(&t);
}

/* thesis §4.3: no other change is accepted while joint or while a change is uncommitted; a voter
 * demoted to learner stays a voter of C_old until the leave (etcd's LearnersNext). */
static void test_4_3_no_change_while_joint_and_demoted_voter_waits(void **state)
{
    (void)state;
    struct tnet t;
    net_init_voters(&t, 5, 3);
    elect(&t, 1);
    settle(&t);
    t.cut[1][2] = t.cut[1][3] = true;
    struct raft_conf target = conf_of(3, (uint64_t[]){1, 4, 5}, 1, (uint64_t[]){2});
    uint64_t idx;
    assert_int_equal(raft_propose_members(N(&t, 1), &target, 0, &idx), 0);
    const struct raft_conf *c = raft_conf(N(&t, 1));
    assert_int_equal(c->learners_next_n, 1);
    assert_int_equal(c->learners_next[0], 2);
    assert_true(raft_conf_is_voter(c, 2));
    assert_false(raft_conf_is_learner(c, 2));
    struct raft_conf other = conf_of(1, (uint64_t[]){1}, 0, NULL);
    assert_int_equal(raft_propose_members(N(&t, 1), &other, 0, NULL), RAFT_EBUSY);
    assert_int_equal(raft_propose_conf(N(&t, 1), RAFT_CC_REMOVE, 4, NULL), RAFT_EBUSY);
    struct raft_conf joint = *c;
    assert_int_equal(raft_propose_members(N(&t, 1), &joint, 0, NULL), CS_EINVAL);
    settle(&t);
    assert_int_equal(raft_last_index(N(&t, 1)), idx); /* nothing was appended */
    t.cut[1][2] = t.cut[1][3] = false;
    tick_all(&t, 2);
    c = raft_conf(N(&t, 1));
    assert_false(raft_conf_is_joint(c));
    assert_true(raft_conf_is_learner(c, 2));
    assert_false(raft_conf_is_voter(c, 2));
    assert_true(raft_conf_is_learner(raft_conf(N(&t, 2)), 2));
    assert_int_equal(raft_commit(N(&t, 1)), idx + 1);
    assert_int_equal(raft_propose_members(N(&t, 1), &other, RAFT_CONF_JOINT, NULL), 0);
    net_free(&t);
}

/* thesis §4.1 / §4.3: a follower drops C_old,new again when a truncation removes its entry. */
static void test_4_3_truncated_joint_entry_is_rolled_back(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_conf c = conf_of(3, (uint64_t[]){1, 4, 5}, 0, NULL);
    c.old_n = 3;
    c.old[0] = 1;
    c.old[1] = 2;
    c.old[2] = 3;
    uint8_t buf[RAFT_CONF_BYTES_MAX];
    size_t len = raft_conf_encode(&c, buf);
    struct raft_entry e = {
        .term = 1, .index = 1, .type = RAFT_ENTRY_CONF, .len = (uint32_t)len, .data = buf};
    struct raft_msg a = app(1, 2, 0, 0, &e, 1, 0);
    assert_int_equal(raft_step(r, &a), 0);
    assert_true(raft_conf_is_joint(raft_conf(r)));
    assert_true(raft_conf_is_voter(raft_conf(r), 5));
    struct raft_entry f = {.term = 2, .index = 1};
    struct raft_msg b = app(2, 3, 0, 0, &f, 1, 0);
    assert_int_equal(raft_step(r, &b), 0);
    assert_false(raft_conf_is_joint(raft_conf(r)));
    assert_false(raft_conf_is_voter(raft_conf(r), 5));
    assert_int_equal(raft_conf(r)->voters_n, 3);
    raft_free(r);
}

/* thesis §4.1: a follower uses a configuration as soon as the entry is in its log and drops it
 * again when the entry is truncated. */
static void test_4_1_truncated_configuration_is_rolled_back(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    struct raft_conf c = {.voters_n = 3, .voters = {1, 2, 3}, .learners_n = 1, .learners = {4}};
    uint8_t buf[RAFT_CONF_BYTES_MAX];
    size_t len = raft_conf_encode(&c, buf);
    struct raft_entry e = {
        .term = 1, .index = 1, .type = RAFT_ENTRY_CONF, .len = (uint32_t)len, .data = buf};
    struct raft_msg a = app(1, 2, 0, 0, &e, 1, 0);
    assert_int_equal(raft_step(r, &a), 0);
    assert_true(raft_conf_is_learner(raft_conf(r), 4));
    struct raft_entry f = {.term = 2, .index = 1};
    struct raft_msg b = app(2, 3, 0, 0, &f, 1, 0);
    assert_int_equal(raft_step(r, &b), 0);
    assert_false(raft_conf_is_learner(raft_conf(r), 4));
    raft_free(r);
}

/* §8: a new leader starts its term with an empty entry. When its log is full and that entry
 * cannot be appended, it steps down instead of leading a term in which it can commit nothing. */
static void test_8_leader_steps_down_without_its_empty_entry(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft_config c = config(1, 3, &rnd, false, false);
    c.log_entries_max = 2;
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    struct raft_entry es[2] = {{.term = 1, .index = 1}, {.term = 1, .index = 2}};
    struct raft_msg a = app(1, 2, 0, 0, es, 2, 0);
    assert_int_equal(raft_step(r, &a), 0);
    assert_int_equal(raft_last_index(r), 2); /* the log is full */
    struct raft_msg tn = {.type = RAFT_MSG_TIMEOUT_NOW, .term = 1, .from = 2, .to = 1};
    assert_int_equal(raft_step(r, &tn), 0);
    assert_int_equal(raft_role(r), RAFT_CANDIDATE);
    struct raft_msg out[4];
    assert_int_equal(take_msgs(r, out, 4), 3); /* the ack, its vote persisted, two requests */
    struct raft_msg vr = {.type = RAFT_MSG_VOTE_RESP, .term = 2, .from = 3, .to = 1};
    assert_int_equal(raft_step(r, &vr), 0); /* won the election */
    assert_int_equal(raft_role(r), RAFT_FOLLOWER);
    assert_int_equal(raft_term(r), 2);
    assert_int_equal(raft_leader(r), 0);
    assert_int_equal(raft_last_index(r), 2);
    assert_int_equal(raft_propose(r, "x", 1, NULL), RAFT_ENOTLEADER);
    raft_free(r);
}

/* cfg.committed_bytes_max caps the committed entries one ready hands out (etcd
 * MaxCommittedSizePerReady), yet every batch holds at least one entry: an entry larger than the
 * cap comes alone, and everything committed is handed out in order over later batches. */
static void test_committed_entries_per_ready_capped_in_bytes(void **state)
{
    (void)state;
    uint64_t rnd = 0;
    struct raft_config c = config(1, 1, &rnd, false, false);
    c.committed_bytes_max = 250;
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    for (int k = 0; k < 30 && raft_role(r) == RAFT_FOLLOWER; k++)
        raft_tick(r);
    struct raft_ready vote;
    raft_ready(r, &vote); /* its vote, persisted: it leads from the advance */
    raft_advance(r);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    static const uint8_t big[300], small[100];
    assert_int_equal(raft_propose(r, small, sizeof(small), NULL), 0);
    assert_int_equal(raft_propose(r, small, sizeof(small), NULL), 0);
    assert_int_equal(raft_propose(r, small, sizeof(small), NULL), 0);
    assert_int_equal(raft_propose(r, big, sizeof(big), NULL), 0);
    assert_int_equal(raft_propose(r, small, sizeof(small), NULL), 0);
    uint64_t next = 1, batches = 0;
    size_t sizes[16];
    for (int k = 0; k < 16 && raft_has_ready(r); k++) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        uint64_t bytes = 0;
        for (size_t i = 0; i < rd.committed_n; i++) {
            assert_int_equal(rd.committed[i].index, next);
            next++;
            bytes += rd.committed[i].len;
        }
        if (rd.committed_n) {
            assert_true(bytes <= 250 || rd.committed_n == 1);
            sizes[batches++] = rd.committed_n;
        }
        raft_advance(r);
    }
    assert_int_equal(next, 7); /* the empty entry of the term and the five proposals */
    /* [empty, 100, 100] = 200 bytes, [100], [300 alone], [100] */
    assert_int_equal(batches, 4);
    assert_int_equal(sizes[0], 3);
    assert_int_equal(sizes[1], 1);
    assert_int_equal(sizes[2], 1);
    assert_int_equal(sizes[3], 1);
    assert_int_equal(raft_applied(r), 6);
    raft_free(r);
}

/* ---- §5.1 persistent state across a restart -------------------------------------------- */

#define TSTORE_ENTRIES_MAX 64u

/* A minimal struct raft_storage: entry data points into the test's string literals or into
 * copies kept in `bytes`. */
struct tstore {
    struct raft_hard_state hs;
    struct raft_snapshot snap;
    struct raft_entry ents[TSTORE_ENTRIES_MAX];
    uint8_t bytes[TSTORE_ENTRIES_MAX][16];
    uint64_t last;
    unsigned saves;        /* calls of save */
    size_t last_entries_n; /* entries of the last call */
    bool last_had_hs;      /* the last call carried a hard state */
};

static int ts_load(void *ctx, struct raft_hard_state *hs, struct raft_snapshot *snap,
                   uint64_t *last)
{
    struct tstore *t = ctx;
    *hs = t->hs;
    *snap = t->snap;
    *last = t->last;
    return 0;
}

static int ts_read(void *ctx, uint64_t lo, uint64_t hi, struct raft_entry *out)
{
    struct tstore *t = ctx;
    for (uint64_t i = lo; i <= hi; i++)
        out[i - lo] = t->ents[i];
    return 0;
}

/* One batch, one call (raft.h: the unit a crash keeps whole or drops whole). Counts the calls
 * and what the last one carried. */
static int ts_save(void *ctx, const struct raft_batch *b)
{
    struct tstore *t = ctx;
    if (b->snapshot)
        return CS_EINVAL; /* not used here */
    t->saves++;
    t->last_entries_n = b->entries_n;
    t->last_had_hs = b->hard_state != NULL;
    if (b->entries_n && b->entries[0].index <= t->last)
        t->last = b->entries[0].index - 1; /* the conflicting suffix goes first (§5.3) */
    for (size_t i = 0; i < b->entries_n; i++) {
        uint64_t at = b->entries[i].index;
        if (at != t->last + 1 || at >= TSTORE_ENTRIES_MAX || b->entries[i].len > 16)
            return CS_EINVAL;
        t->ents[at] = b->entries[i];
        if (b->entries[i].len) {
            memcpy(t->bytes[at], b->entries[i].data, b->entries[i].len);
            t->ents[at].data = t->bytes[at];
        }
        t->last = at;
    }
    if (b->hard_state)
        t->hs = *b->hard_state;
    return 0;
}

/* ts emptied, and the storage callbacks over it. */
static struct raft_storage tstore_empty(struct tstore *ts)
{
    memset(ts, 0, sizeof(*ts));
    struct raft_storage st = {.ctx = ts, .load = ts_load, .read_entries = ts_read, .save = ts_save};
    return st;
}

static void persist_all(struct raft *r, const struct raft_storage *st)
{
    for (int k = 0; k < 16 && raft_has_ready(r); k++) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        assert_int_equal(raft_ready_persist(&rd, st), 0);
        raft_advance(r);
    }
}

static void test_5_1_term_vote_and_log_survive_restart(void **state)
{
    (void)state;
    static struct tstore ts;
    struct raft_storage st = tstore_empty(&ts);
    uint64_t rnd = 0;
    struct raft_config c = config(1, 3, &rnd, false, false);
    struct raft *r;
    assert_int_equal(raft_new(&c, &st, &r), 0);
    struct raft_entry es[2] = {{.term = 3, .index = 1, .len = 2, .data = (const uint8_t *)"ab"},
                               {.term = 3, .index = 2}};
    struct raft_msg a = app(3, 2, 0, 0, es, 2, 1);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_msg v = {
        .type = RAFT_MSG_VOTE, .term = 4, .from = 3, .to = 1, .index = 2, .log_term = 3};
    assert_int_equal(raft_step(r, &v), 0);
    persist_all(r, &st);
    raft_free(r); /* crash after persisting */
    assert_int_equal(raft_new(&c, &st, &r), 0);
    assert_int_equal(raft_term(r), 4);
    assert_int_equal(raft_last_index(r), 2);
    assert_int_equal(raft_commit(r), 1);
    assert_memory_equal(raft_entry_at(r, 1)->data, "ab", 2);
    /* it voted for 3 in term 4 before the crash: node 2 cannot get its vote in term 4 */
    v.from = 2;
    assert_int_equal(raft_step(r, &v), 0);
    struct raft_msg out[4];
    assert_int_equal(take_msgs(r, out, 4), 1);
    assert_true(out[0].reject);
    /* the committed entry is handed out again for the state machine to rebuild */
    raft_free(r);
    assert_int_equal(raft_new(&c, &st, &r), 0);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_int_equal(rd.committed_n, 1);
    assert_int_equal(rd.committed[0].index, 1);
    raft_advance(r);
    raft_free(r);
}

/* §5.2 with §5.1: a candidate's own vote counts only once the hard state carrying it is on disk.
 * A single voter (here with a learner) must not lead before that: a crash would make it forget
 * its term and its vote, and it could then vote for another candidate of the same term, giving
 * the term two leaders that hand out different entries at the same (index, term). */
static void test_5_2_single_voter_leads_only_once_its_vote_is_durable(void **state)
{
    (void)state;
    static struct tstore ts;
    struct raft_storage st = tstore_empty(&ts);
    uint64_t rnd = 0;
    struct raft_config c = config(1, 1, &rnd, false, false);
    c.bootstrap.learners_n = 1;
    c.bootstrap.learners[0] = 2;
    struct raft *r;
    assert_int_equal(raft_new(&c, &st, &r), 0);
    for (unsigned k = 0; k < 2 * T_ELECTION && raft_role(r) == RAFT_FOLLOWER; k++)
        raft_tick(r);
    assert_int_equal(raft_term(r), 1);
    assert_int_equal(raft_role(r), RAFT_CANDIDATE); /* its vote is not on disk yet */
    assert_int_equal(raft_leader(r), 0);
    assert_int_equal(raft_propose(r, "x", 1, NULL), RAFT_ENOTLEADER);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_true(rd.hard_state_changed);
    assert_int_equal(rd.hard_state.term, 1);
    assert_int_equal(rd.hard_state.vote, 1);
    assert_int_equal(rd.entries_n, 0); /* no entry of term 1 before the term is durable */
    assert_int_equal(rd.msgs_n, 0);    /* nothing for the learner either */
    raft_advance(r);
    raft_free(r); /* crash before the batch reached the disk */
    assert_int_equal(raft_new(&c, &st, &r), 0);
    assert_int_equal(raft_term(r), 0);
    /* it may grant term 1 to someone else now: it never claimed term 1 */
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .term = 1, .from = 3, .to = 1};
    assert_int_equal(raft_step(r, &v), 0);
    struct raft_msg out[4];
    assert_int_equal(take_msgs(r, out, 4), 1); /* no storage here: the vote is not kept */
    assert_false(out[0].reject);
    raft_free(r);
    /* the same election, persisted this time: leader at the advance of that batch */
    assert_int_equal(raft_new(&c, &st, &r), 0);
    for (unsigned k = 0; k < 2 * T_ELECTION && raft_role(r) == RAFT_FOLLOWER; k++)
        raft_tick(r);
    assert_int_equal(raft_role(r), RAFT_CANDIDATE);
    raft_ready(r, &rd);
    assert_int_equal(rd.entries_n, 0);
    assert_int_equal(raft_ready_persist(&rd, &st), 0);
    raft_advance(r);
    assert_int_equal(ts.hs.term, 1);
    assert_int_equal(ts.hs.vote, 1);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    assert_int_equal(raft_leader(r), 1);
    raft_ready(r, &rd);
    assert_int_equal(rd.entries_n, 1); /* the empty entry of term 1 (§8) */
    assert_int_equal(rd.entries[0].term, 1);
    assert_int_equal(rd.msgs_n, 1); /* and its append to the learner */
    assert_int_equal(rd.msgs[0].type, RAFT_MSG_APP);
    assert_int_equal(rd.msgs[0].to, 2);
    assert_int_equal(raft_ready_persist(&rd, &st), 0);
    raft_advance(r);
    raft_free(r);
}

/* A ready batch reaches the storage as one unit (raft.h, struct raft_storage.save): an append
 * of a new term carries entries and the new hard state in a single call, so a crash can never
 * keep one without the other; a batch without durable state calls nothing. */
static void test_5_1_ready_batch_is_saved_as_one_unit(void **state)
{
    (void)state;
    static struct tstore ts;
    struct raft_storage st = tstore_empty(&ts);
    uint64_t rnd = 0;
    struct raft_config c = config(1, 3, &rnd, false, false);
    struct raft *r;
    assert_int_equal(raft_new(&c, &st, &r), 0);
    struct raft_entry es[2] = {{.term = 2, .index = 1}, {.term = 2, .index = 2}};
    struct raft_msg a = app(2, 2, 0, 0, es, 2, 1);
    assert_int_equal(raft_step(r, &a), 0);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_int_equal(rd.entries_n, 2);
    assert_true(rd.hard_state_changed);
    assert_int_equal(raft_ready_persist(&rd, &st), 0);
    raft_advance(r);
    assert_int_equal(ts.saves, 1);
    assert_int_equal(ts.last_entries_n, 2);
    assert_true(ts.last_had_hs);
    assert_int_equal(ts.hs.term, 2);
    assert_int_equal(ts.hs.commit, 1);
    assert_int_equal(ts.last, 2);
    /* a heartbeat answer only: nothing durable, no call */
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .term = 2, .from = 2, .to = 1, .commit = 1};
    assert_int_equal(raft_step(r, &hb), 0);
    raft_ready(r, &rd);
    assert_int_equal(rd.entries_n, 0);
    assert_false(rd.hard_state_changed);
    assert_int_equal(raft_ready_persist(&rd, &st), 0);
    raft_advance(r);
    assert_int_equal(ts.saves, 1);
    raft_free(r);
}

/* thesis §4.3 with §7: a snapshot taken while joint carries C_old,new; a follower that installs it
 * is joint until the C_new entry after it arrives, and a node restarting from a stored joint
 * snapshot is joint. */
static void test_4_3_snapshot_of_joint_configuration_restores_joint(void **state)
{
    (void)state;
    struct tnet t;
    net_init_voters(&t, 5, 3);
    elect(&t, 1);
    settle(&t);
    t.cut[1][5] = t.cut[5][1] = true; /* node 5 misses everything: it will need the snapshot */
    struct raft_conf target = conf_of(5, (uint64_t[]){1, 2, 3, 4, 5}, 0, NULL);
    uint64_t idx;
    assert_int_equal(raft_propose_members(N(&t, 1), &target, 0, &idx), 0);
    settle(&t);
    assert_true(raft_commit(N(&t, 1)) >= idx + 1); /* C_old,new and C_new committed */
    assert_int_equal(raft_compact(N(&t, 1), idx, T_IMAGE_BYTES), 0);
    const struct raft_conf *sc = &raft_snapshot(N(&t, 1))->conf;
    assert_true(raft_conf_is_joint(sc));
    assert_int_equal(sc->old_n, 3);
    assert_int_equal(sc->voters_n, 5);
    /* node 5 gets the snapshot alone first: joint, from the snapshot */
    t.cut[1][5] = t.cut[5][1] = false;
    for (uint64_t id = 2; id <= 4; id++)
        t.cut[1][id] = true;
    tick_all(&t, 1);
    assert_int_equal(raft_snapshot(N(&t, 5))->index, idx);
    assert_true(raft_conf_is_joint(&raft_snapshot(N(&t, 5))->conf));
    assert_int_equal(raft_last_index(N(&t, 5)), idx + 1); /* C_new came after it */
    assert_false(raft_conf_is_joint(raft_conf(N(&t, 5))));
    net_free(&t);

    /* a restart from storage holding that snapshot and no entry after it is joint */
    static struct tstore ts;
    memset(&ts, 0, sizeof(ts));
    ts.snap.index = 7;
    ts.snap.term = 2;
    struct raft_conf j = conf_of(3, (uint64_t[]){1, 4, 5}, 1, (uint64_t[]){6});
    j.old_n = 3;
    j.old[0] = 1;
    j.old[1] = 2;
    j.old[2] = 3;
    j.learners_next_n = 1;
    j.learners_next[0] = 2;
    ts.snap.conf = j;
    ts.last = 7;
    ts.hs.term = 2;
    ts.hs.commit = 7;
    struct raft_storage st = {
        .ctx = &ts, .load = ts_load, .read_entries = ts_read, .save = ts_save};
    uint64_t rnd = 0;
    struct raft_config c = config(4, 3, &rnd, false, false);
    struct raft *r;
    assert_int_equal(raft_new(&c, &st, &r), 0);
    assert_true(raft_conf_is_joint(raft_conf(r)));
    assert_int_equal(raft_conf(r)->learners_next_n, 1);
    assert_true(raft_conf_is_voter(raft_conf(r), 2));
    raft_free(r);
}

/* ---- wire format ------------------------------------------------------------------------ */

static void test_wire_round_trip_and_every_bit_flip_is_corrupt(void **state)
{
    (void)state;
    struct raft_entry es[2] = {{.term = 3, .index = 6, .len = 3, .data = (const uint8_t *)"abc"},
                               {.term = 3, .index = 7}};
    struct raft_msg m = {.type = RAFT_MSG_APP,
                         .term = 3,
                         .from = 2,
                         .to = 1,
                         .index = 5,
                         .log_term = 2,
                         .commit = 4,
                         .entries_n = 2,
                         .entries = es};
    uint8_t buf[512];
    size_t len;
    assert_int_equal(raft_msg_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(raft_msg_encode(&m, buf, len - 1, &len), CS_EINVAL);
    assert_int_equal(raft_msg_encode(&m, buf, sizeof(buf), &len), 0);
    struct raft_msg d;
    assert_int_equal(raft_msg_decode(buf, len, &d), 0);
    assert_int_equal(d.type, RAFT_MSG_APP);
    assert_int_equal(d.term, 3);
    assert_int_equal(d.entries_n, 2);
    assert_int_equal(d.entries[0].index, 6);
    assert_memory_equal(d.entries[0].data, "abc", 3);
    assert_int_equal(d.entries[1].len, 0);
    raft_msg_release(&d);
    for (size_t bit = 0; bit < len * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(raft_msg_decode(buf, len, &d), CS_ECORRUPT);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(raft_msg_decode(buf, cut, &d), CS_ECORRUPT);
}

/* Rewrite a frame's checksum after a test changed its body (so the body rules are reached). */
static void refix_frame(uint8_t *f, size_t len)
{
    uint64_t sum = XXH3_64bits_withSeed(f + RAFT_FRAME_HEADER_BYTES, len - RAFT_FRAME_HEADER_BYTES,
                                        XXH3_64bits(f, 16));
    for (unsigned i = 0; i < 8; i++)
        f[16 + i] = (uint8_t)(sum >> (8 * i));
}

/* A snapshot chunk round-trips; a chunk whose fields disagree (last flag, offset past the image,
 * transfer 0) is CS_ECORRUPT from the decoder and refused by raft_step. */
static void test_wire_snapshot_chunk_fields_checked(void **state)
{
    (void)state;
    struct raft_msg m = chunk_msg(1, 2, 9, 3);
    uint8_t buf[512];
    size_t len;
    assert_int_equal(raft_msg_encode(&m, buf, sizeof(buf), &len), 0);
    struct raft_msg d;
    assert_int_equal(raft_msg_decode(buf, len, &d), 0);
    assert_int_equal(d.type, RAFT_MSG_SNAP);
    assert_int_equal(d.snapshot.index, 5);
    assert_int_equal(d.snapshot.bytes, T_IMAGE_BYTES);
    assert_int_equal(d.chunk.transfer, 9);
    assert_int_equal(d.chunk.offset, 12);
    assert_int_equal(d.chunk.len, 4);
    assert_false(d.chunk.last);
    assert_memory_equal(d.chunk.data, t_image + 12, 4);
    raft_msg_release(&d);
    /* the last flag: body offset 68 (fixed part) + 8 + 8 + 1 + 26 (conf) + 24 */
    size_t last_at = RAFT_FRAME_HEADER_BYTES + 68 + 8 + 8 + 1 + 26 + 24;
    assert_int_equal(buf[last_at], 0);
    buf[last_at] = 1; /* last, but 12 + 4 != 40 */
    refix_frame(buf, len);
    assert_int_equal(raft_msg_decode(buf, len, &d), CS_ECORRUPT);
    buf[last_at] = 2; /* not a flag */
    refix_frame(buf, len);
    assert_int_equal(raft_msg_decode(buf, len, &d), CS_ECORRUPT);
    m.chunk.offset = 38; /* past the image's end */
    assert_int_equal(raft_msg_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(raft_msg_decode(buf, len, &d), CS_ECORRUPT);
    m.chunk.offset = 12;
    m.chunk.transfer = 0;
    assert_int_equal(raft_msg_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(raft_msg_decode(buf, len, &d), CS_ECORRUPT);
    /* the core checks the same rules on what it is handed */
    uint64_t rnd = 0;
    struct raft *r = node_new(1, 3, &rnd, false, false);
    m = chunk_msg(1, 2, 9, 0);
    m.chunk.last = true;
    assert_int_equal(raft_step(r, &m), 0);
    assert_int_equal(raft_msgs_refused(r), 1);
    assert_false(raft_has_ready(r) && raft_snapshot(r)->index != 0);
    raft_free(r);
}

/* A joint configuration round-trips (decode then encode gives the same bytes) and its C_old part
 * is checked: an empty C_old, a mask bit past its list, a learner_next that votes in C_new, a
 * trailing byte are CS_ECORRUPT. */
static void test_conf_joint_encoding_round_trips_and_is_checked(void **state)
{
    (void)state;
    struct raft_conf c = conf_of(3, (uint64_t[]){1, 4, 5}, 1, (uint64_t[]){6});
    c.old_n = 3;
    c.old[0] = 1;
    c.old[1] = 2;
    c.old[2] = 3;
    c.learners_next_n = 1;
    c.learners_next[0] = 3;
    uint8_t buf[RAFT_CONF_BYTES_MAX + 1], again[RAFT_CONF_BYTES_MAX];
    size_t len = raft_conf_encode(&c, buf);
    assert_int_equal(len, 2 + 8 * 4 + 5 + 8 * 2);
    struct raft_conf d;
    assert_int_equal(raft_conf_decode(buf, len, &d), 0);
    assert_memory_equal(&c, &d, sizeof(c));
    assert_int_equal(raft_conf_encode(&d, again), len);
    assert_memory_equal(buf, again, len);
    size_t joint_at = 2 + 8 * 4; /* old_only_n, old_mask (2), next_mask (2), ids */
    assert_int_equal(buf[joint_at], 2);
    assert_int_equal(buf[joint_at + 1], 1); /* voters[0] = 1 is in C_old */
    assert_int_equal(buf[joint_at + 3], 2); /* old_only[1] = 3 turns learner */
    buf[joint_at + 1] = 8;                  /* mask bit 3: past the three voters */
    assert_int_equal(raft_conf_decode(buf, len, &d), CS_ECORRUPT);
    buf[joint_at + 1] = 1;
    buf[joint_at + 3] = 4; /* next mask bit 2: past the two old-only ids */
    assert_int_equal(raft_conf_decode(buf, len, &d), CS_ECORRUPT);
    buf[joint_at + 3] = 2;
    assert_int_equal(raft_conf_decode(buf, len + 1, &d), CS_ECORRUPT);
    assert_int_equal(raft_conf_decode(buf, len - 1, &d), CS_ECORRUPT);
    assert_int_equal(raft_conf_decode(buf, joint_at + 4, &d), CS_ECORRUPT);
    /* an empty C_old: no mask bit, no id */
    uint8_t empty[2 + 8 + 5] = {1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(raft_conf_decode(empty, sizeof(empty), &d), CS_ECORRUPT);
    empty[11] = 1; /* old_mask bit 0: voter 1 is C_old */
    assert_int_equal(raft_conf_decode(empty, sizeof(empty), &d), 0);
    assert_true(raft_conf_is_joint(&d));
    empty[13] = 1; /* next_mask bit 0 with no old-only id */
    assert_int_equal(raft_conf_decode(empty, sizeof(empty), &d), CS_ECORRUPT);
    /* an old-only id that votes in C_new (it would be in C_old through old_mask alone: decode
     * then encode would not give the same bytes) */
    uint8_t dup[2 + 8 + 5 + 8] = {1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    assert_int_equal(raft_conf_decode(dup, sizeof(dup), &d), CS_ECORRUPT);
    dup[15] = 2; /* node 2 instead: C_old = {2}, C_new = {1} */
    assert_int_equal(raft_conf_decode(dup, sizeof(dup), &d), 0);
    assert_int_equal(d.old_n, 1);
    assert_int_equal(d.old[0], 2);
    /* validity: a learner that also votes in C_old, learners_next outside C_old */
    struct raft_conf bad = c;
    bad.learners[0] = 2;
    assert_false(raft_conf_valid(&bad));
    bad = c;
    bad.learners_next[0] = 6;
    assert_false(raft_conf_valid(&bad));
    bad = c;
    bad.old_n = 0;
    assert_false(raft_conf_valid(&bad)); /* learners_next without C_old */
}

static void test_conf_decode_rejects_duplicates_and_overlap(void **state)
{
    (void)state;
    struct raft_conf c = {.voters_n = 2, .voters = {1, 2}, .learners_n = 1, .learners = {3}};
    uint8_t buf[RAFT_CONF_BYTES_MAX];
    size_t len = raft_conf_encode(&c, buf);
    struct raft_conf d;
    assert_int_equal(raft_conf_decode(buf, len, &d), 0);
    assert_int_equal(d.learners[0], 3);
    buf[2 + 8 * 2] = 2; /* learner 3 -> 2, a voter too */
    assert_int_equal(raft_conf_decode(buf, len, &d), CS_ECORRUPT);
    assert_int_equal(raft_conf_decode(buf, len - 1, &d), CS_ECORRUPT);
    buf[0] = 0; /* no voters */
    assert_int_equal(raft_conf_decode(buf, 2 + 8, &d), CS_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_5_2_follower_campaigns_after_election_timeout),
        cmocka_unit_test(test_5_2_election_timeout_is_randomized),
        cmocka_unit_test(test_5_2_majority_of_votes_elects_a_leader),
        cmocka_unit_test(test_5_2_at_most_one_vote_per_term),
        cmocka_unit_test(test_5_2_single_voter_leads_and_commits_alone),
        cmocka_unit_test(test_4_2_1_learner_never_campaigns),
        cmocka_unit_test(test_5_1_vote_is_persisted_with_the_response),
        cmocka_unit_test(test_5_4_1_vote_denied_to_stale_log),
        cmocka_unit_test(test_5_1_stale_vote_request_refused_with_our_term),
        cmocka_unit_test(test_5_1_leader_steps_down_on_higher_term),
        cmocka_unit_test(test_5_3_append_rejected_when_prev_entry_missing),
        cmocka_unit_test(test_5_3_rejection_hint_skips_conflicting_term),
        cmocka_unit_test(test_5_3_conflicting_suffix_is_replaced),
        cmocka_unit_test(test_5_3_heartbeat_commit_past_last_index_is_refused),
        cmocka_unit_test(test_5_1_ack_of_entries_truncated_in_the_same_batch_is_dropped),
        cmocka_unit_test(test_5_4_2_old_term_entries_not_committed_by_count),
        cmocka_unit_test(test_5_3_pipelined_appends_bounded_by_window),
        cmocka_unit_test(test_5_3_lagging_follower_catches_up),
        cmocka_unit_test(test_3_5_probe_answered_at_match_moves_to_replicate),
        cmocka_unit_test(test_5_3_lost_pipelined_append_is_recovered_without_new_proposals),
        cmocka_unit_test(test_9_6_prevote_does_not_raise_terms),
        cmocka_unit_test(test_9_6_prevote_refused_while_leader_is_heard),
        cmocka_unit_test(test_6_2_check_quorum_leader_steps_down_alone),
        cmocka_unit_test(test_4_2_3_vote_ignored_while_leader_is_heard),
        cmocka_unit_test(test_6_4_read_index_queued_until_commit_in_term),
        cmocka_unit_test(test_6_4_read_index_waits_for_quorum_heartbeat),
        cmocka_unit_test(test_6_4_1_follower_read_index_via_leader),
        cmocka_unit_test(test_3_10_transfer_hands_leadership_over),
        cmocka_unit_test(test_3_10_lost_timeout_now_is_resent),
        cmocka_unit_test(test_3_10_repeated_transfer_request_sends_again),
        cmocka_unit_test(test_3_10_transfer_to_non_voter_refused),
        cmocka_unit_test(test_3_10_transfer_aborts_after_election_timeout),
        cmocka_unit_test(test_7_compacted_log_reaches_follower_as_snapshot),
        cmocka_unit_test(test_7_reported_snapshot_failure_retries_at_next_heartbeat),
        cmocka_unit_test(test_7_snapshot_covered_by_log_keeps_the_log),
        cmocka_unit_test(test_7_snapshot_without_this_node_is_refused),
        cmocka_unit_test(test_7_snapshot_chunks_bounded_by_window),
        cmocka_unit_test(test_7_lost_chunks_resent_after_resend_ticks),
        cmocka_unit_test(test_7_follower_takes_chunks_in_order_and_installs_on_the_last),
        cmocka_unit_test(test_7_transfer_aborted_on_leader_change),
        cmocka_unit_test(test_7_restarted_follower_gets_a_new_transfer),
        cmocka_unit_test(test_wire_snapshot_chunk_fields_checked),
        cmocka_unit_test(test_4_1_one_membership_change_at_a_time),
        cmocka_unit_test(test_4_1_leader_waits_for_commit_in_its_term),
        cmocka_unit_test(test_4_2_1_promotion_waits_for_learner_catch_up),
        cmocka_unit_test(test_4_1_changes_that_do_not_apply_are_refused),
        cmocka_unit_test(test_4_2_2_removed_leader_steps_down_once_c_new_commits),
        cmocka_unit_test(test_4_2_2_removed_voter_campaigns_until_its_removal_commits),
        cmocka_unit_test(test_4_1_truncated_configuration_is_rolled_back),
        cmocka_unit_test(test_4_3_change_of_two_voters_enters_joint_configuration),
        cmocka_unit_test(test_4_3_joint_commit_needs_both_majorities_then_leaves),
        cmocka_unit_test(test_4_3_joint_election_needs_both_majorities),
        cmocka_unit_test(test_4_3_no_change_while_joint_and_demoted_voter_waits),
        cmocka_unit_test(test_4_3_truncated_joint_entry_is_rolled_back),
        cmocka_unit_test(test_4_3_snapshot_of_joint_configuration_restores_joint),
        cmocka_unit_test(test_8_leader_steps_down_without_its_empty_entry),
        cmocka_unit_test(test_5_1_term_vote_and_log_survive_restart),
        cmocka_unit_test(test_5_1_ready_batch_is_saved_as_one_unit),
        cmocka_unit_test(test_5_2_single_voter_leads_only_once_its_vote_is_durable),
        cmocka_unit_test(test_committed_entries_per_ready_capped_in_bytes),
        cmocka_unit_test(test_wire_round_trip_and_every_bit_flip_is_corrupt),
        cmocka_unit_test(test_conf_decode_rejects_duplicates_and_overlap),
        cmocka_unit_test(test_conf_joint_encoding_round_trips_and_is_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
