/* api/routes.c: the route table. Adding a route = one line here + its handler file
 * (see api.h). docs/openapi.yaml must list the same routes: tests/api/test_openapi.py
 * compares both. Keep related routes together; order does not matter for matching. */
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"

const api_route_t api_routes[] = {
    /* ledger */
    {"POST", "/v1/accounts", API_AUTH_WRITE, api_route_accounts_create},
    {"GET", "/v1/accounts", API_AUTH_READ, api_route_accounts_list},
    {"GET", "/v1/accounts/{id}", API_AUTH_READ, api_route_account_get},
    {"GET", "/v1/accounts/{id}/transfers", API_AUTH_READ, api_route_account_transfers},
    {"GET", "/v1/accounts/{id}/balances", API_AUTH_READ, api_route_account_balances},
    {"POST", "/v1/transfers", API_AUTH_WRITE, api_route_transfers_create},
    {"GET", "/v1/transfers/{id}", API_AUTH_READ, api_route_transfer_get},
    /* admin */
    {"POST", "/v1/verify", API_AUTH_ADMIN, api_route_verify},
    {"POST", "/v1/api-keys", API_AUTH_ADMIN, api_route_keys_create},
    {"GET", "/v1/api-keys", API_AUTH_ADMIN, api_route_keys_list},
    {"DELETE", "/v1/api-keys/{id}", API_AUTH_ADMIN, api_route_key_revoke},
    /* risk */
    {"POST", "/v1/risk/decisions", API_AUTH_WRITE, api_route_risk_decide},
    {"POST", "/v1/risk/feedback", API_AUTH_WRITE, api_route_risk_feedback},
    /* the review queue shows every payer's payments: admin (and read_only's GET) only */
    {"GET", "/v1/risk/reviews", API_AUTH_ADMIN, api_route_risk_reviews},
    {"POST", "/v1/risk/reviews/{id}/approve", API_AUTH_ADMIN, api_route_risk_review_approve},
    {"POST", "/v1/risk/reviews/{id}/decline", API_AUTH_ADMIN, api_route_risk_review_decline},
    {"POST", "/v1/admin/reload", API_AUTH_ADMIN, api_route_admin_reload},
    /* events */
    {"GET", "/v1/events", API_AUTH_READ, api_route_events_list},
    {"GET", "/v1/events/{id}", API_AUTH_READ, api_route_event_get},
    {"POST", "/v1/events/{id}/redeliver", API_AUTH_WRITE, api_route_event_redeliver},
    {"POST", "/v1/events/redeliver", API_AUTH_WRITE, api_route_events_redeliver},
    {"POST", "/v1/webhook-endpoints", API_AUTH_WRITE, api_route_endpoints_create},
    {"GET", "/v1/webhook-endpoints", API_AUTH_READ, api_route_endpoints_list},
    {"GET", "/v1/webhook-endpoints/{id}", API_AUTH_READ, api_route_endpoint_get},
    {"DELETE", "/v1/webhook-endpoints/{id}", API_AUTH_WRITE, api_route_endpoint_delete},
    {"POST", "/v1/webhook-endpoints/{id}/rotate-secret", API_AUTH_WRITE, api_route_endpoint_rotate},
    {"POST", "/v1/webhook-endpoints/{id}/enable", API_AUTH_WRITE, api_route_endpoint_enable},
    {"GET", "/v1/webhook-endpoints/{id}/deliveries", API_AUTH_READ, api_route_endpoint_deliveries},
    /* gateway */
    {"GET", "/v1/channels", API_AUTH_READ, api_route_channels},
    {"POST", "/v1/channels/{name}/callbacks", API_AUTH_NONE, api_route_channel_callback},
    /* payments */
    {"POST", "/v1/merchants", API_AUTH_ADMIN, api_route_merchants_create},
    {"GET", "/v1/merchants", API_AUTH_READ, api_route_merchants_list},
    {"GET", "/v1/merchants/{id}", API_AUTH_READ, api_route_merchant_get},
    {"POST", "/v1/merchants/{id}/keys", API_AUTH_ADMIN, api_route_merchant_key_create},
    {"POST", "/v1/payments", API_AUTH_WRITE, api_route_payments_create},
    {"GET", "/v1/payments", API_AUTH_READ, api_route_payments_list},
    {"GET", "/v1/payments/{id}", API_AUTH_READ, api_route_payment_get},
    {"POST", "/v1/payments/{id}/confirm", API_AUTH_WRITE, api_route_payment_confirm},
    {"POST", "/v1/payments/{id}/capture", API_AUTH_WRITE, api_route_payment_capture},
    {"POST", "/v1/payments/{id}/cancel", API_AUTH_WRITE, api_route_payment_cancel},
    {"POST", "/v1/payments/{id}/refunds", API_AUTH_WRITE, api_route_payment_refund},
    {"GET", "/v1/refunds/{id}", API_AUTH_READ, api_route_refund_get},
    {"POST", "/v1/wallets", API_AUTH_WRITE, api_route_wallets_create},
    {"GET", "/v1/wallets/{id}", API_AUTH_READ, api_route_wallet_get},
    {"POST", "/v1/wallets/{id}/top_ups", API_AUTH_WRITE, api_route_wallet_top_up},
    {"POST", "/v1/wallets/{id}/withdrawals", API_AUTH_WRITE, api_route_wallet_withdraw},
    {"POST", "/v1/payouts", API_AUTH_WRITE, api_route_payouts_create},
    {"GET", "/v1/payouts/{id}", API_AUTH_READ, api_route_payout_get},
    {"POST", "/v1/admin/payments/recover", API_AUTH_ADMIN, api_route_payments_recover},
    {"POST", "/v1/admin/vault/rotate", API_AUTH_ADMIN, api_route_vault_rotate},
    {"GET", "/v1/admin/vault/rotation", API_AUTH_ADMIN, api_route_vault_rotation},
    /* operations */
    {"GET", "/metrics", API_AUTH_NONE, api_route_metrics},
    {"GET", "/healthz", API_AUTH_NONE, api_route_healthz},
    {"GET", "/readyz", API_AUTH_NONE, api_route_readyz},
    {"GET", "/v1/stats", API_AUTH_READ, api_route_stats},
    {"GET", "/dashboard", API_AUTH_NONE, api_route_dashboard},
    {"GET", "/dashboard/assets/{file}", API_AUTH_NONE, api_route_dashboard_asset},
};

