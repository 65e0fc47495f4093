/* api/idempotency.c: how long stored Idempotency-Key replies live and how much room
 * they may take.
 *
 * Retention: a reply is kept --idempotency-retention-h hours (at least 24, as Stripe
 * does). An expired reply is treated as absent at once (the key may run again and
 * its new reply replaces the old row), whether or not it was purged yet, so what a
 * client sees never depends on the purge's progress.
 *
 * Purge: a background thread deletes expired rows through the writer (the only writer
 * of the file), as small commands of at most API_IDEM_PURGE_ROWS_MAX rows and
 * API_IDEM_PURGE_BYTES_MAX bytes each, one at a time, and only while the writer's
 * queue is short: it never holds the write lock long and yields to requests. While
 * chunks come full the next goes at once: expired rows still take room, so the purge
 * must delete them as fast as replies are stored (10,000 a second at 5,000 payments/s).
 * It deletes only expired rows, however short the room.
 *
 * Room: the stored bytes in total (usage.c) are bounded by --idempotency-max-bytes;
 * each key's by --idempotency-key-max-bytes, a fair share that holds only once the
 * room is short (API_IDEM_ROOM_SHORT_PERCENT full), so one busy key may use what the
 * others leave. Past the total, or past its share in a short room, a request that
 * would store a new reply is refused with 503 idempotency_storage_full (and
 * Retry-After); replays of stored replies, reused keys (409) and requests without a
 * key still run. A bound is checked before the request runs, so it may be passed by
 * the replies of requests already running (at most one reply each).
 *
 * Index: the keys that have a stored row are held in memory (store/idem_index.h),
 * loaded at start from the stored replies (the payments layer adds the lookups of keys
 * it wrote before a payment's key was kept in its reply row), added to as a reply is
 * stored (inside its transaction, before the commit) and
 * taken from once a purge committed: a request with a key the index does not hold
 * reads nothing from the store (submit.c). Past --idempotency-index-max-keys every key
 * is read from the store again, until the purge brought the rows back under the bound:
 * then the purge thread rebuilds the index from the store (index_rebuild below).
 *
 * Clock: PAYCORE_TEST_CLOCK_OFFSET_S (tests only) moves this module's clock forward,
 * so that a test can age replies by a day without waiting one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "payments/payments.h"
#include "obs/obs.h"
#include "store/store_api.h"

#define NS_PER_HOUR (3600ull * 1000000000ull)
#define PURGE_IDLE_MS 60000       /* nothing left to purge: look again a minute later */
#define PURGE_BUSY_MS 0           /* a full chunk was purged: the next one at once (the purge
                                     must delete rows as fast as they are stored) */
#define PURGE_SOON_MS 50          /* a part chunk: the rows behind it were not due yet */
#define PURGE_DEFER_MS 200        /* the writer is busy: ask again shortly */

uint64_t api_idem_now_ns(const api_server_t *server) {
    return pc_wall_ns() + server->idem_clock_offset_ns;
}

static uint64_t retention_ns(const api_server_t *server) {
    return (uint64_t)server->config.idempotency_retention_h * NS_PER_HOUR;
}

bool api_idem_expired(const api_server_t *server, uint64_t created_ns) {
    uint64_t now_ns = api_idem_now_ns(server);
    return now_ns >= created_ns && now_ns - created_ns >= retention_ns(server);
}

bool api_idem_room(api_server_t *server, const char *key_id) {
    return api_usage_idem_room(&server->usage, key_id, server->config.idempotency_key_bytes_max,
                               server->config.idempotency_bytes_max);
}

pc_status api_idem_store(api_request_t *req, store_tx_t *tx, const char *body, size_t body_bytes) {
    return api_idem_store_status(req, tx, req->http_status, body, body_bytes);
}

pc_status api_idem_store_status(api_request_t *req, store_tx_t *tx, int http_status, const char *body,
                                size_t body_bytes) {
    store_api_idem_t record = {.http_status = http_status,
                               .created_ns = api_idem_now_ns(req->server),
                               .body = (char *)body,
                               .body_bytes = body_bytes,
                               .absent_known = req->idem_new};
    memcpy(record.request_hash, req->idem_hash, sizeof record.request_hash);
    uint64_t replaced_bytes = 0;
    pc_status status = store_api_idem_put(tx, req->caller.id, req->idem_key, &record, &replaced_bytes);
    if (status != PC_OK) return status;
    req->idem_bytes_delta += (int64_t)record.row_bytes - (int64_t)replaced_bytes; /* a payment stores twice */
    /* a new row (none replaced): in the index before it can commit */
    if (replaced_bytes == 0) idem_index_add(req->server->idem_index, req->caller.id, req->idem_key);
    req->idem_new = false; /* a second store of this request replaces this row */
    return PC_OK;
}

void api_idem_committed(api_request_t *req) {
    api_usage_idem_add(&req->server->usage, req->caller.id, req->idem_bytes_delta);
    req->idem_bytes_delta = 0;
}

/* ---- the purge ---- */

