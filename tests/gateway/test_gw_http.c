/* Goal: the gateway's own HTTP/1.1 client (src/gateway/http.c, for channels at a
 * plain-HTTP IPv4 address) reads every framing of an answer the protocol allows, keeps
 * and reuses its connections only when the answer says it may, sends each request
 * once, and turns every broken answer into the outcome curl's did: a connection that
 * closes mid-answer, an oversized answer, a malformed status line or no answer in time
 * is unknown (then the status inquiry), a refused connection is "never sent"
 * (retryable). Channels it does not serve (a host name, https, a user in the URL) stay
 * with curl, and a call through curl still works.
 * Method: a scripted HTTP server on a thread of the test (loopback), whose answer to
 * each POST is set per case; it counts connections and requests and keeps the last
 * request's text. Status inquiries (GET) are answered {"found":false}. */
#include "gw_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "gateway/gw_internal.h"

typedef enum { ANSWER_LENGTH, ANSWER_CHUNKED, ANSWER_UNTIL_CLOSE, ANSWER_CLOSE_MID, ANSWER_TOO_LARGE,
               ANSWER_BAD_STATUS, ANSWER_SILENT } answer_mode;

#define CONNS_MAX 32
#define REQUEST_BYTES 8192

static struct {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    _Atomic int mode;
    _Atomic uint32_t accepted;
    _Atomic uint32_t posts;
    _Atomic uint32_t gets;
    _Atomic bool stop;
    pthread_mutex_t mutex;
    char last_post[REQUEST_BYTES];
} srv = {.mutex = PTHREAD_MUTEX_INITIALIZER};

typedef struct {
    int fd;
    size_t bytes;
    char data[REQUEST_BYTES];
} conn_t;

static const char approval[] = "{\"id\":\"auth_t1\",\"status\":\"approved\",\"response_code\":\"00\","
                               "\"amount\":1999,\"currency\":\"EUR\",\"approval_code\":\"A1\"}";

static void send_all(int fd, const char *data, size_t bytes) {
    while (bytes > 0) {
        ssize_t sent = send(fd, data, bytes, MSG_NOSIGNAL);
        if (sent <= 0) return; /* the client went (an oversized answer is cut short) */
        data += sent;
        bytes -= (size_t)sent;
    }
}

static void send_text(int fd, const char *text) { send_all(fd, text, strlen(text)); }

