/* gateway/sim_fault.c: the seeded choices. Every random thing about a request comes
 * from a ChaCha20 stream keyed by BLAKE2b(kind, seed, idempotency key, arrival number),
 * so an outcome depends on the seed and the request, never on arrival order or on
 * another request (docs/channels.md, "Determinism"). Floating point here shapes only
 * latencies and probabilities, never an amount. */
#include <math.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* the low-level SHA-256: no EVP fetch per request */
#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gateway/sim_internal.h"

/* z of the standard normal at 0.99: ln(p99 / p50) = sigma * SIM_Z99 */
#define SIM_Z99 2.3263478740408408
#define SIM_DRAW_COUNT 8

enum { DRAW_LATENCY_A, DRAW_LATENCY_B, DRAW_ERROR, DRAW_TIMEOUT, DRAW_TIMEOUT_APPLIED,
       DRAW_GARBAGE, DRAW_GARBAGE_MODE, DRAW_GARBAGE_APPLIED };

/* BLAKE2b-256 over NUL-separated parts: begun, parts added, then final. */
static void hash_parts_add(crypto_generichash_state *state, const char *const *parts, size_t part_count) {
    for (size_t i = 0; i < part_count; i++) {
        crypto_generichash_update(state, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
    }
}

static void hash_parts_begin(crypto_generichash_state *state, const char *const *parts, size_t part_count) {
    crypto_generichash_init(state, NULL, 0, 32);
    hash_parts_add(state, parts, part_count);
}

static void hash_parts(unsigned char out[32], const char *const *parts, size_t part_count) {
    crypto_generichash_state state;
    hash_parts_begin(&state, parts, part_count);
    crypto_generichash_final(&state, out, 32);
}

/* A uniform double in [0, 1) from 53 bits. */
static double unit(uint64_t bits) {
    return (double)(bits >> 11) * (1.0 / 9007199254740992.0);
}

static uint32_t latency_ms(const sim_faults_t *faults, double a, double b) {
    if (faults->latency_p50_ms == 0) return 0;
    double sigma = faults->latency_p99_ms > faults->latency_p50_ms
                       ? log((double)faults->latency_p99_ms / faults->latency_p50_ms) / SIM_Z99
                       : 0.0;
    double z = sqrt(-2.0 * log(1.0 - a)) * cos(2.0 * M_PI * b); /* Box-Muller; 1 - a > 0 */
    double ms = (double)faults->latency_p50_ms * exp(sigma * z);
    uint32_t cap_ms = faults->latency_max_ms;
    if (!(ms < (double)cap_ms)) return cap_ms;
    return (uint32_t)llround(ms);
}

/* Faults that can never fire: no draw could change the fate (no draw is below a rate
 * of 0, and no latency is configured), so the stream is not computed. */
static bool faults_quiet(const sim_faults_t *faults) {
    return faults->latency_p50_ms == 0 && !(faults->error_rate > 0) && !(faults->timeout_rate > 0) &&
           (faults->garbage_mode_count == 0 || !(faults->garbage_rate > 0));
}

void sim_fate_draw(const sim_t *sim, const sim_faults_t *faults, const char *key, uint64_t arrival,
                   sim_fate_t *out) {
    if (faults_quiet(faults)) {
        memset(out, 0, sizeof(*out));
        out->apply = true;
        return;
    }
    char seed_text[24], arrival_text[24];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)sim->config.seed);
    snprintf(arrival_text, sizeof arrival_text, "%llu", (unsigned long long)arrival);
    const char *parts[] = {"paycore-sim", sim_kind_name(sim->kind), seed_text, key, arrival_text};
    unsigned char stream_seed[randombytes_SEEDBYTES];
    static_assert(randombytes_SEEDBYTES == 32, "BLAKE2b-256 seeds the stream");
    hash_parts(stream_seed, parts, sizeof parts / sizeof parts[0]);
    uint64_t draws[SIM_DRAW_COUNT];
    randombytes_buf_deterministic(draws, sizeof draws, stream_seed);
    memset(out, 0, sizeof(*out));
    out->apply = true;
    out->latency_ms = latency_ms(faults, unit(draws[DRAW_LATENCY_A]), unit(draws[DRAW_LATENCY_B]));
    if (unit(draws[DRAW_ERROR]) < faults->error_rate) {
        out->error = true;
        return;
    }
    if (unit(draws[DRAW_TIMEOUT]) < faults->timeout_rate) {
        out->timeout = true;
        out->apply = unit(draws[DRAW_TIMEOUT_APPLIED]) < faults->timeout_applied_ratio;
        return;
    }
    if (faults->garbage_mode_count > 0 && unit(draws[DRAW_GARBAGE]) < faults->garbage_rate) {
        out->garbage = true;
        out->garbage_mode = faults->garbage_modes[draws[DRAW_GARBAGE_MODE] % faults->garbage_mode_count];
        /* a wrong code or amount is a corruption of a true answer: always applied */
        bool corrupts_answer = out->garbage_mode == SIM_GARBAGE_UNKNOWN_CODE ||
                               out->garbage_mode == SIM_GARBAGE_WRONG_AMOUNT;
        out->apply = corrupts_answer || unit(draws[DRAW_GARBAGE_APPLIED]) < faults->garbage_applied_ratio;
    }
}

