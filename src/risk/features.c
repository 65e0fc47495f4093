/* risk/features.c: online features, computed from past authorizations only.
 *
 * State (bounded; sizes in risk.h, memory in docs/risk.md):
 *   payers    one slab entry each: the last RISK_RING_EVENTS payments in a ring
 *             (windows of 10 min / 1 h / 24 h are read from it), running amount
 *             statistics, and small round-robin sets of known devices, IPs, countries.
 *   entities  merchants (payees), devices and IP prefixes: exponentially decayed
 *             counters (1 h and 24 h time constants) and the last few payers seen.
 * Keys are 64-bit hashes of the ids (never the ids: less memory, no PII kept).
 * Both tables are open-addressing indexes (linear probing, backward-shift delete)
 * over dense slabs with a free list. A table at its cap first evicts idle keys;
 * if none is idle, the new key is not tracked and dropped_total counts it.
 *
 * compute() reads, observe() writes: the caller scores with compute() and then
 * observes, so a row never sees itself. Train, eval and serve all call these two. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/core.h"
#include "risk/risk.h"

#define TAU_1H_S 3600.0f
#define TAU_24H_S 86400.0f
#define SWEEP_INTERVAL_S 86400u /* idle keys are looked for at most once a day... */
#define SWEEP_FULL_INTERVAL_S 3600u /* ...or once an hour while a table is full */

/* One remembered payment: 16 bytes. */
typedef struct {
    uint32_t ts_s;
    float amount_usd;
    uint32_t merchant_bits;  /* merchant hash (28 bits) | channel << 28 | flags << 30 */
    uint16_t device_h16;     /* 0 = no device */
    uint16_t country_h16;    /* merchant country */
} ring_event;

#define EV_FLAG_NOVEL 1u     /* new device, IP or country for the payer at that time */
#define EV_FLAG_CROSS 2u     /* cross-border */
#define MERCHANT_MASK 0x0fffffffu

typedef struct {
    uint32_t first_ts_s;
    uint32_t last_ts_s;
    uint32_t count;
    float mean_usd;
    float mean_log;
    float m2_log;
    float max_usd;
    uint32_t devices[RISK_KNOWN_SLOTS];
    uint32_t ips[RISK_KNOWN_SLOTS];
    uint16_t countries[RISK_KNOWN_SLOTS];
    uint8_t device_next, ip_next, country_next;
    uint8_t channels_mask;
    uint8_t tiers_mask;
    uint8_t ring_head;       /* next slot to write */
    uint8_t ring_count;
    ring_event ring[RISK_RING_EVENTS];
} payer_state;

typedef struct {
    uint32_t first_ts_s;
    uint32_t last_ts_s;
    uint32_t count;
    float rate_1h;           /* decayed counts, as of last_ts_s */
    float rate_24h;
    float new_payers_24h;
    float cross_24h;
    float inflow_usd_24h;
    float mean_log;
    float m2_log;
    uint32_t payers[RISK_ENTITY_PAYERS];
    uint32_t payer_ts_s[RISK_ENTITY_PAYERS];
    uint8_t payer_next;
} entity_state;

/* Eviction reads last_ts_s as the second uint32 of either entry kind. */
static_assert(offsetof(payer_state, last_ts_s) == sizeof(uint32_t), "payer_state layout");
static_assert(offsetof(entity_state, last_ts_s) == sizeof(uint32_t), "entity_state layout");

/* An index over a slab: keys[slot] == 0 is empty; slab_index[slot] names the entry. */
typedef struct {
    uint64_t *keys;
    uint32_t *slab_index;
    uint64_t *entry_keys;    /* per slab entry: its key (for eviction and snapshots) */
    uint32_t *free_stack;
    uint32_t free_count;
    uint32_t used_count;     /* entries handed out */
    uint32_t entries_max;
    uint32_t slot_mask;
    uint32_t live;
    size_t entry_bytes;
    unsigned char *slab;
} table;

struct risk_features {
    risk_features_config_t config;
    table payers;
    table entities;
    uint32_t last_sweep_s;
    uint64_t evicted_total;
    uint64_t dropped_total;
    uint64_t observed_total;
};

static const char *const feature_names[RISK_FEATURE_COUNT] = {
#define X(name) #name,
    X_FEATURES(X)
#undef X
};

const char *risk_feature_name(risk_feature feature) {
    return (unsigned)feature < RISK_FEATURE_COUNT ? feature_names[feature] : "unknown";
}

void risk_features_config_default(risk_features_config_t *config) {
    config->payers_max = RISK_PAYERS_DEFAULT;
    config->entities_max = RISK_ENTITIES_DEFAULT;
    config->idle_s = RISK_IDLE_S_DEFAULT;
}

/* ---------------------------------------------------------------- tables */

/* A table's arrays: zeroed mappings of their own in transparent huge pages (a hint:
 * without them the kernel gives 4 kB pages as before). A new key lands on a random
 * slot of the index, so with 4 kB pages a fresh table took a page fault or two per new
 * key, inside the engine's lock, until nearly every page of the index had been hit
 * (hundreds of thousands of keys: a benchmark run, a server's first minutes), at tens
 * of microseconds a fault on a hypervisor; 2 MB pages fault 512 times less often and
 * spare a TLB miss on most lookups. */