/* Answers one POST as the mode says; false when the connection is to be closed. */
static bool answer_post(int fd) {
    char text[512];
    switch ((answer_mode)atomic_load(&srv.mode)) {
    case ANSWER_LENGTH:
        snprintf(text, sizeof text, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(approval), approval);
        send_text(fd, text);
        return true;
    case ANSWER_CHUNKED: {
        size_t half = strlen(approval) / 2;
        snprintf(text, sizeof text,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n", half,
                 (int)half, approval, strlen(approval) - half, approval + half);
        send_text(fd, text);
        return true;
    }
    case ANSWER_UNTIL_CLOSE:
        snprintf(text, sizeof text, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n%s", approval);
        send_text(fd, text);
        return false;
    case ANSWER_CLOSE_MID:
        send_text(fd, "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"id\":\"auth_t1\",");
        return false;
    case ANSWER_TOO_LARGE: {
        size_t bytes = GW_RESPONSE_BYTES_MAX + 4096;
        snprintf(text, sizeof text, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", bytes);
        send_text(fd, text);
        char *body = malloc(bytes);
        ASSERT_TRUE(body != NULL);
        memset(body, 'x', bytes);
        send_all(fd, body, bytes);
        free(body);
        return false;
    }
    case ANSWER_BAD_STATUS: send_text(fd, "HTTP/1.1 2x0 What\r\nContent-Length: 2\r\n\r\n{}"); return false;
    case ANSWER_SILENT: return true; /* the answer never comes */
    }
    return false;
}

/* A whole request in conn->data: its bytes (head and Content-Length body), else 0. */
static size_t request_bytes(const conn_t *c) {
    const char *end = memmem(c->data, c->bytes, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    size_t head = (size_t)(end - c->data) + 4, body = 0;
    const char *length = memmem(c->data, head, "Content-Length: ", 16);
    if (length != NULL) body = strtoul(length + 16, NULL, 10);
    return c->bytes >= head + body ? head + body : 0;
}

/* Handles the requests read so far; false when the connection is to be closed. */
static bool serve_requests(conn_t *c) {
    size_t bytes;
    while ((bytes = request_bytes(c)) > 0) {
        bool keep = true;
        if (strncmp(c->data, "GET ", 4) == 0) {
            atomic_fetch_add(&srv.gets, 1);
            send_text(c->fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 15\r\n\r\n{\"found\":false}");
        } else {
            pthread_mutex_lock(&srv.mutex);
            memcpy(srv.last_post, c->data, bytes);
            srv.last_post[bytes] = '\0';
            pthread_mutex_unlock(&srv.mutex);
            atomic_fetch_add(&srv.posts, 1);
            keep = answer_post(c->fd);
        }
        memmove(c->data, c->data + bytes, c->bytes - bytes);
        c->bytes -= bytes;
        if (!keep) return false;
    }
    return true;
}

static void *serve(void *arg) {
    (void)arg;
    static conn_t conns[CONNS_MAX];
    uint32_t count = 0;
    while (!atomic_load(&srv.stop)) {
        struct pollfd fds[CONNS_MAX + 1];
        fds[0] = (struct pollfd){.fd = srv.listen_fd, .events = POLLIN};
        for (uint32_t i = 0; i < count; i++) fds[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
        if (poll(fds, count + 1, 50) <= 0) continue;
        for (uint32_t i = count; i-- > 0;) {
            if (!(fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            conn_t *c = &conns[i];
            ssize_t got = recv(c->fd, c->data + c->bytes, sizeof c->data - 1 - c->bytes, 0);
            bool keep = got > 0;
            if (keep) c->bytes += (size_t)got;
            if (keep) keep = serve_requests(c);
            if (!keep) {
                close(c->fd);
                conns[i] = conns[--count];
            }
        }
        if ((fds[0].revents & POLLIN) && count < CONNS_MAX) {
            int fd = accept(srv.listen_fd, NULL, NULL);
            if (fd >= 0) {
                conns[count].fd = fd;
                conns[count].bytes = 0;
                count++;
                atomic_fetch_add(&srv.accepted, 1);
            }
        }
    }
    for (uint32_t i = 0; i < count; i++) close(conns[i].fd);
    return NULL;
}

static void server_start(void) {
    srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_TRUE(srv.listen_fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t bytes = sizeof addr;
    ASSERT_EQ(bind(srv.listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    ASSERT_EQ(listen(srv.listen_fd, 64), 0);
    ASSERT_EQ(getsockname(srv.listen_fd, (struct sockaddr *)&addr, &bytes), 0);
    srv.port = ntohs(addr.sin_port);
    ASSERT_EQ(pthread_create(&srv.thread, NULL, serve, NULL), 0);
}

static void server_stop(void) {
    atomic_store(&srv.stop, true);
    pthread_join(srv.thread, NULL);
    close(srv.listen_fd);
}

/* ---------------------------------------------------------------- gateways */

static gw_t *gw_main, *gw_short;

static gw_t *gateway_bounded(const char *name, const char *url, uint32_t timeout_ms, uint32_t max_connections) {
    char path[512];
    gwt_path(path, sizeof path, name);
    gwt_write(path,
              "{\"channels\":[{\"name\":\"card\",\"kind\":\"card\",\"url\":\"%s\",\"api_key\":\"test-key-1\","
              "\"timeout_ms\":%u,\"connect_timeout_ms\":%u,\"max_connections\":%u,\"breaker\":"
              "{\"failures_consecutive\":0,\"error_rate_percent\":0}}],\"routing\":{\"strategy\":\"priority\","
              "\"attempts_max\":1},\"status_inquiry\":{\"delay_ms\":10,\"attempts\":1,\"interval_ms\":10}}\n",
              url, timeout_ms, timeout_ms, max_connections);
    return gwt_gateway(path);
}

static gw_t *gateway_at(const char *name, const char *url, uint32_t timeout_ms) {
    return gateway_bounded(name, url, timeout_ms, GW_HTTP_CONNECTIONS_MAX);
}

static char last_reference[32];

static gw_result_t pay(gw_t *gw, answer_mode mode) {
    static uint32_t seq;
    atomic_store(&srv.mode, (int)mode);
    snprintf(last_reference, sizeof last_reference, "http-%u", ++seq);
    gw_request_t req = gwt_card(last_reference, 1999, "4242424242424242");
    return gwt_call(gw, &req);
}

static void expect_approved(const gw_result_t *r) {
    if (r->outcome != GW_OUTCOME_APPROVED) gwt_print(r);
    ASSERT_EQ(r->outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(r->attempt_count, 1);
    ASSERT_FALSE(r->attempts[0].status_inquired);
    ASSERT_STR_EQ(r->channel_ref, "auth_t1");
}

/* Sent once, then unknown: the status inquiry asked (and heard "never applied"). */
static void expect_unknown(const gw_result_t *r, uint32_t posts_before, const char *code) {
    if (r->outcome != GW_OUTCOME_RETRYABLE || strcmp(r->attempts[0].response_code, code) != 0) gwt_print(r);
    ASSERT_EQ(atomic_load(&srv.posts) - posts_before, 1);
    ASSERT_EQ(r->attempt_count, 1);
    ASSERT_TRUE(r->attempts[0].status_inquired);
    ASSERT_FALSE(r->attempts[0].status_found);
    ASSERT_STR_EQ(r->attempts[0].response_code, code);
    ASSERT_EQ(r->outcome, GW_OUTCOME_RETRYABLE);
}

/* ---------------------------------------------------------------- cases */

/* Which channels the own client serves. */
static void test_origin(void) {
    static const struct {
        const char *url;
        bool own;
        const char *prefix;
    } cases[] = {{"http://127.0.0.1:8080", true, ""},
                 {"http://127.0.0.1:8080/acq/v2/", true, "/acq/v2"},
                 {"http://10.1.2.3", true, ""},
                 {"http://localhost:8080", false, NULL},
                 {"https://127.0.0.1:8443", false, NULL},
                 {"http://user:pw@127.0.0.1:8080", false, NULL},
                 {"http://127.0.0.1:8080/x?y=1", false, NULL},
                 {"http://[::1]:8080", false, NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static gw_channel_cfg_t ch;
        memset(&ch, 0, sizeof ch);
        snprintf(ch.url, sizeof ch.url, "%s", cases[i].url);
        gw_http_origin(&ch);
        if (ch.own_http != cases[i].own) TEST_FAIL("%s: own client %d", cases[i].url, ch.own_http);
        if (cases[i].own) ASSERT_STR_EQ(ch.http_prefix, cases[i].prefix);
    }
    static gw_channel_cfg_t ch;
    memset(&ch, 0, sizeof ch);
    snprintf(ch.url, sizeof ch.url, "http://127.0.0.1:8080");
    snprintf(ch.api_key, sizeof ch.api_key, "key\r\nX-Injected: 1"); /* not a header's text: curl's */
    gw_http_origin(&ch);
    ASSERT_FALSE(ch.own_http);
    snprintf(ch.api_key, sizeof ch.api_key, "plain-key");
    gw_http_origin(&ch);
    ASSERT_TRUE(ch.own_http);
    ASSERT_STR_EQ(ch.http_host, "127.0.0.1:8080");
}

/* The request as sent: its head and a body whose length the head states. */
static void test_request_text(void) {
    gw_result_t r = pay(gw_main, ANSWER_LENGTH);
    expect_approved(&r);
    pthread_mutex_lock(&srv.mutex);
    char request[REQUEST_BYTES];
    snprintf(request, sizeof request, "%s", srv.last_post);
    pthread_mutex_unlock(&srv.mutex);
    char host[64], key[128];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%u\r\n", (unsigned)srv.port);
    snprintf(key, sizeof key, "\r\nIdempotency-Key: %s\r\n", r.attempts[0].idempotency_key);
    static const char line[] = "POST /v1/authorizations HTTP/1.1\r\n";
    ASSERT_EQ(strncmp(request, line, strlen(line)), 0);
    ASSERT_TRUE(strstr(request, host) != NULL);
    ASSERT_TRUE(strstr(request, key) != NULL);
    ASSERT_TRUE(strstr(request, "\r\nAuthorization: Bearer test-key-1\r\n") != NULL);
    ASSERT_TRUE(strstr(request, "\r\nContent-Type: application/json\r\n") != NULL);
    const char *body = strstr(request, "\r\n\r\n") + 4;
    const char *length = strstr(request, "\r\nContent-Length: ");
    ASSERT_TRUE(length != NULL && length < body);
    ASSERT_EQ(strtoul(length + 18, NULL, 10), strlen(body));
    json_error_t error;
    json_t *j = json_loads(body, 0, &error);
    if (j == NULL) TEST_FAIL("body is not JSON: %s (%s)", error.text, body);
    ASSERT_EQ(json_integer_value(json_object_get(j, "amount")), 1999);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "currency")), "EUR");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "card"), "number")), "4242424242424242");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "card"), "cvc")), "123");
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "card"), "exp_year")), 2030);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "merchant_ref")), last_reference);
    ASSERT_TRUE(json_is_false(json_object_get(j, "capture")));
    json_decref(j);
}

