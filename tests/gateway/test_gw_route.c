/* Goal: routing decisions are right before any channel is called: eligibility by
 * operation, method, currency, country and amount range; priority order with
 * unlisted channels after; fallback appended; weight 0 gets no traffic of its own;
 * "no channel" says why each one is out; the decision's JSON carries candidates,
 * strategy, order, choice and why. Also: response-code metric labels stay unique when
 * a channel answers more codes than there are slots; gw_submit refuses a request it
 * cannot send (bad amount, currency, country, card, ids, missing fields) before
 * anything is queued.
 * Method: gw_route on a gateway whose channels are never called (their URLs are not
 * listened on); decisions compared field by field. */
#include "gateway/gw_internal.h"
#include "gw_test_util.h"

static gw_t *gw;

static const char config_text[] =
    "{\"channels\":[\n"
    " {\"name\":\"eu_card\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\",\n"
    "  \"eligibility\":{\"currencies\":[\"EUR\"],\"countries\":[\"DE\",\"FR\"],\"amount_max_minor\":100000}},\n"
    " {\"name\":\"us_card\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\",\n"
    "  \"eligibility\":{\"currencies\":[\"USD\",\"EUR\"],\"amount_min_minor\":500}},\n"
    " {\"name\":\"any_card\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\"},\n"
    " {\"name\":\"wallet\",\"kind\":\"wallet\",\"url\":\"http://127.0.0.1:9\"},\n"
    " {\"name\":\"bank\",\"kind\":\"bank\",\"url\":\"http://127.0.0.1:9\",\n"
    "  \"eligibility\":{\"methods\":[\"bank_transfer\",\"card\"]}}],\n"
    "\"routing\":{\"strategy\":\"priority\",\"priority\":[\"us_card\",\"eu_card\"],\"fallback\":[\"bank\"]}}\n";

static gw_request_t card(const char *currency, const char *country, int64_t amount_minor) {
    gw_request_t r = gwt_card("route-1", amount_minor, "4242424242424242");
    snprintf(r.currency, sizeof r.currency, "%s", currency);
    snprintf(r.country, sizeof r.country, "%s", country);
    return r;
}

static const char *order_at(const gw_decision_t *d, uint32_t i) {
    return i < d->order_count ? d->candidates[d->order[i]].name : "-";
}

static void test_eligibility_and_priority(void) {
    gw_decision_t d;
    gw_request_t r = card("EUR", "DE", 1000);
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK);
    ASSERT_EQ(d.strategy, GW_STRATEGY_PRIORITY);
    ASSERT_EQ(d.candidate_count, 5);
    ASSERT_EQ(d.order_count, 3);
    ASSERT_STR_EQ(order_at(&d, 0), "us_card");
    ASSERT_STR_EQ(order_at(&d, 1), "eu_card");
    ASSERT_STR_EQ(order_at(&d, 2), "any_card"); /* not ranked: after the ranked ones */
    ASSERT_STR_EQ(d.chosen, "us_card");
    ASSERT_EQ(d.candidates[3].why, GW_WHY_METHOD); /* wallet */
    ASSERT_EQ(d.candidates[4].why, GW_WHY_METHOD); /* a bank listing "card" still cannot take a card */
    ASSERT_TRUE(d.candidates[4].fallback);

    r = card("USD", "DE", 1000); /* eu_card: EUR only */
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK);
    ASSERT_EQ(d.candidates[0].why, GW_WHY_CURRENCY);
    ASSERT_STR_EQ(order_at(&d, 0), "us_card");
    ASSERT_STR_EQ(order_at(&d, 1), "any_card");

    r = card("EUR", "US", 1000); /* eu_card: DE, FR only */
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK);
    ASSERT_EQ(d.candidates[0].why, GW_WHY_COUNTRY);
    r = card("EUR", "", 1000); /* a channel with a country list needs the payer's country */
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK);
    ASSERT_EQ(d.candidates[0].why, GW_WHY_COUNTRY);

    r = card("EUR", "FR", 100); /* us_card: from 500 */
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK);
    ASSERT_EQ(d.candidates[1].why, GW_WHY_AMOUNT);
    ASSERT_STR_EQ(d.chosen, "eu_card");
    r = card("EUR", "FR", 100001); /* eu_card: up to 100000 */
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK);
    ASSERT_EQ(d.candidates[0].why, GW_WHY_AMOUNT);
    ASSERT_STR_EQ(d.chosen, "us_card");
}

