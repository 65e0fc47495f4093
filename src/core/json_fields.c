/* core/json_fields.c: the field getters behind the API's codec and payments' parser.
 * jansson keeps integers and reals apart, so a real is refused, never rounded. */
#include "core/json_fields.h"

#include <stdio.h>
#include <string.h>

void pc_field_fail(pc_field_error_t *err, pc_status status, const char *path, const char *key,
                   const char *message) {
    err->status = status;
    err->http_status = 400;
    if (path != NULL && path[0] != '\0' && key != NULL) {
        snprintf(err->field, sizeof err->field, "%.60s.%.60s", path, key);
    } else if (key != NULL) {
        snprintf(err->field, sizeof err->field, "%.100s", key);
    } else {
        snprintf(err->field, sizeof err->field, "%.100s", path ? path : "");
    }
    snprintf(err->message, sizeof err->message, "%.180s",
             message != NULL ? message : pc_status_message(status));
}

bool pc_field_check_known(const json_t *object, const char *const *allowed, const char *path,
                          pc_field_error_t *err) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        bool known = false;
        for (uint32_t i = 0; allowed[i] != NULL && !known; i++) known = strcmp(allowed[i], key) == 0;
        if (!known) {
            char message[192];
            snprintf(message, sizeof message, "unknown field '%.64s'", key);
            pc_field_fail(err, PC_FIELD_UNKNOWN, path, key, message);
            return false;
        }
    }
    return true;
}

/* The field's value, or NULL (and *err filled when required) when absent or null. */
static const json_t *field_value(const json_t *object, const char *key, bool required,
                                 const char *path, pc_field_error_t *err) {
    const json_t *value = json_object_get(object, key);
    if (value != NULL && !json_is_null(value)) return value;
    if (required) pc_field_fail(err, PC_FIELD_MISSING, path, key, NULL);
    return NULL;
}

bool pc_field_string(const json_t *object, const char *key, bool required, size_t bytes_max,
                     const char *path, const char **out, pc_field_error_t *err) {
    const json_t *value = field_value(object, key, required, path, err);
    *out = NULL;
    if (value == NULL) return !required;
    if (!json_is_string(value)) {
        pc_field_fail(err, PC_FIELD_TYPE, path, key, "must be a string");
        return false;
    }
    if (json_string_length(value) > bytes_max || strlen(json_string_value(value)) != json_string_length(value)) {
        pc_field_fail(err, PC_STRING_TOO_LONG, path, key, NULL);
        return false;
    }
    *out = json_string_value(value);
    return true;
}

bool pc_field_object(const json_t *object, const char *key, bool required, const char *path,
                     const json_t **out, pc_field_error_t *err) {
    const json_t *value = field_value(object, key, required, path, err);
    *out = NULL;
    if (value == NULL) return !required;
    if (!json_is_object(value)) {
        pc_field_fail(err, PC_FIELD_TYPE, path, key, "must be an object");
        return false;
    }
    *out = value;
    return true;
}

bool pc_field_int(const json_t *object, const char *key, bool required, int64_t min, int64_t max,
                  const char *path, int64_t *out, pc_field_error_t *err) {
    const json_t *value = field_value(object, key, required, path, err);
    if (value == NULL) return !required;
    if (!json_is_integer(value)) {
        pc_field_fail(err, PC_FIELD_TYPE, path, key, "must be an integer");
        return false;
    }
    json_int_t n = json_integer_value(value);
    if (n < min || n > max) {
        pc_field_fail(err, PC_VALUE_OUT_OF_RANGE, path, key, NULL);
        return false;
    }
    *out = (int64_t)n;
    return true;
}

bool pc_field_bool(const json_t *object, const char *key, const char *path, bool *out,
                   pc_field_error_t *err) {
    const json_t *value = field_value(object, key, false, path, err);
    if (value == NULL) return true;
    if (!json_is_boolean(value)) {
        pc_field_fail(err, PC_FIELD_TYPE, path, key, "must be true or false");
        return false;
    }
    *out = json_is_true(value);
    return true;
}
