/* api/routes_ledger.c: accounts and transfers. Handlers decode and validate the body
 * (a bad request is 400 and touches nothing), check a merchant key's reach, submit one
 * writer command, and render the ledger's results: one event answers 201 created,
 * 200 exists, or the refusing code (422 ledger_error); a batch answers 200 with one
 * result per event. A merchant never learns of an account that is not its own: such
 * an account reads as missing (404 / account_not_found). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "store/store_api.h"

typedef struct {
    writer_cmd_t cmd;   /* first: on_done gets &job->cmd */
    bool batch;
} ledger_job;

static void *arena_alloc(void *ctx, size_t bytes) {
    return api_alloc(ctx, bytes);
}

static void reply_codec_error(api_request_t *req, const codec_error_t *err) {
    api_reply_error_http(req, err->http_status ? err->http_status : 400, err->status,
                         err->field[0] ? err->field : NULL, err->message);
}

bool api_account_visible(api_request_t *req, const char *account_id) {
    if (!req->has_caller || req->caller.scope != API_SCOPE_MERCHANT) return true;
    store_reader_t *reader = api_reader(req);
    bool granted = false;
    if (reader == NULL) return false;
    if (store_api_grant_exists(reader, req->caller.id, account_id, &granted) != PC_OK) return false;
    return granted;
}

/* The reply of one refused or accepted event; 'created' carries the created body. */
static void reply_event(api_request_t *req, pc_status status, json_t *object) {
    if (status == PC_OK || status == PC_EXISTS) {
        json_object_set_new(object, "status", json_string(status == PC_OK ? "created" : "exists"));
        api_reply_json(req, status == PC_OK ? 201 : 200, object);
        return;
    }
    json_decref(object);
    api_reply_error(req, status, NULL, NULL);
}

/* Batch results are rendered by hand: ids passed pc_id_valid ([A-Za-z0-9._:-]) and
 * codes come from status.def, so nothing needs escaping, and a full 8189-event batch
 * costs one buffer instead of tens of thousands of JSON nodes. */
#define RESULT_ENTRY_BYTES_MAX (PC_ID_BYTES_MAX + 160)

typedef struct {
    char *text;
    size_t bytes;
} results_buf;

static bool results_begin(results_buf *buf, uint32_t count) {
    buf->text = malloc((size_t)count * RESULT_ENTRY_BYTES_MAX + 32);
    if (buf->text == NULL) return false;
    buf->bytes = (size_t)sprintf(buf->text, "{\"results\":[");
    return true;
}

static void results_add(results_buf *buf, uint32_t index, const char *id, pc_status status,
                        uint64_t timestamp_ns) {
    PC_ASSERT(pc_id_valid(id));
    const char *name = status == PC_OK ? "created" : pc_status_code(status);
    buf->bytes += (size_t)sprintf(buf->text + buf->bytes, "%s{\"index\":%u,\"id\":\"%s\",\"status\":\"%s\"",
                                  index ? "," : "", index, id, name);
    if ((status == PC_OK || status == PC_EXISTS) && timestamp_ns != 0) {
        buf->bytes += (size_t)sprintf(buf->text + buf->bytes, ",\"timestamp\":%llu",
                                      (unsigned long long)timestamp_ns);
    }
    buf->text[buf->bytes++] = '}';
}

static void results_reply(api_request_t *req, results_buf *buf) {
    buf->bytes += (size_t)sprintf(buf->text + buf->bytes, "]}");
    api_reply_raw(req, 200, PC_OK, buf->text, buf->bytes, "application/json");
    free(buf->text);
}

/* ---- POST /v1/accounts ---- */

static pc_status accounts_in_tx(api_request_t *req, store_tx_t *tx) {
    writer_cmd_t *cmd = req->cmd;
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        if (cmd->account_results[i].status != PC_OK) continue;
        pc_status status = store_api_grant_insert(tx, req->caller.id, cmd->accounts[i].id);
        if (status != PC_OK) return status;
    }
    return PC_OK;
}

static void accounts_done(api_request_t *req, writer_cmd_t *cmd) {
    ledger_job *job = (ledger_job *)cmd;
    if (!job->batch) {
        ledger_account_t account = cmd->accounts[0];
        account.timestamp_ns = cmd->account_results[0].timestamp_ns;
        memset(&account.balances, 0, sizeof account.balances);
        json_t *object = codec_account_json(&account);
        if (cmd->account_results[0].status == PC_EXISTS && object != NULL) {
            /* the existing account's balances are not known here: GET it for them */
            static const char *const balances[] = {"debits_pending", "debits_posted",
                                                   "credits_pending", "credits_posted"};
            for (uint32_t i = 0; i < 4; i++) json_object_del(object, balances[i]);
        }
        reply_event(req, cmd->account_results[0].status, object);
        return;
    }
    results_buf buf;
    if (!results_begin(&buf, cmd->event_count)) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        const ledger_account_result_t *result = &cmd->account_results[i];
        results_add(&buf, i, cmd->accounts[i].id, result->status, result->timestamp_ns);
    }
    results_reply(req, &buf);
}

