/* payments/call.c: a flow's call through the gateway. Before each attempt the gateway
 * hands us the attempt and its idempotency key (persist): we write the operation (and,
 * the first time, what must exist before anything goes out: a new payment and its
 * card token, a refund's or payout's reserve) in one writer command, and only after
 * its commit let the call go (gw_attempt_persisted). A reserve the ledger refuses
 * (the merchant's available balance is short) ends the call before any channel hears
 * of it. The result lands back in the flow on the gateway's thread. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "payments/pay_internal.h"

typedef struct pay_calling call_state_t;

static call_state_t *state_of(pay_flow_t *flow) { return &flow->calling; }

static pc_status persist_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    call_state_t *cs = state_of(flow);
    flow->persist_status = PC_OK;
    if (cs->reserve_count > 0 && !cs->first_done) {
        pc_status failure;
        if (!pay_book_ok(flow, cs->reserve_count, &failure)) {
            flow->persist_status = failure; /* nothing written: the channel is not called */
            return PC_OK;
        }
        for (uint32_t i = 0; i < cs->reserve_count; i++) pay_op_transfer_add(flow, flow->transfers[i].id);
    }
    pc_status status = pay_flow_write_op(flow, tx);
    if (status == PC_OK && flow->has_payment) {
        pay_flow_op_put(flow);
        status = pay_flow_write_payment(flow, tx);
    }
    /* only a bank's callback names an attempt by its key (pay_bank_update): other
     * channels answer the call itself, and a random key would cost a page a row */
    char name[GW_KEY_SIZE + 16];
    pay_lookup_attempt(name, sizeof name, flow->attempt.idempotency_key);
    if (status == PC_OK && tx != NULL && flow->attempt.kind == GW_KIND_BANK) {
        status = store_pay_lookup_put(tx, name, flow->op.id, NULL, 0);
    }
    if (status == PC_EXISTS) status = PC_OK;
    return status;
}

static void persist_then(pay_flow_t *flow, pc_status status) {
    call_state_t *cs = state_of(flow);
    pc_status result = status == PC_OK ? flow->persist_status : status;
    if (status == PC_OK && result == PC_OK) cs->first_done = true;
    gw_call_t *call = flow->call;
    flow->call = NULL;
    /* a writer completion's: handed to the gateway with the rest of its batch's, at its end */
    if (writer_completions_defer(gw_persisted_release)) gw_persisted_hold();
    gw_attempt_persisted(call, result);
}

static void persist_submit(pay_flow_t *flow) {
    call_state_t *cs = state_of(flow);
    uint32_t count = cs->first_done ? 0 : cs->reserve_count;
    pay_flow_submit_staged(flow, count > 0 ? WRITER_CMD_CREATE_TRANSFERS : WRITER_CMD_EXEC, count, persist_in_tx,
                           persist_then);
}

static void persist_start(pay_flow_t *flow, gw_call_t *call, const gw_attempt_t *attempt) {
    flow->call = call;
    flow->attempt = *attempt;
    pay_attempt_t *at = pay_op_attempt_put(&flow->op, attempt);
    if (at == NULL) {
        flow->call = NULL;
        gw_attempt_persisted(call, PC_LIMIT_REACHED);
        return;
    }
    pc_str_copy(flow->op.status, sizeof flow->op.status, "pending");
    pc_str_copy(flow->op.channel, sizeof flow->op.channel, attempt->channel);
    if (flow->has_payment) pc_str_copy(flow->payment.pending_op, sizeof flow->payment.pending_op, flow->op.id);
    persist_submit(flow);
}

/* The attempt must be durable before the channel hears of it. A first attempt comes
 * on the thread that started the call (persist_on_submit): its command is rendered
 * and queued right there (or on a stage thread when that is a writer completion's),
 * with no hop through the gateway's thread and a stage thread's. A later attempt
 * comes on the gateway's thread: rendered on a stage thread (that one serves every
 * call). */
static void on_persist(void *ctx, gw_call_t *call, const gw_attempt_t *attempt) {
    pay_path_cut(ctx, PAY_PATH_GATEWAY_IN);
    if (!gw_on_gateway_thread()) {
        persist_start(ctx, call, attempt);
        return;
    }
    pay_stage_hold(); /* handed over at the gateway pass's end (pay_stage_release) */
    pay_serial_enter();
    persist_start(ctx, call, attempt);
    pay_serial_leave();
}

static void result_apply(pay_flow_t *flow) {
    pay_path_cut(flow, PAY_PATH_APPLY_STAGE);
    state_of(flow)->on_result(flow, flow->result.status);
}

