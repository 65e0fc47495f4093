/* Goal: each routing strategy sends traffic where it should, through real channels.
 * - weighted 70/30: over a few thousand payments the split lands within a tolerance,
 *   and each simulator's record holds exactly the payments routed to it;
 * - priority with a scheduled outage of the first channel: payments fail over to the
 *   second (the 503 applied nothing: the first channel's record has none of them);
 *   with attempts_max 1 they end retryable there and the second is never asked;
 * - success rate: a degraded channel loses its traffic (only the exploration share
 *   stays) and gets it back after it recovers.
 * Method: two card simulators, faults at run time; the gateway reloads a new routing
 * section between phases; counts come from results and from the records. */
#include "gw_test_util.h"

static gwt_sim_t card_a, card_b;
static gw_t *gw;
static char config_path[512];
static uint32_t ref_seq;

static void write_config(const char *routing) {
    gwt_write(config_path,
              "{\"channels\":[\n"
              " {\"name\":\"card_a\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":20000,\n"
              "  \"breaker\":{\"failures_consecutive\":0,\"error_rate_percent\":0}},\n"
              " {\"name\":\"card_b\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":20000,\n"
              "  \"breaker\":{\"failures_consecutive\":0,\"error_rate_percent\":0}}],\n"
              "\"routing\":%s}\n",
              card_a.url, card_b.url, routing);
    if (gw == NULL) {
        gw = gwt_gateway(config_path);
        return;
    }
    gw_config_error_t error;
    pc_status status = gw_reload(gw, &error);
    if (status != PC_OK) TEST_FAIL("reload: line %u: %s", error.line, error.message);
}

/* 'count' payments, 32 at a time; results in 'results'. */
static void pay(uint32_t count, gw_request_t *requests, gw_result_t *results, const char *prefix) {
    for (uint32_t i = 0; i < count; i++) {
        char ref[PC_ID_SIZE];
        snprintf(ref, sizeof ref, "%s-%u", prefix, ++ref_seq);
        requests[i] = gwt_card(ref, 100, "4242424242424242");
    }
    gwt_run_many(gw, requests, count, 32, results);
}

static uint32_t chosen(const gw_result_t *results, uint32_t count, const char *channel) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) n += strcmp(results[i].decision.chosen, channel) == 0;
    return n;
}

enum { MANY = 3000 };
static gw_request_t requests[MANY];
static gw_result_t results[MANY];

static void test_weighted(void) {
    write_config("{\"strategy\":\"weighted\",\"weights\":{\"card_a\":70,\"card_b\":30}}");
    int64_t before_a = gwt_sim_count(&card_a, "SELECT count(*) FROM records", NULL);
    int64_t before_b = gwt_sim_count(&card_b, "SELECT count(*) FROM records", NULL);
    pay(MANY, requests, results, "weighted");
    uint32_t to_a = chosen(results, MANY, "card_a");
    uint32_t to_b = chosen(results, MANY, "card_b");
    fprintf(stderr, "weighted 70/30 over %d: card_a %u card_b %u\n", MANY, to_a, to_b);
    ASSERT_EQ(to_a + to_b, MANY);
    /* binomial sd at 3000 draws is 0.84 points: 4 points is ~5 sd */
    ASSERT_TRUE(to_a >= MANY * 66 / 100 && to_a <= MANY * 74 / 100);
    for (uint32_t i = 0; i < MANY; i++) {
        ASSERT_EQ(results[i].outcome, GW_OUTCOME_APPROVED);
        ASSERT_EQ(results[i].attempt_count, 1);
        ASSERT_STR_EQ(results[i].channel, results[i].decision.chosen);
        ASSERT_TRUE(strstr(results[i].decision.why, "weighted: ") == results[i].decision.why);
    }
    ASSERT_EQ(gwt_sim_count(&card_a, "SELECT count(*) FROM records", NULL) - before_a, to_a);
    ASSERT_EQ(gwt_sim_count(&card_b, "SELECT count(*) FROM records", NULL) - before_b, to_b);
}

