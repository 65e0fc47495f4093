/* gateway/sim_bank.c: the bank simulator: transfers and payouts accepted as pending,
 * decided settle_delay_ms later (settled, or returned R01/R02/R03), and reported by a
 * signed callback (HMAC-SHA256, libsodium) retried with exponential backoff until a
 * 2xx. The worker thread settles and delivers; the lock is never held during a
 * delivery. The callback body is stored once, so every attempt sends the same bytes. */
#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"
#include "paycore/money.h"

typedef struct {
    const char *direction;
    int64_t amount;
    const char *currency;
    const char *routing_number;
    const char *account_number;
    const char *callback_url;
    const char *reference;
} bank_request_t;

static bool account_parse(sim_req_t *req, const json_t *account, bank_request_t *out) {
    static const char *const keys[] = {"routing_number", "account_number", NULL};
    if (account == NULL) {
        sim_reply_invalid(req, "account", "required");
        return false;
    }
    if (!sim_body_only(req, account, "account", keys) ||
        !sim_get_string(req, account, "routing_number", "account.routing_number", true, 9, &out->routing_number) ||
        !sim_get_string(req, account, "account_number", "account.account_number", true, 17, &out->account_number)) {
        return false;
    }
    if (!sim_digits(out->routing_number, 9, 9)) {
        sim_reply_invalid(req, "account.routing_number", "must be 9 digits");
        return false;
    }
    if (!sim_digits(out->account_number, 4, 17)) {
        sim_reply_invalid(req, "account.account_number", "must be 4..17 digits");
        return false;
    }
    return true;
}

static bool transfer_parse(sim_req_t *req, bank_request_t *out) {
    static const char *const keys[] = {"direction", "amount", "currency", "account", "callback_url", "reference", NULL};
    const json_t *body = req->body;
    if (!sim_body_only(req, body, NULL, keys) ||
        !sim_get_string(req, body, "direction", "direction", true, 6, &out->direction)) {
        return false;
    }
    if (strcmp(out->direction, "credit") != 0 && strcmp(out->direction, "debit") != 0) {
        sim_reply_invalid(req, "direction", "must be \"credit\" or \"debit\"");
        return false;
    }
    if (!sim_get_amount(req, body, "amount", "amount", true, &out->amount) ||
        !sim_get_currency(req, body, "currency", "currency", true, &out->currency) ||
        !account_parse(req, json_object_get(body, "account"), out) ||
        !sim_get_string(req, body, "callback_url", "callback_url", true, SIM_URL_BYTES_MAX, &out->callback_url) ||
        !sim_get_string(req, body, "reference", "reference", false, SIM_REF_BYTES_MAX, &out->reference)) {
        return false;
    }
    if (strncmp(out->callback_url, "http://", 7) != 0 && strncmp(out->callback_url, "https://", 8) != 0) {
        sim_reply_invalid(req, "callback_url", "must be an http:// or https:// URL");
        return false;
    }
    return true;
}

static void bank_transfer(sim_req_t *req) {
    sim_t *sim = req->sim;
    bank_request_t request;
    memset(&request, 0, sizeof request);
    if (!transfer_parse(req, &request) || !sim_proceed(req)) return;
    char id[SIM_ID_SIZE];
    sim_make_id(sim, "bt_", "transfer", req->key, id);
    int64_t now_ms = (int64_t)sim_wall_ms();
    bool ok = sim_db_run(&sim->db,
                         "INSERT INTO transfers(id, direction, routing_number, account_number, callback_url, status,"
                         " amount, currency, reference, idempotency_key, due_at_ms)"
                         " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)", "sssssisssi", id, request.direction,
                         request.routing_number, request.account_number, request.callback_url, request.amount,
                         request.currency, request.reference, req->key, now_ms + (int64_t)sim->config.settle_delay_ms) &&
              sim_db_run(&sim->db,
                         "INSERT INTO records(id, kind, idempotency_key, status, response_code, amount, currency,"
                         " merchant_ref, created_at_ms) VALUES (?, 'transfer', ?, 'pending', 'pending', ?, ?, ?, ?)",
                         "ssissi", id, req->key, request.amount, request.currency, request.reference, now_ms);
    if (!ok) return sim_reply_internal(req);
    sim_wake(sim); /* the worker recomputes its next due time */
    sim_reply_json(req, 202, json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "id", id, "status", "pending", "response_code",
                                       "pending", "message", "accepted", "amount", (json_int_t)request.amount,
                                       "currency", request.currency));
}

