/* http/parse.c: the request head of HTTP/1.0 and 1.1 (RFC 9112), strictly. The head
 * is parsed once, when its blank line has arrived: until then only the limits are
 * checked, so a head split at any byte parses the same. Headers are kept as offsets
 * into the connection's buffer (no copy, no allocation). Refused: obs-fold, a bare LF,
 * NUL or other control bytes, blanks before a colon, two Content-Lengths, a length
 * that is not plain digits or does not fit; Transfer-Encoding other than exactly one
 * "chunked" (RFC 9112 §6: with Content-Length, twice or on HTTP/1.0 400, another
 * coding 501). A chunked body is decoded in place as it arrives (http_chunked_decode,
 * below). */
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "http/http_internal.h"

/* RFC 9110 tchar: a lookup, since every byte of every method and header name asks */
#define TCHAR_ALNUM(first, last) [first ... last] = true
static const bool tchar_table[256] = {
    TCHAR_ALNUM('0', '9'), TCHAR_ALNUM('a', 'z'), TCHAR_ALNUM('A', 'Z'),
    ['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true, ['\''] = true, ['*'] = true,
    ['+'] = true, ['-'] = true, ['.'] = true, ['^'] = true, ['_'] = true, ['`'] = true, ['|'] = true, ['~'] = true,
};

static inline bool is_tchar(unsigned char c) {
    return tchar_table[c];
}

