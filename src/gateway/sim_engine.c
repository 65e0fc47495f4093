/* gateway/sim_engine.c: a simulator served by paycore's own HTTP engine (src/http; the
 * default of `paycore simulator`, --http-mhd selects sim_loop.c instead). The request's steps are sim_server.c's; only
 * the waits differ from libmicrohttpd's loop (sim_loop.c):
 *  - one engine worker runs every request's first step (the loop thread's part); its
 *    units join the open group and leave the commit to the worker's batch end;
 *  - a request that waits for its group's commit is kept on the worker's list; the
 *    batch-end hook commits the group once for the whole batch and answers the list
 *    from the worker itself (no resume, no other thread woken);
 *  - a latency wait or a held timeout is kept on the timer thread's heap; when due, the
 *    timer thread runs the request's next step, commits its group and answers (or
 *    closes) it itself;
 *  - "dropped without an answer" is http_close().
 * Limits: the same numbers as libmicrohttpd's options (sim_http_start) in the engine's
 * terms: head bytes (431 past them), body bytes (413), connections, idle timeouts. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "http/http.h"
#include "obs/obs.h"

struct sim_engine {
    http_server_t *server;
    int listen_fd;
    sim_req_t *committing;        /* the worker's: kept for the batch's commit (via spare_next) */
    pthread_mutex_t timer_lock;
    pthread_cond_t timer_cond;    /* a new earliest timer, a stop */
    sim_timers_t timers;          /* under timer_lock */
    bool timer_exit;              /* under timer_lock */
    pthread_t timer_thread;
    bool timer_started;
};

static __thread bool on_timer_thread; /* the commit wait of a timer's step is the timer thread's */

static const char replayed_header[] = "Idempotent-Replayed: true\r\n";

/* ---- answering ---- */

/* Sends, closes or leaves kept what the step left; an ended request is freed. */
static void request_next(sim_req_t *req, sim_next next) {
    if (next == SIM_NEXT_WAIT) return;
    if (next == SIM_NEXT_SEND) {
        PC_ASSERT(req->replied);
        obs_logf(OBS_LEVEL_DEBUG, "%s %s %u", req->method, req->path, req->http_status);
        (void)http_answer(req->http_request, req->http_status, req->content_type,
                          req->replayed ? replayed_header : NULL, req->reply, req->reply_bytes);
    } else {
        (void)http_close(req->http_request);
    }
    req->body_bytes = NULL; /* the engine's, gone with the answer */
    req->body_size = 0;
    sim_request_free(req);
}

void sim_engine_wait_commit(sim_req_t *req) {
    if (req->awaiting_commit) return;
    req->awaiting_commit = true;
    if (on_timer_thread) return; /* timer_fire commits and steps again */
    sim_engine_t *engine = req->sim->engine;
    req->spare_next = engine->committing;
    engine->committing = req;
}

/* The worker's batch end: one commit for every request the batch handled, then the
 * answers of those that waited for it. */
static void on_batch_end(void *ctx) {
    sim_t *sim = ctx;
    if (!atomic_exchange(&sim->batching, false)) return;
    sim_group_flush(sim);
    sim_engine_t *engine = sim->engine;
    sim_req_t *list = engine->committing;
    engine->committing = NULL;
    while (list != NULL) {
        sim_req_t *req = list;
        list = req->spare_next;
        req->spare_next = NULL;
        request_next(req, sim_request_step(req));
    }
}

/* ---- a new request (the worker) ---- */

const char *sim_engine_query(sim_req_t *req, const char *name) {
    size_t name_bytes = strlen(name);
    const char *at = req->query, *end = req->query + req->query_bytes;
    while (at != NULL && at < end) {
        const char *pair_end = memchr(at, '&', (size_t)(end - at));
        if (pair_end == NULL) pair_end = end;
        const char *equals = memchr(at, '=', (size_t)(pair_end - at));
        const char *name_end = equals != NULL ? equals : pair_end;
        if ((size_t)(name_end - at) == name_bytes && memcmp(at, name, name_bytes) == 0) {
            if (req->query_value == NULL) req->query_value = malloc(SIM_PATH_BYTES_MAX + 1);
            if (req->query_value == NULL) return NULL;
            const char *value = equals != NULL ? equals + 1 : pair_end;
            /* a '+' stays a '+': the arguments are keys, ids and dates, which hold none */
            if (!http_percent_decode(value, (size_t)(pair_end - value), false, req->query_value,
                                     SIM_PATH_BYTES_MAX + 1)) {
                return NULL;
            }
            return req->query_value;
        }
        at = pair_end + 1;
    }
    return NULL;
}

