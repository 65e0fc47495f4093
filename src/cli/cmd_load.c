/* cli/cmd_load.c: `paycore load`, an HTTP load generator against a running server.
 * Creates its own accounts (no balance limits, so every transfer can succeed), then
 * worker threads drive --concurrency keep-alive connections (curl multi) that POST
 * transfers (single, or batches of --batch) until --duration-s or --count.
 *   closed loop (default): each connection sends its next request when the last one
 *     is answered; the offered rate is whatever the server sustains.
 *   open loop (--rate R): requests arrive on a fixed schedule (R per second, evenly
 *     spaced, or --arrivals poisson), whatever the server does; a request waits for a
 *     free connection when all are busy, and its latency counts from its arrival, so a
 *     slow server cannot hide its queue (no coordinated omission).
 * Latencies go into a log-scale histogram (1 % resolution) per thread. Each worker
 * integrates its number of requests in flight over time at every start and answer: the
 * time average must equal throughput x mean time in flight (Little's law) within
 * LOAD_LITTLE_TOLERANCE, a check of the run's own bookkeeping (a request lost, counted
 * twice or left in flight breaks it). A sampler thread also reads the count every
 * LOAD_SAMPLE_NS (mean_in_flight_sampled): an outside view, reported, not judged (on a
 * busy machine its wake-ups are too coarse for short requests). One key=value line:
 *   load mode=http loop=closed concurrency=64 batch=1 ... requests_per_s=... p50_ms=...
 *        offered_per_s=... mean_latency_ms=... mean_in_flight=... little_in_flight=...
 *        little_error=... little_ok=1 late=... */
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_http.h"
#include "core/core.h"
#include "paycore/limits.h"
#include "store/store.h"
#include "store/store_shard.h"
#include "writer/writer.h"

#define HISTOGRAM_SLOTS 2400      /* 1.01^2400 us is far beyond any timeout */
#define BODY_BYTES_PER_TRANSFER 192
#define LOAD_SAMPLE_NS 250000         /* in-flight sampling period: 4000 samples a second */
#define LOAD_LITTLE_TOLERANCE 0.05    /* |L - X*W| / X*W: both sides come from the same
                                         events, so only floating-point rounding and a
                                         bookkeeping error can part them */
#define LOAD_LATE_NS 1000000          /* open loop: sent over 1 ms after arrival = late */
#define LOAD_ARRIVAL_STEP_NS 50000    /* open loop: sleep steps just before an arrival */
#define LOAD_REPLY_HEAD_BYTES 320     /* the head of each reply kept: an error's text, a
                                         payment's "status" (after its id, object and
                                         merchant id) */

typedef struct {
    const char *url;
    const char *key;
    const char *merchant;          /* --payments: card sales for this merchant, not transfers */
    const char *get_path;          /* --get: GETs of this path, no body: the HTTP stack's floor */
    char prefix[32];
    uint32_t accounts;
    uint32_t batch;
    uint64_t count_max;            /* requests in total; 0 = until the deadline */
    uint64_t deadline_ns;
    uint64_t start_ns;
    _Atomic uint64_t requests_started;
    writer_t *engine;              /* --engine-db: the same work in-process, no HTTP */
    double rate_per_s;             /* open loop: arrivals per second; 0 = closed loop */
    bool poisson;                  /* open loop: exponential gaps instead of even ones */
    uint32_t threads;
    _Atomic int64_t in_flight;     /* arrived (or sent) and not yet answered */
    /* --shards N --cross-pct P: the credit account is on another shard than the debit
     * account (placement: store_shard_of) with probability P %, else on the same one */
    uint32_t shards;
    uint32_t cross_pct;
    uint32_t *on_shard[SHARD_COUNT_MAX]; /* account numbers by shard */
    uint32_t on_shard_count[SHARD_COUNT_MAX];
} load_plan;

