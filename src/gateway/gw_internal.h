/* gateway/gw_internal.h: what the gateway's own files share (not a contract). */
#ifndef PAYCORE_GW_INTERNAL_H
#define PAYCORE_GW_INTERNAL_H

#include <curl/curl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/bytes.h"
#include "core/spares.h"
#include "gateway/gateway.h"

/* ---------------------------------------------------------------- configuration */

typedef struct {
    char code[GW_CODE_SIZE];
    gw_outcome outcome;
} gw_code_entry_t;

typedef struct {
    uint32_t failures_consecutive; /* open after this many failures in a row; 0 = off */
    uint32_t error_rate_percent;   /* open when failures reach this share of the window; 0 = off */
    uint32_t window_calls;         /* calls the error rate is measured over */
    uint32_t calls_min;            /* fewer calls in the window: no error-rate verdict */
    uint32_t cooldown_ms;          /* open -> half-open */
    uint32_t half_open_probes;     /* calls let through half-open; all must succeed to close */
} gw_breaker_cfg_t;

typedef struct gw_chstate gw_chstate_t;

typedef struct {
    char name[GW_NAME_SIZE];
    gw_kind kind;
    char url[GW_URL_BYTES_MAX + 1];             /* base URL, no trailing '/' */
    char api_key[GW_SECRET_BYTES_MAX + 1];      /* "" = no Authorization header */
    char callback_secret[GW_SECRET_BYTES_MAX + 1]; /* bank: verifies Sim-Signature */
    char callback_url[GW_URL_BYTES_MAX + 1];    /* bank: where the channel posts results */
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;                        /* the whole call */
    uint32_t max_connections;                   /* http.c: open at once per gateway thread */
    uint32_t authorization_window_s;            /* a hold's life at this channel; 0 = the server's */
    bool partial_captures;                      /* several captures of one authorization */
    uint32_t code_count;
    gw_code_entry_t codes[GW_CODES_MAX];        /* defaults of the kind, then the file's */
    uint32_t method_count;
    char methods[GW_METHODS_MAX][GW_METHOD_SIZE];
    uint32_t currency_count;                    /* 0 = any */
    char currencies[GW_LIST_MAX][4];
    uint32_t country_count;                     /* 0 = any */
    char countries[GW_LIST_MAX][3];
    int64_t amount_min_minor;
    int64_t amount_max_minor;
    gw_breaker_cfg_t breaker;
    gw_chstate_t *state;                        /* counted reference; survives reloads */
    /* http.c's client instead of curl (gw_http_origin): plain HTTP to an IPv4 address */
    bool own_http;
    struct sockaddr_in http_addr;
    char http_host[64];                         /* the Host header: "127.0.0.1:8080" */
    char http_prefix[GW_URL_BYTES_MAX + 1];     /* the URL's path, no trailing '/' */
} gw_channel_cfg_t;

typedef struct {
    uint32_t window_calls;        /* success rate over the last N calls ... */
    uint32_t window_ms;           /* ... no older than this (0 = any age) */
    uint32_t calls_min;           /* fewer: the rate is unknown and counts as 100% */
    uint32_t exploration_percent; /* share of decisions that pick at random */
    uint32_t elimination_percent; /* below it: exploration traffic only */
} gw_sr_cfg_t;

typedef struct gw_config {
    _Atomic uint32_t refs;
    uint64_t version;
    uint32_t channel_count;
    gw_channel_cfg_t channels[GW_CHANNELS_MAX];
    gw_strategy strategy;
    uint32_t priority_count;
    uint8_t priority[GW_CHANNELS_MAX];   /* channel indexes, best first */
    uint32_t weights[GW_CHANNELS_MAX];   /* by channel index */
    uint32_t weight_total;
    uint32_t fallback_count;
    uint8_t fallback[GW_CHANNELS_MAX];
    gw_sr_cfg_t sr;
    uint32_t attempts_max;               /* channel calls for one operation */
    uint32_t status_delay_ms;            /* wait before the first status inquiry */
    uint32_t status_attempts;            /* inquiries before giving up (unresolved) */
    uint32_t status_interval_ms;
} gw_config_t;

/* Parses and validates a channels file; 'previous' (may be NULL) lends channel state
 * by name. A new config holds one reference. */
