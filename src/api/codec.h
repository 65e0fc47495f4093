/* api/codec.h: JSON <-> ledger structs, with every validation rule of the API. Pure:
 * no I/O, no server state, so that the fuzzer (tests/fuzz) drives it directly.
 * Decoders refuse the whole request on the first bad input and name its place
 * ("transfers[3].amount"); they never convert a real or a string into an amount. */
#ifndef PAYCORE_API_CODEC_H
#define PAYCORE_API_CODEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/json_fields.h"
#include "ledger/ledger.h"
#include "payments/payments.h"
#include "paycore/status.h"

/* status, http_status (400), field ("" when the whole body is at fault), message. */
typedef pc_field_error_t codec_error_t;

/* Memory for decoded events and their metadata strings; must return zeroed memory
 * that lives as long as the events (the API uses the request's arena). */
typedef struct {
    void *(*alloc)(void *ctx, size_t bytes);
    void *ctx;
} codec_alloc_t;

/* Parses 'body' into a JSON object: nesting over API_JSON_DEPTH_MAX, invalid UTF-8,
 * duplicate keys, non-objects and integers beyond int64 (named by field) are refused.
 * Returns a new reference, or NULL with *err filled. */
json_t *codec_parse_object(const char *body, size_t body_bytes, codec_error_t *err);

/* {"id":...} or {"accounts":[...]} (1..LEDGER_BATCH_EVENTS_MAX). */
pc_status codec_decode_accounts(const json_t *body, const codec_alloc_t *alloc,
                                ledger_account_t **events_out, uint32_t *count_out,
                                bool *batch_out, codec_error_t *err);
/* {"id":...} or {"transfers":[...]} (1..LEDGER_BATCH_EVENTS_MAX). */
pc_status codec_decode_transfers(const json_t *body, const codec_alloc_t *alloc,
                                 ledger_transfer_t **events_out, uint32_t *count_out,
                                 bool *batch_out, codec_error_t *err);

/* The fast path for the common, valid transfer request (codec_fast.c): PC_OK with
 * the same events codec_decode_transfers would make, or PC_NOT_FOUND when the body is
 * anything else (then use codec_parse_object + codec_decode_transfers, which decide
 * and name the error). 'body' needs no NUL. */
pc_status codec_fast_transfers(const char *body, size_t body_bytes, const codec_alloc_t *alloc,
                               ledger_transfer_t **events_out, uint32_t *count_out, bool *batch_out);

/* The fast path for the common POST /v1/payments body (codec_fast.c): PC_OK with its
 * members read into 'out' when it is a card payment without metadata whose texts are
 * plain ASCII without escapes, its numbers non-negative integers, each member known and
 * given once; PC_NOT_FOUND for anything else (then codec_parse_object and the payments
 * layer decide and name the error). 'body' needs no NUL. */
pc_status codec_fast_payment(const char *body, size_t body_bytes, pay_plain_payment_t *out);

/* Field checks shared with other decoders (keys, risk): each fills *err on failure.
 * The generic ones are core's (core/json_fields.h) under the codec's names. */
static inline bool codec_check_fields(const json_t *object, const char *const *allowed, const char *path,
                                      codec_error_t *err) {
    return pc_field_check_known(object, allowed, path, err);
}
static inline bool codec_get_string(const json_t *object, const char *key, bool required, size_t bytes_max,
                                    const char *path, const char **out, codec_error_t *err) {
    return pc_field_string(object, key, required, bytes_max, path, out, err);
}
static inline void codec_fail(codec_error_t *err, pc_status status, const char *path, const char *key,
                              const char *message) {
    pc_field_fail(err, status, path, key, message);
}
bool codec_get_id(const json_t *object, const char *key, bool required, pc_status invalid,
                  const char *path, char out[PC_ID_SIZE], codec_error_t *err);

/* Encoders: new references. */
json_t *codec_balances_json(const ledger_balances_t *balances);
json_t *codec_account_flags_json(uint16_t flags);
json_t *codec_transfer_flags_json(uint16_t flags);
json_t *codec_metadata_json(const char *metadata_json /* or NULL */);
json_t *codec_account_json(const ledger_account_t *account);
/* 'state' LEDGER_PENDING_NONE omits "pending_state". */
json_t *codec_transfer_json(const ledger_transfer_t *transfer, ledger_pending_state state);
json_t *codec_history_json(const ledger_history_t *row);

#endif
