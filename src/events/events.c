/* events/events.c: the events runtime of `paycore serve`: configuration, the secret
 * key, the delivery threads' lifecycle, the test clock, and the metrics. */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "obs/obs.h"

#define EVENTS_CLOCK_ENV "PAYCORE_EVENTS_TEST_CLOCK_FILE"

void events_config_default(events_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->enabled = true;
    config->amqp_exchange = "paycore.events";
    config->retention_s = 30ull * 24 * 3600;    /* as long as Stripe keeps events */
    config->retry_base_ms = 1000;
    config->retry_cap_ms = 3600 * 1000;         /* then hourly until dead-lettered */
    config->retry_max_s = 3ull * 24 * 3600;
    config->disable_after_s = 5ull * 24 * 3600;
    config->webhook_timeout_ms = 10000;
}

static bool config_copy(events_t *events, const events_config_t *config) {
    events->config = *config;
    events->db_path = pc_strdup(config->db_path);
    events->amqp_url = pc_strdup(config->amqp_url);
    events->amqp_exchange = pc_strdup(config->amqp_exchange ? config->amqp_exchange : "paycore.events");
    events->config.db_path = events->db_path;
    events->config.amqp_url = events->amqp_url;
    events->config.amqp_exchange = events->amqp_exchange;
    if (events->config.retry_base_ms == 0) events->config.retry_base_ms = 1;
    if (events->config.retry_cap_ms < events->config.retry_base_ms) {
        events->config.retry_cap_ms = events->config.retry_base_ms;
    }
    return events->db_path != NULL && events->amqp_exchange != NULL &&
           (config->amqp_url == NULL || events->amqp_url != NULL);
}

/* The key may be created only while no sealed secret exists: a key file lost with
 * endpoints in the database must stop the start, not silently orphan their secrets. */
static pc_status key_open(events_t *events) {
    store_reader_t *reader;
    pc_status status = store_reader_open(events->store, &reader);
    if (status != PC_OK) return status;
    uint32_t merchant_count = 0, total_count = 0;
    status = store_events_destination_counts(reader, "", &merchant_count, &total_count);
    store_reader_close(reader);
    if (status != PC_OK) return status;
    status = events_key_load(events->db_path, total_count == 0, events->key);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "events: %s.webhook-key is missing or invalid while %u webhook endpoints"
                                  " hold secrets sealed with it: restore the file",
                 events->db_path, total_count);
    }
    return status;
}

pc_status events_open(events_t **out, store_t *store, const events_config_t *config) {
    if (sodium_init() < 0) return PC_INTERNAL;
    events_t *events = calloc(1, sizeof(*events));
    if (events == NULL) return PC_NO_MEMORY;
    events->store = store;
    pthread_mutex_init(&events->stats_mutex, NULL);
    pthread_mutex_init(&events->wake_mutex, NULL);
    const char *clock_file = getenv(EVENTS_CLOCK_ENV);
    if (clock_file != NULL) snprintf(events->clock_file, sizeof events->clock_file, "%s", clock_file);
    pc_status status = config_copy(events, config) ? PC_OK : PC_NO_MEMORY;
    if (status != PC_OK) {
        events_close(events);
        return status;
    }
    events_clock_refresh(events);
    *out = events;
    return PC_OK;
}

bool events_webhook_private_ok(const events_t *events) {
    return events != NULL && events->config.webhook_private_ok;
}

/* A broker destination left from a run with --events-amqp holds retention back. */
static void amqp_leftover_warn(events_t *events) {
    store_reader_t *reader;
    store_event_destination_t *row = malloc(sizeof(*row));
    if (row == NULL || store_reader_open(events->store, &reader) != PC_OK) {
        free(row);
        return;
    }
    if (store_events_destination_get(reader, "amqp", row) == PC_OK) {
        obs_logf(OBS_LEVEL_WARN, "events: the AMQP destination of an earlier run exists but --events-amqp is not set:"
                                 " events it has not confirmed are kept (retention waits for it)");
    }
    store_reader_close(reader);
    free(row);
}

pc_status events_start(events_t *events, writer_t *writer) {
    events->writer = writer;
    /* the store is loaded now (readers need it); also without the outbox: endpoints
     * made meanwhile must be sealed with the real key */
    pc_status status = key_open(events);
    if (status != PC_OK || !events->config.enabled) return status;
    if (events->amqp_url == NULL) amqp_leftover_warn(events);
    events_webhooks_t *webhooks = NULL;
    status = events_webhooks_start(events, &webhooks);
    pthread_mutex_lock(&events->wake_mutex);
    events->webhooks = webhooks;
    pthread_mutex_unlock(&events->wake_mutex);
    if (status == PC_OK && events->amqp_url != NULL) status = events_amqp_start(events, &events->amqp);
    return status;
}

