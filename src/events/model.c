/* events/model.c: event types, ids, and the JSON of an event. Event bodies are
 * rendered by hand into a growing buffer: everything they carry is either an id
 * ([A-Za-z0-9._:-]), a number, a name from a fixed table, or JSON that was validated
 * and stored compact before (metadata, an emitter's object), so nothing needs
 * escaping; a jansson tree per event would cost more than the row insert. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "obs/obs.h"

static const char *const type_names[EVENTS_TYPE_COUNT] = {
#define X(name, text) [EVENTS_TYPE_##name] = text,
    EVENTS_TYPES(X)
#undef X
};

const char *events_type_name(events_type type) {
    PC_ASSERT((unsigned)type < EVENTS_TYPE_COUNT);
    return type_names[type];
}

bool events_type_parse(const char *name, events_type *out) {
    for (uint32_t i = 0; i < EVENTS_TYPE_COUNT; i++) {
        if (strcmp(type_names[i], name) == 0) {
            *out = (events_type)i;
            return true;
        }
    }
    return false;
}

void events_id_format(uint64_t seq, char out[EVENTS_ID_SIZE]) {
    memcpy(out, "evt_", 4); /* "evt_%016" PRIx64 */
    pc_u64_hex(out + 4, seq, 16);
}

bool events_id_parse(const char *id, uint64_t *seq_out) {
    if (strncmp(id, "evt_", 4) != 0 || strlen(id) != EVENTS_ID_SIZE - 1) return false;
    uint64_t seq = 0;
    for (const char *c = id + 4; *c != '\0'; c++) {
        int digit = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10 : -1;
        if (digit < 0) return false;
        seq = seq << 4 | (uint64_t)digit;
    }
    if (seq == 0 || seq > (uint64_t)INT64_MAX) return false;
    *seq_out = seq;
    return true;
}

/* ---- bodies as delivered: stored whole, or rendered from a reference ---- */

static _Atomic(events_ref_render_fn) ref_renderer;

void events_ref_renderer_set(events_ref_render_fn render) { atomic_store(&ref_renderer, render); }

static bool body_is_ref(const store_event_t *row) {
    return row->body_bytes > 0 && row->body[0] == EVENTS_REF_PREFIX;
}

static pc_status body_copy(const char *body, size_t bytes, char **body_out, size_t *bytes_out) {
    char *copy = malloc(bytes + 1);
    if (copy == NULL) return PC_NO_MEMORY;
    memcpy(copy, body, bytes);
    copy[bytes] = '\0';
    *body_out = copy;
    *bytes_out = bytes;
    return PC_OK;
}

events_type events_transfer_resolved_type(uint16_t flags) {
    if (flags & LEDGER_TRANSFER_POST_PENDING) return EVENTS_TYPE_TRANSFER_POSTED;
    if (flags & LEDGER_TRANSFER_EXPIRY) return EVENTS_TYPE_TRANSFER_EXPIRED;
    return EVENTS_TYPE_TRANSFER_VOIDED;
}

ledger_pending_state events_transfer_resolved_state(events_type type) {
    return type == EVENTS_TYPE_TRANSFER_POSTED    ? LEDGER_PENDING_POSTED
           : type == EVENTS_TYPE_TRANSFER_EXPIRED ? LEDGER_PENDING_EXPIRED
                                                  : LEDGER_PENDING_VOIDED;
}

static bool transfer_ref(const store_event_t *row) {
    size_t prefix_bytes = sizeof EVENTS_TRANSFER_REF - 1;
    return row->body_bytes > prefix_bytes && memcmp(row->body, EVENTS_TRANSFER_REF, prefix_bytes) == 0 &&
           row->body[prefix_bytes] == ':';
}

/* What a transfer reference names (events.h). */
typedef struct {
    bool resolved;
    uint64_t object_timestamp_ns;       /* the row's object_id */
    uint64_t resolving_timestamp_ns;
    char resolving_id[PC_ID_SIZE];
} transfer_ref_t;

/* A decimal timestamp up to ':' or the end; *at moves past it. */
static bool ref_number(const char **at, const char *end, uint64_t *out) {
    uint64_t value = 0;
    const char *p = *at;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (value > (UINT64_MAX - 9) / 10) return false;
        value = value * 10 + (uint64_t)(*p - '0');
    }
    if (p == *at || (p < end && *p != ':')) return false;
    *at = p < end ? p + 1 : p;
    *out = value;
    return true;
}

