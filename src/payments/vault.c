/* payments/vault.c: the card vault's first implementation: one key-encryption key
 * (KEK) from a 0600 key file; a data key and a fingerprint key, each 32 random bytes,
 * stored wrapped (XChaCha20-Poly1305 under the KEK, the key's id and kind as
 * associated data) in vault_keys with the KEK's id; cards encrypted under the newest
 * data key with their token as associated data. Every data key found is kept, so
 * rows of an older key still open. Rotation (`paycore keys rotate`) re-wraps every
 * stored key under a new KEK while the server runs (the unwrapped keys in memory do not
 * change), in an order a crash cannot break: the new KEK into '<key file>.next', the
 * rows re-wrapped in one transaction, then the key file replaced (rename) and '.next'
 * removed; vault_open finishes a rotation that committed but did not replace the file.
 * A data-key rotation (`paycore keys rotate --data-key`) adds a new data key, re-encrypts
 * the cards under older ones in bounded batches and deletes each older key once no card
 * is under it; retired keys stay in memory so a card tokenized just before still opens. */
#include "payments/vault.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "obs/obs.h"
#include "payments/pay_internal.h"

#define VAULT_KEY_BYTES 32
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
    uint64_t created_ns;      /* keys load in this order: the newest encrypts */
    bool retired;             /* deleted from the store; kept for cards tokenized before */
} vault_key_t;

struct vault {
    uint8_t kek[VAULT_KEY_BYTES];
    char kek_id[PC_ID_SIZE];
    vault_key_t data[VAULT_DATA_KEYS_MAX];
    uint32_t data_count;              /* data[data_count - 1] encrypts new cards */
    pthread_rwlock_t keys_lock;       /* data, data_count: written by a data-key rotation only */
    bool keys_lock_ready;
    uint8_t fingerprint_key[VAULT_KEY_BYTES];
    bool has_fingerprint;
    pc_status load_status;            /* while loading: the first unwrap failure */
    char key_path[PATH_MAX];
    store_t *store;                   /* borrowed, for rotation */
    writer_t *writer;
    pthread_mutex_t rotate_mutex;     /* one rotation at a time; guards kek, kek_id */
    bool mutex_ready;
    pthread_mutex_t job_mutex;        /* guards job */
    bool job_mutex_ready;
    vault_rotation_status_t job;      /* the latest data-key rotation */
    pthread_t job_thread;             /* a background one, joined by vault_rotation_stop */
    bool job_joinable;
    atomic_bool job_cancel;
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

static void key_wrap(const uint8_t kek[VAULT_KEY_BYTES], const char *kek_id, const uint8_t key[VAULT_KEY_BYTES],
                     store_vault_key_t *row) {
    uint8_t ad[PC_ID_SIZE + 20];
    size_t ad_bytes = wrap_ad(row->id, row->kind, ad, sizeof ad);
    randombytes_buf(row->wrapped, VAULT_NONCE_BYTES);
    unsigned long long ct_bytes = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(row->wrapped + VAULT_NONCE_BYTES, &ct_bytes, key, VAULT_KEY_BYTES,
                                               ad, ad_bytes, NULL, row->wrapped, kek);
    row->wrapped_bytes = VAULT_NONCE_BYTES + (size_t)ct_bytes;
    pc_str_copy(row->kek_id, sizeof row->kek_id, kek_id);
}

static bool key_unwrap(const uint8_t kek[VAULT_KEY_BYTES], const store_vault_key_t *row,
                       uint8_t key_out[VAULT_KEY_BYTES]) {
    if (row->wrapped_bytes != VAULT_NONCE_BYTES + VAULT_KEY_BYTES + VAULT_TAG_BYTES) return false;
    uint8_t ad[PC_ID_SIZE + 20];
    size_t ad_bytes = wrap_ad(row->id, row->kind, ad, sizeof ad);
    unsigned long long key_bytes = 0;
    return crypto_aead_xchacha20poly1305_ietf_decrypt(key_out, &key_bytes, NULL, row->wrapped + VAULT_NONCE_BYTES,
                                                      row->wrapped_bytes - VAULT_NONCE_BYTES, ad, ad_bytes,
                                                      row->wrapped, kek) == 0 &&
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
    if (!key_unwrap(vault->kek, row, key)) {
        vault->load_status = PC_VAULT_KEY_MISMATCH;
        return;
    }
    if (strcmp(row->kind, "fingerprint") == 0) {
        memcpy(vault->fingerprint_key, key, VAULT_KEY_BYTES);
        vault->has_fingerprint = true;
    } else if (vault->data_count < VAULT_DATA_KEYS_MAX) {
        vault_key_t *slot = &vault->data[vault->data_count++];
        pc_str_copy(slot->id, sizeof slot->id, row->id);
        memcpy(slot->key, key, VAULT_KEY_BYTES);
        slot->created_ns = row->created_ns;
    }
    sodium_memzero(key, sizeof key);
}

typedef struct {
    writer_cmd_t cmd; /* first: writer_submit_wait keeps cmd->user for itself */
    store_vault_key_t rows[VAULT_DATA_KEYS_MAX + 1];
    uint32_t count;
    bool overflow;    /* rotation: more rows than a vault keeps */
} keys_job_t;

static pc_status keys_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    keys_job_t *job = (keys_job_t *)cmd;
    pc_status status = PC_OK;
    for (uint32_t i = 0; i < job->count && status == PC_OK; i++) status = store_vault_key_put(tx, &job->rows[i]);
    return status;
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
        pc_str_copy(job.rows[i].kind, sizeof job.rows[i].kind, kinds[i]);
        job.rows[i].created_ns = now_ns;
        randombytes_buf(keys[i], VAULT_KEY_BYTES);
        key_wrap(vault->kek, vault->kek_id, keys[i], &job.rows[i]);
    }
    job.count = 2;
    job.cmd.kind = WRITER_CMD_EXEC;
    job.cmd.event_count = 1;
    job.cmd.in_transaction = keys_in_tx;
    pc_status status = writer_submit_wait(writer, &job.cmd);
    if (status == PC_OK) {
        pc_str_copy(vault->data[0].id, sizeof vault->data[0].id, job.rows[0].id);
        memcpy(vault->data[0].key, keys[0], VAULT_KEY_BYTES);
        vault->data[0].created_ns = now_ns;
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
    char kek_id[PC_ID_SIZE];          /* the first row's wrapping key */
} key_count_t;

