/* store/sqlite_store.c: the SQLite backend's writer side: open (file checks, the
 * writer's lock, kind and version checks, migrations), load into the ledger, and
 * the ledger's lookups of committed transfers. Batches are written by sqlite_tx.c.
 * WAL with synchronous=FULL: COMMIT returns after fsync, so a batch is durable
 * before any of its requests is answered. Writer thread only.
 *
 * Account balances in the file are a balance snapshot as of
 * meta.accounts_as_of_seq, written every STORE_BALANCE_SNAPSHOT_BATCHES batches and
 * at a clean stop; at load the transfers after it are replayed. That keeps ~16k
 * random row updates out of every batch.
 *
 * Start-up reads tell "missing" from "error" everywhere: a value that cannot be read
 * stops the start with the reason, never becomes a default. */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "store/sqlite_internal.h"
#include "store/sqlite_pcache.h"

static const char *const statement_sql[STMT_COUNT] = {
    [STMT_ACCOUNT_INSERT] =
        "INSERT INTO accounts(no, id, currency, code, flags, debits_pending, debits_posted,"
        " credits_pending, credits_posted, timestamp, metadata, batch_seq, row_hash)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [STMT_ACCOUNT_UPDATE] =
        "UPDATE accounts SET debits_pending=?, debits_posted=?, credits_pending=?,"
        " credits_posted=? WHERE no=?",
    [STMT_FAILURE_INSERT] =
        "INSERT INTO transfer_failures(id, result, timestamp, batch_seq, row_hash) VALUES(?,?,?,?,?)",
    [STMT_HISTORY_INSERT] =
        "INSERT INTO balance_history(account_id, timestamp, transfer_id, debits_pending,"
        " debits_posted, credits_pending, credits_posted) VALUES(?,?,?,?,?,?,?)",
    [STMT_JOURNAL_INSERT] =
        "INSERT INTO journal(seq, timestamp_first, timestamp_last, account_count, transfer_count,"
        " failure_count, content_hash, prev_hash, hash, committed_ns) VALUES(?,?,?,?,?,?,?,?,?,?)",
    [STMT_JOURNAL_CHECKPOINT_INSERT] =
        "INSERT INTO journal_checkpoints(seq, hash, public_key, signature) VALUES(?,?,?,?)",
    [STMT_TRANSFER_FIND] =
        "SELECT timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags,"
        " pending_id, timeout_s, metadata, pending_state FROM transfers WHERE timestamp=?",
    [STMT_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
    [STMT_FAILURE_FIND] = "SELECT result, timestamp FROM transfer_failures WHERE id=?",
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
};

pc_status store_sqlite_fail(sqlite_store_t *store, pc_status status, const char *what) {
    snprintf(store->error_detail, sizeof(store->error_detail), "%s: %s (sqlite %d)", what,
             store->db ? sqlite3_errmsg(store->db) : "no connection",
             store->db ? sqlite3_extended_errcode(store->db) : 0);
    return status;
}

/* The same, with the code a read error of this connection deserves: a damaged file
 * is told from an I/O error. */
static pc_status read_fail(sqlite_store_t *store, const char *what) {
    int primary = store->db ? sqlite3_errcode(store->db) & 0xff : SQLITE_ERROR;
    pc_status status = primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB ? PC_STORE_CORRUPT
                                                                              : PC_STORE_READ_FAILED;
    return store_sqlite_fail(store, status, what);
}

static const char *sqlite_error_detail(const store_t *base) { return ((const sqlite_store_t *)base)->error_detail; }
static const char *sqlite_location(const store_t *base) { return ((const sqlite_store_t *)base)->path; }
static uint64_t sqlite_journal_head_seq(const store_t *base) {
    return ((const sqlite_store_t *)base)->journal_head_seq;
}
static pc_status sqlite_failed(const store_t *base) { return ((const sqlite_store_t *)base)->failed; }
static bool sqlite_writable(const store_t *base) {
    const sqlite_store_t *store = (const sqlite_store_t *)base;
    return store->failed == PC_OK && store->writable;
}

store_index_t *store_sqlite_index(sqlite_store_t *store) { return store->index; }
store_shadow_t *store_sqlite_shadow(sqlite_store_t *store) { return store->shadow; }

/* One integer from 'sql': PC_OK with *value, PC_NOT_FOUND without a row, or an error. */
static pc_status query_int(sqlite_store_t *store, const char *sql, const char *key, int64_t *value) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) return read_fail(store, sql);
    if (key != NULL) sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = PC_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(stmt, 0);
        status = PC_OK;
    } else if (rc != SQLITE_DONE) {
        status = read_fail(store, sql);
    }
    sqlite3_finalize(stmt);
    return status;
}

/* Connection settings shared by the writer and readers. */
pc_status store_sqlite_configure(sqlite3 *db, bool synchronous_off) {
    char sql[256];
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA busy_timeout=10000;"
             " PRAGMA cache_size=-131072; PRAGMA temp_store=MEMORY;",
             synchronous_off ? "OFF" : "FULL");
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? PC_OK : PC_STORE_OPEN_FAILED;
}

