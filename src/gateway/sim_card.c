/* gateway/sim_card.c: the card simulator (acquirer + network + issuer in one). ISO 8583
 * response codes; test cards that force each code; cardholders with balances and holds
 * so that 51 happens by itself; 3-D Secure challenges; partial captures, voids,
 * refunds bounded by what was captured. Every handler runs under the simulator's lock
 * inside the request's record transaction (sim_server.c). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"

#define CARD_NUMBER_SIZE 20
#define CARD_3DS_PREFIX "4000002760"

typedef struct {
    char id[SIM_ID_SIZE];
    char number[CARD_NUMBER_SIZE];
    char status[24];              /* approved, declined, challenge_required, voided */
    char response_code[4];
    int64_t amount;
    char currency[4];
    int64_t captured_total;
    int64_t refunded_total;
    char challenge_state[12];     /* pending, completed, failed, or "" */
    bool capture_requested;
    char merchant_ref[SIM_REF_BYTES_MAX + 1];
    int64_t row;                  /* its row in authorizations, and its record's in records */
    int64_t record_row;
} card_auth_t;

/* Numbers that force one code: 4000 0000 0000 0RRc forces RR. */
static const struct {
    const char *number;
    const char *code;
} forcing_cards[] = {
    {"4000000000000002", "00"}, {"4000000000000051", "05"}, {"4000000000000143", "14"},
    {"4000000000000515", "51"}, {"4000000000000549", "54"}, {"4000000000000572", "57"},
    {"4000000000000614", "61"}, {"4000000000000911", "91"}, {"4000000000000960", "96"},
};

/* Numbers that approve without a balance (demo, benchmarks). */
static const char *const unlimited_cards[] = {SIM_CARD_UNLIMITED_VISA, SIM_CARD_UNLIMITED_TEST};

static const char *code_message(const char *code) {
    static const struct { const char *code, *message; } messages[] = {
        {"00", "approved"}, {"05", "do not honour"}, {"14", "invalid card number"},
        {"51", "insufficient funds"}, {"54", "expired card"}, {"57", "transaction not permitted"},
        {"61", "exceeds amount limit"}, {"91", "issuer unavailable"}, {"96", "system malfunction"},
        {"1A", "additional customer authentication required"}};
    for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++) {
        if (strcmp(messages[i].code, code) == 0) return messages[i].message;
    }
    return "declined";
}

static bool luhn_valid(const char *number) {
    size_t digits = strlen(number);
    int sum = 0;
    for (size_t i = 0; i < digits; i++) {
        int digit = number[digits - 1 - i] - '0';
        if (i % 2 == 1) digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
        sum += digit;
    }
    return sum % 10 == 0;
}

static const char *forced_code(const char *number) {
    for (size_t i = 0; i < sizeof forcing_cards / sizeof forcing_cards[0]; i++) {
        if (strcmp(forcing_cards[i].number, number) == 0) return forcing_cards[i].code;
    }
    return NULL;
}

static bool card_unlimited(const char *number) {
    for (size_t i = 0; i < sizeof unlimited_cards / sizeof unlimited_cards[0]; i++) {
        if (strcmp(unlimited_cards[i], number) == 0) return true;
    }
    return false;
}

/* Cards whose authorization asks for a 3-D Secure challenge (1A). */
static bool card_challenged(const char *number) {
    return strncmp(number, CARD_3DS_PREFIX, strlen(CARD_3DS_PREFIX)) == 0;
}

static bool card_expired(int64_t exp_month, int64_t exp_year) {
    time_t now = (time_t)(sim_wall_ms() / 1000);
    struct tm utc;
    gmtime_r(&now, &utc);
    int64_t this_month = (int64_t)(utc.tm_year + 1900) * 12 + utc.tm_mon;
    return exp_year * 12 + (exp_month - 1) < this_month;
}

/* ---- cardholders ----
 * In memory (sim_holders.c): a request decides and moves money there; the rows it
 * writes are its authorization's and records' (and a new cardholder's). */

static sim_holder_t cardholder_defaults(const sim_t *sim) {
    return (sim_holder_t){.balance_minor = sim->config.card_balance_minor, .held_minor = 0,
                          .amount_limit_minor = sim->config.card_amount_limit_minor};
}

/* Inserts a cardholder's row with where it starts, then keeps it in memory; NULL when
 * the record fails. */
