/* events/webhooks.c: the webhook thread. One thread, one libcurl multi handle: it
 * reads new events from the outbox through its own store reader, asks each endpoint's
 * delivery state (destination.c) what to send, POSTs signed events concurrently
 * (keep-alive connections, bounded per endpoint and in all), and writes its state
 * through the writer (flush.c). It also runs retention. Nothing here runs on the
 * writer or an HTTP thread; the writer's hook only wakes it (curl_multi_wakeup). */
#include <curl/curl.h>
#include <inttypes.h>
#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "obs/obs.h"

#define POLL_MS_MAX 100          /* new events are also noticed by polling this often */
#define RELOAD_MS 5000           /* endpoints are reread at least this often */
#define LAG_MS 250               /* the lag gauge's refresh */
#define PURGE_MS 60000           /* retention runs this often (sooner while it has work) */
#define FETCH_MAX 256            /* events read for one endpoint per round */
#define CLOCK_MS 100             /* the test clock file is reread this often */
#define FLUSH_MS 20              /* delivery state goes to the writer this often (or sooner
                                    when FLUSH_OPS_EARLY ops wait): few commands, small loss
                                    on a crash (what was not stored is delivered again) */
#define FLUSH_OPS_EARLY 512
#define FRESH_GAP_NS 2000000     /* new events are read at most every 2 ms: the writer's
                                    wake-up after each batch then costs one read per
                                    few batches, and deliveries go out in groups */

typedef struct {
    store_event_destination_t row;  /* as last read */
    events_dest_t *state;           /* NULL: cannot deliver (its secret does not open) */
    uint64_t generation;            /* requests of an older generation are forgotten */
    uint64_t types_mask;
    char secret[EVENTS_SECRET_SIZE];
    char previous[EVENTS_SECRET_SIZE];
    bool seen;
    bool rebuild_wanted;            /* the stored state moved: rebuild once nothing is in flight */
} endpoint;

typedef struct request request;
struct request {
    request *prev, *next;           /* the thread's requests in flight */
    CURL *easy;
    char endpoint_id[PC_ID_SIZE];
    uint64_t generation;
    events_job_t *job;
    char *body;
    struct curl_slist *headers;
    char error[CURL_ERROR_SIZE];
    char refused[INET6_ADDRSTRLEN]; /* the non-public address a connection was refused to */
};

struct events_webhooks {
    events_t *events;
    pthread_t thread;
    CURLM *multi;
    _Atomic bool stopping;
    _Atomic bool reload_wanted;
    _Atomic bool fresh_wanted;
    store_reader_t *reader;
    events_flusher_t *flusher;
    endpoint *endpoints[EVENTS_ENDPOINTS_MAX];
    uint32_t endpoint_count;
    uint32_t requests;
    request *request_head;
    uint64_t generation_next;
    uint64_t latest_seq;
    uint64_t next_reload_ms, next_lag_ms, next_purge_ms, next_clock_ms, next_latest_ms, next_flush_ms;
    uint64_t latest_read_ns;        /* when new events were last read (monotonic) */
    int64_t shift_s;
};

static uint64_t mono_ms(void) { return pc_mono_ns() / 1000000u; }

static void wake(void *ctx) {
    curl_multi_wakeup(((events_webhooks_t *)ctx)->multi);
}

/* New events (the writer, after each batch that wrote some): a wake-up only when none
 * is pending. While fresh_wanted is set the thread reads them anyway (within
 * FRESH_GAP_NS: poll_timeout_ms, round_run), and it clears the flag before it reads,
 * so a commit after that read's start sets it again and wakes it. With no endpoint the
 * flag stays set: the commits wake nobody, and a reload (always woken) finds it set. */
void events_webhooks_notify(events_webhooks_t *w, bool reload) {
    if (reload) {
        atomic_store(&w->reload_wanted, true);
    } else {
        if (atomic_exchange(&w->fresh_wanted, true)) return;
        atomic_fetch_add_explicit(&w->events->webhook_wakeups, 1, memory_order_relaxed);
    }
    curl_multi_wakeup(w->multi);
}

/* ---- endpoints ---- */

static endpoint *endpoint_find(events_webhooks_t *w, const char *id) {
    for (uint32_t i = 0; i < w->endpoint_count; i++) {
        if (strcmp(w->endpoints[i]->row.id, id) == 0) return w->endpoints[i];
    }
    return NULL;
}

