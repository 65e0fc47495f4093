/* store/pg_payments.c: the payments layer's tables and the card vault's on
 * PostgreSQL, the same rows and semantics as sqlite_payments.c: objects as indexed
 * columns plus the payments layer's JSON document, unique lookups, and the vault's
 * ciphertext (a card number never reaches the database in clear). Writes run on the
 * writer's connection inside the batch's transaction. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

/* A bytea column of at most 'max' bytes into 'out'; false when longer or malformed. */
static bool bytea_into(const PGresult *result, int row, int column, uint8_t *out, size_t max, size_t *bytes) {
    *bytes = 0;
    if (PQgetisnull(result, row, column)) return true;
    size_t length = strlen(PQgetvalue(result, row, column));
    if (length < 2 || (length - 2) / 2 > max) return false;
    if (!pg_bytea(result, row, column, out, (length - 2) / 2)) return false;
    *bytes = (length - 2) / 2;
    return true;
}

static pc_status pg_pay_object_put(store_tx_t *tx, const store_pay_object_t *o) {
    size_t doc_bytes = o->doc_bytes ? o->doc_bytes : strlen(o->doc);
    char *doc = malloc(doc_bytes + 1); /* the document need not end in NUL */
    if (doc == NULL) return PC_NO_MEMORY;
    memcpy(doc, o->doc, doc_bytes);
    doc[doc_bytes] = '\0';
    PG_U64(created, o->created_ns);
    PG_U64(updated, o->updated_ns);
    PG_U64(version, o->version);
    PG_U64(answer_version, o->answer_version);
    PG_U64(answer_status, o->answer_version != 0 ? (uint64_t)o->answer_status : 0);
    const char *params[] = {o->id, o->kind, o->merchant_id, o->parent_id, o->status, created, updated, version, doc,
                            answer_version, answer_status, o->pending_op};
    /* the first final answer stays: a later command of the payment never replaces it */
    pc_status status = pg_write(pg_tx_conn(tx), "INSERT INTO pay_objects(id, kind, merchant_id, parent_id, status,"
                                  " created_ns, updated_ns, version, doc, answer_version, answer_status, pending_op)"
                                  " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO"
                                  " UPDATE SET pending_op = excluded.pending_op, kind ="
                                  " excluded.kind, merchant_id = excluded.merchant_id, parent_id = excluded.parent_id,"
                                  " status = excluded.status, created_ns = excluded.created_ns, updated_ns ="
                                  " excluded.updated_ns, version = excluded.version, doc = excluded.doc,"
                                  " answer_status = CASE pay_objects.answer_version WHEN 0 THEN excluded.answer_status"
                                  " ELSE pay_objects.answer_status END, answer_version = CASE"
                                  " pay_objects.answer_version WHEN 0 THEN excluded.answer_version ELSE"
                                  " pay_objects.answer_version END", 12, params, NULL);
    free(doc);
    return status;
}

#define OBJECT_COLUMNS "id, kind, merchant_id, parent_id, status, created_ns, updated_ns, version, doc, pending_op"
#define OBJECT_ANSWER_COLUMNS OBJECT_COLUMNS ", answer_version, answer_status"

/* Columns of OBJECT_COLUMNS into 'out'; the doc is borrowed from the result. */
static void object_from_row(const PGresult *result, int row, store_pay_object_t *out) {
    memset(out, 0, sizeof *out);
    pg_text_copy(out->id, sizeof out->id, result, row, 0);
    pg_text_copy(out->kind, sizeof out->kind, result, row, 1);
    pg_text_copy(out->merchant_id, sizeof out->merchant_id, result, row, 2);
    pg_text_copy(out->parent_id, sizeof out->parent_id, result, row, 3);
    pg_text_copy(out->status, sizeof out->status, result, row, 4);
    out->created_ns = (uint64_t)pg_int(result, row, 5);
    out->updated_ns = (uint64_t)pg_int(result, row, 6);
    out->version = (uint32_t)pg_int(result, row, 7);
    out->doc = PQgetvalue(result, row, 8);
    out->doc_bytes = (size_t)PQgetlength(result, row, 8);
    pg_text_copy(out->pending_op, sizeof out->pending_op, result, row, 9);
}

static pc_status pg_pay_object_get(store_reader_t *reader, const char *id, store_pay_object_t *out) {
    memset(out, 0, sizeof *out);
    const char *params[] = {id};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT " OBJECT_ANSWER_COLUMNS " FROM pay_objects"
                                " WHERE id = $1", 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        object_from_row(result, 0, out);
        out->answer_version = (uint32_t)pg_int(result, 0, 10);
        out->answer_status = (int)pg_int(result, 0, 11);
        char *doc = malloc(out->doc_bytes + 1);
        if (doc != NULL) memcpy(doc, out->doc, out->doc_bytes + 1);
        out->doc = doc;
        if (doc == NULL) status = PC_NO_MEMORY;
    }
    PQclear(result);
    return status;
}

