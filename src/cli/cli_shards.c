/* cli/cli_shards.c: the --shards option of init and serve: a comma-separated list of
 * postgres:// URLs, in the shard map's order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "paycore/limits.h"
#include "store/store.h"

bool cli_shards_parse(const char *command, const char *value, cli_shards_t *out) {
    memset(out, 0, sizeof *out);
    out->storage = malloc(strlen(value) + 1);
    if (out->storage == NULL) return false;
    strcpy(out->storage, value);
    char *save = NULL;
    for (char *url = strtok_r(out->storage, ",", &save); url != NULL; url = strtok_r(NULL, ",", &save)) {
        if (out->count == SHARD_COUNT_MAX) {
            fprintf(stderr, "paycore %s: --shards names more than %d shards\n", command, SHARD_COUNT_MAX);
            return false;
        }
        if (!store_location_is_url(url)) {
            fprintf(stderr, "paycore %s: --shards: shard %u is not a postgres:// URL\n", command, out->count);
            return false;
        }
        out->urls[out->count++] = url;
    }
    if (out->count == 0) {
        fprintf(stderr, "paycore %s: --shards wants postgres:// URLs separated by commas\n", command);
        return false;
    }
    return true;
}

void cli_shards_free(cli_shards_t *shards) {
    free(shards->storage);
    memset(shards, 0, sizeof *shards);
}
