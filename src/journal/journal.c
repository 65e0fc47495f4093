/* journal/journal.c: row hashes, batch content hashes, the chained entry hash and
 * signed checkpoints, with libsodium. The writer and verify share these encoders:
 * whatever the writer hashes, verify re-derives from the stored rows.
 *
 * Canonical encodings (version 1; changing one breaks every stored chain):
 *   u16/u32/u64/i64  fixed-width little-endian
 *   str              u16 byte count, then the bytes (no NUL)
 *   opt_str          u8 0 (NULL), or u8 1 then str: NULL metadata differs from ""
 *   account   'A' str id, str currency, u16 code, u16 flags, u64 timestamp_ns,
 *             opt_str metadata                     (creation fields only: balances move)
 *   transfer  'T' str id, str debit_account_id, str credit_account_id, str pending_id,
 *             i64 amount, str currency, u16 code, u16 flags, u32 timeout_s,
 *             u64 timestamp_ns, opt_str metadata
 *   failure   'F' str id, str pc_status_code(failure), u64 timestamp_ns
 *   row_hash     = BLAKE2b, 16-byte output, unkeyed, over the encoding above
 *   content_hash = BLAKE2b, 32-byte output, over the batch's row hashes in apply order
 *   entry hash   = SHA-256(prev_hash[32] || u64 seq || u64 timestamp_first_ns ||
 *                  u64 timestamp_last_ns || u32 account_count || u32 transfer_count ||
 *                  u32 failure_count || content_hash[32])
 *   checkpoint   = Ed25519 detached signature over "paycore-checkpoint-v1" || u64 seq ||
 *                  hash[32]
 *
 * Key file: the 32-byte Ed25519 seed as 64 lower-case hex characters and a newline,
 * mode 0600; "<key>.pub" holds the public key the same way, mode 0600 too (it is
 * public, but everything paycore writes is its owner's alone). */
#include "journal/journal.h"

#include <limits.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

static_assert(sizeof(crypto_generichash_state) <= sizeof(((journal_content_t *)0)->state),
              "journal_content_t must hold a crypto_generichash_state");
static_assert(JOURNAL_ROW_HASH_BYTES >= crypto_generichash_BYTES_MIN, "row hash too short");
static_assert(JOURNAL_HASH_BYTES == crypto_generichash_BYTES, "content hash size");
static_assert(JOURNAL_HASH_BYTES == crypto_hash_sha256_BYTES, "entry hash size");
static_assert(JOURNAL_PUBLIC_KEY_BYTES == crypto_sign_PUBLICKEYBYTES, "public key size");
static_assert(JOURNAL_SECRET_KEY_BYTES == crypto_sign_SECRETKEYBYTES, "secret key size");
static_assert(JOURNAL_SECRET_KEY_BYTES <= PC_KEY_FILE_BYTES_MAX, "a key file holds the secret key");
static_assert(JOURNAL_SIGNATURE_BYTES == crypto_sign_BYTES, "signature size");
static_assert(crypto_sign_SEEDBYTES == 32, "key file holds a 32-byte seed");

#define CHECKPOINT_DOMAIN "paycore-checkpoint-v1"

/* ---- libsodium start-up, once per process (core) ---- */

static void journal_sodium_ready(void) { pc_sodium_ready(); }

/* ---- canonical encoding into a bounded buffer ---- */

/* Fixed fields of the largest row (a transfer: four ids, numbers) fit here; metadata
 * is hashed after the buffer, straight from its string. */
#define ENCODE_BYTES_MAX 512

typedef struct {
    uint8_t bytes[ENCODE_BYTES_MAX];
    uint32_t byte_count;
} encoder_t;

static void put_bytes(encoder_t *e, const void *src, uint32_t byte_count) {
    PC_ASSERT(byte_count <= ENCODE_BYTES_MAX - e->byte_count);
    memcpy(e->bytes + e->byte_count, src, byte_count);
    e->byte_count += byte_count;
}

