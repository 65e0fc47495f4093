/* cli/cmd_client.c: `paycore account|transfer|key ...`: the API over HTTP (libcurl).
 * --url/--key (or PAYCORE_URL/PAYCORE_KEY); a table by default, --json for scripts;
 * on failure the API's error code on stderr and exit status 1 (2: usage error). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_http.h"
#include "core/core.h"
#include "paycore/limits.h"

#define CLIENT_OPTS_MAX 24
#define COMMON_OPTS 4

typedef struct {
    const char *name;            /* "create" */
    const char *usage;           /* the usage line and what it does */
    const cli_opt *opts;         /* the subcommand's own options */
    int opt_count;
    int positional;              /* positional arguments required (ids) */
    int (*run)(const cli_http_t *http, bool as_json, const cli_opt *opts, int opt_count,
               const cli_rest *rest);
} client_cmd;

static const cli_opt common_opts[COMMON_OPTS] = {
    {"url", "PAYCORE_URL", false, "http://127.0.0.1:8080", "server URL"},
    {"key", "PAYCORE_KEY", false, NULL, "API key"},
    {"json", NULL, true, NULL, "print the raw JSON reply"},
    {"idempotency-key", NULL, false, NULL, "Idempotency-Key header for POSTs"},
};

/* ---- helpers ---- */

static const char *opt(const cli_opt *opts, int count, const char *name) {
    return cli_opt_get(opts, count, name);
}

static bool parse_i64(const char *text, long long *out) {
    if (text == NULL || text[0] == '\0') return false;
    char *end = NULL;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return errno == 0 && *end == '\0';
}

/* "a,b" -> ["a","b"] */
static json_t *list_json(const char *text) {
    json_t *array = json_array();
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", text);
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        json_array_append_new(array, json_string(item));
    }
    return array;
}

/* "k=v,k2=v2" -> {"k":"v","k2":"v2"}; NULL when malformed. */
static json_t *metadata_json(const char *text) {
    json_t *object = json_object();
    char copy[2048];
    snprintf(copy, sizeof copy, "%s", text);
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *equals = strchr(item, '=');
        if (equals == NULL) {
            json_decref(object);
            return NULL;
        }
        *equals = '\0';
        json_object_set_new(object, item, json_string(equals + 1));
    }
    return object;
}

/* Sends and prints; takes 'body' (may be NULL). */
static int client_send(const cli_http_t *http, bool as_json, const char *method, const char *path, json_t *body) {
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    cli_reply_t reply;
    bool answered = cli_http_call(http, method, path, text, &reply);
    free(text);
    int status = 1;
    if (!answered) fprintf(stderr, "paycore: connection_failed: %s\n", reply.error);
    else status = cli_reply_print(&reply, as_json);
    cli_reply_free(&reply);
    return status;
}

/* Adds the option 'name' to 'body' as a string when given. */
static void put_string(json_t *body, const char *field, const char *value) {
    if (value != NULL) json_object_set_new(body, field, json_string(value));
}

/* Adds an integer option; false (usage error printed) when it is not one. */
static bool put_integer(json_t *body, const char *field, const char *value) {
    long long number;
    if (value == NULL) return true;
    if (!parse_i64(value, &number)) {
        fprintf(stderr, "paycore: --%s must be an integer (minor units for amounts), got '%s'\n", field, value);
        return false;
    }
    json_object_set_new(body, field, json_integer(number));
    return true;
}

/* Appends "?a=b&c=d" for the query options given. */
static void query_path(char *out, size_t out_bytes, const char *base, const cli_opt *opts, int count,
                       const char *const *names) {
    size_t used = (size_t)snprintf(out, out_bytes, "%s", base);
    char separator = '?';
    for (int i = 0; names[i] != NULL && used < out_bytes; i++) {
        const char *value = opt(opts, count, names[i]);
        if (value == NULL) continue;
        char name[32];
        snprintf(name, sizeof name, "%s", names[i]);
        for (char *c = name; *c; c++) if (*c == '-') *c = '_';
        used += (size_t)snprintf(out + used, out_bytes - used, "%c%s=%s", separator, name, value);
        separator = '&';
    }
}