/* Only the ledger's transfer events are stored as transfer references: any other type
 * holding one is a corrupt row, never rendered as something it is not. */
static bool transfer_type(events_type type) {
    return type == EVENTS_TYPE_TRANSFER_CREATED || type == EVENTS_TYPE_TRANSFER_POSTED ||
           type == EVENTS_TYPE_TRANSFER_VOIDED || type == EVENTS_TYPE_TRANSFER_EXPIRED;
}

static bool transfer_ref_parse(const store_event_t *row, events_type type, transfer_ref_t *ref) {
    memset(ref, 0, sizeof(*ref));
    const char *at = row->body + sizeof EVENTS_TRANSFER_REF;
    const char *end = row->body + row->body_bytes;
    ref->resolved = type != EVENTS_TYPE_TRANSFER_CREATED;
    if (!transfer_type(type) || !ref_number(&at, end, &ref->object_timestamp_ns)) return false;
    if (!ref->resolved) return at == end;
    if (at == end || !ref_number(&at, end, &ref->resolving_timestamp_ns)) return false;
    size_t id_bytes = (size_t)(end - at);
    if (id_bytes == 0 || id_bytes >= sizeof ref->resolving_id || at[-1] != ':') return false;
    memcpy(ref->resolving_id, at, id_bytes);
    ref->resolving_id[id_bytes] = '\0';
    return true; /* compared with the row's own id when read (an expiry's id is the ledger's) */
}

/* A committed transfer the reference names; a missing one is a corrupt row. */
static pc_status transfer_read(store_reader_t *reader, uint64_t timestamp_ns, const char *id, store_transfer_t *out) {
    memset(out, 0, sizeof(*out));
    pc_status status = store_read_transfer_at(reader, timestamp_ns, id, out);
    return status == PC_NOT_FOUND ? PC_STORE_CORRUPT : status;
}

/* "@transfer:...": the transfer(s) read back and rendered as ledger_insert (outbox.c)
 * rendered them when the event was made: the object's state is the one the event gave
 * it (a transfer's record is never rewritten, its state is). */
static pc_status transfer_ref_render(store_reader_t *reader, const store_event_t *row, events_type type,
                                     events_buf_t *body) {
    transfer_ref_t ref;
    if (!transfer_ref_parse(row, type, &ref)) return PC_STORE_CORRUPT;
    store_transfer_t object, resolving;
    memset(&resolving, 0, sizeof resolving);
    pc_status status = transfer_read(reader, ref.object_timestamp_ns, row->object_id, &object);
    if (status == PC_OK && ref.resolved) {
        status = transfer_read(reader, ref.resolving_timestamp_ns, ref.resolving_id, &resolving);
    }
    if (status == PC_OK) {
        events_buf_t object_json = {0}, extra = {0};
        ledger_pending_state state = events_transfer_resolved_state(type);
        if (!ref.resolved) {
            bool pending = (object.transfer.flags & LEDGER_TRANSFER_PENDING) != 0;
            state = pending ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE;
        }
        events_render_transfer(&object_json, &object.transfer, state);
        if (ref.resolved) {
            events_buf_append(&extra, "\"resolving_transfer\":", 21);
            events_render_transfer(&extra, &resolving.transfer, LEDGER_PENDING_NONE);
        }
        events_render_envelope(body, row->seq, type, row->object_id, row->object_seq, object_json.text,
                               object_json.bytes, extra.bytes ? extra.text : NULL, extra.bytes);
        if (object_json.failed || extra.failed || body->failed) status = PC_NO_MEMORY;
        events_buf_free(&object_json);
        events_buf_free(&extra);
    } else if (status == PC_STORE_CORRUPT) {
        obs_logf(OBS_LEVEL_ERROR, "events: event %" PRIu64 " names a transfer that is not stored", row->seq);
    }
    store_transfer_free(&object);
    store_transfer_free(&resolving);
    return status;
}

