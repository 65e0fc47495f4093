/* Goal: the decisions file's WAL is copied into the file in small steps
 * (RISK_STORE_CHECKPOINT_FRAMES), so that none of its flushes is long (a long one
 * holds the ledger's commit fsync behind it), and every decision stays durable.
 * Method: a store of its own takes decisions in batches of BATCH_DECISIONS (a flush
 * after each commits at once), thousands of pages in all; meanwhile the WAL file never
 * grows past RISK_STORE_CHECKPOINT_FRAMES and a batch's pages (it restarts after each
 * checkpoint: SQLite's default, 1000 pages, made it four times that); after a close
 * and a reopen every decision is there with its fields. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "risk/risk_internal.h"
#include "test.h"

#define DECISIONS 30000
#define BATCH_DECISIONS 200
#define BATCH_FRAMES_MAX 64  /* 200 rows of ~250 bytes: ~15 pages, their B-tree's path */
#define WAL_FRAME_BYTES (4096 + 24)
#define WAL_HEADER_BYTES 32

static void auth_make(risk_auth_t *auth, uint32_t i) {
    memset(auth, 0, sizeof *auth);
    auth->txn_id = i;
    auth->ts_s = 1717200000 + i;
    snprintf(auth->payer_id, sizeof auth->payer_id, "payer-%u", i % 977);
    snprintf(auth->payee_id, sizeof auth->payee_id, "merchant-%u", i % 13);
    auth->amount_minor = 100 + i;
    memcpy(auth->currency, "USD", 4);
    auth->mcc = 5411;
    memcpy(auth->country_payer, "US", 3);
    memcpy(auth->country_merchant, "DE", 3);
    snprintf(auth->device_id, sizeof auth->device_id, "device-%u", i % 4099);
    snprintf(auth->ip_prefix, sizeof auth->ip_prefix, "10.%u.%u", i % 200, i % 97);
    auth->account_age_days = (int32_t)(i % 3000);
}

static long long file_bytes(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

typedef struct {
    uint32_t count;
    bool in_order;
} seen_t;

static void on_auth(const risk_auth_t *auth, void *ctx_opaque) {
    seen_t *seen = ctx_opaque;
    risk_auth_t want;
    auth_make(&want, seen->count);
    seen->in_order = seen->in_order && auth->txn_id == want.txn_id && auth->amount_minor == want.amount_minor &&
                     strcmp(auth->payer_id, want.payer_id) == 0 && strcmp(auth->device_id, want.device_id) == 0;
    seen->count++;
}

static void test_wal_copied_in_steps(void) {
    char dir[] = "/tmp/paycore-risk-store-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[128], wal_path[140];
    snprintf(path, sizeof path, "%s/r.db", dir);
    snprintf(wal_path, sizeof wal_path, "%s-wal", path);
    risk_store_t *store;
    ASSERT_STATUS(risk_store_open(path, &store), PC_OK);
    long long wal_bytes_max = 0;
    for (uint32_t i = 0; i < DECISIONS; i++) {
        risk_auth_t auth;
        auth_make(&auth, i);
        risk_decision_t decision = {.decision_id = i + 1, .outcome = RISK_OUTCOME_APPROVE, .score = 0.01f};
        ASSERT_STATUS(risk_store_put_decision(store, &auth, &decision), PC_OK);
        if ((i + 1) % BATCH_DECISIONS != 0) continue;
        ASSERT_STATUS(risk_store_flush(store), PC_OK);
        long long wal_bytes = file_bytes(wal_path);
        if (wal_bytes > wal_bytes_max) wal_bytes_max = wal_bytes;
    }
    fprintf(stderr, "WAL at most %lld bytes (%lld frames)\n", wal_bytes_max,
            (wal_bytes_max - WAL_HEADER_BYTES) / WAL_FRAME_BYTES);
    ASSERT_TRUE(wal_bytes_max > 0);
    ASSERT_TRUE(wal_bytes_max <= WAL_HEADER_BYTES + (long long)(RISK_STORE_CHECKPOINT_FRAMES + BATCH_FRAMES_MAX) *
                                                       WAL_FRAME_BYTES);
    risk_store_close(store);
    ASSERT_STATUS(risk_store_open(path, &store), PC_OK);
    uint64_t max_id = 0;
    ASSERT_STATUS(risk_store_max_decision_id(store, &max_id), PC_OK);
    ASSERT_EQ(max_id, DECISIONS);
    seen_t seen = {.in_order = true};
    ASSERT_STATUS(risk_store_each_auth(store, 0, on_auth, &seen), PC_OK);
    ASSERT_EQ(seen.count, DECISIONS);
    ASSERT_TRUE(seen.in_order);
    risk_store_close(store);
    test_dir_remove(dir);
}

int main(void) {
    TEST_RUN(test_wal_copied_in_steps);
    return test_finish();
}
