/* payments/parse.c: reading the payments API's JSON bodies. The first bad field
 * refuses the whole request with its own code and its dotted place
 * ("payment_method.card.number"); amounts must be JSON integers (a real or a string
 * is refused, never rounded); unknown fields are refused so that a typo is never
 * ignored. The body arrives already parsed by the API (duplicates, depth, UTF-8,
 * integers beyond int64 are refused there). */
#include <stdio.h>
#include <string.h>

#include "obs/obs.h"
#include "paycore/money.h"
#include "payments/pay_internal.h"

void pay_reply_parse_error(pay_reply_t *out, const pay_parse_error_t *err) {
    pay_reply_error(out, err->status, err->field, err->message);
    out->http_status = 400;
}

bool pay_parse_amount(const json_t *object, const char *key, bool required, const char *path, int64_t *out,
                      pay_parse_error_t *err) {
    const json_t *value = json_object_get(object, key);
    if (value == NULL || json_is_null(value)) {
        if (required) pay_parse_fail(err, PC_FIELD_MISSING, path, key, NULL);
        return !required;
    }
    if (!json_is_integer(value)) {
        pay_parse_fail(err, PC_AMOUNT_NOT_INTEGER, path, key, NULL);
        return false;
    }
    json_int_t n = json_integer_value(value);
    if (n < 1 || n > PAY_AMOUNT_MINOR_MAX) {
        pay_parse_fail(err, PC_AMOUNT_OUT_OF_RANGE, path, key, "amount must be 1..10^15 minor units");
        return false;
    }
    *out = (int64_t)n;
    return true;
}

bool pay_parse_currency(const json_t *object, const char *key, bool required, const char *path, char out[4],
                        pay_parse_error_t *err) {
    const char *text;
    out[0] = '\0';
    if (!pay_parse_string(object, key, required, 3, path, &text, err)) return false;
    if (text == NULL) return true;
    if (pc_currency_find(text) == NULL) {
        pay_parse_fail(err, PC_CURRENCY_INVALID, path, key, NULL);
        return false;
    }
    memcpy(out, text, 4);
    return true;
}

bool pay_country_valid(const char *text) {
    return strlen(text) == 2 && text[0] >= 'A' && text[0] <= 'Z' && text[1] >= 'A' && text[1] <= 'Z';
}

bool pay_parse_country(const json_t *object, const char *key, bool required, const char *path, char out[3],
                       pay_parse_error_t *err) {
    const char *text;
    out[0] = '\0';
    if (!pay_parse_string(object, key, required, 2, path, &text, err)) {
        if (err->status == PC_STRING_TOO_LONG) pay_parse_fail(err, PC_COUNTRY_INVALID, path, key, NULL);
        return false;
    }
    if (text == NULL) return true;
    if (!pay_country_valid(text)) {
        pay_parse_fail(err, PC_COUNTRY_INVALID, path, key, NULL);
        return false;
    }
    memcpy(out, text, 3);
    return true;
}

bool pay_parse_id(const json_t *object, const char *key, bool required, size_t bytes_max, const char *path,
                  char out[PC_ID_SIZE], pay_parse_error_t *err) {
    const char *text;
    out[0] = '\0';
    if (!pay_parse_string(object, key, required, PC_ID_BYTES_MAX, path, &text, err)) {
        if (err->status == PC_STRING_TOO_LONG) pay_parse_fail(err, PC_ID_INVALID, path, key, NULL);
        return false;
    }
    if (text == NULL) return true;
    if (!pc_id_valid(text) || strlen(text) > bytes_max) {
        char message[160];
        snprintf(message, sizeof message, "must be 1-%zu characters of [A-Za-z0-9._:-]", bytes_max);
        pay_parse_fail(err, PC_ID_INVALID, path, key, message);
        return false;
    }
    pc_str_copy(out, PC_ID_SIZE, text);
    return true;
}

/* A flat object of string values, as the ledger's metadata. */
bool pay_parse_metadata(const json_t *object, const char *key, const char *path, json_t **out,
                        pay_parse_error_t *err) {
    const json_t *value = json_object_get(object, key);
    *out = NULL;
    if (value == NULL || json_is_null(value)) return true;
    if (!json_is_object(value) || json_object_size(value) > LEDGER_METADATA_KEYS_MAX) {
        pay_parse_fail(err, json_is_object(value) ? PC_METADATA_TOO_LARGE : PC_METADATA_INVALID, path, key, NULL);
        return false;
    }
    const char *name;
    const json_t *item;
    json_object_foreach((json_t *)value, name, item) {
        if (!json_is_string(item)) {
            pay_parse_fail(err, PC_METADATA_INVALID, path, key, NULL);
            return false;
        }
    }
    char *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
    size_t bytes = text ? strlen(text) : 0;
    free(text);
    if (bytes > LEDGER_METADATA_BYTES_MAX) {
        pay_parse_fail(err, PC_METADATA_TOO_LARGE, path, key, NULL);
        return false;
    }
    *out = json_deep_copy(value);
    return true;
}

