/* ledger/chain.c: linked chains. Events flagged linked join the next event into one
 * chain that commits entirely or not at all; other events of the batch are not
 * affected. A failing chain is undone to its savepoint; its failing event keeps its
 * own code, every other event of the chain gets linked_event_failed. A batch whose
 * last event is linked leaves the chain open: linked_event_chain_open on that event,
 * linked_event_failed on the rest of the chain, nothing applied. */
#include <stddef.h>

#include "ledger/ledger_internal.h"

/* Returns the index of the last event of the chain starting at 'first', and sets
 * *open when the batch ends inside the chain. */
static uint32_t chain_end(const void *events, uint32_t first, uint32_t count,
                          bool (*linked)(const void *events, uint32_t index), bool *open) {
    uint32_t last = first;
    while (last < count && linked(events, last)) last++;
    *open = (last == count);
    return *open ? count - 1 : last;
}

static void chain_fail(uint32_t first, uint32_t last, uint32_t failed, pc_status failed_status,
                       ledger_result_set_fn result_set, void *results) {
    for (uint32_t i = first; i <= last; i++) {
        result_set(results, i, i == failed ? failed_status : PC_LINKED_EVENT_FAILED);
    }
}

static void chain_run(ledger_t *ledger, const void *events, uint32_t first, uint32_t last,
                      ledger_apply_fn apply, ledger_result_set_fn result_set, void *results,
                      const void *ctx) {
    ledger_savepoint_t savepoint;
    ledger__savepoint(ledger, &savepoint);
    for (uint32_t i = first; i <= last; i++) {
        pc_status status = apply(ledger, events, i, results, ctx);
        if (status != PC_OK) {
            ledger__rollback_to(ledger, &savepoint);
            chain_fail(first, last, i, status, result_set, results);
            return;
        }
    }
}

void ledger__apply_chains(ledger_t *ledger, const void *events, uint32_t count,
                          bool (*linked)(const void *events, uint32_t index),
                          ledger_apply_fn apply, ledger_result_set_fn result_set,
                          ledger_failed_fn failed, void *results, const void *ctx) {
    PC_ASSERT(ledger->batch_open);
    uint32_t first = 0;
    while (first < count) {
        bool open;
        uint32_t last = chain_end(events, first, count, linked, &open);
        if (open) {
            chain_fail(first, last, last, PC_LINKED_EVENT_CHAIN_OPEN, result_set, results);
        } else if (first == last) {
            pc_status status = apply(ledger, events, first, results, ctx);
            if (status != PC_OK && status != PC_EXISTS) {
                result_set(results, first, status);
                if (failed != NULL) failed(ledger, events, first, status);
            }
        } else {
            chain_run(ledger, events, first, last, apply, result_set, results, ctx);
        }
        first = last + 1;
    }
}