static sim_holder_t *cardholder_insert(sim_t *sim, const char *number, const char *currency,
                                       const sim_holder_t *opening) {
    if (!sim_db_run(&sim->db, "INSERT INTO cardholder_openings(number, currency, opening_balance, opening_held,"
                    " amount_limit) VALUES (?, ?, ?, ?, ?)", "ssiii", number, currency, opening->balance_minor,
                    opening->held_minor, opening->amount_limit_minor)) {
        return NULL;
    }
    return sim_holders_add(&sim->db, number, currency, opening);
}

/* The cardholders in memory, or NULL (logged) when they could not be loaded. */
static sim_db_t *holders_ready(sim_t *sim) {
    if (sim_holders_loaded(&sim->db)) return &sim->db;
    obs_log(OBS_LEVEL_ERROR, "simulator record: the cardholders are not loaded", NULL);
    return NULL;
}

/* The cardholder of 'number' in 'currency', created with the defaults when the record
 * has none; NULL when the record fails. */
static sim_holder_t *cardholder_get(sim_t *sim, const char *number, const char *currency) {
    sim_db_t *db = holders_ready(sim);
    if (db == NULL) return NULL;
    sim_holder_t *holder = sim_holders_find(db, number, currency);
    if (holder != NULL) return holder;
    sim_holder_t opening = cardholder_defaults(sim);
    return cardholder_insert(sim, number, currency, &opening);
}

/* Moves a cardholder's balance and holds (unlimited cards have none, nor has a number
 * without a cardholder), as its authorization's row now says: called only after the
 * request wrote a row (sim_internal.h, "card: cardholders"). */
static bool cardholder_move(sim_t *sim, const char *number, const char *currency, int64_t balance_delta,
                            int64_t held_delta) {
    if (card_unlimited(number)) return true;
    sim_db_t *db = holders_ready(sim);
    if (db == NULL) return false;
    sim_holder_t *holder = sim_holders_find(db, number, currency);
    if (holder != NULL) {
        holder->balance_minor += balance_delta;
        holder->held_minor += held_delta;
    }
    return true;
}

/* ---- authorizations in the record ---- */

/* The columns auth_fill reads, the row's rowid last. */
#define AUTH_COLUMNS                                                                                            \
    "id, card_number, status, response_code, amount, currency, captured_total, refunded_total,"                \
    " coalesce(challenge_state, ''), capture_requested, coalesce(merchant_ref, ''), rowid"

/* Fills 'out' from a row of AUTH_COLUMNS (its record's row is the caller's to set). */
static void auth_fill(sqlite3_stmt *stmt, card_auth_t *out) {
    memset(out, 0, sizeof(*out));
    pc_str_copy(out->id, sizeof out->id, sim_col_text(stmt, 0));
    pc_str_copy(out->number, sizeof out->number, sim_col_text(stmt, 1));
    pc_str_copy(out->status, sizeof out->status, sim_col_text(stmt, 2));
    pc_str_copy(out->response_code, sizeof out->response_code, sim_col_text(stmt, 3));
    out->amount = sqlite3_column_int64(stmt, 4);
    pc_str_copy(out->currency, sizeof out->currency, sim_col_text(stmt, 5));
    out->captured_total = sqlite3_column_int64(stmt, 6);
    out->refunded_total = sqlite3_column_int64(stmt, 7);
    pc_str_copy(out->challenge_state, sizeof out->challenge_state, sim_col_text(stmt, 8));
    out->capture_requested = sqlite3_column_int(stmt, 9) != 0;
    pc_str_copy(out->merchant_ref, sizeof out->merchant_ref, sim_col_text(stmt, 10));
    out->row = sqlite3_column_int64(stmt, 11);
}

/* Reads the authorization at 'row' if its id is 'id': 1 found, 0 not, -1 the record failed. */
static int auth_read_row(sim_t *sim, int64_t row, const char *id, card_auth_t *out) {
    sqlite3_stmt *stmt = sim_db_query(&sim->db, "SELECT " AUTH_COLUMNS " FROM authorizations WHERE rowid = ?", "i", row);
    if (stmt == NULL) return -1;
    int rc = sqlite3_step(stmt);
    bool same = rc == SQLITE_ROW && strcmp(sim_col_text(stmt, 0), id) == 0;
    if (same) auth_fill(stmt, out);
    sqlite3_reset(stmt);
    return same ? 1 : rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* ---- recent authorizations, in memory ---- */

/* A capture follows its authorization within moments: copies of the last rows
 * written or read, one slot per id hash (AUTH_RECENT_SLOTS, ~1.3 MiB), spare it the
 * row's SELECT. A copy is taken only of what the record holds under the lock
 * (after the statement that wrote it, or as read), a statement that changes a row
 * either refreshes its copy or drops it, and a rollback (sim_db_t.rollbacks) makes
 * every copy stale: what a copy answers is what the row would. */
#define AUTH_RECENT_SLOTS 4096u

struct sim_auth_recent {
    struct {
        uint64_t epoch;           /* the record's rollbacks + 1 when taken; anything else: empty or stale */
        card_auth_t auth;
    } slots[AUTH_RECENT_SLOTS];
};

static uint32_t auth_recent_slot(const char *id) {
    uint32_t h = UINT32_C(2166136261);
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) h = (h ^ *p) * UINT32_C(16777619);
    return (h ^ (h >> 16)) & (AUTH_RECENT_SLOTS - 1);
}

