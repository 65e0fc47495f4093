/* gateway/engine.c: the gateway's threads. Each runs one libcurl multi handle and owns
 * the calls handed to it: an inbox (new calls, persisted attempts) filled from any
 * thread and drained by the owner, a timer list (status inquiries due later), and
 * the HTTP transfers in the multi. The multi is driven by its socket interface over
 * epoll: a wake-up costs the sockets that are ready, not a scan of every transfer and
 * connection (curl_multi_perform and curl_multi_poll look at all of them each time).
 * An eventfd in the same epoll set interrupts the wait when the inbox gets something
 * while the thread sleeps (written once per sleep, never while the thread runs).
 * Connections stay open in the multi's cache and are reused call after call.
 * A call lives on one thread from submit to done, so its state needs no lock; shared
 * channel state has its own (breaker.c). A call submitted with persist_on_submit is
 * routed and handed to 'persist' on the submitting thread first; it reaches its own
 * thread through the inbox (persisted, or ended there: 'done' runs on its thread), and
 * the submitter touches it no more once 'persist' ran. */
#include <errno.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/gw_internal.h"
#include "obs/obs.h"

#define POLL_IDLE_MS 1000

/* The gateway thread this OS thread runs (NULL on any other thread). */
static _Thread_local gw_thread_t *running_thread;

bool gw_on_gateway_thread(void) { return running_thread != NULL; }

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static bool global_ok;

static void global_init(void) {
    global_ok = sodium_init() >= 0 && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* ---------------------------------------------------------------- HTTP */

static size_t on_body(char *data, size_t size, size_t count, void *user) {
    size_t bytes = size * count;
    return gw_response_append(user, data, bytes) ? bytes : 0; /* 0 aborts: CURLE_WRITE_ERROR */
}

/* Called on a connected (or reused) connection just before the request goes out.
 * The first time, the request may leave from now on. A second time is curl resending
 * on its own (it retries a request whose reused connection died): refused, so that
 * a request is never sent twice behind our back and "it never left" stays a fact. */
static int on_prereq(void *user, char *primary_ip, char *local_ip, int primary_port, int local_port) {
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    gw_call_t *call = user;
    if (call->request_left) return CURL_PREREQFUNC_ABORT;
    call->request_left = true;
    return CURL_PREREQFUNC_OK;
}

static curl_socket_t on_open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *address);
static int on_close_socket(void *user, curl_socket_t fd);

/* What every call of every channel sets alike: once per handle. A pooled handle is not
 * reset: gw_thread_send sets every option that differs between calls. */
static CURL *easy_new(gw_thread_t *t) {
    CURL *easy = curl_easy_init();
    if (easy == NULL) return NULL;
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, t);
    return easy;
}

static CURL *easy_take(gw_thread_t *t) {
    if (t->easy_free_count > 0) return t->easy_free[--t->easy_free_count];
    return easy_new(t);
}

static void header_add(gw_call_t *call, uint32_t *count, char *line) {
    PC_ASSERT(*count < GW_HEADERS_MAX);
    struct curl_slist *node = &call->header_nodes[*count];
    node->data = line;
    node->next = NULL;
    if (*count > 0) call->header_nodes[*count - 1].next = node;
    (*count)++;
}

/* The call's headers as a list curl only reads, its nodes and lines in the call. */
static void headers_set(gw_call_t *call, const gw_channel_cfg_t *ch, const char *key, bool body) {
    static char accept[] = "Accept: application/json", content_type[] = "Content-Type: application/json",
                no_expect[] = "Expect:";
    uint32_t count = 0;
    header_add(call, &count, accept);
    if (body) header_add(call, &count, content_type);
    header_add(call, &count, no_expect);
    if (ch->api_key[0] != '\0') {
        snprintf(call->header_auth, sizeof call->header_auth, "Authorization: Bearer %s", ch->api_key);
        header_add(call, &count, call->header_auth);
    }
    if (key != NULL) {
        snprintf(call->header_key, sizeof call->header_key, "Idempotency-Key: %s", key);
        header_add(call, &count, call->header_key);
    }
    call->headers = &call->header_nodes[0];
}

static void headers_clear(gw_call_t *call) {
    if (call->headers == NULL) return;
    sodium_memzero(call->header_auth, sizeof call->header_auth); /* the channel's API key */
    call->headers = NULL;
}

static void easy_setup(CURL *easy, gw_call_t *call, const gw_channel_cfg_t *ch, const char *url) {
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, call);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)ch->connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)ch->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, call);
    if (call->request.body != NULL) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->request.body);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)call->request.body_bytes);
    } else {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL); /* no pointer to a freed body stays */
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
}

