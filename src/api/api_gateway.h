/* api/api_gateway.h: the payment gateway inside `paycore serve` (routes in
 * routes_channels.c). serve starts it before listening when --channels names a file
 * and stops it after draining; without it GET /v1/channels lists no channel. */
#ifndef PAYCORE_API_GATEWAY_H
#define PAYCORE_API_GATEWAY_H

#include <stddef.h>

#include "gateway/gateway.h"
#include "paycore/status.h"

/* Loads the channels file and starts the gateway threads; a bad file is an error
 * (logged with its line). */
PC_MUST_USE pc_status api_gateway_start(const char *channels_path, uint32_t threads);
/* SIGHUP and POST /v1/admin/reload: a bad file keeps the running configuration;
 * 'message' (may be NULL) gets "channels line N: why". PC_OK when no gateway runs. */
pc_status api_gateway_reload(char *message, size_t message_bytes);
void api_gateway_stop(void);
/* The running gateway (NULL without --channels): the payments layer submits to it. */
gw_t *api_gateway(void);
/* Appends the gateway's metrics (see api_risk_metrics_append). */
char *api_gateway_metrics_append(char *text, size_t *bytes);

#endif
