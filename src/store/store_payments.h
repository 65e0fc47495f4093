/* store/store_payments.h: the payments layer's rows (merchants, payments, their
 * operations, wallets, payouts), its lookups and the card vault's rows. Written on the
 * writer thread inside the batch's transaction (store_tx_t: they commit atomically with
 * the ledger transfers of the same step), read through a store reader. SQLite backend:
 * sqlite_payments.c; a PostgreSQL backend implements the same functions.
 *
 * Objects are stored as a few indexed columns plus the payments layer's own JSON
 * document: the store never interprets the document, so a new field needs no
 * migration and every backend keeps the same shape. */
#ifndef PAYCORE_STORE_PAYMENTS_H
#define PAYCORE_STORE_PAYMENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"
#include "store/store.h"

#define STORE_PAY_KIND_SIZE 16
#define STORE_PAY_STATUS_SIZE 24

typedef struct {
    char id[PC_ID_SIZE];
    char kind[STORE_PAY_KIND_SIZE];       /* "merchant", "payment", "op", "wallet", "payout" */
    char merchant_id[PC_ID_SIZE];         /* "" when none */
    char parent_id[PC_ID_SIZE];           /* an op's payment, payout or wallet; "" otherwise */
    char status[STORE_PAY_STATUS_SIZE];   /* "pending" marks an op waiting for its channel */
    uint64_t created_ns;
    uint64_t updated_ns;
    uint32_t version;                     /* 1 at creation, +1 per change */
    char *doc;                            /* JSON. Put: borrowed. Get: malloc'ed, freed by
                                             store_pay_object_free */
    size_t doc_bytes;
    /* A payment's: the final answer of the request that made it (its Idempotency-Key's
     * stored reply names the payment, "@payment:<id>"): the version answered and the
     * HTTP status; 0 until answered. A put with answer_version 0 leaves them; one with
     * an answer writes it only when the row has none (the first final answer stays). */
    uint32_t answer_version;
    int answer_status;
    /* A payment's operation whose outcome is not known yet and which has no row of its
     * own (a card payment's steps live in the payment's records only): "" when none.
     * Indexed for the recovery (store_pay_query_t.pending_op). */
    char pending_op[PC_ID_SIZE];
} store_pay_object_t;

void store_pay_object_free(store_pay_object_t *object);

/* Inserts or replaces the object 'object->id' (a version after the first updates the
 * row where its listing keys are the stored row's). SQLite writes the row at COMMIT
 * with the transaction's other objects' rows (sqlite_payments.c): a failure fails the
 * COMMIT. */
PC_MUST_USE pc_status store_pay_object_put(store_tx_t *tx, const store_pay_object_t *object);
/* PC_OK (out filled), PC_NOT_FOUND, or a read error. */
PC_MUST_USE pc_status store_pay_object_get(store_reader_t *reader, const char *id,
                                           store_pay_object_t *out);

typedef struct {
    const char *kind;                     /* required */
    const char *merchant_id;              /* NULL: every merchant */
    const char *parent_id;                /* NULL: any */
    const char *status;                   /* NULL: any */
    bool pending_op;                      /* only objects naming a pending_op */
    uint64_t created_from_ns;             /* inclusive; 0 = no bound */
    uint64_t created_to_ns;               /* exclusive; 0 = no bound */
    const char *starting_after;           /* an id of this listing, or NULL */
    bool descending;
    uint32_t limit;                       /* 1..API_LIST_LIMIT_MAX; 0: no limit (tools) */
} store_pay_query_t;

/* Calls 'fn' for each object in (created_ns, id) order; the object is borrowed for the
 * call. A 'starting_after' that is not in the listing: PC_NOT_FOUND. */
typedef void (*store_pay_object_fn)(const store_pay_object_t *object, void *ctx);
PC_MUST_USE pc_status store_pay_objects_list(store_reader_t *reader, const store_pay_query_t *query,
                                             store_pay_object_fn fn, void *ctx, bool *has_more);

/* Versions: one record per version of an object, appended by the command that made
 * that version and never rewritten (what the command did, in the payments layer's
 * own form). A payment's row then carries its listing columns only (doc ""): the
 * payments layer renders any version from its records. Inserting a taken
 * (object_id, version): PC_EXISTS. */
PC_MUST_USE pc_status store_pay_version_put(store_tx_t *tx, const char *object_id, uint32_t version,
                                            const char *doc, size_t doc_bytes);
/* A record's stored form made ahead, on any thread (SQLite: its zstd frame), so that
 * the writer only binds bytes: *packed_out malloc'ed (freed by the caller), or NULL when
 * the store keeps the record as it is (or cannot pack it now: the writer does then). */
PC_MUST_USE pc_status store_pay_version_pack(store_t *store, const char *doc, size_t doc_bytes,
                                             uint8_t **packed_out, size_t *packed_bytes_out);
