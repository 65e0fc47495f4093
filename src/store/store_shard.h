/* store/store_shard.h: what the shard layer (src/shard/) needs of a store beyond
 * store.h: two-phase commit of a writer batch, and a shard link, a connection of its
 * own to one shard for the shard map, the coordinator log and recovery (never the
 * writer's connection, so that the log commits on its own). PostgreSQL only: the
 * SQLite backend has no two-phase commit (store_supports_two_phase is false there,
 * and store_link_open refuses a location that is not a URL). docs/scaleout.md §6 has
 * the protocol and the tables (schema version 5). */
#ifndef PAYCORE_STORE_SHARD_H
#define PAYCORE_STORE_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"
#include "store/store.h"
#include "store/store_events.h"

/* ---- placement (shard_place.c) ----
 * An account lives on shard siphash24(STORE_SHARD_HASH_KEY, id) mod count: the
 * 8-byte SipHash-2-4 output read little-endian. The key is fixed and published so
 * that placement is the same on every node, platform, version and restart (it is not
 * a secret: placement is not a defence). */
#define STORE_SHARD_HASH_KEY "paycore-shards-1" /* 16 bytes, crypto_shorthash_siphash24 */
uint32_t store_shard_of(const char *account_id, uint32_t shard_count);
/* The payments layer's chart of accounts (docs/accounting.md) lives on the home shard
 * (0), whatever its hash: merchants' accounts ("mer:"), channels' receivables ("chn:")
 * and paycore's own ("sys:"). Payment rows, the card vault and the events outbox are
 * the home shard's, so a card payment's every command is a local batch there, its
 * transfers, payment rows and events in one transaction. Customer wallets ("wal:")
 * are placed by their hash like any account: a wallet's payment or top-up whose
 * wallet lives elsewhere is a global transaction (docs/scaleout.md §6). */
#define STORE_SHARD_HOME_PREFIXES "mer:", "chn:", "sys:"
bool store_shard_home_placed(const char *account_id);
/* The clearing account on shard 'self' for its transfers with shard 'peer' in
 * 'currency': "pc.clearing.<self>.<peer>.<currency>" (ids with the prefix are
 * refused from clients: id_reserved). */
#define STORE_CLEARING_PREFIX "pc.clearing."
void store_clearing_id(uint32_t self, uint32_t peer, const char *currency, char out[PC_ID_SIZE]);
bool store_id_reserved(const char *id);
/* The shard a clearing account lives on (its 'self'), or false for other ids. */
bool store_clearing_shard(const char *id, uint32_t *self, uint32_t *peer);
/* A transfer across shards read as one: 'leg' (read first) and 'other' (its peer leg,
 * freed here) become 'leg' as A -> B: the debit leg's fields (its timestamp, as the
 * create reply gave) with the credit leg's credit account. 'debit_leg': 'leg' is the
 * debit leg (its credit account is the clearing one). */
void store_transfer_legs_merge(store_transfer_t *leg, store_transfer_t *other, bool debit_leg);

/* ---- lists of accounts read as of their first page (shard_cursor.c, shard_route.c) ----
 * A cut: each shard's journal seq, taken inside the read fence, so that the prefixes
 * agree on every global transaction (a shard commits its batches in seq order). Every
 * page of one listing reads as of its first page's cut; its cursor carries the cut,
 * where the next page starts (a shard, the last account listed there) and when the
 * listing began, keyed-hashed for the caller's key id (docs/scaleout.md §6). */
typedef struct {
    uint32_t count;
    uint64_t seq[SHARD_COUNT_MAX];
} store_cut_t;
typedef enum { STORE_CURSOR_ACCOUNTS = 1, STORE_CURSOR_ACCOUNTS_DESC = 2, STORE_CURSOR_GRANTED = 3 } store_cursor_kind;
typedef struct {
    uint32_t kind;               /* store_cursor_kind: a cursor continues the list it came from */
    uint32_t shard;              /* the next page starts on this shard ... */
    char after[PC_ID_SIZE];      /* ... after this account */
    store_cut_t cut;
    uint64_t issued_ns;          /* the first page's wall time */
} store_shard_cursor_t;
/* The text of 'cursor' for the caller 'owner' (its key id) into 'out'; false (and ""
 * in 'out') for a cursor that cannot be encoded. */
bool store_shard_cursor_encode(const uint8_t key[STORE_CURSOR_KEY_BYTES], const char *owner,
                               const store_shard_cursor_t *cursor, char out[STORE_CURSOR_TEXT_SIZE]);
