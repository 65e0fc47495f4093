/* include/paycore/money.h: ISO 4217 currencies and overflow-checked minor-unit
 * arithmetic. Amounts are int64 minor units; no floating point touches money. */
#ifndef PAYCORE_MONEY_H
#define PAYCORE_MONEY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char code[4];        /* "USD" */
    uint8_t exponent;    /* minor units per major unit = 10^exponent: USD 2, JPY 0, BHD 3 */
} pc_currency;

/* Looks up an ISO 4217 alphabetic code (exactly three upper-case letters).
 * Returns NULL when the code is not in the built-in table. */
const pc_currency *pc_currency_find(const char *code);
/* The number of currencies in the table and the i-th one (docs, tests). */
uint32_t pc_currency_count(void);
const pc_currency *pc_currency_at(uint32_t index);

/* a + b into *out; false (and *out untouched) on int64 overflow. */
static inline bool pc_add_i64(int64_t a, int64_t b, int64_t *out) {
    int64_t sum;
    if (__builtin_add_overflow(a, b, &sum)) return false;
    *out = sum;
    return true;
}

#endif