static void key_count(const store_vault_key_t *row, void *ctx) {
    key_count_t *stored = ctx;
    if (stored->count++ == 0) pc_str_copy(stored->kek_id, sizeof stored->kek_id, row->kek_id);
}

static void next_path(const char *path, char out[PATH_MAX]) {
    snprintf(out, PATH_MAX, "%s.next", path);
}

/* '<key file>.next' when it is the key 'rows_kek_id' names: a rotation committed and
 * then stopped before replacing the key file. Finishes it (the key file replaced). */
static pc_status kek_adopt_next(vault_t *vault, const char *path, const char *rows_kek_id) {
    char next[PATH_MAX];
    next_path(path, next);
    uint8_t kek[VAULT_KEY_BYTES];
    char kek_id[PC_ID_SIZE];
    pc_status status = pc_key_file_read(next, true, kek, VAULT_KEY_BYTES);
    if (status == PC_OK) kek_id_make(kek, kek_id);
    if (status == PC_OK && strcmp(kek_id, rows_kek_id) != 0) status = PC_VAULT_KEY_MISMATCH;
    if (status == PC_OK) status = pc_key_file_write(path, kek, VAULT_KEY_BYTES, 0600);
    if (status == PC_OK) {
        memcpy(vault->kek, kek, VAULT_KEY_BYTES);
        pc_str_copy(vault->kek_id, sizeof vault->kek_id, kek_id);
        (void)unlink(next);
        obs_logf(OBS_LEVEL_WARN, "vault: finished an interrupted key rotation (%s now holds %s)", path, kek_id);
    }
    sodium_memzero(kek, sizeof kek);
    return status;
}

