/* Goal: the event JSON copied together from its parts (events/model.c: accounts,
 * transfers, the envelope, event ids) is byte for byte what the printf formats it
 * replaced gave: receivers verify signatures over these bytes, and stored events are
 * compared with new ones. Method: random accounts, transfers and envelopes (every flag
 * combination, the integers' edges, metadata or none, each pending state), rendered by
 * model.c and by the formats kept here, compared as bytes; the buffer also grows from
 * empty and from a text already in it. An envelope's size counted without rendering it
 * (an event stored as a reference) is the rendered one's. */
#include <inttypes.h>
#include <stdarg.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "test.h"

/* ---- the formats the rendering replaced, as they were ---- */

static void want_printf(events_buf_t *buf, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void want_printf(events_buf_t *buf, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char text[4096];
    int n = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    ASSERT_TRUE(n >= 0 && (size_t)n < sizeof text);
    events_buf_append(buf, text, (size_t)n);
}

static void want_flags(events_buf_t *buf, uint16_t flags, const char *(*name_of)(uint16_t)) {
    events_buf_append(buf, "[", 1);
    bool first = true;
    for (uint32_t bit = 0; bit < 16; bit++) {
        uint16_t flag = (uint16_t)(1u << bit);
        const char *name = (flags & flag) ? name_of(flag) : NULL;
        if (name == NULL) continue;
        want_printf(buf, "%s\"%s\"", first ? "" : ",", name);
        first = false;
    }
    events_buf_append(buf, "]", 1);
}

static const char *want_metadata(const char *metadata_json) {
    return metadata_json != NULL && metadata_json[0] != '\0' ? metadata_json : "{}";
}

static void want_account(events_buf_t *buf, const ledger_account_t *a) {
    const ledger_balances_t *b = &a->balances;
    want_printf(buf, "{\"id\":\"%s\",\"currency\":\"%s\",\"code\":%u,\"flags\":", a->id, a->currency,
                (unsigned)a->code);
    want_flags(buf, a->flags, ledger_account_flag_name);
    want_printf(buf,
                ",\"debits_pending\":%" PRId64 ",\"debits_posted\":%" PRId64 ",\"credits_pending\":%" PRId64
                ",\"credits_posted\":%" PRId64 ",\"metadata\":%s,\"timestamp\":%" PRIu64 "}",
                b->debits_pending, b->debits_posted, b->credits_pending, b->credits_posted,
                want_metadata(a->metadata_json), a->timestamp_ns);
}

static void want_transfer(events_buf_t *buf, const ledger_transfer_t *t, ledger_pending_state state) {
    want_printf(buf,
                "{\"id\":\"%s\",\"debit_account_id\":\"%s\",\"credit_account_id\":\"%s\",\"amount\":%" PRId64
                ",\"currency\":\"%s\",\"code\":%u,\"flags\":",
                t->id, t->debit_account_id, t->credit_account_id, t->amount, t->currency, (unsigned)t->code);
    want_flags(buf, t->flags, ledger_transfer_flag_name);
    if (t->pending_id[0] != '\0') want_printf(buf, ",\"pending_id\":\"%s\"", t->pending_id);
    want_printf(buf, ",\"timeout_s\":%u,\"metadata\":%s,\"timestamp\":%" PRIu64, (unsigned)t->timeout_s,
                want_metadata(t->metadata_json), t->timestamp_ns);
    if (state != LEDGER_PENDING_NONE) want_printf(buf, ",\"pending_state\":\"%s\"", ledger_pending_state_name(state));
    events_buf_append(buf, "}", 1);
}

static void want_envelope(events_buf_t *buf, uint64_t seq, events_type type, const char *object_id,
                          uint32_t object_seq, const char *object_json, const char *extra) {
    want_printf(buf,
                "{\"id\":\"evt_%016" PRIx64 "\",\"object\":\"event\",\"type\":\"%s\",\"created\":%" PRIu64
                ",\"object_id\":\"%s\",\"object_seq\":%u,\"data\":{\"object\":%s%s%s}}",
                seq, events_type_name(type), seq, object_id, (unsigned)object_seq, object_json,
                extra != NULL ? "," : "", extra != NULL ? extra : "");
}

/* ---- random inputs ---- */

static int64_t rand_i64(void) {
    static const int64_t edges[] = {0, 1, -1, 9, 10, -10, 99, 100, INT64_MAX, INT64_MIN, INT64_MAX - 1,
                                    INT64_MIN + 1, 999999999999999999LL, 1000000000000000000LL};
    uint32_t pick = test_rand_below(4);
    if (pick == 0) return edges[test_rand_below(sizeof edges / sizeof edges[0])];
    if (pick == 1) return (int64_t)(test_rand() % 100000);
    return (int64_t)test_rand(); /* any, negative ones too */
}

static uint64_t rand_u64(void) {
    static const uint64_t edges[] = {0, 1, 9, 10, UINT32_MAX, (uint64_t)INT64_MAX, UINT64_MAX, 10000000000000000000u};
    if (test_rand_below(3) == 0) return edges[test_rand_below(sizeof edges / sizeof edges[0])];
    return test_rand() >> test_rand_below(64);
}

static void rand_id(char *out, size_t out_bytes) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
    size_t bytes = 1 + test_rand_below((uint32_t)(out_bytes - 1));
    for (size_t i = 0; i < bytes; i++) out[i] = alphabet[test_rand_below(sizeof alphabet - 1)];
    out[bytes] = '\0';
}

