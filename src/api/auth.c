/* api/auth.c: API keys. Only a BLAKE2b-256 hash of each secret is stored (database
 * and memory); a presented secret is hashed and found through a small open-addressing
 * index on the hash, then compared in constant time. All keys live in memory (at most
 * API_KEYS_MAX): this process is their only writer, so memory is authoritative once
 * loaded, and a revocation takes effect on the next request. Each key carries a token
 * bucket for the per-key rate limit. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "store/store_api.h"

#define INDEX_SLOTS (2 * API_KEYS_MAX)
static_assert((INDEX_SLOTS & (INDEX_SLOTS - 1)) == 0, "index slots are a power of two");

/* entry index + 1 per slot; 0 = empty. Kept beside the table, guarded by its mutex. */
typedef struct {
    uint32_t slots[INDEX_SLOTS];
} key_index;

static const char *const scope_names[] = {NULL, "read_only", "merchant", "admin"};

bool api_scope_parse(const char *name, api_scope *out) {
    for (int i = 1; i <= 3; i++) {
        if (strcmp(name, scope_names[i]) == 0) {
            *out = (api_scope)i;
            return true;
        }
    }
    return false;
}

const char *api_scope_name(api_scope scope) {
    return scope >= API_SCOPE_READ_ONLY && scope <= API_SCOPE_ADMIN ? scope_names[scope] : "none";
}

void api_key_hash(const char *secret, uint8_t hash_out[API_KEY_HASH_BYTES]) {
    crypto_generichash(hash_out, API_KEY_HASH_BYTES, (const unsigned char *)secret,
                       strlen(secret), NULL, 0);
}