static void put_uint(encoder_t *e, uint64_t value, uint32_t width_bytes) {
    uint8_t le[8];
    PC_ASSERT(width_bytes <= 8);
    for (uint32_t i = 0; i < width_bytes; i++) le[i] = (uint8_t)(value >> (8 * i));
    put_bytes(e, le, width_bytes);
}

/* A bounded string field (ids, currency, codes: all far below 64 KiB). */
static void put_str(encoder_t *e, const char *s, size_t size_max) {
    size_t length = strnlen(s, size_max);
    PC_ASSERT(length < size_max);
    put_uint(e, length, 2);
    put_bytes(e, s, (uint32_t)length);
}

/* Metadata goes last: its presence byte and length into the buffer, then the bytes
 * into the hash state directly (it may be larger than the buffer). */
static void hash_row(encoder_t *e, const char *metadata_json, uint8_t out[JOURNAL_ROW_HASH_BYTES],
                     bool has_metadata_field) {
    crypto_generichash_state state;
    size_t metadata_bytes = 0;
    if (has_metadata_field) {
        put_uint(e, metadata_json != NULL, 1);
        if (metadata_json != NULL) {
            metadata_bytes = strlen(metadata_json);
            PC_ASSERT(metadata_bytes <= UINT16_MAX); /* callers bound metadata far below */
            put_uint(e, metadata_bytes, 2);
        }
    }
    journal_sodium_ready();
    PC_ASSERT(crypto_generichash_init(&state, NULL, 0, JOURNAL_ROW_HASH_BYTES) == 0);
    PC_ASSERT(crypto_generichash_update(&state, e->bytes, e->byte_count) == 0);
    if (metadata_bytes > 0) {
        PC_ASSERT(crypto_generichash_update(&state, (const uint8_t *)metadata_json,
                                            metadata_bytes) == 0);
    }
    PC_ASSERT(crypto_generichash_final(&state, out, JOURNAL_ROW_HASH_BYTES) == 0);
}

void journal_row_hash_account(const ledger_account_t *account,
                              uint8_t out[JOURNAL_ROW_HASH_BYTES]) {
    encoder_t e = {.byte_count = 0};
    put_uint(&e, 'A', 1);
    put_str(&e, account->id, sizeof(account->id));
    put_str(&e, account->currency, sizeof(account->currency));
    put_uint(&e, account->code, 2);
    put_uint(&e, account->flags, 2);
    put_uint(&e, account->timestamp_ns, 8);
    hash_row(&e, account->metadata_json, out, true);
}

void journal_row_hash_transfer(const ledger_transfer_t *transfer,
                               uint8_t out[JOURNAL_ROW_HASH_BYTES]) {
    encoder_t e = {.byte_count = 0};
    put_uint(&e, 'T', 1);
    put_str(&e, transfer->id, sizeof(transfer->id));
    put_str(&e, transfer->debit_account_id, sizeof(transfer->debit_account_id));
    put_str(&e, transfer->credit_account_id, sizeof(transfer->credit_account_id));
    put_str(&e, transfer->pending_id, sizeof(transfer->pending_id));
    put_uint(&e, (uint64_t)transfer->amount, 8);
    put_str(&e, transfer->currency, sizeof(transfer->currency));
    put_uint(&e, transfer->code, 2);
    put_uint(&e, transfer->flags, 2);
    put_uint(&e, transfer->timeout_s, 4);
    put_uint(&e, transfer->timestamp_ns, 8);
    hash_row(&e, transfer->metadata_json, out, true);
}

void journal_row_hash_failure(const ledger_failure_t *failure,
                              uint8_t out[JOURNAL_ROW_HASH_BYTES]) {
    encoder_t e = {.byte_count = 0};
    put_uint(&e, 'F', 1);
    put_str(&e, failure->id, sizeof(failure->id));
    put_str(&e, pc_status_code(failure->failure), 128);
    put_uint(&e, failure->timestamp_ns, 8);
    hash_row(&e, NULL, out, false);
}

/* ---- batch content ---- */

/* journal_content_t is 16-byte aligned (what malloc guarantees), libsodium's state
 * asks for 64: when the caller's buffer is not 64-aligned the state is moved through
 * an aligned local copy. Callers keeping it on the stack or static pay nothing. */
