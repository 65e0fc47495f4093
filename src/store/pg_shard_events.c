/* store/pg_shard_events.c: what the set's outbox relay (src/events/shards.c,
 * docs/scaleout.md §6) needs of PostgreSQL: a shard's outbox rows with their owners,
 * and the home shard's cursor per shard ("every event of shard s up to this seq is in
 * the home outbox"), a paycore_meta row written in the transaction that copies them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "store/store_backend.h"
#include "store/store_shard.h"

static void relayed_key(uint32_t shard, char *key, size_t key_bytes) {
    snprintf(key, key_bytes, "events_relayed.%u", shard);
}

static pc_status relayed_query(PGconn *conn, uint32_t shard, uint64_t *seq, pc_status failure) {
    char key[48];
    relayed_key(shard, key, sizeof key);
    const char *params[] = {key};
    PGresult *result = pg_query(conn, "SELECT coalesce((SELECT value::bigint FROM paycore_meta WHERE key = $1), 0)",
                                1, params);
    if (result == NULL) return failure;
    *seq = (uint64_t)pg_int(result, 0, 0);
    PQclear(result);
    return PC_OK;
}

pc_status store_shard_relayed_get(store_tx_t *tx, uint32_t shard, uint64_t *seq_out) {
    if (!store_supports_two_phase(tx->store)) return PC_STORE_UNSUPPORTED;
    return relayed_query(pg_tx_conn(tx), shard, seq_out, PC_STORE_COMMIT_FAILED);
}

pc_status store_shard_relayed_read(store_reader_t *reader, uint32_t shard, uint64_t *seq_out) {
    return relayed_query(pg_reader_conn(reader), shard, seq_out, PC_STORE_READ_FAILED);
}

pc_status store_shard_relayed_set(store_tx_t *tx, uint32_t shard, uint64_t seq) {
    if (!store_supports_two_phase(tx->store)) return PC_STORE_UNSUPPORTED;
    char key[48];
    relayed_key(shard, key, sizeof key);
    PG_U64(value, seq);
    const char *params[] = {key, value};
    return pg_write(pg_tx_conn(tx), "INSERT INTO paycore_meta VALUES($1, $2) ON CONFLICT (key) DO UPDATE SET"
                    " value = excluded.value", 2, params, NULL);
}

/* The owners column: key ids joined by ',' (ids never hold one). */
static uint32_t owners_split(char *text, const char **owners, uint32_t owners_max) {
    uint32_t count = 0;
    for (char *at = text; *at != '\0' && count < owners_max;) {
        owners[count++] = at;
        char *comma = strchr(at, ',');
        if (comma == NULL) break;
        *comma = '\0';
        at = comma + 1;
    }
    return count;
}

pc_status store_shard_events_after(store_reader_t *reader, uint64_t after_seq, uint32_t limit,
                                   store_event_fn fn, void *ctx, bool *has_more) {
    PG_U64(after, after_seq);
    PG_U64(rows, (uint64_t)limit + 1);
    const char *params[] = {after, rows};
    PGresult *result = pg_query(pg_reader_conn(reader),
        "SELECT e.seq, e.type, e.object_id, e.object_seq, e.body, concat_ws(',', e.owner, (SELECT"
        " string_agg(o.owner, ',' ORDER BY o.owner) FROM event_owners o WHERE o.seq = e.seq)) FROM events e"
        " WHERE e.seq > $1"
        " ORDER BY e.seq LIMIT $2", 2, params);
    *has_more = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    int count = PQntuples(result);
    *has_more = (uint32_t)count > limit;
    for (int row = 0; row < count && (uint32_t)row < limit; row++) {
        const char *owners[EVENTS_OWNERS_MAX];
        store_event_t event = {.seq = (uint64_t)pg_int(result, row, 0), .type = PQgetvalue(result, row, 1),
                               .object_id = PQgetvalue(result, row, 2),
                               .object_seq = (uint32_t)pg_int(result, row, 3), .body = PQgetvalue(result, row, 4),
                               .body_bytes = (size_t)PQgetlength(result, row, 4), .owners = owners};
        event.owner_count = owners_split(PQgetvalue(result, row, 5), owners, EVENTS_OWNERS_MAX);
        fn(&event, ctx);
    }
    PQclear(result);
    return PC_OK;
}