/* Method, path (decoded; "" when too long: 404, as on MHD), query and body. */
static void request_fill(sim_req_t *req, http_request_t *request) {
    req->http_request = request;
    http_text_t method = http_request_method(request);
    size_t method_bytes = method.byte_count < sizeof req->method ? method.byte_count : sizeof req->method - 1;
    memcpy(req->method, method.bytes, method_bytes);
    req->method[method_bytes] = '\0';
    http_text_t target = http_request_target(request);
    const char *question = memchr(target.bytes, '?', target.byte_count);
    size_t path_bytes = question != NULL ? (size_t)(question - target.bytes) : target.byte_count;
    if (question != NULL) {
        req->query = question + 1;
        req->query_bytes = target.byte_count - path_bytes - 1;
    }
    if (!http_percent_decode(target.bytes, path_bytes, false, req->path, sizeof req->path)) req->path[0] = '\0';
    http_text_t body = http_request_body(request);
    req->body_bytes = (char *)body.bytes; /* read only; valid until the answer */
    req->body_size = body.byte_count;
}

static void on_request(void *ctx, http_request_t *request) {
    sim_t *sim = ctx;
    atomic_store(&sim->batching, true); /* units leave the commit to on_batch_end */
    sim_req_t *req = sim_request_alloc(sim);
    if (req == NULL) {
        static const char oom[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
        (void)http_answer(request, 500, "application/json", NULL, oom, sizeof oom - 1);
        return;
    }
    request_fill(req, request);
    request_next(req, sim_request_step(req));
}

static bool on_admit(void *ctx, const struct sockaddr *addr, socklen_t addr_bytes) {
    (void)addr;
    (void)addr_bytes;
    sim_t *sim = ctx;
    atomic_fetch_add(&sim->connections, 1);
    return true;
}

/* ---- the timer thread ---- */

void sim_engine_wait_ms(sim_req_t *req, uint64_t ms) {
    sim_engine_t *engine = req->sim->engine;
    pthread_mutex_lock(&engine->timer_lock);
    sim_timers_push(&engine->timers, sim_mono_ms() + ms, req);
    if (engine->timers.timers[0].req == req) pthread_cond_signal(&engine->timer_cond);
    pthread_mutex_unlock(&engine->timer_lock);
}

/* A due request's next step, on this thread: its commit is this thread's too. */
static void timer_fire(sim_t *sim, sim_req_t *req) {
    sim_next next = sim_request_step(req);
    if (next == SIM_NEXT_WAIT && req->awaiting_commit) {
        sim_group_flush(sim);
        next = sim_request_step(req);
    }
    request_next(req, next);
}

static void timer_sleep(sim_engine_t *engine, uint64_t due_ms) {
    if (due_ms == UINT64_MAX) {
        pthread_cond_wait(&engine->timer_cond, &engine->timer_lock);
        return;
    }
    uint64_t now_ms = sim_mono_ms();
    struct timespec until = sim_deadline_after(due_ms > now_ms ? due_ms - now_ms : 0);
    (void)pthread_cond_timedwait(&engine->timer_cond, &engine->timer_lock, &until);
}

/* Fires due timers (every one once stopping) until told to exit. */
static void *timer_main(void *arg) {
    sim_t *sim = arg;
    sim_engine_t *engine = sim->engine;
    on_timer_thread = true;
    pthread_setname_np(pthread_self(), "sim-timer");
    pthread_mutex_lock(&engine->timer_lock);
    while (!engine->timer_exit) {
        bool stopping = atomic_load(&sim->stopping);
        uint64_t due_ms = engine->timers.count > 0 ? engine->timers.timers[0].due_ms : UINT64_MAX;
        if (due_ms != UINT64_MAX && (stopping || due_ms <= sim_mono_ms())) {
            sim_req_t *req = sim_timers_pop(&engine->timers);
            pthread_mutex_unlock(&engine->timer_lock);
            timer_fire(sim, req);
            pthread_mutex_lock(&engine->timer_lock);
            continue;
        }
        timer_sleep(engine, due_ms);
    }
    pthread_mutex_unlock(&engine->timer_lock);
    return NULL;
}

/* ---- start and stop ---- */

static int listen_open(const struct sockaddr_in *addr, uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in bound = *addr;
    socklen_t bound_bytes = sizeof bound;
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &bound_bytes) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(bound.sin_port);
    return fd;
}

