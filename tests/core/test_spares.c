/* Goal: a capped spare list (core/spares.h) hands out zeroed records, keeps at most its
 * cap of those given back (the rest are freed), and reuses what it kept; several
 * threads taking and giving at once keep its count within the cap.
 * Method: records written full of a byte before they are given back; the count read
 * after each step; four threads each taking and giving a few thousand times (run under
 * ASan, TSan: a leak, a double free or a race fails). Under ASan a kept record is
 * poisoned: a child process that writes to a record after giving it back must die of
 * the report, one that takes it again first must not, and records still kept at the
 * exit are not reported as leaks. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spares.h"
#include "test.h"

#define RECORD_BYTES 200
#define CAP 4

static bool all_zero(const uint8_t *record) {
    for (size_t i = 0; i < RECORD_BYTES; i++) {
        if (record[i] != 0) return false;
    }
    return true;
}

static void test_cap_and_reuse(void) {
    pc_spares_t spares;
    pc_spares_init(&spares, RECORD_BYTES, CAP);
    uint8_t *records[CAP + 3];
    for (int i = 0; i < CAP + 3; i++) {
        records[i] = pc_spares_take(&spares);
        ASSERT_TRUE(records[i] != NULL);
        ASSERT_TRUE(all_zero(records[i]));
        memset(records[i], 0xa5, RECORD_BYTES);
    }
    ASSERT_EQ(spares.count, 0);
    for (int i = 0; i < CAP + 3; i++) pc_spares_give(&spares, records[i]);
    ASSERT_EQ(spares.count, CAP); /* the three past the cap were freed */
    pc_spares_give(&spares, NULL);
    ASSERT_EQ(spares.count, CAP);
    uint8_t *again = pc_spares_take(&spares);
    ASSERT_EQ(spares.count, CAP - 1);
    ASSERT_TRUE(again == records[CAP - 1]); /* the last one kept comes back first */
    ASSERT_TRUE(all_zero(again));           /* zeroed, though given back full of 0xa5 */
    free(again);                            /* a taken record may also be freed */
    pc_spares_destroy(&spares);             /* frees the kept ones */
}

static void *churn(void *arg) {
    pc_spares_t *spares = arg;
    for (int i = 0; i < 3000; i++) {
        uint8_t *a = pc_spares_take(spares), *b = pc_spares_take(spares);
        if (a == NULL || b == NULL || !all_zero(a) || !all_zero(b)) return (void *)1;
        a[0] = b[RECORD_BYTES - 1] = 1;
        pc_spares_give(spares, a);
        pc_spares_give(spares, b);
    }
    return NULL;
}

static void test_threads(void) {
    pc_spares_t spares;
    pc_spares_init(&spares, RECORD_BYTES, CAP);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_create(&threads[i], NULL, churn, &spares), 0);
    for (int i = 0; i < 4; i++) {
        void *failed = NULL;
        ASSERT_EQ(pthread_join(threads[i], &failed), 0);
        ASSERT_TRUE(failed == NULL);
    }
    ASSERT_TRUE(spares.count <= CAP);
    ASSERT_TRUE(spares.count > 0);
    pc_spares_destroy(&spares);
}

#if defined(__SANITIZE_ADDRESS__)
/* Runs 'step' in a child; true when the child ended normally with status 0. */
static bool child_survives(void (*step)(pc_spares_t *)) {
    pid_t pid = fork();
    if (pid == 0) {
        int null_fd = open("/dev/null", O_WRONLY); /* the expected report stays out of the log */
        if (null_fd >= 0) dup2(null_fd, 2);
        pc_spares_t spares;
        pc_spares_init(&spares, RECORD_BYTES, CAP);
        step(&spares);
        _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void write_after_give(pc_spares_t *spares) {
    uint8_t *volatile record = pc_spares_take(spares);
    pc_spares_give(spares, record);
    record[RECORD_BYTES / 2] = 1; /* a use after the give: ASan reports it */
}

static void write_after_take_again(pc_spares_t *spares) {
    uint8_t *volatile record = pc_spares_take(spares);
    pc_spares_give(spares, record);
    record = pc_spares_take(spares);
    record[RECORD_BYTES / 2] = 1;
    pc_spares_give(spares, record);
    pc_spares_destroy(spares);
}

/* Records kept in a list that lives to the exit (as the API's do) are not leaks: the
 * child ends through exit(), where LeakSanitizer looks, and fails if it reports one. */
static pc_spares_t kept_at_exit;

static void kept_until_exit(pc_spares_t *spares) {
    (void)spares;
    pc_spares_init(&kept_at_exit, RECORD_BYTES, CAP);
    void **records = calloc(3, sizeof *records); /* freed before the exit: not on the stack */
    if (records == NULL) exit(3);
    for (int i = 0; i < 3; i++) records[i] = pc_spares_take(&kept_at_exit);
    for (int i = 0; i < 3; i++) pc_spares_give(&kept_at_exit, records[i]);
    free(records);
    exit(0);
}

static void test_kept_records_poisoned(void) {
    fflush(NULL);
    ASSERT_FALSE(child_survives(write_after_give));
    ASSERT_TRUE(child_survives(write_after_take_again));
    ASSERT_TRUE(child_survives(kept_until_exit));
}
#endif

int main(void) {
    TEST_RUN(test_cap_and_reuse);
    TEST_RUN(test_threads);
#if defined(__SANITIZE_ADDRESS__)
    TEST_RUN(test_kept_records_poisoned);
#endif
    return test_finish();
}
