/* api/api.h: the HTTP/JSON server (libmicrohttpd + jansson) and the contract for
 * route handlers. A subsystem adds routes with ONE entry in the table of
 * src/api/routes.c plus a handler file (src/api/routes_<sub>.c):
 *
 *     {"GET", "/v1/risk/decisions/{id}", API_AUTH_READ, risk_route_decision_get},
 *
 *     void risk_route_decision_get(api_request_t *req) {
 *         const char *id = api_param(req, 0);          // the {id} segment
 *         json_t *body = json_pack("{s:s}", "id", id);
 *         api_reply_json(req, 200, body);              // steals 'body'
 *     }
 *
 * Handler rules:
 * - A handler runs on an API thread once the whole body has arrived, after the server
 *   matched the route, authenticated the key, checked the route's auth level, the rate
 *   limit and the Idempotency-Key (a replay never reaches the handler).
 * - It answers exactly once: api_reply_json / api_reply_error / api_reply_text, or
 *   api_submit (the answer is made later, in 'on_done').
 * - It may block briefly (a store read through api_reader). It never blocks on the
 *   writer: ledger changes go through api_submit, which suspends the connection and
 *   resumes it when the writer committed.
 * - Memory from api_alloc lives until the response is sent.
 * Threads: handlers run on any of the server's threads; the table is read-only. */
#ifndef PAYCORE_API_H
#define PAYCORE_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "events/events.h"
#include "paycore/limits.h"
#include "paycore/status.h"
#include "store/store.h"
#include "writer/writer.h"

typedef enum {
    API_SCOPE_READ_ONLY = 1, /* may GET what an admin may GET; nothing else */
    API_SCOPE_MERCHANT = 2,  /* its own accounts (created with it or granted to it) */
    API_SCOPE_ADMIN = 3,     /* everything */
} api_scope;

/* Who may call a route. */
typedef enum {
    API_AUTH_NONE = 0,   /* no key (/healthz, /readyz; /metrics unless --metrics-auth) */
    API_AUTH_READ = 1,   /* any valid key; a merchant sees only its own objects */
    API_AUTH_WRITE = 2,  /* admin or merchant; read_only gets 403 forbidden */
    API_AUTH_ADMIN = 3,  /* admin only, except that read_only may GET such a route (it may
                            GET what an admin may GET); others get 403 forbidden */
} api_auth;

typedef struct api_request api_request_t;
typedef struct api_server api_server_t;
typedef void (*api_handler_fn)(api_request_t *req);

typedef struct {
    const char *method;      /* "GET", "POST", "DELETE" */
    const char *pattern;     /* "/v1/accounts/{id}/transfers": literal segments and
                                {name} segments, which match one non-empty segment */
    api_auth auth;
    api_handler_fn handler;
} api_route_t;

/* routes.c: the one route table; also the source of truth for docs/openapi.yaml. */
extern const api_route_t api_routes[];
extern const uint32_t api_route_count;
/* True when a key of 'scope' may call 'route' (API_AUTH_NONE: any caller, keyless too). */
bool api_route_allows(const api_route_t *route, api_scope scope);
/* `paycore serve --routes`: "METHOD PATH WHO" a line; WHO is "none" (no key needed) or
 * the scopes that may call it, e.g. "admin,read_only" (from api_route_allows). */
void api_routes_print(FILE *out);

/* The caller's key (NULL on API_AUTH_NONE routes). */
typedef struct {
    char id[PC_ID_SIZE];
    api_scope scope;
    char name[API_STRING_BYTES_MAX + 1];
} api_caller_t;

/* ---- reading the request ---- */
const char *api_param(const api_request_t *req, uint32_t index); /* {..} segments in order */
const char *api_query(const api_request_t *req, const char *name); /* NULL when absent */
/* Refuses (400 query_invalid, replied) any query parameter not in 'allowed' (NULL-ended). */
bool api_query_only(api_request_t *req, const char *const *allowed);
const char *api_header(const api_request_t *req, const char *name);
const char *api_request_id(const api_request_t *req);
const api_caller_t *api_caller(const api_request_t *req);
/* The body as a JSON object, validated (Content-Type, UTF-8, nesting, duplicates,
 * integers beyond int64 named by field). NULL: an error was already replied.
 * The object is borrowed: it lives as long as the request. */
