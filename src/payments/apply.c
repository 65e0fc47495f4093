/* payments/apply.c: what a channel's answer does to a payment. The same code applies
 * the answer of a call and the answer recovery learns by status inquiry, so a crash
 * between the channel's answer and its booking ends the same way as no crash at all.
 *
 *   approved    book the step's transfers (hold, capture, void, refund) and move the
 *               payment along the state table, in one writer command
 *   challenge   requires_action (3-D Secure)
 *   pending     a bank accepted: the operation waits for its callback
 *   declined    nothing moved at the channel; a reserve is released
 *   nothing     the channel never applied it (retryable everywhere, or never sent)
 *   unknown     leave it pending: recovery asks again; nothing is guessed */
#include <stdio.h>
#include <string.h>

#include "obs/obs.h"
#include "payments/pay_internal.h"

pay_outcome pay_outcome_of(const pay_flow_t *flow) {
    const gw_result_t *r = &flow->result;
    if (flow->inquiry) {
        if (r->status != PC_OK) return PAY_OUT_UNKNOWN;
        if (!r->status_found) return r->outcome == GW_OUTCOME_RETRYABLE ? PAY_OUT_NOTHING : PAY_OUT_UNKNOWN;
    }
    switch (r->outcome) {
    case GW_OUTCOME_APPROVED: return PAY_OUT_APPROVED;
    case GW_OUTCOME_PENDING: return PAY_OUT_PENDING;
    case GW_OUTCOME_CHALLENGE: return PAY_OUT_CHALLENGE;
    case GW_OUTCOME_SOFT_DECLINE:
    case GW_OUTCOME_HARD_DECLINE: return PAY_OUT_DECLINED;
    case GW_OUTCOME_RETRYABLE: return PAY_OUT_NOTHING;
    default: return PAY_OUT_UNKNOWN;
    }
}

static void op_status(pay_op_t *op, const char *status) {
    pc_str_copy(op->status, sizeof op->status, status);
}

static void op_answer_copy(pay_op_t *op, const gw_result_t *r) {
    if (r->channel[0]) pc_str_copy(op->channel, sizeof op->channel, r->channel);
    if (r->channel_ref[0]) pc_str_copy(op->channel_ref, sizeof op->channel_ref, r->channel_ref);
    pc_str_copy(op->response_code, sizeof op->response_code,
                r->response_code[0] ? r->response_code : pc_status_code(r->status));
    pc_str_copy(op->message, sizeof op->message, r->message[0] ? r->message : r->detail);
}

void pay_op_transfer_add(pay_flow_t *flow, const char *transfer_id) {
    pay_op_t *op = &flow->op;
    bool seen = false;
    for (uint32_t j = 0; j < op->transfer_count; j++) seen = seen || strcmp(op->transfers[j], transfer_id) == 0;
    if (!seen && op->transfer_count < PAY_OP_TRANSFERS_MAX) pay_id_copy(op->transfers[op->transfer_count++], transfer_id);
    if (flow->has_payment) pay_payment_transfer_add(&flow->payment, transfer_id);
}

static void op_transfers_add(pay_flow_t *flow, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) pay_op_transfer_add(flow, flow->transfers[i].id);
}

static void decline_set(pay_payment_t *p, const char *code, const char *message, const char *source) {
    pc_str_copy(p->decline.code, sizeof p->decline.code, code);
    pc_str_copy(p->decline.message, sizeof p->decline.message, message);
    pc_str_copy(p->decline.source, sizeof p->decline.source, source);
}

/* The payment and its op, written; the answer is the payment (or the op: refunds). */
static pc_status write_both(pay_flow_t *flow, store_tx_t *tx) {
    pc_status status = pay_flow_write_op(flow, tx);
    if (status != PC_OK || !flow->has_payment) return status;
    pay_flow_op_put(flow);
    return pay_flow_write_payment(flow, tx);
}

static void answer_for(pay_flow_t *flow) {
    if (flow->op.kind == PAY_OP_REFUND || !flow->has_payment) { /* refunds, payouts, withdrawals */
        int http = strcmp(flow->op.status, "pending") == 0 ? 202 : 201;
        pay_flow_answer(flow, http, pay_op_json(&flow->op));
    } else {
        pay_flow_answer_payment(flow, flow->op.kind == PAY_OP_AUTHORIZE ? 201 : 200);
    }
}