/* ---- account ---- */

static int account_create(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    json_t *body = json_object();
    put_string(body, "id", opt(o, n, "id"));
    put_string(body, "currency", opt(o, n, "currency"));
    if (!put_integer(body, "code", opt(o, n, "code"))) return json_decref(body), 2;
    if (opt(o, n, "flags")) json_object_set_new(body, "flags", list_json(opt(o, n, "flags")));
    if (opt(o, n, "metadata")) {
        json_t *metadata = metadata_json(opt(o, n, "metadata"));
        if (metadata == NULL) {
            fprintf(stderr, "paycore: --metadata takes key=value,key=value\n");
            return json_decref(body), 2;
        }
        json_object_set_new(body, "metadata", metadata);
    }
    return client_send(http, as_json, "POST", "/v1/accounts", body);
}

static int account_get(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    char path[256];
    snprintf(path, sizeof path, "/v1/accounts/%.128s", rest->positional[0]);
    return client_send(http, as_json, "GET", path, NULL);
}

static int account_list(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    static const char *const names[] = {"limit", "starting-after", NULL};
    char path[512];
    query_path(path, sizeof path, "/v1/accounts", o, n, names);
    return client_send(http, as_json, "GET", path, NULL);
}

static const cli_opt account_create_opts[] = {
    {"id", NULL, false, NULL, "account id (1-64 of [A-Za-z0-9._:-])"},
    {"currency", NULL, false, NULL, "ISO 4217 code, e.g. USD"},
    {"code", NULL, false, NULL, "account type code (0-65535)"},
    {"flags", NULL, false, NULL, "comma-separated: debits_must_not_exceed_credits,history,..."},
    {"metadata", NULL, false, NULL, "key=value,key=value"},
};
static const cli_opt list_opts[] = {
    {"limit", NULL, false, NULL, "rows per page (1-100)"},
    {"starting-after", NULL, false, NULL, "the last id of the previous page"},
};

static const client_cmd account_cmds[] = {
    {"create", "usage: paycore account create --id ID --currency CUR [--code N] [--flags F,..] [--metadata k=v,..]",
     account_create_opts, 5, 0, account_create},
    {"get", "usage: paycore account get ID", NULL, 0, 1, account_get},
    {"list", "usage: paycore account list [--limit N] [--starting-after ID]", list_opts, 2, 0, account_list},
};

/* ---- transfer ---- */

static int transfer_send(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const char *flag) {
    json_t *body = json_object();
    put_string(body, "id", opt(o, n, "id"));
    put_string(body, "debit_account_id", opt(o, n, "debit"));
    put_string(body, "credit_account_id", opt(o, n, "credit"));
    put_string(body, "currency", opt(o, n, "currency"));
    put_string(body, "pending_id", opt(o, n, "pending-id"));
    if (!put_integer(body, "amount", opt(o, n, "amount")) || !put_integer(body, "code", opt(o, n, "code")) ||
        !put_integer(body, "timeout_s", opt(o, n, "timeout-s"))) {
        json_decref(body);
        return 2;
    }
    json_t *flags = opt(o, n, "flags") ? list_json(opt(o, n, "flags")) : json_array();
    if (flag != NULL) json_array_append_new(flags, json_string(flag));
    if (json_array_size(flags) > 0) json_object_set_new(body, "flags", flags);
    else json_decref(flags);
    if (opt(o, n, "metadata")) {
        json_t *metadata = metadata_json(opt(o, n, "metadata"));
        if (metadata == NULL) {
            fprintf(stderr, "paycore: --metadata takes key=value,key=value\n");
            return json_decref(body), 2;
        }
        json_object_set_new(body, "metadata", metadata);
    }
    return client_send(http, as_json, "POST", "/v1/transfers", body);
}

