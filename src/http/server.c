/* http/server.c: workers, connections, reading, answering, deadlines (http.h gives
 * the threading rules, README.md the design).
 *
 * Each connection is registered once, edge-triggered, for EPOLLIN | EPOLLOUT |
 * EPOLLRDHUP: no epoll_ctl per request. A read that returns less than it asked for
 * has emptied the socket (the next byte raises a new edge), so a request costs one
 * recv, one send and its share of an epoll_wait; once EPOLLRDHUP has come no edge
 * follows, so reading then goes on to the end of stream.
 *
 * Locking: conn->lock guards the state, the output queue, the deadline, the socket's
 * use for writing and the reference count. The input buffer and the parse belong to
 * the worker, except while a request is held: then the worker leaves them alone and
 * the request's reader (any thread) may read them; the hand-over is the state change
 * under the lock. Lock order: conn->lock, then worker->queue_lock. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "http/http_internal.h"

#define HTTP_EVENTS_MAX 64
#define HTTP_ACCEPT_BATCH_MAX 32
#define HTTP_SCAN_PERIOD_MS 50
#define HTTP_OUT_PENDING_BYTES_MAX (64 * 1024) /* stop parsing while the peer is this far behind */
#define HTTP_LINGER_MS_MAX 2000                 /* reading out a refused request before closing */
#define HTTP_ANSWER_HEAD_BYTES 512
/* In held_count: the stop gave up waiting for the held requests; the last of their
 * answers frees the server (the word's one atomic step decides who is last). */
#define HTTP_HELD_ORPHANED (UINT64_C(1) << 63)

typedef enum {
    CONN_READING, /* parsing requests; the worker's */
    CONN_HELD,    /* a request is with the handler or held by another thread */
    CONN_LINGER,  /* an error answer is out: read and drop until EOF, then close */
    CONN_CLOSED,
} conn_state_t;

typedef struct http_worker http_worker_t;
typedef struct http_conn http_conn_t;

struct http_request {
    http_conn_t *conn;
    void *context; /* the caller's (http_request_set_context) */
};

struct http_conn {
    pthread_mutex_t lock;
    http_worker_t *worker;
    http_request_t request;
    /* under lock */
    int fd;
    conn_state_t state;
    uint32_t refs;            /* the worker's, a held request's, a queued hand-back's */
    bool read_pending;        /* input arrived or waits while parsing was paused */
    bool close_after_write;
    bool queued;
    uint64_t deadline_ns;     /* 0: none */
    char *out;
    size_t out_bytes, out_sent, out_capacity;
    http_conn_t *queue_next;
    /* the worker's (and the held request reader's, see above) */
    char *in;
    size_t in_bytes, in_capacity;
    size_t scan_from;
    bool head_done;
    bool consume_pending;     /* the answered request's bytes are still at the front */
    bool continue_sent;
    bool request_started;     /* a byte of the next request is in: its deadline runs */
    bool worker_closed;
    bool in_handler;          /* the handler runs for it now: its worker goes on after */
    bool head_accepted;       /* the head hook let the request through; not yet handed over */
    bool expired;             /* a deadline closes it */
    bool peer_closed;         /* EPOLLRDHUP seen: read on to the end of stream, no edge will come */
    unsigned refused_status;  /* the engine refused the request the head hook let through */
    http_head_t head;
    http_chunked_t chunked;   /* a chunked body's decoding (head.chunked) */
    http_conn_t *prev, *next;
    struct sockaddr_storage addr;
    socklen_t addr_bytes;
    bool admitted;
};

struct http_worker {
    http_server_t *server;
    int epoll_fd;
    int wake_fd;
    pthread_t thread;
    http_conn_t *conns;
    http_conn_t *closed; /* closed in this pass; released after it */
    pthread_mutex_t queue_lock;
    http_conn_t *queue_head;
    uint64_t scan_next_ns;
    uint64_t accept_resume_ns; /* 0, or: the listener is out of this worker's set until then */
};

struct http_server {
    http_config_t config;
    http_limits_t limits;
    uint32_t worker_count;
    http_worker_t workers[HTTP_THREADS_MAX];
    atomic_bool stopping;
    atomic_uint_fast64_t held_count; /* and HTTP_HELD_ORPHANED once the stop stopped waiting */
    atomic_uint_fast64_t stat_accepted, stat_refused, stat_open, stat_requests, stat_bad, stat_timeouts,
        stat_other_thread, stat_wakeups, stat_accept_failures;
};

static __thread http_worker_t *http_current_worker;
static char http_wake_marker;

/* ---- reference counting and closing ---- */

static void conn_free(http_conn_t *conn) {
    pthread_mutex_destroy(&conn->lock);
    free(conn->head.headers);
    free(conn->in);
    free(conn->out);
    free(conn);
}

static void conn_release(http_conn_t *conn) {
    pthread_mutex_lock(&conn->lock);
    uint32_t refs = --conn->refs;
    pthread_mutex_unlock(&conn->lock);
    if (refs == 0) conn_free(conn);
}

static void conn_unlink(http_worker_t *worker, http_conn_t *conn) {
    if (conn->prev != NULL) conn->prev->next = conn->next;
    else worker->conns = conn->next;
    if (conn->next != NULL) conn->next->prev = conn->prev;
}