/* visible bytes, blanks and obs-text: what a field value may hold */
static bool is_value_byte(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool text_equals_nocase(const char *bytes, size_t byte_count, const char *word) {
    return strlen(word) == byte_count && strncasecmp(bytes, word, byte_count) == 0;
}

/* True if the comma-separated list holds 'token' (Connection: keep-alive, close). */
static bool list_has_token(const char *bytes, size_t byte_count, const char *token) {
    size_t at = 0;
    while (at < byte_count) {
        while (at < byte_count && (bytes[at] == ' ' || bytes[at] == '\t' || bytes[at] == ',')) at++;
        size_t start = at;
        while (at < byte_count && bytes[at] != ',') at++;
        size_t end = at;
        while (end > start && (bytes[end - 1] == ' ' || bytes[end - 1] == '\t')) end--;
        if (end > start && text_equals_nocase(bytes + start, end - start, token)) return true;
    }
    return false;
}

/* The first "\r\n\r\n" in 'bytes', or NULL: memchr (vector code) jumps from one '\r'
 * to the next, a line at a time; glibc's memmem walks a short needle byte by byte
 * (callgrind: ~1k instructions per request head). Linear whatever the bytes. */
static const char *blank_line_find(const char *bytes, size_t byte_count) {
    const char *end = bytes + byte_count;
    const char *at = bytes;
    while (end - at >= 4 && (at = memchr(at, '\r', (size_t)(end - at) - 3)) != NULL) {
        if (at[1] == '\n' && at[2] == '\r' && at[3] == '\n') return at;
        at++;
    }
    return NULL;
}

/* Where the head's blank line ends, or 0; fails early on what cannot become a head. */
static size_t head_end(const char *bytes, size_t byte_count, size_t *scan_from, unsigned *error,
                       const http_limits_t *limits) {
    size_t at = *scan_from;
    const char *found = byte_count > at ? blank_line_find(bytes + at, byte_count - at) : NULL;
    if (found != NULL) return (size_t)(found - bytes) + 4;
    at = byte_count > 3 ? byte_count - 3 : 0; /* the blank line may straddle the next read */
    *scan_from = at;
    const char *line_end = memchr(bytes, '\n', byte_count);
    size_t line_bytes = line_end != NULL ? (size_t)(line_end - bytes) : byte_count;
    if (line_bytes > limits->request_line_bytes_max) *error = 414;
    else if (byte_count >= limits->header_bytes_max) *error = 431;
    else if (memchr(bytes, '\0', byte_count) != NULL) *error = 400;
    return 0;
}

static unsigned parse_version(const char *bytes, size_t byte_count, unsigned *version) {
    if (byte_count != 8 || memcmp(bytes, "HTTP/", 5) != 0 || bytes[6] != '.') return 400;
    if (bytes[5] < '0' || bytes[5] > '9' || bytes[7] < '0' || bytes[7] > '9') return 400;
    if (bytes[5] != '1') return 505;
    *version = bytes[7] == '0' ? 10 : 11;
    return 200;
}

/* METHOD SP target SP HTTP/1.x, exactly one space each */
static unsigned parse_request_line(const char *bytes, size_t line_bytes, http_head_t *head) {
    size_t at = 0;
    while (at < line_bytes && is_tchar((unsigned char)bytes[at])) at++;
    if (at == 0 || at >= line_bytes || bytes[at] != ' ') return 400;
    head->method_offset = 0;
    head->method_bytes = (uint32_t)at;
    size_t target_start = ++at;
    while (at < line_bytes && (unsigned char)bytes[at] > 0x20 && bytes[at] != 0x7f) at++;
    if (at == target_start || at >= line_bytes || bytes[at] != ' ') return 400;
    head->target_offset = (uint32_t)target_start;
    head->target_bytes = (uint32_t)(at - target_start);
    return parse_version(bytes + at + 1, line_bytes - at - 1, &head->version);
}

/* name ":" value, the name a token, the value visible bytes and blanks; the colon's
 * offset, or 0 when the line is not a field line (obs-fold included) */
static size_t field_line_colon(const char *line, size_t line_bytes) {
    size_t colon = 0;
    while (colon < line_bytes && is_tchar((unsigned char)line[colon])) colon++;
    if (colon == 0 || colon >= line_bytes || line[colon] != ':') return 0;
    for (size_t at = colon + 1; at < line_bytes; at++) {
        if (!is_value_byte((unsigned char)line[at])) return 0;
    }
    return colon;
}

static unsigned parse_header_line(const char *bytes, size_t line_start, size_t line_bytes, const http_limits_t *limits,
                                  http_head_t *head) {
    const char *line = bytes + line_start;
    size_t colon = field_line_colon(line, line_bytes);
    if (colon == 0) return 400;
    size_t value_start = colon + 1, value_end = line_bytes;
    while (value_start < value_end && (line[value_start] == ' ' || line[value_start] == '\t')) value_start++;
    while (value_end > value_start && (line[value_end - 1] == ' ' || line[value_end - 1] == '\t')) value_end--;
    if (head->header_count >= limits->header_count_max) return 431;
    head->headers[head->header_count++] = (http_header_slot_t){
        .name_offset = (uint32_t)line_start, .name_bytes = (uint32_t)colon,
        .value_offset = (uint32_t)(line_start + value_start), .value_bytes = (uint32_t)(value_end - value_start)};
    return 200;
}

/* Plain digits that fit; nothing else is a Content-Length. */
static bool parse_length(const char *bytes, size_t byte_count, uint64_t *out) {
    if (byte_count == 0 || byte_count > 19) return false;
    uint64_t value = 0;
    for (size_t at = 0; at < byte_count; at++) {
        if (bytes[at] < '0' || bytes[at] > '9') return false;
        value = value * 10 + (uint64_t)(bytes[at] - '0');
    }
    *out = value;
    return true;
}

/* The framing and connection headers, once every header is known. */
static unsigned head_semantics(const char *bytes, const http_limits_t *limits, http_head_t *head) {
    bool length_seen = false, encoding_chunked = false;
    uint32_t encoding_count = 0;
    bool close = false, keep_alive = false;
    for (uint32_t index = 0; index < head->header_count; index++) {
        const http_header_slot_t *slot = &head->headers[index];
        const char *name = bytes + slot->name_offset, *value = bytes + slot->value_offset;
        if (text_equals_nocase(name, slot->name_bytes, "content-length")) {
            if (length_seen || !parse_length(value, slot->value_bytes, &head->body_bytes)) return 400;
            length_seen = true;
        } else if (text_equals_nocase(name, slot->name_bytes, "transfer-encoding")) {
            encoding_count++;
            encoding_chunked = text_equals_nocase(value, slot->value_bytes, "chunked");
        } else if (text_equals_nocase(name, slot->name_bytes, "connection")) {
            close = close || list_has_token(value, slot->value_bytes, "close");
            keep_alive = keep_alive || list_has_token(value, slot->value_bytes, "keep-alive");
        } else if (text_equals_nocase(name, slot->name_bytes, "expect")) {
            if (!text_equals_nocase(value, slot->value_bytes, "100-continue")) return 417;
            head->expect_continue = head->version == 11;
        }
    }
    /* RFC 9112 §6.1, §6.3: a length beside a coding, a coding named twice or on 1.0
     * could frame the body two ways (smuggling): refused and closed */
    if (encoding_count > 0 && (length_seen || encoding_count > 1 || head->version == 10)) return 400;
    if (encoding_count > 0 && !encoding_chunked) return 501;
    head->chunked = encoding_count > 0;
    if (head->body_bytes > limits->body_bytes_max) return 413;
    head->keep_alive = head->version == 11 ? !close : keep_alive && !close;
    head->is_head_method = text_equals_nocase(bytes, head->method_bytes, "HEAD");
    return 200;
}

unsigned http_parse_head(const char *bytes, size_t byte_count, size_t *scan_from, const http_limits_t *limits,
                         http_head_t *head) {
    unsigned status = HTTP_PARSE_MORE;
    size_t end = head_end(bytes, byte_count, scan_from, &status, limits);
    if (end == 0) return status;
    if (end > limits->header_bytes_max) return 431;
    head->header_count = 0;
    head->body_bytes = 0;
    head->chunked = false;
    head->expect_continue = false;
    head->head_bytes = (uint32_t)end;
    size_t line_start = 0;
    bool first = true;
    while (line_start < end - 2) {
        const char *lf = memchr(bytes + line_start, '\n', end - line_start);
        size_t line_bytes = (size_t)(lf - (bytes + line_start));
        if (line_bytes == 0 || bytes[line_start + line_bytes - 1] != '\r') return 400; /* bare LF */
        line_bytes--;
        if (first && line_bytes > limits->request_line_bytes_max) return 414;
        status = first ? parse_request_line(bytes, line_bytes, head)
                       : parse_header_line(bytes, line_start, line_bytes, limits, head);
        if (status != 200) return status;
        first = false;
        line_start += line_bytes + 2;
    }
    return head_semantics(bytes, limits, head);
}

/* ---- a chunked body (RFC 9112 §7.1) ---- */

/* chunk-size [ BWS ";" chunk-ext ] without its CRLF; extensions are ignored, but
 * must be visible bytes and blanks. False when it is not one or does not fit. */
static bool chunk_size_parse(const char *line, size_t line_bytes, uint64_t *size_bytes) {
    size_t at = 0;
    uint64_t value = 0;
    for (; at < line_bytes && pc_hex_digit(line[at]) >= 0; at++) {
        if (value > (UINT64_MAX >> 4)) return false;
        value = value << 4 | (uint64_t)pc_hex_digit(line[at]);
    }
    if (at == 0) return false;
    size_t digits_end = at;
    while (at < line_bytes && (line[at] == ' ' || line[at] == '\t')) at++;
    if (at < line_bytes && line[at] != ';') return false;
    if (at == line_bytes && at != digits_end) return false; /* blanks and nothing after */
    for (; at < line_bytes; at++) {
        if (!is_value_byte((unsigned char)line[at])) return false;
    }
    *size_bytes = value;
    return true;
}

/* The line at 'line' (up to 'available' bytes): its length without CRLF, or
 * SIZE_MAX while its LF has not come; 400 in '*error' on a bare LF. */
static size_t chunk_line(const char *line, size_t available, unsigned *error) {
    const char *lf = memchr(line, '\n', available);
    if (lf == NULL) return SIZE_MAX;
    size_t line_bytes = (size_t)(lf - line);
    if (line_bytes == 0 || line[line_bytes - 1] != '\r') *error = 400;
    return line_bytes - (line_bytes > 0);
}

/* One step of the decoder at 'raw' ('available' bytes); returns the bytes used (0:
 * more are needed) and sets '*status' when the step ends the decoding or asks the
 * caller (HTTP_CHUNKED_ANNOUNCED, 200, an error). */
static size_t chunked_step(http_chunked_t *chunked, char *body, const char *raw, size_t available,
                           const http_chunked_limits_t *limits, unsigned *status) {
    unsigned error = 0;
    size_t line_bytes = SIZE_MAX;
    if (chunked->phase == HTTP_CHUNK_DATA) {
        size_t take = available < chunked->data_left_bytes ? available : (size_t)chunked->data_left_bytes;
        memmove(body + chunked->body_bytes, raw, take);
        chunked->body_bytes += take;
        chunked->data_left_bytes -= take;
        if (chunked->data_left_bytes == 0) chunked->phase = HTTP_CHUNK_DATA_END;
        return take;
    }
    if (chunked->phase == HTTP_CHUNK_DATA_END) {
        if (available >= 1 && raw[0] != '\r') *status = 400;
        else if (available >= 2 && raw[1] != '\n') *status = 400; /* the CRLF after a chunk's data */
        if (available < 2 || *status != HTTP_PARSE_MORE) return 0;
        chunked->phase = HTTP_CHUNK_SIZE;
        return 2;
    }
    if (chunked->phase == HTTP_CHUNK_SIZE) {
        line_bytes = chunk_line(raw, available < HTTP_CHUNK_LINE_BYTES_MAX + 2 ? available : HTTP_CHUNK_LINE_BYTES_MAX + 2, &error);
        uint64_t size_bytes = 0;
        if (line_bytes == SIZE_MAX) {
            if (available >= HTTP_CHUNK_LINE_BYTES_MAX + 2) *status = 400;
            return 0;
        }
        if (error != 0 || !chunk_size_parse(raw, line_bytes, &size_bytes)) *status = 400;
        else if (size_bytes > limits->body_bytes_max - chunked->body_bytes) *status = 413;
        if (*status != HTTP_PARSE_MORE) return 0;
        chunked->data_left_bytes = size_bytes;
        chunked->phase = size_bytes > 0 ? HTTP_CHUNK_DATA : HTTP_CHUNK_TRAILER;
        if (size_bytes > 0) *status = HTTP_CHUNKED_ANNOUNCED;
        return line_bytes + 2;
    }
    /* HTTP_CHUNK_TRAILER: field lines, read within the head's limits and dropped */
    uint32_t room_bytes = limits->trailer_bytes_max - chunked->trailer_bytes;
    line_bytes = chunk_line(raw, available < room_bytes ? available : room_bytes, &error);
    if (line_bytes == SIZE_MAX) {
        if (available >= room_bytes) *status = 431;
        return 0;
    }
    if (error != 0 || (line_bytes > 0 && field_line_colon(raw, line_bytes) == 0)) *status = 400;
    if (*status != HTTP_PARSE_MORE) return 0;
    chunked->trailer_bytes += (uint32_t)line_bytes + 2;
    if (line_bytes == 0) {
        chunked->phase = HTTP_CHUNK_DONE;
        *status = 200;
    }
    return line_bytes + 2;
}

unsigned http_chunked_decode(http_chunked_t *chunked, char *body, size_t *byte_count,
                             const http_chunked_limits_t *limits) {
    PC_ASSERT(chunked->phase != HTTP_CHUNK_DONE);
    PC_ASSERT(*byte_count >= chunked->body_bytes);
    size_t raw_at = (size_t)chunked->body_bytes, end = *byte_count;
    unsigned status = HTTP_PARSE_MORE;
    while (status == HTTP_PARSE_MORE && raw_at < end) {
        size_t used = chunked_step(chunked, body, body + raw_at, end - raw_at, limits, &status);
        if (used == 0) break;
        raw_at += used;
    }
    /* what is left (part of a line, or the next request) follows the decoded bytes */
    size_t left_bytes = end - raw_at;
    memmove(body + chunked->body_bytes, body + raw_at, left_bytes);
    *byte_count = (size_t)chunked->body_bytes + left_bytes;
    return status;
}

const http_header_slot_t *http_head_find(const char *bytes, const http_head_t *head, const char *name,
                                         size_t name_bytes) {
    for (uint32_t index = 0; index < head->header_count; index++) {
        const http_header_slot_t *slot = &head->headers[index];
        if (slot->name_bytes == name_bytes && strncasecmp(bytes + slot->name_offset, name, name_bytes) == 0) {
            return slot;
        }
    }
    return NULL;
}
