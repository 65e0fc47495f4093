/* api/routes_payments.c: the payments layer over HTTP, and its place in `paycore serve`.
 *   POST /v1/merchants                    a merchant and its chart of accounts (admin)
 *   GET  /v1/merchants[/{id}]             merchants (a merchant key: its own)
 *   POST /v1/merchants/{id}/keys          a merchant API key bound to it (admin)
 *   POST /v1/payments                     a payment intent: validate, vault, risk, authorize
 *   GET  /v1/payments[/{id}]              payments with their operations and transfers
 *   POST /v1/payments/{id}/confirm        3-D Secure
 *   POST /v1/payments/{id}/capture        full or partial
 *   POST /v1/payments/{id}/cancel
 *   POST /v1/payments/{id}/refunds        full or partial
 *   GET  /v1/refunds/{id}
 *   POST /v1/wallets, GET /v1/wallets/{id}, POST /v1/wallets/{id}/top_ups, .../withdrawals
 *   POST /v1/payouts, GET /v1/payouts/{id}
 *   POST /v1/admin/payments/recover       one recovery pass now (tests, operators)
 *   POST /v1/admin/vault/rotate           the vault's key-encryption key replaced (paycore keys rotate)
 *   GET  /v1/admin/vault/rotation         the latest data-key rotation (background ones too)
 * A payment request is answered later (a channel call lies between): the handler
 * defers the request, and the payments layer's answer resumes it. The answer that
 * makes an operation final is stored as the Idempotency-Key's reply in the same
 * transaction as the change; a new payment's key is stored already with its first write,
 * as the payment's name (one row: no lookup of the payments' own), and its final answer
 * is kept on the payment's row instead of rewriting that reply. Bodies are parsed by
 * the payments layer (payments.h). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_gateway.h"
#include "api/codec.h"
#include "api/api_internal.h"
#include "api/api_payments.h"
#include "api/api_risk.h"
#include "core/core.h"
#include "obs/obs.h"
#include "payments/vault.h"
#include "store/store_api.h"

static pay_t *payments;        /* set before listening, cleared after draining */
static vault_t *payments_vault;

/* ---------------------------------------------------------------- serve integration */

static void payments_stop_hook(void *ctx) {
    (void)ctx;
    api_payments_stop();
}

pc_status api_payments_start(api_server_t *server, const api_payments_options_t *options) {
    if (!store_supports(server->store, STORE_PART_PAYMENTS)) {
        obs_logf(OBS_LEVEL_WARN, "the %s store has no payments tables yet: serving without payments"
                 " (payments_not_configured)", store_backend_name(server->store));
        return PC_OK;
    }
    char key_path[4096];
    if (options->vault_key_path != NULL) pc_str_copy(key_path, sizeof key_path, options->vault_key_path);
    else snprintf(key_path, sizeof key_path, "%s.vault-key", options->db_path);
    vault_config_t vc = {.key_path = key_path, .store = server->store, .writer = server->writer};
    pc_status status = vault_open(&payments_vault, &vc);
    if (status != PC_OK) return status;
    pay_config_t config;
    pay_config_default(&config);
    config.writer = server->writer;
    config.store = server->store;
    config.gateway = api_gateway();
    config.risk = api_risk_engine();
    config.vault = payments_vault;
    config.events = server->events;
    config.idem_index = server->idem_index;
    config.start_continue = server->config.store_standby_continue;
    config.three_ds_prefixes = options->three_ds_prefixes;
    if (options->authorization_window_s) config.authorization_window_s = options->authorization_window_s;
    if (options->recovery_interval_ms) config.recovery_interval_ms = options->recovery_interval_ms;
    if (options->recovery_grace_ms) config.recovery_grace_ms = options->recovery_grace_ms;
    if (options->bank_inquiry_ms) config.bank_inquiry_ms = options->bank_inquiry_ms;
    status = pay_start(&payments, &config);
    if (status != PC_OK) {
        vault_close(payments_vault);
        payments_vault = NULL;
        return status;
    }
    /* GET handlers and review decisions reach 'payments' until MHD has stopped; its
     * readers need the store: freed in between, by the server */
    api_server_set_http_stopped_hook(server, payments_stop_hook, NULL);
    return PC_OK;
}

