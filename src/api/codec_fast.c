/* api/codec_fast.c: a fast path for the common transfer request: plain ASCII strings
 * without escapes, non-negative integers, known flags, no metadata, in the shape
 * {"id":...} or {"transfers":[{...},...]}. It accepts only requests that are fully
 * valid and otherwise answers "not handled" (PC_NOT_FOUND), and the full decoder
 * (codec.c, over jansson) then decides and names the error. So it never has to
 * produce an error itself, and its results must equal the full decoder's: the fuzz
 * target (tests/fuzz/fuzz_codec.c) checks exactly that. Why: jansson builds a tree
 * of allocations, ~3 us a transfer; this reads the bytes once, ~0.3 us. */
#include <stddef.h>
#include <string.h>

#include "api/codec.h"
#include "core/core.h"
#include "paycore/limits.h"
#include "paycore/money.h"

typedef struct {
    const char *at;
    const char *end;
} cursor;

enum {
    F_ID, F_DEBIT, F_CREDIT, F_AMOUNT, F_CURRENCY, F_CODE, F_FLAGS, F_PENDING, F_TIMEOUT, F_COUNT
};
static const char *const fast_fields[F_COUNT] = {"id", "debit_account_id", "credit_account_id",
                                                 "amount", "currency", "code", "flags",
                                                 "pending_id", "timeout_s"};

static void skip_ws(cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t')) c->at++;
}

static bool take(cursor *c, char expected) {
    skip_ws(c);
    if (c->at >= c->end || *c->at != expected) return false;
    c->at++;
    return true;
}

/* What a byte is inside a plain string: printable ASCII but '"' and '\\' (its text),
 * the closing quote, or anything else (not plain). */
enum { PLAIN_TEXT = 0, PLAIN_QUOTE = 1, PLAIN_NOT = 2 };
static const uint8_t plain_class[256] = {
    [0 ... 0x1f] = PLAIN_NOT, ['"'] = PLAIN_QUOTE, ['\\'] = PLAIN_NOT, [0x7f ... 0xff] = PLAIN_NOT,
};

/* A string of printable ASCII without escapes, at most 'bytes_max' long: where its
 * text starts and how long it is (the cursor past its closing quote). */
static bool plain_span(cursor *c, const char **text, size_t *bytes, size_t bytes_max) {
    if (!take(c, '"')) return false;
    const char *start = c->at;
    const char *limit = c->end - start > (ptrdiff_t)bytes_max ? start + bytes_max : c->end;
    const char *at = start;
    while (at < limit && plain_class[(uint8_t)*at] == PLAIN_TEXT) at++;
    /* the closing quote within the string's room, else not plain (a byte not allowed,
     * longer than bytes_max, or no end) */
    if (at >= c->end || plain_class[(uint8_t)*at] != PLAIN_QUOTE) return false;
    *text = start;
    *bytes = (size_t)(at - start);
    c->at = at + 1;
    return true;
}

/* The same string copied into 'out' (bytes_max + 1 bytes). */
static bool plain_string(cursor *c, char *out, size_t bytes_max) {
    const char *text;
    size_t n;
    if (!plain_span(c, &text, &n, bytes_max)) return false;
    memcpy(out, text, n);
    out[n] = '\0';
    return true;
}

/* True when the span is exactly 'name' (of 'name_bytes'). */
static bool span_is(const char *text, size_t bytes, const char *name, size_t name_bytes) {
    return bytes == name_bytes && memcmp(text, name, bytes) == 0;
}

/* A non-negative JSON integer within int64 (a real, a sign or a leading zero: no). */
static bool plain_integer(cursor *c, int64_t *out) {
    skip_ws(c);
    const char *start = c->at;
    uint64_t value = 0;
    while (c->at < c->end && *c->at >= '0' && *c->at <= '9') {
        if (c->at - start >= 18) return false; /* keeps value below 10^18 < INT64_MAX */
        value = value * 10 + (uint64_t)(*c->at++ - '0');
    }
    size_t digits = (size_t)(c->at - start);
    if (digits == 0 || (digits > 1 && *start == '0')) return false;
    if (c->at < c->end && (*c->at == '.' || *c->at == 'e' || *c->at == 'E')) return false;
    *out = (int64_t)value;
    return true;
}

