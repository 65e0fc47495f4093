/* bench/bench_idhash.c: what keying id hashes costs. The ledger's maps and the store's
 * id index hash client-chosen ids with SipHash-2-4 under a secret key
 * (pc_hash_keyed); the baseline is the unkeyed pc_hash64 they used before, measured
 * in the same run on the same ids, interleaved. One line per id length:
 *   id_hash bytes=B ids=N keyed_ns_per_id=… baseline=pc_hash64 baseline_ns_per_id=… ratio=…
 * (ratio = keyed / baseline: how many times the baseline's time a keyed hash takes),
 * then the ledger's hot path: a transfer's two account lookups in a 1M-account idmap
 * (both hashes, both slots prefetched, both finds, as ledger/transfer.c does):
 *   id_lookup accounts=A keyed_ns_per_transfer=… baseline=pc_hash64 baseline_ns_per_transfer=… ratio=…
 * --quick: fewer rounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "ledger/idmap.h"

#define IDS 4096

/* CPU time of this thread: what others running on the machine do not add to. */
static double thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}


static char ids[IDS][PC_ID_SIZE];
static size_t id_bytes[IDS];

static void ids_make(const char *format) {
    for (uint32_t i = 0; i < IDS; i++) {
        snprintf(ids[i], sizeof ids[i], format, (unsigned long long)(i * 0x9E3779B97F4A7C15ull) % 10000000ull);
        id_bytes[i] = strlen(ids[i]);
    }
}

static double keyed_ns(const pc_hash_key_t *key, uint32_t rounds, uint64_t *sink) {
    double start_ns = thread_cpu_ns();
    for (uint32_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < IDS; i++) *sink += pc_hash_keyed(key, ids[i], id_bytes[i]);
    }
    return (thread_cpu_ns() - start_ns) / ((double)rounds * IDS);
}

static double baseline_ns(uint32_t rounds, uint64_t *sink) {
    double start_ns = thread_cpu_ns();
    for (uint32_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < IDS; i++) *sink += pc_hash64(ids[i], id_bytes[i]);
    }
    return (thread_cpu_ns() - start_ns) / ((double)rounds * IDS);
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

/* ---- the ledger's account lookups ---- */

#define LOOKUP_ACCOUNTS 1000000u
#define LOOKUP_PAIRS 65536u

static char (*account_ids)[16];

static const char *account_id_of(const void *owner, uint32_t value) {
    (void)owner;
    return account_ids[value];
}

typedef uint64_t (*hash_fn)(const pc_hash_key_t *key, const char *id);
static uint64_t hash_keyed(const pc_hash_key_t *key, const char *id) { return idmap_hash(key, id); }
static uint64_t hash_unkeyed(const pc_hash_key_t *key, const char *id) {
    (void)key;
    uint64_t hash = pc_hash64(id, strlen(id));
    return hash == 0 ? 1 : hash;
}

/* CPU time of LOOKUP_PAIRS transfers' account lookups, per transfer. */
static double pairs_ns(const idmap_t *map, const pc_hash_key_t *key, hash_fn hash, const uint32_t *pairs,
                       uint64_t *sink) {
    double start_ns = thread_cpu_ns();
    for (uint32_t i = 0; i < LOOKUP_PAIRS; i++) {
        const char *debit = account_ids[pairs[2 * i]], *credit = account_ids[pairs[2 * i + 1]];
        uint64_t debit_hash = hash(key, debit), credit_hash = hash(key, credit);
        idmap_prefetch(map, debit_hash);
        idmap_prefetch(map, credit_hash);
        uint32_t d = 0, c = 0;
        if (!idmap_find(map, debit, debit_hash, &d) || !idmap_find(map, credit, credit_hash, &c)) abort();
        *sink += d + c;
    }
    return (thread_cpu_ns() - start_ns) / LOOKUP_PAIRS;
}

static void map_fill(idmap_t *map, const pc_hash_key_t *key, hash_fn hash) {
    if (!idmap_init(map, LOOKUP_ACCOUNTS, account_id_of, NULL)) abort();
    for (uint32_t i = 0; i < LOOKUP_ACCOUNTS; i++) {
        if (!idmap_insert(map, hash(key, account_ids[i]), i)) abort();
    }
}

static void lookup_figure(uint32_t rounds) {
    account_ids = malloc((size_t)LOOKUP_ACCOUNTS * sizeof *account_ids);
    uint32_t *pairs = malloc(2u * LOOKUP_PAIRS * sizeof *pairs);
    if (account_ids == NULL || pairs == NULL) abort();
    for (uint32_t i = 0; i < LOOKUP_ACCOUNTS; i++) snprintf(account_ids[i], sizeof account_ids[i], "acct-%07u", i);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < 2u * LOOKUP_PAIRS; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        pairs[i] = (uint32_t)(state % LOOKUP_ACCOUNTS);
    }
    pc_hash_key_t key;
    pc_hash_key_random(&key);
    idmap_t keyed, unkeyed;
    map_fill(&keyed, &key, hash_keyed);
    map_fill(&unkeyed, &key, hash_unkeyed);
    uint64_t sink = 0;
    double keyed_best = 1e18, baseline_best = 1e18;
    for (uint32_t r = 0; r < rounds; r++) {
        double k = pairs_ns(&keyed, &key, hash_keyed, pairs, &sink);
        double b = pairs_ns(&unkeyed, &key, hash_unkeyed, pairs, &sink);
        if (k < keyed_best) keyed_best = k;
        if (b < baseline_best) baseline_best = b;
    }
    printf("id_lookup accounts=%u keyed_ns_per_transfer=%.1f baseline=pc_hash64 baseline_ns_per_transfer=%.1f"
           " ratio=%.2f\n", LOOKUP_ACCOUNTS, keyed_best, baseline_best, keyed_best / baseline_best);
    if (sink == 42) printf("#\n");
    idmap_free(&keyed);
    idmap_free(&unkeyed);
    free(pairs);
    free(account_ids);
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    uint32_t rounds = quick ? 50 : 500;
    figure("acct-%07llu", rounds);      /* 12 bytes: an account id */
    figure("tr-%016llu", rounds);       /* 19 bytes: a transfer id */
    figure("order-%040llu", rounds);    /* 46 bytes */
    lookup_figure(quick ? 5 : 21);
    return 0;
}
