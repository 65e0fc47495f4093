/* api/ops_stats.c: GET /v1/stats, the compact JSON the dashboard polls. Request
 * figures come from obs/stats.c (per second, per key); writer and risk counters are
 * sampled once a second by a thread of this file into a ring, so that rates over the
 * last seconds cost nothing to compute when asked.
 *
 * Who sees what: a merchant key gets its own requests, latency and transfers only;
 * admin and read_only keys (read_only may GET what an admin may GET) get everything.
 * Sections are rows of `stats_sections`: adding a panel's data is one row. A merchant
 * key's payments section holds its merchant's payments only (payments/stats.c keeps
 * them per merchant); the outbox is system-wide. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_gateway.h"
#include "api/api_internal.h"
#include "api/api_ops.h"
#include "api/api_payments.h"
#include "api/api_risk.h"
#include "core/core.h"
#include "obs/obs.h"

#define WINDOW_S_DEFAULT 10
#define HISTORY_S_DEFAULT 60
#define HISTORY_S_MAX OBS_STATS_HISTORY_S_MAX
#define TOP_REASONS_MAX 5

/* ---------------------------------------------------------------- the sampler */

typedef struct {
    uint64_t second;            /* 0: never sampled */
    uint64_t transfers;         /* committed, cumulative */
    uint64_t accounts;
    uint64_t batches;
    uint64_t batches_failed;
    uint32_t queue_events;      /* at the sample */
    bool risk;                  /* a risk engine runs */
    uint64_t decisions[3];      /* approve, review, decline: cumulative */
    bool payments;              /* the payments runtime runs */
    uint64_t payments_created;  /* cumulative, as the next three */
    uint64_t payments_outcomes[3]; /* authorized, to review, declined or failed */
    bool outbox;                /* the events runtime runs */
    uint64_t outbox_delivered;  /* every destination, cumulative */
    uint64_t outbox_lag_ms_max; /* the worst destination, at the sample */
} ops_sample;

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool stop;
    bool started;
    pthread_t thread;
    api_server_t *server;
    ops_sample ring[OBS_STATS_SECONDS];
} sampler = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* The writer's counters, or false while no writer runs (starting, draining). */
static bool writer_read(api_server_t *server, writer_stats_t *out) {
    bool present = false;
    pthread_rwlock_rdlock(&server->writer_lock);
    if (server->writer != NULL) {
        writer_stats(server->writer, out);
        present = true;
    }
    pthread_rwlock_unlock(&server->writer_lock);
    return present;
}

/* ---- the payments figures: read only while the payments runtime surely exists ----
 * serve stops operations (api_ops_stop), then payments (which frees them) while the
 * server still answers: a /metrics or /v1/stats request then must not touch them. */
static struct {
    pthread_rwlock_t lock;
    bool readable;
} payments_view = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static void payments_view_set(bool readable) {
    pthread_rwlock_wrlock(&payments_view.lock);
    payments_view.readable = readable;
    pthread_rwlock_unlock(&payments_view.lock);
}

/* The payments figures into 'out'; false when no payments runtime runs (or it stops). */
static bool payments_stats_read(pay_stats_t *out) {
    bool present = false;
    pthread_rwlock_rdlock(&payments_view.lock);
    pay_t *pay = payments_view.readable ? api_payments() : NULL;
    if (pay != NULL) {
        pay_stats(pay, out);
        present = true;
    }
    pthread_rwlock_unlock(&payments_view.lock);
    return present;
}

char *api_ops_payments_metrics_append(char *text, size_t *bytes) {
    pthread_rwlock_rdlock(&payments_view.lock);
    if (payments_view.readable) text = pay_metrics_append(api_payments(), text, bytes);
    pthread_rwlock_unlock(&payments_view.lock);
    return text;
}

/* The figures of the merchant 'key_id' is bound to; false when no payments runtime
 * runs, the key is bound to no merchant, or the merchant's figures are not kept. */
static bool merchant_stats_read(const char *key_id, pay_merchant_stats_t *out) {
    bool present = false;
    pthread_rwlock_rdlock(&payments_view.lock);
    pay_t *pay = payments_view.readable ? api_payments() : NULL;
    if (pay != NULL) {
        char merchant_id[PC_ID_SIZE];
        pay_key_merchant(pay, key_id, merchant_id);
        if (merchant_id[0] != '\0') {
            pay_merchant_stats(pay, merchant_id, out);
            present = out->known;
        }
    }
    pthread_rwlock_unlock(&payments_view.lock);
    return present;
}