/* Keeps a copy of 'auth' as the record now holds it (none without memory: rows are
 * then read each time). */
static void auth_recent_put(sim_t *sim, const card_auth_t *auth) {
    sim_db_t *db = &sim->db;
    if (db->auth_recent == NULL && (db->auth_recent = calloc(1, sizeof *db->auth_recent)) == NULL) return;
    uint32_t at = auth_recent_slot(auth->id);
    db->auth_recent->slots[at].auth = *auth;
    db->auth_recent->slots[at].epoch = db->rollbacks + 1;
}

/* Forgets the copy of 'id' (its row is about to change in a way no copy follows). */
static void auth_recent_drop(sim_t *sim, const char *id) {
    if (sim->db.auth_recent == NULL) return;
    uint32_t at = auth_recent_slot(id);
    if (strcmp(sim->db.auth_recent->slots[at].auth.id, id) == 0) sim->db.auth_recent->slots[at].epoch = 0;
}

static bool auth_recent_get(const sim_t *sim, const char *id, card_auth_t *out) {
    const sim_db_t *db = &sim->db;
    if (db->auth_recent == NULL) return false;
    uint32_t at = auth_recent_slot(id);
    if (db->auth_recent->slots[at].epoch != db->rollbacks + 1 || strcmp(db->auth_recent->slots[at].auth.id, id) != 0) {
        return false;
    }
    *out = db->auth_recent->slots[at].auth;
    return true;
}

/* An authorization by its id: a recent copy, or through the record's map of ids
 * (sim_db_auth_*): 1 found, 0 not, -1 the record failed. */
static int auth_load(sim_t *sim, const char *id, card_auth_t *out) {
    if (auth_recent_get(sim, id, out)) return 1;
    uint32_t cursor = 0;
    int64_t row = 0, record_row = 0;
    while (sim_db_auth_next(&sim->db, id, &cursor, &row, &record_row)) {
        int found = auth_read_row(sim, row, id, out);
        if (found != 0) {
            out->record_row = record_row;
            if (found == 1) auth_recent_put(sim, out);
            return found;
        }
    }
    return 0;
}

/* An authorization by its challenge's id: 1 found, 0 not, -1 the record failed. */
static int auth_load_challenge(sim_t *sim, const char *challenge_id, card_auth_t *out) {
    sqlite3_stmt *stmt = sim_db_query(&sim->db, "SELECT " AUTH_COLUMNS " FROM authorizations WHERE challenge_id = ?",
                                      "s", challenge_id);
    if (stmt == NULL) return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) auth_fill(stmt, out);
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW) return rc == SQLITE_DONE ? 0 : -1;
    uint32_t cursor = 0;
    int64_t row = 0, record_row = 0;
    while (sim_db_auth_next(&sim->db, out->id, &cursor, &row, &record_row)) {
        if (row != out->row) continue;
        out->record_row = record_row;
        return 1;
    }
    return -1; /* in the table but not in the map: the map failed to load */
}

/* Loads the authorization named in the path, or answers 404 / 500. */
static bool auth_from_path(sim_req_t *req, card_auth_t *auth) {
    int found = auth_load(req->sim, req->params[0], auth);
    if (found < 0) sim_reply_internal(req);
    if (found == 0) sim_reply_not_found(req, "no such authorization");
    return found == 1;
}

/* One row of 'records'; an approved capture or refund settles now. */
static bool record_insert(sim_req_t *req, const char *id, const char *kind, const char *parent_id,
                          const char *status, const char *code, int64_t amount, const char *currency,
                          const char *merchant_ref, bool settles) {
    int64_t now_ms = (int64_t)sim_wall_ms();
    return sim_db_run(&req->sim->db,
                      "INSERT INTO records(id, kind, parent_id, idempotency_key, status, response_code, amount,"
                      " currency, merchant_ref, created_at_ms, settled_at_ms)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), ?, NULLIF(?, 0))",
                      "ssssssissii", id, kind, parent_id, req->key, status, code, amount, currency,
                      merchant_ref ? merchant_ref : "", now_ms, settles ? now_ms : (int64_t)0);
}

