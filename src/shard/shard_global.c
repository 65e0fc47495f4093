/* shard/shard_global.c: the coordinator. Commands that span shards queue here and
 * run one at a time, each as one global transaction (shard.h, docs/scaleout.md §6):
 *
 *  1. plan: each event's legs (a transfer across shards: a debit leg A -> clearing
 *     on A's shard, a credit leg clearing -> B on B's shard, both with the event's
 *     id); a post or void naming no accounts finds its pending transfer's shards;
 *  2. intent logged on shard 0 (committed);
 *  3. each involved shard's writer applies its legs in a batch of its own and
 *     PREPAREs 'pc_<gtid>', then waits in decide(); the first shard alone, then the
 *     others at once; shard 0 last when the command's own rows (its idempotent
 *     reply, rendered from the merged results) are written in its prepared batch;
 *  4. decision logged: commit when every shard prepared and every event's legs
 *     agree (all created, all existing, or all refused);
 *  5. each writer COMMITs PREPARED or ROLLs BACK PREPARED (the first alone, then the
 *     others at once); done logged.
 *
 * Legs that disagree (one refused: insufficient funds on the debit side, an unknown
 * credit account) abort the round; the events (and their linked chains) that
 * disagreed take their refusal as final and the rest run again in a new round, so a
 * command spanning shards gets the per-event results it would get on one. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "shard/shard_internal.h"

typedef struct shard_global shard_global_t;

/* One shard's part of a round. */
typedef struct {
    writer_cmd_t cmd;                   /* first: the writer hands it back */
    shard_global_t *global;
    uint32_t shard;
    uint32_t *event_of;                 /* leg i is the command's event event_of[i] */
    ledger_transfer_t *transfers;
    ledger_transfer_result_t *transfer_results;
    ledger_account_t *accounts;
    ledger_account_result_t *account_results;
    const char **grant_ids;             /* the command's grants of accounts on this shard */
    bool voted;
    pc_status vote;
    int decision;                       /* 0: waiting, 1: commit, -1: abort */
    bool done;
    pc_status done_status;
    shard_leg_view_t view;              /* what the batch hooks see (legs_marked) */
} shard_leg_t;

/* Where an event's legs run. */
typedef struct {
    uint32_t debit_shard, credit_shard; /* equal: a local event */
    bool final;                         /* result fixed by an earlier round: not run again */
} event_plan_t;

struct shard_global {
    shard_set_t *set;
    writer_cmd_t *cmd;                  /* the command as submitted */
    event_plan_t *plans;
    shard_leg_t legs[SHARD_COUNT_MAX];
    bool involved[SHARD_COUNT_MAX];
    char gtid[STORE_GTID_SIZE];
    bool home_disagreed;                /* the home leg voted no: every vote was yes, the legs disagreed */
    pthread_mutex_t mutex;
    pthread_cond_t cond;
};

struct shard_coord {
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    writer_cmd_t *head, *tail;          /* queued commands, linked by next */
    bool stopping;
    store_reader_t *readers[SHARD_COUNT_MAX]; /* the coordinator thread's lookups */
    char clearing[SHARD_CLEARING_MAX][PC_ID_SIZE]; /* created (or found) clearing accounts */
    uint32_t clearing_count;
};

/* ---- the legs of a round ---- */

static bool is_transfers(const writer_cmd_t *cmd) { return cmd->kind == WRITER_CMD_CREATE_TRANSFERS; }
/* Ledger events to plan: none in a command of only rows and grants (an API key's). */
static uint32_t events_of(const writer_cmd_t *cmd) { return cmd->kind == WRITER_CMD_EXEC ? 0 : cmd->event_count; }

/* A post or void naming no accounts: its pending transfer's legs say where it runs. */
static void plan_lookup(shard_coord_t *coord, shard_set_t *set, const ledger_transfer_t *t, event_plan_t *plan) {
    plan->debit_shard = plan->credit_shard = 0;
    bool found_any = false;
    for (uint32_t s = 0; s < set->count; s++) {
        store_transfer_t row;
        if (store_read_transfer(coord->readers[s], t->pending_id, &row) != PC_OK) continue;
        uint32_t self, peer;
        bool debit_clearing = store_clearing_shard(row.transfer.debit_account_id, &self, &peer);
        bool credit_clearing = store_clearing_shard(row.transfer.credit_account_id, &self, &peer);
        if (!found_any || credit_clearing) plan->debit_shard = s;
        if (!found_any || debit_clearing) plan->credit_shard = s;
        if (!credit_clearing && !debit_clearing) plan->debit_shard = plan->credit_shard = s;
        found_any = true;
        store_transfer_free(&row);
    }
}

/* A post or void of a pending transfer made earlier in the same command (a hold and
 * its capture in one chain): no shard holds it yet, its plan is that transfer's. */
static bool plan_in_command(const shard_global_t *g, uint32_t i, event_plan_t *plan) {
    const ledger_transfer_t *t = &g->cmd->transfers[i];
    for (uint32_t e = i; e-- > 0;) {
        if (strcmp(g->cmd->transfers[e].id, t->pending_id) != 0) continue;
        plan->debit_shard = g->plans[e].debit_shard;
        plan->credit_shard = g->plans[e].credit_shard;
        return true;
    }
    return false;
}

