/* payments/model.c: payments and operations as C structs (for the steps) and as
 * JSON (stored as the row's document and shown by the API as it is: a GET answers the
 * stored bytes). Every amount in the document is checked against the ledger by the
 * tests; the ledger stays the only place a balance lives. */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments/pay_internal.h"

static const char *const method_names[PAY_METHOD_COUNT] = {"card", "wallet", "bank_transfer"};
static const char *const op_kind_names[PAY_OP_KIND_COUNT] = {"authorize", "challenge", "capture", "void",
                                                             "refund", "payout", "withdrawal"};

const char *pay_method_name(pay_method method) {
    return (unsigned)method < PAY_METHOD_COUNT ? method_names[method] : "unknown";
}

const char *pay_op_kind_name(pay_op_kind kind) {
    return (unsigned)kind < PAY_OP_KIND_COUNT ? op_kind_names[kind] : "unknown";
}

/* Seven bytes of the creation time in microseconds (big-endian), then five random:
 * ids made close in time sort close, so the rows a batch writes (a payment, its
 * operations, their lookups) share B-tree pages instead of each dirtying its own. */
void pay_id_new(const char *prefix, char out[PC_ID_SIZE]) {
    uint8_t bytes[12];
    uint64_t now_us = pc_wall_ns() / 1000u;
    for (int i = 0; i < 7; i++) bytes[i] = (uint8_t)(now_us >> (8 * (6 - i)));
    pc_random_pooled(bytes + 7, sizeof bytes - 7);
    static const char digits[] = "0123456789abcdef"; /* an id is public: no constant-time hex */
    char hex[2 * sizeof bytes + 1];
    for (size_t i = 0; i < sizeof bytes; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    hex[2 * sizeof bytes] = '\0';
    size_t prefix_bytes = strlen(prefix);
    PC_ASSERT(prefix_bytes + sizeof hex <= PC_ID_SIZE); /* prefixes are short literals */
    memcpy(out, prefix, prefix_bytes);
    memcpy(out + prefix_bytes, hex, sizeof hex); /* with its NUL */
}

void pay_transfer_id(char out[PC_ID_SIZE], const char *op_id, const char *suffix) {
    size_t op_bytes = strlen(op_id), suffix_bytes = strlen(suffix);
    PC_ASSERT(op_bytes + 1 + suffix_bytes < PC_ID_SIZE);
    memcpy(out, op_id, op_bytes);
    out[op_bytes] = ':';
    memcpy(out + op_bytes + 1, suffix, suffix_bytes + 1);
}

/* ---- reading trusted documents ---- */

static void doc_str(const json_t *doc, const char *key, char *out, size_t out_size) {
    const char *text = json_string_value(json_object_get(doc, key));
    pc_str_copy(out, out_size, text ? text : "");
}

static int64_t doc_int(const json_t *doc, const char *key) {
    return (int64_t)json_integer_value(json_object_get(doc, key));
}

static json_t *doc_take(const json_t *doc, const char *key) {
    json_t *value = json_object_get(doc, key);
    return value != NULL && !json_is_null(value) ? json_deep_copy(value) : NULL;
}

static json_t *str_or_null(const char *text) {
    return text != NULL && text[0] != '\0' ? json_string(text) : json_null();
}

/* ---- counted texts ---- */

pay_text_t *pay_text_new(const char *text, size_t bytes) {
    if (bytes > UINT32_MAX) return NULL;
    pay_text_t *t = malloc(sizeof *t + bytes + 1);
    if (t == NULL) return NULL;
    atomic_init(&t->refs, 1);
    t->bytes = (uint32_t)bytes;
    memcpy(t->text, text, bytes);
    t->text[bytes] = '\0';
    return t;
}

pay_text_t *pay_text_adopt(char *text) {
    pay_text_t *t = text != NULL ? pay_text_new(text, strlen(text)) : NULL;
    free(text);
    return t;
}

pay_text_t *pay_text_hold(pay_text_t *text) {
    if (text != NULL) atomic_fetch_add_explicit(&text->refs, 1, memory_order_relaxed);
    return text;
}

void pay_text_drop(pay_text_t *text) {
    if (text != NULL && atomic_fetch_sub_explicit(&text->refs, 1, memory_order_acq_rel) == 1) free(text);
}

/* ---- payments ---- */

void pay_payment_init(pay_payment_t *payment) {
    memset(payment, 0, sizeof(*payment));
    payment->live = true;
}

static void entries_drop(pay_payment_t *p) {
    for (uint32_t i = 0; i < p->entry_count; i++) pay_text_drop(p->entries[i].text);
    free(p->entries);
    p->entries = NULL;
    p->entry_count = p->entry_room = 0;
}

void pay_payment_clear(pay_payment_t *payment) {
    json_decref(payment->metadata);
    json_decref(payment->risk.detail);
    json_decref(payment->routing);
    entries_drop(payment);
    free(payment->transfers);
    pay_text_drop(payment->fixed_text);
    pay_text_drop(payment->routing_text);
    json_decref(payment->routing_of);
    sodium_memzero(payment, sizeof(*payment));
}

void pay_payment_free(pay_payment_t *payment) {
    if (payment == NULL) return;
    pay_payment_clear(payment);
    free(payment);
}

#define ENTRIES_ROOM_MIN 4   /* a payment's first entries array (entries_room) */
#define TRANSFERS_ROOM_MIN 8 /* its first transfers array (pay_payment_transfer_add) */

/* The room an array of 'count' reaches by doubling from 'room_min': always one more
 * than 'count' (0 for none). */
static uint32_t room_after(uint32_t count, uint32_t room_min) {
    if (count == 0) return 0;
    uint32_t room = room_min;
    while (room <= count && room < UINT32_MAX / 2) room *= 2;
    return room;
}

/* dst's entries and transfers: copies of src's arrays (the texts shared); false: no memory
 * (dst then has none). A copy is made to take the next entry and transfer (a dry run's
 * command, the next operation on a kept one): its arrays have room for one more, so
 * adding them is no realloc (and copy) of each array. */
static bool arrays_copy(pay_payment_t *dst, const pay_payment_t *src) {
    dst->entries = NULL;
    dst->transfers = NULL;
    dst->entry_room = room_after(src->entry_count, ENTRIES_ROOM_MIN);
    dst->transfer_room = room_after(src->transfer_count, TRANSFERS_ROOM_MIN);
    if (src->entry_count > 0) dst->entries = malloc(dst->entry_room * sizeof *dst->entries);
    if (src->transfer_count > 0) dst->transfers = malloc(dst->transfer_room * sizeof *dst->transfers);
    if ((src->entry_count > 0 && dst->entries == NULL) || (src->transfer_count > 0 && dst->transfers == NULL)) {
        free(dst->entries);
        free(dst->transfers);
        dst->entries = NULL;
        dst->transfers = NULL;
        dst->entry_count = dst->entry_room = dst->transfer_count = dst->transfer_room = 0;
        return false;
    }
    if (src->entry_count > 0) memcpy(dst->entries, src->entries, src->entry_count * sizeof *dst->entries);
    if (src->transfer_count > 0) memcpy(dst->transfers, src->transfers, src->transfer_count * sizeof *dst->transfers);
    for (uint32_t i = 0; i < dst->entry_count; i++) pay_text_hold(dst->entries[i].text);
    return true;
}

pc_status pay_payment_copy(pay_payment_t *dst, const pay_payment_t *src) {
    *dst = *src;
    dst->metadata = src->metadata ? json_deep_copy(src->metadata) : NULL;
    dst->risk.detail = src->risk.detail ? json_deep_copy(src->risk.detail) : NULL;
    dst->routing = src->routing ? json_deep_copy(src->routing) : NULL;
    bool copied = arrays_copy(dst, src);
    dst->fixed_text = pay_text_hold(src->fixed_text);
    /* its routing is a new copy, unless it is held as text only (immutable: shared) */
    dst->routing_text = src->routing == NULL ? pay_text_hold(src->routing_text) : NULL;
    dst->routing_of = NULL;
    return copied ? PC_OK : PC_NO_MEMORY;
}

pc_status pay_payment_copy_for_dry_run(pay_payment_t *dst, const pay_payment_t *src) {
    *dst = *src;
    dst->metadata = json_incref(src->metadata);
    dst->risk.detail = json_incref(src->risk.detail);
    dst->routing = json_incref(src->routing);
    bool copied = arrays_copy(dst, src);
    dst->fixed_text = pay_text_hold(src->fixed_text);
    dst->routing_text = pay_text_hold(src->routing_text);
    dst->routing_of = json_incref(src->routing_of);
    return copied ? PC_OK : PC_NO_MEMORY;
}

static json_t *method_json(const pay_payment_t *p) {
    if (p->method == PAY_METHOD_CARD) {
        return json_pack("{s:s,s:{s:s,s:s,s:s,s:i,s:i,s:s,s:b}}", "type", "card", "card", "token", p->card.token,
                         "bin", p->card.bin, "last4", p->card.last4, "exp_month", (int)p->card.exp_month,
                         "exp_year", (int)p->card.exp_year, "fingerprint", p->card.fingerprint,
                         "three_d_secure", p->card.three_d_secure);
    }
    if (p->method == PAY_METHOD_WALLET) return json_pack("{s:s,s:s}", "type", "wallet", "wallet_id", p->wallet_id);
    return json_pack("{s:s,s:{s:s,s:s}}", "type", "bank_transfer", "bank_account", "routing_number",
                     p->routing_number, "account_number", p->account_number);
}

static json_t *hold_json(const pay_payment_t *p) {
    if (p->hold_id[0] == '\0') return json_null();
    return json_pack("{s:s,s:I,s:I}", "transfer_id", p->hold_id, "amount", (json_int_t)p->hold_amount,
                     "expires_at", (json_int_t)p->hold_deadline_ns);
}

static json_t *next_action_json(const pay_payment_t *p) {
    if (p->state != PAY_STATE_REQUIRES_ACTION) return json_null();
    return json_pack("{s:s,s:s}", "type", "three_d_secure", "challenge_id", p->challenge_id);
}

static json_t *decline_json(const pay_payment_t *p) {
    if (p->decline.code[0] == '\0') return json_null();
    return json_pack("{s:s,s:s,s:s}", "code", p->decline.code, "message", p->decline.message, "source",
                     p->decline.source);
}

/* A part of the payment in its document: a deep copy, or when 'share' (a document
 * dumped and freed before the payment changes) the part itself. */
static json_t *part(json_t *value, bool share) { return share ? json_incref(value) : json_deep_copy(value); }

static json_t *risk_json(const pay_payment_t *p, bool share) {
    if (p->risk.outcome[0] == '\0') return json_null();
    json_t *detail = p->risk.detail;
    json_t *risk = detail == NULL ? json_object() : share ? json_copy(detail) : json_deep_copy(detail);
    json_object_set_new(risk, "decision_id", json_integer((json_int_t)p->risk.decision_id));
    json_object_set_new(risk, "outcome", json_string(p->risk.outcome));
    return risk;
}

static json_t *amounts_json(const pay_payment_t *p) {
    int64_t capturable = p->hold_id[0] ? p->hold_amount : 0;
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "amount_authorized", (json_int_t)p->authorized,
                     "amount_captured", (json_int_t)p->captured, "amount_refunded", (json_int_t)p->refunded,
                     "amount_capturable", (json_int_t)capturable, "fees", (json_int_t)p->fees, "fees_reversed",
                     (json_int_t)p->fees_reversed);
}

