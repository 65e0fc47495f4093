/* cli/cmd_verify.c */
#include <stdio.h>

#include "cli/cli.h"

/* Placeholder until this command lands; says so instead of pretending. */
int cli_verify(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore verify: not implemented yet\n");
    return 1;
}
