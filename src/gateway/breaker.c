/* gateway/breaker.c: what the gateway remembers of each channel across calls and
 * reloads: the circuit breaker, the success-rate window routing reads, recent
 * latencies and the metrics counters. One mutex per channel; every section is a few
 * counter updates, never I/O.
 *
 * Breaker: closed -> open after 'failures_consecutive' failures in a row or when
 * failures reach 'error_rate_percent' of the last 'window_calls' (with at least
 * 'calls_min' calls); open -> half-open after 'cooldown_ms' (checked lazily when
 * routing asks); half-open lets 'half_open_probes' calls through: one failure opens
 * again, all succeeding closes. A failure is an outcome the channel is to blame for
 * (retryable or unknown); declines are healthy answers. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/gw_internal.h"
#include "obs/obs.h"

/* Latency histogram bounds, microseconds (the last bucket is +Inf). */
static const uint32_t latency_bounds_us[GW_LATENCY_BUCKETS - 1] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

uint64_t gw_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------- windows */

static uint32_t oldest_slot(const gw_window_t *w) {
    return (w->head + GW_WINDOW_CALLS_MAX - w->count) % GW_WINDOW_CALLS_MAX;
}

static void drop_oldest(gw_window_t *w) {
    PC_ASSERT(w->count > 0);
    w->good -= (uint32_t)(w->ring[oldest_slot(w)] & 1u);
    w->count--;
}

void gw_window_push(gw_window_t *w, uint32_t capacity, uint64_t now_ms, bool good) {
    PC_ASSERT(capacity >= 1 && capacity <= GW_WINDOW_CALLS_MAX);
    while (w->count >= capacity) drop_oldest(w);
    w->ring[w->head] = now_ms << 1 | (good ? 1u : 0u);
    w->head = (w->head + 1) % GW_WINDOW_CALLS_MAX;
    w->count++;
    w->good += good ? 1u : 0u;
    PC_ASSERT(w->good <= w->count);
}

void gw_window_expire(gw_window_t *w, uint64_t now_ms, uint32_t max_age_ms) {
    if (max_age_ms == 0) return;
    while (w->count > 0 && (w->ring[oldest_slot(w)] >> 1) + max_age_ms < now_ms) drop_oldest(w);
}

void gw_window_reset(gw_window_t *w) {
    w->head = 0;
    w->count = 0;
    w->good = 0;
}

/* ---------------------------------------------------------------- lifetime */

gw_chstate_t *gw_chstate_new(const char *name) {
    gw_chstate_t *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    atomic_init(&s->refs, 1);
    gw_copy_str(s->name, sizeof s->name, name);
    pthread_mutex_init(&s->mutex, NULL);
    s->breaker = GW_BREAKER_CLOSED;
    s->breaker_since_ms = gw_now_ms();
    return s;
}

void gw_chstate_ref(gw_chstate_t *s) { atomic_fetch_add(&s->refs, 1); }

void gw_chstate_unref(gw_chstate_t *s) {
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_destroy(&s->mutex);
    free(s);
}

/* ---------------------------------------------------------------- breaker */

/* Caller holds the mutex. */
static void transition(gw_chstate_t *s, gw_breaker_state to, uint64_t now_ms) {
    s->breaker = to;
    s->breaker_since_ms = now_ms;
    s->transitions[to]++;
    s->probes_in_flight = 0;
    s->probes_ok = 0;
    if (to == GW_BREAKER_CLOSED) {
        s->failures_in_row = 0;
        gw_window_reset(&s->breaker_window);
    }
}

static void breaker_tick(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, uint64_t now_ms) {
    if (s->breaker == GW_BREAKER_OPEN && now_ms >= s->breaker_since_ms + cfg->cooldown_ms) {
        transition(s, GW_BREAKER_HALF_OPEN, now_ms);
    }
}

gw_breaker_state gw_breaker_state_now(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, uint64_t now_ms) {
    pthread_mutex_lock(&s->mutex);
    breaker_tick(s, cfg, now_ms);
    gw_breaker_state state = s->breaker;
    pthread_mutex_unlock(&s->mutex);
    return state;
}

