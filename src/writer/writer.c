/* writer/writer.c: the single writer thread of one store. Submitters append to a
 * bounded queue under a mutex; the writer drains a batch, applies it to the ledger,
 * writes it in one store transaction with its journal row, and completes every
 * command after COMMIT returns (fsync): one fsync carries the whole batch. A batch
 * that failed before COMMIT undoes the batch in memory and fails every command in
 * it. Expired pending transfers are voided inside the same loop, woken by the next
 * deadline.
 *
 * A store that failed for good (a failed COMMIT or fsync, an I/O error: store.h)
 * stops the writer: the batch and everything queued fail with store_failed, new
 * commands are refused, no balance snapshot is written at stop (memory may disagree
 * with the file), and config.failed tells the process, which must exit and reload
 * from the file. After a failure that may pass (a full disk before COMMIT, a file
 * locked by another program) the writer retries with backoff: by the next command,
 * or by a probe write, never in a tight loop. */
#include "writer/writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "journal/journal.h"
#include "store/store_shard.h"
#include "writer/grants.h"

struct writer {
    store_t *store;           /* borrowed */
    ledger_t *ledger;         /* owned; touched by the writer thread only once started */
    ledger_source_t source;
    writer_grants_t *grants;  /* owners' accounts, for the ownership checks */
    journal_key_t key;
    journal_entry_t head;     /* last committed journal entry (seq, hash) */
    writer_config_t config;

    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t work;
    writer_cmd_t *queue_head; /* guarded by mutex */
    writer_cmd_t *queue_tail;
    uint32_t queue_events;
    bool stopping;
    pc_status failed;         /* guarded by mutex: PC_OK, or the store failed for good */
    bool can_commit;          /* guarded by mutex: the last write attempt worked */
    bool drained;             /* writer_drain ran (only its caller's thread reads it after) */
    writer_stats_t stats;     /* guarded by mutex */
    uint64_t retry_at_ns;     /* writer thread: no expiry or probe before (0: none due) */
    uint64_t retry_backoff_ns;
    pc_status (*route)(void *ctx, writer_cmd_t *cmd); /* writer_set_router; NULL: none */
    void *route_ctx;
};

static uint32_t cmd_events(const writer_cmd_t *cmd) {
    return cmd->kind == WRITER_CMD_EXEC ? 1 : cmd->event_count;
}

static uint32_t log2_bucket(uint64_t value) {
    uint32_t bucket = 0;
    while (value > 1 && bucket < 15) {
        value = (value + 1) / 2;
        bucket++;
    }
    return bucket;
}

/* Takes commands off the queue until the batch is full (always at least one). */
static writer_cmd_t *queue_drain(writer_t *writer) {
    writer_cmd_t *first = writer->queue_head, *last = NULL;
    uint32_t events = 0;
    uint64_t now_ns = pc_mono_ns();
    writer_cmd_t *cmd = first;
    while (cmd != NULL && (last == NULL || events + cmd_events(cmd) <= writer->config.batch_events_max)) {
        if (last != NULL && cmd->gtid != NULL) break; /* a global transaction's leg: a batch of its own */
        cmd->batch_started_ns = now_ns;
        events += cmd_events(cmd);
        last = cmd;
        cmd = cmd->next;
        if (first->gtid != NULL) break;
    }
    if (last == NULL) return NULL;
    writer->queue_head = last->next;
    if (writer->queue_head == NULL) writer->queue_tail = NULL;
    last->next = NULL;
    writer->queue_events -= events;
    return first;
}

/* Names every transfer id the batch may look up (its ids and pending ids) to the
 * store, which fetches them in one round trip where a lookup costs one (PostgreSQL).
 * A prefetch that fails only leaves the lookups to happen one by one. */
static uint32_t prefetch_count(const writer_cmd_t *cmds) {
    uint32_t count = 0;
    for (const writer_cmd_t *cmd = cmds; cmd != NULL; cmd = cmd->next) {
        if (cmd->kind == WRITER_CMD_CREATE_TRANSFERS) count += 2 * cmd->event_count;
    }
    return count;
}

static void prefetch_ids(const writer_cmd_t *cmds, const char **ids, uint32_t *count) {
    for (const writer_cmd_t *cmd = cmds; cmd != NULL; cmd = cmd->next) {
        if (cmd->kind != WRITER_CMD_CREATE_TRANSFERS) continue;
        for (uint32_t i = 0; i < cmd->event_count; i++) {
            ids[(*count)++] = cmd->transfers[i].id;
            if (cmd->transfers[i].pending_id[0] != '\0') ids[(*count)++] = cmd->transfers[i].pending_id;
        }
    }
}

