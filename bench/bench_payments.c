/* bench/bench_payments.c: payments end to end over HTTP, against the ledger's own rate.
 *   payments_e2e: a card payment authorized (POST /v1/payments, capture_method manual)
 *     and then captured (POST /v1/payments/{id}/capture), each with its
 *     Idempotency-Key, by 64 keep-alive connections (closed loop) with a merchant key,
 *     against a real `paycore serve` with risk on (a model trained on the dev data when
 *     PAYCORE_SHARED/data/payments_dev.csv is there, found as the tests find it, else
 *     rules only: said in the detail line) and a zero-latency card simulator. per_s counts payments captured; p50/p99
 *     are of the whole payment (authorize sent to capture answered).
 *   baseline=ledger_single: `paycore load` (single-transfer POSTs, 64 connections) on
 *     the same server, in slices alternating with the payments' (the machine is shared:
 *     both see the same drift). Rates are total work over total time.
 *   payments_e2e_where: the server's own view of each kind of slice (its /metrics and
 *     its CPU time from /proc): commits per payment, mean commit time, mean batch, and
 *     server CPU per payment against per ledger transfer.
 *   payments_e2e_cpu: CPU ms per payment of each server thread kind (by thread name:
 *     writer, WAL checkpointer, gateway, stage, HTTP workers, the rest), of the card
 *     simulator and of this load generator: what shares the 2 cores.
 *   payments_e2e_simulator: the card simulator's record over the payments slices (its
 *     /healthz): group commits per payment, requests per commit.
 *   payments_e2e_requests: p50/p99 of each request (authorize, capture) on its own.
 *   payments_e2e_tail: the closed loop's tail and how it is spread in time: mean, p90,
 *     p99, p99.9, max, p99 over the mean, the share of payments slower than twice the
 *     mean; the payments by completion time in 100 ms windows: how many, how many whose
 *     mean was above twice the whole mean (stalls), the median and the highest of the
 *     windows' p99.
 *   payments_e2e_open: an open loop after the closed one: payments started at Poisson
 *     arrivals at half the closed loop's rate (at most 64 at once), latency from each
 *     payment's scheduled arrival, so a stall counts for every payment it delayed (the
 *     closed loop's p99 is its queue at saturation: 64 / rate). Every arrival is one of
 *     payments, declined (a risk or channel decision), errors or in_flight.
 *   payments_e2e_floor: the HTTP stack alone, in the same rounds: `paycore load --get
 *     /healthz` (64 connections, the same client) against the server and against the
 *     card simulator. A payment is four such exchanges (authorize and capture, each
 *     also a call to the simulator), so floor_per_s = 1 / (2 / server_get_per_s +
 *     2 / simulator_get_per_s) is what the machine could do if every exchange did
 *     nothing; ratio = per_s / floor_per_s.
 *   payments_e2e_risk: the risk engine's own count of its decisions over the payments
 *     slices (its /metrics): every attempt is scored; how many it approved, sent to
 *     review or declined, and its most frequent reason over the run.
 *   payments_e2e_pool: who paid (below): the pool's size and what the run drew from it.
 *   payments_e2e_machine: the load average before and after (the machine is shared), and
 *     the malloc the server runs on (its /metrics' paycore_build_info).
 * Who pays: a pool of customers made from a seed (--cards N, default CARDS_DEFAULT),
 * each with a card of its own (a Luhn-valid number of a realistic network mix and a
 * valid expiry), a payer id, most with a device and an IPv4 address (in a pool of /24
 * prefixes a quarter the size), a home country and an account age; each payment draws
 * one at random. --cards 1 is the stream of old: the one card CARD for every payment,
 * each connection its own payer (P<index>), no device, address or account age.
 * Everything on loopback; the server, simulator and load share the machine's cores.
 *   --quick  about 15 s     --full  about 50 s
 *   --profile SECONDS  payments only, for a profiler: prints "server_pid=N" once the
 *                      server is warm, then loads it for SECONDS (no result lines)
 *   --hold  with --profile: once the load is over ("payments=" printed), keeps the
 *           server and its files until standard input closes (a reader copies them)
 *   --sustain SECONDS  the closed loop without a pause for SECONDS (make bench: 300),
 *     in SUSTAIN_SLICES slices: whether the rate holds as the server's files, memory
 *     and the risk engine's state grow (the other modes' 24 s never see that: a review
 *     queue scanned whole for each review once full took it from 6,100 to 4,500 per s
 *     after 190 s). payments_e2e_sustained: the whole run's rate and p99, the first and
 *     the last slice's rate and their ratio (the baseline: the same run's first slice),
 *     the slowest slice, the worst slice p99, the reviews open at the end and the
 *     attempts (payments and declined) a second; then a payments_e2e_sustained_slice
 *     line per slice. make bench runs it with --cards 2000000 (each card pays about
 *     once); the default pool's cards, reused for minutes, draw more and more reviews.
 *   --cards N  the pool's size (1: the single-card stream)   --seed S  the pool's seed
 * PAYCORE_BENCH_WINDOWS=FILE: the tail's 100 ms windows, one line each: start (wall
 *   clock, s), payments, mean ms, p99 ms; to lay beside a trace of the server's and the
 *   simulator's fsyncs (a window whose every payment is slow is a stall: which flush?)
 *   --http-mhd  the server serves on libmicrohttpd (serve --http-mhd); by default on
 *               its own HTTP engine, as serve does (--http-engine: the same, accepted)
 *   --sim-http-mhd  the card simulator on libmicrohttpd (--http-mhd); the default is the
 *                   simulator's own (paycore's HTTP engine); --sim-http-engine is still accepted */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

#define CONNECTIONS 64
#define THREADS 2
#define CARD "4000000000000002" /* the simulator approves it with no balance or limit checks */
#define SIM_BALANCE_MINOR 1000000000000LL /* 10^10 EUR: no pool card runs out in a run */
#define OPEN_LOAD_FRACTION 0.5 /* the open loop's offered rate, of the closed loop's */
#define PATH_BYTES 1024

static char dir[512];
static char bin[PATH_BYTES];
static pid_t sim_pid, server_pid;

static void die(const char *what) {
    fprintf(stderr, "bench_payments: %s\n", what);
    if (server_pid > 0) kill(server_pid, SIGKILL);
    if (sim_pid > 0) kill(sim_pid, SIGKILL);
    exit(1);
}

/* ---------------------------------------------------------------- processes */

static pid_t spawn(char *const argv[], const char *out_path, int stdout_fd) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) dup2(fd, 2);
        if (stdout_fd >= 0) dup2(stdout_fd, 1);
        else if (fd >= 0) dup2(fd, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void stop(pid_t *pid) {
    if (*pid <= 0) return;
    kill(*pid, SIGTERM);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

static void write_file(const char *path, const char *text);

static bool sim_http_mhd; /* --sim-http-mhd */

/* The card simulator, its cardholders' balances above anything the run spends (a pool
 * card is an ordinary cardholder there: its balance and holds are kept; the single
 * card is one it never checks). */
static uint16_t sim_start(void) {
    char db[PATH_BYTES], log[PATH_BYTES], config[PATH_BYTES], text[128];
    snprintf(db, sizeof db, "%s/card.db", dir);
    snprintf(log, sizeof log, "%s/card.log", dir);
    snprintf(config, sizeof config, "%s/card.json", dir);
    snprintf(text, sizeof text, "{\"card_balance_minor\":%lld}", SIM_BALANCE_MINOR);
    write_file(config, text);
    int out[2];
    if (pipe(out) != 0) die("pipe");
    char *argv[] = {bin, "simulator", "card", "--listen", "127.0.0.1:0", "--db", db, "--config", config,
                    "--log-level", "warn", sim_http_mhd ? "--http-mhd" : NULL, NULL};
    sim_pid = spawn(argv, log, out[1]);
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256];
    uint16_t port = 0;
    while (port == 0 && f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *colon = strrchr(line, ':');
        if (strncmp(line, "listening=", 10) == 0 && colon != NULL) port = (uint16_t)atoi(colon + 1);
    }
    if (port == 0) die("the card simulator did not start");
    return port;
}

/* Runs a shell command; its first output line into 'out'. */
static bool run_line(const char *command, char *out, size_t out_bytes) {
    FILE *p = popen(command, "r");
    if (p == NULL) return false;
    out[0] = '\0';
    bool got = fgets(out, (int)out_bytes, p) != NULL;
    char rest[512];
    while (fgets(rest, sizeof rest, p) != NULL) {
    }
    int status = pclose(p);
    out[strcspn(out, "\n")] = '\0';
    return got && status == 0;
}

/* A model trained on the first rows of the dev data, when it is there. */
static bool model_train(char *model, size_t model_bytes) {
    const char *shared = getenv("PAYCORE_SHARED");
    char data[PATH_BYTES], command[4 * PATH_BYTES], line[512];
    snprintf(data, sizeof data, "%s/data/payments_dev.csv", shared ? shared : PC_SHARED_DIR_DEFAULT);
    if (access(data, R_OK) != 0) return false;
    snprintf(model, model_bytes, "%s/model.json", dir);
    snprintf(command, sizeof command,
             "head -n 40001 '%s' > '%s/slice.csv' && '%s' risk train --data '%s/slice.csv' --out '%s' "
             "--split-ts $(awk -F, 'NR==2 { print $2 + 3 * 86400; exit }' '%s/slice.csv') --valid-days 1 "
             "--rounds 60 2>/dev/null",
             data, dir, bin, dir, model, dir);
    return run_line(command, line, sizeof line) && access(model, R_OK) == 0;
}

/* The server's port from its log, once it listens. Waited for up to SERVER_START_WAIT_S:
 * a server under a profiler (--profile) starts tens of times slower; one that exited
 * ends the wait at once. */
#define SERVER_START_WAIT_S 600
static uint16_t server_port(const char *log) {
    for (int i = 0; i < SERVER_START_WAIT_S * 20; i++) {
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
            server_pid = 0;
            die("the server exited before it listened");
        }
        FILE *f = fopen(log, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            const char *port = strstr(line, "\"msg\":\"listening\"") ? strstr(line, "\"port\":") : NULL;
            if (port != NULL) {
                fclose(f);
                return (uint16_t)atoi(port + 7);
            }
        }
        if (f != NULL) fclose(f);
        usleep(50000);
    }
    die("the server did not start");
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) die("cannot write a file");
}

/* ---------------------------------------------------------------- HTTP setup calls */

static size_t collect(char *data, size_t size, size_t count, void *user) {
    char *buf = user;
    size_t used = strlen(buf), n = size * count;
    if (used + n < 4096) {
        memcpy(buf + used, data, n);
        buf[used + n] = '\0';
    }
    return n;
}

static long post(const char *url, const char *key, const char *body, char reply[4096]) {
    CURL *curl = curl_easy_init();
    char auth[512];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, auth);
    reply[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    long status = 0;
    if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return status;
}

