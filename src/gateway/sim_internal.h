/* gateway/sim_internal.h: what the simulator's files share (not a contract: see
 * simulator.h). One process runs one simulator: an engine worker and a timer thread
 * (paycore's HTTP engine, sim_engine.c; with --http-mhd an event loop thread instead:
 * MHD on epoll, a simulated latency or held timeout suspends its connection on a
 * timer, sim_loop.c), one SQLite
 * connection guarded by 'lock' (every request's changes are one unit of a group
 * commit, committed at the end of each loop pass), and one worker thread (bank
 * settlements and callbacks, the daily settlement file). */
#ifndef PAYCORE_GATEWAY_SIM_INTERNAL_H
#define PAYCORE_GATEWAY_SIM_INTERNAL_H

#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "gateway/simulator.h"
#include "paycore/limits.h"
#include "store/sqlite_vfs.h" /* the WAL write layer the record opens with */

/* ---- faults (sim_config.c parses, sim_fault.c draws) ---- */

typedef enum {
    SIM_GARBAGE_INVALID_JSON = 0,
    SIM_GARBAGE_UNKNOWN_CODE = 1,
    SIM_GARBAGE_WRONG_AMOUNT = 2,
    SIM_GARBAGE_HTTP_500 = 3,
    SIM_GARBAGE_CLOSE = 4,
    SIM_GARBAGE_COUNT = 5,
} sim_garbage;

typedef struct {
    uint64_t start_ms;
    uint64_t duration_ms;
    uint64_t period_ms; /* 0: once */
} sim_outage_t;

typedef struct {
    uint32_t latency_p50_ms;
    uint32_t latency_p99_ms;
    uint32_t latency_max_ms;
    double error_rate;            /* rates and ratios: 0..1, never money */
    double timeout_rate;
    double timeout_applied_ratio;
    uint32_t timeout_hold_ms;
    double garbage_rate;
    double garbage_applied_ratio;
    uint8_t garbage_modes[SIM_GARBAGE_COUNT];
    uint32_t garbage_mode_count;
    sim_outage_t outages[SIM_OUTAGES_MAX];
    uint32_t outage_count;
    bool outage_close;            /* outage_mode "close" (else "503") */
    uint64_t epoch_mono_ms;       /* when this config took effect: outage windows count from it */
} sim_faults_t;

typedef struct {
    char *api_key;                /* owned; NULL: no auth */
    uint64_t seed;
    int64_t card_balance_minor;
    int64_t card_amount_limit_minor;
    char challenge_code[SIM_CHALLENGE_CODE_BYTES_MAX + 1];
    uint32_t settle_delay_ms;
    char *callback_secret;        /* owned; wiped on free */
    uint32_t callback_timeout_ms;
    uint32_t callback_retry_base_ms;
    uint32_t callback_retry_max_ms;
    sim_faults_t faults;
} sim_config_t;

void sim_config_default(sim_config_t *config);
void sim_config_free(sim_config_t *config);
/* Reads a config file; false with a message naming the line or key. */
bool sim_config_load(const char *path, sim_config_t *config, char *error, size_t error_bytes);
/* Parses a faults object; false with "field: why" in 'error'. */
bool sim_faults_parse(const json_t *object, sim_faults_t *out, char *error, size_t error_bytes);
/* The faults as the JSON object they were given as (new reference). */
json_t *sim_faults_json(const sim_faults_t *faults);

/* What the seeded stream decided for one arrival of one key. */
typedef struct {
    uint32_t latency_ms;
    bool error;
    bool timeout;
    bool garbage;
    sim_garbage garbage_mode;
    bool apply;                   /* false: a timeout or garbage that applies nothing */
} sim_fate_t;

/* ---- the record (sim_record.c) ---- */

/* Rows found by a text (an id, a key) through its hash, in memory (sim_record.c). */
typedef struct {
    struct sim_row_slot *slots;   /* NULL: not loaded */
    uint32_t capacity;            /* slots: a power of two, at most half full */
    uint32_t count;
} sim_rowmap_t;

/* Card: a cardholder as its requests have left it (sim_holders.c). */
typedef struct {
    int64_t balance_minor;        /* excludes holds: available = balance - held */
    int64_t held_minor;
    int64_t amount_limit_minor;
} sim_holder_t;