/* ---- the commands of an outcome ---- */

static pc_status outcome_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    pc_status status = write_both(flow, tx);
    if (status == PC_OK && flow->reply.status == PC_OK) answer_for(flow);
    return status;
}

static void outcome_then(pay_flow_t *flow, pc_status status) {
    if (status != PC_OK) pay_reply_error(&flow->reply, status, NULL, NULL);
    else if (flow->hold_changed) {
        if (flow->payment.hold_id[0] != '\0') pay_hold_track(flow->pay, flow->payment.id, flow->payment.hold_deadline_ns);
        else pay_hold_untrack(flow->pay, flow->payment.id);
    }
    pay_flow_finish(flow);
}

/* Writes the payment and op as they are now; 'error' (or PC_OK) is the answer. */
static void outcome_commit(pay_flow_t *flow, pc_status error, const char *message) {
    if (error != PC_OK) pay_reply_error(&flow->reply, error, NULL, message);
    pay_flow_submit_staged(flow, WRITER_CMD_EXEC, 1, outcome_in_tx, outcome_then);
}

/* ---- booking an approval ---- */

static void booking_failed(pay_flow_t *flow, pc_status failure) {
    /* The channel applied it and the ledger refused: the op stays pending, so recovery
     * books it again (by the same ids) once the cause is gone. Never dropped. */
    obs_logf(OBS_LEVEL_ERROR, "payments: %s %s approved by %s but its booking was refused: %s; left pending",
             pay_op_kind_name(flow->op.kind), flow->op.id, flow->op.channel, pc_status_code(failure));
    flow->booking_refused = failure;
}

static pc_status booked_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    pc_status failure;
    if (!pay_book_ok(flow, flow->booking_count, &failure)) {
        if (flow->booking_fallback != NULL && (failure == PC_PENDING_TRANSFER_EXPIRED ||
                                               failure == PC_PENDING_TRANSFER_ALREADY_VOIDED ||
                                               failure == PC_PENDING_TRANSFER_NOT_FOUND)) {
            flow->rebook = true;
            return PC_OK;
        }
        booking_failed(flow, failure);
        return PC_OK;
    }
    op_transfers_add(flow, flow->booking_count);
    flow->booked(flow);
    return outcome_in_tx(flow, tx);
}

static void booked_then(pay_flow_t *flow, pc_status status) {
    if (status == PC_OK && flow->rebook) {
        flow->rebook = false;
        pay_booking_fn fallback = flow->booking_fallback;
        flow->booking_fallback = NULL;
        fallback(flow);
        return;
    }
    if (status == PC_OK && flow->booking_refused != PC_OK) {
        pay_reply_error(&flow->reply, PC_PAYMENT_OPERATION_IN_PROGRESS, NULL,
                        "the channel approved; the booking is retried by recovery");
        pay_flow_finish(flow);
        return;
    }
    outcome_then(flow, status);
}

static void book_transfers(pay_flow_t *flow) {
    pay_flow_submit_staged(flow, WRITER_CMD_CREATE_TRANSFERS, flow->booking_count, booked_in_tx, booked_then);
}

static void channel_account_then(pay_flow_t *flow, pc_status status) {
    pc_status created = flow->account_results[0].status;
    if (status == PC_OK && (created == PC_OK || created == PC_EXISTS)) {
        pay_account_mark_known(flow->pay, flow->accounts[0].id);
        book_transfers(flow);
        return;
    }
    booking_failed(flow, status != PC_OK ? status : created);
    booked_then(flow, PC_OK);
}

/* Books flow->transfers[0..count), then 'booked' moves the payment (inside the tx).
 * The channel's receivable is created first the first time a booking needs it: an
 * account exists only once money moved through it. */
