/* http/http.h: paycore's own HTTP/1.1 server engine (README.md: design, limits, what
 * is not supported).
 *
 * N worker threads, each with its own epoll set; one listening socket sits in every
 * set with EPOLLEXCLUSIVE and the worker that wakes accepts (no accept thread, no
 * hand-over). A connection stays on the worker that accepted it for its whole life.
 *
 * Ownership and threads (the rules a handler must keep):
 *  - The handler runs on the connection's worker thread, once per request, in the
 *    order the requests arrived (pipelined requests wait for the one before).
 *  - The request (method, target, headers, body) is readable from any thread from the
 *    moment the handler is called until http_answer() is called for it; not after.
 *  - Every request is answered exactly once with http_answer() (or ended with
 *    http_close()), either before the handler returns or later from ANY thread. Until then the connection reads and
 *    parses nothing more (no idle or request deadline runs while it is held).
 *  - http_answer() from another thread writes to the socket itself when the socket
 *    takes the whole answer; only what would block is left to the worker (which
 *    finishes it on EPOLLOUT), and the worker is woken only when it has work (more
 *    input already read, or the connection must close).
 *  - If the client goes away while a request is held, the request stays valid and
 *    http_answer() returns false (nothing is written). The memory lives until the
 *    answer is given: a held request that is never answered leaks its connection.
 *  - http_server_stop() closes every connection and waits until every held request
 *    has been answered, at most stop_wait_ms: the threads that answer must keep
 *    running until it returns; a request answered later writes nothing (and the
 *    stop's return counts it). */
#ifndef PAYCORE_HTTP_H
#define PAYCORE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "paycore/status.h"

/* Defaults: the limits the API's libmicrohttpd servers apply today (api/server.c). */
#define HTTP_HEADER_BYTES_DEFAULT (8 * 1024)   /* request line + headers; 431 past it */
#define HTTP_REQUEST_LINE_BYTES_DEFAULT 4096  /* 414 past it */
#define HTTP_HEADER_COUNT_DEFAULT 64           /* 431 past it */
#define HTTP_BODY_BYTES_DEFAULT (4 * 1024 * 1024) /* 413 past it */
#define HTTP_CONNECTIONS_DEFAULT 4096          /* more are accepted and closed at once */
#define HTTP_IDLE_TIMEOUT_MS_DEFAULT 30000     /* keep-alive connection with no request */
#define HTTP_REQUEST_TIMEOUT_MS_DEFAULT 30000  /* first byte to whole request (slow-loris) */
#define HTTP_WRITE_TIMEOUT_MS_DEFAULT 30000    /* an answer the peer does not read */
#define HTTP_STOP_WAIT_MS_DEFAULT 30000        /* http_server_stop() waits this long for held requests */
#define HTTP_THREADS_MAX 64
#define HTTP_ACCEPT_PAUSE_MS 100 /* a worker out of descriptors stops accepting this long */

typedef struct http_server http_server_t;
typedef struct http_request http_request_t;

/* Called on the worker for each whole request; answers now or keeps it (see above). */
typedef void (*http_handler_fn)(void *ctx, http_request_t *request);
/* Optional: a new connection from 'addr'; false closes it at once (per-address limits). */
typedef bool (*http_admit_fn)(void *ctx, const struct sockaddr *addr, socklen_t addr_bytes);
/* Optional: a connection admitted by http_admit_fn is closed. Any thread. */
typedef void (*http_closed_fn)(void *ctx, const struct sockaddr *addr, socklen_t addr_bytes);
/* Optional: called on the worker once a request's head has arrived, before a byte of its
 * body is read or room is made for it (route, credentials, a budget charged with
 * http_request_body_declared()). true: the body is read, then the handler runs. false:
 * the hook answered the request itself with http_answer() before returning; a body
 * still unread is dropped and the connection closes after the answer (which says
 * Connection: close). */
typedef bool (*http_head_fn)(void *ctx, http_request_t *request);
/* Optional: called on the worker each time a chunk of a chunked request body has
 * announced its size, before its data is read or room is made for it; 'body_bytes' is
 * the body's size with that chunk (a bound, a budget charged as the body grows). true:
 * reading goes on. false: the hook answered with http_answer() before returning, as the
 * head hook may; the rest of the body is dropped and the connection closes after it. */
typedef bool (*http_body_fn)(void *ctx, http_request_t *request, uint64_t body_bytes);
/* Optional, with a head hook: a request the head hook let through is never handed to the
 * handler, because its connection closed before the whole body came (the client left,
 * a deadline passed, no room for the body, the server stops, the engine refused the
 * body's framing). Called on the worker once, with handler_ctx; 'status': 0 the
 * connection went (client or server), 408 a deadline closed it, else the status the
 * engine answered itself (400 chunk framing, 413 a chunk past body_bytes_max, 431
 * trailers; http_refusal_code() names it). The request cannot be answered; what the
 * head hook kept for it (its context) is released here. */
typedef void (*http_abandoned_fn)(void *ctx, http_request_t *request, unsigned status);
/* Optional: called on a worker after it handled the events of one wait (every wait,
 * also an empty one), before it waits again; 'ctx' is handler_ctx. Requests its
 * handler kept can be answered here, on the worker: one step (a group commit) for the
 * whole batch, and no other thread to wake. */
typedef void (*http_batch_end_fn)(void *ctx);

