/* payments/runtime.c: the payments runtime of one server: its in-memory sets (busy
 * objects, key bindings, merchants, accounts known to exist, open holds), its store
 * readers, start and stop. Everything in memory is derived: the store holds the truth
 * and a restart rebuilds it (bindings and holds at start, merchants on first use). */
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "payments/pay_internal.h"

#define PAY_MAP_BUCKETS 65536

void pay_config_default(pay_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->authorization_window_s = PAY_AUTHORIZATION_WINDOW_S_DEFAULT;
    config->recovery_interval_ms = PAY_RECOVERY_MS_DEFAULT;
    config->recovery_grace_ms = PAY_RECOVERY_GRACE_MS_DEFAULT;
    config->bank_inquiry_ms = PAY_BANK_INQUIRY_MS_DEFAULT;
}

store_reader_t *pay_reader_acquire(pay_t *pay) {
    pthread_mutex_lock(&pay->readers_mutex);
    store_reader_t *reader = pay->reader_count > 0 ? pay->readers[--pay->reader_count] : NULL;
    pthread_mutex_unlock(&pay->readers_mutex);
    if (reader == NULL && store_reader_open(pay->config.store, &reader) != PC_OK) reader = NULL;
    return reader;
}

void pay_reader_release(pay_t *pay, store_reader_t *reader) {
    if (reader == NULL) return;
    pthread_mutex_lock(&pay->readers_mutex);
    if (pay->reader_count < sizeof pay->readers / sizeof pay->readers[0]) {
        pay->readers[pay->reader_count++] = reader;
        reader = NULL;
    }
    pthread_mutex_unlock(&pay->readers_mutex);
    if (reader != NULL) store_reader_close(reader);
}

bool pay_busy_take(pay_t *pay, const char *id) {
    pthread_mutex_lock(&pay->busy_mutex);
    bool taken = pay_map_get(&pay->busy, id) == NULL && pay_map_put(&pay->busy, id, (void *)1, NULL) == PC_OK;
    pthread_mutex_unlock(&pay->busy_mutex);
    return taken;
}

static uint32_t busy_stamp(const char *id) {
    uint32_t hash = 2166136261u; /* FNV-1a: ids end in random hex */
    for (const char *c = id; *c != '\0'; c++) hash = (hash ^ (uint8_t)*c) * 16777619u;
    return hash % PAY_BUSY_STAMPS;
}

bool pay_busy_take_since(pay_t *pay, const char *id, uint64_t since_ns) {
    pthread_mutex_lock(&pay->busy_mutex);
    bool taken = pay->busy_released_ns[busy_stamp(id)] < since_ns && pay_map_get(&pay->busy, id) == NULL &&
                 pay_map_put(&pay->busy, id, (void *)1, NULL) == PC_OK;
    pthread_mutex_unlock(&pay->busy_mutex);
    return taken;
}

void pay_busy_release(pay_t *pay, const char *id) {
    uint64_t now_ns = pc_mono_ns();
    pthread_mutex_lock(&pay->busy_mutex);
    (void)pay_map_remove(&pay->busy, id);
    pay->busy_released_ns[busy_stamp(id)] = now_ns;
    pthread_mutex_unlock(&pay->busy_mutex);
}

bool pay_busy(pay_t *pay, const char *id) {
    pthread_mutex_lock(&pay->busy_mutex);
    bool busy = pay_map_get(&pay->busy, id) != NULL;
    pthread_mutex_unlock(&pay->busy_mutex);
    return busy;
}

bool pay_account_known(pay_t *pay, const char *account_id) {
    pthread_mutex_lock(&pay->sets_mutex);
    bool known = pay_map_get(&pay->accounts_known, account_id) != NULL;
    pthread_mutex_unlock(&pay->sets_mutex);
    return known;
}

void pay_account_mark_known(pay_t *pay, const char *account_id) {
    pthread_mutex_lock(&pay->sets_mutex);
    if (pay_map_put(&pay->accounts_known, account_id, (void *)1, NULL) != PC_OK) { /* a lookup again next time */ }
    pthread_mutex_unlock(&pay->sets_mutex);
}

/* A hold's deadline is its entry's value itself (no allocation per payment). */
static_assert(sizeof(uintptr_t) >= sizeof(uint64_t), "a deadline fits in a map value");