/* The document's members in three parts, in their order: the first, the fixed ones
 * (set when the payment is made, never changed: payment_render keeps their text) and
 * the rest. 'with_ops' false: "operations" is null (payment_render splices them in). */
static json_t *payment_json_first(const pay_payment_t *p) {
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "id", p->id, "object", "payment", "merchant_id",
                          p->merchant_id, "status", pay_state_name(p->state), "amount", (json_int_t)p->amount,
                          "currency", p->currency, "capture_method", p->capture_automatic ? "automatic" : "manual",
                          "purpose", p->top_up ? "top_up" : "payment");
    if (o != NULL && p->top_up) json_object_set_new(o, "wallet_id", json_string(p->wallet_id));
    return o;
}

static json_t *payment_json_fixed(const pay_payment_t *p, bool share) {
    json_t *o = json_object();
    if (o == NULL) return NULL;
    json_object_set_new(o, "payment_method", method_json(p));
    json_object_set_new(o, "payer", json_pack("{s:o,s:o,s:o,s:o}", "id", str_or_null(p->payer.id), "country",
                                              str_or_null(p->payer.country), "device_id",
                                              str_or_null(p->payer.device_id), "ip", str_or_null(p->payer.ip)));
    json_object_set_new(o, "description", str_or_null(p->description));
    json_object_set_new(o, "metadata", p->metadata ? part(p->metadata, share) : json_object());
    json_object_set_new(o, "risk", risk_json(p, share));
    return o;
}

