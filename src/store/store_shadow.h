/* store/store_shadow.h: the committed balances of every account, for readers, kept
 * above the backend: every backend's writer publishes after its COMMIT, every
 * backend's readers read here (store_shadow.c). Only src/store/ includes this. */
#ifndef PAYCORE_STORE_SHADOW_H
#define PAYCORE_STORE_SHADOW_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger/ledger.h"
#include "paycore/status.h"

typedef struct store_shadow store_shadow_t;
store_shadow_t *store_shadow_new(void);
void store_shadow_free(store_shadow_t *shadow);
/* Writer thread, after COMMIT. */
void store_shadow_publish(store_shadow_t *shadow, uint32_t account_no, const ledger_balances_t *balances);
/* Writer thread, around publishing one batch's accounts: a reader of several
 * accounts (store_shadow_read_page) sees all of a batch or none of it. */
void store_shadow_batch_begin(store_shadow_t *shadow);
void store_shadow_batch_end(store_shadow_t *shadow);
/* A batch's COMMIT makes it visible to readers of the database a moment before the
 * writer publishes its balances here; a client that read the batch (a payment's new
 * state) must not then read the balances from before it. So the writer marks the
 * batch (its journal seq) before its COMMIT, and a balance reader that sees that seq
 * in the database waits until it is published (store_shadow_settle: microseconds,
 * the writer publishes right after COMMIT returns). */
/* Writer thread, before the COMMIT (or COMMIT PREPARED) of the batch of journal seq
 * 'seq'. */
void store_shadow_committing(store_shadow_t *shadow, uint64_t seq);
/* Writer thread, after the batch's balances were published (after batch_end). */
void store_shadow_published(store_shadow_t *shadow, uint64_t seq);
/* Writer thread, at load: every account's balances were published as of the
 * journal seq 'seq' (the head loaded), so a page read before the first commit is at
 * that batch boundary (store_shadow_read_page returns 'seq', not 0). */
void store_shadow_loaded(store_shadow_t *shadow, uint64_t seq);
/* Writer thread, the COMMIT failed: readers stop waiting for the batch. */
void store_shadow_commit_failed(store_shadow_t *shadow);
/* Any thread, before reading balances: when a marked batch is not published yet and
 * 'visible_head' (ctx: a reader) says the database shows it (the journal's highest
 * seq, read now), waits until it is published or its commit failed. */
void store_shadow_settle(const store_shadow_t *shadow, pc_status (*visible_head)(void *ctx, uint64_t *seq_out),
                         void *ctx);
/* Any thread: false when nothing was published for this account yet. */
bool store_shadow_read(const store_shadow_t *shadow, uint32_t account_no, ledger_balances_t *out);
/* Any thread: the balances of 'count' accounts (account numbers in 'nos') as of one
 * batch boundary, so that a page of balances sums as the ledger does (a transfer's
 * two legs are both in it or both not). accounts[i] keeps its row's balances where
 * nothing was published for nos[i]. Returns that boundary: the journal seq of the
 * last batch published before it (the seq store_shadow_committing marked, or the
 * head store_shadow_loaded gave; 0 before either). */
uint64_t store_shadow_read_page(const store_shadow_t *shadow, const uint32_t *nos, ledger_account_t *accounts,
                                uint32_t count);

#endif
