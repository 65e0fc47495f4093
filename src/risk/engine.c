/* risk/engine.c: one decision per authorization. risk_decide() computes the
 * features (past only), runs the rules and the model, picks the outcome, then adds
 * the authorization to the feature state and queues the decision for the store
 * thread. One mutex guards features, rules, model and the review queue: scoring
 * is tens of microseconds, so API threads take turns rather than share state.
 *
 * Outcome: the strongest of (model score vs thresholds) and (rule actions).
 * Restart: the feature snapshot carries the last decision id it includes; the
 * decisions stored after it are replayed through observe(), so the state after a
 * restart equals the state before it (src/risk/README.md). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "risk/risk_internal.h"


const double risk_latency_bounds_us[RISK_LATENCY_BUCKETS] = {10, 25, 50, 100, 250, 500, 1000, 5000};

typedef struct {
    char code[RISK_REASON_BYTES_MAX];
    uint64_t count;
} reason_count;

struct risk_engine {
    pthread_mutex_t lock;
    risk_engine_config_t config;
    char *model_path, *rules_path, *db_path, *snapshot_path; /* owned copies */
    risk_features_t *features;
    risk_model_t *model;
    risk_rules_t *rules;
    risk_store_t *store;
    float review_threshold, decline_threshold;
    uint64_t last_decision_id;
    risk_engine_stats_t stats;
    reason_count reasons[RISK_REASON_KINDS_MAX];
    uint32_t reason_kinds;
    risk_review_t *reviews;          /* sorted by decision number */
    uint32_t review_count;
    uint32_t reviews_decided_held;   /* of those, decided ones: what a compaction can drop */
    risk_ids_t ids;                  /* numbers <-> the ids callers see */
};

static const char *const outcome_names[3] = {"approve", "review", "decline"};

const char *risk_outcome_name(risk_outcome outcome) {
    return (unsigned)outcome < 3 ? outcome_names[outcome] : "unknown";
}

void risk_engine_config_default(risk_engine_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->review_threshold = 0.30f;
    config->decline_threshold = 0.85f;
    risk_features_config_default(&config->features);
}

bool risk_engine_rules_only(const risk_engine_t *engine) { return engine->model == NULL; }

/* ---------------------------------------------------------------- open / close */

static pc_status load_rules(risk_engine_t *e, uint32_t *line_out, char *message,
                            size_t message_bytes) {
    if (e->rules_path == NULL) return PC_OK;
    risk_rules_t *rules = NULL;
    pc_status status = risk_rules_load(e->rules_path, &rules, line_out, message, message_bytes);
    if (status != PC_OK) return status;
    risk_rules_free(e->rules);
    e->rules = rules;
    float review = 0, decline = 0;
    if (risk_rules_thresholds(rules, &review, &decline)) {
        e->review_threshold = review;
        e->decline_threshold = decline;
    }
    return PC_OK;
}

static pc_status load_model(risk_engine_t *e) {
    if (e->config.rules_only || e->model_path == NULL) return PC_OK;
    risk_model_t *model = NULL;
    pc_status status = risk_model_load(e->model_path, &model);
    if (status != PC_OK) return status;
    risk_model_free(e->model);
    e->model = model;
    return PC_OK;
}

static void replay_one(const risk_auth_t *auth, void *ctx) {
    risk_features_observe(ctx, auth);
}

static bool review_room(risk_engine_t *e);

/* Reviews come in decision order; past RISK_REVIEWS_MAX the decided ones make room, so
 * an open review is never left out behind older decided ones. */
static void review_loaded(const risk_review_t *review, void *ctx) {
    risk_engine_t *e = ctx;
    if (review_room(e)) {
        e->reviews[e->review_count++] = *review;
        if (review->state != RISK_REVIEW_OPEN) e->reviews_decided_held++;
    }
    if (review->state == RISK_REVIEW_OPEN) e->stats.reviews_open++;
}

/* Snapshot first (if any), then every stored decision after it; then open reviews. */
static pc_status restore(risk_engine_t *e) {
    uint64_t snapshot_id = 0;
    if (e->snapshot_path != NULL) {
        pc_status status = risk_features_load(e->features, e->snapshot_path, &snapshot_id);
        if (status != PC_OK && status != PC_NOT_FOUND) return status;
    }
    if (e->store == NULL) {
        e->last_decision_id = snapshot_id;
        return PC_OK;
    }
    pc_status status = risk_store_max_decision_id(e->store, &e->last_decision_id);
    if (status != PC_OK) return status;
    if (snapshot_id > e->last_decision_id) return PC_RISK_SNAPSHOT_INVALID; /* another db's */
    status = risk_store_each_auth(e->store, snapshot_id, replay_one, e->features);
    if (status != PC_OK) return status;
    return risk_store_each_review(e->store, review_loaded, e);
}

