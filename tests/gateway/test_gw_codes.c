/* Goal: every response code of every channel reaches its outcome through the
 * channel's table, follow-ups (capture, void, refund, 3-D Secure) work, declines are
 * never retried and retryable codes are, and the simulators' records agree.
 * Method: real card (two), wallet and bank simulators on loopback; one gateway routing
 * card payments by priority card_a, card_b; each forcing test card once; then the
 * records of both card simulators are counted per payment reference. */
#include "gw_test_util.h"

static gwt_sim_t card_a, card_b, wallet, bank;
static gw_t *gw;
static uint32_t ref_seq;

static void next_ref(char *out, const char *prefix) {
    snprintf(out, PC_ID_SIZE, "%s-%u", prefix, ++ref_seq);
}

/* 'card_a_codes': card_a's overrides of its kind's table ("" for none). */
static void write_config(const char *path, const char *card_a_codes) {
    gwt_write(path,
              "{\"channels\":[\n"
              " {\"name\":\"card_a\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":20000%s},\n"
              " {\"name\":\"card_b\",\"kind\":\"card\",\"url\":\"%s\",\"timeout_ms\":20000},\n"
              " {\"name\":\"wallet\",\"kind\":\"wallet\",\"url\":\"%s\",\"timeout_ms\":20000},\n"
              " {\"name\":\"bank\",\"kind\":\"bank\",\"url\":\"%s\",\"timeout_ms\":20000,\n"
              "  \"callback_url\":\"http://127.0.0.1:1/v1/channels/bank/callbacks\"}\n"
              "],\n"
              "\"routing\":{\"strategy\":\"priority\",\"priority\":[\"card_a\",\"card_b\"],\"attempts_max\":3}}\n",
              card_a.url, card_a_codes, card_b.url, wallet.url, bank.url);
}

typedef struct {
    const char *number;
    const char *code;
    gw_outcome outcome;
    uint32_t attempts; /* 2: retried on card_b */
} card_case;

static const card_case cases[] = {
    {"4242424242424242", "00", GW_OUTCOME_APPROVED, 1},
    {"4000000000000051", "05", GW_OUTCOME_SOFT_DECLINE, 1},
    {"4000000000000143", "14", GW_OUTCOME_HARD_DECLINE, 1},
    {"4242424242424241", "14", GW_OUTCOME_HARD_DECLINE, 1}, /* Luhn-invalid */
    {"4000000000000515", "51", GW_OUTCOME_SOFT_DECLINE, 1},
    {"4000000000000549", "54", GW_OUTCOME_HARD_DECLINE, 1},
    {"4000000000000572", "57", GW_OUTCOME_HARD_DECLINE, 1},
    {"4000000000000614", "61", GW_OUTCOME_SOFT_DECLINE, 1},
    {"4000000000000911", "91", GW_OUTCOME_RETRYABLE, 2},
    {"4000000000000960", "96", GW_OUTCOME_RETRYABLE, 2},
};

static void test_card_codes(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const card_case *c = &cases[i];
        char ref[PC_ID_SIZE];
        next_ref(ref, "code");
        gw_request_t req = gwt_card(ref, 1999, c->number);
        gw_result_t r = gwt_call(gw, &req);
        if (r.outcome != c->outcome || strcmp(r.response_code, c->code) != 0) gwt_print(&r);
        ASSERT_STR_EQ(r.response_code, c->code);
        ASSERT_STR_EQ(gw_outcome_name(r.outcome), gw_outcome_name(c->outcome));
        ASSERT_STATUS(r.status, PC_OK);
        ASSERT_EQ(r.attempt_count, c->attempts);
        ASSERT_STR_EQ(r.attempts[0].channel, "card_a");
        ASSERT_STR_EQ(r.decision.chosen, "card_a");
        ASSERT_EQ(gwt_records(&card_a, ref), 1);
        ASSERT_EQ(gwt_records(&card_b, ref), c->attempts == 2 ? 1 : 0);
        ASSERT_EQ(gwt_approved(&card_a, ref) + gwt_approved(&card_b, ref), c->outcome == GW_OUTCOME_APPROVED);
        if (c->attempts == 2) {
            ASSERT_STR_EQ(r.attempts[1].channel, "card_b");
            ASSERT_TRUE(strcmp(r.attempts[0].idempotency_key, r.attempts[1].idempotency_key) != 0);
        }
    }
}

