/* store/store_dirty.c: the accounts changed since the balance snapshot (store_dirty.h). */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "paycore/limits.h"
#include "store/store_dirty.h"

pc_status store_dirty_init(store_dirty_t *dirty) {
    dirty->bits = calloc(LEDGER_ACCOUNTS_MAX / 8, 1);
    dirty->capacity = 1024;
    dirty->count = 0;
    dirty->list = malloc(sizeof(uint32_t) * dirty->capacity);
    return dirty->bits != NULL && dirty->list != NULL ? PC_OK : PC_NO_MEMORY;
}

void store_dirty_free(store_dirty_t *dirty) {
    free(dirty->bits);
    free(dirty->list);
    memset(dirty, 0, sizeof *dirty);
}

void store_dirty_mark(store_dirty_t *dirty, uint32_t account_no) {
    PC_ASSERT(account_no < LEDGER_ACCOUNTS_MAX);
    if (dirty->bits[account_no / 8] & (1u << (account_no % 8))) return;
    dirty->bits[account_no / 8] |= (uint8_t)(1u << (account_no % 8));
    if (dirty->count == dirty->capacity) {
        uint32_t *grown = realloc(dirty->list, sizeof(uint32_t) * dirty->capacity * 2);
        PC_ASSERT(grown != NULL);
        dirty->list = grown;
        dirty->capacity *= 2;
    }
    dirty->list[dirty->count++] = account_no;
}

void store_dirty_clear(store_dirty_t *dirty) {
    for (uint32_t i = 0; i < dirty->count; i++) dirty->bits[dirty->list[i] / 8] = 0;
    dirty->count = 0;
}

static int account_no_compare(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

uint32_t *store_dirty_sorted(const store_dirty_t *dirty, const uint32_t *extra, uint32_t extra_count,
                             uint32_t *count_out) {
    uint32_t count = dirty->count + extra_count;
    uint32_t *nos = malloc(sizeof(uint32_t) * (count > 0 ? count : 1));
    if (nos == NULL) return NULL;
    if (dirty->count > 0) memcpy(nos, dirty->list, sizeof(uint32_t) * dirty->count);
    if (extra_count > 0) memcpy(nos + dirty->count, extra, sizeof(uint32_t) * extra_count);
    qsort(nos, count, sizeof(uint32_t), account_no_compare);
    uint32_t unique = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (unique == 0 || nos[unique - 1] != nos[i]) nos[unique++] = nos[i];
    }
    *count_out = unique;
    return nos;
}