/* Gateway thread: what the result does (its booking, its answer) is worked out on a
 * stage thread, or here when every stage thread sleeps (pay_stage_carry: its booking
 * is rendered and queued from this thread, one wake-up of a stage thread fewer); the
 * call's own memory is freed once this returns. */
static void on_done(void *ctx, const gw_result_t *result) {
    pay_flow_t *flow = ctx;
    pay_path_cut(flow, PAY_PATH_CALL);
    flow->path.answered = true;
    flow->result = *result;
    pay_op_attempts_from_result(&flow->op, result);
    pay_stage_hold(); /* handed over at the gateway pass's end (pay_stage_release) */
    if (pay_stage_carry(flow->pay)) {
        result_apply(flow);
        return;
    }
    if (pay_stage_queue(flow, result_apply)) return;
    pay_serial_enter();
    result_apply(flow);
    pay_serial_leave();
}

void pay_call_start(pay_flow_t *flow, pay_flow_fn on_result, uint32_t reserve_count) {
    call_state_t *cs = state_of(flow);
    memset(cs, 0, sizeof *cs);
    cs->on_result = on_result;
    cs->reserve_count = reserve_count;
    gw_t *gw = flow->pay->config.gateway;
    gw_callbacks_t callbacks = {.persist = on_persist, .done = on_done, .ctx = flow, .pass_end = pay_stage_release,
                                .persist_on_submit = true};
    pay_path_cut(flow, PAY_PATH_API);
    /* from gw_submit on the flow is the gateway's (and the writer's, a stage thread's:
     * its first attempt is persisted inside gw_submit): wiped before */
    gw_request_t request = flow->request;
    sodium_memzero(&flow->request.card, sizeof flow->request.card);
    sodium_memzero(flow->request.challenge_code, sizeof flow->request.challenge_code);
    pc_status status = gw != NULL ? gw_submit(gw, &request, &callbacks) : PC_GATEWAY_NOT_CONFIGURED;
    sodium_memzero(&request.card, sizeof request.card);
    if (status != PC_OK) {
        memset(&flow->result, 0, sizeof flow->result);
        flow->result.status = status;
        flow->result.outcome = GW_OUTCOME_RETRYABLE;
        on_result(flow, status);
    }
}

void pay_call_status(pay_flow_t *flow, pay_flow_fn on_result) {
    call_state_t *cs = state_of(flow);
    memset(cs, 0, sizeof *cs);
    cs->on_result = on_result;
    const pay_attempt_t *last = &flow->op.attempts[flow->op.attempt_count - 1];
    gw_request_t *r = &flow->request;
    memset(r, 0, sizeof *r);
    r->op = GW_OP_STATUS;
    r->status_op = last->op;
    pc_str_copy(r->status_key, sizeof r->status_key, last->idempotency_key);
    pc_str_copy(r->channel, sizeof r->channel, last->channel);
    pc_str_copy(r->reference, sizeof r->reference, flow->op.parent_id);
    r->amount_minor = flow->op.amount;
    memcpy(r->currency, flow->op.currency, 4);
    gw_t *gw = flow->pay->config.gateway;
    gw_callbacks_t callbacks = {.persist = NULL, .done = on_done, .ctx = flow, .pass_end = pay_stage_release};
    pc_status status = gw != NULL ? gw_submit(gw, r, &callbacks) : PC_GATEWAY_NOT_CONFIGURED;
    if (status != PC_OK) {
        memset(&flow->result, 0, sizeof flow->result);
        flow->result.status = status;
        flow->result.outcome = GW_OUTCOME_UNKNOWN;
        on_result(flow, status);
    }
}

/* ---- what a channel allows ---- */

static gw_channel_terms_t channel_terms(pay_t *pay, const char *channel) {
    gw_channel_terms_t terms;
    gw_t *gw = pay->config.gateway;
    if (gw == NULL || gw_channel_terms(gw, channel, &terms) != PC_OK) {
        terms = (gw_channel_terms_t){.partial_captures = true}; /* the call itself will fail */
    }
    return terms;
}

uint32_t pay_channel_window_s(pay_t *pay, const char *channel) {
    uint32_t window_s = channel_terms(pay, channel).authorization_window_s;
    return window_s != 0 ? window_s : pay->config.authorization_window_s;
}

bool pay_channel_partial_captures(pay_t *pay, const char *channel) {
    return channel_terms(pay, channel).partial_captures;
}
