/* risk/risk.h: the risk engine's contract. One call scores an authorization:
 * risk_decide() takes the authorization in, gives approve / review / decline out,
 * with the model's score and the reason codes of every rule that hit.
 *
 * Inside (one concern a file):
 *   features.c   online features from past authorizations only (bounded state)
 *   reference.c  FX rates, country time zones, MCC risk tiers (reference tables)
 *   rules.c      the rules file: limits, velocity, blocklists, MCC by hour; AML.c
 *   model.c      XGBoost C API: train, save, load; scores by trees.c's walk
 *   trees.c      the model's trees as flat arrays, walked with XGBoost's arithmetic
 *   metrics.c    ROC-AUC, average precision, recall at a false-positive rate
 *   csv.c        the authorization CSV (docs/risk.md)
 *   engine.c     features + rules + model -> decision; review queue
 *   store.c      decisions in their own SQLite file, written by their own thread
 * Train, eval and serve compute features with the same risk_features_compute():
 * there is no second code path. Scores are floats and never touch money. */
#ifndef PAYCORE_RISK_H
#define PAYCORE_RISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "paycore/limits.h" /* the RISK_ bounds */
#include "paycore/status.h"

/* ---- the authorization ---- */
typedef enum {
    RISK_CHANNEL_CARD_PRESENT = 0,
    RISK_CHANNEL_ECOMMERCE = 1,
    RISK_CHANNEL_WALLET = 2,
    RISK_CHANNEL_BANK_TRANSFER = 3,
    RISK_CHANNEL_COUNT = 4,
} risk_channel;

typedef struct {
    int64_t txn_id;                  /* 0 when the caller has none */
    int64_t ts_s;                    /* Unix seconds, UTC */
    char payer_id[RISK_KEY_SIZE];
    char payee_id[RISK_KEY_SIZE];
    int64_t amount_minor;            /* > 0, minor units of 'currency' */
    char currency[4];                /* ISO 4217 */
    uint16_t mcc;                    /* 0..9999 */
    risk_channel channel;
    char country_payer[3];           /* ISO 3166-1 alpha-2 */
    char country_merchant[3];
    char device_id[RISK_KEY_SIZE];   /* "" when absent */
    char ip_prefix[16];              /* "a.b.c" or "" */
    int32_t account_age_days;        /* >= 0 */
    int8_t is_fraud;                 /* label: -1 unknown, 0, 1 (never used to score) */
    char owner_id[RISK_KEY_SIZE];    /* the merchant the decision belongs to (its payment's or
                                        its key's); "" none: an admin's. Stored, never scored */
    uint64_t scope;                  /* 0: payer, device and address keys in the shared feature
                                        state; else in this scope's own (risk_auth_scope) */
} risk_auth_t;

/* Fills 'out' from strings (the CSV's or the API's); any bad field is an error with
 * the field's name in 'field_out' (borrowed, static). Nothing is half-filled on error. */
PC_MUST_USE pc_status risk_auth_set_channel(risk_auth_t *auth, const char *channel);
PC_MUST_USE pc_status risk_auth_validate(const risk_auth_t *auth, const char **field_out);
const char *risk_channel_name(risk_channel channel);
/* Gives the authorization to 'owner_id' and puts its payer, device and address in that
 * owner's own scope of the feature state: the decision reads and feeds only the counters
 * of the same owner's scoped decisions (a merchant's POST /v1/risk/decisions neither
 * sees nor moves another merchant's payers, devices or addresses, nor those of
 * payments). The ids themselves stay as they are: blocklists still apply. */
void risk_auth_scope(risk_auth_t *auth, const char *owner_id);

/* ---- CSV (csv.c): the columns of docs/risk.md, header first ---- */
typedef struct risk_csv risk_csv_t;
PC_MUST_USE pc_status risk_csv_open(const char *path, risk_csv_t **out);
/* PC_OK with a row, PC_NOT_FOUND at the end, RISK_CSV_INVALID with the line number. */
PC_MUST_USE pc_status risk_csv_next(risk_csv_t *csv, risk_auth_t *out);
uint64_t risk_csv_line(const risk_csv_t *csv);
uint64_t risk_csv_bytes_read(const risk_csv_t *csv);
uint64_t risk_csv_bytes_total(const risk_csv_t *csv);
void risk_csv_close(risk_csv_t *csv);

