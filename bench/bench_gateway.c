/* bench/bench_gateway.c: the gateway's own cost.
 *   gateway_route: one routing decision in process (eight channels, success-rate
 *     strategy over filled windows, the most work a decision does), p50/p99;
 *   gateway_authorize: authorizations per second through the gateway (route, build,
 *     libcurl multi, decode) to a zero-latency card simulator at 64 in flight, against
 *     direct libcurl multi calls to the same simulator in the same run; ratio last;
 *   gateway_authorize_cpu: this process's CPU per call on each path (the simulator,
 *     a separate process, bounds both rates; the CPU shows the gateway's own cost).
 *   simulator_authorize_cpu: the simulator's CPU per authorization (recorded, the
 *     direct path's calls) against its CPU per GET /healthz (HTTP alone, no record)
 *     at the same concurrency: how much the record and the card logic add to HTTP.
 * The simulator is `paycore simulator card` beside this binary (or PAYCORE_SIM_BIN).
 *   --quick  about 12 s     --full  about 40 s (alternating slices of each path)
 *   --sim-http-mhd  the simulator on libmicrohttpd (--http-mhd); the default is the
 *     simulator's own (paycore's HTTP engine), and --sim-http-engine is still accepted */
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/gateway.h"
#include "gateway/gw_internal.h"
#include "obs/obs.h"

#define IN_FLIGHT 64
#define CARD "4000000000000002" /* approved, no balance or limit checks */

static char dir[256];

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what) {
    fprintf(stderr, "bench_gateway: %s\n", what);
    exit(1);
}

static gw_t *gateway_start(const char *config_text) {
    char path[512];
    snprintf(path, sizeof path, "%s/channels-%d.json", dir, (int)pc_mono_ns() % 100000);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(config_text, f) < 0 || fclose(f) != 0) die("cannot write the config");
    gw_t *gw = NULL;
    gw_config_error_t error;
    gw_options_t options = {path, 1};
    if (gw_start(&gw, &options, &error) != PC_OK) {
        fprintf(stderr, "line %u: %s\n", error.line, error.message);
        die("gateway did not start");
    }
    return gw;
}

/* ---------------------------------------------------------------- routing */

static void fill_windows(gw_t *gw) {
    gw_config_t *cfg = gw->config;
    for (uint32_t c = 0; c < cfg->channel_count; c++) {
        gw_channel_cfg_t *ch = &cfg->channels[c];
        for (uint32_t i = 0; i < cfg->sr.window_calls; i++) {
            gw_answer_t a = {.outcome = (i % (c + 3)) ? GW_OUTCOME_APPROVED : GW_OUTCOME_RETRYABLE};
            snprintf(a.code, sizeof a.code, "%s", a.outcome == GW_OUTCOME_APPROVED ? "00" : "96");
            gw_chstate_begin(ch->state);
            gw_chstate_record(ch->state, cfg, ch, GW_OP_AUTHORIZE, false, &a, 1000, gw_now_ms());
        }
    }
}

static void bench_route(bool full) {
    char config[4096];
    size_t used = (size_t)snprintf(config, sizeof config, "{\"channels\":[");
    for (int i = 0; i < 8; i++) {
        used += (size_t)snprintf(config + used, sizeof config - used,
                                 "%s{\"name\":\"card_%d\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\","
                                 "\"eligibility\":{\"currencies\":[\"EUR\",\"USD\",\"GBP\"],\"countries\":[\"DE\",\"FR\",\"GB\"],"
                                 "\"amount_max_minor\":10000000},\"breaker\":{\"failures_consecutive\":0,\"error_rate_percent\":0}}",
                                 i ? "," : "", i);
    }
    snprintf(config + used, sizeof config - used,
             "],\"routing\":{\"strategy\":\"success_rate\",\"fallback\":[\"card_7\"],"
             "\"success_rate\":{\"window_calls\":200,\"calls_min\":10}}}");
    gw_t *gw = gateway_start(config);
    fill_windows(gw);
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_AUTHORIZE;
    snprintf(req.reference, sizeof req.reference, "bench");
    snprintf(req.method, sizeof req.method, "card");
    snprintf(req.currency, sizeof req.currency, "EUR");
    snprintf(req.country, sizeof req.country, "FR");
    snprintf(req.card.number, sizeof req.card.number, CARD);
    req.card.exp_month = 12;
    req.card.exp_year = 2030;
    req.amount_minor = 1999;
    size_t count = full ? 1000000 : 200000;
    uint64_t *ns = malloc(count * sizeof *ns);
    if (ns == NULL) die("out of memory");
    gw_decision_t d;
    for (size_t i = 0; i < count; i++) {
        uint64_t start = pc_mono_ns();
        if (gw_route(gw, &req, &d) != PC_OK) die("no route");
        ns[i] = pc_mono_ns() - start;
    }
    qsort(ns, count, sizeof *ns, cmp_u64);
    printf("gateway_route p50_us=%.2f p99_us=%.2f\n", ns[count / 2] / 1000.0, ns[count * 99 / 100] / 1000.0);
    fflush(stdout);
    free(ns);
    gw_stop(gw);
}