bool gw_thread_send(gw_thread_t *t, gw_call_t *call, const gw_channel_cfg_t *ch,
                    gw_http_call_t *http, const char *idempotency_key) {
    PC_ASSERT(call->easy == NULL && call->conn == NULL);
    call->request.body = http->body; /* the call's from here on */
    call->request.body_bytes = http->body_bytes;
    http->body = NULL;
    http->body_bytes = 0;
    pc_bytes_reset(&call->response); /* a retry's answer starts empty */
    call->request_left = false;
    call->http_status = 0;
    call->started_ns = pc_mono_ns();
    int own = ch->own_http ? gw_http_send(t, call, ch, http, idempotency_key) : 0;
    if (own != 0) {
        if (own < 0) gw_thread_http_release(t, call);
        return own > 0;
    }
    char url[GW_URL_BYTES_MAX * 2 + 1];
    snprintf(url, sizeof url, "%s%s", ch->url, http->path);
    headers_set(call, ch, idempotency_key, call->request.body != NULL);
    call->easy = easy_take(t);
    if (call->easy == NULL) {
        gw_thread_http_release(t, call);
        return false;
    }
    easy_setup(call->easy, call, ch, url);
    if (curl_multi_add_handle(t->multi, call->easy) != CURLM_OK) {
        gw_thread_http_release(t, call);
        return false;
    }
    return true;
}

void gw_thread_http_release(gw_thread_t *t, gw_call_t *call) {
    if (call->easy != NULL) {
        curl_multi_remove_handle(t->multi, call->easy);
        if (t->easy_free_count < sizeof t->easy_free / sizeof t->easy_free[0]) {
            t->easy_free[t->easy_free_count++] = call->easy;
        } else {
            curl_easy_cleanup(call->easy);
        }
        call->easy = NULL;
    }
    headers_clear(call);
    gw_http_call_clear(call);
    gw_body_free(&call->request); /* a card number */
    gw_body_free(&call->http);
}

/* ---------------------------------------------------------------- inbox and timers */

static void wake(gw_thread_t *t) {
    uint64_t one = 1;
    ssize_t written = write(t->wake_fd, &one, sizeof one);
    (void)written; /* EAGAIN: the counter is already non-zero, the thread will wake */
}

/* Appends the chain head..tail (tail->next NULL) to the inbox; t->mutex held. True:
 * the thread sleeps (or is about to) in epoll_wait with the inbox empty, and the caller
 * writes the eventfd once it has let the lock go (inbox_wake_after); once per sleep: a
 * running thread looks at the inbox before it next waits (wait_ms), so a write to it
 * would carry nothing. Written under the lock, the woken thread at once met it held
 * (a futex wait and wake about every twentieth payment, perf trace). */
static bool inbox_append(gw_thread_t *t, gw_call_t *head, gw_call_t *tail) {
    if (t->inbox_tail) t->inbox_tail->next = head;
    else t->inbox_head = head;
    t->inbox_tail = tail;
    if (!atomic_load_explicit(&t->polling, memory_order_relaxed)) return false;
    atomic_store_explicit(&t->polling, false, memory_order_relaxed); /* the next push finds it woken */
    atomic_fetch_add(&t->waking, 1); /* thread_stop closes the eventfd after this write */
    return true;
}

/* The eventfd write inbox_append asked for, the lock let go. */
static void inbox_wake_after(gw_thread_t *t, bool wake_needed) {
    if (!wake_needed) return;
    wake(t);
    atomic_fetch_sub(&t->waking, 1);
}

/* Appends under the lock; false (nothing queued) when the thread stops and 'fresh'
 * is a new call: a stopping thread takes no new work but finishes what it owns. */
static bool inbox_push(gw_thread_t *t, gw_call_t *call, bool fresh) {
    pthread_mutex_lock(&t->mutex);
    if (fresh && t->stop) {
        pthread_mutex_unlock(&t->mutex);
        return false;
    }
    if (fresh) atomic_fetch_add(&t->active, 1);
    call->next = NULL;
    bool wake_needed = inbox_append(t, call, call);
    pthread_mutex_unlock(&t->mutex);
    inbox_wake_after(t, wake_needed);
    return true;
}

void gw_thread_add_timer(gw_thread_t *t, gw_call_t *call, uint64_t due_ms) {
    call->due_ms = due_ms;
    gw_call_t **at = &t->timers;
    while (*at != NULL && (*at)->due_ms <= due_ms) at = &(*at)->next;
    call->next = *at;
    *at = call;
}

static void timers_run(gw_thread_t *t) {
    uint64_t now_ms = gw_now_ms();
    while (t->timers != NULL && t->timers->due_ms <= now_ms) {
        gw_call_t *call = t->timers;
        t->timers = call->next;
        call->next = NULL;
        gw_call_timer(call);
    }
}

