/* Goal: the gateway keeps its connections to a channel open and reuses them call after
 * call (no connection, no handshake per call), and a connection the channel closed
 * (the simulator restarted) costs nothing: the next call opens a new one and is sent
 * once, approved at the first attempt, no status inquiry.
 * Method: one card simulator; the test's own process holds the gateway, so its TCP
 * sockets toward the simulator's port are the gateway's: /proc/self/net/tcp counts
 * them. After many calls one after another, one connection is open and the simulator
 * accepted no other (its /healthz counts the connections it accepted). Then the simulator
 * is stopped and started again on the same port and record. Calls in flight that rise
 * and fall keep the connections too.
 * Also: a caller's pass_end hook runs on the gateway thread after the callbacks of a
 * pass, once per pass whatever the number of calls in it, and never without one. */
#include <dirent.h>

#include "gw_test_util.h"

#define CALLS 40

static gwt_sim_t card;
static gw_t *gw;

#define OWN_SOCKETS_MAX 1024

/* The inodes of this process's sockets (/proc/self/fd): /proc/self/net/tcp lists every
 * socket of the network namespace, and another process's socket may show 'port' as
 * its peer (its own ephemeral port taken while the simulator restarted). */
static uint32_t own_socket_inodes(unsigned long *inodes, uint32_t inodes_max) {
    DIR *fds = opendir("/proc/self/fd");
    ASSERT_TRUE(fds != NULL);
    uint32_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(fds)) != NULL) {
        char path[300], target[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        ssize_t bytes = readlink(path, target, sizeof target - 1);
        if (bytes <= 0) continue;
        target[bytes] = '\0';
        unsigned long inode = 0;
        if (sscanf(target, "socket:[%lu]", &inode) != 1) continue;
        ASSERT_TRUE(count < inodes_max);
        inodes[count++] = inode;
    }
    closedir(fds);
    return count;
}

/* Sockets of this process toward 'port', by TCP state (01 established, 06 time wait). */
static uint32_t sockets_to(uint16_t port, const char *state) {
    static unsigned long inodes[OWN_SOCKETS_MAX];
    uint32_t inode_count = own_socket_inodes(inodes, OWN_SOCKETS_MAX);
    FILE *f = fopen("/proc/self/net/tcp", "r");
    ASSERT_TRUE(f != NULL);
    char line[512], tail[8];
    snprintf(tail, sizeof tail, ":%04X", (unsigned)port);
    uint32_t count = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char local_address[64], remote_address[64], st[8];
        unsigned long inode = 0;
        if (sscanf(line, " %*d: %63s %63s %7s %*s %*s %*s %*u %*u %lu", local_address, remote_address, st,
                   &inode) != 4) {
            continue;
        }
        size_t bytes = strlen(remote_address);
        if (bytes < 5 || strcmp(remote_address + bytes - 5, tail) != 0 || strcmp(st, state) != 0) continue;
        for (uint32_t i = 0; i < inode_count; i++) {
            if (inodes[i] == inode) {
                count++;
                break;
            }
        }
    }
    fclose(f);
    return count;
}

