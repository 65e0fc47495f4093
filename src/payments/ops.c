/* payments/ops.c: the requests on an existing payment (confirm, capture, cancel,
 * refund), the review queue's decision, and reading payments. Each request takes the
 * payment's busy mark, reads the committed payment, checks the caller, the state
 * table and the amounts, and only then calls out. Another merchant's payment reads
 * exactly as a missing one. */
#include <stdio.h>
#include <string.h>

#include "payments/pay_internal.h"

/* A flow on 'payment_id' for a request 'event': locked, loaded and allowed. NULL when
 * the answer was made (and the flow finished). */
static pay_flow_t *op_begin(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const pay_reply_fn_t *reply,
                            pay_event event, const char *what) {
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow == NULL) return NULL;
    if (!pc_id_valid(payment_id)) {
        pay_flow_fail(flow, PC_PAYMENT_NOT_FOUND, NULL, NULL);
        return NULL;
    }
    if (!pay_busy_take(pay, payment_id)) {
        pay_flow_fail(flow, PC_PAYMENT_OPERATION_IN_PROGRESS, NULL, NULL);
        return NULL;
    }
    pc_str_copy(flow->lock_id, sizeof flow->lock_id, payment_id);
    store_reader_t *reader = pay_reader_acquire(pay);
    pc_status status = reader ? pay_payment_load(pay, reader, payment_id, &flow->payment) : PC_STORE_READ_FAILED;
    if (status == PC_OK && !pay_caller_sees(pay, caller, flow->payment.merchant_id)) status = PC_NOT_FOUND;
    if (status == PC_OK) status = pay_merchant_find(pay, reader, flow->payment.merchant_id, &flow->merchant);
    pay_reader_release(pay, reader);
    if (status != PC_OK) {
        pay_flow_fail(flow, status == PC_NOT_FOUND ? PC_PAYMENT_NOT_FOUND : status, NULL, NULL);
        return NULL;
    }
    flow->has_payment = true;
    flow->payment_stored = true;
    pay_state next;
    if (!pay_transition(flow->payment.state, event, &next)) {
        pay_reply_state_conflict(&flow->reply, flow->payment.state, what);
        pay_flow_finish(flow);
        return NULL;
    }
    if (flow->payment.pending_op[0] != '\0') {
        pay_flow_fail(flow, PC_PAYMENT_OPERATION_IN_PROGRESS, NULL,
                      "an earlier operation on this payment waits for its channel's answer");
        return NULL;
    }
    return flow;
}

void pay_op_new(pay_flow_t *flow, pay_op_kind kind, const char *prefix, int64_t amount) {
    pay_op_t *op = &flow->op;
    memset(op, 0, sizeof *op);
    flow->has_op = true;
    pay_id_new(prefix, op->id);
    op->kind = kind;
    pc_str_copy(op->parent_id, sizeof op->parent_id, flow->payment.id);
    pc_str_copy(op->merchant_id, sizeof op->merchant_id, flow->payment.merchant_id);
    pc_str_copy(op->status, sizeof op->status, "pending");
    op->amount = amount;
    memcpy(op->currency, flow->payment.currency, 4);
}

void pay_request_follow_up(pay_flow_t *flow, gw_op gop) {
    const pay_payment_t *p = &flow->payment;
    gw_request_t *r = &flow->request;
    memset(r, 0, sizeof *r);
    r->op = gop;
    pc_str_copy(r->reference, sizeof r->reference, p->id);
    pc_str_copy(r->method, sizeof r->method, pay_method_name(p->method));
    r->amount_minor = flow->op.amount;
    memcpy(r->currency, p->currency, 4);
    pc_str_copy(r->channel, sizeof r->channel, p->channel);
    pc_str_copy(r->channel_ref, sizeof r->channel_ref, p->channel_ref);
}

static bool body_check(pay_flow_t *flow, const json_t *body, const char *const *fields) {
    pay_parse_error_t err = {0};
    if (body != NULL && !pay_parse_fields(body, fields, "", &err)) {
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return false;
    }
    return true;
}

/* ---- 3-D Secure ---- */

void pay_payment_confirm(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                         const pay_reply_fn_t *reply) {
    static const char *const fields[] = {"code", NULL};
    pay_flow_t *flow = op_begin(pay, caller, payment_id, reply, PAY_EV_CONFIRM, "confirm");
    if (flow == NULL || !body_check(flow, body, fields)) return;
    pay_parse_error_t err = {0};
    const char *code;
    if (!pay_parse_string(body, "code", true, sizeof flow->challenge_code - 1, "", &code, &err)) {
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return;
    }
    pay_op_new(flow, PAY_OP_CHALLENGE, "tds_", flow->payment.amount);
    pay_request_follow_up(flow, GW_OP_CHALLENGE);
    pc_str_copy(flow->request.challenge_id, sizeof flow->request.challenge_id, flow->payment.challenge_id);
    pc_str_copy(flow->request.challenge_code, sizeof flow->request.challenge_code, code);
    pay_call_start(flow, pay_op_result, 0); /* the code wiped from the flow there; the flow is the gateway's now */
}