static void inbox_run(gw_thread_t *t, bool *stop) {
    pthread_mutex_lock(&t->mutex);
    gw_call_t *call = t->inbox_head;
    t->inbox_head = t->inbox_tail = NULL;
    *stop = t->stop;
    pthread_mutex_unlock(&t->mutex);
    while (call != NULL) {
        gw_call_t *next = call->next;
        call->next = NULL;
        if (call->phase == GW_CALL_NEW) gw_call_start(call, &t->rng);
        else if (call->phase == GW_CALL_FINISHING) gw_thread_finish(t, call);
        else gw_call_persisted(call);
        call = next;
    }
}

/* Attempt keys' random bits: the calling thread's generator (pc_random_pooled), as a
 * first attempt's key may be made on the submitting thread. */
void gw_random(uint8_t *out, size_t bytes) { pc_random_pooled(out, bytes); }

/* What epoll watches for each socket (fd_watch). A connection curl puts back in its
 * cache stays watched (GW_WATCH_IDLE) rather than removed: the next call on it, which
 * waits for the same event (the answer), then costs no epoll_ctl at all. An idle socket
 * that turns readable (the channel closed it) is removed when it does, so it cannot wake
 * the loop again. GW_WATCH_OPEN marks a connection this thread opened and has not seen
 * closed (curl opens and closes them through on_open_socket and on_close_socket): only
 * such a socket is known to be the one epoll watches. Any other idle number may have
 * been closed, leaving epoll by itself, and reused by a new socket (curl's resolver). */
enum { GW_WATCH_IN = 1, GW_WATCH_OUT = 2, GW_WATCH_ON = 4, GW_WATCH_IDLE = 8, GW_WATCH_OPEN = 16 };

static bool watch_room(gw_thread_t *t, curl_socket_t socket) {
    if ((uint32_t)socket < t->fd_watch_size) return true;
    uint32_t size = t->fd_watch_size ? t->fd_watch_size : 256;
    while (size <= (uint32_t)socket) size *= 2;
    uint8_t *grown = realloc(t->fd_watch, size);
    if (grown == NULL) return false;
    memset(grown + t->fd_watch_size, 0, size - t->fd_watch_size);
    t->fd_watch = grown;
    t->fd_watch_size = size;
    return true;
}

static bool watch_set(gw_thread_t *t, curl_socket_t socket, uint8_t want) {
    uint8_t *watch = &t->fd_watch[socket];
    uint8_t open = *watch & GW_WATCH_OPEN;
    uint8_t now = open ? (uint8_t)(*watch & ~GW_WATCH_IDLE) : *watch; /* our idle connection: still watched */
    if (now == (want | GW_WATCH_ON | open)) {
        *watch = now;
        return true;
    }
    struct epoll_event event = {.events = ((want & GW_WATCH_IN) ? EPOLLIN : 0u) | ((want & GW_WATCH_OUT) ? EPOLLOUT : 0u),
                                .data.fd = socket};
    /* a socket closed while idle left epoll by itself: its number may be a new socket */
    int op = (*watch & GW_WATCH_ON) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(t->epoll_fd, op, socket, &event);
    if (rc != 0 && errno == ENOENT) rc = epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, socket, &event);
    else if (rc != 0 && errno == EEXIST) rc = epoll_ctl(t->epoll_fd, EPOLL_CTL_MOD, socket, &event);
    if (rc != 0) {
        *watch = open;
        obs_logf(OBS_LEVEL_ERROR, "gateway: epoll_ctl: %s", strerror(errno));
        return false;
    }
    *watch = want | GW_WATCH_ON | open;
    return true;
}

static void watch_drop(gw_thread_t *t, curl_socket_t socket) {
    (void)epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, socket, NULL);
    if ((uint32_t)socket < t->fd_watch_size) t->fd_watch[socket] &= GW_WATCH_OPEN;
}

/* curl's connections, opened and closed here so that fd_watch knows which numbers are
 * still the sockets it watched (GW_WATCH_OPEN). Closing takes a socket out of epoll. */
static curl_socket_t on_open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *address) {
    (void)purpose;
    gw_thread_t *t = user;
    curl_socket_t fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd != CURL_SOCKET_BAD && watch_room(t, fd)) t->fd_watch[fd] = GW_WATCH_OPEN;
    return fd;
}

static int on_close_socket(void *user, curl_socket_t fd) {
    gw_thread_t *t = user;
    if ((uint32_t)fd < t->fd_watch_size) t->fd_watch[fd] = 0;
    return close(fd);
}

