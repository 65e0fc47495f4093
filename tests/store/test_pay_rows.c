/* Goal: the payments' objects' rows written at COMMIT, several a statement
 * (sqlite_payments.c: a new version waits in the transaction, the last one of an object
 * is written once) leave pay_objects exactly as one statement a write did: an update of
 * the columns a version changes where the listing keys are the stored row's (the first
 * final answer kept), else the whole row; a first version the whole row (over a row
 * that is there too), in its place among the others; a rolled back transaction leaves
 * nothing. Inside the transaction a write is not made yet, and two new versions of one
 * object wait as one.
 * The vault's new cards wait for COMMIT too, several a statement; the rotation's rekey and
 * key retirement in the same transaction see them. So do Idempotency-Key replies: a key
 * stored again and a purge in the same transaction see the waiting reply.
 * Method: random transactions of writes (24 ids; versions, first versions again,
 * listing keys that change, statuses and ops that the partial indexes hold, documents,
 * answers), each committed or rolled back, through the store and, beside it, through
 * the former statements (copied here) on a second file made by the same store code;
 * after each, every row of the two files compared, and the indexes checked. */
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/ledger.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "store/store_api.h"
#include "store/store_payments.h"
#include "store_start.h"
#include "test.h"

static char dir[256], db_path[300], ref_path[300];

/* the statements every write ran before, one a write */
static const char *const former_put =
    "INSERT OR REPLACE INTO pay_objects(id, kind, merchant_id, parent_id, status, created_ns, updated_ns,"
    " version, doc, answer_version, answer_status, pending_op) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)";
static const char *const former_update =
    "UPDATE pay_objects SET status = ?5, updated_ns = ?7, version = ?8, doc = ?9, pending_op = ?12,"
    " answer_status = CASE answer_version WHEN 0 THEN ?11 ELSE answer_status END,"
    " answer_version = CASE answer_version WHEN 0 THEN ?10 ELSE answer_version END"
    " WHERE id = ?1 AND kind = ?2 AND merchant_id = ?3 AND parent_id = ?4 AND created_ns = ?6";

static void former_bind(sqlite3_stmt *stmt, const store_pay_object_t *o) {
    sqlite3_bind_text(stmt, 1, o->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, o->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, o->merchant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, o->parent_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, o->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)o->created_ns);
    sqlite3_bind_int64(stmt, 7, (sqlite3_int64)o->updated_ns);
    sqlite3_bind_int64(stmt, 8, (sqlite3_int64)o->version);
    sqlite3_bind_text(stmt, 9, o->doc, o->doc_bytes ? (int)o->doc_bytes : -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 10, (sqlite3_int64)o->answer_version);
    sqlite3_bind_int(stmt, 11, o->answer_version != 0 ? o->answer_status : 0);
    sqlite3_bind_text(stmt, 12, o->pending_op, -1, SQLITE_STATIC);
}

static void former_step(sqlite3 *db, const char *sql, const store_pay_object_t *o) {
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    former_bind(stmt, o);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_DONE);
    sqlite3_finalize(stmt);
}

/* What sqlite_pay_object_put did before: a statement a write. True when a new version
 * found no row of its listing keys (the whole row written instead). */
static bool former_write(sqlite3 *db, const store_pay_object_t *o) {
    if (o->version > 1) {
        former_step(db, former_update, o);
        if (sqlite3_changes(db) == 1) return false;
    }
    former_step(db, former_put, o);
    return o->version > 1;
}

static void exec(sqlite3 *db, const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) TEST_FAIL("%s: %s", sql, error);
}

/* Every row of pay_objects as one text, in id order. */
static char *rows_text(const char *path) {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT group_concat(quote(id) || ',' || quote(kind) || ',' || quote(merchant_id) || ','"
                                 " || quote(parent_id) || ',' || quote(status) || ',' || created_ns || ',' || updated_ns"
                                 " || ',' || version || ',' || quote(doc) || ',' || answer_version || ',' ||"
                                 " answer_status || ',' || quote(pending_op), char(10)) FROM"
                                 " (SELECT * FROM pay_objects ORDER BY id)",
                                 -1, &stmt, NULL),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    const char *text = (const char *)sqlite3_column_text(stmt, 0);
    char *copy = strdup(text != NULL ? text : "");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return copy;
}

