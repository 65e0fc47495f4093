/* Goal: the WAL write layer (store/sqlite_vfs.h) writes a transaction's frames with
 * one write and weakens nothing: a COMMIT that returned survives a SIGKILL right
 * after it (synchronous FULL and NORMAL, across WAL restarts, transactions larger
 * than the buffer, transactions that spill and rewrite frames, rolled-back ones),
 * and a reader on another connection never sees a commit whose frames are not whole.
 * Method: real SQLite files; a child process commits numbered transactions and
 * reports each on a pipe after COMMIT returned; the parent kills it with SIGKILL at
 * a random acknowledgement, reopens the file with SQLite's own VFS and checks every
 * acknowledged transaction and the file's integrity. A reader thread checks the same
 * invariants on every snapshot while a writer thread commits. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/sqlite_vfs.h"
#include "test.h"

#define ROLLED_BACK_TXN (1ll << 40)
#define BIG_BLOB_BYTES (2 * 1024 * 1024)

static char dir[256], db_path[300];

static void paths_make(const char *name) {
    snprintf(dir, sizeof dir, "/tmp/paycore-test-walbuf-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/%s.db", dir, name);
}

static void paths_remove(void) {
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    ASSERT_EQ(system(command), 0);
}

static void exec_ok(sqlite3 *db, const char *sql) {
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK) TEST_FAIL("%s: %s", sql, message);
}

/* The byte sum of a blob: bodies are checked byte by byte on every read. */
static void bsum_function(sqlite3_context *context, int argc, sqlite3_value **argv) {
    (void)argc;
    const uint8_t *bytes = sqlite3_value_blob(argv[0]);
    int64_t sum = 0;
    for (int i = 0; i < sqlite3_value_bytes(argv[0]); i++) sum += bytes[i];
    sqlite3_result_int64(context, sum);
}

static sqlite3 *db_open(const char *vfs, const char *synchronous, int cache_pages, int autocheckpoint_pages) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, vfs) !=
        SQLITE_OK) {
        TEST_FAIL("open %s: %s", db_path, sqlite3_errmsg(db));
    }
    sqlite3_busy_timeout(db, 60000);
    char sql[600];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA cache_size=%d; PRAGMA wal_autocheckpoint=%d;"
             " CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, txn INTEGER, body BLOB, body_sum INTEGER);"
             " CREATE INDEX IF NOT EXISTS t_txn ON t(txn);"
             " CREATE TABLE IF NOT EXISTS c(id INTEGER PRIMARY KEY, n INTEGER);"
             " INSERT OR IGNORE INTO c VALUES(1, 0);",
             synchronous, cache_pages, autocheckpoint_pages);
    exec_ok(db, sql);
    ASSERT_EQ(sqlite3_create_function(db, "bsum", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, bsum_function, NULL,
                                      NULL),
              SQLITE_OK);
    return db;
}

/* Transaction k's shape: rows, and each row's body size. Some are larger than the
 * layer's buffer, some spill a small cache and write pages twice. */
static int rows_of(int64_t k) { return k % 7 == 0 ? 120 : 1 + (int)(k % 5); }
static int body_bytes_of(int64_t k, int row) {
    if (k % 13 == 0 && row == 0) return BIG_BLOB_BYTES;
    return k % 3 == 0 ? 3000 : 100;
}

static int64_t row_insert(sqlite3 *db, sqlite3_stmt *insert, int64_t txn, int row, uint8_t *body) {
    int bytes = body_bytes_of(txn < 0 ? -txn : txn, row);
    int64_t sum = 0;
    for (int i = 0; i < bytes; i++) sum += body[i] = (uint8_t)(txn * 31 + row * 7 + i);
    sqlite3_bind_int64(insert, 1, txn);
    sqlite3_bind_blob(insert, 2, body, bytes, SQLITE_STATIC);
    sqlite3_bind_int64(insert, 3, sum);
    if (sqlite3_step(insert) != SQLITE_DONE) TEST_FAIL("insert: %s", sqlite3_errmsg(db));
    sqlite3_reset(insert);
    return sum;
}

/* Inserts transaction k's rows, rewrites the counter row several times (a page
 * written twice in one transaction) and commits. */
static void txn_commit(sqlite3 *db, int64_t k, uint8_t *body) {
    sqlite3_stmt *insert = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO t(txn, body, body_sum) VALUES(?1, ?2, ?3)", -1, &insert, NULL),
              SQLITE_OK);
    exec_ok(db, "BEGIN IMMEDIATE");
    for (int row = 0; row < rows_of(k); row++) {
        row_insert(db, insert, k, row, body);
        if (row % 40 == 0) exec_ok(db, "UPDATE c SET n = n WHERE id = 1");
    }
    char sql[100];
    snprintf(sql, sizeof sql, "UPDATE c SET n = %lld WHERE id = 1", (long long)k);
    exec_ok(db, sql);
    exec_ok(db, "COMMIT");
    sqlite3_finalize(insert);
}