typedef struct {
    writer_cmd_t cmd;             /* first: the writer hands this back to purge_in_tx */
    uint64_t before_ns;
    uint32_t row_count;
    char key_ids[API_IDEM_PURGE_ROWS_MAX][PC_ID_SIZE];
    char idempotency_keys[API_IDEM_PURGE_ROWS_MAX][API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
    uint64_t row_bytes[API_IDEM_PURGE_ROWS_MAX];
} purge_job;

static void purge_row(const char *key_id, const char *idempotency_key, uint64_t row_bytes, void *ctx) {
    purge_job *job = ctx;
    PC_ASSERT(job->row_count < API_IDEM_PURGE_ROWS_MAX);
    pc_str_copy(job->key_ids[job->row_count], PC_ID_SIZE, key_id);
    pc_str_copy(job->idempotency_keys[job->row_count], API_IDEMPOTENCY_KEY_BYTES_MAX + 1, idempotency_key);
    job->row_bytes[job->row_count++] = row_bytes;
}

/* Writer thread, inside a batch transaction. */
static pc_status purge_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    purge_job *job = (purge_job *)cmd;
    job->row_count = 0;
    return store_api_idem_purge(tx, job->before_ns, API_IDEM_PURGE_ROWS_MAX,
                                API_IDEM_PURGE_BYTES_MAX, purge_row, job);
}

/* One chunk through the writer; the number of rows purged (0 on a failed commit). */
static uint32_t purge_chunk(api_server_t *server, purge_job *job) {
    memset(&job->cmd, 0, sizeof job->cmd);
    job->cmd.kind = WRITER_CMD_EXEC;
    job->cmd.in_transaction = purge_in_tx;
    job->before_ns = api_idem_now_ns(server) - retention_ns(server);
    pc_status status = writer_submit_wait(server->writer, &job->cmd);
    if (status != PC_OK) {
        if (status != PC_SHUTTING_DOWN) {
            obs_logf(OBS_LEVEL_WARN, "idempotency purge: %s (retried later)", pc_status_code(status));
        }
        return 0;
    }
    for (uint32_t i = 0; i < job->row_count; i++) { /* committed: the rows are gone */
        api_usage_idem_add(&server->usage, job->key_ids[i], -(int64_t)job->row_bytes[i]);
        idem_index_remove(server->idem_index, job->key_ids[i], job->idempotency_keys[i]);
    }
    obs_metrics_idempotency_purged(job->row_count);
    return job->row_count;
}

/* ---- the index's rebuild (store/idem_index.h, "Recovery") ---- */

/* A scan of the stored keys into the index (and, at start, each API key's room). */
typedef struct {
    idem_index_scan_t scan;
    api_usage_t *usage; /* NULL: the room is known already (a rebuild) */
} index_load_t;

static bool index_row(const char *key_id, const char *idempotency_key, uint64_t row_bytes, void *ctx) {
    index_load_t *load = ctx;
    if (load->usage != NULL) api_usage_idem_add(load->usage, key_id, (int64_t)row_bytes);
    return idem_index_scan_row(&load->scan, key_id, idempotency_key);
}

/* A rebuild goes on until the purge thread is told to stop. */
static bool purge_going(void *ctx) {
    api_server_t *server = ctx;
    pthread_mutex_lock(&server->purge_mutex);
    bool going = !server->purge_stop;
    pthread_mutex_unlock(&server->purge_mutex);
    return going;
}

static pc_status barrier_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    (void)tx;
    return PC_OK;
}

/* Every row added before the rebuild began is committed once a command queued after
 * it committed (adds run in the writer's transactions); then the store is read. */
static void index_rebuild(api_server_t *server) {
    if (idem_index_rebuild_begin(server->idem_index) != PC_OK) return;
    writer_cmd_t barrier;
    memset(&barrier, 0, sizeof barrier);
    barrier.kind = WRITER_CMD_EXEC;
    barrier.in_transaction = barrier_in_tx;
    pc_status status = writer_submit_wait(server->writer, &barrier);
    store_reader_t *reader = status == PC_OK ? api_server_reader_acquire(server) : NULL;
    if (status == PC_OK && reader == NULL) status = PC_STORE_READ_FAILED;
    index_load_t load = {.scan = {.index = server->idem_index, .go_on = purge_going, .go_on_ctx = server}};
    if (status == PC_OK) status = store_api_idem_keys(reader, index_row, &load);
    if (status == PC_OK) status = pay_idem_lookups_index(reader, &load.scan);
    if (reader != NULL) api_server_reader_release(server, reader);
    bool rebuilt = idem_index_rebuild_end(server->idem_index, status == PC_OK);
    idem_index_stats_t stats;
    idem_index_stats(server->idem_index, &stats);
    obs_logf(rebuilt ? OBS_LEVEL_INFO : OBS_LEVEL_WARN, "idempotency index: rebuilt from the store: %s (%llu keys,"
             " bound %llu)%s%s", idem_index_state_name(stats.state), (unsigned long long)stats.keys,
             (unsigned long long)stats.keys_max, status != PC_OK ? "; read failed: " : "",
             status != PC_OK ? pc_status_code(status) : "");
}

