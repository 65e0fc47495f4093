/* api/server.c: libmicrohttpd wiring. MHD runs its own thread pool (epoll); each
 * request passes three points: the headers (route, key, scope, rate limit, Content-
 * Length and Content-Type are checked before a byte of body is read: 413 comes before
 * the body), the body (counted while it arrives), and the end (Idempotency-Key, then
 * the handler). A handler that submits to the writer suspends its connection; the
 * writer's done() resumes it and the reply is made on an MHD thread.
 * Shutdown: stop accepting, refuse new commands, drain the writer (every queued
 * command commits and is answered), wait for the answers to leave, close. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "api/api_ops.h"
#include "core/core.h"
#include "obs/obs.h"
#include "payments/payments.h"

void api_config_default(api_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->listen = "127.0.0.1:8080";
    config->db_path = "paycore.db";
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    config->threads = cpus > 1 ? (uint32_t)cpus : 2;
    config->body_bytes_max = API_BODY_BYTES_DEFAULT;
    config->queue_events_max = WRITER_QUEUE_DEPTH_MAX;
    config->rate_per_s = 0;
    config->connection_timeout_s = 30;
    config->request_timeout_ms = 30000;
    config->http_engine = true;
    config->connections_per_ip_max = API_CONNECTIONS_PER_IP_DEFAULT;
    config->idempotency_retention_h = API_IDEM_RETENTION_H_MIN;
    config->idempotency_bytes_max = API_IDEM_BYTES_DEFAULT;
    config->idempotency_key_bytes_max = API_IDEM_KEY_BYTES_DEFAULT;
    config->idempotency_index_keys_max = API_IDEM_INDEX_KEYS_DEFAULT;
    events_config_default(&config->events);
}

api_keys_t *api_server_keys(api_server_t *server) {
    return &server->keys;
}

writer_t *api_server_writer(api_server_t *server) {
    return server->writer;
}

uint16_t api_server_port(const api_server_t *server) {
    return server->port;
}

/* ---- readers: a pool, so that each request reuses an open connection ---- */

store_reader_t *api_server_reader_acquire(api_server_t *server) {
    store_reader_t *reader = NULL;
    pthread_mutex_lock(&server->pool_mutex);
    if (server->reader_count > 0) reader = server->readers[--server->reader_count];
    pthread_mutex_unlock(&server->pool_mutex);
    if (reader == NULL && store_reader_open(server->store, &reader) != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "cannot open a store reader: %s",
                 store_error_detail(server->store));
        return NULL;
    }
    return reader;
}

void api_server_reader_release(api_server_t *server, store_reader_t *reader) {
    pthread_mutex_lock(&server->pool_mutex);
    if (server->reader_count < API_READERS_MAX) {
        server->readers[server->reader_count++] = reader;
        reader = NULL;
    }
    pthread_mutex_unlock(&server->pool_mutex);
    if (reader != NULL) store_reader_close(reader);
}

/* ---- the header phase ---- */

/* The headers the server reads itself, found in one pass over the request's headers
 * instead of one walk of them per name (MHD_lookup_connection_value). Names compare
 * without case and the first of a repeated name is kept, as MHD's lookup does; NULL
 * when absent. MHD keeps the values until the request completes. */
typedef struct {
    const char *authorization;
    const char *content_length;
    const char *transfer_encoding;
    const char *content_type;
    const char *idempotency_key;
    const char *fence; /* Paycore-Writer */
} request_header_values;

typedef struct {
    const char *name;
    size_t name_bytes;
    size_t slot_offset; /* of its pointer in request_header_values */
} known_header;

#define KNOWN_HEADER(text, member) {text, sizeof text - 1, offsetof(request_header_values, member)}
static const known_header known_headers[] = {
    KNOWN_HEADER(MHD_HTTP_HEADER_AUTHORIZATION, authorization),
    KNOWN_HEADER(MHD_HTTP_HEADER_CONTENT_LENGTH, content_length),
    KNOWN_HEADER(MHD_HTTP_HEADER_TRANSFER_ENCODING, transfer_encoding),
    KNOWN_HEADER(MHD_HTTP_HEADER_CONTENT_TYPE, content_type),
    KNOWN_HEADER("Idempotency-Key", idempotency_key),
    KNOWN_HEADER("Paycore-Writer", fence),
};