/* The envelope the writer would have stored, around the object the reference renders. */
static pc_status body_from_ref(store_reader_t *reader, const store_event_t *row, events_buf_t *body) {
    events_ref_render_fn render = atomic_load(&ref_renderer);
    events_type type;
    if (!events_type_parse(row->type, &type) || row->body_bytes > EVENTS_REF_BYTES_MAX) return PC_STORE_CORRUPT;
    if (transfer_ref(row)) return transfer_ref_render(reader, row, type, body);
    if (render == NULL) {
        obs_logf(OBS_LEVEL_ERROR, "events: event %" PRIu64 " is a reference and nothing renders it", row->seq);
        return PC_INTERNAL;
    }
    char *object = NULL;
    size_t object_bytes = 0;
    pc_status status = render(reader, row->body, row->body_bytes, &object, &object_bytes);
    if (status == PC_OK) {
        events_render_envelope(body, row->seq, type, row->object_id, row->object_seq, object, object_bytes, NULL, 0);
        if (body->failed) status = PC_NO_MEMORY;
    } else if (status == PC_STORE_CORRUPT) {
        obs_logf(OBS_LEVEL_ERROR, "events: event %" PRIu64 " names an object version that is not stored", row->seq);
    }
    free(object);
    return status;
}

pc_status events_body_render(store_reader_t *reader, const store_event_t *row, char **body_out, size_t *bytes_out) {
    *body_out = NULL;
    *bytes_out = 0;
    if (!body_is_ref(row)) return body_copy(row->body, row->body_bytes, body_out, bytes_out);
    events_buf_t body = {0};
    pc_status status = body_from_ref(reader, row, &body);
    if (status != PC_OK) {
        events_buf_free(&body);
        return status;
    }
    *body_out = body.text;
    *bytes_out = body.bytes;
    return PC_OK;
}

typedef struct {
    store_reader_t *reader;
    store_event_fn fn;
    void *ctx;
    pc_status status;            /* the first failure: later rows are skipped */
    events_buf_t body;           /* reused for every rendered row */
} list_render;

static void row_rendered(const store_event_t *row, void *ctx) {
    list_render *list = ctx;
    if (list->status != PC_OK) return;
    if (!body_is_ref(row)) {
        list->fn(row, list->ctx);
        return;
    }
    list->body.bytes = 0;
    list->status = body_from_ref(list->reader, row, &list->body);
    if (list->status != PC_OK) return;
    store_event_t rendered = *row;
    rendered.body = list->body.text;
    rendered.body_bytes = list->body.bytes;
    list->fn(&rendered, list->ctx);
}

pc_status events_list(store_reader_t *reader, const store_events_query_t *query, store_event_fn fn, void *ctx,
                      bool *has_more) {
    list_render list = {.reader = reader, .fn = fn, .ctx = ctx, .status = PC_OK};
    pc_status status = store_events_list(reader, query, row_rendered, &list, has_more);
    events_buf_free(&list.body);
    return status != PC_OK ? status : list.status;
}

typedef struct {
    store_reader_t *reader;
    events_copy_t *copy;
    pc_status status;
} read_one;

static void event_copied(const store_event_t *event, void *ctx) {
    read_one *one = ctx;
    one->status = events_body_render(one->reader, event, &one->copy->body, &one->copy->body_bytes);
    snprintf(one->copy->type, sizeof one->copy->type, "%s", event->type);
}

pc_status events_read(store_reader_t *reader, uint64_t seq, const char *owner, events_copy_t *out) {
    memset(out, 0, sizeof(*out));
    read_one one = {reader, out, PC_NO_MEMORY};
    pc_status status = store_events_get(reader, seq, owner, event_copied, &one);
    if (status == PC_OK) status = one.status;
    if (status != PC_OK) {
        free(out->body);
        out->body = NULL;
    }
    return status;
}

/* ---- a growing text buffer ---- */

bool events_buf_reserve(events_buf_t *buf, size_t more) {
    if (buf->failed) return false;
    if (buf->bytes + more + 1 <= buf->capacity) return true;
    size_t capacity = buf->capacity ? buf->capacity : 4096;
    while (capacity < buf->bytes + more + 1) capacity *= 2;
    char *text = realloc(buf->text, capacity);
    if (text == NULL) {
        buf->failed = true;
        return false;
    }
    buf->text = text;
    buf->capacity = capacity;
    return true;
}

void events_buf_append(events_buf_t *buf, const char *text, size_t bytes) {
    if (!events_buf_reserve(buf, bytes)) return;
    memcpy(buf->text + buf->bytes, text, bytes);
    buf->bytes += bytes;
    buf->text[buf->bytes] = '\0';
}

void events_buf_str(events_buf_t *buf, const char *text) { events_buf_append(buf, text, strlen(text)); }

void events_buf_u64(events_buf_t *buf, uint64_t value) {
    char digits[PC_INT_TEXT_SIZE];
    events_buf_append(buf, digits, pc_u64_text(digits, value));
}

