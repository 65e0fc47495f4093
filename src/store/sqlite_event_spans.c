/* store/sqlite_event_spans.c: where a merchant's events are, a row per run of them
 * (schema version 17). An index entry per event (events_by_owner before) cost the
 * writer a B-tree whose last leaf is rebalanced with its left siblings each time it
 * fills; a span (owner, first_seq, last_seq) is written once per owner and run of a
 * transaction's events instead.
 *
 * A run ends when more than STORE_EVENT_SPAN_GAP_MAX other events (other owners' or
 * none's) came after the owner's last one, when STORE_EVENT_SPANS_OPEN_MAX other
 * owners were seen since (the least recent run is closed for a new owner), and at
 * COMMIT. So a span holds at most STORE_EVENT_SPAN_GAP_MAX rows not the owner's
 * between two of its own, the rows a listing reads and filters out by events.owner.
 * One owner's spans never overlap (seqs increase in commit order) and are walked in
 * first_seq order.
 *
 * Closed spans go into a rows buffer (sqlite_rows.c: several a statement, dropped at
 * ROLLBACK); the open ones are closed before COMMIT (sqlite_tx.c) and dropped at
 * ROLLBACK. Writer thread only. */
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"

typedef struct {
    char owner[PC_ID_SIZE];
    uint64_t first_seq, last_seq;
    uint64_t last_at; /* the transaction's event count at the owner's last event */
} span_t;

struct store_sqlite_event_spans {
    span_t open[STORE_EVENT_SPANS_OPEN_MAX];
    uint32_t open_count;
    uint64_t event_count; /* the events of this transaction so far */
    store_sqlite_rows_t *rows;
};

#define SPAN_INSERT_PREFIX "INSERT OR FAIL INTO event_owner_spans(owner, first_seq, last_seq) VALUES"

static pc_status spans_make(sqlite_store_t *store) {
    store_sqlite_event_spans_t *spans = calloc(1, sizeof(*spans));
    if (spans == NULL) return PC_NO_MEMORY;
    pc_status status = store_sqlite_rows_new(store, SPAN_INSERT_PREFIX, 3, &spans->rows);
    if (status != PC_OK) {
        free(spans);
        return status;
    }
    store->event_spans = spans;
    return PC_OK;
}

void store_sqlite_event_spans_free(sqlite_store_t *store) {
    store_sqlite_event_spans_t *spans = store->event_spans;
    if (spans == NULL) return;
    store_sqlite_rows_free(spans->rows);
    free(spans);
    store->event_spans = NULL;
}

/* The span's row into the buffer; its slot is free again. */
static pc_status span_close(store_sqlite_event_spans_t *spans, uint32_t at) {
    span_t *span = &spans->open[at];
    store_sqlite_rows_text(spans->rows, span->owner, strlen(span->owner));
    store_sqlite_rows_int(spans->rows, (int64_t)span->first_seq);
    store_sqlite_rows_int(spans->rows, (int64_t)span->last_seq);
    spans->open[at] = spans->open[--spans->open_count];
    return store_sqlite_rows_end_row(spans->rows);
}

static int64_t span_find(const store_sqlite_event_spans_t *spans, const char *owner) {
    for (uint32_t i = 0; i < spans->open_count; i++) {
        if (strcmp(spans->open[i].owner, owner) == 0) return i;
    }
    return -1;
}

/* The open span seen least recently: closed to make room for another owner. */
static uint32_t span_least_recent(const store_sqlite_event_spans_t *spans) {
    uint32_t oldest = 0;
    for (uint32_t i = 1; i < spans->open_count; i++) {
        if (spans->open[i].last_at < spans->open[oldest].last_at) oldest = i;
    }
    return oldest;
}

static void span_open(store_sqlite_event_spans_t *spans, const char *owner, uint64_t seq) {
    span_t *span = &spans->open[spans->open_count++];
    size_t bytes = strlen(owner);
    PC_ASSERT(bytes < sizeof span->owner);
    memcpy(span->owner, owner, bytes + 1);
    span->first_seq = seq;
    span->last_seq = seq;
    span->last_at = spans->event_count;
}

pc_status store_sqlite_event_spans_add(sqlite_store_t *store, const char *owner, uint64_t seq) {
    if (store->event_spans == NULL) {
        pc_status status = spans_make(store);
        if (status != PC_OK) return status;
    }
    store_sqlite_event_spans_t *spans = store->event_spans;
    spans->event_count++; /* every event: one without an owner lies in others' spans too */
    if (owner == NULL) return PC_OK;
    int64_t found = span_find(spans, owner);
    if (found >= 0) {
        span_t *span = &spans->open[found];
        if (spans->event_count - span->last_at - 1 <= STORE_EVENT_SPAN_GAP_MAX) {
            span->last_seq = seq;
            span->last_at = spans->event_count;
            return PC_OK;
        }
    }
    pc_status status = PC_OK;
    if (found >= 0) status = span_close(spans, (uint32_t)found);
    else if (spans->open_count == STORE_EVENT_SPANS_OPEN_MAX) status = span_close(spans, span_least_recent(spans));
    span_open(spans, owner, seq);
    return status;
}

pc_status store_sqlite_event_spans_flush(sqlite_store_t *store) {
    store_sqlite_event_spans_t *spans = store->event_spans;
    if (spans == NULL) return PC_OK;
    pc_status status = PC_OK;
    while (spans->open_count > 0 && status == PC_OK) status = span_close(spans, spans->open_count - 1);
    spans->open_count = 0;
    spans->event_count = 0;
    return status;
}

void store_sqlite_event_spans_drop(sqlite_store_t *store) {
    store_sqlite_event_spans_t *spans = store->event_spans;
    if (spans == NULL) return;
    spans->open_count = 0;
    spans->event_count = 0;
}
