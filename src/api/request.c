/* api/request.c: one HTTP request: its arena, accessors, body and reply. A request
 * is touched by one thread at a time (the MHD thread calling it, or the writer thread
 * inside the transaction while the connection is suspended), so nothing here locks. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "core/spares.h"

static const char *const known_methods[] = {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD",
                                            "OPTIONS", NULL};

/* Whose budget a body is charged to: the caller's key, or "" without one. */
static const char *body_key_id(const api_request_t *req) {
    return req->has_caller ? req->caller.id : "";
}

/* calloc'ed per request: under 1 KiB glibc serves it from its small bins (a block of
 * 1 KiB or more first consolidates every fast bin of the thread's arena). */
_Static_assert(sizeof(api_request_t) <= 1000, "api_request_t stays a small-bin allocation");
_Static_assert(sizeof(api_arena_block) + API_REQUEST_ARENA_BLOCK_BYTES < 1008 &&
                   API_REQUEST_ARENA_BLOCK_BYTES % sizeof(max_align_t) == 0,
               "an arena block stays a small-bin allocation, cut in max_align_t units");

/* Requests and their first arena block are kept for the next request (pc_spares): the
 * HTTP thread that makes one is seldom the thread that answers and frees it, and glibc
 * frees a block of another thread's arena under that arena's lock, which its own
 * thread holds as it allocates: a futex wait and wake about every other payment
 * (perf record -e syscalls:sys_enter_futex, bench_payments). A spare list's lock is
 * held for a few instructions. */
static pc_spares_t request_spares = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .count_max = API_REQUEST_SPARES_MAX,
    .record_bytes = sizeof(api_request_t),
};
static pc_spares_t block_spares = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .count_max = API_REQUEST_SPARES_MAX,
    .record_bytes = sizeof(api_arena_block) + API_REQUEST_ARENA_BLOCK_BYTES,
};

api_request_t *api_request_new(api_server_t *server, struct MHD_Connection *connection,
                               const char *method, const char *url) {
    api_request_t *req = pc_spares_take(&request_spares);
    if (req == NULL) return NULL;
    req->server = server;
    req->connection = connection;
    req->start_ns = pc_mono_ns();
    req->route_index = -1;
    atomic_init(&req->refs, 1);
    /* Only known method names reach logs and metrics: they are never client text. */
    pc_str_copy(req->method, sizeof req->method, "OTHER");
    for (uint32_t i = 0; known_methods[i] != NULL; i++) {
        if (strcmp(method, known_methods[i]) == 0) {
            pc_str_copy(req->method, sizeof req->method, method);
            break;
        }
    }
    uint64_t seq = atomic_fetch_add(&server->request_seq, 1) + 1;
    char seq_hex[PC_HEX_TEXT_SIZE]; /* "req_%s%012llx", unformatted */
    pc_u64_hex(seq_hex, seq, 12);
    const char *const parts[] = {"req_", server->instance_tag, seq_hex};
    pc_str_join(req->request_id, sizeof req->request_id, parts, 3);
    size_t path_bytes = strlen(url);
    req->path = path_bytes < sizeof req->path_inline ? req->path_inline : malloc(path_bytes + 1);
    if (req->path == NULL) {
        pc_spares_give(&request_spares, req);
        return NULL;
    }
    memcpy(req->path, url, path_bytes + 1);
    return req;
}

void api_request_free(api_request_t *req) {
    if (req == NULL) return;
    if (req->reader != NULL) api_server_reader_release(req->server, req->reader);
    json_decref(req->body_json);
    json_decref(req->idem_stored);
    api_usage_body_release(&req->server->usage, body_key_id(req), req->body_charged_bytes);
    free(req->body);
    if (req->path != req->path_inline) free(req->path);
    free(req->reply_body);
    for (uint32_t i = 0; i < req->reply_header_count; i++) {
        free(req->reply_headers[i][0]);
        free(req->reply_headers[i][1]);
    }
    api_arena_block *block = req->arena;
    while (block != NULL) {
        api_arena_block *next = block->next;
        if (block->room_bytes == API_REQUEST_ARENA_BLOCK_BYTES) pc_spares_give(&block_spares, block);
        else free(block);
        block = next;
    }
    pc_spares_give(&request_spares, req);
}

