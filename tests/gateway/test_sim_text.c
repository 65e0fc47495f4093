/* Goal: the simulator's texts written without jansson are jansson's bytes. The canonical
 * body (hashed with the Idempotency-Key: a record written by a simulator that dumped it
 * through jansson must still match) equals json_dumps(JSON_COMPACT | JSON_SORT_KEYS),
 * or is refused (a real, a non-ASCII or control character) so the caller dumps through
 * jansson; an answer written member by member equals json_dumps(JSON_COMPACT) of the
 * object packed with the same members. Method: fixed bodies with every case, then
 * 20000 random ones (random keys with quotes and backslashes, nesting, negative and
 * large integers, literals), both ways in process. */
#include <inttypes.h>
#include <sodium.h>

#include "gateway/sim_internal.h"
#include "test.h"

static void expect_canonical(const json_t *body) {
    sim_answer_t written;
    char *dumped = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    ASSERT_TRUE(dumped != NULL);
    if (!sim_canonical_text(body, &written)) TEST_FAIL("refused %s", dumped);
    written.text[written.bytes] = '\0';
    ASSERT_STR_EQ(written.text, dumped);
    free(dumped);
}

static void expect_refused(const char *text) {
    json_t *body = json_loads(text, JSON_ALLOW_NUL, NULL);
    ASSERT_TRUE(body != NULL);
    sim_answer_t written;
    if (sim_canonical_text(body, &written)) TEST_FAIL("took %s", text);
    json_decref(body);
}

static void test_canonical_fixed(void) {
    static const char *const bodies[] = {
        "{}",
        "{\"amount\":1000,\"currency\":\"EUR\",\"card\":{\"number\":\"4000000000000002\",\"exp_month\":12,"
        "\"exp_year\":2030,\"cvc\":\"123\"},\"merchant_ref\":\"pay_1\",\"capture\":false}",
        "{\"z\":1,\"a\":2,\"m\":{\"y\":null,\"b\":true,\"a\":[1,-2,{\"q\":\"x\"},[]]}}",
        "{\"k\\\"ey\":\"va\\\\lue\",\"\":\"\",\"ab\":\"a\",\"a\":\"b\",\"aa\":-9223372036854775808}",
        "{\"n\":9223372036854775807,\"e\":[],\"o\":{}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        json_t *body = json_loads(bodies[i], 0, NULL);
        ASSERT_TRUE(body != NULL);
        expect_canonical(body);
        json_decref(body);
    }
    expect_refused("{\"amount\":1.5}");
    expect_refused("{\"name\":\"caf\\u00e9\"}");
    expect_refused("{\"line\":\"a\\nb\"}");
    expect_refused("{\"nul\":\"a\\u0000b\"}");
    expect_refused("{\"del\":\"\\u007f\"}");
}

static char random_char(void) {
    static const char chars[] = "abcxyz_-\"\\/ 0129AZ{}[]:,";
    return chars[test_rand_below(sizeof chars - 1)];
}

static json_t *random_value(int depth) {
    uint32_t pick = test_rand_below(depth > 2 ? 5 : 7);
    char text[12];
    switch (pick) {
    case 0: return json_integer((json_int_t)((int64_t)(uint32_t)test_rand() << 31) - (json_int_t)(uint32_t)test_rand());
    case 1: {
        size_t bytes = test_rand_below(sizeof text);
        for (size_t i = 0; i < bytes; i++) text[i] = random_char();
        return json_stringn(text, bytes);
    }
    case 2: return json_true();
    case 3: return json_false();
    case 4: return json_null();
    case 5: {
        json_t *array = json_array();
        for (uint32_t n = test_rand_below(4); n > 0; n--) json_array_append_new(array, random_value(depth + 1));
        return array;
    }
    default: {
        json_t *object = json_object();
        for (uint32_t n = test_rand_below(8); n > 0; n--) {
            size_t bytes = 1 + test_rand_below(sizeof text - 1);
            for (size_t i = 0; i < bytes; i++) text[i] = random_char();
            text[bytes] = '\0';
            json_object_set_new(object, text, random_value(depth + 1));
        }
        return object;
    }
    }
}

static void test_canonical_random(void) {
    for (int i = 0; i < 20000; i++) {
        json_t *body = json_object();
        json_object_set_new(body, "body", random_value(0));
        json_object_set_new(body, "also", random_value(1));
        expect_canonical(body);
        json_decref(body);
    }
}

static void test_answer_text(void) {
    sim_answer_t a;
    sim_answer_begin(&a);
    sim_answer_str(&a, "id", "auth_0123456789abcdef01234567");
    sim_answer_str(&a, "status", "approved");
    sim_answer_str(&a, "message", "say \"no\" \\ here");
    sim_answer_int(&a, "amount", 1000);
    sim_answer_int(&a, "low", INT64_MIN);
    sim_answer_str(&a, "empty", "");
    a.text[a.bytes] = '\0';
    json_t *packed = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "id", "auth_0123456789abcdef01234567", "status",
                               "approved", "message", "say \"no\" \\ here", "amount", (json_int_t)1000, "low",
                               (json_int_t)INT64_MIN, "empty", "");
    ASSERT_TRUE(packed != NULL);
    char *dumped = json_dumps(packed, JSON_COMPACT);
    char closed[SIM_ANSWER_BYTES_MAX + 2];
    snprintf(closed, sizeof closed, "%s}", a.text);
    ASSERT_STR_EQ(closed, dumped);
    free(dumped);
    json_decref(packed);

    sim_answer_begin(&a);
    sim_answer_str(&a, "message", "caf\xc3\xa9");
    ASSERT_TRUE(a.failed); /* not printable ASCII: refused, never written otherwise than jansson would */
    sim_answer_begin(&a);
    char long_text[SIM_ANSWER_BYTES_MAX + 1];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    sim_answer_str(&a, "message", long_text);
    ASSERT_TRUE(a.failed); /* longer than the buffer: refused, not cut */
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_canonical_fixed);
    TEST_RUN(test_canonical_random);
    TEST_RUN(test_answer_text);
    return test_finish();
}