/* The entries as objects, parsed from their texts (a read, a check: not a write's path). */
static json_t *entries_json(const pay_payment_t *p) {
    json_t *list = json_array();
    for (uint32_t i = 0; list != NULL && i < p->entry_count; i++) {
        json_t *entry = p->entries[i].text != NULL
                            ? json_loadb(p->entries[i].text->text, p->entries[i].text->bytes, 0, NULL)
                            : NULL;
        if (entry == NULL || json_array_append_new(list, entry) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    return list;
}

static json_t *transfers_json(const pay_payment_t *p) {
    json_t *list = json_array();
    for (uint32_t i = 0; list != NULL && i < p->transfer_count; i++) {
        json_array_append_new(list, json_string(p->transfers[i]));
    }
    return list;
}

/* The routing as an object: 'routing' itself, or parsed from its text when the payment
 * holds it as text only (pay_payment_routing_set). */
static json_t *routing_json(const pay_payment_t *p, bool share) {
    if (p->routing != NULL) return part(p->routing, share);
    if (p->routing_text == NULL) return json_null();
    static const char key[] = "\"routing\":";
    json_t *value = json_loads(p->routing_text->text + sizeof key - 1, JSON_DECODE_ANY, NULL);
    return value != NULL ? value : json_null();
}

static json_t *payment_json_rest(const pay_payment_t *p, bool share, bool with_ops) {
    json_t *o = json_object();
    if (o == NULL) return NULL;
    json_object_set_new(o, "routing", routing_json(p, share));
    json_object_set_new(o, "channel", str_or_null(p->channel));
    json_object_set_new(o, "channel_ref", str_or_null(p->channel_ref));
    json_object_set_new(o, "next_action", next_action_json(p));
    json_t *amounts = amounts_json(p);
    json_object_update(o, amounts);
    json_decref(amounts);
    json_object_set_new(o, "hold", hold_json(p));
    json_object_set_new(o, "pending_operation", str_or_null(p->pending_op));
    json_object_set_new(o, "decline", decline_json(p));
    json_t *ops = with_ops ? entries_json(p) : json_null();
    if (ops == NULL) {
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "operations", ops);
    json_object_set_new(o, "ledger_transfers", transfers_json(p));
    json_object_set_new(o, "created", json_integer((json_int_t)p->created_ns));
    json_object_set_new(o, "updated", json_integer((json_int_t)p->updated_ns));
    json_object_set_new(o, "version", json_integer((json_int_t)p->version));
    return o;
}

static json_t *payment_json(const pay_payment_t *p, bool share, bool with_ops) {
    json_t *o = payment_json_first(p);
    json_t *fixed = payment_json_fixed(p, share), *rest = payment_json_rest(p, share, with_ops);
    if (o == NULL || fixed == NULL || rest == NULL) {
        json_decref(o);
        o = NULL;
    } else {
        json_object_update(o, fixed);
        json_object_update(o, rest);
    }
    json_decref(fixed);
    json_decref(rest);
    return o;
}

json_t *pay_payment_json(const pay_payment_t *p) { return payment_json(p, false, true); }

void pay_payment_as_stored(pay_payment_t *p) {
    p->state_stored = p->state;
    if (p->state != PAY_STATE_REQUIRES_ACTION) p->challenge_id[0] = '\0';
    if (p->hold_id[0] == '\0') p->hold_amount = 0, p->hold_deadline_ns = 0;
    if (p->decline.code[0] == '\0') p->decline.message[0] = p->decline.source[0] = '\0';
    if (p->risk.outcome[0] == '\0') {
        p->risk.decision_id = 0;
        json_decref(p->risk.detail);
        p->risk.detail = NULL;
    }
    if (p->method != PAY_METHOD_CARD) memset(&p->card, 0, sizeof p->card);
    if (p->method != PAY_METHOD_WALLET && !p->top_up) p->wallet_id[0] = '\0';
    if (p->method != PAY_METHOD_BANK) p->routing_number[0] = p->account_number[0] = '\0';
}

static void method_from_json(const json_t *m, pay_payment_t *p) {
    const char *type = json_string_value(json_object_get(m, "type"));
    p->method = PAY_METHOD_CARD;
    for (int i = 0; type != NULL && i < PAY_METHOD_COUNT; i++) {
        if (strcmp(type, method_names[i]) == 0) p->method = (pay_method)i;
    }
    const json_t *card = json_object_get(m, "card");
    doc_str(card, "token", p->card.token, sizeof p->card.token);
    doc_str(card, "bin", p->card.bin, sizeof p->card.bin);
    doc_str(card, "last4", p->card.last4, sizeof p->card.last4);
    p->card.exp_month = (uint32_t)doc_int(card, "exp_month");
    p->card.exp_year = (uint32_t)doc_int(card, "exp_year");
    doc_str(card, "fingerprint", p->card.fingerprint, sizeof p->card.fingerprint);
    p->card.three_d_secure = json_is_true(json_object_get(card, "three_d_secure"));
    if (p->method == PAY_METHOD_WALLET) doc_str(m, "wallet_id", p->wallet_id, sizeof p->wallet_id);
    const json_t *bank = json_object_get(m, "bank_account");
    doc_str(bank, "routing_number", p->routing_number, sizeof p->routing_number);
    doc_str(bank, "account_number", p->account_number, sizeof p->account_number);
}

static void parts_from_json(const json_t *doc, pay_payment_t *p) {
    const json_t *payer = json_object_get(doc, "payer");
    doc_str(payer, "id", p->payer.id, sizeof p->payer.id);
    doc_str(payer, "country", p->payer.country, sizeof p->payer.country);
    doc_str(payer, "device_id", p->payer.device_id, sizeof p->payer.device_id);
    doc_str(payer, "ip", p->payer.ip, sizeof p->payer.ip);
    const json_t *risk = json_object_get(doc, "risk");
    if (json_is_object(risk)) {
        p->risk.decision_id = (uint64_t)doc_int(risk, "decision_id");
        doc_str(risk, "outcome", p->risk.outcome, sizeof p->risk.outcome);
        p->risk.detail = json_deep_copy(risk);
        json_object_del(p->risk.detail, "decision_id");
        json_object_del(p->risk.detail, "outcome");
    }
    const json_t *hold = json_object_get(doc, "hold");
    doc_str(hold, "transfer_id", p->hold_id, sizeof p->hold_id);
    p->hold_amount = doc_int(hold, "amount");
    p->hold_deadline_ns = (uint64_t)doc_int(hold, "expires_at");
    const json_t *decline = json_object_get(doc, "decline");
    doc_str(decline, "code", p->decline.code, sizeof p->decline.code);
    doc_str(decline, "message", p->decline.message, sizeof p->decline.message);
    doc_str(decline, "source", p->decline.source, sizeof p->decline.source);
    const json_t *next = json_object_get(doc, "next_action");
    doc_str(next, "challenge_id", p->challenge_id, sizeof p->challenge_id);
}

/* A compact dump as a counted text (NULL: no memory). */
static pay_text_t *dump_text(const json_t *value) {
    return pay_text_adopt(value != NULL ? json_dumps(value, JSON_COMPACT) : NULL);
}

/* Room for one more entry. */
static bool entries_room(pay_payment_t *p) {
    if (p->entry_count < p->entry_room) return true;
    uint32_t room = p->entry_room ? 2 * p->entry_room : ENTRIES_ROOM_MIN;
    pay_entry_t *grown = realloc(p->entries, room * sizeof *grown);
    if (grown == NULL) return false;
    p->entries = grown;
    p->entry_room = room;
    return true;
}

/* Appends an entry ('text' stolen; NULL: the payment is not rendered again: an entry
 * it shows could not be kept). Its record holds it next (held_in 0). */
static void entry_append(pay_payment_t *p, const char *id, pay_text_t *text) {
    if (text == NULL || !entries_room(p)) {
        pay_text_drop(text);
        p->parts_lost = true;
        return;
    }
    pay_entry_t *entry = &p->entries[p->entry_count++];
    pc_str_copy(entry->id, sizeof entry->id, id);
    entry->text = text;
    entry->held_in = 0;
}

pc_status pay_payment_from_json(const json_t *doc, pay_payment_t *p) {
    pay_payment_init(p);
    doc_str(doc, "id", p->id, sizeof p->id);
    doc_str(doc, "merchant_id", p->merchant_id, sizeof p->merchant_id);
    if (!pay_state_parse(json_string_value(json_object_get(doc, "status")), &p->state)) return PC_STORE_CORRUPT;
    p->state_stored = p->state;
    p->amount = doc_int(doc, "amount");
    doc_str(doc, "currency", p->currency, sizeof p->currency);
    const char *capture = json_string_value(json_object_get(doc, "capture_method"));
    p->capture_automatic = capture != NULL && strcmp(capture, "automatic") == 0;
    const char *purpose = json_string_value(json_object_get(doc, "purpose"));
    p->top_up = purpose != NULL && strcmp(purpose, "top_up") == 0;
    method_from_json(json_object_get(doc, "payment_method"), p);
    if (p->top_up) doc_str(doc, "wallet_id", p->wallet_id, sizeof p->wallet_id);
    doc_str(doc, "description", p->description, sizeof p->description);
    p->metadata = doc_take(doc, "metadata");
    p->routing = doc_take(doc, "routing");
    doc_str(doc, "channel", p->channel, sizeof p->channel);
    doc_str(doc, "channel_ref", p->channel_ref, sizeof p->channel_ref);
    p->authorized = doc_int(doc, "amount_authorized");
    p->captured = doc_int(doc, "amount_captured");
    p->refunded = doc_int(doc, "amount_refunded");
    p->fees = doc_int(doc, "fees");
    p->fees_reversed = doc_int(doc, "fees_reversed");
    doc_str(doc, "pending_operation", p->pending_op, sizeof p->pending_op);
    parts_from_json(doc, p);
    size_t index;
    json_t *value;
    json_array_foreach(json_object_get(doc, "ledger_transfers"), index, value) {
        pay_payment_transfer_add(p, json_string_value(value) ? json_string_value(value) : "");
    }
    json_array_foreach(json_object_get(doc, "operations"), index, value) {
        /* held_in 0: not known here, stored whole next time (payment_from_object knows) */
        const char *id = json_string_value(json_object_get(value, "id"));
        entry_append(p, id != NULL ? id : "", dump_text(value));
    }
    p->created_ns = (uint64_t)doc_int(doc, "created");
    p->updated_ns = (uint64_t)doc_int(doc, "updated");
    p->version = (uint32_t)doc_int(doc, "version");
    return p->parts_lost ? PC_NO_MEMORY : PC_OK;
}

/* ---- a payment's versions: one record each, appended ----
 *
 * A record is the payment's document of that version, except that an operation entry
 * that did not change since an earlier record is written as {"id", "$version": v}:
 * the record of version v holds it whole. A command thus appends its own record
 * (the payment's fields and the operation it moved) and rewrites nothing. */

/* The record of 'version' (parsed), or NULL with *status set. */
static json_t *record_load(store_reader_t *reader, const char *id, uint32_t version, pc_status *status) {
    char *text = NULL;
    size_t bytes = 0;
    *status = store_pay_version_get(reader, id, version, &text, &bytes);
    if (*status != PC_OK) {
        if (*status == PC_NOT_FOUND) *status = PC_STORE_CORRUPT; /* a row's version always has its record */
        return NULL;
    }
    json_t *doc = json_loadb(text, bytes, 0, NULL);
    free(text);
    if (!json_is_object(doc)) {
        json_decref(doc);
        *status = PC_STORE_CORRUPT;
        return NULL;
    }
    return doc;
}

/* The whole entry of operation 'op_id' in the record of 'version'. */
static json_t *entry_resolve(store_reader_t *reader, const char *id, const char *op_id, uint32_t version,
                             json_t **cache, uint32_t *cache_version, pc_status *status) {
    if (*cache == NULL || *cache_version != version) {
        json_decref(*cache);
        *cache = record_load(reader, id, version, status);
        *cache_version = version;
        if (*cache == NULL) return NULL;
    }
    size_t index;
    json_t *entry;
    json_array_foreach(json_object_get(*cache, "operations"), index, entry) {
        const char *entry_id = json_string_value(json_object_get(entry, "id"));
        if (entry_id != NULL && strcmp(entry_id, op_id) == 0 && json_object_get(entry, PAY_RECORD_REF_KEY) == NULL) {
            return json_incref(entry);
        }
    }
    *status = PC_STORE_CORRUPT;
    return NULL;
}

/* Replaces each reference in the record's operations by its whole entry. */
static pc_status record_resolve(store_reader_t *reader, const char *id, uint32_t version, json_t *record,
                                json_t *op_versions) {
    json_t *ops = json_object_get(record, "operations");
    json_t *cache = NULL;
    uint32_t cache_version = 0;
    pc_status status = PC_OK;
    size_t index;
    json_t *entry;
    json_array_foreach(ops, index, entry) {
        json_t *ref = json_object_get(entry, PAY_RECORD_REF_KEY);
        uint32_t held_in = ref != NULL ? (uint32_t)json_integer_value(ref) : version;
        if (ref != NULL) {
            const char *op_id = json_string_value(json_object_get(entry, "id"));
            json_t *whole = op_id != NULL && held_in < version
                                ? entry_resolve(reader, id, op_id, held_in, &cache, &cache_version, &status)
                                : NULL;
            if (whole == NULL) {
                if (status == PC_OK) status = PC_STORE_CORRUPT;
                break;
            }
            json_array_set_new(ops, index, whole);
        }
        if (op_versions != NULL) json_array_append_new(op_versions, json_integer(held_in));
    }
    json_decref(cache);
    return status;
}

/* The members a record names by PAY_RECORD_FIXED_KEY (payment_json_fixed's, in its order). */
static const char *const fixed_members[] = {"payment_method", "payer", "description", "metadata", "risk"};

/* Where a record's fixed members and routing are: this version's record, or the one it names. */
typedef struct {
    uint32_t fixed_held_in;
    uint32_t routing_held_in;
} record_parts_t;

/* The version a record's 'key' names (0: the record has no such member), checked to be
 * an earlier one. */
static uint32_t part_held_in(const json_t *record, const char *key, uint32_t version, pc_status *status) {
    json_t *ref = json_object_get(record, key);
    if (ref == NULL) return 0;
    json_int_t held_in = json_integer_value(ref);
    if (!json_is_integer(ref) || held_in < 1 || (uint32_t)held_in >= version) *status = PC_STORE_CORRUPT;
    return *status == PC_OK ? (uint32_t)held_in : 0;
}

/* Copies 'source''s members 'keys' into 'doc' (stolen on failure with *status set). */
static void members_copy(json_t *doc, const json_t *source, const char *const *keys, size_t count,
                         pc_status *status) {
    for (size_t i = 0; *status == PC_OK && i < count; i++) {
        json_t *value = json_object_get(source, keys[i]);
        if (value == NULL || json_object_set(doc, keys[i], value) != 0) *status = PC_STORE_CORRUPT;
    }
}

/* The record of 'version' with its "$fixed" and "$routing" members replaced, in place,
 * by the members of the records they name. */
static json_t *record_parts_resolve(store_reader_t *reader, const char *id, uint32_t version, json_t *record,
                                    record_parts_t *parts, pc_status *status) {
    parts->fixed_held_in = part_held_in(record, PAY_RECORD_FIXED_KEY, version, status);
    parts->routing_held_in = part_held_in(record, PAY_RECORD_ROUTING_KEY, version, status);
    if (*status != PC_OK || (parts->fixed_held_in == 0 && parts->routing_held_in == 0)) {
        if (parts->fixed_held_in == 0) parts->fixed_held_in = version;
        if (parts->routing_held_in == 0) parts->routing_held_in = version;
        return record;
    }
    json_t *fixed = parts->fixed_held_in ? record_load(reader, id, parts->fixed_held_in, status) : NULL;
    json_t *routing = NULL;
    if (*status == PC_OK && parts->routing_held_in != 0) {
        routing = parts->routing_held_in == parts->fixed_held_in
                      ? json_incref(fixed)
                      : record_load(reader, id, parts->routing_held_in, status);
    }
    json_t *doc = *status == PC_OK ? json_object() : NULL;
    if (*status == PC_OK && doc == NULL) *status = PC_NO_MEMORY;
    const char *key;
    json_t *value;
    json_object_foreach(record, key, value) {
        if (*status != PC_OK) break;
        if (strcmp(key, PAY_RECORD_FIXED_KEY) == 0) {
            members_copy(doc, fixed, fixed_members, sizeof fixed_members / sizeof fixed_members[0], status);
        } else if (strcmp(key, PAY_RECORD_ROUTING_KEY) == 0) {
            static const char *const routing_member[] = {"routing"};
            members_copy(doc, routing, routing_member, 1, status);
        } else if (json_object_set(doc, key, value) != 0) {
            *status = PC_NO_MEMORY;
        }
    }
    if (parts->fixed_held_in == 0) parts->fixed_held_in = version;
    if (parts->routing_held_in == 0) parts->routing_held_in = version;
    json_decref(fixed);
    json_decref(routing);
    json_decref(record);
    if (*status != PC_OK) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static pc_status payment_doc_load(store_reader_t *reader, const store_pay_object_t *object, uint32_t version,
                                  json_t **doc_out, json_t **op_versions_out, record_parts_t *parts_out);

pc_status pay_payment_doc(store_reader_t *reader, const store_pay_object_t *object, uint32_t version,
                          json_t **doc_out, json_t **op_versions_out) {
    record_parts_t parts;
    return payment_doc_load(reader, object, version, doc_out, op_versions_out, &parts);
}

static pc_status payment_doc_load(store_reader_t *reader, const store_pay_object_t *object, uint32_t version,
                                  json_t **doc_out, json_t **op_versions_out, record_parts_t *parts_out) {
    parts_out->fixed_held_in = parts_out->routing_held_in = 0;
    *doc_out = NULL;
    if (op_versions_out != NULL) *op_versions_out = NULL;
    json_t *op_versions = json_array();
    if (op_versions == NULL) return PC_NO_MEMORY;
    pc_status status = PC_OK;
    json_t *doc = NULL;
    if (object->doc_bytes > 0) { /* written whole before schema version 6 */
        doc = version == object->version ? json_loadb(object->doc, object->doc_bytes, 0, NULL) : NULL;
        status = doc != NULL ? PC_OK : version == object->version ? PC_STORE_CORRUPT : PC_NOT_FOUND;
        for (size_t i = 0; doc != NULL && i < json_array_size(json_object_get(doc, "operations")); i++) {
            json_array_append_new(op_versions, json_integer(0));
        }
    } else {
        doc = record_load(reader, object->id, version, &status);
        if (doc != NULL) doc = record_parts_resolve(reader, object->id, version, doc, parts_out, &status);
        if (doc != NULL) status = record_resolve(reader, object->id, version, doc, op_versions);
    }
    if (status != PC_OK) {
        json_decref(doc);
        json_decref(op_versions);
        return status;
    }
    *doc_out = doc;
    if (op_versions_out != NULL) *op_versions_out = op_versions;
    else json_decref(op_versions);
    return PC_OK;
}

#define REPLY_REF_PREFIX "@payment:"

bool pay_reply_ref_format(const pay_reply_t *reply, char out[PAY_REPLY_REF_BYTES_MAX]) {
    if (reply->status != PC_OK || reply->ref_id[0] == '\0' || reply->ref_version == 0) return false;
    char version[PC_INT_TEXT_SIZE];
    pc_u64_text(version, reply->ref_version);
    const char *const parts[] = {REPLY_REF_PREFIX, reply->ref_id, ":", version};
    return pc_str_join(out, PAY_REPLY_REF_BYTES_MAX, parts, 4) < PAY_REPLY_REF_BYTES_MAX;
}

bool pay_reply_ref_is(const char *stored, size_t bytes) {
    size_t prefix = strlen(REPLY_REF_PREFIX);
    return bytes > prefix && bytes < PAY_REPLY_REF_BYTES_MAX && memcmp(stored, REPLY_REF_PREFIX, prefix) == 0;
}

/* The payment of a row read (a payment's): its document parsed. */
static pc_status payment_from_object(store_reader_t *reader, const store_pay_object_t *object, pay_payment_t *out) {
    json_t *doc = NULL, *op_versions = NULL;
    record_parts_t parts;
    pc_status result = payment_doc_load(reader, object, object->version, &doc, &op_versions, &parts);
    if (result == PC_OK) result = pay_payment_from_json(doc, out);
    if (result == PC_OK) { /* 0 (a row written whole): the next record holds them */
        out->fixed_held_in = parts.fixed_held_in;
        out->routing_held_in = parts.routing_held_in;
    }
    if (result == PC_OK && json_array_size(op_versions) == out->entry_count) {
        for (uint32_t i = 0; i < out->entry_count; i++) {
            out->entries[i].held_in = (uint32_t)json_integer_value(json_array_get(op_versions, i));
        }
    }
    json_decref(op_versions);
    json_decref(doc);
    return result;
}

/* The version 'version' of payment row 'object' as compact JSON (*text_out malloc'ed). */
static pc_status version_render(store_reader_t *reader, const store_pay_object_t *object, uint32_t version,
                                char **text_out, size_t *bytes_out) {
    json_t *doc = NULL;
    pc_status status = pay_payment_doc(reader, object, version, &doc, NULL);
    if (status == PC_NOT_FOUND) status = PC_STORE_CORRUPT;
    char *text = status == PC_OK ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (status == PC_OK && text == NULL) status = PC_NO_MEMORY;
    if (status == PC_OK) {
        *text_out = text;
        *bytes_out = strlen(text);
    }
    return status;
}

pc_status pay_reply_ref_render(store_reader_t *reader, const char *stored, size_t bytes, char **text_out,
                               size_t *bytes_out) {
    *text_out = NULL;
    *bytes_out = 0;
    if (!pay_reply_ref_is(stored, bytes)) return PC_STORE_CORRUPT;
    char ref[PAY_REPLY_REF_BYTES_MAX];
    memcpy(ref, stored, bytes);
    ref[bytes] = '\0';
    char *id = ref + strlen(REPLY_REF_PREFIX), *colon = strrchr(id, ':'), *end = NULL;
    unsigned long version = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;
    if (colon == NULL || end == NULL || *end != '\0' || version == 0 || version > UINT32_MAX) return PC_STORE_CORRUPT;
    *colon = '\0';
    store_pay_object_t object;
    pc_status status = store_pay_object_get(reader, id, &object);
    if (status == PC_NOT_FOUND) return PC_STORE_CORRUPT; /* a stored reply names a stored payment */
    if (status != PC_OK) return status;
    status = strcmp(object.kind, "payment") == 0 ? version_render(reader, &object, (uint32_t)version, text_out,
                                                                  bytes_out)
                                                 : PC_STORE_CORRUPT;
    store_pay_object_free(&object);
    return status;
}

bool pay_reply_ref_format_current(const char *payment_id, char out[PAY_REPLY_REF_BYTES_MAX]) {
    if (strchr(payment_id, ':') != NULL) return false; /* ids hold none: the version's separator */
    const char *const parts[] = {REPLY_REF_PREFIX, payment_id};
    size_t n = pc_str_join(out, PAY_REPLY_REF_BYTES_MAX, parts, 2);
    return n > strlen(REPLY_REF_PREFIX) && n < PAY_REPLY_REF_BYTES_MAX;
}

bool pay_reply_ref_is_current(const char *stored, size_t bytes) {
    size_t prefix = strlen(REPLY_REF_PREFIX);
    return pay_reply_ref_is(stored, bytes) && memchr(stored + prefix, ':', bytes - prefix) == NULL;
}

/* The payment as it stands (no final answer kept yet): 202 while an op is pending. */
static pc_status current_render(store_reader_t *reader, const store_pay_object_t *object, char **text_out,
                                size_t *bytes_out, int *http_status_out) {
    pay_payment_t p;
    pc_status status = payment_from_object(reader, object, &p);
    if (status != PC_OK) return status;
    json_t *doc = pay_payment_json(&p);
    *http_status_out = p.pending_op[0] != '\0' ? 202 : 200;
    pay_payment_clear(&p);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) return PC_NO_MEMORY;
    *text_out = text;
    *bytes_out = strlen(text);
    return PC_OK;
}

pc_status pay_reply_ref_render_current(store_reader_t *reader, const char *stored, size_t bytes, char **text_out,
                                       size_t *bytes_out, int *http_status_out) {
    *text_out = NULL;
    *bytes_out = 0;
    if (!pay_reply_ref_is_current(stored, bytes)) return PC_STORE_CORRUPT;
    char id[PAY_REPLY_REF_BYTES_MAX];
    size_t prefix = strlen(REPLY_REF_PREFIX);
    memcpy(id, stored + prefix, bytes - prefix);
    id[bytes - prefix] = '\0';
    store_pay_object_t object;
    pc_status status = store_pay_object_get(reader, id, &object);
    if (status == PC_NOT_FOUND) return PC_STORE_CORRUPT; /* a stored reply names a stored payment */
    if (status != PC_OK) return status;
    if (strcmp(object.kind, "payment") != 0) {
        status = PC_STORE_CORRUPT;
    } else if (object.answer_version != 0) { /* the final answer, as it was given */
        status = version_render(reader, &object, object.answer_version, text_out, bytes_out);
        if (status == PC_OK) *http_status_out = object.answer_status;
    } else {
        status = current_render(reader, &object, text_out, bytes_out, http_status_out);
    }
    store_pay_object_free(&object);
    return status;
}

pc_status pay_payment_read(store_reader_t *reader, const char *id, pay_payment_t *out) {
    store_pay_object_t object;
    pc_status status = store_pay_object_get(reader, id, &object);
    if (status != PC_OK) return status;
    pc_status result = strcmp(object.kind, "payment") == 0 ? payment_from_object(reader, &object, out) : PC_NOT_FOUND;
    store_pay_object_free(&object);
    return result;
}

#ifdef PC_SLOW_ASSERTS
/* A payment in memory is the one its row's records make, field for field. */
static void payment_check_stored(store_reader_t *reader, const store_pay_object_t *object, const pay_payment_t *p) {
    pay_payment_t read;
    PC_ASSERT(payment_from_object(reader, object, &read) == PC_OK);
    json_t *a = pay_payment_json(p), *b = pay_payment_json(&read);
    PC_ASSERT(a != NULL && b != NULL && json_equal(a, b));
    PC_ASSERT(p->entry_count == read.entry_count);
    for (uint32_t i = 0; i < p->entry_count; i++) PC_ASSERT(p->entries[i].held_in == read.entries[i].held_in);
    PC_ASSERT(p->fixed_held_in == read.fixed_held_in && p->routing_held_in == read.routing_held_in);
    PC_ASSERT(p->state_stored == read.state_stored && strcmp(p->challenge_id, read.challenge_id) == 0);
    PC_ASSERT(p->hold_amount == read.hold_amount && p->hold_deadline_ns == read.hold_deadline_ns);
    PC_ASSERT(strcmp(p->wallet_id, read.wallet_id) == 0 && strcmp(p->decline.message, read.decline.message) == 0);
    json_decref(a);
    json_decref(b);
    pay_payment_clear(&read);
}
#endif

pc_status pay_payment_load(pay_t *pay, store_reader_t *reader, const char *id, pay_payment_t *out) {
    store_pay_object_t object;
    if (pay_recent_take_current(pay, id, out)) { /* as its last write committed it: no read */
#ifdef PC_SLOW_ASSERTS
        PC_ASSERT(store_pay_object_get(reader, id, &object) == PC_OK);
        PC_ASSERT(strcmp(object.kind, "payment") == 0 && object.version == out->version);
        payment_check_stored(reader, &object, out);
        store_pay_object_free(&object);
#endif
        return PC_OK;
    }
    pc_status status = store_pay_object_get(reader, id, &object);
    if (status != PC_OK) return status;
    pc_status result = PC_NOT_FOUND;
    if (strcmp(object.kind, "payment") == 0) {
        result = pay_recent_take(pay, id, object.version, out) ? PC_OK : payment_from_object(reader, &object, out);
#ifdef PC_SLOW_ASSERTS
        if (result == PC_OK) payment_check_stored(reader, &object, out);
#endif
    }
    store_pay_object_free(&object);
    return result;
}

void pay_flow_answer_keep(pay_flow_t *flow) {
    pay_reply_t *reply = &flow->reply;
    const pay_payment_t *p = &flow->payment;
    bool named = flow->key_written || flow->key_named;
    if (!named || !flow->has_payment || !flow->payment_written || reply->status != PC_OK) return;
    if (reply->ref_version != p->version || strcmp(reply->ref_id, p->id) != 0) return;
    flow->answer_kept_version = p->version; /* written with the row (pay_flow_row_put) */
    flow->answer_kept_status = reply->http_status;
    reply->kept = true;
}

pc_status pay_flow_row_put(pay_flow_t *flow, store_tx_t *tx) {
    const pay_payment_t *p = &flow->payment;
    if (!flow->payment_written) return PC_OK;
    store_pay_object_t row = {.created_ns = p->created_ns, .updated_ns = p->updated_ns, .version = p->version,
                              .doc = "", .answer_version = flow->answer_kept_version,
                              .answer_status = flow->answer_kept_status};
    pay_id_copy(row.id, p->id);
    /* the op in flight, for the recovery, unless a row of its own names it */
    bool op_has_row = flow->has_op && flow->op.row && strcmp(flow->op.id, p->pending_op) == 0;
    if (!op_has_row) pc_str_copy(row.pending_op, sizeof row.pending_op, p->pending_op);
    pc_str_copy(row.kind, sizeof row.kind, "payment");
    pc_str_copy(row.merchant_id, sizeof row.merchant_id, p->merchant_id);
    pc_str_copy(row.status, sizeof row.status, pay_state_name(p->state));
    return store_pay_object_put(tx, &row);
}

void pay_payment_transfer_add(pay_payment_t *payment, const char *transfer_id) {
    for (uint32_t i = 0; i < payment->transfer_count; i++) {
        if (strcmp(payment->transfers[i], transfer_id) == 0) return;
    }
    if (payment->transfer_count == payment->transfer_room) {
        uint32_t room = payment->transfer_room ? 2 * payment->transfer_room : TRANSFERS_ROOM_MIN;
        char(*grown)[PC_ID_SIZE] = realloc(payment->transfers, room * sizeof *grown);
        if (grown == NULL) {
            payment->parts_lost = true; /* the document would lack it: not rendered */
            return;
        }
        payment->transfers = grown;
        payment->transfer_room = room;
    }
    pc_str_copy(payment->transfers[payment->transfer_count++], PC_ID_SIZE, transfer_id);
}

static json_t *op_json(const pay_op_t *op, bool whole);

/* An op's JSON made its entry in a payment: less what the payment says already. */
json_t *pay_op_entry(const pay_op_t *op) { return op_json(op, false); }

void pay_payment_entry_put(pay_payment_t *payment, const pay_op_t *op, pay_text_t *text) {
    if (text == NULL) return; /* a text jansson refuses: the entry stays as it was */
    for (uint32_t i = 0; i < payment->entry_count; i++) {
        if (strcmp(payment->entries[i].id, op->id) == 0) {
            pay_text_drop(payment->entries[i].text);
            payment->entries[i].text = text;
            payment->entries[i].held_in = 0;
            return;
        }
    }
    entry_append(payment, op->id, text);
}

/* Writes one object row whose document is 'text' (owned by the caller). */
static pc_status object_put_text(store_tx_t *tx, const char *kind, const char *id, const char *merchant_id,
                                 const char *parent_id, const char *status, uint64_t created_ns,
                                 uint64_t updated_ns, uint32_t version, const char *text) {
    store_pay_object_t object = {.created_ns = created_ns, .updated_ns = updated_ns, .version = version};
    pc_str_copy(object.id, sizeof object.id, id);
    pc_str_copy(object.kind, sizeof object.kind, kind);
    pc_str_copy(object.merchant_id, sizeof object.merchant_id, merchant_id);
    pc_str_copy(object.parent_id, sizeof object.parent_id, parent_id);
    pc_str_copy(object.status, sizeof object.status, status);
    object.doc = (char *)text;
    object.doc_bytes = strlen(text);
    return object.doc_bytes <= PAY_DOC_BYTES_MAX ? store_pay_object_put(tx, &object) : PC_LIMIT_REACHED;
}

/* The entries the new record holds whole are held in this version from now on. */
static void op_versions_stored(pay_payment_t *p) {
    for (uint32_t i = 0; i < p->entry_count; i++) {
        if (p->entries[i].held_in == 0) p->entries[i].held_in = p->version;
    }
    if (p->fixed_held_in == 0) p->fixed_held_in = p->version;
    if (p->routing_held_in == 0) p->routing_held_in = p->version;
}

void pay_staged_pack(pay_staged_t *staged, store_t *store) {
    if (staged->record == NULL || staged->record_packed != NULL) return;
    size_t record_bytes = strlen(staged->record);
    if (record_bytes > PAY_DOC_BYTES_MAX) return; /* refused by the writer */
    uint8_t *packed = NULL;
    size_t packed_bytes = 0;
    if (store_pay_version_pack(store, staged->record, record_bytes, &packed, &packed_bytes) != PC_OK) return;
    staged->record_packed = packed; /* NULL: the writer stores the record as the store keeps it */
    staged->record_packed_bytes = packed_bytes;
}

void pay_staged_clear(pay_staged_t *staged) {
    free(staged->doc);
    free(staged->record);
    free(staged->record_packed);
    free(staged->op_text);
    pay_text_drop(staged->op_entry_text);
    pay_payment_free(staged->payment);
    memset(staged, 0, sizeof *staged);
}

/* The payment's next version rendered: its document (json_dumps of pay_payment_json,
 * byte for byte) and its record, from one dump of the fields and one of each entry. */
static char *dump_free(json_t *value) {
    char *text = value != NULL ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(value);
    return text;
}

/* The text of the fixed members, '"payment_method":…,"risk":{…}': made once, kept. */
static const char *fixed_text(pay_payment_t *p) {
    char *written = p->fixed_text == NULL ? pay_render_fixed(p) : NULL;
#ifdef PC_SLOW_ASSERTS
    char *check = written != NULL ? dump_free(payment_json_fixed(p, true)) : NULL;
    PC_ASSERT(check == NULL || (strncmp(check + 1, written, strlen(written)) == 0 &&
                                strlen(check) == strlen(written) + 2)); /* written == dumped less braces */
    free(check);
#endif
    if (written != NULL) p->fixed_text = pay_text_adopt(written);
    if (p->fixed_text == NULL) {
        char *text = dump_free(payment_json_fixed(p, true));
        size_t bytes = text != NULL ? strlen(text) : 0;
        if (bytes >= 2) p->fixed_text = pay_text_new(text + 1, bytes - 2); /* less the braces */
        free(text);
    }
    return p->fixed_text != NULL ? p->fixed_text->text : NULL;
}

/* The document less its operations' entries: the first members, the fixed ones' kept
 * text, the rest (a compact object's text is its members' joined by commas). */
static char *payment_head(pay_payment_t *p) {
    char *first = dump_free(payment_json_first(p));
    const char *fixed = fixed_text(p);
    char *rest = dump_free(payment_json_rest(p, true, false));
    char *head = NULL;
    if (first != NULL && fixed != NULL && rest != NULL) {
        size_t first_bytes = strlen(first), fixed_bytes = strlen(fixed), rest_bytes = strlen(rest);
        head = malloc(first_bytes + fixed_bytes + rest_bytes + 2);
        if (head != NULL) {
            memcpy(head, first, first_bytes - 1);                   /* less its '}' */
            head[first_bytes - 1] = ',';
            memcpy(head + first_bytes, fixed, fixed_bytes);
            head[first_bytes + fixed_bytes] = ',';
            memcpy(head + first_bytes + fixed_bytes + 1, rest + 1, rest_bytes); /* less its '{' */
        }
    }
    free(first);
    free(rest);
    return head;
}

void pay_payment_routing_set(pay_payment_t *p, const gw_decision_t *decision) {
    json_decref(p->routing);
    pay_text_drop(p->routing_text);
    json_decref(p->routing_of);
    p->routing_of = NULL;
    p->routing_text = pay_render_routing(decision);
    p->routing = p->routing_text == NULL ? gw_decision_json(decision) : NULL;
    p->routing_held_in = 0; /* the next record holds it whole */
}

/* '"routing":…': kept while the payment holds the same routing (it is replaced whole);
 * a routing held as text only ('routing' NULL, pay_payment_routing_set) is that text. */
static const char *routing_text(pay_payment_t *p) {
    if (p->routing_text != NULL && p->routing_of == p->routing) return p->routing_text->text;
    if (p->routing == NULL) { /* not routed yet (a first attempt's persist): no object to dump */
        static const char null_text[] = "\"routing\":null";
        pay_text_drop(p->routing_text);
        json_decref(p->routing_of);
        p->routing_of = NULL;
        p->routing_text = pay_text_new(null_text, sizeof null_text - 1);
        return p->routing_text != NULL ? p->routing_text->text : NULL;
    }
    json_t *member = json_object();
    json_object_set_new(member, "routing", json_incref(p->routing));
    char *text = dump_free(member);
    size_t bytes = text != NULL ? strlen(text) : 0;
    pay_text_drop(p->routing_text);
    json_decref(p->routing_of);
    p->routing_text = bytes >= 2 ? pay_text_new(text + 1, bytes - 2) : NULL;
    p->routing_of = p->routing_text != NULL ? json_incref(p->routing) : NULL;
    free(text);
    return p->routing_text != NULL ? p->routing_text->text : NULL;
}

/* The members dumped by jansson, its "operations":null replaced by the entries. */
static bool payment_spliced(pay_payment_t *p, char **text_out, char **record_out) {
    static const char placeholder[] = "\"operations\":null";
    char *head = payment_head(p);
    /* the last one: metadata (before it) may hold that text too, nothing after it can */
    const char *at = NULL;
    for (const char *s = head; s != NULL && (s = strstr(s, placeholder)) != NULL; s++) at = s;
    if (at == NULL) {
        free(head);
        return false;
    }
    char full_stack[4096], record_stack[4096];
    pay_out_t full = PAY_OUT_INIT(full_stack), record = PAY_OUT_INIT(record_stack);
    size_t before = (size_t)(at - head) + strlen("\"operations\":");
    pay_out_add(&full, head, before);
    pay_out_add(&record, head, before);
    pay_render_ops(p, &full, &record);
    pay_out_add(&full, at + strlen(placeholder), strlen(at + strlen(placeholder)));
    pay_out_add(&record, at + strlen(placeholder), strlen(at + strlen(placeholder)));
    free(head);
    if (record.failed) full.failed = true;
    *text_out = pay_out_take(&full);
    *record_out = pay_out_take(&record);
    return *text_out != NULL && *record_out != NULL;
}

static pc_status payment_render(pay_payment_t *p, char **text_out, char **record_out) {
    *text_out = *record_out = NULL;
    if (p->parts_lost) return PC_NO_MEMORY;
    const char *fixed = fixed_text(p), *routing = routing_text(p);
    if (fixed == NULL || routing == NULL) return PC_NO_MEMORY;
    if (!pay_render_payment(p, fixed, routing, text_out, record_out) &&
        !payment_spliced(p, text_out, record_out)) {
        free(*text_out);
        free(*record_out);
        *text_out = *record_out = NULL;
        return PC_NO_MEMORY;
    }
#ifdef PC_SLOW_ASSERTS
    json_t *whole = payment_json(p, true, true);
    char *dumped = whole != NULL ? json_dumps(whole, JSON_COMPACT) : NULL;
    PC_ASSERT(dumped != NULL && strcmp(dumped, *text_out) == 0); /* written == dumped whole */
    free(dumped);
    json_decref(whole);
#endif
    return PC_OK;
}

/* The staged texts when they are of the version about to be written (they were
 * rendered from the same state by a dry run of this command): taken, with the times
 * they were rendered with. */
static bool payment_staged_take(pay_payment_t *p, pay_staged_t *staged, char **text_out, char **record_out,
                                uint8_t **packed_out, size_t *packed_bytes_out) {
    if (staged == NULL || staged->version == 0 || staged->version != p->version + 1) return false;
    p->version = staged->version;
    p->updated_ns = staged->updated_ns;
    if (p->created_ns == 0) p->created_ns = staged->created_ns;
    *text_out = staged->doc;
    *record_out = staged->record;
    *packed_out = staged->record_packed;
    *packed_bytes_out = staged->record_packed_bytes;
    staged->doc = staged->record = NULL;
    staged->record_packed = NULL;
    staged->record_packed_bytes = 0;
    staged->version = 0;
    staged->taken = true;
#ifdef PC_SLOW_ASSERTS
    char *text = NULL, *record = NULL;
    PC_ASSERT(payment_render(p, &text, &record) == PC_OK);
    PC_ASSERT(strcmp(text, *text_out) == 0 && strcmp(record, *record_out) == 0); /* the dry run saw this state */
    free(text);
    free(record);
#endif
    return true;
}

pc_status pay_payment_put(store_tx_t *tx, pay_payment_t *p, pay_staged_t *staged, char **doc_out) {
    *doc_out = NULL;
    char *text = NULL, *record = NULL;
    uint8_t *packed = NULL; /* the record's stored form, made by the dry run's thread */
    size_t packed_bytes = 0;
    pc_status status = PC_OK;
    if (tx == NULL || !payment_staged_take(p, staged, &text, &record, &packed, &packed_bytes)) {
        p->version++;
        p->updated_ns = pc_wall_ns();
        if (p->created_ns == 0) p->created_ns = p->updated_ns;
        status = payment_render(p, &text, &record);
    }
    if (tx == NULL) { /* a dry run: the texts are the command's */
        if (status == PC_OK && staged != NULL) {
            free(staged->doc);
            free(staged->record);
            free(staged->record_packed); /* made again for this record (pay_staged_pack) */
            staged->record_packed = NULL;
            staged->record_packed_bytes = 0;
            staged->version = p->version;
            staged->created_ns = p->created_ns;
            staged->updated_ns = p->updated_ns;
            staged->doc = text;
            staged->record = record;
            op_versions_stored(p);
            return PC_OK;
        }
        free(text);
        free(record);
        return status;
    }
    size_t record_bytes = record != NULL ? strlen(record) : 0;
    if (status == PC_OK && record_bytes > PAY_DOC_BYTES_MAX) status = PC_LIMIT_REACHED;
    if (status == PC_OK) {
        status = store_pay_version_put_packed(tx, p->id, p->version, record, record_bytes, packed, packed_bytes);
    }
    free(record);
    free(packed);
    /* the row (the listing's columns; its document is the records') is written once at
     * the end of the command, with the answer it makes final (pay_flow_row_put) */
    if (status == PC_OK) {
        op_versions_stored(p);
        *doc_out = text;
    } else {
        free(text);
    }
    return status;
}

/* ---- operations ---- */

static json_t *attempts_json(const pay_op_t *op) {
    json_t *list = json_array();
    for (uint32_t i = 0; i < op->attempt_count; i++) {
        const pay_attempt_t *a = &op->attempts[i];
        json_array_append_new(list, json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:b,s:I}", "number", (int)a->number,
                                              "channel", a->channel, "idempotency_key", a->idempotency_key, "op",
                                              gw_op_name(a->op), "outcome", gw_outcome_name(a->outcome),
                                              "response_code", a->response_code, "status_inquired",
                                              a->status_inquired, "created", (json_int_t)a->created_ns));
    }
    return list;
}