/* The types an endpoint listens to; a type this build does not know is ignored. */
static uint64_t types_mask_lenient(const char *types) {
    uint64_t mask = 0;
    char copy[sizeof(((store_event_destination_t *)0)->types)];
    snprintf(copy, sizeof copy, "%s", types);
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        uint64_t one;
        if (events_types_mask(item, &one) == PC_OK) mask |= one;
    }
    return mask;
}

static bool secrets_open(events_webhooks_t *w, endpoint *e) {
    const store_event_destination_t *row = &e->row;
    e->previous[0] = '\0';
    if (events_secret_open(w->events->key, row->id, row->secret_box, row->secret_box_bytes, e->secret) != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "events: the secret of endpoint %s does not open with this webhook-key", row->id);
        return false;
    }
    if (row->previous_box_bytes > 0 &&
        events_secret_open(w->events->key, row->id, row->previous_box, row->previous_box_bytes, e->previous) != PC_OK) {
        e->previous[0] = '\0';
    }
    return true;
}

typedef struct {
    events_dest_t *state;
    bool failed;
} rows_load;

static void row_loaded(const store_event_delivery_t *row, void *ctx) {
    rows_load *load = ctx;
    if (!events_dest_add_row(load->state, row)) load->failed = true;
}

/* (Re)builds an endpoint's delivery state from its stored row and delivery rows. */
static void endpoint_build(events_webhooks_t *w, endpoint *e) {
    events_dest_free(e->state);
    e->state = NULL;
    e->generation = ++w->generation_next;
    e->types_mask = types_mask_lenient(e->row.types);
    if (!secrets_open(w, e)) return;
    events_dest_t *state = events_dest_new(e->row.id, &e->row, &w->events->config, w->flusher);
    if (state == NULL) return;
    rows_load load = {state, false};
    bool has_more = false;
    pc_status status = store_events_deliveries_list(w->reader, e->row.id, STORE_DELIVERY_RETRYING, 0,
                                                    EVENTS_RETRY_ROWS_MAX, row_loaded, &load, &has_more);
    if (status != PC_OK || load.failed) {
        obs_logf(OBS_LEVEL_ERROR, "events: cannot load the deliveries of endpoint %s: %s", e->row.id,
                 pc_status_code(status));
        events_dest_free(state);
        return;
    }
    if (has_more) events_dest_set_truncated(state);
    e->state = state;
}

/* Rebuilds a wanted endpoint when nothing of it is in flight and its outcomes are stored. */
static void endpoint_rebuild_due(events_webhooks_t *w, endpoint *e) {
    if (!e->rebuild_wanted) return;
    if (e->state != NULL && events_dest_in_flight(e->state) > 0) return;
    if (!events_flusher_kick(w->flusher)) return;
    e->rebuild_wanted = false;
    endpoint_build(w, e);
}

static void endpoint_free(events_webhooks_t *w, endpoint *e) {
    pthread_mutex_lock(&w->events->stats_mutex);
    events_stats_drop(w->events, e->row.id);
    pthread_mutex_unlock(&w->events->stats_mutex);
    events_dest_free(e->state);
    sodium_memzero(e->secret, sizeof e->secret);
    sodium_memzero(e->previous, sizeof e->previous);
    free(e);
}

/* A changed epoch (a redelivery or re-enabling) or a changed disabled state means
 * the stored state moved under us: rebuild, but only once the requests in flight
 * have finished and their outcomes are stored (none is forgotten, so none is sent
 * again needlessly). Other fields update in place. */
static void endpoint_update(events_webhooks_t *w, endpoint *e, const store_event_destination_t *row) {
    bool rebuild = e->state == NULL || row->cursor_epoch != e->row.cursor_epoch ||
                   (row->disabled_ns != 0) != events_dest_disabled(e->state) ||
                   events_dest_needs_reload(e->state);
    e->row = *row;
    e->types_mask = types_mask_lenient(row->types);
    if (rebuild) {
        e->rebuild_wanted = true;
        endpoint_rebuild_due(w, e);
        return;
    }
    (void)secrets_open(w, e);
}

