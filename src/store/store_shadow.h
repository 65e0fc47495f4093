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
/* Any thread: false when nothing was published for this account yet. */
bool store_shadow_read(const store_shadow_t *shadow, uint32_t account_no, ledger_balances_t *out);

#endif