static bool plain_flags(cursor *c, uint16_t *flags) {
    if (!take(c, '[')) return false;
    skip_ws(c);
    if (c->at < c->end && *c->at == ']') {
        c->at++;
        return true;
    }
    for (uint32_t i = 0; i < 16; i++) {
        char name[32];
        uint16_t flag;
        if (!plain_string(c, name, sizeof name - 1)) return false;
        if (!ledger_transfer_flag_parse(name, &flag) || (flag & ~LEDGER_TRANSFER_FLAGS_CLIENT) != 0) return false;
        *flags |= flag;
        if (take(c, ']')) return true;
        if (!take(c, ',')) return false;
    }
    return false;
}

static bool plain_id(cursor *c, char out[PC_ID_SIZE]) {
    return plain_string(c, out, PC_ID_BYTES_MAX) && pc_id_valid(out);
}

/* One field's value into 't'; integers are range-checked by the caller. */
static bool plain_value(cursor *c, int field, ledger_transfer_t *t, int64_t numbers[F_COUNT]) {
    char currency[8];
    switch (field) {
    case F_ID: return plain_id(c, t->id);
    case F_DEBIT: return plain_id(c, t->debit_account_id);
    case F_CREDIT: return plain_id(c, t->credit_account_id);
    case F_PENDING: return plain_id(c, t->pending_id);
    case F_CURRENCY:
        if (!plain_string(c, currency, 7) || pc_currency_find(currency) == NULL) return false;
        memcpy(t->currency, currency, 4);
        return true;
    case F_FLAGS: return plain_flags(c, &t->flags);
    default: return plain_integer(c, &numbers[field]);
    }
}

static int field_index(const char *name, size_t bytes) {
    for (int i = 0; i < F_COUNT; i++) {
        if (span_is(name, bytes, fast_fields[i], strlen(fast_fields[i]))) return i;
    }
    return -1;
}