/* curl's socket callback: which events of which socket it waits for. */
static int on_socket(CURL *easy, curl_socket_t socket, int what, void *user, void *socket_user) {
    (void)easy;
    (void)socket_user;
    gw_thread_t *t = user;
    if (!watch_room(t, socket)) {
        if (what == CURL_POLL_REMOVE) (void)epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, socket, NULL);
        return what == CURL_POLL_REMOVE ? 0 : -1;
    }
    if (what == CURL_POLL_REMOVE) {
        if (t->fd_watch[socket] & GW_WATCH_ON) t->fd_watch[socket] |= GW_WATCH_IDLE;
        return 0;
    }
    uint8_t want = (uint8_t)(((what & CURL_POLL_IN) ? GW_WATCH_IN : 0) | ((what & CURL_POLL_OUT) ? GW_WATCH_OUT : 0));
    return watch_set(t, socket, want) ? 0 : -1;
}

/* An event on a socket curl no longer waits on (idle in its cache): unwatched. */
static bool watch_idle_event(gw_thread_t *t, int socket) {
    if ((uint32_t)socket >= t->fd_watch_size || !(t->fd_watch[socket] & GW_WATCH_IDLE)) return false;
    watch_drop(t, socket);
    return true;
}

/* curl's timer callback: when it wants CURL_SOCKET_TIMEOUT (-1: never). */
static int on_timer(CURLM *multi, long timeout_ms, void *user) {
    (void)multi;
    gw_thread_t *t = user;
    t->curl_due_ns = timeout_ms < 0 ? 0 : pc_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    return 0;
}

static void transfers_done(gw_thread_t *t) {
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        gw_call_t *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        PC_ASSERT(call != NULL && call->easy == msg->easy_handle);
        call->http_status = 0;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->http_status);
        gw_call_http_done(call, (int)msg->data.result);
    }
}

/* Transfers done, whichever client ran them. */
static void transfers_done_all(gw_thread_t *t) {
    transfers_done(t);
    gw_http_finished_run(t);
}

