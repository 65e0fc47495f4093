/* api/forward.c: a node of a shard set that does not write it (a standby waiting for
 * the writers' locks) answers on its listen address by forwarding every request (but
 * the reads forward_read.c answers) to the set's writer (docs/scaleout.md §7): the
 * address the writer advertised in shard 0's writers row (shard_directory_writer),
 * over HTTP with libcurl, the request as it came
 * (method, path, query, headers: the API key and Idempotency-Key among them, body),
 * and the writer's reply relayed as it came. The writer authenticates, checks the
 * Idempotency-Key and runs the command: this node holds no ledger and no keys, so a
 * key created a moment ago on the writer works here too.
 *
 * Failures, each a stable code: no live writer known (a takeover under way), or the
 * writer not accepting connections (nothing sent): 503 shard_writer_unavailable, with
 * Retry-After; the writer reached but its answer lost (timeout, reset): 503
 * shard_forward_failed (the request may have been applied: retry with the same ids).
 * A request already forwarded once is never forwarded again (no loops while the
 * writers rows change hands), and a node never forwards to its own address (it is
 * taking over).
 *
 * Connections to the writer are kept open and reused (a pool of libcurl handles, each
 * keeping its connections): a forwarded request costs no connect. A reused connection
 * the writer closed meanwhile is retried by libcurl on a fresh one; a request whose
 * first try left on such a connection counts as sent (shard_forward_failed), never as
 * "nothing was sent".
 *
 * Served on paycore's HTTP engine (src/http): its head and body hooks refuse a body
 * past --body-max (413) before it is read; its handler hands each request to the
 * forwarding threads (a queue; never a network or database call on an engine worker),
 * which read (forward_read.c) or forward it and answer with http_answer(). */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "obs/obs.h"
#include "store/store_shard.h"

#define FORWARD_HEADER "Paycore-Forwarded"  /* the forwarding node's address: never forwarded twice */
#define FENCE_HEADER "Paycore-Writer"        /* the writer's fence (shard.h): run only by that writer */

#define FORWARD_HEADER_TEXTS_MAX 8 /* header values one request reads as C strings */

struct api_forward {
    http_server_t *engine;
    int listen_fd;          /* borrowed: handed back by api_forward_stop */
    api_server_t *server;   /* the per-address table (conn.c) */
    shard_directory_t *directory;
    api_forward_reads_t *reads; /* the reads answered here (forward_read.c) */
    char self[STORE_WRITER_ADDRESS_SIZE];
    uint64_t body_bytes_max;
    uint32_t reply_timeout_ms;
    pthread_mutex_t pool_mutex;
    CURL **pool;            /* idle handles, each with its open connections to the writer */
    uint32_t pool_count;
    uint32_t pool_capacity; /* the forwarding threads: one handle in use per thread at most */
    /* requests handed over by the engine's workers; at most one per connection, so the
     * ring (API_CONNECTIONS_MAX) never fills */
    pthread_mutex_t queue_mutex;
    pthread_cond_t queue_ready;
    http_request_t **queue;
    uint32_t queue_head, queue_count;
    bool stopping;
    pthread_t *threads;
    uint32_t thread_count;
};

/* A request as the forwarding threads see it (api_forward_req_t in api_internal.h). */
struct api_forward_req {
    http_request_t *http;
    api_forward_t *forward;
    char method[16];
    char *path;             /* unescaped; owned */
    char *query;            /* the arguments' text, unescaped; owned */
    api_query_arg_t *args;  /* into 'query', ending with a NULL name; owned */
    char *texts[FORWARD_HEADER_TEXTS_MAX]; /* header values handed out; owned */
    uint32_t text_count;
};

/* ---- the pool of handles (and so of connections) to the writer ---- */

static CURL *handle_take(api_forward_t *forward) {
    CURL *curl = NULL;
    pthread_mutex_lock(&forward->pool_mutex);
    if (forward->pool_count > 0) curl = forward->pool[--forward->pool_count];
    pthread_mutex_unlock(&forward->pool_mutex);
    if (curl == NULL) return curl_easy_init();
    curl_easy_reset(curl); /* options cleared, connections kept */
    return curl;
}

