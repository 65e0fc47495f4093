/* payments/recovery.c: what is never left to chance. At start and every
 * recovery_interval_ms one thread
 *   1. takes every operation still "pending" (its attempt was persisted, its outcome
 *      never learned: a crash, a timeout the gateway could not resolve; an op row in
 *      that status, or a card payment's row naming its op in flight) that is older
 *      than the grace (a request may still be on its way through the channel), asks
 *      the channel for that attempt's status by its idempotency key, and applies the
 *      answer exactly as the call's own answer would have been applied: booked by the
 *      operation's transfer ids (so nothing is booked twice), or, when the channel
 *      never saw it, ended as not applied (reserves released);
 *   2. asks the bank about the operations "processing" (accepted, waiting for the
 *      bank's callback: payouts, withdrawals, bank-transfer collections) longer than
 *      bank_inquiry_ms, in case the bank gave up delivering it: a settled or returned
 *      answer is applied exactly as that callback (bank.c), so a late callback finds
 *      the operation final and changes nothing. One sweep over them every
 *      bank_inquiry_ms, a page per pass: each is asked at most that often;
 *   3. ends the holds whose window passed: once the ledger voided the hold at its
 *      timeout, the payment expires (a partial capture keeps what it captured) and the
 *      channel is told (a void, recorded like any other call).
 * An object busy with a running operation is left for the next pass. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/obs.h"
#include "payments/pay_internal.h"

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    uint32_t running;
    uint32_t resolved;
} pass_t;

static void pass_flow_finished(void *ctx, pc_status status) {
    (void)status;
    pass_t *pass = ctx;
    pthread_mutex_lock(&pass->mutex);
    pass->running--;
    pass->resolved++;
    pthread_cond_broadcast(&pass->cond);
    pthread_mutex_unlock(&pass->mutex);
}

static void pass_wait(pass_t *pass) {
    pthread_mutex_lock(&pass->mutex);
    while (pass->running > 0) pthread_cond_wait(&pass->cond, &pass->mutex);
    pthread_mutex_unlock(&pass->mutex);
}

/* An internal flow on 'lock' tied to the pass; NULL when busy, when an operation on
 * it ended since the pass listed it at 'listed_ns' (what was listed may be stale: the
 * next pass sees), or out of room. */
static pay_flow_t *pass_flow(pay_t *pay, pass_t *pass, const char *lock, uint64_t listed_ns) {
    if (!pay_busy_take_since(pay, lock, listed_ns)) return NULL;
    pay_flow_t *flow = pay_flow_new(pay, NULL, NULL);
    if (flow == NULL) {
        pay_busy_release(pay, lock);
        return NULL;
    }
    pc_str_copy(flow->lock_id, sizeof flow->lock_id, lock);
    pthread_mutex_lock(&pass->mutex);
    pass->running++;
    pthread_mutex_unlock(&pass->mutex);
    flow->on_finish = pass_flow_finished;
    flow->on_finish_ctx = pass;
    return flow;
}

/* The sweep over operations waiting for a bank callback (the recovery thread's own). */
typedef struct {
    uint64_t started_ns;  /* wall time the current (or last) sweep started; 0: none yet */
    uint64_t from_ns;     /* the next page starts at this created_ns; 0: no sweep running */
} pay_bank_sweep_t;

store_pay_query_t pay_recovery_query(const char *status, uint64_t created_from_ns) {
    return (store_pay_query_t){.kind = "op", .status = status, .created_from_ns = created_from_ns,
                               .limit = PAY_RECOVERY_BATCH_MAX};
}

/* ---- 1. pending operations ---- */

typedef struct {
    char ids[PAY_RECOVERY_BATCH_MAX][PC_ID_SIZE];
    char payment_ids[PAY_RECOVERY_BATCH_MAX][PC_ID_SIZE]; /* "": the op has a row of its own */
    uint32_t count;
    uint64_t older_than_ns;
} pending_list_t;

