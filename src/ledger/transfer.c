/* ledger/transfer.c: create_transfers. One event's results, in precedence order:
 *   validation   flag_unknown, id_invalid, flags_are_mutually_exclusive,
 *                pending_id_required / _must_be_empty / _must_be_different, id codes
 *                of the accounts, accounts_must_be_different, timeout_reserved_for_
 *                pending_transfer, overflows_timeout, amount_invalid, currency_invalid
 *   idempotency  id_taken (held beyond the caller's reach), exists_with_different_<field>,
 *                exists, id_already_failed
 *   two-phase    pending_transfer_not_found / _not_pending / _has_different_<field> /
 *                _already_posted / _already_voided / _expired,
 *                exceeds_pending_transfer_amount
 *   accounts     account_not_found, currency_mismatch, debit/credit_account_closed
 *   balances     overflows_<balance>, exceeds_credits, exceeds_debits
 * Beyond the caller's reach (ledger_reach_t) an account or pending transfer is refused
 * at the very place where a missing one is, with the same code: the two cannot be
 * told apart. The ledger decides here; the store persists what ledger_batch_changes
 * lists. */
#include <string.h>

#include "core/core.h"
#include "ledger/ledger_internal.h"
#include "paycore/money.h"

typedef struct {
    const ledger_source_t *source;
    const ledger_reach_t *reach;   /* NULL: every account */
} transfer_ctx;

/* What the id resolved to: nothing, a committed transfer, or a burned id. */
typedef struct {
    bool found;
    ledger_transfer_record_t record;
    uint64_t id_hash;  /* the id's hash in the ledger's maps: computed once (keyed, not free) */
} id_lookup;