/* The KEK of a database that has keys: the key file's, or an interrupted rotation's. */
static pc_status kek_settle(vault_t *vault, const char *path, const char *rows_kek_id) {
    pc_status status = kek_load(vault, path, false);
    char next[PATH_MAX];
    next_path(path, next);
    if (status == PC_OK && strcmp(vault->kek_id, rows_kek_id) == 0) {
        /* a '.next' left by a rotation that never committed wraps nothing */
        if (unlink(next) == 0) obs_logf(OBS_LEVEL_WARN, "vault: removed an unused rotation key (%s)", next);
        return PC_OK;
    }
    if (status != PC_OK && status != PC_VAULT_KEY_MISSING) return status;
    pc_status adopted = kek_adopt_next(vault, path, rows_kek_id);
    if (adopted == PC_OK) return PC_OK;
    return status == PC_OK ? PC_VAULT_KEY_MISMATCH : status;
}

static pc_status vault_load(vault_t *vault, const vault_config_t *config) {
    store_reader_t *reader = NULL;
    pc_status status = store_reader_open(config->store, &reader);
    if (status != PC_OK) return status;
    key_count_t stored = {0};
    status = store_vault_keys_list(reader, key_count, &stored);
    if (status == PC_OK) {
        status = stored.count == 0 ? kek_load(vault, config->key_path, true)
                                   : kek_settle(vault, config->key_path, stored.kek_id);
    }
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
    if (strlen(config->key_path) >= PATH_MAX - 8) return PC_INVALID_ARGUMENT;
    vault_t *vault = sodium_malloc(sizeof *vault);
    if (vault == NULL) return PC_NO_MEMORY;
    memset(vault, 0, sizeof *vault);
    pc_str_copy(vault->key_path, sizeof vault->key_path, config->key_path);
    vault->store = config->store;
    vault->writer = config->writer;
    vault->mutex_ready = pthread_mutex_init(&vault->rotate_mutex, NULL) == 0;
    vault->job_mutex_ready = pthread_mutex_init(&vault->job_mutex, NULL) == 0;
    vault->keys_lock_ready = pthread_rwlock_init(&vault->keys_lock, NULL) == 0;
    pc_status status = vault->mutex_ready && vault->job_mutex_ready && vault->keys_lock_ready ? vault_load(vault, config) : PC_NO_MEMORY;
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "vault: cannot open with key file %s: %s (%s)", config->key_path,
                 pc_status_code(status), pc_status_message(status));
        vault_close(vault);
        return status;
    }
    *out = vault;
    return PC_OK;
}

/* ---- rotation ---- */

/* Every stored key row into the job, as it is stored. */
static void rotate_collect(const store_vault_key_t *row, void *ctx) {
    keys_job_t *job = ctx;
    if (job->count == sizeof job->rows / sizeof job->rows[0]) {
        job->overflow = true;
        return;
    }
    job->rows[job->count++] = *row;
}

/* Each row unwrapped under the current KEK and wrapped again under 'kek'. */
static pc_status rotate_rewrap(const vault_t *vault, keys_job_t *job, const uint8_t kek[VAULT_KEY_BYTES],
                               const char *kek_id) {
    if (job->overflow || job->count == 0) return PC_VAULT_FAILED;
    for (uint32_t i = 0; i < job->count; i++) {
        uint8_t key[VAULT_KEY_BYTES];
        if (strcmp(job->rows[i].kek_id, vault->kek_id) != 0 || !key_unwrap(vault->kek, &job->rows[i], key)) {
            return PC_VAULT_KEY_MISMATCH;
        }
        key_wrap(kek, kek_id, key, &job->rows[i]);
        sodium_memzero(key, sizeof key);
    }
    return PC_OK;
}

static pc_status rotate_read(vault_t *vault, keys_job_t *job) {
    store_reader_t *reader = NULL;
    pc_status status = store_reader_open(vault->store, &reader);
    if (status != PC_OK) return status;
    status = store_vault_keys_list(reader, rotate_collect, job);
    store_reader_close(reader);
    return status;
}

