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
 * it the index is "overflowed": it stops answering "new" (every lookup reads the
 * store, as without an index) and only counts the rows it is told of.
 *
 * Recovery: once the purge brought those under API_IDEM_INDEX_REBUILD_PERCENT of the
 * bound, idem_index_rebuild_wanted() says so and the owner rebuilds it from the store,
 * on a thread of its own: idem_index_rebuild_begin() (from then on every add goes into
 * an empty table, lookups still read the store), then the owner makes sure every add
 * made before that call committed (a writer round trip), adds every stored row, and
 * calls idem_index_rebuild_end(). A row added meanwhile is in the table by its own
 * add; a row deleted meanwhile may stay (a harmless extra print): a superset again.
 * A scan that finds more rows than the bound leaves it overflowed.
 *
 * Scans (the load at start, a rebuild) go row by row through idem_index_scan_row(),
 * which asks the scan's owner whether to go on every API_IDEM_INDEX_SCAN_CHECK_ROWS
 * rows: a stop asked meanwhile (SIGTERM) ends the scan there, not after millions of
 * rows. A scan cut short leaves a subset: its owner must not use the index as one
 * (the start gives up; a rebuild ends with scanned false).
 *
 * Threads: any; one mutex guards the table (a lookup is a few probes). */
#ifndef PAYCORE_STORE_IDEM_INDEX_H
#define PAYCORE_STORE_IDEM_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/status.h"

typedef struct idem_index idem_index_t;

typedef enum {
    IDEM_INDEX_INDEXED = 0,  /* answers "new" for a key it does not hold */
    IDEM_INDEX_OVERFLOWED,   /* past its bound: every lookup reads the store */
    IDEM_INDEX_REBUILDING,   /* being rebuilt from the store: every lookup reads the store */
} idem_index_state;

typedef struct {
    uint64_t keys;          /* fingerprints held */
    uint64_t keys_max;
    uint64_t slots;         /* the table's size now */
    idem_index_state state;
    bool overflowed;        /* not indexed (overflowed or rebuilding): every lookup reads the store */
    uint64_t rows_counted;  /* not indexed: rows added less rows removed since the overflow */
    uint64_t lookups;
    uint64_t store_reads_held;      /* lookups of a key it holds (a replay, or a shared print) */
    uint64_t store_reads_unindexed; /* lookups while not indexed */
    uint64_t overflows;
    uint64_t rebuilds;              /* rebuilds that made it an index again */
    uint64_t rebuilds_failed;       /* rebuilds that found more rows than the bound */
} idem_index_stats_t;

/* The keyed hash (SipHash-2-4 under 'hash_key') of an (API key id, Idempotency-Key)
 * pair, which this index and the SQLite store's map of replies take their prints from. */
#define IDEM_KEY_HASH_KEY_BYTES 16
uint64_t idem_key_hash(const uint8_t hash_key[IDEM_KEY_HASH_KEY_BYTES], const char *key_id,
                       const char *idempotency_key);

PC_MUST_USE pc_status idem_index_new(idem_index_t **out, uint64_t keys_max);
void idem_index_free(idem_index_t *index);
/* False only when no row of ('key_id', 'idempotency_key') can exist. */
bool idem_index_may_hold(idem_index_t *index, const char *key_id, const char *idempotency_key);
/* A row of the key is being written (call before its commit). */
void idem_index_add(idem_index_t *index, const char *key_id, const char *idempotency_key);
/* A row of the key was deleted (call after that commit). */
void idem_index_remove(idem_index_t *index, const char *key_id, const char *idempotency_key);
void idem_index_stats(idem_index_t *index, idem_index_stats_t *out);
const char *idem_index_state_name(idem_index_state state);

/* Recovery (above): true when overflowed and the rows counted fit a rebuild. */
bool idem_index_rebuild_wanted(idem_index_t *index);
/* Overflowed -> rebuilding, the table emptied; PC_NO_MEMORY leaves it overflowed. */
PC_MUST_USE pc_status idem_index_rebuild_begin(idem_index_t *index);
/* 'scanned': every stored row was added since begin. True when it is an index again;
 * false (overflowed) when the scan failed or the rows passed the bound. */
bool idem_index_rebuild_end(idem_index_t *index, bool scanned);

/* One scan of the store's rows into the index; 'go_on' (NULL: always) is asked every
 * API_IDEM_INDEX_SCAN_CHECK_ROWS rows. */
typedef bool (*idem_index_go_on_fn)(void *ctx);
typedef struct {
    idem_index_t *index;
    idem_index_go_on_fn go_on;
    void *go_on_ctx;
    uint64_t rows;  /* added so far */
    bool stopped;   /* 'go_on' said stop */
} idem_index_scan_t;

/* Adds the row's key; false once the scan is to stop (the row added all the same). */
bool idem_index_scan_row(idem_index_scan_t *scan, const char *key_id, const char *idempotency_key);

/* Appends the index's Prometheus series to 'text' (malloc'ed, 'bytes' long); returns
 * the new text (the old one freed) or the old one unchanged on OOM. */
char *idem_index_metrics_append(idem_index_t *index, char *text, size_t *bytes);

#endif