static bool writer_busy(api_server_t *server) {
    writer_stats_t stats;
    writer_stats(server->writer, &stats);
    return stats.queue_events > API_IDEM_PURGE_QUEUE_EVENTS_MAX;
}

/* Sleeps 'period_ms' or until stopped; false when stopped. */
static bool purge_sleep(api_server_t *server, uint32_t period_ms) {
    struct timespec until = pc_realtime_after_ms(period_ms);
    pthread_mutex_lock(&server->purge_mutex);
    while (!server->purge_stop &&
           pthread_cond_timedwait(&server->purge_cond, &server->purge_mutex, &until) == 0) {
    }
    bool running = !server->purge_stop;
    pthread_mutex_unlock(&server->purge_mutex);
    return running;
}

static void *purge_run(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-idpurge"); /* per-thread CPU in top, perf */
    api_server_t *server = arg;
    purge_job *job = malloc(sizeof(*job));
    PC_ASSERT(job != NULL);
    uint32_t period_ms = 0; /* the first look at start */
    while (purge_sleep(server, period_ms)) {
        if (writer_busy(server)) {
            period_ms = PURGE_DEFER_MS;
            continue;
        }
        uint32_t purged = purge_chunk(server, job);
        /* a full chunk: more may be due; a partial one: the rest is younger, look again
         * when some of it may have expired */
        period_ms = purged == API_IDEM_PURGE_ROWS_MAX ? PURGE_BUSY_MS : purged > 0 ? PURGE_SOON_MS : PURGE_IDLE_MS;
        if (purged == 0 && idem_index_rebuild_wanted(server->idem_index)) index_rebuild(server);
    }
    free(job);
    return NULL;
}

/* ---- start and stop ---- */

static void clock_offset_from_env(api_server_t *server) {
    const char *text = getenv("PAYCORE_TEST_CLOCK_OFFSET_S");
    if (text == NULL || text[0] == '\0') return;
    char *end = NULL;
    unsigned long long seconds = strtoull(text, &end, 10);
    if (*end != '\0' || seconds > 100ull * 366 * 24 * 3600) {
        obs_logf(OBS_LEVEL_ERROR, "PAYCORE_TEST_CLOCK_OFFSET_S '%s' ignored (whole seconds, forward)", text);
        return;
    }
    server->idem_clock_offset_ns = (uint64_t)seconds * 1000000000ull;
    obs_logf(OBS_LEVEL_WARN, "test clock: idempotency retention runs %llu s ahead", seconds);
}

/* The room each key's replies take, and the index of their keys: one scan, which a
 * stop asked meanwhile (the serve's SIGTERM, pending until it serves) cuts short. */
static pc_status stored_load(api_server_t *server) {
    pc_status status = idem_index_new(&server->idem_index, server->config.idempotency_index_keys_max);
    store_reader_t *reader = status == PC_OK ? api_server_reader_acquire(server) : NULL;
    if (status == PC_OK && reader == NULL) status = PC_STORE_READ_FAILED;
    index_load_t load = {.scan = {.index = server->idem_index, .go_on = server->config.store_standby_continue},
                         .usage = &server->usage};
    if (status == PC_OK) status = store_api_idem_keys(reader, index_row, &load);
    if (reader != NULL) api_server_reader_release(server, reader);
    if (status == PC_SHUTTING_DOWN) {
        obs_logf(OBS_LEVEL_INFO, "idempotency index: a stop was asked while it loaded from the store: stopped after"
                 " %llu keys, before serving", (unsigned long long)load.scan.rows);
    }
    if (status != PC_OK) return status;
    idem_index_stats_t stats;
    idem_index_stats(server->idem_index, &stats);
    if (stats.overflowed) {
        obs_logf(OBS_LEVEL_WARN, "idempotency index: more stored keys than --idempotency-index-max-keys %llu:"
                 " every Idempotency-Key is read from the store", (unsigned long long)stats.keys_max);
    }
    return PC_OK;
}

pc_status api_idem_start(api_server_t *server) {
    clock_offset_from_env(server);
    pc_status status = stored_load(server);
    if (status != PC_OK) return status;
    pthread_mutex_init(&server->purge_mutex, NULL);
    pthread_cond_init(&server->purge_cond, NULL);
    server->purge_initialized = true;
    if (pthread_create(&server->purge_thread, NULL, purge_run, server) != 0) return PC_INTERNAL;
    server->purge_started = true;
    return PC_OK;
}

/* Before the writer drains: a chunk in flight completes first. */
void api_idem_stop(api_server_t *server) {
    if (!server->purge_initialized) return;
    if (server->purge_started) {
        pthread_mutex_lock(&server->purge_mutex);
        server->purge_stop = true;
        pthread_cond_signal(&server->purge_cond);
        pthread_mutex_unlock(&server->purge_mutex);
        pthread_join(server->purge_thread, NULL);
        server->purge_started = false;
    }
    pthread_cond_destroy(&server->purge_cond);
    pthread_mutex_destroy(&server->purge_mutex);
    server->purge_initialized = false;
}

void api_idem_free(api_server_t *server) {
    idem_index_free(server->idem_index);
    server->idem_index = NULL;
}
