/* core/status.c: the tables behind status.h, generated from status.def. */
#include "paycore/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    pc_status status;
    int http;
    bool transient;
    const char *code;
    const char *message;
} status_entry;

static const status_entry status_table[] = {
#define X(name, value, http, transient, code, message) {PC_##name, http, transient, code, message},
#include "paycore/status.def"
#undef X
};

#define STATUS_COUNT (sizeof(status_table) / sizeof(status_table[0]))

static const status_entry *status_find(pc_status status) {
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        if (status_table[i].status == status) return &status_table[i];
    }
    return NULL;
}

const char *pc_status_code(pc_status status) {
    const status_entry *entry = status_find(status);
    return entry ? entry->code : "unknown";
}

const char *pc_status_message(pc_status status) {
    const status_entry *entry = status_find(status);
    return entry ? entry->message : "unknown status";
}

int pc_status_http(pc_status status) {
    const status_entry *entry = status_find(status);
    return entry ? entry->http : 500;
}

bool pc_status_transient(pc_status status) {
    const status_entry *entry = status_find(status);
    return entry ? entry->transient : false;
}

bool pc_status_from_code(const char *code, pc_status *out) {
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        if (strcmp(status_table[i].code, code) == 0) {
            *out = status_table[i].status;
            return true;
        }
    }
    return false;
}

void pc_status_each(void (*fn)(pc_status status, void *ctx), void *ctx) {
    for (size_t i = 0; i < STATUS_COUNT; i++) fn(status_table[i].status, ctx);
}

void pc_panic(const char *file, int line, const char *condition) {
    fprintf(stderr, "paycore: assertion failed: %s (%s:%d)\n", condition, file, line);
    fflush(stderr);
    abort();
}
