/* store/store_bloom.h: a bloom filter of 64-bit keys (an id's hash), kept by a
 * backend's writer so that a new id (the common case) is known new without a lookup:
 * "no" is certain, "maybe" costs the lookup it saves otherwise. Blocked: all of a
 * key's bits in a level fall in one 512-bit (cache-line) block, so a level's test
 * costs one cache miss at most.
 * A filter is one level of a fixed size (the SQLite index's, STORE_BLOOM_BITS), or
 * grows: a level holds STORE_BLOOM_BITS_PER_KEY bits a key, and when the newest is
 * full a level twice its size is added, the older ones kept (a test visits each), so
 * that a small store's filter stays small enough for the CPU's caches (random reads
 * over a fixed 32 MiB were most of the writer's time a batch on PostgreSQL). Writer
 * thread only. Only src/store/ includes this. */
#ifndef PAYCORE_STORE_BLOOM_H
#define PAYCORE_STORE_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_BLOOM_LEVELS_MAX 24
#define STORE_BLOOM_BITS_PER_KEY 16

typedef struct {
    uint64_t *bits;
    uint64_t block_count; /* 512-bit blocks */
    uint64_t keys;        /* added */
} store_bloom_level_t;

typedef struct {
    store_bloom_level_t levels[STORE_BLOOM_LEVELS_MAX];
    uint32_t level_count; /* 0: not made */
    bool grows;
} store_bloom_t;

/* 'bits' (a multiple of 512) for the first level; 'grows': levels are added as keys
 * come. False when out of memory. */
bool store_bloom_init(store_bloom_t *bloom, uint64_t bits, bool grows);
void store_bloom_free(store_bloom_t *bloom);
bool store_bloom_made(const store_bloom_t *bloom);
void store_bloom_add(store_bloom_t *bloom, uint64_t key);
/* False: 'key' was never added. */
bool store_bloom_maybe(const store_bloom_t *bloom, uint64_t key);

/* Zeroed memory for a table read at random (NULL: no memory): 'bytes' a multiple of
 * 2 MiB is mapped on its own, aligned, and asked for huge pages (one TLB entry and one
 * first-touch fault per 2 MiB); anything else is calloc'ed. Freed with
 * store_table_free and the same 'bytes'. */
void *store_table_alloc(size_t bytes);
void store_table_free(void *table, size_t bytes);

#endif