static void bank_transfer_get(sim_req_t *req) {
    sqlite3_stmt *stmt = sim_db_query(
        &req->sim->db,
        "SELECT id, status, return_code, direction, amount, currency, reference, idempotency_key, callback_attempts,"
        " callback_delivered_at_ms IS NOT NULL, callback_last_status FROM transfers WHERE id = ?", "s", req->params[0]);
    if (stmt == NULL) return sim_reply_internal(req);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        sqlite3_reset(stmt);
        return sim_reply_not_found(req, "no such transfer");
    }
    json_t *last_status = sqlite3_column_type(stmt, 10) == SQLITE_NULL ? json_null()
                                                                       : json_integer(sqlite3_column_int(stmt, 10));
    json_t *callback = json_pack("{s:i,s:b,s:o}", "attempts", sqlite3_column_int(stmt, 8), "delivered",
                                 sqlite3_column_int(stmt, 9), "last_http_status", last_status);
    json_t *answer = json_pack("{s:s,s:s,s:s?,s:s,s:I,s:s,s:s?,s:s,s:o}", "id", sim_col_text(stmt, 0), "status",
                               sim_col_text(stmt, 1), "return_code", (const char *)sqlite3_column_text(stmt, 2),
                               "direction", sim_col_text(stmt, 3), "amount", (json_int_t)sqlite3_column_int64(stmt, 4),
                               "currency", sim_col_text(stmt, 5), "reference",
                               (const char *)sqlite3_column_text(stmt, 6), "idempotency_key", sim_col_text(stmt, 7),
                               "callback", callback);
    sqlite3_reset(stmt);
    sim_reply_json(req, 200, answer);
}

/* The status inquiry's answer for a transfer: the first answer (pending) as stored,
 * brought up to the transfer's outcome once decided, as a bank's status API reports
 * it: "settled", or "returned" with its return code as the response_code. Without
 * this, a transfer whose callback never arrives would read "pending" for ever. */
void sim_bank_status_now(sim_t *sim, json_t *response) {
    const char *id = json_string_value(json_object_get(response, "id"));
    if (id == NULL) return;
    sqlite3_stmt *stmt = sim_db_query(&sim->db, "SELECT status, return_code FROM transfers WHERE id = ?", "s", id);
    if (stmt == NULL) return;
    if (sqlite3_step(stmt) == SQLITE_ROW && strcmp(sim_col_text(stmt, 0), "pending") != 0) {
        bool settled = strcmp(sim_col_text(stmt, 0), "settled") == 0;
        const char *code = settled ? "settled" : sim_col_text(stmt, 1);
        json_object_set_new(response, "status", json_string(sim_col_text(stmt, 0)));
        json_object_set_new(response, "response_code", json_string(code));
        json_object_set_new(response, "return_code", settled ? json_null() : json_string(code));
        json_object_set_new(response, "message", json_string(settled ? "settled" : "returned"));
    }
    sqlite3_reset(stmt);
}

/* ---- accounts ---- */

static bool account_put(sim_req_t *req, const json_t *object, bool replace, json_t **stored) {
    static const char *const keys[] = {"routing_number", "account_number", "balance", "closed", NULL};
    bank_request_t parsed;
    int64_t balance = 0;
    bool closed = false;
    if (!sim_body_only(req, object, NULL, keys)) return false;
    json_t *account = json_pack("{s:O?,s:O?}", "routing_number", json_object_get(object, "routing_number"),
                                "account_number", json_object_get(object, "account_number"));
    bool ok = account_parse(req, account, &parsed) && sim_get_balance(req, object, "balance", &balance) &&
              sim_get_bool(req, object, "closed", "closed", false, &closed);
    const char *sql = replace ? "INSERT INTO bank_accounts(routing_number, account_number, balance, closed)"
                                " VALUES (?, ?, ?, ?) ON CONFLICT(routing_number, account_number) DO UPDATE"
                                " SET balance = excluded.balance, closed = excluded.closed"
                              : "INSERT OR IGNORE INTO bank_accounts(routing_number, account_number, balance, closed)"
                                " VALUES (?, ?, ?, ?)";
    if (ok && !sim_db_run(&req->sim->db, sql, "ssii", parsed.routing_number, parsed.account_number, balance,
                          (int64_t)closed)) {
        sim_reply_internal(req);
        ok = false;
    }
    if (ok && stored != NULL) {
        *stored = json_pack("{s:s,s:s,s:I,s:b}", "routing_number", parsed.routing_number, "account_number",
                            parsed.account_number, "balance", (json_int_t)balance, "closed", closed);
    }
    json_decref(account);
    return ok;
}