/* A background data-key rotation stops between batches first: it writes too. */
void api_payments_quiesce(void) {
    vault_rotation_stop(payments_vault);
    pay_quiesce(payments);
}


void api_payments_stop(void) {
    pay_stop(payments);
    payments = NULL;
    vault_close(payments_vault);
    payments_vault = NULL;
}

pay_t *api_payments(void) { return payments; }

/* ---------------------------------------------------------------- answers */

static pay_caller_t caller_of(api_request_t *req) {
    pay_caller_t caller = {.key_id = req->caller.id, .admin = req->caller.scope != API_SCOPE_MERCHANT};
    if (req->idem_key != NULL) {
        caller.idempotency_key = req->idem_key;
        caller.request_hash = req->idem_hash;
        caller.idempotency_key_new = req->idem_new;
    }
    return caller;
}

static void reply_set(api_request_t *req, const pay_reply_t *reply) {
    if (reply->status == PC_OK && reply->text != NULL) {
        api_reply_raw(req, reply->http_status, PC_OK, reply->text, reply->text_bytes, "application/json");
        return;
    }
    if (reply->status == PC_OK) {
        api_reply_json(req, reply->http_status, json_incref(reply->body));
        return;
    }
    int http = reply->http_status ? reply->http_status : pc_status_http(reply->status);
    api_reply_error_with(req, http, reply->status, reply->field[0] ? reply->field : NULL,
                         reply->message[0] ? reply->message : NULL, reply->state[0] ? "payment_status" : NULL,
                         reply->state);
    if (pc_status_transient(reply->status)) api_reply_header(req, "Retry-After", "1");
}

/* Writer thread, in the transaction that makes the answer final. A stored payment
 * version is kept as a reference to its record (api_payments_replay renders it). */
static pc_status deferred_in_tx(void *ctx, store_tx_t *tx, const pay_reply_t *reply) {
    api_request_t *req = ctx;
    reply_set(req, reply);
    req->deferred_rendered = true;
    if (reply->kept) return PC_OK; /* the key's reply names the payment, whose row keeps this */
    char ref[PAY_REPLY_REF_BYTES_MAX];
    if (req->idem_key != NULL && atomic_load(&req->replied) && pay_reply_ref_format(reply, ref)) {
        return api_idem_store(req, tx, ref, strlen(ref));
    }
    return api_deferred_idem_put(req, tx);
}

/* Writer thread, in the transaction that first writes a payment made under the key:
 * the key's reply names the payment; its final answer is kept on the payment's row
 * (rendered by api_payments_replay), until then it is the payment as it stands. */
static pc_status deferred_key_in_tx(void *ctx, store_tx_t *tx, const char *payment_id) {
    api_request_t *req = ctx;
    char ref[PAY_REPLY_REF_BYTES_MAX];
    if (req->idem_key == NULL) return PC_OK;
    if (!pay_reply_ref_format_current(payment_id, ref)) return PC_INTERNAL;
    return api_idem_store_status(req, tx, 202, ref, strlen(ref)); /* rendering sets the status */
}

static void deferred_key_committed(void *ctx) {
    api_idem_committed(ctx);
}

bool api_payments_replay(api_request_t *req, const char *stored, size_t bytes, int http_status) {
    if (!pay_reply_ref_is(stored, bytes)) return false;
    store_reader_t *reader = api_reader(req);
    char *text = NULL;
    size_t text_bytes = 0;
    pc_status status = PC_STORE_READ_FAILED;
    if (reader != NULL && pay_reply_ref_is_current(stored, bytes)) {
        status = pay_reply_ref_render_current(reader, stored, bytes, &text, &text_bytes, &http_status);
    } else if (reader != NULL) {
        status = pay_reply_ref_render(reader, stored, bytes, &text, &text_bytes);
    }
    if (status == PC_OK) api_reply_raw(req, http_status, PC_OK, text, text_bytes, "application/json");
    else api_reply_error(req, status, NULL, NULL);
    free(text);
    return true;
}

static void deferred_done(void *ctx, const pay_reply_t *reply) {
    api_request_t *req = ctx;
    api_deferred_committed(req, req->deferred_rendered && reply->status == PC_OK);
    if (!req->deferred_rendered || reply->status != PC_OK) reply_set(req, reply);
    api_resume(req);
}

