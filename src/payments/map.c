/* payments/map.c: a small string map for the payments runtime's in-memory sets (busy
 * ids, key bindings, merchants, known accounts, holds). Keys are client-influenced
 * ids, so buckets come from SipHash under a per-process random key: no one can choose
 * ids that share a bucket. Not thread-safe: the runtime's mutex guards every map. */
#include <stdlib.h>
#include <string.h>

#include "payments/pay_internal.h"

pc_status pay_map_init(pay_map_t *map, uint32_t bucket_count) {
    memset(map, 0, sizeof(*map));
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

static pay_map_entry_t **slot(const pay_map_t *map, const char *key) {
    uint64_t hash = pc_hash_keyed(&map->hash_key, key, strlen(key));
    pay_map_entry_t **at = &map->buckets[hash % map->bucket_count];
    while (*at != NULL && strcmp((*at)->key, key) != 0) at = &(*at)->next;
    return at;
}

void *pay_map_get(const pay_map_t *map, const char *key) {
    pay_map_entry_t **at = slot(map, key);
    return *at != NULL ? (*at)->value : NULL;
}

pc_status pay_map_put(pay_map_t *map, const char *key, void *value, void **old_out) {
    pay_map_entry_t **at = slot(map, key);
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
    entry->next = NULL;
    *at = entry;
    map->count++;
    return PC_OK;
}

void *pay_map_remove(pay_map_t *map, const char *key) {
    pay_map_entry_t **at = slot(map, key);
    if (*at == NULL) return NULL;
    pay_map_entry_t *entry = *at;
    void *value = entry->value;
    *at = entry->next;
    free(entry);
    map->count--;
    return value;
}
