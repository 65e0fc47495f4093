/* Goal: ROC-AUC, average precision and recall at 1% FPR match hand computations,
 * ties included. Method: tiny score/label sets whose metrics are worked out in the
 * comments; degenerate sets give NaN instead of a made-up number. */
#include <math.h>

#include "risk/risk.h"
#include "test.h"

#define ASSERT_NEAR(a, b) \
    do { double a_ = (a), b_ = (b); if (!(fabs(a_ - b_) < 1e-9)) TEST_FAIL("%s: %.12f != %.12f", #a, a_, b_); } while (0)

/* Scores .9 .8 .7 .6, labels 1 0 1 0. AUC: positive > negative in 3 of 4 pairs = .75.
 * AP: recall .5 at precision 1, then recall 1 at precision 2/3: .5 + .5 * 2/3.
 * At FPR 0 the recall is .5. */
static void test_hand_case(void) {
    const float scores[] = {0.9f, 0.8f, 0.7f, 0.6f};
    const uint8_t labels[] = {1, 0, 1, 0};
    risk_metrics_t m;
    ASSERT_STATUS(risk_metrics_compute(scores, labels, 4, &m), PC_OK);
    ASSERT_NEAR(m.roc_auc, 0.75);
    ASSERT_NEAR(m.pr_auc, 0.5 + 0.5 * 2.0 / 3.0);
    ASSERT_NEAR(m.recall_at_1pct_fpr, 0.5);
    ASSERT_EQ(m.positives, 2);
    ASSERT_EQ(m.rows, 4);
}

/* Order of rows must not matter: the same set shuffled. */
static void test_order_free(void) {
    const float scores[] = {0.6f, 0.9f, 0.7f, 0.8f};
    const uint8_t labels[] = {0, 1, 1, 0};
    risk_metrics_t m;
    ASSERT_STATUS(risk_metrics_compute(scores, labels, 4, &m), PC_OK);
    ASSERT_NEAR(m.roc_auc, 0.75);
    ASSERT_NEAR(m.pr_auc, 0.5 + 0.5 * 2.0 / 3.0);
}

/* A tie between a positive and a negative counts half; AP takes both at once. */
static void test_ties(void) {
    const float scores[] = {0.5f, 0.5f};
    const uint8_t labels[] = {1, 0};
    risk_metrics_t m;
    ASSERT_STATUS(risk_metrics_compute(scores, labels, 2, &m), PC_OK);
    ASSERT_NEAR(m.roc_auc, 0.5);
    ASSERT_NEAR(m.pr_auc, 0.5);
    ASSERT_NEAR(m.recall_at_1pct_fpr, 0.0);
}

/* 1 positive on top of 200 negatives, 1 positive just under the top 2 negatives:
 * FPR after 2 negatives is 1% -> recall .5 then; after 3 it would be 1.5%. */
static void test_recall_at_fpr(void) {
    float scores[202];
    uint8_t labels[202];
    for (int i = 0; i < 200; i++) {
        scores[i] = (float)i / 1000.0f;
        labels[i] = 0;
    }
    scores[200] = 1.0f;  labels[200] = 1;   /* above every negative */
    scores[201] = 0.1965f; labels[201] = 1; /* under negatives .199 .198 .197 */
    ASSERT_NEAR(risk_recall_at_fpr(scores, labels, 202, 0.01), 0.5);
    ASSERT_NEAR(risk_recall_at_fpr(scores, labels, 202, 0.015), 1.0);
}

static void test_perfect_and_inverted(void) {
    const float scores[] = {0.1f, 0.2f, 0.8f, 0.9f};
    const uint8_t good[] = {0, 0, 1, 1};
    const uint8_t bad[] = {1, 1, 0, 0};
    risk_metrics_t m;
    ASSERT_STATUS(risk_metrics_compute(scores, good, 4, &m), PC_OK);
    ASSERT_NEAR(m.roc_auc, 1.0);
    ASSERT_NEAR(m.pr_auc, 1.0);
    ASSERT_NEAR(m.recall_at_1pct_fpr, 1.0);
    ASSERT_STATUS(risk_metrics_compute(scores, bad, 4, &m), PC_OK);
    ASSERT_NEAR(m.roc_auc, 0.0);
    /* both negatives first: recall .5 at precision 1/3, recall 1 at precision 1/2 */
    ASSERT_NEAR(m.pr_auc, 0.5 / 3.0 + 0.5 * 0.5);
}

static void test_degenerate(void) {
    const float scores[] = {0.1f, 0.2f};
    const uint8_t none[] = {0, 0};
    risk_metrics_t m;
    ASSERT_STATUS(risk_metrics_compute(scores, none, 2, &m), PC_OK);
    ASSERT_TRUE(isnan(m.roc_auc));
    ASSERT_TRUE(isnan(m.pr_auc));
    ASSERT_EQ(m.positives, 0);
}

int main(void) {
    TEST_RUN(test_hand_case);
    TEST_RUN(test_order_free);
    TEST_RUN(test_ties);
    TEST_RUN(test_recall_at_fpr);
    TEST_RUN(test_perfect_and_inverted);
    TEST_RUN(test_degenerate);
    return test_finish();
}
