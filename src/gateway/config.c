/* gateway/config.c: the channels file (JSON, parsed by jansson; docs/channels.md,
 * "Configuration"). Everything is validated before anything is used: a refusal names
 * the line (jansson's for syntax, config_lines.c's for meaning) and the running
 * configuration stays. Unknown fields are refused too: a typo must not silently fall
 * back to a default. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/gw_internal.h"
#include "paycore/money.h"

#define PATH_BYTES 160

typedef struct {
    const gw_lines_t *lines;
    gw_config_error_t *error;
    bool failed;
} cfg_ctx;

static _Atomic uint64_t config_versions;

/* ---------------------------------------------------------------- refusing */

/* The line of 'path', or of its nearest parent that has one. */
static uint32_t line_of(const gw_lines_t *lines, const char *path) {
    char buf[PATH_BYTES];
    gw_copy_str(buf, sizeof buf, path);
    for (;;) {
        uint32_t line = gw_lines_find(lines, buf);
        if (line > 0 || buf[0] == '\0') return line;
        char *cut = strrchr(buf, '.');
        char *bracket = strrchr(buf, '[');
        if (bracket != NULL && (cut == NULL || bracket > cut)) cut = bracket;
        if (cut == NULL) cut = buf;
        *cut = '\0';
    }
}

static bool refuse(cfg_ctx *c, const char *path, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static bool refuse(cfg_ctx *c, const char *path, const char *format, ...) {
    if (c->failed) return false;
    c->failed = true;
    char reason[GW_MESSAGE_SIZE];
    va_list ap;
    va_start(ap, format);
    vsnprintf(reason, sizeof reason, format, ap);
    va_end(ap);
    c->error->line = line_of(c->lines, path);
    snprintf(c->error->message, sizeof c->error->message, "%s%s%s", path, path[0] ? ": " : "",
             reason);
    return false;
}

static void join(char *out, const char *parent, const char *key) {
    snprintf(out, PATH_BYTES, "%s%s%s", parent, parent[0] ? "." : "", key);
}

/* ---------------------------------------------------------------- typed members */

static bool only_keys(cfg_ctx *c, const json_t *object, const char *path,
                      const char *const *allowed) {
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        bool known = false;
        for (uint32_t i = 0; allowed[i] != NULL && !known; i++) known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            char at[PATH_BYTES];
            join(at, path, key);
            return refuse(c, at, "unknown field");
        }
    }
    return true;
}

static bool get_uint(cfg_ctx *c, const json_t *object, const char *path, const char *key,
                     uint64_t min, uint64_t max, uint32_t *out) {
    const json_t *v = json_object_get(object, key);
    if (v == NULL) return true; /* keeps the default already in *out */
    char at[PATH_BYTES];
    join(at, path, key);
    if (!json_is_integer(v)) return refuse(c, at, "must be an integer");
    json_int_t n = json_integer_value(v);
    if (n < (json_int_t)min || (uint64_t)n > max) {
        return refuse(c, at, "must be between %llu and %llu", (unsigned long long)min,
                      (unsigned long long)max);
    }
    *out = (uint32_t)n;
    return true;
}

static bool get_bool(cfg_ctx *c, const json_t *object, const char *path, const char *key, bool *out) {
    const json_t *v = json_object_get(object, key);
    if (v == NULL) return true; /* keeps the default already in *out */
    char at[PATH_BYTES];
    join(at, path, key);
    if (!json_is_boolean(v)) return refuse(c, at, "must be true or false");
    *out = json_is_true(v);
    return true;
}

static bool get_amount(cfg_ctx *c, const json_t *object, const char *path, const char *key,
                       int64_t *out) {
    const json_t *v = json_object_get(object, key);
    if (v == NULL) return true;
    char at[PATH_BYTES];
    join(at, path, key);
    if (!json_is_integer(v)) return refuse(c, at, "must be an integer amount in minor units");
    if (json_integer_value(v) < 1) return refuse(c, at, "must be at least 1");
    *out = json_integer_value(v);
    return true;
}

/* A string member; 'required' refuses absence. Control characters are refused (they
 * would end an HTTP header early). */
