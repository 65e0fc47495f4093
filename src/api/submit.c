/* api/submit.c: handing ledger commands to the writer, and Idempotency-Keys.
 *
 * A command's connection is suspended while the writer runs it; done() (writer
 * thread) records the commit status and resumes it; the reply is then made on an API
 * thread. Nothing is acknowledged before the commit reported PC_OK.
 *
 * Idempotency-Key (POST only, scoped per API key): a request hash (route, path
 * parameters, body) is kept with the reply. The reply of a request that reaches the
 * writer is rendered inside the batch's transaction and stored there, so it commits
 * atomically with the ledger rows it describes: after a crash either both exist or
 * neither. Requests refused before the writer (400s) are not stored. Two requests with
 * the same key at once: the second gets 409 idempotency_key_in_progress. Stored replies
 * expire after the retention and their room is bounded (idempotency.c).
 *
 * A key the in-memory index does not hold has no stored row: the request runs without
 * reading the store. The index is only asked while the key is held in the in-flight
 * set, and every row of a key is written by a request holding it (added to the index
 * before its commit, released after): so the answer cannot be overtaken. */
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "obs/obs.h"
#include "store/store_api.h"

#define INFLIGHT_BUCKETS 4096

typedef struct inflight_node inflight_node;
struct inflight_node {
    inflight_node *next;
    uint32_t bucket;
    char name[];  /* key_id '\n' idempotency key */
};

/* The in-flight set lives behind server->inflight as INFLIGHT_BUCKETS list heads. */
static inflight_node **inflight_buckets(api_server_t *server) {
    return (inflight_node **)server->inflight;
}

pc_status api_inflight_init(api_server_t *server) {
    server->inflight = calloc(INFLIGHT_BUCKETS, sizeof(inflight_node *));
    pthread_mutex_init(&server->inflight_mutex, NULL);
    return server->inflight != NULL ? PC_OK : PC_NO_MEMORY;
}

void api_inflight_free(api_server_t *server) {
    inflight_node **buckets = inflight_buckets(server);
    for (uint32_t i = 0; buckets != NULL && i < INFLIGHT_BUCKETS; i++) {
        while (buckets[i] != NULL) {
            inflight_node *next = buckets[i]->next;
            free(buckets[i]);
            buckets[i] = next;
        }
    }
    free(server->inflight);
    server->inflight = NULL;
    pthread_mutex_destroy(&server->inflight_mutex);
}

/* The name's length (it always fits: a key id and a key of at most
 * API_IDEMPOTENCY_KEY_BYTES_MAX bytes). */
static size_t inflight_name(const api_request_t *req, char *out, size_t out_bytes) {
    size_t bytes = pc_str_join(out, out_bytes, (const char *const[]){req->caller.id, "\n", req->idem_key}, 3);
    return bytes < out_bytes ? bytes : out_bytes - 1;
}

/* The node added, or NULL when the name is there already (or the set is full). The
 * request keeps the node while it holds the key: inflight_remove unlinks it by address,
 * without making and hashing the name again. */
static inflight_node *inflight_add(api_server_t *server, const char *name, size_t name_bytes) {
    uint32_t bucket = (uint32_t)(pc_hash64(name, name_bytes) % INFLIGHT_BUCKETS);
    inflight_node *added = NULL;
    pthread_mutex_lock(&server->inflight_mutex);
    inflight_node **head = &inflight_buckets(server)[bucket];
    bool present = false;
    for (inflight_node *node = *head; node != NULL && !present; node = node->next) {
        present = strcmp(node->name, name) == 0;
    }
    if (!present && server->inflight_count < API_INFLIGHT_MAX) {
        inflight_node *node = malloc(sizeof(*node) + name_bytes + 1);
        if (node != NULL) {
            memcpy(node->name, name, name_bytes + 1);
            node->bucket = bucket;
            node->next = *head;
            *head = node;
            server->inflight_count++;
            added = node;
        }
    }
    pthread_mutex_unlock(&server->inflight_mutex);
    return added;
}

