/* Goal: the payments runtime's per-payment memory is reused within its bounds.
 *   - A runtime map keeps the entries of removed ids for its next puts (busy marks,
 *     holds and recent payments come and go with every payment): a put after a remove
 *     takes the removed entry, at most PAY_MAP_SPARES_MAX are kept however many are
 *     removed, a key longer than an id is never kept, and values and lookups read as
 *     before through any number of reuses.
 *   - A map's bucket is its key's hash masked to the (power of two) bucket count: many
 *     keys land in many buckets, every chain stays inside the array, and each key is
 *     found in the bucket it was put in.
 *   - A payment's copy (a dry run's, a kept one's) has room for one more operation
 *     entry and one more ledger transfer: the command that runs on it adds them without
 *     growing (reallocating) its arrays; the copy's entries and transfers are the
 *     original's, in order. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "payments/pay_internal.h"
#include "test.h"

static void test_map_spares_reused(void) {
    pay_map_t map;
    ASSERT_STATUS(pay_map_init(&map, 64), PC_OK);
    int values[8];
    ASSERT_STATUS(pay_map_put(&map, "pay_0001", &values[0], NULL), PC_OK);
    ASSERT_TRUE(pay_map_remove(&map, "pay_0001") == &values[0]);
    ASSERT_EQ(map.spare_count, 1);
    ASSERT_TRUE(map.spares != NULL);
    ASSERT_STATUS(pay_map_put(&map, "pay_0002", &values[1], NULL), PC_OK);
    ASSERT_EQ(map.spare_count, 0); /* the put took it */
    ASSERT_TRUE(map.spares == NULL);
    ASSERT_TRUE(pay_map_get(&map, "pay_0002") == &values[1]);
    ASSERT_TRUE(pay_map_get(&map, "pay_0001") == NULL);
    ASSERT_EQ(map.count, 1);
    /* a key of an id's full length fits a spare; a longer one is its own size, never kept */
    char id_full[PC_ID_SIZE];
    memset(id_full, 'x', sizeof id_full - 1);
    id_full[sizeof id_full - 1] = '\0';
    char longer[PC_ID_SIZE + 40];
    memset(longer, 'y', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    ASSERT_STATUS(pay_map_put(&map, id_full, &values[2], NULL), PC_OK);
    ASSERT_STATUS(pay_map_put(&map, longer, &values[3], NULL), PC_OK);
    ASSERT_TRUE(pay_map_get(&map, id_full) == &values[2]);
    ASSERT_TRUE(pay_map_get(&map, longer) == &values[3]);
    ASSERT_TRUE(pay_map_remove(&map, longer) == &values[3]);
    ASSERT_EQ(map.spare_count, 0);
    ASSERT_TRUE(pay_map_remove(&map, id_full) == &values[2]);
    ASSERT_EQ(map.spare_count, 1);
    ASSERT_STATUS(pay_map_put(&map, longer, &values[4], NULL), PC_OK); /* not from the spares */
    ASSERT_EQ(map.spare_count, 1);
    ASSERT_TRUE(pay_map_get(&map, longer) == &values[4]);
    pay_map_free(&map, NULL);
    ASSERT_EQ(map.spare_count, 0);
    ASSERT_TRUE(map.spares == NULL);
}

static void test_map_spares_bounded(void) {
    pay_map_t map;
    ASSERT_STATUS(pay_map_init(&map, 256), PC_OK);
    const uint32_t keys = 3 * PAY_MAP_SPARES_MAX;
    static int value;
    char key[PC_ID_SIZE];
    for (uint32_t round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < keys; i++) {
            snprintf(key, sizeof key, "pay_%u_%u", round, i);
            ASSERT_STATUS(pay_map_put(&map, key, &value, NULL), PC_OK);
        }
        ASSERT_EQ(map.count, keys);
        ASSERT_EQ(map.spare_count, 0); /* every spare taken again before new ones were made */
        for (uint32_t i = 0; i < keys; i++) {
            snprintf(key, sizeof key, "pay_%u_%u", round, i);
            ASSERT_TRUE(pay_map_get(&map, key) == &value);
            ASSERT_TRUE(pay_map_remove(&map, key) == &value);
            ASSERT_TRUE(map.spare_count <= PAY_MAP_SPARES_MAX);
        }
        ASSERT_EQ(map.count, 0);
        ASSERT_EQ(map.spare_count, PAY_MAP_SPARES_MAX);
    }
    pay_map_free(&map, NULL);
}

