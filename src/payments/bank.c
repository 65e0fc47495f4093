/* payments/bank.c: money out through the bank channel (merchant payouts, wallet
 * withdrawals) and the bank's asynchronous answers. The amount is reserved in the
 * ledger (a pending transfer out of the merchant's available balance or the wallet,
 * refused by the ledger when it is not there) in the same command that persists the
 * first attempt; the bank answers "pending" at once and later calls back: settled
 * posts the reserve and moves it out to the bank's receivable, returned voids it (the
 * money goes back). Bank-transfer collections (payments by bank transfer, top-ups)
 * are booked when their settlement arrives. Callbacks repeat: an operation already
 * final answers as done. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/obs.h"
#include "payments/pay_internal.h"

static pc_status op_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    pc_status status = pay_flow_write_op(flow, tx);
    if (status == PC_OK && flow->reply.status == PC_OK && !flow->has_payment) {
        pay_flow_answer(flow, 201, pay_op_json(&flow->op));
    }
    return status;
}

static void op_then(pay_flow_t *flow, pc_status status) {
    if (status != PC_OK) pay_reply_error(&flow->reply, status, NULL, NULL);
    pay_flow_finish(flow);
}

void pay_bank_op_start(pay_flow_t *flow, pay_account_kind from, const char *from_owner, pay_account_kind to,
                       const char *to_owner, uint16_t code) {
    pay_op_t *op = &flow->op;
    pc_str_copy(op->status, sizeof op->status, "pending");
    pc_str_copy(flow->lock_id, sizeof flow->lock_id, op->id);
    PC_ASSERT(pay_busy_take(flow->pay, op->id)); /* a new random id */
    uint32_t n = pay_book_bank_reserve(flow, from, from_owner, to, to_owner, op->amount, code);
    pc_str_copy(op->reserve_id, sizeof op->reserve_id, flow->transfers[0].id);
    gw_request_t *r = &flow->request;
    memset(r, 0, sizeof *r);
    r->op = GW_OP_PAYOUT;
    pc_str_copy(r->reference, sizeof r->reference, op->id);
    pc_str_copy(r->method, sizeof r->method, "bank_transfer");
    r->amount_minor = op->amount;
    memcpy(r->currency, op->currency, 4);
    pc_str_copy(r->bank.routing_number, sizeof r->bank.routing_number, op->routing_number);
    pc_str_copy(r->bank.account_number, sizeof r->bank.account_number, op->account_number);
    pay_call_start(flow, pay_op_result, n);
}

/* ---- the channel's first answer ---- */

static void released(pay_flow_t *flow) { (void)flow; }

static void settled_booked(pay_flow_t *flow) {
    pc_str_copy(flow->op.status, sizeof flow->op.status, "paid");
}

void pay_bank_op_apply(pay_flow_t *flow, pay_outcome outcome) {
    pay_op_t *op = &flow->op;
    if (outcome == PAY_OUT_PENDING) {
        pc_str_copy(op->status, sizeof op->status, "processing");
        pay_flow_submit(flow, WRITER_CMD_EXEC, 1, op_in_tx, op_then);
        return;
    }
    if (outcome == PAY_OUT_APPROVED) {
        bool payout = op->kind == PAY_OP_PAYOUT;
        uint32_t n = pay_book_bank_settle(flow, payout ? PAY_ACCOUNT_MERCHANT_PAYOUTS : PAY_ACCOUNT_WITHDRAWALS,
                                          payout ? op->merchant_id : NULL, op->amount,
                                          payout ? PAY_TRANSFER_PAYOUT : PAY_TRANSFER_WITHDRAWAL);
        flow->booking_count = n;
        pay_book_submit(flow, n, settled_booked, NULL);
        return;
    }
    bool declined = outcome == PAY_OUT_DECLINED;
    pc_str_copy(op->status, sizeof op->status, declined ? "declined" : "failed");
    pay_reply_error(&flow->reply, declined ? PC_CHANNEL_DECLINED
                                           : (flow->result.status != PC_OK ? flow->result.status
                                                                           : PC_GATEWAY_CHANNEL_UNREACHABLE),
                    NULL, NULL);
    if (pay_refused_before_call(flow)) return;
    pay_book_submit(flow, pay_book_release(flow, op->reserve_id, "release"), released, NULL);
}

/* ---- payouts ---- */