/* The string value of "name":"..." in 'json' (first occurrence). */
static bool json_field(const char *json, const char *name, char *out, size_t out_bytes) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", name);
    const char *at = strstr(json, pattern);
    if (at == NULL) return false;
    at += strlen(pattern);
    size_t n = strcspn(at, "\"");
    if (n == 0 || n >= out_bytes) return false;
    memcpy(out, at, n);
    out[n] = '\0';
    return true;
}

/* --http-mhd: the server serves on libmicrohttpd instead of src/http (serve's default) */
static bool http_mhd;

/* ---------------------------------------------------------------- where the time goes */

/* A payment's path on the server (its /metrics paycore_payment_path_seconds): the
 * segments of each card authorization and capture, in the server's order. */
#define PATH_OPS 2
#define PATH_SEGMENTS 12
#define PATH_BUCKETS 17 /* <= 16 us * 2^i, i < 16, then +Inf */
static const char *const path_ops[PATH_OPS] = {"authorize", "capture"};
static const char *const path_segments[PATH_SEGMENTS] = {"api", "gateway_in", "persist_stage", "persist_queue",
                                                         "persist_commit", "call", "apply_stage", "book_stage",
                                                         "book_queue", "book_commit", "answer", "total"};

/* The server's own view over a slice: commits, their time, batch sizes, its CPU and
 * the bytes it wrote to its files (WAL frames, checkpoints: the cost of each kind of
 * write, independent of how fast the disk is today). */
/* Server threads by name (pthread_setname_np); MHD names its workers "MHD-…", the
 * engine (src/http, serve's default) "http-worker": both are the http group. */
enum { GROUP_WRITER, GROUP_CHECKPOINTER, GROUP_GATEWAY, GROUP_STAGE, GROUP_HTTP, GROUP_OTHER, GROUPS };
static const char *const group_names[GROUPS] = {"writer", "checkpointer", "gateway", "stage", "http", "other"};
static const char *const group_prefixes[GROUPS] = {"paycore-writer", "paycore-walckpt", "paycore-gw",
                                                   "paycore-stage", "MHD-", NULL};

typedef struct {
    double commits, commit_s, batches, batch_events, cpu_s, write_bytes;
    double group_cpu_s[GROUPS];    /* threads that ended since are in GROUP_OTHER */
    double sim_cpu_s, client_cpu_s;
    double sim_commits, sim_commit_units; /* the simulator's record: group commits, requests in them */
    double risk_decisions[3];             /* the risk engine's: approve, review, decline */
    double risk_scores, risk_score_sum, risk_scores_low; /* model scores: count, sum, <= 0.2 */
    double path_count[PATH_OPS][PATH_SEGMENTS], path_s[PATH_OPS][PATH_SEGMENTS];
    double path_buckets[PATH_OPS][PATH_SEGMENTS][PATH_BUCKETS]; /* cumulative, as scraped */
} server_view;

static size_t collect_big(char *data, size_t size, size_t count, void *user) {
    char **buf = user;
    size_t used = *buf ? strlen(*buf) : 0, n = size * count;
    char *grown = realloc(*buf, used + n + 1);
    if (grown == NULL) return 0;
    memcpy(grown + used, data, n);
    grown[used + n] = '\0';
    *buf = grown;
    return n;
}

static double metric_value(const char *text, const char *name) {
    const char *at = text;
    size_t len = strlen(name);
    while ((at = strstr(at, name)) != NULL) {
        if ((at == text || at[-1] == '\n') && at[len] == ' ') return atof(at + len + 1);
        at += len;
    }
    return 0.0;
}

/* utime + stime of a /proc/.../stat file, and its command name (or NULL). */
static double stat_cpu_s(const char *path, char *comm, size_t comm_bytes) {
    char text[1024];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    const char *open = strchr(text, '('), *after = strrchr(text, ')'); /* the command name between */
    unsigned long long utime = 0, stime = 0;
    if (open == NULL || after == NULL || after < open ||
        sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
        return 0.0;
    }
    if (comm != NULL) snprintf(comm, comm_bytes, "%.*s", (int)(after - open - 1), open + 1);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double process_cpu_s(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return pid > 0 ? stat_cpu_s(path, NULL, 0) : 0.0;
}

static double server_cpu_s(void) { return process_cpu_s(server_pid); }

/* The server's CPU by thread kind: each live thread's, the rest (ended threads) in other. */
static void server_groups_cpu_s(double total_s, double out[GROUPS]) {
    char dir_path[64], path[320], comm[64];
    snprintf(dir_path, sizeof dir_path, "/proc/%d/task", (int)server_pid);
    memset(out, 0, GROUPS * sizeof out[0]);
    DIR *d = opendir(dir_path);
    struct dirent *e;
    double known_s = 0.0;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s/stat", dir_path, e->d_name);
        comm[0] = '\0';
        double cpu_s = stat_cpu_s(path, comm, sizeof comm);
        int g = GROUP_OTHER;
        for (int i = 0; i < GROUP_OTHER; i++) {
            if (strncmp(comm, group_prefixes[i], strlen(group_prefixes[i])) == 0) g = i;
        }
        if (strncmp(comm, "http-worker", 11) == 0) g = GROUP_HTTP;
        if (g != GROUP_OTHER) {
            out[g] += cpu_s;
            known_s += cpu_s;
        }
    }
    if (d != NULL) closedir(d);
    out[GROUP_OTHER] = total_s > known_s ? total_s - known_s : 0.0;
}

static double client_cpu_s(void) {
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return 0.0;
    return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
           ((double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_usec) / 1e6;
}

/* /proc/<pid>/io write_bytes: what the server sent toward its storage. */
static double server_write_bytes(void) {
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", (int)server_pid);
    FILE *f = fopen(path, "r");
    double bytes = 0.0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "write_bytes: ", 13) == 0) bytes = atof(line + 13);
    }
    if (f) fclose(f);
    return bytes;
}

/* A number member of a JSON text ("name":N), 0 when absent. */
static double json_number(const char *json, const char *name) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", name);
    const char *at = strstr(json, pattern);
    return at != NULL ? atof(at + strlen(pattern)) : 0.0;
}

static char sim_health_url[128]; /* the card simulator's /healthz: its group commits */

static void sim_look(server_view *v) {
    char reply[4096] = "";
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, sim_health_url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, (void *)reply);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(curl) == CURLE_OK) {
        v->sim_commits = json_number(reply, "commits");
        v->sim_commit_units = json_number(reply, "commit_units");
    }
    curl_easy_cleanup(curl);
}

/* The path histograms (absent from a server older than them: all zero). */
static void path_look(const char *text, server_view *v) {
    if (strstr(text, "paycore_payment_path_seconds_count{") == NULL) return;
    char name[256];
    for (int op = 0; op < PATH_OPS; op++) {
        for (int seg = 0; seg < PATH_SEGMENTS; seg++) {
            char labels[96];
            snprintf(labels, sizeof labels, "op=\"%s\",segment=\"%s\"", path_ops[op], path_segments[seg]);
            snprintf(name, sizeof name, "paycore_payment_path_seconds_count{%s}", labels);
            v->path_count[op][seg] = metric_value(text, name);
            snprintf(name, sizeof name, "paycore_payment_path_seconds_sum{%s}", labels);
            v->path_s[op][seg] = metric_value(text, name);
            double bound_s = 16e-6;
            for (int b = 0; b < PATH_BUCKETS; b++, bound_s *= 2) {
                if (b < PATH_BUCKETS - 1) {
                    snprintf(name, sizeof name, "paycore_payment_path_seconds_bucket{%s,le=\"%g\"}", labels, bound_s);
                } else {
                    snprintf(name, sizeof name, "paycore_payment_path_seconds_bucket{%s,le=\"+Inf\"}", labels);
                }
                v->path_buckets[op][seg][b] = metric_value(text, name);
            }
        }
    }
}

/* The server's /metrics text (the caller frees it), NULL when it did not answer. */
static char *metrics_text(const char *base) {
    char url[256], *text = NULL;
    snprintf(url, sizeof url, "%s/metrics", base);
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_big);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &text);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(curl) != CURLE_OK) {
        free(text);
        text = NULL;
    }
    curl_easy_cleanup(curl);
    return text;
}

static server_view server_look(const char *base) {
    server_view v = {.cpu_s = server_cpu_s(), .write_bytes = server_write_bytes(), .sim_cpu_s = process_cpu_s(sim_pid),
                     .client_cpu_s = client_cpu_s()};
    server_groups_cpu_s(v.cpu_s, v.group_cpu_s);
    sim_look(&v);
    char *text = metrics_text(base);
    if (text != NULL) {
        v.commits = metric_value(text, "paycore_commit_duration_seconds_count");
        v.commit_s = metric_value(text, "paycore_commit_duration_seconds_sum");
        v.batches = metric_value(text, "paycore_writer_batch_size_count");
        v.batch_events = metric_value(text, "paycore_writer_batch_size_sum");
        static const char *const outcomes[3] = {"approve", "review", "decline"};
        for (int o = 0; o < 3; o++) {
            char name[96];
            snprintf(name, sizeof name, "paycore_risk_decisions_total{outcome=\"%s\"}", outcomes[o]);
            v.risk_decisions[o] = metric_value(text, name);
        }
        v.risk_scores = metric_value(text, "paycore_risk_score_count");
        v.risk_score_sum = metric_value(text, "paycore_risk_score_sum");
        v.risk_scores_low = metric_value(text, "paycore_risk_score_bucket{le=\"0.2\"}");
        path_look(text, &v);
    }
    free(text);
    return v;
}

/* The reason the risk engine gave most often so far (its /metrics), "none" when none. */
static void risk_top_reason(const char *base, char *code, size_t code_bytes, double *count) {
    snprintf(code, code_bytes, "none");
    *count = 0;
    static const char prefix[] = "\npaycore_risk_reasons_total{reason=\"";
    char *text = metrics_text(base);
    if (text != NULL) {
        for (const char *at = strstr(text, prefix); at != NULL; at = strstr(at + 1, prefix)) {
            const char *name = at + strlen(prefix), *end = strstr(name, "\"} ");
            if (end == NULL || (size_t)(end - name) >= code_bytes) continue;
            double n = atof(end + 3);
            if (n <= *count) continue;
            *count = n;
            snprintf(code, code_bytes, "%.*s", (int)(end - name), name);
        }
    }
    free(text);
}

