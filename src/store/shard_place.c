/* store/shard_place.c: where an account lives in a set of shards (store_shard.h). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_shard.h"

_Static_assert(sizeof STORE_SHARD_HASH_KEY - 1 == crypto_shorthash_siphash24_KEYBYTES,
               "the placement key is SipHash-2-4's 16 bytes");

uint32_t store_shard_of(const char *account_id, uint32_t shard_count) {
    if (shard_count <= 1) return 0;
    uint32_t self, peer;
    if (store_clearing_shard(account_id, &self, &peer)) return self < shard_count ? self : 0;
    if (store_shard_home_placed(account_id)) return 0;
    unsigned char out[crypto_shorthash_siphash24_BYTES];
    crypto_shorthash_siphash24(out, (const unsigned char *)account_id, strlen(account_id),
                               (const unsigned char *)STORE_SHARD_HASH_KEY);
    uint64_t hash = 0;
    for (int i = 7; i >= 0; i--) hash = (hash << 8) | out[i];
    return (uint32_t)(hash % shard_count);
}

bool store_shard_home_placed(const char *account_id) {
    static const char *const prefixes[] = {STORE_SHARD_HOME_PREFIXES};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        if (strncmp(account_id, prefixes[i], strlen(prefixes[i])) == 0) return true;
    }
    return false;
}

void store_clearing_id(uint32_t self, uint32_t peer, const char *currency, char out[PC_ID_SIZE]) {
    snprintf(out, PC_ID_SIZE, STORE_CLEARING_PREFIX "%u.%u.%s", self, peer, currency);
}

bool store_id_reserved(const char *id) {
    return strncmp(id, STORE_CLEARING_PREFIX, sizeof STORE_CLEARING_PREFIX - 1) == 0;
}

bool store_clearing_shard(const char *id, uint32_t *self, uint32_t *peer) {
    if (!store_id_reserved(id)) return false;
    const char *at = id + sizeof STORE_CLEARING_PREFIX - 1;
    char *end;
    unsigned long s = strtoul(at, &end, 10);
    if (end == at || *end != '.') return false;
    at = end + 1;
    unsigned long p = strtoul(at, &end, 10);
    if (end == at || *end != '.') return false;
    *self = (uint32_t)s;
    *peer = (uint32_t)p;
    return true;
}

void store_transfer_legs_merge(store_transfer_t *leg, store_transfer_t *other, bool debit_leg) {
    if (debit_leg) {
        memcpy(leg->transfer.credit_account_id, other->transfer.credit_account_id, PC_ID_SIZE);
    } else {
        memcpy(other->transfer.credit_account_id, leg->transfer.credit_account_id, PC_ID_SIZE);
        store_transfer_t swap = *leg;
        *leg = *other;
        *other = swap;
    }
    store_transfer_free(other);
}
