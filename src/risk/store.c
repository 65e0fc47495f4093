/* risk/store.c: every decision, feedback and review, in their own SQLite file
 * (WAL, synchronous=FULL), written by their own thread in batches. Why a separate
 * file and thread (src/risk/README.md): scoring runs before the ledger holds money
 * and must never wait for, or make wait, the ledger's single writer; the decisions
 * are durable once their batch commits (one fsync for up to RISK_STORE_BATCH_MAX).
 * A batch gathers for up to RISK_STORE_GATHER_MS after its first row (a flush or a
 * full batch commits at once): a decision per payment must not cost an fsync per
 * payment, which competes with the ledger's own commits for the disk. For the same
 * reason its WAL is copied into the file in small steps (RISK_STORE_CHECKPOINT_FRAMES):
 * the ledger's commit fsync queues behind whatever this file is flushing.
 * Callers queue copies; reads use a second connection (WAL readers never block). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/spares.h"
#include "risk/risk_internal.h"
#include "store/sqlite_vfs.h"

typedef enum { OP_DECISION, OP_FEEDBACK, OP_REVIEW, OP_META } op_kind;

typedef struct store_op {
    struct store_op *next;
    op_kind kind;
    risk_auth_t auth;
    uint64_t decision_id;
    int outcome;
    double score;
    char reasons[RISK_REASONS_MAX * RISK_REASON_BYTES_MAX];
    int feedback;
    int64_t at_s;
    risk_review_t review;
    char meta_key[32];
    uint64_t meta_value;
} store_op;

struct risk_store {
    sqlite3 *write_db;
    sqlite3 *read_db;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* the writer: work or stop */
    pthread_cond_t progress;   /* callers: committed moved or space freed */
    store_op *head, *tail;
    uint32_t queued;
    uint64_t enqueued_seq;
    uint64_t committed_seq;
    uint64_t failed_total;
    uint32_t flush_waiters;    /* a flush waits: commit without gathering */
    bool stopping;
    pc_spares_t spares;        /* written ops kept for reuse: at most RISK_STORE_SPARE_MAX */
    sqlite3_stmt *insert_decision, *update_feedback, *upsert_review, *upsert_meta;
};

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS risk_decisions(decision_id INTEGER PRIMARY KEY, txn_id INTEGER,"
    " ts_s INTEGER NOT NULL, payer_id TEXT NOT NULL, payee_id TEXT NOT NULL,"
    " amount_minor INTEGER NOT NULL, currency TEXT NOT NULL, mcc INTEGER NOT NULL,"
    " channel INTEGER NOT NULL, country_payer TEXT NOT NULL, country_merchant TEXT NOT NULL,"
    " device_id TEXT NOT NULL, ip_prefix TEXT NOT NULL, account_age_days INTEGER NOT NULL,"
    " outcome INTEGER NOT NULL, score REAL, reasons TEXT NOT NULL, feedback INTEGER,"
    " feedback_s INTEGER);"
    "CREATE TABLE IF NOT EXISTS risk_reviews(decision_id INTEGER PRIMARY KEY,"
    " state INTEGER NOT NULL, created_s INTEGER NOT NULL, decided_s INTEGER NOT NULL,"
    " decided_by TEXT NOT NULL, payer_id TEXT NOT NULL, amount_minor INTEGER NOT NULL,"
    " currency TEXT NOT NULL, score REAL);"
    "CREATE TABLE IF NOT EXISTS risk_meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

/* Columns added after the first files were written, at the end so that the positional
 * INSERT keeps its order. A row from before has NULL in them: no merchant owns it (only
 * an admin may give feedback on it) and it was in the shared feature state. */
static const char *const added_columns[][2] = {
    {"owner_id", "ALTER TABLE risk_decisions ADD COLUMN owner_id TEXT"}, /* merchant, NULL: none */
    {"scope", "ALTER TABLE risk_decisions ADD COLUMN scope INTEGER"},    /* risk_auth_t.scope */
};

static pc_status db_failed(sqlite3 *db, const char *what) {
    fprintf(stderr, "risk store: %s: %s (%d)\n", what, db ? sqlite3_errmsg(db) : "?",
            db ? sqlite3_extended_errcode(db) : 0);
    return PC_RISK_STORE_FAILED;
}

static bool has_column(sqlite3 *db, const char *column) {
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('risk_decisions')", -1, &st, NULL) != SQLITE_OK) {
        return false;
    }
    while (!found && sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(st, 0);
        found = name != NULL && strcmp((const char *)name, column) == 0;
    }
    sqlite3_finalize(st);
    return found;
}