/* ---- open ---- */

/* The file as it is before SQLite touches it: missing, foreign or cut short. */
static pc_status file_check(sqlite_store_t *store) {
    char detail[sizeof(store->error_detail)] = "";
    store_file_kind kind = store_sqlite_file_kind(store->path, detail, sizeof(detail));
    char wal_path[PC_PATH_BYTES_MAX];
    snprintf(wal_path, sizeof(wal_path), "%s-wal", store->path);
    switch (kind) {
    case STORE_FILE_MISSING:
        if (store->options.create) return PC_OK;
        snprintf(store->error_detail, sizeof(store->error_detail), "%s: no such database (run paycore init)",
                 store->path);
        return PC_STORE_OPEN_FAILED;
    case STORE_FILE_UNREADABLE:
        snprintf(store->error_detail, sizeof(store->error_detail), "%s", detail);
        return PC_STORE_OPEN_FAILED;
    case STORE_FILE_FOREIGN:
        snprintf(store->error_detail, sizeof(store->error_detail), "%s", detail);
        return PC_STORE_NOT_PAYCORE;
    case STORE_FILE_TRUNCATED:
        /* With a WAL beside it SQLite may still complete the file from the log. */
        if (access(wal_path, F_OK) == 0) return PC_OK;
        snprintf(store->error_detail, sizeof(store->error_detail), "%s", detail);
        return PC_STORE_CORRUPT;
    case STORE_FILE_EMPTY:
    case STORE_FILE_PAYCORE:
        return PC_OK;
    }
    return PC_INTERNAL;
}

/* The writer needs the file and its directory writable (-wal, -shm, lock file). */
static pc_status writable_check(sqlite_store_t *store) {
    char dir[PC_PATH_BYTES_MAX];
    snprintf(dir, sizeof(dir), "%s", store->path);
    const char *dir_name = dirname(dir);
    if (access(dir_name, W_OK | X_OK) != 0) {
        snprintf(store->error_detail, sizeof(store->error_detail), "directory %s is not writable: %s", dir_name,
                 strerror(errno));
        return errno == ENOENT ? PC_STORE_OPEN_FAILED : PC_STORE_READ_ONLY;
    }
    if (access(store->path, F_OK) == 0 && access(store->path, W_OK) != 0) {
        snprintf(store->error_detail, sizeof(store->error_detail), "%s is not writable: %s", store->path,
                 strerror(errno));
        return PC_STORE_READ_ONLY;
    }
    return PC_OK;
}

/* A header SQLite cannot read: a damaged paycore file (the header check above
 * passed) or, for a file of unknown kind, some other file. */
static pc_status header_read_failed(sqlite_store_t *store, const char *what) {
    int primary = sqlite3_errcode(store->db) & 0xff;
    pc_status status = primary == SQLITE_NOTADB ? PC_STORE_NOT_PAYCORE
                       : primary == SQLITE_CORRUPT ? PC_STORE_CORRUPT
                                                   : PC_STORE_READ_FAILED;
    return store_sqlite_fail(store, status, what);
}

/* A new file becomes a paycore database; an existing one must already be one. */
static pc_status schema_check_or_create(sqlite_store_t *store) {
    int64_t application_id = 0, user_version = 0, table_count = 0;
    if (query_int(store, "PRAGMA application_id", NULL, &application_id) != PC_OK ||
        query_int(store, "PRAGMA user_version", NULL, &user_version) != PC_OK ||
        query_int(store, "SELECT count(*) FROM sqlite_master", NULL, &table_count) != PC_OK) {
        return header_read_failed(store, "reading the database header");
    }
    bool empty = application_id == 0 && user_version == 0 && table_count == 0;
    if (!empty && application_id != store_sqlite_application_id()) {
        snprintf(store->error_detail, sizeof(store->error_detail),
                 "%s: application_id %lld is not paycore's", store->path, (long long)application_id);
        return PC_STORE_NOT_PAYCORE;
    }
    if (user_version > store_sqlite_schema_version_latest()) {
        snprintf(store->error_detail, sizeof(store->error_detail),
                 "%s: schema version %lld is newer than this paycore (%d)", store->path, (long long)user_version,
                 store_sqlite_schema_version_latest());
        return PC_STORE_VERSION_UNSUPPORTED;
    }
    if (empty && !store->options.create) {
        snprintf(store->error_detail, sizeof(store->error_detail),
                 "%s: not initialised (run paycore init)", store->path);
        return PC_STORE_NOT_PAYCORE;
    }
    return PC_OK; /* migrations run next, when the version is older */
}

