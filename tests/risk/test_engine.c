/* Goal: the engine decides at its thresholds, opens reviews that can be decided
 * exactly once, stores every decision durably and comes back after a restart with
 * the same feature state; model files that are missing or corrupt are clear errors;
 * a model trained on a slice of the dev data ranks far better than chance; decision
 * ids tell nothing of order or volume, stay valid across restarts, and ids handed out
 * before opaque ids (the numbers) keep working.
 * Method: real SQLite decision files and snapshots under /tmp, a real XGBoost model
 * trained here on the first rows of the dev data (PAYCORE_SHARED; absent: a failure
 * under CI, else the model tests are reported not run). */
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "risk/risk.h"
#include "risk_test_util.h"
#include "test.h"

#define T0 1717200000
#define SLICE_ROWS 30000

static char model_path[256];
static bool have_model;

/* ---- model: train on a slice, eval, save, load, errors ---- */

static void test_train_eval_round_trip(void) {
    char buf[512];
    const char *data = dev_data_path(buf, sizeof(buf));
    if (data == NULL) return; /* test_input_missing said so */
    risk_features_config_t fc;
    risk_features_config_default(&fc);
    fc.payers_max = 65536;
    fc.entities_max = 65536;
    risk_features_t *f = NULL;
    ASSERT_STATUS(risk_features_open(&fc, &f), PC_OK);
    risk_csv_t *csv = NULL;
    ASSERT_STATUS(risk_csv_open(data, &csv), PC_OK);
    float *rows = malloc((size_t)SLICE_ROWS * RISK_FEATURE_COUNT * sizeof(float));
    uint8_t *labels = malloc(SLICE_ROWS);
    size_t n = 0;
    risk_auth_t a;
    while (n < SLICE_ROWS && risk_csv_next(csv, &a) == PC_OK) {
        risk_features_compute(f, &a, rows + n * RISK_FEATURE_COUNT);
        risk_features_observe(f, &a);
        labels[n++] = (uint8_t)a.is_fraud;
    }
    ASSERT_EQ(n, SLICE_ROWS);
    risk_csv_close(csv);
    risk_features_close(f);
    size_t train = n * 4 / 5;
    risk_train_config_t tc;
    risk_train_config_default(&tc);
    tc.rounds_max = 40;
    tc.early_stop_rounds = 10;
    tc.max_depth = 4;
    tc.eta = 0.2;
    risk_model_t *m = NULL;
    uint32_t rounds = 0;
    ASSERT_STATUS(risk_model_train(rows, labels, train, train / 5, &tc, &m, &rounds), PC_OK);
    ASSERT_TRUE(rounds >= 1);
    temp_path(model_path, sizeof(model_path), "model.json");
    ASSERT_STATUS(risk_model_save(m, model_path), PC_OK);
    risk_model_free(m);
    ASSERT_STATUS(risk_model_load(model_path, &m), PC_OK);
    float *scores = malloc((n - train) * sizeof(float));
    ASSERT_STATUS(risk_model_score_batch(m, rows + train * RISK_FEATURE_COUNT, n - train, scores), PC_OK);
    risk_metrics_t metrics;
    ASSERT_STATUS(risk_metrics_compute(scores, labels + train, n - train, &metrics), PC_OK);
    printf("slice roc_auc=%.4f pr_auc=%.4f recall_at_1pct_fpr=%.4f rounds=%u positives=%llu\n",
           metrics.roc_auc, metrics.pr_auc, metrics.recall_at_1pct_fpr, rounds,
           (unsigned long long)metrics.positives);
    ASSERT_TRUE(metrics.positives > 0);
    ASSERT_TRUE(metrics.roc_auc > 0.8);
    /* one row in place equals the batch's answer */
    float one = 0;
    ASSERT_STATUS(risk_model_score(m, rows + train * RISK_FEATURE_COUNT, &one), PC_OK);
    ASSERT_TRUE(fabsf(one - scores[0]) < 1e-6f);
    risk_model_free(m);
    free(scores);
    free(rows);
    free(labels);
    have_model = true;
}

static void write_file(const char *path, const char *text) {
    FILE *file = fopen(path, "w");
    ASSERT_TRUE(file != NULL);
    fputs(text, file);
    fclose(file);
}