/* ---- reference tables (reference.c) ---- */
/* Reference rate: currency units per 1 USD; false when the currency is unknown. */
bool risk_fx_per_usd(const char *currency, double *per_usd_out);
/* Amount in US dollars (a float for scoring only; unknown currency: minor / 100). */
double risk_amount_usd(int64_t amount_minor, const char *currency);
/* Local hour 0..23 from the payer's country; -1 when the country is unknown. */
int risk_local_hour(const char *country, int64_t ts_s);
/* 0 ordinary, 1 elevated, 2 high (cash, quasi-cash, gambling, transfers, ...). */
int risk_mcc_tier(uint16_t mcc);
/* The home currency of a country; NULL when unknown. */
const char *risk_country_currency(const char *country);

/* ---- online features (features.c) ---- */
#define X_FEATURES(X)                 \
    X(amount_usd_log)                 \
    X(payer_count_prior_log)          \
    X(payer_count_10m)                \
    X(payer_count_1h)                 \
    X(payer_count_24h)                \
    X(payer_sum_usd_1h_log)           \
    X(payer_sum_usd_24h_log)          \
    X(payer_distinct_merchants_24h)   \
    X(payer_distinct_devices_24h)     \
    X(payer_distinct_countries_24h)   \
    X(payer_cross_border_24h)         \
    X(payer_novel_events_24h)         \
    X(payer_same_merchant_1h)         \
    X(payer_secs_since_prev_log)      \
    X(payer_secs_since_first_log)     \
    X(payer_amount_ratio_mean)        \
    X(payer_amount_ratio_max)         \
    X(payer_amount_z)                 \
    X(payer_device_seen)              \
    X(payer_country_seen)             \
    X(payer_ip_seen)                  \
    X(payer_merchant_seen)            \
    X(payer_channel_seen)             \
    X(payer_mcc_tier_seen)            \
    X(account_age_days)               \
    X(local_hour)                     \
    X(channel)                        \
    X(mcc)                            \
    X(mcc_tier)                       \
    X(cross_border)                   \
    X(currency_foreign)               \
    X(amount_round)                   \
    X(merchant_count_1h)              \
    X(merchant_count_24h)             \
    X(merchant_age_log)               \
    X(merchant_amount_z)              \
    X(merchant_new_payers_24h)        \
    X(merchant_cross_border_frac)     \
    X(device_count_1h)                \
    X(device_count_24h)               \
    X(device_distinct_payers)         \
    X(device_age_log)                 \
    X(ip_count_1h)                    \
    X(ip_count_24h)                   \
    X(ip_distinct_payers)

typedef enum {
#define X(name) RISK_F_##name,
    X_FEATURES(X)
#undef X
    RISK_FEATURE_COUNT
} risk_feature;

const char *risk_feature_name(risk_feature feature);

typedef struct risk_features risk_features_t;
typedef struct {
    uint32_t payers_max;     /* key caps: past them a new key is not tracked */
    uint32_t entities_max;
    uint32_t idle_s;         /* keys idle this long are evicted */
} risk_features_config_t;

typedef struct {
    uint64_t payers;             /* keys held now */
    uint64_t entities;
    uint64_t evicted_total;      /* idle keys evicted */
    uint64_t dropped_total;      /* new keys not tracked: a cap was hit (metric) */
    uint64_t observed_total;
    uint64_t memory_bytes;       /* everything allocated for the state */
} risk_features_stats_t;

void risk_features_config_default(risk_features_config_t *config);
PC_MUST_USE pc_status risk_features_open(const risk_features_config_t *config,
                                         risk_features_t **out);
void risk_features_close(risk_features_t *features);
/* Features of 'auth' from the past only; does not change the state. NaN = missing. */
void risk_features_compute(const risk_features_t *features, const risk_auth_t *auth,
                           float out[RISK_FEATURE_COUNT]);
/* Adds 'auth' to the state (after it was scored). */
void risk_features_observe(risk_features_t *features, const risk_auth_t *auth);
/* Evicts keys idle since before now_s - idle_s; returns how many. */
uint64_t risk_features_evict_idle(risk_features_t *features, int64_t now_s);
void risk_features_stats(const risk_features_t *features, risk_features_stats_t *out);
/* Snapshot: a binary file (magic, version, checksum); load refuses anything else
 * with RISK_SNAPSHOT_INVALID and leaves 'features' unchanged. */