bool gw_breaker_allows(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, uint64_t now_ms) {
    pthread_mutex_lock(&s->mutex);
    breaker_tick(s, cfg, now_ms);
    bool allows = s->breaker == GW_BREAKER_CLOSED ||
                  (s->breaker == GW_BREAKER_HALF_OPEN &&
                   s->probes_in_flight + s->probes_ok < cfg->half_open_probes);
    pthread_mutex_unlock(&s->mutex);
    return allows;
}

bool gw_breaker_acquire(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, uint64_t now_ms,
                        bool *probe_out) {
    pthread_mutex_lock(&s->mutex);
    breaker_tick(s, cfg, now_ms);
    bool granted = true;
    *probe_out = false;
    if (s->breaker == GW_BREAKER_OPEN) {
        granted = false;
    } else if (s->breaker == GW_BREAKER_HALF_OPEN) {
        granted = s->probes_in_flight + s->probes_ok < cfg->half_open_probes;
        if (granted) s->probes_in_flight++;
        *probe_out = granted;
    }
    if (granted) s->in_flight++;
    pthread_mutex_unlock(&s->mutex);
    return granted;
}

void gw_chstate_begin(gw_chstate_t *s) {
    pthread_mutex_lock(&s->mutex);
    s->in_flight++;
    pthread_mutex_unlock(&s->mutex);
}

void gw_breaker_release(gw_chstate_t *s, bool probe) {
    pthread_mutex_lock(&s->mutex);
    PC_ASSERT(s->in_flight > 0);
    s->in_flight--;
    if (probe && s->breaker == GW_BREAKER_HALF_OPEN && s->probes_in_flight > 0) s->probes_in_flight--;
    pthread_mutex_unlock(&s->mutex);
}

/* One call's result into the breaker; returns the state it moved to, or -1. */
static int breaker_record(gw_chstate_t *s, const gw_breaker_cfg_t *cfg, bool probe, bool failure,
                          uint64_t now_ms) {
    if (probe) {
        if (s->breaker != GW_BREAKER_HALF_OPEN) return -1;
        if (s->probes_in_flight > 0) s->probes_in_flight--;
        if (failure) {
            transition(s, GW_BREAKER_OPEN, now_ms);
            return GW_BREAKER_OPEN;
        }
        if (++s->probes_ok < cfg->half_open_probes) return -1;
        transition(s, GW_BREAKER_CLOSED, now_ms);
        return GW_BREAKER_CLOSED;
    }
    if (s->breaker != GW_BREAKER_CLOSED) return -1; /* started before it opened */
    gw_window_push(&s->breaker_window, cfg->window_calls, now_ms, !failure);
    s->failures_in_row = failure ? s->failures_in_row + 1 : 0;
    const gw_window_t *w = &s->breaker_window;
    bool by_row = cfg->failures_consecutive > 0 && s->failures_in_row >= cfg->failures_consecutive;
    bool by_rate = cfg->error_rate_percent > 0 && w->count >= cfg->calls_min &&
                   (uint64_t)(w->count - w->good) * 100u >= (uint64_t)cfg->error_rate_percent * w->count;
    if (!failure || !(by_row || by_rate)) return -1;
    transition(s, GW_BREAKER_OPEN, now_ms);
    return GW_BREAKER_OPEN;
}

/* ---------------------------------------------------------------- recording */

static uint32_t latency_bucket(uint32_t latency_us) {
    uint32_t slot = 0;
    while (slot < GW_LATENCY_BUCKETS - 1 && latency_us > latency_bounds_us[slot]) slot++;
    return slot;
}

static int32_t code_slot(const gw_chstate_t *s, const char *code) {
    for (uint32_t i = 0; i < s->code_count; i++) {
        if (strcmp(s->code_names[i], code) == 0) return (int32_t)i;
    }
    return -1;
}

/* Each code once (a label set must be unique); the last slot is "other", for every
 * code that finds no slot of its own. */
