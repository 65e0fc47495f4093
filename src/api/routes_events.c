/* api/routes_events.c: events (GET /v1/events, one event, redelivery) and webhook
 * endpoints (create with a secret shown once, list, get, delete, rotate the secret,
 * re-enable, deliveries in trouble). A merchant key sees only the events it may see
 * (those of its accounts) and only its own endpoints; anything else reads exactly as
 * a missing object. Changes go through the writer like every other row, and the
 * webhook thread is told after the commit (events_notify). */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/core.h"

#define ROTATE_GRACE_S_DEFAULT (24u * 3600u)
#define ROTATE_GRACE_S_MAX (7u * 24u * 3600u)

static const char *caller_owner(const api_request_t *req) {
    return req->caller.scope == API_SCOPE_MERCHANT ? req->caller.id : NULL;
}

static store_reader_t *reader_or_reply(api_request_t *req) {
    store_reader_t *reader = api_reader(req);
    if (reader == NULL) api_reply_error(req, PC_STORE_READ_FAILED, NULL, NULL);
    return reader;
}

static bool parse_u64(const char *text, uint64_t *out) {
    if (text == NULL || text[0] < '0' || text[0] > '9') return false;
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end != '\0' || value > (unsigned long long)INT64_MAX) return false;
    *out = value;
    return true;
}

static void reply_query_invalid(api_request_t *req, const char *name) {
    char message[96];
    snprintf(message, sizeof message, "invalid query parameter '%s'", name);
    api_reply_error(req, PC_QUERY_INVALID, name, message);
}

/* ---- GET /v1/events ---- */

typedef struct {
    uint32_t limit;
    uint64_t after_seq;          /* starting_after, 0 when absent */
    uint64_t from_ns, to_ns;
    bool descending;
} page_query;

static const char *page_parse(api_request_t *req, page_query *page) {
    memset(page, 0, sizeof(*page));
    page->limit = 10;
    uint64_t value;
    const char *limit = api_query(req, "limit"), *after = api_query(req, "starting_after");
    const char *from = api_query(req, "from"), *to = api_query(req, "to"), *order = api_query(req, "order");
    if (limit != NULL) {
        if (!parse_u64(limit, &value) || value < 1 || value > API_LIST_LIMIT_MAX) return "limit";
        page->limit = (uint32_t)value;
    }
    if (after != NULL && !events_id_parse(after, &page->after_seq)) return "starting_after";
    if (from != NULL && !parse_u64(from, &page->from_ns)) return "from";
    if (to != NULL && (!parse_u64(to, &page->to_ns) || page->to_ns == 0)) return "to";
    if (order != NULL && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) return "order";
    page->descending = order != NULL && strcmp(order, "desc") == 0;
    return NULL;
}

/* Seq bounds of a page: seqs are creation times, so from/to bound them directly. */
static void page_bounds(const page_query *page, store_events_query_t *query) {
    uint64_t low = page->from_ns > 0 ? page->from_ns - 1 : 0; /* exclusive */
    uint64_t high = page->to_ns;                               /* exclusive, 0 = none */
    if (page->after_seq != 0 && !page->descending && page->after_seq > low) low = page->after_seq;
    if (page->after_seq != 0 && page->descending && (high == 0 || page->after_seq < high)) high = page->after_seq;
    query->after_seq = low;
    query->before_seq = high;
    query->descending = page->descending;
    query->limit = page->limit;
}

typedef struct {
    FILE *out;
    uint32_t rows;
} list_text;

static void event_append(const store_event_t *event, void *ctx) {
    list_text *text = ctx;
    if (text->rows++ > 0) fputc(',', text->out);
    fwrite(event->body, 1, event->body_bytes, text->out);
}

