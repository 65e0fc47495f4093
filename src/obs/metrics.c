/* obs/metrics.c: counters kept with relaxed atomics (requests by method, route and
 * status, a latency histogram) and rendered by hand in the Prometheus text format 0.0.4: the
 * format is small, a library would add nothing. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "core/core.h"
#include "obs/obs.h"

/* The HTTP statuses paycore answers with; anything else counts as "other". */
static const int metric_statuses[] = {200, 201, 400, 401, 403, 404, 405, 408, 409,
                                      413, 415, 422, 429, 499, 500, 503, 0};
#define STATUS_SLOTS (sizeof(metric_statuses) / sizeof(metric_statuses[0]))

/* The methods a request is counted under (request.c lets only these through; the
 * last slot counts anything else). GET and POST of one route are two series. */
static const char *const metric_methods[] = {"GET", "POST", "DELETE", "PUT", "PATCH",
                                             "HEAD", "OPTIONS", "OTHER"};
#define METHOD_SLOTS (sizeof(metric_methods) / sizeof(metric_methods[0]))

/* Request latency buckets, seconds. */
static const double latency_bounds_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                          0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0};
#define LATENCY_SLOTS (sizeof(latency_bounds_s) / sizeof(latency_bounds_s[0]) + 1)

static const char *route_names[OBS_ROUTES_MAX + 1];
static uint32_t route_count;
static _Atomic uint64_t request_counts[OBS_ROUTES_MAX + 1][METHOD_SLOTS][STATUS_SLOTS];
static _Atomic uint64_t latency_counts[LATENCY_SLOTS];
static _Atomic uint64_t latency_ns_total;
static _Atomic uint64_t connections_expired;
static _Atomic uint64_t idempotency_purged;

void obs_metrics_connections_expired(uint32_t count) {
    atomic_fetch_add_explicit(&connections_expired, count, memory_order_relaxed);
}

void obs_metrics_idempotency_purged(uint32_t count) {
    atomic_fetch_add_explicit(&idempotency_purged, count, memory_order_relaxed);
}

void obs_metrics_init(const char *const *names, uint32_t count) {
    route_count = count < OBS_ROUTES_MAX ? count : OBS_ROUTES_MAX;
    for (uint32_t i = 0; i < route_count; i++) route_names[i] = names[i];
    route_names[OBS_ROUTES_MAX] = "unmatched";
}

static uint32_t status_slot(int http_status) {
    for (uint32_t i = 0; i + 1 < STATUS_SLOTS; i++) {
        if (metric_statuses[i] == http_status) return i;
    }
    return STATUS_SLOTS - 1;
}

static uint32_t method_slot(const char *method) {
    for (uint32_t i = 0; i + 1 < METHOD_SLOTS; i++) {
        if (strcmp(metric_methods[i], method) == 0) return i;
    }
    return METHOD_SLOTS - 1;
}

void obs_metrics_request(uint32_t route_index, const char *method, int http_status,
                         uint64_t latency_ns) {
    if (route_index >= route_count) route_index = OBS_ROUTES_MAX;
    _Atomic uint64_t *count = &request_counts[route_index][method_slot(method)][status_slot(http_status)];
    atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
    double latency_s = (double)latency_ns / 1e9;
    uint32_t slot = 0;
    while (slot < LATENCY_SLOTS - 1 && latency_s > latency_bounds_s[slot]) slot++;
    atomic_fetch_add_explicit(&latency_counts[slot], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_ns_total, latency_ns, memory_order_relaxed);
}

static void render_route_requests(pc_bytes_t *buf, uint32_t r) {
    for (uint32_t m = 0; m < METHOD_SLOTS; m++) {
        for (uint32_t s = 0; s < STATUS_SLOTS; s++) {
            uint64_t n = atomic_load_explicit(&request_counts[r][m][s], memory_order_relaxed);
            if (n == 0) continue;
            char status_text[16];
            if (metric_statuses[s] == 0) snprintf(status_text, sizeof status_text, "other");
            else snprintf(status_text, sizeof status_text, "%d", metric_statuses[s]);
            pc_bytes_appendf(buf, "paycore_http_requests_total{method=\"%s\",route=\"%s\",status=\"%s\"} %llu\n",
                             metric_methods[m], route_names[r], status_text, (unsigned long long)n);
        }
    }
}

static void render_requests(pc_bytes_t *buf) {
    pc_bytes_appendf(buf, "# HELP paycore_http_requests_total HTTP requests by method, route and status.\n"
                          "# TYPE paycore_http_requests_total counter\n");
    for (uint32_t r = 0; r <= OBS_ROUTES_MAX; r++) {
        if (r >= route_count && r != OBS_ROUTES_MAX) continue;
        render_route_requests(buf, r);
    }
}