/* store_pay_version_put with the form store_pay_version_pack made of this 'doc' (packed
 * NULL: made here, as store_pay_version_put). What is stored is the same either way. */
PC_MUST_USE pc_status store_pay_version_put_packed(store_tx_t *tx, const char *object_id, uint32_t version,
                                                   const char *doc, size_t doc_bytes, const uint8_t *packed,
                                                   size_t packed_bytes);
/* PC_OK (*doc_out malloc'ed, NUL-terminated, freed by the caller), PC_NOT_FOUND, or a
 * read error. */
PC_MUST_USE pc_status store_pay_version_get(store_reader_t *reader, const char *object_id, uint32_t version,
                                            char **doc_out, size_t *doc_bytes_out);

/* Lookups: a unique name ("idem:...", "risk:...", "attempt:...") naming an object,
 * with optional bytes (a request hash). Inserting a taken name: PC_EXISTS. */
typedef struct {
    char object_id[PC_ID_SIZE];
    uint8_t extra[32];
    size_t extra_bytes;
} store_pay_lookup_t;
PC_MUST_USE pc_status store_pay_lookup_put(store_tx_t *tx, const char *name, const char *object_id,
                                           const uint8_t *extra, size_t extra_bytes);
PC_MUST_USE pc_status store_pay_lookup_get(store_reader_t *reader, const char *name,
                                           store_pay_lookup_t *out);
/* Every lookup whose name starts with 'prefix', in name order. 'fn' answering false
 * stops the scan there: PC_SHUTTING_DOWN (a stop asked during the start). */
typedef bool (*store_pay_lookup_fn)(const char *name, const store_pay_lookup_t *lookup, void *ctx);
PC_MUST_USE pc_status store_pay_lookups_prefix(store_reader_t *reader, const char *prefix,
                                               store_pay_lookup_fn fn, void *ctx);

/* ---- the card vault ---- */
#define STORE_VAULT_WRAPPED_BYTES_MAX 128
#define STORE_VAULT_CIPHERTEXT_BYTES_MAX 64

typedef struct {
    char id[PC_ID_SIZE];                  /* "dk_<hex>" */
    char kind[16];                        /* "data" (card encryption) or "fingerprint" */
    char kek_id[PC_ID_SIZE];              /* the key-encryption key that wraps it */
    uint8_t wrapped[STORE_VAULT_WRAPPED_BYTES_MAX];
    size_t wrapped_bytes;
    uint64_t created_ns;
} store_vault_key_t;

typedef struct {
    char token[PC_ID_SIZE];               /* "tok_<hex>" */
    char data_key_id[PC_ID_SIZE];
    uint8_t nonce[24];
    uint8_t ciphertext[STORE_VAULT_CIPHERTEXT_BYTES_MAX];
    size_t ciphertext_bytes;
    char bin[7];
    char last4[5];
    uint32_t exp_month;
    uint32_t exp_year;
    char fingerprint[65];
    uint64_t created_ns;
} store_vault_card_t;

PC_MUST_USE pc_status store_vault_key_put(store_tx_t *tx, const store_vault_key_t *key);
typedef void (*store_vault_key_fn)(const store_vault_key_t *key, void *ctx);
PC_MUST_USE pc_status store_vault_keys_list(store_reader_t *reader, store_vault_key_fn fn, void *ctx);
/* Inserts a card; an existing token is left as it is (tokens are random). */
PC_MUST_USE pc_status store_vault_card_put(store_tx_t *tx, const store_vault_card_t *card);
PC_MUST_USE pc_status store_vault_card_get(store_reader_t *reader, const char *token,
                                           store_vault_card_t *out);

/* Re-encryption under a new data key (vault_rotate_data_key), in batches:
 * up to 'limit' cards whose data key is not 'key_id', tokens after 'after_token' ("" =
 * from the first) in token order; each with its token, data key id, nonce and
 * ciphertext only (the other fields empty). */
typedef void (*store_vault_card_fn)(const store_vault_card_t *card, void *ctx);
PC_MUST_USE pc_status store_vault_cards_not_under(store_reader_t *reader, const char *key_id,
                                                  const char *after_token, uint32_t limit,
                                                  store_vault_card_fn fn, void *ctx);
/* Replaces a card's encryption (data_key_id, nonce, ciphertext) if it is still under
 * 'from_key_id' (else nothing changes); the other columns stay. */
PC_MUST_USE pc_status store_vault_card_rekey(store_tx_t *tx, const store_vault_card_t *card,
                                             const char *from_key_id);
/* Deletes data key 'key_id' if no card is under it: '*retired' says whether it did. */
PC_MUST_USE pc_status store_vault_key_retire(store_tx_t *tx, const char *key_id, bool *retired);

#endif
