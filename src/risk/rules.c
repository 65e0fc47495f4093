/* risk/rules.c: the rules file and its evaluation (format: docs/risk.md).
 * One rule a line: a kind, then key=value pairs; '#' starts a comment. Every rule
 * that hits adds a reason code (its own, or the kind's default) and an action
 * (review or decline). A file with any bad line is refused as a whole with that
 * line's number, so the engine keeps its previous rules.
 * AML patterns read the payer's and payee's state from features.c; windows are
 * bounded by what that state keeps (docs/risk.md, "Limits"). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "risk/risk.h"

typedef enum {
    RULE_AMOUNT_LIMIT, RULE_VELOCITY, RULE_BLOCK, RULE_MCC_HOURS,
    RULE_AML_STRUCTURING, RULE_AML_MULE, RULE_AML_FAN_IN, RULE_THRESHOLDS, RULE_KIND_COUNT
} rule_kind;

static const char *const kind_names[RULE_KIND_COUNT] = {
    "amount_limit", "velocity", "block", "mcc_hours",
    "aml_structuring", "aml_mule", "aml_fan_in", "thresholds",
};

typedef enum { BLOCK_PAYER, BLOCK_DEVICE, BLOCK_IP, BLOCK_COUNTRY } block_kind;

typedef struct {
    rule_kind kind;
    risk_action action;
    char reason[RISK_REASON_BYTES_MAX];
    /* match */
    char account[RISK_KEY_SIZE];     /* amount_limit: payer; block: the value */
    char currency[4];
    int channel;                     /* -1 any */
    block_kind block;
    uint16_t mccs[RISK_MCC_LIST_MAX];
    uint32_t mcc_count;
    int hour_from, hour_to;          /* inclusive local hours, may wrap */
    /* limits */
    int64_t max_minor;               /* amount_limit with currency */
    int64_t max_usd_cents;           /* amount_limit without currency; velocity sum */
    int64_t window_s;
    uint32_t max_count;
    int64_t threshold_usd_cents;     /* structuring, mule inflow */
    uint32_t margin_pct;             /* structuring band; mule out share */
    uint32_t count_min;              /* structuring count; fan-in payers */
    int64_t age_max_s;               /* fan-in: payee newer than this */
    float review, decline;           /* thresholds */
} rule;

struct risk_rules {
    uint32_t count;
    rule rules[RISK_RULES_MAX];
};

typedef struct {
    char *message;
    size_t message_bytes;
} parse_err;

static bool fail(parse_err *e, const char *fmt, ...) {
    if (e->message != NULL && e->message_bytes > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, e->message_bytes, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (s[0] == '\0') return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) return false;
    *out = v;
    return true;
}

/* "90s", "10m", "1h", "7d" or plain seconds; 1 s .. 366 d. */
static bool parse_duration(const char *s, int64_t *out_s) {
    char buf[32];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(buf)) return false;
    memcpy(buf, s, n + 1);
    int64_t unit = 1;
    switch (buf[n - 1]) {
    case 's': unit = 1; buf[n - 1] = '\0'; break;
    case 'm': unit = 60; buf[n - 1] = '\0'; break;
    case 'h': unit = 3600; buf[n - 1] = '\0'; break;
    case 'd': unit = 86400; buf[n - 1] = '\0'; break;
    default: break;
    }
    int64_t v = 0;
    if (!parse_int(buf, 1, 366 * 86400, &v) || v * unit > 366 * 86400) return false;
    *out_s = v * unit;
    return true;
}

static bool reason_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= RISK_REASON_BYTES_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

static bool parse_mccs(const char *s, rule *r) {
    char buf[128];
    if (strlen(s) >= sizeof(buf)) return false;
    strcpy(buf, s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t v = 0;
        if (r->mcc_count == RISK_MCC_LIST_MAX || !parse_int(tok, 0, 9999, &v)) return false;
        r->mccs[r->mcc_count++] = (uint16_t)v;
    }
    return r->mcc_count > 0;
}

