/* payments/state.c: the payment's states and the one table of transitions. A request
 * or an outcome not in the table is refused (payment_state_conflict with the current
 * state); docs/payments.md prints this table (`paycore docs payment-states`). */
#include <string.h>

#include "payments/payments.h"

static const char *const state_names[PAY_STATE_COUNT] = {
    "created", "requires_action", "in_review", "authorized", "partially_captured", "captured",
    "partially_refunded", "refunded", "canceled", "declined", "failed", "expired",
};

static const char *const event_names[PAY_EV_COUNT] = {
    "risk_decline", "risk_review", "review_approve", "review_decline", "authorized",
    "authorized_captured", "challenge", "declined", "failed", "confirm", "capture",
    "captured_partial", "captured_full", "cancel", "expire", "refund", "refunded_partial",
    "refunded_full",
};

typedef struct {
    pay_state from;
    pay_event event;
    pay_state to;
    const char *why;
} pay_transition_t;

#define S(name) PAY_STATE_##name
#define E(name) PAY_EV_##name
static const pay_transition_t table[] = {
    {S(CREATED), E(RISK_DECLINE), S(DECLINED), "risk declined; nothing moves"},
    {S(CREATED), E(RISK_REVIEW), S(IN_REVIEW), "risk review, no 3-D Secure: the review queue decides"},
    {S(CREATED), E(CHALLENGE), S(REQUIRES_ACTION), "the channel asks for 3-D Secure"},
    {S(CREATED), E(AUTHORIZED), S(AUTHORIZED), "the hold is booked (pending transfer)"},
    {S(CREATED), E(AUTHORIZED_CAPTURED), S(CAPTURED), "hold and capture booked together"},
    {S(CREATED), E(DECLINED), S(DECLINED), "the channel declined, or the ledger refused a wallet"},
    {S(CREATED), E(FAILED), S(FAILED), "no channel took it; nothing moved"},
    {S(IN_REVIEW), E(REVIEW_APPROVE), S(CREATED), "authorization resumes"},
    {S(IN_REVIEW), E(REVIEW_DECLINE), S(CANCELED), "nothing moved"},
    {S(IN_REVIEW), E(CANCEL), S(CANCELED), "nothing moved"},
    {S(REQUIRES_ACTION), E(CONFIRM), S(REQUIRES_ACTION), "the challenge code goes to the channel"},
    {S(REQUIRES_ACTION), E(AUTHORIZED), S(AUTHORIZED), "challenge passed: the hold is booked"},
    {S(REQUIRES_ACTION), E(AUTHORIZED_CAPTURED), S(CAPTURED), "challenge passed, captured at once"},
    {S(REQUIRES_ACTION), E(DECLINED), S(DECLINED), "challenge failed or funds short"},
    {S(REQUIRES_ACTION), E(CANCEL), S(CANCELED), "nothing was held"},
    {S(AUTHORIZED), E(CAPTURE), S(AUTHORIZED), "the capture goes to the channel"},
    {S(AUTHORIZED), E(CAPTURED_PARTIAL), S(PARTIALLY_CAPTURED), "part posted, the rest held again"},
    {S(AUTHORIZED), E(CAPTURED_FULL), S(CAPTURED), "the hold posted"},
    {S(AUTHORIZED), E(CANCEL), S(CANCELED), "voided at the channel and in the ledger"},
    {S(AUTHORIZED), E(EXPIRE), S(EXPIRED), "the ledger voided the hold at its timeout"},
    {S(PARTIALLY_CAPTURED), E(CAPTURE), S(PARTIALLY_CAPTURED), "the capture goes to the channel"},
    {S(PARTIALLY_CAPTURED), E(CAPTURED_PARTIAL), S(PARTIALLY_CAPTURED), "more posted, the rest held again"},
    {S(PARTIALLY_CAPTURED), E(CAPTURED_FULL), S(CAPTURED), "nothing left to capture"},
    {S(PARTIALLY_CAPTURED), E(EXPIRE), S(CAPTURED), "the rest of the hold expired; what was captured stays"},
    {S(CAPTURED), E(REFUND), S(CAPTURED), "the refund goes to the channel"},
    {S(CAPTURED), E(REFUNDED_PARTIAL), S(PARTIALLY_REFUNDED), "part given back"},
    {S(CAPTURED), E(REFUNDED_FULL), S(REFUNDED), "everything given back"},
    {S(PARTIALLY_REFUNDED), E(REFUND), S(PARTIALLY_REFUNDED), "the refund goes to the channel"},
    {S(PARTIALLY_REFUNDED), E(REFUNDED_PARTIAL), S(PARTIALLY_REFUNDED), "more given back"},
    {S(PARTIALLY_REFUNDED), E(REFUNDED_FULL), S(REFUNDED), "everything given back"},
};
#undef S
#undef E

const char *pay_state_name(pay_state state) {
    return (unsigned)state < PAY_STATE_COUNT ? state_names[state] : "unknown";
}

bool pay_state_parse(const char *name, pay_state *out) {
    for (int i = 0; name != NULL && i < PAY_STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (pay_state)i;
            return true;
        }
    }
    return false;
}

const char *pay_event_name(pay_event event) {
    return (unsigned)event < PAY_EV_COUNT ? event_names[event] : "unknown";
}

bool pay_transition(pay_state from, pay_event event, pay_state *to) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].from == from && table[i].event == event) {
            *to = table[i].to;
            return true;
        }
    }
    return false;
}

bool pay_state_final(pay_state state) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].from == state) return false;
    }
    return true;
}

void pay_states_markdown(FILE *out) {
    fputs("| from | event | to | what happens |\n|---|---|---|---|\n", out);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        fprintf(out, "| %s | %s | %s | %s |\n", state_names[table[i].from], event_names[table[i].event],
                state_names[table[i].to], table[i].why);
    }
    fputs("\nFinal states (nothing leaves them):", out);
    for (int s = 0; s < PAY_STATE_COUNT; s++) {
        if (pay_state_final((pay_state)s)) fprintf(out, " %s", state_names[s]);
    }
    fputs(".\n", out);
}