/* ---- capture ---- */

void pay_payment_capture(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                         const pay_reply_fn_t *reply) {
    static const char *const fields[] = {"amount", "final", NULL};
    pay_flow_t *flow = op_begin(pay, caller, payment_id, reply, PAY_EV_CAPTURE, "capture");
    if (flow == NULL || !body_check(flow, body, fields)) return;
    pay_payment_t *p = &flow->payment;
    pay_parse_error_t err = {0};
    int64_t amount = p->hold_amount;
    bool final_capture = false;
    if (body != NULL && (!pay_parse_amount(body, "amount", false, "", &amount, &err) ||
                         !pay_parse_bool(body, "final", "", &final_capture, &err))) {
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return;
    }
    uint64_t cutoff_ns = p->hold_deadline_ns - (uint64_t)PAY_CAPTURE_CUTOFF_S * 1000000000ull;
    if (p->hold_id[0] == '\0' || pc_wall_ns() >= cutoff_ns) {
        pay_flow_fail(flow, PC_PAYMENT_AUTHORIZATION_EXPIRED, NULL, NULL);
        return;
    }
    if (amount > p->hold_amount) {
        char message[160];
        snprintf(message, sizeof message, "at most %lld can be captured", (long long)p->hold_amount);
        pay_flow_fail(flow, PC_CAPTURE_EXCEEDS_AUTHORIZED, "amount", message);
        return;
    }
    if ((amount < p->hold_amount || p->captured > 0) && !pay_channel_partial_captures(pay, p->channel)) {
        pay_flow_fail(flow, PC_CAPTURE_PARTIAL_NOT_SUPPORTED, "amount", "this payment's channel captures the whole "
                      "authorized amount at once only");
        return;
    }
    pay_op_new(flow, PAY_OP_CAPTURE, "cap_", amount);
    flow->op.final_capture = final_capture || amount == p->hold_amount;
    pay_request_follow_up(flow, GW_OP_CAPTURE);
    pay_call_start(flow, pay_op_result, 0);
}

/* ---- cancel ---- */

static void cancel_without_channel(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    pay_transition(p->state, PAY_EV_CANCEL, &p->state);
    pay_payment_commit_final(flow);
}

void pay_payment_cancel(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                        const pay_reply_fn_t *reply) {
    static const char *const fields[] = {NULL};
    pay_flow_t *flow = op_begin(pay, caller, payment_id, reply, PAY_EV_CANCEL, "cancel");
    if (flow == NULL || !body_check(flow, body, fields)) return;
    pay_payment_t *p = &flow->payment;
    if (p->state != PAY_STATE_AUTHORIZED) { /* nothing is held: requires_action, in_review */
        cancel_without_channel(flow);
        return;
    }
    pay_op_new(flow, PAY_OP_VOID, "void_", p->authorized);
    pay_request_follow_up(flow, GW_OP_VOID);
    pay_call_start(flow, pay_op_result, 0);
}

/* ---- refund ---- */

static pay_flow_t *refund_begin(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                                const pay_reply_fn_t *reply, int64_t *amount) {
    static const char *const fields[] = {"amount", "reason", NULL};
    pay_flow_t *flow = op_begin(pay, caller, payment_id, reply, PAY_EV_REFUND, "refund");
    if (flow == NULL || !body_check(flow, body, fields)) return NULL;
    pay_payment_t *p = &flow->payment;
    pay_parse_error_t err = {0};
    const char *reason;
    *amount = p->captured - p->refunded;
    if (body != NULL && (!pay_parse_amount(body, "amount", false, "", amount, &err) ||
                         !pay_parse_string(body, "reason", false, API_STRING_BYTES_MAX, "", &reason, &err))) {
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return NULL;
    }
    if (*amount > p->captured - p->refunded) {
        char message[160];
        snprintf(message, sizeof message, "at most %lld can be refunded", (long long)(p->captured - p->refunded));
        pay_flow_fail(flow, PC_REFUND_EXCEEDS_CAPTURED, "amount", message);
        return NULL;
    }
    return flow;
}

void pay_refund_create(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                       const pay_reply_fn_t *reply) {
    int64_t amount;
    pay_flow_t *flow = refund_begin(pay, caller, payment_id, body, reply, &amount);
    if (flow == NULL) return;
    pay_op_new(flow, PAY_OP_REFUND, "re_", amount);
    if (flow->payment.method == PAY_METHOD_WALLET) {
        pay_wallet_refund(flow);
        return;
    }
    /* the merchant pays the refund less the fee it gets back: only that is reserved */
    pay_payment_t *p = &flow->payment;
    flow->op.fee = pay_fee_reversal(p->fees, p->captured, p->refunded, p->fees_reversed, amount);
    uint32_t n = 0;
    if (amount - flow->op.fee > 0) {
        n = pay_book_refund_reserve(flow, amount - flow->op.fee);
        pc_str_copy(flow->op.reserve_id, sizeof flow->op.reserve_id, flow->transfers[0].id);
    }
    pay_request_follow_up(flow, GW_OP_REFUND);
    pay_call_start(flow, pay_op_result, n);
}

