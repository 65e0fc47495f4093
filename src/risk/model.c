/* risk/model.c: the gradient-boosted model through XGBoost's C API.
 *
 * Training picks its round count on the training period only: the last
 * 'valid_count' training rows (the latest days) are held out, boosting stops when
 * their ROC-AUC + recall at 1% FPR has not improved for early_stop_rounds, and the
 * model is refit on all training rows with that many rounds. Test rows are never
 * seen here. The model file is XGBoost's JSON with one attribute added,
 * "paycore_features": the feature names in order, so that a model built for other
 * features is refused at load instead of scoring garbage.
 * Scoring walks the model's trees in paycore (trees.c: flat arrays, XGBoost's own
 * arithmetic, the same scores bit for bit): an XGBoost call costs ~26 us a row, most
 * of it parsing its JSON configuration and setting up. At every load or training the
 * walk is checked against XGBoost on RISK_MODEL_PROBE_ROWS rows set on the model's
 * split thresholds; a model the walk does not evaluate, or any difference, is logged
 * once and scored through XGBoost's in-place prediction (nthread=1) instead.
 * XGBoost stays the trainer and the reference (risk_model_score_xgboost). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xgboost/c_api.h>

#include "risk/risk_internal.h"

#define FEATURE_ATTR "paycore_features"

struct risk_model {
    BoosterHandle booster;
    DMatrixHandle proxy;     /* reused by every prediction: no allocation per call */
    char predict_config[256];
    risk_trees_t *trees;     /* NULL: XGBoost scores */
};

static const char *const predict_config_fmt =
    "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, \"iteration_end\": %u, "
    "\"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}";

void risk_train_config_default(risk_train_config_t *config) {
    config->rounds_max = 1000;
    config->early_stop_rounds = 100;
    config->max_depth = 6;
    config->eta = 0.1;
    config->nthread = 2;
    config->rounds_fixed = 0;
    config->report_out = NULL;
    config->verbose_progress = false;
}

static pc_status xgb_failed(const char *what) {
    fprintf(stderr, "risk: xgboost %s: %s\n", what, XGBGetLastError());
    return PC_RISK_MODEL_FAILED;
}

static void feature_names_joined(char out[RISK_MODEL_NAMES_BYTES_MAX]) {
    size_t used = 0;
    out[0] = '\0';
    for (int f = 0; f < RISK_FEATURE_COUNT; f++) {
        int n = snprintf(out + used, RISK_MODEL_NAMES_BYTES_MAX - used, "%s%s", f ? "," : "",
                         risk_feature_name((risk_feature)f));
        PC_ASSERT(n > 0 && used + (size_t)n < RISK_MODEL_NAMES_BYTES_MAX);
        used += (size_t)n;
    }
}

static pc_status dmatrix(const float *rows, const uint8_t *labels, size_t count,
                         DMatrixHandle *out) {
    if (XGDMatrixCreateFromMat(rows, count, RISK_FEATURE_COUNT, NAN, out) != 0) {
        return xgb_failed("dmatrix");
    }
    float *label_f = malloc(count * sizeof(float));
    if (label_f == NULL) return PC_NO_MEMORY;
    for (size_t i = 0; i < count; i++) label_f[i] = labels[i] ? 1.0f : 0.0f;
    int rc = XGDMatrixSetFloatInfo(*out, "label", label_f, count);
    free(label_f);
    return rc == 0 ? PC_OK : xgb_failed("labels");
}

static pc_status booster_new(DMatrixHandle *mats, uint32_t mat_count,
                             const risk_train_config_t *config, BoosterHandle *out) {
    if (XGBoosterCreate(mats, mat_count, out) != 0) return xgb_failed("create");
    char depth[16], eta[32], nthread[16];
    snprintf(depth, sizeof(depth), "%u", config->max_depth);
    snprintf(eta, sizeof(eta), "%.4f", config->eta);
    snprintf(nthread, sizeof(nthread), "%u", config->nthread ? config->nthread : 1);
    const char *params[][2] = {
        {"objective", "binary:logistic"}, {"tree_method", "hist"}, {"max_depth", depth},
        {"eta", eta}, {"subsample", "0.8"}, {"colsample_bytree", "0.8"},
        {"min_child_weight", "1"}, {"lambda", "1"}, {"max_bin", "256"}, {"seed", "7"},
        {"nthread", nthread}, {"verbosity", "0"}, {"eval_metric", "auc"},
    };
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        if (XGBoosterSetParam(*out, params[i][0], params[i][1]) != 0) return xgb_failed("param");
    }
    return PC_OK;
}