static pc_status add_columns(sqlite3 *db) {
    for (size_t i = 0; i < sizeof added_columns / sizeof added_columns[0]; i++) {
        if (has_column(db, added_columns[i][0])) continue;
        if (sqlite3_exec(db, added_columns[i][1], NULL, NULL, NULL) != SQLITE_OK) {
            return db_failed(db, "add column");
        }
    }
    return PC_OK;
}

static pc_status open_db(const char *path, bool writer, sqlite3 **out) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, out, flags, writer ? store_sqlite_walbuf_vfs() : NULL) != SQLITE_OK) return db_failed(*out, "open");
    sqlite3_busy_timeout(*out, 5000);
    char pragmas[128] = "";
    if (writer) {
        snprintf(pragmas, sizeof pragmas, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=%d;",
                 RISK_STORE_CHECKPOINT_FRAMES);
    }
    if (sqlite3_exec(*out, pragmas, NULL, NULL, NULL) != SQLITE_OK) return db_failed(*out, "pragma");
    if (writer && sqlite3_exec(*out, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
        return db_failed(*out, "schema");
    }
    return writer ? add_columns(*out) : PC_OK;
}

static pc_status prepare(risk_store_t *s) {
    const char *sql[4] = {
        "INSERT OR REPLACE INTO risk_decisions VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,"
        "?14,?15,?16,?17,NULL,NULL,?18,?19)",
        "UPDATE risk_decisions SET feedback=?2, feedback_s=?3 WHERE decision_id=?1",
        "INSERT OR REPLACE INTO risk_reviews VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        "INSERT OR REPLACE INTO risk_meta VALUES(?1,?2)",
    };
    sqlite3_stmt **stmts[4] = {&s->insert_decision, &s->update_feedback, &s->upsert_review,
                               &s->upsert_meta};
    for (int i = 0; i < 4; i++) {
        if (sqlite3_prepare_v2(s->write_db, sql[i], -1, stmts[i], NULL) != SQLITE_OK) {
            return db_failed(s->write_db, "prepare");
        }
    }
    return PC_OK;
}

static void bind_decision(sqlite3_stmt *st, const store_op *op) {
    const risk_auth_t *a = &op->auth;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->decision_id);
    sqlite3_bind_int64(st, 2, a->txn_id);
    sqlite3_bind_int64(st, 3, a->ts_s);
    sqlite3_bind_text(st, 4, a->payer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, a->payee_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, a->amount_minor);
    sqlite3_bind_text(st, 7, a->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 8, a->mcc);
    sqlite3_bind_int(st, 9, (int)a->channel);
    sqlite3_bind_text(st, 10, a->country_payer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, a->country_merchant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, a->device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, a->ip_prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 14, a->account_age_days);
    sqlite3_bind_int(st, 15, op->outcome);
    if (op->score != op->score) sqlite3_bind_null(st, 16);
    else sqlite3_bind_double(st, 16, op->score);
    sqlite3_bind_text(st, 17, op->reasons, -1, SQLITE_STATIC);
    if (a->owner_id[0] != '\0') sqlite3_bind_text(st, 18, a->owner_id, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 18);
    sqlite3_bind_int64(st, 19, (sqlite3_int64)a->scope);
}

