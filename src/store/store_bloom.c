/* store/store_bloom.c: the writers' bloom filter of ids (store_bloom.h).
 *
 * A level of 2 MiB or more is mapped on its own and asked for huge pages
 * (store_table_alloc, also the SQLite index's memtable hash slots): a test reads
 * one random block of the level, and over 4 KiB pages each such read of a 32 MiB level
 * missed the TLB too (and, while the level was young, took a page fault: 8,192 of them
 * to fill it). With 2 MiB pages the level is 16 TLB entries and 16 faults. Where the
 * kernel gives no huge pages the level is the same zeroed memory in 4 KiB pages. */
#include <stdlib.h>
#include <sys/mman.h>

#include "store/store_bloom.h"

#define BLOOM_HASHES 4
#define BLOOM_BLOCK_BITS 512u
#define HUGE_PAGE_BYTES (2u * 1024 * 1024)

void *store_table_alloc(size_t bytes) {
    if (bytes < HUGE_PAGE_BYTES || bytes % HUGE_PAGE_BYTES != 0) {
        return calloc(1, bytes);
    }
    size_t mapped_bytes = bytes + HUGE_PAGE_BYTES; /* room to align the start */
    char *mapped = mmap(NULL, mapped_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) return NULL;
    size_t head_bytes = (HUGE_PAGE_BYTES - (uintptr_t)mapped % HUGE_PAGE_BYTES) % HUGE_PAGE_BYTES;
    char *start = mapped + head_bytes;
    if (head_bytes > 0) munmap(mapped, head_bytes);
    size_t tail_bytes = mapped_bytes - head_bytes - bytes;
    if (tail_bytes > 0) munmap(start + bytes, tail_bytes);
    (void)madvise(start, bytes, MADV_HUGEPAGE); /* refused: 4 KiB pages, the same bits */
    return start;
}

void store_table_free(void *table, size_t bytes) {
    if (table == NULL) return;
    if (bytes < HUGE_PAGE_BYTES || bytes % HUGE_PAGE_BYTES != 0) free(table);
    else munmap(table, bytes);
}

static size_t level_bytes(const store_bloom_level_t *level) { return level->block_count * (BLOOM_BLOCK_BITS / 8); }

static bool level_make(store_bloom_level_t *level, uint64_t bits) {
    uint64_t blocks = bits / BLOOM_BLOCK_BITS > 0 ? bits / BLOOM_BLOCK_BITS : 1;
    level->block_count = blocks;
    level->bits = store_table_alloc(level_bytes(level));
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
    for (uint32_t i = 0; i < bloom->level_count; i++) {
        store_table_free(bloom->levels[i].bits, level_bytes(&bloom->levels[i]));
    }
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
