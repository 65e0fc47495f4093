/* store/pg_store.c: the PostgreSQL backend's writer side: open (URL, connection,
 * the writer's advisory lock, schema checks and migrations), load into the ledger,
 * and the ledger's lookups of committed transfers with a batch's prefetch. Batches
 * are written by pg_tx.c, reads by pg_read.c. Writer thread only.
 *
 * The same model as the SQLite backend: the account rows hold a balance snapshot as
 * of paycore_meta.accounts_as_of_seq, the transfers after it are replayed at load,
 * readers take committed balances from the shadow (store_shadow.c). A lookup costs
 * a network round trip here, so the writer names a batch's ids first
 * (store_prefetch) and they come back in one query. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_internal.h"

static const char *pg_location(const store_t *base) { return ((const pg_store_t *)base)->url_shown; }
static const char *pg_error_detail(const store_t *base) { return ((const pg_store_t *)base)->error_detail; }
static uint64_t pg_journal_head_seq(const store_t *base) { return ((const pg_store_t *)base)->journal_head_seq; }
static pc_status pg_failed(const store_t *base) { return ((const pg_store_t *)base)->failed; }

static bool pg_writable(const store_t *base) {
    const pg_store_t *store = (const pg_store_t *)base;
    return store->failed == PC_OK && store->writable;
}

static bool pg_handles(const char *location) { return store_location_is_url(location); }

/* ---- open ---- */

/* One try at the writer's lock: PC_OK (taken), PC_STORE_IN_USE, or an error. */
static pc_status writer_lock_try(pg_store_t *store) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%d, %d)", PG_WRITER_LOCK_KEY1, PG_WRITER_LOCK_KEY2);
    PGresult *result = pg_query(store->conn, sql, 0, NULL);
    if (result == NULL) return pg_fail(store, PC_STORE_OPEN_FAILED, "taking the writer's lock");
    bool taken = strcmp(PQgetvalue(result, 0, 0), "t") == 0;
    PQclear(result);
    return taken ? PC_OK : PC_STORE_IN_USE;
}

static void pause_ms(uint32_t ms) {
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* The lowest server backend pid holding lock (PG_WRITER_LOCK_KEY1, 'key2') in this
 * database, 0 when none: named in a refusal so that an operator can find it. */
static int64_t lock_holder_pid(pg_store_t *store, int key2) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce(min(pid), 0) FROM pg_locks WHERE locktype = 'advisory' AND granted"
             " AND classid = %d AND objid = %d AND database = (SELECT oid FROM pg_database WHERE datname ="
             " current_database())", PG_WRITER_LOCK_KEY1, key2);
    PGresult *result = pg_query(store->conn, sql, 0, NULL);
    int64_t pid = result != NULL ? pg_int(result, 0, 0) : 0;
    PQclear(result);
    return pid;
}

/* The lock of a writer that just stopped or died goes when its session ends, a moment
 * later: polls for STORE_WRITER_LOCK_GRACE_MS before the caller refuses. */
static pc_status writer_lock_grace(pg_store_t *store) {
    pc_status status = PC_STORE_IN_USE;
    for (uint32_t waited_ms = 0; status == PC_STORE_IN_USE && waited_ms < STORE_WRITER_LOCK_GRACE_MS;
         waited_ms += 100) {
        pause_ms(100);
        status = writer_lock_try(store);
    }
    return status;
}

/* A standby: polls until the holder's session ends (the server releases its lock) or
 * options.standby_continue says stop. */
static pc_status writer_lock_wait(pg_store_t *store) {
    fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"standby: another writer holds the writer's lock;"
            " polling every %d ms\"}\n", STORE_STANDBY_POLL_MS);
    pc_status status = PC_STORE_IN_USE;
    while (status == PC_STORE_IN_USE) {
        if (store->options.standby_continue != NULL && !store->options.standby_continue(store->options.standby_ctx)) {
            snprintf(store->error_detail, sizeof store->error_detail, "standby stopped before it took the lock");
            return PC_SHUTTING_DOWN;
        }
        pause_ms(STORE_STANDBY_POLL_MS);
        status = writer_lock_try(store);
    }
    if (status == PC_OK) fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"standby: took the writer's lock\"}\n");
    return status;
}

/* The one writer: PC_STORE_IN_USE naming the holder's backend pid when taken (a
 * standby waits for it instead). */
static pc_status writer_lock_take(pg_store_t *store) {
    pc_status status = writer_lock_try(store);
    if (status == PC_STORE_IN_USE && store->options.standby) status = writer_lock_wait(store);
    if (status == PC_STORE_IN_USE) status = writer_lock_grace(store);
    if (status != PC_STORE_IN_USE) return status;
    int64_t pid = lock_holder_pid(store, PG_WRITER_LOCK_KEY2);
    snprintf(store->error_detail, sizeof store->error_detail,
             "database in use by another paycore writer (its server backend pid %lld holds the writer's lock)",
             (long long)pid);
    return PC_STORE_IN_USE;
}

