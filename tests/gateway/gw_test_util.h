/* tests/gateway/gw_test_util.h: what the gateway tests share: real simulator processes
 * (`paycore simulator <kind>`) on loopback ports, their SQLite records (the outside
 * truth), channel config files, and requests. Not a test itself. The simulator binary
 * is PAYCORE_SIM_BIN, else PAYCORE_BIN (CTest sets it); without one the test fails
 * and says how to provide it. */
#ifndef PAYCORE_GW_TEST_UTIL_H
#define PAYCORE_GW_TEST_UTIL_H

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/gateway.h"
#include "obs/obs.h"
#include "test.h"

/* Generous: the machine is shared and sanitized builds are slow. */
#define GWT_START_TIMEOUT_MS 60000

typedef struct {
    pid_t pid;
    int stdout_fd;
    uint16_t port;
    char kind[8];
    char url[64];
    char db[512];
    char log[512];
} gwt_sim_t;

static char gwt_dir[256];

static inline void gwt_setup(const char *name) {
    snprintf(gwt_dir, sizeof gwt_dir, "/tmp/paycore-%s-XXXXXX", name);
    ASSERT_TRUE(mkdtemp(gwt_dir) != NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static inline void gwt_teardown(void) {
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", gwt_dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", gwt_dir);
    curl_global_cleanup();
}

static inline void gwt_path(char *out, size_t out_bytes, const char *name) {
    snprintf(out, out_bytes, "%s/%s", gwt_dir, name);
}

static inline void gwt_write(const char *path, const char *format, ...) __attribute__((format(printf, 2, 3)));
static inline void gwt_write(const char *path, const char *format, ...) {
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    va_list ap;
    va_start(ap, format);
    vfprintf(f, format, ap);
    va_end(ap);
    ASSERT_EQ(fclose(f), 0);
}

static inline uint64_t gwt_ms(void) { return pc_mono_ns() / 1000000u; }

static inline const char *gwt_sim_bin(void) {
    const char *bin = getenv("PAYCORE_SIM_BIN");
    if (bin == NULL) bin = getenv("PAYCORE_BIN");
    if (bin == NULL || access(bin, X_OK) != 0) {
        TEST_FAIL("no simulator binary: run through ctest (it sets PAYCORE_BIN) or set "
                  "PAYCORE_SIM_BIN=/path/to/paycore (needs `paycore simulator`)");
    }
    return bin;
}

/* Reads the child's "listening=HOST:PORT" line. */
static inline uint16_t gwt_read_port(int fd, const char *log) {
    char line[256];
    size_t used = 0;
    uint64_t deadline = gwt_ms() + GWT_START_TIMEOUT_MS;
    while (gwt_ms() < deadline && used + 1 < sizeof line) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        ssize_t n = read(fd, line + used, 1);
        if (n <= 0) break;
        used++;
        line[used] = '\0';
        char *colon = strrchr(line, ':');
        if (line[used - 1] == '\n' && strncmp(line, "listening=", 10) == 0 && colon != NULL) {
            return (uint16_t)atoi(colon + 1);
        }
        if (line[used - 1] == '\n') used = 0;
    }
    TEST_FAIL("simulator did not start (see %s)", log);
}

