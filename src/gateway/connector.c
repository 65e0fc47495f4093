/* gateway/connector.c: what every connector shares: the table of connectors, the
 * status inquiry call (the same for every kind) and the checks that turn a channel's
 * answer into an outcome. Anything a channel answers that does not read exactly as the
 * protocol says is garbage: outcome unknown, gateway_bad_response, never an approval. */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gateway/gw_internal.h"

const gw_connector_t *gw_connector(gw_kind kind) {
    switch (kind) {
    case GW_KIND_CARD: return &gw_connector_card;
    case GW_KIND_WALLET: return &gw_connector_wallet;
    case GW_KIND_BANK: return &gw_connector_bank;
    default: return NULL;
    }
}

gw_build_fn gw_connector_op(const gw_connector_t *c, gw_op op) {
    switch (op) {
    case GW_OP_AUTHORIZE: return c->authorize;
    case GW_OP_CAPTURE: return c->capture;
    case GW_OP_VOID: return c->void_auth;
    case GW_OP_REFUND: return c->refund;
    case GW_OP_PAYOUT: return c->payout;
    case GW_OP_STATUS: return c->status;
    case GW_OP_CHALLENGE: return c->challenge;
    default: return NULL;
    }
}

pc_status gw_body_json(gw_http_call_t *out, json_t *value) {
    out->body = value != NULL ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(value);
    out->body_bytes = out->body != NULL ? strlen(out->body) : 0;
    return out->body != NULL ? PC_OK : PC_NO_MEMORY;
}

pc_status gw_body_printf(gw_http_call_t *out, const char *format, ...) {
    char text[GW_HTTP_HEAD_BYTES]; /* formatted once; a longer body is sized first */
    va_list ap;
    va_start(ap, format);
    int bytes = vsnprintf(text, sizeof text, format, ap);
    va_end(ap);
    out->body = bytes >= 0 ? malloc((size_t)bytes + 1) : NULL;
    if (out->body != NULL && (size_t)bytes < sizeof text) {
        memcpy(out->body, text, (size_t)bytes + 1);
    } else if (out->body != NULL) {
        va_start(ap, format);
        vsnprintf(out->body, (size_t)bytes + 1, format, ap);
        va_end(ap);
    }
    sodium_memzero(text, sizeof text); /* a card number */
    if (out->body == NULL) return PC_NO_MEMORY;
    out->body_bytes = (size_t)bytes;
    return PC_OK;
}

pc_status gw_body_parts(gw_http_call_t *out, const char *const *parts, size_t part_count) {
    size_t bytes = 0, lengths[GW_BODY_PARTS_MAX];
    PC_ASSERT(part_count <= GW_BODY_PARTS_MAX);
    for (size_t i = 0; i < part_count; i++) bytes += lengths[i] = strlen(parts[i]);
    out->body = malloc(bytes + 1);
    if (out->body == NULL) return PC_NO_MEMORY;
    size_t at = 0;
    for (size_t i = 0; i < part_count; i++) {
        memcpy(out->body + at, parts[i], lengths[i]);
        at += lengths[i];
    }
    out->body[bytes] = '\0';
    out->body_bytes = bytes;
    return PC_OK;
}

const char *gw_decimal(int64_t value, char out[21]) {
    pc_i64_text(out, value);
    return out;
}

void gw_body_free(gw_http_call_t *http) {
    if (http->body != NULL) sodium_memzero(http->body, http->body_bytes);
    free(http->body);
    http->body = NULL;
    http->body_bytes = 0;
}

pc_status gw_build_status(const gw_channel_cfg_t *ch, const gw_request_t *req, gw_http_call_t *out) {
    (void)ch;
    out->method = "GET";
    out->body = NULL;
    snprintf(out->path, sizeof out->path, "/v1/status/%s", req->status_key);
    return PC_OK;
}

void gw_copy_str(char *dst, size_t dst_size, const char *src) {
    if (dst_size == 0) return;
    size_t bytes = src ? strnlen(src, dst_size - 1) : 0;
    if (bytes > 0) memcpy(dst, src, bytes);
    dst[bytes] = '\0';
}

const char *gw_json_str(const json_t *object, const char *key) {
    const json_t *v = json_object_get(object, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *gw_printable(const char *s) {
    if (s == NULL) return "(none)";
    size_t bytes = strnlen(s, 41);
    if (bytes > 40) return "(too long)";
    for (size_t i = 0; i < bytes; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) return "(not printable)";
    }
    return s;
}

void gw_answer_fail(gw_answer_t *a, gw_outcome outcome, pc_status status, const char *code,
                    const char *format, ...) {
    a->outcome = outcome;
    a->status = status;
    gw_copy_str(a->code, sizeof a->code, code);
    va_list ap;
    va_start(ap, format);
    vsnprintf(a->detail, sizeof a->detail, format, ap);
    va_end(ap);
}

/* Short printable strings only: an id or code from a channel ends up in logs and JSON. */
static bool plain_text(const char *s, size_t size_max) {
    size_t bytes = strnlen(s, size_max);
    if (bytes == 0 || bytes >= size_max) return false;
    for (size_t i = 0; i < bytes; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) return false;
    }
    return true;
}

bool gw_decode_common(const gw_channel_cfg_t *ch, const gw_obj_t *body, gw_answer_t *a) {
    const char *code = gw_obj_str(body, "response_code");
    if (code == NULL) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "answer without a response_code");
        return false;
    }
    if (!plain_text(code, GW_CODE_SIZE) || !gw_code_lookup(ch, code, &a->outcome)) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "unmapped_code",
                       "response_code '%s' is not in the channel's table", gw_printable(code));
        return false;
    }
    gw_copy_str(a->code, sizeof a->code, code);
    const char *id = gw_obj_str(body, "id");
    if (id != NULL && !plain_text(id, sizeof a->ref)) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "the answer's id is not a plain id");
        return false;
    }
    gw_copy_str(a->ref, sizeof a->ref, id);
    gw_copy_str(a->message, sizeof a->message, gw_obj_str(body, "message"));
    a->status = PC_OK;
    return true;
}

bool gw_decode_amount(const gw_obj_t *body, const char *key, int64_t want, gw_answer_t *a) {
    int64_t value = 0;
    if (!gw_obj_int(body, key, &value)) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "the answer has no integer %s", key);
        return false;
    }
    if (value != want) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "wrong_amount",
                       "the answer's %s is %lld, the request's %lld", key, (long long)value, (long long)want);
        return false;
    }
    a->amount_minor = want;
    return true;
}

bool gw_decode_currency(const gw_obj_t *body, const char *want, gw_answer_t *a) {
    const char *currency = gw_obj_str(body, "currency");
    if (currency == NULL || strcmp(currency, want) != 0) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "wrong_currency",
                       "the answer's currency is not the request's %s", want);
        return false;
    }
    return true;
}
