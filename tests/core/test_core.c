/* Goal: the shared basics hold: status codes are unique and round-trip, the currency
 * table knows exponents and refuses non-codes, ids are validated exactly; the text
 * helpers that replace snprintf on hot paths (decimal, hex, joined parts) write what
 * snprintf writes, cut where it cuts, and return the length it returns; pooled random
 * bytes are never handed out twice, not across threads, not to a forked child, and a
 * thread draws a key from the kernel once per PC_RANDOM_RESEED_FILLS pools (and a
 * forked child once at its first draw), not once per pool.
 * Method: table walks and edge values; the text helpers against snprintf over random
 * and edge integers, padding widths and buffer sizes from 1 byte up. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "paycore/money.h"
#include "paycore/status.h"
#include "test.h"

static int seen_values[1000];

static void status_unique(pc_status status, void *ctx) {
    (void)ctx;
    ASSERT_TRUE((int)status >= 0 && (int)status < 1000);
    ASSERT_EQ(seen_values[status], 0);
    seen_values[status] = 1;
    pc_status parsed;
    ASSERT_TRUE(pc_status_from_code(pc_status_code(status), &parsed));
    ASSERT_EQ(parsed, status);
}

static void test_status_table(void) {
    pc_status_each(status_unique, NULL);
    ASSERT_STR_EQ(pc_status_code(PC_EXCEEDS_CREDITS), "exceeds_credits");
    ASSERT_EQ(pc_status_http(PC_WRITER_QUEUE_FULL), 503);
    ASSERT_TRUE(pc_status_transient(PC_EXCEEDS_CREDITS));
    ASSERT_FALSE(pc_status_transient(PC_ACCOUNTS_MUST_BE_DIFFERENT));
    ASSERT_STR_EQ(pc_status_code((pc_status)999), "unknown");
}

static void test_currencies(void) {
    ASSERT_EQ(pc_currency_find("USD")->exponent, 2);
    ASSERT_EQ(pc_currency_find("JPY")->exponent, 0);
    ASSERT_EQ(pc_currency_find("BHD")->exponent, 3);
    ASSERT_TRUE(pc_currency_find("usd") == NULL);
    ASSERT_TRUE(pc_currency_find("US") == NULL);
    ASSERT_TRUE(pc_currency_find("USDX") == NULL);
    ASSERT_TRUE(pc_currency_find("XXX") == NULL);
    ASSERT_TRUE(pc_currency_find("") == NULL);
    for (uint32_t i = 1; i < pc_currency_count(); i++) {
        ASSERT_TRUE(strcmp(pc_currency_at(i - 1)->code, pc_currency_at(i)->code) < 0);
    }
}

static void test_ids(void) {
    char buf[PC_ID_SIZE];
    ASSERT_TRUE(pc_id_valid("a"));
    ASSERT_TRUE(pc_id_valid("Acct_1.x:y-z"));
    ASSERT_FALSE(pc_id_valid(""));
    ASSERT_FALSE(pc_id_valid("has space"));
    ASSERT_FALSE(pc_id_valid("slash/no"));
    ASSERT_FALSE(pc_id_valid("caf\xc3\xa9"));
    memset(buf, 'a', 64);
    buf[64] = '\0';
    ASSERT_TRUE(pc_id_valid(buf));
    char long_id[70];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    ASSERT_FALSE(pc_id_valid(long_id));
    ASSERT_FALSE(pc_id_copy(buf, long_id));
    ASSERT_STR_EQ(buf, "");
}

static void test_overflow_add(void) {
    int64_t out = 5;
    ASSERT_FALSE(pc_add_i64(INT64_MAX, 1, &out));
    ASSERT_EQ(out, 5);
    ASSERT_TRUE(pc_add_i64(INT64_MAX - 1, 1, &out));
    ASSERT_TRUE(out == INT64_MAX);
}

static uint64_t rand_edge_u64(void) {
    static const uint64_t edges[] = {0, 1, 9, 10, 15, 16, 99, 100, UINT32_MAX, (uint64_t)INT64_MAX,
                                     (uint64_t)INT64_MAX + 1, UINT64_MAX, 10000000000000000000u, 0xfffffffffffu,
                                     0x1000000000000u};
    if (test_rand_below(3) == 0) return edges[test_rand_below(sizeof edges / sizeof edges[0])];
    return test_rand() >> test_rand_below(64);
}

static void test_int_texts(void) {
    for (int round = 0; round < 200000; round++) {
        uint64_t u = rand_edge_u64();
        uint64_t bits = rand_edge_u64();
        int64_t i = (int64_t)(test_rand_below(2) ? 0 - bits : bits); /* two's complement: any int64 */
        if (round == 0) i = INT64_MIN;
        char got[PC_INT_TEXT_SIZE], want[32];
        size_t bytes = pc_u64_text(got, u);
        snprintf(want, sizeof want, "%" PRIu64, u);
        ASSERT_STR_EQ(got, want);
        ASSERT_EQ(bytes, strlen(want));
        bytes = pc_i64_text(got, i);
        snprintf(want, sizeof want, "%" PRId64, i);
        ASSERT_STR_EQ(got, want);
        ASSERT_EQ(bytes, strlen(want));
        unsigned digits_min = 1 + test_rand_below(16);
        char hex[PC_HEX_TEXT_SIZE];
        bytes = pc_u64_hex(hex, u, digits_min);
        snprintf(want, sizeof want, "%0*" PRIx64, (int)digits_min, u);
        ASSERT_STR_EQ(hex, want);
        ASSERT_EQ(bytes, strlen(want));
    }
}