static int transfer_create(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    return transfer_send(http, as_json, o, n, NULL);
}

static int transfer_post(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    return transfer_send(http, as_json, o, n, "post_pending");
}

static int transfer_void(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    return transfer_send(http, as_json, o, n, "void_pending");
}

static int transfer_get(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    char path[256];
    snprintf(path, sizeof path, "/v1/transfers/%.128s", rest->positional[0]);
    return client_send(http, as_json, "GET", path, NULL);
}

static int transfer_list(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    static const char *const names[] = {"limit", "starting-after", "from", "to", "order", NULL};
    char base[256], path[768];
    snprintf(base, sizeof base, "/v1/accounts/%.128s/transfers", rest->positional[0]);
    query_path(path, sizeof path, base, o, n, names);
    return client_send(http, as_json, "GET", path, NULL);
}

static const cli_opt transfer_create_opts[] = {
    {"id", NULL, false, NULL, "transfer id (the idempotency key, forever)"},
    {"debit", NULL, false, NULL, "debit account id"},
    {"credit", NULL, false, NULL, "credit account id"},
    {"amount", NULL, false, NULL, "integer minor units (1999 = 19.99 USD)"},
    {"currency", NULL, false, NULL, "ISO 4217 code"},
    {"code", NULL, false, NULL, "transfer type code (0-65535)"},
    {"flags", NULL, false, NULL, "comma-separated: linked,pending,balancing_debit,..."},
    {"timeout-s", NULL, false, NULL, "pending transfers: seconds until it voids itself"},
    {"pending-id", NULL, false, NULL, "the pending transfer to post or void"},
    {"metadata", NULL, false, NULL, "key=value,key=value"},
};
static const cli_opt transfer_resolve_opts[] = {
    {"id", NULL, false, NULL, "id of this post/void transfer"},
    {"pending-id", NULL, false, NULL, "the pending transfer"},
    {"amount", NULL, false, NULL, "post: amount to post (default: all of it)"},
};
static const cli_opt transfer_list_opts[] = {
    {"limit", NULL, false, NULL, "rows per page (1-100)"},
    {"starting-after", NULL, false, NULL, "the last id of the previous page"},
    {"from", NULL, false, NULL, "timestamp ns, inclusive"},
    {"to", NULL, false, NULL, "timestamp ns, exclusive"},
    {"order", NULL, false, NULL, "asc|desc"},
};

static const client_cmd transfer_cmds[] = {
    {"create", "usage: paycore transfer create --id ID --debit A --credit B --amount N --currency CUR [...]",
     transfer_create_opts, 10, 0, transfer_create},
    {"get", "usage: paycore transfer get ID", NULL, 0, 1, transfer_get},
    {"post", "usage: paycore transfer post --id ID --pending-id P [--amount N]", transfer_resolve_opts, 3, 0,
     transfer_post},
    {"void", "usage: paycore transfer void --id ID --pending-id P", transfer_resolve_opts, 2, 0, transfer_void},
    {"list", "usage: paycore transfer list ACCOUNT [--limit N] [--starting-after ID] [--from NS] [--to NS] "
             "[--order asc|desc]", transfer_list_opts, 5, 1, transfer_list},
};

/* ---- key ---- */

static int key_create(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    json_t *body = json_object();
    put_string(body, "scope", opt(o, n, "scope"));
    put_string(body, "name", opt(o, n, "name"));
    if (opt(o, n, "accounts")) json_object_set_new(body, "accounts", list_json(opt(o, n, "accounts")));
    return client_send(http, as_json, "POST", "/v1/api-keys", body);
}

static int key_list(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    static const char *const names[] = {"limit", "starting-after", NULL};
    char path[512];
    query_path(path, sizeof path, "/v1/api-keys", o, n, names);
    return client_send(http, as_json, "GET", path, NULL);
}