/* Content-Length and chunked answers leave the connection open: one serves them all,
 * each request sent once. */
static void test_framings_keep_the_connection(void) {
    uint32_t accepted = atomic_load(&srv.accepted), posts = atomic_load(&srv.posts);
    for (int i = 0; i < 3; i++) {
        gw_result_t r = pay(gw_main, ANSWER_LENGTH);
        expect_approved(&r);
        r = pay(gw_main, ANSWER_CHUNKED);
        expect_approved(&r);
    }
    ASSERT_EQ(atomic_load(&srv.posts) - posts, 6);
    ASSERT_EQ(atomic_load(&srv.accepted), accepted); /* the connection of the earlier case */
}

/* An answer that ends with the connection (no length, "Connection: close") is read
 * whole; the next call opens a new connection. */
static void test_answer_until_close(void) {
    uint32_t accepted = atomic_load(&srv.accepted);
    gw_result_t r = pay(gw_main, ANSWER_UNTIL_CLOSE);
    expect_approved(&r);
    r = pay(gw_main, ANSWER_LENGTH);
    expect_approved(&r);
    ASSERT_EQ(atomic_load(&srv.accepted) - accepted, 1);
}

static void test_closed_mid_answer(void) {
    uint32_t posts = atomic_load(&srv.posts);
    gw_result_t r = pay(gw_main, ANSWER_CLOSE_MID);
    expect_unknown(&r, posts, "connection_closed");
    ASSERT_STATUS(r.status, PC_GATEWAY_CHANNEL_UNREACHABLE);
}

