/* events/events_internal.h: what the events files share (not a contract). */
#ifndef PAYCORE_EVENTS_INTERNAL_H
#define PAYCORE_EVENTS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "events/events.h"

/* ---- model.c: a growing text buffer and the JSON of events ---- */
typedef struct {
    char *text;
    size_t bytes;
    size_t capacity;
    bool failed;           /* an allocation failed: the text is incomplete */
} events_buf_t;

bool events_buf_reserve(events_buf_t *buf, size_t more);
void events_buf_append(events_buf_t *buf, const char *text, size_t bytes);
void events_buf_str(events_buf_t *buf, const char *text);   /* a NUL-terminated text */
void events_buf_u64(events_buf_t *buf, uint64_t value);      /* in decimal, as "%" PRIu64 */
void events_buf_i64(events_buf_t *buf, int64_t value);       /* in decimal, as "%" PRId64 */
void events_buf_printf(events_buf_t *buf, const char *format, ...) __attribute__((format(printf, 2, 3)));
void events_buf_free(events_buf_t *buf);
void events_render_account(events_buf_t *buf, const ledger_account_t *account);
void events_render_transfer(events_buf_t *buf, const ledger_transfer_t *transfer, ledger_pending_state state);
/* A resolving transfer's event type by its flags (posted, expired, voided) and the
 * state it gives the pending transfer. */
events_type events_transfer_resolved_type(uint16_t flags);
ledger_pending_state events_transfer_resolved_state(events_type type);
void events_render_envelope(events_buf_t *buf, uint64_t seq, events_type type, const char *object_id,
                            uint32_t object_seq, const char *object_json, size_t object_bytes,
                            const char *data_extra, size_t extra_bytes);
/* The bytes events_render_envelope writes around an object of 'object_bytes' (no
 * data_extra), counted without rendering: an event stored as a reference is held to
 * EVENTS_BODY_BYTES_MAX as the whole event it stands for. */
size_t events_envelope_bytes(uint64_t seq, events_type type, size_t object_id_bytes, uint32_t object_seq,
                             size_t object_bytes);

/* ---- outbox.c: the ledger's events of a batch (shards.c writes them for sets) ---- */
typedef struct {
    events_type type;                  /* account.created or transfer.* */
    ledger_account_t account;          /* account.created: as created (zero balances) */
    ledger_transfer_t transfer;        /* transfer.*: the object; the pending transfer once resolved */
    ledger_pending_state state;        /* the object's */
    bool resolved;                     /* posted, voided, expired: 'resolving' resolved it */
    ledger_transfer_t resolving;
    const char *owners[EVENTS_OWNERS_MAX]; /* borrowed */
    uint32_t owner_count;
} events_ledger_event_t;
/* Takes one of a batch's events instead of the outbox (a global transaction's leg). */
typedef pc_status (*events_ledger_sink)(void *ctx, const events_ledger_event_t *event);
/* The ledger's events of a batch (writer thread, inside its transaction), in the
 * order one store writes them: inserted through *outbox (begun on tx's store when
 * NULL), or each handed to 'sink' when it is not NULL. */
pc_status events_ledger_batch(store_events_writer_t **outbox, store_tx_t *tx, const ledger_t *ledger,
                              const ledger_changes_t *changes, const ledger_source_t *source,
                              events_ledger_sink sink, void *sink_ctx);
/* One ledger event rendered and inserted with the next seq (at least 'now_ns'). */
pc_status events_ledger_insert(store_events_writer_t *outbox, const events_ledger_event_t *event, uint64_t now_ns);
/* A ledger event row of another store's outbox inserted with the next seq here: the
 * same event under its new id and time. PC_STORE_CORRUPT: not a whole ledger event. */
pc_status events_row_copy(store_events_writer_t *outbox, const store_event_t *row, uint64_t now_ns);
/* The events this (writer) thread inserted since its last batch ended: counted as
 * written ('count') or as failed; events_written_drop forgets them (a shard's own
 * outbox: they count when they reach the home's). */
void events_written_settle(events_t *events, bool count);
void events_written_drop(void);
/* After a batch of the store holding the outbox: its events counted, the outbox's
 * statements reset, the delivery threads woken (commit_status PC_OK). */
void events_outbox_finished(events_t *events, pc_status commit_status);
/* shards.c: the relay stops (events_stop) and the rest goes (events_close). */
void events_shards_stop(events_shards_t *shards);
void events_shards_free(events_shards_t *shards);

