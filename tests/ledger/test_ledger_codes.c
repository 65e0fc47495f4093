/* Goal: every result code the ledger returns is reachable and is returned exactly
 * when its rule applies; a refused event changes nothing. Method: a fresh ledger per
 * case with funded accounts (limits on some), one event per case; for each refusal
 * compare every balance with before and check double entry. Then linked chains
 * failing at each position, two-phase edges, and the int64 edges. */
#include "ledger/ledger.h"
#include "test.h"

/* What a store would hold: every committed transfer and burned id (linear search:
 * the test commits a few hundred). */
#define COMMITTED_MAX 1024
static ledger_transfer_record_t committed[COMMITTED_MAX];
static char committed_metadata[COMMITTED_MAX][64];
static uint32_t committed_count;

static pc_status source_find(void *ctx, const char *id, ledger_transfer_record_t *out) {
    (void)ctx;
    for (uint32_t i = 0; i < committed_count; i++) {
        const char *committed_id = committed[i].failure == PC_OK ? committed[i].transfer.id : committed[i].transfer.pending_id;
        if (strcmp(committed_id, id) == 0) {
            *out = committed[i];
            return PC_OK;
        }
    }
    return PC_NOT_FOUND;
}
static const ledger_source_t source = {source_find, NULL};

static ledger_t *ledger;

static ledger_transfer_record_t *committed_find(const char *id) {
    for (uint32_t i = 0; i < committed_count; i++) {
        if (committed[i].failure == PC_OK && strcmp(committed[i].transfer.id, id) == 0) return &committed[i];
    }
    return NULL;
}

/* Keeps what the batch committed, as the store would (burned ids keep the id in
 * transfer.pending_id to tell them apart from transfers). */
static void batch_commit(void) {
    const ledger_changes_t *c = ledger_batch_changes(ledger);
    for (uint32_t i = 0; i < c->transfers_count; i++) {
        ASSERT_TRUE(committed_count < COMMITTED_MAX);
        ledger_transfer_record_t *r = &committed[committed_count];
        memset(r, 0, sizeof *r);
        r->transfer = c->transfers[i];
        if (c->transfers[i].metadata_json != NULL) {
            snprintf(committed_metadata[committed_count], 64, "%s", c->transfers[i].metadata_json);
            r->transfer.metadata_json = committed_metadata[committed_count];
        }
        r->failure = PC_OK;
        r->pending_state = (r->transfer.flags & LEDGER_TRANSFER_PENDING) ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE;
        committed_count++;
    }
    for (uint32_t i = 0; i < c->pending_changes_count; i++) {
        ledger_transfer_record_t *r = committed_find(c->pending_changes[i].pending_id);
        ASSERT_TRUE(r != NULL);
        r->pending_state = c->pending_changes[i].state;
    }
    for (uint32_t i = 0; i < c->failures_count; i++) {
        ASSERT_TRUE(committed_count < COMMITTED_MAX);
        ledger_transfer_record_t *r = &committed[committed_count++];
        memset(r, 0, sizeof *r);
        snprintf(r->transfer.pending_id, PC_ID_SIZE, "%s", c->failures[i].id);
        r->failure = c->failures[i].failure;
    }
    ledger_batch_commit(ledger);
}
static uint64_t now_ns = 1000000000000ull;

static ledger_account_t account(const char *id, const char *currency, uint16_t flags) {
    ledger_account_t a = {0};
    snprintf(a.id, sizeof a.id, "%s", id);
    snprintf(a.currency, sizeof a.currency, "%s", currency);
    a.code = 1;
    a.flags = flags;
    return a;
}

static ledger_transfer_t transfer(const char *id, const char *dr, const char *cr, int64_t amount, uint16_t flags) {
    ledger_transfer_t t = {0};
    snprintf(t.id, sizeof t.id, "%s", id);
    snprintf(t.debit_account_id, sizeof t.debit_account_id, "%s", dr);
    snprintf(t.credit_account_id, sizeof t.credit_account_id, "%s", cr);
    memcpy(t.currency, "USD", 4);
    t.amount = amount;
    t.code = 1;
    t.flags = flags;
    return t;
}

