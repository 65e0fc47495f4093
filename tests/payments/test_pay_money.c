/* Goal: the payments layer's pure rules hold exactly: half-even rounding against
 * hand-computed values; fees of partial captures add up to the fee on the whole for
 * every split; proportional fee reversals give back exactly all fees once everything is
 * refunded; the state table allows exactly the transitions listed below and nothing
 * else; card checks (Luhn, length, expiry, CVC) and account ids.
 * Method: hand-computed tables, then every split of small amounts and a seeded random
 * sweep (PAYCORE_SEED=<n> replays one) against a direct computation. */
#include <stdint.h>
#include <time.h>

#include "payments/payments.h"
#include "test.h"

static void test_half_even(void) {
    /* n/d: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 2.4 -> 2, 2.6 -> 3, exact stays */
    static const struct { int64_t n, d, want; } cases[] = {
        {1, 2, 0}, {3, 2, 2}, {5, 2, 2}, {7, 2, 4}, {12, 5, 2}, {13, 5, 3}, {10, 5, 2}, {0, 7, 0},
        {29999, 10000, 3}, {25000, 10000, 2}, {35000, 10000, 4}, {15000, 10000, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ASSERT_EQ(pay_div_half_even(cases[i].n, cases[i].d), cases[i].want);
    }
    /* 10^15 * 10000 / 10000 needs 128 bits on the way and comes back exact */
    ASSERT_EQ(pay_div_half_even((__int128)1000000000000000LL * 10000, 10000), 1000000000000000LL);
}

static void test_fee_hand_values(void) {
    pay_price_t card = {290, 30};  /* 2.9 % + 0.30 */
    pay_price_t half = {50, 0};    /* 0.5 % */
    ASSERT_EQ(pay_fee_total(&card, 1000), 29 + 30);        /* 29.0 */
    ASSERT_EQ(pay_fee_total(&card, 12345), 358 + 30);      /* 358.005 -> 358 */
    ASSERT_EQ(pay_fee_total(&card, 250), 7 + 30);          /* 7.25 -> 7 */
    ASSERT_EQ(pay_fee_total(&card, 1), 0 + 30);            /* 0.029 -> 0 */
    ASSERT_EQ(pay_fee_total(&card, 0), 0);                 /* nothing captured, no fixed fee */
    ASSERT_EQ(pay_fee_total(&half, 100), 0);               /* 0.5 -> 0 (even) */
    ASSERT_EQ(pay_fee_total(&half, 300), 2);               /* 1.5 -> 2 (even) */
    ASSERT_EQ(pay_fee_total(&half, 500), 2);               /* 2.5 -> 2 (even) */
    ASSERT_EQ(pay_fee_total(&half, 700), 4);               /* 3.5 -> 4 */
    /* captures of 1, 998, 1 on a 2.9 % + 30 price: 30, 29, 0 (the first pays the fixed fee) */
    ASSERT_EQ(pay_fee_capture(&card, 0, 0, 1), 1);         /* capped at the capture itself... */
    ASSERT_EQ(pay_fee_capture(&card, 1, 1, 998), 58);      /* ...the rest follows: 59 - 1 */
    ASSERT_EQ(pay_fee_capture(&card, 999, 59, 1), 0);
    /* refunds of 1, 499, 500 on 1000 captured with 59 fees: 0, 30, 29 */
    ASSERT_EQ(pay_fee_reversal(59, 1000, 0, 0, 1), 0);     /* 0.059 -> 0 */
    ASSERT_EQ(pay_fee_reversal(59, 1000, 1, 0, 499), 30);  /* 29.5 -> 30 (even) */
    ASSERT_EQ(pay_fee_reversal(59, 1000, 500, 30, 500), 29);
}

static uint64_t rng_state;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Splits 'total' into 'parts' random positive pieces and checks the running sums. */
static void split_check(const pay_price_t *price, int64_t total, uint32_t parts) {
    int64_t captured = 0, fees = 0;
    for (uint32_t i = 0; i < parts; i++) {
        int64_t left = total - captured;
        int64_t piece = i + 1 == parts ? left : 1 + (int64_t)(rng_next() % (uint64_t)(left - (parts - 1 - i)));
        int64_t fee = pay_fee_capture(price, captured, fees, piece);
        ASSERT_TRUE(fee >= 0 && fee <= piece);
        captured += piece;
        fees += fee;
    }
    ASSERT_EQ(captured, total);
    int64_t whole = pay_fee_total(price, total);
    if (whole <= total) ASSERT_EQ(fees, whole); /* a fee never exceeds what it is taken from */
    /* refunds in random pieces give back exactly 'fees' */
    int64_t refunded = 0, reversed = 0;
    while (refunded < total) {
        int64_t piece = 1 + (int64_t)(rng_next() % (uint64_t)(total - refunded));
        int64_t back = pay_fee_reversal(fees, total, refunded, reversed, piece);
        ASSERT_TRUE(back >= 0);
        refunded += piece;
        reversed += back;
        ASSERT_TRUE(reversed <= fees);
    }
    ASSERT_EQ(reversed, fees);
}

static void test_fee_splits(void) {
    const char *seed = getenv("PAYCORE_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    if (rng_state == 0) rng_state = 1;
    printf("seed %llu\n", (unsigned long long)rng_state);
    static const pay_price_t prices[] = {{290, 30}, {0, 0}, {1, 0}, {50, 0}, {10000, 0}, {175, 25}, {9999, 1000000}};
    for (size_t p = 0; p < sizeof prices / sizeof prices[0]; p++) {
        for (int64_t total = 1; total <= 40; total++) {
            for (uint32_t parts = 1; parts <= (uint32_t)total && parts <= 6; parts++) split_check(&prices[p], total, parts);
        }
        for (int round = 0; round < 2000; round++) {
            int64_t total = 1 + (int64_t)(rng_next() % 100000000000ull);
            split_check(&prices[p], total, 1 + (uint32_t)(rng_next() % 8));
        }
    }
}

/* The table as the docs state it: (from, event) -> to; anything else is refused. */
static void test_state_table(void) {
    struct { pay_state from; pay_event event; pay_state to; } legal[] = {
        {PAY_STATE_CREATED, PAY_EV_RISK_DECLINE, PAY_STATE_DECLINED},
        {PAY_STATE_CREATED, PAY_EV_RISK_REVIEW, PAY_STATE_IN_REVIEW},
        {PAY_STATE_CREATED, PAY_EV_CHALLENGE, PAY_STATE_REQUIRES_ACTION},
        {PAY_STATE_CREATED, PAY_EV_AUTHORIZED, PAY_STATE_AUTHORIZED},
        {PAY_STATE_CREATED, PAY_EV_AUTHORIZED_CAPTURED, PAY_STATE_CAPTURED},
        {PAY_STATE_CREATED, PAY_EV_DECLINED, PAY_STATE_DECLINED},
        {PAY_STATE_CREATED, PAY_EV_FAILED, PAY_STATE_FAILED},
        {PAY_STATE_IN_REVIEW, PAY_EV_REVIEW_APPROVE, PAY_STATE_CREATED},
        {PAY_STATE_IN_REVIEW, PAY_EV_REVIEW_DECLINE, PAY_STATE_CANCELED},
        {PAY_STATE_IN_REVIEW, PAY_EV_CANCEL, PAY_STATE_CANCELED},
        {PAY_STATE_REQUIRES_ACTION, PAY_EV_CONFIRM, PAY_STATE_REQUIRES_ACTION},
        {PAY_STATE_REQUIRES_ACTION, PAY_EV_AUTHORIZED, PAY_STATE_AUTHORIZED},
        {PAY_STATE_REQUIRES_ACTION, PAY_EV_AUTHORIZED_CAPTURED, PAY_STATE_CAPTURED},
        {PAY_STATE_REQUIRES_ACTION, PAY_EV_DECLINED, PAY_STATE_DECLINED},
        {PAY_STATE_REQUIRES_ACTION, PAY_EV_CANCEL, PAY_STATE_CANCELED},
        {PAY_STATE_AUTHORIZED, PAY_EV_CAPTURE, PAY_STATE_AUTHORIZED},
        {PAY_STATE_AUTHORIZED, PAY_EV_CAPTURED_PARTIAL, PAY_STATE_PARTIALLY_CAPTURED},
        {PAY_STATE_AUTHORIZED, PAY_EV_CAPTURED_FULL, PAY_STATE_CAPTURED},
        {PAY_STATE_AUTHORIZED, PAY_EV_CANCEL, PAY_STATE_CANCELED},
        {PAY_STATE_AUTHORIZED, PAY_EV_EXPIRE, PAY_STATE_EXPIRED},
        {PAY_STATE_PARTIALLY_CAPTURED, PAY_EV_CAPTURE, PAY_STATE_PARTIALLY_CAPTURED},
        {PAY_STATE_PARTIALLY_CAPTURED, PAY_EV_CAPTURED_PARTIAL, PAY_STATE_PARTIALLY_CAPTURED},
        {PAY_STATE_PARTIALLY_CAPTURED, PAY_EV_CAPTURED_FULL, PAY_STATE_CAPTURED},
        {PAY_STATE_PARTIALLY_CAPTURED, PAY_EV_EXPIRE, PAY_STATE_CAPTURED},
        {PAY_STATE_CAPTURED, PAY_EV_REFUND, PAY_STATE_CAPTURED},
        {PAY_STATE_CAPTURED, PAY_EV_REFUNDED_PARTIAL, PAY_STATE_PARTIALLY_REFUNDED},
        {PAY_STATE_CAPTURED, PAY_EV_REFUNDED_FULL, PAY_STATE_REFUNDED},
        {PAY_STATE_PARTIALLY_REFUNDED, PAY_EV_REFUND, PAY_STATE_PARTIALLY_REFUNDED},
        {PAY_STATE_PARTIALLY_REFUNDED, PAY_EV_REFUNDED_PARTIAL, PAY_STATE_PARTIALLY_REFUNDED},
        {PAY_STATE_PARTIALLY_REFUNDED, PAY_EV_REFUNDED_FULL, PAY_STATE_REFUNDED},
    };
    size_t legal_count = sizeof legal / sizeof legal[0];
    uint32_t allowed = 0;
    for (int s = 0; s < PAY_STATE_COUNT; s++) {
        for (int e = 0; e < PAY_EV_COUNT; e++) {
            pay_state to = PAY_STATE_COUNT;
            bool ok = pay_transition((pay_state)s, (pay_event)e, &to);
            bool listed = false;
            for (size_t i = 0; i < legal_count; i++) {
                if (legal[i].from == (pay_state)s && legal[i].event == (pay_event)e) {
                    listed = true;
                    ASSERT_EQ(to, legal[i].to);
                }
            }
            if (ok != listed) TEST_FAIL("%s --%s--> allowed=%d listed=%d", pay_state_name((pay_state)s),
                                        pay_event_name((pay_event)e), ok, listed);
            allowed += ok;
        }
    }
    ASSERT_EQ(allowed, legal_count);
    static const pay_state finals[] = {PAY_STATE_REFUNDED, PAY_STATE_CANCELED, PAY_STATE_DECLINED, PAY_STATE_FAILED,
                                       PAY_STATE_EXPIRED};
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++) ASSERT_TRUE(pay_state_final(finals[i]));
    ASSERT_FALSE(pay_state_final(PAY_STATE_CAPTURED));
    for (int s = 0; s < PAY_STATE_COUNT; s++) {
        pay_state back;
        ASSERT_TRUE(pay_state_parse(pay_state_name((pay_state)s), &back));
        ASSERT_EQ(back, s);
    }
}

static void test_cards(void) {
    const char *field = NULL;
    int64_t now = 1767225600; /* 2026-01-01 UTC */
    ASSERT_TRUE(pay_card_luhn_valid("4242424242424242"));
    ASSERT_FALSE(pay_card_luhn_valid("4242424242424241"));
    ASSERT_STATUS(pay_card_check("4242424242424242", 12, 2030, "123", now, &field), PC_OK);
    ASSERT_STATUS(pay_card_check("4242424242424241", 12, 2030, "123", now, &field), PC_CARD_NUMBER_INVALID);
    ASSERT_STR_EQ(field, "payment_method.card.number");
    ASSERT_STATUS(pay_card_check("42424242424", 12, 2030, NULL, now, &field), PC_CARD_NUMBER_INVALID); /* 11 digits */
    ASSERT_STATUS(pay_card_check("4242 4242 4242 4242", 12, 2030, NULL, now, &field), PC_CARD_NUMBER_INVALID);
    ASSERT_STATUS(pay_card_check("4242424242424242", 13, 2030, NULL, now, &field), PC_CARD_EXPIRY_INVALID);
    ASSERT_STR_EQ(field, "payment_method.card.exp_month");
    ASSERT_STATUS(pay_card_check("4242424242424242", 12, 1999, NULL, now, &field), PC_CARD_EXPIRY_INVALID);
    ASSERT_STATUS(pay_card_check("4242424242424242", 12, 2025, NULL, now, &field), PC_CARD_EXPIRED);
    ASSERT_STATUS(pay_card_check("4242424242424242", 1, 2026, NULL, now, &field), PC_OK); /* this month still good */
    ASSERT_STATUS(pay_card_check("4242424242424242", 12, 2030, "12", now, &field), PC_CARD_CVC_INVALID);
    ASSERT_STATUS(pay_card_check("4242424242424242", 12, 2030, "12a", now, &field), PC_CARD_CVC_INVALID);
}

static void test_accounts(void) {
    char id[PC_ID_SIZE];
    ASSERT_TRUE(pay_account_id(id, PAY_ACCOUNT_MERCHANT_AVAILABLE, "m_1", "EUR"));
    ASSERT_STR_EQ(id, "mer:m_1:EUR:available");
    ASSERT_TRUE(pay_account_id(id, PAY_ACCOUNT_CHANNEL_RECEIVABLE, "card_a", "USD"));
    ASSERT_STR_EQ(id, "chn:card_a:USD:receivable");
    ASSERT_TRUE(pay_account_id(id, PAY_ACCOUNT_FEE_REVENUE, NULL, "JPY"));
    ASSERT_STR_EQ(id, "sys:JPY:fee_revenue");
    /* the longest merchant id (32) still makes a valid ledger id */
    ASSERT_TRUE(pay_account_id(id, PAY_ACCOUNT_MERCHANT_AVAILABLE, "abcdefghijklmnopqrstuvwxyz012345", "EUR"));
    ledger_account_t a;
    pay_account_event(&a, PAY_ACCOUNT_WALLET, "wal_1", "EUR");
    ASSERT_EQ(a.flags, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    pay_account_event(&a, PAY_ACCOUNT_MERCHANT_AVAILABLE, "m", "EUR");
    ASSERT_EQ(a.flags, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    pay_account_event(&a, PAY_ACCOUNT_MERCHANT_PENDING, "m", "EUR");
    ASSERT_EQ(a.flags, 0);
}

int main(void) {
    TEST_RUN(test_half_even);
    TEST_RUN(test_fee_hand_values);
    TEST_RUN(test_fee_splits);
    TEST_RUN(test_state_table);
    TEST_RUN(test_cards);
    TEST_RUN(test_accounts);
    return test_finish();
}