/* The answer to an operation on an authorization (capture, void, refund); a capture
 * or refund adds its running total. */
static void operation_answer(sim_answer_t *a, const char *id, const card_auth_t *auth, const char *code,
                             int64_t amount) {
    sim_answer_begin(a);
    sim_answer_str(a, "id", id);
    sim_answer_str(a, "authorization_id", auth->id);
    sim_answer_str(a, "status", strcmp(code, "00") == 0 ? "approved" : "declined");
    sim_answer_str(a, "response_code", code);
    sim_answer_str(a, "message", code_message(code));
    sim_answer_int(a, "amount", amount);
    sim_answer_str(a, "currency", auth->currency);
}

static const char *auth_status(const char *code) {
    if (strcmp(code, "00") == 0) return "approved";
    if (strcmp(code, "1A") == 0) return "challenge_required";
    return "declined";
}

/* Answers an authorization (and its challenge's completion). */
static void reply_auth(sim_req_t *req, const card_auth_t *auth, const char *message, const char *capture_id) {
    sim_t *sim = req->sim;
    const char *code = auth->response_code;
    sim_answer_t a;
    sim_answer_begin(&a);
    sim_answer_str(&a, "id", auth->id);
    sim_answer_str(&a, "status", auth_status(code));
    sim_answer_str(&a, "response_code", code);
    sim_answer_str(&a, "message", message ? message : code_message(code));
    sim_answer_int(&a, "amount", auth->amount);
    sim_answer_str(&a, "currency", auth->currency);
    if (strcmp(code, "00") == 0) {
        char approval[SIM_ID_SIZE];
        sim_make_id(sim, "", "approval", auth->id, approval);
        approval[6] = '\0';
        for (int i = 0; i < 6; i++) approval[i] = (char)toupper((unsigned char)approval[i]);
        sim_answer_str(&a, "approval_code", approval);
    }
    if (strcmp(code, "1A") == 0) {
        char challenge_id[SIM_ID_SIZE];
        sim_make_id(sim, "ch_", "challenge", auth->id, challenge_id);
        sim_answer_str(&a, "challenge_id", challenge_id);
    }
    if (capture_id != NULL) {
        sim_answer_int(&a, "captured_amount", auth->amount);
        sim_answer_str(&a, "capture_id", capture_id);
    }
    sim_reply_answer(req, 200, &a);
}

/* An approval moves money: a hold, or (capture requested) the whole amount at once,
 * recorded as a capture that settles now. 'capture_id' is set in that case.
 * 'total_written': the authorization's row was inserted captured (a sale: one write
 * of its row, not an insert and an update). Called after the authorization's row was
 * written. */
static bool auth_apply_approval(sim_req_t *req, card_auth_t *auth, bool total_written, char capture_id[SIM_ID_SIZE]) {
    sim_t *sim = req->sim;
    capture_id[0] = '\0';
    bool capture = auth->capture_requested;
    if (!cardholder_move(sim, auth->number, auth->currency, capture ? -auth->amount : 0, capture ? 0 : auth->amount)) {
        return false;
    }
    if (!capture) return true;
    sim_make_id(sim, "cap_", "capture", auth->id, capture_id);
    auth->captured_total = auth->amount;
    return record_insert(req, capture_id, "capture", auth->id, "approved", "00", auth->amount, auth->currency,
                         auth->merchant_ref, true) &&
           (total_written || sim_db_run(&sim->db, "UPDATE authorizations SET captured_total = ? WHERE rowid = ?", "ii",
                                        auth->captured_total, auth->row));
}

/* 51 or 00 by the cardholder's available balance (NULL: an unlimited card). */
static const char *balance_code(int64_t amount, const sim_holder_t *holder) {
    return holder != NULL && amount > holder->balance_minor - holder->held_minor ? "51" : "00";
}

static bool balance_decide(sim_t *sim, const card_auth_t *auth, const char **code) {
    const sim_holder_t *holder = NULL;
    if (!card_unlimited(auth->number) && (holder = cardholder_get(sim, auth->number, auth->currency)) == NULL) {
        return false;
    }
    *code = balance_code(auth->amount, holder);
    return true;
}