void pay_book_submit(pay_flow_t *flow, uint32_t count, pay_booking_fn booked, pay_booking_fn fallback) {
    flow->booking_count = count;
    flow->booked = booked;
    flow->booking_fallback = fallback;
    flow->booking_refused = PC_OK;
    const char *channel = flow->has_payment && flow->payment.channel[0] ? flow->payment.channel : flow->op.channel;
    const char *currency = flow->has_payment ? flow->payment.currency : flow->op.currency;
    if (channel[0] != '\0' && strcmp(channel, "wallet") != 0 && pay_book_channel_account(flow, channel, currency) > 0) {
        pay_flow_submit(flow, WRITER_CMD_CREATE_ACCOUNTS, 1, NULL, channel_account_then);
        return;
    }
    book_transfers(flow);
}

/* ---- authorize and 3-D Secure ---- */

static void authorized_booked(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    bool captured = flow->op_captures;
    pay_transition(p->state, captured ? PAY_EV_AUTHORIZED_CAPTURED : PAY_EV_AUTHORIZED, &p->state);
    p->authorized = p->amount;
    if (captured) {
        p->captured = p->amount;
        p->fees += flow->op.fee;
        p->hold_id[0] = '\0';
        p->hold_amount = 0;
    } else {
        pay_transfer_id(p->hold_id, flow->op.id, "hold");
        p->hold_amount = p->amount;
    }
    flow->hold_changed = true;
    p->pending_op[0] = '\0';
    op_status(&flow->op, "succeeded");
}

static void authorized_book(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    pc_str_copy(p->channel, sizeof p->channel, flow->op.channel);
    uint32_t window_s = pay_channel_window_s(flow->pay, p->channel);
    pc_str_copy(p->channel_ref, sizeof p->channel_ref, flow->op.channel_ref);
    p->hold_deadline_ns = pc_wall_ns() + (uint64_t)window_s * 1000000000ull;
    uint32_t n = pay_book_hold(flow, p->amount, window_s);
    flow->op_captures = p->capture_automatic || p->top_up;
    if (flow->op_captures) {
        pay_price_t price = p->top_up ? (pay_price_t){0, 0} : pay_merchant_price(flow->merchant, p->channel);
        flow->op.fee = pay_fee_capture(&price, 0, 0, p->amount);
        pay_transfer_id(p->hold_id, flow->op.id, "hold");
        p->hold_amount = p->amount;
        n = pay_book_capture(flow, n, p->amount, flow->op.fee, true, true);
    }
    pay_book_submit(flow, n, authorized_booked, NULL);
}

static void apply_authorize(pay_flow_t *flow, pay_outcome outcome) {
    pay_payment_t *p = &flow->payment;
    if (!flow->inquiry) pay_payment_routing_set(p, &flow->result.decision);
    if (outcome == PAY_OUT_APPROVED) {
        authorized_book(flow);
        return;
    }
    if (outcome == PAY_OUT_PENDING) { /* a bank collection: its callback books it */
        op_status(&flow->op, "processing");
        outcome_commit(flow, PC_OK, NULL);
        return;
    }
    p->pending_op[0] = '\0';
    if (outcome == PAY_OUT_CHALLENGE) {
        pay_transition(p->state, PAY_EV_CHALLENGE, &p->state);
        pc_str_copy(p->channel, sizeof p->channel, flow->op.channel);
        pc_str_copy(p->channel_ref, sizeof p->channel_ref, flow->op.channel_ref);
        pc_str_copy(p->challenge_id, sizeof p->challenge_id, flow->result.challenge_id);
        op_status(&flow->op, "challenge");
    } else if (outcome == PAY_OUT_DECLINED) {
        pay_transition(p->state, PAY_EV_DECLINED, &p->state);
        decline_set(p, flow->op.response_code, flow->op.message, "channel");
        op_status(&flow->op, "declined");
    } else {
        pay_transition(p->state, PAY_EV_FAILED, &p->state);
        decline_set(p, pc_status_code(flow->result.status != PC_OK ? flow->result.status : PC_GATEWAY_NO_CHANNEL),
                    flow->result.detail[0] ? flow->result.detail : "no channel applied it", "gateway");
        op_status(&flow->op, "failed");
    }
    outcome_commit(flow, PC_OK, NULL);
}

