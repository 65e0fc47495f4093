/* gateway/route.c: the routing decision for one operation. First eligibility (the
 * kind can do the operation; method, currency, country and amount range fit; the
 * breaker is not open), then the strategy orders the eligible channels, then the
 * fallback list is appended. The engine tries 'order' front to back, moving on only
 * when that is safe (gateway.h). Follow-ups (capture, void, refund, challenge, status)
 * go to the channel that holds the original: strategy "direct".
 * Pure computation over the config and the channels' counters: no I/O, no allocation. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "gateway/gw_internal.h"

uint64_t gw_rng_next(uint64_t *state) {
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static bool in_list(const char *value, const char *list, uint32_t count, size_t stride) {
    if (count == 0) return true; /* no list: any */
    for (uint32_t i = 0; i < count; i++) {
        if (strcmp(list + i * stride, value) == 0) return true;
    }
    return false;
}

static gw_why eligibility(const gw_channel_cfg_t *ch, const gw_request_t *req, uint64_t now_ms) {
    const gw_connector_t *connector = gw_connector(ch->kind);
    if (gw_connector_op(connector, req->op) == NULL) return GW_WHY_OP;
    if (!in_list(req->method, ch->methods[0], ch->method_count, GW_METHOD_SIZE)) return GW_WHY_METHOD;
    if (!connector->accepts(req)) return GW_WHY_METHOD; /* e.g. a card payment at a bank */
    if (!in_list(req->currency, ch->currencies[0], ch->currency_count, 4)) return GW_WHY_CURRENCY;
    if (req->country[0] != '\0' && !in_list(req->country, ch->countries[0], ch->country_count, 3)) {
        return GW_WHY_COUNTRY;
    }
    if (ch->country_count > 0 && req->country[0] == '\0') return GW_WHY_COUNTRY;
    if (req->amount_minor < ch->amount_min_minor || req->amount_minor > ch->amount_max_minor) {
        return GW_WHY_AMOUNT;
    }
    if (!gw_breaker_allows(ch->state, &ch->breaker, now_ms)) return GW_WHY_BREAKER_OPEN;
    return GW_WHY_ELIGIBLE;
}

static bool ordered(const gw_decision_t *d, uint32_t index) {
    for (uint32_t i = 0; i < d->order_count; i++) {
        if (d->order[i] == index) return true;
    }
    return false;
}

static void order_add(gw_decision_t *d, uint32_t index) {
    if (d->candidates[index].why != GW_WHY_ELIGIBLE || ordered(d, index)) return;
    d->order[d->order_count++] = (uint8_t)index;
}

/* Priority: the configured ranking, then every other eligible channel in file order. */
static void strategy_priority(const gw_config_t *cfg, gw_decision_t *d) {
    for (uint32_t i = 0; i < cfg->priority_count; i++) order_add(d, cfg->priority[i]);
    for (uint32_t i = 0; i < cfg->channel_count; i++) order_add(d, i);
    if (d->order_count > 0) {
        char count[PC_INT_TEXT_SIZE]; /* "priority: %s is the first available of %u", unformatted */
        pc_u64_text(count, d->order_count);
        const char *const parts[] = {"priority: ", d->candidates[d->order[0]].name, " is the first available of ",
                                     count};
        pc_str_join(d->why, sizeof d->why, parts, 4);
    }
}

/* Appends eligible channels by a descending score, stable in file order. */
static void order_by_score(const gw_config_t *cfg, gw_decision_t *d, const int64_t *score,
                           int64_t score_min) {
    for (;;) {
        int64_t best_score = score_min - 1;
        int32_t best = -1;
        for (uint32_t i = 0; i < cfg->channel_count; i++) {
            if (d->candidates[i].why != GW_WHY_ELIGIBLE || ordered(d, i)) continue;
            if (score[i] >= score_min && score[i] > best_score) {
                best_score = score[i];
                best = (int32_t)i;
            }
        }
        if (best < 0) return;
        order_add(d, (uint32_t)best);
    }
}

/* Weighted: one draw over the eligible channels' weights picks the first; the rest
 * follow by weight. A channel of weight 0 gets no traffic of its own. */
static void strategy_weighted(const gw_config_t *cfg, gw_decision_t *d, uint64_t *rng) {
    uint64_t total = 0;
    int64_t score[GW_CHANNELS_MAX];
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        score[i] = cfg->weights[i];
        if (d->candidates[i].why == GW_WHY_ELIGIBLE) total += cfg->weights[i];
    }
    if (total == 0) return;
    uint64_t draw = gw_rng_next(rng) % total;
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        if (d->candidates[i].why != GW_WHY_ELIGIBLE || cfg->weights[i] == 0) continue;
        if (draw < cfg->weights[i]) {
            order_add(d, i);
            snprintf(d->why, sizeof d->why, "weighted: %s (%u of %llu)", d->candidates[i].name,
                     cfg->weights[i], (unsigned long long)total);
            break;
        }
        draw -= cfg->weights[i];
    }
    order_by_score(cfg, d, score, 1);
}

/* Picks uniformly among eligible channels whose score equals 'score_want'. */
static int32_t pick_among(const gw_config_t *cfg, const gw_decision_t *d, const int64_t *score,
                          int64_t score_want, bool any, uint64_t *rng) {
    uint32_t ties[GW_CHANNELS_MAX], tie_count = 0;
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        if (d->candidates[i].why == GW_WHY_ELIGIBLE && (any || score[i] == score_want)) {
            ties[tie_count++] = i;
        }
    }
    if (tie_count == 0) return -1;
    return (int32_t)ties[gw_rng_next(rng) % tie_count];
}