void events_buf_i64(events_buf_t *buf, int64_t value) {
    char digits[PC_INT_TEXT_SIZE];
    events_buf_append(buf, digits, pc_i64_text(digits, value));
}

void events_buf_printf(events_buf_t *buf, const char *format, ...) {
    for (int attempt = 0; attempt < 2 && !buf->failed; attempt++) {
        va_list args;
        va_start(args, format);
        size_t room = buf->capacity > buf->bytes ? buf->capacity - buf->bytes : 0;
        int n = vsnprintf(room ? buf->text + buf->bytes : NULL, room, format, args);
        va_end(args);
        if (n < 0) {
            buf->failed = true;
            return;
        }
        if ((size_t)n < room) {
            buf->bytes += (size_t)n;
            return;
        }
        if (!events_buf_reserve(buf, (size_t)n)) return;
    }
}

void events_buf_free(events_buf_t *buf) {
    free(buf->text);
    memset(buf, 0, sizeof(*buf));
}

/* ---- objects ---- */

/* Ids are client ids ([A-Za-z0-9._:-]) or the ledger's own ("~expiry-..."): printable
 * ASCII without quotes or backslashes, so they go into JSON strings as they are. */
static bool json_safe(const char *text) {
    for (const char *c = text; *c != '\0'; c++) {
        if (*c < 0x20 || *c > 0x7e || *c == '"' || *c == '\\') return false;
    }
    return true;
}

/* A literal's bytes, without strlen. */
#define BUF_LIT(buf, literal) events_buf_append((buf), literal, sizeof(literal) - 1)

/* The objects below are copied together from their parts: formatting them cost more
 * than the rest of an event's insert (tests/events/test_events_render.c holds them to
 * the bytes the formats gave). */
static void flags_append(events_buf_t *buf, uint16_t flags, const char *(*name_of)(uint16_t)) {
    BUF_LIT(buf, "[");
    bool first = true;
    for (uint32_t bit = 0; bit < 16; bit++) {
        uint16_t flag = (uint16_t)(1u << bit);
        const char *name = (flags & flag) ? name_of(flag) : NULL;
        if (name == NULL) continue;
        if (first) BUF_LIT(buf, "\"");
        else BUF_LIT(buf, ",\"");
        events_buf_str(buf, name);
        BUF_LIT(buf, "\"");
        first = false;
    }
    BUF_LIT(buf, "]");
}

static void metadata_append(events_buf_t *buf, const char *metadata_json) {
    const char *text = metadata_json != NULL && metadata_json[0] != '\0' ? metadata_json : "{}";
    events_buf_str(buf, text);
}

void events_render_account(events_buf_t *buf, const ledger_account_t *a) {
    PC_ASSERT(pc_id_valid(a->id));
    PC_ASSERT(json_safe(a->currency));
    const ledger_balances_t *b = &a->balances;
    BUF_LIT(buf, "{\"id\":\"");
    events_buf_str(buf, a->id);
    BUF_LIT(buf, "\",\"currency\":\"");
    events_buf_str(buf, a->currency);
    BUF_LIT(buf, "\",\"code\":");
    events_buf_u64(buf, a->code);
    BUF_LIT(buf, ",\"flags\":");
    flags_append(buf, a->flags, ledger_account_flag_name);
    BUF_LIT(buf, ",\"debits_pending\":");
    events_buf_i64(buf, b->debits_pending);
    BUF_LIT(buf, ",\"debits_posted\":");
    events_buf_i64(buf, b->debits_posted);
    BUF_LIT(buf, ",\"credits_pending\":");
    events_buf_i64(buf, b->credits_pending);
    BUF_LIT(buf, ",\"credits_posted\":");
    events_buf_i64(buf, b->credits_posted);
    BUF_LIT(buf, ",\"metadata\":");
    metadata_append(buf, a->metadata_json);
    BUF_LIT(buf, ",\"timestamp\":");
    events_buf_u64(buf, a->timestamp_ns);
    BUF_LIT(buf, "}");
}

