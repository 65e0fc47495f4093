/* payments/fees.c: fee arithmetic. One rounding rule: half-even on the minor unit
 * (a tie goes to the even neighbour, so ties neither favour paycore nor the merchant
 * over many payments). Fees are computed on running totals and charged as the
 * difference from what was charged before: partial captures add up exactly to the fee
 * on their sum, and partial refunds give back exactly all fees once everything is
 * refunded. Integers only (128-bit intermediates): no floating point touches money. */
#include "payments/payments.h"

#include "core/core.h"

int64_t pay_div_half_even(__int128 n, __int128 d) {
    PC_ASSERT(n >= 0);
    PC_ASSERT(d > 0);
    __int128 q = n / d;
    __int128 r = n % d;
    if (2 * r > d || (2 * r == d && (q & 1) != 0)) q++;
    PC_ASSERT(q <= INT64_MAX);
    return (int64_t)q;
}

int64_t pay_fee_total(const pay_price_t *price, int64_t captured_minor) {
    PC_ASSERT(captured_minor >= 0);
    if (captured_minor == 0) return 0;
    int64_t rate_minor = pay_div_half_even((__int128)captured_minor * price->bps, 10000);
    return rate_minor + price->fixed_minor;
}

int64_t pay_fee_capture(const pay_price_t *price, int64_t captured_before_minor, int64_t fees_before_minor,
                        int64_t amount_minor) {
    PC_ASSERT(amount_minor > 0);
    PC_ASSERT(captured_before_minor >= 0 && fees_before_minor >= 0);
    int64_t owed_minor = pay_fee_total(price, captured_before_minor + amount_minor) - fees_before_minor;
    if (owed_minor < 0) return 0;
    return owed_minor < amount_minor ? owed_minor : amount_minor;
}

int64_t pay_fee_reversal(int64_t fees_minor, int64_t captured_minor, int64_t refunded_before_minor,
                         int64_t reversed_before_minor, int64_t amount_minor) {
    PC_ASSERT(amount_minor > 0);
    PC_ASSERT(refunded_before_minor + amount_minor <= captured_minor);
    if (fees_minor == 0) return 0;
    int64_t due_minor = pay_div_half_even((__int128)fees_minor * (refunded_before_minor + amount_minor),
                                          captured_minor);
    int64_t reversal_minor = due_minor - reversed_before_minor;
    if (reversal_minor < 0) return 0;
    int64_t left_minor = fees_minor - reversed_before_minor;
    return reversal_minor < left_minor ? reversal_minor : left_minor;
}
