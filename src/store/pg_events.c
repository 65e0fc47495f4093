/* store/pg_events.c: the events outbox and delivery state on PostgreSQL, the same
 * rows and semantics as sqlite_events.c (an event's first owner on its row, the
 * further ones in event_owners). A batch's events and their owners are not
 * sent one statement each: they are gathered into COPY buffers on the store and sent
 * just before the batch's COMMIT (pg_events_flush), or before any statement of the
 * same transaction that reads the events table. The rare writes (destinations,
 * cursors, deliveries) are one statement each. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

/* An account's merchant owners, fetched for a whole batch at once. */
typedef struct {
    char account_id[PC_ID_SIZE];
    char key_id[PC_ID_SIZE];    /* "" for an account of the batch without owners */
} pg_owner_row_t;

typedef struct {
    store_events_writer_t base;  /* first: store_parts.c finds the store there */
    pg_store_t *store;
    uint64_t seq_last;           /* the last seq handed out in this transaction */
    uint64_t seq_floor;          /* the last one handed out before it (rows in COPY buffers are
                                    not in max(seq) yet: a seq is never handed out twice) */
    pg_owner_row_t *owners;      /* this transaction's batch accounts, sorted; NULL: not fetched */
    uint32_t owner_count;
} pg_events_writer_t;

static PGconn *tx_conn(store_tx_t *tx) { return pg_tx_conn(tx); }

pc_status pg_events_flush(pg_store_t *store) {
    bool ok = store->events_copy.rows == 0 ||
              pg_copy_send(store->conn, "COPY events(seq, type, object_id, object_seq, body, owner) FROM STDIN",
                           &store->events_copy);
    ok = ok && (store->owners_copy.rows == 0 ||
                pg_copy_send(store->conn, "COPY event_owners(owner, seq) FROM STDIN", &store->owners_copy));
    pg_events_discard(store);
    return ok ? PC_OK : PC_STORE_COMMIT_FAILED;
}

void pg_events_discard(pg_store_t *store) {
    pg_copy_free(&store->events_copy);
    pg_copy_free(&store->owners_copy);
}

/* ---- writing events ---- */

static pc_status pg_events_writer_begin(store_tx_t *tx, store_events_writer_t **out) {
    pg_events_writer_t *writer = calloc(1, sizeof *writer);
    if (writer == NULL) return PC_NO_MEMORY;
    writer->base.store = tx->store;
    writer->store = (pg_store_t *)tx->store;
    *out = &writer->base;
    return PC_OK;
}

static void owners_clear(pg_events_writer_t *writer) {
    free(writer->owners);
    writer->owners = NULL;
    writer->owner_count = 0;
}

static void pg_events_writer_reset(store_events_writer_t *base) {
    pg_events_writer_t *writer = (pg_events_writer_t *)base;
    if (writer->seq_last > writer->seq_floor) writer->seq_floor = writer->seq_last;
    writer->seq_last = 0; /* the last transaction may have rolled back */
    owners_clear(writer);
}

static void pg_events_writer_end(store_events_writer_t *base) {
    if (base != NULL) owners_clear((pg_events_writer_t *)base);
    free(base);
}

static pc_status pg_events_seq_next(store_events_writer_t *base, uint64_t floor_ns, uint64_t *seq_out) {
    pg_events_writer_t *writer = (pg_events_writer_t *)base;
    if (writer->seq_last == 0) {
        PGresult *result = pg_query(writer->store->conn, "SELECT coalesce(max(seq), 0) FROM events", 0, NULL);
        if (result == NULL) return PC_STORE_COMMIT_FAILED;
        writer->seq_last = (uint64_t)pg_int(result, 0, 0);
        PQclear(result);
        if (writer->seq_floor > writer->seq_last) writer->seq_last = writer->seq_floor;
    }
    uint64_t seq = writer->seq_last + 1 > floor_ns ? writer->seq_last + 1 : floor_ns;
    PC_ASSERT(seq <= (uint64_t)INT64_MAX);
    writer->seq_last = seq;
    *seq_out = seq;
    return PC_OK;
}

