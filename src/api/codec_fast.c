/* api/codec_fast.c: a fast path for the common transfer request: plain ASCII strings
 * without escapes, non-negative integers, known flags, no metadata, in the shape
 * {"id":...} or {"transfers":[{...},...]}. It accepts only requests that are fully
 * valid and otherwise answers "not handled" (PC_NOT_FOUND), and the full decoder
 * (codec.c, over jansson) then decides and names the error. So it never has to
 * produce an error itself, and its results must equal the full decoder's: the fuzz
 * target (tests/fuzz/fuzz_codec.c) checks exactly that. Why: jansson builds a tree
 * of allocations, ~3 us a transfer; this reads the bytes once, ~0.3 us. */
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

/* A string of printable ASCII without escapes, at most 'bytes_max' long, into 'out'. */
static bool plain_string(cursor *c, char *out, size_t bytes_max) {
    if (!take(c, '"')) return false;
    size_t n = 0;
    while (c->at < c->end && *c->at != '"') {
        char ch = *c->at++;
        if (ch < 0x20 || ch > 0x7e || ch == '\\' || n == bytes_max) return false;
        out[n++] = ch;
    }
    if (c->at >= c->end) return false;
    c->at++;
    out[n] = '\0';
    return true;
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

static int field_index(const char *name) {
    for (int i = 0; i < F_COUNT; i++) {
        if (strcmp(fast_fields[i], name) == 0) return i;
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
        char key[24];
        if (!plain_string(c, key, sizeof key - 1) || !take(c, ':')) return false;
        int field = field_index(key);
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

typedef struct {
    const char *name;
    plain_kind kind;
    uint32_t bit;       /* PAY_PLAIN_* */
    size_t offset;      /* in pay_plain_payment_t */
    size_t size;        /* a string's buffer */
} plain_member;

#define PLAIN_STR(name, bit, field) {name, PLAIN_STRING, bit, offsetof(pay_plain_payment_t, field), \
                                     sizeof(((pay_plain_payment_t *)0)->field)}
#define PLAIN_INT(name, bit, field) {name, PLAIN_INTEGER, bit, offsetof(pay_plain_payment_t, field), 0}
#define PLAIN_OBJ(name, bit) {name, PLAIN_OBJECT, bit, 0, 0}

static const plain_member payment_members[] = {
    PLAIN_STR("merchant_id", PAY_PLAIN_MERCHANT_ID, merchant_id),
    PLAIN_INT("amount", PAY_PLAIN_AMOUNT, amount),
    PLAIN_STR("currency", PAY_PLAIN_CURRENCY, currency),
    PLAIN_STR("capture_method", PAY_PLAIN_CAPTURE_METHOD, capture_method),
    PLAIN_OBJ("payment_method", PAY_PLAIN_METHOD),
    PLAIN_OBJ("payer", PAY_PLAIN_PAYER),
    PLAIN_STR("description", PAY_PLAIN_DESCRIPTION, description),
};
static const plain_member method_members[] = {
    PLAIN_STR("type", PAY_PLAIN_METHOD_TYPE, method_type),
    PLAIN_OBJ("card", PAY_PLAIN_CARD),
};
static const plain_member card_members[] = {
    PLAIN_STR("number", PAY_PLAIN_CARD_NUMBER, card_number),
    PLAIN_INT("exp_month", PAY_PLAIN_CARD_EXP_MONTH, card_exp_month),
    PLAIN_INT("exp_year", PAY_PLAIN_CARD_EXP_YEAR, card_exp_year),
    PLAIN_STR("cvc", PAY_PLAIN_CARD_CVC, card_cvc),
};
static const plain_member payer_members[] = {
    PLAIN_STR("id", PAY_PLAIN_PAYER_ID, payer_id),
    PLAIN_STR("country", PAY_PLAIN_PAYER_COUNTRY, payer_country),
    PLAIN_STR("device_id", PAY_PLAIN_PAYER_DEVICE_ID, payer_device_id),
    PLAIN_STR("ip", PAY_PLAIN_PAYER_IP, payer_ip),
    PLAIN_INT("account_age_days", PAY_PLAIN_PAYER_AGE_DAYS, payer_age_days),
};

typedef struct {
    const plain_member *members;
    uint32_t count;
} plain_object_spec;

/* The objects by depth: the body, then the one member object each level may hold
 * ("payment_method" > "card"; "payer" holds none). */
static plain_object_spec plain_spec_of(const char *object_name) {
    if (strcmp(object_name, "payment_method") == 0) return (plain_object_spec){method_members, 2};
    if (strcmp(object_name, "card") == 0) return (plain_object_spec){card_members, 4};
    if (strcmp(object_name, "payer") == 0) return (plain_object_spec){payer_members, 5};
    return (plain_object_spec){payment_members, 7};
}

static const plain_member *plain_find(plain_object_spec spec, const char *key) {
    for (uint32_t i = 0; i < spec.count; i++) {
        if (strcmp(spec.members[i].name, key) == 0) return &spec.members[i];
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
    plain_object_spec stack[3];
    uint32_t depth = 0;
    if (!take(&c, '{')) return PC_NOT_FOUND;
    stack[depth++] = plain_spec_of("");
    if (take(&c, '}')) return PC_NOT_FOUND; /* {}: the full path names what is missing */
    while (depth > 0) {
        char key[24];
        if (!plain_string(&c, key, sizeof key - 1) || !take(&c, ':')) return PC_NOT_FOUND;
        const plain_member *m = plain_find(stack[depth - 1], key);
        if (m == NULL || (out->has & m->bit) != 0) return PC_NOT_FOUND; /* unknown or repeated */
        out->has |= m->bit;
        if (m->kind == PLAIN_OBJECT) {
            if (depth == 3 || !take(&c, '{') || take(&c, '}')) return PC_NOT_FOUND;
            stack[depth++] = plain_spec_of(m->name);
            continue;
        }
        if (!plain_member_value(&c, m, out)) return PC_NOT_FOUND;
        while (depth > 0 && take(&c, '}')) depth--; /* the objects this member ends */
        if (depth > 0 && !take(&c, ',')) return PC_NOT_FOUND;
    }
    skip_ws(&c);
    return c.at == c.end ? PC_OK : PC_NOT_FOUND;
}