static bool ready(api_request_t *req) {
    if (payments != NULL) return true;
    api_reply_error(req, PC_PAYMENTS_NOT_CONFIGURED, NULL, NULL);
    return false;
}

/* Defers 'req' and hands the payments layer its answer's callbacks. */
static pay_reply_fn_t deferred(api_request_t *req) {
    api_defer(req);
    pay_reply_fn_t fn = {.in_tx = deferred_in_tx, .done = deferred_done, .key_in_tx = deferred_key_in_tx,
                         .key_committed = deferred_key_committed, .ctx = req};
    return fn;
}

static void reply_sync(api_request_t *req, pay_reply_t *reply) {
    reply_set(req, reply);
    pay_reply_clear(reply);
}

/* ---------------------------------------------------------------- handlers */

typedef void (*pay_post_fn)(pay_t *, const pay_caller_t *, const json_t *, const pay_reply_fn_t *);
typedef void (*pay_post_id_fn)(pay_t *, const pay_caller_t *, const char *, const json_t *, const pay_reply_fn_t *);

static void post(api_request_t *req, pay_post_fn fn) {
    if (!ready(req)) return;
    json_t *body = api_body_object(req);
    if (body == NULL) return;
    pay_caller_t caller = caller_of(req);
    pay_reply_fn_t reply = deferred(req);
    fn(payments, &caller, body, &reply);
}

/* A POST on an object whose body may be empty. */
static void post_id(api_request_t *req, pay_post_id_fn fn) {
    if (!ready(req)) return;
    size_t bytes = 0;
    (void)api_body(req, &bytes);
    json_t *body = NULL;
    if (bytes > 0 && (body = api_body_object(req)) == NULL) return;
    pay_caller_t caller = caller_of(req);
    pay_reply_fn_t reply = deferred(req);
    fn(payments, &caller, api_param(req, 0), body, &reply);
}

void api_route_merchants_create(api_request_t *req) { post(req, pay_merchant_create); }
/* The common card payment is read straight from its bytes (no JSON tree); anything
 * else, or a value the payments layer would refuse, takes the full path, which names
 * the error. */
void api_route_payments_create(api_request_t *req) {
    size_t bytes = 0;
    const char *text = api_body(req, &bytes);
    pay_plain_payment_t plain;
    bool fast = payments != NULL && codec_fast_payment(text, bytes, &plain) == PC_OK && pay_plain_payment_valid(&plain);
    if (fast) {
        pay_caller_t caller = caller_of(req);
        pay_reply_fn_t reply = deferred(req);
        pay_payment_create_plain(payments, &caller, &plain, &reply);
    }
    sodium_memzero(&plain, sizeof plain); /* the card number */
    if (!fast) post(req, pay_payment_create);
}
void api_route_wallets_create(api_request_t *req) { post(req, pay_wallet_create); }
void api_route_payouts_create(api_request_t *req) { post(req, pay_payout_create); }
void api_route_payment_confirm(api_request_t *req) { post_id(req, pay_payment_confirm); }
/* A capture's usual body, exactly "{}", is read as no body (both mean: the whole
 * authorized amount, not final): no JSON tree is built for it. */
void api_route_payment_capture(api_request_t *req) {
    size_t bytes = 0;
    const char *text = api_body(req, &bytes);
    if (bytes != 2 || memcmp(text, "{}", 2) != 0) {
        post_id(req, pay_payment_capture);
        return;
    }
    if (!ready(req)) return;
    pay_caller_t caller = caller_of(req);
    pay_reply_fn_t reply = deferred(req);
    pay_payment_capture(payments, &caller, api_param(req, 0), NULL, &reply);
}
void api_route_payment_cancel(api_request_t *req) { post_id(req, pay_payment_cancel); }
void api_route_payment_refund(api_request_t *req) { post_id(req, pay_refund_create); }
void api_route_wallet_top_up(api_request_t *req) { post_id(req, pay_wallet_top_up); }
void api_route_wallet_withdraw(api_request_t *req) { post_id(req, pay_wallet_withdraw); }

typedef pc_status (*pay_get_fn)(pay_t *, const pay_caller_t *, store_reader_t *, const char *, pay_reply_t *);