/* Sets 'value' (stolen) as 'key': false when there is no value (a text jansson refused). */
static bool member_put(json_t *o, const char *key, json_t *value) {
    return value != NULL && json_object_set_new_nocheck(o, key, value) == 0;
}

/* A text the object would hold only when 'kept': still checked as jansson checks it. */
static bool text_checked(json_t *o, const char *key, const char *text, bool kept) {
    if (kept) return member_put(o, key, json_string(text));
    json_t *value = json_string(text);
    json_decref(value);
    return value != NULL;
}

/* The op as an object; without "object", "parent_id" and "merchant_id" (its entry in a
 * payment: the payment says them) when not 'whole'. The first members fail the whole
 * object on a text jansson refuses, as json_pack does; a later one is left out. */
static json_t *op_json(const pay_op_t *op, bool whole) {
    json_t *o = json_object();
    bool ok = o != NULL && member_put(o, "id", json_string(op->id));
    if (ok && whole) ok = member_put(o, "object", json_string("operation"));
    ok = ok && member_put(o, "type", json_string(pay_op_kind_name(op->kind)));
    ok = ok && text_checked(o, "parent_id", op->parent_id, whole);
    ok = ok && text_checked(o, "merchant_id", op->merchant_id, whole);
    ok = ok && member_put(o, "status", json_string(op->status));
    ok = ok && member_put(o, "amount", json_integer((json_int_t)op->amount));
    ok = ok && member_put(o, "currency", json_string(op->currency));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    if (op->kind == PAY_OP_CAPTURE) json_object_set_new(o, "final", json_boolean(op->final_capture));
    if (op->kind == PAY_OP_CAPTURE || op->kind == PAY_OP_REFUND) {
        json_object_set_new(o, op->kind == PAY_OP_CAPTURE ? "fee" : "fee_reversed", json_integer(op->fee));
    }
    json_object_set_new(o, "channel", str_or_null(op->channel));
    json_object_set_new(o, "channel_ref", str_or_null(op->channel_ref));
    json_object_set_new(o, "response_code", str_or_null(op->response_code));
    json_object_set_new(o, "message", str_or_null(op->message));
    if (op->reserve_id[0]) json_object_set_new(o, "reserve_transfer_id", json_string(op->reserve_id));
    if (op->routing_number[0]) {
        json_object_set_new(o, "bank_account", json_pack("{s:s,s:s}", "routing_number", op->routing_number,
                                                         "account_number", op->account_number));
    }
    if (op->wallet_id[0]) json_object_set_new(o, "wallet_id", json_string(op->wallet_id));
    json_object_set_new(o, "attempts", attempts_json(op));
    json_t *transfers = json_array();
    for (uint32_t i = 0; i < op->transfer_count; i++) json_array_append_new(transfers, json_string(op->transfers[i]));
    json_object_set_new(o, "ledger_transfers", transfers);
    json_object_set_new(o, "created", json_integer((json_int_t)op->created_ns));
    json_object_set_new(o, "updated", json_integer((json_int_t)op->updated_ns));
    json_object_set_new(o, "version", json_integer((json_int_t)op->version));
    return o;
}

