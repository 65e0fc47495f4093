/* api/engine.c: the API served by paycore's own HTTP engine (src/http, --http-engine).
 * The same three points as on libmicrohttpd (server.c): the engine's head hook runs
 * the header checks (route, key, scope, rate, 413, 415, the body budget) before a byte
 * of body is read; the handler gets the whole body and runs the end (Idempotency-Key,
 * the route). A request that waits (a writer command, a payment) stays held by the
 * engine; whichever thread has its answer (the writer's done(), a payments stage
 * thread, the request-timeout reaper) renders it and writes it with http_answer():
 * no resume, no wake of an HTTP thread when the socket takes it.
 *
 * Lifetime: the HTTP side's reference (api_request_t.refs) is dropped once the answer
 * is given; the handler holds one more while it runs, since a payment may be answered
 * by a stage thread before the handler has returned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "obs/obs.h"

#define ENGINE_BODY_BYTES_UNCHECKED (UINT64_C(1) << 62) /* the head hook checks --body-max */
#define ENGINE_HEADER_LINES_BYTES 1024
#define ENGINE_BODY_CHARGE_BYTES_MIN 4096 /* request.c's first body buffer */
/* A head libmicrohttpd serves within its 8 KiB of connection memory (API_CONNECTION_
 * MEMORY_BYTES, which also holds its own state): 6 KiB heads served, 8 KiB ones 431
 * (tests/api/test_api_headers.py) on both servers. */
#define ENGINE_HEAD_BYTES_MAX (API_CONNECTION_MEMORY_BYTES - 1024)

/* ---- text from the engine: copied into the request's arena, NUL-terminated ---- */

static char *arena_text(api_request_t *req, const char *bytes, size_t byte_count) {
    char *text = api_alloc(req, byte_count + 1);
    if (text == NULL) return NULL;
    memcpy(text, bytes, byte_count);
    text[byte_count] = '\0';
    return text;
}

/* %XX decoded in place, as libmicrohttpd's unescape does (an invalid escape stays);
 * 'plus': '+' is a blank (query arguments). */
void api_unescape(char *text, bool plus) { http_percent_decode_in_place(text, plus); }

uint32_t api_query_arg_slots(const char *query) {
    uint32_t count = 2; /* and the end */
    for (const char *at = query; *at != '\0'; at++) count += *at == '&';
    return count;
}

void api_query_split(char *query, api_query_arg_t *args) {
    uint32_t used = 0;
    char *next = query;
    while (next != NULL) {
        char *pair = next;
        next = strchr(pair, '&');
        if (next != NULL) *next++ = '\0';
        if (pair[0] == '\0') continue;
        char *equals = strchr(pair, '=');
        if (equals != NULL) *equals++ = '\0';
        api_unescape(pair, true);
        if (equals != NULL) api_unescape(equals, true);
        args[used++] = (api_query_arg_t){pair, equals};
    }
    args[used] = (api_query_arg_t){NULL, NULL};
}

/* The query after '?', into the request's arena. */
static bool query_parse(api_request_t *req, char *query) {
    req->query_args = api_alloc(req, api_query_arg_slots(query) * sizeof *req->query_args);
    if (req->query_args == NULL) return false;
    api_query_split(query, req->query_args);
    return true;
}

const char *api_engine_query(const api_request_t *req, const char *name) {
    if (req->query_args == NULL) return NULL;
    for (uint32_t i = 0; req->query_args[i].name != NULL; i++) {
        if (strcmp(req->query_args[i].name, name) == 0) return req->query_args[i].value;
    }
    return NULL;
}

const char *api_engine_header(api_request_t *req, const char *name) {
    http_text_t value;
    if (!http_request_header(req->http, name, &value)) return NULL;
    return arena_text(req, value.bytes, value.byte_count);
}

