/* cli/cmd_load.c */
#include <stdio.h>

#include "cli/cli.h"

/* Placeholder until this command lands; says so instead of pretending. */
int cli_load(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore load: not implemented yet\n");
    return 1;
}
