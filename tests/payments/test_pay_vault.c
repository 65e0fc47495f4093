/* Goal: the card vault keeps a card number unreadable at rest and readable only with
 * its key: a tokenized row holds ciphertext, BIN, last 4 and a keyed fingerprint, never
 * the number; the number comes back only through vault_reveal with the right key file;
 * a restart with the same key file opens the same keys; a missing key file, another
 * key, a key file readable by others, or a tampered ciphertext are refused with their
 * own codes; the fingerprint is the same for one card and differs across cards and keys.
 * A data-key rotation re-encrypts the stored cards and retires the old key; a card
 * tokenized under the old key before it and stored after it is re-encrypted on the way
 * in, and after a restart only the new key exists.
 * Method: a real SQLite store and writer in a temp dir; rows written and read back
 * through the store; the database files are searched byte for byte for the number. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "payments/vault.h"
#include "store/store_payments.h"
#include "test.h"

static char dir[256], db_path[300], key_path[300], other_key_path[300];
static const char *const PAN = "4242424242424242";

static void start(store_t **store, writer_t **writer) {
    store_options_t options = {.create = true};
    char signing[320];
    snprintf(signing, sizeof signing, "%s.key", db_path);
    ASSERT_STATUS(store_open(store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(writer, *store, signing, NULL), PC_OK);
}

static void stop(store_t *store, writer_t *writer) {
    writer_stop(writer);
    store_close(store);
}

typedef struct {
    writer_cmd_t cmd;
    store_vault_card_t card;
} card_job;

static pc_status card_in_tx(writer_cmd_t *cmd, store_tx_t *tx) { return store_vault_card_put(tx, &((card_job *)cmd)->card); }

static void card_store(writer_t *writer, const store_vault_card_t *card) {
    card_job job = {.cmd = {.kind = WRITER_CMD_EXEC, .event_count = 1, .in_transaction = card_in_tx}, .card = *card};
    ASSERT_STATUS(writer_submit_wait(writer, &job.cmd), PC_OK);
}

static bool file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return false;
    size_t n = strlen(needle), got;
    static char buf[1 << 20];
    bool found = false;
    size_t keep = 0;
    while ((got = fread(buf + keep, 1, sizeof buf - keep, f)) > 0 && !found) {
        size_t total = keep + got;
        for (size_t i = 0; i + n <= total && !found; i++) found = memcmp(buf + i, needle, n) == 0;
        keep = n - 1 < total ? n - 1 : total;
        memmove(buf, buf + total - keep, keep);
    }
    fclose(f);
    return found;
}

static void test_round_trip(void) {
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    vault_t *vault;
    vault_config_t config = {.key_path = key_path, .store = store, .writer = writer};
    ASSERT_STATUS(vault_open(&vault, &config), PC_OK);
    struct stat st;
    ASSERT_EQ(stat(key_path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    store_vault_card_t card;
    ASSERT_STATUS(vault_tokenize(vault, PAN, 12, 2030, &card), PC_OK);
    ASSERT_STR_EQ(card.bin, "424242");
    ASSERT_STR_EQ(card.last4, "4242");
    ASSERT_TRUE(memmem(&card, sizeof card, PAN, strlen(PAN)) == NULL); /* the row holds no number */
    ASSERT_TRUE(memmem(card.ciphertext, card.ciphertext_bytes, "42424242", 8) == NULL);
    card_store(writer, &card);
    store_vault_card_t other;
    ASSERT_STATUS(vault_tokenize(vault, PAN, 12, 2030, &other), PC_OK);
    ASSERT_STR_EQ(other.fingerprint, card.fingerprint);               /* same card, same fingerprint */
    ASSERT_TRUE(strcmp(other.token, card.token) != 0);                 /* tokens are per use */
    ASSERT_TRUE(memcmp(other.nonce, card.nonce, sizeof card.nonce) != 0);
    ASSERT_STATUS(vault_tokenize(vault, "4000000000000051", 12, 2030, &other), PC_OK);
    ASSERT_TRUE(strcmp(other.fingerprint, card.fingerprint) != 0);
    char number[GW_CARD_NUMBER_SIZE];
    ASSERT_STATUS(vault_reveal(vault, &card, number, sizeof number), PC_OK);
    ASSERT_STR_EQ(number, PAN);
    store_vault_card_t tampered = card;
    tampered.ciphertext[0] ^= 1;
    ASSERT_STATUS(vault_reveal(vault, &tampered, number, sizeof number), PC_VAULT_FAILED);
    snprintf(tampered.token, sizeof tampered.token, "tok_swapped"); /* a row moved under another token */
    tampered.ciphertext[0] ^= 1;
    ASSERT_STATUS(vault_reveal(vault, &tampered, number, sizeof number), PC_VAULT_FAILED);
    vault_close(vault);
    stop(store, writer);
    /* restart: the same key file opens the stored keys; the row read back reveals */
    start(&store, &writer);
    config.store = store;
    config.writer = writer;
    ASSERT_STATUS(vault_open(&vault, &config), PC_OK);
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    store_vault_card_t stored;
    ASSERT_STATUS(store_vault_card_get(reader, card.token, &stored), PC_OK);
    ASSERT_STATUS(vault_reveal(vault, &stored, number, sizeof number), PC_OK);
    ASSERT_STR_EQ(number, PAN);
    store_vault_card_t fresh;
    ASSERT_STATUS(vault_tokenize(vault, PAN, 12, 2030, &fresh), PC_OK);
    ASSERT_STR_EQ(fresh.fingerprint, card.fingerprint);               /* the fingerprint key lasts */
    store_reader_close(reader);
    vault_close(vault);
    stop(store, writer);
    const char *suffixes[] = {"", "-wal", "-index"};
    for (size_t i = 0; i < 3; i++) {
        char path[340];
        snprintf(path, sizeof path, "%s%s", db_path, suffixes[i]);
        if (file_contains(path, PAN)) TEST_FAIL("%s holds the card number", path);
    }
}

