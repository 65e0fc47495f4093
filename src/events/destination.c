/* events/destination.c: the delivery state of one webhook endpoint, in memory, on the
 * webhook thread. No I/O here: the thread feeds it events and attempt outcomes, it
 * says what to send next and queues the state changes to store (events_flusher_t).
 *
 * Jobs. A "fresh" job is an event after the stored cursor, read from the outbox; a
 * "row" job is backed by a delivery row (it failed at least once, or waits behind an
 * earlier event of its object). The cursor moves over the fresh jobs in seq order as
 * each one is settled (delivered, or turned into a row), so after a crash everything
 * above the stored cursor is simply delivered again (at least once).
 *
 * Order per object. Each object's jobs form a FIFO in seq order (rows are loaded
 * before fresh jobs are read, and every row's seq is below every fresh one): only the
 * head of an object's FIFO may be sent, so a later event of an object is never sent
 * before an earlier one was acknowledged or dead-lettered. A fresh job that reaches
 * the front while blocked becomes a row, so one slow object never holds the cursor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "events/events_internal.h"

#define DEST_BUCKETS 4096 /* object FIFOs by id hash: a few jobs a bucket at the limits */

typedef struct dest_object dest_object;
struct dest_object {
    char id[PC_ID_SIZE];
    events_job_t *head;
    events_job_t *tail;
    dest_object *next;             /* bucket chain */
};

typedef struct {
    events_job_t *head;
    events_job_t *tail;
    uint32_t count;
} job_list;

struct events_dest {
    char id[PC_ID_SIZE];
    const events_config_t *config; /* borrowed */
    events_flusher_t *flusher;     /* borrowed */
    job_list fresh;                /* seq order */
    job_list rows;
    uint32_t in_flight;
    dest_object *buckets[DEST_BUCKETS];
    uint64_t epoch;
    uint64_t fetched_seq;          /* every event up to here is a job or settled */
    uint64_t cursor_queued;        /* the last cursor handed to the flusher */
    uint64_t failing_since_ns;
    uint64_t disabled_ns;
    bool rows_truncated;           /* the store holds more rows than were loaded */
    size_t body_bytes;             /* kept bodies, at most EVENTS_WINDOW_BODY_BYTES_MAX */
    uint64_t due_ns;               /* earliest due row head; 0: look again */
};

events_dest_t *events_dest_new(const char *id, const store_event_destination_t *row, const events_config_t *config,
                               events_flusher_t *flusher) {
    events_dest_t *d = calloc(1, sizeof(*d));
    if (d == NULL) return NULL;
    snprintf(d->id, sizeof d->id, "%s", id);
    d->config = config;
    d->flusher = flusher;
    d->epoch = row->cursor_epoch;
    d->fetched_seq = row->cursor_seq;
    d->cursor_queued = row->cursor_seq;
    d->failing_since_ns = row->failing_since_ns;
    d->disabled_ns = row->disabled_ns;
    return d;
}

static void list_unlink(job_list *list, events_job_t *job) {
    if (job->prev != NULL) job->prev->next = job->next;
    else list->head = job->next;
    if (job->next != NULL) job->next->prev = job->prev;
    else list->tail = job->prev;
    job->prev = job->next = NULL;
    list->count--;
}

static void list_append(job_list *list, events_job_t *job) {
    job->prev = list->tail;
    job->next = NULL;
    if (list->tail != NULL) list->tail->next = job;
    else list->head = job;
    list->tail = job;
    list->count++;
}

void events_dest_free(events_dest_t *d) {
    if (d == NULL) return;
    job_list *lists[] = {&d->fresh, &d->rows};
    for (int l = 0; l < 2; l++) {
        while (lists[l]->head != NULL) {
            events_job_t *job = lists[l]->head;
            list_unlink(lists[l], job);
            free(job->body);
            free(job);
        }
    }
    for (uint32_t b = 0; b < DEST_BUCKETS; b++) {
        while (d->buckets[b] != NULL) {
            dest_object *next = d->buckets[b]->next;
            free(d->buckets[b]);
            d->buckets[b] = next;
        }
    }
    free(d);
}

/* ---- object FIFOs ---- */

