/* tests/http/test_http.c: the HTTP/1.1 engine (src/http): its parser on every case and
 * split, and the server over real loopback sockets: pipelining, every limit, slow and
 * non-reading clients, answers from another thread while the client goes away, and
 * 200 keep-alive connections × 50 requests. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "http/http.h"
#include "http/http_internal.h"
#include "test.h"

/* ---- parser ---- */

static const http_limits_t parse_limits = {.header_bytes_max = 8192, .request_line_bytes_max = 4096,
                                           .header_count_max = 64, .body_bytes_max = 1024 * 1024};

static unsigned parse_text(const char *text, http_head_t *head, http_header_slot_t *slots) {
    head->headers = slots;
    size_t scan_from = 0;
    return http_parse_head(text, strlen(text), &scan_from, &parse_limits, head);
}

static unsigned parse_status(const char *text) {
    http_header_slot_t slots[64];
    http_head_t head = {0};
    return parse_text(text, &head, slots);
}

static void test_parse_valid(void) {
    const char *text = "POST /v1/payments?x=1 HTTP/1.1\r\nHost: a\r\ncontent-LENGTH:  12 \r\nX-Empty:\r\n\r\nbody";
    http_header_slot_t slots[64];
    http_head_t head = {0};
    ASSERT_EQ(parse_text(text, &head, slots), 200);
    ASSERT_EQ(head.method_bytes, 4);
    ASSERT_TRUE(memcmp(text + head.target_offset, "/v1/payments?x=1", head.target_bytes) == 0);
    ASSERT_EQ(head.version, 11);
    ASSERT_EQ(head.body_bytes, 12);
    ASSERT_EQ(head.header_count, 3);
    ASSERT_TRUE(head.keep_alive);
    ASSERT_EQ(head.head_bytes, strlen(text) - 4);
    const http_header_slot_t *host = http_head_find(text, &head, "HOST", 4);
    ASSERT_TRUE(host != NULL && host->value_bytes == 1 && text[host->value_offset] == 'a');
    const http_header_slot_t *empty = http_head_find(text, &head, "x-empty", 7);
    ASSERT_TRUE(empty != NULL && empty->value_bytes == 0);
    ASSERT_TRUE(http_head_find(text, &head, "x-missing", 9) == NULL);
}

/* The same head fed in two pieces, split at every byte, parses the same. */
static void test_parse_every_split(void) {
    const char *text = "GET /a/b HTTP/1.1\r\nHost: example\r\nConnection: close\r\nAccept: */*\r\n\r\n";
    size_t text_bytes = strlen(text);
    for (size_t split = 0; split <= text_bytes; split++) {
        http_header_slot_t slots[64];
        http_head_t head = {.headers = slots};
        size_t scan_from = 0;
        unsigned first = http_parse_head(text, split, &scan_from, &parse_limits, &head);
        if (split < text_bytes) ASSERT_EQ(first, HTTP_PARSE_MORE);
        unsigned second = http_parse_head(text, text_bytes, &scan_from, &parse_limits, &head);
        ASSERT_EQ(second, 200);
        ASSERT_EQ(head.header_count, 3);
        ASSERT_FALSE(head.keep_alive);
        ASSERT_EQ(head.head_bytes, text_bytes);
    }
}

/* The head ends at the first blank line: past lone CRs and "\r\n\r" near misses, with
 * more blank lines in the body after it, at every place the search may start. */
static void test_parse_blank_line_first(void) {
    const char *text = "POST /p HTTP/1.1\r\nX-A: \r\r\r\nContent-Length: 8\r\n\r\n\r\n\r\nab\r\n";
    size_t head_bytes = strlen("POST /p HTTP/1.1\r\nX-A: \r\r\r\nContent-Length: 8\r\n\r\n");
    for (size_t scan_start = 0; scan_start < head_bytes - 3; scan_start++) {
        http_header_slot_t slots[64];
        http_head_t head = {.headers = slots};
        size_t scan_from = scan_start;
        unsigned status = http_parse_head(text, strlen(text), &scan_from, &parse_limits, &head);
        ASSERT_TRUE(status != HTTP_PARSE_MORE);
        if (status == 200) ASSERT_EQ(head.head_bytes, head_bytes);
    }
    ASSERT_EQ(parse_status("GET / HTTP/1.1\r\nHost: a\r\n\r"), HTTP_PARSE_MORE);
    ASSERT_EQ(parse_status("GET / HTTP/1.1\r\nHost: a\r\n\n\r\n"), HTTP_PARSE_MORE);
    ASSERT_EQ(parse_status("\r\r\r\r\r\r"), HTTP_PARSE_MORE);
    ASSERT_EQ(parse_status("GET / HTTP/1.1\r\nA: b\r\nc\nd"), HTTP_PARSE_MORE);
}

static void test_parse_refusals(void) {
    static const struct {
        const char *text;
        unsigned status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200},
        {"GET  / HTTP/1.1\r\n\r\n", 400},               /* two spaces */
        {"GET /\r\n\r\n", 400},                         /* no version */
        {"GET / http/1.1\r\n\r\n", 400},                /* version case */
        {"GET / HTTP/1.1 \r\n\r\n", 400},               /* trailing blank */
        {"G(T / HTTP/1.1\r\n\r\n", 400},                /* not a token */
        {" GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400},  /* obs-fold */
        {"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", 400}, /* obs-fold with a tab */
        {"GET / HTTP/1.1\r\nA : b\r\n\r\n", 400},       /* blank before colon */
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\nA: b\r\n\r\n", 400},          /* bare LF */
        {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400},    /* control byte */
        {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413},
        {"GET / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n", 200},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 200},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n", 200},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501}, /* not exactly chunked */
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400}, /* 1.0: faulty framing */
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nExpect: something\r\n\r\n", 417},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        unsigned status = parse_status(cases[index].text);
        if (status != cases[index].status) TEST_FAIL("case %zu: %u, want %u", index, status, cases[index].status);
    }
    char with_nul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    http_header_slot_t slots[64];
    http_head_t head = {.headers = slots};
    size_t scan_from = 0;
    ASSERT_EQ(http_parse_head(with_nul, sizeof with_nul - 1, &scan_from, &parse_limits, &head), 400);
    scan_from = 0;
    ASSERT_EQ(http_parse_head("GET /\0", 6, &scan_from, &parse_limits, &head), 400); /* before the blank line */
}

static void test_parse_limits(void) {
    static char text[20000];
    memset(text, 'a', sizeof text - 1);
    memcpy(text, "GET /", 5);
    text[5000] = '\0'; /* a request line past 4096 without its end yet */
    ASSERT_EQ(parse_status(text), 414);
    size_t at = (size_t)sprintf(text, "GET / HTTP/1.1\r\n");
    while (at < 9000) at += (size_t)sprintf(text + at, "X-Filler: %s\r\n", "0123456789012345678901234567890123456789");
    text[at] = '\0'; /* headers past 8192 without their end yet */
    ASSERT_EQ(parse_status(text), 431);
    at = (size_t)sprintf(text, "GET / HTTP/1.1\r\n");
    for (int index = 0; index < 65; index++) at += (size_t)sprintf(text + at, "X-%d: v\r\n", index);
    sprintf(text + at, "\r\n");
    ASSERT_EQ(parse_status(text), 431); /* 65 headers */
}

