/* store/pg_conn.c: the PostgreSQL backend's connections and values. Results are
 * read in text form (integers with strtoll, bytea as "\x" hex); rows are sent with
 * COPY ... FROM STDIN in text form, one buffer a table a batch. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_internal.h"

/* A connection attempt waits at most this long (a server that drops packets). */
#define PG_CONNECT_TIMEOUT_S "10"

const char *pg_error_line(PGconn *conn, char *buf, size_t buf_bytes) {
    const char *message = conn != NULL ? PQerrorMessage(conn) : "no connection";
    snprintf(buf, buf_bytes, "%s", message != NULL && message[0] != '\0' ? message : "unknown error");
    /* libpq's messages run over several lines ("connection to server ... failed: ...\n\tIs
     * the server running ...?"): the first line names the cause. */
    char *newline = strchr(buf, '\n');
    if (newline != NULL) *newline = '\0';
    return buf;
}

char *pg_url_shown(const char *url) {
    char *shown = pc_strdup(url);
    if (shown == NULL) return NULL;
    char *scheme_end = strstr(shown, "://");
    if (scheme_end == NULL) return shown;
    char *authority = scheme_end + 3;
    char *at = strchr(authority, '@');
    char *slash = strchr(authority, '/');
    if (at == NULL || (slash != NULL && slash < at)) return shown;
    char *colon = memchr(authority, ':', (size_t)(at - authority));
    if (colon == NULL) return shown;
    /* user:secret@host -> user:***@host */
    memmove(colon + 4, at, strlen(at) + 1);
    memcpy(colon + 1, "***", 3);
    return shown;
}

/* One JSON log line on stderr (the store logs before and without obs/). */
static void pg_log(const char *level, const char *msg, const char *code, const char *detail) {
    char escaped[1024];
    size_t used = 0;
    for (const char *c = detail; *c != '\0' && used + 7 < sizeof escaped; c++) {
        unsigned char byte = (unsigned char)*c;
        if (byte == '"' || byte == '\\') {
            escaped[used++] = '\\';
            escaped[used++] = (char)byte;
        } else if (byte < 0x20) {
            used += (size_t)snprintf(escaped + used, sizeof escaped - used, "\\u%04x", byte);
        } else {
            escaped[used++] = (char)byte;
        }
    }
    escaped[used] = '\0';
    fprintf(stderr, "{\"level\":\"%s\",\"msg\":\"%s\",\"code\":\"%s\",\"detail\":\"%s\"}\n", level, msg, code,
            escaped);
}

void pg_log_error(const char *msg, const char *code, const char *detail) { pg_log("error", msg, code, detail); }

/* A URL that does not parse: PC_STORE_OPEN_FAILED with the line saying so. Else PC_OK,
 * and *wants_writable tells whether it asks for a writable server
 * (target_session_attrs=read-write or primary: a Patroni cluster's URL). */
static pc_status url_check(const char *url, bool *wants_writable, char *detail, size_t detail_bytes) {
    char *error = NULL;
    PQconninfoOption *options = PQconninfoParse(url, &error);
    if (options == NULL) {
        char *shown = pg_url_shown(url);
        snprintf(detail, detail_bytes, "store URL '%s' does not parse: %s", shown ? shown : "?",
                 error ? error : "out of memory");
        char *newline = strchr(detail, '\n');
        if (newline != NULL) *newline = '\0';
        free(shown);
        PQfreemem(error);
        return PC_STORE_OPEN_FAILED;
    }
    *wants_writable = false;
    for (const PQconninfoOption *o = options; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "target_session_attrs") == 0 && o->val != NULL) {
            *wants_writable = strcmp(o->val, "read-write") == 0 || strcmp(o->val, "primary") == 0;
        }
    }
    PQconninfoFree(options);
    return PC_OK;
}

/* One connection attempt; the caller checked the URL. The URL's own settings override
 * the ones before it (a server gone silent: limits.h, STORE_PG_TCP_USER_TIMEOUT_MS). */
static pc_status connect_once(const char *url, PGconn **out, char *detail, size_t detail_bytes) {
    const char *keywords[] = {"connect_timeout", "tcp_user_timeout", "keepalives", "keepalives_idle",
                              "keepalives_interval", "keepalives_count", "application_name", "dbname", NULL};
    const char *values[] = {PG_CONNECT_TIMEOUT_S, PC_LIMIT_TEXT(STORE_PG_TCP_USER_TIMEOUT_MS), "1",
                            PC_LIMIT_TEXT(STORE_PG_KEEPALIVE_IDLE_S), PC_LIMIT_TEXT(STORE_PG_KEEPALIVE_INTERVAL_S),
                            PC_LIMIT_TEXT(STORE_PG_KEEPALIVE_COUNT), "paycore", url, NULL};
    PGconn *conn = PQconnectdbParams(keywords, values, 1);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        char line[400];
        char *shown = pg_url_shown(url);
        snprintf(detail, detail_bytes, "cannot connect to %s: %s", shown ? shown : "?",
                 pg_error_line(conn, line, sizeof line));
        free(shown);
        PQfinish(conn);
        return PC_STORE_OPEN_FAILED;
    }
    *out = conn;
    return PC_OK;
}

