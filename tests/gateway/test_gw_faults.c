/* Goal: no failure of a channel makes the gateway approve wrongly or charge twice.
 * Garbage answers (each kind) give a clear outcome and an error log line, never a
 * crash and never an approval the channel did not make; a timeout the channel DID
 * apply is found by the status inquiry and not charged elsewhere; one it did not apply
 * goes to the next channel; an unknown outcome the channel cannot be asked about ends
 * UNKNOWN (not retried) and is resolved later by GW_OP_STATUS; under a random mix of
 * faults on both channels, no payment is approved twice.
 * Method: two card simulators, faults set at run time (POST /v1/admin/faults); every
 * claim is checked against the simulators' own SQLite records. */
#include "gw_test_util.h"

static gwt_sim_t card_a, card_b;
static gw_t *gw;
static char config_path[512], log_path[512];
static uint32_t ref_seq;

/* 'delay_ms': the wait before the first status inquiry. After a timeout it must
 * outlast the channel's own handling of the request (else "not found" may be asked
 * before the request was applied): a generous second on a loaded machine. */
static void write_config(uint32_t timeout_a_ms, uint32_t delay_ms) {
    gwt_write(config_path,
              "{\"channels\":[\n"
              " {\"name\":\"card_a\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":%u,\"connect_timeout_ms\":%u,\n"
              "  \"breaker\":{\"failures_consecutive\":0,\"error_rate_percent\":0}},\n"
              " {\"name\":\"card_b\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":20000,\n"
              "  \"breaker\":{\"failures_consecutive\":0,\"error_rate_percent\":0}}],\n"
              "\"routing\":{\"strategy\":\"priority\",\"priority\":[\"card_a\",\"card_b\"],\"attempts_max\":2},\n"
              "\"status_inquiry\":{\"delay_ms\":%u,\"attempts\":3,\"interval_ms\":20}}\n",
              card_a.url, timeout_a_ms, timeout_a_ms < 2000 ? timeout_a_ms : 2000, card_b.url, delay_ms);
}

static void reload(void) {
    gw_config_error_t error;
    ASSERT_STATUS(gw_reload(gw, &error), PC_OK);
}

static void next_ref(char *out, const char *prefix) {
    snprintf(out, PC_ID_SIZE, "%s-%u", prefix, ++ref_seq);
}

static int64_t approved_anywhere(const char *ref) {
    return gwt_approved(&card_a, ref) + gwt_approved(&card_b, ref);
}

typedef struct {
    const char *mode;
    const char *status;    /* the log line's gateway status */
    const char *detail;    /* ... and what it says */
    bool always_applied;   /* the simulator corrupts a true answer: it applied it */
} garbage_case;

static const garbage_case garbage[] = {
    {"invalid_json", "gateway_bad_response", "not a JSON object", false},
    {"unknown_code", "gateway_bad_response", "'Z9' is not in the channel's table", true},
    {"wrong_amount", "gateway_bad_response", "amount is 2000, the request's 1999", true},
    {"http_500", "gateway_channel_error", "HTTP 500", false},
    {"close", "gateway_channel_unreachable", "sent, then", false},
};

/* One payment against a garbage mode on card_a; card_b is clean. Applied garbage: the
 * inquiry finds the channel's true answer, so the payment is approved where it was
 * applied, once (the garbage itself approved nothing). Unapplied: the inquiry says
 * "never applied", so card_b takes it. Either way an error line names it. */
static void garbage_once(const garbage_case *g, bool applied) {
    char faults[256], ref[PC_ID_SIZE];
    snprintf(faults, sizeof faults, "{\"garbage_rate\":1.0,\"garbage_modes\":[\"%s\"],\"garbage_applied_ratio\":%s}",
             g->mode, applied ? "1.0" : "0.0");
    gwt_faults(&card_a, faults);
    next_ref(ref, applied ? "garbage-applied" : "garbage-not-applied");
    gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
    gw_result_t r = gwt_call(gw, &req);
    bool was_applied = applied || g->always_applied;
    /* sent once: curl never resends by itself (a closed connection would invite it) */
    ASSERT_EQ(gwt_sim_count(&card_a, "SELECT count FROM arrivals WHERE key = ?1", r.attempts[0].idempotency_key), 1);
    if (r.outcome != GW_OUTCOME_APPROVED || r.attempt_count != (was_applied ? 1u : 2u)) gwt_print(&r);
    ASSERT_EQ(r.outcome, GW_OUTCOME_APPROVED);
    ASSERT_TRUE(r.attempts[0].status_inquired);
    if (was_applied) {
        ASSERT_EQ(r.attempt_count, 1);
        ASSERT_TRUE(r.attempts[0].status_found);
        ASSERT_STR_EQ(r.attempts[0].response_code, "00"); /* the recorded answer */
        ASSERT_STR_EQ(r.channel, "card_a");
        ASSERT_EQ(gwt_approved(&card_a, ref), 1);
        ASSERT_EQ(gwt_records(&card_b, ref), 0); /* never charged elsewhere */
    } else {
        ASSERT_EQ(r.attempt_count, 2);
        ASSERT_FALSE(r.attempts[0].status_found);
        ASSERT_EQ(r.attempts[0].outcome, GW_OUTCOME_RETRYABLE);
        ASSERT_STR_EQ(r.channel, "card_b");
        ASSERT_EQ(gwt_records(&card_a, ref), 0);
        ASSERT_EQ(gwt_approved(&card_b, ref), 1);
    }
    if (!gwt_log_has(log_path, "\"level\":\"error\"", ref, "card_a", g->status, g->detail, NULL)) {
        TEST_FAIL("no error line for %s (%s, applied %d)", ref, g->mode, applied);
    }
}