static void sample_payments(ops_sample *sample) {
    pay_stats_t *stats = malloc(sizeof(*stats));
    if (stats == NULL) return;
    if (!payments_stats_read(stats)) {
        free(stats);
        return;
    }
    sample->payments = true;
    sample->payments_created = stats->created;
    pay_stats_outcomes(stats, sample->payments_outcomes);
    free(stats);
}

static void sample_outbox(ops_sample *sample, events_t *events) {
    if (events == NULL) return;
    events_destination_stats_t *all = malloc(sizeof(*all) * (EVENTS_ENDPOINTS_MAX + 1));
    if (all == NULL) return;
    uint32_t count = events_destinations_stats(events, all, EVENTS_ENDPOINTS_MAX + 1, NULL);
    sample->outbox = true;
    for (uint32_t i = 0; i < count; i++) {
        sample->outbox_delivered += all[i].delivered;
        if (all[i].lag_ms > sample->outbox_lag_ms_max) sample->outbox_lag_ms_max = all[i].lag_ms;
    }
    free(all);
}

static void sample_take(api_server_t *server, uint64_t second) {
    ops_sample sample = {.second = second};
    writer_stats_t stats;
    if (writer_read(server, &stats)) {
        sample.transfers = stats.transfers_committed;
        sample.accounts = stats.accounts_committed;
        sample.batches = stats.batches_committed;
        sample.batches_failed = stats.batches_failed;
        sample.queue_events = stats.queue_events;
    }
    risk_engine_stats_t risk;
    if (api_risk_stats(&risk)) {
        sample.risk = true;
        memcpy(sample.decisions, risk.decisions, sizeof sample.decisions);
    }
    sample_payments(&sample);
    sample_outbox(&sample, server->events);
    pthread_mutex_lock(&sampler.mutex);
    ops_sample *slot = &sampler.ring[second % OBS_STATS_SECONDS];
    if (slot->second != second) *slot = sample; /* the first reading of a second stays */
    pthread_mutex_unlock(&sampler.mutex);
}

/* A /v1/stats request early in a second may come before the sampler thread's reading
 * of it: it takes the reading itself, so every answer within one second uses the same
 * samples (the sampler thread then keeps it). */
static void sample_ensure(uint64_t second) {
    pthread_mutex_lock(&sampler.mutex);
    bool present = sampler.ring[second % OBS_STATS_SECONDS].second == second;
    api_server_t *server = sampler.server; /* NULL while no sampler runs */
    pthread_mutex_unlock(&sampler.mutex);
    if (!present && server != NULL) sample_take(server, second);
}

/* Samples at the start of every wall-clock second, so that a sample's second is the
 * one /v1/stats and obs_stats use for the same moment. */
static void *sampler_run(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-stats"); /* per-thread CPU in top, perf */
    (void)arg;
    pthread_mutex_lock(&sampler.mutex);
    while (!sampler.stop) {
        uint64_t now_ns = pc_wall_ns();
        uint64_t second = now_ns / 1000000000ull;
        api_server_t *server = sampler.server;
        pthread_mutex_unlock(&sampler.mutex);
        sample_take(server, second);
        pthread_mutex_lock(&sampler.mutex);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec = (time_t)(second + 1);
        until.tv_nsec = 5 * 1000 * 1000; /* just past the boundary */
        while (!sampler.stop && (uint64_t)(pc_wall_ns() / 1000000000ull) <= second) {
            pthread_cond_timedwait(&sampler.wake, &sampler.mutex, &until);
        }
    }
    pthread_mutex_unlock(&sampler.mutex);
    return NULL;
}

pc_status api_ops_sampler_start(api_server_t *server) {
    pthread_mutex_lock(&sampler.mutex);
    sampler.server = server;
    sampler.stop = false;
    memset(sampler.ring, 0, sizeof sampler.ring);
    pthread_mutex_unlock(&sampler.mutex);
    if (pthread_create(&sampler.thread, NULL, sampler_run, NULL) != 0) {
        pthread_mutex_lock(&sampler.mutex);
        sampler.server = NULL;
        pthread_mutex_unlock(&sampler.mutex);
        return PC_INTERNAL;
    }
    sampler.started = true;
    return PC_OK;
}

void api_ops_sampler_stop(void) {
    if (!sampler.started) return;
    pthread_mutex_lock(&sampler.mutex);
    sampler.stop = true;
    pthread_cond_signal(&sampler.wake);
    pthread_mutex_unlock(&sampler.mutex);
    pthread_join(sampler.thread, NULL);
    sampler.started = false;
    pthread_mutex_lock(&sampler.mutex);
    sampler.server = NULL; /* requests still served take no reading of their own */
    pthread_mutex_unlock(&sampler.mutex);
}