static void progress(const risk_train_config_t *config, const char *phase, uint32_t done,
                     uint32_t total) {
    if (!config->verbose_progress) return;
    uint32_t width = 30, filled = total ? done * width / total : width;
    char bar[32];
    for (uint32_t i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%-6s [%s] %u/%u", phase, bar, done, total);
    if (done == total) fputc('\n', stderr);
}

/* Validation quality after the current round: ROC-AUC + recall at 1% FPR. */
static pc_status valid_quality(BoosterHandle b, DMatrixHandle valid, const uint8_t *labels,
                               size_t count, double *out, risk_metrics_t *m_out) {
    const char *config = "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
                         "\"iteration_end\": 0, \"strict_shape\": false}";
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    const float *scores = NULL;
    if (XGBoosterPredictFromDMatrix(b, valid, config, &shape, &dim, &scores) != 0) {
        return xgb_failed("predict");
    }
    risk_metrics_t m;
    pc_status status = risk_metrics_compute(scores, labels, count, &m);
    if (status != PC_OK) return status;
    *m_out = m;
    *out = (isnan(m.roc_auc) ? 0 : m.roc_auc) +
           (isnan(m.recall_at_1pct_fpr) ? 0 : m.recall_at_1pct_fpr);
    return PC_OK;
}

/* Boosts on rows [0, fit_count) watching rows [fit_count, fit_count+valid_count). */
static pc_status choose_rounds(const float *rows, const uint8_t *labels, size_t fit_count,
                               size_t valid_count, const risk_train_config_t *config,
                               uint32_t *rounds_out) {
    DMatrixHandle mats[2] = {NULL, NULL};
    BoosterHandle b = NULL;
    pc_status status = dmatrix(rows, labels, fit_count, &mats[0]);
    if (status == PC_OK) {
        status = dmatrix(rows + fit_count * RISK_FEATURE_COUNT, labels + fit_count, valid_count,
                         &mats[1]);
    }
    if (status == PC_OK) status = booster_new(mats, 2, config, &b);
    double best = -1;
    uint32_t best_rounds = 1;
    for (uint32_t r = 0; status == PC_OK && r < config->rounds_max; r++) {
        if (XGBoosterUpdateOneIter(b, (int)r, mats[0]) != 0) {
            status = xgb_failed("update");
            break;
        }
        double quality = 0;
        risk_metrics_t m;
        status = valid_quality(b, mats[1], labels + fit_count, valid_count, &quality, &m);
        if (status == PC_OK && quality > best + 1e-6) {
            best = quality;
            best_rounds = r + 1;
            if (config->report_out != NULL) {
                config->report_out->valid_roc_auc = m.roc_auc;
                config->report_out->valid_recall_at_1pct_fpr = m.recall_at_1pct_fpr;
            }
        }
        progress(config, "select", r + 1, config->rounds_max);
        if (r + 1 - best_rounds >= config->early_stop_rounds) {
            progress(config, "select", config->rounds_max, config->rounds_max);
            break;
        }
    }
    if (b != NULL) XGBoosterFree(b);
    for (int i = 0; i < 2; i++) {
        if (mats[i] != NULL) XGDMatrixFree(mats[i]);
    }
    *rounds_out = best_rounds;
    return status;
}

static pc_status fit(const float *rows, const uint8_t *labels, size_t count, uint32_t rounds,
                     const risk_train_config_t *config, BoosterHandle *out) {
    DMatrixHandle train = NULL;
    pc_status status = dmatrix(rows, labels, count, &train);
    if (status == PC_OK) status = booster_new(&train, 1, config, out);
    for (uint32_t r = 0; status == PC_OK && r < rounds; r++) {
        if (XGBoosterUpdateOneIter(*out, (int)r, train) != 0) status = xgb_failed("update");
        progress(config, "fit", r + 1, rounds);
    }
    if (train != NULL) XGDMatrixFree(train);
    char names[RISK_MODEL_NAMES_BYTES_MAX];
    feature_names_joined(names);
    if (status == PC_OK && XGBoosterSetAttr(*out, FEATURE_ATTR, names) != 0) {
        status = xgb_failed("attr");
    }
    return status;
}

static pc_status predict_dense(risk_model_t *model, const float *rows, size_t count,
                               float *scores_out);

/* Probe rows: every feature missing, at one of its split thresholds, just below
 * one, or far out, drawn from a fixed seed. */
static void probe_rows(const risk_trees_t *trees, float *rows, uint32_t count) {
    float thresholds[256];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint32_t f = 0; f < RISK_FEATURE_COUNT; f++) {
        uint32_t n = risk_trees_thresholds(trees, f, thresholds, 256);
        for (uint32_t r = 0; r < count; r++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            float t = n > 0 ? thresholds[(x >> 8) % n] : 0.0f;
            float v = NAN;
            switch (x % 8) {
            case 0: v = NAN; break;
            case 1: v = -1e30f; break;
            case 2: v = 1e30f; break;
            case 3: case 4: v = nextafterf(t, -INFINITY); break;
            default: v = t; break;
            }
            rows[(size_t)r * RISK_FEATURE_COUNT + f] = v;
        }
    }
}