pc_status gw_config_load(const char *path, gw_config_t *previous, gw_config_t **out,
                         gw_config_error_t *error);
void gw_config_ref(gw_config_t *config);
void gw_config_unref(gw_config_t *config);
int32_t gw_config_find(const gw_config_t *config, const char *name);

/* Line numbers of the values of a parsed JSON text, by path ("channels[2].weight"). */
typedef struct gw_lines gw_lines_t;
gw_lines_t *gw_lines_scan(const char *text, size_t bytes);
uint32_t gw_lines_find(const gw_lines_t *lines, const char *path); /* 0 = not found */
void gw_lines_free(gw_lines_t *lines);

/* ---------------------------------------------------------------- codes (codes.c) */

/* The built-in table of a kind (docs/channels.md). */
uint32_t gw_codes_default(gw_kind kind, gw_code_entry_t *out, uint32_t capacity);
bool gw_outcome_parse(const char *name, gw_outcome *out);
bool gw_kind_parse(const char *name, gw_kind *out);
bool gw_strategy_parse(const char *name, gw_strategy *out);
/* The outcome of a channel's code; false when the table does not have it. */
bool gw_code_lookup(const gw_channel_cfg_t *ch, const char *code, gw_outcome *out);

/* ---------------------------------------------------------------- connectors */

/* One HTTP call toward a channel. */
typedef struct {
    const char *method;           /* "GET" or "POST" */
    char path[GW_URL_BYTES_MAX];  /* "/v1/authorizations" */
    char *body;                   /* owned JSON text (may hold a card number); NULL for GET */
    size_t body_bytes;
} gw_http_call_t;

/* A channel's answer, read. */
typedef struct {
    gw_outcome outcome;
    pc_status status;                 /* PC_OK, or the gateway's reason (bad response...) */
    char code[GW_CODE_SIZE];          /* metric label: a table code or a transport code */
    char detail[GW_MESSAGE_SIZE];
    char message[GW_MESSAGE_SIZE];
    char ref[PC_ID_SIZE];
    char approval_code[16];
    char challenge_id[PC_ID_SIZE];
    int64_t amount_minor;
    int64_t total_minor;
    int8_t found;                     /* status inquiries: 1 applied, 0 never applied, -1 no answer */
} gw_answer_t;

typedef pc_status (*gw_build_fn)(const gw_channel_cfg_t *ch, const gw_request_t *req,
                                 gw_http_call_t *out);

/* ---------------------------------------------------------------- answers (answer.c) */

/* A channel's answer as the decoders read it: a plain answer's members listed in a
 * gw_doc_t (no allocation), any other text loaded by jansson. An object is either. */
#define GW_DOC_MEMBERS_MAX 48
#define GW_DOC_TEXT_BYTES 2048   /* keys and strings of a plain answer; more goes to jansson */

typedef enum {
    GW_MEMBER_STRING, GW_MEMBER_INTEGER, GW_MEMBER_TRUE, GW_MEMBER_FALSE, GW_MEMBER_NULL, GW_MEMBER_OBJECT,
} gw_member_type;

typedef struct {
    const char *key;             /* in the doc's text */
    size_t key_bytes;
    const char *text;            /* a string's value, in the doc's text */
    int64_t integer;
    int32_t parent;              /* the member holding it (an object), -1: the answer itself */
    gw_member_type type;
} gw_member_t;

typedef struct {
    gw_member_t members[GW_DOC_MEMBERS_MAX];
    uint32_t count;
    size_t text_used;
    char text[GW_DOC_TEXT_BYTES];
    json_t *loaded;              /* owned: jansson's object when the answer was not plain */
} gw_doc_t;

typedef struct {
    const gw_doc_t *doc;         /* a plain answer: the object is member 'index' (-1: the whole) */
    int32_t index;
    const json_t *json;          /* else jansson's object; neither: no object */
} gw_obj_t;

/* The object 'text' holds: invalid (gw_obj_valid false) when it is not a JSON object.
 * 'plain_allowed' false: through jansson always (tests compare the two). Free with
 * gw_doc_free. */
