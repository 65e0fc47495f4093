/* api/routes_risk.c: the risk engine over HTTP, and its place in `paycore serve`.
 *   POST /v1/risk/decisions               an authorization in, a decision out
 *   POST /v1/risk/feedback                confirmed fraud or false alarm for a decision
 *   GET  /v1/risk/reviews                 the review queue (?state=open|approved|declined)
 *   POST /v1/risk/reviews/{id}/approve    decide a review (who: the caller's key)
 *   POST /v1/risk/reviews/{id}/decline
 *   POST /v1/admin/reload                 rules and model again; a bad file keeps the old
 * The engine is process-wide (one per server); handlers never touch the ledger's
 * writer: scoring runs on this API thread, decisions go to the risk store thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_gateway.h"
#include "api/api_internal.h"
#include "api/api_payments.h"
#include "api/api_risk.h"
#include "api/codec.h"
#include "core/bytes.h"
#include "core/core.h"
#include "obs/obs.h"
#include "risk/risk.h"

static risk_engine_t *risk_engine; /* set before listening, cleared after draining */

/* ---------------------------------------------------------------- serve integration */

static bool parse_threshold(const char *text, float *out) {
    if (text == NULL) return true;
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !(v >= 0.0 && v <= 1.0)) return false;
    *out = (float)v;
    return true;
}

pc_status api_risk_start(const api_risk_options_t *o) {
    risk_engine_config_t c;
    risk_engine_config_default(&c);
    if (!parse_threshold(o->review_threshold, &c.review_threshold) ||
        !parse_threshold(o->decline_threshold, &c.decline_threshold)) {
        return PC_INVALID_ARGUMENT;
    }
    char db[4096], snapshot[4096];
    snprintf(db, sizeof(db), "%s-risk.db", o->db_path);
    snprintf(snapshot, sizeof(snapshot), "%s-risk.features", o->db_path);
    c.model_path = o->model_path;
    c.rules_path = o->rules_path;
    c.rules_only = o->rules_only || o->model_path == NULL;
    c.decisions_db_path = db;
    c.snapshot_path = snapshot;
    pc_status status = risk_engine_open(&c, &risk_engine);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "risk: cannot start: %s (model %s, rules %s)",
                 pc_status_code(status), o->model_path ? o->model_path : "-",
                 o->rules_path ? o->rules_path : "-");
        return status;
    }
    obs_logf(OBS_LEVEL_INFO, "risk: %s", api_risk_mode());
    return PC_OK;
}

/* Reloads; returns the status and fills 'message' with the reason of a refusal. */
static pc_status reload(char *message, size_t message_bytes) {
    uint32_t line = 0;
    char detail[160];
    pc_status status = risk_engine_reload(risk_engine, &line, detail, sizeof(detail));
    if (status == PC_OK) {
        pc_str_copy(message, message_bytes, "reloaded");
    } else if (line > 0) {
        snprintf(message, message_bytes, "rules line %u: %s", line, detail);
    } else {
        pc_str_copy(message, message_bytes, detail[0] ? detail : pc_status_message(status));
    }
    return status;
}

void api_risk_reload(void) {
    if (risk_engine == NULL) return;
    char message[256];
    pc_status status = reload(message, sizeof(message));
    obs_logf(status == PC_OK ? OBS_LEVEL_INFO : OBS_LEVEL_ERROR, "risk reload: %s (%s)",
             pc_status_code(status), message);
}

void api_risk_stop(void) {
    risk_engine_close(risk_engine);
    risk_engine = NULL;
}

struct risk_engine *api_risk_engine(void) { return risk_engine; }

const char *api_risk_mode(void) {
    if (risk_engine == NULL) return "off";
    return risk_engine_rules_only(risk_engine) ? "rules_only" : "model";
}

/* ---------------------------------------------------------------- decoding */

