/* gateway/sim_server.c: one simulator's HTTP side. A request passes: route, auth,
 * outage, body, then for an operation the Idempotency-Key, its arrival count and seeded
 * fate, the latency wait; then, under the lock and in one unit of the record's group
 * commit, the replay or the handler and the recording of its answer; the wait for the
 * group's commit; last the transport faults (a held timeout, a broken answer). Each
 * step ends in "send", "close" or "wait" (sim_next; stages in sim_req_t): the others
 * are served meanwhile. Two transports run the steps: paycore's HTTP engine
 * (sim_engine.c, the default) and libmicrohttpd on the event loop of sim_loop.c
 * (here, --http-mhd). */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "core/json_plain.h"
#include "gateway/sim_internal.h"
#include "http/http.h"
#include "obs/obs.h"

static void route_healthz(sim_req_t *req);
static void route_status(sim_req_t *req);
static void route_faults_get(sim_req_t *req);
static void route_faults_post(sim_req_t *req);

/* Routes every channel has. */
static const sim_route_t common_routes[] = {
    {"GET", "/healthz", route_healthz, SIM_ROUTE_OPEN, NULL},
    {"GET", "/v1/status/{}", route_status, SIM_ROUTE_INQUIRY, NULL},
    {"GET", "/v1/admin/faults", route_faults_get, SIM_ROUTE_ADMIN, NULL},
    {"POST", "/v1/admin/faults", route_faults_post, SIM_ROUTE_ADMIN, NULL},
    {"GET", "/v1/reports/settlement", sim_report_get, SIM_ROUTE_ADMIN, NULL},
    {"POST", "/v1/admin/discrepancies", sim_discrepancy_post, SIM_ROUTE_ADMIN, NULL},
    {"GET", "/v1/admin/discrepancies", sim_discrepancy_list, SIM_ROUTE_ADMIN, NULL},
};

/* ---- replies ---- */

static void reply_set(sim_req_t *req, unsigned http_status, const char *content_type, char *text, size_t bytes) {
    free(req->reply);
    req->reply = text;
    req->reply_bytes = bytes;
    req->http_status = http_status;
    req->content_type = content_type;
    req->replied = true;
}

void sim_reply_text(sim_req_t *req, unsigned http_status, const char *content_type, char *text,
                    size_t text_bytes) {
    reply_set(req, http_status, content_type, text, text_bytes);
}