/* Under the rotation mutex: the steps in their crash-safe order. */
static pc_status rotate_locked(vault_t *vault, keys_job_t *job, const uint8_t kek[VAULT_KEY_BYTES],
                               const char *kek_id) {
    char next[PATH_MAX];
    next_path(vault->key_path, next);
    pc_status status = rotate_read(vault, job);
    if (status == PC_OK) status = rotate_rewrap(vault, job, kek, kek_id);
    if (status == PC_OK) status = pc_key_file_write(next, kek, VAULT_KEY_BYTES, 0600);
    if (status != PC_OK) return status;
    job->cmd.kind = WRITER_CMD_EXEC;
    job->cmd.event_count = 1;
    job->cmd.in_transaction = keys_in_tx;
    status = writer_submit_wait(vault->writer, &job->cmd);
    if (status != PC_OK) {
        /* kept: a failed COMMIT may still be on disk; the next start keeps whichever
         * key the stored rows name and removes the other */
        obs_logf(OBS_LEVEL_ERROR, "vault: rotation not committed (%s); %s stays until the next start",
                 pc_status_code(status), next);
        return status;
    }
    /* committed: the database now needs the new KEK, whatever happens to the files */
    memcpy(vault->kek, kek, VAULT_KEY_BYTES);
    pc_str_copy(vault->kek_id, sizeof vault->kek_id, kek_id);
    status = pc_key_file_write(vault->key_path, kek, VAULT_KEY_BYTES, 0600);
    if (status == PC_OK) (void)unlink(next);
    else obs_logf(OBS_LEVEL_ERROR, "vault: rotation committed but %s could not be replaced: the next start "
                                   "takes the key from %s", vault->key_path, next);
    return status;
}

pc_status vault_rotate(vault_t *vault, vault_rotation_t *out) {
    memset(out, 0, sizeof *out);
    uint8_t kek[VAULT_KEY_BYTES];
    char kek_id[PC_ID_SIZE];
    randombytes_buf(kek, sizeof kek);
    kek_id_make(kek, kek_id);
    keys_job_t *job = calloc(1, sizeof *job);
    if (job == NULL) return PC_NO_MEMORY;
    pthread_mutex_lock(&vault->rotate_mutex);
    pc_str_copy(out->previous_kek_id, sizeof out->previous_kek_id, vault->kek_id);
    pc_status status = rotate_locked(vault, job, kek, kek_id);
    out->keys_rewrapped = status == PC_OK ? job->count : 0;
    pc_str_copy(out->kek_id, sizeof out->kek_id, vault->kek_id);
    pthread_mutex_unlock(&vault->rotate_mutex);
    sodium_memzero(kek, sizeof kek);
    sodium_memzero(job, sizeof *job);
    free(job);
    if (status == PC_OK) {
        obs_logf(OBS_LEVEL_INFO, "vault: key-encryption key rotated (%s -> %s, %u keys re-wrapped)",
                 out->previous_kek_id, out->kek_id, out->keys_rewrapped);
    }
    return status;
}

void vault_close(vault_t *vault) {
    if (vault == NULL) return;
    vault_rotation_stop(vault);
    if (vault->mutex_ready) pthread_mutex_destroy(&vault->rotate_mutex);
    if (vault->job_mutex_ready) pthread_mutex_destroy(&vault->job_mutex);
    if (vault->keys_lock_ready) pthread_rwlock_destroy(&vault->keys_lock);
    sodium_memzero(vault, sizeof *vault);
    sodium_free(vault);
}

void vault_fingerprint(vault_t *vault, const char *number, char out[65]) {
    uint8_t digest[32];
    crypto_generichash(digest, sizeof digest, (const uint8_t *)number, strlen(number), vault->fingerprint_key,
                       VAULT_KEY_BYTES);
    sodium_bin2hex(out, 65, digest, sizeof digest);
}

/* Encrypts 'number' under 'key' into the card's data key id, nonce and ciphertext (its
 * token is the associated data). */
static void card_encrypt(const vault_key_t *key, const char *number, store_vault_card_t *card) {
    pc_str_copy(card->data_key_id, sizeof card->data_key_id, key->id);
    /* a fresh random nonce per encryption, from the pool: a card payment costs no
     * getrandom call of its own */
    pc_random_pooled(card->nonce, sizeof card->nonce);
    unsigned long long ct_bytes = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(card->ciphertext, &ct_bytes, (const uint8_t *)number,
                                               strlen(number), (const uint8_t *)card->token,
                                               strlen(card->token), NULL, card->nonce, key->key);
    card->ciphertext_bytes = (size_t)ct_bytes;
}