/* An op row, or a payment's row naming its op in flight (the op has no row). */
static void pending_one(const store_pay_object_t *object, void *ctx) {
    pending_list_t *list = ctx;
    bool in_payment = object->pending_op[0] != '\0' && strcmp(object->kind, "payment") == 0;
    const char *op_id = in_payment ? object->pending_op : object->id;
    for (uint32_t i = 0; i < list->count; i++) {
        if (strcmp(list->ids[i], op_id) == 0) return;
    }
    if (object->updated_ns <= list->older_than_ns && list->count < PAY_RECOVERY_BATCH_MAX) {
        pc_str_copy(list->payment_ids[list->count], PC_ID_SIZE, in_payment ? object->id : "");
        pc_str_copy(list->ids[list->count++], PC_ID_SIZE, op_id);
    }
}

/* The op to recover: from its row, or from its payment's records when it has none. */
static pc_status op_load(store_reader_t *reader, const char *op_id, const char *payment_id, pay_op_t *out) {
    if (payment_id == NULL || payment_id[0] == '\0') return pay_op_read(reader, op_id, out);
    return pay_op_read_in(reader, payment_id, op_id, out);
}

/* A processing op: only the bank's final answer changes anything. */
static void processing_result(pay_flow_t *flow, pc_status status) {
    (void)status;
    if (pay_bank_inquiry_apply(flow)) return;
    if (pay_outcome_of(flow) == PAY_OUT_NOTHING) {
        obs_logf(OBS_LEVEL_WARN, "payments: the bank knows no transfer for %s %s it accepted; left processing",
                 pay_op_kind_name(flow->op.kind), flow->op.id);
    }
    pay_flow_finish(flow);
}

/* Loads the op (and its payment) in 'status' and asks its channel; false when skipped.
 * 'payment_id': the op's payment when the op has no row ("" or NULL: it has one). */
static bool recover_op(pay_t *pay, pass_t *pass, store_reader_t *reader, const char *op_id, const char *payment_id,
                       const char *status_want, uint64_t listed_ns) {
    pay_op_t op;
    if (op_load(reader, op_id, payment_id, &op) != PC_OK || strcmp(op.status, status_want) != 0 ||
        op.attempt_count == 0) {
        return false;
    }
    const char *lock = op.kind == PAY_OP_PAYOUT || op.kind == PAY_OP_WITHDRAW ? op.id : op.parent_id;
    pay_flow_t *flow = pass_flow(pay, pass, lock, listed_ns);
    if (flow == NULL) return false;
    if (op_load(reader, op_id, payment_id, &flow->op) != PC_OK || strcmp(flow->op.status, status_want) != 0) {
        pay_flow_finish(flow); /* resolved meanwhile */
        return false;
    }
    flow->has_op = true;
    flow->inquiry = true;
    if (op.kind != PAY_OP_PAYOUT && op.kind != PAY_OP_WITHDRAW) {
        pc_status status = pay_payment_read(reader, op.parent_id, &flow->payment);
        if (status == PC_OK) status = pay_merchant_find(pay, reader, flow->payment.merchant_id, &flow->merchant);
        if (status != PC_OK) {
            obs_logf(OBS_LEVEL_ERROR, "payments: recovery cannot load %s of %s: %s", op.id, op.parent_id,
                     pc_status_code(status));
            pay_flow_finish(flow);
            return false;
        }
        flow->has_payment = flow->payment_stored = true;
    }
    bool processing = strcmp(status_want, "processing") == 0;
    if (processing && !pay_bank_op_waits_callback(flow)) {
        pay_flow_finish(flow);
        return false;
    }
    /* a pending op: a bank's final answer as its callback (bank.c), any other as the call's own */
    pay_call_status(flow, processing ? processing_result : pay_op_result);
    return true;
}

