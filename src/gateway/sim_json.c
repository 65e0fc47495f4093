/* gateway/sim_json.c: request validation for the simulators. Each getter either fills
 * its output or answers 400 invalid_request naming the field (a dotted path) and
 * returns false: the caller returns at once, having changed nothing. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "paycore/money.h"

bool sim_digits(const char *text, size_t min, size_t max) {
    size_t count = strlen(text);
    if (count < min || count > max) return false;
    for (size_t i = 0; i < count; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
    }
    return true;
}

const char *sim_unknown_key(const json_t *object, const char *const *allowed) {
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++) known = strcmp(allowed[i], key) == 0;
        if (!known) return key;
    }
    return NULL;
}

bool sim_body_only(sim_req_t *req, const json_t *object, const char *prefix, const char *const *allowed) {
    if (!json_is_object(object)) {
        sim_reply_invalid(req, prefix ? prefix : "body", "must be a JSON object");
        return false;
    }
    const char *unknown = sim_unknown_key(object, allowed);
    if (unknown != NULL) {
        char field[SIM_ID_SIZE + 64];
        snprintf(field, sizeof field, "%s%s%.64s", prefix ? prefix : "", prefix ? "." : "", unknown);
        sim_reply_invalid(req, field, "unknown field");
        return false;
    }
    return true;
}

/* The member or NULL; a JSON null counts as absent. */
static const json_t *member(const json_t *object, const char *name) {
    const json_t *value = json_object_get(object, name);
    return json_is_null(value) ? NULL : value;
}

bool sim_get_amount(sim_req_t *req, const json_t *object, const char *name, const char *field,
                    bool required, int64_t *out) {
    const json_t *value = member(object, name);
    if (value == NULL) {
        if (!required) return true;
        sim_reply_invalid(req, field, "required");
        return false;
    }
    if (!json_is_integer(value)) {
        sim_reply_invalid(req, field, "must be a JSON integer in minor units");
        return false;
    }
    json_int_t amount = json_integer_value(value);
    if (amount < 1 || amount > SIM_AMOUNT_MINOR_MAX) {
        sim_reply_invalid(req, field, "must be 1..1000000000000000");
        return false;
    }
    *out = (int64_t)amount;
    return true;
}

bool sim_get_balance(sim_req_t *req, const json_t *object, const char *name, int64_t *out) {
    const json_t *value = member(object, name);
    if (!json_is_integer(value) || json_integer_value(value) < 0 ||
        json_integer_value(value) > SIM_AMOUNT_MINOR_MAX) {
        sim_reply_invalid(req, name, "must be a JSON integer 0..1000000000000000");
        return false;
    }
    *out = (int64_t)json_integer_value(value);
    return true;
}

bool sim_get_int(sim_req_t *req, const json_t *object, const char *name, const char *field,
                 int64_t min, int64_t max, int64_t *out) {
    const json_t *value = member(object, name);
    if (value == NULL || !json_is_integer(value) || json_integer_value(value) < min ||
        json_integer_value(value) > max) {
        char message[96];
        snprintf(message, sizeof message, "must be an integer %lld..%lld", (long long)min, (long long)max);
        sim_reply_invalid(req, field, value == NULL ? "required" : message);
        return false;
    }
    *out = (int64_t)json_integer_value(value);
    return true;
}

bool sim_get_string(sim_req_t *req, const json_t *object, const char *name, const char *field,
                    bool required, size_t bytes_max, const char **out) {
    const json_t *value = member(object, name);
    *out = NULL;
    if (value == NULL) {
        if (required) sim_reply_invalid(req, field, "required");
        return !required;
    }
    if (!json_is_string(value)) {
        sim_reply_invalid(req, field, "must be a string");
        return false;
    }
    if (json_string_length(value) > bytes_max || strlen(json_string_value(value)) != json_string_length(value)) {
        sim_reply_invalid(req, field, "too long or holds a NUL");
        return false;
    }
    *out = json_string_value(value);
    return true;
}

bool sim_get_bool(sim_req_t *req, const json_t *object, const char *name, const char *field,
                  bool fallback, bool *out) {
    const json_t *value = member(object, name);
    *out = fallback;
    if (value == NULL) return true;
    if (!json_is_boolean(value)) {
        sim_reply_invalid(req, field, "must be true or false");
        return false;
    }
    *out = json_is_true(value);
    return true;
}

bool sim_get_currency(sim_req_t *req, const json_t *object, const char *name, const char *field,
                      bool required, const char **out) {
    if (!sim_get_string(req, object, name, field, required, 3, out)) return false;
    if (*out != NULL && pc_currency_find(*out) == NULL) {
        sim_reply_invalid(req, field, "must be an ISO 4217 code in upper case");
        return false;
    }
    return true;
}

bool sim_get_id(sim_req_t *req, const json_t *object, const char *name, const char *field,
                const char **out) {
    if (!sim_get_string(req, object, name, field, true, PC_ID_BYTES_MAX, out)) return false;
    if (!pc_id_valid(*out)) {
        sim_reply_invalid(req, field, "must be 1-64 characters of [A-Za-z0-9._:-]");
        return false;
    }
    return true;
}