static void test_garbage(void) {
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        garbage_once(&garbage[i], true);
        garbage_once(&garbage[i], false);
    }
    gwt_faults(&card_a, "{}");
}

/* A single channel answering garbage it did not apply: the payment ends retryable,
 * not approved, with the gateway's reason and an error line. */
static void test_garbage_alone(void) {
    gwt_faults(&card_a, "{\"garbage_rate\":1.0,\"garbage_modes\":[\"invalid_json\"],\"garbage_applied_ratio\":0.0}");
    gwt_faults(&card_b, "{\"garbage_rate\":1.0,\"garbage_modes\":[\"invalid_json\"],\"garbage_applied_ratio\":0.0}");
    char ref[PC_ID_SIZE];
    next_ref(ref, "garbage-alone");
    gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
    gw_result_t r = gwt_call(gw, &req);
    ASSERT_EQ(r.outcome, GW_OUTCOME_RETRYABLE);
    ASSERT_STATUS(r.status, PC_GATEWAY_BAD_RESPONSE);
    ASSERT_EQ(approved_anywhere(ref), 0);
    ASSERT_TRUE(gwt_log_has(log_path, "\"level\":\"error\"", ref, "card_b", "gateway_bad_response", NULL));
    gwt_faults(&card_a, "{}");
    gwt_faults(&card_b, "{}");
}

/* Timeouts: client timeout 300 ms, the simulator holds 5 s. */
static void test_timeouts(void) {
    write_config(300, 1000);
    reload();
    char ref[PC_ID_SIZE];
    gwt_faults(&card_a, "{\"timeout_rate\":1.0,\"timeout_applied_ratio\":1.0,\"timeout_hold_ms\":5000}");
    next_ref(ref, "timeout-applied");
    gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
    gw_result_t r = gwt_call(gw, &req);
    if (r.outcome != GW_OUTCOME_APPROVED) gwt_print(&r);
    ASSERT_EQ(r.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(r.attempt_count, 1);
    ASSERT_TRUE(r.attempts[0].status_found);
    ASSERT_STR_EQ(r.channel, "card_a");
    ASSERT_EQ(gwt_approved(&card_a, ref), 1);
    ASSERT_EQ(gwt_records(&card_b, ref), 0); /* the applied timeout is not charged again */
    ASSERT_TRUE(gwt_log_has(log_path, ref, "gateway_channel_timeout", NULL));

    gwt_faults(&card_a, "{\"timeout_rate\":1.0,\"timeout_applied_ratio\":0.0,\"timeout_hold_ms\":5000}");
    next_ref(ref, "timeout-not-applied");
    req = gwt_card(ref, 1999, "4242424242424242");
    r = gwt_call(gw, &req);
    ASSERT_EQ(r.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(r.attempt_count, 2);
    ASSERT_STR_EQ(r.channel, "card_b");
    ASSERT_EQ(gwt_records(&card_a, ref), 0);
    ASSERT_EQ(gwt_approved(&card_b, ref), 1);
    gwt_faults(&card_a, "{}");
    write_config(20000, 10);
    reload();
}

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool done;
    gw_result_t result;
} one_call;

static void one_done(void *ctx, const gw_result_t *result) {
    one_call *c = ctx;
    pthread_mutex_lock(&c->mutex);
    c->result = *result;
    c->done = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mutex);
}

/* The channel applies the payment and dies before answering; it cannot be asked
 * either. The gateway must end UNKNOWN without trying card_b; once the channel is
 * back, GW_OP_STATUS with the attempt's key finds the approval. */
