/* Goal: every online feature sees only the past and respects its window edges;
 * idle keys are evicted; key caps count what they drop; a snapshot restores the
 * same state and a corrupt one changes nothing.
 * Method: hand-built payment streams with timestamps on the window boundaries. */
#include <math.h>
#include <stdlib.h>

#include "risk/risk.h"
#include "risk_test_util.h"
#include "test.h"

#define T0 1717200000

static risk_features_t *open_small(uint32_t payers_max, uint32_t entities_max, uint32_t idle_s) {
    risk_features_config_t c;
    risk_features_config_default(&c);
    c.payers_max = payers_max;
    c.entities_max = entities_max;
    c.idle_s = idle_s;
    risk_features_t *f = NULL;
    ASSERT_STATUS(risk_features_open(&c, &f), PC_OK);
    return f;
}

static float feature_of(risk_features_t *f, const risk_auth_t *a, risk_feature which) {
    float row[RISK_FEATURE_COUNT];
    risk_features_compute(f, a, row);
    return row[which];
}

/* Two payments at T0 and T0+3599: at T0+3600 only the second is inside 1 h; at
 * T0+86400 the first has left the 24 h window, at T0+86399 it has not. */
static void test_window_edges(void) {
    risk_features_t *f = open_small(64, 64, RISK_IDLE_S_DEFAULT);
    risk_auth_t a = auth_make(T0, "P1", "M1", 1000);
    risk_features_observe(f, &a);
    a = auth_make(T0 + 3599, "P1", "M2", 3000);
    risk_features_observe(f, &a);
    risk_auth_t probe = auth_make(T0 + 3600, "P1", "M3", 4000);
    ASSERT_EQ(feature_of(f, &probe, RISK_F_payer_count_1h), 1);
    ASSERT_EQ(feature_of(f, &probe, RISK_F_payer_count_24h), 2);
    ASSERT_EQ(feature_of(f, &probe, RISK_F_payer_distinct_merchants_24h), 2);
    ASSERT_EQ(feature_of(f, &probe, RISK_F_payer_merchant_seen), 0);
    probe.ts_s = T0 + 86399;
    ASSERT_EQ(feature_of(f, &probe, RISK_F_payer_count_24h), 2);
    probe.ts_s = T0 + 86400;
    ASSERT_EQ(feature_of(f, &probe, RISK_F_payer_count_24h), 1);
    ASSERT_EQ(feature_of(f, &probe, RISK_F_payer_count_1h), 0);
    /* amounts 10 and 30 USD: mean 20, max 30; 40 USD is 2x the mean */
    ASSERT_TRUE(fabsf(feature_of(f, &probe, RISK_F_payer_amount_ratio_mean) - 2.0f) < 1e-5f);
    ASSERT_TRUE(fabsf(feature_of(f, &probe, RISK_F_payer_amount_ratio_max) - 4.0f / 3.0f) < 1e-5f);
    ASSERT_TRUE(fabsf(feature_of(f, &probe, RISK_F_payer_secs_since_prev_log) -
                      logf(1.0f + 86400.0f - 3599.0f)) < 1e-3f);
    risk_features_close(f);
}

/* compute() never changes the state; a row does not see itself. */
static void test_past_only(void) {
    risk_features_t *f = open_small(64, 64, RISK_IDLE_S_DEFAULT);
    risk_auth_t a = auth_make(T0, "P1", "M1", 1000);
    ASSERT_EQ(feature_of(f, &a, RISK_F_payer_count_prior_log), 0);
    ASSERT_EQ(feature_of(f, &a, RISK_F_payer_count_prior_log), 0);
    ASSERT_TRUE(isnan(feature_of(f, &a, RISK_F_payer_amount_ratio_mean)));
    risk_features_observe(f, &a);
    ASSERT_TRUE(fabsf(feature_of(f, &a, RISK_F_payer_count_prior_log) - logf(2.0f)) < 1e-6f);
    ASSERT_EQ(feature_of(f, &a, RISK_F_merchant_count_24h) > 0.99f, 1);
    risk_features_close(f);
}

