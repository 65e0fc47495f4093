/* api/api_internal.h: what the API's own files share (not a contract). */
#ifndef PAYCORE_API_INTERNAL_H
#define PAYCORE_API_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "api/api.h"
#include "shard/shard.h"
#include "api/codec.h"
#include "http/http.h"
#include "store/idem_index.h"

#define API_KEY_HASH_BYTES 32 /* SHA-256 of a key's secret */

/* ---- keys (auth.c) ---- */
typedef struct {
    char id[PC_ID_SIZE];
    api_scope scope;
    char name[API_STRING_BYTES_MAX + 1];
    uint8_t hash[API_KEY_HASH_BYTES];
    uint64_t created_ns;
    uint64_t revoked_ns;           /* 0 = active */
    /* token bucket, guarded by the table's mutex */
    double tokens;
    uint64_t refill_ns;
} api_key_entry_t;

typedef struct {
    pthread_mutex_t mutex;
    api_key_entry_t *entries;      /* API_KEYS_MAX slots */
    uint32_t count;
    uint32_t rate_per_s;
    uint32_t rate_burst;
} api_keys_t;

pc_status api_keys_init(api_keys_t *keys, uint32_t rate_per_s, uint32_t rate_burst);
void api_keys_free(api_keys_t *keys);
pc_status api_keys_load(api_keys_t *keys, store_reader_t *reader);
/* Adds or updates (revocation) an entry after its row committed. */
void api_keys_put(api_keys_t *keys, const api_key_entry_t *entry);
/* The caller for a presented secret, taking a token from its bucket: PC_OK,
 * PC_UNAUTHENTICATED (unknown or revoked), or PC_RATE_LIMITED with *retry_after_s. */
pc_status api_keys_authenticate(api_keys_t *keys, const char *secret, api_caller_t *out,
                                uint32_t *retry_after_s);
bool api_keys_full(api_keys_t *keys);
bool api_keys_get(api_keys_t *keys, const char *key_id, api_key_entry_t *out);

/* A new secret ("pck_" + 43 base64url chars), its id and hash. */
void api_key_generate(char *secret_out /* 64 */, char id_out[PC_ID_SIZE],
                      uint8_t hash_out[API_KEY_HASH_BYTES]);
void api_key_hash(const char *secret, uint8_t hash_out[API_KEY_HASH_BYTES]);
bool api_scope_parse(const char *name, api_scope *out);
const char *api_scope_name(api_scope scope);

/* ---- what each key holds: buffered bodies, stored replies (usage.c) ---- */
typedef struct api_usage_slot api_usage_slot;
typedef struct {
    pthread_mutex_t mutex;
    api_usage_slot *slots;
    uint32_t slot_count;
    uint64_t body_key_bytes_max;    /* one key's share of the body budget */
    uint64_t body_bytes_total;
    uint64_t idem_bytes_total;
} api_usage_t;

pc_status api_usage_init(api_usage_t *usage, uint64_t body_bytes_max);
void api_usage_free(api_usage_t *usage);
/* Charges 'bytes' of buffered body to 'key_id' ("" without a key) and the server:
 * PC_OK, or PC_LIMIT_REACHED when the key's share or the server's budget (less the
 * admin reserve unless 'admin') would be passed. */
pc_status api_usage_body_charge(api_usage_t *usage, const char *key_id, bool admin,
                                uint64_t bytes);
void api_usage_body_release(api_usage_t *usage, const char *key_id, uint64_t bytes);
/* Stored idempotent replies: a committed change of 'key_id''s bytes. */
void api_usage_idem_add(api_usage_t *usage, const char *key_id, int64_t delta_bytes);
/* True while the server is under its bound and 'key_id' within its share or the room
 * not yet short (usage.c). */
bool api_usage_idem_room(api_usage_t *usage, const char *key_id, uint64_t key_bytes_max,
                         uint64_t total_bytes_max);
void api_usage_totals(api_usage_t *usage, uint64_t *body_bytes, uint64_t *idem_bytes);

