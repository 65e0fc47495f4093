/* Goal: the in-memory index of stored Idempotency-Keys (store/idem_index.c) never says
 * "no row" for a key that has one: through growth, deletions and their sweeps, a key
 * stored twice (a row and a lookup), a removal of a key never added, and past its bound
 * (where it answers "may hold" for every key until it is rebuilt from the store; a
 * rebuild takes the rows added meanwhile, keeps the ones removed meanwhile, and a scan
 * past the bound leaves it overflowed), and a scan asks whether to go on every
 * API_IDEM_INDEX_SCAN_CHECK_ROWS rows and stops at the first "no".
 * Method: a model of the stored rows (a count per key) beside the index; after each
 * step every key with rows must be held, and most keys without rows must not be (the
 * index is exact but for 64-bit print collisions, which this many keys never meet). */
#include <stdio.h>
#include <string.h>

#include "paycore/limits.h"
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

static void expect_state(idem_index_t *index, idem_index_state state, uint64_t keys) {
    idem_index_stats_t stats;
    idem_index_stats(index, &stats);
    ASSERT_EQ(stats.state, state);
    ASSERT_EQ(stats.keys, keys);
}

/* Overflowed by 101 rows of a bound of 100; the purge takes 30 (71 left, under 75 %);
 * the rebuild's scan reads rows 30..100 while row 101 arrives and row 40 is purged. */
static void test_rebuild(void) {
    idem_index_t *index = NULL;
    for (int i = 0; i < KEYS; i++) key_name(i, names[i]);
    ASSERT_STATUS(idem_index_new(&index, 100), PC_OK);
    for (int i = 0; i <= 100; i++) idem_index_add(index, "key_a", names[i]);
    ASSERT_FALSE(idem_index_rebuild_wanted(index)); /* 101 rows: no room */
    for (int i = 0; i < 25; i++) idem_index_remove(index, "key_a", names[i]);
    ASSERT_FALSE(idem_index_rebuild_wanted(index)); /* 76 rows: above 75 % */
    for (int i = 25; i < 30; i++) idem_index_remove(index, "key_a", names[i]);
    ASSERT_TRUE(idem_index_rebuild_wanted(index));
    ASSERT_STATUS(idem_index_rebuild_begin(index), PC_OK);
    ASSERT_FALSE(idem_index_rebuild_wanted(index));
    idem_index_add(index, "key_a", names[101]);              /* a live add during the scan */
    for (int i = 30; i <= 60; i++) idem_index_add(index, "key_a", names[i]);
    idem_index_remove(index, "key_a", names[40]);            /* purged after the scan read it */
    for (int i = 61; i <= 101; i++) idem_index_add(index, "key_a", names[i]); /* 101 again: read too */
    ASSERT_TRUE(idem_index_may_hold(index, "key_z", "never stored")); /* not an index until the end */
    ASSERT_TRUE(idem_index_rebuild_end(index, true));
    expect_state(index, IDEM_INDEX_INDEXED, 73);
    for (int i = 30; i <= 101; i++) ASSERT_TRUE(idem_index_may_hold(index, "key_a", names[i]));
    for (int i = 0; i < 30; i++) ASSERT_FALSE(idem_index_may_hold(index, "key_a", names[i]));
    ASSERT_FALSE(idem_index_may_hold(index, "key_z", "never stored"));
    idem_index_remove(index, "key_a", names[101]);          /* stored twice by the scan: still held */
    ASSERT_TRUE(idem_index_may_hold(index, "key_a", names[101]));
    idem_index_stats_t stats;
    idem_index_stats(index, &stats);
    ASSERT_EQ(stats.rebuilds, 1);
    ASSERT_EQ(stats.overflows, 1);
    idem_index_free(index);
}

/* A scan that finds more rows than the bound, or fails, leaves it overflowed and
 * counting; it is not rebuilt again until the purge made room. */