static pc_status pg_pay_version_put(store_tx_t *tx, const char *object_id, uint32_t version, const char *doc,
                                    size_t doc_bytes) {
    char *text = malloc(doc_bytes + 1); /* the document need not end in NUL */
    if (text == NULL) return PC_NO_MEMORY;
    memcpy(text, doc, doc_bytes);
    text[doc_bytes] = '\0';
    PG_U64(v, version);
    const char *params[] = {object_id, v, text};
    int64_t rows = 0;
    pc_status status = pg_write(pg_tx_conn(tx), "INSERT INTO pay_versions(object_id, version, doc) VALUES($1, $2, $3)"
                                " ON CONFLICT DO NOTHING", 3, params, &rows);
    free(text);
    return status == PC_OK && rows == 0 ? PC_EXISTS : status;
}

static pc_status pg_pay_version_get(store_reader_t *reader, const char *object_id, uint32_t version, char **doc_out,
                                    size_t *doc_bytes_out) {
    PG_U64(v, version);
    const char *params[] = {object_id, v};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT doc FROM pay_versions WHERE object_id = $1 AND"
                                " version = $2", 2, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        size_t bytes = (size_t)PQgetlength(result, 0, 0);
        char *doc = malloc(bytes + 1);
        if (doc == NULL) {
            status = PC_NO_MEMORY;
        } else {
            memcpy(doc, PQgetvalue(result, 0, 0), bytes + 1);
            *doc_out = doc;
            *doc_bytes_out = bytes;
        }
    }
    PQclear(result);
    return status;
}

/* The created_ns of 'id' when it belongs to the listing (kind, merchant). */
static pc_status cursor_find(PGconn *conn, const store_pay_query_t *q, uint64_t *created_ns) {
    const char *params[] = {q->starting_after, q->kind};
    PGresult *result = pg_query(conn, "SELECT created_ns, merchant_id FROM pay_objects WHERE id = $1 AND kind = $2",
                                2, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        *created_ns = (uint64_t)pg_int(result, 0, 0);
        if (q->merchant_id != NULL && strcmp(PQgetvalue(result, 0, 1), q->merchant_id) != 0) status = PC_NOT_FOUND;
    }
    PQclear(result);
    return status;
}

/* Appends " AND <column> <op> $n" with 'value' as parameter n. */
static int condition_add(char *sql, size_t sql_bytes, int n, const char *condition, const char **params,
                         int *param_count, const char *value) {
    params[*param_count] = value;
    (*param_count)++;
    return n + snprintf(sql + n, sql_bytes - (size_t)n, condition, *param_count);
}