/* ---- connections and their deadlines (conn.c) ---- */
typedef struct api_conn api_conn_t;
struct api_conn {
    api_conn_t *prev;               /* guarded by the server's conns_mutex */
    api_conn_t *next;
    int fd;                         /* MHD's: shut down past the deadline, never closed */
    _Atomic uint64_t deadline_ns;   /* monotonic; 0 = none (a command is with the writer) */
    _Atomic bool expired;           /* shut down by the deadline */
    uint8_t address[16];            /* the client's, counted in the server's address table */
};

/* One client address and its connections (conn.c), under conns_mutex. */
typedef struct {
    uint8_t address[16];
    uint32_t count;                 /* 0: a free slot */
} api_conn_address_t;

pc_status api_conns_init(api_server_t *server);
void api_conns_stop(api_server_t *server);
void api_conns_free(api_server_t *server);
/* MHD_OPTION_NOTIFY_CONNECTION of the epoll daemon and of the poll() one. A connection
 * past --connections-per-ip-max (counted over both daemons) is shut down at its start. */
void api_conn_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);
void api_conn_notify_polled(void *cls, struct MHD_Connection *connection, void **socket_context,
                            enum MHD_ConnectionNotificationCode code);
/* The entry of an MHD connection (NULL when none could be made). */
api_conn_t *api_conn_of(struct MHD_Connection *connection);
/* The connection's deadline: now + --timeout-s. */
void api_conn_deadline_restart(const api_server_t *server, api_conn_t *conn);
void api_conn_deadline_clear(api_conn_t *conn);
bool api_conn_expired(const api_conn_t *conn);

/* The per-address table of the engine's connections (http_config_t admit/closed). */
bool api_conn_address_admit(api_server_t *server, const struct sockaddr *addr);
void api_conn_address_closed(api_server_t *server, const struct sockaddr *addr);

/* ---- the accept loop (accept.c) ----
 * MHD serves the connections handed to it (MHD_USE_NO_LISTEN_SOCKET and
 * MHD_add_connection); the listen socket stays ours. libmicrohttpd 0.9.75's
 * MHD_quiesce_daemon races a thread pool's epoll workers, which take the quiesced
 * listen socket out of their epoll sets themselves: the loser's EPOLL_CTL_DEL gets
 * ENOENT and MHD aborts the process ("Failed to remove listen FD from epoll set"), a
 * SIGTERM under load died of SIGABRT that way. Stopping our own loop needs no MHD call. */
typedef struct {
    int listen_fd;                 /* borrowed: still listening after the stop */
    int wake_fd;                   /* eventfd: written once to stop */
    struct MHD_Daemon *daemon;     /* borrowed: outlives the loop (epoll) */
    _Atomic uint32_t *daemon_count; /* handed to 'daemon' and not yet closed (conn.c); NULL: uncounted */
    uint32_t daemon_max;
    struct MHD_Daemon *polled;     /* borrowed, NULL: none (poll(), the first connections) */
    _Atomic uint32_t *polled_count; /* handed to 'polled' and not yet closed (conn.c) */
    uint32_t polled_max;
    pthread_t thread;
    bool started;
} api_acceptor_t;

/* Accepts on 'listen_fd' (non-blocking) and hands each connection to 'polled' while it
 * holds fewer than 'polled_max', else to 'daemon'; with 'daemon_count', a connection
 * past 'daemon_max' is closed here. Each counted daemon must be started with an MHD
 * connection limit its workers never reach (api_mhd_connection_limit). */
pc_status api_acceptor_start(api_acceptor_t *acceptor, int listen_fd, struct MHD_Daemon *daemon,
                             _Atomic uint32_t *daemon_count, uint32_t daemon_max, struct MHD_Daemon *polled,
                             _Atomic uint32_t *polled_count, uint32_t polled_max);
/* The MHD_OPTION_CONNECTION_LIMIT for a daemon of 'threads' workers that our accept loop
 * keeps at 'connections_max' (see accept.c: a worker reaching its own limit hangs). */
unsigned int api_mhd_connection_limit(uint32_t connections_max, uint32_t threads);
/* Gives back a counted connection's place (it closed, or MHD refused it). */
void api_acceptor_release(_Atomic uint32_t *count);
/* MHD_OPTION_NOTIFY_CONNECTION of a counted daemon that tracks nothing else per
 * connection: 'cls' is its count, given back when a connection closes. */