static void get(api_request_t *req, pay_get_fn fn) {
    if (!ready(req) || !api_query_only(req, (const char *const[]){NULL})) return;
    store_reader_t *reader = api_reader(req);
    if (reader == NULL) {
        api_reply_error(req, PC_STORE_READ_FAILED, NULL, NULL);
        return;
    }
    pay_caller_t caller = caller_of(req);
    pay_reply_t reply = {0};
    (void)fn(payments, &caller, reader, api_param(req, 0), &reply);
    reply_sync(req, &reply);
}

void api_route_merchant_get(api_request_t *req) { get(req, pay_merchant_get); }
void api_route_payment_get(api_request_t *req) { get(req, pay_payment_get); }
void api_route_refund_get(api_request_t *req) { get(req, pay_refund_get); }
void api_route_wallet_get(api_request_t *req) { get(req, pay_wallet_get); }
void api_route_payout_get(api_request_t *req) { get(req, pay_payout_get); }

/* ?limit&starting_after&from&to&order (as the ledger's lists) [&merchant_id&status]. */
static bool list_query(api_request_t *req, pay_list_query_t *q, bool filters) {
    static const char *const plain[] = {"limit", "starting_after", "from", "to", "order", NULL};
    static const char *const filtered[] = {"limit", "starting_after", "from", "to", "order", "merchant_id",
                                           "status", NULL};
    if (!api_query_only(req, filters ? filtered : plain)) return false;
    memset(q, 0, sizeof *q);
    const char *bad = NULL;
    const char *limit = api_query(req, "limit");
    char *end = NULL;
    q->limit = 10;
    if (limit != NULL) {
        unsigned long long n = strtoull(limit, &end, 10);
        if (end == limit || *end != '\0' || n < 1 || n > API_LIST_LIMIT_MAX) bad = "limit";
        else q->limit = (uint32_t)n;
    }
    q->starting_after = api_query(req, "starting_after");
    if (q->starting_after != NULL && !pc_id_valid(q->starting_after)) bad = "starting_after";
    const char *names[2] = {"from", "to"};
    uint64_t *slots[2] = {&q->created_from_ns, &q->created_to_ns};
    for (int i = 0; i < 2; i++) {
        const char *v = api_query(req, names[i]);
        if (v == NULL) continue;
        unsigned long long n = strtoull(v, &end, 10);
        if (end == v || *end != '\0') bad = names[i];
        else *slots[i] = n;
    }
    const char *order = api_query(req, "order");
    if (order != NULL && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) bad = "order";
    q->descending = order != NULL && strcmp(order, "desc") == 0;
    q->merchant_id = api_query(req, "merchant_id");
    if (q->merchant_id != NULL && !pc_id_valid(q->merchant_id)) bad = "merchant_id";
    q->status = api_query(req, "status");
    pay_state state;
    if (q->status != NULL && !pay_state_parse(q->status, &state)) bad = "status";
    if (bad != NULL) {
        char message[96];
        snprintf(message, sizeof message, "invalid query parameter '%s'", bad);
        api_reply_error(req, PC_QUERY_INVALID, bad, message);
        return false;
    }
    return true;
}

typedef pc_status (*pay_list_fn)(pay_t *, const pay_caller_t *, store_reader_t *, const pay_list_query_t *,
                                 pay_reply_t *);

static void list(api_request_t *req, pay_list_fn fn, bool filters) {
    pay_list_query_t q;
    if (!ready(req) || !list_query(req, &q, filters)) return;
    store_reader_t *reader = api_reader(req);
    if (reader == NULL) {
        api_reply_error(req, PC_STORE_READ_FAILED, NULL, NULL);
        return;
    }
    pay_caller_t caller = caller_of(req);
    pay_reply_t reply = {0};
    (void)fn(payments, &caller, reader, &q, &reply);
    reply_sync(req, &reply);
}

void api_route_merchants_list(api_request_t *req) { list(req, pay_merchants_list, false); }
void api_route_payments_list(api_request_t *req) { list(req, pay_payments_list, true); }

void api_route_payments_recover(api_request_t *req) {
    if (!ready(req)) return;
    uint32_t resolved = pay_recover_now(payments);
    api_reply_json(req, 200, json_pack("{s:i}", "resolved", (int)resolved));
}