json_t *api_body_object(api_request_t *req);
/* The raw body (may be empty) and its size in bytes. */
const char *api_body(const api_request_t *req, size_t *bytes_out);
/* Request-lifetime memory, zeroed; freed after the response is sent. NULL on OOM. */
void *api_alloc(api_request_t *req, size_t bytes);
/* A store reader for this request (borrowed; NULL when none could be opened). */
store_reader_t *api_reader(api_request_t *req);
api_server_t *api_request_server(const api_request_t *req);
/* For a merchant key: true when 'account_id' belongs to the caller. Others: true.
 * Reads the committed store: for GETs. Writes are checked by the writer (owner). */
bool api_account_visible(api_request_t *req, const char *account_id);
/* The owner a writer command acts for: the merchant key's id, or NULL (every account). */
const char *api_request_owner(const api_request_t *req);

/* ---- answering ---- */
void api_reply_json(api_request_t *req, int http_status, json_t *body /* stolen */);
/* {"error":{"type","code","message","field"}} with pc_status_http(status).
 * 'field' and 'message' may be NULL (message: the code's default). */
void api_reply_error(api_request_t *req, pc_status status, const char *field,
                     const char *message);
/* The same with an explicit HTTP status (a 400 for a ledger code found in validation). */
void api_reply_error_http(api_request_t *req, int http_status, pc_status status,
                          const char *field, const char *message);
/* A non-JSON body ('body' is copied). */
void api_reply_text(api_request_t *req, int http_status, const char *content_type,
                    const char *body, size_t body_bytes);
/* Adds a response header to whatever reply is made (e.g. "Retry-After"). */
void api_reply_header(api_request_t *req, const char *name, const char *value);
/* The JSON error body alone (for batch results and the CLI's error parsing). */
json_t *api_error_json(pc_status status, const char *field, const char *message);
/* "invalid_request", "ledger_error", ... for a status and HTTP code. */
const char *api_error_type(pc_status status, int http_status);

/* ---- changing the ledger ----
 * Submits 'cmd' (allocated with api_alloc) to the writer. 'in_tx' (optional) runs on
 * the writer thread inside the batch's transaction: quick, one or two INSERTs.
 * 'on_done' runs after a successful commit and makes the reply from cmd's results;
 * when the request carries an Idempotency-Key it runs on the writer thread inside
 * the transaction instead (so the stored reply commits with the ledger rows): it must
 * only read cmd/req and reply. On a failed commit or a full queue the server replies
 * the error (writer_queue_full is 503 with Retry-After). */
typedef pc_status (*api_in_tx_fn)(api_request_t *req, store_tx_t *tx);
typedef void (*api_done_fn)(api_request_t *req, writer_cmd_t *cmd);
void api_submit(api_request_t *req, writer_cmd_t *cmd, api_in_tx_fn in_tx, api_done_fn on_done);

/* ---- answering later (a channel call between the request and its answer) ----
 * api_defer suspends the request: the handler returns without a reply. Later, from any
 * thread, the answer is set with api_reply_* and api_resume sends it (exactly once).
 * api_deferred_idem_put, on the writer thread inside the transaction that makes the
 * answer final, stores the answer set so far as the request's Idempotency-Key reply
 * (PC_OK when the request carries none). A deferred request past --request-timeout-ms
 * is answered 503 request_timeout; its work still ends, and its key stays held until
 * api_resume. */
void api_defer(api_request_t *req);
void api_resume(api_request_t *req);
PC_MUST_USE pc_status api_deferred_idem_put(api_request_t *req, store_tx_t *tx);
/* After that transaction: counts the stored reply's room against its key when it
 * committed (the idempotency budget, --idempotency-key-max-bytes). */
void api_deferred_committed(api_request_t *req, bool committed);
/* An error reply with one more string field in the error object (e.g. the current
 * state of a payment a request conflicts with). */
void api_reply_error_with(api_request_t *req, int http_status, pc_status status, const char *field,
                          const char *message, const char *extra_key, const char *extra_value);

