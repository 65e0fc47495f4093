/* shard/shard_fence.c: the read fence around the commit of a global transaction's
 * legs (docs/scaleout.md §6, what a reader sees). Between the first and the last
 * COMMIT PREPARED of one global transaction, one shard holds its legs and another
 * does not yet; a read spanning shards in that window would see half of it. So the
 * coordinator shuts the fence first: this node's readers (store_shard_route_fence)
 * and `paycore verify --shards` (an advisory lock on shard 0, store_link_fence_take)
 * wait the commit out, and no read spanning shards overlaps it. Reads on one shard
 * never wait. */
#include <stdio.h>
#include <unistd.h>

#include "shard/shard_internal.h"

void shard_fence_shut(shard_set_t *set) {
    if (set->links[0] == NULL || store_link_fence_take(set->links[0], STORE_FENCE_COMMIT) != PC_OK) {
        /* the decision is logged and the legs are prepared: stop and let recovery
         * finish them, as when the log cannot be written */
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"coordinator: the read fence on shard 0 cannot be taken;"
                " stopping so that recovery ends the global transaction at the next start\",\"detail\":\"%s\"}\n",
                set->links[0] != NULL ? store_link_error(set->links[0]) : "no link to shard 0");
        fflush(stderr);
        _exit(1);
    }
    store_shard_route_fence(set->read_store, true);
}

void shard_fence_open(shard_set_t *set) {
    store_shard_route_fence(set->read_store, false);
    /* A release that fails means the link broke, and its session's lock with it; the
     * done write that follows on the same link fails and stops the process. */
    store_link_fence_release(set->links[0], STORE_FENCE_COMMIT);
}
