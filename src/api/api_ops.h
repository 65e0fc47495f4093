/* api/api_ops.h: what the people who run paycore look at, inside `paycore serve`:
 *   GET /v1/stats                  live figures as compact JSON (ops_stats.c)
 *   GET /dashboard, /dashboard/assets/{file}   the dashboard page (ops_web.c)
 *   journal verification state: POST /v1/verify and a periodic run (ops_verify.c)
 * serve starts it after the server listens and stops it before the server stops.
 *
 * /v1/stats is a list of sections (ops_stats.c, `stats_sections`): each has a name,
 * who may see it, and a function that adds its JSON. A subsystem that lands (channels,
 * outbox, settlement) adds one row there and one panel in web/src/panels/; the page
 * draws a panel only for the sections the answer carries. */
#ifndef PAYCORE_API_OPS_H
#define PAYCORE_API_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "journal/verify.h"

typedef struct {
    const char *db_path;
    uint32_t verify_interval_s;  /* verify the journal this often; 0: on POST /v1/verify only */
} api_ops_options_t;

/* Before the server listens: reads the dashboard's files into memory. 'web_dir' NULL:
 * beside the binary, and none there is a warning (/dashboard answers 404); a named
 * directory that cannot be loaded is an error. Freed after the server stopped. */
PC_MUST_USE pc_status api_ops_web_load(const char *web_dir);
void api_ops_web_free(void);
/* After the server listens: the 1 Hz sampler and the periodic verification. Stopped
 * before the server and payments stop (from then on no payments figure is read). */
PC_MUST_USE pc_status api_ops_start(api_server_t *server, const api_ops_options_t *options);
void api_ops_stop(void);

/* One finished request (server.c): counted in the live figures unless it is an
 * operations route (/metrics, /healthz, /readyz, /v1/stats, the dashboard). */
void api_ops_request_done(const api_request_t *req, int http_status, uint64_t latency_ns);

/* A journal verification finished (POST /v1/verify or the periodic run). */
void api_ops_verify_record(pc_status status, const journal_report_t *report, uint64_t duration_ns);

/* Appends the operations metrics (writer queue capacity, journal verification) to
 * 'text' (malloc'ed, as api_risk_metrics_append). */
char *api_ops_metrics_append(char *text, size_t *bytes, const api_server_t *server);
/* Appends the payments metrics while the payments runtime runs and operations have
 * not stopped (serve frees payments after api_ops_stop, while requests still run). */
char *api_ops_payments_metrics_append(char *text, size_t *bytes);

/* ---- inside the api_ops files ---- */
typedef struct {
    bool known;                  /* a verification ran since start */
    bool running;
    bool ok;
    pc_status status;
    uint64_t at_s;               /* when the last one finished (Unix time) */
    uint64_t duration_ms;
    uint64_t runs_ok;
    uint64_t runs_failed;        /* found a discrepancy */
    uint64_t runs_error;         /* could not run */
    uint64_t last_ok_at_s;
    uint32_t interval_s;
    journal_report_t report;
} api_ops_verify_state_t;
void api_ops_verify_state(api_ops_verify_state_t *out);
/* 'location': the store (a SQLite file or a postgres:// URL); 'db_path': the node's
 * files (its public key is <db_path>.key.pub). */
pc_status api_ops_verify_start(const char *location, const char *db_path, uint32_t interval_s);
void api_ops_verify_stop(void);
pc_status api_ops_sampler_start(api_server_t *server);
void api_ops_sampler_stop(void);

#endif
