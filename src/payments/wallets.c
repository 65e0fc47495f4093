/* payments/wallets.c: customer wallets. A wallet is a ledger account that cannot go
 * below zero (debits_must_not_exceed_credits), issued by a merchant to one customer
 * (its owner). Pay: a wallet payment to its merchant moves money in the ledger at
 * once, and an overdraft is the ledger's own refusal (exceeds_credits), answered as a
 * decline with that reason. Top up: a card or bank-transfer payment whose money lands
 * in the wallet (intent.c). Withdraw: to a bank account through the bank channel,
 * reserved until the bank's callback settles or returns it (bank.c). Identity is
 * checked every time: the payer (or the withdrawing customer) must be the owner. */
#include <stdio.h>
#include <string.h>

#include "payments/pay_internal.h"

typedef struct {
    char id[PC_ID_SIZE];
    char merchant_id[PC_ID_SIZE];
    char owner_id[PC_ID_SIZE];
    char currency[4];
} wallet_t;

static pc_status wallet_read(store_reader_t *reader, const char *id, wallet_t *out, json_t **doc_out) {
    memset(out, 0, sizeof *out);
    if (doc_out != NULL) *doc_out = NULL;
    store_pay_object_t object;
    pc_status status = pc_id_valid(id) ? store_pay_object_get(reader, id, &object) : PC_NOT_FOUND;
    if (status != PC_OK) return status;
    json_t *doc = strcmp(object.kind, "wallet") == 0 ? json_loadb(object.doc, object.doc_bytes, 0, NULL) : NULL;
    store_pay_object_free(&object);
    if (doc == NULL) return PC_NOT_FOUND;
    snprintf(out->id, sizeof out->id, "%s", json_string_value(json_object_get(doc, "id")));
    snprintf(out->merchant_id, sizeof out->merchant_id, "%s", json_string_value(json_object_get(doc, "merchant_id")));
    snprintf(out->owner_id, sizeof out->owner_id, "%s", json_string_value(json_object_get(doc, "owner_id")));
    snprintf(out->currency, sizeof out->currency, "%s", json_string_value(json_object_get(doc, "currency")));
    if (doc_out != NULL) *doc_out = doc;
    else json_decref(doc);
    return PC_OK;
}

/* ---- create and read ---- */

typedef struct {
    json_t *doc;
} wallet_job_t;

static pc_status wallet_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    wallet_job_t *job = flow->extra;
    pc_status created = flow->account_results[0].status;
    if (created != PC_OK && created != PC_EXISTS) {
        pay_reply_error(&flow->reply, created, NULL, NULL);
        return PC_OK;
    }
    char *text = json_dumps(job->doc, JSON_COMPACT);
    if (text == NULL) return PC_NO_MEMORY;
    store_pay_object_t object = {.version = 1};
    object.created_ns = object.updated_ns = (uint64_t)json_integer_value(json_object_get(job->doc, "created"));
    snprintf(object.id, sizeof object.id, "%s", json_string_value(json_object_get(job->doc, "id")));
    pc_str_copy(object.kind, sizeof object.kind, "wallet");
    snprintf(object.merchant_id, sizeof object.merchant_id, "%s",
             json_string_value(json_object_get(job->doc, "merchant_id")));
    pc_str_copy(object.status, sizeof object.status, "active");
    object.doc = text;
    object.doc_bytes = strlen(text);
    pc_status status = store_pay_object_put(tx, &object);
    free(text);
    if (status == PC_OK) {
        json_t *shown = json_deep_copy(job->doc);
        json_object_set_new(shown, "balance", json_pack("{s:i,s:i}", "available", 0, "pending", 0));
        pay_flow_answer(flow, 201, shown);
    }
    return status;
}

static void wallet_then(pay_flow_t *flow, pc_status status) {
    wallet_job_t *job = flow->extra;
    if (status != PC_OK) pay_reply_error(&flow->reply, status, NULL, NULL);
    json_decref(job->doc);
    job->doc = NULL;
    pay_flow_finish(flow);
}