#define STATE_ALIGN alignof(crypto_generichash_state)

static bool content_aligned(const journal_content_t *content) {
    return ((uintptr_t)content->state % STATE_ALIGN) == 0;
}

void journal_content_init(journal_content_t *content) {
    crypto_generichash_state state;
    journal_sodium_ready();
    PC_ASSERT(crypto_generichash_init(&state, NULL, 0, JOURNAL_HASH_BYTES) == 0);
    memcpy(content->state, &state, sizeof(state));
}

void journal_content_add(journal_content_t *content,
                         const uint8_t row_hash[JOURNAL_ROW_HASH_BYTES]) {
    if (content_aligned(content)) {
        crypto_generichash_state *state = (crypto_generichash_state *)(void *)content->state;
        PC_ASSERT(crypto_generichash_update(state, row_hash, JOURNAL_ROW_HASH_BYTES) == 0);
        return;
    }
    crypto_generichash_state state;
    memcpy(&state, content->state, sizeof(state));
    PC_ASSERT(crypto_generichash_update(&state, row_hash, JOURNAL_ROW_HASH_BYTES) == 0);
    memcpy(content->state, &state, sizeof(state));
}

void journal_content_final(journal_content_t *content, uint8_t out[JOURNAL_HASH_BYTES]) {
    crypto_generichash_state state;
    memcpy(&state, content->state, sizeof(state));
    PC_ASSERT(crypto_generichash_final(&state, out, JOURNAL_HASH_BYTES) == 0);
    sodium_memzero(content->state, sizeof(content->state)); /* a second final is a bug */
}

/* ---- the chain ---- */

void journal_entry_seal(journal_entry_t *entry) {
    encoder_t e = {.byte_count = 0};
    PC_ASSERT(entry->seq >= 1);
    PC_ASSERT(entry->timestamp_first_ns <= entry->timestamp_last_ns);
    put_bytes(&e, entry->prev_hash, JOURNAL_HASH_BYTES);
    put_uint(&e, entry->seq, 8);
    put_uint(&e, entry->timestamp_first_ns, 8);
    put_uint(&e, entry->timestamp_last_ns, 8);
    put_uint(&e, entry->account_count, 4);
    put_uint(&e, entry->transfer_count, 4);
    put_uint(&e, entry->failure_count, 4);
    put_bytes(&e, entry->content_hash, JOURNAL_HASH_BYTES);
    journal_sodium_ready();
    PC_ASSERT(crypto_hash_sha256(entry->hash, e.bytes, e.byte_count) == 0);
}

/* ---- checkpoints ---- */

static void checkpoint_message(uint64_t seq, const uint8_t hash[JOURNAL_HASH_BYTES],
                               encoder_t *e) {
    put_bytes(e, CHECKPOINT_DOMAIN, (uint32_t)strlen(CHECKPOINT_DOMAIN));
    put_uint(e, seq, 8);
    put_bytes(e, hash, JOURNAL_HASH_BYTES);
}

void journal_checkpoint_sign(const journal_key_t *key, const journal_entry_t *entry,
                             journal_checkpoint_t *out) {
    encoder_t e = {.byte_count = 0};
    memset(out, 0, sizeof(*out));
    out->seq = entry->seq;
    memcpy(out->hash, entry->hash, JOURNAL_HASH_BYTES);
    memcpy(out->public_key, key->public_key, JOURNAL_PUBLIC_KEY_BYTES);
    checkpoint_message(out->seq, out->hash, &e);
    journal_sodium_ready();
    PC_ASSERT(crypto_sign_detached(out->signature, NULL, e.bytes, e.byte_count,
                                   key->secret_key) == 0);
}

bool journal_checkpoint_valid(const journal_checkpoint_t *checkpoint,
                              const uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES]) {
    encoder_t e = {.byte_count = 0};
    checkpoint_message(checkpoint->seq, checkpoint->hash, &e);
    journal_sodium_ready();
    return crypto_sign_verify_detached(checkpoint->signature, e.bytes, e.byte_count,
                                       public_key) == 0;
}