pc_status pg_connect(const char *url, PGconn **out, char *detail, size_t detail_bytes) {
    bool wants_writable;
    pc_status status = url_check(url, &wants_writable, detail, detail_bytes);
    return status == PC_OK ? connect_once(url, out, detail, detail_bytes) : status;
}

static uint64_t monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

static void wait_notice(const char *url, uint32_t wait_ms, const char *reason) {
    char *shown = pg_url_shown(url);
    char line[600];
    snprintf(line, sizeof line, "no writable server at %s yet (a primary being elected?): retrying every %d ms"
             " for up to %u s; last: %s", shown ? shown : "?", STORE_WRITABLE_POLL_MS, wait_ms / 1000u, reason);
    free(shown);
    pg_log("warn", "store: waiting for a writable server", pc_status_code(PC_STORE_OPEN_FAILED), line);
}

/* Retries a URL that asks for a writable server while none is (Patroni electing a
 * primary after a failover, or still bootstrapping) for up to options->writable_wait_ms,
 * so that a restarted paycore waits for the election instead of exiting in a loop
 * (systemd gives up on a unit that fails too often). Any other URL: one attempt. */
pc_status pg_connect_wait(const char *url, const store_options_t *options, PGconn **out, char *detail,
                          size_t detail_bytes) {
    bool wants_writable;
    pc_status status = url_check(url, &wants_writable, detail, detail_bytes);
    if (status != PC_OK) return status;
    status = connect_once(url, out, detail, detail_bytes);
    uint32_t wait_ms = options != NULL ? options->writable_wait_ms : 0;
    if (status == PC_OK || !wants_writable || wait_ms == 0) return status;
    wait_notice(url, wait_ms, detail);
    uint64_t started_ms = monotonic_ms();
    while (status != PC_OK) {
        if (options->standby_continue != NULL && !options->standby_continue(options->standby_ctx)) {
            snprintf(detail, detail_bytes, "stopped while waiting for a writable server");
            return PC_SHUTTING_DOWN;
        }
        uint64_t waited_ms = monotonic_ms() - started_ms;
        if (waited_ms >= wait_ms) break;
        struct timespec pause = {0, (long)STORE_WRITABLE_POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
        status = connect_once(url, out, detail, detail_bytes);
    }
    if (status == PC_OK) {
        fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"store: connected to a writable server after %llu ms\"}\n",
                (unsigned long long)(monotonic_ms() - started_ms));
        return PC_OK;
    }
    char last[400];
    snprintf(last, sizeof last, "%s", detail);
    snprintf(detail, detail_bytes, "no writable server within %u s (--store-wait-s): %s", wait_ms / 1000u, last);
    return status;
}

pc_status pg_fail(pg_store_t *store, pc_status status, const char *what) {
    char line[400];
    snprintf(store->error_detail, sizeof store->error_detail, "%s: %s", what,
             pg_error_line(store->conn, line, sizeof line));
    return status;
}