static const char *const auth_fields[] = {
    "txn_id", "ts", "payer_id", "payee_id", "amount_minor", "currency", "mcc", "channel",
    "country_payer", "country_merchant", "device_id", "ip_prefix", "account_age_days", NULL,
};

static bool get_int(const json_t *body, const char *key, bool required, int64_t min, int64_t max,
                    int64_t *out, codec_error_t *err) {
    const json_t *v = json_object_get(body, key);
    if (v == NULL) {
        if (required) codec_fail(err, PC_FIELD_MISSING, "", key, NULL);
        return !required;
    }
    if (!json_is_integer(v)) {
        codec_fail(err, strcmp(key, "amount_minor") == 0 ? PC_AMOUNT_NOT_INTEGER : PC_FIELD_TYPE,
                   "", key, NULL);
        return false;
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        codec_fail(err, strcmp(key, "amount_minor") == 0 ? PC_AMOUNT_OUT_OF_RANGE : PC_VALUE_OUT_OF_RANGE,
                   "", key, NULL);
        return false;
    }
    *out = n;
    return true;
}

static bool get_text(const json_t *body, const char *key, bool required, char *dst,
                     size_t dst_bytes, codec_error_t *err) {
    const char *s = NULL;
    if (!codec_get_string(body, key, required, dst_bytes - 1, "", &s, err)) return false;
    pc_str_copy(dst, dst_bytes, s ? s : "");
    return true;
}

/* "5411" or 5411. */
static bool get_mcc(const json_t *body, risk_auth_t *a, codec_error_t *err) {
    const json_t *v = json_object_get(body, "mcc");
    int64_t n = -1;
    if (v == NULL) {
        codec_fail(err, PC_FIELD_MISSING, "", "mcc", NULL);
        return false;
    }
    if (json_is_integer(v)) n = json_integer_value(v);
    if (json_is_string(v) && strlen(json_string_value(v)) == 4) n = strtol(json_string_value(v), NULL, 10);
    if (json_is_string(v) && strspn(json_string_value(v), "0123456789") != 4) n = -1;
    if (!json_is_integer(v) && !json_is_string(v)) {
        codec_fail(err, PC_FIELD_TYPE, "", "mcc", "mcc must be 4 digits");
        return false;
    }
    if (n < 0 || n > 9999) {
        codec_fail(err, PC_VALUE_OUT_OF_RANGE, "", "mcc", "mcc must be 4 digits");
        return false;
    }
    a->mcc = (uint16_t)n;
    return true;
}

static bool decode_auth(const json_t *body, risk_auth_t *a, codec_error_t *err) {
    memset(a, 0, sizeof(*a));
    a->is_fraud = -1;
    int64_t ts = (int64_t)(pc_wall_ns() / 1000000000ull), age = 0, txn = 0;
    char channel[32];
    bool ok = codec_check_fields(body, auth_fields, "", err) &&
              get_int(body, "txn_id", false, 0, INT64_MAX, &txn, err) &&
              get_int(body, "ts", false, 1, (int64_t)UINT32_MAX, &ts, err) &&
              get_text(body, "payer_id", true, a->payer_id, sizeof(a->payer_id), err) &&
              get_text(body, "payee_id", true, a->payee_id, sizeof(a->payee_id), err) &&
              get_int(body, "amount_minor", true, 1, INT64_MAX, &a->amount_minor, err) &&
              get_text(body, "currency", true, a->currency, sizeof(a->currency), err) &&
              get_mcc(body, a, err) &&
              get_text(body, "channel", true, channel, sizeof(channel), err) &&
              get_text(body, "country_payer", true, a->country_payer, sizeof(a->country_payer), err) &&
              get_text(body, "country_merchant", true, a->country_merchant, sizeof(a->country_merchant), err) &&
              get_text(body, "device_id", false, a->device_id, sizeof(a->device_id), err) &&
              get_text(body, "ip_prefix", false, a->ip_prefix, sizeof(a->ip_prefix), err) &&
              get_int(body, "account_age_days", true, 0, 1000000, &age, err);
    if (!ok) return false;
    a->ts_s = ts;
    a->txn_id = txn;
    a->account_age_days = (int32_t)age;
    if (risk_auth_set_channel(a, channel) != PC_OK) {
        codec_fail(err, PC_RISK_CHANNEL_INVALID, "", "channel", NULL);
        return false;
    }
    const char *field = NULL;
    pc_status status = risk_auth_validate(a, &field);
    if (status != PC_OK) {
        codec_fail(err, status, "", field, NULL);
        return false;
    }
    return true;
}

