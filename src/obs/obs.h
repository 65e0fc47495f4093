/* obs/obs.h: what an operator sees of a running paycore: JSON log lines on stderr (or a
 * file reopened on SIGHUP) and Prometheus metrics. Every function is thread-safe.
 * Logs never carry a key, a secret or a card number: callers pass ids and codes only. */
#ifndef PAYCORE_OBS_H
#define PAYCORE_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
#define OBS_ROUTES_MAX 64
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

/* Renders every metric in the Prometheus text format (0.0.4) into a malloc'ed string. */
char *obs_metrics_render(const obs_writer_sample_t *writer, size_t *bytes_out);

#endif
