/* core/spares.h: a capped list of spare records of one size, kept for reuse. A record
 * the hot path allocates and another thread frees (a gateway call, a risk store op) is
 * a large allocation each time; kept records spare that, and the cap bounds the memory
 * held after a burst. The list has its own mutex: any thread may take or give. */
#ifndef PAYCORE_CORE_SPARES_H
#define PAYCORE_CORE_SPARES_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pc_spare pc_spare_t; /* a kept record's first bytes: the next kept one */

typedef struct {
    pthread_mutex_t mutex;   /* head, count */
    pc_spare_t *head;
    uint32_t count;          /* at most count_max */
    uint32_t count_max;
    size_t record_bytes;
} pc_spares_t;

void pc_spares_init(pc_spares_t *spares, size_t record_bytes, uint32_t count_max);
/* Frees the kept records; none may be given after. */
void pc_spares_destroy(pc_spares_t *spares);
/* A zeroed record (a kept one, else a fresh one; NULL: no memory). Owned by the caller:
 * given back with pc_spares_give, or released with free(). */
void *pc_spares_take(pc_spares_t *spares);
/* Keeps 'record' (its contents are dead) while fewer than count_max are kept, else
 * frees it. NULL is ignored. */
void pc_spares_give(pc_spares_t *spares, void *record);

#endif