static bool parse_hours(const char *s, rule *r) {
    int from = -1, to = -1, used = 0;
    if (sscanf(s, "%d-%d%n", &from, &to, &used) != 2 || s[used] != '\0') return false;
    if (from < 0 || from > 23 || to < 0 || to > 23) return false;
    r->hour_from = from;
    r->hour_to = to;
    return true;
}

static bool parse_usd(const char *v, int64_t *cents_out) {
    int64_t usd = 0;
    if (!parse_int(v, 1, INT64_MAX / 100, &usd)) return false;
    *cents_out = usd * 100;
    return true;
}

static bool parse_threshold(const char *v, float *out) {
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(d >= 0.0 && d <= 1.0)) return false;
    *out = (float)d;
    return true;
}

/* ---------------------------------------------------------------- parsing */

#define K(kind) (1u << (kind))
typedef struct {
    const char *key;
    uint32_t kinds;   /* rule kinds that accept this key */
} key_spec;

static const key_spec key_specs[] = {
    {"action", 0xffu & ~K(RULE_THRESHOLDS)},
    {"reason", 0xffu & ~K(RULE_THRESHOLDS)},
    {"account", K(RULE_AMOUNT_LIMIT)},
    {"currency", K(RULE_AMOUNT_LIMIT)},
    {"channel", K(RULE_AMOUNT_LIMIT)},
    {"max_minor", K(RULE_AMOUNT_LIMIT)},
    {"max_usd", K(RULE_AMOUNT_LIMIT)},
    {"window", K(RULE_VELOCITY) | K(RULE_AML_STRUCTURING)},
    {"max_count", K(RULE_VELOCITY)},
    {"max_sum_usd", K(RULE_VELOCITY)},
    {"payer", K(RULE_BLOCK)},
    {"device", K(RULE_BLOCK)},
    {"ip_prefix", K(RULE_BLOCK)},
    {"country", K(RULE_BLOCK)},
    {"mcc", K(RULE_MCC_HOURS)},
    {"hours", K(RULE_MCC_HOURS)},
    {"threshold_usd", K(RULE_AML_STRUCTURING)},
    {"margin_pct", K(RULE_AML_STRUCTURING)},
    {"count", K(RULE_AML_STRUCTURING)},
    {"min_inflow_usd", K(RULE_AML_MULE)},
    {"out_pct", K(RULE_AML_MULE)},
    {"min_payers", K(RULE_AML_FAN_IN)},
    {"payee_age", K(RULE_AML_FAN_IN)},
    {"review", K(RULE_THRESHOLDS)},
    {"decline", K(RULE_THRESHOLDS)},
};

static bool set_block(rule *r, block_kind kind, const char *v) {
    if (r->account[0] != '\0') return false; /* one value a block line */
    size_t n = strlen(v);
    if (n == 0 || n > RISK_KEY_BYTES_MAX) return false;
    if (kind == BLOCK_COUNTRY && n != 2) return false;
    r->block = kind;
    memcpy(r->account, v, n + 1);
    return true;
}

static bool apply_limit_pair(rule *r, const char *k, const char *v) {
    int64_t n = 0;
    if (strcmp(k, "max_minor") == 0) return parse_int(v, 1, INT64_MAX, &r->max_minor);
    if (strcmp(k, "max_usd") == 0 || strcmp(k, "max_sum_usd") == 0) {
        return parse_usd(v, &r->max_usd_cents);
    }
    if (strcmp(k, "window") == 0) return parse_duration(v, &r->window_s);
    if (strcmp(k, "payee_age") == 0) return parse_duration(v, &r->age_max_s);
    if (strcmp(k, "max_count") == 0) {
        if (!parse_int(v, 1, RISK_RING_EVENTS - 1, &n)) return false;
        r->max_count = (uint32_t)n;
        return true;
    }
    if (strcmp(k, "threshold_usd") == 0 || strcmp(k, "min_inflow_usd") == 0) {
        return parse_usd(v, &r->threshold_usd_cents);
    }
    if (strcmp(k, "margin_pct") == 0 || strcmp(k, "out_pct") == 0) {
        if (!parse_int(v, 1, 100, &n)) return false;
        r->margin_pct = (uint32_t)n;
        return true;
    }
    if (strcmp(k, "count") == 0 || strcmp(k, "min_payers") == 0) {
        int64_t max = strcmp(k, "count") == 0 ? RISK_RING_EVENTS : RISK_ENTITY_PAYERS;
        if (!parse_int(v, 2, max, &n)) return false;
        r->count_min = (uint32_t)n;
        return true;
    }
    return false;
}

