/* Goal: the seeded fates follow their configuration: latencies are log-normal with the
 * configured p50 and p99, each rate is met over many keys, the draws of one key do not
 * depend on the config of another fault, and everything repeats from (seed, key,
 * arrival) alone. Method: sim_fate_draw over 20000 keys in process (no clock, no
 * network), empirical quantiles and fractions within a few percent. */
#include <math.h>
#include <sodium.h>

#include "gateway/sim_internal.h"
#include "test.h"

#define KEYS 20000

static sim_t sim_with_seed(uint64_t seed) {
    sim_t sim;
    memset(&sim, 0, sizeof sim);
    sim.kind = SIM_KIND_CARD;
    sim.config.seed = seed;
    return sim;
}

static sim_faults_t faults_from(const char *json_text) {
    json_t *object = json_loads(json_text, 0, NULL);
    ASSERT_TRUE(object != NULL);
    sim_faults_t faults;
    char error[200] = "";
    if (!sim_faults_parse(object, &faults, error, sizeof error)) TEST_FAIL("faults %s: %s", json_text, error);
    json_decref(object);
    return faults;
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void test_latency_quantiles(void) {
    sim_t sim = sim_with_seed(42);
    sim_faults_t faults = faults_from("{\"latency_p50_ms\":20,\"latency_p99_ms\":200,\"latency_max_ms\":100000}");
    static uint32_t latencies[KEYS];
    for (int i = 0; i < KEYS; i++) {
        char key[32];
        snprintf(key, sizeof key, "lat-%d", i);
        sim_fate_t fate;
        sim_fate_draw(&sim, &faults, key, 1, &fate);
        latencies[i] = fate.latency_ms;
        ASSERT_TRUE(fate.apply && !fate.error && !fate.timeout && !fate.garbage);
    }
    qsort(latencies, KEYS, sizeof latencies[0], compare_u32);
    uint32_t p50 = latencies[KEYS / 2], p99 = latencies[KEYS * 99 / 100];
    printf("latency p50=%u p99=%u (want 20, 200)\n", p50, p99);
    ASSERT_TRUE(p50 >= 19 && p50 <= 21);
    ASSERT_TRUE(p99 >= 180 && p99 <= 220);
    faults = faults_from("{\"latency_p50_ms\":20,\"latency_p99_ms\":200,\"latency_max_ms\":50}");
    for (int i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof key, "cap-%d", i);
        sim_fate_t fate;
        sim_fate_draw(&sim, &faults, key, 1, &fate);
        ASSERT_TRUE(fate.latency_ms <= 50);
    }
}

static void test_rates(void) {
    sim_t sim = sim_with_seed(7);
    sim_faults_t faults = faults_from("{\"error_rate\":0.1,\"timeout_rate\":0.2,\"timeout_applied_ratio\":0.25,"
                                      "\"garbage_rate\":0.5,\"garbage_modes\":[\"http_500\",\"close\"],"
                                      "\"garbage_applied_ratio\":0}");
    int errors = 0, timeouts = 0, timeouts_applied = 0, garbage = 0, closes = 0, applied = 0;
    for (int i = 0; i < KEYS; i++) {
        char key[32];
        snprintf(key, sizeof key, "rate-%d", i);
        sim_fate_t fate;
        sim_fate_draw(&sim, &faults, key, 1, &fate);
        errors += fate.error;
        timeouts += fate.timeout;
        timeouts_applied += fate.timeout && fate.apply;
        garbage += fate.garbage;
        closes += fate.garbage && fate.garbage_mode == SIM_GARBAGE_CLOSE;
        applied += fate.apply;
        ASSERT_TRUE(!(fate.error && (fate.timeout || fate.garbage)));
        ASSERT_TRUE(!(fate.garbage && fate.apply)); /* garbage_applied_ratio 0 */
    }
    printf("errors=%d timeouts=%d applied=%d garbage=%d closes=%d\n", errors, timeouts, timeouts_applied, garbage, closes);
    /* in order: 10% errors; 20% of the rest time out; 50% of what is left is garbage */
    ASSERT_TRUE(abs(errors - KEYS / 10) < KEYS / 100);
    ASSERT_TRUE(abs(timeouts - KEYS * 18 / 100) < KEYS / 100);
    ASSERT_TRUE(abs(timeouts_applied - timeouts / 4) < timeouts / 20);
    ASSERT_TRUE(abs(garbage - KEYS * 36 / 100) < KEYS / 100);
    ASSERT_TRUE(abs(closes - garbage / 2) < garbage / 20);
    ASSERT_EQ(applied, KEYS - garbage - (timeouts - timeouts_applied));
}

