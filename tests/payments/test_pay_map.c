/* Goal: the payments runtime's string map (map.c) finds, replaces and removes exactly as
 * a plain table of keys would, while it grows from its first size to many times it:
 * every key put is found with its last value, every key removed or never put is
 * missing, the count is right, and every entry sits in the bucket its hash names (the
 * walk recovery.c makes over the buckets sees each entry once).
 * Method: a fixed-seed random mix of puts, replacements, removals and lookups over a
 * few thousand keys (ids of varied length and shared prefixes), checked against a
 * reference array after every step, and the buckets walked at the end. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "payments/pay_internal.h"
#include "test.h"

#define KEYS 3000

typedef struct {
    char key[48];
    uintptr_t value; /* 0: not in the map */
} ref_entry;

static ref_entry ref[KEYS];

static void keys_make(void) {
    for (uint32_t i = 0; i < KEYS; i++) {
        /* shared prefixes and different lengths, as payment, account and key ids have */
        snprintf(ref[i].key, sizeof ref[i].key, "%s_%0*u", i % 3 == 0 ? "pay" : i % 3 == 1 ? "acct_m1" : "k",
                 (int)(1 + i % 24), i);
        ref[i].value = 0;
    }
}

static uint32_t ref_count(void) {
    uint32_t count = 0;
    for (uint32_t i = 0; i < KEYS; i++) count += ref[i].value != 0;
    return count;
}

static void check_all(const pay_map_t *map) {
    for (uint32_t i = 0; i < KEYS; i++) ASSERT_EQ((uintptr_t)pay_map_get(map, ref[i].key), ref[i].value);
    ASSERT_EQ(map->count, ref_count());
}

/* Each entry once, in the bucket its hash names; as many as the count. */
static void check_buckets(const pay_map_t *map) {
    ASSERT_EQ(map->bucket_count & (map->bucket_count - 1), 0);
    uint32_t seen = 0;
    for (uint32_t b = 0; b < map->bucket_count; b++) {
        for (const pay_map_entry_t *e = map->buckets[b]; e != NULL; e = e->next) {
            ASSERT_EQ(e->hash & (map->bucket_count - 1), b);
            seen++;
        }
    }
    ASSERT_EQ(seen, map->count);
}

static void test_random_against_reference(void) {
    keys_make();
    pay_map_t map;
    ASSERT_STATUS(pay_map_init(&map, 1), PC_OK);
    ASSERT_EQ(map.bucket_count, 16);
    uint32_t grown_max = 0;
    for (uint32_t step = 0; step < 60000; step++) {
        uint32_t k = test_rand_below(step < 20000 ? KEYS : KEYS / 4); /* later: churn on fewer keys */
        uint32_t op = test_rand_below(10);
        if (op < 5) {
            uintptr_t value = (uintptr_t)(step + 1);
            void *old = (void *)1;
            ASSERT_STATUS(pay_map_put(&map, ref[k].key, (void *)value, &old), PC_OK);
            ASSERT_EQ((uintptr_t)old, ref[k].value);
            ref[k].value = value;
        } else if (op < 8) {
            ASSERT_EQ((uintptr_t)pay_map_remove(&map, ref[k].key), ref[k].value);
            ref[k].value = 0;
        } else {
            ASSERT_EQ((uintptr_t)pay_map_get(&map, ref[k].key), ref[k].value);
        }
        if (map.bucket_count > grown_max) grown_max = map.bucket_count;
        ASSERT_TRUE(map.count <= map.bucket_count); /* grown once entries outnumber buckets */
        if (step % 997 == 0) check_all(&map);
    }
    check_all(&map);
    check_buckets(&map);
    ASSERT_TRUE(grown_max >= 1024); /* it grew well past its first size */
    ASSERT_EQ((uintptr_t)pay_map_get(&map, "absent"), 0);
    ASSERT_EQ((uintptr_t)pay_map_get(&map, ""), 0);
    pay_map_free(&map, NULL);
}

static void test_first_size_rounded(void) {
    pay_map_t map;
    ASSERT_STATUS(pay_map_init(&map, 1000), PC_OK);
    ASSERT_EQ(map.bucket_count, 1024);
    ASSERT_STATUS(pay_map_put(&map, "a", (void *)1, NULL), PC_OK);
    ASSERT_EQ((uintptr_t)pay_map_get(&map, "a"), 1);
    ASSERT_EQ((uintptr_t)pay_map_get(&map, "b"), 0);
    pay_map_free(&map, NULL);
}

int main(void) {
    TEST_RUN(test_random_against_reference);
    TEST_RUN(test_first_size_rounded);
    return test_finish();
}
