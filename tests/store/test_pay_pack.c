/* Goal: a payment's version record stored packed (schema version 16, sqlite_pay_pack.c)
 * reads back byte for byte, whatever its text; a packed record that does not check is
 * PC_STORE_CORRUPT, never other text; the dictionary packed records depend on never
 * changes; a file of schema version 15 with text records migrates at open, its records
 * read as they were and the new ones are packed; a file of version 17 is refused; a
 * record packed ahead on another thread (store_pay_version_pack) is stored as the very
 * bytes the writer's own packing stores; frames made with the former parameters (files
 * written before) read back as they were.
 * Method: the pack and unpack functions on typical records (the dictionary's own), random
 * texts and a record of the largest size; damaged blobs; then a real store file: records
 * written through the store's transaction, read through a reader, the rows' stored types
 * read with SQL; the file set back to version 15 with text rows, reopened. */
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

#include "ledger/ledger.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "store/store_payments.h"
#include "store_start.h"
#include "test.h"

/* sha-256 of dictionary format 1: records packed with it are read with it */
#define DICT_V1_SHA256 "bfae601f8b4ef7058f8a923e10547a90f134d57eab4fc14617d6aa90e97d9a15"

static char dir[256], db_path[300];

static void test_dictionary_pinned(void) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    uint8_t hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(hash, (const unsigned char *)dictionary, bytes);
    char hex[2 * sizeof hash + 1];
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    ASSERT_STR_EQ(hex, DICT_V1_SHA256);
}

/* Packs and unpacks 'text': the same bytes back; *packed_bytes_out 0 when kept as text. */
static void round_trip(store_pay_pack_t **pack, const char *text, size_t bytes, size_t *packed_bytes_out) {
    const uint8_t *packed = NULL;
    size_t packed_bytes = 0;
    ASSERT_STATUS(store_sqlite_pay_pack(pack, text, bytes, &packed, &packed_bytes), PC_OK);
    *packed_bytes_out = packed_bytes;
    if (packed == NULL) return;
    ASSERT_TRUE(packed_bytes < bytes);
    uint8_t *copy = malloc(packed_bytes);
    ASSERT_TRUE(copy != NULL);
    memcpy(copy, packed, packed_bytes);
    char *back = NULL;
    size_t back_bytes = 0;
    ASSERT_STATUS(store_sqlite_pay_unpack(pack, copy, packed_bytes, &back, &back_bytes), PC_OK);
    ASSERT_EQ(back_bytes, bytes);
    ASSERT_TRUE(memcmp(back, text, bytes) == 0 && back[bytes] == '\0');
    free(back);
    free(copy);
}

/* The dictionary's records (typical ones) with each digit changed: packed to under a
 * third, read back exactly. */
static void test_typical_records(void) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    store_pay_pack_t *pack = NULL;
    size_t text_total = 0, packed_total = 0, records = 0;
    for (const char *line = dictionary; line < dictionary + bytes;) {
        const char *end = memchr(line, '\n', (size_t)(dictionary + bytes - line));
        ASSERT_TRUE(end != NULL);
        char *record = malloc((size_t)(end - line) + 1);
        ASSERT_TRUE(record != NULL);
        for (size_t i = 0; i < (size_t)(end - line); i++) {
            char c = line[i];
            record[i] = c >= '0' && c <= '9' ? (char)('0' + (c - '0' + 7 + (int)test_rand_below(3)) % 10) : c;
        }
        size_t packed_bytes = 0;
        round_trip(&pack, record, (size_t)(end - line), &packed_bytes);
        ASSERT_TRUE(packed_bytes > 0);
        text_total += (size_t)(end - line);
        packed_total += packed_bytes;
        records++;
        free(record);
        line = end + 1;
    }
    printf("typical records: %zu, %zu bytes of text packed to %zu\n", records, text_total, packed_total);
    ASSERT_TRUE(records >= 10 && 3 * packed_total < text_total);
    store_sqlite_pay_pack_free(pack);
}

/* Random texts of every kind of byte and length (some kept as text), and one of the
 * records' largest size. */
static void test_any_text(void) {
    store_pay_pack_t *pack = NULL;
    char *text = malloc(PAY_DOC_BYTES_MAX);
    ASSERT_TRUE(text != NULL);
    uint32_t kept_as_text = 0;
    for (int round = 0; round < 300; round++) {
        size_t bytes = test_rand_below(round < 200 ? 64 : 9000);
        uint32_t alphabet = 1 + test_rand_below(round % 2 ? 4 : 256);
        for (size_t i = 0; i < bytes; i++) text[i] = (char)(1 + test_rand_below(alphabet));
        size_t packed_bytes = 0;
        round_trip(&pack, text, bytes, &packed_bytes);
        if (packed_bytes == 0) kept_as_text++;
    }
    ASSERT_TRUE(kept_as_text > 0); /* tiny or random texts: not smaller packed */
    for (size_t i = 0; i < PAY_DOC_BYTES_MAX; i++) text[i] = "{\"id\":\"op_1\",\"$version\":2},"[i % 26];
    size_t packed_bytes = 0;
    round_trip(&pack, text, PAY_DOC_BYTES_MAX, &packed_bytes);
    ASSERT_TRUE(packed_bytes > 0);
    free(text);
    store_sqlite_pay_pack_free(pack);
}