/* The worker's close: the descriptor goes now, the memory after this pass's events. */
static void conn_close(http_conn_t *conn) {
    http_worker_t *worker = conn->worker;
    http_server_t *server = worker->server;
    if (conn->worker_closed) return;
    conn->worker_closed = true;
    pthread_mutex_lock(&conn->lock);
    conn->state = CONN_CLOSED;
    close(conn->fd);
    conn->fd = -1;
    pthread_mutex_unlock(&conn->lock);
    conn_unlink(worker, conn);
    conn->next = worker->closed;
    worker->closed = conn;
    atomic_fetch_sub(&server->stat_open, 1);
    if (conn->head_accepted) {
        conn->head_accepted = false;
        if (server->config.abandoned != NULL) {
            unsigned status = conn->expired ? 408 : conn->refused_status;
            server->config.abandoned(server->config.handler_ctx, &conn->request, status);
        }
    }
    if (conn->admitted && server->config.closed != NULL) {
        server->config.closed(server->config.admit_ctx, (struct sockaddr *)&conn->addr, conn->addr_bytes);
    }
}

static void worker_release_closed(http_worker_t *worker) {
    while (worker->closed != NULL) {
        http_conn_t *conn = worker->closed;
        worker->closed = conn->next;
        conn_release(conn);
    }
}

/* ---- output (under conn->lock) ---- */

static bool out_append(http_conn_t *conn, const void *bytes, size_t byte_count) {
    if (byte_count == 0) return true;
    if (conn->out_sent > 0 && conn->out_sent == conn->out_bytes) conn->out_sent = conn->out_bytes = 0;
    if (conn->out_bytes + byte_count > conn->out_capacity) {
        size_t capacity = conn->out_capacity ? conn->out_capacity : 4096;
        while (capacity < conn->out_bytes + byte_count) capacity *= 2;
        char *grown = realloc(conn->out, capacity);
        if (grown == NULL) return false;
        conn->out = grown;
        conn->out_capacity = capacity;
    }
    memcpy(conn->out + conn->out_bytes, bytes, byte_count);
    conn->out_bytes += byte_count;
    return true;
}

static size_t out_pending(const http_conn_t *conn) {
    return conn->out_bytes - conn->out_sent;
}