const uint32_t api_route_count = sizeof(api_routes) / sizeof(api_routes[0]);
static_assert(sizeof(api_routes) / sizeof(api_routes[0]) <= OBS_ROUTES_MAX,
              "every route has its own metrics series (OBS_ROUTES_MAX)");

/* read_only may GET whatever an admin may GET, and nothing else. */
bool api_route_allows(const api_route_t *route, api_scope scope) {
    switch (route->auth) {
    case API_AUTH_NONE:
    case API_AUTH_READ:
        return true;
    case API_AUTH_WRITE:
        return scope == API_SCOPE_ADMIN || scope == API_SCOPE_MERCHANT;
    case API_AUTH_ADMIN:
        return scope == API_SCOPE_ADMIN ||
               (scope == API_SCOPE_READ_ONLY && strcmp(route->method, "GET") == 0);
    }
    return false;
}

void api_routes_print(FILE *out) {
    static const api_scope scopes[] = {API_SCOPE_ADMIN, API_SCOPE_MERCHANT, API_SCOPE_READ_ONLY};
    for (uint32_t i = 0; i < api_route_count; i++) {
        const api_route_t *route = &api_routes[i];
        fprintf(out, "%s %s ", route->method, route->pattern);
        if (route->auth == API_AUTH_NONE) {
            fputs("none\n", out);
            continue;
        }
        const char *separator = "";
        for (size_t s = 0; s < sizeof scopes / sizeof scopes[0]; s++) {
            if (!api_route_allows(route, scopes[s])) continue;
            fprintf(out, "%s%s", separator, api_scope_name(scopes[s]));
            separator = ",";
        }
        fputc('\n', out);
    }
}
