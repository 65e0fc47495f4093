/* cli/cmd_serve.c */
#include <stdio.h>

#include "cli/cli.h"

/* Placeholder until this command lands; says so instead of pretending. */
int cli_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore serve: not implemented yet\n");
    return 1;
}
