/* shard/shard.h: a set of PostgreSQL shards served by one node (docs/scaleout.md §6).
 * Above store.h and the writer: each shard is a store of its own with a writer of
 * its own (its own ledger in memory, journal and signing key); accounts are placed
 * by store_shard_of. A command whose events all live on one shard goes to that
 * shard's writer as a local batch; a command spanning shards (a transfer across
 * shards, a linked chain, a batch touching several) is one global transaction:
 *
 *   intent (coordinator log on shard 0, committed) -> each involved shard's writer
 *   applies its legs and PREPAREs 'pc_<gtid>' -> decision logged -> COMMIT PREPARED
 *   or ROLLBACK PREPARED on each -> done logged.
 *
 * A transfer across shards becomes two legs with the same id, one on each shard,
 * through a clearing account per peer shard and currency (store_clearing_id), so
 * that each shard's books balance on their own (docs/accounting.md). Shard 0 is the
 * home shard: API keys, idempotent replies, the coordinator log, the payments
 * layer's rows and chart of accounts, the card vault and the events outbox live
 * there, and a command carrying its own rows (in_transaction: an idempotent reply, a
 * payment's rows) that runs elsewhere becomes a global transaction with a leg on
 * shard 0 for those rows, so they commit atomically with the ledger rows. A key's
 * grants go to each account's shard (a global transaction when they span shards);
 * a merchant key's command across shards runs with the key as owner on every leg,
 * each shard's writer checking the reach of its own accounts.
 *
 * Global transactions run one at a time (a writer waits for the decision inside its
 * prepared batch; two at once could wait on each other); commands queued together
 * share one, and a command's events that need none (local, independent of its cross
 * events) run as local batches of their shards (shard_split.c). Recovery runs at open,
 * before any writer loads, and every SHARD_RECOVERY_INTERVAL_MS. */
#ifndef PAYCORE_SHARD_H
#define PAYCORE_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/status.h"
#include "store/store.h"
#include "writer/writer.h"

typedef struct shard_set shard_set_t;

/* `paycore init --shards`: creates paycore's schema on each database (empty, or a
 * paycore database without a map) and writes the same shard map on every one. On
 * failure 'detail' is one line naming the shard and what to fix. */
PC_MUST_USE pc_status shard_init(const char *const *urls, uint32_t count, char *detail, size_t detail_bytes);

typedef struct {
    const char *const *urls;
    uint32_t count;                /* 1..SHARD_COUNT_MAX */
    const char *key_path;          /* the node's signing key: shard i uses '<key_path>' for i = 0,
                                      '<key_path>.shard<i>' otherwise */
    writer_config_t writer_config; /* each shard's writer (failed: any of them); its batch_hook is
                                      ignored: see home_hook */
    /* Optional: the home shard's batch hook (the events outbox lives on shard 0), made
     * once the set's read store exists and before any writer starts; the other shards'
     * writers run without one. An error refuses the start. */
    pc_status (*home_hook)(void *ctx, store_t *read_store, writer_batch_hook_t *out);
    void *home_hook_ctx;
    /* Optional: the batch hook of each other shard (index 1..count-1), made after
     * home_hook with its ctx (the outbox of each shard, relayed to the home's). With
     * it every global transaction has a leg on the home shard and each leg's batch is
     * marked (shard_batch_leg), so that the hooks can write the transaction's events
     * in its home leg, as one store writes a batch's events with it. */
    pc_status (*shard_hook)(void *ctx, uint32_t index, writer_batch_hook_t *out);
    /* Nodes (docs/scaleout.md §7): the address this node advertises in every shard's
     * writers row once it holds the shard's writer's lock (NULL: none is written). A
     * standby waits for the locks (shard 0's first, so that one node gets the whole
     * set) while 'standby_continue' says go on, instead of refusing store_in_use. */
    const char *advertise;
    bool standby;
    bool (*standby_continue)(void *ctx);
    void *standby_ctx;
} shard_options_t;

/* Checks every shard (reachable, paycore's, max_prepared_transactions > 0, the map
 * of the same length and order), resolves in-doubt global transactions, opens each
 * shard's store and starts its writer, and the periodic recovery. Refusals: one line
 * in 'detail' naming the shard (by index and URL) and what to fix. */
PC_MUST_USE pc_status shard_open(shard_set_t **out, const shard_options_t *options, char *detail,
                                 size_t detail_bytes);
/* Stops recovery and the coordinator (after the commands it holds), drains every
 * writer; the writers stay readable (writer_stats) until shard_close. */
void shard_drain(shard_set_t *set);
/* shard_drain, then frees every writer and closes the stores (NULL: nothing). */
void shard_close(shard_set_t *set);

uint32_t shard_count(const shard_set_t *set);
writer_t *shard_writer(shard_set_t *set, uint32_t index);
/* A store whose readers route each read to the shard holding it (store_shard_route):
 * what the API reads through. Owned by the set. */
store_t *shard_read_store(shard_set_t *set);
/* Shard 'index''s own store (its writer's). */
store_t *shard_store(shard_set_t *set, uint32_t index);

/* A global transaction's leg as the batch hooks see it (shard_hook): set on the
 * writer thread from the leg's own rows (in_transaction) until its decision. Legs
 * prepare one shard after another, the home shard (0) last, so the home leg's hook
 * runs after every other leg's hook of the round. */
