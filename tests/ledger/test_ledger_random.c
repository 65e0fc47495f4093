/* Goal: the ledger agrees with a small, obviously correct reference model on every
 * event of thousands of random batches: the result code of each event, the amount and
 * the two balances after each created transfer, the records a batch lists, and every
 * account's balances after each batch; per currency, debits equal credits (posted and
 * pending) after every batch, committed or rolled back.
 * Method: a seeded generator (the seed is printed; PAYCORE_SEED=<n> replays one) makes
 * batches of account and transfer events: valid and invalid, plain, pending, post
 * (whole and partial), void, balancing, linked chains (some left open), duplicates,
 * replays with one field changed, unknown accounts, currency mismatches, amounts near
 * INT64_MAX, timeouts that expire. Each event goes to the ledger and to the model;
 * about one batch in twenty is rolled back instead of committed, and now and then the
 * ledger is rebuilt from its accounts and open pending transfers (the load path).
 * The model keeps plain arrays indexed by the transfer number in the id ("t-<n>"), a
 * per-batch overlay that is merged on commit and dropped on rollback, and copies of
 * the account array as savepoints for linked chains. The ledger reads committed
 * transfers through a ledger_source_t backed by the test's own table, filled from the
 * changes the ledger lists at each commit. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger/ledger.h"
#include "test.h"

static uint64_t time_seed(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 20);
}

/* ---- random numbers (splitmix64: tiny and reproducible) ---- */

static uint64_t rng_state;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint32_t rng_below(uint32_t n) { return (uint32_t)(rng_next() % n); }
static bool rng_percent(uint32_t p) { return rng_below(100) < p; }

/* ---- the reference model ---- */

enum { ACCOUNTS_CAP = 96, ACCOUNT_IDS = 72, EVENTS_MAX = 48 };

typedef struct {
    char id[PC_ID_SIZE];
    char currency[4];
    uint16_t code;
    uint16_t flags;
    const char *metadata;          /* static strings only */
    ledger_balances_t balances;
    uint64_t timestamp_ns;         /* from the ledger's result */
} model_account_t;

typedef enum { ENTRY_NONE = 0, ENTRY_TRANSFER, ENTRY_FAILED } entry_kind;

typedef struct {
    entry_kind kind;
    pc_status failure;
    ledger_transfer_t record;      /* resolved fields; timestamp from the ledger */
    int pending_state;
    uint64_t created_now_ns;       /* the batch time it was created in (expiry) */
} model_entry_t;

/* Committed entries are kept compact (the ids the generator makes are short), so that
 * a million transfers fit in a little memory; the overlay holds full entries. */
enum { SHORT_ID_SIZE = 16 };
typedef struct {
    char id[SHORT_ID_SIZE], debit[SHORT_ID_SIZE], credit[SHORT_ID_SIZE], pending_id[SHORT_ID_SIZE];
    int64_t amount;
    char currency[4];
    uint16_t code, flags;
    uint32_t timeout_s;
    uint64_t timestamp_ns;
    const char *metadata;
} short_record_t;

typedef struct {
    uint8_t kind;                  /* entry_kind */
    uint8_t pending_state;
    uint16_t failure;              /* pc_status */
    uint64_t created_now_ns;
    short_record_t record;
} short_entry_t;

static void short_copy(char out[SHORT_ID_SIZE], const char *id) {
    ASSERT_TRUE(strlen(id) < SHORT_ID_SIZE);
    strcpy(out, id);
}

static short_record_t record_shorten(const ledger_transfer_t *r) {
    short_record_t s;
    memset(&s, 0, sizeof(s));
    short_copy(s.id, r->id);
    short_copy(s.debit, r->debit_account_id);
    short_copy(s.credit, r->credit_account_id);
    short_copy(s.pending_id, r->pending_id);
    s.amount = r->amount;
    memcpy(s.currency, r->currency, 4);
    s.code = r->code;
    s.flags = r->flags;
    s.timeout_s = r->timeout_s;
    s.timestamp_ns = r->timestamp_ns;
    s.metadata = r->metadata_json;
    return s;
}

static ledger_transfer_t record_expand(const short_record_t *s) {
    ledger_transfer_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.id, s->id);
    strcpy(r.debit_account_id, s->debit);
    strcpy(r.credit_account_id, s->credit);
    strcpy(r.pending_id, s->pending_id);
    r.amount = s->amount;
    memcpy(r.currency, s->currency, 4);
    r.code = s->code;
    r.flags = s->flags;
    r.timeout_s = s->timeout_s;
    r.timestamp_ns = s->timestamp_ns;
    r.metadata_json = s->metadata;
    return r;
}

typedef struct {
    uint32_t number;
    model_entry_t entry;
} overlay_t;

typedef struct {
    model_account_t accounts[ACCOUNTS_CAP];
    uint32_t account_count;
    uint32_t overlay_count;
    uint32_t records_count;
    uint32_t failures_count;
} savepoint_t;

static struct {
    /* committed */
    model_account_t committed_accounts[ACCOUNTS_CAP];
    uint32_t committed_account_count;
    short_entry_t *entries;        /* by transfer number */
    uint32_t entry_capacity;
    uint32_t *open;                /* numbers of open pending transfers */
    uint32_t open_count, open_capacity;
    /* the batch being applied */
    model_account_t accounts[ACCOUNTS_CAP];
    uint32_t account_count;
    overlay_t *overlay;
    uint32_t overlay_count, overlay_capacity;
    ledger_transfer_t records[8 * EVENTS_MAX * 4]; /* expected records, apply order */
    uint32_t records_count;
    uint32_t failures[8 * EVENTS_MAX * 4];       /* burned transfer numbers */
    uint32_t failures_count;
    uint64_t now_ns;
} model;

/* The test's own store of committed transfers, read by the ledger (source). */
typedef struct {
    uint8_t kind;                  /* entry_kind */
    uint8_t state;                 /* ledger_pending_state */
    uint16_t failure;              /* pc_status */
    short_record_t record;
} stored_t;
static stored_t *stored;
static uint32_t stored_capacity;

/* The last transfer events generated, by number modulo the ring: replays start here. */
enum { ORIGINALS_RING = 4096 };
static ledger_transfer_t originals[ORIGINALS_RING];
static uint32_t transfer_number_next;
static uint32_t account_number_next;

static const char *const metadata_choices[] = {NULL, "{\"k\":\"1\"}", "{\"k\":\"2\"}"};
static const char *const currency_choices[] = {"USD", "EUR", "JPY"};

static void *grow(void *items, uint32_t *capacity, uint32_t needed, size_t item_bytes) {
    if (needed <= *capacity) return items;
    uint32_t capacity_new = *capacity ? *capacity : 1024;
    while (capacity_new < needed) capacity_new *= 2;
    char *grown = realloc(items, (size_t)capacity_new * item_bytes);
    ASSERT_TRUE(grown != NULL);
    memset(grown + (size_t)*capacity * item_bytes, 0, (size_t)(capacity_new - *capacity) * item_bytes);
    *capacity = capacity_new;
    return grown;
}

static void numbers_reserve(uint32_t number) {
    model.entries = grow(model.entries, &model.entry_capacity, number + 1, sizeof(short_entry_t));
    stored = grow(stored, &stored_capacity, number + 1, sizeof(stored_t));
}