/* ---------------------------------------------------------------- the simulator */

static pid_t sim_pid;
static bool sim_http_mhd; /* --sim-http-mhd */

static uint16_t sim_start(const char *bin) {
    char db[512];
    snprintf(db, sizeof db, "%s/card.db", dir);
    int out[2];
    if (pipe(out) != 0) die("pipe");
    sim_pid = fork();
    if (sim_pid < 0) die("fork");
    if (sim_pid == 0) {
        char log[512];
        snprintf(log, sizeof log, "%s/card.log", dir);
        int log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (log_fd >= 0) dup2(log_fd, 2);
        dup2(out[1], 1);
        close(out[0]);
        execl(bin, "paycore", "simulator", "card", "--listen", "127.0.0.1:0", "--db", db, "--log-level",
              "warn", sim_http_mhd ? "--http-mhd" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256];
    uint16_t port = 0;
    while (port == 0 && f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *colon = strrchr(line, ':');
        if (strncmp(line, "listening=", 10) == 0 && colon != NULL) port = (uint16_t)atoi(colon + 1);
    }
    if (port == 0) die("the card simulator did not start (is `paycore simulator` in this build?)");
    return port;
}

static void sim_stop(void) {
    if (sim_pid <= 0) return;
    kill(sim_pid, SIGTERM);
    waitpid(sim_pid, NULL, 0);
}

/* ---------------------------------------------------------------- one slice */

/* What one timed slice of either path did: calls approved, wall and CPU time of this
 * process (the simulator is another process: only the client side's cost counts). */
typedef struct {
    uint64_t calls;
    double wall_s;
    double cpu_s;
    double sim_cpu_s;             /* the simulator process's CPU in the slice */
} slice_t;

/* utime + stime of the simulator process, from /proc. */
static double sim_cpu_now_s(void) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)sim_pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    const char *after = strrchr(text, ')'); /* the command name may hold spaces */
    unsigned long long utime = 0, stime = 0;
    if (after == NULL || sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                                &stime) != 2) {
        return 0.0;
    }
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_now_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static void slice_add(slice_t *total, slice_t s) {
    total->calls += s.calls;
    total->wall_s += s.wall_s;
    total->cpu_s += s.cpu_s;
    total->sim_cpu_s += s.sim_cpu_s;
}

/* ---------------------------------------------------------------- direct baseline */

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    char body[512];
    long http_status;
} direct_slot;

static size_t discard(char *data, size_t size, size_t count, void *user) {
    (void)data;
    (void)user;
    return size * count;
}

static uint64_t direct_seq;

static void direct_prepare(direct_slot *s, const char *url) {
    if (strstr(url, "/healthz") != NULL) { /* the HTTP floor: a read, nothing recorded */
        curl_easy_reset(s->easy);
        curl_easy_setopt(s->easy, CURLOPT_URL, url);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        return;
    }
    char key[96];
    snprintf(key, sizeof key, "Idempotency-Key: direct-%llu-%llu", (unsigned long long)getpid(),
             (unsigned long long)++direct_seq);
    curl_slist_free_all(s->headers);
    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, "Expect:");
    s->headers = curl_slist_append(s->headers, key);
    snprintf(s->body, sizeof s->body,
             "{\"amount\":1999,\"currency\":\"EUR\",\"card\":{\"number\":\"%s\",\"exp_month\":12,"
             "\"exp_year\":2030,\"cvc\":\"123\"},\"merchant_ref\":\"direct-%llu\",\"capture\":false}",
             CARD, (unsigned long long)direct_seq);
    curl_easy_reset(s->easy);
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
}