static bool apply_pair(rule *r, const char *k, const char *v) {
    if (strcmp(k, "action") == 0) {
        if (strcmp(v, "review") == 0) r->action = RISK_ACTION_REVIEW;
        else if (strcmp(v, "decline") == 0) r->action = RISK_ACTION_DECLINE;
        else return false;
        return true;
    }
    if (strcmp(k, "reason") == 0) {
        if (!reason_valid(v)) return false;
        strcpy(r->reason, v);
        return true;
    }
    if (strcmp(k, "account") == 0) return pc_id_copy(r->account, v);
    if (strcmp(k, "currency") == 0) {
        if (strlen(v) != 3 || !isupper((unsigned char)v[0])) return false;
        memcpy(r->currency, v, 4);
        return true;
    }
    if (strcmp(k, "channel") == 0) {
        risk_auth_t probe;
        if (risk_auth_set_channel(&probe, v) != PC_OK) return false;
        r->channel = (int)probe.channel;
        return true;
    }
    if (strcmp(k, "payer") == 0) return set_block(r, BLOCK_PAYER, v);
    if (strcmp(k, "device") == 0) return set_block(r, BLOCK_DEVICE, v);
    if (strcmp(k, "ip_prefix") == 0) return set_block(r, BLOCK_IP, v);
    if (strcmp(k, "country") == 0) return set_block(r, BLOCK_COUNTRY, v);
    if (strcmp(k, "mcc") == 0) return parse_mccs(v, r);
    if (strcmp(k, "hours") == 0) return parse_hours(v, r);
    if (strcmp(k, "review") == 0) return parse_threshold(v, &r->review);
    if (strcmp(k, "decline") == 0) return parse_threshold(v, &r->decline);
    return apply_limit_pair(r, k, v);
}

static const char *const default_reasons[RULE_KIND_COUNT] = {
    "amount_limit", "velocity", "blocklist", "mcc_hour",
    "aml_structuring", "aml_rapid_in_out", "aml_many_payers_new_payee", "",
};

static const char *const block_reasons[] = {
    "blocklist_payer", "blocklist_device", "blocklist_ip", "blocklist_country",
};

/* After all pairs: required fields per kind, and the default reason. */
static bool finish_rule(rule *r, parse_err *e) {
    bool ok = true;
    switch (r->kind) {
    case RULE_AMOUNT_LIMIT:
        ok = (r->currency[0] != '\0' && r->max_minor > 0) ||
             (r->currency[0] == '\0' && r->max_usd_cents > 0 && r->max_minor == 0);
        if (!ok) return fail(e, "amount_limit needs currency= with max_minor=, or max_usd=");
        break;
    case RULE_VELOCITY:
        ok = r->window_s > 0 && (r->max_count > 0 || r->max_usd_cents > 0);
        if (!ok) return fail(e, "velocity needs window= and max_count= or max_sum_usd=");
        if (r->window_s > 86400) return fail(e, "velocity window is at most 24h");
        break;
    case RULE_BLOCK:
        if (r->account[0] == '\0') return fail(e, "block needs payer=, device=, ip_prefix= or country=");
        if (r->reason[0] == '\0') strcpy(r->reason, block_reasons[r->block]);
        if (r->action == 0) r->action = RISK_ACTION_DECLINE;
        break;
    case RULE_MCC_HOURS:
        if (r->mcc_count == 0 || r->hour_from < 0) return fail(e, "mcc_hours needs mcc= and hours=");
        break;
    case RULE_AML_STRUCTURING:
        ok = r->threshold_usd_cents > 0 && r->margin_pct > 0 && r->count_min > 0 && r->window_s > 0;
        if (!ok) return fail(e, "aml_structuring needs threshold_usd= margin_pct= count= window=");
        break;
    case RULE_AML_MULE:
        if (r->threshold_usd_cents == 0 || r->margin_pct == 0) {
            return fail(e, "aml_mule needs min_inflow_usd= and out_pct=");
        }
        break;
    case RULE_AML_FAN_IN:
        if (r->count_min == 0 || r->age_max_s == 0) return fail(e, "aml_fan_in needs min_payers= and payee_age=");
        break;
    case RULE_THRESHOLDS:
        if (!(r->review > 0 && r->decline > 0 && r->review <= r->decline)) {
            return fail(e, "thresholds needs 0 < review <= decline <= 1");
        }
        break;
    default:
        PC_ASSERT(false);
    }
    if (r->reason[0] == '\0') strcpy(r->reason, default_reasons[r->kind]);
    if (r->action == 0) r->action = RISK_ACTION_REVIEW;
    return true;
}

