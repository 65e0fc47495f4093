/* api/api_payments.h: the payments layer inside `paycore serve` (routes in
 * routes_payments.c). serve starts it after the gateway and risk and stops it before
 * them; without it the payment routes answer 503 payments_not_configured. */
#ifndef PAYCORE_API_PAYMENTS_H
#define PAYCORE_API_PAYMENTS_H

#include "api/api.h"
#include "payments/payments.h"

typedef struct {
    const char *db_path;             /* the vault key defaults to "<db>.vault-key" */
    const char *vault_key_path;      /* NULL: the default */
    uint32_t authorization_window_s; /* 0: the default */
    uint32_t recovery_interval_ms;   /* 0: the default */
    uint32_t recovery_grace_ms;      /* 0: the default */
    uint32_t bank_inquiry_ms;        /* 0: the default */
    const char *three_ds_prefixes;   /* NULL: the card simulator's range */
} api_payments_options_t;

/* Opens the vault (its key file) and starts the payments runtime on the server's
 * writer and store, the running gateway and risk engine. */
PC_MUST_USE pc_status api_payments_start(api_server_t *server, const api_payments_options_t *options);
/* Waits for running operations; call before the gateway and the writer stop. */
/* Ends running payments (they still write through the writer) and refuses new ones;
 * requests may still read. Before api_server_stop. */
void api_payments_quiesce(void);
/* Frees the payments layer: after api_server_stop (no request can reach it then). */
void api_payments_stop(void);
/* The running payments runtime (NULL when none). */
pay_t *api_payments(void);

#endif
