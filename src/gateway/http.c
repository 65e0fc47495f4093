/* gateway/http.c: the gateway's own keep-alive HTTP/1.1 client, for channels at a
 * plain-HTTP numeric IPv4 address (the simulators; an acquirer's endpoint on a private
 * link). libcurl stays for the rest (https, host names to resolve). Per call curl
 * parses the URL, searches its connection cache and polls the connection it picks for
 * liveness, polls again after sending, and runs every header through its machinery:
 * as much CPU as everything else a call costs. Here a call on a kept-alive connection
 * costs one send and one recv, and the answer is read by http_parser (libhttp-parser).
 *
 * Each thread keeps one pool per address: at most the channel's max_connections,
 * a connection serves one call at a time, a call beyond the bound waits (within its
 * timeout) for one to free up. An idle connection stays in epoll: when the channel
 * closes it, it is closed here too, before a call could pick it.
 *
 * The guarantees are the ones curl gave: a request is written once, on one connection,
 * never again; "it never left" (retryable elsewhere) only while not one byte of it was
 * accepted by the kernel (no connection, refused, connect timeout); after that a
 * dropped connection, a timeout or a malformed answer is unknown (status inquiry).
 * Outcomes are told with curl's codes, so classify() reads both clients alike. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/gw_internal.h"
#include "obs/obs.h"

struct gw_conn {
    int fd;
    gw_pool_t *pool;
    gw_call_t *call;          /* the call it serves; NULL while idle */
    gw_conn_t *next;          /* the pool's idle list */
    bool connecting;
    bool watching_out;        /* epoll waits for writable too (connecting, or a partial send) */
    bool complete;            /* the answer was read whole */
    bool received;            /* any byte of an answer came */
    http_parser parser;
};

/* ---------------------------------------------------------------- the channel's address */

static bool header_safe(const char *s) {
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) return false;
    }
    return true;
}

/* Our client when the URL is http:// to a numeric IPv4 address with no user, query or
 * fragment, and the API key fits in a header as it is (curl otherwise). The URL is
 * read by curl's URL parser. */