static pc_status schema_migrate(sqlite_store_t *store) {
    int64_t user_version = 0;
    if (query_int(store, "PRAGMA user_version", NULL, &user_version) != PC_OK) {
        return read_fail(store, "reading user_version");
    }
    if (user_version == store_sqlite_schema_version_latest()) return PC_OK;
    char *error = NULL;
    char sql[128];
    snprintf(sql, sizeof(sql), "PRAGMA application_id=%d; PRAGMA user_version=%d;",
             store_sqlite_application_id(), store_sqlite_schema_version_latest());
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        store_sqlite_migrate(store->db, (int)user_version, &error) != SQLITE_OK ||
        sqlite3_exec(store->db, sql, NULL, NULL, &error) != SQLITE_OK ||
        sqlite3_exec(store->db, "INSERT OR REPLACE INTO meta VALUES('format','paycore');"
                     "INSERT OR IGNORE INTO meta VALUES('instance_id', abs(random()) | 1);"
                     "INSERT OR IGNORE INTO meta VALUES('accounts_as_of_seq', 0);", NULL, NULL, &error) != SQLITE_OK ||
        sqlite3_exec(store->db, "COMMIT", NULL, NULL, &error) != SQLITE_OK) {
        snprintf(store->error_detail, sizeof(store->error_detail), "migration: %s", error ? error : "?");
        sqlite3_free(error);
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return PC_STORE_OPEN_FAILED;
    }
    if (user_version > 0) {
        fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"database migrated\",\"from\":%lld,\"to\":%d}\n",
                (long long)user_version, store_sqlite_schema_version_latest());
    }
    return PC_OK;
}

static pc_status statements_prepare(sqlite_store_t *store) {
    for (int i = 0; i < STMT_COUNT; i++) {
        if (sqlite3_prepare_v3(store->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &store->statements[i], NULL) != SQLITE_OK) {
            return store_sqlite_fail(store, PC_STORE_OPEN_FAILED, statement_sql[i]);
        }
    }
    return PC_OK;
}

/* A meta value that must be there: a non-negative integer written as text. Missing
 * or malformed is a damaged file; unreadable is a read error. */
static pc_status meta_required(sqlite_store_t *store, const char *key, int64_t *value) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db, "SELECT value FROM meta WHERE key=?", -1, &stmt, NULL) != SQLITE_OK) {
        return read_fail(store, "meta");
    }
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = PC_OK;
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(stmt, 0);
        char *end = NULL;
        errno = 0;
        long long parsed = text != NULL ? strtoll(text, &end, 10) : -1;
        if (text == NULL || end == text || *end != '\0' || errno != 0 || parsed < 0) {
            snprintf(store->error_detail, sizeof(store->error_detail), "meta %s is not a count: '%s'", key,
                     text ? text : "NULL");
            status = PC_STORE_CORRUPT;
        }
        *value = parsed;
    } else if (rc == SQLITE_DONE) {
        snprintf(store->error_detail, sizeof(store->error_detail), "meta %s is missing", key);
        status = PC_STORE_CORRUPT;
    } else {
        status = read_fail(store, "meta");
    }
    sqlite3_finalize(stmt);
    return status;
}

static pc_status meta_load(sqlite_store_t *store) {
    int64_t as_of = 0;
    pc_status status = meta_required(store, "instance_id", &store->instance_id);
    if (status == PC_OK) status = meta_required(store, "accounts_as_of_seq", &as_of);
    store->accounts_as_of_seq = (uint64_t)as_of;
    return status;
}

/* ---- the id hash key: <db>.idkey ---- */

#define ID_KEY_REPLACE                                                                         \
    "restore this database's own key file (mode 0600); if it is lost, remove this file and run" \
    " paycore init --db (a new key; the id index is then rebuilt)"

static pc_status id_key_refuse(sqlite_store_t *store, const char *path, const char *why, const char *remedy) {
    snprintf(store->error_detail, sizeof store->error_detail, "%s: %s; %s", path, why, remedy);
    return PC_STORE_ID_KEY_INVALID;
}

static pc_status id_key_record(sqlite_store_t *store, const pc_hash_key_t *key) {
    sqlite3_stmt *stmt = store->statements[STMT_META_SET];
    sqlite3_bind_text(stmt, 1, "id_key_check", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, store_index_key_check(key));
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? PC_OK : store_sqlite_fail(store, PC_STORE_OPEN_FAILED, "id key fingerprint");
}

/* At init, or for a database that never had a key (created before ids were keyed). */
static pc_status id_key_create(sqlite_store_t *store, const char *path, pc_hash_key_t *key) {
    pc_hash_key_random(key);
    if (pc_key_file_write(path, key->bytes, sizeof key->bytes, 0600) != PC_OK) {
        snprintf(store->error_detail, sizeof store->error_detail, "%s: cannot write the id key", path);
        return PC_IO;
    }
    return id_key_record(store, key);
}

/* Loads the secret key ids are hashed with (sqlite_index.c) into store->id_key.
 * meta.id_key_check says the database has one: then a missing or foreign key file
 * refuses the start (it is never silently replaced), unless this is init
 * (options.create). */