static void bank_admin_account(sim_req_t *req) {
    json_t *stored = NULL;
    if (account_put(req, req->body, true, &stored)) sim_reply_json(req, 200, stored);
}

bool sim_bank_data_entry(sim_req_t *req, const json_t *entry) {
    return account_put(req, entry, false, NULL);
}

/* ---- the worker: settle, then call back ---- */

/* The return code of a transfer ("" settles), moving a listed account's balance. */
static bool transfer_decide(sim_t *sim, const char *direction, const char *routing, const char *account,
                            int64_t amount, const char **code) {
    size_t digits = strlen(account);
    const char *suffix = digits >= 4 ? account + digits - 4 : "";
    static const char *const forced[][2] = {{"9901", "R01"}, {"9902", "R02"}, {"9903", "R03"}};
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(suffix, forced[i][0]) == 0) return (*code = forced[i][1]), true;
    }
    *code = "";
    int64_t balance = -1, closed = 0;
    if (!sim_db_int(&sim->db, &balance, -1, "SELECT balance FROM bank_accounts WHERE routing_number = ?"
                    " AND account_number = ?", "ss", routing, account) ||
        !sim_db_int(&sim->db, &closed, 0, "SELECT closed FROM bank_accounts WHERE routing_number = ?"
                    " AND account_number = ?", "ss", routing, account)) {
        return false;
    }
    if (balance < 0) return true; /* not listed: settles */
    bool debit = strcmp(direction, "debit") == 0;
    int64_t after = 0;
    if (closed) *code = "R02";
    else if (debit && amount > balance) *code = "R01";
    else if (!pc_add_i64(balance, debit ? -amount : amount, &after)) *code = "R01"; /* cannot hold more */
    if ((*code)[0] != '\0') return true;
    return sim_db_run(&sim->db, "UPDATE bank_accounts SET balance = ? WHERE routing_number = ? AND account_number = ?",
                      "iss", after, routing, account);
}

typedef struct {
    char id[SIM_ID_SIZE];
    char direction[8];
    char routing[10];
    char account[18];
    int64_t amount;
    char currency[4];
    char key[SIM_ID_SIZE];
    bool has_reference;
    char reference[SIM_REF_BYTES_MAX + 1];
} due_transfer_t;

static void due_read(sqlite3_stmt *row, due_transfer_t *out) {
    snprintf(out->id, sizeof out->id, "%s", sim_col_text(row, 0));
    snprintf(out->direction, sizeof out->direction, "%s", sim_col_text(row, 1));
    snprintf(out->routing, sizeof out->routing, "%s", sim_col_text(row, 2));
    snprintf(out->account, sizeof out->account, "%s", sim_col_text(row, 3));
    out->amount = sqlite3_column_int64(row, 4);
    snprintf(out->currency, sizeof out->currency, "%s", sim_col_text(row, 5));
    snprintf(out->key, sizeof out->key, "%s", sim_col_text(row, 6));
    out->has_reference = sqlite3_column_type(row, 7) != SQLITE_NULL;
    snprintf(out->reference, sizeof out->reference, "%s", sim_col_text(row, 7));
}

/* Settles or returns one transfer and stores its callback body. */
static bool transfer_finish(sim_t *sim, const due_transfer_t *due, int64_t now_ms) {
    const char *code = NULL;
    if (!transfer_decide(sim, due->direction, due->routing, due->account, due->amount, &code)) return false;
    bool settled = code[0] == '\0';
    const char *status = settled ? "settled" : "returned";
    json_t *body = json_pack("{s:s,s:s,s:s,s:o,s:I,s:s,s:o}", "id", due->id, "idempotency_key", due->key, "status",
                             status, "return_code", settled ? json_null() : json_string(code), "amount",
                             (json_int_t)due->amount, "currency", due->currency, "reference",
                             due->has_reference ? json_string(due->reference) : json_null());
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    bool ok = text != NULL &&
              sim_db_run(&sim->db, "UPDATE transfers SET status = ?, return_code = NULLIF(?, ''), callback_body = ?,"
                         " callback_next_ms = ? WHERE id = ?", "sssis", status, code, text, now_ms, due->id) &&
              sim_db_run(&sim->db, "UPDATE records SET status = ?, response_code = ?, settled_at_ms = NULLIF(?, 0)"
                         " WHERE id = ? AND kind = 'transfer'", "ssis", status, settled ? "settled" : code, settled ? now_ms : (int64_t)0,
                         due->id);
    free(text);
    return ok;
}

