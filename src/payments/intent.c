/* payments/intent.c: a new payment. Validate every field (the first bad one is named),
 * find the merchant the caller may act for, vault the card (the number leaves this
 * request only as ciphertext), ask the risk engine inline, then: decline (nothing
 * moves), review (the review queue decides; a card enrolled in 3-D Secure steps up at
 * its channel instead), or authorize through the gateway. The payment's row is first
 * written with its first channel attempt, before the channel is called. */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paycore/money.h"
#include "payments/pay_internal.h"

typedef struct {
    char number[GW_CARD_NUMBER_SIZE];
    char cvc[5];
} card_secret_t;

static const char *const payment_fields[] = {"merchant_id", "amount", "currency", "capture_method",
                                             "payment_method", "payer", "description", "metadata", NULL};
static const char *const method_fields[] = {"type", "card", "wallet_id", "bank_account", NULL};
static const char *const card_fields[] = {"number", "exp_month", "exp_year", "cvc", NULL};
static const char *const payer_fields[] = {"id", "country", "device_id", "ip", "account_age_days", NULL};

static bool parse_card(const json_t *method, pay_payment_t *p, card_secret_t *secret, pay_parse_error_t *err) {
    const json_t *card;
    const char *number, *cvc;
    int64_t month, year;
    if (!pay_parse_object(method, "card", true, "payment_method", &card, err) ||
        !pay_parse_fields(card, card_fields, "payment_method.card", err) ||
        !pay_parse_string(card, "number", true, 19, "payment_method.card", &number, err) ||
        !pay_parse_int(card, "exp_month", true, INT32_MIN, INT32_MAX, "payment_method.card", &month, err) ||
        !pay_parse_int(card, "exp_year", true, INT32_MIN, INT32_MAX, "payment_method.card", &year, err) ||
        !pay_parse_string(card, "cvc", false, 4, "payment_method.card", &cvc, err)) {
        if (err->status == PC_STRING_TOO_LONG && strstr(err->field, "number")) err->status = PC_CARD_NUMBER_INVALID;
        if (err->status == PC_STRING_TOO_LONG && strstr(err->field, "cvc")) err->status = PC_CARD_CVC_INVALID;
        return false;
    }
    const char *field = NULL;
    pc_status status = pay_card_check(number, month, year, cvc, (int64_t)(pc_wall_ns() / 1000000000ull), &field);
    if (status != PC_OK) {
        pay_parse_fail(err, status, "", field, NULL);
        return false;
    }
    pc_str_copy(secret->number, sizeof secret->number, number);
    pc_str_copy(secret->cvc, sizeof secret->cvc, cvc ? cvc : "");
    p->card.exp_month = (uint32_t)month;
    p->card.exp_year = (uint32_t)year;
    return true;
}

static bool parse_method(const json_t *body, pay_payment_t *p, card_secret_t *secret, bool top_up,
                         pay_parse_error_t *err) {
    const json_t *method;
    const char *type;
    if (!pay_parse_object(body, "payment_method", true, "", &method, err) ||
        !pay_parse_fields(method, method_fields, "payment_method", err) ||
        !pay_parse_string(method, "type", true, 32, "payment_method", &type, err)) {
        return false;
    }
    if (strcmp(type, "card") == 0) {
        p->method = PAY_METHOD_CARD;
        return parse_card(method, p, secret, err);
    }
    if (strcmp(type, "wallet") == 0 && !top_up) {
        p->method = PAY_METHOD_WALLET;
        return pay_parse_id(method, "wallet_id", true, PC_ID_BYTES_MAX, "payment_method", p->wallet_id, err);
    }
    if (strcmp(type, "bank_transfer") == 0) {
        p->method = PAY_METHOD_BANK;
        return pay_parse_bank_account(method, "bank_account", "payment_method", p->routing_number,
                                      p->account_number, err);
    }
    pay_parse_fail(err, PC_PAYMENT_METHOD_UNKNOWN, "payment_method", "type", NULL);
    return false;
}

