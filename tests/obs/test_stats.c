/* Goal: the live figures of GET /v1/stats are right: rates over complete seconds only,
 * percentiles within the histogram's resolution of the exact ones, 5xx and 4xx apart,
 * each key's figures its own, a slot reused after the ring wraps holds only its new
 * second. Method: requests recorded at chosen seconds (obs_stats_request_at), views
 * compared with figures computed here from the same inputs. */
#include <math.h>

#include "obs/obs.h"
#include "test.h"

#define NOW 1800000000ull

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentiles of random latencies (0.05..200 ms) agree with the sorted exact ones
 * within one bucket's half-width (2^(1/6) - 1 = 12.2 %). */
static void test_quantiles_match_exact(void) {
    obs_stats_reset();
    enum { N = 20000 };
    static double latencies_ms[N];
    uint64_t state = 42;
    for (int i = 0; i < N; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(state >> 11) / 9007199254740992.0;
        latencies_ms[i] = 0.05 * pow(4000.0, u);
        obs_stats_request_at(NOW - 1, NULL, 200, (uint64_t)(latencies_ms[i] * 1e6), 0);
    }
    qsort(latencies_ms, N, sizeof latencies_ms[0], by_value);
    obs_stats_view_t view;
    obs_stats_view(NULL, NOW, 1, 0, &view);
    double exact50 = latencies_ms[N / 2 - 1], exact99 = latencies_ms[(int)(N * 0.99) - 1];
    if (fabs(view.p50_ms / exact50 - 1.0) > 0.13) TEST_FAIL("p50 %.4f vs exact %.4f", view.p50_ms, exact50);
    if (fabs(view.p99_ms / exact99 - 1.0) > 0.13) TEST_FAIL("p99 %.4f vs exact %.4f", view.p99_ms, exact99);
    ASSERT_EQ(view.requests_total, N);
}

/* The current (incomplete) second is left out; empty seconds count as zero. */
static void test_window_rates_and_history(void) {
    obs_stats_reset();
    for (int i = 0; i < 30; i++) obs_stats_request_at(NOW - 3, NULL, 201, 1000000, 2);
    for (int i = 0; i < 10; i++) obs_stats_request_at(NOW - 1, NULL, 503, 1000000, 0);
    for (int i = 0; i < 6; i++) obs_stats_request_at(NOW - 1, NULL, 404, 1000000, 0);
    for (int i = 0; i < 99; i++) obs_stats_request_at(NOW, NULL, 201, 1000000, 1); /* still filling */
    obs_stats_view_t view;
    obs_stats_view(NULL, NOW, 4, 5, &view);
    ASSERT_EQ(view.window_s, 4);
    ASSERT_TRUE(fabs(view.requests_per_s - 46.0 / 4) < 1e-9);
    ASSERT_TRUE(fabs(view.transfers_per_s - 60.0 / 4) < 1e-9);
    ASSERT_TRUE(fabs(view.errors_per_s - 10.0 / 4) < 1e-9);
    ASSERT_TRUE(fabs(view.rejected_per_s - 6.0 / 4) < 1e-9);
    ASSERT_EQ(view.requests_total, 145);
    ASSERT_EQ(view.transfers_total, 159);
    ASSERT_EQ(view.history_count, 5);
    ASSERT_EQ(view.history[0].second, NOW - 5);
    ASSERT_EQ(view.history[2].requests, 30);
    ASSERT_EQ(view.history[2].transfers, 60);
    ASSERT_EQ(view.history[3].requests, 0);
    ASSERT_TRUE(isnan(view.history[3].p99_ms)); /* no request: unknown, not zero */
    ASSERT_EQ(view.history[4].errors, 10);
    ASSERT_EQ(view.history[4].rejected, 6);
    ASSERT_EQ(view.history[4].second, NOW - 1);
}

static void test_keys_see_their_own(void) {
    obs_stats_reset();
    for (int i = 0; i < 5; i++) obs_stats_request_at(NOW - 1, "key_a", 201, 2000000, 1);
    for (int i = 0; i < 7; i++) obs_stats_request_at(NOW - 1, "key_b", 201, 50000000, 3);
    obs_stats_view_t a, b, all, none;
    obs_stats_view("key_a", NOW, 1, 1, &a);
    obs_stats_view("key_b", NOW, 1, 1, &b);
    obs_stats_view(NULL, NOW, 1, 1, &all);
    obs_stats_view("key_c", NOW, 1, 1, &none);
    ASSERT_TRUE(a.tracked && b.tracked && all.tracked);
    ASSERT_FALSE(none.tracked);
    ASSERT_EQ(none.requests_total, 0);
    ASSERT_EQ(a.requests_total, 5);
    ASSERT_EQ(a.transfers_total, 5);
    ASSERT_EQ(b.transfers_total, 21);
    ASSERT_EQ(all.requests_total, 12);
    ASSERT_TRUE(a.p99_ms < 2.5 && b.p50_ms > 40.0); /* latencies stay with their key */
}

/* Second NOW - OBS_STATS_SECONDS shares NOW's slot: writing NOW clears it first. */
static void test_ring_wraps(void) {
    obs_stats_reset();
    for (int i = 0; i < 50; i++) obs_stats_request_at(NOW - OBS_STATS_SECONDS, NULL, 201, 1000000, 1);
    obs_stats_request_at(NOW, NULL, 201, 1000000, 1);
    obs_stats_view_t view;
    obs_stats_view(NULL, NOW + 1, 1, 60, &view);
    ASSERT_TRUE(fabs(view.requests_per_s - 1.0) < 1e-9);
    uint64_t in_history = 0;
    for (uint32_t i = 0; i < view.history_count; i++) in_history += view.history[i].requests;
    ASSERT_EQ(in_history, 1);
    ASSERT_EQ(view.requests_total, 51); /* totals since start keep everything */
}

int main(void) {
    TEST_RUN(test_quantiles_match_exact);
    TEST_RUN(test_window_rates_and_history);
    TEST_RUN(test_keys_see_their_own);
    TEST_RUN(test_ring_wraps);
    return test_finish();
}
