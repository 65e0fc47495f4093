/* payments/map.c: a small string map for the payments runtime's in-memory sets (busy
 * ids, key bindings, merchants, known accounts, holds). Keys are client-influenced
 * ids, so buckets come from SipHash under a per-process random key: no one can choose
 * ids that share a bucket. Not thread-safe: one of the runtime's mutexes guards each
 * map (struct pay). Entries of removed ids are kept (a bounded few) for the next put:
 * the busy marks and holds come and go with every payment, each a malloc and a free
 * under that mutex. */
#include <stdlib.h>
#include <string.h>

#include "payments/pay_internal.h"

/* 'bucket_count' is a power of two: a bucket is the hash's low bits (a mask, not a
 * 64-bit division on each of the dozen lookups a payment makes). */
pc_status pay_map_init(pay_map_t *map, uint32_t bucket_count) {
    PC_ASSERT(bucket_count > 0);
    PC_ASSERT((bucket_count & (bucket_count - 1)) == 0);
    memset(map, 0, sizeof(*map));
    map->buckets = calloc(bucket_count, sizeof(*map->buckets));
    if (map->buckets == NULL) return PC_NO_MEMORY;
    map->bucket_count = bucket_count;
    pc_hash_key_random(&map->hash_key);
    return PC_OK;
}

/* An entry whose key, with its NUL, fits in PC_ID_SIZE bytes has room for any id: one
 * removed is kept for the next put (up to PAY_MAP_SPARES_MAX), not freed. */
static bool key_id_sized(size_t bytes) { return bytes <= PC_ID_SIZE; }

static pay_map_entry_t *entry_alloc(pay_map_t *map, size_t key_bytes) {
    if (!key_id_sized(key_bytes)) return malloc(sizeof(pay_map_entry_t) + key_bytes);
    pay_map_entry_t *entry = map->spares;
    if (entry == NULL) return malloc(sizeof(*entry) + PC_ID_SIZE);
    map->spares = entry->next;
    map->spare_count--;
    return entry;
}

static void entry_release(pay_map_t *map, pay_map_entry_t *entry) {
    if (map->spare_count >= PAY_MAP_SPARES_MAX || !key_id_sized(strlen(entry->key) + 1)) {
        free(entry);
        return;
    }
    entry->next = map->spares;
    entry->value = NULL;
    map->spares = entry;
    map->spare_count++;
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
    while (map->spares != NULL) {
        pay_map_entry_t *next = map->spares->next;
        free(map->spares);
        map->spares = next;
    }
    free(map->buckets);
    memset(map, 0, sizeof(*map));
}

/* The link that holds 'key' (its 'key_bytes' without the NUL), or the chain's end. */
static pay_map_entry_t **slot(const pay_map_t *map, const char *key, size_t key_bytes) {
    uint64_t hash = pc_hash_keyed(&map->hash_key, key, key_bytes);
    pay_map_entry_t **at = &map->buckets[hash & (map->bucket_count - 1)];
    while (*at != NULL && strcmp((*at)->key, key) != 0) at = &(*at)->next;
    return at;
}

void *pay_map_get(const pay_map_t *map, const char *key) {
    pay_map_entry_t **at = slot(map, key, strlen(key));
    return *at != NULL ? (*at)->value : NULL;
}

pc_status pay_map_put(pay_map_t *map, const char *key, void *value, void **old_out) {
    size_t bytes = strlen(key) + 1;
    pay_map_entry_t **at = slot(map, key, bytes - 1);
    if (old_out != NULL) *old_out = NULL;
    if (*at != NULL) {
        if (old_out != NULL) *old_out = (*at)->value;
        (*at)->value = value;
        return PC_OK;
    }
    pay_map_entry_t *entry = entry_alloc(map, bytes);
    if (entry == NULL) return PC_NO_MEMORY;
    memcpy(entry->key, key, bytes);
    entry->value = value;
    entry->next = NULL;
    *at = entry;
    map->count++;
    return PC_OK;
}

void *pay_map_remove(pay_map_t *map, const char *key) {
    pay_map_entry_t **at = slot(map, key, strlen(key));
    if (*at == NULL) return NULL;
    pay_map_entry_t *entry = *at;
    void *value = entry->value;
    *at = entry->next;
    entry_release(map, entry);
    map->count--;
    return value;
}