/* The ring, copied (the math below runs outside the lock). */
static void samples_copy(ops_sample ring[OBS_STATS_SECONDS]) {
    pthread_mutex_lock(&sampler.mutex);
    memcpy(ring, sampler.ring, sizeof sampler.ring);
    pthread_mutex_unlock(&sampler.mutex);
}

static const ops_sample *sample_at(const ops_sample *ring, uint64_t second) {
    const ops_sample *sample = &ring[second % OBS_STATS_SECONDS];
    return sample->second == second ? sample : NULL;
}

/* The newest sample at or before 'now_s' and the oldest at least 'window_s' before it
 * (or as close as the ring has). False when fewer than two samples exist. */
static bool samples_window(const ops_sample *ring, uint64_t now_s, uint32_t window_s,
                           const ops_sample **first, const ops_sample **last) {
    *first = *last = NULL;
    for (uint64_t s = now_s; s + OBS_STATS_SECONDS > now_s + 2 && *last == NULL; s--) *last = sample_at(ring, s);
    if (*last == NULL) return false;
    for (uint64_t s = (*last)->second - window_s; s < (*last)->second && *first == NULL; s++) {
        *first = sample_at(ring, s);
    }
    return *first != NULL;
}

/* ---------------------------------------------------------------- JSON helpers */

/* A figure rounded to 3 decimals (compact), or null when unknown. */
static json_t *figure(double value) {
    if (!isfinite(value)) return json_null();
    return json_real(round(value * 1000.0) / 1000.0);
}

static double per_s(uint64_t later, uint64_t earlier, uint64_t seconds) {
    if (seconds == 0 || later < earlier) return NAN;
    return (double)(later - earlier) / (double)seconds;
}

static double ratio(uint64_t part, uint64_t whole) {
    return whole == 0 ? NAN : (double)part / (double)whole;
}

typedef struct {
    api_request_t *req;
    uint64_t now_s;
    uint32_t window_s;
    uint32_t history_s;
    ops_sample ring[OBS_STATS_SECONDS];
    json_t *history;            /* the "history" object: columns for the charts */
    const pay_merchant_stats_t *merchant; /* a merchant key's own payments, while read */
} stats_ctx;

/* A history column: one value a second, oldest first. */
typedef double (*column_fn)(const stats_ctx *ctx, uint64_t second);

static void history_column(stats_ctx *ctx, const char *name, column_fn fn) {
    json_t *column = json_array();
    for (uint64_t s = ctx->now_s - ctx->history_s; s < ctx->now_s; s++) {
        json_array_append_new(column, figure(fn(ctx, s)));
    }
    json_object_set_new(ctx->history, name, column);
}

/* ---------------------------------------------------------------- sections */

static void section_api(stats_ctx *ctx, json_t *body) {
    const api_caller_t *caller = api_caller(ctx->req);
    bool merchant = caller != NULL && caller->scope == API_SCOPE_MERCHANT;
    obs_stats_view_t *view = malloc(sizeof(*view));
    if (view == NULL) return;
    obs_stats_view(merchant ? caller->id : NULL, ctx->now_s, ctx->window_s, ctx->history_s, view);
    json_object_set_new(body, "api", json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I}",
        "requests_per_s", figure(view->requests_per_s), "errors_per_s", figure(view->errors_per_s),
        "rejected_per_s", figure(view->rejected_per_s), "transfers_per_s", figure(view->transfers_per_s),
        "p50_ms", figure(view->p50_ms), "p99_ms", figure(view->p99_ms),
        "requests_total", (json_int_t)view->requests_total, "errors_total", (json_int_t)view->errors_total,
        "rejected_total", (json_int_t)view->rejected_total, "transfers_total", (json_int_t)view->transfers_total));
    json_t *t = json_array(), *requests = json_array(), *errors = json_array(), *transfers = json_array();
    json_t *p50 = json_array(), *p99 = json_array();
    for (uint32_t i = 0; i < view->history_count; i++) {
        const obs_stats_second_t *point = &view->history[i];
        json_array_append_new(t, json_integer((json_int_t)point->second));
        json_array_append_new(requests, json_integer(point->requests));
        json_array_append_new(errors, json_integer(point->errors));
        json_array_append_new(transfers, json_integer(point->transfers));
        json_array_append_new(p50, figure(point->p50_ms));
        json_array_append_new(p99, figure(point->p99_ms));
    }
    json_object_set_new(ctx->history, "t", t);
    json_object_set_new(ctx->history, "requests_per_s", requests);
    json_object_set_new(ctx->history, "errors_per_s", errors);
    json_object_set_new(ctx->history, "transfers_per_s", transfers);
    json_object_set_new(ctx->history, "p50_ms", p50);
    json_object_set_new(ctx->history, "p99_ms", p99);
    free(view);
}