static void endpoint_seen(const store_event_destination_t *row, void *ctx) {
    events_webhooks_t *w = ctx;
    if (strcmp(row->kind, "webhook") != 0) return;
    endpoint *e = endpoint_find(w, row->id);
    if (e != NULL) {
        e->seen = true;
        endpoint_update(w, e, row);
        return;
    }
    if (w->endpoint_count == EVENTS_ENDPOINTS_MAX || (e = calloc(1, sizeof(*e))) == NULL) return;
    e->row = *row;
    e->seen = true;
    w->endpoints[w->endpoint_count++] = e;
    endpoint_build(w, e);
    pthread_mutex_lock(&w->events->stats_mutex);
    events_stats_slot(w->events, row->id, "webhook");
    pthread_mutex_unlock(&w->events->stats_mutex);
}

/* Rereads every endpoint, once the delivery state this thread wrote is stored. */
static void reload(events_webhooks_t *w) {
    if (!events_flusher_kick(w->flusher)) return; /* stays wanted: next round */
    atomic_store(&w->reload_wanted, false);
    w->next_reload_ms = mono_ms() + RELOAD_MS;
    for (uint32_t i = 0; i < w->endpoint_count; i++) w->endpoints[i]->seen = false;
    bool has_more;
    pc_status status = store_events_destinations_list(w->reader, NULL, NULL, 0, endpoint_seen, w, &has_more);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "events: cannot read the webhook endpoints: %s", pc_status_code(status));
        return;
    }
    for (uint32_t i = 0; i < w->endpoint_count;) {
        if (w->endpoints[i]->seen) {
            i++;
            continue;
        }
        endpoint_free(w, w->endpoints[i]);
        w->endpoints[i] = w->endpoints[--w->endpoint_count];
    }
}

/* ---- reading the outbox ---- */

typedef struct {
    endpoint *e;
    uint64_t last_seq;
} fill_ctx;

static void event_read(const store_event_t *event, void *ctx) {
    fill_ctx *fill = ctx;
    fill->last_seq = event->seq;
    events_type type;
    if (!events_type_parse(event->type, &type) || !(fill->e->types_mask & (1ull << type))) return;
    (void)events_dest_add_fresh(fill->e->state, event->seq, event->object_id, type, event->body, event->body_bytes);
}

static void fill(events_webhooks_t *w, endpoint *e) {
    uint32_t room = events_dest_fresh_room(e->state);
    uint64_t fetched = events_dest_fetched(e->state);
    if (room == 0 || fetched >= w->latest_seq) return;
    store_events_query_t query = {.after_seq = fetched, .before_seq = w->latest_seq + 1,
                                  .limit = room < FETCH_MAX ? room : FETCH_MAX,
                                  .owner = e->row.merchant_id[0] ? e->row.merchant_id : NULL};
    fill_ctx ctx = {e, fetched};
    bool has_more = false;
    if (events_list(w->reader, &query, event_read, &ctx, &has_more) != PC_OK) return;
    events_dest_set_fetched(e->state, has_more ? ctx.last_seq : w->latest_seq);
}

/* ---- sending ---- */

static size_t discard(char *data, size_t size, size_t count, void *ctx) {
    (void)data;
    (void)ctx;
    return size * count;
}

static struct curl_slist *headers_make(endpoint *e, const events_job_t *job, const events_copy_t *event) {
    char id[EVENTS_ID_SIZE], line[EVENTS_SIGNATURE_HEADER_SIZE + 32], signature[EVENTS_SIGNATURE_HEADER_SIZE];
    const char *secrets[2] = {e->secret, e->previous};
    bool previous = e->previous[0] != '\0' && e->row.previous_until_ns > pc_wall_ns();
    events_signature_header(secrets, previous ? 2 : 1, pc_wall_ns() / 1000000000u, event->body, event->body_bytes,
                            signature);
    events_id_format(job->seq, id);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    const char *fixed[] = {"User-Agent: paycore-webhooks/" PAYCORE_VERSION, "Expect:"};
    for (int i = 0; i < 2 && headers != NULL; i++) headers = curl_slist_append(headers, fixed[i]);
    const char *formats[] = {"Paycore-Event-Id: %s", "Paycore-Event-Type: %s", "Paycore-Signature: %s"};
    const char *values[] = {id, event->type, signature};
    for (int i = 0; i < 3 && headers != NULL; i++) {
        snprintf(line, sizeof line, formats[i], values[i]);
        headers = curl_slist_append(headers, line);
    }
    snprintf(line, sizeof line, "Paycore-Delivery-Attempt: %u", job->attempts + 1);
    return headers != NULL ? curl_slist_append(headers, line) : NULL;
}

/* Every connection a delivery opens comes here first: one to a non-public address is
 * refused (the name may resolve elsewhere than when the endpoint was created). */