/* Whether the gateway's Prometheus text holds this exact line. */
static bool metric_line(const char *line) {
    size_t bytes = 0;
    char *text = gw_metrics_append(gw, pc_strdup(""), &bytes);
    char want[256];
    snprintf(want, sizeof want, "\n%s\n", line);
    bool found = strstr(text, want) != NULL;
    if (!found) fprintf(stderr, "metrics lack '%s':\n%s", line, text);
    free(text);
    return found;
}

static const json_t *channel_of(const json_t *all, const char *name) {
    const json_t *list = json_object_get(all, "channels");
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *c = json_array_get(list, i);
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0) return c;
    }
    TEST_FAIL("GET /v1/channels has no %s", name);
}

/* Right after test_card_codes: /metrics and GET /v1/channels count exactly what went
 * out. card_a answered each case once; card_b took the two retryable ones (91, 96). */
static void test_metrics_count_the_codes(void) {
    static const char *const lines[] = {
        "paycore_gateway_attempts_total{channel=\"card_a\",op=\"authorize\"} 10",
        "paycore_gateway_attempts_total{channel=\"card_b\",op=\"authorize\"} 2",
        "paycore_gateway_attempts_total{channel=\"card_a\",op=\"status\"} 0",
        "paycore_gateway_outcomes_total{channel=\"card_a\",outcome=\"approved\"} 1",
        "paycore_gateway_outcomes_total{channel=\"card_a\",outcome=\"soft_decline\"} 3",
        "paycore_gateway_outcomes_total{channel=\"card_a\",outcome=\"hard_decline\"} 4",
        "paycore_gateway_outcomes_total{channel=\"card_a\",outcome=\"retryable\"} 2",
        "paycore_gateway_outcomes_total{channel=\"card_a\",outcome=\"unknown\"} 0",
        "paycore_gateway_outcomes_total{channel=\"card_b\",outcome=\"retryable\"} 2",
        "paycore_gateway_outcomes_total{channel=\"card_b\",outcome=\"approved\"} 0",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"00\"} 1",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"05\"} 1",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"14\"} 2",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"51\"} 1",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"54\"} 1",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"57\"} 1",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"61\"} 1",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"91\"} 1",
        "paycore_gateway_responses_total{channel=\"card_a\",code=\"96\"} 1",
        "paycore_gateway_responses_total{channel=\"card_b\",code=\"91\"} 1",
        "paycore_gateway_responses_total{channel=\"card_b\",code=\"96\"} 1",
        "paycore_gateway_latency_seconds_count{channel=\"card_a\"} 10",
        "paycore_gateway_latency_seconds_bucket{channel=\"card_a\",le=\"+Inf\"} 10",
        "paycore_gateway_latency_seconds_count{channel=\"card_b\"} 2",
        "paycore_gateway_retries_total{channel=\"card_a\"} 0",
        "paycore_gateway_retries_total{channel=\"card_b\"} 2",
        "paycore_gateway_status_inquiries_total{channel=\"card_a\",result=\"found\"} 0",
        "paycore_gateway_in_flight{channel=\"card_a\"} 0",
        "paycore_gateway_breaker_state{channel=\"card_a\",state=\"closed\"} 1",
        "paycore_gateway_attempts_total{channel=\"wallet\",op=\"authorize\"} 0",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) ASSERT_TRUE(metric_line(lines[i]));
    json_t *all = gw_channels_json(gw);
    const json_t *a = channel_of(all, "card_a"), *b = channel_of(all, "card_b");
    ASSERT_EQ(json_integer_value(json_object_get(a, "attempts")), 10);
    ASSERT_EQ(json_integer_value(json_object_get(b, "attempts")), 2);
    ASSERT_EQ(json_integer_value(json_object_get(b, "retries")), 2);
    /* hard declines say nothing of the channel: 6 of card_a's 10 answers count */
    ASSERT_EQ(json_integer_value(json_object_get(a, "success_rate_calls")), 6);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(a, "latency_ms"), "samples")), 10);
    json_decref(all);
}

static gw_result_t follow_up(gw_op op, const gw_result_t *auth, int64_t amount_minor) {
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.op = op;
    snprintf(req.reference, sizeof req.reference, "follow-%u", ++ref_seq);
    snprintf(req.channel, sizeof req.channel, "%s", auth->channel);
    snprintf(req.channel_ref, sizeof req.channel_ref, "%s", auth->channel_ref);
    snprintf(req.currency, sizeof req.currency, "EUR");
    req.amount_minor = amount_minor;
    return gwt_call(gw, &req);
}