static void pending_pass(pay_t *pay, pass_t *pass, store_reader_t *reader, uint64_t now_ns) {
    pending_list_t *list = calloc(1, sizeof *list);
    if (list == NULL) return;
    uint64_t grace_ns = (uint64_t)pay->config.recovery_grace_ms * 1000000ull;
    list->older_than_ns = now_ns > grace_ns ? now_ns - grace_ns : 0;
    store_pay_query_t q = pay_recovery_query("pending", 0);
    store_pay_query_t in_payments = {.kind = "payment", .pending_op = true, .limit = PAY_RECOVERY_BATCH_MAX};
    bool has_more = false;
    uint64_t listed_ns = pc_mono_ns(); /* before the reads: a flow that ended after may be listed */
    if (store_pay_objects_list(reader, &q, pending_one, list, &has_more) == PC_OK &&
        store_pay_objects_list(reader, &in_payments, pending_one, list, &has_more) == PC_OK) {
        for (uint32_t i = 0; i < list->count; i++) {
            (void)recover_op(pay, pass, reader, list->ids[i], list->payment_ids[i], "pending", listed_ns);
        }
    }
    free(list);
}

/* ---- 2. bank operations whose callback never came ---- */

typedef struct {
    char ids[PAY_RECOVERY_BATCH_MAX][PC_ID_SIZE];
    uint32_t count;
    uint64_t older_than_ns;
    uint64_t created_ns_last;
} waiting_list_t;

static void waiting_one(const store_pay_object_t *object, void *ctx) {
    waiting_list_t *list = ctx;
    list->created_ns_last = object->created_ns;
    if (object->updated_ns <= list->older_than_ns && list->count < PAY_RECOVERY_BATCH_MAX) {
        pc_str_copy(list->ids[list->count++], PC_ID_SIZE, object->id);
    }
}

/* Starts a sweep when the last one started bank_inquiry_ms ago; false: none runs. */
static bool sweep_due(pay_t *pay, pay_bank_sweep_t *sweep, uint64_t now_ns) {
    if (sweep->from_ns != 0) return true;
    uint64_t every_ns = (uint64_t)pay->config.bank_inquiry_ms * 1000000ull;
    if (sweep->started_ns != 0 && now_ns - sweep->started_ns < every_ns) return false;
    sweep->started_ns = now_ns;
    sweep->from_ns = 1;
    return true;
}

static void waiting_pass(pay_t *pay, pass_t *pass, store_reader_t *reader, uint64_t now_ns, pay_bank_sweep_t *sweep) {
    if (!sweep_due(pay, sweep, now_ns)) return;
    waiting_list_t *list = calloc(1, sizeof *list);
    if (list == NULL) return;
    uint64_t after_ns = (uint64_t)pay->config.bank_inquiry_ms * 1000000ull;
    list->older_than_ns = now_ns > after_ns ? now_ns - after_ns : 0;
    store_pay_query_t q = pay_recovery_query("processing", sweep->from_ns);
    bool has_more = false;
    uint64_t listed_ns = pc_mono_ns();
    pc_status status = store_pay_objects_list(reader, &q, waiting_one, list, &has_more);
    if (status == PC_OK) {
        for (uint32_t i = 0; i < list->count; i++) {
            (void)recover_op(pay, pass, reader, list->ids[i], NULL, "processing", listed_ns);
        }
    }
    sweep->from_ns = status == PC_OK && has_more ? list->created_ns_last + 1 : 0; /* else: the sweep ends */
    free(list);
}

/* ---- 3. expired holds ---- */

typedef struct {
    char ids[PAY_RECOVERY_BATCH_MAX][PC_ID_SIZE];
    uint32_t count;
} due_list_t;

static void holds_due(pay_t *pay, uint64_t now_ns, due_list_t *due) {
    pthread_mutex_lock(&pay->sets_mutex);
    for (uint32_t b = 0; b < pay->holds.bucket_count && due->count < PAY_RECOVERY_BATCH_MAX; b++) {
        for (pay_map_entry_t *e = pay->holds.buckets[b]; e != NULL && due->count < PAY_RECOVERY_BATCH_MAX; e = e->next) {
            if ((uint64_t)(uintptr_t)e->value <= now_ns) pc_str_copy(due->ids[due->count++], PC_ID_SIZE, e->key);
        }
    }
    pthread_mutex_unlock(&pay->sets_mutex);
}

