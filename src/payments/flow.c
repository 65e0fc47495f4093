/* payments/flow.c: one operation on its way. A flow carries a payment (or a payout,
 * a wallet withdrawal) through its steps: writer commands (each one transaction with
 * its ledger transfers and rows) and gateway calls, each continuing in a callback on
 * the writer's or a gateway thread. Nothing here blocks: a step queues the next and
 * returns. A flow holds its object's busy mark from start to answer, so two operations
 * on one payment never interleave. The answer is made once: stored with the command
 * that makes it final (the caller's Idempotency-Key reply, in the same transaction),
 * and handed to the caller after that commit. */
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "payments/pay_internal.h"

pay_flow_t *pay_flow_new(pay_t *pay, const pay_caller_t *caller, const pay_reply_fn_t *reply) {
    pthread_mutex_lock(&pay->mutex);
    bool room = !pay->stopping && pay->flows < PAY_FLOWS_MAX;
    if (room) pay->flows++;
    pay_flow_t *flow = room ? pay->flows_free : NULL; /* zeroed when it ended */
    if (flow != NULL) {
        pay->flows_free = flow->staging.next;
        pay->flows_free_count--;
        flow->staging.next = NULL;
    }
    pthread_mutex_unlock(&pay->mutex);
    if (room && flow == NULL) flow = calloc(1, sizeof *flow);
    if (flow == NULL) {
        if (room) {
            pthread_mutex_lock(&pay->mutex);
            if (--pay->flows == 0) pthread_cond_broadcast(&pay->flows_idle);
            pthread_mutex_unlock(&pay->mutex);
        }
        if (reply != NULL && reply->done != NULL) {
            pay_reply_t out = {0};
            pay_reply_error(&out, room ? PC_NO_MEMORY : (pay->stopping ? PC_SHUTTING_DOWN : PC_LIMIT_REACHED),
                            NULL, NULL);
            reply->done(reply->ctx, &out);
        }
        return NULL;
    }
    flow->pay = pay; /* flow->payment stays zero until read or made (pay_payment_init) */
    pay_path_cut(flow, PAY_PATH_API); /* the path's start */
    if (reply != NULL) flow->reply_fn = *reply;
    if (caller != NULL) {
        pc_str_copy(flow->key_id, sizeof flow->key_id, caller->key_id ? caller->key_id : "");
        if (caller->idempotency_key != NULL && caller->request_hash != NULL) {
            flow->has_idempotency = true;
            flow->idempotency_key_new = caller->idempotency_key_new;
            pc_str_copy(flow->idempotency_key, sizeof flow->idempotency_key, caller->idempotency_key);
            memcpy(flow->request_hash, caller->request_hash, sizeof flow->request_hash);
        }
    }
    return flow;
}

/* The payment as last committed, kept for the next operation on it: only by the flow
 * that holds its busy mark (no other operation on it can have written it since). */
static void flow_keep_committed(pay_flow_t *flow) {
    pay_payment_t *committed = flow->committed;
    flow->committed = NULL;
    pay_payment_free(flow->committed_stale);
    flow->committed_stale = NULL;
    if (committed != NULL && strcmp(flow->lock_id, committed->id) == 0) pay_recent_put(flow->pay, committed);
    else pay_payment_free(committed);
}

static void flow_finish_now(pay_flow_t *flow) {
    pay_t *pay = flow->pay;
    /* the kept payment shares parts with these (jansson's counts are not to be shared
     * across threads): they go first, so the next flow that takes it holds them alone */
    pay_payment_clear(&flow->payment);
    pay_staged_clear(&flow->staged);
    flow_keep_committed(flow); /* before its busy mark goes */
    /* free before answering: a client's next request on this object must find it free */
    if (flow->lock_id[0] != '\0') pay_busy_release(pay, flow->lock_id);
    flow->lock_id[0] = '\0';
    if (flow->reply_fn.done != NULL) {
        if (flow->reply.status == PC_OK && flow->reply.body == NULL && flow->reply.text == NULL) {
            pay_reply_error(&flow->reply, PC_INTERNAL, NULL, "the operation ended without an answer");
        }
        pay_path_cut(flow, PAY_PATH_ANSWER);
        flow->reply_fn.done(flow->reply_fn.ctx, &flow->reply);
        pay_path_count(flow);
    }
    if (flow->on_finish != NULL) flow->on_finish(flow->on_finish_ctx, flow->reply.status);
    pay_reply_clear(&flow->reply);
    free(flow->extra);
    free(flow->doc_text);
    sodium_memzero(flow, sizeof *flow); /* card data, challenge codes */
    pthread_mutex_lock(&pay->mutex);
    if (pay->flows_free_count < PAY_FLOWS_FREE_MAX) { /* kept zeroed for the next: no 15 kB calloc */
        flow->staging.next = pay->flows_free;
        pay->flows_free = flow;
        pay->flows_free_count++;
        flow = NULL;
    }
    if (--pay->flows == 0) pthread_cond_broadcast(&pay->flows_idle);
    pthread_mutex_unlock(&pay->mutex);
    free(flow);
}

