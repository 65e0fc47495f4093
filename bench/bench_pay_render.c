/* bench/bench_pay_render.c: a payment's texts written directly (payments/render.c)
 * against jansson building the object and dumping it, for the objects every payment
 * renders several times: a capture operation (its row text and its entry in the
 * payment) and the payment's fixed members (method, payer, description, risk); and a
 * payment's version record packed as the SQLite store keeps it (store/sqlite_pay_pack.c)
 * against the former packing (zstd level -1 with its own parameters, the dictionary
 * shared), on the dictionary's typical records with their digits changed.
 * One thread, no I/O: the ratio holds on a busy machine, where the end-to-end figures
 * do not. Prints one line per figure:
 *   pay_render_op writes_per_s=… baseline=jansson_dump baseline_per_s=… ratio=…
 *   pay_render_fixed writes_per_s=… baseline=jansson_dump baseline_per_s=… ratio=…
 *   pay_pack packs_per_s=… bytes_per_record=… baseline=zstd_level_-1 baseline_per_s=…
 *     baseline_bytes_per_record=… ratio=…
 * (the fixed members' baseline is jansson's dump of the whole payment, no operations
 * yet, which their text used to be cut from). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "payments/pay_internal.h"
#include "store/sqlite_internal.h"

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

#define PACK_RECORDS_MAX 16
#define PACK_ITERATIONS 4000

typedef struct {
    char *text[PACK_RECORDS_MAX];
    size_t bytes[PACK_RECORDS_MAX];
    uint32_t count;
} pack_records_t;

/* The dictionary's records, each digit moved on by 7: typical records, not its own. */
static void pack_records_make(pack_records_t *records) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    records->count = 0;
    for (const char *line = dictionary; line < dictionary + bytes && records->count < PACK_RECORDS_MAX;) {
        const char *end = memchr(line, '\n', (size_t)(dictionary + bytes - line));
        if (end == NULL) break;
        size_t n = (size_t)(end - line);
        char *text = malloc(n);
        if (text == NULL) break;
        for (size_t i = 0; i < n; i++) text[i] = line[i] >= '0' && line[i] <= '9' ? (char)('0' + (line[i] - '0' + 7) % 10) : line[i];
        records->text[records->count] = text;
        records->bytes[records->count++] = n;
        line = end + 1;
    }
}

/* The former packing: level -1 with zstd's own parameters, the dictionary shared. */
typedef struct {
    ZSTD_CDict *cdict;
    ZSTD_CCtx *cctx;
    uint8_t buffer[16384];
} former_pack_t;

static bool former_open(former_pack_t *former) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    former->cdict = ZSTD_createCDict(dictionary, bytes, -1);
    former->cctx = ZSTD_createCCtx();
    if (former->cdict == NULL || former->cctx == NULL) return false;
    ZSTD_CCtx_setParameter(former->cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(former->cctx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setParameter(former->cctx, ZSTD_c_dictIDFlag, 0);
    return true;
}

static size_t former_pack(former_pack_t *former, const char *text, size_t bytes) {
    if (ZSTD_isError(ZSTD_CCtx_refCDict(former->cctx, former->cdict))) return 0;
    size_t packed = ZSTD_compress2(former->cctx, former->buffer + 1, sizeof former->buffer - 1, text, bytes);
    return ZSTD_isError(packed) ? 0 : 1 + packed;
}

/* One round of each (alternated): rates added to *packed_s and *former_s, bytes to
 * *packed_bytes and *former_bytes; false when a record did not pack. */
static bool pack_round(const pack_records_t *records, store_pay_pack_t **pack, former_pack_t *former, double *packed_s,
                       double *former_s, uint64_t *packed_bytes, uint64_t *former_bytes) {
    uint64_t t0 = pc_mono_ns();
    for (int i = 0; i < PACK_ITERATIONS; i++) {
        uint32_t r = (uint32_t)i % records->count;
        const uint8_t *packed = NULL;
        size_t bytes = 0;
        if (store_sqlite_pay_pack(pack, records->text[r], records->bytes[r], &packed, &bytes) != PC_OK ||
            packed == NULL) {
            return false;
        }
        *packed_bytes += bytes;
    }
    *packed_s += rate_per_s(t0, PACK_ITERATIONS);
    t0 = pc_mono_ns();
    for (int i = 0; i < PACK_ITERATIONS; i++) {
        uint32_t r = (uint32_t)i % records->count;
        size_t bytes = former_pack(former, records->text[r], records->bytes[r]);
        if (bytes == 0) return false;
        *former_bytes += bytes;
    }
    *former_s += rate_per_s(t0, PACK_ITERATIONS);
    return true;
}

static int pack_bench(void) {
    pack_records_t records;
    pack_records_make(&records);
    former_pack_t *former = calloc(1, sizeof *former);
    store_pay_pack_t *pack = NULL;
    double packed_s = 0, former_s = 0;
    uint64_t packed_bytes = 0, former_bytes = 0;
    bool ok = records.count > 0 && former != NULL && former_open(former);
    for (int r = 0; ok && r < ROUNDS; r++) {
        ok = pack_round(&records, &pack, former, &packed_s, &former_s, &packed_bytes, &former_bytes);
    }
    if (ok) {
        double packs = (double)ROUNDS * PACK_ITERATIONS;
        printf("pay_pack packs_per_s=%.0f bytes_per_record=%.1f baseline=zstd_level_-1 baseline_per_s=%.0f "
               "baseline_bytes_per_record=%.1f ratio=%.2f\n",
               packed_s / ROUNDS, packed_bytes / packs, former_s / ROUNDS, former_bytes / packs, packed_s / former_s);
    } else {
        fprintf(stderr, "bench_pay_render: a record did not pack\n");
    }
    store_sqlite_pay_pack_free(pack);
    if (former != NULL) {
        ZSTD_freeCCtx(former->cctx);
        ZSTD_freeCDict(former->cdict);
    }
    free(former);
    for (uint32_t i = 0; i < records.count; i++) free(records.text[i]);
    return ok ? 0 : 1;
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
    return pack_bench();
}