static void test_str_join(void) {
    static const char *const pieces[] = {"", "a", "attempt:", "0123456789abcdef", "\n", "idem:",
                                         "x-very-long-piece-of-forty-characters-xx"};
    for (int round = 0; round < 100000; round++) {
        const char *parts[5];
        size_t count = test_rand_below(6);
        for (size_t i = 0; i < count; i++) parts[i] = pieces[test_rand_below(sizeof pieces / sizeof pieces[0])];
        size_t dst_bytes = 1 + test_rand_below(120);
        char got[128], want[128];
        memset(got, '#', sizeof got);
        size_t total = pc_str_join(got, dst_bytes, parts, count);
        int n = snprintf(want, dst_bytes, "%s%s%s%s%s", count > 0 ? parts[0] : "", count > 1 ? parts[1] : "",
                         count > 2 ? parts[2] : "", count > 3 ? parts[3] : "", count > 4 ? parts[4] : "");
        ASSERT_STR_EQ(got, want);
        ASSERT_EQ(total, n);
        ASSERT_EQ(got[dst_bytes], '#'); /* nothing past the buffer */
    }
}

/* 24-byte draws (a nonce's size): none repeats among 'count' draws of this thread. */
#define DRAWS 400
#define DRAW_BYTES 24
static void draws_take(uint8_t out[DRAWS][DRAW_BYTES]) {
    for (int i = 0; i < DRAWS; i++) pc_random_pooled(out[i], DRAW_BYTES);
}

static int draws_overlap(uint8_t a[][DRAW_BYTES], int a_count, uint8_t b[][DRAW_BYTES], int b_count) {
    int same = 0;
    for (int i = 0; i < a_count; i++) {
        for (int j = 0; j < b_count; j++) same += (a != b || i != j) && memcmp(a[i], b[j], DRAW_BYTES) == 0;
    }
    return same;
}

static uint8_t thread_draws[DRAWS][DRAW_BYTES];
static void *draws_thread(void *arg) {
    (void)arg;
    draws_take(thread_draws);
    return NULL;
}

static void test_random_pooled(void) {
    static uint8_t mine[DRAWS][DRAW_BYTES], after[DRAWS][DRAW_BYTES];
    pc_random_pooled(mine[0], 5); /* a partly used pool, as at a fork in the middle of one */
    draws_take(mine);
    ASSERT_EQ(draws_overlap(mine, DRAWS, mine, DRAWS), 0);
    pthread_t thread;
    ASSERT_EQ(pthread_create(&thread, NULL, draws_thread, NULL), 0);
    ASSERT_EQ(pthread_join(thread, NULL), 0);
    ASSERT_EQ(draws_overlap(mine, DRAWS, thread_draws, DRAWS), 0);
    /* a child draws from a pool of its own: what it gets, the parent never gets */
    int pipe_fds[2];
    ASSERT_EQ(pipe(pipe_fds), 0);
    /* a whole pool, then a fresh one with room left at the fork */
    uint8_t scratch[PC_RANDOM_POOL_BYTES];
    pc_random_pooled(scratch, sizeof scratch);
    pc_random_pooled(scratch, 8);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        uint8_t child[DRAWS][DRAW_BYTES];
        draws_take(child);
        ssize_t written = write(pipe_fds[1], child, sizeof child);
        _exit(written == (ssize_t)sizeof child ? 0 : 1);
    }
    close(pipe_fds[1]);
    static uint8_t child[DRAWS][DRAW_BYTES];
    size_t got = 0;
    while (got < sizeof child) {
        ssize_t n = read(pipe_fds[0], (uint8_t *)child + got, sizeof child - got);
        ASSERT_TRUE(n > 0);
        got += (size_t)n;
    }
    close(pipe_fds[0]);
    int child_status = 0;
    ASSERT_EQ(waitpid(pid, &child_status, 0), pid);
    ASSERT_TRUE(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0);
    draws_take(after);
    ASSERT_EQ(draws_overlap(child, DRAWS, after, DRAWS), 0);
    ASSERT_EQ(draws_overlap(child, DRAWS, mine, DRAWS), 0);
    ASSERT_EQ(draws_overlap(after, DRAWS, mine, DRAWS), 0);
}

#define KEY_DRAW_BYTES 32 /* a pool holds a whole number of them */
static int draw_cmp(const void *a, const void *b) { return memcmp(a, b, KEY_DRAW_BYTES); }

/* A fresh thread: one kernel draw for the first PC_RANDOM_RESEED_FILLS pools (no
 * repeat among their draws), the next pool a second; a forked child draws
 * its own key at once. */
