/* events/flush.c: the delivery threads' state (cursors, retrying and dead-lettered
 * deliveries, endpoint health, retention) is written through the writer, like every
 * other row: the store has one writer. A delivery thread queues ops; kick() hands
 * them over as ONE writer command (they ride along the ledger's next batch, no fsync
 * of their own) and never waits for it; at most one command runs at a time, so ops
 * apply in the order they were queued. A command that failed to commit gives its ops
 * back to the front of the queue. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "obs/obs.h"

typedef struct {
    writer_cmd_t cmd;              /* first: done() gets &run->cmd */
    events_flusher_t *flusher;
    events_op_t *ops;
    uint32_t count;
    uint32_t purged;
    uint32_t purges;               /* purge ops in this run */
} flush_run;

struct events_flusher {
    writer_t *writer;              /* borrowed */
    void (*wake)(void *ctx);
    void *wake_ctx;
    events_op_t *pending;          /* owner thread only */
    uint32_t pending_count;
    uint32_t pending_capacity;
    pthread_mutex_t mutex;         /* guards running, finished, status */
    pthread_cond_t cond;
    bool running;
    bool finished;
    pc_status status;
    flush_run run;
    _Atomic uint64_t purged_total; /* events deleted by retention, committed runs */
    _Atomic uint64_t purge_runs;   /* purge ops committed */
    uint32_t last_purged;          /* by the last committed run (owner thread) */
};

events_flusher_t *events_flusher_new(writer_t *writer, void (*wake)(void *ctx), void *ctx) {
    events_flusher_t *flusher = calloc(1, sizeof(*flusher));
    if (flusher == NULL) return NULL;
    flusher->writer = writer;
    flusher->wake = wake;
    flusher->wake_ctx = ctx;
    flusher->run.flusher = flusher;
    pthread_mutex_init(&flusher->mutex, NULL);
    pthread_cond_init(&flusher->cond, NULL);
    return flusher;
}

void events_flusher_free(events_flusher_t *flusher) {
    if (flusher == NULL) return;
    PC_ASSERT(!flusher->running);
    free(flusher->pending);
    free(flusher->run.ops);
    pthread_cond_destroy(&flusher->cond);
    pthread_mutex_destroy(&flusher->mutex);
    free(flusher);
}

bool events_flusher_add(events_flusher_t *flusher, const events_op_t *op) {
    if (flusher->pending_count == flusher->pending_capacity) {
        uint32_t capacity = flusher->pending_capacity ? 2 * flusher->pending_capacity : 256;
        events_op_t *grown = realloc(flusher->pending, sizeof(events_op_t) * capacity);
        if (grown == NULL) return false;
        flusher->pending = grown;
        flusher->pending_capacity = capacity;
    }
    flusher->pending[flusher->pending_count++] = *op;
    return true;
}

uint32_t events_flusher_pending(events_flusher_t *flusher) {
    return flusher->pending_count;
}

const events_op_t *events_flusher_ops(const events_flusher_t *flusher, uint32_t *count) {
    *count = flusher->pending_count;
    return flusher->pending;
}

void events_flusher_discard(events_flusher_t *flusher) {
    flusher->pending_count = 0;
}

void events_flusher_purge_counts(events_flusher_t *flusher, uint64_t *runs, uint64_t *purged) {
    *runs = atomic_load(&flusher->purge_runs);
    *purged = atomic_load(&flusher->purged_total);
}

static pc_status op_apply(store_tx_t *tx, const events_op_t *op, uint32_t *purged) {
    switch (op->kind) {
    case EVENTS_OP_CURSOR:
        return store_events_cursor_advance(tx, op->destination_id, op->epoch, op->seq);
    case EVENTS_OP_DELIVERY_PUT:
        return store_events_delivery_put(tx, &op->delivery, op->epoch);
    case EVENTS_OP_DELIVERY_DELETE:
        return store_events_delivery_delete(tx, op->destination_id, op->seq);
    case EVENTS_OP_HEALTH:
        return store_events_destination_health(tx, op->destination_id, op->failing_since_ns, op->disabled_ns,
                                               op->reason);
    case EVENTS_OP_PURGE: {
        uint32_t deleted = 0;
        pc_status status = store_events_purge(tx, op->purge_before_ns, EVENTS_PURGE_ROWS_MAX, &deleted);
        *purged += deleted;
        return status;
    }
    }
    return PC_INTERNAL;
}

/* Writer thread, inside the batch. */
static pc_status run_in_transaction(writer_cmd_t *cmd, store_tx_t *tx) {
    flush_run *run = (flush_run *)cmd;
    run->purged = 0;
    run->purges = 0;
    for (uint32_t i = 0; i < run->count; i++) {
        run->purges += run->ops[i].kind == EVENTS_OP_PURGE;
        pc_status status = op_apply(tx, &run->ops[i], &run->purged);
        if (status != PC_OK) return status;
    }
    return PC_OK;
}