void api_route_accounts_create(api_request_t *req) {
    json_t *body = api_body_object(req);
    if (body == NULL) return;
    codec_alloc_t alloc = {arena_alloc, req};
    codec_error_t err = {0};
    ledger_job *job = api_alloc(req, sizeof(*job));
    ledger_account_t *events = NULL;
    uint32_t count = 0;
    if (job == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    if (codec_decode_accounts(body, &alloc, &events, &count, &job->batch, &err) != PC_OK) {
        reply_codec_error(req, &err);
        return;
    }
    job->cmd.kind = WRITER_CMD_CREATE_ACCOUNTS;
    job->cmd.event_count = count;
    job->cmd.accounts = events;
    job->cmd.account_results = api_alloc(req, sizeof(ledger_account_result_t) * count);
    if (job->cmd.account_results == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    bool merchant = req->caller.scope == API_SCOPE_MERCHANT;
    api_submit(req, &job->cmd, merchant ? accounts_in_tx : NULL, accounts_done);
}

/* ---- POST /v1/transfers ---- */

static void transfers_done(api_request_t *req, writer_cmd_t *cmd) {
    ledger_job *job = (ledger_job *)cmd;
    if (!job->batch) {
        const ledger_transfer_result_t *result = &cmd->transfer_results[0];
        ledger_transfer_t transfer = cmd->transfers[0];
        transfer.timestamp_ns = result->timestamp_ns;
        json_t *object = codec_transfer_json(&transfer, LEDGER_PENDING_NONE);
        if (result->status == PC_OK && object != NULL) {
            json_object_set_new(object, "amount", json_integer((json_int_t)result->amount));
            json_object_set_new(object, "balances",
                                json_pack("{s:o,s:o}", "debit_account",
                                          codec_balances_json(&result->debit_balances),
                                          "credit_account",
                                          codec_balances_json(&result->credit_balances)));
        }
        reply_event(req, result->status, object);
        return;
    }
    results_buf buf;
    if (!results_begin(&buf, cmd->event_count)) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        const ledger_transfer_result_t *result = &cmd->transfer_results[i];
        results_add(&buf, i, cmd->transfers[i].id, result->status, result->timestamp_ns);
    }
    results_reply(req, &buf);
}

/* A merchant may move money only between its own accounts, and resolve only its own
 * pending transfers. false: a 422 was replied, naming the place. */
static bool merchant_reach(api_request_t *req, const ledger_transfer_t *events, uint32_t count,
                           bool batch) {
    for (uint32_t i = 0; i < count; i++) {
        const ledger_transfer_t *t = &events[i];
        const char *side = NULL;
        if (t->debit_account_id[0] && !api_account_visible(req, t->debit_account_id)) side = "debit_account_id";
        else if (t->credit_account_id[0] && !api_account_visible(req, t->credit_account_id)) side = "credit_account_id";
        pc_status status = PC_ACCOUNT_NOT_FOUND;
        if (side == NULL && t->pending_id[0] && api_reader(req) != NULL) {
            store_transfer_t pending;
            if (store_read_transfer(api_reader(req), t->pending_id, &pending) == PC_OK) {
                bool visible = api_account_visible(req, pending.transfer.debit_account_id) ||
                               api_account_visible(req, pending.transfer.credit_account_id);
                if (!visible) side = "pending_id";
                store_transfer_free(&pending);
            }
            status = PC_PENDING_TRANSFER_NOT_FOUND;
        }
        if (side != NULL) {
            char field[96];
            if (batch) snprintf(field, sizeof field, "transfers[%u].%s", i, side);
            else snprintf(field, sizeof field, "%s", side);
            api_reply_error(req, status, field, NULL);
            return false;
        }
    }
    return true;
}

/* The fast path for plain, valid requests; anything else goes through the full
 * decoder, which names the error. */
static bool decode_transfers(api_request_t *req, ledger_job *job, ledger_transfer_t **events,
                             uint32_t *count) {
    codec_alloc_t alloc = {arena_alloc, req};
    size_t body_bytes;
    const char *raw = api_body(req, &body_bytes);
    if (codec_fast_transfers(raw, body_bytes, &alloc, events, count, &job->batch) == PC_OK) return true;
    json_t *body = api_body_object(req);
    if (body == NULL) return false;
    codec_error_t err = {0};
    if (codec_decode_transfers(body, &alloc, events, count, &job->batch, &err) != PC_OK) {
        reply_codec_error(req, &err);
        return false;
    }
    return true;
}

void api_route_transfers_create(api_request_t *req) {
    ledger_job *job = api_alloc(req, sizeof(*job));
    ledger_transfer_t *events = NULL;
    uint32_t count = 0;
    if (job == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    if (!decode_transfers(req, job, &events, &count)) return;
    if (req->caller.scope == API_SCOPE_MERCHANT && !merchant_reach(req, events, count, job->batch)) {
        return;
    }
    job->cmd.kind = WRITER_CMD_CREATE_TRANSFERS;
    job->cmd.event_count = count;
    job->cmd.transfers = events;
    job->cmd.transfer_results = api_alloc(req, sizeof(ledger_transfer_result_t) * count);
    if (job->cmd.transfer_results == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    api_submit(req, &job->cmd, NULL, transfers_done);
}