/* Card: the cardholders in memory, by number and currency (open addressing). */
typedef struct {
    struct sim_holder_slot *slots; /* NULL: not loaded */
    uint32_t capacity;            /* slots: a power of two, at most half full */
    uint32_t count;
} sim_holders_t;

typedef struct {
    sqlite3 *db;
    sim_kind kind;
    struct {
        const char *sql;          /* a string literal: cached by its address */
        sqlite3_stmt *stmt;
    } cache[SIM_STMT_CACHE_MAX];
    uint32_t cache_count;
    uint64_t *keys_seen;          /* Bloom filter of the keys in arrival_counts and idempotency; NULL: none */
    sim_holders_t holders;        /* card: every cardholder's balance and holds (sim_holders.c) */
    sim_rowmap_t auths;           /* card authorizations by id (sim_db_auth_*) */
    sim_rowmap_t answers;         /* idempotency rows by key (sim_db_answer_*) */
    struct sim_auth_recent *auth_recent; /* card: copies of recent authorizations' rows (sim_card.c); freed at close */
    uint64_t rollbacks;           /* rollbacks so far: a copy of a row taken before one may be undone */
} sim_db_t;

bool sim_db_open(sim_db_t *db, const char *path, sim_kind kind, char *error, size_t error_bytes);
void sim_db_close(sim_db_t *db);
/* A cached statement, reset, with 'types' bound in order: 's' const char * (NULL binds
 * NULL), 'i' int64_t. NULL after logging when SQLite fails. */
sqlite3_stmt *sim_db_query(sim_db_t *db, const char *sql, const char *types, ...);
/* Runs a statement that returns no rows; false after logging. */
bool sim_db_run(sim_db_t *db, const char *sql, const char *types, ...);
/* Runs a statement returning at most one integer; 'fallback' when no row. */
bool sim_db_int(sim_db_t *db, int64_t *out, int64_t fallback, const char *sql, const char *types, ...);
/* One transaction outside any group: at start, before requests come (units below after). */
bool sim_db_begin(sim_db_t *db);
bool sim_db_commit(sim_db_t *db);
void sim_db_rollback(sim_db_t *db);
/* Idempotency keys the record may hold (a Bloom filter filled at open, then by
 * sim_db_key_note): false only for a key in neither arrival_counts nor idempotency, so
 * a first arrival is counted without a read. The record is the simulator's alone. */
bool sim_db_key_maybe(const sim_db_t *db, const char *key);
/* Notes a key about to be written (a write rolled back leaves a false "maybe"). */
void sim_db_key_note(sim_db_t *db, const char *key);
/* ---- card: cardholders (sim_holders.c) ----
 * A cardholder's row (cardholder_openings) holds where its balance and holds started
 * (set by --data, the admin request or a migration); requests never rewrite it. What
 * moved them since is in the authorizations' rows: an approved one holds its amount
 * less what was captured, and its captures less its refunds came off the balance
 * (SIM_HOLDER_MOVES_WHERE picks the rows that move money; unlimited cards have none).
 * Memory keeps each cardholder's sum, filled at open with one scan of the
 * authorizations and again after any rollback; a request moves it only after one of
 * its rows is written, so a request that fails after that fails its group, whose
 * rollback fills it again from the file. The view `cardholders` derives the same
 * figures from the file (for inspection: it scans the authorizations). */
#define SIM_CARD_UNLIMITED_VISA "4242424242424242"
#define SIM_CARD_UNLIMITED_TEST "4000000000000002"
#define SIM_HOLDER_MOVES_WHERE                                                                                  \
    "status = 'approved' AND card_number NOT IN ('" SIM_CARD_UNLIMITED_VISA "', '" SIM_CARD_UNLIMITED_TEST "')"
#define SIM_HOLDER_BALANCE_MOVE_SQL "refunded_total - captured_total"
#define SIM_HOLDER_HELD_MOVE_SQL "amount - captured_total"
#define SIM_HOLDER_TEXT_SIZE 24   /* up to 19 digits, a space, a currency code, a NUL */

/* Fills the cardholders from the record (their rows, then the authorizations' moves);
 * false (logged; the map is left unloaded) when the record or memory fails. */
bool sim_holders_load(sim_db_t *db);
void sim_holders_clear(sim_holders_t *holders);
bool sim_holders_loaded(const sim_db_t *db);
/* The cardholder of 'number' in 'currency'; NULL when the record has none (or the map
 * is not loaded: check sim_holders_loaded). */
