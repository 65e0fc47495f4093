/* gateway/sim_config.c: the simulator's JSON config and fault config (jansson). A bad
 * file is refused whole, naming the line (syntax) or the key (meaning); no default
 * silently replaces a value that was given. */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gateway/sim_internal.h"

static const char *const garbage_names[SIM_GARBAGE_COUNT] = {
    "invalid_json", "unknown_code", "wrong_amount", "http_500", "close"};

static void faults_default(sim_faults_t *faults) {
    memset(faults, 0, sizeof(*faults));
    faults->latency_max_ms = 60000;
    faults->timeout_applied_ratio = 0.5;
    faults->timeout_hold_ms = 30000;
    faults->garbage_applied_ratio = 1.0;
    for (uint32_t i = 0; i < SIM_GARBAGE_COUNT; i++) faults->garbage_modes[i] = (uint8_t)i;
    faults->garbage_mode_count = SIM_GARBAGE_COUNT;
    faults->epoch_mono_ms = sim_mono_ms();
}

void sim_config_default(sim_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->seed = 1;
    config->card_balance_minor = 100000;
    config->card_amount_limit_minor = 1000000;
    snprintf(config->challenge_code, sizeof config->challenge_code, "123456");
    config->settle_delay_ms = 200;
    config->callback_timeout_ms = 5000;
    config->callback_retry_base_ms = 100;
    config->callback_retry_max_ms = 5000;
    faults_default(&config->faults);
}

void sim_config_free(sim_config_t *config) {
    free(config->api_key);
    if (config->callback_secret != NULL) {
        sodium_memzero(config->callback_secret, strlen(config->callback_secret));
        free(config->callback_secret);
    }
    config->api_key = NULL;
    config->callback_secret = NULL;
}

/* An integer 'min'..'max' under 'name' when present. */
static bool get_u64(const json_t *object, const char *name, uint64_t min, uint64_t max, uint64_t *out,
                    char *error, size_t error_bytes) {
    const json_t *value = json_object_get(object, name);
    if (value == NULL) return true;
    if (!json_is_integer(value) || json_integer_value(value) < 0 ||
        (uint64_t)json_integer_value(value) < min || (uint64_t)json_integer_value(value) > max) {
        snprintf(error, error_bytes, "%s: an integer %llu..%llu", name, (unsigned long long)min,
                 (unsigned long long)max);
        return false;
    }
    *out = (uint64_t)json_integer_value(value);
    return true;
}

static bool get_u32(const json_t *object, const char *name, uint32_t min, uint32_t max, uint32_t *out,
                    char *error, size_t error_bytes) {
    uint64_t value = *out;
    if (!get_u64(object, name, min, max, &value, error, error_bytes)) return false;
    *out = (uint32_t)value;
    return true;
}

/* A probability 0..1 (integer or real) under 'name' when present. */
static bool get_rate(const json_t *object, const char *name, double *out, char *error, size_t error_bytes) {
    const json_t *value = json_object_get(object, name);
    if (value == NULL) return true;
    double rate = json_number_value(value);
    if (!json_is_number(value) || !(rate >= 0.0 && rate <= 1.0)) {
        snprintf(error, error_bytes, "%s: a number 0..1", name);
        return false;
    }
    *out = rate;
    return true;
}

/* Every key of 'object' is in 'allowed' (NULL-terminated). */
static bool only_keys(const json_t *object, const char *const *allowed, char *error, size_t error_bytes) {
    const char *unknown = sim_unknown_key(object, allowed);
    if (unknown != NULL) snprintf(error, error_bytes, "%s: unknown field", unknown);
    return unknown == NULL;
}

static bool parse_garbage_modes(const json_t *modes, sim_faults_t *out, char *error, size_t error_bytes) {
    if (modes == NULL) return true;
    if (!json_is_array(modes) || json_array_size(modes) == 0 || json_array_size(modes) > SIM_GARBAGE_COUNT) {
        snprintf(error, error_bytes, "garbage_modes: an array of 1..%d mode names", SIM_GARBAGE_COUNT);
        return false;
    }
    out->garbage_mode_count = 0;
    size_t index;
    const json_t *mode;
    json_array_foreach(modes, index, mode) {
        uint32_t found = SIM_GARBAGE_COUNT;
        for (uint32_t i = 0; i < SIM_GARBAGE_COUNT && json_is_string(mode); i++) {
            if (strcmp(garbage_names[i], json_string_value(mode)) == 0) found = i;
        }
        if (found == SIM_GARBAGE_COUNT) {
            snprintf(error, error_bytes, "garbage_modes[%zu]: one of invalid_json, unknown_code, "
                     "wrong_amount, http_500, close", index);
            return false;
        }
        out->garbage_modes[out->garbage_mode_count++] = (uint8_t)found;
    }
    return true;
}