static bool get_string(cfg_ctx *c, const json_t *object, const char *path, const char *key,
                       bool required, char *out, size_t out_size) {
    const json_t *v = json_object_get(object, key);
    char at[PATH_BYTES];
    join(at, path, key);
    if (v == NULL) return required ? refuse(c, at, "is required") : true;
    if (!json_is_string(v)) return refuse(c, at, "must be a string");
    const char *s = json_string_value(v);
    size_t bytes = json_string_length(v);
    if (bytes == 0 || bytes >= out_size) {
        return refuse(c, at, "must be 1 to %zu characters", out_size - 1);
    }
    for (size_t i = 0; i < bytes; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return refuse(c, at, "has a control character");
    }
    memcpy(out, s, bytes + 1);
    return true;
}

static bool get_object(cfg_ctx *c, const json_t *object, const char *path, const char *key,
                       const json_t **out) {
    const json_t *v = json_object_get(object, key);
    *out = v;
    if (v == NULL || json_is_object(v)) return true;
    char at[PATH_BYTES];
    join(at, path, key);
    return refuse(c, at, "must be an object");
}

static bool name_char(char ch, const char *extra) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr(extra, ch) != NULL;
}

static bool chars_valid(const char *s, const char *extra) {
    for (; *s; s++) {
        if (!name_char(*s, extra)) return false;
    }
    return true;
}

/* ---------------------------------------------------------------- lists */

typedef bool (*item_fn)(cfg_ctx *c, const char *at, const char *value, void *out, uint32_t index);

/* An array of strings, each checked and stored by 'item'. */
static bool get_list(cfg_ctx *c, const json_t *object, const char *path, const char *key,
                     uint32_t max, item_fn item, void *out, uint32_t *count) {
    const json_t *v = json_object_get(object, key);
    if (v == NULL) return true;
    char at[PATH_BYTES];
    join(at, path, key);
    if (!json_is_array(v)) return refuse(c, at, "must be an array of strings");
    if (json_array_size(v) == 0) return refuse(c, at, "must not be empty (leave it out for any)");
    if (json_array_size(v) > max) return refuse(c, at, "has more than %u entries", max);
    for (size_t i = 0; i < json_array_size(v); i++) {
        char item_at[PATH_BYTES];
        snprintf(item_at, sizeof item_at, "%s[%zu]", at, i);
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) return refuse(c, item_at, "must be a string");
        if (!item(c, item_at, json_string_value(e), out, (uint32_t)i)) return false;
    }
    *count = (uint32_t)json_array_size(v);
    return true;
}

static bool item_method(cfg_ctx *c, const char *at, const char *value, void *out, uint32_t i) {
    if (value[0] == '\0' || strlen(value) >= GW_METHOD_SIZE || !chars_valid(value, "_")) {
        return refuse(c, at, "is not a method name ([A-Za-z0-9_], at most %d)", GW_METHOD_SIZE - 1);
    }
    memcpy(((char(*)[GW_METHOD_SIZE])out)[i], value, strlen(value) + 1);
    return true;
}

static bool item_currency(cfg_ctx *c, const char *at, const char *value, void *out, uint32_t i) {
    if (pc_currency_find(value) == NULL) return refuse(c, at, "'%s' is not an ISO 4217 currency", value);
    memcpy(((char(*)[4])out)[i], value, 4);
    return true;
}

static bool item_country(cfg_ctx *c, const char *at, const char *value, void *out, uint32_t i) {
    bool ok = strlen(value) == 2 && value[0] >= 'A' && value[0] <= 'Z' && value[1] >= 'A' &&
              value[1] <= 'Z';
    if (!ok) return refuse(c, at, "'%s' is not an ISO 3166 alpha-2 country", value);
    memcpy(((char(*)[3])out)[i], value, 3);
    return true;
}

/* ---------------------------------------------------------------- one channel */