static bool engine_ready(api_request_t *req) {
    if (risk_engine != NULL) return true;
    api_reply_error(req, PC_SHUTTING_DOWN, NULL, "the risk engine is not running");
    return false;
}

static void reply_codec_error(api_request_t *req, const codec_error_t *err) {
    api_reply_error_http(req, 400, err->status, err->field[0] ? err->field : NULL,
                         err->message[0] ? err->message : NULL);
}

/* ---------------------------------------------------------------- handlers */

static const char *action_name(risk_action action) {
    return action == RISK_ACTION_DECLINE ? "decline" : "review";
}

static json_t *decision_json(const risk_decision_t *d) {
    json_t *reasons = json_array();
    for (uint32_t i = 0; i < d->reason_count; i++) {
        json_array_append_new(reasons, json_pack("{s:s,s:s}", "code", d->reasons[i].code,
                                                 "action", action_name(d->reasons[i].action)));
    }
    /* full precision: a client ranking by score sees exactly the model's order */
    json_t *score = isnan(d->score) ? json_null() : json_real((double)d->score);
    return json_pack("{s:I,s:s,s:o,s:o,s:I,s:b}", "decision_id", (json_int_t)d->decision_id,
                     "outcome", risk_outcome_name(d->outcome), "score", score, "reasons", reasons,
                     "latency_us", (json_int_t)(d->latency_ns / 1000), "rules_only",
                     isnan(d->score));
}

/* The merchant a merchant key acts for (its bound merchant), "" for any other key.
 * False (replied) for a merchant key bound to no merchant: it owns no decisions (403
 * merchant_key_unbound after the body's own checks, as POST /v1/payments answers). */
static bool caller_owner(api_request_t *req, char owner[PC_ID_SIZE]) {
    owner[0] = '\0';
    const api_caller_t *caller = api_caller(req);
    if (caller == NULL || caller->scope != API_SCOPE_MERCHANT) return true;
    if (api_payments() != NULL) pay_key_merchant(api_payments(), caller->id, owner);
    if (owner[0] != '\0') return true;
    api_reply_error(req, PC_MERCHANT_KEY_UNBOUND, NULL, NULL);
    return false;
}

/* A merchant's decision: its payee is the merchant itself (another payee reads as an
 * unknown merchant, as in POST /v1/payments), it belongs to the merchant, and its
 * payer, device and address live in the merchant's own scope of the feature state. */
static bool merchant_scope(api_request_t *req, risk_auth_t *auth, const char *owner) {
    if (owner[0] == '\0') return true;
    if (strcmp(auth->payee_id, owner) != 0) {
        api_reply_error(req, PC_MERCHANT_UNKNOWN, "payee_id", NULL);
        return false;
    }
    risk_auth_scope(auth, owner);
    return true;
}

void api_route_risk_decide(api_request_t *req) {
    if (!engine_ready(req)) return;
    json_t *body = api_body_object(req);
    if (body == NULL) return;
    risk_auth_t auth;
    codec_error_t err;
    memset(&err, 0, sizeof(err));
    if (!decode_auth(body, &auth, &err)) {
        reply_codec_error(req, &err);
        return;
    }
    char owner[PC_ID_SIZE];
    if (!caller_owner(req, owner) || !merchant_scope(req, &auth, owner)) return;
    risk_decision_t d;
    pc_status status = risk_decide(risk_engine, &auth, &d);
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, decision_json(&d));
}