static void test_priority_outage_failover(void) {
    write_config("{\"strategy\":\"priority\",\"priority\":[\"card_a\",\"card_b\"],\"attempts_max\":2}");
    enum { N = 40 };
    pay(N, requests, results, "priority");
    ASSERT_EQ(chosen(results, N, "card_a"), N);
    for (uint32_t i = 0; i < N; i++) ASSERT_STR_EQ(results[i].channel, "card_a");
    /* a scheduled outage that starts now and lasts ten minutes */
    gwt_faults(&card_a, "{\"outages\":[{\"start_ms\":0,\"duration_ms\":600000}],\"outage_mode\":\"503\"}");
    pay(N, requests, results, "outage");
    for (uint32_t i = 0; i < N; i++) {
        const gw_result_t *r = &results[i];
        if (r->outcome != GW_OUTCOME_APPROVED) gwt_print(r);
        ASSERT_EQ(r->outcome, GW_OUTCOME_APPROVED);
        ASSERT_EQ(r->attempt_count, 2);
        ASSERT_STR_EQ(r->attempts[0].response_code, "http_503");
        ASSERT_EQ(r->attempts[0].outcome, GW_OUTCOME_RETRYABLE);
        ASSERT_FALSE(r->attempts[0].status_inquired); /* 503 applied nothing: no inquiry needed */
        ASSERT_STR_EQ(r->channel, "card_b");
        ASSERT_EQ(gwt_records(&card_a, requests[i].reference), 0);
        ASSERT_EQ(gwt_approved(&card_b, requests[i].reference), 1);
    }
    /* attempts_max 1: the 503 ends the payment as retryable; card_b is never asked */
    write_config("{\"strategy\":\"priority\",\"priority\":[\"card_a\",\"card_b\"],\"attempts_max\":1}");
    pay(N, requests, results, "one-attempt");
    for (uint32_t i = 0; i < N; i++) {
        ASSERT_EQ(results[i].outcome, GW_OUTCOME_RETRYABLE);
        ASSERT_EQ(results[i].attempt_count, 1);
        ASSERT_STR_EQ(results[i].attempts[0].channel, "card_a");
        ASSERT_EQ(gwt_records(&card_b, requests[i].reference), 0);
    }
    write_config("{\"strategy\":\"priority\",\"priority\":[\"card_a\",\"card_b\"],\"attempts_max\":2}");
    gwt_faults(&card_a, "{}");
    pay(N, requests, results, "after-outage");
    ASSERT_EQ(chosen(results, N, "card_a"), N);
    for (uint32_t i = 0; i < N; i++) ASSERT_EQ(results[i].attempt_count, 1);
}

/* Runs blocks of 100 payments until card_a's share of first choices satisfies
 * 'want' for one block (fails after 'blocks_max'); returns that share in percent. */
static uint32_t run_until(bool (*want)(uint32_t percent), uint32_t blocks_max, const char *what) {
    for (uint32_t block = 0; block < blocks_max; block++) {
        pay(100, requests, results, what);
        uint32_t percent = chosen(results, 100, "card_a");
        for (uint32_t i = 0; i < 100; i++) ASSERT_EQ(results[i].outcome, GW_OUTCOME_APPROVED);
        if (want(percent)) return percent;
    }
    TEST_FAIL("%s: card_a's share never moved as expected in %u blocks", what, blocks_max);
}

static bool share_low(uint32_t percent) { return percent <= 15; }
static bool share_high(uint32_t percent) { return percent >= 30; }

static void test_success_rate(void) {
    write_config("{\"strategy\":\"success_rate\",\"attempts_max\":2,\n"
                 " \"success_rate\":{\"window_calls\":30,\"calls_min\":10,\"exploration_percent\":10,"
                 "\"elimination_percent\":50}}");
    /* healthy: equal rates split at random */
    pay(400, requests, results, "sr-healthy");
    uint32_t healthy_a = chosen(results, 400, "card_a");
    fprintf(stderr, "success rate, both healthy: card_a %u of 400\n", healthy_a);
    ASSERT_TRUE(healthy_a >= 120 && healthy_a <= 280);
    /* card_a degrades: every call a 96 (retryable: card_b takes the payment) */
    gwt_faults(&card_a, "{\"error_rate\":1.0}");
    uint32_t degraded = run_until(share_low, 10, "sr-degraded");
    /* stays away while degraded: the exploration share only (5% expected) */
    pay(400, requests, results, "sr-still-degraded");
    uint32_t explored = chosen(results, 400, "card_a");
    fprintf(stderr, "success rate, card_a degraded: %u%% then %u of 400\n", degraded, explored);
    ASSERT_TRUE(explored <= 60);
    for (uint32_t i = 0; i < 400; i++) {
        const gw_result_t *r = &results[i];
        if (strcmp(r->decision.chosen, "card_a") == 0) {
            ASSERT_TRUE(strstr(r->decision.why, "exploring card_a") != NULL);
            ASSERT_STR_EQ(r->channel, "card_b"); /* the 96 went on to card_b */
        }
    }
    /* recovery: exploration traffic brings card_a's rate back, then its share */
    gwt_faults(&card_a, "{}");
    uint32_t recovered = run_until(share_high, 30, "sr-recovered");
    fprintf(stderr, "success rate, card_a recovered: %u%%\n", recovered);
}

int main(void) {
    gwt_setup("gw-routing");
    gwt_sim_start(&card_a, "card", "card_a", NULL, NULL);
    gwt_sim_start(&card_b, "card", "card_b", NULL, NULL);
    gwt_path(config_path, sizeof config_path, "channels.json");
    TEST_RUN(test_weighted);
    TEST_RUN(test_priority_outage_failover);
    TEST_RUN(test_success_rate);
    gw_stop(gw);
    gwt_sim_stop(&card_a);
    gwt_sim_stop(&card_b);
    gwt_teardown();
    return test_finish();
}