static void test_model_file_errors(void) {
    risk_model_t *m = NULL;
    ASSERT_STATUS(risk_model_load("/nonexistent/model.json", &m), PC_RISK_MODEL_MISSING);
    ASSERT_TRUE(m == NULL);
    char path[256];
    temp_path(path, sizeof(path), "corrupt.json");
    write_file(path, "{\"learner\": {\"this is\": not a model");
    ASSERT_STATUS(risk_model_load(path, &m), PC_RISK_MODEL_INVALID);
    write_file(path, "");
    ASSERT_STATUS(risk_model_load(path, &m), PC_RISK_MODEL_INVALID);
    write_file(path, "\x01\x02garbage\xff");
    ASSERT_STATUS(risk_model_load(path, &m), PC_RISK_MODEL_INVALID);
    /* the engine refuses to start without its model, unless told rules-only */
    risk_engine_config_t c;
    risk_engine_config_default(&c);
    c.model_path = path;
    c.features.payers_max = c.features.entities_max = 1024;
    risk_engine_t *e = NULL;
    ASSERT_STATUS(risk_engine_open(&c, &e), PC_RISK_MODEL_INVALID);
    ASSERT_TRUE(e == NULL);
    c.rules_only = true;
    ASSERT_STATUS(risk_engine_open(&c, &e), PC_OK);
    ASSERT_TRUE(risk_engine_rules_only(e));
    risk_decision_t d;
    risk_auth_t a = auth_make(T0, "P1", "M1", 100);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_TRUE(isnan(d.score));
    ASSERT_EQ(d.outcome, RISK_OUTCOME_APPROVE);
    risk_engine_close(e);
    unlink(path);
}

/* A score exactly at the review threshold reviews; just under approves; at the
 * decline threshold declines. */
static void test_model_thresholds(void) {
    if (!have_model) return; /* no dev data: test_input_missing said so */
    risk_engine_config_t c;
    risk_engine_config_default(&c);
    c.model_path = model_path;
    c.features.payers_max = c.features.entities_max = 1024;
    risk_engine_t *e = NULL;
    ASSERT_STATUS(risk_engine_open(&c, &e), PC_OK);
    risk_auth_t a = auth_make(T0, "P1", "M1", 123456);
    risk_decision_t d;
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK); /* learn the score of a first payment */
    float score = d.score;
    risk_engine_close(e);
    ASSERT_TRUE(score > 0.0f && score < 1.0f);
    struct { float review, decline; risk_outcome want; } cases[] = {
        {score, 1.0f, RISK_OUTCOME_REVIEW},
        {nextafterf(score, 2.0f), 1.0f, RISK_OUTCOME_APPROVE},
        {0.0f, score, RISK_OUTCOME_DECLINE},
        {0.0f, nextafterf(score, 2.0f), RISK_OUTCOME_REVIEW},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c.review_threshold = cases[i].review;
        c.decline_threshold = cases[i].decline;
        ASSERT_STATUS(risk_engine_open(&c, &e), PC_OK);
        ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
        ASSERT_TRUE(d.score == score);
        if (d.outcome != cases[i].want) TEST_FAIL("case %zu: outcome %s", i, risk_outcome_name(d.outcome));
        risk_engine_close(e);
    }
}

/* ---- engine: rules, reviews, storage, restart ---- */

static risk_engine_t *open_rules_engine(const char *rules, const char *db, const char *snapshot) {
    risk_engine_config_t c;
    risk_engine_config_default(&c);
    c.rules_only = true;
    c.rules_path = rules;
    c.decisions_db_path = db;
    c.snapshot_path = snapshot;
    c.features.payers_max = c.features.entities_max = 4096;
    risk_engine_t *e = NULL;
    ASSERT_STATUS(risk_engine_open(&c, &e), PC_OK);
    return e;
}

/* An id clients see: opaque, in [2^52, 2^53) (exact as a JSON number). */
static bool opaque(uint64_t id) { return id >= (1ull << 52) && id < (1ull << 53); }

