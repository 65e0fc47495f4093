/* cli/cmd_load.c: `paycore load`, an HTTP load generator against a running server.
 * Creates its own accounts (no balance limits, so every transfer can succeed), then N
 * threads, each with one keep-alive libcurl handle, POST transfers (single, or
 * batches of --batch) until --duration-s or --count. Latencies go into a log-scale
 * histogram (1 % resolution) per thread; prints key=value lines:
 *   load concurrency=64 batch=1 requests=... transfers=... errors=... elapsed_s=...
 *        requests_per_s=... transfers_per_s=... p50_ms=... p99_ms=... p999_ms=... */
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_http.h"
#include "core/core.h"
#include "paycore/limits.h"
#include "store/store.h"
#include "writer/writer.h"

#define LOAD_THREADS_MAX 1024
#define HISTOGRAM_SLOTS 2400      /* 1.01^2400 us is far beyond any timeout */
#define BODY_BYTES_PER_TRANSFER 192

typedef struct {
    const char *url;
    const char *key;
    char prefix[32];
    uint32_t accounts;
    uint32_t batch;
    uint64_t count_max;            /* requests in total; 0 = until the deadline */
    uint64_t deadline_ns;
    _Atomic uint64_t requests_started;
    writer_t *engine;              /* --engine-db: the same work in-process, no HTTP */
} load_plan;

typedef struct {
    load_plan *plan;
    uint32_t index;
    uint32_t conn_first;           /* HTTP: this worker's connections */
    uint32_t conn_count;
    uint64_t requests;
    uint64_t transfers;
    uint64_t errors;
    char first_error[160];
    uint64_t histogram[HISTOGRAM_SLOTS];
} load_worker;

static uint32_t latency_slot(uint64_t latency_ns) {
    double us = (double)latency_ns / 1000.0;
    if (us < 1.0) return 0;
    uint32_t slot = (uint32_t)(log(us) / log(1.01));
    return slot < HISTOGRAM_SLOTS ? slot : HISTOGRAM_SLOTS - 1;
}

static size_t discard(char *data, size_t size, size_t count, void *ctx) {
    char *first = ctx;
    if (first[0] == '\0') snprintf(first, 160, "%.*s", (int)(size * count < 159 ? size * count : 159), data);
    return size * count;
}