static void test_fallback_and_none(void) {
    gw_decision_t d;
    gw_request_t r = card("EUR", "DE", 1000);
    snprintf(r.method, sizeof r.method, "bank_transfer");
    snprintf(r.bank.routing_number, sizeof r.bank.routing_number, "110000000");
    snprintf(r.bank.account_number, sizeof r.bank.account_number, "000123456789");
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK); /* only the bank takes a bank transfer */
    ASSERT_EQ(d.order_count, 1);
    ASSERT_STR_EQ(d.chosen, "bank");
    ASSERT_STR_EQ(d.why, "priority: bank is the first available of 1");

    r = card("JPY", "DE", 1000);
    r.op = GW_OP_PAYOUT;
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_GATEWAY_NO_CHANNEL);
    ASSERT_EQ(d.order_count, 0);
    ASSERT_STR_EQ(d.chosen, "");
    ASSERT_TRUE(strstr(d.why, "eu_card operation") != NULL);
    ASSERT_TRUE(strstr(d.why, "bank method") != NULL);
}

static void test_decision_json(void) {
    gw_decision_t d;
    gw_request_t r = card("USD", "DE", 1000);
    ASSERT_STATUS(gw_route(gw, &r, &d), PC_OK);
    json_t *j = gw_decision_json(&d);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "strategy")), "priority");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "chosen")), "us_card");
    ASSERT_TRUE(strstr(json_string_value(json_object_get(j, "why")), "us_card") != NULL);
    const json_t *candidates = json_object_get(j, "candidates");
    ASSERT_EQ(json_array_size(candidates), 5);
    const json_t *eu = json_array_get(candidates, 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(eu, "why")), "currency");
    ASSERT_TRUE(json_is_false(json_object_get(eu, "eligible")));
    ASSERT_EQ(json_array_size(json_object_get(j, "order")), 2);
    json_decref(j);
}

/* Weighted with a zero weight: that channel only as a retry target after the others,
 * or first when the strategy has no channel at all (the fallback list). */
static void test_weight_zero(void) {
    char path[512];
    gwt_path(path, sizeof path, "weighted.json");
    gwt_write(path, "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\"},\n"
                    "{\"name\":\"b\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\",\n"
                    " \"eligibility\":{\"currencies\":[\"EUR\"]}}],\n"
                    "\"routing\":{\"strategy\":\"weighted\",\"weights\":{\"a\":0,\"b\":5},\"fallback\":[\"a\"]}}\n");
    gw_t *weighted = gwt_gateway(path);
    gw_request_t r = card("EUR", "DE", 1000);
    for (int i = 0; i < 200; i++) {
        gw_decision_t d;
        ASSERT_STATUS(gw_route(weighted, &r, &d), PC_OK);
        ASSERT_STR_EQ(d.chosen, "b");
        ASSERT_STR_EQ(order_at(&d, 1), "a"); /* only as the fallback */
        ASSERT_EQ(d.order_count, 2);
    }
    r = card("USD", "DE", 1000); /* b takes EUR only: the strategy has nothing */
    gw_decision_t d;
    ASSERT_STATUS(gw_route(weighted, &r, &d), PC_OK);
    ASSERT_STR_EQ(d.chosen, "a");
    ASSERT_STR_EQ(d.why, "fallback: the strategy had no channel; a first");
    gw_stop(weighted);
}

/* More response codes than metric slots: each label once, the rest under "other". */
static void test_code_labels_unique(void) {
    gw_chstate_t *s = gw_chstate_new("x");
    ASSERT_TRUE(s != NULL);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3 * GW_CODE_SLOTS; i++) {
            char code[16];
            snprintf(code, sizeof code, i == 7 ? "other" : "c%d", i);
            gw_count_code(s, code);
        }
    }
    ASSERT_TRUE(s->code_count >= GW_CODE_SLOTS - 1 && s->code_count <= GW_CODE_SLOTS);
    uint64_t total = 0;
    for (uint32_t i = 0; i < s->code_count; i++) {
        total += s->code_counts[i];
        for (uint32_t k = 0; k < i; k++) ASSERT_TRUE(strcmp(s->code_names[i], s->code_names[k]) != 0);
    }
    ASSERT_EQ(total, 2 * 3 * GW_CODE_SLOTS);
    gw_chstate_unref(s);
}

static atomic_uint refused_done_calls;

static void count_done(void *ctx, const gw_result_t *result) {
    (void)ctx;
    (void)result;
    atomic_fetch_add(&refused_done_calls, 1);
}

/* A request the gateway cannot send as it stands is refused by gw_submit with
 * gateway_request_invalid: nothing queued, no callback, no channel called. */
