/* store/store.c: the store's public functions, each a call through the ops table of
 * the backend the store was opened with (store_backend.h). Nothing here knows SQL.
 * One indirect call per batch step or read: nothing measurable next to the I/O
 * behind it; the ledger's per-event lookups go straight to the backend's
 * ledger_source_t. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/store_backend.h"
#include "store/store_shard.h"

/* Tried in order; the last takes any location. */
static const store_backend_ops_t *const backends[] = {&store_pg_ops, &store_sqlite_ops};

bool store_location_is_url(const char *location) {
    return strncmp(location, "postgres://", 11) == 0 || strncmp(location, "postgresql://", 13) == 0;
}

pc_status store_verify_each(const char *location, const char *pubkey_path, journal_report_t *report,
                            journal_balances_fn fn, void *ctx) {
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (!backends[i]->handles(location)) continue;
        return journal_verify_rows(backends[i]->verify_open, location, pubkey_path, report, fn, ctx);
    }
    return PC_STORE_OPEN_FAILED;
}

pc_status store_rows_open(const char *location, journal_rows_t **out, char *detail, size_t detail_bytes) {
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (backends[i]->handles(location)) return backends[i]->verify_open(location, out, detail, detail_bytes);
    }
    return PC_STORE_OPEN_FAILED;
}

pc_status store_verify(const char *location, const char *pubkey_path, journal_report_t *report) {
    return store_verify_each(location, pubkey_path, report, NULL, NULL);
}

pc_status store_open(store_t **out, const char *path, const store_options_t *options) {
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (!backends[i]->handles(path)) continue;
        pc_status status = backends[i]->open(out, path, options);
        if (status == PC_OK) PC_ASSERT((*out)->ops == backends[i]);
        return status;
    }
    return PC_STORE_OPEN_FAILED;
}

void store_close(store_t *store) {
    if (store != NULL) store->ops->close(store);
}

const char *store_path(const store_t *store) { return store->ops->location(store); }
const char *store_backend_name(const store_t *store) { return store->ops->name; }
const char *store_error_detail(const store_t *store) { return store->ops->error_detail(store); }

bool store_supports(const store_t *store, store_part part) {
    switch (part) {
    case STORE_PART_EVENTS: return store->ops->events != NULL;
    case STORE_PART_PAYMENTS: return store->ops->payments != NULL;
    case STORE_PART_FILE: return store->ops == &store_sqlite_ops;
    }
    return false;
}

pc_status store_load(store_t *store, ledger_t *ledger, journal_entry_t *head) {
    return store->ops->load(store, ledger, head);
}

pc_status store_journal_signer(store_t *store, uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES]) {
    return store->ops->journal_signer(store, public_key);
}

uint64_t store_journal_head_seq(const store_t *store) { return store->ops->journal_head_seq(store); }
ledger_source_t store_source(store_t *store) { return store->ops->source(store); }

pc_status store_prefetch(store_t *store, const char *const *ids, uint32_t id_count) {
    if (store->ops->prefetch == NULL || id_count == 0) return PC_OK;
    return store->ops->prefetch(store, ids, id_count);
}

bool store_wants_prefetch(const store_t *store) { return store->ops->prefetch != NULL; }

pc_status store_tx_begin(store_t *store, store_tx_t **out) {
    pc_status status = store->ops->tx_begin(store, out);
    if (status == PC_OK) PC_ASSERT((*out)->store == store);
    return status;
}

pc_status store_tx_write_changes(store_tx_t *tx, const ledger_t *ledger, const ledger_changes_t *changes,
                                 uint64_t batch_seq, journal_content_t *content) {
    return tx->store->ops->tx_write_changes(tx, ledger, changes, batch_seq, content);
}

pc_status store_tx_write_journal(store_tx_t *tx, const journal_entry_t *entry, const journal_checkpoint_t *checkpoint) {
    return tx->store->ops->tx_write_journal(tx, entry, checkpoint);
}

