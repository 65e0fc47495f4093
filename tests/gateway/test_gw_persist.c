/* Goal: every attempt is handed to the caller's persist callback, with its own key,
 * before its channel is called, and the channel is called only after the caller says
 * it is durable; a persist that fails means the channel is never called.
 * Method: two card simulators, card_a failing every call with a recorded 96
 * (retryable) so each payment takes two attempts. The persist callback hands each attempt to another
 * thread (as a writer would), which first checks in the simulators' records that the
 * key has not arrived, then answers. */
#include "gw_test_util.h"

static gwt_sim_t card_a, card_b;
static gw_t *gw;

typedef struct {
    pthread_mutex_t mutex;
    uint32_t count;
    gw_attempt_t attempts[GW_ATTEMPTS_MAX];
    uint32_t fail_at;          /* 1-based attempt whose persist fails; 0 = none */
    uint32_t arrived_early;    /* keys a simulator saw before their persist completed */
} persisted;

typedef struct {
    persisted *p;
    gw_call_t *call;
    gw_attempt_t attempt;
} persist_job;

static int64_t key_seen(const char *key) {
    const char *sql = "SELECT count(*) FROM arrivals WHERE key = ?1";
    return gwt_sim_count(&card_a, sql, key) + gwt_sim_count(&card_b, sql, key);
}

static void *persist_thread(void *arg) {
    persist_job *job = arg;
    persisted *p = job->p;
    usleep(20000); /* a slow disk: the call must wait for us */
    pthread_mutex_lock(&p->mutex);
    if (key_seen(job->attempt.idempotency_key) > 0) p->arrived_early++;
    p->attempts[p->count++] = job->attempt;
    bool fail = p->count == p->fail_at;
    pthread_mutex_unlock(&p->mutex);
    gw_attempt_persisted(job->call, fail ? PC_STORE_COMMIT_FAILED : PC_OK);
    free(job);
    return NULL;
}

static void persist(void *ctx, gw_call_t *call, const gw_attempt_t *attempt) {
    persist_job *job = calloc(1, sizeof *job);
    ASSERT_TRUE(job != NULL);
    *job = (persist_job){ctx, call, *attempt};
    pthread_t thread;
    ASSERT_EQ(pthread_create(&thread, NULL, persist_thread, job), 0);
    pthread_detach(thread);
}

static gw_result_t pay(const char *ref, persisted *p) {
    pthread_mutex_init(&p->mutex, NULL);
    gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
    gw_result_t r;
    ASSERT_STATUS(gw_call_wait(gw, &req, persist, p, &r), PC_OK);
    pthread_mutex_destroy(&p->mutex);
    return r;
}

static void test_every_attempt_persisted_first(void) {
    persisted p = {.fail_at = 0};
    gw_result_t r = pay("persist-1", &p);
    ASSERT_EQ(r.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(r.attempt_count, 2);
    ASSERT_EQ(p.count, 2);
    ASSERT_EQ(p.arrived_early, 0);
    for (uint32_t i = 0; i < 2; i++) {
        ASSERT_EQ(p.attempts[i].number, i + 1);
        ASSERT_STR_EQ(p.attempts[i].idempotency_key, r.attempts[i].idempotency_key);
        ASSERT_STR_EQ(p.attempts[i].channel, r.attempts[i].channel);
        ASSERT_EQ(p.attempts[i].outcome, GW_OUTCOME_UNKNOWN); /* handed over before the call */
        ASSERT_EQ(key_seen(p.attempts[i].idempotency_key), 1); /* then sent, once */
    }
    ASSERT_STR_EQ(p.attempts[0].channel, "card_a");
    ASSERT_STR_EQ(p.attempts[1].channel, "card_b");
    ASSERT_TRUE(strcmp(p.attempts[0].idempotency_key, p.attempts[1].idempotency_key) != 0);
    ASSERT_EQ(gwt_approved(&card_b, "persist-1"), 1);
}

static void test_failed_persist_never_calls(void) {
    persisted p = {.fail_at = 1};
    gw_result_t r = pay("persist-2", &p);
    ASSERT_STATUS(r.status, PC_STORE_COMMIT_FAILED);
    ASSERT_EQ(r.outcome, GW_OUTCOME_RETRYABLE);
    ASSERT_EQ(r.attempt_count, 1);
    ASSERT_EQ(key_seen(p.attempts[0].idempotency_key), 0);

    persisted second = {.fail_at = 2}; /* card_a's 96, then card_b's attempt cannot be stored */
    r = pay("persist-3", &second);
    ASSERT_STATUS(r.status, PC_STORE_COMMIT_FAILED);
    ASSERT_EQ(r.outcome, GW_OUTCOME_RETRYABLE);
    ASSERT_EQ(r.attempt_count, 2);
    ASSERT_EQ(key_seen(second.attempts[0].idempotency_key), 1);
    ASSERT_EQ(key_seen(second.attempts[1].idempotency_key), 0);
    ASSERT_EQ(gwt_records(&card_b, "persist-3"), 0);
}

/* persist_on_submit: the first attempt is routed and persisted on the submitting
 * thread inside gw_submit; a retry's persist and 'done' run on the gateway thread; the
 * channel still hears of each attempt only after its persist completed. */
typedef struct {
    persisted p;
    pthread_t submitter;
    bool submitting;              /* inside gw_submit (the submitter's own flag) */
    uint32_t persist_on_submitter; /* persists run on the submitter inside gw_submit */
    uint32_t persist_on_gateway;   /* persists run on a gateway thread */
    bool done_on_gateway;
    bool done;
    gw_result_t result;
    pthread_cond_t cond;
} on_submit_t;

static void on_submit_persist(void *ctx, gw_call_t *call, const gw_attempt_t *attempt) {
    on_submit_t *w = ctx;
    pthread_mutex_lock(&w->p.mutex);
    if (pthread_equal(pthread_self(), w->submitter) && w->submitting && !gw_on_gateway_thread()) {
        w->persist_on_submitter++;
    }
    if (gw_on_gateway_thread()) w->persist_on_gateway++;
    pthread_mutex_unlock(&w->p.mutex);
    persist(&w->p, call, attempt); /* durable on another thread, later */
}

static void on_submit_done(void *ctx, const gw_result_t *result) {
    on_submit_t *w = ctx;
    pthread_mutex_lock(&w->p.mutex);
    w->result = *result;
    w->done_on_gateway = gw_on_gateway_thread();
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->p.mutex);
}

