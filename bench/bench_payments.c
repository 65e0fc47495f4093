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
 *   payments_e2e_open: an open loop after the closed one: payments started at Poisson
 *     arrivals at half the closed loop's rate (at most 64 at once), latency from each
 *     payment's scheduled arrival, so a stall counts for every payment it delayed (the
 *     closed loop's p99 is its queue at saturation: 64 / rate).
 *   payments_e2e_floor: the HTTP stack alone, in the same rounds: `paycore load --get
 *     /healthz` (64 connections, the same client) against the server and against the
 *     card simulator. A payment is four such exchanges (authorize and capture, each
 *     also a call to the simulator), so floor_per_s = 1 / (2 / server_get_per_s +
 *     2 / simulator_get_per_s) is what the machine could do if every exchange did
 *     nothing; ratio = per_s / floor_per_s.
 *   payments_e2e_machine: the load average before and after (the machine is shared).
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
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"

#define CONNECTIONS 64
#define THREADS 2
#define CARD "4000000000000002" /* the simulator approves it with no balance or limit checks */
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
/* Server threads by name (pthread_setname_np); MHD names its workers "MHD-…". */
enum { GROUP_WRITER, GROUP_CHECKPOINTER, GROUP_GATEWAY, GROUP_STAGE, GROUP_HTTP, GROUP_OTHER, GROUPS };
static const char *const group_names[GROUPS] = {"writer", "checkpointer", "gateway", "stage", "http", "other"};
static const char *const group_prefixes[GROUPS] = {"paycore-writer", "paycore-walckpt", "paycore-gw",
                                                   "paycore-stage", "MHD-", NULL};

typedef struct {
    double commits, commit_s, batches, batch_events, cpu_s, write_bytes;
    double group_cpu_s[GROUPS];    /* threads that ended since are in GROUP_OTHER */
    double sim_cpu_s, client_cpu_s;
    double sim_commits, sim_commit_units; /* the simulator's record: group commits, requests in them */
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
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(curl) == CURLE_OK) {
        v->sim_commits = json_number(reply, "commits");
        v->sim_commit_units = json_number(reply, "commit_units");
    }
    curl_easy_cleanup(curl);
}

static server_view server_look(const char *base) {
    server_view v = {.cpu_s = server_cpu_s(), .write_bytes = server_write_bytes(), .sim_cpu_s = process_cpu_s(sim_pid),
                     .client_cpu_s = client_cpu_s()};
    server_groups_cpu_s(v.cpu_s, v.group_cpu_s);
    sim_look(&v);
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
    for (int g = 0; g < GROUPS; g++) total->group_cpu_s[g] += after->group_cpu_s[g] - before->group_cpu_s[g];
    total->sim_cpu_s += after->sim_cpu_s - before->sim_cpu_s;
    total->client_cpu_s += after->client_cpu_s - before->client_cpu_s;
    total->sim_commits += after->sim_commits - before->sim_commits;
    total->sim_commit_units += after->sim_commit_units - before->sim_commit_units;
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

typedef struct {
    CURL *curl;
    struct curl_slist headers[4];  /* curl reads the list: its nodes and lines live here, built once */
    char auth_line[300];
    char key_line[96];             /* the one header that changes per request */
    size_t reply_bytes;
    char reply[4096];
    char body[512];
    char url[256];
    char payment_id[64];
    step next;
    bool busy;                     /* a request of it is in the multi */
    uint32_t index;
    uint64_t sequence;
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
    samples payment, authorize, capture;
    char first_error[200];
} pay_worker;

/* The connection's headers, once: a request changes only the Idempotency-Key line. */
static void conn_headers(pay_conn *c, const pay_worker *w) {
    static char content_type[] = "Content-Type: application/json", no_expect[] = "Expect:";
    snprintf(c->auth_line, sizeof c->auth_line, "Authorization: Bearer %s", w->key);
    char *lines[4] = {content_type, c->auth_line, no_expect, c->key_line};
    for (int i = 0; i < 4; i++) {
        c->headers[i].data = lines[i];
        c->headers[i].next = i < 3 ? &c->headers[i + 1] : NULL;
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
}

static void conn_send(pay_conn *c, const pay_worker *w) {
    int body_bytes;
    if (c->next == STEP_AUTHORIZE) {
        c->sequence++;
        snprintf(c->url, sizeof c->url, "%s/v1/payments", w->base);
        body_bytes = snprintf(
            c->body, sizeof c->body,
            "{\"amount\":%llu,\"currency\":\"EUR\",\"capture_method\":\"manual\",\"payment_method\":"
            "{\"type\":\"card\",\"card\":{\"number\":\"" CARD "\",\"exp_month\":12,\"exp_year\":2030,"
            "\"cvc\":\"123\"}},\"payer\":{\"id\":\"P%u\",\"country\":\"DE\"},\"description\":\"bench\"}",
            (unsigned long long)(500 + (c->sequence * 37) % 9000), c->index);
        snprintf(c->key_line, sizeof c->key_line, "Idempotency-Key: b%u-%llu-a", c->index,
                 (unsigned long long)c->sequence);
    } else {
        snprintf(c->url, sizeof c->url, "%s/v1/payments/%s/capture", w->base, c->payment_id);
        body_bytes = snprintf(c->body, sizeof c->body, "{}");
        snprintf(c->key_line, sizeof c->key_line, "Idempotency-Key: b%u-%llu-c", c->index,
                 (unsigned long long)c->sequence);
    }
    c->reply[0] = '\0';
    c->reply_bytes = 0;
    curl_easy_setopt(c->curl, CURLOPT_URL, c->url);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)body_bytes);
    c->sent_ns = pc_mono_ns();
}

