/* risk/ids.c: the decision ids clients see (risk.h, "Decision ids").
 *
 * Decisions are numbered 1, 2, ... inside the engine (the decisions file, the feature
 * snapshot, the review queue). Those numbers would tell a merchant how many decisions
 * the whole platform made between two of its own payments, so a client sees instead
 * a keyed permutation of the number: a balanced Feistel network over 52 bits (8
 * rounds of SipHash-2-4 under the installation's key), shifted up by 2^52. Consecutive
 * decisions get unrelated ids anywhere in [2^52, 2^53): no order, no density, and
 * still exact as a JSON number (below 2^53). Without the key (a file beside the
 * database's other secrets, mode 0600) the number cannot be had from an id.
 *
 * Ids handed out before the decisions had opaque ids were the numbers themselves:
 * when the key is made, the highest number stored then is kept in the decisions
 * file (risk_meta "opaque_ids_after"); an id at or below it is that number (it stays
 * valid for feedback, reviews and the payments that show it); every later decision
 * is shown by its opaque id only. An id that is neither is no decision.
 *
 * The key belongs to the decisions file: the file records a check of it, and a
 * start with the key file missing or another key is refused (ids handed out would
 * change). Without a decisions file (benches, tests) the key is random per process. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "risk/risk_internal.h"

#define HALF_BITS 26u
#define HALF_MASK ((1ull << HALF_BITS) - 1)
#define OPAQUE_BASE (1ull << (2 * HALF_BITS)) /* 2^52 */
#define ROUNDS 8u
#define META_AFTER "opaque_ids_after"
#define META_CHECK "opaque_ids_key_check"

static uint64_t round_value(const risk_ids_t *ids, uint32_t round, uint64_t half) {
    uint8_t in[8];
    uint64_t word = (uint64_t)round << 32 | half;
    memcpy(in, &word, sizeof in);
    return pc_hash_keyed(&ids->key, in, sizeof in) & HALF_MASK;
}

static uint64_t permute(const risk_ids_t *ids, uint64_t number) {
    uint64_t left = number >> HALF_BITS & HALF_MASK, right = number & HALF_MASK;
    for (uint32_t i = 0; i < ROUNDS; i++) {
        uint64_t next = left ^ round_value(ids, i, right);
        left = right;
        right = next;
    }
    return left << HALF_BITS | right;
}

static uint64_t unpermute(const risk_ids_t *ids, uint64_t value) {
    uint64_t left = value >> HALF_BITS & HALF_MASK, right = value & HALF_MASK;
    for (uint32_t i = ROUNDS; i-- > 0;) {
        uint64_t previous = right ^ round_value(ids, i, left);
        right = left;
        left = previous;
    }
    return left << HALF_BITS | right;
}

uint64_t risk_ids_external(const risk_ids_t *ids, uint64_t number) {
    if (number <= ids->legacy_max) return number;
    PC_ASSERT(number < OPAQUE_BASE);
    return OPAQUE_BASE + permute(ids, number);
}

uint64_t risk_ids_number(const risk_ids_t *ids, uint64_t id) {
    if (id <= ids->legacy_max) return id; /* 0 stays 0: no decision */
    if (id < OPAQUE_BASE || id >= 2 * OPAQUE_BASE) return 0;
    uint64_t number = unpermute(ids, id - OPAQUE_BASE);
    return number > ids->legacy_max ? number : 0; /* a legacy number has one id only */
}

void risk_ids_random(risk_ids_t *ids) {
    pc_hash_key_random(&ids->key);
    ids->legacy_max = 0;
}

static uint64_t key_check(const pc_hash_key_t *key) {
    static const char label[] = "paycore risk decision ids";
    return pc_hash_keyed(key, label, sizeof label - 1) >> 1; /* fits SQLite's INTEGER */
}

static pc_status refuse(const char *path, const char *why) {
    fprintf(stderr, "{\"level\":\"error\",\"msg\":\"risk: %s: %s; restore the decision id key file of this"
            " decisions file (mode 0600)\"}\n", path, why);
    return PC_RISK_STORE_FAILED;
}

/* A new key: the file first, then (durably, risk_ids_open) the check and the boundary. */
static pc_status key_create(risk_ids_t *ids, const char *path) {
    pc_hash_key_random(&ids->key);
    if (pc_key_file_write(path, ids->key.bytes, sizeof ids->key.bytes, 0600) != PC_OK) {
        return refuse(path, "cannot write the decision id key");
    }
    return PC_OK;
}

pc_status risk_ids_open(risk_ids_t *ids, risk_store_t *store, const char *path) {
    uint64_t check = 0, after = 0;
    pc_status status = risk_store_meta_get(store, META_CHECK, &check);
    if (status != PC_OK && status != PC_NOT_FOUND) return status;
    bool recorded = status == PC_OK;
    status = pc_key_file_read(path, true, ids->key.bytes, sizeof ids->key.bytes);
    if (status == PC_NOT_FOUND && recorded) return refuse(path, "the decision id key file is missing");
    if (status == PC_NOT_FOUND) status = key_create(ids, path);
    else if (status != PC_OK) return refuse(path, "the decision id key file is malformed or readable by others");
    if (status != PC_OK) return status;
    if (recorded && key_check(&ids->key) != check) return refuse(path, "the decision id key is another file's");
    if (recorded) {
        status = risk_store_meta_get(store, META_AFTER, &after);
        ids->legacy_max = after;
        return status == PC_OK ? PC_OK : PC_RISK_STORE_FAILED;
    }
    /* first start with opaque ids: every number stored so far keeps its id */
    status = risk_store_max_decision_id(store, &after);
    if (status == PC_OK) status = risk_store_meta_set(store, META_AFTER, after);
    if (status == PC_OK) status = risk_store_meta_set(store, META_CHECK, key_check(&ids->key));
    if (status == PC_OK) status = risk_store_flush(store);
    ids->legacy_max = after;
    return status;
}
