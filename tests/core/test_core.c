/* Goal: the shared basics hold: status codes are unique and round-trip, the currency
 * table knows exponents and refuses non-codes, ids are validated exactly.
 * Method: table walks and edge values. */
#include "core/core.h"
#include "paycore/money.h"
#include "paycore/status.h"
#include "test.h"

static int seen_values[1000];

static void status_unique(pc_status status, void *ctx) {
    (void)ctx;
    ASSERT_TRUE((int)status >= 0 && (int)status < 1000);
    ASSERT_EQ(seen_values[status], 0);
    seen_values[status] = 1;
    pc_status parsed;
    ASSERT_TRUE(pc_status_from_code(pc_status_code(status), &parsed));
    ASSERT_EQ(parsed, status);
}

static void test_status_table(void) {
    pc_status_each(status_unique, NULL);
    ASSERT_STR_EQ(pc_status_code(PC_EXCEEDS_CREDITS), "exceeds_credits");
    ASSERT_EQ(pc_status_http(PC_WRITER_QUEUE_FULL), 503);
    ASSERT_TRUE(pc_status_transient(PC_EXCEEDS_CREDITS));
    ASSERT_FALSE(pc_status_transient(PC_ACCOUNTS_MUST_BE_DIFFERENT));
    ASSERT_STR_EQ(pc_status_code((pc_status)999), "unknown");
}

static void test_currencies(void) {
    ASSERT_EQ(pc_currency_find("USD")->exponent, 2);
    ASSERT_EQ(pc_currency_find("JPY")->exponent, 0);
    ASSERT_EQ(pc_currency_find("BHD")->exponent, 3);
    ASSERT_TRUE(pc_currency_find("usd") == NULL);
    ASSERT_TRUE(pc_currency_find("US") == NULL);
    ASSERT_TRUE(pc_currency_find("USDX") == NULL);
    ASSERT_TRUE(pc_currency_find("XXX") == NULL);
    ASSERT_TRUE(pc_currency_find("") == NULL);
    for (uint32_t i = 1; i < pc_currency_count(); i++) {
        ASSERT_TRUE(strcmp(pc_currency_at(i - 1)->code, pc_currency_at(i)->code) < 0);
    }
}

static void test_ids(void) {
    char buf[PC_ID_SIZE];
    ASSERT_TRUE(pc_id_valid("a"));
    ASSERT_TRUE(pc_id_valid("Acct_1.x:y-z"));
    ASSERT_FALSE(pc_id_valid(""));
    ASSERT_FALSE(pc_id_valid("has space"));
    ASSERT_FALSE(pc_id_valid("slash/no"));
    ASSERT_FALSE(pc_id_valid("caf\xc3\xa9"));
    memset(buf, 'a', 64);
    buf[64] = '\0';
    ASSERT_TRUE(pc_id_valid(buf));
    char long_id[70];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    ASSERT_FALSE(pc_id_valid(long_id));
    ASSERT_FALSE(pc_id_copy(buf, long_id));
    ASSERT_STR_EQ(buf, "");
}

static void test_overflow_add(void) {
    int64_t out = 5;
    ASSERT_FALSE(pc_add_i64(INT64_MAX, 1, &out));
    ASSERT_EQ(out, 5);
    ASSERT_TRUE(pc_add_i64(INT64_MAX - 1, 1, &out));
    ASSERT_TRUE(out == INT64_MAX);
}

int main(void) {
    TEST_RUN(test_status_table);
    TEST_RUN(test_currencies);
    TEST_RUN(test_ids);
    TEST_RUN(test_overflow_add);
    return test_finish();
}