static pc_status pg_events_insert(store_events_writer_t *base, const store_event_t *event) {
    pg_events_writer_t *writer = (pg_events_writer_t *)base;
    pg_store_t *store = writer->store;
    PC_ASSERT(event->seq != 0 && event->seq <= writer->seq_last);
    char *body = malloc(event->body_bytes + 1); /* the event's body need not end in NUL */
    if (body == NULL) return PC_NO_MEMORY;
    memcpy(body, event->body, event->body_bytes);
    body[event->body_bytes] = '\0';
    pg_copy_int(&store->events_copy, (int64_t)event->seq);
    pg_copy_text(&store->events_copy, event->type);
    pg_copy_text(&store->events_copy, event->object_id);
    pg_copy_int(&store->events_copy, event->object_seq);
    pg_copy_text(&store->events_copy, body);
    pg_copy_text(&store->events_copy, event->owner_count > 0 ? event->owners[0] : NULL); /* NULL: admins only */
    pg_copy_row_end(&store->events_copy);
    free(body);
    for (uint32_t i = 1; i < event->owner_count; i++) { /* the further owners */
        if (strcmp(event->owners[i], event->owners[0]) == 0) continue;
        pg_copy_text(&store->owners_copy, event->owners[i]);
        pg_copy_int(&store->owners_copy, (int64_t)event->seq);
        pg_copy_row_end(&store->owners_copy);
    }
    return store->events_copy.failed || store->owners_copy.failed ? PC_NO_MEMORY : PC_OK;
}

static int owner_row_compare(const void *a, const void *b) {
    const pg_owner_row_t *x = a, *y = b;
    int by_account = strcmp(x->account_id, y->account_id);
    return by_account != 0 ? by_account : strcmp(x->key_id, y->key_id);
}

static int owner_account_compare(const void *key, const void *row) {
    return strcmp(key, ((const pg_owner_row_t *)row)->account_id);
}

/* The owners of every account the batch touched or created, in one query: a row per
 * (account, owner), and a row with key_id "" per account, so that "no owner" is an
 * answer too. Grants written earlier in this transaction count (same connection). */
static pc_status owners_fetch(pg_events_writer_t *writer) {
    const ledger_changes_t *c = writer->store->tx_changes;
    const ledger_t *ledger = writer->store->tx_ledger;
    uint32_t count = c->accounts_touched_count + c->accounts_created_count;
    char *array = malloc((size_t)count * (PC_ID_SIZE + 3) + 3);
    pg_owner_row_t *rows = calloc(count + 1, sizeof *rows);
    if (array == NULL || rows == NULL) {
        free(array);
        free(rows);
        return PC_NO_MEMORY;
    }
    size_t bytes = 1;
    array[0] = '{';
    for (uint32_t i = 0; i < count; i++) {
        uint32_t no = i < c->accounts_touched_count ? c->accounts_touched[i]
                                                    : c->accounts_created[i - c->accounts_touched_count];
        const char *id = ledger_account_at(ledger, no)->id; /* [A-Za-z0-9._:-]: no escapes */
        bytes += (size_t)sprintf(array + bytes, "%s\"%s\"", bytes > 1 ? "," : "", id);
        snprintf(rows[i].account_id, PC_ID_SIZE, "%s", id);
    }
    memcpy(array + bytes, "}", 2);
    const char *params[] = {array};
    PGresult *result = pg_query(writer->store->conn, "SELECT g.account_id, g.key_id FROM account_grants g JOIN"
                                " api_keys k ON k.id = g.key_id WHERE g.account_id = ANY($1::text[]) AND k.scope ="
                                " 'merchant'", 1, params);
    free(array);
    if (result == NULL) {
        free(rows);
        return PC_STORE_COMMIT_FAILED;
    }
    uint32_t total = count + (uint32_t)PQntuples(result);
    pg_owner_row_t *grown = realloc(rows, sizeof *rows * (total + 1));
    if (grown == NULL) {
        PQclear(result);
        free(rows);
        return PC_NO_MEMORY;
    }
    rows = grown;
    for (int row = 0; row < PQntuples(result); row++) {
        pg_text_copy(rows[count + row].account_id, PC_ID_SIZE, result, row, 0);
        pg_text_copy(rows[count + row].key_id, PC_ID_SIZE, result, row, 1);
    }
    PQclear(result);
    qsort(rows, total, sizeof *rows, owner_row_compare); /* "" first within an account */
    writer->owners = rows;
    writer->owner_count = total;
    return PC_OK;
}

