/* gateway/present.c: what the gateway shows: decisions and results as JSON (stored
 * with payments), GET /v1/channels, and the Prometheus series per channel. Label
 * values are channel names ([A-Za-z0-9_-]) and codes from a bounded set (the
 * channel's table, transport codes, "other"), so they need no escaping and stay few. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "gateway/gw_internal.h"

/* ---------------------------------------------------------------- JSON */

json_t *gw_decision_json(const gw_decision_t *d) {
    json_t *candidates = json_array();
    json_t *order = json_array();
    for (uint32_t i = 0; i < d->candidate_count; i++) {
        const gw_candidate_t *c = &d->candidates[i];
        json_t *item = json_pack("{s:s,s:b,s:s,s:b}", "name", c->name, "eligible",
                                 c->why == GW_WHY_ELIGIBLE || c->why == GW_WHY_NOT_ROUTED, "why",
                                 gw_why_name(c->why), "fallback", c->fallback);
        if (d->strategy == GW_STRATEGY_WEIGHTED) json_object_set_new(item, "weight", json_integer(c->weight));
        if (d->strategy == GW_STRATEGY_SUCCESS_RATE) {
            json_object_set_new(item, "success_rate_permille",
                                c->success_rate_permille < 0 ? json_null() : json_integer(c->success_rate_permille));
        }
        json_array_append_new(candidates, item);
    }
    for (uint32_t i = 0; i < d->order_count; i++) {
        json_array_append_new(order, json_string(d->candidates[d->order[i]].name));
    }
    return json_pack("{s:s,s:s,s:s,s:I,s:o,s:o}", "strategy", gw_strategy_name(d->strategy), "chosen",
                     d->chosen, "why", d->why, "config_version", (json_int_t)d->config_version,
                     "candidates", candidates, "order", order);
}

static json_t *attempt_json(const gw_attempt_t *a) {
    return json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:i}", "number", (int)a->number, "channel",
                     a->channel, "kind", gw_kind_name(a->kind), "op", gw_op_name(a->op),
                     "idempotency_key", a->idempotency_key, "outcome", gw_outcome_name(a->outcome),
                     "response_code", a->response_code, "status_inquired", a->status_inquired,
                     "status_found", a->status_found, "latency_us", (int)a->latency_us);
}

json_t *gw_result_json(const gw_result_t *r) {
    json_t *attempts = json_array();
    for (uint32_t i = 0; i < r->attempt_count; i++) json_array_append_new(attempts, attempt_json(&r->attempts[i]));
    json_t *out = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:o}", "status", pc_status_code(r->status),
                            "outcome", gw_outcome_name(r->outcome), "detail", r->detail, "channel",
                            r->channel, "channel_ref", r->channel_ref, "response_code", r->response_code,
                            "idempotency_key", r->idempotency_key, "amount_minor",
                            (json_int_t)r->amount_minor, "decision", gw_decision_json(&r->decision),
                            "attempts", attempts);
    if (r->message[0]) json_object_set_new(out, "message", json_string(r->message));
    if (r->approval_code[0]) json_object_set_new(out, "approval_code", json_string(r->approval_code));
    if (r->challenge_id[0]) json_object_set_new(out, "challenge_id", json_string(r->challenge_id));
    if (r->total_minor) json_object_set_new(out, "total_minor", json_integer(r->total_minor));
    if (r->decision.strategy == GW_STRATEGY_DIRECT && r->attempt_count > 0 &&
        r->attempts[0].op == GW_OP_STATUS) {
        json_object_set_new(out, "status_found", json_boolean(r->status_found));
    }
    return out;
}

/* ---------------------------------------------------------------- GET /v1/channels */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* p50/p99 of the recent latencies, milliseconds; caller holds the mutex. */
static json_t *latency_json(const gw_chstate_t *s) {
    if (s->latency_count == 0) return json_null();
    uint32_t sorted[GW_LATENCY_SAMPLES];
    memcpy(sorted, s->latency_us, s->latency_count * sizeof sorted[0]);
    qsort(sorted, s->latency_count, sizeof sorted[0], cmp_u32);
    uint32_t p50 = sorted[(s->latency_count - 1) * 50 / 100];
    uint32_t p99 = sorted[(s->latency_count - 1) * 99 / 100];
    return json_pack("{s:f,s:f,s:i}", "p50", p50 / 1000.0, "p99", p99 / 1000.0, "samples",
                     (int)s->latency_count);
}