static bool channel_codes(cfg_ctx *c, const json_t *object, const char *path, gw_channel_cfg_t *ch) {
    const json_t *codes;
    if (!get_object(c, object, path, "codes", &codes) || codes == NULL) return !c->failed;
    const char *code;
    const json_t *value;
    json_object_foreach((json_t *)codes, code, value) {
        char at[PATH_BYTES];
        snprintf(at, sizeof at, "%s.codes.%s", path, code);
        gw_outcome outcome;
        if (code[0] == '\0' || strlen(code) >= GW_CODE_SIZE || !chars_valid(code, "_")) {
            return refuse(c, at, "a code is 1 to %d characters of [A-Za-z0-9_]", GW_CODE_SIZE - 1);
        }
        if (!json_is_string(value) || !gw_outcome_parse(json_string_value(value), &outcome)) {
            return refuse(c, at, "must be one of approved, pending, challenge, soft_decline, "
                                 "hard_decline, retryable, unknown");
        }
        gw_outcome existing;
        uint32_t slot = ch->code_count;
        for (uint32_t i = 0; i < ch->code_count; i++) {
            if (strcmp(ch->codes[i].code, code) == 0) slot = i;
        }
        if (!gw_code_lookup(ch, code, &existing) && ch->code_count == GW_CODES_MAX) {
            return refuse(c, at, "more than %d codes", GW_CODES_MAX);
        }
        gw_copy_str(ch->codes[slot].code, GW_CODE_SIZE, code);
        ch->codes[slot].outcome = outcome;
        if (slot == ch->code_count) ch->code_count++;
    }
    return true;
}

static bool channel_eligibility(cfg_ctx *c, const json_t *object, const char *path,
                                gw_channel_cfg_t *ch) {
    static const char *const keys[] = {"methods", "currencies", "countries", "amount_min_minor",
                                       "amount_max_minor", NULL};
    const json_t *e;
    char at[PATH_BYTES];
    join(at, path, "eligibility");
    if (!get_object(c, object, path, "eligibility", &e) || e == NULL) return !c->failed;
    if (!only_keys(c, e, at, keys) ||
        !get_list(c, e, at, "methods", GW_METHODS_MAX, item_method, ch->methods, &ch->method_count) ||
        !get_list(c, e, at, "currencies", GW_LIST_MAX, item_currency, ch->currencies, &ch->currency_count) ||
        !get_list(c, e, at, "countries", GW_LIST_MAX, item_country, ch->countries, &ch->country_count) ||
        !get_amount(c, e, at, "amount_min_minor", &ch->amount_min_minor) ||
        !get_amount(c, e, at, "amount_max_minor", &ch->amount_max_minor)) {
        return false;
    }
    if (ch->amount_min_minor > ch->amount_max_minor) {
        char max_at[PATH_BYTES];
        join(max_at, at, json_object_get(e, "amount_max_minor") ? "amount_max_minor" : "amount_min_minor");
        return refuse(c, max_at, "impossible amount range: minimum %lld is above maximum %lld",
                      (long long)ch->amount_min_minor, (long long)ch->amount_max_minor);
    }
    return true;
}

static bool channel_breaker(cfg_ctx *c, const json_t *object, const char *path, gw_breaker_cfg_t *b) {
    static const char *const keys[] = {"failures_consecutive", "error_rate_percent", "window_calls",
                                       "calls_min", "cooldown_ms", "half_open_probes", NULL};
    *b = (gw_breaker_cfg_t){5, 50, 20, 10, 10000, 1};
    const json_t *o;
    char at[PATH_BYTES];
    join(at, path, "breaker");
    if (!get_object(c, object, path, "breaker", &o) || o == NULL) return !c->failed;
    if (!only_keys(c, o, at, keys) ||
        !get_uint(c, o, at, "failures_consecutive", 0, 1000000, &b->failures_consecutive) ||
        !get_uint(c, o, at, "error_rate_percent", 0, 100, &b->error_rate_percent) ||
        !get_uint(c, o, at, "window_calls", 1, GW_WINDOW_CALLS_MAX, &b->window_calls) ||
        !get_uint(c, o, at, "calls_min", 1, GW_WINDOW_CALLS_MAX, &b->calls_min) ||
        !get_uint(c, o, at, "cooldown_ms", 1, 3600000, &b->cooldown_ms) ||
        !get_uint(c, o, at, "half_open_probes", 1, 1000, &b->half_open_probes)) {
        return false;
    }
    if (b->calls_min > b->window_calls) {
        char min_at[PATH_BYTES];
        join(min_at, at, "calls_min");
        return refuse(c, min_at, "is larger than window_calls (%u)", b->window_calls);
    }
    return true;
}

