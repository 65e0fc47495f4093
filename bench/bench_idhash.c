/* bench/bench_idhash.c: what keying id hashes costs. The ledger's maps and the store's
 * id index hash client-chosen ids with SipHash-2-4 under a secret key
 * (pc_hash_keyed); the baseline is the unkeyed pc_hash64 they used before, measured
 * in the same run on the same ids, interleaved. One line per id length:
 *   id_hash bytes=B ids=N keyed_ns_per_id=… baseline=pc_hash64 baseline_ns_per_id=… ratio=…
 * (ratio = keyed / baseline: how many times the baseline's time a keyed hash takes).
 * --quick: fewer rounds. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"

#define IDS 4096

static char ids[IDS][PC_ID_SIZE];
static size_t id_bytes[IDS];

static void ids_make(const char *format) {
    for (uint32_t i = 0; i < IDS; i++) {
        snprintf(ids[i], sizeof ids[i], format, (unsigned long long)(i * 0x9E3779B97F4A7C15ull) % 10000000ull);
        id_bytes[i] = strlen(ids[i]);
    }
}

static double keyed_ns(const pc_hash_key_t *key, uint32_t rounds, uint64_t *sink) {
    uint64_t start_ns = pc_mono_ns();
    for (uint32_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < IDS; i++) *sink += pc_hash_keyed(key, ids[i], id_bytes[i]);
    }
    return (double)(pc_mono_ns() - start_ns) / ((double)rounds * IDS);
}

static double baseline_ns(uint32_t rounds, uint64_t *sink) {
    uint64_t start_ns = pc_mono_ns();
    for (uint32_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < IDS; i++) *sink += pc_hash64(ids[i], id_bytes[i]);
    }
    return (double)(pc_mono_ns() - start_ns) / ((double)rounds * IDS);
}

/* Best of several interleaved repetitions of each: the least disturbed by others. */
static void figure(const char *format, uint32_t rounds) {
    ids_make(format);
    pc_hash_key_t key;
    pc_hash_key_random(&key);
    uint64_t sink = 0;
    double keyed_best = 1e18, baseline_best = 1e18;
    (void)keyed_ns(&key, rounds, &sink); /* warm-up: caches, clock, lazy binding */
    for (int repetition = 0; repetition < 7; repetition++) {
        double keyed = keyed_ns(&key, rounds, &sink), baseline = baseline_ns(rounds, &sink);
        if (keyed < keyed_best) keyed_best = keyed;
        if (baseline < baseline_best) baseline_best = baseline;
    }
    printf("id_hash bytes=%zu ids=%u keyed_ns_per_id=%.1f baseline=pc_hash64 baseline_ns_per_id=%.1f ratio=%.2f\n",
           id_bytes[0], IDS, keyed_best, baseline_best, keyed_best / baseline_best);
    if (sink == 42) printf("#\n"); /* keeps the hashes from being optimised away */
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    uint32_t rounds = quick ? 50 : 500;
    figure("acct-%07llu", rounds);      /* 12 bytes: an account id */
    figure("tr-%016llu", rounds);       /* 19 bytes: a transfer id */
    figure("order-%040llu", rounds);    /* 46 bytes */
    return 0;
}