/* One account's owners by a query of its own (an account outside the batch). */
static pc_status owners_query(pg_events_writer_t *writer, const char *account_id, char (*owners)[PC_ID_SIZE],
                              uint32_t owners_max, uint32_t *count) {
    PG_U64(limit, owners_max);
    const char *params[] = {account_id, limit};
    PGresult *result = pg_query(writer->store->conn, "SELECT g.key_id FROM account_grants g JOIN api_keys k ON"
                                " k.id = g.key_id WHERE g.account_id = $1 AND k.scope = 'merchant' ORDER BY g.key_id"
                                " LIMIT $2", 2, params);
    if (result == NULL) return PC_STORE_COMMIT_FAILED;
    for (int row = 0; row < PQntuples(result) && *count < owners_max; row++) {
        pg_text_copy(owners[(*count)++], PC_ID_SIZE, result, row, 0);
    }
    PQclear(result);
    return PC_OK;
}

static pc_status pg_events_account_owners(store_events_writer_t *base, const char *account_id,
                                          char (*owners)[PC_ID_SIZE], uint32_t owners_max, uint32_t *count) {
    pg_events_writer_t *writer = (pg_events_writer_t *)base;
    *count = 0;
    if (writer->owners == NULL && writer->store->tx_changes != NULL) {
        pc_status status = owners_fetch(writer);
        if (status != PC_OK) return status;
    }
    const pg_owner_row_t *found = writer->owners == NULL ? NULL
        : bsearch(account_id, writer->owners, writer->owner_count, sizeof *writer->owners, owner_account_compare);
    if (found == NULL) return owners_query(writer, account_id, owners, owners_max, count);
    while (found > writer->owners && strcmp(found[-1].account_id, account_id) == 0) found--;
    const pg_owner_row_t *end = writer->owners + writer->owner_count;
    for (; found < end && strcmp(found->account_id, account_id) == 0 && *count < owners_max; found++) {
        if (found->key_id[0] == '\0') continue;
        if (*count > 0 && strcmp(owners[*count - 1], found->key_id) == 0) continue; /* touched and created */
        snprintf(owners[(*count)++], PC_ID_SIZE, "%s", found->key_id);
    }
    return PC_OK;
}

/* ---- reading events ---- */

#define EVENT_COLUMNS "e.seq, e.type, e.object_id, e.object_seq, e.body"

static void event_from_row(const PGresult *result, int row, store_event_t *event) {
    memset(event, 0, sizeof *event);
    event->seq = (uint64_t)pg_int(result, row, 0);
    event->type = PQgetvalue(result, row, 1);
    event->object_id = PQgetvalue(result, row, 2);
    event->object_seq = (uint32_t)pg_int(result, row, 3);
    event->body = PQgetvalue(result, row, 4);
    event->body_bytes = (size_t)PQgetlength(result, row, 4);
}

/* A merchant's: the events whose row names it (events_by_owner) and those whose further
 * owners do (event_owners), each arm in its index's order up to the limit, merged. An
 * event is in one arm only (its first owner is never in the owners table). */
