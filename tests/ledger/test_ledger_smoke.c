/* Goal: the main ledger flows work end to end in memory: accounts, a posted
 * transfer, a limit refusal that burns the id, pending -> partial post, void, linked
 * chain undo, exists, rollback, expiry. Method: a source with no committed transfers;
 * after every step compare balances and check double entry. */
#include "ledger/ledger.h"
#include "test.h"

static pc_status source_none(void *ctx, const char *id, ledger_transfer_record_t *out) {
    (void)ctx; (void)id; (void)out;
    return PC_NOT_FOUND;
}
static const ledger_source_t source = {source_none, NULL};

static ledger_account_t account(const char *id, uint16_t flags) {
    ledger_account_t a = {0};
    snprintf(a.id, sizeof a.id, "%s", id);
    memcpy(a.currency, "USD", 4);
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

static pc_status one(ledger_t *l, ledger_transfer_t t, ledger_transfer_result_t *r) {
    ledger_create_transfers(l, &source, NULL, &t, 1, r);
    ASSERT_TRUE(ledger_balanced(l, NULL));
    return r->status;
}

static void test_flows(void) {
    ledger_t *l;
    ASSERT_STATUS(ledger_open(&l), PC_OK);
    ledger_batch_begin(l, 1000);
    ledger_account_t accounts[3] = {account("bank", 0), account("alice", LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS), account("bob", 0)};
    ledger_account_result_t ar[3];
    ledger_create_accounts(l, NULL, accounts, 3, ar);
    for (int i = 0; i < 3; i++) ASSERT_STATUS(ar[i].status, PC_OK);
    ASSERT_TRUE(ar[1].timestamp_ns > ar[0].timestamp_ns);
    ledger_transfer_result_t r;
    ASSERT_STATUS(one(l, transfer("t1", "bank", "alice", 100, 0), &r), PC_OK);
    ASSERT_EQ(r.credit_balances.credits_posted, 100);
    ASSERT_STATUS(one(l, transfer("t2", "alice", "bob", 101, 0), &r), PC_EXCEEDS_CREDITS);
    ASSERT_STATUS(one(l, transfer("t2", "alice", "bob", 1, 0), &r), PC_ID_ALREADY_FAILED);
    ASSERT_STATUS(one(l, transfer("t1", "bank", "alice", 100, 0), &r), PC_EXISTS);
    ASSERT_STATUS(one(l, transfer("t1", "bank", "alice", 99, 0), &r), PC_EXISTS_WITH_DIFFERENT_AMOUNT);
    ASSERT_STATUS(one(l, transfer("p1", "alice", "bob", 60, LEDGER_TRANSFER_PENDING), &r), PC_OK);
    ASSERT_EQ(r.debit_balances.debits_pending, 60);
    ASSERT_STATUS(one(l, transfer("t3", "alice", "bob", 41, 0), &r), PC_EXCEEDS_CREDITS);
    ledger_transfer_t post = transfer("p1-post", "", "", 50, LEDGER_TRANSFER_POST_PENDING);
    post.currency[0] = '\0';
    snprintf(post.pending_id, sizeof post.pending_id, "p1");
    ASSERT_STATUS(one(l, post, &r), PC_OK);
    ASSERT_EQ(r.debit_balances.debits_pending, 0);
    ASSERT_EQ(r.debit_balances.debits_posted, 50);
    snprintf(post.id, sizeof post.id, "p1-post2");
    ASSERT_STATUS(one(l, post, &r), PC_PENDING_TRANSFER_ALREADY_POSTED);
    /* linked chain: the second fails, the first is undone */
    ledger_transfer_t chain[2] = {transfer("c1", "bank", "bob", 5, LEDGER_TRANSFER_LINKED),
                                  transfer("c2", "alice", "bob", 1000, 0)};
    ledger_transfer_result_t cr[2];
    ledger_create_transfers(l, &source, NULL, chain, 2, cr);
    ASSERT_STATUS(cr[0].status, PC_LINKED_EVENT_FAILED);
    ASSERT_STATUS(cr[1].status, PC_EXCEEDS_CREDITS);
    ASSERT_EQ(ledger_account_find(l, "bob")->balances.credits_posted, 50);
    ASSERT_TRUE(ledger_balanced(l, NULL));
    ledger_batch_commit(l);
    /* a rolled-back batch leaves nothing behind */
    ledger_batch_begin(l, 2000);
    ASSERT_STATUS(one(l, transfer("t9", "bank", "bob", 7, 0), &r), PC_OK);
    ledger_batch_rollback(l);
    ASSERT_EQ(ledger_account_find(l, "bob")->balances.credits_posted, 50);
    ledger_batch_begin(l, 3000);
    ASSERT_STATUS(one(l, transfer("t9", "bank", "bob", 7, 0), &r), PC_OK);
    ASSERT_STATUS(one(l, transfer("pv", "bank", "bob", 9, LEDGER_TRANSFER_PENDING), &r), PC_OK);
    ledger_batch_commit(l);
    ASSERT_EQ(ledger_pending_count(l), 1);
    ledger_close(l);
}

static void test_expiry(void) {
    ledger_t *l;
    ASSERT_STATUS(ledger_open(&l), PC_OK);
    ledger_batch_begin(l, 1000000000ull);
    ledger_account_t accounts[2] = {account("a", 0), account("b", 0)};
    ledger_account_result_t ar[2];
    ledger_create_accounts(l, NULL, accounts, 2, ar);
    ledger_transfer_result_t r;
    ledger_transfer_t p = transfer("p", "a", "b", 10, LEDGER_TRANSFER_PENDING);
    p.timeout_s = 1;
    ASSERT_STATUS(one(l, p, &r), PC_OK);
    ledger_batch_commit(l);
    ASSERT_TRUE(ledger_expiry_next_ns(l) > 1000000000ull);
    ledger_batch_begin(l, 3000000000ull);
    ASSERT_EQ(ledger_expire_due(l, 100), 1);
    ASSERT_EQ(ledger_account_find(l, "a")->balances.debits_pending, 0);
    const ledger_changes_t *c = ledger_batch_changes(l);
    ASSERT_EQ(c->transfers_count, 1);
    ASSERT_TRUE(c->transfers[0].flags & LEDGER_TRANSFER_EXPIRY);
    ledger_batch_rollback(l); /* a failed commit brings it back, and it expires again */
    ASSERT_EQ(ledger_account_find(l, "a")->balances.debits_pending, 10);
    ledger_batch_begin(l, 3000000001ull);
    ASSERT_EQ(ledger_expire_due(l, 100), 1);
    ledger_batch_commit(l);
    ASSERT_EQ(ledger_pending_count(l), 0);
    ledger_close(l);
}

int main(void) {
    TEST_RUN(test_flows);
    TEST_RUN(test_expiry);
    return test_finish();
}
