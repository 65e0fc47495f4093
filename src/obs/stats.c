/* obs/stats.c: the live figures behind GET /v1/stats. Each scope (all requests, and
 * one per key that made a request) keeps a ring of OBS_STATS_SECONDS per-second slots
 * with counts and a log-scale latency histogram; a slot is cleared when its second
 * comes round again, so no timer thread is needed. Rates and percentiles are computed
 * when read, over complete seconds only (the current one is still filling).
 * Scopes are found by key id in an open-addressing table that never shrinks (keys are
 * few and created by an admin); each scope has its own mutex. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "obs/obs.h"

#define SCOPE_TABLE_SLOTS (2 * OBS_STATS_SCOPES_MAX) /* load factor at most 1/2 */
#define LATENCY_BASE_US 10.0

typedef struct {
    uint64_t second;
    uint32_t requests;
    uint32_t errors;
    uint32_t rejected;
    uint32_t transfers;
    uint32_t latency[OBS_STATS_LATENCY_BUCKETS];
} stats_slot;

typedef struct {
    pthread_mutex_t mutex;
    uint64_t requests_total;
    uint64_t errors_total;
    uint64_t rejected_total;
    uint64_t transfers_total;
    stats_slot slots[OBS_STATS_SECONDS];
} stats_scope;

typedef struct {
    char key_id[PC_ID_SIZE];
    stats_scope *scope;        /* NULL: free slot */
} scope_entry;

static stats_scope global_scope = {.mutex = PTHREAD_MUTEX_INITIALIZER};
static pthread_mutex_t table_mutex = PTHREAD_MUTEX_INITIALIZER;
static scope_entry scope_table[SCOPE_TABLE_SLOTS];
static uint32_t scope_count;

static uint32_t latency_bucket(uint64_t latency_ns) {
    double us = (double)latency_ns / 1000.0;
    if (us <= LATENCY_BASE_US) return 0;
    double slot = ceil(3.0 * log2(us / LATENCY_BASE_US));
    if (!(slot < OBS_STATS_LATENCY_BUCKETS - 1)) return OBS_STATS_LATENCY_BUCKETS - 1;
    return (uint32_t)slot;
}

double obs_stats_quantile_ms(const uint64_t *buckets, double quantile) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < OBS_STATS_LATENCY_BUCKETS; i++) total += buckets[i];
    if (total == 0) return NAN;
    uint64_t target = (uint64_t)ceil(quantile * (double)total);
    if (target == 0) target = 1;
    uint64_t seen = 0;
    uint32_t i = 0;
    for (; i < OBS_STATS_LATENCY_BUCKETS - 1; i++) {
        seen += buckets[i];
        if (seen >= target) break;
    }
    /* the geometric middle of (10 us * 2^((i-1)/3), 10 us * 2^(i/3)] */
    return LATENCY_BASE_US * exp2(((double)i - 0.5) / 3.0) / 1000.0;
}

/* FNV-1a: the table's keys are API key ids chosen by paycore, not by clients. */
static uint32_t key_hash(const char *key_id) {
    uint32_t hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key_id; *p != '\0'; p++) {
        hash = (hash ^ *p) * 16777619u;
    }
    return hash;
}

/* The scope of 'key_id'; created when 'create' and there is room. NULL otherwise. */
static stats_scope *scope_find(const char *key_id, bool create) {
    uint32_t index = key_hash(key_id) % SCOPE_TABLE_SLOTS;
    stats_scope *found = NULL;
    pthread_mutex_lock(&table_mutex);
    for (uint32_t probe = 0; probe < SCOPE_TABLE_SLOTS; probe++) {
        scope_entry *entry = &scope_table[(index + probe) % SCOPE_TABLE_SLOTS];
        if (entry->scope == NULL) {
            if (create && scope_count < OBS_STATS_SCOPES_MAX && pc_id_copy(entry->key_id, key_id)) {
                entry->scope = calloc(1, sizeof(stats_scope));
                if (entry->scope != NULL) {
                    pthread_mutex_init(&entry->scope->mutex, NULL);
                    scope_count++;
                }
                found = entry->scope;
            }
            break;
        }
        if (strcmp(entry->key_id, key_id) == 0) {
            found = entry->scope;
            break;
        }
    }
    pthread_mutex_unlock(&table_mutex);
    return found;
}

static void scope_add(stats_scope *scope, uint64_t second, int http_status, uint32_t bucket,
                      uint32_t transfers_ok) {
    pthread_mutex_lock(&scope->mutex);
    stats_slot *slot = &scope->slots[second % OBS_STATS_SECONDS];
    if (slot->second != second) {
        memset(slot, 0, sizeof(*slot));
        slot->second = second;
    }
    slot->requests++;
    slot->latency[bucket]++;
    slot->transfers += transfers_ok;
    scope->requests_total++;
    scope->transfers_total += transfers_ok;
    if (http_status >= 500) {
        slot->errors++;
        scope->errors_total++;
    } else if (http_status >= 400) {
        slot->rejected++;
        scope->rejected_total++;
    }
    pthread_mutex_unlock(&scope->mutex);
}