void pay_hold_track(pay_t *pay, const char *payment_id, uint64_t deadline_ns) {
    pthread_mutex_lock(&pay->sets_mutex);
    pc_status status = pay_map_put(&pay->holds, payment_id, (void *)(uintptr_t)deadline_ns, NULL);
    pthread_mutex_unlock(&pay->sets_mutex);
    (void)status; /* no memory: untracked, the next start finds it again */
}

void pay_hold_untrack(pay_t *pay, const char *payment_id) {
    pthread_mutex_lock(&pay->sets_mutex);
    (void)pay_map_remove(&pay->holds, payment_id);
    pthread_mutex_unlock(&pay->sets_mutex);
}

/* ---- recent payments ---- */

static void recent_free(void *value) { pay_payment_free(value); }

/* An id into a bounded map's ring: a new id takes the next slot, whose old id goes
 * (returned, removed from 'map'). Under pay->recent_mutex. */
static void *ring_take_slot(pay_map_t *map, char (*ring)[PC_ID_SIZE], uint32_t *next, const char *id) {
    void *evicted = NULL;
    char *slot = ring[*next];
    if (slot[0] != '\0') evicted = pay_map_remove(map, slot);
    pay_id_copy(slot, id);
    *next = (*next + 1) % PAY_RECENT_PAYMENTS_MAX;
    return evicted;
}

void pay_recent_put(pay_t *pay, pay_payment_t *payment) {
    void *old = NULL, *evicted = NULL;
    pthread_mutex_lock(&pay->recent_mutex);
    if (pay->recent_ring != NULL && pay_map_put(&pay->recent, payment->id, payment, &old) == PC_OK) {
        if (old == NULL) { /* a new id takes the ring's next slot; the id that held it goes */
            evicted = ring_take_slot(&pay->recent, pay->recent_ring, &pay->recent_next, payment->id);
        }
        payment = NULL;
    }
    pthread_mutex_unlock(&pay->recent_mutex);
    recent_free(old);
    recent_free(evicted);
    recent_free(payment);
}

/* A payment taken out of the kept copies: into 'out' if it is of 'version', else freed. */
static bool recent_current(pay_payment_t *payment, uint32_t version, pay_payment_t *out) {
    if (payment == NULL) return false;
    bool current = payment->version == version;
    if (current) {
        *out = *payment;
        free(payment);
    } else {
        recent_free(payment);
    }
    return current;
}

bool pay_recent_take(pay_t *pay, const char *id, uint32_t version, pay_payment_t *out) {
    pthread_mutex_lock(&pay->recent_mutex);
    pay_payment_t *payment = pay_map_remove(&pay->recent, id);
    pthread_mutex_unlock(&pay->recent_mutex);
    return recent_current(payment, version, out);
}

void pay_committed_note(pay_t *pay, const char *id, uint32_t version) {
    void *old = NULL;
    pthread_mutex_lock(&pay->recent_mutex);
    if (pay->committed_ring != NULL && version == 0) {
        (void)pay_map_remove(&pay->committed, id); /* its ring slot frees when reached */
    } else if (pay->committed_ring != NULL &&
               pay_map_put(&pay->committed, id, (void *)(uintptr_t)version, &old) == PC_OK && old == NULL) {
        (void)ring_take_slot(&pay->committed, pay->committed_ring, &pay->committed_next, id);
    }
    pthread_mutex_unlock(&pay->recent_mutex);
}

bool pay_recent_take_current(pay_t *pay, const char *id, pay_payment_t *out) {
    pthread_mutex_lock(&pay->recent_mutex);
    uintptr_t version = (uintptr_t)pay_map_get(&pay->committed, id);
    pay_payment_t *payment = version != 0 ? pay_map_remove(&pay->recent, id) : NULL;
    pthread_mutex_unlock(&pay->recent_mutex);
    return recent_current(payment, (uint32_t)version, out);
}

bool pay_card_three_ds(const pay_t *pay, const char *number) {
    for (uint32_t i = 0; i < pay->three_ds_prefix_count; i++) {
        const char *prefix = pay->three_ds_prefixes[i];
        if (strncmp(number, prefix, strlen(prefix)) == 0) return true;
    }
    return false;
}

