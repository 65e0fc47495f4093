/* shard/shard_internal.h: what the shard layer's files share. Not a contract. */
#ifndef PAYCORE_SHARD_INTERNAL_H
#define PAYCORE_SHARD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "shard/shard.h"
#include "store/store_shard.h"

/* Fault injection for the coordinator's tests: PAYCORE_2PC_FAULT names a step, and
 * PAYCORE_2PC_FAULT_ACTION says what happens there: "kill" (SIGKILL, the default) or
 * "pause:<file>" (create the file and wait until the test removes it). */
typedef enum {
    SHARD_STEP_NONE = 0,
    SHARD_STEP_AFTER_INTENT,
    SHARD_STEP_AFTER_PREPARE_ONE,
    SHARD_STEP_AFTER_PREPARE_ALL,
    SHARD_STEP_AFTER_DECISION,
    SHARD_STEP_AFTER_COMMIT_ONE,
} shard_step;

#define SHARD_CLEARING_MAX 256 /* clearing accounts known to exist (peer shard x currency) */

typedef struct shard_coord shard_coord_t; /* shard_global.c */
typedef struct shard_expiry shard_expiry_t; /* shard_expiry.c */

struct shard_set {
    uint32_t count;
    char *urls[SHARD_COUNT_MAX];
    store_t *stores[SHARD_COUNT_MAX];
    writer_t *writers[SHARD_COUNT_MAX];
    store_link_t *links[SHARD_COUNT_MAX];   /* under global_mutex */
    store_t *read_store;                    /* store_shard_route over 'stores' */
    /* One global transaction or one recovery pass at a time. */
    pthread_mutex_t global_mutex;
    shard_coord_t *_Atomic coord;           /* set once started; writers' expiries wake it */
    shard_expiry_t *expiry;                 /* cross-shard pending legs due to expire */
    /* recovery thread */
    pthread_t recovery_thread;
    bool recovery_started;
    pthread_mutex_t recovery_mutex;
    pthread_cond_t recovery_wake;
    bool stopping;
    /* gauges and counters (any thread) */
    _Atomic uint64_t unresolved;            /* open log rows recovery could not finish */
    _Atomic uint64_t unresolved_oldest_ns;
    _Atomic uint64_t inflight_since_ns;     /* the running global transaction's intent, 0: none */
    _Atomic uint64_t global_committed, global_aborted, recovered_committed, recovered_aborted, orphans;
    char fence[SHARD_FENCE_SIZE];          /* "<instance>/<epoch>" once advertised (shard_node.c) */
    bool legs_marked;                       /* a shard_hook: legs marked, home in every round */
    shard_step fault_step;
    char fault_pause_path[512];
};

/* Applies the fault injected at 'step', if any. */
void shard_fault_at(shard_set_t *set, shard_step step);

/* shard_global.c: the coordinator thread. */
pc_status shard_coord_start(shard_set_t *set);
void shard_coord_stop(shard_set_t *set);
void shard_coord_free(shard_set_t *set);
pc_status shard_coord_submit(shard_set_t *set, writer_cmd_t *cmd);
/* Wakes the coordinator thread (an expiry came due). */
void shard_coord_wake(shard_set_t *set);
/* On the coordinator thread: runs 'cmd' (an admin's, no done) as one global
 * transaction now and returns its status; the results are in cmd's slots. */
pc_status shard_coord_run(shard_set_t *set, writer_cmd_t *cmd);
/* The coordinator thread's reader of shard 's'. */
store_reader_t *shard_coord_reader(shard_set_t *set, uint32_t s);

/* shard_split.c: a command spanning shards with events that need no global
 * transaction: those run as local batches of their shards, the rest as one global
 * transaction. True when it split 'cmd' (*status: shard_submit's answer); false: the
 * command runs whole. */
bool shard_split(shard_set_t *set, writer_cmd_t *cmd, pc_status *status);

/* shard_expiry.c: cross-shard pending transfers expire in one global transaction.
 * shard_expiry_held is each writer's ledger_expiry_held_fn (ctx: the set); the
 * coordinator thread calls shard_expiry_run when shard_expiry_next_ns (0: nothing
 * listed) has passed. */
pc_status shard_expiry_open(shard_set_t *set);
void shard_expiry_close(shard_set_t *set);
void shard_expiry_held(void *ctx, const char *pending_id);
uint64_t shard_expiry_next_ns(shard_set_t *set);
void shard_expiry_run(shard_set_t *set);

/* shard_fence.c: the read fence, shut while a global transaction's legs commit
 * (global_mutex held). A fence that cannot be shut stops the process (recovery
 * finishes the legs at the next start). */
void shard_fence_shut(shard_set_t *set);
void shard_fence_open(shard_set_t *set);

/* shard_node.c: every shard's writers row names 'address' (after stores_open took
 * the locks, before any writer starts: the writers' connections are idle). */
pc_status shard_advertise(shard_set_t *set, const char *address, char *detail, size_t detail_bytes);

/* shard_recover.c: one pass with global_mutex held; reopens broken links. */
pc_status shard_recover_locked(shard_set_t *set);
/* The link to a shard (global mutex held): a link that failed and was dropped by
 * recovery is opened again here; NULL when the shard cannot be reached now. */
store_link_t *shard_link_get(shard_set_t *set, uint32_t shard);
pc_status shard_recovery_start(shard_set_t *set);
void shard_recovery_stop(shard_set_t *set);

#endif