static void integrity_check(const char *path) {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(stmt, 0), "ok");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

/* ---- the objects the random writes make ---- */

#define IDS 24

typedef struct {
    uint32_t version; /* the last written (committed or not) */
    char merchant_id[8];
    uint64_t created_ns;
} object_state_t;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t draw(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static char doc_space[600];

/* The next write of object 'i': mostly the next version, some first versions again,
 * some listing keys changed (the stored row then is not the one updated). */
static void write_make(object_state_t *states, uint32_t i, uint64_t now_ns, store_pay_object_t *o) {
    static const char *const statuses[] = {"created", "authorized", "captured", "pending", "processing", "refunded"};
    object_state_t *s = &states[i];
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "pay_%02u", i);
    snprintf(o->kind, sizeof o->kind, "%s", i % 5 == 4 ? "op" : "payment");
    snprintf(o->parent_id, sizeof o->parent_id, "%s", i % 5 == 4 ? "pay_00" : "");
    s->version = s->version == 0 || draw(10) == 0 ? 1 : s->version + 1;
    if (s->version == 1 || draw(12) == 0) { /* new keys */
        snprintf(s->merchant_id, sizeof s->merchant_id, "m%u", draw(3));
        s->created_ns = now_ns - draw(1000);
    }
    snprintf(o->merchant_id, sizeof o->merchant_id, "%s", s->merchant_id);
    o->created_ns = s->created_ns;
    o->updated_ns = now_ns;
    o->version = s->version;
    snprintf(o->status, sizeof o->status, "%s", statuses[draw(6)]);
    if (draw(2) == 0) snprintf(o->pending_op, sizeof o->pending_op, "op_%u_%u", i, draw(1000));
    size_t doc_bytes = draw(3) == 0 ? 1 + draw(sizeof doc_space - 1) : 0;
    for (size_t k = 0; k < doc_bytes; k++) doc_space[k] = (char)('a' + (k + o->version) % 26);
    doc_space[doc_bytes] = '\0';
    o->doc = doc_space;
    o->doc_bytes = doc_bytes;
    if (draw(4) == 0) {
        o->answer_version = 1 + draw(o->version);
        o->answer_status = draw(2) ? 201 : 202;
    }
}

static void dir_make(void) {
    test_dir_make(dir, sizeof dir, "paycore-payrows");
    snprintf(db_path, sizeof db_path, "%s/p.db", dir);
    snprintf(ref_path, sizeof ref_path, "%s/ref.db", dir);
}

/* Random transactions through the store and through the former statements: the same
 * rows after each. */