/* A packed record damaged anywhere, cut short, or of another format: corrupt. */
static void test_damaged(void) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    const char *end = memchr(dictionary, '\n', bytes);
    size_t record_bytes = (size_t)(end - dictionary);
    store_pay_pack_t *pack = NULL;
    const uint8_t *packed = NULL;
    size_t packed_bytes = 0;
    ASSERT_STATUS(store_sqlite_pay_pack(&pack, dictionary, record_bytes, &packed, &packed_bytes), PC_OK);
    ASSERT_TRUE(packed != NULL);
    uint8_t *blob = malloc(packed_bytes);
    ASSERT_TRUE(blob != NULL);
    char *text = NULL;
    size_t text_bytes = 0;
    for (size_t at = 0; at < packed_bytes; at++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(blob, packed, packed_bytes);
            blob[at] ^= (uint8_t)(1u << bit);
            pc_status status = store_sqlite_pay_unpack(&pack, blob, packed_bytes, &text, &text_bytes);
            if (status == PC_OK) { /* only a bit nothing reads may flip unnoticed */
                ASSERT_TRUE(text_bytes == record_bytes && memcmp(text, dictionary, record_bytes) == 0);
                free(text);
                continue;
            }
            ASSERT_STATUS(status, PC_STORE_CORRUPT);
            ASSERT_TRUE(text == NULL);
        }
    }
    memcpy(blob, packed, packed_bytes);
    for (size_t cut = 0; cut < packed_bytes; cut++) {
        ASSERT_STATUS(store_sqlite_pay_unpack(&pack, blob, cut, &text, &text_bytes), PC_STORE_CORRUPT);
    }
    blob[0] = 0x02; /* a format this paycore does not know */
    ASSERT_STATUS(store_sqlite_pay_unpack(&pack, blob, packed_bytes, &text, &text_bytes), PC_STORE_CORRUPT);
    free(blob);
    store_sqlite_pay_pack_free(pack);
}

/* 'text' as the former packing stored it: one frame at level -1 with zstd's own
 * parameters for that level (minimum match 5, a step of 2), the dictionary shared:
 * malloc'ed, its format byte first. */
static uint8_t *former_frame(const char *text, size_t bytes, size_t *frame_bytes_out) {
    size_t dictionary_bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&dictionary_bytes);
    ZSTD_CDict *cdict = ZSTD_createCDict(dictionary, dictionary_bytes, -1);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ASSERT_TRUE(cdict != NULL && cctx != NULL);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0);
    ASSERT_TRUE(!ZSTD_isError(ZSTD_CCtx_refCDict(cctx, cdict)));
    size_t room = 1 + ZSTD_compressBound(bytes);
    uint8_t *frame = malloc(room);
    ASSERT_TRUE(frame != NULL);
    size_t packed = ZSTD_compress2(cctx, frame + 1, room - 1, text, bytes);
    ASSERT_TRUE(!ZSTD_isError(packed));
    frame[0] = 0x01; /* PACK_FORMAT_DICT_V1 */
    ZSTD_freeCCtx(cctx);
    ZSTD_freeCDict(cdict);
    *frame_bytes_out = 1 + packed;
    return frame;
}

/* The typical records packed with the former parameters (rows of files written before)
 * read back byte for byte; today's packing makes other frames of them (its parameters
 * are in effect: fails when they are not), each read back alike (round_trip). */
static void test_former_frames(void) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    store_pay_pack_t *pack = NULL;
    uint32_t records = 0, differing = 0;
    for (const char *line = dictionary; line < dictionary + bytes; records++) {
        const char *end = memchr(line, '\n', (size_t)(dictionary + bytes - line));
        ASSERT_TRUE(end != NULL);
        size_t record_bytes = (size_t)(end - line);
        size_t frame_bytes = 0;
        uint8_t *frame = former_frame(line, record_bytes, &frame_bytes);
        char *text = NULL;
        size_t text_bytes = 0;
        ASSERT_STATUS(store_sqlite_pay_unpack(&pack, frame, frame_bytes, &text, &text_bytes), PC_OK);
        ASSERT_TRUE(text_bytes == record_bytes && memcmp(text, line, record_bytes) == 0);
        free(text);
        const uint8_t *packed = NULL;
        size_t packed_bytes = 0;
        ASSERT_STATUS(store_sqlite_pay_pack(&pack, line, record_bytes, &packed, &packed_bytes), PC_OK);
        ASSERT_TRUE(packed != NULL);
        if (packed_bytes != frame_bytes || memcmp(packed, frame, frame_bytes) != 0) differing++;
        free(frame);
        line = end + 1;
    }
    printf("records: %u, packed otherwise today: %u\n", records, differing);
    ASSERT_TRUE(records >= 10 && differing > 0);
    store_sqlite_pay_pack_free(pack);
}