static _Thread_local uint32_t serial_depth; /* > 0: a gateway callback or a writer completion */

void pay_serial_enter(void) { serial_depth++; }

void pay_serial_leave(void) {
    PC_ASSERT(serial_depth > 0);
    serial_depth--;
}

void pay_flow_finish(pay_flow_t *flow) {
    if (serial_depth > 0 && pay_stage_queue(flow, flow_finish_now)) return; /* answered and freed there */
    flow_finish_now(flow);
}

void pay_flow_fail(pay_flow_t *flow, pc_status status, const char *field, const char *message) {
    pay_reply_error(&flow->reply, status, field, message);
    pay_flow_finish(flow);
}

void pay_flow_answer(pay_flow_t *flow, int http_status, json_t *body) {
    if (flow->dry) { /* the answer is made by the command itself */
        json_decref(body);
        return;
    }
    pay_reply_object(&flow->reply, http_status, body);
    flow->reply_ready = true;
}

void pay_flow_answer_payment(pay_flow_t *flow, int http_status) {
    if (flow->dry) return;
    const pay_payment_t *p = &flow->payment;
    if (p->pending_op[0] != '\0' && http_status < 300) http_status = 202;
    if (flow->doc_text == NULL || flow->doc_version != p->version) {
        pay_flow_answer(flow, http_status, pay_payment_json(p));
        return;
    }
    /* the version this command stored: its text is the answer, its record the reply's */
    pay_reply_clear(&flow->reply);
    memset(&flow->reply, 0, sizeof flow->reply);
    flow->reply.status = PC_OK;
    flow->reply.http_status = http_status;
    flow->reply.text = flow->doc_text;
    flow->reply.text_bytes = strlen(flow->doc_text);
    pay_id_copy(flow->reply.ref_id, p->id);
    flow->reply.ref_version = p->version;
    flow->reply_ready = true;
}

/* What this write changes in the figures; counted only once its command commits. */
static void stats_change_note(pay_flow_t *flow, bool first) {
    const pay_payment_t *p = &flow->payment;
    pay_stats_change_t *change = &flow->stats_change;
    change->pending = true;
    change->created = first;
    change->changed = first || p->state != p->state_stored;
    change->from = first ? PAY_STATE_CREATED : p->state_stored;
    change->to = p->state;
    pc_str_copy(change->decline_code, sizeof change->decline_code, p->decline.code);
    pc_str_copy(change->merchant_id, sizeof change->merchant_id, p->merchant_id);
}

/* A dry run's payment as its staged document renders it (parts shared: a command
 * replaces them, never changes one in place). */
static void staged_snapshot(pay_flow_t *flow) {
    pay_staged_t *staged = &flow->staged;
    if (flow->payment.pending_op[0] != '\0') { /* no operation starts on it as it is: not kept */
        pay_payment_free(staged->payment);
        staged->payment = NULL;
        return;
    }
    if (staged->payment != NULL) pay_payment_clear(staged->payment);
    else staged->payment = malloc(sizeof *staged->payment);
    if (staged->payment != NULL && pay_payment_copy_for_dry_run(staged->payment, &flow->payment) != PC_OK) {
        pay_payment_free(staged->payment);
        staged->payment = NULL;
    }
}

