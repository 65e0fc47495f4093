/* store/shard_route.c: the read side of a set of shards as one store (store_shard.h):
 * what the API reads through when paycore serves --shards. Its readers hold one
 * reader per shard and send each read where its rows are:
 *
 *   - an account, its transfers, its history, a grant of it: the account's shard;
 *   - a transfer: the first shard holding its id; a transfer across shards has a leg
 *     on each (A -> clearing, clearing -> B) and reads back as A -> B, the debit leg's
 *     fields with the credit leg's credit account;
 *   - lists of accounts: shard by shard (each in creation order), the cursor's shard
 *     first: a page never skips or repeats an account; every page of one listing as of
 *     the first page's cut (each shard's journal seq then), carried by its cursor;
 *   - API keys, idempotent replies, the events outbox, payments' rows and the card
 *     vault: the home shard (0) (shard_route_home.c); all grants: every shard.
 *
 * Each read sees its shard's committed state. A read spanning shards (a page of
 * accounts, a transfer's two legs) holds the read fence: the coordinator holds it
 * shut while it commits a global transaction's legs, so such a read sees each global
 * transaction on every shard or on none (docs/scaleout.md §6, what a reader sees).
 * The write side is each shard's own store: every write slot here is unsupported. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/shard_route_internal.h"

/* The read fence: readers in, or the coordinator committing; the coordinator waits
 * for the readers inside and keeps new ones out (so steady reads cannot starve it). */
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    uint32_t readers;  /* reads spanning shards running now */
    bool shut;         /* a global transaction's legs are being committed */
} read_fence_t;

typedef struct {
    store_t base;
    store_t *stores[SHARD_COUNT_MAX]; /* borrowed */
    uint32_t count;
    read_fence_t fence;
    bool cursor_keyed;                /* set once, before the API reads */
    uint8_t cursor_key[STORE_CURSOR_KEY_BYTES];
} route_store_t;

static read_fence_t *fence_of(store_reader_t *reader) { return &((route_store_t *)reader->store)->fence; }

static void fence_enter(read_fence_t *fence) {
    pthread_mutex_lock(&fence->mutex);
    while (fence->shut) pthread_cond_wait(&fence->changed, &fence->mutex);
    fence->readers++;
    pthread_mutex_unlock(&fence->mutex);
}

static void fence_leave(read_fence_t *fence) {
    pthread_mutex_lock(&fence->mutex);
    if (--fence->readers == 0) pthread_cond_broadcast(&fence->changed);
    pthread_mutex_unlock(&fence->mutex);
}

void store_shard_route_fence(store_t *route, bool shut) {
    if (route == NULL) return;
    read_fence_t *fence = &((route_store_t *)route)->fence;
    pthread_mutex_lock(&fence->mutex);
    if (shut) {
        while (fence->shut) pthread_cond_wait(&fence->changed, &fence->mutex); /* one holder at a time */
        fence->shut = true;
        while (fence->readers > 0) pthread_cond_wait(&fence->changed, &fence->mutex);
    } else {
        fence->shut = false;
        pthread_cond_broadcast(&fence->changed);
    }
    pthread_mutex_unlock(&fence->mutex);
}

typedef struct {
    store_reader_t base;
    store_reader_t *readers[SHARD_COUNT_MAX];
    uint32_t count;
} route_reader_t;

static route_reader_t *rr(store_reader_t *reader) { return (route_reader_t *)reader; }
static store_reader_t *on_account(store_reader_t *reader, const char *account_id) {
    return rr(reader)->readers[store_shard_of(account_id, rr(reader)->count)];
}