void events_render_transfer(events_buf_t *buf, const ledger_transfer_t *t, ledger_pending_state state) {
    PC_ASSERT(json_safe(t->id) && json_safe(t->pending_id) && json_safe(t->currency));
    BUF_LIT(buf, "{\"id\":\"");
    events_buf_str(buf, t->id);
    BUF_LIT(buf, "\",\"debit_account_id\":\"");
    events_buf_str(buf, t->debit_account_id);
    BUF_LIT(buf, "\",\"credit_account_id\":\"");
    events_buf_str(buf, t->credit_account_id);
    BUF_LIT(buf, "\",\"amount\":");
    events_buf_i64(buf, t->amount);
    BUF_LIT(buf, ",\"currency\":\"");
    events_buf_str(buf, t->currency);
    BUF_LIT(buf, "\",\"code\":");
    events_buf_u64(buf, t->code);
    BUF_LIT(buf, ",\"flags\":");
    flags_append(buf, t->flags, ledger_transfer_flag_name);
    if (t->pending_id[0] != '\0') {
        BUF_LIT(buf, ",\"pending_id\":\"");
        events_buf_str(buf, t->pending_id);
        BUF_LIT(buf, "\"");
    }
    BUF_LIT(buf, ",\"timeout_s\":");
    events_buf_u64(buf, t->timeout_s);
    BUF_LIT(buf, ",\"metadata\":");
    metadata_append(buf, t->metadata_json);
    BUF_LIT(buf, ",\"timestamp\":");
    events_buf_u64(buf, t->timestamp_ns);
    if (state != LEDGER_PENDING_NONE) {
        BUF_LIT(buf, ",\"pending_state\":\"");
        events_buf_str(buf, ledger_pending_state_name(state));
        BUF_LIT(buf, "\"");
    }
    BUF_LIT(buf, "}");
}

/* The envelope's fixed parts, shared by events_render_envelope and events_envelope_bytes. */
#define ENVELOPE_ID "{\"id\":\""
#define ENVELOPE_TYPE "\",\"object\":\"event\",\"type\":\""
#define ENVELOPE_CREATED "\",\"created\":"
#define ENVELOPE_OBJECT_ID ",\"object_id\":\""
#define ENVELOPE_OBJECT_SEQ "\",\"object_seq\":"
#define ENVELOPE_DATA ",\"data\":{\"object\":"
#define ENVELOPE_END "}}"
#define LIT_BYTES(literal) (sizeof(literal) - 1)

/* {"id","object":"event","type","created","object_id","object_seq","data":{"object":..}}
 * with 'data_extra' (already JSON members, or NULL) after the object. */
void events_render_envelope(events_buf_t *buf, uint64_t seq, events_type type, const char *object_id,
                            uint32_t object_seq, const char *object_json, size_t object_bytes,
                            const char *data_extra, size_t extra_bytes) {
    char id[EVENTS_ID_SIZE];
    events_id_format(seq, id);
    BUF_LIT(buf, ENVELOPE_ID);
    events_buf_append(buf, id, EVENTS_ID_SIZE - 1);
    BUF_LIT(buf, ENVELOPE_TYPE);
    events_buf_str(buf, events_type_name(type));
    BUF_LIT(buf, ENVELOPE_CREATED);
    events_buf_u64(buf, seq);
    BUF_LIT(buf, ENVELOPE_OBJECT_ID);
    events_buf_str(buf, object_id);
    BUF_LIT(buf, ENVELOPE_OBJECT_SEQ);
    events_buf_u64(buf, object_seq);
    BUF_LIT(buf, ENVELOPE_DATA);
    events_buf_append(buf, object_json, object_bytes);
    if (data_extra != NULL) {
        events_buf_append(buf, ",", 1);
        events_buf_append(buf, data_extra, extra_bytes);
    }
    BUF_LIT(buf, ENVELOPE_END);
}

static size_t decimal_digits(uint64_t value) {
    size_t digits = 1;
    while (value >= 10) {
        value /= 10;
        digits++;
    }
    return digits;
}

size_t events_envelope_bytes(uint64_t seq, events_type type, size_t object_id_bytes, uint32_t object_seq,
                             size_t object_bytes) {
    return LIT_BYTES(ENVELOPE_ID) + (EVENTS_ID_SIZE - 1) + LIT_BYTES(ENVELOPE_TYPE) + strlen(events_type_name(type)) +
           LIT_BYTES(ENVELOPE_CREATED) + decimal_digits(seq) + LIT_BYTES(ENVELOPE_OBJECT_ID) + object_id_bytes +
           LIT_BYTES(ENVELOPE_OBJECT_SEQ) + decimal_digits(object_seq) + LIT_BYTES(ENVELOPE_DATA) + object_bytes +
           LIT_BYTES(ENVELOPE_END);
}