/* 'more' (or NULL): a pipelined batch's second part, fetched in the same query. */
static void batch_prefetch(writer_t *writer, const writer_cmd_t *cmds, const writer_cmd_t *more) {
    if (!store_wants_prefetch(writer->store)) return;
    uint32_t count = prefetch_count(cmds) + prefetch_count(more);
    const char **ids = count > 0 ? malloc(sizeof(*ids) * count) : NULL;
    if (ids == NULL) return;
    count = 0;
    prefetch_ids(cmds, ids, &count);
    prefetch_ids(more, ids, &count);
    pc_status status = store_prefetch(writer->store, ids, count);
    if (status != PC_OK) {
        fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"prefetch failed\",\"code\":\"%s\"}\n",
                pc_status_code(status));
    }
    free(ids);
}

static void batch_apply(writer_t *writer, writer_cmd_t *cmds) {
    for (writer_cmd_t *cmd = cmds; cmd != NULL; cmd = cmd->next) {
        writer_reach_t reach_storage;
        const ledger_reach_t *reach = writer_grants_reach(writer->grants, cmd, &reach_storage);
        if (cmd->kind == WRITER_CMD_CREATE_ACCOUNTS) {
            ledger_create_accounts(writer->ledger, reach, cmd->accounts, cmd->event_count, cmd->account_results);
        } else if (cmd->kind == WRITER_CMD_CREATE_TRANSFERS) {
            ledger_create_transfers(writer->ledger, &writer->source, reach, cmd->transfers, cmd->event_count,
                                    cmd->transfer_results);
        }
        writer_grants_apply(writer->grants, writer->ledger, cmd); /* the next command sees them */
    }
}

/* Ledger rows: created accounts, transfers, burned ids. Everything else a batch
 * changes (balances, pending states, history) comes with a transfer. A linked chain
 * that failed leaves its accounts in accounts_touched (ledger.h: rewriting unchanged
 * balances is harmless) but nothing else: a batch of only such a chain has no rows. */
static bool changes_have_rows(const ledger_changes_t *c) {
    bool rows = c->accounts_created_count + c->transfers_count + c->failures_count > 0;
    if (!rows) PC_ASSERT(c->pending_changes_count == 0 && c->history_count == 0);
    return rows;
}

static bool cmds_need_tx(const writer_cmd_t *cmds) {
    for (const writer_cmd_t *cmd = cmds; cmd != NULL; cmd = cmd->next) {
        if (cmd->in_transaction != NULL || cmd->grant_count > 0) return true;
    }
    return false;
}

static void entry_build(const journal_entry_t *prev, const ledger_changes_t *c, journal_content_t *content,
                        journal_entry_t *entry) {
    memset(entry, 0, sizeof(*entry));
    entry->seq = prev->seq + 1;
    entry->timestamp_first_ns = c->timestamp_first_ns;
    entry->timestamp_last_ns = c->timestamp_last_ns;
    entry->account_count = c->accounts_created_count;
    entry->transfer_count = c->transfers_count;
    entry->failure_count = c->failures_count;
    journal_content_final(content, entry->content_hash);
    memcpy(entry->prev_hash, prev->hash, JOURNAL_HASH_BYTES);
    journal_entry_seal(entry);
}

/* The batch's ledger rows 'c' and its journal row (seq = prev's + 1), in 'tx'. */
static pc_status changes_write(writer_t *writer, store_tx_t *tx, const ledger_changes_t *c,
                               const journal_entry_t *prev, journal_entry_t *entry) {
    journal_content_t content;
    journal_content_init(&content);
    pc_status status = store_tx_write_changes(tx, writer->ledger, c, prev->seq + 1, &content);
    if (status != PC_OK) return status;
    entry_build(prev, c, &content, entry);
    journal_checkpoint_t checkpoint;
    bool checkpoint_due = entry->seq % JOURNAL_CHECKPOINT_BATCHES == 0;
    if (checkpoint_due) journal_checkpoint_sign(&writer->key, entry, &checkpoint);
    return store_tx_write_journal(tx, entry, checkpoint_due ? &checkpoint : NULL);
}

/* Writes the batch in one transaction; PC_OK only when durable. *journaled says
 * whether it had ledger rows (and so a journal row and the next seq); a batch
 * without them (API keys, idempotent replays) writes only its commands' rows. */
/* A batch of a global transaction's leg (queue_drain gives it a batch of its own; an
 * expiry batch has no commands). */
static bool batch_is_leg(const writer_cmd_t *cmds) { return cmds != NULL && cmds->gtid != NULL; }

/* A global transaction's leg: PREPARE, the coordinator's decision, then COMMIT
 * PREPARED or ROLLBACK PREPARED. 'tx' is NULL when the leg wrote nothing. */