static dest_object *object_get(events_dest_t *d, const char *object_id, bool create) {
    uint32_t bucket = (uint32_t)(pc_hash64(object_id, strlen(object_id)) % DEST_BUCKETS);
    for (dest_object *o = d->buckets[bucket]; o != NULL; o = o->next) {
        if (strcmp(o->id, object_id) == 0) return o;
    }
    if (!create) return NULL;
    dest_object *o = calloc(1, sizeof(*o));
    if (o == NULL) return NULL;
    snprintf(o->id, sizeof o->id, "%s", object_id);
    o->next = d->buckets[bucket];
    d->buckets[bucket] = o;
    return o;
}

static void object_drop(events_dest_t *d, dest_object *o) {
    uint32_t bucket = (uint32_t)(pc_hash64(o->id, strlen(o->id)) % DEST_BUCKETS);
    for (dest_object **at = &d->buckets[bucket]; *at != NULL; at = &(*at)->next) {
        if (*at == o) {
            *at = o->next;
            free(o);
            return;
        }
    }
    PC_ASSERT(false);
}

static events_job_t *job_new(events_dest_t *d, uint64_t seq, const char *object_id) {
    dest_object *o = object_get(d, object_id, true);
    events_job_t *job = o ? calloc(1, sizeof(*job)) : NULL;
    if (job == NULL) {
        if (o != NULL && o->head == NULL) object_drop(d, o);
        return NULL;
    }
    PC_ASSERT(o->tail == NULL || o->tail->seq < seq);
    job->seq = seq;
    job->object = o;
    if (o->tail != NULL) o->tail->next_same_object = job;
    else o->head = job;
    o->tail = job;
    return job;
}

/* Removes a finished job: it was its object's head (only heads are sent). */
static void job_finish(events_dest_t *d, events_job_t *job) {
    dest_object *o = job->object;
    PC_ASSERT(o->head == job);
    o->head = job->next_same_object;
    if (o->head == NULL) {
        o->tail = NULL;
        object_drop(d, o);
    }
    list_unlink(job->row ? &d->rows : &d->fresh, job);
    d->body_bytes -= job->body_bytes;
    free(job->body);
    free(job);
    d->due_ns = 0; /* the object's next job may be due */
}

/* ---- filling ---- */

bool events_dest_add_row(events_dest_t *d, const store_event_delivery_t *row) {
    PC_ASSERT(d->fresh.count == 0); /* rows are loaded before any fresh job */
    events_job_t *job = job_new(d, row->seq, row->object_id);
    if (job == NULL) return false;
    job->type = EVENTS_TYPE_COUNT;
    job->row = true;
    job->attempts = row->attempts;
    job->first_attempt_ns = row->first_attempt_ns;
    job->next_attempt_ns = row->next_attempt_ns;
    list_append(&d->rows, job);
    d->due_ns = 0;
    return true;
}

/* Keeps a copy of the body while the budget allows: sending then needs no read. */
static void body_keep(events_dest_t *d, events_job_t *job, const char *body, size_t body_bytes) {
    if (body == NULL || d->body_bytes + body_bytes > EVENTS_WINDOW_BODY_BYTES_MAX) return;
    job->body = malloc(body_bytes + 1);
    if (job->body == NULL) return;
    memcpy(job->body, body, body_bytes);
    job->body[body_bytes] = '\0';
    job->body_bytes = (uint32_t)body_bytes;
    d->body_bytes += body_bytes;
}

bool events_dest_add_fresh(events_dest_t *d, uint64_t seq, const char *object_id, events_type type, const char *body,
                           size_t body_bytes) {
    PC_ASSERT(seq > d->fetched_seq);
    /* A row of this object at or after 'seq' means 'seq' was settled before that row
     * was attempted (only heads are sent): it is not due again. */
    dest_object *o = object_get(d, object_id, false);
    if (o != NULL && o->tail != NULL && o->tail->seq >= seq) return true;
    events_job_t *job = job_new(d, seq, object_id);
    if (job == NULL) return false;
    job->type = (uint8_t)type;
    body_keep(d, job, body, body_bytes);
    list_append(&d->fresh, job);
    return true;
}

void events_dest_set_fetched(events_dest_t *d, uint64_t seq) {
    if (seq > d->fetched_seq) d->fetched_seq = seq;
}

uint64_t events_dest_fetched(const events_dest_t *d) { return d->fetched_seq; }

void events_dest_set_truncated(events_dest_t *d) { d->rows_truncated = true; }

/* Room for fresh jobs: none while disabled or while rows are at their limit. */
uint32_t events_dest_fresh_room(const events_dest_t *d) {
    if (d->disabled_ns != 0 || d->rows_truncated || d->rows.count >= EVENTS_RETRY_ROWS_MAX) return 0;
    return EVENTS_WINDOW_MAX - d->fresh.count;
}