sim_holder_t *sim_holders_find(sim_db_t *db, const char *number, const char *currency);
/* Adds a cardholder whose row was just inserted; NULL (logged) when out of memory. */
sim_holder_t *sim_holders_add(sim_db_t *db, const char *number, const char *currency, const sim_holder_t *holder);
/* Hash of a text (an id, a key, a cardholder's text), never 0. */
uint64_t sim_text_hash(const char *text);

/* Card authorizations by id, in memory (the authorizations table has no index on its
 * id: rows are appended in arrival order): each one's row and its record's row. Filled
 * at open, by sim_db_auth_note as each is inserted, and again from the file after any
 * rollback (so it never names a row that was undone). */
bool sim_db_auth_note(sim_db_t *db, const char *id, int64_t auth_row, int64_t record_row);
/* The next candidate rows for 'id' from '*cursor' (0 to start): the map keeps a hash
 * of each id, so the caller checks the id of the row it reads. False when none is
 * left (or the map is not loaded). */
bool sim_db_auth_next(const sim_db_t *db, const char *id, uint32_t *cursor, int64_t *auth_row,
                      int64_t *record_row);
/* The recorded answer of 'key' (the idempotency table is appended in arrival order;
 * rows are found through the in-memory map of keys, filled at open, by
 * sim_db_answer_put, and again after any rollback): 1 found, '*out' a statement on
 * its row (columns SIM_ANSWER_COL_*; the caller resets it); 0 none; -1 the record
 * failed (or the map is not loaded: never taken for "none"). */
enum { SIM_ANSWER_COL_OPERATION, SIM_ANSWER_COL_HASH, SIM_ANSWER_COL_STATUS, SIM_ANSWER_COL_RESPONSE,
       SIM_ANSWER_COL_KEY };
int sim_db_answer_find(sim_db_t *db, const char *key, sqlite3_stmt **out);
/* Records the answer of 'key'; false (logged) when the record fails or the key has
 * one already. */
bool sim_db_answer_put(sim_db_t *db, const char *key, const char *operation, const char *request_hash,
                       unsigned http_status, const char *response, int64_t created_at_ms);
/* Column i as text, "" for NULL. */
const char *sim_col_text(sqlite3_stmt *stmt, int column);

/* ---- units of work on the record: group commit (sim_record.c) ----
 * Every use of the record is a unit: under the simulator's lock, in a savepoint of the
 * open group transaction. The group commits when a unit ends and no other thread waits
 * for the lock (or the group is full): one commit carries the rows of every request
 * that arrived meanwhile. A unit's caller answers only after sim_unit_wait: nothing
 * answered is ever lost to a kill, and nothing uncommitted is ever told. */

typedef struct sim_unit {
    uint64_t group;               /* the group joined; 0: none (nothing to wait for) */
    bool marked;                  /* sim_unit_mark was called */
    int64_t changes_at_mark;      /* the connection's row changes then */
    bool done;                    /* the group's commit ended (under group_lock) */
    bool ok;                      /* ... and committed */
    struct sim_unit *next;        /* the group's members */
} sim_unit_t;

/* Takes the simulator's lock. A writer joins (or opens) the group transaction; a reader
 * joins the open group if any (it may read its rows). False (lock released, nothing
 * joined) when the record fails. */
bool sim_unit_begin(sim_t *sim, sim_unit_t *unit, bool writes);
/* Sets the point sim_unit_end undoes to when told not to keep: changes before it
 * always stay. No savepoint: a unit told not to keep rarely changed anything (requests
 * validate before they write; a write fails only when the record does), so one that
 * did fails its whole group instead (every member answers 500, nothing is told). */
bool sim_unit_mark(sim_t *sim, sim_unit_t *unit);
/* Keeps the changes after the mark, or undoes them (the whole group, see above, when
 * there are any); commits the group when nobody else is about to add to it, and
 * releases the lock. */
void sim_unit_end(sim_t *sim, sim_unit_t *unit, bool keep);
/* True when the unit changed rows since its mark. */
bool sim_unit_changed(sim_t *sim, const sim_unit_t *unit);
/* Waits until the unit's group committed; true when it did (or the unit joined none).
 * Every unit that joined a group is waited for before its memory goes. */