static void test_capture_void_refund(void) {
    char ref[PC_ID_SIZE];
    next_ref(ref, "cap");
    gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
    gw_result_t auth = gwt_call(gw, &req);
    ASSERT_EQ(auth.outcome, GW_OUTCOME_APPROVED);
    ASSERT_TRUE(strncmp(auth.channel_ref, "auth_", 5) == 0);
    gw_result_t cap = follow_up(GW_OP_CAPTURE, &auth, 500);
    ASSERT_EQ(cap.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(cap.total_minor, 500);
    ASSERT_EQ(cap.decision.strategy, GW_STRATEGY_DIRECT);
    gw_result_t over = follow_up(GW_OP_CAPTURE, &auth, 1500); /* 500 + 1500 > 1999 */
    ASSERT_STR_EQ(over.response_code, "61");
    ASSERT_EQ(over.outcome, GW_OUTCOME_SOFT_DECLINE);
    ASSERT_EQ(over.attempt_count, 1);
    gw_result_t refund = follow_up(GW_OP_REFUND, &auth, 200);
    ASSERT_EQ(refund.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(refund.total_minor, 200);
    gw_result_t void_captured = follow_up(GW_OP_VOID, &auth, 0);
    ASSERT_STR_EQ(void_captured.response_code, "57");
    ASSERT_EQ(void_captured.outcome, GW_OUTCOME_HARD_DECLINE);
    next_ref(ref, "void");
    req = gwt_card(ref, 700, "4242424242424242");
    auth = gwt_call(gw, &req);
    gw_result_t voided = follow_up(GW_OP_VOID, &auth, 0);
    ASSERT_EQ(voided.outcome, GW_OUTCOME_APPROVED);
    /* a follow-up on a channel that does not exist is refused before any call */
    snprintf(auth.channel, sizeof auth.channel, "nope");
    gw_result_t unknown = follow_up(GW_OP_CAPTURE, &auth, 1);
    ASSERT_STATUS(unknown.status, PC_GATEWAY_CHANNEL_UNKNOWN);
    ASSERT_EQ(unknown.attempt_count, 0);
}

static gw_result_t challenge(const gw_result_t *auth, const char *code, int64_t amount_minor) {
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_CHALLENGE;
    snprintf(req.reference, sizeof req.reference, "%s", "3ds");
    snprintf(req.channel, sizeof req.channel, "%s", auth->channel);
    snprintf(req.challenge_id, sizeof req.challenge_id, "%s", auth->challenge_id);
    snprintf(req.challenge_code, sizeof req.challenge_code, "%s", code);
    snprintf(req.currency, sizeof req.currency, "EUR");
    req.amount_minor = amount_minor;
    return gwt_call(gw, &req);
}

static void test_three_d_secure(void) {
    char ref[PC_ID_SIZE];
    next_ref(ref, "3ds-right");
    gw_request_t req = gwt_card(ref, 1200, "4000002760003184");
    gw_result_t auth = gwt_call(gw, &req);
    ASSERT_EQ(auth.outcome, GW_OUTCOME_CHALLENGE);
    ASSERT_STR_EQ(auth.response_code, "challenge");
    ASSERT_TRUE(strncmp(auth.challenge_id, "ch_", 3) == 0);
    ASSERT_EQ(auth.attempt_count, 1);
    ASSERT_EQ(gwt_approved(&card_a, ref), 0);
    gw_result_t done = challenge(&auth, "123456", 1200);
    ASSERT_EQ(done.outcome, GW_OUTCOME_APPROVED);
    ASSERT_STR_EQ(done.response_code, "00");
    ASSERT_EQ(gwt_approved(&card_a, ref), 1);

    next_ref(ref, "3ds-wrong");
    req = gwt_card(ref, 1200, "4000002760003184");
    auth = gwt_call(gw, &req);
    ASSERT_EQ(auth.outcome, GW_OUTCOME_CHALLENGE);
    gw_result_t wrong = challenge(&auth, "000000", 1200);
    ASSERT_STR_EQ(wrong.response_code, "05");
    ASSERT_EQ(wrong.outcome, GW_OUTCOME_SOFT_DECLINE);
    ASSERT_EQ(wrong.attempt_count, 1);
    ASSERT_EQ(gwt_approved(&card_a, ref), 0);
    ASSERT_EQ(gwt_approved(&card_b, ref), 0);
    gw_result_t again = challenge(&auth, "123456", 1200); /* completes once */
    ASSERT_TRUE(again.outcome != GW_OUTCOME_APPROVED);
    ASSERT_EQ(gwt_approved(&card_a, ref), 0);
}

static gw_result_t wallet_pay(const char *wallet_id, int64_t amount_minor, const char *currency) {
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_AUTHORIZE;
    snprintf(req.reference, sizeof req.reference, "wallet-%u", ++ref_seq);
    snprintf(req.method, sizeof req.method, "wallet");
    snprintf(req.wallet_id, sizeof req.wallet_id, "%s", wallet_id);
    snprintf(req.currency, sizeof req.currency, "%s", currency);
    req.amount_minor = amount_minor;
    return gwt_call(gw, &req);
}

static void test_wallet_codes(void) {
    gw_result_t ok = wallet_pay("w_1", 1000, "EUR");
    ASSERT_STR_EQ(ok.response_code, "approved");
    ASSERT_EQ(ok.outcome, GW_OUTCOME_APPROVED);
    ASSERT_STR_EQ(ok.channel, "wallet");
    struct { const char *wallet; int64_t amount; const char *currency; const char *code; gw_outcome outcome; } w[] = {
        {"w_1", 50000, "EUR", "insufficient_balance", GW_OUTCOME_SOFT_DECLINE},
        {"w_frozen", 100, "EUR", "account_frozen", GW_OUTCOME_HARD_DECLINE},
        {"w_none", 100, "EUR", "account_not_found", GW_OUTCOME_HARD_DECLINE},
        {"w_usd", 100, "EUR", "currency_mismatch", GW_OUTCOME_HARD_DECLINE},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        gw_result_t r = wallet_pay(w[i].wallet, w[i].amount, w[i].currency);
        ASSERT_STR_EQ(r.response_code, w[i].code);
        ASSERT_EQ(r.outcome, w[i].outcome);
        ASSERT_EQ(r.attempt_count, 1);
    }
    gw_result_t refund = follow_up(GW_OP_REFUND, &ok, 400);
    ASSERT_EQ(refund.outcome, GW_OUTCOME_APPROVED);
    gw_result_t too_much = follow_up(GW_OP_REFUND, &ok, 700);
    ASSERT_STR_EQ(too_much.response_code, "exceeds_refundable");
    ASSERT_EQ(too_much.outcome, GW_OUTCOME_HARD_DECLINE);
    gw_result_t capture = follow_up(GW_OP_CAPTURE, &ok, 1); /* wallets capture at once */
    ASSERT_STATUS(capture.status, PC_GATEWAY_OP_UNSUPPORTED);
}

static void test_bank_pending(void) {
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_PAYOUT;
    snprintf(req.reference, sizeof req.reference, "payout-%u", ++ref_seq);
    snprintf(req.method, sizeof req.method, "bank_transfer");
    snprintf(req.currency, sizeof req.currency, "EUR");
    snprintf(req.bank.routing_number, sizeof req.bank.routing_number, "110000000");
    snprintf(req.bank.account_number, sizeof req.bank.account_number, "000123456789");
    req.amount_minor = 2500;
    gw_result_t r = gwt_call(gw, &req);
    if (r.outcome != GW_OUTCOME_PENDING) gwt_print(&r);
    ASSERT_EQ(r.outcome, GW_OUTCOME_PENDING);
    ASSERT_STR_EQ(r.channel, "bank");
    ASSERT_TRUE(strncmp(r.channel_ref, "bt_", 3) == 0);
    /* card channels cannot pay out: the decision says so */
    ASSERT_EQ(r.decision.candidates[0].why, GW_WHY_OP);
    req.op = GW_OP_AUTHORIZE; /* a collection: a debit transfer */
    snprintf(req.reference, sizeof req.reference, "collect-%u", ++ref_seq);
    r = gwt_call(gw, &req);
    ASSERT_EQ(r.outcome, GW_OUTCOME_PENDING);
}

static void test_status_op(void) {
    char ref[PC_ID_SIZE];
    next_ref(ref, "status");
    gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
    gw_result_t auth = gwt_call(gw, &req);
    ASSERT_EQ(auth.outcome, GW_OUTCOME_APPROVED);
    gw_request_t ask = req;
    ask.op = GW_OP_STATUS;
    ask.status_op = GW_OP_AUTHORIZE;
    snprintf(ask.channel, sizeof ask.channel, "%s", auth.channel);
    snprintf(ask.status_key, sizeof ask.status_key, "%s", auth.idempotency_key);
    gw_result_t found = gwt_call(gw, &ask);
    ASSERT_TRUE(found.status_found);
    ASSERT_EQ(found.outcome, GW_OUTCOME_APPROVED);
    ASSERT_STR_EQ(found.channel_ref, auth.channel_ref);
    snprintf(ask.status_key, sizeof ask.status_key, "gwk_never_sent");
    gw_result_t missing = gwt_call(gw, &ask);
    ASSERT_STATUS(missing.status, PC_OK);
    ASSERT_FALSE(missing.status_found);
    ASSERT_EQ(missing.outcome, GW_OUTCOME_RETRYABLE);
    ASSERT_EQ(gwt_records(&card_a, ref), 1); /* asking applies nothing */
}

/* A channels file overrides single codes of one channel: card_a reads 05 as a hard
 * decline and 61 as retryable (so card_b, on the built-in table, gets the 61 and
 * declines it softly); a reload back restores the table. */
static void test_code_overrides(void) {
    char config[512];
    gwt_path(config, sizeof config, "channels.json");
    write_config(config, ",\n  \"codes\":{\"05\":\"hard_decline\",\"61\":\"retryable\"}");
    gw_config_error_t error;
    ASSERT_STATUS(gw_reload(gw, &error), PC_OK);
    char ref[PC_ID_SIZE];
    next_ref(ref, "override-05");
    gw_request_t req = gwt_card(ref, 1999, "4000000000000051");
    gw_result_t r = gwt_call(gw, &req);
    ASSERT_STR_EQ(r.response_code, "05");
    ASSERT_EQ(r.outcome, GW_OUTCOME_HARD_DECLINE);
    ASSERT_EQ(r.attempt_count, 1);
    next_ref(ref, "override-61");
    req = gwt_card(ref, 1999, "4000000000000614");
    r = gwt_call(gw, &req);
    ASSERT_EQ(r.attempt_count, 2);
    ASSERT_EQ(r.attempts[0].outcome, GW_OUTCOME_RETRYABLE);
    ASSERT_STR_EQ(r.channel, "card_b");
    ASSERT_STR_EQ(r.response_code, "61");
    ASSERT_EQ(r.outcome, GW_OUTCOME_SOFT_DECLINE);
    ASSERT_EQ(gwt_records(&card_b, ref), 1);
    write_config(config, "");
    ASSERT_STATUS(gw_reload(gw, &error), PC_OK);
    next_ref(ref, "override-gone");
    req = gwt_card(ref, 1999, "4000000000000051");
    r = gwt_call(gw, &req);
    ASSERT_EQ(r.outcome, GW_OUTCOME_SOFT_DECLINE);
}

int main(void) {
    gwt_setup("gw-codes");
    gwt_sim_start(&card_a, "card", "card_a", NULL, NULL);
    gwt_sim_start(&card_b, "card", "card_b", NULL, NULL);
    gwt_sim_start(&wallet, "wallet", "wallet",
                  NULL, "{\"accounts\":[{\"id\":\"w_1\",\"currency\":\"EUR\",\"balance\":10000,\"frozen\":false},"
                        "{\"id\":\"w_frozen\",\"currency\":\"EUR\",\"balance\":10000,\"frozen\":true},"
                        "{\"id\":\"w_usd\",\"currency\":\"USD\",\"balance\":10000,\"frozen\":false}]}");
    gwt_sim_start(&bank, "bank", "bank", NULL, NULL);
    char config[512];
    gwt_path(config, sizeof config, "channels.json");
    write_config(config, "");
    gw = gwt_gateway(config);
    TEST_RUN(test_card_codes);
    TEST_RUN(test_metrics_count_the_codes);
    TEST_RUN(test_capture_void_refund);
    TEST_RUN(test_three_d_secure);
    TEST_RUN(test_wallet_codes);
    TEST_RUN(test_bank_pending);
    TEST_RUN(test_status_op);
    TEST_RUN(test_code_overrides);
    gw_stop(gw);
    gwt_sim_stop(&card_a);
    gwt_sim_stop(&card_b);
    gwt_sim_stop(&wallet);
    gwt_sim_stop(&bank);
    gwt_teardown();
    return test_finish();
}