/* Novelty: a known device, a new device, no device (missing, not "new"). */
static void test_novelty_and_currency(void) {
    risk_features_t *f = open_small(64, 64, RISK_IDLE_S_DEFAULT);
    risk_auth_t a = auth_make(T0, "P1", "M1", 1000);
    strcpy(a.device_id, "dev-a");
    strcpy(a.ip_prefix, "10.0.1");
    a.channel = RISK_CHANNEL_ECOMMERCE;
    risk_features_observe(f, &a);
    a.ts_s += 60;
    ASSERT_EQ(feature_of(f, &a, RISK_F_payer_device_seen), 1);
    ASSERT_EQ(feature_of(f, &a, RISK_F_payer_ip_seen), 1);
    ASSERT_EQ(feature_of(f, &a, RISK_F_device_distinct_payers), 1);
    strcpy(a.device_id, "dev-b");
    ASSERT_EQ(feature_of(f, &a, RISK_F_payer_device_seen), 0);
    a.device_id[0] = '\0';
    ASSERT_TRUE(isnan(feature_of(f, &a, RISK_F_payer_device_seen)));
    ASSERT_TRUE(isnan(feature_of(f, &a, RISK_F_device_count_1h)));
    /* cross-border, foreign currency, FX: 920 EUR cents = 10 USD */
    strcpy(a.country_merchant, "FR");
    strcpy(a.currency, "EUR");
    a.amount_minor = 920;
    ASSERT_EQ(feature_of(f, &a, RISK_F_cross_border), 1);
    ASSERT_EQ(feature_of(f, &a, RISK_F_currency_foreign), 1);
    ASSERT_EQ(feature_of(f, &a, RISK_F_payer_country_seen), 0);
    ASSERT_TRUE(fabsf(feature_of(f, &a, RISK_F_amount_usd_log) - logf(11.0f)) < 1e-5f);
    strcpy(a.country_payer, "ZZ"); /* unknown country: no local hour, no home currency */
    ASSERT_TRUE(isnan(feature_of(f, &a, RISK_F_local_hour)));
    ASSERT_TRUE(isnan(feature_of(f, &a, RISK_F_currency_foreign)));
    risk_features_close(f);
}

/* A second payer on the same device shows in the device's distinct payers. */
static void test_device_sharing(void) {
    risk_features_t *f = open_small(64, 64, RISK_IDLE_S_DEFAULT);
    for (int i = 0; i < 3; i++) {
        char payer[16];
        snprintf(payer, sizeof(payer), "P%d", i);
        risk_auth_t a = auth_make(T0 + i, payer, "M1", 500);
        strcpy(a.device_id, "shared");
        risk_features_observe(f, &a);
    }
    risk_auth_t a = auth_make(T0 + 10, "P9", "M1", 500);
    strcpy(a.device_id, "shared");
    ASSERT_EQ(feature_of(f, &a, RISK_F_device_distinct_payers), 3);
    ASSERT_TRUE(feature_of(f, &a, RISK_F_device_count_1h) > 2.9f);
    risk_features_close(f);
}

/* A scope's payers, devices and addresses are its own: payments in the shared state
 * (scope 0) and in scope A are not seen from scope B, nor B's from A or the shared
 * state; within a scope they count as ever. The payee's counters are not scoped. */
static void test_scopes(void) {
    risk_features_t *f = open_small(64, 64, RISK_IDLE_S_DEFAULT);
    risk_auth_t shared = auth_make(T0, "P1", "MA", 500);
    strcpy(shared.device_id, "dev");
    strcpy(shared.ip_prefix, "10.1.2");
    risk_auth_t in_a = shared;
    risk_auth_t in_b = shared;
    risk_auth_scope(&in_a, "MA");
    risk_auth_scope(&in_b, "MB");
    ASSERT_TRUE(in_a.scope != 0 && in_a.scope != in_b.scope && strcmp(in_a.owner_id, "MA") == 0);
    ASSERT_STR_EQ(in_a.payer_id, "P1"); /* the ids stay: blocklists match them */
    for (int i = 0; i < 3; i++) {
        shared.ts_s = in_a.ts_s = T0 + i;
        risk_features_observe(f, &shared);
        risk_features_observe(f, &in_a);
    }
    in_a.ts_s = in_b.ts_s = shared.ts_s = T0 + 10;
    ASSERT_EQ(feature_of(f, &shared, RISK_F_payer_count_1h), 3);
    ASSERT_EQ(feature_of(f, &in_a, RISK_F_payer_count_1h), 3);
    ASSERT_EQ(feature_of(f, &in_a, RISK_F_device_distinct_payers), 1);
    ASSERT_EQ(feature_of(f, &in_b, RISK_F_payer_count_prior_log), 0);
    ASSERT_TRUE(isnan(feature_of(f, &in_b, RISK_F_payer_count_1h)) || feature_of(f, &in_b, RISK_F_payer_count_1h) == 0);
    ASSERT_EQ(feature_of(f, &in_b, RISK_F_device_distinct_payers), 0);
    ASSERT_EQ(feature_of(f, &in_b, RISK_F_ip_distinct_payers), 0);
    ASSERT_TRUE(feature_of(f, &in_b, RISK_F_merchant_count_1h) > 5.9f); /* MA's own counters: 6 payments */
    risk_payer_view_t view;
    risk_features_payer_view(f, "P1", in_b.scope, in_b.ts_s, 3600, 0, 0, &view);
    ASSERT_TRUE(!view.found);
    risk_features_payer_view(f, "P1", in_a.scope, in_a.ts_s, 3600, 0, 0, &view);
    ASSERT_TRUE(view.found && view.count_window == 3);
    for (int i = 0; i < 4; i++) {
        in_b.ts_s = T0 + 20 + i;
        risk_features_observe(f, &in_b);
    }
    shared.ts_s = in_a.ts_s = T0 + 30;
    ASSERT_EQ(feature_of(f, &shared, RISK_F_payer_count_1h), 3);
    ASSERT_EQ(feature_of(f, &in_a, RISK_F_payer_count_1h), 3);
    risk_features_close(f);
}

