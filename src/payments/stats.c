/* payments/stats.c: the payments figures operators watch (GET /v1/stats, /metrics):
 * payments created, changes into each state, authorizations approved, declines by
 * code. A change is counted when its writer command committed (flow.c), so a batch
 * that failed counts nothing. Decline codes are a bounded set (PAY_STATS_DECLINE_CODES_MAX,
 * then "other"): a channel inventing codes cannot grow the table or the label set.
 * Each merchant's own figures are kept too (for its keys' dashboards: a merchant sees
 * its payments only), with a second-by-second ring for its rates; at most
 * PAY_STATS_MERCHANTS_MAX merchants, made at their first counted change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments/pay_internal.h"

void pay_stats_init(pay_t *pay) {
    pthread_mutex_init(&pay->stats.mutex, NULL);
    memset(&pay->stats.counts, 0, sizeof pay->stats.counts);
    pay->stats.merchant_count = 0;
    /* without the map the merchants' own figures are unknown; the totals still count */
    pay->stats.merchants_ready = pay_map_init(&pay->stats.merchants, 256) == PC_OK;
}

void pay_stats_free(pay_t *pay) {
    if (pay->stats.merchants_ready) pay_map_free(&pay->stats.merchants, free);
    pthread_mutex_destroy(&pay->stats.mutex);
}

static bool state_before_authorization(pay_state state) {
    return state == PAY_STATE_CREATED || state == PAY_STATE_REQUIRES_ACTION || state == PAY_STATE_IN_REVIEW;
}

static bool state_authorized(pay_state state) {
    return state == PAY_STATE_AUTHORIZED || state == PAY_STATE_PARTIALLY_CAPTURED || state == PAY_STATE_CAPTURED;
}

/* A decline code as a metric label value: [A-Za-z0-9_] kept, anything else '_' (codes
 * are channel and status codes; this only guards the exposition format). */
