/* ledger/idmap.h: an open-addressing hash index from string ids to uint32 values.
 * The map stores only (hash, value); the caller resolves a value back to its id
 * (key_of), so ids live once, in the caller's rows. Linear probing with
 * backward-shift deletion: no tombstones, so lookups stay short after deletes.
 * Ids come from clients: hashes are keyed (idmap_hash), so that no one can choose ids
 * that share a probe run and turn each lookup into a scan (hash flooding). */
#ifndef PAYCORE_LEDGER_IDMAP_H
#define PAYCORE_LEDGER_IDMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

typedef const char *(*idmap_key_fn)(const void *owner, uint32_t value);

/* A slot is filled when its hash is not 0 (real hashes are forced non-zero) and its
 * generation is the map's: idmap_clear empties every slot by moving the map to the
 * next generation, without writing the table (the writer clears its batch map, 256
 * KiB, at every batch). The generation fills what was padding. */
typedef struct {
    uint64_t hash;
    uint32_t value;
    uint32_t generation;
} idmap_slot;

typedef struct {
    idmap_slot *slots;
    uint32_t capacity;  /* power of two */
    uint32_t count;
    uint32_t generation; /* of the filled slots; written over only when it wraps */
    idmap_key_fn key_of;
    const void *owner;
} idmap_t;

bool idmap_init(idmap_t *map, uint32_t capacity_min, idmap_key_fn key_of, const void *owner);
void idmap_free(idmap_t *map);
/* The hash maps are keyed with: SipHash under 'key' (the owner's secret), non-zero.
 * Every map of one owner uses the same key. */
uint64_t idmap_hash(const pc_hash_key_t *key, const char *id);
/* Starts loading the slot 'hash' leads to: a caller about to look up several ids
 * lets their cache misses overlap (a keyed hash is long enough to serialise them). */
static inline void idmap_prefetch(const idmap_t *map, uint64_t hash) {
    __builtin_prefetch(&map->slots[(uint32_t)hash & (map->capacity - 1)]);
}
/* Finds 'id'; true and *value when present. */
bool idmap_find(const idmap_t *map, const char *id, uint64_t hash, uint32_t *value);
/* Inserts (id must be absent); grows at 50% load. False when memory runs out. */
bool idmap_insert(idmap_t *map, uint64_t hash, uint32_t value);
/* Removes the entry with this hash and value (must be present). */
void idmap_remove(idmap_t *map, uint64_t hash, uint32_t value);
/* Empties the map in O(1) (the table is zeroed once every 2^32 clears). */
void idmap_clear(idmap_t *map);

#endif