/* Starts the simulator again on the port and record it had. */
static void sim_restart(void) {
    uint16_t port = card.port;
    gwt_sim_stop(&card);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);
    const char *argv[] = {"paycore", "simulator", "card", "--listen", listen, "--db", card.db, NULL};
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    card.pid = fork();
    ASSERT_TRUE(card.pid >= 0);
    if (card.pid == 0) {
        int log_fd = open(card.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(out[1], 1);
        if (log_fd >= 0) dup2(log_fd, 2);
        close(out[0]);
        execv(gwt_sim_bin(), (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    card.stdout_fd = out[0];
    ASSERT_EQ(gwt_read_port(out[0], card.log), port);
}

/* Connections the simulator accepted since it started (its /healthz). */
static int64_t sim_connections(void) {
    char url[300], *answer = NULL;
    snprintf(url, sizeof url, "%s/healthz", card.url);
    ASSERT_EQ(gwt_http("GET", url, NULL, &answer), 200);
    json_t *health = json_loads(answer, 0, NULL);
    free(answer);
    ASSERT_TRUE(json_is_integer(json_object_get(health, "connections")));
    int64_t count = json_integer_value(json_object_get(health, "connections"));
    json_decref(health);
    return count;
}

static void pay_once(const char *reference) {
    gw_request_t req = gwt_card(reference, 1999, "4242424242424242");
    gw_result_t r = gwt_call(gw, &req);
    if (r.outcome != GW_OUTCOME_APPROVED) gwt_print(&r);
    ASSERT_EQ(r.outcome, GW_OUTCOME_APPROVED);
    ASSERT_EQ(r.attempt_count, 1);
    ASSERT_FALSE(r.attempts[0].status_inquired);
    ASSERT_EQ(gwt_sim_count(&card, "SELECT count FROM arrivals WHERE key = ?1", r.attempts[0].idempotency_key), 1);
}

static void test_connections_reused(void) {
    int64_t before = sim_connections();
    for (int i = 0; i < CALLS; i++) {
        char reference[32];
        snprintf(reference, sizeof reference, "reuse-%d", i);
        pay_once(reference);
    }
    ASSERT_EQ(sockets_to(card.port, "01"), 1);
    /* one connection for all the calls (and one for the second /healthz); a TIME_WAIT
     * count would also see another process's sockets whose peer port matches */
    ASSERT_EQ(sim_connections() - before, 2);
}

/* Calls in flight rise and fall (a burst, then one at a time, then a burst): every
 * connection the first burst opened serves the later ones; the simulator accepts no
 * new one (curl's own cache keeps 4 per call in flight and closes the rest whenever
 * the calls in flight dip: each later burst would connect again). */
static void test_connections_kept_across_a_dip(void) {
    enum { BURST = 24 };
    int64_t before = sim_connections(); /* the test's own /healthz calls count too: one each */
    static gw_request_t requests[BURST];
    static gw_result_t results[BURST];
    static char references[BURST][32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < BURST; i++) {
            snprintf(references[i], sizeof references[i], "dip-%d-%d", round, i);
            requests[i] = gwt_card(references[i], 1999, "4242424242424242");
        }
        gwt_run_many(gw, requests, BURST, BURST, results);
        for (int i = 0; i < BURST; i++) ASSERT_EQ(results[i].outcome, GW_OUTCOME_APPROVED);
        for (int i = 0; i < 4; i++) {
            char reference[32];
            snprintf(reference, sizeof reference, "dip-%d-one-%d", round, i);
            pay_once(reference);
        }
    }
    int64_t accepted = sim_connections() - before - 1;
    if (accepted > BURST) TEST_FAIL("the simulator accepted %lld connections for bursts of %d", (long long)accepted, BURST);
}

/* An attempt's key begins with the time it was made (12 hex digits of wall-clock ms),
 * so later keys sort later; the rest is random. */
static void test_keys_sort_by_time(void) {
    char previous[GW_KEY_SIZE] = "";
    for (int i = 0; i < 8; i++) {
        uint64_t before_ms = pc_wall_ns() / 1000000u;
        char reference[32];
        snprintf(reference, sizeof reference, "keyed-%d", i);
        gw_request_t req = gwt_card(reference, 1999, "4242424242424242");
        gw_result_t r = gwt_call(gw, &req);
        uint64_t after_ms = pc_wall_ns() / 1000000u;
        ASSERT_EQ(r.outcome, GW_OUTCOME_APPROVED);
        const char *key = r.attempts[0].idempotency_key;
        ASSERT_EQ(strlen(key), 36u);
        ASSERT_EQ(strncmp(key, "gwk_", 4), 0);
        char stamp[13];
        memcpy(stamp, key + 4, 12);
        stamp[12] = '\0';
        uint64_t key_ms = strtoull(stamp, NULL, 16);
        ASSERT_TRUE(key_ms >= before_ms && key_ms <= after_ms);
        ASSERT_TRUE(strcmp(previous, key) < 0 || strncmp(previous + 4, key + 4, 12) == 0);
        snprintf(previous, sizeof previous, "%s", key);
    }
}

static void test_restart_costs_nothing(void) {
    sim_restart();
    for (int i = 0; i < CALLS; i++) {
        char reference[32];
        snprintf(reference, sizeof reference, "after-%d", i);
        pay_once(reference);
    }
    ASSERT_EQ(sockets_to(card.port, "01"), 1);
    ASSERT_EQ(gwt_approved(&card, "after-0"), 1);
}

/* pass_end's view: what the gateway thread's callbacks did since the last pass_end. */
static struct {
    pthread_mutex_t mutex;
    uint32_t done;          /* every done */
    uint32_t done_seen;     /* done as of the last pass_end */
    uint32_t passes;
    uint32_t empty_passes;  /* pass_end without a callback before it */
    uint32_t other_thread;  /* pass_end on another thread than the callbacks' */
} hook = {.mutex = PTHREAD_MUTEX_INITIALIZER};
static _Thread_local uint32_t done_in_pass;
static _Thread_local bool done_here;

static void hook_done(void *ctx, const gw_result_t *result) {
    gw_result_t *out = ctx;
    *out = *result;
    done_in_pass++;
    done_here = true;
    pthread_mutex_lock(&hook.mutex);
    hook.done++;
    pthread_mutex_unlock(&hook.mutex);
}

static void hook_pass_end(void) {
    pthread_mutex_lock(&hook.mutex);
    hook.passes++;
    if (done_in_pass == 0) hook.empty_passes++;
    if (!done_here) hook.other_thread++;
    hook.done_seen = hook.done;
    pthread_mutex_unlock(&hook.mutex);
    done_in_pass = 0;
}

static void test_pass_end_once_per_pass(void) {
    enum { BURST = 32 };
    static gw_result_t results[BURST];
    for (int i = 0; i < BURST; i++) {
        char reference[32];
        snprintf(reference, sizeof reference, "pass-%d", i);
        gw_request_t req = gwt_card(reference, 1999, "4242424242424242");
        gw_callbacks_t callbacks = {.done = hook_done, .ctx = &results[i], .pass_end = hook_pass_end};
        ASSERT_EQ(gw_submit(gw, &req, &callbacks), PC_OK);
    }
    uint64_t deadline_ms = gwt_ms() + 120000;
    pthread_mutex_lock(&hook.mutex);
    while (hook.done_seen < BURST && gwt_ms() < deadline_ms) {
        pthread_mutex_unlock(&hook.mutex);
        usleep(2000);
        pthread_mutex_lock(&hook.mutex);
    }
    uint32_t done = hook.done, done_seen = hook.done_seen, passes = hook.passes;
    pthread_mutex_unlock(&hook.mutex);
    ASSERT_EQ(done, BURST);
    ASSERT_EQ(done_seen, BURST); /* the last done too was followed by a pass_end */
    ASSERT_TRUE(passes >= 1 && passes <= BURST);
    ASSERT_EQ(hook.empty_passes, 0);
    ASSERT_EQ(hook.other_thread, 0);
    for (int i = 0; i < BURST; i++) ASSERT_EQ(results[i].outcome, GW_OUTCOME_APPROVED);
}

int main(void) {
    gwt_setup("reuse");
    gwt_sim_start(&card, "card", "card", NULL, NULL);
    char path[512];
    gwt_path(path, sizeof path, "channels.json");
    gwt_write(path, "{\"channels\":[{\"name\":\"card\",\"kind\":\"card\",\"url\":\"%s\"}]}", card.url);
    gw = gwt_gateway(path);
    TEST_RUN(test_connections_reused);
    TEST_RUN(test_connections_kept_across_a_dip);
    TEST_RUN(test_keys_sort_by_time);
    TEST_RUN(test_pass_end_once_per_pass);
    TEST_RUN(test_restart_costs_nothing);
    gw_stop(gw);
    gwt_sim_stop(&card);
    gwt_teardown();
    return test_finish();
}
