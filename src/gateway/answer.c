/* gateway/answer.c: a channel's answer as an object the decoders read (gw_obj_t). The
 * usual answer is plain (core/json_plain.h's subset: printable ASCII strings without
 * escapes, integers, true, false, null, nested objects): it is read here in place, its
 * members listed in the caller's gw_doc_t, with no allocation and no jansson object
 * (building and freeing one cost ~15k instructions an answer, most of a call). Any
 * other text is loaded by jansson, which alone decides what it holds, and read through
 * jansson: both give the decoders the same members, types and values
 * (tests/gateway/test_gw_answer.c). */
#include <string.h>

#include "core/json_plain.h"
#include "gateway/gw_internal.h"

#define DOC_DEPTH_MAX 4

typedef struct {
    pc_plain_cursor text;
    gw_doc_t *doc;
} doc_cursor;

/* A string, copied NUL-terminated into the doc. */
static const char *plain_string(doc_cursor *c, size_t *out_bytes) {
    const char *start = NULL;
    size_t bytes = 0;
    if (!pc_plain_string_span(&c->text, &start, &bytes)) return NULL;
    gw_doc_t *doc = c->doc;
    if (bytes + 1 > sizeof doc->text - doc->text_used) return NULL;
    char *copy = doc->text + doc->text_used;
    memcpy(copy, start, bytes);
    copy[bytes] = '\0';
    doc->text_used += bytes + 1;
    *out_bytes = bytes;
    return copy;
}

static int32_t member_find(const gw_doc_t *doc, int32_t parent, const char *key, size_t key_bytes) {
    for (uint32_t i = 0; i < doc->count; i++) {
        const gw_member_t *m = &doc->members[i];
        if (m->parent == parent && m->key_bytes == key_bytes && memcmp(m->key, key, key_bytes) == 0) return (int32_t)i;
    }
    return -1;
}

static bool plain_object(doc_cursor *c, int32_t self, int depth);

static bool plain_value(doc_cursor *c, gw_member_t *m, int32_t index, int depth) {
    pc_plain_skip_ws(&c->text);
    if (c->text.at >= c->text.end) return false;
    switch (*c->text.at) {
    case '"': {
        size_t bytes = 0;
        m->type = GW_MEMBER_STRING;
        return (m->text = plain_string(c, &bytes)) != NULL;
    }
    case '{': m->type = GW_MEMBER_OBJECT; return plain_object(c, index, depth + 1);
    case 't': m->type = GW_MEMBER_TRUE; return pc_plain_word(&c->text, "true", 4);
    case 'f': m->type = GW_MEMBER_FALSE; return pc_plain_word(&c->text, "false", 5);
    case 'n': m->type = GW_MEMBER_NULL; return pc_plain_word(&c->text, "null", 4);
    default: m->type = GW_MEMBER_INTEGER; return pc_plain_integer(&c->text, &m->integer);
    }
}

/* The members of the object at the cursor, listed with 'self' as their parent (-1:
 * the answer itself). False when it is not plain: a duplicate key, too many members. */
static bool plain_object(doc_cursor *c, int32_t self, int depth) {
    if (depth > DOC_DEPTH_MAX || !pc_plain_take(&c->text, '{')) return false;
    if (pc_plain_take(&c->text, '}')) return true;
    gw_doc_t *doc = c->doc;
    for (;;) {
        size_t key_bytes = 0;
        const char *key = plain_string(c, &key_bytes);
        if (key == NULL || !pc_plain_take(&c->text, ':') || member_find(doc, self, key, key_bytes) >= 0 ||
            doc->count >= GW_DOC_MEMBERS_MAX) {
            return false;
        }
        int32_t index = (int32_t)doc->count++;
        gw_member_t *m = &doc->members[index];
        m->key = key;
        m->key_bytes = key_bytes;
        m->parent = self;
        m->text = NULL;
        m->integer = 0;
        if (!plain_value(c, m, index, depth)) return false;
        if (pc_plain_take(&c->text, '}')) return true;
        if (!pc_plain_take(&c->text, ',')) return false;
    }
}

static bool plain_load(gw_doc_t *doc, const char *text, size_t bytes) {
    doc->count = 0;
    doc->text_used = 0;
    if (text == NULL) return false;
    doc_cursor c = {{text, text + bytes}, doc};
    if (!plain_object(&c, -1, 1)) return false;
    pc_plain_skip_ws(&c.text);
    return c.text.at == c.text.end; /* jansson refuses anything after the value */
}

gw_obj_t gw_doc_load(gw_doc_t *doc, const char *text, size_t bytes, bool plain_allowed) {
    doc->loaded = NULL;
    if (plain_allowed && plain_load(doc, text, bytes)) return (gw_obj_t){.doc = doc, .index = -1};
    doc->count = 0;
    json_error_t error;
    json_t *body = json_loadb(text ? text : "", bytes, 0, &error);
    if (body != NULL && !json_is_object(body)) {
        json_decref(body);
        body = NULL;
    }
    doc->loaded = body;
    return (gw_obj_t){.json = body};
}

void gw_doc_free(gw_doc_t *doc) {
    json_decref(doc->loaded);
    doc->loaded = NULL;
}

/* ---------------------------------------------------------------- reading */

bool gw_obj_valid(const gw_obj_t *o) {
    return o->doc != NULL || o->json != NULL;
}

static const gw_member_t *member(const gw_obj_t *o, const char *key) {
    if (o->doc == NULL) return NULL;
    int32_t i = member_find(o->doc, o->index, key, strlen(key));
    return i >= 0 ? &o->doc->members[i] : NULL;
}

const char *gw_obj_str(const gw_obj_t *o, const char *key) {
    if (o->json != NULL) return gw_json_str(o->json, key);
    const gw_member_t *m = member(o, key);
    return m != NULL && m->type == GW_MEMBER_STRING ? m->text : NULL;
}

bool gw_obj_int(const gw_obj_t *o, const char *key, int64_t *out) {
    if (o->json != NULL) {
        const json_t *v = json_object_get(o->json, key);
        if (!json_is_integer(v)) return false;
        *out = json_integer_value(v);
        return true;
    }
    const gw_member_t *m = member(o, key);
    if (m == NULL || m->type != GW_MEMBER_INTEGER) return false;
    *out = m->integer;
    return true;
}

int gw_obj_bool(const gw_obj_t *o, const char *key) {
    if (o->json != NULL) {
        const json_t *v = json_object_get(o->json, key);
        return json_is_true(v) ? 1 : json_is_false(v) ? 0 : -1;
    }
    const gw_member_t *m = member(o, key);
    if (m == NULL) return -1;
    return m->type == GW_MEMBER_TRUE ? 1 : m->type == GW_MEMBER_FALSE ? 0 : -1;
}

gw_obj_t gw_obj_object(const gw_obj_t *o, const char *key) {
    if (o->json != NULL) {
        json_t *v = json_object_get(o->json, key);
        return (gw_obj_t){.json = json_is_object(v) ? v : NULL};
    }
    const gw_member_t *m = member(o, key);
    if (m == NULL || m->type != GW_MEMBER_OBJECT) return (gw_obj_t){0};
    return (gw_obj_t){.doc = o->doc, .index = (int32_t)(m - o->doc->members)};
}