void pay_payout_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply) {
    static const char *const fields[] = {"merchant_id", "amount", "currency", "bank_account", "description", NULL};
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow == NULL) return;
    pay_op_t *op = &flow->op;
    pay_parse_error_t err = {0};
    char merchant_id[PC_ID_SIZE];
    const char *description;
    if (!pay_parse_fields(body, fields, "", &err) ||
        !pay_parse_id(body, "merchant_id", false, PAY_MERCHANT_ID_BYTES_MAX, "", merchant_id, &err) ||
        !pay_parse_amount(body, "amount", true, "", &op->amount, &err) ||
        !pay_parse_currency(body, "currency", true, "", op->currency, &err) ||
        !pay_parse_bank_account(body, "bank_account", "", op->routing_number, op->account_number, &err) ||
        !pay_parse_string(body, "description", false, API_STRING_BYTES_MAX, "", &description, &err)) {
        if (err.status == PC_ID_INVALID && strcmp(err.field, "merchant_id") == 0) err.status = PC_MERCHANT_UNKNOWN;
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return;
    }
    store_reader_t *reader = pay_reader_acquire(pay);
    pc_status status = reader ? pay_caller_merchant(pay, caller, reader, merchant_id, &flow->merchant)
                              : PC_STORE_READ_FAILED;
    pay_reader_release(pay, reader);
    if (status == PC_OK && !pay_merchant_takes(flow->merchant, op->currency)) status = PC_CURRENCY_NOT_ACCEPTED;
    if (status != PC_OK) {
        pay_flow_fail(flow, status, status == PC_MERCHANT_UNKNOWN ? "merchant_id" :
                                    status == PC_CURRENCY_NOT_ACCEPTED ? "currency" : NULL, NULL);
        if (status == PC_MERCHANT_UNKNOWN) flow = NULL;
        return;
    }
    flow->has_op = true;
    pay_id_new("po_", op->id);
    op->kind = PAY_OP_PAYOUT;
    pc_str_copy(op->parent_id, sizeof op->parent_id, flow->merchant->id);
    pc_str_copy(op->merchant_id, sizeof op->merchant_id, flow->merchant->id);
    pay_bank_op_start(flow, PAY_ACCOUNT_MERCHANT_AVAILABLE, flow->merchant->id, PAY_ACCOUNT_MERCHANT_PAYOUTS,
                      flow->merchant->id, PAY_TRANSFER_PAYOUT_RESERVE);
}

pc_status pay_payout_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader, const char *payout_id,
                         pay_reply_t *out) {
    pay_op_t op;
    pc_status status = pc_id_valid(payout_id) ? pay_op_read(reader, payout_id, &op) : PC_NOT_FOUND;
    if (status == PC_OK && ((op.kind != PAY_OP_PAYOUT && op.kind != PAY_OP_WITHDRAW) ||
                            !pay_caller_sees(pay, caller, op.merchant_id))) {
        status = PC_NOT_FOUND;
    }
    if (status != PC_OK) {
        pay_reply_error(out, status == PC_NOT_FOUND ? PC_PAYOUT_NOT_FOUND : status, NULL, NULL);
        return out->status;
    }
    pay_reply_object(out, 200, pay_op_json(&op));
    return out->status;
}

/* ---- the bank's callbacks ---- */

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool finished;
    pc_status status;
} update_wait_t;

static void update_finished(void *ctx, pc_status status) {
    update_wait_t *wait = ctx;
    pthread_mutex_lock(&wait->mutex);
    wait->finished = true;
    wait->status = status;
    pthread_cond_broadcast(&wait->cond);
    pthread_mutex_unlock(&wait->mutex);
}

static void returned_released(pay_flow_t *flow) {
    pc_str_copy(flow->op.status, sizeof flow->op.status, "returned");
}

static void collection_booked(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    pay_transition(p->state, PAY_EV_AUTHORIZED_CAPTURED, &p->state);
    p->authorized = p->captured = flow->op.amount;
    p->fees += flow->op.fee;
    p->pending_op[0] = '\0';
    pc_str_copy(flow->op.status, sizeof flow->op.status, "succeeded");
}

static pc_status collection_returned_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    pay_payment_t *p = &flow->payment;
    pay_transition(p->state, PAY_EV_DECLINED, &p->state);
    p->pending_op[0] = '\0';
    pc_str_copy(p->decline.code, sizeof p->decline.code, flow->op.response_code);
    pc_str_copy(p->decline.message, sizeof p->decline.message, "the bank returned the transfer");
    pc_str_copy(p->decline.source, sizeof p->decline.source, "channel");
    pc_str_copy(flow->op.status, sizeof flow->op.status, "returned");
    pc_status status = pay_flow_write_op(flow, tx);
    pay_flow_op_put(flow);
    if (status == PC_OK) status = pay_flow_write_payment(flow, tx);
    if (status == PC_OK && flow->reply.status == PC_OK) pay_flow_answer_payment(flow, 201); /* a first call's */
    return status;
}