static pc_status id_key_load(sqlite_store_t *store) {
    char path[PC_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "%s.idkey", store->path);
    int64_t expected = 0;
    pc_status status = query_int(store, "SELECT value FROM meta WHERE key=?", "id_key_check", &expected);
    if (status != PC_OK && status != PC_NOT_FOUND) return status;
    pc_hash_key_t *key = &store->id_key;
    status = pc_key_file_read(path, true, key->bytes, sizeof key->bytes);
    if (status == PC_OK && expected != 0 && store_index_key_check(key) != expected) {
        return id_key_refuse(store, path, "the id key belongs to another database", ID_KEY_REPLACE);
    }
    if (status == PC_OK && expected != 0) return PC_OK;
    if (status == PC_OK) return id_key_record(store, key); /* written before a crash, not yet recorded */
    if (status != PC_NOT_FOUND) {
        return id_key_refuse(store, path, "the id key file is malformed or readable by others", ID_KEY_REPLACE);
    }
    if (expected != 0 && !store->options.create) {
        return id_key_refuse(store, path, "the id key is missing",
                             "restore it from this database's backup; if it is lost, paycore init --db makes a new"
                             " one (the id index is then rebuilt)");
    }
    return id_key_create(store, path, key);
}

static pc_status memory_init(sqlite_store_t *store) {
    store->shadow = store_shadow_new();
    if (store->shadow == NULL) return PC_NO_MEMORY;
    return store_dirty_init(&store->dirty);
}

/* Files SQLite made beside the database take its mode; older files are tightened. */
static void modes_tighten(const sqlite_store_t *store) {
    static const char *const suffixes[] = {"", "-wal", "-shm", "-index", "-index-wal", "-index-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char path[PC_PATH_BYTES_MAX];
        snprintf(path, sizeof(path), "%s%s", store->path, suffixes[i]);
        (void)store_sqlite_mode_tighten(path);
    }
}

static pc_status sqlite_open(sqlite_store_t *store) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (store->options.create ? SQLITE_OPEN_CREATE : 0);
    const char *vfs = store->options.fault_vfs ? store_sqlite_walbuf_fault_vfs() : store_sqlite_walbuf_vfs();
    if (sqlite3_open_v2(store->path, &store->db, flags, vfs) != SQLITE_OK) {
        return store_sqlite_fail(store, PC_STORE_OPEN_FAILED, "open");
    }
    sqlite3_extended_result_codes(store->db, 1);
    modes_tighten(store);
    if (sqlite3_db_readonly(store->db, "main") == 1) {
        snprintf(store->error_detail, sizeof(store->error_detail), "%s opened read-only", store->path);
        return PC_STORE_READ_ONLY;
    }
    return PC_OK;
}

static pc_status store_open_steps(sqlite_store_t *store) {
    pc_status status = file_check(store);
    if (status == PC_OK) status = writable_check(store);
    if (status == PC_OK) {
        status = store_sqlite_lock_take(store->path, &store->lock_fd, store->error_detail,
                                        sizeof(store->error_detail));
    }
    if (status == PC_OK) status = sqlite_open(store);
    if (status == PC_OK) status = schema_check_or_create(store);
    if (status == PC_OK && store_sqlite_configure(store->db, store->options.synchronous_off) != PC_OK) {
        status = header_read_failed(store, "configure");
    }
    if (status == PC_OK) status = schema_migrate(store);
    if (status == PC_OK) status = statements_prepare(store);
    if (status == PC_OK) status = meta_load(store);
    if (status == PC_OK) status = id_key_load(store);
    if (status == PC_OK) status = memory_init(store);
    if (status == PC_OK) status = store_sqlite_idem_rows_open(store);
    if (status != PC_OK) return status;
    store->wal_checkpointer = store_wal_checkpointer_start(store->path, store->db);
    if (store->wal_checkpointer == NULL) return store_sqlite_fail(store, PC_STORE_OPEN_FAILED, "wal checkpointer");
    store->writable = true;
    return PC_OK;
}

static pthread_once_t sqlite_config_once = PTHREAD_ONCE_INIT;

/* Before SQLite starts: no global memory statistics (a mutex on every malloc); the
 * page cache that keeps a COMMIT from visiting every cached page (sqlite_pcache.c). */
static void sqlite_config(void) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)store_sqlite_pcache_install();
}

static void sqlite_close(store_t *base);

static pc_status sqlite_store_open(store_t **out, const char *path, const store_options_t *options) {
    pthread_once(&sqlite_config_once, sqlite_config);
    sqlite_store_t *store = calloc(1, sizeof(*store));
    if (store == NULL) return PC_NO_MEMORY;
    store->base.ops = &store_sqlite_ops;
    store->lock_fd = -1;
    store->path = pc_strdup(path);
    if (options != NULL) store->options = *options;
    pc_status status = store->path ? store_open_steps(store) : PC_NO_MEMORY;
    if (status != PC_OK) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"store open failed\",\"code\":\"%s\",\"detail\":\"%s\"}\n",
                pc_status_code(status), store->error_detail);
        sqlite_close(&store->base);
        return status;
    }
    *out = &store->base;
    return PC_OK;
}