static void expired_then(pay_flow_t *flow, pc_status status);

static pc_status expired_in_tx(pay_flow_t *flow, store_tx_t *tx) { return pay_flow_write_payment(flow, tx); }

/* The ledger voided the hold: the payment expires (or keeps its partial capture). */
static void expire_one(pay_t *pay, pass_t *pass, store_reader_t *reader, const char *payment_id, uint64_t listed_ns) {
    pay_flow_t *flow = pass_flow(pay, pass, payment_id, listed_ns);
    if (flow == NULL) return;
    pay_payment_t *p = &flow->payment;
    pc_status status = pay_payment_read(reader, payment_id, p);
    if (status == PC_OK) status = pay_merchant_find(pay, reader, p->merchant_id, &flow->merchant);
    store_transfer_t hold;
    bool gone = false;
    if (status == PC_OK && p->hold_id[0] != '\0' && p->pending_op[0] == '\0' &&
        store_read_transfer(reader, p->hold_id, &hold) == PC_OK) {
        gone = hold.pending_state == LEDGER_PENDING_EXPIRED || hold.pending_state == LEDGER_PENDING_VOIDED;
        store_transfer_free(&hold);
    }
    if (status != PC_OK || p->hold_id[0] == '\0') pay_hold_untrack(pay, payment_id);
    pay_state before = p->state;
    if (!gone || !pay_transition(p->state, PAY_EV_EXPIRE, &p->state)) {
        pay_flow_finish(flow); /* the ledger's timer has not fired yet, or an op runs */
        return;
    }
    flow->has_payment = flow->payment_stored = true;
    p->hold_id[0] = '\0';
    p->hold_amount = 0;
    flow->state_before = before;
    pay_flow_submit(flow, WRITER_CMD_EXEC, 1, expired_in_tx, expired_then);
}

static void expired_then(pay_flow_t *flow, pc_status status) {
    pay_payment_t *p = &flow->payment;
    if (status != PC_OK || flow->state_before != PAY_STATE_AUTHORIZED || flow->pay->config.gateway == NULL) {
        if (status == PC_OK) pay_hold_untrack(flow->pay, p->id);
        pay_flow_finish(flow);
        return;
    }
    pay_hold_untrack(flow->pay, p->id);
    pay_op_new(flow, PAY_OP_VOID, "void_", p->authorized); /* tell the channel: a void, like any call */
    pay_request_follow_up(flow, GW_OP_VOID);
    pay_call_start(flow, pay_op_result, 0);
}

static void expiry_pass(pay_t *pay, pass_t *pass, store_reader_t *reader, uint64_t now_ns) {
    due_list_t *due = calloc(1, sizeof *due);
    if (due == NULL) return;
    uint64_t listed_ns = pc_mono_ns();
    holds_due(pay, now_ns, due);
    for (uint32_t i = 0; i < due->count; i++) expire_one(pay, pass, reader, due->ids[i], listed_ns);
    free(due);
}

/* ---- the thread ---- */

static uint32_t pass_run(pay_t *pay, pay_bank_sweep_t *sweep) {
    pass_t pass = {.running = 0};
    pthread_mutex_init(&pass.mutex, NULL);
    pthread_cond_init(&pass.cond, NULL);
    store_reader_t *reader = pay_reader_acquire(pay);
    if (reader != NULL) {
        uint64_t now_ns = pc_wall_ns();
        pending_pass(pay, &pass, reader, now_ns);
        waiting_pass(pay, &pass, reader, now_ns, sweep);
        expiry_pass(pay, &pass, reader, now_ns);
        pay_reader_release(pay, reader);
    }
    pass_wait(&pass);
    pthread_cond_destroy(&pass.cond);
    pthread_mutex_destroy(&pass.mutex);
    return pass.resolved;
}