/* The URL without any user:password@ part. */
static json_t *url_json(const char *url) {
    char shown[GW_URL_BYTES_MAX + 1];
    gw_copy_str(shown, sizeof shown, url);
    char *host = strstr(shown, "://");
    char *at = host ? strchr(host + 3, '@') : NULL;
    char *slash = host ? strchr(host + 3, '/') : NULL;
    if (at != NULL && (slash == NULL || at < slash)) memmove(host + 3, at + 1, strlen(at + 1) + 1);
    return json_string(shown);
}

static json_t *eligibility_json(const gw_channel_cfg_t *ch) {
    json_t *methods = json_array(), *currencies = json_array(), *countries = json_array();
    for (uint32_t i = 0; i < ch->method_count; i++) json_array_append_new(methods, json_string(ch->methods[i]));
    for (uint32_t i = 0; i < ch->currency_count; i++) json_array_append_new(currencies, json_string(ch->currencies[i]));
    for (uint32_t i = 0; i < ch->country_count; i++) json_array_append_new(countries, json_string(ch->countries[i]));
    return json_pack("{s:o,s:o,s:o,s:I,s:I}", "methods", methods, "currencies", currencies, "countries",
                     countries, "amount_min_minor", (json_int_t)ch->amount_min_minor, "amount_max_minor",
                     (json_int_t)ch->amount_max_minor);
}

static json_t *channel_json(const gw_config_t *cfg, uint32_t index, uint64_t now_ms) {
    const gw_channel_cfg_t *ch = &cfg->channels[index];
    gw_chstate_t *s = ch->state;
    gw_breaker_state state = gw_breaker_state_now(s, &ch->breaker, now_ms);
    int32_t rate = gw_success_rate(s, &cfg->sr, now_ms);
    pthread_mutex_lock(&s->mutex);
    uint64_t attempts = 0;
    for (int op = 0; op < GW_OP_COUNT; op++) attempts += s->attempts[op];
    json_t *breaker = json_pack("{s:s,s:I,s:i,s:i,s:i}", "state", gw_breaker_state_name(state),
                                "since_ms", (json_int_t)(now_ms - s->breaker_since_ms),
                                "failures_in_row", (int)s->failures_in_row, "window_calls",
                                (int)s->breaker_window.count, "window_failures",
                                (int)(s->breaker_window.count - s->breaker_window.good));
    json_t *out = json_pack("{s:s,s:s,s:o,s:o,s:o,s:i,s:o,s:i,s:I,s:I,s:o}", "name", ch->name, "kind",
                            gw_kind_name(ch->kind), "url", url_json(ch->url), "breaker", breaker,
                            "success_rate", rate < 0 ? json_null() : json_real(rate / 1000.0),
                            "success_rate_calls", (int)s->sr_window.count, "latency_ms",
                            latency_json(s), "in_flight", (int)s->in_flight, "attempts",
                            (json_int_t)attempts, "retries", (json_int_t)s->retries, "eligibility",
                            eligibility_json(ch));
    pthread_mutex_unlock(&s->mutex);
    if (cfg->strategy == GW_STRATEGY_WEIGHTED) json_object_set_new(out, "weight", json_integer(cfg->weights[index]));
    json_object_set_new(out, "partial_captures", json_boolean(ch->partial_captures));
    json_object_set_new(out, "authorization_window_s",
                        ch->authorization_window_s ? json_integer(ch->authorization_window_s) : json_null());
    return out;
}

static json_t *names_json(const gw_config_t *cfg, const uint8_t *list, uint32_t count) {
    json_t *names = json_array();
    for (uint32_t i = 0; i < count; i++) json_array_append_new(names, json_string(cfg->channels[list[i]].name));
    return names;
}