static curl_socket_t socket_open(void *ctx, curlsocktype purpose, struct curl_sockaddr *address) {
    request *r = ctx;
    (void)purpose;
    if (!events_address_public(&address->addr)) {
        if (getnameinfo(&address->addr, address->addrlen, r->refused, sizeof r->refused, NULL, 0, NI_NUMERICHOST) != 0) {
            snprintf(r->refused, sizeof r->refused, "?");
        }
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype, address->protocol);
}

static void easy_setup(events_webhooks_t *w, endpoint *e, request *r) {
    uint32_t timeout_ms = w->events->config.webhook_timeout_ms;
    curl_easy_setopt(r->easy, CURLOPT_URL, e->row.url);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 5000 ? timeout_ms : 5000));
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    if (!w->events->config.webhook_private_ok) {
        curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETFUNCTION, socket_open);
        curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETDATA, r);
    }
}

static void request_free(request *r) {
    if (r == NULL) return;
    if (r->easy != NULL) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r);
}

static void request_unlink(events_webhooks_t *w, request *r) {
    if (r->prev != NULL) r->prev->next = r->next;
    else w->request_head = r->next;
    if (r->next != NULL) r->next->prev = r->prev;
    w->requests--;
}

static void stats_count(events_webhooks_t *w, const char *id, events_outcome outcome, bool delivered) {
    pthread_mutex_lock(&w->events->stats_mutex);
    events_dest_stats_t *slot = events_stats_slot(w->events, id, "webhook");
    if (slot != NULL) {
        if (delivered) slot->delivered++;
        else if (outcome == EVENTS_OUTCOME_DEAD) slot->dead_lettered++;
        else slot->retried++;
    }
    pthread_mutex_unlock(&w->events->stats_mutex);
}

static void send_failed(events_webhooks_t *w, endpoint *e, events_job_t *job, const char *error) {
    events_outcome outcome = events_dest_failed(e->state, job, events_now_ns(w->events), error);
    stats_count(w, e->row.id, outcome, false);
}

/* The job's event: kept from the outbox read, or read now (a retry loaded from its row). */
static pc_status event_of(events_webhooks_t *w, const events_job_t *job, events_copy_t *event) {
    if (job->body == NULL || job->type >= EVENTS_TYPE_COUNT) {
        return events_read(w->reader, job->seq, NULL, event);
    }
    event->body = malloc(job->body_bytes + 1);
    if (event->body == NULL) return PC_NO_MEMORY;
    memcpy(event->body, job->body, job->body_bytes + 1);
    event->body_bytes = job->body_bytes;
    snprintf(event->type, sizeof event->type, "%s", events_type_name((events_type)job->type));
    return PC_OK;
}

static void send_one(events_webhooks_t *w, endpoint *e, events_job_t *job) {
    events_copy_t event = {0};
    pc_status status = event_of(w, job, &event);
    if (status == PC_NOT_FOUND) {
        events_dest_drop(e->state, job);
        return;
    }
    request *r = calloc(1, sizeof(*r));
    if (status != PC_OK || event.body == NULL || r == NULL || (r->easy = curl_easy_init()) == NULL ||
        (r->headers = headers_make(e, job, &event)) == NULL) {
        free(event.body);
        request_free(r);
        send_failed(w, e, job, status != PC_OK ? "the outbox could not be read" : "out of memory");
        return;
    }
    r->body = event.body;
    r->job = job;
    r->generation = e->generation;
    snprintf(r->endpoint_id, sizeof r->endpoint_id, "%s", e->row.id);
    easy_setup(w, e, r);
    if (curl_multi_add_handle(w->multi, r->easy) != CURLM_OK) {
        request_free(r);
        send_failed(w, e, job, "libcurl refused the request");
        return;
    }
    r->next = w->request_head;
    if (r->next != NULL) r->next->prev = r;
    w->request_head = r;
    w->requests++;
}

static void dispatch(events_webhooks_t *w, endpoint *e, uint64_t now_ns) {
    events_job_t *job;
    while (w->requests < EVENTS_INFLIGHT_MAX && (job = events_dest_next(e->state, now_ns)) != NULL) {
        send_one(w, e, job);
    }
}