static bool channel_url(cfg_ctx *c, const json_t *object, const char *path, const char *key,
                        bool required, char *out) {
    if (!get_string(c, object, path, key, required, out, GW_URL_BYTES_MAX + 1)) return false;
    if (out[0] == '\0') return true;
    char at[PATH_BYTES];
    join(at, path, key);
    if (strncmp(out, "http://", 7) != 0 && strncmp(out, "https://", 8) != 0) {
        return refuse(c, at, "must start with http:// or https://");
    }
    size_t bytes = strlen(out);
    if (out[bytes - 1] == '/') out[bytes - 1] = '\0';
    return true;
}

static bool channel_basics(cfg_ctx *c, const json_t *object, const char *path, gw_channel_cfg_t *ch) {
    char at[PATH_BYTES];
    if (!get_string(c, object, path, "name", true, ch->name, GW_NAME_SIZE)) return false;
    join(at, path, "name");
    if (!chars_valid(ch->name, "_-")) return refuse(c, at, "a name is [A-Za-z0-9_-] only");
    const json_t *kind = json_object_get(object, "kind");
    join(at, path, "kind");
    if (kind == NULL) return refuse(c, at, "is required");
    if (!json_is_string(kind)) return refuse(c, at, "must be a string");
    if (!gw_kind_parse(json_string_value(kind), &ch->kind)) {
        return refuse(c, at, "unknown channel kind '%s' (card, wallet or bank)",
                      gw_printable(json_string_value(kind)));
    }
    ch->connect_timeout_ms = 2000;
    ch->timeout_ms = 10000;
    ch->max_connections = GW_HTTP_CONNECTIONS_MAX;
    ch->partial_captures = true;
    if (!channel_url(c, object, path, "url", true, ch->url) ||
        !channel_url(c, object, path, "callback_url", false, ch->callback_url) ||
        !get_string(c, object, path, "api_key", false, ch->api_key, sizeof ch->api_key) ||
        !get_string(c, object, path, "callback_secret", false, ch->callback_secret,
                    sizeof ch->callback_secret) ||
        !get_uint(c, object, path, "connect_timeout_ms", 1, GW_TIMEOUT_MS_MAX, &ch->connect_timeout_ms) ||
        !get_uint(c, object, path, "timeout_ms", 1, GW_TIMEOUT_MS_MAX, &ch->timeout_ms) ||
        !get_uint(c, object, path, "max_connections", 1, GW_HTTP_CONNECTIONS_MAX, &ch->max_connections) ||
        !get_uint(c, object, path, "authorization_window_s", 1, GW_AUTHORIZATION_WINDOW_S_MAX,
                  &ch->authorization_window_s) ||
        !get_bool(c, object, path, "partial_captures", &ch->partial_captures)) {
        return false;
    }
    if (ch->connect_timeout_ms > ch->timeout_ms) {
        join(at, path, "connect_timeout_ms");
        return refuse(c, at, "is longer than timeout_ms (%u)", ch->timeout_ms);
    }
    gw_http_origin(ch);
    return true;
}

static bool channel_parse(cfg_ctx *c, const json_t *object, const char *path, gw_channel_cfg_t *ch) {
    static const char *const keys[] = {"name", "kind", "url", "api_key", "callback_url",
                                       "callback_secret", "connect_timeout_ms", "timeout_ms",
                                       "max_connections", "authorization_window_s", "partial_captures",
                                       "codes", "eligibility", "breaker", NULL};
    if (!json_is_object(object)) return refuse(c, path, "a channel must be an object");
    memset(ch, 0, sizeof *ch);
    if (!only_keys(c, object, path, keys) || !channel_basics(c, object, path, ch)) return false;
    ch->code_count = gw_codes_default(ch->kind, ch->codes, GW_CODES_MAX);
    ch->amount_min_minor = 1;
    ch->amount_max_minor = INT64_MAX;
    if (!channel_codes(c, object, path, ch) || !channel_eligibility(c, object, path, ch) ||
        !channel_breaker(c, object, path, &ch->breaker)) {
        return false;
    }
    if (ch->method_count == 0) {
        gw_copy_str(ch->methods[0], GW_METHOD_SIZE, gw_connector(ch->kind)->default_method);
        ch->method_count = 1;
    }
    return true;
}