static ledger_transfer_t resolve(const char *id, const char *pending_id, int64_t amount, uint16_t flags) {
    ledger_transfer_t t = {0};
    snprintf(t.id, sizeof t.id, "%s", id);
    snprintf(t.pending_id, sizeof t.pending_id, "%s", pending_id);
    t.amount = amount;
    t.flags = flags;
    return t;
}

static pc_status account_one(ledger_account_t a) {
    ledger_account_result_t r;
    ledger_batch_begin(ledger, now_ns++);
    ledger_create_accounts(ledger, NULL, &a, 1, &r);
    batch_commit();
    return r.status;
}

/* Sums every balance: a refused event must leave it (and each account) unchanged. */
static __int128 fingerprint(void) {
    __int128 sum = 0;
    for (uint32_t i = 0; i < ledger_account_count(ledger); i++) {
        const ledger_balances_t *b = &ledger_account_at(ledger, i)->balances;
        sum = sum * 31 + (__int128)b->debits_pending + 3 * (__int128)b->debits_posted +
              5 * (__int128)b->credits_pending + 7 * (__int128)b->credits_posted;
    }
    return sum;
}

static pc_status one(ledger_transfer_t t) {
    ledger_transfer_result_t r;
    __int128 before = fingerprint();
    ledger_batch_begin(ledger, now_ns++);
    ledger_create_transfers(ledger, &source, NULL, &t, 1, &r);
    batch_commit();
    ASSERT_TRUE(ledger_balanced(ledger, NULL));
    if (r.status != PC_OK) ASSERT_TRUE(fingerprint() == before);
    return r.status;
}

/* bank (no limits), alice (debits <= credits, funded 1000), bob (credits <= debits,
 * 500 debited), carol (closed), eur (EUR). */
static void setup(void) {
    if (ledger != NULL) ledger_close(ledger);
    committed_count = 0;
    ASSERT_STATUS(ledger_open(&ledger), PC_OK);
    ASSERT_STATUS(account_one(account("bank", "USD", 0)), PC_OK);
    ASSERT_STATUS(account_one(account("alice", "USD", LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS)), PC_OK);
    ASSERT_STATUS(account_one(account("bob", "USD", LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS)), PC_OK);
    ASSERT_STATUS(account_one(account("carol", "USD", LEDGER_ACCOUNT_CLOSED)), PC_OK);
    ASSERT_STATUS(account_one(account("eur", "EUR", 0)), PC_OK);
    ASSERT_STATUS(one(transfer("fund-alice", "bank", "alice", 1000, 0)), PC_OK);
    ASSERT_STATUS(one(transfer("fund-bob", "bob", "bank", 500, 0)), PC_OK);
}

