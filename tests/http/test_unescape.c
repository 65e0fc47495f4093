/* tests/http/test_unescape.c: http_percent_decode (src/http/unescape.c), the one %XX
 * decoder of the API's and the simulators' paths and query arguments.
 * Goal: it decodes exactly as libmicrohttpd does (what both callers answered on MHD):
 * valid escapes in either case, invalid or cut escapes left as they came, '+' a blank
 * only when asked, %00 a NUL, a slice read no further than its byte count, and an
 * output that does not fit refused, not cut. Method: decode fixed inputs into buffers
 * of each size around the exact fit and in place; compare bytes and lengths. */
#include <string.h>

#include "core/core.h"
#include "http/http.h"
#include "test.h"

/* Decodes the NUL-terminated 'input' into a buffer of 'out_bytes' and checks 'want'. */
static void expect_decoded(const char *input, bool plus_is_space, const char *want) {
    char out[256];
    memset(out, 'Z', sizeof out);
    ASSERT_TRUE(http_percent_decode(input, strlen(input), plus_is_space, out, sizeof out));
    ASSERT_STR_EQ(out, want);
    char in_place[256];
    snprintf(in_place, sizeof in_place, "%s", input);
    http_percent_decode_in_place(in_place, plus_is_space);
    ASSERT_STR_EQ(in_place, want);
}

static void test_valid_escapes(void) {
    expect_decoded("/v1/payments/pay%5F1", false, "/v1/payments/pay_1");
    expect_decoded("%2f%2F%41%61", false, "//Aa");
    expect_decoded("a%20b%7e", false, "a b~");
    expect_decoded("%e2%82%ac", false, "\xe2\x82\xac");
    expect_decoded("", false, "");
    expect_decoded("plain", true, "plain");
}

/* An escape without two hex digits stays as it came, and decoding goes on after it. */
static void test_invalid_escapes_stay(void) {
    expect_decoded("%", false, "%");
    expect_decoded("%4", false, "%4");
    expect_decoded("a%G1b", false, "a%G1b");
    expect_decoded("a%1Gb", false, "a%1Gb");
    expect_decoded("%%41", false, "%A");
    expect_decoded("100%", false, "100%");
    expect_decoded("%2", true, "%2");
    expect_decoded("%252F", false, "%2F"); /* once, not twice */
}

/* '+' is a blank in query arguments only; an escaped '+' is a '+' either way. */
static void test_plus(void) {
    expect_decoded("a+b", false, "a+b");
    expect_decoded("a+b", true, "a b");
    expect_decoded("%2B+", true, "+ ");
    expect_decoded("%2B+", false, "++");
}

/* %00 is a NUL in the output (the caller's text then ends there, as on MHD). */
static void test_nul_escape(void) {
    char out[16];
    ASSERT_TRUE(http_percent_decode("a%00b", 5, false, out, sizeof out));
    ASSERT_EQ(out[0], 'a');
    ASSERT_EQ(out[1], '\0');
    ASSERT_EQ(out[2], 'b');
    ASSERT_EQ(out[3], '\0');
}

/* A slice is read to its count only: the digits past it are not the escape's. */
static void test_slice_bounds(void) {
    const char *text = "/a%41?x=%42";
    char out[16];
    ASSERT_TRUE(http_percent_decode(text, 4, false, out, sizeof out));
    ASSERT_STR_EQ(out, "/a%4");
    ASSERT_TRUE(http_percent_decode(text, 5, false, out, sizeof out));
    ASSERT_STR_EQ(out, "/aA");
    ASSERT_TRUE(http_percent_decode(text + 6, 3, true, out, sizeof out));
    ASSERT_STR_EQ(out, "x=%");
}

/* The decoded text and its NUL fit exactly, or the call refuses: never a cut text. */
static void test_output_bound(void) {
    const char *text = "ab%43d"; /* decodes to "abCd": 4 bytes and the NUL */
    char out[8];
    ASSERT_TRUE(http_percent_decode(text, strlen(text), false, out, 5));
    ASSERT_STR_EQ(out, "abCd");
    ASSERT_FALSE(http_percent_decode(text, strlen(text), false, out, 4));
    ASSERT_FALSE(http_percent_decode(text, strlen(text), false, out, 1));
    ASSERT_FALSE(http_percent_decode(text, strlen(text), false, out, 0));
    ASSERT_TRUE(http_percent_decode("", 0, false, out, 1));
    ASSERT_STR_EQ(out, "");
    ASSERT_FALSE(http_percent_decode("", 0, false, out, 0));
}

int main(void) {
    TEST_RUN(test_valid_escapes);
    TEST_RUN(test_invalid_escapes_stay);
    TEST_RUN(test_plus);
    TEST_RUN(test_nul_escape);
    TEST_RUN(test_slice_bounds);
    TEST_RUN(test_output_bound);
    return test_finish();
}
