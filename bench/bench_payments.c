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
 * Everything on loopback; the server, simulator and load share the machine's cores.
 *   --quick  about 15 s     --full  about 50 s
 *   --profile SECONDS  payments only, for a profiler: prints "server_pid=N" once the
 *                      server is warm, then loads it for SECONDS (no result lines) */
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"

#define CONNECTIONS 64
#define THREADS 2
#define CARD "4000000000000002" /* the simulator approves it with no balance or limit checks */
#define LATENCIES_MAX (1u << 22)
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

static uint16_t sim_start(void) {
    char db[PATH_BYTES], log[PATH_BYTES];
    snprintf(db, sizeof db, "%s/card.db", dir);
    snprintf(log, sizeof log, "%s/card.log", dir);
    int out[2];
    if (pipe(out) != 0) die("pipe");
    char *argv[] = {bin, "simulator", "card", "--listen", "127.0.0.1:0", "--db", db, "--log-level", "warn", NULL};
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

static uint16_t server_port(const char *log) {
    for (int i = 0; i < 600; i++) {
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

/* ---------------------------------------------------------------- where the time goes */

/* The server's own view over a slice: commits, their time, batch sizes, its CPU and
 * the bytes it wrote to its files (WAL frames, checkpoints: the cost of each kind of
 * write, independent of how fast the disk is today). */
typedef struct {
    double commits, commit_s, batches, batch_events, cpu_s, write_bytes;
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

static double server_cpu_s(void) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)server_pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    const char *after = strrchr(text, ')'); /* fields after the command name */
    unsigned long long utime = 0, stime = 0;
    if (after == NULL || sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                                &stime) != 2) {
        return 0.0;
    }
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
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

static server_view server_look(const char *base) {
    server_view v = {.cpu_s = server_cpu_s(), .write_bytes = server_write_bytes()};
    char url[256], *text = NULL;
    snprintf(url, sizeof url, "%s/metrics", base);
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_big);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &text);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(curl) == CURLE_OK && text != NULL) {
        v.commits = metric_value(text, "paycore_commit_duration_seconds_count");
        v.commit_s = metric_value(text, "paycore_commit_duration_seconds_sum");
        v.batches = metric_value(text, "paycore_writer_batch_size_count");
        v.batch_events = metric_value(text, "paycore_writer_batch_size_sum");
    }
    curl_easy_cleanup(curl);
    free(text);
    return v;
}

/* 'total' += after - before */
static void server_add(server_view *total, const server_view *before, const server_view *after) {
    total->commits += after->commits - before->commits;
    total->commit_s += after->commit_s - before->commit_s;
    total->batches += after->batches - before->batches;
    total->batch_events += after->batch_events - before->batch_events;
    total->cpu_s += after->cpu_s - before->cpu_s;
    total->write_bytes += after->write_bytes - before->write_bytes;
}

/* ---------------------------------------------------------------- the payments load */

typedef enum { STEP_AUTHORIZE, STEP_CAPTURE } step;

typedef struct {
    CURL *curl;
    struct curl_slist *headers;
    char reply[4096];
    char body[512];
    char url[256];
    char payment_id[64];
    step next;
    uint32_t index;
    uint64_t sequence;
    uint64_t started_ns;           /* the payment's authorize was sent */
} pay_conn;

typedef struct {
    const char *base;
    const char *key;
    uint32_t first, count;
    uint64_t deadline_ns;
    uint64_t payments, errors, declined;
    uint64_t *latencies_ns;        /* this worker's share of the run's buffer */
    uint64_t latency_room;
    char first_error[200];
} pay_worker;

static void conn_send(pay_conn *c, const pay_worker *w) {
    char header[128], auth[512];
    curl_slist_free_all(c->headers);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", w->key);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, auth);
    c->headers = curl_slist_append(c->headers, "Expect:");
    if (c->next == STEP_AUTHORIZE) {
        c->sequence++;
        c->started_ns = pc_mono_ns();
        snprintf(c->url, sizeof c->url, "%s/v1/payments", w->base);
        snprintf(c->body, sizeof c->body,
                 "{\"amount\":%llu,\"currency\":\"EUR\",\"capture_method\":\"manual\",\"payment_method\":"
                 "{\"type\":\"card\",\"card\":{\"number\":\"" CARD "\",\"exp_month\":12,\"exp_year\":2030,"
                 "\"cvc\":\"123\"}},\"payer\":{\"id\":\"P%u\",\"country\":\"DE\"},\"description\":\"bench\"}",
                 (unsigned long long)(500 + (c->sequence * 37) % 9000), c->index);
        snprintf(header, sizeof header, "Idempotency-Key: b%u-%llu-a", c->index, (unsigned long long)c->sequence);
    } else {
        snprintf(c->url, sizeof c->url, "%s/v1/payments/%s/capture", w->base, c->payment_id);
        snprintf(c->body, sizeof c->body, "{}");
        snprintf(header, sizeof header, "Idempotency-Key: b%u-%llu-c", c->index, (unsigned long long)c->sequence);
    }
    c->headers = curl_slist_append(c->headers, header);
    c->reply[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_URL, c->url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, c->body);
}

