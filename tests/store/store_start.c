/* tests/store/store_start.c: see store_start.h. */
#include "store_start.h"

#include "test.h"

store_t *test_store_start(const char *db_path, ledger_t **ledger) {
    store_t *store;
    journal_entry_t head;
    ASSERT_STATUS(store_open(&store, db_path, &(store_options_t){.create = true}), PC_OK);
    ASSERT_STATUS(ledger_open(ledger), PC_OK);
    ASSERT_STATUS(store_load(store, *ledger, &head), PC_OK);
    return store;
}

void test_store_end(store_t *store, ledger_t *ledger) {
    ledger_close(ledger);
    store_close(store);
}