/* True when the store holds rows not in memory and none are left here. */
bool events_dest_needs_reload(const events_dest_t *d) {
    return d->rows_truncated && d->rows.count == 0;
}

/* ---- sending ---- */

static bool sendable(const events_job_t *job, uint64_t now_ns) {
    return !job->in_flight && job->object->head == job && job->next_attempt_ns <= now_ns;
}

/* The first due row head (or NULL), and the earliest due time of the others. */
static events_job_t *rows_scan(events_dest_t *d, uint64_t now_ns, uint64_t *due_ns) {
    events_job_t *found = NULL;
    *due_ns = UINT64_MAX;
    for (events_job_t *job = d->rows.head; job != NULL; job = job->next) {
        if (job->in_flight || job->object->head != job) continue;
        if (found == NULL && job->next_attempt_ns <= now_ns) found = job;
        else if (job->next_attempt_ns < *due_ns) *due_ns = job->next_attempt_ns;
    }
    return found;
}

/* The next job to send (marked in flight), rows first, or NULL. */
events_job_t *events_dest_next(events_dest_t *d, uint64_t now_ns) {
    if (d->disabled_ns != 0 || d->in_flight >= EVENTS_INFLIGHT_PER_DESTINATION_MAX) return NULL;
    events_job_t *found = NULL;
    if (d->due_ns <= now_ns) {
        uint64_t due_ns;
        found = rows_scan(d, now_ns, &due_ns);
        d->due_ns = found != NULL ? 0 : due_ns;
    }
    for (events_job_t *job = d->fresh.head; found == NULL && job != NULL; job = job->next) {
        if (sendable(job, now_ns)) found = job;
    }
    if (found != NULL) {
        found->in_flight = true;
        d->in_flight++;
    }
    return found;
}

/* When the next row becomes due (UINT64_MAX: none waits). */
uint64_t events_dest_due_ns(events_dest_t *d) {
    /* full or disabled: a completion (or a reload) wakes the thread */
    if (d->disabled_ns != 0 || d->in_flight >= EVENTS_INFLIGHT_PER_DESTINATION_MAX) return UINT64_MAX;
    if (d->due_ns == 0) {
        uint64_t due_ns;
        events_job_t *found = rows_scan(d, 0, &due_ns);
        d->due_ns = found != NULL ? 1 : due_ns; /* 1: long due (0 means "look again") */
    }
    return d->due_ns;
}

static void queue_health(events_dest_t *d, const char *reason) {
    events_op_t op = {.kind = EVENTS_OP_HEALTH, .failing_since_ns = d->failing_since_ns,
                      .disabled_ns = d->disabled_ns};
    snprintf(op.destination_id, sizeof op.destination_id, "%s", d->id);
    snprintf(op.reason, sizeof op.reason, "%s", reason ? reason : "");
    events_flusher_add(d->flusher, &op);
}

static void queue_row(events_dest_t *d, const events_job_t *job, store_delivery_state state, uint64_t now_ns,
                      const char *error) {
    events_op_t op = {.kind = EVENTS_OP_DELIVERY_PUT, .seq = job->seq, .epoch = d->epoch};
    snprintf(op.destination_id, sizeof op.destination_id, "%s", d->id);
    store_event_delivery_t *row = &op.delivery;
    snprintf(row->destination_id, sizeof row->destination_id, "%s", d->id);
    row->seq = job->seq;
    row->state = state;
    row->attempts = job->attempts;
    row->first_attempt_ns = job->first_attempt_ns;
    row->next_attempt_ns = job->next_attempt_ns;
    row->updated_ns = now_ns;
    snprintf(row->last_error, sizeof row->last_error, "%s", error);
    events_flusher_add(d->flusher, &op);
}

/* A sent job is done with: its row (if any) goes, its object's next job may go. */
static void job_done(events_dest_t *d, events_job_t *job) {
    PC_ASSERT(job->in_flight && d->in_flight > 0);
    job->in_flight = false;
    d->in_flight--;
    if (job->row) {
        events_op_t op = {.kind = EVENTS_OP_DELIVERY_DELETE, .seq = job->seq};
        snprintf(op.destination_id, sizeof op.destination_id, "%s", d->id);
        events_flusher_add(d->flusher, &op);
    }
    job_finish(d, job);
}