/* PC_OK, PC_LIST_CURSOR_INVALID (malformed, altered, another caller's or another
 * key's), or PC_LIST_CURSOR_EXPIRED (issued more than STORE_CURSOR_AGE_S_MAX ago). */
PC_MUST_USE pc_status store_shard_cursor_decode(const uint8_t key[STORE_CURSOR_KEY_BYTES], const char *owner,
                                                const char *text, store_shard_cursor_t *out);
/* A list of accounts paged across a set's shards: shard by shard (each in creation
 * order, or a key's granted accounts in id order), the cursor's shard first, each
 * shard's part as of the first page's cut. 'part' reads one shard's part; 'cut' takes
 * a first page's cut, every shard's head, under the read fence (this node's, or the
 * advisory lock on shard 0 shared). 'cursor_key' NULL: no cursor issued or taken. */
typedef struct {
    uint32_t count;
    pc_status (*part)(void *ctx, uint32_t shard, const char *key_id, const store_query_t *query, uint64_t as_of,
                      store_account_fn fn, void *fn_ctx, bool *has_more);
    pc_status (*cut)(void *ctx, store_cut_t *cut);
    void *ctx;
    const uint8_t *cursor_key;
} store_shard_lister_t;
/* As store_list_accounts ('key_id' NULL) and store_list_accounts_granted do, with
 * query->cursor and query->next_cursor. */
PC_MUST_USE pc_status store_shard_list(const store_shard_lister_t *lister, const char *key_id,
                                       const store_query_t *query, store_account_fn fn, void *ctx, bool *has_more);
/* The route store's cursors use 'key' from now on (before it, lists have none). */
void store_shard_route_cursor_key(store_t *route, const uint8_t key[STORE_CURSOR_KEY_BYTES]);
/* One shard's part of a list read as of 'as_of' (its seq in the cut): the accounts
 * created by then, with their balances then (the shadow when it is still there, else
 * the account rows' snapshot plus or minus the transfers between the snapshot and
 * 'as_of', in one statement). 'key_id' NULL: every account in creation order; else
 * the accounts granted to it, in id order. 'reader' is one shard's (PostgreSQL). */
PC_MUST_USE pc_status store_shard_list_as_of(store_reader_t *reader, const char *key_id, const store_query_t *query,
                                             uint64_t as_of, store_account_fn fn, void *ctx, bool *has_more);
/* The seq one shard's reader sees now: its journal's highest committed seq (inside
 * the read fence, every shard's is a cut). */
PC_MUST_USE pc_status store_shard_reader_cut(store_reader_t *reader, uint64_t *seq_out);

/* ---- the read side of a set (shard_route.c) ----
 * One store whose readers send each read to the shard holding its rows (an
 * account's shard; the home shard 0 for API keys and idempotent replies), for the
 * API. Its write side is unsupported: each shard's own store writes. 'stores' are
 * borrowed and must outlive it. */
PC_MUST_USE pc_status store_shard_route_open(store_t **out, store_t *const *stores, uint32_t count);
/* The read fence of this node's readers (docs/scaleout.md §6): 'shut' true waits for
 * the reads spanning shards that are running to end and keeps new ones waiting until
 * it is called with false. The coordinator shuts it while it commits a global
 * transaction's legs, so that a read spanning shards sees each global transaction on
 * every shard or on none. 'route' NULL: nothing. */
void store_shard_route_fence(store_t *route, bool shut);

/* A global transaction id: 32 lowercase hex digits. Prepared as 'pc_<gtid>_<shard>'. */
#define STORE_GTID_SIZE 33

/* ---- two-phase commit of one writer batch (writer thread) ----
 * Instead of store_tx_commit: PREPARE TRANSACTION 'pc_<gtid>_<shard>' (options.shard_index). On PC_OK the batch is
 * durable but invisible (readers still see the balances before it) and 'tx' stays
 * open until exactly one of store_tx_commit_prepared / store_tx_rollback_prepared.
 * Any other status: nothing of the batch remains and 'tx' is freed; PC_STORE_FAILED
 * as for store_tx_commit. */
bool store_supports_two_phase(const store_t *store);
PC_MUST_USE pc_status store_tx_prepare(store_tx_t *tx, const char *gtid);
/* COMMIT PREPARED, then readers see the batch; frees tx. A failure leaves the outcome
 * to recovery: the store fails for good (PC_STORE_FAILED) and the process reloads. */