pc_status store_tx_commit(store_tx_t *tx) { return tx->store->ops->tx_commit(tx); }
void store_tx_rollback(store_tx_t *tx) { tx->store->ops->tx_rollback(tx); }

pc_status store_tx_begin_next(store_tx_t *first, store_tx_t **out) {
    if (first->store->ops->tx_begin_next == NULL) return PC_STORE_UNSUPPORTED;
    pc_status status = first->store->ops->tx_begin_next(first, out);
    if (status == PC_OK) PC_ASSERT((*out)->store == first->store);
    return status;
}

bool store_can_pipeline(const store_t *store) { return store->ops->tx_begin_next != NULL; }

pc_status store_balance_snapshot(store_t *store, const ledger_t *ledger) {
    return store->ops->balance_snapshot(store, ledger);
}

pc_status store_failed(const store_t *store) { return store->ops->failed(store); }
bool store_writable(const store_t *store) { return store->ops->writable(store); }
pc_status store_probe(store_t *store) { return store->ops->probe(store); }

void store_query_range(const store_query_t *query, int64_t after_ts, int64_t *low, int64_t *high) {
    *low = query->from_ns ? (int64_t)query->from_ns : INT64_MIN;
    *high = query->to_ns ? (int64_t)query->to_ns : INT64_MAX; /* exclusive */
    if (after_ts != 0) {
        if (query->descending) *high = after_ts < *high ? after_ts : *high;
        else *low = after_ts + 1 > *low ? after_ts + 1 : *low;
    }
}

pc_status store_replay_pending_amount(const ledger_source_t *source, const ledger_transfer_t *record,
                                      int64_t *amount, char *detail, size_t detail_bytes) {
    *amount = 0;
    if (!(record->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING))) return PC_OK;
    ledger_transfer_record_t pending;
    pc_status status = source->transfer_find(source->ctx, record->pending_id, &pending);
    if (status != PC_OK && status != PC_NOT_FOUND) return status;
    if (status != PC_OK || pending.failure != PC_OK) {
        snprintf(detail, detail_bytes, "replay: pending %s of %s not found", record->pending_id, record->id);
        return PC_STORE_CORRUPT;
    }
    *amount = pending.transfer.amount;
    return PC_OK;
}

/* ---- reads ---- */

pc_status store_reader_open(store_t *store, store_reader_t **out) {
    pc_status status = store->ops->reader_open(store, out);
    if (status == PC_OK) PC_ASSERT((*out)->store == store);
    return status;
}

void store_reader_close(store_reader_t *reader) {
    if (reader != NULL) reader->store->ops->reader_close(reader);
}

void store_account_free(store_account_t *account) {
    free(account->metadata_owned);
    account->metadata_owned = NULL;
}

void store_transfer_free(store_transfer_t *transfer) {
    free(transfer->metadata_owned);
    transfer->metadata_owned = NULL;
}

pc_status store_read_account(store_reader_t *reader, const char *id, store_account_t *out) {
    return reader->store->ops->read_account(reader, id, out);
}

pc_status store_read_transfer(store_reader_t *reader, const char *id, store_transfer_t *out) {
    return reader->store->ops->read_transfer(reader, id, out);
}

pc_status store_read_transfer_at(store_reader_t *reader, uint64_t timestamp_ns, const char *id,
                                 store_transfer_t *out) {
    if (reader->store->ops->read_transfer_at == NULL) return PC_STORE_UNSUPPORTED;
    return reader->store->ops->read_transfer_at(reader, timestamp_ns, id, out);
}

/* A store that issues no cursor refuses one (it would list from the start). */
static bool cursor_refused(const store_reader_t *reader, const store_query_t *query) {
    if (query->next_cursor != NULL) query->next_cursor[0] = '\0';
    return query->cursor != NULL && !reader->store->ops->list_cursors;
}

