/* shard/shard_split.c: a command spanning shards keeps out of its global transaction
 * the events that do not need one (docs/scaleout.md §6, "Which events a round carries").
 *
 * Events are scanned in order. An event goes to the global rest when it crosses
 * shards, belongs to a linked chain, posts or voids a pending transfer of this command
 * that lives on another shard, or shares an account or an id with an event already in
 * the rest (so that it must see that event's effect, as on one store). Every other
 * event is local and independent of every earlier event of the rest: it runs in a
 * local batch of its shard's writer, queued before the rest's legs, so that a later
 * event of the rest that shares its account sees it applied (a writer runs its queue
 * in order). Each event gets the result it would get on one store; the command ends
 * (done) once its local parts and its global transaction ended, with the first
 * failure among them.
 *
 * Commands with rows of their own (in_transaction: an idempotent reply, a payment's
 * rows), grants, a merchant's owner, events naming no accounts, or on a set whose
 * batches are marked for the events outbox (legs_marked) run whole, as before. */
#include <stdlib.h>
#include <string.h>

#include "shard/shard_internal.h"

/* A part of a split command: one shard's local events, or the global rest. */
typedef struct split_part {
    writer_cmd_t cmd;                   /* first: part_done casts */
    struct split *split;
    uint32_t *event_of;                 /* part event k is the command's event event_of[k] */
    ledger_transfer_t *transfers;
    ledger_transfer_result_t *results;
} split_part_t;

typedef struct split {
    writer_cmd_t *cmd;                  /* the command as submitted */
    split_part_t parts[SHARD_COUNT_MAX + 1]; /* [s]: shard s's local events; [SHARD_COUNT_MAX]: the rest */
    pthread_mutex_t mutex;
    uint32_t waiting;                   /* parts not done yet */
    pc_status status;                   /* the first failure */
} split_t;

#define SPLIT_REST SHARD_COUNT_MAX

/* ---- the keys (account ids, transfer ids) the rest holds: open addressing ---- */

typedef struct {
    const char **slots;
    uint32_t mask;
} key_set_t;

static uint32_t key_hash(const char *key) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)key; *c != '\0'; c++) h = (h ^ *c) * 16777619u;
    return h;
}

static bool key_set_open(key_set_t *set, uint32_t keys_max) {
    uint32_t capacity = 16;
    while (capacity < 2 * keys_max) capacity *= 2;
    set->slots = calloc(capacity, sizeof *set->slots);
    set->mask = capacity - 1;
    return set->slots != NULL;
}

static bool key_has(const key_set_t *set, const char *key) {
    if (key[0] == '\0') return false;
    for (uint32_t i = key_hash(key) & set->mask; set->slots[i] != NULL; i = (i + 1) & set->mask) {
        if (strcmp(set->slots[i], key) == 0) return true;
    }
    return false;
}

static void key_add(key_set_t *set, const char *key) {
    if (key[0] == '\0' || key_has(set, key)) return;
    uint32_t i = key_hash(key) & set->mask;
    while (set->slots[i] != NULL) i = (i + 1) & set->mask;
    set->slots[i] = key;
}

/* ---- which events stay in the global rest ---- */

static bool in_chain(const writer_cmd_t *cmd, uint32_t i) {
    return (cmd->transfers[i].flags & LEDGER_TRANSFER_LINKED) ||
           (i > 0 && (cmd->transfers[i - 1].flags & LEDGER_TRANSFER_LINKED));
}

/* A post or void of a pending transfer made earlier in this command on another shard. */
static bool pending_elsewhere(const shard_set_t *set, const writer_cmd_t *cmd, uint32_t i, uint32_t shard) {
    const char *pending_id = cmd->transfers[i].pending_id;
    if (pending_id[0] == '\0') return false;
    for (uint32_t e = 0; e < i; e++) {
        const ledger_transfer_t *t = &cmd->transfers[e];
        if (strcmp(t->id, pending_id) == 0 && store_shard_of(t->debit_account_id, set->count) != shard) return true;
    }
    return false;
}

static bool splittable(const shard_set_t *set, const writer_cmd_t *cmd) {
    if (cmd->kind != WRITER_CMD_CREATE_TRANSFERS || cmd->in_transaction != NULL || cmd->grant_count > 0 ||
        cmd->owner_id != NULL || cmd->gtid != NULL || set->legs_marked) {
        return false;
    }
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        const ledger_transfer_t *t = &cmd->transfers[i];
        if (t->debit_account_id[0] == '\0' || t->credit_account_id[0] == '\0') return false;
    }
    return true;
}

/* rest[i]: event i stays in the global transaction; local[s]: events local to shard s.
 * False on no memory. */