/* The rules of codec.c's decode_transfer, for values that already passed the types. */
static bool plain_rules(ledger_transfer_t *t, uint32_t seen, const int64_t numbers[F_COUNT]) {
    bool resolving = (t->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
    if (!(seen & (1u << F_ID))) return false;
    if (!resolving) {
        uint32_t required = (1u << F_DEBIT) | (1u << F_CREDIT) | (1u << F_CURRENCY) | (1u << F_AMOUNT);
        if ((seen & required) != required || numbers[F_AMOUNT] < 1) return false;
    }
    if (numbers[F_CODE] > UINT16_MAX || numbers[F_TIMEOUT] > (int64_t)LEDGER_TIMEOUT_S_MAX) return false;
    t->amount = (t->flags & LEDGER_TRANSFER_VOID_PENDING) ? 0 : numbers[F_AMOUNT];
    t->code = (uint16_t)numbers[F_CODE];
    t->timeout_s = (uint32_t)numbers[F_TIMEOUT];
    return true;
}

static bool plain_transfer(cursor *c, ledger_transfer_t *t) {
    int64_t numbers[F_COUNT] = {0};
    uint32_t seen = 0;
    if (!take(c, '{')) return false;
    if (take(c, '}')) return plain_rules(t, seen, numbers);
    for (int i = 0; i < F_COUNT; i++) {
        const char *key;
        size_t key_bytes;
        if (!plain_span(c, &key, &key_bytes, 23) || !take(c, ':')) return false;
        int field = field_index(key, key_bytes);
        if (field < 0 || (seen & (1u << field)) != 0) return false; /* unknown or duplicate */
        seen |= 1u << field;
        if (!plain_value(c, field, t, numbers)) return false;
        if (take(c, '}')) return plain_rules(t, seen, numbers);
        if (!take(c, ',')) return false;
    }
    return false;
}

/* Counts the objects of the batch array cheaply (an upper bound: '{' outside strings). */
static uint32_t batch_upper_bound(const char *at, const char *end) {
    uint32_t count = 0;
    bool in_string = false;
    for (; at < end; at++) {
        if (*at == '"') in_string = !in_string;
        else if (*at == '{' && !in_string) count++;
    }
    return count;
}

pc_status codec_fast_transfers(const char *body, size_t body_bytes, const codec_alloc_t *alloc,
                               ledger_transfer_t **events_out, uint32_t *count_out, bool *batch_out) {
    cursor c = {body, body + body_bytes};
    cursor probe = c;
    char key[16];
    *batch_out = take(&probe, '{') && plain_string(&probe, key, sizeof key - 1) &&
                 strcmp(key, "transfers") == 0;
    uint32_t capacity = *batch_out ? batch_upper_bound(body, c.end) : 1;
    if (capacity == 0 || capacity > LEDGER_BATCH_EVENTS_MAX + 1) return PC_NOT_FOUND;
    ledger_transfer_t *events = alloc->alloc(alloc->ctx, sizeof(*events) * capacity);
    if (events == NULL) return PC_NOT_FOUND;
    uint32_t count = 0;
    if (!*batch_out) {
        if (!plain_transfer(&c, &events[0])) return PC_NOT_FOUND;
        count = 1;
    } else {
        c = probe;
        if (!take(&c, ':') || !take(&c, '[')) return PC_NOT_FOUND;
        do {
            if (count == capacity - 1 || !plain_transfer(&c, &events[count])) return PC_NOT_FOUND;
            count++;
        } while (take(&c, ','));
        if (!take(&c, ']') || !take(&c, '}') || count > LEDGER_BATCH_EVENTS_MAX) return PC_NOT_FOUND;
    }
    skip_ws(&c);
    if (c.at != c.end) return PC_NOT_FOUND;
    *events_out = events;
    *count_out = count;
    return PC_OK;
}

/* ---- POST /v1/payments: a card payment without metadata (pay_plain_payment_t) ----
 * The same rules: plain strings (an over-long one is "not handled", as is a null, a
 * negative number, an unknown or repeated member); the payments layer then checks the
 * values (pay_plain_payment_valid) and the full path decides whatever either refuses. */

typedef enum { PLAIN_STRING, PLAIN_INTEGER, PLAIN_OBJECT } plain_kind;

typedef struct plain_object_spec plain_object_spec;

typedef struct {
    const char *name;
    size_t name_bytes;
    plain_kind kind;
    uint32_t bit;       /* PAY_PLAIN_* */
    size_t offset;      /* in pay_plain_payment_t */
    size_t size;        /* a string's buffer */
    const plain_object_spec *object; /* an object's members */
} plain_member;

/* An object's members; the body, then the one member object each level may hold
 * ("payment_method" > "card"; "payer" holds none). */
struct plain_object_spec {
    const plain_member *members;
    uint32_t count;
};

#define PLAIN_NAME(name) name, sizeof name - 1
#define PLAIN_STR(name, bit, field) {PLAIN_NAME(name), PLAIN_STRING, bit, offsetof(pay_plain_payment_t, field), \
                                     sizeof(((pay_plain_payment_t *)0)->field), NULL}
#define PLAIN_INT(name, bit, field) {PLAIN_NAME(name), PLAIN_INTEGER, bit, offsetof(pay_plain_payment_t, field), 0, NULL}
#define PLAIN_SPEC(members) {members, (uint32_t)(sizeof members / sizeof members[0])}
#define PLAIN_OBJ(name, bit, spec) {PLAIN_NAME(name), PLAIN_OBJECT, bit, 0, 0, &spec}