static bool key_allowed(rule_kind kind, const char *key) {
    for (size_t i = 0; i < sizeof(key_specs) / sizeof(key_specs[0]); i++) {
        if (strcmp(key_specs[i].key, key) == 0) return (key_specs[i].kinds & K(kind)) != 0;
    }
    return false;
}

/* One line (comment stripped, non-empty) into 'r'. */
static bool parse_line(char *line, rule *r, parse_err *e) {
    memset(r, 0, sizeof(*r));
    r->channel = -1;
    r->hour_from = r->hour_to = -1;
    char *save = NULL;
    char *word = strtok_r(line, " \t", &save);
    int kind = -1;
    for (int k = 0; k < RULE_KIND_COUNT; k++) {
        if (strcmp(word, kind_names[k]) == 0) kind = k;
    }
    if (kind < 0) return fail(e, "unknown rule kind '%s'", word);
    r->kind = (rule_kind)kind;
    while ((word = strtok_r(NULL, " \t", &save)) != NULL) {
        char *eq = strchr(word, '=');
        if (eq == NULL) return fail(e, "expected key=value, got '%s'", word);
        *eq = '\0';
        if (!key_allowed(r->kind, word)) return fail(e, "%s does not take '%s'", kind_names[kind], word);
        if (!apply_pair(r, word, eq + 1)) return fail(e, "bad value for %s: '%s'", word, eq + 1);
    }
    return finish_rule(r, e);
}

static bool blank(const char *s) {
    for (; *s; s++) {
        if (!isspace((unsigned char)*s)) return false;
    }
    return true;
}

pc_status risk_rules_parse(const char *text, risk_rules_t **out, uint32_t *line_out,
                           char *message, size_t message_bytes) {
    *out = NULL;
    *line_out = 0;
    parse_err e = {message, message_bytes};
    if (message != NULL && message_bytes > 0) message[0] = '\0';
    risk_rules_t *rules = calloc(1, sizeof(*rules));
    if (rules == NULL) return PC_NO_MEMORY;
    const char *p = text;
    uint32_t line_no = 0;
    char line[RISK_RULES_LINE_BYTES_MAX + 1];
    while (*p != '\0') {
        line_no++;
        size_t n = strcspn(p, "\n");
        bool ok = n <= RISK_RULES_LINE_BYTES_MAX;
        if (!ok) fail(&e, "line longer than %d bytes", RISK_RULES_LINE_BYTES_MAX);
        if (ok) {
            memcpy(line, p, n);
            line[n] = '\0';
            char *hash = strchr(line, '#');
            if (hash != NULL) *hash = '\0';
            line[strcspn(line, "\r")] = '\0';
        }
        if (ok && !blank(line)) {
            if (rules->count == RISK_RULES_MAX) ok = fail(&e, "more than %d rules", RISK_RULES_MAX);
            else ok = parse_line(line, &rules->rules[rules->count++], &e);
        }
        if (!ok) {
            *line_out = line_no;
            free(rules);
            return PC_RISK_RULES_INVALID;
        }
        p += n;
        if (*p == '\n') p++;
    }
    *out = rules;
    return PC_OK;
}

