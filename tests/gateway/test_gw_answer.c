/* Goal: a channel's answer read in place (answer.c, plain JSON) gives the decoders what
 * jansson gives them for the same bytes: the same object or none, the same members,
 * types and values, and so the same outcome, code, id and amounts from every
 * connector; malformed, truncated, unexpected fields and types included. An answer that
 * is not a JSON object is no object (the gateway calls it invalid_json: unknown, then a
 * status inquiry), never an approval. The usual answers take the plain path.
 * Method: fixed texts and every truncation and one-byte corruption of real answers,
 * each loaded both ways (plain allowed, jansson only), compared member by member and
 * through each connector's decode. */
#include <sodium.h>

#include "gateway/gw_internal.h"
#include "test.h"

static const char *const probe_keys[] = {"id", "status", "response_code", "message", "amount", "currency",
                                         "approval_code", "captured_total", "refunded_total", "challenge_id",
                                         "found", "response", "error", "code", "field", "return_code", "a", "b",
                                         ""};

static void expect_same_obj(const gw_obj_t *x, const gw_obj_t *y, int depth) {
    ASSERT_EQ(gw_obj_valid(x), gw_obj_valid(y));
    for (size_t i = 0; i < sizeof probe_keys / sizeof probe_keys[0]; i++) {
        const char *key = probe_keys[i];
        const char *sx = gw_obj_str(x, key), *sy = gw_obj_str(y, key);
        ASSERT_EQ(sx == NULL, sy == NULL);
        if (sx != NULL) ASSERT_STR_EQ(sx, sy);
        int64_t ix = 0, iy = 0;
        bool hx = gw_obj_int(x, key, &ix), hy = gw_obj_int(y, key, &iy);
        ASSERT_EQ(hx, hy);
        ASSERT_EQ(ix, iy);
        ASSERT_EQ(gw_obj_bool(x, key), gw_obj_bool(y, key));
        gw_obj_t ox = gw_obj_object(x, key), oy = gw_obj_object(y, key);
        ASSERT_EQ(gw_obj_valid(&ox), gw_obj_valid(&oy));
        if (depth < 3 && gw_obj_valid(&ox)) expect_same_obj(&ox, &oy, depth + 1);
    }
}

static gw_channel_cfg_t channel_of(gw_kind kind) {
    gw_channel_cfg_t ch;
    memset(&ch, 0, sizeof ch);
    ch.kind = kind;
    ch.code_count = gw_codes_default(kind, ch.codes, GW_CODES_MAX);
    return ch;
}

static void expect_same_answer(const gw_answer_t *x, const gw_answer_t *y) {
    ASSERT_EQ(x->outcome, y->outcome);
    ASSERT_EQ(x->status, y->status);
    ASSERT_STR_EQ(x->code, y->code);
    ASSERT_STR_EQ(x->ref, y->ref);
    ASSERT_STR_EQ(x->message, y->message);
    ASSERT_STR_EQ(x->approval_code, y->approval_code);
    ASSERT_STR_EQ(x->challenge_id, y->challenge_id);
    ASSERT_STR_EQ(x->detail, y->detail);
    ASSERT_EQ(x->amount_minor, y->amount_minor);
    ASSERT_EQ(x->total_minor, y->total_minor);
}

/* Every connector and operation decodes the two readings alike; returns whether the
 * plain path took it. */
static bool expect_same(const char *text, size_t bytes) {
    gw_doc_t plain_doc, jansson_doc;
    gw_obj_t plain = gw_doc_load(&plain_doc, text, bytes, true);
    gw_obj_t loaded = gw_doc_load(&jansson_doc, text, bytes, false);
    bool took_plain = plain.doc != NULL;
    expect_same_obj(&plain, &loaded, 0);
    if (gw_obj_valid(&plain)) {
        static const gw_kind kinds[] = {GW_KIND_CARD, GW_KIND_WALLET, GW_KIND_BANK};
        static const gw_op ops[] = {GW_OP_AUTHORIZE, GW_OP_CAPTURE, GW_OP_REFUND, GW_OP_VOID, GW_OP_CHALLENGE};
        gw_request_t req;
        memset(&req, 0, sizeof req);
        req.amount_minor = 1250;
        memcpy(req.currency, "EUR", 4);
        for (size_t k = 0; k < 3; k++) {
            gw_channel_cfg_t ch = channel_of(kinds[k]);
            for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
                for (int found = -1; found <= 1; found++) {
                    gw_answer_t x, y;
                    memset(&x, 0, sizeof x);
                    memset(&y, 0, sizeof y);
                    x.found = y.found = found;
                    gw_connector(kinds[k])->decode(&ch, &req, ops[o], &plain, 200, &x);
                    gw_connector(kinds[k])->decode(&ch, &req, ops[o], &loaded, 200, &y);
                    expect_same_answer(&x, &y);
                }
            }
        }
    }
    gw_doc_free(&plain_doc);
    gw_doc_free(&jansson_doc);
    return took_plain;
}