void gw_http_origin(gw_channel_cfg_t *ch) {
    ch->own_http = false;
    CURLU *url = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL, *fragment = NULL;
    bool ok = url != NULL && curl_url_set(url, CURLUPART_URL, ch->url, 0) == CURLUE_OK &&
              curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(url, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
              curl_url_get(url, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
              curl_url_get(url, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
              curl_url_get(url, CURLUPART_USER, &user, 0) == CURLUE_NO_USER &&
              curl_url_get(url, CURLUPART_QUERY, &query, 0) == CURLUE_NO_QUERY &&
              curl_url_get(url, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_NO_FRAGMENT;
    struct in_addr ip;
    char *end = NULL;
    unsigned long port_number = ok ? strtoul(port, &end, 10) : 0;
    ok = ok && strcmp(scheme, "http") == 0 && inet_pton(AF_INET, host, &ip) == 1 && end != NULL &&
         *end == '\0' && port_number > 0 && port_number <= 65535 && header_safe(path) &&
         strlen(path) < sizeof ch->http_prefix && header_safe(ch->api_key);
    if (ok) {
        memset(&ch->http_addr, 0, sizeof ch->http_addr);
        ch->http_addr.sin_family = AF_INET;
        ch->http_addr.sin_addr = ip;
        ch->http_addr.sin_port = htons((uint16_t)port_number);
        snprintf(ch->http_host, sizeof ch->http_host, "%s:%lu", host, port_number);
        size_t bytes = strlen(path);
        while (bytes > 0 && path[bytes - 1] == '/') bytes--; /* the call's path brings its own '/' */
        memcpy(ch->http_prefix, path, bytes);
        ch->http_prefix[bytes] = '\0';
        ch->own_http = true;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(query);
    curl_free(fragment);
    curl_url_cleanup(url);
}

/* ---------------------------------------------------------------- deadlines */

/* Sorted by deadline_ns; calls of one channel share a timeout, so a new deadline is
 * nearly always the latest: the search starts from the tail. */
static void deadline_insert(gw_thread_t *t, gw_call_t *call) {
    gw_call_t *after = t->deadlines_tail;
    while (after != NULL && after->deadline_ns > call->deadline_ns) after = after->deadline_prev;
    call->deadline_prev = after;
    call->deadline_next = after != NULL ? after->deadline_next : t->deadlines_head;
    if (call->deadline_next != NULL) call->deadline_next->deadline_prev = call;
    else t->deadlines_tail = call;
    if (after != NULL) after->deadline_next = call;
    else t->deadlines_head = call;
    call->deadline_on = true;
}

static void deadline_remove(gw_thread_t *t, gw_call_t *call) {
    if (!call->deadline_on) return;
    if (call->deadline_prev != NULL) call->deadline_prev->deadline_next = call->deadline_next;
    else t->deadlines_head = call->deadline_next;
    if (call->deadline_next != NULL) call->deadline_next->deadline_prev = call->deadline_prev;
    else t->deadlines_tail = call->deadline_prev;
    call->deadline_prev = call->deadline_next = NULL;
    call->deadline_on = false;
}

/* The whole call's deadline, or the connect deadline while connecting if sooner. */
static void deadline_set(gw_thread_t *t, gw_call_t *call, bool connecting) {
    deadline_remove(t, call);
    call->deadline_ns = call->total_deadline_ns;
    if (connecting && call->connect_deadline_ns < call->deadline_ns) call->deadline_ns = call->connect_deadline_ns;
    deadline_insert(t, call);
}

uint64_t gw_http_next_deadline_ns(const gw_thread_t *t) {
    return t->deadlines_head != NULL ? t->deadlines_head->deadline_ns : 0;
}

/* ---------------------------------------------------------------- finishing a call */

/* The call's HTTP part is over: it goes to the finished list, which the thread's loop
 * hands to call.c (never from inside a send: a refused connection would re-enter). */
static void call_finish(gw_thread_t *t, gw_call_t *call, CURLcode code, long http_status) {
    deadline_remove(t, call);
    call->conn = NULL;
    call->http_status = http_status;
    call->transport_code = (int)code;
    call->http_own = false;
    call->next = NULL;
    if (t->http_finished_tail != NULL) t->http_finished_tail->next = call;
    else t->http_finished_head = call;
    t->http_finished_tail = call;
}

void gw_http_finished_run(gw_thread_t *t) {
    while (t->http_finished_head != NULL) {
        gw_call_t *call = t->http_finished_head;
        t->http_finished_head = call->next;
        if (t->http_finished_head == NULL) t->http_finished_tail = NULL;
        call->next = NULL;
        gw_call_http_done(call, call->transport_code);
    }
}

/* ---------------------------------------------------------------- connections */

static void conn_watch(gw_thread_t *t, gw_conn_t *conn, bool out) {
    if (conn->watching_out == out) return;
    struct epoll_event event = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.fd = conn->fd};
    if (epoll_ctl(t->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event) != 0) {
        obs_logf(OBS_LEVEL_ERROR, "gateway: epoll_ctl: %s", strerror(errno));
    }
    conn->watching_out = out;
}

static void conn_close(gw_thread_t *t, gw_conn_t *conn) {
    if ((uint32_t)conn->fd < t->fd_conn_size) t->fd_conn[conn->fd] = NULL;
    close(conn->fd); /* leaves epoll with it */
    conn->pool->open--;
    free(conn);
}

static bool fd_conn_room(gw_thread_t *t, int fd) {
    if ((uint32_t)fd < t->fd_conn_size) return true;
    uint32_t size = t->fd_conn_size ? t->fd_conn_size : 256;
    while (size <= (uint32_t)fd) size *= 2;
    gw_conn_t **grown = realloc(t->fd_conn, size * sizeof *grown);
    if (grown == NULL) return false;
    memset(grown + t->fd_conn_size, 0, (size - t->fd_conn_size) * sizeof *grown);
    t->fd_conn = grown;
    t->fd_conn_size = size;
    return true;
}

/* A new connection toward the pool's address, connecting (or connected: loopback often
 * is at once). NULL with 'refused' set when the channel refused at once. */
static gw_conn_t *conn_open(gw_thread_t *t, gw_pool_t *pool, bool *refused) {
    *refused = false;
    gw_conn_t *conn = calloc(1, sizeof *conn);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn == NULL || fd < 0 || !fd_conn_room(t, fd)) {
        if (fd >= 0) close(fd);
        free(conn);
        return NULL;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, (const struct sockaddr *)&pool->addr, sizeof pool->addr);
    if (rc != 0 && errno != EINPROGRESS) {
        *refused = true;
        close(fd);
        free(conn);
        return NULL;
    }
    conn->fd = fd;
    conn->pool = pool;
    conn->connecting = rc != 0;
    conn->watching_out = conn->connecting;
    struct epoll_event event = {.events = EPOLLIN | (conn->connecting ? EPOLLOUT : 0u), .data.fd = fd};
    if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
        close(fd);
        free(conn);
        return NULL;
    }
    t->fd_conn[fd] = conn;
    pool->open++;
    return conn;
}

static int on_body(http_parser *parser, const char *data, size_t bytes) {
    gw_conn_t *conn = parser->data;
    return gw_response_append(conn->call, data, bytes) ? 0 : -1;
}

static int on_complete(http_parser *parser) {
    gw_conn_t *conn = parser->data;
    conn->complete = true;
    http_parser_pause(parser, 1); /* anything after the answer is not read as another */
    return 0;
}

static const http_parser_settings parser_settings = {.on_body = on_body, .on_message_complete = on_complete};

static void pool_serve(gw_thread_t *t, gw_pool_t *pool);

/* The connection is done with its call (which is finished separately). */
static void conn_release(gw_thread_t *t, gw_conn_t *conn, bool reuse) {
    gw_pool_t *pool = conn->pool;
    conn->call = NULL;
    if (reuse) {
        conn->next = pool->idle;
        pool->idle = conn;
    } else {
        conn_close(t, conn);
    }
    pool_serve(t, pool);
}

static void conn_fail(gw_thread_t *t, gw_conn_t *conn, CURLcode code) {
    gw_call_t *call = conn->call;
    conn_release(t, conn, false);
    call_finish(t, call, code, 0);
}

/* Writes what is left of the request; waits for writable when the socket is full.
 * False when the connection failed (closed, its call finished). */
static bool conn_write(gw_thread_t *t, gw_conn_t *conn) {
    gw_call_t *call = conn->call;
    while (call->out_sent < call->out_bytes) {
        ssize_t sent = send(conn->fd, call->out + call->out_sent, call->out_bytes - call->out_sent, MSG_NOSIGNAL);
        if (sent > 0) {
            call->request_left = true; /* the kernel has some of it: it may arrive */
            call->out_sent += (size_t)sent;
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_watch(t, conn, true);
            return true;
        } else {
            conn_fail(t, conn, CURLE_SEND_ERROR); /* request_left tells whether any of it went */
            return false;
        }
    }
    conn_watch(t, conn, false);
    return true;
}

/* A connection starts serving a call: its parser afresh, the request out. */
static void conn_start(gw_thread_t *t, gw_conn_t *conn, gw_call_t *call) {
    conn->call = call;
    call->conn = conn;
    conn->complete = false;
    conn->received = false;
    http_parser_init(&conn->parser, HTTP_RESPONSE);
    conn->parser.data = conn;
    if (conn->connecting) return; /* written once connected */
    deadline_set(t, call, false);
    (void)conn_write(t, conn);
}

static void waiting_push(gw_pool_t *pool, gw_call_t *call) {
    call->next = NULL;
    if (pool->waiting_tail != NULL) pool->waiting_tail->next = call;
    else pool->waiting_head = call;
    pool->waiting_tail = call;
    call->waiting_pool = pool;
}

static void waiting_remove(gw_pool_t *pool, gw_call_t *call) {
    gw_call_t *previous = NULL;
    for (gw_call_t *c = pool->waiting_head; c != NULL; previous = c, c = c->next) {
        if (c != call) continue;
        if (previous != NULL) previous->next = c->next;
        else pool->waiting_head = c->next;
        if (pool->waiting_tail == c) pool->waiting_tail = previous;
        c->next = NULL;
        c->waiting_pool = NULL;
        return;
    }
}

/* Gives the call a connection: an idle one, a new one, or a place in the queue. */
static void call_connect(gw_thread_t *t, gw_pool_t *pool, gw_call_t *call) {
    if (pool->idle != NULL) {
        gw_conn_t *conn = pool->idle;
        pool->idle = conn->next;
        conn->next = NULL;
        conn_start(t, conn, call);
        return;
    }
    if (pool->open >= pool->open_max) {
        waiting_push(pool, call);
        return;
    }
    bool refused = false;
    call->connect_deadline_ns = pc_mono_ns() + (uint64_t)call->connect_timeout_ms * 1000000u;
    gw_conn_t *conn = conn_open(t, pool, &refused);
    if (conn == NULL) {
        call_finish(t, call, refused ? CURLE_COULDNT_CONNECT : CURLE_OUT_OF_MEMORY, 0);
        return;
    }
    deadline_set(t, call, conn->connecting);
    conn_start(t, conn, call);
}

/* A connection freed up or closed: the first waiting call takes its place. */
static void pool_serve(gw_thread_t *t, gw_pool_t *pool) {
    while (pool->waiting_head != NULL && (pool->idle != NULL || pool->open < pool->open_max)) {
        gw_call_t *call = pool->waiting_head;
        waiting_remove(pool, call);
        call_connect(t, pool, call);
    }
}

/* ---------------------------------------------------------------- events */

static void conn_connected(gw_thread_t *t, gw_conn_t *conn) {
    int error = 0;
    socklen_t bytes = sizeof error;
    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &bytes) != 0) error = errno;
    if (error != 0) {
        conn_fail(t, conn, CURLE_COULDNT_CONNECT);
        return;
    }
    conn->connecting = false;
    deadline_set(t, conn->call, false);
    (void)conn_write(t, conn);
}