static bool digits_only(const char *text, size_t min, size_t max) {
    size_t n = strlen(text);
    if (n < min || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
    }
    return true;
}

/* {"routing_number": 9 digits, "account_number": 4..17 digits}: the bank channel's rules. */
bool pay_parse_bank_account(const json_t *object, const char *key, const char *path,
                            char routing[GW_BANK_FIELD_SIZE], char account[GW_BANK_FIELD_SIZE],
                            pay_parse_error_t *err) {
    static const char *const fields[] = {"routing_number", "account_number", NULL};
    const json_t *bank;
    char place[128];
    snprintf(place, sizeof place, "%s%s%s", path, path[0] ? "." : "", key);
    if (!pay_parse_object(object, key, true, path, &bank, err)) return false;
    if (!pay_parse_fields(bank, fields, place, err)) return false;
    const char *r, *a;
    if (!pay_parse_string(bank, "routing_number", true, 32, place, &r, err)) return false;
    if (!pay_parse_string(bank, "account_number", true, 32, place, &a, err)) return false;
    if (!digits_only(r, 9, 9)) {
        pay_parse_fail(err, PC_BANK_ACCOUNT_INVALID, place, "routing_number", NULL);
        return false;
    }
    if (!digits_only(a, 4, 17)) {
        pay_parse_fail(err, PC_BANK_ACCOUNT_INVALID, place, "account_number", NULL);
        return false;
    }
    pc_str_copy(routing, GW_BANK_FIELD_SIZE, r);
    pc_str_copy(account, GW_BANK_FIELD_SIZE, a);
    return true;
}

void pay_lookup_idem(char *out, size_t out_bytes, const char *key_id, const char *idempotency_key) {
    pc_str_join(out, out_bytes, (const char *const[]){"idem:", key_id, ":", idempotency_key}, 4);
}

/* "idem:<key_id>:<key>": an API key id holds no ':' ("key_<hex>"), so the first one
 * ends it. */
static bool lookup_idem_split(const char *name, char key_id[PC_ID_SIZE], const char **idempotency_key) {
    const char *prefix = "idem:";
    if (strncmp(name, prefix, strlen(prefix)) != 0) return false;
    const char *id = name + strlen(prefix), *colon = strchr(id, ':');
    if (colon == NULL || (size_t)(colon - id) >= PC_ID_SIZE) return false;
    memcpy(key_id, id, (size_t)(colon - id));
    key_id[colon - id] = '\0';
    *idempotency_key = colon + 1;
    return true;
}

void pay_idem_index_add(pay_t *pay, const char *key_id, const char *idempotency_key) {
    if (pay->config.idem_index != NULL) idem_index_add(pay->config.idem_index, key_id, idempotency_key);
}

static bool idem_lookup_load(const char *name, const store_pay_lookup_t *lookup, void *ctx) {
    (void)lookup;
    char key_id[PC_ID_SIZE];
    const char *idempotency_key = NULL;
    if (!lookup_idem_split(name, key_id, &idempotency_key)) return true;
    return idem_index_scan_row(ctx, key_id, idempotency_key);
}

pc_status pay_idem_lookups_index(store_reader_t *reader, idem_index_scan_t *scan) {
    return store_pay_lookups_prefix(reader, "idem:", idem_lookup_load, scan);
}

pc_status pay_idem_index_load(pay_t *pay, store_reader_t *reader) {
    if (pay->config.idem_index == NULL) return PC_OK;
    idem_index_scan_t scan = {.index = pay->config.idem_index, .go_on = pay->config.start_continue};
    pc_status status = pay_idem_lookups_index(reader, &scan);
    if (status == PC_SHUTTING_DOWN) {
        obs_logf(OBS_LEVEL_INFO, "idempotency index: a stop was asked while the payments' key lookups loaded:"
                 " stopped after %llu keys, before serving", (unsigned long long)scan.rows);
    }
    return status;
}

void pay_lookup_attempt(char *out, size_t out_bytes, const char *idempotency_key) {
    pc_str_join(out, out_bytes, (const char *const[]){"attempt:", idempotency_key}, 2);
}

void pay_lookup_risk(char *out, size_t out_bytes, uint64_t decision_id) {
    char digits[PC_INT_TEXT_SIZE];
    pc_u64_text(digits, decision_id);
    pc_str_join(out, out_bytes, (const char *const[]){"risk:", digits}, 2);
}
