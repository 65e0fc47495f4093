/* cli/cmd_verify.c: `paycore verify --db FILE | --store URL [--pubkey FILE]`. Exit 0 when the
 * journal chain, the checkpoint signatures and every balance verify; 1 naming the
 * first discrepancy (or why the database could not be read); 2 on a usage error. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "store/store.h"

static void verify_usage(FILE *out) {
    fprintf(out,
            "usage: paycore verify --db FILE [--pubkey FILE]\n"
            "       paycore verify --store URL [--pubkey FILE]\n"
            "\n"
            "Re-derives from the database alone: every row hash, each batch's content\n"
            "hash and the journal hash chain, every checkpoint signature, every account\n"
            "balance (replaying all transfers from zero), debits == credits per currency,\n"
            "and each pending transfer's state.\n"
            "\n"
            "  --db FILE       the paycore SQLite database (opened read-only)\n"
            "  --store URL     a PostgreSQL store (postgres://...), read in one\n"
            "                  REPEATABLE READ READ ONLY transaction; with it, --db only\n"
            "                  names the node's files, as for serve, and is not read\n"
            "  --pubkey FILE   the node's public key (<key>.pub, 64 hex characters);\n"
            "                  without it, checkpoints must all carry one key\n"
            "\n"
            "prints 'verify ok batches=N transfers=N accounts=N checkpoints=N ...' and\n"
            "exits 0; prints 'verify failed: <what> <where>' and exits 1; exits 2 on a\n"
            "usage error.\n");
}

/* Takes "--name VALUE" or "--name=VALUE" at argv[*i]; false when argv[*i] is not it. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **out) {
    size_t name_bytes = strlen(name);
    if (strncmp(argv[*i], name, name_bytes) != 0) return 0;
    if (argv[*i][name_bytes] == '=') {
        *out = argv[*i] + name_bytes + 1;
        return 1;
    }
    if (argv[*i][name_bytes] != '\0' || *i + 1 >= argc) return 0;
    *out = argv[++*i];
    return 1;
}

int cli_verify(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        verify_usage(stdout);
        return 0;
    }
    const char *db_path = NULL, *store_url = NULL, *pubkey_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (option_value(argc, argv, &i, "--db", &db_path)) continue;
        if (option_value(argc, argv, &i, "--store", &store_url)) continue;
        if (option_value(argc, argv, &i, "--pubkey", &pubkey_path)) continue;
        fprintf(stderr, "paycore verify: unexpected argument '%s'\n", argv[i]);
        verify_usage(stderr);
        return 2;
    }
    const char *location = store_url != NULL ? store_url : db_path;
    if (location == NULL || location[0] == '\0' || (pubkey_path != NULL && pubkey_path[0] == '\0')) {
        fprintf(stderr, "paycore verify: --db FILE or --store URL is required\n");
        verify_usage(stderr);
        return 2;
    }
    if (store_url != NULL && !store_location_is_url(store_url)) {
        fprintf(stderr, "paycore verify: --store takes a postgres:// URL (a SQLite file is --db FILE)\n");
        verify_usage(stderr);
        return 2;
    }
    journal_report_t report;
    pc_status status = store_verify(location, pubkey_path, &report);
    char line[2 * JOURNAL_REPORT_TEXT_BYTES];
    if (status == PC_OK || status == PC_JOURNAL_MISMATCH) {
        printf("%s\n", journal_report_line(&report, line, sizeof(line)));
    } else {
        printf("verify error: %s: %s\n", pc_status_code(status), report.error_detail);
    }
    return status == PC_OK ? 0 : 1;
}
