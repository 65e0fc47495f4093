/* api/routes_channels.c: the payment gateway over HTTP, and its place in `paycore serve`.
 *   GET  /v1/channels                     each channel with breaker state, success rate,
 *                                         latency, routing
 *   POST /v1/channels/{name}/callbacks    a bank's signed result of a pending transfer:
 *                                         no API key, the channel's signature instead;
 *                                         2xx only once the gateway's listener took it
 *                                         (or found it names no operation: "matched"
 *                                         false, nothing changed)
 * Reload (SIGHUP, POST /v1/admin/reload) and /metrics call in here too. The gateway is
 * process-wide: started before listening, stopped after the server drained. */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "api/api_gateway.h"
#include "api/api_internal.h"
#include "obs/obs.h"

/* Set before listening, cleared after draining; atomic for the payments layer and
 * tools that may look it up from other threads. */
static _Atomic(gw_t *) gateway;

pc_status api_gateway_start(const char *channels_path, uint32_t threads) {
    if (channels_path == NULL) return PC_OK;
    gw_options_t options = {channels_path, threads};
    gw_config_error_t error;
    gw_t *started = NULL;
    pc_status status = gw_start(&started, &options, &error);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "gateway: cannot start: %s (%s line %u: %s)", pc_status_code(status),
                 channels_path, error.line, error.message);
        return status;
    }
    atomic_store(&gateway, started);
    return PC_OK;
}

pc_status api_gateway_reload(char *message, size_t message_bytes) {
    gw_t *gw = atomic_load(&gateway);
    if (gw == NULL) return PC_OK;
    gw_config_error_t error;
    pc_status status = gw_reload(gw, &error);
    if (message != NULL && status != PC_OK) {
        snprintf(message, message_bytes, "channels line %u: %s", error.line, error.message);
    }
    return status;
}

void api_gateway_stop(void) { gw_stop(atomic_exchange(&gateway, NULL)); }

gw_t *api_gateway(void) { return atomic_load(&gateway); }

char *api_gateway_metrics_append(char *text, size_t *bytes) {
    gw_t *gw = atomic_load(&gateway);
    return gw == NULL ? text : gw_metrics_append(gw, text, bytes);
}

/* A merchant key sees what its payments may use (names, kinds, eligibility, routing),
 * not the server's operations: the channels' counters and health are every merchant's
 * traffic together (B's own subtracted, A's volume), their URLs the operator's hosts. */
static void merchant_view(json_t *body) {
    static const char *const operational[] = {"url", "breaker", "success_rate", "success_rate_calls", "latency_ms",
                                              "in_flight", "attempts", "retries"};
    size_t index;
    json_t *channel;
    json_array_foreach(json_object_get(body, "channels"), index, channel) {
        for (size_t i = 0; i < sizeof operational / sizeof operational[0]; i++) json_object_del(channel, operational[i]);
    }
    json_object_del(body, "config");
}

void api_route_channels(api_request_t *req) {
    if (!api_query_only(req, (const char *const[]){NULL})) return;
    gw_t *gw = atomic_load(&gateway);
    if (gw == NULL) {
        api_reply_json(req, 200, json_pack("{s:[],s:n}", "channels", "config"));
        return;
    }
    json_t *body = gw_channels_json(gw);
    if (body == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    const api_caller_t *caller = api_caller(req);
    if (caller != NULL && caller->scope == API_SCOPE_MERCHANT) merchant_view(body);
    api_reply_json(req, 200, body);
}

void api_route_channel_callback(api_request_t *req) {
    gw_t *gw = atomic_load(&gateway);
    if (gw == NULL) {
        api_reply_error(req, PC_GATEWAY_NOT_CONFIGURED, NULL, NULL);
        return;
    }
    size_t bytes = 0;
    const char *body = api_body(req, &bytes);
    gw_update_t update;
    pc_status status = gw_callback(gw, api_param(req, 0), api_header(req, "Sim-Signature"), body, bytes,
                                   (int64_t)time(NULL), &update);
    if (status != PC_OK) {
        api_reply_error(req, status, status == PC_GATEWAY_CALLBACK_INVALID ? "Sim-Signature" : NULL, NULL);
        return;
    }
    json_t *answer = json_pack("{s:b,s:s,s:s,s:b}", "received", 1, "id", update.channel_ref, "outcome",
                               gw_outcome_name(update.outcome), "matched", update.matched);
    if (answer != NULL && !update.matched) { /* acknowledged so that the bank stops: it can never apply */
        json_object_set_new(answer, "message", json_string("matches no operation sent on this channel; nothing "
                                                           "changed"));
    }
    api_reply_json(req, 200, answer);
}
