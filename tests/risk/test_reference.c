/* Goal: amounts reach USD with their currency's own exponent. Method: the same
 * major amount in currencies of exponent 0, 2 and 3 at known reference rates. */
#include <math.h>

#include "risk/risk.h"
#include "test.h"

static void test_amount_usd_uses_exponent(void) {
    ASSERT_TRUE(fabs(risk_amount_usd(12345, "USD") - 123.45) < 1e-9);
    ASSERT_TRUE(fabs(risk_amount_usd(15500, "JPY") - 100.0) < 1e-9);   /* exponent 0, 155 per USD */
    ASSERT_TRUE(fabs(risk_amount_usd(1370000, "KRW") - 1000.0) < 1e-9);
    ASSERT_TRUE(fabs(risk_amount_usd(9200, "EUR") - 100.0) < 1e-9);
}

int main(void) {
    TEST_RUN(test_amount_usd_uses_exponent);
    return test_finish();
}
