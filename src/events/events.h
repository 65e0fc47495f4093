/* events/events.h: what happened to the money, told to merchants and to other systems.
 *
 * The outbox: every state change writes an event row in the SAME store transaction as
 * the change (the writer's batch), so an event exists if and only if its change
 * committed. Ledger changes become events through the writer's batch hook
 * (events_batch_hook); any other subsystem emits its own with events_emit from its
 * writer command's in_transaction. Delivery runs on the events threads, never on the
 * writer or an HTTP thread: signed webhooks (libcurl multi) and a RabbitMQ topic
 * exchange with publisher confirms (librabbitmq), at least once, in order per object,
 * surviving restarts (delivery state is stored through writer commands).
 *
 * Emitting an event from another subsystem (payments, risk). Add the type to
 * EVENTS_TYPES below (one line), then, in the writer command's in_transaction:
 *
 *     static pc_status payment_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
 *         payment_t *p = cmd->user;
 *         ... write the payment's own rows with 'tx' ...
 *         events_emit_t event = {
 *             .type = EVENTS_TYPE_PAYMENT_CAPTURED,
 *             .object_id = p->id,
 *             .object_seq = p->version,        // 1 at creation, +1 per change: no gaps
 *             .object_json = p->json,          // the payment as it is after this change
 *             .owners_account_id = p->merchant_account, // its merchant's keys see it
 *         };
 *         return events_emit(p->events, tx, &event, NULL); // an error fails the batch
 *     }
 *
 * The event commits or rolls back with the payment's rows; the delivery threads see it
 * after the commit. object_seq must grow by exactly one per change of the object (the
 * emitter owns the object's state, so it knows its version): receivers use it to tell
 * a missing or out-of-order event, and delivery keeps the order per object.
 *
 * Threads: events_emit and the batch hook run on the writer thread. The delivery
 * threads read through their own store readers and write their state (cursors,
 * retries) through writer commands. The API calls the remaining functions from its
 * threads; they are thread-safe. */
#ifndef PAYCORE_EVENTS_H
#define PAYCORE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"
#include "store/store.h"
#include "store/store_events.h"
#include "shard/shard.h"
#include "writer/writer.h"

/* Every event type: one line each, never renamed (receivers route on these names). */
#define EVENTS_TYPES(X)                                           \
    X(ACCOUNT_CREATED, "account.created")                         \
    X(TRANSFER_CREATED, "transfer.created")                       \
    X(TRANSFER_POSTED, "transfer.posted")                         \
    X(TRANSFER_VOIDED, "transfer.voided")                         \
    X(TRANSFER_EXPIRED, "transfer.expired")                       \
    EVENTS_PAYMENT_TYPES(X)                                       \
    EVENTS_REFUND_TYPES(X)                                        \
    EVENTS_BANK_OUT_TYPES(X, PAYOUT, "payout.")                   \
    EVENTS_BANK_OUT_TYPES(X, WITHDRAWAL, "withdrawal.")

/* A payment: its state after the change, or "updated" when the state stayed (an
 * operation began, a new channel attempt). The state names are payments.h's. */
#define EVENTS_PAYMENT_TYPES(X)                                   \
    X(PAYMENT_CREATED, "payment.created")                         \
    X(PAYMENT_REQUIRES_ACTION, "payment.requires_action")         \
    X(PAYMENT_IN_REVIEW, "payment.in_review")                     \
    X(PAYMENT_AUTHORIZED, "payment.authorized")                   \
    X(PAYMENT_PARTIALLY_CAPTURED, "payment.partially_captured")   \
    X(PAYMENT_CAPTURED, "payment.captured")                       \
    X(PAYMENT_PARTIALLY_REFUNDED, "payment.partially_refunded")   \
    X(PAYMENT_REFUNDED, "payment.refunded")                       \
    X(PAYMENT_CANCELED, "payment.canceled")                       \
    X(PAYMENT_DECLINED, "payment.declined")                       \
    X(PAYMENT_FAILED, "payment.failed")                           \
    X(PAYMENT_EXPIRED, "payment.expired")                         \
    X(PAYMENT_UPDATED, "payment.updated")

/* A refund: its status after the change, or "updated" when the status stayed. */
#define EVENTS_REFUND_TYPES(X)                                    \
    X(REFUND_PENDING, "refund.pending")                           \
    X(REFUND_SUCCEEDED, "refund.succeeded")                       \
    X(REFUND_DECLINED, "refund.declined")                         \
    X(REFUND_FAILED, "refund.failed")                             \
    X(REFUND_UPDATED, "refund.updated")

