/* api/forward_read.c: the reads a standby of a set answers itself instead of
 * forwarding them (docs/scaleout.md §7, standby reads): GET /v1/accounts/{id} (and
 * its lists) from the account's shard, GET /v1/transfers/{id} from the shard holding
 * it, and GET /v1/accounts across the shards (store_standby.h), with what every batch
 * committed before the read says. A transfer is read with the key in one statement
 * on shard 0 (the other shards at once when shard 0 has none); a transfer across
 * shards is its two legs merged (A -> B, as the writer's read store gives it), and a
 * leg whose peer is not committed yet (the coordinator is between its COMMITs) is
 * forwarded, so that no read shows half of a global transaction. A list of accounts
 * reads every page as of its first page's cut (store_shard_list), taken under the read
 * fence's advisory lock on shard 0, so its cursors are the writer's and either node
 * continues a listing the other began. The key is looked up on shard 0 at each read,
 * so a key made or revoked a moment ago on the writer counts here at once; the
 * standby takes a token from its own bucket for the key (--rate-per-s applies on each
 * node). Whatever is not the plain success of such a read (no key or an unknown one,
 * a query string the writer refuses, an account the key may not see or that does not
 * exist, a cursor it refuses, a shard that cannot be read) is forwarded, so the writer
 * gives every refusal exactly as it does. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "api/codec.h"
#include "core/core.h"
#include "store/store_shard.h"
#include "store/store_standby.h"

struct api_forward_reads {
    store_standby_t *standby;
    uint32_t shard_count;
    api_keys_t keys;            /* this node's buckets of the keys it served */
};

pc_status api_forward_reads_open(api_forward_reads_t **out, const api_forward_config_t *config) {
    api_forward_reads_t *reads = calloc(1, sizeof *reads);
    if (reads == NULL) return PC_NO_MEMORY;
    reads->shard_count = config->shard_count;
    pc_status status = api_keys_init(&reads->keys, config->rate_per_s, config->rate_burst);
    if (status != PC_OK) {
        free(reads);
        return status;
    }
    status = store_standby_open(&reads->standby, config->shard_urls, config->shard_count);
    if (status != PC_OK) {
        api_forward_reads_close(reads);
        return status;
    }
    *out = reads;
    return PC_OK;
}

void api_forward_reads_close(api_forward_reads_t *reads) {
    if (reads == NULL) return;
    store_standby_close(reads->standby);
    api_keys_free(&reads->keys);
    free(reads);
}

typedef enum {
    READ_NONE, READ_ACCOUNT, READ_TRANSFER, READ_ACCOUNT_TRANSFERS, READ_ACCOUNT_HISTORY, READ_ACCOUNTS
} read_kind;

static bool params_only(api_forward_req_t *req, const char *const *allowed) {
    return api_forward_args_only(req, allowed);
}

/* The kind of a GET this node may answer and the account or transfer id it names
 * (copied into 'id'); READ_NONE for anything else: a query string on a single object,
 * an unknown or invalid list parameter (the writer names it). */
static read_kind read_of(api_forward_req_t *req, const char *method, const char *url,
                         char id[PC_ID_BYTES_MAX + 1]) {
    static const char accounts[] = "/v1/accounts/", transfers[] = "/v1/transfers/";
    read_kind kind = READ_NONE;
    const char *rest = NULL;
    if (strcmp(method, "GET") != 0) return READ_NONE;
    if (strcmp(url, "/v1/accounts") == 0) return params_only(req, api_accounts_list_params) ? READ_ACCOUNTS : READ_NONE;
    if (strncmp(url, accounts, sizeof accounts - 1) == 0) rest = url + sizeof accounts - 1, kind = READ_ACCOUNT;
    if (strncmp(url, transfers, sizeof transfers - 1) == 0) rest = url + sizeof transfers - 1, kind = READ_TRANSFER;
    if (rest == NULL) return READ_NONE;
    const char *slash = strchr(rest, '/');
    size_t id_bytes = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    if (id_bytes == 0 || id_bytes > PC_ID_BYTES_MAX) return READ_NONE;
    memcpy(id, rest, id_bytes);
    id[id_bytes] = '\0';
    if (slash != NULL && kind == READ_ACCOUNT && strcmp(slash, "/transfers") == 0) kind = READ_ACCOUNT_TRANSFERS;
    else if (slash != NULL && kind == READ_ACCOUNT && strcmp(slash, "/balances") == 0) kind = READ_ACCOUNT_HISTORY;
    else if (slash != NULL) return READ_NONE;
    if (!pc_id_valid(id) || store_id_reserved(id)) return READ_NONE;
    bool list = kind == READ_ACCOUNT_TRANSFERS || kind == READ_ACCOUNT_HISTORY;
    if (!params_only(req, list ? api_list_range_params : (const char *const[]){NULL})) return READ_NONE;
    return kind;
}

