/* tests/store/store_start.h: the store tests' start-up, said once: a SQLite store
 * opened (created when missing) and loaded into a new ledger, as the server does. */
#ifndef PAYCORE_TEST_STORE_START_H
#define PAYCORE_TEST_STORE_START_H

#include "ledger/ledger.h"
#include "store/store.h"

/* The store at 'db_path', loaded into '*ledger'; the test fails on any error. */
store_t *test_store_start(const char *db_path, ledger_t **ledger);

/* Closes what test_store_start opened. */
void test_store_end(store_t *store, ledger_t *ledger);

#endif