/* "t-<n>" -> n; false for any other id. */
static bool transfer_number(const char *id, uint32_t *out) {
    if (strncmp(id, "t-", 2) != 0 || id[2] < '0' || id[2] > '9') return false;
    char *end;
    unsigned long n = strtoul(id + 2, &end, 10);
    if (*end != '\0' || n >= 100000000ul) return false;
    *out = (uint32_t)n;
    return true;
}

static model_entry_t entry_get_committed(uint32_t number) {
    model_entry_t entry = {.kind = ENTRY_NONE};
    if (number >= model.entry_capacity) return entry;
    const short_entry_t *s = &model.entries[number];
    entry.kind = (entry_kind)s->kind;
    entry.failure = (pc_status)s->failure;
    entry.pending_state = s->pending_state;
    entry.created_now_ns = s->created_now_ns;
    if (entry.kind == ENTRY_TRANSFER) entry.record = record_expand(&s->record);
    return entry;
}

static model_entry_t entry_get(uint32_t number) {
    for (uint32_t i = model.overlay_count; i-- > 0;) {
        if (model.overlay[i].number == number) return model.overlay[i].entry;
    }
    return entry_get_committed(number);
}

static void entry_put(uint32_t number, const model_entry_t *entry) {
    model.overlay = grow(model.overlay, &model.overlay_capacity, model.overlay_count + 1,
                         sizeof(overlay_t));
    model.overlay[model.overlay_count++] = (overlay_t){number, *entry};
}

static model_account_t *account_get(const char *id) {
    for (uint32_t i = 0; i < model.account_count; i++) {
        if (strcmp(model.accounts[i].id, id) == 0) return &model.accounts[i];
    }
    return NULL;
}

static void savepoint_take(savepoint_t *s) {
    memcpy(s->accounts, model.accounts, sizeof(model.accounts));
    s->account_count = model.account_count;
    s->overlay_count = model.overlay_count;
    s->records_count = model.records_count;
    s->failures_count = model.failures_count;
}

static void savepoint_restore(const savepoint_t *s) {
    memcpy(model.accounts, s->accounts, sizeof(model.accounts));
    model.account_count = s->account_count;
    model.overlay_count = s->overlay_count;
    model.records_count = s->records_count;
    model.failures_count = s->failures_count;
}