static const char *rand_metadata(void) {
    static const char *const metadata[] = {NULL, "", "{}", "{\"order\":\"A-17\",\"n\":3}", "{\"k\":{\"x\":[1,2]}}"};
    return metadata[test_rand_below(sizeof metadata / sizeof metadata[0])];
}

static void rand_currency(char out[4]) {
    static const char *const codes[] = {"EUR", "USD", "JPY", "BHD"};
    pc_str_copy(out, 4, codes[test_rand_below(4)]);
}

/* ---- the comparisons ---- */

static void expect_same(const events_buf_t *got, const events_buf_t *want) {
    ASSERT_FALSE(got->failed);
    ASSERT_FALSE(want->failed);
    ASSERT_EQ(got->bytes, want->bytes);
    ASSERT_TRUE(memcmp(got->text, want->text, got->bytes) == 0);
    ASSERT_EQ(got->text[got->bytes], '\0');
}

/* A buffer that starts empty or with text in it (the envelope's object follows it). */
static void buffers_start(events_buf_t *got, events_buf_t *want) {
    memset(got, 0, sizeof *got);
    memset(want, 0, sizeof *want);
    if (test_rand_below(2) == 0) return;
    char prefix[64];
    rand_id(prefix, sizeof prefix);
    events_buf_append(got, prefix, strlen(prefix));
    events_buf_append(want, prefix, strlen(prefix));
}

static void test_accounts(void) {
    for (int round = 0; round < 20000; round++) {
        ledger_account_t a;
        memset(&a, 0, sizeof a);
        rand_id(a.id, sizeof a.id);
        rand_currency(a.currency);
        a.code = (uint16_t)test_rand();
        a.flags = (uint16_t)test_rand(); /* every bit, named or not */
        a.balances.debits_pending = rand_i64();
        a.balances.debits_posted = rand_i64();
        a.balances.credits_pending = rand_i64();
        a.balances.credits_posted = rand_i64();
        a.metadata_json = rand_metadata();
        a.timestamp_ns = rand_u64();
        events_buf_t got, want;
        buffers_start(&got, &want);
        events_render_account(&got, &a);
        want_account(&want, &a);
        expect_same(&got, &want);
        events_buf_free(&got);
        events_buf_free(&want);
    }
}

static void test_transfers(void) {
    for (int round = 0; round < 20000; round++) {
        ledger_transfer_t t;
        memset(&t, 0, sizeof t);
        rand_id(t.id, sizeof t.id);
        rand_id(t.debit_account_id, sizeof t.debit_account_id);
        rand_id(t.credit_account_id, sizeof t.credit_account_id);
        if (test_rand_below(2) == 0) rand_id(t.pending_id, sizeof t.pending_id);
        rand_currency(t.currency);
        t.amount = rand_i64();
        t.code = (uint16_t)test_rand();
        t.flags = (uint16_t)test_rand(); /* every bit, named or not (EXPIRY is the ledger's own) */
        t.timeout_s = (uint32_t)rand_u64();
        t.metadata_json = rand_metadata();
        t.timestamp_ns = rand_u64();
        ledger_pending_state state = (ledger_pending_state)test_rand_below(LEDGER_PENDING_EXPIRED + 1);
        events_buf_t got, want;
        buffers_start(&got, &want);
        events_render_transfer(&got, &t, state);
        want_transfer(&want, &t, state);
        expect_same(&got, &want);
        events_buf_free(&got);
        events_buf_free(&want);
    }
}