static void handle_give_back(api_forward_t *forward, CURL *curl) {
    pthread_mutex_lock(&forward->pool_mutex);
    if (forward->pool_count < forward->pool_capacity) {
        forward->pool[forward->pool_count++] = curl;
        curl = NULL;
    }
    pthread_mutex_unlock(&forward->pool_mutex);
    if (curl != NULL) curl_easy_cleanup(curl);
}

/* A byte buffer with a bound (a request's body, a reply's body). */
typedef struct {
    char *data;
    size_t bytes;
    size_t capacity;
    size_t bytes_max;
    bool too_large;
    bool answered;     /* a request's: its reply is queued already */
} fwd_buffer_t;

static void buffer_append(fwd_buffer_t *buffer, const char *data, size_t bytes) {
    if (buffer->too_large || bytes == 0) return;
    if (bytes > buffer->bytes_max - buffer->bytes) {
        buffer->too_large = true;
        return;
    }
    if (buffer->bytes + bytes > buffer->capacity) {
        size_t capacity = buffer->capacity < 4096 ? 4096 : buffer->capacity;
        while (capacity < buffer->bytes + bytes) capacity *= 2;
        char *grown = realloc(buffer->data, capacity);
        if (grown == NULL) {
            buffer->too_large = true;
            return;
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->bytes, data, bytes);
    buffer->bytes += bytes;
}

/* ---- the request ---- */

const char *api_forward_method(const api_forward_req_t *req) {
    return req->method;
}

const char *api_forward_path(const api_forward_req_t *req) {
    return req->path;
}

const char *api_forward_header(api_forward_req_t *req, const char *name) {
    http_text_t value;
    if (!http_request_header(req->http, name, &value) || req->text_count == FORWARD_HEADER_TEXTS_MAX) return NULL;
    char *text = strndup(value.bytes, value.byte_count);
    if (text != NULL) req->texts[req->text_count++] = text;
    return text;
}

const char *api_forward_arg(void *ctx, const char *name) {
    const api_forward_req_t *req = ctx;
    for (uint32_t i = 0; req->args != NULL && req->args[i].name != NULL; i++) {
        if (strcmp(req->args[i].name, name) == 0) return req->args[i].value;
    }
    return NULL;
}

bool api_forward_args_only(const api_forward_req_t *req, const char *const *allowed) {
    for (uint32_t i = 0; req->args != NULL && req->args[i].name != NULL; i++) {
        bool found = false;
        for (uint32_t a = 0; allowed[a] != NULL && !found; a++) found = strcmp(allowed[a], req->args[i].name) == 0;
        if (!found) return false;
    }
    return true;
}

/* The query after '?', read as the API's engine reads it (engine.c). */
static bool req_query_split(api_forward_req_t *req, const char *query, size_t query_bytes) {
    req->query = strndup(query, query_bytes);
    if (req->query == NULL) return false;
    req->args = calloc(api_query_arg_slots(req->query), sizeof *req->args);
    if (req->args == NULL) return false;
    api_query_split(req->query, req->args);
    return true;
}

/* Method, unescaped path and query of 'http'; false on no memory. */
static bool req_open(api_forward_req_t *req, api_forward_t *forward, http_request_t *http) {
    *req = (api_forward_req_t){.http = http, .forward = forward};
    http_text_t method = http_request_method(http), target = http_request_target(http);
    snprintf(req->method, sizeof req->method, "%.*s", (int)method.byte_count, method.bytes);
    const char *question = memchr(target.bytes, '?', target.byte_count);
    size_t path_bytes = question != NULL ? (size_t)(question - target.bytes) : target.byte_count;
    req->path = strndup(target.bytes, path_bytes);
    if (req->path == NULL) return false;
    api_unescape(req->path, false);
    return question == NULL || req_query_split(req, question + 1, target.byte_count - path_bytes - 1);
}

static void req_close(api_forward_req_t *req) {
    for (uint32_t i = 0; i < req->text_count; i++) free(req->texts[i]);
    free(req->path);
    free(req->query);
    free(req->args);
}

/* ---- replies made here ---- */

void api_forward_reply_json(api_forward_req_t *req, unsigned http_status, json_t *body, uint32_t retry_after_s) {
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    static const char fallback[] = "{\"error\":{\"type\":\"api_error\",\"code\":\"out_of_memory\"}}";
    uint8_t random[8];
    char request_id[24] = "fwd-";
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(request_id + 4, sizeof request_id - 4, random, sizeof random);
    char lines[160]; /* answered here, not by the writer */
    int at = snprintf(lines, sizeof lines, "%sX-Request-Id: %s\r\n", api_engine_date_line(), request_id);
    if (retry_after_s > 0) snprintf(lines + at, sizeof lines - (size_t)at, "Retry-After: %u\r\n", retry_after_s);
    if (text == NULL) http_status = 503;
    (void)http_answer(req->http, http_status, "application/json", lines, text != NULL ? text : fallback,
                      text != NULL ? strlen(text) : sizeof fallback - 1);
    free(text);
}

void api_forward_reply_error(api_forward_req_t *req, pc_status status, const char *message, uint32_t retry_after_s) {
    obs_logf(OBS_LEVEL_INFO, "forward: %s: %s", pc_status_code(status), message != NULL ? message : "");
    api_forward_reply_json(req, (unsigned)pc_status_http(status),
                           json_pack("{s:o}", "error", api_error_json(status, NULL, message)), retry_after_s);
}

static void reply_error(api_forward_req_t *req, pc_status status, const char *message) {
    api_forward_reply_error(req, status, message, pc_status_transient(status) ? 1 : 0);
}

/* ---- the forwarded request ---- */

static bool hop_by_hop(const char *name) {
    static const char *const names[] = {"Host", "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding",
                                        "Expect", "TE", "Upgrade", "Proxy-Connection", FORWARD_HEADER,
                                        FENCE_HEADER};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i]) == 0) return true;
    }
    return false;
}