/* Sends what is queued; false on a dead peer. */
static bool out_flush(http_conn_t *conn) {
    while (out_pending(conn) > 0) {
        ssize_t sent = send(conn->fd, conn->out + conn->out_sent, out_pending(conn), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) {
            conn->out_sent += (size_t)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR) continue;
        return sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    conn->out_sent = conn->out_bytes = 0;
    return true;
}

/* Writes head and body straight to the socket when nothing is queued before them; the
 * rest is queued. False on a dead peer or no memory. */
static bool out_write(http_conn_t *conn, const char *head, size_t head_bytes, const char *body, size_t body_bytes) {
    size_t sent_bytes = 0;
    if (body_bytes == 0) body = "";
    if (out_pending(conn) == 0) {
        struct iovec parts[2] = {{(void *)head, head_bytes}, {(void *)body, body_bytes}};
        struct msghdr message = {.msg_iov = parts, .msg_iovlen = body_bytes > 0 ? 2 : 1};
        ssize_t sent;
        do sent = sendmsg(conn->fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (sent < 0 && errno == EINTR);
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
        sent_bytes = sent > 0 ? (size_t)sent : 0;
    }
    if (sent_bytes < head_bytes) {
        if (!out_append(conn, head + sent_bytes, head_bytes - sent_bytes)) return false;
        sent_bytes = head_bytes;
    }
    return out_append(conn, body + (sent_bytes - head_bytes), body_bytes - (sent_bytes - head_bytes));
}

static uint64_t deadline_after_ms(uint32_t ms) {
    return pc_mono_ns() + (uint64_t)ms * 1000000u;
}

/* ---- hand-back to the worker ---- */

/* Under conn->lock: the worker has work on this connection (another thread answered). */
static void conn_hand_back(http_conn_t *conn) {
    if (conn->queued) return;
    http_worker_t *worker = conn->worker;
    conn->queued = true;
    conn->refs++;
    pthread_mutex_lock(&worker->queue_lock);
    conn->queue_next = worker->queue_head;
    worker->queue_head = conn;
    pthread_mutex_unlock(&worker->queue_lock);
    uint64_t one = 1;
    ssize_t written = write(worker->wake_fd, &one, sizeof one);
    (void)written; /* a full counter already wakes the worker */
    atomic_fetch_add(&worker->server->stat_wakeups, 1);
}

/* ---- answers ---- */

const char *http_status_reason(unsigned status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static char *text_put(char *at, const char *text, size_t text_bytes) {
    memcpy(at, text, text_bytes);
    return at + text_bytes;
}

static size_t answer_head_bytes_max(const char *content_type, const char *headers) {
    return 160 + (content_type ? strlen(content_type) : 0) + (headers ? strlen(headers) : 0);
}

/* The status line and headers, built by hand: snprintf was a third of a request's
 * instructions. 'out' holds answer_head_bytes_max(). */
static size_t answer_head(char *out, const http_head_t *head, unsigned status, const char *content_type,
                          const char *headers, size_t body_bytes) {
    static const char close_line[] = "Connection: close\r\n", keep_line[] = "Connection: keep-alive\r\n";
    const char *reason = http_status_reason(status);
    char digits[PC_INT_TEXT_SIZE];
    char *at = text_put(out, "HTTP/1.1 ", 9);
    at += pc_u64_text(at, status % 1000);
    *at++ = ' ';
    at = text_put(at, reason, strlen(reason));
    at = text_put(at, "\r\nContent-Length: ", 18);
    at = text_put(at, digits, pc_u64_text(digits, body_bytes));
    at = text_put(at, "\r\n", 2);
    if (content_type != NULL) {
        at = text_put(at, "Content-Type: ", 14);
        at = text_put(at, content_type, strlen(content_type));
        at = text_put(at, "\r\n", 2);
    }
    if (headers != NULL) at = text_put(at, headers, strlen(headers));
    if (!head->keep_alive) at = text_put(at, close_line, sizeof close_line - 1);
    else if (head->version == 10) at = text_put(at, keep_line, sizeof keep_line - 1);
    at = text_put(at, "\r\n", 2);
    return (size_t)(at - out);
}

/* Under conn->lock, state HELD: writes the answer and moves the state on. */
static bool answer_locked(http_conn_t *conn, unsigned status, const char *content_type, const char *headers,
                          const void *body, size_t body_bytes) {
    const http_head_t *head = &conn->head;
    char head_local[HTTP_ANSWER_HEAD_BYTES];
    size_t head_bytes_max = answer_head_bytes_max(content_type, headers);
    char *head_text = head_bytes_max <= sizeof head_local ? head_local : malloc(head_bytes_max);
    size_t head_bytes = head_text != NULL ? answer_head(head_text, head, status, content_type, headers, body_bytes) : 0;
    if (head->is_head_method) body_bytes = 0;
    bool written = head_text != NULL && out_write(conn, head_text, head_bytes, body, body_bytes);
    if (head_text != head_local) free(head_text);
    conn->consume_pending = true;
    conn->state = CONN_READING;
    conn->close_after_write = !written || !head->keep_alive;
    uint32_t wait_ms = out_pending(conn) > 0 ? conn->worker->server->config.write_timeout_ms
                                              : conn->worker->server->config.idle_timeout_ms;
    conn->deadline_ns = deadline_after_ms(wait_ms);
    return written;
}

/* True when called from inside the handler of this request's connection: its worker
 * goes on with the connection on return, so nothing is handed back. in_handler is read
 * only on the worker's own thread. */
static bool request_inline(const http_conn_t *conn) {
    return http_current_worker == conn->worker && conn->in_handler;
}

/* Locks a held request's connection: true while it is still open. */
static bool request_lock(http_request_t *request) {
    http_conn_t *conn = request->conn;
    pthread_mutex_lock(&conn->lock);
    PC_ASSERT(conn->state == CONN_HELD || conn->state == CONN_CLOSED);
    return conn->state == CONN_HELD;
}

/* Drops the request's reference and unlocks; the server's last touch of it. */
static void request_release_unlock(http_request_t *request) {
    http_conn_t *conn = request->conn;
    http_server_t *server = conn->worker->server;
    uint32_t refs = --conn->refs;
    pthread_mutex_unlock(&conn->lock);
    if (refs == 0) conn_free(conn);
    uint64_t held_before = atomic_fetch_sub(&server->held_count, 1);
    if (held_before == (HTTP_HELD_ORPHANED | 1)) free(server); /* answered after the stop returned */
}

bool http_answer(http_request_t *request, unsigned status, const char *content_type, const char *headers,
                 const void *body, size_t body_bytes) {
    http_conn_t *conn = request->conn;
    bool inline_answer = request_inline(conn);
    bool alive = request_lock(request);
    if (alive) {
        bool written = answer_locked(conn, status, content_type, headers, body, body_bytes);
        bool more_input = conn->read_pending || conn->in_bytes > conn->head.head_bytes + conn->head.body_bytes;
        bool must_close = conn->close_after_write && out_pending(conn) == 0;
        if (!inline_answer && (more_input || must_close || !written)) conn_hand_back(conn);
        if (!inline_answer) atomic_fetch_add(&conn->worker->server->stat_other_thread, 1);
    }
    request_release_unlock(request);
    return alive;
}

bool http_close(http_request_t *request) {
    http_conn_t *conn = request->conn;
    bool inline_answer = request_inline(conn);
    bool alive = request_lock(request);
    if (alive) {
        (void)shutdown(conn->fd, SHUT_RDWR); /* the worker closes it; nothing more is read or written */
        conn->state = CONN_READING;
        conn->consume_pending = true;
        conn->close_after_write = true;
        conn->out_sent = conn->out_bytes = 0;
        if (!inline_answer) conn_hand_back(conn);
    }
    request_release_unlock(request);
    return alive;
}

static void conn_linger_read(http_conn_t *conn);

const char *http_refusal_code(unsigned status) {
    return status == 411 ? "length_required" : status == 413 ? "body_too_large"
         : status == 414 ? "request_line_too_long" : status == 417 ? "expectation_failed"
         : status == 431 ? "headers_too_large" : status == 501 ? "transfer_encoding_unsupported"
         : status == 505 ? "http_version_unsupported" : "malformed_request";
}

/* An answer of the engine's own (a refused request), then read out and close. */
static void conn_refuse(http_conn_t *conn, unsigned status) {
    http_server_t *server = conn->worker->server;
    const char *code = http_refusal_code(status);
    if (conn->head_accepted) conn->refused_status = status; /* told to the abandoned hook */
    char body[160];
    int body_bytes = snprintf(body, sizeof body, "{\"error\":{\"type\":\"invalid_request\",\"code\":\"%s\"}}", code);
    char head[HTTP_ANSWER_HEAD_BYTES];
    int head_bytes = snprintf(head, sizeof head,
                              "HTTP/1.1 %u %s\r\nContent-Length: %d\r\nContent-Type: application/json\r\n"
                              "Connection: close\r\n\r\n", status, http_status_reason(status), body_bytes);
    atomic_fetch_add(&server->stat_bad, 1);
    pthread_mutex_lock(&conn->lock);
    bool written = out_write(conn, head, (size_t)head_bytes, body, (size_t)body_bytes);
    conn->state = CONN_LINGER;
    conn->close_after_write = true;
    uint32_t linger_ms = server->config.write_timeout_ms < HTTP_LINGER_MS_MAX ? server->config.write_timeout_ms
                                                                            : HTTP_LINGER_MS_MAX;
    conn->deadline_ns = deadline_after_ms(linger_ms);
    if (written && out_pending(conn) == 0) (void)shutdown(conn->fd, SHUT_WR);
    pthread_mutex_unlock(&conn->lock);
    if (!written) conn_close(conn);
    else conn_linger_read(conn);
}

/* ---- input ---- */

static bool input_room(http_conn_t *conn, size_t need_bytes) {
    if (need_bytes <= conn->in_capacity) return true;
    char *grown = realloc(conn->in, need_bytes);
    if (grown == NULL) return false;
    conn->in = grown;
    conn->in_capacity = need_bytes;
    return true;
}

/* Drops the answered request's bytes; a buffer grown for a large body shrinks back. */
static void input_consume(http_conn_t *conn) {
    size_t used = conn->head.head_bytes + conn->head.body_bytes;
    memmove(conn->in, conn->in + used, conn->in_bytes - used);
    conn->in_bytes -= used;
    conn->consume_pending = false;
    conn->head_done = false;
    conn->continue_sent = false;
    conn->request_started = false;
    conn->scan_from = 0;
    size_t base = conn->worker->server->limits.header_bytes_max;
    if (conn->in_capacity > base && conn->in_bytes <= base) {
        char *shrunk = realloc(conn->in, base);
        if (shrunk != NULL) {
            conn->in = shrunk;
            conn->in_capacity = base;
        }
    }
}

static void request_dispatch(http_conn_t *conn) {
    http_server_t *server = conn->worker->server;
    pthread_mutex_lock(&conn->lock);
    conn->state = CONN_HELD;
    conn->deadline_ns = 0;
    conn->refs++;
    pthread_mutex_unlock(&conn->lock);
    atomic_fetch_add(&server->held_count, 1);
    atomic_fetch_add(&server->stat_requests, 1);
    conn->request.conn = conn;
    conn->head_accepted = false;
    conn->in_handler = true;
    server->config.handler(server->config.handler_ctx, &conn->request);
    conn->in_handler = false;
}

/* The head and body hooks (config.head, config.body): the request is held while one
 * runs, so that it may answer with http_answer(). An answer before the whole body
 * makes the connection close after it (the unread body is read out and dropped, as
 * after a refusal). 'body_bytes' is the body hook's argument, UINT64_MAX for the head
 * hook. False when the hook answered and the connection takes no more input. */
static bool request_hook(http_conn_t *conn, uint64_t body_bytes) {
    http_server_t *server = conn->worker->server;
    bool body_unread = conn->head.body_bytes > 0 || conn->head.chunked;
    bool keep_alive = conn->head.keep_alive;
    if (body_unread) conn->head.keep_alive = false; /* an answer now says Connection: close */
    pthread_mutex_lock(&conn->lock);
    conn->state = CONN_HELD;
    conn->refs++;
    pthread_mutex_unlock(&conn->lock);
    atomic_fetch_add(&server->held_count, 1);
    conn->request.conn = conn;
    conn->in_handler = true;
    bool go_on = body_bytes == UINT64_MAX ? server->config.head(server->config.handler_ctx, &conn->request)
                                          : server->config.body(server->config.handler_ctx, &conn->request, body_bytes);
    conn->in_handler = false;
    pthread_mutex_lock(&conn->lock);
    PC_ASSERT(go_on == (conn->state == CONN_HELD)); /* false: answered inside the hook */
    conn->head_accepted = go_on;
    if (go_on) {
        conn->state = CONN_READING;
        conn->refs--;
        conn->head.keep_alive = keep_alive;
    } else if (body_unread) {
        conn->state = CONN_LINGER;
        conn->consume_pending = false;
        uint32_t linger_ms = server->config.write_timeout_ms < HTTP_LINGER_MS_MAX ? server->config.write_timeout_ms
                                                                                : HTTP_LINGER_MS_MAX;
        conn->deadline_ns = deadline_after_ms(linger_ms);
        if (out_pending(conn) == 0) (void)shutdown(conn->fd, SHUT_WR);
    }
    pthread_mutex_unlock(&conn->lock);
    if (go_on) atomic_fetch_sub(&server->held_count, 1);
    if (go_on || !body_unread) return true;
    conn_linger_read(conn);
    return false;
}

/* Sends "100 Continue" once when the client waits for it before its body. */
static void request_continue(http_conn_t *conn) {
    if (!conn->head.expect_continue || conn->continue_sent) return;
    conn->continue_sent = true;
    static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    pthread_mutex_lock(&conn->lock);
    bool written = out_write(conn, continue_line, sizeof continue_line - 1, NULL, 0);
    pthread_mutex_unlock(&conn->lock);
    if (!written) conn_close(conn);
}

#define HTTP_CHUNKED_STOPPED 2u /* the body hook answered: the connection takes no more */

/* Decodes what arrived of a chunked body; each chunk announced goes to the body hook
 * first. HTTP_PARSE_MORE, 200 (whole: the request is head and decoded body, what
 * follows is the next request), HTTP_CHUNKED_STOPPED, or a status to refuse with. */
static unsigned input_chunked(http_conn_t *conn) {
    http_server_t *server = conn->worker->server;
    uint32_t head_bytes = conn->head.head_bytes;
    /* trailers share the head's room; the blank line that ends them always fits */
    http_chunked_limits_t limits = {.body_bytes_max = server->limits.body_bytes_max,
                                    .trailer_bytes_max = server->limits.header_bytes_max - head_bytes + 2};
    for (;;) {
        size_t byte_count = conn->in_bytes - head_bytes;
        unsigned status = http_chunked_decode(&conn->chunked, conn->in + head_bytes, &byte_count, &limits);
        conn->in_bytes = head_bytes + byte_count;
        if (status == 200) conn->head.body_bytes = conn->chunked.body_bytes;
        if (status != HTTP_CHUNKED_ANNOUNCED) return status;
        uint64_t announced_bytes = conn->chunked.body_bytes + conn->chunked.data_left_bytes;
        if (server->config.body != NULL && !request_hook(conn, announced_bytes)) return HTTP_CHUNKED_STOPPED;
    }
}

/* Room to read more of a body into; a chunked body's buffer grows by doubling, up to
 * what its announced chunks and one head's worth of lines (trailers, a chunk-size
 * line, the next request's start) need. */
static bool input_room_chunked(http_conn_t *conn) {
    if (conn->in_bytes < conn->in_capacity) return true;
    const http_limits_t *limits = &conn->worker->server->limits;
    uint64_t need_bytes = (uint64_t)conn->head.head_bytes + conn->chunked.body_bytes +
                          conn->chunked.data_left_bytes + limits->header_bytes_max;
    uint64_t grown_bytes = (uint64_t)conn->in_capacity * 2 < need_bytes ? (uint64_t)conn->in_capacity * 2 : need_bytes;
    return grown_bytes > conn->in_capacity && grown_bytes <= SIZE_MAX && input_room(conn, (size_t)grown_bytes);
}

/* The request's body is not whole yet: 100 Continue if asked, room to read into. */
static bool input_more(http_conn_t *conn) {
    if (conn->head.chunked && !input_room_chunked(conn)) {
        conn_close(conn);
        return false;
    }
    request_continue(conn);
    return !conn->worker_closed;
}

/* Parses and dispatches what is buffered; returns false when the connection stopped
 * taking input (held, refused, closed or too far behind on output). 'socket_drained':
 * the last read emptied the socket, so a held request needs no read when answered
 * (a new byte raises a new edge, which marks read_pending). */
static bool input_process(http_conn_t *conn, bool socket_drained) {
    http_server_t *server = conn->worker->server;
    for (;;) {
        pthread_mutex_lock(&conn->lock);
        conn_state_t state = conn->state;
        bool behind = out_pending(conn) > HTTP_OUT_PENDING_BYTES_MAX || conn->close_after_write;
        bool close_now = state == CONN_READING && conn->close_after_write && out_pending(conn) == 0;
        if (state == CONN_READING && conn->consume_pending) input_consume(conn);
        if (behind || (state == CONN_HELD && !socket_drained)) {
            conn->read_pending = state != CONN_CLOSED;
        } else if (conn->in_bytes > 0 && !conn->request_started) {
            conn->request_started = true;
            conn->deadline_ns = deadline_after_ms(server->config.request_timeout_ms);
        }
        pthread_mutex_unlock(&conn->lock);
        if (close_now) conn_close(conn);
        if (state != CONN_READING || behind) return false;
        if (!conn->head_done) {
            unsigned status = http_parse_head(conn->in, conn->in_bytes, &conn->scan_from, &server->limits, &conn->head);
            if (status == HTTP_PARSE_MORE) return true;
            if (status != 200) {
                conn_refuse(conn, status);
                return false;
            }
            conn->head_done = true;
            conn->request.context = NULL;
            memset(&conn->chunked, 0, sizeof conn->chunked);
            if (server->config.head != NULL && !request_hook(conn, UINT64_MAX)) return false;
            if (conn->consume_pending) continue; /* the hook answered a request without a body */
        }
        if (conn->head.chunked && conn->chunked.phase != HTTP_CHUNK_DONE) {
            unsigned status = input_chunked(conn);
            if (status == HTTP_PARSE_MORE) return input_more(conn);
            if (status != 200) {
                if (status != HTTP_CHUNKED_STOPPED) conn_refuse(conn, status);
                return false;
            }
        }
        size_t whole_bytes = conn->head.head_bytes + conn->head.body_bytes;
        if (conn->in_bytes < whole_bytes) {
            if (!input_room(conn, whole_bytes)) {
                conn_close(conn);
                return false;
            }
            return input_more(conn);
        }
        request_dispatch(conn);
    }
}

/* Reads until the socket is empty or the connection stops taking input. */
static void conn_readable(http_conn_t *conn) {
    for (;;) {
        if (!input_process(conn, false)) return;
        size_t want = conn->in_capacity - conn->in_bytes;
        if (want == 0) { /* the head parser refuses a full buffer; a body has room made */
            conn_refuse(conn, 431);
            return;
        }
        ssize_t got = recv(conn->fd, conn->in + conn->in_bytes, want, 0);
        if (got > 0) {
            conn->in_bytes += (size_t)got;
            if ((size_t)got < want && !conn->peer_closed) {
                (void)input_process(conn, true);
                return;
            }
            continue;
        }
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_close(conn); /* end of stream or error */
        return;
    }
}

/* LINGER: what the client still sends after a refusal is dropped until it closes. */
static void conn_linger_read(http_conn_t *conn) {
    char drop[4096];
    for (;;) {
        ssize_t got = recv(conn->fd, drop, sizeof drop, 0);
        if (got > 0) continue;
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_close(conn);
        return;
    }
}

static void conn_writable(http_conn_t *conn) {
    http_server_t *server = conn->worker->server;
    pthread_mutex_lock(&conn->lock);
    bool had_pending = out_pending(conn) > 0;
    bool alive = out_flush(conn);
    bool done = out_pending(conn) == 0;
    conn_state_t state = conn->state;
    bool close_now = !alive || (done && conn->close_after_write && state == CONN_READING);
    if (alive && done && state == CONN_LINGER) (void)shutdown(conn->fd, SHUT_WR);
    if (had_pending && alive && done && state == CONN_READING && !close_now) {
        conn->deadline_ns = deadline_after_ms(server->config.idle_timeout_ms);
    }
    bool resume = alive && conn->read_pending && state == CONN_READING && out_pending(conn) <= HTTP_OUT_PENDING_BYTES_MAX;
    if (resume) conn->read_pending = false;
    pthread_mutex_unlock(&conn->lock);
    if (close_now) conn_close(conn);
    else if (resume) conn_readable(conn);
}

static void conn_event(http_conn_t *conn, uint32_t events) {
    if (conn->worker_closed) return;
    pthread_mutex_lock(&conn->lock);
    conn_state_t state = conn->state;
    bool pending = out_pending(conn) > 0;
    if (state == CONN_HELD && (events & (EPOLLIN | EPOLLRDHUP))) conn->read_pending = true;
    pthread_mutex_unlock(&conn->lock);
    if (events & EPOLLERR) {
        conn_close(conn);
        return;
    }
    if (events & EPOLLRDHUP) conn->peer_closed = true;
    if (pending && (events & EPOLLOUT)) conn_writable(conn);
    if (conn->worker_closed || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) return;
    if (state == CONN_LINGER) conn_linger_read(conn);
    else if (state == CONN_READING) conn_readable(conn);
    else if (state == CONN_HELD && (events & EPOLLHUP)) conn_close(conn); /* both ways gone: the answer goes nowhere */
}

/* The whole hand-back queue, emptied. */
static http_conn_t *worker_take_queue(http_worker_t *worker) {
    pthread_mutex_lock(&worker->queue_lock);
    http_conn_t *head = worker->queue_head;
    worker->queue_head = NULL;
    pthread_mutex_unlock(&worker->queue_lock);
    return head;
}

/* The hand-back queue: connections another thread answered. */
static void worker_drain_queue(http_worker_t *worker) {
    uint64_t count;
    ssize_t got = read(worker->wake_fd, &count, sizeof count);
    (void)got;
    http_conn_t *conn = worker_take_queue(worker);
    while (conn != NULL) {
        http_conn_t *next = conn->queue_next;
        pthread_mutex_lock(&conn->lock);
        conn->queued = false;
        bool pending_read = conn->read_pending;
        conn->read_pending = false;
        pthread_mutex_unlock(&conn->lock);
        if (!conn->worker_closed) conn_writable(conn);
        if (!conn->worker_closed && pending_read) conn_readable(conn);
        else if (!conn->worker_closed) (void)input_process(conn, true);
        conn_release(conn);
        conn = next;
    }
}

/* ---- accepting ---- */

static void worker_accept_one(http_worker_t *worker, int fd, const struct sockaddr_storage *addr, socklen_t addr_bytes) {
    http_server_t *server = worker->server;
    const http_config_t *config = &server->config;
    uint64_t open = atomic_fetch_add(&server->stat_open, 1);
    bool admitted = open < config->connections_max &&
                    (config->admit == NULL || config->admit(config->admit_ctx, (const struct sockaddr *)addr, addr_bytes));
    http_conn_t *conn = admitted ? calloc(1, sizeof *conn) : NULL;
    if (conn != NULL) conn->in = malloc(server->limits.header_bytes_max);
    if (conn == NULL || conn->in == NULL) {
        if (admitted && config->closed != NULL) config->closed(config->admit_ctx, (const struct sockaddr *)addr, addr_bytes);
        if (conn != NULL) free(conn);
        atomic_fetch_sub(&server->stat_open, 1);
        atomic_fetch_add(&server->stat_refused, 1);
        close(fd);
        return;
    }
    pthread_mutex_init(&conn->lock, NULL);
    conn->worker = worker;
    conn->fd = fd;
    conn->refs = 1;
    conn->in_capacity = server->limits.header_bytes_max;
    conn->head.headers = calloc(server->limits.header_count_max, sizeof *conn->head.headers);
    conn->addr = *addr;
    conn->addr_bytes = addr_bytes;
    conn->admitted = true;
    conn->deadline_ns = deadline_after_ms(config->idle_timeout_ms);
    conn->next = worker->conns;
    if (worker->conns != NULL) worker->conns->prev = conn;
    worker->conns = conn;
    atomic_fetch_add(&server->stat_accepted, 1);
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = conn};
    if (conn->head.headers == NULL || epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) conn_close(conn);
}

/* Out of descriptors (or a listener shut down): the listener, level-triggered, would
 * wake this worker again at once and spin. It leaves the worker's set for HTTP_ACCEPT_PAUSE_MS (closing
 * connections free descriptors meanwhile; the backlog waits). */
static void worker_accept_pause(http_worker_t *worker) {
    atomic_fetch_add(&worker->server->stat_accept_failures, 1);
    if (worker->accept_resume_ns != 0) return;
    (void)epoll_ctl(worker->epoll_fd, EPOLL_CTL_DEL, worker->server->config.listen_fd, NULL);
    worker->accept_resume_ns = deadline_after_ms(HTTP_ACCEPT_PAUSE_MS);
}

static void worker_accept(http_worker_t *worker) {
    for (int taken = 0; taken < HTTP_ACCEPT_BATCH_MAX; taken++) {
        struct sockaddr_storage addr;
        socklen_t addr_bytes = sizeof addr;
        int fd = accept4(worker->server->config.listen_fd, (struct sockaddr *)&addr, &addr_bytes,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /* EAGAIN: woken again by the next connection; a connection that failed
             * before it was taken: the next one. Anything else (out of descriptors, a
             * listener shut down while stopping) would wake the worker again at once. */
            bool next_one = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED ||
                            errno == EPROTO;
            if (!next_one) worker_accept_pause(worker);
            return;
        }
        worker_accept_one(worker, fd, &addr, addr_bytes);
    }
}

/* Back in the worker's set once the pause is over (level-triggered: a waiting
 * connection wakes it at once). */
static void worker_accept_resume(http_worker_t *worker, uint64_t now_ns) {
    if (worker->accept_resume_ns == 0 || now_ns < worker->accept_resume_ns) return;
    worker->accept_resume_ns = 0;
    struct epoll_event listen_event = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    (void)epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, worker->server->config.listen_fd, &listen_event);
}

/* ---- deadlines ---- */

static void worker_scan_deadlines(http_worker_t *worker, uint64_t now_ns) {
    http_conn_t *conn = worker->conns;
    while (conn != NULL) {
        http_conn_t *next = conn->next;
        pthread_mutex_lock(&conn->lock);
        bool expired = conn->deadline_ns != 0 && now_ns >= conn->deadline_ns;
        pthread_mutex_unlock(&conn->lock);
        if (expired) {
            atomic_fetch_add(&worker->server->stat_timeouts, 1);
            conn->expired = true;
            conn_close(conn);
        }
        conn = next;
    }
}

static void *worker_main(void *arg) {
    http_worker_t *worker = arg;
    http_server_t *server = worker->server;
    http_current_worker = worker;
    pthread_setname_np(pthread_self(), "http-worker");
    struct epoll_event events[HTTP_EVENTS_MAX];
    while (!atomic_load(&server->stopping)) {
        int ready = epoll_wait(worker->epoll_fd, events, HTTP_EVENTS_MAX, HTTP_SCAN_PERIOD_MS);
        for (int index = 0; index < ready; index++) {
            void *ptr = events[index].data.ptr;
            if (ptr == NULL) worker_accept(worker);
            else if (ptr == &http_wake_marker) worker_drain_queue(worker);
            else conn_event(ptr, events[index].events);
        }
        if (server->config.batch_end != NULL) server->config.batch_end(server->config.handler_ctx);
        uint64_t now_ns = pc_mono_ns();
        worker_accept_resume(worker, now_ns);
        if (now_ns >= worker->scan_next_ns) {
            worker_scan_deadlines(worker, now_ns);
            worker->scan_next_ns = now_ns + HTTP_SCAN_PERIOD_MS * 1000000ull;
        }
        worker_release_closed(worker);
    }
    return NULL;
}

/* ---- the server ---- */

void http_config_default(http_config_t *config) {
    memset(config, 0, sizeof *config);
    config->listen_fd = -1;
    config->threads = 2;
    config->connections_max = HTTP_CONNECTIONS_DEFAULT;
    config->header_bytes_max = HTTP_HEADER_BYTES_DEFAULT;
    config->request_line_bytes_max = HTTP_REQUEST_LINE_BYTES_DEFAULT;
    config->header_count_max = HTTP_HEADER_COUNT_DEFAULT;
    config->body_bytes_max = HTTP_BODY_BYTES_DEFAULT;
    config->idle_timeout_ms = HTTP_IDLE_TIMEOUT_MS_DEFAULT;
    config->request_timeout_ms = HTTP_REQUEST_TIMEOUT_MS_DEFAULT;
    config->write_timeout_ms = HTTP_WRITE_TIMEOUT_MS_DEFAULT;
    config->stop_wait_ms = HTTP_STOP_WAIT_MS_DEFAULT;
}

static void config_fill_defaults(http_config_t *config) {
    http_config_t defaults;
    http_config_default(&defaults);
    if (config->connections_max == 0) config->connections_max = defaults.connections_max;
    if (config->header_bytes_max == 0) config->header_bytes_max = defaults.header_bytes_max;
    if (config->request_line_bytes_max == 0) config->request_line_bytes_max = defaults.request_line_bytes_max;
    if (config->header_count_max == 0) config->header_count_max = defaults.header_count_max;
    if (config->body_bytes_max == 0) config->body_bytes_max = defaults.body_bytes_max;
    if (config->idle_timeout_ms == 0) config->idle_timeout_ms = defaults.idle_timeout_ms;
    if (config->request_timeout_ms == 0) config->request_timeout_ms = defaults.request_timeout_ms;
    if (config->write_timeout_ms == 0) config->write_timeout_ms = defaults.write_timeout_ms;
    if (config->stop_wait_ms == 0) config->stop_wait_ms = defaults.stop_wait_ms;
}

static pc_status worker_open(http_server_t *server, http_worker_t *worker) {
    worker->server = server;
    pthread_mutex_init(&worker->queue_lock, NULL);
    worker->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    worker->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (worker->epoll_fd < 0 || worker->wake_fd < 0) return PC_IO;
    struct epoll_event listen_event = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    struct epoll_event wake_event = {.events = EPOLLIN, .data.ptr = &http_wake_marker};
    if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, server->config.listen_fd, &listen_event) != 0) return PC_IO;
    if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, worker->wake_fd, &wake_event) != 0) return PC_IO;
    return pthread_create(&worker->thread, NULL, worker_main, worker) == 0 ? PC_OK : PC_INTERNAL;
}

