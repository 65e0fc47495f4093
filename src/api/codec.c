/* api/codec.c: the API's JSON decoders and encoders. Validation order for one event:
 * unknown fields, then each field's type and range; the first failure refuses the
 * whole request with its code and place. Amounts must be JSON integers: jansson keeps
 * integers and reals apart, so a real is refused, never rounded. */
#include "api/codec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "paycore/limits.h"
#include "paycore/money.h"

/* Nesting depth by a linear scan that skips strings: no recursion, and the limit
 * holds before jansson (which recurses) sees the text. */
static bool depth_within(const char *body, size_t bytes, uint32_t depth_max) {
    uint32_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < bytes; i++) {
        char c = body[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') {
            if (++depth > depth_max) return false;
        } else if ((c == '}' || c == ']') && depth > 0) depth--;
    }
    return true;
}

/* One frame of the explicit stack that walks a parsed tree (depth is bounded). */
typedef struct {
    const json_t *node;
    char path[128];
} walk_frame;

static bool real_beyond_int64(const json_t *value) {
    if (!json_is_real(value)) return false;
    double v = json_real_value(value);
    return v >= 9223372036854775808.0 || v < -9223372036854775808.0;
}

static void walk_push_children(walk_frame *stack, uint32_t *top, const walk_frame *frame) {
    if (json_is_object(frame->node)) {
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)frame->node, key, child) {
            if (*top >= 64) return;
            walk_frame *next = &stack[(*top)++];
            next->node = child;
            if (frame->path[0]) snprintf(next->path, sizeof next->path, "%.60s.%.60s", frame->path, key);
            else snprintf(next->path, sizeof next->path, "%.60s", key);
        }
    } else if (json_is_array(frame->node)) {
        size_t index;
        json_t *child;
        json_array_foreach(frame->node, index, child) {
            if (*top >= 64) return;
            walk_frame *next = &stack[(*top)++];
            next->node = child;
            snprintf(next->path, sizeof next->path, "%.60s[%u]", frame->path, (unsigned)(index % 100000u));
        }
    }
}

/* Finds where an integer beyond int64 sits, by re-reading integers as reals. */
static void locate_overflow(const char *body, size_t bytes, codec_error_t *err) {
    json_error_t jerr;
    json_t *root = json_loadb(body, bytes, JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &jerr);
    codec_fail(err, PC_VALUE_OUT_OF_RANGE, "", NULL, "number beyond the int64 range");
    if (root == NULL) return;
    static _Thread_local walk_frame stack[64];
    uint32_t top = 0;
    stack[top].node = root;
    stack[top++].path[0] = '\0';
    for (uint32_t visited = 0; top > 0 && visited < 100000; visited++) {
        walk_frame frame = stack[--top];
        if (real_beyond_int64(frame.node)) {
            const char *leaf = strrchr(frame.path, '.');
            leaf = leaf ? leaf + 1 : frame.path;
            bool amount = strcmp(leaf, "amount") == 0;
            codec_fail(err, amount ? PC_AMOUNT_OUT_OF_RANGE : PC_VALUE_OUT_OF_RANGE, frame.path,
                       NULL, amount ? "amount beyond 2^63-1" : "number beyond the int64 range");
            break;
        }
        walk_push_children(stack, &top, &frame);
    }
    json_decref(root);
}

json_t *codec_parse_object(const char *body, size_t body_bytes, codec_error_t *err) {
    if (!depth_within(body, body_bytes, API_JSON_DEPTH_MAX)) {
        codec_fail(err, PC_NESTING_TOO_DEEP, "", NULL, NULL);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body, body_bytes, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        enum json_error_code code = json_error_code(&jerr);
        if (code == json_error_numeric_overflow) {
            locate_overflow(body, body_bytes, err);
        } else if (code == json_error_invalid_utf8) {
            codec_fail(err, PC_STRING_NOT_UTF8, "", NULL, NULL);
        } else {
            char message[192];
            snprintf(message, sizeof message, "body is not valid JSON: %.150s", jerr.text);
            codec_fail(err, PC_JSON_INVALID, "", NULL, message);
        }
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        codec_fail(err, PC_JSON_INVALID, "", NULL, "body must be a JSON object");
        return NULL;
    }
    return root;
}