/* Reads up to SIM_SETTLE_BATCH_MAX due transfers (read fully before any is changed). */
static bool due_list(sim_t *sim, int64_t now_ms, due_transfer_t *out, uint32_t *count) {
    *count = 0;
    sqlite3_stmt *due = sim_db_query(&sim->db,
                                     "SELECT id, direction, routing_number, account_number, amount, currency,"
                                     " idempotency_key, reference FROM transfers WHERE status = 'pending'"
                                     " AND due_at_ms <= ? ORDER BY due_at_ms, id LIMIT ?", "ii", now_ms,
                                     (int64_t)SIM_SETTLE_BATCH_MAX);
    if (due == NULL) return false;
    int rc;
    while ((rc = sqlite3_step(due)) == SQLITE_ROW && *count < SIM_SETTLE_BATCH_MAX) due_read(due, &out[(*count)++]);
    sqlite3_reset(due);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* Decides the transfers whose time has come, in one transaction. */
static void settle_due(sim_t *sim) {
    due_transfer_t due[SIM_SETTLE_BATCH_MAX];
    int64_t now_ms = (int64_t)sim_wall_ms();
    uint32_t count = 0;
    sim_unit_t unit;
    if (!sim_unit_begin(sim, &unit, true)) return;
    bool ok = sim_unit_mark(sim, &unit) && due_list(sim, now_ms, due, &count);
    for (uint32_t i = 0; ok && i < count; i++) ok = transfer_finish(sim, &due[i], now_ms);
    sim_unit_end(sim, &unit, ok);
    if (!sim_unit_wait(sim, &unit) || !ok) obs_log(OBS_LEVEL_ERROR, "bank: settling failed (retried on the next pass)", NULL);
}

typedef struct {
    char id[SIM_ID_SIZE];
    char url[SIM_URL_BYTES_MAX + 1];
    char *body;                   /* owned */
    int64_t attempts;             /* before this one */
} callback_t;

/* The callback due first, if any is due now. */
static bool callback_next(sim_t *sim, int64_t now_ms, callback_t *out) {
    sim_unit_t unit;
    if (!sim_unit_begin(sim, &unit, false)) return false;
    sqlite3_stmt *stmt = sim_db_query(&sim->db,
                                      "SELECT id, callback_url, callback_body, callback_attempts FROM transfers"
                                      " WHERE callback_next_ms <= ? ORDER BY callback_next_ms, id LIMIT 1", "i", now_ms);
    bool found = stmt != NULL && sqlite3_step(stmt) == SQLITE_ROW;
    if (found) {
        snprintf(out->id, sizeof out->id, "%s", sim_col_text(stmt, 0));
        snprintf(out->url, sizeof out->url, "%s", sim_col_text(stmt, 1));
        out->body = pc_strdup(sim_col_text(stmt, 2));
        out->attempts = sqlite3_column_int64(stmt, 3);
        found = out->body != NULL;
    }
    if (stmt != NULL) sqlite3_reset(stmt);
    sim_unit_end(sim, &unit, true);
    if (!sim_unit_wait(sim, &unit) && found) { /* read from a group that then failed */
        free(out->body);
        found = false;
    }
    return found;
}

static size_t discard(char *data, size_t size, size_t count, void *user) {
    return size * count;
}

/* "t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">" */
static void callback_sign(const sim_t *sim, const char *body, char *out, size_t out_bytes) {
    char stamp[24];
    snprintf(stamp, sizeof stamp, "%llu", (unsigned long long)(sim_wall_ms() / 1000));
    const char *secret = sim->config.callback_secret;
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)stamp, strlen(stamp));
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)body, strlen(body));
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_final(&state, mac);
    char hex[2 * crypto_auth_hmacsha256_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    snprintf(out, out_bytes, "Sim-Signature: t=%s,v1=%s", stamp, hex);
    sodium_memzero(&state, sizeof state);
}