void events_stop(events_t *events) {
    if (events == NULL) return;
    events_shards_stop(events->shards); /* it writes through the writers */
    if (events->amqp != NULL) events_amqp_stop(events->amqp);
    events->amqp = NULL;
    pthread_mutex_lock(&events->wake_mutex);
    events_webhooks_t *webhooks = events->webhooks;
    events->webhooks = NULL; /* the writer's hook stops waking it */
    pthread_mutex_unlock(&events->wake_mutex);
    if (webhooks != NULL) events_webhooks_stop(webhooks);
}

void events_close(events_t *events) {
    if (events == NULL) return;
    events_stop(events);
    store_events_writer_end(events->outbox); /* before the store closes */
    events_shards_free(events->shards);
    sodium_memzero(events->key, sizeof events->key);
    pthread_mutex_destroy(&events->stats_mutex);
    pthread_mutex_destroy(&events->wake_mutex);
    free(events->db_path);
    free(events->amqp_url);
    free(events->amqp_exchange);
    free(events);
}

void events_wake(events_t *events, bool reload) {
    if (events == NULL) return;
    pthread_mutex_lock(&events->wake_mutex);
    if (events->webhooks != NULL) events_webhooks_notify(events->webhooks, reload);
    pthread_mutex_unlock(&events->wake_mutex);
}

void events_notify(events_t *events) {
    events_wake(events, true);
}

/* Delivery yields the CPU to the ledger: when both want it, payments go first and the
 * outbox lag (which operators alert on) grows instead of the payment latency. Linux
 * gives each thread its own nice value. */
void events_thread_background(void) {
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0) {
        obs_logf(OBS_LEVEL_DEBUG, "events: cannot lower the delivery thread's priority");
    }
}

/* ---- the delivery clock ---- */

uint64_t events_now_ns(events_t *events) {
    int64_t shift_s = atomic_load(&events->clock_shift_s);
    return pc_wall_ns() + (uint64_t)shift_s * 1000000000ull;
}

void events_clock_refresh(events_t *events) {
    if (events->clock_file[0] == '\0') return;
    int fd = open(events->clock_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char text[32] = {0};
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) return;
    char *end = NULL;
    long long shift_s = strtoll(text, &end, 10);
    if (end != text && shift_s >= 0 && shift_s < 100ll * 365 * 24 * 3600) atomic_store(&events->clock_shift_s, shift_s);
}

uint64_t events_backoff_ms(const events_config_t *config, uint32_t attempts) {
    uint64_t delay_ms = config->retry_base_ms;
    for (uint32_t i = 1; i < attempts && delay_ms < config->retry_cap_ms; i++) delay_ms *= 2;
    if (delay_ms > config->retry_cap_ms) delay_ms = config->retry_cap_ms;
    /* jitter: between half and all of the delay, so that endpoints that failed
     * together do not all come back at the same instant */
    uint64_t half_ms = delay_ms / 2;
    return half_ms + (half_ms > 0 ? randombytes_uniform((uint32_t)(half_ms > UINT32_MAX - 1 ? UINT32_MAX - 1 : half_ms) + 1) : 0);
}

/* ---- stats ---- */

events_dest_stats_t *events_stats_slot(events_t *events, const char *id, const char *kind) {
    events_dest_stats_t *free_slot = NULL;
    for (uint32_t i = 0; i <= EVENTS_ENDPOINTS_MAX; i++) {
        events_dest_stats_t *slot = &events->stats[i];
        if (slot->present && strcmp(slot->id, id) == 0) return slot;
        if (!slot->present && free_slot == NULL) free_slot = slot;
    }
    if (free_slot == NULL) return NULL;
    memset(free_slot, 0, sizeof(*free_slot));
    snprintf(free_slot->id, sizeof free_slot->id, "%s", id);
    snprintf(free_slot->kind, sizeof free_slot->kind, "%s", kind);
    free_slot->present = true;
    return free_slot;
}

void events_stats_drop(events_t *events, const char *id) {
    for (uint32_t i = 0; i <= EVENTS_ENDPOINTS_MAX; i++) {
        if (events->stats[i].present && strcmp(events->stats[i].id, id) == 0) events->stats[i].present = false;
    }
}

