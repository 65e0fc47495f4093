/* api/usage.c: what each API key holds of the server's shared memory and storage, so
 * that one key cannot take what every key needs.
 *
 * Request bodies: a body is buffered whole before its handler runs (up to --body-max).
 * The server buffers at most API_BODY_BUDGET_BYTES at once; one key at most
 * API_BODY_KEY_BODIES full bodies' worth (so 70 slow uploads from one key block that
 * key, not every POST), and keys other than admin keys leave API_BODY_ADMIN_RESERVE
 * of the server budget free, so an operator can always act. Past a budget the request
 * gets 503 limit_reached (Retry-After) before its body is read.
 *
 * Stored idempotent replies: bytes per key and in total, counted from the file at
 * start and kept up to date as replies are stored and purged (idempotency.c). The
 * total is a hard bound; a key's own bound is a fair share that holds only once the
 * room is short (API_IDEM_ROOM_SHORT_PERCENT full): until then one busy key may use
 * what the others leave, and past it the rest of the room is kept for the keys still
 * within their share.
 *
 * One mutex guards the table; it is taken a few times per request with a body. Keys
 * are never removed (there are at most API_KEYS_MAX, plus "" for keyless requests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/core.h"

/* Open addressing, at most half full. */
#define USAGE_SLOTS (2u * (API_KEYS_MAX + 1u))

struct api_usage_slot {
    bool used;
    char key_id[PC_ID_SIZE];       /* "" = requests without a key */
    uint64_t body_bytes;           /* request bodies buffered now */
    uint64_t idem_bytes;           /* stored idempotent replies */
};

pc_status api_usage_init(api_usage_t *usage, uint64_t body_bytes_max) {
    memset(usage, 0, sizeof(*usage));
    pthread_mutex_init(&usage->mutex, NULL);
    usage->slots = calloc(USAGE_SLOTS, sizeof(api_usage_slot));
    /* a key may buffer API_BODY_KEY_BODIES full bodies, at least one and at most a
     * quarter of the server's budget */
    uint64_t key_max = body_bytes_max * API_BODY_KEY_BODIES;
    if (key_max > API_BODY_BUDGET_BYTES / 4) key_max = API_BODY_BUDGET_BYTES / 4;
    if (key_max < body_bytes_max + 1) key_max = body_bytes_max + 1;
    usage->body_key_bytes_max = key_max;
    return usage->slots != NULL ? PC_OK : PC_NO_MEMORY;
}

void api_usage_free(api_usage_t *usage) {
    free(usage->slots);
    usage->slots = NULL;
    pthread_mutex_destroy(&usage->mutex);
}

/* The slot of 'key_id' (added when new), under the mutex; NULL when the table is full
 * (it cannot be: keys are bounded by API_KEYS_MAX). */
static api_usage_slot *slot_find(api_usage_t *usage, const char *key_id) {
    uint32_t index = (uint32_t)(pc_hash64(key_id, strlen(key_id)) % USAGE_SLOTS);
    for (uint32_t probe = 0; probe < USAGE_SLOTS; probe++) {
        api_usage_slot *slot = &usage->slots[(index + probe) % USAGE_SLOTS];
        if (!slot->used) {
            if (usage->slot_count + 1 > USAGE_SLOTS / 2) return NULL;
            slot->used = true;
            pc_str_copy(slot->key_id, sizeof slot->key_id, key_id);
            usage->slot_count++;
            return slot;
        }
        if (strcmp(slot->key_id, key_id) == 0) return slot;
    }
    return NULL;
}

pc_status api_usage_body_charge(api_usage_t *usage, const char *key_id, bool admin,
                                uint64_t bytes) {
    uint64_t server_max = API_BODY_BUDGET_BYTES - (admin ? 0 : API_BODY_ADMIN_RESERVE_BYTES);
    pc_status status = PC_LIMIT_REACHED;
    pthread_mutex_lock(&usage->mutex);
    api_usage_slot *slot = slot_find(usage, key_id);
    if (slot != NULL && slot->body_bytes + bytes <= usage->body_key_bytes_max &&
        usage->body_bytes_total + bytes <= server_max) {
        slot->body_bytes += bytes;
        usage->body_bytes_total += bytes;
        status = PC_OK;
    }
    pthread_mutex_unlock(&usage->mutex);
    return status;
}

void api_usage_body_release(api_usage_t *usage, const char *key_id, uint64_t bytes) {
    if (bytes == 0) return;
    pthread_mutex_lock(&usage->mutex);
    api_usage_slot *slot = slot_find(usage, key_id);
    PC_ASSERT(slot != NULL && slot->body_bytes >= bytes);
    PC_ASSERT(usage->body_bytes_total >= bytes);
    slot->body_bytes -= bytes;
    usage->body_bytes_total -= bytes;
    pthread_mutex_unlock(&usage->mutex);
}

/* value + delta; the counts are exact (taken from the file at start, then changed by
 * committed rows only), so a fall below zero is a bug: asserted in tests, floored here. */
static uint64_t add_signed(uint64_t value, int64_t delta) {
    if (delta >= 0) return value + (uint64_t)delta;
    uint64_t drop = (uint64_t)(-(delta + 1)) + 1; /* -delta without overflow at INT64_MIN */
    PC_ASSERT_SLOW(drop <= value);
    return drop > value ? 0 : value - drop;
}

void api_usage_idem_add(api_usage_t *usage, const char *key_id, int64_t delta_bytes) {
    if (delta_bytes == 0) return;
    pthread_mutex_lock(&usage->mutex);
    api_usage_slot *slot = slot_find(usage, key_id);
    if (slot != NULL) {
        slot->idem_bytes = add_signed(slot->idem_bytes, delta_bytes);
        usage->idem_bytes_total = add_signed(usage->idem_bytes_total, delta_bytes);
    }
    pthread_mutex_unlock(&usage->mutex);
}

/* The total past which the room is short: API_IDEM_ROOM_SHORT_PERCENT of the bound,
 * without overflow for any bound. */
static uint64_t idem_short_bytes(uint64_t total_bytes_max) {
    return total_bytes_max / 100 * API_IDEM_ROOM_SHORT_PERCENT +
           total_bytes_max % 100 * API_IDEM_ROOM_SHORT_PERCENT / 100;
}

bool api_usage_idem_room(api_usage_t *usage, const char *key_id, uint64_t key_bytes_max,
                         uint64_t total_bytes_max) {
    pthread_mutex_lock(&usage->mutex);
    api_usage_slot *slot = slot_find(usage, key_id);
    uint64_t total = usage->idem_bytes_total;
    bool within_share = slot != NULL && slot->idem_bytes < key_bytes_max;
    bool short_room = total >= idem_short_bytes(total_bytes_max);
    bool room = slot != NULL && total < total_bytes_max && (within_share || !short_room);
    pthread_mutex_unlock(&usage->mutex);
    return room;
}

void api_usage_totals(api_usage_t *usage, uint64_t *body_bytes, uint64_t *idem_bytes) {
    pthread_mutex_lock(&usage->mutex);
    *body_bytes = usage->body_bytes_total;
    *idem_bytes = usage->idem_bytes_total;
    pthread_mutex_unlock(&usage->mutex);
}
