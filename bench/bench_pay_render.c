/* bench/bench_pay_render.c: a payment's texts written directly (payments/render.c)
 * against jansson building the object and dumping it, for the objects every payment
 * renders several times: a capture operation (its row text and its entry in the
 * payment) and the payment's fixed members (method, payer, description, risk).
 * One thread, no I/O: the ratio holds on a busy machine, where the end-to-end figures
 * do not. Prints one line per figure:
 *   pay_render_op writes_per_s=… baseline=jansson_dump baseline_per_s=… ratio=…
 *   pay_render_fixed writes_per_s=… baseline=jansson_dump baseline_per_s=… ratio=…
 * (the fixed members' baseline is jansson's dump of the whole payment, no operations
 * yet, which their text used to be cut from). */
#include <stdio.h>
#include <string.h>

#include "payments/pay_internal.h"

#define ROUNDS 5
#define ITERATIONS 20000

static void op_make(pay_op_t *op) {
    memset(op, 0, sizeof *op);
    snprintf(op->id, sizeof op->id, "cap_0190f3a2b4c5d6e7f8a9b0c1");
    op->kind = PAY_OP_CAPTURE;
    snprintf(op->parent_id, sizeof op->parent_id, "pay_0190f3a2b4c5d6e7f8a9b0c0");
    snprintf(op->merchant_id, sizeof op->merchant_id, "m_bench");
    snprintf(op->status, sizeof op->status, "succeeded");
    op->amount = 4321;
    snprintf(op->currency, sizeof op->currency, "EUR");
    op->final_capture = true;
    op->fee = 155;
    snprintf(op->channel, sizeof op->channel, "card_sim");
    snprintf(op->channel_ref, sizeof op->channel_ref, "ch_4f1a2b3c4d5e6f");
    snprintf(op->response_code, sizeof op->response_code, "00");
    snprintf(op->message, sizeof op->message, "approved");
    op->attempt_count = 1;
    pay_attempt_t *a = &op->attempts[0];
    a->number = 1;
    snprintf(a->channel, sizeof a->channel, "card_sim");
    snprintf(a->idempotency_key, sizeof a->idempotency_key, "att_6b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f");
    a->op = GW_OP_CAPTURE;
    a->outcome = GW_OUTCOME_APPROVED;
    snprintf(a->response_code, sizeof a->response_code, "00");
    a->created_ns = 1796000000123456789ull;
    op->transfer_count = 2;
    snprintf(op->transfers[0], PC_ID_SIZE, "cap_0190f3a2b4c5d6e7f8a9b0c1:post");
    snprintf(op->transfers[1], PC_ID_SIZE, "cap_0190f3a2b4c5d6e7f8a9b0c1:fee");
    op->created_ns = 1796000000123456789ull;
    op->updated_ns = 1796000000223456789ull;
    op->version = 2;
}

static void payment_make(pay_payment_t *p) {
    pay_payment_init(p);
    snprintf(p->id, sizeof p->id, "pay_0190f3a2b4c5d6e7f8a9b0c0");
    snprintf(p->merchant_id, sizeof p->merchant_id, "m_bench");
    p->amount = 4321;
    snprintf(p->currency, sizeof p->currency, "EUR");
    p->method = PAY_METHOD_CARD;
    snprintf(p->card.token, sizeof p->card.token, "tok_0190f3a2b4c5d6e7f8a9b0bf");
    snprintf(p->card.bin, sizeof p->card.bin, "400000");
    snprintf(p->card.last4, sizeof p->card.last4, "0002");
    p->card.exp_month = 12;
    p->card.exp_year = 2030;
    snprintf(p->card.fingerprint, sizeof p->card.fingerprint, "%064d", 7);
    snprintf(p->payer.id, sizeof p->payer.id, "P12");
    snprintf(p->payer.country, sizeof p->payer.country, "DE");
    snprintf(p->description, sizeof p->description, "bench");
    snprintf(p->risk.outcome, sizeof p->risk.outcome, "approve");
    p->risk.decision_id = 123456789;
    p->risk.detail = json_pack("{s:f,s:[]}", "score", 0.0123456789, "reasons");
}

static double rate_per_s(uint64_t started_ns, int count) {
    return count / ((double)(pc_mono_ns() - started_ns) / 1e9);
}

static void op_round(const pay_op_t *op, double *written_s, double *dumped_s) {
    uint64_t t0 = pc_mono_ns();
    for (int i = 0; i < ITERATIONS; i++) free(pay_render_op(op));
    *written_s += rate_per_s(t0, ITERATIONS);
    t0 = pc_mono_ns();
    for (int i = 0; i < ITERATIONS; i++) {
        json_t *doc = pay_op_json(op);
        free(json_dumps(doc, JSON_COMPACT));
        json_decref(doc);
    }
    *dumped_s += rate_per_s(t0, ITERATIONS);
}

static void fixed_round(const pay_payment_t *p, double *written_s, double *dumped_s) {
    uint64_t t0 = pc_mono_ns();
    for (int i = 0; i < ITERATIONS; i++) free(pay_render_fixed(p));
    *written_s += rate_per_s(t0, ITERATIONS);
    t0 = pc_mono_ns();
    for (int i = 0; i < ITERATIONS; i++) {
        json_t *doc = pay_payment_json(p);
        free(json_dumps(doc, JSON_COMPACT));
        json_decref(doc);
    }
    *dumped_s += rate_per_s(t0, ITERATIONS);
}

int main(void) {
    pay_op_t op;
    pay_payment_t p;
    op_make(&op);
    payment_make(&p);
    char *written = pay_render_op(&op);
    json_t *doc = pay_op_json(&op);
    char *dumped = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    bool same = written != NULL && dumped != NULL && strcmp(written, dumped) == 0;
    free(written);
    free(dumped);
    if (!same) {
        fprintf(stderr, "bench_pay_render: the written operation differs from jansson's dump\n");
        return 1;
    }
    double op_written = 0, op_dumped = 0, fixed_written = 0, fixed_dumped = 0;
    for (int r = 0; r < ROUNDS; r++) { /* alternated: both see the same drift */
        op_round(&op, &op_written, &op_dumped);
        fixed_round(&p, &fixed_written, &fixed_dumped);
    }
    printf("pay_render_op writes_per_s=%.0f baseline=jansson_dump baseline_per_s=%.0f ratio=%.2f\n",
           op_written / ROUNDS, op_dumped / ROUNDS, op_written / op_dumped);
    printf("pay_render_fixed writes_per_s=%.0f baseline=jansson_dump baseline_per_s=%.0f ratio=%.2f\n",
           fixed_written / ROUNDS, fixed_dumped / ROUNDS, fixed_written / fixed_dumped);
    pay_payment_clear(&p);
    return 0;
}
