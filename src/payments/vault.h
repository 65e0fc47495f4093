/* payments/vault.h: the card vault (PCI DSS: the card number unreadable at rest).
 *
 * A card number is encrypted on entry with XChaCha20-Poly1305 (libsodium AEAD) under a
 * data key; the data key is stored in the database wrapped by a key-encryption key that
 * lives outside it, in a key file (mode 0600, `serve --vault-key FILE`). The database
 * keeps the ciphertext, the data key's id (for rotation), the BIN (first 6 digits), the
 * last 4 and a keyed fingerprint (BLAKE2b under a fingerprint key wrapped the same
 * way), so the same card is recognised across payments without being stored. The CVC
 * is never stored anywhere, not even encrypted. Only the connector's call needs the
 * number again: vault_reveal, and the caller wipes it once the request is queued.
 *
 * Threads: after vault_open every function is safe from any thread (the data keys in
 * memory are read under a read lock; a rotation adds one under the write lock, and
 * rotations run one at a time under their own mutex). */
#ifndef PAYCORE_VAULT_H
#define PAYCORE_VAULT_H

#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"
#include "store/store.h"
#include "store/store_payments.h"
#include "writer/writer.h"

typedef struct vault vault_t;

typedef struct {
    const char *key_path;   /* the key-encryption key file (hex, 0600); made when missing
                               while the database holds no card key yet */
    store_t *store;         /* borrowed: a reader loads the wrapped keys */
    writer_t *writer;       /* borrowed: a new database's keys are written through it */
} vault_config_t;

/* Loads (or, on a database without them, makes and stores) the data and fingerprint
 * keys. A key file that is missing while keys exist: PC_VAULT_KEY_MISSING; one that
 * does not unwrap them: PC_VAULT_KEY_MISMATCH; an unreadable file: PC_KEY_FILE_INVALID.
 * A key file that does not match while '<key file>.next' does (a rotation interrupted
 * after its commit): the rotation is finished, the key file replaced by '.next'. */
PC_MUST_USE pc_status vault_open(vault_t **out, const vault_config_t *config);
void vault_close(vault_t *vault);  /* wipes the keys */

typedef struct {
    char previous_kek_id[PC_ID_SIZE];
    char kek_id[PC_ID_SIZE];          /* the key file's key now */
    uint32_t keys_rewrapped;
} vault_rotation_t;

/* Re-wraps every stored key (data and fingerprint keys) under a new random
 * key-encryption key and replaces the key file with it (0600), the server running: the
 * unwrapped keys in memory stay, so cards keep opening throughout, and the old key file
 * is gone afterwards. The new key goes to '<key file>.next' first, the rows are
 * re-wrapped in one transaction, then the key file is replaced; a crash in between is
 * finished by vault_open. Blocks its caller (key files are fsynced). */
PC_MUST_USE pc_status vault_rotate(vault_t *vault, vault_rotation_t *out);

typedef struct {
    char data_key_id[PC_ID_SIZE];                      /* the new data key: every card is under it */
    char retired[VAULT_DATA_KEYS_MAX][PC_ID_SIZE];     /* the data keys deleted, no card under them */
    uint32_t retired_count;
    uint32_t keys_remaining;   /* older data keys still stored (a card came in under one while
                                  its retirement ran; run the rotation again) */
    uint64_t cards_reencrypted;
    uint32_t batches;
} vault_data_rotation_t;

/* Re-encrypts every stored card under a new random data key, the server running: the
 * new key (wrapped under the key file's key) is stored and encrypts new cards from then
 * on; the cards under older keys are re-encrypted in batches of
 * VAULT_REENCRYPT_BATCH_CARDS (one writer command each; each card opens before,
 * during and after); then every older data key is deleted, each in a transaction that
 * checks no card is under it. The fingerprint key stays (the same card keeps its
 * fingerprint). A crash in between leaves every card readable (old keys are deleted
 * only when unused); running it again finishes the work under another new key.
 * Blocks its caller. */
PC_MUST_USE pc_status vault_rotate_data_key(vault_t *vault, vault_data_rotation_t *out);

typedef enum {
    VAULT_ROTATION_IDLE,       /* none since the start */
    VAULT_ROTATION_RUNNING,
    VAULT_ROTATION_SUCCEEDED,
    VAULT_ROTATION_FAILED,     /* 'error' says why; every card still opens: run it again */
} vault_rotation_state_t;

/* The latest data-key rotation since the start, foreground or background. */
typedef struct {
    vault_rotation_state_t state;
    vault_data_rotation_t progress;   /* so far while running, the result after */
    pc_status error;                  /* PC_OK unless FAILED */
    uint64_t started_ns, finished_ns; /* wall clock; finished_ns 0 while running */
} vault_rotation_status_t;

/* Starts vault_rotate_data_key on a thread of its own and returns at once; its
 * progress reads through vault_rotation_status. PC_VAULT_ROTATION_IN_PROGRESS when a
 * data-key rotation already runs (vault_rotate_data_key answers the same then). The
 * thread stops between batches at vault_rotation_stop (the server's shutdown). */
PC_MUST_USE pc_status vault_rotate_data_key_start(vault_t *vault);
void vault_rotation_status(vault_t *vault, vault_rotation_status_t *out);
const char *vault_rotation_state_name(vault_rotation_state_t state);
/* Asks a background rotation to stop after its current batch and waits for it (the
 * writer must still run). Idempotent; vault_close calls it too. */
void vault_rotation_stop(vault_t *vault);

/* Stores a card tokenized by vault_tokenize (store_vault_card_put) in the caller's
 * transaction, re-encrypted first when a data-key rotation began since it was
 * tokenized (so no card arrives under a key being retired). Writer thread. */
PC_MUST_USE pc_status vault_card_store(vault_t *vault, store_tx_t *tx, store_vault_card_t *card);

/* Encrypts a validated card number into 'out' (a new random token; ciphertext, BIN,
 * last 4, fingerprint; never the number in clear). The row is the caller's to store
 * (store_vault_card_put) in the transaction of the payment that uses it. */
PC_MUST_USE pc_status vault_tokenize(vault_t *vault, const char *number, uint32_t exp_month, uint32_t exp_year,
                                     store_vault_card_t *out);
/* The keyed fingerprint of a card number (64 hex digits). */
void vault_fingerprint(vault_t *vault, const char *number, char out[65]);
/* Decrypts 'card' into 'number_out' (GW_CARD_NUMBER_SIZE bytes): for the connector's
 * call only; the caller wipes it (sodium_memzero) as soon as the request is queued. */
PC_MUST_USE pc_status vault_reveal(vault_t *vault, const store_vault_card_t *card, char *number_out,
                                   size_t number_size);

#endif