static bool is_resolution(uint16_t flags) {
    return (flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
}

/* The expiry of a held pending transfer (ledger_expiry_hold): void_pending with the
 * ledger's own expiry flag, never a client's (its names refuse "expiry"). */
static bool is_expiry(uint16_t flags) {
    return flags == (LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_EXPIRY);
}

static bool expiry_id_valid(const char *id) {
    size_t bytes = strlen(LEDGER_EXPIRY_ID_PREFIX);
    return strncmp(id, LEDGER_EXPIRY_ID_PREFIX, bytes) == 0 && pc_id_valid(id + 1);
}

static pc_status validate_flags(uint16_t flags) {
    if (is_expiry(flags)) return PC_OK;
    if (flags & ~LEDGER_TRANSFER_FLAGS_CLIENT) return PC_FLAG_UNKNOWN;
    int phases = !!(flags & LEDGER_TRANSFER_PENDING) + !!(flags & LEDGER_TRANSFER_POST_PENDING) +
                 !!(flags & LEDGER_TRANSFER_VOID_PENDING);
    if (phases > 1) return PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    bool balancing = flags & (LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT);
    if (balancing && is_resolution(flags)) return PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    return PC_OK;
}

static pc_status validate_resolution(const ledger_transfer_t *e) {
    if (e->pending_id[0] == '\0') return PC_PENDING_ID_REQUIRED;
    if (!pc_id_valid(e->pending_id)) return PC_ID_INVALID;
    if (strcmp(e->pending_id, e->id) == 0) return PC_PENDING_ID_MUST_BE_DIFFERENT;
    if (e->debit_account_id[0] && !pc_id_valid(e->debit_account_id)) return PC_DEBIT_ACCOUNT_ID_INVALID;
    if (e->credit_account_id[0] && !pc_id_valid(e->credit_account_id)) return PC_CREDIT_ACCOUNT_ID_INVALID;
    if (e->timeout_s != 0) return PC_TIMEOUT_RESERVED_FOR_PENDING;
    if ((e->flags & LEDGER_TRANSFER_POST_PENDING) && e->amount < 0) return PC_AMOUNT_INVALID;
    if (e->currency[0] && pc_currency_find(e->currency) == NULL) return PC_CURRENCY_INVALID;
    return PC_OK;
}

static pc_status validate_movement(const ledger_transfer_t *e) {
    if (e->pending_id[0] != '\0') return PC_PENDING_ID_MUST_BE_EMPTY;
    if (!pc_id_valid(e->debit_account_id)) return PC_DEBIT_ACCOUNT_ID_INVALID;
    if (!pc_id_valid(e->credit_account_id)) return PC_CREDIT_ACCOUNT_ID_INVALID;
    if (strcmp(e->debit_account_id, e->credit_account_id) == 0) return PC_ACCOUNTS_MUST_BE_DIFFERENT;
    if (e->timeout_s != 0 && !(e->flags & LEDGER_TRANSFER_PENDING)) return PC_TIMEOUT_RESERVED_FOR_PENDING;
    if (e->timeout_s > LEDGER_TIMEOUT_S_MAX) return PC_OVERFLOWS_TIMEOUT;
    if (e->amount < 1) return PC_AMOUNT_INVALID;
    if (pc_currency_find(e->currency) == NULL) return PC_CURRENCY_INVALID;
    return PC_OK;
}

static pc_status transfer_validate(const ledger_transfer_t *e) {
    pc_status status = validate_flags(e->flags);
    if (status != PC_OK) return status;
    if (is_expiry(e->flags) ? !expiry_id_valid(e->id) : !pc_id_valid(e->id)) return PC_ID_INVALID;
    return is_resolution(e->flags) ? validate_resolution(e) : validate_movement(e);
}

/* Finds an id among this batch's rows, then in the store. */
static pc_status id_find(ledger_t *ledger, const transfer_ctx *ctx, const char *id, id_lookup *out) {
    uint32_t value;
    out->found = false;
    out->id_hash = ledger__id_hash(ledger, id);
    if (idmap_find(&ledger->batch_map, id, out->id_hash, &value)) {
        out->found = true;
        memset(&out->record, 0, sizeof(out->record));
        if (value & BATCH_MAP_FAILURE) {
            out->record.failure = ledger->failures.items[value & ~BATCH_MAP_FAILURE].failure;
        } else {
            out->record.transfer = ledger->transfers.items[value];
            out->record.failure = PC_OK;
        }
        return PC_OK;
    }
    pc_status status = ctx->source->transfer_find(ctx->source->ctx, id, &out->record);
    if (status == PC_NOT_FOUND) return PC_OK;
    if (status != PC_OK) return status;
    out->found = true;
    return PC_OK;
}

static bool metadata_equal(const char *a, const char *b) {
    if (a == NULL || b == NULL) return a == b;
    return strcmp(a, b) == 0;
}

/* Same id: is it the same transfer? Fields a post/void leaves empty are inherited,
 * so only given ones are compared. */
static pc_status transfer_compare(const ledger_transfer_t *t, const ledger_transfer_t *e) {
    bool resolution = is_resolution(e->flags);
    if ((t->flags & (uint16_t)~LEDGER_TRANSFER_LINKED) != (e->flags & (uint16_t)~LEDGER_TRANSFER_LINKED)) {
        return PC_EXISTS_WITH_DIFFERENT_FLAGS;
    }
    if (strcmp(t->pending_id, e->pending_id) != 0) return PC_EXISTS_WITH_DIFFERENT_PENDING_ID;
    if (t->timeout_s != e->timeout_s) return PC_EXISTS_WITH_DIFFERENT_TIMEOUT;
    if ((!resolution || e->debit_account_id[0]) && strcmp(t->debit_account_id, e->debit_account_id) != 0) {
        return PC_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID;
    }
    if ((!resolution || e->credit_account_id[0]) && strcmp(t->credit_account_id, e->credit_account_id) != 0) {
        return PC_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID;
    }
    bool balancing = e->flags & (LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT);
    bool amount_given = !(e->flags & LEDGER_TRANSFER_VOID_PENDING) && e->amount != 0;
    if (amount_given && (balancing ? t->amount > e->amount : t->amount != e->amount)) {
        return PC_EXISTS_WITH_DIFFERENT_AMOUNT;
    }
    if ((!resolution || e->currency[0]) && strcmp(t->currency, e->currency) != 0) {
        return PC_EXISTS_WITH_DIFFERENT_CURRENCY;
    }
    if ((!resolution || e->code != 0) && t->code != e->code) return PC_EXISTS_WITH_DIFFERENT_CODE;
    if (!metadata_equal(t->metadata_json, e->metadata_json)) return PC_EXISTS_WITH_DIFFERENT_METADATA;
    return PC_EXISTS;
}

/* 'id_hash': ledger__id_hash(ledger, e->id), from the id's lookup. */
static ledger_transfer_t *record_push(ledger_t *ledger, const ledger_transfer_t *e, uint64_t id_hash) {
    ledger_transfer_t *record = LEDGER_VEC_PUSH(ledger->transfers);
    *record = *e;
    record->flags = e->flags & (uint16_t)~LEDGER_TRANSFER_LINKED;
    record->timestamp_ns = ledger__timestamp_next(ledger);
    bool inserted = idmap_insert(&ledger->batch_map, id_hash, ledger->transfers.count - 1);
    PC_ASSERT(inserted);
    return record;
}

/* A result showing 'record' as stored: what a post or void inherits included. */
static void result_stored(pc_status status, const ledger_transfer_t *record, ledger_transfer_result_t *result) {
    *result = (ledger_transfer_result_t){
        .status = status,
        .timestamp_ns = record->timestamp_ns,
        .amount = record->amount,
        .code = record->code,
    };
    memcpy(result->debit_account_id, record->debit_account_id, PC_ID_SIZE);
    memcpy(result->credit_account_id, record->credit_account_id, PC_ID_SIZE);
    memcpy(result->currency, record->currency, sizeof result->currency);
}

static void result_created(ledger_t *ledger, const ledger_transfer_t *record, uint32_t debit_index,
                           uint32_t credit_index, ledger_transfer_result_t *result) {
    result_stored(PC_OK, record, result);
    result->debit_balances = ledger->accounts[debit_index].balances;
    result->credit_balances = ledger->accounts[credit_index].balances;
    ledger__history_add(ledger, debit_index, record);
    ledger__history_add(ledger, credit_index, record);
}

/* A transfer's two account ids, hashed, their slots already loading: both hashes
 * come first so that the two lookups' cache misses overlap (SipHash is long enough
 * to serialise them otherwise). */
typedef struct {
    uint64_t debit;
    uint64_t credit;
} account_hashes;

static account_hashes accounts_hash(const ledger_t *ledger, const ledger_transfer_t *t) {
    account_hashes hashes = {ledger__id_hash(ledger, t->debit_account_id), ledger__id_hash(ledger, t->credit_account_id)};
    idmap_prefetch(&ledger->account_map, hashes.debit);
    idmap_prefetch(&ledger->account_map, hashes.credit);
    return hashes;
}

static bool index_reachable(const ledger_t *ledger, const transfer_ctx *ctx, uint32_t index) {
    return ctx->reach == NULL || ctx->reach->reachable(ctx->reach->ctx, index, ledger->accounts[index].id);
}

/* An account the event may use: it exists and is within the caller's reach. */
static bool account_usable(const ledger_t *ledger, const transfer_ctx *ctx, const char *id, uint64_t hash,
                           uint32_t *index) {
    return idmap_find(&ledger->account_map, id, hash, index) && index_reachable(ledger, ctx, *index);
}

/* A transfer the caller may see: it touches an account within its reach. */
static bool transfer_reachable(const ledger_t *ledger, const transfer_ctx *ctx, const ledger_transfer_t *t) {
    uint32_t index;
    if (ctx->reach == NULL) return true;
    account_hashes hashes = accounts_hash(ledger, t);
    return account_usable(ledger, ctx, t->debit_account_id, hashes.debit, &index) ||
           account_usable(ledger, ctx, t->credit_account_id, hashes.credit, &index);
}

static pc_status account_missing(ledger_transfer_result_t *result, ledger_field side) {
    result->field = side;
    return PC_ACCOUNT_NOT_FOUND;
}

/* Balancing transfers move at most what keeps the account within its limit. */
static pc_status balancing_clamp(const ledger_account_t *dr, const ledger_account_t *cr,
                                 uint16_t flags, int64_t *amount) {
    if (flags & LEDGER_TRANSFER_BALANCING_DEBIT) {
        int64_t room = dr->balances.credits_posted -
                       (dr->balances.debits_posted + dr->balances.debits_pending);
        if (room < *amount) *amount = room;
        if (*amount < 1) return PC_EXCEEDS_CREDITS;
    }
    if (flags & LEDGER_TRANSFER_BALANCING_CREDIT) {
        int64_t room = cr->balances.debits_posted -
                       (cr->balances.credits_posted + cr->balances.credits_pending);
        if (room < *amount) *amount = room;
        if (*amount < 1) return PC_EXCEEDS_DEBITS;
    }
    return PC_OK;
}

static pc_status overflow_check(const ledger_balances_t *d, const ledger_balances_t *c,
                                int64_t amount, bool pending) {
    int64_t sum;
    if (pending && !pc_add_i64(d->debits_pending, amount, &sum)) return PC_OVERFLOWS_DEBITS_PENDING;
    if (pending && !pc_add_i64(c->credits_pending, amount, &sum)) return PC_OVERFLOWS_CREDITS_PENDING;
    if (!pending && !pc_add_i64(d->debits_posted, amount, &sum)) return PC_OVERFLOWS_DEBITS_POSTED;
    if (!pending && !pc_add_i64(c->credits_posted, amount, &sum)) return PC_OVERFLOWS_CREDITS_POSTED;
    if (!pc_add_i64(d->debits_pending + d->debits_posted, amount, &sum)) return PC_OVERFLOWS_DEBITS;
    if (!pc_add_i64(c->credits_pending + c->credits_posted, amount, &sum)) return PC_OVERFLOWS_CREDITS;
    return PC_OK;
}

static pc_status limit_check(const ledger_account_t *dr, const ledger_account_t *cr, int64_t amount) {
    const ledger_balances_t *d = &dr->balances, *c = &cr->balances;
    if ((dr->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        d->debits_pending + d->debits_posted + amount > d->credits_posted) {
        return PC_EXCEEDS_CREDITS;
    }
    if ((cr->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
        c->credits_pending + c->credits_posted + amount > c->debits_posted) {
        return PC_EXCEEDS_DEBITS;
    }
    return PC_OK;
}

static pc_status movement_check(const ledger_t *ledger, const ledger_transfer_t *e, uint32_t dr_i,
                                uint32_t cr_i, int64_t *amount) {
    const ledger_account_t *dr = &ledger->accounts[dr_i], *cr = &ledger->accounts[cr_i];
    if (strcmp(e->currency, dr->currency) != 0 || strcmp(e->currency, cr->currency) != 0) {
        return PC_CURRENCY_MISMATCH;
    }
    if (dr->flags & LEDGER_ACCOUNT_CLOSED) return PC_DEBIT_ACCOUNT_CLOSED;
    if (cr->flags & LEDGER_ACCOUNT_CLOSED) return PC_CREDIT_ACCOUNT_CLOSED;
    *amount = e->amount;
    pc_status status = balancing_clamp(dr, cr, e->flags, amount);
    if (status != PC_OK) return status;
    bool pending = e->flags & LEDGER_TRANSFER_PENDING;
    status = overflow_check(&dr->balances, &cr->balances, *amount, pending);
    if (status != PC_OK) return status;
    status = limit_check(dr, cr, *amount);
    if (status != PC_OK) return status;
    if (pending && ledger->pending_count >= LEDGER_PENDING_MAX) return PC_PENDING_LIMIT_REACHED;
    return PC_OK;
}

/* A plain or pending transfer: moves 'amount' into posted or pending balances. */
static pc_status movement_apply(ledger_t *ledger, const transfer_ctx *ctx, const ledger_transfer_t *e,
                                uint64_t id_hash, ledger_transfer_result_t *result) {
    uint32_t dr_i, cr_i;
    account_hashes hashes = accounts_hash(ledger, e);
    if (!account_usable(ledger, ctx, e->debit_account_id, hashes.debit, &dr_i)) {
        return account_missing(result, LEDGER_FIELD_DEBIT_ACCOUNT_ID);
    }
    if (!account_usable(ledger, ctx, e->credit_account_id, hashes.credit, &cr_i)) {
        return account_missing(result, LEDGER_FIELD_CREDIT_ACCOUNT_ID);
    }
    int64_t amount;
    pc_status status = movement_check(ledger, e, dr_i, cr_i, &amount);
    if (status != PC_OK) return status;
    ledger__balances_save(ledger, dr_i);
    ledger__balances_save(ledger, cr_i);
    ledger_balances_t *d = &ledger->accounts[dr_i].balances, *c = &ledger->accounts[cr_i].balances;
    bool pending = e->flags & LEDGER_TRANSFER_PENDING;
    if (pending) {
        d->debits_pending += amount;
        c->credits_pending += amount;
    } else {
        d->debits_posted += amount;
        c->credits_posted += amount;
    }
    ledger_transfer_t *record = record_push(ledger, e, id_hash);
    record->amount = amount;
    ledger__transfer_accounts_push(ledger, dr_i, cr_i);
    if (pending) {
        status = ledger__pending_add(ledger, record, dr_i, cr_i);
        PC_ASSERT(status == PC_OK); /* capacity was checked; memory failure is fatal */
    }
    result_created(ledger, record, dr_i, cr_i, result);
    return PC_OK;
}

/* The state a pending transfer reached in this batch, or LEDGER_PENDING_NONE. */
static ledger_pending_state pending_batch_state(const ledger_t *ledger, const char *pending_id) {
    for (uint32_t i = ledger->pending_changes.count; i-- > 0;) {
        if (strcmp(ledger->pending_changes.items[i].pending_id, pending_id) == 0) {
            return ledger->pending_changes.items[i].state;
        }
    }
    return LEDGER_PENDING_NONE;
}

/* Why a pending_id is not open: no such transfer (or one beyond the caller's reach),
 * not a pending one, or resolved: in this batch, or as the store says. */
static pc_status pending_closed_reason(ledger_t *ledger, const transfer_ctx *ctx, const char *pending_id) {
    id_lookup found;
    pc_status status = id_find(ledger, ctx, pending_id, &found);
    if (status != PC_OK) return status;
    if (!found.found || found.record.failure != PC_OK) return PC_PENDING_TRANSFER_NOT_FOUND;
    if (!transfer_reachable(ledger, ctx, &found.record.transfer)) return PC_PENDING_TRANSFER_NOT_FOUND;
    if (!(found.record.transfer.flags & LEDGER_TRANSFER_PENDING)) return PC_PENDING_TRANSFER_NOT_PENDING;
    ledger_pending_state state = pending_batch_state(ledger, pending_id);
    if (state == LEDGER_PENDING_NONE) state = found.record.pending_state;
    switch (state) {
    case LEDGER_PENDING_POSTED: return PC_PENDING_TRANSFER_ALREADY_POSTED;
    case LEDGER_PENDING_VOIDED: return PC_PENDING_TRANSFER_ALREADY_VOIDED;
    case LEDGER_PENDING_EXPIRED: return PC_PENDING_TRANSFER_EXPIRED;
    default: return PC_INTERNAL; /* open in the store but not in memory: never */
    }
}

static pc_status resolution_check(const ledger_t *ledger, const ledger_transfer_t *e,
                                  const ledger_pending_t *p, int64_t *amount) {
    if (e->debit_account_id[0] && strcmp(e->debit_account_id, ledger->accounts[p->debit_index].id) != 0) {
        return PC_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID;
    }
    if (e->credit_account_id[0] && strcmp(e->credit_account_id, ledger->accounts[p->credit_index].id) != 0) {
        return PC_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID;
    }
    if (e->currency[0] && strcmp(e->currency, p->currency) != 0) return PC_PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY;
    if (e->code != 0 && e->code != p->code) return PC_PENDING_TRANSFER_HAS_DIFFERENT_CODE;
    bool due = p->expires_at_ns != 0 && ledger->now_ns >= p->expires_at_ns;
    if (is_expiry(e->flags)) {
        if (!due) return PC_PENDING_TRANSFER_NOT_EXPIRED;
    } else if (due) {
        return PC_PENDING_TRANSFER_EXPIRED;
    }
    bool post = e->flags & LEDGER_TRANSFER_POST_PENDING;
    *amount = (post && e->amount != 0) ? e->amount : p->amount;
    if (*amount > p->amount) return PC_EXCEEDS_PENDING_TRANSFER_AMOUNT;
    if (post) {
        int64_t sum;
        if (!pc_add_i64(ledger->accounts[p->debit_index].balances.debits_posted, *amount, &sum)) {
            return PC_OVERFLOWS_DEBITS_POSTED;
        }
        if (!pc_add_i64(ledger->accounts[p->credit_index].balances.credits_posted, *amount, &sum)) {
            return PC_OVERFLOWS_CREDITS_POSTED;
        }
    }
    return PC_OK;
}

/* post_pending / void_pending: releases the reservation; a post moves all or part. */
static pc_status resolution_apply(ledger_t *ledger, const transfer_ctx *ctx, const ledger_transfer_t *e,
                                  uint64_t id_hash, ledger_transfer_result_t *result) {
    uint32_t slot;
    if (!ledger__pending_find(ledger, e->pending_id, &slot)) return pending_closed_reason(ledger, ctx, e->pending_id);
    const ledger_pending_t *p = &ledger->pendings[slot];
    if (!index_reachable(ledger, ctx, p->debit_index) && !index_reachable(ledger, ctx, p->credit_index)) {
        return PC_PENDING_TRANSFER_NOT_FOUND; /* exactly as pending_closed_reason says of a missing one */
    }
    int64_t amount;
    pc_status status = resolution_check(ledger, e, p, &amount);
    if (status != PC_OK) return status;
    uint32_t dr_i = p->debit_index, cr_i = p->credit_index;
    bool post = e->flags & LEDGER_TRANSFER_POST_PENDING;
    ledger__balances_save(ledger, dr_i);
    ledger__balances_save(ledger, cr_i);
    ledger_balances_t *d = &ledger->accounts[dr_i].balances, *c = &ledger->accounts[cr_i].balances;
    d->debits_pending -= p->amount;
    c->credits_pending -= p->amount;
    if (post) {
        d->debits_posted += amount;
        c->credits_posted += amount;
    }
    ledger_transfer_t *record = record_push(ledger, e, id_hash);
    memcpy(record->debit_account_id, ledger->accounts[dr_i].id, PC_ID_SIZE);
    memcpy(record->credit_account_id, ledger->accounts[cr_i].id, PC_ID_SIZE);
    memcpy(record->currency, p->currency, 4);
    record->code = e->code ? e->code : p->code;
    record->amount = amount;
    ledger__transfer_accounts_push(ledger, dr_i, cr_i);
    ledger__pending_remove(ledger, slot, post ? LEDGER_PENDING_POSTED
                                         : is_expiry(e->flags) ? LEDGER_PENDING_EXPIRED : LEDGER_PENDING_VOIDED);
    result_created(ledger, record, dr_i, cr_i, result);
    return PC_OK;
}

static pc_status transfer_apply(ledger_t *ledger, const void *events, uint32_t index, void *results,
                                const void *ctx_opaque) {
    const transfer_ctx *ctx = ctx_opaque;
    const ledger_transfer_t *e = &((const ledger_transfer_t *)events)[index];
    ledger_transfer_result_t *result = &((ledger_transfer_result_t *)results)[index];
    result->field = LEDGER_FIELD_NONE;
    pc_status status = transfer_validate(e);
    if (status != PC_OK) return status;
    id_lookup existing;
    status = id_find(ledger, ctx, e->id, &existing);
    if (status != PC_OK) return status;
    if (existing.found) {
        if (existing.record.failure != PC_OK) return PC_ID_ALREADY_FAILED;
        if (!transfer_reachable(ledger, ctx, &existing.record.transfer)) return PC_ID_TAKEN;
        status = transfer_compare(&existing.record.transfer, e);
        if (status == PC_EXISTS) result_stored(PC_EXISTS, &existing.record.transfer, result);
        return status;
    }
    return is_resolution(e->flags) ? resolution_apply(ledger, ctx, e, existing.id_hash, result)
                                   : movement_apply(ledger, ctx, e, existing.id_hash, result);
}

static bool transfer_linked(const void *events, uint32_t index) {
    return (((const ledger_transfer_t *)events)[index].flags & LEDGER_TRANSFER_LINKED) != 0;
}

/* A refusal's result. account_not_found keeps the side transfer_apply named just
 * before refusing; the other codes name their field themselves or none. */
static void transfer_result_set(void *results, uint32_t index, pc_status status) {
    ledger_transfer_result_t *result = &((ledger_transfer_result_t *)results)[index];
    ledger_field field = LEDGER_FIELD_NONE;
    if (status == PC_ACCOUNT_NOT_FOUND) field = result->field;
    if (status == PC_PENDING_TRANSFER_NOT_FOUND) field = LEDGER_FIELD_PENDING_ID;
    *result = (ledger_transfer_result_t){.status = status, .field = field};
}

/* A standalone transfer that failed for a reason that could change later burns its
 * id, so a retry cannot succeed against different state (id_already_failed). */
static void transfer_failed(ledger_t *ledger, const void *events, uint32_t index, pc_status status) {
    const ledger_transfer_t *e = &((const ledger_transfer_t *)events)[index];
    bool ledger_code = status >= 200 && status < 400;
    if (!ledger_code || !pc_status_transient(status) || status == PC_PENDING_LIMIT_REACHED) return;
    ledger_failure_t *failure = LEDGER_VEC_PUSH(ledger->failures);
    memcpy(failure->id, e->id, PC_ID_SIZE);
    failure->failure = status;
    failure->timestamp_ns = ledger__timestamp_next(ledger);
    bool inserted = idmap_insert(&ledger->batch_map, ledger__id_hash(ledger, failure->id),
                                 (ledger->failures.count - 1) | BATCH_MAP_FAILURE);
    PC_ASSERT(inserted);
}

void ledger_create_transfers(ledger_t *ledger, const ledger_source_t *source,
                             const ledger_reach_t *reach, const ledger_transfer_t *events,
                             uint32_t count, ledger_transfer_result_t *results) {
    PC_ASSERT(count >= 1 && count <= WRITER_BATCH_EVENTS_MAX);
    PC_ASSERT(reach == NULL || reach->reachable != NULL);
    transfer_ctx ctx = {source, reach};
    ledger__apply_chains(ledger, events, count, transfer_linked, transfer_apply, transfer_result_set,
                         transfer_failed, results, &ctx);
}