/* ---- secret.c: endpoint secrets at rest ---- */
#define EVENTS_KEY_BYTES 32
/* Loads "<db>.webhook-key", or creates it (0600) when missing and 'may_create'. */
pc_status events_key_load(const char *db_path, bool may_create, uint8_t key[EVENTS_KEY_BYTES]);
/* Encrypts a secret for endpoint 'id' (the id is bound in as associated data). */
pc_status events_secret_seal(const uint8_t key[EVENTS_KEY_BYTES], const char *id, const char *secret,
                             uint8_t *box, uint32_t *box_bytes);
pc_status events_secret_open(const uint8_t key[EVENTS_KEY_BYTES], const char *id, const uint8_t *box,
                             uint32_t box_bytes, char secret_out[EVENTS_SECRET_SIZE]);

/* ---- flush.c: delivery state written through the writer ---- */
typedef enum {
    EVENTS_OP_CURSOR = 1,          /* advance a cursor (epoch-checked) */
    EVENTS_OP_DELIVERY_PUT,        /* a retrying or dead-lettered delivery row */
    EVENTS_OP_DELIVERY_DELETE,     /* a row's delivery succeeded */
    EVENTS_OP_HEALTH,              /* failing since, disabled */
    EVENTS_OP_PURGE,               /* retention */
} events_op_kind;

typedef struct {
    events_op_kind kind;
    char destination_id[PC_ID_SIZE];
    uint64_t seq;                  /* CURSOR: the new cursor; DELIVERY_*: the event */
    uint64_t epoch;                /* CURSOR, DELIVERY_PUT: the state it was decided in */
    store_event_delivery_t delivery; /* DELIVERY_PUT */
    uint64_t failing_since_ns;     /* HEALTH */
    uint64_t disabled_ns;
    char reason[256];
    uint64_t purge_before_ns;      /* PURGE */
} events_op_t;

typedef struct events_flusher events_flusher_t;
/* 'wake' is called (writer thread) when a flush finished. */
events_flusher_t *events_flusher_new(writer_t *writer, void (*wake)(void *ctx), void *ctx);
void events_flusher_free(events_flusher_t *flusher);
/* Queues an op; false only on OOM (the op is then lost: at-least-once still holds,
 * the event is delivered again after a restart). */
bool events_flusher_add(events_flusher_t *flusher, const events_op_t *op);
/* Submits the queued ops as one writer command unless one is running; true when
 * nothing is left to do (idle and empty). */
bool events_flusher_kick(events_flusher_t *flusher);
bool events_flusher_idle(events_flusher_t *flusher);
uint32_t events_flusher_pending(events_flusher_t *flusher);
/* The queued ops (tests), and dropping them (tests of a flusher without a writer). */
const events_op_t *events_flusher_ops(const events_flusher_t *flusher, uint32_t *count);
void events_flusher_discard(events_flusher_t *flusher);
/* Events the last committed run deleted by retention (0 when it purged nothing). */
uint32_t events_flusher_purged(events_flusher_t *flusher);
/* Purge ops committed and events they deleted, since start (any thread). */
void events_flusher_purge_counts(events_flusher_t *flusher, uint64_t *runs, uint64_t *purged);
/* Stop: waits for the running command, then submits the rest and waits. */
void events_flusher_drain(events_flusher_t *flusher);

/* ---- destination.c: one webhook endpoint's delivery state (webhook thread) ---- */
typedef struct events_dest events_dest_t;
typedef struct events_job events_job_t;
struct events_job {
    uint64_t seq;                  /* read-only outside destination.c */
    uint32_t attempts;
    uint64_t first_attempt_ns;     /* 0: never attempted */
    uint64_t next_attempt_ns;
    bool row;                      /* backed by a delivery row */
    bool in_flight;
    uint8_t type;                  /* events_type, or EVENTS_TYPE_COUNT: read with the body */
    char *body;                    /* the event, when kept from the outbox read; or NULL */
    uint32_t body_bytes;
    events_job_t *prev, *next;     /* the fresh or the rows list */
    events_job_t *next_same_object;
    struct dest_object *object;
};

typedef enum {
    EVENTS_OUTCOME_RETRY = 1,
    EVENTS_OUTCOME_DEAD = 2,
} events_outcome;

events_dest_t *events_dest_new(const char *id, const store_event_destination_t *row,
                               const events_config_t *config, events_flusher_t *flusher);
void events_dest_free(events_dest_t *dest);
/* Loading: the stored rows first (seq order), then the events after the cursor. */
bool events_dest_add_row(events_dest_t *dest, const store_event_delivery_t *row);
/* 'body' (or NULL) is copied while the destination's kept bodies fit their budget. */
bool events_dest_add_fresh(events_dest_t *dest, uint64_t seq, const char *object_id, events_type type,
                           const char *body, size_t body_bytes);
