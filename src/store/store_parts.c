/* store/store_parts.c: the calls of store_events.h and store_payments.h, each through
 * its sub-table of the store's backend (store_backend.h). A backend without the part
 * answers PC_STORE_UNSUPPORTED (store_supports says so beforehand). */
#include <stdlib.h>

#include "store/store_backend.h"

#define EVENTS_OF(handle) ((handle)->store->ops->events)
#define PAYMENTS_OF(handle) ((handle)->store->ops->payments)

/* ---- store_events.h ---- */

pc_status store_events_writer_begin(store_tx_t *tx, store_events_writer_t **out) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->writer_begin(tx, out);
}

bool store_events_ledger_refs(const store_events_writer_t *writer) {
    return EVENTS_OF(writer) != NULL && EVENTS_OF(writer)->ledger_refs;
}

void store_events_writer_reset(store_events_writer_t *writer) {
    if (EVENTS_OF(writer) != NULL) EVENTS_OF(writer)->writer_reset(writer);
}

void store_events_writer_end(store_events_writer_t *writer) {
    if (writer != NULL && EVENTS_OF(writer) != NULL) EVENTS_OF(writer)->writer_end(writer);
}

pc_status store_events_seq_next(store_events_writer_t *writer, uint64_t floor_ns, uint64_t *seq_out) {
    if (EVENTS_OF(writer) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(writer)->seq_next(writer, floor_ns, seq_out);
}

pc_status store_events_insert(store_events_writer_t *writer, const store_event_t *event) {
    if (EVENTS_OF(writer) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(writer)->insert(writer, event);
}

pc_status store_events_account_owners(store_events_writer_t *writer, const char *account_id,
                                      char (*owners)[PC_ID_SIZE], uint32_t owners_max, uint32_t *count) {
    if (EVENTS_OF(writer) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(writer)->account_owners(writer, account_id, owners, owners_max, count);
}

pc_status store_events_list(store_reader_t *reader, const store_events_query_t *query, store_event_fn fn,
                            void *ctx, bool *has_more) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->list(reader, query, fn, ctx, has_more);
}

pc_status store_events_get(store_reader_t *reader, uint64_t seq, const char *owner, store_event_fn fn,
                           void *ctx) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->get(reader, seq, owner, fn, ctx);
}

pc_status store_events_latest(store_reader_t *reader, uint64_t *seq_out) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->latest(reader, seq_out);
}

pc_status store_events_count(store_reader_t *reader, uint64_t *count_out) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->count(reader, count_out);
}

pc_status store_events_destination_insert(store_tx_t *tx, const store_event_destination_t *destination) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->destination_insert(tx, destination);
}

pc_status store_events_destination_delete(store_tx_t *tx, const char *id, bool *found) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->destination_delete(tx, id, found);
}

pc_status store_events_cursor_advance(store_tx_t *tx, const char *id, uint64_t epoch, uint64_t seq) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->cursor_advance(tx, id, epoch, seq);
}

pc_status store_events_cursor_rewind(store_tx_t *tx, const char *id, uint64_t since_ns, bool *found) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->cursor_rewind(tx, id, since_ns, found);
}

pc_status store_events_destination_health(store_tx_t *tx, const char *id, uint64_t failing_since_ns,
                                          uint64_t disabled_ns, const char *reason) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->destination_health(tx, id, failing_since_ns, disabled_ns, reason);
}

pc_status store_events_destination_secret(store_tx_t *tx, const char *id, const uint8_t *box,
                                          uint32_t box_bytes, const uint8_t *previous_box,
                                          uint32_t previous_box_bytes, uint64_t previous_until_ns,
                                          bool *found) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->destination_secret(tx, id, box, box_bytes, previous_box, previous_box_bytes, previous_until_ns, found);
}

pc_status store_events_destinations_list(store_reader_t *reader, const char *merchant_id,
                                         const char *starting_after, uint32_t limit,
                                         store_event_destination_fn fn, void *ctx, bool *has_more) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->destinations_list(reader, merchant_id, starting_after, limit, fn, ctx, has_more);
}

pc_status store_events_destination_get(store_reader_t *reader, const char *id,
                                       store_event_destination_t *out) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->destination_get(reader, id, out);
}

pc_status store_events_destination_counts(store_reader_t *reader, const char *merchant_id,
                                          uint32_t *merchant_count, uint32_t *total_count) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->destination_counts(reader, merchant_id, merchant_count, total_count);
}

pc_status store_events_delivery_put(store_tx_t *tx, const store_event_delivery_t *delivery, uint64_t epoch) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->delivery_put(tx, delivery, epoch);
}

pc_status store_events_delivery_delete(store_tx_t *tx, const char *destination_id, uint64_t seq) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->delivery_delete(tx, destination_id, seq);
}

pc_status store_events_delivery_redeliver(store_tx_t *tx, const char *destination_id, uint64_t seq,
                                          uint64_t now_ns) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->delivery_redeliver(tx, destination_id, seq, now_ns);
}

