/* store/idem_index.h: which Idempotency-Keys may have a stored row, held in memory, so
 * that a request with a new key needs no store read.
 *
 * The index holds a keyed 64-bit fingerprint (SipHash) of every (API key id,
 * Idempotency-Key) that has a row in the store: the API's stored replies and the
 * payments' own lookups of a key. It is a superset of the rows, never a subset:
 *   - idem_index_may_hold() false: no row exists (authoritative);
 *   - true: a row may exist (or two keys share a fingerprint): read the store.
 * A row is added before its transaction commits (a failed commit leaves a harmless
 * extra fingerprint) and removed only after the deletion committed. Fingerprints are
 * counted (a multiset), so one row's removal never hides another with the same print.
 *
 * Bound: at most 'keys_max' fingerprints (limits.h API_IDEM_INDEX_KEYS_DEFAULT). Past
 * it the index stops answering "new" (every lookup reads the store, as without an
 * index) until the process restarts and finds the stored rows within the bound again.
 *
 * Threads: any; one mutex guards the table (a lookup is a few probes). */
#ifndef PAYCORE_STORE_IDEM_INDEX_H
#define PAYCORE_STORE_IDEM_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "paycore/status.h"

typedef struct idem_index idem_index_t;

typedef struct {
    uint64_t keys;          /* fingerprints held */
    uint64_t keys_max;
    uint64_t slots;         /* the table's size now */
    bool overflowed;        /* past the bound: every lookup reads the store */
} idem_index_stats_t;

PC_MUST_USE pc_status idem_index_new(idem_index_t **out, uint64_t keys_max);
void idem_index_free(idem_index_t *index);
/* False only when no row of ('key_id', 'idempotency_key') can exist. */
bool idem_index_may_hold(idem_index_t *index, const char *key_id, const char *idempotency_key);
/* A row of the key is being written (call before its commit). */
void idem_index_add(idem_index_t *index, const char *key_id, const char *idempotency_key);
/* A row of the key was deleted (call after that commit). */
void idem_index_remove(idem_index_t *index, const char *key_id, const char *idempotency_key);
void idem_index_stats(idem_index_t *index, idem_index_stats_t *out);

#endif
