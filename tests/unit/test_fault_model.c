/* Unit tests of cstore-fault's model and checker (tools/fault_model.c), fed logs of intents, acks
 * and fails by hand: a key may read as its acknowledged state or as the state of an operation in
 * flight; a write refused whole (-ENOSPC) may not appear; a lost acknowledged write, a value
 * that was never written and a batch that landed in part are violations; async durability
 * (RULE_HISTORY) accepts an older acknowledged state and counts it, a reported torn tail accepts
 * the state before the last acknowledgement and counts it as damage; a reopen adopts what was
 * read. The violations the tests provoke are printed on stderr, as the tool prints them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tools/fault_model.h"

#define TEST_KEYS 16u
#define TEST_SHARDS 2u
#define FILLER_MAX 40u

struct fixture {
    struct model model;
    struct result res;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f)); /* the model is megabytes */
    if (!f)
        return -1;
    pthread_mutex_init(&f->model.lock, NULL);
    f->model.res = &f->res;
    f->model.stage = "unit test";
    model_reset(&f->model, TEST_KEYS, TEST_SHARDS);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pthread_mutex_destroy(&f->model.lock);
    free(f);
    return 0;
}

/* Feed one record: count keys keys[] set to vals[] (0 = delete), outcome rc for REC_FAIL. */
static void feed(struct model *m, uint8_t kind, uint64_t op_id, unsigned count,
                 const uint32_t *keys, const uint64_t *vals, int rc)
{
    struct op_rec r = {.magic = REC_MAGIC, .kind = kind, .count = (uint8_t)count, .op_id = op_id};
    assert_true(count >= 1 && count <= BATCH_KEYS_MAX);
    for (unsigned i = 0; i < count; i++) {
        r.key[i] = keys[i];
        r.val[i] = vals[i];
    }
    r.rc = rc;
    model_apply(m, &r);
}

static void put(struct model *m, uint8_t kind, uint64_t op_id, uint32_t key, uint64_t val, int rc)
{
    feed(m, kind, op_id, 1, &key, &val, rc);
}

/* The violations a check of key reading as g adds. */
static uint64_t violations_of(struct fixture *f, uint32_t key, uint64_t g)
{
    uint64_t before = f->res.violations;
    model_check_key(&f->model, key, g, 0, false);
    return f->res.violations - before;
}

static void test_acknowledged_and_in_flight_states_are_accepted(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    put(m, REC_INTENT, 1, 3, 0x11, 0);
    put(m, REC_ACK, 1, 3, 0x11, 0);
    assert_int_equal(m->acked_ops, 1);
    /* a second put is in flight: it may or may not have happened */
    put(m, REC_INTENT, 2, 3, 0x22, 0);
    assert_int_equal(violations_of(f, 3, 0x11), 0);
    assert_int_equal(violations_of(f, 3, 0x22), 0);
    /* an error other than a refusal leaves it in flight */
    put(m, REC_FAIL, 2, 3, 0x22, CS_EIO);
    assert_int_equal(violations_of(f, 3, 0x22), 0);
    assert_int_equal(m->failed_ops, 1);
    assert_int_equal(m->eio_fails, 1);
    /* a key never touched reads as absent */
    assert_int_equal(violations_of(f, 4, 0), 0);
    assert_int_equal(f->res.keys_checked, 4);
}

/* A pipelined client has several operations on a key in flight, applied in order: the ack of
 * the first leaves the later ones in flight (the key may read as any of them), and supersedes
 * only what was announced before it (the value before the acked one is a lost write). */
static void test_ack_keeps_later_pipelined_operations_in_flight(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    put(m, REC_INTENT, 1, 5, 0x51, 0);
    put(m, REC_INTENT, 2, 5, 0x52, 0);
    put(m, REC_INTENT, 3, 5, 0x53, 0);
    put(m, REC_ACK, 1, 5, 0x51, 0);
    assert_int_equal(violations_of(f, 5, 0x51), 0);
    assert_int_equal(violations_of(f, 5, 0x52), 0); /* still in flight */
    assert_int_equal(violations_of(f, 5, 0x53), 0);
    put(m, REC_ACK, 2, 5, 0x52, 0);
    assert_int_equal(violations_of(f, 5, 0x51), 1); /* superseded by the ack of 2 */
    assert_int_equal(violations_of(f, 5, 0x52), 0);
    assert_int_equal(violations_of(f, 5, 0x53), 0); /* announced after it: still in flight */
    put(m, REC_ACK, 3, 5, 0x53, 0);
    assert_int_equal(violations_of(f, 5, 0x52), 1);
    assert_int_equal(violations_of(f, 5, 0x53), 0);
}

static void test_lost_acknowledged_write_is_a_violation(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    put(m, REC_INTENT, 1, 5, 0x51, 0);
    put(m, REC_ACK, 1, 5, 0x51, 0);
    put(m, REC_INTENT, 2, 5, 0x52, 0);
    put(m, REC_ACK, 2, 5, 0x52, 0);
    assert_int_equal(violations_of(f, 5, 0), 1);    /* gone */
    assert_int_equal(violations_of(f, 5, 0x51), 1); /* an older state */
    assert_int_equal(violations_of(f, 5, 0x52), 0);
    /* an acknowledged delete whose key was found absent while a value was acknowledged */
    uint64_t before = f->res.violations;
    put(m, REC_INTENT, 3, 5, 0, 0);
    put(m, REC_ACK, 3, 5, 0, CS_ENOTFOUND);
    assert_int_equal(f->res.violations - before, 1);
}

