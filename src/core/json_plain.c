/* core/json_plain.c: see json_plain.h. Every refusal is "not plain": the caller's
 * jansson load then decides, so nothing here has to tell valid from invalid beyond the
 * subset it takes, and what it takes must load to the same object. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/json_plain.h"

#define PLAIN_DEPTH_MAX 4
#define PLAIN_STRING_BYTES_MAX 1024

typedef struct {
    const char *at;
    const char *end;
} plain_cursor;

static void skip_ws(plain_cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t')) c->at++;
}

static bool take(plain_cursor *c, char expected) {
    skip_ws(c);
    if (c->at >= c->end || *c->at != expected) return false;
    c->at++;
    return true;
}

/* A string of printable ASCII without escapes, NUL-terminated in 'out'. */
static bool plain_string(plain_cursor *c, char out[PLAIN_STRING_BYTES_MAX + 1], size_t *bytes) {
    if (!take(c, '"')) return false;
    const char *start = c->at;
    while (c->at < c->end && *c->at != '"') {
        unsigned char ch = (unsigned char)*c->at;
        if (ch < 0x20 || ch > 0x7e || ch == '\\') return false;
        c->at++;
    }
    if (c->at >= c->end) return false;
    *bytes = (size_t)(c->at - start);
    if (*bytes > PLAIN_STRING_BYTES_MAX) return false;
    memcpy(out, start, *bytes);
    out[*bytes] = '\0';
    c->at++;
    return true;
}

/* -?[1-9][0-9]{0,17} or 0: within int64 without overflow checks (no "-0", no leading
 * zero, no fraction or exponent: those go to jansson). */
static json_t *plain_integer(plain_cursor *c) {
    bool negative = c->at < c->end && *c->at == '-';
    if (negative) c->at++;
    const char *start = c->at;
    int64_t value = 0;
    while (c->at < c->end && *c->at >= '0' && *c->at <= '9') {
        if (c->at - start >= 18) return NULL;
        value = value * 10 + (*c->at++ - '0');
    }
    size_t digits = (size_t)(c->at - start);
    if (digits == 0 || (*start == '0' && (digits > 1 || negative))) return NULL;
    if (c->at < c->end && (*c->at == '.' || *c->at == 'e' || *c->at == 'E')) return NULL;
    return json_integer(negative ? -value : value);
}

static bool take_word(plain_cursor *c, const char *word, size_t bytes) {
    if ((size_t)(c->end - c->at) < bytes || memcmp(c->at, word, bytes) != 0) return false;
    c->at += bytes;
    return true;
}

static json_t *plain_object(plain_cursor *c, int depth);

static json_t *plain_value(plain_cursor *c, int depth) {
    skip_ws(c);
    if (c->at >= c->end) return NULL;
    char text[PLAIN_STRING_BYTES_MAX + 1];
    size_t bytes = 0;
    switch (*c->at) {
    case '"': return plain_string(c, text, &bytes) ? json_stringn_nocheck(text, bytes) : NULL;
    case '{': return plain_object(c, depth + 1);
    case 't': return take_word(c, "true", 4) ? json_true() : NULL;
    case 'f': return take_word(c, "false", 5) ? json_false() : NULL;
    case 'n': return take_word(c, "null", 4) ? json_null() : NULL;
    default: return plain_integer(c);
    }
}

static json_t *plain_object(plain_cursor *c, int depth) {
    if (depth > PLAIN_DEPTH_MAX || !take(c, '{')) return NULL;
    json_t *object = json_object();
    if (object == NULL) return NULL;
    if (take(c, '}')) return object;
    for (;;) {
        char key[PLAIN_STRING_BYTES_MAX + 1];
        size_t key_bytes = 0;
        if (!plain_string(c, key, &key_bytes) || !take(c, ':') || json_object_get(object, key) != NULL) break;
        json_t *value = plain_value(c, depth);
        if (value == NULL || json_object_set_new_nocheck(object, key, value) != 0) break;
        if (take(c, '}')) return object;
        if (!take(c, ',')) break;
    }
    json_decref(object);
    return NULL;
}

json_t *pc_json_plain_object(const char *text, size_t bytes) {
    if (text == NULL) return NULL;
    plain_cursor c = {text, text + bytes};
    json_t *object = plain_object(&c, 1);
    skip_ws(&c);
    if (object != NULL && c.at != c.end) { /* jansson refuses anything after the value */
        json_decref(object);
        return NULL;
    }
    return object;
}
