/* events/amqp.c: publishing every event to a RabbitMQ topic exchange (routing key =
 * event type, message id = event id) from its own thread, with publisher confirms:
 * an event counts as published only when the broker confirmed it, and the stored
 * cursor only moves over confirmed events. The stream is strictly in outbox order on
 * one channel, so order per object holds. When the broker is down or refuses, the
 * connection is dropped and everything after the cursor is published again after a
 * reconnect with backoff (consumers deduplicate by message id); the outbox keeps it
 * all meanwhile, and the API keeps taking payments. librabbitmq is blocking: it runs
 * here only, never on the writer or an HTTP thread. */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "obs/obs.h"

#define AMQP_DESTINATION_ID "amqp"
#define AMQP_CHANNEL 1
#define AMQP_TIMEOUT_S 10              /* connect, login, declare */
#define AMQP_CONFIRM_TIMEOUT_MS 30000  /* unconfirmed this long: the connection is dead */
#define AMQP_BACKOFF_MS_MAX 30000
#define AMQP_READ_MAX 256              /* events read per round */
#define AMQP_CHECK_MS 1000             /* the stored cursor's epoch is checked this often */

typedef struct {
    uint64_t seq;
    uint64_t tag;                      /* the broker's delivery tag on this channel */
    bool confirmed;
} unconfirmed;

struct events_amqp {
    events_t *events;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool stopping;                     /* guarded by mutex */
    store_reader_t *reader;
    events_flusher_t *flusher;
    char *url_buffer;                  /* amqp_parse_url points into it */
    struct amqp_connection_info info;
    amqp_connection_state_t conn;      /* NULL while down */
    uint64_t epoch;
    uint64_t cursor;                   /* every event up to here is confirmed */
    uint64_t cursor_queued;
    uint64_t published_seq;            /* the last event published on this connection */
    uint64_t next_tag;
    unconfirmed ring[EVENTS_AMQP_UNCONFIRMED_MAX];
    uint32_t ring_head;
    uint32_t ring_count;
    uint64_t oldest_publish_ms;        /* when the first unconfirmed event was published */
    uint64_t reconnect_ms;
    uint32_t backoff_ms;
    uint64_t next_check_ms;
    uint64_t latest_seq;
};

static uint64_t mono_ms(void) { return pc_mono_ns() / 1000000u; }

static bool stopping(events_amqp_t *a) {
    pthread_mutex_lock(&a->mutex);
    bool stop = a->stopping;
    pthread_mutex_unlock(&a->mutex);
    return stop;
}

/* Sleeps up to 'ms', returning early on stop. */
static void nap(events_amqp_t *a, uint64_t ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->mutex);
    if (!a->stopping) pthread_cond_timedwait(&a->cond, &a->mutex, &until);
    pthread_mutex_unlock(&a->mutex);
}

static void stats_update(events_amqp_t *a, uint64_t delivered, uint64_t retried) {
    events_t *events = a->events;
    uint64_t now_ns = events_now_ns(events);
    uint64_t oldest = a->ring_count > 0 ? a->ring[a->ring_head].seq : a->cursor < a->latest_seq ? a->cursor + 1 : 0;
    pthread_mutex_lock(&events->stats_mutex);
    events_dest_stats_t *slot = events_stats_slot(events, AMQP_DESTINATION_ID, "amqp");
    if (slot != NULL) {
        slot->delivered += delivered;
        slot->retried += retried;
        slot->lag_ms = oldest != 0 && now_ns > oldest ? (now_ns - oldest) / 1000000u : 0;
    }
    pthread_mutex_unlock(&events->stats_mutex);
}

/* ---- the connection ---- */

static bool rpc_ok(amqp_connection_state_t conn, const char *what) {
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(conn);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return true;
    obs_logf(OBS_LEVEL_WARN, "events: amqp %s failed (reply type %d)", what, (int)reply.reply_type);
    return false;
}

