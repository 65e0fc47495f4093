/* Goal: the texts render.c writes directly are byte for byte jansson's compact dump of
 * the objects model.c builds (an operation as its row holds it and as its payment's
 * entry), for every kind, any number of attempts and transfers, absent and present
 * optional members, extreme integers, and texts with '"' and '\\' in them; a text
 * jansson would escape otherwise (control characters, non-ASCII) makes the writer
 * give up (NULL) rather than differ.
 * The same for a payment's fixed members (method, payer, description, metadata, risk).
 * Method: hand-made cases, then a seeded random sweep (PAYCORE_SEED=<n> replays one)
 * comparing pay_render_op / pay_render_op_entry with json_dumps of pay_op_json /
 * pay_op_entry, and pay_render_fixed with the same members of pay_payment_json's dump.
 * A whole payment too (its changing members, operation entries and transfers): its
 * document written by pay_render_payment is pay_payment_json's dump, and its record is
 * the document with each entry a record holds whole replaced by {"id", "$version"}. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "payments/pay_internal.h"
#include "test.h"

static uint64_t rng_state;

static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint32_t rng_below(uint32_t n) { return (uint32_t)(rng_next() % n); }

/* A random text of at most size-1 bytes: plain ASCII with quotes and backslashes, or
 * (when 'odd') possibly a control character or a UTF-8 letter. */
static void random_text(char *out, size_t size, bool odd) {
    static const char plain_chars[] = "abcXYZ019_-:. /\"\\{}[],'";
    size_t n = rng_below((uint32_t)(size < 24 ? size : 24));
    size_t at = 0;
    while (at < n && at + 3 < size) {
        uint32_t pick = rng_below(40);
        if (odd && pick == 0) {
            out[at++] = (char)(1 + rng_below(0x1F)); /* a control character */
        } else if (odd && pick == 1) {
            out[at++] = (char)0xC3; /* U+00E9 */
            out[at++] = (char)0xA9;
        } else if (odd && pick == 2) {
            out[at++] = 0x7F;
        } else {
            out[at++] = plain_chars[rng_below(sizeof plain_chars - 1)];
        }
    }
    out[at] = '\0';
}

static int64_t random_int(void) {
    switch (rng_below(5)) {
    case 0: return 0;
    case 1: return INT64_MAX;
    case 2: return INT64_MIN;
    case 3: return -(int64_t)rng_below(1000000);
    default: return (int64_t)(rng_next() >> 1);
    }
}

static void random_op(pay_op_t *op, bool odd) {
    memset(op, 0, sizeof *op);
    random_text(op->id, sizeof op->id, odd);
    op->kind = (pay_op_kind)rng_below(PAY_OP_KIND_COUNT);
    random_text(op->parent_id, sizeof op->parent_id, odd);
    random_text(op->merchant_id, sizeof op->merchant_id, odd);
    random_text(op->status, sizeof op->status, odd);
    op->amount = random_int();
    random_text(op->currency, sizeof op->currency, odd);
    op->final_capture = rng_below(2);
    op->fee = random_int();
    random_text(op->channel, sizeof op->channel, odd);
    random_text(op->channel_ref, sizeof op->channel_ref, odd);
    random_text(op->response_code, sizeof op->response_code, odd);
    random_text(op->message, sizeof op->message, odd);
    if (rng_below(2)) random_text(op->reserve_id, sizeof op->reserve_id, odd);
    if (rng_below(3) == 0) {
        random_text(op->routing_number, sizeof op->routing_number, odd);
        random_text(op->account_number, sizeof op->account_number, odd);
    }
    if (rng_below(3) == 0) random_text(op->wallet_id, sizeof op->wallet_id, odd);
    op->attempt_count = rng_below(GW_ATTEMPTS_MAX + 1);
    for (uint32_t i = 0; i < op->attempt_count; i++) {
        pay_attempt_t *a = &op->attempts[i];
        a->number = rng_below(2) ? i + 1 : (uint32_t)rng_next();
        random_text(a->channel, sizeof a->channel, odd);
        random_text(a->idempotency_key, sizeof a->idempotency_key, odd);
        a->op = (gw_op)rng_below(GW_OP_COUNT);
        a->outcome = (gw_outcome)rng_below(GW_OUTCOME_COUNT);
        random_text(a->response_code, sizeof a->response_code, odd);
        a->status_inquired = rng_below(2);
        a->created_ns = (uint64_t)random_int();
    }
    op->transfer_count = rng_below(PAY_OP_TRANSFERS_MAX + 1);
    for (uint32_t i = 0; i < op->transfer_count; i++) random_text(op->transfers[i], PC_ID_SIZE, odd);
    op->created_ns = (uint64_t)random_int();
    op->updated_ns = (uint64_t)random_int();
    op->version = (uint32_t)rng_next();
}