/* A transaction that spills frames into the WAL and is then rolled back. */
static void txn_roll_back(sqlite3 *db, uint8_t *body) {
    sqlite3_stmt *insert = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO t(txn, body, body_sum) VALUES(?1, ?2, ?3)", -1, &insert, NULL),
              SQLITE_OK);
    exec_ok(db, "BEGIN IMMEDIATE");
    for (int row = 0; row < 60; row++) row_insert(db, insert, ROLLED_BACK_TXN, row, body);
    exec_ok(db, "ROLLBACK");
    sqlite3_finalize(insert);
}

static int64_t query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) TEST_FAIL("%s: %d %s", sql, rc, sqlite3_errmsg(db));
    int64_t value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

/* In one read transaction: the counter says n; exactly transactions 1..n are there,
 * each whole, every body byte as written. Returns n. */
static int64_t snapshot_check(sqlite3 *db) {
    exec_ok(db, "BEGIN");
    int64_t n = query_int(db, "SELECT n FROM c WHERE id = 1");
    int64_t expected_rows = 0;
    for (int64_t k = 1; k <= n; k++) expected_rows += rows_of(k);
    ASSERT_EQ(query_int(db, "SELECT count(*) FROM t"), expected_rows);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM t WHERE txn < 1 OR txn > %lld", (long long)n);
    ASSERT_EQ(query_int(db, sql), 0);
    ASSERT_EQ(query_int(db, "SELECT count(*) FROM t WHERE bsum(body) != body_sum"), 0);
    exec_ok(db, "COMMIT");
    return n;
}

static void integrity_check(sqlite3 *db) {
    sqlite3_stmt *stmt = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(stmt, 0), "ok");
    sqlite3_finalize(stmt);
}

/* ---- SIGKILL right after commits ---- */

static void child_commit_forever(int ack_fd, const char *synchronous, int cache_pages, int autocheckpoint_pages) {
    sqlite3 *db = db_open(store_sqlite_walbuf_vfs(), synchronous, cache_pages, autocheckpoint_pages);
    uint8_t *body = malloc(BIG_BLOB_BYTES);
    if (body == NULL) _exit(2);
    for (int64_t k = query_int(db, "SELECT n FROM c WHERE id = 1") + 1;; k++) {
        if (k % 17 == 0) txn_roll_back(db, body);
        txn_commit(db, k, body);
        if (write(ack_fd, &k, sizeof k) != (ssize_t)sizeof k) _exit(3);
    }
}

/* Reads acknowledgements until 'target' of them (or the child's end); the last one. */
static int64_t acks_read(int fd, int target, int64_t last) {
    for (int got = 0; target < 0 || got < target; got++) {
        int64_t k = 0;
        ssize_t n = read(fd, &k, sizeof k);
        if (n != (ssize_t)sizeof k) break;
        last = k;
    }
    return last;
}

static void kill_round(const char *synchronous, int cache_pages, int autocheckpoint_pages, int target) {
    int pipe_fds[2];
    ASSERT_EQ(pipe(pipe_fds), 0);
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        close(pipe_fds[0]);
        child_commit_forever(pipe_fds[1], synchronous, cache_pages, autocheckpoint_pages);
    }
    close(pipe_fds[1]);
    int64_t acked = acks_read(pipe_fds[0], target, 0);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    acked = acks_read(pipe_fds[0], -1, acked); /* written before the kill */
    close(pipe_fds[0]);
    ASSERT_TRUE(acked > 0);

    sqlite3 *db = db_open(NULL, "FULL", 2000, 1000); /* SQLite's own VFS */
    int64_t n = snapshot_check(db);
    if (n < acked) TEST_FAIL("acknowledged transaction %lld lost (file has %lld)", (long long)acked, (long long)n);
    ASSERT_TRUE(n <= acked + 1); /* at most the one in flight when killed */
    integrity_check(db);
    sqlite3_close(db);
}

static void test_sigkill_after_commit_loses_nothing(void) {
    static const struct {
        const char *synchronous;
        int cache_pages;
        int autocheckpoint_pages;
    } modes[] = {
        {"FULL", 2000, 1000}, {"NORMAL", 2000, 1000}, /* the writer's and the simulator's settings */
        {"FULL", 10, 64}, {"NORMAL", 10, 64},         /* spills, rewrites and frequent WAL restarts */
    };
    unsigned seed = (unsigned)time(NULL);
    printf("walbuf kill seed %u\n", seed);
    srand(seed);
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        paths_make("kill");
        for (int round = 0; round < 4; round++) {
            kill_round(modes[m].synchronous, modes[m].cache_pages, modes[m].autocheckpoint_pages, 5 + rand() % 40);
        }
        paths_remove();
    }
}