typedef struct {
    shard_set_t *set;
    const char *gtid;                    /* this round's */
    uint32_t shard;                      /* the shard this batch runs on */
    const writer_cmd_t *cmd;             /* the command as submitted: its events' ids in order */
    bool involved[SHARD_COUNT_MAX];      /* the shards with a leg in this round */
} shard_leg_view_t;
/* The leg this thread's batch is, or NULL (not a leg, or the set has no shard_hook). */
const shard_leg_view_t *shard_batch_leg(void);

/* Routes 'cmd' as writer_submit would (same contract: on PC_OK done() is called
 * once, after the commit or its failure). Installed on shard 0's writer by
 * shard_open, so that whoever submits to it reaches the whole set. */
PC_MUST_USE pc_status shard_submit(shard_set_t *set, writer_cmd_t *cmd);

/* Global transactions prepared or logged but not done, and the oldest one's age
 * (0 when none): the gauges paycore_2pc_in_doubt and
 * paycore_2pc_in_doubt_oldest_age_seconds. Refreshed by each recovery pass. */
void shard_in_doubt(shard_set_t *set, uint64_t *count, uint64_t *oldest_age_s);
/* Appends the gauges and counters to a Prometheus text (realloc'ed; NULL on no
 * memory, 'text' freed). 'set' NULL (no shards): the gauges at 0. */
char *shard_metrics_append(shard_set_t *set, char *text, size_t *bytes);
/* Counters since start: global transactions committed and aborted, recovery actions. */
typedef struct {
    uint64_t global_committed;
    uint64_t global_aborted;
    uint64_t recovered_committed;
    uint64_t recovered_aborted;
    uint64_t orphans_rolled_back;
} shard_stats_t;
void shard_stats(shard_set_t *set, shard_stats_t *out);

/* One recovery pass now (the periodic one calls it): every logged global transaction
 * without 'done' is finished (decision commit) or aborted (no decision), every
 * prepared 'pc_*' without an intent is rolled back. Waits for a running global
 * transaction to end. */
PC_MUST_USE pc_status shard_recover(shard_set_t *set);

/* `paycore verify --shards`: every shard verified as one store is (journal_verify_rows
 * over a snapshot of each, the snapshots opened together inside the set's read
 * fence), the list against the shard map, each pair's clearing accounts mirroring
 * each other, the set's clearing accounts netting to zero per currency, and no
 * global transaction left open (docs/scaleout.md §6). 'pubkeys' (NULL: the keys in
 * the checkpoints) has one public key file per shard. Returns PC_OK; PC_JOURNAL_MISMATCH
 * (report->discrepancy: a shard's, or a cross-shard one); PC_GLOBAL_TRANSACTION_IN_DOUBT
 * (report->in_doubt_detail names them); or why it could not run (report->detail). */
typedef struct {
    uint32_t count;
    journal_report_t shards[SHARD_COUNT_MAX];   /* each shard's own verify */
    pc_status shard_status[SHARD_COUNT_MAX];
    uint32_t verified;                          /* shards 0..verified-1 have their report */
    uint32_t clearing_accounts;
    uint64_t in_doubt;                          /* global transactions left open */
    char in_doubt_detail[JOURNAL_REPORT_TEXT_BYTES];
    char discrepancy[2 * JOURNAL_REPORT_TEXT_BYTES];
    char detail[JOURNAL_REPORT_TEXT_BYTES];
} shard_verify_t;
PC_MUST_USE pc_status shard_verify(const char *const *urls, uint32_t count, const char *const *pubkeys,
                                   shard_verify_t *report);
/* The summary line: "verify ok shards=N ...", "verify failed: ...", "verify in doubt:
 * ..." or "verify error: <code>: ...". Returns 'out'. */
const char *shard_verify_line(const shard_verify_t *report, pc_status status, char *out, size_t out_bytes);
/* ---- nodes: who writes the set (shard_node.c, docs/scaleout.md §7) ----
 * The node holding shard 0's writer's lock writes the whole set (a node takes the
 * shards' locks in order, shard 0's first). Other nodes find it through shard 0's
 * writers row and forward requests to the address it advertised. */
typedef struct shard_directory shard_directory_t;
/* A connection to the set's home shard ('home_url', shard 0) for reading its writers
 * row. Refusals: 'detail' says why (the shard not reachable, not paycore's). */
PC_MUST_USE pc_status shard_directory_open(shard_directory_t **out, const char *home_url, char *detail,
                                           size_t detail_bytes);
/* A writer's fence: "<shard 0's instance id>/<epoch>", which set and which takeover.
 * A forwarded request carries the fence its node read with the address; the writer
 * runs it only when the fence is its own (shard_fence_matches), so a row read before
 * a takeover, or an address now served by another set's writer, never runs a command
 * on the wrong node. */
#define SHARD_FENCE_SIZE 48
/* The set's writer's advertised address and fence (any thread): PC_OK, or
 * PC_SHARD_WRITER_UNAVAILABLE with 'why' saying which (no writer ever advertised, the
 * last one's session ended, shard 0 not readable). Read again after
 * SHARD_DIRECTORY_CACHE_MS, or at once after shard_directory_forget. */
PC_MUST_USE pc_status shard_directory_writer(shard_directory_t *directory, char *address, size_t address_bytes,
                                             char fence[SHARD_FENCE_SIZE], char *why, size_t why_bytes);
/* Whether 'fence' is this node's as the set's writer ('set' NULL: never). */
bool shard_fence_matches(const shard_set_t *set, const char *fence);
/* The address read last did not answer: the next call reads the row again. */
void shard_directory_forget(shard_directory_t *directory);
void shard_directory_close(shard_directory_t *directory);

#endif
