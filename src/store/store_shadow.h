/* store/store_shadow.h: the committed balances of every account, for readers, kept
 * above the backend: every backend's writer publishes after its COMMIT, every
 * backend's readers read here (store_shadow.c). Only src/store/ includes this. */
#ifndef PAYCORE_STORE_SHADOW_H
#define PAYCORE_STORE_SHADOW_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger/ledger.h"

typedef struct store_shadow store_shadow_t;
store_shadow_t *store_shadow_new(void);
void store_shadow_free(store_shadow_t *shadow);
/* Writer thread, after COMMIT. */
void store_shadow_publish(store_shadow_t *shadow, uint32_t account_no, const ledger_balances_t *balances);
/* Writer thread, around publishing one batch's accounts: a reader of several
 * accounts (store_shadow_read_page) sees all of a batch or none of it. */
void store_shadow_batch_begin(store_shadow_t *shadow);
void store_shadow_batch_end(store_shadow_t *shadow);
/* Any thread: false when nothing was published for this account yet. */
bool store_shadow_read(const store_shadow_t *shadow, uint32_t account_no, ledger_balances_t *out);
/* Any thread: the balances of 'count' accounts (account numbers in 'nos') as of one
 * batch boundary, so that a page of balances sums as the ledger does (a transfer's
 * two legs are both in it or both not). accounts[i] keeps its row's balances where
 * nothing was published for nos[i]. */
void store_shadow_read_page(const store_shadow_t *shadow, const uint32_t *nos, ledger_account_t *accounts,
                            uint32_t count);

#endif