/* "4000002760,5200" -> prefixes; the card simulator's 3-D Secure range by default. */
static void three_ds_parse(pay_t *pay, const char *list) {
    const char *text = list != NULL ? list : "4000002760";
    while (*text != '\0' && pay->three_ds_prefix_count < 8) {
        size_t n = strcspn(text, ",");
        if (n > 0 && n < sizeof pay->three_ds_prefixes[0]) {
            memcpy(pay->three_ds_prefixes[pay->three_ds_prefix_count], text, n);
            pay->three_ds_prefixes[pay->three_ds_prefix_count++][n] = '\0';
        }
        text += n;
        if (*text == ',') text++;
    }
}

void pay_key_merchant(pay_t *pay, const char *key_id, char merchant_out[PC_ID_SIZE]) {
    pthread_mutex_lock(&pay->sets_mutex);
    const char *merchant = pay_map_get(&pay->key_merchants, key_id);
    pc_str_copy(merchant_out, PC_ID_SIZE, merchant ? merchant : "");
    pthread_mutex_unlock(&pay->sets_mutex);
}

void pay_key_bound(pay_t *pay, const char *key_id, const char *merchant_id) {
    char *copy = pc_strdup(merchant_id);
    void *old = NULL;
    pthread_mutex_lock(&pay->sets_mutex);
    if (copy == NULL || pay_map_put(&pay->key_merchants, key_id, copy, &old) != PC_OK) old = copy;
    pthread_mutex_unlock(&pay->sets_mutex);
    free(old);
}

static bool binding_load(const char *name, const store_pay_lookup_t *lookup, void *ctx) {
    pay_t *pay = ctx;
    pay_key_bound(pay, name + strlen("key:"), lookup->object_id);
    return true;
}

static void merchant_free(void *value) {
    pay_merchant_t *merchant = value;
    if (merchant != NULL) free(merchant->doc);
    free(merchant);
}

static pc_status runtime_init(pay_t *pay) {
    pthread_mutex_init(&pay->mutex, NULL);
    pthread_mutex_init(&pay->busy_mutex, NULL);
    pthread_mutex_init(&pay->sets_mutex, NULL);
    pthread_mutex_init(&pay->recent_mutex, NULL);
    pthread_mutex_init(&pay->readers_mutex, NULL);
    pthread_cond_init(&pay->flows_idle, NULL);
    pthread_cond_init(&pay->recovery_wake, NULL);
    pay_stats_init(pay);
    pc_status status = pay_map_init(&pay->busy, PAY_MAP_BUCKETS);
    if (status == PC_OK) status = pay_map_init(&pay->key_merchants, 1024);
    if (status == PC_OK) status = pay_map_init(&pay->merchants, 4096);
    if (status == PC_OK) status = pay_map_init(&pay->accounts_known, PAY_MAP_BUCKETS);
    if (status == PC_OK) status = pay_map_init(&pay->holds, PAY_MAP_BUCKETS);
    if (status == PC_OK) status = pay_map_init(&pay->recent, PAY_RECENT_PAYMENTS_MAX);
    if (status == PC_OK) status = pay_map_init(&pay->committed, PAY_RECENT_PAYMENTS_MAX);
    if (status == PC_OK) {
        pay->recent_ring = calloc(PAY_RECENT_PAYMENTS_MAX, sizeof *pay->recent_ring);
        pay->committed_ring = calloc(PAY_RECENT_PAYMENTS_MAX, sizeof *pay->committed_ring);
        if (pay->recent_ring == NULL || pay->committed_ring == NULL) status = PC_NO_MEMORY;
    }
    three_ds_parse(pay, pay->config.three_ds_prefixes);
    return status;
}

static void runtime_free(pay_t *pay) {
    pay_stage_stop(pay); /* every flow ended (or none began): its queue is empty */
    while (pay->flows_free != NULL) {
        pay_flow_t *flow = pay->flows_free;
        pay->flows_free = flow->staging.next;
        free(flow);
    }
    pay_map_free(&pay->busy, NULL);
    pay_map_free(&pay->key_merchants, free);
    pay_map_free(&pay->merchants, merchant_free);
    pay_map_free(&pay->accounts_known, NULL);
    pay_map_free(&pay->holds, NULL);
    pay_map_free(&pay->recent, recent_free);
    free(pay->recent_ring);
    pay_map_free(&pay->committed, NULL);
    free(pay->committed_ring);
    for (uint32_t i = 0; i < pay->reader_count; i++) store_reader_close(pay->readers[i]);
    pay_stats_free(pay);
    pthread_cond_destroy(&pay->recovery_wake);
    pthread_cond_destroy(&pay->flows_idle);
    pthread_mutex_destroy(&pay->readers_mutex);
    pthread_mutex_destroy(&pay->recent_mutex);
    pthread_mutex_destroy(&pay->sets_mutex);
    pthread_mutex_destroy(&pay->busy_mutex);
    pthread_mutex_destroy(&pay->mutex);
    free(pay);
}