static void worker_error(pay_worker *w, long status, const char *what) {
    if (w->errors++ == 0) snprintf(w->first_error, sizeof w->first_error, "%ld %.180s", status, what);
}

/* An answer: the next step of the payment, or the next payment. */
static void conn_answered(pay_conn *c, pay_worker *w, CURLcode rc) {
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    char state[32] = "";
    (void)json_field(c->reply, "status", state, sizeof state);
    if (c->next == STEP_AUTHORIZE) {
        if (status == 201 && strcmp(state, "authorized") == 0 && json_field(c->reply, "id", c->payment_id,
                                                                            sizeof c->payment_id)) {
            c->next = STEP_CAPTURE;
            return;
        }
        if (status == 201 || status == 402) w->declined++; /* a risk or channel decision, not an error */
        else worker_error(w, status, rc == CURLE_OK ? c->reply : curl_easy_strerror(rc));
        return;
    }
    c->next = STEP_AUTHORIZE;
    if (status != 200 || strcmp(state, "captured") != 0) {
        worker_error(w, status, rc == CURLE_OK ? c->reply : curl_easy_strerror(rc));
        return;
    }
    if (w->payments < w->latency_room) w->latencies_ns[w->payments] = pc_mono_ns() - c->started_ns;
    w->payments++;
}

static void *pay_worker_run(void *arg) {
    pay_worker *w = arg;
    CURLM *multi = curl_multi_init();
    pay_conn *conns = calloc(w->count, sizeof *conns);
    if (multi == NULL || conns == NULL) die("no memory");
    uint32_t active = 0;
    for (uint32_t i = 0; i < w->count; i++) {
        pay_conn *c = &conns[i];
        c->index = w->first + i;
        c->curl = curl_easy_init();
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c->reply);
        curl_easy_setopt(c->curl, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
        conn_send(c, w);
        curl_multi_add_handle(multi, c->curl);
        active++;
    }
    while (active > 0) {
        int running = 0, queued = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            pay_conn *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode rc = msg->data.result;
            curl_multi_remove_handle(multi, c->curl);
            conn_answered(c, w, rc);
            /* a payment under way is finished (captured) after the deadline */
            if (c->next == STEP_CAPTURE || pc_mono_ns() < w->deadline_ns) {
                conn_send(c, w);
                curl_multi_add_handle(multi, c->curl);
            } else {
                active--;
            }
        }
        if (active > 0) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (uint32_t i = 0; i < w->count; i++) {
        curl_slist_free_all(conns[i].headers);
        curl_easy_cleanup(conns[i].curl);
    }
    free(conns);
    curl_multi_cleanup(multi);
    return NULL;
}

typedef struct {
    uint64_t payments, errors, declined;
    double seconds;
    uint64_t *latencies_ns;
    uint64_t latency_count;
    uint64_t latency_capacity;
    char first_error[200];
} pay_totals;

static void payments_slice(const char *base, const char *key, double seconds, pay_totals *t) {
    static uint32_t slice;
    pay_worker workers[THREADS];
    pthread_t ids[THREADS];
    uint64_t start_ns = pc_mono_ns();
    uint64_t room = (t->latency_capacity - t->latency_count) / THREADS;
    for (uint32_t i = 0; i < THREADS; i++) {
        workers[i] = (pay_worker){.base = base, .key = key, .count = CONNECTIONS / THREADS,
                                  .first = (slice * CONNECTIONS) + i * (CONNECTIONS / THREADS),
                                  .deadline_ns = start_ns + (uint64_t)(seconds * 1e9),
                                  .latencies_ns = t->latencies_ns + t->latency_count + i * room,
                                  .latency_room = room};
        if (pthread_create(&ids[i], NULL, pay_worker_run, &workers[i]) != 0) die("pthread_create");
    }
    slice++;
    uint64_t kept = 0;
    for (uint32_t i = 0; i < THREADS; i++) {
        pthread_join(ids[i], NULL);
        t->payments += workers[i].payments;
        t->errors += workers[i].errors;
        t->declined += workers[i].declined;
        if (t->first_error[0] == '\0' && workers[i].first_error[0] != '\0') {
            snprintf(t->first_error, sizeof t->first_error, "%s", workers[i].first_error);
        }
        uint64_t n = workers[i].payments < room ? workers[i].payments : room;
        memmove(t->latencies_ns + t->latency_count + kept, workers[i].latencies_ns, n * sizeof(uint64_t));
        kept += n;
    }
    t->latency_count += kept;
    t->seconds += (double)(pc_mono_ns() - start_ns) / 1e9;
}