static enum MHD_Result header_scan_one(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_bytes,
                                       const char *value, size_t value_bytes) {
    (void)kind;
    (void)value_bytes;
    request_header_values *headers = cls;
    for (size_t i = 0; i < sizeof known_headers / sizeof known_headers[0]; i++) {
        const known_header *known = &known_headers[i];
        if (known->name_bytes != key_bytes || strncasecmp(known->name, key, key_bytes) != 0) continue;
        const char **slot = (const char **)((char *)headers + known->slot_offset);
        if (*slot == NULL) *slot = value;
        break;
    }
    return MHD_YES;
}

static void request_headers_scan(api_request_t *req, request_header_values *headers) {
    memset(headers, 0, sizeof *headers);
    MHD_get_connection_values_n(req->connection, MHD_HEADER_KIND, header_scan_one, headers);
}

static bool header_route(api_request_t *req) {
    uint32_t route_index;
    api_match match = api_route_match(req->method, req->path, &route_index, req->params,
                                      &req->param_count);
    if (match == API_MATCH_NO_ROUTE) {
        api_reply_error(req, PC_ROUTE_NOT_FOUND, NULL, NULL);
        return false;
    }
    if (match == API_MATCH_NO_METHOD) {
        api_reply_error(req, PC_METHOD_NOT_ALLOWED, NULL, NULL);
        return false;
    }
    req->route_index = route_index;
    return true;
}

/* The credentials of "Bearer <token>": the scheme name is case-insensitive and
 * followed by one or more spaces (RFC 7235, 2.1). NULL for any other scheme. */
static const char *bearer_credentials(const char *header) {
    if (header == NULL || strncasecmp(header, "Bearer", 6) != 0 || header[6] != ' ') return NULL;
    const char *credentials = header + 6;
    while (*credentials == ' ') credentials++;
    return credentials;
}

static bool header_auth(api_request_t *req, const request_header_values *headers) {
    const api_route_t *route = &api_routes[req->route_index];
    api_auth auth = route->auth;
    if (auth == API_AUTH_NONE && route->handler == api_route_metrics && req->server->config.metrics_auth) {
        auth = API_AUTH_READ;
    }
    if (auth == API_AUTH_NONE) return true;
    const char *header = headers->authorization;
    uint32_t retry_after_s = 1;
    pc_status status = PC_UNAUTHENTICATED;
    const char *secret = bearer_credentials(header);
    if (secret != NULL && strlen(secret) <= 128) {
        status = api_keys_authenticate(&req->server->keys, secret, &req->caller, &retry_after_s);
    }
    if (status == PC_RATE_LIMITED) {
        char text[16];
        snprintf(text, sizeof text, "%u", retry_after_s);
        api_reply_error(req, status, NULL, NULL);
        api_reply_header(req, "Retry-After", text);
        return false;
    }
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        api_reply_header(req, "WWW-Authenticate", "Bearer");
        return false;
    }
    req->has_caller = true;
    bool allowed = api_route_allows(route, req->caller.scope);
    /* /metrics is the whole server's (every merchant's webhook endpoints, volumes): with
     * --metrics-auth, an admin or read_only key reads it, a merchant key does not */
    if (route->handler == api_route_metrics && req->caller.scope == API_SCOPE_MERCHANT) allowed = false;
    if (!allowed) api_reply_error(req, PC_FORBIDDEN, NULL, NULL);
    return allowed;
}

static bool header_body(api_request_t *req, const request_header_values *headers) {
    const char *length_text = headers->content_length;
    const char *chunked = headers->transfer_encoding;
    unsigned long long length = 0;
    if (length_text != NULL) {
        char *end = NULL;
        length = strtoull(length_text, &end, 10);
        if (end == length_text || *end != '\0') length = ULLONG_MAX;
    }
    if (length > req->server->config.body_bytes_max) {
        api_reply_error(req, PC_BODY_TOO_LARGE, NULL, NULL);
        return false;
    }
    if (length == 0 && chunked == NULL) return true;
    const char *type = headers->content_type;
    if (type == NULL || strncasecmp(type, "application/json", 16) != 0 ||
        (type[16] != '\0' && type[16] != ';' && type[16] != ' ')) {
        api_reply_error(req, PC_UNSUPPORTED_MEDIA_TYPE, NULL, NULL);
        return false;
    }
    /* the declared body is charged to the caller now: past its budget, 503 before a
     * byte of it is read (a chunked body is charged as it grows) */
    req->body_declared_bytes = length;
    if (api_body_charge(req, length > 0 ? length + 1 : 0) != PC_OK) {
        api_reply_error(req, PC_LIMIT_REACHED, NULL,
                        "too many request bodies of this key are arriving at once; retry later");
        api_reply_header(req, "Retry-After", "1");
        return false;
    }
    return true;
}

/* ---- replies and logging ---- */


