/* Goal: paycore's own walk of the model's trees (src/risk/trees.c) gives exactly
 * XGBoost's scores: every row, bit for bit (tolerance: none), including rows with
 * missing features, values exactly on a split threshold or one float below it, and
 * infinities; a model the walk does not evaluate (another objective) is scored by
 * XGBoost and logged once; malformed or unsupported trees are refused, never walked.
 * Method: real XGBoost models trained here on the features of the dev data's first
 * rows (PAYCORE_SHARED; absent: a failure under CI, else reported not run), compared
 * with XGBoosterPredictFromDense on the same rows; boundary rows built from the
 * thresholds read from the saved model file by the test itself (jansson). */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <xgboost/c_api.h>

#include "risk/risk_internal.h"
#include "risk_test_util.h"
#include "test.h"

#define DEV_ROWS 40000
#define BOUNDARY_ROWS 20000

static float *dev_rows;
static uint8_t *dev_labels;
static size_t dev_count;

static bool load_dev_rows(void) {
    if (dev_rows != NULL) return true;
    char buf[512];
    const char *data = dev_data_path(buf, sizeof(buf));
    if (data == NULL) return false;
    risk_features_config_t fc;
    risk_features_config_default(&fc);
    fc.payers_max = 1u << 17;
    fc.entities_max = 1u << 17;
    risk_features_t *f = NULL;
    ASSERT_STATUS(risk_features_open(&fc, &f), PC_OK);
    risk_csv_t *csv = NULL;
    ASSERT_STATUS(risk_csv_open(data, &csv), PC_OK);
    dev_rows = malloc((size_t)DEV_ROWS * RISK_FEATURE_COUNT * sizeof(float));
    dev_labels = malloc(DEV_ROWS);
    risk_auth_t a;
    while (dev_count < DEV_ROWS && risk_csv_next(csv, &a) == PC_OK) {
        risk_features_compute(f, &a, dev_rows + dev_count * RISK_FEATURE_COUNT);
        risk_features_observe(f, &a);
        dev_labels[dev_count++] = (uint8_t)a.is_fraud;
    }
    risk_csv_close(csv);
    risk_features_close(f);
    ASSERT_EQ(dev_count, DEV_ROWS);
    return true;
}

static risk_model_t *train(uint32_t rounds, uint32_t depth, double eta) {
    risk_train_config_t tc;
    risk_train_config_default(&tc);
    tc.rounds_fixed = rounds;
    tc.max_depth = depth;
    tc.eta = eta;
    risk_model_t *m = NULL;
    uint32_t got = 0;
    ASSERT_STATUS(risk_model_train(dev_rows, dev_labels, dev_count, dev_count / 5, &tc, &m, &got),
                  PC_OK);
    ASSERT_EQ(got, rounds);
    return m;
}

/* Every row: risk_model_score (and the batch) == XGBoost's prediction, bit for bit. */
static void assert_same_scores(risk_model_t *m, const float *rows, size_t n, const char *what) {
    float *reference = malloc(n * sizeof(float));
    float *batch = malloc(n * sizeof(float));
    ASSERT_STATUS(risk_model_score_batch_xgboost(m, rows, n, reference), PC_OK);
    ASSERT_STATUS(risk_model_score_batch(m, rows, n, batch), PC_OK);
    size_t differing = 0, first = 0;
    float first_got = 0;
    for (size_t i = 0; i < n; i++) {
        float got = -1;
        ASSERT_STATUS(risk_model_score(m, rows + i * RISK_FEATURE_COUNT, &got), PC_OK);
        bool same = memcmp(&got, &reference[i], sizeof(float)) == 0 &&
                    memcmp(&batch[i], &reference[i], sizeof(float)) == 0;
        if (!same && differing++ == 0) {
            first = i;
            first_got = got;
        }
    }
    if (differing > 0) {
        TEST_FAIL("%s: %zu of %zu rows differ from XGBoost; row %zu: walk %.9g, xgboost %.9g", what,
                  differing, n, first, (double)first_got, (double)reference[first]);
    }
    free(reference);
    free(batch);
}

static size_t rows_with_missing(const float *rows, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        bool missing = false;
        for (int f = 0; f < RISK_FEATURE_COUNT; f++) missing = missing || isnan(rows[i * RISK_FEATURE_COUNT + f]);
        count += missing;
    }
    return count;
}