static void list_sql(const store_events_query_t *query, char *sql, size_t sql_bytes) {
    static const char filters[] = " AND ($3::text IS NULL OR e.type = $3) AND ($4::text IS NULL OR e.object_id = $4)";
    const char *direction = query->descending ? "DESC" : "ASC";
    if (query->owner == NULL) {
        snprintf(sql, sql_bytes, "SELECT " EVENT_COLUMNS " FROM events e WHERE e.seq > $1 AND e.seq < $2 AND"
                 " $5::text IS NULL%s ORDER BY e.seq %s LIMIT $6", filters, direction);
        return;
    }
    snprintf(sql, sql_bytes,
             "SELECT * FROM ((SELECT " EVENT_COLUMNS " FROM events e WHERE e.owner = $5 AND e.seq > $1 AND"
             " e.seq < $2%s ORDER BY e.seq %s LIMIT $6) UNION ALL (SELECT " EVENT_COLUMNS " FROM event_owners o"
             " JOIN events e ON e.seq = o.seq WHERE o.owner = $5 AND o.seq > $1 AND o.seq < $2%s ORDER BY o.seq %s"
             " LIMIT $6)) AS u ORDER BY seq %s LIMIT $6",
             filters, direction, filters, direction, direction);
}

static pc_status pg_events_list(store_reader_t *reader, const store_events_query_t *query, store_event_fn fn,
                                void *ctx, bool *has_more) {
    char sql[1024];
    list_sql(query, sql, sizeof sql);
    PG_U64(after, query->after_seq);
    PG_U64(before, query->before_seq ? query->before_seq : (uint64_t)INT64_MAX);
    PG_U64(limit, (uint64_t)query->limit + 1);
    const char *params[] = {after, before, query->type, query->object_id, query->owner, limit};
    PGresult *result = pg_query(pg_reader_conn(reader), sql, 6, params);
    *has_more = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    int rows = PQntuples(result);
    *has_more = (uint32_t)rows > query->limit;
    for (int row = 0; row < rows && (uint32_t)row < query->limit; row++) {
        store_event_t event;
        event_from_row(result, row, &event);
        fn(&event, ctx);
    }
    PQclear(result);
    return PC_OK;
}

static pc_status pg_events_get(store_reader_t *reader, uint64_t seq, const char *owner, store_event_fn fn,
                               void *ctx) {
    PG_U64(seq_text, seq);
    const char *params[] = {seq_text, owner};
    PGresult *result = pg_query(pg_reader_conn(reader), owner != NULL
        ? "SELECT " EVENT_COLUMNS " FROM events e WHERE e.seq = $1 AND (e.owner = $2 OR EXISTS (SELECT 1 FROM"
          " event_owners o WHERE o.owner = $2 AND o.seq = $1))"
        : "SELECT " EVENT_COLUMNS " FROM events e WHERE e.seq = $1", owner != NULL ? 2 : 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) > 0 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        store_event_t event;
        event_from_row(result, 0, &event);
        fn(&event, ctx);
    }
    PQclear(result);
    return status;
}

static pc_status read_u64(store_reader_t *reader, const char *sql, uint64_t *out) {
    PGresult *result = pg_query(pg_reader_conn(reader), sql, 0, NULL);
    if (result == NULL) return PC_STORE_READ_FAILED;
    *out = (uint64_t)pg_int(result, 0, 0);
    PQclear(result);
    return PC_OK;
}

static pc_status pg_events_latest(store_reader_t *reader, uint64_t *seq_out) {
    return read_u64(reader, "SELECT coalesce(max(seq), 0) FROM events", seq_out);
}

static pc_status pg_events_count(store_reader_t *reader, uint64_t *count_out) {
    return read_u64(reader, "SELECT count(*) FROM events", count_out);
}

/* ---- destinations ---- */

#define DESTINATION_COLUMNS                                                                       \
    "id, kind, merchant_id, url, types, secret_box, previous_box, previous_until_ns, cursor_seq," \
    " cursor_epoch, created_ns, failing_since_ns, disabled_ns, disabled_reason"