/* While draining, every reply closes its connection: keep-alive clients leave and the
 * stop does not wait for them. */
static void reply_connection_header(api_request_t *req, struct MHD_Response *response) {
    if (api_server_draining(req->server)) {
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    }
}

static enum MHD_Result send_reply(api_request_t *req) {
    PC_ASSERT(atomic_load(&req->replied));
    req->phase = API_PHASE_REPLIED;
    api_conn_deadline_restart(req->server, req->conn); /* the reply must leave in time */
    api_request_record(req, req->http_status, req->reply_code != PC_OK ? pc_status_code(req->reply_code) : "");
    /* the body is handed over, not copied: MHD frees it with the response */
    struct MHD_Response *response = MHD_create_response_from_buffer(
        req->reply_bytes, req->reply_body, MHD_RESPMEM_MUST_FREE);
    if (response == NULL) return MHD_NO;
    req->reply_body = NULL;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                            req->content_type ? req->content_type : "application/json");
    MHD_add_response_header(response, "X-Request-Id", req->request_id);
    for (uint32_t i = 0; i < req->reply_header_count; i++) {
        MHD_add_response_header(response, req->reply_headers[i][0], req->reply_headers[i][1]);
    }
    reply_connection_header(req, response);
    /* The reply is final and stored: its Idempotency-Key is free from now on, before a
     * byte leaves. MHD runs on_completed only after the send, and a client that has its
     * answer may retry on another connection (another MHD thread) before that. */
    if (!req->timed_out) api_idem_end(req);
    enum MHD_Result result = MHD_queue_response(req->connection, (unsigned)req->http_status, response);
    MHD_destroy_response(response);
    return result;
}

/* The reply of a request that waited for the writer past --request-timeout-ms. Built
 * from constants: the writer may still be writing the request's own reply fields. */
static enum MHD_Result send_timeout_reply(api_request_t *req) {
    static const char body[] = "{\"error\":{\"type\":\"api_error\",\"code\":\"request_timeout\","
                               "\"message\":\"the request timed out; it may still commit: retry with "
                               "the same Idempotency-Key or id\"}}";
    req->phase = API_PHASE_REPLIED;
    api_conn_deadline_restart(req->server, req->conn);
    api_request_record(req, 503, "request_timeout");
    struct MHD_Response *response =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (response == NULL) return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(response, "X-Request-Id", req->request_id);
    MHD_add_response_header(response, "Retry-After", "1");
    reply_connection_header(req, response);
    enum MHD_Result result = MHD_queue_response(req->connection, 503, response);
    MHD_destroy_response(response);
    return result;
}

/* Metrics and the access log line, once per request, when its reply is queued (so a
 * client that reads /metrics right after a reply sees it counted). */
void api_request_record(api_request_t *req, int http_status, const char *code) {
    if (req->recorded) return;
    req->recorded = true;
    uint64_t latency_ns = pc_mono_ns() - req->start_ns;
    uint32_t route = req->route_index >= 0 ? (uint32_t)req->route_index : OBS_ROUTES_MAX;
    obs_metrics_request(route, req->method, http_status, latency_ns);
    api_ops_request_done(req, http_status, latency_ns);
    obs_log_request(req->request_id, req->method, api_route_name(route), http_status, code,
                    latency_ns, req->has_caller ? req->caller.id : NULL);
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode termination) {
    api_server_t *server = cls;
    if (server->completion_delay_ms > 0) usleep(server->completion_delay_ms * 1000u);
    api_request_t *req = *con_cls;
    api_conn_t *conn = api_conn_of(connection);
    api_conn_deadline_restart(server, conn); /* the next request has until then */
    if (req == NULL) return;
    *con_cls = NULL;
    /* no reply was queued: the client left, or the deadline closed the connection */
    if (api_conn_expired(conn)) api_request_record(req, 408, "request_deadline");
    else api_request_record(req, 499, "client_closed");
    /* A request that ended without its reply (the client left) frees its Idempotency-Key
     * now (send_reply freed a replied one); a timed-out one keeps it until its command
     * is done, so a retry cannot run it twice. */
    if (!req->timed_out) api_idem_end(req);
    api_request_release(req); /* the writer may still hold it (a timed-out request) */
    atomic_fetch_sub(&server->requests_active, 1);
}

/* ---- the request's three points ---- */

static void request_headers_checked(api_request_t *req, const request_header_values *headers_in);

/* A request another node of a set forwarded names the writer it was read for (its
 * fence, shard.h): only that writer runs it; a node that is not it (the set's writer
 * changed meanwhile, another set's writer at that address) answers 503, nothing done. */