/* ---- synchronous=NORMAL: every committed frame in the file ---- */

/* Copies 'from' to 'to' as the file holds it now (what a crash leaves of it). */
static void file_copy(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(in >= 0 && out >= 0);
    char chunk[65536];
    ssize_t n;
    while ((n = read(in, chunk, sizeof chunk)) > 0) ASSERT_EQ(write(out, chunk, (size_t)n), n);
    close(in);
    close(out);
}

/* The rows of table p in a copy of the database and its WAL, opened with SQLite's own
 * VFS (it recovers the WAL's valid prefix, as after a crash). */
static int64_t rows_in_copy(void) {
    char copy[340], copy_wal[350], wal[310];
    snprintf(copy, sizeof copy, "%s/copy.db", dir);
    snprintf(copy_wal, sizeof copy_wal, "%s/copy.db-wal", dir);
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    file_copy(db_path, copy);
    file_copy(wal, copy_wal);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open_v2(copy, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    int64_t rows = query_int(db, "SELECT count(*) FROM p");
    integrity_check(db);
    sqlite3_close(db);
    char shm[350];
    snprintf(shm, sizeof shm, "%s/copy.db-shm", dir);
    unlink(copy_wal);
    unlink(shm);
    unlink(copy);
    return rows;
}

/* Goal: with synchronous=NORMAL (the writer's connection under the sync pipeline: no
 * xSync after COMMIT, a syncer flushes the file later) every frame of a transaction is
 * in the file when its COMMIT returns, wherever the buffer's end falls; the commit
 * frame's page once waited in a fresh buffer when it did not fit, and the write lock's
 * release dropped it. Method: transactions of 1 to 70 page-sized rows (so the commit
 * frame meets the buffer's end at several sizes), each followed by a copy of the
 * files, opened apart: every committed row is there. */
static void test_normal_commit_frames_in_file(void) {
    paths_make("normal");
    sqlite3 *db = db_open(store_sqlite_walbuf_vfs(), "NORMAL", 2000, 0);
    exec_ok(db, "CREATE TABLE p(id INTEGER PRIMARY KEY, body BLOB)");
    sqlite3_stmt *insert = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO p(body) VALUES(?1)", -1, &insert, NULL), SQLITE_OK);
    static uint8_t body[3500];
    memset(body, 0x5a, sizeof body);
    int64_t rows = 0;
    for (int size = 1; size <= 70; size++) {
        exec_ok(db, "BEGIN IMMEDIATE");
        for (int i = 0; i < size; i++) {
            sqlite3_bind_blob(insert, 1, body, sizeof body, SQLITE_STATIC);
            ASSERT_EQ(sqlite3_step(insert), SQLITE_DONE);
            sqlite3_reset(insert);
        }
        exec_ok(db, "COMMIT");
        rows += size;
        int64_t in_copy = rows_in_copy();
        if (in_copy != rows) TEST_FAIL("a transaction of %d rows committed, the file holds %lld of %lld rows", size,
                                       (long long)in_copy, (long long)rows);
    }
    sqlite3_finalize(insert);
    sqlite3_close(db);
    paths_remove();
}

/* ---- a reader on another connection during commits ---- */

typedef struct {
    atomic_bool writer_done;
    atomic_bool reader_started; /* its connection is open and it took a first snapshot */
    int64_t snapshots;
    int64_t distinct_n;
} reader_state;

static void *reader_main(void *arg) {
    reader_state *state = arg;
    sqlite3 *db = db_open(NULL, "FULL", 2000, 0);
    int64_t last_n = snapshot_check(db);
    state->snapshots++;
    atomic_store(&state->reader_started, true);
    while (!atomic_load(&state->writer_done)) {
        int64_t n = snapshot_check(db);
        state->snapshots++;
        if (n != last_n) state->distinct_n++;
        last_n = n;
    }
    snapshot_check(db);
    sqlite3_close(db);
    return NULL;
}

static void test_reader_never_sees_torn_frames(void) {
    paths_make("reader");
    sqlite3 *writer = db_open(store_sqlite_walbuf_vfs(), "NORMAL", 10, 64);
    reader_state state = {0};
    pthread_t reader;
    ASSERT_EQ(pthread_create(&reader, NULL, reader_main, &state), 0);
    /* the commits start once the reader reads: on a busy machine (sanitizers, -j2) its
     * thread could otherwise open its connection after the last commit */
    for (int waited_ms = 0; !atomic_load(&state.reader_started); waited_ms++) {
        if (waited_ms > 30000) TEST_FAIL("the reader did not start in 30 s");
        usleep(1000);
    }
    uint8_t *body = malloc(BIG_BLOB_BYTES);
    ASSERT_TRUE(body != NULL);
    for (int64_t k = 1; k <= 120; k++) {
        if (k % 17 == 0) txn_roll_back(writer, body);
        txn_commit(writer, k, body);
    }
    atomic_store(&state.writer_done, true);
    ASSERT_EQ(pthread_join(reader, NULL), 0);
    ASSERT_TRUE(state.snapshots > 0);
    ASSERT_EQ(snapshot_check(writer), 120);
    integrity_check(writer);
    free(body);
    sqlite3_close(writer);
    paths_remove();
}

/* ---- two writing connections: a rolled-back transaction's frames never come back ---- */

/* Connection A spills frames of a transaction (they wait in its buffer) and rolls it
 * back, having read nothing from the WAL since (the WAL was emptied first and the
 * transaction allocates no page); connection B then commits into the same stretch of
 * the WAL; A's next read must not write A's dead frames over B's. Then each empties
 * the WAL and the other restarts it. Checked by both after each step, and on a fresh
 * connection after every connection closed (the WAL copied into the database by the
 * last one). */
static void two_writers_round(const char *vfs) {
    paths_make("twowriters");
    sqlite3 *a = db_open(vfs, "NORMAL", 10, 0);
    sqlite3 *b = db_open(vfs, "NORMAL", 2000, 0);
    uint8_t *body = malloc(BIG_BLOB_BYTES);
    ASSERT_TRUE(body != NULL);
    for (int64_t k = 1; k <= 12; k++) txn_commit(a, k, body);
    exec_ok(a, "CREATE TABLE pad(x BLOB);"
               " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)"
               " INSERT INTO pad(x) SELECT randomblob(2000) FROM n;"
               " PRAGMA wal_checkpoint(TRUNCATE);");
    store_walbuf_counts before = store_sqlite_walbuf_counts();
    exec_ok(a, "BEGIN IMMEDIATE; UPDATE pad SET x = randomblob(2000); ROLLBACK;"); /* ~100 pages, none new: spills */
    store_walbuf_counts after = store_sqlite_walbuf_counts();
    ASSERT_TRUE(after.wal_writes_asked > before.wal_writes_asked); /* it did spill */
    for (int64_t k = 13; k <= 18; k++) txn_commit(b, k, body);
    ASSERT_EQ(snapshot_check(a), 18);
    ASSERT_EQ(snapshot_check(b), 18);
    exec_ok(b, "PRAGMA wal_checkpoint(TRUNCATE)"); /* A's WAL emptied under it */
    txn_commit(a, 19, body);
    exec_ok(a, "PRAGMA wal_checkpoint(PASSIVE)");
    txn_commit(b, 20, body); /* B restarts the WAL A wrote */
    txn_commit(a, 21, body);
    ASSERT_EQ(snapshot_check(b), 21);
    ASSERT_EQ(snapshot_check(a), 21);
    sqlite3_close(a);
    sqlite3_close(b);
    sqlite3 *check = db_open(NULL, "FULL", 2000, 0);
    ASSERT_EQ(snapshot_check(check), 21);
    integrity_check(check);
    sqlite3_close(check);
    free(body);
    paths_remove();
}

static void test_rolled_back_frames_never_overwrite_another_commit(void) {
    two_writers_round(store_sqlite_walbuf_vfs());
}

/* ---- one write per small transaction ---- */

static void test_one_write_per_commit(void) {
    paths_make("count");
    sqlite3 *db = db_open(store_sqlite_walbuf_vfs(), "FULL", 2000, 0);
    uint8_t *body = malloc(BIG_BLOB_BYTES);
    ASSERT_TRUE(body != NULL);
    txn_commit(db, 1, body);
    store_walbuf_counts before = store_sqlite_walbuf_counts();
    int commits = 0;
    for (int64_t k = 2; k <= 60; k++) {
        if (rows_of(k) > 5 || k % 13 == 0) continue; /* small ones only */
        txn_commit(db, k, body);
        commits++;
    }
    store_walbuf_counts after = store_sqlite_walbuf_counts();
    uint64_t asked = after.wal_writes_asked - before.wal_writes_asked;
    uint64_t done = after.wal_writes_done - before.wal_writes_done;
    printf("walbuf commits=%d wal_writes_asked=%llu wal_writes_done=%llu\n", commits, (unsigned long long)asked,
           (unsigned long long)done);
    ASSERT_TRUE(asked >= (uint64_t)commits * 4); /* two frames at least: header and page each */
    ASSERT_EQ(done, commits);
    sqlite3_close(db);
    free(body);
    paths_remove();
}

int main(void) {
    TEST_RUN(test_rolled_back_frames_never_overwrite_another_commit);
    TEST_RUN(test_one_write_per_commit);
    TEST_RUN(test_normal_commit_frames_in_file);
    TEST_RUN(test_reader_never_sees_torn_frames);
    TEST_RUN(test_sigkill_after_commit_loses_nothing);
    return test_finish();
}