/* 'tag' is stored with the state (the engine: the last decision id it holds). */
PC_MUST_USE pc_status risk_features_save(const risk_features_t *features, const char *path,
                                         uint64_t tag);
PC_MUST_USE pc_status risk_features_load(risk_features_t *features, const char *path,
                                         uint64_t *tag_out);
/* The per-payer state the rules read (AML needs more than the model's features). */
typedef struct {
    uint32_t count_24h;
    int64_t sum_usd_cents_24h;
    uint32_t count_window;       /* payments inside 'window_s' */
    int64_t sum_usd_cents_window;
    uint32_t near_threshold_window; /* of them, in [low, high) USD cents */
    bool found;
} risk_payer_view_t;
/* 'scope': risk_auth_t.scope of the authorization being scored. */
void risk_features_payer_view(const risk_features_t *features, const char *payer_id,
                              uint64_t scope, int64_t now_s, int64_t window_s,
                              int64_t low_usd_cents, int64_t high_usd_cents,
                              risk_payer_view_t *out);
/* Inflow seen by a payee (as beneficiary) and how many distinct payers it has had
 * in the last 24 h; 'first_seen_s' is 0 when unknown. */
typedef struct {
    bool found;
    int64_t first_seen_s;
    uint32_t distinct_payers_24h;
    int64_t inflow_usd_cents_24h;    /* decayed with a 24 h time constant */
    bool payer_seen_24h;             /* 'payer_id' is among the distinct payers */
} risk_payee_view_t;
/* 'payer_id' may be NULL; 'scope' is that of the payee's key (0: a merchant's own). */
void risk_features_payee_view(const risk_features_t *features, const char *payee_id,
                              uint64_t scope, const char *payer_id, int64_t now_s,
                              risk_payee_view_t *out);

/* ---- metrics (metrics.c) ---- */
typedef struct {
    double roc_auc;
    double pr_auc;               /* average precision */
    double recall_at_1pct_fpr;
    uint64_t rows;
    uint64_t positives;
} risk_metrics_t;
/* 'scores' and 'labels' (0/1) of 'count' rows; ties handled as scikit-learn does.
 * Sorts a copy; 'labels' may hold no positives or no negatives (metrics then NaN). */
PC_MUST_USE pc_status risk_metrics_compute(const float *scores, const uint8_t *labels,
                                           size_t count, risk_metrics_t *out);
double risk_recall_at_fpr(const float *scores, const uint8_t *labels, size_t count,
                          double fpr_max);

/* ---- model (model.c) ---- */
typedef struct risk_model risk_model_t;
/* Validation metrics (the held-out last training days) at the chosen round. */
typedef struct {
    double valid_roc_auc;
    double valid_recall_at_1pct_fpr;
} risk_train_report_t;
typedef struct {
    uint32_t rounds_max;         /* boosting rounds before early stopping */
    uint32_t early_stop_rounds;  /* stop when validation has not improved this long */
    uint32_t max_depth;
    double eta;
    uint32_t nthread;
    uint32_t rounds_fixed;       /* > 0: no selection, exactly this many rounds */
    risk_train_report_t *report_out; /* optional: filled by the selection */
    bool verbose_progress;       /* progress on stderr */
} risk_train_config_t;
void risk_train_config_default(risk_train_config_t *config);
/* Trains on rows [0, train_count) with rows [train_count - valid_count, train_count)
 * held out for early stopping, then refits on all training rows with the best round
 * count. Features are row-major RISK_FEATURE_COUNT floats. */
PC_MUST_USE pc_status risk_model_train(const float *features, const uint8_t *labels,
                                       size_t train_count, size_t valid_count,
                                       const risk_train_config_t *config,
                                       risk_model_t **out, uint32_t *rounds_out);
