/* payments/render.c: texts written straight into a buffer instead of built as jansson
 * objects and dumped. Each writer gives the bytes json_dumps(JSON_COMPACT) gives for
 * the object model.c builds (members in the same order), or NULL when a text in it is
 * not plain printable ASCII: the caller then dumps through jansson, which alone knows
 * how it escapes the rest. Slow-assert builds and tests/payments/test_pay_render.c
 * compare the two. Building and dumping an operation cost more than writing it in a
 * whole payment's request path (jansson's buffer grows by reallocs, each object is a
 * hash table). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments/pay_internal.h"

bool pay_out_grow(pay_out_t *o, size_t bytes) {
    size_t room = o->room * 2;
    while (o->bytes + bytes + 1 > room) room *= 2;
    char *grown = o->heap ? realloc(o->text, room) : malloc(room);
    if (grown == NULL) {
        o->failed = true;
        return false;
    }
    if (!o->heap) memcpy(grown, o->text, o->bytes);
    o->text = grown;
    o->room = room;
    o->heap = true;
    return true;
}

#define OUT_LIT(o, literal) pay_out_add((o), literal, sizeof(literal) - 1)
#define PAY_RENDER_JSON_DEPTH_MAX 32 /* metadata and risk detail nest a level or two */

bool pay_text_plain(const char *text) {
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if (*c < 0x20 || *c > 0x7E) return false;
    }
    return true;
}

/* Room for 'bytes' more at the end of the text (NULL: the text failed). */
static char *out_room(pay_out_t *o, size_t bytes) {
    if (o->failed) return NULL;
    if (o->bytes + bytes + 1 > o->room && !pay_out_grow(o, bytes)) return NULL;
    return o->text + o->bytes;
}

#define BYTES_ONES 0x0101010101010101ull
#define BYTES_HIGHS 0x8080808080808080ull

/* Non-zero when one of the 8 bytes in 'x' is not printable ASCII, or is '"' or '\\'
 * (exact as a yes or no; which byte, not said): 8 bytes at a time, no branch each. */
static inline uint64_t word_special(uint64_t x) {
    uint64_t quote = x ^ (BYTES_ONES * '"'), backslash = x ^ (BYTES_ONES * '\\');
    uint64_t below = (x - BYTES_ONES * 0x20) & ~x;    /* a byte < 0x20 */
    uint64_t above = (x + BYTES_ONES) | x;            /* a byte > 0x7E */
    uint64_t quotes = (quote - BYTES_ONES) & ~quote;  /* a byte == '"' */
    uint64_t backslashes = (backslash - BYTES_ONES) & ~backslash;
    return (below | above | quotes | backslashes) & BYTES_HIGHS;
}

/* The 'n' (< 8) bytes of 'text' in one word, each at least once, the rest ' ' (as is):
 * loaded as two overlapping halves, or (n < 4) bytes 0, n/2 and n-1, which are all of
 * them. Instead of a byte at a time: most texts are short (codes, names, amounts). */
static inline uint64_t short_word(const char *text, size_t n) {
    if (n >= 4) {
        uint32_t head, tail;
        memcpy(&head, text, 4);
        memcpy(&tail, text + n - 4, 4);
        return (uint64_t)head | (uint64_t)tail << 32;
    }
    uint64_t word = BYTES_ONES * ' ';
    if (n == 0) return word;
    unsigned char *bytes = (unsigned char *)&word;
    bytes[0] = (unsigned char)text[0];
    bytes[1] = (unsigned char)text[n / 2];
    bytes[2] = (unsigned char)text[n - 1];
    return word;
}

/* The bytes jansson writes as they are in a string (printable ASCII but '"', '\\'):
 * 8 at a time, the last 8 (overlapping those checked) for what is left. */
static bool chars_as_is(const char *text, size_t n) {
    if (n < 8) return word_special(short_word(text, n)) == 0;
    uint64_t x;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&x, text + i, 8);
        if (word_special(x) != 0) return false;
    }
    if (i == n) return true;
    memcpy(&x, text + n - 8, 8);
    return word_special(x) == 0;
}

/* The 'n' bytes of 'text' as a JSON string, escaped as jansson escapes printable
 * ASCII; fails the text if one is not (a NUL included). The common text needs no
 * escape: one check of 8 bytes at a time, then a single copy. */