static void render_latency(pc_bytes_t *buf) {
    pc_bytes_appendf(buf, "# HELP paycore_http_request_duration_seconds HTTP request latency.\n"
                          "# TYPE paycore_http_request_duration_seconds histogram\n");
    uint64_t cumulative = 0;
    for (uint32_t i = 0; i < LATENCY_SLOTS; i++) {
        cumulative += atomic_load_explicit(&latency_counts[i], memory_order_relaxed);
        if (i + 1 < LATENCY_SLOTS) {
            pc_bytes_appendf(buf, "paycore_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                             latency_bounds_s[i], (unsigned long long)cumulative);
        } else {
            pc_bytes_appendf(buf, "paycore_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                             (unsigned long long)cumulative);
        }
    }
    uint64_t total_ns = atomic_load_explicit(&latency_ns_total, memory_order_relaxed);
    pc_bytes_appendf(buf, "paycore_http_request_duration_seconds_sum %.9f\n"
                          "paycore_http_request_duration_seconds_count %llu\n",
                     (double)total_ns / 1e9, (unsigned long long)cumulative);
}

/* A log2 histogram from the writer: slot i counts integer values <= 2^i (and above
 * the previous slot), the last slot the rest (writer.c, log2_bucket). Durations are
 * counted in whole units (truncated). 'scale' converts the unit to the metric's. */
static void render_log2_histogram(pc_bytes_t *buf, const char *name, const char *help,
                                  const uint64_t slots[16], bool integer, double scale,
                                  double sum) {
    pc_bytes_appendf(buf, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (uint32_t i = 0; i < 15; i++) {
        cumulative += slots[i];
        double bound = (double)(1u << i);
        (void)integer;
        pc_bytes_appendf(buf, "%s_bucket{le=\"%g\"} %llu\n", name, bound * scale,
                         (unsigned long long)cumulative);
    }
    cumulative += slots[15];
    pc_bytes_appendf(buf, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name,
                     (unsigned long long)cumulative, name, sum, name, (unsigned long long)cumulative);
}

static void render_writer(pc_bytes_t *buf, const obs_writer_sample_t *w) {
    pc_bytes_appendf(buf,
                     "# HELP paycore_transfers_committed_total Transfers committed.\n"
                     "# TYPE paycore_transfers_committed_total counter\n"
                     "paycore_transfers_committed_total %llu\n"
                     "# HELP paycore_accounts_committed_total Accounts committed.\n"
                     "# TYPE paycore_accounts_committed_total counter\n"
                     "paycore_accounts_committed_total %llu\n"
                     "# HELP paycore_writer_queue_depth Events waiting for the writer.\n"
                     "# TYPE paycore_writer_queue_depth gauge\n"
                     "paycore_writer_queue_depth %u\n"
                     "# HELP paycore_writer_batches_failed_total Batches whose commit failed.\n"
                     "# TYPE paycore_writer_batches_failed_total counter\n"
                     "paycore_writer_batches_failed_total %llu\n",
                     (unsigned long long)w->transfers_committed,
                     (unsigned long long)w->accounts_committed, w->queue_events,
                     (unsigned long long)w->batches_failed);
    double events = (double)(w->transfers_committed + w->accounts_committed);
    render_log2_histogram(buf, "paycore_writer_batch_size", "Events per committed batch.",
                          w->batch_size_buckets, true, 1.0, events);
    render_log2_histogram(buf, "paycore_commit_duration_seconds",
                          "Store commit (fsync) latency.", w->commit_ms_buckets, false, 0.001,
                          (double)w->commit_ns_total / 1e9);
}

static void render_api(pc_bytes_t *buf, const obs_api_sample_t *api) {
    pc_bytes_appendf(buf,
                     "# HELP paycore_http_connections_expired_total Connections closed at their request deadline (--timeout-s).\n"
                     "# TYPE paycore_http_connections_expired_total counter\n"
                     "paycore_http_connections_expired_total %llu\n"
                     "# HELP paycore_http_body_buffered_bytes Request body bytes held now, all keys.\n"
                     "# TYPE paycore_http_body_buffered_bytes gauge\n"
                     "paycore_http_body_buffered_bytes %llu\n"
                     "# HELP paycore_idempotency_stored_bytes Room taken by stored Idempotency-Key replies.\n"
                     "# TYPE paycore_idempotency_stored_bytes gauge\n"
                     "paycore_idempotency_stored_bytes %llu\n"
                     "# HELP paycore_idempotency_purged_total Stored Idempotency-Key replies purged after their retention.\n"
                     "# TYPE paycore_idempotency_purged_total counter\n"
                     "paycore_idempotency_purged_total %llu\n",
                     (unsigned long long)atomic_load_explicit(&connections_expired, memory_order_relaxed),
                     (unsigned long long)api->body_bytes_buffered,
                     (unsigned long long)api->idempotency_bytes_stored,
                     (unsigned long long)atomic_load_explicit(&idempotency_purged, memory_order_relaxed));
}

char *obs_metrics_render(const obs_writer_sample_t *writer, const obs_api_sample_t *api,
                         size_t *bytes_out) {
    pc_bytes_t buf;
    pc_bytes_init(&buf, SIZE_MAX);
    (void)pc_bytes_reserve(&buf, 8192); /* a failure shows at the end */
    pc_bytes_appendf(&buf, "# HELP paycore_build_info Build information.\n"
                           "# TYPE paycore_build_info gauge\n"
                           "paycore_build_info{version=\"%s\",allocator=\"%s\"} 1\n", PAYCORE_VERSION,
                     pc_allocator_name());
    render_requests(&buf);
    render_latency(&buf);
    obs_writer_sample_t empty = {0};
    render_writer(&buf, writer != NULL && writer->present ? writer : &empty);
    obs_api_sample_t api_empty = {0};
    render_api(&buf, api != NULL ? api : &api_empty);
    size_t bytes = 0;
    char *text = pc_bytes_take(&buf, &bytes); /* NULL when any step failed */
    if (text != NULL) *bytes_out = bytes;
    return text;
}