/* A settled or returned transfer applied to its operation ('flow' loaded). */
static void update_apply(pay_flow_t *flow, const gw_update_t *update) {
    pay_op_t *op = &flow->op;
    pc_str_copy(op->response_code, sizeof op->response_code, update->response_code);
    bool settled = update->outcome == GW_OUTCOME_APPROVED;
    if (op->kind == PAY_OP_AUTHORIZE) {
        pay_payment_t *p = &flow->payment;
        pc_str_copy(p->channel, sizeof p->channel, op->channel);
        pc_str_copy(p->channel_ref, sizeof p->channel_ref, update->channel_ref);
        if (!settled) {
            pay_flow_submit(flow, WRITER_CMD_EXEC, 1, collection_returned_in_tx, op_then);
            return;
        }
        pay_price_t price = p->top_up ? (pay_price_t){0, 0} : pay_merchant_price(flow->merchant, op->channel);
        op->fee = pay_fee_capture(&price, 0, 0, op->amount);
        pay_book_submit(flow, pay_book_capture(flow, 0, op->amount, op->fee, false, true), collection_booked, NULL);
        return;
    }
    if (settled) {
        pay_bank_op_apply(flow, PAY_OUT_APPROVED);
        return;
    }
    pay_book_submit(flow, pay_book_release(flow, op->reserve_id, "release"), returned_released, NULL);
}

/* True for an operation whose outcome reaches paycore by the bank's callback:
 * payouts, withdrawals and bank-transfer collections. */
bool pay_bank_op_waits_callback(const pay_flow_t *flow) {
    const pay_op_t *op = &flow->op;
    if (op->kind == PAY_OP_PAYOUT || op->kind == PAY_OP_WITHDRAW) return true;
    return op->kind == PAY_OP_AUTHORIZE && flow->has_payment && flow->payment.method == PAY_METHOD_BANK;
}

/* The answer is the bank's report of the transfer as it stands, from a status inquiry:
 * recovery's, or the gateway's own after a POST whose answer was lost (a timeout), when
 * the bank may have settled or returned it meanwhile. */
static bool learned_by_inquiry(const pay_flow_t *flow) {
    const gw_result_t *r = &flow->result;
    return flow->inquiry || (r->attempt_count > 0 && r->attempts[r->attempt_count - 1].status_found);
}

/* A first call's answer that the gateway's inquiry learned: what its pending answer
 * would have kept (the routing of a collection, the bank's transfer id). */
static void first_answer_keep(pay_flow_t *flow) {
    const gw_result_t *r = &flow->result;
    if (r->channel_ref[0]) pc_str_copy(flow->op.channel_ref, sizeof flow->op.channel_ref, r->channel_ref);
    if (flow->has_payment) pay_payment_routing_set(&flow->payment, &r->decision);
}

bool pay_bank_inquiry_apply(pay_flow_t *flow) {
    const gw_result_t *r = &flow->result;
    pay_outcome outcome = pay_outcome_of(flow);
    if (!learned_by_inquiry(flow) || !pay_bank_op_waits_callback(flow) ||
        (outcome != PAY_OUT_APPROVED && outcome != PAY_OUT_DECLINED)) {
        return false;
    }
    if (!flow->inquiry) first_answer_keep(flow);
    gw_update_t update = {.outcome = r->outcome, .amount_minor = flow->op.amount};
    pc_str_copy(update.channel, sizeof update.channel, r->channel[0] ? r->channel : flow->op.channel);
    snprintf(update.channel_ref, sizeof update.channel_ref, "%s",
             r->channel_ref[0] ? r->channel_ref : flow->op.channel_ref);
    pc_str_copy(update.idempotency_key, sizeof update.idempotency_key, r->idempotency_key);
    pc_str_copy(update.response_code, sizeof update.response_code, r->response_code);
    memcpy(update.currency, flow->op.currency, sizeof update.currency);
    obs_logf(OBS_LEVEL_INFO, "payments: %s %s: the bank's result %s learned by status inquiry, applied as"
             " its callback", pay_op_kind_name(flow->op.kind), flow->op.id, update.response_code);
    update_apply(flow, &update);
    return true;
}

static bool op_final(const pay_op_t *op) {
    return strcmp(op->status, "pending") != 0 && strcmp(op->status, "processing") != 0;
}

/* A bank's result settles only what was sent to that bank: the attempt with its key
 * went out on its channel. A card attempt's key (whose lookup a database made before
 * schema v8 still holds) names no bank operation. */
static bool op_sent_on(const pay_op_t *op, const gw_update_t *update) {
    for (uint32_t i = 0; i < op->attempt_count; i++) {
        const pay_attempt_t *at = &op->attempts[i];
        if (strcmp(at->idempotency_key, update->idempotency_key) == 0) return strcmp(at->channel, update->channel) == 0;
    }
    return false;
}

/* Why no flow could be had: a stop under way (the bank delivers again to the next
 * run), or every flow in use. */