typedef struct {
    int64_t amount;
    const char *currency;
    const char *number;
    int64_t exp_month;
    int64_t exp_year;
    const char *merchant_ref;
    bool capture;
} auth_request_t;

static bool card_parse(sim_req_t *req, const json_t *card, auth_request_t *out) {
    static const char *const keys[] = {"number", "exp_month", "exp_year", "cvc", NULL};
    const char *cvc = NULL;
    if (card == NULL) {
        sim_reply_invalid(req, "card", "required");
        return false;
    }
    if (!sim_body_only(req, card, "card", keys) ||
        !sim_get_string(req, card, "number", "card.number", true, 19, &out->number)) {
        return false;
    }
    if (!sim_digits(out->number, 12, 19)) {
        sim_reply_invalid(req, "card.number", "must be a string of 12..19 digits");
        return false;
    }
    if (!sim_get_int(req, card, "exp_month", "card.exp_month", 1, 12, &out->exp_month) ||
        !sim_get_int(req, card, "exp_year", "card.exp_year", 2000, 2099, &out->exp_year) ||
        !sim_get_string(req, card, "cvc", "card.cvc", false, 4, &cvc)) {
        return false;
    }
    if (cvc != NULL && !sim_digits(cvc, 3, 4)) {
        sim_reply_invalid(req, "card.cvc", "must be 3 or 4 digits");
        return false;
    }
    return true;
}

static bool authorize_parse(sim_req_t *req, auth_request_t *out) {
    static const char *const keys[] = {"amount", "currency", "card", "merchant_ref", "capture", NULL};
    const json_t *body = req->body;
    return sim_body_only(req, body, NULL, keys) &&
           sim_get_amount(req, body, "amount", "amount", true, &out->amount) &&
           sim_get_currency(req, body, "currency", "currency", true, &out->currency) &&
           card_parse(req, json_object_get(body, "card"), out) &&
           sim_get_string(req, body, "merchant_ref", "merchant_ref", false, SIM_REF_BYTES_MAX, &out->merchant_ref) &&
           sim_get_bool(req, body, "capture", "capture", false, &out->capture);
}

/* Rules 4-6 of docs/channels.md ("Authorize"): the limit, a challenge, the balance
 * ('holder' NULL: an unlimited card). */
static const char *holder_code(const auth_request_t *request, int64_t amount_limit_minor, const sim_holder_t *holder) {
    if (request->amount > amount_limit_minor) return "61";
    if (card_challenged(request->number)) return "1A";
    return balance_code(request->amount, holder);
}

/* Rules 4-6 with the cardholder in memory (created with the defaults when the record
 * has none); the approval's move is auth_apply_approval's, once the row is written. */
static bool holder_decide(sim_t *sim, const auth_request_t *request, const char **code) {
    if (card_unlimited(request->number)) {
        *code = holder_code(request, sim->config.card_amount_limit_minor, NULL);
        return true;
    }
    const sim_holder_t *holder = cardholder_get(sim, request->number, request->currency);
    if (holder == NULL) return false;
    *code = holder_code(request, holder->amount_limit_minor, holder);
    return true;
}

/* Rules 1-6 of docs/channels.md ("Authorize"): the response code. */
static bool authorize_decide(sim_req_t *req, const auth_request_t *request, const char **code) {
    if (req->fate.error) *code = "96";
    else if (!luhn_valid(request->number)) *code = "14";
    else if ((*code = forced_code(request->number)) != NULL) return true;
    else if (card_expired(request->exp_month, request->exp_year)) *code = "54";
    else return holder_decide(req->sim, request, code);
    return true;
}