static double column_committed(const stats_ctx *ctx, uint64_t second) {
    const ops_sample *a = sample_at(ctx->ring, second), *b = sample_at(ctx->ring, second + 1);
    return a != NULL && b != NULL ? per_s(b->transfers, a->transfers, 1) : NAN;
}

static double column_queue(const stats_ctx *ctx, uint64_t second) {
    const ops_sample *a = sample_at(ctx->ring, second);
    return a != NULL ? (double)a->queue_events : NAN;
}

static double column_batch_size(const stats_ctx *ctx, uint64_t second) {
    const ops_sample *a = sample_at(ctx->ring, second), *b = sample_at(ctx->ring, second + 1);
    if (a == NULL || b == NULL) return NAN;
    return ratio(b->transfers + b->accounts - a->transfers - a->accounts, b->batches - a->batches);
}

static void section_writer(stats_ctx *ctx, json_t *body) {
    writer_stats_t live;
    if (!writer_read(ctx->req->server, &live)) return;
    const ops_sample *first, *last;
    double transfers_per_s = NAN, batches_per_s = NAN, batch_size = NAN;
    if (samples_window(ctx->ring, ctx->now_s, ctx->window_s, &first, &last)) {
        uint64_t seconds = last->second - first->second;
        transfers_per_s = per_s(last->transfers, first->transfers, seconds);
        batches_per_s = per_s(last->batches, first->batches, seconds);
        batch_size = ratio(last->transfers + last->accounts - first->transfers - first->accounts,
                           last->batches - first->batches);
    }
    json_object_set_new(body, "writer", json_pack(
        "{s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I}", "transfers_per_s", figure(transfers_per_s),
        "batches_per_s", figure(batches_per_s), "batch_size_mean", figure(batch_size),
        "queue_depth", (json_int_t)live.queue_events,
        "queue_max", (json_int_t)ctx->req->server->config.queue_events_max,
        "transfers_committed_total", (json_int_t)live.transfers_committed,
        "batches_committed_total", (json_int_t)live.batches_committed,
        "batches_failed_total", (json_int_t)live.batches_failed));
    history_column(ctx, "committed_per_s", column_committed);
    history_column(ctx, "queue_depth", column_queue);
    history_column(ctx, "batch_size", column_batch_size);
}

typedef struct {
    const char *code[TOP_REASONS_MAX];
    uint64_t count[TOP_REASONS_MAX];
    uint32_t used;
    json_t *codes_owned;         /* keeps the strings alive past the callback */
} top_reasons;

/* Keeps the TOP_REASONS_MAX largest counts, largest first (ties: first seen). */
static void reason_seen(const char *code, uint64_t count, void *arg) {
    top_reasons *top = arg;
    uint32_t at = top->used;
    while (at > 0 && top->count[at - 1] < count) at--;
    if (at >= TOP_REASONS_MAX) return;
    json_t *copy = json_string(code);
    if (copy == NULL) return;
    json_array_append_new(top->codes_owned, copy);
    uint32_t last = top->used < TOP_REASONS_MAX ? top->used : TOP_REASONS_MAX - 1;
    for (uint32_t i = last; i > at; i--) {
        top->code[i] = top->code[i - 1];
        top->count[i] = top->count[i - 1];
    }
    top->code[at] = json_string_value(copy);
    top->count[at] = count;
    if (top->used < TOP_REASONS_MAX) top->used++;
}

static double column_outcome(const stats_ctx *ctx, uint64_t second, int outcome) {
    const ops_sample *a = sample_at(ctx->ring, second), *b = sample_at(ctx->ring, second + 1);
    if (a == NULL || b == NULL || !a->risk || !b->risk) return NAN;
    return per_s(b->decisions[outcome], a->decisions[outcome], 1);
}
static double column_approve(const stats_ctx *c, uint64_t s) { return column_outcome(c, s, 0); }
static double column_review(const stats_ctx *c, uint64_t s) { return column_outcome(c, s, 1); }
static double column_decline(const stats_ctx *c, uint64_t s) { return column_outcome(c, s, 2); }