/* curl's timer, when due. */
static void curl_timer_run(gw_thread_t *t) {
    if (t->curl_due_ns == 0 || t->curl_due_ns > pc_mono_ns()) return;
    t->curl_due_ns = 0;
    int running = 0;
    curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* How long to wait; with the inbox empty the thread is marked polling, under the
 * inbox's lock: a push from then on writes the eventfd (inbox_push). */
static int wait_ms(gw_thread_t *t) {
    pthread_mutex_lock(&t->mutex);
    bool queued = t->inbox_head != NULL;
    atomic_store_explicit(&t->polling, !queued, memory_order_relaxed);
    pthread_mutex_unlock(&t->mutex);
    if (queued) return 0;
    uint64_t now_ns = pc_mono_ns();
    uint64_t wait = POLL_IDLE_MS;
    if (t->timers != NULL) {
        uint64_t now_ms = now_ns / 1000000u;
        wait = t->timers->due_ms <= now_ms ? 0 : t->timers->due_ms - now_ms;
    }
    if (t->curl_due_ns != 0) {
        uint64_t curl_ms = t->curl_due_ns <= now_ns ? 0 : (t->curl_due_ns - now_ns + 999999u) / 1000000u;
        if (curl_ms < wait) wait = curl_ms;
    }
    uint64_t http_due_ns = gw_http_next_deadline_ns(t);
    if (http_due_ns != 0) {
        uint64_t http_ms = http_due_ns <= now_ns ? 0 : (http_due_ns - now_ns + 999999u) / 1000000u;
        if (http_ms < wait) wait = http_ms;
    }
    return wait < POLL_IDLE_MS ? (int)wait : POLL_IDLE_MS;
}

/* Waits for ready sockets, a wake-up or a timer, and hands the sockets to curl. */
static void events_run(gw_thread_t *t) {
    struct epoll_event events[GW_EPOLL_EVENTS];
    int count = epoll_wait(t->epoll_fd, events, GW_EPOLL_EVENTS, wait_ms(t));
    /* Awake: pushes until the next wait need no write. Cleared without the inbox's
     * lock, which the pusher that woke us may still hold: a push that still reads it set
     * writes once more (one pass with nothing to do); a wait marks it again under the
     * lock with the inbox looked at (wait_ms), so no push is missed. */
    atomic_store_explicit(&t->polling, false, memory_order_relaxed);
    for (int i = 0; i < count; i++) {
        /* edge-triggered: each write reports once, nothing to read back */
        if (events[i].data.fd == t->wake_fd) continue;
        gw_conn_t *conn = gw_http_conn_of(t, events[i].data.fd);
        if (conn != NULL) {
            gw_http_event(t, conn, events[i].events);
            continue;
        }
        if (watch_idle_event(t, events[i].data.fd)) continue;
        int flags = ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) ? CURL_CSELECT_IN : 0) |
                    ((events[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                    ((events[i].events & EPOLLERR) ? CURL_CSELECT_ERR : 0);
        int running = 0;
        curl_multi_socket_action(t->multi, events[i].data.fd, flags, &running);
    }
}

void gw_thread_note_pass_end(gw_thread_t *t, const gw_call_t *call) {
    gw_pass_end_fn hook = call->callbacks.pass_end;
    if (hook == NULL || running_thread != t) return; /* a submitting thread's persist: no pass */
    for (uint32_t i = 0; i < t->pass_end_count; i++) {
        if (t->pass_ends[i] == hook) return;
    }
    if (t->pass_end_count == GW_PASS_HOOKS_MAX) { /* room for the newest: the oldest runs now */
        t->pass_ends[0]();
        memmove(&t->pass_ends[0], &t->pass_ends[1], (GW_PASS_HOOKS_MAX - 1) * sizeof t->pass_ends[0]);
        t->pass_end_count--;
    }
    t->pass_ends[t->pass_end_count++] = hook;
}

/* The callbacks of this pass are over: their hand-overs go out before the thread waits. */
static void pass_ends_run(gw_thread_t *t) {
    for (uint32_t i = 0; i < t->pass_end_count; i++) t->pass_ends[i]();
    t->pass_end_count = 0;
}

/* Runs until told to stop AND every call it owns has finished. */
static void *thread_main(void *arg) {
    gw_thread_t *t = arg;
    running_thread = t;
    for (;;) {
        bool stop = false;
        inbox_run(t, &stop);
        timers_run(t);
        curl_timer_run(t);
        gw_http_deadlines_run(t);
        transfers_done_all(t);
        pass_ends_run(t);
        if (stop && atomic_load(&t->active) == 0) break;
        events_run(t);
        transfers_done_all(t);
    }
    return NULL;
}

/* ---- calls' memory: ended calls kept for reuse (GW_CALLS_FREE_MAX) ---- */

/* A zeroed call: a kept one, else a fresh one. */
static gw_call_t *call_new(gw_t *gw) { return pc_spares_take(&gw->calls_spare); }

/* Its own allocations are freed already; the card was wiped. */
static void call_free(gw_t *gw, gw_call_t *call) { pc_spares_give(&gw->calls_spare, call); }

void gw_thread_finish(gw_thread_t *t, gw_call_t *call) {
    PC_ASSERT(call->easy == NULL && call->conn == NULL);
    if (running_thread != t) { /* ended while routed on its submitter's thread: 'done' runs on t */
        call->phase = GW_CALL_FINISHING;
        (void)inbox_push(t, call, false);
        return;
    }
    gw_thread_http_release(t, call);
    gw_thread_note_pass_end(t, call);
    call->callbacks.done(call->callbacks.ctx, &call->result);
    gw_config_unref(call->config);
    pc_bytes_free(&call->response);
    sodium_memzero(&call->req.card, sizeof call->req.card);
    PC_ASSERT(atomic_load(&t->active) > 0);
    atomic_fetch_sub(&t->active, 1);
    atomic_fetch_sub(&call->gw->calls, 1);
    call_free(call->gw, call);
}

/* ---------------------------------------------------------------- submitting */

static bool key_valid(const char *key) {
    size_t bytes = strnlen(key, GW_KEY_SIZE);
    return bytes > 0 && bytes < GW_KEY_SIZE && pc_id_valid(key);
}

/* 'bytes' upper-case letters and a NUL: "EUR", "DE". */
static bool upper_code(const char *s, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) {
        if (s[i] < 'A' || s[i] > 'Z') return false;
    }
    return s[bytes] == '\0';
}

/* Text fields end inside their arrays (a caller's unterminated copy is refused, not read past). */
static bool terminated(const gw_request_t *r) {
    return memchr(r->method, '\0', sizeof r->method) && memchr(r->card.number, '\0', sizeof r->card.number) &&
           memchr(r->card.cvc, '\0', sizeof r->card.cvc) && memchr(r->wallet_id, '\0', sizeof r->wallet_id) &&
           memchr(r->bank.routing_number, '\0', sizeof r->bank.routing_number) &&
           memchr(r->bank.account_number, '\0', sizeof r->bank.account_number) &&
           memchr(r->channel, '\0', sizeof r->channel) && memchr(r->challenge_code, '\0', sizeof r->challenge_code);
}

static bool routed_valid(const gw_request_t *r) {
    if (r->amount_minor <= 0 || !upper_code(r->currency, 3) || r->method[0] == '\0') return false;
    if (r->country[0] != '\0' && !upper_code(r->country, 2)) return false;
    if (strcmp(r->method, "card") == 0) {
        return r->card.number[0] != '\0' && r->card.exp_month >= 1 && r->card.exp_month <= 12;
    }
    if (strcmp(r->method, "wallet") == 0) return r->wallet_id[0] != '\0';
    if (strcmp(r->method, "bank_transfer") == 0) return r->bank.account_number[0] != '\0';
    return true;
}

/* Ids that go into a URL path must be plain ids. */
static bool request_valid(const gw_request_t *r) {
    if (r->op >= GW_OP_COUNT || !pc_id_valid(r->reference) || !terminated(r)) return false;
    if (r->currency[0] != '\0' && !upper_code(r->currency, 3)) return false;
    if (r->op == GW_OP_AUTHORIZE || r->op == GW_OP_PAYOUT) return routed_valid(r);
    if (r->channel[0] == '\0') return false;
    switch (r->op) {
    case GW_OP_CAPTURE:
    case GW_OP_REFUND: return pc_id_valid(r->channel_ref) && r->amount_minor > 0;
    case GW_OP_VOID: return pc_id_valid(r->channel_ref);
    case GW_OP_CHALLENGE:
        return pc_id_valid(r->challenge_id) && r->challenge_code[0] != '\0' && r->amount_minor > 0;
    case GW_OP_STATUS: return key_valid(r->status_key) && r->status_op != GW_OP_STATUS && r->status_op < GW_OP_COUNT;
    default: return false;
    }
}

static gw_config_t *config_take(gw_t *gw) {
    pthread_mutex_lock(&gw->config_mutex);
    gw_config_t *config = gw->config;
    gw_config_ref(config);
    pthread_mutex_unlock(&gw->config_mutex);
    return config;
}

/* A call whose first attempt is routed and persisted on the submitting thread
 * (gw_callbacks_t.persist_on_submit): not from a gateway thread, whose own pass the
 * inbox serves as well. */
static bool submits_here(const gw_call_t *call) {
    return call->callbacks.persist_on_submit && call->callbacks.persist != NULL && call->req.op != GW_OP_STATUS &&
           running_thread == NULL;
}

/* Counts a call the thread will own (as inbox_push does for a fresh one) without
 * queueing it; false when the thread stops. */
static bool thread_adopt(gw_thread_t *t) {
    pthread_mutex_lock(&t->mutex);
    bool stopping = t->stop;
    if (!stopping) atomic_fetch_add(&t->active, 1);
    pthread_mutex_unlock(&t->mutex);
    return !stopping;
}

pc_status gw_submit(gw_t *gw, const gw_request_t *request, const gw_callbacks_t *callbacks) {
    if (callbacks == NULL || callbacks->done == NULL || !request_valid(request)) {
        return PC_GATEWAY_REQUEST_INVALID;
    }
    if (atomic_load(&gw->stopping)) return PC_SHUTTING_DOWN;
    if (atomic_fetch_add(&gw->calls, 1) >= GW_CALLS_MAX) {
        atomic_fetch_sub(&gw->calls, 1);
        return PC_LIMIT_REACHED;
    }
    gw_call_t *call = call_new(gw);
    if (call == NULL) {
        atomic_fetch_sub(&gw->calls, 1);
        return PC_NO_MEMORY;
    }
    call->gw = gw;
    call->req = *request;
    call->callbacks = *callbacks;
    call->channel_index = -1;
    call->phase = GW_CALL_NEW;
    pc_bytes_init(&call->response, GW_RESPONSE_BYTES_MAX);
    call->config = config_take(gw);
    uint32_t n = atomic_fetch_add(&gw->next_thread, 1) % gw->thread_count;
    call->thread = &gw->threads[n];
    bool on_submit = submits_here(call);
    if (!(on_submit ? thread_adopt(call->thread) : inbox_push(call->thread, call, true))) {
        gw_config_unref(call->config);
        call_free(gw, call);
        atomic_fetch_sub(&gw->calls, 1);
        return PC_SHUTTING_DOWN;
    }
    atomic_fetch_add(&gw->submitted, 1);
    if (on_submit) { /* routed and persisted here: the call is its thread's (and persist's) after */
        static _Thread_local uint64_t rng;
        if (rng == 0) randombytes_buf(&rng, sizeof rng);
        gw_call_start(call, &rng);
    }
    return PC_OK;
}

/* Persisted attempts this OS thread holds back (gw_persisted_hold) until
 * gw_persisted_release: a writer's batch of completions hands them over at once. */
static _Thread_local struct {
    bool holding;
    gw_call_t *head;
    gw_call_t *tail;
} persisted_held;

void gw_persisted_hold(void) { persisted_held.holding = true; }

/* Appends a chain of calls (all of one thread) to its inbox: one lock, at most one wake. */
static void inbox_push_chain(gw_thread_t *t, gw_call_t *head, gw_call_t *tail) {
    pthread_mutex_lock(&t->mutex);
    bool wake_needed = inbox_append(t, head, tail);
    pthread_mutex_unlock(&t->mutex);
    inbox_wake_after(t, wake_needed);
}

void gw_persisted_release(void) {
    persisted_held.holding = false;
    gw_call_t *rest = persisted_held.head;
    persisted_held.head = persisted_held.tail = NULL;
    while (rest != NULL) { /* one chain per gateway thread, each in the order persisted */
        gw_thread_t *t = rest->thread;
        gw_call_t *head = NULL, *tail = NULL, *others = NULL, *others_tail = NULL;
        while (rest != NULL) {
            gw_call_t *call = rest;
            rest = call->next;
            call->next = NULL;
            gw_call_t **last = call->thread == t ? &tail : &others_tail;
            if (*last != NULL) (*last)->next = call;
            else if (call->thread == t) head = call;
            else others = call;
            *last = call;
        }
        inbox_push_chain(t, head, tail);
        rest = others;
    }
}

void gw_attempt_persisted(gw_call_t *call, pc_status status) {
    call->persist_status = status;
    if (!persisted_held.holding) {
        (void)inbox_push(call->thread, call, false);
        return;
    }
    call->next = NULL;
    if (persisted_held.tail != NULL) persisted_held.tail->next = call;
    else persisted_held.head = call;
    persisted_held.tail = call;
}

/* ---------------------------------------------------------------- waiting (tools) */

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool done;
    gw_result_t *out;
    gw_persist_fn persist;
    void *persist_ctx;
} waiter;