/* A bytea column of at most STORE_EVENT_SECRET_BOX_BYTES_MAX bytes (NULL: none). */
static void box_copy(uint8_t *dst, uint32_t *dst_bytes, const PGresult *result, int row, int column) {
    *dst_bytes = 0;
    if (PQgetisnull(result, row, column)) return;
    size_t bytes = (strlen(PQgetvalue(result, row, column)) - 2) / 2;
    if (bytes == 0 || bytes > STORE_EVENT_SECRET_BOX_BYTES_MAX) return;
    if (pg_bytea(result, row, column, dst, bytes)) *dst_bytes = (uint32_t)bytes;
}

static void destination_from_row(const PGresult *result, int row, store_event_destination_t *d) {
    memset(d, 0, sizeof *d);
    pg_text_copy(d->id, sizeof d->id, result, row, 0);
    pg_text_copy(d->kind, sizeof d->kind, result, row, 1);
    pg_text_copy(d->merchant_id, sizeof d->merchant_id, result, row, 2);
    pg_text_copy(d->url, sizeof d->url, result, row, 3);
    pg_text_copy(d->types, sizeof d->types, result, row, 4);
    box_copy(d->secret_box, &d->secret_box_bytes, result, row, 5);
    box_copy(d->previous_box, &d->previous_box_bytes, result, row, 6);
    d->previous_until_ns = (uint64_t)pg_int(result, row, 7);
    d->cursor_seq = (uint64_t)pg_int(result, row, 8);
    d->cursor_epoch = (uint64_t)pg_int(result, row, 9);
    d->created_ns = (uint64_t)pg_int(result, row, 10);
    d->failing_since_ns = (uint64_t)pg_int(result, row, 11);
    d->disabled_ns = (uint64_t)pg_int(result, row, 12);
    pg_text_copy(d->disabled_reason, sizeof d->disabled_reason, result, row, 13);
}

/* 'box' as a bytea parameter in 'text' (NULL when empty). */
static const char *box_param(const uint8_t *box, uint32_t bytes, char *text) {
    if (box == NULL || bytes == 0) return NULL;
    PC_ASSERT(bytes <= STORE_EVENT_SECRET_BOX_BYTES_MAX);
    pg_bytea_text(box, bytes, text);
    return text;
}

static pc_status pg_events_destination_insert(store_tx_t *tx, const store_event_destination_t *d) {
    pg_store_t *store = (pg_store_t *)tx->store;
    pc_status status = pg_events_flush(store); /* the cursor starts at the newest event */
    if (status != PC_OK) return status;
    char box[2 * STORE_EVENT_SECRET_BOX_BYTES_MAX + 3];
    PG_U64(created, d->created_ns);
    const char *params[] = {d->id, d->kind, d->merchant_id, d->url, d->types,
                            box_param(d->secret_box, d->secret_box_bytes, box), created};
    int64_t rows = 0;
    status = pg_write(tx_conn(tx), "INSERT INTO event_destinations(id, kind, merchant_id, url, types, secret_box,"
                        " cursor_seq, created_ns) VALUES($1, $2, $3, $4, $5, $6, (SELECT coalesce(max(seq), 0) FROM"
                        " events), $7) ON CONFLICT (id) DO NOTHING", 7, params, &rows);
    return status == PC_OK && rows == 0 ? PC_EXISTS : status;
}

static pc_status pg_events_destination_delete(store_tx_t *tx, const char *id, bool *found) {
    const char *params[] = {id};
    int64_t rows = 0;
    pc_status status = pg_write(tx_conn(tx), "DELETE FROM event_destinations WHERE id = $1", 1, params, &rows);
    *found = status == PC_OK && rows > 0;
    if (status != PC_OK) return status;
    return pg_write(tx_conn(tx), "DELETE FROM event_deliveries WHERE destination_id = $1", 1, params, NULL);
}

static pc_status pg_events_cursor_advance(store_tx_t *tx, const char *id, uint64_t epoch, uint64_t seq) {
    PG_U64(epoch_text, epoch);
    PG_U64(seq_text, seq);
    const char *params[] = {id, epoch_text, seq_text};
    return pg_write(tx_conn(tx), "UPDATE event_destinations SET cursor_seq = $3 WHERE id = $1 AND cursor_epoch = $2"
                      " AND cursor_seq < $3", 3, params, NULL);
}