/* Under keys_lock (read or write). */
static const vault_key_t *key_find_locked(const vault_t *vault, const char *id) {
    for (uint32_t i = 0; i < vault->data_count; i++) {
        if (strcmp(vault->data[i].id, id) == 0) return &vault->data[i];
    }
    return NULL;
}

/* Under keys_lock (read or write). */
static pc_status card_decrypt_locked(const vault_t *vault, const store_vault_card_t *card, char *number_out,
                                     size_t number_size) {
    const vault_key_t *key = key_find_locked(vault, card->data_key_id);
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

/* Under keys_lock: the card decrypted and encrypted again under 'to'. */
static pc_status card_reencrypt_locked(const vault_t *vault, store_vault_card_t *card, const vault_key_t *to) {
    char number[GW_CARD_NUMBER_SIZE];
    pc_status status = card_decrypt_locked(vault, card, number, sizeof number);
    if (status == PC_OK) card_encrypt(to, number, card);
    sodium_memzero(number, sizeof number);
    return status;
}

pc_status vault_tokenize(vault_t *vault, const char *number, uint32_t exp_month, uint32_t exp_year,
                         store_vault_card_t *out) {
    size_t digits = strlen(number);
    if (digits < 12 || digits >= GW_CARD_NUMBER_SIZE) return PC_VAULT_FAILED;
    memset(out, 0, sizeof *out);
    /* made as payment ids are: a batch's new cards land on their table's last page */
    pay_id_new("tok_", out->token);
    pthread_rwlock_rdlock(&vault->keys_lock);
    card_encrypt(&vault->data[vault->data_count - 1], number, out);
    pthread_rwlock_unlock(&vault->keys_lock);
    memcpy(out->bin, number, 6);
    memcpy(out->last4, number + digits - 4, 4);
    out->exp_month = exp_month;
    out->exp_year = exp_year;
    vault_fingerprint(vault, number, out->fingerprint);
    out->created_ns = pc_wall_ns();
    return PC_OK;
}

pc_status vault_reveal(vault_t *vault, const store_vault_card_t *card, char *number_out, size_t number_size) {
    pthread_rwlock_rdlock(&vault->keys_lock);
    pc_status status = card_decrypt_locked(vault, card, number_out, number_size);
    pthread_rwlock_unlock(&vault->keys_lock);
    return status;
}

pc_status vault_card_store(vault_t *vault, store_tx_t *tx, store_vault_card_t *card) {
    pthread_rwlock_rdlock(&vault->keys_lock);
    const vault_key_t *current = &vault->data[vault->data_count - 1];
    pc_status status = strcmp(card->data_key_id, current->id) == 0 ? PC_OK
                                                                    : card_reencrypt_locked(vault, card, current);
    pthread_rwlock_unlock(&vault->keys_lock);
    return status == PC_OK ? store_vault_card_put(tx, card) : status;
}

/* ---- data-key rotation: every card re-encrypted under a new data key ---- */

/* Under keys_lock: the oldest retired slot, -1 when none. */
static int32_t retired_slot_locked(const vault_t *vault) {
    for (uint32_t i = 0; i < vault->data_count; i++) {
        if (vault->data[i].retired) return (int32_t)i;
    }
    return -1;
}

/* A new data key, stored wrapped under the KEK, then the one new cards use. Under
 * rotate_mutex. */
static pc_status data_key_add(vault_t *vault, char id_out[PC_ID_SIZE]) {
    pthread_rwlock_rdlock(&vault->keys_lock);
    bool has_room = vault->data_count < VAULT_DATA_KEYS_MAX || retired_slot_locked(vault) >= 0;
    uint64_t newest_ns = vault->data[vault->data_count - 1].created_ns;
    pthread_rwlock_unlock(&vault->keys_lock);
    if (!has_room) return PC_LIMIT_REACHED; /* restart: retired keys are not loaded again */
    keys_job_t *job = calloc(1, sizeof *job);
    if (job == NULL) return PC_NO_MEMORY;
    vault_key_t fresh = {.created_ns = pc_wall_ns()};
    if (fresh.created_ns <= newest_ns) fresh.created_ns = newest_ns + 1; /* loads as the newest */
    random_id("dk_", fresh.id);
    randombytes_buf(fresh.key, sizeof fresh.key);
    store_vault_key_t *row = &job->rows[0];
    pc_str_copy(row->id, sizeof row->id, fresh.id);
    pc_str_copy(row->kind, sizeof row->kind, "data");
    row->created_ns = fresh.created_ns;
    key_wrap(vault->kek, vault->kek_id, fresh.key, row);
    job->count = 1;
    job->cmd.kind = WRITER_CMD_EXEC;
    job->cmd.event_count = 1;
    job->cmd.in_transaction = keys_in_tx;
    pc_status status = writer_submit_wait(vault->writer, &job->cmd);
    free(job);
    if (status == PC_OK) {
        pthread_rwlock_wrlock(&vault->keys_lock);
        if (vault->data_count == VAULT_DATA_KEYS_MAX) { /* a retired key's slot is taken */
            uint32_t slot = (uint32_t)retired_slot_locked(vault);
            sodium_memzero(&vault->data[slot], sizeof vault->data[slot]);
            memmove(&vault->data[slot], &vault->data[slot + 1], (vault->data_count - slot - 1) * sizeof vault->data[0]);
            vault->data_count--;
        }
        vault->data[vault->data_count++] = fresh;
        pthread_rwlock_unlock(&vault->keys_lock);
        pc_str_copy(id_out, PC_ID_SIZE, fresh.id);
    }
    sodium_memzero(&fresh, sizeof fresh);
    return status;
}

typedef struct {
    writer_cmd_t cmd; /* first */
    store_vault_card_t cards[VAULT_REENCRYPT_BATCH_CARDS];
    char from[VAULT_REENCRYPT_BATCH_CARDS][PC_ID_SIZE];
    uint32_t count;
} rekey_job_t;

static void rekey_collect(const store_vault_card_t *card, void *ctx) {
    rekey_job_t *job = ctx;
    if (job->count == VAULT_REENCRYPT_BATCH_CARDS) return;
    pc_str_copy(job->from[job->count], PC_ID_SIZE, card->data_key_id);
    job->cards[job->count++] = *card;
}

static pc_status rekey_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    rekey_job_t *job = (rekey_job_t *)cmd;
    pc_status status = PC_OK;
    for (uint32_t i = 0; i < job->count && status == PC_OK; i++) {
        status = store_vault_card_rekey(tx, &job->cards[i], job->from[i]);
    }
    return status;
}