static void test_submit_refuses_bad_requests(void) {
    gw_request_t good = card("EUR", "DE", 1000);
    gw_request_t bad[24];
    uint32_t n = 0;
    bad[n] = good; bad[n++].amount_minor = 0;
    bad[n] = good; bad[n++].amount_minor = -1999;
    bad[n] = good; snprintf(bad[n++].currency, 4, "eur");
    bad[n] = good; snprintf(bad[n++].currency, 4, "EU");
    bad[n] = good; memcpy(bad[n++].currency, "EURO", 4);          /* no NUL */
    bad[n] = good; snprintf(bad[n++].country, 3, "D");
    bad[n] = good; snprintf(bad[n++].country, 3, "de");
    bad[n] = good; bad[n++].method[0] = '\0';
    bad[n] = good; bad[n++].card.number[0] = '\0';
    bad[n] = good; bad[n++].card.exp_month = 13;
    bad[n] = good; memset(bad[n++].card.cvc, '1', sizeof good.card.cvc); /* no NUL */
    bad[n] = good; bad[n++].reference[0] = '\0';
    bad[n] = good; snprintf(bad[n++].reference, PC_ID_SIZE, "a/b");     /* not an id */
    bad[n] = good; bad[n++].op = GW_OP_COUNT;
    bad[n] = good; snprintf(bad[n].method, GW_METHOD_SIZE, "wallet"); bad[n++].wallet_id[0] = '\0';
    bad[n] = good; bad[n++].op = GW_OP_CAPTURE;                         /* no channel, no ref */
    bad[n] = good; bad[n].op = GW_OP_CAPTURE; snprintf(bad[n].channel, GW_NAME_SIZE, "us_card");
    snprintf(bad[n++].channel_ref, PC_ID_SIZE, "auth_1/../x");          /* goes into a URL path */
    bad[n] = good; bad[n].op = GW_OP_REFUND; snprintf(bad[n].channel, GW_NAME_SIZE, "us_card");
    snprintf(bad[n].channel_ref, PC_ID_SIZE, "auth_1"); bad[n++].amount_minor = 0;
    bad[n] = good; bad[n].op = GW_OP_STATUS; snprintf(bad[n++].channel, GW_NAME_SIZE, "us_card"); /* no key */
    bad[n] = good; bad[n].op = GW_OP_STATUS; snprintf(bad[n].channel, GW_NAME_SIZE, "us_card");
    snprintf(bad[n].status_key, GW_KEY_SIZE, "gwk_1"); bad[n++].status_op = GW_OP_STATUS;
    bad[n] = good; bad[n].op = GW_OP_CHALLENGE; snprintf(bad[n].channel, GW_NAME_SIZE, "us_card");
    snprintf(bad[n++].challenge_id, PC_ID_SIZE, "ch_1");                /* no code */
    PC_ASSERT(n <= sizeof bad / sizeof bad[0]);
    gw_callbacks_t callbacks = {.done = count_done};
    for (uint32_t i = 0; i < n; i++) {
        pc_status status = gw_submit(gw, &bad[i], &callbacks);
        if (status != PC_GATEWAY_REQUEST_INVALID) TEST_FAIL("bad request %u: got %s", i, pc_status_code(status));
    }
    gw_callbacks_t no_done = {.done = NULL};
    ASSERT_STATUS(gw_submit(gw, &good, &no_done), PC_GATEWAY_REQUEST_INVALID);
    ASSERT_STATUS(gw_submit(gw, &good, NULL), PC_GATEWAY_REQUEST_INVALID);
    ASSERT_EQ(atomic_load(&refused_done_calls), 0);
    json_t *all = gw_channels_json(gw);
    const json_t *list = json_object_get(all, "channels");
    for (size_t i = 0; i < json_array_size(list); i++) {
        ASSERT_EQ(json_integer_value(json_object_get(json_array_get(list, i), "attempts")), 0);
        ASSERT_EQ(json_integer_value(json_object_get(json_array_get(list, i), "in_flight")), 0);
    }
    json_decref(all);
}

/* 'count' answers of one outcome into a channel's window at 'at_ms'. */
static void feed(gw_config_t *cfg, uint32_t channel, gw_outcome outcome, uint32_t count, uint64_t at_ms) {
    gw_channel_cfg_t *ch = &cfg->channels[channel];
    for (uint32_t i = 0; i < count; i++) {
        gw_answer_t a = {.outcome = outcome};
        snprintf(a.code, sizeof a.code, "%s", outcome == GW_OUTCOME_APPROVED ? "00" : "96");
        gw_chstate_begin(ch->state);
        gw_chstate_record(ch->state, cfg, ch, GW_OP_AUTHORIZE, false, &a, 1000, at_ms);
    }
}