/* 'bytes' as lower-case hex and a NUL, as sodium_bin2hex writes them (its constant
 * time is for secrets; these are ids and request hashes, a few times per request). */
static void hex_lower(char *out, const unsigned char *bytes, size_t count) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < count; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * count] = '\0';
}

/* The hash state after an id's constant parts (the tag, the kind, the seed), kept per
 * thread for the last (kind, seed) seen: an id then hashes its salt and key alone,
 * from a copy (the same digest: BLAKE2b's state after the same bytes). */
static _Thread_local struct {
    bool valid;
    sim_kind kind;
    uint64_t seed;
    crypto_generichash_state state;
} id_prefix;

static const crypto_generichash_state *id_prefix_state(const sim_t *sim) {
    if (id_prefix.valid && id_prefix.kind == sim->kind && id_prefix.seed == sim->config.seed) {
        return &id_prefix.state;
    }
    char seed_text[PC_INT_TEXT_SIZE];
    pc_u64_text(seed_text, sim->config.seed);
    const char *const parts[] = {"paycore-sim-id", sim_kind_name(sim->kind), seed_text};
    hash_parts_begin(&id_prefix.state, parts, sizeof parts / sizeof parts[0]);
    id_prefix.kind = sim->kind;
    id_prefix.seed = sim->config.seed;
    id_prefix.valid = true;
    return &id_prefix.state;
}

void sim_make_id(const sim_t *sim, const char *prefix, const char *salt, const char *key,
                 char out[SIM_ID_SIZE]) {
    crypto_generichash_state state = *id_prefix_state(sim);
    const char *const parts[] = {salt, key};
    hash_parts_add(&state, parts, sizeof parts / sizeof parts[0]);
    unsigned char digest[32];
    crypto_generichash_final(&state, digest, sizeof digest);
    size_t prefix_bytes = strnlen(prefix, SIM_ID_SIZE - 25); /* the prefixes are short literals */
    memcpy(out, prefix, prefix_bytes);
    hex_lower(out + prefix_bytes, digest, 12);
}

/* The canonical body is written by sim_canonical_text when it can (the same bytes,
 * without jansson's buffer and key sorting allocations), else dumped by jansson. */
void sim_request_hash(const char *method, const char *path, const json_t *body, char out[65]) {
    sim_answer_t written;
    char *dumped = NULL;
    const char *canonical = written.text;
    size_t canonical_bytes = 0;
    if (sim_canonical_text(body, &written)) {
        canonical_bytes = written.bytes;
    } else {
        dumped = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        canonical = dumped;
        canonical_bytes = dumped != NULL ? strlen(dumped) : 0;
    }
    SHA256_CTX state; /* OpenSSL's: SHA-NI where the CPU has it, ~4x libsodium's portable code */
    SHA256_Init(&state);
    SHA256_Update(&state, method, strlen(method) + 1);
    SHA256_Update(&state, path, strlen(path) + 1);
    if (canonical_bytes > 0) SHA256_Update(&state, canonical, canonical_bytes);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_Final(digest, &state);
    hex_lower(out, digest, sizeof digest);
    free(dumped);
}

bool sim_in_outage(const sim_faults_t *faults, uint64_t now_mono_ms) {
    uint64_t elapsed_ms = now_mono_ms - faults->epoch_mono_ms;
    for (uint32_t i = 0; i < faults->outage_count; i++) {
        const sim_outage_t *outage = &faults->outages[i];
        if (elapsed_ms < outage->start_ms) continue;
        uint64_t into_ms = elapsed_ms - outage->start_ms;
        if (outage->period_ms > 0) into_ms %= outage->period_ms;
        if (into_ms < outage->duration_ms) return true;
    }
    return false;
}