/* The next batch of cards not under 'key_id', after 'after' (advanced). */
static pc_status rekey_read(vault_t *vault, rekey_job_t *job, const char *key_id, char after[PC_ID_SIZE]) {
    job->count = 0;
    store_reader_t *reader = NULL;
    pc_status status = store_reader_open(vault->store, &reader);
    if (status != PC_OK) return status;
    status = store_vault_cards_not_under(reader, key_id, after, VAULT_REENCRYPT_BATCH_CARDS, rekey_collect, job);
    store_reader_close(reader);
    if (status == PC_OK && job->count > 0) pc_str_copy(after, PC_ID_SIZE, job->cards[job->count - 1].token);
    return status;
}

/* The running rotation's figures so far, for vault_rotation_status. */
static void job_progress(vault_t *vault, const vault_data_rotation_t *so_far) {
    pthread_mutex_lock(&vault->job_mutex);
    vault->job.progress = *so_far;
    pthread_mutex_unlock(&vault->job_mutex);
}

/* Marks a data-key rotation running; false when one already is. */
static bool job_begin(vault_t *vault) {
    pthread_mutex_lock(&vault->job_mutex);
    bool idle = vault->job.state != VAULT_ROTATION_RUNNING;
    if (idle) {
        memset(&vault->job, 0, sizeof vault->job);
        vault->job.state = VAULT_ROTATION_RUNNING;
        vault->job.started_ns = pc_wall_ns();
    }
    pthread_mutex_unlock(&vault->job_mutex);
    return idle;
}