/* One delivery; returns the HTTP status, 0 when none came back. */
static long callback_post(sim_t *sim, const callback_t *callback) {
    CURL *curl = curl_easy_init();
    if (curl == NULL) return 0;
    char signature[160], attempt[48];
    callback_sign(sim, callback->body, signature, sizeof signature);
    snprintf(attempt, sizeof attempt, "Sim-Delivery-Attempt: %lld", (long long)callback->attempts + 1);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, signature);
    headers = curl_slist_append(headers, attempt);
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, callback->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, callback->body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)sim->config.callback_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    long status = 0;
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    else obs_logf(OBS_LEVEL_INFO, "bank: callback %s not delivered: %s", callback->id, curl_easy_strerror(rc));
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return status;
}

/* Records a delivery: acknowledged (2xx), or the next attempt after the backoff. */
static void callback_done(sim_t *sim, const callback_t *callback, long http_status) {
    int64_t attempts = callback->attempts + 1;
    int64_t now_ms = (int64_t)sim_wall_ms();
    bool acknowledged = http_status >= 200 && http_status < 300;
    uint64_t wait_ms = sim->config.callback_retry_base_ms;
    for (int64_t i = 1; i < attempts && wait_ms < sim->config.callback_retry_max_ms; i++) wait_ms *= 2;
    if (wait_ms > sim->config.callback_retry_max_ms) wait_ms = sim->config.callback_retry_max_ms;
    sim_unit_t unit;
    bool begun = sim_unit_begin(sim, &unit, true);
    bool ok = begun && sim_db_run(&sim->db,
                         "UPDATE transfers SET callback_attempts = ?, callback_last_status = NULLIF(?, 0),"
                         " callback_delivered_at_ms = CASE WHEN ? THEN ? END,"
                         " callback_next_ms = CASE WHEN ? THEN NULL ELSE ? END WHERE id = ?", "iiiiiis", attempts,
                         (int64_t)http_status, (int64_t)acknowledged, now_ms, (int64_t)acknowledged,
                         now_ms + (int64_t)wait_ms, callback->id);
    if (begun) {
        sim_unit_end(sim, &unit, true);
        ok = sim_unit_wait(sim, &unit) && ok;
    }
    if (!ok) obs_logf(OBS_LEVEL_ERROR, "bank: callback %s: attempt not recorded", callback->id);
    if (!acknowledged) {
        obs_logf(OBS_LEVEL_INFO, "bank: callback %s attempt %lld got %ld; next in %llu ms", callback->id,
                 (long long)attempts, http_status, (unsigned long long)wait_ms);
    }
}

/* Monotonic ms of the next due transfer or callback (UINT64_MAX: none). */
static uint64_t next_due(sim_t *sim) {
    int64_t due_ms = INT64_MAX;
    sim_unit_t unit;
    bool begun = sim_unit_begin(sim, &unit, false);
    bool ok = begun && sim_db_int(&sim->db, &due_ms, INT64_MAX,
                         "SELECT min(t) FROM (SELECT min(due_at_ms) AS t FROM transfers WHERE status = 'pending'"
                         " UNION ALL SELECT min(callback_next_ms) FROM transfers WHERE callback_next_ms IS NOT NULL)",
                         "");
    if (begun) {
        sim_unit_end(sim, &unit, true);
        (void)sim_unit_wait(sim, &unit);
    }
    if (!ok) return sim_mono_ms() + 1000;
    if (due_ms == INT64_MAX) return UINT64_MAX;
    int64_t wait_ms = due_ms - (int64_t)sim_wall_ms();
    return sim_mono_ms() + (uint64_t)(wait_ms > 0 ? wait_ms : 0);
}

uint64_t sim_bank_work(sim_t *sim) {
    settle_due(sim);
    for (int i = 0; i < SIM_CALLBACKS_PER_PASS && !atomic_load(&sim->stopping); i++) {
        callback_t callback;
        if (!callback_next(sim, (int64_t)sim_wall_ms(), &callback)) return next_due(sim);
        long http_status = callback_post(sim, &callback);
        callback_done(sim, &callback, http_status);
        free(callback.body);
    }
    return sim_mono_ms(); /* more may be due: come back at once */
}

const sim_route_t sim_bank_routes[] = {
    {"POST", "/v1/transfers", bank_transfer, SIM_ROUTE_OPERATION, "transfer"},
    {"GET", "/v1/transfers/{}", bank_transfer_get, SIM_ROUTE_INQUIRY, NULL},
    {"POST", "/v1/admin/accounts", bank_admin_account, SIM_ROUTE_ADMIN, NULL},
};
const uint32_t sim_bank_route_count = sizeof sim_bank_routes / sizeof sim_bank_routes[0];
