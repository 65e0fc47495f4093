/* shard/shard_node.c: the nodes of a set (docs/scaleout.md §7). The writer of a set
 * advertises its address in every shard's writers row once it holds that shard's
 * writer's lock; any other node reads shard 0's row to know where to forward. The
 * lock is the election, the row only its announcement: a row whose backend no longer
 * holds the lock reads as not live (store_shard.h), so a node never forwards to a
 * writer that is known to be gone. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "shard/shard_internal.h"

/* ---- the writer's side ---- */

pc_status shard_advertise(shard_set_t *set, const char *address, char *detail, size_t detail_bytes) {
    char node_id[STORE_WRITER_NODE_ID_SIZE], host[40] = "";
    (void)gethostname(host, sizeof host - 1);
    snprintf(node_id, sizeof node_id, "%s:%ld", host, (long)getpid());
    for (uint32_t i = 0; i < set->count; i++) {
        uint64_t epoch = 0;
        char instance[24] = "";
        pc_status status = store_writer_advertise(set->stores[i], i, address, node_id, &epoch);
        if (status == PC_OK && i == 0) status = store_link_instance_id(set->links[0], instance, sizeof instance);
        if (status == PC_OK && i == 0) {
            snprintf(set->fence, sizeof set->fence, "%s/%llu", instance, (unsigned long long)epoch);
        }
        if (status != PC_OK) {
            snprintf(detail, detail_bytes, "shard %u (%s): cannot write its writers row (%s): %s %s", i,
                     store_link_url(set->links[i]), pc_status_code(status), store_error_detail(set->stores[i]),
                     store_link_error(set->links[i]));
            return status;
        }
        fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"shard writer: advertised\",\"shard\":%u,\"epoch\":%llu,"
                "\"node\":\"%s\"}\n", i, (unsigned long long)epoch, node_id);
    }
    return PC_OK;
}

bool shard_fence_matches(const shard_set_t *set, const char *fence) {
    return set != NULL && set->fence[0] != '\0' && strcmp(set->fence, fence) == 0;
}

/* ---- the other nodes' side ---- */

struct shard_directory {
    pthread_mutex_t mutex;
    store_writers_t *writers;              /* shard 0's; under mutex */
    char address[STORE_WRITER_ADDRESS_SIZE];
    char fence[SHARD_FENCE_SIZE];
    uint64_t read_ns;                      /* 0: nothing cached */
};

pc_status shard_directory_open(shard_directory_t **out, const char *home_url, char *detail, size_t detail_bytes) {
    shard_directory_t *directory = calloc(1, sizeof *directory);
    if (directory == NULL) return PC_NO_MEMORY;
    char reason[400];
    pc_status status = store_writers_open(&directory->writers, home_url, reason, sizeof reason);
    if (status != PC_OK) {
        snprintf(detail, detail_bytes, "shard 0: %s", reason);
        free(directory);
        return status;
    }
    pthread_mutex_init(&directory->mutex, NULL);
    *out = directory;
    return PC_OK;
}

/* Reads shard 0's row (mutex held): the cache on PC_OK. */
static pc_status directory_read(shard_directory_t *directory, char *why, size_t why_bytes) {
    store_writer_row_t row;
    pc_status status = store_writers_find(directory->writers, 0, &row);
    if (status == PC_NOT_FOUND) {
        snprintf(why, why_bytes, "no node has written the set yet (shard 0's writers row is empty)");
    } else if (status != PC_OK) {
        snprintf(why, why_bytes, "shard 0 cannot be read: %s", store_writers_error(directory->writers));
    } else if (!row.live) {
        snprintf(why, why_bytes, "the set's writer (epoch %llu, node %s, %s) is gone and no node took over yet",
                 (unsigned long long)row.epoch, row.node_id, row.address);
    } else {
        snprintf(directory->address, sizeof directory->address, "%s", row.address);
        snprintf(directory->fence, sizeof directory->fence, "%s/%llu", row.instance_id,
                 (unsigned long long)row.epoch);
        directory->read_ns = pc_mono_ns();
        return PC_OK;
    }
    directory->read_ns = 0;
    return PC_SHARD_WRITER_UNAVAILABLE;
}

pc_status shard_directory_writer(shard_directory_t *directory, char *address, size_t address_bytes,
                                 char fence[SHARD_FENCE_SIZE], char *why, size_t why_bytes) {
    pthread_mutex_lock(&directory->mutex);
    uint64_t now_ns = pc_mono_ns();
    pc_status status = PC_OK;
    if (directory->read_ns == 0 || now_ns - directory->read_ns > (uint64_t)SHARD_DIRECTORY_CACHE_MS * 1000000u) {
        status = directory_read(directory, why, why_bytes);
    }
    if (status == PC_OK) {
        snprintf(address, address_bytes, "%s", directory->address);
        snprintf(fence, SHARD_FENCE_SIZE, "%s", directory->fence);
    }
    pthread_mutex_unlock(&directory->mutex);
    return status;
}

void shard_directory_forget(shard_directory_t *directory) {
    pthread_mutex_lock(&directory->mutex);
    directory->read_ns = 0;
    pthread_mutex_unlock(&directory->mutex);
}

void shard_directory_close(shard_directory_t *directory) {
    if (directory == NULL) return;
    store_writers_close(directory->writers);
    pthread_mutex_destroy(&directory->mutex);
    free(directory);
}
