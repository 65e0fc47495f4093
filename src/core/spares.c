/* core/spares.c: a capped list of spare records (spares.h). Kept records are linked
 * through their own first bytes: nothing is allocated to keep one. */
#include "core/spares.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* Under AddressSanitizer a kept record is poisoned, all but its link, until it is
 * taken again: a use after pc_spares_give is reported as it would be after free(). The
 * link stays readable so that LeakSanitizer follows the list (it does not read
 * poisoned bytes: the records behind a poisoned link would all read as leaked). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(record, bytes) \
    ASAN_POISON_MEMORY_REGION((char *)(record) + sizeof(pc_spare_t), (bytes) - sizeof(pc_spare_t))
#define SPARE_UNPOISON(record, bytes) ASAN_UNPOISON_MEMORY_REGION(record, bytes)
#else
#define SPARE_POISON(record, bytes) ((void)(record), (void)(bytes))
#define SPARE_UNPOISON(record, bytes) ((void)(record), (void)(bytes))
#endif

struct pc_spare {
    struct pc_spare *next;
};

void pc_spares_init(pc_spares_t *spares, size_t record_bytes, uint32_t count_max) {
    PC_ASSERT(record_bytes >= sizeof(pc_spare_t));
    pthread_mutex_init(&spares->mutex, NULL);
    spares->head = NULL;
    spares->count = 0;
    spares->count_max = count_max;
    spares->record_bytes = record_bytes;
}

void pc_spares_destroy(pc_spares_t *spares) {
    while (spares->head != NULL) {
        SPARE_UNPOISON(spares->head, spares->record_bytes);
        pc_spare_t *next = spares->head->next;
        free(spares->head);
        spares->head = next;
    }
    spares->count = 0;
    pthread_mutex_destroy(&spares->mutex);
}

void *pc_spares_take(pc_spares_t *spares) {
    pthread_mutex_lock(&spares->mutex);
    pc_spare_t *record = spares->head;
    if (record != NULL) {
        SPARE_UNPOISON(record, spares->record_bytes);
        spares->head = record->next;
        spares->count--;
    }
    pthread_mutex_unlock(&spares->mutex);
    if (record == NULL) return calloc(1, spares->record_bytes);
    memset(record, 0, spares->record_bytes);
    return record;
}

void pc_spares_give(pc_spares_t *spares, void *record) {
    if (record == NULL) return;
    pthread_mutex_lock(&spares->mutex);
    bool kept = spares->count < spares->count_max;
    if (kept) {
        pc_spare_t *spare = record;
        spare->next = spares->head;
        spares->head = spare;
        spares->count++;
        SPARE_POISON(spare, spares->record_bytes);
    }
    pthread_mutex_unlock(&spares->mutex);
    if (!kept) free(record);
}