static pc_status batch_two_phase(writer_cmd_t *cmd, store_tx_t *tx, bool *decided) {
    pc_status status = tx != NULL ? store_tx_prepare(tx, cmd->gtid) : PC_OK;
    *decided = true;
    bool commit = cmd->decide(cmd, status);
    if (status != PC_OK) return status;
    if (tx == NULL) return commit ? PC_OK : PC_GLOBAL_TRANSACTION_ABORTED;
    if (commit) return store_tx_commit_prepared(tx);
    status = store_tx_rollback_prepared(tx);
    return status == PC_OK ? PC_GLOBAL_TRANSACTION_ABORTED : status;
}

static pc_status batch_write(writer_t *writer, writer_cmd_t *cmds, journal_entry_t *entry, bool *journaled,
                             bool *hook_failed, bool *decided) {
    const ledger_changes_t *c = ledger_batch_changes(writer->ledger);
    *journaled = changes_have_rows(c);
    if (!*journaled && !cmds_need_tx(cmds)) return batch_is_leg(cmds) ? batch_two_phase(cmds, NULL, decided) : PC_OK;
    store_tx_t *tx;
    pc_status status = store_tx_begin(writer->store, &tx);
    if (status != PC_OK) return status;
    if (*journaled) status = changes_write(writer, tx, c, &writer->head, entry);
    for (writer_cmd_t *cmd = cmds; status == PC_OK && cmd != NULL; cmd = cmd->next) {
        status = writer_grants_write(cmd, tx);
        if (status == PC_OK && cmd->in_transaction != NULL) status = cmd->in_transaction(cmd, tx);
        *hook_failed = status != PC_OK;
    }
    const writer_batch_hook_t *hook = &writer->config.batch_hook;
    /* a leg without ledger rows too: the home leg writes the other legs' events */
    if (status == PC_OK && (*journaled || batch_is_leg(cmds)) && hook->in_transaction != NULL) {
        status = hook->in_transaction(hook->ctx, tx, writer->ledger, c, &writer->source);
    }
    if (status != PC_OK) {
        store_tx_rollback(tx);
        return store_failed(writer->store) != PC_OK ? store_failed(writer->store) : status;
    }
    return batch_is_leg(cmds) ? batch_two_phase(cmds, tx, decided) : store_tx_commit(tx);
}

static void stats_record(writer_t *writer, const ledger_changes_t *c, uint32_t events, uint32_t expired,
                         uint64_t commit_ns, pc_status status) {
    pthread_mutex_lock(&writer->mutex);
    writer_stats_t *s = &writer->stats;
    if (status == PC_OK) {
        s->batches_committed++;
        s->transfers_committed += c->transfers_count - expired;
        s->accounts_committed += c->accounts_created_count;
        s->expired_committed += expired;
        s->commit_ns_total += commit_ns;
        s->batch_size_buckets[log2_bucket(events)]++;
        s->commit_ms_buckets[log2_bucket(commit_ns / 1000000u)]++;
    } else {
        s->batches_failed++;
    }
    pthread_mutex_unlock(&writer->mutex);
}

/* What the done() calls of one cmds_complete asked to run after them
 * (writer_completions_defer): this thread's, so no lock. */
#define WRITER_COMPLETION_HOOKS_MAX 4
static _Thread_local struct {
    bool completing;
    uint32_t count;
    void (*hooks[WRITER_COMPLETION_HOOKS_MAX])(void);
} completions;

bool writer_completions_defer(void (*fn)(void)) {
    if (!completions.completing) return false;
    for (uint32_t i = 0; i < completions.count; i++) {
        if (completions.hooks[i] == fn) return true;
    }
    if (completions.count == WRITER_COMPLETION_HOOKS_MAX) return false;
    completions.hooks[completions.count++] = fn;
    return true;
}

static void cmds_complete(writer_cmd_t *cmds, pc_status status) {
    bool outer = !completions.completing;
    completions.completing = true;
    writer_cmd_t *cmd = cmds;
    while (cmd != NULL) {
        writer_cmd_t *next = cmd->next;
        cmd->next = NULL;
        if (cmd->done != NULL) cmd->done(cmd, status);
        cmd = next;
    }
    if (!outer) return;
    completions.completing = false;
    uint32_t count = completions.count;
    completions.count = 0;
    for (uint32_t i = 0; i < count; i++) completions.hooks[i]();
}

/* The store failed for good: refuse new commands, fail what waits, tell the process. */
static void writer_fail(writer_t *writer, pc_status status) {
    pthread_mutex_lock(&writer->mutex);
    bool first = writer->failed == PC_OK;
    writer->failed = status;
    writer->can_commit = false;
    writer_cmd_t *queued = writer->queue_head;
    writer->queue_head = writer->queue_tail = NULL;
    writer->queue_events = 0;
    pthread_mutex_unlock(&writer->mutex);
    cmds_complete(queued, status);
    if (!first) return;
    fprintf(stderr, "{\"level\":\"error\",\"msg\":\"writer stopped: the database failed to write;"
            " memory may disagree with the file, so nothing more is written; restart to reload from the"
            " file\",\"code\":\"%s\",\"detail\":\"%s\"}\n",
            pc_status_code(status), store_error_detail(writer->store));
    if (writer->config.failed != NULL) writer->config.failed(writer->config.failed_ctx, status);
}