json_t *pay_op_json(const pay_op_t *op) { return op_json(op, true); }

static void attempts_from_json(const json_t *list, pay_op_t *op) {
    size_t index;
    json_t *a;
    json_array_foreach(list, index, a) {
        if (op->attempt_count == GW_ATTEMPTS_MAX) break;
        pay_attempt_t *at = &op->attempts[op->attempt_count++];
        at->number = (uint32_t)doc_int(a, "number");
        doc_str(a, "channel", at->channel, sizeof at->channel);
        doc_str(a, "idempotency_key", at->idempotency_key, sizeof at->idempotency_key);
        const char *gop = json_string_value(json_object_get(a, "op"));
        const char *outcome = json_string_value(json_object_get(a, "outcome"));
        for (int i = 0; gop != NULL && i < GW_OP_COUNT; i++) {
            if (strcmp(gop, gw_op_name((gw_op)i)) == 0) at->op = (gw_op)i;
        }
        at->outcome = GW_OUTCOME_UNKNOWN;
        for (int i = 0; outcome != NULL && i < GW_OUTCOME_COUNT; i++) {
            if (strcmp(outcome, gw_outcome_name((gw_outcome)i)) == 0) at->outcome = (gw_outcome)i;
        }
        doc_str(a, "response_code", at->response_code, sizeof at->response_code);
        at->status_inquired = json_is_true(json_object_get(a, "status_inquired"));
        at->created_ns = (uint64_t)doc_int(a, "created");
    }
}