static pc_status pg_events_cursor_rewind(store_tx_t *tx, const char *id, uint64_t since_ns, bool *found) {
    PG_U64(since, since_ns == 0 ? 1 : since_ns > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : since_ns);
    const char *params[] = {id, since};
    int64_t rows = 0;
    pc_status status = pg_write(tx_conn(tx), "UPDATE event_destinations SET cursor_epoch = cursor_epoch + 1,"
                                  " cursor_seq = least(cursor_seq, $2::bigint - 1) WHERE id = $1", 2, params, &rows);
    *found = status == PC_OK && rows > 0;
    if (status != PC_OK || !*found) return status;
    /* the rows from 'since' on are delivered again from the outbox, in order */
    return pg_write(tx_conn(tx), "DELETE FROM event_deliveries WHERE destination_id = $1 AND seq >= $2", 2, params,
                      NULL);
}

static pc_status pg_events_destination_health(store_tx_t *tx, const char *id, uint64_t failing_since_ns,
                                              uint64_t disabled_ns, const char *reason) {
    PG_U64(failing, failing_since_ns);
    PG_U64(disabled, disabled_ns);
    const char *params[] = {id, failing, disabled, reason ? reason : ""};
    return pg_write(tx_conn(tx), "UPDATE event_destinations SET failing_since_ns = $2, disabled_ns = $3,"
                      " disabled_reason = $4 WHERE id = $1", 4, params, NULL);
}

static pc_status pg_events_destination_secret(store_tx_t *tx, const char *id, const uint8_t *box,
                                              uint32_t box_bytes, const uint8_t *previous_box,
                                              uint32_t previous_box_bytes, uint64_t previous_until_ns, bool *found) {
    char box_text[2 * STORE_EVENT_SECRET_BOX_BYTES_MAX + 3], previous_text[2 * STORE_EVENT_SECRET_BOX_BYTES_MAX + 3];
    PG_U64(until, previous_until_ns);
    const char *params[] = {id, box_param(box, box_bytes, box_text),
                            box_param(previous_box, previous_box_bytes, previous_text), until};
    int64_t rows = 0;
    pc_status status = pg_write(tx_conn(tx), "UPDATE event_destinations SET secret_box = $2, previous_box = $3,"
                                  " previous_until_ns = $4 WHERE id = $1", 4, params, &rows);
    *found = status == PC_OK && rows > 0;
    return status;
}

static pc_status pg_events_destinations_list(store_reader_t *reader, const char *merchant_id,
                                             const char *starting_after, uint32_t limit,
                                             store_event_destination_fn fn, void *ctx, bool *has_more) {
    PG_U64(limit_text, (uint64_t)limit + 1);
    const char *params[] = {starting_after ? starting_after : "", merchant_id, limit == 0 ? NULL : limit_text};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT " DESTINATION_COLUMNS " FROM event_destinations"
                                " WHERE id > $1 AND ($2::text IS NULL OR merchant_id = $2) ORDER BY id LIMIT $3",
                                3, params);
    *has_more = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    store_event_destination_t *d = malloc(sizeof *d);
    if (d == NULL) {
        PQclear(result);
        return PC_NO_MEMORY;
    }
    int rows = PQntuples(result);
    *has_more = limit != 0 && (uint32_t)rows > limit;
    for (int row = 0; row < rows && (limit == 0 || (uint32_t)row < limit); row++) {
        destination_from_row(result, row, d);
        fn(d, ctx);
    }
    free(d);
    PQclear(result);
    return PC_OK;
}

static pc_status pg_events_destination_get(store_reader_t *reader, const char *id, store_event_destination_t *out) {
    const char *params[] = {id};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT " DESTINATION_COLUMNS " FROM event_destinations"
                                " WHERE id = $1", 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) destination_from_row(result, 0, out);
    PQclear(result);
    return status;
}