static void section_risk(stats_ctx *ctx, json_t *body) {
    risk_engine_stats_t live;
    if (!api_risk_stats(&live)) return;
    const ops_sample *first, *last;
    double rate[3] = {NAN, NAN, NAN}, decisions_per_s = NAN;
    if (samples_window(ctx->ring, ctx->now_s, ctx->window_s, &first, &last) && first->risk && last->risk) {
        uint64_t delta[3], total = 0;
        for (int o = 0; o < 3; o++) total += delta[o] = last->decisions[o] - first->decisions[o];
        for (int o = 0; o < 3; o++) rate[o] = ratio(delta[o], total);
        decisions_per_s = per_s(total, 0, last->second - first->second);
    }
    top_reasons top = {.codes_owned = json_array()};
    api_risk_reasons_each(reason_seen, &top);
    json_t *reasons = json_array();
    for (uint32_t i = 0; i < top.used; i++) {
        json_array_append_new(reasons, json_pack("{s:s,s:I}", "code", top.code[i], "count", (json_int_t)top.count[i]));
    }
    json_decref(top.codes_owned);
    json_object_set_new(body, "risk", json_pack(
        "{s:s,s:o,s:o,s:o,s:o,s:{s:I,s:I,s:I},s:I,s:o}", "mode", api_risk_mode(),
        "decisions_per_s", figure(decisions_per_s), "approve_ratio", figure(rate[0]),
        "review_ratio", figure(rate[1]), "decline_ratio", figure(rate[2]), "decisions_total",
        "approve", (json_int_t)live.decisions[0], "review", (json_int_t)live.decisions[1],
        "decline", (json_int_t)live.decisions[2], "reviews_open", (json_int_t)live.reviews_open,
        "top_reasons", reasons));
    history_column(ctx, "approve_per_s", column_approve);
    history_column(ctx, "review_per_s", column_review);
    history_column(ctx, "decline_per_s", column_decline);
}

static void section_journal(stats_ctx *ctx, json_t *body) {
    api_ops_verify_state_t state;
    api_ops_verify_state(&state);
    const char *name = state.running ? "running" : !state.known ? "never" : state.ok ? "ok" : "failed";
    json_t *verify = json_pack("{s:s,s:I}", "state", name, "interval_s", (json_int_t)state.interval_s);
    if (state.known) {
        char head_hex[2 * JOURNAL_HASH_BYTES + 1];
        journal_hex(state.report.head_hash, JOURNAL_HASH_BYTES, head_hex);
        json_object_set_new(verify, "at", json_integer((json_int_t)state.at_s));
        json_object_set_new(verify, "duration_ms", json_integer((json_int_t)state.duration_ms));
        json_object_set_new(verify, "batches", json_integer((json_int_t)state.report.batches));
        json_object_set_new(verify, "transfers", json_integer((json_int_t)state.report.transfers));
        json_object_set_new(verify, "head_hash", json_string(head_hex));
        if (!state.ok) {
            const char *why = state.report.discrepancy[0] ? state.report.discrepancy : pc_status_code(state.status);
            json_object_set_new(verify, "discrepancy", json_string(why));
        }
    }
    json_object_set_new(body, "journal", json_pack("{s:o}", "verify", verify));
    (void)ctx;
}

/* The payment channels (present when the gateway runs, --channels): per channel its
 * breaker, success rate, latency and load, as GET /v1/channels shows them. */
static void section_channels(stats_ctx *ctx, json_t *body) {
    gw_t *gw = api_gateway();
    if (gw == NULL) return;
    json_t *all = gw_channels_json(gw);
    json_t *channels = json_array();
    size_t index;
    json_t *channel;
    json_array_foreach(json_object_get(all, "channels"), index, channel) {
        json_t *brief = json_object();
        static const char *const keep[] = {"name", "kind", "success_rate", "success_rate_calls", "latency_ms",
                                           "in_flight", "attempts", "retries"};
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            json_t *value = json_object_get(channel, keep[k]);
            if (value != NULL) json_object_set(brief, keep[k], value);
        }
        json_t *breaker = json_object_get(json_object_get(channel, "breaker"), "state");
        if (breaker != NULL) json_object_set(brief, "breaker", breaker);
        json_array_append_new(channels, brief);
    }
    json_decref(all);
    json_object_set_new(body, "channels", channels);
    (void)ctx;
}

/* ---- payments: created per second, first outcomes, states, declines by code ---- */

static double column_payments(const stats_ctx *ctx, uint64_t second) {
    const ops_sample *a = sample_at(ctx->ring, second), *b = sample_at(ctx->ring, second + 1);
    if (a == NULL || b == NULL || !a->payments || !b->payments) return NAN;
    return per_s(b->payments_created, a->payments_created, 1);
}

static double column_payments_outcome(const stats_ctx *ctx, uint64_t second, int outcome) {
    const ops_sample *a = sample_at(ctx->ring, second), *b = sample_at(ctx->ring, second + 1);
    if (a == NULL || b == NULL || !a->payments || !b->payments) return NAN;
    return per_s(b->payments_outcomes[outcome], a->payments_outcomes[outcome], 1);
}
static double column_payments_authorized(const stats_ctx *c, uint64_t s) { return column_payments_outcome(c, s, 0); }
static double column_payments_declined(const stats_ctx *c, uint64_t s) { return column_payments_outcome(c, s, 2); }

