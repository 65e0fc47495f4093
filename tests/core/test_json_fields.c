/* Goal: the shared JSON field getters (core/json_fields.c, behind the API's codec and
 * payments' parser) refuse with the exact code, place and message clients see, and
 * treat absent and null alike.
 * Method: one parsed object, each getter on a good, a missing, a null, a wrong-typed
 * and an out-of-range field; places with and without a path. */
#include <jansson.h>
#include <string.h>

#include "core/json_fields.h"
#include "paycore/status.h"
#include "test.h"

static json_t *sample(void) {
    json_t *object = json_loads("{\"name\":\"ab\",\"nul\":\"a\\u0000b\",\"n\":7,\"real\":1.5,"
                                "\"flag\":true,\"inner\":{},\"none\":null}", JSON_ALLOW_NUL, NULL);
    ASSERT_TRUE(object != NULL);
    return object;
}

static void expect_error(const pc_field_error_t *err, pc_status status, const char *field,
                         const char *message) {
    ASSERT_STATUS(err->status, status);
    ASSERT_EQ(err->http_status, 400);
    ASSERT_STR_EQ(err->field, field);
    ASSERT_STR_EQ(err->message, message != NULL ? message : pc_status_message(status));
}

static void test_fail_places(void) {
    pc_field_error_t err = {0};
    pc_field_fail(&err, PC_FIELD_TYPE, "a.b", "c", "why");
    expect_error(&err, PC_FIELD_TYPE, "a.b.c", "why");
    pc_field_fail(&err, PC_FIELD_MISSING, "", "c", NULL);
    expect_error(&err, PC_FIELD_MISSING, "c", NULL);
    pc_field_fail(&err, PC_JSON_INVALID, "items[2]", NULL, NULL);
    expect_error(&err, PC_JSON_INVALID, "items[2]", NULL);
    pc_field_fail(&err, PC_JSON_INVALID, NULL, NULL, NULL);
    expect_error(&err, PC_JSON_INVALID, "", NULL);
}

static void test_known_fields(void) {
    json_t *object = sample();
    pc_field_error_t err = {0};
    const char *const all[] = {"name", "nul", "n", "real", "flag", "inner", "none", NULL};
    const char *const some[] = {"name", "nul", "n", "real", "flag", "inner", NULL};
    ASSERT_TRUE(pc_field_check_known(object, all, "p", &err));
    ASSERT_FALSE(pc_field_check_known(object, some, "p", &err));
    expect_error(&err, PC_FIELD_UNKNOWN, "p.none", "unknown field 'none'");
    json_decref(object);
}

static void test_string(void) {
    json_t *object = sample();
    pc_field_error_t err = {0};
    const char *text = "x";
    ASSERT_TRUE(pc_field_string(object, "name", true, 2, "", &text, &err));
    ASSERT_STR_EQ(text, "ab");
    ASSERT_TRUE(pc_field_string(object, "none", false, 2, "", &text, &err));
    ASSERT_TRUE(text == NULL);
    ASSERT_FALSE(pc_field_string(object, "none", true, 2, "", &text, &err));
    expect_error(&err, PC_FIELD_MISSING, "none", NULL);
    ASSERT_FALSE(pc_field_string(object, "name", true, 1, "", &text, &err));
    expect_error(&err, PC_STRING_TOO_LONG, "name", NULL);
    ASSERT_FALSE(pc_field_string(object, "nul", true, 8, "", &text, &err));
    expect_error(&err, PC_STRING_TOO_LONG, "nul", NULL);
    ASSERT_FALSE(pc_field_string(object, "n", true, 8, "q", &text, &err));
    expect_error(&err, PC_FIELD_TYPE, "q.n", "must be a string");
    json_decref(object);
}

static void test_object_int_bool(void) {
    json_t *object = sample();
    pc_field_error_t err = {0};
    const json_t *inner = NULL;
    ASSERT_TRUE(pc_field_object(object, "inner", true, "", &inner, &err));
    ASSERT_TRUE(inner != NULL);
    ASSERT_FALSE(pc_field_object(object, "n", true, "", &inner, &err));
    expect_error(&err, PC_FIELD_TYPE, "n", "must be an object");
    ASSERT_FALSE(pc_field_object(object, "missing", true, "", &inner, &err));
    expect_error(&err, PC_FIELD_MISSING, "missing", NULL);
    int64_t n = -1;
    ASSERT_TRUE(pc_field_int(object, "none", false, 0, 9, "", &n, &err));
    ASSERT_EQ(n, -1);
    ASSERT_TRUE(pc_field_int(object, "n", true, 0, 9, "", &n, &err));
    ASSERT_EQ(n, 7);
    ASSERT_FALSE(pc_field_int(object, "n", true, 0, 6, "", &n, &err));
    expect_error(&err, PC_VALUE_OUT_OF_RANGE, "n", NULL);
    ASSERT_FALSE(pc_field_int(object, "real", true, 0, 9, "", &n, &err));
    expect_error(&err, PC_FIELD_TYPE, "real", "must be an integer");
    bool flag = false;
    ASSERT_TRUE(pc_field_bool(object, "none", "", &flag, &err));
    ASSERT_FALSE(flag);
    ASSERT_TRUE(pc_field_bool(object, "flag", "", &flag, &err));
    ASSERT_TRUE(flag);
    ASSERT_FALSE(pc_field_bool(object, "n", "", &flag, &err));
    expect_error(&err, PC_FIELD_TYPE, "n", "must be true or false");
    json_decref(object);
}

int main(void) {
    TEST_RUN(test_fail_places);
    TEST_RUN(test_known_fields);
    TEST_RUN(test_string);
    TEST_RUN(test_object_int_bool);
    return test_finish();
}