pc_status store_list_accounts(store_reader_t *reader, const store_query_t *query, store_account_fn fn, void *ctx,
                              bool *has_more) {
    *has_more = false;
    if (cursor_refused(reader, query)) return PC_LIST_CURSOR_INVALID;
    return reader->store->ops->list_accounts(reader, query, fn, ctx, has_more);
}

pc_status store_list_accounts_granted(store_reader_t *reader, const char *key_id, const store_query_t *query,
                                      store_account_fn fn, void *ctx, bool *has_more) {
    *has_more = false;
    if (cursor_refused(reader, query)) return PC_LIST_CURSOR_INVALID;
    return reader->store->ops->list_accounts_granted(reader, key_id, query, fn, ctx, has_more);
}

pc_status store_list_account_transfers(store_reader_t *reader, const char *account_id, const store_query_t *query,
                                       store_transfer_fn fn, void *ctx, bool *has_more) {
    return reader->store->ops->list_account_transfers(reader, account_id, query, fn, ctx, has_more);
}

pc_status store_list_history(store_reader_t *reader, const char *account_id, const store_query_t *query,
                             store_history_fn fn, void *ctx, bool *has_more) {
    return reader->store->ops->list_history(reader, account_id, query, fn, ctx, has_more);
}

/* ---- store_api.h ---- */

#define API_OF(handle) ((handle)->store->ops->api)

pc_status store_api_key_insert(store_tx_t *tx, const store_api_key_t *key) {
    return API_OF(tx)->key_insert(tx, key);
}

pc_status store_api_key_revoke(store_tx_t *tx, const char *id, uint64_t now_ns, bool *found) {
    return API_OF(tx)->key_revoke(tx, id, now_ns, found);
}

pc_status store_api_keys_list(store_reader_t *reader, const char *starting_after, uint32_t limit,
                              store_api_key_fn fn, void *ctx, bool *has_more) {
    return API_OF(reader)->keys_list(reader, starting_after, limit, fn, ctx, has_more);
}

pc_status store_api_grant_insert(store_tx_t *tx, const char *key_id, const char *account_id) {
    return API_OF(tx)->grant_insert(tx, key_id, account_id);
}

pc_status store_api_grant_exists(store_reader_t *reader, const char *key_id, const char *account_id, bool *exists) {
    return API_OF(reader)->grant_exists(reader, key_id, account_id, exists);
}

pc_status store_api_grants_list(store_reader_t *reader, store_api_grant_fn fn, void *ctx) {
    return API_OF(reader)->grants_list(reader, fn, ctx);
}

pc_status store_api_idem_get(store_reader_t *reader, const char *key_id, const char *idempotency_key,
                             store_api_idem_t *out, bool *found) {
    return API_OF(reader)->idem_get(reader, key_id, idempotency_key, out, found);
}

pc_status store_api_idem_put(store_tx_t *tx, const char *key_id, const char *idempotency_key,
                             store_api_idem_t *record, uint64_t *replaced_row_bytes) {
    return API_OF(tx)->idem_put(tx, key_id, idempotency_key, record, replaced_row_bytes);
}

pc_status store_api_idem_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint64_t bytes_max,
                               store_api_idem_purged_fn fn, void *ctx) {
    return API_OF(tx)->idem_purge(tx, before_ns, rows_max, bytes_max, fn, ctx);
}

pc_status store_api_idem_keys(store_reader_t *reader, store_api_idem_key_fn fn, void *ctx) {
    return API_OF(reader)->idem_keys(reader, fn, ctx);
}

/* ---- two-phase commit (store_shard.h) ---- */

bool store_supports_two_phase(const store_t *store) { return store->ops->two_phase != NULL; }

pc_status store_tx_prepare(store_tx_t *tx, const char *gtid) {
    return tx->store->ops->two_phase->tx_prepare(tx, gtid);
}

pc_status store_tx_commit_prepared(store_tx_t *tx) { return tx->store->ops->two_phase->tx_commit_prepared(tx); }
pc_status store_tx_rollback_prepared(store_tx_t *tx) { return tx->store->ops->two_phase->tx_rollback_prepared(tx); }