static bool connection_setup(events_amqp_t *a, amqp_connection_state_t conn) {
    struct timeval timeout = {AMQP_TIMEOUT_S, 0};
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (socket == NULL) return false;
    amqp_set_handshake_timeout(conn, &timeout);
    amqp_set_rpc_timeout(conn, &timeout);
    if (amqp_socket_open_noblock(socket, a->info.host, a->info.port, &timeout) != AMQP_STATUS_OK) return false;
    amqp_rpc_reply_t login = amqp_login(conn, a->info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, a->info.user,
                                        a->info.password);
    if (login.reply_type != AMQP_RESPONSE_NORMAL) {
        obs_logf(OBS_LEVEL_WARN, "events: amqp login to %s:%d vhost '%s' failed (%s)", a->info.host, a->info.port,
                 a->info.vhost, login.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                                    ? amqp_error_string2(login.library_error) : "refused by the broker");
        return false;
    }
    amqp_channel_open(conn, AMQP_CHANNEL);
    if (!rpc_ok(conn, "channel.open")) return false;
    amqp_exchange_declare(conn, AMQP_CHANNEL, amqp_cstring_bytes(a->events->amqp_exchange), amqp_cstring_bytes("topic"),
                          0, 1, 0, 0, amqp_empty_table);
    if (!rpc_ok(conn, "exchange.declare")) return false;
    amqp_confirm_select(conn, AMQP_CHANNEL);
    return rpc_ok(conn, "confirm.select");
}

static void connection_drop(events_amqp_t *a, const char *why) {
    if (a->conn != NULL) {
        amqp_destroy_connection(a->conn); /* no goodbye: the peer may be gone */
        a->conn = NULL;
        obs_logf(OBS_LEVEL_WARN, "events: amqp connection lost (%s); %u unconfirmed events will be published again",
                 why, a->ring_count);
    }
    uint64_t republished = a->ring_count;
    atomic_store(&a->events->amqp_connected, false);
    a->ring_count = 0;
    a->published_seq = a->cursor;
    a->backoff_ms = a->backoff_ms == 0 ? 500 : a->backoff_ms * 2;
    if (a->backoff_ms > AMQP_BACKOFF_MS_MAX) a->backoff_ms = AMQP_BACKOFF_MS_MAX;
    a->reconnect_ms = mono_ms() + a->backoff_ms / 2 + randombytes_uniform(a->backoff_ms / 2 + 1);
    stats_update(a, 0, republished);
}

static void connect_try(events_amqp_t *a) {
    amqp_connection_state_t conn = amqp_new_connection();
    if (conn == NULL) return;
    if (!connection_setup(a, conn)) {
        amqp_destroy_connection(conn);
        a->conn = NULL;
        connection_drop(a, "cannot connect");
        return;
    }
    a->conn = conn;
    a->next_tag = 1;
    a->ring_count = 0;
    a->published_seq = a->cursor;
    a->backoff_ms = 0;
    atomic_store(&a->events->amqp_connected, true);
    obs_logf(OBS_LEVEL_INFO, "events: amqp connected to %s:%d, publishing from event seq %llu", a->info.host,
             a->info.port, (unsigned long long)a->cursor);
}

/* ---- publishing ---- */

typedef struct {
    events_amqp_t *a;
    bool failed;
} publish_ctx;

static void event_publish(const store_event_t *event, void *ctx) {
    publish_ctx *p = ctx;
    events_amqp_t *a = p->a;
    if (p->failed) return;
    char id[EVENTS_ID_SIZE];
    events_id_format(event->seq, id);
    amqp_basic_properties_t props = {0};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                   AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2; /* persistent */
    props.message_id = amqp_cstring_bytes(id);
    props.type = amqp_cstring_bytes(event->type);
    props.timestamp = event->seq / 1000000000u;
    amqp_bytes_t body = {event->body_bytes, (void *)event->body};
    if (amqp_basic_publish(a->conn, AMQP_CHANNEL, amqp_cstring_bytes(a->events->amqp_exchange),
                           amqp_cstring_bytes(event->type), 0, 0, &props, body) != AMQP_STATUS_OK) {
        p->failed = true;
        return;
    }
    uint32_t slot = (a->ring_head + a->ring_count) % EVENTS_AMQP_UNCONFIRMED_MAX;
    a->ring[slot] = (unconfirmed){event->seq, a->next_tag++, false};
    if (a->ring_count++ == 0) a->oldest_publish_ms = mono_ms();
    a->published_seq = event->seq;
}

static bool publish_more(events_amqp_t *a) {
    uint32_t room = EVENTS_AMQP_UNCONFIRMED_MAX - a->ring_count;
    if (room == 0 || a->published_seq >= a->latest_seq) return true;
    store_events_query_t query = {.after_seq = a->published_seq, .before_seq = a->latest_seq + 1,
                                  .limit = room < AMQP_READ_MAX ? room : AMQP_READ_MAX};
    publish_ctx ctx = {a, false};
    bool has_more;
    if (events_list(a->reader, &query, event_publish, &ctx, &has_more) != PC_OK) return true;
    return !ctx.failed;
}