static pc_status meta_int(pg_store_t *store, const char *key, int64_t *value) {
    const char *params[] = {key};
    PGresult *result = pg_query(store->conn, "SELECT value FROM paycore_meta WHERE key = $1", 1, params);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "paycore_meta");
    pc_status status = PC_OK;
    char *end = NULL;
    if (PQntuples(result) != 1) {
        snprintf(store->error_detail, sizeof store->error_detail, "paycore_meta %s is missing", key);
        status = PC_STORE_CORRUPT;
    } else {
        *value = strtoll(PQgetvalue(result, 0, 0), &end, 10);
        if (end == PQgetvalue(result, 0, 0) || *end != '\0' || *value < 0) {
            snprintf(store->error_detail, sizeof store->error_detail, "paycore_meta %s is not a count", key);
            status = PC_STORE_CORRUPT;
        }
    }
    PQclear(result);
    return status;
}

static pc_status memory_init(pg_store_t *store) {
    store->shadow = store_shadow_new();
    if (store->shadow == NULL) return PC_NO_MEMORY;
    return store_dirty_init(&store->dirty);
}

/* Waits until no staged next part of an earlier writer of this database is still in
 * a transaction (pg_tx_begin_next): its COMMIT lands, or it is gone, before this
 * writer loads. At most STORE_PIPELINE_LOCK_WAIT_MS (lock_timeout): a holder past it
 * is a session the server has not ended (its node cut off), and the refusal names it. */
static pc_status pipeline_wait(pg_store_t *store) {
    char sql[200];
    snprintf(sql, sizeof sql, "BEGIN; SET LOCAL lock_timeout = %d; SELECT pg_advisory_xact_lock(%d, %d); COMMIT",
             STORE_PIPELINE_LOCK_WAIT_MS, PG_WRITER_LOCK_KEY1, PG_PIPELINE_LOCK_KEY2);
    PGresult *result = PQexec(store->conn, sql);
    const char *sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    bool timed_out = sqlstate != NULL && strcmp(sqlstate, "55P03") == 0; /* lock_not_available */
    bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    if (ok) return PC_OK;
    if (!timed_out) return pg_fail(store, PC_STORE_OPEN_FAILED, "waiting for the pipeline lock");
    (void)pg_exec_ok(store->conn, "ROLLBACK");
    snprintf(store->error_detail, sizeof store->error_detail,
             "database in use: a staged transaction of an earlier paycore writer (its server backend pid %lld)"
             " held the pipeline lock for more than %d ms; end that session (pg_terminate_backend) or wait"
             " until the server does", (long long)lock_holder_pid(store, PG_PIPELINE_LOCK_KEY2),
             STORE_PIPELINE_LOCK_WAIT_MS);
    return PC_STORE_IN_USE;
}

static pc_status open_steps(pg_store_t *store) {
    pc_status status = pg_connect_wait(store->url, &store->options, &store->conn, store->error_detail,
                                       sizeof store->error_detail);
    if (status == PC_OK) status = pg_settings_check(store->conn, store->error_detail, sizeof store->error_detail);
    if (status == PC_OK) status = writer_lock_take(store);
    if (status == PC_OK) status = pipeline_wait(store);
    if (status == PC_OK) {
        status = pg_schema_prepare(store->conn, store->options.create, store->error_detail,
                                   sizeof store->error_detail);
    }
    int64_t as_of = 0;
    if (status == PC_OK) status = meta_int(store, "accounts_as_of_seq", &as_of);
    store->accounts_as_of_seq = (uint64_t)as_of;
    if (status == PC_OK) status = memory_init(store);
    store->writable = status == PC_OK;
    return status;
}

static void pg_close(store_t *base) {
    pg_store_t *store = (pg_store_t *)base;
    if (store == NULL) return;
    pg_prefetch_clear(store);
    pg_events_discard(store);
    PQfinish(store->conn_next);
    PQfinish(store->conn); /* the writer's lock goes with the session */
    store_shadow_free(store->shadow);
    store_dirty_free(&store->dirty);
    store_bloom_free(&store->ids_bloom);
    free(store->lookup_scratch);
    free(store->url);
    free(store->url_shown);
    free(store);
}