static void on_submit_call(on_submit_t *w, const gw_request_t *req) {
    pthread_mutex_init(&w->p.mutex, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->submitter = pthread_self();
    gw_callbacks_t callbacks = {.persist = on_submit_persist, .done = on_submit_done, .ctx = w,
                                .persist_on_submit = true};
    w->submitting = true;
    ASSERT_STATUS(gw_submit(gw, req, &callbacks), PC_OK);
    pthread_mutex_lock(&w->p.mutex);
    w->submitting = false;
    while (!w->done) pthread_cond_wait(&w->cond, &w->p.mutex);
    pthread_mutex_unlock(&w->p.mutex);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->p.mutex);
}

static void test_persist_on_submit(void) {
    ASSERT_TRUE(!gw_on_gateway_thread());
    on_submit_t w = {0};
    gw_request_t req = gwt_card("persist-4", 1999, "4242424242424242");
    on_submit_call(&w, &req);
    ASSERT_EQ(w.result.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(w.result.attempt_count, 2);
    ASSERT_EQ(w.persist_on_submitter, 1); /* card_a's attempt, before gw_submit returned */
    ASSERT_EQ(w.persist_on_gateway, 1);   /* card_b's, after card_a's 96 */
    ASSERT_TRUE(w.done_on_gateway);
    ASSERT_EQ(w.p.count, 2);
    ASSERT_EQ(w.p.arrived_early, 0);
    for (uint32_t i = 0; i < 2; i++) {
        ASSERT_STR_EQ(w.p.attempts[i].idempotency_key, w.result.attempts[i].idempotency_key);
        ASSERT_EQ(key_seen(w.p.attempts[i].idempotency_key), 1);
    }
    ASSERT_TRUE(strcmp(w.p.attempts[0].idempotency_key, w.p.attempts[1].idempotency_key) != 0);
    ASSERT_EQ(gwt_approved(&card_b, "persist-4"), 1);

    on_submit_t failing = {.p = {.fail_at = 1}}; /* the first attempt cannot be stored */
    req = gwt_card("persist-5", 1999, "4242424242424242");
    on_submit_call(&failing, &req);
    ASSERT_STATUS(failing.result.status, PC_STORE_COMMIT_FAILED);
    ASSERT_EQ(failing.result.attempt_count, 1);
    ASSERT_EQ(failing.persist_on_submitter, 1);
    ASSERT_TRUE(failing.done_on_gateway);
    ASSERT_EQ(key_seen(failing.p.attempts[0].idempotency_key), 0);
}

/* A call that cannot be routed ends on its gateway thread, not inside gw_submit, and
 * nothing is persisted. */
static void test_unroutable_on_submit_ends_on_gateway(void) {
    on_submit_t w = {0};
    gw_request_t req = gwt_card("persist-6", 1999, "4242424242424242");
    snprintf(req.method, sizeof req.method, "wallet"); /* no wallet channel */
    snprintf(req.wallet_id, sizeof req.wallet_id, "wal_1");
    on_submit_call(&w, &req);
    ASSERT_TRUE(w.result.status != PC_OK);
    ASSERT_EQ(w.result.attempt_count, 0);
    ASSERT_EQ(w.persist_on_submitter + w.persist_on_gateway, 0);
    ASSERT_TRUE(w.done_on_gateway);
}

/* gw_persisted_hold: attempts persisted while held go nowhere until the release,
 * which hands them all to the gateway thread; each is then sent once. */
#define HELD_CALLS 3
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    uint32_t first_count;
    gw_call_t *first_calls[HELD_CALLS];
    char first_keys[HELD_CALLS][GW_KEY_SIZE];
    uint32_t done_count;
    gw_result_t results[HELD_CALLS];
} held_t;