static void sqlite_close(store_t *base) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    if (store == NULL) return;
    store_wal_checkpointer_stop(store->wal_checkpointer, store->db);
    if (store->index_reader != NULL) sqlite3_close(store->index_reader);
    store_index_close(store->index); /* flushes what is left */
    sodium_memzero(&store->id_key, sizeof store->id_key);
    store_shadow_free(store->shadow);
    store_idem_rows_free(store->idem_rows);
    store_dirty_free(&store->dirty);
    store_sqlite_rows_free(store->pay_versions);
    store_sqlite_pay_rows_free(store);
    store_sqlite_rows_free(store->transfer_rows);
    store_sqlite_rows_free(store->vault_cards);
    store_sqlite_rows_free(store->idem_replies);
    store_sqlite_event_spans_free(store);
    for (int i = 0; i < STMT_COUNT; i++) sqlite3_finalize(store->statements[i]);
    for (int i = 0; i < STORE_SQLITE_PENDING_UPDATE_ROWS_MAX; i++) sqlite3_finalize(store->pending_updates[i]);
    store_sqlite_stmt_cache_free(store->stmt_cache);
    if (store->db != NULL) sqlite3_close(store->db);
    store_sqlite_lock_release(store->path, store->lock_fd); /* after the last connection */
    free(store->metadata_scratch);
    free(store->path);
    free(store);
}

static pc_status sqlite_journal_signer(store_t *base, uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES]) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db, "SELECT public_key FROM journal_checkpoints ORDER BY seq DESC LIMIT 1", -1,
                           &stmt, NULL) != SQLITE_OK) {
        return read_fail(store, "journal signer");
    }
    int rc = sqlite3_step(stmt);
    pc_status status = PC_NOT_FOUND;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(stmt, 0) == JOURNAL_PUBLIC_KEY_BYTES) {
        memcpy(public_key, sqlite3_column_blob(stmt, 0), JOURNAL_PUBLIC_KEY_BYTES);
        status = PC_OK;
    } else if (rc == SQLITE_ROW) {
        snprintf(store->error_detail, sizeof(store->error_detail), "journal checkpoint: malformed public key");
        status = PC_STORE_CORRUPT;
    } else if (rc != SQLITE_DONE) {
        status = read_fail(store, "journal signer");
    }
    sqlite3_finalize(stmt);
    return status;
}

/* ---- lookups: by id through the index, then the row by timestamp ---- */

void store_sqlite_text_copy(char *dst, size_t dst_size, sqlite3_stmt *stmt, int column) {
    const unsigned char *text = sqlite3_column_text(stmt, column);
    snprintf(dst, dst_size, "%s", text ? (const char *)text : "");
}

void store_sqlite_account_from_row(sqlite3_stmt *stmt, ledger_account_t *a) {
    memset(a, 0, sizeof(*a));
    store_sqlite_text_copy(a->id, sizeof(a->id), stmt, 0);
    store_sqlite_text_copy(a->currency, sizeof(a->currency), stmt, 1);
    a->code = (uint16_t)sqlite3_column_int(stmt, 2);
    a->flags = (uint16_t)sqlite3_column_int(stmt, 3);
    a->balances.debits_pending = sqlite3_column_int64(stmt, 4);
    a->balances.debits_posted = sqlite3_column_int64(stmt, 5);
    a->balances.credits_pending = sqlite3_column_int64(stmt, 6);
    a->balances.credits_posted = sqlite3_column_int64(stmt, 7);
    a->timestamp_ns = (uint64_t)sqlite3_column_int64(stmt, 8);
    a->metadata_json = (const char *)sqlite3_column_text(stmt, 9);
}

void store_sqlite_transfer_from_row(sqlite3_stmt *stmt, ledger_transfer_t *t) {
    memset(t, 0, sizeof(*t));
    t->timestamp_ns = (uint64_t)sqlite3_column_int64(stmt, 0);
    store_sqlite_text_copy(t->id, sizeof(t->id), stmt, 1);
    store_sqlite_text_copy(t->debit_account_id, sizeof(t->debit_account_id), stmt, 2);
    store_sqlite_text_copy(t->credit_account_id, sizeof(t->credit_account_id), stmt, 3);
    t->amount = sqlite3_column_int64(stmt, 4);
    store_sqlite_text_copy(t->currency, sizeof(t->currency), stmt, 5);
    t->code = (uint16_t)sqlite3_column_int(stmt, 6);
    t->flags = (uint16_t)sqlite3_column_int(stmt, 7);
    store_sqlite_text_copy(t->pending_id, sizeof(t->pending_id), stmt, 8);
    t->timeout_s = (uint32_t)sqlite3_column_int64(stmt, 9);
    t->metadata_json = (const char *)sqlite3_column_text(stmt, 10);
}

