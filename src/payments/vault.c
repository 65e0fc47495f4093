/* payments/vault.c: the card vault's first implementation: one key-encryption key
 * (KEK) from a 0600 key file; a data key and a fingerprint key, each 32 random bytes,
 * stored wrapped (XChaCha20-Poly1305 under the KEK, the key's id and kind as
 * associated data) in vault_keys with the KEK's id; cards encrypted under the newest
 * data key with their token as associated data. Rotation (`paycore keys rotate`) is
 * not built yet: every data key found is kept, so rows of an older key still open. */
#include "payments/vault.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "obs/obs.h"

#define VAULT_KEY_BYTES 32
#define VAULT_DATA_KEYS_MAX 16   /* rotations kept readable */
#define VAULT_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define VAULT_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

static_assert(VAULT_NONCE_BYTES == 24, "store_vault_card_t holds a 24-byte nonce");
static_assert(VAULT_NONCE_BYTES + VAULT_KEY_BYTES + VAULT_TAG_BYTES <= STORE_VAULT_WRAPPED_BYTES_MAX,
              "a wrapped key fits its column");
static_assert(GW_CARD_NUMBER_SIZE - 1 + VAULT_TAG_BYTES <= STORE_VAULT_CIPHERTEXT_BYTES_MAX,
              "an encrypted card number fits its column");

typedef struct {
    char id[PC_ID_SIZE];
    uint8_t key[VAULT_KEY_BYTES];
} vault_key_t;

struct vault {
    uint8_t kek[VAULT_KEY_BYTES];
    char kek_id[PC_ID_SIZE];
    vault_key_t data[VAULT_DATA_KEYS_MAX];
    uint32_t data_count;              /* data[data_count - 1] encrypts new cards */
    uint8_t fingerprint_key[VAULT_KEY_BYTES];
    bool has_fingerprint;
    pc_status load_status;            /* while loading: the first unwrap failure */
};

static void kek_id_make(const uint8_t kek[VAULT_KEY_BYTES], char out[PC_ID_SIZE]) {
    static const char context[] = "paycore-vault-kek-id";
    uint8_t digest[8];
    crypto_generichash(digest, sizeof digest, (const uint8_t *)context, sizeof context, kek, VAULT_KEY_BYTES);
    char hex[2 * sizeof digest + 1];
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    snprintf(out, PC_ID_SIZE, "kek_%s", hex);
}

static void random_id(const char *prefix, char out[PC_ID_SIZE]) {
    uint8_t bytes[12];
    randombytes_buf(bytes, sizeof bytes);
    char hex[2 * sizeof bytes + 1];
    sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
    snprintf(out, PC_ID_SIZE, "%s%s", prefix, hex);
}

/* The associated data of a wrapped key: its id and kind, so a row cannot be swapped. */
static size_t wrap_ad(const char *id, const char *kind, uint8_t *out, size_t out_bytes) {
    int n = snprintf((char *)out, out_bytes, "%s\n%s", id, kind);
    return n > 0 && (size_t)n < out_bytes ? (size_t)n : 0;
}

static void key_wrap(const vault_t *vault, const uint8_t key[VAULT_KEY_BYTES], store_vault_key_t *row) {
    uint8_t ad[PC_ID_SIZE + 20];
    size_t ad_bytes = wrap_ad(row->id, row->kind, ad, sizeof ad);
    randombytes_buf(row->wrapped, VAULT_NONCE_BYTES);
    unsigned long long ct_bytes = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(row->wrapped + VAULT_NONCE_BYTES, &ct_bytes, key, VAULT_KEY_BYTES,
                                               ad, ad_bytes, NULL, row->wrapped, vault->kek);
    row->wrapped_bytes = VAULT_NONCE_BYTES + (size_t)ct_bytes;
    snprintf(row->kek_id, sizeof row->kek_id, "%s", vault->kek_id);
}

