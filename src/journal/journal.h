/* journal/journal.h: the tamper-evident trail. Every committed batch appends one
 * journal row in the same store transaction:
 *   row_hash(x)   = BLAKE2b-128 of x's canonical encoding (each account created,
 *                   transfer, burned id), stored on x's row so verify can name a row;
 *   content_hash  = BLAKE2b-256 over the batch's row hashes, in apply order;
 *   hash          = SHA-256(prev_hash || seq || timestamps || counts || content_hash).
 * Every JOURNAL_CHECKPOINT_BATCHES batches the hash is signed with the node's Ed25519
 * key (created on first start, mode 0600). verify re-derives all of it from the rows.
 * Hashing is per row with a fast hash and per batch with SHA-256, so the chain costs
 * one SHA-256 a batch, not one a transfer. */
#ifndef PAYCORE_JOURNAL_H
#define PAYCORE_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger/ledger.h"
#include "paycore/status.h"

#define JOURNAL_HASH_BYTES 32
#define JOURNAL_ROW_HASH_BYTES 16
#define JOURNAL_PUBLIC_KEY_BYTES 32
#define JOURNAL_SECRET_KEY_BYTES 64
#define JOURNAL_SIGNATURE_BYTES 64

typedef struct {
    uint64_t seq;                 /* 1, 2, 3 ... */
    uint64_t timestamp_first_ns;  /* the batch's first and last ledger timestamps */
    uint64_t timestamp_last_ns;
    uint32_t account_count;
    uint32_t transfer_count;
    uint32_t failure_count;
    uint8_t content_hash[JOURNAL_HASH_BYTES];
    uint8_t prev_hash[JOURNAL_HASH_BYTES];
    uint8_t hash[JOURNAL_HASH_BYTES];
} journal_entry_t;

typedef struct {
    uint64_t seq;
    uint8_t hash[JOURNAL_HASH_BYTES];
    uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES];
    uint8_t signature[JOURNAL_SIGNATURE_BYTES];
} journal_checkpoint_t;

/* Row hashes: the one encoding shared by the writer and verify. */
void journal_row_hash_account(const ledger_account_t *account,
                              uint8_t out[JOURNAL_ROW_HASH_BYTES]);
void journal_row_hash_transfer(const ledger_transfer_t *transfer,
                               uint8_t out[JOURNAL_ROW_HASH_BYTES]);
void journal_row_hash_failure(const ledger_failure_t *failure,
                              uint8_t out[JOURNAL_ROW_HASH_BYTES]);

/* Batch content: feed row hashes in apply order (accounts, transfers, failures). */
typedef struct {
    /* crypto_generichash_state, kept opaque here. 16-aligned so that it may sit in
     * malloc'ed memory; journal.c handles libsodium's wish for 64. */
    _Alignas(16) unsigned char state[384];
} journal_content_t;
void journal_content_init(journal_content_t *content);
void journal_content_add(journal_content_t *content, const uint8_t row_hash[JOURNAL_ROW_HASH_BYTES]);
void journal_content_final(journal_content_t *content, uint8_t out[JOURNAL_HASH_BYTES]);

/* Fills entry->hash from the other fields (prev_hash, seq, ... content_hash). */
void journal_entry_seal(journal_entry_t *entry);

/* The node's signing key: loaded from 'key_path', or created there (mode 0600). */
typedef struct {
    uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES];
    uint8_t secret_key[JOURNAL_SECRET_KEY_BYTES];
} journal_key_t;
/* The file holds the 32-byte seed as 64 hex characters and '\n'; a file of another
 * size or shape, or readable by group or others, is PC_KEY_FILE_INVALID.
 * 'signer' is the public key of the database's newest signed journal checkpoint, or
 * NULL when nothing was signed yet. A key is never silently replaced:
 *   - no key file, and the database has signed checkpoints or "<key_path>.pub"
 *     exists: PC_KEY_FILE_MISSING (restore the key from its backup);
 *   - no key file otherwise: a new key, with "<key_path>.pub" (both 0600), and
 *     *created (if not NULL) set;
 *   - a key whose public key differs from 'signer' or from "<key_path>.pub":
 *     PC_KEY_MISMATCH. A missing "<key_path>.pub" is written. */
PC_MUST_USE pc_status journal_key_open(const char *key_path, const uint8_t signer[JOURNAL_PUBLIC_KEY_BYTES],
                                       journal_key_t *out, bool *created);
/* journal_key_open for a database nothing was signed for (tools, tests). */
PC_MUST_USE pc_status journal_key_load_or_create(const char *key_path, journal_key_t *out);
/* Reads a public key file (64 hex characters and '\n', as written beside the key):
 * PC_OK, PC_NOT_FOUND (no such file) or PC_KEY_FILE_INVALID. */
PC_MUST_USE pc_status journal_public_key_load(const char *path,
                                              uint8_t out[JOURNAL_PUBLIC_KEY_BYTES]);
void journal_key_wipe(journal_key_t *key);
void journal_checkpoint_sign(const journal_key_t *key, const journal_entry_t *entry,
                             journal_checkpoint_t *out);
bool journal_checkpoint_valid(const journal_checkpoint_t *checkpoint,
                              const uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES]);

void journal_hex(const uint8_t *bytes, uint32_t byte_count, char *out /* 2n+1 */);

#endif
