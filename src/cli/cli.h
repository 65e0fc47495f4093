/* cli/cli.h: the subcommands of the one paycore binary. Each returns the process
 * exit status: 0 success, 1 a failure the command reports, 2 a usage error. */
#ifndef PAYCORE_CLI_H
#define PAYCORE_CLI_H

int cli_serve(int argc, char **argv);    /* cmd_serve.c: the HTTP server */
int cli_init(int argc, char **argv);     /* cmd_init.c: create a database, print admin_key= */
int cli_verify(int argc, char **argv);   /* cmd_verify.c: journal + balance verification */
int cli_backup(int argc, char **argv);   /* cmd_backup.c: online copy of a database */
int cli_account(int argc, char **argv);  /* cmd_client.c: HTTP client commands */
int cli_transfer(int argc, char **argv);
int cli_key(int argc, char **argv);
int cli_keys(int argc, char **argv);    /* keys rotate: the card vault's key-encryption key */
int cli_load(int argc, char **argv);     /* cmd_load.c: HTTP load generator */
int cli_risk(int argc, char **argv);     /* cmd_risk.c: risk train / eval / replay */
int cli_channels(int argc, char **argv); /* cmd_channels.c: check a channels file, authorize */
int cli_docs(int argc, char **argv);     /* cmd_docs.c: generated docs (errors.md) */
int cli_webhook(int argc, char **argv);  /* cmd_webhook.c: webhook verify */
int cli_simulator(int argc, char **argv); /* cmd_simulator.c: a payment channel simulator */

/* --shards URL1,URL2,... (cli_shards.c): false after printing what is wrong. */
#include <stdbool.h>
#include <stdint.h>
#include "paycore/limits.h"
typedef struct {
    const char *urls[SHARD_COUNT_MAX];
    uint32_t count;
    char *storage;
} cli_shards_t;
bool cli_shards_parse(const char *command, const char *value, cli_shards_t *out);
void cli_shards_free(cli_shards_t *shards);

/* True when argv holds --help or -h. */
int cli_wants_help(int argc, char **argv);

#endif