/* The caller's Idempotency-Key names the payment from its first write on: through the
 * caller's stored reply (one row for the key's replay and this), else a lookup of ours. */
static pc_status flow_key_put(pay_flow_t *flow, store_tx_t *tx) {
    const pay_payment_t *p = &flow->payment;
    if (flow->reply_fn.key_in_tx != NULL) {
        pc_status status = flow->reply_fn.key_in_tx(flow->reply_fn.ctx, tx, p->id);
        flow->key_written = status == PC_OK;
        return status;
    }
    char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 16];
    pay_lookup_idem(name, sizeof name, flow->key_id, flow->idempotency_key);
    pc_status status = store_pay_lookup_put(tx, name, p->id, flow->request_hash, sizeof flow->request_hash);
    if (status == PC_EXISTS) return PC_OK; /* a replay's own lookup: it stays */
    if (status == PC_OK) pay_idem_index_add(flow->pay, flow->key_id, flow->idempotency_key);
    return status;
}

pc_status pay_flow_write_payment(pay_flow_t *flow, store_tx_t *tx) {
    pay_payment_t *p = &flow->payment;
    bool first = !flow->payment_stored;
    pc_status status = PC_OK;
    if (first && flow->card_new && tx != NULL) status = vault_card_store(flow->pay->config.vault, tx, &flow->card);
    char *doc = NULL; /* rendered once: the row's document and the event's object */
    if (status == PC_OK) status = pay_payment_put(tx, p, &flow->staged, &doc);
    if (status == PC_OK && tx == NULL) staged_snapshot(flow);
    if (status != PC_OK || tx == NULL) return status; /* tx NULL: a dry run (pay_flow_submit_staged) */
    char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 16];
    if (status == PC_OK && first && flow->has_idempotency) status = flow_key_put(flow, tx);
    if (status == PC_OK && first && p->state == PAY_STATE_IN_REVIEW && p->risk.decision_id != 0) {
        pay_lookup_risk(name, sizeof name, p->risk.decision_id);
        status = store_pay_lookup_put(tx, name, p->id, NULL, 0);
        if (status == PC_EXISTS) status = PC_OK;
    }
    if (status == PC_OK) stats_change_note(flow, first); /* before the event marks the state stored */
    if (status == PC_OK) status = pay_event_payment(flow, tx, doc);
    if (status == PC_OK) {
        flow->payment_stored = true;
        flow->payment_written = true;
        if (flow->reply.text != NULL && flow->reply.text == flow->doc_text) { /* an earlier answer's */
            flow->reply.body = json_loadb(flow->reply.text, flow->reply.text_bytes, 0, NULL);
            flow->reply.text = NULL;
        }
        free(flow->doc_text);
        flow->doc_text = doc;
        flow->doc_version = p->version;
        doc = NULL;
    }
    free(doc);
    return status;
}

void pay_flow_op_put(pay_flow_t *flow) {
    const pay_op_t *op = &flow->op;
    pay_staged_t *staged = &flow->staged;
    pay_text_t *text = NULL;
    if (staged->op_entry_text != NULL && staged->op_entry_version == op->version) { /* rendered by the dry run */
        text = pay_text_hold(staged->op_entry_text);
#ifdef PC_SLOW_ASSERTS
        pay_text_t *made = pay_op_entry_text(op);
        PC_ASSERT(made != NULL && strcmp(made->text, text->text) == 0); /* the dry run saw this op */
        pay_text_drop(made);
#endif
    } else {
        text = pay_op_entry_text(op);
    }
    if (flow->dry && text != NULL) { /* the writer takes it (the copy's payment holds it too) */
        pay_text_t *held = pay_text_hold(text);
        pay_text_drop(staged->op_entry_text);
        staged->op_entry_text = held;
        staged->op_entry_version = op->version;
    }
    pay_payment_entry_put(&flow->payment, op, text);
}

/* ---- writer commands ---- */