static void out_chars(pay_out_t *o, const char *text, size_t n) {
    if (chars_as_is(text, n)) {
        char *at = out_room(o, n + 2);
        if (at == NULL) return;
        at[0] = '"';
        memcpy(at + 1, text, n);
        at[n + 1] = '"';
        o->bytes += n + 2;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c > 0x7E) {
            o->failed = true;
            return;
        }
    }
    OUT_LIT(o, "\"");
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '"') OUT_LIT(o, "\\\"");
        else if (text[i] == '\\') OUT_LIT(o, "\\\\");
        else pay_out_add(o, &text[i], 1);
    }
    OUT_LIT(o, "\"");
}

/* "text", escaped as jansson escapes printable ASCII; fails the text if it is not. */
static void out_str(pay_out_t *o, const char *text) { out_chars(o, text, strlen(text)); }

static void out_str_or_null(pay_out_t *o, const char *text) {
    if (text[0] == '\0') OUT_LIT(o, "null");
    else out_str(o, text);
}

size_t pay_int_text(char out[PAY_INT_TEXT_SIZE], int64_t value) { return pc_i64_text(out, value); }

static void out_int(pay_out_t *o, int64_t value) {
    char text[PAY_INT_TEXT_SIZE];
    pay_out_add(o, text, pay_int_text(text, value));
}

static void out_bool(pay_out_t *o, bool value) {
    if (value) OUT_LIT(o, "true");
    else OUT_LIT(o, "false");
}

char *pay_out_take(pay_out_t *o) {
    if (o->failed) {
        if (o->heap) free(o->text);
        return NULL;
    }
    char *text = o->heap ? realloc(o->text, o->bytes + 1) : malloc(o->bytes + 1);
    if (text == NULL) {
        if (o->heap) free(o->text);
        return NULL;
    }
    if (!o->heap) memcpy(text, o->text, o->bytes);
    text[o->bytes] = '\0';
    return text;
}

pay_text_t *pay_out_take_text(pay_out_t *o) {
    pay_text_t *text = o->failed ? NULL : pay_text_new(o->text, o->bytes);
    if (o->heap) free(o->text);
    return text;
}

#define OUT_STACK_BYTES 4096
#define OUT_INIT(o, stack) pay_out_t o = PAY_OUT_INIT(stack)

/* ---- an operation (pay_op_json) ---- */

static void attempt_write(pay_out_t *o, const pay_attempt_t *a) {
    OUT_LIT(o, "{\"number\":");
    out_int(o, (int)a->number);
    OUT_LIT(o, ",\"channel\":");
    out_str(o, a->channel);
    OUT_LIT(o, ",\"idempotency_key\":");
    out_str(o, a->idempotency_key);
    OUT_LIT(o, ",\"op\":");
    out_str(o, gw_op_name(a->op));
    OUT_LIT(o, ",\"outcome\":");
    out_str(o, gw_outcome_name(a->outcome));
    OUT_LIT(o, ",\"response_code\":");
    out_str(o, a->response_code);
    OUT_LIT(o, ",\"status_inquired\":");
    out_bool(o, a->status_inquired);
    OUT_LIT(o, ",\"created\":");
    out_int(o, (int64_t)a->created_ns);
    OUT_LIT(o, "}");
}