static pc_status pg_open(store_t **out, const char *location, const store_options_t *options) {
    pg_store_t *store = calloc(1, sizeof *store);
    if (store == NULL) return PC_NO_MEMORY;
    store->base.ops = &store_pg_ops;
    if (options != NULL) store->options = *options;
    store->url = pc_strdup(location);
    store->url_shown = pg_url_shown(location);
    pc_status status = store->url && store->url_shown ? open_steps(store) : PC_NO_MEMORY;
    if (status != PC_OK) {
        pg_log_error("store open failed", pc_status_code(status), store->error_detail);
        pg_close(&store->base);
        return status;
    }
    *out = &store->base;
    return PC_OK;
}

static pc_status pg_journal_signer(store_t *base, uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES]) {
    pg_store_t *store = (pg_store_t *)base;
    PGresult *result = pg_query(store->conn, "SELECT public_key FROM journal_checkpoints ORDER BY seq DESC LIMIT 1",
                                0, NULL);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "journal signer");
    pc_status status = PC_NOT_FOUND;
    if (PQntuples(result) == 1) {
        status = pg_bytea(result, 0, 0, public_key, JOURNAL_PUBLIC_KEY_BYTES) ? PC_OK : PC_STORE_CORRUPT;
        if (status != PC_OK) snprintf(store->error_detail, sizeof store->error_detail, "malformed public key");
    }
    PQclear(result);
    return status;
}

/* ---- lookups ---- */

/* The ids are joined one by one to the id index (a nested loop: one probe an id),
 * not matched as "id = ANY(array)": on the hash index (schema v10) that is a bitmap
 * scan, and on transfer_failures' B-tree it sorts the array first, each two to three
 * times the loop's time for a batch of new ids. The array goes through a sub-select so
 * that the planner does not see its elements: given the batch's thousands of ids as a
 * constant it estimated each one against the column's statistics, and chose a
 * sequential scan of the whole table while the table was small enough. Hidden, the plan
 * is the index probes whatever the table's size, and planning costs nothing. */
#define FIND_IDS "unnest((SELECT $1::text[])) AS u(id)"
#define FIND_SQL                                                                                      \
    "SELECT " PG_TRANSFER_COLUMNS ", NULL FROM " FIND_IDS " JOIN (" PG_TRANSFERS_FROM ") ON t.id = u.id" \
    " UNION ALL SELECT f.timestamp, f.id, '', '', 0, '', 0, 0, NULL, 0, NULL, 0, f.result FROM " FIND_IDS \
    " JOIN transfer_failures f ON f.id = u.id"

/* A row of FIND_SQL as a record, malloc'ed with its metadata after it. */
static ledger_transfer_record_t *record_from_row(const PGresult *result, int row) {
    const char *metadata = PQgetisnull(result, row, 12) && !PQgetisnull(result, row, 10)
                               ? PQgetvalue(result, row, 10) : NULL;
    size_t metadata_bytes = metadata != NULL ? strlen(metadata) + 1 : 0;
    ledger_transfer_record_t *out = malloc(sizeof *out + metadata_bytes);
    if (out == NULL) return NULL;
    memset(out, 0, sizeof *out);
    if (!PQgetisnull(result, row, 12)) {
        if (!pc_status_from_code(PQgetvalue(result, row, 12), &out->failure)) out->failure = PC_INTERNAL;
        return out;
    }
    pg_transfer_from_row(result, row, &out->transfer);
    out->pending_state = (ledger_pending_state)pg_int(result, row, 11);
    out->failure = PC_OK;
    out->transfer.metadata_json = NULL;
    if (metadata != NULL) {
        memcpy(out + 1, metadata, metadata_bytes);
        out->transfer.metadata_json = (const char *)(out + 1);
    }
    return out;
}

void pg_prefetch_clear(pg_store_t *store) {
    for (uint32_t i = 0; i < store->prefetched_count; i++) free(store->prefetched[i].found);
    free(store->prefetched);
    free(store->prefetched_slots);
    free(store->prefetched_ids);
    store->prefetched = NULL;
    store->prefetched_slots = NULL;
    store->prefetched_ids = NULL;
    store->prefetched_count = 0;
    store->prefetched_capacity = 0;
}

/* The entry of 'id' (its hash 'hash'), or NULL. */
static pg_prefetched_t *prefetched_find(const pg_store_t *store, const char *id, uint64_t hash) {
    uint32_t mask = store->prefetched_capacity - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        uint32_t slot = store->prefetched_slots[i];
        if (slot == 0) return NULL;
        pg_prefetched_t *entry = &store->prefetched[slot - 1];
        if (entry->hash == hash && strcmp(entry->id, id) == 0) return entry;
    }
}

