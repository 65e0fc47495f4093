/* cli/cmd_verify.c: `paycore verify --db FILE | --store URL [--pubkey FILE]`, and
 * `paycore verify [--db FILE] --shards URL0,URL1,...` for a set of shards. Exit 0 when the
 * journal chain, the checkpoint signatures and every balance verify; 1 naming the
 * first discrepancy (or why the database could not be read); 2 on a usage error; 3
 * (a set) when everything verifies but a global transaction is left unfinished. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "shard/shard.h"
#include "store/store.h"

#define VERIFY_EXIT_IN_DOUBT 3

static void verify_usage(FILE *out) {
    fprintf(out,
            "usage: paycore verify --db FILE [--pubkey FILE]\n"
            "       paycore verify --store URL [--pubkey FILE]\n"
            "       paycore verify [--db FILE] --shards URL0,URL1,...\n"
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
            "  --shards URLS   a set of shards (as paycore init --shards named them, in\n"
            "                  that order): each shard verified as with --store, from\n"
            "                  snapshots that agree on every global transaction; then\n"
            "                  each pair's clearing accounts must mirror each other, the\n"
            "                  set's debits equal its credits per currency, and no global\n"
            "                  transaction be left unfinished. With --db FILE, shard i's\n"
            "                  checkpoints are checked against the node's public keys\n"
            "                  FILE.key.pub (shard 0) and FILE.key.shard<i>.pub\n"
            "\n"
            "prints 'verify ok batches=N transfers=N accounts=N checkpoints=N ...' and\n"
            "exits 0; prints 'verify failed: <what> <where>' and exits 1; exits 2 on a\n"
            "usage error. With --shards: one line per shard ('shard N: verify ...'),\n"
            "then 'verify ok shards=N ...' (exit 0), 'verify failed: ...' (exit 1) or\n"
            "'verify in doubt: ...' naming the unfinished global transactions (exit 3;\n"
            "paycore serve --shards finishes them at start).\n");
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

/* A set: every shard's line, then the set's. */
static int verify_shards(const char *db_path, const char *shards_arg) {
    cli_shards_t shards;
    if (!cli_shards_parse("verify", shards_arg, &shards)) {
        cli_shards_free(&shards);
        verify_usage(stderr);
        return 2;
    }
    char pubkeys[SHARD_COUNT_MAX][4096];
    const char *pubkey_paths[SHARD_COUNT_MAX];
    for (uint32_t i = 0; i < shards.count; i++) {
        if (i == 0) snprintf(pubkeys[i], sizeof pubkeys[i], "%s.key.pub", db_path != NULL ? db_path : "");
        else snprintf(pubkeys[i], sizeof pubkeys[i], "%s.key.shard%u.pub", db_path != NULL ? db_path : "", i);
        pubkey_paths[i] = pubkeys[i];
    }
    static shard_verify_t report; /* large: not on the stack */
    pc_status status = shard_verify((const char *const *)shards.urls, shards.count, db_path != NULL ? pubkey_paths : NULL,
                                    &report);
    char line[4 * JOURNAL_REPORT_TEXT_BYTES];
    for (uint32_t i = 0; i < report.verified; i++) {
        printf("shard %u: %s\n", i, journal_report_line(&report.shards[i], line, sizeof line));
    }
    printf("%s\n", shard_verify_line(&report, status, line, sizeof line));
    cli_shards_free(&shards);
    return status == PC_OK ? 0 : status == PC_GLOBAL_TRANSACTION_IN_DOUBT ? VERIFY_EXIT_IN_DOUBT : 1;
}

int cli_verify(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        verify_usage(stdout);
        return 0;
    }
    const char *db_path = NULL, *store_url = NULL, *pubkey_path = NULL, *shards_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (option_value(argc, argv, &i, "--db", &db_path)) continue;
        if (option_value(argc, argv, &i, "--store", &store_url)) continue;
        if (option_value(argc, argv, &i, "--pubkey", &pubkey_path)) continue;
        if (option_value(argc, argv, &i, "--shards", &shards_arg)) continue;
        fprintf(stderr, "paycore verify: unexpected argument '%s'\n", argv[i]);
        verify_usage(stderr);
        return 2;
    }
    if (shards_arg != NULL) {
        if (store_url != NULL || pubkey_path != NULL || (db_path != NULL && db_path[0] == '\0')) {
            fprintf(stderr, "paycore verify: --shards takes no --store or --pubkey (with --db FILE, the node's"
                    " FILE.key.pub and FILE.key.shard<i>.pub are the shards' keys)\n");
            verify_usage(stderr);
            return 2;
        }
        return verify_shards(db_path, shards_arg);
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