static void plan_events(shard_coord_t *coord, shard_global_t *g) {
    shard_set_t *set = g->set;
    const writer_cmd_t *cmd = g->cmd;
    for (uint32_t i = 0; i < events_of(cmd); i++) {
        event_plan_t *plan = &g->plans[i];
        if (!is_transfers(cmd)) {
            plan->debit_shard = plan->credit_shard = store_shard_of(cmd->accounts[i].id, set->count);
            continue;
        }
        const ledger_transfer_t *t = &cmd->transfers[i];
        if (t->debit_account_id[0] == '\0' || t->credit_account_id[0] == '\0') {
            if (!plan_in_command(g, i, plan)) plan_lookup(coord, set, t, plan);
        } else {
            plan->debit_shard = store_shard_of(t->debit_account_id, set->count);
            plan->credit_shard = store_shard_of(t->credit_account_id, set->count);
        }
    }
}

/* The legs of event 'i' on 'shard' (0, 1: a local event or one side of a cross). */
static bool event_on(const event_plan_t *plan, uint32_t shard) {
    return !plan->final && (plan->debit_shard == shard || plan->credit_shard == shard);
}

/* The transfer as it runs on 'shard': a cross transfer's far side is the clearing
 * account for the peer shard; a post or void that names no accounts stays so. */
static void leg_transfer(const ledger_transfer_t *t, const event_plan_t *plan, uint32_t shard,
                         ledger_transfer_t *out) {
    *out = *t;
    out->flags &= (uint16_t)~LEDGER_TRANSFER_LINKED; /* set by legs_link */
    if (plan->debit_shard == plan->credit_shard) return;
    const char *currency = t->currency;
    if (shard == plan->debit_shard && t->credit_account_id[0] != '\0') {
        store_clearing_id(shard, plan->credit_shard, currency, out->credit_account_id);
    }
    if (shard == plan->credit_shard && t->debit_account_id[0] != '\0') {
        store_clearing_id(shard, plan->debit_shard, currency, out->debit_account_id);
    }
}

/* A linked chain keeps its links on each shard among the legs it has there: each
 * leg but the chain's last on that shard is linked. */
static void legs_link(shard_global_t *g, shard_leg_t *leg) {
    const writer_cmd_t *cmd = g->cmd;
    for (uint32_t k = 0; k + 1 < leg->cmd.event_count; k++) {
        bool chained = true;
        for (uint32_t e = leg->event_of[k]; e < leg->event_of[k + 1]; e++) {
            if (!(cmd->transfers[e].flags & LEDGER_TRANSFER_LINKED)) chained = false;
        }
        if (chained) leg->transfers[k].flags |= LEDGER_TRANSFER_LINKED;
    }
}

static pc_status in_transaction_home(writer_cmd_t *cmd, store_tx_t *tx);
static pc_status leg_in_transaction(writer_cmd_t *cmd, store_tx_t *tx);
static bool leg_decide(writer_cmd_t *cmd, pc_status prepare_status);
static void leg_done(writer_cmd_t *cmd, pc_status status);

/* A key's grants go to the shard holding each account: its writer checks them there. */
static pc_status leg_grants(shard_global_t *g, shard_leg_t *leg) {
    const writer_cmd_t *cmd = g->cmd;
    if (cmd->grant_count == 0) return PC_OK;
    leg->grant_ids = calloc(cmd->grant_count, sizeof *leg->grant_ids);
    if (leg->grant_ids == NULL) return PC_NO_MEMORY;
    uint32_t n = 0;
    for (uint32_t i = 0; i < cmd->grant_count; i++) {
        if (store_shard_of(cmd->grant_account_ids[i], g->set->count) == leg->shard) {
            leg->grant_ids[n++] = cmd->grant_account_ids[i];
        }
    }
    leg->cmd.grantee_id = n > 0 ? cmd->grantee_id : NULL;
    leg->cmd.grant_account_ids = leg->grant_ids;
    leg->cmd.grant_count = n;
    return PC_OK;
}

static pc_status leg_build(shard_global_t *g, uint32_t shard) {
    shard_leg_t *leg = &g->legs[shard];
    const writer_cmd_t *cmd = g->cmd;
    memset(leg, 0, sizeof *leg);
    leg->global = g;
    leg->shard = shard;
    uint32_t count = 0;
    for (uint32_t i = 0; i < events_of(cmd); i++) count += event_on(&g->plans[i], shard);
    leg->event_of = calloc(count + 1, sizeof *leg->event_of);
    if (is_transfers(cmd)) {
        leg->transfers = calloc(count + 1, sizeof *leg->transfers);
        leg->transfer_results = calloc(count + 1, sizeof *leg->transfer_results);
    } else {
        leg->accounts = calloc(count + 1, sizeof *leg->accounts);
        leg->account_results = calloc(count + 1, sizeof *leg->account_results);
    }
    if (leg->event_of == NULL || (leg->transfers == NULL && leg->accounts == NULL) ||
        (leg->transfer_results == NULL && leg->account_results == NULL)) {
        return PC_NO_MEMORY;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < events_of(cmd); i++) {
        if (!event_on(&g->plans[i], shard)) continue;
        leg->event_of[k] = i;
        if (is_transfers(cmd)) leg_transfer(&cmd->transfers[i], &g->plans[i], shard, &leg->transfers[k]);
        else leg->accounts[k] = cmd->accounts[i];
        k++;
    }
    leg->cmd.kind = count > 0 ? cmd->kind : WRITER_CMD_EXEC;
    leg->cmd.event_count = count;
    leg->cmd.transfers = leg->transfers;
    leg->cmd.transfer_results = leg->transfer_results;
    leg->cmd.accounts = leg->accounts;
    leg->cmd.account_results = leg->account_results;
    leg->cmd.owner_id = cmd->owner_id;
    if (leg_grants(g, leg) != PC_OK) return PC_NO_MEMORY;
    leg->cmd.gtid = g->gtid;
    leg->cmd.decide = leg_decide;
    leg->cmd.done = leg_done;
    if (shard == 0 && cmd->in_transaction != NULL) leg->cmd.in_transaction = in_transaction_home;
    if (g->set->legs_marked) {
        leg->view = (shard_leg_view_t){.set = g->set, .gtid = g->gtid, .shard = shard, .cmd = cmd};
        memcpy(leg->view.involved, g->involved, sizeof leg->view.involved);
        leg->cmd.in_transaction = leg_in_transaction;
    }
    if (is_transfers(cmd)) legs_link(g, leg);
    return PC_OK;
}

