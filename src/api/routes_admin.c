/* api/routes_admin.c: API keys and verification (admin scope).
 * A key's secret is generated here, shown once in the 201 reply and never stored:
 * the database and memory keep a hash. A replay of the creation through its
 * Idempotency-Key answers the same reply without "key". */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "api/api_ops.h"
#include "core/core.h"
#include "journal/verify.h"
#include "store/store.h"
#include "store/store_api.h"

typedef struct {
    writer_cmd_t cmd;            /* first */
    api_key_entry_t entry;
    char secret[64];
    const char **accounts;
    uint32_t account_count;
    bool found;                  /* revoke: the key existed */
} key_job;

static json_t *key_json(const api_key_entry_t *entry) {
    json_t *object = json_pack("{s:s,s:s,s:s,s:I,s:b}", "id", entry->id, "scope",
                               api_scope_name(entry->scope), "name", entry->name, "created",
                               (json_int_t)entry->created_ns, "revoked", entry->revoked_ns != 0);
    if (object != NULL && entry->revoked_ns != 0) {
        json_object_set_new(object, "revoked_at", json_integer((json_int_t)entry->revoked_ns));
    }
    return object;
}

static void entry_to_row(const api_key_entry_t *entry, store_api_key_t *row) {
    memset(row, 0, sizeof(*row));
    memcpy(row->id, entry->id, sizeof row->id);
    pc_str_copy(row->scope, sizeof row->scope, api_scope_name(entry->scope));
    memcpy(row->name, entry->name, sizeof row->name);
    memcpy(row->key_hash, entry->hash, sizeof row->key_hash);
    row->created_ns = entry->created_ns;
    row->revoked_ns = entry->revoked_ns;
}

/* ---- POST /v1/api-keys ---- */

static pc_status key_create_in_tx(api_request_t *req, store_tx_t *tx) {
    key_job *job = (key_job *)req->cmd;
    store_api_key_t row;
    entry_to_row(&job->entry, &row);
    return store_api_key_insert(tx, &row); /* the writer writes the grants (cmd.grantee_id) */
}

static void key_create_done(api_request_t *req, writer_cmd_t *cmd) {
    key_job *job = (key_job *)cmd;
    json_t *accounts = json_array();
    for (uint32_t i = 0; i < job->account_count; i++) {
        json_array_append_new(accounts, json_string(job->accounts[i]));
    }
    json_t *object = key_json(&job->entry);
    json_object_set_new(object, "accounts", accounts);
    if (api_request_idempotent(req)) api_idem_store_override(req, json_deep_copy(object));
    json_object_set_new(object, "key", json_string(job->secret));
    sodium_memzero(job->secret, sizeof job->secret);
    api_reply_json(req, 201, object);
}

static void key_after_commit(api_request_t *req) {
    key_job *job = (key_job *)req->cmd;
    api_keys_put(api_server_keys(req->server), &job->entry);
}

static bool decode_key_accounts(api_request_t *req, const json_t *body, key_job *job,
                                codec_error_t *err) {
    const json_t *accounts = json_object_get(body, "accounts");
    if (accounts == NULL) return true;
    if (!json_is_array(accounts) || json_array_size(accounts) > API_KEY_GRANTS_MAX) {
        codec_fail(err, json_is_array(accounts) ? PC_BATCH_TOO_LARGE : PC_FIELD_TYPE, "",
                   "accounts", NULL);
        return false;
    }
    if (job->entry.scope != API_SCOPE_MERCHANT && json_array_size(accounts) > 0) {
        codec_fail(err, PC_INVALID_ARGUMENT, "", "accounts", "only merchant keys hold accounts");
        return false;
    }
    job->accounts = api_alloc(req, sizeof(char *) * (json_array_size(accounts) + 1));
    size_t index;
    json_t *item;
    json_array_foreach(accounts, index, item) {
        char place[32];
        snprintf(place, sizeof place, "accounts[%u]", (unsigned)index);
        if (!json_is_string(item) || !pc_id_valid(json_string_value(item))) {
            codec_fail(err, json_is_string(item) ? PC_ID_INVALID : PC_FIELD_TYPE, place, NULL, NULL);
            return false;
        }
        job->accounts[job->account_count++] = json_string_value(item);
    }
    return true;
}

static bool decode_key(api_request_t *req, const json_t *body, key_job *job, codec_error_t *err) {
    static const char *const fields[] = {"scope", "name", "accounts", NULL};
    const char *scope, *name;
    if (!codec_check_fields(body, fields, "", err)) return false;
    if (!codec_get_string(body, "scope", true, 16, "", &scope, err)) return false;
    if (!api_scope_parse(scope, &job->entry.scope)) {
        codec_fail(err, PC_INVALID_ARGUMENT, "", "scope", "scope must be admin, merchant or read_only");
        return false;
    }
    if (!codec_get_string(body, "name", false, API_STRING_BYTES_MAX, "", &name, err)) return false;
    pc_str_copy(job->entry.name, sizeof job->entry.name, name ? name : "");
    return decode_key_accounts(req, body, job, err);
}