/* ---- the write side: not here ---- */
static pc_status no_open(store_t **out, const char *location, const store_options_t *options) {
    (void)out, (void)location, (void)options;
    return PC_STORE_UNSUPPORTED;
}
static bool no_handles(const char *location) { (void)location; return false; }
static const char *route_location(const store_t *store) { (void)store; return "shards"; }
static const char *route_detail(const store_t *store) { (void)store; return "the write side is each shard's"; }
static pc_status no_load(store_t *s, ledger_t *l, journal_entry_t *h) { (void)s, (void)l, (void)h; return PC_STORE_UNSUPPORTED; }
static pc_status no_signer(store_t *s, uint8_t k[JOURNAL_PUBLIC_KEY_BYTES]) { (void)s, (void)k; return PC_STORE_UNSUPPORTED; }
static uint64_t no_head(const store_t *s) { (void)s; return 0; }
static pc_status no_find(void *ctx, const char *id, ledger_transfer_record_t *out) { (void)ctx, (void)id, (void)out; return PC_STORE_UNSUPPORTED; }
static ledger_source_t no_source(store_t *s) { return (ledger_source_t){no_find, s}; }
static pc_status no_begin(store_t *s, store_tx_t **out) { (void)s, (void)out; return PC_STORE_UNSUPPORTED; }
static pc_status no_changes(store_tx_t *tx, const ledger_t *l, const ledger_changes_t *c, uint64_t seq,
                            journal_content_t *content) {
    (void)tx, (void)l, (void)c, (void)seq, (void)content;
    return PC_STORE_UNSUPPORTED;
}
static pc_status no_journal(store_tx_t *tx, const journal_entry_t *e, const journal_checkpoint_t *cp) {
    (void)tx, (void)e, (void)cp;
    return PC_STORE_UNSUPPORTED;
}
static pc_status no_commit(store_tx_t *tx) { (void)tx; return PC_STORE_UNSUPPORTED; }
static void no_rollback(store_tx_t *tx) { (void)tx; }
static pc_status no_snapshot(store_t *s, const ledger_t *l) { (void)s, (void)l; return PC_STORE_UNSUPPORTED; }
static pc_status route_failed(const store_t *s) { (void)s; return PC_OK; }
static bool route_writable(const store_t *s) { (void)s; return true; }
static pc_status no_probe(store_t *s) { (void)s; return PC_STORE_UNSUPPORTED; }

static void route_close(store_t *base) {
    route_store_t *store = (route_store_t *)base;
    pthread_cond_destroy(&store->fence.changed);
    pthread_mutex_destroy(&store->fence.mutex);
    free(base);
}

/* ---- readers ---- */

static void route_reader_close(store_reader_t *base) {
    route_reader_t *reader = rr(base);
    for (uint32_t i = 0; i < reader->count; i++) store_reader_close(reader->readers[i]);
    free(reader);
}

static pc_status route_reader_open(store_t *base, store_reader_t **out) {
    route_store_t *store = (route_store_t *)base;
    route_reader_t *reader = calloc(1, sizeof *reader);
    if (reader == NULL) return PC_NO_MEMORY;
    reader->base.store = base;
    pc_status status = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < store->count; i++) {
        status = store_reader_open(store->stores[i], &reader->readers[i]);
        if (status == PC_OK) reader->count = i + 1;
    }
    if (status != PC_OK) {
        route_reader_close(&reader->base);
        return status;
    }
    *out = &reader->base;
    return PC_OK;
}

static pc_status route_read_account(store_reader_t *reader, const char *id, store_account_t *out) {
    return store_read_account(on_account(reader, id), id, out);
}

/* A leg of a transfer across shards: the clearing account on its far side names the
 * peer shard holding the other leg. */
static pc_status read_transfer_legs(store_reader_t *base, const char *id, store_transfer_t *out) {
    route_reader_t *reader = rr(base);
    pc_status status = PC_NOT_FOUND;
    for (uint32_t i = 0; status == PC_NOT_FOUND && i < reader->count; i++) {
        status = store_read_transfer(reader->readers[i], id, out);
    }
    if (status != PC_OK) return status;
    uint32_t self, peer;
    bool debit_leg = store_clearing_shard(out->transfer.credit_account_id, &self, &peer);
    if (!debit_leg && !store_clearing_shard(out->transfer.debit_account_id, &self, &peer)) return PC_OK;
    if (peer >= reader->count) return PC_OK;
    store_transfer_t other;
    if (store_read_transfer(reader->readers[peer], id, &other) != PC_OK) return PC_OK; /* a leg alone: as it is */
    store_transfer_legs_merge(out, &other, debit_leg);
    return PC_OK;
}