#define RULES_FILE_BYTES_MAX (RISK_RULES_MAX * (RISK_RULES_LINE_BYTES_MAX + 1))

pc_status risk_rules_load(const char *path, risk_rules_t **out, uint32_t *line_out,
                          char *message, size_t message_bytes) {
    *out = NULL;
    *line_out = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (message != NULL) snprintf(message, message_bytes, "cannot open %s", path);
        return errno == ENOENT ? PC_NOT_FOUND : PC_IO;
    }
    char *text = malloc(RULES_FILE_BYTES_MAX + 1);
    size_t n = text ? fread(text, 1, RULES_FILE_BYTES_MAX + 1, f) : 0;
    bool error = ferror(f);
    fclose(f);
    if (text == NULL) return PC_NO_MEMORY;
    if (error || n > RULES_FILE_BYTES_MAX || memchr(text, '\0', n) != NULL) {
        free(text);
        if (message != NULL) snprintf(message, message_bytes, "unreadable, binary or too large");
        return PC_RISK_RULES_INVALID;
    }
    text[n] = '\0';
    pc_status status = risk_rules_parse(text, out, line_out, message, message_bytes);
    free(text);
    return status;
}

void risk_rules_free(risk_rules_t *rules) { free(rules); }

uint32_t risk_rules_count(const risk_rules_t *rules) { return rules ? rules->count : 0; }