static int u64_order(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void key_path_of(char out[256], const char *db) { snprintf(out, 256, "%s.id-key", db); }

static void decisions_remove(const char *db) {
    char key[256];
    key_path_of(key, db);
    unlink(db);
    unlink(key);
}

static void test_reviews_and_restart(void) {
    char rules[256], db[256], snap[256];
    temp_path(rules, sizeof(rules), "engine.rules");
    temp_path(db, sizeof(db), "decisions.db");
    temp_path(snap, sizeof(snap), "features.snap");
    write_file(rules, "amount_limit currency=USD max_minor=100000\nblock payer=P-bad\n");
    risk_engine_t *e = open_rules_engine(rules, db, snap);
    risk_decision_t d;
    risk_auth_t a = auth_make(T0, "P1", "M1", 100001);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_REVIEW);
    ASSERT_TRUE(opaque(d.decision_id));
    ASSERT_STR_EQ(d.reasons[0].code, "amount_limit");
    uint64_t review_id = d.decision_id;
    a = auth_make(T0 + 10, "P-bad", "M1", 100);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_DECLINE);
    uint64_t decline_id = d.decision_id;
    ASSERT_TRUE(opaque(decline_id) && decline_id != review_id);
    a = auth_make(T0 + 20, "P1", "M2", 500);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_APPROVE);
    risk_review_t list[8];
    ASSERT_EQ(risk_reviews_list(e, RISK_REVIEW_OPEN, 0, list, 8), 1);
    ASSERT_EQ(list[0].decision_id, review_id);
    risk_review_t r;
    ASSERT_STATUS(risk_review_decide(e, review_id, true, "alice", T0 + 100, &r), PC_OK);
    ASSERT_EQ(r.state, RISK_REVIEW_APPROVED);
    ASSERT_STR_EQ(r.decided_by, "alice");
    ASSERT_STATUS(risk_review_decide(e, review_id, false, "bob", T0 + 200, &r),
                  PC_RISK_REVIEW_ALREADY_DECIDED);
    ASSERT_EQ(r.state, RISK_REVIEW_APPROVED);   /* unchanged */
    ASSERT_STR_EQ(r.decided_by, "alice");
    ASSERT_STATUS(risk_review_decide(e, decline_id, true, "alice", T0, &r), PC_RISK_REVIEW_NOT_FOUND);
    ASSERT_STATUS(risk_review_decide(e, 2, true, "alice", T0, &r), PC_RISK_REVIEW_NOT_FOUND); /* a number */
    ASSERT_STATUS(risk_review_decide(e, review_id, true, "bad id!", T0, &r), PC_ID_INVALID);
    ASSERT_STATUS(risk_feedback(e, decline_id, true, NULL), PC_OK);
    ASSERT_STATUS(risk_feedback(e, 2, true, NULL), PC_RISK_DECISION_NOT_FOUND); /* numbers are no ids */
    ASSERT_STATUS(risk_feedback(e, 99, true, NULL), PC_RISK_DECISION_NOT_FOUND);
    ASSERT_STATUS(risk_feedback(e, decline_id ^ 1, true, NULL), PC_RISK_DECISION_NOT_FOUND);
    risk_auth_t probe = auth_make(T0 + 30, "P1", "M3", 100);
    risk_engine_stats_t st;
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.decisions[RISK_OUTCOME_REVIEW] + st.decisions[RISK_OUTCOME_DECLINE] +
              st.decisions[RISK_OUTCOME_APPROVE], 3);
    risk_engine_close(e);

    /* restart with the snapshot: ids continue, the decided review stays decided */
    e = open_rules_engine(rules, db, snap);
    ASSERT_EQ(risk_reviews_list(e, RISK_REVIEW_APPROVED, 0, list, 8), 1);
    ASSERT_EQ(list[0].decision_id, review_id);
    ASSERT_EQ(risk_reviews_list(e, RISK_REVIEW_OPEN, 0, list, 8), 0);
    ASSERT_STATUS(risk_review_decide(e, review_id, false, "bob", T0, &r), PC_RISK_REVIEW_ALREADY_DECIDED);
    ASSERT_STATUS(risk_feedback(e, decline_id, false, NULL), PC_OK); /* the same ids after a restart */
    ASSERT_STATUS(risk_decide(e, &probe, &d), PC_OK);
    ASSERT_TRUE(opaque(d.decision_id) && d.decision_id != review_id && d.decision_id != decline_id);
    risk_engine_close(e);

    /* restart without the snapshot: the state is rebuilt from the stored decisions */
    unlink(snap);
    e = open_rules_engine(rules, db, NULL);
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.features.observed_total, 4);
    ASSERT_EQ(st.features.payers, 2);
    risk_engine_close(e);
    unlink(rules);
    decisions_remove(db);
    unlink(snap);
}