static bool header_fence(api_request_t *req, const request_header_values *headers) {
    const char *fence = headers->fence;
    if (fence == NULL || shard_fence_matches(req->server->shards, fence)) return true;
    api_reply_error(req, PC_SHARD_WRITER_UNAVAILABLE, NULL,
                    "forwarded to a writer that is not this node (the set's writer changed): retry");
    api_reply_header(req, "Retry-After", "1");
    return false;
}

_Static_assert(sizeof(request_header_values) == 6 * sizeof(const char *), "six header values in a row");

/* The header phase of the engine (engine.c): the same values, found by the engine, in
 * request_header_values' order. */
void api_request_headers_check(api_request_t *req, const char *const values[6]) {
    request_header_values headers;
    memcpy(&headers, values, sizeof headers);
    request_headers_checked(req, &headers);
}

static void request_headers(api_request_t *req) {
    request_header_values headers;
    request_headers_scan(req, &headers);
    request_headers_checked(req, &headers);
}

static void request_headers_checked(api_request_t *req, const request_header_values *headers_in) {
    const request_header_values headers = *headers_in;
    req->header_idempotency_key = headers.idempotency_key;
    if (!header_fence(req, &headers)) return;
    if (!header_route(req)) return;
    if (!header_auth(req, &headers)) return;
    (void)header_body(req, &headers);
}

void api_request_end(api_request_t *req) {
    if (req->body_refused != PC_OK) {
        api_reply_error(req, req->body_refused, NULL, NULL);
        if (req->body_refused != PC_BODY_TOO_LARGE) api_reply_header(req, "Retry-After", "1");
        return;
    }
    if (!api_idem_begin(req)) return;
    api_routes[req->route_index].handler(req);
    /* A submitted request belongs to the writer now: its reply is not ours to read. */
    if (req->phase != API_PHASE_WAITING && !atomic_load(&req->replied)) {
        obs_logf(OBS_LEVEL_ERROR, "route %s made no reply", api_route_name((uint32_t)req->route_index));
        api_reply_error(req, PC_INTERNAL, NULL, NULL);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *connection, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    api_server_t *server = cls;
    api_request_t *req = *con_cls;
    if (req == NULL) {
        req = api_request_new(server, connection, method, url);
        if (req == NULL) return MHD_NO;
        *con_cls = req;
        req->conn = api_conn_of(connection);
        atomic_fetch_add(&server->requests_active, 1);
        request_headers(req);
        if (atomic_load(&req->replied)) return send_reply(req);
        req->phase = API_PHASE_BODY;
        return MHD_YES;
    }
    if (req->phase == API_PHASE_REPLIED) {
        *upload_data_size = 0; /* an early reply: the rest of the body is discarded */
        return MHD_YES;
    }
    if (req->phase == API_PHASE_WAITING) {
        if (req->timed_out) return send_timeout_reply(req);
        req->phase = API_PHASE_BODY;
        api_submit_finish(req);
        return send_reply(req);
    }
    if (*upload_data_size > 0) {
        (void)api_body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* The request arrived whole: no deadline while it runs (a long verify, a command
     * with the writer: the request timeout answers for that); the reply gets one. */
    api_conn_deadline_clear(req->conn);
    api_request_end(req);
    if (req->phase == API_PHASE_WAITING) return MHD_YES;
    return send_reply(req);
}

/* ---- start and stop ---- */

static bool parse_listen(const char *listen, struct sockaddr_in *addr) {
    char host[64];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host) return false;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || port > 65535) return false;
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (host[0] == '\0') return inet_pton(AF_INET, "0.0.0.0", &addr->sin_addr) == 1;
    if (strcmp(host, "localhost") == 0) return inet_pton(AF_INET, "127.0.0.1", &addr->sin_addr) == 1;
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1;
}

static void mhd_log(void *cls, const char *format, va_list args) {
    char text[512];
    vsnprintf(text, sizeof text, format, args);
    size_t bytes = strlen(text);
    while (bytes > 0 && text[bytes - 1] == '\n') text[--bytes] = '\0';
    obs_log(OBS_LEVEL_DEBUG, text, "\"source\":\"microhttpd\"");
}

static void on_writer_failed(void *ctx, pc_status status) {
    api_server_t *server = ctx;
    (void)status;
    if (server->config.writer_failed != NULL) server->config.writer_failed(server->config.writer_failed_ctx);
}

/* --shards: the events outbox on the home shard, made before its writer starts (the
 * writer's batch hook is the outbox's). */