/* Success rate on a clock the test holds: a channel below the elimination threshold
 * comes last (retries only) and is never first without exploration; answers older
 * than window_ms leave the window, and with fewer than calls_min left a channel
 * counts as 100% again, so a channel degraded long ago is tried anew. */
static void test_success_rate_window(void) {
    char path[512];
    gwt_path(path, sizeof path, "sr.json");
    gwt_write(path, "{\"channels\":[\n"
                    "{\"name\":\"a\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\",\n"
                    " \"breaker\":{\"failures_consecutive\":0,\"error_rate_percent\":0}},\n"
                    "{\"name\":\"b\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\",\n"
                    " \"breaker\":{\"failures_consecutive\":0,\"error_rate_percent\":0}}],\n"
                    "\"routing\":{\"strategy\":\"success_rate\",\"success_rate\":{\"window_calls\":20,\n"
                    " \"window_ms\":60000,\"calls_min\":10,\"exploration_percent\":0,\"elimination_percent\":50}}}\n");
    gw_t *sr = gwt_gateway(path);
    gw_config_t *cfg = sr->config;
    uint64_t t0_ms = gw_now_ms();
    feed(cfg, 0, GW_OUTCOME_RETRYABLE, 14, t0_ms);      /* a: 6 of 20 good, 300 permille */
    feed(cfg, 0, GW_OUTCOME_APPROVED, 6, t0_ms);
    feed(cfg, 1, GW_OUTCOME_APPROVED, 9, t0_ms + 10);   /* b: 9 calls: too few, counts as 100% */
    gw_request_t r = card("EUR", "DE", 1000);
    uint64_t rng = 42;
    gw_decision_t d;
    for (int i = 0; i < 200; i++) {
        ASSERT_STATUS(gw_route_decide(cfg, &r, t0_ms + 20, &rng, &d), PC_OK);
        ASSERT_STR_EQ(d.chosen, "b");
        ASSERT_STR_EQ(order_at(&d, 1), "a"); /* eliminated: after every other channel */
        ASSERT_EQ(d.candidates[0].success_rate_permille, 300);
        ASSERT_EQ(d.candidates[1].success_rate_permille, -1);
    }
    feed(cfg, 1, GW_OUTCOME_RETRYABLE, 11, t0_ms + 30); /* b: 9 of 20 good, 450: below too */
    ASSERT_STATUS(gw_route_decide(cfg, &r, t0_ms + 40, &rng, &d), PC_OK);
    ASSERT_STR_EQ(d.chosen, "b"); /* the best of two eliminated channels */
    ASSERT_EQ(d.candidates[1].success_rate_permille, 450);
    ASSERT_TRUE(strstr(d.why, "every channel below 500") != NULL);
    /* a minute later a's answers have left its window: 100% again, first; b (450) last */
    ASSERT_STATUS(gw_route_decide(cfg, &r, t0_ms + 60001, &rng, &d), PC_OK);
    ASSERT_EQ(d.candidates[0].success_rate_permille, -1);
    ASSERT_EQ(d.candidates[1].success_rate_permille, 450);
    ASSERT_STR_EQ(d.chosen, "a");
    ASSERT_STR_EQ(order_at(&d, 1), "b");
    /* once b's have left too, equal rates split at random */
    uint32_t chose_a = 0;
    for (int i = 0; i < 200; i++) {
        ASSERT_STATUS(gw_route_decide(cfg, &r, t0_ms + 60031, &rng, &d), PC_OK);
        ASSERT_EQ(d.candidates[1].success_rate_permille, -1);
        chose_a += strcmp(d.chosen, "a") == 0;
    }
    ASSERT_TRUE(chose_a > 50 && chose_a < 150);
    gw_stop(sr);
}

int main(void) {
    gwt_setup("gw-route");
    char path[512];
    gwt_path(path, sizeof path, "channels.json");
    gwt_write(path, "%s", config_text);
    gw = gwt_gateway(path);
    TEST_RUN(test_eligibility_and_priority);
    TEST_RUN(test_fallback_and_none);
    TEST_RUN(test_decision_json);
    TEST_RUN(test_weight_zero);
    TEST_RUN(test_code_labels_unique);
    TEST_RUN(test_submit_refuses_bad_requests);
    TEST_RUN(test_success_rate_window);
    gw_stop(gw);
    gwt_teardown();
    return test_finish();
}
