/* Goal: the growing byte buffer (core/bytes.h) holds exactly what was appended, NULs
 * included, up to its maximum and never past it; a step that would pass the maximum or
 * overflow a size fails, leaves the content as it was, and the buffer stays failed
 * until it is rewound; take hands over a terminated text, or NULL for a failed buffer.
 * Method: appends at the edges (empty, exactly full, one past, growth across the
 * maximum, a format longer than the room, sizes near SIZE_MAX), checked byte by byte.
 * A failed allocation is reached through sizes no allocator can give; no allocator
 * fault can be injected in this project. */
#include <stdint.h>
#include <string.h>

#include "core/bytes.h"
#include "test.h"

/* Under AddressSanitizer an allocation no allocator can give returns NULL, as it does
 * in glibc, instead of ending the test (the options of the environment still apply). */
__attribute__((used)) const char *__asan_default_options(void);
__attribute__((used)) const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void test_empty(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, 100);
    ASSERT_TRUE(b.data == NULL);
    ASSERT_TRUE(pc_bytes_append(&b, "", 0));
    ASSERT_TRUE(pc_bytes_appendf(&b, "%s", ""));
    ASSERT_EQ(b.bytes, 0);
    ASSERT_FALSE(pc_bytes_failed(&b));
    size_t bytes = 99;
    char *text = pc_bytes_take(&b, &bytes);
    ASSERT_TRUE(text != NULL); /* an empty text, not NULL: nothing failed */
    ASSERT_STR_EQ(text, "");
    ASSERT_EQ(bytes, 0);
    free(text);
    ASSERT_TRUE(b.data == NULL && b.bytes == 0 && b.bytes_max == 100);
    pc_bytes_t never;
    pc_bytes_init(&never, 0);
    text = pc_bytes_take(&never, NULL); /* a buffer that may hold nothing still gives "" */
    ASSERT_TRUE(text != NULL && text[0] == '\0');
    free(text);
}

static void test_exactly_full_then_one_past(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, 10);
    ASSERT_TRUE(pc_bytes_append(&b, "01234", 5));
    ASSERT_TRUE(pc_bytes_appendf(&b, "%d", 56789)); /* exactly bytes_max */
    ASSERT_EQ(b.bytes, 10);
    ASSERT_STR_EQ(b.data, "0123456789");
    ASSERT_TRUE(b.capacity <= 11); /* never more than the maximum and its NUL */
    ASSERT_TRUE(pc_bytes_append(&b, "", 0)); /* nothing more fits, and nothing is asked */
    ASSERT_FALSE(pc_bytes_append(&b, "x", 1));
    ASSERT_EQ(b.failure, PC_BYTES_TOO_LARGE);
    ASSERT_STR_EQ(b.data, "0123456789"); /* whole, not cut */
    /* failed stays failed: even what would fit is refused, so one check at the end does */
    pc_bytes_rewind(&b, 4);
    ASSERT_FALSE(pc_bytes_failed(&b));
    ASSERT_STR_EQ(b.data, "0123");
    ASSERT_FALSE(pc_bytes_appendf(&b, "%s", "abcdefg"));
    ASSERT_STR_EQ(b.data, "0123");
    ASSERT_FALSE(pc_bytes_append(&b, "a", 1));
    ASSERT_FALSE(pc_bytes_reserve(&b, 0));
    ASSERT_EQ(b.bytes, 4);
    ASSERT_TRUE(pc_bytes_take(&b, NULL) == NULL); /* failed: no text, memory freed */
    ASSERT_TRUE(b.data == NULL && !pc_bytes_failed(&b) && b.bytes_max == 10);
}

static void test_growth_across_the_maximum(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, 1000);
    char chunk[64];
    memset(chunk, 'a', sizeof chunk);
    size_t written = 0;
    while (pc_bytes_append(&b, chunk, sizeof chunk)) written += sizeof chunk;
    ASSERT_EQ(written, 960); /* 15 chunks fit, the 16th would pass 1000 */
    ASSERT_EQ(b.bytes, 960);
    ASSERT_EQ(b.failure, PC_BYTES_TOO_LARGE);
    ASSERT_TRUE(b.capacity <= 1001);
    for (size_t i = 0; i < 960; i++) ASSERT_EQ(b.data[i], 'a');
    ASSERT_EQ(b.data[960], '\0');
    pc_bytes_free(&b);
}

