/* writer/writer.h: the single writer of one store (one shard). Any thread submits
 * commands into a bounded queue; the writer thread drains up to
 * WRITER_BATCH_EVENTS_MAX events, applies them to the ledger in order, writes the
 * batch (changes + journal row + each command's own rows) in ONE store transaction,
 * and completes every command after the commit: one fsync for many requests.
 * A failed commit rolls the ledger back and fails every command in the batch.
 * Expired pending transfers are voided by a timer inside this loop.
 * When the store fails for good (a failed COMMIT or fsync: store.h) the writer stops
 * writing, fails everything queued and refuses new commands with store_failed, and
 * calls config->failed: the process must exit and reload from the file. */
#ifndef PAYCORE_WRITER_H
#define PAYCORE_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger/ledger.h"
#include "paycore/status.h"
#include "store/store.h"

typedef enum {
    WRITER_CMD_CREATE_ACCOUNTS = 1,
    WRITER_CMD_CREATE_TRANSFERS = 2,
    WRITER_CMD_EXEC = 3, /* no ledger events: only in_transaction runs (API keys) */
} writer_cmd_kind;

typedef struct writer_cmd writer_cmd_t;
struct writer_cmd {
    /* public: set by the submitter, borrowed by the writer until done() */
    writer_cmd_kind kind;
    uint32_t event_count;                       /* 1..LEDGER_BATCH_EVENTS_MAX */
    const ledger_account_t *accounts;           /* CREATE_ACCOUNTS */
    ledger_account_result_t *account_results;   /* CREATE_ACCOUNTS: event_count slots */
    const ledger_transfer_t *transfers;         /* CREATE_TRANSFERS */
    ledger_transfer_result_t *transfer_results; /* CREATE_TRANSFERS: event_count slots */
    /* Tenancy. NULL: the command reaches every account (admin keys, tools). Otherwise
     * the owner it acts for (a merchant API key's id): its events reach only accounts
     * granted to that owner, decided as each event is applied (ledger_reach_t: anything
     * else fails exactly as a missing object), and each account it creates is granted
     * to it, in memory at once and in the store in the batch's transaction. */
    const char *owner_id;
    /* Optional: accounts this command grants to 'grantee_id' (a merchant key's
     * creation), held from this command on and written in the batch's transaction. */
    const char *grantee_id;
    const char *const *grant_account_ids;
    uint32_t grant_count;
    /* Optional. Runs on the writer thread after the ledger applied this command,
     * inside the batch's transaction (results are filled): write the command's own
     * rows (idempotency record, grants). An error fails the whole batch. */
    pc_status (*in_transaction)(writer_cmd_t *cmd, store_tx_t *tx);
    /* Called once, after the commit (PC_OK) or its failure (every result then void). */
    void (*done)(writer_cmd_t *cmd, pc_status commit_status);
    void *user;
    /* Optional: a leg of a global transaction (src/shard/, docs/scaleout.md §6). The
     * command runs in a batch of its own that ends with PREPARE TRANSACTION
     * 'pc_<gtid>' instead of COMMIT. Then 'decide' runs on the writer thread with
     * PC_OK (prepared; the results are filled) or why it could not prepare, may wait
     * there for the other shards' votes, and answers true to commit. Until then the
     * batch stays open in memory: no reader and no later batch sees a prepared leg as
     * committed, and a rollback undoes it. An aborted leg completes with
     * global_transaction_aborted. */
    const char *gtid;
    bool (*decide)(writer_cmd_t *cmd, pc_status prepare_status);
    /* Set by the writer: when the batch that carries it was drained (pc_mono_ns), so a
     * submitter can tell its wait in the queue from its batch's own time. */
    uint64_t batch_started_ns;
    /* private */
    writer_cmd_t *next;
};

/* A hook on every batch (the events outbox): 'in_transaction' runs on the writer
 * thread inside the batch's transaction, after each command's own in_transaction, when
 * the ledger changed; it sees everything the batch changed and may look committed
 * transfers up through 'source'. An error fails the whole batch. 'finished' runs
 * after every batch, once its commit succeeded (PC_OK) or failed. */
typedef struct {
    pc_status (*in_transaction)(void *ctx, store_tx_t *tx, const ledger_t *ledger,
                                const ledger_changes_t *changes, const ledger_source_t *source);
    void (*finished)(void *ctx, pc_status commit_status);
    void *ctx;
} writer_batch_hook_t;

/* Pending transfers this writer does not expire itself (ledger_expiry_hold): those
 * with an account whose id begins with 'prefix'; 'held' is told each one's id when it
 * is due (writer thread, inside a batch: it must not wait for the writer). */
typedef struct {
    const char *prefix;             /* NULL: none held */
    ledger_expiry_held_fn held;
    void *ctx;
} writer_expiry_hold_t;

