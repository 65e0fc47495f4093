/* core/core.h: small helpers every subsystem shares: ids, clocks, hashing. */
#ifndef PAYCORE_CORE_H
#define PAYCORE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "paycore/limits.h"
#include "paycore/status.h"

/* True when 'id' is 1..PC_ID_BYTES_MAX characters of [A-Za-z0-9._:-]. */
bool pc_id_valid(const char *id);
/* Copies a valid id into a PC_ID_SIZE buffer; false (dst = "") when invalid. */
bool pc_id_copy(char dst[PC_ID_SIZE], const char *id);

/* Wall-clock nanoseconds since the Unix epoch. */
uint64_t pc_wall_ns(void);
/* Monotonic nanoseconds (for durations, never stored). */
uint64_t pc_mono_ns(void);
/* The CLOCK_REALTIME time 'ms' milliseconds from now: pthread_cond_timedwait's deadline. */
struct timespec pc_realtime_after_ms(uint64_t ms);

/* A fast 64-bit hash of bytes (hash tables, filters: not for security). */
uint64_t pc_hash64(const void *bytes, size_t byte_count);

/* Duplicates a string with malloc; NULL stays NULL. */
char *pc_strdup(const char *s);

#endif