/* Reads the transfer row at 'ts' when its id is 'id'. */
static pc_status transfer_at(sqlite_store_t *store, uint64_t ts, const char *id, ledger_transfer_record_t *out) {
    if (store_sqlite_transfer_rows_flush(store) != PC_OK) return PC_STORE_READ_FAILED; /* rows of this batch */
    sqlite3_stmt *stmt = store->statements[STMT_TRANSFER_FIND];
    sqlite3_bind_int64(stmt, 1, (int64_t)ts);
    int rc = sqlite3_step(stmt);
    pc_status status = PC_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        const char *row_id = (const char *)sqlite3_column_text(stmt, 1);
        if (row_id != NULL && strcmp(row_id, id) == 0) {
            memset(out, 0, sizeof(*out));
            store_sqlite_transfer_from_row(stmt, &out->transfer);
            free(store->metadata_scratch);
            store->metadata_scratch = pc_strdup(out->transfer.metadata_json);
            out->transfer.metadata_json = store->metadata_scratch;
            out->pending_state = (ledger_pending_state)sqlite3_column_int(stmt, 11);
            out->failure = PC_OK;
            status = PC_OK;
        }
    } else if (rc != SQLITE_DONE) {
        status = store_sqlite_fail(store, PC_STORE_READ_FAILED, "read transfer");
    }
    sqlite3_reset(stmt);
    return status;
}

static pc_status failure_find(sqlite_store_t *store, const char *id, ledger_transfer_record_t *out) {
    sqlite3_stmt *stmt = store->statements[STMT_FAILURE_FIND];
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = PC_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        const char *code = (const char *)sqlite3_column_text(stmt, 0);
        if (code == NULL || !pc_status_from_code(code, &out->failure)) out->failure = PC_INTERNAL;
        status = PC_OK;
    } else if (rc != SQLITE_DONE) {
        status = store_sqlite_fail(store, PC_STORE_READ_FAILED, "find failure");
    }
    sqlite3_reset(stmt);
    return status;
}

typedef struct {
    sqlite_store_t *store;
    const char *id;
    ledger_transfer_record_t *out;
} transfer_find_t;

static pc_status transfer_candidate(void *ctx, uint64_t ts) {
    transfer_find_t *find = ctx;
    return transfer_at(find->store, ts, find->id, find->out);
}

/* The ledger's lookup. A bloom-filter miss answers "new id" without I/O. */
static pc_status source_transfer_find(void *ctx, const char *id, ledger_transfer_record_t *out) {
    sqlite_store_t *store = ctx;
    uint64_t key = store_index_key(store->index, id);
    if (!store_index_bloom_maybe(store->index, key)) return PC_NOT_FOUND;
    transfer_find_t find = {store, id, out};
    pc_status status = store_index_find(store->index, store->index_reader, key, transfer_candidate, &find);
    if (status == PC_NOT_FOUND) return failure_find(store, id, out);
    return status == PC_OK ? PC_OK : store_sqlite_fail(store, status, "transfer lookup");
}

static ledger_source_t sqlite_source(store_t *base) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    return (ledger_source_t){source_transfer_find, store};
}

/* ---- load ---- */

static pc_status index_open(sqlite_store_t *store) {
    int64_t last_ts = 0;
    pc_status status = query_int(store, "SELECT coalesce(max(timestamp), 0) FROM transfers", NULL, &last_ts);
    if (status != PC_OK) return status;
    store_index_config_t config = {store->path, store->instance_id, (uint64_t)last_ts, &store->id_key,
                                   store->options.index_key_bits, store->options.fault_index_write_from,
                                   store->options.index_memtable_entries_max};
    status = store_index_open(&store->index, &config);
    if (status != PC_OK) {
        snprintf(store->error_detail, sizeof store->error_detail, "%s-index: cannot open or rebuild", store->path);
        return status;
    }
    modes_tighten(store);
    store->index_reader = store_index_reader_open(store->index);
    return store->index_reader ? PC_OK : PC_STORE_OPEN_FAILED;
}

pc_status store_sqlite_index_room(sqlite_store_t *store) {
    char detail[sizeof store->error_detail];
    pc_status status = store_index_room_wait(store->index, detail, sizeof detail);
    if (status != PC_OK && store->failed == PC_OK) {
        snprintf(store->error_detail, sizeof store->error_detail, "%s", detail);
        store->failed = status; /* for good: the process must stop and rebuild the index */
    }
    return status;
}

/* Adds a chunk of the catch-up once the memtable has room for it. */
static pc_status index_catch_up_add(sqlite_store_t *store, const store_index_entry_t *chunk, uint32_t count) {
    pc_status status = store_sqlite_index_room(store);
    if (status == PC_OK) store_index_add(store->index, chunk, count);
    return status;
}

