/* cli/cmd_risk.c: `paycore risk train|eval|replay`.
 *   train  --data FILE --out MODEL [--split-ts S] [--valid-days D] [--snapshot FILE]
 *   eval   --data FILE --model MODEL [--from-ts S]
 *   replay --data FILE --url URL [--key KEY] [--limit N]
 * train and eval stream the CSV through the same feature code the server runs
 * (risk_features_compute, then risk_features_observe: a row never sees itself) and
 * print one line: roc_auc=.. pr_auc=.. recall_at_1pct_fpr=.. then extra pairs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>

#include "cli/cli.h"
#include "core/bytes.h"
#include "core/core.h"
#include "risk/risk.h"

#define DAY_S 86400
#define TRAIN_DAYS 24   /* data README: the first 24 days train, the rest test */
#define VALID_DAYS 4    /* the last training days pick the round count */

typedef struct {
    float *rows;          /* count x RISK_FEATURE_COUNT */
    uint8_t *labels;
    int64_t *ts_s;
    size_t count;
    size_t cap;
} dataset;

static void dataset_free(dataset *d) {
    free(d->rows);
    free(d->labels);
    free(d->ts_s);
    memset(d, 0, sizeof(*d));
}

static bool dataset_grow(dataset *d) {
    size_t cap = d->cap ? d->cap * 2 : 65536;
    float *rows = realloc(d->rows, cap * RISK_FEATURE_COUNT * sizeof(float));
    if (rows != NULL) d->rows = rows;
    uint8_t *labels = realloc(d->labels, cap);
    if (labels != NULL) d->labels = labels;
    int64_t *ts = realloc(d->ts_s, cap * sizeof(int64_t));
    if (ts != NULL) d->ts_s = ts;
    if (rows == NULL || labels == NULL || ts == NULL) return false;
    d->cap = cap;
    return true;
}

