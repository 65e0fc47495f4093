/* Goal: pc_json_plain_object takes only texts jansson loads, and loads each to the
 * object jansson builds; it takes the usual answers and requests (so the fast path is
 * used), and refuses what it must leave to jansson (escapes, reals, arrays, duplicate
 * keys, "-0", leading zeros, long integers, trailing bytes, other bytes). Method:
 * fixed texts, then 50000 random texts from a grammar with faults mixed in (random
 * whitespace, bytes, truncation, duplicates), each loaded both ways and compared with
 * json_equal; the random run must have taken and refused thousands each. */
#include <sodium.h>
#include <stdbool.h>

#include "core/json_plain.h"
#include "test.h"

typedef struct {
    char text[4096];
    size_t bytes;
} text_t;

static void put(text_t *t, const char *piece) {
    size_t n = strlen(piece);
    if (t->bytes + n < sizeof t->text) {
        memcpy(t->text + t->bytes, piece, n);
        t->bytes += n;
    }
}

static void put_char(text_t *t, char c) {
    if (t->bytes + 1 < sizeof t->text) t->text[t->bytes++] = c;
}

/* Both ways: what the fast loader takes, jansson takes, to the same object. */
static bool compare(const char *text, size_t bytes) {
    json_t *fast = pc_json_plain_object(text, bytes);
    json_error_t error;
    json_t *slow = json_loadb(text, bytes, 0, &error);
    if (fast != NULL) {
        if (slow == NULL) TEST_FAIL("taken, but jansson refuses (%s): %.*s", error.text, (int)bytes, text);
        if (!json_equal(fast, slow)) TEST_FAIL("taken to another object: %.*s", (int)bytes, text);
        json_t *strict = json_loadb(text, bytes, JSON_REJECT_DUPLICATES, NULL);
        if (strict == NULL) TEST_FAIL("taken with a duplicate key: %.*s", (int)bytes, text);
        json_decref(strict);
    }
    json_decref(fast);
    json_decref(slow);
    return fast != NULL;
}

static void expect_taken(const char *text) {
    if (!compare(text, strlen(text))) TEST_FAIL("refused: %s", text);
}

static void expect_refused(const char *text) {
    if (compare(text, strlen(text))) TEST_FAIL("taken: %s", text);
}

static void test_fixed(void) {
    expect_taken("{}");
    expect_taken(" \r\n\t{ } \n");
    expect_taken("{\"id\":\"auth_4f2a\",\"status\":\"approved\",\"response_code\":\"00\",\"message\":\"approved\","
                 "\"amount\":1000,\"currency\":\"EUR\",\"approval_code\":\"4F2A9C\"}");
    expect_taken("{\"amount\":1000,\"currency\":\"EUR\",\"card\":{\"number\":\"4000000000000002\",\"exp_month\":12,"
                 "\"exp_year\":2030,\"cvc\":\"123\"},\"merchant_ref\":\"pay_1\",\"capture\":false}");
    expect_taken("{\"found\":true,\"response\":{\"a\":{\"b\":null}},\"n\":-12,\"z\":0,\"\":\"\"}");
    expect_taken("{\"big\":999999999999999999,\"low\":-999999999999999999}");
    static const char *const refused[] = {
        "", "{", "}", "[]", "[{}]", "\"x\"", "1", "{}x", "{} {}", "{\"a\":1,}", "{,}", "{\"a\" 1}",
        "{\"a\":-0}", "{\"a\":01}", "{\"a\":1.0}", "{\"a\":1e3}", "{\"a\":-}", "{\"a\":1234567890123456789}",
        "{\"a\":\"\\n\"}", "{\"a\":\"\\\"\"}", "{\"a\":\"caf\xc3\xa9\"}", "{\"a\":\"\x7f\"}", "{\"a\":\"\t\"}",
        "{\"a\":[]}", "{\"a\":1,\"a\":2}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}", "{a:1}",
        "{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", "{\"a\":\"x}", "{\"a\":1",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) expect_refused(refused[i]);
    static const char with_nul[] = "{\"a\":\"x\0y\"}";
    ASSERT_FALSE(compare(with_nul, sizeof with_nul - 1));
    ASSERT_TRUE(pc_json_plain_object(NULL, 0) == NULL);
}