/* Idle keys go; busy keys stay; the stats say so. */
static void test_eviction(void) {
    risk_features_t *f = open_small(64, 64, 1000);
    risk_auth_t old = auth_make(T0, "P-old", "M-old", 1000);
    risk_features_observe(f, &old);
    risk_auth_t busy = auth_make(T0 + 900, "P-busy", "M-busy", 1000);
    risk_features_observe(f, &busy);
    ASSERT_EQ(risk_features_evict_idle(f, T0 + 1000), 0); /* last_ts == cutoff stays */
    ASSERT_EQ(risk_features_evict_idle(f, T0 + 1001), 2); /* P-old and M-old */
    risk_features_stats_t st;
    risk_features_stats(f, &st);
    ASSERT_EQ(st.payers, 1);
    ASSERT_EQ(st.entities, 1);
    ASSERT_EQ(st.evicted_total, 2);
    ASSERT_EQ(feature_of(f, &old, RISK_F_payer_count_prior_log), 0);
    ASSERT_TRUE(feature_of(f, &busy, RISK_F_payer_count_prior_log) > 0.5f);
    risk_features_close(f);
}

/* At the cap a new key is dropped (counted), unless an idle key can make room. */
static void test_key_cap(void) {
    risk_features_t *f = open_small(2, 64, 100000);
    for (int i = 0; i < 3; i++) {
        char payer[16];
        snprintf(payer, sizeof(payer), "P%d", i);
        risk_auth_t a = auth_make(T0 + i, payer, "M1", 100);
        risk_features_observe(f, &a);
    }
    risk_features_stats_t st;
    risk_features_stats(f, &st);
    ASSERT_EQ(st.payers, 2);
    ASSERT_EQ(st.dropped_total, 1);
    /* much later, P0 and P1 are idle: a new payer evicts them and is tracked */
    risk_auth_t late = auth_make(T0 + 200000, "P-late", "M1", 100);
    risk_features_observe(f, &late);
    risk_features_stats(f, &st);
    ASSERT_EQ(st.dropped_total, 1);
    ASSERT_EQ(st.payers, 1);
    ASSERT_TRUE(st.evicted_total >= 2);
    risk_features_close(f);
}

/* 1M payers and 1M merchants/devices/IPs fit in 512 MiB (allocated, not touched). */
static void test_memory_bound(void) {
    risk_features_config_t c;
    risk_features_config_default(&c);
    ASSERT_TRUE(c.payers_max >= 1000000);
    risk_features_t *f = NULL;
    ASSERT_STATUS(risk_features_open(&c, &f), PC_OK);
    risk_features_stats_t st;
    risk_features_stats(f, &st);
    printf("features memory_bytes=%llu for payers_max=%u entities_max=%u\n",
           (unsigned long long)st.memory_bytes, c.payers_max, c.entities_max);
    ASSERT_TRUE(st.memory_bytes <= 512ull * 1024 * 1024);
    risk_features_close(f);
}

/* At the default caps (the tables' arrays are mappings of their own, in huge pages
 * when the kernel gives them): 20,000 payers, each with a device and an address of its
 * own, seen twice: each finds its own history and its own device's and address's
 * counts; a state opened after it starts empty. */