bool pg_exec_ok(PGconn *conn, const char *sql) {
    PGresult *result = PQexec(conn, sql);
    ExecStatusType status = PQresultStatus(result);
    PQclear(result);
    return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

PGresult *pg_query(PGconn *conn, const char *sql, int param_count, const char *const *params) {
    PGresult *result = PQexecParams(conn, sql, param_count, NULL, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
    PQclear(result);
    return NULL;
}

pc_status pg_write(PGconn *conn, const char *sql, int param_count, const char *const *params, int64_t *rows_out) {
    PGresult *result = pg_query(conn, sql, param_count, params);
    if (result == NULL) return PC_STORE_COMMIT_FAILED;
    if (rows_out != NULL) *rows_out = strtoll(PQcmdTuples(result), NULL, 10);
    PQclear(result);
    return PC_OK;
}

int64_t pg_int(const PGresult *result, int row, int column) {
    if (PQgetisnull(result, row, column)) return 0;
    return strtoll(PQgetvalue(result, row, column), NULL, 10);
}

bool pg_bytea(const PGresult *result, int row, int column, uint8_t *out, size_t bytes) {
    const char *text = PQgetvalue(result, row, column);
    if (PQgetisnull(result, row, column) || strncmp(text, "\\x", 2) != 0) return false;
    if (strlen(text + 2) != bytes * 2) return false;
    for (size_t i = 0; i < bytes; i++) {
        int high = pc_hex_digit(text[2 + 2 * i]), low = pc_hex_digit(text[3 + 2 * i]);
        if (high < 0 || low < 0) return false;
        out[i] = (uint8_t)(high << 4 | low);
    }
    return true;
}

void pg_bytea_text(const uint8_t *data, size_t bytes, char *out) {
    static const char digits[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < bytes; i++) {
        out[2 + 2 * i] = digits[data[i] >> 4];
        out[3 + 2 * i] = digits[data[i] & 15];
    }
    out[2 + 2 * bytes] = '\0';
}

void pg_text_copy(char *dst, size_t dst_bytes, const PGresult *result, int row, int column) {
    snprintf(dst, dst_bytes, "%s", PQgetisnull(result, row, column) ? "" : PQgetvalue(result, row, column));
}

/* ---- COPY buffers ---- */

static bool copy_reserve(pg_copy_t *copy, size_t more) {
    if (copy->failed) return false;
    if (copy->bytes + more <= copy->capacity) return true;
    size_t capacity = copy->capacity ? copy->capacity : 4096;
    while (capacity < copy->bytes + more) capacity *= 2;
    char *grown = realloc(copy->data, capacity);
    if (grown == NULL) {
        copy->failed = true;
        return false;
    }
    copy->data = grown;
    copy->capacity = capacity;
    return true;
}

static void copy_field_start(pg_copy_t *copy) {
    if (copy->row_fields++ > 0 && copy_reserve(copy, 1)) copy->data[copy->bytes++] = '\t';
}

void pg_copy_text(pg_copy_t *copy, const char *text) {
    copy_field_start(copy);
    if (text == NULL) {
        if (copy_reserve(copy, 2)) memcpy(copy->data + copy->bytes, "\\N", 2), copy->bytes += 2;
        return;
    }
    size_t length = strlen(text);
    if (!copy_reserve(copy, 2 * length)) return; /* every byte escaped at worst */
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        const char *escape = c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (escape != NULL) {
            memcpy(copy->data + copy->bytes, escape, 2);
            copy->bytes += 2;
        } else {
            copy->data[copy->bytes++] = c;
        }
    }
}

void pg_copy_int(pg_copy_t *copy, int64_t value) {
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)value);
    pg_copy_text(copy, text);
}

void pg_copy_bytea(pg_copy_t *copy, const uint8_t *data, size_t bytes) {
    char text[2 * 64 + 3];
    PC_ASSERT(bytes <= 64);
    pg_bytea_text(data, bytes, text);
    pg_copy_text(copy, text); /* the backslash of "\x" is escaped as COPY wants */
}

void pg_copy_row_end(pg_copy_t *copy) {
    if (copy_reserve(copy, 1)) copy->data[copy->bytes++] = '\n';
    copy->row_fields = 0;
    copy->rows++;
}

void pg_copy_free(pg_copy_t *copy) {
    free(copy->data);
    *copy = (pg_copy_t){0};
}

/* The end of a COPY in progress: ended (or aborted when !ok), then its result read;
 * true only when every part worked. */
static bool copy_end(PGconn *conn, bool ok) {
    if (ok || PQtransactionStatus(conn) == PQTRANS_ACTIVE) {
        ok = PQputCopyEnd(conn, ok ? NULL : "paycore: copy failed") == 1 && ok;
        PGresult *result;
        while ((result = PQgetResult(conn)) != NULL) {
            if (PQresultStatus(result) != PGRES_COMMAND_OK) ok = false;
            PQclear(result);
        }
    }
    return ok;
}

bool pg_copy_send(PGconn *conn, const char *copy_sql, pg_copy_t *copy) {
    bool ok = !copy->failed;
    if (ok) {
        PGresult *result = PQexec(conn, copy_sql);
        ok = PQresultStatus(result) == PGRES_COPY_IN;
        PQclear(result);
    }
    if (ok) ok = PQputCopyData(conn, copy->data, (int)copy->bytes) == 1;
    ok = copy_end(conn, ok);
    pg_copy_free(copy);
    return ok;
}

/* ---- binary COPY, sent while it is made ---- */

/* the signature, then flags and the header extension's length (int32 0 each) */
static const char copy_binary_header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