void events_status(events_t *events, events_status_t *out) {
    memset(out, 0, sizeof(*out));
    if (events == NULL) return;
    out->enabled = events->config.enabled;
    out->amqp_configured = events->amqp_url != NULL && events->config.enabled;
    out->amqp_connected = atomic_load(&events->amqp_connected);
    pthread_mutex_lock(&events->stats_mutex);
    for (uint32_t i = 0; i <= EVENTS_ENDPOINTS_MAX; i++) {
        const events_dest_stats_t *slot = &events->stats[i];
        if (slot->present && slot->lag_ms > out->outbox_lag_ms_max) out->outbox_lag_ms_max = slot->lag_ms;
    }
    pthread_mutex_unlock(&events->stats_mutex);
}

/* ---- metrics ---- */

static void metrics_written(events_t *events, events_buf_t *buf) {
    events_buf_printf(buf, "# HELP paycore_events_written_total Events written to the outbox (committed).\n"
                           "# TYPE paycore_events_written_total counter\n");
    for (uint32_t i = 0; i < EVENTS_TYPE_COUNT; i++) {
        events_buf_printf(buf, "paycore_events_written_total{type=\"%s\"} %llu\n", events_type_name((events_type)i),
                          (unsigned long long)atomic_load(&events->written[i]));
    }
}

typedef struct {
    const char *name;
    const char *type;
    const char *help;
} metric_family;

static uint64_t stats_value(const events_dest_stats_t *slot, uint32_t family) {
    switch (family) {
    case 0: return slot->delivered;
    case 1: return slot->retried;
    case 2: return slot->dead_lettered;
    case 4: return slot->disabled;
    default: return slot->lag_ms;
    }
}

static void metrics_destinations(events_t *events, events_buf_t *buf) {
    static const metric_family families[] = {
        {"paycore_events_delivered_total", "counter", "Events delivered (2xx, or confirmed by the broker)."},
        {"paycore_events_retried_total", "counter", "Failed delivery attempts scheduled for a retry."},
        {"paycore_events_dead_lettered_total", "counter", "Deliveries given up after retrying too long."},
        {"paycore_events_outbox_lag_seconds", "gauge", "Age of the oldest event not yet delivered (alert on it)."},
        {"paycore_events_destination_disabled", "gauge", "1 while a webhook endpoint is disabled (failed too long)."},
    };
    pthread_mutex_lock(&events->stats_mutex);
    for (uint32_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        events_buf_printf(buf, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help, families[f].name,
                          families[f].type);
        for (uint32_t i = 0; i <= EVENTS_ENDPOINTS_MAX; i++) {
            const events_dest_stats_t *slot = &events->stats[i];
            if (!slot->present) continue;
            uint64_t value = stats_value(slot, f);
            if (f == 3) {
                events_buf_printf(buf, "%s{destination=\"%s\",kind=\"%s\"} %.3f\n", families[f].name, slot->id,
                                  slot->kind, (double)value / 1000.0);
            } else {
                events_buf_printf(buf, "%s{destination=\"%s\",kind=\"%s\"} %llu\n", families[f].name, slot->id,
                                  slot->kind, (unsigned long long)value);
            }
        }
    }
    pthread_mutex_unlock(&events->stats_mutex);
}

char *events_metrics_append(events_t *events, char *text, size_t *bytes) {
    if (events == NULL || text == NULL || !events->config.enabled) return text;
    events_buf_t buf = {.text = text, .bytes = *bytes, .capacity = *bytes + 1};
    metrics_written(events, &buf);
    events_buf_printf(&buf, "# HELP paycore_events_purged_total Events deleted by retention (delivered everywhere).\n"
                            "# TYPE paycore_events_purged_total counter\npaycore_events_purged_total %llu\n"
                            "# HELP paycore_events_purge_runs_total Retention rounds committed.\n"
                            "# TYPE paycore_events_purge_runs_total counter\npaycore_events_purge_runs_total %llu\n"
                            "# HELP paycore_events_webhook_wakeups_total Wake-ups of the webhook thread for new events"
                            " (one while one is pending).\n"
                            "# TYPE paycore_events_webhook_wakeups_total counter\npaycore_events_webhook_wakeups_total %llu\n",
                      (unsigned long long)atomic_load(&events->purged),
                      (unsigned long long)atomic_load(&events->purge_runs),
                      (unsigned long long)atomic_load(&events->webhook_wakeups));
    metrics_destinations(events, &buf);
    if (events->amqp_url != NULL) {
        events_buf_printf(&buf, "# HELP paycore_events_amqp_connected 1 while the broker connection is up.\n"
                                "# TYPE paycore_events_amqp_connected gauge\npaycore_events_amqp_connected %d\n",
                          atomic_load(&events->amqp_connected) ? 1 : 0);
    }
    if (buf.failed) {
        if (buf.text != NULL) buf.text[*bytes] = '\0';
        return buf.text;
    }
    *bytes = buf.bytes;
    return buf.text;
}