static void *kernel_draws_thread(void *arg) {
    uint64_t *failures = arg;
    size_t count = (size_t)PC_RANDOM_RESEED_FILLS * PC_RANDOM_POOL_BYTES / KEY_DRAW_BYTES;
    uint8_t(*draws)[KEY_DRAW_BYTES] = malloc(count * KEY_DRAW_BYTES);
    if (draws == NULL) return NULL;
    for (size_t i = 0; i < count; i++) pc_random_pooled(draws[i], KEY_DRAW_BYTES);
    *failures += pc_random_kernel_draws() != 1;
    qsort(draws, count, KEY_DRAW_BYTES, draw_cmp);
    for (size_t i = 1; i < count; i++) *failures += memcmp(draws[i - 1], draws[i], KEY_DRAW_BYTES) == 0;
    pc_random_pooled(draws[0], PC_RANDOM_POOL_BYTES / 2);
    *failures += pc_random_kernel_draws() != 2;
    free(draws);
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t one[KEY_DRAW_BYTES];
        pc_random_pooled(one, sizeof one); /* room left in the pool: drawn anew all the same */
        _exit(pc_random_kernel_draws() == 3 ? 0 : 1);
    }
    int child_status = 1;
    *failures += pid < 0 || waitpid(pid, &child_status, 0) != pid || !WIFEXITED(child_status) ||
                 WEXITSTATUS(child_status) != 0;
    return NULL;
}

static void test_random_kernel_draws(void) {
    uint64_t failures = 0;
    pthread_t thread;
    ASSERT_EQ(pthread_create(&thread, NULL, kernel_draws_thread, &failures), 0);
    ASSERT_EQ(pthread_join(thread, NULL), 0);
    ASSERT_EQ(failures, 0);
}

/* ---- actions deferred to the end of a batch ---- */

static uint32_t batch_ran[PC_BATCH_ACTIONS_MAX + 4];
static uint32_t batch_ran_count;

static void batch_record(void *arg) { batch_ran[batch_ran_count++] = (uint32_t)(uintptr_t)arg; }

static void batch_defer_inside(void *arg) {
    batch_record(arg);
    ASSERT_FALSE(pc_batch_defer(batch_record, (void *)(uintptr_t)99)); /* the batch ended */
}

static void *batch_other_thread(void *arg) {
    (void)arg;
    if (!pc_batch_defer(batch_record, (void *)(uintptr_t)7)) batch_record((void *)(uintptr_t)7);
    return NULL;
}

static void test_batch_defer(void) {
    /* outside a batch: nothing is deferred, the caller acts at once */
    ASSERT_FALSE(pc_batch_defer(batch_record, (void *)(uintptr_t)1));
    ASSERT_EQ(batch_ran_count, 0);
    /* inside: nothing runs before the outermost end, then all in order */
    pc_batch_begin();
    ASSERT_TRUE(pc_batch_defer(batch_record, (void *)(uintptr_t)1));
    pc_batch_begin();
    ASSERT_TRUE(pc_batch_defer(batch_record, (void *)(uintptr_t)2));
    pc_batch_end();
    ASSERT_EQ(batch_ran_count, 0);
    ASSERT_TRUE(pc_batch_defer(batch_defer_inside, (void *)(uintptr_t)3));
    pc_batch_end();
    ASSERT_EQ(batch_ran_count, 3);
    ASSERT_EQ(batch_ran[0], 1);
    ASSERT_EQ(batch_ran[1], 2);
    ASSERT_EQ(batch_ran[2], 3);
    /* full: the caller acts at once; the deferred ones still run at the end */
    batch_ran_count = 0;
    pc_batch_begin();
    for (uint32_t i = 0; i < PC_BATCH_ACTIONS_MAX; i++) ASSERT_TRUE(pc_batch_defer(batch_record, (void *)(uintptr_t)i));
    ASSERT_FALSE(pc_batch_defer(batch_record, (void *)(uintptr_t)1000));
    ASSERT_EQ(batch_ran_count, 0);
    pc_batch_end();
    ASSERT_EQ(batch_ran_count, PC_BATCH_ACTIONS_MAX);
    ASSERT_EQ(batch_ran[PC_BATCH_ACTIONS_MAX - 1], PC_BATCH_ACTIONS_MAX - 1);
    /* a batch is the thread's own: another thread's defer is not held by it */
    batch_ran_count = 0;
    pc_batch_begin();
    pthread_t thread;
    ASSERT_EQ(pthread_create(&thread, NULL, batch_other_thread, NULL), 0);
    ASSERT_EQ(pthread_join(thread, NULL), 0);
    ASSERT_EQ(batch_ran_count, 1);
    pc_batch_end();
    ASSERT_EQ(batch_ran_count, 1);
}

int main(void) {
    TEST_RUN(test_status_table);
    TEST_RUN(test_currencies);
    TEST_RUN(test_ids);
    TEST_RUN(test_overflow_add);
    TEST_RUN(test_int_texts);
    TEST_RUN(test_str_join);
    TEST_RUN(test_random_pooled);
    TEST_RUN(test_random_kernel_draws);
    TEST_RUN(test_batch_defer);
    return test_finish();
}