static bool channels_parse(cfg_ctx *c, const json_t *root, gw_config_t *cfg) {
    const json_t *list = json_object_get(root, "channels");
    if (list == NULL) return refuse(c, "channels", "is required");
    if (!json_is_array(list)) return refuse(c, "channels", "must be an array");
    if (json_array_size(list) == 0) return refuse(c, "channels", "names no channel");
    if (json_array_size(list) > GW_CHANNELS_MAX) {
        return refuse(c, "channels", "more than %d channels", GW_CHANNELS_MAX);
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "channels[%zu]", i);
        gw_channel_cfg_t *ch = &cfg->channels[i];
        if (!channel_parse(c, json_array_get(list, i), path, ch)) return false;
        if (gw_config_find(cfg, ch->name) >= 0) {
            strcat(path, ".name");
            return refuse(c, path, "a second channel named '%s'", ch->name);
        }
        cfg->channel_count++;
    }
    return true;
}

/* ---------------------------------------------------------------- routing */

/* A channel name of a routing list, at most once in it. */
static bool list_channel(cfg_ctx *c, const char *at, const char *value, gw_config_t *cfg,
                         uint8_t *list, uint32_t i) {
    int32_t index = gw_config_find(cfg, value);
    if (index < 0) return refuse(c, at, "no channel named '%s'", value);
    for (uint32_t k = 0; k < i; k++) {
        if (list[k] == index) return refuse(c, at, "'%s' is listed twice", value);
    }
    list[i] = (uint8_t)index;
    return true;
}

static bool item_priority(cfg_ctx *c, const char *at, const char *value, void *out, uint32_t i) {
    gw_config_t *cfg = out;
    return list_channel(c, at, value, cfg, cfg->priority, i);
}

static bool item_fallback(cfg_ctx *c, const char *at, const char *value, void *out, uint32_t i) {
    gw_config_t *cfg = out;
    return list_channel(c, at, value, cfg, cfg->fallback, i);
}

static bool routing_weights(cfg_ctx *c, const json_t *routing, gw_config_t *cfg) {
    const json_t *w;
    if (!get_object(c, routing, "routing", "weights", &w)) return false;
    if (w == NULL) {
        if (cfg->strategy != GW_STRATEGY_WEIGHTED) return true;
        return refuse(c, "routing.strategy", "weighted routing needs routing.weights");
    }
    const char *name;
    const json_t *value;
    json_object_foreach((json_t *)w, name, value) {
        char at[PATH_BYTES];
        snprintf(at, sizeof at, "routing.weights.%s", name);
        int32_t index = gw_config_find(cfg, name);
        if (index < 0) return refuse(c, at, "no channel named '%s'", name);
        if (!json_is_integer(value)) return refuse(c, at, "the weight is not a number (an integer 0..1000000)");
        if (json_integer_value(value) < 0 || json_integer_value(value) > 1000000) {
            return refuse(c, at, "the weight must be between 0 and 1000000");
        }
        cfg->weights[index] = (uint32_t)json_integer_value(value);
        cfg->weight_total += cfg->weights[index];
    }
    if (cfg->strategy == GW_STRATEGY_WEIGHTED && cfg->weight_total == 0) {
        return refuse(c, "routing.weights", "every weight is 0");
    }
    return true;
}

static bool routing_sr(cfg_ctx *c, const json_t *routing, gw_config_t *cfg) {
    static const char *const keys[] = {"window_calls", "window_ms", "calls_min",
                                       "exploration_percent", "elimination_percent", NULL};
    cfg->sr = (gw_sr_cfg_t){100, 0, 10, 10, 50};
    const json_t *o;
    if (!get_object(c, routing, "routing", "success_rate", &o) || o == NULL) return !c->failed;
    const char *at = "routing.success_rate";
    if (!only_keys(c, o, at, keys) ||
        !get_uint(c, o, at, "window_calls", 1, GW_WINDOW_CALLS_MAX, &cfg->sr.window_calls) ||
        !get_uint(c, o, at, "window_ms", 0, 86400000, &cfg->sr.window_ms) ||
        !get_uint(c, o, at, "calls_min", 1, GW_WINDOW_CALLS_MAX, &cfg->sr.calls_min) ||
        !get_uint(c, o, at, "exploration_percent", 0, 100, &cfg->sr.exploration_percent) ||
        !get_uint(c, o, at, "elimination_percent", 0, 100, &cfg->sr.elimination_percent)) {
        return false;
    }
    if (cfg->sr.calls_min > cfg->sr.window_calls) {
        return refuse(c, "routing.success_rate.calls_min", "is larger than window_calls (%u)",
                      cfg->sr.window_calls);
    }
    return true;
}