static pc_status flow_cmd_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    pay_flow_t *flow = cmd->user;
    flow->reply_ready = false;
    flow->stats_change.pending = false;
    flow->payment_written = false;
    flow->key_written = false;
    flow->staged.taken = false;
    flow->answer_kept_version = 0;
    pc_status status = flow->in_tx != NULL ? flow->in_tx(flow, tx) : PC_OK;
    if (status == PC_OK && flow->reply_ready && flow->reply_fn.in_tx != NULL && flow->reply.status == PC_OK) {
        pay_flow_answer_keep(flow);
        status = flow->reply_fn.in_tx(flow->reply_fn.ctx, tx, &flow->reply);
    }
    if (status == PC_OK) status = pay_flow_row_put(flow, tx); /* once, with the answer: no second UPDATE */
    return status;
}

/* The command wrote the payment: what it committed is the dry run's payment when the
 * writer stored that run's document (same version), else not known. */
static void committed_note(pay_flow_t *flow, pc_status commit_status) {
    pay_staged_t *staged = &flow->staged;
    pay_payment_t *committed = NULL;
    if (commit_status == PC_OK && staged->taken && staged->payment != NULL &&
        staged->payment->version == flow->payment.version) {
        committed = staged->payment;
        staged->payment = NULL;
        pay_payment_as_stored(committed); /* as a read of it would be */
    }
    pay_payment_free(flow->committed_stale); /* rare: two writes before the flow ended */
    flow->committed_stale = flow->committed; /* freed with the flow, off the writer's thread */
    flow->committed = committed;
}

static void flow_cmd_done(writer_cmd_t *cmd, pc_status commit_status) {
    pay_flow_t *flow = cmd->user;
    if (flow->stats_change.pending && commit_status == PC_OK) {
        pay_stats_count(flow->pay, &flow->stats_change);
        flow->payment.state_stored = flow->stats_change.to;
    }
    flow->stats_change.pending = false;
    if (flow->payment_written) {
        pay_committed_note(flow->pay, flow->payment.id, commit_status == PC_OK ? flow->payment.version : 0);
        committed_note(flow, commit_status);
    }
    if (flow->key_written && commit_status == PC_OK) {
        flow->key_named = true;
        if (flow->reply_fn.key_committed != NULL) flow->reply_fn.key_committed(flow->reply_fn.ctx);
    }
    flow->key_written = false;
    pay_staged_clear(&flow->staged); /* valid for its command only */
    pay_path_cut_at(flow, flow->path.answered ? PAY_PATH_BOOK_QUEUE : PAY_PATH_PERSIST_QUEUE, cmd->batch_started_ns);
    pay_path_cut(flow, flow->path.answered ? PAY_PATH_BOOK_COMMIT : PAY_PATH_PERSIST_COMMIT);
    pay_flow_fn then = flow->then;
    flow->then = NULL;
    pay_serial_enter(); /* the writer's thread: a next command renders elsewhere */
    /* what this hands to a stage thread goes with the rest of the batch's, at its end */
    if (writer_completions_defer(pay_stage_release)) pay_stage_hold();
    then(flow, commit_status);
    pay_serial_leave();
}

/* The flow's card data (a new card, a challenge code, the number as entered, the
 * gateway request) lie in [card, call): a dry run never reads them (it writes no vault
 * row, calls nobody). */
static_assert(offsetof(pay_flow_t, card) < offsetof(pay_flow_t, card_new) &&
                  offsetof(pay_flow_t, card_new) < offsetof(pay_flow_t, challenge_code) &&
                  offsetof(pay_flow_t, challenge_code) < offsetof(pay_flow_t, card_number) &&
                  offsetof(pay_flow_t, card_number) < offsetof(pay_flow_t, request) &&
                  offsetof(pay_flow_t, request) < offsetof(pay_flow_t, call),
              "the secrets a dry run leaves behind are one range");
static_assert(offsetof(pay_flow_t, transfer_results) + sizeof(((pay_flow_t *)0)->transfer_results) ==
                  offsetof(pay_flow_t, accounts),
              "transfer_results is followed by accounts");

/* Copies into 'copy' what a dry run of the flow's command reads. The card data are
 * not copied (zero: nothing to wipe after), nor the transfers' results (zero: they
 * read as committed). */
