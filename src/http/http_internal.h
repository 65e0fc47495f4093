/* http/http_internal.h: what the engine's files share (the parser and the server). */
#ifndef PAYCORE_HTTP_INTERNAL_H
#define PAYCORE_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

#define HTTP_PARSE_MORE 0u /* the head is not complete yet */

typedef struct {
    uint32_t name_offset; /* from the start of the request */
    uint32_t name_bytes;
    uint32_t value_offset;
    uint32_t value_bytes;
} http_header_slot_t;

typedef struct {
    uint32_t header_bytes_max;
    uint32_t request_line_bytes_max;
    uint32_t header_count_max;
    uint64_t body_bytes_max;
} http_limits_t;

/* A parsed request head; offsets point into the bytes it was parsed from. */
typedef struct {
    uint32_t method_offset, method_bytes;
    uint32_t target_offset, target_bytes;
    unsigned version;        /* 10 or 11 */
    uint32_t head_bytes;     /* request line and headers with the blank line */
    uint64_t body_bytes;     /* Content-Length, 0 without; a chunked body's once decoded */
    bool chunked;            /* Transfer-Encoding: chunked */
    bool keep_alive;
    bool expect_continue;
    bool is_head_method;
    uint32_t header_count;
    http_header_slot_t *headers; /* header_count_max slots, the caller's */
} http_head_t;

/* Parses the head at 'bytes' (byte_count read so far). '*scan_from' keeps where the
 * search for the blank line stopped across calls (start at 0 for a new request).
 * Returns HTTP_PARSE_MORE while incomplete and within limits, 200 when 'head' is
 * filled, or the error status to answer before closing (400, 413, 414, 417, 431,
 * 501, 505). */
unsigned http_parse_head(const char *bytes, size_t byte_count, size_t *scan_from, const http_limits_t *limits,
                         http_head_t *head);

/* ---- a chunked request body, decoded in place ---- */

#define HTTP_CHUNKED_ANNOUNCED 1u     /* a chunk's size is known: body_bytes + data_left_bytes */
#define HTTP_CHUNK_LINE_BYTES_MAX 1024 /* a chunk-size line with its extensions; 400 past it */

typedef enum { HTTP_CHUNK_SIZE = 0, HTTP_CHUNK_DATA, HTTP_CHUNK_DATA_END, HTTP_CHUNK_TRAILER, HTTP_CHUNK_DONE } http_chunk_phase_t;

typedef struct {
    http_chunk_phase_t phase;
    uint64_t data_left_bytes; /* of the chunk being read */
    uint64_t body_bytes;      /* decoded so far: the body's first bytes */
    uint32_t trailer_bytes;   /* trailer lines read (and dropped) so far */
} http_chunked_t;             /* zero: a new body */

typedef struct {
    uint64_t body_bytes_max;    /* a chunk that would pass it: 413 before its data */
    uint32_t trailer_bytes_max; /* the trailer section with its blank line; 431 past it */
} http_chunked_limits_t;

/* Decodes what arrived of a chunked body at 'body' ('*byte_count' bytes: the decoded
 * bytes, then raw ones), in place: the decoded bytes stay at the front and what is
 * left undecoded (part of a line, or the next request after the body) follows them;
 * '*byte_count' becomes their sum. Returns HTTP_PARSE_MORE (all used: more input),
 * HTTP_CHUNKED_ANNOUNCED (a chunk's size was read; call again), 200 (the body is
 * whole: chunked->body_bytes), or the status to answer before closing: 400 (bad hex,
 * a missing CRLF, a bad line, a line over HTTP_CHUNK_LINE_BYTES_MAX), 413, 431. */
unsigned http_chunked_decode(http_chunked_t *chunked, char *body, size_t *byte_count,
                             const http_chunked_limits_t *limits);

/* The first header named 'name' (case-insensitive) in a parsed head. */
const http_header_slot_t *http_head_find(const char *bytes, const http_head_t *head, const char *name,
                                         size_t name_bytes);

#endif