/* The request's headers as they came, but those of the hop; NULL with *failed. */
static struct curl_slist *headers_forwarded(http_request_t *http, bool *failed) {
    struct curl_slist *headers = NULL;
    size_t count = http_request_header_count(http);
    for (size_t index = 0; index < count && !*failed; index++) {
        http_text_t name, value;
        http_request_header_at(http, index, &name, &value);
        char name_text[128];
        if (name.byte_count >= sizeof name_text) continue; /* no header the writer reads is so long */
        memcpy(name_text, name.bytes, name.byte_count);
        name_text[name.byte_count] = '\0';
        if (hop_by_hop(name_text)) continue;
        char *line = malloc(name.byte_count + value.byte_count + 3);
        if (line == NULL) {
            *failed = true;
            break;
        }
        sprintf(line, "%s: %.*s", name_text, (int)value.byte_count, value.bytes);
        struct curl_slist *grown = curl_slist_append(headers, line);
        free(line);
        if (grown == NULL) *failed = true;
        else headers = grown;
    }
    return headers;
}

/* address + the target as it came (path and query still escaped), as a C string. */
static char *target_url(http_request_t *http, const char *address) {
    http_text_t target = http_request_target(http);
    size_t address_bytes = strlen(address);
    char *url = malloc(address_bytes + target.byte_count + 1);
    if (url == NULL) return NULL;
    memcpy(url, address, address_bytes);
    memcpy(url + address_bytes, target.bytes, target.byte_count);
    url[address_bytes + target.byte_count] = '\0';
    return url;
}
/* The writer's reply as it came: status, headers (but those of the hop), body. */
typedef struct {
    long http_status;
    fwd_buffer_t body;
    char *header_names[32];
    char *header_values[32];
    uint32_t header_count;
} fwd_reply_t;

static size_t reply_body(char *data, size_t size, size_t count, void *ctx) {
    fwd_reply_t *reply = ctx;
    buffer_append(&reply->body, data, size * count);
    return reply->body.too_large ? 0 : size * count;
}