pc_status pay_op_from_json(const json_t *doc, pay_op_t *op) {
    memset(op, 0, sizeof(*op));
    doc_str(doc, "id", op->id, sizeof op->id);
    const char *type = json_string_value(json_object_get(doc, "type"));
    op->kind = PAY_OP_KIND_COUNT;
    for (int i = 0; type != NULL && i < PAY_OP_KIND_COUNT; i++) {
        if (strcmp(type, op_kind_names[i]) == 0) op->kind = (pay_op_kind)i;
    }
    if (op->kind == PAY_OP_KIND_COUNT) return PC_STORE_CORRUPT;
    doc_str(doc, "parent_id", op->parent_id, sizeof op->parent_id);
    doc_str(doc, "merchant_id", op->merchant_id, sizeof op->merchant_id);
    doc_str(doc, "status", op->status, sizeof op->status);
    memcpy(op->status_stored, op->status, sizeof op->status_stored);
    op->amount = doc_int(doc, "amount");
    doc_str(doc, "currency", op->currency, sizeof op->currency);
    op->final_capture = json_is_true(json_object_get(doc, "final"));
    op->fee = doc_int(doc, op->kind == PAY_OP_CAPTURE ? "fee" : "fee_reversed");
    doc_str(doc, "channel", op->channel, sizeof op->channel);
    doc_str(doc, "channel_ref", op->channel_ref, sizeof op->channel_ref);
    doc_str(doc, "response_code", op->response_code, sizeof op->response_code);
    doc_str(doc, "message", op->message, sizeof op->message);
    doc_str(doc, "reserve_transfer_id", op->reserve_id, sizeof op->reserve_id);
    const json_t *bank = json_object_get(doc, "bank_account");
    doc_str(bank, "routing_number", op->routing_number, sizeof op->routing_number);
    doc_str(bank, "account_number", op->account_number, sizeof op->account_number);
    doc_str(doc, "wallet_id", op->wallet_id, sizeof op->wallet_id);
    attempts_from_json(json_object_get(doc, "attempts"), op);
    size_t index;
    json_t *t;
    json_array_foreach(json_object_get(doc, "ledger_transfers"), index, t) {
        if (op->transfer_count < PAY_OP_TRANSFERS_MAX) {
            snprintf(op->transfers[op->transfer_count++], PC_ID_SIZE, "%s", json_string_value(t));
        }
    }
    op->created_ns = (uint64_t)doc_int(doc, "created");
    op->updated_ns = (uint64_t)doc_int(doc, "updated");
    op->version = (uint32_t)doc_int(doc, "version");
    return PC_OK;
}