/* Starts `paycore simulator <kind>` with an optional config and data (JSON text). */
static inline void gwt_sim_start(gwt_sim_t *sim, const char *kind, const char *name,
                                 const char *config_json, const char *data_json) {
    memset(sim, 0, sizeof *sim);
    snprintf(sim->kind, sizeof sim->kind, "%s", kind);
    char config[512] = "", data[512] = "";
    snprintf(sim->db, sizeof sim->db, "%s/%s.db", gwt_dir, name);
    snprintf(sim->log, sizeof sim->log, "%s/%s.log", gwt_dir, name);
    if (config_json) { snprintf(config, sizeof config, "%s/%s.config.json", gwt_dir, name); gwt_write(config, "%s", config_json); }
    if (data_json) { snprintf(data, sizeof data, "%s/%s.data.json", gwt_dir, name); gwt_write(data, "%s", data_json); }
    /* The transport is the simulator's default (paycore's HTTP engine), or libmicrohttpd
     * when PAYCORE_SIM_HTTP_MHD=1 is in the environment (the ctest entries with .mhd). */
    const char *argv[16] = {"paycore", "simulator", kind, "--listen", "127.0.0.1:0", "--db", sim->db};
    int argc = 7;
    if (config_json) { argv[argc++] = "--config"; argv[argc++] = config; }
    if (data_json) { argv[argc++] = "--data"; argv[argc++] = data; }
    if (strcmp(kind, "bank") == 0) { argv[argc++] = "--callback-secret"; argv[argc++] = "test-secret"; }
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    const char *bin = gwt_sim_bin();
    sim->pid = fork();
    ASSERT_TRUE(sim->pid >= 0);
    if (sim->pid == 0) {
        int log_fd = open(sim->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out[1], 1);
        if (log_fd >= 0) dup2(log_fd, 2);
        close(out[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    sim->stdout_fd = out[0];
    sim->port = gwt_read_port(out[0], sim->log);
    snprintf(sim->url, sizeof sim->url, "http://127.0.0.1:%u", (unsigned)sim->port);
}

static inline void gwt_sim_stop(gwt_sim_t *sim) {
    if (sim->pid <= 0) return;
    kill(sim->pid, SIGTERM);
    int status = 0;
    waitpid(sim->pid, &status, 0);
    close(sim->stdout_fd);
    sim->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        TEST_FAIL("simulator %s did not stop cleanly (status %d, see %s)", sim->kind, status, sim->log);
    }
}

/* ---- HTTP to a simulator's admin routes (tests only: blocking libcurl) ---- */

typedef struct {
    char *text;
    size_t bytes;
} gwt_buf_t;

static inline size_t gwt_on_body(char *data, size_t size, size_t count, void *user) {
    gwt_buf_t *b = user;
    char *grown = realloc(b->text, b->bytes + size * count + 1);
    if (grown == NULL) return 0;
    b->text = grown;
    memcpy(b->text + b->bytes, data, size * count);
    b->bytes += size * count;
    b->text[b->bytes] = '\0';
    return size * count;
}

/* 'body' NULL: GET. Returns the HTTP status; the answer (malloc'ed) in *answer if given. */
static inline long gwt_http(const char *method, const char *url, const char *body, char **answer) {
    CURL *easy = curl_easy_init();
    ASSERT_TRUE(easy != NULL);
    gwt_buf_t b = {NULL, 0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, gwt_on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
    if (body) curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    CURLcode code = curl_easy_perform(easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(easy);
    if (code != CURLE_OK) TEST_FAIL("%s %s: %s", method, url, curl_easy_strerror(code));
    if (answer) *answer = b.text ? b.text : pc_strdup("");
    else free(b.text);
    return status;
}

/* Replaces a simulator's faults (POST /v1/admin/faults). */
static inline void gwt_faults(const gwt_sim_t *sim, const char *faults_json) {
    char url[128], *answer = NULL;
    snprintf(url, sizeof url, "%s/v1/admin/faults", sim->url);
    long status = gwt_http("POST", url, faults_json, &answer);
    if (status != 200) TEST_FAIL("faults %s on %s: HTTP %ld %s", faults_json, sim->kind, status, answer);
    free(answer);
}

/* ---- the simulator's record ---- */

/* One integer from a query with up to one text parameter. */
static inline int64_t gwt_sim_count(const gwt_sim_t *sim, const char *sql, const char *param) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(sim->db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        TEST_FAIL("open %s: %s", sim->db, sqlite3_errmsg(db));
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    if (param) sqlite3_bind_text(stmt, 1, param, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    int64_t value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
}

/* Approved money movements the simulator recorded for a payment reference. */
static inline int64_t gwt_approved(const gwt_sim_t *sim, const char *reference) {
    return gwt_sim_count(sim, "SELECT count(*) FROM records WHERE merchant_ref = ?1 AND status = 'approved'",
                         reference);
}

static inline int64_t gwt_records(const gwt_sim_t *sim, const char *reference) {
    return gwt_sim_count(sim, "SELECT count(*) FROM records WHERE merchant_ref = ?1", reference);
}

/* ---- the gateway ---- */

static inline gw_t *gwt_gateway(const char *config_path) {
    gw_t *gw = NULL;
    gw_config_error_t error;
    gw_options_t options = {config_path, 1};
    pc_status status = gw_start(&gw, &options, &error);
    if (status != PC_OK) TEST_FAIL("gw_start: %s (line %u: %s)", pc_status_code(status), error.line, error.message);
    return gw;
}

static inline gw_request_t gwt_card(const char *reference, int64_t amount_minor, const char *number) {
    gw_request_t r;
    memset(&r, 0, sizeof r);
    r.op = GW_OP_AUTHORIZE;
    snprintf(r.reference, sizeof r.reference, "%s", reference);
    snprintf(r.method, sizeof r.method, "card");
    r.amount_minor = amount_minor;
    snprintf(r.currency, sizeof r.currency, "EUR");
    snprintf(r.card.number, sizeof r.card.number, "%s", number);
    r.card.exp_month = 12;
    r.card.exp_year = 2030;
    snprintf(r.card.cvc, sizeof r.card.cvc, "123");
    return r;
}

static inline gw_result_t gwt_call(gw_t *gw, const gw_request_t *request) {
    gw_result_t result;
    pc_status status = gw_call_wait(gw, request, NULL, NULL, &result);
    if (status != PC_OK) TEST_FAIL("gw_call_wait: %s", pc_status_code(status));
    return result;
}

static inline void gwt_print(const gw_result_t *r) {
    json_t *j = gw_result_json(r);
    char *text = json_dumps(j, JSON_COMPACT);
    fprintf(stderr, "%s\n", text);
    free(text);
    json_decref(j);
}

/* True when the file holds a line containing every one of the (NULL-ended) needles. */
static inline bool gwt_log_has(const char *path, ...) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        va_list ap;
        va_start(ap, path);
        found = true;
        for (const char *needle = va_arg(ap, const char *); needle; needle = va_arg(ap, const char *)) {
            if (strstr(line, needle) == NULL) found = false;
        }
        va_end(ap);
    }
    fclose(f);
    return found;
}

/* ---- many operations at once through gw_submit ---- */

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    uint32_t running;
    uint32_t finished;
    gw_result_t *results;
} gwt_batch_t;

typedef struct {
    gwt_batch_t *batch;
    uint32_t index;
} gwt_slot_t;

static inline void gwt_batch_done(void *ctx, const gw_result_t *result) {
    gwt_slot_t *slot = ctx;
    gwt_batch_t *b = slot->batch;
    pthread_mutex_lock(&b->mutex);
    b->results[slot->index] = *result;
    b->running--;
    b->finished++;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mutex);
}

/* Runs 'count' requests with at most 'in_flight' at once; results in request order. */
static inline void gwt_run_many(gw_t *gw, const gw_request_t *requests, uint32_t count,
                                uint32_t in_flight, gw_result_t *results) {
    gwt_batch_t b = {.results = results};
    pthread_mutex_init(&b.mutex, NULL);
    pthread_cond_init(&b.cond, NULL);
    gwt_slot_t *slots = calloc(count, sizeof *slots);
    ASSERT_TRUE(slots != NULL);
    for (uint32_t i = 0; i < count; i++) {
        pthread_mutex_lock(&b.mutex);
        while (b.running >= in_flight) pthread_cond_wait(&b.cond, &b.mutex);
        b.running++;
        pthread_mutex_unlock(&b.mutex);
        slots[i] = (gwt_slot_t){&b, i};
        gw_callbacks_t callbacks = {.done = gwt_batch_done, .ctx = &slots[i]};
        pc_status status = gw_submit(gw, &requests[i], &callbacks);
        if (status != PC_OK) TEST_FAIL("gw_submit: %s", pc_status_code(status));
    }
    pthread_mutex_lock(&b.mutex);
    while (b.finished < count) pthread_cond_wait(&b.cond, &b.mutex);
    pthread_mutex_unlock(&b.mutex);
    free(slots);
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.mutex);
}

/* The state of one channel's breaker as GET /v1/channels shows it. */
static inline const char *gwt_breaker(gw_t *gw, const char *channel, char *out, size_t out_bytes) {
    json_t *all = gw_channels_json(gw);
    const json_t *list = json_object_get(all, "channels");
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *c = json_array_get(list, i);
        if (strcmp(json_string_value(json_object_get(c, "name")), channel) == 0) {
            snprintf(out, out_bytes, "%s", json_string_value(json_object_get(json_object_get(c, "breaker"), "state")));
        }
    }
    json_decref(all);
    return out;
}

/* Polls (never a fixed sleep) until the breaker is in 'state'; fails after a minute. */
static inline void gwt_wait_breaker(gw_t *gw, const char *channel, const char *state) {
    char now[32];
    uint64_t deadline = gwt_ms() + GWT_START_TIMEOUT_MS;
    while (strcmp(gwt_breaker(gw, channel, now, sizeof now), state) != 0) {
        if (gwt_ms() > deadline) TEST_FAIL("breaker of %s stays %s, want %s", channel, now, state);
        usleep(5000);
    }
}

#endif