static void inflight_remove(api_server_t *server, inflight_node *node) {
    pthread_mutex_lock(&server->inflight_mutex);
    for (inflight_node **at = &inflight_buckets(server)[node->bucket]; *at != NULL; at = &(*at)->next) {
        if (*at == node) {
            *at = node->next;
            free(node);
            server->inflight_count--;
            break;
        }
    }
    pthread_mutex_unlock(&server->inflight_mutex);
}

/* The request's fingerprint: route, path parameters and body. */
static void request_hash(const api_request_t *req, uint8_t out[32]) {
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, 32);
    const char *route = api_route_name((uint32_t)req->route_index);
    crypto_generichash_update(&state, (const unsigned char *)route, strlen(route) + 1);
    for (uint32_t i = 0; i < req->param_count; i++) {
        crypto_generichash_update(&state, (const unsigned char *)req->params[i],
                                  strlen(req->params[i]) + 1);
    }
    if (req->body_bytes > 0) {
        crypto_generichash_update(&state, (const unsigned char *)req->body, req->body_bytes);
    }
    crypto_generichash_final(&state, out, 32);
}

static bool idem_replay(api_request_t *req, const store_api_idem_t *stored) {
    if (sodium_memcmp(stored->request_hash, req->idem_hash, 32) != 0) {
        api_reply_error(req, PC_IDEMPOTENCY_KEY_REUSED, "Idempotency-Key", NULL);
        return false;
    }
    if (!api_payments_replay(req, stored->body, stored->body_bytes, stored->http_status)) {
        api_reply_raw(req, stored->http_status, PC_OK, stored->body, stored->body_bytes, "application/json");
    }
    api_reply_header(req, "Idempotent-Replayed", "true");
    req->idem_replayed = true;
    return false;
}

/* A key that may have a stored reply: true when the request runs (none, or expired);
 * false when it was answered (the replay, a conflict, a read error). */
static bool idem_stored_check(api_request_t *req) {
    store_reader_t *reader = api_reader(req);
    if (reader == NULL) {
        api_reply_error(req, PC_STORE_READ_FAILED, NULL, NULL);
        return false;
    }
    store_api_idem_t stored;
    bool found;
    pc_status status = store_api_idem_get(reader, req->caller.id, req->idem_key, &stored, &found);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return false;
    }
    if (found && !api_idem_expired(req->server, stored.created_ns)) {
        bool run = idem_replay(req, &stored);
        free(stored.body);
        return run;
    }
    free(stored.body); /* an expired reply is no reply: the request runs again */
    return true;
}

bool api_idem_begin(api_request_t *req) {
    const char *key = req->header_idempotency_key; /* request_headers read it */
    if (key == NULL || strcmp(req->method, "POST") != 0 || !req->has_caller) return true;
    size_t bytes = strlen(key);
    if (bytes == 0 || bytes > API_IDEMPOTENCY_KEY_BYTES_MAX) {
        api_reply_error(req, PC_IDEMPOTENCY_KEY_INVALID, "Idempotency-Key", NULL);
        return false;
    }
    req->idem_key = api_alloc(req, bytes + 1);
    if (req->idem_key == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return false;
    }
    memcpy(req->idem_key, key, bytes + 1);
    request_hash(req, req->idem_hash);
    char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
    size_t name_bytes = inflight_name(req, name, sizeof name);
    req->idem_node = inflight_add(req->server, name, name_bytes);
    if (req->idem_node == NULL) {
        api_reply_error(req, PC_IDEMPOTENCY_KEY_IN_PROGRESS, "Idempotency-Key", NULL);
        return false;
    }
    req->idem_held = true;
    req->idem_new = !idem_index_may_hold(req->server->idem_index, req->caller.id, key);
    if (!req->idem_new && !idem_stored_check(req)) return false;
    if (!api_idem_room(req->server, req->caller.id)) {
        api_reply_error(req, PC_IDEMPOTENCY_STORAGE_FULL, "Idempotency-Key", NULL);
        api_reply_header(req, "Retry-After", "60");
        return false;
    }
    return true;
}

