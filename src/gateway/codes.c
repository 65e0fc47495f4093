/* gateway/codes.c: names of the gateway's enums and each channel kind's built-in table
 * from response code to outcome (docs/channels.md, "Response codes"). A channels file
 * may override single codes of a channel; it cannot change the transport rules
 * (timeouts and dropped connections are unknown, 503 is retryable): those keep the
 * money safe whatever the file says. */
#include <string.h>

#include "gateway/gw_internal.h"

static const char *const kind_names[GW_KIND_COUNT] = {"card", "wallet", "bank"};
static const char *const op_names[GW_OP_COUNT] = {"authorize", "capture", "void", "refund",
                                                   "payout", "status", "challenge"};
static const char *const outcome_names[GW_OUTCOME_COUNT] = {
    "approved", "pending", "challenge", "soft_decline", "hard_decline", "retryable", "unknown"};
static const char *const strategy_names[GW_STRATEGY_COUNT] = {"priority", "weighted",
                                                               "success_rate", "direct"};
static const char *const breaker_names[GW_BREAKER_STATE_COUNT] = {"closed", "open", "half_open"};
static const char *const why_names[GW_WHY_COUNT] = {
    "eligible", "operation", "method", "currency", "country", "amount", "breaker_open", "not_routed"};

const char *gw_kind_name(gw_kind kind) { return kind < GW_KIND_COUNT ? kind_names[kind] : "?"; }
const char *gw_op_name(gw_op op) { return op < GW_OP_COUNT ? op_names[op] : "?"; }
const char *gw_outcome_name(gw_outcome o) { return o < GW_OUTCOME_COUNT ? outcome_names[o] : "?"; }
const char *gw_strategy_name(gw_strategy s) { return s < GW_STRATEGY_COUNT ? strategy_names[s] : "?"; }
const char *gw_why_name(gw_why why) { return why < GW_WHY_COUNT ? why_names[why] : "?"; }
const char *gw_breaker_state_name(gw_breaker_state state) {
    return state < GW_BREAKER_STATE_COUNT ? breaker_names[state] : "?";
}

static bool parse_name(const char *name, const char *const *names, uint32_t count, uint32_t *out) {
    for (uint32_t i = 0; i < count; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

bool gw_kind_parse(const char *name, gw_kind *out) {
    uint32_t v;
    if (!parse_name(name, kind_names, GW_KIND_COUNT, &v)) return false;
    *out = (gw_kind)v;
    return true;
}

bool gw_outcome_parse(const char *name, gw_outcome *out) {
    uint32_t v;
    if (!parse_name(name, outcome_names, GW_OUTCOME_COUNT, &v)) return false;
    *out = (gw_outcome)v;
    return true;
}

/* "direct" is the gateway's own choice for follow-ups, never a configured strategy. */
bool gw_strategy_parse(const char *name, gw_strategy *out) {
    uint32_t v;
    if (!parse_name(name, strategy_names, GW_STRATEGY_DIRECT, &v)) return false;
    *out = (gw_strategy)v;
    return true;
}

/* ISO 8583 answers of the card network. 05 and 51 are soft: the issuer said no now,
 * another acquirer reaches the same issuer, so they are not retried elsewhere. */
static const gw_code_entry_t card_codes[] = {
    {"00", GW_OUTCOME_APPROVED},     {"05", GW_OUTCOME_SOFT_DECLINE},
    {"14", GW_OUTCOME_HARD_DECLINE}, {"51", GW_OUTCOME_SOFT_DECLINE},
    {"54", GW_OUTCOME_HARD_DECLINE}, {"57", GW_OUTCOME_HARD_DECLINE},
    {"61", GW_OUTCOME_SOFT_DECLINE}, {"91", GW_OUTCOME_RETRYABLE},
    {"96", GW_OUTCOME_RETRYABLE},    {"1A", GW_OUTCOME_CHALLENGE},
};

static const gw_code_entry_t wallet_codes[] = {
    {"approved", GW_OUTCOME_APPROVED},
    {"insufficient_balance", GW_OUTCOME_SOFT_DECLINE},
    {"account_frozen", GW_OUTCOME_HARD_DECLINE},
    {"account_not_found", GW_OUTCOME_HARD_DECLINE},
    {"currency_mismatch", GW_OUTCOME_HARD_DECLINE},
    {"exceeds_refundable", GW_OUTCOME_HARD_DECLINE},
};

/* The bank answers "pending" at once; NACHA return codes arrive by callback. */
static const gw_code_entry_t bank_codes[] = {
    {"pending", GW_OUTCOME_PENDING},
    {"settled", GW_OUTCOME_APPROVED},
    {"R01", GW_OUTCOME_SOFT_DECLINE},
    {"R02", GW_OUTCOME_HARD_DECLINE},
    {"R03", GW_OUTCOME_HARD_DECLINE},
};

uint32_t gw_codes_default(gw_kind kind, gw_code_entry_t *out, uint32_t capacity) {
    const gw_code_entry_t *table = card_codes;
    uint32_t count = sizeof card_codes / sizeof card_codes[0];
    if (kind == GW_KIND_WALLET) {
        table = wallet_codes;
        count = sizeof wallet_codes / sizeof wallet_codes[0];
    } else if (kind == GW_KIND_BANK) {
        table = bank_codes;
        count = sizeof bank_codes / sizeof bank_codes[0];
    }
    PC_ASSERT(count <= capacity);
    memcpy(out, table, count * sizeof *table);
    return count;
}

bool gw_code_lookup(const gw_channel_cfg_t *ch, const char *code, gw_outcome *out) {
    for (uint32_t i = 0; i < ch->code_count; i++) {
        if (strcmp(ch->codes[i].code, code) == 0) {
            *out = ch->codes[i].outcome;
            return true;
        }
    }
    return false;
}
