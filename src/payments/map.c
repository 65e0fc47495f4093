/* payments/map.c: a small string map for the payments runtime's in-memory sets (busy
 * ids, key bindings, merchants, known accounts, holds). Keys are client-influenced
 * ids, so buckets come from SipHash under a per-process random key: no one can choose
 * ids that share a bucket. Not thread-safe: the runtime's mutex guards every map. */
#include <stdlib.h>
#include <string.h>

#include "payments/pay_internal.h"

#define MAP_BUCKETS_MIN 16u
#define MAP_BUCKETS_MAX (UINT32_C(1) << 30)

pc_status pay_map_init(pay_map_t *map, uint32_t bucket_count) {
    memset(map, 0, sizeof(*map));
    uint32_t size = MAP_BUCKETS_MIN;
    while (size < bucket_count && size < MAP_BUCKETS_MAX) size *= 2;
    bucket_count = size;
    map->buckets = calloc(bucket_count, sizeof(*map->buckets));
    if (map->buckets == NULL) return PC_NO_MEMORY;
    map->bucket_count = bucket_count;
    pc_hash_key_random(&map->hash_key);
    return PC_OK;
}

void pay_map_free(pay_map_t *map, void (*free_value)(void *value)) {
    for (uint32_t i = 0; map->buckets != NULL && i < map->bucket_count; i++) {
        pay_map_entry_t *entry = map->buckets[i];
        while (entry != NULL) {
            pay_map_entry_t *next = entry->next;
            if (free_value != NULL) free_value(entry->value);
            free(entry);
            entry = next;
        }
    }
    free(map->buckets);
    memset(map, 0, sizeof(*map));
}

static pay_map_entry_t **slot(const pay_map_t *map, const char *key, uint64_t hash) {
    pay_map_entry_t **at = &map->buckets[hash & (map->bucket_count - 1)];
    while (*at != NULL && ((*at)->hash != hash || strcmp((*at)->key, key) != 0)) at = &(*at)->next;
    return at;
}

static uint64_t key_hash(const pay_map_t *map, const char *key) {
    return pc_hash_keyed(&map->hash_key, key, strlen(key));
}

/* Twice the buckets, the entries moved by their kept hash. Out of memory: the map
 * stays as it is (longer chains, still right). */
static void grow(pay_map_t *map) {
    if (map->bucket_count >= MAP_BUCKETS_MAX) return;
    uint32_t size = map->bucket_count * 2;
    pay_map_entry_t **buckets = calloc(size, sizeof(*buckets));
    if (buckets == NULL) return;
    for (uint32_t i = 0; i < map->bucket_count; i++) {
        pay_map_entry_t *entry = map->buckets[i];
        while (entry != NULL) {
            pay_map_entry_t *next = entry->next;
            pay_map_entry_t **at = &buckets[entry->hash & (size - 1)];
            entry->next = *at;
            *at = entry;
            entry = next;
        }
    }
    free(map->buckets);
    map->buckets = buckets;
    map->bucket_count = size;
}

void *pay_map_get(const pay_map_t *map, const char *key) {
    pay_map_entry_t **at = slot(map, key, key_hash(map, key));
    return *at != NULL ? (*at)->value : NULL;
}

pc_status pay_map_put(pay_map_t *map, const char *key, void *value, void **old_out) {
    uint64_t hash = key_hash(map, key);
    pay_map_entry_t **at = slot(map, key, hash);
    if (old_out != NULL) *old_out = NULL;
    if (*at != NULL) {
        if (old_out != NULL) *old_out = (*at)->value;
        (*at)->value = value;
        return PC_OK;
    }
    size_t bytes = strlen(key) + 1;
    pay_map_entry_t *entry = malloc(sizeof(*entry) + bytes);
    if (entry == NULL) return PC_NO_MEMORY;
    memcpy(entry->key, key, bytes);
    entry->value = value;
    entry->hash = hash;
    entry->next = NULL;
    *at = entry;
    map->count++;
    if (map->count > map->bucket_count) grow(map);
    return PC_OK;
}

void *pay_map_remove(pay_map_t *map, const char *key) {
    pay_map_entry_t **at = slot(map, key, key_hash(map, key));
    if (*at == NULL) return NULL;
    pay_map_entry_t *entry = *at;
    void *value = entry->value;
    *at = entry->next;
    free(entry);
    map->count--;
    return value;
}