/* The written text equals jansson's dump, or is NULL where the dump escapes more than
 * '"' and '\\' (jansson itself may refuse a text that is not UTF-8: then no dump).
 * Returns true when the writer wrote. */
static bool compare(const char *what, char *written, json_t *built) {
    char *dumped = built != NULL ? json_dumps(built, JSON_COMPACT) : NULL;
    json_decref(built);
    bool wrote = written != NULL;
    if (written != NULL) {
        if (dumped == NULL) TEST_FAIL("%s: written \"%s\" but jansson made nothing", what, written);
        ASSERT_STR_EQ(written, dumped);
    } else if (dumped != NULL) {
        bool escaped_more = false;
        for (const unsigned char *c = (const unsigned char *)dumped; *c != '\0'; c++) {
            if (*c < 0x20 || *c > 0x7E) escaped_more = true;
        }
        if (strstr(dumped, "\\u") != NULL || strstr(dumped, "\\n") != NULL || strstr(dumped, "\\t") != NULL ||
            strstr(dumped, "\\b") != NULL || strstr(dumped, "\\f") != NULL || strstr(dumped, "\\r") != NULL) {
            escaped_more = true;
        }
        if (!escaped_more) TEST_FAIL("%s: the writer gave up on a plain text: %s", what, dumped);
    }
    free(written);
    free(dumped);
    return wrote;
}

static void check_op(const pay_op_t *op, uint32_t *wrote, uint32_t *gave_up) {
    bool a = compare("op", pay_render_op(op), pay_op_json(op));
    bool b = compare("entry", pay_render_op_entry(op), pay_op_entry(op));
    *wrote += a + b;
    *gave_up += !a + !b;
}

static void test_hand_cases(void) {
    pay_op_t op;
    memset(&op, 0, sizeof op);
    snprintf(op.id, sizeof op.id, "cap_0123456789abcdef");
    op.kind = PAY_OP_CAPTURE;
    snprintf(op.parent_id, sizeof op.parent_id, "pay_0123");
    snprintf(op.merchant_id, sizeof op.merchant_id, "m_1");
    snprintf(op.status, sizeof op.status, "succeeded");
    op.amount = 1999;
    snprintf(op.currency, sizeof op.currency, "EUR");
    op.final_capture = true;
    op.fee = 88;
    op.attempt_count = 1;
    op.attempts[0].number = 1;
    snprintf(op.attempts[0].channel, sizeof op.attempts[0].channel, "card_sim");
    snprintf(op.attempts[0].idempotency_key, sizeof op.attempts[0].idempotency_key, "k\"q\\");
    op.transfer_count = 2;
    snprintf(op.transfers[0], PC_ID_SIZE, "cap_0123456789abcdef:post");
    snprintf(op.transfers[1], PC_ID_SIZE, "cap_0123456789abcdef:fee");
    op.version = 3;
    char *text = pay_render_op(&op);
    ASSERT_TRUE(text != NULL);
    ASSERT_TRUE(strstr(text, "\"idempotency_key\":\"k\\\"q\\\\\"") != NULL); /* escaped as jansson does */
    ASSERT_TRUE(strstr(text, "\"channel\":null,\"channel_ref\":null") != NULL); /* empty: null */
    ASSERT_TRUE(strstr(text, "\"final\":true,\"fee\":88,") != NULL);
    free(text);
    uint32_t wrote = 0, gave_up = 0;
    check_op(&op, &wrote, &gave_up);
    ASSERT_EQ(wrote, 2);
    op.kind = PAY_OP_REFUND; /* fee_reversed, no final */
    snprintf(op.routing_number, sizeof op.routing_number, "021000021");
    snprintf(op.account_number, sizeof op.account_number, "0001");
    snprintf(op.wallet_id, sizeof op.wallet_id, "w_1");
    snprintf(op.reserve_id, sizeof op.reserve_id, "re_1:reserve");
    op.amount = INT64_MIN;
    op.created_ns = UINT64_MAX; /* jansson's integers are signed: it shows -1 */
    check_op(&op, &wrote, &gave_up);
    ASSERT_EQ(wrote, 4);
    snprintf(op.message, sizeof op.message, "caf\xc3\xa9"); /* non-ASCII: jansson's to dump */
    ASSERT_TRUE(pay_render_op(&op) == NULL);
    ASSERT_TRUE(pay_render_op_entry(&op) == NULL);
    snprintf(op.message, sizeof op.message, "tab\there");
    ASSERT_TRUE(pay_render_op(&op) == NULL);
}

