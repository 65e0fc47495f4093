/* bench/bench_http.c: paycore's HTTP engine (src/http) against libmicrohttpd, serving
 * the same fixed 200-byte JSON answer to N keep-alive connections in a closed loop
 * (one request in flight per connection), with the same server threads, in the same
 * run, alternated slice by slice (engine, MHD, engine, MHD, ...). Two answer modes:
 *   now:   the handler answers at once (the simulators' common case);
 *   later: the handler keeps the request and another thread answers it (the API:
 *          MHD suspends the connection and that thread resumes it; the engine's
 *          answering thread writes the answer itself).
 * One line per pair, then per mode:
 *   http_engine mode=M connections=N threads=T per_s=… mhd_per_s=… ratio=… \
 *     server_cpu_us=… mhd_server_cpu_us=… cpu_ratio=…
 * (medians over the pairs; ratio = the median of each pair's engine / MHD requests per
 * second; cpu_ratio = the same of server CPU per request: the server's threads and the
 * answering thread, read from /proc by thread name).
 * Options: --connections N (64) --threads T (2) --seconds S per slice (2) --pairs P (3)
 * --quick (1 s slices, 2 pairs), --full (the defaults) --only engine|mhd --mode now|later (both)
 * --requests R: each slice stops after R requests instead (callgrind, strace). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "http/http.h"

#define CLIENT_THREADS 2
#define ANSWER_BYTES 200
#define CONNECTIONS_MAX 1024

static char answer_json[ANSWER_BYTES + 1];
static const char request_text[] = "POST /v1/authorize HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 2\r\n\r\n{}";

/* ---- the answering thread of mode "later" ---- */

typedef struct {
    bool engine;
    void *item; /* http_request_t or struct MHD_Connection */
} held_t;

#define HELD_SLOTS 4096
static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    held_t slots[HELD_SLOTS];
    size_t head, tail;
    bool stop;
} held = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

static struct MHD_Response *mhd_answer;
static bool mode_later;

static void held_push(bool engine, void *item) {
    pthread_mutex_lock(&held.lock);
    held.slots[held.tail++ % HELD_SLOTS] = (held_t){engine, item};
    pthread_cond_signal(&held.ready);
    pthread_mutex_unlock(&held.lock);
}

static void *held_main(void *arg) {
    pthread_setname_np(pthread_self(), "bench-stage");
    pthread_mutex_lock(&held.lock);
    for (;;) {
        while (held.head == held.tail && !held.stop) pthread_cond_wait(&held.ready, &held.lock);
        if (held.head == held.tail) break;
        held_t item = held.slots[held.head++ % HELD_SLOTS];
        pthread_mutex_unlock(&held.lock);
        if (item.engine) http_answer(item.item, 200, "application/json", NULL, answer_json, ANSWER_BYTES);
        else MHD_resume_connection(item.item);
        pthread_mutex_lock(&held.lock);
    }
    pthread_mutex_unlock(&held.lock);
    return NULL;
}

/* ---- the two servers ---- */

static void engine_handler(void *ctx, http_request_t *request) {
    if (mode_later) held_push(true, request);
    else http_answer(request, 200, "application/json", NULL, answer_json, ANSWER_BYTES);
}

typedef struct {
    bool resumed;
} mhd_req_t;

static enum MHD_Result mhd_access(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    mhd_req_t *req = *con_cls;
    if (req == NULL) {
        req = calloc(1, sizeof *req);
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (mode_later && !req->resumed) {
        req->resumed = true;
        MHD_suspend_connection(connection);
        held_push(false, connection);
        return MHD_YES;
    }
    return MHD_queue_response(connection, 200, mhd_answer);
}

static void mhd_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                          enum MHD_RequestTerminationCode code) {
    free(*con_cls);
    *con_cls = NULL;
}

static int listen_socket(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1024) != 0) {
        perror("listen");
        exit(1);
    }
    socklen_t addr_bytes = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &addr_bytes);
    *port = ntohs(addr.sin_port);
    return fd;
}

typedef struct {
    bool engine;
    int listen_fd;
    uint16_t port;
    http_server_t *http;
    struct MHD_Daemon *mhd;
    pthread_t stage;
} server_t;