/* Adds 'id' (stored at 'id') unless it is there (a batch may name an id twice). */
static void prefetched_add(pg_store_t *store, const char *id, uint64_t hash) {
    uint32_t mask = store->prefetched_capacity - 1;
    uint32_t i = (uint32_t)hash & mask;
    for (; store->prefetched_slots[i] != 0; i = (i + 1) & mask) {
        const pg_prefetched_t *entry = &store->prefetched[store->prefetched_slots[i] - 1];
        if (entry->hash == hash && strcmp(entry->id, id) == 0) return;
    }
    store->prefetched[store->prefetched_count] = (pg_prefetched_t){.id = id, .hash = hash};
    store->prefetched_slots[i] = ++store->prefetched_count;
}

static uint64_t id_hash(const char *id, size_t bytes) { return pc_hash64(id, bytes); }

/* False when the id is certainly in neither transfers nor transfer_failures: the ids'
 * bloom filter is made (after load) and never had it. */
static bool id_maybe_stored(const pg_store_t *store, uint64_t hash) {
    return !store_bloom_made(&store->ids_bloom) || store_bloom_maybe(&store->ids_bloom, hash);
}

void pg_bloom_id_add(pg_store_t *store, const char *id) {
    if (store_bloom_made(&store->ids_bloom)) store_bloom_add(&store->ids_bloom, id_hash(id, strlen(id)));
}

/* The ids as one text[] in the server's binary form (array_recv: dimensions, then
 * each element's length and bytes), read without parsing or unquoting. Only ids
 * paycore accepts (pc_id_valid: ASCII) are named; any other string is left to a
 * lookup of its own. PG_OID_TEXT_ARRAY: the parameter's type. */
#define PG_OID_TEXT 25
#define PG_OID_TEXT_ARRAY 1009
static size_t put_be32(uint8_t *out, uint32_t value) {
    out[0] = (uint8_t)(value >> 24), out[1] = (uint8_t)(value >> 16), out[2] = (uint8_t)(value >> 8);
    out[3] = (uint8_t)value;
    return 4;
}

static size_t ids_array_header(uint8_t *out, uint32_t count) {
    size_t at = put_be32(out, 1);         /* dimensions */
    at += put_be32(out + at, 0);          /* no nulls */
    at += put_be32(out + at, PG_OID_TEXT);
    at += put_be32(out + at, count);      /* the dimension's length */
    return at + put_be32(out + at, 1);    /* its lower bound */
}

/* A writer's lookup whose connection broke fails the store for good, as a failed
 * write does: a batch that writes nothing (a leg whose events were all refused) would
 * otherwise never notice, and the writer would refuse every batch without exiting to
 * reconnect (a shard restarted under a set). */
static pc_status lookup_failed(pg_store_t *store, const char *what) {
    pc_status status = pg_fail(store, PC_STORE_READ_FAILED, what);
    if (PQstatus(store->conn) != CONNECTION_OK) store->failed = PC_STORE_FAILED;
    return status;
}

/* The named ids, each once, into the store's table and a text[] for FIND_SQL
 * ('array', with room for every id); the array's bytes. *half_bytes and *half_count:
 * where the elements of the first half of the named ids end, and how many they are. */
static size_t prefetch_table(pg_store_t *store, const char *const *ids, uint32_t id_count, uint8_t *array,
                             size_t *half_bytes, uint32_t *half_count) {
    size_t array_bytes = 20; /* the header, once the count is known */
    char *text = store->prefetched_ids;
    *half_bytes = array_bytes;
    *half_count = 0;
    for (uint32_t i = 0; i < id_count; i++) {
        if (i == id_count / 2) {
            *half_bytes = array_bytes;
            *half_count = store->prefetched_count;
        }
        if (!pc_id_valid(ids[i])) continue;
        size_t length = strlen(ids[i]);
        uint64_t hash = id_hash(ids[i], length);
        if (!id_maybe_stored(store, hash)) continue; /* new: the lookup answers without the server */
        memcpy(text, ids[i], length + 1);
        uint32_t before = store->prefetched_count;
        prefetched_add(store, text, hash);
        if (store->prefetched_count == before) continue;
        text += length + 1;
        array_bytes += put_be32(array + array_bytes, (uint32_t)length);
        memcpy(array + array_bytes, ids[i], length);
        array_bytes += length;
    }
    (void)ids_array_header(array, store->prefetched_count);
    return array_bytes;
}

/* FIND_SQL's rows into the store's table; false on a missing or failed result (cleared). */
static bool prefetch_take(pg_store_t *store, PGresult *result, pc_status *status) {
    if (result == NULL || PQresultStatus(result) != PGRES_TUPLES_OK) {
        PQclear(result);
        return false;
    }
    for (int row = 0; row < PQntuples(result); row++) {
        const char *id = PQgetvalue(result, row, 1);
        pg_prefetched_t *entry = prefetched_find(store, id, id_hash(id, strlen(id)));
        if (entry == NULL || entry->found != NULL) continue; /* an id is in one table at most */
        entry->found = record_from_row(result, row);
        if (entry->found == NULL) *status = PC_NO_MEMORY;
    }
    PQclear(result);
    return true;
}