/* The secret of "Authorization: Bearer <secret>" and its hash, or NULL. */
static const char *bearer_secret(api_forward_req_t *req, uint8_t hash[STORE_API_HASH_BYTES]) {
    const char *header = api_forward_header(req, "Authorization");
    if (header == NULL || strncasecmp(header, "Bearer", 6) != 0 || header[6] != ' ') return NULL;
    const char *secret = header + 6;
    while (*secret == ' ') secret++;
    if (strlen(secret) > 128) return NULL;
    api_key_hash(secret, hash);
    return secret;
}

/* The caller of key 'row' (found for 'secret'), its token taken: PC_OK,
 * PC_RATE_LIMITED (*retry_after_s), or anything else (forwarded). */
static pc_status caller_from(api_forward_reads_t *reads, const char *secret, const store_api_key_t *row,
                             api_caller_t *caller, uint32_t *retry_after_s) {
    api_key_entry_t entry = {0};
    if (row->revoked_ns != 0 || !api_scope_parse(row->scope, &entry.scope)) return PC_UNAUTHENTICATED;
    memcpy(entry.hash, row->key_hash, sizeof entry.hash);
    memcpy(entry.id, row->id, sizeof entry.id);
    memcpy(entry.name, row->name, sizeof entry.name);
    entry.created_ns = row->created_ns;
    api_keys_put(&reads->keys, &entry); /* a new key gets a full bucket; a known one keeps its own */
    return api_keys_authenticate(&reads->keys, secret, caller, retry_after_s);
}

/* The caller of the request's key as shard 0 knows it now (one statement there). */
static pc_status caller_of(api_forward_reads_t *reads, api_forward_req_t *req, api_caller_t *caller,
                           uint32_t *retry_after_s) {
    uint8_t hash[STORE_API_HASH_BYTES];
    const char *secret = bearer_secret(req, hash);
    if (secret == NULL) return PC_UNAUTHENTICATED;
    store_api_key_t row;
    pc_status status = store_standby_key_find(reads->standby, hash, &row);
    return status == PC_OK ? caller_from(reads, secret, &row, caller, retry_after_s) : status;
}

/* Whether the caller may see account 'id' (a merchant key: its grant). */
static bool visible(api_forward_reads_t *reads, const api_caller_t *caller, const char *id) {
    if (caller->scope != API_SCOPE_MERCHANT) return true;
    bool granted = false;
    pc_status status = store_standby_grant_exists(reads->standby, store_shard_of(id, reads->shard_count), caller->id,
                                                  id, &granted);
    return status == PC_OK && granted;
}

/* The request's caller and account 'id', which it may see, read together (one
 * statement for an account on shard 0): PC_OK (free *account), PC_RATE_LIMITED, or
 * anything else (forwarded). */
static pc_status caller_and_account(api_forward_reads_t *reads, api_forward_req_t *req, const char *id,
                                    api_caller_t *caller, uint32_t *retry_after_s, store_account_t *account) {
    uint8_t hash[STORE_API_HASH_BYTES];
    const char *secret = bearer_secret(req, hash);
    if (secret == NULL) return PC_UNAUTHENTICATED;
    store_api_key_t row;
    bool granted = false, granted_known = false;
    pc_status status = store_standby_key_account(reads->standby, hash, store_shard_of(id, reads->shard_count), id,
                                                 &row, account, &granted, &granted_known);
    if (status != PC_OK) return status;
    status = caller_from(reads, secret, &row, caller, retry_after_s);
    if (status == PC_OK && caller->scope == API_SCOPE_MERCHANT) {
        if (!(granted_known ? granted : visible(reads, caller, id))) status = PC_NOT_FOUND;
    }
    if (status != PC_OK) store_account_free(account);
    return status;
}

static void legs_free(store_transfer_t *legs, const pc_status *statuses, uint32_t from, uint32_t to) {
    for (uint32_t i = from; i < to; i++) {
        if (statuses[i] == PC_OK) store_transfer_free(&legs[i]);
    }
}