static void test_same_rows(void) {
    dir_make();
    ledger_t *ref_ledger;
    store_t *ref_store = test_store_start(ref_path, &ref_ledger); /* the same schema, made by the store */
    test_store_end(ref_store, ref_ledger);
    sqlite3 *ref;
    ASSERT_EQ(sqlite3_open(ref_path, &ref), SQLITE_OK);
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    object_state_t states[IDS], committed[IDS];
    memset(committed, 0, sizeof committed);
    uint64_t now_ns = 1700000000000000000ull;
    uint32_t whole_rows = 0, twice = 0; /* new versions written whole; objects written twice a transaction */
    for (uint32_t t = 0; t < 400; t++) {
        memcpy(states, committed, sizeof states);
        store_tx_t *tx;
        ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
        exec(ref, "BEGIN IMMEDIATE");
        uint32_t writes = 1 + draw(40);
        bool written[IDS] = {false};
        for (uint32_t w = 0; w < writes; w++) {
            store_pay_object_t o;
            uint32_t i = draw(IDS);
            twice += written[i];
            written[i] = true;
            write_make(states, i, now_ns += 1000, &o);
            ASSERT_STATUS(store_pay_object_put(tx, &o), PC_OK);
            whole_rows += former_write(ref, &o);
        }
        bool commit = draw(8) != 0;
        if (commit) {
            ASSERT_STATUS(store_tx_commit(tx), PC_OK);
            exec(ref, "COMMIT");
            memcpy(committed, states, sizeof committed);
        } else {
            store_tx_rollback(tx);
            exec(ref, "ROLLBACK");
        }
        char *got = rows_text(db_path), *want = rows_text(ref_path);
        if (strcmp(got, want) != 0) TEST_FAIL("after transaction %u:\n%s\n--- want:\n%s", t, got, want);
        free(got);
        free(want);
    }
    printf("new versions written whole: %u, objects written twice in a transaction: %u\n", whole_rows, twice);
    ASSERT_TRUE(whole_rows > 20 && twice > 100);
    integrity_check(db_path);
    sqlite3_close(ref);
    test_store_end(store, ledger);
    test_dir_remove(dir);
}

static int64_t row_version(sqlite3 *db, const char *id) {
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT version FROM pay_objects WHERE id = ?1", -1, &stmt, NULL), SQLITE_OK);
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int64_t version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    return version;
}

/* Inside the transaction: a write waits (the row is as it was), two new versions of one
 * object wait as one row, 17 objects make a statement of 16 and one waiting; a first
 * version of a waiting object writes the waiting one first, then replaces the row
 * whole at COMMIT; a rollback drops what waits. */
static void test_waiting(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    sqlite_store_t *sqlite = (sqlite_store_t *)store;
    store_pay_object_t o = {.created_ns = 5, .updated_ns = 5, .version = 1, .doc = ""};
    snprintf(o.kind, sizeof o.kind, "payment");
    snprintf(o.merchant_id, sizeof o.merchant_id, "m1");
    snprintf(o.status, sizeof o.status, "created");
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t i = 0; i < 17; i++) {
        snprintf(o.id, sizeof o.id, "pay_%02u", i);
        ASSERT_STATUS(store_pay_object_put(tx, &o), PC_OK);
    }
    ASSERT_EQ(store_sqlite_pay_rows_waiting(sqlite), 1); /* 16 written in one statement, one waits */
    ASSERT_EQ(row_version(sqlite->db, "pay_00"), 1);
    ASSERT_EQ(row_version(sqlite->db, "pay_16"), -1);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(row_version(sqlite->db, "pay_16"), 1);
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    snprintf(o.id, sizeof o.id, "pay_00");
    o.version = 2;
    ASSERT_STATUS(store_pay_object_put(tx, &o), PC_OK);
    ASSERT_EQ(row_version(sqlite->db, "pay_00"), 1); /* waits for COMMIT */
    o.version = 3;
    o.answer_version = 3;
    o.answer_status = 201;
    ASSERT_STATUS(store_pay_object_put(tx, &o), PC_OK);
    ASSERT_EQ(store_sqlite_pay_rows_waiting(sqlite), 1); /* one row for both */
    for (uint32_t i = 1; i < 17; i++) {
        snprintf(o.id, sizeof o.id, "pay_%02u", i);
        ASSERT_STATUS(store_pay_object_put(tx, &o), PC_OK);
    }
    ASSERT_EQ(store_sqlite_pay_rows_waiting(sqlite), 1);
    ASSERT_EQ(row_version(sqlite->db, "pay_00"), 3);
    ASSERT_EQ(row_version(sqlite->db, "pay_16"), 1);
    o.version = 1; /* a first version again of the one waiting: after it, in order */
    ASSERT_STATUS(store_pay_object_put(tx, &o), PC_OK);
    ASSERT_EQ(store_sqlite_pay_rows_waiting(sqlite), 1);
    ASSERT_EQ(row_version(sqlite->db, "pay_16"), 3);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(row_version(sqlite->db, "pay_16"), 1); /* the whole row again */
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    o.version = 9;
    ASSERT_STATUS(store_pay_object_put(tx, &o), PC_OK);
    store_tx_rollback(tx); /* dropped: nothing of it reaches the next transaction */
    ASSERT_EQ(store_sqlite_pay_rows_waiting(sqlite), 0);
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(row_version(sqlite->db, "pay_16"), 1);
    ASSERT_EQ(row_version(sqlite->db, "pay_00"), 3);
    test_store_end(store, ledger);
    test_dir_remove(dir);
}