static void *block_zeroed(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    (void)madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

static void block_free(void *p, size_t bytes) {
    if (p != NULL) munmap(p, bytes);
}

static pc_status table_init(table *t, uint32_t entries_max, size_t entry_bytes) {
    uint32_t slots = 16;
    while (slots < entries_max * 2u && slots < (1u << 31)) slots <<= 1;
    memset(t, 0, sizeof(*t));
    t->entries_max = entries_max;
    t->slot_mask = slots - 1;
    t->entry_bytes = entry_bytes;
    t->keys = block_zeroed(slots * sizeof(uint64_t));
    t->slab_index = block_zeroed(slots * sizeof(uint32_t));
    t->entry_keys = block_zeroed(entries_max * sizeof(uint64_t));
    t->free_stack = block_zeroed(entries_max * sizeof(uint32_t));
    t->slab = block_zeroed(entries_max * entry_bytes);
    bool ok = t->keys && t->slab_index && t->entry_keys && t->free_stack && t->slab;
    return ok ? PC_OK : PC_NO_MEMORY;
}

static void table_free(table *t) {
    size_t slots = (size_t)t->slot_mask + 1;
    block_free(t->keys, slots * sizeof(uint64_t));
    block_free(t->slab_index, slots * sizeof(uint32_t));
    block_free(t->entry_keys, t->entries_max * sizeof(uint64_t));
    block_free(t->free_stack, t->entries_max * sizeof(uint32_t));
    block_free(t->slab, t->entries_max * t->entry_bytes);
    memset(t, 0, sizeof(*t));
}

static uint64_t table_bytes(const table *t) {
    uint64_t slots = (uint64_t)t->slot_mask + 1;
    return slots * (sizeof(uint64_t) + sizeof(uint32_t)) +
           (uint64_t)t->entries_max * (t->entry_bytes + sizeof(uint64_t) + sizeof(uint32_t));
}

static void *table_entry(const table *t, uint32_t index) {
    PC_ASSERT(index < t->entries_max);
    return t->slab + (size_t)index * t->entry_bytes;
}

static void *table_find(const table *t, uint64_t key) {
    uint32_t slot = (uint32_t)key & t->slot_mask;
    for (uint32_t probes = 0; probes <= t->slot_mask; probes++) {
        if (t->keys[slot] == 0) return NULL;
        if (t->keys[slot] == key) return table_entry(t, t->slab_index[slot]);
        slot = (slot + 1) & t->slot_mask;
    }
    return NULL;
}

/* Inserts a zeroed entry for 'key' (absent); NULL when the table is at its cap. */
static void *table_insert(table *t, uint64_t key) {
    if (t->live >= t->entries_max) return NULL;
    uint32_t index = t->free_count > 0 ? t->free_stack[--t->free_count] : t->used_count++;
    PC_ASSERT(index < t->entries_max);
    uint32_t slot = (uint32_t)key & t->slot_mask;
    while (t->keys[slot] != 0) slot = (slot + 1) & t->slot_mask; /* load <= 1/2 */
    t->keys[slot] = key;
    t->slab_index[slot] = index;
    t->entry_keys[index] = key;
    t->live++;
    void *entry = table_entry(t, index);
    memset(entry, 0, t->entry_bytes);
    return entry;
}

/* Backward-shift delete at 'slot': later entries of the probe run move up, so
 * lookups never need tombstones. */
static void table_delete_slot(table *t, uint32_t slot) {
    uint32_t index = t->slab_index[slot];
    t->free_stack[t->free_count++] = index;
    t->entry_keys[index] = 0;
    t->live--;
    uint32_t hole = slot;
    uint32_t next = (slot + 1) & t->slot_mask;
    while (t->keys[next] != 0) {
        uint32_t home = (uint32_t)t->keys[next] & t->slot_mask;
        bool movable = ((next - home) & t->slot_mask) >= ((next - hole) & t->slot_mask);
        if (movable) {
            t->keys[hole] = t->keys[next];
            t->slab_index[hole] = t->slab_index[next];
            hole = next;
        }
        next = (next + 1) & t->slot_mask;
    }
    t->keys[hole] = 0;
}

/* Evicts entries whose last_ts_s (the entry's second uint32) is before 'cutoff_s'. */
static uint64_t table_evict(table *t, uint32_t cutoff_s) {
    uint64_t evicted = 0;
    uint32_t slot = 0;
    uint32_t slots = t->slot_mask + 1;
    while (slot < slots) {
        if (t->keys[slot] != 0) {
            const uint32_t *head = table_entry(t, t->slab_index[slot]);
            if (head[1] < cutoff_s) {
                table_delete_slot(t, slot);
                evicted++;
                continue; /* a shifted entry may now sit at 'slot' */
            }
        }
        slot++;
    }
    return evicted;
}

/* ---------------------------------------------------------------- open/close */

pc_status risk_features_open(const risk_features_config_t *config, risk_features_t **out) {
    *out = NULL;
    if (config->payers_max == 0 || config->entities_max == 0) return PC_INVALID_ARGUMENT;
    if (config->payers_max > (1u << 28) || config->entities_max > (1u << 28)) {
        return PC_INVALID_ARGUMENT;
    }
    risk_features_t *f = calloc(1, sizeof(*f));
    if (f == NULL) return PC_NO_MEMORY;
    f->config = *config;
    pc_status status = table_init(&f->payers, config->payers_max, sizeof(payer_state));
    if (status == PC_OK) {
        status = table_init(&f->entities, config->entities_max, sizeof(entity_state));
    }
    if (status != PC_OK) {
        risk_features_close(f);
        return status;
    }
    *out = f;
    return PC_OK;
}

void risk_features_close(risk_features_t *f) {
    if (f == NULL) return;
    table_free(&f->payers);
    table_free(&f->entities);
    free(f);
}

/* ---------------------------------------------------------------- keys */

static uint64_t key_of(char kind, const char *id) {
    char buf[RISK_KEY_SIZE + 2];
    size_t n = strlen(id);
    PC_ASSERT(n <= RISK_KEY_BYTES_MAX);
    buf[0] = kind;
    buf[1] = ':';
    memcpy(buf + 2, id, n);
    uint64_t key = pc_hash64(buf, n + 2);
    return key == 0 ? 1 : key;
}

/* The key of a payer, device or address in 'scope' (risk_auth_t.scope): 0 is the shared
 * state; any other scope has keys of its own, which no other scope finds. */
static uint64_t key_in(uint64_t scope, char kind, const char *id) {
    uint64_t key = key_of(kind, id);
    if (scope == 0) return key;
    uint64_t pair[2] = {scope, key};
    key = pc_hash64(pair, sizeof pair);
    return key == 0 ? 1 : key;
}

static uint32_t h32(const char *s) {
    uint64_t h = pc_hash64(s, strlen(s));
    uint32_t v = (uint32_t)(h ^ (h >> 32));
    return v == 0 ? 1 : v;
}

static uint16_t h16(const char *s) {
    uint32_t v = h32(s);
    uint16_t r = (uint16_t)(v ^ (v >> 16));
    return r == 0 ? 1 : r;
}

static uint32_t ts32(int64_t ts_s) {
    if (ts_s < 0) return 0;
    if (ts_s > (int64_t)UINT32_MAX) return UINT32_MAX;
    return (uint32_t)ts_s;
}

/* Seconds from 'then' to 'now', never negative (equal timestamps are common). */
static float age_s(uint32_t now_s, uint32_t then_s) {
    return now_s > then_s ? (float)(now_s - then_s) : 0.0f;
}

static float decayed(float value, uint32_t now_s, uint32_t then_s, float tau_s) {
    return value * expf(-age_s(now_s, then_s) / tau_s);
}

static bool known_u32(const uint32_t *set, uint32_t v) {
    for (int i = 0; i < RISK_KNOWN_SLOTS; i++) {
        if (set[i] == v) return true;
    }
    return false;
}

static bool known_u16(const uint16_t *set, uint16_t v) {
    for (int i = 0; i < RISK_KNOWN_SLOTS; i++) {
        if (set[i] == v) return true;
    }
    return false;
}

/* ---------------------------------------------------------------- compute */

typedef struct {
    uint32_t count_10m, count_1h, count_24h;
    float sum_1h, sum_24h;
    uint32_t merchants_24h, devices_24h, countries_24h;
    uint32_t cross_24h, novel_24h, same_merchant_1h;
    bool merchant_seen;
} ring_summary;

static const ring_event *ring_at(const payer_state *p, uint32_t i) {
    /* i = 0 is the newest */
    uint32_t slot = (p->ring_head + RISK_RING_EVENTS - 1 - i) % RISK_RING_EVENTS;
    return &p->ring[slot];
}

/* Distinct values among the first 'n' of 'v' (n <= RISK_RING_EVENTS). */
static uint32_t distinct_u32(const uint32_t *v, uint32_t n) {
    uint32_t distinct = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool seen = false;
        for (uint32_t j = 0; j < i && !seen; j++) seen = v[j] == v[i];
        if (!seen) distinct++;
    }
    return distinct;
}