/* Four groups of 1-3 decimal digits joined by dots, each below 256, and nothing else:
 * read without sscanf (twice per payment, on the request's thread). False for any
 * other text, which the sscanf below then reads as it always did. */
static bool ip_plain_octets(const char *ip, unsigned octets[4]) {
    for (int i = 0; i < 4; i++) {
        unsigned value = 0, digits = 0;
        while (*ip >= '0' && *ip <= '9' && digits < 4) value = value * 10 + (unsigned)(*ip++ - '0'), digits++;
        if (digits == 0 || digits > 3 || value > 255) return false;
        octets[i] = value;
        if (*ip++ != (i < 3 ? '.' : '\0')) return false;
    }
    return true;
}

/* "203.0.113.7" -> "203.0.113" (the risk engine's IP prefix); "" when not IPv4. */
static void ip_prefix(const char *ip, char out[16]) {
    out[0] = '\0';
    unsigned o[4];
    if (ip_plain_octets(ip, o)) {
        size_t at = 0;
        for (int i = 0; i < 3; i++) {
            char digits[3];
            uint32_t n = 0;
            for (unsigned v = o[i]; n == 0 || v > 0; v /= 10) digits[n++] = (char)('0' + v % 10);
            if (i > 0) out[at++] = '.';
            while (n > 0) out[at++] = digits[--n];
        }
        out[at] = '\0';
        return;
    }
    unsigned a, b, c, d;
    char tail;
    if (sscanf(ip, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a < 256 && b < 256 && c < 256 && d < 256) {
        snprintf(out, 16, "%u.%u.%u", a, b, c);
    }
}

static bool parse_payer(const json_t *body, pay_payment_t *p, int64_t *age_days, pay_parse_error_t *err) {
    const json_t *payer;
    const char *ip;
    *age_days = 0;
    if (!pay_parse_object(body, "payer", true, "", &payer, err) ||
        !pay_parse_fields(payer, payer_fields, "payer", err) ||
        !pay_parse_id(payer, "id", true, PC_ID_BYTES_MAX, "payer", p->payer.id, err) ||
        !pay_parse_country(payer, "country", false, "payer", p->payer.country, err) ||
        !pay_parse_id(payer, "device_id", false, PC_ID_BYTES_MAX, "payer", p->payer.device_id, err) ||
        !pay_parse_string(payer, "ip", false, 45, "payer", &ip, err) ||
        !pay_parse_int(payer, "account_age_days", false, 0, 100000, "payer", age_days, err)) {
        return false;
    }
    if (ip != NULL) {
        char prefix[16];
        ip_prefix(ip, prefix);
        if (prefix[0] == '\0') {
            pay_parse_fail(err, PC_FIELD_TYPE, "payer", "ip", "an IPv4 address a.b.c.d");
            return false;
        }
        pc_str_copy(p->payer.ip, sizeof p->payer.ip, ip);
    }
    return true;
}

/* The body of POST /v1/payments (and of a top-up, whose merchant and wallet are
 * given by the route). */
static bool parse_payment(const json_t *body, pay_payment_t *p, card_secret_t *secret, char merchant_id[PC_ID_SIZE],
                          int64_t *age_days, bool top_up, pay_parse_error_t *err) {
    const char *capture, *description;
    merchant_id[0] = '\0';
    if (!pay_parse_fields(body, payment_fields, "", err) ||
        (!top_up && !pay_parse_id(body, "merchant_id", false, PAY_MERCHANT_ID_BYTES_MAX, "", merchant_id, err)) ||
        !pay_parse_amount(body, "amount", true, "", &p->amount, err) ||
        !pay_parse_currency(body, "currency", true, "", p->currency, err) ||
        !pay_parse_string(body, "capture_method", false, 16, "", &capture, err)) {
        if (err->status == PC_ID_INVALID && strcmp(err->field, "merchant_id") == 0) err->status = PC_MERCHANT_UNKNOWN;
        return false;
    }
    if (top_up && json_object_get(body, "merchant_id") != NULL) {
        pay_parse_fail(err, PC_FIELD_UNKNOWN, "", "merchant_id", "a top-up's merchant is its wallet's");
        return false;
    }
    p->capture_automatic = capture == NULL || strcmp(capture, "automatic") == 0;
    if (capture != NULL && strcmp(capture, "automatic") != 0 && strcmp(capture, "manual") != 0) {
        pay_parse_fail(err, PC_VALUE_OUT_OF_RANGE, "", "capture_method", "automatic or manual");
        return false;
    }
    if (!parse_method(body, p, secret, top_up, err) || !parse_payer(body, p, age_days, err) ||
        !pay_parse_string(body, "description", false, API_STRING_BYTES_MAX, "", &description, err) ||
        !pay_parse_metadata(body, "metadata", "", &p->metadata, err)) {
        return false;
    }
    if (description != NULL) pc_str_copy(p->description, sizeof p->description, description);
    return true;
}

/* ---- the same body read by the API's fast path (pay_plain_payment_t) ---- */

static bool plain_id_valid(const char *id, size_t bytes_max) { return pc_id_valid(id) && strlen(id) <= bytes_max; }

static bool plain_card_valid(const pay_plain_payment_t *b) {
    uint32_t needed = PAY_PLAIN_METHOD | PAY_PLAIN_METHOD_TYPE | PAY_PLAIN_CARD | PAY_PLAIN_CARD_NUMBER |
                      PAY_PLAIN_CARD_EXP_MONTH | PAY_PLAIN_CARD_EXP_YEAR;
    if ((b->has & needed) != needed || strcmp(b->method_type, "card") != 0) return false;
    if (b->card_exp_month > INT32_MAX || b->card_exp_year > INT32_MAX) return false;
    const char *field = NULL;
    return pay_card_check(b->card_number, b->card_exp_month, b->card_exp_year,
                          (b->has & PAY_PLAIN_CARD_CVC) ? b->card_cvc : NULL,
                          (int64_t)(pc_wall_ns() / 1000000000ull), &field) == PC_OK;
}

static bool plain_payer_valid(const pay_plain_payment_t *b) {
    if (!(b->has & PAY_PLAIN_PAYER) || !(b->has & PAY_PLAIN_PAYER_ID) || !plain_id_valid(b->payer_id, PC_ID_BYTES_MAX)) {
        return false;
    }
    if ((b->has & PAY_PLAIN_PAYER_COUNTRY) && !pay_country_valid(b->payer_country)) return false;
    if ((b->has & PAY_PLAIN_PAYER_DEVICE_ID) && !plain_id_valid(b->payer_device_id, PC_ID_BYTES_MAX)) return false;
    char prefix[16];
    if (b->has & PAY_PLAIN_PAYER_IP) ip_prefix(b->payer_ip, prefix);
    if ((b->has & PAY_PLAIN_PAYER_IP) && prefix[0] == '\0') return false;
    return !(b->has & PAY_PLAIN_PAYER_AGE_DAYS) || (b->payer_age_days >= 0 && b->payer_age_days <= 100000);
}

bool pay_plain_payment_valid(const pay_plain_payment_t *b) {
    if ((b->has & PAY_PLAIN_MERCHANT_ID) && !plain_id_valid(b->merchant_id, PAY_MERCHANT_ID_BYTES_MAX)) return false;
    if (!(b->has & PAY_PLAIN_AMOUNT) || b->amount < 1 || b->amount > PAY_AMOUNT_MINOR_MAX) return false;
    if (!(b->has & PAY_PLAIN_CURRENCY) || pc_currency_find(b->currency) == NULL) return false;
    if ((b->has & PAY_PLAIN_CAPTURE_METHOD) && strcmp(b->capture_method, "automatic") != 0 &&
        strcmp(b->capture_method, "manual") != 0) {
        return false;
    }
    return plain_card_valid(b) && plain_payer_valid(b);
}

/* What parse_payment makes of the same body (pay_plain_payment_valid accepted it). */
static void plain_payment_fill(const pay_plain_payment_t *b, pay_payment_t *p, card_secret_t *secret,
                               char merchant_id[PC_ID_SIZE], int64_t *age_days) {
    pc_str_copy(merchant_id, PC_ID_SIZE, (b->has & PAY_PLAIN_MERCHANT_ID) ? b->merchant_id : "");
    p->amount = b->amount;
    memcpy(p->currency, b->currency, sizeof p->currency);
    p->capture_automatic = !(b->has & PAY_PLAIN_CAPTURE_METHOD) || strcmp(b->capture_method, "automatic") == 0;
    p->method = PAY_METHOD_CARD;
    pc_str_copy(secret->number, sizeof secret->number, b->card_number);
    pc_str_copy(secret->cvc, sizeof secret->cvc, (b->has & PAY_PLAIN_CARD_CVC) ? b->card_cvc : "");
    p->card.exp_month = (uint32_t)b->card_exp_month;
    p->card.exp_year = (uint32_t)b->card_exp_year;
    pc_str_copy(p->payer.id, sizeof p->payer.id, b->payer_id);
    if (b->has & PAY_PLAIN_PAYER_COUNTRY) memcpy(p->payer.country, b->payer_country, sizeof p->payer.country);
    if (b->has & PAY_PLAIN_PAYER_DEVICE_ID) pc_str_copy(p->payer.device_id, sizeof p->payer.device_id, b->payer_device_id);
    if (b->has & PAY_PLAIN_PAYER_IP) pc_str_copy(p->payer.ip, sizeof p->payer.ip, b->payer_ip);
    *age_days = (b->has & PAY_PLAIN_PAYER_AGE_DAYS) ? b->payer_age_days : 0;
    if (b->has & PAY_PLAIN_DESCRIPTION) pc_str_copy(p->description, sizeof p->description, b->description);
}

/* ---- risk ---- */

static risk_channel risk_channel_of(pay_method method) {
    if (method == PAY_METHOD_WALLET) return RISK_CHANNEL_WALLET;
    if (method == PAY_METHOD_BANK) return RISK_CHANNEL_BANK_TRANSFER;
    return RISK_CHANNEL_ECOMMERCE;
}

/* {"score", "reasons": [{"code", "action"}]}, built member by member (json_pack parses
 * its format for every payment); a reason whose code jansson refuses is left out, as
 * json_pack's NULL was. */
static json_t *risk_reason_json(const risk_reason_t *reason) {
    json_t *code = json_string(reason->code), *o = code != NULL ? json_object() : NULL;
    if (o == NULL) {
        json_decref(code);
        return NULL;
    }
    json_object_set_new_nocheck(o, "code", code);
    json_object_set_new_nocheck(o, "action", json_string_nocheck(reason->action == RISK_ACTION_DECLINE ? "decline"
                                                                                                     : "review"));
    return o;
}

static json_t *risk_detail_json(const risk_decision_t *d) {
    json_t *reasons = json_array(), *o = json_object();
    for (uint32_t i = 0; reasons != NULL && i < d->reason_count; i++) {
        json_array_append_new(reasons, risk_reason_json(&d->reasons[i]));
    }
    json_t *score = isnan(d->score) ? json_null() : json_real((double)d->score);
    if (o == NULL || reasons == NULL || score == NULL) {
        json_decref(o);
        json_decref(reasons);
        json_decref(score);
        return NULL;
    }
    json_object_set_new_nocheck(o, "score", score);
    json_object_set_new_nocheck(o, "reasons", reasons);
    return o;
}

/* Scores the payment; PC_OK with payment->risk filled (approve when no engine runs). */
static pc_status risk_score(pay_t *pay, pay_payment_t *p, const pay_merchant_t *m, int64_t age_days) {
    if (pay->config.risk == NULL) return PC_OK;
    risk_auth_t auth;
    memset(&auth, 0, sizeof auth);
    auth.ts_s = (int64_t)(pc_wall_ns() / 1000000000ull);
    pc_str_copy(auth.payer_id, sizeof auth.payer_id, p->payer.id);
    pc_str_copy(auth.payee_id, sizeof auth.payee_id, m->id);
    auth.amount_minor = p->amount;
    memcpy(auth.currency, p->currency, 4);
    auth.mcc = m->mcc;
    auth.channel = risk_channel_of(p->method);
    pc_str_copy(auth.country_payer, sizeof auth.country_payer, p->payer.country[0] ? p->payer.country : m->country);
    pc_str_copy(auth.country_merchant, sizeof auth.country_merchant, m->country);
    pc_str_copy(auth.device_id, sizeof auth.device_id, p->payer.device_id);
    ip_prefix(p->payer.ip, auth.ip_prefix);
    auth.account_age_days = (int32_t)age_days;
    auth.is_fraud = -1;
    pc_str_copy(auth.owner_id, sizeof auth.owner_id, m->id); /* its merchant's feedback only */
    risk_decision_t decision;
    pc_status status = risk_decide(pay->config.risk, &auth, &decision);
    if (status != PC_OK) return status;
    p->risk.decision_id = decision.decision_id;
    pc_str_copy(p->risk.outcome, sizeof p->risk.outcome, risk_outcome_name(decision.outcome));
    p->risk.detail = risk_detail_json(&decision);
    return PC_OK;
}

/* ---- storing a payment that goes nowhere now (declined, in review, failed) ---- */

static pc_status final_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    bool created = !flow->payment_stored;
    pc_status status = pay_flow_write_payment(flow, tx);
    if (status == PC_OK) pay_flow_answer_payment(flow, created ? 201 : 200);
    return status;
}