static size_t reply_header(char *data, size_t size, size_t count, void *ctx) {
    fwd_reply_t *reply = ctx;
    size_t bytes = size * count;
    const char *colon = memchr(data, ':', bytes);
    if (bytes >= 5 && memcmp(data, "HTTP/", 5) == 0) { /* a new header block (after a 1xx) */
        for (uint32_t i = 0; i < reply->header_count; i++) {
            free(reply->header_names[i]);
            free(reply->header_values[i]);
        }
        reply->header_count = 0;
    }
    if (colon == NULL || reply->header_count == 32) return bytes;
    size_t name_bytes = (size_t)(colon - data);
    const char *value = colon + 1;
    size_t value_bytes = bytes - name_bytes - 1;
    while (value_bytes > 0 && (*value == ' ' || *value == '\t')) value++, value_bytes--;
    while (value_bytes > 0 && (value[value_bytes - 1] == '\r' || value[value_bytes - 1] == '\n')) value_bytes--;
    char *name = strndup(data, name_bytes), *copy = strndup(value, value_bytes);
    if (name == NULL || copy == NULL || hop_by_hop(name) || strcasecmp(name, "Date") == 0) {
        free(name);
        free(copy);
        return bytes;
    }
    reply->header_names[reply->header_count] = name;
    reply->header_values[reply->header_count++] = copy;
    return bytes;
}

static void reply_free(fwd_reply_t *reply) {
    free(reply->body.data);
    for (uint32_t i = 0; i < reply->header_count; i++) {
        free(reply->header_names[i]);
        free(reply->header_values[i]);
    }
    memset(reply, 0, sizeof *reply);
}

typedef enum { SEND_DONE, SEND_NOT_SENT, SEND_LOST } send_outcome;

/* libcurl calls this right before each try sends the request: a second call is a retry
 * after the first try's connection died, so the first try was sent. */
static int on_request_try(void *ctx, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                          int conn_local_port) {
    (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
    (*(uint32_t *)ctx)++;
    return CURL_PREREQFUNC_OK;
}

/* One try at the writer: SEND_NOT_SENT when no byte of the request left (the writer
 * is not accepting connections: another may be asked), SEND_LOST when the answer did
 * not come whole. */
static send_outcome send_once(api_forward_t *forward, api_forward_req_t *req, const char *url, const char *fence,
                              http_text_t body, fwd_reply_t *reply, char *why, size_t why_bytes) {
    CURL *curl = handle_take(forward);
    bool failed = false;
    uint32_t tries = 0;
    if (curl == NULL) return SEND_NOT_SENT;
    struct curl_slist *headers = headers_forwarded(req->http, &failed);
    char self_header[STORE_WRITER_ADDRESS_SIZE + 32];
    snprintf(self_header, sizeof self_header, "%s: %s", FORWARD_HEADER, forward->self);
    headers = curl_slist_append(headers, self_header);
    char fence_header[SHARD_FENCE_SIZE + 32];
    snprintf(fence_header, sizeof fence_header, "%s: %s", FENCE_HEADER, fence);
    headers = curl_slist_append(headers, fence_header);
    headers = curl_slist_append(headers, "Expect:");
    const char *method = req->method;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (body.byte_count > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.byte_count > 0 ? body.bytes : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.byte_count);
    }
    if (strcmp(method, "HEAD") == 0) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)FORWARD_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)forward->reply_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXAGE_CONN, (long)FORWARD_CONNECTION_IDLE_S_MAX);
    curl_easy_setopt(curl, CURLOPT_PREREQFUNCTION, on_request_try);
    curl_easy_setopt(curl, CURLOPT_PREREQDATA, &tries);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, reply_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, reply_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, reply);
    CURLcode code = failed || headers == NULL ? CURLE_OUT_OF_MEMORY : curl_easy_perform(curl);
    long sent_bytes = 0;
    curl_easy_getinfo(curl, CURLINFO_REQUEST_SIZE, &sent_bytes);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->http_status);
    curl_slist_free_all(headers);
    if (code == CURLE_OK) {
        handle_give_back(forward, curl);
        return SEND_DONE;
    }
    curl_easy_cleanup(curl); /* its connection may be half used: not reused */
    pc_str_copy(why, why_bytes, curl_easy_strerror(code));
    return sent_bytes == 0 && tries <= 1 ? SEND_NOT_SENT : SEND_LOST;
}

