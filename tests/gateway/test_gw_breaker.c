/* Goal: a channel's circuit breaker opens on consecutive failures and on the error
 * rate, routing skips the open channel, it half-opens after the cool-down, a failing
 * probe opens it again, and succeeding probes (as many as configured) close it; the
 * transitions show in /metrics and GET /v1/channels.
 * Method: two card simulators, priority card_a then card_b; card_a fails through a
 * scheduled outage (503) set and cleared at run time. The cool-down is an hour while
 * a state is asserted (a slow machine never sees it end early) and is cut to 1 ms by
 * a reload (breakers survive reloads) when the test wants it over; states are polled,
 * never slept for. */
#include "gw_test_util.h"

static gwt_sim_t card_a, card_b;
static gw_t *gw;
static uint32_t ref_seq;

static char config_path[512];
static uint32_t failures_consecutive = 3;

enum { COOLDOWN_LONG_MS = 3600000, COOLDOWN_SHORT_MS = 1 };

static void write_config(uint32_t cooldown_ms) {
    gwt_write(config_path,
              "{\"channels\":[\n"
              " {\"name\":\"card_a\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":20000,\n"
              "  \"breaker\":{\"failures_consecutive\":%u,\"error_rate_percent\":50,\"window_calls\":10,\n"
              "              \"calls_min\":10,\"cooldown_ms\":%u,\"half_open_probes\":2}},\n"
              " {\"name\":\"card_b\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":20000}],\n"
              "\"routing\":{\"strategy\":\"priority\",\"priority\":[\"card_a\",\"card_b\"],\"attempts_max\":2}}\n",
              card_a.url, failures_consecutive, cooldown_ms, card_b.url);
}

static void reload(uint32_t cooldown_ms) {
    write_config(cooldown_ms);
    gw_config_error_t error;
    pc_status status = gw_reload(gw, &error);
    if (status != PC_OK) TEST_FAIL("reload: line %u: %s", error.line, error.message);
}

/* Ends card_a's cool-down now: half-open, and the long cool-down back for what follows. */
static void end_cooldown(void) {
    reload(COOLDOWN_SHORT_MS);
    gwt_wait_breaker(gw, "card_a", "half_open");
    reload(COOLDOWN_LONG_MS);
}

static gw_result_t pay(void) {
    char ref[PC_ID_SIZE];
    snprintf(ref, sizeof ref, "breaker-%u", ++ref_seq);
    gw_request_t req = gwt_card(ref, 100, "4242424242424242");
    gw_result_t r = gwt_call(gw, &req);
    ASSERT_EQ(r.outcome, GW_OUTCOME_APPROVED); /* card_b always takes it */
    return r;
}

static bool metric_is(const char *line_start, uint64_t value) {
    size_t bytes = 0;
    char *text = gw_metrics_append(gw, pc_strdup(""), &bytes);
    char want[256];
    snprintf(want, sizeof want, "%s %llu\n", line_start, (unsigned long long)value);
    bool found = strstr(text, want) != NULL;
    if (!found) fprintf(stderr, "metrics lack '%s':\n%s", want, text);
    free(text);
    return found;
}

