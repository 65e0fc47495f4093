/* store/store_bloom.c: the writers' bloom filter of ids (store_bloom.h). */
#include <stdlib.h>

#include "store/store_bloom.h"

#define BLOOM_HASHES 4
#define BLOOM_BLOCK_BITS 512u

static bool level_make(store_bloom_level_t *level, uint64_t bits) {
    uint64_t blocks = bits / BLOOM_BLOCK_BITS > 0 ? bits / BLOOM_BLOCK_BITS : 1;
    level->bits = calloc(blocks * (BLOOM_BLOCK_BITS / 64), sizeof *level->bits);
    level->block_count = blocks;
    level->keys = 0;
    return level->bits != NULL;
}

/* The key's block in 'level' and its BLOOM_HASHES bits there. */
static uint64_t *level_block(const store_bloom_level_t *level, uint64_t key, uint32_t positions[BLOOM_HASHES]) {
    uint64_t mixed = key * 0x9E3779B97F4A7C15ull;
    uint64_t block = (mixed >> 20) % level->block_count;
    uint64_t bits = (key ^ (key >> 31)) * 0xBF58476D1CE4E5B9ull;
    for (int i = 0; i < BLOOM_HASHES; i++) positions[i] = (uint32_t)((bits >> (9 * i)) & (BLOOM_BLOCK_BITS - 1));
    return level->bits + block * (BLOOM_BLOCK_BITS / 64);
}

bool store_bloom_init(store_bloom_t *bloom, uint64_t bits, bool grows) {
    *bloom = (store_bloom_t){.grows = grows};
    if (!level_make(&bloom->levels[0], bits)) return false;
    bloom->level_count = 1;
    return true;
}

void store_bloom_free(store_bloom_t *bloom) {
    for (uint32_t i = 0; i < bloom->level_count; i++) free(bloom->levels[i].bits);
    *bloom = (store_bloom_t){0};
}

bool store_bloom_made(const store_bloom_t *bloom) { return bloom->level_count > 0; }

/* The level a key goes into: the newest, or a new one twice its size when it is full
 * (out of memory or of levels: the newest, fuller). */
static store_bloom_level_t *level_for_add(store_bloom_t *bloom) {
    store_bloom_level_t *newest = &bloom->levels[bloom->level_count - 1];
    uint64_t keys_max = newest->block_count * BLOOM_BLOCK_BITS / STORE_BLOOM_BITS_PER_KEY;
    if (!bloom->grows || newest->keys < keys_max || bloom->level_count == STORE_BLOOM_LEVELS_MAX) return newest;
    store_bloom_level_t *next = &bloom->levels[bloom->level_count];
    if (!level_make(next, 2 * newest->block_count * BLOOM_BLOCK_BITS)) return newest;
    bloom->level_count++;
    return next;
}

void store_bloom_add(store_bloom_t *bloom, uint64_t key) {
    store_bloom_level_t *level = level_for_add(bloom);
    uint32_t positions[BLOOM_HASHES];
    uint64_t *block = level_block(level, key, positions);
    for (int i = 0; i < BLOOM_HASHES; i++) block[positions[i] >> 6] |= 1ull << (positions[i] & 63);
    level->keys++;
}

bool store_bloom_maybe(const store_bloom_t *bloom, uint64_t key) {
    for (uint32_t l = bloom->level_count; l-- > 0;) {
        uint32_t positions[BLOOM_HASHES];
        const uint64_t *block = level_block(&bloom->levels[l], key, positions);
        bool all = true;
        for (int i = 0; all && i < BLOOM_HASHES; i++) all = (block[positions[i] >> 6] >> (positions[i] & 63)) & 1;
        if (all) return true;
    }
    return false;
}