static void final_then(pay_flow_t *flow, pc_status status) {
    if (status != PC_OK) pay_reply_error(&flow->reply, status, NULL, NULL);
    pay_flow_finish(flow);
}

void pay_payment_commit_final(pay_flow_t *flow) {
    pay_flow_submit_staged(flow, WRITER_CMD_EXEC, 1, final_in_tx, final_then);
}

static void decline_set(pay_payment_t *p, const char *code, const char *message, const char *source) {
    pc_str_copy(p->decline.code, sizeof p->decline.code, code);
    pc_str_copy(p->decline.message, sizeof p->decline.message, message);
    pc_str_copy(p->decline.source, sizeof p->decline.source, source);
}

/* Risk said decline or review: the payment is stored as it stands. */
static void risk_stops(pay_flow_t *flow, pay_event event) {
    pay_payment_t *p = &flow->payment;
    bool moved = pay_transition(p->state, event, &p->state);
    PC_ASSERT(moved);
    if (event == PAY_EV_RISK_DECLINE) {
        const char *reason = "risk_declined";
        const json_t *reasons = json_object_get(p->risk.detail, "reasons");
        const char *first = json_string_value(json_object_get(json_array_get(reasons, 0), "code"));
        decline_set(p, reason, first ? first : "the risk engine declined the payment", "risk");
    }
    pay_payment_commit_final(flow);
}

