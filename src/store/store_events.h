/* store/store_events.h: the events outbox and its delivery state. Events are written
 * inside the writer's batch transaction (store_tx_t), atomically with the change they
 * describe; delivery state (destinations, cursors, retrying and dead-lettered
 * deliveries) is written the same way, by writer commands of the events worker and
 * the API. Reads go through store readers. The SQLite backend is sqlite_events.c; a
 * PostgreSQL backend implements the same functions on the same tables.
 *
 * An event's seq is its id as a number and its creation time: nanoseconds since the
 * epoch, bumped by 1 ns where needed so that seqs are unique and increase in commit
 * order (one writer per store). A destination has a cursor: every event with a seq at
 * or below it is settled for that destination (delivered, not for it, or recorded as
 * a delivery row). */
#ifndef PAYCORE_STORE_EVENTS_H
#define PAYCORE_STORE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"
#include "store/store.h"

#define STORE_EVENT_TYPE_SIZE 64
#define STORE_EVENT_SECRET_BOX_BYTES_MAX 256

/* An event row. Strings are borrowed: in writes from the caller, in reads from the
 * store for the duration of the callback. */
typedef struct {
    uint64_t seq;
    const char *type;              /* "transfer.created" */
    const char *object_id;
    uint32_t object_seq;           /* 1 at the object's creation, +1 per change */
    const char *body;              /* the event's JSON, exactly as delivered */
    size_t body_bytes;
    const char *const *owners;     /* merchants (key ids) who may see it; writes only */
    uint32_t owner_count;
} store_event_t;

/* ---- writing events (writer thread, inside a batch) ---- */
typedef struct store_events_writer store_events_writer_t;
/* Prepares the statements of events written on the connection of 'tx'. The writer may
 * be kept for later transactions of the same store: store_events_writer_reset at the
 * start of each (preparing costs more than a batch's inserts). End it before the
 * store closes. */
PC_MUST_USE pc_status store_events_writer_begin(store_tx_t *tx, store_events_writer_t **out);
void store_events_writer_reset(store_events_writer_t *writer);
/* True when the ledger's transfer events may be stored as references to the transfers
 * they name ("@transfer", events.h), rendered when read: the store keeps the transfers
 * next to its outbox and no other outbox copies its rows whole (SQLite). */
bool store_events_ledger_refs(const store_events_writer_t *writer);
void store_events_writer_end(store_events_writer_t *writer);
/* The next seq: above every seq stored and at least 'floor_ns' (the clock). */
PC_MUST_USE pc_status store_events_seq_next(store_events_writer_t *writer, uint64_t floor_ns,
                                            uint64_t *seq_out);
/* Inserts an event with a seq from store_events_seq_next (increasing within the tx). */
PC_MUST_USE pc_status store_events_insert(store_events_writer_t *writer, const store_event_t *event);
/* The merchant keys an account is granted to (as committed plus this transaction's
 * grants): at most 'owners_max', in key id order. */
PC_MUST_USE pc_status store_events_account_owners(store_events_writer_t *writer, const char *account_id,
                                                  char (*owners)[PC_ID_SIZE], uint32_t owners_max,
                                                  uint32_t *count);

/* ---- reading events ---- */
typedef struct {
    uint64_t after_seq;            /* exclusive lower bound (ascending), 0 = none */
    uint64_t before_seq;           /* exclusive upper bound, 0 = none */
    bool descending;
    uint32_t limit;
    const char *type;              /* NULL: any */
    const char *object_id;         /* NULL: any */
    const char *owner;             /* NULL: every event; else the events this merchant may see */
} store_events_query_t;

typedef void (*store_event_fn)(const store_event_t *event, void *ctx);
PC_MUST_USE pc_status store_events_list(store_reader_t *reader, const store_events_query_t *query,
                                        store_event_fn fn, void *ctx, bool *has_more);
/* One event; PC_NOT_FOUND when absent, or when 'owner' is given and may not see it. */
PC_MUST_USE pc_status store_events_get(store_reader_t *reader, uint64_t seq, const char *owner,
                                       store_event_fn fn, void *ctx);
/* The highest seq stored (0 when none). */
PC_MUST_USE pc_status store_events_latest(store_reader_t *reader, uint64_t *seq_out);
/* How many events are stored (metrics, tests). */
PC_MUST_USE pc_status store_events_count(store_reader_t *reader, uint64_t *count_out);

/* ---- destinations: webhook endpoints and the AMQP broker ---- */
typedef struct {
    char id[PC_ID_SIZE];
    char kind[16];                          /* "webhook" or "amqp" */
    char merchant_id[PC_ID_SIZE];           /* "" = every event */
    char url[EVENTS_URL_BYTES_MAX + 1];
    char types[1024];                       /* "*" or event types separated by ',' */
    uint8_t secret_box[STORE_EVENT_SECRET_BOX_BYTES_MAX]; /* the secret, encrypted */
    uint32_t secret_box_bytes;
    uint8_t previous_box[STORE_EVENT_SECRET_BOX_BYTES_MAX]; /* the rotated-out secret */
    uint32_t previous_box_bytes;
    uint64_t previous_until_ns;             /* signatures under it until then */
    uint64_t cursor_seq;
    uint64_t cursor_epoch;                  /* +1 at each rewind (redelivery) */
    uint64_t created_ns;
    uint64_t failing_since_ns;              /* 0: the last attempt succeeded */
    uint64_t disabled_ns;                   /* 0: enabled */
    char disabled_reason[256];
} store_event_destination_t;