PC_MUST_USE pc_status store_tx_commit_prepared(store_tx_t *tx);
/* ROLLBACK PREPARED; frees tx. A failure fails the store for good (recovery ends it). */
PC_MUST_USE pc_status store_tx_rollback_prepared(store_tx_t *tx);

/* ---- the shard link ---- */
typedef struct store_link store_link_t;

/* Connects to the shard at 'url' (its schema must exist: paycore init made it). On
 * failure 'detail' is one line naming the cause: PC_STORE_OPEN_FAILED (does not
 * parse, not reachable), PC_STORE_NOT_PAYCORE, PC_STORE_VERSION_UNSUPPORTED. */
PC_MUST_USE pc_status store_link_open(store_link_t **out, const char *url, char *detail, size_t detail_bytes);
void store_link_close(store_link_t *link);
/* The URL without its password, for messages. */
const char *store_link_url(const store_link_t *link);
const char *store_link_error(const store_link_t *link);
/* An account this shard holds that placement now puts on the home shard
 * (store_shard_home_placed: created through the ledger API before payments ran on
 * sets): PC_OK with its id in 'out', PC_NOT_FOUND when none. */
PC_MUST_USE pc_status store_link_home_misplaced(store_link_t *link, char *out, size_t out_bytes);
/* The server's max_prepared_transactions. */
PC_MUST_USE pc_status store_link_max_prepared(store_link_t *link, int64_t *out);
/* The database's own instance id (paycore_meta.instance_id). */
PC_MUST_USE pc_status store_link_instance_id(store_link_t *link, char *out, size_t out_bytes);

/* The shard map: one row per shard of the set, the same on every shard. */
typedef struct {
    uint32_t count;                                  /* 0: no map yet */
    uint32_t self_index;                             /* this shard's index in the set */
    char instance_ids[SHARD_COUNT_MAX][24];          /* by index */
} store_shard_map_t;
PC_MUST_USE pc_status store_link_map_read(store_link_t *link, store_shard_map_t *out);
/* Writes the map (paycore init): PC_STORE_SHARD_MAP_MISMATCH when one is there. */
PC_MUST_USE pc_status store_link_map_write(store_link_t *link, const store_shard_map_t *map);

/* The coordinator log on this shard: each statement commits on its own; the intent
 * and done are not waited for (synchronous_commit off for them: presumed abort needs
 * neither durable, docs/scaleout.md §6), the decision is. */
PC_MUST_USE pc_status store_link_log_intent(store_link_t *link, const char *gtid, const uint32_t *shards,
                                           uint32_t shard_count, const char *legs_json);
/* PC_EXISTS: a decision was logged before (recovery aborted it): nothing changed. */
PC_MUST_USE pc_status store_link_log_decision(store_link_t *link, const char *gtid, bool commit);
PC_MUST_USE pc_status store_link_log_done(store_link_t *link, const char *gtid);

/* A logged global transaction not yet done. */
typedef struct {
    char gtid[STORE_GTID_SIZE];
    int decision;            /* 0: none, 1: commit, -1: abort */
    uint64_t intent_ns;
    uint32_t shards[SHARD_COUNT_MAX];
    uint32_t shard_count;
} store_link_open_t;
typedef void (*store_link_open_fn)(const store_link_open_t *row, void *ctx);
PC_MUST_USE pc_status store_link_log_open(store_link_t *link, store_link_open_fn fn, void *ctx);
/* Whether 'gtid' has an intent in this shard's log (and its decision). */
PC_MUST_USE pc_status store_link_log_find(store_link_t *link, const char *gtid, bool *found, int *decision);

/* Prepared transactions 'pc_<gtid>_<shard>' of this shard's database
 * (pg_prepared_xacts; the server's names, so the shard index keeps apart two shards
 * that are databases of one server). 'shard' is UINT32_MAX for a name without one. */
typedef void (*store_link_prepared_fn)(const char *gtid, uint32_t shard, uint64_t prepared_ns, void *ctx);
PC_MUST_USE pc_status store_link_prepared_list(store_link_t *link, store_link_prepared_fn fn, void *ctx);
/* COMMIT PREPARED / ROLLBACK PREPARED 'pc_<gtid>_<shard>' (recovery). PC_NOT_FOUND:
 * not prepared (finished already). */
PC_MUST_USE pc_status store_link_prepared_finish(store_link_t *link, const char *gtid, uint32_t shard, bool commit);