static void wait_done(void *ctx, const gw_result_t *result) {
    waiter *w = ctx;
    pthread_mutex_lock(&w->mutex);
    *w->out = *result;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
}

static void wait_persist(void *ctx, gw_call_t *call, const gw_attempt_t *attempt) {
    waiter *w = ctx;
    w->persist(w->persist_ctx, call, attempt);
}

pc_status gw_call_wait(gw_t *gw, const gw_request_t *request, gw_persist_fn persist,
                       void *persist_ctx, gw_result_t *out) {
    waiter w = {.done = false, .out = out, .persist = persist, .persist_ctx = persist_ctx};
    pthread_mutex_init(&w.mutex, NULL);
    pthread_cond_init(&w.cond, NULL);
    gw_callbacks_t callbacks = {.persist = persist ? wait_persist : NULL, .done = wait_done, .ctx = &w};
    pc_status status = gw_submit(gw, request, &callbacks);
    if (status == PC_OK) {
        pthread_mutex_lock(&w.mutex);
        while (!w.done) pthread_cond_wait(&w.cond, &w.mutex);
        pthread_mutex_unlock(&w.mutex);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.mutex);
    return status;
}

/* ---------------------------------------------------------------- lifetime */

static bool thread_start(gw_t *gw, gw_thread_t *t) {
    t->gw = gw;
    pthread_mutex_init(&t->mutex, NULL);
    randombytes_buf(&t->rng, sizeof t->rng);
    t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    t->multi = curl_multi_init();
    /* EPOLLET: every write is an edge (one wake-up), so the counter is never read back;
     * at most one write per sleep, it cannot reach the eventfd's limit */
    struct epoll_event event = {.events = EPOLLIN | EPOLLET, .data.fd = t->wake_fd};
    if (t->multi == NULL || t->epoll_fd < 0 || t->wake_fd < 0 ||
        epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->wake_fd, &event) != 0) {
        return false;
    }
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, (long)GW_IDLE_CONNECTIONS_MAX);
    t->started = pthread_create(&t->thread, NULL, thread_main, t) == 0;
    if (t->started) pthread_setname_np(t->thread, "paycore-gw");
    return t->started;
}