static void stream_put(pg_copy_stream_t *stream, const void *data, size_t bytes) {
    if (stream->failed || !copy_reserve(&stream->buffer, bytes)) {
        stream->failed = true;
        return;
    }
    memcpy(stream->buffer.data + stream->buffer.bytes, data, bytes);
    stream->buffer.bytes += bytes;
}

static void stream_be(pg_copy_stream_t *stream, uint64_t value, size_t bytes) {
    uint8_t out[8];
    for (size_t i = 0; i < bytes; i++) out[i] = (uint8_t)(value >> (8 * (bytes - 1 - i)));
    stream_put(stream, out, bytes);
}

/* What is made so far goes out (blocks while the server's socket buffer is full);
 * a held stream keeps it for pg_stream_end_async. */
static void stream_send(pg_copy_stream_t *stream) {
    if (stream->hold) return;
    if (!stream->failed && stream->buffer.bytes > 0 &&
        PQputCopyData(stream->conn, stream->buffer.data, (int)stream->buffer.bytes) != 1) {
        stream->failed = true;
    }
    stream->buffer.bytes = 0;
}

bool pg_stream_begin(pg_copy_stream_t *stream, PGconn *conn, const char *copy_sql) {
    *stream = (pg_copy_stream_t){.conn = conn};
    PGresult *result = PQexec(conn, copy_sql);
    stream->failed = PQresultStatus(result) != PGRES_COPY_IN;
    PQclear(result);
    stream_put(stream, copy_binary_header, sizeof copy_binary_header - 1);
    return !stream->failed;
}

void pg_stream_defer(pg_copy_stream_t *stream, PGconn *conn, const char *copy_sql) {
    *stream = (pg_copy_stream_t){.conn = conn, .hold = true, .deferred_sql = copy_sql};
    stream_put(stream, copy_binary_header, sizeof copy_binary_header - 1);
}

void pg_stream_hold(pg_copy_stream_t *stream, size_t bytes) {
    stream->hold = true;
    if (!copy_reserve(&stream->buffer, bytes)) stream->failed = true;
}

void pg_stream_row(pg_copy_stream_t *stream, uint16_t field_count) {
    if (stream->buffer.bytes >= STORE_PG_COPY_CHUNK_BYTES) stream_send(stream);
    stream_be(stream, field_count, 2);
}

void pg_stream_int8(pg_copy_stream_t *stream, int64_t value) {
    stream_be(stream, 8, 4);
    stream_be(stream, (uint64_t)value, 8);
}

void pg_stream_int4(pg_copy_stream_t *stream, int32_t value) {
    stream_be(stream, 4, 4);
    stream_be(stream, (uint32_t)value, 4);
}

void pg_stream_bytes(pg_copy_stream_t *stream, const uint8_t *data, size_t bytes) {
    PC_ASSERT(bytes <= INT32_MAX);
    stream_be(stream, bytes, 4);
    stream_put(stream, data, bytes);
}

/* array_recv's form: dimensions, no nulls, the element type, the dimension's length
 * and lower bound, then each element's length and bytes. */
#define PG_OID_INT8 20
void pg_stream_int8_array(pg_copy_stream_t *stream, const int64_t *values, uint32_t count) {
    stream_be(stream, 20 + (uint64_t)count * 12, 4);
    stream_be(stream, 1, 4);
    stream_be(stream, 0, 4);
    stream_be(stream, PG_OID_INT8, 4);
    stream_be(stream, count, 4);
    stream_be(stream, 1, 4);
    for (uint32_t i = 0; i < count; i++) {
        stream_be(stream, 8, 4);
        stream_be(stream, (uint64_t)values[i], 8);
    }
}

void pg_stream_null(pg_copy_stream_t *stream) { stream_be(stream, UINT32_MAX, 4); /* length -1 */ }

void pg_stream_text(pg_copy_stream_t *stream, const char *text) {
    if (text == NULL) {
        pg_stream_null(stream);
        return;
    }
    pg_stream_bytes(stream, (const uint8_t *)text, strlen(text));
}

/* A deferred stream's COPY starts now, its rows made so far behind it. */
static void stream_start_deferred(pg_copy_stream_t *stream) {
    if (stream->deferred_sql == NULL) return;
    PGresult *result = stream->failed ? NULL : PQexec(stream->conn, stream->deferred_sql);
    if (PQresultStatus(result) != PGRES_COPY_IN) stream->failed = true;
    PQclear(result);
    stream->deferred_sql = NULL;
}

/* The end of the COPY: what is left goes out, then its result. */
static bool stream_finish(pg_copy_stream_t *stream) {
    PGconn *conn = stream->conn;
    stream_start_deferred(stream);
    stream->hold = false;
    stream_send(stream);
    bool ok = !stream->failed;
    ok = copy_end(conn, ok);
    pg_copy_free(&stream->buffer);
    return ok;
}

