/* obs/obs.h: what an operator sees of a running paycore: JSON log lines on stderr (or a
 * file reopened on SIGHUP) and Prometheus metrics. Every function is thread-safe.
 * Logs never carry a key, a secret or a card number: callers pass ids and codes only. */
#ifndef PAYCORE_OBS_H
#define PAYCORE_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/limits.h"

typedef enum {
    OBS_LEVEL_DEBUG = 0,
    OBS_LEVEL_INFO = 1,
    OBS_LEVEL_WARN = 2,
    OBS_LEVEL_ERROR = 3,
} obs_level;

/* ---- logging: one JSON object a line ---- */
/* 'path' NULL logs to stderr. Returns false when the file cannot be opened. */
bool obs_log_open(const char *path, obs_level level_min);
/* Reopens the log file (SIGHUP, after rotation); a no-op on stderr. */
bool obs_log_reopen(void);
void obs_log_close(void);
bool obs_log_level_parse(const char *name, obs_level *out);
bool obs_log_enabled(obs_level level);
/* {"time":..., "level":..., "msg": msg, fields...}: 'fields_json' is a compact JSON
 * object's members without braces (e.g. "\"db\":\"x\"") or NULL. */
void obs_log(obs_level level, const char *msg, const char *fields_json);
/* The same at "info" whatever the level: start and stop lines scripts wait for. */
void obs_log_notice(const char *msg, const char *fields_json);
/* printf-style message, no extra fields. */
void obs_logf(obs_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* The access log line of one request. */
void obs_log_request(const char *request_id, const char *method, const char *route,
                     int http_status, const char *code, uint64_t latency_ns, const char *key_id);

/* ---- metrics ---- */
/* Route names are registered once at start (index = route index). */
void obs_metrics_init(const char *const *route_names, uint32_t route_count);
/* One finished request: route_index < route_count, or OBS_ROUTES_MAX for "unmatched";
 * 'method' is the request's ("GET", ...; any other name counts as "OTHER"). */
void obs_metrics_request(uint32_t route_index, const char *method, int http_status,
                         uint64_t latency_ns);

/* Writer figures sampled at scrape time (writer_stats). */
typedef struct {
    bool present;
    uint64_t transfers_committed;
    uint64_t accounts_committed;
    uint64_t batches_committed;
    uint64_t batches_failed;
    uint32_t queue_events;
    uint64_t commit_ns_total;
    uint64_t batch_size_buckets[16];  /* <=1,2,4,...,>32768 events */
    uint64_t commit_ms_buckets[16];   /* log2 ms */
} obs_writer_sample_t;

/* Connections closed at their request deadline; stored idempotent replies purged. */
void obs_metrics_connections_expired(uint32_t count);
void obs_metrics_idempotency_purged(uint32_t count);

/* The API's figures sampled at scrape time. */
typedef struct {
    uint64_t body_bytes_buffered;       /* request bodies held now (charged) */
    uint64_t idempotency_bytes_stored;  /* stored Idempotency-Key replies */
} obs_api_sample_t;

/* Renders every metric in the Prometheus text format (0.0.4) into a malloc'ed string. */
char *obs_metrics_render(const obs_writer_sample_t *writer, const obs_api_sample_t *api,
                         size_t *bytes_out);

/* ---- live statistics (stats.c): the last minute, second by second ----
 * For GET /v1/stats and the dashboard, separate from the Prometheus counters: rates and
 * latency percentiles over recent seconds, for everything together and for each key
 * (a merchant key sees its own). Memory per scope is fixed (OBS_STATS_SECONDS slots
 * with a latency histogram each); scopes are allocated on a key's first request. */
#define OBS_STATS_LATENCY_BUCKETS 64 /* bucket i holds latencies <= 10 us * 2^(i/3); the
                                        last one everything slower (beyond ~21 s) */

/* One finished request of the API proper (not /metrics, /healthz, /v1/stats or the
 * dashboard's files). 'key_id' NULL: counted for all only. 'transfers_ok': transfers
 * this request committed. */
void obs_stats_request(const char *key_id, int http_status, uint64_t latency_ns,
                       uint32_t transfers_ok);
/* The same at wall-clock second 'second' (tests). */
void obs_stats_request_at(uint64_t second, const char *key_id, int http_status,
                          uint64_t latency_ns, uint32_t transfers_ok);

typedef struct {
    uint64_t second;          /* wall-clock second (Unix time) */
    uint32_t requests;
    uint32_t errors;          /* answered 5xx */
    uint32_t rejected;        /* answered 4xx */
    uint32_t transfers;
    double p50_ms;            /* NaN when no request finished that second */
    double p99_ms;
} obs_stats_second_t;

typedef struct {
    bool tracked;             /* false: this key made no request (or no room was left) */
    uint64_t requests_total;  /* since start */
    uint64_t errors_total;
    uint64_t rejected_total;
    uint64_t transfers_total;
    uint32_t window_s;        /* the rates and percentiles below cover this many seconds */
    double requests_per_s;
    double errors_per_s;
    double rejected_per_s;
    double transfers_per_s;
    double p50_ms;            /* NaN when no request finished in the window */
    double p99_ms;
    uint32_t history_count;   /* complete seconds, oldest first */
    obs_stats_second_t history[OBS_STATS_SECONDS];
} obs_stats_view_t;

/* The figures of one key ('key_id') or of all requests (NULL) at wall-clock second
 * 'now_s': rates over the 'window_s' complete seconds before it (1..60) and the last
 * 'history_s' complete seconds (0..60). */
void obs_stats_view(const char *key_id, uint64_t now_s, uint32_t window_s, uint32_t history_s,
                    obs_stats_view_t *out);
/* The latency at 'quantile' (0..1) of a histogram of OBS_STATS_LATENCY_BUCKETS counts,
 * in ms (the geometric middle of its bucket); NaN when empty. */
double obs_stats_quantile_ms(const uint64_t *buckets, double quantile);
/* Forgets everything (tests). */
void obs_stats_reset(void);

#endif