static pc_status pg_pay_objects_list(store_reader_t *reader, const store_pay_query_t *q, store_pay_object_fn fn,
                                     void *ctx, bool *has_more) {
    PGconn *conn = pg_reader_conn(reader);
    *has_more = false;
    uint64_t cursor_ns = 0;
    if (q->starting_after != NULL) {
        pc_status status = cursor_find(conn, q, &cursor_ns);
        if (status != PC_OK) return status;
    }
    PG_U64(from, q->created_from_ns);
    PG_U64(to, q->created_to_ns ? q->created_to_ns : (uint64_t)INT64_MAX);
    PG_U64(cursor, cursor_ns);
    PG_U64(limit, (uint64_t)q->limit + 1);
    const char *params[9];
    int count = 0;
    char sql[768];
    int n = snprintf(sql, sizeof sql, "SELECT " OBJECT_COLUMNS " FROM pay_objects WHERE true");
    n = condition_add(sql, sizeof sql, n, " AND kind = $%d", params, &count, q->kind);
    /* the listings' indexes leave operations out: this term lets the planner use them */
    if (strcmp(q->kind, "op") != 0) n += snprintf(sql + n, sizeof sql - (size_t)n, " AND kind <> 'op'");
    if (q->merchant_id) n = condition_add(sql, sizeof sql, n, " AND merchant_id = $%d", params, &count, q->merchant_id);
    if (q->parent_id) n = condition_add(sql, sizeof sql, n, " AND parent_id = $%d", params, &count, q->parent_id);
    /* the recovery's statuses inline: their partial indexes serve a generic plan too */
    if (q->status && (strcmp(q->status, "pending") == 0 || strcmp(q->status, "processing") == 0)) {
        n += snprintf(sql + n, sizeof sql - (size_t)n, " AND status = '%s'", q->status);
    } else if (q->status) {
        n = condition_add(sql, sizeof sql, n, " AND status = $%d", params, &count, q->status);
    }
    if (q->pending_op) n += snprintf(sql + n, sizeof sql - (size_t)n, " AND pending_op <> ''"); /* its partial index */
    n = condition_add(sql, sizeof sql, n, " AND created_ns >= $%d", params, &count, from);
    n = condition_add(sql, sizeof sql, n, " AND created_ns < $%d", params, &count, to);
    if (q->starting_after) {
        n = condition_add(sql, sizeof sql, n, q->descending ? " AND (created_ns, id) < ($%d" : " AND (created_ns, id) > ($%d",
                          params, &count, cursor);
        n = condition_add(sql, sizeof sql, n, ", $%d)", params, &count, q->starting_after);
    }
    n += snprintf(sql + n, sizeof sql - (size_t)n, q->descending ? " ORDER BY created_ns DESC, id DESC"
                                                                 : " ORDER BY created_ns, id");
    if (q->limit) (void)condition_add(sql, sizeof sql, n, " LIMIT $%d", params, &count, limit);
    PGresult *result = pg_query(conn, sql, count, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    int rows = PQntuples(result);
    *has_more = q->limit != 0 && (uint32_t)rows > q->limit;
    for (int row = 0; row < rows && (q->limit == 0 || (uint32_t)row < q->limit); row++) {
        store_pay_object_t object;
        object_from_row(result, row, &object);
        fn(&object, ctx);
    }
    PQclear(result);
    return PC_OK;
}

static pc_status pg_pay_lookup_put(store_tx_t *tx, const char *name, const char *object_id, const uint8_t *extra,
                                   size_t extra_bytes) {
    char extra_text[2 * 32 + 3];
    if (extra_bytes > 32) return PC_INVALID_ARGUMENT;
    if (extra_bytes > 0) pg_bytea_text(extra, extra_bytes, extra_text);
    const char *params[] = {name, object_id, extra_bytes > 0 ? extra_text : NULL};
    int64_t rows = 0;
    pc_status status = pg_write(pg_tx_conn(tx), "INSERT INTO pay_lookups(name, object_id, extra) VALUES($1, $2, $3)"
                                  " ON CONFLICT (name) DO NOTHING", 3, params, &rows);
    return status == PC_OK && rows == 0 ? PC_EXISTS : status;
}

static void lookup_from_row(const PGresult *result, int row, int first, store_pay_lookup_t *out) {
    memset(out, 0, sizeof *out);
    pg_text_copy(out->object_id, sizeof out->object_id, result, row, first);
    if (!bytea_into(result, row, first + 1, out->extra, sizeof out->extra, &out->extra_bytes)) out->extra_bytes = 0;
}

static pc_status pg_pay_lookup_get(store_reader_t *reader, const char *name, store_pay_lookup_t *out) {
    memset(out, 0, sizeof *out);
    const char *params[] = {name};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT object_id, extra FROM pay_lookups WHERE name = $1", 1,
                                params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) lookup_from_row(result, 0, 0, out);
    PQclear(result);
    return status;
}

static pc_status pg_pay_lookups_prefix(store_reader_t *reader, const char *prefix, store_pay_lookup_fn fn,
                                       void *ctx) {
    const char *params[] = {prefix};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT name, object_id, extra FROM pay_lookups WHERE"
                                " starts_with(name, $1) ORDER BY name", 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    bool going = true;
    for (int row = 0; going && row < PQntuples(result); row++) {
        store_pay_lookup_t lookup;
        lookup_from_row(result, row, 1, &lookup);
        going = fn(PQgetvalue(result, row, 0), &lookup, ctx);
    }
    PQclear(result);
    return going ? PC_OK : PC_SHUTTING_DOWN;
}

/* ---- the vault ---- */

static pc_status pg_vault_key_put(store_tx_t *tx, const store_vault_key_t *key) {
    char wrapped[2 * STORE_VAULT_WRAPPED_BYTES_MAX + 3];
    PC_ASSERT(key->wrapped_bytes <= STORE_VAULT_WRAPPED_BYTES_MAX);
    pg_bytea_text(key->wrapped, key->wrapped_bytes, wrapped);
    PG_U64(created, key->created_ns);
    const char *params[] = {key->id, key->kind, key->kek_id, wrapped, created};
    return pg_write(pg_tx_conn(tx), "INSERT INTO vault_keys(id, kind, kek_id, wrapped, created_ns) VALUES($1, $2,"
                      " $3, $4, $5) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, kek_id = excluded.kek_id,"
                      " wrapped = excluded.wrapped, created_ns = excluded.created_ns", 5, params, NULL);
}