/* count(*) of 'sql' with 'text' bound as ?1. */
static int64_t count_of(sqlite3 *db, const char *sql, const char *text) {
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t count = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return count;
}

static int64_t card_count(sqlite3 *db, const char *data_key_id) {
    return count_of(db, "SELECT count(*) FROM vault_cards WHERE data_key_id = ?1", data_key_id);
}

static store_vault_card_t card_make(uint32_t i, const char *data_key_id) {
    store_vault_card_t card = {.ciphertext_bytes = 20, .exp_month = 12, .exp_year = 2030, .created_ns = 100 + i};
    snprintf(card.token, sizeof card.token, "tok_%04u", i);
    snprintf(card.data_key_id, sizeof card.data_key_id, "%s", data_key_id);
    memset(card.nonce, (int)i, sizeof card.nonce);
    memset(card.ciphertext, (int)(i + 1), card.ciphertext_bytes);
    snprintf(card.bin, sizeof card.bin, "400000");
    snprintf(card.last4, sizeof card.last4, "%04u", i);
    snprintf(card.fingerprint, sizeof card.fingerprint, "fp%u", i);
    return card;
}

/* The vault's cards: 17 in a transaction make a statement of 16 and one waiting, which
 * goes in at COMMIT; a token stored again keeps its first row; a rollback drops what
 * waits; a rekey and a key retirement in the transaction of a waiting card see it
 * (without the flush the rekey changes nothing and the key is retired). */
static void test_vault_cards_waiting(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    sqlite_store_t *sqlite = (sqlite_store_t *)store;
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t i = 0; i < 17; i++) {
        store_vault_card_t card = card_make(i, "dk_a");
        ASSERT_STATUS(store_vault_card_put(tx, &card), PC_OK);
    }
    ASSERT_EQ(card_count(sqlite->db, "dk_a"), 16); /* one waits */
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(card_count(sqlite->db, "dk_a"), 17);

    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    store_vault_card_t again = card_make(3, "dk_b"); /* a token that is there: left as it is */
    ASSERT_STATUS(store_vault_card_put(tx, &again), PC_OK);
    store_vault_card_t card = card_make(17, "dk_b");
    ASSERT_STATUS(store_vault_card_put(tx, &card), PC_OK);
    ASSERT_EQ(card_count(sqlite->db, "dk_b"), 0);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(card_count(sqlite->db, "dk_b"), 1);
    ASSERT_EQ(card_count(sqlite->db, "dk_a"), 17);

    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    card = card_make(18, "dk_b");
    ASSERT_STATUS(store_vault_card_put(tx, &card), PC_OK);
    store_tx_rollback(tx);
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(card_count(sqlite->db, "dk_b"), 1); /* the rolled back card is not there */

    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    store_vault_key_t key = {.wrapped_bytes = 8, .created_ns = 1};
    snprintf(key.id, sizeof key.id, "dk_c");
    snprintf(key.kind, sizeof key.kind, "data");
    snprintf(key.kek_id, sizeof key.kek_id, "kek_1");
    ASSERT_STATUS(store_vault_key_put(tx, &key), PC_OK);
    card = card_make(19, "dk_c");
    ASSERT_STATUS(store_vault_card_put(tx, &card), PC_OK);
    bool retired = true;
    ASSERT_STATUS(store_vault_key_retire(tx, "dk_c", &retired), PC_OK);
    ASSERT_FALSE(retired); /* the waiting card is under it */
    store_vault_card_t rekeyed = card_make(19, "dk_d");
    ASSERT_STATUS(store_vault_card_rekey(tx, &rekeyed, "dk_c"), PC_OK);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(card_count(sqlite->db, "dk_c"), 0);
    ASSERT_EQ(card_count(sqlite->db, "dk_d"), 1);
    ASSERT_EQ(card_count(sqlite->db, "dk_a"), 17);
    test_store_end(store, ledger);
    test_dir_remove(dir);
}