/* Transfers committed after the index file's watermark go back into the memtable. */
static pc_status index_catch_up(sqlite_store_t *store) {
    sqlite3_stmt *stmt;
    const char *sql = "SELECT t.timestamp, t.id, d.no, c.no FROM transfers t JOIN accounts d ON d.id = t.debit_account_id"
                      " JOIN accounts c ON c.id = t.credit_account_id WHERE t.timestamp > ? ORDER BY t.timestamp";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) return read_fail(store, "index catch-up");
    sqlite3_bind_int64(stmt, 1, (int64_t)store_index_indexed_through_ts(store->index));
    store_index_entry_t chunk[1024];
    uint32_t count = 0;
    pc_status status = PC_OK;
    int rc = SQLITE_DONE;
    while (status == PC_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 1);
        chunk[count] = (store_index_entry_t){store_index_key(store->index, id), (uint64_t)sqlite3_column_int64(stmt, 0),
                                             (uint32_t)sqlite3_column_int64(stmt, 2), (uint32_t)sqlite3_column_int64(stmt, 3)};
        store_index_bloom_add(store->index, chunk[count].key);
        if (++count == 1024) {
            status = index_catch_up_add(store, chunk, count);
            count = 0;
        }
    }
    if (status == PC_OK && count > 0) status = index_catch_up_add(store, chunk, count);
    if (status == PC_OK && rc != SQLITE_DONE) status = read_fail(store, "index catch-up");
    sqlite3_finalize(stmt);
    return status;
}

static pc_status failures_bloom(sqlite_store_t *store) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db, "SELECT id FROM transfer_failures", -1, &stmt, NULL) != SQLITE_OK) {
        return read_fail(store, "load failures");
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        store_index_bloom_add(store->index, store_index_key(store->index, (const char *)sqlite3_column_text(stmt, 0)));
    }
    pc_status status = rc == SQLITE_DONE ? PC_OK : read_fail(store, "load failures");
    sqlite3_finalize(stmt);
    return status;
}

static pc_status load_accounts(sqlite_store_t *store, ledger_t *ledger) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db,
                           "SELECT id, currency, code, flags, debits_pending, debits_posted, credits_pending,"
                           " credits_posted, timestamp, metadata, no FROM accounts ORDER BY no",
                           -1, &stmt, NULL) != SQLITE_OK) {
        return read_fail(store, "load accounts");
    }
    pc_status status = PC_OK;
    uint32_t expected_no = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        ledger_account_t account;
        store_sqlite_account_from_row(stmt, &account);
        if ((uint32_t)sqlite3_column_int64(stmt, 10) != expected_no++) {
            status = PC_STORE_CORRUPT; /* account numbers are the ledger's indices: dense */
            snprintf(store->error_detail, sizeof(store->error_detail), "account numbers not dense at %s", account.id);
            break;
        }
        status = ledger_load_account(ledger, &account);
        if (status != PC_OK) break;
    }
    if (status == PC_OK && rc != SQLITE_DONE) status = read_fail(store, "load accounts");
    sqlite3_finalize(stmt);
    return status;
}

static pc_status replay_row(sqlite_store_t *store, ledger_t *ledger, sqlite3_stmt *stmt) {
    ledger_transfer_t record;
    store_sqlite_transfer_from_row(stmt, &record);
    int64_t pending_amount;
    pc_status status = store_replay_pending_amount(&(ledger_source_t){source_transfer_find, store}, &record,
                                         &pending_amount, store->error_detail, sizeof store->error_detail);
    if (status == PC_OK) status = ledger_load_replay(ledger, &record, pending_amount);
    if (status != PC_OK) return status;
    const ledger_account_t *debit = ledger_account_find(ledger, record.debit_account_id);
    const ledger_account_t *credit = ledger_account_find(ledger, record.credit_account_id);
    store_dirty_mark(&store->dirty, ledger_account_index(ledger, debit));
    store_dirty_mark(&store->dirty, ledger_account_index(ledger, credit));
    return PC_OK;
}

/* Re-derives balances from the transfers committed after the balance snapshot. */
static pc_status replay_after_snapshot(sqlite_store_t *store, ledger_t *ledger) {
    sqlite3_stmt *stmt;
    const char *sql =
        "SELECT timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags, pending_id,"
        " timeout_s, metadata FROM transfers WHERE timestamp >= coalesce((SELECT timestamp_first FROM journal"
        " WHERE seq = ?1 + 1), 9223372036854775807) AND batch_seq > ?1 ORDER BY timestamp";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) return read_fail(store, "replay");
    sqlite3_bind_int64(stmt, 1, (int64_t)store->accounts_as_of_seq);
    pc_status status = PC_OK;
    int rc = SQLITE_DONE;
    while (status == PC_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) status = replay_row(store, ledger, stmt);
    if (status == PC_OK && rc != SQLITE_DONE) status = read_fail(store, "replay");
    sqlite3_finalize(stmt);
    return status;
}

static pc_status load_pendings(sqlite_store_t *store, ledger_t *ledger) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db,
                           "SELECT timestamp, id, debit_account_id, credit_account_id, amount, currency, code,"
                           " flags, pending_id, timeout_s, metadata FROM transfers WHERE pending_state = 1",
                           -1, &stmt, NULL) != SQLITE_OK) {
        return read_fail(store, "load pending");
    }
    pc_status status = PC_OK;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        ledger_transfer_t pending;
        store_sqlite_transfer_from_row(stmt, &pending);
        status = ledger_load_pending(ledger, &pending);
        if (status != PC_OK) break;
    }
    if (status == PC_OK && rc != SQLITE_DONE) status = read_fail(store, "load pending");
    sqlite3_finalize(stmt);
    return status;
}