static void test_answer_too_large(void) {
    uint32_t posts = atomic_load(&srv.posts);
    gw_result_t r = pay(gw_main, ANSWER_TOO_LARGE);
    expect_unknown(&r, posts, "too_large");
}

static void test_bad_status_line(void) {
    uint32_t posts = atomic_load(&srv.posts);
    gw_result_t r = pay(gw_main, ANSWER_BAD_STATUS);
    expect_unknown(&r, posts, "connection_closed");
}

/* No answer within timeout_ms: unknown, asked about on a new connection (the timed-out
 * one is closed: its answer could still come). */
static void test_timeout(void) {
    uint32_t posts = atomic_load(&srv.posts), gets = atomic_load(&srv.gets);
    gw_result_t r = pay(gw_short, ANSWER_SILENT);
    expect_unknown(&r, posts, "timeout");
    ASSERT_STATUS(r.status, PC_GATEWAY_CHANNEL_TIMEOUT);
    ASSERT_EQ(atomic_load(&srv.gets) - gets, 1);
}

/* Nothing listens: never sent, so retryable at once, no inquiry. */
static void test_refused(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t bytes = sizeof addr;
    ASSERT_EQ(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&addr, &bytes), 0);
    /* bound, never listened: a port that refuses, kept bound until the call is over
     * (closed, the kernel may hand it to another test's server meanwhile) */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
    gw_t *gw = gateway_at("refused.json", url, 30000);
    gw_result_t r = pay(gw, ANSWER_LENGTH);
    gw_stop(gw);
    close(fd);
    if (r.outcome != GW_OUTCOME_RETRYABLE) gwt_print(&r);
    ASSERT_EQ(r.outcome, GW_OUTCOME_RETRYABLE);
    ASSERT_STR_EQ(r.attempts[0].response_code, "connect_failed");
    ASSERT_FALSE(r.attempts[0].status_inquired);
}

