/* payments/book.c: the ledger transfers of every step (docs/accounting.md). Transfer
 * ids are the operation's id and a suffix, so booking one outcome twice (a retry,
 * recovery) answers "exists" and moves nothing twice. A step's transfers form one
 * linked chain: all of them commit, or none. */
#include <stdio.h>
#include <string.h>

#include "payments/pay_internal.h"

static ledger_transfer_t *transfer_at(pay_flow_t *flow, uint32_t index, const char *suffix, uint16_t code) {
    PC_ASSERT(index < PAY_FLOW_TRANSFERS_MAX);
    ledger_transfer_t *t = &flow->transfers[index];
    memset(t, 0, sizeof *t);
    pay_transfer_id(t->id, flow->op.id, suffix);
    t->code = code;
    return t;
}

static void accounts_set(ledger_transfer_t *t, pay_account_kind debit, const char *debit_owner,
                         pay_account_kind credit, const char *credit_owner, const char *currency, int64_t amount) {
    bool made = pay_account_id(t->debit_account_id, debit, debit_owner, currency) &&
                pay_account_id(t->credit_account_id, credit, credit_owner, currency);
    PC_ASSERT(made);
    memcpy(t->currency, currency, 4);
    t->amount = amount;
}

/* Links every transfer but the last of [first, end). */
static void chain_link(pay_flow_t *flow, uint32_t first, uint32_t end) {
    for (uint32_t i = first; i + 1 < end; i++) flow->transfers[i].flags |= LEDGER_TRANSFER_LINKED;
}

/* Where a captured amount lands: the merchant's pending account, or a top-up's wallet. */
static void destination(const pay_payment_t *p, pay_account_kind *kind, const char **owner) {
    *kind = p->top_up ? PAY_ACCOUNT_WALLET : PAY_ACCOUNT_MERCHANT_PENDING;
    *owner = p->top_up ? p->wallet_id : p->merchant_id;
}

uint32_t pay_book_hold(pay_flow_t *flow, int64_t amount, uint32_t timeout_s) {
    const pay_payment_t *p = &flow->payment;
    pay_account_kind to;
    const char *owner;
    destination(p, &to, &owner);
    ledger_transfer_t *t = transfer_at(flow, 0, "hold", PAY_TRANSFER_HOLD);
    accounts_set(t, PAY_ACCOUNT_CHANNEL_RECEIVABLE, flow->op.channel, to, owner, p->currency, amount);
    t->flags = LEDGER_TRANSFER_PENDING;
    t->timeout_s = timeout_s;
    return 1;
}

/* What is left of the hold's window, at least one second. */
static uint32_t window_left_s(const pay_payment_t *p) {
    uint64_t now_ns = pc_wall_ns();
    if (p->hold_deadline_ns <= now_ns + 1000000000ull) return 1;
    return (uint32_t)((p->hold_deadline_ns - now_ns + 999999999ull) / 1000000000ull);
}