/* Replies {"data":[<bodies>],"has_more":..}: bodies as delivered (events_list). */
static void reply_events(api_request_t *req, const store_events_query_t *query) {
    char *text = NULL;
    size_t bytes = 0;
    list_text list = {open_memstream(&text, &bytes), 0};
    if (list.out == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    fputs("{\"data\":[", list.out);
    bool has_more = false;
    pc_status status = events_list(api_reader(req), query, event_append, &list, &has_more);
    fprintf(list.out, "],\"has_more\":%s}", has_more ? "true" : "false");
    fclose(list.out);
    if (status == PC_OK) api_reply_raw(req, 200, PC_OK, text, bytes, "application/json");
    else api_reply_error(req, status, NULL, NULL);
    free(text);
}

void api_route_events_list(api_request_t *req) {
    static const char *const allowed[] = {"limit", "starting_after", "from", "to", "order", "type", "object_id", NULL};
    if (!api_query_only(req, allowed)) return;
    page_query page;
    const char *bad = page_parse(req, &page);
    const char *type = api_query(req, "type"), *object_id = api_query(req, "object_id");
    events_type parsed;
    if (bad == NULL && type != NULL && !events_type_parse(type, &parsed)) bad = "type";
    if (bad == NULL && object_id != NULL && !pc_id_valid(object_id)) bad = "object_id";
    if (bad != NULL) {
        reply_query_invalid(req, bad);
        return;
    }
    if (reader_or_reply(req) == NULL) return;
    store_events_query_t query = {.type = type, .object_id = object_id, .owner = caller_owner(req)};
    page_bounds(&page, &query);
    reply_events(req, &query);
}

/* ---- GET /v1/events/{id} ---- */

/* The event {id} as the caller may see it: PC_OK, or a reply was made (404 when it
 * is missing or not the caller's: the same answer). */
static bool event_visible(api_request_t *req, uint64_t *seq, events_copy_t *copy) {
    memset(copy, 0, sizeof(*copy));
    store_reader_t *reader = reader_or_reply(req);
    if (reader == NULL) return false;
    pc_status status = events_id_parse(api_param(req, 0), seq) ? events_read(reader, *seq, caller_owner(req), copy)
                                                               : PC_NOT_FOUND;
    if (status != PC_OK) api_reply_error(req, status, NULL, NULL);
    return status == PC_OK;
}

void api_route_event_get(api_request_t *req) {
    if (!api_query_only(req, (const char *const[]){NULL})) return;
    uint64_t seq;
    events_copy_t copy;
    if (!event_visible(req, &seq, &copy)) return;
    api_reply_raw(req, 200, PC_OK, copy.body, copy.body_bytes, "application/json");
    free(copy.body);
}

/* ---- endpoints: shared ---- */

static bool endpoint_visible(const api_request_t *req, const store_event_destination_t *row) {
    if (strcmp(row->kind, "webhook") != 0) return false;
    const char *owner = caller_owner(req);
    return owner == NULL || strcmp(row->merchant_id, owner) == 0;
}

/* Reads endpoint 'id' for the caller: true, or a 404 was replied (missing or foreign). */
static bool endpoint_read(api_request_t *req, const char *id, store_event_destination_t *row, const char *field) {
    store_reader_t *reader = reader_or_reply(req);
    if (reader == NULL) return false;
    pc_status status = pc_id_valid(id) ? store_events_destination_get(reader, id, row) : PC_NOT_FOUND;
    if (status == PC_OK && !endpoint_visible(req, row)) status = PC_NOT_FOUND;
    if (status != PC_OK) api_reply_error(req, status, field, NULL);
    return status == PC_OK;
}

static json_t *types_json(const char *types) {
    json_t *array = json_array();
    char copy[sizeof(((store_event_destination_t *)0)->types)];
    pc_str_copy(copy, sizeof copy, types);
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        json_array_append_new(array, json_string(item));
    }
    return array;
}

