/* payments/card.c: what a card must be before it is vaulted: 12-19 digits passing the
 * Luhn check, an expiry month 1-12 of 2000-2099 not before the current month (UTC),
 * and a 3 or 4 digit CVC when one is given. The number is never copied here. */
#include <string.h>
#include <time.h>

#include "payments/payments.h"

bool pay_card_luhn_valid(const char *digits) {
    size_t n = strlen(digits);
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        char c = digits[n - 1 - i];
        if (c < '0' || c > '9') return false;
        uint32_t d = (uint32_t)(c - '0');
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
    }
    return n > 0 && sum % 10 == 0;
}

static bool all_digits(const char *s, size_t bytes_min, size_t bytes_max) {
    size_t n = strlen(s);
    if (n < bytes_min || n > bytes_max) return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
    }
    return true;
}

pc_status pay_card_check(const char *number, int64_t exp_month, int64_t exp_year, const char *cvc,
                         int64_t now_s, const char **field_out) {
    if (!all_digits(number, 12, 19) || !pay_card_luhn_valid(number)) {
        *field_out = "payment_method.card.number";
        return PC_CARD_NUMBER_INVALID;
    }
    if (exp_month < 1 || exp_month > 12) {
        *field_out = "payment_method.card.exp_month";
        return PC_CARD_EXPIRY_INVALID;
    }
    if (exp_year < 2000 || exp_year > 2099) {
        *field_out = "payment_method.card.exp_year";
        return PC_CARD_EXPIRY_INVALID;
    }
    time_t now = (time_t)now_s;
    struct tm utc;
    gmtime_r(&now, &utc);
    int64_t month_now = (int64_t)(utc.tm_year + 1900) * 12 + utc.tm_mon;
    if (exp_year * 12 + (exp_month - 1) < month_now) {
        *field_out = "payment_method.card.exp_year";
        return PC_CARD_EXPIRED;
    }
    if (cvc != NULL && !all_digits(cvc, 3, 4)) {
        *field_out = "payment_method.card.cvc";
        return PC_CARD_CVC_INVALID;
    }
    return PC_OK;
}