void api_acceptor_count_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                               enum MHD_ConnectionNotificationCode code);
/* Returns once no connection will be handed over any more; the socket is untouched
 * (its backlog waits for the next loop, or for the caller to shut it down). Safe to
 * call twice, or on a loop that never started. */
void api_acceptor_stop(api_acceptor_t *acceptor);

/* ---- forwarding to the set's writer (forward.c) ---- */
typedef struct api_forward api_forward_t;
typedef struct {
    int listen_fd;                 /* borrowed: handed back by api_forward_stop */
    uint32_t threads;
    uint64_t body_bytes_max;
    uint32_t connection_timeout_s;
    uint32_t connections_per_ip_max;
    uint32_t request_timeout_ms;   /* the writer's: a forwarded request waits a margin more */
    const char *self_address;      /* this node's advertised address: never forwarded to */
    api_server_t *server;          /* its per-address connection table (conn.c) */
    shard_directory_t *directory;  /* borrowed: outlives the forwarder */
    const char *const *shard_urls; /* the set's shards: the reads answered here (forward_read.c) */
    uint32_t shard_count;
    uint32_t rate_per_s;           /* per API key, as on the writer (api_config_t) */
    uint32_t rate_burst;
    bool reads_forwarded;          /* forward the reads forward_read.c would answer too */
} api_forward_config_t;
/* Serves 'listen_fd' by forwarding every request to the set's writer, but the reads
 * forward_read.c answers. */
PC_MUST_USE pc_status api_forward_start(api_forward_t **out, const api_forward_config_t *config);
/* Stops after the requests in flight; returns the listen socket (-1: none). */
int api_forward_stop(api_forward_t *forward);
/* A request to the forwarder (forward.c), held by the engine until answered: what
 * forward_read.c reads of it. Strings are the request's, valid until its answer. */
typedef struct api_forward_req api_forward_req_t;
const char *api_forward_method(const api_forward_req_t *req);
const char *api_forward_path(const api_forward_req_t *req);   /* unescaped */
const char *api_forward_header(api_forward_req_t *req, const char *name); /* NULL: absent */
const char *api_forward_arg(void *req, const char *name);     /* a query argument (api_arg_lookup_fn) */
bool api_forward_args_only(const api_forward_req_t *req, const char *const *allowed);
/* A reply made by the forwarding node itself (X-Request-Id "fwd-..."; Retry-After
 * when retry_after_s > 0; 'body' taken): the request's answer. */
void api_forward_reply_json(api_forward_req_t *req, unsigned http_status, json_t *body, uint32_t retry_after_s);
void api_forward_reply_error(api_forward_req_t *req, pc_status status, const char *message, uint32_t retry_after_s);
/* forward_read.c: the reads a standby answers from the shards' databases. */
typedef struct api_forward_reads api_forward_reads_t;
PC_MUST_USE pc_status api_forward_reads_open(api_forward_reads_t **out, const api_forward_config_t *config);
void api_forward_reads_close(api_forward_reads_t *reads);
/* true when the request was answered here, false: forward it. */
bool api_forward_read_local(api_forward_reads_t *reads, api_forward_req_t *req);

