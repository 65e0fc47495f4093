/* Goal: the in-memory index of stored Idempotency-Keys (store/idem_index.c) never says
 * "no row" for a key that has one: through growth, deletions and their sweeps, a key
 * stored twice (a row and a lookup), a removal of a key never added, and past its bound
 * (where it answers "may hold" for every key from then on).
 * Method: a model of the stored rows (a count per key) beside the index; after each
 * step every key with rows must be held, and most keys without rows must not be (the
 * index is exact but for 64-bit print collisions, which this many keys never meet). */
#include <stdio.h>
#include <string.h>

#include "store/idem_index.h"
#include "test.h"

#define KEYS 20000

static char names[KEYS][24];
static int rows[KEYS]; /* the model: rows stored per key */

static void key_name(int i, char out[24]) {
    snprintf(out, 24, "k-%d", i);
}

/* Every key with rows is held; the keys without are not (no collision this small). */
static void check_exact(idem_index_t *index, const char *key_id) {
    for (int i = 0; i < KEYS; i++) {
        bool held = idem_index_may_hold(index, key_id, names[i]);
        if (rows[i] > 0) ASSERT_TRUE(held);
        else ASSERT_FALSE(held);
    }
}

static void test_add_remove_grow_sweep(void) {
    idem_index_t *index = NULL;
    ASSERT_STATUS(idem_index_new(&index, KEYS * 2), PC_OK);
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < KEYS; i++) key_name(i, names[i]);
    check_exact(index, "key_a");
    for (int i = 0; i < KEYS; i++) { /* grows from 1024 slots */
        idem_index_add(index, "key_a", names[i]);
        rows[i]++;
    }
    check_exact(index, "key_a");
    ASSERT_FALSE(idem_index_may_hold(index, "key_b", names[0])); /* scoped by API key */
    for (int i = 0; i < KEYS; i += 3) { /* a second row of the same key (a lookup beside it) */
        idem_index_add(index, "key_a", names[i]);
        rows[i]++;
    }
    for (int round = 0; round < 4; round++) { /* purges and new rows: deleted slots swept */
        for (int i = round; i < KEYS; i += 2) {
            if (rows[i] == 0) continue;
            idem_index_remove(index, "key_a", names[i]);
            rows[i]--;
        }
        check_exact(index, "key_a");
        for (int i = round; i < KEYS; i += 5) {
            idem_index_add(index, "key_a", names[i]);
            rows[i]++;
        }
        check_exact(index, "key_a");
    }
    idem_index_remove(index, "key_b", names[1]); /* never added: changes nothing */
    check_exact(index, "key_a");
    idem_index_stats_t stats;
    idem_index_stats(index, &stats);
    ASSERT_FALSE(stats.overflowed);
    ASSERT_TRUE(stats.slots >= stats.keys * 2);
    idem_index_free(index);
}

static void test_bound(void) {
    idem_index_t *index = NULL;
    for (int i = 0; i < KEYS; i++) key_name(i, names[i]);
    ASSERT_STATUS(idem_index_new(&index, 100), PC_OK);
    for (int i = 0; i < 100; i++) idem_index_add(index, "key_a", names[i]);
    ASSERT_FALSE(idem_index_may_hold(index, "key_a", names[100]));
    idem_index_stats_t stats;
    idem_index_stats(index, &stats);
    ASSERT_EQ(stats.keys, 100);
    ASSERT_FALSE(stats.overflowed);
    idem_index_add(index, "key_a", names[100]); /* one past the bound */
    idem_index_stats(index, &stats);
    ASSERT_TRUE(stats.overflowed);
    for (int i = 0; i < KEYS; i++) ASSERT_TRUE(idem_index_may_hold(index, "key_a", names[i]));
    for (int i = 0; i < 100; i++) idem_index_remove(index, "key_a", names[i]); /* purges do not undo it */
    ASSERT_TRUE(idem_index_may_hold(index, "key_a", names[100]));
    ASSERT_TRUE(idem_index_may_hold(index, "key_z", "never stored"));
    idem_index_free(index);
    ASSERT_STATUS(idem_index_new(&index, 0), PC_INVALID_ARGUMENT);
}

int main(void) {
    TEST_RUN(test_add_remove_grow_sweep);
    TEST_RUN(test_bound);
    return test_finish();
}