static void leg_free(shard_leg_t *leg) {
    free(leg->event_of);
    free(leg->transfers);
    free(leg->transfer_results);
    free(leg->accounts);
    free(leg->account_results);
    free(leg->grant_ids);
    memset(leg, 0, sizeof *leg);
}

/* ---- merging the legs' results ---- */

typedef enum { OUTCOME_CREATED, OUTCOME_EXISTS, OUTCOME_REFUSED } leg_outcome;

static leg_outcome outcome_of(pc_status status) {
    return status == PC_OK ? OUTCOME_CREATED : status == PC_EXISTS ? OUTCOME_EXISTS : OUTCOME_REFUSED;
}

/* The result of leg k (event e) on 'shard', or NULL when the event has no leg there. */
static const ledger_transfer_result_t *leg_result(const shard_global_t *g, uint32_t shard, uint32_t e) {
    const shard_leg_t *leg = &g->legs[shard];
    for (uint32_t k = 0; k < leg->cmd.event_count; k++) {
        if (leg->event_of[k] == e) return &leg->transfer_results[k];
    }
    return NULL;
}

/* Event e's legs agree; *out gets the merged result. A cross transfer moving two
 * different amounts (a balancing flag) does not agree and is refused. */
static bool transfer_merge(const shard_global_t *g, uint32_t e, ledger_transfer_result_t *out) {
    const event_plan_t *plan = &g->plans[e];
    const ledger_transfer_result_t *debit = leg_result(g, plan->debit_shard, e);
    const ledger_transfer_result_t *credit = leg_result(g, plan->credit_shard, e);
    if (debit == NULL || credit == NULL) return false;
    *out = *debit;
    if (debit == credit) return true;
    if (outcome_of(debit->status) != outcome_of(credit->status)) {
        bool debit_first = debit->status != PC_OK && debit->status != PC_LINKED_EVENT_FAILED;
        out->status = debit_first || credit->status == PC_OK ? debit->status : credit->status;
        out->field = debit_first || credit->status == PC_OK ? debit->field : credit->field;
        return false;
    }
    if (debit->status == PC_EXISTS) { /* a retry: answered as A -> B, as when it was created */
        snprintf(out->credit_account_id, sizeof out->credit_account_id, "%s", credit->credit_account_id);
        return true;
    }
    if (debit->status != PC_OK) return true;
    if (debit->amount != credit->amount) {
        out->status = PC_STORE_UNSUPPORTED; /* balancing across shards */
        return false;
    }
    out->credit_balances = credit->credit_balances;
    snprintf(out->credit_account_id, sizeof out->credit_account_id, "%s", credit->credit_account_id);
    return true;
}

/* Every event's legs agree; otherwise the disagreeing events and their linked chains
 * get their final (refused) results and *retry says a new round can run. */
static bool results_agree(shard_global_t *g, bool *retry) {
    writer_cmd_t *cmd = g->cmd;
    bool agree = true;
    *retry = false;
    if (!is_transfers(cmd)) return true; /* an account has one leg */
    for (uint32_t e = 0; e < cmd->event_count; e++) {
        if (g->plans[e].final) continue;
        ledger_transfer_result_t merged;
        if (transfer_merge(g, e, &merged)) continue;
        agree = false;
        /* the chain holding e: back to its start, forward to its end */
        uint32_t first = e, last = e;
        while (first > 0 && (cmd->transfers[first - 1].flags & LEDGER_TRANSFER_LINKED)) first--;
        while (last + 1 < cmd->event_count && (cmd->transfers[last].flags & LEDGER_TRANSFER_LINKED)) last++;
        /* as on one store: each event refused for its own reason keeps it, the rest
         * of the chain fails with linked_event_failed */
        for (uint32_t i = first; i <= last; i++) {
            if (g->plans[i].final) continue;
            ledger_transfer_result_t own;
            (void)transfer_merge(g, i, &own);
            bool cause = outcome_of(own.status) == OUTCOME_REFUSED && own.status != PC_LINKED_EVENT_FAILED;
            memset(&cmd->transfer_results[i], 0, sizeof cmd->transfer_results[i]);
            cmd->transfer_results[i].status = cause ? own.status : PC_LINKED_EVENT_FAILED;
            cmd->transfer_results[i].field = cause ? own.field : LEDGER_FIELD_NONE;
            g->plans[i].final = true;
        }
        *retry = true;
    }
    return agree;
}

/* The merged results into the command's own result slots. */
static void results_publish(shard_global_t *g) {
    writer_cmd_t *cmd = g->cmd;
    for (uint32_t e = 0; e < events_of(cmd); e++) {
        if (g->plans[e].final) continue;
        if (is_transfers(cmd)) {
            (void)transfer_merge(g, e, &cmd->transfer_results[e]);
            continue;
        }
        const shard_leg_t *leg = &g->legs[g->plans[e].debit_shard];
        for (uint32_t k = 0; k < leg->cmd.event_count; k++) {
            if (leg->event_of[k] == e) cmd->account_results[e] = leg->account_results[k];
        }
    }
}