/* The transfer as the shards hold it: 'found0'/'leg0' shard 0's (read with the key);
 * the other shards read at once when shard 0 has none. A leg across shards merged
 * with its peer's (the debit leg's fields, the credit leg's credit account): false
 * when the peer leg is not there (the coordinator is between its COMMITs: forwarded). */
static bool transfer_find(api_forward_reads_t *reads, const char *id, bool found0, store_transfer_t *leg0,
                          store_transfer_t *out) {
    store_transfer_t legs[SHARD_COUNT_MAX];
    pc_status statuses[SHARD_COUNT_MAX];
    for (uint32_t i = 0; i < SHARD_COUNT_MAX; i++) statuses[i] = PC_NOT_FOUND;
    if (found0) {
        legs[0] = *leg0;
        statuses[0] = PC_OK;
    } else if (store_standby_transfers(reads->standby, 1, id, legs, statuses) != PC_OK) {
        legs_free(legs, statuses, 1, reads->shard_count);
        return false;
    }
    uint32_t at = 0;
    while (at < reads->shard_count && statuses[at] != PC_OK) at++;
    if (at == reads->shard_count) return false;
    *out = legs[at];
    legs_free(legs, statuses, at + 1, reads->shard_count);
    uint32_t self, peer;
    bool debit_leg = store_clearing_shard(out->transfer.credit_account_id, &self, &peer);
    if (!debit_leg && !store_clearing_shard(out->transfer.debit_account_id, &self, &peer)) return true;
    store_transfer_t other;
    if (peer >= reads->shard_count || store_standby_transfer(reads->standby, peer, id, &other) != PC_OK) {
        store_transfer_free(out);
        return false;
    }
    store_transfer_legs_merge(out, &other, debit_leg);
    return true;
}

/* The request's caller and transfer 'id', which it may see: the key and shard 0's leg
 * in one statement (with whether the key was granted an account of it), the other
 * shards' at once when shard 0 has none. The reply's body, or NULL (forwarded; a
 * 429 replied when *replied). */
static json_t *transfer_reply(api_forward_reads_t *reads, api_forward_req_t *req, const char *id,
                              bool *replied) {
    uint8_t hash[STORE_API_HASH_BYTES];
    const char *secret = bearer_secret(req, hash);
    if (secret == NULL) return NULL;
    store_api_key_t row;
    store_transfer_t leg0, transfer;
    bool found0 = false, granted0 = false;
    if (store_standby_key_transfer(reads->standby, hash, id, &row, &leg0, &found0, &granted0) != PC_OK) return NULL;
    api_caller_t caller;
    uint32_t retry_after_s = 1;
    pc_status status = caller_from(reads, secret, &row, &caller, &retry_after_s);
    if (status != PC_OK) {
        if (found0) store_transfer_free(&leg0);
        if (status == PC_RATE_LIMITED) api_forward_reply_error(req, status, NULL, retry_after_s);
        *replied = status == PC_RATE_LIMITED;
        return NULL;
    }
    if (!transfer_find(reads, id, found0, &leg0, &transfer)) return NULL;
    json_t *body = NULL;
    if ((found0 && granted0) || visible(reads, &caller, transfer.transfer.debit_account_id) ||
        visible(reads, &caller, transfer.transfer.credit_account_id)) {
        body = codec_transfer_json(&transfer.transfer, transfer.pending_state);
    }
    store_transfer_free(&transfer);
    return body;
}

static void transfer_row(const ledger_transfer_t *transfer, ledger_pending_state state, void *ctx) {
    json_array_append_new(ctx, codec_transfer_json(transfer, state));
}

static void history_row(const ledger_history_t *row, void *ctx) {
    json_array_append_new(ctx, codec_history_json(row));
}

/* A page of account 'id''s transfers or balance history from its shard, as the
 * writer's readers list it (one shard: what every batch committed before each
 * statement says, as on the writer). A merchant's starting_after is the writer's to
 * check (a transfer it may not see reads as missing): forwarded. */
static json_t *list_read(api_forward_reads_t *reads, const api_caller_t *caller, const char *id, read_kind kind,
                         const store_query_t *query) {
    if (caller->scope == API_SCOPE_MERCHANT && query->starting_after != NULL) return NULL;
    uint32_t shard = store_shard_of(id, reads->shard_count);
    json_t *data = json_array();
    bool has_more = false;
    pc_status status = kind == READ_ACCOUNT_TRANSFERS
        ? store_standby_list_account_transfers(reads->standby, shard, id, query, transfer_row, data, &has_more)
        : store_standby_list_history(reads->standby, shard, id, query, history_row, data, &has_more);
    if (status != PC_OK) {
        json_decref(data);
        return NULL;
    }
    return json_pack("{s:o,s:b}", "data", data, "has_more", has_more);
}

