/* gateway/connector_bank.c: the bank channel (transfers and payouts). The bank answers
 * 202 "pending" at once; the result (settled, or returned with a NACHA code) arrives
 * later as a signed callback to callback_url. A collection is a "debit" transfer
 * (GW_OP_AUTHORIZE), a payout a "credit" one. */
#include <stdio.h>
#include <string.h>

#include "gateway/gw_internal.h"

static pc_status bank_transfer(const gw_channel_cfg_t *ch, const gw_request_t *req,
                               const char *direction, gw_http_call_t *out) {
    out->method = "POST";
    snprintf(out->path, sizeof out->path, "/v1/transfers");
    return gw_body_json(out, json_pack("{s:s,s:I,s:s,s:{s:s,s:s},s:s,s:s}", "direction", direction, "amount",
                                       (json_int_t)req->amount_minor, "currency", req->currency, "account",
                                       "routing_number", req->bank.routing_number, "account_number",
                                       req->bank.account_number, "callback_url", ch->callback_url,
                                       "reference", req->reference));
}

static pc_status bank_debit(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out) {
    return bank_transfer(ch, req, "debit", out);
}

static pc_status bank_credit(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out) {
    return bank_transfer(ch, req, "credit", out);
}

/* The code of a status inquiry's answer, which reports the transfer as it stands:
 * "pending", "settled", or "returned" with its return code (what the callback says). */
static const char *inquiry_code(const gw_obj_t *body, const char *status) {
    if (status != NULL && strcmp(status, "returned") == 0) return gw_obj_str(body, "return_code");
    return status != NULL && strcmp(status, "settled") == 0 ? status : NULL;
}

/* {"id":"bt_…","status":"pending"}: the only answer a new transfer gets. A status
 * inquiry (recovery's GW_OP_STATUS, or the gateway's own after a lost answer: a->found
 * set) may also learn its outcome. */
static void bank_decode(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_op op,
                        const gw_obj_t *body, int http_status, gw_answer_t *a) {
    (void)op;
    const char *status = gw_obj_str(body, "status");
    const char *id = gw_obj_str(body, "id");
    const char *final = a->found > 0 ? inquiry_code(body, status) : NULL;
    if (final != NULL && strlen(final) < sizeof a->code && gw_code_lookup(ch, final, &a->outcome) &&
        a->outcome != GW_OUTCOME_PENDING) {
        status = final;
    } else if (status == NULL || !gw_code_lookup(ch, status, &a->outcome) ||
        a->outcome != GW_OUTCOME_PENDING) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "a transfer answer must be pending, got '%s' (HTTP %d)",
                       gw_printable(status), http_status);
        return;
    }
    if (id == NULL || id[0] == '\0' || strlen(id) >= sizeof a->ref) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "a pending transfer without an id");
        return;
    }
    a->status = PC_OK;
    gw_copy_str(a->code, sizeof a->code, status);
    gw_copy_str(a->ref, sizeof a->ref, id);
    a->amount_minor = req->amount_minor;
}

static bool bank_accepts(const gw_request_t *req) {
    return req->bank.routing_number[0] != '\0' && req->bank.account_number[0] != '\0';
}

const gw_connector_t gw_connector_bank = {
    .kind = GW_KIND_BANK,
    .default_method = "bank_transfer",
    .authorize = bank_debit,
    .capture = NULL,
    .void_auth = NULL,
    .refund = NULL,
    .payout = bank_credit,
    .status = gw_build_status,
    .challenge = NULL,
    .accepts = bank_accepts,
    .decode = bank_decode,
};
