/* api/routes_ledger.c: accounts and transfers. Handlers decode and validate the body
 * (a bad request is 400 and touches nothing), submit one writer command, and render
 * the ledger's results: one event answers 201 created, 200 exists, or the refusing
 * code (422 ledger_error); a batch answers 200 with one result per event.
 *
 * A merchant key's command carries the key as its owner: the writer decides, as each
 * event is applied, whether the accounts and pending transfers it names are the
 * merchant's (writer.h, owner_id). A foreign object then fails exactly as a missing
 * one (account_not_found, pending_transfer_not_found), and an id another merchant
 * holds answers id_taken and nothing else. Nothing is checked here beforehand: a
 * check against the committed store would race the writer's queue. */
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

static const char *field_name(ledger_field field) {
    switch (field) {
    case LEDGER_FIELD_DEBIT_ACCOUNT_ID: return "debit_account_id";
    case LEDGER_FIELD_CREDIT_ACCOUNT_ID: return "credit_account_id";
    case LEDGER_FIELD_PENDING_ID: return "pending_id";
    default: return NULL;
    }
}

const char *api_request_owner(const api_request_t *req) {
    bool merchant = req->has_caller && req->caller.scope == API_SCOPE_MERCHANT;
    return merchant ? req->caller.id : NULL;
}

/* The reply of one refused or accepted event; 'object' is the body when accepted. */
static void reply_event(api_request_t *req, pc_status status, ledger_field field, json_t *object) {
    if (status == PC_OK || status == PC_EXISTS) {
        json_object_set_new(object, "status", json_string(status == PC_OK ? "created" : "exists"));
        api_reply_json(req, status == PC_OK ? 201 : 200, object);
        return;
    }
    json_decref(object);
    api_reply_error(req, status, field_name(field), NULL);
}

/* Batch results are rendered by hand: ids passed pc_id_valid ([A-Za-z0-9._:-]) and
 * codes come from status.def, so nothing needs escaping, and a full 8189-event batch
 * costs one buffer instead of tens of thousands of JSON nodes. An entry: index, id,
 * status (about 110 bytes besides the id), timestamp, field (40), amount and the two
 * accounts' balances (8 integers of up to 20 digits with their names: about 330). */
#define RESULT_ENTRY_BYTES_MAX (PC_ID_BYTES_MAX + 600)

typedef struct {
    char *text;
    size_t bytes;
    size_t capacity;
    size_t entries_left;
} results_buf;

static bool results_begin(results_buf *buf, uint32_t count) {
    buf->capacity = (size_t)count * RESULT_ENTRY_BYTES_MAX + 32;
    buf->text = malloc(buf->capacity);
    if (buf->text == NULL) return false;
    buf->entries_left = count;
    buf->bytes = (size_t)sprintf(buf->text, "{\"results\":[");
    return true;
}

/* Opens one entry: index, id, status, and the timestamp of an accepted event. The
 * caller may append members, then closes it with results_entry_end. */
static void results_entry(results_buf *buf, uint32_t index, const char *id, pc_status status,
                          uint64_t timestamp_ns) {
    PC_ASSERT(pc_id_valid(id));
    const char *name = status == PC_OK ? "created" : pc_status_code(status);
    buf->bytes += (size_t)sprintf(buf->text + buf->bytes, "%s{\"index\":%u,\"id\":\"%s\",\"status\":\"%s\"",
                                  index ? "," : "", index, id, name);
    if ((status == PC_OK || status == PC_EXISTS) && timestamp_ns != 0) {
        buf->bytes += (size_t)sprintf(buf->text + buf->bytes, ",\"timestamp\":%llu",
                                      (unsigned long long)timestamp_ns);
    }
}

/* Every entry keeps within its share: the rest still has room for those to come. */
static void results_entry_end(results_buf *buf) {
    buf->text[buf->bytes++] = '}';
    PC_ASSERT(buf->entries_left > 0);
    buf->entries_left--;
    PC_ASSERT(buf->bytes + buf->entries_left * RESULT_ENTRY_BYTES_MAX + 2 < buf->capacity);
}

static void results_balances(results_buf *buf, const char *name, const ledger_balances_t *b) {
    buf->bytes += (size_t)sprintf(buf->text + buf->bytes,
                                  "\"%s\":{\"debits_pending\":%lld,\"debits_posted\":%lld,"
                                  "\"credits_pending\":%lld,\"credits_posted\":%lld}",
                                  name, (long long)b->debits_pending, (long long)b->debits_posted,
                                  (long long)b->credits_pending, (long long)b->credits_posted);
}

/* A transfer's entry: a created one carries the amount moved and both accounts'
 * balances after it, as a single transfer's reply does; a refusal names its field. */