static uint64_t next_random(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* One transfer's JSON at 'out'; returns bytes written. */
static size_t transfer_json(char *out, size_t room, const load_plan *plan, uint32_t worker,
                            uint64_t sequence, uint64_t *random) {
    uint32_t debit = (uint32_t)(next_random(random) % plan->accounts);
    uint32_t credit = (uint32_t)(next_random(random) % (plan->accounts - 1));
    if (credit >= debit) credit++;
    int n = snprintf(out, room,
                     "{\"id\":\"%s-%u-%llu\",\"debit_account_id\":\"%s-a%u\",\"credit_account_id\":"
                     "\"%s-a%u\",\"amount\":%u,\"currency\":\"USD\",\"code\":1}",
                     plan->prefix, worker, (unsigned long long)sequence, plan->prefix, debit,
                     plan->prefix, credit, (unsigned)(1 + next_random(random) % 1000));
    return n > 0 ? (size_t)n : 0;
}

static size_t request_body(char *out, size_t room, const load_plan *plan, uint32_t worker,
                           uint64_t *sequence, uint64_t *random) {
    if (plan->batch == 1) return transfer_json(out, room, plan, worker, (*sequence)++, random);
    size_t used = (size_t)snprintf(out, room, "{\"transfers\":[");
    for (uint32_t i = 0; i < plan->batch; i++) {
        if (i > 0) out[used++] = ',';
        used += transfer_json(out + used, room - used, plan, worker, (*sequence)++, random);
    }
    used += (size_t)snprintf(out + used, room - used, "]}");
    return used;
}

static CURL *worker_handle(const load_plan *plan, struct curl_slist **headers, char *first_error) {
    CURL *curl = curl_easy_init();
    char url[512], auth[512];
    snprintf(url, sizeof url, "%s/v1/transfers", plan->url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", plan->key ? plan->key : "");
    *headers = curl_slist_append(NULL, "Content-Type: application/json");
    *headers = curl_slist_append(*headers, auth);
    *headers = curl_slist_append(*headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, first_error);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    return curl;
}

static bool worker_continue(load_plan *plan) {
    if (plan->count_max > 0) return atomic_fetch_add(&plan->requests_started, 1) < plan->count_max;
    return pc_mono_ns() < plan->deadline_ns;
}

/* One connection of a worker: its handle, body buffer and sequence. */
typedef struct {
    CURL *curl;
    struct curl_slist *headers;
    char *body;
    size_t room;
    uint32_t index;                /* unique over the run: part of transfer ids */
    uint64_t sequence;
    uint64_t random;
    uint64_t start_ns;
    char scratch[160];
} load_conn;

static bool conn_open(load_conn *conn, const load_plan *plan, uint32_t index) {
    conn->index = index;
    conn->random = 0x9e3779b97f4a7c15ull ^ ((uint64_t)index * 7919 + 1);
    conn->room = (size_t)plan->batch * BODY_BYTES_PER_TRANSFER + 64;
    conn->body = malloc(conn->room);
    conn->curl = worker_handle(plan, &conn->headers, conn->scratch);
    if (conn->curl != NULL) curl_easy_setopt(conn->curl, CURLOPT_PRIVATE, conn);
    return conn->body != NULL && conn->curl != NULL;
}

static void conn_close(load_conn *conn) {
    curl_slist_free_all(conn->headers);
    if (conn->curl != NULL) curl_easy_cleanup(conn->curl);
    free(conn->body);
}

/* Prepares the next request and hands it to 'multi'. */
static void conn_start(load_conn *conn, const load_plan *plan, CURLM *multi) {
    size_t bytes = request_body(conn->body, conn->room, plan, conn->index, &conn->sequence, &conn->random);
    curl_easy_setopt(conn->curl, CURLOPT_POSTFIELDSIZE, (long)bytes);
    curl_easy_setopt(conn->curl, CURLOPT_POSTFIELDS, conn->body);
    conn->scratch[0] = '\0';
    conn->start_ns = pc_mono_ns();
    curl_multi_add_handle(multi, conn->curl);
}

static void conn_finish(load_worker *w, load_conn *conn, CURLcode rc) {
    w->histogram[latency_slot(pc_mono_ns() - conn->start_ns)]++;
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(conn->curl, CURLINFO_RESPONSE_CODE, &status);
    w->requests++;
    if (status == 200 || status == 201) {
        w->transfers += w->plan->batch;
    } else if (w->errors++ == 0) {
        snprintf(w->first_error, sizeof w->first_error, "%ld %.120s", status,
                 rc == CURLE_OK ? conn->scratch : curl_easy_strerror(rc));
    }
}

/* A worker drives its connections with one curl multi handle (event-driven, like
 * wrk): few threads, so the load generator leaves the CPU to the server. */
static void *worker_run(void *arg) {
    load_worker *w = arg;
    load_conn *conns = calloc(w->conn_count, sizeof(*conns));
    CURLM *multi = curl_multi_init();
    uint32_t active = 0;
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)w->conn_count);
    for (uint32_t i = 0; conns != NULL && multi != NULL && i < w->conn_count; i++) {
        if (!conn_open(&conns[i], w->plan, w->conn_first + i)) break;
        if (!worker_continue(w->plan)) break;
        conn_start(&conns[i], w->plan, multi);
        active++;
    }
    for (uint64_t spins = 0; active > 0 && spins < UINT32_MAX; spins++) {
        int running = 0, queued = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            load_conn *conn = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&conn);
            CURLcode rc = msg->data.result;
            curl_multi_remove_handle(multi, conn->curl);
            conn_finish(w, conn, rc);
            if (worker_continue(w->plan)) conn_start(conn, w->plan, multi);
            else active--;
        }
        if (active > 0) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (uint32_t i = 0; conns != NULL && i < w->conn_count; i++) conn_close(&conns[i]);
    if (multi != NULL) curl_multi_cleanup(multi);
    free(conns);
    return NULL;
}