static void held_persist(void *ctx, gw_call_t *call, const gw_attempt_t *attempt) {
    held_t *h = ctx;
    if (attempt->number > 1) { /* a retry on card_b: durable at once */
        gw_attempt_persisted(call, PC_OK);
        return;
    }
    pthread_mutex_lock(&h->mutex);
    ASSERT_TRUE(h->first_count < HELD_CALLS);
    snprintf(h->first_keys[h->first_count], GW_KEY_SIZE, "%s", attempt->idempotency_key);
    h->first_calls[h->first_count++] = call;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mutex);
}

static void held_done(void *ctx, const gw_result_t *result) {
    held_t *h = ctx;
    pthread_mutex_lock(&h->mutex);
    h->results[h->done_count++] = *result;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mutex);
}

static void test_persisted_held_until_release(void) {
    held_t h = {.first_count = 0};
    pthread_mutex_init(&h.mutex, NULL);
    pthread_cond_init(&h.cond, NULL);
    gw_callbacks_t callbacks = {.persist = held_persist, .done = held_done, .ctx = &h};
    for (uint32_t i = 0; i < HELD_CALLS; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "persist-held-%u", i);
        gw_request_t req = gwt_card(ref, 1999, "4242424242424242");
        ASSERT_STATUS(gw_submit(gw, &req, &callbacks), PC_OK);
    }
    pthread_mutex_lock(&h.mutex);
    while (h.first_count < HELD_CALLS) pthread_cond_wait(&h.cond, &h.mutex);
    pthread_mutex_unlock(&h.mutex);
    gw_persisted_hold();
    for (uint32_t i = 0; i < HELD_CALLS; i++) gw_attempt_persisted(h.first_calls[i], PC_OK);
    usleep(200000); /* held: whatever the gateway thread does meanwhile, nothing goes out */
    for (uint32_t i = 0; i < HELD_CALLS; i++) ASSERT_EQ(key_seen(h.first_keys[i]), 0);
    pthread_mutex_lock(&h.mutex);
    ASSERT_EQ(h.done_count, 0);
    pthread_mutex_unlock(&h.mutex);
    gw_persisted_release();
    pthread_mutex_lock(&h.mutex);
    while (h.done_count < HELD_CALLS) pthread_cond_wait(&h.cond, &h.mutex);
    pthread_mutex_unlock(&h.mutex);
    for (uint32_t i = 0; i < HELD_CALLS; i++) {
        ASSERT_EQ(h.results[i].outcome, GW_OUTCOME_APPROVED);
        ASSERT_EQ(h.results[i].attempt_count, 2);
        ASSERT_EQ(key_seen(h.first_keys[i]), 1); /* sent once, after the release */
        char ref[32];
        snprintf(ref, sizeof ref, "persist-held-%u", i);
        ASSERT_EQ(gwt_approved(&card_b, ref), 1);
    }
    pthread_cond_destroy(&h.cond);
    pthread_mutex_destroy(&h.mutex);
}

int main(void) {
    gwt_setup("gw-persist");
    gwt_sim_start(&card_a, "card", "card_a", NULL, NULL);
    gwt_sim_start(&card_b, "card", "card_b", NULL, NULL);
    gwt_faults(&card_a, "{\"error_rate\":1.0}"); /* every call a recorded 96 */
    char config[512];
    gwt_path(config, sizeof config, "channels.json");
    gwt_write(config,
              "{\"channels\":[\n"
              " {\"name\":\"card_a\",\"kind\":\"card\",\"url\":\"%s\",\"breaker\":{\"failures_consecutive\":0,"
              "\"error_rate_percent\":0}},\n"
              " {\"name\":\"card_b\",\"kind\":\"card\",\"url\":\"%s\"}],\n"
              "\"routing\":{\"priority\":[\"card_a\",\"card_b\"]}}\n",
              card_a.url, card_b.url);
    gw = gwt_gateway(config);
    TEST_RUN(test_every_attempt_persisted_first);
    TEST_RUN(test_failed_persist_never_calls);
    TEST_RUN(test_persist_on_submit);
    TEST_RUN(test_unroutable_on_submit_ends_on_gateway);
    TEST_RUN(test_persisted_held_until_release);
    gw_stop(gw);
    gwt_sim_stop(&card_a);
    gwt_sim_stop(&card_b);
    gwt_teardown();
    return test_finish();
}