static void progress_bar(const char *phase, uint64_t done, uint64_t total) {
    uint32_t width = 30, filled = total ? (uint32_t)(done * width / total) : width;
    char bar[32];
    for (uint32_t i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%-8s [%s] %3u%%", phase, bar, total ? (unsigned)(done * 100 / total) : 100);
    if (done >= total) fputc('\n', stderr);
}

/* Reads every row: features from the past, then the row joins the state. */
static int featurize(const char *path, risk_features_t *features, bool tty, dataset *d) {
    risk_csv_t *csv = NULL;
    pc_status status = risk_csv_open(path, &csv);
    if (status != PC_OK) {
        fprintf(stderr, "paycore risk: cannot read %s: %s\n", path, pc_status_code(status));
        return 1;
    }
    risk_auth_t auth;
    int rc = 0;
    while ((status = risk_csv_next(csv, &auth)) == PC_OK) {
        if (auth.is_fraud < 0) { status = PC_RISK_CSV_INVALID; break; }
        if (d->count == d->cap && !dataset_grow(d)) { status = PC_NO_MEMORY; break; }
        risk_features_compute(features, &auth, d->rows + d->count * RISK_FEATURE_COUNT);
        risk_features_observe(features, &auth);
        d->labels[d->count] = (uint8_t)auth.is_fraud;
        d->ts_s[d->count] = auth.ts_s;
        if (d->count > 0 && auth.ts_s < d->ts_s[d->count - 1]) { status = PC_RISK_CSV_INVALID; break; }
        d->count++;
        if (tty && d->count % 20000 == 0) {
            progress_bar("features", risk_csv_bytes_read(csv), risk_csv_bytes_total(csv));
        }
    }
    if (status != PC_NOT_FOUND) {
        fprintf(stderr, "paycore risk: %s line %llu: %s (labelled rows in time order expected)\n",
                path, (unsigned long long)risk_csv_line(csv), pc_status_code(status));
        rc = 1;
    } else if (tty) {
        progress_bar("features", 1, 1);
    }
    risk_csv_close(csv);
    return rc;
}

static void print_metrics(const risk_metrics_t *m) {
    printf("roc_auc=%.4f pr_auc=%.4f recall_at_1pct_fpr=%.4f", m->roc_auc, m->pr_auc,
           m->recall_at_1pct_fpr);
}

static const char *arg_value(int argc, char **argv, const char *name) {
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return NULL;
}

static int load_dataset(const char *path, bool tty, dataset *d) {
    risk_features_config_t config;
    risk_features_config_default(&config);
    risk_features_t *features = NULL;
    if (risk_features_open(&config, &features) != PC_OK) {
        fprintf(stderr, "paycore risk: out of memory\n");
        return 1;
    }
    int rc = featurize(path, features, tty, d);
    risk_features_close(features);
    if (rc == 0 && d->count == 0) {
        fprintf(stderr, "paycore risk: %s has no rows\n", path);
        rc = 1;
    }
    return rc;
}

static size_t first_at_or_after(const dataset *d, int64_t ts_s) {
    size_t i = 0;
    while (i < d->count && d->ts_s[i] < ts_s) i++;
    return i;
}

static int train_report(risk_model_t *model, const dataset *d, size_t test_begin,
                        uint32_t rounds, const risk_train_report_t *report) {
    size_t test_count = d->count - test_begin;
    float *scores = malloc((test_count ? test_count : 1) * sizeof(float));
    if (scores == NULL) return 1;
    pc_status status = risk_model_score_batch(model, d->rows + test_begin * RISK_FEATURE_COUNT,
                                              test_count, scores);
    risk_metrics_t m;
    if (status == PC_OK) status = risk_metrics_compute(scores, d->labels + test_begin, test_count, &m);
    free(scores);
    if (status != PC_OK) {
        fprintf(stderr, "paycore risk: scoring failed: %s\n", pc_status_code(status));
        return 1;
    }
    print_metrics(&m);
    printf(" rounds=%u train_rows=%zu test_rows=%zu test_frauds=%llu features=%d", rounds,
           test_begin, test_count, (unsigned long long)m.positives, RISK_FEATURE_COUNT);
    if (report != NULL) {
        printf(" valid_roc_auc=%.4f valid_recall_at_1pct_fpr=%.4f", report->valid_roc_auc,
               report->valid_recall_at_1pct_fpr);
    }
    printf("\n");
    return 0;
}

static int cmd_train(int argc, char **argv) {
    const char *data = arg_value(argc, argv, "--data");
    const char *out = arg_value(argc, argv, "--out");
    if (data == NULL || out == NULL) {
        fprintf(stderr, "usage: paycore risk train --data FILE --out MODEL [--split-ts S]\n");
        return 2;
    }
    bool tty = isatty(2);
    dataset d = {0};
    if (load_dataset(data, tty, &d) != 0) { dataset_free(&d); return 1; }
    const char *split_arg = arg_value(argc, argv, "--split-ts");
    int64_t split_s = split_arg ? strtoll(split_arg, NULL, 10)
                                : (d.ts_s[0] / DAY_S) * DAY_S + TRAIN_DAYS * DAY_S;
    const char *valid_arg = arg_value(argc, argv, "--valid-days");
    int64_t valid_days = valid_arg ? strtoll(valid_arg, NULL, 10) : VALID_DAYS;
    size_t test_begin = first_at_or_after(&d, split_s);
    size_t valid_begin = first_at_or_after(&d, split_s - valid_days * DAY_S);
    if (test_begin == 0 || valid_begin == 0 || valid_begin >= test_begin) {
        fprintf(stderr, "paycore risk: the data must span more than %lld days before the split\n",
                (long long)valid_days);
        dataset_free(&d);
        return 1;
    }
    risk_train_config_t config;
    risk_train_config_default(&config);
    config.verbose_progress = tty;
    const char *eta_arg = arg_value(argc, argv, "--eta");
    const char *depth_arg = arg_value(argc, argv, "--max-depth");
    const char *rounds_arg = arg_value(argc, argv, "--rounds");
    if (eta_arg != NULL) config.eta = strtod(eta_arg, NULL);
    if (depth_arg != NULL) config.max_depth = (uint32_t)strtoul(depth_arg, NULL, 10);
    if (rounds_arg != NULL) config.rounds_fixed = (uint32_t)strtoul(rounds_arg, NULL, 10);
    if (!(config.eta > 0 && config.eta <= 1) || config.max_depth < 1 || config.max_depth > 12) {
        fprintf(stderr, "paycore risk: --eta must be in (0, 1], --max-depth in 1..12\n");
        dataset_free(&d);
        return 2;
    }
    risk_train_report_t report = {NAN, NAN};
    config.report_out = &report;
    risk_model_t *model = NULL;
    uint32_t rounds = 0;
    pc_status status = risk_model_train(d.rows, d.labels, test_begin, test_begin - valid_begin,
                                        &config, &model, &rounds);
    int rc = 1;
    if (status != PC_OK) {
        fprintf(stderr, "paycore risk: training failed: %s\n", pc_status_code(status));
    } else if ((status = risk_model_save(model, out)) != PC_OK) {
        fprintf(stderr, "paycore risk: cannot write %s: %s\n", out, pc_status_code(status));
    } else {
        rc = test_begin < d.count ? train_report(model, &d, test_begin, rounds, &report) : 0;
        if (test_begin == d.count) printf("roc_auc=nan pr_auc=nan recall_at_1pct_fpr=nan rounds=%u\n", rounds);
    }
    risk_model_free(model);
    dataset_free(&d);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    const char *data = arg_value(argc, argv, "--data");
    const char *model_path = arg_value(argc, argv, "--model");
    if (data == NULL || model_path == NULL) {
        fprintf(stderr, "usage: paycore risk eval --data FILE --model MODEL [--from-ts S]\n");
        return 2;
    }
    risk_model_t *model = NULL;
    pc_status status = risk_model_load(model_path, &model);
    if (status != PC_OK) {
        fprintf(stderr, "paycore risk: cannot load %s: %s\n", model_path, pc_status_code(status));
        return 1;
    }
    dataset d = {0};
    int rc = load_dataset(data, isatty(2), &d);
    if (rc == 0) {
        const char *from_arg = arg_value(argc, argv, "--from-ts");
        size_t begin = from_arg ? first_at_or_after(&d, strtoll(from_arg, NULL, 10)) : 0;
        rc = train_report(model, &d, begin, 0, NULL);
    }
    risk_model_free(model);
    dataset_free(&d);
    return rc;
}

/* ---------------------------------------------------------------- replay */

static size_t on_body(char *data, size_t size, size_t count, void *ctx) {
    size_t n = size * count;
    return pc_bytes_append(ctx, data, n) ? n : 0;
}

static json_t *auth_to_json(const risk_auth_t *a) {
    char mcc[8];
    snprintf(mcc, sizeof(mcc), "%04u", (unsigned)a->mcc);
    json_t *o = json_pack("{s:I,s:I,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:i}", "txn_id",
                          (json_int_t)a->txn_id, "ts", (json_int_t)a->ts_s, "payer_id", a->payer_id,
                          "payee_id", a->payee_id, "amount_minor", (json_int_t)a->amount_minor,
                          "currency", a->currency, "mcc", mcc, "channel",
                          risk_channel_name(a->channel), "country_payer", a->country_payer,
                          "country_merchant", a->country_merchant, "account_age_days",
                          (int)a->account_age_days);
    if (o != NULL && a->device_id[0] != '\0') json_object_set_new(o, "device_id", json_string(a->device_id));
    if (o != NULL && a->ip_prefix[0] != '\0') json_object_set_new(o, "ip_prefix", json_string(a->ip_prefix));
    return o;
}

typedef struct {
    uint64_t outcomes[3];
    uint64_t errors;
    uint64_t *latency_ns;
    float *scores;
    uint8_t *labels;
    size_t scored;
    size_t count;
    size_t cap;
} replay_stats;

/* Doubles the room of the three per-authorization arrays; false without memory (each
 * array stays as it was or grown, owned by 'st' either way, so nothing leaks). */
static bool replay_grow(replay_stats *st) {
    size_t cap = st->cap ? st->cap * 2 : 65536;
    uint64_t *latency_ns = reallocarray(st->latency_ns, cap, sizeof(uint64_t));
    if (latency_ns != NULL) st->latency_ns = latency_ns;
    float *scores = reallocarray(st->scores, cap, sizeof(float));
    if (scores != NULL) st->scores = scores;
    uint8_t *labels = realloc(st->labels, cap);
    if (labels != NULL) st->labels = labels;
    if (latency_ns == NULL || scores == NULL || labels == NULL) return false;
    st->cap = cap;
    return true;
}

/* One POST; counts the outcome, or an error (any non-200 or unreadable reply). */
static void replay_one(CURL *curl, const risk_auth_t *a, replay_stats *st) {
    json_t *o = auth_to_json(a);
    char *payload = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    pc_bytes_t reply;
    pc_bytes_init(&reply, SIZE_MAX);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    uint64_t t0 = pc_mono_ns();
    CURLcode rc = payload ? curl_easy_perform(curl) : CURLE_OUT_OF_MEMORY;
    st->latency_ns[st->count++] = pc_mono_ns() - t0;
    long http = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
    json_t *body = rc == CURLE_OK && http == 200 && reply.data ? json_loads(reply.data, 0, NULL) : NULL;
    const char *outcome = body ? json_string_value(json_object_get(body, "outcome")) : NULL;
    int index = -1;
    for (int i = 0; i < 3 && outcome != NULL; i++) {
        if (strcmp(outcome, risk_outcome_name((risk_outcome)i)) == 0) index = i;
    }
    if (index < 0) {
        st->errors++;
        if (st->errors <= 3) fprintf(stderr, "paycore risk replay: HTTP %ld: %.200s\n", http, reply.data ? reply.data : curl_easy_strerror(rc));
    } else {
        st->outcomes[index]++;
        json_t *score = json_object_get(body, "score");
        if (json_is_number(score) && a->is_fraud >= 0) {
            st->scores[st->scored] = (float)json_number_value(score);
            st->labels[st->scored++] = (uint8_t)a->is_fraud;
        }
    }
    json_decref(body);
    pc_bytes_free(&reply);
    free(payload);
}

static CURL *replay_curl(const char *url, const char *key, struct curl_slist **headers) {
    CURL *curl = curl_easy_init();
    if (curl == NULL) return NULL;
    char endpoint[2048], auth[512];
    snprintf(endpoint, sizeof(endpoint), "%s/v1/risk/decisions", url);
    *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (key != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        *headers = curl_slist_append(*headers, auth);
    }
    curl_easy_setopt(curl, CURLOPT_URL, endpoint);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    return curl;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void replay_report(replay_stats *st, double wall_s) {
    qsort(st->latency_ns, st->count, sizeof(uint64_t), cmp_u64);
    size_t n = st->count ? st->count : 1;
    double p50 = st->count ? (double)st->latency_ns[(n - 1) / 2] / 1e6 : 0;
    double p99 = st->count ? (double)st->latency_ns[(size_t)ceil(0.99 * (double)n) - 1] / 1e6 : 0;
    printf("decisions=%llu approve=%llu review=%llu decline=%llu errors=%llu "
           "throughput_per_s=%.0f p50_ms=%.3f p99_ms=%.3f",
           (unsigned long long)(st->outcomes[0] + st->outcomes[1] + st->outcomes[2]),
           (unsigned long long)st->outcomes[0], (unsigned long long)st->outcomes[1],
           (unsigned long long)st->outcomes[2], (unsigned long long)st->errors,
           wall_s > 0 ? (double)st->count / wall_s : 0.0, p50, p99);
    risk_metrics_t m;
    if (st->scored > 0 && risk_metrics_compute(st->scores, st->labels, st->scored, &m) == PC_OK &&
        !isnan(m.roc_auc)) {
        printf(" roc_auc=%.4f pr_auc=%.4f recall_at_1pct_fpr=%.4f", m.roc_auc, m.pr_auc,
               m.recall_at_1pct_fpr);
    }
    printf("\n");
}

static int cli_risk_replay(int argc, char **argv) {
    const char *data = arg_value(argc, argv, "--data");
    const char *url = arg_value(argc, argv, "--url");
    const char *key = arg_value(argc, argv, "--key");
    const char *limit_arg = arg_value(argc, argv, "--limit");
    if (key == NULL) key = getenv("PAYCORE_KEY");
    if (data == NULL || url == NULL) {
        fprintf(stderr, "usage: paycore risk replay --data FILE --url URL [--key KEY] [--limit N]\n");
        return 2;
    }
    size_t limit = limit_arg ? (size_t)strtoull(limit_arg, NULL, 10) : (size_t)-1;
    risk_csv_t *csv = NULL;
    pc_status status = risk_csv_open(data, &csv);
    if (status != PC_OK) {
        fprintf(stderr, "paycore risk replay: cannot read %s: %s\n", data, pc_status_code(status));
        return 1;
    }
    struct curl_slist *headers = NULL;
    CURL *curl = replay_curl(url, key, &headers);
    replay_stats st = {{0}, 0, NULL, NULL, NULL, 0, 0, 0};
    bool tty = isatty(2);
    uint64_t wall0 = pc_mono_ns();
    risk_auth_t a;
    int rc = 0;
    while (curl != NULL && st.count < limit && (status = risk_csv_next(csv, &a)) == PC_OK) {
        if (st.count == st.cap && !replay_grow(&st)) {
            fprintf(stderr, "paycore risk replay: out of memory after %zu authorizations\n", st.count);
            rc = 1;
            break;
        }
        replay_one(curl, &a, &st);
        if (tty && st.count % 1000 == 0) progress_bar("replay", risk_csv_bytes_read(csv), risk_csv_bytes_total(csv));
    }
    if (status != PC_OK && status != PC_NOT_FOUND) {
        fprintf(stderr, "paycore risk replay: %s line %llu: %s\n", data,
                (unsigned long long)risk_csv_line(csv), pc_status_code(status));
        rc = 1;
    }
    if (curl == NULL) rc = 1;
    if (rc == 0) replay_report(&st, (double)(pc_mono_ns() - wall0) / 1e9);
    if (st.errors > 0) rc = 1;
    curl_slist_free_all(headers);
    if (curl != NULL) curl_easy_cleanup(curl);
    risk_csv_close(csv);
    free(st.latency_ns);
    free(st.scores);
    free(st.labels);
    return rc;
}

int cli_risk(int argc, char **argv) {
    if (argc < 2 || cli_wants_help(argc, argv)) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: paycore risk train --data FILE --out MODEL\n"
                "       paycore risk eval --data FILE --model MODEL [--from-ts S]\n"
                "       paycore risk replay --data FILE --url URL [--key KEY] [--limit N]\n");
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(argv[1], "replay") == 0) return cli_risk_replay(argc - 1, argv + 1);
    fprintf(stderr, "paycore risk: unknown subcommand '%s'\n", argv[1]);
    return 2;
}