/* After a batch: what the store said about itself, and when to try again. */
static void health_record(writer_t *writer, pc_status status) {
    bool can_commit = store_writable(writer->store);
    pthread_mutex_lock(&writer->mutex);
    writer->can_commit = can_commit && writer->failed == PC_OK;
    pthread_mutex_unlock(&writer->mutex);
    if (status == PC_OK) {
        writer->retry_at_ns = 0;
        writer->retry_backoff_ns = 0;
        return;
    }
    uint64_t backoff_ns = writer->retry_backoff_ns == 0 ? WRITER_RETRY_BACKOFF_NS_MIN : 2 * writer->retry_backoff_ns;
    writer->retry_backoff_ns = backoff_ns < WRITER_RETRY_BACKOFF_NS_MAX ? backoff_ns : WRITER_RETRY_BACKOFF_NS_MAX;
    writer->retry_at_ns = pc_wall_ns() + writer->retry_backoff_ns;
}

/* The writer whose batch this thread is writing (NULL outside batch_write). */
static _Thread_local writer_t *batch_writer;

bool writer_batch_account_owners(const char *account_id, const char **owners, uint32_t owners_max,
                                 uint32_t *count) {
    *count = 0;
    writer_t *writer = batch_writer;
    if (writer == NULL) return false;
    *count = writer_grants_owners_by_id(writer->grants, writer->ledger, account_id, owners, owners_max);
    return true;
}

static void batch_run(writer_t *writer, writer_cmd_t *cmds) {
    ledger_batch_begin(writer->ledger, pc_wall_ns());
    uint32_t expired = ledger_expire_due(writer->ledger, WRITER_EXPIRE_PER_BATCH_MAX);
    batch_prefetch(writer, cmds, NULL);
    batch_apply(writer, cmds);
    uint32_t events = 0;
    for (writer_cmd_t *cmd = cmds; cmd != NULL; cmd = cmd->next) events += cmd_events(cmd);
    journal_entry_t entry;
    bool journaled = false, hook_failed = false, decided = false;
    uint64_t commit_start_ns = pc_mono_ns();
    batch_writer = writer;
    pc_status status = batch_write(writer, cmds, &entry, &journaled, &hook_failed, &decided);
    batch_writer = NULL;
    if (batch_is_leg(cmds) && !decided) (void)cmds->decide(cmds, status); /* a no vote: nothing prepared */
    uint64_t commit_ns = pc_mono_ns() - commit_start_ns;
    const writer_batch_hook_t *hook = &writer->config.batch_hook;
    if (hook->finished != NULL) hook->finished(hook->ctx, status);
    const ledger_changes_t *c = ledger_batch_changes(writer->ledger);
    stats_record(writer, c, events, expired, commit_ns, status);
    if (status == PC_OK) {
        PC_ASSERT_SLOW(ledger_balanced(writer->ledger, NULL));
        if (journaled) writer->head = entry;
        PC_ASSERT(store_journal_head_seq(writer->store) == writer->head.seq);
        ledger_batch_commit(writer->ledger);
        writer_grants_commit(writer->grants);
    } else {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"batch commit failed\",\"code\":\"%s\",\"detail\":\"%s\"}\n",
                pc_status_code(status), hook_failed ? "a command's own rows (in_transaction) failed"
                                                    : store_error_detail(writer->store));
        ledger_batch_rollback(writer->ledger);
        writer_grants_rollback(writer->grants);
    }
    health_record(writer, status);
    /* A store failed for good is marked (and the process told) before any submitter
     * learns of this batch: its next command must find the writer failed. */
    if (store_failed(writer->store) != PC_OK) writer_fail(writer, store_failed(writer->store));
    cmds_complete(cmds, status); /* after the commit, never before */
}

/* ---- the pipeline: one ledger batch written as two transactions ----
 * When commands wait behind a batch, the writer applies both to the ledger as one
 * batch and writes them as two store transactions: the first part's rows go in (a
 * thread of the store's sends them) while the writer applies the second part and
 * stages it on a second connection (store_tx_begin_next); then the first COMMIT and,
 * only once it worked, the second. The server inserts both parts' rows at once (its
 * index work, most of a batch's time, on two cores), and the ledger sees one batch, so
 * the second part's lookups find the first part's ids and pendings. The first part's
 * commands are answered after its COMMIT, the second's after theirs. If the first
 * fails, the second is rolled back with it (memory too) and its commands run again as
 * a batch of their own; if only the second fails, memory goes back to the mark
 * between them. Only plain ledger commands pipeline: no global transaction, no rows
 * of their own, no grants, no batch hook (their rows would need the first part). */

