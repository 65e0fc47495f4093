/* gateway/sim_wallet.c: the wallet simulator: stored-value accounts with balances,
 * instant payments approved or declined (insufficient balance, frozen, unknown
 * account, other currency), refunds bounded by the payment. Handlers run under the
 * simulator's lock inside the request's record transaction (sim_server.c). */
#include <stdio.h>
#include <string.h>

#include "gateway/sim_internal.h"

typedef struct {
    char currency[4];
    int64_t balance;
    bool frozen;
} wallet_account_t;

typedef struct {
    char id[SIM_ID_SIZE];
    char wallet_id[SIM_ID_SIZE];
    char status[16];
    char response_code[24];
    int64_t amount;
    char currency[4];
    char merchant_ref[SIM_REF_BYTES_MAX + 1];
    int64_t refunded_total;
} wallet_payment_t;

static const char *code_message(const char *code) {
    if (strcmp(code, "approved") == 0) return "approved";
    if (strcmp(code, "insufficient_balance") == 0) return "insufficient balance";
    if (strcmp(code, "account_frozen") == 0) return "account frozen";
    if (strcmp(code, "account_not_found") == 0) return "no such account";
    if (strcmp(code, "currency_mismatch") == 0) return "the account holds another currency";
    return "refund above what is left of the payment";
}

static int account_load(sim_t *sim, const char *id, wallet_account_t *out) {
    sqlite3_stmt *stmt = sim_db_query(&sim->db, "SELECT currency, balance, frozen FROM wallet_accounts WHERE id = ?",
                                      "s", id);
    if (stmt == NULL) return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        snprintf(out->currency, sizeof out->currency, "%s", sim_col_text(stmt, 0));
        out->balance = sqlite3_column_int64(stmt, 1);
        out->frozen = sqlite3_column_int(stmt, 2) != 0;
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int payment_load(sim_t *sim, const char *id, wallet_payment_t *out) {
    sqlite3_stmt *stmt = sim_db_query(
        &sim->db,
        "SELECT id, parent_id, status, response_code, amount, currency, coalesce(merchant_ref, ''),"
        " (SELECT coalesce(sum(r.amount), 0) FROM records r WHERE r.parent_id = p.id AND r.kind = 'refund'"
        "  AND r.status = 'approved') FROM records p WHERE p.id = ? AND p.kind = 'payment'", "s", id);
    if (stmt == NULL) return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        snprintf(out->id, sizeof out->id, "%s", sim_col_text(stmt, 0));
        snprintf(out->wallet_id, sizeof out->wallet_id, "%s", sim_col_text(stmt, 1));
        snprintf(out->status, sizeof out->status, "%s", sim_col_text(stmt, 2));
        snprintf(out->response_code, sizeof out->response_code, "%s", sim_col_text(stmt, 3));
        out->amount = sqlite3_column_int64(stmt, 4);
        snprintf(out->currency, sizeof out->currency, "%s", sim_col_text(stmt, 5));
        snprintf(out->merchant_ref, sizeof out->merchant_ref, "%s", sim_col_text(stmt, 6));
        out->refunded_total = sqlite3_column_int64(stmt, 7);
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static bool record_insert(sim_req_t *req, const char *id, const char *kind, const char *parent_id, const char *code,
                          int64_t amount, const char *currency, const char *merchant_ref) {
    bool approved = strcmp(code, "approved") == 0;
    int64_t now_ms = (int64_t)sim_wall_ms();
    return sim_db_run(&req->sim->db,
                      "INSERT INTO records(id, kind, parent_id, idempotency_key, status, response_code, amount,"
                      " currency, merchant_ref, created_at_ms, settled_at_ms)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), ?, NULLIF(?, 0))",
                      "ssssssissii", id, kind, parent_id, req->key, approved ? "approved" : "declined", code,
                      amount, currency, merchant_ref ? merchant_ref : "", now_ms, approved ? now_ms : (int64_t)0);
}

static bool balance_add(sim_t *sim, const char *wallet_id, int64_t delta, int64_t *balance_after) {
    return sim_db_run(&sim->db, "UPDATE wallet_accounts SET balance = balance + ? WHERE id = ?", "is", delta,
                      wallet_id) &&
           sim_db_int(&sim->db, balance_after, 0, "SELECT balance FROM wallet_accounts WHERE id = ?", "s", wallet_id);
}

/* Decides a payment: the first rule that matches answers (docs/channels.md). */
static bool payment_decide(sim_t *sim, const char *wallet_id, int64_t amount, const char *currency,
                           const char **code) {
    wallet_account_t account;
    int found = account_load(sim, wallet_id, &account);
    if (found < 0) return false;
    *code = found == 0                              ? "account_not_found"
            : account.frozen                        ? "account_frozen"
            : strcmp(account.currency, currency) != 0 ? "currency_mismatch"
            : amount > account.balance              ? "insufficient_balance"
                                                    : "approved";
    return true;
}

static void wallet_payment(sim_req_t *req) {
    static const char *const keys[] = {"wallet_id", "amount", "currency", "merchant_ref", NULL};
    sim_t *sim = req->sim;
    const char *wallet_id, *currency, *merchant_ref;
    int64_t amount = 0;
    if (!sim_body_only(req, req->body, NULL, keys) || !sim_get_id(req, req->body, "wallet_id", "wallet_id", &wallet_id) ||
        !sim_get_amount(req, req->body, "amount", "amount", true, &amount) ||
        !sim_get_currency(req, req->body, "currency", "currency", true, &currency) ||
        !sim_get_string(req, req->body, "merchant_ref", "merchant_ref", false, SIM_REF_BYTES_MAX, &merchant_ref) ||
        !sim_proceed(req)) {
        return;
    }
    char id[SIM_ID_SIZE];
    sim_make_id(sim, "wp_", "payment", req->key, id);
    const char *code = NULL;
    int64_t balance_after = 0;
    bool ok = payment_decide(sim, wallet_id, amount, currency, &code) &&
              record_insert(req, id, "payment", wallet_id, code, amount, currency, merchant_ref);
    bool approved = ok && strcmp(code, "approved") == 0;
    if (approved) ok = balance_add(sim, wallet_id, -amount, &balance_after);
    if (!ok) return sim_reply_internal(req);
    json_t *answer = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s}", "id", id, "status", approved ? "approved" : "declined",
                               "response_code", code, "message", code_message(code), "wallet_id", wallet_id,
                               "amount", (json_int_t)amount, "currency", currency);
    if (approved) json_object_set_new(answer, "balance_after", json_integer(balance_after));
    sim_reply_json(req, 200, answer);
}