bool pg_stream_end(pg_copy_stream_t *stream) {
    stream_be(stream, UINT16_MAX, 2); /* the trailer: a field count of -1 */
    return stream_finish(stream);
}

struct pg_copy_async {
    pthread_t thread;
    pg_copy_stream_t stream;
    pg_copy_stream_t then; /* .conn NULL: none */
    bool ok;
};

/* The stream, then the one after it (even after a failure: it frees its rows). */
static bool async_finish(pg_copy_async_t *async) {
    bool ok = stream_finish(&async->stream);
    if (async->then.conn == NULL) return ok;
    if (!ok) async->then.failed = true;
    return stream_finish(&async->then) && ok;
}

static void *copy_async_main(void *arg) {
    pg_copy_async_t *async = arg;
    async->ok = async_finish(async);
    return NULL;
}

pg_copy_async_t *pg_stream_end_async(pg_copy_stream_t *stream, pg_copy_stream_t *then) {
    stream_be(stream, UINT16_MAX, 2);
    if (then != NULL) stream_be(then, UINT16_MAX, 2);
    pg_copy_async_t *async = calloc(1, sizeof *async);
    if (async == NULL) {
        (void)stream_finish(stream); /* out of memory: ends the COPY, frees the rows */
        if (then != NULL) {
            then->failed = true;
            (void)stream_finish(then);
        }
        return NULL;
    }
    async->stream = *stream;
    if (then != NULL) async->then = *then;
    *stream = (pg_copy_stream_t){0};
    if (then != NULL) *then = (pg_copy_stream_t){0};
    if (pthread_create(&async->thread, NULL, copy_async_main, async) == 0) return async;
    async->ok = async_finish(async); /* no thread: the COPYs end here, and the result is kept */
    async->thread = pthread_self();
    return async;
}

bool pg_stream_join(pg_copy_async_t *async) {
    if (async == NULL) return false;
    if (!pthread_equal(async->thread, pthread_self())) pthread_join(async->thread, NULL);
    bool ok = async->ok;
    free(async);
    return ok;
}

/* ---- rows ---- */

void pg_transfer_from_row(const PGresult *result, int row, ledger_transfer_t *t) {
    memset(t, 0, sizeof *t);
    t->timestamp_ns = (uint64_t)pg_int(result, row, 0);
    pg_text_copy(t->id, sizeof t->id, result, row, 1);
    pg_text_copy(t->debit_account_id, sizeof t->debit_account_id, result, row, 2);
    pg_text_copy(t->credit_account_id, sizeof t->credit_account_id, result, row, 3);
    t->amount = pg_int(result, row, 4);
    pg_text_copy(t->currency, sizeof t->currency, result, row, 5);
    t->code = (uint16_t)pg_int(result, row, 6);
    t->flags = (uint16_t)pg_int(result, row, 7);
    pg_text_copy(t->pending_id, sizeof t->pending_id, result, row, 8);
    t->timeout_s = (uint32_t)pg_int(result, row, 9);
    t->metadata_json = PQgetisnull(result, row, 10) ? NULL : PQgetvalue(result, row, 10);
}

void pg_transfer_row_take(PGresult *result, int row, store_transfer_t *out) {
    pg_transfer_from_row(result, row, &out->transfer);
    out->pending_state = (ledger_pending_state)pg_int(result, row, 11);
    out->metadata_owned = pc_strdup(out->transfer.metadata_json);
    out->transfer.metadata_json = out->metadata_owned;
}

pc_status pg_transfer_result_take(PGresult *result, store_transfer_t *out) {
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) pg_transfer_row_take(result, 0, out);
    PQclear(result);
    return status;
}

void pg_account_from_row(const PGresult *result, int row, ledger_account_t *a) {
    memset(a, 0, sizeof *a);
    pg_text_copy(a->id, sizeof a->id, result, row, 0);
    pg_text_copy(a->currency, sizeof a->currency, result, row, 1);
    a->code = (uint16_t)pg_int(result, row, 2);
    a->flags = (uint16_t)pg_int(result, row, 3);
    a->balances.debits_pending = pg_int(result, row, 4);
    a->balances.debits_posted = pg_int(result, row, 5);
    a->balances.credits_pending = pg_int(result, row, 6);
    a->balances.credits_posted = pg_int(result, row, 7);
    a->timestamp_ns = (uint64_t)pg_int(result, row, 8);
    a->metadata_json = PQgetisnull(result, row, 9) ? NULL : PQgetvalue(result, row, 9);
}