static pc_status gateway_listener(void *ctx, gw_update_t *update) { return pay_bank_update(ctx, update); }

pc_status pay_start(pay_t **out, const pay_config_t *config) {
    pay_t *pay = calloc(1, sizeof *pay);
    if (pay == NULL) return PC_NO_MEMORY;
    pay->config = *config;
    if (pay->config.authorization_window_s == 0) pay->config.authorization_window_s = PAY_AUTHORIZATION_WINDOW_S_DEFAULT;
    if (pay->config.recovery_interval_ms == 0) pay->config.recovery_interval_ms = PAY_RECOVERY_MS_DEFAULT;
    pc_status status = runtime_init(pay);
    store_reader_t *reader = status == PC_OK ? pay_reader_acquire(pay) : NULL;
    if (status == PC_OK && reader == NULL) status = PC_STORE_READ_FAILED;
    if (status == PC_OK) status = store_pay_lookups_prefix(reader, "key:", binding_load, pay);
    if (status == PC_OK) status = pay_idem_index_load(pay, reader);
    pay_reader_release(pay, reader);
    if (status == PC_OK) status = pay_holds_load(pay);
    if (status == PC_OK) pay_stage_start(pay); /* before recovery: its flows may stage */
    if (status == PC_OK) status = pay_recovery_start(pay);
    if (status != PC_OK && status != PC_SHUTTING_DOWN) { /* a stop during the start is no failure */
        obs_logf(OBS_LEVEL_ERROR, "payments: cannot start: %s", pc_status_code(status));
    }
    if (status != PC_OK) {
        runtime_free(pay);
        return status;
    }
    if (pay->config.gateway != NULL) gw_set_update_listener(pay->config.gateway, gateway_listener, pay);
    *out = pay;
    return PC_OK;
}

void pay_quiesce(pay_t *pay) {
    if (pay == NULL) return;
    if (pay->config.gateway != NULL) gw_set_update_listener(pay->config.gateway, NULL, NULL);
    pthread_mutex_lock(&pay->mutex);
    pay->stopping = true;
    pthread_mutex_unlock(&pay->mutex);
    pay_recovery_stop(pay);
    pthread_mutex_lock(&pay->mutex);
    while (pay->flows > 0) pthread_cond_wait(&pay->flows_idle, &pay->mutex);
    pthread_mutex_unlock(&pay->mutex);
}

void pay_stop(pay_t *pay) {
    if (pay == NULL) return;
    pay_quiesce(pay);
    runtime_free(pay);
}

/* ---- replies ---- */

void pay_reply_error(pay_reply_t *out, pc_status status, const char *field, const char *message) {
    json_decref(out->body);
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->http_status = pc_status_http(status);
    pc_str_copy(out->field, sizeof out->field, field ? field : "");
    pc_str_copy(out->message, sizeof out->message, message ? message : "");
}

void pay_reply_object(pay_reply_t *out, int http_status, json_t *body) {
    json_decref(out->body);
    memset(out, 0, sizeof(*out));
    out->status = body != NULL ? PC_OK : PC_NO_MEMORY;
    out->http_status = body != NULL ? http_status : 503;
    out->body = body;
}

void pay_reply_state_conflict(pay_reply_t *out, pay_state state, const char *what) {
    char message[192];
    snprintf(message, sizeof message, "the payment is %s: %s is not allowed", pay_state_name(state), what);
    pay_reply_error(out, PC_PAYMENT_STATE_CONFLICT, NULL, message);
    pc_str_copy(out->state, sizeof out->state, pay_state_name(state));
}

void pay_reply_clear(pay_reply_t *reply) {
    json_decref(reply->body);
    reply->body = NULL;
}