void events_dest_delivered(events_dest_t *d, events_job_t *job) {
    job_done(d, job);
    if (d->failing_since_ns != 0) {
        d->failing_since_ns = 0;
        queue_health(d, NULL);
    }
}

/* Disables an endpoint that has failed for disable_after_s, and says why. */
static void maybe_disable(events_dest_t *d, uint64_t now_ns, const char *error) {
    uint64_t limit_ns = d->config->disable_after_s * 1000000000ull;
    if (d->disabled_ns != 0 || now_ns - d->failing_since_ns < limit_ns) return;
    d->disabled_ns = now_ns;
    char reason[256];
    snprintf(reason, sizeof reason, "every delivery failed for %llu s; last error: %s",
             (unsigned long long)((now_ns - d->failing_since_ns) / 1000000000ull), error);
    queue_health(d, reason);
}

events_outcome events_dest_failed(events_dest_t *d, events_job_t *job, uint64_t now_ns, const char *error) {
    PC_ASSERT(job->in_flight && d->in_flight > 0);
    job->in_flight = false;
    d->in_flight--;
    job->attempts++;
    if (job->first_attempt_ns == 0) job->first_attempt_ns = now_ns;
    if (d->failing_since_ns == 0) {
        d->failing_since_ns = now_ns;
        queue_health(d, NULL);
    }
    maybe_disable(d, now_ns, error);
    events_outcome outcome = EVENTS_OUTCOME_RETRY;
    if (now_ns - job->first_attempt_ns >= d->config->retry_max_s * 1000000000ull) {
        queue_row(d, job, STORE_DELIVERY_DEAD, now_ns, error);
        job_finish(d, job);
        return EVENTS_OUTCOME_DEAD;
    }
    job->next_attempt_ns = now_ns + events_backoff_ms(d->config, job->attempts) * 1000000ull;
    if (!job->row) {
        list_unlink(&d->fresh, job);
        job->row = true;
        list_append(&d->rows, job);
    }
    queue_row(d, job, STORE_DELIVERY_RETRYING, now_ns, error);
    d->due_ns = 0;
    return outcome;
}

/* A job whose event vanished (it cannot: retention keeps undelivered events): forget
 * it so that it cannot block its object. */
void events_dest_drop(events_dest_t *d, events_job_t *job) {
    job_done(d, job);
}

/* ---- the cursor ---- */

/* Turns blocked fresh jobs at the front into rows. */
void events_dest_settle(events_dest_t *d, uint64_t now_ns) {
    while (d->fresh.head != NULL && !d->fresh.head->in_flight && d->fresh.head->object->head != d->fresh.head) {
        events_job_t *job = d->fresh.head;
        list_unlink(&d->fresh, job);
        job->row = true;
        job->next_attempt_ns = now_ns;
        list_append(&d->rows, job);
        queue_row(d, job, STORE_DELIVERY_RETRYING, now_ns, "waiting for an earlier event of the same object");
    }
}

/* Queues the cursor's advance, if any: after the rows it passes (call it once per
 * flush, just before the flush is submitted, so that one update carries it). */
void events_dest_queue_cursor(events_dest_t *d) {
    uint64_t cursor = d->fresh.head != NULL ? d->fresh.head->seq - 1 : d->fetched_seq;
    if (cursor <= d->cursor_queued) return;
    events_op_t op = {.kind = EVENTS_OP_CURSOR, .seq = cursor, .epoch = d->epoch};
    snprintf(op.destination_id, sizeof op.destination_id, "%s", d->id);
    if (events_flusher_add(d->flusher, &op)) d->cursor_queued = cursor;
}

/* The oldest event not yet delivered (0: none in memory). Dead letters do not count. */
uint64_t events_dest_oldest_seq(const events_dest_t *d) {
    uint64_t oldest = d->fresh.head != NULL ? d->fresh.head->seq : 0;
    for (const events_job_t *job = d->rows.head; job != NULL; job = job->next) {
        if (oldest == 0 || job->seq < oldest) oldest = job->seq;
    }
    return oldest;
}

bool events_dest_disabled(const events_dest_t *d) { return d->disabled_ns != 0; }
uint64_t events_dest_epoch(const events_dest_t *d) { return d->epoch; }
uint32_t events_dest_in_flight(const events_dest_t *d) { return d->in_flight; }
uint32_t events_dest_jobs(const events_dest_t *d) { return d->fresh.count + d->rows.count; }
