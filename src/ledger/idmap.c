/* ledger/idmap.c: see idmap.h. */
#include "ledger/idmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static uint32_t capacity_for(uint32_t count_min) {
    uint32_t capacity = 64;
    while (capacity < count_min * 2u) capacity *= 2u;
    return capacity;
}

bool idmap_init(idmap_t *map, uint32_t capacity_min, idmap_key_fn key_of, const void *owner) {
    memset(map, 0, sizeof(*map));
    map->capacity = capacity_for(capacity_min);
    map->slots = calloc(map->capacity, sizeof(idmap_slot));
    map->key_of = key_of;
    map->owner = owner;
    return map->slots != NULL;
}

void idmap_free(idmap_t *map) {
    free(map->slots);
    map->slots = NULL;
}

uint64_t idmap_hash(const pc_hash_key_t *key, const char *id) {
    uint64_t hash = pc_hash_keyed(key, id, strlen(id));
    return hash == 0 ? 1 : hash;
}

static inline bool slot_filled(const idmap_slot *slot, uint32_t generation) {
    return slot->hash != 0 && slot->generation == generation;
}

bool idmap_find(const idmap_t *map, const char *id, uint64_t hash, uint32_t *value) {
    uint32_t mask = map->capacity - 1;
    for (uint32_t i = (uint32_t)hash & mask, probes = 0; probes < map->capacity;
         i = (i + 1) & mask, probes++) {
        const idmap_slot *slot = &map->slots[i];
        if (!slot_filled(slot, map->generation)) return false;
        if (slot->hash == hash && strcmp(map->key_of(map->owner, slot->value), id) == 0) {
            *value = slot->value;
            return true;
        }
    }
    return false;
}

static void slot_place(idmap_slot *slots, uint32_t capacity, idmap_slot entry) {
    uint32_t mask = capacity - 1;
    uint32_t i = (uint32_t)entry.hash & mask;
    while (slot_filled(&slots[i], entry.generation)) i = (i + 1) & mask;
    slots[i] = entry;
}

static bool idmap_grow(idmap_t *map) {
    uint32_t capacity_new = map->capacity * 2u;
    idmap_slot *slots_new = calloc(capacity_new, sizeof(idmap_slot));
    if (slots_new == NULL) return false;
    for (uint32_t i = 0; i < map->capacity; i++) {
        if (slot_filled(&map->slots[i], map->generation)) slot_place(slots_new, capacity_new, map->slots[i]);
    }
    free(map->slots);
    map->slots = slots_new;
    map->capacity = capacity_new;
    return true;
}

bool idmap_insert(idmap_t *map, uint64_t hash, uint32_t value) {
    PC_ASSERT(hash != 0);
    if ((map->count + 1) * 2u > map->capacity && !idmap_grow(map)) return false;
    slot_place(map->slots, map->capacity, (idmap_slot){hash, value, map->generation});
    map->count++;
    return true;
}

void idmap_remove(idmap_t *map, uint64_t hash, uint32_t value) {
    uint32_t mask = map->capacity - 1;
    uint32_t i = (uint32_t)hash & mask;
    while (!(map->slots[i].hash == hash && map->slots[i].value == value)) {
        PC_ASSERT(slot_filled(&map->slots[i], map->generation));
        i = (i + 1) & mask;
    }
    PC_ASSERT(slot_filled(&map->slots[i], map->generation));
    /* Backward-shift: pull later entries of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; slot_filled(&map->slots[j], map->generation); j = (j + 1) & mask) {
        uint32_t home = (uint32_t)map->slots[j].hash & mask;
        bool movable = (hole <= j) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            map->slots[hole] = map->slots[j];
            hole = j;
        }
    }
    map->slots[hole].hash = 0;
    map->count--;
}

void idmap_clear(idmap_t *map) {
    map->count = 0;
    if (++map->generation != 0) return;
    /* wrapped: a slot filled 2^32 clears ago would read as filled again */
    memset(map->slots, 0, (size_t)map->capacity * sizeof(idmap_slot));
}
