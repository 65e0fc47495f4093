/* cli/cmd_risk.c */
#include <stdio.h>

#include "cli/cli.h"

/* Placeholder until this command lands; says so instead of pretending. */
int cli_risk(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "paycore risk: not implemented yet\n");
    return 1;
}