/* One finished request: 2xx acknowledges, anything else is retried. */
static void completed(events_webhooks_t *w, CURLMsg *msg) {
    request *r = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(w->multi, msg->easy_handle);
    request_unlink(w, r);
    endpoint *e = endpoint_find(w, r->endpoint_id);
    if (e != NULL && e->state != NULL && e->generation == r->generation) {
        long http_status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &http_status);
        CURLcode result = msg->data.result;
        if (result == CURLE_OK && http_status >= 200 && http_status < 300) {
            events_dest_delivered(e->state, r->job);
            stats_count(w, e->row.id, EVENTS_OUTCOME_RETRY, true);
        } else {
            char error[256];
            if (r->refused[0] != '\0') snprintf(error, sizeof error, "url_not_public: %s is not a public address", r->refused);
            else if (result != CURLE_OK) snprintf(error, sizeof error, "%s", r->error[0] ? r->error : curl_easy_strerror(result));
            else snprintf(error, sizeof error, "HTTP %ld", http_status);
            send_failed(w, e, r->job, error);
        }
    }
    request_free(r);
}

static void completions(events_webhooks_t *w) {
    int running = 0, queued = 0;
    curl_multi_perform(w->multi, &running);
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(w->multi, &queued)) != NULL) {
        if (msg->msg == CURLMSG_DONE) completed(w, msg);
    }
}

/* ---- periodic work ---- */

static void lag_refresh(events_webhooks_t *w) {
    uint64_t now_ns = events_now_ns(w->events);
    pthread_mutex_lock(&w->events->stats_mutex);
    for (uint32_t i = 0; i < w->endpoint_count; i++) {
        endpoint *e = w->endpoints[i];
        events_dest_stats_t *slot = events_stats_slot(w->events, e->row.id, "webhook");
        if (slot == NULL || e->state == NULL) continue;
        uint64_t oldest = events_dest_oldest_seq(e->state);
        /* nothing in memory but events not read yet (a disabled endpoint): its cursor */
        if (oldest == 0 && events_dest_fetched(e->state) < w->latest_seq) oldest = events_dest_fetched(e->state) + 1;
        slot->lag_ms = oldest != 0 && now_ns > oldest ? (now_ns - oldest) / 1000000u : 0;
        slot->disabled = events_dest_disabled(e->state);
    }
    pthread_mutex_unlock(&w->events->stats_mutex);
}

static void purge_tick(events_webhooks_t *w, uint64_t now_ms) {
    uint64_t runs, purged;
    events_flusher_purge_counts(w->flusher, &runs, &purged);
    atomic_store(&w->events->purge_runs, runs);
    atomic_store(&w->events->purged, purged);
    uint64_t retention_s = w->events->config.retention_s;
    int64_t shift_s = atomic_load(&w->events->clock_shift_s);
    if (retention_s == 0 || (now_ms < w->next_purge_ms && shift_s == w->shift_s)) return;
    if (!events_flusher_idle(w->flusher)) return;
    bool more = events_flusher_purged(w->flusher) == EVENTS_PURGE_ROWS_MAX;
    w->shift_s = shift_s;
    w->next_purge_ms = now_ms + (more ? 1000 : PURGE_MS);
    events_op_t op = {.kind = EVENTS_OP_PURGE, .purge_before_ns = events_now_ns(w->events) - retention_s * 1000000000ull};
    events_flusher_add(w->flusher, &op);
}

static void flush(events_webhooks_t *w, uint64_t now_ms) {
    if (now_ms < w->next_flush_ms && events_flusher_pending(w->flusher) < FLUSH_OPS_EARLY) return;
    if (!events_flusher_idle(w->flusher)) return;
    w->next_flush_ms = now_ms + FLUSH_MS;
    for (uint32_t i = 0; i < w->endpoint_count; i++) {
        if (w->endpoints[i]->state != NULL) events_dest_queue_cursor(w->endpoints[i]->state);
    }
    (void)events_flusher_kick(w->flusher);
}

static int poll_timeout_ms(events_webhooks_t *w) {
    uint64_t now_ns = events_now_ns(w->events);
    uint64_t timeout_ms = events_flusher_pending(w->flusher) > 0 ? FLUSH_MS : POLL_MS_MAX;
    if (atomic_load(&w->fresh_wanted) && w->endpoint_count > 0) timeout_ms = FRESH_GAP_NS / 1000000u;
    for (uint32_t i = 0; i < w->endpoint_count; i++) {
        if (w->endpoints[i]->state == NULL) continue;
        uint64_t due_ns = events_dest_due_ns(w->endpoints[i]->state);
        if (due_ns == UINT64_MAX) continue;
        uint64_t wait_ms = due_ns > now_ns ? (due_ns - now_ns) / 1000000u + 1 : 0;
        if (wait_ms < timeout_ms) timeout_ms = wait_ms;
    }
    return (int)timeout_ms;
}