static pc_status shards_home_hook(void *ctx, store_t *read_store, writer_batch_hook_t *out) {
    api_server_t *server = ctx;
    events_config_t events_config = server->config.events;
    events_config.db_path = server->db_path;
    pc_status status = events_open(&server->events, read_store, &events_config);
    if (status == PC_OK) status = events_shard_hook(server->events, 0, out);
    return status;
}

/* --shards: every other shard's outbox, relayed into the home's (events/shards.c). */
static pc_status shards_hook(void *ctx, uint32_t index, writer_batch_hook_t *out) {
    api_server_t *server = ctx;
    return events_shard_hook(server->events, index, out);
}

/* --shards: the set's writers and its read store, the outbox on the home shard; the
 * payments layer starts on it as on one store (docs/scaleout.md §6). */
static pc_status open_shards(api_server_t *server) {
    char key_path[4096], detail[800];
    snprintf(key_path, sizeof key_path, "%s.key", server->db_path);
    shard_options_t options = {.urls = server->config.shard_urls, .count = server->config.shard_count,
                               .key_path = key_path, .advertise = server->advertise,
                               .standby = server->config.store_standby,
                               .standby_continue = server->config.store_standby_continue,
                               .writer_config = {.queue_events_max = server->config.queue_events_max,
                                                 .batch_events_max = WRITER_BATCH_EVENTS_MAX,
                                                 .failed = on_writer_failed, .failed_ctx = server},
                               .home_hook = shards_home_hook, .home_hook_ctx = server,
                               .shard_hook = server->config.events.enabled ? shards_hook : NULL};
    pc_status status = shard_open(&server->shards, &options, detail, sizeof detail);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "%s", detail);
        fprintf(stderr, "paycore serve: %s (%s)\n", detail, pc_status_code(status));
        return status;
    }
    server->store = shard_read_store(server->shards);
    server->writer = shard_writer(server->shards, 0);
    store_reader_t *reader = api_server_reader_acquire(server);
    if (reader == NULL) return PC_STORE_READ_FAILED;
    status = api_keys_load(&server->keys, reader);
    api_server_reader_release(server, reader);
    if (status != PC_OK) return status;
    status = events_start(server->events, server->writer);
    return status == PC_OK ? events_shards_start(server->events, server->shards) : status;
}

/* --shards: the address this node advertises (--advertise, or its listen address). */
static pc_status advertise_set(api_server_t *server) {
    char why[400];
    if (server->config.advertise != NULL) {
        pc_str_copy(server->advertise, sizeof server->advertise, server->config.advertise);
    } else {
        char host[64] = "";
        const char *colon = strrchr(server->config.listen, ':');
        size_t host_bytes = colon != NULL ? (size_t)(colon - server->config.listen) : 0;
        if (host_bytes < sizeof host) memcpy(host, server->config.listen, host_bytes);
        host[host_bytes < sizeof host ? host_bytes : 0] = '\0';
        snprintf(server->advertise, sizeof server->advertise, "http://%s:%u",
                 strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, (unsigned)server->port);
    }
    size_t bytes = strlen(server->advertise);
    while (bytes > 0 && server->advertise[bytes - 1] == '/') server->advertise[--bytes] = '\0';
    if (!api_forward_address_check(server->advertise, why, sizeof why)) {
        obs_logf(OBS_LEVEL_ERROR, "cannot advertise this node to the set: %s; give --advertise http://HOST:PORT", why);
        fprintf(stderr, "paycore serve: cannot advertise this node to the set: %s; give --advertise"
                " http://HOST:PORT\n", why);
        return PC_INVALID_ARGUMENT;
    }
    return PC_OK;
}

/* A standby of a set: forwards every request to the set's writer on the bound
 * address until it holds the writers' locks itself (api_server_listen takes it back). */
static pc_status forward_begin(api_server_t *server) {
    char detail[600];
    pc_status status = shard_directory_open(&server->directory, server->config.shard_urls[0], detail,
                                            sizeof detail);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "%s", detail);
        fprintf(stderr, "paycore serve: %s (%s)\n", detail, pc_status_code(status));
        return status;
    }
    api_forward_config_t config = {.listen_fd = server->listen_fd, .threads = server->config.threads,
                                   .body_bytes_max = server->config.body_bytes_max,
                                   .connection_timeout_s = server->config.connection_timeout_s,
                                   .connections_per_ip_max = server->config.connections_per_ip_max,
                                   .request_timeout_ms = server->config.request_timeout_ms,
                                   .self_address = server->advertise, .server = server,
                                   .directory = server->directory,
                                   .shard_urls = server->config.shard_urls,
                                   .shard_count = server->config.shard_count,
                                   .rate_per_s = server->config.rate_per_s,
                                   .rate_burst = server->config.rate_burst,
                                   .reads_forwarded = server->config.standby_reads_forwarded};
    return api_forward_start(&server->forward, &config);
}

