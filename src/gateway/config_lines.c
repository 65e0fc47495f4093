/* gateway/config_lines.c: the line of every value of a JSON text, by path, so that a
 * semantic error in the channels file ("weight is not a number") names its line as a
 * syntax error does. jansson keeps no positions in parsed values, so after jansson
 * accepted the text this walks it once more, only tracking structure: strings (with
 * escapes), brackets, commas and colons. It never decides what is valid JSON (jansson
 * did), and object keys are decoded by jansson too, so an escaped key matches.
 * Paths: "channels[2].eligibility.amount_max_minor"; the root is "". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw_internal.h"

#define LINES_PATH_BYTES 256

typedef struct {
    char *path;
    uint32_t line;
} line_entry;

struct gw_lines {
    line_entry *entries;
    uint32_t count;
    uint32_t capacity;
};

typedef struct {
    bool is_object;
    uint32_t index;       /* arrays: the next element's index */
    size_t path_bytes;    /* the container's own path length */
    bool want_key;        /* objects: the next string is a key */
} frame;

typedef struct {
    gw_lines_t *lines;
    frame stack[GW_CONFIG_DEPTH_MAX + 1];
    uint32_t depth;
    char path[LINES_PATH_BYTES];
    size_t path_bytes;
    uint32_t line;
    bool failed;
} scan;

static void record(scan *s) {
    gw_lines_t *l = s->lines;
    if (l->count == l->capacity) {
        uint32_t capacity = l->capacity ? l->capacity * 2 : 64;
        line_entry *grown = realloc(l->entries, capacity * sizeof *grown);
        if (grown == NULL) { s->failed = true; return; }
        l->entries = grown;
        l->capacity = capacity;
    }
    char *copy = malloc(s->path_bytes + 1);
    if (copy == NULL) { s->failed = true; return; }
    memcpy(copy, s->path, s->path_bytes);
    copy[s->path_bytes] = '\0';
    l->entries[l->count++] = (line_entry){copy, s->line};
}

static void path_append(scan *s, const char *text) {
    PC_ASSERT(s->path_bytes < LINES_PATH_BYTES);
    size_t room = LINES_PATH_BYTES - 1 - s->path_bytes;
    size_t bytes = strnlen(text, room);
    memcpy(s->path + s->path_bytes, text, bytes);
    s->path_bytes += bytes;
}

/* A value starts here: inside an array its path gets the index. */
static void value_start(scan *s) {
    if (s->depth > 0) {
        frame *f = &s->stack[s->depth - 1];
        if (!f->is_object) {
            char index[16];
            s->path_bytes = f->path_bytes;
            snprintf(index, sizeof index, "[%u]", f->index++);
            path_append(s, index);
        }
    }
    record(s);
}

/* The key string text[start..end] (quotes included), decoded by jansson. */
static void key_seen(scan *s, const char *text, size_t start, size_t end) {
    frame *f = &s->stack[s->depth - 1];
    json_error_t error;
    json_t *key = json_loadb(text + start, end - start, JSON_DECODE_ANY, &error);
    s->path_bytes = f->path_bytes;
    if (s->path_bytes > 0) path_append(s, ".");
    path_append(s, key != NULL && json_is_string(key) ? json_string_value(key) : "?");
    json_decref(key);
    f->want_key = false;
}

/* Skips a string starting at text[i] == '"'; returns the index after its closing quote. */
static size_t skip_string(scan *s, const char *text, size_t bytes, size_t i) {
    for (i++; i < bytes; i++) {
        if (text[i] == '\\') { i++; continue; }
        if (text[i] == '\n') s->line++;
        if (text[i] == '"') return i + 1;
    }
    return bytes;
}

static void open_container(scan *s, bool is_object) {
    value_start(s);
    if (s->depth > GW_CONFIG_DEPTH_MAX) { s->failed = true; return; }
    s->stack[s->depth++] = (frame){is_object, 0, s->path_bytes, is_object};
}

static void close_container(scan *s) {
    if (s->depth == 0) { s->failed = true; return; }
    s->depth--;
    s->path_bytes = s->stack[s->depth].path_bytes;
}

static void scan_text(scan *s, const char *text, size_t bytes) {
    size_t i = 0;
    while (i < bytes && !s->failed) {
        char c = text[i];
        frame *f = s->depth > 0 ? &s->stack[s->depth - 1] : NULL;
        if (c == '\n') { s->line++; i++; continue; }
        if (c == ' ' || c == '\t' || c == '\r' || c == ':') { i++; continue; }
        if (c == ',') {
            if (f != NULL && f->is_object) f->want_key = true;
            i++;
            continue;
        }
        if (c == '{' || c == '[') { open_container(s, c == '{'); i++; continue; }
        if (c == '}' || c == ']') { close_container(s); i++; continue; }
        if (c == '"') {
            size_t end = skip_string(s, text, bytes, i);
            if (f != NULL && f->want_key) key_seen(s, text, i, end);
            else value_start(s);
            i = end;
            continue;
        }
        value_start(s); /* a number, true, false or null */
        while (i < bytes && strchr(",}] \t\r\n", text[i]) == NULL) i++;
    }
}

gw_lines_t *gw_lines_scan(const char *text, size_t bytes) {
    gw_lines_t *lines = calloc(1, sizeof *lines);
    if (lines == NULL) return NULL;
    scan s = {.lines = lines, .line = 1};
    scan_text(&s, text, bytes);
    if (s.failed) {
        gw_lines_free(lines);
        return NULL;
    }
    return lines;
}

uint32_t gw_lines_find(const gw_lines_t *lines, const char *path) {
    if (lines == NULL) return 0;
    for (uint32_t i = 0; i < lines->count; i++) {
        if (strcmp(lines->entries[i].path, path) == 0) return lines->entries[i].line;
    }
    return 0;
}

void gw_lines_free(gw_lines_t *lines) {
    if (lines == NULL) return;
    for (uint32_t i = 0; i < lines->count; i++) free(lines->entries[i].path);
    free(lines->entries);
    free(lines);
}