/* ---- creating ---- */

/* A repeat of an earlier request with this Idempotency-Key (its stored reply was not
 * made final yet, or the server stopped before): the payment as it is now. */
static bool idempotent_repeat(pay_flow_t *flow, store_reader_t *reader) {
    if (!flow->has_idempotency || flow->idempotency_key_new) return false;
    char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 16];
    pay_lookup_idem(name, sizeof name, flow->key_id, flow->idempotency_key);
    store_pay_lookup_t lookup;
    pc_status status = store_pay_lookup_get(reader, name, &lookup);
    if (status == PC_NOT_FOUND) return false;
    if (status == PC_OK && (lookup.extra_bytes != 32 || sodium_memcmp(lookup.extra, flow->request_hash, 32) != 0)) {
        pay_reply_error(&flow->reply, PC_IDEMPOTENCY_KEY_REUSED, "Idempotency-Key", NULL);
        return true;
    }
    pay_payment_t existing;
    if (status == PC_OK) status = pay_payment_read(reader, lookup.object_id, &existing);
    if (status != PC_OK) {
        pay_reply_error(&flow->reply, status, NULL, NULL);
        return true;
    }
    pay_reply_object(&flow->reply, existing.pending_op[0] ? 202 : 200, pay_payment_json(&existing));
    pay_payment_clear(&existing);
    return true;
}