static slice_t bench_direct(const char *url, double seconds) {
    double cpu_start_s = cpu_now_s(), sim_start_s = sim_cpu_now_s();
    CURLM *multi = curl_multi_init();
    direct_slot slots[IN_FLIGHT];
    memset(slots, 0, sizeof slots);
    for (int i = 0; i < IN_FLIGHT; i++) {
        slots[i].easy = curl_easy_init();
        direct_prepare(&slots[i], url);
        curl_multi_add_handle(multi, slots[i].easy);
    }
    uint64_t done = 0, failed = 0, start = pc_mono_ns(), stop = start + (uint64_t)(seconds * 1e9);
    int running = IN_FLIGHT;
    bool stopping = false;
    while (running > 0) {
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            direct_slot *s = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long status = 0;
            curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result == CURLE_OK && status == 200) done++;
            else failed++;
            curl_multi_remove_handle(multi, s->easy);
            if (!stopping) {
                direct_prepare(s, url);
                curl_multi_add_handle(multi, s->easy);
                running++;
            }
        }
        if (!stopping && pc_mono_ns() >= stop) stopping = true;
        if (running > 0) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double elapsed = (pc_mono_ns() - start) / 1e9;
    for (int i = 0; i < IN_FLIGHT; i++) {
        curl_easy_cleanup(slots[i].easy);
        curl_slist_free_all(slots[i].headers);
    }
    curl_multi_cleanup(multi);
    if (failed > 0) fprintf(stderr, "bench_gateway: %llu direct calls failed\n", (unsigned long long)failed);
    return (slice_t){done, elapsed, cpu_now_s() - cpu_start_s, sim_cpu_now_s() - sim_start_s};
}

/* ---------------------------------------------------------------- through the gateway */

typedef struct {
    gw_t *gw;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    uint64_t stop_ns;
    uint64_t done;
    uint64_t failed;
    uint32_t running;
    uint64_t seq;
} gw_run;

static void gw_next(gw_run *run);

static void gw_done(void *ctx, const gw_result_t *result) {
    gw_run *run = ctx;
    pthread_mutex_lock(&run->mutex);
    if (result->outcome == GW_OUTCOME_APPROVED) run->done++;
    else run->failed++;
    bool more = pc_mono_ns() < run->stop_ns;
    if (!more) {
        run->running--;
        pthread_cond_signal(&run->cond);
    }
    pthread_mutex_unlock(&run->mutex);
    if (more) gw_next(run);
}

static void gw_next(gw_run *run) {
    gw_request_t req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_AUTHORIZE;
    pthread_mutex_lock(&run->mutex);
    snprintf(req.reference, sizeof req.reference, "gw-%llu", (unsigned long long)++run->seq);
    pthread_mutex_unlock(&run->mutex);
    snprintf(req.method, sizeof req.method, "card");
    snprintf(req.currency, sizeof req.currency, "EUR");
    snprintf(req.card.number, sizeof req.card.number, CARD);
    req.card.exp_month = 12;
    req.card.exp_year = 2030;
    snprintf(req.card.cvc, sizeof req.card.cvc, "123");
    req.amount_minor = 1999;
    gw_callbacks_t callbacks = {.done = gw_done, .ctx = run};
    if (gw_submit(run->gw, &req, &callbacks) != PC_OK) die("gw_submit");
}

static slice_t bench_through_gateway(gw_t *gw, double seconds) {
    double cpu_start_s = cpu_now_s(), sim_start_s = sim_cpu_now_s();
    gw_run run = {.gw = gw, .running = IN_FLIGHT};
    pthread_mutex_init(&run.mutex, NULL);
    pthread_cond_init(&run.cond, NULL);
    uint64_t start = pc_mono_ns();
    run.stop_ns = start + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < IN_FLIGHT; i++) gw_next(&run);
    pthread_mutex_lock(&run.mutex);
    while (run.running > 0) pthread_cond_wait(&run.cond, &run.mutex);
    pthread_mutex_unlock(&run.mutex);
    double elapsed = (pc_mono_ns() - start) / 1e9;
    if (run.failed > 0) fprintf(stderr, "bench_gateway: %llu gateway calls failed\n", (unsigned long long)run.failed);
    pthread_mutex_destroy(&run.mutex);
    pthread_cond_destroy(&run.cond);
    return (slice_t){run.done, elapsed, cpu_now_s() - cpu_start_s, sim_cpu_now_s() - sim_start_s};
}

