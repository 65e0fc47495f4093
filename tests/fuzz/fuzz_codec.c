/* tests/fuzz/fuzz_codec.c: libFuzzer target for the API's request decoders
 * (api/codec.c): any bytes go through parse -> decode accounts/transfers -> encode.
 * Checks: no crash, no leak, no UB (ASan/UBSan), and every decoded event satisfies
 * the rules the decoder promises (valid ids, amounts >= 0, known currencies). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/codec.h"
#include "core/core.h"
#include "paycore/money.h"

typedef struct block {
    struct block *next;
    max_align_t data[];
} block;

static void *list_alloc(void *ctx, size_t bytes) {
    block **head = ctx;
    block *b = calloc(1, sizeof(block) + bytes);
    if (b == NULL) return NULL;
    b->next = *head;
    *head = b;
    return b->data;
}

static void list_free(block *head) {
    while (head != NULL) {
        block *next = head->next;
        free(head);
        head = next;
    }
}

static void check_transfers(const ledger_transfer_t *events, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        PC_ASSERT(pc_id_valid(events[i].id));
        PC_ASSERT(events[i].amount >= 0);
        PC_ASSERT(events[i].currency[0] == '\0' || pc_currency_find(events[i].currency) != NULL);
        PC_ASSERT((events[i].flags & ~LEDGER_TRANSFER_FLAGS_CLIENT) == 0);
        json_decref(codec_transfer_json(&events[i], LEDGER_PENDING_NONE));
    }
}

static void check_accounts(const ledger_account_t *events, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        PC_ASSERT(pc_id_valid(events[i].id));
        PC_ASSERT(pc_currency_find(events[i].currency) != NULL);
        PC_ASSERT(events[i].metadata_json == NULL || strlen(events[i].metadata_json) <= LEDGER_METADATA_BYTES_MAX);
        json_decref(codec_account_json(&events[i]));
    }
}

/* The fast path must agree with the full decoder on everything it accepts. */
static void check_same(const ledger_transfer_t *fast, const ledger_transfer_t *full, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        PC_ASSERT(strcmp(fast[i].id, full[i].id) == 0);
        PC_ASSERT(strcmp(fast[i].debit_account_id, full[i].debit_account_id) == 0);
        PC_ASSERT(strcmp(fast[i].credit_account_id, full[i].credit_account_id) == 0);
        PC_ASSERT(strcmp(fast[i].pending_id, full[i].pending_id) == 0);
        PC_ASSERT(strcmp(fast[i].currency, full[i].currency) == 0);
        PC_ASSERT(fast[i].amount == full[i].amount);
        PC_ASSERT(fast[i].code == full[i].code);
        PC_ASSERT(fast[i].flags == full[i].flags);
        PC_ASSERT(fast[i].timeout_s == full[i].timeout_s);
        PC_ASSERT(fast[i].metadata_json == NULL && full[i].metadata_json == NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    codec_error_t err;
    memset(&err, 0, sizeof err);
    block *arena = NULL;
    codec_alloc_t alloc = {list_alloc, &arena};
    bool batch, fast_batch = false;
    uint32_t count = 0, fast_count = 0;
    ledger_transfer_t *transfers = NULL, *fast = NULL;
    bool fast_ok = codec_fast_transfers((const char *)data, size, &alloc, &fast, &fast_count,
                                        &fast_batch) == PC_OK;
    json_t *body = codec_parse_object((const char *)data, size, &err);
    if (body == NULL) {
        PC_ASSERT(err.status != PC_OK && err.http_status == 400);
        PC_ASSERT(!fast_ok); /* the fast path never accepts what the full one refuses */
        list_free(arena);
        return 0;
    }
    if (codec_decode_transfers(body, &alloc, &transfers, &count, &batch, &err) == PC_OK) {
        PC_ASSERT(count >= 1 && count <= LEDGER_BATCH_EVENTS_MAX);
        check_transfers(transfers, count);
        if (fast_ok) {
            PC_ASSERT(fast_count == count && fast_batch == batch);
            check_same(fast, transfers, count);
        }
    } else {
        PC_ASSERT(!fast_ok);
    }
    ledger_account_t *accounts = NULL;
    memset(&err, 0, sizeof err);
    if (codec_decode_accounts(body, &alloc, &accounts, &count, &batch, &err) == PC_OK) {
        check_accounts(accounts, count);
    }
    list_free(arena);
    json_decref(body);
    return 0;
}