gw_obj_t gw_doc_load(gw_doc_t *doc, const char *text, size_t bytes, bool plain_allowed);
void gw_doc_free(gw_doc_t *doc);
bool gw_obj_valid(const gw_obj_t *o);
/* A string member, NULL when missing or of another type. */
const char *gw_obj_str(const gw_obj_t *o, const char *key);
/* An integer member; false when missing or of another type (a real is not one). */
bool gw_obj_int(const gw_obj_t *o, const char *key, int64_t *out);
/* 1 true, 0 false, -1 missing or not a boolean. */
int gw_obj_bool(const gw_obj_t *o, const char *key);
/* An object member (invalid when missing or of another type). */
gw_obj_t gw_obj_object(const gw_obj_t *o, const char *key);

/* The connector interface: one per channel kind. Each operation slot builds the HTTP
 * call (NULL: the kind cannot do it); 'decode' reads a 2xx answer to 'op'. Transport
 * (libcurl), status inquiry handling and retries are the engine's, shared by all. */
typedef struct {
    gw_kind kind;
    const char *default_method;  /* eligibility when the file names none */
    gw_build_fn authorize;
    gw_build_fn capture;
    gw_build_fn void_auth;
    gw_build_fn refund;
    gw_build_fn payout;
    gw_build_fn status;          /* GET /v1/status/{key}: the same for every kind */
    gw_build_fn challenge;
    /* Routed operations: the request carries what this kind needs (a card, a wallet, an
     * account); a channel whose kind does not accept it is not eligible. */
    bool (*accepts)(const gw_request_t *req);
    void (*decode)(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_op op,
                   const gw_obj_t *body, int http_status, gw_answer_t *out);
} gw_connector_t;

extern const gw_connector_t gw_connector_card;
extern const gw_connector_t gw_connector_wallet;
extern const gw_connector_t gw_connector_bank;
const gw_connector_t *gw_connector(gw_kind kind);
gw_build_fn gw_connector_op(const gw_connector_t *connector, gw_op op);

/* connector.c: helpers every connector shares. */
/* The body as compact JSON text; takes the reference to 'value' (NULL: out of memory). */
PC_MUST_USE pc_status gw_body_json(gw_http_call_t *out, json_t *value);
/* The body from a format whose strings are plain text the caller validated (digits,
 * ids, codes): nothing in them needs escaping. */