/* The answer's end: complete and clean, the connection serves the next call. */
static void conn_answered(gw_thread_t *t, gw_conn_t *conn, bool bytes_after, bool eof) {
    gw_call_t *call = conn->call;
    long status = (long)conn->parser.status_code;
    bool reuse = !bytes_after && !eof && call->out_sent == call->out_bytes && http_should_keep_alive(&conn->parser);
    conn_release(t, conn, reuse);
    call_finish(t, call, CURLE_OK, status);
}

static void conn_read(gw_thread_t *t, gw_conn_t *conn) {
    char data[GW_HTTP_READ_BYTES];
    ssize_t got = recv(conn->fd, data, sizeof data, 0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (conn->call == NULL) { /* idle: the channel closed it (or spoke unasked) */
        gw_pool_t *pool = conn->pool;
        gw_conn_t **at = &pool->idle;
        while (*at != NULL && *at != conn) at = &(*at)->next;
        if (*at == conn) *at = conn->next;
        conn_close(t, conn);
        pool_serve(t, pool);
        return;
    }
    if (got < 0) {
        conn_fail(t, conn, CURLE_RECV_ERROR);
        return;
    }
    size_t used = http_parser_execute(&conn->parser, &parser_settings, data, (size_t)got);
    if (got > 0) conn->received = true;
    if (conn->complete) {
        conn_answered(t, conn, used < (size_t)got, got == 0);
    } else if (got == 0) { /* closed before the answer's end */
        conn_fail(t, conn, conn->received ? CURLE_PARTIAL_FILE : CURLE_GOT_NOTHING);
    } else if (HTTP_PARSER_ERRNO(&conn->parser) != HPE_OK) {
        conn_fail(t, conn, gw_response_too_large(conn->call) ? CURLE_WRITE_ERROR : CURLE_WEIRD_SERVER_REPLY);
    }
}

gw_conn_t *gw_http_conn_of(const gw_thread_t *t, int fd) {
    return (uint32_t)fd < t->fd_conn_size ? t->fd_conn[fd] : NULL;
}

void gw_http_event(gw_thread_t *t, gw_conn_t *conn, uint32_t events) {
    if (conn->call != NULL && conn->connecting) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) conn_connected(t, conn);
        return;
    }
    if (conn->call != NULL && (events & EPOLLOUT) && conn->call->out_sent < conn->call->out_bytes &&
        !conn_write(t, conn)) {
        return; /* failed: closed */
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_read(t, conn);
}

