/* core/bytes.h: a growing byte buffer with a maximum size, for texts built piece by
 * piece (metrics pages, answers read in chunks, SQL array literals). A step that would
 * pass the maximum, or finds no memory, fails and the buffer stays failed: later steps
 * do nothing, so a caller checks once at the end. Nothing is ever cut silently: a
 * failed step leaves the content as it was before it. The content is always followed
 * by a NUL (once anything is allocated), so a text can be read as a C string. Not
 * shared between threads: one owner at a time.
 */
#ifndef PAYCORE_CORE_BYTES_H
#define PAYCORE_CORE_BYTES_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Why a buffer failed. */
typedef enum {
    PC_BYTES_OK = 0,
    PC_BYTES_NO_MEMORY,  /* an allocation failed, or a size did not fit in size_t */
    PC_BYTES_TOO_LARGE,  /* a step would have passed bytes_max */
} pc_bytes_failure;

/* The first allocation's capacity at the least (then it doubles). */
#define PC_BYTES_CAPACITY_MIN 1024

typedef struct {
    char *data;                 /* malloc'ed; NULL until something is allocated */
    size_t bytes;               /* the content, without the NUL after it */
    size_t capacity;            /* allocated, the NUL's byte included */
    size_t bytes_max;           /* the content never passes it */
    pc_bytes_failure failure;   /* PC_BYTES_OK until a step fails */
} pc_bytes_t;

/* An empty buffer that may hold up to 'bytes_max' bytes; nothing allocated yet. */
void pc_bytes_init(pc_bytes_t *b, size_t bytes_max);
/* Takes over 'data' (malloc'ed, 'capacity' bytes, a NUL at data[bytes]) as its content. */
void pc_bytes_adopt(pc_bytes_t *b, char *data, size_t bytes, size_t capacity, size_t bytes_max);
/* Frees the memory; the buffer is empty (and not failed) after, and may be used again. */
void pc_bytes_free(pc_bytes_t *b);

static inline bool pc_bytes_failed(const pc_bytes_t *b) { return b->failure != PC_BYTES_OK; }

/* Room for 'more_bytes' more (and the NUL) without another allocation; false when the
 * buffer failed (now or before). */
bool pc_bytes_reserve(pc_bytes_t *b, size_t more_bytes);
bool pc_bytes__append_grow(pc_bytes_t *b, const void *data, size_t bytes);
/* Appends 'bytes' bytes (any bytes, NULs too); false when the buffer failed. Inline
 * while it fits (a chunk of an answer read on a hot path): no call, no overflow check
 * needed, as the capacity never passes bytes_max and its NUL. */
static inline bool pc_bytes_append(pc_bytes_t *b, const void *data, size_t bytes) {
    if (b->capacity - b->bytes <= bytes || b->failure != PC_BYTES_OK) return pc_bytes__append_grow(b, data, bytes);
    memcpy(b->data + b->bytes, data, bytes);
    b->bytes += bytes;
    b->data[b->bytes] = '\0';
    return true;
}
/* Appends a C string; false when the buffer failed. */
bool pc_bytes_append_str(pc_bytes_t *b, const char *text);
/* Appends printf-style text; false when the buffer failed (an encoding error of the
 * format counts as PC_BYTES_NO_MEMORY). */
bool pc_bytes_appendf(pc_bytes_t *b, const char *format, ...) __attribute__((format(printf, 2, 3)));
bool pc_bytes_vappendf(pc_bytes_t *b, const char *format, va_list args) __attribute__((format(printf, 2, 0)));

/* Back to its first 'mark_bytes' bytes (at most b->bytes), and no longer failed: what
 * came after the mark, a failed step's part included, is dropped whole. The memory is
 * kept. */
void pc_bytes_rewind(pc_bytes_t *b, size_t mark_bytes);
/* Empty and not failed; the memory is kept for reuse. */
static inline void pc_bytes_reset(pc_bytes_t *b) { pc_bytes_rewind(b, 0); }

/* The content as a malloc'ed, NUL-terminated text the caller owns (free()); its length
 * in '*bytes_out' (may be NULL). NULL when the buffer failed (its memory is freed) or
 * no memory was left for an empty text. The buffer is empty after, either way, with
 * the same bytes_max. */
char *pc_bytes_take(pc_bytes_t *b, size_t *bytes_out);

#endif
