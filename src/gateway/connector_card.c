/* gateway/connector_card.c: the card channel (acquirer + network + issuer) as the
 * protocol of docs/channels.md describes it: authorizations, captures, voids, refunds,
 * 3-D Secure challenges; ISO 8583 response codes. Builds requests and reads answers;
 * the engine does the HTTP. The card number goes into the request body only. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "gateway/gw_internal.h"

static bool card_accepts(const gw_request_t *req);

/* Written as text: every string in it is plain (the card's digits and CVC, checked
 * again here although routing only picks a card channel for a card it accepts; the
 * payment's id and currency code, checked by gw_submit). */
static pc_status card_authorize(const gw_channel_cfg_t *ch, const gw_request_t *req,
                                gw_http_call_t *out) {
    (void)ch;
    if (!card_accepts(req)) return PC_GATEWAY_REQUEST_INVALID;
    out->method = "POST";
    snprintf(out->path, sizeof out->path, "/v1/authorizations");
    bool cvc = req->card.cvc[0] != '\0';
    char amount[21], month[21], year[21];
    const char *const parts[] = {"{\"amount\":", gw_decimal(req->amount_minor, amount), ",\"currency\":\"",
                                 req->currency, "\",\"card\":{\"number\":\"", req->card.number,
                                 "\",\"exp_month\":", gw_decimal(req->card.exp_month, month), ",\"exp_year\":",
                                 gw_decimal(req->card.exp_year, year), cvc ? ",\"cvc\":\"" : "",
                                 cvc ? req->card.cvc : "", cvc ? "\"" : "", "},\"merchant_ref\":\"", req->reference,
                                 "\",\"capture\":", req->capture ? "true}" : "false}"};
    return gw_body_parts(out, parts, sizeof parts / sizeof parts[0]);
}

/* POST /v1/authorizations/{id}/<what> with {"amount":N}, or {} for a void. */
static pc_status card_follow_up(const gw_request_t *req, const char *what, bool amount,
                                gw_http_call_t *out) {
    out->method = "POST";
    const char *const path[] = {"/v1/authorizations/", req->channel_ref, "/", what};
    pc_str_join(out->path, sizeof out->path, path, 4);
    char digits[21];
    const char *const parts[] = {"{\"amount\":", gw_decimal(req->amount_minor, digits), "}"};
    if (!amount) return gw_body_parts(out, (const char *const[]){"{}"}, 1);
    return gw_body_parts(out, parts, sizeof parts / sizeof parts[0]);
}

static pc_status card_capture(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out) {
    (void)ch;
    return card_follow_up(req, "captures", true, out);
}

static pc_status card_void(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out) {
    (void)ch;
    return card_follow_up(req, "void", false, out);
}

static pc_status card_refund(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out) {
    (void)ch;
    return card_follow_up(req, "refunds", true, out);
}

static pc_status card_challenge(const gw_channel_cfg_t *ch, const gw_request_t *req,
                                gw_http_call_t *out) {
    (void)ch;
    out->method = "POST";
    snprintf(out->path, sizeof out->path, "/v1/challenges/%s/complete", req->challenge_id);
    return gw_body_json(out, json_pack("{s:s}", "code", req->challenge_code));
}

/* "approved" must carry an approving code, "declined" must not: an answer that says
 * both is garbage, and garbage is never an approval. */
static bool status_agrees(const char *status, gw_answer_t *a) {
    bool approving = a->outcome == GW_OUTCOME_APPROVED;
    bool agrees = status != NULL && ((strcmp(status, "approved") == 0 && approving) ||
                                     (strcmp(status, "declined") == 0 && !approving &&
                                      a->outcome != GW_OUTCOME_PENDING &&
                                      a->outcome != GW_OUTCOME_CHALLENGE));
    if (!agrees) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "status '%s' disagrees with response_code %s", gw_printable(status),
                       a->code);
    }
    return agrees;
}

static void decode_challenge(const gw_obj_t *body, gw_answer_t *a) {
    const char *id = gw_obj_str(body, "challenge_id");
    if (id == NULL || id[0] == '\0' || strlen(id) >= sizeof a->challenge_id) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "challenge_required without a challenge_id");
        return;
    }
    a->outcome = GW_OUTCOME_CHALLENGE;
    a->status = PC_OK;
    gw_copy_str(a->code, sizeof a->code, "challenge");
    gw_copy_str(a->challenge_id, sizeof a->challenge_id, id);
    gw_copy_str(a->ref, sizeof a->ref, gw_obj_str(body, "id"));
}

static void decode_authorization(const gw_obj_t *body, const gw_request_t *req, gw_answer_t *a) {
    if (!gw_decode_amount(body, "amount", req->amount_minor, a) ||
        !gw_decode_currency(body, req->currency, a)) {
        return;
    }
    if (a->outcome == GW_OUTCOME_APPROVED) {
        gw_copy_str(a->approval_code, sizeof a->approval_code, gw_obj_str(body, "approval_code"));
        if (a->ref[0] == '\0') {
            gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                           "an approval without an id");
        }
    }
}

/* Captures and refunds answer the amount and the running total. */
static void decode_amounts(const gw_obj_t *body, const gw_request_t *req, const char *total_key,
                           gw_answer_t *a) {
    if (a->outcome == GW_OUTCOME_APPROVED && !gw_decode_amount(body, "amount", req->amount_minor, a)) {
        return;
    }
    int64_t total = 0;
    if (gw_obj_int(body, total_key, &total)) a->total_minor = total;
}

static void card_decode(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_op op,
                        const gw_obj_t *body, int http_status, gw_answer_t *a) {
    (void)http_status;
    const char *status = gw_obj_str(body, "status");
    bool authorizing = op == GW_OP_AUTHORIZE || op == GW_OP_CHALLENGE;
    if (authorizing && status != NULL && strcmp(status, "challenge_required") == 0) {
        decode_challenge(body, a);
        return;
    }
    if (!gw_decode_common(ch, body, a) || !status_agrees(status, a)) return;
    if (authorizing) decode_authorization(body, req, a);
    else if (op == GW_OP_CAPTURE) decode_amounts(body, req, "captured_total", a);
    else if (op == GW_OP_REFUND) decode_amounts(body, req, "refunded_total", a);
}

static bool digits(const char *s, size_t bytes_min, size_t bytes_max) {
    size_t bytes = strlen(s);
    if (bytes < bytes_min || bytes > bytes_max) return false;
    for (size_t i = 0; i < bytes; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
    }
    return true;
}

/* The protocol's card: 12..19 digits, a month, a year of this century, a CVC or none. */
static bool card_accepts(const gw_request_t *req) {
    return digits(req->card.number, 12, 19) && req->card.exp_month >= 1 && req->card.exp_month <= 12 &&
           req->card.exp_year >= 2000 && req->card.exp_year <= 2099 &&
           (req->card.cvc[0] == '\0' || digits(req->card.cvc, 3, 4));
}

const gw_connector_t gw_connector_card = {
    .kind = GW_KIND_CARD,
    .default_method = "card",
    .authorize = card_authorize,
    .capture = card_capture,
    .void_auth = card_void,
    .refund = card_refund,
    .payout = NULL,
    .status = gw_build_status,
    .challenge = card_challenge,
    .accepts = card_accepts,
    .decode = card_decode,
};