static void thread_stop(gw_thread_t *t) {
    if (t->started) {
        pthread_mutex_lock(&t->mutex);
        t->stop = true;
        pthread_mutex_unlock(&t->mutex);
        wake(t);
        pthread_join(t->thread, NULL);
        /* a pusher that queued before the stop may still be writing the eventfd: the
         * thread finished its call, the pusher's write is only a few instructions on */
        while (atomic_load(&t->waking) != 0) sched_yield();
    }
    PC_ASSERT(t->inbox_head == NULL && t->timers == NULL);
    gw_http_close_all(t);
    for (uint32_t i = 0; i < t->easy_free_count; i++) curl_easy_cleanup(t->easy_free[i]);
    if (t->multi != NULL) curl_multi_cleanup(t->multi);
    if (t->epoll_fd >= 0) close(t->epoll_fd);
    if (t->wake_fd >= 0) close(t->wake_fd);
    free(t->fd_watch);
    pthread_mutex_destroy(&t->mutex);
}

pc_status gw_start(gw_t **out, const gw_options_t *options, gw_config_error_t *error) {
    *out = NULL;
    memset(error, 0, sizeof *error);
    pthread_once(&global_once, global_init);
    if (!global_ok || options->config_path == NULL) return PC_INTERNAL;
    uint32_t threads = options->threads == 0 ? 1 : options->threads;
    if (threads > GW_THREADS_MAX) return PC_INVALID_ARGUMENT;
    gw_t *gw = calloc(1, sizeof *gw);
    if (gw == NULL) return PC_NO_MEMORY;
    pthread_mutex_init(&gw->config_mutex, NULL);
    pc_spares_init(&gw->calls_spare, sizeof(gw_call_t), GW_CALLS_FREE_MAX);
    pthread_mutex_init(&gw->listener_mutex, NULL);
    gw->config_path = pc_strdup(options->config_path);
    pc_status status = gw_config_load(options->config_path, NULL, &gw->config, error);
    gw->threads = calloc(threads, sizeof *gw->threads);
    if (status == PC_OK && (gw->threads == NULL || gw->config_path == NULL)) status = PC_NO_MEMORY;
    for (uint32_t i = 0; status == PC_OK && i < threads; i++) {
        gw->thread_count++;
        if (!thread_start(gw, &gw->threads[i])) status = PC_INTERNAL;
    }
    if (status != PC_OK) {
        gw_stop(gw);
        return status;
    }
    obs_logf(OBS_LEVEL_INFO, "gateway: %u channels from %s (routing %s)", gw->config->channel_count,
             gw->config_path, gw_strategy_name(gw->config->strategy));
    *out = gw;
    return PC_OK;
}