/* ---- --engine-db: the same workload through writer_submit_wait, no HTTP ---- */

static void engine_transfer(ledger_transfer_t *t, const load_plan *plan, uint32_t worker,
                            uint64_t sequence, uint64_t *random) {
    memset(t, 0, sizeof(*t));
    uint32_t debit = (uint32_t)(next_random(random) % plan->accounts);
    uint32_t credit = (uint32_t)(next_random(random) % (plan->accounts - 1));
    if (credit >= debit) credit++;
    snprintf(t->id, PC_ID_SIZE, "%s-%u-%llu", plan->prefix, worker, (unsigned long long)sequence);
    snprintf(t->debit_account_id, PC_ID_SIZE, "%s-a%u", plan->prefix, debit);
    snprintf(t->credit_account_id, PC_ID_SIZE, "%s-a%u", plan->prefix, credit);
    t->amount = (int64_t)(1 + next_random(random) % 1000);
    memcpy(t->currency, "USD", 4);
    t->code = 1;
}

static void *engine_worker_run(void *arg) {
    load_worker *w = arg;
    load_plan *plan = w->plan;
    ledger_transfer_t *events = calloc(plan->batch, sizeof(*events));
    ledger_transfer_result_t *results = calloc(plan->batch, sizeof(*results));
    uint64_t sequence = 0, random = 0x9e3779b97f4a7c15ull ^ ((uint64_t)w->index * 7919 + 1);
    for (uint64_t n = 0; events && results && n < UINT32_MAX && worker_continue(plan); n++) {
        for (uint32_t i = 0; i < plan->batch; i++) engine_transfer(&events[i], plan, w->index, sequence++, &random);
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = plan->batch,
                            .transfers = events, .transfer_results = results};
        uint64_t start_ns = pc_mono_ns();
        pc_status status = writer_submit_wait(plan->engine, &cmd);
        w->histogram[latency_slot(pc_mono_ns() - start_ns)]++;
        w->requests++;
        if (status == PC_OK && results[0].status == PC_OK) {
            w->transfers += plan->batch;
        } else if (w->errors++ == 0) {
            snprintf(w->first_error, sizeof w->first_error, "%s", pc_status_code(status != PC_OK ? status : results[0].status));
        }
    }
    free(events);
    free(results);
    return NULL;
}

static bool engine_setup(const load_plan *plan) {
    ledger_account_t *accounts = calloc(LEDGER_BATCH_EVENTS_MAX, sizeof(*accounts));
    ledger_account_result_t *results = calloc(LEDGER_BATCH_EVENTS_MAX, sizeof(*results));
    bool ok = accounts != NULL && results != NULL;
    for (uint32_t first = 0; ok && first < plan->accounts; first += LEDGER_BATCH_EVENTS_MAX) {
        uint32_t count = plan->accounts - first;
        if (count > LEDGER_BATCH_EVENTS_MAX) count = LEDGER_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < count; i++) {
            memset(&accounts[i], 0, sizeof accounts[i]);
            snprintf(accounts[i].id, PC_ID_SIZE, "%s-a%u", plan->prefix, first + i);
            memcpy(accounts[i].currency, "USD", 4);
            accounts[i].code = 1;
        }
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count,
                            .accounts = accounts, .account_results = results};
        ok = writer_submit_wait(plan->engine, &cmd) == PC_OK && results[0].status == PC_OK;
    }
    free(accounts);
    free(results);
    if (!ok) fprintf(stderr, "paycore load: creating engine accounts failed\n");
    return ok;
}