/* max_connections: many calls at once share that many connections; the calls past the
 * bound wait their turn and all go through, each sent once. */
static void test_connection_bound(void) {
    enum { CALLS = 12, BOUND = 2 };
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)srv.port);
    gw_t *gw = gateway_bounded("bounded.json", url, 30000, BOUND);
    static gw_request_t requests[CALLS];
    static gw_result_t results[CALLS];
    static char references[CALLS][32];
    for (int i = 0; i < CALLS; i++) {
        snprintf(references[i], sizeof references[i], "bound-%d", i);
        requests[i] = gwt_card(references[i], 1999, "4242424242424242");
    }
    atomic_store(&srv.mode, (int)ANSWER_LENGTH);
    uint32_t accepted = atomic_load(&srv.accepted), posts = atomic_load(&srv.posts);
    gwt_run_many(gw, requests, CALLS, CALLS, results);
    gw_stop(gw);
    for (int i = 0; i < CALLS; i++) expect_approved(&results[i]);
    ASSERT_EQ(atomic_load(&srv.posts) - posts, CALLS);
    uint32_t opened = atomic_load(&srv.accepted) - accepted;
    if (opened < 1 || opened > BOUND) TEST_FAIL("%u connections for a bound of %d", opened, BOUND);
}

/* A channel the own client does not serve (a host name) goes through curl, and works. */
static void test_curl_channel(void) {
    char url[64];
    snprintf(url, sizeof url, "http://localhost:%u", (unsigned)srv.port);
    gw_t *gw = gateway_at("curl.json", url, 30000);
    uint32_t posts = atomic_load(&srv.posts);
    gw_result_t r = pay(gw, ANSWER_CHUNKED);
    gw_stop(gw);
    expect_approved(&r);
    ASSERT_EQ(atomic_load(&srv.posts) - posts, 1);
}

int main(void) {
    gwt_setup("gwhttp");
    server_start();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)srv.port);
    gw_main = gateway_at("main.json", url, 30000);
    gw_short = gateway_at("short.json", url, 300);
    TEST_RUN(test_origin);
    TEST_RUN(test_request_text);
    TEST_RUN(test_framings_keep_the_connection);
    TEST_RUN(test_answer_until_close);
    TEST_RUN(test_closed_mid_answer);
    TEST_RUN(test_answer_too_large);
    TEST_RUN(test_bad_status_line);
    TEST_RUN(test_timeout);
    TEST_RUN(test_refused);
    TEST_RUN(test_connection_bound);
    TEST_RUN(test_curl_channel);
    gw_stop(gw_main);
    gw_stop(gw_short);
    server_stop();
    gwt_teardown();
    return test_finish();
}