pc_status store_events_deliveries_list(store_reader_t *reader, const char *destination_id,
                                       store_delivery_state state, uint64_t after_seq, uint32_t limit,
                                       store_event_delivery_fn fn, void *ctx, bool *has_more) {
    if (EVENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(reader)->deliveries_list(reader, destination_id, state, after_seq, limit, fn, ctx, has_more);
}

pc_status store_events_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint32_t *deleted_count) {
    if (EVENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return EVENTS_OF(tx)->purge(tx, before_ns, rows_max, deleted_count);
}

/* ---- store_payments.h ---- */

void store_pay_object_free(store_pay_object_t *object) {
    if (object == NULL) return;
    free(object->doc);
    object->doc = NULL;
    object->doc_bytes = 0;
}

pc_status store_pay_object_put(store_tx_t *tx, const store_pay_object_t *object) {
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(tx)->object_put(tx, object);
}

pc_status store_pay_object_get(store_reader_t *reader, const char *id, store_pay_object_t *out) {
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->object_get(reader, id, out);
}

pc_status store_pay_objects_list(store_reader_t *reader, const store_pay_query_t *query,
                                 store_pay_object_fn fn, void *ctx, bool *has_more) {
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->objects_list(reader, query, fn, ctx, has_more);
}

pc_status store_pay_version_put(store_tx_t *tx, const char *object_id, uint32_t version, const char *doc,
                                size_t doc_bytes) {
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(tx)->version_put(tx, object_id, version, doc, doc_bytes);
}

pc_status store_pay_version_pack(store_t *store, const char *doc, size_t doc_bytes, uint8_t **packed_out,
                                 size_t *packed_bytes_out) {
    *packed_out = NULL;
    *packed_bytes_out = 0;
    const store_payments_ops_t *ops = store != NULL ? store->ops->payments : NULL;
    if (ops == NULL || ops->version_pack == NULL) return PC_OK;
    return ops->version_pack(doc, doc_bytes, packed_out, packed_bytes_out);
}

pc_status store_pay_version_put_packed(store_tx_t *tx, const char *object_id, uint32_t version, const char *doc,
                                       size_t doc_bytes, const uint8_t *packed, size_t packed_bytes) {
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    if (packed == NULL || PAYMENTS_OF(tx)->version_put_packed == NULL) {
        return PAYMENTS_OF(tx)->version_put(tx, object_id, version, doc, doc_bytes);
    }
    return PAYMENTS_OF(tx)->version_put_packed(tx, object_id, version, doc, doc_bytes, packed, packed_bytes);
}

pc_status store_pay_version_get(store_reader_t *reader, const char *object_id, uint32_t version, char **doc_out,
                                size_t *doc_bytes_out) {
    *doc_out = NULL;
    *doc_bytes_out = 0;
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->version_get(reader, object_id, version, doc_out, doc_bytes_out);
}

pc_status store_pay_lookup_put(store_tx_t *tx, const char *name, const char *object_id, const uint8_t *extra,
                               size_t extra_bytes) {
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(tx)->lookup_put(tx, name, object_id, extra, extra_bytes);
}

pc_status store_pay_lookup_get(store_reader_t *reader, const char *name, store_pay_lookup_t *out) {
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->lookup_get(reader, name, out);
}

pc_status store_pay_lookups_prefix(store_reader_t *reader, const char *prefix, store_pay_lookup_fn fn,
                                   void *ctx) {
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->lookups_prefix(reader, prefix, fn, ctx);
}

pc_status store_vault_key_put(store_tx_t *tx, const store_vault_key_t *key) {
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(tx)->vault_key_put(tx, key);
}

pc_status store_vault_keys_list(store_reader_t *reader, store_vault_key_fn fn, void *ctx) {
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->vault_keys_list(reader, fn, ctx);
}

pc_status store_vault_card_put(store_tx_t *tx, const store_vault_card_t *card) {
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(tx)->vault_card_put(tx, card);
}

pc_status store_vault_card_get(store_reader_t *reader, const char *token, store_vault_card_t *out) {
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->vault_card_get(reader, token, out);
}

pc_status store_vault_cards_not_under(store_reader_t *reader, const char *key_id, const char *after_token,
                                      uint32_t limit, store_vault_card_fn fn, void *ctx) {
    if (PAYMENTS_OF(reader) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(reader)->vault_cards_not_under(reader, key_id, after_token, limit, fn, ctx);
}

pc_status store_vault_card_rekey(store_tx_t *tx, const store_vault_card_t *card, const char *from_key_id) {
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(tx)->vault_card_rekey(tx, card, from_key_id);
}

pc_status store_vault_key_retire(store_tx_t *tx, const char *key_id, bool *retired) {
    *retired = false;
    if (PAYMENTS_OF(tx) == NULL) return PC_STORE_UNSUPPORTED;
    return PAYMENTS_OF(tx)->vault_key_retire(tx, key_id, retired);
}