/* ---- the server (server.c) ---- */
struct api_server {
    api_config_t config;
    void (*http_stopped_fn)(void *ctx); /* api_server_set_http_stopped_hook */
    void *http_stopped_ctx;
    char *db_path;
    store_t *store;                 /* with shards: the set's read store (owned by it) */
    shard_set_t *shards;            /* NULL: one store; else its writers (writer: shard 0's) */
    shard_directory_t *directory;   /* a standby of a set: where the set's writer is */
    api_forward_t *forward;         /* a standby of a set: forwarding until it took over */
    char advertise[256];            /* with shards: the address this node advertises */
    events_t *events;               /* the outbox and the delivery threads */
    writer_t *writer;
    pthread_rwlock_t writer_lock;   /* writer_submit (read) vs. the start of shutdown (write) */
    _Atomic bool draining;          /* set under writer_lock (write); read anywhere */
    struct MHD_Daemon *daemon;      /* epoll: the connections past the poll() daemon's */
    struct MHD_Daemon *daemon_polled; /* poll(): the first connections (accept.c) */
    _Atomic uint32_t conns_polled;  /* connections handed to daemon_polled, not yet closed */
    _Atomic uint32_t conns_epoll;   /* connections handed to daemon, not yet closed */
    http_server_t *engine;          /* --http-engine: serves instead of the two daemons; set
                                       under conns_mutex (conn.c's reaper reads its counters) */
    uint64_t engine_timeouts_seen;  /* its deadline closes already counted (conn.c) */
    int listen_fd;                  /* bound before the store opens; always ours (accept.c) */
    api_acceptor_t acceptor;        /* hands listen_fd's connections to 'daemon' */
    uint16_t port;
    api_keys_t keys;
    pthread_mutex_t pool_mutex;
    store_reader_t *readers[API_READERS_MAX];
    uint32_t reader_count;
    pthread_mutex_t inflight_mutex; /* idempotency keys running now */
    void *inflight;                 /* submit.c's buckets */
    uint32_t inflight_count;
    _Atomic int64_t requests_active;
    api_usage_t usage;              /* bodies and stored replies per key */
    /* connections (conn.c) */
    pthread_mutex_t conns_mutex;    /* the list */
    api_conn_t *conns_head;
    api_conn_address_t *conn_addresses; /* API_CONN_ADDRESS_SLOTS, under conns_mutex */
    pthread_mutex_t conns_stop_mutex;
    pthread_cond_t conns_cond;
    bool conns_stop;
    bool conns_started;
    pthread_t conns_reaper;
    /* stored replies: retention and purge (idempotency.c) */
    uint64_t idem_clock_offset_ns;  /* PAYCORE_TEST_CLOCK_OFFSET_S (tests) */
    uint32_t completion_delay_ms;   /* PAYCORE_TEST_COMPLETION_DELAY_MS (tests) */
    idem_index_t *idem_index;       /* keys that may have a stored row (store/idem_index.h) */
    pthread_mutex_t purge_mutex;
    pthread_cond_t purge_cond;
    bool purge_stop;
    bool purge_initialized;
    bool purge_started;
    pthread_t purge_thread;
    pthread_mutex_t waiting_mutex;  /* requests waiting for the writer, by deadline */
    pthread_cond_t waiting_cond;
    api_request_t *waiting_head;    /* the first due */
    api_request_t *waiting_tail;    /* the last linked, the last due */
    bool reaper_stop;
    bool reaper_started;
    pthread_t reaper;
    _Atomic uint64_t request_seq;
    _Atomic uint32_t resumes_deferred; /* answered requests not yet resumed (submit.c) */
    char instance_tag[9];
};

api_keys_t *api_server_keys(api_server_t *server);
bool api_server_ready(api_server_t *server);
/* True from the start of shutdown on (new commands get 503 shutting_down). */
bool api_server_draining(const api_server_t *server);
/* Sets what an Idempotency-Key stores instead of the reply (a key's secret is never
 * stored): 'stored' is stolen. Only from an on_done running in the transaction. */
void api_idem_store_override(api_request_t *req, json_t *stored);
/* The Idempotency-Key's tx-side: true when this request carries one. */
bool api_request_idempotent(const api_request_t *req);

/* Route table matching (router.c). */
typedef enum {
    API_MATCH_FOUND,
    API_MATCH_NO_ROUTE,
    API_MATCH_NO_METHOD,
} api_match;
/* Matches 'path' ('path_buf' is a writable copy, split in place) and fills params. */
api_match api_route_match(const char *method, char *path_buf, uint32_t *route_index,
                          const char *params[API_ROUTE_PARAMS_MAX], uint32_t *param_count);
/* Metrics and log name of a route (its pattern). */
const char *api_route_name(uint32_t route_index);

