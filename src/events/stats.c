/* events/stats.c: the delivery figures as a copy for the dashboard (GET /v1/stats):
 * what /metrics prints (events.c), per destination, read under the stats mutex. */
#include <string.h>

#include "events/events_internal.h"

uint32_t events_destinations_stats(events_t *events, events_destination_stats_t *out, uint32_t max,
                                   uint64_t *written_out) {
    if (written_out != NULL) *written_out = 0;
    if (events == NULL || !events->config.enabled) return 0;
    if (written_out != NULL) {
        for (uint32_t i = 0; i < EVENTS_TYPE_COUNT; i++) *written_out += atomic_load(&events->written[i]);
    }
    uint32_t count = 0;
    pthread_mutex_lock(&events->stats_mutex);
    for (uint32_t i = 0; i <= EVENTS_ENDPOINTS_MAX && count < max; i++) {
        const events_dest_stats_t *slot = &events->stats[i];
        if (!slot->present) continue;
        events_destination_stats_t *d = &out[count++];
        memset(d, 0, sizeof(*d));
        memcpy(d->id, slot->id, sizeof d->id);
        memcpy(d->kind, slot->kind, sizeof d->kind);
        d->delivered = slot->delivered;
        d->retried = slot->retried;
        d->dead_lettered = slot->dead_lettered;
        d->lag_ms = slot->lag_ms;
        d->disabled = slot->disabled;
    }
    pthread_mutex_unlock(&events->stats_mutex);
    return count;
}