static bool routing_parse(cfg_ctx *c, const json_t *root, gw_config_t *cfg) {
    static const char *const keys[] = {"strategy", "priority", "weights", "success_rate",
                                       "fallback", "attempts_max", NULL};
    const json_t *routing;
    cfg->strategy = GW_STRATEGY_PRIORITY;
    cfg->attempts_max = 3;
    if (!get_object(c, root, "", "routing", &routing)) return false;
    if (routing == NULL) routing = json_object(); /* every default */
    else json_incref((json_t *)routing);
    char strategy[24] = "priority";
    bool ok = only_keys(c, routing, "routing", keys) &&
              get_string(c, routing, "routing", "strategy", false, strategy, sizeof strategy);
    if (ok && !gw_strategy_parse(strategy, &cfg->strategy)) {
        ok = refuse(c, "routing.strategy", "unknown strategy '%s' (priority, weighted or success_rate)",
                    strategy);
    }
    ok = ok && get_list(c, routing, "routing", "priority", GW_CHANNELS_MAX, item_priority, cfg,
                        &cfg->priority_count) &&
         get_list(c, routing, "routing", "fallback", GW_CHANNELS_MAX, item_fallback, cfg,
                  &cfg->fallback_count) &&
         routing_weights(c, routing, cfg) && routing_sr(c, routing, cfg) &&
         get_uint(c, routing, "routing", "attempts_max", 1, GW_ATTEMPTS_MAX, &cfg->attempts_max);
    json_decref((json_t *)routing);
    return ok;
}

static bool status_parse(cfg_ctx *c, const json_t *root, gw_config_t *cfg) {
    static const char *const keys[] = {"delay_ms", "attempts", "interval_ms", NULL};
    cfg->status_delay_ms = 1000;
    cfg->status_attempts = 3;
    cfg->status_interval_ms = 500;
    const json_t *o;
    if (!get_object(c, root, "", "status_inquiry", &o) || o == NULL) return !c->failed;
    const char *at = "status_inquiry";
    return only_keys(c, o, at, keys) && get_uint(c, o, at, "delay_ms", 0, 60000, &cfg->status_delay_ms) &&
           get_uint(c, o, at, "attempts", 1, 20, &cfg->status_attempts) &&
           get_uint(c, o, at, "interval_ms", 1, 60000, &cfg->status_interval_ms);
}

static bool config_parse(cfg_ctx *c, const json_t *root, gw_config_t *cfg) {
    static const char *const keys[] = {"channels", "routing", "status_inquiry", NULL};
    if (!json_is_object(root)) return refuse(c, "", "the file must hold one JSON object");
    return only_keys(c, root, "", keys) && channels_parse(c, root, cfg) &&
           routing_parse(c, root, cfg) && status_parse(c, root, cfg);
}

/* ---------------------------------------------------------------- loading */

static char *read_file(const char *path, size_t *bytes_out, gw_config_error_t *error) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(error->message, sizeof error->message, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(GW_CONFIG_BYTES_MAX + 1);
    size_t bytes = text ? fread(text, 1, GW_CONFIG_BYTES_MAX + 1, f) : 0;
    bool too_large = bytes > GW_CONFIG_BYTES_MAX;
    bool failed = text == NULL || ferror(f);
    fclose(f);
    if (too_large || failed) {
        snprintf(error->message, sizeof error->message, "%s: %s", path,
                 too_large ? "larger than 1 MiB" : "cannot read");
        free(text);
        return NULL;
    }
    *bytes_out = bytes;
    return text;
}