static bool metadata_same(const char *a, const char *b) {
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static bool id_ok(const char *id) {
    size_t n = strlen(id);
    if (n < 1 || n > PC_ID_BYTES_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

static bool currency_ok(const char *c) {
    return strcmp(c, "USD") == 0 || strcmp(c, "EUR") == 0 || strcmp(c, "JPY") == 0;
}

/* ---- model: accounts ---- */

static pc_status model_account(const ledger_account_t *e) {
    if (!id_ok(e->id)) return PC_ID_INVALID;
    if (e->flags & ~LEDGER_ACCOUNT_FLAGS_CLIENT) return PC_FLAG_UNKNOWN;
    if ((e->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        (e->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS)) {
        return PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    }
    if (!currency_ok(e->currency)) return PC_CURRENCY_INVALID;
    const model_account_t *a = account_get(e->id);
    uint16_t flags = e->flags & (uint16_t)~LEDGER_ACCOUNT_LINKED;
    if (a != NULL) {
        if (a->flags != flags) return PC_EXISTS_WITH_DIFFERENT_FLAGS;
        if (a->code != e->code) return PC_EXISTS_WITH_DIFFERENT_CODE;
        if (strcmp(a->currency, e->currency) != 0) return PC_EXISTS_WITH_DIFFERENT_CURRENCY;
        if (!metadata_same(a->metadata, e->metadata_json)) return PC_EXISTS_WITH_DIFFERENT_METADATA;
        return PC_EXISTS;
    }
    ASSERT_TRUE(model.account_count < ACCOUNTS_CAP);
    model_account_t *n = &model.accounts[model.account_count++];
    memset(n, 0, sizeof(*n));
    strcpy(n->id, e->id);
    strcpy(n->currency, e->currency);
    n->code = e->code;
    n->flags = flags;
    n->metadata = e->metadata_json;
    return PC_OK;
}

/* ---- model: transfers ---- */

static bool is_resolution(uint16_t flags) {
    return (flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
}

static pc_status model_validate(const ledger_transfer_t *e) {
    uint16_t f = e->flags;
    if (f & ~LEDGER_TRANSFER_FLAGS_CLIENT) return PC_FLAG_UNKNOWN;
    int phases = !!(f & LEDGER_TRANSFER_PENDING) + !!(f & LEDGER_TRANSFER_POST_PENDING) +
                 !!(f & LEDGER_TRANSFER_VOID_PENDING);
    bool balancing = f & (LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT);
    if (phases > 1 || (balancing && is_resolution(f))) return PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    if (!id_ok(e->id)) return PC_ID_INVALID;
    if (is_resolution(f)) {
        if (e->pending_id[0] == '\0') return PC_PENDING_ID_REQUIRED;
        if (!id_ok(e->pending_id)) return PC_ID_INVALID;
        if (strcmp(e->pending_id, e->id) == 0) return PC_PENDING_ID_MUST_BE_DIFFERENT;
        if (e->debit_account_id[0] && !id_ok(e->debit_account_id)) return PC_DEBIT_ACCOUNT_ID_INVALID;
        if (e->credit_account_id[0] && !id_ok(e->credit_account_id)) return PC_CREDIT_ACCOUNT_ID_INVALID;
        if (e->timeout_s != 0) return PC_TIMEOUT_RESERVED_FOR_PENDING;
        if ((f & LEDGER_TRANSFER_POST_PENDING) && e->amount < 0) return PC_AMOUNT_INVALID;
        if (e->currency[0] && !currency_ok(e->currency)) return PC_CURRENCY_INVALID;
        return PC_OK;
    }
    if (e->pending_id[0] != '\0') return PC_PENDING_ID_MUST_BE_EMPTY;
    if (!id_ok(e->debit_account_id)) return PC_DEBIT_ACCOUNT_ID_INVALID;
    if (!id_ok(e->credit_account_id)) return PC_CREDIT_ACCOUNT_ID_INVALID;
    if (strcmp(e->debit_account_id, e->credit_account_id) == 0) return PC_ACCOUNTS_MUST_BE_DIFFERENT;
    if (e->timeout_s != 0 && !(f & LEDGER_TRANSFER_PENDING)) return PC_TIMEOUT_RESERVED_FOR_PENDING;
    if (e->timeout_s > LEDGER_TIMEOUT_S_MAX) return PC_OVERFLOWS_TIMEOUT;
    if (e->amount < 1) return PC_AMOUNT_INVALID;
    if (!currency_ok(e->currency)) return PC_CURRENCY_INVALID;
    return PC_OK;
}

/* The same id again: which given field differs, else exists. */
static pc_status model_compare(const ledger_transfer_t *t, const ledger_transfer_t *e) {
    bool resolution = is_resolution(e->flags);
    uint16_t mask = (uint16_t)~LEDGER_TRANSFER_LINKED;
    if ((t->flags & mask) != (e->flags & mask)) return PC_EXISTS_WITH_DIFFERENT_FLAGS;
    if (strcmp(t->pending_id, e->pending_id) != 0) return PC_EXISTS_WITH_DIFFERENT_PENDING_ID;
    if (t->timeout_s != e->timeout_s) return PC_EXISTS_WITH_DIFFERENT_TIMEOUT;
    if ((!resolution || e->debit_account_id[0]) && strcmp(t->debit_account_id, e->debit_account_id)) {
        return PC_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID;
    }
    if ((!resolution || e->credit_account_id[0]) && strcmp(t->credit_account_id, e->credit_account_id)) {
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
    if (!metadata_same(t->metadata_json, e->metadata_json)) return PC_EXISTS_WITH_DIFFERENT_METADATA;
    return PC_EXISTS;
}

/* What the model expects for one event, and what a created one did. */
typedef struct {
    pc_status status;
    int64_t amount;
    ledger_balances_t debit, credit;
    model_entry_t existing;        /* exists: the original */
    uint32_t overlay_index;        /* created: its entry (timestamp filled in later) */
} expect_t;

static void record_created(const ledger_transfer_t *record, int state, expect_t *x,
                           const model_account_t *dr, const model_account_t *cr) {
    uint32_t number;
    ASSERT_TRUE(transfer_number(record->id, &number));
    model_entry_t entry = {.kind = ENTRY_TRANSFER, .record = *record, .pending_state = state,
                           .created_now_ns = model.now_ns};
    x->overlay_index = model.overlay_count;
    entry_put(number, &entry);
    model.records[model.records_count++] = *record;
    x->status = PC_OK;
    x->amount = record->amount;
    x->debit = dr->balances;
    x->credit = cr->balances;
}

/* Balances as 128-bit sums, so the model's own arithmetic cannot overflow. */
static bool fits(__int128 value) { return value >= 0 && value <= INT64_MAX; }

static pc_status movement_limits(const model_account_t *dr, const model_account_t *cr,
                                 int64_t amount, bool pending) {
    const ledger_balances_t *d = &dr->balances, *c = &cr->balances;
    __int128 a = amount;
    if (pending && !fits(d->debits_pending + a)) return PC_OVERFLOWS_DEBITS_PENDING;
    if (pending && !fits(c->credits_pending + a)) return PC_OVERFLOWS_CREDITS_PENDING;
    if (!pending && !fits(d->debits_posted + a)) return PC_OVERFLOWS_DEBITS_POSTED;
    if (!pending && !fits(c->credits_posted + a)) return PC_OVERFLOWS_CREDITS_POSTED;
    if (!fits((__int128)d->debits_pending + d->debits_posted + a)) return PC_OVERFLOWS_DEBITS;
    if (!fits((__int128)c->credits_pending + c->credits_posted + a)) return PC_OVERFLOWS_CREDITS;
    if ((dr->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        (__int128)d->debits_pending + d->debits_posted + a > d->credits_posted) {
        return PC_EXCEEDS_CREDITS;
    }
    if ((cr->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
        (__int128)c->credits_pending + c->credits_posted + a > c->debits_posted) {
        return PC_EXCEEDS_DEBITS;
    }
    return PC_OK;
}

static pc_status model_movement(const ledger_transfer_t *e, expect_t *x) {
    model_account_t *dr = account_get(e->debit_account_id);
    model_account_t *cr = account_get(e->credit_account_id);
    if (dr == NULL || cr == NULL) return PC_ACCOUNT_NOT_FOUND;
    if (strcmp(e->currency, dr->currency) || strcmp(e->currency, cr->currency)) {
        return PC_CURRENCY_MISMATCH;
    }
    if (dr->flags & LEDGER_ACCOUNT_CLOSED) return PC_DEBIT_ACCOUNT_CLOSED;
    if (cr->flags & LEDGER_ACCOUNT_CLOSED) return PC_CREDIT_ACCOUNT_CLOSED;
    __int128 amount = e->amount;
    if (e->flags & LEDGER_TRANSFER_BALANCING_DEBIT) {
        const ledger_balances_t *d = &dr->balances;
        __int128 room = (__int128)d->credits_posted - d->debits_posted - d->debits_pending;
        if (room < amount) amount = room;
        if (amount < 1) return PC_EXCEEDS_CREDITS;
    }
    if (e->flags & LEDGER_TRANSFER_BALANCING_CREDIT) {
        const ledger_balances_t *c = &cr->balances;
        __int128 room = (__int128)c->debits_posted - c->credits_posted - c->credits_pending;
        if (room < amount) amount = room;
        if (amount < 1) return PC_EXCEEDS_DEBITS;
    }
    bool pending = e->flags & LEDGER_TRANSFER_PENDING;
    pc_status status = movement_limits(dr, cr, (int64_t)amount, pending);
    if (status != PC_OK) return status;
    if (pending) {
        dr->balances.debits_pending += (int64_t)amount;
        cr->balances.credits_pending += (int64_t)amount;
    } else {
        dr->balances.debits_posted += (int64_t)amount;
        cr->balances.credits_posted += (int64_t)amount;
    }
    ledger_transfer_t record = *e;
    record.flags &= (uint16_t)~LEDGER_TRANSFER_LINKED;
    record.amount = (int64_t)amount;
    record_created(&record, pending ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE, x, dr, cr);
    return PC_OK;
}

/* Why 'pending' cannot be resolved, or PC_OK when it is open. */
static pc_status pending_openness(const model_entry_t *p) {
    if (p->kind != ENTRY_TRANSFER) return PC_PENDING_TRANSFER_NOT_FOUND;
    if (!(p->record.flags & LEDGER_TRANSFER_PENDING)) return PC_PENDING_TRANSFER_NOT_PENDING;
    switch (p->pending_state) {
    case LEDGER_PENDING_OPEN: return PC_OK;
    case LEDGER_PENDING_POSTED: return PC_PENDING_TRANSFER_ALREADY_POSTED;
    case LEDGER_PENDING_VOIDED: return PC_PENDING_TRANSFER_ALREADY_VOIDED;
    default: return PC_PENDING_TRANSFER_EXPIRED;
    }
}

static bool model_expired(const model_entry_t *p) {
    uint64_t timeout_ns = (uint64_t)p->record.timeout_s * 1000000000ull;
    return p->record.timeout_s != 0 && model.now_ns > p->created_now_ns + timeout_ns;
}

/* Releases an open pending transfer; a post also moves 'posted' (0 for none). */
static void pending_release(uint32_t number, model_entry_t *p, int state, int64_t posted) {
    model_account_t *dr = account_get(p->record.debit_account_id);
    model_account_t *cr = account_get(p->record.credit_account_id);
    dr->balances.debits_pending -= p->record.amount;
    cr->balances.credits_pending -= p->record.amount;
    dr->balances.debits_posted += posted;
    cr->balances.credits_posted += posted;
    p->pending_state = state;
    entry_put(number, p);
}

static pc_status model_resolution(const ledger_transfer_t *e, expect_t *x) {
    uint32_t number;
    model_entry_t p = {.kind = ENTRY_NONE};
    if (transfer_number(e->pending_id, &number)) p = entry_get(number);
    pc_status status = pending_openness(&p);
    if (status != PC_OK) return status;
    const ledger_transfer_t *r = &p.record;
    if (e->debit_account_id[0] && strcmp(e->debit_account_id, r->debit_account_id)) {
        return PC_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID;
    }
    if (e->credit_account_id[0] && strcmp(e->credit_account_id, r->credit_account_id)) {
        return PC_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID;
    }
    if (e->currency[0] && strcmp(e->currency, r->currency)) return PC_PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY;
    if (e->code != 0 && e->code != r->code) return PC_PENDING_TRANSFER_HAS_DIFFERENT_CODE;
    if (model_expired(&p)) return PC_PENDING_TRANSFER_EXPIRED;
    bool post = e->flags & LEDGER_TRANSFER_POST_PENDING;
    int64_t amount = (post && e->amount != 0) ? e->amount : r->amount;
    if (amount > r->amount) return PC_EXCEEDS_PENDING_TRANSFER_AMOUNT;
    model_account_t *dr = account_get(r->debit_account_id), *cr = account_get(r->credit_account_id);
    if (post && !fits((__int128)dr->balances.debits_posted + amount)) return PC_OVERFLOWS_DEBITS_POSTED;
    if (post && !fits((__int128)cr->balances.credits_posted + amount)) return PC_OVERFLOWS_CREDITS_POSTED;
    pending_release(number, &p, post ? LEDGER_PENDING_POSTED : LEDGER_PENDING_VOIDED,
                    post ? amount : 0);
    ledger_transfer_t record = *e;
    record.flags &= (uint16_t)~LEDGER_TRANSFER_LINKED;
    strcpy(record.debit_account_id, r->debit_account_id);
    strcpy(record.credit_account_id, r->credit_account_id);
    strcpy(record.currency, r->currency);
    record.code = e->code ? e->code : r->code;
    record.amount = amount;
    record_created(&record, LEDGER_PENDING_NONE, x, dr, cr);
    return PC_OK;
}

static pc_status model_transfer(const ledger_transfer_t *e, expect_t *x) {
    pc_status status = model_validate(e);
    if (status != PC_OK) return status;
    uint32_t number;
    model_entry_t existing = {.kind = ENTRY_NONE};
    if (transfer_number(e->id, &number)) existing = entry_get(number);
    if (existing.kind == ENTRY_FAILED) return PC_ID_ALREADY_FAILED;
    if (existing.kind == ENTRY_TRANSFER) {
        x->existing = existing;
        return model_compare(&existing.record, e);
    }
    return is_resolution(e->flags) ? model_resolution(e, x) : model_movement(e, x);
}

/* A standalone event failing for a reason that may pass later burns its id. */
static void model_burn(const ledger_transfer_t *e, pc_status status) {
    uint32_t number;
    bool ledger_code = status >= 200 && status < 400;
    if (!ledger_code || !pc_status_transient(status) || status == PC_PENDING_LIMIT_REACHED) return;
    ASSERT_TRUE(transfer_number(e->id, &number));
    model_entry_t entry = {.kind = ENTRY_FAILED, .failure = status};
    entry_put(number, &entry);
    model.failures[model.failures_count++] = number;
}

/* ---- model: linked chains, the same rule for accounts and transfers ---- */

typedef struct {
    pc_status status;
    bool in_chain;
    expect_t transfer;             /* transfers only */
} outcome_t;

static pc_status model_event(bool accounts, const void *events, uint32_t i, outcome_t *out) {
    if (accounts) return model_account(&((const ledger_account_t *)events)[i]);
    return model_transfer(&((const ledger_transfer_t *)events)[i], &out->transfer);
}

static bool event_linked(bool accounts, const void *events, uint32_t i) {
    if (accounts) return ((const ledger_account_t *)events)[i].flags & LEDGER_ACCOUNT_LINKED;
    return ((const ledger_transfer_t *)events)[i].flags & LEDGER_TRANSFER_LINKED;
}

static void model_chain(bool accounts, const void *events, uint32_t first, uint32_t last,
                        outcome_t *out) {
    savepoint_t *savepoint = malloc(sizeof(*savepoint));
    ASSERT_TRUE(savepoint != NULL);
    savepoint_take(savepoint);
    for (uint32_t i = first; i <= last; i++) {
        out[i].in_chain = true;
        out[i].status = model_event(accounts, events, i, &out[i]);
        if (out[i].status == PC_OK) continue;
        savepoint_restore(savepoint);
        for (uint32_t j = first; j <= last; j++) {
            out[j].in_chain = true;
            if (j != i) out[j].status = PC_LINKED_EVENT_FAILED;
        }
        break;
    }
    free(savepoint);
}

static void model_call(bool accounts, const void *events, uint32_t count, outcome_t *out) {
    memset(out, 0, count * sizeof(*out));
    uint32_t first = 0;
    while (first < count) {
        uint32_t last = first;
        while (last < count && event_linked(accounts, events, last)) last++;
        if (last == count) {
            for (uint32_t i = first; i < count; i++) {
                out[i].status = i == count - 1 ? PC_LINKED_EVENT_CHAIN_OPEN : PC_LINKED_EVENT_FAILED;
                out[i].in_chain = true;
            }
            return;
        }
        if (first == last) {
            out[first].status = model_event(accounts, events, first, &out[first]);
            pc_status s = out[first].status;
            if (!accounts && s != PC_OK && s != PC_EXISTS) {
                model_burn(&((const ledger_transfer_t *)events)[first], s);
            }
        } else {
            model_chain(accounts, events, first, last, out);
        }
        first = last + 1;
    }
}

/* ---- model: batches ---- */

static uint32_t expired_expected[4096];
static uint32_t expired_expected_count;

static void model_batch_begin(uint64_t now_ns) {
    model.now_ns = now_ns;
    memcpy(model.accounts, model.committed_accounts, sizeof(model.accounts));
    model.account_count = model.committed_account_count;
    model.overlay_count = 0;
    model.records_count = 0;
    model.failures_count = 0;
    expired_expected_count = 0;
}

static uint32_t model_expire(void) {
    for (uint32_t i = 0; i < model.open_count; i++) {
        uint32_t number = model.open[i];
        model_entry_t p = entry_get(number);
        ASSERT_EQ(p.pending_state, LEDGER_PENDING_OPEN);
        if (!model_expired(&p)) continue;
        pending_release(number, &p, LEDGER_PENDING_EXPIRED, 0);
        ASSERT_TRUE(expired_expected_count < 4096);
        expired_expected[expired_expected_count++] = number;
    }
    return expired_expected_count;
}

static void open_list_update(uint32_t number, bool was_open, bool is_open) {
    if (!was_open && is_open) {
        model.open = grow(model.open, &model.open_capacity, model.open_count + 1, sizeof(uint32_t));
        model.open[model.open_count++] = number;
        return;
    }
    if (!was_open || is_open) return;
    for (uint32_t i = 0; i < model.open_count; i++) {
        if (model.open[i] == number) {
            model.open[i] = model.open[--model.open_count];
            return;
        }
    }
    TEST_FAIL("t-%u was open but not in the open list", number);
}

static bool entry_open(const model_entry_t *e) {
    return e->kind == ENTRY_TRANSFER && (e->record.flags & LEDGER_TRANSFER_PENDING) &&
           e->pending_state == LEDGER_PENDING_OPEN;
}

static void model_commit(void) {
    for (uint32_t i = 0; i < model.overlay_count; i++) {
        const overlay_t *o = &model.overlay[i];
        numbers_reserve(o->number);
        model_entry_t before = entry_get_committed(o->number);
        bool was_open = entry_open(&before);
        short_entry_t *e = &model.entries[o->number];
        memset(e, 0, sizeof(*e));
        e->kind = (uint8_t)o->entry.kind;
        e->failure = (uint16_t)o->entry.failure;
        e->pending_state = (uint8_t)o->entry.pending_state;
        e->created_now_ns = o->entry.created_now_ns;
        if (o->entry.kind == ENTRY_TRANSFER) e->record = record_shorten(&o->entry.record);
        open_list_update(o->number, was_open, entry_open(&o->entry));
    }
    memcpy(model.committed_accounts, model.accounts, sizeof(model.accounts));
    model.committed_account_count = model.account_count;
}

/* ---- the ledger's side: the source, and the test's store ---- */

static pc_status source_find(void *ctx, const char *id, ledger_transfer_record_t *out) {
    (void)ctx;
    uint32_t number;
    if (!transfer_number(id, &number) || number >= stored_capacity) return PC_NOT_FOUND;
    const stored_t *s = &stored[number];
    if (s->kind == ENTRY_NONE) return PC_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->failure = s->kind == ENTRY_FAILED ? (pc_status)s->failure : PC_OK;
    if (s->kind == ENTRY_TRANSFER) out->transfer = record_expand(&s->record);
    out->pending_state = (ledger_pending_state)s->state;
    return PC_OK;
}

static void store_commit(const ledger_changes_t *c) {
    for (uint32_t i = 0; i < c->transfers_count; i++) {
        uint32_t number;
        const ledger_transfer_t *r = &c->transfers[i];
        if (!transfer_number(r->id, &number)) continue; /* the ledger's own expiry ids */
        numbers_reserve(number);
        stored[number] = (stored_t){.kind = ENTRY_TRANSFER, .record = record_shorten(r),
                                    .state = (r->flags & LEDGER_TRANSFER_PENDING)
                                                 ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE};
    }
    for (uint32_t i = 0; i < c->failures_count; i++) {
        uint32_t number;
        ASSERT_TRUE(transfer_number(c->failures[i].id, &number));
        numbers_reserve(number);
        stored[number] = (stored_t){.kind = ENTRY_FAILED, .failure = (uint16_t)c->failures[i].failure};
    }
    for (uint32_t i = 0; i < c->pending_changes_count; i++) {
        uint32_t number;
        ASSERT_TRUE(transfer_number(c->pending_changes[i].pending_id, &number));
        ASSERT_TRUE(number < stored_capacity && stored[number].kind == ENTRY_TRANSFER);
        stored[number].state = (uint8_t)c->pending_changes[i].state;
    }
}

/* ---- the generator ---- */


static const char *pick_metadata(void) { return metadata_choices[rng_below(3)]; }

/* Accounts a-0..a-3 take the amounts near INT64_MAX, so that the others keep room. */
static void pick_account(char out[PC_ID_SIZE], bool whale) {
    uint32_t r = rng_below(100);
    if (r < 94 && model.account_count > 4) {
        uint32_t i = whale ? rng_below(4) : 4 + rng_below(model.account_count - 4);
        strcpy(out, model.accounts[i].id);
    } else if (r < 97) {
        snprintf(out, PC_ID_SIZE, "a-%u", 500 + rng_below(5)); /* never created */
    } else if (r < 99) {
        strcpy(out, "bad id");
    } else {
        out[0] = '\0';
    }
}

/* A credit account in the debit account's currency, most of the time. */
static void pick_partner(char out[PC_ID_SIZE], const char *debit_id, bool whale) {
    const model_account_t *dr = account_get(debit_id);
    for (uint32_t attempt = 0; attempt < 8 && dr != NULL && rng_percent(90); attempt++) {
        pick_account(out, whale);
        const model_account_t *cr = account_get(out);
        if (cr != NULL && cr != dr && strcmp(cr->currency, dr->currency) == 0) return;
    }
    pick_account(out, whale);
}

static int64_t pick_amount(bool *whale) {
    uint32_t r = rng_below(100);
    *whale = false;
    if (r < 75) return 1 + rng_below(1000);
    if (r < 85) return 1 + rng_below(1000000000);
    *whale = r < 97;
    if (r < 91) return INT64_MAX - rng_below(4);
    if (r < 97) return INT64_MAX / 2 + rng_below(3);
    return -(int64_t)rng_below(2);
}

static uint32_t pick_timeout(void) {
    if (rng_percent(60)) return 0;
    return 10 * rng_below(4) + 1 + rng_below(9); /* never a multiple of 10 s: see batch_now */
}

static void gen_movement(ledger_transfer_t *e, uint16_t flags) {
    bool whale;
    e->amount = pick_amount(&whale);
    pick_account(e->debit_account_id, whale);
    pick_partner(e->credit_account_id, e->debit_account_id, whale);
    const model_account_t *dr = account_get(e->debit_account_id);
    strcpy(e->currency, dr != NULL ? dr->currency : "USD");
    if (rng_percent(6)) strcpy(e->currency, currency_choices[rng_below(3)]);
    e->code = (uint16_t)(1 + rng_below(3));
    e->flags = flags;
    if (flags & LEDGER_TRANSFER_PENDING) e->timeout_s = pick_timeout();
}

static void gen_resolution(ledger_transfer_t *e, uint16_t flag) {
    uint32_t number;
    uint32_t r = rng_below(100);
    if (r < 75 && model.open_count > 0) number = model.open[rng_below(model.open_count)];
    else if (r < 92 && transfer_number_next > 1) number = rng_below(transfer_number_next - 1);
    else number = 90000000 + rng_below(10);
    snprintf(e->pending_id, sizeof(e->pending_id), "t-%u", number);
    e->flags = flag;
    model_entry_t p = entry_get(number);
    int64_t pending_amount = p.kind == ENTRY_TRANSFER ? p.record.amount : 100;
    r = rng_below(100);
    if (flag == LEDGER_TRANSFER_POST_PENDING) {
        if (r < 40) e->amount = 0;
        else if (r < 80) e->amount = 1 + (int64_t)(rng_next() % (uint64_t)(pending_amount > 0 ? pending_amount : 1));
        else if (r < 90) e->amount = pending_amount < INT64_MAX ? pending_amount + 1 : 1;
        else e->amount = 1 + rng_below(1000);
    }
    if (p.kind == ENTRY_TRANSFER && rng_percent(20)) { /* name the inherited fields */
        strcpy(e->debit_account_id, p.record.debit_account_id);
        strcpy(e->credit_account_id, p.record.credit_account_id);
        strcpy(e->currency, p.record.currency);
        e->code = p.record.code;
        if (rng_percent(30)) e->code++;
        if (rng_percent(20)) pick_account(e->credit_account_id, false);
    }
}

/* A bad event: one rule broken. */
static void gen_invalid(ledger_transfer_t *e) {
    gen_movement(e, 0);
    switch (rng_below(14)) {
    case 0: strcpy(e->id, "bad id"); break;
    case 1: e->flags |= 1u << 7; break;
    case 2: e->flags |= LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_POST_PENDING; break;
    case 3: e->flags |= LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_VOID_PENDING; break;
    case 4: e->timeout_s = 5; break;
    case 5: strcpy(e->pending_id, "t-1"); break;
    case 6: strcpy(e->credit_account_id, e->debit_account_id); break;
    case 7: e->amount = 0; break;
    case 8: strcpy(e->currency, rng_percent(50) ? "XXX" : "usd"); break;
    case 9: e->flags |= LEDGER_TRANSFER_PENDING; e->timeout_s = LEDGER_TIMEOUT_S_MAX + 1; break;
    case 10: e->flags = LEDGER_TRANSFER_POST_PENDING; break; /* no pending_id */
    case 11: e->flags = LEDGER_TRANSFER_VOID_PENDING; strcpy(e->pending_id, e->id); break;
    case 12: e->flags = LEDGER_TRANSFER_POST_PENDING; strcpy(e->pending_id, "t-1");
             e->timeout_s = 3; break;
    default: e->flags = LEDGER_TRANSFER_POST_PENDING; strcpy(e->pending_id, "t-1");
             e->amount = -5; break;
    }
}

/* The same id again: identical, or with one field changed. */
static bool gen_replay(ledger_transfer_t *e, uint32_t number_new) {
    if (number_new == 0) return false;
    uint32_t back = rng_percent(50) ? 1 + rng_below(number_new < 8 ? number_new : 8) : 0;
    uint32_t number = back ? number_new - back : rng_below(number_new);
    if (number + ORIGINALS_RING <= number_new) number = number_new - 1 - rng_below(ORIGINALS_RING - 1);
    const ledger_transfer_t *original = &originals[number % ORIGINALS_RING];
    char own[PC_ID_SIZE];
    snprintf(own, sizeof(own), "t-%u", number);
    if (strcmp(original->id, own) != 0) return false;
    *e = *original;
    e->flags &= (uint16_t)~LEDGER_TRANSFER_LINKED;
    switch (rng_below(10)) {
    case 0: e->amount = e->amount < INT64_MAX ? e->amount + 1 : 1; break;
    case 1: e->code += 1; break;
    case 2: e->metadata_json = metadata_choices[rng_below(3)]; break;
    case 3: pick_account(e->debit_account_id, false); break;
    case 4: e->flags ^= LEDGER_TRANSFER_PENDING; break;
    case 5: e->timeout_s = e->timeout_s ? 0 : 7; break;
    default: break; /* identical */
    }
    return true;
}

static void gen_transfer(ledger_transfer_t *e) {
    uint32_t number = transfer_number_next++;
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "t-%u", number);
    e->metadata_json = pick_metadata();
    uint32_t r = rng_below(100);
    if (r < 30) gen_movement(e, 0);
    else if (r < 45) gen_movement(e, LEDGER_TRANSFER_PENDING);
    else if (r < 57) gen_resolution(e, LEDGER_TRANSFER_POST_PENDING);
    else if (r < 64) gen_resolution(e, LEDGER_TRANSFER_VOID_PENDING);
    else if (r < 72) gen_movement(e, (uint16_t)((rng_percent(70) ? LEDGER_TRANSFER_BALANCING_DEBIT : 0) |
                                           (rng_percent(50) ? LEDGER_TRANSFER_BALANCING_CREDIT : 0) |
                                           (rng_percent(30) ? LEDGER_TRANSFER_PENDING : 0)));
    else if (r < 86 && gen_replay(e, number)) { /* replays keep the earlier id */ }
    else gen_invalid(e);
    if (rng_percent(12)) e->flags |= LEDGER_TRANSFER_LINKED;
    char own[PC_ID_SIZE];
    snprintf(own, sizeof(own), "t-%u", number);
    if (strcmp(own, e->id) == 0) originals[number % ORIGINALS_RING] = *e;
}

static void gen_account(ledger_account_t *e) {
    memset(e, 0, sizeof(*e));
    uint32_t r = rng_below(100);
    if ((r < 55 && account_number_next < ACCOUNT_IDS) || model.account_count == 0) {
        snprintf(e->id, sizeof(e->id), "a-%u", account_number_next++);
        strcpy(e->currency, currency_choices[rng_below(3)]);
        e->code = (uint16_t)rng_below(4);
        e->metadata_json = pick_metadata();
        if (rng_percent(15)) e->flags |= LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
        else if (rng_percent(15)) e->flags |= LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS;
        if (rng_percent(20)) e->flags |= LEDGER_ACCOUNT_HISTORY;
        if (rng_percent(3)) e->flags |= LEDGER_ACCOUNT_CLOSED;
    } else if (r < 85) {
        const model_account_t *a = &model.accounts[rng_below(model.account_count)];
        strcpy(e->id, a->id);
        strcpy(e->currency, a->currency);
        e->code = a->code;
        e->flags = a->flags;
        e->metadata_json = a->metadata;
        switch (rng_below(8)) {
        case 0: e->code++; break;
        case 1: e->flags ^= LEDGER_ACCOUNT_HISTORY; break;
        case 2: strcpy(e->currency, currency_choices[rng_below(3)]); break;
        case 3: e->metadata_json = pick_metadata(); break;
        default: break;
        }
    } else {
        snprintf(e->id, sizeof(e->id), "a-%u", 600 + rng_below(50));
        strcpy(e->currency, "USD");
        switch (rng_below(4)) {
        case 0: strcpy(e->id, "no spaces"); break;
        case 1: e->flags = 1u << 6; break;
        case 2: e->flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                           LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS; break;
        default: strcpy(e->currency, rng_percent(50) ? "usd" : "ABC"); break;
        }
    }
    if (rng_percent(10)) e->flags |= LEDGER_ACCOUNT_LINKED;
}

/* ---- running a batch and comparing ---- */

static ledger_t *ledger;
static uint64_t seed;
static uint64_t batch_index;
static uint64_t timestamp_last_ns;
static struct {
    uint64_t created, exists, refused, chains_failed, expired, rollbacks, reloads;
} tally;

static uint64_t status_seen[1000];

#define WHERE "seed=%" PRIu64 " batch=%" PRIu64 " event=%u"

static void balances_expect(const ledger_balances_t *got, const ledger_balances_t *want,
                            uint32_t i, const char *side) {
    if (memcmp(got, want, sizeof(*got)) == 0) return;
    TEST_FAIL(WHERE " %s balances: dp=%" PRId64 " dP=%" PRId64 " cp=%" PRId64 " cP=%" PRId64
              ", model dp=%" PRId64 " dP=%" PRId64 " cp=%" PRId64 " cP=%" PRId64,
              seed, batch_index, i, side, got->debits_pending, got->debits_posted,
              got->credits_pending, got->credits_posted, want->debits_pending,
              want->debits_posted, want->credits_pending, want->credits_posted);
}

static void timestamps_patch(uint32_t overlay_from, uint32_t number, uint64_t timestamp_ns) {
    for (uint32_t k = overlay_from; k < model.overlay_count; k++) {
        if (model.overlay[k].number == number) model.overlay[k].entry.record.timestamp_ns = timestamp_ns;
    }
}

static void transfer_result_check(const ledger_transfer_t *e, const ledger_transfer_result_t *r,
                                  const outcome_t *o, uint32_t i) {
    if (r->status != o->status) {
        TEST_FAIL(WHERE " transfer %s flags=%u amount=%" PRId64 " pending_id=%s %s->%s %s:"
                  " ledger %s, model %s", seed, batch_index, i, e->id, e->flags, e->amount,
                  e->pending_id, e->debit_account_id, e->credit_account_id, e->currency,
                  pc_status_code(r->status), pc_status_code(o->status));
    }
    if (r->status == PC_OK) {
        tally.created++;
        if (r->amount != o->transfer.amount) {
            TEST_FAIL(WHERE " amount %" PRId64 ", model %" PRId64, seed, batch_index, i, r->amount,
                      o->transfer.amount);
        }
        balances_expect(&r->debit_balances, &o->transfer.debit, i, "debit");
        balances_expect(&r->credit_balances, &o->transfer.credit, i, "credit");
        ASSERT_TRUE(r->timestamp_ns > timestamp_last_ns);
        timestamp_last_ns = r->timestamp_ns;
        uint32_t number;
        ASSERT_TRUE(transfer_number(e->id, &number));
        timestamps_patch(o->transfer.overlay_index, number, r->timestamp_ns);
    } else if (r->status == PC_EXISTS && !o->in_chain) {
        tally.exists++;
        uint32_t number; /* the original may be from this call: its timestamp is patched */
        ASSERT_TRUE(transfer_number(e->id, &number));
        ASSERT_EQ(r->timestamp_ns, entry_get(number).record.timestamp_ns);
        ASSERT_EQ(r->amount, o->transfer.existing.record.amount);
    } else {
        tally.refused++;
        if (r->status == PC_LINKED_EVENT_FAILED) tally.chains_failed++;
        if ((unsigned)r->status < 1000) status_seen[r->status]++;
    }
}

static void transfers_call(uint32_t count) {
    static ledger_transfer_t events[EVENTS_MAX];
    static ledger_transfer_result_t results[EVENTS_MAX];
    static outcome_t outcomes[EVENTS_MAX];
    for (uint32_t i = 0; i < count; i++) gen_transfer(&events[i]);
    numbers_reserve(transfer_number_next);
    model_call(false, events, count, outcomes);
    ledger_source_t source = {source_find, NULL};
    ledger_create_transfers(ledger, &source, NULL, events, count, results);
    for (uint32_t i = 0; i < count; i++) transfer_result_check(&events[i], &results[i], &outcomes[i], i);
}

static void accounts_call(uint32_t count) {
    static ledger_account_t events[EVENTS_MAX];
    static ledger_account_result_t results[EVENTS_MAX];
    static outcome_t outcomes[EVENTS_MAX];
    for (uint32_t i = 0; i < count; i++) gen_account(&events[i]);
    model_call(true, events, count, outcomes);
    ledger_create_accounts(ledger, NULL, events, count, results);
    for (uint32_t i = 0; i < count; i++) {
        if (results[i].status != outcomes[i].status) {
            TEST_FAIL(WHERE " account %s flags=%u %s: ledger %s, model %s", seed, batch_index, i,
                      events[i].id, events[i].flags, events[i].currency,
                      pc_status_code(results[i].status), pc_status_code(outcomes[i].status));
        }
        model_account_t *a = account_get(events[i].id);
        if (results[i].status == PC_OK) {
            ASSERT_TRUE(results[i].timestamp_ns > timestamp_last_ns);
            timestamp_last_ns = results[i].timestamp_ns;
            a->timestamp_ns = results[i].timestamp_ns;
        } else if (results[i].status == PC_EXISTS && !outcomes[i].in_chain) {
            ASSERT_EQ(results[i].timestamp_ns, a->timestamp_ns);
        }
    }
}

static bool record_equal(const ledger_transfer_t *a, const ledger_transfer_t *b) {
    return strcmp(a->id, b->id) == 0 && strcmp(a->debit_account_id, b->debit_account_id) == 0 &&
           strcmp(a->credit_account_id, b->credit_account_id) == 0 &&
           strcmp(a->pending_id, b->pending_id) == 0 && a->amount == b->amount &&
           strcmp(a->currency, b->currency) == 0 && a->code == b->code && a->flags == b->flags &&
           a->timeout_s == b->timeout_s && metadata_same(a->metadata_json, b->metadata_json);
}

/* Balance history: one row per record and side whose account has the history flag,
 * naming that record; the row's balances are the account's after that record. */
static void history_check(const ledger_changes_t *c) {
    uint32_t expected = 0, h = 0;
    for (uint32_t i = 0; i < c->transfers_count; i++) {
        const ledger_transfer_t *r = &c->transfers[i];
        const model_account_t *sides[2] = {account_get(r->debit_account_id),
                                           account_get(r->credit_account_id)};
        for (uint32_t k = 0; k < 2; k++) {
            if (!(sides[k]->flags & LEDGER_ACCOUNT_HISTORY)) continue;
            expected++;
            ASSERT_TRUE(h < c->history_count);
            const ledger_history_t *row = &c->history[h++];
            ASSERT_STR_EQ(row->transfer_id, r->id);
            ASSERT_EQ(row->transfer_timestamp_ns, r->timestamp_ns);
            ASSERT_STR_EQ(ledger_account_at(ledger, row->account_index)->id, sides[k]->id);
        }
    }
    ASSERT_EQ(c->history_count, expected);
}

/* The batch's listed changes: records in apply order, expiries, burned ids. */
static void changes_check(void) {
    const ledger_changes_t *c = ledger_batch_changes(ledger);
    uint32_t made = 0, expired = 0;
    uint64_t previous_ns = 0;
    for (uint32_t i = 0; i < c->transfers_count; i++) {
        const ledger_transfer_t *r = &c->transfers[i];
        ASSERT_TRUE(r->timestamp_ns > previous_ns);
        previous_ns = r->timestamp_ns;
        if (r->flags & LEDGER_TRANSFER_EXPIRY) {
            uint32_t number;
            ASSERT_TRUE(transfer_number(r->pending_id, &number));
            bool expected = false;
            for (uint32_t k = 0; k < expired_expected_count; k++) expected |= expired_expected[k] == number;
            ASSERT_TRUE(expected);
            expired++;
            continue;
        }
        ASSERT_TRUE(made < model.records_count);
        if (!record_equal(r, &model.records[made])) {
            TEST_FAIL("seed=%" PRIu64 " batch=%" PRIu64 " record %s differs from the model's %s",
                      seed, batch_index, r->id, model.records[made].id);
        }
        made++;
    }
    ASSERT_EQ(made, model.records_count);
    ASSERT_EQ(expired, expired_expected_count);
    history_check(c);
    ASSERT_EQ(c->failures_count, model.failures_count);
    for (uint32_t i = 0; i < c->failures_count; i++) {
        uint32_t number;
        ASSERT_TRUE(transfer_number(c->failures[i].id, &number));
        ASSERT_EQ(number, model.failures[i]);
        ASSERT_STATUS(c->failures[i].failure, entry_get(number).failure);
    }
}

/* Every account equals the committed model; per currency, debits equal credits. */
static void ledger_check(void) {
    ASSERT_EQ(ledger_account_count(ledger), model.committed_account_count);
    ASSERT_EQ(ledger_pending_count(ledger), model.open_count);
    struct { char currency[4]; __int128 dp, dP, cp, cP; } sums[3];
    memset(sums, 0, sizeof(sums));
    for (uint32_t c = 0; c < 3; c++) strcpy(sums[c].currency, currency_choices[c]);
    for (uint32_t i = 0; i < model.committed_account_count; i++) {
        const ledger_account_t *a = ledger_account_at(ledger, i);
        const model_account_t *m = &model.committed_accounts[i];
        ASSERT_STR_EQ(a->id, m->id);
        ASSERT_STR_EQ(a->currency, m->currency);
        ASSERT_EQ(a->flags, m->flags);
        ASSERT_EQ(a->code, m->code);
        ASSERT_EQ(a->timestamp_ns, m->timestamp_ns);
        ASSERT_TRUE(metadata_same(a->metadata_json, m->metadata));
        balances_expect(&a->balances, &m->balances, i, a->id);
        uint32_t c = 0;
        while (strcmp(sums[c].currency, a->currency) != 0) c++;
        sums[c].dp += a->balances.debits_pending;
        sums[c].dP += a->balances.debits_posted;
        sums[c].cp += a->balances.credits_pending;
        sums[c].cP += a->balances.credits_posted;
    }
    for (uint32_t c = 0; c < 3; c++) {
        if (sums[c].dP != sums[c].cP || sums[c].dp != sums[c].cp) {
            TEST_FAIL("seed=%" PRIu64 " batch=%" PRIu64 " currency %s out of balance", seed,
                      batch_index, sums[c].currency);
        }
    }
    char currency[4];
    ASSERT_TRUE(ledger_balanced(ledger, currency));
}

/* Rebuilds the ledger from its accounts, the open pending transfers and the clock, as
 * the store does at start. */
static void ledger_reload(void) {
    ledger_t *fresh;
    ASSERT_STATUS(ledger_open(&fresh), PC_OK);
    for (uint32_t i = 0; i < ledger_account_count(ledger); i++) {
        ASSERT_STATUS(ledger_load_account(fresh, ledger_account_at(ledger, i)), PC_OK);
    }
    for (uint32_t i = 0; i < model.open_count; i++) {
        const stored_t *s = &stored[model.open[i]];
        ASSERT_EQ(s->state, LEDGER_PENDING_OPEN);
        ledger_transfer_t record = record_expand(&s->record);
        ASSERT_STATUS(ledger_load_pending(fresh, &record), PC_OK);
    }
    ledger_load_clock(fresh, ledger_clock_ns(ledger));
    ledger_close(ledger);
    ledger = fresh;
    tally.reloads++;
}

/* Batch time moves in steps of 10 s (or not at all) and timeouts are never a multiple
 * of 10 s, so whether a pending transfer expired is never a matter of nanoseconds. */
static uint64_t batch_now(uint64_t now_ns) {
    uint32_t r = rng_below(100);
    return now_ns + (r < 50 ? 10 : r < 75 ? 0 : 20) * 1000000000ull;
}

static void batch_run(void) {
    ledger_batch_begin(ledger, model.now_ns = batch_now(model.now_ns));
    model_batch_begin(model.now_ns);
    if (rng_percent(70)) {
        uint32_t expected = model_expire();
        ASSERT_EQ(ledger_expire_due(ledger, UINT32_MAX), expected);
        tally.expired += expected;
    }
    uint32_t calls = 1 + rng_below(4);
    for (uint32_t call = 0; call < calls; call++) {
        uint32_t count = 1 + rng_below(rng_percent(80) ? 12 : EVENTS_MAX);
        if (rng_percent(12)) accounts_call(count > 8 ? 8 : count);
        else transfers_call(count);
    }
    changes_check();
    if (rng_percent(5)) {
        ledger_batch_rollback(ledger); /* the store did not commit: nothing happened */
        tally.rollbacks++;
    } else {
        store_commit(ledger_batch_changes(ledger));
        ledger_batch_commit(ledger);
        model_commit();
    }
    ledger_check();
    if (rng_percent(1)) ledger_reload();
}

/* Sixteen plain accounts so that transfers have somewhere to go from the start. */
static void setup_accounts(void) {
    ledger_account_t events[16];
    ledger_account_result_t results[16];
    outcome_t outcomes[16];
    memset(events, 0, sizeof(events));
    for (uint32_t i = 0; i < 16; i++) {
        snprintf(events[i].id, sizeof(events[i].id), "a-%u", account_number_next++);
        strcpy(events[i].currency, currency_choices[i % 3]);
    }
    model.now_ns = 1700000000000000000ull;
    ledger_batch_begin(ledger, model.now_ns);
    model_batch_begin(model.now_ns);
    model_call(true, events, 16, outcomes);
    ledger_create_accounts(ledger, NULL, events, 16, results);
    for (uint32_t i = 0; i < 16; i++) {
        ASSERT_STATUS(results[i].status, PC_OK);
        account_get(events[i].id)->timestamp_ns = results[i].timestamp_ns;
        timestamp_last_ns = results[i].timestamp_ns;
    }
    ledger_batch_commit(ledger);
    model_commit();
    ledger_check();
}

int main(void) {
    const char *seed_env = getenv("PAYCORE_SEED");
    seed = seed_env != NULL ? strtoull(seed_env, NULL, 10) : (uint64_t)time_seed();
    bool sanitized = getenv("PAYCORE_SANITIZED") != NULL;
    uint64_t batches = sanitized ? 10000 : 20000;
    printf("test_ledger_random seed=%" PRIu64 " batches=%" PRIu64 " (PAYCORE_SEED=%" PRIu64
           " replays it)\n", seed, batches, seed);
    fflush(stdout);
    rng_state = seed;
    ASSERT_STATUS(ledger_open(&ledger), PC_OK);
    setup_accounts();
    for (batch_index = 1; batch_index <= batches; batch_index++) batch_run();
    printf("created=%" PRIu64 " exists=%" PRIu64 " refused=%" PRIu64 " chain_failed=%" PRIu64
           " expired=%" PRIu64 " rollbacks=%" PRIu64 " reloads=%" PRIu64 " accounts=%u open=%u\n",
           tally.created, tally.exists, tally.refused, tally.chains_failed, tally.expired,
           tally.rollbacks, tally.reloads, ledger_account_count(ledger), model.open_count);
    if (getenv("PAYCORE_VERBOSE") != NULL) {
        for (int i = 0; i < 1000; i++) {
            if (status_seen[i]) printf("  %s=%" PRIu64 "\n", pc_status_code((pc_status)i), status_seen[i]);
        }
    }
    ASSERT_TRUE(tally.created > batches);      /* the generator must not starve */
    ASSERT_TRUE(tally.expired > 0);
    ASSERT_TRUE(tally.chains_failed > 0);
    ledger_close(ledger);
    free(model.entries);
    free(model.open);
    free(model.overlay);
    free(stored);
    test_passed_count++;
    return test_finish();
}