void api_idem_end(api_request_t *req) {
    if (!req->idem_held) return;
    inflight_remove(req->server, req->idem_node);
    req->idem_node = NULL;
    req->idem_held = false;
}

/* ---- the writer side ---- */

/* Writer thread, inside the batch transaction: the handler's rows, then the stored
 * reply of an Idempotency-Key. */
static pc_status submit_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    api_request_t *req = cmd->user;
    if (req->in_tx != NULL) {
        pc_status status = req->in_tx(req, tx);
        if (status != PC_OK) return status;
    }
    if (req->idem_key == NULL) return PC_OK;
    req->on_done(req, cmd);
    req->on_done = NULL; /* rendered: the API thread only sends it */
    char *stored_text = req->idem_stored ? json_dumps(req->idem_stored, JSON_COMPACT) : NULL;
    const char *body = stored_text ? stored_text : req->reply_body;
    size_t body_bytes = stored_text ? strlen(stored_text) : req->reply_bytes;
    pc_status status = body != NULL ? api_idem_store(req, tx, body, body_bytes) : PC_NO_MEMORY;
    free(stored_text);
    return status;
}

/* ---- requests waiting for the writer (the request timeout) ---- */

/* Appended at the tail: every request waits the same request_timeout_ms from when it
 * is linked (under the mutex), so the list stays in deadline order and the reaper
 * looks at its head only. */
static void waiting_link(api_server_t *server, api_request_t *req) {
    req->waiting = true;
    req->wait_next = NULL;
    req->wait_prev = server->waiting_tail;
    if (server->waiting_tail != NULL) server->waiting_tail->wait_next = req;
    else server->waiting_head = req;
    server->waiting_tail = req;
}

static void waiting_unlink(api_server_t *server, api_request_t *req) {
    if (!req->waiting) return;
    if (req->wait_prev != NULL) req->wait_prev->wait_next = req->wait_next;
    else server->waiting_head = req->wait_next;
    if (req->wait_next != NULL) req->wait_next->wait_prev = req->wait_prev;
    else server->waiting_tail = req->wait_prev;
    req->waiting = false;
}

#define REAPER_IDLE_MS 1000 /* the longest sleep: the head's deadline is usually sooner */
#define REAPER_BATCH 256

/* How long the reaper sleeps: until the oldest waiting request is due. A request linked
 * later is due later (waiting_link), and one linked while none waits is due a whole
 * request_timeout_ms after the sleep began: nothing needs to wake the reaper early. */
static uint64_t reaper_sleep_ms(const api_server_t *server, uint64_t now_ns) {
    const api_request_t *head = server->waiting_head;
    uint64_t timeout_ms = server->config.request_timeout_ms;
    if (head == NULL) return timeout_ms < REAPER_IDLE_MS ? timeout_ms : REAPER_IDLE_MS;
    if (head->deadline_ns <= now_ns) return 0;
    uint64_t ms = (head->deadline_ns - now_ns + 999999u) / 1000000u;
    return ms < REAPER_IDLE_MS ? ms : REAPER_IDLE_MS;
}

/* Marks (under the mutex) up to REAPER_BATCH overdue requests; resumes them after. */
static void *reaper_run(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-reaper"); /* per-thread CPU in top, perf */
    api_server_t *server = arg;
    api_request_t *due[REAPER_BATCH];
    pthread_mutex_lock(&server->waiting_mutex);
    while (!server->reaper_stop) {
        uint64_t sleep_ms = reaper_sleep_ms(server, pc_mono_ns());
        if (sleep_ms > 0) {
            struct timespec until = pc_realtime_after_ms(sleep_ms);
            pthread_cond_timedwait(&server->waiting_cond, &server->waiting_mutex, &until);
        }
        uint64_t now_ns = pc_mono_ns();
        uint32_t due_count = 0;
        while (server->waiting_head != NULL && server->waiting_head->deadline_ns <= now_ns &&
               due_count < REAPER_BATCH) {
            api_request_t *req = server->waiting_head;
            waiting_unlink(server, req);
            req->timed_out = true; /* done() will not resume it: we do */
            due[due_count++] = req;
        }
        pthread_mutex_unlock(&server->waiting_mutex);
        /* the MHD reference keeps each alive: its connection stays suspended until now */
        for (uint32_t i = 0; i < due_count; i++) api_request_wake(due[i]);
        pthread_mutex_lock(&server->waiting_mutex);
    }
    pthread_mutex_unlock(&server->waiting_mutex);
    return NULL;
}