static void random_ws(text_t *t) {
    static const char ws[] = " \t\r\n";
    while (test_rand_below(4) == 0) put_char(t, ws[test_rand_below(4)]);
}

static void random_string(text_t *t) {
    static const char chars[] = "abcxyz_-/ 09AZ{}[]:,.";
    put_char(t, '"');
    for (uint32_t n = test_rand_below(6); n > 0; n--) {
        uint32_t pick = test_rand_below(40);
        if (pick == 0) put(t, "\\\"");
        else if (pick == 1) put(t, "\\u0041");
        else if (pick == 2) put_char(t, (char)(0x80 + test_rand_below(0x40)));
        else put_char(t, chars[test_rand_below(sizeof chars - 1)]);
    }
    put_char(t, '"');
}

static void random_number(text_t *t) {
    static const char *const odd[] = {"-0", "00", "01", "1.5", "2e3", "-", "1234567890123456789",
                                      "-9223372036854775808", "99999999999999999999"};
    if (test_rand_below(10) == 0) {
        put(t, odd[test_rand_below(sizeof odd / sizeof odd[0])]);
        return;
    }
    if (test_rand_below(3) == 0) put_char(t, '-');
    uint32_t digits = 1 + test_rand_below(18);
    put_char(t, (char)('1' + test_rand_below(9)));
    for (uint32_t i = 1; i < digits; i++) put_char(t, (char)('0' + test_rand_below(10)));
}

static void random_object(text_t *t, int depth);

static void random_value(text_t *t, int depth) {
    random_ws(t);
    switch (test_rand_below(depth < 4 ? 8 : 6)) {
    case 0: case 1: random_string(t); break;
    case 2: case 3: random_number(t); break;
    case 4: put(t, test_rand_below(2) ? "true" : "false"); break;
    case 5: put(t, test_rand_below(8) ? "null" : "[1]"); break;
    default: random_object(t, depth + 1); break;
    }
    random_ws(t);
}

static void random_object(text_t *t, int depth) {
    static const char *const keys[] = {"id", "status", "amount", "currency", "a", "b", ""};
    put_char(t, '{');
    uint32_t count = test_rand_below(6);
    for (uint32_t i = 0; i < count; i++) {
        if (i > 0) put_char(t, ',');
        random_ws(t);
        put_char(t, '"');
        put(t, keys[test_rand_below(sizeof keys / sizeof keys[0])]); /* duplicates now and then */
        put_char(t, '"');
        random_ws(t);
        put_char(t, ':');
        random_value(t, depth);
    }
    put_char(t, '}');
}

static void test_random(void) {
    uint32_t taken = 0, refused = 0;
    for (int i = 0; i < 50000; i++) {
        text_t t = {.bytes = 0};
        random_ws(&t);
        random_object(&t, 1);
        random_ws(&t);
        uint32_t fault = test_rand_below(10);
        if (fault == 0 && t.bytes > 0) t.bytes = test_rand_below((uint32_t)t.bytes); /* cut short */
        if (fault == 1 && t.bytes > 0) t.text[test_rand_below((uint32_t)t.bytes)] = (char)test_rand_below(256);
        if (fault == 2) put(&t, test_rand_below(2) ? "x" : "{}");
        if (compare(t.text, t.bytes)) taken++;
        else refused++;
    }
    if (taken < 5000 || refused < 5000) TEST_FAIL("taken %u, refused %u: the texts miss a side", taken, refused);
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_fixed);
    TEST_RUN(test_random);
    return test_finish();
}
