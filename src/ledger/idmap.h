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

typedef struct {
    uint64_t hash;   /* 0 = empty slot (real hashes are forced non-zero) */
    uint32_t value;
} idmap_slot;

typedef struct {
    idmap_slot *slots;
    uint32_t capacity;  /* power of two */
    uint32_t count;
    idmap_key_fn key_of;
    const void *owner;
} idmap_t;

bool idmap_init(idmap_t *map, uint32_t capacity_min, idmap_key_fn key_of, const void *owner);
void idmap_free(idmap_t *map);
/* The hash maps are keyed with: SipHash under 'key' (the owner's secret), non-zero.
 * Every map of one owner uses the same key. */
uint64_t idmap_hash(const pc_hash_key_t *key, const char *id);
/* Finds 'id'; true and *value when present. */
bool idmap_find(const idmap_t *map, const char *id, uint64_t hash, uint32_t *value);
/* Inserts (id must be absent); grows at 50% load. False when memory runs out. */
bool idmap_insert(idmap_t *map, uint64_t hash, uint32_t value);
/* Removes the entry with this hash and value (must be present). */
void idmap_remove(idmap_t *map, uint64_t hash, uint32_t value);
void idmap_clear(idmap_t *map);

#endif