bool codec_get_id(const json_t *object, const char *key, bool required, pc_status invalid,
                  const char *path, char out[PC_ID_SIZE], codec_error_t *err) {
    const char *text;
    out[0] = '\0';
    if (!codec_get_string(object, key, required, 4 * PC_ID_BYTES_MAX, path, &text, err)) return false;
    if (text == NULL) return true;
    if (!pc_id_copy(out, text)) {
        codec_fail(err, invalid, path, key, pc_status_message(PC_ID_INVALID));
        return false;
    }
    return true;
}

/* An integer field within [min, max]; absent leaves *out alone. */
static bool get_integer(const json_t *object, const char *key, bool required, int64_t min,
                        int64_t max, const char *path, int64_t *out, codec_error_t *err) {
    json_t *value = json_object_get(object, key);
    if (value == NULL) {
        if (required) codec_fail(err, PC_FIELD_MISSING, path, key, NULL);
        return !required;
    }
    if (!json_is_integer(value)) {
        codec_fail(err, PC_FIELD_TYPE, path, key, "must be a JSON integer");
        return false;
    }
    json_int_t v = json_integer_value(value);
    if (v < min || v > max) {
        char message[192];
        snprintf(message, sizeof message, "must be between %" PRId64 " and %" PRId64, min, max);
        codec_fail(err, PC_VALUE_OUT_OF_RANGE, path, key, message);
        return false;
    }
    *out = v;
    return true;
}

static bool get_currency(const json_t *object, bool required, const char *path, char out[4],
                         codec_error_t *err) {
    const char *text;
    out[0] = '\0';
    if (!codec_get_string(object, "currency", required, 8, path, &text, err)) return false;
    if (text == NULL) return true;
    if (pc_currency_find(text) == NULL) {
        codec_fail(err, PC_CURRENCY_INVALID, path, "currency", NULL);
        return false;
    }
    memcpy(out, text, 4);
    return true;
}

typedef bool (*flag_parse_fn)(const char *name, uint16_t *flag);

/* Flags a client may set; others (the ledger's own, like expiry) are unknown here. */
static bool get_flags(const json_t *object, flag_parse_fn parse, uint16_t client_mask,
                      const char *path, uint16_t *out, codec_error_t *err) {
    json_t *value = json_object_get(object, "flags");
    *out = 0;
    if (value == NULL) return true;
    if (!json_is_array(value)) {
        codec_fail(err, PC_FIELD_TYPE, path, "flags", "must be an array of flag names");
        return false;
    }
    size_t index;
    json_t *item;
    json_array_foreach(value, index, item) {
        char place[128];
        snprintf(place, sizeof place, "%.60s%sflags[%u]", path, path[0] ? "." : "", (unsigned)(index % 100000u));
        uint16_t flag;
        if (!json_is_string(item)) {
            codec_fail(err, PC_FIELD_TYPE, place, NULL, "must be a flag name");
            return false;
        }
        if (!parse(json_string_value(item), &flag) || (flag & ~client_mask) != 0) {
            codec_fail(err, PC_FLAG_UNKNOWN, place, NULL, NULL);
            return false;
        }
        *out |= flag;
    }
    return true;
}

/* Metadata: a flat object of string values, stored compactly with sorted keys so that
 * equal metadata compares equal byte for byte. */