static bool votes_yes(const shard_global_t *g, uint32_t except) {
    for (uint32_t s = 0; s < g->set->count; s++) {
        if (s != except && g->involved[s] && (!g->legs[s].voted || g->legs[s].vote != PC_OK)) return false;
    }
    return true;
}

/* Every event's legs agree (nothing marked: the coordinator decides). */
static bool legs_agree(const shard_global_t *g) {
    if (!is_transfers(g->cmd)) return true;
    for (uint32_t e = 0; e < g->cmd->event_count; e++) {
        ledger_transfer_result_t merged;
        if (!g->plans[e].final && !transfer_merge(g, e, &merged)) return false;
    }
    return true;
}

/* Shard 0's leg, last to prepare: the command's own rows, rendered from the merged
 * results, in the same prepared batch. A no vote elsewhere, or legs that disagree,
 * fail it (its own no vote). */
static pc_status in_transaction_home(writer_cmd_t *leg_cmd, store_tx_t *tx) {
    shard_global_t *g = ((shard_leg_t *)leg_cmd)->global;
    pthread_mutex_lock(&g->mutex);
    bool yes = votes_yes(g, 0);
    pthread_mutex_unlock(&g->mutex);
    if (!yes) return PC_GLOBAL_TRANSACTION_ABORTED;
    if (!legs_agree(g)) {
        g->home_disagreed = true; /* the coordinator marks the refusals and runs the rest again */
        return PC_GLOBAL_TRANSACTION_ABORTED;
    }
    results_publish(g);
    return g->cmd->in_transaction(g->cmd, tx);
}

/* The leg this writer thread's batch is (shard_batch_leg): from its rows to its decision. */
static _Thread_local const shard_leg_view_t *batch_leg;

const shard_leg_view_t *shard_batch_leg(void) { return batch_leg; }

/* Every leg's rows when legs are marked: the mark, then the home leg's own rows. */
static pc_status leg_in_transaction(writer_cmd_t *cmd, store_tx_t *tx) {
    shard_leg_t *leg = (shard_leg_t *)cmd;
    batch_leg = &leg->view;
    return leg->shard == 0 && leg->global->cmd->in_transaction != NULL ? in_transaction_home(cmd, tx) : PC_OK;
}

/* ---- the writers' side: vote, wait for the decision, finish ---- */

static bool leg_decide(writer_cmd_t *cmd, pc_status prepare_status) {
    shard_leg_t *leg = (shard_leg_t *)cmd;
    batch_leg = NULL; /* the batch is written */
    shard_global_t *g = leg->global;
    pthread_mutex_lock(&g->mutex);
    leg->voted = true;
    leg->vote = prepare_status;
    pthread_cond_broadcast(&g->cond);
    while (leg->decision == 0) pthread_cond_wait(&g->cond, &g->mutex);
    bool commit = leg->decision > 0;
    pthread_mutex_unlock(&g->mutex);
    return commit;
}

static void leg_done(writer_cmd_t *cmd, pc_status status) {
    shard_leg_t *leg = (shard_leg_t *)cmd;
    shard_global_t *g = leg->global;
    pthread_mutex_lock(&g->mutex);
    leg->done = true;
    leg->done_status = status;
    if (!leg->voted) { /* refused before it ran (a failed store): a no vote */
        leg->voted = true;
        leg->vote = status;
    }
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mutex);
}

static void wait_voted(shard_global_t *g, shard_leg_t *leg) {
    pthread_mutex_lock(&g->mutex);
    while (!leg->voted) pthread_cond_wait(&g->cond, &g->mutex);
    pthread_mutex_unlock(&g->mutex);
}

static void release(shard_global_t *g, shard_leg_t *leg, bool commit) {
    pthread_mutex_lock(&g->mutex);
    leg->decision = commit ? 1 : -1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mutex);
}

static pc_status wait_done(shard_global_t *g, shard_leg_t *leg) {
    pthread_mutex_lock(&g->mutex);
    while (!leg->done) pthread_cond_wait(&g->cond, &g->mutex);
    pc_status status = leg->done_status;
    pthread_mutex_unlock(&g->mutex);
    return status;
}

/* ---- one round ---- */

/* [{"shard":1,"ids":["t1","t2"]},...]: what the intent records of each leg. */
static char *legs_json(const shard_global_t *g) {
    size_t capacity = 64 + (size_t)g->cmd->event_count * 2 * (PC_ID_SIZE + 4) + 32 * g->set->count;
    char *json = malloc(capacity);
    if (json == NULL) return NULL;
    size_t used = (size_t)snprintf(json, capacity, "[");
    for (uint32_t s = 0; s < g->set->count; s++) {
        if (!g->involved[s]) continue;
        const shard_leg_t *leg = &g->legs[s];
        used += (size_t)snprintf(json + used, capacity - used, "%s{\"shard\":%u,\"ids\":[", used > 1 ? "," : "", s);
        for (uint32_t k = 0; k < leg->cmd.event_count; k++) {
            const char *id = leg->transfers != NULL ? leg->transfers[k].id : leg->accounts[k].id;
            used += (size_t)snprintf(json + used, capacity - used, "%s\"%s\"", k > 0 ? "," : "", id);
        }
        used += (size_t)snprintf(json + used, capacity - used, "]}");
    }
    snprintf(json + used, capacity - used, "]");
    return json;
}

/* The coordinator log cannot be written: what was logged is unknown, so neither
 * outcome may be applied here. The process stops; recovery at the next start ends
 * the global transaction from the log (no decision: abort). */
static void log_failed(shard_set_t *set, const char *what) {
    fprintf(stderr, "{\"level\":\"error\",\"msg\":\"coordinator log: %s failed; stopping so that recovery ends"
            " the global transaction at the next start\",\"detail\":\"%s\"}\n", what, store_link_error(set->links[0]));
    fflush(stderr);
    _exit(1);
}