/* Marks confirmed tags (consecutive in the ring: the tag says the slot) and moves the
 * cursor over the confirmed front. */
static void confirm(events_amqp_t *a, uint64_t tag, bool multiple) {
    if (a->ring_count == 0) return;
    uint64_t first_tag = a->ring[a->ring_head].tag;
    if (tag < first_tag) return; /* already confirmed */
    uint64_t last = tag - first_tag;
    if (last >= a->ring_count) last = a->ring_count - 1;
    for (uint64_t i = multiple ? 0 : last; i <= last; i++) {
        a->ring[(a->ring_head + i) % EVENTS_AMQP_UNCONFIRMED_MAX].confirmed = true;
    }
    uint64_t confirmed = 0;
    while (a->ring_count > 0 && a->ring[a->ring_head].confirmed) {
        a->cursor = a->ring[a->ring_head].seq;
        a->ring_head = (a->ring_head + 1) % EVENTS_AMQP_UNCONFIRMED_MAX;
        a->ring_count--;
        confirmed++;
    }
    if (confirmed > 0) a->oldest_publish_ms = mono_ms();
    stats_update(a, confirmed, 0);
}

/* Reads what the broker sent: confirms, or the end of the connection. */
static bool frames_read(events_amqp_t *a, uint32_t wait_ms) {
    for (;;) {
        struct timeval timeout = {0, (suseconds_t)wait_ms * 1000};
        amqp_frame_t frame;
        int rc = amqp_simple_wait_frame_noblock(a->conn, &frame, &timeout);
        if (rc == AMQP_STATUS_TIMEOUT) return true;
        if (rc != AMQP_STATUS_OK) return false;
        wait_ms = 0; /* drain what is buffered, then go on */
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        amqp_method_number_t id = frame.payload.method.id;
        if (id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = frame.payload.method.decoded;
            confirm(a, ack->delivery_tag, ack->multiple);
        } else if (id == AMQP_BASIC_NACK_METHOD || id == AMQP_CHANNEL_CLOSE_METHOD ||
                   id == AMQP_CONNECTION_CLOSE_METHOD) {
            return false; /* nack: publish again from the cursor on a new connection */
        }
    }
}

/* The stored destination: created on first use; a changed epoch (redelivery since a
 * time) moves our cursor back. */
static void destination_check(events_amqp_t *a) {
    store_event_destination_t *row = malloc(sizeof(*row));
    if (row == NULL) return;
    if (store_events_destination_get(a->reader, AMQP_DESTINATION_ID, row) == PC_OK && row->cursor_epoch != a->epoch &&
        events_flusher_kick(a->flusher)) {
        a->epoch = row->cursor_epoch;
        a->cursor = a->cursor_queued = row->cursor_seq;
        if (a->conn != NULL) connection_drop(a, "redelivery requested");
        a->reconnect_ms = 0;
    }
    free(row);
    a->next_check_ms = mono_ms() + AMQP_CHECK_MS;
}

static void flush(events_amqp_t *a) {
    if (!events_flusher_idle(a->flusher)) return;
    if (a->cursor > a->cursor_queued) {
        events_op_t op = {.kind = EVENTS_OP_CURSOR, .seq = a->cursor, .epoch = a->epoch};
        snprintf(op.destination_id, sizeof op.destination_id, AMQP_DESTINATION_ID);
        if (events_flusher_add(a->flusher, &op)) a->cursor_queued = a->cursor;
    }
    (void)events_flusher_kick(a->flusher);
}

static void round_connected(events_amqp_t *a) {
    if (store_events_latest(a->reader, &a->latest_seq) != PC_OK) return; /* read again next round */
    if (!publish_more(a)) {
        connection_drop(a, "publish failed");
        return;
    }
    bool idle = a->ring_count == 0 && a->published_seq >= a->latest_seq;
    if (!frames_read(a, idle ? 50 : 5)) {
        connection_drop(a, "the broker closed the connection or refused an event");
        return;
    }
    if (a->ring_count > 0 && mono_ms() - a->oldest_publish_ms > AMQP_CONFIRM_TIMEOUT_MS) {
        connection_drop(a, "no confirm within 30 s");
    }
}