static void test_many_keys_default_caps(void) {
    risk_features_config_t c;
    risk_features_config_default(&c);
    risk_features_t *f = NULL;
    ASSERT_STATUS(risk_features_open(&c, &f), PC_OK);
    enum { PAYERS = 20000 };
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < PAYERS; i++) {
            char payer[16];
            snprintf(payer, sizeof payer, "cus%d", i);
            risk_auth_t a = auth_make(T0 + round * 60, payer, "M1", 1000 + i);
            snprintf(a.device_id, sizeof a.device_id, "dev_%d", i);
            snprintf(a.ip_prefix, sizeof a.ip_prefix, "10.%d.%d", i / 256, i % 256);
            if (round == 1 && i % 997 == 0) {
                ASSERT_EQ(feature_of(f, &a, RISK_F_payer_count_24h), 1);
                ASSERT_EQ(feature_of(f, &a, RISK_F_payer_device_seen), 1);
                ASSERT_EQ(feature_of(f, &a, RISK_F_device_distinct_payers), 1);
                ASSERT_EQ(feature_of(f, &a, RISK_F_ip_distinct_payers), 1);
            }
            risk_features_observe(f, &a);
        }
    }
    risk_features_stats_t st;
    risk_features_stats(f, &st);
    ASSERT_EQ(st.payers, PAYERS);
    ASSERT_EQ(st.entities, 1 + 2 * PAYERS);
    ASSERT_EQ(st.dropped_total, 0);
    risk_features_close(f);
    ASSERT_STATUS(risk_features_open(&c, &f), PC_OK);
    risk_auth_t again = auth_make(T0 + 120, "cus0", "M1", 1000);
    ASSERT_EQ(feature_of(f, &again, RISK_F_payer_count_24h), 0);
    risk_features_stats(f, &st);
    ASSERT_EQ(st.payers + st.entities, 0);
    risk_features_close(f);
}

static bool rows_equal(const float *a, const float *b) {
    for (int i = 0; i < RISK_FEATURE_COUNT; i++) {
        if (isnan(a[i]) != isnan(b[i])) return false;
        if (!isnan(a[i]) && a[i] != b[i]) return false;
    }
    return true;
}

/* Snapshot, restore into a fresh state: the same features; a corrupt file is
 * refused and the state it was loaded into is unchanged. */
static void test_snapshot_restart(void) {
    char path[256];
    temp_path(path, sizeof(path), "snapshot");
    risk_features_t *f = open_small(64, 64, RISK_IDLE_S_DEFAULT);
    for (int i = 0; i < 40; i++) {
        char payer[16];
        snprintf(payer, sizeof(payer), "P%d", i % 5);
        risk_auth_t a = auth_make(T0 + i * 97, payer, i % 2 ? "M1" : "M2", 100 + i);
        strcpy(a.device_id, i % 3 ? "d1" : "d2");
        risk_features_observe(f, &a);
    }
    ASSERT_STATUS(risk_features_save(f, path, 77), PC_OK);
    risk_features_t *g = open_small(64, 64, RISK_IDLE_S_DEFAULT);
    uint64_t tag = 0;
    ASSERT_STATUS(risk_features_load(g, path, &tag), PC_OK);
    ASSERT_EQ(tag, 77);
    risk_auth_t probe = auth_make(T0 + 4000, "P3", "M1", 250);
    strcpy(probe.device_id, "d1");
    float before[RISK_FEATURE_COUNT], after[RISK_FEATURE_COUNT];
    risk_features_compute(f, &probe, before);
    risk_features_compute(g, &probe, after);
    ASSERT_TRUE(rows_equal(before, after));
    /* flip one byte in the middle: refused, 'g' keeps its state */
    FILE *file = fopen(path, "r+b");
    ASSERT_TRUE(file != NULL);
    fseek(file, 200, SEEK_SET);
    int c = fgetc(file);
    fseek(file, 200, SEEK_SET);
    fputc(c ^ 0x5a, file);
    fclose(file);
    ASSERT_STATUS(risk_features_load(g, path, &tag), PC_RISK_SNAPSHOT_INVALID);
    risk_features_compute(g, &probe, after);
    ASSERT_TRUE(rows_equal(before, after));
    unlink(path);
    ASSERT_STATUS(risk_features_load(g, path, &tag), PC_NOT_FOUND);
    risk_features_close(f);
    risk_features_close(g);
}

int main(void) {
    TEST_RUN(test_window_edges);
    TEST_RUN(test_past_only);
    TEST_RUN(test_novelty_and_currency);
    TEST_RUN(test_device_sharing);
    TEST_RUN(test_scopes);
    TEST_RUN(test_eviction);
    TEST_RUN(test_key_cap);
    TEST_RUN(test_memory_bound);
    TEST_RUN(test_many_keys_default_caps);
    TEST_RUN(test_snapshot_restart);
    return test_finish();
}