static bool walk_agrees(risk_model_t *m, char *why, size_t why_bytes) {
    float rows[RISK_MODEL_PROBE_ROWS * RISK_FEATURE_COUNT];
    float reference[RISK_MODEL_PROBE_ROWS];
    probe_rows(m->trees, rows, RISK_MODEL_PROBE_ROWS);
    if (predict_dense(m, rows, RISK_MODEL_PROBE_ROWS, reference) != PC_OK) {
        snprintf(why, why_bytes, "xgboost could not score the probe rows");
        return false;
    }
    for (uint32_t r = 0; r < RISK_MODEL_PROBE_ROWS; r++) {
        float walked = risk_trees_score(m->trees, rows + (size_t)r * RISK_FEATURE_COUNT);
        if (memcmp(&walked, &reference[r], sizeof(float)) != 0) {
            snprintf(why, why_bytes, "probe row %u: %.9g, xgboost %.9g", r, (double)walked,
                     (double)reference[r]);
            return false;
        }
    }
    return true;
}

/* The trees for paycore's own walk, or (logged) XGBoost scores this model. */
static void walk_setup(risk_model_t *m) {
    char why[192] = "";
    bst_ulong len = 0;
    const char *json = NULL;
    if (XGBoosterSaveModelToBuffer(m->booster, "{\"format\": \"json\"}", &len, &json) != 0) {
        snprintf(why, sizeof(why), "xgboost model buffer: %s", XGBGetLastError());
    } else if (risk_trees_from_json(json, (size_t)len, &m->trees, why, sizeof(why)) == PC_OK &&
               !walk_agrees(m, why, sizeof(why))) {
        risk_trees_free(m->trees);
        m->trees = NULL;
    }
    if (m->trees == NULL) {
        fprintf(stderr, "risk: model scored through XGBoost, not the tree walk: %s\n", why);
    }
}

bool risk_model_walks_trees(const risk_model_t *model) { return model->trees != NULL; }

static pc_status model_wrap(BoosterHandle b, risk_model_t **out) {
    risk_model_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        XGBoosterFree(b);
        return PC_NO_MEMORY;
    }
    m->booster = b;
    if (XGProxyDMatrixCreate(&m->proxy) != 0) {
        risk_model_free(m);
        return xgb_failed("proxy");
    }
    snprintf(m->predict_config, sizeof(m->predict_config), predict_config_fmt, 0u);
    if (XGBoosterSetParam(b, "nthread", "1") != 0) {
        risk_model_free(m);
        return xgb_failed("nthread");
    }
    walk_setup(m);
    *out = m;
    return PC_OK;
}

pc_status risk_model_train(const float *rows, const uint8_t *labels, size_t train_count,
                           size_t valid_count, const risk_train_config_t *config,
                           risk_model_t **out, uint32_t *rounds_out) {
    *out = NULL;
    if (train_count == 0 || valid_count == 0 || valid_count >= train_count) {
        return PC_INVALID_ARGUMENT;
    }
    XGBSetGlobalConfig("{\"verbosity\": 0}");
    uint32_t rounds = config->rounds_fixed;
    pc_status status = PC_OK;
    if (rounds == 0) {
        status = choose_rounds(rows, labels, train_count - valid_count, valid_count, config,
                               &rounds);
        if (status != PC_OK) return status;
        /* The refit sees more rows than the selection did: scale rounds with them. */
        double scale = (double)train_count / (double)(train_count - valid_count);
        rounds = (uint32_t)ceil((double)rounds * scale);
    }
    BoosterHandle b = NULL;
    status = fit(rows, labels, train_count, rounds, config, &b);
    if (status != PC_OK) {
        if (b != NULL) XGBoosterFree(b);
        return status;
    }
    *rounds_out = rounds;
    return model_wrap(b, out);
}