void journal_hex(const uint8_t *bytes, uint32_t byte_count, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (uint32_t i = 0; i < byte_count; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    out[2 * byte_count] = '\0';
}

/* ---- key files ---- */

/* Key files: 32 bytes as hex (core/keyfile.c); 'secret' demands mode 0600. */
static pc_status key_file_read(const char *path, bool secret, uint8_t out[32]) {
    return pc_key_file_read(path, secret, out, 32);
}

static pc_status key_file_write(const char *path, const uint8_t bytes[32], mode_t mode) {
    return pc_key_file_write(path, bytes, 32, mode);
}

static pc_status public_key_path(const char *key_path, char out[PATH_MAX]) {
    int n = snprintf(out, PATH_MAX, "%s.pub", key_path);
    return n > 0 && n < PATH_MAX ? PC_OK : PC_INVALID_ARGUMENT;
}

/* '<key>.pub' must say what the key says: written when missing, never overwritten
 * (a different one means the key was replaced: PC_KEY_MISMATCH). */
static pc_status public_key_file_check(const char *key_path, const journal_key_t *key) {
    char pub_path[PATH_MAX];
    uint8_t stored[JOURNAL_PUBLIC_KEY_BYTES];
    pc_status status = public_key_path(key_path, pub_path);
    if (status != PC_OK) return status;
    status = key_file_read(pub_path, false, stored);
    if (status == PC_NOT_FOUND) return key_file_write(pub_path, key->public_key, 0600);
    if (status != PC_OK) return status;
    return memcmp(stored, key->public_key, sizeof(stored)) == 0 ? PC_OK : PC_KEY_MISMATCH;
}

/* No key file: a new one only for a database nothing was signed for yet, and only
 * when no '<key>.pub' says a key existed. */
static pc_status key_create(const char *key_path, const uint8_t *signer, uint8_t seed[crypto_sign_SEEDBYTES]) {
    char pub_path[PATH_MAX];
    pc_status status = public_key_path(key_path, pub_path);
    if (status != PC_OK) return status;
    if (signer != NULL || access(pub_path, F_OK) == 0) return PC_KEY_FILE_MISSING;
    randombytes_buf(seed, crypto_sign_SEEDBYTES);
    return key_file_write(key_path, seed, 0600);
}

pc_status journal_key_open(const char *key_path, const uint8_t signer[JOURNAL_PUBLIC_KEY_BYTES],
                           journal_key_t *out, bool *created) {
    uint8_t seed[crypto_sign_SEEDBYTES];
    journal_sodium_ready();
    memset(out, 0, sizeof(*out));
    if (created != NULL) *created = false;
    pc_status status = key_file_read(key_path, true, seed);
    if (status == PC_NOT_FOUND) {
        status = key_create(key_path, signer, seed);
        if (status == PC_OK && created != NULL) *created = true;
    }
    if (status == PC_OK) {
        PC_ASSERT(crypto_sign_seed_keypair(out->public_key, out->secret_key, seed) == 0);
        bool signer_differs = signer != NULL && memcmp(signer, out->public_key, JOURNAL_PUBLIC_KEY_BYTES) != 0;
        status = signer_differs ? PC_KEY_MISMATCH : public_key_file_check(key_path, out);
    }
    sodium_memzero(seed, sizeof(seed));
    if (status != PC_OK) journal_key_wipe(out);
    return status;
}

pc_status journal_key_load_or_create(const char *key_path, journal_key_t *out) {
    return journal_key_open(key_path, NULL, out, NULL);
}

pc_status journal_public_key_load(const char *path, uint8_t out[JOURNAL_PUBLIC_KEY_BYTES]) {
    journal_sodium_ready();
    return key_file_read(path, false, out);
}

void journal_key_wipe(journal_key_t *key) { sodium_memzero(key, sizeof(*key)); }

pc_status journal_secret_file_load(const char *path, uint8_t out[32]) {
    journal_sodium_ready();
    return key_file_read(path, true, out);
}

pc_status journal_secret_file_create(const char *path, const uint8_t bytes[32]) {
    journal_sodium_ready();
    return key_file_write(path, bytes, 0600);
}