static pc_status route_read_transfer(store_reader_t *base, const char *id, store_transfer_t *out) {
    fence_enter(fence_of(base));
    pc_status status = read_transfer_legs(base, id, out);
    fence_leave(fence_of(base));
    return status;
}

/* A list's parts: each shard's reader, as of the cut. */
static pc_status route_part(void *ctx, uint32_t shard, const char *key_id, const store_query_t *query,
                            uint64_t as_of, store_account_fn fn, void *fn_ctx, bool *has_more) {
    return store_shard_list_as_of(rr(ctx)->readers[shard], key_id, query, as_of, fn, fn_ctx, has_more);
}

/* A first page's cut: each shard's head, read inside the read fence. */
static pc_status route_cut(void *ctx, store_cut_t *cut) {
    route_reader_t *reader = rr(ctx);
    pc_status status = PC_OK;
    fence_enter(fence_of(&reader->base));
    for (uint32_t i = 0; status == PC_OK && i < reader->count; i++) {
        status = store_shard_reader_cut(reader->readers[i], &cut->seq[i]);
    }
    fence_leave(fence_of(&reader->base));
    return status;
}

static pc_status list_read(store_reader_t *base, const char *key_id, const store_query_t *query,
                           store_account_fn fn, void *ctx, bool *has_more) {
    const route_store_t *store = (const route_store_t *)base->store;
    store_shard_lister_t lister = {rr(base)->count, route_part, route_cut, base,
                                   store->cursor_keyed ? store->cursor_key : NULL};
    return store_shard_list(&lister, key_id, query, fn, ctx, has_more);
}

static pc_status route_list_accounts(store_reader_t *reader, const store_query_t *query, store_account_fn fn,
                                     void *ctx, bool *has_more) {
    return list_read(reader, NULL, query, fn, ctx, has_more);
}

static pc_status route_list_accounts_granted(store_reader_t *reader, const char *key_id, const store_query_t *query,
                                             store_account_fn fn, void *ctx, bool *has_more) {
    return list_read(reader, key_id, query, fn, ctx, has_more);
}

void store_shard_route_cursor_key(store_t *route, const uint8_t key[STORE_CURSOR_KEY_BYTES]) {
    route_store_t *store = (route_store_t *)route;
    memcpy(store->cursor_key, key, STORE_CURSOR_KEY_BYTES);
    store->cursor_keyed = true;
}

static pc_status route_list_account_transfers(store_reader_t *reader, const char *account_id,
                                              const store_query_t *query, store_transfer_fn fn, void *ctx,
                                              bool *has_more) {
    return store_list_account_transfers(on_account(reader, account_id), account_id, query, fn, ctx, has_more);
}

static pc_status route_list_history(store_reader_t *reader, const char *account_id, const store_query_t *query,
                                    store_history_fn fn, void *ctx, bool *has_more) {
    return store_list_history(on_account(reader, account_id), account_id, query, fn, ctx, has_more);
}

/* ---- the API's rows: the home shard, grants where their account is ---- */

static store_reader_t *home(store_reader_t *reader) { return rr(reader)->readers[0]; }
store_reader_t *store_shard_route_home(store_reader_t *reader) { return home(reader); }