static bool payment_from_path(sim_req_t *req, wallet_payment_t *payment) {
    int found = payment_load(req->sim, req->params[0], payment);
    if (found < 0) sim_reply_internal(req);
    if (found == 0) sim_reply_not_found(req, "no such payment");
    return found == 1;
}

static bool refund_parse(sim_req_t *req, const wallet_payment_t *payment, int64_t *amount, const char **merchant_ref) {
    static const char *const keys[] = {"amount", "currency", "merchant_ref", NULL};
    const char *currency = NULL;
    if (!sim_body_only(req, req->body, NULL, keys) || !sim_get_amount(req, req->body, "amount", "amount", true, amount) ||
        !sim_get_currency(req, req->body, "currency", "currency", false, &currency) ||
        !sim_get_string(req, req->body, "merchant_ref", "merchant_ref", false, SIM_REF_BYTES_MAX, merchant_ref)) {
        return false;
    }
    if (currency != NULL && strcmp(currency, payment->currency) != 0) {
        sim_reply_invalid(req, "currency", "differs from the payment's currency");
        return false;
    }
    if (*merchant_ref == NULL) *merchant_ref = payment->merchant_ref;
    return true;
}

static void wallet_refund(sim_req_t *req) {
    sim_t *sim = req->sim;
    wallet_payment_t payment;
    int64_t amount = 0;
    const char *merchant_ref = NULL;
    if (!payment_from_path(req, &payment) || !refund_parse(req, &payment, &amount, &merchant_ref) || !sim_proceed(req)) {
        return;
    }
    char id[SIM_ID_SIZE];
    sim_make_id(sim, "wr_", "refund", req->key, id);
    bool approved = strcmp(payment.status, "approved") == 0 && amount <= payment.amount - payment.refunded_total;
    const char *code = approved ? "approved" : "exceeds_refundable";
    int64_t balance_after = 0;
    bool ok = record_insert(req, id, "refund", payment.id, code, amount, payment.currency, merchant_ref);
    if (ok && approved) {
        payment.refunded_total += amount;
        ok = balance_add(sim, payment.wallet_id, amount, &balance_after);
    }
    if (!ok) return sim_reply_internal(req);
    json_t *answer = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:I}", "id", id, "payment_id", payment.id, "status",
                               approved ? "approved" : "declined", "response_code", code, "message",
                               code_message(code), "amount", (json_int_t)amount, "currency", payment.currency,
                               "refunded_total", (json_int_t)payment.refunded_total);
    if (approved) json_object_set_new(answer, "balance_after", json_integer(balance_after));
    sim_reply_json(req, 200, answer);
}

