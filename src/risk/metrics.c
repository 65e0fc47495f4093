/* risk/metrics.c: ranking metrics of a fraud model, computed as scikit-learn does:
 * ROC-AUC (trapezoids over the ROC curve, so ties count half), PR-AUC as average
 * precision (sum over thresholds of (R_n - R_{n-1}) * P_n), and the highest recall
 * whose false-positive rate stays at or under a bound. Rows with equal scores form
 * one threshold. A NaN score ranks lowest. */
#include <math.h>
#include <stdlib.h>

#include "risk/risk.h"

typedef struct {
    float score;
    uint8_t label;
} scored_row;

static int by_score_desc(const void *a, const void *b) {
    float x = ((const scored_row *)a)->score;
    float y = ((const scored_row *)b)->score;
    if (x > y) return -1;
    if (x < y) return 1;
    return 0;
}

static scored_row *sorted_copy(const float *scores, const uint8_t *labels, size_t count) {
    scored_row *rows = malloc((count > 0 ? count : 1) * sizeof(*rows));
    if (rows == NULL) return NULL;
    for (size_t i = 0; i < count; i++) {
        rows[i].score = isnan(scores[i]) ? -INFINITY : scores[i];
        rows[i].label = labels[i] != 0;
    }
    qsort(rows, count, sizeof(*rows), by_score_desc);
    return rows;
}

/* Walks thresholds from the highest score down, updating all three metrics. */
static void walk(const scored_row *rows, size_t count, uint64_t positives, uint64_t negatives,
                 double fpr_max, risk_metrics_t *out) {
    uint64_t tp = 0, fp = 0;
    double auc = 0, ap = 0, best_recall = 0;
    double prev_tpr = 0, prev_fpr = 0;
    size_t i = 0;
    while (i < count) {
        size_t j = i;
        while (j < count && rows[j].score == rows[i].score) {
            tp += rows[j].label;
            fp += !rows[j].label;
            j++;
        }
        double tpr = positives ? (double)tp / (double)positives : NAN;
        double fpr = negatives ? (double)fp / (double)negatives : NAN;
        auc += (fpr - prev_fpr) * (tpr + prev_tpr) / 2.0;
        ap += (tpr - prev_tpr) * ((double)tp / (double)(tp + fp));
        if (fpr <= fpr_max && tpr > best_recall) best_recall = tpr;
        prev_tpr = tpr;
        prev_fpr = fpr;
        i = j;
    }
    out->roc_auc = auc;
    out->pr_auc = ap;
    out->recall_at_1pct_fpr = best_recall;
}

pc_status risk_metrics_compute(const float *scores, const uint8_t *labels, size_t count,
                               risk_metrics_t *out) {
    out->rows = count;
    out->positives = 0;
    for (size_t i = 0; i < count; i++) out->positives += labels[i] != 0;
    uint64_t negatives = count - out->positives;
    out->roc_auc = out->pr_auc = out->recall_at_1pct_fpr = NAN;
    if (out->positives == 0 || negatives == 0) return PC_OK;
    scored_row *rows = sorted_copy(scores, labels, count);
    if (rows == NULL) return PC_NO_MEMORY;
    walk(rows, count, out->positives, negatives, 0.01, out);
    free(rows);
    return PC_OK;
}

double risk_recall_at_fpr(const float *scores, const uint8_t *labels, size_t count,
                          double fpr_max) {
    risk_metrics_t m = {0};
    uint64_t positives = 0;
    for (size_t i = 0; i < count; i++) positives += labels[i] != 0;
    if (positives == 0 || positives == count) return NAN;
    scored_row *rows = sorted_copy(scores, labels, count);
    if (rows == NULL) return NAN;
    walk(rows, count, positives, count - positives, fpr_max, &m);
    free(rows);
    return m.recall_at_1pct_fpr;
}