static pc_status open_backend(api_server_t *server) {
    /* payments' events are stored as references to their version records */
    events_ref_renderer_set(pay_reply_ref_render);
    if (server->config.shard_count > 0) return open_shards(server);
    store_options_t options = {.create = false, .standby = server->config.store_standby,
                               .standby_continue = server->config.store_standby_continue,
                               .writable_wait_ms = server->config.store_writable_wait_ms};
    const char *location = server->config.store_url != NULL ? server->config.store_url : server->db_path;
    pc_status status = store_open(&server->store, location, &options);
    if (status != PC_OK) return status;
    events_config_t events_config = server->config.events;
    events_config.db_path = server->db_path;
    if (events_config.enabled && !store_supports(server->store, STORE_PART_EVENTS)) {
        obs_logf(OBS_LEVEL_WARN, "the %s store has no events outbox yet: serving without events",
                 store_backend_name(server->store));
        events_config.enabled = false;
    }
    status = events_open(&server->events, server->store, &events_config);
    if (status != PC_OK) return status;
    char key_path[4096];
    snprintf(key_path, sizeof key_path, "%s.key", server->db_path);
    writer_config_t writer_config = {.queue_events_max = server->config.queue_events_max,
                                     .batch_events_max = WRITER_BATCH_EVENTS_MAX,
                                     .failed = on_writer_failed, .failed_ctx = server,
                                     .batch_hook = events_batch_hook(server->events)};
    status = writer_start(&server->writer, server->store, key_path, &writer_config);
    if (status != PC_OK) return status;
    store_reader_t *reader = api_server_reader_acquire(server);
    if (reader == NULL) return PC_STORE_READ_FAILED;
    status = api_keys_load(&server->keys, reader);
    api_server_reader_release(server, reader);
    if (status != PC_OK) return status;
    /* no outbox: no endpoint can hold a sealed secret, nothing to deliver */
    if (!store_supports(server->store, STORE_PART_EVENTS)) return PC_OK;
    return events_start(server->events, server->writer);
}

/* Binds the listen socket ourselves: the cause of a failure is known (MHD only says
 * that it failed), and it is known before any file is opened or created. */
static pc_status listen_bind(api_server_t *server) {
    struct sockaddr_in addr;
    if (!parse_listen(server->config.listen, &addr)) {
        obs_logf(OBS_LEVEL_ERROR, "cannot listen on '%s': not an IPv4 address:port", server->config.listen);
        return PC_INVALID_ARGUMENT;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1024) != 0) {
        int error = errno;
        if (fd >= 0) close(fd);
        obs_logf(OBS_LEVEL_ERROR, "cannot listen on %s: %s", server->config.listen, strerror(error));
        return error == EADDRINUSE ? PC_ADDRESS_IN_USE : PC_IO;
    }
    struct sockaddr_in bound;
    socklen_t bound_bytes = sizeof bound;
    server->listen_fd = fd;
    server->port = getsockname(fd, (struct sockaddr *)&bound, &bound_bytes) == 0 ? ntohs(bound.sin_port)
                                                                                 : ntohs(addr.sin_port);
    return PC_OK;
}

/* One of the API's two MHD daemons (accept.c says why two): 'loop' MHD_USE_EPOLL or
 * MHD_USE_POLL. The per-address limit is conn.c's, over both. */
static struct MHD_Daemon *http_daemon_start(api_server_t *server, unsigned int loop, uint32_t connections_max,
                                            MHD_NotifyConnectionCallback notify) {
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | loop | MHD_USE_NO_LISTEN_SOCKET |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, server,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)server->config.threads,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, server,
        MHD_OPTION_NOTIFY_CONNECTION, notify, server,
        /* MHD's idle timeout; conn.c adds the deadline of a whole request */
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)server->config.connection_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, api_mhd_connection_limit(connections_max, server->config.threads),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONNECTION_MEMORY_BYTES,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, server, MHD_OPTION_END);
}