static bool key_unwrap(const vault_t *vault, const store_vault_key_t *row, uint8_t key_out[VAULT_KEY_BYTES]) {
    if (row->wrapped_bytes != VAULT_NONCE_BYTES + VAULT_KEY_BYTES + VAULT_TAG_BYTES) return false;
    uint8_t ad[PC_ID_SIZE + 20];
    size_t ad_bytes = wrap_ad(row->id, row->kind, ad, sizeof ad);
    unsigned long long key_bytes = 0;
    return crypto_aead_xchacha20poly1305_ietf_decrypt(key_out, &key_bytes, NULL, row->wrapped + VAULT_NONCE_BYTES,
                                                      row->wrapped_bytes - VAULT_NONCE_BYTES, ad, ad_bytes,
                                                      row->wrapped, vault->kek) == 0 &&
           key_bytes == VAULT_KEY_BYTES;
}

/* One stored key row: unwrapped into memory, or the reason it could not be. */
static void key_load(const store_vault_key_t *row, void *ctx) {
    vault_t *vault = ctx;
    if (vault->load_status != PC_OK) return;
    if (strcmp(row->kek_id, vault->kek_id) != 0) {
        vault->load_status = PC_VAULT_KEY_MISMATCH;
        return;
    }
    uint8_t key[VAULT_KEY_BYTES];
    if (!key_unwrap(vault, row, key)) {
        vault->load_status = PC_VAULT_KEY_MISMATCH;
        return;
    }
    if (strcmp(row->kind, "fingerprint") == 0) {
        memcpy(vault->fingerprint_key, key, VAULT_KEY_BYTES);
        vault->has_fingerprint = true;
    } else if (vault->data_count < VAULT_DATA_KEYS_MAX) {
        vault_key_t *slot = &vault->data[vault->data_count++];
        snprintf(slot->id, sizeof slot->id, "%s", row->id);
        memcpy(slot->key, key, VAULT_KEY_BYTES);
    }
    sodium_memzero(key, sizeof key);
}

typedef struct {
    writer_cmd_t cmd; /* first: writer_submit_wait keeps cmd->user for itself */
    store_vault_key_t rows[2];
} keys_job_t;

static pc_status keys_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    keys_job_t *job = (keys_job_t *)cmd;
    pc_status status = store_vault_key_put(tx, &job->rows[0]);
    return status == PC_OK ? store_vault_key_put(tx, &job->rows[1]) : status;
}

/* A new database: a data key and a fingerprint key, stored wrapped. */
static pc_status keys_create(vault_t *vault, writer_t *writer) {
    keys_job_t job;
    memset(&job, 0, sizeof job);
    uint64_t now_ns = pc_wall_ns();
    const char *kinds[2] = {"data", "fingerprint"};
    uint8_t keys[2][VAULT_KEY_BYTES];
    for (int i = 0; i < 2; i++) {
        random_id("dk_", job.rows[i].id);
        snprintf(job.rows[i].kind, sizeof job.rows[i].kind, "%s", kinds[i]);
        job.rows[i].created_ns = now_ns;
        randombytes_buf(keys[i], VAULT_KEY_BYTES);
        key_wrap(vault, keys[i], &job.rows[i]);
    }
    job.cmd.kind = WRITER_CMD_EXEC;
    job.cmd.event_count = 1;
    job.cmd.in_transaction = keys_in_tx;
    pc_status status = writer_submit_wait(writer, &job.cmd);
    if (status == PC_OK) {
        snprintf(vault->data[0].id, sizeof vault->data[0].id, "%s", job.rows[0].id);
        memcpy(vault->data[0].key, keys[0], VAULT_KEY_BYTES);
        vault->data_count = 1;
        memcpy(vault->fingerprint_key, keys[1], VAULT_KEY_BYTES);
        vault->has_fingerprint = true;
    }
    sodium_memzero(keys, sizeof keys);
    return status;
}

/* The key file: read, or made (0600) when missing and 'may_create'. */
static pc_status kek_load(vault_t *vault, const char *path, bool may_create) {
    pc_status status = pc_key_file_read(path, true, vault->kek, VAULT_KEY_BYTES);
    if (status == PC_NOT_FOUND && may_create) {
        randombytes_buf(vault->kek, VAULT_KEY_BYTES);
        status = pc_key_file_write(path, vault->kek, VAULT_KEY_BYTES, 0600);
        if (status == PC_OK) obs_logf(OBS_LEVEL_INFO, "vault: key-encryption key created (%s)", path);
    } else if (status == PC_NOT_FOUND) {
        status = PC_VAULT_KEY_MISSING;
    }
    if (status == PC_OK) kek_id_make(vault->kek, vault->kek_id);
    return status;
}