/* The set's read fence across processes, an advisory lock on the home shard (shard
 * 0): the coordinator holds it exclusively (STORE_FENCE_COMMIT) while it commits a
 * global transaction's legs; `paycore verify --shards` holds it shared
 * (STORE_FENCE_READ, waiting at most SHARD_FENCE_WAIT_MS) while it opens a snapshot
 * of every shard, so that the snapshots agree on every global transaction. Session
 * level: a holder that dies releases it. PC_STORE_BUSY: not taken within the wait. */
typedef enum { STORE_FENCE_COMMIT, STORE_FENCE_READ } store_fence_mode;
PC_MUST_USE pc_status store_link_fence_take(store_link_t *link, store_fence_mode mode);
pc_status store_link_fence_release(store_link_t *link, store_fence_mode mode);
/* The set's cursor key, from shard 0's paycore_meta ('list_cursor_key', 32 random
 * bytes as hex): made there by the set's writer at its start when missing
 * (store_link_cursor_key), read by every node, so that a listing begun on one node
 * continues on any other and after a restart or a takeover. */
PC_MUST_USE pc_status store_link_cursor_key(store_link_t *link, uint8_t key[STORE_CURSOR_KEY_BYTES]);
/* ---- who writes a shard: the writers table (pg_writers.c, schema version 6) ----
 * The node holding a shard's writer's lock advertises the address other nodes
 * forward that shard's commands to (docs/scaleout.md §7). A row is live while the
 * backend pid it names holds the shard's writer's lock: a writer that died leaves a
 * row that reads as not live at once (its session, and so its lock, ended), with no
 * lease clock to trust. The epoch rises by one at every takeover. */
#define STORE_WRITER_ADDRESS_SIZE 256
#define STORE_WRITER_NODE_ID_SIZE 64
/* Writer thread, after store_open took the lock and before the writer starts: records
 * 'address' as shard 'shard''s writer on the lock's own connection (its backend pid
 * is the one in the row). *epoch gets the row's new epoch. PostgreSQL only. */
PC_MUST_USE pc_status store_writer_advertise(store_t *store, uint32_t shard, const char *address,
                                             const char *node_id, uint64_t *epoch);

typedef struct {
    char address[STORE_WRITER_ADDRESS_SIZE];
    char node_id[STORE_WRITER_NODE_ID_SIZE];
    uint64_t epoch;
    bool live;                 /* its backend pid holds the shard's writer's lock now */
    char instance_id[24];      /* the shard's paycore_meta.instance_id: which database it is */
} store_writer_row_t;

/* A connection of its own to one shard for reading its writers row (any thread, one
 * at a time: the caller serialises). */
typedef struct store_writers store_writers_t;
PC_MUST_USE pc_status store_writers_open(store_writers_t **out, const char *url, char *detail, size_t detail_bytes);
/* Shard 'shard''s row: PC_OK, PC_NOT_FOUND (no writer ever advertised), or
 * PC_STORE_READ_FAILED (the connection broke: it is reopened at the next call). */
PC_MUST_USE pc_status store_writers_find(store_writers_t *writers, uint32_t shard, store_writer_row_t *out);
const char *store_writers_error(const store_writers_t *writers);
void store_writers_close(store_writers_t *writers);


/* ---- the set's outbox relay (pg_shard_events.c, docs/scaleout.md §6) ----
 * A shard other than the home shard writes its ledger events into its own outbox
 * (its events table); they are copied into the home shard's outbox in that shard's
 * seq order, in home transactions that also move the home's cursor for that shard
 * (a paycore_meta row): each copied once. */
/* The home's cursor for 'shard' inside a transaction on the home shard (0: none yet). */
PC_MUST_USE pc_status store_shard_relayed_get(store_tx_t *tx, uint32_t shard, uint64_t *seq_out);
PC_MUST_USE pc_status store_shard_relayed_set(store_tx_t *tx, uint32_t shard, uint64_t seq);
PC_MUST_USE pc_status store_shard_relayed_read(store_reader_t *reader, uint32_t shard, uint64_t *seq_out);
/* A shard's outbox rows after 'after_seq' in seq order, at most 'limit', each with its
 * owners (event.owners, borrowed for the callback). */
PC_MUST_USE pc_status store_shard_events_after(store_reader_t *reader, uint64_t after_seq, uint32_t limit,
                                               store_event_fn fn, void *ctx, bool *has_more);

#endif