void api_key_generate(char *secret_out, char id_out[PC_ID_SIZE],
                      uint8_t hash_out[API_KEY_HASH_BYTES]) {
    uint8_t secret_bytes[32];
    uint8_t id_bytes[8];
    randombytes_buf(secret_bytes, sizeof secret_bytes);
    randombytes_buf(id_bytes, sizeof id_bytes);
    memcpy(secret_out, "pck_", 4);
    sodium_bin2base64(secret_out + 4, 60, secret_bytes, sizeof secret_bytes,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(secret_bytes, sizeof secret_bytes);
    memcpy(id_out, "key_", 4);
    sodium_bin2hex(id_out + 4, PC_ID_SIZE - 4, id_bytes, sizeof id_bytes);
    api_key_hash(secret_out, hash_out);
}

static uint32_t index_home(const uint8_t hash[API_KEY_HASH_BYTES]) {
    uint32_t home;
    memcpy(&home, hash, sizeof home);
    return home & (INDEX_SLOTS - 1);
}

static key_index *index_of(api_keys_t *keys) {
    return (key_index *)(keys->entries + API_KEYS_MAX);
}

pc_status api_keys_init(api_keys_t *keys, uint32_t rate_per_s, uint32_t rate_burst) {
    memset(keys, 0, sizeof(*keys));
    /* one allocation: the entries, then the index */
    keys->entries = calloc(1, sizeof(api_key_entry_t) * API_KEYS_MAX + sizeof(key_index));
    if (keys->entries == NULL) return PC_NO_MEMORY;
    pthread_mutex_init(&keys->mutex, NULL);
    keys->rate_per_s = rate_per_s;
    keys->rate_burst = rate_burst != 0 ? rate_burst : rate_per_s;
    return PC_OK;
}

void api_keys_free(api_keys_t *keys) {
    if (keys->entries == NULL) return;
    sodium_memzero(keys->entries, sizeof(api_key_entry_t) * API_KEYS_MAX);
    free(keys->entries);
    keys->entries = NULL;
    pthread_mutex_destroy(&keys->mutex);
}

/* Under the mutex. Returns the entry index or -1. */
static int64_t find_by_hash(api_keys_t *keys, const uint8_t hash[API_KEY_HASH_BYTES]) {
    key_index *index = index_of(keys);
    uint32_t slot = index_home(hash);
    for (uint32_t probe = 0; probe < INDEX_SLOTS; probe++) {
        uint32_t entry = index->slots[(slot + probe) & (INDEX_SLOTS - 1)];
        if (entry == 0) return -1;
        if (sodium_memcmp(keys->entries[entry - 1].hash, hash, API_KEY_HASH_BYTES) == 0) {
            return entry - 1;
        }
    }
    return -1;
}

static int64_t find_by_id(api_keys_t *keys, const char *id) {
    for (uint32_t i = 0; i < keys->count; i++) {
        if (strcmp(keys->entries[i].id, id) == 0) return i;
    }
    return -1;
}

void api_keys_put(api_keys_t *keys, const api_key_entry_t *entry) {
    pthread_mutex_lock(&keys->mutex);
    int64_t at = find_by_id(keys, entry->id);
    if (at >= 0) {
        keys->entries[at].revoked_ns = entry->revoked_ns;
    } else if (keys->count < API_KEYS_MAX) {
        uint32_t index = keys->count++;
        keys->entries[index] = *entry;
        keys->entries[index].tokens = (double)keys->rate_burst;
        keys->entries[index].refill_ns = pc_mono_ns();
        key_index *slots = index_of(keys);
        uint32_t slot = index_home(entry->hash);
        while (slots->slots[slot] != 0) slot = (slot + 1) & (INDEX_SLOTS - 1);
        slots->slots[slot] = index + 1;
    }
    pthread_mutex_unlock(&keys->mutex);
}

bool api_keys_full(api_keys_t *keys) {
    pthread_mutex_lock(&keys->mutex);
    bool full = keys->count >= API_KEYS_MAX;
    pthread_mutex_unlock(&keys->mutex);
    return full;
}

static void load_one(const store_api_key_t *row, void *ctx) {
    api_keys_t *keys = ctx;
    api_key_entry_t entry = {0};
    memcpy(entry.id, row->id, sizeof entry.id);
    if (!api_scope_parse(row->scope, &entry.scope)) return; /* unknown scope: never valid */
    memcpy(entry.name, row->name, sizeof entry.name);
    memcpy(entry.hash, row->key_hash, API_KEY_HASH_BYTES);
    entry.created_ns = row->created_ns;
    entry.revoked_ns = row->revoked_ns;
    api_keys_put(keys, &entry);
}

pc_status api_keys_load(api_keys_t *keys, store_reader_t *reader) {
    bool has_more;
    return store_api_keys_list(reader, NULL, API_KEYS_MAX, load_one, keys, &has_more);
}

/* Token bucket: refills at rate_per_s up to rate_burst. Under the mutex. */
static pc_status bucket_take(api_keys_t *keys, api_key_entry_t *entry, uint32_t *retry_after_s) {
    if (keys->rate_per_s == 0) return PC_OK;
    uint64_t now_ns = pc_mono_ns();
    double refill = (double)(now_ns - entry->refill_ns) / 1e9 * keys->rate_per_s;
    entry->refill_ns = now_ns;
    entry->tokens += refill;
    if (entry->tokens > keys->rate_burst) entry->tokens = keys->rate_burst;
    if (entry->tokens >= 1.0) {
        entry->tokens -= 1.0;
        return PC_OK;
    }
    double wait_s = (1.0 - entry->tokens) / keys->rate_per_s;
    *retry_after_s = (uint32_t)wait_s + 1;
    return PC_RATE_LIMITED;
}

pc_status api_keys_authenticate(api_keys_t *keys, const char *secret, api_caller_t *out,
                                uint32_t *retry_after_s) {
    uint8_t hash[API_KEY_HASH_BYTES];
    api_key_hash(secret, hash);
    pthread_mutex_lock(&keys->mutex);
    int64_t at = find_by_hash(keys, hash);
    pc_status status = PC_UNAUTHENTICATED;
    if (at >= 0 && keys->entries[at].revoked_ns == 0) {
        api_key_entry_t *entry = &keys->entries[at];
        memcpy(out->id, entry->id, sizeof out->id);
        memcpy(out->name, entry->name, sizeof out->name);
        out->scope = entry->scope;
        status = bucket_take(keys, entry, retry_after_s);
    }
    pthread_mutex_unlock(&keys->mutex);
    return status;
}

bool api_keys_get(api_keys_t *keys, const char *key_id, api_key_entry_t *out) {
    pthread_mutex_lock(&keys->mutex);
    int64_t at = find_by_id(keys, key_id);
    if (at >= 0) *out = keys->entries[at];
    pthread_mutex_unlock(&keys->mutex);
    return at >= 0;
}