static char *dup_or_null(const char *s) { return s ? pc_strdup(s) : NULL; }

static pc_status engine_init(risk_engine_t *e, const risk_engine_config_t *config) {
    e->model_path = dup_or_null(config->model_path);
    e->rules_path = dup_or_null(config->rules_path);
    e->db_path = dup_or_null(config->decisions_db_path);
    e->snapshot_path = dup_or_null(config->snapshot_path);
    e->reviews = calloc(RISK_REVIEWS_MAX, sizeof(risk_review_t));
    if (e->reviews == NULL) return PC_NO_MEMORY;
    pc_status status = risk_features_open(&config->features, &e->features);
    if (status != PC_OK) return status;
    uint32_t line = 0;
    char message[160];
    status = load_rules(e, &line, message, sizeof(message));
    if (status != PC_OK) {
        fprintf(stderr, "risk: rules %s line %u: %s\n", e->rules_path, line, message);
        return status;
    }
    status = load_model(e);
    if (status != PC_OK) return status;
    risk_ids_random(&e->ids);
    if (e->db_path != NULL) {
        status = risk_store_open(e->db_path, &e->store);
        char key_path[4096];
        snprintf(key_path, sizeof key_path, "%s.id-key", e->db_path);
        if (status == PC_OK) status = risk_ids_open(&e->ids, e->store, key_path);
        if (status != PC_OK) return status;
    }
    return restore(e);
}

pc_status risk_engine_open(const risk_engine_config_t *config, risk_engine_t **out) {
    *out = NULL;
    if (!(config->review_threshold <= config->decline_threshold)) return PC_INVALID_ARGUMENT;
    risk_engine_t *e = calloc(1, sizeof(*e));
    if (e == NULL) return PC_NO_MEMORY;
    pthread_mutex_init(&e->lock, NULL);
    e->config = *config;
    e->review_threshold = config->review_threshold;
    e->decline_threshold = config->decline_threshold;
    pc_status status = engine_init(e, config);
    if (status != PC_OK) {
        e->snapshot_path = (free(e->snapshot_path), NULL); /* never overwrite on failure */
        risk_engine_close(e);
        return status;
    }
    e->config.model_path = e->model_path;
    e->config.rules_path = e->rules_path;
    e->config.decisions_db_path = e->db_path;
    e->config.snapshot_path = e->snapshot_path;
    *out = e;
    return PC_OK;
}