static void bind_review(sqlite3_stmt *st, const risk_review_t *r) {
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->decision_id);
    sqlite3_bind_int(st, 2, (int)r->state);
    sqlite3_bind_int64(st, 3, r->created_s);
    sqlite3_bind_int64(st, 4, r->decided_s);
    sqlite3_bind_text(st, 5, r->decided_by, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->payer_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r->amount_minor);
    sqlite3_bind_text(st, 8, r->currency, -1, SQLITE_STATIC);
    if (r->score != r->score) sqlite3_bind_null(st, 9);
    else sqlite3_bind_double(st, 9, r->score);
}

static bool apply_op(risk_store_t *s, const store_op *op) {
    sqlite3_stmt *st = NULL;
    switch (op->kind) {
    case OP_DECISION: st = s->insert_decision; bind_decision(st, op); break;
    case OP_FEEDBACK:
        st = s->update_feedback;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)op->decision_id);
        sqlite3_bind_int(st, 2, op->feedback);
        sqlite3_bind_int64(st, 3, op->at_s);
        break;
    case OP_REVIEW: st = s->upsert_review; bind_review(st, &op->review); break;
    case OP_META:
        st = s->upsert_meta;
        sqlite3_bind_text(st, 1, op->meta_key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)op->meta_value);
        break;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE;
}

/* One transaction for the whole batch; a failure fails the batch (logged, counted). */
static bool write_batch(risk_store_t *s, const store_op *batch) {
    if (sqlite3_exec(s->write_db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        (void)db_failed(s->write_db, "begin");
        return false;
    }
    bool ok = true;
    for (const store_op *op = batch; op != NULL && ok; op = op->next) ok = apply_op(s, op);
    if (ok && sqlite3_exec(s->write_db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) return true;
    (void)db_failed(s->write_db, "commit");
    sqlite3_exec(s->write_db, "ROLLBACK", NULL, NULL, NULL);
    return false;
}

static store_op *take_batch(risk_store_t *s, uint32_t *count_out) {
    store_op *batch = s->head, *last = NULL;
    uint32_t n = 0;
    for (store_op *op = s->head; op != NULL && n < RISK_STORE_BATCH_MAX; op = op->next) {
        last = op;
        n++;
    }
    s->head = last->next;
    if (s->head == NULL) s->tail = NULL;
    last->next = NULL;
    s->queued -= n;
    *count_out = n;
    return batch;
}

static void deadline_after_ms(struct timespec *ts, uint32_t ms);

/* Lets the batch grow for up to RISK_STORE_GATHER_MS (lock held): one commit for all. */
static void gather(risk_store_t *s) {
    struct timespec deadline;
    deadline_after_ms(&deadline, RISK_STORE_GATHER_MS);
    while (!s->stopping && s->flush_waiters == 0 && s->queued < RISK_STORE_BATCH_MAX) {
        if (pthread_cond_timedwait(&s->wake, &s->lock, &deadline) == ETIMEDOUT) break;
    }
}

/* Keeps written ops for reuse, up to RISK_STORE_SPARE_MAX; frees the rest. */
static void ops_give(risk_store_t *s, store_op *op) {
    while (op != NULL) {
        store_op *next = op->next;
        pc_spares_give(&s->spares, op);
        op = next;
    }
}

/* A zeroed op: a kept one, else a fresh one. */
static store_op *op_new(risk_store_t *s) { return pc_spares_take(&s->spares); }

static void *writer_main(void *arg) {
    risk_store_t *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->stopping) pthread_cond_wait(&s->wake, &s->lock);
        if (s->head == NULL && s->stopping) break;
        gather(s);
        uint32_t n = 0;
        store_op *batch = take_batch(s, &n);
        pthread_mutex_unlock(&s->lock);
        bool ok = write_batch(s, batch);
        pthread_mutex_lock(&s->lock);
        if (!ok) s->failed_total += n;
        s->committed_seq += n;
        pthread_cond_broadcast(&s->progress);
        pthread_mutex_unlock(&s->lock);
        ops_give(s, batch);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

pc_status risk_store_open(const char *path, risk_store_t **out) {
    *out = NULL;
    risk_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return PC_NO_MEMORY;
    pthread_mutex_init(&s->lock, NULL);
    pc_spares_init(&s->spares, sizeof(store_op), RISK_STORE_SPARE_MAX);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->progress, NULL);
    pc_status status = open_db(path, true, &s->write_db);
    if (status == PC_OK) status = open_db(path, false, &s->read_db);
    if (status == PC_OK) status = prepare(s);
    if (status == PC_OK && pthread_create(&s->thread, NULL, writer_main, s) != 0) {
        status = PC_INTERNAL;
    }
    if (status == PC_OK) pthread_setname_np(s->thread, "paycore-riskdb"); /* top, perf */
    if (status != PC_OK) {
        sqlite3_finalize(s->insert_decision);
        sqlite3_finalize(s->update_feedback);
        sqlite3_finalize(s->upsert_review);
        sqlite3_finalize(s->upsert_meta);
        sqlite3_close(s->write_db);
        sqlite3_close(s->read_db);
        pc_spares_destroy(&s->spares);
        free(s);
        return status == PC_INTERNAL ? status : PC_RISK_STORE_FAILED;
    }
    *out = s;
    return PC_OK;
}

void risk_store_close(risk_store_t *s) {
    if (s == NULL) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pc_spares_destroy(&s->spares);
    sqlite3_finalize(s->insert_decision);
    sqlite3_finalize(s->update_feedback);
    sqlite3_finalize(s->upsert_review);
    sqlite3_finalize(s->upsert_meta);
    sqlite3_close(s->write_db);
    sqlite3_close(s->read_db);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->progress);
    free(s);
}