pc_status risk_model_load(const char *path, risk_model_t **out) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? PC_RISK_MODEL_MISSING : PC_IO;
    if (!S_ISREG(st.st_mode) || st.st_size == 0) return PC_RISK_MODEL_INVALID;
    XGBSetGlobalConfig("{\"verbosity\": 0}");
    BoosterHandle b = NULL;
    if (XGBoosterCreate(NULL, 0, &b) != 0) return xgb_failed("create");
    const char *names_stored = NULL;
    int found = 0;
    char names[RISK_MODEL_NAMES_BYTES_MAX];
    feature_names_joined(names);
    bool ok = XGBoosterLoadModel(b, path) == 0 &&
              XGBoosterGetAttr(b, FEATURE_ATTR, &names_stored, &found) == 0 && found &&
              names_stored != NULL && strcmp(names_stored, names) == 0;
    if (!ok) {
        XGBoosterFree(b);
        return PC_RISK_MODEL_INVALID;
    }
    return model_wrap(b, out);
}

pc_status risk_model_save(const risk_model_t *model, const char *path) {
    if (XGBoosterSaveModel(model->booster, path) != 0) return xgb_failed("save");
    return PC_OK;
}

static pc_status predict_dense(risk_model_t *model, const float *rows, size_t count,
                               float *scores_out) {
    char values[160];
    snprintf(values, sizeof(values),
             "{\"data\": [%llu, true], \"shape\": [%zu, %d], \"typestr\": \"<f4\", "
             "\"version\": 3}",
             (unsigned long long)(uintptr_t)rows, count, RISK_FEATURE_COUNT);
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    const float *result = NULL;
    if (XGBoosterPredictFromDense(model->booster, values, model->predict_config, model->proxy, &shape,
                                  &dim, &result) != 0) {
        return xgb_failed("predict");
    }
    memcpy(scores_out, result, count * sizeof(float));
    return PC_OK;
}

pc_status risk_model_score(risk_model_t *model, const float row[RISK_FEATURE_COUNT],
                           float *score_out) {
    if (model->trees != NULL) {
        *score_out = risk_trees_score(model->trees, row);
        return PC_OK;
    }
    return predict_dense(model, row, 1, score_out);
}

pc_status risk_model_score_xgboost(risk_model_t *model, const float row[RISK_FEATURE_COUNT],
                                   float *score_out) {
    return predict_dense(model, row, 1, score_out);
}

pc_status risk_model_score_batch(risk_model_t *model, const float *rows, size_t count,
                                 float *scores_out) {
    if (model->trees == NULL) return risk_model_score_batch_xgboost(model, rows, count, scores_out);
    for (size_t i = 0; i < count; i++) {
        scores_out[i] = risk_trees_score(model->trees, rows + i * RISK_FEATURE_COUNT);
    }
    return PC_OK;
}

pc_status risk_model_score_batch_xgboost(risk_model_t *model, const float *rows, size_t count,
                                         float *scores_out) {
    const size_t chunk = 65536;
    if (XGBoosterSetParam(model->booster, "nthread", "2") != 0) return xgb_failed("nthread");
    pc_status status = PC_OK;
    for (size_t i = 0; i < count && status == PC_OK; i += chunk) {
        size_t n = count - i < chunk ? count - i : chunk;
        status = predict_dense(model, rows + i * RISK_FEATURE_COUNT, n, scores_out + i);
    }
    if (XGBoosterSetParam(model->booster, "nthread", "1") != 0) return xgb_failed("nthread");
    return status;
}

void risk_model_free(risk_model_t *model) {
    if (model == NULL) return;
    risk_trees_free(model->trees);
    if (model->proxy != NULL) XGDMatrixFree(model->proxy);
    if (model->booster != NULL) XGBoosterFree(model->booster);
    free(model);
}