/* The largest decline counts, largest first (ties: first seen), as [{code, count}]. */
static json_t *payments_top_declines(const pay_stats_t *stats) {
    top_reasons top = {.codes_owned = json_array()};
    for (uint32_t i = 0; i < stats->decline_code_count; i++) {
        reason_seen(stats->declines[i].code, stats->declines[i].count, &top);
    }
    if (stats->declines_other > 0) reason_seen("other", stats->declines_other, &top);
    json_t *list = json_array();
    for (uint32_t i = 0; i < top.used; i++) {
        json_array_append_new(list, json_pack("{s:s,s:I}", "code", top.code[i], "count", (json_int_t)top.count[i]));
    }
    json_decref(top.codes_owned);
    return list;
}

static json_t *payments_states(const pay_stats_t *stats) {
    json_t *states = json_object();
    for (uint32_t st = 0; st < PAY_STATE_COUNT; st++) {
        json_object_set_new(states, pay_state_name((pay_state)st), json_integer((json_int_t)stats->entered[st]));
    }
    return states;
}

/* The payments section: rates over the window, first-outcome shares, totals. */
static void payments_section_set(json_t *body, double created_per_s, const double rate[3], const double share[3],
                                 const pay_stats_t *totals) {
    uint64_t outcomes[3];
    pay_stats_outcomes(totals, outcomes);
    json_object_set_new(body, "payments", json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:o}", "payments_per_s", figure(created_per_s),
        "authorized_per_s", figure(rate[0]), "review_per_s", figure(rate[1]), "declined_per_s", figure(rate[2]),
        "approve_ratio", figure(share[0]), "review_ratio", figure(share[1]), "decline_ratio", figure(share[2]),
        "created_total", (json_int_t)totals->created, "authorized_total", (json_int_t)outcomes[0],
        "review_total", (json_int_t)outcomes[1], "declined_total", (json_int_t)outcomes[2],
        "states", payments_states(totals), "top_declines", payments_top_declines(totals)));
}

static void section_payments_system(stats_ctx *ctx, json_t *body) {
    pay_stats_t *live = malloc(sizeof(*live));
    if (live == NULL) return;
    if (!payments_stats_read(live)) {
        free(live);
        return;
    }
    const ops_sample *first, *last;
    double created_per_s = NAN, rate[3] = {NAN, NAN, NAN}, share[3] = {NAN, NAN, NAN};
    if (samples_window(ctx->ring, ctx->now_s, ctx->window_s, &first, &last) && first->payments && last->payments) {
        uint64_t seconds = last->second - first->second, delta[3], total = 0;
        created_per_s = per_s(last->payments_created, first->payments_created, seconds);
        for (int o = 0; o < 3; o++) total += delta[o] = last->payments_outcomes[o] - first->payments_outcomes[o];
        for (int o = 0; o < 3; o++) {
            rate[o] = per_s(delta[o], 0, seconds);
            share[o] = ratio(delta[o], total);
        }
    }
    payments_section_set(body, created_per_s, rate, share, live);
    free(live);
    history_column(ctx, "payments_per_s", column_payments);
    history_column(ctx, "payments_authorized_per_s", column_payments_authorized);
    history_column(ctx, "payments_declined_per_s", column_payments_declined);
}

/* A merchant's second 'second': its slot, or NULL when nothing was counted then. */
static const pay_stats_second_t *merchant_second(const stats_ctx *ctx, uint64_t second) {
    const pay_stats_second_t *slot = &ctx->merchant->seconds[second % OBS_STATS_SECONDS];
    return slot->second == second ? slot : NULL;
}

static double column_merchant_created(const stats_ctx *ctx, uint64_t second) {
    const pay_stats_second_t *slot = merchant_second(ctx, second);
    return slot != NULL ? (double)slot->created : 0.0;
}

static double column_merchant_outcome(const stats_ctx *ctx, uint64_t second, int outcome) {
    const pay_stats_second_t *slot = merchant_second(ctx, second);
    return slot != NULL ? (double)slot->outcomes[outcome] : 0.0;
}
static double column_merchant_authorized(const stats_ctx *c, uint64_t s) { return column_merchant_outcome(c, s, 0); }
static double column_merchant_declined(const stats_ctx *c, uint64_t s) { return column_merchant_outcome(c, s, 2); }

/* A merchant key: its merchant's payments alone, rates from its per-second counts over
 * the window's complete seconds. */