/* The request from the engine's head: method, path (unescaped) and query. */
static api_request_t *request_open(api_server_t *server, http_request_t *http) {
    http_text_t method_text = http_request_method(http);
    char method[8] = "OTHER"; /* api_request_new keeps known names only */
    if (method_text.byte_count < sizeof method) {
        memcpy(method, method_text.bytes, method_text.byte_count);
        method[method_text.byte_count] = '\0';
    }
    http_text_t target = http_request_target(http);
    const char *question = memchr(target.bytes, '?', target.byte_count);
    size_t path_bytes = question != NULL ? (size_t)(question - target.bytes) : target.byte_count;
    char path_local[API_REQUEST_PATH_INLINE_BYTES];
    char *path = path_bytes < sizeof path_local ? path_local : malloc(path_bytes + 1);
    if (path == NULL) return NULL;
    memcpy(path, target.bytes, path_bytes);
    path[path_bytes] = '\0';
    api_unescape(path, false);
    api_request_t *req = api_request_new(server, NULL, method, path);
    if (path != path_local) free(path);
    if (req == NULL) return NULL;
    req->http = http;
    req->on_engine = true;
    if (question != NULL) {
        char *query = arena_text(req, question + 1, target.byte_count - path_bytes - 1);
        if (query == NULL || !query_parse(req, query)) {
            api_request_free(req);
            return NULL;
        }
    }
    return req;
}

/* ---- answers ---- */

static char *header_line(char *at, const char *end, const char *name, const char *value) {
    size_t name_bytes = strlen(name), value_bytes = strlen(value);
    if ((size_t)(end - at) < name_bytes + value_bytes + 5) return at; /* no room: left out */
    memcpy(at, name, name_bytes);
    at += name_bytes;
    *at++ = ':';
    *at++ = ' ';
    memcpy(at, value, value_bytes);
    at += value_bytes;
    *at++ = '\r';
    *at++ = '\n';
    *at = '\0';
    return at;
}

/* "Date: <IMF-fixdate>\r\n" as libmicrohttpd sends it; formatted once a second per
 * thread (clients and caches read it; the answer's other lines are preformatted). */
const char *api_engine_date_line(void) {
    static __thread char line[48];
    static __thread time_t line_s = -1;
    time_t now_s = time(NULL);
    if (now_s != line_s) {
        struct tm utc;
        gmtime_r(&now_s, &utc);
        strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &utc);
        line_s = now_s;
    }
    return line;
}

/* After the answer: the HTTP side's part of the request ends (MHD's on_completed). */
static void request_complete(api_request_t *req) {
    api_server_t *server = req->server;
    if (server->completion_delay_ms > 0) usleep(server->completion_delay_ms * 1000u);
    api_request_release(req);
    atomic_fetch_sub(&server->requests_active, 1);
}

/* The request's reply (made), with X-Request-Id and its headers, from this thread.
 * While draining every answer closes its connection: keep-alive clients leave. */
static void reply_send(api_request_t *req) {
    PC_ASSERT(atomic_load(&req->replied));
    api_request_record(req, req->http_status, req->reply_code != PC_OK ? pc_status_code(req->reply_code) : "");
    char lines[ENGINE_HEADER_LINES_BYTES];
    char *at = lines, *end = lines + sizeof lines;
    size_t date_bytes = strlen(api_engine_date_line());
    memcpy(at, api_engine_date_line(), date_bytes + 1);
    at += date_bytes;
    at = header_line(at, end, "X-Request-Id", req->request_id);
    for (uint32_t i = 0; i < req->reply_header_count; i++) {
        at = header_line(at, end, req->reply_headers[i][0], req->reply_headers[i][1]);
    }
    if (api_server_draining(req->server)) http_request_close_after(req->http);
    /* final and stored: its Idempotency-Key is free before a byte leaves (a client
     * with the answer may retry at once on another connection) */
    if (!req->timed_out) api_idem_end(req);
    const char *type = req->content_type != NULL ? req->content_type : "application/json";
    (void)http_answer(req->http, (unsigned)req->http_status, type, lines, req->reply_body, req->reply_bytes);
    request_complete(req);
}