static void ring_summarize(const payer_state *p, uint32_t now_s, uint32_t merchant_h,
                           ring_summary *s) {
    uint32_t merchants[RISK_RING_EVENTS], devices[RISK_RING_EVENTS], countries[RISK_RING_EVENTS];
    uint32_t n_devices = 0, n_24h = 0;
    memset(s, 0, sizeof(*s));
    for (uint32_t i = 0; i < p->ring_count; i++) {
        const ring_event *e = ring_at(p, i);
        float dt = age_s(now_s, e->ts_s);
        uint32_t merchant = e->merchant_bits & MERCHANT_MASK;
        if (merchant == merchant_h) s->merchant_seen = true;
        if (dt >= 86400.0f) continue;
        uint32_t flags = e->merchant_bits >> 30;
        merchants[n_24h] = merchant;
        countries[n_24h] = e->country_h16;
        n_24h++;
        if (e->device_h16 != 0) devices[n_devices++] = e->device_h16;
        s->count_24h++;
        s->sum_24h += e->amount_usd;
        s->cross_24h += (flags & EV_FLAG_CROSS) != 0;
        s->novel_24h += (flags & EV_FLAG_NOVEL) != 0;
        if (dt < 3600.0f) {
            s->count_1h++;
            s->sum_1h += e->amount_usd;
            s->same_merchant_1h += merchant == merchant_h;
        }
        if (dt < 600.0f) s->count_10m++;
    }
    s->merchants_24h = distinct_u32(merchants, n_24h);
    s->devices_24h = distinct_u32(devices, n_devices);
    s->countries_24h = distinct_u32(countries, n_24h);
}

static float log1pf_pos(double v) { return (float)log1p(v > 0 ? v : 0); }

