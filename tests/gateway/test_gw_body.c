/* Goal: the card bodies the gateway copies together from their parts are the bytes the
 * protocol's format gives (what the card simulator hashes with the Idempotency-Key and
 * reads), with and without a CVC, capturing or not, at the amounts' edges; and
 * gw_decimal writes what "%lld" writes, INT64_MIN and INT64_MAX included.
 * Method: the card connector's build functions in process, each body compared with
 * snprintf of the format; 100000 random integers. */
#include <inttypes.h>
#include <sodium.h>

#include "gateway/gw_internal.h"
#include "test.h"

static void expect_authorize(const gw_request_t *req) {
    gw_http_call_t http;
    memset(&http, 0, sizeof http);
    ASSERT_STATUS(gw_connector_card.authorize(NULL, req, &http), PC_OK);
    char want[1024];
    bool cvc = req->card.cvc[0] != '\0';
    snprintf(want, sizeof want,
             "{\"amount\":%lld,\"currency\":\"%s\",\"card\":{\"number\":\"%s\",\"exp_month\":%u,"
             "\"exp_year\":%u%s%s%s},\"merchant_ref\":\"%s\",\"capture\":%s}",
             (long long)req->amount_minor, req->currency, req->card.number, req->card.exp_month, req->card.exp_year,
             cvc ? ",\"cvc\":\"" : "", cvc ? req->card.cvc : "", cvc ? "\"" : "", req->reference,
             req->capture ? "true" : "false");
    ASSERT_STR_EQ(http.body, want);
    ASSERT_EQ(http.body_bytes, strlen(want));
    ASSERT_STR_EQ(http.method, "POST");
    ASSERT_STR_EQ(http.path, "/v1/authorizations");
    gw_body_free(&http);
}

static void test_authorize(void) {
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_AUTHORIZE;
    snprintf(req.reference, sizeof req.reference, "pay_0123456789");
    snprintf(req.currency, sizeof req.currency, "EUR");
    snprintf(req.card.number, sizeof req.card.number, "4000000000000002");
    req.card.exp_month = 7;
    req.card.exp_year = 2031;
    static const int64_t amounts[] = {1, 9, 10, 1000, 999999999999999LL, 1000000000000000LL, INT64_MAX};
    for (size_t i = 0; i < sizeof amounts / sizeof amounts[0]; i++) {
        req.amount_minor = amounts[i];
        req.capture = i % 2 == 0;
        snprintf(req.card.cvc, sizeof req.card.cvc, "%s", i % 3 == 0 ? "" : i % 3 == 1 ? "123" : "4567");
        expect_authorize(&req);
    }
    req.card.exp_month = 12;
    snprintf(req.card.number, sizeof req.card.number, "4242424242424242424");
    expect_authorize(&req);
    snprintf(req.card.number, sizeof req.card.number, "42424242424X");
    gw_http_call_t http;
    memset(&http, 0, sizeof http);
    ASSERT_STATUS(gw_connector_card.authorize(NULL, &req, &http), PC_GATEWAY_REQUEST_INVALID);
}

static void test_follow_ups(void) {
    gw_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.channel_ref, sizeof req.channel_ref, "auth_00ff");
    req.amount_minor = 12345;
    gw_http_call_t http;
    memset(&http, 0, sizeof http);
    ASSERT_STATUS(gw_connector_card.capture(NULL, &req, &http), PC_OK);
    ASSERT_STR_EQ(http.body, "{\"amount\":12345}");
    ASSERT_STR_EQ(http.path, "/v1/authorizations/auth_00ff/captures");
    gw_body_free(&http);
    ASSERT_STATUS(gw_connector_card.refund(NULL, &req, &http), PC_OK);
    ASSERT_STR_EQ(http.body, "{\"amount\":12345}");
    ASSERT_STR_EQ(http.path, "/v1/authorizations/auth_00ff/refunds");
    gw_body_free(&http);
    ASSERT_STATUS(gw_connector_card.void_auth(NULL, &req, &http), PC_OK);
    ASSERT_STR_EQ(http.body, "{}");
    ASSERT_EQ(http.body_bytes, 2u);
    gw_body_free(&http);
}

static void test_decimal(void) {
    char got[21], want[32];
    static const int64_t edges[] = {0, 1, -1, 9, 10, -10, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        snprintf(want, sizeof want, "%" PRId64, edges[i]);
        ASSERT_STR_EQ(gw_decimal(edges[i], got), want);
    }
    for (int i = 0; i < 100000; i++) {
        int64_t value;
        value = (int64_t)test_rand();
        value >>= test_rand_below(64);
        snprintf(want, sizeof want, "%" PRId64, value);
        ASSERT_STR_EQ(gw_decimal(value, got), want);
    }
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_authorize);
    TEST_RUN(test_follow_ups);
    TEST_RUN(test_decimal);
    return test_finish();
}
