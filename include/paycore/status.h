/* include/paycore/status.h: the one list of result codes (status.def), as an enum
 * with names, HTTP statuses and messages. Every layer returns these unchanged. */
#ifndef PAYCORE_STATUS_H
#define PAYCORE_STATUS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
#define X(name, value, http, transient, code, message) PC_##name = value,
#include "paycore/status.def"
#undef X
} pc_status;

#define PC_MUST_USE __attribute__((warn_unused_result))

/* The stable snake_case code ("insufficient_funds"); "unknown" for a value not in the list. */
const char *pc_status_code(pc_status status);
/* A short human message. */
const char *pc_status_message(pc_status status);
/* The HTTP status the API answers with for this code. */
int pc_status_http(pc_status status);
/* True when retrying the same request later may succeed. */
bool pc_status_transient(pc_status status);
/* Parses a stable code back into its value; false when unknown. */
bool pc_status_from_code(const char *code, pc_status *out);
/* Calls 'fn' for every code in value order (docs generation, tests). */
void pc_status_each(void (*fn)(pc_status status, void *ctx), void *ctx);

/* Programmer errors: on in production; print and abort. */
_Noreturn void pc_panic(const char *file, int line, const char *condition);
#define PC_ASSERT(cond) ((cond) ? (void)0 : pc_panic(__FILE__, __LINE__, #cond))
#ifdef PC_SLOW_ASSERTS
#define PC_ASSERT_SLOW(cond) PC_ASSERT(cond)
#else
#define PC_ASSERT_SLOW(cond) ((void)0)
#endif

#endif
