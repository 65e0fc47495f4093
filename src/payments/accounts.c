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

/* The last id made of each kind on this thread: a merchant's payments name the same
 * accounts step after step and event after event, and an id is a pure function of its
 * kind, owner and currency, so it is made once, not expanded and checked each time. */
typedef struct {
    char owner[PC_ID_SIZE];      /* "" for a kind without one */
    char currency[8];
    char id[PC_ID_SIZE];         /* "": nothing made yet */
} account_id_made;

static _Thread_local account_id_made last_made[PAY_ACCOUNT_KIND_COUNT];

static bool made_matches(const account_id_made *made, const char *owner, const char *currency) {
    return made->id[0] != '\0' && strcmp(made->owner, owner) == 0 && strcmp(made->currency, currency) == 0;
}

static void made_keep(account_id_made *made, const char *owner, const char *currency, const char *id) {
    size_t owner_bytes = strlen(owner), currency_bytes = strlen(currency);
    if (owner_bytes >= sizeof made->owner || currency_bytes >= sizeof made->currency) return;
    memcpy(made->owner, owner, owner_bytes + 1);
    memcpy(made->currency, currency, currency_bytes + 1);
    memcpy(made->id, id, strlen(id) + 1);
}

bool pay_account_id(char out[PC_ID_SIZE], pay_account_kind kind, const char *owner, const char *currency) {
    PC_ASSERT((unsigned)kind < PAY_ACCOUNT_KIND_COUNT);
    const account_kind_t *k = &kinds[kind];
    account_id_made *made = &last_made[kind];
    const char *owner_key = k->has_owner ? owner : "";
    if (made_matches(made, owner_key, currency)) {
        memcpy(out, made->id, strlen(made->id) + 1);
        return true;
    }
    const char *owned[2] = {owner, currency}, *unowned[2] = {currency, NULL};
    if (!id_expand(out, k->format, k->has_owner ? owned : unowned) || !pc_id_valid(out)) {
        out[0] = '\0';
        return false;
    }
    made_keep(made, owner_key, currency, out);
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