static void server_start(server_t *server, bool engine, uint32_t threads) {
    memset(server, 0, sizeof *server);
    server->engine = engine;
    server->listen_fd = listen_socket(&server->port);
    held.stop = false;
    held.head = held.tail = 0;
    pthread_create(&server->stage, NULL, held_main, NULL);
    if (engine) {
        http_config_t config;
        http_config_default(&config);
        config.listen_fd = server->listen_fd;
        config.threads = threads;
        config.handler = engine_handler;
        if (http_server_start(&server->http, &config) != PC_OK) exit(1);
        return;
    }
    /* as the API starts its epoll daemon (api/server.c), on our listening socket */
    server->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0,
                                   NULL, NULL, mhd_access, NULL, MHD_OPTION_LISTEN_SOCKET, server->listen_fd,
                                   MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads, MHD_OPTION_NOTIFY_COMPLETED,
                                   mhd_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                                   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(8 * 1024), MHD_OPTION_END);
    if (server->mhd == NULL) exit(1);
}

static void server_stop(server_t *server) {
    /* the requests still in flight are answered (MHD may not stop with one suspended) */
    struct timespec settle = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
    nanosleep(&settle, NULL);
    pthread_mutex_lock(&held.lock);
    held.stop = true;
    pthread_cond_broadcast(&held.ready);
    pthread_mutex_unlock(&held.lock);
    pthread_join(server->stage, NULL);
    if (server->engine) {
        http_server_stop(server->http);
        close(server->listen_fd);
    } else {
        MHD_stop_daemon(server->mhd); /* closes the listening socket it was given */
    }
}

/* CPU seconds of this process's threads whose name starts with one of the prefixes. */
static double threads_cpu_s(const char *prefix_a, const char *prefix_b) {
    DIR *tasks = opendir("/proc/self/task");
    double total_s = 0;
    struct dirent *entry;
    long ticks = sysconf(_SC_CLK_TCK);
    while (tasks != NULL && (entry = readdir(tasks)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char path[300], text[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", entry->d_name);
        FILE *file = fopen(path, "r");
        if (file == NULL) continue;
        size_t text_bytes = fread(text, 1, sizeof text - 1, file);
        fclose(file);
        text[text_bytes] = '\0';
        char *open = strchr(text, '('), *close = strrchr(text, ')');
        if (open == NULL || close == NULL) continue;
        size_t name_bytes = (size_t)(close - open - 1);
        bool match = strncmp(open + 1, prefix_a, strlen(prefix_a)) == 0 ||
                     (prefix_b != NULL && strncmp(open + 1, prefix_b, strlen(prefix_b)) == 0);
        if (!match || name_bytes == 0) continue;
        unsigned long user_ticks = 0, system_ticks = 0;
        /* fields after the name: state is 3rd, utime 14th, stime 15th */
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &user_ticks, &system_ticks) == 2) {
            total_s += (double)(user_ticks + system_ticks) / (double)ticks;
        }
    }
    if (tasks != NULL) closedir(tasks);
    return total_s;
}

/* ---- the client: closed loop, one request in flight per connection ---- */

typedef struct {
    int fd;
    char bytes[4096];
    size_t byte_count;
} bench_conn_t;

typedef struct {
    uint16_t port;
    uint32_t connection_count;
    bench_conn_t *conns;
    atomic_bool *stop;
    atomic_uint_fast64_t *done;
    uint64_t requests_max;
} client_arg_t;

/* True when a whole answer is buffered; consumes it. */
static bool answer_take(bench_conn_t *conn) {
    char *end = memmem(conn->bytes, conn->byte_count, "\r\n\r\n", 4);
    if (end == NULL) return false;
    size_t head_bytes = (size_t)(end - conn->bytes) + 4;
    const char *length = memmem(conn->bytes, head_bytes, "ength: ", 7);
    size_t whole_bytes = head_bytes + (length != NULL ? strtoul(length + 7, NULL, 10) : 0);
    if (conn->byte_count < whole_bytes) return false;
    memmove(conn->bytes, conn->bytes + whole_bytes, conn->byte_count - whole_bytes);
    conn->byte_count -= whole_bytes;
    return true;
}

static void conn_send_request(bench_conn_t *conn) {
    if (send(conn->fd, request_text, sizeof request_text - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof request_text - 1)) {
        perror("send");
        exit(1);
    }
}

