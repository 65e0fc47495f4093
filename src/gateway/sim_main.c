/* gateway/sim_main.c: a simulator's life: config and data, the record, the listener,
 * the worker thread (bank settlements and callbacks, the daily settlement file), and
 * the stop that releases every waiting request first. */
#include <errno.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"

static const char *const kind_names[SIM_KIND_COUNT] = {"card", "wallet", "bank"};

const char *sim_kind_name(sim_kind kind) {
    PC_ASSERT((unsigned)kind < SIM_KIND_COUNT);
    return kind_names[kind];
}

bool sim_kind_parse(const char *name, sim_kind *out) {
    for (int i = 0; i < SIM_KIND_COUNT; i++) {
        if (strcmp(kind_names[i], name) == 0) {
            *out = (sim_kind)i;
            return true;
        }
    }
    return false;
}

uint64_t sim_wall_ms(void) {
    return pc_wall_ns() / 1000000u;
}

uint64_t sim_mono_ms(void) {
    return pc_mono_ns() / 1000000u;
}

void sim_faults_current(sim_t *sim, sim_faults_t *out) {
    pthread_mutex_lock(&sim->faults_lock);
    *out = sim->faults;
    pthread_mutex_unlock(&sim->faults_lock);
}

void sim_cond_init_monotonic(pthread_cond_t *cond) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

struct timespec sim_deadline_after(uint64_t ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(ms / 1000);
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return deadline;
}

/* The worker's wait: until 'ms' passed, the simulator stops, or sim_wake runs. */
static bool wait_ms(sim_t *sim, uint64_t ms, uint64_t *kicks_seen) {
    struct timespec deadline = sim_deadline_after(ms);
    bool timed_out = false;
    pthread_mutex_lock(&sim->sleep_lock);
    while (!atomic_load(&sim->stopping) && !timed_out && sim->kicks == *kicks_seen) {
        timed_out = pthread_cond_timedwait(&sim->sleep_cond, &sim->sleep_lock, &deadline) == ETIMEDOUT;
    }
    *kicks_seen = sim->kicks;
    pthread_mutex_unlock(&sim->sleep_lock);
    return !atomic_load(&sim->stopping);
}

void sim_wake(sim_t *sim) {
    pthread_mutex_lock(&sim->sleep_lock);
    sim->kicks++;
    pthread_cond_broadcast(&sim->sleep_cond);
    pthread_mutex_unlock(&sim->sleep_lock);
}

/* Writes the settlement file of a UTC day that just ended. */
static void daily_report(sim_t *sim) {
    char today[11];
    sim_utc_date(sim_wall_ms(), today);
    if (strcmp(today, sim->report_date) == 0) return;
    bool ok = sim_report_write_day(sim, sim->report_date);
    if (!ok) obs_logf(OBS_LEVEL_ERROR, "settlement report of %s not written", sim->report_date);
    memcpy(sim->report_date, today, sizeof today);
}

static void *worker_main(void *arg) {
    sim_t *sim = arg;
    uint64_t kicks_seen = 0;
    for (;;) {
        sim_checkpoint_run(sim);
        uint64_t now_ms = sim_mono_ms();
        uint64_t next_ms = now_ms + 1000;
        if (sim->kind == SIM_KIND_BANK) {
            uint64_t due_ms = sim_bank_work(sim);
            if (due_ms < next_ms) next_ms = due_ms;
        }
        daily_report(sim);
        now_ms = sim_mono_ms();
        if (next_ms > now_ms && !wait_ms(sim, next_ms - now_ms, &kicks_seen)) break;
        if (atomic_load(&sim->stopping)) break;
    }
    return NULL;
}

/* Describes the refusal a scratch request holds: "field: message". */
static void refusal_text(const sim_req_t *scratch, char *out, size_t out_bytes) {
    json_t *reply = json_loadb(scratch->reply ? scratch->reply : "", scratch->reply_bytes, 0, NULL);
    const json_t *error = json_object_get(reply, "error");
    const char *field = json_string_value(json_object_get(error, "field"));
    const char *message = json_string_value(json_object_get(error, "message"));
    snprintf(out, out_bytes, "%s: %s", field ? field : "record", message ? message : "write failed");
    json_decref(reply);
}