bool sim_unit_wait(sim_t *sim, sim_unit_t *unit);
/* True while the unit's group has not committed (sim_unit_wait would block). */
bool sim_unit_pending(sim_t *sim, const sim_unit_t *unit);
/* Commits the open group, if any (at stop, with no request left). */
void sim_group_flush(sim_t *sim);
/* Checkpoints run on the worker, on their own connection, when a commit finds the WAL
 * long (start: after the record opens; run: each worker pass; stop: before it closes). */
void sim_checkpoints_start(sim_t *sim);
void sim_checkpoint_run(sim_t *sim);
void sim_checkpoints_stop(sim_t *sim);

/* ---- the event loop (sim_loop.c, --http-mhd) ---- */

typedef struct sim_loop sim_loop_t;
typedef struct sim_req sim_req_t;

/* Requests waiting for a time: a binary min-heap of SIM_CONNECTIONS_MAX slots (a
 * connection has one request waiting at most). Not locked: the owner's. */
typedef struct {
    uint64_t due_ms;              /* monotonic */
    sim_req_t *req;
} sim_timer_t;

typedef struct {
    sim_timer_t *timers;
    uint32_t count;
} sim_timers_t;

bool sim_timers_init(sim_timers_t *heap);
void sim_timers_free(sim_timers_t *heap);
void sim_timers_push(sim_timers_t *heap, uint64_t due_ms, sim_req_t *req);
/* The earliest; the heap must not be empty. */
sim_req_t *sim_timers_pop(sim_timers_t *heap);

/* Starts the loop thread on the started daemon (epoll, external polling). */
bool sim_loop_start(sim_t *sim, char *error, size_t error_bytes);
/* Wakes the loop ('stopping' set), which resumes every suspended request and ends;
 * joins it. NULL loop: no-op. */
void sim_loop_stop(sim_t *sim);
/* On the loop thread, from a request's handler: suspends its connection for 'ms' (at
 * stop: until the loop drains). MHD calls the handler again once it resumes. */
void sim_loop_wait_ms(sim_req_t *req, uint64_t ms);
/* From a request's handler, which then returns without an answer: MHD calls it again
 * in the next pass, after the open group committed at the end of this one. */
void sim_loop_wait_commit(sim_req_t *req);
/* The handler was called again (or the connection closed): the request no longer
 * waits. */
void sim_loop_commit_seen(sim_req_t *req);

/* ---- the simulator on paycore's HTTP engine (sim_engine.c, the default) ----
 * One engine worker runs the requests (the loop's part); a request that waits for
 * its group's commit is kept and answered by the worker's batch-end hook after it
 * commits the batch's group; latency waits and held timeouts are kept on the engine's
 * timer thread, which answers (or closes) them itself. */

typedef struct sim_engine sim_engine_t;

/* Listens on 'addr' and starts the worker and the timer thread (sets sim->port). */
bool sim_engine_start(sim_t *sim, const struct sockaddr_in *addr, char *error, size_t error_bytes);
/* With 'stopping' set: fires every timer (latency waits close unapplied, held timeouts
 * close), stops the server once every kept request is answered, joins the threads. */
void sim_engine_stop(sim_t *sim);
void sim_engine_wait_ms(sim_req_t *req, uint64_t ms);
void sim_engine_wait_commit(sim_req_t *req);
/* The query argument 'name' of an engine request, percent-decoded; NULL when absent.
 * Valid until the next call for the request. */
const char *sim_engine_query(sim_req_t *req, const char *name);

/* ---- the simulator ---- */

