/* tests/events/webhook_sink.c: a fast webhook receiver for the events benchmark
 * (libmicrohttpd): answers every POST 204 and, per path, counts deliveries and the
 * lag of each (arrival time minus the event's "created", the same clock on loopback).
 * GET /stats?path=/p prints "count=N lag_p50_ms=.. lag_p99_ms=..". It prints
 * "port=N" on stdout once listening and runs until SIGTERM. Not a test itself.
 *
 *   webhook_sink [--port N] */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATHS_MAX 8
#define LAGS_MAX (4u * 1024u * 1024u)

typedef struct {
    char path[64];
    uint64_t count;
    uint32_t *lags_us;         /* capped at LAGS_MAX samples */
    uint32_t lag_count;
} path_stats;

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static path_stats paths[PATHS_MAX];

static uint64_t wall_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static path_stats *path_slot(const char *path) {
    for (int i = 0; i < PATHS_MAX; i++) {
        if (strcmp(paths[i].path, path) == 0) return &paths[i];
        if (paths[i].path[0] == '\0') {
            snprintf(paths[i].path, sizeof paths[i].path, "%s", path);
            paths[i].lags_us = malloc(sizeof(uint32_t) * LAGS_MAX);
            return paths[i].lags_us ? &paths[i] : NULL;
        }
    }
    return NULL;
}

static void record(const char *path, const char *body, size_t bytes, uint64_t arrived_ns) {
    const char *created = memmem(body, bytes, "\"created\":", 10);
    uint64_t created_ns = created ? strtoull(created + 10, NULL, 10) : 0;
    pthread_mutex_lock(&mutex);
    path_stats *p = path_slot(path);
    if (p != NULL) {
        p->count++;
        if (created_ns != 0 && p->lag_count < LAGS_MAX) {
            uint64_t lag_us = arrived_ns > created_ns ? (arrived_ns - created_ns) / 1000u : 0;
            p->lags_us[p->lag_count++] = lag_us > UINT32_MAX ? UINT32_MAX : (uint32_t)lag_us;
        }
    }
    pthread_mutex_unlock(&mutex);
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void stats_text(const char *path, char *out, size_t out_bytes) {
    pthread_mutex_lock(&mutex);
    path_stats *p = path_slot(path);
    uint64_t count = p ? p->count : 0;
    double p50 = 0, p99 = 0;
    if (p != NULL && p->lag_count > 0) {
        qsort(p->lags_us, p->lag_count, sizeof(uint32_t), compare_u32);
        p50 = p->lags_us[p->lag_count / 2] / 1000.0;
        p99 = p->lags_us[(uint32_t)((p->lag_count - 1) * 0.99)] / 1000.0;
    }
    pthread_mutex_unlock(&mutex);
    snprintf(out, out_bytes, "count=%llu lag_p50_ms=%.1f lag_p99_ms=%.1f\n", (unsigned long long)count, p50, p99);
}

typedef struct {
    char *body;
    size_t bytes;
    uint64_t arrived_ns;
} upload;

static enum MHD_Result answer(struct MHD_Connection *connection, unsigned status, const char *text) {
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **state) {
    (void)cls;
    (void)version;
    if (strcmp(method, "GET") == 0) {
        char text[128];
        const char *path = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "path");
        stats_text(path ? path : "/", text, sizeof text);
        return answer(connection, 200, text);
    }
    upload *u = *state;
    if (u == NULL) {
        u = calloc(1, sizeof(*u));
        u->arrived_ns = wall_ns();
        *state = u;
        return MHD_YES;
    }
    if (*data_size > 0) {
        char *grown = realloc(u->body, u->bytes + *data_size);
        if (grown == NULL) return MHD_NO;
        memcpy(grown + u->bytes, data, *data_size);
        u->body = grown;
        u->bytes += *data_size;
        *data_size = 0;
        return MHD_YES;
    }
    record(url, u->body ? u->body : "", u->bytes, u->arrived_ns);
    return answer(connection, 204, "");
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **state,
                         enum MHD_RequestTerminationCode code) {
    (void)cls;
    (void)connection;
    (void)code;
    upload *u = *state;
    if (u != NULL) {
        free(u->body);
        free(u);
    }
    *state = NULL;
}

int main(int argc, char **argv) {
    uint16_t port = argc == 3 && strcmp(argv[1], "--port") == 0 ? (uint16_t)atoi(argv[2]) : 0;
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, port, NULL, NULL, on_request, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, 2u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_END);
    if (daemon == NULL) {
        fprintf(stderr, "webhook_sink: cannot listen\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf("port=%u\n", (unsigned)info->port);
    fflush(stdout);
    int signal_number;
    sigwait(&signals, &signal_number);
    MHD_stop_daemon(daemon);
    return 0;
}