static json_t *data_rotation_json(const vault_data_rotation_t *rotation) {
    json_t *retired = json_array();
    for (uint32_t i = 0; i < rotation->retired_count; i++) json_array_append_new(retired, json_string(rotation->retired[i]));
    return json_pack("{s:s,s:o,s:i,s:I,s:i}", "data_key_id", rotation->data_key_id, "data_keys_retired", retired,
                     "data_keys_remaining", (int)rotation->keys_remaining, "cards_reencrypted",
                     (json_int_t)rotation->cards_reencrypted, "batches", (int)rotation->batches);
}

static json_t *rotation_status_json(const vault_rotation_status_t *job) {
    json_t *body = data_rotation_json(&job->progress);
    json_object_set_new(body, "state", json_string(vault_rotation_state_name(job->state)));
    json_object_set_new(body, "started_at_ms", json_integer((json_int_t)(job->started_ns / 1000000)));
    json_object_set_new(body, "finished_at_ms", json_integer((json_int_t)(job->finished_ns / 1000000)));
    json_object_set_new(body, "error", job->state == VAULT_ROTATION_FAILED ? json_string(pc_status_code(job->error))
                                                                            : json_null());
    return body;
}

/* GET /v1/admin/vault/rotation: the latest data-key rotation since the start. */
void api_route_vault_rotation(api_request_t *req) {
    if (!ready(req)) return;
    vault_rotation_status_t job;
    vault_rotation_status(payments_vault, &job);
    api_reply_json(req, 200, rotation_status_json(&job));
}

/* {"data_key": true, "background": true}: answers 202 at once with the rotation's
 * status; GET /v1/admin/vault/rotation follows it. */
static void vault_rotate_data_background(api_request_t *req) {
    pc_status status = vault_rotate_data_key_start(payments_vault);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    vault_rotation_status_t job;
    vault_rotation_status(payments_vault, &job);
    api_reply_json(req, 202, rotation_status_json(&job));
}

/* {"data_key": true}: every card re-encrypted under a new data key (batches; may take
 * a while on a large vault: "background": true does not hold the request). Otherwise
 * the key-encryption key is replaced. */
static void vault_rotate_data(api_request_t *req, bool background) {
    if (background) {
        vault_rotate_data_background(req);
        return;
    }
    vault_data_rotation_t rotation;
    pc_status status = vault_rotate_data_key(payments_vault, &rotation);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, data_rotation_json(&rotation));
}

static bool rotate_wants_data_key(api_request_t *req, bool *data_key, bool *background) {
    static const char *const fields[] = {"data_key", "background", NULL};
    *data_key = false;
    *background = false;
    size_t bytes = 0;
    (void)api_body(req, &bytes);
    json_t *body = bytes > 0 ? api_body_object(req) : NULL;
    if (bytes > 0 && body == NULL) return false;
    codec_error_t err = {0};
    if (body != NULL && (!codec_check_fields(body, fields, "", &err) ||
                         !pc_field_bool(body, "data_key", "", data_key, &err) ||
                         !pc_field_bool(body, "background", "", background, &err))) {
        api_reply_error_http(req, 400, err.status, err.field, err.message);
        return false;
    }
    if (*background && !*data_key) {
        api_reply_error_http(req, 400, PC_INVALID_ARGUMENT, "background", "background applies to a data-key rotation only"
                             " (\"data_key\": true)");
        return false;
    }
    return true;
}

/* Blocks this HTTP thread while the key files are written and the re-wrapped keys
 * commit (a rare operator action, as the recovery pass above). */
void api_route_vault_rotate(api_request_t *req) {
    bool data_key = false, background = false;
    if (!ready(req) || !rotate_wants_data_key(req, &data_key, &background)) return;
    if (data_key) {
        vault_rotate_data(req, background);
        return;
    }
    vault_rotation_t rotation;
    pc_status status = vault_rotate(payments_vault, &rotation);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:s,s:s,s:i}", "kek_id", rotation.kek_id, "previous_kek_id",
                                       rotation.previous_kek_id, "keys_rewrapped", (int)rotation.keys_rewrapped));
}

/* ---------------------------------------------------------------- merchant keys */

#define MERCHANT_KEY_GRANTS_MAX (4 * PAY_CURRENCIES_MAX)