static void wallet_payment_get(sim_req_t *req) {
    wallet_payment_t payment;
    if (!payment_from_path(req, &payment)) return;
    sim_reply_json(req, 200, json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:I,s:s}", "id", payment.id, "status",
                                       payment.status, "response_code", payment.response_code, "wallet_id",
                                       payment.wallet_id, "amount", (json_int_t)payment.amount, "currency",
                                       payment.currency, "refunded_total", (json_int_t)payment.refunded_total,
                                       "merchant_ref", payment.merchant_ref));
}

static json_t *account_json(const char *id, const wallet_account_t *account) {
    return json_pack("{s:s,s:s,s:I,s:b}", "id", id, "currency", account->currency, "balance",
                     (json_int_t)account->balance, "frozen", account->frozen);
}

static void wallet_account_get(sim_req_t *req) {
    wallet_account_t account;
    int found = account_load(req->sim, req->params[0], &account);
    if (found <= 0) return found < 0 ? sim_reply_internal(req) : sim_reply_not_found(req, "no such account");
    sim_reply_json(req, 200, account_json(req->params[0], &account));
}

/* Parses an account (admin request or data entry) and writes it. */
static bool account_put(sim_req_t *req, const json_t *object, bool replace, const char **id, wallet_account_t *account) {
    static const char *const keys[] = {"id", "currency", "balance", "frozen", NULL};
    const char *currency;
    if (!sim_body_only(req, object, NULL, keys) || !sim_get_id(req, object, "id", "id", id) ||
        !sim_get_currency(req, object, "currency", "currency", true, &currency) ||
        !sim_get_balance(req, object, "balance", &account->balance) ||
        !sim_get_bool(req, object, "frozen", "frozen", false, &account->frozen)) {
        return false;
    }
    snprintf(account->currency, sizeof account->currency, "%s", currency);
    const char *sql = replace ? "INSERT INTO wallet_accounts(id, currency, balance, frozen) VALUES (?, ?, ?, ?)"
                                " ON CONFLICT(id) DO UPDATE SET currency = excluded.currency,"
                                " balance = excluded.balance, frozen = excluded.frozen"
                              : "INSERT OR IGNORE INTO wallet_accounts(id, currency, balance, frozen) VALUES (?, ?, ?, ?)";
    if (sim_db_run(&req->sim->db, sql, "ssii", *id, currency, account->balance, (int64_t)account->frozen)) return true;
    sim_reply_internal(req);
    return false;
}

static void wallet_admin_account(sim_req_t *req) {
    const char *id;
    wallet_account_t account;
    if (account_put(req, req->body, true, &id, &account)) sim_reply_json(req, 200, account_json(id, &account));
}

bool sim_wallet_data_entry(sim_req_t *req, const json_t *entry) {
    const char *id;
    wallet_account_t account;
    return account_put(req, entry, false, &id, &account);
}

const sim_route_t sim_wallet_routes[] = {
    {"POST", "/v1/payments", wallet_payment, SIM_ROUTE_OPERATION, "payment"},
    {"GET", "/v1/payments/{}", wallet_payment_get, SIM_ROUTE_INQUIRY, NULL},
    {"POST", "/v1/payments/{}/refunds", wallet_refund, SIM_ROUTE_OPERATION, "refund"},
    {"GET", "/v1/accounts/{}", wallet_account_get, SIM_ROUTE_INQUIRY, NULL},
    {"POST", "/v1/admin/accounts", wallet_admin_account, SIM_ROUTE_ADMIN, NULL},
};
const uint32_t sim_wallet_route_count = sizeof sim_wallet_routes / sizeof sim_wallet_routes[0];