/* Route handlers of the built-in routes. */
void api_route_accounts_create(api_request_t *req);
void api_route_accounts_list(api_request_t *req);
void api_route_account_get(api_request_t *req);
void api_route_account_transfers(api_request_t *req);
void api_route_account_balances(api_request_t *req);
void api_route_transfers_create(api_request_t *req);
void api_route_transfer_get(api_request_t *req);
void api_route_verify(api_request_t *req);
void api_route_keys_create(api_request_t *req);
void api_route_keys_list(api_request_t *req);
void api_route_key_revoke(api_request_t *req);
void api_route_metrics(api_request_t *req);
void api_route_healthz(api_request_t *req);
void api_route_readyz(api_request_t *req);
/* routes_risk.c */
void api_route_risk_decide(api_request_t *req);
void api_route_risk_feedback(api_request_t *req);
void api_route_risk_reviews(api_request_t *req);
void api_route_risk_review_approve(api_request_t *req);
void api_route_risk_review_decline(api_request_t *req);
void api_route_admin_reload(api_request_t *req);
/* routes_events.c */
void api_route_events_list(api_request_t *req);
void api_route_event_get(api_request_t *req);
void api_route_event_redeliver(api_request_t *req);
void api_route_events_redeliver(api_request_t *req);
void api_route_endpoints_create(api_request_t *req);
void api_route_endpoints_list(api_request_t *req);
void api_route_endpoint_get(api_request_t *req);
void api_route_endpoint_delete(api_request_t *req);
void api_route_endpoint_rotate(api_request_t *req);
void api_route_endpoint_enable(api_request_t *req);
void api_route_endpoint_deliveries(api_request_t *req);
/* ops_stats.c, ops_web.c */
void api_route_stats(api_request_t *req);
void api_route_dashboard(api_request_t *req);
void api_route_dashboard_asset(api_request_t *req);
/* routes_payments.c */
void api_route_merchants_create(api_request_t *req);
void api_route_merchants_list(api_request_t *req);
void api_route_merchant_get(api_request_t *req);
void api_route_merchant_key_create(api_request_t *req);
void api_route_payments_create(api_request_t *req);
void api_route_payments_list(api_request_t *req);
void api_route_payment_get(api_request_t *req);
void api_route_payment_confirm(api_request_t *req);
void api_route_payment_capture(api_request_t *req);
void api_route_payment_cancel(api_request_t *req);
void api_route_payment_refund(api_request_t *req);
void api_route_refund_get(api_request_t *req);
void api_route_wallets_create(api_request_t *req);
void api_route_wallet_get(api_request_t *req);
void api_route_wallet_top_up(api_request_t *req);
void api_route_wallet_withdraw(api_request_t *req);
void api_route_payouts_create(api_request_t *req);
void api_route_payout_get(api_request_t *req);
void api_route_payments_recover(api_request_t *req);
void api_route_vault_rotate(api_request_t *req);
void api_route_vault_rotation(api_request_t *req);
/* routes_channels.c */
void api_route_channels(api_request_t *req);
void api_route_channel_callback(api_request_t *req);

/* Lists: limit (1..API_LIST_LIMIT_MAX, default 10), starting_after, from, to, order.
 * false: 400 query_invalid was replied. */
bool api_list_query(api_request_t *req, store_query_t *query, bool time_range);
/* The query parameters a list takes (api_list_params) and a list over time
 * (api_list_range_params); NULL-terminated. */
extern const char *const api_list_params[];
extern const char *const api_list_range_params[];
/* GET /v1/accounts: its parameters (limit, starting_after or cursor, an earlier
 * page's next_cursor), and their parse as api_list_query_parse_with's (below). */
extern const char *const api_accounts_list_params[];


/* ---- one request (request.c, server.c, submit.c) ---- */
typedef struct api_arena_block api_arena_block;
struct api_arena_block {
    api_arena_block *next;
    uint32_t used_bytes;                /* of 'data', handed out from its start */
    uint32_t room_bytes;                /* of 'data' */
    max_align_t data[];
};

typedef enum {
    API_PHASE_HEADERS = 0,  /* first call: route, auth, limits */
    API_PHASE_BODY,         /* receiving the body */
    API_PHASE_WAITING,      /* suspended: a writer command runs */
    API_PHASE_REPLIED,      /* the reply is queued */
} api_phase;

typedef struct {
    const char *name;
    const char *value; /* NULL: the name came without '=' */
} api_query_arg_t;