/* Loads the --data file in one transaction: each entry as its admin request would. */
static bool load_entries(sim_t *sim, const json_t *data, char *error, size_t error_bytes) {
    const char *list_name = sim->kind == SIM_KIND_CARD ? "cards" : "accounts";
    bool (*entry_put)(sim_req_t *, const json_t *) = sim->kind == SIM_KIND_CARD     ? sim_card_data_entry
                                                     : sim->kind == SIM_KIND_WALLET ? sim_wallet_data_entry
                                                                                    : sim_bank_data_entry;
    const json_t *list = json_object_get(data, list_name);
    if (!json_is_array(list) || json_array_size(list) > SIM_DATA_ENTRIES_MAX || json_object_size(data) != 1) {
        snprintf(error, error_bytes, "must be {\"%s\":[...]} with at most %d entries", list_name,
                 SIM_DATA_ENTRIES_MAX);
        return false;
    }
    sim_req_t scratch = {.sim = sim};
    bool ok = sim_db_begin(&sim->db);
    size_t index;
    const json_t *entry;
    json_array_foreach(list, index, entry) {
        if (!ok) break;
        ok = entry_put(&scratch, entry);
        if (!ok) {
            char why[160];
            refusal_text(&scratch, why, sizeof why);
            snprintf(error, error_bytes, "%s[%zu].%s", list_name, index, why);
        }
    }
    free(scratch.reply);
    if (ok) ok = sim_db_commit(&sim->db);
    if (!ok) sim_db_rollback(&sim->db);
    if (!ok && error[0] == '\0') snprintf(error, error_bytes, "cannot write the record");
    return ok;
}

static bool load_data(sim_t *sim, const char *path, char *error, size_t error_bytes) {
    json_error_t parse_error;
    json_t *data = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
    if (data == NULL) {
        snprintf(error, error_bytes, "data %s line %d: %s", path, parse_error.line, parse_error.text);
        return false;
    }
    char inner[240] = "";
    bool ok = load_entries(sim, data, inner, sizeof inner);
    if (!ok) snprintf(error, error_bytes, "data %s: %s", path, inner);
    json_decref(data);
    return ok;
}

/* Options that override the config file. */
static bool apply_options(sim_t *sim, const sim_options_t *options, char *error, size_t error_bytes) {
    if (options->seed_set) sim->config.seed = options->seed;
    if (options->api_key != NULL) {
        free(sim->config.api_key);
        sim->config.api_key = pc_strdup(options->api_key);
    }
    if (options->callback_secret != NULL) {
        if (sim->config.callback_secret != NULL) sodium_memzero(sim->config.callback_secret, strlen(sim->config.callback_secret));
        free(sim->config.callback_secret);
        sim->config.callback_secret = pc_strdup(options->callback_secret);
    }
    if (sim->kind == SIM_KIND_BANK && (sim->config.callback_secret == NULL || sim->config.callback_secret[0] == '\0')) {
        snprintf(error, error_bytes, "the bank simulator needs --callback-secret (or callback_secret in its config)");
        return false;
    }
    if (sim->config.callback_retry_max_ms < sim->config.callback_retry_base_ms) {
        snprintf(error, error_bytes, "callback_retry_max_ms is below callback_retry_base_ms");
        return false;
    }
    return true;
}