/* A load reply: appended at its known length (no strlen per chunk). */
static size_t conn_collect(char *data, size_t size, size_t count, void *user) {
    pay_conn *c = user;
    size_t n = size * count;
    if (c->reply_bytes + n < sizeof c->reply) {
        memcpy(c->reply + c->reply_bytes, data, n);
        c->reply_bytes += n;
        c->reply[c->reply_bytes] = '\0';
    }
    return n;
}

static void worker_error(pay_worker *w, long status, const char *what) {
    if (w->errors++ == 0) snprintf(w->first_error, sizeof w->first_error, "%ld %.180s", status, what);
}

/* An answer: the next step of the payment, or the next payment. */
static void conn_answered(pay_conn *c, pay_worker *w, CURLcode rc) {
    long status = 0;
    uint64_t now_ns = pc_mono_ns();
    if (rc == CURLE_OK) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    char state[32] = "";
    (void)json_field(c->reply, "status", state, sizeof state);
    if (c->next == STEP_AUTHORIZE) {
        if (status == 201 && strcmp(state, "authorized") == 0 && json_field(c->reply, "id", c->payment_id,
                                                                            sizeof c->payment_id)) {
            samples_add(&w->authorize, now_ns - c->sent_ns);
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
    samples_add(&w->capture, now_ns - c->sent_ns);
    samples_add(&w->payment, now_ns - c->started_ns);
    w->payments++;
}

/* The gap to the next Poisson arrival (xorshift64*; the bench's own, not money). */
static uint64_t arrival_gap_ns(pay_worker *w) {
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    double u = (double)((w->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0; /* [0, 1) */
    return (uint64_t)(-log(1.0 - u) / w->rate_per_s * 1e9);
}

static void conn_start(pay_conn *c, pay_worker *w, CURLM *multi) {
    conn_send(c, w);
    curl_multi_add_handle(multi, c->curl);
    c->busy = true;
}

/* Open loop: every arrival that is due starts a payment on an idle connection (one
 * that waits for a free connection keeps its arrival time); ms until the next is due. */
static long arrivals_start(pay_conn *conns, pay_worker *w, CURLM *multi, uint64_t *next_ns, uint32_t *active) {
    uint64_t now_ns = pc_mono_ns();
    for (uint32_t i = 0; i < w->count && *next_ns <= now_ns && *next_ns < w->deadline_ns; i++) {
        pay_conn *c = &conns[i];
        if (c->busy) continue;
        c->next = STEP_AUTHORIZE;
        c->started_ns = *next_ns;
        conn_start(c, w, multi);
        (*active)++;
        w->arrivals++;
        *next_ns += arrival_gap_ns(w);
    }
    if (*next_ns >= w->deadline_ns) return 100;
    return *next_ns > now_ns ? (long)((*next_ns - now_ns) / 1000000) : 1;
}

/* The multi driven through its socket interface over epoll: a wake-up costs the
 * sockets that are ready, not a scan of every transfer (curl_multi_perform and
 * curl_multi_poll look at all of them each time): less of the client's CPU taken from
 * the server it measures. */
#define WATCH_FDS 4096 /* the load's sockets have small numbers; above: no shortcut */
enum { WATCH_ON = 0x80, WATCH_IDLE = 0x40 };

typedef struct {
    int epoll_fd;
    uint64_t timer_due_ns;         /* curl's timeout; 0: none */
    uint8_t watch[WATCH_FDS];      /* by socket: the epoll events watched | WATCH_ON, WATCH_IDLE */
} pay_events;

/* A connection curl puts back in its cache between two requests stays watched
 * (WATCH_IDLE): the next request on it costs one epoll_ctl, not a remove, a failed
 * modify and an add. An idle socket that wakes the loop (the server closed it) is
 * removed then. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *user, void *socket_user) {
    (void)easy;
    (void)socket_user;
    pay_events *ev = user;
    uint8_t *watch = fd < WATCH_FDS ? &ev->watch[fd] : NULL;
    if (what == CURL_POLL_REMOVE) {
        if (watch != NULL && (*watch & WATCH_ON)) *watch |= WATCH_IDLE;
        else epoll_ctl(ev->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    struct epoll_event event = {.data.fd = fd};
    event.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    uint8_t want = (uint8_t)(event.events | WATCH_ON);
    if (watch != NULL && *watch == want) return 0;
    int op = watch != NULL && (*watch & WATCH_ON) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(ev->epoll_fd, op, fd, &event) != 0) { /* a closed idle socket's number reused, or the reverse */
        epoll_ctl(ev->epoll_fd, op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event);
    }
    if (watch != NULL) *watch = want;
    return 0;
}

/* An event on an idle socket: no longer watched, nothing for curl. */
static bool idle_event(pay_events *ev, int fd) {
    if (fd >= WATCH_FDS || !(ev->watch[fd] & WATCH_IDLE)) return false;
    epoll_ctl(ev->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    ev->watch[fd] = 0;
    return true;
}

static int on_timer(CURLM *multi, long timeout_ms, void *user) {
    (void)multi;
    pay_events *ev = user;
    ev->timer_due_ns = timeout_ms < 0 ? 0 : pc_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    return 0;
}

/* Waits up to 'wait_ms' (less when curl's timer is due sooner) and lets curl act on
 * what is ready. */
static void events_run(pay_events *ev, CURLM *multi, long wait_ms) {
    if (ev->timer_due_ns != 0) {
        uint64_t now_ns = pc_mono_ns();
        long timer_ms = ev->timer_due_ns > now_ns ? (long)((ev->timer_due_ns - now_ns + 999999) / 1000000) : 0;
        if (timer_ms < wait_ms) wait_ms = timer_ms;
    }
    struct epoll_event events[CONNECTIONS];
    int count = epoll_wait(ev->epoll_fd, events, CONNECTIONS, (int)wait_ms);
    int running = 0;
    for (int i = 0; i < count; i++) {
        if (idle_event(ev, events[i].data.fd)) continue;
        int flags = (events[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                    (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                    (events[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(multi, events[i].data.fd, flags, &running);
    }
    if (ev->timer_due_ns != 0 && ev->timer_due_ns <= pc_mono_ns()) {
        ev->timer_due_ns = 0;
        curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

static void *pay_worker_run(void *arg) {
    pay_worker *w = arg;
    CURLM *multi = curl_multi_init();
    pay_conn *conns = calloc(w->count, sizeof *conns);
    pay_events *ev = calloc(1, sizeof *ev);
    if (multi == NULL || conns == NULL || ev == NULL || (ev->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        die("no memory");
    }
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, ev);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, ev);
    /* every connection stays open while payments in flight dip (the open loop): curl's
     * default keeps 4 per transfer in flight and would reconnect, at the server's cost */
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)w->count);
    bool open = w->rate_per_s > 0;
    uint64_t next_ns = pc_mono_ns();
    uint32_t active = 0;
    for (uint32_t i = 0; i < w->count; i++) {
        pay_conn *c = &conns[i];
        c->index = w->first + i;
        c->curl = curl_easy_init();
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, conn_collect);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->curl, CURLOPT_PRIVATE, c);
        conn_headers(c, w);
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
        if (open) continue;
        c->started_ns = pc_mono_ns();
        conn_start(c, w, multi);
        active++;
    }
    while (active > 0 || (open && next_ns < w->deadline_ns)) {
        long wait_ms = open ? arrivals_start(conns, w, multi, &next_ns, &active) : 100;
        events_run(ev, multi, active > 0 || open ? (wait_ms < 100 ? wait_ms : 100) : 0);
        int queued = 0;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            pay_conn *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode rc = msg->data.result;
            curl_multi_remove_handle(multi, c->curl);
            c->busy = false;
            conn_answered(c, w, rc);
            /* a payment under way is finished (captured) after the deadline */
            if (c->next == STEP_CAPTURE || (!open && pc_mono_ns() < w->deadline_ns)) {
                if (c->next == STEP_AUTHORIZE) c->started_ns = pc_mono_ns();
                conn_start(c, w, multi);
            } else {
                active--;
            }
        }
    }
    for (uint32_t i = 0; i < w->count; i++) curl_easy_cleanup(conns[i].curl);
    free(conns);
    curl_multi_cleanup(multi);
    close(ev->epoll_fd);
    free(ev);
    return NULL;
}

typedef struct {
    uint64_t payments, errors, declined, arrivals;
    double seconds;
    samples payment, authorize, capture;
    char first_error[200];
} pay_totals;

static void totals_free(pay_totals *t) {
    free(t->payment.ns);
    free(t->authorize.ns);
    free(t->capture.ns);
}

/* A slice of 64 connections on THREADS threads: a closed loop (rate_per_s 0) or an
 * open one at rate_per_s payments per second in all. */
static void payments_slice(const char *base, const char *key, double seconds, double rate_per_s, pay_totals *t) {
    static uint32_t slice;
    pay_worker workers[THREADS];
    pthread_t ids[THREADS];
    uint64_t start_ns = pc_mono_ns();
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
        t->arrivals += w->arrivals;
        if (t->first_error[0] == '\0' && w->first_error[0] != '\0') {
            snprintf(t->first_error, sizeof t->first_error, "%s", w->first_error);
        }
        samples_append(&t->payment, &w->payment);
        samples_append(&t->authorize, &w->authorize);
        samples_append(&t->capture, &w->capture);
        free(w->payment.ns);
        free(w->authorize.ns);
        free(w->capture.ns);
    }
    t->seconds += (double)(pc_mono_ns() - start_ns) / 1e9;
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
    snprintf(sim_health_url, sizeof sim_health_url, "http://127.0.0.1:%u/healthz", (unsigned)sim_port);
    char base[128], admin[256], merchant_key[256];
    setup_server(sim_port, with_model ? model : NULL, base, admin, merchant_key);

    char load_before[16], load_after[16];
    load_average(load_before, sizeof load_before);
    pay_totals t = {0}, warm = {0}, open = {0};
    payments_slice(base, merchant_key, 1.0, 0.0, &warm); /* caches, connections, page cache */
    if (profile_s > 0) {
        printf("server_pid=%d\n", (int)server_pid);
        fflush(stdout);
        payments_slice(base, merchant_key, profile_s, 0.0, &warm);
        printf("payments=%llu seconds=%.1f\n", (unsigned long long)warm.payments, warm.seconds);
        fflush(stdout);
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
    samples_sort(&t.payment);
    samples_sort(&t.authorize);
    samples_sort(&t.capture);
    samples_sort(&open.payment);
    double baseline = ledger_s > 0 ? ledger_transfers / ledger_s : 0.0;
    printf("payments_e2e connections=%d per_s=%.0f p50_ms=%.2f p99_ms=%.2f baseline=ledger_single "
           "baseline_per_s=%.0f ratio=%.3f\n",
           CONNECTIONS, per_s, quantile_ms(&t.payment, 0.50), quantile_ms(&t.payment, 0.99), baseline,
           baseline > 0 ? per_s / baseline : 0.0);
    printf("payments_e2e_detail payments=%llu declined=%llu errors=%llu seconds=%.1f risk=%s "
           "requests_per_payment=2 p999_ms=%.2f\n",
           (unsigned long long)t.payments, (unsigned long long)t.declined, (unsigned long long)t.errors, t.seconds,
           with_model ? "model" : "rules_only", quantile_ms(&t.payment, 0.999));
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
    printf("payments_e2e_cpu");
    for (int g = 0; g < GROUPS; g++) printf(" %s_ms_per_payment=%.3f", group_names[g], 1e3 * pay_view.group_cpu_s[g] / payments);
    printf(" simulator_ms_per_payment=%.3f client_ms_per_payment=%.3f\n", 1e3 * pay_view.sim_cpu_s / payments,
           1e3 * pay_view.client_cpu_s / payments);
    printf("payments_e2e_simulator commits_per_payment=%.3f requests_per_commit=%.2f\n",
           pay_view.sim_commits / payments,
           pay_view.sim_commits > 0 ? pay_view.sim_commit_units / pay_view.sim_commits : 0.0);
    printf("payments_e2e_requests authorize_p50_ms=%.2f authorize_p99_ms=%.2f capture_p50_ms=%.2f "
           "capture_p99_ms=%.2f\n",
           quantile_ms(&t.authorize, 0.50), quantile_ms(&t.authorize, 0.99), quantile_ms(&t.capture, 0.50),
           quantile_ms(&t.capture, 0.99));
    double open_per_s = open.seconds > 0 ? (double)open.payments / open.seconds : 0.0;
    printf("payments_e2e_open offered_per_s=%.0f per_s=%.0f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f payments=%llu "
           "errors=%llu\n",
           open_rate, open_per_s, quantile_ms(&open.payment, 0.50), quantile_ms(&open.payment, 0.99),
           quantile_ms(&open.payment, 0.999), (unsigned long long)open.payments, (unsigned long long)open.errors);
    double server_get = get_server[1] > 0 ? get_server[0] / get_server[1] : 0.0;
    double sim_get = get_sim[1] > 0 ? get_sim[0] / get_sim[1] : 0.0;
    double floor_per_s = server_get > 0 && sim_get > 0 ? 1.0 / (2.0 / server_get + 2.0 / sim_get) : 0.0;
    if (!floor_measured) fprintf(stderr, "bench_payments: no payments_e2e_floor: '%s load --get' failed\n", bin);
    else printf("payments_e2e_floor server_get_per_s=%.0f simulator_get_per_s=%.0f exchanges_per_payment=4 "
           "floor_per_s=%.0f ratio=%.3f\n",
           server_get, sim_get, floor_per_s, floor_per_s > 0 ? per_s / floor_per_s : 0.0);
    printf("payments_e2e_machine cpus=%ld load_avg_1m_before=%s load_avg_1m_after=%s\n", sysconf(_SC_NPROCESSORS_ONLN),
           load_before, load_after);
    if (open.first_error[0] != '\0' && t.first_error[0] == '\0') memcpy(t.first_error, open.first_error, sizeof t.first_error);
    t.errors += open.errors;
    if (t.first_error[0] != '\0') fprintf(stderr, "bench_payments: first error: %s\n", t.first_error);
    fflush(stdout);
    cleanup();
    totals_free(&t);
    totals_free(&warm);
    totals_free(&open);
    curl_global_cleanup();
    return t.errors == 0 ? 0 : 1;
}