struct sim {
    sim_kind kind;
    sim_config_t config;          /* faults live in 'faults' below */
    char db_path[SIM_PATH_BYTES_MAX + 1];
    char report_dir[SIM_PATH_BYTES_MAX + 1];
    pthread_mutex_t lock;         /* the record and all channel state */
    sim_db_t db;
    atomic_uint entering;         /* threads about to take 'lock' for a unit */
    bool group_open;              /* under 'lock': BEGIN issued, not yet committed */
    uint64_t group_seq;           /* under 'lock': the open (or last) group's number */
    uint32_t group_units;         /* under 'lock': members of the open group */
    atomic_uint_fast64_t commits;     /* groups committed, and the requests they carried: */
    atomic_uint_fast64_t commit_units; /* GET /healthz shows both (a group's mean size) */
    atomic_uint_fast64_t connections;  /* accepted since start (GET /healthz): reuse shows as few */
    sim_unit_t *group_members;    /* under 'lock' */
    pthread_mutex_t group_lock;   /* members' done/ok flags */
    pthread_cond_t group_cond;
    atomic_bool checkpoint_wanted;
    int checkpoint_frames;        /* WAL frames of SIM_CHECKPOINT_WAL_KIB at the record's page size */
    sqlite3 *checkpoint_db;       /* the worker's own connection, for checkpoints */
    atomic_int wal_frames;        /* the WAL's length at the last commit */
    atomic_int writeback_frames;  /* the WAL's frames whose writeback the worker started */
    atomic_bool writeback_wanted;
    atomic_int writeback_step_frames; /* WAL frames of SIM_WAL_WRITEBACK_KIB at the record's page size;
                                   * INT32_MAX once the WAL could not be opened for it */
    int wal_frame_bytes;          /* the record's page size and a frame header */
    int wal_fd;                   /* worker: the WAL, for sync_file_range; -1: not open */
    atomic_uint_fast64_t wal_writebacks; /* writebacks started (GET /healthz) */
    pthread_mutex_t faults_lock;  /* 'faults' is replaced at run time */
    sim_faults_t faults;
    struct MHD_Daemon *daemon;    /* NULL on the engine */
    sim_engine_t *engine;         /* NULL on MHD */
    uint16_t port;
    int quiesced_fd;              /* the listening socket once the loop stopped accepting; -1 */
    sim_loop_t *loop;
    pthread_mutex_t spare_lock;   /* the engine frees requests on two threads */
    sim_req_t *spare_reqs;        /* completed requests kept for reuse */
    uint32_t spare_count;
    atomic_bool batching;         /* the loop is in a pass: units leave the commit to its end */
    atomic_bool stopping;
    pthread_mutex_t sleep_lock;   /* the worker's sleeps end on stop */
    pthread_cond_t sleep_cond;
    uint64_t kicks;               /* sim_wake count: ends the worker's wait early */
    pthread_t worker;
    bool worker_started;
    char report_date[11];         /* the UTC day the worker last saw */
};

uint64_t sim_wall_ms(void);
uint64_t sim_mono_ms(void);
/* A condition variable whose timed waits count on the monotonic clock. */
void sim_cond_init_monotonic(pthread_cond_t *cond);
/* The monotonic time 'ms' from now, for pthread_cond_timedwait on such a variable. */
struct timespec sim_deadline_after(uint64_t ms);
/* Wakes every sleeper (stop, new bank work). */
void sim_wake(sim_t *sim);
/* The current faults (a copy, taken under faults_lock). */
void sim_faults_current(sim_t *sim, sim_faults_t *out);
/* True when 'faults' schedule an outage at this moment. */
bool sim_in_outage(const sim_faults_t *faults, uint64_t now_mono_ms);

/* ---- determinism (sim_fault.c) ---- */

/* The fate of the 'arrival'-th request carrying 'key' (docs/channels.md, Determinism). */
void sim_fate_draw(const sim_t *sim, const sim_faults_t *faults, const char *key, uint64_t arrival,
                   sim_fate_t *out);
/* "<prefix>" + 24 hex digits derived from the seed, the kind, 'salt' and 'key'. */
void sim_make_id(const sim_t *sim, const char *prefix, const char *salt, const char *key,
                 char out[SIM_ID_SIZE]);
/* SHA-256 of method, path and the canonical JSON of 'body', as 64 hex digits. */
void sim_request_hash(const char *method, const char *path, const json_t *body, char out[65]);

/* ---- requests (sim_server.c) ---- */

/* Starts the listener on 'listen' (sets sim->port): paycore's HTTP engine, or
 * libmicrohttpd when 'http_mhd'; false with the reason. */
bool sim_http_start(sim_t *sim, const char *listen, bool http_mhd, char *error, size_t error_bytes);
void sim_http_stop(sim_t *sim);

/* What a request's step leaves to the transport. */
typedef enum {
    SIM_NEXT_SEND = 0,            /* the reply is ready: send it */
    SIM_NEXT_CLOSE = 1,           /* close the connection, no answer */
    SIM_NEXT_WAIT = 2,            /* kept: a timer or the group's commit calls the step again */
} sim_next;