/* Creates the run's accounts in batches; false after printing why. */
static bool load_setup(const load_plan *plan) {
    cli_http_t http = {.url = plan->url, .key = plan->key, .timeout_s = 120};
    for (uint32_t first = 0; first < plan->accounts; first += LEDGER_BATCH_EVENTS_MAX) {
        uint32_t count = plan->accounts - first;
        if (count > LEDGER_BATCH_EVENTS_MAX) count = LEDGER_BATCH_EVENTS_MAX;
        size_t room = (size_t)count * 96 + 64, used = 0;
        char *body = malloc(room);
        if (body == NULL) return false;
        used += (size_t)snprintf(body, room, "{\"accounts\":[");
        for (uint32_t i = 0; i < count; i++) {
            used += (size_t)snprintf(body + used, room - used, "%s{\"id\":\"%s-a%u\",\"currency\":\"USD\",\"code\":1}",
                                     i ? "," : "", plan->prefix, first + i);
        }
        snprintf(body + used, room - used, "]}");
        cli_reply_t reply;
        bool answered = cli_http_call(&http, "POST", "/v1/accounts", body, &reply);
        free(body);
        bool ok = answered && reply.status == 200;
        if (!ok) fprintf(stderr, "paycore load: creating accounts failed: %ld %s %s\n", reply.status, reply.error, reply.body ? reply.body : "");
        cli_reply_free(&reply);
        if (!ok) return false;
    }
    return true;
}

/* The latency (ms) at 'quantile' of the merged histogram. */
static double histogram_quantile(const uint64_t *slots, uint64_t total, double quantile) {
    uint64_t target = (uint64_t)ceil(quantile * (double)total), seen = 0;
    for (uint32_t i = 0; i < HISTOGRAM_SLOTS; i++) {
        seen += slots[i];
        if (seen >= target && seen > 0) return pow(1.01, (double)i + 1.0) / 1000.0;
    }
    return 0.0;
}

static void load_report(const load_plan *plan, load_worker *workers, uint32_t threads,
                        uint32_t concurrency, double elapsed_s) {
    static uint64_t merged[HISTOGRAM_SLOTS];
    uint64_t requests = 0, transfers = 0, errors = 0;
    const char *first_error = NULL;
    memset(merged, 0, sizeof merged);
    for (uint32_t t = 0; t < threads; t++) {
        requests += workers[t].requests;
        transfers += workers[t].transfers;
        errors += workers[t].errors;
        if (first_error == NULL && workers[t].errors > 0) first_error = workers[t].first_error;
        for (uint32_t i = 0; i < HISTOGRAM_SLOTS; i++) merged[i] += workers[t].histogram[i];
    }
    printf("load mode=%s concurrency=%u batch=%u accounts=%u requests=%llu transfers=%llu errors=%llu "
           "elapsed_s=%.3f requests_per_s=%.0f transfers_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
           "p999_ms=%.3f\n", plan->engine ? "engine" : "http", concurrency, plan->batch, plan->accounts, (unsigned long long)requests,
           (unsigned long long)transfers, (unsigned long long)errors, elapsed_s,
           (double)requests / elapsed_s, (double)transfers / elapsed_s,
           histogram_quantile(merged, requests, 0.50), histogram_quantile(merged, requests, 0.99),
           histogram_quantile(merged, requests, 0.999));
    if (first_error != NULL) fprintf(stderr, "paycore load: first error: %s\n", first_error);
}

/* 'concurrency' connections (or engine submitters) over 'threads' workers. */
static int load_run(load_plan *plan, uint32_t concurrency, uint32_t threads) {
    if (plan->engine != NULL || threads > concurrency) threads = concurrency;
    load_worker *workers = calloc(threads, sizeof(*workers));
    pthread_t *ids = calloc(threads, sizeof(*ids));
    if (workers == NULL || ids == NULL) return free(workers), free(ids), 1;
    uint64_t start_ns = pc_mono_ns();
    plan->deadline_ns += start_ns;
    uint32_t started = 0;
    for (; started < threads; started++) {
        workers[started].plan = plan;
        workers[started].index = started;
        workers[started].conn_first = started * (concurrency / threads) +
                                      (started < concurrency % threads ? started : concurrency % threads);
        workers[started].conn_count = concurrency / threads + (started < concurrency % threads ? 1 : 0);
        if (pthread_create(&ids[started], NULL, plan->engine ? engine_worker_run : worker_run,
                           &workers[started]) != 0) {
            break;
        }
    }
    for (uint32_t t = 0; t < started; t++) pthread_join(ids[t], NULL);
    double elapsed_s = (double)(pc_mono_ns() - start_ns) / 1e9;
    load_report(plan, workers, started, concurrency, elapsed_s);
    uint64_t errors = 0;
    for (uint32_t t = 0; t < started; t++) errors += workers[t].errors;
    free(workers);
    free(ids);
    return errors == 0 && started == threads ? 0 : 1;
}