/* The reply of a request that waited past --request-timeout-ms, from constants: the
 * writer may still be writing the request's own reply fields. */
static void timeout_send(api_request_t *req) {
    static const char body[] = "{\"error\":{\"type\":\"api_error\",\"code\":\"request_timeout\","
                               "\"message\":\"the request timed out; it may still commit: retry with "
                               "the same Idempotency-Key or id\"}}";
    api_request_record(req, 503, "request_timeout");
    char lines[160];
    snprintf(lines, sizeof lines, "%sX-Request-Id: %s\r\nRetry-After: 1\r\n", api_engine_date_line(), req->request_id);
    if (api_server_draining(req->server)) http_request_close_after(req->http);
    (void)http_answer(req->http, 503, "application/json", lines, body, sizeof body - 1);
    request_complete(req);
}

void api_request_wake(api_request_t *req) {
    if (!req->on_engine) {
        MHD_resume_connection(req->connection);
        return;
    }
    if (req->timed_out) {
        timeout_send(req);
        return;
    }
    if (req->cmd != NULL) api_submit_finish(req); /* rendered here: the writer's done() */
    reply_send(req);
}

/* ---- the engine's hooks ---- */

/* Before the body: the header checks; an early reply is sent here (the engine drops the
 * unread body and closes). */
static bool engine_head(void *ctx, http_request_t *http) {
    api_server_t *server = ctx;
    api_request_t *req = request_open(server, http);
    if (req == NULL) {
        static const char body[] = "{\"error\":{\"type\":\"api_error\",\"code\":\"out_of_memory\"}}";
        (void)http_answer(http, 503, "application/json", "Retry-After: 1\r\n", body, sizeof body - 1);
        return false;
    }
    http_request_set_context(http, req);
    atomic_fetch_add(&server->requests_active, 1);
    static const char *const names[6] = {"Authorization", "Content-Length", "Transfer-Encoding",
                                          "Content-Type", "Idempotency-Key", "Paycore-Writer"};
    const char *values[6];
    for (int i = 0; i < 6; i++) values[i] = api_engine_header(req, names[i]);
    api_request_headers_check(req, values);
    if (!atomic_load(&req->replied)) {
        req->phase = API_PHASE_BODY;
        return true;
    }
    reply_send(req);
    return false;
}

/* The whole request: its body is taken (counted within the charge made before it),
 * then the end runs; a request that waits is answered by another thread. */
static void engine_request(void *ctx, http_request_t *http) {
    (void)ctx;
    api_request_t *req = http_request_context(http);
    http_text_t body = http_request_body(http);
    if (body.byte_count > 0) (void)api_body_append(req, body.bytes, body.byte_count);
    atomic_fetch_add(&req->refs, 1); /* the handler's: an answer from a stage thread may come first */
    api_request_end(req);
    bool waiting = req->phase == API_PHASE_WAITING;
    if (!waiting) reply_send(req);
    api_request_release(req);
}

/* A chunked body announced to reach 'body_bytes' (before that chunk's data is read):
 * over --body-max 413, as libmicrohttpd's path counts it while reading; charged to the
 * key's body budget ahead of the buffer, doubling as request.c's body_grow does (so
 * its copy of the body charges nothing more), 503 limit_reached past it. */
static bool engine_body(void *ctx, http_request_t *http, uint64_t body_bytes) {
    api_server_t *server = ctx;
    api_request_t *req = http_request_context(http);
    uint64_t body_max_bytes = server->config.body_bytes_max;
    uint64_t charged_bytes = req->body_charged_bytes;
    if (body_bytes > body_max_bytes) {
        api_reply_error(req, PC_BODY_TOO_LARGE, NULL, NULL);
    } else if (body_bytes + 1 > charged_bytes) {
        uint64_t charge_to_bytes = charged_bytes * 2 > ENGINE_BODY_CHARGE_BYTES_MIN ? charged_bytes * 2
                                                                                 : ENGINE_BODY_CHARGE_BYTES_MIN;
        if (charge_to_bytes < body_bytes + 1) charge_to_bytes = body_bytes + 1;
        if (charge_to_bytes > body_max_bytes + 1) charge_to_bytes = body_max_bytes + 1;
        if (api_body_charge(req, charge_to_bytes - charged_bytes) != PC_OK) {
            api_reply_error(req, PC_LIMIT_REACHED, NULL, NULL);
            api_reply_header(req, "Retry-After", "1");
        }
    }
    if (!atomic_load(&req->replied)) return true;
    reply_send(req);
    return false;
}

