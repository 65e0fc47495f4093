/* ledger/names.c: flag and state names (the API's and CLI's vocabulary), and the
 * double-entry check over the whole table. */
#include <string.h>

#include "ledger/ledger_internal.h"

typedef struct {
    const char *name;
    uint16_t flag;
} flag_name;

static const flag_name account_flags[] = {
    {"linked", LEDGER_ACCOUNT_LINKED},
    {"debits_must_not_exceed_credits", LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS},
    {"credits_must_not_exceed_debits", LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS},
    {"history", LEDGER_ACCOUNT_HISTORY},
    {"closed", LEDGER_ACCOUNT_CLOSED},
};

static const flag_name transfer_flags[] = {
    {"linked", LEDGER_TRANSFER_LINKED},
    {"pending", LEDGER_TRANSFER_PENDING},
    {"post_pending", LEDGER_TRANSFER_POST_PENDING},
    {"void_pending", LEDGER_TRANSFER_VOID_PENDING},
    {"balancing_debit", LEDGER_TRANSFER_BALANCING_DEBIT},
    {"balancing_credit", LEDGER_TRANSFER_BALANCING_CREDIT},
    {"expiry", LEDGER_TRANSFER_EXPIRY},
};

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

static bool flag_parse(const flag_name *table, size_t count, const char *name, uint16_t *flag) {
    for (size_t i = 0; i < count; i++) {
        if (strcmp(table[i].name, name) == 0) {
            *flag = table[i].flag;
            return true;
        }
    }
    return false;
}

static const char *flag_name_of(const flag_name *table, size_t count, uint16_t flag) {
    for (size_t i = 0; i < count; i++) {
        if (table[i].flag == flag) return table[i].name;
    }
    return NULL;
}

bool ledger_account_flag_parse(const char *name, uint16_t *flag) {
    return flag_parse(account_flags, COUNT(account_flags), name, flag);
}

bool ledger_transfer_flag_parse(const char *name, uint16_t *flag) {
    /* "expiry" is the ledger's own flag: clients cannot set it. */
    return strcmp(name, "expiry") != 0 &&
           flag_parse(transfer_flags, COUNT(transfer_flags), name, flag);
}

const char *ledger_account_flag_name(uint16_t flag) {
    return flag_name_of(account_flags, COUNT(account_flags), flag);
}

const char *ledger_transfer_flag_name(uint16_t flag) {
    return flag_name_of(transfer_flags, COUNT(transfer_flags), flag);
}

const char *ledger_pending_state_name(ledger_pending_state state) {
    switch (state) {
    case LEDGER_PENDING_NONE: return "none";
    case LEDGER_PENDING_OPEN: return "pending";
    case LEDGER_PENDING_POSTED: return "posted";
    case LEDGER_PENDING_VOIDED: return "voided";
    case LEDGER_PENDING_EXPIRED: return "expired";
    }
    return "unknown";
}

typedef struct {
    char currency[4];
    __int128 debits_pending, debits_posted, credits_pending, credits_posted;
} currency_sums;

static currency_sums *sums_for(currency_sums *sums, uint32_t *count, const char *currency) {
    for (uint32_t i = 0; i < *count; i++) {
        if (strcmp(sums[i].currency, currency) == 0) return &sums[i];
    }
    PC_ASSERT(*count < PC_CURRENCIES_MAX);
    currency_sums *entry = &sums[(*count)++];
    memset(entry, 0, sizeof(*entry));
    memcpy(entry->currency, currency, 4);
    return entry;
}

bool ledger_balanced(const ledger_t *ledger, char currency_out[4]) {
    static __thread currency_sums sums[PC_CURRENCIES_MAX];
    uint32_t count = 0;
    for (uint32_t i = 0; i < ledger->account_count; i++) {
        const ledger_account_t *account = &ledger->accounts[i];
        currency_sums *entry = sums_for(sums, &count, account->currency);
        entry->debits_pending += account->balances.debits_pending;
        entry->debits_posted += account->balances.debits_posted;
        entry->credits_pending += account->balances.credits_pending;
        entry->credits_posted += account->balances.credits_posted;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (sums[i].debits_posted != sums[i].credits_posted ||
            sums[i].debits_pending != sums[i].credits_pending) {
            if (currency_out != NULL) memcpy(currency_out, sums[i].currency, 4);
            return false;
        }
    }
    return true;
}