static int64_t reply_count(sqlite3 *db, const char *idempotency_key) {
    return count_of(db, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key LIKE ?1", idempotency_key);
}

static uint64_t reply_put(store_tx_t *tx, const char *idempotency_key, const char *body, uint64_t created_ns) {
    store_api_idem_t record = {.http_status = 201, .created_ns = created_ns, .body = (char *)body,
                               .body_bytes = strlen(body)};
    uint64_t replaced_bytes = UINT64_MAX;
    ASSERT_STATUS(store_api_idem_put(tx, "key_1", idempotency_key, &record, &replaced_bytes), PC_OK);
    return replaced_bytes;
}

static void purged_count(const char *key_id, const char *idempotency_key, uint64_t row_bytes, void *ctx) {
    (void)key_id;
    (void)idempotency_key;
    (void)row_bytes;
    (*(uint32_t *)ctx)++;
}

/* Idempotency-Key replies: 17 in a transaction make a statement of 16 and one waiting
 * until COMMIT; a key stored again in the transaction of its waiting reply replaces it
 * (one row, its room reported; without the flush two rows of one key); a purge in the
 * transaction sees a waiting reply; a body past 16 KiB goes in at once; a rollback drops
 * what waits and the key stays unknown. */
static void test_idem_replies_waiting(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    sqlite_store_t *sqlite = (sqlite_store_t *)store;
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK); /* the oldest reply: a purge starts there */
    ASSERT_EQ(reply_put(tx, "old", "{}", 1), 0);
    uint32_t purged = 0;
    ASSERT_STATUS(store_api_idem_purge(tx, 2, 8, UINT64_MAX, purged_count, &purged), PC_OK);
    ASSERT_EQ(purged, 1); /* the waiting reply created at 1 ns */
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(reply_count(sqlite->db, "old"), 0);
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t i = 0; i < 17; i++) {
        char key[16];
        snprintf(key, sizeof key, "w%02u", i);
        ASSERT_EQ(reply_put(tx, key, "{}", 10), 0);
    }
    ASSERT_EQ(reply_count(sqlite->db, "w%"), 16); /* one waits */
    ASSERT_EQ(reply_put(tx, "again", "{\"first\":1}", 10), 0);
    ASSERT_TRUE(reply_put(tx, "again", "{\"second\":2}", 10) > 0); /* the waiting one found and replaced */
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(reply_count(sqlite->db, "w%"), 17);
    ASSERT_EQ(reply_count(sqlite->db, "again"), 1);

    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    char *big = malloc(20000);
    ASSERT_TRUE(big != NULL);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    ASSERT_EQ(reply_put(tx, "big", big, 10), 0);
    free(big);
    ASSERT_EQ(reply_count(sqlite->db, "big"), 1); /* at once */
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);

    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    ASSERT_EQ(reply_put(tx, "dropped", "{}", 10), 0);
    store_tx_rollback(tx);
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    ASSERT_EQ(reply_put(tx, "dropped", "{}", 10), 0); /* unknown again: nothing replaced */
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(reply_count(sqlite->db, "dropped"), 1);
    test_store_end(store, ledger);
    test_dir_remove(dir);
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_same_rows);
    TEST_RUN(test_waiting);
    TEST_RUN(test_vault_cards_waiting);
    TEST_RUN(test_idem_replies_waiting);
    return test_finish();
}