/* The client left (or a deadline closed the connection, or the engine refused the
 * body's chunk framing) between the head and the end of its body: the handler never
 * runs. As libmicrohttpd's on_completed without a reply: counted, its Idempotency-Key
 * freed, the request released. */
static void engine_abandoned(void *ctx, http_request_t *http, unsigned status) {
    (void)ctx;
    api_request_t *req = http_request_context(http);
    if (req == NULL) return;
    http_request_set_context(http, NULL);
    if (status == 408) api_request_record(req, 408, "request_deadline");
    else if (status == 0) api_request_record(req, 499, "client_closed");
    else api_request_record(req, (int)status, http_refusal_code(status));
    request_complete(req);
}

static bool engine_admit(void *ctx, const struct sockaddr *addr, socklen_t addr_bytes) {
    (void)addr_bytes;
    return api_conn_address_admit(ctx, addr);
}

static void engine_closed(void *ctx, const struct sockaddr *addr, socklen_t addr_bytes) {
    (void)addr_bytes;
    api_conn_address_closed(ctx, addr);
}

void api_engine_config(http_config_t *config, api_server_t *server, int listen_fd) {
    http_config_default(config);
    uint32_t timeout_ms = server->config.connection_timeout_s * 1000u;
    config->listen_fd = listen_fd;
    config->threads = server->config.threads < HTTP_THREADS_MAX ? server->config.threads : HTTP_THREADS_MAX;
    config->connections_max = API_CONNECTIONS_MAX;
    config->header_bytes_max = ENGINE_HEAD_BYTES_MAX;
    config->body_bytes_max = ENGINE_BODY_BYTES_UNCHECKED;
    config->idle_timeout_ms = timeout_ms;
    config->request_timeout_ms = timeout_ms;
    config->write_timeout_ms = timeout_ms;
    config->admit = engine_admit;
    config->closed = engine_closed;
    config->admit_ctx = server;
}

pc_status api_engine_start(api_server_t *server) {
    http_config_t config;
    api_engine_config(&config, server, server->listen_fd);
    config.handler = engine_request;
    config.head = engine_head;
    config.body = engine_body;
    config.abandoned = engine_abandoned;
    config.handler_ctx = server;
    http_server_t *engine = NULL;
    pc_status status = http_server_start(&engine, &config);
    pthread_mutex_lock(&server->conns_mutex); /* conn.c's reaper reads it */
    server->engine = engine;
    pthread_mutex_unlock(&server->conns_mutex);
    if (status != PC_OK) obs_logf(OBS_LEVEL_ERROR, "cannot start the HTTP engine on %s", server->config.listen);
    return status;
}

void api_engine_stop(api_server_t *server) {
    pthread_mutex_lock(&server->conns_mutex);
    http_server_t *engine = server->engine;
    server->engine = NULL;
    pthread_mutex_unlock(&server->conns_mutex);
    /* every connection closed; every held request answered, or past the engine's bound
     * (HTTP_STOP_WAIT_MS_DEFAULT: the writer drained before, so only a thread that
     * never answers leaves one) logged here */
    uint64_t unanswered = http_server_stop(engine); /* NULL: none */
    if (unanswered > 0) {
        obs_logf(OBS_LEVEL_ERROR, "stop: %llu requests held by the HTTP engine were not answered within %u ms; "
                 "their connections are closed", (unsigned long long)unanswered, HTTP_STOP_WAIT_MS_DEFAULT);
    }
}