static pc_status no_key_insert(store_tx_t *tx, const store_api_key_t *key) { (void)tx, (void)key; return PC_STORE_UNSUPPORTED; }
static pc_status no_key_revoke(store_tx_t *tx, const char *id, uint64_t now_ns, bool *found) {
    (void)tx, (void)id, (void)now_ns, (void)found;
    return PC_STORE_UNSUPPORTED;
}
static pc_status no_grant_insert(store_tx_t *tx, const char *key_id, const char *account_id) {
    (void)tx, (void)key_id, (void)account_id;
    return PC_STORE_UNSUPPORTED;
}
static pc_status no_idem_put(store_tx_t *tx, const char *key_id, const char *idempotency_key,
                             store_api_idem_t *record, uint64_t *replaced) {
    (void)tx, (void)key_id, (void)idempotency_key, (void)record, (void)replaced;
    return PC_STORE_UNSUPPORTED;
}
static pc_status no_idem_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint64_t bytes_max,
                               store_api_idem_purged_fn fn, void *ctx) {
    (void)tx, (void)before_ns, (void)rows_max, (void)bytes_max, (void)fn, (void)ctx;
    return PC_STORE_UNSUPPORTED;
}

static pc_status route_keys_list(store_reader_t *reader, const char *starting_after, uint32_t limit,
                                 store_api_key_fn fn, void *ctx, bool *has_more) {
    return store_api_keys_list(home(reader), starting_after, limit, fn, ctx, has_more);
}

static pc_status route_grant_exists(store_reader_t *reader, const char *key_id, const char *account_id, bool *exists) {
    return store_api_grant_exists(on_account(reader, account_id), key_id, account_id, exists);
}

static pc_status route_grants_list(store_reader_t *base, store_api_grant_fn fn, void *ctx) {
    route_reader_t *reader = rr(base);
    pc_status status = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < reader->count; i++) {
        status = store_api_grants_list(reader->readers[i], fn, ctx);
    }
    return status;
}

static pc_status route_idem_get(store_reader_t *reader, const char *key_id, const char *idempotency_key,
                                store_api_idem_t *out, bool *found) {
    return store_api_idem_get(home(reader), key_id, idempotency_key, out, found);
}

static pc_status route_idem_keys(store_reader_t *reader, store_api_idem_key_fn fn, void *ctx) {
    return store_api_idem_keys(home(reader), fn, ctx);
}

static const store_api_ops_t route_api_ops = {
    .key_insert = no_key_insert,
    .key_revoke = no_key_revoke,
    .keys_list = route_keys_list,
    .grant_insert = no_grant_insert,
    .grant_exists = route_grant_exists,
    .grants_list = route_grants_list,
    .idem_get = route_idem_get,
    .idem_put = no_idem_put,
    .idem_purge = no_idem_purge,
    .idem_keys = route_idem_keys,
};

static const store_backend_ops_t route_ops = {
    .name = "postgres-shards",
    .handles = no_handles,
    .open = no_open,
    .close = route_close,
    .location = route_location,
    .error_detail = route_detail,
    .load = no_load,
    .journal_signer = no_signer,
    .journal_head_seq = no_head,
    .source = no_source,
    .prefetch = NULL,
    .tx_begin = no_begin,
    .tx_write_changes = no_changes,
    .tx_write_journal = no_journal,
    .tx_commit = no_commit,
    .tx_rollback = no_rollback,
    .balance_snapshot = no_snapshot,
    .failed = route_failed,
    .writable = route_writable,
    .probe = no_probe,
    .reader_open = route_reader_open,
    .reader_close = route_reader_close,
    .list_cursors = true,
    .read_account = route_read_account,
    .read_transfer = route_read_transfer,
    .list_accounts = route_list_accounts,
    .list_accounts_granted = route_list_accounts_granted,
    .list_account_transfers = route_list_account_transfers,
    .list_history = route_list_history,
    .api = &route_api_ops,
    .events = &store_shard_route_events_ops,     /* the home shard's (shard_route_home.c) */
    .payments = &store_shard_route_payments_ops,
    .two_phase = NULL,
};

pc_status store_shard_route_open(store_t **out, store_t *const *stores, uint32_t count) {
    route_store_t *store = calloc(1, sizeof *store);
    if (store == NULL) return PC_NO_MEMORY;
    store->base.ops = &route_ops;
    store->count = count;
    pthread_mutex_init(&store->fence.mutex, NULL);
    pthread_cond_init(&store->fence.changed, NULL);
    memcpy(store->stores, stores, sizeof *stores * count);
    *out = &store->base;
    return PC_OK;
}