static int key_revoke(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    char path[256];
    snprintf(path, sizeof path, "/v1/api-keys/%.128s", rest->positional[0]);
    return client_send(http, as_json, "DELETE", path, NULL);
}

static const cli_opt key_create_opts[] = {
    {"scope", NULL, false, NULL, "admin|merchant|read_only"},
    {"name", NULL, false, NULL, "a label"},
    {"accounts", NULL, false, NULL, "merchant: comma-separated account ids granted"},
};

static const client_cmd key_cmds[] = {
    {"create", "usage: paycore key create --scope admin|merchant|read_only [--name N] [--accounts A,..]\n"
               "The secret is printed once.", key_create_opts, 3, 0, key_create},
    {"list", "usage: paycore key list [--limit N] [--starting-after ID]", list_opts, 2, 0, key_list},
    {"revoke", "usage: paycore key revoke KEY_ID", NULL, 0, 1, key_revoke},
};

/* ---- keys (the card vault's key-encryption key) ---- */

static const cli_opt keys_rotate_opts[] = {
    {"data-key", NULL, true, NULL, "re-encrypt every card under a new data key instead"},
};

/* The rotation's state from a GET /v1/admin/vault/rotation answer ("" when unreadable). */
static void rotation_state(const cli_reply_t *reply, char state[16]) {
    state[0] = '\0';
    json_t *body = reply->status == 200 ? json_loads(reply->body, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(body, "state"));
    if (text != NULL) snprintf(state, 16, "%s", text);
    json_decref(body);
}

/* Polls the background rotation until it ends; prints its last status (exit 0 when it
 * succeeded). The rotation runs on in the server if this command is interrupted. */
