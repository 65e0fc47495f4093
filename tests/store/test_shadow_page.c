/* Goal: a page of balances read from the committed-balance shadow is as of one batch
 * boundary: a transfer's two legs are in it together or not at all, so a page of all
 * accounts always sums to the same total (a list of accounts once showed one leg
 * without the other: 40 of 20,000 reads of the bank test on SQLite).
 * Method: a writer thread publishes batches of transfers between ACCOUNTS accounts
 * exactly as a backend does after COMMIT (store_shadow_batch_begin, one publish per
 * touched account, store_shadow_batch_end); reader threads read every account with
 * store_shadow_read_page and check the total of each page. With publishes outside
 * the batch lock the readers see torn pages within a few thousand reads. */
#include <pthread.h>
#include <stdatomic.h>

#include "ledger/ledger.h"
#include "store/store_shadow.h"
#include "test.h"

#define ACCOUNTS 8
#define BATCHES 200000
#define READERS 2
#define FUNDS 1000

static store_shadow_t *shadow;
static atomic_bool writing = true;
static atomic_long torn_pages, pages_read;

static void *writer_main(void *arg) {
    (void)arg;
    int64_t credits[ACCOUNTS], debits[ACCOUNTS] = {0};
    for (int i = 0; i < ACCOUNTS; i++) credits[i] = FUNDS;
    uint64_t random_state = 88172645463325252ull;
    for (uint32_t batch = 0; batch < BATCHES; batch++) {
        random_state ^= random_state << 13, random_state ^= random_state >> 7, random_state ^= random_state << 17;
        uint32_t from = (uint32_t)(random_state % ACCOUNTS), to = (uint32_t)((random_state >> 8) % ACCOUNTS);
        if (from == to) to = (to + 1) % ACCOUNTS;
        int64_t amount = (int64_t)(random_state >> 16) % 50 + 1;
        debits[from] += amount;
        credits[to] += amount;
        store_shadow_batch_begin(shadow);
        ledger_balances_t b = {0};
        b.debits_posted = debits[from], b.credits_posted = credits[from];
        store_shadow_publish(shadow, from, &b);
        b.debits_posted = debits[to], b.credits_posted = credits[to];
        store_shadow_publish(shadow, to, &b);
        store_shadow_batch_end(shadow);
    }
    atomic_store(&writing, false);
    return NULL;
}

static void *reader_main(void *arg) {
    (void)arg;
    uint32_t nos[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++) nos[i] = i;
    while (atomic_load(&writing)) {
        ledger_account_t page[ACCOUNTS] = {0};
        store_shadow_read_page(shadow, nos, page, ACCOUNTS);
        int64_t total = 0;
        for (int i = 0; i < ACCOUNTS; i++) total += page[i].balances.credits_posted - page[i].balances.debits_posted;
        if (total != (int64_t)FUNDS * ACCOUNTS) atomic_fetch_add(&torn_pages, 1);
        atomic_fetch_add(&pages_read, 1);
    }
    return NULL;
}

static void test_page_is_one_batch_boundary(void) {
    shadow = store_shadow_new();
    ASSERT_TRUE(shadow != NULL);
    ledger_balances_t funded = {.credits_posted = FUNDS};
    store_shadow_batch_begin(shadow);
    for (uint32_t i = 0; i < ACCOUNTS; i++) store_shadow_publish(shadow, i, &funded);
    store_shadow_batch_end(shadow);
    pthread_t writer, readers[READERS];
    for (int i = 0; i < READERS; i++) ASSERT_EQ(pthread_create(&readers[i], NULL, reader_main, NULL), 0);
    ASSERT_EQ(pthread_create(&writer, NULL, writer_main, NULL), 0);
    ASSERT_EQ(pthread_join(writer, NULL), 0);
    for (int i = 0; i < READERS; i++) ASSERT_EQ(pthread_join(readers[i], NULL), 0);
    printf("shadow pages: %ld read during %d batches, %ld torn\n", atomic_load(&pages_read), BATCHES,
           atomic_load(&torn_pages));
    ASSERT_EQ(atomic_load(&torn_pages), 0);
    ASSERT_TRUE(atomic_load(&pages_read) > 0);
    store_shadow_free(shadow);
}

/* A page says which batch it is as of: the seq store_shadow_committing marked before
 * the batch's COMMIT (a list read as of a cut takes the shadow only at that seq). */
static void test_page_names_its_batch(void) {
    store_shadow_t *s = store_shadow_new();
    ASSERT_TRUE(s != NULL);
    uint32_t no = 0;
    ledger_account_t page[1] = {0};
    ASSERT_EQ(store_shadow_read_page(s, &no, page, 1), 0);
    for (uint64_t seq = 1; seq <= 3; seq++) {
        store_shadow_committing(s, seq);
        store_shadow_batch_begin(s);
        ledger_balances_t b = {.credits_posted = (int64_t)seq * 10};
        store_shadow_publish(s, 0, &b);
        store_shadow_batch_end(s);
        store_shadow_published(s, seq);
        ASSERT_EQ(store_shadow_read_page(s, &no, page, 1), seq);
        ASSERT_EQ(page[0].balances.credits_posted, (int64_t)seq * 10);
    }
    store_shadow_committing(s, 4); /* committed, not published yet: the page is still as of 3 */
    ASSERT_EQ(store_shadow_read_page(s, &no, page, 1), 3);
    store_shadow_free(s);
}

int main(void) {
    TEST_RUN(test_page_names_its_batch);
    TEST_RUN(test_page_is_one_batch_boundary);
    return test_finish();
}