static void section_payments_merchant(stats_ctx *ctx, json_t *body, const char *key_id) {
    pay_merchant_stats_t *mine = malloc(sizeof(*mine));
    if (mine == NULL) return;
    if (!merchant_stats_read(key_id, mine)) {
        free(mine);
        return;
    }
    ctx->merchant = mine;
    uint64_t created = 0, counts[3] = {0, 0, 0}, total = 0;
    for (uint64_t s = ctx->now_s - ctx->window_s; s < ctx->now_s; s++) {
        const pay_stats_second_t *slot = merchant_second(ctx, s);
        if (slot == NULL) continue;
        created += slot->created;
        for (int o = 0; o < 3; o++) counts[o] += slot->outcomes[o];
    }
    double rate[3], share[3];
    for (int o = 0; o < 3; o++) total += counts[o];
    for (int o = 0; o < 3; o++) {
        rate[o] = per_s(counts[o], 0, ctx->window_s);
        share[o] = ratio(counts[o], total);
    }
    payments_section_set(body, per_s(created, 0, ctx->window_s), rate, share, &mine->totals);
    history_column(ctx, "payments_per_s", column_merchant_created);
    history_column(ctx, "payments_authorized_per_s", column_merchant_authorized);
    history_column(ctx, "payments_declined_per_s", column_merchant_declined);
    ctx->merchant = NULL;
    free(mine);
}

static void section_payments(stats_ctx *ctx, json_t *body) {
    const api_caller_t *caller = api_caller(ctx->req);
    if (caller == NULL) return;
    if (caller->scope == API_SCOPE_MERCHANT) section_payments_merchant(ctx, body, caller->id);
    else section_payments_system(ctx, body);
}

/* ---- the outbox: delivery per destination (webhook endpoints, the broker) ---- */

static double column_outbox_lag(const stats_ctx *ctx, uint64_t second) {
    const ops_sample *a = sample_at(ctx->ring, second);
    return a != NULL && a->outbox ? (double)a->outbox_lag_ms_max / 1000.0 : NAN;
}

static double column_outbox_delivered(const stats_ctx *ctx, uint64_t second) {
    const ops_sample *a = sample_at(ctx->ring, second), *b = sample_at(ctx->ring, second + 1);
    if (a == NULL || b == NULL || !a->outbox || !b->outbox) return NAN;
    return per_s(b->outbox_delivered, a->outbox_delivered, 1);
}

static json_t *outbox_destination(const events_destination_stats_t *d) {
    return json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:b}", "id", d->id, "kind", d->kind,
                     "lag_s", figure((double)d->lag_ms / 1000.0), "delivered_total", (json_int_t)d->delivered,
                     "retried_total", (json_int_t)d->retried, "dead_lettered_total", (json_int_t)d->dead_lettered,
                     "disabled", d->disabled);
}

static void section_outbox(stats_ctx *ctx, json_t *body) {
    events_t *events = ctx->req->server->events;
    events_status_t status;
    events_status(events, &status);
    if (!status.enabled) return;
    events_destination_stats_t *all = malloc(sizeof(*all) * (EVENTS_ENDPOINTS_MAX + 1));
    if (all == NULL) return;
    uint64_t written = 0, delivered = 0, lag_ms_max = 0, dead = 0;
    uint32_t count = events_destinations_stats(events, all, EVENTS_ENDPOINTS_MAX + 1, &written);
    json_t *destinations = json_array();
    for (uint32_t i = 0; i < count; i++) {
        delivered += all[i].delivered;
        dead += all[i].dead_lettered;
        if (all[i].lag_ms > lag_ms_max) lag_ms_max = all[i].lag_ms;
        json_array_append_new(destinations, outbox_destination(&all[i]));
    }
    free(all);
    const ops_sample *first, *last;
    double delivered_per_s = NAN;
    if (samples_window(ctx->ring, ctx->now_s, ctx->window_s, &first, &last) && first->outbox && last->outbox) {
        delivered_per_s = per_s(last->outbox_delivered, first->outbox_delivered, last->second - first->second);
    }
    json_t *outbox = json_pack("{s:I,s:I,s:o,s:o,s:I,s:o}", "written_total", (json_int_t)written,
                               "delivered_total", (json_int_t)delivered, "delivered_per_s", figure(delivered_per_s),
                               "lag_s_max", figure((double)lag_ms_max / 1000.0), "dead_lettered_total",
                               (json_int_t)dead, "destinations", destinations);
    if (status.amqp_configured) {
        json_object_set_new(outbox, "amqp", json_pack("{s:b}", "connected", status.amqp_connected));
    }
    json_object_set_new(body, "outbox", outbox);
    history_column(ctx, "outbox_lag_s", column_outbox_lag);
    history_column(ctx, "outbox_delivered_per_s", column_outbox_delivered);
}