/* False when channels of the payment's method exist and none takes its currency: then
 * it is refused before anything is stored, as a currency the merchant does not take.
 * A channel out for another reason (a breaker, the amount) is the routing's to answer. */
static bool channels_take_currency(pay_flow_t *flow) {
    const pay_payment_t *p = &flow->payment;
    gw_t *gw = flow->pay->config.gateway;
    gw_request_t request;
    memset(&request, 0, sizeof request);
    request.op = GW_OP_AUTHORIZE;
    pc_str_copy(request.method, sizeof request.method, pay_method_name(p->method));
    request.amount_minor = p->amount;
    memcpy(request.currency, p->currency, 4);
    /* the shape a connector accepts, not the card: routing reads no number */
    pc_str_copy(request.card.number, sizeof request.card.number, "000000000000");
    request.card.exp_month = 12;
    request.card.exp_year = 2099;
    pc_str_copy(request.bank.routing_number, sizeof request.bank.routing_number, p->routing_number);
    pc_str_copy(request.bank.account_number, sizeof request.bank.account_number, p->account_number);
    gw_decision_t decision; /* ~1.5 kB: on the stack, not a large calloc per payment */
    pc_status routed = gw != NULL ? gw_route(gw, &request, &decision) : PC_GATEWAY_NOT_CONFIGURED;
    if (routed != PC_OK && routed != PC_GATEWAY_NO_CHANNEL) return true;
    bool method_served = false, currency_taken = false;
    for (uint32_t i = 0; i < decision.candidate_count; i++) {
        gw_why why = decision.candidates[i].why;
        if (why == GW_WHY_OP || why == GW_WHY_METHOD) continue;
        method_served = true;
        if (why != GW_WHY_CURRENCY) currency_taken = true;
    }
    return !method_served || currency_taken;
}