static json_t *endpoint_json(const store_event_destination_t *row) {
    json_t *object = json_pack("{s:s,s:s,s:s,s:o,s:s,s:I}", "id", row->id, "object", "webhook_endpoint", "url", row->url,
                               "events", types_json(row->types), "status", row->disabled_ns ? "disabled" : "enabled",
                               "created", (json_int_t)row->created_ns);
    if (object == NULL) return NULL;
    if (row->merchant_id[0] != '\0') json_object_set_new(object, "merchant_id", json_string(row->merchant_id));
    if (row->disabled_ns != 0) {
        json_object_set_new(object, "disabled_at", json_integer((json_int_t)row->disabled_ns));
        json_object_set_new(object, "disabled_reason", json_string(row->disabled_reason));
    }
    if (row->failing_since_ns != 0) {
        json_object_set_new(object, "failing_since", json_integer((json_int_t)row->failing_since_ns));
    }
    if (row->previous_box_bytes > 0 && row->previous_until_ns > pc_wall_ns()) {
        json_object_set_new(object, "previous_secret_expires", json_integer((json_int_t)row->previous_until_ns));
    }
    return object;
}

typedef struct {
    writer_cmd_t cmd;                     /* first: on_done gets &job->cmd */
    store_event_destination_t row;
    char secret[EVENTS_SECRET_SIZE];
    bool found;
    uint64_t seq;                         /* redelivery: the event, or 'since' */
    uint32_t target_count;
    char targets[EVENTS_ENDPOINTS_MAX + 1][PC_ID_SIZE];
} endpoint_job;

static endpoint_job *job_new(api_request_t *req) {
    endpoint_job *job = api_alloc(req, sizeof(*job));
    if (job == NULL) api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
    else job->cmd.kind = WRITER_CMD_EXEC;
    return job;
}

static void notify_after_commit(api_request_t *req) {
    events_notify(req->server->events);
}

static void reply_decode_error(api_request_t *req, const codec_error_t *err) {
    api_reply_error_http(req, 400, err->status, err->field[0] ? err->field : NULL, err->message);
}

/* ---- POST /v1/webhook-endpoints ---- */

static bool types_listed(const char *types, const char *name) {
    size_t bytes = strlen(name);
    for (const char *at = types; *at != '\0';) {
        size_t item = strcspn(at, ",");
        if (item == bytes && strncmp(at, name, bytes) == 0) return true;
        at += item + (at[item] == ',');
    }
    return false;
}

/* Appends 'name' to the "a,b" list unless listed already; false when it would not fit. */
static bool types_append(char *types, size_t types_size, const char *name) {
    if (types_listed(types, name)) return true;
    size_t used = strlen(types), bytes = strlen(name);
    if (used + (used > 0) + bytes >= types_size) return false;
    snprintf(types + used, types_size - used, "%s%s", used > 0 ? "," : "", name);
    return true;
}

/* "events": ["transfer.created", "payment.*", ...] or ["*"] into "a,b" text. */
static bool decode_types(const json_t *body, store_event_destination_t *row, codec_error_t *err) {
    const json_t *events = json_object_get(body, "events");
    if (events == NULL) {
        codec_fail(err, PC_FIELD_MISSING, "", "events", NULL);
        return false;
    }
    if (!json_is_array(events) || json_array_size(events) == 0 || json_array_size(events) > EVENTS_TYPE_COUNT + 1) {
        codec_fail(err, json_is_array(events) ? PC_EVENT_TYPE_UNKNOWN : PC_FIELD_TYPE, "", "events",
                   "events must list 1 or more event types, or \"*\"");
        return false;
    }
    row->types[0] = '\0';
    size_t index;
    json_t *item;
    json_array_foreach(events, index, item) {
        char place[32];
        snprintf(place, sizeof place, "events[%u]", (unsigned)index);
        uint64_t mask;
        const char *name = json_is_string(item) ? json_string_value(item) : NULL;
        if (name == NULL || !events_type_pattern_mask(name, &mask)) {
            codec_fail(err, name ? PC_EVENT_TYPE_UNKNOWN : PC_FIELD_TYPE, place, NULL, NULL);
            return false;
        }
        if (!types_append(row->types, sizeof row->types, name)) {
            codec_fail(err, PC_EVENT_TYPE_UNKNOWN, place, NULL, "too many event types: use \"*\" or \"prefix.*\"");
            return false;
        }
    }
    return true;
}