static void payer_features(const payer_state *p, const risk_auth_t *a, uint32_t now_s,
                           double amount_usd, float *out) {
    ring_summary s;
    uint32_t merchant_h = h32(a->payee_id) & MERCHANT_MASK;
    ring_summarize(p, now_s, merchant_h, &s);
    out[RISK_F_payer_count_prior_log] = log1pf_pos(p->count);
    out[RISK_F_payer_count_10m] = (float)s.count_10m;
    out[RISK_F_payer_count_1h] = (float)s.count_1h;
    out[RISK_F_payer_count_24h] = (float)s.count_24h;
    out[RISK_F_payer_sum_usd_1h_log] = log1pf_pos(s.sum_1h);
    out[RISK_F_payer_sum_usd_24h_log] = log1pf_pos(s.sum_24h);
    out[RISK_F_payer_distinct_merchants_24h] = (float)s.merchants_24h;
    out[RISK_F_payer_distinct_devices_24h] = (float)s.devices_24h;
    out[RISK_F_payer_distinct_countries_24h] = (float)s.countries_24h;
    out[RISK_F_payer_cross_border_24h] = (float)s.cross_24h;
    out[RISK_F_payer_novel_events_24h] = (float)s.novel_24h;
    out[RISK_F_payer_same_merchant_1h] = (float)s.same_merchant_1h;
    out[RISK_F_payer_secs_since_prev_log] = log1pf_pos(age_s(now_s, p->last_ts_s));
    out[RISK_F_payer_secs_since_first_log] = log1pf_pos(age_s(now_s, p->first_ts_s));
    if (p->mean_usd > 0) out[RISK_F_payer_amount_ratio_mean] = (float)(amount_usd / p->mean_usd);
    if (p->max_usd > 0) out[RISK_F_payer_amount_ratio_max] = (float)(amount_usd / p->max_usd);
    if (p->count >= 2) {
        float sd = sqrtf(p->m2_log / (float)(p->count - 1) + 0.01f);
        out[RISK_F_payer_amount_z] = ((float)log1p(amount_usd) - p->mean_log) / sd;
    }
    if (a->device_id[0] != '\0') {
        out[RISK_F_payer_device_seen] = known_u32(p->devices, h32(a->device_id));
    }
    out[RISK_F_payer_country_seen] = known_u16(p->countries, h16(a->country_merchant));
    if (a->ip_prefix[0] != '\0') out[RISK_F_payer_ip_seen] = known_u32(p->ips, h32(a->ip_prefix));
    out[RISK_F_payer_merchant_seen] = s.merchant_seen;
    out[RISK_F_payer_channel_seen] = (p->channels_mask >> a->channel) & 1u;
    out[RISK_F_payer_mcc_tier_seen] = (p->tiers_mask >> risk_mcc_tier(a->mcc)) & 1u;
}

/* A payer never seen: no history, everything is new. */
static void payer_features_new(const risk_auth_t *a, float *out) {
    out[RISK_F_payer_count_prior_log] = 0;
    out[RISK_F_payer_count_10m] = 0;
    out[RISK_F_payer_count_1h] = 0;
    out[RISK_F_payer_count_24h] = 0;
    out[RISK_F_payer_sum_usd_1h_log] = 0;
    out[RISK_F_payer_sum_usd_24h_log] = 0;
    out[RISK_F_payer_distinct_merchants_24h] = 0;
    out[RISK_F_payer_distinct_devices_24h] = 0;
    out[RISK_F_payer_distinct_countries_24h] = 0;
    out[RISK_F_payer_cross_border_24h] = 0;
    out[RISK_F_payer_novel_events_24h] = 0;
    out[RISK_F_payer_same_merchant_1h] = 0;
    if (a->device_id[0] != '\0') out[RISK_F_payer_device_seen] = 0;
    out[RISK_F_payer_country_seen] = 0;
    if (a->ip_prefix[0] != '\0') out[RISK_F_payer_ip_seen] = 0;
    out[RISK_F_payer_merchant_seen] = 0;
    out[RISK_F_payer_channel_seen] = 0;
    out[RISK_F_payer_mcc_tier_seen] = 0;
}

static void merchant_features(const entity_state *m, uint32_t now_s, double amount_usd,
                              float *out) {
    if (m == NULL) {
        out[RISK_F_merchant_count_1h] = 0;
        out[RISK_F_merchant_count_24h] = 0;
        out[RISK_F_merchant_age_log] = 0;
        out[RISK_F_merchant_new_payers_24h] = 0;
        return;
    }
    float rate_24h = decayed(m->rate_24h, now_s, m->last_ts_s, TAU_24H_S);
    out[RISK_F_merchant_count_1h] = decayed(m->rate_1h, now_s, m->last_ts_s, TAU_1H_S);
    out[RISK_F_merchant_count_24h] = rate_24h;
    out[RISK_F_merchant_age_log] = log1pf_pos(age_s(now_s, m->first_ts_s));
    out[RISK_F_merchant_new_payers_24h] =
        decayed(m->new_payers_24h, now_s, m->last_ts_s, TAU_24H_S);
    if (rate_24h > 0.5f) {
        out[RISK_F_merchant_cross_border_frac] =
            decayed(m->cross_24h, now_s, m->last_ts_s, TAU_24H_S) / rate_24h;
    }
    if (m->count >= 5) {
        float sd = sqrtf(m->m2_log / (float)(m->count - 1) + 0.01f);
        out[RISK_F_merchant_amount_z] = ((float)log1p(amount_usd) - m->mean_log) / sd;
    }
}