/* The thresholds of every split, per feature, read from the saved model JSON. */
typedef struct {
    float *values[RISK_FEATURE_COUNT];
    size_t count[RISK_FEATURE_COUNT];
} thresholds;

static void thresholds_read(const char *model_path, thresholds *t) {
    memset(t, 0, sizeof(*t));
    json_error_t err;
    json_t *root = json_load_file(model_path, 0, &err);
    ASSERT_TRUE(root != NULL);
    json_t *trees = json_object_get(
        json_object_get(json_object_get(json_object_get(root, "learner"), "gradient_booster"), "model"),
        "trees");
    ASSERT_TRUE(json_array_size(trees) > 0);
    for (int f = 0; f < RISK_FEATURE_COUNT; f++) t->values[f] = malloc(65536 * sizeof(float));
    size_t i;
    json_t *tree;
    json_array_foreach(trees, i, tree) {
        json_t *lefts = json_object_get(tree, "left_children");
        for (size_t n = 0; n < json_array_size(lefts); n++) {
            if (json_integer_value(json_array_get(lefts, n)) == -1) continue;
            json_int_t f = json_integer_value(json_array_get(json_object_get(tree, "split_indices"), n));
            double v = json_number_value(json_array_get(json_object_get(tree, "split_conditions"), n));
            ASSERT_TRUE(f >= 0 && f < RISK_FEATURE_COUNT);
            if (t->count[f] < 65536) t->values[f][t->count[f]++] = (float)v;
        }
    }
    json_decref(root);
}

static void thresholds_free(thresholds *t) {
    for (int f = 0; f < RISK_FEATURE_COUNT; f++) free(t->values[f]);
}

/* Rows whose features sit on the model's boundaries: exactly a threshold, one float
 * below or above it, missing, infinite, signed zeros, or a real value. */
static float *boundary_rows(const thresholds *t, size_t n) {
    float *rows = malloc(n * RISK_FEATURE_COUNT * sizeof(float));
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (size_t r = 0; r < n; r++) {
        for (int f = 0; f < RISK_FEATURE_COUNT; f++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            float th = t->count[f] ? t->values[f][(x >> 12) % t->count[f]] : 1.0f;
            float v = 0;
            switch ((x >> 3) % 10) {
            case 0: v = NAN; break;
            case 1: v = (x >> 40) & 1 ? INFINITY : -INFINITY; break;
            case 2: v = (x >> 40) & 1 ? 0.0f : -0.0f; break;
            case 3: v = nextafterf(th, -INFINITY); break;
            case 4: v = nextafterf(th, INFINITY); break;
            case 5: v = dev_rows[((x >> 20) % dev_count) * RISK_FEATURE_COUNT + (size_t)f]; break;
            default: v = th; break;
            }
            rows[r * RISK_FEATURE_COUNT + (size_t)f] = v;
        }
    }
    return rows;
}

static void check_model(risk_model_t *m, const char *name) {
    ASSERT_TRUE(risk_model_walks_trees(m));
    char path[256];
    temp_path(path, sizeof(path), "trees-model.json");
    ASSERT_STATUS(risk_model_save(m, path), PC_OK);
    thresholds t;
    thresholds_read(path, &t);
    float *edges = boundary_rows(&t, BOUNDARY_ROWS);
    char what[128];
    snprintf(what, sizeof(what), "%s, dev rows", name);
    assert_same_scores(m, dev_rows, dev_count, what);
    snprintf(what, sizeof(what), "%s, boundary rows", name);
    assert_same_scores(m, edges, BOUNDARY_ROWS, what);
    /* The same model loaded from its file walks the same trees. */
    risk_model_t *loaded = NULL;
    ASSERT_STATUS(risk_model_load(path, &loaded), PC_OK);
    ASSERT_TRUE(risk_model_walks_trees(loaded));
    snprintf(what, sizeof(what), "%s loaded, boundary rows", name);
    assert_same_scores(loaded, edges, BOUNDARY_ROWS, what);
    for (size_t i = 0; i < dev_count; i += 97) {
        float a = -1, b = -2;
        ASSERT_STATUS(risk_model_score(m, dev_rows + i * RISK_FEATURE_COUNT, &a), PC_OK);
        ASSERT_STATUS(risk_model_score(loaded, dev_rows + i * RISK_FEATURE_COUNT, &b), PC_OK);
        ASSERT_TRUE(memcmp(&a, &b, sizeof(float)) == 0);
    }
    risk_model_free(loaded);
    free(edges);
    thresholds_free(&t);
    unlink(path);
}