static void apply_challenge(pay_flow_t *flow, pay_outcome outcome) {
    pay_payment_t *p = &flow->payment;
    if (outcome == PAY_OUT_APPROVED) {
        authorized_book(flow);
        return;
    }
    p->pending_op[0] = '\0';
    if (outcome == PAY_OUT_DECLINED) {
        pay_transition(p->state, PAY_EV_DECLINED, &p->state);
        decline_set(p, flow->op.response_code, flow->op.message, "channel");
        op_status(&flow->op, "declined");
        outcome_commit(flow, PC_OK, NULL);
        return;
    }
    op_status(&flow->op, "failed"); /* the challenge was not applied: it may be tried again */
    outcome_commit(flow, flow->result.status != PC_OK ? flow->result.status : PC_GATEWAY_CHANNEL_UNREACHABLE, NULL);
}

/* ---- capture ---- */

static void capture_booked(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    const pay_op_t *op = &flow->op;
    int64_t rest = p->hold_id[0] ? p->hold_amount - op->amount : 0;
    p->captured += op->amount;
    p->fees += op->fee;
    if (rest > 0 && !op->final_capture && !flow->booked_without_hold) {
        pay_transfer_id(p->hold_id, op->id, "rehold");
        p->hold_amount = rest;
    } else {
        p->hold_id[0] = '\0';
        p->hold_amount = 0;
    }
    flow->hold_changed = true;
    bool full = p->hold_id[0] == '\0';
    pay_transition(p->state, full ? PAY_EV_CAPTURED_FULL : PAY_EV_CAPTURED_PARTIAL, &p->state);
    p->pending_op[0] = '\0';
    op_status(&flow->op, "succeeded");
}

/* The hold expired (or was voided) while the channel captured: book the capture
 * without it, so the ledger still agrees with the channel. */
static void capture_without_hold(pay_flow_t *flow) {
    flow->booked_without_hold = true;
    uint32_t n = pay_book_capture(flow, 0, flow->op.amount, flow->op.fee, false, true);
    pay_book_submit(flow, n, capture_booked, NULL);
}

static void apply_capture(pay_flow_t *flow, pay_outcome outcome) {
    pay_payment_t *p = &flow->payment;
    if (outcome == PAY_OUT_APPROVED) {
        pay_price_t price = pay_merchant_price(flow->merchant, p->channel);
        flow->op.fee = pay_fee_capture(&price, p->captured, p->fees, flow->op.amount);
        if (p->hold_id[0] == '\0') {
            capture_without_hold(flow);
            return;
        }
        uint32_t n = pay_book_capture(flow, 0, flow->op.amount, flow->op.fee, true, flow->op.final_capture);
        pay_book_submit(flow, n, capture_booked, capture_without_hold);
        return;
    }
    p->pending_op[0] = '\0';
    bool declined = outcome == PAY_OUT_DECLINED;
    op_status(&flow->op, declined ? "declined" : "failed");
    char message[192];
    snprintf(message, sizeof message, "the channel %s the capture (%s)", declined ? "declined" : "did not apply",
             flow->op.response_code);
    outcome_commit(flow, declined ? PC_CHANNEL_DECLINED : (flow->result.status != PC_OK ? flow->result.status
                                                                                        : PC_GATEWAY_CHANNEL_UNREACHABLE),
                   message);
}

/* ---- void (cancel, and telling the channel of an expiry) ---- */

static void voided_booked(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    if (p->state != PAY_STATE_EXPIRED) pay_transition(p->state, PAY_EV_CANCEL, &p->state);
    p->hold_id[0] = '\0';
    p->hold_amount = 0;
    flow->hold_changed = true;
    p->pending_op[0] = '\0';
    op_status(&flow->op, "succeeded");
}

static void apply_void(pay_flow_t *flow, pay_outcome outcome) {
    pay_payment_t *p = &flow->payment;
    if (outcome == PAY_OUT_APPROVED && p->state != PAY_STATE_EXPIRED && p->hold_id[0] != '\0') {
        uint32_t n = pay_book_release(flow, p->hold_id, "release");
        pay_book_submit(flow, n, voided_booked, NULL);
        return;
    }
    if (outcome == PAY_OUT_APPROVED) {
        voided_booked(flow);
        outcome_commit(flow, PC_OK, NULL);
        return;
    }
    p->pending_op[0] = '\0';
    bool declined = outcome == PAY_OUT_DECLINED;
    op_status(&flow->op, declined ? "declined" : "failed");
    pc_status error = PC_OK;
    if (p->state != PAY_STATE_EXPIRED) {
        error = declined ? PC_CHANNEL_DECLINED
                         : (flow->result.status != PC_OK ? flow->result.status : PC_GATEWAY_CHANNEL_UNREACHABLE);
    }
    outcome_commit(flow, error, NULL);
}