static void round_run(events_webhooks_t *w) {
    uint64_t now_ms = mono_ms();
    if (now_ms >= w->next_clock_ms) {
        events_clock_refresh(w->events);
        w->next_clock_ms = now_ms + CLOCK_MS;
    }
    if (atomic_load(&w->reload_wanted) || now_ms >= w->next_reload_ms) reload(w);
    bool fresh_due = atomic_load(&w->fresh_wanted) && pc_mono_ns() >= w->latest_read_ns + FRESH_GAP_NS;
    if ((fresh_due || now_ms >= w->next_latest_ms) && w->endpoint_count > 0) {
        atomic_store(&w->fresh_wanted, false);
        w->latest_read_ns = pc_mono_ns();
        if (store_events_latest(w->reader, &w->latest_seq) == PC_OK) w->next_latest_ms = now_ms + POLL_MS_MAX;
    }
    uint64_t now_ns = events_now_ns(w->events);
    for (uint32_t i = 0; i < w->endpoint_count; i++) {
        /* an endpoint changed (a rotated secret, a new type list) after this round's
         * reload: nothing more is signed with what it was; the next round rereads first */
        if (atomic_load(&w->reload_wanted)) break;
        endpoint *e = w->endpoints[i];
        endpoint_rebuild_due(w, e);
        if (e->state == NULL || e->rebuild_wanted) continue;
        fill(w, e);
        dispatch(w, e, now_ns);
    }
    completions(w);
    now_ns = events_now_ns(w->events);
    for (uint32_t i = 0; i < w->endpoint_count; i++) {
        if (w->endpoints[i]->state != NULL) events_dest_settle(w->endpoints[i]->state, now_ns);
    }
    purge_tick(w, now_ms);
    if (now_ms >= w->next_lag_ms) {
        lag_refresh(w);
        w->next_lag_ms = now_ms + LAG_MS;
    }
    flush(w, now_ms);
}

static void shutdown_requests(events_webhooks_t *w) {
    while (w->request_head != NULL) {
        request *r = w->request_head;
        curl_multi_remove_handle(w->multi, r->easy);
        request_unlink(w, r);
        request_free(r); /* not acknowledged: delivered again after the restart */
    }
}

static void *webhooks_main(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-webhook"); /* per-thread CPU in top, perf */
    events_webhooks_t *w = arg;
    events_thread_background();
    while (!atomic_load(&w->stopping)) {
        round_run(w);
        curl_multi_poll(w->multi, NULL, 0, poll_timeout_ms(w), NULL);
    }
    shutdown_requests(w);
    for (uint32_t i = 0; i < w->endpoint_count; i++) {
        if (w->endpoints[i]->state != NULL) events_dest_queue_cursor(w->endpoints[i]->state);
    }
    events_flusher_drain(w->flusher);
    return NULL;
}

static void webhooks_free(events_webhooks_t *w) {
    for (uint32_t i = 0; i < w->endpoint_count; i++) endpoint_free(w, w->endpoints[i]);
    events_flusher_free(w->flusher);
    store_reader_close(w->reader);
    if (w->multi != NULL) curl_multi_cleanup(w->multi);
    free(w);
}

pc_status events_webhooks_start(events_t *events, events_webhooks_t **out) {
    events_webhooks_t *w = calloc(1, sizeof(*w));
    if (w == NULL) return PC_NO_MEMORY;
    w->events = events;
    w->multi = curl_multi_init();
    w->flusher = events_flusher_new(events->writer, wake, w);
    atomic_store(&w->reload_wanted, true);
    pc_status status = w->multi != NULL && w->flusher != NULL ? store_reader_open(events->store, &w->reader)
                                                                : PC_NO_MEMORY;
    if (status == PC_OK) {
        curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)EVENTS_INFLIGHT_PER_DESTINATION_MAX);
        if (pthread_create(&w->thread, NULL, webhooks_main, w) != 0) status = PC_INTERNAL;
    }
    if (status != PC_OK) {
        webhooks_free(w);
        return status;
    }
    *out = w;
    return PC_OK;
}

void events_webhooks_stop(events_webhooks_t *w) {
    atomic_store(&w->stopping, true);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    webhooks_free(w);
}