/* 'total' += after - before */
static void server_add(server_view *total, const server_view *before, const server_view *after) {
    total->commits += after->commits - before->commits;
    total->commit_s += after->commit_s - before->commit_s;
    total->batches += after->batches - before->batches;
    total->batch_events += after->batch_events - before->batch_events;
    total->cpu_s += after->cpu_s - before->cpu_s;
    total->write_bytes += after->write_bytes - before->write_bytes;
    for (int g = 0; g < GROUPS; g++) total->group_cpu_s[g] += after->group_cpu_s[g] - before->group_cpu_s[g];
    total->sim_cpu_s += after->sim_cpu_s - before->sim_cpu_s;
    total->client_cpu_s += after->client_cpu_s - before->client_cpu_s;
    total->sim_commits += after->sim_commits - before->sim_commits;
    total->sim_commit_units += after->sim_commit_units - before->sim_commit_units;
    for (int o = 0; o < 3; o++) total->risk_decisions[o] += after->risk_decisions[o] - before->risk_decisions[o];
    total->risk_scores += after->risk_scores - before->risk_scores;
    total->risk_score_sum += after->risk_score_sum - before->risk_score_sum;
    total->risk_scores_low += after->risk_scores_low - before->risk_scores_low;
    for (int op = 0; op < PATH_OPS; op++) {
        for (int seg = 0; seg < PATH_SEGMENTS; seg++) {
            total->path_count[op][seg] += after->path_count[op][seg] - before->path_count[op][seg];
            total->path_s[op][seg] += after->path_s[op][seg] - before->path_s[op][seg];
            for (int b = 0; b < PATH_BUCKETS; b++) {
                total->path_buckets[op][seg][b] += after->path_buckets[op][seg][b] - before->path_buckets[op][seg][b];
            }
        }
    }
}

/* The q-quantile of a segment from its cumulative buckets: the upper bound (ms) of the
 * bucket it falls in (a factor of 2 of precision; the last bucket reads as its floor). */
static double path_quantile_ms(const double cumulative[PATH_BUCKETS], double q) {
    double total = cumulative[PATH_BUCKETS - 1];
    if (total <= 0) return 0.0;
    double bound_ms = 0.016;
    for (int b = 0; b < PATH_BUCKETS - 1; b++, bound_ms *= 2) {
        if (cumulative[b] >= q * total) return bound_ms;
    }
    return bound_ms;
}

/* payments_e2e_path_<op>: each segment's mean and p99 over the payments slices. */
static void path_print(const server_view *v) {
    for (int op = 0; op < PATH_OPS; op++) {
        double count = v->path_count[op][PATH_SEGMENTS - 1];
        if (count <= 0) continue;
        printf("payments_e2e_path_%s count=%.0f", path_ops[op], count);
        for (int seg = 0; seg < PATH_SEGMENTS; seg++) {
            printf(" %s_mean_ms=%.2f %s_p99_ms=%.3g", path_segments[seg], 1e3 * v->path_s[op][seg] / count,
                   path_segments[seg], path_quantile_ms(v->path_buckets[op][seg], 0.99));
        }
        printf("\n");
    }
}

/* ---------------------------------------------------------------- who pays */

#define CARDS_DEFAULT 100000u
#define CARDS_MAX 10000000u     /* below 10^8: the account digits of a BIN stay distinct */

typedef struct {
    char number[20];
    char cvc[5];
    uint32_t exp_month, exp_year;
    char payer[16];
    char device[24];   /* "" none */
    char ip[16];       /* "" none */
    char country[3];
    uint32_t age_days;
} customer;

static customer *customers;
static uint8_t *customer_drawn;                 /* 1 once a payment drew it (both load threads write) */
static uint32_t customer_count = CARDS_DEFAULT; /* 1: the single-card stream */
static uint64_t pool_seed = 1;

/* splitmix64's finalizer: the pool's every field from (seed, customer, field). */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t pool_hash(uint32_t k, uint32_t field) {
    return mix64(mix64(pool_seed) ^ mix64(((uint64_t)field << 32) | k));
}

/* The check digit that makes 'payload' (digits) pass Luhn. */
static char luhn_digit(const char *payload) {
    size_t n = strlen(payload);
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t d = (uint32_t)(payload[n - 1 - i] - '0');
        if (i % 2 == 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2; /* the payload's last digit is doubled */
        sum += d;
    }
    return (char)('0' + (10 - sum % 10) % 10);
}

/* Customer k's card: the network by a mix like Europe's card-not-present traffic
 * (Visa 56 %, Mastercard 36 % of which a fifth 2-series, Amex 5 %, Discover and JCB
 * 1.5 % each), a BIN drawn in the network's range (Visa from 410000: the simulator's
 * test numbers start 4000), the account digits a bijection of k (so no two customers
 * share a number) and the Luhn digit. */
static void card_make(uint32_t k, customer *c) {
    uint64_t h = pool_hash(k, 1), b = h >> 16;
    char prefix[8];
    unsigned length = 16;
    uint32_t pick = (uint32_t)(h % 1000);
    if (pick < 560) {
        snprintf(prefix, sizeof prefix, "4%05u", 10000u + (unsigned)(b % 90000));
    } else if (pick < 848) {
        snprintf(prefix, sizeof prefix, "5%u%04u", 1u + (unsigned)(b % 5), (unsigned)(b / 5 % 10000));
    } else if (pick < 920) {
        snprintf(prefix, sizeof prefix, "%04u%02u", 2221u + (unsigned)(b % 500), (unsigned)(b / 500 % 100));
    } else if (pick < 970) {
        snprintf(prefix, sizeof prefix, "3%c%04u", b % 2 ? '4' : '7', (unsigned)(b / 2 % 10000));
        length = 15;
    } else if (pick < 985) {
        snprintf(prefix, sizeof prefix, "6011%02u", (unsigned)(b % 100));
    } else {
        snprintf(prefix, sizeof prefix, "35%02u%02u", 28u + (unsigned)(b % 62), (unsigned)(b / 62 % 100));
    }
    unsigned account_digits = length - 7;
    uint64_t modulus = account_digits == 9 ? 1000000000ull : 100000000ull;
    uint64_t account = ((uint64_t)k * 387420489ull + (pool_hash(0, 2) % modulus)) % modulus; /* 3^18: a unit mod 10^n */
    char payload[20];
    snprintf(payload, sizeof payload, "%s%0*llu", prefix, (int)account_digits, (unsigned long long)account);
    snprintf(c->number, sizeof c->number, "%s%c", payload, luhn_digit(payload));
    snprintf(c->cvc, sizeof c->cvc, length == 15 ? "%04u" : "%03u", (unsigned)(h >> 40) % (length == 15 ? 10000u : 1000u));
}

/* Customer k: card, expiry 1-5 years ahead of 'year_now', payer, device (3 in 4),
 * address (6 in 7, in 'prefixes' /24s), country (DE, a quarter from elsewhere in the
 * euro area and Europe), account age (1 day to 10 years). */
static void customer_make(uint32_t k, uint32_t prefixes, uint32_t year_now, customer *c) {
    static const char *const abroad[] = {"FR", "NL", "AT", "IT", "ES", "BE", "PL", "IE"};
    card_make(k, c);
    uint64_t h = pool_hash(k, 3);
    c->exp_month = 1u + (uint32_t)(h % 12);
    c->exp_year = year_now + 1u + (uint32_t)(h / 12 % 5);
    snprintf(c->payer, sizeof c->payer, "cus%u", k);
    uint64_t d = pool_hash(k, 4);
    c->device[0] = '\0';
    if (d % 4 != 0) snprintf(c->device, sizeof c->device, "dev_%012llx", (unsigned long long)(d >> 16));
    uint64_t i = pool_hash(k, 5), p = pool_hash((uint32_t)(i % prefixes), 6);
    unsigned first = 2u + (unsigned)(p % 220);
    if (first == 10 || first == 127) first++;
    c->ip[0] = '\0';
    if (i % 7 != 0) {
        snprintf(c->ip, sizeof c->ip, "%u.%u.%u.%u", first, (unsigned)(p >> 8 & 255), (unsigned)(p >> 16 & 255),
                 1u + (unsigned)(i >> 32) % 254);
    }
    uint64_t a = pool_hash(k, 7);
    snprintf(c->country, sizeof c->country, "%s", a % 100 < 76 ? "DE" : abroad[(a >> 8) % 8]);
    c->age_days = 1u + (uint32_t)(a >> 16) % 3650;
}

static uint32_t pool_prefixes(void) { return customer_count / 4 > 0 ? customer_count / 4 : 1; }

static void pool_make(void) {
    if (customer_count <= 1) return;
    customers = calloc(customer_count, sizeof *customers);
    customer_drawn = calloc(customer_count, 1);
    if (customers == NULL || customer_drawn == NULL) die("no memory for the customer pool");
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    for (uint32_t k = 0; k < customer_count; k++) {
        customer_make(k, pool_prefixes(), (uint32_t)utc.tm_year + 1900u, &customers[k]);
    }
}

/* What the pool holds and what the run drew of it: payers, devices, distinct cards drawn. */
static void pool_counts(uint32_t *devices, uint32_t *drawn) {
    *devices = *drawn = 0;
    for (uint32_t k = 0; customers != NULL && k < customer_count; k++) {
        *devices += customers[k].device[0] != '\0';
        *drawn += __atomic_load_n(&customer_drawn[k], __ATOMIC_RELAXED);
    }
}

/* The payer member of a pool customer: id, country, device, address, account age. */
static int payer_json(const customer *c, char *out, size_t out_bytes) {
    char device[48] = "", ip[40] = "";
    if (c->device[0]) snprintf(device, sizeof device, ",\"device_id\":\"%s\"", c->device);
    if (c->ip[0]) snprintf(ip, sizeof ip, ",\"ip\":\"%s\"", c->ip);
    return snprintf(out, out_bytes, "{\"id\":\"%s\",\"country\":\"%s\"%s%s,\"account_age_days\":%u}", c->payer,
                    c->country, device, ip, c->age_days);
}

/* ---------------------------------------------------------------- the payments load */

/* Latencies in ns, grown as needed. */
typedef struct {
    uint64_t *ns;
    uint64_t count, capacity;
} samples;

static void samples_add(samples *s, uint64_t ns) {
    if (s->count == s->capacity) {
        uint64_t capacity = s->capacity ? 2 * s->capacity : 4096;
        uint64_t *grown = realloc(s->ns, capacity * sizeof *grown);
        if (grown == NULL) die("no memory");
        s->ns = grown;
        s->capacity = capacity;
    }
    s->ns[s->count++] = ns;
}

static void samples_append(samples *to, const samples *from) {
    for (uint64_t i = 0; i < from->count; i++) samples_add(to, from->ns[i]);
}

typedef enum { STEP_AUTHORIZE, STEP_CAPTURE } step;

/* One keep-alive HTTP/1.1 connection on the worker's epoll set. A request is one fixed
 * shape (written here in one send); its answer is read by http-parser. curl's general
 * machinery per request (URL parsing, header lists, connection-cache checks, its socket
 * callbacks) cost more of the 2 cores than the send and the receive themselves, and
 * every cycle the load generator takes is one the server it measures does not get. */