struct api_request {
    api_server_t *server;
    union {
        struct MHD_Connection *connection; /* on libmicrohttpd */
        http_request_t *http;              /* on the engine (engine.c): on_engine */
    };
    api_query_arg_t *query_args;       /* the engine's decoded query, in the arena; ends
                                          with a NULL name (NULL: no query) */
    api_phase phase;
    uint64_t start_ns;
    char method[8];
    char request_id[32];                /* "req_" + 8 + 12 hex digits */
    char *path;                         /* writable copy, split by the router */
    int64_t route_index;                /* -1 before a match */
    const char *params[API_ROUTE_PARAMS_MAX];
    uint32_t param_count;
    api_caller_t caller;
    bool has_caller;
    bool on_engine;                     /* served by the engine: 'http', not 'connection' */
    /* body */
    char *body;
    size_t body_bytes;
    size_t body_capacity;
    pc_status body_refused;             /* body_too_large, limit_reached, out_of_memory */
    uint64_t body_declared_bytes;       /* Content-Length; 0 when absent (chunked) */
    uint64_t body_charged_bytes;        /* charged to the caller's body budget (usage.c) */
    json_t *body_json;
    /* reply */
    _Atomic bool replied;               /* the writer thread may set it (on_done in the
                                           transaction) while the MHD thread checks it */
    bool recorded;                      /* metrics and access log done */
    int http_status;
    pc_status reply_code;               /* PC_OK for success replies (logs) */
    char *reply_body;                   /* malloc'ed */
    size_t reply_bytes;
    const char *content_type;
    char *reply_headers[API_REPLY_HEADERS_MAX][2];
    uint32_t reply_header_count;
    /* writer */
    writer_cmd_t *cmd;
    api_in_tx_fn in_tx;
    api_done_fn on_done;
    void (*after_commit)(api_request_t *req); /* writer thread, after a successful commit,
                                                 before the request wakes */
    pc_status commit_status;
    /* idempotency */
    char *idem_key;                     /* NULL when the request has none */
    const char *header_idempotency_key; /* the header, found with the others the server reads
                                           (server.c); MHD keeps it until the request completes */
    void *idem_node;                    /* its entry in the in-flight set while held (submit.c) */
    uint8_t idem_hash[32];
    bool idem_held;                     /* in the in-flight set */
    bool idem_replayed;
    bool idem_new;                      /* the index said: no row of this key is stored */
    json_t *idem_stored;                /* what to store instead of the reply, or NULL */
    int64_t idem_bytes_delta;           /* room the stored reply adds, once committed */
    bool deferred_rendered;             /* a deferred answer was made inside its transaction */
    /* lifetime: the MHD side holds one reference until the request completes, the
     * writer another from api_submit until done(); the last release frees. */
    _Atomic int refs;
    /* request timeout (guarded by server->waiting_mutex until resumed) */
    uint64_t deadline_ns;
    bool waiting;                       /* in the server's waiting list */
    bool timed_out;                     /* answered 503 request_timeout before done() */
    api_request_t *wait_prev;
    api_request_t *wait_next;
    /* resources */
    api_conn_t *conn;                   /* its connection's entry (MHD threads only) */
    store_reader_t *reader;
    api_arena_block *arena;
    /* Kept in the request itself: its path, and its first small allocations (an
     * Idempotency-Key), so that a usual request makes no allocation for them. */
    uint32_t arena_inline_used;         /* bytes of arena_inline handed out */
    char path_inline[API_REQUEST_PATH_INLINE_BYTES];
    max_align_t arena_inline[API_REQUEST_ARENA_INLINE_BYTES / sizeof(max_align_t)];
};

/* request.c */
api_request_t *api_request_new(api_server_t *server, struct MHD_Connection *connection,
                               const char *method, const char *url);
void api_request_free(api_request_t *req);
/* Drops one reference; the last one ends the Idempotency-Key hold and frees. */
void api_request_release(api_request_t *req);
bool api_body_append(api_request_t *req, const char *data, size_t bytes);
/* Charges 'bytes' more of buffered body to the caller (usage.c): PC_OK or
 * PC_LIMIT_REACHED. Released when the request is freed. */
pc_status api_body_charge(api_request_t *req, uint64_t bytes);
/* Sets the reply from a rendered body (copied). */
void api_reply_raw(api_request_t *req, int http_status, pc_status code, const char *body,
                   size_t bytes, const char *content_type);

