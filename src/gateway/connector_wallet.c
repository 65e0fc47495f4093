/* gateway/connector_wallet.c: the wallet channel (stored-value accounts): instant
 * payments and refunds, answered "approved" or declined with a reason word. A wallet
 * payment is authorized and captured at once, so capture and void do not exist. */
#include <stdio.h>
#include <string.h>

#include "gateway/gw_internal.h"

static pc_status wallet_pay(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out) {
    (void)ch;
    out->method = "POST";
    snprintf(out->path, sizeof out->path, "/v1/payments");
    return gw_body_json(out, json_pack("{s:s,s:I,s:s,s:s}", "wallet_id", req->wallet_id, "amount",
                                       (json_int_t)req->amount_minor, "currency", req->currency,
                                       "merchant_ref", req->reference));
}

static pc_status wallet_refund(const gw_channel_cfg_t *ch, const gw_request_t *req,
                               gw_http_call_t *out) {
    (void)ch;
    out->method = "POST";
    snprintf(out->path, sizeof out->path, "/v1/payments/%s/refunds", req->channel_ref);
    return gw_body_printf(out, "{\"amount\":%lld}", (long long)req->amount_minor);
}

static void wallet_decode(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_op op,
                          const gw_obj_t *body, int http_status, gw_answer_t *a) {
    (void)http_status;
    if (!gw_decode_common(ch, body, a)) return;
    const char *status = gw_obj_str(body, "status");
    bool approving = a->outcome == GW_OUTCOME_APPROVED;
    bool agrees = status != NULL && ((strcmp(status, "approved") == 0 && approving) ||
                                     (strcmp(status, "declined") == 0 && !approving));
    if (!agrees) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "status '%s' disagrees with response_code %s", gw_printable(status),
                       a->code);
        return;
    }
    if (!approving) return;
    if (!gw_decode_amount(body, "amount", req->amount_minor, a)) return;
    if (op == GW_OP_AUTHORIZE && !gw_decode_currency(body, req->currency, a)) return;
    if (a->ref[0] == '\0') {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "an approval without an id");
    }
}

static bool wallet_accepts(const gw_request_t *req) { return req->wallet_id[0] != '\0'; }

const gw_connector_t gw_connector_wallet = {
    .kind = GW_KIND_WALLET,
    .default_method = "wallet",
    .authorize = wallet_pay,
    .capture = NULL,
    .void_auth = NULL,
    .refund = wallet_refund,
    .payout = NULL,
    .status = gw_build_status,
    .challenge = NULL,
    .accepts = wallet_accepts,
    .decode = wallet_decode,
};