/* The members after the first five ("id", "object", "type", "parent_id", "merchant_id"). */
static void op_rest_write(pay_out_t *o, const pay_op_t *op) {
    OUT_LIT(o, ",\"status\":");
    out_str(o, op->status);
    OUT_LIT(o, ",\"amount\":");
    out_int(o, op->amount);
    OUT_LIT(o, ",\"currency\":");
    out_str(o, op->currency);
    if (op->kind == PAY_OP_CAPTURE) {
        OUT_LIT(o, ",\"final\":");
        out_bool(o, op->final_capture);
        OUT_LIT(o, ",\"fee\":");
        out_int(o, op->fee);
    } else if (op->kind == PAY_OP_REFUND) {
        OUT_LIT(o, ",\"fee_reversed\":");
        out_int(o, op->fee);
    }
    OUT_LIT(o, ",\"channel\":");
    out_str_or_null(o, op->channel);
    OUT_LIT(o, ",\"channel_ref\":");
    out_str_or_null(o, op->channel_ref);
    OUT_LIT(o, ",\"response_code\":");
    out_str_or_null(o, op->response_code);
    OUT_LIT(o, ",\"message\":");
    out_str_or_null(o, op->message);
    if (op->reserve_id[0]) {
        OUT_LIT(o, ",\"reserve_transfer_id\":");
        out_str(o, op->reserve_id);
    }
    if (op->routing_number[0]) {
        OUT_LIT(o, ",\"bank_account\":{\"routing_number\":");
        out_str(o, op->routing_number);
        OUT_LIT(o, ",\"account_number\":");
        out_str(o, op->account_number);
        OUT_LIT(o, "}");
    }
    if (op->wallet_id[0]) {
        OUT_LIT(o, ",\"wallet_id\":");
        out_str(o, op->wallet_id);
    }
    OUT_LIT(o, ",\"attempts\":[");
    for (uint32_t i = 0; i < op->attempt_count; i++) {
        if (i > 0) OUT_LIT(o, ",");
        attempt_write(o, &op->attempts[i]);
    }
    OUT_LIT(o, "],\"ledger_transfers\":[");
    for (uint32_t i = 0; i < op->transfer_count; i++) {
        if (i > 0) OUT_LIT(o, ",");
        out_str(o, op->transfers[i]);
    }
    OUT_LIT(o, "],\"created\":");
    out_int(o, (int64_t)op->created_ns);
    OUT_LIT(o, ",\"updated\":");
    out_int(o, (int64_t)op->updated_ns);
    OUT_LIT(o, ",\"version\":");
    out_int(o, (int64_t)op->version);
    OUT_LIT(o, "}");
}

char *pay_render_op(const pay_op_t *op) {
    char stack[OUT_STACK_BYTES];
    OUT_INIT(o, stack);
    OUT_LIT(&o, "{\"id\":");
    out_str(&o, op->id);
    OUT_LIT(&o, ",\"object\":\"operation\",\"type\":");
    out_str(&o, pay_op_kind_name(op->kind));
    OUT_LIT(&o, ",\"parent_id\":");
    out_str(&o, op->parent_id);
    OUT_LIT(&o, ",\"merchant_id\":");
    out_str(&o, op->merchant_id);
    op_rest_write(&o, op);
    return pay_out_take(&o);
}

static void op_entry_write(pay_out_t *o, const pay_op_t *op) {
    OUT_LIT(o, "{\"id\":");
    out_str(o, op->id);
    OUT_LIT(o, ",\"type\":");
    out_str(o, pay_op_kind_name(op->kind));
    op_rest_write(o, op);
}

char *pay_render_op_entry(const pay_op_t *op) {
    char stack[OUT_STACK_BYTES];
    OUT_INIT(o, stack);
    op_entry_write(&o, op);
    return pay_out_take(&o);
}

pay_text_t *pay_render_op_entry_text(const pay_op_t *op) {
    char stack[OUT_STACK_BYTES];
    OUT_INIT(o, stack);
    op_entry_write(&o, op);
    return pay_out_take_text(&o);
}

/* ---- a payment's fixed members (model.c's payment_json_fixed) ---- */

static void method_write(pay_out_t *o, const pay_payment_t *p) {
    if (p->method == PAY_METHOD_CARD) {
        OUT_LIT(o, "{\"type\":\"card\",\"card\":{\"token\":");
        out_str(o, p->card.token);
        OUT_LIT(o, ",\"bin\":");
        out_str(o, p->card.bin);
        OUT_LIT(o, ",\"last4\":");
        out_str(o, p->card.last4);
        OUT_LIT(o, ",\"exp_month\":");
        out_int(o, (int)p->card.exp_month);
        OUT_LIT(o, ",\"exp_year\":");
        out_int(o, (int)p->card.exp_year);
        OUT_LIT(o, ",\"fingerprint\":");
        out_str(o, p->card.fingerprint);
        OUT_LIT(o, ",\"three_d_secure\":");
        out_bool(o, p->card.three_d_secure);
        OUT_LIT(o, "}}");
    } else if (p->method == PAY_METHOD_WALLET) {
        OUT_LIT(o, "{\"type\":\"wallet\",\"wallet_id\":");
        out_str(o, p->wallet_id);
        OUT_LIT(o, "}");
    } else {
        OUT_LIT(o, "{\"type\":\"bank_transfer\",\"bank_account\":{\"routing_number\":");
        out_str(o, p->routing_number);
        OUT_LIT(o, ",\"account_number\":");
        out_str(o, p->account_number);
        OUT_LIT(o, "}}");
    }
}

