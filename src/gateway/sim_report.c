/* gateway/sim_report.c: daily settlement reports (CSV, RFC 4180) of what a simulator
 * settled, and injected discrepancies that make the next report of a day wrong in a
 * chosen way, recorded with exactly which rows they touched (the reconciliation's
 * answer key). The routes run in their request's unit; the worker's daily file takes
 * a unit of its own. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"

#define DAY_MS (24ll * 3600 * 1000)

typedef struct {
    char record_id[SIM_ID_SIZE];
    char key[SIM_ID_SIZE];
    char type[12];
    int64_t amount;
    char currency[4];
    char merchant_ref[SIM_REF_BYTES_MAX + 1];
    int64_t settled_at_ms;
} report_row_t;

typedef struct {
    report_row_t *rows;           /* owned */
    size_t count;
    size_t capacity;
} report_t;

static const char *const discrepancy_kinds[] = {"missing_row", "extra_row", "amount_mismatch", "currency_mismatch",
                                                "duplicate_row"};

void sim_utc_date(uint64_t wall_ms, char out[11]) {
    time_t seconds = (time_t)(wall_ms / 1000);
    struct tm utc;
    gmtime_r(&seconds, &utc);
    strftime(out, 11, "%Y-%m-%d", &utc);
}

/* The first ms of a YYYY-MM-DD day (UTC); false when it is not a real date. */
static bool day_start(const char *date, int64_t *out_ms) {
    struct tm utc;
    memset(&utc, 0, sizeof utc);
    if (strlen(date) != 10 || date[4] != '-' || date[7] != '-') return false;
    const char *end = strptime(date, "%Y-%m-%d", &utc);
    if (end == NULL || *end != '\0' || utc.tm_year < 70 || utc.tm_year > 1100) return false;
    time_t seconds = timegm(&utc);
    char again[11];
    sim_utc_date((uint64_t)seconds * 1000, again);
    if (strcmp(again, date) != 0) return false; /* 2025-02-30 */
    *out_ms = (int64_t)seconds * 1000;
    return true;
}

static bool report_push(report_t *report, const report_row_t *row) {
    if (report->count == SIM_REPORT_ROWS_MAX) return false;
    if (report->count == report->capacity) {
        size_t capacity = report->capacity ? report->capacity * 2 : 64;
        report_row_t *grown = realloc(report->rows, capacity * sizeof(*grown));
        if (grown == NULL) return false;
        report->rows = grown;
        report->capacity = capacity;
    }
    report->rows[report->count++] = *row;
    return true;
}

/* The true rows of one day, in report order. */
static bool report_load(sim_t *sim, int64_t start_ms, report_t *report) {
    sqlite3_stmt *stmt = sim_db_query(
        &sim->db,
        "SELECT r.id, r.idempotency_key, CASE WHEN r.kind = 'transfer' THEN"
        " (SELECT t.direction FROM transfers t WHERE t.id = r.id) ELSE r.kind END, r.amount, r.currency,"
        " coalesce(r.merchant_ref, ''), r.settled_at_ms FROM records r WHERE r.settled_at_ms >= ?"
        " AND r.settled_at_ms < ? AND r.status IN ('approved', 'settled')"
        " AND r.kind IN ('capture', 'refund', 'payment', 'transfer') ORDER BY r.settled_at_ms, r.id",
        "ii", start_ms, start_ms + DAY_MS);
    if (stmt == NULL) return false;
    int rc;
    bool ok = true;
    while (ok && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        report_row_t row;
        memset(&row, 0, sizeof row);
        snprintf(row.record_id, sizeof row.record_id, "%s", sim_col_text(stmt, 0));
        snprintf(row.key, sizeof row.key, "%s", sim_col_text(stmt, 1));
        snprintf(row.type, sizeof row.type, "%s", sim_col_text(stmt, 2));
        row.amount = sqlite3_column_int64(stmt, 3);
        snprintf(row.currency, sizeof row.currency, "%s", sim_col_text(stmt, 4));
        snprintf(row.merchant_ref, sizeof row.merchant_ref, "%s", sim_col_text(stmt, 5));
        row.settled_at_ms = sqlite3_column_int64(stmt, 6);
        ok = report_push(report, &row);
    }
    sqlite3_reset(stmt);
    return ok && rc == SQLITE_DONE;
}

/* ---- discrepancies ---- */