/* A merchant payout or a wallet withdrawal (money out through the bank): its status
 * after the change, or "updated" when the status stayed. */
#define EVENTS_BANK_OUT_TYPES(X, KIND, prefix)                    \
    X(KIND##_PENDING, prefix "pending")                           \
    X(KIND##_PROCESSING, prefix "processing")                     \
    X(KIND##_PAID, prefix "paid")                                 \
    X(KIND##_DECLINED, prefix "declined")                         \
    X(KIND##_FAILED, prefix "failed")                             \
    X(KIND##_RETURNED, prefix "returned")                         \
    X(KIND##_UPDATED, prefix "updated")

typedef enum {
#define X(name, text) EVENTS_TYPE_##name,
    EVENTS_TYPES(X)
#undef X
    EVENTS_TYPE_COUNT
} events_type;

const char *events_type_name(events_type type);
/* False when 'name' is no event type. */
bool events_type_parse(const char *name, events_type *out);

/* Event ids: "evt_" + 16 lowercase hex digits of the event's seq (store_events.h):
 * unique, and sorting them as strings sorts them by time. */
#define EVENTS_ID_SIZE 21
void events_id_format(uint64_t seq, char out[EVENTS_ID_SIZE]);
/* False when 'id' is not an event id. */
bool events_id_parse(const char *id, uint64_t *seq_out);

/* A stored body is the event's JSON, or a reference ("@<kind>:...", never the first
 * byte of JSON) to an object version another subsystem stores (a payment's version
 * record, payments.h): rendered whenever the event is read (the API, webhooks,
 * RabbitMQ), byte for byte the JSON it stands for, so the writer stores a few bytes
 * instead of the document. Ledger events and rows written before references are
 * stored whole and read as they are. */
#define EVENTS_REF_PREFIX '@'
/* A ledger transfer event stored as a reference (SQLite stores: store_events_ledger_refs):
 * "@transfer:<timestamp>" for transfer.created (the row's object_id is the transfer), and
 * "@transfer:<pending timestamp>:<resolving timestamp>:<resolving id>" for
 * transfer.posted/voided/expired (object_id is the pending transfer); timestamps in
 * decimal ns, the transfers' key (store_read_transfer_at: no id index, so a transfer
 * committed a moment ago is found). Rendered by events itself from the store's
 * transfers, as the writer would have rendered them: no renderer needs registering. */
#define EVENTS_TRANSFER_REF "@transfer"
/* Renders the object a reference names (*text_out malloc'ed, compact JSON): PC_OK,
 * PC_STORE_CORRUPT (no such object version) or a read error. */
typedef pc_status (*events_ref_render_fn)(store_reader_t *reader, const char *ref, size_t ref_bytes,
                                          char **text_out, size_t *bytes_out);
/* Sets the renderer of references, once, before any event is read (the process that
 * emits references sets it at start: `paycore serve`). */
void events_ref_renderer_set(events_ref_render_fn render);
/* The event 'row' as it is delivered (*body_out malloc'ed, NUL-terminated): its body,
 * or the envelope around its rendered reference. */
PC_MUST_USE pc_status events_body_render(store_reader_t *reader, const store_event_t *row, char **body_out,
                                         size_t *bytes_out);
/* store_events_list with every body as delivered (rendered where it is a reference);
 * stops at the first event that cannot be rendered and returns why. */
PC_MUST_USE pc_status events_list(store_reader_t *reader, const store_events_query_t *query, store_event_fn fn,
                                  void *ctx, bool *has_more);

/* One stored event as an owned copy, as delivered: PC_OK (free out->body),
 * PC_NOT_FOUND (absent, or 'owner' given and not allowed to see it), or a store
 * error. */
typedef struct {
    char *body;                            /* malloc'ed, NUL-terminated */
    size_t body_bytes;
    char type[STORE_EVENT_TYPE_SIZE];
} events_copy_t;
PC_MUST_USE pc_status events_read(store_reader_t *reader, uint64_t seq, const char *owner, events_copy_t *out);

typedef struct events events_t;

/* ---- emitting (writer thread, inside the batch transaction 'tx') ---- */
typedef struct {
    events_type type;
    const char *object_id;                 /* a valid id (core.h) */
    uint32_t object_seq;                   /* >= 1 */
    const char *object_json;               /* a compact JSON object: the object now */
    bool object_json_dumped;               /* true: json_dumps of a JSON object made it, so
                                              it is not parsed again to check it */
    const char *object_ref;                /* or NULL: a reference ("@...", at most
                                              EVENTS_REF_BYTES_MAX) that renders as
                                              object_json, stored instead of the event */
    const char *owners[EVENTS_OWNERS_MAX]; /* merchant key ids that may see the event */
    uint32_t owner_count;                  /* 0 (and no owners_account_id): admins only */
    const char *owners_account_id;         /* or NULL: the merchant keys granted this ledger
                                              account (in 'tx') may see it too, as the
                                              ledger's own events of that account */
} events_emit_t;

/* Writes one event into 'tx'; 'id_out' (or NULL) receives its id ("" when nothing was
 * written). 'events' NULL or disabled (--no-events): writes nothing, PC_OK. */
PC_MUST_USE pc_status events_emit(events_t *events, store_tx_t *tx, const events_emit_t *event,
                                  char id_out[EVENTS_ID_SIZE]);

/* ---- the events runtime of `paycore serve` ---- */
typedef struct {
    bool enabled;                 /* false: no outbox rows, no delivery (a benchmark's baseline) */
    const char *db_path;          /* the secret key lives in "<db>.webhook-key" */
    const char *amqp_url;         /* amqp://user:pass@host:port/vhost, or NULL */
    const char *amqp_exchange;    /* topic exchange; default "paycore.events" */
    uint64_t retention_s;         /* settled events older than this are purged; 0: never */
    uint32_t retry_base_ms;       /* first retry after about this; doubles per attempt */
    uint32_t retry_cap_ms;        /* the longest wait between two attempts */
    uint64_t retry_max_s;         /* retried this long: dead-lettered (3 days) */
    uint64_t disable_after_s;     /* an endpoint failing this long is disabled */
    uint32_t webhook_timeout_ms;  /* one delivery attempt, connect to last byte */
    bool webhook_private_ok;      /* also deliver to loopback/private addresses (development);
                                     false: such URLs are refused and never connected to */
} events_config_t;

void events_config_default(events_config_t *config);

/* Opens the runtime for 'store' (borrowed; outlives it) and its outbox hook. Call
 * before writer_start: the hook goes into the writer's config. */
PC_MUST_USE pc_status events_open(events_t **out, store_t *store, const events_config_t *config);
/* The writer's batch hook: ledger changes become events (a disabled runtime: none). */
writer_batch_hook_t events_batch_hook(events_t *events);
/* A set of shards (src/shard/, docs/scaleout.md §6, "Events on a set"): the batch
 * hook of shard 'index' (instead of events_batch_hook, every shard's; a disabled
 * runtime: none). The outbox the destinations read is the home shard's (0); another
 * shard's local batches write their events into that shard's own events table, and
 * events_shards_start's relay copies them into the home outbox in that shard's commit
 * order, each once; a global transaction's events (a transfer across shards as one
 * event, A -> B) are written in its home leg. */
typedef struct events_shards events_shards_t;
PC_MUST_USE pc_status events_shard_hook(events_t *events, uint32_t index, writer_batch_hook_t *out);
/* Starts the relay of the set's other shards (after shard_open, which started their
 * writers); events_stop stops it. */
PC_MUST_USE pc_status events_shards_start(events_t *events, shard_set_t *set);
/* Loads the secret key (the store is loaded by then) and starts the delivery threads;
 * 'writer' (borrowed) stores their state. A lost key while endpoints hold secrets
 * sealed with it: PC_EVENTS_KEY_INVALID. */
PC_MUST_USE pc_status events_start(events_t *events, writer_t *writer);
/* Stops the delivery threads and stores their last state through the writer: call
 * before writer_stop. Then events_close after the writer stopped and before the
 * store closes. */
void events_stop(events_t *events);
void events_close(events_t *events);
/* Destinations or deliveries changed (an API command committed): the worker rereads. */
void events_notify(events_t *events);

/* ---- webhook endpoints (the API's helpers) ---- */
#define EVENTS_SECRET_SIZE 64             /* "whsec_" + 43 base64url characters + NUL */
/* A new endpoint row: id, a fresh secret (into 'secret_out', shown once) encrypted
 * into the row. url, types and merchant_id are the caller's (validated). */
PC_MUST_USE pc_status events_endpoint_new(events_t *events, store_event_destination_t *row,
                                          char secret_out[EVENTS_SECRET_SIZE]);
/* A rotated secret for 'row': the new one into 'secret_out' and row->secret_box; the
 * current one moves to row->previous_box, valid until now + grace_s. */
PC_MUST_USE pc_status events_endpoint_rotate(events_t *events, store_event_destination_t *row,
                                             uint64_t grace_s, char secret_out[EVENTS_SECRET_SIZE]);
/* Checks a webhook URL: http or https, host and at most EVENTS_URL_BYTES_MAX bytes
 * (PC_URL_INVALID), a host name that resolves (PC_URL_UNRESOLVABLE) and, unless
 * 'private_ok', only to public addresses (PC_URL_NOT_PUBLIC: see
 * events_address_public). May block on DNS for a moment. */
PC_MUST_USE pc_status events_url_check(const char *url, bool private_ok);
/* False for an address a merchant's webhook must not reach: loopback, private,
 * carrier-grade NAT, link-local, multicast, documentation and other special-purpose
 * IPv4 ranges, and every IPv6 address outside global unicast 2000::/3 (IPv4-mapped
 * and NAT64 addresses are judged by their IPv4 address). */
struct sockaddr;
bool events_address_public(const struct sockaddr *address);
/* Whether this runtime delivers to non-public addresses (serve --webhook-private-ok). */
bool events_webhook_private_ok(const events_t *events);
/* PC_OK for amqp://user:pass@host:port/vhost (librabbitmq's parser), else
 * PC_AMQP_URL_INVALID. */
PC_MUST_USE pc_status events_amqp_url_check(const char *url);
/* The types one entry of an endpoint's "events" names: a type, "*" (every type) or
 * "<prefix>.*" ("payment.*": every type beginning with "payment."). False: none. */
bool events_type_pattern_mask(const char *pattern, uint64_t *mask_out);
/* Parses "a.b,c.*" (entries as above) into a type mask. */
PC_MUST_USE pc_status events_types_mask(const char *types, uint64_t *mask_out);

/* ---- signatures ----
 * Paycore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"> with one
 * v1 per valid secret (two during a rotation's grace period). */
#define EVENTS_SIGNATURE_HEADER_SIZE 256
void events_signature_header(const char *const *secrets, uint32_t secret_count, uint64_t t_s,
                             const char *body, size_t body_bytes,
                             char out[EVENTS_SIGNATURE_HEADER_SIZE]);
/* PC_OK when one v1 of 'header' matches 'secret' (constant-time) and |now - t| <=
 * tolerance_s; else PC_SIGNATURE_HEADER_INVALID, PC_SIGNATURE_MISMATCH or
 * PC_SIGNATURE_EXPIRED. */
PC_MUST_USE pc_status events_signature_verify(const char *secret, const char *header,
                                              const char *body, size_t body_bytes, uint64_t now_s,
                                              uint64_t tolerance_s);

/* ---- operations ---- */
typedef struct {
    bool enabled;                 /* false: --no-events (no outbox rows, no delivery) */
    bool amqp_configured;
    bool amqp_connected;
    uint64_t outbox_lag_ms_max;   /* the oldest undelivered event's age, worst destination */
} events_status_t;
void events_status(events_t *events, events_status_t *out);
/* One delivery destination's figures (the dashboard's outbox panel): a webhook
 * endpoint or the broker, as the delivery threads last saw it. */
typedef struct {
    char id[PC_ID_SIZE];
    char kind[16];                /* "webhook" or "amqp" */
    uint64_t delivered;           /* since start */
    uint64_t retried;
    uint64_t dead_lettered;
    uint64_t lag_ms;              /* the oldest undelivered event's age */
    bool disabled;                /* a webhook endpoint disabled after failing too long */
} events_destination_stats_t;
/* Copies up to 'max' destinations' figures into 'out' (NULL 'events': none); returns
 * how many. Events written since start into '*written_out' (may be NULL). */
uint32_t events_destinations_stats(events_t *events, events_destination_stats_t *out, uint32_t max,
                                   uint64_t *written_out);
/* Appends the events metrics (Prometheus text) to 'text' (malloc'ed): returns the new
 * text, the old one being freed, or the old one unchanged on OOM. */
char *events_metrics_append(events_t *events, char *text, size_t *bytes);

#endif