static bool cmd_pipelines(const writer_cmd_t *cmd) {
    bool plain = cmd->kind == WRITER_CMD_CREATE_TRANSFERS ||
                 (cmd->kind == WRITER_CMD_CREATE_ACCOUNTS && cmd->owner_id == NULL);
    return plain && cmd->gtid == NULL && cmd->in_transaction == NULL && cmd->grant_count == 0;
}

static bool cmds_pipeline(const writer_cmd_t *cmds) {
    for (const writer_cmd_t *cmd = cmds; cmd != NULL; cmd = cmd->next) {
        if (!cmd_pipelines(cmd)) return false;
    }
    return cmds != NULL;
}

static bool writer_pipelines(const writer_t *writer) {
    const writer_batch_hook_t *hook = &writer->config.batch_hook;
    return !writer->config.no_pipeline && store_can_pipeline(writer->store) && hook->in_transaction == NULL &&
           hook->finished == NULL;
}

typedef struct {
    writer_cmd_t *cmds;
    ledger_changes_t changes;  /* after the second part is applied: its counts only */
    bool journaled;
    journal_entry_t entry;
    store_tx_t *tx;
    pc_status status;
    uint64_t commit_ns;
} writer_part_t;

/* The part's rows and journal row (after 'prev') into its transaction; on failure
 * the transaction is rolled back. */
static void part_write(writer_t *writer, writer_part_t *part, const journal_entry_t *prev) {
    part->status = changes_write(writer, part->tx, &part->changes, prev, &part->entry);
    if (part->status == PC_OK) return;
    store_tx_rollback(part->tx);
    part->tx = NULL;
}

static void part_commit(writer_part_t *part) {
    if (part->tx == NULL) return;
    uint64_t start_ns = pc_mono_ns();
    part->status = store_tx_commit(part->tx);
    part->tx = NULL;
    part->commit_ns = pc_mono_ns() - start_ns;
}

static uint32_t cmds_event_count(const writer_cmd_t *cmds) {
    uint32_t events = 0;
    for (const writer_cmd_t *cmd = cmds; cmd != NULL; cmd = cmd->next) events += cmd_events(cmd);
    return events;
}

static void part_failed_log(writer_t *writer, pc_status status) {
    fprintf(stderr, "{\"level\":\"error\",\"msg\":\"batch commit failed\",\"code\":\"%s\",\"detail\":\"%s\"}\n",
            pc_status_code(status), store_error_detail(writer->store));
}

/* After a part: stats, health, a store failed for good. */
static void part_record(writer_t *writer, const writer_part_t *part, uint32_t expired) {
    stats_record(writer, &part->changes, cmds_event_count(part->cmds), expired, part->commit_ns, part->status);
    health_record(writer, part->status);
    if (store_failed(writer->store) != PC_OK) writer_fail(writer, store_failed(writer->store));
}

/* The first part applied and its transaction written, the next one begun beside it. */
static void pair_first(writer_t *writer, writer_part_t *first, writer_part_t *second) {
    batch_apply(writer, first->cmds);
    first->changes = *ledger_batch_changes(writer->ledger);
    first->journaled = changes_have_rows(&first->changes);
    if (!first->journaled) return;
    first->status = store_tx_begin(writer->store, &first->tx);
    if (first->status != PC_OK) return;
    if (store_tx_begin_next(first->tx, &second->tx) != PC_OK) second->tx = NULL; /* written after, then */
    part_write(writer, first, &writer->head);
}

/* The second part applied; staged when it only adds rows (pending changes update rows
 * the first part's transaction may hold), else its transaction waits for the first. */
static void pair_second(writer_t *writer, writer_part_t *first, writer_part_t *second, const ledger_mark_t *mark) {
    batch_apply(writer, second->cmds);
    ledger_batch_changes_since(writer->ledger, mark, &second->changes);
    second->journaled = changes_have_rows(&second->changes);
    bool staged = second->tx != NULL && first->status == PC_OK && second->journaled &&
                  second->changes.pending_changes_count == 0;
    if (!staged && second->tx != NULL) {
        store_tx_rollback(second->tx);
        second->tx = NULL;
    }
    if (staged) part_write(writer, second, first->journaled ? &first->entry : &writer->head);
    if (second->tx != NULL) {
        pthread_mutex_lock(&writer->mutex);
        writer->stats.batches_staged++;
        pthread_mutex_unlock(&writer->mutex);
    }
    if (second->tx == NULL) second->status = PC_OK; /* a staging that failed: written after */
}