typedef struct {
    uint32_t queue_events_max;   /* events waiting; past it submit answers writer_queue_full */
    uint32_t batch_events_max;   /* events drained into one transaction */
    /* Optional: called once, on the writer thread, when the store failed for good. */
    void (*failed)(void *ctx, pc_status status);
    void *failed_ctx;
    writer_batch_hook_t batch_hook; /* optional */
    writer_expiry_hold_t expiry_hold; /* optional */
    /* Where the store can (store_can_pipeline), a batch with commands waiting behind
     * it is written with the next one as two overlapping transactions (writer.c's
     * pipeline); true: one at a time (benchmarks compare the two). */
    bool no_pipeline;
} writer_config_t;

/* Counters for /metrics; read with writer_stats (any thread). */
typedef struct {
    uint64_t batches_committed;
    uint64_t batches_failed;
    uint64_t transfers_committed;
    uint64_t accounts_committed;
    uint64_t expired_committed;
    uint64_t batches_staged;     /* second parts staged while their first part committed (pipeline) */
    uint32_t queue_events;       /* now */
    uint64_t commit_ns_total;
    uint64_t batch_size_buckets[16]; /* events per batch: <=1,2,4,...,>32768 */
    uint64_t commit_ms_buckets[16];  /* commit latency, log2 ms buckets */
} writer_stats_t;

typedef struct writer writer_t;

/* Loads the ledger from 'store' and starts the writer thread. 'store' is borrowed
 * and must outlive the writer. 'key_path' is the journal signing key: checked
 * against the database's signed journal checkpoints before anything is loaded
 * (journal_key_open: PC_KEY_FILE_MISSING, PC_KEY_MISMATCH), created only for a
 * database nothing was signed for. */
PC_MUST_USE pc_status writer_start(writer_t **out, store_t *store, const char *key_path,
                                   const writer_config_t *config);
/* Enqueues 'cmd'. PC_WRITER_QUEUE_FULL, PC_SHUTTING_DOWN or PC_STORE_FAILED: not
 * enqueued, done() not called. */
PC_MUST_USE pc_status writer_submit(writer_t *writer, writer_cmd_t *cmd);
/* A router (src/shard/): from now on writer_submit hands every command to 'route',
 * which queues it here with writer_enqueue or on another shard's writer. Set once,
 * before any command is submitted. */
void writer_set_router(writer_t *writer, pc_status (*route)(void *ctx, writer_cmd_t *cmd), void *ctx);
/* writer_submit and writer_submit_wait on this writer itself, whatever the router. */
PC_MUST_USE pc_status writer_enqueue(writer_t *writer, writer_cmd_t *cmd);
PC_MUST_USE pc_status writer_enqueue_wait(writer_t *writer, writer_cmd_t *cmd);
/* Enqueues and waits for completion; returns the commit status. */
PC_MUST_USE pc_status writer_submit_wait(writer_t *writer, writer_cmd_t *cmd);
/* Stops accepting, commits everything queued, stops the thread and writes the final
 * balance snapshot (unless the store failed: memory may disagree with the file). The
 * writer stays readable (writer_stats) until writer_free, so a server can drain it
 * while requests still read its figures, and free it once nothing can reach it any
 * more. */
void writer_drain(writer_t *writer);
/* Frees a drained writer. */
void writer_free(writer_t *writer);
/* writer_drain, then writer_free. */
void writer_stop(writer_t *writer);
void writer_stats(writer_t *writer, writer_stats_t *out);
/* Readiness (any thread): false once the store failed for good, and while writes
 * fail in a way that may pass (full disk, file locked) until one works again. */
bool writer_can_commit(writer_t *writer);
/* PC_OK, or why the writer stopped writing for good (PC_STORE_FAILED). */
pc_status writer_failed(writer_t *writer);
/* On the writer thread while it writes a batch (a command's in_transaction, the
 * batch hook): the merchant keys granted the account 'account_id' as the batch leaves
 * them (grants held in memory: no query), the first 'owners_max' in key id order into
 * 'owners' (borrowed until the batch ends). False on any other thread or outside a
 * batch: ask the store then. */
bool writer_batch_account_owners(const char *account_id, const char **owners, uint32_t owners_max,
                                 uint32_t *count);
/* From a done() the writer runs (its completions of a batch part, or of what a failed
 * store refused): 'fn' runs once on the writer thread after the last done() of these
 * completions, however many commands ask for it; true when it will. A done() holds
 * back its hand-over to another thread (a wake-up) and 'fn' sends every held one at
 * once: one wake-up per batch, not one per command. False when called from anywhere
 * else (a done() another thread runs: a shard's router) or with no room left: then
 * nothing is held and the done() hands over at once. */
bool writer_completions_defer(void (*fn)(void));
/* The ledger, for tests and offline tools only (not while the writer runs batches). */
ledger_t *writer_ledger(writer_t *writer);

#endif