/* ---- refund ---- */

static void refund_booked(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    p->refunded += flow->op.amount;
    p->fees_reversed += flow->op.fee;
    pay_transition(p->state, p->refunded == p->captured ? PAY_EV_REFUNDED_FULL : PAY_EV_REFUNDED_PARTIAL, &p->state);
    p->pending_op[0] = '\0';
    op_status(&flow->op, "succeeded");
}

static void refund_released(pay_flow_t *flow) {
    flow->payment.pending_op[0] = '\0';
}

/* The reserve (or payout's) the ledger refused before any call: its own code. */
static bool refused_before_call(pay_flow_t *flow) {
    if (flow->calling.first_done || flow->inquiry) return false;
    pc_status status = flow->result.status != PC_OK ? flow->result.status : PC_GATEWAY_CHANNEL_UNREACHABLE;
    bool ledger = status >= 200 && status < 400;
    pay_reply_error(&flow->reply, status, ledger ? "amount" : NULL,
                    ledger ? "the available balance cannot cover it (the ledger refused the reserve)" : NULL);
    pay_flow_finish(flow);
    return true;
}

static void apply_refund(pay_flow_t *flow, pay_outcome outcome) {
    if (outcome == PAY_OUT_APPROVED) { /* op.fee: the fee given back, fixed when it was asked */
        uint32_t n = pay_book_refund(flow, flow->op.amount, flow->op.fee);
        pay_book_submit(flow, n, refund_booked, NULL);
        return;
    }
    bool declined = outcome == PAY_OUT_DECLINED;
    op_status(&flow->op, declined ? "declined" : "failed");
    char message[192];
    snprintf(message, sizeof message, "the channel %s the refund (%s)", declined ? "declined" : "did not apply",
             flow->op.response_code);
    pay_reply_error(&flow->reply, declined ? PC_CHANNEL_DECLINED
                                           : (flow->result.status != PC_OK ? flow->result.status
                                                                           : PC_GATEWAY_CHANNEL_UNREACHABLE),
                    NULL, message);
    if (refused_before_call(flow)) return;
    if (flow->op.reserve_id[0] == '\0') {
        refund_released(flow);
        outcome_commit(flow, flow->reply.status, message);
        return;
    }
    uint32_t n = pay_book_release(flow, flow->op.reserve_id, "release");
    pay_book_submit(flow, n, refund_released, NULL);
}

/* ---- dispatch ---- */

bool pay_refused_before_call(pay_flow_t *flow) { return refused_before_call(flow); }

void pay_op_apply(pay_flow_t *flow) {
    pay_outcome outcome = pay_outcome_of(flow);
    op_answer_copy(&flow->op, &flow->result);
    if (outcome == PAY_OUT_UNKNOWN) { /* recovery resolves it: nothing is written or guessed */
        if (flow->inquiry) {
            pay_flow_finish(flow);
            return;
        }
        answer_for(flow);
        pay_flow_finish(flow);
        return;
    }
    switch (flow->op.kind) {
    case PAY_OP_AUTHORIZE: apply_authorize(flow, outcome); return;
    case PAY_OP_CHALLENGE: apply_challenge(flow, outcome); return;
    case PAY_OP_CAPTURE: apply_capture(flow, outcome); return;
    case PAY_OP_VOID: apply_void(flow, outcome); return;
    case PAY_OP_REFUND: apply_refund(flow, outcome); return;
    case PAY_OP_PAYOUT:
    case PAY_OP_WITHDRAW: pay_bank_op_apply(flow, outcome); return;
    default: PC_ASSERT(false);
    }
}

void pay_op_result(pay_flow_t *flow, pc_status status) {
    (void)status;
    if (!pay_bank_inquiry_apply(flow)) pay_op_apply(flow); /* a bank's final answer: as its callback */
}
