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
 * the same key at once: the second gets 409 idempotency_key_in_progress. */
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "obs/obs.h"
#include "store/store_api.h"

#define INFLIGHT_BUCKETS 4096

typedef struct inflight_node inflight_node;
struct inflight_node {
    inflight_node *next;
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

static void inflight_name(const api_request_t *req, char *out, size_t out_bytes) {
    snprintf(out, out_bytes, "%s\n%s", req->caller.id, req->idem_key);
}

/* true when added; false when already there (or full). */
static bool inflight_add(api_server_t *server, const char *name) {
    uint32_t bucket = (uint32_t)(pc_hash64(name, strlen(name)) % INFLIGHT_BUCKETS);
    bool added = false;
    pthread_mutex_lock(&server->inflight_mutex);
    inflight_node **head = &inflight_buckets(server)[bucket];
    bool present = false;
    for (inflight_node *node = *head; node != NULL && !present; node = node->next) {
        present = strcmp(node->name, name) == 0;
    }
    if (!present && server->inflight_count < API_INFLIGHT_MAX) {
        inflight_node *node = malloc(sizeof(*node) + strlen(name) + 1);
        if (node != NULL) {
            strcpy(node->name, name);
            node->next = *head;
            *head = node;
            server->inflight_count++;
            added = true;
        }
    }
    pthread_mutex_unlock(&server->inflight_mutex);
    return added;
}

static void inflight_remove(api_server_t *server, const char *name) {
    uint32_t bucket = (uint32_t)(pc_hash64(name, strlen(name)) % INFLIGHT_BUCKETS);
    pthread_mutex_lock(&server->inflight_mutex);
    for (inflight_node **at = &inflight_buckets(server)[bucket]; *at != NULL; at = &(*at)->next) {
        if (strcmp((*at)->name, name) == 0) {
            inflight_node *node = *at;
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
    api_reply_raw(req, stored->http_status, PC_OK, stored->body, stored->body_bytes,
                  "application/json");
    api_reply_header(req, "Idempotent-Replayed", "true");
    req->idem_replayed = true;
    return false;
}

bool api_idem_begin(api_request_t *req) {
    const char *key = api_header(req, "Idempotency-Key");
    if (key == NULL || strcmp(req->method, "POST") != 0 || !req->has_caller) return true;
    size_t bytes = strlen(key);
    if (bytes == 0 || bytes > API_IDEMPOTENCY_KEY_BYTES_MAX) {
        api_reply_error(req, PC_IDEMPOTENCY_KEY_INVALID, "Idempotency-Key", NULL);
        return false;
    }
    req->idem_key = api_alloc(req, bytes + 1);
    store_reader_t *reader = api_reader(req);
    if (req->idem_key == NULL || reader == NULL) {
        api_reply_error(req, req->idem_key ? PC_STORE_READ_FAILED : PC_NO_MEMORY, NULL, NULL);
        return false;
    }
    memcpy(req->idem_key, key, bytes + 1);
    request_hash(req, req->idem_hash);
    char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
    inflight_name(req, name, sizeof name);
    if (!inflight_add(req->server, name)) {
        api_reply_error(req, PC_IDEMPOTENCY_KEY_IN_PROGRESS, "Idempotency-Key", NULL);
        return false;
    }
    req->idem_held = true;
    store_api_idem_t stored;
    bool found;
    pc_status status = store_api_idem_get(reader, req->caller.id, key, &stored, &found);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return false;
    }
    if (!found) return true;
    bool run = idem_replay(req, &stored);
    free(stored.body);
    return run;
}

void api_idem_end(api_request_t *req) {
    if (!req->idem_held) return;
    char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
    inflight_name(req, name, sizeof name);
    inflight_remove(req->server, name);
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
    store_api_idem_t record = {.http_status = req->http_status, .created_ns = pc_wall_ns()};
    memcpy(record.request_hash, req->idem_hash, 32);
    record.body = stored_text ? stored_text : req->reply_body;
    record.body_bytes = stored_text ? strlen(stored_text) : req->reply_bytes;
    pc_status status = record.body != NULL
                           ? store_api_idem_put(tx, req->caller.id, req->idem_key, &record)
                           : PC_NO_MEMORY;
    free(stored_text);
    return status;
}

/* Writer thread, after the commit (or its failure): wake the request. */
static void submit_done(writer_cmd_t *cmd, pc_status commit_status) {
    api_request_t *req = cmd->user;
    req->commit_status = commit_status;
    MHD_resume_connection(req->connection);
}

void api_submit(api_request_t *req, writer_cmd_t *cmd, api_in_tx_fn in_tx, api_done_fn on_done) {
    PC_ASSERT(on_done != NULL);
    PC_ASSERT(!req->replied);
    req->cmd = cmd;
    req->in_tx = in_tx;
    req->on_done = on_done;
    cmd->user = req;
    cmd->done = submit_done;
    cmd->in_transaction = in_tx != NULL || req->idem_key != NULL ? submit_in_tx : NULL;
    api_server_t *server = req->server;
    pthread_rwlock_rdlock(&server->writer_lock);
    if (server->draining || server->writer == NULL) {
        pthread_rwlock_unlock(&server->writer_lock);
        api_reply_error(req, PC_SHUTTING_DOWN, NULL, NULL);
        api_reply_header(req, "Retry-After", "1");
        return;
    }
    req->phase = API_PHASE_WAITING;
    MHD_suspend_connection(req->connection);
    pc_status status = writer_submit(server->writer, cmd);
    pthread_rwlock_unlock(&server->writer_lock);
    if (status != PC_OK) {
        req->commit_status = status; /* done() will not run: wake it ourselves */
        MHD_resume_connection(req->connection);
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
    if (req->after_commit != NULL) req->after_commit(req);
    if (req->on_done != NULL) req->on_done(req, req->cmd);
    PC_ASSERT(req->replied);
}