/* The involved shards in the order their legs prepare and finish: 1, 2, ..., 0. */
static uint32_t round_order(const shard_global_t *g, uint32_t order[SHARD_COUNT_MAX]) {
    uint32_t count = 0;
    for (uint32_t n = 1; n <= g->set->count; n++) {
        uint32_t s = n % g->set->count;
        if (g->involved[s]) order[count++] = s;
    }
    return count;
}

static void leg_enqueue(shard_global_t *g, uint32_t s) {
    shard_leg_t *leg = &g->legs[s];
    pc_status status = writer_enqueue(g->set->writers[s], &leg->cmd);
    if (status != PC_OK) {
        leg->voted = leg->done = true;
        leg->vote = leg->done_status = status;
    }
}

/* The prepared legs: the first alone (so that a fault can find exactly one shard
 * prepared), then the others at once, each shard's writer on its own. The home leg
 * comes last when it writes rows rendered from every leg's results (the command's
 * own rows); marked legs (the events outbox) prepare one after another, so that the
 * home leg's hook runs after every other leg's. */
static void round_prepare(shard_global_t *g) {
    shard_set_t *set = g->set;
    uint32_t order[SHARD_COUNT_MAX];
    uint32_t count = round_order(g, order);
    bool home_last = g->cmd->in_transaction != NULL;
    for (uint32_t i = 0; i < count; i++) {
        bool alone = i == 0 || set->legs_marked || (home_last && order[i] == 0);
        for (uint32_t k = 1; alone && k < i; k++) wait_voted(g, &g->legs[order[k]]);
        leg_enqueue(g, order[i]);
        if (alone) wait_voted(g, &g->legs[order[i]]);
        if (i == 0 && g->legs[order[0]].vote == PC_OK) shard_fault_at(set, SHARD_STEP_AFTER_PREPARE_ONE);
    }
    for (uint32_t i = 1; i < count; i++) wait_voted(g, &g->legs[order[i]]);
    shard_fault_at(set, SHARD_STEP_AFTER_PREPARE_ALL);
}

/* The decision to every leg: the first alone (so that a fault can find one shard
 * finished), then the others at once. The first failed COMMIT PREPARED's status. */
static pc_status round_finish(shard_global_t *g, bool commit) {
    uint32_t order[SHARD_COUNT_MAX];
    uint32_t count = round_order(g, order);
    pc_status status[SHARD_COUNT_MAX];
    for (uint32_t i = 0; i < count; i++) {
        if (!g->legs[order[i]].done) release(g, &g->legs[order[i]], commit);
        if (i > 0) continue;
        status[0] = wait_done(g, &g->legs[order[0]]);
        shard_fault_at(g->set, SHARD_STEP_AFTER_COMMIT_ONE);
    }
    for (uint32_t i = 1; i < count; i++) status[i] = wait_done(g, &g->legs[order[i]]);
    for (uint32_t i = 0; i < count; i++) {
        if (commit && status[i] != PC_OK) return status[i];
    }
    return PC_OK;
}

/* Runs one round; PC_OK committed, PC_GLOBAL_TRANSACTION_ABORTED (or a store
 * failure) aborted; *retry: aborted because legs disagreed, run the rest again. */
static pc_status round_run(shard_global_t *g, bool *retry) {
    shard_set_t *set = g->set;
    *retry = false;
    uint8_t random[16];
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(g->gtid, sizeof g->gtid, random, sizeof random);
    uint32_t shards[SHARD_COUNT_MAX], shard_count = 0;
    for (uint32_t s = 0; s < set->count; s++) {
        if (g->involved[s] && leg_build(g, s) != PC_OK) return PC_NO_MEMORY;
        if (g->involved[s]) shards[shard_count++] = s;
    }
    char *legs = legs_json(g);
    if (legs == NULL) return PC_NO_MEMORY;
    atomic_store(&set->inflight_since_ns, pc_wall_ns());
    /* recovery drops a failed link to shard 0; with none to be had, nothing was logged */
    store_link_t *home = shard_link_get(set, 0);
    pc_status status = home != NULL ? store_link_log_intent(home, g->gtid, shards, shard_count, legs)
                                    : PC_STORE_OPEN_FAILED;
    free(legs);
    if (status != PC_OK) {
        atomic_store(&set->inflight_since_ns, 0);
        return PC_GLOBAL_TRANSACTION_ABORTED; /* nothing prepared: nothing to undo */
    }
    shard_fault_at(set, SHARD_STEP_AFTER_INTENT);
    g->home_disagreed = false;
    round_prepare(g);
    /* every leg prepared but the home leg, which refused legs that disagree: the
     * refused events keep their refusal and the rest runs again (results_agree) */
    bool prepared = votes_yes(g, SHARD_COUNT_MAX) || (g->home_disagreed && votes_yes(g, 0));
    bool commit = prepared && results_agree(g, retry);
    status = store_link_log_decision(set->links[0], g->gtid, commit);
    if (status != PC_OK) log_failed(set, "the decision");
    shard_fault_at(set, SHARD_STEP_AFTER_DECISION);
    if (commit) shard_fence_shut(set); /* no read spanning shards sees half of it */
    pc_status finish = round_finish(g, commit);
    if (commit) shard_fence_open(set);
    /* A leg that could not COMMIT PREPARED failed its store for good: the process
     * stops and recovery finishes it; done is not logged. */
    if (finish == PC_OK && store_link_log_done(set->links[0], g->gtid) != PC_OK) log_failed(set, "done");
    atomic_store(&set->inflight_since_ns, 0);
    if (commit && finish == PC_OK) results_publish(g);
    atomic_fetch_add(commit ? &set->global_committed : &set->global_aborted, 1);
    if (commit) return finish;
    for (uint32_t s = 0; s < set->count; s++) {
        if (g->involved[s] && g->legs[s].vote != PC_OK && g->legs[s].vote != PC_GLOBAL_TRANSACTION_ABORTED) {
            return g->legs[s].vote; /* the store's reason */
        }
    }
    return PC_GLOBAL_TRANSACTION_ABORTED;
}

