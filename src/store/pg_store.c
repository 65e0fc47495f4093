/* store/pg_store.c: the PostgreSQL backend (to come): it takes postgres:// URLs and
 * refuses them for now. */
#include "store/store_backend.h"

static bool pg_handles(const char *location) { return store_location_is_url(location); }

static pc_status pg_open(store_t **out, const char *location, const store_options_t *options) {
    (void)out;
    (void)location;
    (void)options;
    return PC_STORE_UNSUPPORTED;
}

const store_backend_ops_t store_pg_ops = {.name = "postgres", .handles = pg_handles, .open = pg_open};