bool risk_rules_thresholds(const risk_rules_t *rules, float *review, float *decline) {
    for (uint32_t i = 0; rules != NULL && i < rules->count; i++) {
        if (rules->rules[i].kind == RULE_THRESHOLDS) {
            *review = rules->rules[i].review;
            *decline = rules->rules[i].decline;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- evaluation */

typedef struct {
    const risk_features_t *features;
    const risk_auth_t *auth;
    int64_t amount_usd_cents;
} eval_ctx;

static bool hit_amount_limit(const rule *r, const eval_ctx *c) {
    const risk_auth_t *a = c->auth;
    if (r->account[0] != '\0' && strcmp(r->account, a->payer_id) != 0) return false;
    if (r->channel >= 0 && r->channel != (int)a->channel) return false;
    if (r->currency[0] != '\0') {
        return strcmp(r->currency, a->currency) == 0 && a->amount_minor > r->max_minor;
    }
    return c->amount_usd_cents > r->max_usd_cents;
}

/* Counts include the payment being scored. */
static bool hit_velocity(const rule *r, const eval_ctx *c) {
    risk_payer_view_t v;
    risk_features_payer_view(c->features, c->auth->payer_id, c->auth->scope, c->auth->ts_s, r->window_s, 0,
                             0, &v);
    if (r->max_count > 0 && v.count_window + 1 > r->max_count) return true;
    return r->max_usd_cents > 0 && v.sum_usd_cents_window + c->amount_usd_cents > r->max_usd_cents;
}

/* "10.1" blocks 10.1.x but not 10.10.x: a prefix ends at a dot. */
static bool ip_prefix_match(const char *prefix, const char *ip) {
    size_t n = strlen(prefix);
    return ip[0] != '\0' && strncmp(prefix, ip, n) == 0 && (ip[n] == '\0' || ip[n] == '.');
}

static bool hit_block(const rule *r, const eval_ctx *c) {
    const risk_auth_t *a = c->auth;
    switch (r->block) {
    case BLOCK_PAYER: return strcmp(r->account, a->payer_id) == 0;
    case BLOCK_DEVICE: return strcmp(r->account, a->device_id) == 0;
    case BLOCK_IP: return ip_prefix_match(r->account, a->ip_prefix);
    case BLOCK_COUNTRY:
        return strcmp(r->account, a->country_payer) == 0 ||
               strcmp(r->account, a->country_merchant) == 0;
    }
    return false;
}

static bool hit_mcc_hours(const rule *r, const eval_ctx *c) {
    bool listed = false;
    for (uint32_t i = 0; i < r->mcc_count; i++) listed = listed || r->mccs[i] == c->auth->mcc;
    if (!listed) return false;
    int hour = risk_local_hour(c->auth->country_payer, c->auth->ts_s);
    if (hour < 0) hour = (int)((c->auth->ts_s / 3600) % 24); /* unknown country: UTC */
    if (r->hour_from <= r->hour_to) return hour >= r->hour_from && hour <= r->hour_to;
    return hour >= r->hour_from || hour <= r->hour_to;
}

/* Several payments just under a reporting threshold inside the window. */
static bool hit_structuring(const rule *r, const eval_ctx *c) {
    int64_t high = r->threshold_usd_cents;
    int64_t low = high - high / 100 * (int64_t)r->margin_pct;
    if (c->amount_usd_cents < low || c->amount_usd_cents >= high) return false;
    risk_payer_view_t v;
    risk_features_payer_view(c->features, c->auth->payer_id, c->auth->scope, c->auth->ts_s, r->window_s, low, high,
                             &v);
    return v.near_threshold_window + 1 >= r->count_min;
}

/* Money in (the payer was a payee lately) goes straight back out. */
static bool hit_mule(const rule *r, const eval_ctx *c) {
    risk_payee_view_t v;
    risk_features_payee_view(c->features, c->auth->payer_id, c->auth->scope, NULL, c->auth->ts_s, &v);
    if (!v.found || v.inflow_usd_cents_24h < r->threshold_usd_cents) return false;
    return c->amount_usd_cents * 100 >= v.inflow_usd_cents_24h * (int64_t)r->margin_pct;
}

/* A payee first seen lately that many distinct payers pay. */
static bool hit_fan_in(const rule *r, const eval_ctx *c) {
    risk_payee_view_t v;
    /* the payee of a scoped decision is its owner: its merchant counters are its own */
    risk_features_payee_view(c->features, c->auth->payee_id, 0, c->auth->payer_id, c->auth->ts_s, &v);
    if (!v.found || c->auth->ts_s - v.first_seen_s > r->age_max_s) return false;
    uint32_t payers = v.distinct_payers_24h + (v.payer_seen_24h ? 0 : 1);
    return payers >= r->count_min;
}

static bool rule_hits(const rule *r, const eval_ctx *c) {
    switch (r->kind) {
    case RULE_AMOUNT_LIMIT: return hit_amount_limit(r, c);
    case RULE_VELOCITY: return hit_velocity(r, c);
    case RULE_BLOCK: return hit_block(r, c);
    case RULE_MCC_HOURS: return hit_mcc_hours(r, c);
    case RULE_AML_STRUCTURING: return hit_structuring(r, c);
    case RULE_AML_MULE: return hit_mule(r, c);
    case RULE_AML_FAN_IN: return hit_fan_in(r, c);
    case RULE_THRESHOLDS: return false;
    default: PC_ASSERT(false);
    }
    return false;
}

/* One reason per code: a second hit with the same code keeps the stronger action. */
static uint32_t add_reason(risk_reason_t *reasons, uint32_t count, const rule *r) {
    for (uint32_t i = 0; i < count; i++) {
        if (strcmp(reasons[i].code, r->reason) == 0) {
            if (r->action > reasons[i].action) reasons[i].action = r->action;
            return count;
        }
    }
    if (count == RISK_REASONS_MAX) return count;
    strcpy(reasons[count].code, r->reason);
    reasons[count].action = r->action;
    return count + 1;
}

uint32_t risk_rules_eval(const risk_rules_t *rules, const risk_features_t *features,
                         const risk_auth_t *auth, risk_reason_t reasons[RISK_REASONS_MAX]) {
    if (rules == NULL) return 0;
    double usd = risk_amount_usd(auth->amount_minor, auth->currency);
    eval_ctx c = {features, auth, (int64_t)llround(fmin(usd * 100.0, 9.0e18))};
    uint32_t count = 0;
    for (uint32_t i = 0; i < rules->count; i++) {
        if (rule_hits(&rules->rules[i], &c)) count = add_reason(reasons, count, &rules->rules[i]);
    }
    return count;
}
