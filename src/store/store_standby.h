/* store/store_standby.h: the reads a standby node of a set answers itself, straight
 * from the shards' databases (docs/scaleout.md §7, standby reads). A standby holds no
 * ledger: an account's committed balances are computed by the database from its
 * balance snapshot (the account row, as of paycore_meta.accounts_as_of_seq) and the
 * transfers committed after it, the same replay the writer makes at load
 * (ledger_load_replay), in one statement: what every batch committed before the
 * statement began says. A transfer is its row (a cross-shard transfer's legs are
 * merged by the caller). PostgreSQL only. */
#ifndef PAYCORE_STORE_STANDBY_H
#define PAYCORE_STORE_STANDBY_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "store/store_api.h"
#include "store/store_shard.h"

typedef struct store_standby store_standby_t;

/* Connections to each shard, opened when first needed and kept (any thread). */
PC_MUST_USE pc_status store_standby_open(store_standby_t **out, const char *const *urls, uint32_t count);
void store_standby_close(store_standby_t *standby);

/* The key whose hash is 'key_hash' (on shard 0): PC_OK, PC_NOT_FOUND, or
 * PC_STORE_READ_FAILED. */
PC_MUST_USE pc_status store_standby_key_find(store_standby_t *standby, const uint8_t key_hash[STORE_API_HASH_BYTES],
                                             store_api_key_t *out);
/* Whether 'key_id' was granted 'account_id' (on the account's shard 'shard'). */
PC_MUST_USE pc_status store_standby_grant_exists(store_standby_t *standby, uint32_t shard, const char *key_id,
                                                 const char *account_id, bool *exists);
/* Account 'id' on shard 'shard' with its committed balances: PC_OK (free with
 * store_account_free), PC_NOT_FOUND, or PC_STORE_READ_FAILED. */
PC_MUST_USE pc_status store_standby_account(store_standby_t *standby, uint32_t shard, const char *id,
                                            store_account_t *out);
/* The key whose hash is 'key_hash' and account 'id' (on shard 'shard', with its
 * committed balances) read together: on shard 0 one statement, which also says whether
 * the key was granted the account (*granted, *granted_known true); on another shard
 * the key's statement (shard 0) and the account's at once, on two connections
 * (*granted_known false). PC_OK (free the account with store_account_free),
 * PC_NOT_FOUND (either is missing), or PC_STORE_READ_FAILED. */
PC_MUST_USE pc_status store_standby_key_account(store_standby_t *standby,
                                                const uint8_t key_hash[STORE_API_HASH_BYTES], uint32_t shard,
                                                const char *id, store_api_key_t *key, store_account_t *out,
                                                bool *granted, bool *granted_known);
/* Transfer (or leg) 'id' as shard 'shard' holds it: PC_OK (free with
 * store_transfer_free), PC_NOT_FOUND, or PC_STORE_READ_FAILED. */
PC_MUST_USE pc_status store_standby_transfer(store_standby_t *standby, uint32_t shard, const char *id,
                                             store_transfer_t *out);
/* The key whose hash is 'key_hash' and transfer (or leg) 'id' as shard 0 holds it, in
 * one statement, with whether the key was granted one of that leg's accounts
 * (*granted): PC_OK (the key found; *found when shard 0 holds the transfer, then in
 * 'out': free with store_transfer_free), PC_NOT_FOUND (no such key), or
 * PC_STORE_READ_FAILED. */
PC_MUST_USE pc_status store_standby_key_transfer(store_standby_t *standby,
                                                 const uint8_t key_hash[STORE_API_HASH_BYTES], const char *id,
                                                 store_api_key_t *key, store_transfer_t *out, bool *found,
                                                 bool *granted);
/* Transfer (or leg) 'id' on every shard from 'first_shard' on, the statements sent at
 * once (one round trip): statuses[i] and out[i] (PC_OK: free with store_transfer_free)
 * for each; PC_STORE_READ_FAILED when a shard could not be read. */
PC_MUST_USE pc_status store_standby_transfers(store_standby_t *standby, uint32_t first_shard, const char *id,
                                              store_transfer_t *out, pc_status *statuses);
/* A page of account 'account_id''s transfers (or of its balance history) as the
 * writer's readers give it, from the account's shard 'shard': PC_OK, PC_NOT_FOUND (no
 * such account, or no such starting_after), or PC_STORE_READ_FAILED. */
PC_MUST_USE pc_status store_standby_list_account_transfers(store_standby_t *standby, uint32_t shard,
                                                           const char *account_id, const store_query_t *query,
                                                           store_transfer_fn fn, void *ctx, bool *has_more);
PC_MUST_USE pc_status store_standby_list_history(store_standby_t *standby, uint32_t shard, const char *account_id,
                                                 const store_query_t *query, store_history_fn fn, void *ctx,
                                                 bool *has_more);

/* A set's list of accounts (store_shard_lister_t, store_shard.h): one shard's part as of
 * 'as_of' (the balances from the rows: a standby has no shadow); a first page's cut,
 * every shard's head read while the read fence (the advisory lock on shard 0) is held
 * shared, so the heads agree on every global transaction; the set's cursor key
 * (PC_NOT_FOUND: the set's writer has not made one yet). The cut is PC_STORE_BUSY
 * while a global transaction is committed on some shards and prepared on others (its
 * coordinator died between them; the next writer's recovery ends it): the writer's
 * own reads wait for that recovery, a standby forwards. */
PC_MUST_USE pc_status store_standby_list_as_of(store_standby_t *standby, uint32_t shard, const char *key_id,
                                               const store_query_t *query, uint64_t as_of, store_account_fn fn,
                                               void *ctx, bool *has_more);
PC_MUST_USE pc_status store_standby_cut(store_standby_t *standby, store_cut_t *cut);
PC_MUST_USE pc_status store_standby_cursor_key(store_standby_t *standby, uint8_t key[STORE_CURSOR_KEY_BYTES]);

#endif
