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
 * "nothing was sent". */
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
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

struct api_forward {
    struct MHD_Daemon *daemon;
    int listen_fd;          /* borrowed: handed back by api_forward_stop */
    api_acceptor_t acceptor;
    _Atomic uint32_t conns;  /* handed to 'daemon' and not yet closed (accept.c keeps the limit) */
    shard_directory_t *directory;
    api_forward_reads_t *reads; /* the reads answered here (forward_read.c) */
    char self[STORE_WRITER_ADDRESS_SIZE];
    uint64_t body_bytes_max;
    uint32_t reply_timeout_ms;
    pthread_mutex_t pool_mutex;
    CURL **pool;            /* idle handles, each with its open connections to the writer */
    uint32_t pool_count;
    uint32_t pool_capacity; /* the daemon's threads: one handle in use per thread at most */
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

/* ---- replies made here ---- */

enum MHD_Result api_forward_reply_json(struct MHD_Connection *connection, unsigned http_status, json_t *body,
                                       uint32_t retry_after_s) {
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    const char *fallback = "{\"error\":{\"type\":\"api_error\",\"code\":\"out_of_memory\"}}";
    struct MHD_Response *response = text != NULL
        ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
        : MHD_create_response_from_buffer(strlen(fallback), (void *)fallback, MHD_RESPMEM_PERSISTENT);
    if (response == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "application/json");
    uint8_t random[8];
    char request_id[24] = "fwd-";
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(request_id + 4, sizeof request_id - 4, random, sizeof random);
    MHD_add_response_header(response, "X-Request-Id", request_id); /* answered here, not by the writer */
    char retry_after[16];
    snprintf(retry_after, sizeof retry_after, "%u", retry_after_s);
    if (retry_after_s > 0) MHD_add_response_header(response, "Retry-After", retry_after);
    enum MHD_Result result = MHD_queue_response(connection, http_status, response);
    MHD_destroy_response(response);
    return result;
}

enum MHD_Result api_forward_reply_error(struct MHD_Connection *connection, pc_status status, const char *message,
                                        uint32_t retry_after_s) {
    obs_logf(OBS_LEVEL_INFO, "forward: %s: %s", pc_status_code(status), message != NULL ? message : "");
    return api_forward_reply_json(connection, (unsigned)pc_status_http(status),
                                  json_pack("{s:o}", "error", api_error_json(status, NULL, message)), retry_after_s);
}

static enum MHD_Result reply_error(struct MHD_Connection *connection, pc_status status, const char *message) {
    return api_forward_reply_error(connection, status, message, pc_status_transient(status) ? 1 : 0);
}

/* ---- the forwarded request ---- */

typedef struct {
    struct curl_slist *headers;
    bool failed;
} header_walk_t;

static bool hop_by_hop(const char *name) {
    static const char *const names[] = {"Host", "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding",
                                        "Expect", "TE", "Upgrade", "Proxy-Connection", FORWARD_HEADER,
                                        FENCE_HEADER};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i]) == 0) return true;
    }
    return false;
}

static enum MHD_Result header_add(void *cls, enum MHD_ValueKind kind, const char *name, const char *value) {
    header_walk_t *walk = cls;
    (void)kind;
    if (name == NULL || hop_by_hop(name)) return MHD_YES;
    size_t bytes = strlen(name) + (value != NULL ? strlen(value) : 0) + 3;
    char *line = malloc(bytes);
    if (line == NULL) {
        walk->failed = true;
        return MHD_NO;
    }
    snprintf(line, bytes, "%s: %s", name, value != NULL ? value : "");
    struct curl_slist *grown = curl_slist_append(walk->headers, line);
    free(line);
    if (grown == NULL) walk->failed = true;
    else walk->headers = grown;
    return grown != NULL ? MHD_YES : MHD_NO;
}

typedef struct {
    fwd_buffer_t url;
    bool failed;
} query_walk_t;