static void card_authorize(sim_req_t *req) {
    sim_t *sim = req->sim;
    auth_request_t request;
    memset(&request, 0, sizeof request);
    if (!authorize_parse(req, &request) || !sim_proceed(req)) return;
    card_auth_t auth = {.amount = request.amount, .capture_requested = request.capture};
    sim_make_id(sim, "auth_", "authorization", req->key, auth.id);
    pc_str_copy(auth.number, sizeof auth.number, request.number);
    pc_str_copy(auth.currency, sizeof auth.currency, request.currency);
    pc_str_copy(auth.merchant_ref, sizeof auth.merchant_ref, request.merchant_ref ? request.merchant_ref : "");
    const char *code = NULL;
    if (!authorize_decide(req, &request, &code)) return sim_reply_internal(req);
    pc_str_copy(auth.response_code, sizeof auth.response_code, code);
    pc_str_copy(auth.status, sizeof auth.status, auth_status(code));
    char challenge_id[SIM_ID_SIZE] = "";
    if (strcmp(code, "1A") == 0) sim_make_id(sim, "ch_", "challenge", auth.id, challenge_id);
    bool sale = strcmp(code, "00") == 0 && auth.capture_requested; /* its row is written captured */
    bool ok = sim_db_run(&sim->db,
                         "INSERT INTO authorizations(id, card_number, status, response_code, amount, currency,"
                         " captured_total, challenge_id, challenge_state, capture_requested, merchant_ref,"
                         " idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), ?, ?, NULLIF(?, ''), ?)",
                         "ssssisississ", auth.id, auth.number, auth.status, code, auth.amount, auth.currency,
                         sale ? auth.amount : (int64_t)0, challenge_id, challenge_id[0] ? "pending" : NULL,
                         (int64_t)auth.capture_requested, auth.merchant_ref, req->key);
    auth.row = sqlite3_last_insert_rowid(sim->db.db);
    ok = ok && record_insert(req, auth.id, "authorization", NULL, auth.status, code, auth.amount, auth.currency,
                             auth.merchant_ref, false);
    auth.record_row = sqlite3_last_insert_rowid(sim->db.db);
    ok = ok && sim_db_auth_note(&sim->db, auth.id, auth.row, auth.record_row);
    char capture_id[SIM_ID_SIZE] = "";
    if (ok && strcmp(code, "00") == 0) ok = auth_apply_approval(req, &auth, sale, capture_id);
    if (!ok) return sim_reply_internal(req);
    if (challenge_id[0] != '\0') pc_str_copy(auth.challenge_state, sizeof auth.challenge_state, "pending");
    auth_recent_put(sim, &auth);
    reply_auth(req, &auth, NULL, capture_id[0] ? capture_id : NULL);
}

/* ---- 3-D Secure ---- */

static bool challenge_resolve(sim_req_t *req, card_auth_t *auth, const char *code, const char *state) {
    auth_recent_drop(req->sim, auth->id);
    pc_str_copy(auth->response_code, sizeof auth->response_code, code);
    pc_str_copy(auth->status, sizeof auth->status, auth_status(code));
    return sim_db_run(&req->sim->db, "UPDATE authorizations SET status = ?, response_code = ?, challenge_state = ?"
                      " WHERE rowid = ?", "sssi", auth->status, code, state, auth->row) &&
           sim_db_run(&req->sim->db, "UPDATE records SET status = ?, response_code = ? WHERE rowid = ?", "ssi",
                      auth->status, code, auth->record_row);
}

static void card_challenge_complete(sim_req_t *req) {
    static const char *const keys[] = {"code", NULL};
    sim_t *sim = req->sim;
    const char *code_given = NULL;
    if (!sim_body_only(req, req->body, NULL, keys) ||
        !sim_get_string(req, req->body, "code", "code", true, SIM_CHALLENGE_CODE_BYTES_MAX, &code_given)) {
        return;
    }
    card_auth_t auth;
    int found = auth_load_challenge(sim, req->params[0], &auth);
    if (found <= 0) return found < 0 ? sim_reply_internal(req) : sim_reply_not_found(req, "no such challenge");
    if (strcmp(auth.challenge_state, "pending") != 0) {
        return sim_reply_error(req, 409, "challenge_already_completed", "this challenge was completed before", NULL);
    }
    if (!sim_proceed(req)) return;
    if (req->fate.error) { /* a malfunction applies nothing: the challenge stays open */
        snprintf(auth.response_code, sizeof auth.response_code, "96");
        return reply_auth(req, &auth, NULL, NULL);
    }
    if (strcmp(code_given, sim->config.challenge_code) != 0) {
        if (!challenge_resolve(req, &auth, "05", "failed")) return sim_reply_internal(req);
        return reply_auth(req, &auth, "authentication failed", NULL);
    }
    const char *code = NULL;
    char capture_id[SIM_ID_SIZE] = "";
    bool ok = balance_decide(sim, &auth, &code) && challenge_resolve(req, &auth, code, "completed");
    if (ok && strcmp(code, "00") == 0) ok = auth_apply_approval(req, &auth, false, capture_id);
    if (!ok) return sim_reply_internal(req);
    reply_auth(req, &auth, NULL, capture_id[0] ? capture_id : NULL);
}

/* ---- capture, void, refund ---- */