static void engine_free(sim_engine_t *engine) {
    if (engine->listen_fd >= 0) close(engine->listen_fd);
    sim_timers_free(&engine->timers);
    pthread_mutex_destroy(&engine->timer_lock);
    pthread_cond_destroy(&engine->timer_cond);
    free(engine);
}

static void server_config(sim_t *sim, int listen_fd, http_config_t *config) {
    http_config_default(config);
    config->listen_fd = listen_fd;
    config->threads = 1; /* as the loop: one thread runs requests; the record is one connection */
    config->connections_max = SIM_CONNECTIONS_MAX;
    config->header_bytes_max = SIM_HEAD_BYTES_MAX;
    config->request_line_bytes_max = SIM_HEAD_BYTES_MAX;
    config->body_bytes_max = SIM_BODY_BYTES_MAX;
    config->idle_timeout_ms = SIM_CONNECTION_IDLE_S * 1000u;
    config->request_timeout_ms = SIM_CONNECTION_IDLE_S * 1000u;
    config->write_timeout_ms = SIM_CONNECTION_IDLE_S * 1000u;
    config->handler = on_request;
    config->handler_ctx = sim;
    config->admit = on_admit;
    config->admit_ctx = sim;
    config->batch_end = on_batch_end;
}

bool sim_engine_start(sim_t *sim, const struct sockaddr_in *addr, char *error, size_t error_bytes) {
    sim_engine_t *engine = calloc(1, sizeof *engine);
    if (engine == NULL || !sim_timers_init(&engine->timers)) {
        free(engine);
        snprintf(error, error_bytes, "out of memory");
        return false;
    }
    pthread_mutex_init(&engine->timer_lock, NULL);
    sim_cond_init_monotonic(&engine->timer_cond);
    engine->listen_fd = listen_open(addr, &sim->port);
    if (engine->listen_fd < 0) {
        snprintf(error, error_bytes, "cannot listen on port %u: %s", (unsigned)ntohs(addr->sin_port), strerror(errno));
        engine_free(engine);
        return false;
    }
    sim->engine = engine;
    if (pthread_create(&engine->timer_thread, NULL, timer_main, sim) != 0) {
        snprintf(error, error_bytes, "cannot start the timer thread");
        sim->engine = NULL;
        engine_free(engine);
        return false;
    }
    engine->timer_started = true;
    http_config_t config;
    server_config(sim, engine->listen_fd, &config);
    if (http_server_start(&engine->server, &config) != PC_OK) {
        snprintf(error, error_bytes, "cannot start the HTTP engine on port %u", (unsigned)sim->port);
        atomic_store(&sim->stopping, true);
        sim_engine_stop(sim);
        atomic_store(&sim->stopping, false);
        return false;
    }
    return true;
}

void sim_engine_stop(sim_t *sim) {
    sim_engine_t *engine = sim->engine;
    if (engine == NULL) return;
    PC_ASSERT(atomic_load(&sim->stopping));
    pthread_mutex_lock(&engine->timer_lock);
    pthread_cond_signal(&engine->timer_cond); /* stopping: every timer fires now */
    pthread_mutex_unlock(&engine->timer_lock);
    http_server_stop(engine->server); /* returns once the timer thread answered every kept request */
    pthread_mutex_lock(&engine->timer_lock);
    engine->timer_exit = true;
    pthread_cond_signal(&engine->timer_cond);
    pthread_mutex_unlock(&engine->timer_lock);
    if (engine->timer_started) pthread_join(engine->timer_thread, NULL);
    PC_ASSERT(engine->timers.count == 0 && engine->committing == NULL);
    sim->engine = NULL;
    engine_free(engine);
}
