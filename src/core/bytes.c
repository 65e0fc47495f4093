/* core/bytes.c: the growing byte buffer (bytes.h). */
#include "core/bytes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paycore/status.h"

void pc_bytes_init(pc_bytes_t *b, size_t bytes_max) {
    b->data = NULL;
    b->bytes = 0;
    b->capacity = 0;
    b->bytes_max = bytes_max;
    b->failure = PC_BYTES_OK;
}

void pc_bytes_adopt(pc_bytes_t *b, char *data, size_t bytes, size_t capacity, size_t bytes_max) {
    PC_ASSERT(data != NULL && bytes < capacity && data[bytes] == '\0');
    b->data = data;
    b->bytes = bytes;
    b->capacity = capacity;
    b->bytes_max = bytes_max;
    b->failure = PC_BYTES_OK;
}

void pc_bytes_free(pc_bytes_t *b) {
    free(b->data);
    pc_bytes_init(b, b->bytes_max);
}

static bool fail(pc_bytes_t *b, pc_bytes_failure failure) {
    b->failure = failure;
    return false;
}

/* The capacity to grow to for 'needed' bytes (the NUL's included): double, at least
 * PC_BYTES_CAPACITY_MIN, never past bytes_max and its NUL. */
static size_t capacity_for(const pc_bytes_t *b, size_t needed) {
    size_t capacity;
    if (__builtin_mul_overflow(b->capacity, (size_t)2, &capacity)) capacity = needed;
    if (capacity < PC_BYTES_CAPACITY_MIN) capacity = PC_BYTES_CAPACITY_MIN;
    if (capacity < needed) capacity = needed;
    if (capacity - 1 > b->bytes_max) capacity = b->bytes_max + 1; /* needed - 1 <= bytes_max */
    return capacity;
}

bool pc_bytes_reserve(pc_bytes_t *b, size_t more_bytes) {
    if (b->failure != PC_BYTES_OK) return false;
    size_t content_bytes, needed;
    if (__builtin_add_overflow(b->bytes, more_bytes, &content_bytes)) return fail(b, PC_BYTES_TOO_LARGE);
    if (content_bytes > b->bytes_max) return fail(b, PC_BYTES_TOO_LARGE);
    if (__builtin_add_overflow(content_bytes, (size_t)1, &needed)) return fail(b, PC_BYTES_NO_MEMORY);
    if (needed <= b->capacity) return true;
    size_t capacity = capacity_for(b, needed);
    char *grown = realloc(b->data, capacity);
    if (grown == NULL) return fail(b, PC_BYTES_NO_MEMORY);
    if (b->data == NULL) grown[0] = '\0';
    b->data = grown;
    b->capacity = capacity;
    return true;
}

bool pc_bytes__append_grow(pc_bytes_t *b, const void *data, size_t bytes) {
    if (!pc_bytes_reserve(b, bytes)) return false;
    if (bytes > 0) memcpy(b->data + b->bytes, data, bytes);
    b->bytes += bytes;
    b->data[b->bytes] = '\0';
    return true;
}

bool pc_bytes_append_str(pc_bytes_t *b, const char *text) {
    return pc_bytes_append(b, text, strlen(text));
}

bool pc_bytes_vappendf(pc_bytes_t *b, const char *format, va_list args) {
    if (b->failure != PC_BYTES_OK) return false;
    size_t room = b->capacity - b->bytes;
    va_list again;
    va_copy(again, args);
    /* written into the room left; what does not fit is written again after one growth */
    int n = vsnprintf(room > 0 ? b->data + b->bytes : NULL, room, format, args);
    bool ok = n >= 0;
    if (ok && (size_t)n >= room) {
        if (room > 0) b->data[b->bytes] = '\0'; /* the cut first try is undone */
        ok = pc_bytes_reserve(b, (size_t)n) && vsnprintf(b->data + b->bytes, (size_t)n + 1, format, again) == n;
    }
    va_end(again);
    if (!ok) {
        if (b->data != NULL) b->data[b->bytes] = '\0';
        if (b->failure == PC_BYTES_OK) b->failure = PC_BYTES_NO_MEMORY; /* an encoding error */
        return false;
    }
    b->bytes += (size_t)n;
    return true;
}

bool pc_bytes_appendf(pc_bytes_t *b, const char *format, ...) {
    va_list args;
    va_start(args, format);
    bool ok = pc_bytes_vappendf(b, format, args);
    va_end(args);
    return ok;
}

void pc_bytes_rewind(pc_bytes_t *b, size_t mark_bytes) {
    PC_ASSERT(mark_bytes <= b->bytes);
    b->bytes = mark_bytes;
    if (b->data != NULL) b->data[mark_bytes] = '\0';
    b->failure = PC_BYTES_OK;
}

char *pc_bytes_take(pc_bytes_t *b, size_t *bytes_out) {
    char *text = NULL;
    size_t bytes = 0;
    if (b->failure == PC_BYTES_OK && (b->data != NULL || pc_bytes_reserve(b, 0))) {
        text = b->data;
        bytes = b->bytes;
        b->data = NULL;
    }
    pc_bytes_free(b);
    if (bytes_out != NULL) *bytes_out = bytes;
    return text;
}