static const char *const feedback_fields[] = {"decision_id", "is_fraud", NULL};

void api_route_risk_feedback(api_request_t *req) {
    if (!engine_ready(req)) return;
    json_t *body = api_body_object(req);
    if (body == NULL) return;
    codec_error_t err;
    memset(&err, 0, sizeof(err));
    int64_t id = 0;
    const json_t *fraud = json_object_get(body, "is_fraud");
    if (!codec_check_fields(body, feedback_fields, "", &err) ||
        !get_int(body, "decision_id", true, 1, INT64_MAX, &id, &err)) {
        reply_codec_error(req, &err);
        return;
    }
    if (fraud == NULL || !json_is_boolean(fraud)) {
        codec_fail(&err, fraud == NULL ? PC_FIELD_MISSING : PC_FIELD_TYPE, "", "is_fraud",
                   "is_fraud must be true or false");
        reply_codec_error(req, &err);
        return;
    }
    char owner[PC_ID_SIZE];
    if (!caller_owner(req, owner)) return;
    /* a merchant's feedback on a decision it does not own: as on one that does not exist */
    pc_status status = risk_feedback(risk_engine, (uint64_t)id, json_is_true(fraud), owner[0] ? owner : NULL);
    if (status != PC_OK) {
        api_reply_error(req, status, "decision_id", NULL);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:I,s:b,s:b}", "decision_id", (json_int_t)id,
                                       "is_fraud", json_is_true(fraud), "recorded", 1));
}

static const char *const review_states[] = {"open", "approved", "declined"};

static json_t *review_json(const risk_review_t *r) {
    json_t *score = isnan(r->score) ? json_null() : json_real(round(r->score * 1e6) / 1e6);
    json_t *out = json_pack("{s:I,s:s,s:I,s:s,s:I,s:s,s:o}", "decision_id",
                            (json_int_t)r->decision_id, "state", review_states[r->state],
                            "created_ts", (json_int_t)r->created_s, "payer_id", r->payer_id,
                            "amount_minor", (json_int_t)r->amount_minor, "currency", r->currency,
                            "score", score);
    if (r->state != RISK_REVIEW_OPEN) {
        json_object_set_new(out, "decided_by", json_string(r->decided_by));
        json_object_set_new(out, "decided_ts", json_integer(r->decided_s));
    }
    return out;
}

static bool parse_u64_text(const char *s, uint64_t *out) {
    if (s == NULL || s[0] == '\0' || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18) {
        return false;
    }
    *out = strtoull(s, NULL, 10);
    return true;
}