static void *recovery_main(void *arg) {
    pay_t *pay = arg;
    pay_bank_sweep_t sweep = {0};
    pthread_mutex_lock(&pay->mutex);
    while (!pay->stopping) {
        pthread_mutex_unlock(&pay->mutex);
        uint32_t resolved = pass_run(pay, &sweep);
        pthread_mutex_lock(&pay->mutex);
        pay->recovery_passes++;
        pay->recovery_last_resolved = resolved;
        pthread_cond_broadcast(&pay->recovery_wake);
        if (pay->stopping) break;
        if (!pay->recovery_requested) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            uint64_t at_ns = (uint64_t)until.tv_sec * 1000000000ull + (uint64_t)until.tv_nsec +
                             (uint64_t)pay->config.recovery_interval_ms * 1000000ull;
            until.tv_sec = (time_t)(at_ns / 1000000000ull);
            until.tv_nsec = (long)(at_ns % 1000000000ull);
            pthread_cond_timedwait(&pay->recovery_wake, &pay->mutex, &until);
        }
        pay->recovery_requested = false;
    }
    pthread_mutex_unlock(&pay->mutex);
    return NULL;
}

pc_status pay_recovery_start(pay_t *pay) {
    if (pthread_create(&pay->recovery_thread, NULL, recovery_main, pay) != 0) return PC_INTERNAL;
    pthread_setname_np(pay->recovery_thread, "paycore-recover");
    pay->recovery_started = true;
    return PC_OK;
}

void pay_recovery_stop(pay_t *pay) {
    if (!pay->recovery_started) return;
    pthread_mutex_lock(&pay->mutex);
    pthread_cond_broadcast(&pay->recovery_wake);
    pthread_mutex_unlock(&pay->mutex);
    pthread_join(pay->recovery_thread, NULL);
    pay->recovery_started = false;
}

uint32_t pay_recover_now(pay_t *pay) {
    pthread_mutex_lock(&pay->mutex);
    uint64_t target = pay->recovery_passes + 2; /* a pass that started after this call */
    pay->recovery_requested = true;
    pthread_cond_broadcast(&pay->recovery_wake);
    while (pay->recovery_passes < target && !pay->stopping) {
        pay->recovery_requested = true;
        pthread_cond_broadcast(&pay->recovery_wake);
        pthread_cond_wait(&pay->recovery_wake, &pay->mutex);
    }
    uint32_t resolved = pay->recovery_last_resolved;
    pthread_mutex_unlock(&pay->mutex);
    return resolved;
}

/* ---- at start: the holds to watch ---- */

typedef struct {
    pay_t *pay;
    store_reader_t *reader;
    pc_status status;
} holds_load_t;

static void hold_one(const store_pay_object_t *object, void *ctx) {
    holds_load_t *load = ctx;
    json_t *doc = NULL;
    pc_status status = pay_payment_doc(load->reader, object, object->version, &doc, NULL);
    if (status != PC_OK && load->status == PC_OK) load->status = status;
    json_t *hold = json_object_get(doc, "hold");
    if (json_is_object(hold)) {
        pay_hold_track(load->pay, object->id, (uint64_t)json_integer_value(json_object_get(hold, "expires_at")));
    }
    json_decref(doc);
}

pc_status pay_holds_load(pay_t *pay) {
    store_reader_t *reader = pay_reader_acquire(pay);
    if (reader == NULL) return PC_STORE_READ_FAILED;
    static const char *const states[] = {"authorized", "partially_captured"};
    pc_status status = PC_OK;
    holds_load_t load = {.pay = pay, .reader = reader, .status = PC_OK};
    for (size_t i = 0; i < 2 && status == PC_OK; i++) {
        store_pay_query_t q = {.kind = "payment", .status = states[i]};
        bool has_more;
        status = store_pay_objects_list(reader, &q, hold_one, &load, &has_more);
        if (status == PC_OK) status = load.status;
    }
    pay_reader_release(pay, reader);
    return status;
}