static void *client_main(void *arg_void) {
    client_arg_t *arg = arg_void;
    int epoll_fd = epoll_create1(0);
    for (uint32_t index = 0; index < arg->connection_count; index++) {
        bench_conn_t *conn = &arg->conns[index];
        conn->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(arg->port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(conn->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            perror("connect");
            exit(1);
        }
        int one = 1;
        setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = conn};
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, conn->fd, &event);
        conn_send_request(conn);
    }
    struct epoll_event events[64];
    while (!atomic_load(arg->stop)) {
        int ready = epoll_wait(epoll_fd, events, 64, 50);
        for (int index = 0; index < ready; index++) {
            bench_conn_t *conn = events[index].data.ptr;
            ssize_t got = recv(conn->fd, conn->bytes + conn->byte_count, sizeof conn->bytes - conn->byte_count, 0);
            if (got <= 0) {
                fprintf(stderr, "bench_http: the server closed a connection\n");
                exit(1);
            }
            conn->byte_count += (size_t)got;
            while (answer_take(conn)) {
                uint64_t done = atomic_fetch_add(arg->done, 1) + 1;
                if (arg->requests_max != 0 && done >= arg->requests_max) atomic_store(arg->stop, true);
                else conn_send_request(conn);
            }
        }
    }
    for (uint32_t index = 0; index < arg->connection_count; index++) close(arg->conns[index].fd);
    close(epoll_fd);
    return NULL;
}

typedef struct {
    double per_s;
    double server_cpu_us; /* per request */
} slice_result_t;

static slice_result_t slice_run(bool engine, uint32_t connections, uint32_t threads, double seconds,
                                uint64_t requests_max) {
    server_t server;
    server_start(&server, engine, threads);
    atomic_bool stop = false;
    atomic_uint_fast64_t done = 0;
    static bench_conn_t conns[CONNECTIONS_MAX];
    memset(conns, 0, sizeof conns);
    client_arg_t args[CLIENT_THREADS];
    pthread_t clients[CLIENT_THREADS];
    double cpu_start_s = threads_cpu_s(engine ? "http-worker" : "MHD", engine ? "bench-stage" : "bench-stage");
    uint64_t start_ns = pc_mono_ns();
    uint32_t given = 0;
    for (int index = 0; index < CLIENT_THREADS; index++) {
        uint32_t share = (connections - given) / (uint32_t)(CLIENT_THREADS - index);
        args[index] = (client_arg_t){server.port, share, conns + given, &stop, &done, requests_max};
        given += share;
        pthread_create(&clients[index], NULL, client_main, &args[index]);
    }
    while (!atomic_load(&stop)) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000000};
        nanosleep(&pause, NULL);
        if (requests_max == 0 && (double)(pc_mono_ns() - start_ns) / 1e9 >= seconds) atomic_store(&stop, true);
    }
    double elapsed_s = (double)(pc_mono_ns() - start_ns) / 1e9;
    uint64_t served = atomic_load(&done);
    double cpu_s = threads_cpu_s(engine ? "http-worker" : "MHD", "bench-stage") - cpu_start_s;
    for (int index = 0; index < CLIENT_THREADS; index++) pthread_join(clients[index], NULL);
    server_stop(&server);
    return (slice_result_t){served / elapsed_s, served > 0 ? cpu_s * 1e6 / (double)served : 0};
}

static int compare_double(const void *a, const void *b) {
    double left = *(const double *)a, right = *(const double *)b;
    return left < right ? -1 : left > right;
}

