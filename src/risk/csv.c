/* risk/csv.c: reads the authorization CSV (header row, ',' separator, no quoting,
 * empty field = missing). Columns are found by their header names, so their order
 * may change; is_fraud and txn_id may be absent. A bad row is an error with its line
 * number: a training set is never silently shortened. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "risk/risk.h"

enum {
    COL_TXN_ID, COL_TS, COL_PAYER, COL_PAYEE, COL_AMOUNT, COL_CURRENCY, COL_MCC,
    COL_CHANNEL, COL_COUNTRY_PAYER, COL_COUNTRY_MERCHANT, COL_DEVICE, COL_IP,
    COL_ACCOUNT_AGE, COL_IS_FRAUD, COL_COUNT
};

static const char *const col_names[COL_COUNT] = {
    "txn_id", "ts", "payer_id", "payee_id", "amount_minor", "currency", "mcc", "channel",
    "country_payer", "country_merchant", "device_id", "ip_prefix", "account_age_days",
    "is_fraud",
};

struct risk_csv {
    FILE *file;
    uint64_t line;
    uint64_t bytes_read;
    uint64_t bytes_total;
    int col_index[COL_COUNT];    /* field position of each column; -1 when absent */
    char buf[RISK_CSV_LINE_BYTES_MAX + 2];
};

/* Splits 'line' in place at ','; returns the field count (RISK_CSV_FIELDS_MAX + 1 = too many). */
static int split_fields(char *line, char *fields[RISK_CSV_FIELDS_MAX]) {
    size_t n = strcspn(line, "\r\n");
    line[n] = '\0';
    int count = 0;
    char *p = line;
    for (;;) {
        if (count == RISK_CSV_FIELDS_MAX) return RISK_CSV_FIELDS_MAX + 1;
        fields[count++] = p;
        char *comma = strchr(p, ',');
        if (comma == NULL) break;
        *comma = '\0';
        p = comma + 1;
    }
    return count;
}

static pc_status read_header(risk_csv_t *csv) {
    if (fgets(csv->buf, sizeof(csv->buf), csv->file) == NULL) return PC_RISK_CSV_INVALID;
    csv->line = 1;
    csv->bytes_read += strlen(csv->buf);
    char *fields[RISK_CSV_FIELDS_MAX];
    int count = split_fields(csv->buf, fields);
    if (count > RISK_CSV_FIELDS_MAX) return PC_RISK_CSV_INVALID;
    for (int c = 0; c < COL_COUNT; c++) {
        csv->col_index[c] = -1;
        for (int f = 0; f < count; f++) {
            if (strcmp(fields[f], col_names[c]) == 0) csv->col_index[c] = f;
        }
        bool optional = c == COL_TXN_ID || c == COL_IS_FRAUD;
        if (csv->col_index[c] < 0 && !optional) return PC_RISK_CSV_INVALID;
    }
    return PC_OK;
}

pc_status risk_csv_open(const char *path, risk_csv_t **out) {
    *out = NULL;
    risk_csv_t *csv = calloc(1, sizeof(*csv));
    if (csv == NULL) return PC_NO_MEMORY;
    csv->file = fopen(path, "r");
    if (csv->file == NULL) {
        free(csv);
        return errno == ENOENT ? PC_NOT_FOUND : PC_IO;
    }
    struct stat st;
    if (fstat(fileno(csv->file), &st) == 0) csv->bytes_total = (uint64_t)st.st_size;
    pc_status status = read_header(csv);
    if (status != PC_OK) {
        risk_csv_close(csv);
        return status;
    }
    *out = csv;
    return PC_OK;
}

static bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (s[0] == '\0') return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) return false;
    *out = v;
    return true;
}

static bool copy_field(char *dst, size_t dst_size, const char *src) {
    size_t n = strlen(src);
    if (n >= dst_size) return false;
    memcpy(dst, src, n + 1);
    return true;
}

/* Fills 'a' from one split row; false on any bad field. */
static bool fill_auth(const risk_csv_t *csv, char *const fields[], risk_auth_t *a) {
    const int *ix = csv->col_index;
    int64_t v = 0;
    memset(a, 0, sizeof(*a));
    a->is_fraud = -1;
    if (ix[COL_TXN_ID] >= 0 && fields[ix[COL_TXN_ID]][0] != '\0') {
        if (!parse_i64(fields[ix[COL_TXN_ID]], 0, INT64_MAX, &a->txn_id)) return false;
    }
    if (!parse_i64(fields[ix[COL_TS]], 0, INT64_MAX / 2, &a->ts_s)) return false;
    if (!copy_field(a->payer_id, sizeof(a->payer_id), fields[ix[COL_PAYER]])) return false;
    if (!copy_field(a->payee_id, sizeof(a->payee_id), fields[ix[COL_PAYEE]])) return false;
    if (!parse_i64(fields[ix[COL_AMOUNT]], 1, INT64_MAX, &a->amount_minor)) return false;
    if (!copy_field(a->currency, sizeof(a->currency), fields[ix[COL_CURRENCY]])) return false;
    if (!parse_i64(fields[ix[COL_MCC]], 0, 9999, &v)) return false;
    a->mcc = (uint16_t)v;
    if (risk_auth_set_channel(a, fields[ix[COL_CHANNEL]]) != PC_OK) return false;
    if (!copy_field(a->country_payer, 3, fields[ix[COL_COUNTRY_PAYER]])) return false;
    if (!copy_field(a->country_merchant, 3, fields[ix[COL_COUNTRY_MERCHANT]])) return false;
    if (!copy_field(a->device_id, sizeof(a->device_id), fields[ix[COL_DEVICE]])) return false;
    if (!copy_field(a->ip_prefix, sizeof(a->ip_prefix), fields[ix[COL_IP]])) return false;
    if (!parse_i64(fields[ix[COL_ACCOUNT_AGE]], 0, 1000000, &v)) return false;
    a->account_age_days = (int32_t)v;
    if (ix[COL_IS_FRAUD] >= 0 && fields[ix[COL_IS_FRAUD]][0] != '\0') {
        if (!parse_i64(fields[ix[COL_IS_FRAUD]], 0, 1, &v)) return false;
        a->is_fraud = (int8_t)v;
    }
    const char *field = NULL;
    return risk_auth_validate(a, &field) == PC_OK;
}