static const char *paycore_bin(const char *argv0, char *buf, size_t bytes) {
    const char *bin = getenv("PAYCORE_SIM_BIN");
    if (bin != NULL) return bin;
    snprintf(buf, bytes, "%s", argv0);
    char *slash = strrchr(buf, '/');
    snprintf(slash ? slash + 1 : buf, bytes - (size_t)(slash ? slash + 1 - buf : 0), "paycore");
    return buf;
}

static void bench_authorize(const char *bin, bool full) {
    uint16_t port = sim_start(bin);
    char url[128], healthz_url[128], config[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/authorizations", (unsigned)port);
    snprintf(healthz_url, sizeof healthz_url, "http://127.0.0.1:%u/healthz", (unsigned)port);
    snprintf(config, sizeof config,
             "{\"channels\":[{\"name\":\"card\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:%u\"}]}",
             (unsigned)port);
    gw_t *gw = gateway_start(config);
    /* Short slices, alternating: on a shared machine the load drifts within seconds,
     * and each path must see the same drift. Rates are total calls over total time. */
    int rounds = full ? 16 : 10;
    double slice_s = full ? 1.0 : 0.5;
    (void)bench_direct(url, 0.5); /* warm both paths */
    (void)bench_through_gateway(gw, 0.5);
    slice_t direct = {0}, through = {0}, healthz = {0};
    for (int round = 0; round < rounds; round++) {
        slice_add(&direct, bench_direct(url, slice_s));
        slice_add(&through, bench_through_gateway(gw, slice_s));
        slice_add(&healthz, bench_direct(healthz_url, slice_s / 2));
    }
    double direct_per_s = direct.calls / direct.wall_s, through_per_s = through.calls / through.wall_s;
    printf("gateway_authorize in_flight=%d per_s=%.0f baseline=direct baseline_per_s=%.0f ratio=%.2f\n",
           IN_FLIGHT, through_per_s, direct_per_s, direct_per_s > 0 ? through_per_s / direct_per_s : 0.0);
    /* The simulator bounds both rates alike; what the gateway itself costs shows in
     * this process's CPU per call: ratio = the gateway's over bare libcurl's. */
    double direct_cpu_us = direct.calls ? direct.cpu_s * 1e6 / direct.calls : 0;
    double through_cpu_us = through.calls ? through.cpu_s * 1e6 / through.calls : 0;
    printf("gateway_authorize_cpu in_flight=%d cpu_us_per_call=%.1f baseline=direct baseline_cpu_us_per_call=%.1f "
           "ratio=%.2f\n",
           IN_FLIGHT, through_cpu_us, direct_cpu_us, direct_cpu_us > 0 ? through_cpu_us / direct_cpu_us : 0.0);
    double sim_us = direct.calls + through.calls ? (direct.sim_cpu_s + through.sim_cpu_s) * 1e6 /
                                                       (double)(direct.calls + through.calls) : 0;
    double floor_us = healthz.calls ? healthz.sim_cpu_s * 1e6 / healthz.calls : 0;
    printf("simulator_authorize_cpu in_flight=%d sim_cpu_us_per_call=%.1f baseline=healthz "
           "baseline_sim_cpu_us_per_call=%.1f ratio=%.2f\n",
           IN_FLIGHT, sim_us, floor_us, floor_us > 0 ? sim_us / floor_us : 0.0);
    fflush(stdout);
    gw_stop(gw);
    sim_stop();
}

int main(int argc, char **argv) {
    bool full = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--full") == 0) full = true;
        else if (strcmp(argv[i], "--sim-http-engine") == 0) sim_http_mhd = false; /* the default */
        else if (strcmp(argv[i], "--sim-http-mhd") == 0) sim_http_mhd = true;
    }
    signal(SIGPIPE, SIG_IGN);
    obs_log_open(NULL, OBS_LEVEL_WARN);
    snprintf(dir, sizeof dir, "%s/paycore-bench-gw-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL) die("mkdtemp");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char bin_buf[1024];
    bench_route(full);
    bench_authorize(paycore_bin(argv[0], bin_buf, sizeof bin_buf), full);
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "bench_gateway: could not remove %s\n", dir);
    return 0;
}
