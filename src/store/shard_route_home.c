/* store/shard_route_home.c: the events outbox and the payments layer's rows on a set of
 * shards (docs/scaleout.md §6): both live on the home shard (0), like API keys and
 * idempotent replies, so the read store of a set sends their reads to shard 0's
 * reader. Their writes take a shard store's transaction (the writer's, or a global
 * transaction's home leg), never one of the read store (it opens none): the write
 * slots are the public functions themselves, which dispatch on the transaction's own
 * store. */
#include "store/shard_route_internal.h"
#include "store/store_backend.h"

#define HOME(reader) store_shard_route_home(reader)

/* ---- the outbox ---- */

static pc_status events_list(store_reader_t *reader, const store_events_query_t *query, store_event_fn fn,
                             void *ctx, bool *has_more) {
    return store_events_list(HOME(reader), query, fn, ctx, has_more);
}
static pc_status events_get(store_reader_t *reader, uint64_t seq, const char *owner, store_event_fn fn,
                            void *ctx) {
    return store_events_get(HOME(reader), seq, owner, fn, ctx);
}
static pc_status events_latest(store_reader_t *reader, uint64_t *seq_out) {
    return store_events_latest(HOME(reader), seq_out);
}
static pc_status events_count(store_reader_t *reader, uint64_t *count_out) {
    return store_events_count(HOME(reader), count_out);
}
static pc_status destinations_list(store_reader_t *reader, const char *merchant_id, const char *starting_after,
                                   uint32_t limit, store_event_destination_fn fn, void *ctx, bool *has_more) {
    return store_events_destinations_list(HOME(reader), merchant_id, starting_after, limit, fn, ctx, has_more);
}
static pc_status destination_get(store_reader_t *reader, const char *id, store_event_destination_t *out) {
    return store_events_destination_get(HOME(reader), id, out);
}
static pc_status destination_counts(store_reader_t *reader, const char *merchant_id, uint32_t *merchant_count,
                                    uint32_t *total_count) {
    return store_events_destination_counts(HOME(reader), merchant_id, merchant_count, total_count);
}
static pc_status deliveries_list(store_reader_t *reader, const char *destination_id, store_delivery_state state,
                                 uint64_t after_seq, uint32_t limit, store_event_delivery_fn fn, void *ctx,
                                 bool *has_more) {
    return store_events_deliveries_list(HOME(reader), destination_id, state, after_seq, limit, fn, ctx, has_more);
}

const store_events_ops_t store_shard_route_events_ops = {
    .writer_begin = store_events_writer_begin,
    .writer_reset = store_events_writer_reset,
    .writer_end = store_events_writer_end,
    .seq_next = store_events_seq_next,
    .insert = store_events_insert,
    .account_owners = store_events_account_owners,
    .list = events_list,
    .get = events_get,
    .latest = events_latest,
    .count = events_count,
    .destination_insert = store_events_destination_insert,
    .destination_delete = store_events_destination_delete,
    .cursor_advance = store_events_cursor_advance,
    .cursor_rewind = store_events_cursor_rewind,
    .destination_health = store_events_destination_health,
    .destination_secret = store_events_destination_secret,
    .destinations_list = destinations_list,
    .destination_get = destination_get,
    .destination_counts = destination_counts,
    .delivery_put = store_events_delivery_put,
    .delivery_delete = store_events_delivery_delete,
    .delivery_redeliver = store_events_delivery_redeliver,
    .deliveries_list = deliveries_list,
    .purge = store_events_purge,
};

/* ---- payments and the card vault ---- */

static pc_status object_get(store_reader_t *reader, const char *id, store_pay_object_t *out) {
    return store_pay_object_get(HOME(reader), id, out);
}
static pc_status objects_list(store_reader_t *reader, const store_pay_query_t *query, store_pay_object_fn fn,
                              void *ctx, bool *has_more) {
    return store_pay_objects_list(HOME(reader), query, fn, ctx, has_more);
}
static pc_status version_get(store_reader_t *reader, const char *object_id, uint32_t version, char **doc_out,
                             size_t *doc_bytes_out) {
    return store_pay_version_get(HOME(reader), object_id, version, doc_out, doc_bytes_out);
}
static pc_status lookup_get(store_reader_t *reader, const char *name, store_pay_lookup_t *out) {
    return store_pay_lookup_get(HOME(reader), name, out);
}
static pc_status lookups_prefix(store_reader_t *reader, const char *prefix, store_pay_lookup_fn fn, void *ctx) {
    return store_pay_lookups_prefix(HOME(reader), prefix, fn, ctx);
}
static pc_status vault_keys_list(store_reader_t *reader, store_vault_key_fn fn, void *ctx) {
    return store_vault_keys_list(HOME(reader), fn, ctx);
}
static pc_status vault_card_get(store_reader_t *reader, const char *token, store_vault_card_t *out) {
    return store_vault_card_get(HOME(reader), token, out);
}
static pc_status vault_cards_not_under(store_reader_t *reader, const char *key_id, const char *after_token,
                                       uint32_t limit, store_vault_card_fn fn, void *ctx) {
    return store_vault_cards_not_under(HOME(reader), key_id, after_token, limit, fn, ctx);
}

const store_payments_ops_t store_shard_route_payments_ops = {
    .object_put = store_pay_object_put,
    .object_get = object_get,
    .objects_list = objects_list,
    .version_put = store_pay_version_put,
    .version_get = version_get,
    .lookup_put = store_pay_lookup_put,
    .lookup_get = lookup_get,
    .lookups_prefix = lookups_prefix,
    .vault_key_put = store_vault_key_put,
    .vault_keys_list = vault_keys_list,
    .vault_card_put = store_vault_card_put,
    .vault_card_get = vault_card_get,
    .vault_cards_not_under = vault_cards_not_under,
    .vault_card_rekey = store_vault_card_rekey,
    .vault_key_retire = store_vault_key_retire,
};