static void exec(const char *sql) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) TEST_FAIL("%s: %s", sql, error);
    sqlite3_close(db);
}

static int64_t query_int(const char *sql) {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
}

static const char *const small_record = "{}";

/* The record of 'version' of payment 'id' as the test writes it. */
static char *record_text(const char *id, uint32_t version, size_t *bytes_out) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    char *text = malloc(bytes + 64);
    ASSERT_TRUE(text != NULL);
    int n = snprintf(text, bytes + 64, "{\"id\":\"%s\",\"version\":%u,\"rest\":", id, version);
    size_t take = 200 * version;
    for (size_t i = 0; i < take; i++) text[n + (int)i] = dictionary[i] == '"' ? '\'' : dictionary[i];
    memcpy(text + n + take, "\"}", 3);
    text[n] = '"';
    *bytes_out = (size_t)n + take + 2;
    return text;
}

/* Versions 1 to 'count' of 'id' in one transaction, and the small record as version 99. */
static void versions_write(store_t *store, const char *id, uint32_t count) {
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t v = 1; v <= count; v++) {
        size_t bytes = 0;
        char *text = record_text(id, v, &bytes);
        ASSERT_STATUS(store_pay_version_put(tx, id, v, text, bytes), PC_OK);
        free(text);
    }
    ASSERT_STATUS(store_pay_version_put(tx, id, 99, small_record, strlen(small_record)), PC_OK);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
}

/* Every version of 'id' reads back as written. */
static void versions_check(store_t *store, const char *id, uint32_t count) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    for (uint32_t v = 1; v <= count + 1; v++) {
        size_t bytes = 0;
        char *want = v <= count ? record_text(id, v, &bytes) : strdup(small_record);
        if (v > count) bytes = strlen(small_record);
        char *doc = NULL;
        size_t doc_bytes = 0;
        ASSERT_STATUS(store_pay_version_get(reader, id, v <= count ? v : 99, &doc, &doc_bytes), PC_OK);
        ASSERT_EQ(doc_bytes, bytes);
        ASSERT_TRUE(memcmp(doc, want, bytes) == 0 && doc[bytes] == '\0');
        free(doc);
        free(want);
    }
    char *doc = NULL;
    size_t doc_bytes = 0;
    ASSERT_STATUS(store_pay_version_get(reader, id, count + 1, &doc, &doc_bytes), PC_NOT_FOUND);
    store_reader_close(reader);
}

/* Versions 1 to 'count' of 'id' and the small record as version 15 wrote them (text),
 * the file set back to version 15. */
static void v15_records_write(const char *id, uint32_t count) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO pay_versions(object_id, version, doc) VALUES(?1, ?2, ?3)", -1,
                                 &stmt, NULL), SQLITE_OK);
    for (uint32_t v = 1; v <= count + 1; v++) {
        size_t bytes = strlen(small_record);
        char *text = v <= count ? record_text(id, v, &bytes) : strdup(small_record);
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int(stmt, 2, v <= count ? (int)v : 99);
        sqlite3_bind_text(stmt, 3, text, (int)bytes, SQLITE_TRANSIENT);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_DONE);
        sqlite3_reset(stmt);
        free(text);
    }
    sqlite3_finalize(stmt);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 15", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A fresh directory for the test's store file ('dir', 'db_path'), and its removal. */
static void dir_make(void) {
    test_dir_make(dir, sizeof dir, "paycore-paypack");
    snprintf(db_path, sizeof db_path, "%s/p.db", dir);
}

static void dir_remove(void) { test_dir_remove(dir); }

/* A store file's records: the new ones packed (a tiny one as text), every one read back;
 * the same file as version 15 wrote it (text rows) migrated at open (and on to the latest version); a newer version refused. */