/* The serving model's shape (the payments benchmark trains 60 rounds, depth 6). */
static void test_walk_equals_xgboost(void) {
    if (!load_dev_rows()) return;
    size_t missing = rows_with_missing(dev_rows, dev_count);
    ASSERT_TRUE(missing > dev_count / 20);   /* the comparison covers missing values */
    ASSERT_TRUE(missing < dev_count);
    risk_model_t *m = train(60, 6, 0.1);
    check_model(m, "60 rounds depth 6");
    risk_model_free(m);
}

/* Deeper trees, bigger steps: more leaves and default directions on the path. */
static void test_walk_equals_xgboost_deep(void) {
    if (!load_dev_rows()) return;
    risk_model_t *m = train(25, 10, 0.3);
    check_model(m, "25 rounds depth 10");
    risk_model_free(m);
}

/* ---- a model the walk does not evaluate: XGBoost scores it, said once ---- */

static void feature_names(char *out, size_t out_bytes) {
    size_t used = 0;
    for (int f = 0; f < RISK_FEATURE_COUNT; f++) {
        used += (size_t)snprintf(out + used, out_bytes - used, "%s%s", f ? "," : "",
                                 risk_feature_name((risk_feature)f));
    }
}

static void squared_error_model(const char *path) {
    DMatrixHandle d = NULL;
    size_t n = 5000;
    ASSERT_EQ(XGDMatrixCreateFromMat(dev_rows, n, RISK_FEATURE_COUNT, NAN, &d), 0);
    float *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = dev_labels[i];
    ASSERT_EQ(XGDMatrixSetFloatInfo(d, "label", y, n), 0);
    BoosterHandle b = NULL;
    ASSERT_EQ(XGBoosterCreate(&d, 1, &b), 0);
    ASSERT_EQ(XGBoosterSetParam(b, "objective", "reg:squarederror"), 0);
    ASSERT_EQ(XGBoosterSetParam(b, "nthread", "1"), 0);
    for (int r = 0; r < 5; r++) ASSERT_EQ(XGBoosterUpdateOneIter(b, r, d), 0);
    char names[RISK_MODEL_NAMES_BYTES_MAX];
    feature_names(names, sizeof(names));
    ASSERT_EQ(XGBoosterSetAttr(b, "paycore_features", names), 0);
    ASSERT_EQ(XGBoosterSaveModel(b, path), 0);
    XGBoosterFree(b);
    XGDMatrixFree(d);
    free(y);
}

static size_t count_in_file(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    ASSERT_TRUE(f != NULL);
    char line[1024];
    size_t count = 0;
    while (fgets(line, sizeof(line), f) != NULL) count += strstr(line, needle) != NULL;
    fclose(f);
    return count;
}