static void test_account_codes(void) {
    setup();
    ASSERT_STATUS(account_one(account("bad id", "USD", 0)), PC_ID_INVALID);
    ASSERT_STATUS(account_one(account("", "USD", 0)), PC_ID_INVALID);
    ASSERT_STATUS(account_one(account("x", "USD", 1u << 9)), PC_FLAG_UNKNOWN);
    ASSERT_STATUS(account_one(account("x", "USD", LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                                                      LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS)),
                  PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    ASSERT_STATUS(account_one(account("x", "XYZ", 0)), PC_CURRENCY_INVALID);
    ASSERT_STATUS(account_one(account("x", "usd", 0)), PC_CURRENCY_INVALID);
    ASSERT_STATUS(account_one(account("bank", "USD", 0)), PC_EXISTS);
    ASSERT_STATUS(account_one(account("bank", "USD", LEDGER_ACCOUNT_HISTORY)), PC_EXISTS_WITH_DIFFERENT_FLAGS);
    ledger_account_t other_code = account("bank", "USD", 0);
    other_code.code = 2;
    ASSERT_STATUS(account_one(other_code), PC_EXISTS_WITH_DIFFERENT_CODE);
    ASSERT_STATUS(account_one(account("bank", "EUR", 0)), PC_EXISTS_WITH_DIFFERENT_CURRENCY);
    ledger_account_t with_metadata = account("bank", "USD", 0);
    with_metadata.metadata_json = "{\"k\":\"v\"}";
    ASSERT_STATUS(account_one(with_metadata), PC_EXISTS_WITH_DIFFERENT_METADATA);
    ASSERT_EQ(ledger_account_count(ledger), 5);
}

static void test_validation_codes(void) {
    setup();
    ASSERT_STATUS(one(transfer("", "bank", "alice", 1, 0)), PC_ID_INVALID);
    ASSERT_STATUS(one(transfer("t/1", "bank", "alice", 1, 0)), PC_ID_INVALID);
    ASSERT_STATUS(one(transfer("t1", "bank", "alice", 1, 1u << 8)), PC_FLAG_UNKNOWN);
    ASSERT_STATUS(one(transfer("t1", "bank", "alice", 1, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_POST_PENDING)),
                  PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    ledger_transfer_t balancing_post = resolve("t1", "p", 1, LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_BALANCING_DEBIT);
    ASSERT_STATUS(one(balancing_post), PC_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    ASSERT_STATUS(one(resolve("t1", "", 0, LEDGER_TRANSFER_POST_PENDING)), PC_PENDING_ID_REQUIRED);
    ASSERT_STATUS(one(resolve("t1", "t1", 0, LEDGER_TRANSFER_VOID_PENDING)), PC_PENDING_ID_MUST_BE_DIFFERENT);
    ledger_transfer_t with_pending_id = transfer("t1", "bank", "alice", 1, 0);
    snprintf(with_pending_id.pending_id, sizeof with_pending_id.pending_id, "p");
    ASSERT_STATUS(one(with_pending_id), PC_PENDING_ID_MUST_BE_EMPTY);
    ASSERT_STATUS(one(transfer("t1", "b a d", "alice", 1, 0)), PC_DEBIT_ACCOUNT_ID_INVALID);
    ASSERT_STATUS(one(transfer("t1", "bank", "", 1, 0)), PC_CREDIT_ACCOUNT_ID_INVALID);
    ASSERT_STATUS(one(transfer("t1", "bank", "bank", 1, 0)), PC_ACCOUNTS_MUST_BE_DIFFERENT);
    ledger_transfer_t timeout_plain = transfer("t1", "bank", "alice", 1, 0);
    timeout_plain.timeout_s = 5;
    ASSERT_STATUS(one(timeout_plain), PC_TIMEOUT_RESERVED_FOR_PENDING);
    ledger_transfer_t timeout_huge = transfer("t1", "bank", "alice", 1, LEDGER_TRANSFER_PENDING);
    timeout_huge.timeout_s = LEDGER_TIMEOUT_S_MAX + 1;
    ASSERT_STATUS(one(timeout_huge), PC_OVERFLOWS_TIMEOUT);
    ASSERT_STATUS(one(transfer("t1", "bank", "alice", 0, 0)), PC_AMOUNT_INVALID);
    ASSERT_STATUS(one(transfer("t1", "bank", "alice", -5, 0)), PC_AMOUNT_INVALID);
    ledger_transfer_t bad_currency = transfer("t1", "bank", "alice", 1, 0);
    memcpy(bad_currency.currency, "ZZZ", 4);
    ASSERT_STATUS(one(bad_currency), PC_CURRENCY_INVALID);
    /* none of these burned the id: validation failures are not transient */
    ASSERT_STATUS(one(transfer("t1", "bank", "alice", 1, 0)), PC_OK);
}

static void test_account_and_balance_codes(void) {
    setup();
    ASSERT_STATUS(one(transfer("t1", "bank", "nobody", 1, 0)), PC_ACCOUNT_NOT_FOUND);
    ASSERT_STATUS(one(transfer("t1", "bank", "alice", 1, 0)), PC_ID_ALREADY_FAILED); /* transient: burned */
    ASSERT_STATUS(one(transfer("t2", "bank", "eur", 1, 0)), PC_CURRENCY_MISMATCH);
    ASSERT_STATUS(one(transfer("t3", "carol", "bank", 1, 0)), PC_DEBIT_ACCOUNT_CLOSED);
    ASSERT_STATUS(one(transfer("t4", "bank", "carol", 1, 0)), PC_CREDIT_ACCOUNT_CLOSED);
    ASSERT_STATUS(one(transfer("t5", "alice", "bank", 1001, 0)), PC_EXCEEDS_CREDITS);
    ASSERT_STATUS(one(transfer("t6", "bank", "bob", 501, 0)), PC_EXCEEDS_DEBITS);
    ASSERT_STATUS(one(transfer("t7", "alice", "bank", 1000, 0)), PC_OK); /* exactly the limit */
    ASSERT_STATUS(one(transfer("t8", "bank", "bob", 500, 0)), PC_OK);
    /* balancing moves at most what the limit leaves */
    ASSERT_STATUS(one(transfer("t9", "bank", "alice", 300, 0)), PC_OK);
    ledger_transfer_result_t r;
    ledger_transfer_t balancing = transfer("t10", "alice", "bank", 1000, LEDGER_TRANSFER_BALANCING_DEBIT);
    ledger_batch_begin(ledger, now_ns++);
    ledger_create_transfers(ledger, &source, NULL, &balancing, 1, &r);
    batch_commit();
    ASSERT_STATUS(r.status, PC_OK);
    ASSERT_EQ(r.amount, 300);
    ASSERT_STATUS(one(transfer("t11", "alice", "bank", 5, LEDGER_TRANSFER_BALANCING_DEBIT)), PC_EXCEEDS_CREDITS);
}

static void test_overflow_codes(void) {
    setup();
    ASSERT_STATUS(one(transfer("big1", "bank", "eur", INT64_MAX, 0)), PC_CURRENCY_MISMATCH);
    ASSERT_STATUS(account_one(account("x", "USD", 0)), PC_OK);
    ASSERT_STATUS(account_one(account("y", "USD", 0)), PC_OK);
    ASSERT_STATUS(one(transfer("big2", "x", "y", INT64_MAX, 0)), PC_OK);
    ASSERT_STATUS(one(transfer("big3", "x", "y", 1, 0)), PC_OVERFLOWS_DEBITS_POSTED);
    ASSERT_STATUS(one(transfer("big4", "y", "x", 1, LEDGER_TRANSFER_PENDING)), PC_OK);
    ASSERT_STATUS(account_one(account("z", "USD", 0)), PC_OK);
    ASSERT_STATUS(one(transfer("big5", "z", "x", INT64_MAX, 0)), PC_OVERFLOWS_CREDITS);
    ASSERT_STATUS(one(transfer("big6", "x", "bank", 1, LEDGER_TRANSFER_PENDING)), PC_OVERFLOWS_DEBITS);
    ASSERT_STATUS(account_one(account("p", "USD", 0)), PC_OK);
    ASSERT_STATUS(account_one(account("q", "USD", 0)), PC_OK);
    ASSERT_STATUS(one(transfer("big7", "p", "q", INT64_MAX, LEDGER_TRANSFER_PENDING)), PC_OK);
    ASSERT_STATUS(one(transfer("big8", "p", "bank", 1, LEDGER_TRANSFER_PENDING)), PC_OVERFLOWS_DEBITS_PENDING);
    ASSERT_STATUS(one(transfer("big9", "bank", "q", 1, LEDGER_TRANSFER_PENDING)), PC_OVERFLOWS_CREDITS_PENDING);
    ASSERT_STATUS(one(transfer("big10", "bank", "q", 1, 0)), PC_OVERFLOWS_CREDITS);
    ASSERT_STATUS(account_one(account("r", "USD", 0)), PC_OK);
    ASSERT_STATUS(account_one(account("s", "USD", 0)), PC_OK);
    ASSERT_STATUS(account_one(account("w", "USD", 0)), PC_OK);
    ASSERT_STATUS(one(transfer("big11", "w", "s", INT64_MAX, 0)), PC_OK);
    ASSERT_STATUS(one(transfer("big12", "r", "s", 1, 0)), PC_OVERFLOWS_CREDITS_POSTED);
}

static void test_exists_codes(void) {
    setup();
    ledger_transfer_t base = transfer("e1", "bank", "alice", 10, LEDGER_TRANSFER_PENDING);
    base.timeout_s = 60;
    base.metadata_json = "{\"o\":\"1\"}";
    ASSERT_STATUS(one(base), PC_OK);
    ASSERT_STATUS(one(base), PC_EXISTS);
    ledger_transfer_t t = base;
    t.flags = 0;
    t.timeout_s = 0;
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_FLAGS);
    t = base;
    t.timeout_s = 61;
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_TIMEOUT);
    t = base;
    snprintf(t.debit_account_id, sizeof t.debit_account_id, "bob");
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
    t = base;
    snprintf(t.credit_account_id, sizeof t.credit_account_id, "bob");
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
    t = base;
    t.amount = 11;
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_AMOUNT);
    t = base;
    memcpy(t.currency, "EUR", 4);
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_CURRENCY);
    t = base;
    t.code = 9;
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_CODE);
    t = base;
    t.metadata_json = NULL;
    ASSERT_STATUS(one(t), PC_EXISTS_WITH_DIFFERENT_METADATA);
    ledger_transfer_t post = resolve("e2", "e1", 4, LEDGER_TRANSFER_POST_PENDING);
    ASSERT_STATUS(one(post), PC_OK);
    snprintf(post.pending_id, sizeof post.pending_id, "fund-alice");
    ASSERT_STATUS(one(post), PC_EXISTS_WITH_DIFFERENT_PENDING_ID);
}

