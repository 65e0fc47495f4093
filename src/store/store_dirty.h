/* store/store_dirty.h: the accounts whose balances changed since the last balance
 * snapshot, kept above the backend (store_dirty.c): every backend writes the same
 * snapshot of them every few batches and at a clean stop. Accounts join after their
 * batch's COMMIT only (and at load, from the replay), so a rolled-back batch leaves
 * nothing here. Writer thread only. Only src/store/ includes this. */
#ifndef PAYCORE_STORE_DIRTY_H
#define PAYCORE_STORE_DIRTY_H

#include <stdint.h>

#include "paycore/status.h"

typedef struct {
    uint8_t *bits;      /* one bit an account number: on the list */
    uint32_t *list;     /* the account numbers, in the order they joined */
    uint32_t count;
    uint32_t capacity;
} store_dirty_t;

PC_MUST_USE pc_status store_dirty_init(store_dirty_t *dirty);
void store_dirty_free(store_dirty_t *dirty);
void store_dirty_mark(store_dirty_t *dirty, uint32_t account_no);
void store_dirty_clear(store_dirty_t *dirty);
/* The listed accounts and 'extra' (a batch being written), sorted, each once, in a
 * malloc'ed array of *count_out (NULL when out of memory). */
uint32_t *store_dirty_sorted(const store_dirty_t *dirty, const uint32_t *extra, uint32_t extra_count,
                             uint32_t *count_out);

#endif
