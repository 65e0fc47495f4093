/* cli/cmd_init.c: `paycore init --db FILE [--demo]`: creates the database (and the
 * journal signing key "<db>.key" with "<db>.key.pub"), creates the first admin key and
 * prints exactly one line on stdout, `admin_key=<key>`, for scripts. Everything else
 * goes to stderr. With --demo it also creates a few accounts and transfers. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "core/core.h"
#include "shard/shard.h"
#include "store/store.h"
#include "writer/writer.h"

#define DEMO_ACCOUNTS 5
#define DEMO_TRANSFERS 5

static pc_status demo_accounts(writer_t *writer) {
    static const struct { const char *id; const char *currency; uint16_t code; uint16_t flags; const char *meta; } rows[DEMO_ACCOUNTS] = {
        {"bank:cash", "USD", 1, 0, "{\"kind\":\"bank\"}"},
        {"alice", "USD", 10, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS | LEDGER_ACCOUNT_HISTORY, "{\"owner\":\"u-1\"}"},
        {"bob", "USD", 10, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS | LEDGER_ACCOUNT_HISTORY, "{\"owner\":\"u-2\"}"},
        {"merchant:shop", "USD", 20, LEDGER_ACCOUNT_HISTORY, NULL},
        {"bank:eur", "EUR", 1, 0, NULL},
    };
    ledger_account_t accounts[DEMO_ACCOUNTS];
    ledger_account_result_t results[DEMO_ACCOUNTS];
    memset(accounts, 0, sizeof accounts);
    for (int i = 0; i < DEMO_ACCOUNTS; i++) {
        PC_ASSERT(pc_id_copy(accounts[i].id, rows[i].id));
        memcpy(accounts[i].currency, rows[i].currency, 4);
        accounts[i].code = rows[i].code;
        accounts[i].flags = rows[i].flags;
        accounts[i].metadata_json = rows[i].meta;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = DEMO_ACCOUNTS,
                        .accounts = accounts, .account_results = results};
    pc_status status = writer_submit_wait(writer, &cmd);
    for (int i = 0; i < DEMO_ACCOUNTS && status == PC_OK; i++) {
        if (results[i].status != PC_OK && results[i].status != PC_EXISTS) status = results[i].status;
    }
    return status;
}

static pc_status demo_transfers(writer_t *writer) {
    static const struct { const char *id, *debit, *credit, *pending; int64_t amount; uint16_t flags; uint32_t timeout_s; } rows[DEMO_TRANSFERS] = {
        {"demo-fund-alice", "bank:cash", "alice", "", 100000, 0, 0},
        {"demo-fund-bob", "bank:cash", "bob", "", 50000, 0, 0},
        {"demo-alice-bob", "alice", "bob", "", 2500, 0, 0},
        {"demo-hold", "alice", "merchant:shop", "", 1200, LEDGER_TRANSFER_PENDING, 86400},
        {"demo-capture", "", "", "demo-hold", 1000, LEDGER_TRANSFER_POST_PENDING, 0},
    };
    ledger_transfer_t transfers[DEMO_TRANSFERS];
    ledger_transfer_result_t results[DEMO_TRANSFERS];
    memset(transfers, 0, sizeof transfers);
    for (int i = 0; i < DEMO_TRANSFERS; i++) {
        PC_ASSERT(pc_id_copy(transfers[i].id, rows[i].id));
        snprintf(transfers[i].debit_account_id, PC_ID_SIZE, "%s", rows[i].debit);
        snprintf(transfers[i].credit_account_id, PC_ID_SIZE, "%s", rows[i].credit);
        snprintf(transfers[i].pending_id, PC_ID_SIZE, "%s", rows[i].pending);
        memcpy(transfers[i].currency, rows[i].pending[0] ? "" : "USD", rows[i].pending[0] ? 1 : 4);
        transfers[i].amount = rows[i].amount;
        transfers[i].code = 1;
        transfers[i].flags = rows[i].flags;
        transfers[i].timeout_s = rows[i].timeout_s;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = DEMO_TRANSFERS,
                        .transfers = transfers, .transfer_results = results};
    pc_status status = writer_submit_wait(writer, &cmd);
    for (int i = 0; i < DEMO_TRANSFERS && status == PC_OK; i++) {
        if (results[i].status != PC_OK && results[i].status != PC_EXISTS) status = results[i].status;
    }
    return status;
}

/* Creates the key (and the demo data) with the writer running on 'store'. */
static pc_status init_run(store_t *store, const char *key_path, bool demo, char secret[API_KEY_SECRET_SIZE],
                          char key_id[PC_ID_SIZE]) {
    writer_t *writer = NULL;
    pc_status status = writer_start(&writer, store, key_path, NULL);
    if (status != PC_OK) return status;
    status = api_key_create_offline(writer, API_SCOPE_ADMIN, "init", secret, key_id);
    if (status == PC_OK && demo) status = demo_accounts(writer);
    if (status == PC_OK && demo) status = demo_transfers(writer);
    writer_stop(writer);
    return status;
}