/* The report dir: given, or the db's directory; created 0700 when missing. */
static bool report_dir_init(sim_t *sim, const sim_options_t *options, char *error, size_t error_bytes) {
    if (options->report_dir != NULL) {
        snprintf(sim->report_dir, sizeof sim->report_dir, "%s", options->report_dir);
    } else {
        char copy[SIM_PATH_BYTES_MAX + 1];
        snprintf(copy, sizeof copy, "%s", options->db_path);
        snprintf(sim->report_dir, sizeof sim->report_dir, "%s", dirname(copy));
    }
    if (mkdir(sim->report_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(error, error_bytes, "cannot create %s: %s", sim->report_dir, strerror(errno));
        return false;
    }
    return true;
}

static bool sim_init(sim_t *sim, const sim_options_t *options, char *error, size_t error_bytes) {
    sim->kind = options->kind;
    sim->quiesced_fd = -1;
    sim->wal_fd = -1;
    pthread_mutex_init(&sim->lock, NULL);
    pthread_mutex_init(&sim->faults_lock, NULL);
    pthread_mutex_init(&sim->sleep_lock, NULL);
    pthread_mutex_init(&sim->group_lock, NULL);
    pthread_mutex_init(&sim->spare_lock, NULL);
    pthread_cond_init(&sim->group_cond, NULL);
    sim_cond_init_monotonic(&sim->sleep_cond);
    sim_config_default(&sim->config);
    if (strlen(options->db_path) > SIM_PATH_BYTES_MAX) {
        snprintf(error, error_bytes, "--db path too long");
        return false;
    }
    snprintf(sim->db_path, sizeof sim->db_path, "%s", options->db_path);
    if (options->config_path != NULL && !sim_config_load(options->config_path, &sim->config, error, error_bytes)) {
        return false;
    }
    if (!apply_options(sim, options, error, error_bytes) || !report_dir_init(sim, options, error, error_bytes)) {
        return false;
    }
    sim->faults = sim->config.faults;
    sim->faults.epoch_mono_ms = sim_mono_ms();
    sim_utc_date(sim_wall_ms(), sim->report_date);
    if (!sim_db_open(&sim->db, sim->db_path, sim->kind, error, error_bytes)) return false;
    sim_checkpoints_start(sim);
    return options->data_path == NULL || load_data(sim, options->data_path, error, error_bytes);
}

static void sim_free(sim_t *sim) {
    sim_checkpoints_stop(sim);
    sim_db_close(&sim->db);
    sim_config_free(&sim->config);
    pthread_mutex_destroy(&sim->lock);
    pthread_mutex_destroy(&sim->faults_lock);
    pthread_mutex_destroy(&sim->sleep_lock);
    pthread_cond_destroy(&sim->sleep_cond);
    pthread_mutex_destroy(&sim->group_lock);
    pthread_mutex_destroy(&sim->spare_lock);
    pthread_cond_destroy(&sim->group_cond);
    free(sim);
}

pc_status sim_start(const sim_options_t *options, sim_t **out, char *error, size_t error_bytes) {
    PC_ASSERT(options->db_path != NULL);
    PC_ASSERT(options->listen != NULL);
    *out = NULL;
    if (sodium_init() < 0) {
        snprintf(error, error_bytes, "libsodium failed to start");
        return PC_INTERNAL;
    }
    sim_t *sim = calloc(1, sizeof(*sim));
    if (sim == NULL) {
        snprintf(error, error_bytes, "out of memory");
        return PC_NO_MEMORY;
    }
    if (!sim_init(sim, options, error, error_bytes)) {
        sim_free(sim);
        return PC_INVALID_ARGUMENT;
    }
    if (!sim_http_start(sim, options->listen, options->http_mhd, error, error_bytes)) {
        sim_free(sim);
        return PC_IO;
    }
    if (pthread_create(&sim->worker, NULL, worker_main, sim) != 0) {
        snprintf(error, error_bytes, "cannot start the worker thread");
        sim_http_stop(sim);
        sim_free(sim);
        return PC_INTERNAL;
    }
    sim->worker_started = true;
    *out = sim;
    return PC_OK;
}

uint16_t sim_port(const sim_t *sim) {
    return sim->port;
}

void sim_stop(sim_t *sim) {
    if (sim == NULL) return;
    atomic_store(&sim->stopping, true);
    sim_wake(sim);                  /* the worker's wait ends */
    sim_http_stop(sim);             /* held timeouts and latency waits end: their requests close */
    if (sim->worker_started) pthread_join(sim->worker, NULL);
    sim_group_flush(sim);           /* normally committed by the last request already */
    sim_free(sim);
}
