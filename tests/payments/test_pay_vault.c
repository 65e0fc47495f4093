/* Goal: the card vault keeps a card number unreadable at rest and readable only with
 * its key: a tokenized row holds ciphertext, BIN, last 4 and a keyed fingerprint, never
 * the number; the number comes back only through vault_reveal with the right key file;
 * a restart with the same key file opens the same keys; a missing key file, another
 * key, a key file readable by others, or a tampered ciphertext are refused with their
 * own codes; the fingerprint is the same for one card and differs across cards and keys.
 * A data-key rotation re-encrypts the stored cards and retires the old key; a card
 * tokenized under the old key before it and stored after it is re-encrypted on the way
 * in, and after a restart only the new key exists. A background rotation runs while
 * the caller goes on, refuses a second one while it runs, reports its progress, and
 * stops between batches when the server shuts down, every card still opening.
 * Method: a real SQLite store and writer in a temp dir; rows written and read back
 * through the store; the database files are searched byte for byte for the number. */
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
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

/* A store, writer and vault on '<dir>/<name>.db' (the globals name its files). */
static void vault_setup(const char *name, store_t **store, writer_t **writer, vault_t **vault,
                        vault_config_t *config) {
    snprintf(db_path, sizeof db_path, "%s/%s.db", dir, name);
    snprintf(key_path, sizeof key_path, "%s/%s.db.vault-key", dir, name);
    start(store, writer);
    *config = (vault_config_t){.key_path = key_path, .store = *store, .writer = *writer};
    ASSERT_STATUS(vault_open(vault, config), PC_OK);
}

static void test_data_key_rotation(void) {
    store_t *store;
    writer_t *writer;
    vault_t *vault;
    vault_config_t config;
    vault_setup("rekey", &store, &writer, &vault, &config);
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

/* A writer command that holds the writer thread until released: what a rotation
 * submits meanwhile waits behind it. */
typedef struct {
    writer_cmd_t cmd;
    writer_t *writer;
    pthread_t thread;
    atomic_bool entered, release;
} gate_t;

static pc_status gate_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)tx;
    gate_t *gate = (gate_t *)cmd;
    atomic_store(&gate->entered, true);
    while (!atomic_load(&gate->release)) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    return PC_OK;
}

static void *gate_submit(void *arg) {
    gate_t *gate = arg;
    ASSERT_STATUS(writer_submit_wait(gate->writer, &gate->cmd), PC_OK);
    return NULL;
}

static void gate_close(gate_t *gate, writer_t *writer) {
    memset(gate, 0, sizeof *gate);
    gate->cmd = (writer_cmd_t){.kind = WRITER_CMD_EXEC, .event_count = 1, .in_transaction = gate_in_tx};
    gate->writer = writer;
    ASSERT_TRUE(pthread_create(&gate->thread, NULL, gate_submit, gate) == 0);
    while (!atomic_load(&gate->entered)) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
}

static void gate_open(gate_t *gate) {
    atomic_store(&gate->release, true);
    ASSERT_TRUE(pthread_join(gate->thread, NULL) == 0);
}

static void *gate_open_later(void *arg) {
    struct timespec pause = {1, 0}; /* the main thread asks the rotation to stop meanwhile */
    nanosleep(&pause, NULL);
    atomic_store(&((gate_t *)arg)->release, true);
    return NULL;
}

/* Polls until the rotation is no longer running. */
static void rotation_wait(vault_t *vault, vault_rotation_status_t *out) {
    for (int i = 0; i < 120000; i++) {
        vault_rotation_status(vault, out);
        if (out->state != VAULT_ROTATION_RUNNING) return;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    ASSERT_TRUE(!"the background rotation ended within 120 s");
}

static void test_background_rotation(void) {
    store_t *store;
    writer_t *writer;
    vault_t *vault;
    vault_config_t config;
    vault_setup("background", &store, &writer, &vault, &config);
    vault_rotation_status_t job;
    vault_rotation_status(vault, &job);
    ASSERT_EQ(job.state, VAULT_ROTATION_IDLE);
    const char *pans[3] = {PAN, "5555555555554444", "4000056655665556"};
    store_vault_card_t cards[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_STATUS(vault_tokenize(vault, pans[i], 12, 2030, &cards[i]), PC_OK);
        card_store(writer, &cards[i]);
    }
    char first_key[PC_ID_SIZE];
    snprintf(first_key, sizeof first_key, "%s", cards[0].data_key_id);
    gate_t gate;
    gate_close(&gate, writer);
    ASSERT_STATUS(vault_rotate_data_key_start(vault), PC_OK);        /* returns while the writer is held */
    vault_rotation_status(vault, &job);
    ASSERT_EQ(job.state, VAULT_ROTATION_RUNNING);
    ASSERT_TRUE(job.started_ns > 0 && job.finished_ns == 0);
    vault_data_rotation_t refused;
    ASSERT_STATUS(vault_rotate_data_key_start(vault), PC_VAULT_ROTATION_IN_PROGRESS);
    ASSERT_STATUS(vault_rotate_data_key(vault, &refused), PC_VAULT_ROTATION_IN_PROGRESS);
    gate_open(&gate);
    rotation_wait(vault, &job);
    ASSERT_EQ(job.state, VAULT_ROTATION_SUCCEEDED);
    ASSERT_EQ(job.progress.cards_reencrypted, 3);
    ASSERT_EQ(job.progress.retired_count, 1);
    ASSERT_STR_EQ(job.progress.retired[0], first_key);
    ASSERT_TRUE(job.finished_ns >= job.started_ns);
    for (int i = 0; i < 3; i++) reveal_stored(store, vault, cards[i].token, pans[i], job.progress.data_key_id);
    char second_key[PC_ID_SIZE];
    snprintf(second_key, sizeof second_key, "%s", job.progress.data_key_id);

    gate_close(&gate, writer);                                        /* a shutdown stops it between batches */
    ASSERT_STATUS(vault_rotate_data_key_start(vault), PC_OK);
    pthread_t opener;
    ASSERT_TRUE(pthread_create(&opener, NULL, gate_open_later, &gate) == 0);
    vault_rotation_stop(vault);
    ASSERT_TRUE(pthread_join(opener, NULL) == 0);
    ASSERT_TRUE(pthread_join(gate.thread, NULL) == 0);
    vault_rotation_status(vault, &job);
    ASSERT_EQ(job.state, VAULT_ROTATION_FAILED);
    ASSERT_STATUS(job.error, PC_SHUTTING_DOWN);
    ASSERT_EQ(job.progress.cards_reencrypted, 0);
    for (int i = 0; i < 3; i++) reveal_stored(store, vault, cards[i].token, pans[i], second_key);
    vault_close(vault);
    stop(store, writer);

    start(&store, &writer);                                           /* the next rotation finishes the work */
    config.store = store;
    config.writer = writer;
    ASSERT_STATUS(vault_open(&vault, &config), PC_OK);
    ASSERT_STATUS(vault_rotate_data_key_start(vault), PC_OK);
    rotation_wait(vault, &job);
    ASSERT_EQ(job.state, VAULT_ROTATION_SUCCEEDED);
    ASSERT_EQ(job.progress.cards_reencrypted, 3);
    ASSERT_EQ(job.progress.keys_remaining, 0);
    ASSERT_EQ(job.progress.retired_count, 2);                          /* the second key and the unused one */
    for (int i = 0; i < 3; i++) reveal_stored(store, vault, cards[i].token, pans[i], job.progress.data_key_id);
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
    TEST_RUN(test_background_rotation);
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