static void job_end(vault_t *vault, pc_status status, const vault_data_rotation_t *result) {
    pthread_mutex_lock(&vault->job_mutex);
    vault->job.progress = *result;
    vault->job.error = status;
    vault->job.state = status == PC_OK ? VAULT_ROTATION_SUCCEEDED : VAULT_ROTATION_FAILED;
    vault->job.finished_ns = pc_wall_ns();
    pthread_mutex_unlock(&vault->job_mutex);
}

/* One pass over every card not under 'key_id', a batch per writer command. */
static pc_status cards_reencrypt(vault_t *vault, rekey_job_t *job, const char *key_id, vault_data_rotation_t *out) {
    char after[PC_ID_SIZE] = "";
    pc_status status = PC_OK;
    while (status == PC_OK) {
        if (atomic_load(&vault->job_cancel)) return PC_SHUTTING_DOWN;
        status = rekey_read(vault, job, key_id, after);
        if (status != PC_OK || job->count == 0) break;
        pthread_rwlock_rdlock(&vault->keys_lock);
        const vault_key_t *to = key_find_locked(vault, key_id);
        for (uint32_t i = 0; i < job->count && status == PC_OK; i++) {
            status = to != NULL ? card_reencrypt_locked(vault, &job->cards[i], to) : PC_VAULT_FAILED;
        }
        pthread_rwlock_unlock(&vault->keys_lock);
        memset(&job->cmd, 0, sizeof job->cmd);
        job->cmd.kind = WRITER_CMD_EXEC;
        job->cmd.event_count = job->count;
        job->cmd.in_transaction = rekey_in_tx;
        if (status == PC_OK) status = writer_submit_wait(vault->writer, &job->cmd);
        if (status == PC_OK) {
            out->cards_reencrypted += job->count;
            out->batches++;
            job_progress(vault, out);
        }
    }
    return status;
}

typedef struct {
    writer_cmd_t cmd; /* first */
    char key_id[PC_ID_SIZE];
    bool retired;
} retire_job_t;

static pc_status retire_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    retire_job_t *job = (retire_job_t *)cmd;
    return store_vault_key_retire(tx, job->key_id, &job->retired);
}

/* Deletes every older data key no card is under; counts those still used. */
static pc_status old_keys_retire(vault_t *vault, const char *current_id, vault_data_rotation_t *out) {
    char ids[VAULT_DATA_KEYS_MAX][PC_ID_SIZE];
    uint32_t count = 0;
    pthread_rwlock_rdlock(&vault->keys_lock);
    for (uint32_t i = 0; i < vault->data_count; i++) {
        if (!vault->data[i].retired && strcmp(vault->data[i].id, current_id) != 0) {
            pc_str_copy(ids[count++], PC_ID_SIZE, vault->data[i].id);
        }
    }
    pthread_rwlock_unlock(&vault->keys_lock);
    out->keys_remaining = 0;
    pc_status status = PC_OK;
    for (uint32_t i = 0; i < count && status == PC_OK; i++) {
        retire_job_t job = {.cmd = {.kind = WRITER_CMD_EXEC, .event_count = 1, .in_transaction = retire_in_tx}};
        pc_str_copy(job.key_id, sizeof job.key_id, ids[i]);
        status = writer_submit_wait(vault->writer, &job.cmd);
        if (status != PC_OK || !job.retired) {
            out->keys_remaining += status == PC_OK;
            continue;
        }
        pthread_rwlock_wrlock(&vault->keys_lock);
        vault_key_t *key = (vault_key_t *)key_find_locked(vault, ids[i]);
        if (key != NULL) key->retired = true;
        pthread_rwlock_unlock(&vault->keys_lock);
        pc_str_copy(out->retired[out->retired_count++], PC_ID_SIZE, ids[i]);
    }
    return status;
}

/* A card stored under an old key after the pass read past its token (tokenized just
 * before the new key took over) keeps that key: passes repeat until none is left. */
#define REKEY_PASSES_MAX 4

