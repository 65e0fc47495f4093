/* payments/accounts.c: the chart of accounts (docs/accounting.md). Every account's id
 * is made from its owner and currency, so any step can name the accounts it moves
 * money between without a lookup; ids stay within the ledger's 64 characters because
 * merchant ids are at most PAY_MERCHANT_ID_BYTES_MAX, channel names GW_NAME_BYTES_MAX
 * and wallet ids are ours. */
#include <stdio.h>
#include <string.h>

#include "payments/payments.h"

#include "core/core.h"

typedef struct {
    const char *format;   /* owner then currency, or currency alone */
    bool has_owner;
    uint16_t code;
    uint16_t flags;
} account_kind_t;

static const account_kind_t kinds[PAY_ACCOUNT_KIND_COUNT] = {
    [PAY_ACCOUNT_MERCHANT_AVAILABLE] = {"mer:%s:%s:available", true, 1001,
                                        LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS},
    [PAY_ACCOUNT_MERCHANT_PENDING] = {"mer:%s:%s:pending", true, 1002, 0},
    [PAY_ACCOUNT_MERCHANT_REFUNDS] = {"mer:%s:%s:refunds", true, 1003, 0},
    [PAY_ACCOUNT_MERCHANT_PAYOUTS] = {"mer:%s:%s:payouts", true, 1004, 0},
    [PAY_ACCOUNT_CHANNEL_RECEIVABLE] = {"chn:%s:%s:receivable", true, 2001, 0},
    [PAY_ACCOUNT_FEE_REVENUE] = {"sys:%s:fee_revenue", false, 3001, 0},
    [PAY_ACCOUNT_WITHDRAWALS] = {"sys:%s:withdrawals", false, 3002, 0},
    [PAY_ACCOUNT_FX] = {"sys:%s:fx", false, 3003, 0},
    [PAY_ACCOUNT_WALLET] = {"wal:%s", true, 4001, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS},
};

uint16_t pay_account_code(pay_account_kind kind) {
    PC_ASSERT((unsigned)kind < PAY_ACCOUNT_KIND_COUNT);
    return kinds[kind].code;
}

/* 'format' with each "%s" replaced by the next of 'args' (snprintf's result for these
 * formats, without its machinery: ids are made on every step of every payment);
 * false when it does not fit PC_ID_SIZE. */
static bool id_expand(char out[PC_ID_SIZE], const char *format, const char *const args[2]) {
    size_t n = 0;
    uint32_t next = 0;
    for (const char *f = format; *f != '\0';) {
        const char *piece = f;
        size_t bytes = strcspn(f, "%"); /* a run of the format's own text */
        f += bytes;
        if (bytes == 0 && f[0] == '%' && f[1] == 's') {
            piece = args[next++];
            bytes = strlen(piece);
            f += 2;
        } else if (bytes == 0) { /* a lone '%' is itself */
            bytes = 1;
            f++;
        }
        if (bytes >= PC_ID_SIZE - n) return false;
        memcpy(out + n, piece, bytes);
        n += bytes;
    }
    out[n] = '\0';
    return true;
}

bool pay_account_id(char out[PC_ID_SIZE], pay_account_kind kind, const char *owner, const char *currency) {
    PC_ASSERT((unsigned)kind < PAY_ACCOUNT_KIND_COUNT);
    const account_kind_t *k = &kinds[kind];
    const char *owned[2] = {owner, currency}, *unowned[2] = {currency, NULL};
    if (!id_expand(out, k->format, k->has_owner ? owned : unowned) || !pc_id_valid(out)) {
        out[0] = '\0';
        return false;
    }
    return true;
}

void pay_account_event(ledger_account_t *out, pay_account_kind kind, const char *owner, const char *currency) {
    memset(out, 0, sizeof(*out));
    bool made = pay_account_id(out->id, kind, owner, currency);
    PC_ASSERT(made);
    memcpy(out->currency, currency, 3);
    out->code = kinds[kind].code;
    out->flags = kinds[kind].flags;
}