static void lend_states(gw_config_t *cfg, gw_config_t *previous) {
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        gw_channel_cfg_t *ch = &cfg->channels[i];
        int32_t old = previous ? gw_config_find(previous, ch->name) : -1;
        if (old >= 0) {
            ch->state = previous->channels[old].state;
            gw_chstate_ref(ch->state);
        } else {
            ch->state = gw_chstate_new(ch->name);
        }
    }
}

static bool states_allocated(const gw_config_t *cfg) {
    for (uint32_t i = 0; i < cfg->channel_count; i++) {
        if (cfg->channels[i].state == NULL) return false;
    }
    return true;
}

pc_status gw_config_load(const char *path, gw_config_t *previous, gw_config_t **out,
                         gw_config_error_t *error) {
    memset(error, 0, sizeof *error);
    size_t bytes = 0;
    char *text = read_file(path, &bytes, error);
    if (text == NULL) return PC_GATEWAY_CONFIG_INVALID;
    json_error_t jerr;
    json_t *root = json_loadb(text, bytes, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        error->line = jerr.line > 0 ? (uint32_t)jerr.line : 0;
        snprintf(error->message, sizeof error->message, "%s", jerr.text);
        free(text);
        return PC_GATEWAY_CONFIG_INVALID;
    }
    gw_lines_t *lines = gw_lines_scan(text, bytes);
    free(text);
    gw_config_t *cfg = calloc(1, sizeof *cfg);
    cfg_ctx c = {lines, error, false};
    bool ok = cfg != NULL && config_parse(&c, root, cfg);
    json_decref(root);
    gw_lines_free(lines);
    if (!ok) {
        if (cfg == NULL) snprintf(error->message, sizeof error->message, "out of memory");
        free(cfg);
        return cfg == NULL ? PC_NO_MEMORY : PC_GATEWAY_CONFIG_INVALID;
    }
    atomic_init(&cfg->refs, 1);
    cfg->version = atomic_fetch_add(&config_versions, 1) + 1;
    lend_states(cfg, previous);
    if (!states_allocated(cfg)) {
        gw_config_unref(cfg);
        return PC_NO_MEMORY;
    }
    *out = cfg;
    return PC_OK;
}

pc_status gw_config_check(const char *path, gw_config_error_t *error) {
    gw_config_t *cfg = NULL;
    pc_status status = gw_config_load(path, NULL, &cfg, error);
    if (status == PC_OK) gw_config_unref(cfg);
    return status;
}

void gw_config_ref(gw_config_t *config) { atomic_fetch_add(&config->refs, 1); }

void gw_config_unref(gw_config_t *config) {
    if (config == NULL || atomic_fetch_sub(&config->refs, 1) != 1) return;
    for (uint32_t i = 0; i < config->channel_count; i++) gw_chstate_unref(config->channels[i].state);
    free(config);
}

int32_t gw_config_find(const gw_config_t *config, const char *name) {
    for (uint32_t i = 0; i < config->channel_count; i++) {
        if (strcmp(config->channels[i].name, name) == 0) return (int32_t)i;
    }
    return -1;
}

/* ---------------------------------------------------------------- the demo */

pc_status gw_demo_config_write(const char *path, const char *card_url, const char *wallet_url,
                               const char *bank_url, const char *bank_callback_secret,
                               const char *paycore_url) {
    char callback_url[GW_URL_BYTES_MAX + 1];
    snprintf(callback_url, sizeof callback_url, "%s/v1/channels/bank/callbacks", paycore_url);
    json_t *config = json_pack(
        "{s:[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s,s:s,s:s}],s:{s:s,s:i}}", "channels",
        "name", "card", "kind", "card", "url", card_url,
        "name", "wallet", "kind", "wallet", "url", wallet_url,
        "name", "bank", "kind", "bank", "url", bank_url, "callback_secret", bank_callback_secret,
        "callback_url", callback_url,
        "routing", "strategy", "priority", "attempts_max", 3);
    if (config == NULL) return PC_NO_MEMORY;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    bool ok = f != NULL && json_dumpf(config, f, JSON_INDENT(2)) == 0 && fputc('\n', f) != EOF;
    if (f != NULL) ok = fclose(f) == 0 && ok;
    else if (fd >= 0) close(fd);
    json_decref(config);
    return ok ? PC_OK : PC_IO;
}