static pc_status rotate_data_locked(vault_t *vault, rekey_job_t *job, vault_data_rotation_t *out) {
    pc_status status = data_key_add(vault, out->data_key_id);
    for (uint32_t pass = 0; status == PC_OK && pass < REKEY_PASSES_MAX; pass++) {
        status = cards_reencrypt(vault, job, out->data_key_id, out);
        if (status == PC_OK) status = old_keys_retire(vault, out->data_key_id, out);
        if (out->keys_remaining == 0) break;
    }
    return status;
}

/* The rotation itself, once job_begin let it run. */
static pc_status rotate_data_run(vault_t *vault, vault_data_rotation_t *out) {
    memset(out, 0, sizeof *out);
    rekey_job_t *job = calloc(1, sizeof *job);
    pc_status status = PC_NO_MEMORY;
    if (job != NULL) {
        pthread_mutex_lock(&vault->rotate_mutex);
        status = rotate_data_locked(vault, job, out);
        pthread_mutex_unlock(&vault->rotate_mutex);
        free(job);
    }
    job_end(vault, status, out);
    if (status == PC_OK) {
        obs_logf(OBS_LEVEL_INFO, "vault: data key rotated to %s (%llu cards re-encrypted in %u batches, %u keys "
                 "retired, %u still used)", out->data_key_id, (unsigned long long)out->cards_reencrypted,
                 out->batches, out->retired_count, out->keys_remaining);
    } else {
        obs_logf(OBS_LEVEL_ERROR, "vault: data-key rotation stopped (%s) after %llu cards; every card still opens, "
                 "run it again", pc_status_code(status), (unsigned long long)out->cards_reencrypted);
    }
    return status;
}

pc_status vault_rotate_data_key(vault_t *vault, vault_data_rotation_t *out) {
    memset(out, 0, sizeof *out);
    if (!job_begin(vault)) return PC_VAULT_ROTATION_IN_PROGRESS;
    return rotate_data_run(vault, out);
}

static void *rotation_thread(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-rotate"); /* per-thread CPU in top, perf */
    vault_t *vault = arg;
    vault_data_rotation_t result;
    (void)rotate_data_run(vault, &result); /* the outcome is in vault->job and the log */
    return NULL;
}

/* The thread bookkeeping is under job_mutex: a second start may come in as soon as
 * the first thread's job_end ran. */
pc_status vault_rotate_data_key_start(vault_t *vault) {
    if (!job_begin(vault)) return PC_VAULT_ROTATION_IN_PROGRESS;
    pthread_mutex_lock(&vault->job_mutex);
    if (vault->job_joinable) pthread_join(vault->job_thread, NULL); /* it ended: job_begin saw it */
    atomic_store(&vault->job_cancel, false);
    vault->job_joinable = pthread_create(&vault->job_thread, NULL, rotation_thread, vault) == 0;
    bool started = vault->job_joinable;
    pthread_mutex_unlock(&vault->job_mutex);
    if (!started) {
        vault_data_rotation_t none = {0};
        job_end(vault, PC_NO_MEMORY, &none);
        return PC_NO_MEMORY;
    }
    return PC_OK;
}

void vault_rotation_status(vault_t *vault, vault_rotation_status_t *out) {
    pthread_mutex_lock(&vault->job_mutex);
    *out = vault->job;
    pthread_mutex_unlock(&vault->job_mutex);
}

const char *vault_rotation_state_name(vault_rotation_state_t state) {
    switch (state) {
    case VAULT_ROTATION_IDLE: return "idle";
    case VAULT_ROTATION_RUNNING: return "running";
    case VAULT_ROTATION_SUCCEEDED: return "succeeded";
    case VAULT_ROTATION_FAILED: return "failed";
    }
    return "unknown";
}

void vault_rotation_stop(vault_t *vault) {
    if (vault == NULL || !vault->job_mutex_ready) return;
    pthread_mutex_lock(&vault->job_mutex);
    bool joinable = vault->job_joinable;
    vault->job_joinable = false;
    atomic_store(&vault->job_cancel, true);
    pthread_mutex_unlock(&vault->job_mutex);
    if (joinable) pthread_join(vault->job_thread, NULL); /* outside: the thread reports progress under it */
}