static const plain_member card_members[] = {
    PLAIN_STR("number", PAY_PLAIN_CARD_NUMBER, card_number),
    PLAIN_INT("exp_month", PAY_PLAIN_CARD_EXP_MONTH, card_exp_month),
    PLAIN_INT("exp_year", PAY_PLAIN_CARD_EXP_YEAR, card_exp_year),
    PLAIN_STR("cvc", PAY_PLAIN_CARD_CVC, card_cvc),
};
static const plain_object_spec card_spec = PLAIN_SPEC(card_members);
static const plain_member method_members[] = {
    PLAIN_STR("type", PAY_PLAIN_METHOD_TYPE, method_type),
    PLAIN_OBJ("card", PAY_PLAIN_CARD, card_spec),
};
static const plain_object_spec method_spec = PLAIN_SPEC(method_members);
static const plain_member payer_members[] = {
    PLAIN_STR("id", PAY_PLAIN_PAYER_ID, payer_id),
    PLAIN_STR("country", PAY_PLAIN_PAYER_COUNTRY, payer_country),
    PLAIN_STR("device_id", PAY_PLAIN_PAYER_DEVICE_ID, payer_device_id),
    PLAIN_STR("ip", PAY_PLAIN_PAYER_IP, payer_ip),
    PLAIN_INT("account_age_days", PAY_PLAIN_PAYER_AGE_DAYS, payer_age_days),
};
static const plain_object_spec payer_spec = PLAIN_SPEC(payer_members);
static const plain_member payment_members[] = {
    PLAIN_STR("merchant_id", PAY_PLAIN_MERCHANT_ID, merchant_id),
    PLAIN_INT("amount", PAY_PLAIN_AMOUNT, amount),
    PLAIN_STR("currency", PAY_PLAIN_CURRENCY, currency),
    PLAIN_STR("capture_method", PAY_PLAIN_CAPTURE_METHOD, capture_method),
    PLAIN_OBJ("payment_method", PAY_PLAIN_METHOD, method_spec),
    PLAIN_OBJ("payer", PAY_PLAIN_PAYER, payer_spec),
    PLAIN_STR("description", PAY_PLAIN_DESCRIPTION, description),
};
static const plain_object_spec payment_spec = PLAIN_SPEC(payment_members);

/* Matched by length first: most members differ in it. */
static const plain_member *plain_find(const plain_object_spec *spec, const char *key, size_t key_bytes) {
    for (uint32_t i = 0; i < spec->count; i++) {
        const plain_member *m = &spec->members[i];
        if (span_is(key, key_bytes, m->name, m->name_bytes)) return m;
    }
    return NULL;
}

static bool plain_member_value(cursor *c, const plain_member *m, pay_plain_payment_t *out) {
    char *at = (char *)out + m->offset;
    if (m->kind == PLAIN_STRING) return plain_string(c, at, m->size - 1);
    int64_t value;
    if (!plain_integer(c, &value)) return false;
    memcpy(at, &value, sizeof value);
    return true;
}

/* The nested objects are walked with an explicit stack of their specs (at most 3 deep). */
pc_status codec_fast_payment(const char *body, size_t body_bytes, pay_plain_payment_t *out) {
    memset(out, 0, sizeof *out);
    cursor c = {body, body + body_bytes};
    const plain_object_spec *stack[3];
    uint32_t depth = 0;
    if (!take(&c, '{')) return PC_NOT_FOUND;
    stack[depth++] = &payment_spec;
    if (take(&c, '}')) return PC_NOT_FOUND; /* {}: the full path names what is missing */
    while (depth > 0) {
        const char *key;
        size_t key_bytes;
        if (!plain_span(&c, &key, &key_bytes, 23) || !take(&c, ':')) return PC_NOT_FOUND;
        const plain_member *m = plain_find(stack[depth - 1], key, key_bytes);
        if (m == NULL || (out->has & m->bit) != 0) return PC_NOT_FOUND; /* unknown or repeated */
        out->has |= m->bit;
        if (m->kind == PLAIN_OBJECT) {
            if (depth == 3 || !take(&c, '{') || take(&c, '}')) return PC_NOT_FOUND;
            stack[depth++] = m->object;
            continue;
        }
        if (!plain_member_value(&c, m, out)) return PC_NOT_FOUND;
        while (depth > 0 && take(&c, '}')) depth--; /* the objects this member ends */
        if (depth > 0 && !take(&c, ',')) return PC_NOT_FOUND;
    }
    skip_ws(&c);
    return c.at == c.end ? PC_OK : PC_NOT_FOUND;
}