static void worker_close_all(http_worker_t *worker) {
    while (worker->conns != NULL) conn_close(worker->conns);
    http_conn_t *queued = worker_take_queue(worker);
    while (queued != NULL) {
        http_conn_t *next = queued->queue_next;
        conn_release(queued);
        queued = next;
    }
}

pc_status http_server_start(http_server_t **out, const http_config_t *config) {
    if (config->handler == NULL || config->listen_fd < 0 || config->threads == 0 || config->threads > HTTP_THREADS_MAX) {
        return PC_INVALID_ARGUMENT;
    }
    http_server_t *server = calloc(1, sizeof *server);
    if (server == NULL) return PC_NO_MEMORY;
    server->config = *config;
    config_fill_defaults(&server->config);
    server->limits = (http_limits_t){.header_bytes_max = server->config.header_bytes_max,
                                     .request_line_bytes_max = server->config.request_line_bytes_max,
                                     .header_count_max = server->config.header_count_max,
                                     .body_bytes_max = server->config.body_bytes_max};
    int flags = fcntl(config->listen_fd, F_GETFL);
    if (flags < 0 || fcntl(config->listen_fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        free(server);
        return PC_IO;
    }
    pc_status status = PC_OK;
    for (uint32_t index = 0; index < config->threads && status == PC_OK; index++) {
        status = worker_open(server, &server->workers[index]);
        if (status == PC_OK) server->worker_count++;
    }
    if (status != PC_OK) {
        http_server_stop(server);
        return status;
    }
    *out = server;
    return PC_OK;
}

/* Waits up to the stop's bound for the held requests; how many are still held. */
static uint64_t server_wait_held(http_server_t *server) {
    uint64_t deadline_ns = pc_mono_ns() + (uint64_t)server->config.stop_wait_ms * 1000000u;
    while (atomic_load(&server->held_count) > 0 && pc_mono_ns() < deadline_ns) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
    return atomic_load(&server->held_count);
}

uint64_t http_server_stop(http_server_t *server) {
    if (server == NULL) return 0;
    atomic_store(&server->stopping, true);
    for (uint32_t index = 0; index < server->worker_count; index++) {
        pthread_join(server->workers[index].thread, NULL);
    }
    for (uint32_t index = 0; index < HTTP_THREADS_MAX; index++) {
        http_worker_t *worker = &server->workers[index];
        if (worker->server == NULL) continue;
        worker_close_all(worker);
    }
    /* held requests still point at their connections and workers */
    uint64_t unanswered = server_wait_held(server);
    for (uint32_t index = 0; index < HTTP_THREADS_MAX; index++) {
        http_worker_t *worker = &server->workers[index];
        if (worker->server == NULL) continue;
        worker_release_closed(worker);
        if (worker->epoll_fd > 0) close(worker->epoll_fd);
        if (worker->wake_fd > 0) close(worker->wake_fd);
        pthread_mutex_destroy(&worker->queue_lock);
    }
    /* past the bound: the sockets are closed; a late answer writes nothing, frees its
     * connection, and the last one frees the server */
    uint64_t held = atomic_fetch_or(&server->held_count, HTTP_HELD_ORPHANED) & ~HTTP_HELD_ORPHANED;
    if (held == 0) free(server);
    return unanswered;
}

/* ---- the request ---- */

http_text_t http_request_method(const http_request_t *request) {
    const http_conn_t *conn = request->conn;
    return (http_text_t){conn->in + conn->head.method_offset, conn->head.method_bytes};
}

http_text_t http_request_target(const http_request_t *request) {
    const http_conn_t *conn = request->conn;
    return (http_text_t){conn->in + conn->head.target_offset, conn->head.target_bytes};
}

unsigned http_request_version(const http_request_t *request) {
    return request->conn->head.version;
}

bool http_request_header(const http_request_t *request, const char *name, http_text_t *value) {
    const http_conn_t *conn = request->conn;
    const http_header_slot_t *slot = http_head_find(conn->in, &conn->head, name, strlen(name));
    if (slot == NULL) return false;
    *value = (http_text_t){conn->in + slot->value_offset, slot->value_bytes};
    return true;
}

size_t http_request_header_count(const http_request_t *request) {
    return request->conn->head.header_count;
}

void http_request_header_at(const http_request_t *request, size_t index, http_text_t *name, http_text_t *value) {
    const http_conn_t *conn = request->conn;
    PC_ASSERT(index < conn->head.header_count);
    const http_header_slot_t *slot = &conn->head.headers[index];
    *name = (http_text_t){conn->in + slot->name_offset, slot->name_bytes};
    *value = (http_text_t){conn->in + slot->value_offset, slot->value_bytes};
}

http_text_t http_request_body(const http_request_t *request) {
    const http_conn_t *conn = request->conn;
    return (http_text_t){conn->in + conn->head.head_bytes, (size_t)conn->head.body_bytes};
}

uint64_t http_request_body_declared(const http_request_t *request) {
    return request->conn->head.body_bytes;
}

void http_request_close_after(http_request_t *request) {
    request->conn->head.keep_alive = false; /* the worker reads the head again only after the answer */
}

void http_request_set_context(http_request_t *request, void *context) {
    request->context = context;
}

void *http_request_context(const http_request_t *request) {
    return request->context;
}

void http_server_stats(const http_server_t *server, http_stats_t *out) {
    *out = (http_stats_t){
        .connections_accepted = atomic_load(&server->stat_accepted),
        .connections_refused = atomic_load(&server->stat_refused),
        .connections_open = atomic_load(&server->stat_open),
        .requests = atomic_load(&server->stat_requests),
        .requests_bad = atomic_load(&server->stat_bad),
        .timeouts = atomic_load(&server->stat_timeouts),
        .answers_from_other_threads = atomic_load(&server->stat_other_thread),
        .worker_wakeups = atomic_load(&server->stat_wakeups),
        .accept_failures = atomic_load(&server->stat_accept_failures),
    };
}