static void *amqp_main(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-amqp"); /* per-thread CPU in top, perf */
    events_amqp_t *a = arg;
    events_thread_background();
    while (!stopping(a)) {
        uint64_t now_ms = mono_ms();
        if (now_ms >= a->next_check_ms) destination_check(a);
        if (a->conn == NULL && now_ms >= a->reconnect_ms) connect_try(a);
        if (a->conn != NULL) round_connected(a);
        else nap(a, 100);
        stats_update(a, 0, 0);
        flush(a);
    }
    if (a->conn != NULL) {
        amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(a->conn);
        a->conn = NULL;
    }
    atomic_store(&a->events->amqp_connected, false);
    flush(a);
    events_flusher_drain(a->flusher);
    return NULL;
}

/* ---- start and stop ---- */

static pc_status destination_ensure_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    store_event_destination_t *row = calloc(1, sizeof(*row));
    if (row == NULL) return PC_NO_MEMORY;
    snprintf(row->id, sizeof row->id, AMQP_DESTINATION_ID);
    snprintf(row->kind, sizeof row->kind, "amqp");
    snprintf(row->types, sizeof row->types, "*");
    row->created_ns = pc_wall_ns();
    pc_status status = store_events_destination_insert(tx, row);
    free(row);
    return status == PC_EXISTS ? PC_OK : status;
}

static pc_status destination_load(events_amqp_t *a) {
    writer_cmd_t cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = destination_ensure_in_tx};
    pc_status status = writer_submit_wait(a->events->writer, &cmd);
    if (status != PC_OK) return status;
    store_event_destination_t *row = malloc(sizeof(*row));
    if (row == NULL) return PC_NO_MEMORY;
    status = store_events_destination_get(a->reader, AMQP_DESTINATION_ID, row);
    if (status == PC_OK) {
        a->epoch = row->cursor_epoch;
        a->cursor = a->cursor_queued = a->published_seq = row->cursor_seq;
    }
    free(row);
    a->next_check_ms = mono_ms() + AMQP_CHECK_MS;
    return status;
}

pc_status events_amqp_url_check(const char *url) {
    char *copy = pc_strdup(url);
    struct amqp_connection_info info;
    amqp_default_connection_info(&info);
    bool ok = copy != NULL && strncmp(url, "amqp://", 7) == 0 && amqp_parse_url(copy, &info) == AMQP_STATUS_OK;
    free(copy);
    return ok ? PC_OK : PC_AMQP_URL_INVALID;
}

static void amqp_free(events_amqp_t *a) {
    events_flusher_free(a->flusher);
    store_reader_close(a->reader);
    if (a->url_buffer != NULL) sodium_memzero(a->url_buffer, strlen(a->url_buffer));
    free(a->url_buffer);
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->mutex);
    free(a);
}

pc_status events_amqp_start(events_t *events, events_amqp_t **out) {
    events_amqp_t *a = calloc(1, sizeof(*a));
    if (a == NULL) return PC_NO_MEMORY;
    a->events = events;
    pthread_mutex_init(&a->mutex, NULL);
    pthread_cond_init(&a->cond, NULL);
    a->url_buffer = pc_strdup(events->amqp_url);
    amqp_default_connection_info(&a->info);
    pc_status status = a->url_buffer != NULL && amqp_parse_url(a->url_buffer, &a->info) == AMQP_STATUS_OK
                           ? PC_OK
                           : PC_AMQP_URL_INVALID;
    a->flusher = events_flusher_new(events->writer, NULL, NULL);
    if (status == PC_OK) status = a->flusher ? store_reader_open(events->store, &a->reader) : PC_NO_MEMORY;
    if (status == PC_OK) status = destination_load(a);
    if (status == PC_OK) {
        pthread_mutex_lock(&events->stats_mutex);
        events_stats_slot(events, AMQP_DESTINATION_ID, "amqp");
        pthread_mutex_unlock(&events->stats_mutex);
        if (pthread_create(&a->thread, NULL, amqp_main, a) != 0) status = PC_INTERNAL;
    }
    if (status != PC_OK) {
        amqp_free(a);
        return status;
    }
    *out = a;
    return PC_OK;
}

void events_amqp_stop(events_amqp_t *a) {
    pthread_mutex_lock(&a->mutex);
    a->stopping = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mutex);
    pthread_join(a->thread, NULL);
    amqp_free(a);
}