void pay_wallet_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply) {
    static const char *const fields[] = {"merchant_id", "owner_id", "currency", "metadata", NULL};
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow == NULL) return;
    pay_parse_error_t err = {0};
    char merchant_id[PC_ID_SIZE], owner_id[PC_ID_SIZE], currency[4];
    json_t *metadata = NULL;
    if (!pay_parse_fields(body, fields, "", &err) ||
        !pay_parse_id(body, "merchant_id", false, PAY_MERCHANT_ID_BYTES_MAX, "", merchant_id, &err) ||
        !pay_parse_id(body, "owner_id", true, PC_ID_BYTES_MAX, "", owner_id, &err) ||
        !pay_parse_currency(body, "currency", true, "", currency, &err) ||
        !pay_parse_metadata(body, "metadata", "", &metadata, &err)) {
        if (err.status == PC_ID_INVALID && strcmp(err.field, "merchant_id") == 0) err.status = PC_MERCHANT_UNKNOWN;
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return;
    }
    store_reader_t *reader = pay_reader_acquire(pay);
    pc_status status = reader ? pay_caller_merchant(pay, caller, reader, merchant_id, &flow->merchant)
                              : PC_STORE_READ_FAILED;
    pay_reader_release(pay, reader);
    if (status == PC_OK && !pay_merchant_takes(flow->merchant, currency)) status = PC_CURRENCY_NOT_ACCEPTED;
    wallet_job_t *job = status == PC_OK ? calloc(1, sizeof *job) : NULL;
    if (status == PC_OK && job == NULL) status = PC_NO_MEMORY;
    if (status != PC_OK) {
        json_decref(metadata);
        pay_flow_fail(flow, status, status == PC_MERCHANT_UNKNOWN ? "merchant_id" :
                                    status == PC_CURRENCY_NOT_ACCEPTED ? "currency" : NULL, NULL);
        return;
    }
    char id[PC_ID_SIZE];
    pay_id_new("wal_", id);
    pay_account_event(&flow->accounts[0], PAY_ACCOUNT_WALLET, id, currency);
    job->doc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I}", "id", id, "object", "wallet", "merchant_id",
                         flow->merchant->id, "owner_id", owner_id, "currency", currency, "account_id",
                         flow->accounts[0].id, "metadata", metadata ? metadata : json_object(), "created",
                         (json_int_t)pc_wall_ns());
    flow->extra = job;
    pay_flow_submit(flow, WRITER_CMD_CREATE_ACCOUNTS, 1, wallet_in_tx, wallet_then);
}

pc_status pay_wallet_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader, const char *wallet_id,
                         pay_reply_t *out) {
    wallet_t wallet;
    json_t *doc = NULL;
    pc_status status = wallet_read(reader, wallet_id, &wallet, &doc);
    if (status == PC_OK && !pay_caller_sees(pay, caller, wallet.merchant_id)) status = PC_NOT_FOUND;
    store_account_t account;
    if (status == PC_OK) status = store_read_account(reader, json_string_value(json_object_get(doc, "account_id")), &account);
    if (status != PC_OK) {
        json_decref(doc);
        pay_reply_error(out, status == PC_NOT_FOUND ? PC_WALLET_NOT_FOUND : status, NULL, NULL);
        return out->status;
    }
    const ledger_balances_t *b = &account.account.balances;
    json_object_set_new(doc, "balance", json_pack("{s:I,s:I}", "available",
                                                  (json_int_t)(b->credits_posted - b->debits_posted - b->debits_pending),
                                                  "pending", (json_int_t)(b->credits_pending - b->debits_pending)));
    store_account_free(&account);
    pay_reply_object(out, 200, doc);
    return out->status;
}

/* ---- checks for payments that use a wallet ---- */