/* idempotency.c: retention, room and purge of stored replies. */
uint64_t api_idem_now_ns(const api_server_t *server);
/* True when a reply stored at 'created_ns' is past the retention (treated as absent). */
bool api_idem_expired(const api_server_t *server, uint64_t created_ns);
/* True while 'key_id' may store another reply (its bound and the server's). */
bool api_idem_room(api_server_t *server, const char *key_id);
/* Writer thread, in the transaction: stores the request's reply ('body'). */
pc_status api_idem_store(api_request_t *req, store_tx_t *tx, const char *body, size_t body_bytes);
/* The same with another HTTP status than the reply's. */
pc_status api_idem_store_status(api_request_t *req, store_tx_t *tx, int http_status, const char *body,
                                size_t body_bytes);
/* A stored reply that is a reference to a payment's version (routes_payments.c):
 * answered with that version rendered, byte for byte the first answer, or (a payment
 * not answered yet) with the payment as it stands; false when 'stored' is no such
 * reference. */
bool api_payments_replay(api_request_t *req, const char *stored, size_t bytes, int http_status);
/* After its commit: counts the stored reply (what it added since) in the key's room. */
void api_idem_committed(api_request_t *req);
/* Counts what is stored (per key) and starts the purge; stop it before the writer drains. */
pc_status api_idem_start(api_server_t *server);
void api_idem_stop(api_server_t *server);
/* Frees the index once no request and no payment can reach it (MHD and payments stopped). */
void api_idem_free(api_server_t *server);

/* submit.c: Idempotency-Key before the handler: true when the handler should run;
 * false when a reply (replay, conflict, bad key) was made. */
bool api_idem_begin(api_request_t *req);
void api_idem_end(api_request_t *req);
/* After a resume: makes the reply of a finished writer command. */
void api_submit_finish(api_request_t *req);
pc_status api_inflight_init(api_server_t *server);
/* The request-timeout thread: answers 503 request_timeout for requests waiting for
 * the writer past --request-timeout-ms (their command still runs to its end). */
pc_status api_reaper_start(api_server_t *server);
void api_reaper_stop(api_server_t *server);
void api_inflight_free(api_server_t *server);
/* Returns once every resume deferred to the end of a batch (api_resume) has run: the
 * connections they name stay MHD's to free until then. */
void api_resumes_wait(api_server_t *server);

/* server.c: the header checks and the end of a request, shared by both servers */
void api_request_headers_check(api_request_t *req, const char *const values[6]);
void api_request_end(api_request_t *req);
void api_request_record(api_request_t *req, int http_status, const char *code);

/* engine.c: the API on src/http (--http-engine) */
pc_status api_engine_start(api_server_t *server);
void api_engine_stop(api_server_t *server);
/* Makes and sends the reply of a request that waited (a writer command, a payment),
 * on the calling thread; MHD's resume on the other server. */
void api_request_wake(api_request_t *req);
const char *api_engine_query(const api_request_t *req, const char *name);
const char *api_engine_header(api_request_t *req, const char *name);
/* The engine's limits as the API applies them (connections, a head within 7 KiB, the
 * body left to the hooks, --timeout-s, the per-address table of conn.c) on
 * 'listen_fd'; the caller sets the handler and the hooks. */
void api_engine_config(http_config_t *config, api_server_t *server, int listen_fd);
/* A query (after '?') split in place into name[=value] pairs on '&', each unescaped,
 * into 'args' (api_query_arg_slots(query) of them: the pairs and a NULL name). */
uint32_t api_query_arg_slots(const char *query);
void api_query_split(char *query, api_query_arg_t *args);
/* %XX decoded in place as libmicrohttpd does; 'plus': '+' is a blank (a query). */
void api_unescape(char *text, bool plus);
/* "Date: <IMF-fixdate>\r\n" of now, this thread's (formatted once a second). */
const char *api_engine_date_line(void);
/* A query argument lookup (routes_read.c's lists on both servers). */
typedef const char *(*api_arg_lookup_fn)(void *ctx, const char *name);
/* A list's query, each parameter found with 'lookup', into 'query' (strings borrowed),
 * without a reply: NULL when each value is valid, else the first bad parameter's name.
 * Names outside the lists above are not looked at. */
const char *api_list_query_parse_with(api_arg_lookup_fn lookup, void *ctx, store_query_t *query);
const char *api_accounts_list_parse_with(api_arg_lookup_fn lookup, void *ctx, store_query_t *query);

/* server.c */
store_reader_t *api_server_reader_acquire(api_server_t *server);
void api_server_reader_release(api_server_t *server, store_reader_t *reader);

#endif