static PGresult *find_exec(PGconn *conn, const uint8_t *array, size_t array_bytes) {
    const Oid types[] = {PG_OID_TEXT_ARRAY};
    const char *values[] = {(const char *)array};
    const int lengths[] = {(int)array_bytes}, formats[] = {1};
    return PQexecParams(conn, FIND_SQL, 1, types, values, lengths, formats, 0);
}

/* The second half of the ids (the elements after 'half_bytes' of 'array') sent on the
 * second connection, when it is there and idle (between batches: it sees what the
 * writer's connection sees, every batch before this one committed), so that the two
 * halves are looked up on two backends at once; 'array' keeps the first half. False
 * when not sent: 'array' is then untouched. */
static bool prefetch_send_half(pg_store_t *store, uint8_t *array, size_t array_bytes, size_t half_bytes,
                               uint32_t half_count) {
    PGconn *next = store->conn_next;
    uint32_t rest = store->prefetched_count - half_count;
    if (next == NULL || PQstatus(next) != CONNECTION_OK || PQtransactionStatus(next) != PQTRANS_IDLE ||
        half_count == 0 || rest == 0) {
        return false;
    }
    size_t rest_bytes = 20 + array_bytes - half_bytes;
    uint8_t *second = malloc(rest_bytes);
    if (second == NULL) return false;
    (void)ids_array_header(second, rest);
    memcpy(second + 20, array + half_bytes, array_bytes - half_bytes);
    const Oid types[] = {PG_OID_TEXT_ARRAY};
    const char *values[] = {(const char *)second};
    const int lengths[] = {(int)rest_bytes}, formats[] = {1};
    bool sent = PQsendQueryParams(next, FIND_SQL, 1, types, values, lengths, formats, 0) == 1;
    free(second);
    if (sent) (void)ids_array_header(array, half_count);
    return sent;
}

/* The second half's answer; on failure the second connection is dropped (made again
 * by the next pipelined part) and false returned. */
static bool prefetch_take_half(pg_store_t *store, pc_status *status) {
    PGresult *result = PQgetResult(store->conn_next), *extra;
    bool ok = prefetch_take(store, result, status);
    while ((extra = PQgetResult(store->conn_next)) != NULL) PQclear(extra);
    if (!ok) {
        PQfinish(store->conn_next);
        store->conn_next = NULL;
    }
    return ok;
}

/* Fetches every named id (transfers and burned ids) in one query (two halves at once
 * when the writer has its second connection) and keeps the answers, found or not,
 * until the batch ends (pg_tx.c clears them): a table by the id's hash, made as the
 * ids are named. */
static pc_status pg_prefetch(store_t *base, const char *const *ids, uint32_t id_count) {
    pg_store_t *store = (pg_store_t *)base;
    PC_ASSERT(!store->conn_copying);
    pg_prefetch_clear(store);
    uint32_t capacity = 64;
    while (capacity < 2 * (uint64_t)id_count) capacity *= 2;
    store->prefetched = malloc(sizeof *store->prefetched * (id_count > 0 ? id_count : 1));
    store->prefetched_slots = calloc(capacity, sizeof *store->prefetched_slots);
    store->prefetched_ids = malloc((size_t)id_count * PC_ID_SIZE + 1);
    store->prefetched_capacity = capacity;
    uint8_t *array = malloc((size_t)id_count * (PC_ID_SIZE + 4) + 20);
    if (store->prefetched == NULL || store->prefetched_slots == NULL || store->prefetched_ids == NULL ||
        array == NULL) {
        free(array);
        pg_prefetch_clear(store);
        return PC_NO_MEMORY;
    }
    size_t half_bytes;
    uint32_t half_count;
    size_t array_bytes = prefetch_table(store, ids, id_count, array, &half_bytes, &half_count);
    if (store->prefetched_count == 0) {
        free(array);
        pg_prefetch_clear(store);
        return PC_OK;
    }
    bool halves = prefetch_send_half(store, array, array_bytes, half_bytes, half_count);
    pc_status status = PC_OK;
    bool ok = prefetch_take(store, find_exec(store->conn, array, halves ? half_bytes : array_bytes), &status);
    if (halves && !prefetch_take_half(store, &status) && ok) {
        /* the second connection failed: its half on the writer's own */
        (void)ids_array_header(array, store->prefetched_count - half_count);
        memmove(array + 20, array + half_bytes, array_bytes - half_bytes);
        ok = prefetch_take(store, find_exec(store->conn, array, 20 + array_bytes - half_bytes), &status);
    }
    free(array);
    if (!ok) {
        pg_prefetch_clear(store);
        return lookup_failed(store, "prefetch");
    }
    if (status != PC_OK) pg_prefetch_clear(store);
    return status;
}