void api_route_risk_reviews(api_request_t *req) {
    static const char *const allowed[] = {"state", "after", "limit", NULL};
    if (!engine_ready(req) || !api_query_only(req, allowed)) return;
    const char *state_text = api_query(req, "state");
    int state = state_text == NULL ? 0 : -1;
    for (int i = 0; i < 3 && state_text != NULL; i++) {
        if (strcmp(state_text, review_states[i]) == 0) state = i;
    }
    uint64_t after = 0, limit = 50;
    bool ok = state >= 0 && (api_query(req, "after") == NULL || parse_u64_text(api_query(req, "after"), &after)) &&
              (api_query(req, "limit") == NULL || parse_u64_text(api_query(req, "limit"), &limit));
    if (!ok || limit < 1 || limit > API_LIST_LIMIT_MAX) {
        api_reply_error(req, PC_QUERY_INVALID, NULL, "state=open|approved|declined, after=id, limit=1..100");
        return;
    }
    risk_review_t *rows = api_alloc(req, (limit + 1) * sizeof(risk_review_t));
    if (rows == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    uint32_t n = risk_reviews_list(risk_engine, (risk_review_state)state, after, rows, (uint32_t)limit + 1);
    json_t *data = json_array();
    for (uint32_t i = 0; i < n && i < limit; i++) json_array_append_new(data, review_json(&rows[i]));
    api_reply_json(req, 200, json_pack("{s:o,s:b}", "data", data, "has_more", n > limit));
}

static void review_decide(api_request_t *req, bool approve) {
    if (!engine_ready(req)) return;
    uint64_t id = 0;
    if (!parse_u64_text(api_param(req, 0), &id) || id == 0) {
        api_reply_error(req, PC_RISK_REVIEW_NOT_FOUND, "id", NULL);
        return;
    }
    const api_caller_t *caller = api_caller(req);
    const char *who = caller != NULL && caller->id[0] != '\0' ? caller->id : "unknown";
    risk_review_t r;
    pc_status status = risk_review_decide(risk_engine, id, approve, who,
                                          (int64_t)(pc_wall_ns() / 1000000000ull), &r);
    if (status != PC_OK) {
        api_reply_error(req, status, "id", NULL);
        return;
    }
    /* a payment waiting for this review resumes (approve) or is canceled */
    if (api_payments() != NULL) pay_review_decided(api_payments(), id, approve);
    api_reply_json(req, 200, review_json(&r));
}

void api_route_risk_review_approve(api_request_t *req) { review_decide(req, true); }
void api_route_risk_review_decline(api_request_t *req) { review_decide(req, false); }

/* Reloads the channels file and the risk rules and model, each on its own: a bad
 * file keeps its own old configuration and is named in the refusal. */
void api_route_admin_reload(api_request_t *req) {
    if (!engine_ready(req)) return;
    char channels_message[256] = "", message[256];
    pc_status channels_status = api_gateway_reload(channels_message, sizeof(channels_message));
    pc_status status = reload(message, sizeof(message));
    if (status != PC_OK) obs_logf(OBS_LEVEL_ERROR, "risk reload refused: %s", message);
    if (channels_status != PC_OK) {
        api_reply_error(req, channels_status, NULL, channels_message);
        return;
    }
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, message);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:s,s:s,s:b}", "status", "reloaded", "risk", api_risk_mode(),
                                       "channels", api_gateway() != NULL));
}

/* ---------------------------------------------------------------- metrics */

static void put_reason(const char *code, uint64_t count, void *ctx) {
    pc_bytes_appendf(ctx, "paycore_risk_reasons_total{reason=\"%s\"} %llu\n", code, (unsigned long long)count);
}