/* The review queue holds RISK_REVIEWS_MAX open reviews: one more review is declined
 * (review_queue_full first, so a declined payment names it) rather than answered
 * "review" with no review anyone could decide; a decided review makes room again. At
 * a restart, reviews past RISK_REVIEWS_MAX in the file push out decided ones, never
 * an open one. */
#define QUEUE_FULL_MORE_REVIEWS 1000
static void test_review_queue_full(void) {
    char rules[256], db[256];
    temp_path(rules, sizeof(rules), "full.rules");
    temp_path(db, sizeof(db), "full.db");
    write_file(rules, "block payer=P-watch action=review reason=watchlist\n");
    risk_engine_t *e = open_rules_engine(rules, db, NULL);
    risk_decision_t d;
    risk_auth_t a = auth_make(T0, "P-watch", "M1", 100);
    uint64_t first_id = 0;
    for (uint32_t i = 0; i < RISK_REVIEWS_MAX; i++) {
        ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
        if (d.outcome != RISK_OUTCOME_REVIEW) break;
        if (i == 0) first_id = d.decision_id;
    }
    ASSERT_EQ(d.outcome, RISK_OUTCOME_REVIEW);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_DECLINE);
    ASSERT_EQ(d.reason_count, 2);
    ASSERT_STR_EQ(d.reasons[0].code, "review_queue_full");
    ASSERT_EQ(d.reasons[0].action, RISK_ACTION_DECLINE);
    ASSERT_STR_EQ(d.reasons[1].code, "watchlist");
    risk_review_t r;
    ASSERT_STATUS(risk_review_decide(e, d.decision_id, true, "alice", T0, &r), PC_RISK_REVIEW_NOT_FOUND);
    /* a queue full of open reviews is not scanned again for each review that finds it full */
    for (uint32_t i = 0; i < QUEUE_FULL_MORE_REVIEWS; i++) {
        ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
        ASSERT_EQ(d.outcome, RISK_OUTCOME_DECLINE);
    }
    risk_engine_stats_t st;
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.reviews_open, RISK_REVIEWS_MAX);
    ASSERT_EQ(st.decisions[RISK_OUTCOME_DECLINE], 1 + QUEUE_FULL_MORE_REVIEWS);
    ASSERT_EQ(st.review_compactions, 0);

    /* one decided: the next review is queued (one scan drops the decided one) and can be decided */
    ASSERT_STATUS(risk_review_decide(e, first_id, true, "alice", T0, &r), PC_OK);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_REVIEW);
    uint64_t last_id = d.decision_id;
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.review_compactions, 1);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_DECLINE);
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.review_compactions, 1);
    ASSERT_STATUS(risk_engine_flush(e), PC_OK);
    risk_engine_close(e);

    /* the file holds RISK_REVIEWS_MAX + 1 reviews, the first decided: every open one loads */
    e = open_rules_engine(rules, db, NULL);
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.reviews_open, RISK_REVIEWS_MAX);
    risk_review_t list[2];
    ASSERT_EQ(risk_reviews_list(e, RISK_REVIEW_APPROVED, 0, list, 2), 0); /* made room */
    ASSERT_STATUS(risk_review_decide(e, last_id, false, "bob", T0, &r), PC_OK);
    ASSERT_EQ(r.state, RISK_REVIEW_DECLINED);
    risk_engine_close(e);
    unlink(rules);
    decisions_remove(db);
}

/* Ids of consecutive decisions: unrelated (about as many go down as up, spread over
 * the whole space of 2^52), each valid for feedback, with the same id after a restart;
 * no number, and no id changed in one bit, is a decision. */