static uint32_t entity_distinct_payers(const entity_state *e, uint32_t now_s, float window_s) {
    uint32_t distinct = 0;
    for (int i = 0; i < RISK_ENTITY_PAYERS; i++) {
        if (e->payers[i] != 0 && age_s(now_s, e->payer_ts_s[i]) < window_s) distinct++;
    }
    return distinct;
}

/* Device or IP velocity; 'out_1h', 'out_24h', 'out_payers' index the output. */
static void link_features(const entity_state *e, uint32_t now_s, float *out, int out_1h,
                          int out_24h, int out_payers) {
    if (e == NULL) {
        out[out_1h] = 0;
        out[out_24h] = 0;
        out[out_payers] = 0;
        return;
    }
    out[out_1h] = decayed(e->rate_1h, now_s, e->last_ts_s, TAU_1H_S);
    out[out_24h] = decayed(e->rate_24h, now_s, e->last_ts_s, TAU_24H_S);
    out[out_payers] = (float)entity_distinct_payers(e, now_s, 30.0f * 86400.0f);
}

static void context_features(const risk_auth_t *a, double amount_usd, float *out) {
    out[RISK_F_amount_usd_log] = log1pf_pos(amount_usd);
    out[RISK_F_account_age_days] = (float)a->account_age_days;
    int hour = risk_local_hour(a->country_payer, a->ts_s);
    if (hour >= 0) out[RISK_F_local_hour] = (float)hour;
    out[RISK_F_channel] = (float)a->channel;
    out[RISK_F_mcc] = (float)a->mcc;
    out[RISK_F_mcc_tier] = (float)risk_mcc_tier(a->mcc);
    out[RISK_F_cross_border] = strcmp(a->country_payer, a->country_merchant) != 0;
    const char *home = risk_country_currency(a->country_payer);
    if (home != NULL) out[RISK_F_currency_foreign] = strcmp(home, a->currency) != 0;
    int round = 0;
    if (a->amount_minor % 100 == 0) round = 1;
    if (a->amount_minor % 10000 == 0) round = 2;
    out[RISK_F_amount_round] = (float)round;
}

/* The slot a lookup of 'key' reads first, fetched ahead: the keys are random, so each
 * lookup misses the cache (and, on a hypervisor, the TLB) two or three times in a row;
 * fetched together, a payment's four lookups wait for their misses at once. */
static void table_prefetch(const table *t, uint64_t key) {
    uint32_t slot = (uint32_t)key & t->slot_mask;
    __builtin_prefetch(&t->keys[slot]);
    __builtin_prefetch(&t->slab_index[slot]);
}

void risk_features_compute(const risk_features_t *f, const risk_auth_t *a,
                           float out[RISK_FEATURE_COUNT]) {
    uint64_t payer_key = key_in(a->scope, 'p', a->payer_id), merchant_key = key_of('m', a->payee_id);
    uint64_t device_key = a->device_id[0] != '\0' ? key_in(a->scope, 'd', a->device_id) : 0;
    uint64_t ip_key = a->ip_prefix[0] != '\0' ? key_in(a->scope, 'i', a->ip_prefix) : 0;
    table_prefetch(&f->payers, payer_key);
    table_prefetch(&f->entities, merchant_key);
    if (device_key != 0) table_prefetch(&f->entities, device_key);
    if (ip_key != 0) table_prefetch(&f->entities, ip_key);
    for (int i = 0; i < RISK_FEATURE_COUNT; i++) out[i] = NAN;
    uint32_t now_s = ts32(a->ts_s);
    double amount_usd = risk_amount_usd(a->amount_minor, a->currency);
    context_features(a, amount_usd, out);
    const payer_state *p = table_find(&f->payers, payer_key);
    const entity_state *m = table_find(&f->entities, merchant_key);
    const entity_state *d = device_key != 0 ? table_find(&f->entities, device_key) : NULL;
    const entity_state *ip = ip_key != 0 ? table_find(&f->entities, ip_key) : NULL;
    if (p != NULL) __builtin_prefetch(p);
    if (m != NULL) __builtin_prefetch(m);
    if (d != NULL) __builtin_prefetch(d);
    if (ip != NULL) __builtin_prefetch(ip);
    if (p != NULL) {
        payer_features(p, a, now_s, amount_usd, out);
    } else {
        payer_features_new(a, out);
    }
    merchant_features(m, now_s, amount_usd, out);
    if (device_key != 0) {
        link_features(d, now_s, out, RISK_F_device_count_1h, RISK_F_device_count_24h,
                      RISK_F_device_distinct_payers);
        if (d != NULL) out[RISK_F_device_age_log] = log1pf_pos(age_s(now_s, d->first_ts_s));
        else out[RISK_F_device_age_log] = 0;
    }
    if (ip_key != 0) {
        link_features(ip, now_s, out, RISK_F_ip_count_1h, RISK_F_ip_count_24h, RISK_F_ip_distinct_payers);
    }
}

/* ---------------------------------------------------------------- observe */

static void remember_u32(uint32_t *set, uint8_t *next, uint32_t v) {
    if (known_u32(set, v)) return;
    set[*next] = v;
    *next = (uint8_t)((*next + 1) % RISK_KNOWN_SLOTS);
}