static void put_risk_metrics(pc_bytes_t *b, const risk_engine_stats_t *st) {
    pc_bytes_appendf(b, "# HELP paycore_risk_decisions_total Risk decisions by outcome.\n# TYPE paycore_risk_decisions_total counter\n");
    for (int o = 0; o < 3; o++) {
        pc_bytes_appendf(b, "paycore_risk_decisions_total{outcome=\"%s\"} %llu\n", risk_outcome_name((risk_outcome)o),
                         (unsigned long long)st->decisions[o]);
    }
    pc_bytes_appendf(b, "# HELP paycore_risk_reasons_total Reason codes attached to risk decisions.\n# TYPE paycore_risk_reasons_total counter\n");
    risk_engine_reasons_each(risk_engine, put_reason, b);
    pc_bytes_appendf(b, "# HELP paycore_risk_score Model scores of risk decisions.\n# TYPE paycore_risk_score histogram\n");
    uint64_t cumulative = 0;
    for (int i = 0; i < RISK_SCORE_BUCKETS; i++) {
        cumulative += st->score_buckets[i];
        pc_bytes_appendf(b, "paycore_risk_score_bucket{le=\"%.1f\"} %llu\n", (i + 1) / (double)RISK_SCORE_BUCKETS,
                         (unsigned long long)cumulative);
    }
    pc_bytes_appendf(b, "paycore_risk_score_bucket{le=\"+Inf\"} %llu\npaycore_risk_score_sum %.6f\n"
                        "paycore_risk_score_count %llu\n",
                     (unsigned long long)cumulative, st->score_sum, (unsigned long long)cumulative);
    pc_bytes_appendf(b, "# HELP paycore_risk_scoring_seconds Time to score one authorization: features, rules and model.\n# TYPE paycore_risk_scoring_seconds histogram\n");
    for (int i = 0; i < RISK_LATENCY_BUCKETS; i++) {
        pc_bytes_appendf(b, "paycore_risk_scoring_seconds_bucket{le=\"%g\"} %llu\n", risk_latency_bounds_us[i] / 1e6,
                         (unsigned long long)st->latency_le_us[i]);
    }
    pc_bytes_appendf(b, "paycore_risk_scoring_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)st->latency_count);
    pc_bytes_appendf(b, "paycore_risk_scoring_seconds_sum %.9f\npaycore_risk_scoring_seconds_count %llu\n",
                     st->latency_sum_s, (unsigned long long)st->latency_count);
    pc_bytes_appendf(b, "# HELP paycore_risk_reviews_open Reviews waiting for a decision.\n# TYPE paycore_risk_reviews_open gauge\npaycore_risk_reviews_open %llu\n",
                     (unsigned long long)st->reviews_open);
    pc_bytes_appendf(b, "# HELP paycore_risk_rules_only 1 when the risk engine runs without a model.\n# TYPE paycore_risk_rules_only gauge\npaycore_risk_rules_only %d\n", st->rules_only ? 1 : 0);
    pc_bytes_appendf(b, "# HELP paycore_risk_feature_keys Keys held in the online feature state.\n# TYPE paycore_risk_feature_keys gauge\npaycore_risk_feature_keys{kind=\"payer\"} %llu\n"
                        "paycore_risk_feature_keys{kind=\"entity\"} %llu\n",
                     (unsigned long long)st->features.payers, (unsigned long long)st->features.entities);
    pc_bytes_appendf(b, "# HELP paycore_risk_feature_keys_dropped_total New keys not tracked because a key cap was reached.\n# TYPE paycore_risk_feature_keys_dropped_total counter\n"
                        "paycore_risk_feature_keys_dropped_total %llu\n",
                     (unsigned long long)st->features.dropped_total);
    pc_bytes_appendf(b, "# HELP paycore_risk_feature_keys_evicted_total Idle keys evicted from the online feature state.\n# TYPE paycore_risk_feature_keys_evicted_total counter\n"
                        "paycore_risk_feature_keys_evicted_total %llu\n",
                     (unsigned long long)st->features.evicted_total);
    pc_bytes_appendf(b, "# HELP paycore_risk_store_failed_total Risk decisions, feedback or reviews that could not be stored.\n# TYPE paycore_risk_store_failed_total counter\npaycore_risk_store_failed_total %llu\n",
                     (unsigned long long)st->store_failed_total);
}

bool api_risk_stats(risk_engine_stats_t *out) {
    if (risk_engine == NULL) return false;
    risk_engine_stats(risk_engine, out);
    return true;
}

void api_risk_reasons_each(void (*fn)(const char *code, uint64_t count, void *ctx), void *ctx) {
    if (risk_engine != NULL) risk_engine_reasons_each(risk_engine, fn, ctx);
}

char *api_risk_metrics_append(char *text, size_t *bytes) {
    if (risk_engine == NULL || text == NULL) return text;
    risk_engine_stats_t st;
    risk_engine_stats(risk_engine, &st);
    pc_bytes_t b;
    pc_bytes_adopt(&b, text, *bytes, *bytes + 1, SIZE_MAX);
    put_risk_metrics(&b, &st);
    if (pc_bytes_failed(&b)) pc_bytes_rewind(&b, *bytes); /* 'text' may have moved: the old text, whole */
    *bytes = b.bytes;
    return b.data;
}