static bool get_metadata(const json_t *object, const codec_alloc_t *alloc, const char *path,
                         const char **out, codec_error_t *err) {
    json_t *value = json_object_get(object, "metadata");
    *out = NULL;
    if (value == NULL || json_is_null(value)) return true;
    if (!json_is_object(value) || json_object_size(value) > LEDGER_METADATA_KEYS_MAX) {
        codec_fail(err, json_is_object(value) ? PC_METADATA_TOO_LARGE : PC_METADATA_INVALID,
                   path, "metadata", NULL);
        return false;
    }
    const char *key;
    json_t *item;
    json_object_foreach(value, key, item) {
        if (!json_is_string(item) || strlen(key) == 0 || strlen(key) > PC_ID_BYTES_MAX) {
            codec_fail(err, PC_METADATA_INVALID, path, "metadata", NULL);
            return false;
        }
        if (json_string_length(item) > API_STRING_BYTES_MAX ||
            strlen(json_string_value(item)) != json_string_length(item)) {
            codec_fail(err, PC_METADATA_TOO_LARGE, path, "metadata", "metadata value too long");
            return false;
        }
    }
    char *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
    size_t bytes = text ? strlen(text) : 0;
    if (text == NULL || bytes > LEDGER_METADATA_BYTES_MAX) {
        free(text);
        codec_fail(err, text ? PC_METADATA_TOO_LARGE : PC_NO_MEMORY, path, "metadata", NULL);
        return false;
    }
    char *copy = alloc->alloc(alloc->ctx, bytes + 1);
    if (copy != NULL) memcpy(copy, text, bytes + 1);
    free(text);
    if (copy == NULL) {
        codec_fail(err, PC_NO_MEMORY, path, "metadata", NULL);
        return false;
    }
    *out = copy;
    return true;
}

static const char *const account_fields[] = {"id", "currency", "code", "flags", "metadata", NULL};
static const char *const transfer_fields[] = {"id", "debit_account_id", "credit_account_id",
                                              "amount", "currency", "code", "flags",
                                              "pending_id", "timeout_s", "metadata", NULL};

static bool decode_account(const json_t *object, const codec_alloc_t *alloc, const char *path,
                           ledger_account_t *out, codec_error_t *err) {
    if (!json_is_object(object)) {
        codec_fail(err, PC_FIELD_TYPE, path, NULL, "each account must be an object");
        return false;
    }
    int64_t code = 0;
    if (!codec_check_fields(object, account_fields, path, err)) return false;
    if (!codec_get_id(object, "id", true, PC_ID_INVALID, path, out->id, err)) return false;
    if (!get_currency(object, true, path, out->currency, err)) return false;
    if (!get_integer(object, "code", false, 0, UINT16_MAX, path, &code, err)) return false;
    out->code = (uint16_t)code;
    if (!get_flags(object, ledger_account_flag_parse, LEDGER_ACCOUNT_FLAGS_CLIENT, path, &out->flags, err)) return false;
    return get_metadata(object, alloc, path, &out->metadata_json, err);
}

/* Amount: a JSON integer >= 1, except post_pending (absent or 0 = the whole pending
 * amount) and void_pending (ignored). Reals and strings are refused, never converted. */