static void test_rebuild_refused(void) {
    idem_index_t *index = NULL;
    for (int i = 0; i < KEYS; i++) key_name(i, names[i]);
    ASSERT_STATUS(idem_index_new(&index, 100), PC_OK);
    for (int i = 0; i <= 100; i++) idem_index_add(index, "key_a", names[i]);
    for (int i = 0; i < 40; i++) idem_index_remove(index, "key_a", names[i]);
    ASSERT_TRUE(idem_index_rebuild_wanted(index)); /* counted 61; the store holds 130 */
    ASSERT_STATUS(idem_index_rebuild_begin(index), PC_OK);
    for (int i = 0; i < 130; i++) idem_index_add(index, "key_a", names[i]);
    ASSERT_FALSE(idem_index_rebuild_end(index, true));
    idem_index_stats_t stats;
    idem_index_stats(index, &stats);
    ASSERT_EQ(stats.state, IDEM_INDEX_OVERFLOWED);
    ASSERT_EQ(stats.rows_counted, 130);
    ASSERT_EQ(stats.rebuilds_failed, 1);
    for (int i = 0; i < 200; i++) ASSERT_TRUE(idem_index_may_hold(index, "key_a", names[i]));
    ASSERT_FALSE(idem_index_rebuild_wanted(index));
    for (int i = 0; i < 60; i++) idem_index_remove(index, "key_a", names[i]);
    ASSERT_TRUE(idem_index_rebuild_wanted(index)); /* 70 */
    ASSERT_STATUS(idem_index_rebuild_begin(index), PC_OK);
    for (int i = 60; i < 80; i++) idem_index_add(index, "key_a", names[i]);
    ASSERT_FALSE(idem_index_rebuild_end(index, false)); /* the read failed after 20 rows */
    idem_index_stats(index, &stats);
    ASSERT_EQ(stats.state, IDEM_INDEX_OVERFLOWED);
    ASSERT_EQ(stats.rows_counted, 70); /* as counted before, not the part read */
    ASSERT_TRUE(idem_index_may_hold(index, "key_a", names[0]));
    idem_index_free(index);
}

typedef struct {
    int asked;
    int yes; /* answers "go on" this many times, then "stop" */
} go_on_model_t;

static bool go_on_model(void *ctx) {
    go_on_model_t *m = ctx;
    return m->asked++ < m->yes;
}

static void test_scan_stops(void) {
    idem_index_t *index = NULL;
    ASSERT_STATUS(idem_index_new(&index, KEYS * 2), PC_OK);
    for (int i = 0; i < KEYS; i++) key_name(i, names[i]);
    go_on_model_t model = {.asked = 0, .yes = 2};
    idem_index_scan_t scan = {.index = index, .go_on = go_on_model, .go_on_ctx = &model};
    int row = 0;
    while (row < KEYS && idem_index_scan_row(&scan, "key_a", names[row])) row++;
    ASSERT_EQ(row, 3 * API_IDEM_INDEX_SCAN_CHECK_ROWS - 1); /* the row that heard "stop" was added */
    ASSERT_EQ(scan.rows, 3 * API_IDEM_INDEX_SCAN_CHECK_ROWS);
    ASSERT_EQ(model.asked, 3);
    ASSERT_TRUE(scan.stopped);
    for (int i = 0; i <= row; i++) ASSERT_TRUE(idem_index_may_hold(index, "key_a", names[i]));
    idem_index_scan_t always = {.index = index}; /* no go_on: to the end */
    for (int i = row + 1; i < KEYS; i++) ASSERT_TRUE(idem_index_scan_row(&always, "key_a", names[i]));
    ASSERT_FALSE(always.stopped);
    idem_index_free(index);
}

int main(void) {
    TEST_RUN(test_add_remove_grow_sweep);
    TEST_RUN(test_bound);
    TEST_RUN(test_rebuild);
    TEST_RUN(test_rebuild_refused);
    TEST_RUN(test_scan_stops);
    return test_finish();
}