/* The writer's reply, relayed: its status, headers (but those of the hop), body. */
static void relay(api_forward_req_t *req, fwd_reply_t *reply) {
    size_t lines_bytes = 1;
    for (uint32_t i = 0; i < reply->header_count; i++) {
        lines_bytes += strlen(reply->header_names[i]) + strlen(reply->header_values[i]) + 4;
    }
    char *lines = malloc(lines_bytes);
    if (lines == NULL) {
        reply_error(req, PC_NO_MEMORY, "the writer's reply does not fit");
        return;
    }
    size_t at = 0;
    lines[0] = '\0';
    for (uint32_t i = 0; i < reply->header_count; i++) {
        at += (size_t)sprintf(lines + at, "%s: %s\r\n", reply->header_names[i], reply->header_values[i]);
    }
    (void)http_answer(req->http, (unsigned)reply->http_status, NULL, lines, reply->body.data, reply->body.bytes);
    free(lines);
}

/* The writer's address, or the reply that says why there is none. */
static bool writer_address(api_forward_t *forward, char *address, size_t address_bytes,
                           char fence[SHARD_FENCE_SIZE], char *why, size_t why_bytes) {
    if (shard_directory_writer(forward->directory, address, address_bytes, fence, why, why_bytes) != PC_OK) {
        return false;
    }
    if (strcmp(address, forward->self) == 0) {
        snprintf(why, why_bytes, "this node is taking over as the set's writer (%s): retry in a moment", fence);
        return false;
    }
    return true;
}

static void forward_request(api_forward_t *forward, api_forward_req_t *req) {
    char address[STORE_WRITER_ADDRESS_SIZE], fence[SHARD_FENCE_SIZE], why[600];
    fwd_reply_t reply = {.body = {.bytes_max = FORWARD_REPLY_BYTES_MAX}};
    send_outcome outcome = SEND_NOT_SENT;
    http_text_t body = http_request_body(req->http);
    for (int attempt = 0; attempt < 2 && outcome == SEND_NOT_SENT; attempt++) {
        if (!writer_address(forward, address, sizeof address, fence, why, sizeof why)) {
            reply_free(&reply);
            reply_error(req, PC_SHARD_WRITER_UNAVAILABLE, why);
            return;
        }
        char *url = target_url(req->http, address);
        if (url == NULL) {
            reply_free(&reply);
            reply_error(req, PC_NO_MEMORY, "the forwarded URL does not fit");
            return;
        }
        reply_free(&reply);
        reply.body.bytes_max = FORWARD_REPLY_BYTES_MAX;
        outcome = send_once(forward, req, url, fence, body, &reply, why, sizeof why);
        free(url);
        if (outcome == SEND_NOT_SENT) shard_directory_forget(forward->directory); /* read the row again */
    }
    char message[900];
    if (outcome == SEND_DONE) {
        relay(req, &reply);
    } else if (outcome == SEND_NOT_SENT) {
        snprintf(message, sizeof message, "the set's writer at %s does not accept connections (%s)", address, why);
        reply_error(req, PC_SHARD_WRITER_UNAVAILABLE, message);
    } else {
        snprintf(message, sizeof message, "forwarded to the set's writer at %s, its answer was lost (%s): the"
                 " request may have been applied; retry with the same ids", address, why);
        reply_error(req, PC_SHARD_FORWARD_FAILED, message);
    }
    reply_free(&reply);
}

/* One request, on a forwarding thread: /healthz, a read answered here, or forwarded. */
static void forward_serve(api_forward_t *forward, api_forward_req_t *req) {
    /* /healthz answers here: the process answers, and says what it is and where the writer is */
    if (strcmp(req->path, "/healthz") == 0 && strcmp(req->method, "GET") == 0) {
        char address[STORE_WRITER_ADDRESS_SIZE] = "", fence[SHARD_FENCE_SIZE], why[600];
        bool known = shard_directory_writer(forward->directory, address, sizeof address, fence, why,
                                            sizeof why) == PC_OK;
        json_t *reply = json_pack("{s:s,s:s}", "status", "ok", "role", "standby");
        if (reply != NULL) json_object_set_new(reply, "writer", known ? json_string(address) : json_null());
        api_forward_reply_json(req, 200, reply, 0);
        return;
    }
    if (api_forward_header(req, FORWARD_HEADER) != NULL) {
        reply_error(req, PC_SHARD_WRITER_UNAVAILABLE, "a forwarded request reached a node that does"
                    " not write the set (the writer changed meanwhile): retry");
        return;
    }
    if (http_request_body(req->http).byte_count == 0 && api_forward_read_local(forward->reads, req)) return;
    forward_request(forward, req);
}