static void deadline_after_ms(struct timespec *ts, uint32_t ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Takes ownership of 'op'. Waits a bounded time for room in the queue. */
static pc_status enqueue(risk_store_t *s, store_op *op) {
    struct timespec deadline;
    deadline_after_ms(&deadline, RISK_STORE_WAIT_MS_MAX);
    pthread_mutex_lock(&s->lock);
    while (s->queued >= RISK_STORE_QUEUE_MAX && !s->stopping) {
        if (pthread_cond_timedwait(&s->progress, &s->lock, &deadline) == ETIMEDOUT) break;
    }
    if (s->queued >= RISK_STORE_QUEUE_MAX || s->stopping) {
        s->failed_total++;
        pthread_mutex_unlock(&s->lock);
        free(op);
        return PC_LIMIT_REACHED;
    }
    op->next = NULL;
    bool idle = s->head == NULL; /* the writer may be asleep; while it gathers, no wake-up */
    if (s->tail != NULL) s->tail->next = op;
    else s->head = op;
    s->tail = op;
    s->queued++;
    s->enqueued_seq++;
    if (idle || s->queued == RISK_STORE_BATCH_MAX) pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return PC_OK;
}

static void join_reasons(const risk_decision_t *d, char *out, size_t out_bytes) {
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < d->reason_count; i++) {
        int n = snprintf(out + used, out_bytes - used, "%s%s", i ? "," : "", d->reasons[i].code);
        if (n < 0 || used + (size_t)n >= out_bytes) break;
        used += (size_t)n;
    }
}

pc_status risk_store_put_decision(risk_store_t *s, const risk_auth_t *auth,
                                  const risk_decision_t *decision) {
    store_op *op = op_new(s);
    if (op == NULL) return PC_NO_MEMORY;
    op->kind = OP_DECISION;
    op->auth = *auth;
    op->decision_id = decision->decision_id;
    op->outcome = (int)decision->outcome;
    op->score = decision->score;
    join_reasons(decision, op->reasons, sizeof(op->reasons));
    return enqueue(s, op);
}

