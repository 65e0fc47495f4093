/* store/pg_vault.c: the card vault's re-encryption in the PostgreSQL backend (the
 * same three steps as sqlite_vault.c: the cards not yet under the newest data key in
 * token batches, one card's ciphertext replaced, an unused old data key deleted). */
#include <string.h>

#include "store/pg_internal.h"

pc_status store_pg_vault_cards_not_under(store_reader_t *reader, const char *key_id, const char *after_token,
                                         uint32_t limit, store_vault_card_fn fn, void *ctx) {
    PG_U64(rows, limit);
    const char *params[] = {after_token, key_id, rows};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT token, data_key_id, nonce, ciphertext FROM"
                                " vault_cards WHERE token > $1 AND data_key_id <> $2 ORDER BY token LIMIT $3",
                                3, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PC_OK;
    for (int row = 0; row < PQntuples(result) && status == PC_OK; row++) {
        store_vault_card_t card;
        memset(&card, 0, sizeof card);
        pg_text_copy(card.token, sizeof card.token, result, row, 0);
        pg_text_copy(card.data_key_id, sizeof card.data_key_id, result, row, 1);
        size_t ct_chars = strlen(PQgetvalue(result, row, 3)); /* "\x" + 2 hex digits a byte */
        card.ciphertext_bytes = ct_chars >= 2 ? (ct_chars - 2) / 2 : 0;
        if (card.ciphertext_bytes > sizeof card.ciphertext || !pg_bytea(result, row, 2, card.nonce, sizeof card.nonce) ||
            !pg_bytea(result, row, 3, card.ciphertext, card.ciphertext_bytes)) {
            status = PC_STORE_CORRUPT;
        } else {
            fn(&card, ctx);
        }
    }
    PQclear(result);
    return status;
}

pc_status store_pg_vault_card_rekey(store_tx_t *tx, const store_vault_card_t *card, const char *from_key_id) {
    char nonce[2 * sizeof card->nonce + 3], ciphertext[2 * STORE_VAULT_CIPHERTEXT_BYTES_MAX + 3];
    PC_ASSERT(card->ciphertext_bytes <= STORE_VAULT_CIPHERTEXT_BYTES_MAX);
    pg_bytea_text(card->nonce, sizeof card->nonce, nonce);
    pg_bytea_text(card->ciphertext, card->ciphertext_bytes, ciphertext);
    const char *params[] = {card->token, card->data_key_id, nonce, ciphertext, from_key_id};
    return pg_write(pg_tx_conn(tx), "UPDATE vault_cards SET data_key_id = $2, nonce = $3, ciphertext = $4"
                    " WHERE token = $1 AND data_key_id = $5", 5, params, NULL);
}

pc_status store_pg_vault_key_retire(store_tx_t *tx, const char *key_id, bool *retired) {
    const char *params[] = {key_id};
    int64_t rows = 0;
    pc_status status = pg_write(pg_tx_conn(tx), "DELETE FROM vault_keys WHERE id = $1 AND kind = 'data' AND NOT"
                                " EXISTS (SELECT 1 FROM vault_cards WHERE data_key_id = $1)", 1, params, &rows);
    *retired = status == PC_OK && rows == 1;
    return status;
}