/* ---- the forwarding threads ---- */

static void *forward_thread(void *arg) {
    api_forward_t *forward = arg;
    pthread_setname_np(pthread_self(), "paycore-fwd");
    pthread_mutex_lock(&forward->queue_mutex);
    for (;;) {
        while (forward->queue_count == 0 && !forward->stopping) {
            pthread_cond_wait(&forward->queue_ready, &forward->queue_mutex);
        }
        if (forward->queue_count == 0) break;
        http_request_t *http = forward->queue[forward->queue_head];
        forward->queue_head = (forward->queue_head + 1) % API_CONNECTIONS_MAX;
        forward->queue_count--;
        pthread_mutex_unlock(&forward->queue_mutex);
        api_forward_req_t req;
        if (req_open(&req, forward, http)) forward_serve(forward, &req);
        else reply_error(&req, PC_NO_MEMORY, NULL);
        req_close(&req);
        pthread_mutex_lock(&forward->queue_mutex);
    }
    pthread_mutex_unlock(&forward->queue_mutex);
    return NULL;
}

/* ---- the engine's hooks (on its workers: nothing here waits) ---- */

/* Refused before the body is read, as the writer would: past --body-max, 413. */
static bool body_refused(api_forward_t *forward, http_request_t *http, uint64_t body_bytes) {
    if (body_bytes <= forward->body_bytes_max) return false;
    api_forward_req_t req = {.http = http, .forward = forward};
    reply_error(&req, PC_BODY_TOO_LARGE, NULL);
    return true;
}

static bool forward_head(void *ctx, http_request_t *http) {
    return !body_refused(ctx, http, http_request_body_declared(http));
}

static bool forward_body(void *ctx, http_request_t *http, uint64_t body_bytes) {
    return !body_refused(ctx, http, body_bytes); /* a chunked body as it grows */
}

/* The whole request: to the forwarding threads. */
static void forward_take(void *ctx, http_request_t *http) {
    api_forward_t *forward = ctx;
    pthread_mutex_lock(&forward->queue_mutex);
    PC_ASSERT(forward->queue_count < API_CONNECTIONS_MAX); /* one request per connection at most */
    forward->queue[(forward->queue_head + forward->queue_count) % API_CONNECTIONS_MAX] = http;
    forward->queue_count++;
    pthread_cond_signal(&forward->queue_ready);
    pthread_mutex_unlock(&forward->queue_mutex);
}

/* ---- start and stop ---- */

static void threads_stop(api_forward_t *forward) {
    pthread_mutex_lock(&forward->queue_mutex);
    forward->stopping = true;
    pthread_cond_broadcast(&forward->queue_ready);
    pthread_mutex_unlock(&forward->queue_mutex);
    for (uint32_t i = 0; i < forward->thread_count; i++) pthread_join(forward->threads[i], NULL);
    forward->thread_count = 0;
}

static void forward_free(api_forward_t *forward) {
    for (uint32_t i = 0; i < forward->pool_count; i++) curl_easy_cleanup(forward->pool[i]);
    free(forward->pool);
    free(forward->queue);
    free(forward->threads);
    pthread_mutex_destroy(&forward->pool_mutex);
    pthread_mutex_destroy(&forward->queue_mutex);
    pthread_cond_destroy(&forward->queue_ready);
    api_forward_reads_close(forward->reads);
    free(forward);
}

static pc_status threads_start(api_forward_t *forward, uint32_t threads) {
    forward->threads = calloc(threads, sizeof *forward->threads);
    if (forward->threads == NULL) return PC_NO_MEMORY;
    for (uint32_t i = 0; i < threads; i++) {
        if (pthread_create(&forward->threads[i], NULL, forward_thread, forward) != 0) return PC_INTERNAL;
        forward->thread_count++;
    }
    return PC_OK;
}