/* Inserts 'destination' with its cursor at the newest event (it receives what comes
 * after its creation); PC_EXISTS when the id is taken. */
PC_MUST_USE pc_status store_events_destination_insert(store_tx_t *tx,
                                                      const store_event_destination_t *destination);
/* Deletes a destination and its delivery rows; *found false when absent. */
PC_MUST_USE pc_status store_events_destination_delete(store_tx_t *tx, const char *id, bool *found);
/* Moves the cursor forward to 'seq' unless a rewind changed the epoch since. */
PC_MUST_USE pc_status store_events_cursor_advance(store_tx_t *tx, const char *id, uint64_t epoch,
                                                  uint64_t seq);
/* Moves the cursor back to just before the first event at or after 'since_ns'
 * (never forward), drops the delivery rows from there on (those events are delivered
 * again from the outbox) and bumps the epoch; *found false when absent. A 'since_ns'
 * beyond every event only bumps the epoch (the worker rereads the destination). */
PC_MUST_USE pc_status store_events_cursor_rewind(store_tx_t *tx, const char *id, uint64_t since_ns,
                                                 bool *found);
/* Health: failing since (0 = healthy), disabled at (0 = enabled) and why. */
PC_MUST_USE pc_status store_events_destination_health(store_tx_t *tx, const char *id,
                                                      uint64_t failing_since_ns, uint64_t disabled_ns,
                                                      const char *reason);
/* A new secret; the old one stays valid for signatures until 'previous_until_ns'. */
PC_MUST_USE pc_status store_events_destination_secret(store_tx_t *tx, const char *id,
                                                      const uint8_t *box, uint32_t box_bytes,
                                                      const uint8_t *previous_box,
                                                      uint32_t previous_box_bytes,
                                                      uint64_t previous_until_ns, bool *found);

typedef void (*store_event_destination_fn)(const store_event_destination_t *destination, void *ctx);
/* Destinations in id order; 'merchant_id' NULL for all, else that merchant's. */
PC_MUST_USE pc_status store_events_destinations_list(store_reader_t *reader, const char *merchant_id,
                                                     const char *starting_after, uint32_t limit,
                                                     store_event_destination_fn fn, void *ctx,
                                                     bool *has_more);
PC_MUST_USE pc_status store_events_destination_get(store_reader_t *reader, const char *id,
                                                   store_event_destination_t *out);
/* How many webhook destinations a merchant ("" = unowned) has, and in all. */
PC_MUST_USE pc_status store_events_destination_counts(store_reader_t *reader, const char *merchant_id,
                                                      uint32_t *merchant_count, uint32_t *total_count);

/* ---- deliveries that did not succeed at once ---- */
typedef enum {
    STORE_DELIVERY_RETRYING = 1,   /* due again at next_attempt_ns */
    STORE_DELIVERY_DEAD = 2,       /* dead-lettered: retried too long; redelivery revives it */
} store_delivery_state;

typedef struct {
    char destination_id[PC_ID_SIZE];
    uint64_t seq;
    store_delivery_state state;
    uint32_t attempts;
    uint64_t first_attempt_ns;     /* 0: not attempted yet (held behind an earlier event) */
    uint64_t next_attempt_ns;
    uint64_t updated_ns;
    char last_error[256];
    const char *object_id;         /* reads only: the event's object */
} store_event_delivery_t;

/* Writes a delivery row while the destination's epoch is still 'epoch' (the state it
 * was decided in): after a redelivery moved the epoch, the old decision is void. */
PC_MUST_USE pc_status store_events_delivery_put(store_tx_t *tx, const store_event_delivery_t *delivery,
                                                uint64_t epoch);
PC_MUST_USE pc_status store_events_delivery_delete(store_tx_t *tx, const char *destination_id,
                                                   uint64_t seq);
/* Makes a delivery of event 'seq' to 'destination_id' due now (attempts from zero):
 * revives a retrying or dead-lettered row, or adds one when the event is at or below
 * the cursor; above it, the event is still to be delivered from the outbox (with the
 * epoch bumped by store_events_cursor_rewind, the worker rereads from the cursor). */
PC_MUST_USE pc_status store_events_delivery_redeliver(store_tx_t *tx, const char *destination_id,
                                                      uint64_t seq, uint64_t now_ns);

typedef void (*store_event_delivery_fn)(const store_event_delivery_t *delivery, void *ctx);
/* A destination's delivery rows in seq order after 'after_seq'; 'state' 0 = any. */
PC_MUST_USE pc_status store_events_deliveries_list(store_reader_t *reader, const char *destination_id,
                                                   store_delivery_state state, uint64_t after_seq,
                                                   uint32_t limit, store_event_delivery_fn fn,
                                                   void *ctx, bool *has_more);

/* ---- retention ---- */
/* Deletes up to 'rows_max' events created before 'before_ns' that every destination
 * has settled (at or below each cursor) and no delivery row references; the newest
 * event is always kept (it anchors the seq). */
PC_MUST_USE pc_status store_events_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max,
                                         uint32_t *deleted_count);

#endif