static double median(double *values, int count) {
    qsort(values, (size_t)count, sizeof *values, compare_double);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

#define PAIRS_MAX 32

static void run_mode(bool later, const char *only, uint32_t connections, uint32_t threads, double seconds, int pairs,
                     uint64_t requests_max) {
    mode_later = later;
    const char *mode_name = later ? "later" : "now";
    double engine_per_s[PAIRS_MAX], mhd_per_s[PAIRS_MAX], engine_cpu[PAIRS_MAX], mhd_cpu[PAIRS_MAX];
    double ratios[PAIRS_MAX], cpu_ratios[PAIRS_MAX];
    for (int pair = 0; pair < pairs; pair++) {
        slice_result_t engine = {0}, mhd = {0};
        if (strcmp(only, "mhd") != 0) engine = slice_run(true, connections, threads, seconds, requests_max);
        if (strcmp(only, "engine") != 0) mhd = slice_run(false, connections, threads, seconds, requests_max);
        engine_per_s[pair] = engine.per_s;
        mhd_per_s[pair] = mhd.per_s;
        engine_cpu[pair] = engine.server_cpu_us;
        mhd_cpu[pair] = mhd.server_cpu_us;
        ratios[pair] = mhd.per_s > 0 ? engine.per_s / mhd.per_s : 0;
        cpu_ratios[pair] = mhd.server_cpu_us > 0 ? engine.server_cpu_us / mhd.server_cpu_us : 0;
        printf("http_engine_pair mode=%s pair=%d per_s=%.0f mhd_per_s=%.0f server_cpu_us=%.2f mhd_server_cpu_us=%.2f\n",
               mode_name, pair, engine.per_s, mhd.per_s, engine.server_cpu_us, mhd.server_cpu_us);
        fflush(stdout);
    }
    double engine_m = median(engine_per_s, pairs), mhd_m = median(mhd_per_s, pairs);
    double engine_cpu_m = median(engine_cpu, pairs), mhd_cpu_m = median(mhd_cpu, pairs);
    printf("http_engine mode=%s connections=%u threads=%u pairs=%d per_s=%.0f mhd_per_s=%.0f ratio=%.2f "
           "server_cpu_us=%.2f mhd_server_cpu_us=%.2f cpu_ratio=%.2f\n",
           mode_name, connections, threads, pairs, engine_m, mhd_m, median(ratios, pairs), engine_cpu_m, mhd_cpu_m,
           median(cpu_ratios, pairs));
    fflush(stdout);
}

int main(int argc, char **argv) {
    uint32_t connections = 64, threads = 2;
    double seconds = 2;
    int pairs = 3;
    uint64_t requests_max = 0;
    const char *only = "both", *mode = "both";
    for (int index = 1; index < argc; index++) {
        const char *arg = argv[index], *value = index + 1 < argc ? argv[index + 1] : NULL;
        if (strcmp(arg, "--full") == 0) { /* scripts/bench.sh: the defaults */
            continue;
        } else if (strcmp(arg, "--quick") == 0) {
            seconds = 1;
            pairs = 2;
        } else if (value != NULL && strcmp(arg, "--connections") == 0) {
            connections = (uint32_t)atoi(value), index++;
        } else if (value != NULL && strcmp(arg, "--threads") == 0) {
            threads = (uint32_t)atoi(value), index++;
        } else if (value != NULL && strcmp(arg, "--seconds") == 0) {
            seconds = atof(value), index++;
        } else if (value != NULL && strcmp(arg, "--pairs") == 0) {
            pairs = atoi(value), index++;
        } else if (value != NULL && strcmp(arg, "--requests") == 0) {
            requests_max = strtoull(value, NULL, 10), index++;
        } else if (value != NULL && strcmp(arg, "--only") == 0) {
            only = value, index++;
        } else if (value != NULL && strcmp(arg, "--mode") == 0) {
            mode = value, index++;
        } else {
            fprintf(stderr, "usage: bench_http [--quick] [--connections N] [--threads T] [--seconds S] [--pairs P] "
                            "[--requests R] [--only engine|mhd] [--mode now|later]\n");
            return 2;
        }
    }
    if (connections < CLIENT_THREADS || connections > CONNECTIONS_MAX || pairs < 1 || pairs > PAIRS_MAX) return 2;
    /* 200 bytes of JSON, the size of a card authorisation answer */
    int at = snprintf(answer_json, sizeof answer_json, "{\"id\":\"auth_0123456789\",\"status\":\"approved\",\"code\":\"00\",\"pad\":\"");
    while (at < ANSWER_BYTES - 2) answer_json[at++] = 'x';
    memcpy(answer_json + at, "\"}", 3);
    mhd_answer = MHD_create_response_from_buffer(ANSWER_BYTES, answer_json, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(mhd_answer, "Content-Type", "application/json");
    if (strcmp(mode, "later") != 0) run_mode(false, only, connections, threads, seconds, pairs, requests_max);
    if (strcmp(mode, "now") != 0) run_mode(true, only, connections, threads, seconds, pairs, requests_max);
    MHD_destroy_response(mhd_answer);
    return 0;
}