/* Every length up to 24 and every position in it: one byte jansson escapes ('"',
 * '\\') is written escaped as jansson does; one it would not write as it is (a control
 * character, non-ASCII) or DEL makes the writer give up. The check of a text takes 8
 * bytes at a time and a short one (or its rest) as one word: a byte it skipped would
 * pass here as plain. */
static void test_special_at_every_position(void) {
    static const char specials[] = {'"', '\\', '\t', 0x7f, (char)0xc3};
    pay_op_t op;
    memset(&op, 0, sizeof op);
    snprintf(op.id, sizeof op.id, "op_1");
    op.kind = PAY_OP_CAPTURE;
    snprintf(op.parent_id, sizeof op.parent_id, "pay_1");
    snprintf(op.status, sizeof op.status, "succeeded");
    snprintf(op.currency, sizeof op.currency, "EUR");
    uint32_t wrote = 0, gave_up = 0;
    for (size_t n = 1; n <= 24; n++) {
        for (size_t at = 0; at < n; at++) {
            for (size_t k = 0; k < sizeof specials; k++) {
                memset(op.message, 'a', n);
                op.message[n] = '\0';
                op.message[at] = specials[k];
                char *text = pay_render_op(&op);
                bool escaped = specials[k] == '"' || specials[k] == '\\';
                if ((text != NULL) != escaped) TEST_FAIL("length %zu, byte %zu is 0x%02x: written %d", n, at,
                                                         (unsigned char)specials[k], text != NULL);
                free(text);
                if (escaped) check_op(&op, &wrote, &gave_up); /* byte for byte jansson's */
            }
        }
    }
    ASSERT_EQ(gave_up, 0);
    ASSERT_EQ(wrote, 2 * 2 * (24 * 25 / 2)); /* two texts a case, two escaped bytes */
}

static void test_random_sweep(void) {
    const char *seed = getenv("PAYCORE_SEED");
    rng_state = seed != NULL ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    if (rng_state == 0) rng_state = 1;
    printf("seed %llu (PAYCORE_SEED=<n> replays it)\n", (unsigned long long)rng_state);
    uint32_t wrote = 0, gave_up = 0;
    pay_op_t *op = malloc(sizeof *op);
    ASSERT_TRUE(op != NULL);
    for (int i = 0; i < 4000; i++) {
        random_op(op, i % 4 == 3);
        check_op(op, &wrote, &gave_up);
    }
    free(op);
    ASSERT_TRUE(wrote > 4000);  /* most were written, not handed back */
    ASSERT_TRUE(gave_up > 200); /* and the odd texts were handed back */
}

/* ---- a payment's fixed members ---- */

/* A real of any kind: integral, tiny, huge, negative zero, or random bits. */
static double random_real(void) {
    static const double picks[] = {0.0, -0.0, 1.0, 0.5, 0.123456789, 1e-20, 3.0e5, 0.1, 1e21, 1e22, 123456789012345678.0,
                                   5e-324, 1.7976931348623157e308, 2.5e-7, 100.0, 1e16, 1e17};
    if (rng_below(3) > 0) return picks[rng_below(sizeof picks / sizeof picks[0])] * (rng_below(2) ? 1 : -1);
    for (;;) {
        uint64_t bits = rng_next();
        double value;
        memcpy(&value, &bits, sizeof value);
        if (isfinite(value)) return value;
    }
}