/* The API's engine limits (engine.c), its handler and hooks the forwarder's. */
static pc_status engine_start(api_forward_t *forward) {
    http_config_t http;
    api_engine_config(&http, forward->server, forward->listen_fd);
    http.handler = forward_take;
    http.head = forward_head;
    http.body = forward_body;
    http.handler_ctx = forward;
    return http_server_start(&forward->engine, &http);
}

pc_status api_forward_start(api_forward_t **out, const api_forward_config_t *config) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return PC_INTERNAL;
    api_forward_t *forward = calloc(1, sizeof *forward);
    if (forward == NULL) return PC_NO_MEMORY;
    pc_str_copy(forward->self, sizeof forward->self, config->self_address);
    forward->directory = config->directory;
    forward->server = config->server;
    forward->listen_fd = config->listen_fd;
    forward->body_bytes_max = config->body_bytes_max;
    forward->reply_timeout_ms = config->request_timeout_ms > 0
        ? config->request_timeout_ms + FORWARD_REPLY_TIMEOUT_MARGIN_MS : FORWARD_REPLY_TIMEOUT_MS_DEFAULT;
    uint32_t threads = config->threads > FORWARD_THREADS_MIN ? config->threads : FORWARD_THREADS_MIN;
    pthread_mutex_init(&forward->pool_mutex, NULL);
    pthread_mutex_init(&forward->queue_mutex, NULL);
    pthread_cond_init(&forward->queue_ready, NULL);
    forward->pool = calloc(threads, sizeof *forward->pool);
    forward->queue = calloc(API_CONNECTIONS_MAX, sizeof *forward->queue);
    forward->pool_capacity = threads;
    pc_status status = forward->pool != NULL && forward->queue != NULL ? PC_OK : PC_NO_MEMORY;
    if (status == PC_OK && config->shard_count > 0 && !config->reads_forwarded) {
        status = api_forward_reads_open(&forward->reads, config);
    }
    if (status == PC_OK) status = threads_start(forward, threads);
    if (status == PC_OK) status = engine_start(forward);
    if (status != PC_OK) {
        threads_stop(forward);
        forward_free(forward);
        return status;
    }
    obs_log_notice("forwarding to the set's writer while this node waits for the writers' locks", NULL);
    *out = forward;
    return PC_OK;
}

int api_forward_stop(api_forward_t *forward) {
    if (forward == NULL) return -1;
    /* every connection closed; the requests the threads hold answered (the threads run
     * until the engine has stopped) */
    uint64_t unanswered = http_server_stop(forward->engine);
    if (unanswered > 0) {
        obs_logf(OBS_LEVEL_ERROR, "forward: %llu requests were not answered within %u ms of the stop",
                 (unsigned long long)unanswered, HTTP_STOP_WAIT_MS_DEFAULT);
    }
    threads_stop(forward);
    int fd = forward->listen_fd;
    forward_free(forward);
    return fd;
}

bool api_forward_address_check(const char *address, char *why, size_t why_bytes) {
    CURLU *url = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL;
    bool ok = url != NULL && curl_url_set(url, CURLUPART_URL, address, 0) == CURLUE_OK;
    if (ok) {
        ok = curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             curl_url_get(url, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             curl_url_get(url, CURLUPART_PORT, &port, 0) == CURLUE_OK;
        (void)curl_url_get(url, CURLUPART_PATH, &path, 0);
        (void)curl_url_get(url, CURLUPART_QUERY, &query, 0);
    }
    if (!ok) {
        snprintf(why, why_bytes, "'%s' is not a URL with a host and a port: want http://HOST:PORT", address);
    } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(why, why_bytes, "'%s': want http://HOST:PORT (or https://)", address);
        ok = false;
    } else if ((path != NULL && strcmp(path, "/") != 0 && path[0] != '\0') || query != NULL ||
               strlen(address) >= STORE_WRITER_ADDRESS_SIZE) {
        snprintf(why, why_bytes, "'%s': want http://HOST:PORT alone (no path or query, under %d bytes)", address,
                 STORE_WRITER_ADDRESS_SIZE);
        ok = false;
    } else if (strcmp(host, "0.0.0.0") == 0 || strcmp(port, "0") == 0) {
        snprintf(why, why_bytes, "'%s' is not an address other nodes can reach (0.0.0.0 or port 0)", address);
        ok = false;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(url);
    return ok;
}
