/* store/sqlite_wal_checkpointer.c: WAL checkpoints (SQLite copying its write-ahead
 * log back into the database file; not the journal's signed checkpoints, nor the
 * balance snapshot) from their own thread and connection. SQLite's automatic WAL
 * checkpoint would run inside the writer's COMMIT (copy pages, fsync the main file)
 * and stall the batch that crossed the threshold; a PASSIVE one here never blocks
 * the writer or readers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/sqlite_internal.h"

struct store_wal_checkpointer {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int wal_pages;
    bool stopping;
};

static void *checkpointer_main(void *arg) {
    store_wal_checkpointer_t *c = arg;
    pthread_mutex_lock(&c->mutex);
    for (;;) {
        while (c->wal_pages < STORE_WAL_CHECKPOINT_PAGES && !c->stopping) pthread_cond_wait(&c->wake, &c->mutex);
        if (c->stopping) break;
        c->wal_pages = 0;
        pthread_mutex_unlock(&c->mutex);
        int log_pages = 0, checkpointed_pages = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages, &checkpointed_pages);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"wal checkpoint failed\",\"detail\":\"%s\"}\n",
                    sqlite3_errmsg(c->db));
        }
        pthread_mutex_lock(&c->mutex);
    }
    pthread_mutex_unlock(&c->mutex);
    return NULL;
}

/* Called by SQLite on the writer's connection after each commit. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int wal_pages) {
    (void)db;
    (void)name;
    store_wal_checkpointer_t *c = arg;
    pthread_mutex_lock(&c->mutex);
    c->wal_pages = wal_pages;
    if (wal_pages >= STORE_WAL_CHECKPOINT_PAGES) pthread_cond_signal(&c->wake);
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
    sqlite3_exec(writer_db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
    sqlite3_wal_hook(writer_db, wal_hook, c);
    return c;
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