/* Any JSON value a payment may hold (metadata, a risk detail): objects in their
 * insertion order, arrays, strings, integers, reals, booleans and null. */
static json_t *random_json(uint32_t depth, bool odd) {
    uint32_t kind = rng_below(depth >= 3 ? 6 : 8);
    char text[24];
    switch (kind) {
    case 0: return json_null();
    case 1: return json_boolean(rng_below(2));
    case 2: return json_integer(random_int());
    case 3: return json_real(random_real());
    case 4:
    case 5: {
        random_text(text, sizeof text, odd);
        json_t *string = json_string(text);
        return string != NULL ? string : json_null();
    }
    case 6: {
        json_t *array = json_array();
        for (uint32_t i = rng_below(4); i > 0; i--) json_array_append_new(array, random_json(depth + 1, odd));
        return array;
    }
    default: {
        json_t *object = json_object();
        for (uint32_t i = rng_below(5); i > 0; i--) {
            random_text(text, sizeof text, odd);
            json_object_set_new(object, text, random_json(depth + 1, odd));
        }
        return object;
    }
    }
}

static json_t *random_detail(bool odd) {
    if (rng_below(6) == 0) return NULL;
    if (rng_below(8) == 0) return json_object(); /* an empty detail */
    json_t *reasons = json_array();
    uint32_t n = rng_below(4);
    for (uint32_t i = 0; i < n; i++) {
        char code[24];
        random_text(code, sizeof code, odd);
        json_array_append_new(reasons, json_pack("{s:s,s:s}", "code", code, "action", rng_below(2) ? "decline" : "review"));
    }
    json_t *score = rng_below(5) == 0 ? json_null() : json_real(random_real());
    json_t *detail = json_pack("{s:o,s:o}", "score", score, "reasons", reasons);
    if (rng_below(4) == 0) json_object_set_new(detail, "extra", random_json(1, odd)); /* any member it may grow */
    return detail;
}

static void random_payment(pay_payment_t *p, bool odd) {
    pay_payment_init(p);
    snprintf(p->id, sizeof p->id, "pay_%llx", (unsigned long long)rng_next());
    snprintf(p->merchant_id, sizeof p->merchant_id, "m_1");
    snprintf(p->currency, sizeof p->currency, "EUR");
    p->method = (pay_method)rng_below(PAY_METHOD_COUNT);
    random_text(p->card.token, sizeof p->card.token, odd);
    random_text(p->card.bin, sizeof p->card.bin, odd);
    random_text(p->card.last4, sizeof p->card.last4, odd);
    p->card.exp_month = (uint32_t)rng_next();
    p->card.exp_year = rng_below(3000);
    random_text(p->card.fingerprint, sizeof p->card.fingerprint, odd);
    p->card.three_d_secure = rng_below(2);
    random_text(p->wallet_id, sizeof p->wallet_id, odd);
    random_text(p->routing_number, sizeof p->routing_number, odd);
    random_text(p->account_number, sizeof p->account_number, odd);
    random_text(p->payer.id, sizeof p->payer.id, odd);
    random_text(p->payer.country, sizeof p->payer.country, odd);
    random_text(p->payer.device_id, sizeof p->payer.device_id, odd);
    random_text(p->payer.ip, sizeof p->payer.ip, odd);
    random_text(p->description, sizeof p->description, odd);
    if (rng_below(4) == 0) {
        p->metadata = random_json(0, odd);
        if (!json_is_object(p->metadata)) {
            json_decref(p->metadata);
            p->metadata = NULL;
        }
    } else if (rng_below(3) > 0) {
        p->metadata = json_object();
        for (uint32_t i = rng_below(4); i > 0; i--) {
            char key[16], value[24];
            random_text(key, sizeof key, odd);
            random_text(value, sizeof value, odd);
            json_object_set_new(p->metadata, key, json_string(value));
        }
    }
    if (rng_below(4) > 0) {
        static const char *const outcomes[] = {"approve", "review", "decline"};
        snprintf(p->risk.outcome, sizeof p->risk.outcome, "%s", outcomes[rng_below(3)]);
        p->risk.decision_id = rng_next() >> 1;
        p->risk.detail = random_detail(odd);
    }
}