void gw_stop(gw_t *gw) {
    if (gw == NULL) return;
    atomic_store(&gw->stopping, true);
    for (uint32_t i = 0; i < gw->thread_count; i++) thread_stop(&gw->threads[i]);
    PC_ASSERT(atomic_load(&gw->calls) == 0);
    gw_config_unref(gw->config);
    free(gw->threads);
    free(gw->config_path);
    pc_spares_destroy(&gw->calls_spare);
    pthread_mutex_destroy(&gw->config_mutex);
    pthread_mutex_destroy(&gw->listener_mutex);
    free(gw);
}

pc_status gw_reload(gw_t *gw, gw_config_error_t *error) {
    pthread_mutex_lock(&gw->config_mutex);
    gw_config_t *fresh = NULL;
    pc_status status = gw_config_load(gw->config_path, gw->config, &fresh, error);
    gw_config_t *old = NULL;
    if (status == PC_OK) {
        old = gw->config;
        gw->config = fresh;
    }
    pthread_mutex_unlock(&gw->config_mutex);
    gw_config_unref(old); /* calls still running keep their own reference */
    atomic_fetch_add(status == PC_OK ? &gw->reloads_ok : &gw->reloads_refused, 1);
    if (status == PC_OK) {
        obs_logf(OBS_LEVEL_INFO, "gateway: reloaded %s: %u channels (routing %s)", gw->config_path,
                 fresh->channel_count, gw_strategy_name(fresh->strategy));
    } else {
        obs_logf(OBS_LEVEL_ERROR, "gateway: reload of %s refused (line %u: %s); the previous "
                 "configuration stays", gw->config_path, error->line, error->message);
    }
    return status;
}

pc_status gw_route(gw_t *gw, const gw_request_t *request, gw_decision_t *out) {
    static _Thread_local uint64_t rng;
    if (rng == 0) randombytes_buf(&rng, sizeof rng);
    gw_config_t *config = config_take(gw);
    pc_status status = gw_route_decide(config, request, gw_now_ms(), &rng, out);
    gw_config_unref(config);
    return status;
}

pc_status gw_channel_terms(gw_t *gw, const char *channel, gw_channel_terms_t *out) {
    memset(out, 0, sizeof *out);
    gw_config_t *config = config_take(gw);
    int32_t index = gw_config_find(config, channel);
    if (index >= 0) {
        out->authorization_window_s = config->channels[index].authorization_window_s;
        out->partial_captures = config->channels[index].partial_captures;
    }
    gw_config_unref(config);
    return index >= 0 ? PC_OK : PC_NOT_FOUND;
}
