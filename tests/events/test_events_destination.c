/* Goal: one endpoint's delivery state keeps order per object, moves its cursor only
 * over settled events, retries with backoff, dead-letters after retry_max_s, disables
 * an endpoint failing for disable_after_s, and stores every step. Method: the state
 * machine alone (no thread, no HTTP), fed events and outcomes at chosen times; the ops
 * it queues for the writer are read back and compared with what must be stored. */
#include <stdlib.h>

#include "events/events_internal.h"
#include "test.h"

#define S (1000000000ull)

static events_config_t config;
static events_flusher_t *flusher;

static events_dest_t *dest_new(void) {
    store_event_destination_t row = {.cursor_seq = 100, .cursor_epoch = 7};
    events_flusher_discard(flusher);
    return events_dest_new("we_1", &row, &config, flusher);
}

/* "kind:seq[:state:attempts]" of the queued ops, then forgets them. */
static void ops_take(char *out, size_t out_bytes) {
    uint32_t count;
    const events_op_t *ops = events_flusher_ops(flusher, &count);
    size_t used = 0;
    out[0] = '\0';
    static const char *const kinds[] = {"", "cursor", "put", "delete", "health", "purge"};
    for (uint32_t i = 0; i < count; i++) {
        const events_op_t *op = &ops[i];
        used += (size_t)snprintf(out + used, out_bytes - used, "%s%s:%llu", i ? " " : "", kinds[op->kind],
                                 (unsigned long long)op->seq);
        if (op->kind == EVENTS_OP_DELIVERY_PUT) {
            used += (size_t)snprintf(out + used, out_bytes - used, ":%s:%u",
                                     op->delivery.state == STORE_DELIVERY_DEAD ? "dead" : "retrying",
                                     op->delivery.attempts);
        }
        if (op->kind == EVENTS_OP_HEALTH) {
            used += (size_t)snprintf(out + used, out_bytes - used, ":%s", op->disabled_ns ? "disabled"
                                     : op->failing_since_ns ? "failing" : "healthy");
        }
        if (op->kind == EVENTS_OP_CURSOR) ASSERT_EQ(op->epoch, 7);
    }
    events_flusher_discard(flusher);
}

static void expect_ops(const char *expected) {
    char ops[1024];
    ops_take(ops, sizeof ops);
    ASSERT_STR_EQ(ops, expected);
}