/* The ledger's lookup: the prefetched answer when the id was named, else a query. */
static pc_status source_transfer_find(void *ctx, const char *id, ledger_transfer_record_t *out) {
    pg_store_t *store = ctx;
    uint64_t hash = id_hash(id, strlen(id));
    if (!id_maybe_stored(store, hash)) return PC_NOT_FOUND;
    const pg_prefetched_t *entry = store->prefetched_count > 0 ? prefetched_find(store, id, hash) : NULL;
    if (entry != NULL) {
        if (entry->found != NULL) *out = *entry->found;
        return entry->found != NULL ? PC_OK : PC_NOT_FOUND;
    }
    char array[PC_ID_SIZE + 8];
    if (!pc_id_valid(id)) return PC_NOT_FOUND; /* never stored */
    snprintf(array, sizeof array, "{\"%s\"}", id);
    const char *params[] = {array};
    /* while a pipelined first part's rows go in, its connection is a thread's */
    PC_ASSERT(!store->conn_copying || store->conn_next != NULL);
    PGresult *result = pg_query(store->conn_copying ? store->conn_next : store->conn, FIND_SQL, 1, params);
    if (result == NULL) return lookup_failed(store, "transfer lookup");
    pc_status status = PC_NOT_FOUND;
    if (PQntuples(result) > 0) {
        free(store->lookup_scratch);
        store->lookup_scratch = record_from_row(result, 0);
        status = store->lookup_scratch != NULL ? PC_OK : PC_NO_MEMORY;
        if (status == PC_OK) *out = *store->lookup_scratch;
    }
    PQclear(result);
    return status;
}

static ledger_source_t pg_source(store_t *base) { return (ledger_source_t){source_transfer_find, base}; }

/* ---- load ---- */

static pc_status load_head(pg_store_t *store, journal_entry_t *head) {
    memset(head, 0, sizeof *head);
    PGresult *result = pg_query(store->conn, "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1", 0, NULL);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "load journal head");
    pc_status status = PC_OK;
    if (PQntuples(result) == 1) {
        head->seq = (uint64_t)pg_int(result, 0, 0);
        if (!pg_bytea(result, 0, 1, head->hash, JOURNAL_HASH_BYTES) || head->seq == 0) {
            snprintf(store->error_detail, sizeof store->error_detail, "journal head: malformed row");
            status = PC_STORE_CORRUPT;
        }
    }
    PQclear(result);
    if (status == PC_OK && store->accounts_as_of_seq > head->seq) {
        snprintf(store->error_detail, sizeof store->error_detail,
                 "accounts_as_of_seq %" PRIu64 " is past the journal head %" PRIu64, store->accounts_as_of_seq,
                 head->seq);
        status = PC_STORE_CORRUPT;
    }
    store->journal_head_seq = head->seq;
    return status;
}

static pc_status load_accounts(pg_store_t *store, ledger_t *ledger) {
    PGresult *result = pg_query(store->conn, "SELECT " PG_ACCOUNT_COLUMNS " FROM accounts ORDER BY no", 0, NULL);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "load accounts");
    pc_status status = PC_OK;
    for (int row = 0; status == PC_OK && row < PQntuples(result); row++) {
        ledger_account_t account;
        pg_account_from_row(result, row, &account);
        if (pg_int(result, row, 10) != row) {
            snprintf(store->error_detail, sizeof store->error_detail, "account numbers not dense at %s", account.id);
            status = PC_STORE_CORRUPT;
            break;
        }
        status = ledger_load_account(ledger, &account);
    }
    PQclear(result);
    return status;
}

/* The transfers after the snapshot found by the primary key's range: every transfer
 * of a later batch has a timestamp above each earlier batch's (one ledger clock a
 * store, batches applied in seq order), so above the last timestamp of the newest
 * batch at or below the snapshot that has one (a batch without rows records 0). A walk
 * of the journal's key down from it. (A transfer row has no batch_seq since schema
 * version 15: this range is what says which batch it is in.) */
static pc_status replay_floor(pg_store_t *store, const char *as_of, int64_t *floor) {
    const char *params[] = {as_of};
    PGresult *result = pg_query(store->conn, "SELECT coalesce((SELECT timestamp_last FROM journal WHERE seq <= $1"
                                             " AND timestamp_last > 0 ORDER BY seq DESC LIMIT 1), 0)", 1, params);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "replay floor");
    *floor = pg_int(result, 0, 0);
    PQclear(result);
    return PC_OK;
}