static pc_status start_http(api_server_t *server) {
    uint32_t polled_max = server->config.threads * API_POLL_CONNECTIONS_PER_THREAD;
    if (polled_max > API_CONNECTIONS_MAX / 2) polled_max = API_CONNECTIONS_MAX / 2;
    server->daemon_polled = http_daemon_start(server, MHD_USE_POLL, polled_max, api_conn_notify_polled);
    server->daemon = http_daemon_start(server, MHD_USE_EPOLL, API_CONNECTIONS_MAX - polled_max, api_conn_notify);
    pc_status status = server->daemon != NULL && server->daemon_polled != NULL
                           ? api_acceptor_start(&server->acceptor, server->listen_fd, server->daemon,
                                                &server->conns_epoll, API_CONNECTIONS_MAX - polled_max,
                                                server->daemon_polled, &server->conns_polled, polled_max)
                           : PC_IO;
    if (status != PC_OK) obs_logf(OBS_LEVEL_ERROR, "cannot start the HTTP server on %s", server->config.listen);
    return status;
}

/* Tests only: MHD's completion callback runs this much later, as it does when the
 * thread that sent a reply is preempted right after the send. */
static void completion_delay_from_env(api_server_t *server) {
    const char *text = getenv("PAYCORE_TEST_COMPLETION_DELAY_MS");
    if (text == NULL || text[0] == '\0') return;
    char *end = NULL;
    unsigned long delay_ms = strtoul(text, &end, 10);
    if (*end != '\0' || delay_ms > 10000) {
        obs_logf(OBS_LEVEL_ERROR, "PAYCORE_TEST_COMPLETION_DELAY_MS '%s' ignored (0-10000 ms)", text);
        return;
    }
    server->completion_delay_ms = (uint32_t)delay_ms;
    obs_logf(OBS_LEVEL_WARN, "test delay: each request's completion runs %lu ms after its reply", delay_ms);
}

static pc_status server_init(api_server_t *server, const api_config_t *config) {
    server->config = *config;
    completion_delay_from_env(server);
    server->listen_fd = -1;
    pc_status status = api_conns_init(server);
    if (status == PC_OK) status = api_usage_init(&server->usage, config->body_bytes_max);
    if (status != PC_OK) return status;
    if (server->config.threads == 0) server->config.threads = 2;
    if (server->config.threads > 256) server->config.threads = 256;
    server->db_path = pc_strdup(config->db_path);
    pthread_rwlock_init(&server->writer_lock, NULL);
    pthread_mutex_init(&server->pool_mutex, NULL);
    uint8_t tag[4];
    randombytes_buf(tag, sizeof tag);
    sodium_bin2hex(server->instance_tag, sizeof server->instance_tag, tag, sizeof tag);
    const char *names[OBS_ROUTES_MAX];
    for (uint32_t i = 0; i < api_route_count && i < OBS_ROUTES_MAX; i++) names[i] = api_routes[i].pattern;
    obs_metrics_init(names, api_route_count);
    if (server->db_path == NULL) return PC_NO_MEMORY;
    status = api_inflight_init(server);
    if (status == PC_OK) status = api_reaper_start(server);
    if (status != PC_OK) return status;
    return api_keys_init(&server->keys, config->rate_per_s, config->rate_burst);
}

/* Frees what start made, in an order where nothing is freed while something can
 * still reach it: MHD threads run requests until MHD_stop_daemon returns, so the
 * writer (read by /metrics) and the store readers go only after it. */
static void server_free(api_server_t *server) {
    api_idem_stop(server); /* its chunk in flight completes through the writer first */
    events_stop(server->events); /* its last state goes through the writer */
    if (server->shards != NULL) shard_drain(server->shards);
    else if (server->writer != NULL) writer_drain(server->writer);
    api_reaper_stop(server);
    api_conns_stop(server);
    api_acceptor_stop(&server->acceptor); /* nothing is handed to MHD while it stops */
    api_resumes_wait(server); /* a stage thread's batch may still hold a resume */
    api_engine_stop(server); /* every connection closed, every held request answered */
    /* a standby that never took over: its forwarder's connections leave the
     * per-address table before it goes */
    if (server->forward != NULL) server->listen_fd = api_forward_stop(server->forward);
    server->forward = NULL;
    if (server->daemon != NULL) MHD_stop_daemon(server->daemon);
    if (server->daemon_polled != NULL) MHD_stop_daemon(server->daemon_polled);
    api_conns_free(server); /* MHD reported every connection closed */
    if (server->http_stopped_fn != NULL) server->http_stopped_fn(server->http_stopped_ctx);
    shard_directory_close(server->directory);
    if (server->listen_fd >= 0) close(server->listen_fd); /* ours: MHD never held it */
    if (server->shards == NULL) writer_free(server->writer); /* else the set's */
    server->writer = NULL;
    events_close(server->events); /* routes reach it until MHD stopped */
    server->events = NULL;
    pthread_mutex_destroy(&server->waiting_mutex);
    pthread_cond_destroy(&server->waiting_cond);
    for (uint32_t i = 0; i < server->reader_count; i++) store_reader_close(server->readers[i]);
    if (server->shards != NULL) shard_close(server->shards); /* and its read store */
    else if (server->store != NULL) store_close(server->store);
    api_keys_free(&server->keys);
    api_inflight_free(server);
    api_idem_free(server);
    api_usage_free(&server->usage);
    pthread_rwlock_destroy(&server->writer_lock);
    pthread_mutex_destroy(&server->pool_mutex);
    free(server->db_path);
    free(server);
}