static void test_map_buckets_spread(void) {
    pay_map_t map;
    ASSERT_STATUS(pay_map_init(&map, 64), PC_OK);
    static int value;
    char key[PC_ID_SIZE];
    for (uint32_t i = 0; i < 1024; i++) {
        snprintf(key, sizeof key, "pay_%u", i);
        ASSERT_STATUS(pay_map_put(&map, key, &value, NULL), PC_OK);
    }
    uint32_t used = 0, chained = 0;
    for (uint32_t b = 0; b < map.bucket_count; b++) {
        used += map.buckets[b] != NULL;
        for (pay_map_entry_t *e = map.buckets[b]; e != NULL; e = e->next) chained++;
    }
    ASSERT_EQ(chained, 1024);
    ASSERT_TRUE(used > 48); /* 1024 keys over 64 buckets: a wrong mask uses a few */
    for (uint32_t i = 0; i < 1024; i++) {
        snprintf(key, sizeof key, "pay_%u", i);
        ASSERT_TRUE(pay_map_remove(&map, key) == &value);
    }
    ASSERT_EQ(map.count, 0);
    pay_map_free(&map, NULL);
}

static void add_entry(pay_payment_t *p, const char *op_id, const char *text) {
    pay_op_t op;
    memset(&op, 0, sizeof op);
    pc_str_copy(op.id, sizeof op.id, op_id);
    pay_payment_entry_put(p, &op, pay_text_new(text, strlen(text)));
}

/* A copy takes one more entry and transfer where its arrays are, and holds the original's. */
static void check_copy_room(const pay_payment_t *original, pay_payment_t *copy) {
    ASSERT_EQ(copy->entry_count, original->entry_count);
    ASSERT_EQ(copy->transfer_count, original->transfer_count);
    for (uint32_t i = 0; i < original->entry_count; i++) {
        ASSERT_STR_EQ(copy->entries[i].id, original->entries[i].id);
        ASSERT_TRUE(copy->entries[i].text == original->entries[i].text); /* shared */
    }
    for (uint32_t i = 0; i < original->transfer_count; i++) {
        ASSERT_STR_EQ(copy->transfers[i], original->transfers[i]);
    }
    ASSERT_TRUE(copy->entry_room > copy->entry_count);
    ASSERT_TRUE(copy->transfer_room > copy->transfer_count);
    pay_entry_t *entries = copy->entries;
    char(*transfers)[PC_ID_SIZE] = copy->transfers;
    add_entry(copy, "op_new", "{\"id\":\"op_new\"}");
    pay_payment_transfer_add(copy, "op_new:hold");
    ASSERT_TRUE(copy->entries == entries);
    ASSERT_TRUE(copy->transfers == transfers);
    ASSERT_EQ(copy->entry_count, original->entry_count + 1);
    ASSERT_EQ(copy->transfer_count, original->transfer_count + 1);
    ASSERT_STR_EQ(copy->transfers[copy->transfer_count - 1], "op_new:hold");
    ASSERT_FALSE(copy->parts_lost);
}

static void test_copy_room(void) {
    /* counts at, below and past each doubling of the arrays */
    static const uint32_t counts[] = {1, 3, 4, 5, 7, 8, 9, 16, 17};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        pay_payment_t p;
        pay_payment_init(&p);
        pc_str_copy(p.id, sizeof p.id, "pay_copy");
        char id[PC_ID_SIZE], text[64];
        for (uint32_t i = 0; i < counts[c]; i++) {
            snprintf(id, sizeof id, "op_%u", i);
            snprintf(text, sizeof text, "{\"id\":\"op_%u\"}", i);
            add_entry(&p, id, text);
            snprintf(id, sizeof id, "op_%u:hold", i);
            pay_payment_transfer_add(&p, id);
        }
        pay_payment_t dry, whole;
        ASSERT_STATUS(pay_payment_copy_for_dry_run(&dry, &p), PC_OK);
        check_copy_room(&p, &dry);
        ASSERT_STATUS(pay_payment_copy(&whole, &p), PC_OK);
        check_copy_room(&p, &whole);
        pay_payment_clear(&dry);
        pay_payment_clear(&whole);
        pay_payment_clear(&p);
    }
}

int main(void) {
    TEST_RUN(test_map_spares_reused);
    TEST_RUN(test_map_spares_bounded);
    TEST_RUN(test_map_buckets_spread);
    TEST_RUN(test_copy_room);
    return test_finish();
}