static void results_transfer(results_buf *buf, uint32_t index, const char *id,
                             const ledger_transfer_result_t *result) {
    results_entry(buf, index, id, result->status, result->timestamp_ns);
    const char *field = result->status == PC_OK ? NULL : field_name(result->field);
    if (field != NULL) {
        buf->bytes += (size_t)sprintf(buf->text + buf->bytes, ",\"field\":\"%s\"", field);
    }
    if (result->status == PC_OK) {
        buf->bytes += (size_t)sprintf(buf->text + buf->bytes, ",\"amount\":%lld,\"balances\":{",
                                      (long long)result->amount);
        results_balances(buf, "debit_account", &result->debit_balances);
        buf->text[buf->bytes++] = ',';
        results_balances(buf, "credit_account", &result->credit_balances);
        buf->text[buf->bytes++] = '}';
    }
    results_entry_end(buf);
}

static void results_reply(api_request_t *req, results_buf *buf) {
    buf->bytes += (size_t)sprintf(buf->text + buf->bytes, "]}");
    api_reply_raw(req, 200, PC_OK, buf->text, buf->bytes, "application/json");
    free(buf->text);
}

/* ---- POST /v1/accounts ---- */

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
        reply_event(req, cmd->account_results[0].status, LEDGER_FIELD_NONE, object);
        return;
    }
    results_buf buf;
    if (!results_begin(&buf, cmd->event_count)) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        const ledger_account_result_t *result = &cmd->account_results[i];
        results_entry(&buf, i, cmd->accounts[i].id, result->status, result->timestamp_ns);
        results_entry_end(&buf);
    }
    results_reply(req, &buf);
}

/* A merchant key makes no account in the payments' chart (its id would later be the
 * chart's own, with the key's grant and the wrong flags): 422 id_reserved, nothing made. */
static bool accounts_allowed(api_request_t *req, const ledger_account_t *events, uint32_t count, bool batch) {
    if (api_request_owner(req) == NULL) return true;
    for (uint32_t i = 0; i < count; i++) {
        if (!pc_id_payments_chart(events[i].id)) continue;
        char field[32];
        if (batch) snprintf(field, sizeof field, "accounts[%u].id", i);
        else snprintf(field, sizeof field, "id");
        api_reply_error(req, PC_ID_RESERVED, field, "ids beginning with 'mer:', 'chn:', 'sys:' or 'wal:' are the"
                        " payments' own accounts: a merchant key cannot make one");
        return false;
    }
    return true;
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
    if (!accounts_allowed(req, events, count, job->batch)) return;
    job->cmd.kind = WRITER_CMD_CREATE_ACCOUNTS;
    job->cmd.event_count = count;
    job->cmd.accounts = events;
    job->cmd.account_results = api_alloc(req, sizeof(ledger_account_result_t) * count);
    if (job->cmd.account_results == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    job->cmd.owner_id = api_request_owner(req);
    api_submit(req, &job->cmd, NULL, accounts_done);
}

/* ---- POST /v1/transfers ---- */

/* The reply of one transfer: as stored (a post or void inherits its accounts,
 * currency and code from the pending transfer). */
static void transfer_reply(api_request_t *req, const ledger_transfer_t *event,
                           const ledger_transfer_result_t *result) {
    ledger_transfer_t transfer = *event;
    transfer.timestamp_ns = result->timestamp_ns;
    if (result->status == PC_OK || result->status == PC_EXISTS) {
        memcpy(transfer.debit_account_id, result->debit_account_id, PC_ID_SIZE);
        memcpy(transfer.credit_account_id, result->credit_account_id, PC_ID_SIZE);
        memcpy(transfer.currency, result->currency, sizeof transfer.currency);
        transfer.code = result->code;
        transfer.amount = result->amount;
    }
    json_t *object = codec_transfer_json(&transfer, LEDGER_PENDING_NONE);
    if (result->status == PC_OK && object != NULL) {
        json_object_set_new(object, "balances",
                            json_pack("{s:o,s:o}", "debit_account",
                                      codec_balances_json(&result->debit_balances),
                                      "credit_account",
                                      codec_balances_json(&result->credit_balances)));
    }
    reply_event(req, result->status, result->field, object);
}

static void transfers_done(api_request_t *req, writer_cmd_t *cmd) {
    ledger_job *job = (ledger_job *)cmd;
    if (!job->batch) {
        transfer_reply(req, &cmd->transfers[0], &cmd->transfer_results[0]);
        return;
    }
    results_buf buf;
    if (!results_begin(&buf, cmd->event_count)) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        results_transfer(&buf, i, cmd->transfers[i].id, &cmd->transfer_results[i]);
    }
    results_reply(req, &buf);
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
    job->cmd.kind = WRITER_CMD_CREATE_TRANSFERS;
    job->cmd.owner_id = api_request_owner(req);
    job->cmd.event_count = count;
    job->cmd.transfers = events;
    job->cmd.transfer_results = api_alloc(req, sizeof(ledger_transfer_result_t) * count);
    if (job->cmd.transfer_results == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    api_submit(req, &job->cmd, NULL, transfers_done);
}
