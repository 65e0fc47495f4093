/* Goal: the recovery's two sweeps over operations (those "pending" for their channel's
 * answer, those "processing" while a bank's callback is awaited) are served by partial
 * indexes of those operations on SQLite, whatever the number of operations that ended:
 * the statement each sweep runs (the store's SQL for recovery.c's query) has a query
 * plan that SEARCHes its partial index, never a SCAN of pay_objects; and the listings
 * return exactly the waiting operations, in creation order, a page from a creation
 * time on. Method: a real store file made by store_open (every migration), 20,000 ended
 * operations and a few waiting ones written into it with SQL, then EXPLAIN QUERY PLAN
 * of the store's statement and the store's own listing through a reader. (PostgreSQL:
 * tests/payments/test_payments_bank_inquiry_ms.py reads the plans auto_explain logs.) */
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "payments/pay_internal.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

#define ENDED_OPS 20000
static char dir[256], db_path[300], key_path[300];

static void exec(sqlite3 *db, const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) TEST_FAIL("%s: %s", sql, error);
}

/* Ended operations (paid, succeeded), a payment, and the waiting ones: processing at
 * created_ns 5000, 7000, 9000; pending at 6000, 8000. */
static void rows_write(void) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    exec(db, "BEGIN");
    exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)"
             " INSERT INTO pay_objects(id, kind, merchant_id, parent_id, status, created_ns, updated_ns, version, doc)"
             " SELECT printf('op_%06d', i), 'op', 'm1', printf('pay_%06d', i), CASE i % 2 WHEN 0 THEN 'paid'"
             " ELSE 'succeeded' END, i * 2, i * 2, 2, '' FROM n");
    exec(db, "INSERT INTO pay_objects(id, kind, merchant_id, parent_id, status, created_ns, updated_ns, version, doc)"
             " VALUES ('po_w1', 'op', 'm1', 'm1', 'processing', 5000, 5000, 1, ''),"
             " ('po_w2', 'op', 'm1', 'm1', 'processing', 7000, 7000, 1, ''),"
             " ('po_w3', 'op', 'm1', 'm1', 'processing', 9000, 9000, 1, ''),"
             " ('op_p1', 'op', 'm1', 'pay_x', 'pending', 6000, 6000, 1, ''),"
             " ('op_p2', 'op', 'm1', 'pay_x', 'pending', 8000, 8000, 1, ''),"
             " ('pay_x', 'payment', 'm1', '', 'processing', 6000, 6000, 1, '')");
    exec(db, "COMMIT");
    sqlite3_close(db);
}

static void plan_row(sqlite3_stmt *stmt, char *plan, size_t plan_bytes) {
    size_t used = strlen(plan);
    snprintf(plan + used, plan_bytes - used, "%s\n", (const char *)sqlite3_column_text(stmt, 3));
}

/* The plan of the statement the store runs for recovery.c's sweep in 'status'. */
static void plan_check(const char *status, const char *index) {
    store_pay_query_t q = pay_recovery_query(status, 4000);
    char sql[600] = "EXPLAIN QUERY PLAN ";
    store_sqlite_pay_list_sql(&q, false, sql + strlen(sql), sizeof sql - strlen(sql));
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    char plan[2048] = "";
    while (sqlite3_step(stmt) == SQLITE_ROW) plan_row(stmt, plan, sizeof plan);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    char want[128];
    snprintf(want, sizeof want, "SEARCH pay_objects USING INDEX %s (", index);
    if (strstr(plan, want) == NULL || strstr(plan, "SCAN pay_objects") != NULL) {
        TEST_FAIL("the %s sweep's statement is not served by %s:\n%s\nits plan:\n%s", status, index, sql, plan);
    }
    printf("%s sweep: %s", status, plan);
}

typedef struct {
    char ids[8][PC_ID_SIZE];
    uint32_t count;
} listed_t;

static void listed_one(const store_pay_object_t *object, void *ctx) {
    listed_t *listed = ctx;
    if (listed->count < 8) snprintf(listed->ids[listed->count], PC_ID_SIZE, "%s", object->id);
    listed->count++;
}

static listed_t list(store_reader_t *reader, const char *status, uint64_t from_ns) {
    store_pay_query_t q = pay_recovery_query(status, from_ns);
    listed_t listed = {.count = 0};
    bool has_more = true;
    ASSERT_STATUS(store_pay_objects_list(reader, &q, listed_one, &listed, &has_more), PC_OK);
    ASSERT_FALSE(has_more);
    return listed;
}

static void test_sweeps_indexed(void) {
    test_dir_make(dir, sizeof dir, "paycore-sweep");
    snprintf(db_path, sizeof db_path, "%s/s.db", dir);
    snprintf(key_path, sizeof key_path, "%s/s.db.key", dir);
    store_t *store;
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_OK);
    store_close(store);
    rows_write();
    plan_check("processing", "pay_objects_processing");
    plan_check("pending", "pay_objects_pending");
    ASSERT_STATUS(store_open(&store, db_path, &(store_options_t){0}), PC_OK);
    writer_t *writer; /* loads the store: readers come after */
    ASSERT_STATUS(writer_start(&writer, store, key_path, NULL), PC_OK);
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    listed_t all = list(reader, "processing", 0);
    ASSERT_EQ(all.count, 3);
    ASSERT_STR_EQ(all.ids[0], "po_w1");
    ASSERT_STR_EQ(all.ids[1], "po_w2");
    ASSERT_STR_EQ(all.ids[2], "po_w3");
    listed_t later = list(reader, "processing", 7000); /* the sweep's next page */
    ASSERT_EQ(later.count, 2);
    ASSERT_STR_EQ(later.ids[0], "po_w2");
    listed_t pending = list(reader, "pending", 0);
    ASSERT_EQ(pending.count, 2);
    ASSERT_STR_EQ(pending.ids[0], "op_p1");
    ASSERT_STR_EQ(pending.ids[1], "op_p2");
    store_reader_close(reader);
    writer_stop(writer);
    store_close(store);
    test_dir_remove(dir);
}

int main(void) {
    TEST_RUN(test_sweeps_indexed);
    return test_finish();
}