/* The written members are the whole document's, between its first members and
 * "routing"; or NULL where the document escapes more than '"' and '\\' there. */
static bool compare_fixed(const pay_payment_t *p) {
    char *written = pay_render_fixed(p);
    json_t *doc = pay_payment_json(p);
    char *dumped = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    ASSERT_TRUE(dumped != NULL);
    const char *from = strstr(dumped, ",\"payment_method\":");
    const char *to = from != NULL ? strstr(from, ",\"routing\":") : NULL;
    ASSERT_TRUE(from != NULL && to != NULL);
    from++;
    bool wrote = written != NULL;
    if (written != NULL) {
        if (strlen(written) != (size_t)(to - from) || strncmp(written, from, (size_t)(to - from)) != 0) {
            TEST_FAIL("fixed members differ:\n written %s\n dumped  %.*s", written, (int)(to - from), from);
        }
    } else {
        bool escaped_more = false;
        for (const char *c = from; c < to; c++) {
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7E) escaped_more = true;
            if (c[0] == '\\' && c[1] != '"' && c[1] != '\\') escaped_more = true;
            if (c[0] == '\\') c++;
        }
        if (!escaped_more) TEST_FAIL("the writer gave up on plain members: %.*s", (int)(to - from), from);
    }
    free(written);
    free(dumped);
    return wrote;
}

static void test_fixed_sweep(void) {
    uint32_t wrote = 0, gave_up = 0;
    for (int i = 0; i < 4000; i++) {
        pay_payment_t p;
        random_payment(&p, i % 4 == 3);
        if (compare_fixed(&p)) wrote++;
        else gave_up++;
        pay_payment_clear(&p);
    }
    ASSERT_TRUE(wrote > 2000);
    ASSERT_TRUE(gave_up > 100);
}

/* Risk scores, which the writer formats without printf (values in [1e-4, 1)): random
 * bits in and around the range, its decade edges, and dyadic values whose 18th digit
 * is an exact tie (printf rounds those to even). Each compared with jansson's dump. */
static double random_score(void) {
    static const double picks[] = {1e-4, 0.001, 0.01, 0.1, 0.5, 0.25, 0.99999999999999989, 0.099999999999999992,
                                   9.9999999999999991e-05, 0.0099999999999999985, 0.1000038146972656, 1.0};
    switch (rng_below(4)) {
    case 0: return picks[rng_below(sizeof picks / sizeof picks[0])];
    case 1: return ldexp((double)((rng_next() >> 40) | 1), -(int)(18 + rng_below(30)));
    case 2: return (double)(rng_next() >> 11) / 9007199254740992.0;
    default: return nextafter((double)rng_below(100000) / 100000.0, rng_below(2) ? 1.0 : 0.0);
    }
}

static void test_score_reals(void) {
    for (int i = 0; i < 20000; i++) {
        pay_payment_t p;
        pay_payment_init(&p);
        snprintf(p.id, sizeof p.id, "pay_%d", i);
        snprintf(p.merchant_id, sizeof p.merchant_id, "m_1");
        snprintf(p.currency, sizeof p.currency, "EUR");
        snprintf(p.risk.outcome, sizeof p.risk.outcome, "approve");
        p.risk.decision_id = (uint64_t)i + 1;
        p.risk.detail = json_pack("{s:f,s:[]}", "score", random_score(), "reasons");
        ASSERT_TRUE(p.risk.detail != NULL);
        ASSERT_TRUE(compare_fixed(&p)); /* every text plain: written, and equal */
        pay_payment_clear(&p);
    }
}

/* ---- a whole payment: the document and its record ---- */

