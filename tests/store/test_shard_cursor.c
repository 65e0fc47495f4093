/* Goal: a list cursor of a set of shards (store_shard_cursor_*, docs/scaleout.md §6)
 * comes back exactly as it was issued to the key it was issued to, and nothing else
 * is taken: a cursor with any byte changed, cut short or lengthened, issued to
 * another key, tagged with another set's key, or not base64url is
 * list_cursor_invalid; one older than STORE_CURSOR_AGE_S_MAX is list_cursor_expired;
 * the largest cursor (16 shards, a 64-byte id) fits STORE_CURSOR_TEXT_SIZE.
 * Method: encode, then decode the text and altered copies of it. */
#include <sodium.h>

#include "core/core.h"
#include "store/store_shard.h"
#include "test.h"

static const uint8_t set_key[STORE_CURSOR_KEY_BYTES] = "0123456789abcdef0123456789abcde";

static store_shard_cursor_t sample(uint32_t shards) {
    store_shard_cursor_t c = {.kind = STORE_CURSOR_GRANTED, .shard = shards - 1, .issued_ns = pc_wall_ns()};
    memset(c.after, 'a', PC_ID_BYTES_MAX);
    c.after[PC_ID_BYTES_MAX] = '\0';
    c.cut.count = shards;
    for (uint32_t i = 0; i < shards; i++) c.cut.seq[i] = 0x0123456789ull * (i + 1);
    return c;
}

static void test_round_trip(void) {
    store_shard_cursor_t c = sample(SHARD_COUNT_MAX), back;
    char text[STORE_CURSOR_TEXT_SIZE];
    ASSERT_TRUE(store_shard_cursor_encode(set_key, "key_1", &c, text));
    ASSERT_TRUE(strlen(text) < STORE_CURSOR_TEXT_SIZE);
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_1", text, &back), PC_OK);
    ASSERT_EQ(back.kind, c.kind);
    ASSERT_EQ(back.shard, c.shard);
    ASSERT_STR_EQ(back.after, c.after);
    ASSERT_EQ(back.cut.count, c.cut.count);
    for (uint32_t i = 0; i < c.cut.count; i++) ASSERT_EQ(back.cut.seq[i], c.cut.seq[i]);
    ASSERT_EQ(back.issued_ns, c.issued_ns);
}

static void test_refusals(void) {
    store_shard_cursor_t c = sample(3), back;
    char text[STORE_CURSOR_TEXT_SIZE], copy[STORE_CURSOR_TEXT_SIZE + 8];
    ASSERT_TRUE(store_shard_cursor_encode(set_key, "key_1", &c, text));
    size_t length = strlen(text);
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t at = 0; at < length; at++) {
        memcpy(copy, text, length + 1);
        copy[at] = alphabet[(strchr(alphabet, text[at]) - alphabet + 1) % 64];
        pc_status status = store_shard_cursor_decode(set_key, "key_1", copy, &back);
        if (status != PC_LIST_CURSOR_INVALID) TEST_FAIL("a cursor altered at %zu: %s", at, pc_status_code(status));
    }
    memcpy(copy, text, length - 3);
    copy[length - 3] = '\0';
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_1", copy, &back), PC_LIST_CURSOR_INVALID);
    snprintf(copy, sizeof copy, "%sAAAA", text);
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_1", copy, &back), PC_LIST_CURSOR_INVALID);
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_2", text, &back), PC_LIST_CURSOR_INVALID);
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "", text, &back), PC_LIST_CURSOR_INVALID);
    uint8_t other_key[STORE_CURSOR_KEY_BYTES];
    memcpy(other_key, set_key, sizeof other_key);
    other_key[0] ^= 1;
    ASSERT_STATUS(store_shard_cursor_decode(other_key, "key_1", text, &back), PC_LIST_CURSOR_INVALID);
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_1", "!!!!", &back), PC_LIST_CURSOR_INVALID);
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_1", "", &back), PC_LIST_CURSOR_INVALID);
}

static void test_expired(void) {
    store_shard_cursor_t c = sample(2), back;
    char text[STORE_CURSOR_TEXT_SIZE];
    c.issued_ns -= (uint64_t)(STORE_CURSOR_AGE_S_MAX + 1) * 1000000000ull;
    ASSERT_TRUE(store_shard_cursor_encode(set_key, "key_1", &c, text));
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_1", text, &back), PC_LIST_CURSOR_EXPIRED);
    c.issued_ns += 2000000000ull; /* just inside the bound */
    ASSERT_TRUE(store_shard_cursor_encode(set_key, "key_1", &c, text));
    ASSERT_STATUS(store_shard_cursor_decode(set_key, "key_1", text, &back), PC_OK);
}

static void test_unencodable(void) {
    store_shard_cursor_t c = sample(2);
    char text[STORE_CURSOR_TEXT_SIZE];
    c.shard = 2; /* past the cut */
    ASSERT_FALSE(store_shard_cursor_encode(set_key, "key_1", &c, text));
    ASSERT_STR_EQ(text, "");
}

int main(void) {
    if (sodium_init() < 0) TEST_FAIL("sodium_init");
    TEST_RUN(test_round_trip);
    TEST_RUN(test_refusals);
    TEST_RUN(test_expired);
    TEST_RUN(test_unencodable);
    return test_finish();
}