static pc_status pg_events_destination_counts(store_reader_t *reader, const char *merchant_id,
                                              uint32_t *merchant_count, uint32_t *total_count) {
    const char *params[] = {merchant_id};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT count(*), count(*) FILTER (WHERE merchant_id = $1)"
                                " FROM event_destinations WHERE kind = 'webhook'", 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    *total_count = (uint32_t)pg_int(result, 0, 0);
    *merchant_count = (uint32_t)pg_int(result, 0, 1);
    PQclear(result);
    return PC_OK;
}

/* ---- deliveries ---- */

static pc_status pg_events_delivery_put(store_tx_t *tx, const store_event_delivery_t *d, uint64_t epoch) {
    PG_U64(seq, d->seq);
    PG_U64(state, (uint64_t)d->state);
    PG_U64(attempts, d->attempts);
    PG_U64(first, d->first_attempt_ns);
    PG_U64(next, d->next_attempt_ns);
    PG_U64(updated, d->updated_ns);
    PG_U64(epoch_text, epoch);
    const char *params[] = {d->destination_id, seq, state, attempts, first, next, updated, d->last_error, epoch_text};
    return pg_write(tx_conn(tx), "INSERT INTO event_deliveries(destination_id, seq, state, attempts,"
                      " first_attempt_ns, next_attempt_ns, updated_ns, last_error) SELECT $1::text, $2::bigint, $3::integer,"
                      " $4::integer, $5::bigint, $6::bigint, $7::bigint, $8::text WHERE EXISTS (SELECT 1 FROM event_destinations WHERE id = $1 AND cursor_epoch = $9)"
                      " ON CONFLICT (destination_id, seq) DO UPDATE SET state = excluded.state, attempts ="
                      " excluded.attempts, first_attempt_ns = excluded.first_attempt_ns, next_attempt_ns ="
                      " excluded.next_attempt_ns, updated_ns = excluded.updated_ns, last_error = excluded.last_error",
                      9, params, NULL);
}

static pc_status pg_events_delivery_delete(store_tx_t *tx, const char *destination_id, uint64_t seq) {
    PG_U64(seq_text, seq);
    const char *params[] = {destination_id, seq_text};
    return pg_write(tx_conn(tx), "DELETE FROM event_deliveries WHERE destination_id = $1 AND seq = $2", 2, params,
                      NULL);
}

static pc_status pg_events_delivery_redeliver(store_tx_t *tx, const char *destination_id, uint64_t seq,
                                              uint64_t now_ns) {
    PG_U64(seq_text, seq);
    PG_U64(now, now_ns);
    const char *params[] = {destination_id, seq_text, now, "redelivery requested"};
    int64_t rows = 0;
    pc_status status = pg_write(tx_conn(tx), "UPDATE event_deliveries SET state = 1, attempts = 0,"
                                  " first_attempt_ns = 0, next_attempt_ns = $3, updated_ns = $3, last_error = $4"
                                  " WHERE destination_id = $1 AND seq = $2", 4, params, &rows);
    if (status != PC_OK || rows > 0) return status;
    /* No row: add one for an event at or below the cursor (settled); above it the
     * event is still to come from the outbox. */
    return pg_write(tx_conn(tx), "INSERT INTO event_deliveries(destination_id, seq, state, attempts,"
                      " first_attempt_ns, next_attempt_ns, updated_ns, last_error) SELECT $1::text, $2::bigint, 1, 0, 0,"
                      " $3::bigint, $3::bigint, $4::text"
                      " WHERE EXISTS (SELECT 1 FROM event_destinations WHERE id = $1 AND cursor_seq >= $2)", 4,
                      params, NULL);
}