/* Re-derives balances from the transfers committed after the balance snapshot. */
static pc_status replay_after_snapshot(pg_store_t *store, ledger_t *ledger) {
    char as_of[24], floor_ts[24];
    snprintf(as_of, sizeof as_of, "%" PRIu64, store->accounts_as_of_seq);
    int64_t floor = 0;
    pc_status floor_status = replay_floor(store, as_of, &floor);
    if (floor_status != PC_OK) return floor_status;
    snprintf(floor_ts, sizeof floor_ts, "%" PRId64, floor);
    const char *params[] = {floor_ts};
    PGresult *result = pg_query(store->conn, "SELECT " PG_TRANSFER_COLUMNS " FROM " PG_TRANSFERS_FROM
                                             " WHERE t.timestamp > $1 ORDER BY t.timestamp", 1, params);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "replay");
    pc_status status = PC_OK;
    for (int row = 0; status == PC_OK && row < PQntuples(result); row++) {
        ledger_transfer_t record;
        pg_transfer_from_row(result, row, &record);
        int64_t pending_amount;
        status = store_replay_pending_amount(&(ledger_source_t){source_transfer_find, store}, &record,
                                         &pending_amount, store->error_detail, sizeof store->error_detail);
        if (status == PC_OK) status = ledger_load_replay(ledger, &record, pending_amount);
        if (status != PC_OK) break;
        store_dirty_mark(&store->dirty, ledger_account_index(ledger, ledger_account_find(ledger, record.debit_account_id)));
        store_dirty_mark(&store->dirty, ledger_account_index(ledger, ledger_account_find(ledger, record.credit_account_id)));
    }
    PQclear(result);
    return status;
}

static pc_status load_pendings(pg_store_t *store, ledger_t *ledger) {
    PGresult *result = pg_query(store->conn, "SELECT " PG_TRANSFER_COLUMNS " FROM " PG_TRANSFERS_FROM
                                             " WHERE t.pending_state = 1",
                                0, NULL);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "load pending");
    pc_status status = PC_OK;
    for (int row = 0; status == PC_OK && row < PQntuples(result); row++) {
        ledger_transfer_t pending;
        pg_transfer_from_row(result, row, &pending);
        status = ledger_load_pending(ledger, &pending);
    }
    PQclear(result);
    return status;
}

static pc_status load_clock(pg_store_t *store, ledger_t *ledger) {
    PGresult *result = pg_query(store->conn,
                                "SELECT greatest((SELECT coalesce(max(timestamp), 0) FROM transfers),"
                                " (SELECT coalesce(max(timestamp), 0) FROM accounts),"
                                " (SELECT coalesce(max(timestamp), 0) FROM transfer_failures),"
                                " (SELECT coalesce(max(timestamp_last), 0) FROM journal))", 0, NULL);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "load clock");
    ledger_load_clock(ledger, (uint64_t)pg_int(result, 0, 0));
    PQclear(result);
    return PC_OK;
}

/* A prepared transaction of this database (a global transaction's leg that recovery
 * has not ended yet) may still commit rows the filter never saw: then no filter.
 * *ids_estimate: the planner's count of the ids' rows, to size the filter. */
static pc_status ids_survey(pg_store_t *store, int64_t *prepared, int64_t *ids_estimate) {
    PGresult *result = pg_query(store->conn, "SELECT (SELECT count(*) FROM pg_prepared_xacts WHERE database ="
                                             " current_database()), (SELECT coalesce(sum(greatest(reltuples, 0)),"
                                             " 0)::bigint FROM pg_class WHERE oid IN ('transfers'::regclass,"
                                             " 'transfer_failures'::regclass))", 0, NULL);
    if (result == NULL) return pg_fail(store, PC_STORE_READ_FAILED, "prepared transactions");
    *prepared = pg_int(result, 0, 0);
    *ids_estimate = pg_int(result, 0, 1);
    PQclear(result);
    return PC_OK;
}

/* The first level's bits: room for twice the estimate, 64Ki ids at least (it grows). */
static uint64_t bloom_first_bits(int64_t ids_estimate) {
    uint64_t keys = ids_estimate > 32768 ? 2 * (uint64_t)ids_estimate : 65536;
    uint64_t bits = 1u << 20;
    while (bits < keys * STORE_BLOOM_BITS_PER_KEY && bits < STORE_BLOOM_BITS) bits *= 2;
    return bits;
}

/* Each line of the ids' COPY into the filter; false when one is not an id as stored
 * (text COPY escapes a backslash or a control character: such an id's hash would not
 * be its own, so no filter then). */