static pc_status load_clock(sqlite_store_t *store, ledger_t *ledger) {
    int64_t clock_ns = 0;
    pc_status status = query_int(store,
                                 "SELECT max((SELECT coalesce(max(timestamp),0) FROM transfers),"
                                 " (SELECT coalesce(max(timestamp),0) FROM accounts),"
                                 " (SELECT coalesce(max(timestamp),0) FROM transfer_failures),"
                                 " (SELECT coalesce(max(timestamp_last),0) FROM journal))",
                                 NULL, &clock_ns);
    if (status != PC_OK) return status == PC_NOT_FOUND ? read_fail(store, "load clock") : status;
    ledger_load_clock(ledger, (uint64_t)clock_ns);
    return PC_OK;
}

/* The journal head: the row with the highest seq (none: seq 0, zero hash). The
 * balance snapshot can never be past it. */
static pc_status load_head(sqlite_store_t *store, journal_entry_t *head) {
    sqlite3_stmt *stmt;
    memset(head, 0, sizeof(*head));
    if (sqlite3_prepare_v2(store->db, "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1", -1, &stmt,
                           NULL) != SQLITE_OK) {
        return read_fail(store, "load journal head");
    }
    int rc = sqlite3_step(stmt);
    pc_status status = PC_OK;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(stmt, 1) == JOURNAL_HASH_BYTES && sqlite3_column_int64(stmt, 0) > 0) {
        head->seq = (uint64_t)sqlite3_column_int64(stmt, 0);
        memcpy(head->hash, sqlite3_column_blob(stmt, 1), JOURNAL_HASH_BYTES);
    } else if (rc == SQLITE_ROW) {
        snprintf(store->error_detail, sizeof(store->error_detail), "journal head: malformed row");
        status = PC_STORE_CORRUPT;
    } else if (rc != SQLITE_DONE) {
        status = read_fail(store, "load journal head");
    }
    sqlite3_finalize(stmt);
    if (status == PC_OK && store->accounts_as_of_seq > head->seq) {
        snprintf(store->error_detail, sizeof(store->error_detail),
                 "meta accounts_as_of_seq %" PRIu64 " is past the journal head %" PRIu64, store->accounts_as_of_seq,
                 head->seq);
        status = PC_STORE_CORRUPT;
    }
    store->journal_head_seq = head->seq;
    return status;
}

static pc_status sqlite_load(store_t *base, ledger_t *ledger, journal_entry_t *head) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    PC_ASSERT(store->index == NULL); /* once */
    pc_status status = load_head(store, head);
    if (status == PC_OK) status = index_open(store);
    if (status == PC_OK) status = load_accounts(store, ledger);
    if (status == PC_OK) status = index_catch_up(store);
    if (status == PC_OK) status = failures_bloom(store);
    if (status == PC_OK) status = replay_after_snapshot(store, ledger);
    if (status == PC_OK) status = load_pendings(store, ledger);
    if (status == PC_OK) status = load_clock(store, ledger);
    for (uint32_t i = 0; status == PC_OK && i < ledger_account_count(ledger); i++) {
        store_shadow_publish(store->shadow, i, &ledger_account_at(ledger, i)->balances);
    }
    if (status == PC_OK) PC_ASSERT(store->accounts_as_of_seq <= store->journal_head_seq);
    return status;
}

static bool sqlite_handles(const char *location) {
    (void)location;
    return true; /* a file path: the default */
}

const store_backend_ops_t store_sqlite_ops = {
    .name = "sqlite",
    .handles = sqlite_handles,
    .open = sqlite_store_open,
    .close = sqlite_close,
    .location = sqlite_location,
    .error_detail = sqlite_error_detail,
    .load = sqlite_load,
    .journal_signer = sqlite_journal_signer,
    .journal_head_seq = sqlite_journal_head_seq,
    .source = sqlite_source,
    .prefetch = NULL, /* the bloom filter and the local index answer at once */
    .tx_begin = store_sqlite_tx_begin,
    .tx_write_changes = store_sqlite_tx_write_changes,
    .tx_write_journal = store_sqlite_tx_write_journal,
    .tx_commit = store_sqlite_tx_commit,
    .tx_rollback = store_sqlite_tx_rollback,
    .balance_snapshot = store_sqlite_balance_snapshot,
    .failed = sqlite_failed,
    .writable = sqlite_writable,
    .probe = store_sqlite_probe,
    .reader_open = store_sqlite_reader_open,
    .reader_close = store_sqlite_reader_close,
    .read_account = store_sqlite_read_account,
    .read_transfer = store_sqlite_read_transfer,
    .read_transfer_at = store_sqlite_read_transfer_at,
    .list_accounts = store_sqlite_list_accounts,
    .list_accounts_granted = store_sqlite_list_accounts_granted,
    .list_account_transfers = store_sqlite_list_account_transfers,
    .list_history = store_sqlite_list_history,
    .verify_open = store_sqlite_verify_open,
    .api = &store_sqlite_api_ops,
    .events = &store_sqlite_events_ops,
    .payments = &store_sqlite_payments_ops,
};