pc_status risk_csv_next(risk_csv_t *csv, risk_auth_t *out) {
    if (fgets(csv->buf, sizeof(csv->buf), csv->file) == NULL) return PC_NOT_FOUND;
    csv->line++;
    size_t bytes = strlen(csv->buf);
    csv->bytes_read += bytes;
    if (bytes > RISK_CSV_LINE_BYTES_MAX) return PC_RISK_CSV_INVALID;
    if (csv->buf[0] == '\n' || csv->buf[0] == '\r') return PC_RISK_CSV_INVALID;
    char *fields[RISK_CSV_FIELDS_MAX];
    int count = split_fields(csv->buf, fields);
    for (int c = 0; c < COL_COUNT; c++) {
        if (csv->col_index[c] >= count) return PC_RISK_CSV_INVALID;
    }
    risk_auth_t auth;
    if (!fill_auth(csv, fields, &auth)) return PC_RISK_CSV_INVALID;
    *out = auth;
    return PC_OK;
}

uint64_t risk_csv_line(const risk_csv_t *csv) { return csv->line; }
uint64_t risk_csv_bytes_read(const risk_csv_t *csv) { return csv->bytes_read; }
uint64_t risk_csv_bytes_total(const risk_csv_t *csv) { return csv->bytes_total; }

void risk_csv_close(risk_csv_t *csv) {
    if (csv == NULL) return;
    if (csv->file != NULL) fclose(csv->file);
    free(csv);
}

/* ---- the authorization's own checks (shared with the API) ---- */

static const char *const channel_names[RISK_CHANNEL_COUNT] = {
    "card_present", "ecommerce", "wallet", "bank_transfer",
};

const char *risk_channel_name(risk_channel channel) {
    return (unsigned)channel < RISK_CHANNEL_COUNT ? channel_names[channel] : "unknown";
}

pc_status risk_auth_set_channel(risk_auth_t *auth, const char *channel) {
    for (int c = 0; c < RISK_CHANNEL_COUNT; c++) {
        if (strcmp(channel, channel_names[c]) == 0) {
            auth->channel = (risk_channel)c;
            return PC_OK;
        }
    }
    return PC_RISK_CHANNEL_INVALID;
}

static bool upper_code(const char *s, size_t len) {
    if (strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 'A' || s[i] > 'Z') return false;
    }
    return true;
}

/* Device ids and IP prefixes are free-form but printable, without ',' (CSV). */
static bool printable_key(const char *s) {
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || *s == ',') return false;
    }
    return true;
}

pc_status risk_auth_validate(const risk_auth_t *a, const char **field_out) {
    *field_out = NULL;
    if (a->ts_s <= 0) { *field_out = "ts"; return PC_VALUE_OUT_OF_RANGE; }
    if (!pc_id_valid(a->payer_id)) { *field_out = "payer_id"; return PC_ID_INVALID; }
    if (!pc_id_valid(a->payee_id)) { *field_out = "payee_id"; return PC_ID_INVALID; }
    if (a->amount_minor <= 0) { *field_out = "amount_minor"; return PC_AMOUNT_OUT_OF_RANGE; }
    if (!upper_code(a->currency, 3)) { *field_out = "currency"; return PC_CURRENCY_INVALID; }
    if (a->mcc > 9999) { *field_out = "mcc"; return PC_VALUE_OUT_OF_RANGE; }
    if ((unsigned)a->channel >= RISK_CHANNEL_COUNT) {
        *field_out = "channel";
        return PC_RISK_CHANNEL_INVALID;
    }
    if (!upper_code(a->country_payer, 2)) { *field_out = "country_payer"; return PC_VALUE_OUT_OF_RANGE; }
    if (!upper_code(a->country_merchant, 2)) {
        *field_out = "country_merchant";
        return PC_VALUE_OUT_OF_RANGE;
    }
    if (!printable_key(a->device_id)) { *field_out = "device_id"; return PC_VALUE_OUT_OF_RANGE; }
    if (!printable_key(a->ip_prefix)) { *field_out = "ip_prefix"; return PC_VALUE_OUT_OF_RANGE; }
    if (a->account_age_days < 0) { *field_out = "account_age_days"; return PC_VALUE_OUT_OF_RANGE; }
    return PC_OK;
}

void risk_auth_scope(risk_auth_t *a, const char *owner_id) {
    pc_str_copy(a->owner_id, sizeof a->owner_id, owner_id);
    uint64_t scope = pc_hash64(owner_id, strlen(owner_id));
    a->scope = scope == 0 ? 1 : scope;
}