/* ---- the server ---- */
typedef struct {
    const char *listen;          /* "127.0.0.1:8080"; port 0 picks a free port */
    const char *db_path;         /* the SQLite store; with store_url, the prefix of the node's
                                    own files (signing key, risk files, vault key) */
    const char *store_url;       /* NULL, or the store at this URL (postgres://...) */
    const char *const *shard_urls; /* with shard_count > 0: serve this set of shards (shard.h)
                                      instead of one store; store_url is then unused */
    uint32_t shard_count;
    bool store_standby;          /* wait for the writer's lock (store_options_t.standby); with
                                    shards, forward requests to the set's writer meanwhile */
    const char *advertise;       /* with shards: the address other nodes forward to
                                    ("http://host:port"); NULL: http://<listen address> */
    bool standby_reads_forwarded; /* a set's standby forwards account and transfer reads too
                                     instead of answering them from the shards */
    bool (*store_standby_continue)(void *ctx); /* a standby's wait, and the start's scan of the stored
                                                  Idempotency-Keys, go on until this says stop (NULL: forever) */
    uint32_t store_writable_wait_ms; /* store_options_t.writable_wait_ms */
    uint32_t threads;            /* HTTP threads */
    uint64_t body_bytes_max;     /* over it: 413 before the body is read */
    uint32_t queue_events_max;   /* writer queue; over it: 503 writer_queue_full */
    uint32_t rate_per_s;         /* per API key token bucket; 0 = unlimited */
    uint32_t rate_burst;         /* bucket size; 0 = rate_per_s */
    uint32_t connection_timeout_s; /* a request must arrive whole (headers and body) within
                                      this of its connection becoming ready for it (accepted
                                      or the previous reply sent), a reply must leave within
                                      it: past it the connection is closed; idle ones too */
    uint32_t connections_per_ip_max; /* one client address; 0 = unlimited */
    uint32_t idempotency_retention_h; /* >= API_IDEM_RETENTION_H_MIN */
    uint64_t idempotency_bytes_max;     /* stored replies, all keys; past it: 503 */
    uint64_t idempotency_key_bytes_max; /* stored replies of one key; past it: 503 */
    uint64_t idempotency_index_keys_max; /* keys in the in-memory index; past it: store reads */
    uint32_t request_timeout_ms; /* waiting for the writer longer: 503 request_timeout
                                    (the command still completes); 0 = never */
    bool metrics_auth;           /* /metrics needs a key (read scope) */
    bool http_engine;            /* serve on src/http (engine.c; the default) instead of
                                  * libmicrohttpd; a standby of shards uses libmicrohttpd */
    /* Optional: called once (writer thread) when the store failed for good and the
     * writer stopped writing: the process must stop (api_server_failed). */
    void (*writer_failed)(void *ctx);
    void *writer_failed_ctx;
    events_config_t events;      /* the outbox, webhooks and AMQP (db_path is set at start) */
} api_config_t;

void api_config_default(api_config_t *config);
/* Whether 'address' can be advertised to the other nodes of a set (api_config_t.advertise):
 * http(s)://HOST:PORT alone, a host other nodes can reach; 'why' says what is wrong. */
bool api_forward_address_check(const char *address, char *why, size_t why_bytes);
/* Binds the listen address (PC_ADDRESS_IN_USE, ... before any file is touched), then
 * opens the store and starts the writer; serves nothing yet. Each failure is logged
 * with its cause. */
PC_MUST_USE pc_status api_server_open(api_server_t **out, const api_config_t *config);
/* Starts serving on the bound address. */
PC_MUST_USE pc_status api_server_listen(api_server_t *server);
/* api_server_open, then api_server_listen. */
PC_MUST_USE pc_status api_server_start(api_server_t **out, const api_config_t *config);
/* PC_OK, or why the writer stopped writing for good (the process must exit). */
pc_status api_server_failed(api_server_t *server);
/* The bound port (useful with port 0). */
uint16_t api_server_port(const api_server_t *server);
/* Stops accepting, drains the writer (every queued command commits and is answered),
 * closes. */
void api_server_stop(api_server_t *server);
/* Runs 'fn(ctx)' inside api_server_stop once no request runs any more (the HTTP server
 * has stopped) and before the writer and the store close: where a layer that requests
 * reach and that reads the store (payments) is freed. One hook; NULL removes it. */
void api_server_set_http_stopped_hook(api_server_t *server, void (*fn)(void *ctx), void *ctx);
writer_t *api_server_writer(api_server_t *server);

/* Offline (paycore init): creates an API key through 'writer' (its row commits in a
 * writer batch) and writes its secret, shown once, into 'secret_out'. */
#define API_KEY_SECRET_SIZE 64
PC_MUST_USE pc_status api_key_create_offline(writer_t *writer, api_scope scope, const char *name,
                                             char secret_out[API_KEY_SECRET_SIZE],
                                             char id_out[PC_ID_SIZE]);

#endif