/* The first part failed: the second goes with it, and runs again alone. */
static void pair_first_failed(writer_t *writer, writer_part_t *first, writer_part_t *second, uint32_t expired) {
    if (second->tx != NULL) store_tx_rollback(second->tx);
    part_failed_log(writer, first->status);
    ledger_batch_rollback(writer->ledger);
    writer_grants_rollback(writer->grants);
    part_record(writer, first, expired);
    cmds_complete(first->cmds, first->status);
    batch_run(writer, second->cmds);
}

static void batch_run_pair(writer_t *writer, writer_cmd_t *first_cmds, writer_cmd_t *second_cmds) {
    writer_part_t first = {.cmds = first_cmds}, second = {.cmds = second_cmds};
    ledger_batch_begin(writer->ledger, pc_wall_ns());
    uint32_t expired = ledger_expire_due(writer->ledger, WRITER_EXPIRE_PER_BATCH_MAX);
    batch_prefetch(writer, first_cmds, second_cmds);
    pair_first(writer, &first, &second);
    ledger_mark_t mark;
    ledger_batch_mark(writer->ledger, &mark);
    pair_second(writer, &first, &second, &mark);
    part_commit(&first);
    if (first.status != PC_OK) {
        pair_first_failed(writer, &first, &second, expired);
        return;
    }
    if (first.journaled) writer->head = first.entry;
    PC_ASSERT(store_journal_head_seq(writer->store) == writer->head.seq);
    part_record(writer, &first, expired);
    cmds_complete(first_cmds, PC_OK); /* durable: answered before the second part's COMMIT */
    if (second.tx == NULL && second.journaled) {
        second.status = store_tx_begin(writer->store, &second.tx);
        if (second.status == PC_OK) part_write(writer, &second, &writer->head);
    }
    part_commit(&second);
    if (second.status == PC_OK) {
        PC_ASSERT_SLOW(ledger_balanced(writer->ledger, NULL));
        if (second.journaled) writer->head = second.entry;
        PC_ASSERT(store_journal_head_seq(writer->store) == writer->head.seq);
    } else {
        part_failed_log(writer, second.status);
        ledger_batch_rollback_to(writer->ledger, &mark);
    }
    ledger_batch_commit(writer->ledger);
    writer_grants_commit(writer->grants);
    part_record(writer, &second, 0);
    cmds_complete(second_cmds, second.status);
}

/* While the store is not writable and nothing else runs: one small write, with
 * backoff, to learn when it works again (readiness follows it). */
static void probe_run(writer_t *writer) {
    pc_status status = store_probe(writer->store);
    health_record(writer, status);
    if (store_failed(writer->store) != PC_OK) writer_fail(writer, store_failed(writer->store));
}

/* The next time the writer must wake without new work: an expiry deadline, or the
 * retry after a failure (whichever it waits for, never before the backoff). */
static uint64_t wake_at_ns(const writer_t *writer, bool *probe) {
    uint64_t deadline_ns = ledger_expiry_next_ns(writer->ledger);
    *probe = writer->retry_at_ns != 0 && !writer->can_commit;
    if (*probe) return writer->retry_at_ns;
    if (deadline_ns != 0 && deadline_ns < writer->retry_at_ns) return writer->retry_at_ns; /* backoff */
    return deadline_ns;
}

typedef enum { WAKE_WORK, WAKE_EXPIRY, WAKE_PROBE, WAKE_STOP } writer_wake;

/* Waits for work or for the next deadline; returns why it woke, with the drained
 * commands in *cmds for WAKE_WORK, and in *more a second batch's when commands wait
 * behind the first and both can be pipelined. A failed writer only waits for the stop. */
static writer_wake wait_for_work(writer_t *writer, writer_cmd_t **cmds, writer_cmd_t **more) {
    *cmds = NULL;
    *more = NULL;
    while (!writer->stopping && (writer->queue_head == NULL || writer->failed != PC_OK)) {
        bool probe = false;
        uint64_t at_ns = writer->failed == PC_OK ? wake_at_ns(writer, &probe) : 0;
        if (at_ns == 0) {
            pthread_cond_wait(&writer->work, &writer->mutex);
            continue;
        }
        if (at_ns <= pc_wall_ns()) return probe ? WAKE_PROBE : WAKE_EXPIRY;
        struct timespec until = {(time_t)(at_ns / 1000000000u), (long)(at_ns % 1000000000u)};
        pthread_cond_timedwait(&writer->work, &writer->mutex, &until);
    }
    if (writer->failed != PC_OK || writer->queue_head == NULL) return WAKE_STOP;
    *cmds = queue_drain(writer);
    if (writer->queue_head != NULL && cmd_pipelines(writer->queue_head) && cmds_pipeline(*cmds) &&
        writer_pipelines(writer)) {
        *more = queue_drain(writer);
    }
    return WAKE_WORK;
}