static void test_parse_connection(void) {
    http_header_slot_t slots[64];
    http_head_t head = {0};
    ASSERT_EQ(parse_text("GET / HTTP/1.0\r\n\r\n", &head, slots), 200);
    ASSERT_FALSE(head.keep_alive);
    ASSERT_EQ(head.version, 10);
    ASSERT_EQ(parse_text("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &head, slots), 200);
    ASSERT_TRUE(head.keep_alive);
    ASSERT_EQ(parse_text("GET / HTTP/1.1\r\nConnection: foo, CLOSE\r\n\r\n", &head, slots), 200);
    ASSERT_FALSE(head.keep_alive);
    ASSERT_EQ(parse_text("HEAD / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", &head, slots), 200);
    ASSERT_TRUE(head.is_head_method && head.expect_continue);
}

/* ---- a chunked body ---- */

static const http_chunked_limits_t chunked_limits = {.body_bytes_max = 1000, .trailer_bytes_max = 64};

/* Feeds 'raw' in pieces of 'piece_bytes' (0: split once at 'split') as reads would
 * bring it, each call seeing the decoded bytes and what is left, like the server's
 * buffer; returns the last status, the decoded body in 'body' and what followed the
 * body in 'rest'. */
static unsigned chunked_feed(const char *raw, size_t raw_bytes, size_t split, size_t piece_bytes, char *body,
                             size_t *body_bytes, char *rest, size_t *rest_bytes) {
    http_chunked_t chunked = {0};
    static char buffer[8192];
    size_t have = 0, fed = 0;
    unsigned status = HTTP_PARSE_MORE;
    while (fed < raw_bytes) {
        size_t piece = piece_bytes > 0 ? piece_bytes : fed < split ? split : raw_bytes - fed;
        if (piece > raw_bytes - fed) piece = raw_bytes - fed;
        memcpy(buffer + have, raw + fed, piece);
        have += piece;
        fed += piece;
        do status = http_chunked_decode(&chunked, buffer, &have, &chunked_limits);
        while (status == HTTP_CHUNKED_ANNOUNCED);
        if (status != HTTP_PARSE_MORE) break;
    }
    *body_bytes = (size_t)chunked.body_bytes;
    memcpy(body, buffer, *body_bytes);
    *rest_bytes = have - *body_bytes;
    memcpy(rest, buffer + *body_bytes, *rest_bytes);
    memcpy(rest + *rest_bytes, raw + fed, raw_bytes - fed); /* what later reads bring */
    *rest_bytes += raw_bytes - fed;
    return status;
}

/* Goal: a chunked body decodes the same however reads split it (at every byte, one
 * byte a read), extensions and trailers ignored, and what follows it (the next,
 * pipelined request) is left untouched after the body. Method: feed one text every
 * way, compare body and rest with the expected. */
static void test_chunked_every_split(void) {
    static const char raw[] = "5;ext=1\r\nhello\r\n1\r\n \r\nA ; name=\"v\"\r\n0123456789\r\n"
                              "0\r\nX-Trailer: t\r\nY: u\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
    static const char want_body[] = "hello 0123456789";
    static const char want_rest[] = "GET /next HTTP/1.1\r\n\r\n";
    char body[2048], rest[2048];
    size_t body_bytes, rest_bytes;
    for (size_t split = 1; split <= sizeof raw - 1; split++) {
        for (size_t piece = 0; piece <= 1; piece++) {
            unsigned status = chunked_feed(raw, sizeof raw - 1, split, piece, body, &body_bytes, rest, &rest_bytes);
            if (status != 200) TEST_FAIL("split %zu piece %zu: %u", split, piece, status);
            ASSERT_EQ(body_bytes, sizeof want_body - 1);
            ASSERT_TRUE(memcmp(body, want_body, body_bytes) == 0);
            ASSERT_EQ(rest_bytes, sizeof want_rest - 1);
            ASSERT_TRUE(memcmp(rest, want_rest, rest_bytes) == 0);
        }
    }
}

/* Goal: bad framing is refused with its status, wherever the read ends. Method: each
 * case fed whole and one byte at a time. */
static void test_chunked_refusals(void) {
    static char long_line[HTTP_CHUNK_LINE_BYTES_MAX + 16];
    memset(long_line, ' ', sizeof long_line);
    memcpy(long_line, "1;", 2);
    memcpy(long_line + sizeof long_line - 3, "\r\n", 3);
    static const struct {
        const char *text;
        unsigned status;
    } cases[] = {
        {"0\r\n\r\n", 200},
        {"1\r\nx\r\n0\r\n\r\n", 200},
        {"00000000000000000000003\r\nabc\r\n0\r\n\r\n", 200}, /* leading zeros */
        {"g\r\n", 400},                                     /* bad hex */
        {"\r\n", 400},                                      /* no size */
        {"-1\r\n", 400},
        {"0x1\r\n", 400},
        {"1 \r\nx\r\n", 400},                               /* blanks, no extension */
        {"1\nx\r\n", 400},                                  /* bare LF */
        {"3\r\nabcX\r\n", 400},                             /* data longer than its size */
        {"3\r\nab\r\n", 400},                               /* shorter: the CRLF is data */
        {"3\r\nabc\r\r\n", 400},
        {"3\r\nabc\n", 400},
        {"1;\x01\r\nx\r\n", 400},                           /* a control byte in an extension */
        {"10000000000000000\r\n", 400},                     /* past 64 bits */
        {"3e9\r\n", 413},                                   /* 1001 > body_bytes_max */
        {"3e8\r\n", HTTP_PARSE_MORE},                       /* 1000: its data awaited */
        {"200\r\n", HTTP_PARSE_MORE},
        {"0\r\nno colon\r\n\r\n", 400},                     /* a trailer that is not a field */
        {"0\r\n X: y\r\n\r\n", 400},
        {"0\r\nX-Long: 0123456789012345678901234567890123456789012345678901234567890\r\n\r\n", 431},
    };
    char body[2048], rest[2048];
    size_t body_bytes, rest_bytes;
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        for (size_t piece = 0; piece <= 1; piece++) {
            const char *text = cases[index].text;
            unsigned status = chunked_feed(text, strlen(text), strlen(text), piece, body, &body_bytes, rest, &rest_bytes);
            if (status != cases[index].status) TEST_FAIL("case %zu piece %zu: %u, want %u", index, piece, status,
                                                        cases[index].status);
        }
    }
    unsigned status = chunked_feed(long_line, sizeof long_line - 1, sizeof long_line - 1, 0, body, &body_bytes, rest,
                                   &rest_bytes);
    ASSERT_EQ(status, 400); /* a chunk-size line past HTTP_CHUNK_LINE_BYTES_MAX */
    status = chunked_feed(long_line, HTTP_CHUNK_LINE_BYTES_MAX + 2, HTTP_CHUNK_LINE_BYTES_MAX + 2, 0, body,
                          &body_bytes, rest, &rest_bytes);
    ASSERT_EQ(status, 400); /* known before its end arrives */
    /* 500 + 501 bytes: the second chunk's size passes the limit, before its data */
    static char two[1200];
    size_t at = (size_t)sprintf(two, "1f4\r\n");
    memset(two + at, 'a', 500);
    at += 500;
    at += (size_t)sprintf(two + at, "\r\n1f5\r\n");
    status = chunked_feed(two, at, at, 0, body, &body_bytes, rest, &rest_bytes);
    ASSERT_EQ(status, 413);
    ASSERT_EQ(body_bytes, 500);
}

/* ---- the server over loopback ---- */

typedef enum { MODE_NOW, MODE_LATER, MODE_BIG, MODE_BIG_LATER, MODE_PARK, MODE_BATCH } answer_mode_t;

#define QUEUE_SLOTS 16384
static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    http_request_t *slots[QUEUE_SLOTS];
    size_t head, tail;
    bool stop;
    atomic_uint delay_us; /* before each answer from the queue */
    atomic_uint_fast64_t answered_gone;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

static answer_mode_t mode;
static char *big_body;
#define BIG_BODY_BYTES (4 * 1024 * 1024)

/* The answer names the target and the body's size: a pipelined order shows in it.
 * A target starting "/drop" is ended without an answer. */
static void answer_echo(http_request_t *request) {
    http_text_t target = http_request_target(request);
    if (target.byte_count >= 5 && memcmp(target.bytes, "/drop", 5) == 0) {
        ASSERT_TRUE(http_close(request));
        return;
    }
    http_text_t body = http_request_body(request);
    if (target.byte_count == 8 && memcmp(target.bytes, "/headers", 8) == 0) { /* name=value; each, in order */
        char text[400];
        size_t at = 0;
        for (size_t index = 0; index < http_request_header_count(request); index++) {
            http_text_t name, value;
            http_request_header_at(request, index, &name, &value);
            at += (size_t)snprintf(text + at, sizeof text - at, "%.*s=%.*s;", (int)name.byte_count, name.bytes,
                                   (int)value.byte_count, value.bytes);
        }
        ASSERT_TRUE(http_answer(request, 200, "text/plain", NULL, text, at));
        return;
    }
    if (target.byte_count >= 5 && memcmp(target.bytes, "/echo", 5) == 0) { /* the body itself */
        ASSERT_TRUE(http_answer(request, 200, "text/plain", NULL, body.bytes, body.byte_count));
        return;
    }
    char text[512];
    int text_bytes = snprintf(text, sizeof text, "%.*s %zu", (int)target.byte_count, target.bytes, body.byte_count);
    if (!http_answer(request, 200, "text/plain", "X-Test: 1\r\n", text, (size_t)text_bytes)) {
        atomic_fetch_add(&queue.answered_gone, 1);
    }
}

static http_request_t *_Atomic parked; /* MODE_PARK: kept by one handler, answered in another's */
static char head_marker;          /* the head hook's context, seen again by the handler */
static atomic_uint head_hook_calls;

/* A head hook (test_server_head_hook): "/refuse..." is answered 403 before its body. */
static bool on_head(void *ctx, http_request_t *request) {
    atomic_fetch_add(&head_hook_calls, 1);
    http_text_t target = http_request_target(request);
    if (target.byte_count >= 7 && memcmp(target.bytes, "/refuse", 7) == 0) {
        char text[64];
        int text_bytes = snprintf(text, sizeof text, "refused %llu",
                                  (unsigned long long)http_request_body_declared(request));
        ASSERT_TRUE(http_answer(request, 403, "text/plain", NULL, text, (size_t)text_bytes));
        return false;
    }
    ASSERT_TRUE(http_request_context(request) == NULL);
    http_request_set_context(request, &head_marker);
    return true;
}

/* The abandoned hook (test_server_abandoned): a request let through by the head hook
 * whose body never came whole; its context is the head marker. */
static atomic_uint abandoned_calls, abandoned_expired, abandoned_status;
static void on_abandoned(void *ctx, http_request_t *request, unsigned status) {
    (void)ctx;
    ASSERT_TRUE(http_request_context(request) == &head_marker);
    atomic_store(&abandoned_status, status);
    atomic_fetch_add(&abandoned_calls, 1);
    if (status == 408) atomic_fetch_add(&abandoned_expired, 1);
}

static void wait_for_abandoned(unsigned count) {
    for (int round = 0; round < 2000 && atomic_load(&abandoned_calls) < count; round++) usleep(10000);
    ASSERT_EQ(atomic_load(&abandoned_calls), count);
}

/* MODE_BATCH: requests kept by the handler, answered by the batch-end hook (the
 * worker's thread only: no lock). */
#define BATCH_SLOTS 64
static struct {
    http_request_t *kept[BATCH_SLOTS];
    size_t kept_count;
    pthread_t handler_thread;
    atomic_uint_fast64_t answered;
    atomic_uint_fast64_t answered_off_worker;
} batch;

static void on_batch_end(void *ctx) {
    (void)ctx;
    for (size_t index = 0; index < batch.kept_count; index++) {
        if (!pthread_equal(pthread_self(), batch.handler_thread)) atomic_fetch_add(&batch.answered_off_worker, 1);
        atomic_fetch_add(&batch.answered, 1); /* before the answer: its client may look at once */
        answer_echo(batch.kept[index]);
    }
    batch.kept_count = 0;
}

static void on_request(void *ctx, http_request_t *request) {
    if (atomic_load(&head_hook_calls) > 0) ASSERT_TRUE(http_request_context(request) == &head_marker);
    if (mode == MODE_BATCH) {
        ASSERT_TRUE(batch.kept_count < BATCH_SLOTS);
        batch.handler_thread = pthread_self();
        batch.kept[batch.kept_count++] = request;
        return;
    }
    if (mode == MODE_PARK) {
        http_text_t target = http_request_target(request);
        if (target.byte_count == 5 && memcmp(target.bytes, "/park", 5) == 0) {
            parked = request;
            return;
        }
        if (parked != NULL && target.byte_count == 8 && memcmp(target.bytes, "/release", 8) == 0) {
            answer_echo(parked);
            parked = NULL;
        }
        answer_echo(request);
        return;
    }
    if (mode == MODE_BIG) {
        http_answer(request, 200, "application/octet-stream", NULL, big_body, BIG_BODY_BYTES);
        return;
    }
    if (mode == MODE_NOW) {
        answer_echo(request);
        return;
    }
    pthread_mutex_lock(&queue.lock);
    ASSERT_TRUE(queue.tail - queue.head < QUEUE_SLOTS);
    queue.slots[queue.tail++ % QUEUE_SLOTS] = request;
    pthread_cond_signal(&queue.ready);
    pthread_mutex_unlock(&queue.lock);
}

static void *answer_thread(void *arg) {
    pthread_mutex_lock(&queue.lock);
    for (;;) {
        while (queue.head == queue.tail && !queue.stop) pthread_cond_wait(&queue.ready, &queue.lock);
        if (queue.head == queue.tail) break;
        http_request_t *request = queue.slots[queue.head++ % QUEUE_SLOTS];
        uint32_t delay_us = atomic_load(&queue.delay_us);
        pthread_mutex_unlock(&queue.lock);
        if (delay_us > 0) usleep(delay_us);
        if (mode == MODE_BIG_LATER) http_answer(request, 200, "application/octet-stream", NULL, big_body, BIG_BODY_BYTES);
        else answer_echo(request);
        pthread_mutex_lock(&queue.lock);
    }
    pthread_mutex_unlock(&queue.lock);
    return NULL;
}

typedef struct {
    http_server_t *server;
    int listen_fd;
    uint16_t port;
    pthread_t answerers[2];
} test_server_t;

static atomic_uint refuse_admit;

static bool admit_hook(void *ctx, const struct sockaddr *addr, socklen_t addr_bytes) {
    return atomic_load(&refuse_admit) == 0;
}

static void server_start(test_server_t *test, http_config_t *config, answer_mode_t answer_mode) {
    mode = answer_mode;
    test->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(test->listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    ASSERT_EQ(listen(test->listen_fd, 1024), 0);
    socklen_t addr_bytes = sizeof addr;
    getsockname(test->listen_fd, (struct sockaddr *)&addr, &addr_bytes);
    test->port = ntohs(addr.sin_port);
    config->listen_fd = test->listen_fd;
    config->handler = on_request;
    config->admit = admit_hook;
    ASSERT_STATUS(http_server_start(&test->server, config), PC_OK);
    queue.stop = false;
    queue.head = queue.tail = 0;
    for (int index = 0; index < 2; index++) pthread_create(&test->answerers[index], NULL, answer_thread, NULL);
}

static uint64_t server_stop(test_server_t *test) {
    pthread_mutex_lock(&queue.lock);
    queue.stop = true;
    pthread_cond_broadcast(&queue.ready);
    pthread_mutex_unlock(&queue.lock);
    for (int index = 0; index < 2; index++) pthread_join(test->answerers[index], NULL);
    uint64_t unanswered = http_server_stop(test->server);
    close(test->listen_fd);
    return unanswered;
}

static void config_for_test(http_config_t *config) {
    http_config_default(config);
    config->threads = 2;
}

/* ---- a client ---- */

typedef struct {
    int fd;
    char *bytes;
    size_t byte_count, capacity;
    bool head_request; /* the next answer has no body whatever its length says */
} client_t;

typedef struct {
    unsigned status;
    bool close;
    char body[512];
    size_t body_bytes;
} answer_t;

static void client_open(client_t *client, uint16_t port) {
    memset(client, 0, sizeof *client);
    client->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(connect(client->fd, (struct sockaddr *)&addr, sizeof addr), 0);
    struct timeval wait = {.tv_sec = 20}; /* a hang fails the test instead of stalling it */
    setsockopt(client->fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    client->capacity = 1 << 16;
    client->bytes = malloc(client->capacity);
    ASSERT_TRUE(client->bytes != NULL);
    client->bytes[0] = '\0';
}

static void client_close(client_t *client) {
    close(client->fd);
    free(client->bytes);
}

static void client_send(client_t *client, const char *text, size_t text_bytes) {
    ASSERT_EQ(send(client->fd, text, text_bytes, MSG_NOSIGNAL), (ssize_t)text_bytes);
}

static void client_send_text(client_t *client, const char *text) {
    client_send(client, text, strlen(text));
}

/* Reads more; false at the end of the stream (or a reset). The bytes stay followed by a
 * NUL: client_answer's sscanf reads the head as a string (without it, an answer that
 * filled the buffer was read past its end: a TSan run crashed there). */
static bool client_fill(client_t *client) {
    if (client->byte_count + 1 >= client->capacity) {
        client->capacity *= 2;
        client->bytes = realloc(client->bytes, client->capacity);
        ASSERT_TRUE(client->bytes != NULL);
    }
    ssize_t got = recv(client->fd, client->bytes + client->byte_count, client->capacity - client->byte_count - 1, 0);
    if (got < 0 && errno == EAGAIN) TEST_FAIL("no answer within the client's wait");
    if (got <= 0) return false;
    client->byte_count += (size_t)got;
    client->bytes[client->byte_count] = '\0';
    return true;
}

/* One answer (a 100 Continue is skipped); false if the stream ended before one. */
static bool client_answer(client_t *client, answer_t *answer) {
    for (;;) {
        char *end = memmem(client->bytes, client->byte_count, "\r\n\r\n", 4);
        if (end == NULL) {
            if (!client_fill(client)) return false;
            continue;
        }
        size_t head_bytes = (size_t)(end - client->bytes) + 4;
        memset(answer, 0, sizeof *answer);
        ASSERT_EQ(sscanf(client->bytes, "HTTP/1.1 %u", &answer->status), 1);
        char *length = memmem(client->bytes, head_bytes, "Content-Length: ", 16);
        size_t body_bytes = length != NULL ? strtoul(length + 16, NULL, 10) : 0;
        answer->close = memmem(client->bytes, head_bytes, "Connection: close", 17) != NULL;
        if (answer->status == 100) {
            memmove(client->bytes, client->bytes + head_bytes, client->byte_count - head_bytes);
            client->byte_count -= head_bytes;
            client->bytes[client->byte_count] = '\0';
            continue;
        }
        answer->body_bytes = body_bytes;
        if (client->head_request) body_bytes = 0;
        client->head_request = false;
        while (client->byte_count < head_bytes + body_bytes) {
            if (!client_fill(client)) return false;
        }
        memcpy(answer->body, client->bytes + head_bytes, body_bytes < sizeof answer->body - 1 ? body_bytes : sizeof answer->body - 1);
        size_t used = head_bytes + body_bytes;
        memmove(client->bytes, client->bytes + used, client->byte_count - used);
        client->byte_count -= used;
        client->bytes[client->byte_count] = '\0';
        return true;
    }
}

static bool client_at_end(client_t *client) {
    while (client_fill(client)) {
    }
    return true;
}

static void expect_refusal(uint16_t port, const char *text, size_t text_bytes, unsigned status) {
    client_t client;
    client_open(&client, port);
    client_send(&client, text, text_bytes);
    answer_t answer;
    ASSERT_TRUE(client_answer(&client, &answer));
    if (answer.status != status) TEST_FAIL("answer %u, want %u to %.40s", answer.status, status, text);
    ASSERT_TRUE(answer.close);
    ASSERT_TRUE(strstr(answer.body, "\"error\"") != NULL);
    ASSERT_FALSE(client_fill(&client)); /* and closed */
    client_close(&client);
}

static void test_server_pipelined(void) {
    for (int later = 0; later < 2; later++) {
        test_server_t test;
        http_config_t config;
        config_for_test(&config);
        server_start(&test, &config, later ? MODE_LATER : MODE_NOW);
        client_t client;
        client_open(&client, test.port);
        char text[8192];
        size_t at = 0;
        for (int index = 0; index < 20; index++) {
            at += (size_t)sprintf(text + at, "POST /r%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", index, index);
            memset(text + at, 'x', (size_t)index);
            at += (size_t)index;
        }
        client_send(&client, text, at);
        for (int index = 0; index < 20; index++) {
            answer_t answer;
            ASSERT_TRUE(client_answer(&client, &answer));
            ASSERT_EQ(answer.status, 200);
            char want[64];
            sprintf(want, "/r%d %d", index, index);
            ASSERT_STR_EQ(answer.body, want);
        }
        /* one byte at a time */
        const char *slow = "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n";
        for (size_t index = 0; slow[index] != '\0'; index++) client_send(&client, slow + index, 1);
        answer_t answer;
        ASSERT_TRUE(client_answer(&client, &answer));
        ASSERT_STR_EQ(answer.body, "/slow 0");
        /* ended without an answer: the one before is answered, then the stream ends */
        client_send_text(&client, "GET /kept HTTP/1.1\r\n\r\nGET /drop HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
        ASSERT_TRUE(client_answer(&client, &answer));
        ASSERT_STR_EQ(answer.body, "/kept 0");
        ASSERT_FALSE(client_answer(&client, &answer));
        client_close(&client);
        server_stop(&test);
    }
}

static void test_server_connection_forms(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    server_start(&test, &config, MODE_NOW);
    client_t client;
    answer_t answer;
    client_open(&client, test.port);
    client_send_text(&client, "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_TRUE(answer.close);
    ASSERT_STR_EQ(answer.body, "/a 0");
    ASSERT_FALSE(client_answer(&client, &answer)); /* the second is not answered: closed */
    client_close(&client);
    client_open(&client, test.port);
    client_send_text(&client, "GET /old HTTP/1.0\r\n\r\n");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_TRUE(answer.close);
    ASSERT_TRUE(client_at_end(&client));
    client_close(&client);
    client_open(&client, test.port);
    client_send_text(&client, "GET /k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_FALSE(answer.close);
    client_send_text(&client, "HEAD /k2 HTTP/1.1\r\n\r\n");
    client.head_request = true;
    ASSERT_TRUE(client_answer(&client, &answer)); /* HEAD: the length of the body, not the body */
    ASSERT_EQ(answer.body_bytes, 5);
    ASSERT_EQ(client.byte_count, 0);
    client_send_text(&client, "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    char first[64] = {0};
    ASSERT_TRUE(recv(client.fd, first, sizeof first - 1, 0) > 0);
    ASSERT_TRUE(strncmp(first, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    client_send_text(&client, "abc");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_STR_EQ(answer.body, "/e 3");
    client_close(&client);
    server_stop(&test);
}

/* A request kept by its handler and answered on the same worker inside another
 * connection's handler: the requests pipelined behind it are still served. */
static void test_server_answer_on_same_worker(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.threads = 1;
    server_start(&test, &config, MODE_PARK);
    client_t parking, releasing;
    answer_t answer;
    client_open(&parking, test.port);
    client_send_text(&parking, "GET /park HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    http_stats_t stats = {0};
    for (int round = 0; round < 20000 && stats.requests < 1; round++) { /* 20 s at least: a loaded machine */
        usleep(1000);
        http_server_stats(test.server, &stats);
    }
    ASSERT_EQ(stats.requests, 1);
    client_open(&releasing, test.port);
    client_send_text(&releasing, "GET /release HTTP/1.1\r\n\r\n");
    ASSERT_TRUE(client_answer(&releasing, &answer));
    ASSERT_STR_EQ(answer.body, "/release 0");
    ASSERT_TRUE(client_answer(&parking, &answer));
    ASSERT_STR_EQ(answer.body, "/park 0");
    ASSERT_TRUE(client_answer(&parking, &answer));
    ASSERT_STR_EQ(answer.body, "/after 0");
    client_close(&parking);
    client_close(&releasing);
    server_stop(&test);
}

/* Requests the handler keeps are answered by the batch-end hook on the same worker,
 * after the events of the wait that brought them: a request on each of two
 * connections, then a pipelined pair (the second is handled after the first's answer). */
static void test_server_batch_end(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.threads = 1;
    config.batch_end = on_batch_end;
    server_start(&test, &config, MODE_BATCH);
    client_t first, second;
    answer_t answer;
    client_open(&first, test.port);
    client_open(&second, test.port);
    client_send_text(&first, "GET /one HTTP/1.1\r\n\r\n");
    client_send_text(&second, "GET /two HTTP/1.1\r\n\r\nGET /three HTTP/1.1\r\n\r\n");
    ASSERT_TRUE(client_answer(&first, &answer));
    ASSERT_STR_EQ(answer.body, "/one 0");
    ASSERT_TRUE(client_answer(&second, &answer));
    ASSERT_STR_EQ(answer.body, "/two 0");
    ASSERT_TRUE(client_answer(&second, &answer));
    ASSERT_STR_EQ(answer.body, "/three 0");
    ASSERT_EQ(atomic_load(&batch.answered), 3);
    ASSERT_EQ(atomic_load(&batch.answered_off_worker), 0);
    client_close(&first);
    client_close(&second);
    server_stop(&test);
}

/* Closing is the server's after the client's: wait for it to catch up. */
static void wait_for_closed(test_server_t *test) {
    for (int round = 0; round < 2000; round++) {
        http_stats_t stats;
        http_server_stats(test->server, &stats);
        if (stats.connections_open == 0) return;
        usleep(10000);
    }
    TEST_FAIL("connections still open");
}

static void test_server_limits(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.body_bytes_max = 1000;
    config.connections_max = 3;
    server_start(&test, &config, MODE_NOW);
    static char text[20000];
    size_t at = (size_t)sprintf(text, "GET / HTTP/1.1\r\n");
    while (at < 9000) at += (size_t)sprintf(text + at, "X-Filler: %s\r\n", "0123456789012345678901234567890123456789");
    at += (size_t)sprintf(text + at, "\r\n");
    expect_refusal(test.port, text, at, 431);
    memset(text, 'a', 6000);
    memcpy(text, "GET /", 5);
    expect_refusal(test.port, text, 6000, 414);
    expect_refusal(test.port, "POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 41, 413);
    expect_refusal(test.port, "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 28, 400);
    expect_refusal(test.port, "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 43, 501);
    expect_refusal(test.port, "GET / HTTP/1.1\r\nA: \0\r\n\r\n", 24, 400);
    expect_refusal(test.port, "GET / HTTP/3.0\r\n\r\n", 18, 505);
    wait_for_closed(&test); /* the refused connections close as their clients go */
    /* connections: three are served, the fourth is closed at once */
    client_t held[3], extra;
    answer_t answer;
    for (int index = 0; index < 3; index++) {
        client_open(&held[index], test.port);
        client_send_text(&held[index], "GET /held HTTP/1.1\r\n\r\n");
        ASSERT_TRUE(client_answer(&held[index], &answer));
    }
    client_open(&extra, test.port);
    send(extra.fd, "GET / HTTP/1.1\r\n\r\n", 18, MSG_NOSIGNAL);
    ASSERT_FALSE(client_answer(&extra, &answer));
    client_close(&extra);
    for (int index = 0; index < 3; index++) client_close(&held[index]);
    wait_for_closed(&test);
    /* the admit hook (per-address limits) refuses */
    atomic_store(&refuse_admit, 1);
    client_open(&extra, test.port);
    send(extra.fd, "GET / HTTP/1.1\r\n\r\n", 18, MSG_NOSIGNAL);
    ASSERT_FALSE(client_answer(&extra, &answer));
    client_close(&extra);
    atomic_store(&refuse_admit, 0);
    http_stats_t stats;
    http_server_stats(test.server, &stats);
    ASSERT_TRUE(stats.connections_refused >= 2);
    ASSERT_EQ(stats.requests_bad, 7);
    server_stop(&test);
}

static void wait_for_timeouts(test_server_t *test, uint64_t count) {
    for (int round = 0; round < 2000; round++) {
        http_stats_t stats;
        http_server_stats(test->server, &stats);
        if (stats.timeouts >= count && stats.connections_open == 0) return;
        usleep(10000);
    }
    TEST_FAIL("the server did not time the connection out");
}

/* Idle, slow-loris and a client that never reads: each is closed by its deadline. */
static void test_server_deadlines(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.idle_timeout_ms = 300;
    config.request_timeout_ms = 1000;
    config.write_timeout_ms = 500;
    server_start(&test, &config, MODE_NOW);
    client_t client;
    answer_t answer;
    client_open(&client, test.port);
    client_send_text(&client, "GET /a HTTP/1.1\r\n\r\n");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_FALSE(client_answer(&client, &answer)); /* idle: closed without an answer */
    client_close(&client);
    wait_for_timeouts(&test, 1);
    /* one byte every 100 ms, never finishing the head: closed at the request deadline */
    client_open(&client, test.port);
    client_send_text(&client, "GET /slow HTTP/1.1\r\n");
    int sent = 0;
    for (; sent < 100; sent++) {
        if (send(client.fd, "X", 1, MSG_NOSIGNAL) != 1) break;
        struct pollfd wait = {.fd = client.fd, .events = POLLIN};
        if (poll(&wait, 1, 100) > 0) break; /* the server closed it */
    }
    ASSERT_TRUE(sent < 100);
    ASSERT_FALSE(client_answer(&client, &answer));
    client_close(&client);
    wait_for_timeouts(&test, 2);
    server_stop(&test);
    /* a client that asks for 4 MiB answers and never reads them */
    server_start(&test, &config, MODE_BIG);
    client_open(&client, test.port);
    int small = 4096;
    setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    client_send_text(&client, "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n");
    wait_for_timeouts(&test, 1);
    client_close(&client);
    server_stop(&test);
}

/* A 4 MiB answer from another thread goes out whole through partial writes. */
static void test_server_large_answer(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    server_start(&test, &config, MODE_BIG_LATER);
    client_t client;
    client_open(&client, test.port);
    client_send_text(&client, "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n");
    for (int index = 0; index < 2; index++) {
        answer_t answer;
        usleep(50000); /* let the server's socket fill first */
        ASSERT_TRUE(client_answer(&client, &answer));
        ASSERT_EQ(answer.body_bytes, BIG_BODY_BYTES);
    }
    client_close(&client);
    server_stop(&test);
}

/* Answers from another thread race the client's close: each is written or refused
 * (false), none is lost, nothing leaks (ASan) and nothing races (TSan). */
static void test_server_answer_while_closing(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    server_start(&test, &config, MODE_LATER);
    atomic_store(&queue.answered_gone, 0);
    for (int round = 0; round < 300; round++) {
        atomic_store(&queue.delay_us, (uint32_t)(round % 7) * 150);
        client_t client;
        client_open(&client, test.port);
        client_send_text(&client, "GET /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n");
        if (round % 3 == 0) {
            answer_t answer;
            ASSERT_TRUE(client_answer(&client, &answer));
        }
        if (round % 2 == 0) shutdown(client.fd, SHUT_RDWR);
        client_close(&client);
    }
    atomic_store(&queue.delay_us, 0);
    wait_for_closed(&test);
    http_stats_t stats;
    http_server_stats(test.server, &stats);
    ASSERT_TRUE(stats.answers_from_other_threads > 0);
    server_stop(&test);
}

/* The head hook answers before the body: a request without one keeps its connection;
 * one whose body is still coming is answered with Connection: close, its body dropped.
 * A request the hook lets through reaches the handler with the hook's context. */
static void test_server_head_hook(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.head = on_head;
    atomic_store(&head_hook_calls, 0);
    server_start(&test, &config, MODE_NOW);
    client_t client;
    answer_t answer;
    client_open(&client, test.port);
    client_send_text(&client, "GET /refuse HTTP/1.1\r\n\r\nPOST /ok HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_EQ(answer.status, 403);
    ASSERT_FALSE(answer.close);
    ASSERT_STR_EQ(answer.body, "refused 0");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_EQ(answer.status, 200);
    ASSERT_STR_EQ(answer.body, "/ok 3");
    /* 1 MiB declared, 10 bytes sent: answered now, then the rest is read out until it closes */
    client_send_text(&client, "POST /refuse HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n0123456789");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_EQ(answer.status, 403);
    ASSERT_TRUE(answer.close);
    ASSERT_STR_EQ(answer.body, "refused 1048576");
    static char more[65536];
    memset(more, 'x', sizeof more);
    client_send(&client, more, sizeof more); /* dropped, not a reset */
    shutdown(client.fd, SHUT_WR);
    ASSERT_TRUE(client_at_end(&client));
    client_close(&client);
    ASSERT_EQ(atomic_load(&head_hook_calls), 3);
    server_stop(&test);
    atomic_store(&head_hook_calls, 0);
}

/* A request the head hook let through is told as abandoned, once, when its connection
 * closes before the whole body came: the client left, or the request deadline passed.
 * Its handler never runs; a whole request is never told. Without the hook's call the
 * caller's context (the API's request) would leak. */
static void test_server_abandoned(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.head = on_head;
    config.abandoned = on_abandoned;
    config.request_timeout_ms = 300;
    atomic_store(&head_hook_calls, 0);
    atomic_store(&abandoned_calls, 0);
    atomic_store(&abandoned_expired, 0);
    server_start(&test, &config, MODE_NOW);
    client_t client;
    answer_t answer;
    client_open(&client, test.port);
    client_send_text(&client, "POST /whole HTTP/1.1\r\nContent-Length: 2\r\n\r\nab");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_STR_EQ(answer.body, "/whole 2");
    client_send_text(&client, "POST /left HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
    client_close(&client); /* the client leaves with 97 bytes of its body unsent */
    wait_for_abandoned(1);
    ASSERT_EQ(atomic_load(&abandoned_expired), 0);
    client_open(&client, test.port);
    client_send_text(&client, "POST /slow HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
    wait_for_abandoned(2); /* the request deadline closes it */
    ASSERT_EQ(atomic_load(&abandoned_expired), 1);
    client_close(&client);
    server_stop(&test);
    ASSERT_EQ(atomic_load(&abandoned_calls), 2);
    ASSERT_EQ(atomic_load(&head_hook_calls), 3);
    atomic_store(&head_hook_calls, 0);
}

/* The body hook (test_server_chunked): "/budget" refuses a body past 100 bytes. */
static atomic_uint body_hook_calls;
static bool on_body(void *ctx, http_request_t *request, uint64_t body_bytes) {
    (void)ctx;
    atomic_fetch_add(&body_hook_calls, 1);
    ASSERT_TRUE(http_request_context(request) == &head_marker);
    http_text_t target = http_request_target(request);
    if (body_bytes <= 100 || target.byte_count < 7 || memcmp(target.bytes, "/budget", 7) != 0) return true;
    char text[64];
    int text_bytes = snprintf(text, sizeof text, "budget %llu", (unsigned long long)body_bytes);
    ASSERT_TRUE(http_answer(request, 429, "text/plain", NULL, text, (size_t)text_bytes));
    return false;
}

/* Sends 'text' in pieces of 'piece_bytes' with a pause between, so that the server
 * reads them apart (the outcome is the same if it does not). */
static void client_send_pieces(client_t *client, const char *text, size_t text_bytes, size_t piece_bytes) {
    for (size_t at = 0; at < text_bytes; at += piece_bytes) {
        size_t piece = text_bytes - at < piece_bytes ? text_bytes - at : piece_bytes;
        client_send(client, text + at, piece);
        usleep(2000);
    }
}

/* Goal: chunked request bodies over a socket: whole however the reads split them, in
 * 1-byte chunks, followed by a pipelined request, with 100-continue; a chunk past the
 * limit is 413, bad framing 400, each closing the connection; the body hook sees each
 * chunk's total and may refuse. Method: raw requests, answers read back in order; the
 * "/echo" handler answers the decoded body itself. Fails on main: 411 to every chunked
 * request. */
static void test_server_chunked(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.body_bytes_max = 4000;
    config.head = on_head;
    config.body = on_body;
    config.abandoned = on_abandoned;
    atomic_store(&abandoned_calls, 0);
    atomic_store(&body_hook_calls, 0);
    server_start(&test, &config, MODE_NOW);
    client_t client;
    answer_t answer;
    client_open(&client, test.port);
    static const char split[] = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "4;x=y\r\nabcd\r\n3\r\nefg\r\n0\r\nT: 1\r\n\r\n";
    client_send_pieces(&client, split, sizeof split - 1, 3);
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_EQ(answer.status, 200);
    ASSERT_FALSE(answer.close);
    ASSERT_STR_EQ(answer.body, "abcdefg");
    ASSERT_EQ(atomic_load(&body_hook_calls), 2);
    /* the headers in the order they came, values without their blanks */
    client_send_text(&client, "GET /headers HTTP/1.1\r\nHost: a\r\nX-B:  two \r\nx-a:1\r\n\r\n");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_STR_EQ(answer.body, "Host=a;X-B=two;x-a=1;");
    /* 3000 1-byte chunks, then a pipelined request in the same send */
    static char ones[40000];
    size_t at = (size_t)sprintf(ones, "POST /ones HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    for (int index = 0; index < 3000; index++) at += (size_t)sprintf(ones + at, "1\r\n%c\r\n", 'a' + index % 26);
    at += (size_t)sprintf(ones + at, "0\r\n\r\nPOST /after HTTP/1.1\r\nContent-Length: 2\r\n\r\nzz");
    client_send(&client, ones, at);
    ASSERT_TRUE(client_answer(&client, &answer)); /* the 100 Continue is skipped */
    ASSERT_EQ(answer.status, 200);
    ASSERT_STR_EQ(answer.body, "/ones 3000");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_STR_EQ(answer.body, "/after 2");
    client_close(&client);
    /* a head that fills the read buffer exactly (header_bytes_max): its body still has
     * room, and the blank line that ends the (empty) trailers fits */
    client_open(&client, test.port);
    static char full[HTTP_HEADER_BYTES_DEFAULT + 64];
    at = (size_t)sprintf(full, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Pad: ");
    size_t pad_bytes = HTTP_HEADER_BYTES_DEFAULT - at - 4;
    memset(full + at, 'p', pad_bytes);
    at += pad_bytes;
    at += (size_t)sprintf(full + at, "\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    client_send(&client, full, at);
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_EQ(answer.status, 200);
    ASSERT_STR_EQ(answer.body, "ok");
    client_close(&client);
    /* the body hook refuses the chunk that passes its budget: answered, then closed */
    client_open(&client, test.port);
    client_send_text(&client, "POST /budget HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n");
    static char fifty[81];
    memset(fifty, 'q', 80);
    client_send(&client, fifty, 80);
    client_send_text(&client, "\r\n50\r\n");
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_EQ(answer.status, 429);
    ASSERT_TRUE(answer.close);
    ASSERT_STR_EQ(answer.body, "budget 160");
    shutdown(client.fd, SHUT_WR);
    ASSERT_TRUE(client_at_end(&client));
    client_close(&client);
    /* the engine's own refusals; the request the head hook let through is abandoned with it */
    static const struct {
        const char *text;
        unsigned status;
    } refusals[] = {
        {"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfa1\r\n", 413}, /* 4001 */
        {"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n", 413},
        {"POST /hex HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"POST /crlf HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", 400},
    };
    for (size_t index = 0; index < sizeof refusals / sizeof refusals[0]; index++) {
        const char *text = refusals[index].text;
        if (index == 1) { /* 2048 + 2048 + 1: the third chunk passes the limit */
            static char three[8000];
            size_t bytes = (size_t)sprintf(three, "%s", text);
            memset(three + bytes, 'a', 2048);
            bytes += 2048;
            bytes += (size_t)sprintf(three + bytes, "\r\n7ff\r\n");
            memset(three + bytes, 'b', 2047);
            bytes += 2047;
            bytes += (size_t)sprintf(three + bytes, "\r\n2\r\n");
            expect_refusal(test.port, three, bytes, 413);
        } else {
            expect_refusal(test.port, text, strlen(text), refusals[index].status);
        }
        wait_for_abandoned((unsigned)index + 1);
        ASSERT_EQ(atomic_load(&abandoned_status), refusals[index].status);
    }
    /* a length beside the coding: refused before the head hook */
    expect_refusal(test.port, "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 68, 400);
    server_stop(&test);
    ASSERT_EQ(atomic_load(&abandoned_calls), 4);
    atomic_store(&head_hook_calls, 0);
}

/* Goal: the stop waits for a held request at most stop_wait_ms and says how many it
 * left; the late answer writes nothing, frees its connection and what the server
 * still held (ASan: no leak, no use after free). Method: a handler keeps a request;
 * the stop with a 100 ms bound returns 1; the request is answered after it: false,
 * and its client sees the connection closed. Fails on main: the stop never returns. */
static void test_server_stop_bound(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    config.stop_wait_ms = 100;
    parked = NULL;
    server_start(&test, &config, MODE_PARK);
    client_t client;
    client_open(&client, test.port);
    client_send_text(&client, "GET /park HTTP/1.1\r\n\r\n");
    for (int round = 0; round < 2000 && parked == NULL; round++) usleep(10000);
    ASSERT_TRUE(parked != NULL);
    ASSERT_EQ(server_stop(&test), 1);
    ASSERT_FALSE(http_answer(parked, 200, "text/plain", NULL, "late", 4));
    parked = NULL;
    ASSERT_FALSE(client_fill(&client)); /* closed by the stop, nothing written after */
    client_close(&client);
}

/* Out of descriptors, the level-triggered listener would wake its worker at once and
 * spin; instead the worker pauses accepting (HTTP_ACCEPT_PAUSE_MS) and the waiting
 * connection is served once descriptors are free again. Fails without the pause: the
 * failed accepts then number in the tens of thousands. */
static void test_server_accept_out_of_descriptors(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    server_start(&test, &config, MODE_NOW);
    struct rlimit saved;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int lowest_free = dup(0);
    ASSERT_TRUE(lowest_free >= 0);
    close(lowest_free);
    /* the client's socket takes the last descriptor; the server's accept finds none */
    struct rlimit low = {.rlim_cur = (rlim_t)lowest_free + 1, .rlim_max = saved.rlim_max};
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    uint64_t start_ns = pc_mono_ns();
    client_t client;
    client_open(&client, test.port);
    client_send_text(&client, "GET /late HTTP/1.1\r\n\r\n");
    http_stats_t stats = {0};
    for (int round = 0; round < 2000 && stats.accept_failures < 4; round++) {
        usleep(10000);
        http_server_stats(test.server, &stats);
    }
    ASSERT_TRUE(stats.accept_failures >= 4); /* paused and tried again */
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    answer_t answer;
    ASSERT_TRUE(client_answer(&client, &answer));
    ASSERT_STR_EQ(answer.body, "/late 0");
    http_server_stats(test.server, &stats);
    uint64_t elapsed_ms = (pc_mono_ns() - start_ns) / 1000000u;
    /* at most one failed accept per worker per pause, and a margin */
    uint64_t bound = (uint64_t)config.threads * (elapsed_ms / HTTP_ACCEPT_PAUSE_MS + 2) * 2;
    if (stats.accept_failures > bound) TEST_FAIL("%llu failed accepts in %llu ms: the listener spins",
                                                 (unsigned long long)stats.accept_failures, (unsigned long long)elapsed_ms);
    client_close(&client);
    server_stop(&test);
}

/* A listener shut down while the server still runs (serve's SIGTERM does it before the
 * drain): accept fails with EINVAL and the level-triggered listener would spin; the
 * workers pause as they do out of descriptors. */
static void test_server_listener_shut_down(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    server_start(&test, &config, MODE_NOW);
    uint64_t start_ns = pc_mono_ns();
    ASSERT_EQ(shutdown(test.listen_fd, SHUT_RDWR), 0);
    http_stats_t stats = {0};
    for (int round = 0; round < 2000 && stats.accept_failures < 6; round++) {
        usleep(10000);
        http_server_stats(test.server, &stats);
    }
    uint64_t elapsed_ms = (pc_mono_ns() - start_ns) / 1000000u;
    ASSERT_TRUE(stats.accept_failures >= 6);
    uint64_t bound = (uint64_t)config.threads * (elapsed_ms / HTTP_ACCEPT_PAUSE_MS + 2) * 2;
    if (stats.accept_failures > bound) TEST_FAIL("%llu failed accepts in %llu ms: the listener spins",
                                                 (unsigned long long)stats.accept_failures, (unsigned long long)elapsed_ms);
    server_stop(&test);
}

/* 200 keep-alive connections × 50 requests, answered from another thread. */
#define MANY_CONNECTIONS 200
#define MANY_REQUESTS 50
static void test_server_many_connections(void) {
    test_server_t test;
    http_config_t config;
    config_for_test(&config);
    server_start(&test, &config, MODE_LATER);
    static client_t clients[MANY_CONNECTIONS];
    for (int index = 0; index < MANY_CONNECTIONS; index++) client_open(&clients[index], test.port);
    for (int request = 0; request < MANY_REQUESTS; request++) {
        for (int index = 0; index < MANY_CONNECTIONS; index++) {
            char text[128];
            sprintf(text, "GET /c%d/r%d HTTP/1.1\r\nHost: a\r\n\r\n", index, request);
            client_send_text(&clients[index], text);
        }
        for (int index = 0; index < MANY_CONNECTIONS; index++) {
            answer_t answer;
            ASSERT_TRUE(client_answer(&clients[index], &answer));
            char want[64];
            sprintf(want, "/c%d/r%d 0", index, request);
            ASSERT_STR_EQ(answer.body, want);
        }
    }
    for (int index = 0; index < MANY_CONNECTIONS; index++) client_close(&clients[index]);
    http_stats_t stats;
    http_server_stats(test.server, &stats);
    ASSERT_EQ(stats.requests, MANY_CONNECTIONS * MANY_REQUESTS);
    ASSERT_EQ(stats.answers_from_other_threads, MANY_CONNECTIONS * MANY_REQUESTS);
    server_stop(&test);
}

#define RUN(fn) do { fprintf(stderr, "%s\n", #fn); TEST_RUN(fn); } while (0)

int main(void) {
    big_body = malloc(BIG_BODY_BYTES);
    memset(big_body, 'b', BIG_BODY_BYTES);
    RUN(test_parse_valid);
    RUN(test_parse_every_split);
    RUN(test_parse_blank_line_first);
    RUN(test_parse_refusals);
    RUN(test_parse_limits);
    RUN(test_parse_connection);
    RUN(test_chunked_every_split);
    RUN(test_chunked_refusals);
    RUN(test_server_pipelined);
    RUN(test_server_connection_forms);
    RUN(test_server_limits);
    RUN(test_server_deadlines);
    RUN(test_server_large_answer);
    RUN(test_server_answer_while_closing);
    RUN(test_server_answer_on_same_worker);
    RUN(test_server_batch_end);
    RUN(test_server_many_connections);
    RUN(test_server_head_hook);
    RUN(test_server_abandoned);
    RUN(test_server_chunked);
    RUN(test_server_stop_bound);
    RUN(test_server_accept_out_of_descriptors);
    RUN(test_server_listener_shut_down);
    free(big_body);
    return test_finish();
}