pc_status api_reaper_start(api_server_t *server) {
    pthread_mutex_init(&server->waiting_mutex, NULL);
    pthread_cond_init(&server->waiting_cond, NULL);
    if (server->config.request_timeout_ms == 0) return PC_OK;
    if (pthread_create(&server->reaper, NULL, reaper_run, server) != 0) return PC_INTERNAL;
    server->reaper_started = true;
    return PC_OK;
}

void api_reaper_stop(api_server_t *server) {
    if (server->reaper_started) {
        pthread_mutex_lock(&server->waiting_mutex);
        server->reaper_stop = true;
        pthread_cond_signal(&server->waiting_cond);
        pthread_mutex_unlock(&server->waiting_mutex);
        pthread_join(server->reaper, NULL);
        server->reaper_started = false;
    }
}

/* Wakes a request whose answer is made (its MHD thread sends it) and drops the
 * answerer's reference. */
static void resume_now(void *arg) {
    api_request_t *req = arg;
    api_server_t *server = req->server;
    api_request_wake(req);
    api_request_release(req);
    atomic_fetch_sub(&server->resumes_deferred, 1);
}

/* Inside a batch of the calling thread (pc_batch_begin: a payments stage thread's take
 * of flows) the resume waits for the batch's end, with the others of the batch: the
 * MHD thread is woken once for them all and sends them in one pass of its loop. Each
 * MHD_resume_connection still signals MHD's inter-thread channel, but only the first
 * finds the thread asleep. Counted until done: the server does not stop MHD (which
 * frees the connection) before every deferred resume ran. */
static void resume_or_defer(api_request_t *req) {
    api_server_t *server = req->server;
    atomic_fetch_add(&server->resumes_deferred, 1);
    /* on the engine the answer is written here: nothing to batch */
    if (req->on_engine || !pc_batch_defer(resume_now, req)) resume_now(req);
}

/* Writer thread, after the commit (or its failure): updates what memory mirrors
 * (keys), wakes the request unless it was already answered 503 request_timeout, and
 * drops the writer's reference. */
static void submit_done(writer_cmd_t *cmd, pc_status commit_status) {
    api_request_t *req = cmd->user;
    api_server_t *server = req->server;
    if (commit_status == PC_OK && req->after_commit != NULL) req->after_commit(req);
    if (commit_status == PC_OK) api_idem_committed(req);
    pthread_mutex_lock(&server->waiting_mutex);
    bool timed_out = req->timed_out;
    waiting_unlink(server, req);
    req->commit_status = commit_status;
    pthread_mutex_unlock(&server->waiting_mutex);
    if (!timed_out) resume_or_defer(req);
    else api_request_release(req);
}