/* Writer thread, after the commit or its failure. */
static void run_done(writer_cmd_t *cmd, pc_status commit_status) {
    events_flusher_t *flusher = ((flush_run *)cmd)->flusher;
    pthread_mutex_lock(&flusher->mutex);
    flusher->finished = true;
    flusher->status = commit_status;
    pthread_cond_broadcast(&flusher->cond);
    /* under the mutex: once it is released the owner may free the flusher and 'ctx' */
    if (flusher->wake != NULL) flusher->wake(flusher->wake_ctx);
    pthread_mutex_unlock(&flusher->mutex);
}

/* Puts a failed run's ops back in front of the pending ones. */
static void run_give_back(events_flusher_t *flusher) {
    flush_run *run = &flusher->run;
    uint32_t total = run->count + flusher->pending_count;
    events_op_t *ops = malloc(sizeof(events_op_t) * (total ? total : 1));
    if (ops == NULL) {
        obs_log(OBS_LEVEL_ERROR, "events: out of memory keeping delivery state; it is redelivered after a restart",
                NULL);
        run->count = 0;
        return;
    }
    memcpy(ops, run->ops, sizeof(events_op_t) * run->count);
    memcpy(ops + run->count, flusher->pending, sizeof(events_op_t) * flusher->pending_count);
    free(flusher->pending);
    flusher->pending = ops;
    flusher->pending_count = total;
    flusher->pending_capacity = total ? total : 1;
    run->count = 0;
}

/* Collects a finished run (owner thread). */
static void run_collect(events_flusher_t *flusher) {
    pthread_mutex_lock(&flusher->mutex);
    bool finished = flusher->running && flusher->finished;
    pc_status status = flusher->status;
    pthread_mutex_unlock(&flusher->mutex);
    if (!finished) return;
    if (status == PC_OK) {
        atomic_fetch_add(&flusher->purged_total, flusher->run.purged);
        atomic_fetch_add(&flusher->purge_runs, flusher->run.purges);
        flusher->last_purged = flusher->run.purged;
        flusher->run.count = 0;
    } else {
        run_give_back(flusher);
    }
    pthread_mutex_lock(&flusher->mutex);
    flusher->running = false;
    flusher->finished = false;
    pthread_mutex_unlock(&flusher->mutex);
}

static void run_submit(events_flusher_t *flusher) {
    flush_run *run = &flusher->run;
    uint32_t count = flusher->pending_count < EVENTS_FLUSH_OPS_MAX ? flusher->pending_count : EVENTS_FLUSH_OPS_MAX;
    free(run->ops);
    run->ops = malloc(sizeof(events_op_t) * count);
    if (run->ops == NULL) return;
    memcpy(run->ops, flusher->pending, sizeof(events_op_t) * count);
    run->count = count;
    memset(&run->cmd, 0, sizeof run->cmd);
    run->cmd.kind = WRITER_CMD_EXEC;
    run->cmd.in_transaction = run_in_transaction;
    run->cmd.done = run_done;
    pthread_mutex_lock(&flusher->mutex);
    flusher->running = true; /* before submit: done() may run at once */
    pthread_mutex_unlock(&flusher->mutex);
    if (writer_submit(flusher->writer, &run->cmd) != PC_OK) {
        pthread_mutex_lock(&flusher->mutex);
        flusher->running = false; /* queue full or stopping: try again later */
        pthread_mutex_unlock(&flusher->mutex);
        run->count = 0;
        return;
    }
    memmove(flusher->pending, flusher->pending + count, sizeof(events_op_t) * (flusher->pending_count - count));
    flusher->pending_count -= count;
}

bool events_flusher_kick(events_flusher_t *flusher) {
    run_collect(flusher);
    if (!flusher->running && flusher->pending_count > 0) run_submit(flusher);
    return !flusher->running && flusher->pending_count == 0;
}

bool events_flusher_idle(events_flusher_t *flusher) {
    run_collect(flusher);
    return !flusher->running;
}

void events_flusher_drain(events_flusher_t *flusher) {
    for (int rounds = 0; rounds < 1000; rounds++) {
        if (events_flusher_kick(flusher)) return;
        pthread_mutex_lock(&flusher->mutex);
        if (flusher->running && !flusher->finished) pthread_cond_wait(&flusher->cond, &flusher->mutex);
        bool stuck = !flusher->running;
        pthread_mutex_unlock(&flusher->mutex);
        if (stuck) return; /* the writer refuses commands: what is left is redelivered after a restart */
    }
}

uint32_t events_flusher_purged(events_flusher_t *flusher) {
    return flusher->last_purged;
}