/* Parses {"amount", "merchant_ref", "currency"} of a capture or refund. */
static bool amount_parse(sim_req_t *req, const card_auth_t *auth, int64_t *amount, const char **merchant_ref) {
    static const char *const keys[] = {"amount", "currency", "merchant_ref", NULL};
    const char *currency = NULL;
    if (!sim_body_only(req, req->body, NULL, keys) ||
        !sim_get_amount(req, req->body, "amount", "amount", true, amount) ||
        !sim_get_currency(req, req->body, "currency", "currency", false, &currency) ||
        !sim_get_string(req, req->body, "merchant_ref", "merchant_ref", false, SIM_REF_BYTES_MAX, merchant_ref)) {
        return false;
    }
    if (currency != NULL && strcmp(currency, auth->currency) != 0) {
        sim_reply_invalid(req, "currency", "differs from the authorization's currency");
        return false;
    }
    if (*merchant_ref == NULL) *merchant_ref = auth->merchant_ref;
    return true;
}

/* A capture or a refund: the same shape, bounded by what is left (61), moving the
 * cardholder's balance (and, for a capture, its hold) when approved. */
static void amount_operation(sim_req_t *req, bool capture) {
    sim_t *sim = req->sim;
    card_auth_t auth;
    int64_t amount = 0;
    const char *merchant_ref = NULL;
    if (!auth_from_path(req, &auth) || !amount_parse(req, &auth, &amount, &merchant_ref) || !sim_proceed(req)) return;
    char id[SIM_ID_SIZE];
    sim_make_id(sim, capture ? "cap_" : "ref_", capture ? "capture" : "refund", req->key, id);
    int64_t left = capture ? auth.amount - auth.captured_total : auth.captured_total - auth.refunded_total;
    const char *code = req->fate.error                                   ? "96"
                       : capture && strcmp(auth.status, "approved") != 0 ? "57"
                       : amount > left                                   ? "61"
                                                                         : "00";
    bool approved = strcmp(code, "00") == 0;
    int64_t *total = capture ? &auth.captured_total : &auth.refunded_total;
    bool ok = record_insert(req, id, capture ? "capture" : "refund", auth.id, approved ? "approved" : "declined", code,
                            amount, auth.currency, merchant_ref, approved);
    if (ok && approved) {
        *total += amount;
        ok = cardholder_move(sim, auth.number, auth.currency, capture ? -amount : amount, capture ? -amount : 0) &&
             sim_db_run(&sim->db, "UPDATE authorizations SET captured_total = ?, refunded_total = ? WHERE rowid = ?",
                        "iii", auth.captured_total, auth.refunded_total, auth.row);
        if (ok) auth_recent_put(sim, &auth);
    }
    if (!ok) return sim_reply_internal(req);
    sim_answer_t answer;
    operation_answer(&answer, id, &auth, code, amount);
    sim_answer_int(&answer, capture ? "captured_total" : "refunded_total", *total);
    sim_reply_answer(req, 200, &answer);
}

static void card_capture(sim_req_t *req) {
    amount_operation(req, true);
}

static void card_refund(sim_req_t *req) {
    amount_operation(req, false);
}

static void card_void(sim_req_t *req) {
    static const char *const keys[] = {NULL};
    sim_t *sim = req->sim;
    card_auth_t auth;
    if (!auth_from_path(req, &auth) || !sim_body_only(req, req->body, NULL, keys) || !sim_proceed(req)) return;
    char id[SIM_ID_SIZE];
    sim_make_id(sim, "void_", "void", req->key, id);
    const char *code = req->fate.error ? "96"
                       : strcmp(auth.status, "approved") != 0 || auth.captured_total > 0 ? "57"
                                                                                         : "00";
    bool approved = strcmp(code, "00") == 0;
    bool ok = record_insert(req, id, "void", auth.id, approved ? "approved" : "declined", code, auth.amount,
                            auth.currency, auth.merchant_ref, false);
    if (ok && approved) {
        auth_recent_drop(sim, auth.id);
        ok = cardholder_move(sim, auth.number, auth.currency, 0, -auth.amount) &&
             sim_db_run(&sim->db, "UPDATE authorizations SET status = 'voided' WHERE rowid = ?", "i", auth.row) &&
             sim_db_run(&sim->db, "UPDATE records SET status = 'voided' WHERE rowid = ?", "i", auth.record_row);
    }
    if (!ok) return sim_reply_internal(req);
    sim_answer_t answer;
    operation_answer(&answer, id, &auth, code, auth.amount);
    sim_reply_answer(req, 200, &answer);
}

/* ---- reads and admin ---- */

