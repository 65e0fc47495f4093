/* Goal: the WAL checkpoint thread (store/sqlite_wal_checkpointer.c) spaces its
 * checkpoints by new frames, not one after every commit past the bound (each one
 * copies again the pages every commit rewrites and fsyncs), and still lets the WAL
 * restart: once the writer pauses, the frames left are copied and its next commit
 * writes the WAL from its start. The WAL stays bounded once readers let go: a reader
 * holding a snapshot keeps the WAL growing past every bound, and after it ends the
 * WAL restarts and its file is cut back to STORE_WAL_FILE_BYTES_MAX.
 * Method: a real SQLite file in WAL mode; the test's connection is the writer (its
 * commits call the checkpointer's hook), other connections read the WAL's length or
 * hold a snapshot. */
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/sqlite_internal.h"
#include "test.h"

#define ROWS_PER_COMMIT 8    /* a row of ROW_BYTES fills a page: ~9 frames a commit */
#define ROW_BYTES 3000
#define WAIT_MS_MAX 120000   /* the checkpoint thread's turn may be slow on a loaded machine */

static char dir[256], db_path[300], wal_path[310];

static void exec_ok(sqlite3 *db, const char *sql) {
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK) TEST_FAIL("%s: %s", sql, message);
}

static sqlite3 *writer_open(void) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        TEST_FAIL("open %s: %s", db_path, sqlite3_errmsg(db));
    }
    /* NORMAL: commits without their own fsync, so a burst of them is quick */
    exec_ok(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=60000;"
                "CREATE TABLE t(body BLOB NOT NULL);");
    return db;
}

static void commit_rows(sqlite3 *db) {
    exec_ok(db, "BEGIN");
    for (int i = 0; i < ROWS_PER_COMMIT; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT INTO t(body) VALUES (zeroblob(%d))", ROW_BYTES);
        exec_ok(db, sql);
    }
    exec_ok(db, "COMMIT");
}

/* The WAL file's length in frames (it never shrinks: a restart writes over it). */
static int64_t wal_file_frames(void) {
    struct stat st;
    if (stat(wal_path, &st) != 0 || st.st_size < 32) return 0;
    return (st.st_size - 32) / (4096 + 24);
}

static uint64_t runs_of(store_wal_checkpointer_t *c) { return store_wal_checkpointer_counts(c).runs; }

static void runs_wait_above(store_wal_checkpointer_t *c, uint64_t runs) {
    for (int ms = 0; runs_of(c) <= runs; ms += 5) {
        if (ms > WAIT_MS_MAX) TEST_FAIL("no checkpoint after %d ms (runs %llu)", WAIT_MS_MAX, (unsigned long long)runs);
        usleep(5000);
    }
}

/* A connection in a read transaction: its snapshot keeps the WAL from restarting and
 * every checkpoint from copying past it. */