void risk_engine_close(risk_engine_t *e) {
    if (e == NULL) return;
    if (e->store != NULL) {
        bool flushed = risk_store_flush(e->store) == PC_OK;
        if (flushed && e->snapshot_path != NULL && e->features != NULL) {
            pc_status status = risk_features_save(e->features, e->snapshot_path, e->last_decision_id);
            if (status != PC_OK) fprintf(stderr, "risk: snapshot: %s\n", pc_status_code(status));
        }
        risk_store_close(e->store);
    } else if (e->snapshot_path != NULL && e->features != NULL) {
        pc_status status = risk_features_save(e->features, e->snapshot_path, e->last_decision_id);
        if (status != PC_OK) fprintf(stderr, "risk: snapshot: %s\n", pc_status_code(status));
    }
    risk_features_close(e->features);
    risk_model_free(e->model);
    risk_rules_free(e->rules);
    free(e->reviews);
    free(e->model_path);
    free(e->rules_path);
    free(e->db_path);
    free(e->snapshot_path);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

/* Parses and loads outside the lock (file I/O never holds up decisions), then swaps
 * both in at once: a bad rules file or model changes nothing. */
pc_status risk_engine_reload(risk_engine_t *e, uint32_t *line_out, char *message,
                             size_t message_bytes) {
    *line_out = 0;
    if (message != NULL && message_bytes > 0) message[0] = '\0';
    risk_rules_t *rules = NULL;
    risk_model_t *model = NULL;
    pc_status status = PC_OK;
    if (e->rules_path != NULL) {
        status = risk_rules_load(e->rules_path, &rules, line_out, message, message_bytes);
    }
    if (status == PC_OK && !e->config.rules_only && e->model_path != NULL) {
        status = risk_model_load(e->model_path, &model);
        if (status != PC_OK && message != NULL) {
            snprintf(message, message_bytes, "model %s: %s", e->model_path, pc_status_code(status));
        }
    }
    if (status != PC_OK) {
        risk_rules_free(rules);
        risk_model_free(model);
        return status;
    }
    float review = e->config.review_threshold, decline = e->config.decline_threshold;
    (void)risk_rules_thresholds(rules, &review, &decline);
    pthread_mutex_lock(&e->lock);
    risk_rules_t *old_rules = e->rules;
    risk_model_t *old_model = e->model;
    if (e->rules_path != NULL) e->rules = rules;
    if (model != NULL) e->model = model;
    e->review_threshold = review;
    e->decline_threshold = decline;
    pthread_mutex_unlock(&e->lock);
    if (e->rules_path != NULL) risk_rules_free(old_rules);
    if (model != NULL) risk_model_free(old_model);
    return PC_OK;
}

/* ---------------------------------------------------------------- decide */

static void add_reason(risk_decision_t *d, const char *code, risk_action action) {
    if (d->reason_count == RISK_REASONS_MAX) return;
    snprintf(d->reasons[d->reason_count].code, RISK_REASON_BYTES_MAX, "%s", code);
    d->reasons[d->reason_count].action = action;
    d->reason_count++;
}

/* 'code' as the first reason (the one a declined payment names), the others after it;
 * with the list full the last one gives way. */
static void add_reason_first(risk_decision_t *d, const char *code, risk_action action) {
    uint32_t kept = d->reason_count < RISK_REASONS_MAX ? d->reason_count : RISK_REASONS_MAX - 1;
    memmove(&d->reasons[1], &d->reasons[0], kept * sizeof d->reasons[0]);
    snprintf(d->reasons[0].code, RISK_REASON_BYTES_MAX, "%s", code);
    d->reasons[0].action = action;
    d->reason_count = kept + 1;
}

/* Model thresholds and rule actions -> the strongest outcome. */
static risk_outcome choose_outcome(const risk_engine_t *e, risk_decision_t *d) {
    risk_outcome outcome = RISK_OUTCOME_APPROVE;
    if (!isnan(d->score)) {
        if (d->score >= e->decline_threshold) {
            outcome = RISK_OUTCOME_DECLINE;
            add_reason(d, "model_score_decline", RISK_ACTION_DECLINE);
        } else if (d->score >= e->review_threshold) {
            outcome = RISK_OUTCOME_REVIEW;
            add_reason(d, "model_score_review", RISK_ACTION_REVIEW);
        }
    }
    for (uint32_t i = 0; i < d->reason_count; i++) {
        if (d->reasons[i].action == RISK_ACTION_DECLINE) outcome = RISK_OUTCOME_DECLINE;
        else if (d->reasons[i].action == RISK_ACTION_REVIEW && outcome == RISK_OUTCOME_APPROVE) {
            outcome = RISK_OUTCOME_REVIEW;
        }
    }
    return outcome;
}

static void count_reason(risk_engine_t *e, const char *code) {
    for (uint32_t i = 0; i < e->reason_kinds; i++) {
        if (strcmp(e->reasons[i].code, code) == 0) {
            e->reasons[i].count++;
            return;
        }
    }
    if (e->reason_kinds == RISK_REASON_KINDS_MAX) return;
    snprintf(e->reasons[e->reason_kinds].code, RISK_REASON_BYTES_MAX, "%s", code);
    e->reasons[e->reason_kinds++].count = 1;
}

static void record_stats(risk_engine_t *e, const risk_decision_t *d) {
    e->stats.decisions[d->outcome]++;
    if (!isnan(d->score)) {
        /* Prometheus buckets are "less or equal": 0.1 belongs to le="0.1" */
        int bucket = (int)ceilf(d->score * RISK_SCORE_BUCKETS) - 1;
        if (bucket >= RISK_SCORE_BUCKETS) bucket = RISK_SCORE_BUCKETS - 1;
        if (bucket < 0) bucket = 0;
        e->stats.score_buckets[bucket]++;
        e->stats.score_sum += d->score;
    }
    double us = (double)d->latency_ns / 1000.0;
    for (int i = 0; i < RISK_LATENCY_BUCKETS; i++) {
        if (us <= risk_latency_bounds_us[i]) e->stats.latency_le_us[i]++;
    }
    e->stats.latency_count++;
    e->stats.latency_sum_s += us / 1e6;
    for (uint32_t i = 0; i < d->reason_count; i++) count_reason(e, d->reasons[i].code);
}

/* Keeps room for a new review: drops decided ones (they are in the store). A queue
 * full of open reviews answers at once: scanning it for every review would cost
 * each one RISK_REVIEWS_MAX entries, while a sustained load's reviews (never decided
 * by anyone) keep it full; a scan runs only when a decision freed something. */
static bool review_room(risk_engine_t *e) {
    if (e->review_count < RISK_REVIEWS_MAX) return true;
    if (e->reviews_decided_held == 0) return false;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < e->review_count; i++) {
        if (e->reviews[i].state == RISK_REVIEW_OPEN) e->reviews[kept++] = e->reviews[i];
    }
    e->review_count = kept;
    e->reviews_decided_held = 0;
    e->stats.review_compactions++;
    return kept < RISK_REVIEWS_MAX;
}