/* ---------------------------------------------------------------- calls */

static gw_pool_t *pool_find(gw_thread_t *t, const struct sockaddr_in *addr) {
    gw_pool_t *empty = NULL;
    for (uint32_t i = 0; i < t->pool_count; i++) {
        gw_pool_t *pool = &t->pools[i];
        if (pool->addr.sin_addr.s_addr == addr->sin_addr.s_addr && pool->addr.sin_port == addr->sin_port) return pool;
        if (empty == NULL && pool->open == 0 && pool->waiting_head == NULL) empty = pool;
    }
    if (t->pool_count < GW_HTTP_POOLS_MAX) empty = &t->pools[t->pool_count++];
    if (empty == NULL) return NULL; /* every pool in use: curl takes this call */
    memset(empty, 0, sizeof *empty);
    empty->addr = *addr;
    return empty;
}

/* The request's text: head, then the body. It holds the API key and maybe a card
 * number: wiped when freed. The head is copied together from its parts (sized first,
 * one allocation): formatting it cost more than the rest of a call's sending. */
typedef struct {
    const char *text;
    size_t bytes;
} head_part;

static head_part part(const char *text) {
    return (head_part){text, strlen(text)};
}

static bool request_text(gw_call_t *call, const gw_channel_cfg_t *ch, const gw_http_call_t *http,
                         const char *key) {
    char length[24] = "";
    bool body = call->request.body != NULL, auth = ch->api_key[0] != '\0';
    if (body) pc_u64_text(length, call->request.body_bytes);
    const head_part parts[] = {
        part(http->method), part(" "), part(ch->http_prefix), part(http->path), part(" HTTP/1.1\r\nHost: "),
        part(ch->http_host), part("\r\nAccept: application/json\r\n"),
        part(body ? "Content-Type: application/json\r\nContent-Length: " : ""), part(length),
        part(body ? "\r\n" : ""), part(auth ? "Authorization: Bearer " : ""), part(auth ? ch->api_key : ""),
        part(auth ? "\r\n" : ""), part(key != NULL ? "Idempotency-Key: " : ""), part(key != NULL ? key : ""),
        part(key != NULL ? "\r\n" : ""), part("\r\n")};
    size_t head = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) head += parts[i].bytes;
    call->out_bytes = head + call->request.body_bytes;
    call->out = malloc(call->out_bytes + 1);
    if (call->out == NULL) return false;
    size_t at = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        memcpy(call->out + at, parts[i].text, parts[i].bytes);
        at += parts[i].bytes;
    }
    if (call->request.body_bytes > 0) memcpy(call->out + head, call->request.body, call->request.body_bytes);
    call->out[call->out_bytes] = '\0';
    call->out_sent = 0;
    return true;
}