static void test_other_objective_scored_by_xgboost(void) {
    if (!load_dev_rows()) return;
    char path[256], log[256];
    temp_path(path, sizeof(path), "trees-sqerr.json");
    temp_path(log, sizeof(log), "trees-stderr.log");
    squared_error_model(path);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    risk_model_t *m = NULL;
    pc_status status = risk_model_load(path, &m);
    float sum = 0;
    for (size_t i = 0; status == PC_OK && i < 200; i++) {
        float s = 0;
        ASSERT_STATUS(risk_model_score(m, dev_rows + i * RISK_FEATURE_COUNT, &s), PC_OK);
        sum += s;
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    ASSERT_STATUS(status, PC_OK);
    ASSERT_FALSE(risk_model_walks_trees(m));
    ASSERT_TRUE(isfinite(sum));
    ASSERT_EQ(count_in_file(log, "scored through XGBoost"), 1);
    ASSERT_EQ(count_in_file(log, "reg:squarederror"), 1);
    assert_same_scores(m, dev_rows, 2000, "squared error model");
    risk_model_free(m);
    unlink(path);
    unlink(log);
}

/* ---- malformed or unsupported trees are refused with the reason ---- */

static json_t *model_json(void) {
    risk_model_t *m = train(3, 3, 0.3);
    char path[256];
    temp_path(path, sizeof(path), "trees-small.json");
    ASSERT_STATUS(risk_model_save(m, path), PC_OK);
    risk_model_free(m);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    ASSERT_TRUE(root != NULL);
    unlink(path);
    return root;
}

static json_t *first_tree(json_t *root) {
    return json_array_get(json_object_get(json_object_get(json_object_get(json_object_get(
                                                              root, "learner"),
                                                          "gradient_booster"),
                                          "model"),
                                          "trees"),
                          0);
}

/* 'root' changed by the caller: refused, with 'reason' in the message. */
static void assert_refused(json_t *root, const char *reason) {
    char *text = json_dumps(root, JSON_COMPACT);
    risk_trees_t *t = NULL;
    char why[192];
    pc_status status = risk_trees_from_json(text, strlen(text), &t, why, sizeof(why));
    free(text);
    if (status == PC_OK) TEST_FAIL("accepted, want refused for %s", reason);
    ASSERT_STATUS(status, PC_RISK_MODEL_INVALID);
    ASSERT_TRUE(t == NULL);
    if (strstr(why, reason) == NULL) TEST_FAIL("reason \"%s\", want \"%s\"", why, reason);
}

static void test_refused_trees(void) {
    if (!load_dev_rows()) return;
    json_t *root = model_json();
    char *text = json_dumps(root, JSON_COMPACT);
    risk_trees_t *t = NULL;
    char why[192];
    ASSERT_STATUS(risk_trees_from_json(text, strlen(text), &t, why, sizeof(why)), PC_OK);
    ASSERT_EQ(risk_trees_count(t), 3);
    ASSERT_TRUE(risk_trees_nodes(t) >= 3);
    risk_trees_free(t);
    free(text);
    json_t *tree = first_tree(root);
    json_t *lefts = json_object_get(tree, "left_children");
    ASSERT_TRUE(json_integer_value(json_array_get(lefts, 0)) > 0); /* the root splits */

    json_t *bad = json_deep_copy(root);
    json_object_set_new(json_object_get(json_object_get(bad, "learner"), "objective"), "name",
                        json_string("reg:squarederror"));
    assert_refused(bad, "objective reg:squarederror");
    json_decref(bad);

    bad = json_deep_copy(root);
    json_array_set_new(json_object_get(first_tree(bad), "split_type"), 0, json_integer(1));
    assert_refused(bad, "categorical");
    json_decref(bad);

    bad = json_deep_copy(root);
    json_array_set_new(json_object_get(first_tree(bad), "split_indices"), 0, json_integer(999));
    assert_refused(bad, "split feature 999");
    json_decref(bad);

    bad = json_deep_copy(root); /* a child pointing back at the root: a cycle */
    json_array_set_new(json_object_get(first_tree(bad), "left_children"), 0, json_integer(0));
    assert_refused(bad, "links");
    json_decref(bad);

    bad = json_deep_copy(root); /* a child outside the tree */
    json_array_set_new(json_object_get(first_tree(bad), "right_children"), 0, json_integer(100000));
    assert_refused(bad, "links");
    json_decref(bad);

    bad = json_deep_copy(root); /* 1 + 2^-24: the midpoint of two floats, either one */
    json_array_set_new(json_object_get(first_tree(bad), "split_conditions"), 0,
                       json_real(1.0 + ldexp(1.0, -24)));
    assert_refused(bad, "node values");
    json_decref(bad);

    bad = json_deep_copy(root);
    json_object_set_new(json_object_get(json_object_get(bad, "learner"), "learner_model_param"),
                        "num_class", json_string("3"));
    assert_refused(bad, "multi-class");
    json_decref(bad);

    bad = json_deep_copy(root);
    json_object_set_new(json_object_get(json_object_get(bad, "learner"), "learner_model_param"),
                        "base_score", json_string("1.5E0"));
    assert_refused(bad, "base_score");
    json_decref(bad);

    bad = json_deep_copy(root);
    json_object_set_new(json_object_get(json_object_get(bad, "learner"), "gradient_booster"), "name",
                        json_string("dart"));
    assert_refused(bad, "booster dart");
    json_decref(bad);

    risk_trees_t *none = NULL;
    ASSERT_STATUS(risk_trees_from_json("{\"learner\":", 11, &none, why, sizeof(why)),
                  PC_RISK_MODEL_INVALID);
    ASSERT_TRUE(strstr(why, "JSON") != NULL);
    json_decref(root);
}

int main(void) {
    TEST_RUN(test_walk_equals_xgboost);
    TEST_RUN(test_walk_equals_xgboost_deep);
    TEST_RUN(test_other_objective_scored_by_xgboost);
    TEST_RUN(test_refused_trees);
    free(dev_rows);
    free(dev_labels);
    return test_finish();
}