static void test_opaque_ids(void) {
    char db[256];
    temp_path(db, sizeof(db), "opaque.db");
    decisions_remove(db);
    risk_engine_t *e = open_rules_engine(NULL, db, NULL);
    enum { N = 1000 };
    static uint64_t ids[N];
    uint32_t ups = 0;
    uint64_t low = UINT64_MAX, high = 0;
    for (int i = 0; i < N; i++) {
        risk_auth_t a = auth_make(T0 + i, "P1", "M1", 100 + i);
        risk_decision_t d;
        ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
        ids[i] = d.decision_id;
        ASSERT_TRUE(opaque(ids[i]));
        if (i > 0 && ids[i] > ids[i - 1]) ups++;
        if (ids[i] < low) low = ids[i];
        if (ids[i] > high) high = ids[i];
    }
    ASSERT_TRUE(ups > N / 3 && ups < 2 * N / 3); /* no order: a coin per pair (p of failing ~1e-25) */
    ASSERT_TRUE(high - low > (1ull << 51));      /* no density: spread over the space */
    for (uint64_t n = 1; n <= N + 1; n++) ASSERT_STATUS(risk_feedback(e, n, true, NULL), PC_RISK_DECISION_NOT_FOUND);
    for (int i = 0; i < N; i += 97) {
        ASSERT_STATUS(risk_feedback(e, ids[i], true, NULL), PC_OK);
        ASSERT_STATUS(risk_feedback(e, ids[i] ^ 1, true, NULL), PC_RISK_DECISION_NOT_FOUND);
    }
    risk_engine_close(e);
    e = open_rules_engine(NULL, db, NULL);
    for (int i = 0; i < N; i += 97) ASSERT_STATUS(risk_feedback(e, ids[i], false, NULL), PC_OK);
    risk_engine_close(e);
    decisions_remove(db);
}

/* A decisions file from before opaque ids (no key, no boundary: as the old binary left
 * it): the numbers stored then stay their ids, every later decision gets an opaque id;
 * across a restart too. The key file lost or readable by others: the start is refused. */
static void test_ids_from_before(void) {
    char db[256], key[256];
    temp_path(db, sizeof(db), "before.db");
    decisions_remove(db);
    key_path_of(key, db);
    risk_engine_t *e = open_rules_engine(NULL, db, NULL);
    risk_decision_t d;
    for (int i = 0; i < 3; i++) {
        risk_auth_t a = auth_make(T0 + i, "P1", "M1", 100 + i);
        ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    }
    risk_engine_close(e);
    sqlite3 *sql = NULL; /* back to the old binary's file: decisions 1..3 were shown as 1..3 */
    ASSERT_EQ(sqlite3_open(db, &sql), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(sql, "DELETE FROM risk_meta WHERE key LIKE 'opaque_ids_%'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(sql);
    unlink(key);
    for (int round = 0; round < 2; round++) {
        e = open_rules_engine(NULL, db, NULL);
        for (uint64_t n = 1; n <= 3; n++) ASSERT_STATUS(risk_feedback(e, n, true, NULL), PC_OK);
        ASSERT_STATUS(risk_feedback(e, 4 + (uint64_t)round, true, NULL), PC_RISK_DECISION_NOT_FOUND);
        risk_auth_t a = auth_make(T0 + 10 + round, "P1", "M1", 100);
        ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
        ASSERT_TRUE(opaque(d.decision_id));
        ASSERT_STATUS(risk_feedback(e, d.decision_id, true, NULL), PC_OK);
        risk_engine_close(e);
    }
    risk_engine_config_t c;
    risk_engine_config_default(&c);
    c.rules_only = true;
    c.decisions_db_path = db;
    ASSERT_EQ(chmod(key, 0644), 0);
    ASSERT_STATUS(risk_engine_open(&c, &e), PC_RISK_STORE_FAILED);
    unlink(key);
    ASSERT_STATUS(risk_engine_open(&c, &e), PC_RISK_STORE_FAILED); /* ids handed out would change */
    decisions_remove(db);
}

/* A bad rules file on reload: refused with its line, the old rules keep working. */
static void test_reload_keeps_old_rules(void) {
    char rules[256];
    temp_path(rules, sizeof(rules), "reload.rules");
    write_file(rules, "block payer=P-bad\n");
    risk_engine_t *e = open_rules_engine(rules, NULL, NULL);
    write_file(rules, "block payer=P-bad\nblock payer=P-other\nnonsense here\n");
    uint32_t line = 0;
    char message[160];
    ASSERT_STATUS(risk_engine_reload(e, &line, message, sizeof(message)), PC_RISK_RULES_INVALID);
    ASSERT_EQ(line, 3);
    risk_decision_t d;
    risk_auth_t a = auth_make(T0, "P-bad", "M1", 100);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_DECLINE);
    a = auth_make(T0, "P-other", "M1", 100);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_APPROVE);  /* the new line never took effect */
    write_file(rules, "block payer=P-other\n");
    ASSERT_STATUS(risk_engine_reload(e, &line, message, sizeof(message)), PC_OK);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_OK);
    ASSERT_EQ(d.outcome, RISK_OUTCOME_DECLINE);
    risk_engine_close(e);
    unlink(rules);
}