static const char approval[] =
    "{\"id\":\"auth_0123456789abcdef01234567\",\"status\":\"approved\",\"response_code\":\"00\","
    "\"message\":\"approved\",\"amount\":1250,\"currency\":\"EUR\",\"approval_code\":\"A1B2C3\"}";
static const char capture[] =
    "{\"id\":\"cap_0123456789abcdef01234567\",\"authorization_id\":\"auth_0123456789abcdef01234567\","
    "\"status\":\"approved\",\"response_code\":\"00\",\"message\":\"approved\",\"amount\":1250,"
    "\"currency\":\"EUR\",\"captured_total\":1250}";
static const char inquiry[] =
    "{\"found\":true,\"operation\":\"authorize\",\"http_status\":200,\"response\":{\"id\":\"auth_1\","
    "\"status\":\"declined\",\"response_code\":\"51\",\"message\":\"insufficient funds\",\"amount\":1250,"
    "\"currency\":\"EUR\"}}";

static void test_usual_answers_plain(void) {
    ASSERT_TRUE(expect_same(approval, strlen(approval)));
    ASSERT_TRUE(expect_same(capture, strlen(capture)));
    ASSERT_TRUE(expect_same(inquiry, strlen(inquiry)));
    /* the approval decodes as one */
    gw_doc_t doc;
    gw_obj_t body = gw_doc_load(&doc, approval, strlen(approval), true);
    gw_channel_cfg_t ch = channel_of(GW_KIND_CARD);
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.amount_minor = 1250;
    memcpy(req.currency, "EUR", 4);
    gw_answer_t a;
    memset(&a, 0, sizeof a);
    gw_connector_card.decode(&ch, &req, GW_OP_AUTHORIZE, &body, 200, &a);
    ASSERT_EQ(a.outcome, GW_OUTCOME_APPROVED);
    ASSERT_STR_EQ(a.ref, "auth_0123456789abcdef01234567");
    ASSERT_STR_EQ(a.approval_code, "A1B2C3");
    gw_doc_free(&doc);
}