static void test_envelopes(void) {
    static const char *const objects[] = {"{}", "{\"id\":\"x\"}", ""};
    static const char *const extras[] = {NULL, "\"previous\":{\"a\":1}"};
    for (int round = 0; round < 20000; round++) {
        uint64_t seq = round < 4 ? (uint64_t[]){1, 15, 16, (uint64_t)INT64_MAX}[round] : 1 + test_rand() % INT64_MAX;
        events_type type = (events_type)test_rand_below(EVENTS_TYPE_COUNT);
        char object_id[PC_ID_SIZE];
        rand_id(object_id, sizeof object_id);
        uint32_t object_seq = round % 7 == 0 ? UINT32_MAX : 1 + test_rand_below(9);
        const char *object = objects[test_rand_below(3)];
        const char *extra = extras[test_rand_below(2)];
        events_buf_t got, want;
        buffers_start(&got, &want);
        events_render_envelope(&got, seq, type, object_id, object_seq, object, strlen(object), extra,
                               extra != NULL ? strlen(extra) : 0);
        want_envelope(&want, seq, type, object_id, object_seq, object, extra);
        expect_same(&got, &want);
        if (extra == NULL) { /* an event stored as a reference is counted, not rendered */
            size_t prefix_bytes = strcspn(want.text, "{"); /* buffers_start's text has none */
            ASSERT_EQ(events_envelope_bytes(seq, type, strlen(object_id), object_seq, strlen(object)),
                      want.bytes - prefix_bytes);
        }
        char id[EVENTS_ID_SIZE], want_id[EVENTS_ID_SIZE + 8];
        events_id_format(seq, id);
        snprintf(want_id, sizeof want_id, "evt_%016" PRIx64, seq);
        ASSERT_STR_EQ(id, want_id);
        uint64_t parsed = 0;
        ASSERT_TRUE(events_id_parse(id, &parsed));
        ASSERT_EQ(parsed, seq);
        events_buf_free(&got);
        events_buf_free(&want);
    }
}

/* An envelope's size counted at every width of its two numbers (the digits of seq and
 * object_seq), as rendered. */
static void test_envelope_bytes(void) {
    uint64_t power = 1;
    for (int digits = 1; digits <= 19; digits++, power *= 10) {
        uint64_t seqs[] = {power, power - 1 > 0 ? power - 1 : 1, power * 9 > power ? power * 9 : power};
        for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
            uint64_t seq = seqs[i] > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : seqs[i];
            uint32_t object_seq = (uint32_t)(power > UINT32_MAX ? UINT32_MAX : power - (i == 1));
            if (object_seq == 0) object_seq = 1;
            events_type type = (events_type)((size_t)digits % EVENTS_TYPE_COUNT);
            events_buf_t got = {0};
            events_render_envelope(&got, seq, type, "pay_0661", object_seq, "{\"a\":1}", 7, NULL, 0);
            ASSERT_FALSE(got.failed);
            ASSERT_EQ(events_envelope_bytes(seq, type, 8, object_seq, 7), got.bytes);
            events_buf_free(&got);
        }
    }
}

/* The number helpers alone, against printf, over their whole range's edges. */
static void test_numbers(void) {
    for (int round = 0; round < 100000; round++) {
        int64_t i = rand_i64();
        uint64_t u = rand_u64();
        events_buf_t got = {0};
        events_buf_i64(&got, i);
        events_buf_str(&got, " ");
        events_buf_u64(&got, u);
        char want[64];
        snprintf(want, sizeof want, "%" PRId64 " %" PRIu64, i, u);
        ASSERT_FALSE(got.failed);
        ASSERT_STR_EQ(got.text, want);
        ASSERT_EQ(got.bytes, strlen(want));
        events_buf_free(&got);
    }
}

int main(void) {
    TEST_RUN(test_numbers);
    TEST_RUN(test_accounts);
    TEST_RUN(test_transfers);
    TEST_RUN(test_envelopes);
    TEST_RUN(test_envelope_bytes);
    return test_finish();
}