static bool bloom_lines_take(pg_store_t *store, bool *usable) {
    char *line;
    int bytes;
    while ((bytes = PQgetCopyData(store->conn, &line, 0)) > 0) {
        size_t length = bytes > 0 && line[bytes - 1] == '\n' ? (size_t)bytes - 1 : (size_t)bytes;
        if (memchr(line, '\\', length) != NULL) *usable = false;
        if (*usable) store_bloom_add(&store->ids_bloom, id_hash(line, length));
        PQfreemem(line);
    }
    PGresult *result;
    bool ok = bytes == -1;
    while ((result = PQgetResult(store->conn)) != NULL) {
        if (PQresultStatus(result) != PGRES_COMMAND_OK) ok = false;
        PQclear(result);
    }
    return ok;
}

/* The ids' bloom filter (store_bloom.h): every transfer and burned id, streamed, and
 * then each id this store writes (pg_tx.c). The writer's lock is held: no one else
 * writes ids. Without it (out of memory, a prepared transaction, an id COPY escapes)
 * every id is looked up, as before the filter. */
static pc_status bloom_load(pg_store_t *store) {
    int64_t prepared = 0, ids_estimate = 0;
    store_bloom_free(&store->ids_bloom);
    pc_status status = ids_survey(store, &prepared, &ids_estimate);
    if (status != PC_OK || prepared > 0 || !store_bloom_init(&store->ids_bloom, bloom_first_bits(ids_estimate), true)) {
        return status;
    }
    PGresult *result = PQexec(store->conn, "COPY (SELECT id FROM transfers UNION ALL SELECT id FROM"
                                           " transfer_failures) TO STDOUT");
    bool copying = PQresultStatus(result) == PGRES_COPY_OUT;
    PQclear(result);
    bool usable = true;
    bool ok = copying && bloom_lines_take(store, &usable);
    if (!ok || !usable) store_bloom_free(&store->ids_bloom);
    return ok ? PC_OK : pg_fail(store, PC_STORE_READ_FAILED, "load ids");
}

static pc_status pg_load(store_t *base, ledger_t *ledger, journal_entry_t *head) {
    pg_store_t *store = (pg_store_t *)base;
    /* Read again: between open and load, a shard's recovery may have committed a
     * prepared batch that wrote the balance snapshot (every 64th): the account rows
     * are then as of that batch, and the value read at open would replay it twice. */
    int64_t as_of = 0;
    pc_status status = meta_int(store, "accounts_as_of_seq", &as_of);
    store->accounts_as_of_seq = (uint64_t)as_of;
    if (status == PC_OK) status = load_head(store, head);
    if (status == PC_OK) status = load_accounts(store, ledger);
    if (status == PC_OK) status = replay_after_snapshot(store, ledger);
    if (status == PC_OK) status = load_pendings(store, ledger);
    if (status == PC_OK) status = load_clock(store, ledger);
    if (status == PC_OK) status = bloom_load(store);
    for (uint32_t i = 0; status == PC_OK && i < ledger_account_count(ledger); i++) {
        store_shadow_publish(store->shadow, i, &ledger_account_at(ledger, i)->balances);
    }
    if (status == PC_OK) store_shadow_loaded(store->shadow, head->seq); /* pages as of the head: from memory */
    return status;
}

const store_backend_ops_t store_pg_ops = {
    .name = "postgres",
    .handles = pg_handles,
    .open = pg_open,
    .close = pg_close,
    .location = pg_location,
    .error_detail = pg_error_detail,
    .load = pg_load,
    .journal_signer = pg_journal_signer,
    .journal_head_seq = pg_journal_head_seq,
    .source = pg_source,
    .prefetch = pg_prefetch,
    .tx_begin = pg_tx_begin,
    .tx_write_changes = pg_tx_write_changes,
    .tx_write_journal = pg_tx_write_journal,
    .tx_commit = pg_tx_commit,
    .tx_rollback = pg_tx_rollback,
    .tx_begin_next = pg_tx_begin_next,
    .balance_snapshot = pg_balance_snapshot,
    .failed = pg_failed,
    .writable = pg_writable,
    .probe = pg_probe,
    .reader_open = pg_reader_open,
    .reader_close = pg_reader_close,
    .read_account = pg_read_account,
    .read_transfer = pg_read_transfer,
    .list_accounts = pg_list_accounts,
    .list_accounts_granted = pg_list_accounts_granted,
    .list_account_transfers = pg_list_account_transfers,
    .list_history = pg_list_history,
    .verify_open = store_pg_verify_open,
    .api = &store_pg_api_ops,
    .events = &store_pg_events_ops,
    .payments = &store_pg_payments_ops,
    .two_phase = &store_pg_two_phase_ops,
};