PC_MUST_USE pc_status gw_body_printf(gw_http_call_t *out, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* The body as the concatenation of 'parts' (plain text the caller validated, as for
 * gw_body_printf): the hot bodies are copied together, not formatted. */
#define GW_BODY_PARTS_MAX 24
PC_MUST_USE pc_status gw_body_parts(gw_http_call_t *out, const char *const *parts, size_t part_count);
/* An integer's decimal digits into 'out' (at least 21 bytes); returns 'out'. */
const char *gw_decimal(int64_t value, char out[21]);
/* Wipes (a card number) and frees the body. */
void gw_body_free(gw_http_call_t *http);
pc_status gw_build_status(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out);
void gw_answer_fail(gw_answer_t *a, gw_outcome outcome, pc_status status, const char *code,
                    const char *format, ...) __attribute__((format(printf, 5, 6)));
/* Reads "response_code" through the channel's table, and the fields most answers have;
 * false after gw_answer_fail (garbage: unknown outcome). */
bool gw_decode_common(const gw_channel_cfg_t *ch, const gw_obj_t *body, gw_answer_t *a);
/* Checks an integer member equals 'want'; false after gw_answer_fail. */
bool gw_decode_amount(const gw_obj_t *body, const char *key, int64_t want, gw_answer_t *a);
bool gw_decode_currency(const gw_obj_t *body, const char *want, gw_answer_t *a);
void gw_copy_str(char *dst, size_t dst_size, const char *src);
const char *gw_json_str(const json_t *object, const char *key);
/* 's' when it is short printable ASCII (safe to quote in a log line or a detail),
 * else a placeholder; NULL gives "(none)". */
const char *gw_printable(const char *s);

/* ---------------------------------------------------------------- channel state */

/* A sliding window of call results: the last 'capacity' calls, none older than
 * 'max_age_ms' (0 = any age). */
typedef struct {
    uint32_t head;            /* next slot to write */
    uint32_t count;
    uint32_t good;            /* calls among 'count' that went well */
    uint64_t ring[GW_WINDOW_CALLS_MAX]; /* at_ms << 1 | good */
} gw_window_t;

void gw_window_push(gw_window_t *w, uint32_t capacity, uint64_t now_ms, bool good);
void gw_window_expire(gw_window_t *w, uint64_t now_ms, uint32_t max_age_ms);
void gw_window_reset(gw_window_t *w);

#define GW_LATENCY_BUCKETS 14
#define GW_CODE_SLOTS 64

struct gw_chstate {
    _Atomic uint32_t refs;
    char name[GW_NAME_SIZE];
    pthread_mutex_t mutex;            /* guards everything below */
    /* breaker */
    gw_breaker_state breaker;
    uint64_t breaker_since_ms;
    uint32_t failures_in_row;
    uint32_t probes_in_flight;
    uint32_t probes_ok;
    gw_window_t breaker_window;
    /* routing */
    gw_window_t sr_window;
    uint32_t sr_capacity;             /* the window size it was filled with */
    /* latency of recent calls, microseconds */
    uint32_t latency_us[GW_LATENCY_SAMPLES];
    uint32_t latency_head;
    uint32_t latency_count;
    /* metrics */
    uint32_t in_flight;
    uint64_t attempts[GW_OP_COUNT];
    uint64_t outcomes[GW_OUTCOME_COUNT];
    uint32_t code_count;
    char code_names[GW_CODE_SLOTS][GW_CODE_SIZE];
    uint64_t code_counts[GW_CODE_SLOTS];
    uint64_t latency_buckets[GW_LATENCY_BUCKETS]; /* not cumulative; the last is +Inf */
    uint64_t latency_us_total;
    uint64_t latency_calls;
    uint64_t transitions[GW_BREAKER_STATE_COUNT]; /* into each state */
    uint64_t retries;                 /* attempts that were a retry of another channel's */
    uint64_t status_found;
    uint64_t status_not_found;
    uint64_t status_failed;
};

gw_chstate_t *gw_chstate_new(const char *name);
void gw_chstate_ref(gw_chstate_t *s);
void gw_chstate_unref(gw_chstate_t *s);

/* breaker.c. Routing asks first (no change); an attempt then takes a permit, and
 * reports its result. */
bool gw_breaker_allows(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, uint64_t now_ms);
bool gw_breaker_acquire(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, uint64_t now_ms,
                        bool *probe_out);
/* Records one finished call: breaker, success-rate window, latency, metrics. */
void gw_chstate_record(gw_chstate_t *s, const gw_config_t *config, const gw_channel_cfg_t *ch,
                       gw_op op, bool probe, const gw_answer_t *answer, uint32_t latency_us,
                       uint64_t now_ms);
/* A call that needs no permit (status inquiries): counted in flight until recorded. */
void gw_chstate_begin(gw_chstate_t *s);
/* A call that took a permit but was never made (persist refused). */
void gw_breaker_release(gw_chstate_t *s, bool probe);
/* The success rate in permille; -1 when the window has fewer than 'calls_min'. */
int32_t gw_success_rate(gw_chstate_t *s, const gw_sr_cfg_t *cfg, uint64_t now_ms);
gw_breaker_state gw_breaker_state_now(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, uint64_t now_ms);
void gw_count_code(gw_chstate_t *s, const char *code); /* caller holds s->mutex */
void gw_chstate_count_retry(gw_chstate_t *s);

/* ---------------------------------------------------------------- routing (route.c) */

/* Decides for a routed operation, or a direct one (follow-ups). 'rng' is the caller's
 * xorshift state. */
pc_status gw_route_decide(const gw_config_t *config, const gw_request_t *req, uint64_t now_ms,
                          uint64_t *rng, gw_decision_t *out);
uint64_t gw_rng_next(uint64_t *state);
uint64_t gw_now_ms(void);

/* ---------------------------------------------------------------- engine */

typedef struct gw_thread gw_thread_t;
typedef struct gw_conn gw_conn_t;

/* http.c: one channel address's connections on one thread. */
typedef struct {
    struct sockaddr_in addr;
    uint32_t open;                 /* connections open, busy or idle (<= open_max) */
    uint32_t open_max;             /* the channel's max_connections (the last call's) */
    gw_conn_t *idle;               /* most recently used first */
    struct gw_call *waiting_head;  /* calls waiting for a connection, first come first served */
    struct gw_call *waiting_tail;
} gw_pool_t;

typedef enum {
    GW_CALL_NEW = 0,        /* queued by gw_submit */
    GW_CALL_PERSISTING,     /* 'persist' runs; waits for gw_attempt_persisted */
    GW_CALL_SENDING,        /* the channel call is in the curl multi */
    GW_CALL_STATUS_WAIT,    /* unknown outcome: a status inquiry is due at 'due_ms' */
    GW_CALL_STATUS_SENDING, /* the status inquiry is in the curl multi */
    GW_CALL_FINISHING,      /* ended on its submitter's thread: 'done' runs from the inbox */
} gw_call_phase;

struct gw_call {
    gw_t *gw;
    gw_thread_t *thread;
    gw_config_t *config;           /* counted reference: the config it was routed with */
    gw_request_t req;
    gw_callbacks_t callbacks;
    gw_result_t result;            /* decision and attempts so far */
    gw_call_phase phase;
    uint32_t order_next;           /* next index into result.decision.order */
    int32_t channel_index;         /* the current attempt's channel */
    bool probe;                    /* the current attempt is a half-open probe */
    bool permit;                   /* the current attempt holds an in-flight count */
    pc_status persist_status;      /* from gw_attempt_persisted */
    gw_call_t *next;               /* inbox or timer list */
    uint64_t due_ms;
    uint32_t status_tries;
    gw_answer_t answer;            /* the last channel answer read */
    gw_http_call_t http;           /* built before 'persist', sent after it */
    /* HTTP */
    CURL *easy;                    /* NULL when no HTTP call runs */
    struct curl_slist *headers;    /* points into header_nodes: nothing allocated per call */
    struct curl_slist header_nodes[GW_HEADERS_MAX];
    char header_auth[GW_SECRET_BYTES_MAX + 32]; /* "Authorization: Bearer ..." (wiped after) */
    char header_key[GW_KEY_SIZE + 32];          /* "Idempotency-Key: ..." */
    gw_http_call_t request;        /* what is being sent (its body wiped after) */
    bool request_left;             /* the request went (or was going) out: it may have arrived */
    pc_bytes_t response;           /* the answer's body, GW_RESPONSE_BYTES_MAX at most */
    uint64_t started_ns;
    long http_status;              /* the answer's status line (0: none) */
    int transport_code;            /* CURLcode of the finished transfer (either client) */
    /* http.c's client */
    bool http_own;                 /* the transfer runs there, not in curl */
    gw_conn_t *conn;               /* the connection serving it */
    gw_pool_t *waiting_pool;       /* waiting for a connection there */
    char *out;                     /* the request's text (wiped after) */
    size_t out_bytes;
    size_t out_sent;
    uint32_t connect_timeout_ms;
    uint64_t total_deadline_ns;
    uint64_t connect_deadline_ns;
    uint64_t deadline_ns;          /* the sooner of the two while connecting */
    bool deadline_on;
    gw_call_t *deadline_prev;
    gw_call_t *deadline_next;
};

struct gw_thread {
    gw_t *gw;
    pthread_t thread;
    CURLM *multi;
    int epoll_fd;                  /* the transfers' sockets (curl's socket callback) and wake_fd */
    int wake_fd;                   /* an eventfd: the inbox got something */
    uint64_t curl_due_ns;          /* curl's timer (0: none) */
    pthread_mutex_t mutex;         /* guards inbox and stop; set polling under it */
    gw_call_t *inbox_head;
    gw_call_t *inbox_tail;
    atomic_bool polling;           /* in (or entering) epoll_wait with the inbox empty: a push wakes it;
                                      the thread clears it unlocked once awake (events_run) */
    atomic_uint waking;            /* pushers writing the eventfd after letting the mutex go */
    bool stop;
    bool started;
    uint64_t rng;
    gw_call_t *timers;             /* sorted by due_ms; owned by the thread */
    _Atomic uint32_t active;       /* calls this thread owns (queued ones included) */
    uint32_t easy_free_count;
    CURL *easy_free[64];           /* idle handles, reused */
    uint8_t *fd_watch;             /* by socket: what epoll watches for it (GW_WATCH_*); 0: nothing */
    uint32_t fd_watch_size;
    uint32_t pass_end_count;       /* hooks of the calls whose callbacks ran this pass */
    gw_pass_end_fn pass_ends[GW_PASS_HOOKS_MAX];
    /* http.c */
    uint32_t pool_count;
    gw_pool_t pools[GW_HTTP_POOLS_MAX];
    gw_conn_t **fd_conn;           /* by socket: its connection, NULL for others (curl's) */
    uint32_t fd_conn_size;
    gw_call_t *deadlines_head;     /* calls in http.c by deadline_ns */
    gw_call_t *deadlines_tail;
    gw_call_t *http_finished_head; /* transfers over, for call.c (gw_http_finished_run) */
    gw_call_t *http_finished_tail;
};

struct gw {
    char *config_path;
    pthread_mutex_t config_mutex;  /* guards 'config' and serializes reloads */
    gw_config_t *config;
    uint32_t thread_count;
    gw_thread_t *threads;
    _Atomic uint32_t next_thread;
    _Atomic uint32_t calls;        /* queued or running */
    _Atomic bool stopping;
    _Atomic uint64_t reloads_ok;
    _Atomic uint64_t reloads_refused;
    _Atomic uint64_t submitted;
    pc_spares_t calls_spare;       /* ended calls kept for reuse: at most GW_CALLS_FREE_MAX */
    pthread_mutex_t listener_mutex;
    gw_update_fn listener;
    void *listener_ctx;
};

/* call.c: the life of one operation on its gateway thread. */
/* A new call: from the inbox, or on its submitter's thread (persist_on_submit); 'rng'
 * is the running thread's. */
void gw_call_start(gw_call_t *call, uint64_t *rng);
void gw_call_persisted(gw_call_t *call);         /* gw_attempt_persisted arrived */
void gw_call_http_done(gw_call_t *call, int curl_code);
void gw_call_timer(gw_call_t *call);             /* due_ms reached */
/* engine.c services for call.c */
void gw_thread_add_timer(gw_thread_t *t, gw_call_t *call, uint64_t due_ms);
bool gw_thread_send(gw_thread_t *t, gw_call_t *call, const gw_channel_cfg_t *ch,
                    gw_http_call_t *http, const char *idempotency_key);
void gw_thread_finish(gw_thread_t *t, gw_call_t *call);
void gw_thread_http_release(gw_thread_t *t, gw_call_t *call);
/* Appends to the call's answer; false past GW_RESPONSE_BYTES_MAX (gw_response_too_large)
 * or without memory. */
static inline bool gw_response_append(gw_call_t *call, const char *data, size_t bytes) {
    return pc_bytes_append(&call->response, data, bytes);
}
static inline bool gw_response_too_large(const gw_call_t *call) {
    return call->response.failure == PC_BYTES_TOO_LARGE;
}

/* http.c: the own client (see its head comment). */
void gw_http_origin(gw_channel_cfg_t *ch);  /* sets own_http and the address, at config load */
/* 1 sent (or queued), 0 not for this client now (curl takes it), -1 out of memory. */
int gw_http_send(gw_thread_t *t, gw_call_t *call, const gw_channel_cfg_t *ch, const gw_http_call_t *http,
                 const char *key);
gw_conn_t *gw_http_conn_of(const gw_thread_t *t, int fd);
void gw_http_event(gw_thread_t *t, gw_conn_t *conn, uint32_t events);
void gw_http_deadlines_run(gw_thread_t *t);
uint64_t gw_http_next_deadline_ns(const gw_thread_t *t); /* 0: none */
void gw_http_finished_run(gw_thread_t *t);       /* hands finished transfers to call.c */
void gw_http_call_clear(gw_call_t *call);        /* frees the request's text */
void gw_http_close_all(gw_thread_t *t);          /* at the thread's end */
/* Before a call's 'persist' or 'done' runs: its pass_end hook runs at the pass's end. */
void gw_thread_note_pass_end(gw_thread_t *t, const gw_call_t *call);
/* 'bytes' (at most PC_RANDOM_POOL_BYTES) random bytes (attempt keys) from this thread's generator. */
void gw_random(uint8_t *out, size_t bytes);

#endif