/* `paycore load` single-transfer POSTs: transfers and seconds added to the totals. */
static void ledger_slice(const char *base, const char *admin_key, double seconds, double *transfers,
                         double *elapsed) {
    char command[2048], line[2048];
    snprintf(command, sizeof command, "'%s' load --url %s --key %s --concurrency %d --duration-s %.0f", bin, base,
             admin_key, CONNECTIONS, seconds);
    if (!run_line(command, line, sizeof line)) die("paycore load failed");
    const char *t = strstr(line, " transfers="), *e = strstr(line, " elapsed_s=");
    if (t == NULL || e == NULL) die("paycore load: no transfers= / elapsed_s=");
    *transfers += atof(t + 11);
    *elapsed += atof(e + 11);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double quantile_ms(uint64_t *sorted, uint64_t count, double q) {
    if (count == 0) return 0.0;
    uint64_t i = (uint64_t)(q * (double)(count - 1));
    return (double)sorted[i] / 1e6;
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

int main(int argc, char **argv) {
    bool full = argc > 1 && strcmp(argv[1], "--full") == 0;
    double profile_s = argc > 2 && strcmp(argv[1], "--profile") == 0 ? atof(argv[2]) : 0.0;
    signal(SIGPIPE, SIG_IGN);
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
    char base[128], admin[256], merchant_key[256];
    setup_server(sim_port, with_model ? model : NULL, base, admin, merchant_key);

    pay_totals t = {.latencies_ns = calloc(LATENCIES_MAX, sizeof(uint64_t)), .latency_capacity = LATENCIES_MAX};
    if (t.latencies_ns == NULL) die("no memory");
    pay_totals warm = {.latencies_ns = calloc(1u << 16, sizeof(uint64_t)), .latency_capacity = 1u << 16};
    if (warm.latencies_ns == NULL) die("no memory");
    payments_slice(base, merchant_key, 1.0, &warm); /* caches, connections, page cache */
    if (profile_s > 0) {
        printf("server_pid=%d\n", (int)server_pid);
        fflush(stdout);
        payments_slice(base, merchant_key, profile_s, &warm);
        printf("payments=%llu seconds=%.1f\n", (unsigned long long)warm.payments, warm.seconds);
        fflush(stdout);
        cleanup();
        return warm.errors == 0 ? 0 : 1;
    }
    int rounds = full ? 8 : 3;
    double slice_s = full ? 3.0 : 2.0, ledger_transfers = 0, ledger_s = 0;
    server_view pay_view = {0}, ledger_view = {0};
    for (int round = 0; round < rounds; round++) {
        server_view a = server_look(base);
        ledger_slice(base, admin, slice_s, &ledger_transfers, &ledger_s);
        server_view b = server_look(base);
        payments_slice(base, merchant_key, slice_s, &t);
        server_view c = server_look(base);
        server_add(&ledger_view, &a, &b);
        server_add(&pay_view, &b, &c);
    }
    qsort(t.latencies_ns, t.latency_count, sizeof(uint64_t), cmp_u64);
    double per_s = t.seconds > 0 ? (double)t.payments / t.seconds : 0.0;
    double baseline = ledger_s > 0 ? ledger_transfers / ledger_s : 0.0;
    printf("payments_e2e connections=%d per_s=%.0f p50_ms=%.2f p99_ms=%.2f baseline=ledger_single "
           "baseline_per_s=%.0f ratio=%.3f\n",
           CONNECTIONS, per_s, quantile_ms(t.latencies_ns, t.latency_count, 0.50),
           quantile_ms(t.latencies_ns, t.latency_count, 0.99), baseline, baseline > 0 ? per_s / baseline : 0.0);
    printf("payments_e2e_detail payments=%llu declined=%llu errors=%llu seconds=%.1f risk=%s "
           "requests_per_payment=2 p999_ms=%.2f\n",
           (unsigned long long)t.payments, (unsigned long long)t.declined, (unsigned long long)t.errors, t.seconds,
           with_model ? "model" : "rules_only", quantile_ms(t.latencies_ns, t.latency_count, 0.999));
    double payments = t.payments > 0 ? (double)t.payments : 1.0;
    double transfers = ledger_transfers > 0 ? ledger_transfers : 1.0;
    printf("payments_e2e_where commits_per_payment=%.2f commit_ms_mean=%.2f batch_events_mean=%.1f "
           "server_cpu_ms_per_payment=%.3f ledger_commit_ms_mean=%.2f ledger_batch_events_mean=%.1f "
           "server_cpu_ms_per_transfer=%.3f server_write_kb_per_payment=%.2f server_write_kb_per_transfer=%.2f\n",
           pay_view.commits / payments, pay_view.commits > 0 ? 1e3 * pay_view.commit_s / pay_view.commits : 0.0,
           pay_view.batches > 0 ? pay_view.batch_events / pay_view.batches : 0.0, 1e3 * pay_view.cpu_s / payments,
           ledger_view.commits > 0 ? 1e3 * ledger_view.commit_s / ledger_view.commits : 0.0,
           ledger_view.batches > 0 ? ledger_view.batch_events / ledger_view.batches : 0.0,
           1e3 * ledger_view.cpu_s / transfers, pay_view.write_bytes / 1024.0 / payments,
           ledger_view.write_bytes / 1024.0 / transfers);
    if (t.first_error[0] != '\0') fprintf(stderr, "bench_payments: first error: %s\n", t.first_error);
    fflush(stdout);
    cleanup();
    free(t.latencies_ns);
    free(warm.latencies_ns);
    curl_global_cleanup();
    return t.errors == 0 ? 0 : 1;
}
