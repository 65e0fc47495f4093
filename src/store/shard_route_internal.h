/* store/shard_route_internal.h: what shard_route.c and shard_route_home.c share (the
 * read store of a set of shards, store_shard.h). Not a contract. */
#ifndef PAYCORE_SHARD_ROUTE_INTERNAL_H
#define PAYCORE_SHARD_ROUTE_INTERNAL_H

#include "store/store_backend.h"
#include "store/store_shard.h"

/* The home shard's (0) reader inside a reader of the read store. */
store_reader_t *store_shard_route_home(store_reader_t *reader);

/* The outbox and payments parts of the read store (shard_route_home.c). */
extern const store_events_ops_t store_shard_route_events_ops;
extern const store_payments_ops_t store_shard_route_payments_ops;

#endif