static void *writer_main(void *arg) {
    writer_t *writer = arg;
    pthread_mutex_lock(&writer->mutex);
    for (;;) {
        writer_cmd_t *cmds, *more;
        writer_wake wake = wait_for_work(writer, &cmds, &more);
        if (wake == WAKE_STOP) break; /* stopping with the queue empty, or failed */
        writer->stats.queue_events = writer->queue_events;
        pthread_mutex_unlock(&writer->mutex);
        if (wake == WAKE_PROBE) {
            probe_run(writer);
        } else if (more != NULL && cmds_pipeline(more)) {
            batch_run_pair(writer, cmds, more);
        } else {
            batch_run(writer, cmds);
            if (more != NULL) batch_run(writer, more);
        }
        pthread_mutex_lock(&writer->mutex);
    }
    pthread_mutex_unlock(&writer->mutex);
    return NULL;
}

/* The signing key first: a missing or foreign key refuses the start before anything
 * is loaded or created. */
static pc_status key_open(writer_t *writer, const char *key_path) {
    uint8_t signer[JOURNAL_PUBLIC_KEY_BYTES];
    pc_status status = store_journal_signer(writer->store, signer);
    if (status != PC_OK && status != PC_NOT_FOUND) return status;
    bool created = false;
    pc_status key_status = journal_key_open(key_path, status == PC_OK ? signer : NULL, &writer->key, &created);
    if (key_status == PC_KEY_FILE_MISSING || key_status == PC_KEY_MISMATCH) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"%s: %s\",\"code\":\"%s\"}\n", key_path,
                key_status == PC_KEY_MISMATCH
                    ? "the signing key does not match the public key of the database's signed checkpoints"
                      " or its .pub file; restore the right key"
                    : "the signing key is missing and the database has signed checkpoints or a .pub file;"
                      " restore the key from its backup",
                pc_status_code(key_status));
    } else if (created) {
        fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"signing key created\",\"path\":\"%s\"}\n", key_path);
    }
    return key_status;
}

static pc_status writer_load(writer_t *writer, const char *key_path) {
    pc_status status = key_open(writer, key_path);
    if (status != PC_OK) return status;
    status = ledger_open(&writer->ledger);
    if (status != PC_OK) return status;
    const writer_expiry_hold_t *hold = &writer->config.expiry_hold;
    if (hold->prefix != NULL) ledger_expiry_hold(writer->ledger, hold->prefix, hold->held, hold->ctx);
    status = store_load(writer->store, writer->ledger, &writer->head);
    if (status != PC_OK) return status;
    writer->source = store_source(writer->store);
    status = writer_grants_open(&writer->grants);
    if (status != PC_OK) return status;
    return writer_grants_load(writer->grants, writer->store, writer->ledger);
}

pc_status writer_start(writer_t **out, store_t *store, const char *key_path, const writer_config_t *config) {
    writer_t *writer = calloc(1, sizeof(*writer));
    if (writer == NULL) return PC_NO_MEMORY;
    writer->store = store;
    if (config != NULL) writer->config = *config;
    writer->config.queue_events_max = config && config->queue_events_max ? config->queue_events_max : WRITER_QUEUE_DEPTH_MAX;
    writer->config.batch_events_max = config && config->batch_events_max ? config->batch_events_max : WRITER_BATCH_EVENTS_MAX;
    if (writer->config.queue_events_max < LEDGER_BATCH_EVENTS_MAX) writer->config.queue_events_max = LEDGER_BATCH_EVENTS_MAX;
    /* The store keeps room for one batch of this size past its index back-pressure. */
    if (writer->config.batch_events_max > WRITER_BATCH_EVENTS_MAX) writer->config.batch_events_max = WRITER_BATCH_EVENTS_MAX;
    pc_status status = writer_load(writer, key_path);
    if (status != PC_OK) {
        ledger_close(writer->ledger);
        writer_grants_close(writer->grants);
        journal_key_wipe(&writer->key);
        free(writer);
        return status;
    }
    pthread_mutex_init(&writer->mutex, NULL);
    pthread_cond_init(&writer->work, NULL);
    writer->can_commit = store_writable(store);
    if (pthread_create(&writer->thread, NULL, writer_main, writer) != 0) {
        ledger_close(writer->ledger);
        writer_grants_close(writer->grants);
        free(writer);
        return PC_INTERNAL;
    }
    pthread_setname_np(writer->thread, "paycore-writer"); /* per-thread CPU in top, perf, bench_payments */
    *out = writer;
    return PC_OK;
}

void writer_set_router(writer_t *writer, pc_status (*route)(void *ctx, writer_cmd_t *cmd), void *ctx) {
    writer->route = route;
    writer->route_ctx = ctx;
}

pc_status writer_submit(writer_t *writer, writer_cmd_t *cmd) {
    if (writer->route != NULL) return writer->route(writer->route_ctx, cmd);
    return writer_enqueue(writer, cmd);
}