static bool get_amount(const json_t *object, uint16_t flags, const char *path, int64_t *out,
                       codec_error_t *err) {
    bool resolving = (flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
    json_t *value = json_object_get(object, "amount");
    *out = 0;
    if (value == NULL) {
        if (!resolving) codec_fail(err, PC_FIELD_MISSING, path, "amount", NULL);
        return resolving;
    }
    if (!json_is_integer(value)) {
        codec_fail(err, PC_AMOUNT_NOT_INTEGER, path, "amount", NULL);
        return false;
    }
    if ((flags & LEDGER_TRANSFER_VOID_PENDING) != 0) return true; /* a void ignores it */
    json_int_t amount = json_integer_value(value);
    if (amount < 0 || (amount == 0 && !resolving)) {
        codec_fail(err, PC_AMOUNT_OUT_OF_RANGE, path, "amount",
                   "amount must be an integer of at least 1 minor unit");
        return false;
    }
    *out = amount;
    return true;
}

static bool decode_transfer_ids(const json_t *object, const char *path, ledger_transfer_t *out,
                                codec_error_t *err) {
    bool resolving =
        (out->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
    if (!codec_get_id(object, "id", true, PC_ID_INVALID, path, out->id, err)) return false;
    if (!codec_get_id(object, "debit_account_id", !resolving, PC_DEBIT_ACCOUNT_ID_INVALID, path,
                      out->debit_account_id, err)) return false;
    if (!codec_get_id(object, "credit_account_id", !resolving, PC_CREDIT_ACCOUNT_ID_INVALID,
                      path, out->credit_account_id, err)) return false;
    return codec_get_id(object, "pending_id", false, PC_ID_INVALID, path, out->pending_id, err);
}

static bool decode_transfer(const json_t *object, const codec_alloc_t *alloc, const char *path,
                            ledger_transfer_t *out, codec_error_t *err) {
    if (!json_is_object(object)) {
        codec_fail(err, PC_FIELD_TYPE, path, NULL, "each transfer must be an object");
        return false;
    }
    int64_t code = 0, timeout_s = 0;
    if (!codec_check_fields(object, transfer_fields, path, err)) return false;
    if (!get_flags(object, ledger_transfer_flag_parse, LEDGER_TRANSFER_FLAGS_CLIENT, path, &out->flags, err)) return false;
    if (!decode_transfer_ids(object, path, out, err)) return false;
    bool resolving =
        (out->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
    if (!get_amount(object, out->flags, path, &out->amount, err)) return false;
    if (!get_currency(object, !resolving, path, out->currency, err)) return false;
    if (!get_integer(object, "code", false, 0, UINT16_MAX, path, &code, err)) return false;
    if (!get_integer(object, "timeout_s", false, 0, LEDGER_TIMEOUT_S_MAX, path, &timeout_s, err)) {
        return false;
    }
    out->code = (uint16_t)code;
    out->timeout_s = (uint32_t)timeout_s;
    return get_metadata(object, alloc, path, &out->metadata_json, err);
}

/* The batch wrapper {"<name>":[...]}: returns the array or NULL (err filled). */
static const json_t *batch_array(const json_t *body, const char *name, codec_error_t *err) {
    const char *const fields[] = {name, NULL};
    if (!codec_check_fields(body, fields, "", err)) return NULL;
    const json_t *array = json_object_get(body, name);
    if (!json_is_array(array)) {
        codec_fail(err, PC_FIELD_TYPE, "", name, "must be an array");
        return NULL;
    }
    if (json_array_size(array) == 0) {
        codec_fail(err, PC_BATCH_EMPTY, "", name, NULL);
        return NULL;
    }
    if (json_array_size(array) > LEDGER_BATCH_EVENTS_MAX) {
        codec_fail(err, PC_BATCH_TOO_LARGE, "", name, "a batch holds at most 8189 events");
        return NULL;
    }
    return array;
}

pc_status codec_decode_accounts(const json_t *body, const codec_alloc_t *alloc,
                                ledger_account_t **events_out, uint32_t *count_out,
                                bool *batch_out, codec_error_t *err) {
    *batch_out = json_object_get(body, "accounts") != NULL;
    const json_t *array = *batch_out ? batch_array(body, "accounts", err) : NULL;
    if (*batch_out && array == NULL) return err->status;
    uint32_t count = *batch_out ? (uint32_t)json_array_size(array) : 1;
    ledger_account_t *events = alloc->alloc(alloc->ctx, sizeof(*events) * count);
    if (events == NULL) {
        codec_fail(err, PC_NO_MEMORY, "", NULL, NULL);
        return err->status;
    }
    for (uint32_t i = 0; i < count; i++) {
        char path[32] = "";
        if (*batch_out) snprintf(path, sizeof path, "accounts[%u]", i);
        const json_t *object = *batch_out ? json_array_get(array, i) : body;
        if (!decode_account(object, alloc, path, &events[i], err)) return err->status;
    }
    *events_out = events;
    *count_out = count;
    return PC_OK;
}

pc_status codec_decode_transfers(const json_t *body, const codec_alloc_t *alloc,
                                 ledger_transfer_t **events_out, uint32_t *count_out,
                                 bool *batch_out, codec_error_t *err) {
    *batch_out = json_object_get(body, "transfers") != NULL;
    const json_t *array = *batch_out ? batch_array(body, "transfers", err) : NULL;
    if (*batch_out && array == NULL) return err->status;
    uint32_t count = *batch_out ? (uint32_t)json_array_size(array) : 1;
    ledger_transfer_t *events = alloc->alloc(alloc->ctx, sizeof(*events) * count);
    if (events == NULL) {
        codec_fail(err, PC_NO_MEMORY, "", NULL, NULL);
        return err->status;
    }
    for (uint32_t i = 0; i < count; i++) {
        char path[32] = "";
        if (*batch_out) snprintf(path, sizeof path, "transfers[%u]", i);
        const json_t *object = *batch_out ? json_array_get(array, i) : body;
        if (!decode_transfer(object, alloc, path, &events[i], err)) return err->status;
    }
    *events_out = events;
    *count_out = count;
    return PC_OK;
}

/* ---- encoders ---- */

json_t *codec_balances_json(const ledger_balances_t *b) {
    return json_pack("{s:I,s:I,s:I,s:I}", "debits_pending", (json_int_t)b->debits_pending,
                     "debits_posted", (json_int_t)b->debits_posted, "credits_pending",
                     (json_int_t)b->credits_pending, "credits_posted",
                     (json_int_t)b->credits_posted);
}

static json_t *flags_json(uint16_t flags, const char *(*name_of)(uint16_t)) {
    json_t *array = json_array();
    for (uint32_t bit = 0; bit < 16 && array != NULL; bit++) {
        uint16_t flag = (uint16_t)(1u << bit);
        if ((flags & flag) == 0) continue;
        const char *name = name_of(flag);
        if (name != NULL) json_array_append_new(array, json_string(name));
    }
    return array;
}

json_t *codec_account_flags_json(uint16_t flags) {
    return flags_json(flags, ledger_account_flag_name);
}

json_t *codec_transfer_flags_json(uint16_t flags) {
    return flags_json(flags, ledger_transfer_flag_name);
}

json_t *codec_metadata_json(const char *metadata_json) {
    if (metadata_json == NULL || metadata_json[0] == '\0') return json_object();
    json_t *value = json_loads(metadata_json, 0, NULL);
    return value != NULL ? value : json_object();
}

json_t *codec_account_json(const ledger_account_t *a) {
    json_t *object = json_pack("{s:s,s:s,s:i,s:o}", "id", a->id, "currency", a->currency,
                               "code", (int)a->code, "flags", codec_account_flags_json(a->flags));
    if (object == NULL) return NULL;
    json_object_update_new(object, codec_balances_json(&a->balances));
    json_object_set_new(object, "metadata", codec_metadata_json(a->metadata_json));
    json_object_set_new(object, "timestamp", json_integer((json_int_t)a->timestamp_ns));
    return object;
}

json_t *codec_transfer_json(const ledger_transfer_t *t, ledger_pending_state state) {
    json_t *object = json_pack("{s:s,s:s,s:s,s:I,s:s,s:i,s:o}", "id", t->id, "debit_account_id",
                               t->debit_account_id, "credit_account_id", t->credit_account_id,
                               "amount", (json_int_t)t->amount, "currency", t->currency, "code",
                               (int)t->code, "flags", codec_transfer_flags_json(t->flags));
    if (object == NULL) return NULL;
    if (t->pending_id[0] != '\0') json_object_set_new(object, "pending_id", json_string(t->pending_id));
    json_object_set_new(object, "timeout_s", json_integer(t->timeout_s));
    json_object_set_new(object, "metadata", codec_metadata_json(t->metadata_json));
    if (t->timestamp_ns != 0) {
        json_object_set_new(object, "timestamp", json_integer((json_int_t)t->timestamp_ns));
    }
    if (state != LEDGER_PENDING_NONE) {
        json_object_set_new(object, "pending_state", json_string(ledger_pending_state_name(state)));
    }
    return object;
}

json_t *codec_history_json(const ledger_history_t *row) {
    json_t *object = json_pack("{s:s,s:I}", "transfer_id", row->transfer_id, "timestamp",
                               (json_int_t)row->transfer_timestamp_ns);
    if (object != NULL) json_object_update_new(object, codec_balances_json(&row->balances));
    return object;
}
