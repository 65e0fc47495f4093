/* cli/cmd_client.c */
#include <stdio.h>

#include "cli/cli.h"

/* Placeholder until this command lands; says so instead of pretending. */
int cli_account(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore account: not implemented yet\n");
    return 1;
}

/* Placeholder until this command lands; says so instead of pretending. */
int cli_transfer(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore transfer: not implemented yet\n");
    return 1;
}

/* Placeholder until this command lands; says so instead of pretending. */
int cli_key(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore key: not implemented yet\n");
    return 1;
}