typedef struct {
    const char *name;
    bool system_only;           /* admin and read_only keys only */
    void (*add)(stats_ctx *ctx, json_t *body);
} stats_section;

/* The answer's sections in order; a section with no data (no risk engine) is absent. */
static const stats_section stats_sections[] = {
    {"api", false, section_api},
    {"writer", true, section_writer},
    {"risk", true, section_risk},
    {"journal", true, section_journal},
    {"channels", true, section_channels},
    {"payments", false, section_payments},
    {"outbox", true, section_outbox},
};

/* ---------------------------------------------------------------- the route */

static bool query_u32(api_request_t *req, const char *name, uint32_t min, uint32_t max,
                      uint32_t *value) {
    const char *text = api_query(req, name);
    if (text == NULL) return true;
    char *end = NULL;
    unsigned long parsed = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || parsed < min || parsed > max) {
        api_reply_error(req, PC_QUERY_INVALID, name, "window_s=1..60, history_s=0..60");
        return false;
    }
    *value = (uint32_t)parsed;
    return true;
}

void api_route_stats(api_request_t *req) {
    static const char *const allowed[] = {"window_s", "history_s", NULL};
    stats_ctx *ctx = api_alloc(req, sizeof(*ctx));
    if (ctx == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    ctx->req = req;
    ctx->window_s = WINDOW_S_DEFAULT;
    ctx->history_s = HISTORY_S_DEFAULT;
    if (!api_query_only(req, allowed) || !query_u32(req, "window_s", 1, HISTORY_S_MAX, &ctx->window_s) ||
        !query_u32(req, "history_s", 0, HISTORY_S_MAX, &ctx->history_s)) {
        return;
    }
    ctx->now_s = pc_wall_ns() / 1000000000ull;
    sample_ensure(ctx->now_s);
    samples_copy(ctx->ring);
    const api_caller_t *caller = api_caller(req);
    bool system = caller != NULL && caller->scope != API_SCOPE_MERCHANT;
    ctx->history = json_object();
    json_t *body = json_pack("{s:s,s:I,s:I}", "scope", caller ? api_scope_name(caller->scope) : "none",
                             "now", (json_int_t)ctx->now_s, "window_s", (json_int_t)ctx->window_s);
    for (size_t i = 0; i < sizeof stats_sections / sizeof stats_sections[0]; i++) {
        if (stats_sections[i].system_only && !system) continue;
        stats_sections[i].add(ctx, body);
    }
    json_object_set_new(body, "history", ctx->history);
    /* figures are rounded to 3 decimals: print them short (946.8, not 946.79999999999995) */
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    json_decref(body);
    if (text == NULL) {
        api_reply_error(req, PC_NO_MEMORY, NULL, NULL);
        return;
    }
    api_reply_raw(req, 200, PC_OK, text, strlen(text), "application/json");
    free(text);
}

/* ---------------------------------------------------------------- hooks */

/* Operations routes are not the API's traffic: polling them must not move the figures. */
static bool counts_as_api(uint32_t route_index) {
    const char *name = api_route_name(route_index);
    return strncmp(name, "/v1/", 4) == 0 && strcmp(name, "/v1/stats") != 0;
}

static uint32_t transfers_committed_by(const api_request_t *req, int http_status) {
    const writer_cmd_t *cmd = req->cmd;
    if (cmd == NULL || cmd->kind != WRITER_CMD_CREATE_TRANSFERS || req->timed_out) return 0;
    if (req->commit_status != PC_OK || (http_status != 200 && http_status != 201)) return 0;
    uint32_t ok = 0;
    for (uint32_t i = 0; i < cmd->event_count; i++) ok += cmd->transfer_results[i].status == PC_OK;
    return ok;
}

void api_ops_request_done(const api_request_t *req, int http_status, uint64_t latency_ns) {
    if (req->route_index < 0 || !counts_as_api((uint32_t)req->route_index)) return;
    obs_stats_request(req->has_caller ? req->caller.id : NULL, http_status, latency_ns,
                      transfers_committed_by(req, http_status));
}

pc_status api_ops_start(api_server_t *server, const api_ops_options_t *options) {
    payments_view_set(true);
    pc_status status = api_ops_sampler_start(server);
    const char *location = server->config.store_url != NULL ? server->config.store_url : options->db_path;
    if (status == PC_OK) status = api_ops_verify_start(location, options->db_path, options->verify_interval_s);
    if (status != PC_OK) api_ops_stop();
    return status;
}

void api_ops_stop(void) {
    api_ops_verify_stop();
    api_ops_sampler_stop();
    payments_view_set(false); /* before api_payments_stop frees them */
}