static void flow_dry_copy(pay_flow_t *copy, const pay_flow_t *flow) {
    const char *from = (const char *)flow;
    char *to = (char *)copy;
    size_t secrets_at = offsetof(pay_flow_t, card), secrets_end = offsetof(pay_flow_t, call);
    size_t results_at = offsetof(pay_flow_t, transfer_results), results_end = offsetof(pay_flow_t, accounts);
    memcpy(to, from, secrets_at);
    memset(to + secrets_at, 0, secrets_end - secrets_at);
    memcpy(to + secrets_end, from + secrets_end, results_at - secrets_end);
    memset(to + results_at, 0, results_end - results_at);
    memcpy(to + results_end, from + results_end, sizeof *copy - results_end);
}

/* The command's in_tx run dry on a copy of the flow: its texts into flow->staged.
 * The copy shares nothing it could free or change (its reply, document, staged texts
 * and payment are its own); its transfers read as committed. A failure stages
 * nothing: the writer renders then. */
static void flow_stage(pay_flow_t *flow, pay_flow_tx_fn in_tx) {
    pay_staged_clear(&flow->staged);
    pay_flow_t copy_storage; /* ~15 kB: on the stack, not a large malloc per command */
    pay_flow_t *copy = &copy_storage;
    flow_dry_copy(copy, flow);
    memset(&copy->reply, 0, sizeof copy->reply);
    memset(&copy->staged, 0, sizeof copy->staged);
    copy->doc_text = NULL;
    copy->committed = copy->committed_stale = NULL;
    copy->dry = true;
    if (pay_payment_copy_for_dry_run(&copy->payment, &flow->payment) == PC_OK && in_tx(copy, NULL) == PC_OK) {
        flow->staged = copy->staged;
        memset(&copy->staged, 0, sizeof copy->staged);
        pay_staged_pack(&flow->staged, flow->pay->config.store);
        if (flow->payment.fixed_text == NULL) flow->payment.fixed_text = pay_text_hold(copy->payment.fixed_text);
    }
    pay_staged_clear(&copy->staged);
    pay_reply_clear(&copy->reply);
    free(copy->doc_text);
    pay_payment_clear(&copy->payment);
}

static void flow_stage_and_submit(pay_flow_t *flow) {
    flow_stage(flow, flow->staging.in_tx);
    pay_flow_submit(flow, flow->staging.kind, flow->staging.event_count, flow->staging.in_tx, flow->staging.then);
}

void pay_flow_submit_staged(pay_flow_t *flow, writer_cmd_kind kind, uint32_t event_count, pay_flow_tx_fn in_tx,
                            pay_flow_fn then) {
    if (!flow->has_payment || !flow->payment.live) { /* nothing to render */
        pay_flow_submit(flow, kind, event_count, in_tx, then);
        return;
    }
    flow->staging.kind = kind;
    flow->staging.event_count = event_count;
    flow->staging.in_tx = in_tx;
    flow->staging.then = then;
    if (serial_depth > 0 && pay_stage_queue(flow, flow_stage_and_submit)) return; /* the stage thread's now */
    flow_stage_and_submit(flow);
}

void pay_flow_submit(pay_flow_t *flow, writer_cmd_kind kind, uint32_t event_count, pay_flow_tx_fn in_tx,
                     pay_flow_fn then) {
    writer_cmd_t *cmd = &flow->cmd;
    memset(cmd, 0, sizeof *cmd);
    memset(flow->transfer_results, 0, sizeof flow->transfer_results);
    memset(flow->account_results, 0, sizeof flow->account_results);
    cmd->kind = kind;
    cmd->event_count = kind == WRITER_CMD_EXEC ? 1 : event_count;
    cmd->accounts = flow->account_events ? flow->account_events : flow->accounts;
    cmd->account_results = flow->account_events ? flow->account_event_results : flow->account_results;
    cmd->transfers = flow->transfers;
    cmd->transfer_results = flow->transfer_results;
    cmd->in_transaction = flow_cmd_in_tx;
    cmd->done = flow_cmd_done;
    cmd->user = flow;
    flow->in_tx = in_tx;
    flow->then = then;
    pay_path_cut(flow, flow->path.answered ? PAY_PATH_BOOK_STAGE : PAY_PATH_PERSIST_STAGE);
    pc_status status = writer_submit(flow->pay->config.writer, cmd);
    if (status != PC_OK) {
        flow->then = NULL;
        then(flow, status);
    }
}