static bool parse_outage(const json_t *item, size_t index, sim_outage_t *out, char *error, size_t error_bytes) {
    static const char *const keys[] = {"start_ms", "duration_ms", "period_ms", NULL};
    char inner[160] = "";
    memset(out, 0, sizeof(*out));
    uint64_t day_ms_max = 366ull * 24 * 3600 * 1000;
    bool ok = json_is_object(item) && json_object_get(item, "duration_ms") != NULL &&
              only_keys(item, keys, inner, sizeof inner) &&
              get_u64(item, "start_ms", 0, day_ms_max, &out->start_ms, inner, sizeof inner) &&
              get_u64(item, "duration_ms", 1, day_ms_max, &out->duration_ms, inner, sizeof inner) &&
              get_u64(item, "period_ms", 0, day_ms_max, &out->period_ms, inner, sizeof inner);
    if (ok && out->period_ms != 0 && out->period_ms <= out->duration_ms) {
        snprintf(inner, sizeof inner, "period_ms: 0 or more than duration_ms");
        ok = false;
    }
    if (!ok) {
        snprintf(error, error_bytes, "outages[%zu]: %s", index,
                 inner[0] ? inner : "an object {start_ms, duration_ms, period_ms}");
    }
    return ok;
}

static bool parse_outages(const json_t *object, sim_faults_t *out, char *error, size_t error_bytes) {
    const json_t *outages = json_object_get(object, "outages");
    if (outages != NULL) {
        if (!json_is_array(outages) || json_array_size(outages) > SIM_OUTAGES_MAX) {
            snprintf(error, error_bytes, "outages: an array of at most %d windows", SIM_OUTAGES_MAX);
            return false;
        }
        size_t index;
        const json_t *item;
        json_array_foreach(outages, index, item) {
            if (!parse_outage(item, index, &out->outages[index], error, error_bytes)) return false;
        }
        out->outage_count = (uint32_t)json_array_size(outages);
    }
    const json_t *mode = json_object_get(object, "outage_mode");
    if (mode == NULL) return true;
    const char *text = json_string_value(mode);
    if (text == NULL || (strcmp(text, "503") != 0 && strcmp(text, "close") != 0)) {
        snprintf(error, error_bytes, "outage_mode: \"503\" or \"close\"");
        return false;
    }
    out->outage_close = strcmp(text, "close") == 0;
    return true;
}

bool sim_faults_parse(const json_t *object, sim_faults_t *out, char *error, size_t error_bytes) {
    static const char *const keys[] = {
        "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "error_rate", "timeout_rate",
        "timeout_applied_ratio", "timeout_hold_ms", "garbage_rate", "garbage_modes",
        "garbage_applied_ratio", "outages", "outage_mode", NULL};
    faults_default(out);
    if (!json_is_object(object)) {
        snprintf(error, error_bytes, "faults: an object");
        return false;
    }
    if (!only_keys(object, keys, error, error_bytes) ||
        !get_u32(object, "latency_p50_ms", 0, SIM_LATENCY_MS_MAX, &out->latency_p50_ms, error, error_bytes) ||
        !get_u32(object, "latency_p99_ms", 0, SIM_LATENCY_MS_MAX, &out->latency_p99_ms, error, error_bytes) ||
        !get_u32(object, "latency_max_ms", 0, SIM_LATENCY_MS_MAX, &out->latency_max_ms, error, error_bytes) ||
        !get_rate(object, "error_rate", &out->error_rate, error, error_bytes) ||
        !get_rate(object, "timeout_rate", &out->timeout_rate, error, error_bytes) ||
        !get_rate(object, "timeout_applied_ratio", &out->timeout_applied_ratio, error, error_bytes) ||
        !get_u32(object, "timeout_hold_ms", 1, SIM_HOLD_MS_MAX, &out->timeout_hold_ms, error, error_bytes) ||
        !get_rate(object, "garbage_rate", &out->garbage_rate, error, error_bytes) ||
        !get_rate(object, "garbage_applied_ratio", &out->garbage_applied_ratio, error, error_bytes) ||
        !parse_garbage_modes(json_object_get(object, "garbage_modes"), out, error, error_bytes) ||
        !parse_outages(object, out, error, error_bytes)) {
        return false;
    }
    if (out->latency_p99_ms < out->latency_p50_ms || (out->latency_p99_ms > 0 && out->latency_p50_ms == 0)) {
        snprintf(error, error_bytes, "latency_p99_ms: at least latency_p50_ms (and p50 > 0 when p99 > 0)");
        return false;
    }
    return true;
}