/* ---- clearing accounts ---- */

static bool clearing_known(shard_coord_t *coord, const char *id) {
    for (uint32_t i = 0; i < coord->clearing_count; i++) {
        if (strcmp(coord->clearing[i], id) == 0) return true;
    }
    return false;
}

static pc_status clearing_create(shard_coord_t *coord, shard_set_t *set, uint32_t self, uint32_t peer,
                                 const char *currency) {
    ledger_account_t account = {.code = 1, .flags = 0};
    store_clearing_id(self, peer, currency, account.id);
    if (clearing_known(coord, account.id)) return PC_OK;
    snprintf(account.currency, sizeof account.currency, "%s", currency);
    ledger_account_result_t result = {0};
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 1, .accounts = &account,
                        .account_results = &result};
    pc_status status = writer_enqueue_wait(set->writers[self], &cmd);
    if (status == PC_OK && result.status != PC_OK && result.status != PC_EXISTS) status = result.status;
    if (status == PC_OK && coord->clearing_count < SHARD_CLEARING_MAX) {
        snprintf(coord->clearing[coord->clearing_count++], PC_ID_SIZE, "%s", account.id);
    }
    return status;
}

static pc_status clearing_for(shard_coord_t *coord, shard_global_t *g) {
    if (!is_transfers(g->cmd)) return PC_OK;
    for (uint32_t e = 0; e < g->cmd->event_count; e++) {
        const event_plan_t *plan = &g->plans[e];
        const ledger_transfer_t *t = &g->cmd->transfers[e];
        if (plan->final || plan->debit_shard == plan->credit_shard || t->currency[0] == '\0') continue;
        pc_status status = clearing_create(coord, g->set, plan->debit_shard, plan->credit_shard, t->currency);
        if (status == PC_OK) status = clearing_create(coord, g->set, plan->credit_shard, plan->debit_shard, t->currency);
        if (status != PC_OK) return status;
    }
    return PC_OK;
}

/* ---- a command ---- */

static bool involve(shard_global_t *g) {
    memset(g->involved, 0, sizeof g->involved);
    uint32_t count = 0;
    for (uint32_t e = 0; e < events_of(g->cmd); e++) {
        if (g->plans[e].final) continue;
        g->involved[g->plans[e].debit_shard] = true;
        g->involved[g->plans[e].credit_shard] = true;
    }
    for (uint32_t i = 0; i < g->cmd->grant_count; i++) {
        g->involved[store_shard_of(g->cmd->grant_account_ids[i], g->set->count)] = true;
    }
    if (g->cmd->in_transaction != NULL) g->involved[0] = true;
    for (uint32_t s = 0; s < g->set->count; s++) count += g->involved[s];
    if (count > 0 && g->set->legs_marked) g->involved[0] = true; /* the events are written in the home leg */
    return count > 0;
}

static pc_status global_run(shard_coord_t *coord, shard_global_t *g) {
    pc_status status = PC_OK;
    for (uint32_t round = 0; round <= g->cmd->event_count; round++) {
        if (!involve(g)) return PC_OK; /* every event refused in earlier rounds */
        status = clearing_for(coord, g);
        if (status != PC_OK) return status;
        bool retry = false;
        pthread_mutex_lock(&g->set->global_mutex);
        status = round_run(g, &retry);
        pthread_mutex_unlock(&g->set->global_mutex);
        for (uint32_t s = 0; s < SHARD_COUNT_MAX; s++) leg_free(&g->legs[s]);
        if (!retry) return status;
    }
    return status;
}

/* A command the coordinator looked at and found local after all (a post whose
 * pending transfer is on one shard): its shard's writer runs it. */
static bool single_after_plan(shard_global_t *g, uint32_t *shard) {
    if (g->cmd->kind == WRITER_CMD_EXEC) return false; /* grants on other shards: shard_submit */
    for (uint32_t i = 0; i < g->cmd->grant_count; i++) {
        if (store_shard_of(g->cmd->grant_account_ids[i], g->set->count) != 0) return false;
    }
    for (uint32_t e = 0; e < g->cmd->event_count; e++) {
        if (g->plans[e].debit_shard != g->plans[e].credit_shard) return false;
        if (e > 0 && g->plans[e].debit_shard != *shard) return false;
        *shard = g->plans[e].debit_shard;
    }
    return g->cmd->in_transaction == NULL || *shard == 0;
}

static void command_run(shard_coord_t *coord, shard_set_t *set, writer_cmd_t *cmd) {
    shard_global_t g = {.set = set, .cmd = cmd, .plans = calloc(cmd->event_count + 1, sizeof *g.plans)};
    if (g.plans == NULL) {
        if (cmd->done != NULL) cmd->done(cmd, PC_NO_MEMORY);
        return;
    }
    pthread_mutex_init(&g.mutex, NULL);
    pthread_cond_init(&g.cond, NULL);
    plan_events(coord, &g);
    uint32_t shard = 0;
    pc_status status;
    if (single_after_plan(&g, &shard) && writer_enqueue(set->writers[shard], cmd) == PC_OK) {
        status = PC_OK; /* its writer completes it */
        cmd = NULL;
    } else {
        /* A merchant's command (owner_id) too: each shard's writer checks the owner's
         * reach of the accounts in its own leg against the grants it holds (the
         * clearing accounts in a leg are reached: writer/grants.c), so the command
         * runs exactly when the owner reaches every account on every shard. */
        status = global_run(coord, &g);
    }
    pthread_cond_destroy(&g.cond);
    pthread_mutex_destroy(&g.mutex);
    free(g.plans);
    if (cmd != NULL && cmd->done != NULL) cmd->done(cmd, status);
}