static int rotation_follow(const cli_http_t *http, bool as_json) {
    uint64_t deadline_ns = pc_mono_ns() + (uint64_t)CLI_DATA_KEY_ROTATE_TIMEOUT_S * 1000000000ull;
    for (;;) {
        cli_reply_t reply;
        if (!cli_http_call(http, "GET", "/v1/admin/vault/rotation", NULL, &reply)) {
            fprintf(stderr, "paycore: connection_failed: %s\n", reply.error);
            cli_reply_free(&reply);
            return 1;
        }
        char state[16];
        rotation_state(&reply, state);
        bool over = strcmp(state, "running") != 0 || pc_mono_ns() > deadline_ns;
        int status = over ? cli_reply_print(&reply, as_json) : 0;
        cli_reply_free(&reply);
        if (over) return status == 0 && strcmp(state, "succeeded") == 0 ? 0 : 1;
        struct timespec pause = {0, (long)CLI_DATA_KEY_ROTATE_POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

static int keys_rotate(const cli_http_t *http, bool as_json, const cli_opt *o, int n, const cli_rest *rest) {
    (void)rest;
    if (opt(o, n, "data-key") == NULL) return client_send(http, as_json, "POST", "/v1/admin/vault/rotate", NULL);
    /* in the background: no HTTP request (nor server thread) is held while every card
     * is re-encrypted */
    json_t *body = json_pack("{s:b,s:b}", "data_key", 1, "background", 1);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    cli_reply_t reply;
    bool answered = cli_http_call(http, "POST", "/v1/admin/vault/rotate", text, &reply);
    free(text);
    if (!answered) fprintf(stderr, "paycore: connection_failed: %s\n", reply.error);
    int status = !answered ? 1 : reply.status == 202 ? 0 : cli_reply_print(&reply, as_json);
    bool started = answered && reply.status == 202;
    cli_reply_free(&reply);
    return started ? rotation_follow(http, as_json) : status == 0 ? 1 : status;
}

static const client_cmd keys_cmds[] = {
    {"rotate", "usage: paycore keys rotate [--data-key] --url URL --key ADMIN_KEY\n\n"
               "Rotates the card vault's key-encryption key on a running server, without downtime:\n"
               "the server makes a new random key, re-wraps every stored card key (data and\n"
               "fingerprint keys) under it in one transaction and replaces its key file (the\n"
               "serve --vault-key FILE, default <db>.vault-key; 0600) with the new key. Cards keep\n"
               "opening throughout; the old key is gone from the file afterwards and no longer\n"
               "opens the database. Crash-safe: the new key is written to FILE.next before the\n"
               "commit and the next start finishes an interrupted rotation. Card ciphertexts are\n"
               "not re-encrypted. Prints kek_id, previous_kek_id and keys_rewrapped.\n"
               "Copy the new key file to wherever the old one was backed up (docs/operations.md).\n\n"
               "With --data-key: re-encrypts every stored card under a new random data key instead,\n"
               "the server running: new cards use the new key at once, stored cards are\n"
               "re-encrypted in batches (each card opens throughout), and every older data key\n"
               "is deleted once no card is under it. Prints data_key_id, data_keys_retired,\n"
               "data_keys_remaining (0 unless a card arrived under an old key meanwhile: run it\n"
               "again), cards_reencrypted and batches. The key file does not change. The rotation\n"
               "runs in the background on the server (POST {\"data_key\":true,\"background\":true});\n"
               "this command follows it (GET /v1/admin/vault/rotation) and also prints state\n"
               "(succeeded or failed), error, started_at_ms and finished_at_ms; interrupted, it\n"
               "leaves the rotation running. Exit 1 unless it succeeded.",
     keys_rotate_opts, 1, 0, keys_rotate},
};

/* ---- dispatch ---- */

static void group_usage(FILE *out, const char *group, const client_cmd *cmds, int count) {
    fprintf(out, "usage: paycore %s <", group);
    for (int i = 0; i < count; i++) fprintf(out, "%s%s", i ? "|" : "", cmds[i].name);
    fprintf(out, "> [options]   (paycore %s <command> --help)\n", group);
}

static int run_cmd(const char *group, const client_cmd *cmd, int argc, char **argv) {
    cli_opt opts[CLIENT_OPTS_MAX];
    int count = COMMON_OPTS + cmd->opt_count;
    memcpy(opts, common_opts, sizeof common_opts);
    if (cmd->opt_count > 0) memcpy(opts + COMMON_OPTS, cmd->opts, sizeof(cli_opt) * (size_t)cmd->opt_count);
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, cmd->usage, opts, count);
        return 0;
    }
    cli_rest rest;
    char label[64];
    snprintf(label, sizeof label, "%s %s", group, cmd->name);
    if (!cli_args_parse(label, argc, argv, opts, count, &rest)) return 2;
    if (rest.positional_count != cmd->positional) {
        fprintf(stderr, "%s\n", cmd->usage);
        return 2;
    }
    cli_http_t http = {.url = opt(opts, count, "url"), .key = opt(opts, count, "key"),
                       .idempotency_key = opt(opts, count, "idempotency-key"), .timeout_s = 60};
    return cmd->run(&http, opt(opts, count, "json") != NULL, opts + COMMON_OPTS, cmd->opt_count, &rest);
}

static int run_group(const char *group, const client_cmd *cmds, int count, int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        group_usage(argc < 2 ? stderr : stdout, group, cmds, count);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < count; i++) {
        if (strcmp(argv[1], cmds[i].name) == 0) return run_cmd(group, &cmds[i], argc - 1, argv + 1);
    }
    fprintf(stderr, "paycore %s: unknown command '%s'\n", group, argv[1]);
    group_usage(stderr, group, cmds, count);
    return 2;
}

int cli_account(int argc, char **argv) {
    return run_group("account", account_cmds, 3, argc, argv);
}

int cli_transfer(int argc, char **argv) {
    return run_group("transfer", transfer_cmds, 5, argc, argv);
}

int cli_key(int argc, char **argv) {
    return run_group("key", key_cmds, 3, argc, argv);
}

int cli_keys(int argc, char **argv) {
    return run_group("keys", keys_cmds, 1, argc, argv);
}