typedef struct {
    uint32_t count;
} key_count_t;

static void key_count(const store_vault_key_t *row, void *ctx) {
    (void)row;
    ((key_count_t *)ctx)->count++;
}

static pc_status vault_load(vault_t *vault, const vault_config_t *config) {
    store_reader_t *reader = NULL;
    pc_status status = store_reader_open(config->store, &reader);
    if (status != PC_OK) return status;
    key_count_t stored = {0};
    status = store_vault_keys_list(reader, key_count, &stored);
    if (status == PC_OK) status = kek_load(vault, config->key_path, stored.count == 0);
    if (status == PC_OK && stored.count > 0) {
        status = store_vault_keys_list(reader, key_load, vault);
        if (status == PC_OK) status = vault->load_status;
        if (status == PC_OK && (vault->data_count == 0 || !vault->has_fingerprint)) status = PC_VAULT_KEY_MISMATCH;
    }
    store_reader_close(reader);
    if (status == PC_OK && stored.count == 0) status = keys_create(vault, config->writer);
    return status;
}

pc_status vault_open(vault_t **out, const vault_config_t *config) {
    pc_sodium_ready();
    vault_t *vault = sodium_malloc(sizeof *vault);
    if (vault == NULL) return PC_NO_MEMORY;
    memset(vault, 0, sizeof *vault);
    pc_status status = vault_load(vault, config);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "vault: cannot open with key file %s: %s (%s)", config->key_path,
                 pc_status_code(status), pc_status_message(status));
        vault_close(vault);
        return status;
    }
    *out = vault;
    return PC_OK;
}

void vault_close(vault_t *vault) {
    if (vault == NULL) return;
    sodium_memzero(vault, sizeof *vault);
    sodium_free(vault);
}

void vault_fingerprint(vault_t *vault, const char *number, char out[65]) {
    uint8_t digest[32];
    crypto_generichash(digest, sizeof digest, (const uint8_t *)number, strlen(number), vault->fingerprint_key,
                       VAULT_KEY_BYTES);
    sodium_bin2hex(out, 65, digest, sizeof digest);
}

pc_status vault_tokenize(vault_t *vault, const char *number, uint32_t exp_month, uint32_t exp_year,
                         store_vault_card_t *out) {
    size_t digits = strlen(number);
    if (digits < 12 || digits >= GW_CARD_NUMBER_SIZE || vault->data_count == 0) return PC_VAULT_FAILED;
    memset(out, 0, sizeof *out);
    const vault_key_t *key = &vault->data[vault->data_count - 1];
    random_id("tok_", out->token);
    snprintf(out->data_key_id, sizeof out->data_key_id, "%s", key->id);
    randombytes_buf(out->nonce, sizeof out->nonce);
    unsigned long long ct_bytes = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out->ciphertext, &ct_bytes, (const uint8_t *)number, digits,
                                               (const uint8_t *)out->token, strlen(out->token), NULL, out->nonce,
                                               key->key);
    out->ciphertext_bytes = (size_t)ct_bytes;
    memcpy(out->bin, number, 6);
    memcpy(out->last4, number + digits - 4, 4);
    out->exp_month = exp_month;
    out->exp_year = exp_year;
    vault_fingerprint(vault, number, out->fingerprint);
    out->created_ns = pc_wall_ns();
    return PC_OK;
}

pc_status vault_reveal(vault_t *vault, const store_vault_card_t *card, char *number_out, size_t number_size) {
    const vault_key_t *key = NULL;
    for (uint32_t i = 0; i < vault->data_count && key == NULL; i++) {
        if (strcmp(vault->data[i].id, card->data_key_id) == 0) key = &vault->data[i];
    }
    if (key == NULL || card->ciphertext_bytes <= VAULT_TAG_BYTES ||
        card->ciphertext_bytes - VAULT_TAG_BYTES >= number_size) {
        return PC_VAULT_FAILED;
    }
    unsigned long long bytes = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)number_out, &bytes, NULL, card->ciphertext,
                                                   card->ciphertext_bytes, (const uint8_t *)card->token,
                                                   strlen(card->token), card->nonce, key->key) != 0) {
        return PC_VAULT_FAILED;
    }
    number_out[bytes] = '\0';
    return PC_OK;
}