pc_status risk_store_put_feedback(risk_store_t *s, uint64_t decision_id, bool is_fraud,
                                  int64_t at_s) {
    store_op *op = op_new(s);
    if (op == NULL) return PC_NO_MEMORY;
    op->kind = OP_FEEDBACK;
    op->decision_id = decision_id;
    op->feedback = is_fraud ? 1 : 0;
    op->at_s = at_s;
    return enqueue(s, op);
}

pc_status risk_store_put_review(risk_store_t *s, const risk_review_t *review) {
    store_op *op = op_new(s);
    if (op == NULL) return PC_NO_MEMORY;
    op->kind = OP_REVIEW;
    op->review = *review;
    return enqueue(s, op);
}

pc_status risk_store_meta_set(risk_store_t *s, const char *key, uint64_t value) {
    store_op *op = op_new(s);
    if (op == NULL) return PC_NO_MEMORY;
    op->kind = OP_META;
    snprintf(op->meta_key, sizeof(op->meta_key), "%s", key);
    op->meta_value = value;
    return enqueue(s, op);
}

pc_status risk_store_flush(risk_store_t *s) {
    pthread_mutex_lock(&s->lock);
    uint64_t target = s->enqueued_seq;
    uint64_t failed_before = s->failed_total;
    s->flush_waiters++;
    pthread_cond_signal(&s->wake);
    while (s->committed_seq < target) pthread_cond_wait(&s->progress, &s->lock);
    s->flush_waiters--;
    bool ok = s->failed_total == failed_before;
    pthread_mutex_unlock(&s->lock);
    return ok ? PC_OK : PC_RISK_STORE_FAILED;
}

uint64_t risk_store_failed_total(const risk_store_t *s) {
    pthread_mutex_lock((pthread_mutex_t *)&s->lock);
    uint64_t v = s->failed_total;
    pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
    return v;
}

/* ---------------------------------------------------------------- reads */

static pc_status query_u64(sqlite3 *db, const char *sql, const char *text_arg, uint64_t *out) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_failed(db, "prepare");
    if (text_arg != NULL) sqlite3_bind_text(st, 1, text_arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    pc_status status = PC_OK;
    if (rc == SQLITE_ROW) *out = (uint64_t)sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE) status = PC_NOT_FOUND;
    else status = db_failed(db, "query");
    sqlite3_finalize(st);
    return status;
}

pc_status risk_store_max_decision_id(risk_store_t *s, uint64_t *out) {
    *out = 0;
    return query_u64(s->read_db, "SELECT COALESCE(MAX(decision_id), 0) FROM risk_decisions", NULL,
                     out);
}

pc_status risk_store_meta_get(risk_store_t *s, const char *key, uint64_t *out) {
    return query_u64(s->read_db, "SELECT value FROM risk_meta WHERE key=?1", key, out);
}

pc_status risk_store_decision_exists(risk_store_t *s, uint64_t decision_id, bool *exists_out) {
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT 1 FROM risk_decisions WHERE decision_id=%llu",
             (unsigned long long)decision_id);
    uint64_t one = 0;
    pc_status status = query_u64(s->read_db, sql, NULL, &one);
    *exists_out = status == PC_OK;
    return status == PC_NOT_FOUND ? PC_OK : status;
}

static void copy_text(char *dst, size_t dst_bytes, const unsigned char *src) {
    snprintf(dst, dst_bytes, "%s", src ? (const char *)src : "");
}

pc_status risk_store_decision_owner(risk_store_t *s, uint64_t decision_id, char *owner_out,
                                    size_t owner_bytes) {
    owner_out[0] = '\0';
    sqlite3_stmt *st = NULL;
    const char *sql = "SELECT owner_id FROM risk_decisions WHERE decision_id=?1";
    if (sqlite3_prepare_v2(s->read_db, sql, -1, &st, NULL) != SQLITE_OK) return db_failed(s->read_db, "prepare");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)decision_id);
    int rc = sqlite3_step(st);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : db_failed(s->read_db, "query");
    if (rc == SQLITE_ROW) copy_text(owner_out, owner_bytes, sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return status;
}