/* Missing file: RISK_MODEL_MISSING; unreadable or wrong features: RISK_MODEL_INVALID. */
PC_MUST_USE pc_status risk_model_load(const char *path, risk_model_t **out);
PC_MUST_USE pc_status risk_model_save(const risk_model_t *model, const char *path);
/* One row: probability of fraud in [0, 1]. Thread-safe per model? No: one caller at
 * a time (the engine holds its lock). Scored by paycore's walk of the model's trees,
 * which gives XGBoost's scores bit for bit (checked at load), or by XGBoost itself
 * when the model has something the walk does not evaluate (logged at load). */
PC_MUST_USE pc_status risk_model_score(risk_model_t *model, const float row[RISK_FEATURE_COUNT],
                                       float *score_out);
/* Many rows (eval): 'scores_out' has 'count' slots. */
PC_MUST_USE pc_status risk_model_score_batch(risk_model_t *model, const float *rows,
                                             size_t count, float *scores_out);
/* The reference: XGBoost's own prediction (XGBoosterPredictFromDense), always. */
PC_MUST_USE pc_status risk_model_score_xgboost(risk_model_t *model,
                                               const float row[RISK_FEATURE_COUNT],
                                               float *score_out);
PC_MUST_USE pc_status risk_model_score_batch_xgboost(risk_model_t *model, const float *rows,
                                                     size_t count, float *scores_out);
/* True when risk_model_score walks the trees itself; false: XGBoost scores. */
bool risk_model_walks_trees(const risk_model_t *model);
void risk_model_free(risk_model_t *model);

/* ---- rules and AML (rules.c) ---- */
typedef struct risk_rules risk_rules_t;
typedef enum { RISK_ACTION_REVIEW = 1, RISK_ACTION_DECLINE = 2 } risk_action;
typedef struct {
    char code[RISK_REASON_BYTES_MAX];   /* stable reason code, e.g. "velocity_1h" */
    risk_action action;
} risk_reason_t;
/* Parses a rules file. On error returns RISK_RULES_INVALID with the 1-based line
 * number in 'line_out' and a message in 'message' (may be NULL). */
PC_MUST_USE pc_status risk_rules_load(const char *path, risk_rules_t **out,
                                      uint32_t *line_out, char *message, size_t message_bytes);
PC_MUST_USE pc_status risk_rules_parse(const char *text, risk_rules_t **out,
                                       uint32_t *line_out, char *message, size_t message_bytes);
void risk_rules_free(risk_rules_t *rules);
uint32_t risk_rules_count(const risk_rules_t *rules);
/* The file's `thresholds review=.. decline=..` line, when it has one. */
bool risk_rules_thresholds(const risk_rules_t *rules, float *review, float *decline);
/* Every rule that hits 'auth' (state before it) adds a reason; returns the count. */
uint32_t risk_rules_eval(const risk_rules_t *rules, const risk_features_t *features,
                         const risk_auth_t *auth, risk_reason_t reasons[RISK_REASONS_MAX]);

/* ---- the engine: one call per authorization (engine.c) ---- */
typedef enum {
    RISK_OUTCOME_APPROVE = 0,
    RISK_OUTCOME_REVIEW = 1,
    RISK_OUTCOME_DECLINE = 2,
} risk_outcome;
const char *risk_outcome_name(risk_outcome outcome);

/* Decision ids: what callers see of a decision's number (1, 2, ... per engine, in
 * the decisions file) is an opaque id, a keyed permutation of it in [2^52, 2^53)
 * that tells nothing of order or volume (ids.c); numbers stored before the engine
 * had opaque ids keep the number as their id. Without a decisions file the key is
 * random per process. Every decision_id in and out of this
 * header is such an id. */
typedef struct {
    uint64_t decision_id;         /* its id (above) */
    risk_outcome outcome;
    float score;                  /* model probability; NaN in rules-only mode */
    uint32_t reason_count;
    risk_reason_t reasons[RISK_REASONS_MAX];
    uint64_t latency_ns;          /* features + rules + model */
} risk_decision_t;