/* ---- commands waiting together: one global transaction ----
 * Commands queued at once (same kind, no owner, none ending inside a linked chain)
 * run as one command: one global transaction for all of them, as a writer's batch
 * carries many commands in one COMMIT. Each keeps its own results, own rows (its
 * in_transaction runs in shard 0's prepared batch) and its own done(). */

#define GROUP_COMMANDS_MAX 256

typedef struct {
    writer_cmd_t cmd;                  /* first: the combined command */
    writer_cmd_t *members[GROUP_COMMANDS_MAX];
    uint32_t count;
} group_t;

static void group_split(group_t *group) {
    uint32_t at = 0;
    for (uint32_t i = 0; i < group->count; i++) {
        writer_cmd_t *member = group->members[i];
        if (is_transfers(member)) {
            memcpy(member->transfer_results, group->cmd.transfer_results + at,
                   sizeof *member->transfer_results * member->event_count);
        } else {
            memcpy(member->account_results, group->cmd.account_results + at,
                   sizeof *member->account_results * member->event_count);
        }
        at += member->event_count;
    }
}

static pc_status group_in_transaction(writer_cmd_t *cmd, store_tx_t *tx) {
    group_t *group = (group_t *)cmd;
    group_split(group);
    for (uint32_t i = 0; i < group->count; i++) {
        writer_cmd_t *member = group->members[i];
        if (member->in_transaction == NULL) continue;
        pc_status status = member->in_transaction(member, tx);
        if (status != PC_OK) return status;
    }
    return PC_OK;
}

static void group_free(group_t *group) {
    free((void *)group->cmd.transfers);
    free(group->cmd.transfer_results);
    free((void *)group->cmd.accounts);
    free(group->cmd.account_results);
    free(group);
}

static void group_done(writer_cmd_t *cmd, pc_status status) {
    group_t *group = (group_t *)cmd;
    group_split(group);
    for (uint32_t i = 0; i < group->count; i++) {
        if (group->members[i]->done != NULL) group->members[i]->done(group->members[i], status);
    }
    group_free(group);
}

/* The combined command of 'members' (NULL on no memory: the caller runs them alone). */
static group_t *group_make(writer_cmd_t **members, uint32_t count) {
    group_t *group = calloc(1, sizeof *group);
    if (group == NULL) return NULL;
    uint32_t total = 0;
    for (uint32_t i = 0; i < count; i++) total += members[i]->event_count;
    bool transfers = is_transfers(members[0]);
    if (transfers) {
        group->cmd.transfers = calloc(total, sizeof *group->cmd.transfers);
        group->cmd.transfer_results = calloc(total, sizeof *group->cmd.transfer_results);
    } else {
        group->cmd.accounts = calloc(total, sizeof *group->cmd.accounts);
        group->cmd.account_results = calloc(total, sizeof *group->cmd.account_results);
    }
    if ((transfers && (group->cmd.transfers == NULL || group->cmd.transfer_results == NULL)) ||
        (!transfers && (group->cmd.accounts == NULL || group->cmd.account_results == NULL))) {
        group_free(group);
        return NULL;
    }
    uint32_t at = 0;
    for (uint32_t i = 0; i < count; i++) {
        writer_cmd_t *member = members[i];
        if (transfers) memcpy((ledger_transfer_t *)group->cmd.transfers + at, member->transfers,
                              sizeof *member->transfers * member->event_count);
        else memcpy((ledger_account_t *)group->cmd.accounts + at, member->accounts,
                    sizeof *member->accounts * member->event_count);
        at += member->event_count;
        if (member->in_transaction != NULL) group->cmd.in_transaction = group_in_transaction;
        group->members[i] = member;
    }
    group->count = count;
    group->cmd.kind = members[0]->kind;
    group->cmd.event_count = total;
    group->cmd.owner_id = members[0]->owner_id;
    group->cmd.done = group_done;
    return group;
}

/* Whether 'next' may join a group that starts with 'first' and holds 'events'
 * (admin commands only: a merchant's command runs alone, see command_run). */
static bool group_fits(const writer_cmd_t *first, const writer_cmd_t *next, uint32_t events) {
    if (next->kind != first->kind || events + next->event_count > LEDGER_BATCH_EVENTS_MAX) return false;
    if (first->kind == WRITER_CMD_EXEC || first->grant_count > 0 || next->grant_count > 0) return false;
    if (first->owner_id != NULL || next->owner_id != NULL) return false; /* a merchant's: alone (command_run) */
    /* a chain left open at a command's end stays that command's refusal */
    const writer_cmd_t *cmds[2] = {first, next};
    for (int i = 0; i < 2; i++) {
        const writer_cmd_t *c = cmds[i];
        if (is_transfers(c) && (c->transfers[c->event_count - 1].flags & LEDGER_TRANSFER_LINKED)) return false;
    }
    return true;
}

