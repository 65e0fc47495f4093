/* Goal: the journal's encoders are deterministic and cover every field; the chain
 * hash covers every entry field; keys are created, reloaded and refused exactly as
 * journal.h says; checkpoints verify and a tampered one does not.
 * Method: hash a base row, change one field at a time and expect a different hash;
 * create keys in a temp directory, reload, loosen permissions, corrupt the file. */
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal/journal.h"
#include "test.h"

static char temp_dir[] = "/tmp/paycore-test-journal-XXXXXX";

static ledger_transfer_t base_transfer(void) {
    ledger_transfer_t t;
    memset(&t, 0, sizeof(t));
    strcpy(t.id, "t-1");
    strcpy(t.debit_account_id, "a-1");
    strcpy(t.credit_account_id, "a-2");
    strcpy(t.pending_id, "p-9");
    t.amount = 1999;
    strcpy(t.currency, "USD");
    t.code = 7;
    t.flags = LEDGER_TRANSFER_POST_PENDING;
    t.timeout_s = 30;
    t.timestamp_ns = 1700000000000000001ull;
    t.metadata_json = "{\"k\":\"v\"}";
    return t;
}

static ledger_account_t base_account(void) {
    ledger_account_t a;
    memset(&a, 0, sizeof(a));
    strcpy(a.id, "acct:1");
    strcpy(a.currency, "EUR");
    a.code = 3;
    a.flags = LEDGER_ACCOUNT_HISTORY;
    a.timestamp_ns = 42;
    a.metadata_json = "{}";
    return a;
}

static bool transfer_hash_differs(const ledger_transfer_t *changed) {
    ledger_transfer_t base = base_transfer();
    uint8_t h1[JOURNAL_ROW_HASH_BYTES], h2[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_transfer(&base, h1);
    journal_row_hash_transfer(changed, h2);
    return memcmp(h1, h2, sizeof(h1)) != 0;
}

static void test_transfer_hash_covers_every_field(void) {
    ledger_transfer_t t = base_transfer();
    ASSERT_FALSE(transfer_hash_differs(&t)); /* deterministic */
    char meta_copy[] = "{\"k\":\"v\"}";
    t.metadata_json = meta_copy; /* same bytes elsewhere: same hash */
    ASSERT_FALSE(transfer_hash_differs(&t));
    t = base_transfer(); t.id[2] = '2';                    ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.debit_account_id[2] = '3';      ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.credit_account_id[2] = '3';     ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.pending_id[0] = '\0';           ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.amount = 2000;                  ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.amount = INT64_MAX;             ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); strcpy(t.currency, "EUR");        ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.code = 8;                       ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.flags |= LEDGER_TRANSFER_EXPIRY; ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.timeout_s = 31;                 ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.timestamp_ns += 1;              ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.metadata_json = "{\"k\":\"w\"}"; ASSERT_TRUE(transfer_hash_differs(&t));
    t = base_transfer(); t.metadata_json = NULL;           ASSERT_TRUE(transfer_hash_differs(&t));
}

/* Field boundaries are length-prefixed: moving a character from one id to the next
 * must change the hash, and NULL metadata differs from "". */