static void row_auth(sqlite3_stmt *st, risk_auth_t *a) {
    memset(a, 0, sizeof(*a));
    a->is_fraud = -1;
    a->txn_id = sqlite3_column_int64(st, 0);
    a->ts_s = sqlite3_column_int64(st, 1);
    copy_text(a->payer_id, sizeof(a->payer_id), sqlite3_column_text(st, 2));
    copy_text(a->payee_id, sizeof(a->payee_id), sqlite3_column_text(st, 3));
    a->amount_minor = sqlite3_column_int64(st, 4);
    copy_text(a->currency, sizeof(a->currency), sqlite3_column_text(st, 5));
    a->mcc = (uint16_t)sqlite3_column_int(st, 6);
    a->channel = (risk_channel)sqlite3_column_int(st, 7);
    copy_text(a->country_payer, sizeof(a->country_payer), sqlite3_column_text(st, 8));
    copy_text(a->country_merchant, sizeof(a->country_merchant), sqlite3_column_text(st, 9));
    copy_text(a->device_id, sizeof(a->device_id), sqlite3_column_text(st, 10));
    copy_text(a->ip_prefix, sizeof(a->ip_prefix), sqlite3_column_text(st, 11));
    a->account_age_days = sqlite3_column_int(st, 12);
    a->scope = (uint64_t)sqlite3_column_int64(st, 13); /* NULL (an older row): 0, shared */
}

pc_status risk_store_each_auth(risk_store_t *s, uint64_t after_id,
                               void (*fn)(const risk_auth_t *auth, void *ctx), void *ctx) {
    const char *sql = "SELECT txn_id, ts_s, payer_id, payee_id, amount_minor, currency, mcc,"
                      " channel, country_payer, country_merchant, device_id, ip_prefix,"
                      " account_age_days, scope FROM risk_decisions WHERE decision_id > ?1"
                      " ORDER BY decision_id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->read_db, sql, -1, &st, NULL) != SQLITE_OK) {
        return db_failed(s->read_db, "prepare");
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        risk_auth_t a;
        row_auth(st, &a);
        fn(&a, ctx);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PC_OK : db_failed(s->read_db, "scan");
}

pc_status risk_store_each_review(risk_store_t *s,
                                 void (*fn)(const risk_review_t *review, void *ctx), void *ctx) {
    const char *sql = "SELECT decision_id, state, created_s, decided_s, decided_by, payer_id,"
                      " amount_minor, currency, score FROM risk_reviews ORDER BY decision_id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->read_db, sql, -1, &st, NULL) != SQLITE_OK) {
        return db_failed(s->read_db, "prepare");
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        risk_review_t r;
        memset(&r, 0, sizeof(r));
        r.decision_id = (uint64_t)sqlite3_column_int64(st, 0);
        r.state = (risk_review_state)sqlite3_column_int(st, 1);
        r.created_s = sqlite3_column_int64(st, 2);
        r.decided_s = sqlite3_column_int64(st, 3);
        copy_text(r.decided_by, sizeof(r.decided_by), sqlite3_column_text(st, 4));
        copy_text(r.payer_id, sizeof(r.payer_id), sqlite3_column_text(st, 5));
        r.amount_minor = sqlite3_column_int64(st, 6);
        copy_text(r.currency, sizeof(r.currency), sqlite3_column_text(st, 7));
        r.score = sqlite3_column_type(st, 8) == SQLITE_NULL ? (float)NAN
                                                             : (float)sqlite3_column_double(st, 8);
        fn(&r, ctx);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PC_OK : db_failed(s->read_db, "scan");
}