/* Success rate: a share explores (uniform pick, so a recovered channel is noticed);
 * otherwise the best rate among channels at or above the elimination threshold (too
 * few calls counts as 100%: a new channel is tried). Equal rates split at random. */
static void strategy_success_rate(const gw_config_t *cfg, gw_decision_t *d, uint64_t now_ms,
                                  uint64_t *rng) {
    int64_t score[GW_CHANNELS_MAX];
    int64_t best = -1;
    int64_t threshold = (int64_t)cfg->sr.elimination_percent * 10;
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        int32_t rate = -1;
        if (d->candidates[i].why == GW_WHY_ELIGIBLE) rate = gw_success_rate(cfg->channels[i].state, &cfg->sr, now_ms);
        d->candidates[i].success_rate_permille = rate;
        score[i] = rate < 0 ? 1000 : rate;
        if (d->candidates[i].why == GW_WHY_ELIGIBLE && score[i] > best) best = score[i];
    }
    if (best < 0) return;
    bool explore = gw_rng_next(rng) % 100 < cfg->sr.exploration_percent;
    int32_t first = pick_among(cfg, d, score, best, explore, rng);
    order_add(d, (uint32_t)first);
    const char *name = d->candidates[first].name;
    if (explore) {
        snprintf(d->why, sizeof d->why, "success_rate: exploring %s (%u%% share)", name,
                 cfg->sr.exploration_percent);
    } else if (best >= threshold) {
        snprintf(d->why, sizeof d->why, "success_rate: %s best at %lld permille (elimination below %lld)",
                 name, (long long)best, (long long)threshold);
    } else {
        snprintf(d->why, sizeof d->why, "success_rate: every channel below %lld permille; best %s at %lld",
                 (long long)threshold, name, (long long)best);
    }
    order_by_score(cfg, d, score, threshold);
    order_by_score(cfg, d, score, 0); /* eliminated channels last: retries only */
}

static void candidates_fill(const gw_config_t *cfg, const gw_request_t *req, uint64_t now_ms,
                            gw_decision_t *d) {
    d->candidate_count = cfg->channel_count;
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        gw_candidate_t *c = &d->candidates[i];
        gw_copy_str(c->name, sizeof c->name, cfg->channels[i].name);
        c->why = eligibility(&cfg->channels[i], req, now_ms);
        c->weight = cfg->weights[i];
        c->success_rate_permille = -1;
        c->fallback = false;
    }
    for (uint32_t i = 0; i < cfg->fallback_count; i++) d->candidates[cfg->fallback[i]].fallback = true;
}

/* No channel: say why each one is out. */
static void explain_none(gw_decision_t *d) {
    size_t used = (size_t)snprintf(d->why, sizeof d->why, "no channel:");
    for (uint32_t i = 0; i < d->candidate_count && used < sizeof d->why; i++) {
        used += (size_t)snprintf(d->why + used, sizeof d->why - used, " %s %s", d->candidates[i].name,
                                 gw_why_name(d->candidates[i].why));
    }
}

static pc_status route_direct(const gw_config_t *cfg, const gw_request_t *req, gw_decision_t *d) {
    d->strategy = GW_STRATEGY_DIRECT;
    int32_t index = gw_config_find(cfg, req->channel);
    if (index < 0) {
        snprintf(d->why, sizeof d->why, "direct: no channel named %s", req->channel);
        return PC_GATEWAY_CHANNEL_UNKNOWN;
    }
    if (gw_connector_op(gw_connector(cfg->channels[index].kind), req->op) == NULL) {
        snprintf(d->why, sizeof d->why, "direct: a %s channel cannot %s",
                 gw_kind_name(cfg->channels[index].kind), gw_op_name(req->op));
        return PC_GATEWAY_OP_UNSUPPORTED;
    }
    /* The original lives there: eligibility and breaker do not apply. */
    d->candidates[index].why = GW_WHY_ELIGIBLE;
    d->order[d->order_count++] = (uint8_t)index;
    snprintf(d->why, sizeof d->why, "direct: %s holds the original", req->channel);
    return PC_OK;
}

pc_status gw_route_decide(const gw_config_t *cfg, const gw_request_t *req, uint64_t now_ms,
                          uint64_t *rng, gw_decision_t *d) {
    memset(d, 0, sizeof *d);
    d->config_version = cfg->version;
    candidates_fill(cfg, req, now_ms, d);
    pc_status status = PC_OK;
    if (req->op != GW_OP_AUTHORIZE && req->op != GW_OP_PAYOUT) {
        status = route_direct(cfg, req, d);
    } else {
        d->strategy = cfg->strategy;
        if (cfg->strategy == GW_STRATEGY_PRIORITY) strategy_priority(cfg, d);
        else if (cfg->strategy == GW_STRATEGY_WEIGHTED) strategy_weighted(cfg, d, rng);
        else strategy_success_rate(cfg, d, now_ms, rng);
        bool strategy_empty = d->order_count == 0;
        for (uint32_t i = 0; i < cfg->fallback_count; i++) order_add(d, cfg->fallback[i]);
        if (strategy_empty && d->order_count > 0) {
            snprintf(d->why, sizeof d->why, "fallback: the strategy had no channel; %s first",
                     d->candidates[d->order[0]].name);
        }
        if (d->order_count == 0) {
            explain_none(d);
            status = PC_GATEWAY_NO_CHANNEL;
        }
    }
    for (uint32_t i = 0; i < d->candidate_count; i++) {
        if (d->candidates[i].why == GW_WHY_ELIGIBLE && !ordered(d, i)) d->candidates[i].why = GW_WHY_NOT_ROUTED;
    }
    if (d->order_count > 0) gw_copy_str(d->chosen, sizeof d->chosen, d->candidates[d->order[0]].name);
    return status;
}