static void test_store_records(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    versions_write(store, "pay_new", 6);
    versions_check(store, "pay_new", 6);
    test_store_end(store, ledger);
    ASSERT_EQ(query_int("PRAGMA user_version"), STORE_SCHEMA_VERSION_MAX);
    ASSERT_EQ(query_int("SELECT count(*) FROM pay_versions WHERE object_id = 'pay_new' AND typeof(doc) = 'blob'"), 6);
    ASSERT_EQ(query_int("SELECT typeof(doc) = 'text' FROM pay_versions WHERE version = 99"), 1);

    v15_records_write("pay_old", 4);
    store = test_store_start(db_path, &ledger); /* the migration */
    versions_check(store, "pay_old", 4);
    versions_write(store, "pay_after", 3);
    versions_check(store, "pay_after", 3);
    versions_check(store, "pay_old", 4);
    test_store_end(store, ledger);
    ASSERT_EQ(query_int("PRAGMA user_version"), STORE_SCHEMA_VERSION_MAX);
    ASSERT_EQ(query_int("SELECT count(*) FROM pay_versions WHERE object_id = 'pay_old' AND typeof(doc) = 'text'"), 5);
    ASSERT_EQ(query_int("SELECT count(*) FROM pay_versions WHERE object_id = 'pay_after' AND typeof(doc) = 'blob'"), 3);

    exec("PRAGMA user_version = 99"); /* a newer paycore's file */
    ASSERT_STATUS(store_open(&store, db_path, &(store_options_t){0}), PC_STORE_VERSION_UNSUPPORTED);
    dir_remove();
}

typedef struct {
    store_t *store;
    const char *text;
    size_t bytes;
    uint8_t *packed;
    size_t packed_bytes;
} ahead_t;

static void *ahead_run(void *arg) {
    ahead_t *ahead = arg;
    ASSERT_STATUS(store_pay_version_pack(ahead->store, ahead->text, ahead->bytes, &ahead->packed,
                                         &ahead->packed_bytes), PC_OK);
    return NULL;
}

/* The stored doc of (id, version) as a hex string (malloc'ed). */
static char *stored_hex(const char *id, uint32_t version) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT hex(doc) FROM pay_versions WHERE object_id = ?1 AND version = ?2", -1,
                                 &stmt, NULL), SQLITE_OK);
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, (int)version);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    char *hex = strdup((const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return hex;
}

/* Records packed ahead on another thread and put with store_pay_version_put_packed:
 * stored as the same bytes as the same records put plainly, read back alike; a record
 * packing would not shrink is not packed ahead and is stored as text. */
static void test_packed_ahead(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t v = 1; v <= 5; v++) {
        size_t bytes = 0;
        char *text = record_text("pay_ahead", v, &bytes); /* the same text under two ids */
        ASSERT_STATUS(store_pay_version_put(tx, "pay_plain", v, text, bytes), PC_OK);
        ahead_t ahead = {.store = store, .text = text, .bytes = bytes};
        pthread_t thread;
        ASSERT_EQ(pthread_create(&thread, NULL, ahead_run, &ahead), 0);
        ASSERT_EQ(pthread_join(thread, NULL), 0);
        ASSERT_TRUE(ahead.packed != NULL && ahead.packed_bytes < bytes);
        ASSERT_STATUS(store_pay_version_put_packed(tx, "pay_ahead", v, text, bytes, ahead.packed, ahead.packed_bytes),
                      PC_OK);
        free(ahead.packed);
        free(text);
    }
    ahead_t tiny = {.store = store, .text = small_record, .bytes = strlen(small_record)};
    ahead_run(&tiny);
    ASSERT_TRUE(tiny.packed == NULL && tiny.packed_bytes == 0);
    ASSERT_STATUS(store_pay_version_put_packed(tx, "pay_ahead", 99, small_record, strlen(small_record), NULL, 0),
                  PC_OK);
    ASSERT_STATUS(store_pay_version_put(tx, "pay_plain", 99, small_record, strlen(small_record)), PC_OK);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    versions_check(store, "pay_ahead", 5);
    test_store_end(store, ledger);
    for (uint32_t v = 1; v <= 5; v++) {
        char *plain = stored_hex("pay_plain", v), *ahead = stored_hex("pay_ahead", v);
        ASSERT_STR_EQ(ahead, plain);
        free(plain);
        free(ahead);
    }
    ASSERT_EQ(query_int("SELECT count(*) FROM pay_versions WHERE object_id = 'pay_ahead' AND typeof(doc) = 'blob'"), 5);
    ASSERT_EQ(query_int("SELECT typeof(doc) = 'text' FROM pay_versions WHERE object_id = 'pay_ahead' AND version = 99"),
              1);
    dir_remove();
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_dictionary_pinned);
    TEST_RUN(test_typical_records);
    TEST_RUN(test_any_text);
    TEST_RUN(test_damaged);
    TEST_RUN(test_former_frames);
    TEST_RUN(test_store_records);
    TEST_RUN(test_packed_ahead);
    return test_finish();
}
