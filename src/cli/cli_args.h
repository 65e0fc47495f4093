/* cli/cli_args.h: a small option parser for the subcommands: "--name value",
 * "--name=value" and bare flags, each with an optional PAYCORE_* environment fallback.
 * Positional arguments are collected in order. */
#ifndef PAYCORE_CLI_ARGS_H
#define PAYCORE_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *name;       /* "listen" for --listen */
    const char *env;        /* "PAYCORE_LISTEN" or NULL */
    bool is_flag;           /* takes no value */
    const char *value;      /* out: the value ("1" for a set flag), or the default */
    const char *help;
} cli_opt;

#define CLI_POSITIONAL_MAX 8

typedef struct {
    const char *positional[CLI_POSITIONAL_MAX];
    int positional_count;
} cli_rest;

/* Parses argv[1..] (argv[0] is the command). Environment fallbacks fill options not
 * given on the command line. Returns false (after printing why) on a usage error. */
bool cli_args_parse(const char *command, int argc, char **argv, cli_opt *opts, int opt_count,
                    cli_rest *rest);
void cli_args_usage(FILE *out, const char *usage, const cli_opt *opts, int opt_count);
const char *cli_opt_get(const cli_opt *opts, int opt_count, const char *name);
/* Parses an unsigned decimal (with an optional k/m/g suffix for sizes); false when bad. */
bool cli_parse_u64(const char *text, uint64_t *out);

#endif