json_t *gw_channels_json(gw_t *gw) {
    pthread_mutex_lock(&gw->config_mutex);
    gw_config_t *cfg = gw->config;
    gw_config_ref(cfg);
    pthread_mutex_unlock(&gw->config_mutex);
    uint64_t now_ms = gw_now_ms();
    json_t *channels = json_array();
    for (uint32_t i = 0; i < cfg->channel_count; i++) json_array_append_new(channels, channel_json(cfg, i, now_ms));
    json_t *routing = json_pack("{s:s,s:o,s:o,s:i}", "strategy", gw_strategy_name(cfg->strategy), "priority",
                                names_json(cfg, cfg->priority, cfg->priority_count), "fallback",
                                names_json(cfg, cfg->fallback, cfg->fallback_count), "attempts_max",
                                (int)cfg->attempts_max);
    json_t *out = json_pack("{s:o,s:o,s:{s:I,s:I,s:I}}", "channels", channels, "routing", routing, "config",
                            "version", (json_int_t)cfg->version, "reloads",
                            (json_int_t)atomic_load(&gw->reloads_ok), "reloads_refused",
                            (json_int_t)atomic_load(&gw->reloads_refused));
    gw_config_unref(cfg);
    return out;
}

/* ---------------------------------------------------------------- /metrics */