/* A real as jansson dumps it (jsonp_dtostr at its default precision, 17): "%.17g",
 * with ".0" when that reads as an integer, and the exponent without '+' or leading
 * zeros. The C locale's '.' is assumed, as everywhere in paycore. */
/* "%.17g" of a value in [1e-4, 1) (a risk score), without printf: value = mant / 2^shift
 * exactly, and its 17 significant digits are mant * 10^k / 2^shift rounded to the
 * nearest, ties to even (as printf rounds), all in 128-bit integers; %g writes such a
 * value in fixed notation without trailing zeros. False for any other value, and for
 * one whose rounding carries into an 18th digit: snprintf writes those. */
static bool real_fraction_text(double value, char text[32], size_t *bytes_out) {
    if (!(value >= 1e-4 && value < 1.0)) return false; /* each bound lies above its decimal */
    int exp2 = 0;
    uint64_t mant = (uint64_t)ldexp(frexp(value, &exp2), 53);
    unsigned shift = (unsigned)(53 - exp2); /* 53..66 */
    int point = value >= 0.1 ? -1 : value >= 0.01 ? -2 : value >= 0.001 ? -3 : -4; /* floor(log10) */
    unsigned __int128 scaled = mant;
    for (int k = 16 - point; k > 0; k--) scaled *= 10; /* < 2^53 * 10^20 < 2^120 */
    uint64_t digits = (uint64_t)(scaled >> shift);
    unsigned __int128 rest = scaled & (((unsigned __int128)1 << shift) - 1);
    unsigned __int128 half = (unsigned __int128)1 << (shift - 1);
    if (rest > half || (rest == half && (digits & 1) != 0)) digits++;
    if (digits >= 100000000000000000ull) return false;
    size_t at = 0;
    text[at++] = '0';
    text[at++] = '.';
    for (int zeros = -point - 1; zeros > 0; zeros--) text[at++] = '0';
    char reversed[17];
    for (int i = 0; i < 17; i++, digits /= 10) reversed[i] = (char)('0' + digits % 10);
    int first = 0;
    while (reversed[first] == '0') first++; /* trailing zeros; the leading digit is not 0 */
    for (int i = 16; i >= first; i--) text[at++] = reversed[i];
    *bytes_out = at;
    return true;
}

static void out_real(pay_out_t *o, double value) {
    char text[64];
    size_t fast_bytes = 0;
    if (real_fraction_text(value, text, &fast_bytes)) {
        pay_out_add(o, text, fast_bytes);
        return;
    }
    int n = snprintf(text, sizeof text - 3, "%.17g", value);
    if (n < 0 || (size_t)n >= sizeof text - 3) {
        o->failed = true;
        return;
    }
    size_t bytes = (size_t)n;
    char *e = memchr(text, 'e', bytes);
    if (e == NULL && memchr(text, '.', bytes) == NULL) {
        memcpy(text + bytes, ".0", 3);
        bytes += 2;
    }
    if (e != NULL) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) {
            memmove(start, end, bytes - (size_t)(end - text) + 1);
            bytes -= (size_t)(end - start);
        }
    }
    pay_out_add(o, text, bytes);
}

/* Any JSON value the payment holds (metadata, the risk detail) written as
 * json_dumps(JSON_COMPACT) writes it: members in the object's own order (jansson
 * keeps insertion order); a string it would escape beyond '"' and '\\' fails the text
 * (the caller dumps through jansson then). */
static void out_json(pay_out_t *o, const json_t *value, uint32_t depth) {
    if (depth > PAY_RENDER_JSON_DEPTH_MAX) { /* jansson's own limit is deeper; it dumps those */
        o->failed = true;
        return;
    }
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        OUT_LIT(o, "{");
        json_t *object = (json_t *)value; /* iterated, not changed */
        bool first = true;
        for (void *it = json_object_iter(object); it != NULL; it = json_object_iter_next(object, it)) {
            if (!first) OUT_LIT(o, ",");
            first = false;
            out_chars(o, json_object_iter_key(it), json_object_iter_key_len(it));
            OUT_LIT(o, ":");
            out_json(o, json_object_iter_value(it), depth + 1);
            if (o->failed) return;
        }
        OUT_LIT(o, "}");
        return;
    }
    case JSON_ARRAY:
        OUT_LIT(o, "[");
        for (size_t i = 0; i < json_array_size(value); i++) {
            if (i > 0) OUT_LIT(o, ",");
            out_json(o, json_array_get(value, i), depth + 1);
            if (o->failed) return;
        }
        OUT_LIT(o, "]");
        return;
    case JSON_STRING: out_chars(o, json_string_value(value), json_string_length(value)); return;
    case JSON_INTEGER: out_int(o, (int64_t)json_integer_value(value)); return;
    case JSON_REAL: out_real(o, json_real_value(value)); return;
    case JSON_TRUE: OUT_LIT(o, "true"); return;
    case JSON_FALSE: OUT_LIT(o, "false"); return;
    case JSON_NULL: OUT_LIT(o, "null"); return;
    }
    o->failed = true;
}