static void test_refusals(void) {
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    vault_t *vault = NULL;
    char missing[340];
    snprintf(missing, sizeof missing, "%s/none.key", dir);
    vault_config_t config = {.key_path = missing, .store = store, .writer = writer};
    ASSERT_STATUS(vault_open(&vault, &config), PC_VAULT_KEY_MISSING);   /* keys exist: never a new key */
    /* another key file of the right form */
    uint8_t other[32];
    randombytes_buf(other, sizeof other);
    ASSERT_STATUS(pc_key_file_write(other_key_path, other, sizeof other, 0600), PC_OK);
    config.key_path = other_key_path;
    ASSERT_STATUS(vault_open(&vault, &config), PC_VAULT_KEY_MISMATCH);
    ASSERT_EQ(chmod(key_path, 0644), 0);
    config.key_path = key_path;
    ASSERT_STATUS(vault_open(&vault, &config), PC_KEY_FILE_INVALID);    /* readable by others */
    ASSERT_EQ(chmod(key_path, 0600), 0);
    ASSERT_STATUS(vault_open(&vault, &config), PC_OK);
    vault_close(vault);
    stop(store, writer);
}

typedef struct {
    writer_cmd_t cmd;
    vault_t *vault;
    store_vault_card_t card;
} vault_card_job;

static pc_status vault_card_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    vault_card_job *job = (vault_card_job *)cmd;
    return vault_card_store(job->vault, tx, &job->card);
}

static void reveal_stored(store_t *store, vault_t *vault, const char *token, const char *pan, const char *key_id) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    store_vault_card_t stored;
    ASSERT_STATUS(store_vault_card_get(reader, token, &stored), PC_OK);
    store_reader_close(reader);
    ASSERT_STR_EQ(stored.data_key_id, key_id);
    char number[GW_CARD_NUMBER_SIZE];
    ASSERT_STATUS(vault_reveal(vault, &stored, number, sizeof number), PC_OK);
    ASSERT_STR_EQ(number, pan);
}