static void remember_u16(uint16_t *set, uint8_t *next, uint16_t v) {
    if (known_u16(set, v)) return;
    set[*next] = v;
    *next = (uint8_t)((*next + 1) % RISK_KNOWN_SLOTS);
}

static void welford(uint32_t count_after, float *mean, float *m2, float x) {
    float delta = x - *mean;
    *mean += delta / (float)count_after;
    *m2 += delta * (x - *mean);
}

static uint32_t payer_novelty(const payer_state *p, const risk_auth_t *a) {
    if (p->count == 0) return 0;
    bool novel = !known_u16(p->countries, h16(a->country_merchant));
    if (a->device_id[0] != '\0') novel = novel || !known_u32(p->devices, h32(a->device_id));
    if (a->ip_prefix[0] != '\0') novel = novel || !known_u32(p->ips, h32(a->ip_prefix));
    return novel ? EV_FLAG_NOVEL : 0;
}

static void payer_observe(payer_state *p, const risk_auth_t *a, uint32_t now_s,
                          double amount_usd) {
    uint32_t flags = payer_novelty(p, a);
    if (strcmp(a->country_payer, a->country_merchant) != 0) flags |= EV_FLAG_CROSS;
    ring_event *e = &p->ring[p->ring_head];
    e->ts_s = now_s;
    e->amount_usd = (float)amount_usd;
    e->merchant_bits = (h32(a->payee_id) & MERCHANT_MASK) | ((uint32_t)a->channel << 28) |
                       (flags << 30);
    e->device_h16 = a->device_id[0] != '\0' ? h16(a->device_id) : 0;
    e->country_h16 = h16(a->country_merchant);
    p->ring_head = (uint8_t)((p->ring_head + 1) % RISK_RING_EVENTS);
    if (p->ring_count < RISK_RING_EVENTS) p->ring_count++;
    if (p->count == 0) p->first_ts_s = now_s;
    p->last_ts_s = now_s > p->last_ts_s ? now_s : p->last_ts_s;
    if (p->count < UINT32_MAX) p->count++;
    p->mean_usd += ((float)amount_usd - p->mean_usd) / (float)p->count;
    welford(p->count, &p->mean_log, &p->m2_log, (float)log1p(amount_usd));
    if ((float)amount_usd > p->max_usd) p->max_usd = (float)amount_usd;
    if (a->device_id[0] != '\0') remember_u32(p->devices, &p->device_next, h32(a->device_id));
    if (a->ip_prefix[0] != '\0') remember_u32(p->ips, &p->ip_next, h32(a->ip_prefix));
    remember_u16(p->countries, &p->country_next, h16(a->country_merchant));
    p->channels_mask |= (uint8_t)(1u << a->channel);
    p->tiers_mask |= (uint8_t)(1u << risk_mcc_tier(a->mcc));
}

static void entity_add_payer(entity_state *e, uint32_t payer_h, uint32_t now_s) {
    for (int i = 0; i < RISK_ENTITY_PAYERS; i++) {
        if (e->payers[i] == payer_h) {
            e->payer_ts_s[i] = now_s;
            return;
        }
    }
    e->payers[e->payer_next] = payer_h;
    e->payer_ts_s[e->payer_next] = now_s;
    e->payer_next = (uint8_t)((e->payer_next + 1) % RISK_ENTITY_PAYERS);
}

/* 'new_payer' and 'cross' matter for merchants only. */
static void entity_observe(entity_state *e, uint32_t now_s, double amount_usd, uint32_t payer_h,
                           bool new_payer, bool cross) {
    if (e->count == 0) e->first_ts_s = now_s;
    uint32_t then_s = e->count == 0 ? now_s : e->last_ts_s;
    e->rate_1h = decayed(e->rate_1h, now_s, then_s, TAU_1H_S) + 1.0f;
    e->rate_24h = decayed(e->rate_24h, now_s, then_s, TAU_24H_S) + 1.0f;
    e->new_payers_24h = decayed(e->new_payers_24h, now_s, then_s, TAU_24H_S) + (new_payer ? 1 : 0);
    e->cross_24h = decayed(e->cross_24h, now_s, then_s, TAU_24H_S) + (cross ? 1 : 0);
    e->inflow_usd_24h = decayed(e->inflow_usd_24h, now_s, then_s, TAU_24H_S) + (float)amount_usd;
    e->last_ts_s = now_s > e->last_ts_s ? now_s : e->last_ts_s;
    if (e->count < UINT32_MAX) e->count++;
    welford(e->count, &e->mean_log, &e->m2_log, (float)log1p(amount_usd));
    entity_add_payer(e, payer_h, now_s);
}

static void maybe_sweep(risk_features_t *f, uint32_t now_s, bool full) {
    uint32_t interval = full ? SWEEP_FULL_INTERVAL_S : SWEEP_INTERVAL_S;
    if (now_s < f->last_sweep_s + interval) return;
    (void)risk_features_evict_idle(f, now_s);
}

/* Finds or inserts 'key'; NULL (counted) when the table is full even after a sweep. */
static void *find_or_insert(risk_features_t *f, table *t, uint64_t key, uint32_t now_s) {
    void *entry = table_find(t, key);
    if (entry != NULL) return entry;
    if (t->live >= t->entries_max) maybe_sweep(f, now_s, true);
    entry = table_insert(t, key);
    if (entry == NULL) f->dropped_total++;
    return entry;
}