/* A value jansson alone renders (a text it escapes): dumped. */
static void out_dumped(pay_out_t *o, const json_t *value) {
    char *text = json_dumps(value, JSON_COMPACT);
    if (text == NULL) o->failed = true;
    else pay_out_add(o, text, strlen(text));
    free(text);
}

/* A member's value (any JSON the payment holds): 'when_null' for none. */
static void out_held(pay_out_t *o, const json_t *value, const char *when_null) {
    if (value == NULL) pay_out_add(o, when_null, strlen(when_null));
    else out_json(o, value, 0);
}

/* risk_json: the detail's members, then "decision_id" and "outcome" (appended: the
 * detail holds neither, else jansson would replace them in place: not written here). */
static void risk_write(pay_out_t *o, const pay_payment_t *p) {
    if (p->risk.outcome[0] == '\0') {
        OUT_LIT(o, "null");
        return;
    }
    const json_t *detail = p->risk.detail;
    if (detail != NULL && (!json_is_object(detail) || json_object_get(detail, "decision_id") != NULL ||
                           json_object_get(detail, "outcome") != NULL)) {
        o->failed = true;
        return;
    }
    size_t before = o->bytes;
    out_held(o, detail, "{}");
    if (o->failed) return;
    o->bytes--; /* its '}' */
    if (o->bytes > before + 1) OUT_LIT(o, ",");
    OUT_LIT(o, "\"decision_id\":");
    out_int(o, (int64_t)p->risk.decision_id);
    OUT_LIT(o, ",\"outcome\":");
    out_str(o, p->risk.outcome);
    OUT_LIT(o, "}");
}

static void routing_candidate(pay_out_t *o, const gw_decision_t *d, const gw_candidate_t *c) {
    OUT_LIT(o, "{\"name\":");
    out_str(o, c->name);
    OUT_LIT(o, ",\"eligible\":");
    out_bool(o, c->why == GW_WHY_ELIGIBLE || c->why == GW_WHY_NOT_ROUTED);
    OUT_LIT(o, ",\"why\":");
    out_str(o, gw_why_name(c->why));
    OUT_LIT(o, ",\"fallback\":");
    out_bool(o, c->fallback);
    if (d->strategy == GW_STRATEGY_WEIGHTED) {
        OUT_LIT(o, ",\"weight\":");
        out_int(o, (int64_t)c->weight);
    }
    if (d->strategy == GW_STRATEGY_SUCCESS_RATE) {
        OUT_LIT(o, ",\"success_rate_permille\":");
        if (c->success_rate_permille < 0) OUT_LIT(o, "null");
        else out_int(o, c->success_rate_permille);
    }
    OUT_LIT(o, "}");
}

pay_text_t *pay_render_routing(const gw_decision_t *d) {
    char stack[2048];
    pay_out_t o = PAY_OUT_INIT(stack);
    OUT_LIT(&o, "\"routing\":{\"strategy\":");
    out_str(&o, gw_strategy_name(d->strategy));
    OUT_LIT(&o, ",\"chosen\":");
    out_str(&o, d->chosen);
    OUT_LIT(&o, ",\"why\":");
    out_str(&o, d->why);
    OUT_LIT(&o, ",\"config_version\":");
    out_int(&o, (int64_t)d->config_version);
    OUT_LIT(&o, ",\"candidates\":[");
    for (uint32_t i = 0; i < d->candidate_count; i++) {
        if (i > 0) OUT_LIT(&o, ",");
        routing_candidate(&o, d, &d->candidates[i]);
    }
    OUT_LIT(&o, "],\"order\":[");
    for (uint32_t i = 0; i < d->order_count; i++) {
        if (i > 0) OUT_LIT(&o, ",");
        out_str(&o, d->candidates[d->order[i]].name);
    }
    OUT_LIT(&o, "]}");
    return pay_out_take_text(&o);
}

