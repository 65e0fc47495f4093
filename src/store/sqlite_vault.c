/* store/sqlite_vault.c: the card vault's re-encryption in the SQLite backend: the
 * cards not yet under the newest data key, in token batches; one card's ciphertext
 * replaced; an old data key deleted once no card is under it. Rare operator actions:
 * each prepares its statement (no cache slot). */
#include <string.h>

#include "store/sqlite_internal.h"

/* Token, data key id, nonce and ciphertext of the current row; false when the row's
 * blobs do not fit a card. */
static bool card_from_row(sqlite3_stmt *stmt, store_vault_card_t *out) {
    memset(out, 0, sizeof *out);
    store_sqlite_text_copy(out->token, sizeof out->token, stmt, 0);
    store_sqlite_text_copy(out->data_key_id, sizeof out->data_key_id, stmt, 1);
    int nonce_bytes = sqlite3_column_bytes(stmt, 2);
    int ct_bytes = sqlite3_column_bytes(stmt, 3);
    if (nonce_bytes != (int)sizeof out->nonce || ct_bytes < 0 || (size_t)ct_bytes > sizeof out->ciphertext) {
        return false;
    }
    memcpy(out->nonce, sqlite3_column_blob(stmt, 2), sizeof out->nonce);
    memcpy(out->ciphertext, sqlite3_column_blob(stmt, 3), (size_t)ct_bytes);
    out->ciphertext_bytes = (size_t)ct_bytes;
    return true;
}

pc_status store_sqlite_vault_cards_not_under(store_reader_t *reader, const char *key_id, const char *after_token,
                                             uint32_t limit, store_vault_card_fn fn, void *ctx) {
    sqlite3_stmt *stmt;
    pc_status status = store_sqlite_prepare(store_sqlite_reader_conn(reader).db,
                                            "SELECT token, data_key_id, nonce, ciphertext FROM vault_cards"
                                            " WHERE token > ?1 AND data_key_id <> ?2 ORDER BY token LIMIT ?3",
                                            &stmt, PC_STORE_READ_FAILED);
    if (status != PC_OK) return status;
    sqlite3_bind_text(stmt, 1, after_token, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)limit);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && status == PC_OK) {
        store_vault_card_t card;
        if (card_from_row(stmt, &card)) fn(&card, ctx);
        else status = PC_STORE_CORRUPT;
    }
    sqlite3_finalize(stmt);
    if (status == PC_OK && rc != SQLITE_DONE) status = PC_STORE_READ_FAILED;
    return status;
}

pc_status store_sqlite_vault_card_rekey(store_tx_t *tx, const store_vault_card_t *card, const char *from_key_id) {
    sqlite3_stmt *stmt;
    pc_status status = store_sqlite_vault_cards_flush(store_sqlite_tx_store(tx)); /* this statement reads the table */
    if (status != PC_OK) return status;
    status = store_sqlite_prepare(store_sqlite_tx_conn(tx).db,
                                            "UPDATE vault_cards SET data_key_id = ?2, nonce = ?3, ciphertext = ?4"
                                            " WHERE token = ?1 AND data_key_id = ?5",
                                            &stmt, PC_STORE_COMMIT_FAILED);
    if (status != PC_OK) return status;
    sqlite3_bind_text(stmt, 1, card->token, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, card->data_key_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 3, card->nonce, (int)sizeof card->nonce, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 4, card->ciphertext, (int)card->ciphertext_bytes, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, from_key_id, -1, SQLITE_STATIC);
    return store_sqlite_step_done(stmt);
}

pc_status store_sqlite_vault_key_retire(store_tx_t *tx, const char *key_id, bool *retired) {
    sqlite3 *db = store_sqlite_tx_conn(tx).db;
    sqlite3_stmt *stmt;
    pc_status status = store_sqlite_vault_cards_flush(store_sqlite_tx_store(tx)); /* its NOT EXISTS reads them */
    if (status != PC_OK) return status;
    status = store_sqlite_prepare(db,
                                            "DELETE FROM vault_keys WHERE id = ?1 AND kind = 'data' AND NOT EXISTS"
                                            " (SELECT 1 FROM vault_cards WHERE data_key_id = ?1)",
                                            &stmt, PC_STORE_COMMIT_FAILED);
    if (status != PC_OK) return status;
    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC);
    status = store_sqlite_step_done(stmt);
    *retired = status == PC_OK && sqlite3_changes(db) == 1;
    return status;
}