void api_request_release(api_request_t *req) {
    if (atomic_fetch_sub(&req->refs, 1) != 1) return;
    api_idem_end(req);
    api_request_free(req);
}

/* A zeroed block of 'room_bytes' (a kept one when of the usual size). */
static api_arena_block *arena_block_new(size_t room_bytes) {
    api_arena_block *block = room_bytes == API_REQUEST_ARENA_BLOCK_BYTES ? pc_spares_take(&block_spares)
                                                                         : calloc(1, sizeof(*block) + room_bytes);
    if (block != NULL) block->room_bytes = (uint32_t)room_bytes;
    return block;
}

/* Zeroed bytes that live as long as 'req': its inline room first, then cut from its
 * newest block (API_REQUEST_ARENA_BLOCK_BYTES), or a block of their own when larger. */
void *api_alloc(api_request_t *req, size_t bytes) {
    if (bytes > UINT32_MAX / 2) return NULL;
    size_t aligned_bytes = (bytes + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (aligned_bytes <= sizeof req->arena_inline - req->arena_inline_used) {
        void *at = (char *)req->arena_inline + req->arena_inline_used; /* zero: the request is calloc'ed */
        req->arena_inline_used += (uint32_t)aligned_bytes;
        return at;
    }
    api_arena_block *head = req->arena;
    if (aligned_bytes > API_REQUEST_ARENA_BLOCK_BYTES) { /* its own block, behind the one being cut */
        api_arena_block *own = arena_block_new(aligned_bytes);
        if (own == NULL) return NULL;
        own->used_bytes = own->room_bytes;
        if (head != NULL) {
            own->next = head->next;
            head->next = own;
        } else {
            req->arena = own;
        }
        return own->data;
    }
    if (head == NULL || aligned_bytes > head->room_bytes - head->used_bytes) {
        head = arena_block_new(API_REQUEST_ARENA_BLOCK_BYTES);
        if (head == NULL) return NULL;
        head->next = req->arena;
        req->arena = head;
    }
    void *at = (char *)head->data + head->used_bytes;
    head->used_bytes += (uint32_t)aligned_bytes;
    PC_ASSERT(head->used_bytes <= head->room_bytes);
    return at;
}

pc_status api_body_charge(api_request_t *req, uint64_t bytes) {
    bool admin = req->has_caller && req->caller.scope == API_SCOPE_ADMIN;
    pc_status status = api_usage_body_charge(&req->server->usage, body_key_id(req), admin, bytes);
    if (status == PC_OK) req->body_charged_bytes += bytes;
    return status;
}

/* Grows the body buffer within what the caller may buffer. A body whose length was
 * declared gets exactly that (it was charged at the headers); a chunked one doubles. */
static pc_status body_grow(api_request_t *req, size_t bytes_needed) {
    size_t capacity = req->body_capacity ? req->body_capacity : 4096;
    while (capacity < bytes_needed) capacity *= 2;
    size_t declared_capacity = (size_t)req->body_declared_bytes + 1;
    if (req->body_declared_bytes > 0 && bytes_needed <= declared_capacity) capacity = declared_capacity;
    if (capacity > req->body_charged_bytes) {
        pc_status status = api_body_charge(req, capacity - req->body_charged_bytes);
        if (status != PC_OK) return status;
    }
    char *body = realloc(req->body, capacity);
    if (body == NULL) return PC_NO_MEMORY;
    req->body = body;
    req->body_capacity = capacity;
    return PC_OK;
}

bool api_body_append(api_request_t *req, const char *data, size_t bytes) {
    if (req->body_refused != PC_OK) return false;
    if (bytes > req->server->config.body_bytes_max - req->body_bytes) {
        req->body_refused = PC_BODY_TOO_LARGE; /* counted while reading: no Content-Length needed */
        return false;
    }
    if (req->body_bytes + bytes + 1 > req->body_capacity) {
        req->body_refused = body_grow(req, req->body_bytes + bytes + 1);
        if (req->body_refused != PC_OK) return false;
    }
    memcpy(req->body + req->body_bytes, data, bytes);
    req->body_bytes += bytes;
    req->body[req->body_bytes] = '\0';
    return true;
}

const char *api_param(const api_request_t *req, uint32_t index) {
    return index < req->param_count ? req->params[index] : NULL;
}

const char *api_query(const api_request_t *req, const char *name) {
    if (req->on_engine) return api_engine_query(req, name);
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct {
    const char *const *allowed;
    const char *unknown;
} query_scan;

static enum MHD_Result query_check(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    query_scan *scan = cls;
    for (uint32_t i = 0; scan->allowed[i] != NULL; i++) {
        if (strcmp(scan->allowed[i], key) == 0) return MHD_YES;
    }
    scan->unknown = key;
    return MHD_NO;
}

bool api_query_only(api_request_t *req, const char *const *allowed) {
    query_scan scan = {.allowed = allowed};
    if (req->on_engine) {
        for (uint32_t i = 0; req->query_args != NULL && req->query_args[i].name != NULL && scan.unknown == NULL; i++) {
            (void)query_check(&scan, MHD_GET_ARGUMENT_KIND, req->query_args[i].name, req->query_args[i].value);
        }
    } else {
        MHD_get_connection_values(req->connection, MHD_GET_ARGUMENT_KIND, query_check, &scan);
    }
    if (scan.unknown == NULL) return true;
    char message[128];
    snprintf(message, sizeof message, "unknown query parameter '%.64s'", scan.unknown);
    api_reply_error(req, PC_QUERY_INVALID, scan.unknown, message);
    return false;
}

const char *api_header(const api_request_t *req, const char *name) {
    if (req->on_engine) return api_engine_header((api_request_t *)req, name); /* copied into its arena */
    return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *api_request_id(const api_request_t *req) {
    return req->request_id;
}

const api_caller_t *api_caller(const api_request_t *req) {
    return req->has_caller ? &req->caller : NULL;
}

const char *api_body(const api_request_t *req, size_t *bytes_out) {
    *bytes_out = req->body_bytes;
    return req->body != NULL ? req->body : "";
}

json_t *api_body_object(api_request_t *req) {
    if (req->body_json != NULL) return req->body_json;
    codec_error_t err = {0};
    if (req->body_bytes == 0) {
        api_reply_error(req, PC_JSON_INVALID, NULL, "the body is empty; a JSON object is required");
        return NULL;
    }
    req->body_json = codec_parse_object(req->body, req->body_bytes, &err);
    if (req->body_json == NULL) {
        api_reply_error_http(req, err.http_status, err.status, err.field[0] ? err.field : NULL,
                             err.message);
    }
    return req->body_json;
}

store_reader_t *api_reader(api_request_t *req) {
    if (req->reader == NULL) req->reader = api_server_reader_acquire(req->server);
    return req->reader;
}

api_server_t *api_request_server(const api_request_t *req) {
    return req->server;
}

/* ---- replies ---- */

void api_reply_raw(api_request_t *req, int http_status, pc_status code, const char *body,
                   size_t bytes, const char *content_type) {
    free(req->reply_body);
    req->reply_body = malloc(bytes + 1);
    if (req->reply_body != NULL) {
        memcpy(req->reply_body, body, bytes);
        req->reply_body[bytes] = '\0';
        req->reply_bytes = bytes;
    } else {
        req->reply_bytes = 0;
        http_status = 503;
        code = PC_NO_MEMORY;
    }
    req->http_status = http_status;
    req->reply_code = code;
    req->content_type = content_type;
    atomic_store(&req->replied, true);
}

static void reply_json_code(api_request_t *req, int http_status, pc_status code, json_t *body) {
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        const char *fallback = "{\"error\":{\"type\":\"api_error\",\"code\":\"out_of_memory\"}}";
        api_reply_raw(req, 503, PC_NO_MEMORY, fallback, strlen(fallback), "application/json");
        return;
    }
    api_reply_raw(req, http_status, code, text, strlen(text), "application/json");
    free(text);
}

void api_reply_json(api_request_t *req, int http_status, json_t *body) {
    reply_json_code(req, http_status, PC_OK, body);
}

const char *api_error_type(pc_status status, int http_status) {
    if (status >= 200 && status < 400) return http_status == 400 ? "invalid_request" : "ledger_error";
    if (status >= 800 && status < 900 && http_status != 400 && http_status != 404) return "payment_error";
    switch (http_status) {
    case 400: case 405: case 413: case 415: return "invalid_request";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found";
    case 409: return "idempotency_error";
    case 422: return "ledger_error";
    case 429: return "rate_limit_error";
    default: return "api_error";
    }
}

json_t *api_error_json(pc_status status, const char *field, const char *message) {
    int http_status = pc_status_http(status);
    json_t *error = json_pack("{s:s,s:s,s:s}", "type", api_error_type(status, http_status),
                              "code", pc_status_code(status), "message",
                              message ? message : pc_status_message(status));
    if (error != NULL && field != NULL) json_object_set_new(error, "field", json_string(field));
    return error;
}

void api_reply_error_http(api_request_t *req, int http_status, pc_status status,
                          const char *field, const char *message) {
    json_t *error = json_pack("{s:s,s:s,s:s}", "type", api_error_type(status, http_status),
                              "code", pc_status_code(status), "message",
                              message ? message : pc_status_message(status));
    if (error != NULL && field != NULL && field[0] != '\0') {
        json_object_set_new(error, "field", json_string(field));
    }
    reply_json_code(req, http_status, status, error ? json_pack("{s:o}", "error", error) : NULL);
}

void api_reply_error_with(api_request_t *req, int http_status, pc_status status, const char *field,
                          const char *message, const char *extra_key, const char *extra_value) {
    json_t *error = json_pack("{s:s,s:s,s:s}", "type", api_error_type(status, http_status),
                              "code", pc_status_code(status), "message",
                              message ? message : pc_status_message(status));
    if (error != NULL && field != NULL && field[0] != '\0') json_object_set_new(error, "field", json_string(field));
    if (error != NULL && extra_key != NULL) json_object_set_new(error, extra_key, json_string(extra_value));
    reply_json_code(req, http_status, status, error ? json_pack("{s:o}", "error", error) : NULL);
}

void api_reply_error(api_request_t *req, pc_status status, const char *field,
                     const char *message) {
    api_reply_error_http(req, pc_status_http(status), status, field, message);
}

void api_reply_text(api_request_t *req, int http_status, const char *content_type,
                    const char *body, size_t body_bytes) {
    api_reply_raw(req, http_status, PC_OK, body, body_bytes, content_type);
}

void api_reply_header(api_request_t *req, const char *name, const char *value) {
    if (req->reply_header_count == API_REPLY_HEADERS_MAX) return;
    char **slot = req->reply_headers[req->reply_header_count];
    slot[0] = pc_strdup(name);
    slot[1] = pc_strdup(value);
    if (slot[0] == NULL || slot[1] == NULL) {
        free(slot[0]);
        free(slot[1]);
        return;
    }
    req->reply_header_count++;
}

bool api_request_idempotent(const api_request_t *req) {
    return req->idem_key != NULL;
}

void api_idem_store_override(api_request_t *req, json_t *stored) {
    json_decref(req->idem_stored);
    req->idem_stored = stored;
}