char *pay_render_fixed(const pay_payment_t *p) {
    char stack[OUT_STACK_BYTES];
    OUT_INIT(o, stack);
    OUT_LIT(&o, "\"payment_method\":");
    method_write(&o, p);
    OUT_LIT(&o, ",\"payer\":{\"id\":");
    out_str_or_null(&o, p->payer.id);
    OUT_LIT(&o, ",\"country\":");
    out_str_or_null(&o, p->payer.country);
    OUT_LIT(&o, ",\"device_id\":");
    out_str_or_null(&o, p->payer.device_id);
    OUT_LIT(&o, ",\"ip\":");
    out_str_or_null(&o, p->payer.ip);
    OUT_LIT(&o, "},\"description\":");
    out_str_or_null(&o, p->description);
    OUT_LIT(&o, ",\"metadata\":");
    out_held(&o, p->metadata, "{}");
    OUT_LIT(&o, ",\"risk\":");
    risk_write(&o, p);
    return pay_out_take(&o);
}

/* ---- a whole payment (model.c's payment_json: its members in that order) ---- */

static void member_str(pay_out_t *o, const char *key_text, const char *text) {
    pay_out_add(o, key_text, strlen(key_text));
    out_str(o, text);
}

static void member_str_or_null(pay_out_t *o, const char *key_text, const char *text) {
    pay_out_add(o, key_text, strlen(key_text));
    out_str_or_null(o, text);
}

static void member_int(pay_out_t *o, const char *key_text, int64_t value) {
    pay_out_add(o, key_text, strlen(key_text));
    out_int(o, value);
}

static void payment_first_write(pay_out_t *o, const pay_payment_t *p) {
    member_str(o, "{\"id\":", p->id);
    OUT_LIT(o, ",\"object\":\"payment\"");
    member_str(o, ",\"merchant_id\":", p->merchant_id);
    member_str(o, ",\"status\":", pay_state_name(p->state));
    member_int(o, ",\"amount\":", p->amount);
    member_str(o, ",\"currency\":", p->currency);
    member_str(o, ",\"capture_method\":", p->capture_automatic ? "automatic" : "manual");
    member_str(o, ",\"purpose\":", p->top_up ? "top_up" : "payment");
    if (p->top_up) member_str(o, ",\"wallet_id\":", p->wallet_id);
}

/* The members between "routing" and "operations" (and its key). */
static void payment_rest_write(pay_out_t *o, const pay_payment_t *p) {
    member_str_or_null(o, ",\"channel\":", p->channel);
    member_str_or_null(o, ",\"channel_ref\":", p->channel_ref);
    if (p->state != PAY_STATE_REQUIRES_ACTION) OUT_LIT(o, ",\"next_action\":null");
    else member_str(o, ",\"next_action\":{\"type\":\"three_d_secure\",\"challenge_id\":", p->challenge_id);
    if (p->state == PAY_STATE_REQUIRES_ACTION) OUT_LIT(o, "}");
    member_int(o, ",\"amount_authorized\":", p->authorized);
    member_int(o, ",\"amount_captured\":", p->captured);
    member_int(o, ",\"amount_refunded\":", p->refunded);
    member_int(o, ",\"amount_capturable\":", p->hold_id[0] ? p->hold_amount : 0);
    member_int(o, ",\"fees\":", p->fees);
    member_int(o, ",\"fees_reversed\":", p->fees_reversed);
    if (p->hold_id[0] == '\0') OUT_LIT(o, ",\"hold\":null");
    else {
        member_str(o, ",\"hold\":{\"transfer_id\":", p->hold_id);
        member_int(o, ",\"amount\":", p->hold_amount);
        member_int(o, ",\"expires_at\":", (int64_t)p->hold_deadline_ns);
        OUT_LIT(o, "}");
    }
    member_str_or_null(o, ",\"pending_operation\":", p->pending_op);
    if (p->decline.code[0] == '\0') OUT_LIT(o, ",\"decline\":null");
    else {
        member_str(o, ",\"decline\":{\"code\":", p->decline.code);
        member_str(o, ",\"message\":", p->decline.message);
        member_str(o, ",\"source\":", p->decline.source);
        OUT_LIT(o, "}");
    }
    OUT_LIT(o, ",\"operations\":");
}