static void random_changing(pay_payment_t *p, bool odd) {
    p->state = (pay_state)rng_below(PAY_STATE_COUNT);
    p->amount = random_int();
    p->capture_automatic = rng_below(2);
    p->top_up = rng_below(4) == 0;
    random_text(p->channel, sizeof p->channel, odd);
    random_text(p->channel_ref, sizeof p->channel_ref, odd);
    random_text(p->challenge_id, sizeof p->challenge_id, odd);
    p->authorized = random_int();
    p->captured = random_int();
    p->refunded = random_int();
    p->fees = random_int();
    p->fees_reversed = random_int();
    if (rng_below(2)) random_text(p->hold_id, sizeof p->hold_id, odd);
    p->hold_amount = random_int();
    p->hold_deadline_ns = (uint64_t)random_int();
    if (rng_below(2)) random_text(p->pending_op, sizeof p->pending_op, odd);
    if (rng_below(3) == 0) {
        random_text(p->decline.code, sizeof p->decline.code, odd);
        random_text(p->decline.message, sizeof p->decline.message, odd);
        random_text(p->decline.source, sizeof p->decline.source, odd);
    }
    if (rng_below(2)) p->routing = json_pack("{s:s,s:i}", "channel", "card_sim", "score", (int)rng_below(100));
    for (uint32_t i = rng_below(6); i > 0; i--) {
        char id[PC_ID_SIZE];
        random_text(id, sizeof id, odd);
        pay_payment_transfer_add(p, id);
    }
    pay_op_t *op = malloc(sizeof *op);
    ASSERT_TRUE(op != NULL);
    for (uint32_t i = rng_below(5); i > 0; i--) {
        random_op(op, odd && rng_below(3) == 0);
        pay_payment_entry_put(p, op, pay_op_entry_text(op));
    }
    free(op);
    for (uint32_t i = 0; i < p->entry_count; i++) p->entries[i].held_in = rng_below(2) ? 0 : 1 + rng_below(1000);
    p->created_ns = (uint64_t)random_int();
    p->updated_ns = (uint64_t)random_int();
    p->version = (uint32_t)rng_next();
}

/* 'dumped' between the first 'from' and the next 'to' (malloc'ed). */
static char *cut(const char *dumped, const char *from, const char *to) {
    const char *start = strstr(dumped, from);
    ASSERT_TRUE(start != NULL);
    start++; /* less the comma */
    const char *end = strstr(start, to);
    ASSERT_TRUE(end != NULL);
    return strndup(start, (size_t)(end - start));
}

/* The record is the document, but each entry held whole by an earlier record is a
 * reference to it. */
static void check_record(const pay_payment_t *p, const char *doc_text, const char *record_text) {
    json_t *doc = json_loads(doc_text, 0, NULL), *record = json_loads(record_text, 0, NULL);
    ASSERT_TRUE(doc != NULL && record != NULL);
    json_t *ops = json_object_get(record, "operations");
    ASSERT_EQ(json_array_size(ops), p->entry_count);
    for (uint32_t i = 0; i < p->entry_count; i++) {
        json_t *entry = json_array_get(ops, i);
        if (p->entries[i].held_in == 0) continue;
        ASSERT_EQ(json_object_size(entry), 2);
        ASSERT_STR_EQ(json_string_value(json_object_get(entry, "id")), p->entries[i].id);
        ASSERT_EQ(json_integer_value(json_object_get(entry, PAY_RECORD_REF_KEY)), p->entries[i].held_in);
        json_array_set(ops, i, json_array_get(json_object_get(doc, "operations"), i));
    }
    ASSERT_TRUE(json_equal(doc, record));
    json_decref(doc);
    json_decref(record);
}

/* True when written; else the changing members hold a text jansson escapes more. */
static bool compare_payment(const pay_payment_t *p) {
    json_t *built = pay_payment_json(p);
    char *dumped = built != NULL ? json_dumps(built, JSON_COMPACT) : NULL;
    json_decref(built);
    ASSERT_TRUE(dumped != NULL);
    char *fixed = cut(dumped, ",\"payment_method\":", ",\"routing\":");
    char *routing = cut(dumped, ",\"routing\":", ",\"channel\":");
    char *doc = NULL, *record = NULL;
    bool wrote = pay_render_payment(p, fixed, routing, &doc, &record);
    if (wrote) {
        ASSERT_STR_EQ(doc, dumped);
        check_record(p, doc, record);
    } else {
        ASSERT_TRUE(doc == NULL && record == NULL);
        bool escaped_more = false;
        for (const char *c = dumped; *c != '\0'; c++) {
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7E) escaped_more = true;
            if (c[0] == '\\' && c[1] != '"' && c[1] != '\\') escaped_more = true;
            if (c[0] == '\\') c++;
        }
        if (!escaped_more) TEST_FAIL("the writer gave up on a plain payment: %s", dumped);
    }
    free(doc);
    free(record);
    free(fixed);
    free(routing);
    free(dumped);
    return wrote;
}

