/* core/json_plain.c: see json_plain.h. Every refusal is "not plain": the caller's
 * jansson load then decides, so nothing here has to tell valid from invalid beyond the
 * subset it takes, and what it takes must load to the same object. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/json_plain.h"

#define PLAIN_DEPTH_MAX 4
#define PLAIN_STRING_BYTES_MAX 1024

typedef pc_plain_cursor plain_cursor;

const bool pc_plain_string_byte[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* A string copied NUL-terminated into 'out'. */
static bool plain_string(plain_cursor *c, char out[PLAIN_STRING_BYTES_MAX + 1], size_t *bytes) {
    const char *start = NULL;
    if (!pc_plain_string_span(c, &start, bytes) || *bytes > PLAIN_STRING_BYTES_MAX) return false;
    memcpy(out, start, *bytes);
    out[*bytes] = '\0';
    return true;
}

bool pc_plain_integer(pc_plain_cursor *c, int64_t *out) {
    bool negative = c->at < c->end && *c->at == '-';
    if (negative) c->at++;
    const char *start = c->at;
    int64_t value = 0;
    while (c->at < c->end && *c->at >= '0' && *c->at <= '9') {
        if (c->at - start >= 18) return false;
        value = value * 10 + (*c->at++ - '0');
    }
    size_t digits = (size_t)(c->at - start);
    if (digits == 0 || (*start == '0' && (digits > 1 || negative))) return false;
    if (c->at < c->end && (*c->at == '.' || *c->at == 'e' || *c->at == 'E')) return false;
    *out = negative ? -value : value;
    return true;
}

static json_t *plain_integer(plain_cursor *c) {
    int64_t value = 0;
    return pc_plain_integer(c, &value) ? json_integer(value) : NULL;
}

static json_t *plain_object(plain_cursor *c, int depth);

static json_t *plain_value(plain_cursor *c, int depth) {
    pc_plain_skip_ws(c);
    if (c->at >= c->end) return NULL;
    char text[PLAIN_STRING_BYTES_MAX + 1];
    size_t bytes = 0;
    switch (*c->at) {
    case '"': return plain_string(c, text, &bytes) ? json_stringn_nocheck(text, bytes) : NULL;
    case '{': return plain_object(c, depth + 1);
    case 't': return pc_plain_word(c, "true", 4) ? json_true() : NULL;
    case 'f': return pc_plain_word(c, "false", 5) ? json_false() : NULL;
    case 'n': return pc_plain_word(c, "null", 4) ? json_null() : NULL;
    default: return plain_integer(c);
    }
}

static json_t *plain_object(plain_cursor *c, int depth) {
    if (depth > PLAIN_DEPTH_MAX || !pc_plain_take(c, '{')) return NULL;
    json_t *object = json_object();
    if (object == NULL) return NULL;
    if (pc_plain_take(c, '}')) return object;
    for (;;) {
        char key[PLAIN_STRING_BYTES_MAX + 1];
        size_t key_bytes = 0;
        if (!plain_string(c, key, &key_bytes) || !pc_plain_take(c, ':') || json_object_get(object, key) != NULL) break;
        json_t *value = plain_value(c, depth);
        if (value == NULL || json_object_set_new_nocheck(object, key, value) != 0) break;
        if (pc_plain_take(c, '}')) return object;
        if (!pc_plain_take(c, ',')) break;
    }
    json_decref(object);
    return NULL;
}

json_t *pc_json_plain_object(const char *text, size_t bytes) {
    if (text == NULL) return NULL;
    plain_cursor c = {text, text + bytes};
    json_t *object = plain_object(&c, 1);
    pc_plain_skip_ws(&c);
    if (object != NULL && c.at != c.end) { /* jansson refuses anything after the value */
        json_decref(object);
        return NULL;
    }
    return object;
}