/* The caller, the merchant, the currency and the method's own checks. */
static bool create_checks(pay_flow_t *flow, const pay_caller_t *caller, store_reader_t *reader,
                          const char *merchant_id) {
    pay_payment_t *p = &flow->payment;
    pc_status status = pay_caller_merchant(flow->pay, caller, reader, merchant_id, &flow->merchant);
    if (status != PC_OK) {
        pay_reply_error(&flow->reply, status, status == PC_MERCHANT_UNKNOWN ? "merchant_id" : NULL, NULL);
        if (status == PC_MERCHANT_UNKNOWN) flow->reply.http_status = 400;
        return false;
    }
    pc_str_copy(p->merchant_id, sizeof p->merchant_id, flow->merchant->id);
    if (!pay_merchant_takes(flow->merchant, p->currency)) {
        pay_reply_error(&flow->reply, PC_CURRENCY_NOT_ACCEPTED, "currency", "the merchant does not take this currency");
        return false;
    }
    if (p->method != PAY_METHOD_WALLET && !channels_take_currency(flow)) {
        pay_reply_error(&flow->reply, PC_CURRENCY_NOT_ACCEPTED, "currency", "no channel takes this currency");
        return false;
    }
    if (p->method == PAY_METHOD_WALLET || p->top_up) return pay_wallet_check(flow, reader);
    return true;
}

/* Vaults the card: the token row is stored with the payment's first write. */
static pc_status card_vault(pay_flow_t *flow, const card_secret_t *secret) {
    pay_payment_t *p = &flow->payment;
    vault_t *vault = flow->pay->config.vault;
    if (vault == NULL) return PC_PAYMENTS_NOT_CONFIGURED;
    pc_status status = vault_tokenize(vault, secret->number, p->card.exp_month, p->card.exp_year, &flow->card);
    if (status != PC_OK) return status;
    flow->card_new = true;
    pc_str_copy(p->card.token, sizeof p->card.token, flow->card.token);
    pc_str_copy(p->card.bin, sizeof p->card.bin, flow->card.bin);
    pc_str_copy(p->card.last4, sizeof p->card.last4, flow->card.last4);
    pc_str_copy(p->card.fingerprint, sizeof p->card.fingerprint, flow->card.fingerprint);
    p->card.three_d_secure = pay_card_three_ds(flow->pay, secret->number);
    pc_str_copy(flow->challenge_code, sizeof flow->challenge_code, secret->cvc); /* the first call's cvc */
    pc_str_copy(flow->card_number, sizeof flow->card_number, secret->number);  /* and number */
    return PC_OK;
}