void risk_features_observe(risk_features_t *f, const risk_auth_t *a) {
    uint32_t now_s = ts32(a->ts_s);
    double amount_usd = risk_amount_usd(a->amount_minor, a->currency);
    if (f->last_sweep_s == 0) f->last_sweep_s = now_s;
    maybe_sweep(f, now_s, false);
    f->observed_total++;
    uint32_t payer_h = h32(a->payer_id);
    uint32_t merchant_h = payer_h == 0 ? 0 : (h32(a->payee_id) & MERCHANT_MASK);
    bool new_payer = true;
    payer_state *p = find_or_insert(f, &f->payers, key_in(a->scope, 'p', a->payer_id), now_s);
    if (p != NULL) {
        for (uint32_t i = 0; i < p->ring_count && new_payer; i++) {
            new_payer = (ring_at(p, i)->merchant_bits & MERCHANT_MASK) != merchant_h;
        }
        payer_observe(p, a, now_s, amount_usd);
    }
    bool cross = strcmp(a->country_payer, a->country_merchant) != 0;
    entity_state *m = find_or_insert(f, &f->entities, key_of('m', a->payee_id), now_s);
    if (m != NULL) entity_observe(m, now_s, amount_usd, payer_h, new_payer, cross);
    if (a->device_id[0] != '\0') {
        entity_state *d = find_or_insert(f, &f->entities, key_in(a->scope, 'd', a->device_id), now_s);
        if (d != NULL) entity_observe(d, now_s, amount_usd, payer_h, false, false);
    }
    if (a->ip_prefix[0] != '\0') {
        entity_state *ip = find_or_insert(f, &f->entities, key_in(a->scope, 'i', a->ip_prefix), now_s);
        if (ip != NULL) entity_observe(ip, now_s, amount_usd, payer_h, false, false);
    }
}

uint64_t risk_features_evict_idle(risk_features_t *f, int64_t now_s) {
    uint32_t now = ts32(now_s);
    f->last_sweep_s = now;
    if (now <= f->config.idle_s) return 0;
    uint32_t cutoff_s = now - f->config.idle_s;
    uint64_t evicted = table_evict(&f->payers, cutoff_s) + table_evict(&f->entities, cutoff_s);
    f->evicted_total += evicted;
    return evicted;
}

void risk_features_stats(const risk_features_t *f, risk_features_stats_t *out) {
    out->payers = f->payers.live;
    out->entities = f->entities.live;
    out->evicted_total = f->evicted_total;
    out->dropped_total = f->dropped_total;
    out->observed_total = f->observed_total;
    out->memory_bytes = sizeof(*f) + table_bytes(&f->payers) + table_bytes(&f->entities);
}

/* ---------------------------------------------------------------- views for rules */

void risk_features_payer_view(const risk_features_t *f, const char *payer_id, uint64_t scope,
                              int64_t now_s, int64_t window_s, int64_t low_usd_cents,
                              int64_t high_usd_cents, risk_payer_view_t *out) {
    memset(out, 0, sizeof(*out));
    const payer_state *p = table_find(&f->payers, key_in(scope, 'p', payer_id));
    if (p == NULL) return;
    out->found = true;
    uint32_t now = ts32(now_s);
    for (uint32_t i = 0; i < p->ring_count; i++) {
        const ring_event *e = ring_at(p, i);
        float dt = age_s(now, e->ts_s);
        int64_t cents = (int64_t)llround((double)e->amount_usd * 100.0);
        if (dt < 86400.0f) {
            out->count_24h++;
            out->sum_usd_cents_24h += cents;
        }
        if (dt < (float)window_s) {
            out->count_window++;
            out->sum_usd_cents_window += cents;
            if (cents >= low_usd_cents && cents < high_usd_cents) out->near_threshold_window++;
        }
    }
}

void risk_features_payee_view(const risk_features_t *f, const char *payee_id, uint64_t scope,
                              const char *payer_id, int64_t now_s, risk_payee_view_t *out) {
    memset(out, 0, sizeof(*out));
    const entity_state *m = table_find(&f->entities, key_in(scope, 'm', payee_id));
    if (m == NULL) return;
    uint32_t now = ts32(now_s);
    out->found = true;
    out->first_seen_s = m->first_ts_s;
    out->distinct_payers_24h = entity_distinct_payers(m, now, 86400.0f);
    uint32_t payer_h = payer_id != NULL ? h32(payer_id) : 0;
    for (int i = 0; i < RISK_ENTITY_PAYERS && payer_h != 0; i++) {
        if (m->payers[i] == payer_h && age_s(now, m->payer_ts_s[i]) < 86400.0f) {
            out->payer_seen_24h = true;
        }
    }
    out->inflow_usd_cents_24h =
        (int64_t)llround((double)decayed(m->inflow_usd_24h, now, m->last_ts_s, TAU_24H_S) * 100.0);
}

/* ---------------------------------------------------------------- snapshot
 * Layout: header, then (key, entry) for every live payer, then for every live
 * entity, then a 64-bit checksum of everything before it. Written to a temporary
 * file, fsynced, renamed: a crash leaves the old snapshot or the new one. */