void api_route_keys_create(api_request_t *req) {
    json_t *body = api_body_object(req);
    if (body == NULL) return;
    key_job *job = api_alloc(req, sizeof(*job));
    codec_error_t err = {0};
    if (job == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    if (!decode_key(req, body, job, &err)) {
        api_reply_error_http(req, 400, err.status, err.field[0] ? err.field : NULL, err.message);
        return;
    }
    if (api_keys_full(api_server_keys(req->server))) {
        api_reply_error(req, PC_LIMIT_REACHED, NULL, "the server holds the maximum number of keys");
        return;
    }
    api_key_generate(job->secret, job->entry.id, job->entry.hash);
    job->entry.created_ns = pc_wall_ns();
    job->cmd.kind = WRITER_CMD_EXEC;
    job->cmd.grantee_id = job->entry.id;
    job->cmd.grant_account_ids = job->accounts;
    job->cmd.grant_count = job->account_count;
    req->after_commit = key_after_commit;
    api_submit(req, &job->cmd, key_create_in_tx, key_create_done);
}

/* ---- GET /v1/api-keys ---- */

static void key_row(const store_api_key_t *row, void *ctx) {
    api_key_entry_t entry = {0};
    memcpy(entry.id, row->id, sizeof entry.id);
    if (!api_scope_parse(row->scope, &entry.scope)) entry.scope = 0;
    memcpy(entry.name, row->name, sizeof entry.name);
    entry.created_ns = row->created_ns;
    entry.revoked_ns = row->revoked_ns;
    json_array_append_new(ctx, key_json(&entry));
}

void api_route_keys_list(api_request_t *req) {
    store_query_t query;
    if (!api_list_query(req, &query, false)) return;
    store_reader_t *reader = api_reader(req);
    if (reader == NULL) {
        api_reply_error(req, PC_STORE_READ_FAILED, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    bool has_more = false;
    pc_status status = store_api_keys_list(reader, query.starting_after, query.limit, key_row,
                                           data, &has_more);
    if (status != PC_OK) {
        json_decref(data);
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:o,s:b}", "data", data, "has_more", has_more));
}

/* ---- DELETE /v1/api-keys/{id} ---- */

static pc_status key_revoke_in_tx(api_request_t *req, store_tx_t *tx) {
    key_job *job = (key_job *)req->cmd;
    return store_api_key_revoke(tx, job->entry.id, job->entry.revoked_ns, &job->found);
}

static void key_revoke_done(api_request_t *req, writer_cmd_t *cmd) {
    key_job *job = (key_job *)cmd;
    if (!job->found) {
        api_reply_error(req, PC_NOT_FOUND, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, key_json(&job->entry));
}

static void key_revoke_after_commit(api_request_t *req) {
    key_job *job = (key_job *)req->cmd;
    if (job->found) api_keys_put(api_server_keys(req->server), &job->entry);
}

void api_route_key_revoke(api_request_t *req) {
    key_job *job = api_alloc(req, sizeof(*job));
    if (job == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    if (!api_keys_get(api_server_keys(req->server), api_param(req, 0), &job->entry)) {
        api_reply_error(req, PC_NOT_FOUND, NULL, NULL);
        return;
    }
    if (job->entry.revoked_ns == 0) job->entry.revoked_ns = pc_wall_ns();
    job->cmd.kind = WRITER_CMD_EXEC;
    req->after_commit = key_revoke_after_commit;
    api_submit(req, &job->cmd, key_revoke_in_tx, key_revoke_done);
}

/* ---- POST /v1/verify ---- */

/* A set of shards: `paycore verify --shards` (shard_verify), answered with the set's
 * summed figures, its report line and the global transactions in doubt. */
static void verify_shards(api_request_t *req) {
    const api_server_t *server = req->server;
    uint32_t count = server->config.shard_count;
    shard_verify_t *report = calloc(1, sizeof *report);
    char (*pubkeys)[4096] = calloc(SHARD_COUNT_MAX, sizeof *pubkeys);
    if (report == NULL || pubkeys == NULL) {
        free(report);
        free(pubkeys);
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    const char *pubkey_paths[SHARD_COUNT_MAX];
    bool keys = true; /* the node's public keys, as serve --shards wrote them */
    for (uint32_t i = 0; i < count; i++) {
        if (i == 0) snprintf(pubkeys[i], sizeof pubkeys[i], "%s.key.pub", server->db_path);
        else snprintf(pubkeys[i], sizeof pubkeys[i], "%s.key.shard%u.pub", server->db_path, i);
        pubkey_paths[i] = pubkeys[i];
        keys = keys && access(pubkeys[i], R_OK) == 0;
    }
    pc_status status = shard_verify(server->config.shard_urls, count, keys ? pubkey_paths : NULL, report);
    free(pubkeys);
    if (status != PC_OK && status != PC_JOURNAL_MISMATCH && status != PC_GLOBAL_TRANSACTION_IN_DOUBT) {
        api_reply_error(req, status, NULL, report->detail[0] ? report->detail : NULL);
        free(report);
        return;
    }
    json_int_t batches = 0, accounts = 0, transfers = 0;
    for (uint32_t i = 0; i < report->verified; i++) {
        batches += (json_int_t)report->shards[i].batches;
        accounts += (json_int_t)report->shards[i].accounts;
        transfers += (json_int_t)report->shards[i].transfers;
    }
    char line[4 * JOURNAL_REPORT_TEXT_BYTES];
    json_t *body = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:s}", "ok", status == PC_OK, "shards", (json_int_t)count,
                             "batches", batches, "accounts", accounts, "transfers", transfers, "in_doubt",
                             (json_int_t)report->in_doubt, "report", shard_verify_line(report, status, line, sizeof line));
    if (body != NULL && report->discrepancy[0] != '\0') {
        json_object_set_new(body, "discrepancy", json_string(report->discrepancy));
    }
    free(report);
    api_reply_json(req, 200, body);
}

/* Runs the journal and balance verification on its own read-only connection (one
 * consistent snapshot; the writer keeps going) and answers the report. */
void api_route_verify(api_request_t *req) {
    const api_server_t *server = req->server;
    if (server->config.shard_count > 0) {
        verify_shards(req);
        return;
    }
    char pubkey_path[4096];
    snprintf(pubkey_path, sizeof pubkey_path, "%s.key.pub", server->db_path);
    journal_report_t report;
    memset(&report, 0, sizeof report);
    uint64_t start_ns = pc_mono_ns();
    pc_status status = store_verify(server->config.store_url != NULL ? server->config.store_url : server->db_path,
                                             access(pubkey_path, R_OK) == 0 ? pubkey_path : NULL,
                                             &report);
    api_ops_verify_record(status, &report, pc_mono_ns() - start_ns);
    if (status != PC_OK && status != PC_JOURNAL_MISMATCH) {
        api_reply_error(req, status, NULL, report.error_detail[0] ? report.error_detail : NULL);
        return;
    }
    char head_hex[2 * JOURNAL_HASH_BYTES + 1];
    journal_hex(report.head_hash, JOURNAL_HASH_BYTES, head_hex);
    json_t *body = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "ok", report.ok && status == PC_OK,
                             "batches", (json_int_t)report.batches, "accounts",
                             (json_int_t)report.accounts, "transfers", (json_int_t)report.transfers,
                             "failures", (json_int_t)report.failures, "checkpoints",
                             (json_int_t)report.checkpoints, "pending_open",
                             (json_int_t)report.pending_open, "head_hash", head_hex);
    if (body != NULL && report.discrepancy[0] != '\0') {
        json_object_set_new(body, "discrepancy", json_string(report.discrepancy));
    }
    api_reply_json(req, 200, body);
}

/* ---- paycore init ---- */

typedef struct {
    writer_cmd_t cmd;
    store_api_key_t row;
} offline_key_job;

static pc_status offline_key_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    return store_api_key_insert(tx, &((offline_key_job *)cmd)->row);
}

pc_status api_key_create_offline(writer_t *writer, api_scope scope, const char *name,
                                 char secret_out[API_KEY_SECRET_SIZE], char id_out[PC_ID_SIZE]) {
    if (sodium_init() < 0) return PC_INTERNAL;
    offline_key_job job;
    memset(&job, 0, sizeof job);
    api_key_entry_t entry = {.scope = scope, .created_ns = pc_wall_ns()};
    pc_str_copy(entry.name, sizeof entry.name, name);
    api_key_generate(secret_out, entry.id, entry.hash);
    entry_to_row(&entry, &job.row);
    job.cmd.kind = WRITER_CMD_EXEC;
    job.cmd.in_transaction = offline_key_in_tx;
    pc_status status = writer_submit_wait(writer, &job.cmd);
    if (status != PC_OK) {
        sodium_memzero(secret_out, API_KEY_SECRET_SIZE);
        return status;
    }
    memcpy(id_out, entry.id, PC_ID_SIZE);
    return PC_OK;
}