/* One key's fate: by seed, key and arrival only; other faults' settings do not shift it. */
static void test_repeatable(void) {
    sim_t seven = sim_with_seed(7), eight = sim_with_seed(8);
    sim_faults_t errors_only = faults_from("{\"error_rate\":0.5}");
    sim_faults_t with_latency = faults_from("{\"error_rate\":0.5,\"latency_p50_ms\":5,\"latency_p99_ms\":50}");
    int errors_seen = 0, other_seed_differs = 0, arrival_differs = 0;
    for (int i = 0; i < 1000; i++) {
        char key[32];
        snprintf(key, sizeof key, "rep-%d", i);
        sim_fate_t a, b, c, d, e;
        sim_fate_draw(&seven, &errors_only, key, 1, &a);
        sim_fate_draw(&seven, &errors_only, key, 1, &b);
        sim_fate_draw(&seven, &with_latency, key, 1, &c);
        sim_fate_draw(&eight, &errors_only, key, 1, &d);
        sim_fate_draw(&seven, &errors_only, key, 2, &e);
        ASSERT_EQ(a.error, b.error);
        ASSERT_EQ(a.error, c.error); /* configuring latency does not move the error draw */
        other_seed_differs += a.error != d.error;
        arrival_differs += a.error != e.error;
        errors_seen += a.error;
    }
    ASSERT_TRUE(other_seed_differs > 400 && other_seed_differs < 600);
    ASSERT_TRUE(arrival_differs > 400 && arrival_differs < 600);
    ASSERT_TRUE(errors_seen > 400 && errors_seen < 600);
    char id_a[SIM_ID_SIZE], id_b[SIM_ID_SIZE], id_c[SIM_ID_SIZE];
    sim_make_id(&seven, "auth_", "authorization", "k1", id_a);
    sim_make_id(&seven, "auth_", "authorization", "k1", id_b);
    sim_make_id(&eight, "auth_", "authorization", "k1", id_c);
    ASSERT_STR_EQ(id_a, id_b);
    ASSERT_TRUE(strcmp(id_a, id_c) != 0);
    ASSERT_EQ(strlen(id_a), 5 + 24);
}

/* Faults that cannot fire skip the stream: the fate is what the stream gives under
 * rates no draw reaches. */
static void test_quiet_faults(void) {
    sim_t sim = sim_with_seed(3);
    sim_faults_t quiet = faults_from("{}");
    sim_faults_t drawn = faults_from("{\"error_rate\":1e-300}");
    for (int i = 0; i < 1000; i++) {
        char key[32];
        snprintf(key, sizeof key, "quiet-%d", i);
        sim_fate_t a, b;
        memset(&b, 0xa5, sizeof b);
        sim_fate_draw(&sim, &quiet, key, 1 + (uint64_t)(i % 3), &a);
        sim_fate_draw(&sim, &drawn, key, 1 + (uint64_t)(i % 3), &b);
        ASSERT_EQ(a.latency_ms, b.latency_ms);
        ASSERT_EQ(a.error, b.error);
        ASSERT_EQ(a.timeout, b.timeout);
        ASSERT_EQ(a.garbage, b.garbage);
        ASSERT_EQ(a.garbage_mode, b.garbage_mode);
        ASSERT_TRUE(a.apply && b.apply);
    }
}

/* Ids and request hashes are the documented digests (docs/channels.md): records written
 * by earlier builds keep matching. */
static void id_documented(const sim_t *sim, const char *parts, size_t parts_bytes) {
    char id[SIM_ID_SIZE];
    sim_make_id(sim, "cap_", "capture", "gwk_0123", id);
    unsigned char digest[32];
    crypto_generichash(digest, 32, (const unsigned char *)parts, parts_bytes, NULL, 0);
    char want[SIM_ID_SIZE] = "cap_";
    sodium_bin2hex(want + 4, 25, digest, 12);
    ASSERT_STR_EQ(id, want);
}

static void test_digests_documented(void) {
    sim_t sim = sim_with_seed(12345);
    static const char parts[] = "paycore-sim-id\0card\0" "12345\0capture\0gwk_0123";
    id_documented(&sim, parts, sizeof parts);
    /* Another seed, another kind, then the first again: each id from its own constant
     * parts (sim_make_id keeps the hash of the last ones seen). */
    sim_t other_seed = sim_with_seed(9);
    static const char other_seed_parts[] = "paycore-sim-id\0card\0" "9\0capture\0gwk_0123";
    id_documented(&other_seed, other_seed_parts, sizeof other_seed_parts);
    sim_t wallet = sim_with_seed(9);
    wallet.kind = SIM_KIND_WALLET;
    static const char wallet_parts[] = "paycore-sim-id\0wallet\0" "9\0capture\0gwk_0123";
    id_documented(&wallet, wallet_parts, sizeof wallet_parts);
    id_documented(&sim, parts, sizeof parts);

    json_t *body = json_loads("{\"b\":1,\"a\":{\"y\":\"x\",\"c\":true}}", 0, NULL);
    char hash[65], want_hash[65];
    sim_request_hash("POST", "/v1/authorizations", body, hash);
    static const char hashed[] = "POST\0/v1/authorizations\0{\"a\":{\"c\":true,\"y\":\"x\"},\"b\":1}";
    unsigned char sha[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(sha, (const unsigned char *)hashed, sizeof hashed - 1);
    sodium_bin2hex(want_hash, sizeof want_hash, sha, sizeof sha);
    ASSERT_STR_EQ(hash, want_hash);
    json_decref(body);
}

static void test_outage_windows(void) {
    sim_faults_t faults = faults_from("{\"outages\":[{\"start_ms\":1000,\"duration_ms\":100,\"period_ms\":500}]}");
    uint64_t epoch = faults.epoch_mono_ms;
    ASSERT_FALSE(sim_in_outage(&faults, epoch + 999));
    ASSERT_TRUE(sim_in_outage(&faults, epoch + 1000));
    ASSERT_TRUE(sim_in_outage(&faults, epoch + 1099));
    ASSERT_FALSE(sim_in_outage(&faults, epoch + 1100));
    ASSERT_TRUE(sim_in_outage(&faults, epoch + 1550));
    ASSERT_FALSE(sim_in_outage(&faults, epoch + 1600));
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_latency_quantiles);
    TEST_RUN(test_quiet_faults);
    TEST_RUN(test_digests_documented);
    TEST_RUN(test_rates);
    TEST_RUN(test_repeatable);
    TEST_RUN(test_outage_windows);
    return test_finish();
}