json_t *sim_faults_json(const sim_faults_t *faults) {
    json_t *modes = json_array();
    for (uint32_t i = 0; i < faults->garbage_mode_count; i++) {
        json_array_append_new(modes, json_string(garbage_names[faults->garbage_modes[i]]));
    }
    json_t *outages = json_array();
    for (uint32_t i = 0; i < faults->outage_count; i++) {
        json_array_append_new(outages, json_pack("{s:I,s:I,s:I}", "start_ms", (json_int_t)faults->outages[i].start_ms,
                                                 "duration_ms", (json_int_t)faults->outages[i].duration_ms,
                                                 "period_ms", (json_int_t)faults->outages[i].period_ms));
    }
    return json_pack("{s:I,s:I,s:I,s:f,s:f,s:f,s:I,s:f,s:o,s:f,s:o,s:s}",
                     "latency_p50_ms", (json_int_t)faults->latency_p50_ms,
                     "latency_p99_ms", (json_int_t)faults->latency_p99_ms,
                     "latency_max_ms", (json_int_t)faults->latency_max_ms,
                     "error_rate", faults->error_rate, "timeout_rate", faults->timeout_rate,
                     "timeout_applied_ratio", faults->timeout_applied_ratio,
                     "timeout_hold_ms", (json_int_t)faults->timeout_hold_ms,
                     "garbage_rate", faults->garbage_rate, "garbage_modes", modes,
                     "garbage_applied_ratio", faults->garbage_applied_ratio, "outages", outages,
                     "outage_mode", faults->outage_close ? "close" : "503");
}

static bool get_secret(const json_t *object, const char *name, char **out, char *error, size_t error_bytes) {
    const json_t *value = json_object_get(object, name);
    if (value == NULL) return true;
    const char *text = json_string_value(value);
    if (text == NULL || text[0] == '\0' || strlen(text) > 256) {
        snprintf(error, error_bytes, "%s: a string of 1..256 bytes", name);
        return false;
    }
    *out = pc_strdup(text);
    return true;
}

static bool parse_channel_keys(const json_t *root, sim_config_t *config, char *error, size_t error_bytes) {
    uint64_t balance = (uint64_t)config->card_balance_minor;
    uint64_t limit = (uint64_t)config->card_amount_limit_minor;
    const json_t *code = json_object_get(root, "challenge_code");
    if (code != NULL) {
        const char *text = json_string_value(code);
        if (text == NULL || text[0] == '\0' || strlen(text) > SIM_CHALLENGE_CODE_BYTES_MAX) {
            snprintf(error, error_bytes, "challenge_code: a string of 1..%d bytes", SIM_CHALLENGE_CODE_BYTES_MAX);
            return false;
        }
        snprintf(config->challenge_code, sizeof config->challenge_code, "%s", text);
    }
    bool ok = get_u64(root, "seed", 0, UINT64_MAX, &config->seed, error, error_bytes) &&
              get_u64(root, "card_balance_minor", 0, SIM_AMOUNT_MINOR_MAX, &balance, error, error_bytes) &&
              get_u64(root, "card_amount_limit_minor", 1, SIM_AMOUNT_MINOR_MAX, &limit, error, error_bytes) &&
              get_u32(root, "settle_delay_ms", 0, 24u * 3600u * 1000u, &config->settle_delay_ms, error, error_bytes) &&
              get_u32(root, "callback_timeout_ms", 1, 600000, &config->callback_timeout_ms, error, error_bytes) &&
              get_u32(root, "callback_retry_base_ms", 1, SIM_CALLBACK_RETRY_MS_MAX, &config->callback_retry_base_ms,
                      error, error_bytes) &&
              get_u32(root, "callback_retry_max_ms", 1, SIM_CALLBACK_RETRY_MS_MAX, &config->callback_retry_max_ms,
                      error, error_bytes) &&
              get_secret(root, "api_key", &config->api_key, error, error_bytes) &&
              get_secret(root, "callback_secret", &config->callback_secret, error, error_bytes);
    config->card_balance_minor = (int64_t)balance;
    config->card_amount_limit_minor = (int64_t)limit;
    return ok;
}

bool sim_config_load(const char *path, sim_config_t *config, char *error, size_t error_bytes) {
    static const char *const keys[] = {
        "api_key", "seed", "card_balance_minor", "card_amount_limit_minor", "challenge_code",
        "settle_delay_ms", "callback_secret", "callback_timeout_ms", "callback_retry_base_ms",
        "callback_retry_max_ms", "faults", NULL};
    json_error_t parse_error;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
    if (root == NULL) {
        snprintf(error, error_bytes, "config %s line %d: %s", path, parse_error.line, parse_error.text);
        return false;
    }
    char inner[200] = "";
    bool ok = json_is_object(root) && only_keys(root, keys, inner, sizeof inner) &&
              parse_channel_keys(root, config, inner, sizeof inner);
    const json_t *faults = json_object_get(root, "faults");
    if (ok && faults != NULL) ok = sim_faults_parse(faults, &config->faults, inner, sizeof inner);
    if (!ok) snprintf(error, error_bytes, "config %s: %s", path, inner[0] ? inner : "not a JSON object");
    json_decref(root);
    return ok;
}