void obs_stats_request(const char *key_id, int http_status, uint64_t latency_ns,
                       uint32_t transfers_ok) {
    obs_stats_request_at(pc_wall_ns() / 1000000000ull, key_id, http_status, latency_ns, transfers_ok);
}

void obs_stats_request_at(uint64_t second, const char *key_id, int http_status,
                          uint64_t latency_ns, uint32_t transfers_ok) {
    uint32_t bucket = latency_bucket(latency_ns);
    scope_add(&global_scope, second, http_status, bucket, transfers_ok);
    if (key_id == NULL || key_id[0] == '\0') return;
    stats_scope *scope = scope_find(key_id, true);
    if (scope != NULL) scope_add(scope, second, http_status, bucket, transfers_ok);
}

/* Fills one history point from a slot (zeros when the slot holds another second). */
static void history_point(const stats_slot *slot, uint64_t second, obs_stats_second_t *out) {
    memset(out, 0, sizeof(*out));
    out->second = second;
    out->p50_ms = NAN;
    out->p99_ms = NAN;
    if (slot->second != second) return;
    out->requests = slot->requests;
    out->errors = slot->errors;
    out->rejected = slot->rejected;
    out->transfers = slot->transfers;
    uint64_t buckets[OBS_STATS_LATENCY_BUCKETS];
    for (uint32_t i = 0; i < OBS_STATS_LATENCY_BUCKETS; i++) buckets[i] = slot->latency[i];
    out->p50_ms = obs_stats_quantile_ms(buckets, 0.50);
    out->p99_ms = obs_stats_quantile_ms(buckets, 0.99);
}

/* Rates and percentiles over the 'window_s' complete seconds before 'now_s'. */
static void window_figures(const stats_scope *scope, uint64_t now_s, uint32_t window_s,
                           obs_stats_view_t *out) {
    uint64_t buckets[OBS_STATS_LATENCY_BUCKETS] = {0};
    uint64_t requests = 0, errors = 0, rejected = 0, transfers = 0;
    for (uint64_t second = now_s - window_s; second < now_s; second++) {
        const stats_slot *slot = &scope->slots[second % OBS_STATS_SECONDS];
        if (slot->second != second) continue;
        requests += slot->requests;
        errors += slot->errors;
        rejected += slot->rejected;
        transfers += slot->transfers;
        for (uint32_t i = 0; i < OBS_STATS_LATENCY_BUCKETS; i++) buckets[i] += slot->latency[i];
    }
    out->window_s = window_s;
    out->requests_per_s = (double)requests / window_s;
    out->errors_per_s = (double)errors / window_s;
    out->rejected_per_s = (double)rejected / window_s;
    out->transfers_per_s = (double)transfers / window_s;
    out->p50_ms = obs_stats_quantile_ms(buckets, 0.50);
    out->p99_ms = obs_stats_quantile_ms(buckets, 0.99);
}

void obs_stats_view(const char *key_id, uint64_t now_s, uint32_t window_s, uint32_t history_s,
                    obs_stats_view_t *out) {
    if (window_s < 1) window_s = 1;
    if (window_s > OBS_STATS_HISTORY_S_MAX) window_s = OBS_STATS_HISTORY_S_MAX;
    if (history_s > OBS_STATS_HISTORY_S_MAX) history_s = OBS_STATS_HISTORY_S_MAX;
    memset(out, 0, sizeof(*out));
    out->p50_ms = out->p99_ms = NAN;
    out->window_s = window_s;
    stats_scope *scope = key_id == NULL ? &global_scope : scope_find(key_id, false);
    if (scope == NULL) return;
    stats_scope *copy = malloc(sizeof(*copy)); /* read outside the lock: the math is slow */
    if (copy == NULL) return;
    pthread_mutex_lock(&scope->mutex);
    memcpy(copy, scope, sizeof(*copy));
    pthread_mutex_unlock(&scope->mutex);
    out->tracked = true;
    out->requests_total = copy->requests_total;
    out->errors_total = copy->errors_total;
    out->rejected_total = copy->rejected_total;
    out->transfers_total = copy->transfers_total;
    window_figures(copy, now_s, window_s, out);
    out->history_count = history_s;
    for (uint32_t i = 0; i < history_s; i++) {
        uint64_t second = now_s - history_s + i;
        history_point(&copy->slots[second % OBS_STATS_SECONDS], second, &out->history[i]);
    }
    free(copy);
}

void obs_stats_reset(void) {
    pthread_mutex_lock(&table_mutex);
    for (uint32_t i = 0; i < SCOPE_TABLE_SLOTS; i++) {
        if (scope_table[i].scope != NULL) {
            pthread_mutex_destroy(&scope_table[i].scope->mutex);
            free(scope_table[i].scope);
        }
        memset(&scope_table[i], 0, sizeof scope_table[i]);
    }
    scope_count = 0;
    pthread_mutex_unlock(&table_mutex);
    pthread_mutex_lock(&global_scope.mutex);
    global_scope.requests_total = global_scope.errors_total = 0;
    global_scope.rejected_total = global_scope.transfers_total = 0;
    memset(global_scope.slots, 0, sizeof global_scope.slots);
    pthread_mutex_unlock(&global_scope.mutex);
}