#define SNAPSHOT_MAGIC "PCRFEAT1"
#define SNAPSHOT_VERSION 1u

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t feature_count;
    uint32_t payer_bytes;
    uint32_t entity_bytes;
    uint32_t payers_live;
    uint32_t entities_live;
    uint32_t last_sweep_s;
    uint32_t reserved;
    uint64_t tag;
    uint64_t evicted_total;
    uint64_t dropped_total;
    uint64_t observed_total;
} snapshot_header;

typedef struct {
    FILE *file;
    uint64_t checksum;
    bool ok;
} snap_io;

static void sum_bytes(snap_io *io, const void *bytes, size_t n) {
    io->checksum = (io->checksum ^ pc_hash64(bytes, n)) * 0x100000001b3ull;
}

static void snap_write(snap_io *io, const void *bytes, size_t n) {
    if (io->ok && fwrite(bytes, 1, n, io->file) != n) io->ok = false;
    sum_bytes(io, bytes, n);
}

static bool snap_read(snap_io *io, void *bytes, size_t n) {
    if (fread(bytes, 1, n, io->file) != n) return false;
    sum_bytes(io, bytes, n);
    return true;
}

static void table_write(snap_io *io, const table *t) {
    for (uint32_t slot = 0; slot <= t->slot_mask; slot++) {
        if (t->keys[slot] == 0) continue;
        snap_write(io, &t->keys[slot], sizeof(uint64_t));
        snap_write(io, table_entry(t, t->slab_index[slot]), t->entry_bytes);
    }
}

pc_status risk_features_save(const risk_features_t *f, const char *path, uint64_t tag) {
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return PC_INVALID_ARGUMENT;
    snap_io io = {fopen(tmp, "wb"), 0, true};
    if (io.file == NULL) return PC_IO;
    snapshot_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, SNAPSHOT_MAGIC, 8);
    h.version = SNAPSHOT_VERSION;
    h.feature_count = RISK_FEATURE_COUNT;
    h.payer_bytes = sizeof(payer_state);
    h.entity_bytes = sizeof(entity_state);
    h.payers_live = f->payers.live;
    h.entities_live = f->entities.live;
    h.last_sweep_s = f->last_sweep_s;
    h.tag = tag;
    h.evicted_total = f->evicted_total;
    h.dropped_total = f->dropped_total;
    h.observed_total = f->observed_total;
    snap_write(&io, &h, sizeof(h));
    table_write(&io, &f->payers);
    table_write(&io, &f->entities);
    uint64_t checksum = io.checksum;
    if (io.ok && fwrite(&checksum, sizeof(checksum), 1, io.file) != 1) io.ok = false;
    if (fflush(io.file) != 0 || fsync(fileno(io.file)) != 0) io.ok = false;
    if (fclose(io.file) != 0) io.ok = false;
    if (!io.ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return PC_IO;
    }
    return PC_OK;
}

static bool table_read(snap_io *io, table *t, uint32_t live) {
    unsigned char entry[sizeof(payer_state) > sizeof(entity_state) ? sizeof(payer_state)
                                                                    : sizeof(entity_state)];
    for (uint32_t i = 0; i < live; i++) {
        uint64_t key = 0;
        if (!snap_read(io, &key, sizeof(key)) || !snap_read(io, entry, t->entry_bytes)) return false;
        if (key == 0 || table_find(t, key) != NULL) return false;
        void *dst = table_insert(t, key);
        if (dst == NULL) return false;
        memcpy(dst, entry, t->entry_bytes);
    }
    return true;
}

static bool header_valid(const snapshot_header *h, const risk_features_config_t *config) {
    return memcmp(h->magic, SNAPSHOT_MAGIC, 8) == 0 && h->version == SNAPSHOT_VERSION &&
           h->feature_count == RISK_FEATURE_COUNT && h->payer_bytes == sizeof(payer_state) &&
           h->entity_bytes == sizeof(entity_state) && h->payers_live <= config->payers_max &&
           h->entities_live <= config->entities_max;
}

/* Reads into a fresh state and swaps it in only when everything verified. */
pc_status risk_features_load(risk_features_t *f, const char *path, uint64_t *tag_out) {
    snap_io io = {fopen(path, "rb"), 0, true};
    if (io.file == NULL) return errno == ENOENT ? PC_NOT_FOUND : PC_IO;
    snapshot_header h;
    risk_features_t *fresh = NULL;
    pc_status status = PC_RISK_SNAPSHOT_INVALID;
    if (snap_read(&io, &h, sizeof(h)) && header_valid(&h, &f->config) &&
        risk_features_open(&f->config, &fresh) == PC_OK) {
        uint64_t stored = 0;
        bool ok = table_read(&io, &fresh->payers, h.payers_live) &&
                  table_read(&io, &fresh->entities, h.entities_live);
        uint64_t computed = io.checksum;
        ok = ok && fread(&stored, sizeof(stored), 1, io.file) == 1 && stored == computed;
        ok = ok && fgetc(io.file) == EOF;
        if (ok) status = PC_OK;
    }
    fclose(io.file);
    if (status != PC_OK) {
        risk_features_close(fresh);
        return status;
    }
    *tag_out = h.tag;
    fresh->last_sweep_s = h.last_sweep_s;
    fresh->evicted_total = h.evicted_total;
    fresh->dropped_total = h.dropped_total;
    fresh->observed_total = h.observed_total;
    risk_features_t old = *f;
    *f = *fresh;
    *fresh = old;
    risk_features_close(fresh);
    return PC_OK;
}