/* Bad authorizations are refused with a code and change nothing. */
static void test_bad_auth(void) {
    risk_engine_t *e = open_rules_engine(NULL, NULL, NULL);
    risk_decision_t d;
    risk_auth_t a = auth_make(T0, "P1", "M1", 0);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_AMOUNT_OUT_OF_RANGE);
    a = auth_make(T0, "P 1", "M1", 10);
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_ID_INVALID);
    a = auth_make(T0, "P1", "M1", 10);
    strcpy(a.currency, "usd");
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_CURRENCY_INVALID);
    a = auth_make(T0, "P1", "M1", 10);
    a.channel = (risk_channel)9;
    ASSERT_STATUS(risk_decide(e, &a, &d), PC_RISK_CHANNEL_INVALID);
    risk_engine_stats_t st;
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.features.observed_total, 0);
    risk_engine_close(e);
}

/* Four threads decide at once: every decision gets its own id, all are stored,
 * and the counters add up. */
#define THREADS 4
#define PER_THREAD 300

typedef struct {
    risk_engine_t *engine;
    int index;
    uint64_t ids[PER_THREAD];
} worker_arg;

static void *worker(void *p) {
    worker_arg *w = p;
    for (int i = 0; i < PER_THREAD; i++) {
        char payer[16];
        snprintf(payer, sizeof(payer), "P%d-%d", w->index, i % 7);
        risk_auth_t a = auth_make(T0 + i, payer, "M1", 100 + i);
        risk_decision_t d;
        if (risk_decide(w->engine, &a, &d) != PC_OK) return NULL;
        w->ids[i] = d.decision_id;
    }
    return w;
}

static void test_concurrent_decisions(void) {
    char db[256];
    temp_path(db, sizeof(db), "concurrent.db");
    risk_engine_t *e = open_rules_engine(NULL, db, NULL);
    pthread_t threads[THREADS];
    static worker_arg args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t].engine = e;
        args[t].index = t;
        ASSERT_EQ(pthread_create(&threads[t], NULL, worker, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        void *result = NULL;
        pthread_join(threads[t], &result);
        ASSERT_TRUE(result == &args[t]);
    }
    static uint64_t all[THREADS * PER_THREAD];
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            ASSERT_TRUE(opaque(args[t].ids[i]));
            all[t * PER_THREAD + i] = args[t].ids[i];
        }
    }
    qsort(all, THREADS * PER_THREAD, sizeof all[0], u64_order);
    for (int i = 1; i < THREADS * PER_THREAD; i++) ASSERT_TRUE(all[i - 1] < all[i]); /* each its own */
    risk_engine_stats_t st;
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.decisions[RISK_OUTCOME_APPROVE], THREADS * PER_THREAD);
    ASSERT_EQ(st.features.observed_total, THREADS * PER_THREAD);
    ASSERT_EQ(st.latency_count, THREADS * PER_THREAD);
    ASSERT_STATUS(risk_engine_flush(e), PC_OK);
    risk_engine_close(e);
    e = open_rules_engine(NULL, db, NULL);   /* every decision is in the file */
    risk_engine_stats(e, &st);
    ASSERT_EQ(st.features.observed_total, THREADS * PER_THREAD);
    risk_engine_close(e);
    decisions_remove(db);
}

int main(void) {
    TEST_RUN(test_train_eval_round_trip);
    TEST_RUN(test_model_file_errors);
    TEST_RUN(test_model_thresholds);
    TEST_RUN(test_reviews_and_restart);
    TEST_RUN(test_review_queue_full);
    TEST_RUN(test_reload_keeps_old_rules);
    TEST_RUN(test_bad_auth);
    TEST_RUN(test_concurrent_decisions);
    TEST_RUN(test_opaque_ids);
    TEST_RUN(test_ids_from_before);
    if (have_model) unlink(model_path);
    return test_finish();
}