static pc_status pg_vault_keys_list(store_reader_t *reader, store_vault_key_fn fn, void *ctx) {
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT id, kind, kek_id, wrapped, created_ns FROM vault_keys"
                                " ORDER BY created_ns, id", 0, NULL);
    if (result == NULL) return PC_STORE_READ_FAILED;
    for (int row = 0; row < PQntuples(result); row++) {
        store_vault_key_t key;
        memset(&key, 0, sizeof key);
        pg_text_copy(key.id, sizeof key.id, result, row, 0);
        pg_text_copy(key.kind, sizeof key.kind, result, row, 1);
        pg_text_copy(key.kek_id, sizeof key.kek_id, result, row, 2);
        if (!bytea_into(result, row, 3, key.wrapped, sizeof key.wrapped, &key.wrapped_bytes)) continue;
        key.created_ns = (uint64_t)pg_int(result, row, 4);
        fn(&key, ctx);
    }
    PQclear(result);
    return PC_OK;
}

static pc_status pg_vault_card_put(store_tx_t *tx, const store_vault_card_t *card) {
    char nonce[2 * sizeof card->nonce + 3], ciphertext[2 * STORE_VAULT_CIPHERTEXT_BYTES_MAX + 3];
    PC_ASSERT(card->ciphertext_bytes <= STORE_VAULT_CIPHERTEXT_BYTES_MAX);
    pg_bytea_text(card->nonce, sizeof card->nonce, nonce);
    pg_bytea_text(card->ciphertext, card->ciphertext_bytes, ciphertext);
    PG_U64(month, card->exp_month);
    PG_U64(year, card->exp_year);
    PG_U64(created, card->created_ns);
    const char *params[] = {card->token, card->data_key_id, nonce, ciphertext, card->bin, card->last4, month, year,
                            card->fingerprint, created};
    return pg_write(pg_tx_conn(tx), "INSERT INTO vault_cards(token, data_key_id, nonce, ciphertext, bin, last4,"
                      " exp_month, exp_year, fingerprint, created_ns) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                      " ON CONFLICT (token) DO NOTHING", 10, params, NULL);
}

static pc_status pg_vault_card_get(store_reader_t *reader, const char *token, store_vault_card_t *out) {
    memset(out, 0, sizeof *out);
    const char *params[] = {token};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT token, data_key_id, nonce, ciphertext, bin, last4,"
                                " exp_month, exp_year, fingerprint, created_ns FROM vault_cards WHERE token = $1", 1,
                                params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        pg_text_copy(out->token, sizeof out->token, result, 0, 0);
        pg_text_copy(out->data_key_id, sizeof out->data_key_id, result, 0, 1);
        if (!pg_bytea(result, 0, 2, out->nonce, sizeof out->nonce) ||
            !bytea_into(result, 0, 3, out->ciphertext, sizeof out->ciphertext, &out->ciphertext_bytes)) {
            status = PC_STORE_CORRUPT;
        }
        pg_text_copy(out->bin, sizeof out->bin, result, 0, 4);
        pg_text_copy(out->last4, sizeof out->last4, result, 0, 5);
        out->exp_month = (uint32_t)pg_int(result, 0, 6);
        out->exp_year = (uint32_t)pg_int(result, 0, 7);
        pg_text_copy(out->fingerprint, sizeof out->fingerprint, result, 0, 8);
        out->created_ns = (uint64_t)pg_int(result, 0, 9);
    }
    PQclear(result);
    return status;
}

const store_payments_ops_t store_pg_payments_ops = {
    .object_put = pg_pay_object_put,
    .object_get = pg_pay_object_get,
    .objects_list = pg_pay_objects_list,
    .version_put = pg_pay_version_put,
    .version_get = pg_pay_version_get,
    .lookup_put = pg_pay_lookup_put,
    .lookup_get = pg_pay_lookup_get,
    .lookups_prefix = pg_pay_lookups_prefix,
    .vault_key_put = pg_vault_key_put,
    .vault_keys_list = pg_vault_keys_list,
    .vault_card_put = pg_vault_card_put,
    .vault_card_get = pg_vault_card_get,
    .vault_cards_not_under = store_pg_vault_cards_not_under, /* sqlite_vault.c / pg_vault.c */
    .vault_card_rekey = store_pg_vault_card_rekey,
    .vault_key_retire = store_pg_vault_key_retire,
};