pc_status api_server_open(api_server_t **out, const api_config_t *config) {
    PC_ASSERT(config->body_bytes_max > 0);
    if (config->idempotency_retention_h < API_IDEM_RETENTION_H_MIN) return PC_INVALID_ARGUMENT;
    if (sodium_init() < 0) return PC_INTERNAL;
    api_server_t *server = calloc(1, sizeof(*server));
    if (server == NULL) return PC_NO_MEMORY;
    pc_status status = server_init(server, config);
    if (status == PC_OK) status = listen_bind(server);
    if (status == PC_OK && config->shard_count > 0) status = advertise_set(server);
    if (status == PC_OK && config->shard_count > 0 && config->store_standby) status = forward_begin(server);
    if (status == PC_OK) status = open_backend(server);
    if (status == PC_OK) status = api_idem_start(server);
    if (status != PC_OK) {
        if (server->store != NULL && server->shards == NULL && status != PC_SHUTTING_DOWN) {
            obs_logf(OBS_LEVEL_ERROR, "store: %s", store_error_detail(server->store));
        }
        server_free(server);
        return status;
    }
    *out = server;
    return PC_OK;
}

pc_status api_server_listen(api_server_t *server) {
    if (server->forward != NULL) { /* the standby took over: the socket serves the set now */
        server->listen_fd = api_forward_stop(server->forward);
        server->forward = NULL;
    }
    return server->config.http_engine ? api_engine_start(server) : start_http(server);
}

pc_status api_server_start(api_server_t **out, const api_config_t *config) {
    api_server_t *server = NULL;
    pc_status status = api_server_open(&server, config);
    if (status != PC_OK) return status;
    status = api_server_listen(server);
    if (status != PC_OK) {
        server_free(server);
        return status;
    }
    *out = server;
    return PC_OK;
}

/* Ready: the writer runs, is not draining, and its last write worked. The writer
 * stays allocated until MHD has stopped, so a request may read it without a lock. */
bool api_server_ready(api_server_t *server) {
    return server->writer != NULL && !atomic_load(&server->draining) && writer_can_commit(server->writer);
}

bool api_server_draining(const api_server_t *server) {
    return atomic_load(&server->draining);
}

pc_status api_server_failed(api_server_t *server) {
    return server->writer != NULL ? writer_failed(server->writer) : PC_OK;
}

/* SIGTERM: stop accepting, refuse new commands, drain the writer (every queued command
 * commits and its request is answered), let the answers leave, stop MHD, then free.
 * The writer stays allocated until MHD has stopped: a request still running (a
 * /metrics scrape on a keep-alive connection) may read it until then. */
void api_server_stop(api_server_t *server) {
    /* No new connections: the accept loop stops and the socket is shut down (a client
     * that connects is refused, one waiting in the backlog is reset); it is closed with
     * the rest in server_free. */
    api_acceptor_stop(&server->acceptor);
    if (server->listen_fd >= 0) (void)shutdown(server->listen_fd, SHUT_RDWR);
    pthread_rwlock_wrlock(&server->writer_lock); /* waits out submits in progress */
    atomic_store(&server->draining, true);       /* new commands: 503 shutting_down */
    pthread_rwlock_unlock(&server->writer_lock);
    api_idem_stop(server);        /* the purge, before the writer stops taking commands */
    events_stop(server->events);  /* the delivery threads store their state through the writer */
    writer_drain(server->writer); /* commits what is queued; every done() resumes its request */
    api_reaper_stop(server);      /* nothing waits for the writer any more */
    /* let the last answers leave (replies now carry Connection: close); bounded: 10 s */
    for (int waited_ms = 0; waited_ms < 10000; waited_ms += 10) {
        if (atomic_load(&server->requests_active) == 0) break;
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    server_free(server);
}

void api_server_set_http_stopped_hook(api_server_t *server, void (*fn)(void *ctx), void *ctx) {
    server->http_stopped_fn = fn;
    server->http_stopped_ctx = ctx;
}