typedef struct {
    load_plan *plan;
    uint32_t index;
    uint32_t conn_first;           /* HTTP: this worker's connections */
    uint32_t conn_count;
    uint64_t requests;
    uint64_t transfers;
    uint64_t errors;
    uint64_t latency_ns_total;     /* from arrival (the schedule) to the answer */
    uint64_t in_flight_ns_total;   /* from counting it in flight to the answer (Little) */
    int64_t flight;                /* this worker's requests in flight now */
    uint64_t flight_changed_ns;    /* when 'flight' last changed */
    double flight_area_ns;         /* the integral of 'flight' over time */
    uint64_t late;                 /* open loop: sent more than LOAD_LATE_NS after arrival */
    uint64_t dropped;              /* open loop: the backlog was full at arrival */
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
    size_t kept = strlen(first), room = LOAD_REPLY_HEAD_BYTES - 1 - kept;
    size_t bytes = size * count < room ? size * count : room;
    memcpy(first + kept, data, bytes);
    first[kept + bytes] = '\0';
    return size * count;
}

static uint64_t next_random(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* --shards: each account number's shard, once. */
static bool plan_shards(load_plan *plan) {
    for (uint32_t s = 0; s < plan->shards; s++) {
        plan->on_shard[s] = calloc(plan->accounts, sizeof *plan->on_shard[s]);
        if (plan->on_shard[s] == NULL) return false;
    }
    for (uint32_t i = 0; i < plan->accounts; i++) {
        char id[PC_ID_SIZE];
        snprintf(id, sizeof id, "%s-a%u", plan->prefix, i);
        uint32_t s = store_shard_of(id, plan->shards);
        plan->on_shard[s][plan->on_shard_count[s]++] = i;
    }
    for (uint32_t s = 0; s < plan->shards; s++) {
        if (plan->on_shard_count[s] < 2) return false; /* too few accounts for the shards */
    }
    return true;
}

/* A debit and a different credit account number. */
static void accounts_pick(const load_plan *plan, uint64_t *random, uint32_t *debit, uint32_t *credit) {
    if (plan->shards > 1) {
        uint32_t ds = (uint32_t)(next_random(random) % plan->shards), cs = ds;
        if (next_random(random) % 100 < plan->cross_pct) cs = (ds + 1 + (uint32_t)(next_random(random) % (plan->shards - 1))) % plan->shards;
        do {
            *debit = plan->on_shard[ds][next_random(random) % plan->on_shard_count[ds]];
            *credit = plan->on_shard[cs][next_random(random) % plan->on_shard_count[cs]];
        } while (*debit == *credit);
        return;
    }
    *debit = (uint32_t)(next_random(random) % plan->accounts);
    *credit = (uint32_t)(next_random(random) % (plan->accounts - 1));
    if (*credit >= *debit) (*credit)++;
}

/* One transfer's JSON at 'out'; returns bytes written. */
static size_t transfer_json(char *out, size_t room, const load_plan *plan, uint32_t worker,
                            uint64_t sequence, uint64_t *random) {
    uint32_t debit, credit;
    accounts_pick(plan, random, &debit, &credit);
    int n = snprintf(out, room,
                     "{\"id\":\"%s-%u-%llu\",\"debit_account_id\":\"%s-a%u\",\"credit_account_id\":"
                     "\"%s-a%u\",\"amount\":%u,\"currency\":\"USD\",\"code\":1}",
                     plan->prefix, worker, (unsigned long long)sequence, plan->prefix, debit,
                     plan->prefix, credit, (unsigned)(1 + next_random(random) % 1000));
    return n > 0 ? (size_t)n : 0;
}

/* One card sale (authorized and captured in one request) by one of 'accounts' payers,
 * on a card the simulator approves without balance or limit checks. */
static size_t payment_json(char *out, size_t room, const load_plan *plan, uint64_t *random) {
    int n = snprintf(out, room,
                     "{\"merchant_id\":\"%s\",\"amount\":%u,\"currency\":\"USD\",\"capture_method\":\"automatic\","
                     "\"payment_method\":{\"type\":\"card\",\"card\":{\"number\":\"4000000000000002\",\"exp_month\":12,"
                     "\"exp_year\":2030,\"cvc\":\"123\"}},\"payer\":{\"id\":\"%s-p%u\",\"country\":\"DE\"}}",
                     plan->merchant, (unsigned)(100 + next_random(random) % 9000), plan->prefix,
                     (unsigned)(next_random(random) % plan->accounts));
    return n > 0 && (size_t)n < room ? (size_t)n : 0;
}

static size_t request_body(char *out, size_t room, const load_plan *plan, uint32_t worker,
                           uint64_t *sequence, uint64_t *random) {
    if (plan->merchant != NULL) return payment_json(out, room, plan, random);
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
    if (plan->get_path != NULL) {
        snprintf(url, sizeof url, "%s%s", plan->url, plan->get_path);
    } else {
        snprintf(url, sizeof url, "%s/v1/%s", plan->url, plan->merchant != NULL ? "payments" : "transfers");
    }
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

/* Set by SIGINT or SIGTERM: the run ends early, as at its deadline, and still reports
 * (an operator's Ctrl-C, or a test that stops a load once it has seen what it needs). */
static volatile sig_atomic_t load_stop_requested;

static void load_stop_on_signal(int signal_number) {
    (void)signal_number;
    load_stop_requested = 1;
}

static void load_stop_signals_install(void) {
    struct sigaction action = {.sa_handler = load_stop_on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
}

static bool worker_continue(load_plan *plan) {
    if (load_stop_requested) return false;
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
    uint64_t start_ns;             /* arrival: the start of its latency */
    uint64_t counted_ns;           /* counted in flight from here (open loop: the moment
                                      the worker took the arrival, at most ~1 ms later) */
    char scratch[LOAD_REPLY_HEAD_BYTES];
} load_conn;

static bool conn_open(load_conn *conn, const load_plan *plan, uint32_t index) {
    conn->index = index;
    conn->random = 0x9e3779b97f4a7c15ull ^ ((uint64_t)index * 7919 + 1);
    conn->room = (size_t)plan->batch * BODY_BYTES_PER_TRANSFER + 64 + PC_ID_SIZE;
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

/* Prepares the next request and hands it to 'multi'. 'arrival_ns': when the request
 * arrived (closed loop: now), the start of its latency. */
static void conn_start(load_conn *conn, const load_plan *plan, CURLM *multi, uint64_t arrival_ns,
                       uint64_t counted_ns) {
    if (plan->get_path == NULL) {
        size_t bytes = request_body(conn->body, conn->room, plan, conn->index, &conn->sequence, &conn->random);
        curl_easy_setopt(conn->curl, CURLOPT_POSTFIELDSIZE, (long)bytes);
        curl_easy_setopt(conn->curl, CURLOPT_POSTFIELDS, conn->body);
    }
    conn->scratch[0] = '\0';
    conn->start_ns = arrival_ns;
    conn->counted_ns = counted_ns;
    curl_multi_add_handle(multi, conn->curl);
}

/* One more (+1) or one fewer (-1) request in flight at 'at_ns' (never before the last
 * change: events of one worker are handled in order). */
static void flight_change(load_worker *w, uint64_t at_ns, int delta) {
    if (w->flight_changed_ns != 0 && at_ns > w->flight_changed_ns) {
        w->flight_area_ns += (double)w->flight * (double)(at_ns - w->flight_changed_ns);
    }
    if (at_ns > w->flight_changed_ns) w->flight_changed_ns = at_ns;
    w->flight += delta;
    atomic_fetch_add_explicit(&w->plan->in_flight, delta, memory_order_relaxed);
}

/* A request answered at 'done_ns': it arrived at 'arrival_ns' (its latency starts there)
 * and was counted in flight from 'counted_ns'. */
static void request_done(load_worker *w, uint64_t done_ns, uint64_t arrival_ns, uint64_t counted_ns) {
    uint64_t latency_ns = done_ns - arrival_ns;
    w->histogram[latency_slot(latency_ns)]++;
    w->latency_ns_total += latency_ns;
    w->in_flight_ns_total += done_ns - counted_ns;
    flight_change(w, done_ns, -1);
    w->requests++;
}

static void conn_finish(load_worker *w, load_conn *conn, CURLcode rc) {
    request_done(w, pc_mono_ns(), conn->start_ns, conn->counted_ns);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(conn->curl, CURLINFO_RESPONSE_CODE, &status);
    /* a sale that answered but was not captured (declined, failed) did other work */
    bool sold = w->plan->merchant == NULL || strstr(conn->scratch, "\"status\":\"captured\"") != NULL;
    if ((status == 200 || status == 201) && sold) {
        w->transfers += w->plan->batch;
    } else if (w->errors++ == 0) {
        snprintf(w->first_error, sizeof w->first_error, "%ld %.120s", status,
                 rc == CURLE_OK ? conn->scratch : curl_easy_strerror(rc));
    }
}

/* Runs 'multi' once and finishes every completed transfer; returns how many finished
 * and leaves their connections in 'done' (at most 'room'). */
static uint32_t multi_collect(load_worker *w, CURLM *multi, load_conn **done, uint32_t room) {
    int running = 0, queued = 0;
    uint32_t count = 0;
    curl_multi_perform(multi, &running);
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        load_conn *conn = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&conn);
        CURLcode rc = msg->data.result;
        curl_multi_remove_handle(multi, conn->curl);
        conn_finish(w, conn, rc);
        if (count < room) done[count++] = conn;
    }
    return count;
}

/* Closed loop: each connection sends again as soon as it is answered. */
static void worker_closed(load_worker *w, load_conn *conns, CURLM *multi, load_conn **done) {
    uint32_t active = 0;
    for (uint32_t i = 0; i < w->conn_count && worker_continue(w->plan); i++) {
        uint64_t now_ns = pc_mono_ns();
        flight_change(w, now_ns, +1);
        conn_start(&conns[i], w->plan, multi, now_ns, now_ns);
        active++;
    }
    for (uint64_t spins = 0; active > 0 && spins < UINT32_MAX; spins++) {
        uint32_t finished = multi_collect(w, multi, done, w->conn_count);
        for (uint32_t i = 0; i < finished; i++) {
            if (worker_continue(w->plan)) {
                uint64_t now_ns = pc_mono_ns();
                flight_change(w, now_ns, +1);
                conn_start(done[i], w->plan, multi, now_ns, now_ns);
            } else {
                active--;
            }
        }
        if (active > 0) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
}

/* Open loop: arrivals (this worker's share of --rate) wait in a backlog for a free
 * connection; a request's latency counts from its arrival. */
typedef struct {
    uint64_t *due_ns;              /* ring of arrival times */
    uint64_t *counted_ns;          /* when each was counted in flight */
    uint32_t head;
    uint32_t count;
    uint64_t next_ns;              /* the next arrival */
    double gap_ns;                 /* mean gap between this worker's arrivals */
    uint64_t random;
} arrivals;

static uint64_t arrival_gap_ns(arrivals *a, bool poisson) {
    if (!poisson) return (uint64_t)a->gap_ns;
    double u = (double)((next_random(&a->random) >> 11) + 1) / 9007199254740993.0;
    return (uint64_t)(-log(u) * a->gap_ns);
}

/* Moves every arrival due by 'now_ns' (and before the end) into the backlog. */
static bool arrivals_due(load_worker *w, arrivals *a, uint64_t now_ns) {
    bool more = true;
    while (a->next_ns <= now_ns) {
        more = a->next_ns < w->plan->deadline_ns && worker_continue(w->plan);
        if (!more) break;
        flight_change(w, now_ns, +1);
        if (a->count == CLI_LOAD_BACKLOG_MAX) {
            w->dropped++;
            request_done(w, now_ns, now_ns, now_ns);
            if (w->errors++ == 0) snprintf(w->first_error, sizeof w->first_error, "client backlog full");
        } else {
            a->due_ns[(a->head + a->count) % CLI_LOAD_BACKLOG_MAX] = a->next_ns;
            a->counted_ns[(a->head + a->count++) % CLI_LOAD_BACKLOG_MAX] = now_ns;
        }
        a->next_ns += arrival_gap_ns(a, w->plan->poisson);
    }
    return more;
}

static void backlog_send(load_worker *w, arrivals *a, load_conn **idle, uint32_t *idle_count,
                         CURLM *multi, uint64_t now_ns) {
    while (a->count > 0 && *idle_count > 0) {
        uint64_t due = a->due_ns[a->head], counted = a->counted_ns[a->head];
        a->head = (a->head + 1) % CLI_LOAD_BACKLOG_MAX;
        a->count--;
        if (now_ns - due > LOAD_LATE_NS) w->late++;
        conn_start(idle[--*idle_count], w->plan, multi, due, counted);
    }
}

/* Waits for an answer, or until the next arrival is due. curl waits in whole ms: the
 * last millisecond before an arrival is slept in LOAD_ARRIVAL_STEP_NS steps, looking
 * for answers between them, so arrivals leave on time and answers are timed within a
 * step, without spinning. */
static void arrival_wait(CURLM *multi, bool arriving, uint64_t next_ns) {
    uint64_t now_ns = pc_mono_ns();
    if (arriving && next_ns <= now_ns) return;
    uint64_t until_ns = arriving ? next_ns - now_ns : 100000000u;
    if (until_ns >= 1000000u) {
        int wait_ms = (int)(until_ns / 1000000u);
        curl_multi_poll(multi, NULL, 0, wait_ms > 100 ? 100 : wait_ms, NULL);
        return;
    }
    struct timespec step = {.tv_sec = 0, .tv_nsec = (long)(until_ns < LOAD_ARRIVAL_STEP_NS ? until_ns : LOAD_ARRIVAL_STEP_NS)};
    nanosleep(&step, NULL);
}

static void worker_open(load_worker *w, load_conn *conns, CURLM *multi, load_conn **idle) {
    arrivals a = {.due_ns = malloc(CLI_LOAD_BACKLOG_MAX * sizeof(uint64_t)),
                  .counted_ns = malloc(CLI_LOAD_BACKLOG_MAX * sizeof(uint64_t)),
                  .gap_ns = 1e9 * (double)w->plan->threads / w->plan->rate_per_s,
                  .random = 0x2545f4914f6cdd1dull ^ (w->index + 1)};
    if (a.due_ns == NULL || a.counted_ns == NULL) {
        free(a.due_ns);
        free(a.counted_ns);
        return;
    }
    /* workers' schedules interleave: worker i starts i/threads of a gap later */
    a.next_ns = w->plan->start_ns + (uint64_t)(a.gap_ns * w->index / w->plan->threads);
    uint32_t idle_count = w->conn_count, busy = 0;
    for (uint32_t i = 0; i < w->conn_count; i++) idle[i] = &conns[w->conn_count - 1 - i];
    bool arriving = true;
    for (uint64_t spins = 0; (arriving || a.count > 0 || busy > 0) && spins < UINT64_MAX; spins++) {
        uint64_t now_ns = pc_mono_ns();
        if (arriving) arriving = arrivals_due(w, &a, now_ns);
        uint32_t before = idle_count;
        backlog_send(w, &a, idle, &idle_count, multi, now_ns);
        busy += before - idle_count;
        uint32_t finished = multi_collect(w, multi, idle + idle_count, w->conn_count - idle_count);
        idle_count += finished;
        busy -= finished;
        if (finished > 0 && a.count > 0) continue; /* free connections: send the backlog now */
        arrival_wait(multi, arriving, a.next_ns);
    }
    free(a.due_ns);
    free(a.counted_ns);
}

/* A worker drives its connections with one curl multi handle (event-driven, like
 * wrk): few threads, so the load generator leaves the CPU to the server. */
static void *worker_run(void *arg) {
    load_worker *w = arg;
    load_conn *conns = calloc(w->conn_count, sizeof(*conns));
    load_conn **spare = calloc(w->conn_count, sizeof(*spare));
    CURLM *multi = curl_multi_init();
    bool ready = conns != NULL && spare != NULL && multi != NULL;
    uint32_t opened = 0;
    if (ready) curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)w->conn_count);
    for (; ready && opened < w->conn_count; opened++) {
        if (!conn_open(&conns[opened], w->plan, w->conn_first + opened)) break;
    }
    if (ready && opened == w->conn_count) {
        if (w->plan->rate_per_s > 0) worker_open(w, conns, multi, spare);
        else worker_closed(w, conns, multi, spare);
    }
    for (uint32_t i = 0; conns != NULL && i < w->conn_count; i++) conn_close(&conns[i]);
    if (multi != NULL) curl_multi_cleanup(multi);
    free(conns);
    free(spare);
    return NULL;
}

/* Samples the number of requests in flight every LOAD_SAMPLE_NS until told to stop. */
/* The mean is the time integral of the samples by the trapezoid rule: a late wake-up
 * is weighted by how late it was, and a count that rises or falls across a long gap
 * (a descheduled sampler during an overload) is not biased by the gap's start. */
typedef struct {
    load_plan *plan;
    _Atomic bool stop;
    double weighted_sum;           /* in flight x ns */
    double weighted_ns;
} inflight_sampler;

static void *sampler_run(void *arg) {
    inflight_sampler *s = arg;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = LOAD_SAMPLE_NS};
    uint64_t last_ns = pc_mono_ns();
    double value = 0;
    while (!atomic_load(&s->stop)) {
        nanosleep(&pause, NULL);
        uint64_t now_ns = pc_mono_ns();
        double next = (double)atomic_load_explicit(&s->plan->in_flight, memory_order_relaxed);
        s->weighted_sum += (value + next) / 2.0 * (double)(now_ns - last_ns);
        s->weighted_ns += (double)(now_ns - last_ns);
        value = next;
        last_ns = now_ns;
    }
    return NULL;
}