/* After validation and risk: where the payment goes. */
static void create_route(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    bool decline = strcmp(p->risk.outcome, "decline") == 0;
    bool review = strcmp(p->risk.outcome, "review") == 0 && !(p->method == PAY_METHOD_CARD && p->card.three_d_secure);
    if (decline || review || p->method == PAY_METHOD_WALLET) { /* no call now: the card data goes */
        sodium_memzero(flow->card_number, sizeof flow->card_number);
        sodium_memzero(flow->challenge_code, sizeof flow->challenge_code);
    }
    if (decline) {
        risk_stops(flow, PAY_EV_RISK_DECLINE);
    } else if (review) {
        risk_stops(flow, PAY_EV_RISK_REVIEW);
    } else if (p->method == PAY_METHOD_WALLET) {
        pay_wallet_pay(flow);
    } else {
        pay_authorize_start(flow);
    }
}

/* Validated and vaulted; 'reader' is released by the caller. */
static bool create_prepare(pay_flow_t *flow, const pay_caller_t *caller, store_reader_t *reader, const json_t *body,
                           const pay_plain_payment_t *plain, bool top_up) {
    pay_payment_t *p = &flow->payment;
    char wallet_id[PC_ID_SIZE], merchant_of_wallet[PC_ID_SIZE];
    pc_str_copy(wallet_id, sizeof wallet_id, p->wallet_id); /* a top-up's target, set before */
    pc_str_copy(merchant_of_wallet, sizeof merchant_of_wallet, p->merchant_id);
    pay_payment_init(p);
    pc_str_copy(p->wallet_id, sizeof p->wallet_id, wallet_id);
    pc_str_copy(p->merchant_id, sizeof p->merchant_id, merchant_of_wallet);
    card_secret_t secret;
    memset(&secret, 0, sizeof secret);
    char merchant_id[PC_ID_SIZE];
    int64_t age_days = 0;
    pay_parse_error_t err = {0};
    p->top_up = top_up;
    bool ok = true;
    if (plain != NULL) plain_payment_fill(plain, p, &secret, merchant_id, &age_days);
    else ok = parse_payment(body, p, &secret, merchant_id, &age_days, top_up, &err);
    if (!ok) pay_reply_parse_error(&flow->reply, &err);
    if (ok && top_up) pc_str_copy(merchant_id, sizeof merchant_id, p->merchant_id);
    ok = ok && create_checks(flow, caller, reader, merchant_id) && !idempotent_repeat(flow, reader);
    pc_status status = PC_OK;
    if (ok && p->method == PAY_METHOD_CARD) status = card_vault(flow, &secret);
    if (ok && status == PC_OK) status = risk_score(flow->pay, p, flow->merchant, age_days);
    if (ok && status != PC_OK) {
        pay_reply_error(&flow->reply, status, NULL, NULL);
        ok = false;
    }
    sodium_memzero(&secret, sizeof secret);
    return ok;
}

static void create_begin(pay_flow_t *flow, const pay_caller_t *caller, const json_t *body,
                         const pay_plain_payment_t *plain, bool top_up) {
    pay_t *pay = flow->pay;
    store_reader_t *reader = pay_reader_acquire(pay);
    if (reader == NULL) {
        pay_flow_fail(flow, PC_STORE_READ_FAILED, NULL, NULL);
        return;
    }
    bool ok = create_prepare(flow, caller, reader, body, plain, top_up);
    pay_reader_release(pay, reader);
    if (!ok) {
        pay_flow_finish(flow);
        return;
    }
    pay_payment_t *p = &flow->payment;
    flow->has_payment = true;
    pay_id_new("pay_", p->id);
    pc_str_copy(flow->lock_id, sizeof flow->lock_id, p->id);
    PC_ASSERT(pay_busy_take(pay, p->id)); /* a new random id: nobody else holds it */
    p->state = PAY_STATE_CREATED;
    p->created_ns = pc_wall_ns();
    create_route(flow);
}