typedef struct {
    int fd;                        /* -1: not connected (connected before the next send) */
    http_parser parser;
    bool complete;                 /* the parser saw the whole answer */
    bool reused;                   /* the connection carried an answer before this request */
    bool resent;                   /* this request went out a second time */
    bool want_out;                 /* watched for writability: the request did not fit the socket */
    size_t reply_bytes;
    char reply[4096];              /* the answer's body (its head: enough for "status" and "id") */
    char request[1536];
    size_t request_bytes, request_sent;
    char payment_id[64];
    step next;
    bool busy;                     /* a request of it is in flight */
    uint32_t index;
    uint64_t sequence;
    uint64_t draws;                /* the pool customers it drew: the next one is mix64 of its count */
    uint64_t started_ns;           /* the payment began: its authorize was sent (open loop: was due) */
    uint64_t sent_ns;              /* the request in flight was sent */
} pay_conn;

typedef struct {
    const char *base;
    const char *key;
    uint32_t first, count;
    uint64_t deadline_ns;
    double rate_per_s;             /* open loop: this worker's arrivals per second; 0: closed loop */
    uint64_t rng;
    uint64_t payments, errors, declined, arrivals;
    uint64_t reviews, declines;    /* of declined: answered in_review, answered declined (risk or channel) */
    uint64_t in_flight;            /* requests unanswered when the worker stopped (none: it waits) */
    samples payment, authorize, capture;
    samples payment_end;           /* when each payment in 'payment' was captured (pc_mono_ns) */
    samples start_delay;           /* a payment's authorize sent after its arrival (open loop) */
    char first_error[200];
    char first_decline[200];       /* the first answer that was a decision, not an authorization */
    int epoll_fd;
    struct sockaddr_in server;
    char host[64];                 /* "127.0.0.1:PORT", the Host header */
} pay_worker;

static int on_reply_body(http_parser *parser, const char *data, size_t bytes) {
    pay_conn *c = parser->data;
    size_t room = sizeof c->reply - 1 - c->reply_bytes;
    size_t n = bytes < room ? bytes : room;
    memcpy(c->reply + c->reply_bytes, data, n);
    c->reply_bytes += n;
    c->reply[c->reply_bytes] = '\0';
    return 0;
}

static int on_reply_complete(http_parser *parser) {
    ((pay_conn *)parser->data)->complete = true;
    return 0;
}

static const http_parser_settings reply_settings = {.on_body = on_reply_body,
                                                    .on_message_complete = on_reply_complete};

static void worker_error(pay_worker *w, long status, const char *what) {
    if (w->errors++ == 0) snprintf(w->first_error, sizeof w->first_error, "%ld %.180s", status, what);
}

static void conn_close(pay_conn *c, pay_worker *w) {
    if (c->fd < 0) return;
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->reused = false;
}

/* A new connection (blocking connect on loopback, then non-blocking), watched for input. */
static bool conn_connect(pay_conn *c, pay_worker *w) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) return false;
    if (connect(fd, (const struct sockaddr *)&w->server, sizeof w->server) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return false;
    }
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
        close(fd);
        return false;
    }
    c->fd = fd;
    c->reused = false;
    c->want_out = false;
    return true;
}

/* The authorization's body: the single card and the connection's own payer (--cards 1),
 * else a customer drawn from the pool (the connection's own sequence of draws). The
 * reference (snprintf) for the load's own builder below. */
static int authorize_body_reference(pay_conn *c, char *body, size_t body_bytes) {
    unsigned long long amount = 500 + (c->sequence * 37) % 9000;
    if (customers == NULL) {
        return snprintf(body, body_bytes,
                        "{\"amount\":%llu,\"currency\":\"EUR\",\"capture_method\":\"manual\",\"payment_method\":"
                        "{\"type\":\"card\",\"card\":{\"number\":\"" CARD "\",\"exp_month\":12,\"exp_year\":2030,"
                        "\"cvc\":\"123\"}},\"payer\":{\"id\":\"P%u\",\"country\":\"DE\"},\"description\":\"bench\"}",
                        amount, c->index);
    }
    uint64_t draw = mix64(mix64(pool_seed ^ 0x5bd1e995ull) ^ ((uint64_t)c->index << 40) ^ c->draws++);
    uint32_t k = (uint32_t)(draw % customer_count);
    const customer *who = &customers[k];
    __atomic_store_n(&customer_drawn[k], 1, __ATOMIC_RELAXED);
    char payer[256];
    if (payer_json(who, payer, sizeof payer) >= (int)sizeof payer) die("a payer does not fit its buffer");
    return snprintf(body, body_bytes,
                    "{\"amount\":%llu,\"currency\":\"EUR\",\"capture_method\":\"manual\",\"payment_method\":"
                    "{\"type\":\"card\",\"card\":{\"number\":\"%s\",\"exp_month\":%u,\"exp_year\":%u,"
                    "\"cvc\":\"%s\"}},\"payer\":%s,\"description\":\"bench\"}",
                    amount, who->number, who->exp_month, who->exp_year, who->cvc, payer);
}

/* The request of the connection's next step, as bytes, by snprintf: the reference the
 * load's own builder (conn_request) is checked against at start (requests_check). */
static void conn_request_reference(pay_conn *c, const pay_worker *w) {
    char path[128], key[64], body[768];
    int body_bytes;
    if (c->next == STEP_AUTHORIZE) {
        c->sequence++;
        snprintf(path, sizeof path, "/v1/payments");
        body_bytes = authorize_body_reference(c, body, sizeof body);
        if (body_bytes < 0 || (size_t)body_bytes >= sizeof body) die("a body does not fit its buffer");
        snprintf(key, sizeof key, "b%u-%llu-a", c->index, (unsigned long long)c->sequence);
    } else {
        snprintf(path, sizeof path, "/v1/payments/%s/capture", c->payment_id);
        body_bytes = snprintf(body, sizeof body, "{}");
        snprintf(key, sizeof key, "b%u-%llu-c", c->index, (unsigned long long)c->sequence);
    }
    int n = snprintf(c->request, sizeof c->request,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
                     path, w->host, w->key, key, body_bytes, body);
    if (n < 0 || (size_t)n >= sizeof c->request) die("a request does not fit its buffer");
    c->request_bytes = (size_t)n;
}

/* The load's own request builder: the same bytes as conn_request_reference (checked at
 * start on thousands of requests, requests_check), appended piece by piece instead of
 * formatted: the client's five snprintf calls per request were most of its own CPU
 * beside the system calls, and its CPU is taken from the 2 cores it measures. */
typedef struct {
    char *at, *end;
    bool overflow;
} text_out;

static void out_bytes(text_out *o, const char *text, size_t bytes) {
    if ((size_t)(o->end - o->at) < bytes) {
        o->overflow = true;
        return;
    }
    memcpy(o->at, text, bytes);
    o->at += bytes;
}

static void out_str(text_out *o, const char *text) { out_bytes(o, text, strlen(text)); }

#define OUT_LIT(o, literal) out_bytes((o), literal, sizeof literal - 1)

static void out_u64(text_out *o, unsigned long long value) {
    char digits[PC_INT_TEXT_SIZE];
    out_bytes(o, digits, pc_u64_text(digits, value)); /* what "%llu" writes */
}

static void payer_out(text_out *o, const customer *c) {
    OUT_LIT(o, "{\"id\":\"");
    out_str(o, c->payer);
    OUT_LIT(o, "\",\"country\":\"");
    out_str(o, c->country);
    OUT_LIT(o, "\"");
    if (c->device[0]) {
        OUT_LIT(o, ",\"device_id\":\"");
        out_str(o, c->device);
        OUT_LIT(o, "\"");
    }
    if (c->ip[0]) {
        OUT_LIT(o, ",\"ip\":\"");
        out_str(o, c->ip);
        OUT_LIT(o, "\"");
    }
    OUT_LIT(o, ",\"account_age_days\":");
    out_u64(o, c->age_days);
    OUT_LIT(o, "}");
}

static void authorize_out(text_out *o, pay_conn *c) {
    unsigned long long amount = 500 + (c->sequence * 37) % 9000;
    OUT_LIT(o, "{\"amount\":");
    out_u64(o, amount);
    OUT_LIT(o, ",\"currency\":\"EUR\",\"capture_method\":\"manual\",\"payment_method\":"
               "{\"type\":\"card\",\"card\":{\"number\":\"");
    if (customers == NULL) {
        OUT_LIT(o, CARD "\",\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\"}},\"payer\":{\"id\":\"P");
        out_u64(o, c->index);
        OUT_LIT(o, "\",\"country\":\"DE\"},\"description\":\"bench\"}");
        return;
    }
    uint64_t draw = mix64(mix64(pool_seed ^ 0x5bd1e995ull) ^ ((uint64_t)c->index << 40) ^ c->draws++);
    uint32_t k = (uint32_t)(draw % customer_count);
    const customer *who = &customers[k];
    __atomic_store_n(&customer_drawn[k], 1, __ATOMIC_RELAXED);
    out_str(o, who->number);
    OUT_LIT(o, "\",\"exp_month\":");
    out_u64(o, who->exp_month);
    OUT_LIT(o, ",\"exp_year\":");
    out_u64(o, who->exp_year);
    OUT_LIT(o, ",\"cvc\":\"");
    out_str(o, who->cvc);
    OUT_LIT(o, "\"}},\"payer\":");
    payer_out(o, who);
    OUT_LIT(o, ",\"description\":\"bench\"}");
}

/* The request of the connection's next step, as bytes: the body first (its length goes
 * in the head), then the head, then the body after it. */
static void conn_request(pay_conn *c, const pay_worker *w) {
    char body[768];
    text_out b = {body, body + sizeof body, false};
    if (c->next == STEP_AUTHORIZE) {
        c->sequence++;
        authorize_out(&b, c);
    } else {
        OUT_LIT(&b, "{}");
    }
    if (b.overflow) die("a body does not fit its buffer");
    text_out o = {c->request, c->request + sizeof c->request - 1, false};
    if (c->next == STEP_AUTHORIZE) {
        OUT_LIT(&o, "POST /v1/payments HTTP/1.1\r\nHost: ");
    } else {
        OUT_LIT(&o, "POST /v1/payments/");
        out_str(&o, c->payment_id);
        OUT_LIT(&o, "/capture HTTP/1.1\r\nHost: ");
    }
    out_str(&o, w->host);
    OUT_LIT(&o, "\r\nAuthorization: Bearer ");
    out_str(&o, w->key);
    OUT_LIT(&o, "\r\nContent-Type: application/json\r\nIdempotency-Key: b");
    out_u64(&o, c->index);
    OUT_LIT(&o, "-");
    out_u64(&o, c->sequence);
    if (c->next == STEP_AUTHORIZE) OUT_LIT(&o, "-a\r\nContent-Length: ");
    else OUT_LIT(&o, "-c\r\nContent-Length: ");
    out_u64(&o, (unsigned long long)(b.at - body));
    OUT_LIT(&o, "\r\n\r\n");
    out_bytes(&o, body, (size_t)(b.at - body));
    if (o.overflow) die("a request does not fit its buffer");
    *o.at = '\0';
    c->request_bytes = (size_t)(o.at - c->request);
}