static void test_encoding_is_unambiguous(void) {
    ledger_transfer_t a = base_transfer(), b = base_transfer();
    strcpy(a.debit_account_id, "ab");
    strcpy(a.credit_account_id, "c");
    strcpy(b.debit_account_id, "a");
    strcpy(b.credit_account_id, "bc");
    uint8_t ha[JOURNAL_ROW_HASH_BYTES], hb[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_transfer(&a, ha);
    journal_row_hash_transfer(&b, hb);
    ASSERT_TRUE(memcmp(ha, hb, sizeof(ha)) != 0);
    a = base_transfer();
    b = base_transfer();
    a.metadata_json = NULL;
    b.metadata_json = "";
    journal_row_hash_transfer(&a, ha);
    journal_row_hash_transfer(&b, hb);
    ASSERT_TRUE(memcmp(ha, hb, sizeof(ha)) != 0);
}

static bool account_hash_differs(const ledger_account_t *changed) {
    ledger_account_t base = base_account();
    uint8_t h1[JOURNAL_ROW_HASH_BYTES], h2[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_account(&base, h1);
    journal_row_hash_account(changed, h2);
    return memcmp(h1, h2, sizeof(h1)) != 0;
}

static void test_account_hash_covers_creation_fields(void) {
    ledger_account_t a = base_account();
    ASSERT_FALSE(account_hash_differs(&a));
    a.balances.credits_posted = 100; /* balances move: not covered */
    a.balances.debits_pending = 5;
    ASSERT_FALSE(account_hash_differs(&a));
    a = base_account(); a.id[0] = 'b';                ASSERT_TRUE(account_hash_differs(&a));
    a = base_account(); strcpy(a.currency, "USD");   ASSERT_TRUE(account_hash_differs(&a));
    a = base_account(); a.code = 4;                  ASSERT_TRUE(account_hash_differs(&a));
    a = base_account(); a.flags = 0;                 ASSERT_TRUE(account_hash_differs(&a));
    a = base_account(); a.timestamp_ns = 43;         ASSERT_TRUE(account_hash_differs(&a));
    a = base_account(); a.metadata_json = NULL;      ASSERT_TRUE(account_hash_differs(&a));
    a = base_account(); a.metadata_json = "";        ASSERT_TRUE(account_hash_differs(&a));
}

static void failure_hash(const char *id, pc_status code, uint64_t ts, uint8_t out[16]) {
    ledger_failure_t f;
    memset(&f, 0, sizeof(f));
    strcpy(f.id, id);
    f.failure = code;
    f.timestamp_ns = ts;
    journal_row_hash_failure(&f, out);
}

static void test_failure_hash(void) {
    uint8_t h1[16], h2[16];
    failure_hash("t-1", PC_EXCEEDS_CREDITS, 5, h1);
    failure_hash("t-1", PC_EXCEEDS_CREDITS, 5, h2);
    ASSERT_TRUE(memcmp(h1, h2, 16) == 0);
    failure_hash("t-2", PC_EXCEEDS_CREDITS, 5, h2);
    ASSERT_TRUE(memcmp(h1, h2, 16) != 0);
    failure_hash("t-1", PC_EXCEEDS_DEBITS, 5, h2);
    ASSERT_TRUE(memcmp(h1, h2, 16) != 0);
    failure_hash("t-1", PC_EXCEEDS_CREDITS, 6, h2);
    ASSERT_TRUE(memcmp(h1, h2, 16) != 0);
    /* The type tag separates kinds: an account and a failure never collide by layout. */
    ledger_account_t a = base_account();
    journal_row_hash_account(&a, h2);
    ASSERT_TRUE(memcmp(h1, h2, 16) != 0);
}

/* Content hash: order matters; an aligned and a misaligned state agree. */
static void test_content_hash(void) {
    uint8_t r1[16], r2[16], out_a[32], out_b[32], out_c[32];
    memset(r1, 1, 16);
    memset(r2, 2, 16);
    journal_content_t c;
    journal_content_init(&c);
    journal_content_add(&c, r1);
    journal_content_add(&c, r2);
    journal_content_final(&c, out_a);
    journal_content_init(&c);
    journal_content_add(&c, r2);
    journal_content_add(&c, r1);
    journal_content_final(&c, out_b);
    ASSERT_TRUE(memcmp(out_a, out_b, 32) != 0);
    /* 16-aligned but not 64-aligned storage, as in a malloc'ed struct. */
    char *raw = aligned_alloc(64, 64 * ((sizeof(journal_content_t) + 16 + 63) / 64));
    ASSERT_TRUE(raw != NULL);
    journal_content_t *moved = (journal_content_t *)(void *)(raw + 16);
    journal_content_init(moved);
    journal_content_add(moved, r1);
    journal_content_add(moved, r2);
    journal_content_final(moved, out_c);
    free(raw);
    ASSERT_TRUE(memcmp(out_a, out_c, 32) == 0);
    /* Empty batch content is defined and stable. */
    journal_content_init(&c);
    journal_content_final(&c, out_a);
    journal_content_init(&c);
    journal_content_final(&c, out_b);
    ASSERT_TRUE(memcmp(out_a, out_b, 32) == 0);
}

static journal_entry_t base_entry(void) {
    journal_entry_t e;
    memset(&e, 0, sizeof(e));
    e.seq = 3;
    e.timestamp_first_ns = 100;
    e.timestamp_last_ns = 200;
    e.account_count = 1;
    e.transfer_count = 2;
    e.failure_count = 3;
    memset(e.content_hash, 0xab, 32);
    memset(e.prev_hash, 0xcd, 32);
    journal_entry_seal(&e);
    return e;
}

static bool entry_hash_differs(journal_entry_t *changed) {
    journal_entry_t base = base_entry();
    journal_entry_seal(changed);
    return memcmp(base.hash, changed->hash, 32) != 0;
}

static void test_entry_seal_covers_every_field(void) {
    journal_entry_t e = base_entry();
    ASSERT_FALSE(entry_hash_differs(&e));
    e = base_entry(); e.seq = 4;                  ASSERT_TRUE(entry_hash_differs(&e));
    e = base_entry(); e.timestamp_first_ns = 101; ASSERT_TRUE(entry_hash_differs(&e));
    e = base_entry(); e.timestamp_last_ns = 201;  ASSERT_TRUE(entry_hash_differs(&e));
    e = base_entry(); e.account_count = 0;        ASSERT_TRUE(entry_hash_differs(&e));
    e = base_entry(); e.transfer_count = 0;       ASSERT_TRUE(entry_hash_differs(&e));
    e = base_entry(); e.failure_count = 0;        ASSERT_TRUE(entry_hash_differs(&e));
    e = base_entry(); e.content_hash[31] ^= 1;    ASSERT_TRUE(entry_hash_differs(&e));
    e = base_entry(); e.prev_hash[0] ^= 1;        ASSERT_TRUE(entry_hash_differs(&e));
}

static void path_in_temp(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", temp_dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
    ASSERT_EQ(chmod(path, mode), 0);
}

static void test_key_create_and_reload(void) {
    char key_path[256], pub_path[300];
    path_in_temp(key_path, sizeof(key_path), "node.key");
    snprintf(pub_path, sizeof(pub_path), "%s.pub", key_path);
    journal_key_t k1, k2;
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k1), PC_OK);
    struct stat st;
    ASSERT_EQ(stat(key_path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(st.st_size, 65);
    ASSERT_EQ(stat(pub_path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k2), PC_OK);
    ASSERT_TRUE(memcmp(&k1, &k2, sizeof(k1)) == 0);
    uint8_t pub[JOURNAL_PUBLIC_KEY_BYTES];
    ASSERT_STATUS(journal_public_key_load(pub_path, pub), PC_OK);
    ASSERT_TRUE(memcmp(pub, k1.public_key, sizeof(pub)) == 0);
    /* A missing .pub is written again from the key. */
    ASSERT_EQ(unlink(pub_path), 0);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k2), PC_OK);
    ASSERT_STATUS(journal_public_key_load(pub_path, pub), PC_OK);
    ASSERT_TRUE(memcmp(pub, k1.public_key, sizeof(pub)) == 0);
    journal_key_wipe(&k2);
    uint8_t zero[sizeof(k2)] = {0};
    ASSERT_TRUE(memcmp(&k2, zero, sizeof(k2)) == 0);
    /* A second key elsewhere differs. */
    path_in_temp(key_path, sizeof(key_path), "other.key");
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k2), PC_OK);
    ASSERT_TRUE(memcmp(k1.public_key, k2.public_key, 32) != 0);
}

