/* Goal: the id map finds exactly what was inserted and not removed since its last
 * clear, through inserts, backward-shift removals, growth and clears that empty it
 * without writing the table (a slot of an earlier generation reads as empty, also
 * when it holds the same hash and value again), and across its generation's wrap.
 * Method: random operations on a small map (long probe runs) against a reference
 * set, every id looked up after each step; ids that collide on purpose (a weak hash
 * with few bits) so runs interleave; the same ids inserted again after each clear;
 * the generation started just before it wraps. */
#include "ledger/idmap.h"
#include "test.h"

#define IDS 512

static char ids[IDS][16];
static bool present[IDS];
static uint32_t present_count;

static const char *key_of(const void *owner, uint32_t value) {
    (void)owner;
    PC_ASSERT(value < IDS);
    return ids[value];
}

/* Few distinct hashes: many ids share a home slot and long runs form. */
static uint64_t weak_hash(uint32_t value) { return 1 + (uint64_t)(value % 37) * 0x9e3779b97f4a7c15u; }

static void expect_all(const idmap_t *map) {
    ASSERT_EQ(map->count, present_count);
    for (uint32_t v = 0; v < IDS; v++) {
        uint32_t found = UINT32_MAX;
        bool hit = idmap_find(map, ids[v], weak_hash(v), &found);
        if (hit != present[v]) TEST_FAIL("id %u: found %d, present %d", v, hit, present[v]);
        if (hit) ASSERT_EQ(found, v);
    }
}

static void clear_all(idmap_t *map) {
    idmap_clear(map);
    memset(present, 0, sizeof present);
    present_count = 0;
}

static void run(uint32_t generation_start, uint32_t steps) {
    idmap_t map;
    ASSERT_TRUE(idmap_init(&map, 8, key_of, NULL));
    map.generation = generation_start;
    clear_all(&map);
    for (uint32_t step = 0; step < steps; step++) {
        uint32_t v = test_rand_below(IDS), op = test_rand_below(100);
        if (op < 2) {
            clear_all(&map);
        } else if (op < 60 && !present[v]) {
            ASSERT_TRUE(idmap_insert(&map, weak_hash(v), v));
            present[v] = true;
            present_count++;
        } else if (present[v]) {
            idmap_remove(&map, weak_hash(v), v);
            present[v] = false;
            present_count--;
        }
        if (step % 7 == 0) expect_all(&map);
    }
    expect_all(&map);
    idmap_free(&map);
}

/* Cleared maps hold stale slots with the very hashes and values inserted next. */
static void test_clear_keeps_nothing(void) {
    idmap_t map;
    ASSERT_TRUE(idmap_init(&map, 64, key_of, NULL));
    for (uint32_t round = 0; round < 50; round++) {
        for (uint32_t v = 0; v < 40; v++) ASSERT_TRUE(idmap_insert(&map, weak_hash(v), v));
        for (uint32_t v = 0; v < 40; v += 3) idmap_remove(&map, weak_hash(v), v);
        uint32_t found;
        ASSERT_TRUE(idmap_find(&map, ids[1], weak_hash(1), &found));
        ASSERT_FALSE(idmap_find(&map, ids[3], weak_hash(3), &found));
        idmap_clear(&map);
        ASSERT_EQ(map.count, 0);
        for (uint32_t v = 0; v < 40; v++) ASSERT_FALSE(idmap_find(&map, ids[v], weak_hash(v), &found));
    }
    idmap_free(&map);
}

static void test_random(void) { run(0, 200000); }

/* Past the wrap the table is zeroed once: slots of generation 0 from before must not
 * come back as filled. */
static void test_generation_wraps(void) {
    idmap_t map;
    ASSERT_TRUE(idmap_init(&map, 64, key_of, NULL));
    uint32_t found;
    for (uint32_t v = 0; v < 40; v++) ASSERT_TRUE(idmap_insert(&map, weak_hash(v), v)); /* generation 0 */
    map.generation = UINT32_MAX;
    ASSERT_FALSE(idmap_find(&map, ids[5], weak_hash(5), &found)); /* another generation: empty */
    map.count = 0;
    ASSERT_TRUE(idmap_insert(&map, weak_hash(7), 7));
    idmap_clear(&map); /* wraps to 0 */
    ASSERT_EQ(map.generation, 0);
    for (uint32_t v = 0; v < 40; v++) ASSERT_FALSE(idmap_find(&map, ids[v], weak_hash(v), &found));
    idmap_free(&map);
    for (uint32_t i = 0; i < 8; i++) run(UINT32_MAX - 3, 20000); /* random runs through the wrap */
}

int main(void) {
    for (uint32_t v = 0; v < IDS; v++) snprintf(ids[v], sizeof ids[v], "id-%u", v);
    TEST_RUN(test_clear_keeps_nothing);
    TEST_RUN(test_random);
    TEST_RUN(test_generation_wraps);
    return test_finish();
}