static void test_payment_sweep(void) {
    uint32_t wrote = 0, gave_up = 0;
    for (int i = 0; i < 3000; i++) {
        pay_payment_t p;
        bool odd = i % 4 == 3;
        random_payment(&p, odd);
        random_changing(&p, odd);
        if (compare_payment(&p)) wrote++;
        else gave_up++;
        pay_payment_clear(&p);
    }
    ASSERT_TRUE(wrote > 1500);
    ASSERT_TRUE(gave_up > 100);
}

/* ---- a payment's routing (the gateway's decision) ---- */

static void random_decision(gw_decision_t *d, bool odd) {
    memset(d, 0, sizeof *d);
    d->strategy = (gw_strategy)rng_below(GW_STRATEGY_COUNT);
    d->candidate_count = rng_below(GW_CHANNELS_MAX + 1);
    for (uint32_t i = 0; i < d->candidate_count; i++) {
        gw_candidate_t *c = &d->candidates[i];
        random_text(c->name, sizeof c->name, odd && rng_below(4) == 0);
        c->why = (gw_why)rng_below(GW_WHY_COUNT);
        c->fallback = rng_below(2) == 1;
        c->weight = rng_below(3) == 0 ? UINT32_MAX : rng_below(1000);
        c->success_rate_permille = rng_below(3) == 0 ? -1 : (int32_t)rng_below(1001);
    }
    d->order_count = d->candidate_count == 0 ? 0 : rng_below(d->candidate_count + 1);
    for (uint32_t i = 0; i < d->order_count; i++) d->order[i] = (uint8_t)rng_below(d->candidate_count);
    random_text(d->chosen, sizeof d->chosen, odd && rng_below(4) == 0);
    random_text(d->why, sizeof d->why, odd);
    d->config_version = rng_below(3) == 0 ? UINT64_MAX : rng_next();
}

/* pay_render_routing's text in braces, against {"routing": gw_decision_json(d)}. */
static bool check_routing(const gw_decision_t *d) {
    pay_text_t *text = pay_render_routing(d);
    char *written = NULL;
    if (text != NULL) {
        size_t bytes = strlen(text->text);
        written = malloc(bytes + 3);
        ASSERT_TRUE(written != NULL);
        written[0] = '{';
        memcpy(written + 1, text->text, bytes);
        memcpy(written + 1 + bytes, "}", 2);
        pay_text_drop(text);
    }
    return compare("routing", written, json_pack("{s:o}", "routing", gw_decision_json(d)));
}

static void test_routing_sweep(void) {
    uint32_t wrote = 0, gave_up = 0;
    gw_decision_t d;
    for (int i = 0; i < 3000; i++) {
        random_decision(&d, i % 4 == 3);
        if (check_routing(&d)) wrote++;
        else gave_up++;
    }
    ASSERT_TRUE(wrote > 2000);
    ASSERT_TRUE(gave_up > 50);
    /* a payment holding its routing as text reads it back as the decision's object, and
     * a copy keeps it */
    do random_decision(&d, false);
    while (d.candidate_count == 0);
    pay_payment_t p, copy;
    pay_payment_init(&p);
    pay_payment_routing_set(&p, &d);
    ASSERT_TRUE(p.routing == NULL && p.routing_text != NULL);
    ASSERT_EQ(pay_payment_copy(&copy, &p), PC_OK);
    json_t *expected = gw_decision_json(&d);
    const pay_payment_t *both[2] = {&p, &copy};
    for (int i = 0; i < 2; i++) {
        json_t *whole = pay_payment_json(both[i]);
        ASSERT_TRUE(whole != NULL && json_equal(json_object_get(whole, "routing"), expected));
        json_decref(whole);
    }
    json_decref(expected);
    pay_payment_clear(&copy);
    pay_payment_clear(&p);
}

int main(void) {
    TEST_RUN(test_hand_cases);
    TEST_RUN(test_special_at_every_position);
    TEST_RUN(test_random_sweep);
    TEST_RUN(test_fixed_sweep);
    TEST_RUN(test_score_reals);
    TEST_RUN(test_payment_sweep);
    TEST_RUN(test_routing_sweep);
    return test_finish();
}