/* --shards: the schema and the shard map on every shard, then the admin key on the
 * home shard (0), through its writer. */
static int init_shards(const char *db_path, const char *list, bool with_store) {
    cli_shards_t shards;
    if (with_store) {
        fprintf(stderr, "paycore init: --shards replaces --store\n");
        return 2;
    }
    if (!cli_shards_parse("init", list, &shards)) {
        cli_shards_free(&shards);
        return 2;
    }
    char detail[800];
    pc_status status = shard_init(shards.urls, shards.count, detail, sizeof detail);
    if (status != PC_OK) {
        fprintf(stderr, "paycore init: %s (%s)\n", detail, pc_status_code(status));
        cli_shards_free(&shards);
        return 1;
    }
    store_t *store = NULL;
    store_options_t options = {.shard_count = shards.count, .shard_index = 0};
    status = store_open(&store, shards.urls[0], &options);
    char key_path[4096], secret[API_KEY_SECRET_SIZE], key_id[PC_ID_SIZE];
    snprintf(key_path, sizeof key_path, "%s.key", db_path);
    if (status == PC_OK) status = init_run(store, key_path, false, secret, key_id);
    store_close(store);
    uint32_t count = shards.count;
    cli_shards_free(&shards);
    if (status != PC_OK) {
        fprintf(stderr, "paycore init: shard 0: %s\n", pc_status_code(status));
        return 1;
    }
    fprintf(stderr, "paycore init: created a set of %u shards; admin key %s created\n", count, key_id);
    printf("admin_key=%s\n", secret);
    fflush(stdout);
    return 0;
}

int cli_init(int argc, char **argv) {
    cli_opt opts[] = {
        {"db", "PAYCORE_DB", false, "./paycore.db", "database file to create"},
        {"demo", NULL, true, NULL, "also create demo accounts and transfers"},
        {"store", "PAYCORE_STORE", false, NULL, "a PostgreSQL store instead of the SQLite file: postgres://user@host/db (an empty database); --db then names the node's own files (FILE.key, FILE.key.pub)"},
        {"shards", "PAYCORE_SHARDS", false, NULL, "a set of PostgreSQL shards: empty databases' postgres:// URLs separated by commas; serve must be given the same list in the same order (docs/scaleout.md)"},
    };
    const char *usage = "usage: paycore init --db FILE [--store URL | --shards URL1,URL2,...] [--demo]\n\nCreates the database and its "
                        "journal signing key (FILE.key, FILE.key.pub) and prints the first\nadmin "
                        "API key as one line on stdout: admin_key=<key> (shown once).";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, 4);
        return 0;
    }
    cli_rest rest;
    if (!cli_args_parse("init", argc, argv, opts, 4, &rest) || rest.positional_count > 0) return 2;
    if (opts[3].value != NULL) return init_shards(opts[0].value, opts[3].value, opts[2].value != NULL);
    const char *db_path = opts[0].value;
    const char *store_url = opts[2].value;
    if (store_url != NULL && !store_location_is_url(store_url)) {
        fprintf(stderr, "paycore init: --store wants a postgres:// URL (a SQLite file is --db FILE)\n");
        return 2;
    }
    const char *location = store_url != NULL ? store_url : db_path;
    bool existed = store_url == NULL && access(db_path, F_OK) == 0;
    store_t *store = NULL;
    store_options_t options = {.create = true};
    pc_status status = store_open(&store, location, &options);
    if (status != PC_OK) {
        fprintf(stderr, "paycore init: %s: %s\n", store_url != NULL ? "--store" : db_path, pc_status_code(status));
        return 1;
    }
    char key_path[4096], secret[API_KEY_SECRET_SIZE], key_id[PC_ID_SIZE];
    snprintf(key_path, sizeof key_path, "%s.key", db_path);
    status = init_run(store, key_path, opts[1].value != NULL, secret, key_id);
    if (status != PC_OK) fprintf(stderr, "paycore init: %s (%s)\n", pc_status_code(status), store_error_detail(store));
    store_close(store);
    if (status != PC_OK) return 1;
    fprintf(stderr, "paycore init: %s %s; admin key %s created%s\n", existed ? "opened" : "created",
            store_url != NULL ? "the postgres store" : db_path, key_id, opts[1].value != NULL ? " with demo data" : "");
    printf("admin_key=%s\n", secret);
    fflush(stdout);
    return 0;
}
