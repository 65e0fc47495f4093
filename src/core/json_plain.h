/* core/json_plain.h: a fast loader for the plain JSON objects programs exchange on the
 * hot paths (a channel's answer to the gateway, a request to a simulator): objects of
 * strings of printable ASCII without escapes, integers, true, false, null and nested
 * objects. It builds the jansson object json_loadb would build from the same bytes,
 * without jansson's lexer (a few tens of thousands of instructions for a few hundred
 * bytes); for anything else (an escape, a real, an array, a duplicate key, a byte out
 * of that set, malformed text) it returns NULL and the caller loads through jansson,
 * which alone decides, accepts or names the error. tests/core/test_json_plain.c checks
 * the two agree. */
#ifndef PAYCORE_CORE_JSON_PLAIN_H
#define PAYCORE_CORE_JSON_PLAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A new reference to the object 'text' holds, or NULL: not plain (see above). */
json_t *pc_json_plain_object(const char *text, size_t bytes);

/* ---- the subset's scanning, shared with readers that build no jansson object
 * (gateway/answer.c): a cursor over the text; each step false when the text is not
 * plain there. */
typedef struct {
    const char *at;
    const char *end;
} pc_plain_cursor;

static inline void pc_plain_skip_ws(pc_plain_cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t')) c->at++;
}

/* White space, then 'expected'. */
static inline bool pc_plain_take(pc_plain_cursor *c, char expected) {
    pc_plain_skip_ws(c);
    if (c->at >= c->end || *c->at != expected) return false;
    c->at++;
    return true;
}

static inline bool pc_plain_word(pc_plain_cursor *c, const char *word, size_t bytes) {
    if ((size_t)(c->end - c->at) < bytes || memcmp(c->at, word, bytes) != 0) return false;
    c->at += bytes;
    return true;
}

/* The bytes a plain string runs over: printable ASCII (0x20..0x7e) but '"' and '\\'. */
extern const bool pc_plain_string_byte[256];

/* A string (white space, then the quote): its bytes start at '*start'; the cursor
 * after the closing quote. */
static inline bool pc_plain_string_span(pc_plain_cursor *c, const char **start, size_t *bytes) {
    if (!pc_plain_take(c, '"')) return false;
    *start = c->at;
    while (c->at < c->end && pc_plain_string_byte[(unsigned char)*c->at]) c->at++;
    if (c->at >= c->end || *c->at != '"') return false; /* the end, an escape or a byte out of the set */
    *bytes = (size_t)(c->at - *start);
    c->at++;
    return true;
}

/* -?[1-9][0-9]{0,17} or 0: within int64 without overflow checks (no "-0", no leading
 * zero, no fraction or exponent: those are jansson's to read). */
bool pc_plain_integer(pc_plain_cursor *c, int64_t *out);

#endif