static void test_fixed_texts(void) {
    static const char *const texts[] = {
        "", " ", "{", "}", "{}", " {} ", "{} x", "[]", "[{}]", "\"text\"", "12", "null", "true",
        "{\"a\":1,}", "{,}", "{\"a\" 1}", "{\"a\":}", "{\"a\":1 \"b\":2}", "{'a':1}", "{a:1}",
        "{\"a\":1}{\"b\":2}", "{\"a\":01}", "{\"a\":-0}", "{\"a\":-}", "{\"a\":1.5}", "{\"a\":1e3}", "{\"a\":1E3}",
        "{\"a\":123456789012345678}", "{\"a\":1234567890123456789}", "{\"a\":-9223372036854775808}",
        "{\"a\":99999999999999999999}", "{\"a\":+1}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}",
        "{\"a\":\"x\\\"y\"}", "{\"a\":\"\\u0041\"}", "{\"a\":\"\\u0000b\"}", "{\"a\":\"caf\xc3\xa9\"}",
        "{\"a\":\"\xff\"}", "{\"a\":\"tab\there\"}", "{\"a\":1,\"a\":2}", "{\"a\":\"x\",\"a\":3}",
        "{\"a\":{\"b\":1},\"b\":{\"a\":2}}", "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}",
        "{\"a\":{\"b\":{\"c\":{}}}}", "{\"a\":[1,2]}", "{\"idx\":\"1\",\"id\":\"2\",\"i\":3}",
        "{\"i\":\"1\",\"id\":{\"id\":\"2\"}}", "{\"a~\":1,\"a\x7f\":2}", "{\"a\":{}}", "{\"\":1}", "{\"a\":null}",
        "{\"response_code\":\"00\",\"status\":\"approved\",\"amount\":\"1250\",\"currency\":\"EUR\",\"id\":\"x\"}",
        "{\"response_code\":0,\"status\":\"approved\",\"amount\":1250,\"currency\":\"EUR\",\"id\":\"x\"}",
        "{\"response_code\":\"00\",\"status\":\"declined\",\"amount\":1250,\"currency\":\"EUR\",\"id\":\"x\"}",
        "{\"response_code\":\"00\",\"status\":\"approved\",\"amount\":1250.0,\"currency\":\"EUR\",\"id\":\"x\"}",
        "{\"response_code\":\"00\",\"status\":\"approved\",\"amount\":1250,\"currency\":\"EUR\",\"id\":\"x\","
        "\"amount\":1}",
        "{\"response_code\":\"Z9\",\"status\":\"approved\",\"amount\":1250,\"currency\":\"EUR\",\"id\":\"x\"}",
        "{\"response_code\":\"1A\",\"status\":\"challenge_required\",\"challenge_id\":\"ch_1\",\"id\":\"a\"}",
        "{\"response_code\":\"00\",\"status\":\"approved\",\"amount\":1250,\"currency\":\"EUR\",\"id\":\"x y\"}",
        "{\"error\":{\"code\":\"idempotency_key_reused\",\"field\":\"key\"}}", "{\"error\":\"text\"}",
        "{\"found\":false}", "{\"found\":true,\"response\":[]}", "{\"found\":\"true\",\"response\":{}}",
        "{\"found\":true,\"response\":null}", "{\"status\":\"pending\",\"id\":\"bt_1\"}",
        "{\"status\":\"returned\",\"return_code\":\"R01\",\"id\":\"bt_1\"}",
        "\xef\xbb\xbf{}", "{\"a\":1}\0", "{\"a\":\"\0\"}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) expect_same(texts[i], strlen(texts[i]));
    expect_same("{\"a\":1}\0", 8);   /* a NUL after the object */
    expect_same("{\"a\":\"\0\"}", 9); /* a NUL in a string */
    expect_same(NULL, 0);
}

/* Many members, long strings: past the doc's room the answer goes to jansson. */
static void test_large(void) {
    char text[GW_DOC_TEXT_BYTES * 3];
    size_t at = 0;
    text[at++] = '{';
    for (int i = 0; i < GW_DOC_MEMBERS_MAX + 5; i++) {
        at += (size_t)snprintf(text + at, sizeof text - at, "%s\"k%d\":%d", i ? "," : "", i, i);
    }
    at += (size_t)snprintf(text + at, sizeof text - at, ",\"id\":\"x\",\"amount\":1250}");
    ASSERT_FALSE(expect_same(text, at));
    at = (size_t)snprintf(text, sizeof text, "{\"message\":\"");
    memset(text + at, 'm', GW_DOC_TEXT_BYTES + 10);
    at += GW_DOC_TEXT_BYTES + 10;
    at += (size_t)snprintf(text + at, sizeof text - at, "\",\"response_code\":\"00\"}");
    ASSERT_FALSE(expect_same(text, at));
}

/* Every prefix and every one-byte change of the usual answers. */
static void test_truncated_and_corrupted(void) {
    static const char *const answers[] = {approval, capture, inquiry};
    static const char replacements[] = {'"', '{', '}', ',', ':', '0', '-', '.', 'e', '\\', ' ', 'x', '\0', '\x80'};
    for (size_t a = 0; a < 3; a++) {
        size_t bytes = strlen(answers[a]);
        char text[512];
        for (size_t cut = 0; cut < bytes; cut++) {
            expect_same(answers[a], cut);
        }
        for (size_t i = 0; i < bytes; i++) {
            for (size_t r = 0; r < sizeof replacements; r++) {
                memcpy(text, answers[a], bytes);
                text[i] = replacements[r];
                expect_same(text, bytes);
            }
        }
    }
}

/* A truncated answer is no object: the gateway never reads an outcome from it. */
static void test_truncated_is_no_object(void) {
    for (size_t cut = 0; cut < strlen(approval); cut++) {
        gw_doc_t doc;
        gw_obj_t body = gw_doc_load(&doc, approval, cut, true);
        ASSERT_FALSE(gw_obj_valid(&body));
        gw_doc_free(&doc);
    }
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_usual_answers_plain);
    TEST_RUN(test_fixed_texts);
    TEST_RUN(test_large);
    TEST_RUN(test_truncated_and_corrupted);
    TEST_RUN(test_truncated_is_no_object);
    return test_finish();
}