bool pay_wallet_check(pay_flow_t *flow, store_reader_t *reader) {
    pay_payment_t *p = &flow->payment;
    wallet_t wallet;
    pc_status status = wallet_read(reader, p->wallet_id, &wallet, NULL);
    if (status == PC_OK && strcmp(wallet.merchant_id, p->merchant_id) != 0) status = PC_NOT_FOUND;
    if (status != PC_OK) {
        pay_reply_error(&flow->reply, status == PC_NOT_FOUND ? PC_WALLET_UNKNOWN : status,
                        p->top_up ? NULL : "payment_method.wallet_id", NULL);
        return false;
    }
    if (strcmp(wallet.currency, p->currency) != 0) {
        pay_reply_error(&flow->reply, PC_CURRENCY_NOT_ACCEPTED, "currency", "the wallet holds another currency");
        return false;
    }
    if (strcmp(wallet.owner_id, p->payer.id) != 0) { /* a top-up too: no stranger's card loads it */
        pay_reply_error(&flow->reply, PC_WALLET_OWNER_MISMATCH, "payer.id", NULL);
        return false;
    }
    return true;
}

bool pay_wallet_top_up_target(pay_flow_t *flow, const pay_caller_t *caller, const char *wallet_id) {
    store_reader_t *reader = pay_reader_acquire(flow->pay);
    wallet_t wallet;
    pc_status status = reader ? wallet_read(reader, wallet_id, &wallet, NULL) : PC_STORE_READ_FAILED;
    pay_reader_release(flow->pay, reader);
    if (status == PC_OK && !pay_caller_sees(flow->pay, caller, wallet.merchant_id)) status = PC_NOT_FOUND;
    if (status != PC_OK) {
        pay_reply_error(&flow->reply, status == PC_NOT_FOUND ? PC_WALLET_NOT_FOUND : status, NULL, NULL);
        return false;
    }
    pc_str_copy(flow->payment.wallet_id, sizeof flow->payment.wallet_id, wallet.id);
    pc_str_copy(flow->payment.merchant_id, sizeof flow->payment.merchant_id, wallet.merchant_id);
    return true;
}

/* ---- paying from a wallet: the ledger decides ---- */

static void wallet_paid(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    pay_transition(p->state, PAY_EV_AUTHORIZED_CAPTURED, &p->state);
    p->authorized = p->captured = p->amount;
    p->fees += flow->op.fee;
    pc_str_copy(flow->op.status, sizeof flow->op.status, "succeeded");
}

static pc_status wallet_pay_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    pay_payment_t *p = &flow->payment;
    pc_status failure;
    if (pay_book_ok(flow, flow->booking_count, &failure)) {
        for (uint32_t i = 0; i < flow->booking_count; i++) pay_op_transfer_add(flow, flow->transfers[i].id);
        wallet_paid(flow);
    } else { /* the ledger refused (an overdraft: exceeds_credits): a decline, nothing moved */
        pay_transition(p->state, PAY_EV_DECLINED, &p->state);
        pc_str_copy(p->decline.code, sizeof p->decline.code, pc_status_code(failure));
        pc_str_copy(p->decline.message, sizeof p->decline.message, pc_status_message(failure));
        pc_str_copy(p->decline.source, sizeof p->decline.source, "ledger");
        pc_str_copy(flow->op.status, sizeof flow->op.status, "declined");
        pc_str_copy(flow->op.response_code, sizeof flow->op.response_code, pc_status_code(failure));
    }
    pc_status status = pay_flow_write_op(flow, tx);
    pay_flow_op_put(flow);
    if (status == PC_OK) status = pay_flow_write_payment(flow, tx);
    if (status == PC_OK) pay_flow_answer_payment(flow, 201);
    return status;
}

static void wallet_pay_then(pay_flow_t *flow, pc_status status) {
    if (status != PC_OK) pay_reply_error(&flow->reply, status, NULL, NULL);
    pay_flow_finish(flow);
}

void pay_wallet_pay(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    pay_op_new(flow, PAY_OP_AUTHORIZE, "wpay_", p->amount);
    pay_op_t *op = &flow->op;
    pc_str_copy(op->channel, sizeof op->channel, "wallet");
    pc_str_copy(p->channel, sizeof p->channel, "wallet");
    pay_price_t price = pay_merchant_price(flow->merchant, "wallet");
    op->fee = pay_fee_capture(&price, 0, 0, p->amount);
    flow->booking_count = pay_book_wallet_payment(flow, op->fee);
    pay_flow_submit(flow, WRITER_CMD_CREATE_TRANSFERS, flow->booking_count, wallet_pay_in_tx, wallet_pay_then);
}