static void group_run(shard_coord_t *coord, shard_set_t *set, writer_cmd_t **members, uint32_t count) {
    group_t *group = count > 1 ? group_make(members, count) : NULL;
    if (group == NULL) {
        for (uint32_t i = 0; i < count; i++) command_run(coord, set, members[i]);
        return;
    }
    command_run(coord, set, &group->cmd); /* group_done ends every member and frees the group */
}

/* Waits (coord->mutex held) for a command, the stop, or a cross-shard expiry due;
 * true when an expiry is due now. */
static bool coord_wait(shard_set_t *set, shard_coord_t *coord) {
    for (;;) {
        uint64_t at_ns = shard_expiry_next_ns(set);
        if (!coord->stopping && at_ns != 0 && at_ns <= pc_wall_ns()) return true;
        if (coord->stopping || coord->head != NULL) return false;
        if (at_ns == 0) {
            pthread_cond_wait(&coord->wake, &coord->mutex);
            continue;
        }
        struct timespec until = {(time_t)(at_ns / 1000000000u), (long)(at_ns % 1000000000u)};
        pthread_cond_timedwait(&coord->wake, &coord->mutex, &until);
    }
}

static void *coord_main(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-coord"); /* per-thread CPU in top, perf */
    shard_set_t *set = arg;
    shard_coord_t *coord = set->coord;
    writer_cmd_t *members[GROUP_COMMANDS_MAX];
    pthread_mutex_lock(&coord->mutex);
    for (;;) {
        if (coord_wait(set, coord)) { /* between commands, so that traffic cannot starve it */
            pthread_mutex_unlock(&coord->mutex);
            shard_expiry_run(set);
            pthread_mutex_lock(&coord->mutex);
        }
        if (coord->head == NULL && !coord->stopping) continue;
        if (coord->head == NULL) break;
        uint32_t count = 0, events = 0;
        while (coord->head != NULL && count < GROUP_COMMANDS_MAX &&
               (count == 0 || group_fits(members[0], coord->head, events))) {
            writer_cmd_t *cmd = coord->head;
            coord->head = cmd->next;
            cmd->next = NULL;
            members[count++] = cmd;
            events += cmd->event_count;
        }
        if (coord->head == NULL) coord->tail = NULL;
        pthread_mutex_unlock(&coord->mutex);
        group_run(coord, set, members, count);
        pthread_mutex_lock(&coord->mutex);
    }
    pthread_mutex_unlock(&coord->mutex);
    return NULL;
}

pc_status shard_coord_start(shard_set_t *set) {
    shard_coord_t *coord = calloc(1, sizeof *coord);
    if (coord == NULL) return PC_NO_MEMORY;
    pthread_mutex_init(&coord->mutex, NULL);
    pthread_cond_init(&coord->wake, NULL);
    set->coord = coord; /* after its mutex: a writer's expiry may wake it from now on */
    for (uint32_t s = 0; s < set->count; s++) {
        pc_status status = store_reader_open(set->stores[s], &coord->readers[s]);
        if (status != PC_OK) return status;
    }
    if (pthread_create(&coord->thread, NULL, coord_main, set) != 0) return PC_INTERNAL;
    return PC_OK;
}

/* Stops after the queued commands ran (the writers are still running then). */
void shard_coord_stop(shard_set_t *set) {
    shard_coord_t *coord = set->coord;
    if (coord == NULL) return;
    pthread_mutex_lock(&coord->mutex);
    coord->stopping = true;
    pthread_cond_signal(&coord->wake);
    pthread_mutex_unlock(&coord->mutex);
    if (coord->thread != 0) pthread_join(coord->thread, NULL);
    coord->thread = 0;
    for (uint32_t s = 0; s < set->count; s++) {
        store_reader_close(coord->readers[s]);
        coord->readers[s] = NULL;
    }
}

/* After every writer is freed: until then a writer's expiry may wake it. */
void shard_coord_free(shard_set_t *set) {
    shard_coord_t *coord = set->coord;
    if (coord == NULL) return;
    set->coord = NULL;
    pthread_cond_destroy(&coord->wake);
    pthread_mutex_destroy(&coord->mutex);
    free(coord);
}

void shard_coord_wake(shard_set_t *set) {
    shard_coord_t *coord = set->coord;
    if (coord == NULL) return; /* not started yet: its first wait looks */
    pthread_mutex_lock(&coord->mutex);
    pthread_cond_signal(&coord->wake);
    pthread_mutex_unlock(&coord->mutex);
}

store_reader_t *shard_coord_reader(shard_set_t *set, uint32_t s) { return set->coord->readers[s]; }

pc_status shard_coord_run(shard_set_t *set, writer_cmd_t *cmd) {
    shard_global_t g = {.set = set, .cmd = cmd, .plans = calloc(cmd->event_count, sizeof *g.plans)};
    if (g.plans == NULL) return PC_NO_MEMORY;
    pthread_mutex_init(&g.mutex, NULL);
    pthread_cond_init(&g.cond, NULL);
    plan_events(set->coord, &g);
    pc_status status = global_run(set->coord, &g);
    pthread_cond_destroy(&g.cond);
    pthread_mutex_destroy(&g.mutex);
    free(g.plans);
    return status;
}

pc_status shard_coord_submit(shard_set_t *set, writer_cmd_t *cmd) {
    shard_coord_t *coord = set->coord;
    cmd->next = NULL;
    pthread_mutex_lock(&coord->mutex);
    pc_status status = coord->stopping ? PC_SHUTTING_DOWN : PC_OK;
    if (status == PC_OK) {
        if (coord->tail != NULL) coord->tail->next = cmd;
        else coord->head = cmd;
        coord->tail = cmd;
        pthread_cond_signal(&coord->wake);
    }
    pthread_mutex_unlock(&coord->mutex);
    return status;
}
