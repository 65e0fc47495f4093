/* api/routes_ops.c: /metrics (Prometheus text), /healthz (the process answers) and
 * /readyz (the writer accepts commands; 503 while starting or draining). */
#include <stdlib.h>
#include <string.h>

#include "api/api_gateway.h"
#include "api/api_internal.h"
#include "api/api_ops.h"
#include "api/api_risk.h"
#include "obs/obs.h"

static void writer_sample(api_server_t *server, obs_writer_sample_t *sample) {
    memset(sample, 0, sizeof(*sample));
    /* The writer outlives every request (it is freed after MHD stopped), also while
     * it drains at shutdown: its figures stay readable and counters never fall. */
    writer_t *writer = api_server_writer(server);
    if (writer == NULL) return;
    writer_stats_t stats;
    writer_stats(writer, &stats);
    sample->present = true;
    sample->transfers_committed = stats.transfers_committed;
    sample->accounts_committed = stats.accounts_committed;
    sample->batches_committed = stats.batches_committed;
    sample->batches_failed = stats.batches_failed;
    sample->queue_events = stats.queue_events;
    sample->commit_ns_total = stats.commit_ns_total;
    memcpy(sample->batch_size_buckets, stats.batch_size_buckets, sizeof stats.batch_size_buckets);
    memcpy(sample->commit_ms_buckets, stats.commit_ms_buckets, sizeof stats.commit_ms_buckets);
}

void api_route_metrics(api_request_t *req) {
    obs_writer_sample_t sample;
    writer_sample(req->server, &sample);
    obs_api_sample_t api;
    api_usage_totals(&req->server->usage, &api.body_bytes_buffered, &api.idempotency_bytes_stored);
    size_t bytes = 0;
    char *text = obs_metrics_render(&sample, &api, &bytes);
    text = api_risk_metrics_append(text, &bytes);
    text = events_metrics_append(req->server->events, text, &bytes);
    text = api_gateway_metrics_append(text, &bytes);
    text = api_ops_payments_metrics_append(text, &bytes);
    text = api_ops_metrics_append(text, &bytes, req->server);
    text = shard_metrics_append(req->server->shards, text, &bytes);
    text = idem_index_metrics_append(req->server->idem_index, text, &bytes);
    if (text == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    api_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, bytes);
    free(text);
}

void api_route_healthz(api_request_t *req) {
    json_t *body = json_pack("{s:s,s:s}", "status", "ok", "risk", api_risk_mode());
    /* a node of a set says it writes it (a standby's forwarder says "standby") */
    if (body != NULL && req->server->shards != NULL) {
        json_object_set_new(body, "role", json_string("writer"));
        json_object_set_new(body, "writer", json_string(req->server->advertise));
    }
    api_reply_json(req, 200, body);
}

/* A broker that is down does not make the node unready: payments go on and the outbox
 * keeps every event (a load balancer must not take the node out for it); the body
 * says so, and /metrics carries paycore_events_amqp_connected and the lag. */
void api_route_readyz(api_request_t *req) {
    if (!api_server_ready(req->server)) {
        api_reply_error(req, PC_SHUTTING_DOWN, NULL, "not ready");
        return;
    }
    events_status_t events;
    events_status(req->server->events, &events);
    json_t *body = json_pack("{s:s}", "status", "ready");
    json_t *detail = json_pack("{s:I}", "outbox_lag_ms", (json_int_t)events.outbox_lag_ms_max);
    if (events.amqp_configured) {
        json_object_set_new(detail, "amqp", json_string(events.amqp_connected ? "connected" : "down"));
    }
    json_object_set_new(body, "events", detail);
    api_reply_json(req, 200, body);
}
