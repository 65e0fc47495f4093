/* Goal: amounts reach USD with their currency's own exponent; a payer's country gives
 * its local hour and home currency, and only an exact two-letter code of the table is
 * known. Method: the same major amount in currencies of exponent 0, 2 and 3 at known
 * reference rates; countries of the table, and codes near them that are not in it. */
#include <math.h>
#include <string.h>

#include "risk/risk.h"
#include "test.h"

static void test_amount_usd_uses_exponent(void) {
    ASSERT_TRUE(fabs(risk_amount_usd(12345, "USD") - 123.45) < 1e-9);
    ASSERT_TRUE(fabs(risk_amount_usd(15500, "JPY") - 100.0) < 1e-9);   /* exponent 0, 155 per USD */
    ASSERT_TRUE(fabs(risk_amount_usd(1370000, "KRW") - 1000.0) < 1e-9);
    ASSERT_TRUE(fabs(risk_amount_usd(9200, "EUR") - 100.0) < 1e-9);
}

static void test_country_codes(void) {
    ASSERT_TRUE(strcmp(risk_country_currency("US"), "USD") == 0);
    ASSERT_TRUE(strcmp(risk_country_currency("AR"), "ARS") == 0); /* the first letters */
    ASSERT_TRUE(strcmp(risk_country_currency("NZ"), "NZD") == 0); /* the table's last row */
    ASSERT_TRUE(strcmp(risk_country_currency("DE"), "EUR") == 0);
    ASSERT_TRUE(risk_local_hour("US", 0) == 18);                  /* UTC-6 at midnight UTC */
    ASSERT_TRUE(risk_local_hour("JP", 0) == 9);
    ASSERT_TRUE(risk_local_hour("NZ", 13 * 3600) == 1);
    const char *const unknown[] = {"", "U", "us", "Us", "USA", "ZZ", "AA", "U1", "@S", "[S", "S[", "US "};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ASSERT_TRUE(risk_country_currency(unknown[i]) == NULL);
        ASSERT_TRUE(risk_local_hour(unknown[i], 0) == -1);
    }
}

int main(void) {
    TEST_RUN(test_amount_usd_uses_exponent);
    TEST_RUN(test_country_codes);
    return test_finish();
}