/* The builder against the reference: both steps, on connections of every index, over
 * thousands of draws from the pool (or the single card), with long payment ids; the run
 * stops at the first difference. What the check drew is forgotten (the pool's counts). */
static void requests_check_stream(uint32_t count) {
    pay_worker w = {.key = "pk_check_0123456789abcdef0123456789abcdef"};
    snprintf(w.host, sizeof w.host, "127.0.0.1:%u", 65535u);
    for (uint32_t i = 0; i < count; i++) {
        pay_conn a, b;
        memset(&a, 0, sizeof a);
        a.index = i % CONNECTIONS + (i / CONNECTIONS) * 997u;
        a.sequence = (uint64_t)i * 7919u;
        a.draws = (uint64_t)i * 104729u;
        a.next = i % 2 == 0 ? STEP_AUTHORIZE : STEP_CAPTURE;
        snprintf(a.payment_id, sizeof a.payment_id, "pay_%0*u", (int)(1 + i % 40), i);
        b = a;
        conn_request_reference(&a, &w);
        conn_request(&b, &w);
        if (a.request_bytes != b.request_bytes || memcmp(a.request, b.request, a.request_bytes) != 0 ||
            a.sequence != b.sequence || a.draws != b.draws) {
            fprintf(stderr, "request builder differs from the reference:\n%s\n---\n%s\n", a.request, b.request);
            die("request builder");
        }
    }
}

static void requests_check(void) {
    requests_check_stream(4000);
    customer *pool = customers; /* the single card's stream too (--cards 1) */
    customers = NULL;
    requests_check_stream(500);
    customers = pool;
    if (customer_drawn != NULL) memset(customer_drawn, 0, customer_count);
}

/* Sends what is left of the request; watches for writability only while the socket is
 * full. False when the connection failed. */
static bool conn_flush(pay_conn *c, pay_worker *w) {
    while (c->request_sent < c->request_bytes) {
        ssize_t n = send(c->fd, c->request + c->request_sent, c->request_bytes - c->request_sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->request_sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            struct epoll_event event = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            if (c->want_out) return true;
            c->want_out = true;
            return epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &event) == 0;
        } else {
            return false;
        }
    }
    if (!c->want_out) return true;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
    c->want_out = false;
    return epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &event) == 0;
}

/* (Re)sends the connection's request from its first byte, connecting first if needed. */
static bool conn_send(pay_conn *c, pay_worker *w) {
    if (c->fd < 0 && !conn_connect(c, w)) return false;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->complete = false;
    c->reply_bytes = 0;
    c->reply[0] = '\0';
    c->request_sent = 0;
    return conn_flush(c, w);
}

/* An answer (status, its body in c->reply) or a failure ('failure' set): the next step
 * of the payment, or the next payment. */
static void conn_answered(pay_conn *c, pay_worker *w, long status, const char *failure) {
    uint64_t now_ns = pc_mono_ns();
    char state[32] = "";
    (void)json_field(c->reply, "status", state, sizeof state);
    const char *what = failure != NULL ? failure : c->reply;
    if (c->next == STEP_AUTHORIZE) {
        if (failure == NULL && status == 201 && strcmp(state, "authorized") == 0 &&
            json_field(c->reply, "id", c->payment_id, sizeof c->payment_id)) {
            samples_add(&w->authorize, now_ns - c->sent_ns);
            c->next = STEP_CAPTURE;
            return;
        }
        if (failure == NULL && (status == 201 || status == 402)) { /* a risk or channel decision, not an error */
            const char *risk = strstr(c->reply, "\"risk\":");
            w->reviews += strcmp(state, "in_review") == 0;
            w->declines += strcmp(state, "declined") == 0;
            if (w->declined++ == 0) {
                snprintf(w->first_decline, sizeof w->first_decline, "%ld status=%s %.150s", status, state,
                         risk != NULL ? risk : c->reply);
            }
        } else {
            worker_error(w, status, what);
        }
        return;
    }
    c->next = STEP_AUTHORIZE;
    if (failure != NULL || status != 200 || strcmp(state, "captured") != 0) {
        worker_error(w, status, what);
        return;
    }
    samples_add(&w->capture, now_ns - c->sent_ns);
    samples_add(&w->payment, now_ns - c->started_ns);
    samples_add(&w->payment_end, now_ns);
    w->payments++;
}

/* The connection ended before its answer: a reused connection that the server closed
 * while idle (its close crossed our request) is sent the request again, once, on a new
 * one (the Idempotency-Key makes a repeat harmless); anything else fails the request.
 * True when the request is in flight again. */
static bool conn_lost(pay_conn *c, pay_worker *w) {
    bool retry = c->reused && !c->resent && c->reply_bytes == 0 && c->parser.status_code == 0;
    conn_close(c, w);
    if (!retry) return false;
    c->resent = true;
    return conn_send(c, w);
}

/* Reads what arrived on a busy connection. 1: answered (status in 'status'), 0: not
 * yet, -1: failed ('failure' says why). */
static int conn_read(pay_conn *c, pay_worker *w, long *status, const char **failure) {
    char buf[8192];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 0;
        if (n <= 0) {
            if (conn_lost(c, w)) return 0;
            *failure = n == 0 ? "connection closed before the answer" : strerror(errno);
            return -1;
        }
        size_t parsed = http_parser_execute(&c->parser, &reply_settings, buf, (size_t)n);
        if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || parsed != (size_t)n) {
            *failure = http_errno_description(HTTP_PARSER_ERRNO(&c->parser));
            conn_close(c, w);
            return -1;
        }
        if (!c->complete) continue;
        *status = c->parser.status_code;
        if (!http_should_keep_alive(&c->parser)) conn_close(c, w);
        else c->reused = true;
        return 1;
    }
}

/* Sends the connection's next request; false when it could not (connect or send). */
static bool conn_start(pay_conn *c, pay_worker *w) {
    conn_request(c, w);
    c->resent = false;
    c->busy = true;
    c->sent_ns = pc_mono_ns();
    if (c->next == STEP_AUTHORIZE) samples_add(&w->start_delay, c->sent_ns - c->started_ns);
    if (conn_send(c, w)) return true;
    conn_close(c, w);
    return false;
}