static void test_data_key_rotation(void) {
    snprintf(db_path, sizeof db_path, "%s/rekey.db", dir);
    snprintf(key_path, sizeof key_path, "%s/rekey.db.vault-key", dir);
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    vault_t *vault;
    vault_config_t config = {.key_path = key_path, .store = store, .writer = writer};
    ASSERT_STATUS(vault_open(&vault, &config), PC_OK);
    store_vault_card_t stored_before, in_flight;
    ASSERT_STATUS(vault_tokenize(vault, PAN, 12, 2030, &stored_before), PC_OK);
    card_store(writer, &stored_before);
    ASSERT_STATUS(vault_tokenize(vault, "5555555555554444", 12, 2030, &in_flight), PC_OK);
    char old_key[PC_ID_SIZE];
    snprintf(old_key, sizeof old_key, "%s", in_flight.data_key_id);
    vault_data_rotation_t rotation;
    ASSERT_STATUS(vault_rotate_data_key(vault, &rotation), PC_OK);
    ASSERT_EQ(rotation.cards_reencrypted, 1);
    ASSERT_EQ(rotation.retired_count, 1);
    ASSERT_STR_EQ(rotation.retired[0], old_key);
    ASSERT_EQ(rotation.keys_remaining, 0);
    ASSERT_TRUE(strcmp(rotation.data_key_id, old_key) != 0);
    reveal_stored(store, vault, stored_before.token, PAN, rotation.data_key_id);
    char number[GW_CARD_NUMBER_SIZE];
    ASSERT_STATUS(vault_reveal(vault, &stored_before, number, sizeof number), PC_OK); /* old copy: key in memory */
    vault_card_job job = {.cmd = {.kind = WRITER_CMD_EXEC, .event_count = 1, .in_transaction = vault_card_in_tx},
                          .vault = vault, .card = in_flight};
    ASSERT_STATUS(writer_submit_wait(writer, &job.cmd), PC_OK);
    ASSERT_STR_EQ(job.card.data_key_id, rotation.data_key_id);        /* re-encrypted on the way in */
    reveal_stored(store, vault, in_flight.token, "5555555555554444", rotation.data_key_id);
    store_vault_card_t fresh;
    ASSERT_STATUS(vault_tokenize(vault, PAN, 12, 2030, &fresh), PC_OK);
    ASSERT_STR_EQ(fresh.data_key_id, rotation.data_key_id);
    ASSERT_STR_EQ(fresh.fingerprint, stored_before.fingerprint);      /* the fingerprint key stays */
    vault_data_rotation_t again;
    ASSERT_STATUS(vault_rotate_data_key(vault, &again), PC_OK);       /* twice: both cards move again */
    ASSERT_EQ(again.cards_reencrypted, 2);
    ASSERT_STR_EQ(again.retired[0], rotation.data_key_id);
    vault_close(vault);
    stop(store, writer);
    start(&store, &writer);                                           /* only the newest key is stored */
    config.store = store;
    config.writer = writer;
    ASSERT_STATUS(vault_open(&vault, &config), PC_OK);
    reveal_stored(store, vault, stored_before.token, PAN, again.data_key_id);
    reveal_stored(store, vault, in_flight.token, "5555555555554444", again.data_key_id);
    ASSERT_STATUS(vault_reveal(vault, &stored_before, number, sizeof number), PC_VAULT_FAILED);
    for (uint32_t i = 0; i < 2 * VAULT_DATA_KEYS_MAX; i++) {          /* retired keys' slots are reused */
        ASSERT_STATUS(vault_rotate_data_key(vault, &again), PC_OK);
        ASSERT_EQ(again.retired_count, 1);
    }
    reveal_stored(store, vault, in_flight.token, "5555555555554444", again.data_key_id);
    vault_close(vault);
    stop(store, writer);
}

int main(void) {
    pc_sodium_ready();
    snprintf(dir, sizeof dir, "/tmp/paycore-test-vault-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/vault.db", dir);
    snprintf(key_path, sizeof key_path, "%s/vault.db.vault-key", dir);
    snprintf(other_key_path, sizeof other_key_path, "%s/other.key", dir);
    TEST_RUN(test_round_trip);
    TEST_RUN(test_refusals);
    TEST_RUN(test_data_key_rotation);
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