void pay_payment_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply) {
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow != NULL) create_begin(flow, caller, body, NULL, false);
}

void pay_payment_create_plain(pay_t *pay, const pay_caller_t *caller, const pay_plain_payment_t *body,
                              const pay_reply_fn_t *reply) {
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow != NULL) create_begin(flow, caller, NULL, body, false);
}

/* A top-up: a card or bank-transfer payment into one of the merchant's wallets. */
void pay_wallet_top_up(pay_t *pay, const pay_caller_t *caller, const char *wallet_id, const json_t *body,
                       const pay_reply_fn_t *reply) {
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow == NULL) return;
    if (!pay_wallet_top_up_target(flow, caller, wallet_id)) {
        pay_flow_finish(flow);
        return;
    }
    create_begin(flow, caller, body, NULL, true);
}

/* ---- authorizing through the gateway ---- */

static void authorize_failed_before_call(pay_flow_t *flow, pc_status status) {
    pay_payment_t *p = &flow->payment;
    bool moved = pay_transition(p->state, PAY_EV_FAILED, &p->state);
    PC_ASSERT(moved);
    decline_set(p, pc_status_code(status), pc_status_message(status), "gateway");
    pay_payment_commit_final(flow);
}

/* The card number for the connector's request: as entered for a new payment's first
 * call (the vault encrypted it a moment ago), else from the vault; wiped after submit. */
static pc_status request_card(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    vault_t *vault = flow->pay->config.vault;
    if (vault == NULL) return PC_PAYMENTS_NOT_CONFIGURED;
    store_vault_card_t stored;
    const store_vault_card_t *card = &flow->card;
    pc_status status = PC_OK;
    if (flow->card_new && flow->card_number[0] != '\0') {
        pc_str_copy(flow->request.card.number, sizeof flow->request.card.number, flow->card_number);
        sodium_memzero(flow->card_number, sizeof flow->card_number);
        card = NULL;
    } else if (!flow->card_new) {
        store_reader_t *reader = pay_reader_acquire(flow->pay);
        status = reader ? store_vault_card_get(reader, p->card.token, &stored) : PC_STORE_READ_FAILED;
        pay_reader_release(flow->pay, reader);
        if (status != PC_OK) return status == PC_NOT_FOUND ? PC_CARD_TOKEN_UNKNOWN : status;
        card = &stored;
    }
    if (card != NULL) status = vault_reveal(vault, card, flow->request.card.number, sizeof flow->request.card.number);
    flow->request.card.exp_month = p->card.exp_month;
    flow->request.card.exp_year = p->card.exp_year;
    pc_str_copy(flow->request.card.cvc, sizeof flow->request.card.cvc, flow->challenge_code);
    sodium_memzero(flow->challenge_code, sizeof flow->challenge_code);
    return status;
}

void pay_authorize_start(pay_flow_t *flow) {
    pay_payment_t *p = &flow->payment;
    pay_op_new(flow, PAY_OP_AUTHORIZE, "auth_", p->amount);
    pay_request_follow_up(flow, GW_OP_AUTHORIZE);
    gw_request_t *r = &flow->request;
    r->channel[0] = r->channel_ref[0] = '\0'; /* routed: the gateway chooses */
    pc_str_copy(r->country, sizeof r->country, p->payer.country);
    r->capture = p->capture_automatic || p->top_up;
    pc_status status = PC_OK;
    if (p->method == PAY_METHOD_CARD) status = request_card(flow);
    pc_str_copy(r->bank.routing_number, sizeof r->bank.routing_number, p->routing_number);
    pc_str_copy(r->bank.account_number, sizeof r->bank.account_number, p->account_number);
    if (status != PC_OK) {
        sodium_memzero(&r->card, sizeof r->card);
        authorize_failed_before_call(flow, status);
        return;
    }
    pay_call_start(flow, pay_op_result, 0);
}