static void test_unresolved_then_status(void) {
    gwt_faults(&card_a, "{\"timeout_rate\":1.0,\"timeout_applied_ratio\":1.0,\"timeout_hold_ms\":60000}");
    char ref[PC_ID_SIZE];
    next_ref(ref, "unresolved");
    gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
    one_call c = {.done = false};
    pthread_mutex_init(&c.mutex, NULL);
    pthread_cond_init(&c.cond, NULL);
    gw_callbacks_t callbacks = {.done = one_done, .ctx = &c};
    ASSERT_STATUS(gw_submit(gw, &req, &callbacks), PC_OK);
    uint64_t deadline = gwt_ms() + GWT_START_TIMEOUT_MS;
    while (gwt_approved(&card_a, ref) == 0) { /* applied, and held open */
        if (gwt_ms() > deadline) TEST_FAIL("the simulator never applied %s", ref);
        usleep(10000);
    }
    kill(card_a.pid, SIGKILL);
    waitpid(card_a.pid, NULL, 0);
    close(card_a.stdout_fd);
    card_a.pid = 0;
    pthread_mutex_lock(&c.mutex);
    while (!c.done) pthread_cond_wait(&c.cond, &c.mutex);
    pthread_mutex_unlock(&c.mutex);
    gw_result_t r = c.result;
    if (r.outcome != GW_OUTCOME_UNKNOWN) gwt_print(&r);
    ASSERT_EQ(r.outcome, GW_OUTCOME_UNKNOWN);
    ASSERT_EQ(r.attempt_count, 1);
    ASSERT_TRUE(r.attempts[0].status_inquired);
    ASSERT_EQ(gwt_records(&card_b, ref), 0);

    /* restart on the same record (a new port): reload, then ask */
    char db[512];
    snprintf(db, sizeof db, "%s", card_a.db);
    gwt_sim_start(&card_a, "card", "card_a", NULL, NULL);
    ASSERT_STR_EQ(card_a.db, db);
    write_config(20000, 10);
    reload();
    gw_request_t ask = req;
    ask.op = GW_OP_STATUS;
    ask.status_op = GW_OP_AUTHORIZE;
    snprintf(ask.channel, sizeof ask.channel, "card_a");
    snprintf(ask.status_key, sizeof ask.status_key, "%s", r.idempotency_key);
    gw_result_t found = gwt_call(gw, &ask);
    ASSERT_TRUE(found.status_found);
    ASSERT_EQ(found.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(gwt_approved(&card_a, ref), 1);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.mutex);
}

/* A random mix of every fault on both channels: never two approvals for one payment,
 * and the gateway's verdict matches the records. */
static void test_mixed_never_twice(void) {
    write_config(400, 1000);
    reload();
    const char *faults = "{\"error_rate\":0.15,\"timeout_rate\":0.15,\"timeout_applied_ratio\":0.5,"
                         "\"timeout_hold_ms\":1500,\"garbage_rate\":0.2,\"garbage_applied_ratio\":0.5}";
    gwt_faults(&card_a, faults);
    gwt_faults(&card_b, faults);
    enum { COUNT = 160 };
    static gw_request_t requests[COUNT];
    static gw_result_t results[COUNT];
    for (uint32_t i = 0; i < COUNT; i++) {
        char ref[PC_ID_SIZE];
        next_ref(ref, "mixed");
        requests[i] = gwt_card(ref, 100 + i, "4242424242424242");
    }
    gwt_run_many(gw, requests, COUNT, 16, results);
    uint32_t outcomes[GW_OUTCOME_COUNT] = {0};
    for (uint32_t i = 0; i < COUNT; i++) {
        const gw_result_t *r = &results[i];
        int64_t approved = approved_anywhere(requests[i].reference);
        outcomes[r->outcome]++;
        if (approved > 1) TEST_FAIL("%s approved %lld times", requests[i].reference, (long long)approved);
        if (r->outcome == GW_OUTCOME_APPROVED && approved != 1) {
            gwt_print(r);
            TEST_FAIL("%s: the gateway says approved, the channels recorded %lld", requests[i].reference, (long long)approved);
        }
        if ((r->outcome == GW_OUTCOME_RETRYABLE || r->outcome == GW_OUTCOME_SOFT_DECLINE ||
             r->outcome == GW_OUTCOME_HARD_DECLINE) && approved != 0) {
            gwt_print(r);
            TEST_FAIL("%s: the gateway says %s, a channel approved it", requests[i].reference, gw_outcome_name(r->outcome));
        }
    }
    fprintf(stderr, "mixed faults: approved %u retryable %u unknown %u\n", outcomes[GW_OUTCOME_APPROVED],
            outcomes[GW_OUTCOME_RETRYABLE], outcomes[GW_OUTCOME_UNKNOWN]);
    ASSERT_TRUE(outcomes[GW_OUTCOME_APPROVED] > COUNT / 2);
    gwt_faults(&card_a, "{}");
    gwt_faults(&card_b, "{}");
}

int main(void) {
    gwt_setup("gw-faults");
    gwt_path(log_path, sizeof log_path, "gateway.log");
    ASSERT_TRUE(obs_log_open(log_path, OBS_LEVEL_INFO));
    gwt_sim_start(&card_a, "card", "card_a", NULL, NULL);
    gwt_sim_start(&card_b, "card", "card_b", NULL, NULL);
    gwt_path(config_path, sizeof config_path, "channels.json");
    write_config(20000, 10);
    gw = gwt_gateway(config_path);
    TEST_RUN(test_garbage);
    TEST_RUN(test_garbage_alone);
    TEST_RUN(test_timeouts);
    TEST_RUN(test_unresolved_then_status);
    TEST_RUN(test_mixed_never_twice);
    gw_stop(gw);
    gwt_sim_stop(&card_a);
    gwt_sim_stop(&card_b);
    obs_log_close();
    gwt_teardown();
    return test_finish();
}
