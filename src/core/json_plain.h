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
#include <stddef.h>

/* A new reference to the object 'text' holds, or NULL: not plain (see above). */
json_t *pc_json_plain_object(const char *text, size_t bytes);

#endif