typedef struct risk_engine risk_engine_t;
typedef struct {
    const char *model_path;       /* NULL or rules_only: no model */
    const char *rules_path;       /* NULL: no rules */
    const char *decisions_db_path;/* NULL: decisions are not stored (bench, tests); else its
                                     decision id key is "<path>.id-key" (0600, made at first start) */
    const char *snapshot_path;    /* NULL: no feature snapshot */
    bool rules_only;              /* run without a model (score NaN) */
    float review_threshold;       /* score >= review: review */
    float decline_threshold;      /* score >= decline: decline */
    risk_features_config_t features;
} risk_engine_config_t;
void risk_engine_config_default(risk_engine_config_t *config);
PC_MUST_USE pc_status risk_engine_open(const risk_engine_config_t *config, risk_engine_t **out);
/* Stores a snapshot (when configured), flushes decisions, frees everything. */
void risk_engine_close(risk_engine_t *engine);
/* THE call: features (past only) + rules + model -> decision; then the authorization
 * joins the features' state and the decision is queued for storage. Thread-safe. */
PC_MUST_USE pc_status risk_decide(risk_engine_t *engine, const risk_auth_t *auth,
                                  risk_decision_t *out);
/* Reloads rules (and the model when configured): a bad file keeps the old ones. */
PC_MUST_USE pc_status risk_engine_reload(risk_engine_t *engine, uint32_t *line_out,
                                         char *message, size_t message_bytes);
bool risk_engine_rules_only(const risk_engine_t *engine);
/* Adds an authorization decided elsewhere (warm-up from history) to the feature
 * state without deciding or storing it. */
void risk_engine_observe(risk_engine_t *engine, const risk_auth_t *auth);
/* Waits until every decision so far is durable in the decisions file. */
PC_MUST_USE pc_status risk_engine_flush(risk_engine_t *engine);

/* Feedback: a confirmed fraud (true) or a false alarm (false) for a decision. 'owner_id'
 * NULL: any decision (an admin); else only a decision stored with that owner: any other
 * (another merchant's, an admin's, one stored before owners were) is
 * RISK_DECISION_NOT_FOUND exactly as a decision that does not exist, and nothing is
 * recorded. Checking an owner waits for the decisions queued so far to be stored. */
PC_MUST_USE pc_status risk_feedback(risk_engine_t *engine, uint64_t decision_id, bool is_fraud,
                                    const char *owner_id);

/* Review queue: every REVIEW decision opens one; decided once, by someone, at a time. */
typedef enum { RISK_REVIEW_OPEN = 0, RISK_REVIEW_APPROVED = 1, RISK_REVIEW_DECLINED = 2 } risk_review_state;
typedef struct {
    uint64_t decision_id;
    risk_review_state state;
    int64_t created_s;
    int64_t decided_s;            /* 0 while open */
    char decided_by[RISK_KEY_SIZE];
    char payer_id[RISK_KEY_SIZE];
    int64_t amount_minor;
    char currency[4];
    float score;
} risk_review_t;
/* Lists up to 'max' reviews in 'state' with decision_id > 'after_id'. */
uint32_t risk_reviews_list(risk_engine_t *engine, risk_review_state state, uint64_t after_id,
                           risk_review_t *out, uint32_t max);
/* OPEN -> APPROVED/DECLINED; RISK_REVIEW_ALREADY_DECIDED when not open. */
PC_MUST_USE pc_status risk_review_decide(risk_engine_t *engine, uint64_t decision_id,
                                         bool approve, const char *decided_by, int64_t now_s,
                                         risk_review_t *out);

/* Counters for /metrics (any thread). */
#define RISK_SCORE_BUCKETS 10
#define RISK_LATENCY_BUCKETS 8
typedef struct {
    uint64_t decisions[3];                 /* by outcome */
    uint64_t score_buckets[RISK_SCORE_BUCKETS]; /* [0,0.1), ... [0.9,1] */
    double score_sum;
    uint64_t latency_le_us[RISK_LATENCY_BUCKETS]; /* cumulative, see risk_latency_bounds_us */
    uint64_t latency_count;
    double latency_sum_s;
    uint64_t reviews_open;
    uint64_t review_compactions;   /* scans of the full queue that dropped decided reviews */
    uint64_t store_failed_total;
    risk_features_stats_t features;
    bool rules_only;
} risk_engine_stats_t;
extern const double risk_latency_bounds_us[RISK_LATENCY_BUCKETS];
void risk_engine_stats(risk_engine_t *engine, risk_engine_stats_t *out);
/* Calls 'fn' for every reason code seen so far with its count. */
void risk_engine_reasons_each(risk_engine_t *engine,
                              void (*fn)(const char *code, uint64_t count, void *ctx), void *ctx);

#endif