static void test_appendf_longer_than_the_room(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, SIZE_MAX);
    ASSERT_TRUE(pc_bytes_append_str(&b, "head:"));
    size_t capacity_first = b.capacity;
    char long_text[3000];
    memset(long_text, 'z', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    ASSERT_TRUE(pc_bytes_appendf(&b, "[%s]%d", long_text, 42));
    ASSERT_TRUE(b.capacity > capacity_first);
    ASSERT_EQ(b.bytes, 5 + 1 + 2999 + 1 + 2);
    ASSERT_TRUE(memcmp(b.data, "head:[zzz", 9) == 0);
    ASSERT_STR_EQ(b.data + b.bytes - 4, "z]42");
    /* many small ones in a row, each into the room left */
    for (int i = 0; i < 1000; i++) ASSERT_TRUE(pc_bytes_appendf(&b, "%03d,", i));
    ASSERT_EQ(b.bytes, 3008 + 4000);
    ASSERT_TRUE(memcmp(b.data + 3008, "000,001,002,", 12) == 0);
    ASSERT_STR_EQ(b.data + b.bytes - 4, "999,");
    size_t bytes = 0;
    char *text = pc_bytes_take(&b, &bytes);
    ASSERT_EQ(bytes, 7008);
    ASSERT_EQ(strlen(text), 7008);
    free(text);
}

static void test_appendf_past_the_maximum(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, 8);
    ASSERT_TRUE(pc_bytes_appendf(&b, "%s", "abc"));
    ASSERT_FALSE(pc_bytes_appendf(&b, "%s", "defgHIJ")); /* 10 > 8: nothing of it stays */
    ASSERT_EQ(b.failure, PC_BYTES_TOO_LARGE);
    ASSERT_EQ(b.bytes, 3);
    ASSERT_STR_EQ(b.data, "abc");
    pc_bytes_free(&b);
}

static void test_embedded_nuls(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, 64);
    static const char raw[] = {'a', '\0', 'b', '\0', '\0', 'c'};
    ASSERT_TRUE(pc_bytes_append(&b, raw, sizeof raw));
    ASSERT_TRUE(pc_bytes_append(&b, raw, sizeof raw));
    ASSERT_EQ(b.bytes, 12);
    ASSERT_TRUE(memcmp(b.data, raw, 6) == 0 && memcmp(b.data + 6, raw, 6) == 0);
    ASSERT_EQ(b.data[12], '\0');
    size_t bytes = 0;
    char *text = pc_bytes_take(&b, &bytes);
    ASSERT_EQ(bytes, 12); /* the length counts every byte, not up to the first NUL */
    free(text);
}

static void test_sizes_near_size_max(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, SIZE_MAX);
    ASSERT_TRUE(pc_bytes_append(&b, "xy", 2));
    ASSERT_FALSE(pc_bytes_reserve(&b, SIZE_MAX - 1)); /* bytes + more overflows size_t */
    ASSERT_TRUE(pc_bytes_failed(&b));
    ASSERT_STR_EQ(b.data, "xy");
    pc_bytes_rewind(&b, 2);
    ASSERT_FALSE(pc_bytes_reserve(&b, SIZE_MAX - 2)); /* the NUL's byte overflows */
    ASSERT_EQ(b.failure, PC_BYTES_NO_MEMORY);
    pc_bytes_rewind(&b, 2);
    ASSERT_FALSE(pc_bytes_reserve(&b, SIZE_MAX / 2)); /* fits size_t, no allocator gives it */
    ASSERT_EQ(b.failure, PC_BYTES_NO_MEMORY);
    ASSERT_STR_EQ(b.data, "xy");
    pc_bytes_free(&b);
}

static void test_reserve_reset_adopt(void) {
    pc_bytes_t b;
    pc_bytes_init(&b, 1 << 20);
    ASSERT_TRUE(pc_bytes_reserve(&b, 5000));
    ASSERT_TRUE(b.capacity >= 5001);
    char *data = b.data;
    size_t capacity = b.capacity;
    for (int i = 0; i < 5000; i++) ASSERT_TRUE(pc_bytes_append(&b, "q", 1));
    ASSERT_TRUE(b.data == data && b.capacity == capacity); /* reserved: no growth */
    pc_bytes_reset(&b);
    ASSERT_EQ(b.bytes, 0);
    ASSERT_STR_EQ(b.data, "");
    ASSERT_TRUE(b.data == data); /* the memory is kept */
    pc_bytes_free(&b);

    char *owned = malloc(4);
    memcpy(owned, "abc", 4);
    pc_bytes_adopt(&b, owned, 3, 4, 100);
    ASSERT_TRUE(pc_bytes_appendf(&b, "-%d", 7));
    size_t bytes = 0;
    char *text = pc_bytes_take(&b, &bytes);
    ASSERT_STR_EQ(text, "abc-7");
    ASSERT_EQ(bytes, 5);
    free(text);
}

int main(void) {
    TEST_RUN(test_empty);
    TEST_RUN(test_exactly_full_then_one_past);
    TEST_RUN(test_growth_across_the_maximum);
    TEST_RUN(test_appendf_longer_than_the_room);
    TEST_RUN(test_appendf_past_the_maximum);
    TEST_RUN(test_embedded_nuls);
    TEST_RUN(test_sizes_near_size_max);
    TEST_RUN(test_reserve_reset_adopt);
    return test_finish();
}
