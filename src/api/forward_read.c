/* api/forward_read.c: the reads a standby of a set answers itself instead of
 * forwarding them (docs/scaleout.md §7, standby reads): GET /v1/accounts/{id} from
 * the account's shard and GET /v1/transfers/{id} from the shard holding it
 * (store_standby.h), with what every batch committed before the read says. A
 * transfer across shards is its two legs merged (A -> B, as the writer's read store
 * gives it); a leg whose peer is not committed yet (the coordinator is between its
 * COMMITs) is forwarded, so that no read shows half of a global transaction. The key is looked up on shard 0 at each read, so a key made or revoked a
 * moment ago on the writer counts here at once; the standby takes a token from its own
 * bucket for the key (--rate-per-s applies on each node). Whatever is not the plain
 * success of such a read (no key or an unknown one, a query string, an account the
 * key may not see or that does not exist, a shard that cannot be read) is forwarded,
 * so the writer gives every refusal exactly as it does. */
#include <microhttpd.h>
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

typedef enum { READ_NONE, READ_ACCOUNT, READ_TRANSFER } read_kind;

/* The id of "GET /v1/accounts/{id}" or "GET /v1/transfers/{id}" with no query string,
 * or NULL. */
static const char *read_id(struct MHD_Connection *connection, const char *method, const char *url, read_kind *kind) {
    static const char accounts[] = "/v1/accounts/", transfers[] = "/v1/transfers/";
    const char *id = NULL;
    if (strcmp(method, "GET") != 0) return NULL;
    if (strncmp(url, accounts, sizeof accounts - 1) == 0) id = url + sizeof accounts - 1, *kind = READ_ACCOUNT;
    if (strncmp(url, transfers, sizeof transfers - 1) == 0) id = url + sizeof transfers - 1, *kind = READ_TRANSFER;
    if (id == NULL || !pc_id_valid(id) || strchr(id, '/') != NULL || store_id_reserved(id)) return NULL;
    if (MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, NULL, NULL) > 0) return NULL;
    return id;
}

/* The caller of "Authorization: Bearer <secret>" as shard 0 knows it now, its token
 * taken: PC_OK, PC_RATE_LIMITED (*retry_after_s), or anything else (forwarded). */
static pc_status caller_of(api_forward_reads_t *reads, struct MHD_Connection *connection, api_caller_t *caller,
                           uint32_t *retry_after_s) {
    const char *header = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (header == NULL || strncasecmp(header, "Bearer", 6) != 0 || header[6] != ' ') return PC_UNAUTHENTICATED;
    const char *secret = header + 6;
    while (*secret == ' ') secret++;
    if (strlen(secret) > 128) return PC_UNAUTHENTICATED;
    api_key_entry_t entry = {0};
    api_key_hash(secret, entry.hash);
    store_api_key_t row;
    pc_status status = store_standby_key_find(reads->standby, entry.hash, &row);
    if (status != PC_OK) return status;
    if (row.revoked_ns != 0 || !api_scope_parse(row.scope, &entry.scope)) return PC_UNAUTHENTICATED;
    memcpy(entry.id, row.id, sizeof entry.id);
    memcpy(entry.name, row.name, sizeof entry.name);
    entry.created_ns = row.created_ns;
    api_keys_put(&reads->keys, &entry); /* a new key gets a full bucket; a known one keeps its own */
    return api_keys_authenticate(&reads->keys, secret, caller, retry_after_s);
}

/* Whether the caller may see account 'id' (a merchant key: its grant). */
static bool visible(api_forward_reads_t *reads, const api_caller_t *caller, const char *id) {
    if (caller->scope != API_SCOPE_MERCHANT) return true;
    bool granted = false;
    pc_status status = store_standby_grant_exists(reads->standby, store_shard_of(id, reads->shard_count), caller->id,
                                                  id, &granted);
    return status == PC_OK && granted;
}

static json_t *account_read(api_forward_reads_t *reads, const api_caller_t *caller, const char *id) {
    store_account_t account;
    if (!visible(reads, caller, id)) return NULL;
    if (store_standby_account(reads->standby, store_shard_of(id, reads->shard_count), id, &account) != PC_OK) {
        return NULL;
    }
    json_t *body = codec_account_json(&account.account);
    store_account_free(&account);
    return body;
}

/* A transfer's row; a leg across shards merged with its peer's (the debit leg's
 * fields, the credit leg's credit account): false when the peer leg is not there. */
static bool transfer_find(api_forward_reads_t *reads, const char *id, store_transfer_t *out) {
    pc_status status = PC_NOT_FOUND;
    for (uint32_t i = 0; status == PC_NOT_FOUND && i < reads->shard_count; i++) {
        status = store_standby_transfer(reads->standby, i, id, out);
    }
    if (status != PC_OK) return false;
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

static json_t *transfer_read(api_forward_reads_t *reads, const api_caller_t *caller, const char *id) {
    store_transfer_t transfer;
    if (!transfer_find(reads, id, &transfer)) return NULL;
    json_t *body = NULL;
    if (visible(reads, caller, transfer.transfer.debit_account_id) ||
        visible(reads, caller, transfer.transfer.credit_account_id)) {
        body = codec_transfer_json(&transfer.transfer, transfer.pending_state);
    }
    store_transfer_free(&transfer);
    return body;
}

bool api_forward_read_local(api_forward_reads_t *reads, struct MHD_Connection *connection, const char *method,
                            const char *url, enum MHD_Result *result) {
    read_kind kind = READ_NONE;
    const char *id = reads != NULL ? read_id(connection, method, url, &kind) : NULL;
    if (id == NULL) return false;
    api_caller_t caller;
    uint32_t retry_after_s = 1;
    pc_status status = caller_of(reads, connection, &caller, &retry_after_s);
    if (status == PC_RATE_LIMITED) {
        *result = api_forward_reply_error(connection, status, NULL, retry_after_s);
        return true;
    }
    if (status != PC_OK) return false;
    json_t *body = kind == READ_ACCOUNT ? account_read(reads, &caller, id) : transfer_read(reads, &caller, id);
    if (body == NULL) return false;
    *result = api_forward_reply_json(connection, 200, body, 0);
    return true;
}