void sim_reply_json(sim_req_t *req, unsigned http_status, json_t *answer) {
    char *text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
    json_decref(answer);
    if (text == NULL) {
        static const char oom[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
        reply_set(req, 500, "application/json", pc_strdup(oom), sizeof oom - 1);
        return;
    }
    reply_set(req, http_status, "application/json", text, strlen(text));
}

void sim_reply_error(sim_req_t *req, unsigned http_status, const char *code, const char *message,
                     const char *field) {
    json_t *error = json_pack("{s:s,s:s}", "code", code, "message", message);
    if (field != NULL) json_object_set_new(error, "field", json_string(field));
    sim_reply_json(req, http_status, json_pack("{s:o}", "error", error));
}

void sim_reply_invalid(sim_req_t *req, const char *field, const char *message) {
    sim_reply_error(req, 400, "invalid_request", message, field);
}

void sim_reply_not_found(sim_req_t *req, const char *what) {
    sim_reply_error(req, 404, "not_found", what, NULL);
}

void sim_reply_internal(sim_req_t *req) {
    sim_reply_error(req, 500, "internal_error", "the simulator's record failed (see its log)", NULL);
}

bool sim_proceed(sim_req_t *req) {
    if (req->fate.error && req->sim->kind != SIM_KIND_CARD) {
        sim_reply_error(req, 503, "system_malfunction", "simulated system malfunction: nothing applied", NULL);
        return false;
    }
    if (!req->fate.apply) {
        req->skipped = true;
        return false;
    }
    return true;
}

const char *sim_query(sim_req_t *req, const char *name) {
    if (req->http_request != NULL) return sim_engine_query(req, name);
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

/* A request header's value (not NUL-terminated on the engine); false when absent. */
static bool header(sim_req_t *req, const char *name, const char **value, size_t *value_bytes) {
    if (req->http_request != NULL) {
        http_text_t text;
        if (!http_request_header(req->http_request, name, &text)) return false;
        *value = text.bytes;
        *value_bytes = text.byte_count;
        return true;
    }
    *value = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
    if (*value == NULL) return false;
    *value_bytes = strlen(*value);
    return true;
}

/* ---- the common routes ---- */

static void route_healthz(sim_req_t *req) {
    sim_faults_t faults;
    sim_faults_current(req->sim, &faults);
    sim_t *sim = req->sim;
    sim_reply_json(req, 200, json_pack("{s:b,s:s,s:b,s:I,s:I,s:I,s:I}", "ok", 1, "channel", sim_kind_name(sim->kind),
                                       "outage", sim_in_outage(&faults, sim_mono_ms()), "commits",
                                       (json_int_t)atomic_load(&sim->commits), "commit_units",
                                       (json_int_t)atomic_load(&sim->commit_units), "connections",
                                       (json_int_t)atomic_load(&sim->connections), "wal_writebacks",
                                       (json_int_t)atomic_load(&sim->wal_writebacks)));
}

static void route_status(sim_req_t *req) {
    sqlite3_stmt *stmt = NULL;
    int found = sim_db_answer_find(&req->sim->db, req->params[0], &stmt);
    if (found < 0) return sim_reply_internal(req);
    if (found == 0) return sim_reply_json(req, 404, json_pack("{s:b}", "found", 0));
    json_t *response = json_loads(sim_col_text(stmt, SIM_ANSWER_COL_RESPONSE), 0, NULL);
    if (req->sim->kind == SIM_KIND_BANK && json_is_object(response)) sim_bank_status_now(req->sim, response);
    json_t *answer = json_pack("{s:b,s:s,s:i,s:o*}", "found", 1, "operation",
                               sim_col_text(stmt, SIM_ANSWER_COL_OPERATION), "http_status",
                               sqlite3_column_int(stmt, SIM_ANSWER_COL_STATUS), "response", response);
    sqlite3_reset(stmt);
    sim_reply_json(req, 200, answer);
}

static void route_faults_get(sim_req_t *req) {
    sim_faults_t faults;
    sim_faults_current(req->sim, &faults);
    sim_reply_json(req, 200, sim_faults_json(&faults));
}

static void route_faults_post(sim_req_t *req) {
    sim_faults_t faults;
    char error[200];
    if (!sim_faults_parse(req->body, &faults, error, sizeof error)) {
        char field[64];
        snprintf(field, sizeof field, "%.*s", (int)strcspn(error, ":["), error);
        return sim_reply_invalid(req, field, error);
    }
    pthread_mutex_lock(&req->sim->faults_lock);
    req->sim->faults = faults;
    pthread_mutex_unlock(&req->sim->faults_lock);
    obs_log(OBS_LEVEL_INFO, "faults replaced", NULL);
    sim_reply_json(req, 200, sim_faults_json(&faults));
}

/* ---- routing ---- */

/* True when 'path' matches 'pattern' (a "{}" segment: 1..PC_ID_BYTES_MAX bytes
 * without '/'); the {} segments are copied to 'params'. One pass over both texts:
 * every request tries the routes in turn, and most differ from the path within a few
 * bytes. */
static bool path_match(const char *pattern, const char *path, char params[SIM_PARAMS_MAX][SIM_ID_SIZE]) {
    uint32_t param_count = 0;
    if (*pattern != '/' || *path != '/') return false;
    pattern++; /* from here pattern[-1] is the byte before: a '/' starts a segment */
    path++;
    for (;;) {
        bool segment_start = pattern[-1] == '/';
        if (segment_start && pattern[0] == '{' && pattern[1] == '}' && (pattern[2] == '/' || pattern[2] == '\0')) {
            size_t bytes = 0;
            while (path[bytes] != '/' && path[bytes] != '\0') bytes++;
            if (bytes == 0 || bytes > PC_ID_BYTES_MAX) return false;
            PC_ASSERT(param_count < SIM_PARAMS_MAX);
            memcpy(params[param_count], path, bytes);
            params[param_count++][bytes] = '\0';
            pattern += 2;
            path += bytes;
            continue;
        }
        if (*pattern != *path) return false;
        if (*pattern == '\0') return true;
        pattern++;
        path++;
    }
}

static void kind_routes(sim_kind kind, const sim_route_t **routes, uint32_t *count) {
    switch (kind) {
    case SIM_KIND_CARD: *routes = sim_card_routes; *count = sim_card_route_count; return;
    case SIM_KIND_WALLET: *routes = sim_wallet_routes; *count = sim_wallet_route_count; return;
    case SIM_KIND_BANK: *routes = sim_bank_routes; *count = sim_bank_route_count; return;
    }
    PC_ASSERT(false);
}

/* Finds the route; answers 404 or 405 and returns false when there is none. */
static bool route_find(sim_req_t *req) {
    const sim_route_t *tables[2] = {common_routes, NULL};
    uint32_t counts[2] = {sizeof common_routes / sizeof common_routes[0], 0};
    kind_routes(req->sim->kind, &tables[1], &counts[1]);
    bool path_known = false;
    for (int t = 0; t < 2; t++) {
        for (uint32_t i = 0; i < counts[t]; i++) {
            if (!path_match(tables[t][i].pattern, req->path, req->params)) continue;
            path_known = true;
            if (strcmp(tables[t][i].method, req->method) != 0) continue;
            req->route = &tables[t][i];
            return true;
        }
    }
    if (path_known) sim_reply_error(req, 405, "method_not_allowed", "method not allowed here", NULL);
    else sim_reply_not_found(req, "no such route");
    return false;
}

/* ---- the request's steps ---- */

static bool auth_ok(sim_req_t *req) {
    const char *key = req->sim->config.api_key;
    if (key == NULL || (req->route->flags & SIM_ROUTE_OPEN)) return true;
    const char *given = NULL;
    size_t given_bytes = 0;
    bool ok = header(req, MHD_HTTP_HEADER_AUTHORIZATION, &given, &given_bytes) && given_bytes >= 7 &&
              memcmp(given, "Bearer ", 7) == 0 && given_bytes - 7 == strlen(key) &&
              sodium_memcmp(given + 7, key, strlen(key)) == 0;
    if (!ok) sim_reply_error(req, 401, "unauthorized", "missing or wrong Bearer key", NULL);
    return ok;
}

static bool body_parse(sim_req_t *req) {
    if (strcmp(req->method, "POST") != 0 || req->body_size == 0) {
        req->body = json_object();
        return true;
    }
    req->body = pc_json_plain_object(req->body_bytes, req->body_size); /* the usual body; jansson reads the rest */
    if (req->body != NULL) return true;
    json_error_t error;
    req->body = json_loadb(req->body_bytes, req->body_size, JSON_REJECT_DUPLICATES, &error);
    if (req->body == NULL) {
        sim_reply_invalid(req, "body", error.text);
        return false;
    }
    if (!json_is_object(req->body)) {
        sim_reply_invalid(req, "body", "must be a JSON object");
        return false;
    }
    return true;
}

static bool key_check(sim_req_t *req) {
    const char *key = NULL;
    size_t key_bytes = 0;
    if (!header(req, "Idempotency-Key", &key, &key_bytes) || key_bytes == 0) {
        sim_reply_error(req, 400, "idempotency_key_missing", "Idempotency-Key header required", NULL);
        return false;
    }
    if (key_bytes < sizeof req->key) {
        memcpy(req->key, key, key_bytes);
        req->key[key_bytes] = '\0';
    }
    if (key_bytes >= sizeof req->key || !pc_id_valid(req->key)) {
        req->key[0] = '\0';
        sim_reply_invalid(req, "Idempotency-Key", "must be 1-64 characters of [A-Za-z0-9._:-]");
        return false;
    }
    return true;
}

/* Writes the key's arrival count (under the lock). */
static bool arrival_write(sim_req_t *req) {
    return sim_db_run(&req->sim->db,
                      "INSERT INTO arrival_counts(key, count) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                      " SET count = excluded.count", "si", req->key, (int64_t)req->arrival);
}

/* The key's arrivals so far: its count, or 1 when only its first answer counts it. */
static bool arrivals_before(sim_req_t *req, int64_t *before) {
    sim_db_t *db = &req->sim->db;
    if (!sim_db_int(db, before, -1, "SELECT count FROM arrival_counts WHERE key = ?", "s", req->key)) return false;
    if (*before >= 0) return true;
    sqlite3_stmt *stmt = NULL;
    int found = sim_db_answer_find(db, req->key, &stmt);
    if (stmt != NULL) sqlite3_reset(stmt);
    *before = found > 0 ? 1 : 0;
    return found >= 0;
}

/* Counts this arrival of the key and draws its fate (in 'unit', under the lock). The
 * count is written now when the request waits (a simulated latency: another arrival
 * of the key may come meanwhile), else by handle_in, unless the answer it records is
 * the count (schema_sql, sim_record.c). */
static bool fate_draw(sim_req_t *req, const sim_faults_t *faults) {
    sim_t *sim = req->sim;
    int64_t before = 0; /* a key the record cannot hold arrives for the first time: nothing to read */
    if (sim_db_key_maybe(&sim->db, req->key) && !arrivals_before(req, &before)) {
        sim_reply_internal(req);
        return false;
    }
    sim_db_key_note(&sim->db, req->key); /* written in this unit: its count or its answer */
    req->arrival = (uint64_t)before + 1;
    sim_fate_draw(sim, faults, req->key, req->arrival, &req->fate);
    req->fate_drawn = true;
    req->first_arrival = req->arrival == 1;
    req->count_pending = req->fate.latency_ms == 0;
    if (!req->count_pending && !arrival_write(req)) {
        sim_reply_internal(req);
        return false;
    }
    return true;
}

/* Writes the arrival count left to handle_in, unless the answer it recorded counts
 * it; 'keep' turns true when the count is all the unit changed (nothing to undo). */
static bool arrival_settle(sim_req_t *req, sim_unit_t *unit, bool recorded, bool *keep) {
    if (!req->count_pending) return true;
    req->count_pending = false;
    if (recorded && req->first_arrival) return true;
    if (!*keep && sim_unit_changed(req->sim, unit)) return true; /* the group fails: nothing counts */
    *keep = true;
    return arrival_write(req);
}

/* The first answer under this key, or 409; false when the key is new. */
static bool replay(sim_req_t *req) {
    sqlite3_stmt *stmt = NULL;
    int found = sim_db_answer_find(&req->sim->db, req->key, &stmt);
    if (found < 0) {
        sim_reply_internal(req);
        return true;
    }
    if (found == 0) return false;
    if (strcmp(sim_col_text(stmt, SIM_ANSWER_COL_HASH), req->request_hash) != 0) {
        sqlite3_reset(stmt);
        sim_reply_error(req, 409, "idempotency_key_reused", "this Idempotency-Key was used for another request", NULL);
        return true;
    }
    const char *response = sim_col_text(stmt, SIM_ANSWER_COL_RESPONSE);
    reply_set(req, (unsigned)sqlite3_column_int(stmt, SIM_ANSWER_COL_STATUS), "application/json", pc_strdup(response),
              strlen(response));
    req->replayed = true;
    sqlite3_reset(stmt);
    return true;
}

static bool answer_recordable(const sim_req_t *req) {
    return req->replied && !req->skipped && !req->replayed && (req->http_status == 200 || req->http_status == 202);
}

/* Runs the handler in 'unit' (begun, under the lock), an operation's answer recorded
 * with its changes; ends the unit, keeping them unless the request failed. */
static void handle_in(sim_req_t *req, sim_unit_t *unit) {
    sim_t *sim = req->sim;
    bool operation = (req->route->flags & SIM_ROUTE_OPERATION) != 0;
    bool ok = sim_unit_mark(sim, unit);
    if (ok) {
        /* A first arrival has no answer to replay: its count commits with (or before) any answer. */
        if (!operation || req->first_arrival || !replay(req)) req->route->handler(req);
        ok = req->replied || req->skipped;
    }
    bool recorded = ok && operation && answer_recordable(req);
    if (recorded) {
        ok = sim_db_answer_put(&sim->db, req->key, req->route->operation, req->request_hash, req->http_status,
                               req->reply, (int64_t)sim_wall_ms());
    }
    bool keep = ok && !req->skipped && req->http_status < 500;
    if (!arrival_settle(req, unit, recorded && ok, &keep)) ok = keep = false;
    sim_unit_end(sim, unit, keep);
    if (!ok) {
        obs_logf(OBS_LEVEL_ERROR, "simulator: %s %s: not recorded", req->method, req->route->pattern);
        req->skipped = false;
        sim_reply_internal(req);
    }
}

/* After the commit the request waited for: its units are done (no wait here). An
 * answer goes out only once recorded. */
static void recorded_wait(sim_req_t *req) {
    bool ok = sim_unit_wait(req->sim, &req->arrival_unit);
    ok = sim_unit_wait(req->sim, &req->unit) && ok;
    if (!ok) {
        obs_logf(OBS_LEVEL_ERROR, "simulator: %s %s: not recorded (commit failed)", req->method, req->path);
        req->skipped = false;
        req->replayed = false;
        sim_reply_internal(req);
    }
}

static sim_next send_operation(sim_req_t *req);

/* Handled: the answer once the request's units are committed (MHD calls the handler
 * again in the pass after the commit). */
static sim_next recording(sim_req_t *req) {
    req->stage = SIM_STAGE_RECORDING;
    if (sim_unit_pending(req->sim, &req->arrival_unit) || sim_unit_pending(req->sim, &req->unit)) {
        sim_loop_wait_commit(req);
        return SIM_NEXT_WAIT;
    }
    sim_loop_commit_seen(req);
    recorded_wait(req);
    return req->fate_drawn ? send_operation(req) : SIM_NEXT_SEND;
}

/* A route that is not an operation: one unit (none for routes that never read the
 * record), then its answer once recorded. */
static sim_next handle_plain(sim_req_t *req) {
    if (req->route->flags & SIM_ROUTE_OPEN) {
        req->route->handler(req);
        return SIM_NEXT_SEND;
    }
    if (!sim_unit_begin(req->sim, &req->unit, true)) {
        sim_reply_internal(req);
        return SIM_NEXT_SEND;
    }
    handle_in(req, &req->unit);
    return recording(req);
}

/* An operation: the arrival counted and the fate drawn; then the handler, at once or
 * after the latency (the count stays, whatever happens next). */
static sim_next handle_operation(sim_req_t *req, const sim_faults_t *faults) {
    sim_t *sim = req->sim;
    if (!sim_unit_begin(sim, &req->arrival_unit, true)) {
        sim_reply_internal(req);
        return SIM_NEXT_SEND;
    }
    if (!fate_draw(req, faults)) {
        sim_unit_end(sim, &req->arrival_unit, false);
        return recording(req);
    }
    if (req->fate.latency_ms > 0) {
        sim_unit_end(sim, &req->arrival_unit, true);
        req->stage = SIM_STAGE_LATENCY;
        sim_loop_wait_ms(req, req->fate.latency_ms);
        return SIM_NEXT_WAIT;
    }
    handle_in(req, &req->arrival_unit);
    return recording(req);
}

/* The latency is over; a simulator that stopped meanwhile closes the request. */
static sim_next latency_over(sim_req_t *req) {
    if (atomic_load(&req->sim->stopping)) return SIM_NEXT_CLOSE;
    if (!sim_unit_begin(req->sim, &req->unit, true)) {
        sim_reply_internal(req);
        return recording(req);
    }
    handle_in(req, &req->unit);
    return recording(req);
}

/* ---- the answer's faults ---- */

/* The true answer with one member changed: an unknown code or a wrong amount. */
static sim_next corrupted(sim_req_t *req, sim_garbage mode) {
    json_t *answer = json_loadb(req->reply, req->reply_bytes, 0, NULL);
    if (answer != NULL && mode == SIM_GARBAGE_UNKNOWN_CODE) {
        json_object_set_new(answer, "response_code", json_string("Z9"));
    } else if (answer != NULL) {
        json_int_t amount = json_integer_value(json_object_get(answer, "amount"));
        json_object_set_new(answer, "amount", json_integer(amount + 1));
    }
    char *text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
    json_decref(answer);
    if (text == NULL) return SIM_NEXT_CLOSE;
    reply_set(req, req->http_status, "application/json", text, strlen(text));
    return SIM_NEXT_SEND;
}

static sim_next garbage(sim_req_t *req) {
    static const char broken_json[] = "{\"status\":\"appro";
    static const char broken_500[] = "<html><body>500 Internal Server Error</body></html>";
    obs_logf(OBS_LEVEL_DEBUG, "simulated garbage %d for key %s", (int)req->fate.garbage_mode, req->key);
    switch (req->fate.garbage_mode) {
    case SIM_GARBAGE_INVALID_JSON:
        reply_set(req, 200, "application/json", pc_strdup(broken_json), sizeof broken_json - 1);
        return req->reply != NULL ? SIM_NEXT_SEND : SIM_NEXT_CLOSE;
    case SIM_GARBAGE_HTTP_500:
        reply_set(req, 500, "text/html", pc_strdup(broken_500), sizeof broken_500 - 1);
        return req->reply != NULL ? SIM_NEXT_SEND : SIM_NEXT_CLOSE;
    case SIM_GARBAGE_CLOSE:
        return SIM_NEXT_CLOSE;
    case SIM_GARBAGE_UNKNOWN_CODE:
    case SIM_GARBAGE_WRONG_AMOUNT:
        if (!req->replied) return SIM_NEXT_CLOSE; /* not reached: these always apply */
        return corrupted(req, req->fate.garbage_mode);
    case SIM_GARBAGE_COUNT: break;
    }
    return SIM_NEXT_CLOSE;
}

/* Transport faults hit answers of valid operations only; refusals go out as they are.
 * A timeout holds the connection open, unanswered, then closes it (SIM_STAGE_HOLDING). */
static sim_next send_operation(sim_req_t *req) {
    bool processed = req->skipped || (req->replied && (req->http_status == 200 || req->http_status == 202));
    if (!processed) return SIM_NEXT_SEND;
    if (req->fate.timeout) {
        obs_logf(OBS_LEVEL_DEBUG, "simulated timeout for key %s (applied: %d)", req->key, (int)req->fate.apply);
        req->stage = SIM_STAGE_HOLDING;
        sim_loop_wait_ms(req, req->hold_ms);
        return SIM_NEXT_WAIT;
    }
    if (req->fate.garbage) return garbage(req);
    return SIM_NEXT_SEND;
}

/* Everything after the body has arrived. */
static sim_next request_end(sim_req_t *req) {
    if (req->body_too_large) {
        sim_reply_error(req, 413, "body_too_large", "request body above 64 KiB", NULL);
        return SIM_NEXT_SEND;
    }
    if (!route_find(req) || !auth_ok(req)) return SIM_NEXT_SEND;
    sim_faults_t faults;
    sim_faults_current(req->sim, &faults);
    bool outage_applies = (req->route->flags & (SIM_ROUTE_ADMIN | SIM_ROUTE_OPEN)) == 0;
    if (outage_applies && sim_in_outage(&faults, sim_mono_ms())) {
        if (faults.outage_close) return SIM_NEXT_CLOSE;
        sim_reply_error(req, 503, "unavailable", "scheduled outage: nothing applied", NULL);
        return SIM_NEXT_SEND;
    }
    if (!body_parse(req)) return SIM_NEXT_SEND;
    if ((req->route->flags & SIM_ROUTE_OPERATION) == 0) return handle_plain(req);
    if (!key_check(req)) return SIM_NEXT_SEND;
    sim_request_hash(req->method, req->path, req->body, req->request_hash);
    req->hold_ms = faults.timeout_hold_ms;
    return handle_operation(req, &faults);
}

/* Each call of the handler once the body is in: the first, and one after each resume. */
sim_next sim_request_step(sim_req_t *req) {
    switch (req->stage) {
    case SIM_STAGE_NEW: return request_end(req);
    case SIM_STAGE_LATENCY: return latency_over(req);
    case SIM_STAGE_RECORDING: return recording(req);
    case SIM_STAGE_HOLDING: return SIM_NEXT_CLOSE; /* closed, never answered */
    }
    return SIM_NEXT_CLOSE;
}

/* ---- a request's memory ---- */

/* Requests are reused (sim->spare_reqs): one is larger than malloc's small bins, and
 * a fresh one each time cost a heap consolidation. */
sim_req_t *sim_request_alloc(sim_t *sim) {
    pthread_mutex_lock(&sim->spare_lock);
    sim_req_t *req = sim->spare_reqs;
    if (req != NULL) {
        sim->spare_reqs = req->spare_next;
        sim->spare_count--;
    }
    pthread_mutex_unlock(&sim->spare_lock);
    if (req != NULL) memset(req, 0, sizeof *req);
    else req = calloc(1, sizeof(*req));
    if (req != NULL) req->sim = sim;
    return req;
}

/* A request that waited out its latency whose client went away: handled now, its
 * answer sent to nobody. A channel applies what has arrived whoever still listens, and
 * the fate of an arrival is the seed's alone: whether MHD read the client's close
 * before the wait ended (and so never called the handler again) must not decide it. A
 * stop closes such requests unapplied, as latency_over does. (On the engine the timer
 * still fires for it: the same handling, at the wait's end.) */
static void latency_abandoned(sim_req_t *req) {
    if (req->stage != SIM_STAGE_LATENCY || atomic_load(&req->sim->stopping)) return;
    req->stage = SIM_STAGE_RECORDING;
    if (!sim_unit_begin(req->sim, &req->unit, true)) return;
    handle_in(req, &req->unit);
    obs_logf(OBS_LEVEL_DEBUG, "%s %s: handled after its client left (%u)", req->method, req->path,
             req->http_status);
}

void sim_request_free(sim_req_t *req) {
    latency_abandoned(req);
    /* A request closed early (in a pass, on the loop): its units' group commits now,
     * since the pass's own commit would come after its memory went. */
    if (sim_unit_pending(req->sim, &req->arrival_unit) || sim_unit_pending(req->sim, &req->unit)) {
        sim_group_flush(req->sim);
    }
    sim_loop_commit_seen(req);
    (void)sim_unit_wait(req->sim, &req->arrival_unit);
    (void)sim_unit_wait(req->sim, &req->unit);
    json_decref(req->body);
    if (req->http_request == NULL) free(req->body_bytes);
    free(req->reply);
    free(req->query_value);
    sim_t *sim = req->sim;
    pthread_mutex_lock(&sim->spare_lock);
    bool keep = sim->spare_count < SIM_CONNECTIONS_MAX;
    if (keep) {
        req->spare_next = sim->spare_reqs;
        sim->spare_reqs = req;
        sim->spare_count++;
    }
    pthread_mutex_unlock(&sim->spare_lock);
    if (!keep) free(req);
}

/* ---- MHD callbacks ---- */

/* Queues the answer; the response frees the reply's text once sent: no copy. */
static enum MHD_Result send_reply(sim_req_t *req) {
    PC_ASSERT(req->replied);
    obs_logf(OBS_LEVEL_DEBUG, "%s %s %u", req->method, req->path, req->http_status);
    struct MHD_Response *response = MHD_create_response_from_buffer(req->reply_bytes, req->reply, MHD_RESPMEM_MUST_FREE);
    if (response == NULL) return MHD_NO;
    req->reply = NULL;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, req->content_type);
    if (req->replayed) MHD_add_response_header(response, "Idempotent-Replayed", "true");
    enum MHD_Result result = MHD_queue_response(req->connection, req->http_status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result mhd_next(sim_req_t *req, sim_next next) {
    switch (next) {
    case SIM_NEXT_SEND: return send_reply(req);
    case SIM_NEXT_WAIT: return MHD_YES; /* suspended, or called again after the pass's commit */
    case SIM_NEXT_CLOSE: break;
    }
    return MHD_NO;
}

static sim_req_t *request_new(sim_t *sim, struct MHD_Connection *connection, const char *method, const char *url) {
    sim_req_t *req = sim_request_alloc(sim);
    if (req == NULL) return NULL;
    req->connection = connection;
    pc_str_copy(req->method, sizeof req->method, method);
    if (strlen(url) < sizeof req->path) pc_str_copy(req->path, sizeof req->path, url); /* else "": 404 */
    const char *length_text = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length_text != NULL && strtoull(length_text, NULL, 10) > SIM_BODY_BYTES_MAX) req->body_too_large = true;
    return req;
}

static void body_append(sim_req_t *req, const char *data, size_t bytes) {
    if (req->body_too_large) return;
    if (req->body_size + bytes > SIM_BODY_BYTES_MAX) {
        req->body_too_large = true;
        return;
    }
    char *grown = realloc(req->body_bytes, req->body_size + bytes + 1);
    if (grown == NULL) {
        req->body_too_large = true; /* refused rather than truncated */
        return;
    }
    memcpy(grown + req->body_size, data, bytes);
    req->body_bytes = grown;
    req->body_size += bytes;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *connection, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
    sim_t *sim = cls;
    sim_req_t *req = *con_cls;
    if (req == NULL) {
        req = request_new(sim, connection, method, url);
        if (req == NULL) return MHD_NO;
        *con_cls = req;
        if (!req->body_too_large) return MHD_YES;
        sim_reply_error(req, 413, "body_too_large", "request body above 64 KiB", NULL);
        return send_reply(req); /* before the body: the rest is discarded */
    }
    if (*upload_data_size > 0) {
        body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->replied && req->http_status == 413) return MHD_YES; /* queued already */
    return mhd_next(req, sim_request_step(req));
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode termination) {
    sim_req_t *req = *con_cls;
    if (req == NULL) return;
    *con_cls = NULL;
    sim_request_free(req);
}

static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)connection;
    (void)socket_context;
    sim_t *sim = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&sim->connections, 1);
}

