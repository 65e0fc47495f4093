/* cli/cmd_init.c */
#include <stdio.h>

#include "cli/cli.h"

/* Placeholder until this command lands; says so instead of pretending. */
int cli_init(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore init: not implemented yet\n");
    return 1;
}
