/* cli/cli_args.c: see cli_args.h. */
#include "cli/cli_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static cli_opt *find_opt(cli_opt *opts, int opt_count, const char *name, size_t name_bytes) {
    for (int i = 0; i < opt_count; i++) {
        if (strlen(opts[i].name) == name_bytes && strncmp(opts[i].name, name, name_bytes) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

static void apply_env(cli_opt *opts, int opt_count, const bool *given) {
    for (int i = 0; i < opt_count; i++) {
        if (given[i] || opts[i].env == NULL) continue;
        const char *value = getenv(opts[i].env);
        if (value != NULL && value[0] != '\0') opts[i].value = value;
    }
}

bool cli_args_parse(const char *command, int argc, char **argv, cli_opt *opts, int opt_count,
                    cli_rest *rest) {
    bool given[64] = {false};
    rest->positional_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (rest->positional_count == CLI_POSITIONAL_MAX) {
                fprintf(stderr, "paycore %s: too many arguments\n", command);
                return false;
            }
            rest->positional[rest->positional_count++] = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *equals = strchr(name, '=');
        size_t name_bytes = equals ? (size_t)(equals - name) : strlen(name);
        cli_opt *opt = find_opt(opts, opt_count, name, name_bytes);
        if (opt == NULL) {
            fprintf(stderr, "paycore %s: unknown option '%s' (see --help)\n", command, arg);
            return false;
        }
        if (opt->is_flag) {
            opt->value = equals ? equals + 1 : "1";
        } else if (equals != NULL) {
            opt->value = equals + 1;
        } else if (i + 1 < argc) {
            opt->value = argv[++i];
        } else {
            fprintf(stderr, "paycore %s: option --%s needs a value\n", command, opt->name);
            return false;
        }
        given[opt - opts] = true;
    }
    apply_env(opts, opt_count, given);
    return true;
}

void cli_args_usage(FILE *out, const char *usage, const cli_opt *opts, int opt_count) {
    fprintf(out, "%s\n\noptions:\n", usage);
    for (int i = 0; i < opt_count; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, opts[i].is_flag ? "" : " VALUE");
        fprintf(out, "  %-24s %s", left, opts[i].help);
        if (opts[i].value != NULL && !opts[i].is_flag) fprintf(out, " (default: %s)", opts[i].value);
        if (opts[i].env != NULL) fprintf(out, " [env %s]", opts[i].env);
        fprintf(out, "\n");
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
}

const char *cli_opt_get(const cli_opt *opts, int opt_count, const char *name) {
    for (int i = 0; i < opt_count; i++) {
        if (strcmp(opts[i].name, name) == 0) return opts[i].value;
    }
    return NULL;
}

bool cli_parse_u64(const char *text, uint64_t *out) {
    if (text == NULL || text[0] < '0' || text[0] > '9') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0) return false;
    uint64_t scale = 1;
    if (*end == 'k' || *end == 'K') scale = 1024;
    else if (*end == 'm' || *end == 'M') scale = 1024 * 1024;
    else if (*end == 'g' || *end == 'G') scale = 1024ull * 1024 * 1024;
    if (scale != 1) end++;
    if (*end != '\0' || value > UINT64_MAX / scale) return false;
    *out = value * scale;
    return true;
}