/* A review the queue cannot hold could never be decided (its payment would wait for
 * ever): with RISK_REVIEWS_MAX reviews open, the authorization is declined instead. */
static void review_or_decline(risk_engine_t *e, risk_decision_t *d) {
    if (d->outcome != RISK_OUTCOME_REVIEW || review_room(e)) return;
    d->outcome = RISK_OUTCOME_DECLINE;
    add_reason_first(d, "review_queue_full", RISK_ACTION_DECLINE);
}

static void open_review(risk_engine_t *e, const risk_auth_t *a, const risk_decision_t *d) {
    if (!review_room(e)) return; /* review_or_decline made room first */
    risk_review_t *r = &e->reviews[e->review_count++];
    memset(r, 0, sizeof(*r));
    r->decision_id = d->decision_id;
    r->state = RISK_REVIEW_OPEN;
    r->created_s = a->ts_s;
    memcpy(r->payer_id, a->payer_id, sizeof(r->payer_id));
    r->amount_minor = a->amount_minor;
    memcpy(r->currency, a->currency, sizeof(r->currency));
    r->score = d->score;
    e->stats.reviews_open++;
    if (e->store != NULL && risk_store_put_review(e->store, r) != PC_OK) e->stats.store_failed_total++;
}

static pc_status score_locked(risk_engine_t *e, const risk_auth_t *auth, risk_decision_t *out) {
    float row[RISK_FEATURE_COUNT];
    risk_features_compute(e->features, auth, row);
    out->reason_count = risk_rules_eval(e->rules, e->features, auth, out->reasons);
    out->score = NAN;
    if (e->model != NULL) {
        pc_status status = risk_model_score(e->model, row, &out->score);
        if (status != PC_OK) return status;
    }
    out->outcome = choose_outcome(e, out);
    review_or_decline(e, out);
    return PC_OK;
}

pc_status risk_decide(risk_engine_t *e, const risk_auth_t *auth, risk_decision_t *out) {
    const char *field = NULL;
    pc_status status = risk_auth_validate(auth, &field);
    if (status != PC_OK) return status;
    memset(out, 0, sizeof(*out));
    uint64_t start_ns = pc_mono_ns();
    pthread_mutex_lock(&e->lock);
    status = score_locked(e, auth, out);
    if (status == PC_OK) {
        risk_features_observe(e->features, auth);
        out->decision_id = ++e->last_decision_id; /* its number inside, its id outside */
        out->latency_ns = pc_mono_ns() - start_ns;
        record_stats(e, out);
        if (e->store != NULL && risk_store_put_decision(e->store, auth, out) != PC_OK) {
            e->stats.store_failed_total++;
        }
        if (out->outcome == RISK_OUTCOME_REVIEW) open_review(e, auth, out);
        out->decision_id = risk_ids_external(&e->ids, out->decision_id);
    }
    pthread_mutex_unlock(&e->lock);
    return status;
}

void risk_engine_observe(risk_engine_t *e, const risk_auth_t *auth) {
    const char *field = NULL;
    if (risk_auth_validate(auth, &field) != PC_OK) return;
    pthread_mutex_lock(&e->lock);
    risk_features_observe(e->features, auth);
    pthread_mutex_unlock(&e->lock);
}

/* ---------------------------------------------------------------- feedback, reviews */

/* PC_OK when 'owner_id' owns the decision; RISK_DECISION_NOT_FOUND for another's, an
 * unowned one or one not stored (ownership is read from the store, after a flush). */
static pc_status owned_by(risk_engine_t *e, uint64_t decision_id, const char *owner_id) {
    if (e->store == NULL || owner_id[0] == '\0') return PC_RISK_DECISION_NOT_FOUND;
    /* a decision whose batch failed is not stored: it reads as missing */
    pc_status flushed = risk_store_flush(e->store);
    (void)flushed;
    char owner[RISK_KEY_SIZE];
    pc_status status = risk_store_decision_owner(e->store, decision_id, owner, sizeof owner);
    if (status == PC_NOT_FOUND || (status == PC_OK && strcmp(owner, owner_id) != 0)) {
        return PC_RISK_DECISION_NOT_FOUND;
    }
    return status;
}

