/* store/store_backend.h: what a store backend implements. store.h, store_api.h,
 * store_events.h and store_payments.h are the contract the rest of paycore sees;
 * store.c turns each of their calls into a call through the ops table of the backend
 * the store was opened with, chosen by store_open from its location (a file path:
 * SQLite, sqlite_*.c; a postgres:// URL: PostgreSQL, pg_*.c). Nothing above store.h
 * includes this header. Only src/store/ does.
 *
 * Every backend object begins with the matching base struct below, so that store.c
 * finds the ops from any handle; a backend casts the handle back to its own type.
 * Each slot has the meaning of the public function of the same name (see its
 * header); the notes here say only what a backend must add to that. A sub-table may
 * be NULL while a backend lacks that part: its calls then answer
 * PC_STORE_UNSUPPORTED and store_supports() tells callers beforehand. */
#ifndef PAYCORE_STORE_BACKEND_H
#define PAYCORE_STORE_BACKEND_H

#include "store/store.h"
#include "store/store_api.h"
#include "store/store_events.h"
#include "store/store_payments.h"

typedef struct store_backend_ops store_backend_ops_t;

struct store {
    const store_backend_ops_t *ops;  /* set by the backend's open */
};
struct store_tx {
    store_t *store;                  /* the store the transaction runs on */
};
struct store_reader {
    store_t *store;
};
struct store_events_writer {
    store_t *store;
};

/* store_api.h: the API's keys, grants and idempotent replies. */
typedef struct {
    pc_status (*key_insert)(store_tx_t *tx, const store_api_key_t *key);
    pc_status (*key_revoke)(store_tx_t *tx, const char *id, uint64_t now_ns, bool *found);
    pc_status (*keys_list)(store_reader_t *reader, const char *starting_after, uint32_t limit,
                           store_api_key_fn fn, void *ctx, bool *has_more);
    pc_status (*grant_insert)(store_tx_t *tx, const char *key_id, const char *account_id);
    pc_status (*grant_exists)(store_reader_t *reader, const char *key_id, const char *account_id,
                              bool *exists);
    pc_status (*grants_list)(store_reader_t *reader, store_api_grant_fn fn, void *ctx);
    pc_status (*idem_get)(store_reader_t *reader, const char *key_id, const char *idempotency_key,
                          store_api_idem_t *out, bool *found);
    pc_status (*idem_put)(store_tx_t *tx, const char *key_id, const char *idempotency_key,
                          store_api_idem_t *record, uint64_t *replaced_row_bytes);
    pc_status (*idem_purge)(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint64_t bytes_max,
                            store_api_idem_purged_fn fn, void *ctx);
    pc_status (*idem_keys)(store_reader_t *reader, store_api_idem_key_fn fn, void *ctx);
} store_api_ops_t;

/* store_events.h: the outbox and its delivery state. */
typedef struct {
    /* The writer object begins with struct store_events_writer. */
    pc_status (*writer_begin)(store_tx_t *tx, store_events_writer_t **out);
    /* Transfer events may be stored as references to the transfers they name
     * (store_events_ledger_refs): the transfers live in the same database, and no
     * shard's outbox copies these rows whole into another's. */
    bool ledger_refs;
    void (*writer_reset)(store_events_writer_t *writer);
    void (*writer_end)(store_events_writer_t *writer);
    pc_status (*seq_next)(store_events_writer_t *writer, uint64_t floor_ns, uint64_t *seq_out);
    pc_status (*insert)(store_events_writer_t *writer, const store_event_t *event);
    pc_status (*account_owners)(store_events_writer_t *writer, const char *account_id,
                                char (*owners)[PC_ID_SIZE], uint32_t owners_max, uint32_t *count);
    pc_status (*list)(store_reader_t *reader, const store_events_query_t *query, store_event_fn fn,
                      void *ctx, bool *has_more);
    pc_status (*get)(store_reader_t *reader, uint64_t seq, const char *owner, store_event_fn fn, void *ctx);
    pc_status (*latest)(store_reader_t *reader, uint64_t *seq_out);
    pc_status (*count)(store_reader_t *reader, uint64_t *count_out);
    pc_status (*destination_insert)(store_tx_t *tx, const store_event_destination_t *destination);
    pc_status (*destination_delete)(store_tx_t *tx, const char *id, bool *found);
    pc_status (*cursor_advance)(store_tx_t *tx, const char *id, uint64_t epoch, uint64_t seq);
    pc_status (*cursor_rewind)(store_tx_t *tx, const char *id, uint64_t since_ns, bool *found);
    pc_status (*destination_health)(store_tx_t *tx, const char *id, uint64_t failing_since_ns,
                                    uint64_t disabled_ns, const char *reason);
    pc_status (*destination_secret)(store_tx_t *tx, const char *id, const uint8_t *box, uint32_t box_bytes,
                                    const uint8_t *previous_box, uint32_t previous_box_bytes,
                                    uint64_t previous_until_ns, bool *found);
    pc_status (*destinations_list)(store_reader_t *reader, const char *merchant_id, const char *starting_after,
                                   uint32_t limit, store_event_destination_fn fn, void *ctx, bool *has_more);
    pc_status (*destination_get)(store_reader_t *reader, const char *id, store_event_destination_t *out);
    pc_status (*destination_counts)(store_reader_t *reader, const char *merchant_id, uint32_t *merchant_count,
                                    uint32_t *total_count);
    pc_status (*delivery_put)(store_tx_t *tx, const store_event_delivery_t *delivery, uint64_t epoch);
    pc_status (*delivery_delete)(store_tx_t *tx, const char *destination_id, uint64_t seq);
    pc_status (*delivery_redeliver)(store_tx_t *tx, const char *destination_id, uint64_t seq, uint64_t now_ns);
    pc_status (*deliveries_list)(store_reader_t *reader, const char *destination_id, store_delivery_state state,
                                 uint64_t after_seq, uint32_t limit, store_event_delivery_fn fn, void *ctx,
                                 bool *has_more);
    pc_status (*purge)(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint32_t *deleted_count);
} store_events_ops_t;

