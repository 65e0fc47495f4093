/* ledger/account.c: create_accounts. Results in precedence order: linked chain
 * codes, id_invalid, flag_unknown, flags_are_mutually_exclusive, currency_invalid,
 * id_taken (an account beyond the caller's reach holds the id: nothing of it is
 * compared or told), exists_with_different_{flags,code,currency,metadata}, exists,
 * account_limit_reached. */
#include <string.h>

#include "core/core.h"
#include "ledger/ledger_internal.h"
#include "paycore/money.h"

static bool metadata_equal(const char *a, const char *b) {
    if (a == NULL || b == NULL) return a == b;
    return strcmp(a, b) == 0;
}

static pc_status account_validate(const ledger_account_t *event) {
    if (!pc_id_valid(event->id)) return PC_ID_INVALID;
    if (event->flags & ~LEDGER_ACCOUNT_FLAGS_CLIENT) return PC_FLAG_UNKNOWN;
    if ((event->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        (event->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS)) {
        return PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    }
    if (pc_currency_find(event->currency) == NULL) return PC_CURRENCY_INVALID;
    return PC_OK;
}

static pc_status account_compare(const ledger_account_t *existing, const ledger_account_t *event) {
    uint16_t mask = (uint16_t)~LEDGER_ACCOUNT_LINKED;
    if ((existing->flags & mask) != (event->flags & mask)) return PC_EXISTS_WITH_DIFFERENT_FLAGS;
    if (existing->code != event->code) return PC_EXISTS_WITH_DIFFERENT_CODE;
    if (strcmp(existing->currency, event->currency) != 0) return PC_EXISTS_WITH_DIFFERENT_CURRENCY;
    if (!metadata_equal(existing->metadata_json, event->metadata_json)) {
        return PC_EXISTS_WITH_DIFFERENT_METADATA;
    }
    return PC_EXISTS;
}

static bool account_reachable(const ledger_t *ledger, const ledger_reach_t *reach,
                              const ledger_account_t *account) {
    return reach == NULL || reach->reachable(reach->ctx, ledger_account_index(ledger, account), account->id);
}

static pc_status account_apply(ledger_t *ledger, const void *events_opaque, uint32_t index,
                               void *results_opaque, const void *ctx) {
    const ledger_reach_t *reach = ctx;
    const ledger_account_t *event = &((const ledger_account_t *)events_opaque)[index];
    ledger_account_result_t *result = &((ledger_account_result_t *)results_opaque)[index];
    pc_status status = account_validate(event);
    if (status != PC_OK) return status;
    const ledger_account_t *existing = ledger_account_find(ledger, event->id);
    if (existing != NULL) {
        if (!account_reachable(ledger, reach, existing)) return PC_ID_TAKEN;
        status = account_compare(existing, event);
        if (status == PC_EXISTS) *result = (ledger_account_result_t){PC_EXISTS, existing->timestamp_ns};
        return status;
    }
    ledger_account_t row = *event;
    memset(&row.balances, 0, sizeof(row.balances));
    row.flags = event->flags & (uint16_t)~LEDGER_ACCOUNT_LINKED;
    uint64_t timestamp_ns = ledger->clock_ns; /* taken only if the create succeeds */
    row.timestamp_ns = ledger__timestamp_next(ledger);
    uint32_t created;
    status = ledger__account_create(ledger, &row, &created);
    if (status != PC_OK) {
        ledger->clock_ns = timestamp_ns;
        return status;
    }
    *result = (ledger_account_result_t){PC_OK, row.timestamp_ns};
    return PC_OK;
}

static bool account_linked(const void *events, uint32_t index) {
    return (((const ledger_account_t *)events)[index].flags & LEDGER_ACCOUNT_LINKED) != 0;
}

static void account_result_set(void *results, uint32_t index, pc_status status) {
    ((ledger_account_result_t *)results)[index] = (ledger_account_result_t){status, 0};
}

void ledger_create_accounts(ledger_t *ledger, const ledger_reach_t *reach,
                            const ledger_account_t *events, uint32_t count,
                            ledger_account_result_t *results) {
    PC_ASSERT(count >= 1 && count <= WRITER_BATCH_EVENTS_MAX);
    PC_ASSERT(reach == NULL || reach->reachable != NULL);
    ledger__apply_chains(ledger, events, count, account_linked, account_apply, account_result_set,
                         NULL, results, reach);
}
