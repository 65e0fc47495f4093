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
    uint64_t body_bytes;     /* Content-Length, 0 without */
    bool keep_alive;
    bool expect_continue;
    bool is_head_method;
    uint32_t header_count;
    http_header_slot_t *headers; /* header_count_max slots, the caller's */
} http_head_t;

/* Parses the head at 'bytes' (byte_count read so far). '*scan_from' keeps where the
 * search for the blank line stopped across calls (start at 0 for a new request).
 * Returns HTTP_PARSE_MORE while incomplete and within limits, 200 when 'head' is
 * filled, or the error status to answer before closing (400, 411, 413, 414, 417,
 * 431, 501, 505). */
unsigned http_parse_head(const char *bytes, size_t byte_count, size_t *scan_from, const http_limits_t *limits,
                         http_head_t *head);

/* The first header named 'name' (case-insensitive) in a parsed head. */
const http_header_slot_t *http_head_find(const char *bytes, const http_head_t *head, const char *name,
                                         size_t name_bytes);

#endif