/* store_payments.h: payments' objects, lookups and the card vault. */
typedef struct {
    pc_status (*object_put)(store_tx_t *tx, const store_pay_object_t *object);
    pc_status (*object_get)(store_reader_t *reader, const char *id, store_pay_object_t *out);
    pc_status (*objects_list)(store_reader_t *reader, const store_pay_query_t *query, store_pay_object_fn fn,
                              void *ctx, bool *has_more);
    pc_status (*version_put)(store_tx_t *tx, const char *object_id, uint32_t version, const char *doc,
                             size_t doc_bytes);
    pc_status (*version_get)(store_reader_t *reader, const char *object_id, uint32_t version, char **doc_out,
                             size_t *doc_bytes_out);
    /* Optional (NULL: records are kept as given): a record's stored form made on any
     * thread, before its command reaches the writer (store_pay_version_pack). */
    pc_status (*version_pack)(const char *doc, size_t doc_bytes, uint8_t **packed_out, size_t *packed_bytes_out);
    /* Optional (NULL: version_put): version_put with the form version_pack made of 'doc'. */
    pc_status (*version_put_packed)(store_tx_t *tx, const char *object_id, uint32_t version, const char *doc,
                                    size_t doc_bytes, const uint8_t *packed, size_t packed_bytes);
    pc_status (*lookup_put)(store_tx_t *tx, const char *name, const char *object_id, const uint8_t *extra,
                            size_t extra_bytes);
    pc_status (*lookup_get)(store_reader_t *reader, const char *name, store_pay_lookup_t *out);
    pc_status (*lookups_prefix)(store_reader_t *reader, const char *prefix, store_pay_lookup_fn fn, void *ctx);
    pc_status (*vault_key_put)(store_tx_t *tx, const store_vault_key_t *key);
    pc_status (*vault_keys_list)(store_reader_t *reader, store_vault_key_fn fn, void *ctx);
    pc_status (*vault_card_put)(store_tx_t *tx, const store_vault_card_t *card);
    pc_status (*vault_card_get)(store_reader_t *reader, const char *token, store_vault_card_t *out);
    pc_status (*vault_cards_not_under)(store_reader_t *reader, const char *key_id, const char *after_token,
                                       uint32_t limit, store_vault_card_fn fn, void *ctx);
    pc_status (*vault_card_rekey)(store_tx_t *tx, const store_vault_card_t *card, const char *from_key_id);
    pc_status (*vault_key_retire)(store_tx_t *tx, const char *key_id, bool *retired);
} store_payments_ops_t;

/* store_shard.h: two-phase commit of a writer batch. */
typedef struct {
    /* PREPARE TRANSACTION instead of COMMIT; the transaction object stays until one of
     * the two below frees it. */
    pc_status (*tx_prepare)(store_tx_t *tx, const char *gtid);
    pc_status (*tx_commit_prepared)(store_tx_t *tx);
    pc_status (*tx_rollback_prepared)(store_tx_t *tx);
} store_two_phase_ops_t;