void gw_count_code(gw_chstate_t *s, const char *code) {
    int32_t slot = code_slot(s, code);
    if (slot < 0 && s->code_count >= GW_CODE_SLOTS - 1) {
        code = "other";
        slot = code_slot(s, code);
    }
    if (slot < 0) {
        PC_ASSERT(s->code_count < GW_CODE_SLOTS);
        slot = (int32_t)s->code_count++;
        gw_copy_str(s->code_names[slot], GW_CODE_SIZE, code);
        s->code_counts[slot] = 0;
    }
    s->code_counts[slot]++;
}

static void record_latency(gw_chstate_t *s, uint32_t latency_us) {
    s->latency_us[s->latency_head] = latency_us;
    s->latency_head = (s->latency_head + 1) % GW_LATENCY_SAMPLES;
    if (s->latency_count < GW_LATENCY_SAMPLES) s->latency_count++;
    s->latency_buckets[latency_bucket(latency_us)]++;
    s->latency_us_total += latency_us;
    s->latency_calls++;
}

static bool outcome_failure(gw_outcome o) {
    return o == GW_OUTCOME_RETRYABLE || o == GW_OUTCOME_UNKNOWN;
}

static bool outcome_success(gw_outcome o) {
    return o == GW_OUTCOME_APPROVED || o == GW_OUTCOME_PENDING || o == GW_OUTCOME_CHALLENGE;
}

void gw_chstate_count_retry(gw_chstate_t *s) {
    pthread_mutex_lock(&s->mutex);
    s->retries++;
    pthread_mutex_unlock(&s->mutex);
}

/* A status inquiry: counted apart, never in the breaker or the success rate (it
 * asks about an earlier call, whose own result was recorded then). */
static void record_inquiry(gw_chstate_t *s, const gw_answer_t *answer) {
    if (answer->found > 0) s->status_found++;
    else if (answer->found == 0) s->status_not_found++;
    else s->status_failed++;
}

void gw_chstate_record(gw_chstate_t *s, const gw_config_t *config, const gw_channel_cfg_t *ch,
                       gw_op op, bool probe, const gw_answer_t *answer, uint32_t latency_us,
                       uint64_t now_ms) {
    pthread_mutex_lock(&s->mutex);
    PC_ASSERT(s->in_flight > 0);
    s->in_flight--;
    s->attempts[op]++;
    record_latency(s, latency_us);
    if (op == GW_OP_STATUS) {
        record_inquiry(s, answer);
        pthread_mutex_unlock(&s->mutex);
        return;
    }
    s->outcomes[answer->outcome]++;
    gw_count_code(s, answer->code[0] ? answer->code : "none");
    /* Hard declines say nothing of the channel (the card was bad): not in the rate. */
    if (answer->outcome != GW_OUTCOME_HARD_DECLINE) {
        if (s->sr_capacity != config->sr.window_calls) {
            gw_window_reset(&s->sr_window);
            s->sr_capacity = config->sr.window_calls;
        }
        gw_window_push(&s->sr_window, s->sr_capacity, now_ms, outcome_success(answer->outcome));
    }
    int moved = breaker_record(s, &ch->breaker, probe, outcome_failure(answer->outcome), now_ms);
    pthread_mutex_unlock(&s->mutex);
    if (moved >= 0) {
        obs_logf(moved == GW_BREAKER_OPEN ? OBS_LEVEL_WARN : OBS_LEVEL_INFO,
                 "gateway: channel %s breaker %s (last answer %s)", ch->name,
                 gw_breaker_state_name((gw_breaker_state)moved), answer->code);
    }
}

int32_t gw_success_rate(gw_chstate_t *s, const gw_sr_cfg_t *cfg, uint64_t now_ms) {
    pthread_mutex_lock(&s->mutex);
    if (s->sr_capacity != cfg->window_calls) {
        gw_window_reset(&s->sr_window);
        s->sr_capacity = cfg->window_calls;
    }
    gw_window_expire(&s->sr_window, now_ms, cfg->window_ms);
    int32_t rate = -1;
    if (s->sr_window.count >= cfg->calls_min) {
        rate = (int32_t)((uint64_t)s->sr_window.good * 1000u / s->sr_window.count);
    }
    pthread_mutex_unlock(&s->mutex);
    return rate;
}