/* A request from the spare list or new (zeroed, 'sim' set); NULL when out of memory. */
sim_req_t *sim_request_alloc(sim_t *sim);
/* Runs the request from where it is (sim_stage) to its next wait or its answer. */
sim_next sim_request_step(sim_req_t *req);
/* The request is over (answered or closed): its units waited for, its memory kept
 * for reuse. */
void sim_request_free(sim_req_t *req);

typedef void (*sim_handler)(sim_req_t *req);

typedef enum {
    SIM_ROUTE_OPERATION = 1,      /* state-changing: Idempotency-Key, faults, recorded */
    SIM_ROUTE_ADMIN = 2,          /* never faulted, served during outages */
    SIM_ROUTE_OPEN = 4,           /* no auth, never faulted (/healthz) */
    SIM_ROUTE_INQUIRY = 8,        /* reads: never faulted, but outages apply */
} sim_route_flags;

typedef struct {
    const char *method;
    const char *pattern;          /* "{}" matches one path segment (an id) */
    sim_handler handler;
    uint32_t flags;
    const char *operation;        /* recorded with the idempotency key */
} sim_route_t;

#define SIM_PARAMS_MAX 2

/* Where a request is when MHD calls its handler (again, after a resume). */
typedef enum {
    SIM_STAGE_NEW = 0,            /* the body has arrived */
    SIM_STAGE_LATENCY = 1,        /* the simulated latency is over: handle it */
    SIM_STAGE_RECORDING = 2,      /* handled: its units' group has committed, answer */
    SIM_STAGE_HOLDING = 3,        /* a held timeout is over: close */
} sim_stage;

struct sim_req {
    sim_t *sim;
    struct MHD_Connection *connection;  /* NULL on the engine */
    struct http_request *http_request;  /* NULL on MHD */
    const char *query;            /* engine: the target's query (after '?'), or NULL */
    size_t query_bytes;
    char *query_value;            /* engine: sim_query's last answer (owned) */
    const sim_route_t *route;
    char method[8];
    char path[SIM_PATH_BYTES_MAX + 1];
    char params[SIM_PARAMS_MAX][SIM_ID_SIZE];
    char *body_bytes;             /* owned on MHD; the engine's request's on the engine */
    size_t body_size;
    bool body_too_large;
    json_t *body;                 /* owned: the parsed body, {} when empty */
    char key[SIM_ID_SIZE];        /* Idempotency-Key ("" when none) */
    char request_hash[65];
    sim_fate_t fate;
    bool fate_drawn;
    bool first_arrival;           /* the key's count is 1: nothing recorded under it yet */
    uint64_t arrival;             /* the key's count with this arrival */
    bool count_pending;           /* the count is for handle_in to write */
    sim_unit_t arrival_unit;      /* the arrival count (and, without latency, the rest) */
    sim_unit_t unit;              /* the operation after a latency wait */
    /* the reply */
    unsigned http_status;
    char *reply;                  /* owned */
    size_t reply_bytes;
    const char *content_type;
    bool replied;
    bool replayed;                /* answered from the record */
    bool skipped;                 /* not applied: nothing recorded, no answer sent */
    /* the loop */
    sim_stage stage;
    uint32_t hold_ms;             /* a held timeout's length, from the faults at arrival */
    bool awaiting_commit;         /* counted by the loop as waiting for its pass's commit */
    struct sim_req *spare_next;   /* in sim->spare_reqs once completed; the engine's commit list */
};

void sim_reply_json(sim_req_t *req, unsigned http_status, json_t *answer /* stolen */);
void sim_reply_text(sim_req_t *req, unsigned http_status, const char *content_type, char *text /* stolen */,
                    size_t text_bytes);
void sim_reply_error(sim_req_t *req, unsigned http_status, const char *code, const char *message,
                     const char *field);
void sim_reply_invalid(sim_req_t *req, const char *field, const char *message);
void sim_reply_not_found(sim_req_t *req, const char *what);
void sim_reply_internal(sim_req_t *req);
/* Called by an operation once its request is valid: false when the fate says to apply
 * nothing (a wallet or bank malfunction is answered 503 here; a timeout or garbage that
 * is not applied marks the request skipped). Card malfunctions are decided by the card. */
bool sim_proceed(sim_req_t *req);
/* The UTC query argument 'name' or NULL. */
const char *sim_query(sim_req_t *req, const char *name);

/* ---- request validation (sim_json.c): each writes the 400 reply and returns false ---- */