typedef struct {
    int listen_fd;                   /* bound and listening; made non-blocking, never closed here */
    uint32_t threads;                /* workers, 1..HTTP_THREADS_MAX */
    uint32_t connections_max;        /* 0: HTTP_CONNECTIONS_DEFAULT */
    uint32_t header_bytes_max;       /* 0: default; also the per-connection read buffer */
    uint32_t request_line_bytes_max; /* 0: default */
    uint32_t header_count_max;       /* 0: default */
    uint64_t body_bytes_max;         /* 0: default */
    uint32_t idle_timeout_ms;        /* 0: default */
    uint32_t request_timeout_ms;     /* 0: default */
    uint32_t write_timeout_ms;       /* 0: default */
    uint32_t stop_wait_ms;           /* 0: default; the stop's wait for held requests */
    http_handler_fn handler;
    void *handler_ctx;
    http_admit_fn admit;             /* may be NULL */
    http_closed_fn closed;           /* may be NULL */
    void *admit_ctx;
    http_head_fn head;               /* may be NULL; called with handler_ctx */
    http_body_fn body;               /* may be NULL; called with handler_ctx */
    http_abandoned_fn abandoned;     /* may be NULL; called with handler_ctx */
    http_batch_end_fn batch_end;     /* may be NULL */
} http_config_t;

/* Fills the defaults; the caller sets listen_fd, threads and handler. */
void http_config_default(http_config_t *config);

pc_status http_server_start(http_server_t **out, const http_config_t *config);
/* Closes every connection and waits for the held requests to be answered, at most
 * stop_wait_ms; returns how many were still held then (0: all answered; the caller
 * logs the others). Their sockets are closed already: a late http_answer() or
 * http_close() writes nothing and returns false, and the last of them frees what the
 * server still holds. */
uint64_t http_server_stop(http_server_t *server);

/* ---- the request (valid until answered) ---- */
typedef struct {
    const char *bytes; /* not NUL-terminated */
    size_t byte_count;
} http_text_t;

http_text_t http_request_method(const http_request_t *request);
http_text_t http_request_target(const http_request_t *request);
/* 10 for HTTP/1.0, 11 for HTTP/1.1 */
unsigned http_request_version(const http_request_t *request);
/* The first header of that name (case-insensitive), value without surrounding blanks;
 * false if absent. */
bool http_request_header(const http_request_t *request, const char *name, http_text_t *value);
size_t http_request_header_count(const http_request_t *request);
/* The header at 'index' (< http_request_header_count), in the order they came: name
 * and value (without surrounding blanks). */
void http_request_header_at(const http_request_t *request, size_t index, http_text_t *name, http_text_t *value);
http_text_t http_request_body(const http_request_t *request);
/* The body's declared length (Content-Length; 0 without, and for a chunked body until
 * it is whole): known from the head hook on. */
uint64_t http_request_body_declared(const http_request_t *request);
/* One pointer of the caller's per request: NULL when the head arrives, kept from the
 * head hook to the handler and the answer. */
void http_request_set_context(http_request_t *request, void *context);
void *http_request_context(const http_request_t *request);

/* ---- the answer ----
 * 'headers' is NULL or preformatted lines, each ending in "\r\n" ("ETag: x\r\n");
 * Content-Length, Date-less framing and Connection are added here. Copies what it
 * does not write at once. Returns false when the connection is already gone (the
 * request is released either way). Any thread; once per request. */
bool http_answer(http_request_t *request, unsigned status, const char *content_type, const char *headers,
                 const void *body, size_t body_bytes);

/* The connection closes after this request's answer (Connection: close), whatever the
 * client asked: a server that is stopping. Before http_answer(), by the request's
 * holder. */
void http_request_close_after(http_request_t *request);

/* Ends the request's connection without an answer (what was queued before it is
 * dropped): a peer that hangs up, as the simulators' faults do. Releases the request as
 * http_answer() does; false if the connection was already gone. Any thread; instead
 * of http_answer(), once per request. */
bool http_close(http_request_t *request);

/* The reason phrase of a status ("OK", "Not Found"). */
const char *http_status_reason(unsigned status);
/* The error code of the engine's own refusal with 'status' ("body_too_large"): what
 * its JSON answer says. */
const char *http_refusal_code(unsigned status);

/* ---- decoding a target (unescape.c) ----
 * %XX escapes of 'bytes' decoded into 'out', NUL-terminated, as libmicrohttpd decodes
 * a path and its query arguments: an escape without two hex digits stays as it came;
 * with 'plus_is_space' a '+' becomes ' ' (query arguments). 'out' may be 'bytes' itself
 * (the text never grows). %00 decodes to a NUL like any byte. False when the text and
 * its NUL do not fit in 'out_bytes' ('out' then holds a part of it). */
bool http_percent_decode(const char *bytes, size_t byte_count, bool plus_is_space, char *out,
                         size_t out_bytes) __attribute__((warn_unused_result));
/* The same on a NUL-terminated 'text', in place. */
void http_percent_decode_in_place(char *text, bool plus_is_space);

/* ---- counters (any thread) ---- */
typedef struct {
    uint64_t connections_accepted;
    uint64_t connections_refused; /* over connections_max or refused by admit */
    uint64_t connections_open;
    uint64_t requests;
    uint64_t requests_bad;        /* answered 4xx/5xx by the engine itself */
    uint64_t timeouts;            /* idle, request deadline or write timeout */
    uint64_t answers_from_other_threads;
    uint64_t worker_wakeups;      /* hand-backs through a worker's eventfd */
    uint64_t accept_failures;     /* accepts failed for lack of descriptors (EMFILE, ENFILE, ...) or
                                     a listener shut down: each pauses that worker's accepting for
                                     HTTP_ACCEPT_PAUSE_MS */
} http_stats_t;
void http_server_stats(const http_server_t *server, http_stats_t *out);

#endif