static void card_authorization_get(sim_req_t *req) {
    card_auth_t auth;
    if (!auth_from_path(req, &auth)) return;
    sim_reply_json(req, 200, json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:I,s:s}", "id", auth.id, "status", auth.status,
                                       "response_code", auth.response_code, "amount", (json_int_t)auth.amount,
                                       "currency", auth.currency, "captured_total", (json_int_t)auth.captured_total,
                                       "refunded_total", (json_int_t)auth.refunded_total, "merchant_ref",
                                       auth.merchant_ref));
}

/* Creates or replaces one cardholder ('replace' false: an existing one is kept). A
 * replaced balance moves its row's opening by the difference: its holds stay, and what
 * its authorizations moved still counts from there. */
static bool cardholder_put(sim_t *sim, const char *number, const char *currency, int64_t balance_minor,
                           int64_t amount_limit_minor, bool replace) {
    sim_db_t *db = holders_ready(sim);
    if (db == NULL) return false;
    sim_holder_t *holder = sim_holders_find(db, number, currency);
    if (holder == NULL) {
        sim_holder_t opening = {.balance_minor = balance_minor, .amount_limit_minor = amount_limit_minor};
        return cardholder_insert(sim, number, currency, &opening) != NULL;
    }
    if (!replace) return true;
    if (!sim_db_run(db, "UPDATE cardholder_openings SET opening_balance = opening_balance + ?, amount_limit = ?"
                    " WHERE number = ? AND currency = ?", "iiss", balance_minor - holder->balance_minor,
                    amount_limit_minor, number, currency)) {
        return false;
    }
    holder->balance_minor = balance_minor;
    holder->amount_limit_minor = amount_limit_minor;
    return true;
}

/* Parses one cardholder object (admin request or data file entry). */
static bool cardholder_parse(sim_req_t *req, const json_t *object, const char **number, const char **currency,
                             int64_t *balance, int64_t *amount_limit) {
    static const char *const keys[] = {"number", "currency", "balance", "amount_limit", NULL};
    *amount_limit = req->sim->config.card_amount_limit_minor;
    if (!sim_body_only(req, object, NULL, keys) ||
        !sim_get_string(req, object, "number", "number", true, 19, number) ||
        !sim_get_currency(req, object, "currency", "currency", true, currency) ||
        !sim_get_balance(req, object, "balance", balance) ||
        !sim_get_amount(req, object, "amount_limit", "amount_limit", false, amount_limit)) {
        return false;
    }
    if (!sim_digits(*number, 12, 19)) {
        sim_reply_invalid(req, "number", "must be a string of 12..19 digits");
        return false;
    }
    return true;
}

static void card_admin_put(sim_req_t *req) {
    const char *number, *currency;
    int64_t balance = 0, amount_limit = 0;
    if (!cardholder_parse(req, req->body, &number, &currency, &balance, &amount_limit)) return;
    if (!cardholder_put(req->sim, number, currency, balance, amount_limit, true)) return sim_reply_internal(req);
    sim_reply_json(req, 200, json_pack("{s:s,s:s,s:I,s:I}", "number", number, "currency", currency, "balance",
                                       (json_int_t)balance, "amount_limit", (json_int_t)amount_limit));
}

bool sim_card_data_entry(sim_req_t *req, const json_t *entry) {
    const char *number, *currency;
    int64_t balance = 0, amount_limit = 0;
    if (!cardholder_parse(req, entry, &number, &currency, &balance, &amount_limit)) return false;
    if (cardholder_put(req->sim, number, currency, balance, amount_limit, false)) return true;
    sim_reply_internal(req);
    return false;
}

const sim_route_t sim_card_routes[] = {
    {"POST", "/v1/authorizations", card_authorize, SIM_ROUTE_OPERATION, "authorize"},
    {"GET", "/v1/authorizations/{}", card_authorization_get, SIM_ROUTE_INQUIRY, NULL},
    {"POST", "/v1/authorizations/{}/captures", card_capture, SIM_ROUTE_OPERATION, "capture"},
    {"POST", "/v1/authorizations/{}/void", card_void, SIM_ROUTE_OPERATION, "void"},
    {"POST", "/v1/authorizations/{}/refunds", card_refund, SIM_ROUTE_OPERATION, "refund"},
    {"POST", "/v1/challenges/{}/complete", card_challenge_complete, SIM_ROUTE_OPERATION, "challenge_complete"},
    {"POST", "/v1/admin/cards", card_admin_put, SIM_ROUTE_ADMIN, NULL},
};
const uint32_t sim_card_route_count = sizeof sim_card_routes / sizeof sim_card_routes[0];