static bool split_plan(const shard_set_t *set, const writer_cmd_t *cmd, bool *rest, uint32_t local[SHARD_COUNT_MAX]) {
    key_set_t keys;
    if (!key_set_open(&keys, 4 * cmd->event_count)) return false;
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        const ledger_transfer_t *t = &cmd->transfers[i];
        uint32_t debit = store_shard_of(t->debit_account_id, set->count);
        uint32_t credit = store_shard_of(t->credit_account_id, set->count);
        rest[i] = debit != credit || in_chain(cmd, i) || pending_elsewhere(set, cmd, i, debit) ||
                  key_has(&keys, t->debit_account_id) || key_has(&keys, t->credit_account_id) ||
                  key_has(&keys, t->id) || key_has(&keys, t->pending_id);
        if (!rest[i]) {
            local[debit]++;
            continue;
        }
        key_add(&keys, t->debit_account_id);
        key_add(&keys, t->credit_account_id);
        key_add(&keys, t->id);
        key_add(&keys, t->pending_id);
    }
    free(keys.slots);
    return true;
}

/* ---- the parts ---- */

static void split_free(split_t *split) {
    for (uint32_t p = 0; p <= SPLIT_REST; p++) {
        free(split->parts[p].event_of);
        free(split->parts[p].transfers);
        free(split->parts[p].results);
    }
    pthread_mutex_destroy(&split->mutex);
    free(split);
}

static void part_done(writer_cmd_t *cmd, pc_status status) {
    split_part_t *part = (split_part_t *)cmd;
    split_t *split = part->split;
    for (uint32_t k = 0; k < part->cmd.event_count; k++) {
        split->cmd->transfer_results[part->event_of[k]] = part->results[k];
    }
    pthread_mutex_lock(&split->mutex);
    if (status != PC_OK && split->status == PC_OK) split->status = status;
    bool last = --split->waiting == 0;
    pthread_mutex_unlock(&split->mutex);
    if (!last) return;
    writer_cmd_t *original = split->cmd;
    pc_status final = split->status;
    split_free(split);
    if (original->done != NULL) original->done(original, final);
}

static bool part_make(split_t *split, split_part_t *part, uint32_t count) {
    part->split = split;
    part->event_of = calloc(count, sizeof *part->event_of);
    part->transfers = calloc(count, sizeof *part->transfers);
    part->results = calloc(count, sizeof *part->results);
    if (part->event_of == NULL || part->transfers == NULL || part->results == NULL) return false;
    part->cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_TRANSFERS, .transfers = part->transfers,
                               .transfer_results = part->results, .done = part_done};
    return true;
}

static void part_add(split_part_t *part, const writer_cmd_t *cmd, uint32_t i) {
    uint32_t k = part->cmd.event_count++;
    part->event_of[k] = i;
    part->transfers[k] = cmd->transfers[i];
}

static split_t *split_make(const shard_set_t *set, writer_cmd_t *cmd, const bool *rest,
                           const uint32_t local[SHARD_COUNT_MAX], uint32_t rest_count) {
    split_t *split = calloc(1, sizeof *split);
    if (split == NULL) return NULL;
    pthread_mutex_init(&split->mutex, NULL);
    split->cmd = cmd;
    bool ok = true;
    for (uint32_t s = 0; s < set->count; s++) {
        if (local[s] > 0) ok = ok && part_make(split, &split->parts[s], local[s]);
    }
    if (rest_count > 0) ok = ok && part_make(split, &split->parts[SPLIT_REST], rest_count);
    if (!ok) {
        split_free(split);
        return NULL;
    }
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        uint32_t s = rest[i] ? SPLIT_REST : store_shard_of(cmd->transfers[i].debit_account_id, set->count);
        part_add(&split->parts[s], cmd, i);
    }
    return split;
}

/* Hands each part over: the local ones first, so that the rest's legs queue behind
 * them on every writer. A part refused here ends as failed (done). */
static pc_status split_submit(shard_set_t *set, split_t *split) {
    uint32_t parts[SHARD_COUNT_MAX + 1], count = 0;
    for (uint32_t s = 0; s < set->count; s++) {
        if (split->parts[s].cmd.event_count > 0) parts[count++] = s;
    }
    if (split->parts[SPLIT_REST].cmd.event_count > 0) parts[count++] = SPLIT_REST;
    split->waiting = count;
    for (uint32_t n = 0; n < count; n++) {
        split_part_t *part = &split->parts[parts[n]];
        pc_status status = parts[n] == SPLIT_REST ? shard_coord_submit(set, &part->cmd)
                                                  : writer_enqueue(set->writers[parts[n]], &part->cmd);
        if (status == PC_OK) continue;
        if (n == 0) { /* nothing handed over yet: refused as a whole, done not called */
            split_free(split);
            return status;
        }
        part_done(&part->cmd, status);
    }
    return PC_OK;
}

bool shard_split(shard_set_t *set, writer_cmd_t *cmd, pc_status *status) {
    if (!splittable(set, cmd)) return false;
    bool *rest = calloc(cmd->event_count, sizeof *rest);
    uint32_t local[SHARD_COUNT_MAX] = {0};
    if (rest == NULL || !split_plan(set, cmd, rest, local)) {
        free(rest);
        return false;
    }
    uint32_t local_count = 0;
    for (uint32_t s = 0; s < set->count; s++) local_count += local[s];
    split_t *split = local_count > 0 ? split_make(set, cmd, rest, local, cmd->event_count - local_count) : NULL;
    free(rest);
    if (split == NULL) return false; /* nothing to keep out (or no memory): the command runs whole */
    *status = split_submit(set, split);
    return true;
}