/* The reply to a read of account 'id' (itself or a list of it), or NULL to forward. */
static json_t *account_reply(api_forward_reads_t *reads, api_forward_req_t *req, const char *id,
                             read_kind kind, bool *replied) {
    store_query_t query;
    bool list = kind != READ_ACCOUNT;
    if (list && api_list_query_parse_with(api_forward_arg, req, &query) != NULL) return NULL;
    api_caller_t caller;
    uint32_t retry_after_s = 1;
    store_account_t account;
    pc_status status = caller_and_account(reads, req, id, &caller, &retry_after_s, &account);
    if (status == PC_RATE_LIMITED) {
        api_forward_reply_error(req, status, NULL, retry_after_s);
        *replied = true;
    }
    if (status != PC_OK) return NULL;
    json_t *body = list ? list_read(reads, &caller, id, kind, &query) : codec_account_json(&account.account);
    store_account_free(&account);
    return body;
}

/* ---- GET /v1/accounts: the set's list, every page as of the first ---- */

static pc_status standby_part(void *ctx, uint32_t shard, const char *key_id, const store_query_t *query,
                              uint64_t as_of, store_account_fn fn, void *fn_ctx, bool *has_more) {
    api_forward_reads_t *reads = ctx;
    return store_standby_list_as_of(reads->standby, shard, key_id, query, as_of, fn, fn_ctx, has_more);
}

static pc_status standby_cut(void *ctx, store_cut_t *cut) {
    return store_standby_cut(((api_forward_reads_t *)ctx)->standby, cut);
}

static void account_row(const ledger_account_t *account, void *ctx) {
    json_array_append_new(ctx, codec_account_json(account));
}

/* A page of the set's accounts (a merchant key's: its granted ones) read as the
 * writer's read store reads it (store_shard_list), a first page's cut taken under the
 * read fence's advisory lock on shard 0: NULL to forward (a bad query, an unknown
 * key, a cursor the writer refuses, a shard or the fence that cannot be had). */
static json_t *accounts_reply(api_forward_reads_t *reads, api_forward_req_t *req,
                              bool *replied) {
    store_query_t query;
    if (api_accounts_list_parse_with(api_forward_arg, req, &query) != NULL) return NULL;
    api_caller_t caller;
    uint32_t retry_after_s = 1;
    pc_status status = caller_of(reads, req, &caller, &retry_after_s);
    if (status == PC_RATE_LIMITED) {
        api_forward_reply_error(req, status, NULL, retry_after_s);
        *replied = true;
    }
    uint8_t key[STORE_CURSOR_KEY_BYTES];
    if (status != PC_OK || store_standby_cursor_key(reads->standby, key) != PC_OK) return NULL;
    char next_cursor[STORE_CURSOR_TEXT_SIZE] = "";
    query.cursor_owner = caller.id;
    query.next_cursor = next_cursor;
    store_shard_lister_t lister = {reads->shard_count, standby_part, standby_cut, reads, key};
    json_t *data = json_array();
    bool has_more = false;
    status = store_shard_list(&lister, caller.scope == API_SCOPE_MERCHANT ? caller.id : NULL, &query, account_row,
                              data, &has_more);
    sodium_memzero(key, sizeof key);
    if (status != PC_OK) {
        json_decref(data);
        return NULL;
    }
    json_t *body = json_pack("{s:o,s:b}", "data", data, "has_more", has_more);
    if (next_cursor[0] != '\0') json_object_set_new(body, "next_cursor", json_string(next_cursor));
    return body;
}

bool api_forward_read_local(api_forward_reads_t *reads, api_forward_req_t *req) {
    char id[PC_ID_BYTES_MAX + 1];
    read_kind kind = reads != NULL ? read_of(req, api_forward_method(req), api_forward_path(req), id) : READ_NONE;
    if (kind == READ_NONE) return false;
    json_t *body = NULL;
    bool replied = false;
    if (kind == READ_ACCOUNTS) body = accounts_reply(reads, req, &replied);
    else if (kind == READ_TRANSFER) body = transfer_reply(reads, req, id, &replied);
    else body = account_reply(reads, req, id, kind, &replied);
    if (replied) return true;
    if (body == NULL) return false;
    api_forward_reply_json(req, 200, body, 0);
    return true;
}