static void code_label(const char *code, char out[GW_CODE_SIZE + 8]) {
    size_t i = 0;
    for (; code[i] != '\0' && i + 1 < GW_CODE_SIZE + 8; i++) {
        char c = code[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        out[i] = plain ? c : '_';
    }
    out[i] = '\0';
    if (i == 0) pc_str_copy(out, GW_CODE_SIZE + 8, "unknown");
}

/* Caller holds the stats mutex. */
static void decline_count(pay_stats_t *counts, const char *code_raw) {
    char code[GW_CODE_SIZE + 8];
    code_label(code_raw, code);
    for (uint32_t i = 0; i < counts->decline_code_count; i++) {
        if (strcmp(counts->declines[i].code, code) == 0) {
            counts->declines[i].count++;
            return;
        }
    }
    if (counts->decline_code_count == PAY_STATS_DECLINE_CODES_MAX || strcmp(code, "other") == 0) {
        counts->declines_other++;
        return;
    }
    pay_decline_count_t *slot = &counts->declines[counts->decline_code_count++];
    pc_str_copy(slot->code, sizeof slot->code, code);
    slot->count = 1;
}

/* Caller holds the stats mutex. */
static void totals_count(pay_stats_t *counts, const pay_stats_change_t *change) {
    counts->created += change->created;
    counts->entered[change->to]++;
    if (state_before_authorization(change->from) && state_authorized(change->to)) counts->authorized++;
    if (change->to == PAY_STATE_DECLINED || change->to == PAY_STATE_FAILED) decline_count(counts, change->decline_code);
}

/* The merchant's own figures, made at its first change while there is room; NULL
 * otherwise. Caller holds the stats mutex. */
static pay_merchant_stats_t *merchant_figures(pay_stats_state_t *stats, const char *merchant_id) {
    if (!stats->merchants_ready || merchant_id[0] == '\0') return NULL;
    pay_merchant_stats_t *figures = pay_map_get(&stats->merchants, merchant_id);
    if (figures != NULL || stats->merchant_count >= PAY_STATS_MERCHANTS_MAX) return figures;
    figures = calloc(1, sizeof(*figures));
    if (figures == NULL) return NULL;
    figures->known = true;
    if (pay_map_put(&stats->merchants, merchant_id, figures, NULL) != PC_OK) {
        free(figures);
        return NULL;
    }
    stats->merchant_count++;
    return figures;
}

/* The change in its second's slot of the merchant's ring. */
static void second_count(pay_merchant_stats_t *figures, const pay_stats_change_t *change, uint64_t second) {
    pay_stats_second_t *slot = &figures->seconds[second % OBS_STATS_SECONDS];
    if (slot->second != second) *slot = (pay_stats_second_t){.second = second};
    slot->created += change->created;
    if (state_before_authorization(change->from) && state_authorized(change->to)) slot->outcomes[0]++;
    if (change->to == PAY_STATE_IN_REVIEW) slot->outcomes[1]++;
    if (change->to == PAY_STATE_DECLINED || change->to == PAY_STATE_FAILED) slot->outcomes[2]++;
}

void pay_stats_count(pay_t *pay, const pay_stats_change_t *change) {
    PC_ASSERT(change->to < PAY_STATE_COUNT);
    if (!change->changed) return;
    uint64_t second = pc_wall_ns() / 1000000000ull;
    pthread_mutex_lock(&pay->stats.mutex);
    totals_count(&pay->stats.counts, change);
    pay_merchant_stats_t *figures = merchant_figures(&pay->stats, change->merchant_id);
    if (figures != NULL) {
        totals_count(&figures->totals, change);
        second_count(figures, change, second);
    }
    pthread_mutex_unlock(&pay->stats.mutex);
}

void pay_stats_outcomes(const pay_stats_t *stats, uint64_t out[3]) {
    out[0] = stats->authorized;
    out[1] = stats->entered[PAY_STATE_IN_REVIEW];
    out[2] = stats->entered[PAY_STATE_DECLINED] + stats->entered[PAY_STATE_FAILED];
}

void pay_merchant_stats(pay_t *pay, const char *merchant_id, pay_merchant_stats_t *out) {
    memset(out, 0, sizeof(*out));
    out->known = true;
    if (pay == NULL) return;
    pthread_mutex_lock(&pay->stats.mutex);
    pay_merchant_stats_t *figures = pay->stats.merchants_ready ? pay_map_get(&pay->stats.merchants, merchant_id) : NULL;
    if (figures != NULL) *out = *figures;
    else out->known = pay->stats.merchants_ready && pay->stats.merchant_count < PAY_STATS_MERCHANTS_MAX;
    pthread_mutex_unlock(&pay->stats.mutex);
}

void pay_stats(pay_t *pay, pay_stats_t *out) {
    memset(out, 0, sizeof(*out));
    if (pay == NULL) return;
    pthread_mutex_lock(&pay->stats.mutex);
    *out = pay->stats.counts;
    pthread_mutex_unlock(&pay->stats.mutex);
}

/* ---- metrics ---- */

/* Appends to a malloc'ed text; false (text unchanged) on OOM. */
static bool text_append(char **text, size_t *bytes, const char *more) {
    size_t more_bytes = strlen(more);
    char *grown = realloc(*text, *bytes + more_bytes + 1);
    if (grown == NULL) return false;
    memcpy(grown + *bytes, more, more_bytes + 1);
    *text = grown;
    *bytes += more_bytes;
    return true;
}

/* ---- a payment's path ---- */

void pay_path_cut_at(pay_flow_t *flow, pay_path_segment segment, uint64_t at_ns) {
    if (flow->path.at_ns == 0) flow->path.made_ns = at_ns; /* the first cut: the flow's start (pay_flow_new) */
    else if (at_ns > flow->path.at_ns) flow->path.ns[segment] += at_ns - flow->path.at_ns;
    else at_ns = flow->path.at_ns;
    flow->path.at_ns = at_ns;
}

void pay_path_cut(pay_flow_t *flow, pay_path_segment segment) { pay_path_cut_at(flow, segment, pc_mono_ns()); }

static uint32_t path_bucket(uint64_t ns) {
    uint64_t bound_ns = 16000;
    uint32_t bucket = 0;
    while (bucket < PAY_PATH_BUCKETS - 1 && ns > bound_ns) {
        bound_ns *= 2;
        bucket++;
    }
    return bucket;
}

void pay_path_count(pay_flow_t *flow) {
    int op = !flow->has_op ? -1 : flow->op.kind == PAY_OP_AUTHORIZE ? 0 : flow->op.kind == PAY_OP_CAPTURE ? 1 : -1;
    if (op < 0 || !flow->path.answered || flow->inquiry || flow->path.made_ns == 0) return;
    flow->path.ns[PAY_PATH_TOTAL] = flow->path.at_ns - flow->path.made_ns;
    pay_path_stats_t *path = &flow->pay->path;
    for (uint32_t s = 0; s < PAY_PATH_SEGMENTS; s++) {
        uint64_t ns = flow->path.ns[s];
        atomic_fetch_add_explicit(&path->sum_ns[op][s], ns, memory_order_relaxed);
        atomic_fetch_add_explicit(&path->buckets[op][s][path_bucket(ns)], 1, memory_order_relaxed);
    }
}

static const char *const path_op_names[PAY_PATH_OPS] = {"authorize", "capture"};
static const char *const path_segment_names[PAY_PATH_SEGMENTS] = {
    "api", "gateway_in", "persist_stage", "persist_queue", "persist_commit", "call", "apply_stage", "book_stage",
    "book_queue", "book_commit", "answer", "total"};

/* One op's segment as a histogram (cumulative buckets, seconds). */
static bool path_append(pay_t *pay, uint32_t op, uint32_t s, char **text, size_t *bytes) {
    const pay_path_stats_t *path = &pay->path;
    char labels[96], line[256];
    snprintf(labels, sizeof labels, "op=\"%s\",segment=\"%s\"", path_op_names[op], path_segment_names[s]);
    uint64_t cumulative = 0;
    bool ok = true;
    double bound_s = 16e-6;
    for (uint32_t b = 0; ok && b < PAY_PATH_BUCKETS; b++, bound_s *= 2) {
        cumulative += atomic_load_explicit(&path->buckets[op][s][b], memory_order_relaxed);
        if (b < PAY_PATH_BUCKETS - 1) {
            snprintf(line, sizeof line, "paycore_payment_path_seconds_bucket{%s,le=\"%g\"} %llu\n", labels, bound_s,
                     (unsigned long long)cumulative);
        } else {
            snprintf(line, sizeof line, "paycore_payment_path_seconds_bucket{%s,le=\"+Inf\"} %llu\n", labels,
                     (unsigned long long)cumulative);
        }
        ok = text_append(text, bytes, line);
    }
    /* the count is the +Inf bucket's: one add fewer per segment and payment */
    snprintf(line, sizeof line,
             "paycore_payment_path_seconds_sum{%s} %.9f\npaycore_payment_path_seconds_count{%s} %llu\n", labels,
             (double)atomic_load_explicit(&path->sum_ns[op][s], memory_order_relaxed) / 1e9, labels,
             (unsigned long long)cumulative);
    return ok && text_append(text, bytes, line);
}

static bool path_metrics_append(pay_t *pay, char **text, size_t *bytes) {
    bool ok = text_append(text, bytes,
                          "# HELP paycore_payment_path_seconds Where a card authorization's or capture's time goes "
                          "on the server, by segment of its path (docs/payments.md).\n"
                          "# TYPE paycore_payment_path_seconds histogram\n");
    for (uint32_t op = 0; ok && op < PAY_PATH_OPS; op++) {
        for (uint32_t s = 0; ok && s < PAY_PATH_SEGMENTS; s++) ok = path_append(pay, op, s, text, bytes);
    }
    return ok;
}

char *pay_metrics_append(pay_t *pay, char *text, size_t *bytes) {
    if (pay == NULL || text == NULL) return text;
    pay_stats_t *counts = malloc(sizeof(*counts));
    if (counts == NULL) return text;
    pay_stats(pay, counts);
    char line[1024];
    size_t start_bytes = *bytes;
    bool ok = true;
    snprintf(line, sizeof line,
             "# HELP paycore_payments_created_total Payments created (stored for the first time).\n"
             "# TYPE paycore_payments_created_total counter\npaycore_payments_created_total %llu\n"
             "# HELP paycore_payments_authorized_total Authorizations approved (to authorized or captured).\n"
             "# TYPE paycore_payments_authorized_total counter\npaycore_payments_authorized_total %llu\n"
             "# HELP paycore_payments_entered_total Committed payment changes into each state.\n"
             "# TYPE paycore_payments_entered_total counter\n",
             (unsigned long long)counts->created, (unsigned long long)counts->authorized);
    ok = text_append(&text, bytes, line);
    for (uint32_t s = 0; ok && s < PAY_STATE_COUNT; s++) {
        snprintf(line, sizeof line, "paycore_payments_entered_total{state=\"%s\"} %llu\n", pay_state_name((pay_state)s),
                 (unsigned long long)counts->entered[s]);
        ok = text_append(&text, bytes, line);
    }
    ok = ok && text_append(&text, bytes,
                           "# HELP paycore_payments_declines_total Payments declined or failed, by decline code.\n"
                           "# TYPE paycore_payments_declines_total counter\n");
    for (uint32_t i = 0; ok && i < counts->decline_code_count; i++) {
        snprintf(line, sizeof line, "paycore_payments_declines_total{code=\"%s\"} %llu\n",
                 counts->declines[i].code, (unsigned long long)counts->declines[i].count);
        ok = text_append(&text, bytes, line);
    }
    if (ok && counts->declines_other > 0) {
        snprintf(line, sizeof line, "paycore_payments_declines_total{code=\"other\"} %llu\n",
                 (unsigned long long)counts->declines_other);
        ok = text_append(&text, bytes, line);
    }
    free(counts);
    snprintf(line, sizeof line,
             "# HELP paycore_payments_stage_carried_total Channel answers applied on the gateway's thread"
             " (every stage thread asleep) instead of waking one.\n"
             "# TYPE paycore_payments_stage_carried_total counter\npaycore_payments_stage_carried_total %llu\n",
             (unsigned long long)atomic_load(&pay->stage.carried));
    ok = ok && text_append(&text, bytes, line);
    ok = ok && path_metrics_append(pay, &text, bytes);
    if (!ok) text[*bytes = start_bytes] = '\0'; /* a partial family would break the scrape */
    return text;
}