/* ---- the review queue ---- */

static void review_resume(pay_flow_t *flow, bool approve) {
    pay_payment_t *p = &flow->payment;
    if (!approve) {
        pay_transition(p->state, PAY_EV_REVIEW_DECLINE, &p->state);
        pay_payment_commit_final(flow);
        return;
    }
    pay_transition(p->state, PAY_EV_REVIEW_APPROVE, &p->state);
    if (p->method == PAY_METHOD_WALLET) {
        pay_wallet_pay(flow);
        return;
    }
    pay_authorize_start(flow);
}

void pay_review_decided(pay_t *pay, uint64_t decision_id, bool approve) {
    store_reader_t *reader = pay_reader_acquire(pay);
    char name[48];
    pay_lookup_risk(name, sizeof name, decision_id);
    store_pay_lookup_t lookup;
    pc_status status = reader ? store_pay_lookup_get(reader, name, &lookup) : PC_STORE_READ_FAILED;
    pay_reader_release(pay, reader);
    if (status != PC_OK) return;
    pay_caller_t internal = {.key_id = "", .admin = true};
    pay_flow_t *flow = op_begin(pay, &internal, lookup.object_id, NULL,
                                approve ? PAY_EV_REVIEW_APPROVE : PAY_EV_REVIEW_DECLINE, "review");
    if (flow != NULL) review_resume(flow, approve);
}

/* ---- reading ---- */

pc_status pay_payment_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader, const char *payment_id,
                          pay_reply_t *out) {
    store_pay_object_t object;
    pc_status status = pc_id_valid(payment_id) ? store_pay_object_get(reader, payment_id, &object) : PC_NOT_FOUND;
    if (status == PC_OK && (strcmp(object.kind, "payment") != 0 || !pay_caller_sees(pay, caller, object.merchant_id))) {
        store_pay_object_free(&object);
        status = PC_NOT_FOUND;
    }
    if (status != PC_OK) {
        pay_reply_error(out, status == PC_NOT_FOUND ? PC_PAYMENT_NOT_FOUND : status, NULL, NULL);
        return out->status;
    }
    json_t *doc = NULL;
    status = pay_payment_doc(reader, &object, object.version, &doc, NULL);
    store_pay_object_free(&object);
    if (status != PC_OK) pay_reply_error(out, status, NULL, NULL);
    else pay_reply_object(out, 200, doc);
    return out->status;
}

pc_status pay_refund_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader, const char *refund_id,
                         pay_reply_t *out) {
    pay_op_t op;
    pc_status status = pc_id_valid(refund_id) ? pay_op_read(reader, refund_id, &op) : PC_NOT_FOUND;
    if (status == PC_OK && (op.kind != PAY_OP_REFUND || !pay_caller_sees(pay, caller, op.merchant_id))) {
        status = PC_NOT_FOUND;
    }
    if (status != PC_OK) {
        pay_reply_error(out, status == PC_NOT_FOUND ? PC_REFUND_NOT_FOUND : status, NULL, NULL);
        return out->status;
    }
    pay_reply_object(out, 200, pay_op_json(&op));
    return out->status;
}


pc_status pay_payments_list(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                            const pay_list_query_t *query, pay_reply_t *out) {
    char bound[PC_ID_SIZE] = "";
    const char *merchant_id = query->merchant_id;
    if (!caller->admin) {
        pay_key_merchant(pay, caller->key_id, bound);
        if (bound[0] == '\0' || (merchant_id != NULL && strcmp(merchant_id, bound) != 0)) {
            pay_reply_object(out, 200, json_pack("{s:[],s:b}", "data", "has_more", 0));
            return out->status;
        }
        merchant_id = bound;
    }
    store_pay_query_t q = {.kind = "payment", .merchant_id = merchant_id, .status = query->status,
                           .created_from_ns = query->created_from_ns, .created_to_ns = query->created_to_ns,
                           .starting_after = query->starting_after, .descending = query->descending,
                           .limit = query->limit};
    pay_list_t list = {.data = json_array(), .reader = reader, .status = PC_OK};
    json_t *data = list.data;
    bool has_more = false;
    pc_status status = store_pay_objects_list(reader, &q, pay_list_append, &list, &has_more);
    if (status == PC_OK) status = list.status;
    if (status != PC_OK) {
        json_decref(data);
        if (status == PC_NOT_FOUND) pay_reply_error(out, PC_QUERY_INVALID, "starting_after", NULL);
        else pay_reply_error(out, status, NULL, NULL);
        return out->status;
    }
    pay_reply_object(out, 200, json_pack("{s:o,s:b}", "data", data, "has_more", has_more));
    return out->status;
}
