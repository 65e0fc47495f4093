/* gateway/sim_json.c: request validation for the simulators. Each getter either fills
 * its output or answers 400 invalid_request naming the field (a dotted path) and
 * returns false: the caller returns at once, having changed nothing. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json_plain.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"
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

/* ---- answers written as text ---- */

static void answer_add(sim_answer_t *a, const char *piece, size_t bytes) {
    if (a->failed || a->bytes + bytes + 2 > sizeof a->text) { /* room for the closing brace */
        a->failed = true;
        return;
    }
    memcpy(a->text + a->bytes, piece, bytes);
    a->bytes += bytes;
}

/* A key or a value as jansson writes printable ASCII: quotes and backslashes escaped.
 * Runs of plain bytes (pc_plain_string_byte) are found by the table and copied whole:
 * every answer and every request's canonical body is mostly such runs. */
static void answer_quoted(sim_answer_t *a, const char *text) {
    answer_add(a, "\"", 1);
    const unsigned char *c = (const unsigned char *)text;
    for (;;) {
        const unsigned char *run = c;
        while (pc_plain_string_byte[*c]) c++;
        answer_add(a, (const char *)run, (size_t)(c - run));
        if (*c == '\0') break;
        if (*c != '"' && *c != '\\') { /* below 0x20 or above 0x7e */
            a->failed = true;
            return;
        }
        char escaped[2] = {'\\', (char)*c++};
        answer_add(a, escaped, 2);
    }
    answer_add(a, "\"", 1);
}

static void answer_key(sim_answer_t *a, const char *key) {
    answer_add(a, a->bytes > 1 ? "," : "", a->bytes > 1 ? 1 : 0);
    answer_quoted(a, key);
    answer_add(a, ":", 1);
}

void sim_answer_begin(sim_answer_t *a) {
    a->bytes = 0;
    a->failed = false;
    answer_add(a, "{", 1);
}

void sim_answer_str(sim_answer_t *a, const char *key, const char *value) {
    answer_key(a, key);
    answer_quoted(a, value);
}

void sim_answer_int(sim_answer_t *a, const char *key, int64_t value) {
    char digits[PC_INT_TEXT_SIZE];
    size_t bytes = pc_i64_text(digits, value); /* what "%" PRId64 writes, without printf */
    answer_key(a, key);
    answer_add(a, digits, bytes);
}

void sim_reply_answer(sim_req_t *req, unsigned http_status, sim_answer_t *a) {
    answer_add(a, "}", 1);
    char *text = a->failed ? NULL : malloc(a->bytes + 1);
    if (text == NULL) {
        obs_logf(OBS_LEVEL_ERROR, "simulator: an answer of %s %s could not be written", req->method, req->path);
        sim_reply_internal(req);
        return;
    }
    memcpy(text, a->text, a->bytes);
    text[a->bytes] = '\0';
    sim_reply_text(req, http_status, "application/json", text, a->bytes);
}

/* ---- the canonical text of a request body ---- */

#define CANONICAL_KEYS_MAX 32

static bool canonical_value(sim_answer_t *out, const json_t *value, int depth);

/* Members in strcmp order of their keys, as jansson's JSON_SORT_KEYS orders them (each
 * kept with its value: no second lookup by key). */
static bool canonical_object(sim_answer_t *out, const json_t *object, int depth) {
    struct {
        const char *key;
        const json_t *value;
    } members[CANONICAL_KEYS_MAX];
    size_t count = 0;
    const char *key;
    const json_t *member;
    json_object_foreach((json_t *)object, key, member) {
        if (count == CANONICAL_KEYS_MAX) return false;
        size_t at = count++;
        while (at > 0 && strcmp(members[at - 1].key, key) > 0) {
            members[at] = members[at - 1];
            at--;
        }
        members[at].key = key;
        members[at].value = member;
    }
    answer_add(out, "{", 1);
    for (size_t i = 0; i < count; i++) {
        if (i > 0) answer_add(out, ",", 1);
        answer_quoted(out, members[i].key);
        answer_add(out, ":", 1);
        if (!canonical_value(out, members[i].value, depth + 1)) return false;
    }
    answer_add(out, "}", 1);
    return !out->failed;
}

static bool canonical_value(sim_answer_t *out, const json_t *value, int depth) {
    if (depth > 8) return false;
    char digits[24];
    switch (json_typeof(value)) {
    case JSON_OBJECT: return canonical_object(out, value, depth);
    case JSON_ARRAY:
        answer_add(out, "[", 1);
        for (size_t i = 0; i < json_array_size(value); i++) {
            if (i > 0) answer_add(out, ",", 1);
            if (!canonical_value(out, json_array_get(value, i), depth + 1)) return false;
        }
        answer_add(out, "]", 1);
        break;
    case JSON_STRING:
        if (strlen(json_string_value(value)) != json_string_length(value)) return false; /* a NUL inside */
        answer_quoted(out, json_string_value(value));
        break;
    case JSON_INTEGER:
        answer_add(out, digits, pc_i64_text(digits, (int64_t)json_integer_value(value)));
        break;
    case JSON_TRUE: answer_add(out, "true", 4); break;
    case JSON_FALSE: answer_add(out, "false", 5); break;
    case JSON_NULL: answer_add(out, "null", 4); break;
    case JSON_REAL: return false; /* jansson's own digits */
    }
    return !out->failed;
}

bool sim_canonical_text(const json_t *value, sim_answer_t *out) {
    out->bytes = 0;
    out->failed = false;
    return canonical_value(out, value, 0);
}
