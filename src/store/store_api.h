/* store/store_api.h: the API's own tables (keys, grants, idempotent replies), written
 * inside the writer's batch transaction (store_tx_t, so they commit atomically with
 * the ledger rows) and read through a store reader. SQLite backend: sqlite_api.c. */
#ifndef PAYCORE_STORE_API_H
#define PAYCORE_STORE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"
#include "store/store.h"

#define STORE_API_HASH_BYTES 32

typedef struct {
    char id[PC_ID_SIZE];
    char scope[16];                      /* "admin", "merchant", "read_only" */
    char name[API_STRING_BYTES_MAX + 1];
    uint8_t key_hash[STORE_API_HASH_BYTES]; /* never the secret itself */
    uint64_t created_ns;
    uint64_t revoked_ns;                 /* 0 = active */
} store_api_key_t;

PC_MUST_USE pc_status store_api_key_insert(store_tx_t *tx, const store_api_key_t *key);
/* Marks 'id' revoked at 'now_ns' (the first revocation time is kept); *found false
 * when no such key. */
PC_MUST_USE pc_status store_api_key_revoke(store_tx_t *tx, const char *id, uint64_t now_ns,
                                           bool *found);
/* Keys in id order after 'starting_after' (or NULL), at most 'limit' (0 = all). */
typedef void (*store_api_key_fn)(const store_api_key_t *key, void *ctx);
PC_MUST_USE pc_status store_api_keys_list(store_reader_t *reader, const char *starting_after,
                                          uint32_t limit, store_api_key_fn fn, void *ctx,
                                          bool *has_more);

PC_MUST_USE pc_status store_api_grant_insert(store_tx_t *tx, const char *key_id,
                                             const char *account_id);
PC_MUST_USE pc_status store_api_grant_exists(store_reader_t *reader, const char *key_id,
                                             const char *account_id, bool *exists);
/* Every grant, in (key, account) order: the writer's ownership table is built from it. */
typedef void (*store_api_grant_fn)(const char *key_id, const char *account_id, void *ctx);
PC_MUST_USE pc_status store_api_grants_list(store_reader_t *reader, store_api_grant_fn fn, void *ctx);

/* A stored reply of an Idempotency-Key (scoped per API key). *found false when none;
 * otherwise *body_out is malloc'ed (caller frees). */
typedef struct {
    uint8_t request_hash[STORE_API_HASH_BYTES];
    int http_status;
    char *body;
    size_t body_bytes;
    uint64_t created_ns;
} store_api_idem_t;
PC_MUST_USE pc_status store_api_idem_get(store_reader_t *reader, const char *key_id,
                                         const char *idempotency_key, store_api_idem_t *out,
                                         bool *found);
PC_MUST_USE pc_status store_api_idem_put(store_tx_t *tx, const char *key_id,
                                         const char *idempotency_key,
                                         const store_api_idem_t *record);
/* Deletes replies older than 'before_ns' (at start; they must live >= 24 h). */
PC_MUST_USE pc_status store_api_idem_expire(store_tx_t *tx, uint64_t before_ns);

#endif
