/* payments/emit.c: the events of payments, refunds, payouts and withdrawals, written
 * into the same transaction as the row they describe (the events outbox, events.h).
 * One event per stored version: object_seq is the row's version, so a receiver sees a
 * gap-free sequence per object. The type names the state (or status) after the
 * change, "<kind>.updated" when it stayed (a new attempt, an operation begun). A
 * payment's event is stored as a reference to the version record the same command
 * appends (events.h): the payment's document is written once, not twice. The
 * owners are the merchant keys granted the merchant's available account in the
 * object's currency: the keys that see the merchant's ledger events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/events.h"
#include "payments/pay_internal.h"

static_assert(PAY_REPLY_REF_BYTES_MAX <= EVENTS_REF_BYTES_MAX + 1, "a payment reference fits an event's");

/* "<prefix><state>" when that is an event type, else "<prefix>updated". */
static events_type type_of(const char *prefix, const char *state, bool changed) {
    char name[STORE_EVENT_TYPE_SIZE];
    events_type type;
    size_t prefix_bytes = strlen(prefix); /* op_prefix's: a literal */
    PC_ASSERT(prefix_bytes < sizeof name);
    memcpy(name, prefix, prefix_bytes);
    pc_str_copy(name + prefix_bytes, sizeof name - prefix_bytes, state);
    if (changed && events_type_parse(name, &type)) return type;
    pc_str_copy(name + prefix_bytes, sizeof name - prefix_bytes, "updated");
    PC_ASSERT(events_type_parse(name, &type));
    return type;
}

/* 'text': json_dumps of a payment's or an op's JSON object; 'ref' (or NULL): the
 * stored reference that renders as 'text'. */
static pc_status emit_text(pay_t *pay, store_tx_t *tx, events_type type, const char *object_id,
                           uint32_t version, const char *text, const char *ref, const char *merchant_id,
                           const char *currency) {
    char account_id[PC_ID_SIZE];
    bool named = pay_account_id(account_id, PAY_ACCOUNT_MERCHANT_AVAILABLE, merchant_id, currency);
    events_emit_t event = {.type = type, .object_id = object_id, .object_seq = version, .object_json = text,
                           .object_json_dumped = true, .object_ref = ref,
                           .owners_account_id = named ? account_id : NULL};
    return events_emit(pay->config.events, tx, &event, NULL);
}

static pc_status emit(pay_t *pay, store_tx_t *tx, events_type type, const char *object_id, uint32_t version,
                      json_t *object /* stolen */, const char *merchant_id, const char *currency) {
    char *text = object != NULL ? json_dumps(object, JSON_COMPACT) : NULL;
    json_decref(object);
    if (text == NULL) return PC_NO_MEMORY;
    pc_status status = emit_text(pay, tx, type, object_id, version, text, NULL, merchant_id, currency);
    free(text);
    return status;
}

/* A payment's type_of by the state's place: EVENTS_PAYMENT_TYPES lists the states in
 * payments.h's order (test_events_outbox holds each to its name), so no name is built
 * and looked up on the writer for each of a payment's events. */
static_assert(EVENTS_TYPE_PAYMENT_EXPIRED - EVENTS_TYPE_PAYMENT_CREATED == PAY_STATE_EXPIRED - PAY_STATE_CREATED &&
                  PAY_STATE_EXPIRED + 1 == PAY_STATE_COUNT,
              "a payment event type for every state, in the states' order");

static events_type payment_type(pay_state state, bool changed) {
    PC_ASSERT((unsigned)state < PAY_STATE_COUNT);
    return changed ? (events_type)(EVENTS_TYPE_PAYMENT_CREATED + state) : EVENTS_TYPE_PAYMENT_UPDATED;
}

pc_status pay_event_payment(pay_flow_t *flow, store_tx_t *tx, const char *doc) {
    pay_payment_t *p = &flow->payment;
    if (flow->pay->config.events == NULL || tx == NULL) return PC_OK; /* tx NULL: a dry run */
    bool changed = p->version == 1 || p->state != p->state_stored;
    events_type type = payment_type(p->state, changed);
    /* 'doc' is the version record just appended, rendered: the event names the record
     * (pay_reply_ref_render renders it again, byte for byte) instead of holding a copy */
    pay_reply_t version = {.status = PC_OK, .ref_version = p->version};
    pay_id_copy(version.ref_id, p->id);
    char ref[PAY_REPLY_REF_BYTES_MAX];
    if (!pay_reply_ref_format(&version, ref)) return PC_INTERNAL;
    pc_status status = emit_text(flow->pay, tx, type, p->id, p->version, doc, ref, p->merchant_id, p->currency);
    if (status == PC_OK) p->state_stored = p->state;
    return status;
}

/* The prefix of an op kind that is an object of its own ("" for a payment's steps). */
static const char *op_prefix(pay_op_kind kind) {
    switch (kind) {
    case PAY_OP_REFUND: return "refund.";
    case PAY_OP_PAYOUT: return "payout.";
    case PAY_OP_WITHDRAW: return "withdrawal.";
    default: return "";
    }
}

/* A card payment's steps need no row of their own: nothing reads them by id (a refund
 * has its route, a bank's callback finds its attempt through the op's row), and the
 * recovery finds the one in flight through its payment's row (pay_flow_row_put). An
 * op that has a row (written before rows were left out) keeps it up to date. */
static bool op_row_kept(const pay_flow_t *flow, bool in_payment) {
    const pay_op_t *op = &flow->op;
    return !in_payment || op->row || op->kind == PAY_OP_REFUND || flow->payment.method != PAY_METHOD_CARD;
}

pc_status pay_flow_write_op(pay_flow_t *flow, store_tx_t *tx) {
    pay_op_t *op = &flow->op;
    /* every command of a payment's op writes the payment too (pay_flow_write_payment) */
    bool in_payment = flow->has_payment && strcmp(op->parent_id, flow->payment.id) == 0;
    pc_status status = pay_op_put(tx, op, &flow->staged, in_payment, op_row_kept(flow, in_payment));
    const char *prefix = op_prefix(op->kind);
    if (status != PC_OK || prefix[0] == '\0' || flow->pay->config.events == NULL || tx == NULL) return status;
    bool changed = op->version == 1 || strcmp(op->status, op->status_stored) != 0;
    events_type type = type_of(prefix, op->status, changed);
    status = emit(flow->pay, tx, type, op->id, op->version, pay_op_json(op), op->merchant_id, op->currency);
    if (status == PC_OK) pc_str_copy(op->status_stored, sizeof op->status_stored, op->status);
    return status;
}