static void test_consecutive_failures(void) {
    gwt_faults(&card_a, "{\"outages\":[{\"start_ms\":0,\"duration_ms\":600000}]}");
    for (int i = 0; i < 3; i++) {
        gw_result_t r = pay();
        ASSERT_EQ(r.attempt_count, 2);
        ASSERT_STR_EQ(r.attempts[0].channel, "card_a");
    }
    char state[32];
    ASSERT_STR_EQ(gwt_breaker(gw, "card_a", state, sizeof state), "open");
    ASSERT_TRUE(metric_is("paycore_gateway_breaker_state{channel=\"card_a\",state=\"open\"}", 1));
    ASSERT_TRUE(metric_is("paycore_gateway_breaker_transitions_total{channel=\"card_a\",to=\"open\"}", 1));
    /* open: skipped by routing, the decision says why */
    gw_result_t r = pay();
    ASSERT_EQ(r.attempt_count, 1);
    ASSERT_STR_EQ(r.channel, "card_b");
    ASSERT_EQ(r.decision.candidates[0].why, GW_WHY_BREAKER_OPEN);
    ASSERT_STR_EQ(r.decision.chosen, "card_b");

    /* cool-down over: half-open; the probe fails (still out): open again */
    end_cooldown();
    r = pay();
    ASSERT_EQ(r.attempt_count, 2);
    ASSERT_STR_EQ(r.attempts[0].channel, "card_a");
    ASSERT_STR_EQ(gwt_breaker(gw, "card_a", state, sizeof state), "open");
    ASSERT_TRUE(metric_is("paycore_gateway_breaker_transitions_total{channel=\"card_a\",to=\"open\"}", 2));

    /* card_a recovers: after the cool-down two probes succeed and close it */
    gwt_faults(&card_a, "{}");
    ASSERT_STR_EQ(gwt_breaker(gw, "card_a", state, sizeof state), "open"); /* until the cool-down ends */
    end_cooldown();
    r = pay();
    ASSERT_STR_EQ(r.channel, "card_a");
    ASSERT_STR_EQ(gwt_breaker(gw, "card_a", state, sizeof state), "half_open"); /* 1 of 2 probes */
    r = pay();
    ASSERT_STR_EQ(r.channel, "card_a");
    ASSERT_STR_EQ(gwt_breaker(gw, "card_a", state, sizeof state), "closed");
    ASSERT_TRUE(metric_is("paycore_gateway_breaker_transitions_total{channel=\"card_a\",to=\"half_open\"}", 2));
    ASSERT_TRUE(metric_is("paycore_gateway_breaker_transitions_total{channel=\"card_a\",to=\"closed\"}", 1));
    ASSERT_TRUE(metric_is("paycore_gateway_breaker_state{channel=\"card_a\",state=\"closed\"}", 1));
    r = pay();
    ASSERT_STR_EQ(r.channel, "card_a");
}

/* While half-open only 'half_open_probes' calls get through at once. */
static void test_probe_limit(void) {
    gwt_faults(&card_a, "{\"outages\":[{\"start_ms\":0,\"duration_ms\":600000}]}");
    for (int i = 0; i < 3; i++) (void)pay();
    end_cooldown();
    /* card_a now answers slowly: 64 payments at once, only 2 may probe it */
    gwt_faults(&card_a, "{\"latency_p50_ms\":2000,\"latency_p99_ms\":2000}");
    enum { N = 64 };
    static gw_request_t requests[N];
    static gw_result_t results[N];
    for (uint32_t i = 0; i < N; i++) {
        char ref[PC_ID_SIZE];
        snprintf(ref, sizeof ref, "probe-%u", ++ref_seq);
        requests[i] = gwt_card(ref, 100, "4242424242424242");
    }
    gwt_run_many(gw, requests, N, N, results);
    uint32_t probed = 0;
    for (uint32_t i = 0; i < N; i++) {
        ASSERT_EQ(results[i].outcome, GW_OUTCOME_APPROVED);
        probed += strcmp(results[i].attempts[0].channel, "card_a") == 0;
    }
    ASSERT_EQ(probed, 2);
    char state[32];
    ASSERT_STR_EQ(gwt_breaker(gw, "card_a", state, sizeof state), "closed");
    gwt_faults(&card_a, "{}");
}

/* The error-rate rule alone (consecutive failures off): half of 10 calls failing
 * opens it. */
static void test_error_rate(void) {
    failures_consecutive = 0;
    reload(COOLDOWN_LONG_MS);
    gwt_faults(&card_a, "{\"error_rate\":0.5}"); /* 96: retryable, a failure */
    char state[32] = "closed";
    for (int i = 0; i < 200 && strcmp(state, "closed") == 0; i++) {
        (void)pay();
        gwt_breaker(gw, "card_a", state, sizeof state);
    }
    ASSERT_STR_EQ(state, "open");
    gwt_faults(&card_a, "{}");
    end_cooldown();
    (void)pay();
    (void)pay();
    ASSERT_STR_EQ(gwt_breaker(gw, "card_a", state, sizeof state), "closed");
}

int main(void) {
    gwt_setup("gw-breaker");
    gwt_sim_start(&card_a, "card", "card_a", NULL, NULL);
    gwt_sim_start(&card_b, "card", "card_b", NULL, NULL);
    gwt_path(config_path, sizeof config_path, "channels.json");
    write_config(COOLDOWN_LONG_MS);
    gw = gwt_gateway(config_path);
    TEST_RUN(test_consecutive_failures);
    TEST_RUN(test_probe_limit);
    TEST_RUN(test_error_rate);
    gw_stop(gw);
    gwt_sim_stop(&card_a);
    gwt_sim_stop(&card_b);
    gwt_teardown();
    return test_finish();
}