/* MHD hands the query decoded: encoded again, in the order it came. */
static enum MHD_Result query_add(void *cls, enum MHD_ValueKind kind, const char *name, const char *value) {
    query_walk_t *walk = cls;
    (void)kind;
    char *name_encoded = curl_easy_escape(NULL, name, 0);
    char *value_encoded = value != NULL ? curl_easy_escape(NULL, value, 0) : NULL;
    if (name_encoded == NULL || (value != NULL && value_encoded == NULL)) walk->failed = true;
    if (!walk->failed) {
        buffer_append(&walk->url, strchr(walk->url.data, '?') != NULL ? "&" : "?", 1);
        buffer_append(&walk->url, name_encoded, strlen(name_encoded));
        if (value_encoded != NULL) {
            buffer_append(&walk->url, "=", 1);
            buffer_append(&walk->url, value_encoded, strlen(value_encoded));
        }
        buffer_append(&walk->url, "", 1); /* keeps it a C string */
        if (!walk->url.too_large) walk->url.bytes--;
    }
    curl_free(name_encoded);
    curl_free(value_encoded);
    return walk->failed || walk->url.too_large ? MHD_NO : MHD_YES;
}

/* MHD hands the path decoded too: each segment encoded again ("a b" -> "a%20b"). */
static void path_add(query_walk_t *walk, const char *path) {
    while (*path != '\0' && !walk->failed) {
        size_t bytes = strcspn(path, "/");
        char *encoded = bytes > 0 ? curl_easy_escape(NULL, path, (int)bytes) : NULL;
        if (bytes > 0 && encoded == NULL) walk->failed = true;
        if (encoded != NULL) buffer_append(&walk->url, encoded, strlen(encoded));
        curl_free(encoded);
        path += bytes;
        if (*path == '/') buffer_append(&walk->url, "/", 1), path++;
    }
}

/* address + path + query, as a C string (NULL on no memory). */
static char *target_url(struct MHD_Connection *connection, const char *address, const char *path) {
    query_walk_t walk = {.url = {.bytes_max = 64 * 1024}};
    buffer_append(&walk.url, address, strlen(address));
    path_add(&walk, path);
    buffer_append(&walk.url, "", 1); /* keeps it a C string */
    if (!walk.url.too_large) walk.url.bytes--;
    if (!walk.url.too_large) MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, query_add, &walk);
    if (walk.failed || walk.url.too_large) {
        free(walk.url.data);
        return NULL;
    }
    return walk.url.data;
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
static send_outcome send_once(api_forward_t *forward, struct MHD_Connection *connection, const char *method,
                              const char *url, const char *fence, const fwd_buffer_t *body, fwd_reply_t *reply,
                              char *why, size_t why_bytes) {
    CURL *curl = handle_take(forward);
    header_walk_t walk = {0};
    uint32_t tries = 0;
    if (curl == NULL) return SEND_NOT_SENT;
    MHD_get_connection_values(connection, MHD_HEADER_KIND, header_add, &walk);
    char self_header[STORE_WRITER_ADDRESS_SIZE + 32];
    snprintf(self_header, sizeof self_header, "%s: %s", FORWARD_HEADER, forward->self);
    walk.headers = curl_slist_append(walk.headers, self_header);
    char fence_header[SHARD_FENCE_SIZE + 32];
    snprintf(fence_header, sizeof fence_header, "%s: %s", FENCE_HEADER, fence);
    walk.headers = curl_slist_append(walk.headers, fence_header);
    walk.headers = curl_slist_append(walk.headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, walk.headers);
    if (body->bytes > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data != NULL ? body->data : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->bytes);
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
    CURLcode code = walk.failed ? CURLE_OUT_OF_MEMORY : curl_easy_perform(curl);
    long sent_bytes = 0;
    curl_easy_getinfo(curl, CURLINFO_REQUEST_SIZE, &sent_bytes);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->http_status);
    curl_slist_free_all(walk.headers);
    if (code == CURLE_OK) {
        handle_give_back(forward, curl);
        return SEND_DONE;
    }
    curl_easy_cleanup(curl); /* its connection may be half used: not reused */
    pc_str_copy(why, why_bytes, curl_easy_strerror(code));
    return sent_bytes == 0 && tries <= 1 ? SEND_NOT_SENT : SEND_LOST;
}