int gw_http_send(gw_thread_t *t, gw_call_t *call, const gw_channel_cfg_t *ch, const gw_http_call_t *http,
                 const char *key) {
    gw_pool_t *pool = pool_find(t, &ch->http_addr);
    if (pool == NULL) return 0;
    if (!request_text(call, ch, http, key)) return -1;
    pool->open_max = ch->max_connections;
    call->http_own = true;
    call->connect_timeout_ms = ch->connect_timeout_ms;
    call->total_deadline_ns = pc_mono_ns() + (uint64_t)ch->timeout_ms * 1000000u;
    call->connect_deadline_ns = call->total_deadline_ns;
    call->deadline_ns = call->total_deadline_ns;
    deadline_insert(t, call); /* a waiting call times out too */
    call_connect(t, pool, call);
    return 1;
}

/* Calls past their deadline: the connection goes (an answer may still come on it). */
void gw_http_deadlines_run(gw_thread_t *t) {
    uint64_t now_ns = pc_mono_ns();
    while (t->deadlines_head != NULL && t->deadlines_head->deadline_ns <= now_ns) {
        gw_call_t *call = t->deadlines_head;
        if (call->conn != NULL) {
            conn_fail(t, call->conn, CURLE_OPERATION_TIMEDOUT);
        } else {
            if (call->waiting_pool != NULL) waiting_remove(call->waiting_pool, call);
            call_finish(t, call, CURLE_OPERATION_TIMEDOUT, 0);
        }
    }
}

void gw_http_call_clear(gw_call_t *call) {
    PC_ASSERT(call->conn == NULL && call->waiting_pool == NULL && !call->deadline_on);
    if (call->out != NULL) sodium_memzero(call->out, call->out_bytes); /* the API key, a card number */
    free(call->out);
    call->out = NULL;
    call->out_bytes = call->out_sent = 0;
}

void gw_http_close_all(gw_thread_t *t) {
    for (uint32_t i = 0; i < t->pool_count; i++) {
        gw_pool_t *pool = &t->pools[i];
        while (pool->idle != NULL) {
            gw_conn_t *conn = pool->idle;
            pool->idle = conn->next;
            conn_close(t, conn);
        }
        PC_ASSERT(pool->open == 0 && pool->waiting_head == NULL);
    }
    free(t->fd_conn);
    t->fd_conn = NULL;
    t->fd_conn_size = 0;
}