void events_dest_set_fetched(events_dest_t *dest, uint64_t seq);
uint64_t events_dest_fetched(const events_dest_t *dest);
void events_dest_set_truncated(events_dest_t *dest);
uint32_t events_dest_fresh_room(const events_dest_t *dest);
bool events_dest_needs_reload(const events_dest_t *dest);
/* The next job to send (now in flight), or NULL. */
events_job_t *events_dest_next(events_dest_t *dest, uint64_t now_ns);
/* When a waiting row becomes due: 0 now, UINT64_MAX never (a completion wakes). */
uint64_t events_dest_due_ns(events_dest_t *dest);
void events_dest_delivered(events_dest_t *dest, events_job_t *job);
events_outcome events_dest_failed(events_dest_t *dest, events_job_t *job, uint64_t now_ns, const char *error);
void events_dest_drop(events_dest_t *dest, events_job_t *job);
/* After outcomes: blocked fresh jobs at the front become rows. */
void events_dest_settle(events_dest_t *dest, uint64_t now_ns);
/* Queues the cursor's advance (once per flush, just before it is submitted). */
void events_dest_queue_cursor(events_dest_t *dest);
uint64_t events_dest_oldest_seq(const events_dest_t *dest);
bool events_dest_disabled(const events_dest_t *dest);
uint64_t events_dest_epoch(const events_dest_t *dest);
uint32_t events_dest_in_flight(const events_dest_t *dest);
uint32_t events_dest_jobs(const events_dest_t *dest);

/* ---- stats.c: per-destination figures for /metrics ---- */
typedef struct {
    char id[PC_ID_SIZE];
    char kind[16];
    uint64_t delivered;
    uint64_t retried;
    uint64_t dead_lettered;
    uint64_t lag_ms;               /* the oldest undelivered event's age */
    bool disabled;                 /* a webhook endpoint disabled after failing too long */
    bool present;
} events_dest_stats_t;

/* ---- the runtime ---- */
typedef struct events_webhooks events_webhooks_t;
typedef struct events_amqp events_amqp_t;

struct events {
    events_config_t config;        /* strings below are owned copies */
    char *db_path;
    char *amqp_url;
    char *amqp_exchange;
    store_t *store;                /* borrowed */
    writer_t *writer;              /* borrowed, from events_start */
    uint8_t key[EVENTS_KEY_BYTES]; /* seals endpoint secrets */
    char clock_file[512];          /* tests: seconds added to the delivery clock */
    _Atomic int64_t clock_shift_s;
    store_events_writer_t *outbox;  /* the hook's prepared statements (writer thread) */
    _Atomic uint64_t written[EVENTS_TYPE_COUNT];
    _Atomic uint64_t written_failed; /* events of batches that did not commit */
    pthread_mutex_t stats_mutex;
    events_dest_stats_t stats[EVENTS_ENDPOINTS_MAX + 1];
    _Atomic bool amqp_connected;
    _Atomic uint64_t purge_runs;   /* retention rounds committed */
    _Atomic uint64_t purged;       /* events retention deleted */
    _Atomic uint64_t webhook_wakeups; /* new events' wake-ups sent to the webhook thread */
    pthread_mutex_t wake_mutex;    /* guards 'webhooks' for the wakers (writer, API) */
    events_webhooks_t *webhooks;
    events_amqp_t *amqp;
    events_shards_t *shards;       /* a set of shards: every shard's outbox (shards.c) */
};

/* Lowers the calling (delivery) thread's CPU priority below the ledger's threads. */
void events_thread_background(void);

/* Wakes the webhook thread (any thread). */
void events_wake(events_t *events, bool reload);

/* The delivery clock: wall time plus the test shift (retries, dead-letter, disable). */
uint64_t events_now_ns(events_t *events);
/* Rereads the test clock file (the webhook thread, a few times a second). */
void events_clock_refresh(events_t *events);

/* Stats: the slot of destination 'id' (created on first use; NULL when full). Callers
 * hold stats_mutex. */
events_dest_stats_t *events_stats_slot(events_t *events, const char *id, const char *kind);
void events_stats_drop(events_t *events, const char *id);

/* Retry delay after 'attempts' failures: base * 2^(attempts-1), capped, with jitter
 * (uniformly between half and all of it). */
uint64_t events_backoff_ms(const events_config_t *config, uint32_t attempts);

/* webhooks.c and amqp.c: the two delivery threads. */
pc_status events_webhooks_start(events_t *events, events_webhooks_t **out);
/* New events committed ('reload' false), or destinations changed ('reload' true). */
void events_webhooks_notify(events_webhooks_t *webhooks, bool reload);
void events_webhooks_stop(events_webhooks_t *webhooks);
pc_status events_amqp_start(events_t *events, events_amqp_t **out);
void events_amqp_stop(events_amqp_t *amqp);

#endif