static json_t *touched(const char *record_id, const char *field, const char *truth, const char *reported) {
    return json_pack("{s:s,s:s,s:s,s:s}", "record_id", record_id, "field", field, "true", truth, "reported", reported);
}

static void amount_text(int64_t amount, char out[24]) {
    snprintf(out, 24, "%lld", (long long)amount);
}

/* Rows that match no record, at the end. */
static bool add_extra_rows(sim_t *sim, report_t *report, const char *date, int64_t start_ms, int64_t id,
                           int64_t count, json_t *rows) {
    static const char *const main_type[SIM_KIND_COUNT] = {"capture", "payment", "credit"};
    char currency[4];
    snprintf(currency, sizeof currency, "%s", report->count > 0 ? report->rows[0].currency : "EUR");
    for (int64_t i = 0; i < count; i++) {
        char salt[64];
        snprintf(salt, sizeof salt, "%s:%lld:%lld", date, (long long)id, (long long)i);
        report_row_t row;
        memset(&row, 0, sizeof row);
        sim_make_id(sim, "x_", "extra_row", salt, row.record_id);
        row.amount = (int64_t)(strtoull(row.record_id + 2 + 16, NULL, 16) % 100000) + 1;
        snprintf(row.type, sizeof row.type, "%s", main_type[sim->kind]);
        snprintf(row.currency, sizeof row.currency, "%s", currency);
        row.settled_at_ms = start_ms + DAY_MS / 2;
        if (!report_push(report, &row)) return false;
        char amount[24];
        amount_text(row.amount, amount);
        json_array_append_new(rows, touched(row.record_id, "row", "absent", amount));
    }
    return true;
}

/* Changes the first 'count' rows in place (amount or currency), or drops or doubles them. */
static bool change_rows(report_t *report, const char *kind, int64_t count, json_t *rows) {
    size_t touch = report->count < (size_t)count ? report->count : (size_t)count;
    report_t out = {0};
    for (size_t i = 0; i < report->count; i++) {
        report_row_t row = report->rows[i];
        bool hit = i < touch;
        char truth[24], reported[24];
        if (hit && strcmp(kind, "amount_mismatch") == 0) {
            amount_text(row.amount, truth);
            row.amount += 1;
            amount_text(row.amount, reported);
            json_array_append_new(rows, touched(row.record_id, "amount", truth, reported));
        } else if (hit && strcmp(kind, "currency_mismatch") == 0) {
            snprintf(truth, sizeof truth, "%s", row.currency);
            snprintf(row.currency, sizeof row.currency, "%s", strcmp(row.currency, "USD") == 0 ? "EUR" : "USD");
            json_array_append_new(rows, touched(row.record_id, "currency", truth, row.currency));
        } else if (hit) {
            bool missing = strcmp(kind, "missing_row") == 0;
            json_array_append_new(rows, touched(row.record_id, "row", "1", missing ? "0" : "2"));
            if (missing) continue;
            if (!report_push(&out, &row)) return free(out.rows), false; /* the duplicate */
        }
        if (!report_push(&out, &row)) return free(out.rows), false;
    }
    free(report->rows);
    *report = out;
    return true;
}

typedef struct {
    int64_t id;
    char kind[24];
    int64_t count;
} discrepancy_t;