/* The op of row 'object' (whose doc is empty) from its payment's latest record: the
 * entry and the row were written by one command, so the entry is at least as new as
 * the row (newer when the payment moved on between the two reads). */
static pc_status op_from_payment(store_reader_t *reader, const store_pay_object_t *object, pay_op_t *out) {
    store_pay_object_t parent;
    pc_status status = store_pay_object_get(reader, object->parent_id, &parent);
    if (status == PC_NOT_FOUND) return PC_STORE_CORRUPT; /* an op's payment is never removed */
    if (status != PC_OK) return status;
    json_t *doc = NULL;
    status = strcmp(parent.kind, "payment") == 0 ? pay_payment_doc(reader, &parent, parent.version, &doc, NULL)
                                                 : PC_STORE_CORRUPT;
    store_pay_object_free(&parent);
    const json_t *entry = NULL;
    size_t index;
    json_t *value;
    json_array_foreach(json_object_get(doc, "operations"), index, value) {
        const char *entry_id = json_string_value(json_object_get(value, "id"));
        if (entry_id != NULL && strcmp(entry_id, object->id) == 0) entry = value;
    }
    if (status == PC_OK) status = entry != NULL ? pay_op_from_json(entry, out) : PC_STORE_CORRUPT;
    json_decref(doc);
    if (status == PC_OK && out->version < object->version) status = PC_STORE_CORRUPT;
    if (status == PC_OK) { /* what an entry leaves out (pay_op_entry) */
        pc_str_copy(out->parent_id, sizeof out->parent_id, object->parent_id);
        pc_str_copy(out->merchant_id, sizeof out->merchant_id, object->merchant_id);
    }
    return status;
}