static void test_two_phase_codes(void) {
    setup();
    ASSERT_STATUS(one(resolve("r1", "missing", 0, LEDGER_TRANSFER_POST_PENDING)), PC_PENDING_TRANSFER_NOT_FOUND);
    ASSERT_STATUS(one(resolve("r2", "fund-alice", 0, LEDGER_TRANSFER_POST_PENDING)), PC_PENDING_TRANSFER_NOT_PENDING);
    ASSERT_STATUS(one(transfer("p", "alice", "bank", 100, LEDGER_TRANSFER_PENDING)), PC_OK);
    ledger_transfer_t wrong = resolve("r3", "p", 0, LEDGER_TRANSFER_POST_PENDING);
    snprintf(wrong.debit_account_id, sizeof wrong.debit_account_id, "bob");
    ASSERT_STATUS(one(wrong), PC_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID);
    wrong = resolve("r4", "p", 0, LEDGER_TRANSFER_POST_PENDING);
    snprintf(wrong.credit_account_id, sizeof wrong.credit_account_id, "bob");
    ASSERT_STATUS(one(wrong), PC_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID);
    wrong = resolve("r5", "p", 0, LEDGER_TRANSFER_POST_PENDING);
    memcpy(wrong.currency, "EUR", 4);
    ASSERT_STATUS(one(wrong), PC_PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY);
    wrong = resolve("r6", "p", 0, LEDGER_TRANSFER_POST_PENDING);
    wrong.code = 7;
    ASSERT_STATUS(one(wrong), PC_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    ASSERT_STATUS(one(resolve("r7", "p", 101, LEDGER_TRANSFER_POST_PENDING)), PC_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    ASSERT_STATUS(one(resolve("r8", "p", 60, LEDGER_TRANSFER_POST_PENDING)), PC_OK); /* partial */
    ASSERT_EQ(ledger_account_find(ledger, "alice")->balances.debits_posted, 60);
    ASSERT_EQ(ledger_account_find(ledger, "alice")->balances.debits_pending, 0); /* the rest released */
    ASSERT_STATUS(one(resolve("r9", "p", 0, LEDGER_TRANSFER_POST_PENDING)), PC_PENDING_TRANSFER_ALREADY_POSTED);
    ASSERT_STATUS(one(resolve("r10", "p", 0, LEDGER_TRANSFER_VOID_PENDING)), PC_PENDING_TRANSFER_ALREADY_POSTED);
    ASSERT_STATUS(one(transfer("v", "alice", "bank", 10, LEDGER_TRANSFER_PENDING)), PC_OK);
    ASSERT_STATUS(one(resolve("r11", "v", 999, LEDGER_TRANSFER_VOID_PENDING)), PC_OK); /* amount ignored */
    ASSERT_STATUS(one(resolve("r12", "v", 0, LEDGER_TRANSFER_POST_PENDING)), PC_PENDING_TRANSFER_ALREADY_VOIDED);
    ledger_transfer_t timed = transfer("x", "alice", "bank", 10, LEDGER_TRANSFER_PENDING);
    timed.timeout_s = 1;
    ASSERT_STATUS(one(timed), PC_OK);
    now_ns += 2000000000ull; /* past the timeout, before the timer ran */
    ASSERT_STATUS(one(resolve("r13", "x", 0, LEDGER_TRANSFER_POST_PENDING)), PC_PENDING_TRANSFER_EXPIRED);
    ledger_batch_begin(ledger, now_ns++);
    ASSERT_EQ(ledger_expire_due(ledger, 10), 1);
    batch_commit();
    ASSERT_STATUS(one(resolve("r14", "x", 0, LEDGER_TRANSFER_VOID_PENDING)), PC_PENDING_TRANSFER_EXPIRED);
    ASSERT_EQ(ledger_account_find(ledger, "alice")->balances.debits_pending, 0);
}

static char held_ids[4][PC_ID_SIZE];
static uint32_t held_count;
static void held_note(void *ctx, const char *pending_id) {
    (void)ctx;
    if (held_count < 4) snprintf(held_ids[held_count++], PC_ID_SIZE, "%s", pending_id);
}

/* ledger_expiry_hold: a held pending transfer is not expired by the timer (its holder
 * is told), only by an expiry event, which is refused before the deadline and ends it
 * as expired; a client's flags cannot carry the expiry flag otherwise. */
static void test_expiry_hold(void) {
    setup();
    held_count = 0;
    ledger_expiry_hold(ledger, "bo", held_note, NULL); /* "bob": held; "alice" -> "bank": not */
    ledger_transfer_t held = transfer("h", "bank", "bob", 10, LEDGER_TRANSFER_PENDING);
    held.timeout_s = 1;
    ledger_transfer_t free_ = transfer("f", "alice", "bank", 10, LEDGER_TRANSFER_PENDING);
    free_.timeout_s = 1;
    ASSERT_STATUS(one(held), PC_OK);
    ASSERT_STATUS(one(free_), PC_OK);
    ledger_transfer_t expiry = resolve("~expiry-g1", "h", 0, LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_EXPIRY);
    ASSERT_STATUS(one(expiry), PC_PENDING_TRANSFER_NOT_EXPIRED); /* before its deadline */
    now_ns += 2000000000ull;
    ledger_batch_begin(ledger, now_ns++);
    ASSERT_EQ(ledger_expire_due(ledger, 10), 1); /* "f" only */
    batch_commit();
    ASSERT_EQ(held_count, 1);
    ASSERT_STR_EQ(held_ids[0], "h");
    ASSERT_EQ(ledger_account_find(ledger, "bob")->balances.credits_pending, 10); /* still held */
    ledger_transfer_t client = resolve("~expiry-g2", "h", 0, LEDGER_TRANSFER_VOID_PENDING);
    ASSERT_STATUS(one(client), PC_ID_INVALID); /* '~' ids are the expiry's alone */
    client = resolve("x1", "h", 0, LEDGER_TRANSFER_EXPIRY);
    ASSERT_STATUS(one(client), PC_FLAG_UNKNOWN);
    client = resolve("x2", "h", 0, LEDGER_TRANSFER_VOID_PENDING);
    ASSERT_STATUS(one(client), PC_PENDING_TRANSFER_EXPIRED); /* a client's void after the deadline */
    expiry = resolve("~expiry-g3", "h", 0, LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_EXPIRY);
    ASSERT_STATUS(one(expiry), PC_OK);
    ASSERT_EQ(ledger_account_find(ledger, "bob")->balances.credits_pending, 0);
    ASSERT_STATUS(one(resolve("x3", "h", 0, LEDGER_TRANSFER_POST_PENDING)), PC_PENDING_TRANSFER_EXPIRED);
    expiry = resolve("~expiry-g4", "h", 0, LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_EXPIRY);
    ASSERT_STATUS(one(expiry), PC_PENDING_TRANSFER_EXPIRED); /* once */
    ledger_expiry_hold(ledger, NULL, NULL, NULL);
}

/* A chain of four where event 'failing' breaks: the others get linked_event_failed,
 * the failing one its own code, nothing is applied; events outside are unaffected. */
static void chain_fails_at(uint32_t failing) {
    setup();
    ledger_transfer_t events[6];
    events[0] = transfer("before", "bank", "alice", 1, 0);
    for (uint32_t i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%u", i);
        events[1 + i] = transfer(id, "bank", "alice", 1, i < 3 ? LEDGER_TRANSFER_LINKED : 0);
        if (i == failing) snprintf(events[1 + i].credit_account_id, PC_ID_SIZE, "nobody");
    }
    events[5] = transfer("after", "bank", "alice", 1, 0);
    ledger_transfer_result_t r[6];
    ledger_batch_begin(ledger, now_ns++);
    ledger_create_transfers(ledger, &source, NULL, events, 6, r);
    batch_commit();
    ASSERT_STATUS(r[0].status, PC_OK);
    ASSERT_STATUS(r[5].status, PC_OK);
    for (uint32_t i = 0; i < 4; i++) {
        ASSERT_STATUS(r[1 + i].status, i == failing ? PC_ACCOUNT_NOT_FOUND : PC_LINKED_EVENT_FAILED);
    }
    ASSERT_EQ(ledger_account_find(ledger, "alice")->balances.credits_posted, 1002);
    ASSERT_TRUE(ledger_balanced(ledger, NULL));
}

static void test_linked_chains(void) {
    for (uint32_t failing = 0; failing < 4; failing++) chain_fails_at(failing);
    setup();
    ledger_transfer_t open_chain[2] = {transfer("o1", "bank", "alice", 1, LEDGER_TRANSFER_LINKED),
                                       transfer("o2", "bank", "alice", 1, LEDGER_TRANSFER_LINKED)};
    ledger_transfer_result_t r[2];
    ledger_batch_begin(ledger, now_ns++);
    ledger_create_transfers(ledger, &source, NULL, open_chain, 2, r);
    batch_commit();
    ASSERT_STATUS(r[0].status, PC_LINKED_EVENT_FAILED);
    ASSERT_STATUS(r[1].status, PC_LINKED_EVENT_CHAIN_OPEN);
    ASSERT_EQ(ledger_account_find(ledger, "alice")->balances.credits_posted, 1000);
    /* a chain that posts a pending created earlier in the same chain, then fails:
     * the pending comes back and nothing moved */
    ledger_transfer_t mixed[3] = {transfer("m1", "alice", "bank", 50, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_LINKED),
                                  resolve("m2", "m1", 0, LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_LINKED),
                                  transfer("m3", "alice", "bank", 5000, 0)};
    ledger_transfer_result_t mr[3];
    ledger_batch_begin(ledger, now_ns++);
    ledger_create_transfers(ledger, &source, NULL, mixed, 3, mr);
    batch_commit();
    ASSERT_STATUS(mr[0].status, PC_LINKED_EVENT_FAILED);
    ASSERT_STATUS(mr[1].status, PC_LINKED_EVENT_FAILED);
    ASSERT_STATUS(mr[2].status, PC_EXCEEDS_CREDITS);
    ASSERT_EQ(ledger_pending_count(ledger), 0);
    ASSERT_EQ(ledger_account_find(ledger, "alice")->balances.debits_posted, 0);
    /* ids of a failed chain are not burned */
    ASSERT_STATUS(one(transfer("m1", "alice", "bank", 50, 0)), PC_OK);
}

int main(void) {
    TEST_RUN(test_account_codes);
    TEST_RUN(test_validation_codes);
    TEST_RUN(test_account_and_balance_codes);
    TEST_RUN(test_overflow_codes);
    TEST_RUN(test_exists_codes);
    TEST_RUN(test_two_phase_codes);
    TEST_RUN(test_linked_chains);
    TEST_RUN(test_expiry_hold);
    ledger_close(ledger);
    return test_finish();
}