uint32_t pay_book_capture(pay_flow_t *flow, uint32_t first, int64_t amount, int64_t fee, bool with_hold,
                          bool release_rest) {
    const pay_payment_t *p = &flow->payment;
    pay_account_kind to;
    const char *owner;
    destination(p, &to, &owner);
    uint32_t n = first;
    if (with_hold) {
        ledger_transfer_t *post = transfer_at(flow, n++, "post", 0); /* a post inherits its hold's code */
        pc_str_copy(post->pending_id, sizeof post->pending_id, p->hold_id);
        post->flags = LEDGER_TRANSFER_POST_PENDING;
        post->amount = amount;
        int64_t rest = p->hold_amount - amount;
        if (rest > 0 && !release_rest) {
            ledger_transfer_t *rehold = transfer_at(flow, n++, "rehold", PAY_TRANSFER_REHOLD);
            accounts_set(rehold, PAY_ACCOUNT_CHANNEL_RECEIVABLE, p->channel, to, owner, p->currency, rest);
            rehold->flags = LEDGER_TRANSFER_PENDING;
            rehold->timeout_s = window_left_s(p);
        }
    } else {
        ledger_transfer_t *t = transfer_at(flow, n++, "capture", PAY_TRANSFER_CAPTURE);
        accounts_set(t, PAY_ACCOUNT_CHANNEL_RECEIVABLE, p->channel[0] ? p->channel : flow->op.channel, to, owner,
                     p->currency, amount);
    }
    if (!p->top_up && amount - fee > 0) {
        ledger_transfer_t *net = transfer_at(flow, n++, "net", PAY_TRANSFER_NET);
        accounts_set(net, PAY_ACCOUNT_MERCHANT_PENDING, p->merchant_id, PAY_ACCOUNT_MERCHANT_AVAILABLE, p->merchant_id,
                     p->currency, amount - fee);
    }
    if (!p->top_up && fee > 0) {
        ledger_transfer_t *t = transfer_at(flow, n++, "fee", PAY_TRANSFER_FEE);
        accounts_set(t, PAY_ACCOUNT_MERCHANT_PENDING, p->merchant_id, PAY_ACCOUNT_FEE_REVENUE, NULL, p->currency, fee);
    }
    chain_link(flow, 0, n);
    return n;
}

uint32_t pay_book_release(pay_flow_t *flow, const char *pending_id, const char *suffix) {
    ledger_transfer_t *t = transfer_at(flow, 0, suffix, 0); /* inherits the code */
    pc_str_copy(t->pending_id, sizeof t->pending_id, pending_id);
    t->flags = LEDGER_TRANSFER_VOID_PENDING;
    return 1;
}

uint32_t pay_book_refund_reserve(pay_flow_t *flow, int64_t amount) {
    const pay_payment_t *p = &flow->payment;
    ledger_transfer_t *t = transfer_at(flow, 0, "reserve", PAY_TRANSFER_REFUND_RESERVE);
    accounts_set(t, PAY_ACCOUNT_MERCHANT_AVAILABLE, p->merchant_id, PAY_ACCOUNT_MERCHANT_REFUNDS, p->merchant_id,
                 p->currency, amount);
    t->flags = LEDGER_TRANSFER_PENDING;
    return 1;
}

uint32_t pay_book_refund(pay_flow_t *flow, int64_t amount, int64_t fee_reversal) {
    const pay_payment_t *p = &flow->payment;
    uint32_t n = 0;
    if (flow->op.reserve_id[0] != '\0') { /* the merchant's part, reserved before the call */
        ledger_transfer_t *post = transfer_at(flow, n++, "post", 0);
        pc_str_copy(post->pending_id, sizeof post->pending_id, flow->op.reserve_id);
        post->flags = LEDGER_TRANSFER_POST_PENDING;
        post->amount = amount - fee_reversal;
    }
    if (fee_reversal > 0) { /* the fee's part comes back from the fee revenue */
        ledger_transfer_t *back = transfer_at(flow, n++, "fee_back", PAY_TRANSFER_FEE_REVERSAL);
        accounts_set(back, PAY_ACCOUNT_FEE_REVENUE, NULL, PAY_ACCOUNT_MERCHANT_REFUNDS, p->merchant_id, p->currency,
                     fee_reversal);
    }
    ledger_transfer_t *out = transfer_at(flow, n++, "refund", PAY_TRANSFER_REFUND);
    accounts_set(out, PAY_ACCOUNT_MERCHANT_REFUNDS, p->merchant_id, PAY_ACCOUNT_CHANNEL_RECEIVABLE, p->channel,
                 p->currency, amount);
    chain_link(flow, 0, n);
    return n;
}

uint32_t pay_book_bank_reserve(pay_flow_t *flow, pay_account_kind from, const char *from_owner, pay_account_kind to,
                               const char *to_owner, int64_t amount, uint16_t code) {
    ledger_transfer_t *t = transfer_at(flow, 0, "reserve", code);
    accounts_set(t, from, from_owner, to, to_owner, flow->op.currency, amount);
    t->flags = LEDGER_TRANSFER_PENDING;
    return 1;
}