pc_status pay_op_read(store_reader_t *reader, const char *id, pay_op_t *out) {
    store_pay_object_t object;
    pc_status status = store_pay_object_get(reader, id, &object);
    if (status != PC_OK) return status;
    pc_status result = PC_NOT_FOUND;
    if (strcmp(object.kind, "op") == 0 && object.doc_bytes == 0) {
        result = op_from_payment(reader, &object, out);
    } else if (strcmp(object.kind, "op") == 0) {
        json_t *doc = json_loadb(object.doc, object.doc_bytes, 0, NULL);
        result = doc != NULL ? pay_op_from_json(doc, out) : PC_STORE_CORRUPT;
        json_decref(doc);
    }
    if (result == PC_OK) out->row = true;
    store_pay_object_free(&object);
    return result;
}

pc_status pay_op_read_in(store_reader_t *reader, const char *payment_id, const char *op_id, pay_op_t *out) {
    store_pay_object_t payment;
    pc_status status = store_pay_object_get(reader, payment_id, &payment);
    if (status != PC_OK) return status;
    bool ok = strcmp(payment.kind, "payment") == 0 && pc_id_copy(payment.parent_id, payment_id) &&
              pc_id_copy(payment.id, op_id);
    payment.version = 0; /* the row's: any version of the entry will do */
    status = ok ? op_from_payment(reader, &payment, out) : PC_NOT_FOUND;
    store_pay_object_free(&payment);
    return status;
}

/* Written directly (render.c), or dumped by jansson when a text in it is not plain. */
static char *op_text(const pay_op_t *op, bool entry) {
    char *text = entry ? pay_render_op_entry(op) : pay_render_op(op);
#ifdef PC_SLOW_ASSERTS
    char *check = text != NULL ? dump_free(op_json(op, !entry)) : NULL;
    PC_ASSERT(text == NULL || (check != NULL && strcmp(text, check) == 0)); /* written == dumped */
    free(check);
#endif
    return text != NULL ? text : dump_free(op_json(op, !entry));
}

pay_text_t *pay_op_entry_text(const pay_op_t *op) {
    pay_text_t *text = pay_render_op_entry_text(op);
#ifdef PC_SLOW_ASSERTS
    char *check = text != NULL ? dump_free(op_json(op, false)) : NULL;
    PC_ASSERT(text == NULL || (check != NULL && strcmp(text->text, check) == 0)); /* written == dumped */
    free(check);
#endif
    return text != NULL ? text : pay_text_adopt(dump_free(op_json(op, false)));
}

/* The op's row text ("" when its payment's record holds it: 'in_payment'); its entry's
 * text in the payment (pay_op_entry_text) into staged->op_entry_text when 'staged' is
 * given. NULL: a text jansson refuses, or no memory. */
static char *op_render(const pay_op_t *op, pay_staged_t *staged, bool in_payment) {
    char *text = in_payment ? NULL : op_text(op, false);
    if (!in_payment && text == NULL) return NULL;
    if (in_payment || staged != NULL) {
        pay_text_t *entry = pay_op_entry_text(op);
        if (entry == NULL) {
            free(text);
            return NULL;
        }
        if (staged != NULL) {
            pay_text_drop(staged->op_entry_text);
            staged->op_entry_text = entry;
            staged->op_entry_version = op->version;
        } else {
            pay_text_drop(entry);
        }
    }
    return in_payment ? pc_strdup("") : text; /* its payment's record holds it: the row keeps "" */
}

/* As payment_staged_take, for the op's row. */
static char *op_staged_take(pay_op_t *op, pay_staged_t *staged, bool in_payment) {
    if (staged == NULL || staged->op_version == 0 || staged->op_version != op->version + 1) return NULL;
    if (staged->op_text == NULL || (staged->op_text[0] == '\0') != in_payment) return NULL; /* rendered as the other */
    op->version = staged->op_version;
    op->updated_ns = staged->op_updated_ns;
    if (op->created_ns == 0) op->created_ns = staged->op_created_ns;
    char *text = staged->op_text;
    staged->op_text = NULL;
    staged->op_version = 0;
#ifdef PC_SLOW_ASSERTS
    char *rendered = op_render(op, NULL, in_payment);
    PC_ASSERT(rendered != NULL && strcmp(rendered, text) == 0); /* the dry run saw this state */
    free(rendered);
#endif
    return text;
}

pc_status pay_op_put(store_tx_t *tx, pay_op_t *op, pay_staged_t *staged, bool in_payment, bool row) {
    char *text = tx != NULL ? op_staged_take(op, staged, in_payment) : NULL;
    if (text == NULL) {
        op->version++;
        op->updated_ns = pc_wall_ns();
        if (op->created_ns == 0) op->created_ns = op->updated_ns;
        text = op_render(op, staged, in_payment);
        if (text == NULL) return PC_NO_MEMORY;
    }
    if (tx == NULL) { /* a dry run */
        if (staged != NULL) {
            free(staged->op_text);
            staged->op_version = op->version;
            staged->op_created_ns = op->created_ns;
            staged->op_updated_ns = op->updated_ns;
            staged->op_text = text;
        } else {
            free(text);
        }
        return PC_OK;
    }
    pc_status status = PC_OK;
    if (row || !in_payment) { /* an op of its own always has its row */
        status = object_put_text(tx, "op", op->id, op->merchant_id, op->parent_id, op->status, op->created_ns,
                                 op->updated_ns, op->version, text);
        op->row = op->row || status == PC_OK;
    }
    free(text);
    return status;
}

pay_attempt_t *pay_op_attempt_put(pay_op_t *op, const gw_attempt_t *attempt) {
    pay_attempt_t *at = NULL;
    for (uint32_t i = 0; i < op->attempt_count && at == NULL; i++) {
        if (strcmp(op->attempts[i].idempotency_key, attempt->idempotency_key) == 0) at = &op->attempts[i];
    }
    if (at == NULL) {
        if (op->attempt_count == GW_ATTEMPTS_MAX) return NULL;
        at = &op->attempts[op->attempt_count++];
        at->created_ns = pc_wall_ns();
    }
    at->number = attempt->number;
    pc_str_copy(at->channel, sizeof at->channel, attempt->channel);
    pc_str_copy(at->idempotency_key, sizeof at->idempotency_key, attempt->idempotency_key);
    at->op = attempt->op;
    at->outcome = attempt->outcome;
    pc_str_copy(at->response_code, sizeof at->response_code, attempt->response_code);
    at->status_inquired = attempt->status_inquired;
    return at;
}

void pay_op_attempts_from_result(pay_op_t *op, const gw_result_t *result) {
    for (uint32_t i = 0; i < result->attempt_count; i++) (void)pay_op_attempt_put(op, &result->attempts[i]);
}