static sqlite3 *reader_begin(void) {
    sqlite3 *reader = NULL;
    ASSERT_EQ(sqlite3_open_v2(db_path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    exec_ok(reader, "BEGIN; SELECT count(*) FROM sqlite_schema;");
    return reader;
}

static void reader_end(sqlite3 *reader) {
    exec_ok(reader, "COMMIT");
    sqlite3_close(reader);
}

/* The writer pauses until a checkpoint ran, then commits, until a commit restarts the
 * WAL: it does once a checkpoint copied all of it (a pause with frames left to copy
 * starts one). */
static void restart_after_pauses(store_wal_checkpointer_t *c, void (*commit)(sqlite3 *), sqlite3 *db) {
    for (int attempt = 0; store_wal_checkpointer_counts(c).restarts == 0; attempt++) {
        if (attempt == 50) TEST_FAIL("the WAL did not restart after %d pauses", attempt);
        runs_wait_above(c, runs_of(c));
        commit(db);
    }
}

static void test_spaced_by_frames_and_restarts_after_a_pause(void) {
    test_dir_make(dir, sizeof dir, "paycore-test-walckpt");
    snprintf(db_path, sizeof db_path, "%s/w.db", dir);
    snprintf(wal_path, sizeof wal_path, "%s-wal", db_path);
    sqlite3 *db = writer_open();
    store_wal_checkpointer_t *c = store_wal_checkpointer_start(db_path, db);
    ASSERT_TRUE(c != NULL);
    while (wal_file_frames() < STORE_WAL_CHECKPOINT_PAGES - 2 * ROWS_PER_COMMIT) commit_rows(db);
    ASSERT_EQ(runs_of(c), 0); /* none below the bound */
    sqlite3 *reader = reader_begin(); /* from here the WAL's length is its file's */
    while (wal_file_frames() < STORE_WAL_CHECKPOINT_PAGES) commit_rows(db);
    runs_wait_above(c, 0); /* the first, at the bound */

    /* A burst of commits adding fewer frames than a step: each one used to start a
     * checkpoint; now none does (only a pause of the writer may). */
    store_wal_checkpoint_counts before = store_wal_checkpointer_counts(c);
    int64_t frames_before = wal_file_frames();
    int commits = 0;
    while (wal_file_frames() < frames_before + STORE_WAL_CHECKPOINT_STEP_FRAMES - 4 * ROWS_PER_COMMIT) {
        commit_rows(db);
        commits++;
    }
    store_wal_checkpoint_counts after = store_wal_checkpointer_counts(c);
    ASSERT_TRUE(commits >= 20); /* ~9 frames a commit: a burst, each of which once started one */
    uint64_t burst_runs = (after.runs - before.runs) - (after.idle_runs - before.idle_runs);
    if (burst_runs != 0) {
        TEST_FAIL("%llu checkpoints in a burst of %d commits", (unsigned long long)burst_runs, commits);
    }
    /* The commit that completes a step starts one. */
    while (wal_file_frames() < frames_before + STORE_WAL_CHECKPOINT_STEP_FRAMES) commit_rows(db);
    runs_wait_above(c, after.runs);
    ASSERT_EQ(store_wal_checkpointer_counts(c).restarts, 0);

    /* The reader lets go and the writer pauses: the frames left are copied, and its
     * next commit restarts the WAL (a WAL never copied whole would only grow). */
    reader_end(reader);
    restart_after_pauses(c, commit_rows, db);

    store_wal_checkpointer_stop(c, db);
    sqlite3_close(db);
    test_dir_remove(dir);
}

#define HOT_ROWS 64 /* each on a page of its own: a commit rewrites HOT_ROWS + 1 pages */

static void commit_hot_rows(sqlite3 *db) { exec_ok(db, "UPDATE hot SET n = n + 1"); }

static int64_t wal_file_bytes(void) {
    struct stat st;
    return stat(wal_path, &st) == 0 ? (int64_t)st.st_size : 0;
}

static void test_wal_bounded_once_a_reader_lets_go(void) {
    test_dir_make(dir, sizeof dir, "paycore-test-walckpt");
    snprintf(db_path, sizeof db_path, "%s/w.db", dir);
    snprintf(wal_path, sizeof wal_path, "%s-wal", db_path);
    sqlite3 *db = writer_open();
    exec_ok(db, "CREATE TABLE hot(n INTEGER NOT NULL, body BLOB NOT NULL); BEGIN");
    for (int i = 0; i < HOT_ROWS; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT INTO hot VALUES (%d, zeroblob(%d))", i, ROW_BYTES);
        exec_ok(db, sql);
    }
    exec_ok(db, "COMMIT");
    store_wal_checkpointer_t *c = store_wal_checkpointer_start(db_path, db);
    ASSERT_TRUE(c != NULL);

    /* A reader holds its snapshot while the WAL grows past the soft bound and past the
     * file's bound: the checkpoints after every commit cannot copy past its snapshot,
     * so the WAL cannot restart. */
    sqlite3 *reader = reader_begin();
    while (wal_file_bytes() <= STORE_WAL_FILE_BYTES_MAX + 1024 * 1024) commit_hot_rows(db);
    ASSERT_EQ(store_wal_checkpointer_counts(c).restarts, 0);

    /* It lets go: a checkpoint copies the WAL whole and a later commit restarts it,
     * cutting the file back to its bound. */
    reader_end(reader);
    restart_after_pauses(c, commit_hot_rows, db);
    int64_t bytes = wal_file_bytes();
    if (bytes > STORE_WAL_FILE_BYTES_MAX) TEST_FAIL("the WAL file stayed at %lld bytes", (long long)bytes);

    store_wal_checkpointer_stop(c, db);
    sqlite3_close(db);
    test_dir_remove(dir);
}

int main(void) {
    TEST_RUN(test_spaced_by_frames_and_restarts_after_a_pause);
    TEST_RUN(test_wal_bounded_once_a_reader_lets_go);
    return test_finish();
}