/* The gap to the next Poisson arrival (xorshift64*; the bench's own, not money). */
static uint64_t arrival_gap_ns(pay_worker *w) {
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    double u = (double)((w->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0; /* [0, 1) */
    return (uint64_t)(-log(1.0 - u) / w->rate_per_s * 1e9);
}

#define REQUEST_TIMEOUT_NS (60 * 1000000000ull) /* a request unanswered for a minute fails (a hung server) */
#define RUN_WAIT_NS_MAX 100000000ull /* the loop looks at timeouts at least this often */

typedef struct {
    pay_worker *w;
    bool open;
    uint32_t active;               /* connections with a request in flight or to come */
    pay_conn *unsent[CONNECTIONS]; /* requests that could not be sent: failed in the loop */
    uint32_t unsent_count;
    uint32_t next_conn;            /* open loop: where the search for an idle connection starts */
} pay_run;

static void run_start(pay_run *r, pay_conn *c) {
    if (!conn_start(c, r->w)) r->unsent[r->unsent_count++] = c;
}

/* Ends a request (answered or failed) and starts the connection's next one, or retires it. */
static void conn_finish(pay_run *r, pay_conn *c, long status, const char *failure) {
    c->busy = false;
    conn_answered(c, r->w, status, failure);
    /* a payment under way is finished (captured) after the deadline */
    if (c->next == STEP_CAPTURE || (!r->open && pc_mono_ns() < r->w->deadline_ns)) {
        if (c->next == STEP_AUTHORIZE) c->started_ns = pc_mono_ns();
        run_start(r, c);
    } else {
        r->active--;
    }
}

/* Open loop: every arrival that is due starts a payment on an idle connection (one
 * that waits for a free connection keeps its arrival time); ns until the next is due
 * (to the microsecond: a wait rounded down to whole ms spun through the last ms before
 * each arrival, taking a core's share from the server it measures). The connections
 * take arrivals in turn: each pays for its own payer (P<index>), and the lowest idle
 * one taking every arrival made a few payers pay dozens of times a second, which the
 * risk model sends to review (a payment that stops there is no payment measured). */
static uint64_t arrivals_start(pay_run *r, pay_conn *conns, uint64_t *next_ns) {
    pay_worker *w = r->w;
    uint64_t now_ns = pc_mono_ns();
    uint32_t first = r->next_conn;
    for (uint32_t n = 0; n < w->count && *next_ns <= now_ns && *next_ns < w->deadline_ns; n++) {
        pay_conn *c = &conns[(first + n) % w->count];
        if (c->busy) continue;
        r->next_conn = (uint32_t)(c - conns + 1) % w->count;
        c->next = STEP_AUTHORIZE;
        c->started_ns = *next_ns;
        r->active++;
        w->arrivals++;
        *next_ns += arrival_gap_ns(w);
        run_start(r, c);
    }
    if (*next_ns >= w->deadline_ns) return RUN_WAIT_NS_MAX;
    return *next_ns > now_ns ? *next_ns - now_ns : 1000000; /* due, no idle connection: one answers first */
}

/* Requests that could not be sent fail (after a pause: a server that is gone is not
 * hammered); requests unanswered for REQUEST_TIMEOUT_NS fail. */
static void run_failures(pay_run *r, pay_conn *conns, uint64_t *checked_ns) {
    if (r->unsent_count > 0) {
        usleep(10000);
        uint32_t count = r->unsent_count;
        pay_conn *unsent[CONNECTIONS];
        memcpy(unsent, r->unsent, count * sizeof unsent[0]);
        r->unsent_count = 0;
        for (uint32_t i = 0; i < count; i++) conn_finish(r, unsent[i], 0, "cannot connect or send");
    }
    uint64_t now_ns = pc_mono_ns();
    if (now_ns - *checked_ns < 1000000000ull) return;
    *checked_ns = now_ns;
    for (uint32_t i = 0; i < r->w->count; i++) {
        pay_conn *c = &conns[i];
        if (!c->busy || c->fd < 0 || now_ns - c->sent_ns < REQUEST_TIMEOUT_NS) continue;
        conn_close(c, r->w);
        conn_finish(r, c, 0, "timed out");
    }
}

static void run_events(pay_run *r, uint64_t wait_ns) {
    struct epoll_event events[CONNECTIONS];
    struct timespec wait = {.tv_sec = (time_t)(wait_ns / 1000000000u), .tv_nsec = (long)(wait_ns % 1000000000u)};
    int count = epoll_pwait2(r->w->epoll_fd, events, CONNECTIONS, &wait, NULL);
    for (int i = 0; i < count; i++) {
        pay_conn *c = events[i].data.ptr;
        if (!c->busy) { /* an idle connection the server closed: reconnect for the next request */
            conn_close(c, r->w);
            continue;
        }
        long status = 0;
        const char *failure = NULL;
        if ((events[i].events & EPOLLOUT) && !conn_flush(c, r->w)) {
            conn_close(c, r->w);
            conn_finish(r, c, 0, "send failed");
            continue;
        }
        if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
        int got = conn_read(c, r->w, &status, &failure);
        if (got != 0) conn_finish(r, c, status, failure);
    }
}

static void *pay_worker_run(void *arg) {
    pay_worker *w = arg;
    pay_conn *conns = calloc(w->count, sizeof *conns);
    const char *colon = strrchr(w->base, ':');
    if (conns == NULL || colon == NULL || (w->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) die("no memory");
    w->server = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    snprintf(w->host, sizeof w->host, "127.0.0.1:%d", atoi(colon + 1));
    pay_run r = {.w = w, .open = w->rate_per_s > 0};
    uint64_t next_ns = pc_mono_ns(), checked_ns = pc_mono_ns();
    for (uint32_t i = 0; i < w->count; i++) {
        pay_conn *c = &conns[i];
        c->index = w->first + i;
        c->fd = -1;
        if (r.open) continue;
        c->started_ns = pc_mono_ns();
        r.active++;
        run_start(&r, c);
    }
    while (r.active > 0 || (r.open && next_ns < w->deadline_ns)) {
        uint64_t wait_ns = r.open ? arrivals_start(&r, conns, &next_ns) : RUN_WAIT_NS_MAX;
        run_events(&r, r.active > 0 || r.open ? (wait_ns < RUN_WAIT_NS_MAX ? wait_ns : RUN_WAIT_NS_MAX) : 0);
        run_failures(&r, conns, &checked_ns);
    }
    for (uint32_t i = 0; i < w->count; i++) {
        w->in_flight += conns[i].busy;
        conn_close(&conns[i], w);
    }
    free(conns);
    close(w->epoll_fd);
    return NULL;
}

typedef struct {
    uint64_t payments, errors, declined, arrivals, in_flight, reviews, declines;
    double seconds, client_cpu_s;
    samples payment, authorize, capture, start_delay;
    samples payment_end;
    char first_error[200];
    char first_decline[200];
} pay_totals;

static void totals_free(pay_totals *t) {
    free(t->payment.ns);
    free(t->payment_end.ns);
    free(t->authorize.ns);
    free(t->capture.ns);
    free(t->start_delay.ns);
}

/* A slice of 64 connections on THREADS threads: a closed loop (rate_per_s 0) or an
 * open one at rate_per_s payments per second in all. */
static void payments_slice(const char *base, const char *key, double seconds, double rate_per_s, pay_totals *t) {
    static uint32_t slice;
    pay_worker workers[THREADS];
    pthread_t ids[THREADS];
    uint64_t start_ns = pc_mono_ns();
    double cpu_start_s = client_cpu_s();
    for (uint32_t i = 0; i < THREADS; i++) {
        workers[i] = (pay_worker){.base = base, .key = key, .count = CONNECTIONS / THREADS,
                                  .first = (slice * CONNECTIONS) + i * (CONNECTIONS / THREADS),
                                  .deadline_ns = start_ns + (uint64_t)(seconds * 1e9),
                                  .rate_per_s = rate_per_s / THREADS,
                                  .rng = 0x9e3779b97f4a7c15ull * (slice * THREADS + i + 1)};
        if (pthread_create(&ids[i], NULL, pay_worker_run, &workers[i]) != 0) die("pthread_create");
    }
    slice++;
    for (uint32_t i = 0; i < THREADS; i++) {
        pthread_join(ids[i], NULL);
        pay_worker *w = &workers[i];
        t->payments += w->payments;
        t->errors += w->errors;
        t->declined += w->declined;
        t->reviews += w->reviews;
        t->declines += w->declines;
        t->arrivals += w->arrivals;
        t->in_flight += w->in_flight;
        if (t->first_error[0] == '\0' && w->first_error[0] != '\0') {
            snprintf(t->first_error, sizeof t->first_error, "%s", w->first_error);
        }
        if (t->first_decline[0] == '\0' && w->first_decline[0] != '\0') {
            snprintf(t->first_decline, sizeof t->first_decline, "%s", w->first_decline);
        }
        samples_append(&t->payment, &w->payment);
        samples_append(&t->payment_end, &w->payment_end);
        samples_append(&t->authorize, &w->authorize);
        samples_append(&t->capture, &w->capture);
        samples_append(&t->start_delay, &w->start_delay);
        free(w->payment.ns);
        free(w->payment_end.ns);
        free(w->authorize.ns);
        free(w->capture.ns);
        free(w->start_delay.ns);
    }
    t->seconds += (double)(pc_mono_ns() - start_ns) / 1e9;
    t->client_cpu_s += client_cpu_s() - cpu_start_s;
}

/* Runs a `paycore load` command and adds its line's 'count_key' (" transfers=",
 * " requests=") and elapsed_s to the totals; false when it failed or printed neither. */
static bool load_slice(const char *command, const char *count_key, double *count, double *elapsed) {
    char line[2048];
    if (!run_line(command, line, sizeof line)) return false;
    const char *c = strstr(line, count_key), *e = strstr(line, " elapsed_s=");
    if (c == NULL || e == NULL) return false;
    *count += atof(c + strlen(count_key));
    *elapsed += atof(e + 11);
    return true;
}

/* `paycore load` single-transfer POSTs: transfers and seconds added to the totals. */
static void ledger_slice(const char *base, const char *admin_key, double seconds, double *transfers,
                         double *elapsed) {
    char command[2048];
    snprintf(command, sizeof command, "'%s' load --url %s --key %s --concurrency %d --duration-s %.0f", bin, base,
             admin_key, CONNECTIONS, seconds);
    if (!load_slice(command, " transfers=", transfers, elapsed)) die("paycore load failed");
}

/* `paycore load --get /healthz` against 'base': requests and seconds added to the
 * totals; false when the binary cannot (one older than --get, run as a baseline). */
static bool get_slice(const char *base, double seconds, double *requests, double *elapsed) {
    char command[2048];
    snprintf(command, sizeof command, "'%s' load --url %s --get /healthz --concurrency %d --duration-s %.0f 2>/dev/null",
             bin, base, CONNECTIONS, seconds);
    return load_slice(command, " requests=", requests, elapsed);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of sorted samples, in ms. */
static double quantile_ms(const samples *sorted, double q) {
    if (sorted->count == 0) return 0.0;
    uint64_t rank = (uint64_t)ceil(q * (double)sorted->count); /* 1-based */
    return (double)sorted->ns[rank > 0 ? rank - 1 : 0] / 1e6;
}

static void samples_sort(samples *s) { qsort(s->ns, s->count, sizeof s->ns[0], cmp_u64); }

/* ---------------------------------------------------------------- the tail over time */

/* payments_e2e_tail: how the closed loop's slow payments are spread. A tail from
 * stalls (a slow commit, a flush, a descheduled thread) comes in bursts: a few windows
 * whose every payment is slow; one from queueing spreads over all of them. */
#define TAIL_WINDOW_NS 100000000ull /* 100 ms of completions */
#define TAIL_WINDOW_PAYMENTS_MIN 10 /* fewer in a window (a slice's edge): not counted */

typedef struct {
    double mean_ms, p90_ms, max_ms, slow_share;    /* slow: above twice the mean */
    uint32_t windows, stall_windows;               /* stall: a window's mean above twice the mean */
    double window_p99_median_ms, window_p99_max_ms;
} tail_view;

typedef struct {
    uint64_t end_ns, latency_ns;
} tail_point;

static int cmp_tail_point(const void *a, const void *b) {
    uint64_t x = ((const tail_point *)a)->end_ns, y = ((const tail_point *)b)->end_ns;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p99 (nearest rank) of 'count' latencies, in ms; sorts them. */
static double points_p99_ms(uint64_t *ns, uint64_t count) {
    qsort(ns, count, sizeof ns[0], cmp_u64);
    uint64_t rank = (uint64_t)ceil(0.99 * (double)count);
    return (double)ns[rank > 0 ? rank - 1 : 0] / 1e6;
}

/* Each window's p99 and mean (windows of TAIL_WINDOW_NS by completion time). */
static void tail_windows(const tail_point *points, uint64_t count, double mean_ms, tail_view *v, double *p99s) {
    const char *windows_path = getenv("PAYCORE_BENCH_WINDOWS");
    FILE *windows_out = windows_path != NULL ? fopen(windows_path, "w") : NULL;
    struct timespec realtime;
    clock_gettime(CLOCK_REALTIME, &realtime);
    uint64_t realtime_offset_ns = (uint64_t)realtime.tv_sec * 1000000000ull + (uint64_t)realtime.tv_nsec - pc_mono_ns();
    uint64_t *ns = malloc((count > 0 ? count : 1) * sizeof *ns);
    if (ns == NULL) die("no memory");
    for (uint64_t first = 0; first < count;) {
        uint64_t end = first;
        double sum_ms = 0.0;
        while (end < count && points[end].end_ns < points[first].end_ns + TAIL_WINDOW_NS) {
            ns[end - first] = points[end].latency_ns;
            sum_ms += (double)points[end].latency_ns / 1e6;
            end++;
        }
        if (end - first >= TAIL_WINDOW_PAYMENTS_MIN) {
            p99s[v->windows] = points_p99_ms(ns, end - first);
            if (windows_out != NULL)
                fprintf(windows_out, "%.3f %llu %.2f %.2f\n", (double)(points[first].end_ns + realtime_offset_ns) / 1e9,
                        (unsigned long long)(end - first), sum_ms / (double)(end - first), p99s[v->windows]);
            v->windows++;
            v->stall_windows += sum_ms / (double)(end - first) > 2.0 * mean_ms;
        }
        first = end;
    }
    if (windows_out != NULL) fclose(windows_out);
    free(ns);
}

/* Before the latencies are sorted: they pair with their completion times. */
static tail_view tail_measure(const samples *latency, const samples *end) {
    tail_view v = {0};
    uint64_t count = latency->count < end->count ? latency->count : end->count;
    if (count == 0) return v;
    tail_point *points = malloc(count * sizeof *points);
    double *p99s = malloc(count * sizeof *p99s);
    if (points == NULL || p99s == NULL) die("no memory");
    double sum_ms = 0.0;
    for (uint64_t i = 0; i < count; i++) {
        points[i] = (tail_point){.end_ns = end->ns[i], .latency_ns = latency->ns[i]};
        sum_ms += (double)latency->ns[i] / 1e6;
        if ((double)latency->ns[i] / 1e6 > v.max_ms) v.max_ms = (double)latency->ns[i] / 1e6;
    }
    v.mean_ms = sum_ms / (double)count;
    uint64_t slow = 0;
    for (uint64_t i = 0; i < count; i++) slow += (double)latency->ns[i] / 1e6 > 2.0 * v.mean_ms;
    v.slow_share = (double)slow / (double)count;
    qsort(points, count, sizeof *points, cmp_tail_point);
    tail_windows(points, count, v.mean_ms, &v, p99s);
    if (v.windows > 0) {
        qsort(p99s, v.windows, sizeof *p99s, cmp_double);
        v.window_p99_median_ms = p99s[v.windows / 2];
        v.window_p99_max_ms = p99s[v.windows - 1];
    }
    free(points);
    free(p99s);
    return v;
}

/* The allocator label of the server's paycore_build_info ("unknown" when absent). */
static void server_allocator(const char *base, char *out, size_t out_bytes) {
    snprintf(out, out_bytes, "unknown");
    char *text = metrics_text(base);
    const char *info = text != NULL ? strstr(text, "\npaycore_build_info{") : NULL;
    const char *label = info != NULL ? strstr(info, "allocator=\"") : NULL;
    const char *line_end = info != NULL ? strchr(info + 1, '\n') : NULL;
    if (label != NULL && (line_end == NULL || label < line_end)) {
        label += strlen("allocator=\"");
        size_t n = strcspn(label, "\"\n");
        if (n > 0 && n < out_bytes) snprintf(out, out_bytes, "%.*s", (int)n, label);
    }
    free(text);
}

static void load_average(char *out, size_t out_bytes) {
    FILE *f = fopen("/proc/loadavg", "r");
    double one = 0.0;
    if (f == NULL || fscanf(f, "%lf", &one) != 1) one = -1.0;
    if (f != NULL) fclose(f);
    snprintf(out, out_bytes, "%.2f", one);
}

/* ---------------------------------------------------------------- the run */

static void setup_server(uint16_t sim_port, const char *model, char *base, char *admin, char *merchant_key) {
    char db[PATH_BYTES], command[2 * PATH_BYTES], line[512], path[PATH_BYTES], text[1024];
    snprintf(db, sizeof db, "%s/pay.db", dir);
    snprintf(command, sizeof command, "'%s' init --db '%s' 2>/dev/null", bin, db);
    if (!run_line(command, line, sizeof line) || strncmp(line, "admin_key=", 10) != 0) die("paycore init");
    snprintf(admin, 256, "%s", line + 10);
    snprintf(path, sizeof path, "%s/channels.json", dir);
    snprintf(text, sizeof text,
             "{\"channels\":[{\"name\":\"card\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:%u\"}]}",
             (unsigned)sim_port);
    write_file(path, text);
    char rules[PATH_BYTES], log[PATH_BYTES], err[PATH_BYTES];
    snprintf(rules, sizeof rules, "%s/risk.rules", dir);
    write_file(rules, "# the benchmark's payers are never on it: every rule is evaluated, none matches\n"
                      "block payer=P_BLOCKED\nblock payer=P_REVIEW action=review reason=watchlist\n");
    snprintf(log, sizeof log, "%s/serve.log", dir);
    snprintf(err, sizeof err, "%s/serve.err", dir);
    char *argv[24] = {bin, "serve", "--db", db, "--listen", "127.0.0.1:0", "--channels", path, "--risk-rules",
                      rules, "--log-level", "warn", "--log-file", log};
    int argc = 14;
    if (model != NULL) {
        argv[argc++] = "--risk-model";
        argv[argc++] = (char *)model;
    }
    if (http_mhd) argv[argc++] = "--http-mhd";
    argv[argc] = NULL;
    server_pid = spawn(argv, err, -1);
    snprintf(base, 128, "http://127.0.0.1:%u", (unsigned)server_port(log));
    char url[256], reply[4096];
    snprintf(url, sizeof url, "%s/v1/merchants", base);
    long status = post(url, admin,
                       "{\"id\":\"bench\",\"name\":\"Bench shop\",\"country\":\"DE\",\"default_currency\":\"EUR\","
                       "\"currencies\":[\"EUR\"],\"pricing\":{\"default\":{\"bps\":290,\"fixed_minor\":30}}}",
                       reply);
    if (status != 201) die(reply);
    snprintf(url, sizeof url, "%s/v1/merchants/bench/keys", base);
    if (post(url, admin, "{\"name\":\"bench\"}", reply) != 201 || !json_field(reply, "key", merchant_key, 256)) {
        die(reply);
    }
}

/* Stops the server and the simulator and removes the run's directory. */
static void cleanup(void) {
    stop(&server_pid);
    stop(&sim_pid);
    char command[PATH_BYTES + 16];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "bench_payments: could not remove %s\n", dir);
}

/* A whole number 'min'..'max' from a flag's value, or the run stops saying which flag. */
static uint64_t flag_number(const char *flag, const char *value, uint64_t min, uint64_t max) {
    char *end = NULL;
    errno = 0;
    unsigned long long n = value != NULL ? strtoull(value, &end, 10) : 0;
    if (value == NULL || end == value || *end != '\0' || errno != 0 || n < min || n > max) {
        fprintf(stderr, "bench_payments: %s takes a whole number %llu..%llu\n", flag, (unsigned long long)min,
                (unsigned long long)max);
        exit(2);
    }
    return n;
}

#define SUSTAIN_SLICES 10

/* --sustain: SUSTAIN_SLICES closed-loop slices back to back, each measured alone. */
static int sustain_run(const char *base, const char *key, double seconds) {
    pay_totals slices[SUSTAIN_SLICES];
    double slice_s = seconds / SUSTAIN_SLICES, per_s[SUSTAIN_SLICES], p99_ms[SUSTAIN_SLICES];
    uint64_t payments = 0, errors = 0, declined = 0;
    double total_s = 0.0, min_per_s = 0.0, worst_p99_ms = 0.0;
    samples all = {0};
    for (int i = 0; i < SUSTAIN_SLICES; i++) {
        memset(&slices[i], 0, sizeof slices[i]);
        payments_slice(base, key, slice_s, 0.0, &slices[i]);
        pay_totals *t = &slices[i];
        samples_sort(&t->payment);
        per_s[i] = t->seconds > 0 ? (double)t->payments / t->seconds : 0.0;
        p99_ms[i] = quantile_ms(&t->payment, 0.99);
        samples_append(&all, &t->payment);
        payments += t->payments;
        errors += t->errors;
        declined += t->declined;
        total_s += t->seconds;
        if (i == 0 || per_s[i] < min_per_s) min_per_s = per_s[i];
        if (p99_ms[i] > worst_p99_ms) worst_p99_ms = p99_ms[i];
    }
    samples_sort(&all);
    char *text = metrics_text(base);
    double reviews_open = text ? metric_value(text, "paycore_risk_reviews_open") : -1.0;
    free(text);
    printf("payments_e2e_sustained connections=%d seconds=%.0f slices=%d per_s=%.0f p99_ms=%.2f first_per_s=%.0f "
           "last_per_s=%.0f last_over_first=%.3f min_per_s=%.0f worst_slice_p99_ms=%.2f reviews_open=%.0f "
           "errors=%llu attempts_per_s=%.0f declined=%llu\n",
           CONNECTIONS, total_s, SUSTAIN_SLICES, total_s > 0 ? (double)payments / total_s : 0.0,
           quantile_ms(&all, 0.99), per_s[0], per_s[SUSTAIN_SLICES - 1],
           per_s[0] > 0 ? per_s[SUSTAIN_SLICES - 1] / per_s[0] : 0.0, min_per_s, worst_p99_ms, reviews_open,
           (unsigned long long)errors, total_s > 0 ? (double)(payments + declined) / total_s : 0.0,
           (unsigned long long)declined);
    double at_s = 0.0;
    for (int i = 0; i < SUSTAIN_SLICES; i++) {
        double attempts_per_s = slices[i].seconds > 0 ? (double)(slices[i].payments + slices[i].declined) / slices[i].seconds : 0.0;
        printf("payments_e2e_sustained_slice index=%d at_s=%.0f per_s=%.0f p99_ms=%.2f attempts_per_s=%.0f declined=%llu "
               "reviews=%llu\n",
               i, at_s, per_s[i], p99_ms[i], attempts_per_s, (unsigned long long)slices[i].declined,
               (unsigned long long)slices[i].reviews);
        at_s += slices[i].seconds;
        totals_free(&slices[i]);
    }
    free(all.ns);
    return errors == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    bool full = false, hold = false;
    double profile_s = 0.0, sustain_s = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--full") == 0) full = true;
        else if (strcmp(argv[i], "--quick") == 0) full = false;
        else if (strcmp(argv[i], "--profile") == 0 && value != NULL) profile_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--hold") == 0) hold = true;
        else if (strcmp(argv[i], "--sustain") == 0) sustain_s = (double)flag_number(argv[i++], value, SUSTAIN_SLICES, 86400);
        else if (strcmp(argv[i], "--http-engine") == 0) http_mhd = false;
        else if (strcmp(argv[i], "--http-mhd") == 0) http_mhd = true;
        else if (strcmp(argv[i], "--sim-http-engine") == 0) sim_http_mhd = false; /* the default */
        else if (strcmp(argv[i], "--sim-http-mhd") == 0) sim_http_mhd = true;
        else if (strcmp(argv[i], "--cards") == 0) customer_count = (uint32_t)flag_number(argv[i++], value, 1, CARDS_MAX);
        else if (strcmp(argv[i], "--seed") == 0) pool_seed = flag_number(argv[i++], value, 0, UINT64_MAX);
        else {
            fprintf(stderr, "usage: bench_payments [--quick | --full | --profile SECONDS [--hold] | --sustain SECONDS] [--cards N] [--seed S] [--http-engine | --http-mhd] [--sim-http-engine | --sim-http-mhd]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    pool_make();
    requests_check();
    snprintf(dir, sizeof dir, "%s/paycore-bench-pay-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL) die("mkdtemp");
    const char *env_bin = getenv("PAYCORE_BIN");
    snprintf(bin, sizeof bin, "%s", env_bin ? env_bin : argv[0]);
    char *slash = env_bin ? NULL : strrchr(bin, '/');
    if (!env_bin) snprintf(slash ? slash + 1 : bin, sizeof bin - (size_t)(slash ? slash + 1 - bin : 0), "paycore");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char model[PATH_BYTES];
    bool with_model = model_train(model, sizeof model);
    uint16_t sim_port = sim_start();
    snprintf(sim_health_url, sizeof sim_health_url, "http://127.0.0.1:%u/healthz", (unsigned)sim_port);
    char base[128], admin[256], merchant_key[256];
    setup_server(sim_port, with_model ? model : NULL, base, admin, merchant_key);

    char load_before[16], load_after[16];
    load_average(load_before, sizeof load_before);
    pay_totals t = {0}, warm = {0}, open = {0};
    payments_slice(base, merchant_key, 1.0, 0.0, &warm); /* caches, connections, page cache */
    if (sustain_s > 0) {
        int rc = sustain_run(base, merchant_key, sustain_s);
        cleanup();
        totals_free(&warm);
        return rc;
    }
    if (profile_s > 0) {
        printf("server_pid=%d\n", (int)server_pid);
        fflush(stdout);
        payments_slice(base, merchant_key, profile_s, 0.0, &warm);
        printf("payments=%llu seconds=%.1f\n", (unsigned long long)warm.payments, warm.seconds);
        fflush(stdout);
        while (hold && fgetc(stdin) != EOF) {
        }
        cleanup();
        totals_free(&warm);
        return warm.errors == 0 ? 0 : 1;
    }
    int rounds = full ? 8 : 3;
    double slice_s = full ? 3.0 : 2.0, ledger_transfers = 0, ledger_s = 0;
    server_view pay_view = {0}, ledger_view = {0};
    char sim_base[64];
    snprintf(sim_base, sizeof sim_base, "http://127.0.0.1:%u", (unsigned)sim_port);
    double get_server[2] = {0}, get_sim[2] = {0}; /* requests, seconds */
    bool floor_measured = true;
    for (int round = 0; round < rounds; round++) {
        if (floor_measured) {
            floor_measured = get_slice(base, 1.0, &get_server[0], &get_server[1]) &&
                             get_slice(sim_base, 1.0, &get_sim[0], &get_sim[1]);
        }
        server_view a = server_look(base);
        ledger_slice(base, admin, slice_s, &ledger_transfers, &ledger_s);
        server_view b = server_look(base);
        payments_slice(base, merchant_key, slice_s, 0.0, &t);
        server_view c = server_look(base);
        server_add(&ledger_view, &a, &b);
        server_add(&pay_view, &b, &c);
    }
    double per_s = t.seconds > 0 ? (double)t.payments / t.seconds : 0.0;
    double open_rate = OPEN_LOAD_FRACTION * per_s;
    if (open_rate >= 1.0) payments_slice(base, merchant_key, full ? 8.0 : 4.0, open_rate, &open);
    load_average(load_after, sizeof load_after);
    tail_view tail = tail_measure(&t.payment, &t.payment_end);
    samples_sort(&t.payment);
    samples_sort(&t.authorize);
    samples_sort(&t.capture);
    samples_sort(&open.payment);
    samples_sort(&open.start_delay);
    double baseline = ledger_s > 0 ? ledger_transfers / ledger_s : 0.0;
    printf("payments_e2e connections=%d per_s=%.0f p50_ms=%.2f p99_ms=%.2f baseline=ledger_single "
           "baseline_per_s=%.0f ratio=%.3f\n",
           CONNECTIONS, per_s, quantile_ms(&t.payment, 0.50), quantile_ms(&t.payment, 0.99), baseline,
           baseline > 0 ? per_s / baseline : 0.0);
    uint64_t attempts = t.payments + t.declined + t.errors;
    double attempts_d = attempts > 0 ? (double)attempts : 1.0;
    printf("payments_e2e_detail payments=%llu declined=%llu errors=%llu seconds=%.1f risk=%s "
           "requests_per_payment=2 p999_ms=%.2f cards=%u attempts=%llu reviews=%llu declines=%llu "
           "review_share=%.4f decline_share=%.4f\n",
           (unsigned long long)t.payments, (unsigned long long)t.declined, (unsigned long long)t.errors, t.seconds,
           with_model ? "model" : "rules_only", quantile_ms(&t.payment, 0.999), customer_count,
           (unsigned long long)attempts, (unsigned long long)t.reviews, (unsigned long long)t.declines,
           (double)t.reviews / attempts_d, (double)t.declines / attempts_d);
    double payments = t.payments > 0 ? (double)t.payments : 1.0;
    double transfers = ledger_transfers > 0 ? ledger_transfers : 1.0;
    printf("payments_e2e_where commits_per_payment=%.2f commit_ms_mean=%.2f batch_events_mean=%.1f "
           "server_cpu_ms_per_payment=%.3f ledger_commit_ms_mean=%.2f ledger_batch_events_mean=%.1f "
           "server_cpu_ms_per_transfer=%.3f server_write_kb_per_payment=%.2f server_write_kb_per_transfer=%.2f "
           "server_cpu_ms_per_attempt=%.3f\n",
           pay_view.commits / payments, pay_view.commits > 0 ? 1e3 * pay_view.commit_s / pay_view.commits : 0.0,
           pay_view.batches > 0 ? pay_view.batch_events / pay_view.batches : 0.0, 1e3 * pay_view.cpu_s / payments,
           ledger_view.commits > 0 ? 1e3 * ledger_view.commit_s / ledger_view.commits : 0.0,
           ledger_view.batches > 0 ? ledger_view.batch_events / ledger_view.batches : 0.0,
           1e3 * ledger_view.cpu_s / transfers, pay_view.write_bytes / 1024.0 / payments,
           ledger_view.write_bytes / 1024.0 / transfers, 1e3 * pay_view.cpu_s / attempts_d);
    printf("payments_e2e_cpu");
    for (int g = 0; g < GROUPS; g++) printf(" %s_ms_per_payment=%.3f", group_names[g], 1e3 * pay_view.group_cpu_s[g] / payments);
    printf(" simulator_ms_per_payment=%.3f client_ms_per_payment=%.3f\n", 1e3 * pay_view.sim_cpu_s / payments,
           1e3 * pay_view.client_cpu_s / payments);
    printf("payments_e2e_simulator commits_per_payment=%.3f requests_per_commit=%.2f\n",
           pay_view.sim_commits / payments,
           pay_view.sim_commits > 0 ? pay_view.sim_commit_units / pay_view.sim_commits : 0.0);
    path_print(&pay_view);
    double tail_p99_ms = quantile_ms(&t.payment, 0.99);
    printf("payments_e2e_tail mean_ms=%.2f p90_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f p99_over_mean=%.2f "
           "slow_share=%.4f window_ms=%llu windows=%u stall_windows=%u window_p99_median_ms=%.2f "
           "window_p99_max_ms=%.2f\n",
           tail.mean_ms, quantile_ms(&t.payment, 0.90), tail_p99_ms, quantile_ms(&t.payment, 0.999), tail.max_ms,
           tail.mean_ms > 0 ? tail_p99_ms / tail.mean_ms : 0.0, tail.slow_share,
           (unsigned long long)(TAIL_WINDOW_NS / 1000000u), tail.windows, tail.stall_windows,
           tail.window_p99_median_ms, tail.window_p99_max_ms);
    printf("payments_e2e_requests authorize_p50_ms=%.2f authorize_p99_ms=%.2f capture_p50_ms=%.2f "
           "capture_p99_ms=%.2f\n",
           quantile_ms(&t.authorize, 0.50), quantile_ms(&t.authorize, 0.99), quantile_ms(&t.capture, 0.50),
           quantile_ms(&t.capture, 0.99));
    double open_per_s = open.seconds > 0 ? (double)open.payments / open.seconds : 0.0;
    printf("payments_e2e_open offered_per_s=%.0f per_s=%.0f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f payments=%llu "
           "errors=%llu arrivals=%llu seconds=%.2f start_delay_p99_ms=%.2f client_ms_per_payment=%.3f declined=%llu "
           "in_flight=%llu reviews=%llu declines=%llu\n",
           open_rate, open_per_s, quantile_ms(&open.payment, 0.50), quantile_ms(&open.payment, 0.99),
           quantile_ms(&open.payment, 0.999), (unsigned long long)open.payments, (unsigned long long)open.errors,
           (unsigned long long)open.arrivals, open.seconds, quantile_ms(&open.start_delay, 0.99),
           open.payments > 0 ? 1e3 * open.client_cpu_s / (double)open.payments : 0.0,
           (unsigned long long)open.declined, (unsigned long long)open.in_flight, (unsigned long long)open.reviews,
           (unsigned long long)open.declines);
    double server_get = get_server[1] > 0 ? get_server[0] / get_server[1] : 0.0;
    double sim_get = get_sim[1] > 0 ? get_sim[0] / get_sim[1] : 0.0;
    double floor_per_s = server_get > 0 && sim_get > 0 ? 1.0 / (2.0 / server_get + 2.0 / sim_get) : 0.0;
    if (!floor_measured) fprintf(stderr, "bench_payments: no payments_e2e_floor: '%s load --get' failed\n", bin);
    else printf("payments_e2e_floor server_get_per_s=%.0f simulator_get_per_s=%.0f exchanges_per_payment=4 "
           "floor_per_s=%.0f ratio=%.3f\n",
           server_get, sim_get, floor_per_s, floor_per_s > 0 ? per_s / floor_per_s : 0.0);
    double decisions = pay_view.risk_decisions[0] + pay_view.risk_decisions[1] + pay_view.risk_decisions[2];
    char top_reason[64];
    double top_reason_count = 0;
    risk_top_reason(base, top_reason, sizeof top_reason, &top_reason_count);
    double scores = pay_view.risk_scores > 0 ? pay_view.risk_scores : 1.0;
    printf("payments_e2e_risk decisions=%.0f approve=%.0f review=%.0f decline=%.0f decisions_per_attempt=%.3f "
           "review_share=%.4f decline_share=%.4f top_reason=%s top_reason_count=%.0f score_mean=%.4f "
           "score_above_0_2_share=%.4f\n",
           decisions, pay_view.risk_decisions[0], pay_view.risk_decisions[1], pay_view.risk_decisions[2],
           decisions / attempts_d, decisions > 0 ? pay_view.risk_decisions[1] / decisions : 0.0,
           decisions > 0 ? pay_view.risk_decisions[2] / decisions : 0.0, top_reason, top_reason_count,
           pay_view.risk_score_sum / scores, (pay_view.risk_scores - pay_view.risk_scores_low) / scores);
    uint32_t devices = 0, drawn = 0;
    pool_counts(&devices, &drawn);
    printf("payments_e2e_pool cards=%u seed=%llu payers=%u devices=%u ip_prefixes=%u cards_drawn=%u\n",
           customer_count, (unsigned long long)pool_seed, customers != NULL ? customer_count : CONNECTIONS, devices,
           customers != NULL ? pool_prefixes() : 0, customers != NULL ? drawn : 1);
    char allocator[32];
    server_allocator(base, allocator, sizeof allocator);
    printf("payments_e2e_machine cpus=%ld load_avg_1m_before=%s load_avg_1m_after=%s server_allocator=%s\n",
           sysconf(_SC_NPROCESSORS_ONLN), load_before, load_after, allocator);
    if (open.first_error[0] != '\0' && t.first_error[0] == '\0') memcpy(t.first_error, open.first_error, sizeof t.first_error);
    t.errors += open.errors;
    if (t.first_error[0] != '\0') fprintf(stderr, "bench_payments: first error: %s\n", t.first_error);
    if (t.first_decline[0] == '\0') memcpy(t.first_decline, open.first_decline, sizeof t.first_decline);
    if (t.first_decline[0] != '\0') fprintf(stderr, "bench_payments: first decline: %s\n", t.first_decline);
    fflush(stdout);
    cleanup();
    totals_free(&t);
    totals_free(&warm);
    totals_free(&open);
    free(customers);
    free(customer_drawn);
    curl_global_cleanup();
    return t.errors == 0 ? 0 : 1;
}
