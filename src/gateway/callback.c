/* gateway/callback.c: the bank's signed callbacks (docs/channels.md, "bank"): verify
 * the signature with the channel's callback_secret (HMAC-SHA256 over "<t>.<body>",
 * libsodium, compared in constant time, t within GW_CALLBACK_SKEW_S), read the result
 * through the channel's code table and hand it to the listener. Nothing is trusted
 * before the signature verified. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gateway/gw_internal.h"
#include "obs/obs.h"

void gw_set_update_listener(gw_t *gw, gw_update_fn listener, void *ctx) {
    pthread_mutex_lock(&gw->listener_mutex);
    gw->listener = listener;
    gw->listener_ctx = ctx;
    pthread_mutex_unlock(&gw->listener_mutex);
}

/* "t=1700000000,v1=<64 hex>" -> t and the 32 raw bytes. */
static bool signature_parse(const char *header, int64_t *t_out, char *t_text, size_t t_size,
                            uint8_t mac[crypto_auth_hmacsha256_BYTES]) {
    if (header == NULL || strncmp(header, "t=", 2) != 0) return false;
    const char *comma = strchr(header, ',');
    if (comma == NULL || strncmp(comma, ",v1=", 4) != 0) return false;
    size_t t_bytes = (size_t)(comma - header - 2);
    if (t_bytes == 0 || t_bytes >= t_size) return false;
    memcpy(t_text, header + 2, t_bytes);
    t_text[t_bytes] = '\0';
    char *end = NULL;
    long long t = strtoll(t_text, &end, 10);
    if (*end != '\0' || t <= 0) return false;
    *t_out = t;
    const char *hex = comma + 4;
    size_t bin_bytes = 0;
    return strlen(hex) == 2 * crypto_auth_hmacsha256_BYTES &&
           sodium_hex2bin(mac, crypto_auth_hmacsha256_BYTES, hex, strlen(hex), NULL, &bin_bytes, NULL) == 0 &&
           bin_bytes == crypto_auth_hmacsha256_BYTES;
}

static bool signature_valid(const char *secret, const char *t_text, const char *body, size_t body_bytes,
                            const uint8_t mac[crypto_auth_hmacsha256_BYTES]) {
    crypto_auth_hmacsha256_state state;
    uint8_t want[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&state, (const uint8_t *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&state, (const uint8_t *)t_text, strlen(t_text));
    crypto_auth_hmacsha256_update(&state, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&state, (const uint8_t *)body, body_bytes);
    crypto_auth_hmacsha256_final(&state, want);
    bool valid = sodium_memcmp(want, mac, sizeof want) == 0;
    sodium_memzero(&state, sizeof state);
    return valid;
}

/* {"id","idempotency_key","status":"settled"|"returned","return_code","amount","currency","reference"} */
static bool update_decode(const gw_channel_cfg_t *ch, const json_t *body, gw_update_t *u) {
    const char *id = gw_json_str(body, "id");
    const char *key = gw_json_str(body, "idempotency_key");
    const char *status = gw_json_str(body, "status");
    const char *currency = gw_json_str(body, "currency");
    const json_t *amount = json_object_get(body, "amount");
    if (!pc_id_valid(id) || !pc_id_valid(key) || status == NULL || currency == NULL ||
        strlen(currency) != 3 || !json_is_integer(amount) || json_integer_value(amount) <= 0) {
        return false;
    }
    const char *code = status;
    if (strcmp(status, "returned") == 0) code = gw_json_str(body, "return_code");
    else if (strcmp(status, "settled") != 0) return false;
    if (code == NULL || strlen(code) >= sizeof u->response_code || !gw_code_lookup(ch, code, &u->outcome)) {
        return false;
    }
    gw_copy_str(u->channel, sizeof u->channel, ch->name);
    gw_copy_str(u->channel_ref, sizeof u->channel_ref, id);
    gw_copy_str(u->idempotency_key, sizeof u->idempotency_key, key);
    gw_copy_str(u->response_code, sizeof u->response_code, code);
    gw_copy_str(u->currency, sizeof u->currency, currency);
    const char *reference = gw_json_str(body, "reference");
    if (pc_id_valid(reference)) gw_copy_str(u->reference, sizeof u->reference, reference);
    u->amount_minor = json_integer_value(amount);
    return true;
}

/* Verifies and decodes under the config the callback arrived with. */
static pc_status callback_read(const gw_channel_cfg_t *ch, const char *signature, const char *body,
                               size_t body_bytes, int64_t now_s, gw_update_t *out) {
    int64_t t = 0;
    char t_text[24];
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    if (ch->callback_secret[0] == '\0' || !signature_parse(signature, &t, t_text, sizeof t_text, mac) ||
        t < now_s - GW_CALLBACK_SKEW_S || t > now_s + GW_CALLBACK_SKEW_S ||
        !signature_valid(ch->callback_secret, t_text, body, body_bytes, mac)) {
        obs_logf(OBS_LEVEL_ERROR, "gateway: callback for channel %s refused: signature missing, stale or wrong",
                 ch->name);
        return PC_GATEWAY_CALLBACK_INVALID;
    }
    json_error_t error;
    json_t *parsed = json_loadb(body, body_bytes, JSON_REJECT_DUPLICATES, &error);
    bool ok = json_is_object(parsed) && update_decode(ch, parsed, out);
    json_decref(parsed);
    if (!ok) {
        obs_logf(OBS_LEVEL_ERROR, "gateway: callback for channel %s refused: a signed body that is not a "
                 "transfer result", ch->name);
        return PC_GATEWAY_CALLBACK_INVALID;
    }
    return PC_OK;
}

pc_status gw_callback(gw_t *gw, const char *channel, const char *signature, const char *body,
                      size_t body_bytes, int64_t now_s, gw_update_t *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&gw->config_mutex);
    gw_config_t *cfg = gw->config;
    gw_config_ref(cfg);
    pthread_mutex_unlock(&gw->config_mutex);
    int32_t index = gw_config_find(cfg, channel);
    pc_status status = index < 0 ? PC_GATEWAY_CHANNEL_UNKNOWN
                                 : callback_read(&cfg->channels[index], signature, body, body_bytes, now_s, out);
    gw_config_unref(cfg);
    if (status != PC_OK) return status;
    pthread_mutex_lock(&gw->listener_mutex);
    gw_update_fn listener = gw->listener;
    void *ctx = gw->listener_ctx;
    pthread_mutex_unlock(&gw->listener_mutex);
    obs_logf(OBS_LEVEL_INFO, "gateway: channel %s: transfer %s %s (%s)%s", out->channel, out->channel_ref,
             out->response_code, gw_outcome_name(out->outcome),
             listener ? "" : "; no listener (payments stopping or not started): refused, delivered again");
    /* Acknowledged only once a listener made it durable: with none (a stop under way,
     * payments not started yet) the bank must deliver it again, or the result is lost. */
    return listener != NULL ? listener(ctx, out) : PC_SHUTTING_DOWN;
}