static void test_key_refused(void) {
    char key_path[256];
    journal_key_t k;
    path_in_temp(key_path, sizeof(key_path), "loose.key");
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_OK);
    ASSERT_EQ(chmod(key_path, 0640), 0);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_KEY_FILE_INVALID);
    ASSERT_EQ(chmod(key_path, 0604), 0);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_KEY_FILE_INVALID);
    ASSERT_EQ(chmod(key_path, 0600), 0);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_OK);

    path_in_temp(key_path, sizeof(key_path), "short.key");
    write_file(key_path, "abcd\n", 0600);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_KEY_FILE_INVALID);
    path_in_temp(key_path, sizeof(key_path), "long.key");
    write_file(key_path,
               "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n", 0600);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_KEY_FILE_INVALID);
    path_in_temp(key_path, sizeof(key_path), "nothex.key");
    write_file(key_path,
               "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0600);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_KEY_FILE_INVALID);
    path_in_temp(key_path, sizeof(key_path), "nonl.key");
    write_file(key_path,
               "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0600);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_KEY_FILE_INVALID);
    /* A directory where the key should be. */
    path_in_temp(key_path, sizeof(key_path), "dir.key");
    ASSERT_EQ(mkdir(key_path, 0700), 0);
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_KEY_FILE_INVALID);

    uint8_t pub[32];
    path_in_temp(key_path, sizeof(key_path), "missing.pub");
    ASSERT_STATUS(journal_public_key_load(key_path, pub), PC_NOT_FOUND);
    path_in_temp(key_path, sizeof(key_path), "short.key");
    ASSERT_STATUS(journal_public_key_load(key_path, pub), PC_KEY_FILE_INVALID);
}