static pc_status flow_refusal(pay_t *pay) {
    pthread_mutex_lock(&pay->mutex);
    bool stopping = pay->stopping;
    pthread_mutex_unlock(&pay->mutex);
    return stopping ? PC_SHUTTING_DOWN : PC_LIMIT_REACHED;
}

/* PAYCORE_TEST_BANK_CALLBACK_HOLD_MS: tests hold each bank callback that long after
 * its lookup, so that a stop can begin between the listener taking it and its flow. */
static int32_t test_hold_cache_ms = -1;

static void test_hold(const gw_update_t *update) {
    uint32_t hold_ms = pc_test_hold_ms(&test_hold_cache_ms, "PAYCORE_TEST_BANK_CALLBACK_HOLD_MS", 60000);
    if (hold_ms == 0) return;
    obs_logf(OBS_LEVEL_WARN, "payments: test hold of the bank callback for %s: %u ms", update->channel_ref, hold_ms);
    (void)pc_test_hold_sleep(hold_ms, hold_ms, NULL, NULL);
}

/* Loads the op (and its payment) into a new internal flow holding its busy mark;
 * PC_NOT_FOUND when the op was not sent on the update's channel. */
static pc_status update_flow(pay_t *pay, const char *op_id, const gw_update_t *update, pay_flow_t **out) {
    *out = NULL;
    store_reader_t *reader = pay_reader_acquire(pay);
    if (reader == NULL) return PC_STORE_READ_FAILED;
    pay_op_t op;
    pc_status status = pay_op_read(reader, op_id, &op);
    if (status == PC_NOT_FOUND) status = PC_STORE_READ_FAILED; /* its lookup is there: delivered again */
    const char *lock = op.kind == PAY_OP_AUTHORIZE ? op.parent_id : op.id;
    if (status == PC_OK && !op_sent_on(&op, update)) status = PC_NOT_FOUND;
    if (status == PC_OK && op_final(&op)) status = PC_EXISTS;
    if (status == PC_OK && !pay_busy_take(pay, lock)) status = PC_PAYMENT_OPERATION_IN_PROGRESS;
    pay_flow_t *flow = status == PC_OK ? pay_flow_new(pay, NULL, NULL) : NULL;
    if (status == PC_OK && flow == NULL) {
        pay_busy_release(pay, lock);
        status = flow_refusal(pay);
    }
    if (flow != NULL) {
        pc_str_copy(flow->lock_id, sizeof flow->lock_id, lock);
        flow->op = op;
        flow->has_op = true;
        if (op.kind == PAY_OP_AUTHORIZE) {
            status = pay_payment_read(reader, op.parent_id, &flow->payment);
            if (status == PC_OK) status = pay_merchant_find(pay, reader, flow->payment.merchant_id, &flow->merchant);
            flow->has_payment = flow->payment_stored = status == PC_OK;
        }
        if (status != PC_OK) {
            pay_flow_finish(flow);
            flow = NULL;
        }
    }
    pay_reader_release(pay, reader);
    *out = flow;
    return status;
}

pc_status pay_bank_update(pay_t *pay, gw_update_t *update) {
    update->matched = false;
    char name[GW_KEY_SIZE + 16];
    pay_lookup_attempt(name, sizeof name, update->idempotency_key);
    store_reader_t *reader = pay_reader_acquire(pay);
    store_pay_lookup_t lookup;
    pc_status status = reader ? store_pay_lookup_get(reader, name, &lookup) : PC_STORE_READ_FAILED;
    pay_reader_release(pay, reader);
    pay_flow_t *flow = NULL;
    if (status == PC_OK) test_hold(update);
    if (status == PC_OK) status = update_flow(pay, lookup.object_id, update, &flow);
    if (status == PC_NOT_FOUND) { /* delivering it again could never apply it: acknowledged */
        obs_logf(OBS_LEVEL_WARN, "payments: bank callback on channel %s for %s (key %s) matches no operation sent"
                 " on that channel; acknowledged, nothing changed", update->channel, update->channel_ref,
                 update->idempotency_key);
        return PC_OK;
    }
    update->matched = status == PC_OK || status == PC_EXISTS;
    if (status == PC_EXISTS) return PC_OK; /* a repeated delivery */
    if (status != PC_OK) return status;
    update_wait_t wait = {.finished = false};
    pthread_mutex_init(&wait.mutex, NULL);
    pthread_cond_init(&wait.cond, NULL);
    flow->on_finish = update_finished;
    flow->on_finish_ctx = &wait;
    update_apply(flow, update);
    pthread_mutex_lock(&wait.mutex);
    while (!wait.finished) pthread_cond_wait(&wait.cond, &wait.mutex);
    pthread_mutex_unlock(&wait.mutex);
    pthread_cond_destroy(&wait.cond);
    pthread_mutex_destroy(&wait.mutex);
    return wait.status;
}