static void test_refused_write_must_not_appear(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    put(m, REC_INTENT, 1, 6, 0x61, 0);
    put(m, REC_ACK, 1, 6, 0x61, 0);
    put(m, REC_INTENT, 2, 6, 0x62, 0);
    put(m, REC_FAIL, 2, 6, 0x62, -ENOSPC);
    assert_int_equal(m->enospc_fails, 1);
    assert_int_equal(violations_of(f, 6, 0x61), 0);
    assert_int_equal(violations_of(f, 6, 0x62), 1);
    /* CS_EIO counts as "not applied" only when the scenario says so */
    m->eio_not_applied = true;
    put(m, REC_INTENT, 3, 6, 0x63, 0);
    put(m, REC_FAIL, 3, 6, 0x63, CS_EIO);
    assert_int_equal(violations_of(f, 6, 0x63), 1);
}

static void test_value_never_written_is_a_violation(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    char val[VAL_HEAD_BYTES + FILLER_MAX], scratch[VAL_HEAD_BYTES + FILLER_MAX + 1];
    size_t len = value_make(0x1234, FILLER_MAX, val);
    assert_int_equal(model_read_value(m, "key-000001", val, len, FILLER_MAX, scratch), 0x1234);
    assert_int_equal(f->res.violations, 0);
    val[len - 1] ^= 1; /* one bit of the filler */
    assert_int_equal(model_read_value(m, "key-000001", val, len, FILLER_MAX, scratch), 0);
    assert_int_equal(f->res.violations, 1);
    assert_int_equal(model_read_value(m, "key-000001", "garbage", 7, FILLER_MAX, scratch), 0);
    assert_int_equal(f->res.violations, 2);
    /* keys: only ours, in range */
    char key[32];
    size_t klen = key_make(7, key, sizeof(key));
    assert_int_equal(key_parse(key, klen, TEST_KEYS), 7);
    assert_int_equal(key_parse(key, klen, 7), UINT32_MAX);
    assert_int_equal(key_parse("kex-000007", 10, TEST_KEYS), UINT32_MAX);
}

static void test_half_applied_batch_is_a_violation(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    const uint32_t keys[3] = {8, 9, 10};
    const uint64_t vals[3] = {0x81, 0x91, 0}; /* two puts and a delete */
    feed(m, REC_INTENT, 1, 3, keys, vals, 0);
    uint64_t got[TEST_KEYS] = {0};
    /* none landed */
    model_check_batches(m, got);
    assert_int_equal(f->res.violations, 0);
    /* all landed */
    got[8] = 0x81;
    got[9] = 0x91;
    model_check_batches(m, got);
    assert_int_equal(f->res.violations, 0);
    /* one put landed, the other did not */
    got[9] = 0;
    model_check_batches(m, got);
    assert_int_equal(f->res.violations, 1);
    /* once acknowledged, the batch is no longer judged as in flight */
    feed(m, REC_ACK, 1, 3, keys, vals, 0);
    model_check_batches(m, got);
    assert_int_equal(f->res.violations, 1);
    assert_int_equal(m->acked_ops, 3);
}

static void test_history_rule_accepts_older_acknowledged_states(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    put(m, REC_INTENT, 1, 11, 0xb1, 0);
    put(m, REC_ACK, 1, 11, 0xb1, 0);
    put(m, REC_INTENT, 2, 11, 0xb2, 0);
    put(m, REC_ACK, 2, 11, 0xb2, 0);
    m->rule = RULE_HISTORY;
    assert_int_equal(violations_of(f, 11, 0xb1), 0);
    assert_int_equal(violations_of(f, 11, 0), 0); /* the base: absent at the last reopen */
    assert_int_equal(m->lost_acked, 2);
    assert_int_equal(violations_of(f, 11, 0xb3), 1); /* never acknowledged */
    /* durability none: only the base */
    m->rule = RULE_BASE;
    assert_int_equal(violations_of(f, 11, 0), 0);
    assert_int_equal(violations_of(f, 11, 0xb2), 1);
}

static void test_torn_tail_accepts_the_previous_state_as_damage(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    put(m, REC_INTENT, 1, 12, 0xc1, 0);
    put(m, REC_ACK, 1, 12, 0xc1, 0);
    put(m, REC_INTENT, 2, 12, 0xc2, 0);
    put(m, REC_ACK, 2, 12, 0xc2, 0);
    uint64_t torn = 1ull << key_shard(12, TEST_SHARDS);
    model_check_key(m, 12, 0xc1, torn, true);
    assert_int_equal(f->res.violations, 0);
    assert_int_equal(f->res.damage, 1);
    model_check_key(m, 12, 0xc1, torn, false); /* not lenient */
    assert_int_equal(f->res.violations, 1);
    model_check_key(m, 12, 0xc1, ~torn & 3u, true); /* another shard's tail */
    assert_int_equal(f->res.violations, 2);
}

static void test_reopen_adopts_what_was_read(void **state)
{
    struct fixture *f = *state;
    struct model *m = &f->model;
    put(m, REC_INTENT, 1, 13, 0xd1, 0);
    uint64_t got[TEST_KEYS] = {0};
    got[13] = 0xd1; /* the write in flight landed */
    model_adopt(m, got);
    assert_int_equal(m->keys[13].acked, 0xd1);
    assert_int_equal(m->keys[13].maybe_count, 0);
    assert_int_equal(violations_of(f, 13, 0xd1), 0);
    assert_int_equal(violations_of(f, 13, 0), 1); /* now settled: losing it is a violation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acknowledged_and_in_flight_states_are_accepted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lost_acknowledged_write_is_a_violation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ack_keeps_later_pipelined_operations_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refused_write_must_not_appear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_never_written_is_a_violation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_applied_batch_is_a_violation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_rule_accepts_older_acknowledged_states, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_accepts_the_previous_state_as_damage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reopen_adopts_what_was_read, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