/* The date's first pending discrepancy: 1 found, 0 none, -1 error. */
static int discrepancy_next(sim_t *sim, const char *date, discrepancy_t *out) {
    sqlite3_stmt *stmt = sim_db_query(&sim->db, "SELECT id, kind, count FROM discrepancies WHERE date = ?"
                                      " AND consumed_at_ms IS NULL ORDER BY id LIMIT 1", "s", date);
    if (stmt == NULL) return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(stmt, 0);
        snprintf(out->kind, sizeof out->kind, "%s", sim_col_text(stmt, 1));
        out->count = sqlite3_column_int64(stmt, 2);
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Applies one discrepancy to the report and records what it touched. */
static bool discrepancy_apply(sim_t *sim, const char *date, int64_t start_ms, report_t *report,
                              const discrepancy_t *discrepancy) {
    json_t *rows = json_array();
    bool ok = strcmp(discrepancy->kind, "extra_row") == 0
                  ? add_extra_rows(sim, report, date, start_ms, discrepancy->id, discrepancy->count, rows)
                  : change_rows(report, discrepancy->kind, discrepancy->count, rows);
    json_t *detail = json_pack("{s:I,s:o}", "applied", (json_int_t)json_array_size(rows), "rows", rows);
    char *text = json_dumps(detail, JSON_COMPACT);
    json_decref(detail);
    ok = ok && text != NULL &&
         sim_db_run(&sim->db, "UPDATE discrepancies SET consumed_at_ms = ?, detail = ? WHERE id = ?", "isi",
                    (int64_t)sim_wall_ms(), text, discrepancy->id);
    free(text);
    return ok;
}

/* Applies (and consumes) the date's pending discrepancies, in id order. */
static bool discrepancies_apply(sim_t *sim, const char *date, int64_t start_ms, report_t *report) {
    discrepancy_t discrepancy;
    int found;
    while ((found = discrepancy_next(sim, date, &discrepancy)) == 1) {
        if (!discrepancy_apply(sim, date, start_ms, report, &discrepancy)) return false;
    }
    return found == 0;
}

/* ---- rendering and files ---- */

static void csv_field(FILE *out, const char *text) {
    if (strpbrk(text, ",\"\r\n") == NULL) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '"') fputc('"', out);
        fputc(*c, out);
    }
    fputc('"', out);
}

static void timestamp_text(int64_t wall_ms, char out[32]) {
    time_t seconds = (time_t)(wall_ms / 1000);
    struct tm utc;
    gmtime_r(&seconds, &utc);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out, 32, "%s.%03dZ", base, (int)(wall_ms % 1000));
}

static bool report_render(const sim_t *sim, const char *date, const report_t *report, char **csv, size_t *bytes) {
    FILE *out = open_memstream(csv, bytes);
    if (out == NULL) return false;
    fputs("report_date,channel,record_id,idempotency_key,type,amount,currency,merchant_ref,settled_at\n", out);
    for (size_t i = 0; i < report->count; i++) {
        const report_row_t *row = &report->rows[i];
        char settled_at[32];
        timestamp_text(row->settled_at_ms, settled_at);
        fprintf(out, "%s,%s,%s,%s,%s,%lld,%s,", date, sim_kind_name(sim->kind), row->record_id, row->key, row->type,
                (long long)row->amount, row->currency);
        csv_field(out, row->merchant_ref);
        fprintf(out, ",%s\n", settled_at);
    }
    return fclose(out) == 0;
}

/* The report of one day: true rows, then the pending discrepancies (consumed). */
static bool report_build(sim_t *sim, const char *date, int64_t start_ms, char **csv, size_t *bytes) {
    report_t report = {0};
    bool ok = report_load(sim, start_ms, &report) && discrepancies_apply(sim, date, start_ms, &report) &&
              report_render(sim, date, &report, csv, bytes);
    free(report.rows);
    return ok;
}

/* Writes the file through a temporary name: a reader never sees half a report. */
static bool report_file_write(const sim_t *sim, const char *date, const char *csv, size_t bytes) {
    char path[SIM_PATH_BYTES_MAX + 64], temp[SIM_PATH_BYTES_MAX + 80];
    snprintf(path, sizeof path, "%s/settlement-%s-%s.csv", sim->report_dir, sim_kind_name(sim->kind), date);
    snprintf(temp, sizeof temp, "%s/.settlement-%s-%s.csv.tmp", sim->report_dir, sim_kind_name(sim->kind), date);
    int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        obs_logf(OBS_LEVEL_ERROR, "report: cannot write %s: %s", temp, strerror(errno));
        return false;
    }
    size_t written = 0;
    while (written < bytes) {
        ssize_t n = write(fd, csv + written, bytes - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        written += (size_t)n;
    }
    bool ok = written == bytes && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && rename(temp, path) != 0) ok = false;
    if (!ok) {
        obs_logf(OBS_LEVEL_ERROR, "report: cannot write %s: %s", path, strerror(errno));
        unlink(temp);
    }
    return ok;
}

bool sim_report_write_day(sim_t *sim, const char *date) {
    int64_t start_ms = 0;
    sim_unit_t unit;
    if (!day_start(date, &start_ms) || !sim_unit_begin(sim, &unit, true)) return false;
    char *csv = NULL;
    size_t bytes = 0;
    bool ok = sim_unit_mark(sim, &unit) && report_build(sim, date, start_ms, &csv, &bytes) &&
              report_file_write(sim, date, csv, bytes);
    sim_unit_end(sim, &unit, ok);
    ok = sim_unit_wait(sim, &unit) && ok;
    free(csv);
    return ok;
}