void api_submit(api_request_t *req, writer_cmd_t *cmd, api_in_tx_fn in_tx, api_done_fn on_done) {
    PC_ASSERT(on_done != NULL);
    PC_ASSERT(!atomic_load(&req->replied));
    req->cmd = cmd;
    req->in_tx = in_tx;
    req->on_done = on_done;
    cmd->user = req;
    cmd->done = submit_done;
    cmd->in_transaction = in_tx != NULL || req->idem_key != NULL ? submit_in_tx : NULL;
    api_server_t *server = req->server;
    pthread_rwlock_rdlock(&server->writer_lock);
    if (atomic_load(&server->draining) || server->writer == NULL) {
        pthread_rwlock_unlock(&server->writer_lock);
        api_reply_error(req, PC_SHUTTING_DOWN, NULL, NULL);
        api_reply_header(req, "Retry-After", "1");
        return;
    }
    req->phase = API_PHASE_WAITING;
    if (!req->on_engine) MHD_suspend_connection(req->connection);
    atomic_fetch_add(&req->refs, 1); /* the writer's, dropped by done() */
    pthread_mutex_lock(&server->waiting_mutex);
    if (server->config.request_timeout_ms > 0) {
        req->deadline_ns = pc_mono_ns() + (uint64_t)server->config.request_timeout_ms * 1000000u;
        waiting_link(server, req);
    }
    pthread_mutex_unlock(&server->waiting_mutex);
    pc_status status = writer_submit(server->writer, cmd);
    pthread_rwlock_unlock(&server->writer_lock);
    if (status != PC_OK) {
        /* done() will not run: take the writer's part back and wake it ourselves */
        pthread_mutex_lock(&server->waiting_mutex);
        bool timed_out = req->timed_out;
        waiting_unlink(server, req);
        req->commit_status = status;
        pthread_mutex_unlock(&server->waiting_mutex);
        atomic_fetch_sub(&req->refs, 1);
        if (timed_out) return;
        if (!req->on_engine) {
            MHD_resume_connection(req->connection);
            return;
        }
        req->phase = API_PHASE_BODY; /* still in the engine's handler: it sends the reply */
        api_submit_finish(req);
    }
}

void api_submit_finish(api_request_t *req) {
    if (req->commit_status != PC_OK) {
        api_reply_error(req, req->commit_status, NULL, NULL);
        if (pc_status_transient(req->commit_status)) api_reply_header(req, "Retry-After", "1");
        if (req->commit_status != PC_WRITER_QUEUE_FULL) {
            obs_logf(OBS_LEVEL_ERROR, "writer command failed: %s (request %s)",
                     pc_status_code(req->commit_status), req->request_id);
        }
        return;
    }
    if (req->on_done != NULL) req->on_done(req, req->cmd);
    PC_ASSERT(atomic_load(&req->replied));
}

/* ---- deferred answers (payments: a channel call between request and answer) ---- */

void api_defer(api_request_t *req) {
    PC_ASSERT(!atomic_load(&req->replied));
    api_server_t *server = req->server;
    req->cmd = NULL;
    req->on_done = NULL;
    req->commit_status = PC_OK;
    req->phase = API_PHASE_WAITING;
    if (!req->on_engine) MHD_suspend_connection(req->connection);
    atomic_fetch_add(&req->refs, 1); /* the deferred answer's, dropped by api_resume */
    pthread_mutex_lock(&server->waiting_mutex);
    if (server->config.request_timeout_ms > 0) {
        req->deadline_ns = pc_mono_ns() + (uint64_t)server->config.request_timeout_ms * 1000000u;
        waiting_link(server, req);
    }
    pthread_mutex_unlock(&server->waiting_mutex);
}

void api_resume(api_request_t *req) {
    api_server_t *server = req->server;
    pthread_mutex_lock(&server->waiting_mutex);
    bool timed_out = req->timed_out;
    waiting_unlink(server, req);
    pthread_mutex_unlock(&server->waiting_mutex);
    PC_ASSERT(atomic_load(&req->replied));
    /* unlinked: the request timeout no longer resumes it; its connection stays
     * suspended until resume_now */
    if (!timed_out) resume_or_defer(req);
    else api_request_release(req);
}

void api_resumes_wait(api_server_t *server) {
    while (atomic_load(&server->resumes_deferred) != 0) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

pc_status api_deferred_idem_put(api_request_t *req, store_tx_t *tx) {
    if (req->idem_key == NULL || !atomic_load(&req->replied)) return PC_OK;
    if (req->reply_body == NULL) return PC_NO_MEMORY;
    return api_idem_store(req, tx, req->reply_body, req->reply_bytes);
}

void api_deferred_committed(api_request_t *req, bool committed) {
    if (committed) api_idem_committed(req);
    req->idem_bytes_delta = 0;
}