static const char *const latency_le[GW_LATENCY_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"};

typedef enum {
    SERIES_ATTEMPTS, SERIES_OUTCOMES, SERIES_RESPONSES, SERIES_LATENCY, SERIES_BREAKER,
    SERIES_TRANSITIONS, SERIES_RETRIES, SERIES_INQUIRIES, SERIES_IN_FLIGHT, SERIES_COUNT
} series;

static const char *const series_head[SERIES_COUNT] = {
    "# HELP paycore_gateway_attempts_total Channel calls by channel and operation (status inquiries as op=\"status\").\n"
    "# TYPE paycore_gateway_attempts_total counter\n",
    "# HELP paycore_gateway_outcomes_total Channel answers by channel and outcome.\n"
    "# TYPE paycore_gateway_outcomes_total counter\n",
    "# HELP paycore_gateway_responses_total Channel answers by channel and response code (the channel's own code, or timeout, connect_failed, connection_closed, http_NNN, invalid_json, bad_answer, wrong_amount, unmapped_code, other).\n"
    "# TYPE paycore_gateway_responses_total counter\n",
    "# HELP paycore_gateway_latency_seconds Channel call latency.\n"
    "# TYPE paycore_gateway_latency_seconds histogram\n",
    "# HELP paycore_gateway_breaker_state 1 for the state each channel's circuit breaker is in, 0 for the others.\n"
    "# TYPE paycore_gateway_breaker_state gauge\n",
    "# HELP paycore_gateway_breaker_transitions_total Circuit breaker transitions by channel and the state entered.\n"
    "# TYPE paycore_gateway_breaker_transitions_total counter\n",
    "# HELP paycore_gateway_retries_total Attempts that retried another channel's not-applied call, by the channel retried on.\n"
    "# TYPE paycore_gateway_retries_total counter\n",
    "# HELP paycore_gateway_status_inquiries_total Status inquiries after an unknown outcome, by channel and result.\n"
    "# TYPE paycore_gateway_status_inquiries_total counter\n",
    "# HELP paycore_gateway_in_flight Channel calls running now.\n"
    "# TYPE paycore_gateway_in_flight gauge\n",
};

/* One channel's lines of one series; caller holds the channel's mutex. */
static void put_series(pc_bytes_t *b, series which, const char *name, const gw_chstate_t *s) {
    switch (which) {
    case SERIES_ATTEMPTS:
        for (int op = 0; op < GW_OP_COUNT; op++)
            pc_bytes_appendf(b, "paycore_gateway_attempts_total{channel=\"%s\",op=\"%s\"} %llu\n", name,
                             gw_op_name((gw_op)op), (unsigned long long)s->attempts[op]);
        break;
    case SERIES_OUTCOMES:
        for (int o = 0; o < GW_OUTCOME_COUNT; o++)
            pc_bytes_appendf(b, "paycore_gateway_outcomes_total{channel=\"%s\",outcome=\"%s\"} %llu\n", name,
                             gw_outcome_name((gw_outcome)o), (unsigned long long)s->outcomes[o]);
        break;
    case SERIES_RESPONSES:
        for (uint32_t i = 0; i < s->code_count; i++)
            pc_bytes_appendf(b, "paycore_gateway_responses_total{channel=\"%s\",code=\"%s\"} %llu\n", name,
                             s->code_names[i], (unsigned long long)s->code_counts[i]);
        break;
    case SERIES_LATENCY: {
        uint64_t cumulative = 0;
        for (int i = 0; i < GW_LATENCY_BUCKETS; i++) {
            cumulative += s->latency_buckets[i];
            pc_bytes_appendf(b, "paycore_gateway_latency_seconds_bucket{channel=\"%s\",le=\"%s\"} %llu\n", name,
                             latency_le[i], (unsigned long long)cumulative);
        }
        pc_bytes_appendf(b, "paycore_gateway_latency_seconds_sum{channel=\"%s\"} %.6f\n", name,
                         s->latency_us_total / 1e6);
        pc_bytes_appendf(b, "paycore_gateway_latency_seconds_count{channel=\"%s\"} %llu\n", name,
                         (unsigned long long)s->latency_calls);
        break;
    }
    case SERIES_BREAKER:
        for (int st = 0; st < GW_BREAKER_STATE_COUNT; st++)
            pc_bytes_appendf(b, "paycore_gateway_breaker_state{channel=\"%s\",state=\"%s\"} %d\n", name,
                             gw_breaker_state_name((gw_breaker_state)st), s->breaker == (gw_breaker_state)st);
        break;
    case SERIES_TRANSITIONS:
        for (int st = 0; st < GW_BREAKER_STATE_COUNT; st++)
            pc_bytes_appendf(b, "paycore_gateway_breaker_transitions_total{channel=\"%s\",to=\"%s\"} %llu\n", name,
                             gw_breaker_state_name((gw_breaker_state)st), (unsigned long long)s->transitions[st]);
        break;
    case SERIES_RETRIES:
        pc_bytes_appendf(b, "paycore_gateway_retries_total{channel=\"%s\"} %llu\n", name,
                         (unsigned long long)s->retries);
        break;
    case SERIES_INQUIRIES:
        pc_bytes_appendf(b, "paycore_gateway_status_inquiries_total{channel=\"%s\",result=\"found\"} %llu\n", name,
                         (unsigned long long)s->status_found);
        pc_bytes_appendf(b, "paycore_gateway_status_inquiries_total{channel=\"%s\",result=\"not_found\"} %llu\n", name,
                         (unsigned long long)s->status_not_found);
        pc_bytes_appendf(b, "paycore_gateway_status_inquiries_total{channel=\"%s\",result=\"failed\"} %llu\n", name,
                         (unsigned long long)s->status_failed);
        break;
    case SERIES_IN_FLIGHT:
        pc_bytes_appendf(b, "paycore_gateway_in_flight{channel=\"%s\"} %u\n", name, s->in_flight);
        break;
    default:
        break;
    }
}

char *gw_metrics_append(gw_t *gw, char *text, size_t *bytes) {
    if (text == NULL) return NULL;
    pc_bytes_t b;
    pc_bytes_adopt(&b, text, *bytes, *bytes + 1, SIZE_MAX);
    pthread_mutex_lock(&gw->config_mutex);
    gw_config_t *cfg = gw->config;
    gw_config_ref(cfg);
    pthread_mutex_unlock(&gw->config_mutex);
    uint64_t now_ms = gw_now_ms();
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        (void)gw_breaker_state_now(cfg->channels[i].state, &cfg->channels[i].breaker, now_ms);
    }
    for (int which = 0; which < SERIES_COUNT; which++) {
        pc_bytes_append_str(&b, series_head[which]);
        for (uint32_t i = 0; i < cfg->channel_count; i++) {
            gw_chstate_t *s = cfg->channels[i].state;
            pthread_mutex_lock(&s->mutex);
            put_series(&b, (series)which, cfg->channels[i].name, s);
            pthread_mutex_unlock(&s->mutex);
        }
    }
    pc_bytes_appendf(&b, "# HELP paycore_gateway_config_reloads_total Channel configuration reloads by result.\n"
                         "# TYPE paycore_gateway_config_reloads_total counter\n"
                         "paycore_gateway_config_reloads_total{result=\"ok\"} %llu\n"
                         "paycore_gateway_config_reloads_total{result=\"refused\"} %llu\n",
                     (unsigned long long)atomic_load(&gw->reloads_ok),
                     (unsigned long long)atomic_load(&gw->reloads_refused));
    gw_config_unref(cfg);
    if (pc_bytes_failed(&b)) pc_bytes_rewind(&b, *bytes); /* the old text is still whole */
    *bytes = b.bytes;
    return b.data;
}