typedef struct {
    writer_cmd_t cmd;               /* first */
    api_key_entry_t entry;
    char secret[API_KEY_SECRET_SIZE];
    char merchant_id[PC_ID_SIZE];
    char accounts[MERCHANT_KEY_GRANTS_MAX][PC_ID_SIZE];
    const char *account_ids[MERCHANT_KEY_GRANTS_MAX];
    uint32_t account_count;
} merchant_key_job;

static pc_status merchant_key_in_tx(api_request_t *req, store_tx_t *tx) {
    merchant_key_job *job = (merchant_key_job *)req->cmd;
    store_api_key_t row;
    memset(&row, 0, sizeof row);
    memcpy(row.id, job->entry.id, sizeof row.id);
    pc_str_copy(row.scope, sizeof row.scope, api_scope_name(job->entry.scope));
    memcpy(row.name, job->entry.name, sizeof row.name);
    memcpy(row.key_hash, job->entry.hash, sizeof row.key_hash);
    row.created_ns = job->entry.created_ns;
    pc_status status = store_api_key_insert(tx, &row); /* the writer writes the grants (grantee_id) */
    if (status == PC_OK) status = pay_key_bind_in_tx(payments, tx, job->entry.id, job->merchant_id);
    return status;
}

static json_t *merchant_key_json(const merchant_key_job *job, bool with_secret) {
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "id", job->entry.id, "scope", "merchant", "name",
                          job->entry.name, "merchant_id", job->merchant_id, "created",
                          (json_int_t)job->entry.created_ns, "revoked", 0);
    if (o != NULL && with_secret) json_object_set_new(o, "key", json_string(job->secret));
    return o;
}

static void merchant_key_done(api_request_t *req, writer_cmd_t *cmd) {
    merchant_key_job *job = (merchant_key_job *)cmd;
    if (api_request_idempotent(req)) api_idem_store_override(req, merchant_key_json(job, false));
    api_reply_json(req, 201, merchant_key_json(job, true));
}

static void merchant_key_committed(api_request_t *req) {
    merchant_key_job *job = (merchant_key_job *)req->cmd;
    api_keys_put(api_server_keys(req->server), &job->entry);
    pay_key_bound(payments, job->entry.id, job->merchant_id);
}

void api_route_merchant_key_create(api_request_t *req) {
    static const char *const fields[] = {"name", NULL};
    if (!ready(req)) return;
    size_t bytes = 0;
    (void)api_body(req, &bytes);
    json_t *body = bytes > 0 ? api_body_object(req) : NULL;
    if (bytes > 0 && body == NULL) return;
    codec_error_t err = {0};
    const char *name = NULL;
    if (body != NULL && (!codec_check_fields(body, fields, "", &err) ||
                         !codec_get_string(body, "name", false, API_STRING_BYTES_MAX, "", &name, &err))) {
        api_reply_error_http(req, 400, err.status, err.field, err.message);
        return;
    }
    merchant_key_job *job = api_alloc(req, sizeof *job);
    store_reader_t *reader = api_reader(req);
    if (job == NULL || reader == NULL) {
        api_reply_error(req, job ? PC_STORE_READ_FAILED : PC_NO_MEMORY, NULL, NULL);
        return;
    }
    pc_status status = pay_merchant_accounts(payments, reader, api_param(req, 0), job->accounts,
                                             MERCHANT_KEY_GRANTS_MAX, &job->account_count);
    if (status == PC_OK && api_keys_full(api_server_keys(req->server))) status = PC_LIMIT_REACHED;
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    pc_str_copy(job->merchant_id, sizeof job->merchant_id, api_param(req, 0));
    api_key_generate(job->secret, job->entry.id, job->entry.hash);
    job->entry.scope = API_SCOPE_MERCHANT;
    pc_str_copy(job->entry.name, sizeof job->entry.name, name ? name : job->merchant_id);
    job->entry.created_ns = pc_wall_ns();
    job->cmd.kind = WRITER_CMD_EXEC;
    job->cmd.event_count = 1;
    for (uint32_t i = 0; i < job->account_count; i++) job->account_ids[i] = job->accounts[i];
    job->cmd.grantee_id = job->entry.id;
    job->cmd.grant_account_ids = job->account_ids;
    job->cmd.grant_count = job->account_count;
    req->after_commit = merchant_key_committed;
    api_submit(req, &job->cmd, merchant_key_in_tx, merchant_key_done);
}