uint32_t pay_book_bank_settle(pay_flow_t *flow, pay_account_kind transit, const char *transit_owner, int64_t amount,
                              uint16_t code) {
    ledger_transfer_t *post = transfer_at(flow, 0, "post", 0);
    (void)code;
    pc_str_copy(post->pending_id, sizeof post->pending_id, flow->op.reserve_id);
    post->flags = LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_LINKED;
    post->amount = amount;
    ledger_transfer_t *out = transfer_at(flow, 1, "settle", code);
    accounts_set(out, transit, transit_owner, PAY_ACCOUNT_CHANNEL_RECEIVABLE, flow->op.channel, flow->op.currency,
                 amount);
    return 2;
}

bool pay_book_ok(const pay_flow_t *flow, uint32_t count, pc_status *first_failure) {
    *first_failure = PC_OK;
    for (uint32_t i = 0; i < count; i++) {
        pc_status s = flow->transfer_results[i].status;
        if (s == PC_OK || s == PC_EXISTS) continue;
        if (*first_failure == PC_OK || *first_failure == PC_LINKED_EVENT_FAILED) *first_failure = s;
    }
    return *first_failure == PC_OK;
}

uint32_t pay_book_channel_account(pay_flow_t *flow, const char *channel, const char *currency) {
    ledger_account_t *a = &flow->accounts[0];
    pay_account_event(a, PAY_ACCOUNT_CHANNEL_RECEIVABLE, channel, currency);
    return pay_account_known(flow->pay, a->id) ? 0 : 1;
}

uint32_t pay_book_wallet_payment(pay_flow_t *flow, int64_t fee) {
    const pay_payment_t *p = &flow->payment;
    uint32_t n = 0;
    ledger_transfer_t *pay = transfer_at(flow, n++, "pay", PAY_TRANSFER_WALLET_PAYMENT);
    accounts_set(pay, PAY_ACCOUNT_WALLET, p->wallet_id, PAY_ACCOUNT_MERCHANT_PENDING, p->merchant_id, p->currency,
                 p->amount);
    if (p->amount - fee > 0) {
        ledger_transfer_t *net = transfer_at(flow, n++, "net", PAY_TRANSFER_NET);
        accounts_set(net, PAY_ACCOUNT_MERCHANT_PENDING, p->merchant_id, PAY_ACCOUNT_MERCHANT_AVAILABLE, p->merchant_id,
                     p->currency, p->amount - fee);
    }
    if (fee > 0) {
        ledger_transfer_t *t = transfer_at(flow, n++, "fee", PAY_TRANSFER_FEE);
        accounts_set(t, PAY_ACCOUNT_MERCHANT_PENDING, p->merchant_id, PAY_ACCOUNT_FEE_REVENUE, NULL, p->currency, fee);
    }
    chain_link(flow, 0, n);
    return n;
}

uint32_t pay_book_wallet_refund(pay_flow_t *flow, int64_t fee_reversal) {
    const pay_payment_t *p = &flow->payment;
    uint32_t n = 0;
    if (fee_reversal > 0) { /* first: the merchant's balance gets its fee back before it pays */
        ledger_transfer_t *back = transfer_at(flow, n++, "fee_back", PAY_TRANSFER_FEE_REVERSAL);
        accounts_set(back, PAY_ACCOUNT_FEE_REVENUE, NULL, PAY_ACCOUNT_MERCHANT_AVAILABLE, p->merchant_id, p->currency,
                     fee_reversal);
    }
    ledger_transfer_t *out = transfer_at(flow, n++, "refund", PAY_TRANSFER_WALLET_REFUND);
    accounts_set(out, PAY_ACCOUNT_MERCHANT_AVAILABLE, p->merchant_id, PAY_ACCOUNT_WALLET, p->wallet_id, p->currency,
                 flow->op.amount);
    chain_link(flow, 0, n);
    return n;
}
