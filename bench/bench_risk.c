/* bench/bench_risk.c: added latency of risk scoring per authorization, in process.
 * Streams the dev data (PAYCORE_SHARED/data/payments_dev.csv; synthetic rows when
 * absent): the first days warm the feature state, then every test-period row goes
 * through risk_decide() (features + rules + model + queueing the stored decision)
 * and, in the same run, through the no-risk path (the authorization is validated
 * and passed on). The model is trained here with the round count paycore risk
 * train picks on the dev data (or --model FILE). risk_score_walk: the model's score
 * per row by paycore's tree walk against XGBoost's own prediction, same rows, same
 * run (differing= counts rows whose scores are not bit-identical: must be 0).
 * Prints key=value lines, ratio last.
 *   --quick  about 15 s     --full  every test row, 3 passes */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "risk/risk.h"

#define WARM_ROWS_QUICK 160000
#define TIMED_ROWS_QUICK 40000
#define BENCH_ROUNDS 125         /* what `paycore risk train` selects on the dev data */

typedef struct {
    risk_auth_t *rows;
    size_t count;
} stream;

static void load_stream(stream *s, size_t max_rows) {
    const char *shared = getenv("PAYCORE_SHARED");
    char path[512];
    snprintf(path, sizeof(path), "%s/data/payments_dev.csv", shared ? shared : "../shared");
    s->rows = calloc(max_rows, sizeof(risk_auth_t));
    s->count = 0;
    risk_csv_t *csv = NULL;
    if (s->rows != NULL && risk_csv_open(path, &csv) == PC_OK) {
        while (s->count < max_rows && risk_csv_next(csv, &s->rows[s->count]) == PC_OK) s->count++;
        risk_csv_close(csv);
        return;
    }
    fprintf(stderr, "bench_risk: %s not found: synthetic rows\n", path);
    uint64_t x = 88172645463325252ull;
    for (; s->rows != NULL && s->count < max_rows; s->count++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        risk_auth_t *a = &s->rows[s->count];
        a->ts_s = 1717200000 + (int64_t)s->count * 13;
        snprintf(a->payer_id, sizeof(a->payer_id), "P%llu", (unsigned long long)(x % 8000));
        snprintf(a->payee_id, sizeof(a->payee_id), "M%llu", (unsigned long long)(x >> 20) % 2600);
        a->amount_minor = 100 + (int64_t)((x >> 32) % 200000);
        strcpy(a->currency, "USD");
        a->mcc = 5411;
        a->channel = (risk_channel)((x >> 40) % 4);
        strcpy(a->country_payer, "US");
        strcpy(a->country_merchant, (x >> 50) % 10 ? "US" : "GB");
        a->account_age_days = (int32_t)((x >> 44) % 3000);
        a->is_fraud = (x >> 60) == 0;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *ns, size_t n, double q) {
    qsort(ns, n, sizeof(uint64_t), cmp_u64);
    size_t i = (size_t)ceil(q * (double)n) - 1;
    if (i >= n) i = n - 1;
    return (double)ns[i] / 1000.0;
}

/* Trains BENCH_ROUNDS rounds on the warm rows (no selection pass: latency only). */
static const char *train_model(const stream *s, size_t warm, char *path, size_t path_bytes) {
    risk_features_config_t fc;
    risk_features_config_default(&fc);
    risk_features_t *f = NULL;
    if (risk_features_open(&fc, &f) != PC_OK) return NULL;
    float *x = malloc(warm * RISK_FEATURE_COUNT * sizeof(float));
    uint8_t *y = malloc(warm);
    for (size_t i = 0; i < warm; i++) {
        risk_features_compute(f, &s->rows[i], x + i * RISK_FEATURE_COUNT);
        risk_features_observe(f, &s->rows[i]);
        y[i] = s->rows[i].is_fraud > 0;
    }
    risk_features_close(f);
    risk_train_config_t tc;
    risk_train_config_default(&tc);
    tc.rounds_fixed = BENCH_ROUNDS;
    risk_model_t *m = NULL;
    uint32_t rounds = 0;
    pc_status status = risk_model_train(x, y, warm, warm / 5, &tc, &m, &rounds);
    free(x);
    free(y);
    if (status != PC_OK) return NULL;
    snprintf(path, path_bytes, "/tmp/paycore-bench-risk-%d.json", (int)getpid());
    status = risk_model_save(m, path);
    risk_model_free(m);
    return status == PC_OK ? path : NULL;
}

static const char *write_rules(char *path, size_t path_bytes) {
    snprintf(path, path_bytes, "/tmp/paycore-bench-risk-%d.rules", (int)getpid());
    FILE *f = fopen(path, "w");
    if (f == NULL) return NULL;
    fputs("amount_limit currency=USD channel=ecommerce max_minor=500000\n"
          "amount_limit max_usd=20000\n"
          "velocity window=1h max_count=10\n"
          "velocity window=24h max_sum_usd=10000\n"
          "block payer=P0000000\nblock device=000000000000\nblock ip_prefix=10.0\n"
          "block country=KP\n"
          "mcc_hours mcc=7995,6051 hours=1-5\n"
          "aml_structuring threshold_usd=10000 margin_pct=10 count=3 window=7d\n"
          "aml_mule min_inflow_usd=1000 out_pct=80\n"
          "aml_fan_in min_payers=6 payee_age=2d\n", f);
    fclose(f);
    return path;
}

typedef struct {
    uint64_t *risk_ns;
    uint64_t *base_ns;
    size_t n;
    uint64_t outcomes[3];
} timings;

static volatile uint64_t sink;

/* The no-risk path: the authorization is checked and handed on. */
static uint64_t no_risk(const risk_auth_t *a) {
    uint64_t t0 = pc_mono_ns();
    risk_auth_t copy = *a;
    const char *field = NULL;
    sink += (uint64_t)risk_auth_validate(&copy, &field) + (uint64_t)copy.amount_minor;
    return pc_mono_ns() - t0;
}

static int run_timed(risk_engine_t *e, const stream *s, size_t begin, size_t end, int passes,
                     timings *t) {
    for (int pass = 0; pass < passes; pass++) {
        for (size_t i = begin; i < end; i++) {
            risk_auth_t a = s->rows[i];
            a.ts_s += (int64_t)pass * 6 * 86400; /* later passes: time moves on */
            t->base_ns[t->n] = no_risk(&a);
            risk_decision_t d;
            uint64_t t0 = pc_mono_ns();
            if (risk_decide(e, &a, &d) != PC_OK) return 1;
            t->risk_ns[t->n] = pc_mono_ns() - t0;
            t->outcomes[d.outcome]++;
            t->n++;
        }
    }
    return 0;
}

static uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages_total = 0, pages_resident = 0;
    if (f == NULL) return 0;
    if (fscanf(f, "%llu %llu", &pages_total, &pages_resident) != 2) pages_resident = 0;
    fclose(f);
    return pages_resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* 1M distinct payers, one payment each: the resident memory the state really takes. */
static void bench_million_payers(void) {
    risk_features_config_t c;
    risk_features_config_default(&c);
    risk_features_t *f = NULL;
    uint64_t rss0 = rss_bytes();
    if (risk_features_open(&c, &f) != PC_OK) return;
    risk_auth_t a;
    memset(&a, 0, sizeof(a));
    strcpy(a.currency, "USD");
    strcpy(a.country_payer, "US");
    strcpy(a.country_merchant, "US");
    a.amount_minor = 1999;
    a.mcc = 5411;
    uint64_t t0 = pc_mono_ns();
    for (uint32_t i = 0; i < c.payers_max; i++) {
        a.ts_s = 1717200000 + i / 16;
        snprintf(a.payer_id, sizeof(a.payer_id), "P%u", i);
        snprintf(a.payee_id, sizeof(a.payee_id), "M%u", i % 1000);
        risk_features_observe(f, &a);
    }
    double ns_per = (double)(pc_mono_ns() - t0) / c.payers_max;
    risk_features_stats_t st;
    risk_features_stats(f, &st);
    uint64_t rss1 = rss_bytes();
    printf("risk_features_1m payers=%llu dropped=%llu rss_mib=%.1f allocated_mib=%.1f "
           "limit_mib=512 observe_ns=%.0f\n",
           (unsigned long long)st.payers, (unsigned long long)st.dropped_total,
           (double)(rss1 - rss0) / 1048576.0, (double)st.memory_bytes / 1048576.0, ns_per);
    risk_features_close(f);
}

/* The model's score of each test row, one row a call as the engine scores: paycore's
 * tree walk against XGBoosterPredictFromDense, in alternating slices of the same run. */
static int bench_walk(const char *model_path, const stream *s, size_t warm, size_t end) {
    risk_model_t *m = NULL;
    if (risk_model_load(model_path, &m) != PC_OK || !risk_model_walks_trees(m)) {
        fprintf(stderr, "bench_risk: the model does not load for the tree walk\n");
        risk_model_free(m);
        return 1;
    }
    risk_features_config_t fc;
    risk_features_config_default(&fc);
    risk_features_t *f = NULL;
    if (risk_features_open(&fc, &f) != PC_OK) return 1;
    size_t n = end - warm;
    float *rows = malloc(n * RISK_FEATURE_COUNT * sizeof(float));
    for (size_t i = 0; i < end; i++) {
        if (i >= warm) risk_features_compute(f, &s->rows[i], rows + (i - warm) * RISK_FEATURE_COUNT);
        risk_features_observe(f, &s->rows[i]);
    }
    risk_features_close(f);
    const size_t slice = 1000;
    uint64_t walk_ns = 0, xgb_ns = 0;
    size_t differing = 0;
    for (size_t begin = 0; begin < n; begin += slice) {
        size_t stop = begin + slice < n ? begin + slice : n;
        float walk[1000], xgb[1000];
        uint64_t t0 = pc_mono_ns();
        for (size_t i = begin; i < stop; i++) {
            if (risk_model_score(m, rows + i * RISK_FEATURE_COUNT, &walk[i - begin]) != PC_OK) return 1;
        }
        uint64_t t1 = pc_mono_ns();
        for (size_t i = begin; i < stop; i++) {
            if (risk_model_score_xgboost(m, rows + i * RISK_FEATURE_COUNT, &xgb[i - begin]) != PC_OK) return 1;
        }
        uint64_t t2 = pc_mono_ns();
        walk_ns += t1 - t0;
        xgb_ns += t2 - t1;
        for (size_t i = 0; i < stop - begin; i++) differing += memcmp(&walk[i], &xgb[i], sizeof(float)) != 0;
    }
    double walk_per_s = (double)n / ((double)walk_ns / 1e9);
    double xgb_per_s = (double)n / ((double)xgb_ns / 1e9);
    printf("risk_score_walk per_s=%.0f ns_per_row=%.0f rows=%zu differing=%zu "
           "baseline=xgboost_predict baseline_per_s=%.0f baseline_ns_per_row=%.0f ratio=%.1f\n",
           walk_per_s, (double)walk_ns / (double)n, n, differing, xgb_per_s,
           (double)xgb_ns / (double)n, walk_per_s / xgb_per_s);
    free(rows);
    risk_model_free(m);
    return differing == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    bool quick = false;
    for (int i = 1; i < argc; i++) quick = quick || strcmp(argv[i], "--quick") == 0;
    const char *model_arg = NULL;
    bool no_store = false;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--model") == 0) model_arg = argv[i + 1];
        if (strcmp(argv[i], "--no-store") == 0) no_store = true;
    }
    bench_million_payers();
    stream s;
    load_stream(&s, 200000);
    size_t warm = 0;
    while (warm < s.count && s.rows[warm].ts_s < 1719273600) warm++;
    if (warm == 0 || warm == s.count) warm = s.count * 4 / 5;
    if (quick && warm > WARM_ROWS_QUICK) warm = WARM_ROWS_QUICK;
    size_t end = quick && warm + TIMED_ROWS_QUICK < s.count ? warm + TIMED_ROWS_QUICK : s.count;
    int passes = quick ? 1 : 3;
    char model_buf[256], rules_buf[256], db_buf[256];
    const char *model = model_arg ? model_arg : train_model(&s, warm, model_buf, sizeof(model_buf));
    const char *rules = write_rules(rules_buf, sizeof(rules_buf));
    snprintf(db_buf, sizeof(db_buf), "/tmp/paycore-bench-risk-%d.db", (int)getpid());
    risk_engine_config_t c;
    risk_engine_config_default(&c);
    c.model_path = model;
    c.rules_path = rules;
    c.decisions_db_path = no_store ? NULL : db_buf;
    risk_engine_t *e = NULL;
    if (model == NULL || rules == NULL || risk_engine_open(&c, &e) != PC_OK) {
        fprintf(stderr, "bench_risk: cannot set up the engine\n");
        return 1;
    }
    for (size_t i = 0; i < warm; i++) risk_engine_observe(e, &s.rows[i]);
    size_t timed = (end - warm) * (size_t)passes;
    timings t = {calloc(timed, sizeof(uint64_t)), calloc(timed, sizeof(uint64_t)), 0, {0}};
    uint64_t wall0 = pc_mono_ns();
    int rc = run_timed(e, &s, warm, end, passes, &t);
    double wall_s = (double)(pc_mono_ns() - wall0) / 1e9;
    risk_engine_stats_t st;
    risk_engine_stats(e, &st);
    pc_status flushed = risk_engine_flush(e);
    risk_engine_close(e);
    if (rc != 0 || flushed != PC_OK || t.n == 0) {
        fprintf(stderr, "bench_risk: scoring or storing failed\n");
        return 1;
    }
    printf("risk_features memory_bytes=%llu payers=%llu entities=%llu warm_rows=%zu\n",
           (unsigned long long)st.features.memory_bytes, (unsigned long long)st.features.payers,
           (unsigned long long)st.features.entities, warm);
    printf("risk_outcomes approve=%llu review=%llu decline=%llu decisions_per_s=%.0f\n",
           (unsigned long long)t.outcomes[0], (unsigned long long)t.outcomes[1],
           (unsigned long long)t.outcomes[2], (double)t.n / wall_s);
    double p50 = pct_us(t.risk_ns, t.n, 0.50), p99 = pct_us(t.risk_ns, t.n, 0.99);
    double p999 = pct_us(t.risk_ns, t.n, 0.999);
    double b50 = pct_us(t.base_ns, t.n, 0.50), b99 = pct_us(t.base_ns, t.n, 0.99);
    printf("risk_decide p50_us=%.1f p99_us=%.1f p999_us=%.1f decisions=%zu baseline=no_risk "
           "baseline_p50_us=%.2f baseline_p99_us=%.2f ratio=%.1f\n",
           p50, p99, p999, t.n, b50, b99, b99 > 0 ? p99 / b99 : 0.0);
    int walk_rc = bench_walk(model, &s, warm, end);
    if (model_arg == NULL) unlink(model_buf);
    unlink(rules_buf);
    unlink(db_buf);
    char wal[300];
    snprintf(wal, sizeof(wal), "%s-wal", db_buf);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", db_buf);
    unlink(wal);
    free(t.risk_ns);
    free(t.base_ns);
    free(s.rows);
    return walk_rc;
}