pc_status risk_feedback(risk_engine_t *e, uint64_t id, bool is_fraud, const char *owner_id) {
    uint64_t decision_id = risk_ids_number(&e->ids, id); /* 0: no decision has this id */
    pthread_mutex_lock(&e->lock);
    bool known = decision_id >= 1 && decision_id <= e->last_decision_id;
    pthread_mutex_unlock(&e->lock);
    /* an owner's check looks the same (a flush and a read) for any id: no timing tells */
    pc_status status = owner_id != NULL ? owned_by(e, decision_id, owner_id) : PC_OK;
    if (status != PC_OK) return status;
    if (!known) return PC_RISK_DECISION_NOT_FOUND;
    if (e->store == NULL) return PC_OK;
    return risk_store_put_feedback(e->store, decision_id, is_fraud, (int64_t)(pc_wall_ns() / 1000000000ull));
}

static risk_review_t *review_find(risk_engine_t *e, uint64_t decision_id) {
    uint32_t lo = 0, hi = e->review_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (e->reviews[mid].decision_id < decision_id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < e->review_count && e->reviews[lo].decision_id == decision_id) return &e->reviews[lo];
    return NULL;
}

uint32_t risk_reviews_list(risk_engine_t *e, risk_review_state state, uint64_t after_id,
                           risk_review_t *out, uint32_t max) {
    uint64_t after = risk_ids_number(&e->ids, after_id); /* the queue's order is the numbers' */
    if (after == 0 && after_id != 0) return 0;           /* after no decision: nothing */
    uint32_t n = 0;
    pthread_mutex_lock(&e->lock);
    for (uint32_t i = 0; i < e->review_count && n < max; i++) {
        const risk_review_t *r = &e->reviews[i];
        if (r->decision_id > after && r->state == state) {
            out[n] = *r;
            out[n++].decision_id = risk_ids_external(&e->ids, r->decision_id);
        }
    }
    pthread_mutex_unlock(&e->lock);
    return n;
}

pc_status risk_review_decide(risk_engine_t *e, uint64_t id, bool approve,
                             const char *decided_by, int64_t now_s, risk_review_t *out) {
    if (decided_by == NULL || !pc_id_valid(decided_by)) return PC_ID_INVALID;
    uint64_t decision_id = risk_ids_number(&e->ids, id);
    pthread_mutex_lock(&e->lock);
    risk_review_t *r = decision_id != 0 ? review_find(e, decision_id) : NULL;
    pc_status status = PC_OK;
    if (r == NULL) {
        status = PC_RISK_REVIEW_NOT_FOUND;
    } else if (r->state != RISK_REVIEW_OPEN) {
        status = PC_RISK_REVIEW_ALREADY_DECIDED;
        *out = *r;
    } else {
        r->state = approve ? RISK_REVIEW_APPROVED : RISK_REVIEW_DECLINED;
        r->decided_s = now_s;
        snprintf(r->decided_by, sizeof(r->decided_by), "%s", decided_by);
        e->stats.reviews_open--;
        e->reviews_decided_held++;
        *out = *r;
        if (e->store != NULL && risk_store_put_review(e->store, r) != PC_OK) {
            e->stats.store_failed_total++;
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (r != NULL) out->decision_id = id;
    return status;
}

/* ---------------------------------------------------------------- stats */

void risk_engine_stats(risk_engine_t *e, risk_engine_stats_t *out) {
    pthread_mutex_lock(&e->lock);
    *out = e->stats;
    risk_features_stats(e->features, &out->features);
    out->rules_only = e->model == NULL;
    if (e->store != NULL) out->store_failed_total += risk_store_failed_total(e->store);
    pthread_mutex_unlock(&e->lock);
}

void risk_engine_reasons_each(risk_engine_t *e,
                              void (*fn)(const char *code, uint64_t count, void *ctx), void *ctx) {
    reason_count copy[RISK_REASON_KINDS_MAX];
    pthread_mutex_lock(&e->lock);
    uint32_t n = e->reason_kinds;
    memcpy(copy, e->reasons, n * sizeof(reason_count));
    pthread_mutex_unlock(&e->lock);
    for (uint32_t i = 0; i < n; i++) fn(copy[i].code, copy[i].count, ctx);
}

/* Flushes stored decisions (tests, shutdown paths that keep the engine). */
pc_status risk_engine_flush(risk_engine_t *e) {
    return e->store != NULL ? risk_store_flush(e->store) : PC_OK;
}