void sim_report_get(sim_req_t *req) {
    const char *date = sim_query(req, "date");
    int64_t start_ms = 0;
    if (date == NULL || !day_start(date, &start_ms)) {
        return sim_reply_invalid(req, "date", "must be a UTC day as YYYY-MM-DD");
    }
    char *csv = NULL;
    size_t bytes = 0;
    if (!report_build(req->sim, date, start_ms, &csv, &bytes) || !report_file_write(req->sim, date, csv, bytes)) {
        free(csv);
        return sim_reply_internal(req); /* rolls back: the discrepancies stay pending */
    }
    sim_reply_text(req, 200, "text/csv; charset=utf-8", csv, bytes);
}

/* ---- admin ---- */

void sim_discrepancy_post(sim_req_t *req) {
    static const char *const keys[] = {"date", "kind", "count", NULL};
    const char *date, *kind;
    int64_t start_ms = 0, count = 1;
    if (!sim_body_only(req, req->body, NULL, keys) || !sim_get_string(req, req->body, "date", "date", true, 10, &date) ||
        !sim_get_string(req, req->body, "kind", "kind", true, 24, &kind)) {
        return;
    }
    if (!day_start(date, &start_ms)) return sim_reply_invalid(req, "date", "must be a UTC day as YYYY-MM-DD");
    bool known = false;
    for (size_t i = 0; i < sizeof discrepancy_kinds / sizeof discrepancy_kinds[0]; i++) {
        known = known || strcmp(discrepancy_kinds[i], kind) == 0;
    }
    if (!known) {
        return sim_reply_invalid(req, "kind", "one of missing_row, extra_row, amount_mismatch, currency_mismatch, "
                                              "duplicate_row");
    }
    if (json_object_get(req->body, "count") != NULL &&
        !sim_get_int(req, req->body, "count", "count", 1, SIM_DISCREPANCY_COUNT_MAX, &count)) {
        return;
    }
    int64_t id = 0;
    if (!sim_db_int(&req->sim->db, &id, 0, "INSERT INTO discrepancies(date, kind, count, created_at_ms)"
                    " VALUES (?, ?, ?, ?) RETURNING id", "ssii", date, kind, count, (int64_t)sim_wall_ms())) {
        return sim_reply_internal(req);
    }
    sim_reply_json(req, 200, json_pack("{s:I,s:s,s:s,s:I,s:b}", "id", (json_int_t)id, "date", date, "kind", kind,
                                       "count", (json_int_t)count, "consumed", 0));
}

static json_t *discrepancy_json(sqlite3_stmt *stmt) {
    json_t *detail = json_loads(sim_col_text(stmt, 5), 0, NULL);
    json_t *rows = json_incref(json_object_get(detail, "rows"));
    json_t *item = json_pack("{s:I,s:s,s:s,s:I,s:b,s:I,s:o}", "id", (json_int_t)sqlite3_column_int64(stmt, 0),
                             "date", sim_col_text(stmt, 1), "kind", sim_col_text(stmt, 2), "count",
                             (json_int_t)sqlite3_column_int64(stmt, 3), "consumed", sqlite3_column_int(stmt, 4),
                             "applied", json_integer_value(json_object_get(detail, "applied")), "rows",
                             rows ? rows : json_array());
    json_decref(detail);
    return item;
}

void sim_discrepancy_list(sim_req_t *req) {
    const char *date = sim_query(req, "date");
    int64_t start_ms = 0;
    if (date != NULL && !day_start(date, &start_ms)) return sim_reply_invalid(req, "date", "must be YYYY-MM-DD");
    sqlite3_stmt *stmt = sim_db_query(&req->sim->db,
                                      "SELECT id, date, kind, count, consumed_at_ms IS NOT NULL, coalesce(detail, '')"
                                      " FROM discrepancies WHERE ? IS NULL OR date = ? ORDER BY id", "ss", date, date);
    if (stmt == NULL) return sim_reply_internal(req);
    json_t *data = json_array();
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) json_array_append_new(data, discrepancy_json(stmt));
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE) {
        json_decref(data);
        return sim_reply_internal(req);
    }
    sim_reply_json(req, 200, json_pack("{s:o}", "data", data));
}