/* merchant_id: an admin may name a merchant key; a merchant key is its own merchant. */
static bool decode_merchant(api_request_t *req, const json_t *body, store_event_destination_t *row,
                            codec_error_t *err) {
    if (!codec_get_id(body, "merchant_id", false, PC_ID_INVALID, "", row->merchant_id, err)) return false;
    if (req->caller.scope == API_SCOPE_MERCHANT) {
        if (row->merchant_id[0] != '\0' && strcmp(row->merchant_id, req->caller.id) != 0) {
            codec_fail(err, PC_INVALID_ARGUMENT, "", "merchant_id", "a merchant key makes endpoints for itself only");
            return false;
        }
        pc_str_copy(row->merchant_id, sizeof row->merchant_id, req->caller.id);
        return true;
    }
    api_key_entry_t key;
    if (row->merchant_id[0] != '\0' &&
        (!api_keys_get(api_server_keys(req->server), row->merchant_id, &key) || key.scope != API_SCOPE_MERCHANT)) {
        codec_fail(err, PC_INVALID_ARGUMENT, "", "merchant_id", "no merchant key has this id");
        return false;
    }
    return true;
}

static bool decode_endpoint(api_request_t *req, const json_t *body, store_event_destination_t *row,
                            codec_error_t *err) {
    static const char *const fields[] = {"url", "events", "merchant_id", NULL};
    const char *url;
    if (!codec_check_fields(body, fields, "", err)) return false;
    if (!codec_get_string(body, "url", true, 4 * EVENTS_URL_BYTES_MAX, "", &url, err)) return false;
    pc_status status = events_url_check(url, events_webhook_private_ok(req->server->events));
    if (status != PC_OK) {
        codec_fail(err, status, "", "url", NULL);
        return false;
    }
    pc_str_copy(row->url, sizeof row->url, url);
    return decode_types(body, row, err) && decode_merchant(req, body, row, err);
}

/* Per merchant and in all: each endpoint holds a window in the webhook thread. */
static bool endpoint_room(api_request_t *req, const char *merchant_id) {
    uint32_t merchant_count = 0, total_count = 0;
    pc_status status = store_events_destination_counts(api_reader(req), merchant_id, &merchant_count, &total_count);
    if (status == PC_OK && (total_count >= EVENTS_ENDPOINTS_MAX ||
                            (merchant_id[0] != '\0' && merchant_count >= EVENTS_ENDPOINTS_PER_MERCHANT_MAX))) {
        api_reply_error(req, PC_LIMIT_REACHED, NULL, "this merchant or the server holds the maximum number of endpoints");
        return false;
    }
    if (status != PC_OK) api_reply_error(req, status, NULL, NULL);
    return status == PC_OK;
}

static pc_status endpoint_create_in_tx(api_request_t *req, store_tx_t *tx) {
    endpoint_job *job = (endpoint_job *)req->cmd;
    return store_events_destination_insert(tx, &job->row);
}

static void endpoint_create_done(api_request_t *req, writer_cmd_t *cmd) {
    endpoint_job *job = (endpoint_job *)cmd;
    json_t *object = endpoint_json(&job->row);
    if (api_request_idempotent(req)) api_idem_store_override(req, json_deep_copy(object)); /* never the secret */
    json_object_set_new(object, "secret", json_string(job->secret));
    sodium_memzero(job->secret, sizeof job->secret);
    api_reply_json(req, 201, object);
}