struct store_backend_ops {
    const char *name;  /* "sqlite", "postgres": logs and /metrics */
    /* Whether this backend handles 'location' (a path, a URL): store_open asks each
     * backend in turn; the SQLite backend, last, takes anything. */
    bool (*handles)(const char *location);
    /* Opens and checks the store; on failure logs one line naming the cause and
     * frees everything. The store begins with struct store, ops set. */
    pc_status (*open)(store_t **out, const char *location, const store_options_t *options);
    void (*close)(store_t *store);
    /* The location as given to open, for messages: secrets (a URL's password) are
     * the backend's to hide. */
    const char *(*location)(const store_t *store);
    const char *(*error_detail)(const store_t *store);
    pc_status (*load)(store_t *store, ledger_t *ledger, journal_entry_t *head);
    pc_status (*journal_signer)(store_t *store, uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES]);
    uint64_t (*journal_head_seq)(const store_t *store);
    ledger_source_t (*source)(store_t *store);
    /* Optional (NULL: lookups are cheap one by one). Before a batch is applied, the
     * writer names every transfer id the batch may look up (ids and pending ids):
     * the backend fetches them in one round trip, so that the source's lookups during
     * the batch need none. Ids not named still work, one lookup each. */
    pc_status (*prefetch)(store_t *store, const char *const *ids, uint32_t id_count);
    /* The transaction begins with struct store_tx, store set. */
    pc_status (*tx_begin)(store_t *store, store_tx_t **out);
    pc_status (*tx_write_changes)(store_tx_t *tx, const ledger_t *ledger, const ledger_changes_t *changes,
                                  uint64_t batch_seq, journal_content_t *content);
    pc_status (*tx_write_journal)(store_tx_t *tx, const journal_entry_t *entry,
                                  const journal_checkpoint_t *checkpoint);
    pc_status (*tx_commit)(store_tx_t *tx);
    void (*tx_rollback)(store_tx_t *tx);
    /* Optional (NULL: one transaction at a time). store_tx_begin_next: the next
     * part's transaction, on a second connection. */
    pc_status (*tx_begin_next)(store_tx_t *first, store_tx_t **out);
    pc_status (*balance_snapshot)(store_t *store, const ledger_t *ledger);
    pc_status (*failed)(const store_t *store);
    bool (*writable)(const store_t *store);
    pc_status (*probe)(store_t *store);
    /* The reader begins with struct store_reader, store set; it has a connection of
     * its own and never waits for the writer. */
    pc_status (*reader_open)(store_t *store, store_reader_t **out);
    /* Reads lists of accounts as of their first page and issues cursors (a set of
     * shards: shard_route.c); false: no cursor is issued, one given is refused. */
    bool list_cursors;
    void (*reader_close)(store_reader_t *reader);
    pc_status (*read_account)(store_reader_t *reader, const char *id, store_account_t *out);
    pc_status (*read_transfer)(store_reader_t *reader, const char *id, store_transfer_t *out);
    /* By its timestamp (the key of the transfers' table), without the id index; NULL
     * when the backend has no such key (store_read_transfer_at answers unsupported). */
    pc_status (*read_transfer_at)(store_reader_t *reader, uint64_t timestamp_ns, const char *id,
                                  store_transfer_t *out);
    /* Both lists of accounts: with query->cursor (list_cursors true; false: store.c
     * refuses a cursor) and query->next_cursor. */
    pc_status (*list_accounts)(store_reader_t *reader, const store_query_t *query, store_account_fn fn,
                               void *ctx, bool *has_more);
    pc_status (*list_accounts_granted)(store_reader_t *reader, const char *key_id, const store_query_t *query,
                                       store_account_fn fn, void *ctx, bool *has_more);
    pc_status (*list_account_transfers)(store_reader_t *reader, const char *account_id,
                                        const store_query_t *query, store_transfer_fn fn, void *ctx,
                                        bool *has_more);
    pc_status (*list_history)(store_reader_t *reader, const char *account_id, const store_query_t *query,
                              store_history_fn fn, void *ctx, bool *has_more);
    /* Opens one consistent read-only snapshot of the store at 'location' for verify:
     * the rows journal/verify.h names, without the writer's lock (a live writer
     * keeps going). */
    journal_rows_open_fn verify_open;
    const store_api_ops_t *api;            /* required */
    const store_events_ops_t *events;      /* NULL: no outbox on this backend yet */
    const store_payments_ops_t *payments;  /* NULL: no payments tables on this backend yet */
    const store_two_phase_ops_t *two_phase; /* NULL: no two-phase commit (SQLite) */
};

/* ---- helpers every backend uses (store.c) ---- */
/* [*low, *high) of timestamps for a page of 'query' after the row at 'after_ts' (0:
 * from the start): the query's bounds, narrowed by the cursor in its direction. */
void store_query_range(const store_query_t *query, int64_t after_ts, int64_t *low, int64_t *high);
/* Replaying a committed post/void/expiry needs the amount its pending transfer held:
 * *amount from 'source' (0 for any other transfer). A pending transfer that is not
 * there is a damaged store: PC_STORE_CORRUPT with 'detail' naming both ids. */
pc_status store_replay_pending_amount(const ledger_source_t *source, const ledger_transfer_t *record,
                                      int64_t *amount, char *detail, size_t detail_bytes);

extern const store_backend_ops_t store_sqlite_ops;  /* sqlite_store.c */
extern const store_backend_ops_t store_pg_ops;      /* pg_store.c */
extern const store_two_phase_ops_t store_pg_two_phase_ops; /* pg_tx.c */
/* The backends' verify_open (sqlite_verify.c, pg_verify.c). */
pc_status store_sqlite_verify_open(const char *location, journal_rows_t **out, char *detail, size_t detail_bytes);
pc_status store_pg_verify_open(const char *location, journal_rows_t **out, char *detail, size_t detail_bytes);

#endif