/* ---- refunding a wallet payment: back into the wallet at once ---- */

static pc_status wallet_refund_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    pay_payment_t *p = &flow->payment;
    pc_status failure;
    if (!pay_book_ok(flow, flow->booking_count, &failure)) {
        pay_reply_error(&flow->reply, failure, "amount", "the merchant's available balance cannot cover the refund");
        return PC_OK;
    }
    for (uint32_t i = 0; i < flow->booking_count; i++) pay_op_transfer_add(flow, flow->transfers[i].id);
    p->refunded += flow->op.amount;
    p->fees_reversed += flow->op.fee;
    pay_transition(p->state, p->refunded == p->captured ? PAY_EV_REFUNDED_FULL : PAY_EV_REFUNDED_PARTIAL, &p->state);
    pc_str_copy(flow->op.status, sizeof flow->op.status, "succeeded");
    pc_str_copy(flow->op.channel, sizeof flow->op.channel, "wallet");
    pc_status status = pay_flow_write_op(flow, tx);
    pay_flow_op_put(flow);
    if (status == PC_OK) status = pay_flow_write_payment(flow, tx);
    if (status == PC_OK) pay_flow_answer(flow, 201, pay_op_json(&flow->op));
    return status;
}

void pay_wallet_refund(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    flow->op.fee = pay_fee_reversal(p->fees, p->captured, p->refunded, p->fees_reversed, flow->op.amount);
    flow->booking_count = pay_book_wallet_refund(flow, flow->op.fee);
    pay_flow_submit(flow, WRITER_CMD_CREATE_TRANSFERS, flow->booking_count, wallet_refund_in_tx, wallet_pay_then);
}

/* ---- withdrawing to a bank account ---- */

void pay_wallet_withdraw(pay_t *pay, const pay_caller_t *caller, const char *wallet_id, const json_t *body,
                         const pay_reply_fn_t *reply) {
    static const char *const fields[] = {"amount", "owner_id", "bank_account", NULL};
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow == NULL) return;
    store_reader_t *reader = pay_reader_acquire(pay);
    wallet_t wallet;
    pc_status status = reader ? wallet_read(reader, wallet_id, &wallet, NULL) : PC_STORE_READ_FAILED;
    if (status == PC_OK && !pay_caller_sees(pay, caller, wallet.merchant_id)) status = PC_NOT_FOUND;
    if (status == PC_OK) status = pay_merchant_find(pay, reader, wallet.merchant_id, &flow->merchant);
    pay_reader_release(pay, reader);
    if (status != PC_OK) {
        pay_flow_fail(flow, status == PC_NOT_FOUND ? PC_WALLET_NOT_FOUND : status, NULL, NULL);
        return;
    }
    pay_op_t *op = &flow->op;
    pay_parse_error_t err = {0};
    char owner_id[PC_ID_SIZE];
    if (!pay_parse_fields(body, fields, "", &err) || !pay_parse_amount(body, "amount", true, "", &op->amount, &err) ||
        !pay_parse_id(body, "owner_id", true, PC_ID_BYTES_MAX, "", owner_id, &err) ||
        !pay_parse_bank_account(body, "bank_account", "", op->routing_number, op->account_number, &err)) {
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return;
    }
    if (strcmp(owner_id, wallet.owner_id) != 0) {
        pay_flow_fail(flow, PC_WALLET_OWNER_MISMATCH, "owner_id", NULL);
        return;
    }
    flow->has_op = true;
    pay_id_new("wd_", op->id);
    op->kind = PAY_OP_WITHDRAW;
    pc_str_copy(op->parent_id, sizeof op->parent_id, wallet.id);
    pc_str_copy(op->wallet_id, sizeof op->wallet_id, wallet.id);
    pc_str_copy(op->merchant_id, sizeof op->merchant_id, wallet.merchant_id);
    memcpy(op->currency, wallet.currency, 4);
    pay_bank_op_start(flow, PAY_ACCOUNT_WALLET, wallet.id, PAY_ACCOUNT_WITHDRAWALS, NULL,
                      PAY_TRANSFER_WITHDRAWAL_RESERVE);
}