void api_route_endpoints_create(api_request_t *req) {
    json_t *body = api_body_object(req);
    if (body == NULL) return;
    endpoint_job *job = job_new(req);
    if (job == NULL || reader_or_reply(req) == NULL) return;
    codec_error_t err = {0};
    if (!decode_endpoint(req, body, &job->row, &err)) {
        reply_decode_error(req, &err);
        return;
    }
    if (!endpoint_room(req, job->row.merchant_id)) return;
    pc_status status = events_endpoint_new(req->server->events, &job->row, job->secret);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    req->after_commit = notify_after_commit;
    api_submit(req, &job->cmd, endpoint_create_in_tx, endpoint_create_done);
}

/* ---- GET /v1/webhook-endpoints, GET and DELETE /v1/webhook-endpoints/{id} ---- */

typedef struct {
    api_request_t *req;
    json_t *data;
} endpoint_rows;

static void endpoint_row(const store_event_destination_t *row, void *ctx) {
    endpoint_rows *rows = ctx;
    if (endpoint_visible(rows->req, row)) json_array_append_new(rows->data, endpoint_json(row));
}

void api_route_endpoints_list(api_request_t *req) {
    store_query_t query;
    if (!api_list_query(req, &query, false)) return;
    store_reader_t *reader = reader_or_reply(req);
    if (reader == NULL) return;
    endpoint_rows rows = {req, json_array()};
    bool has_more = false;
    pc_status status = store_events_destinations_list(reader, caller_owner(req), query.starting_after, query.limit,
                                                      endpoint_row, &rows, &has_more);
    if (status != PC_OK) {
        json_decref(rows.data);
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:o,s:b}", "data", rows.data, "has_more", has_more));
}