pc_status writer_enqueue(writer_t *writer, writer_cmd_t *cmd) {
    PC_ASSERT(cmd->kind == WRITER_CMD_EXEC || (cmd->event_count >= 1 && cmd->event_count <= LEDGER_BATCH_EVENTS_MAX));
    cmd->next = NULL;
    pthread_mutex_lock(&writer->mutex);
    pc_status status = PC_OK;
    if (writer->failed != PC_OK) {
        status = writer->failed;
    } else if (writer->stopping) {
        status = PC_SHUTTING_DOWN;
    } else if (writer->queue_events + cmd_events(cmd) > writer->config.queue_events_max) {
        status = PC_WRITER_QUEUE_FULL;
    } else {
        if (writer->queue_tail != NULL) writer->queue_tail->next = cmd;
        else writer->queue_head = cmd;
        writer->queue_tail = cmd;
        writer->queue_events += cmd_events(cmd);
        pthread_cond_signal(&writer->work);
    }
    pthread_mutex_unlock(&writer->mutex);
    return status;
}

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool finished;
    pc_status status;
} submit_wait_t;

static void submit_wait_done(writer_cmd_t *cmd, pc_status commit_status) {
    submit_wait_t *wait = cmd->user;
    pthread_mutex_lock(&wait->mutex);
    wait->finished = true;
    wait->status = commit_status;
    pthread_cond_signal(&wait->cond);
    pthread_mutex_unlock(&wait->mutex);
}

/* Uses cmd->done and cmd->user itself: the caller leaves them unset. */
static pc_status submit_wait(writer_t *writer, writer_cmd_t *cmd,
                             pc_status (*submit)(writer_t *writer, writer_cmd_t *cmd)) {
    PC_ASSERT(cmd->done == NULL);
    submit_wait_t wait = {.finished = false};
    pthread_mutex_init(&wait.mutex, NULL);
    pthread_cond_init(&wait.cond, NULL);
    cmd->done = submit_wait_done;
    cmd->user = &wait;
    pc_status status = submit(writer, cmd);
    if (status == PC_OK) {
        pthread_mutex_lock(&wait.mutex);
        while (!wait.finished) pthread_cond_wait(&wait.cond, &wait.mutex);
        pthread_mutex_unlock(&wait.mutex);
        status = wait.status;
    }
    cmd->done = NULL;
    cmd->user = NULL;
    pthread_cond_destroy(&wait.cond);
    pthread_mutex_destroy(&wait.mutex);
    return status;
}

pc_status writer_submit_wait(writer_t *writer, writer_cmd_t *cmd) { return submit_wait(writer, cmd, writer_submit); }
pc_status writer_enqueue_wait(writer_t *writer, writer_cmd_t *cmd) { return submit_wait(writer, cmd, writer_enqueue); }

void writer_drain(writer_t *writer) {
    if (writer == NULL) return;
    pthread_mutex_lock(&writer->mutex);
    bool drained = writer->drained;
    writer->stopping = true;
    writer->drained = true;
    pthread_cond_signal(&writer->work);
    pthread_mutex_unlock(&writer->mutex);
    if (drained) return;
    pthread_join(writer->thread, NULL);
    /* A failed store refuses the snapshot: memory may disagree with the file. */
    pc_status status = store_balance_snapshot(writer->store, writer->ledger);
    if (status != PC_OK) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"balance snapshot at stop not written; the next start"
                " re-derives the balances from the transfers\",\"code\":\"%s\",\"detail\":\"%s\"}\n",
                pc_status_code(status), store_error_detail(writer->store));
    }
}

void writer_free(writer_t *writer) {
    if (writer == NULL) return;
    PC_ASSERT(writer->drained);
    ledger_close(writer->ledger);
    writer_grants_close(writer->grants);
    journal_key_wipe(&writer->key);
    pthread_cond_destroy(&writer->work);
    pthread_mutex_destroy(&writer->mutex);
    free(writer);
}

void writer_stop(writer_t *writer) {
    writer_drain(writer);
    writer_free(writer);
}

void writer_stats(writer_t *writer, writer_stats_t *out) {
    pthread_mutex_lock(&writer->mutex);
    *out = writer->stats;
    out->queue_events = writer->queue_events;
    pthread_mutex_unlock(&writer->mutex);
}

bool writer_can_commit(writer_t *writer) {
    pthread_mutex_lock(&writer->mutex);
    bool can_commit = writer->can_commit && writer->failed == PC_OK && !writer->stopping;
    pthread_mutex_unlock(&writer->mutex);
    return can_commit;
}

pc_status writer_failed(writer_t *writer) {
    pthread_mutex_lock(&writer->mutex);
    pc_status failed = writer->failed;
    pthread_mutex_unlock(&writer->mutex);
    return failed;
}

ledger_t *writer_ledger(writer_t *writer) { return writer->ledger; }