/* ---- --engine-db: the same workload through writer_submit_wait, no HTTP ---- */

static void engine_transfer(ledger_transfer_t *t, const load_plan *plan, uint32_t worker,
                            uint64_t sequence, uint64_t *random) {
    memset(t, 0, sizeof(*t));
    uint32_t debit, credit;
    accounts_pick(plan, random, &debit, &credit);
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
        flight_change(w, start_ns, +1);
        pc_status status = writer_submit_wait(plan->engine, &cmd);
        request_done(w, pc_mono_ns(), start_ns, start_ns);
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
    if (plan->merchant != NULL) return true; /* payers are names in the payments, not accounts */
    if (plan->get_path != NULL) return true; /* GETs touch no accounts */
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

typedef struct {
    uint64_t requests;
    uint64_t transfers;
    uint64_t errors;
    uint64_t late;
    uint64_t latency_ns_total;
    uint64_t in_flight_ns_total;
    double flight_area_ns;
    int64_t flight_left;           /* must be 0: every request answered or failed */
    const char *first_error;
} load_totals;

static load_totals load_sum(load_worker *workers, uint32_t threads, uint64_t *merged) {
    load_totals t = {0};
    memset(merged, 0, HISTOGRAM_SLOTS * sizeof(uint64_t));
    for (uint32_t i = 0; i < threads; i++) {
        t.requests += workers[i].requests;
        t.transfers += workers[i].transfers;
        t.errors += workers[i].errors;
        t.late += workers[i].late;
        t.latency_ns_total += workers[i].latency_ns_total;
        t.in_flight_ns_total += workers[i].in_flight_ns_total;
        t.flight_area_ns += workers[i].flight_area_ns;
        t.flight_left += workers[i].flight;
        if (t.first_error == NULL && workers[i].errors > 0) t.first_error = workers[i].first_error;
        for (uint32_t k = 0; k < HISTOGRAM_SLOTS; k++) merged[k] += workers[i].histogram[k];
    }
    return t;
}

/* Prints the line; returns whether Little's law held within the tolerance. */
static bool load_report(const load_plan *plan, load_worker *workers, uint32_t threads,
                        uint32_t concurrency, double elapsed_s, double sampled_in_flight) {
    static uint64_t merged[HISTOGRAM_SLOTS];
    load_totals t = load_sum(workers, threads, merged);
    double mean_in_flight = t.flight_area_ns / (elapsed_s * 1e9);
    double throughput = (double)t.requests / elapsed_s;
    double mean_latency_s = t.requests ? (double)t.latency_ns_total / 1e9 / (double)t.requests : 0.0;
    /* L = X * W, with W as long as the sampler counted each request in flight */
    double little = t.requests ? throughput * (double)t.in_flight_ns_total / 1e9 / (double)t.requests : 0.0;
    double little_error = little > 0 ? fabs(mean_in_flight - little) / little : 0.0;
    bool little_ok = t.flight_left == 0 && little_error <= LOAD_LITTLE_TOLERANCE;
    double offered = plan->rate_per_s > 0 ? plan->rate_per_s : throughput;
    printf("load mode=%s loop=%s concurrency=%u batch=%u accounts=%u requests=%llu transfers=%llu errors=%llu "
           "elapsed_s=%.3f requests_per_s=%.0f transfers_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
           "p999_ms=%.3f offered_per_s=%.0f mean_latency_ms=%.3f mean_in_flight=%.2f little_in_flight=%.2f "
           "little_error=%.4f little_tolerance=%.2f little_ok=%d late=%llu mean_in_flight_sampled=%.2f kind=%s\n",
           plan->engine ? "engine" : "http", plan->rate_per_s > 0 ? "open" : "closed", concurrency,
           plan->batch, plan->accounts, (unsigned long long)t.requests, (unsigned long long)t.transfers,
           (unsigned long long)t.errors, elapsed_s, throughput, (double)t.transfers / elapsed_s,
           histogram_quantile(merged, t.requests, 0.50), histogram_quantile(merged, t.requests, 0.99),
           histogram_quantile(merged, t.requests, 0.999), offered, mean_latency_s * 1e3, mean_in_flight,
           little, little_error, LOAD_LITTLE_TOLERANCE, little_ok ? 1 : 0,
           (unsigned long long)t.late, sampled_in_flight,
           plan->get_path != NULL ? "get" : plan->merchant != NULL ? "payments" : "transfers");
    if (t.first_error != NULL) fprintf(stderr, "paycore load: first error: %s\n", t.first_error);
    if (!little_ok) {
        fprintf(stderr, "paycore load: Little's law off by %.1f%% (in flight %.2f, X*W %.2f, %lld never "
                        "answered): the measurement is not to be trusted\n", little_error * 100, mean_in_flight,
                little, (long long)t.flight_left);
    }
    return little_ok;
}

/* 'concurrency' connections (or engine submitters) over 'threads' workers. */
static int load_run(load_plan *plan, uint32_t concurrency, uint32_t threads) {
    if (plan->engine != NULL || threads > concurrency) threads = concurrency;
    load_worker *workers = calloc(threads, sizeof(*workers));
    pthread_t *ids = calloc(threads, sizeof(*ids));
    if (workers == NULL || ids == NULL) return free(workers), free(ids), 1;
    load_stop_signals_install();
    inflight_sampler sampler = {.plan = plan};
    pthread_t sampler_id;
    bool sampling = pthread_create(&sampler_id, NULL, sampler_run, &sampler) == 0;
    uint64_t start_ns = pc_mono_ns();
    plan->start_ns = start_ns;
    plan->threads = threads;
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
    atomic_store(&sampler.stop, true);
    if (sampling) pthread_join(sampler_id, NULL);
    double sampled = sampling && sampler.weighted_ns > 0 ? sampler.weighted_sum / sampler.weighted_ns : NAN;
    bool little_ok = load_report(plan, workers, started, concurrency, elapsed_s, sampled);
    uint64_t errors = 0;
    for (uint32_t t = 0; t < started; t++) errors += workers[t].errors;
    free(workers);
    free(ids);
    return errors == 0 && started == threads && little_ok ? 0 : 1;
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
        {"rate", NULL, false, NULL, "open loop: requests arrive at this rate per second, answered or not (default: closed loop)"},
        {"arrivals", NULL, false, "uniform", "open loop: uniform (evenly spaced) or poisson arrivals"},
        {"payments", NULL, false, NULL, "POST card sales (POST /v1/payments, capture_method automatic) for this merchant id instead of transfers; --accounts payers; the server needs a card channel"},
        {"shards", NULL, false, "0", "the server runs this many shards (serve --shards): pick accounts by shard"},
        {"cross-pct", NULL, false, "0", "with --shards: this % of transfers go across shards, the rest within one"},
        {"get", NULL, false, NULL, "GET this path (e.g. /healthz) instead of POSTing: what one request costs the HTTP stack alone"},
    };
    enum { N = 15 };
    const char *usage = "usage: paycore load [options]\n\nHTTP load generator: POSTs transfers to a "
                        "running server and prints one key=value line:\nload mode= loop=closed|open concurrency= batch= "
                        "requests= transfers= errors= elapsed_s= requests_per_s= transfers_per_s= "
                        "p50_ms= p99_ms= p999_ms=\noffered_per_s= mean_latency_ms= mean_in_flight= little_in_flight= "
                        "little_error= little_tolerance= little_ok= late= mean_in_flight_sampled= kind=\n\nClosed loop: each connection sends its "
                        "next request when the last is answered.\nOpen loop (--rate): requests arrive on schedule; "
                        "latency counts from arrival (a request\nwaiting for a free connection is late).\n"
                        "mean_in_flight is the time average of requests in flight (integrated at each\nstart and answer); "
                        "Little's law says it equals throughput x mean time in flight\n(little_in_flight): off by more "
                        "than 5% means requests were lost or counted twice.\nmean_in_flight_sampled: the same count read "
                        "by a sampler thread every 0.25 ms (reported only).\n"
                        "SIGINT or SIGTERM ends the run early; it still reports.\n"
                        "Exit 1 when any request failed or Little's law did not hold.";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, N);
        return 0;
    }
    cli_rest rest;
    if (!cli_args_parse("load", argc, argv, opts, N, &rest) || rest.positional_count > 0) return 2;
    uint64_t concurrency, threads, duration_s, count = 0, batch, accounts;
    const char *count_text = cli_opt_get(opts, N, "count");
    if (!cli_parse_u64(cli_opt_get(opts, N, "concurrency"), &concurrency) || concurrency < 1 ||
        concurrency > CLI_LOAD_THREADS_MAX ||
        !cli_parse_u64(cli_opt_get(opts, N, "threads"), &threads) || threads < 1 || threads > 64 ||
        !cli_parse_u64(cli_opt_get(opts, N, "duration-s"), &duration_s) || duration_s > 86400 ||
        (count_text != NULL && !cli_parse_u64(count_text, &count)) ||
        !cli_parse_u64(cli_opt_get(opts, N, "batch"), &batch) || batch < 1 || batch > LEDGER_BATCH_EVENTS_MAX ||
        !cli_parse_u64(cli_opt_get(opts, N, "accounts"), &accounts) || accounts < 2 || accounts > 10000000) {
        fprintf(stderr, "paycore load: bad option value (see --help)\n");
        return 2;
    }
    const char *rate_text = cli_opt_get(opts, N, "rate"), *arrivals_text = cli_opt_get(opts, N, "arrivals");
    uint64_t rate = 0;
    if ((rate_text != NULL && (!cli_parse_u64(rate_text, &rate) || rate < 1 || rate > 10000000)) ||
        (strcmp(arrivals_text, "uniform") != 0 && strcmp(arrivals_text, "poisson") != 0) ||
        (rate > 0 && cli_opt_get(opts, N, "engine-db") != NULL)) {
        fprintf(stderr, "paycore load: bad --rate or --arrivals (open loop is HTTP only; see --help)\n");
        return 2;
    }
    const char *merchant = cli_opt_get(opts, N, "payments");
    if (merchant != NULL && (merchant[0] == '\0' || strlen(merchant) > PC_ID_BYTES_MAX || strchr(merchant, '"') != NULL ||
                             strchr(merchant, '\\') != NULL || batch != 1 || cli_opt_get(opts, N, "engine-db") != NULL)) {
        fprintf(stderr, "paycore load: --payments takes a merchant id, one payment a request, over HTTP only\n");
        return 2;
    }
    const char *get_path = cli_opt_get(opts, N, "get");
    if (get_path != NULL && (get_path[0] != '/' || strlen(get_path) > 256 || merchant != NULL || batch != 1 ||
                             cli_opt_get(opts, N, "engine-db") != NULL)) {
        fprintf(stderr, "paycore load: --get takes a path starting with '/', over HTTP only, without --payments\n");
        return 2;
    }
    load_plan plan = {.url = cli_opt_get(opts, N, "url"), .key = cli_opt_get(opts, N, "key"), .merchant = merchant,
                      .get_path = get_path,
                      .rate_per_s = (double)rate, .poisson = strcmp(arrivals_text, "poisson") == 0,
                      .accounts = (uint32_t)accounts, .batch = (uint32_t)batch, .count_max = count,
                      .deadline_ns = duration_s * 1000000000ull};
    snprintf(plan.prefix, sizeof plan.prefix, "L%llx", (unsigned long long)(pc_wall_ns() / 1000u));
    uint64_t shards = 0, cross_pct = 0;
    if (!cli_parse_u64(cli_opt_get(opts, N, "shards"), &shards) || shards > SHARD_COUNT_MAX ||
        !cli_parse_u64(cli_opt_get(opts, N, "cross-pct"), &cross_pct) || cross_pct > 100) {
        fprintf(stderr, "paycore load: bad --shards or --cross-pct (see --help)\n");
        return 2;
    }
    plan.shards = (uint32_t)shards;
    plan.cross_pct = (uint32_t)cross_pct;
    if (plan.shards > 1 && !plan_shards(&plan)) {
        fprintf(stderr, "paycore load: too few --accounts for --shards\n");
        return 2;
    }
    const char *engine_db = cli_opt_get(opts, N, "engine-db");
    int status;
    if (engine_db != NULL) {
        status = engine_run(&plan, engine_db, (uint32_t)concurrency);
    } else {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        status = load_setup(&plan) ? load_run(&plan, (uint32_t)concurrency, (uint32_t)threads) : 1;
        curl_global_cleanup();
    }
    for (uint32_t s = 0; s < plan.shards; s++) free(plan.on_shard[s]);
    return status;
}
