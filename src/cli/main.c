/* cli/main.c: `paycore <command> ...`, the server, client and admin tool in one binary.
 * Every file and directory paycore creates is its owner's alone (umask 077: files
 * 0600, directories 0700), whatever the caller's umask: databases, keys, logs and
 * the risk files hold money, secrets and personal data. A file grown past
 * RLIMIT_FSIZE is an I/O error to handle (SIGXFSZ ignored), not a silent death. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_command;

static const cli_command commands[] = {
    {"serve", cli_serve, "run the HTTP/JSON server"},
    {"init", cli_init, "create a database and print the first admin key (admin_key=...)"},
    {"verify", cli_verify, "verify the journal chain, signatures and every balance"},
    {"backup", cli_backup, "copy a running server's database (consistent, verified)"},
    {"account", cli_account, "create|get|list accounts on a server"},
    {"transfer", cli_transfer, "create|get|post|void|list transfers on a server"},
    {"key", cli_key, "create|list|revoke API keys on a server"},
    {"keys", cli_keys, "rotate the card vault's key-encryption key on a running server"},
    {"load", cli_load, "HTTP load generator against a server"},
    {"risk", cli_risk, "train|eval|replay the risk model"},
    {"channels", cli_channels, "check a channels file; authorize through the gateway"},
    {"docs", cli_docs, "print generated documentation (errors)"},
    {"webhook", cli_webhook, "verify a webhook delivery's signature"},
    {"simulator", cli_simulator, "run a payment channel simulator: card|wallet|bank"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: paycore <command> [options]   (paycore <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
}

int main(int argc, char **argv) {
    umask(077);
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("paycore %s\n", PAYCORE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "paycore: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