static enum MHD_Result relay(struct MHD_Connection *connection, fwd_reply_t *reply) {
    struct MHD_Response *response = MHD_create_response_from_buffer(reply->body.bytes, reply->body.data,
                                                                    MHD_RESPMEM_MUST_COPY);
    if (response == NULL) return MHD_NO;
    for (uint32_t i = 0; i < reply->header_count; i++) {
        MHD_add_response_header(response, reply->header_names[i], reply->header_values[i]);
    }
    enum MHD_Result result = MHD_queue_response(connection, (unsigned)reply->http_status, response);
    MHD_destroy_response(response);
    return result;
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

static enum MHD_Result forward_request(api_forward_t *forward, struct MHD_Connection *connection,
                                       const char *method, const char *path, const fwd_buffer_t *body) {
    char address[STORE_WRITER_ADDRESS_SIZE], fence[SHARD_FENCE_SIZE], why[600];
    fwd_reply_t reply = {.body = {.bytes_max = FORWARD_REPLY_BYTES_MAX}};
    send_outcome outcome = SEND_NOT_SENT;
    for (int attempt = 0; attempt < 2 && outcome == SEND_NOT_SENT; attempt++) {
        if (!writer_address(forward, address, sizeof address, fence, why, sizeof why)) {
            return reply_error(connection, PC_SHARD_WRITER_UNAVAILABLE, why);
        }
        char *url = target_url(connection, address, path);
        if (url == NULL) return reply_error(connection, PC_NO_MEMORY, "the forwarded URL does not fit");
        reply_free(&reply);
        reply.body.bytes_max = FORWARD_REPLY_BYTES_MAX;
        outcome = send_once(forward, connection, method, url, fence, body, &reply, why, sizeof why);
        free(url);
        if (outcome == SEND_NOT_SENT) shard_directory_forget(forward->directory); /* read the row again */
    }
    enum MHD_Result result;
    char message[900];
    if (outcome == SEND_DONE) {
        result = relay(connection, &reply);
    } else if (outcome == SEND_NOT_SENT) {
        snprintf(message, sizeof message, "the set's writer at %s does not accept connections (%s)", address, why);
        result = reply_error(connection, PC_SHARD_WRITER_UNAVAILABLE, message);
    } else {
        snprintf(message, sizeof message, "forwarded to the set's writer at %s, its answer was lost (%s): the"
                 " request may have been applied; retry with the same ids", address, why);
        result = reply_error(connection, PC_SHARD_FORWARD_FAILED, message);
    }
    reply_free(&reply);
    return result;
}

static enum MHD_Result on_request_end(api_forward_t *forward, struct MHD_Connection *connection,
                                      const char *method, const char *url, fwd_buffer_t *body) {
    if (body->too_large) return reply_error(connection, PC_BODY_TOO_LARGE, NULL);
    /* /healthz answers here: the process answers, and says what it is and where the writer is */
    if (strcmp(url, "/healthz") == 0 && strcmp(method, "GET") == 0) {
        char address[STORE_WRITER_ADDRESS_SIZE] = "", fence[SHARD_FENCE_SIZE], why[600];
        bool known = shard_directory_writer(forward->directory, address, sizeof address, fence, why,
                                            sizeof why) == PC_OK;
        json_t *reply = json_pack("{s:s,s:s}", "status", "ok", "role", "standby");
        if (reply != NULL) json_object_set_new(reply, "writer", known ? json_string(address) : json_null());
        return api_forward_reply_json(connection, 200, reply, 0);
    }
    if (MHD_lookup_connection_value(connection, MHD_HEADER_KIND, FORWARD_HEADER) != NULL) {
        return reply_error(connection, PC_SHARD_WRITER_UNAVAILABLE, "a forwarded request reached a node that does"
                           " not write the set (the writer changed meanwhile): retry");
    }
    enum MHD_Result result;
    if (body->bytes == 0 && api_forward_read_local(forward->reads, connection, method, url, &result)) return result;
    return forward_request(forward, connection, method, url, body);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    api_forward_t *forward = cls;
    fwd_buffer_t *body = *con_cls;
    (void)version;
    if (body == NULL) {
        body = calloc(1, sizeof *body);
        if (body == NULL) return MHD_NO;
        body->bytes_max = forward->body_bytes_max;
        *con_cls = body;
        const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Content-Length");
        if (length != NULL && strtoull(length, NULL, 10) > forward->body_bytes_max) {
            body->answered = true; /* refused before the body is read, as the writer would */
            return reply_error(connection, PC_BODY_TOO_LARGE, NULL);
        }
        return MHD_YES;
    }
    if (body->answered) { /* the rest of the body is discarded */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        buffer_append(body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return on_request_end(forward, connection, method, url, body);
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode code) {
    (void)cls;
    (void)connection;
    (void)code;
    fwd_buffer_t *body = *con_cls;
    if (body != NULL) free(body->data);
    free(body);
    *con_cls = NULL;
}

static void forward_free(api_forward_t *forward) {
    for (uint32_t i = 0; i < forward->pool_count; i++) curl_easy_cleanup(forward->pool[i]);
    free(forward->pool);
    pthread_mutex_destroy(&forward->pool_mutex);
    api_forward_reads_close(forward->reads);
    free(forward);
}

pc_status api_forward_start(api_forward_t **out, const api_forward_config_t *config) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return PC_INTERNAL;
    api_forward_t *forward = calloc(1, sizeof *forward);
    if (forward == NULL) return PC_NO_MEMORY;
    pc_str_copy(forward->self, sizeof forward->self, config->self_address);
    forward->directory = config->directory;
    forward->body_bytes_max = config->body_bytes_max;
    forward->reply_timeout_ms = config->request_timeout_ms > 0
        ? config->request_timeout_ms + FORWARD_REPLY_TIMEOUT_MARGIN_MS : FORWARD_REPLY_TIMEOUT_MS_DEFAULT;
    uint32_t threads = config->threads > FORWARD_THREADS_MIN ? config->threads : FORWARD_THREADS_MIN;
    forward->pool = calloc(threads, sizeof *forward->pool);
    if (forward->pool == NULL) {
        free(forward);
        return PC_NO_MEMORY;
    }
    forward->pool_capacity = threads;
    pthread_mutex_init(&forward->pool_mutex, NULL);
    pc_status status = config->shard_count > 0 && !config->reads_forwarded ? api_forward_reads_open(&forward->reads, config) : PC_OK;
    if (status != PC_OK) {
        forward_free(forward);
        return status;
    }
    forward->listen_fd = config->listen_fd;
    forward->daemon = MHD_start_daemon( /* its connections come from our accept loop (accept.c) */
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC, 0, NULL, NULL,
        on_access, forward, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, forward,
        MHD_OPTION_NOTIFY_CONNECTION, api_acceptor_count_notify, &forward->conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)config->connection_timeout_s,
        /* the accept loop keeps the count: no MHD worker may reach its share (accept.c) */
        MHD_OPTION_CONNECTION_LIMIT, api_mhd_connection_limit(API_CONNECTIONS_MAX, threads),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)config->connections_per_ip_max, MHD_OPTION_END);
    status = forward->daemon != NULL
                 ? api_acceptor_start(&forward->acceptor, forward->listen_fd, forward->daemon, &forward->conns,
                                      API_CONNECTIONS_MAX, NULL, NULL, 0)
                 : PC_IO;
    if (status != PC_OK) {
        if (forward->daemon != NULL) MHD_stop_daemon(forward->daemon);
        forward_free(forward);
        return status;
    }
    obs_log_notice("forwarding to the set's writer while this node waits for the writers' locks", NULL);
    *out = forward;
    return PC_OK;
}

int api_forward_stop(api_forward_t *forward) {
    if (forward == NULL) return -1;
    api_acceptor_stop(&forward->acceptor); /* connections waiting meanwhile go to the next loop */
    MHD_stop_daemon(forward->daemon);
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
