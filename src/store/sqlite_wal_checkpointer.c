/* store/sqlite_wal_checkpointer.c: WAL checkpoints (SQLite copying its write-ahead
 * log back into the database file; not the journal's signed checkpoints, nor the
 * balance snapshot) from their own thread and connection. SQLite's automatic WAL
 * checkpoint would run inside the writer's COMMIT (copy pages, fsync the main file)
 * and stall the batch that crossed the threshold; a PASSIVE one here never blocks
 * the writer or readers.
 *
 * Cadence. A checkpoint copies the newest version of every page written since the
 * last one (a pread from the WAL and a pwrite into the database file each) and
 * fsyncs the WAL, and the database file too when it copied all of the WAL. The
 * hook's frame count is the WAL's length, not the frames since the last checkpoint,
 * and the WAL restarts only at a commit whose transaction began after a checkpoint
 * had copied all of it while no reader held an older snapshot: under the payments
 * load (readers nearly always in a snapshot) that is by chance, so one checkpoint
 * after every commit past the first bound copied the pages every commit rewrites
 * again and again. So: the first checkpoint at STORE_WAL_CHECKPOINT_PAGES, then one
 * per STORE_WAL_CHECKPOINT_STEP_FRAMES new frames, and only past
 * STORE_WAL_FRAMES_SOFT_MAX one after every commit (the chances to restart) until the
 * WAL restarts. A commit that shows the WAL shorter than the last one saw is a
 * restart: the count begins again. When the writer pauses for
 * STORE_WAL_CHECKPOINT_IDLE_MS with frames not yet copied, one more checkpoint copies
 * them, so that its next commit restarts the WAL. After a restart the writer's first
 * commit truncates the file to STORE_WAL_FILE_BYTES_MAX (journal_size_limit) when a
 * reader's long snapshot made it longer. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/sqlite_internal.h"

struct store_wal_checkpointer {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int wal_frames;     /* the WAL's length at the last commit */
    int checked_frames; /* its length when the last checkpoint began (0: none since a restart) */
    uint64_t commits;   /* commits seen by the hook: a pause is a wait they did not move */
    bool copied_short;  /* the last checkpoint left frames it saw (a reader's snapshot, an error) */
    uint64_t runs;      /* checkpoints finished */
    uint64_t idle_runs; /* of which run because the writer paused */
    uint64_t restarts;  /* commits that found the WAL restarted */
    bool stopping;
};

static bool checkpoint_due(const store_wal_checkpointer_t *c) {
    if (c->wal_frames < STORE_WAL_CHECKPOINT_PAGES) return false;
    if (c->checked_frames == 0) return true;
    int new_frames = c->wal_frames - c->checked_frames;
    if (c->wal_frames >= STORE_WAL_FRAMES_SOFT_MAX) return new_frames > 0;
    return new_frames >= STORE_WAL_CHECKPOINT_STEP_FRAMES;
}

/* Frames past the first bound that the last checkpoint did not see or could not copy:
 * copied once the writer pauses (again after each pause while a reader holds them). */
static bool catch_up_pending(const store_wal_checkpointer_t *c) {
    return c->wal_frames >= STORE_WAL_CHECKPOINT_PAGES && (c->wal_frames > c->checked_frames || c->copied_short);
}

/* Runs one checkpoint (mutex held; let go while it runs); 'idle': because the writer
 * paused. */
static void checkpoint_run(store_wal_checkpointer_t *c, bool idle) {
    c->checked_frames = c->wal_frames; /* a failed one too: the next waits for new frames */
    pthread_mutex_unlock(&c->mutex);
    int log_frames = 0, copied_frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &copied_frames);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"wal checkpoint failed\",\"detail\":\"%s\"}\n",
                sqlite3_errmsg(c->db));
    }
    pthread_mutex_lock(&c->mutex);
    c->copied_short = rc != SQLITE_OK || copied_frames < log_frames;
    c->runs++;
    if (idle) c->idle_runs++;
}

/* Waits STORE_WAL_CHECKPOINT_IDLE_MS (mutex held): true when no commit came meanwhile. */
static bool writer_paused(store_wal_checkpointer_t *c) {
    uint64_t commits = c->commits;
    struct timespec until = pc_realtime_after_ms(STORE_WAL_CHECKPOINT_IDLE_MS);
    int rc = 0;
    while (rc != ETIMEDOUT && c->commits == commits && !c->stopping) {
        rc = pthread_cond_timedwait(&c->wake, &c->mutex, &until);
    }
    return rc == ETIMEDOUT && c->commits == commits && !c->stopping;
}

static void *checkpointer_main(void *arg) {
    store_wal_checkpointer_t *c = arg;
    pthread_mutex_lock(&c->mutex);
    while (!c->stopping) {
        if (checkpoint_due(c)) {
            checkpoint_run(c, false);
        } else if (catch_up_pending(c)) {
            if (writer_paused(c)) checkpoint_run(c, true);
        } else {
            pthread_cond_wait(&c->wake, &c->mutex);
        }
    }
    pthread_mutex_unlock(&c->mutex);
    return NULL;
}

/* Called by SQLite on the writer's connection after each commit, with the WAL's
 * length in frames. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int wal_frames) {
    (void)db;
    (void)name;
    store_wal_checkpointer_t *c = arg;
    pthread_mutex_lock(&c->mutex);
    if (wal_frames < c->wal_frames) { /* restarted */
        c->checked_frames = 0;
        c->copied_short = false;
        c->restarts++;
    }
    c->wal_frames = wal_frames;
    c->commits++;
    if (checkpoint_due(c)) pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mutex);
    return SQLITE_OK;
}

store_wal_checkpointer_t *store_wal_checkpointer_start(const char *path, sqlite3 *writer_db) {
    store_wal_checkpointer_t *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    pthread_mutex_init(&c->mutex, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        store_sqlite_configure(c->db, false) != PC_OK ||
        pthread_create(&c->thread, NULL, checkpointer_main, c) != 0) {
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    pthread_setname_np(c->thread, "paycore-walckpt");
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=%lld",
             (long long)STORE_WAL_FILE_BYTES_MAX);
    sqlite3_exec(writer_db, sql, NULL, NULL, NULL);
    sqlite3_wal_hook(writer_db, wal_hook, c);
    return c;
}

store_wal_checkpoint_counts store_wal_checkpointer_counts(store_wal_checkpointer_t *c) {
    pthread_mutex_lock(&c->mutex);
    store_wal_checkpoint_counts counts = {.runs = c->runs, .idle_runs = c->idle_runs, .restarts = c->restarts};
    pthread_mutex_unlock(&c->mutex);
    return counts;
}

void store_wal_checkpointer_stop(store_wal_checkpointer_t *c, sqlite3 *writer_db) {
    if (c == NULL) return;
    sqlite3_wal_hook(writer_db, NULL, NULL);
    pthread_mutex_lock(&c->mutex);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mutex);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->mutex);
    free(c);
}