static void test_checkpoint_sign_verify(void) {
    char key_path[256];
    journal_key_t k, other;
    path_in_temp(key_path, sizeof(key_path), "sign.key");
    ASSERT_STATUS(journal_key_load_or_create(key_path, &k), PC_OK);
    path_in_temp(key_path, sizeof(key_path), "sign2.key");
    ASSERT_STATUS(journal_key_load_or_create(key_path, &other), PC_OK);
    journal_entry_t e = base_entry();
    journal_checkpoint_t cp;
    journal_checkpoint_sign(&k, &e, &cp);
    ASSERT_EQ(cp.seq, e.seq);
    ASSERT_TRUE(memcmp(cp.hash, e.hash, 32) == 0);
    ASSERT_TRUE(memcmp(cp.public_key, k.public_key, 32) == 0);
    ASSERT_TRUE(journal_checkpoint_valid(&cp, k.public_key));
    ASSERT_FALSE(journal_checkpoint_valid(&cp, other.public_key));
    journal_checkpoint_t bad = cp;
    bad.signature[10] ^= 0x04;
    ASSERT_FALSE(journal_checkpoint_valid(&bad, k.public_key));
    bad = cp;
    bad.hash[0] ^= 1;
    ASSERT_FALSE(journal_checkpoint_valid(&bad, k.public_key));
    bad = cp;
    bad.seq += 1;
    ASSERT_FALSE(journal_checkpoint_valid(&bad, k.public_key));
}

static void test_hex(void) {
    const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9];
    journal_hex(bytes, 4, out);
    ASSERT_STR_EQ(out, "000fa5ff");
}

int main(void) {
    ASSERT_TRUE(mkdtemp(temp_dir) != NULL);
    TEST_RUN(test_transfer_hash_covers_every_field);
    TEST_RUN(test_encoding_is_unambiguous);
    TEST_RUN(test_account_hash_covers_creation_fields);
    TEST_RUN(test_failure_hash);
    TEST_RUN(test_content_hash);
    TEST_RUN(test_entry_seal_covers_every_field);
    TEST_RUN(test_key_create_and_reload);
    TEST_RUN(test_key_refused);
    TEST_RUN(test_checkpoint_sign_verify);
    TEST_RUN(test_hex);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", temp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", temp_dir);
    return test_finish();
}