/* The members after "operations". */
static void payment_tail_write(pay_out_t *o, const pay_payment_t *p) {
    OUT_LIT(o, ",\"ledger_transfers\":[");
    for (uint32_t i = 0; i < p->transfer_count; i++) {
        if (i > 0) OUT_LIT(o, ",");
        out_str(o, p->transfers[i]);
    }
    OUT_LIT(o, "]");
    member_int(o, ",\"created\":", (int64_t)p->created_ns);
    member_int(o, ",\"updated\":", (int64_t)p->updated_ns);
    member_int(o, ",\"version\":", p->version);
    OUT_LIT(o, "}");
}

/* {"id":…,"$version":n}: dumped by jansson when the id is not plain. */
static void entry_ref_write(pay_out_t *o, const pay_entry_t *entry) {
    if (pay_text_plain(entry->id)) {
        member_str(o, "{\"id\":", entry->id);
        member_int(o, ",\"" PAY_RECORD_REF_KEY "\":", entry->held_in);
        OUT_LIT(o, "}");
        return;
    }
    json_t *ref = json_pack("{s:s,s:I}", "id", entry->id, PAY_RECORD_REF_KEY, (json_int_t)entry->held_in);
    if (ref == NULL) o->failed = true;
    else out_dumped(o, ref);
    json_decref(ref);
}

void pay_render_ops(const pay_payment_t *p, pay_out_t *full, pay_out_t *record) {
    OUT_LIT(full, "[");
    OUT_LIT(record, "[");
    for (uint32_t i = 0; i < p->entry_count; i++) {
        const pay_entry_t *entry = &p->entries[i];
        if (entry->text == NULL) {
            full->failed = true;
            return;
        }
        if (i > 0) {
            OUT_LIT(full, ",");
            OUT_LIT(record, ",");
        }
        pay_out_add(full, entry->text->text, entry->text->bytes);
        if (entry->held_in > 0) entry_ref_write(record, entry);
        else pay_out_add(record, entry->text->text, entry->text->bytes);
    }
    OUT_LIT(full, "]");
    OUT_LIT(record, "]");
}

#define PAYMENT_STACK_BYTES 8192 /* a payment's few operations fit: one malloc each text */

/* A part of the document in a record: its text, or the version whose record holds it. */
static void record_part_write(pay_out_t *record, const char *text, size_t bytes, const char *key_text,
                              uint32_t held_in) {
    if (held_in == 0) {
        pay_out_add(record, text, bytes);
        return;
    }
    pay_out_add(record, key_text, strlen(key_text));
    out_int(record, held_in);
}

bool pay_render_payment(const pay_payment_t *p, const char *fixed, const char *routing, char **doc_out,
                        char **record_out) {
    char full_stack[PAYMENT_STACK_BYTES], record_stack[PAYMENT_STACK_BYTES];
    pay_out_t full = PAY_OUT_INIT(full_stack), record = PAY_OUT_INIT(record_stack);
    payment_first_write(&full, p);
    OUT_LIT(&full, ",");
    size_t fixed_at = full.bytes;
    pay_out_add(&full, fixed, strlen(fixed));
    size_t fixed_end = full.bytes;
    OUT_LIT(&full, ",");
    size_t routing_at = full.bytes;
    pay_out_add(&full, routing, strlen(routing));
    size_t routing_end = full.bytes;
    payment_rest_write(&full, p);
    if (!full.failed) {
        pay_out_add(&record, full.text, fixed_at);
        record_part_write(&record, full.text + fixed_at, fixed_end - fixed_at, "\"" PAY_RECORD_FIXED_KEY "\":",
                          p->fixed_held_in);
        OUT_LIT(&record, ",");
        record_part_write(&record, full.text + routing_at, routing_end - routing_at,
                          "\"" PAY_RECORD_ROUTING_KEY "\":", p->routing_held_in);
        pay_out_add(&record, full.text + routing_end, full.bytes - routing_end);
    }
    pay_render_ops(p, &full, &record);
    size_t tail_at = full.bytes;
    payment_tail_write(&full, p);
    if (!full.failed) pay_out_add(&record, full.text + tail_at, full.bytes - tail_at);
    if (record.failed) full.failed = true;
    *doc_out = pay_out_take(&full);
    *record_out = pay_out_take(&record);
    if (*doc_out != NULL && *record_out != NULL) return true;
    free(*doc_out);
    free(*record_out);
    *doc_out = *record_out = NULL;
    return false;
}