void api_route_endpoint_get(api_request_t *req) {
    if (!api_query_only(req, (const char *const[]){NULL})) return;
    store_event_destination_t *row = api_alloc(req, sizeof(*row));
    if (row == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    if (!endpoint_read(req, api_param(req, 0), row, NULL)) return;
    api_reply_json(req, 200, endpoint_json(row));
}

static pc_status endpoint_delete_in_tx(api_request_t *req, store_tx_t *tx) {
    endpoint_job *job = (endpoint_job *)req->cmd;
    return store_events_destination_delete(tx, job->row.id, &job->found);
}

static void endpoint_delete_done(api_request_t *req, writer_cmd_t *cmd) {
    endpoint_job *job = (endpoint_job *)cmd;
    if (!job->found) {
        api_reply_error(req, PC_NOT_FOUND, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:s,s:s,s:b}", "id", job->row.id, "object", "webhook_endpoint", "deleted", 1));
}

void api_route_endpoint_delete(api_request_t *req) {
    endpoint_job *job = job_new(req);
    if (job == NULL || !endpoint_read(req, api_param(req, 0), &job->row, NULL)) return;
    req->after_commit = notify_after_commit;
    api_submit(req, &job->cmd, endpoint_delete_in_tx, endpoint_delete_done);
}

/* ---- POST /v1/webhook-endpoints/{id}/rotate-secret ---- */

static bool decode_grace(api_request_t *req, uint64_t *grace_s) {
    *grace_s = ROTATE_GRACE_S_DEFAULT;
    size_t body_bytes = 0;
    api_body(req, &body_bytes);
    if (body_bytes == 0) return true;
    json_t *body = api_body_object(req);
    if (body == NULL) return false;
    static const char *const fields[] = {"grace_period_s", NULL};
    codec_error_t err = {0};
    const json_t *grace = json_object_get(body, "grace_period_s");
    if (!codec_check_fields(body, fields, "", &err)) {
        reply_decode_error(req, &err);
        return false;
    }
    if (grace == NULL) return true;
    if (!json_is_integer(grace) || json_integer_value(grace) < 0 || json_integer_value(grace) > ROTATE_GRACE_S_MAX) {
        api_reply_error_http(req, 400, json_is_integer(grace) ? PC_INVALID_ARGUMENT : PC_FIELD_TYPE, "grace_period_s",
                             "grace_period_s must be an integer from 0 to 604800");
        return false;
    }
    *grace_s = (uint64_t)json_integer_value(grace);
    return true;
}

static pc_status endpoint_rotate_in_tx(api_request_t *req, store_tx_t *tx) {
    endpoint_job *job = (endpoint_job *)req->cmd;
    const store_event_destination_t *row = &job->row;
    return store_events_destination_secret(tx, row->id, row->secret_box, row->secret_box_bytes, row->previous_box,
                                           row->previous_box_bytes, row->previous_until_ns, &job->found);
}

static void endpoint_rotate_done(api_request_t *req, writer_cmd_t *cmd) {
    endpoint_job *job = (endpoint_job *)cmd;
    if (!job->found) {
        api_reply_error(req, PC_NOT_FOUND, NULL, NULL);
        return;
    }
    json_t *object = endpoint_json(&job->row);
    if (api_request_idempotent(req)) api_idem_store_override(req, json_deep_copy(object));
    json_object_set_new(object, "secret", json_string(job->secret));
    sodium_memzero(job->secret, sizeof job->secret);
    api_reply_json(req, 200, object);
}

void api_route_endpoint_rotate(api_request_t *req) {
    uint64_t grace_s;
    endpoint_job *job = job_new(req);
    if (job == NULL || !decode_grace(req, &grace_s)) return;
    if (!endpoint_read(req, api_param(req, 0), &job->row, NULL)) return;
    pc_status status = events_endpoint_rotate(req->server->events, &job->row, grace_s, job->secret);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    req->after_commit = notify_after_commit;
    api_submit(req, &job->cmd, endpoint_rotate_in_tx, endpoint_rotate_done);
}

/* ---- POST /v1/webhook-endpoints/{id}/enable ---- */

static pc_status endpoint_enable_in_tx(api_request_t *req, store_tx_t *tx) {
    endpoint_job *job = (endpoint_job *)req->cmd;
    pc_status status = store_events_destination_health(tx, job->row.id, 0, 0, "");
    /* the epoch moves: the webhook thread rebuilds the endpoint's state */
    if (status == PC_OK) status = store_events_cursor_rewind(tx, job->row.id, UINT64_MAX, &job->found);
    return status;
}

static void endpoint_enable_done(api_request_t *req, writer_cmd_t *cmd) {
    endpoint_job *job = (endpoint_job *)cmd;
    if (!job->found) {
        api_reply_error(req, PC_NOT_FOUND, NULL, NULL);
        return;
    }
    job->row.disabled_ns = 0;
    job->row.failing_since_ns = 0;
    api_reply_json(req, 200, endpoint_json(&job->row));
}

void api_route_endpoint_enable(api_request_t *req) {
    endpoint_job *job = job_new(req);
    if (job == NULL || !endpoint_read(req, api_param(req, 0), &job->row, NULL)) return;
    req->after_commit = notify_after_commit;
    api_submit(req, &job->cmd, endpoint_enable_in_tx, endpoint_enable_done);
}

/* ---- GET /v1/webhook-endpoints/{id}/deliveries ---- */

static void delivery_row(const store_event_delivery_t *row, void *ctx) {
    char id[EVENTS_ID_SIZE];
    events_id_format(row->seq, id);
    json_t *object = json_pack("{s:s,s:s,s:s,s:i,s:I,s:I,s:s}", "event_id", id, "object_id",
                               row->object_id ? row->object_id : "", "state",
                               row->state == STORE_DELIVERY_DEAD ? "dead_lettered" : "retrying", "attempts",
                               (int)row->attempts, "next_attempt", (json_int_t)row->next_attempt_ns, "updated",
                               (json_int_t)row->updated_ns, "last_error", row->last_error);
    if (object != NULL && row->first_attempt_ns != 0) {
        json_object_set_new(object, "first_attempt", json_integer((json_int_t)row->first_attempt_ns));
    }
    json_array_append_new(ctx, object);
}

void api_route_endpoint_deliveries(api_request_t *req) {
    static const char *const allowed[] = {"limit", "starting_after", "state", NULL};
    if (!api_query_only(req, allowed)) return;
    page_query page;
    const char *bad = page_parse(req, &page);
    const char *state_text = api_query(req, "state");
    store_delivery_state state = 0;
    if (state_text != NULL && strcmp(state_text, "retrying") == 0) state = STORE_DELIVERY_RETRYING;
    else if (state_text != NULL && strcmp(state_text, "dead_lettered") == 0) state = STORE_DELIVERY_DEAD;
    else if (state_text != NULL && bad == NULL) bad = "state";
    if (bad != NULL) {
        reply_query_invalid(req, bad);
        return;
    }
    store_event_destination_t *row = api_alloc(req, sizeof(*row));
    if (row == NULL || !endpoint_read(req, api_param(req, 0), row, NULL)) {
        if (row == NULL) api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    bool has_more = false;
    pc_status status = store_events_deliveries_list(api_reader(req), row->id, state, page.after_seq, page.limit,
                                                    delivery_row, data, &has_more);
    if (status != PC_OK) {
        json_decref(data);
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:o,s:b}", "data", data, "has_more", has_more));
}

/* ---- redelivery ---- */

typedef struct {
    api_request_t *req;
    endpoint_job *job;
    const char *only_id;         /* endpoint_id of the body, or NULL */
    uint64_t seq;                /* one event: its seq; 0 for "since" */
    events_type type;
    bool include_amqp;
    bool only_found;
} target_ctx;

/* An endpoint receives event 'seq' when it takes its type and may see it. */
static bool endpoint_takes(api_request_t *req, const store_event_destination_t *row, uint64_t seq,
                           events_type type) {
    uint64_t mask;
    if (events_types_mask(row->types, &mask) != PC_OK || !(mask & (1ull << type))) return false;
    if (row->merchant_id[0] == '\0') return true;
    events_copy_t copy;
    pc_status status = events_read(api_reader(req), seq, row->merchant_id, &copy);
    free(copy.body);
    return status == PC_OK;
}

static void target_row(const store_event_destination_t *row, void *ctx) {
    target_ctx *t = ctx;
    bool amqp = strcmp(row->kind, "amqp") == 0;
    if (t->only_id != NULL && strcmp(row->id, t->only_id) != 0) return;
    if (amqp ? !t->include_amqp : !endpoint_visible(t->req, row)) return;
    if (t->only_id != NULL) t->only_found = true;
    if (t->seq != 0 && (amqp || !endpoint_takes(t->req, row, t->seq, t->type))) return;
    pc_str_copy(t->job->targets[t->job->target_count++], PC_ID_SIZE, row->id);
}

/* The body's endpoint_id (optional) and, with 'since', the required since. */
static bool decode_redelivery(api_request_t *req, bool since, const char **only_id, uint64_t *since_ns) {
    size_t body_bytes = 0;
    *only_id = NULL;
    api_body(req, &body_bytes);
    if (body_bytes == 0 && !since) return true;
    json_t *body = api_body_object(req);
    if (body == NULL) return false;
    static const char *const fields[] = {"endpoint_id", "since", NULL};
    static const char *const one_fields[] = {"endpoint_id", NULL};
    codec_error_t err = {0};
    if (!codec_check_fields(body, since ? fields : one_fields, "", &err) ||
        !codec_get_string(body, "endpoint_id", false, PC_ID_BYTES_MAX, "", only_id, &err)) {
        reply_decode_error(req, &err);
        return false;
    }
    if (!since) return true;
    const json_t *value = json_object_get(body, "since");
    if (value == NULL || !json_is_integer(value) || json_integer_value(value) < 0) {
        api_reply_error_http(req, 400, value == NULL ? PC_FIELD_MISSING : PC_FIELD_TYPE, "since",
                             "since must be a time in nanoseconds since the epoch");
        return false;
    }
    *since_ns = (uint64_t)json_integer_value(value);
    return true;
}

/* Collects the endpoints to redeliver to; false when a reply was made. */
static bool targets_collect(api_request_t *req, target_ctx *t) {
    bool has_more;
    pc_status status = store_events_destinations_list(api_reader(req), NULL, NULL, 0, target_row, t, &has_more);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return false;
    }
    if (t->only_id != NULL && !t->only_found) {
        api_reply_error(req, PC_NOT_FOUND, "endpoint_id", NULL);
        return false;
    }
    if (t->only_id != NULL && t->job->target_count == 0) {
        api_reply_error(req, PC_INVALID_ARGUMENT, "endpoint_id", "this endpoint does not receive this event");
        return false;
    }
    return true;
}

static json_t *targets_json(const endpoint_job *job) {
    json_t *array = json_array();
    for (uint32_t i = 0; i < job->target_count; i++) json_array_append_new(array, json_string(job->targets[i]));
    return array;
}

static pc_status redeliver_one_in_tx(api_request_t *req, store_tx_t *tx) {
    endpoint_job *job = (endpoint_job *)req->cmd;
    uint64_t now_ns = pc_wall_ns();
    for (uint32_t i = 0; i < job->target_count; i++) {
        bool found;
        pc_status status = store_events_delivery_redeliver(tx, job->targets[i], job->seq, now_ns);
        if (status == PC_OK) status = store_events_cursor_rewind(tx, job->targets[i], UINT64_MAX, &found);
        if (status != PC_OK) return status;
    }
    return PC_OK;
}

static void redeliver_one_done(api_request_t *req, writer_cmd_t *cmd) {
    endpoint_job *job = (endpoint_job *)cmd;
    char id[EVENTS_ID_SIZE];
    events_id_format(job->seq, id);
    api_reply_json(req, 202, json_pack("{s:s,s:o}", "event_id", id, "endpoints", targets_json(job)));
}

void api_route_event_redeliver(api_request_t *req) {
    uint64_t seq;
    events_copy_t copy;
    endpoint_job *job = job_new(req);
    if (job == NULL || !event_visible(req, &seq, &copy)) return;
    target_ctx t = {.req = req, .job = job, .seq = seq};
    bool typed = events_type_parse(copy.type, &t.type);
    free(copy.body);
    if (!typed) {
        api_reply_error(req, PC_EVENT_TYPE_UNKNOWN, NULL, NULL);
        return;
    }
    if (!decode_redelivery(req, false, &t.only_id, NULL) || !targets_collect(req, &t)) return;
    job->seq = seq;
    req->after_commit = notify_after_commit;
    api_submit(req, &job->cmd, redeliver_one_in_tx, redeliver_one_done);
}

static pc_status redeliver_since_in_tx(api_request_t *req, store_tx_t *tx) {
    endpoint_job *job = (endpoint_job *)req->cmd;
    for (uint32_t i = 0; i < job->target_count; i++) {
        bool found;
        pc_status status = store_events_cursor_rewind(tx, job->targets[i], job->seq, &found);
        if (status != PC_OK) return status;
    }
    return PC_OK;
}

static void redeliver_since_done(api_request_t *req, writer_cmd_t *cmd) {
    endpoint_job *job = (endpoint_job *)cmd;
    api_reply_json(req, 202, json_pack("{s:I,s:o}", "since", (json_int_t)job->seq, "endpoints", targets_json(job)));
}

void api_route_events_redeliver(api_request_t *req) {
    endpoint_job *job = job_new(req);
    uint64_t since_ns = 0;
    target_ctx t = {.req = req, .job = job, .include_amqp = req->caller.scope == API_SCOPE_ADMIN};
    if (job == NULL || reader_or_reply(req) == NULL || !decode_redelivery(req, true, &t.only_id, &since_ns)) return;
    if (!targets_collect(req, &t)) return;
    job->seq = since_ns;
    req->after_commit = notify_after_commit;
    api_submit(req, &job->cmd, redeliver_since_in_tx, redeliver_since_done);
}
