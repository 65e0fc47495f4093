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
    uint64_t row_bytes;   /* the room the row takes (body, keys, hash): set by put */
    bool absent_known;    /* put: no row of the key exists (the in-memory index says so),
                             so none is replaced and its size need not be read */
} store_api_idem_t;
PC_MUST_USE pc_status store_api_idem_get(store_reader_t *reader, const char *key_id,
                                         const char *idempotency_key, store_api_idem_t *out,
                                         bool *found);
/* Stores a reply, replacing an expired one of the same key: *replaced_row_bytes is the
 * room the replaced row took (0: none); record->row_bytes is filled in. */
PC_MUST_USE pc_status store_api_idem_put(store_tx_t *tx, const char *key_id,
                                         const char *idempotency_key,
                                         store_api_idem_t *record, uint64_t *replaced_row_bytes);
/* Deletes the oldest replies created before 'before_ns': at most 'rows_max' rows
 * (<= API_IDEM_PURGE_ROWS_MAX) and, past the first, at most 'bytes_max' bytes of rows.
 * Calls 'fn' for each deleted row. */
typedef void (*store_api_idem_purged_fn)(const char *key_id, const char *idempotency_key,
                                         uint64_t row_bytes, void *ctx);
PC_MUST_USE pc_status store_api_idem_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max,
                                           uint64_t bytes_max, store_api_idem_purged_fn fn,
                                           void *ctx);
/* Every stored reply's key and the room its row takes (the in-memory index of keys and
 * each API key's room are loaded from them), in no particular order, without reading
 * a body. 'fn' answering false stops the scan there: PC_SHUTTING_DOWN (a stop asked
 * during a scan of millions of rows need not wait for the rest). */
typedef bool (*store_api_idem_key_fn)(const char *key_id, const char *idempotency_key, uint64_t row_bytes,
                                      void *ctx);
PC_MUST_USE pc_status store_api_idem_keys(store_reader_t *reader, store_api_idem_key_fn fn, void *ctx);

#endif