static int engine_run(load_plan *plan, const char *db_path, uint32_t threads) {
    store_t *store = NULL;
    store_options_t options = {.create = true};
    char key_path[4096];
    snprintf(key_path, sizeof key_path, "%s.key", db_path);
    pc_status status = store_open(&store, db_path, &options);
    if (status == PC_OK) status = writer_start(&plan->engine, store, key_path, NULL);
    if (status != PC_OK) {
        fprintf(stderr, "paycore load: engine: %s\n", pc_status_code(status));
        if (store != NULL) store_close(store);
        return 1;
    }
    int exit_status = engine_setup(plan) ? load_run(plan, threads, threads) : 1;
    writer_stop(plan->engine);
    store_close(store);
    return exit_status;
}

int cli_load(int argc, char **argv) {
    cli_opt opts[] = {
        {"url", "PAYCORE_URL", false, "http://127.0.0.1:8080", "server URL"},
        {"key", "PAYCORE_KEY", false, NULL, "API key (admin or merchant)"},
        {"concurrency", NULL, false, "64", "keep-alive connections (engine: submitter threads)"},
        {"threads", NULL, false, "2", "client threads driving the connections (event-driven)"},
        {"duration-s", NULL, false, "10", "run this long (unless --count)"},
        {"count", NULL, false, NULL, "stop after this many requests in total"},
        {"batch", NULL, false, "1", "transfers per POST (1..8189)"},
        {"accounts", NULL, false, "1000", "accounts the run creates and moves money among"},
        {"engine-db", NULL, false, NULL, "run the same work in-process on this new database (no HTTP): the baseline"},
    };
    enum { N = 9 };
    const char *usage = "usage: paycore load [options]\n\nHTTP load generator: POSTs transfers to a "
                        "running server and prints one key=value line:\nload concurrency= batch= "
                        "requests= transfers= errors= elapsed_s= requests_per_s= transfers_per_s= "
                        "p50_ms= p99_ms= p999_ms=\nExit 1 when any request failed.";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, N);
        return 0;
    }
    cli_rest rest;
    if (!cli_args_parse("load", argc, argv, opts, N, &rest) || rest.positional_count > 0) return 2;
    uint64_t concurrency, threads, duration_s, count = 0, batch, accounts;
    const char *count_text = cli_opt_get(opts, N, "count");
    if (!cli_parse_u64(cli_opt_get(opts, N, "concurrency"), &concurrency) || concurrency < 1 ||
        concurrency > LOAD_THREADS_MAX ||
        !cli_parse_u64(cli_opt_get(opts, N, "threads"), &threads) || threads < 1 || threads > 64 ||
        !cli_parse_u64(cli_opt_get(opts, N, "duration-s"), &duration_s) || duration_s > 86400 ||
        (count_text != NULL && !cli_parse_u64(count_text, &count)) ||
        !cli_parse_u64(cli_opt_get(opts, N, "batch"), &batch) || batch < 1 || batch > LEDGER_BATCH_EVENTS_MAX ||
        !cli_parse_u64(cli_opt_get(opts, N, "accounts"), &accounts) || accounts < 2 || accounts > 10000000) {
        fprintf(stderr, "paycore load: bad option value (see --help)\n");
        return 2;
    }
    load_plan plan = {.url = cli_opt_get(opts, N, "url"), .key = cli_opt_get(opts, N, "key"),
                      .accounts = (uint32_t)accounts, .batch = (uint32_t)batch, .count_max = count,
                      .deadline_ns = duration_s * 1000000000ull};
    snprintf(plan.prefix, sizeof plan.prefix, "L%llx", (unsigned long long)(pc_wall_ns() / 1000u));
    const char *engine_db = cli_opt_get(opts, N, "engine-db");
    if (engine_db != NULL) return engine_run(&plan, engine_db, (uint32_t)concurrency);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int status = load_setup(&plan) ? load_run(&plan, (uint32_t)concurrency, (uint32_t)threads) : 1;
    curl_global_cleanup();
    return status;
}