/* The first key of 'object' not in 'allowed' (NULL-terminated), or NULL. */
const char *sim_unknown_key(const json_t *object, const char *const *allowed);
/* The body is an object holding only 'allowed' keys (NULL-terminated). */
bool sim_body_only(sim_req_t *req, const json_t *object, const char *prefix, const char *const *allowed);
bool sim_get_amount(sim_req_t *req, const json_t *object, const char *name, const char *field,
                    bool required, int64_t *out);
bool sim_get_int(sim_req_t *req, const json_t *object, const char *name, const char *field,
                 int64_t min, int64_t max, int64_t *out);
/* A string of at most 'bytes_max' bytes; '*out' NULL when absent and not required. */
bool sim_get_string(sim_req_t *req, const json_t *object, const char *name, const char *field,
                    bool required, size_t bytes_max, const char **out);
bool sim_get_bool(sim_req_t *req, const json_t *object, const char *name, const char *field,
                  bool fallback, bool *out);
bool sim_get_currency(sim_req_t *req, const json_t *object, const char *name, const char *field,
                      bool required, const char **out);
bool sim_get_id(sim_req_t *req, const json_t *object, const char *name, const char *field,
                const char **out);
/* True when 'text' is 'min'..'max' ASCII digits. */
bool sim_digits(const char *text, size_t min, size_t max);
/* A balance for admin and data: 0..SIM_AMOUNT_MINOR_MAX. */
bool sim_get_balance(sim_req_t *req, const json_t *object, const char *name, int64_t *out);

/* ---- answers written as text (sim_json.c) ----
 * The hot answers (card authorizations, captures, voids, refunds) are written straight
 * into a buffer: the bytes json_dumps(JSON_COMPACT) gives for the same members in the
 * same order, without building and dumping a jansson object per answer. Values must
 * be printable ASCII (ids, codes, fixed messages, currency codes): anything else fails
 * the answer, which then goes out as a 500. */

#define SIM_ANSWER_BYTES_MAX 1024

typedef struct {
    char text[SIM_ANSWER_BYTES_MAX];
    size_t bytes;
    bool failed;
} sim_answer_t;

void sim_answer_begin(sim_answer_t *a);
void sim_answer_str(sim_answer_t *a, const char *key, const char *value);
void sim_answer_int(sim_answer_t *a, const char *key, int64_t value);
/* Closes the object and makes it the request's reply. */
void sim_reply_answer(sim_req_t *req, unsigned http_status, sim_answer_t *a);
/* The bytes json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS) gives, for values of
 * printable ASCII strings, integers, literals, objects and arrays; false for anything
 * else (a real, another character, too long: the caller dumps through jansson). */
bool sim_canonical_text(const json_t *value, sim_answer_t *out);

/* ---- channels ---- */

extern const sim_route_t sim_card_routes[];
extern const uint32_t sim_card_route_count;
extern const sim_route_t sim_wallet_routes[];
extern const uint32_t sim_wallet_route_count;
extern const sim_route_t sim_bank_routes[];
extern const uint32_t sim_bank_route_count;

/* One entry of a --data file (the list "cards" or "accounts"): validated like the admin
 * request of the same shape, then created unless the record has it already. False
 * after a reply (400 naming the field, or 500). */
bool sim_card_data_entry(sim_req_t *req, const json_t *entry);
bool sim_wallet_data_entry(sim_req_t *req, const json_t *entry);
bool sim_bank_data_entry(sim_req_t *req, const json_t *entry);
/* Bank: brings a stored transfer answer ('response', changed in place) up to the
 * transfer's outcome (sim_bank.c; the status route's answer). */
void sim_bank_status_now(sim_t *sim, json_t *response);

/* Bank: decides due transfers and delivers due callbacks; returns the monotonic ms of
 * the next due work (UINT64_MAX: none). Called by the worker without the lock held. */
uint64_t sim_bank_work(sim_t *sim);

/* ---- settlement reports (sim_report.c) ---- */

void sim_report_get(sim_req_t *req);
void sim_discrepancy_post(sim_req_t *req);
void sim_discrepancy_list(sim_req_t *req);
/* Writes the report of 'date' (YYYY-MM-DD) to the report dir in a unit of its own. */
bool sim_report_write_day(sim_t *sim, const char *date);
/* "YYYY-MM-DD" of a wall-clock ms (UTC). */
void sim_utc_date(uint64_t wall_ms, char out[11]);

#endif