static void test_order_per_object(void) {
    events_dest_t *d = dest_new();
    uint64_t t0 = 1000 * S;
    ASSERT_TRUE(events_dest_add_fresh(d, 101, "A", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    ASSERT_TRUE(events_dest_add_fresh(d, 102, "B", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    ASSERT_TRUE(events_dest_add_fresh(d, 103, "A", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    events_dest_set_fetched(d, 103);
    events_job_t *a1 = events_dest_next(d, t0), *b1 = events_dest_next(d, t0);
    ASSERT_EQ(a1->seq, 101);
    ASSERT_EQ(b1->seq, 102);
    ASSERT_TRUE(events_dest_next(d, t0) == NULL); /* A's second event waits for its first */
    ASSERT_EQ(events_dest_failed(d, a1, t0, "HTTP 500"), EVENTS_OUTCOME_RETRY);
    events_dest_settle(d, t0);
    events_dest_queue_cursor(d);
    expect_ops("health:0:failing put:101:retrying:1 cursor:101"); /* B still in flight */
    events_dest_delivered(d, b1);
    events_dest_settle(d, t0); /* A2 at the front, blocked by A1: it becomes a row */
    events_dest_queue_cursor(d);
    expect_ops("health:0:healthy put:103:retrying:0 cursor:103");
    ASSERT_TRUE(events_dest_next(d, t0) == NULL); /* A1 not due yet, A2 behind it */
    uint64_t due = events_dest_due_ns(d);
    ASSERT_TRUE(due > t0 && due <= t0 + config.retry_base_ms * 1000000ull + 1);
    events_job_t *again = events_dest_next(d, due);
    ASSERT_EQ(again->seq, 101);
    ASSERT_EQ(again->attempts, 1);
    ASSERT_TRUE(events_dest_next(d, due) == NULL);
    events_dest_delivered(d, again);
    events_job_t *a2 = events_dest_next(d, due);
    ASSERT_EQ(a2->seq, 103);
    events_dest_delivered(d, a2);
    expect_ops("delete:101 delete:103");
    ASSERT_EQ(events_dest_jobs(d), 0);
    ASSERT_EQ(events_dest_oldest_seq(d), 0);
    events_dest_free(d);
}

static void test_dead_letter_and_disable(void) {
    events_dest_t *d = dest_new();
    uint64_t t0 = 5000 * S;
    ASSERT_TRUE(events_dest_add_fresh(d, 101, "A", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    ASSERT_TRUE(events_dest_add_fresh(d, 102, "A", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    events_dest_set_fetched(d, 102);
    events_job_t *job = events_dest_next(d, t0);
    ASSERT_EQ(events_dest_failed(d, job, t0, "timeout"), EVENTS_OUTCOME_RETRY);
    uint64_t t = t0;
    uint32_t attempts = 1;
    while (t - t0 < config.retry_max_s * S) {
        t = events_dest_due_ns(d);
        job = events_dest_next(d, t);
        ASSERT_EQ(job->seq, 101);
        attempts++;
        if (events_dest_failed(d, job, t, "timeout") == EVENTS_OUTCOME_DEAD) break;
        ASSERT_TRUE(attempts < 1000);
    }
    ASSERT_TRUE(t - t0 >= config.retry_max_s * S);
    char ops[8192];
    ops_take(ops, sizeof ops);
    char last[64];
    snprintf(last, sizeof last, "put:101:dead:%u", attempts);
    ASSERT_TRUE(strstr(ops, last) != NULL);
    /* the dead letter no longer blocks its object */
    events_dest_settle(d, t);
    job = events_dest_next(d, t);
    ASSERT_TRUE(job != NULL && job->seq == 102);
    ASSERT_FALSE(events_dest_disabled(d));
    /* failing since t0: past disable_after_s the endpoint is disabled, and says so */
    uint64_t late = t0 + config.disable_after_s * S;
    events_flusher_discard(flusher);
    events_dest_failed(d, job, late, "connection refused");
    ASSERT_TRUE(events_dest_disabled(d));
    uint32_t count;
    const events_op_t *queued = events_flusher_ops(flusher, &count);
    ASSERT_EQ(queued[0].kind, EVENTS_OP_HEALTH);
    ASSERT_EQ(queued[0].disabled_ns, late);
    ASSERT_TRUE(strstr(queued[0].reason, "connection refused") != NULL);
    ASSERT_TRUE(events_dest_next(d, late + 1000 * S) == NULL);
    ASSERT_EQ(events_dest_fresh_room(d), 0);
    events_dest_free(d);
}

static void test_limits_and_rows(void) {
    events_dest_t *d = dest_new();
    for (uint64_t i = 1; i <= 40; i++) {
        char object[16];
        snprintf(object, sizeof object, "o%llu", (unsigned long long)i);
        ASSERT_TRUE(events_dest_add_fresh(d, 100 + i, object, EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    }
    for (int i = 0; i < EVENTS_INFLIGHT_PER_DESTINATION_MAX; i++) ASSERT_TRUE(events_dest_next(d, 1) != NULL);
    ASSERT_TRUE(events_dest_next(d, 1) == NULL);
    ASSERT_EQ(events_dest_due_ns(d), UINT64_MAX); /* full: a completion wakes the thread */
    events_dest_free(d);
    /* rows load first; an event a row of its object follows is settled: not again */
    d = dest_new();
    store_event_delivery_t row = {.seq = 90, .state = STORE_DELIVERY_RETRYING, .attempts = 2,
                                  .first_attempt_ns = 10 * S, .next_attempt_ns = 20 * S, .object_id = "A"};
    ASSERT_TRUE(events_dest_add_row(d, &row));
    ASSERT_TRUE(events_dest_add_fresh(d, 101, "B", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    ASSERT_TRUE(events_dest_add_fresh(d, 102, "A", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2));
    ASSERT_EQ(events_dest_jobs(d), 3);
    ASSERT_EQ(events_dest_oldest_seq(d), 90);
    events_job_t *job = events_dest_next(d, 15 * S);
    ASSERT_EQ(job->seq, 101); /* the row is not due, A's fresh event is behind it */
    ASSERT_TRUE(events_dest_next(d, 15 * S) == NULL);
    job = events_dest_next(d, 20 * S);
    ASSERT_EQ(job->seq, 90);
    events_dest_free(d);
    d = dest_new();
    row.seq = 120;
    ASSERT_TRUE(events_dest_add_row(d, &row));
    ASSERT_TRUE(events_dest_add_fresh(d, 105, "A", EVENTS_TYPE_TRANSFER_CREATED, "{}", 2)); /* below A's row: settled before it */
    ASSERT_EQ(events_dest_jobs(d), 1);
    events_dest_free(d);
}

int main(void) {
    events_config_default(&config);
    config.retry_base_ms = 1000;
    config.retry_cap_ms = 3600 * 1000;
    flusher = events_flusher_new(NULL, NULL, NULL);
    TEST_RUN(test_order_per_object);
    TEST_RUN(test_dead_letter_and_disable);
    TEST_RUN(test_limits_and_rows);
    events_flusher_free(flusher);
    return test_finish();
}