static pc_status pg_events_deliveries_list(store_reader_t *reader, const char *destination_id,
                                           store_delivery_state state, uint64_t after_seq, uint32_t limit,
                                           store_event_delivery_fn fn, void *ctx, bool *has_more) {
    PG_U64(after, after_seq);
    PG_U64(state_text, (uint64_t)state);
    PG_U64(limit_text, (uint64_t)limit + 1);
    const char *params[] = {destination_id, after, state_text, limit == 0 ? NULL : limit_text};
    PGresult *result = pg_query(pg_reader_conn(reader),
        "SELECT d.destination_id, d.seq, d.state, d.attempts, d.first_attempt_ns, d.next_attempt_ns, d.updated_ns,"
        " d.last_error, e.object_id FROM event_deliveries d JOIN events e ON e.seq = d.seq WHERE d.destination_id = $1"
        " AND d.seq > $2 AND ($3 = 0 OR d.state = $3) ORDER BY d.seq LIMIT $4", 4, params);
    *has_more = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    int rows = PQntuples(result);
    *has_more = limit != 0 && (uint32_t)rows > limit;
    for (int row = 0; row < rows && (limit == 0 || (uint32_t)row < limit); row++) {
        store_event_delivery_t d;
        memset(&d, 0, sizeof d);
        pg_text_copy(d.destination_id, sizeof d.destination_id, result, row, 0);
        d.seq = (uint64_t)pg_int(result, row, 1);
        d.state = (store_delivery_state)pg_int(result, row, 2);
        d.attempts = (uint32_t)pg_int(result, row, 3);
        d.first_attempt_ns = (uint64_t)pg_int(result, row, 4);
        d.next_attempt_ns = (uint64_t)pg_int(result, row, 5);
        d.updated_ns = (uint64_t)pg_int(result, row, 6);
        pg_text_copy(d.last_error, sizeof d.last_error, result, row, 7);
        d.object_id = PQgetvalue(result, row, 8);
        fn(&d, ctx);
    }
    PQclear(result);
    return PC_OK;
}

/* ---- retention ---- */

static pc_status pg_events_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint32_t *deleted_count) {
    pc_status status = pg_events_flush((pg_store_t *)tx->store); /* the newest event is kept */
    *deleted_count = 0;
    if (status != PC_OK) return status;
    PG_U64(before, before_ns);
    PG_U64(limit, rows_max);
    const char *params[] = {before, limit};
    static const char victims[] =
        "SELECT seq FROM events WHERE seq < $1"
        " AND seq <= (SELECT coalesce(min(cursor_seq), 9223372036854775807) FROM event_destinations)"
        " AND seq < (SELECT max(seq) FROM events)"
        " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.seq = events.seq)"
        " ORDER BY seq LIMIT $2";
    char sql[640];
    snprintf(sql, sizeof sql, "WITH victims AS (%s), owners AS (DELETE FROM event_owners WHERE seq IN (SELECT seq"
             " FROM victims)) DELETE FROM events WHERE seq IN (SELECT seq FROM victims)", victims);
    int64_t rows = 0;
    status = pg_write(tx_conn(tx), sql, 2, params, &rows);
    *deleted_count = (uint32_t)rows;
    return status;
}

const store_events_ops_t store_pg_events_ops = {
    .writer_begin = pg_events_writer_begin,
    .writer_reset = pg_events_writer_reset,
    .writer_end = pg_events_writer_end,
    .seq_next = pg_events_seq_next,
    .insert = pg_events_insert,
    .account_owners = pg_events_account_owners,
    .list = pg_events_list,
    .get = pg_events_get,
    .latest = pg_events_latest,
    .count = pg_events_count,
    .destination_insert = pg_events_destination_insert,
    .destination_delete = pg_events_destination_delete,
    .cursor_advance = pg_events_cursor_advance,
    .cursor_rewind = pg_events_cursor_rewind,
    .destination_health = pg_events_destination_health,
    .destination_secret = pg_events_destination_secret,
    .destinations_list = pg_events_destinations_list,
    .destination_get = pg_events_destination_get,
    .destination_counts = pg_events_destination_counts,
    .delivery_put = pg_events_delivery_put,
    .delivery_delete = pg_events_delivery_delete,
    .delivery_redeliver = pg_events_delivery_redeliver,
    .deliveries_list = pg_events_deliveries_list,
    .purge = pg_events_purge,
};