static void mhd_log(void *cls, const char *format, va_list args) {
    char text[512];
    vsnprintf(text, sizeof text, format, args);
    size_t bytes = strlen(text);
    while (bytes > 0 && text[bytes - 1] == '\n') text[--bytes] = '\0';
    obs_log(OBS_LEVEL_DEBUG, text, "\"source\":\"microhttpd\"");
}

static bool listen_address(const char *listen, struct sockaddr_in *addr) {
    const char *colon = strrchr(listen, ':');
    char host[64];
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host) return false;
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    uint64_t port = 0;
    if (!sim_digits(colon + 1, 1, 5) || (port = strtoull(colon + 1, NULL, 10)) > 65535) return false;
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1;
}

bool sim_http_start(sim_t *sim, const char *listen, bool http_mhd, char *error, size_t error_bytes) {
    struct sockaddr_in addr;
    if (!listen_address(listen, &addr)) {
        snprintf(error, error_bytes, "bad --listen '%s' (IPv4 HOST:PORT)", listen);
        return false;
    }
    if (!http_mhd) return sim_engine_start(sim, &addr, error, error_bytes);
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG; /* sim_loop.c polls */
    sim->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, sim, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, sim, MHD_OPTION_NOTIFY_CONNECTION, on_connection, sim,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)SIM_CONNECTION_IDLE_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)SIM_CONNECTIONS_MAX, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, sim,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SIM_CONNECTION_MEMORY_BYTES, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned int)1024, MHD_OPTION_END);
    if (sim->daemon == NULL) {
        snprintf(error, error_bytes, "cannot listen on %s", listen);
        return false;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(sim->daemon, MHD_DAEMON_INFO_BIND_PORT);
    sim->port = info != NULL ? info->port : ntohs(addr.sin_port);
    if (!sim_loop_start(sim, error, error_bytes)) {
        MHD_stop_daemon(sim->daemon);
        sim->daemon = NULL;
        return false;
    }
    return true;
}

void sim_http_stop(sim_t *sim) {
    sim_engine_stop(sim);
    sim_loop_stop(sim);
    if (sim->daemon != NULL) MHD_stop_daemon(sim->daemon);
    sim->daemon = NULL;
    while (sim->spare_reqs != NULL) {
        sim_req_t *req = sim->spare_reqs;
        sim->spare_reqs = req->spare_next;
        free(req);
    }
    sim->spare_count = 0;
    if (sim->quiesced_fd >= 0) close(sim->quiesced_fd);
    sim->quiesced_fd = -1;
}
