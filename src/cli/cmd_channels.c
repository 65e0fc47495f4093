/* cli/cmd_channels.c: `paycore channels`, the gateway from the command line.
 *   check     --channels FILE                  validate a channels file (line of a mistake)
 *   authorize --channels FILE --amount N ...   one routed authorization, blocking; prints
 *                                              the result with its decision and attempts
 * For operators and demos: the server never blocks on a channel, this tool may. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "gateway/gateway.h"
#include "obs/obs.h"

enum { OPT_CHANNELS, OPT_AMOUNT, OPT_CURRENCY, OPT_COUNTRY, OPT_CARD, OPT_WALLET, OPT_REFERENCE,
       OPT_CAPTURE, OPT_COUNT };

static void channels_opts(cli_opt opts[OPT_COUNT]) {
    cli_opt defaults[OPT_COUNT] = {
        {"channels", "PAYCORE_CHANNELS", false, NULL, "the channels file (docs/channels.md)"},
        {"amount", NULL, false, NULL, "authorize: amount in minor units"},
        {"currency", NULL, false, "EUR", "authorize: ISO 4217 currency"},
        {"country", NULL, false, NULL, "authorize: the payer's country (ISO 3166 alpha-2)"},
        {"card", NULL, false, NULL, "authorize: a card number (method card; expiry 12/2030)"},
        {"wallet", NULL, false, NULL, "authorize: a wallet id (method wallet)"},
        {"reference", NULL, false, "cli-payment", "authorize: the payment's reference"},
        {"capture", NULL, true, NULL, "authorize: capture at once"},
    };
    memcpy(opts, defaults, sizeof defaults);
}

static int check(const cli_opt *opts) {
    gw_config_error_t error;
    pc_status status = gw_config_check(opts[OPT_CHANNELS].value, &error);
    if (status != PC_OK) {
        fprintf(stderr, "%s line %u: %s\n", opts[OPT_CHANNELS].value, error.line, error.message);
        return 1;
    }
    printf("ok\n");
    return 0;
}

static bool request_from(const cli_opt *opts, gw_request_t *r) {
    uint64_t amount = 0;
    memset(r, 0, sizeof *r);
    r->op = GW_OP_AUTHORIZE;
    if (opts[OPT_AMOUNT].value == NULL || !cli_parse_u64(opts[OPT_AMOUNT].value, &amount) || amount == 0 ||
        amount > INT64_MAX || (opts[OPT_CARD].value == NULL) == (opts[OPT_WALLET].value == NULL)) {
        fprintf(stderr, "paycore channels authorize: needs --amount N and one of --card or --wallet\n");
        return false;
    }
    r->amount_minor = (int64_t)amount;
    snprintf(r->reference, sizeof r->reference, "%s", opts[OPT_REFERENCE].value);
    snprintf(r->currency, sizeof r->currency, "%s", opts[OPT_CURRENCY].value);
    if (opts[OPT_COUNTRY].value) snprintf(r->country, sizeof r->country, "%s", opts[OPT_COUNTRY].value);
    r->capture = opts[OPT_CAPTURE].value != NULL;
    if (opts[OPT_CARD].value != NULL) {
        snprintf(r->method, sizeof r->method, "card");
        snprintf(r->card.number, sizeof r->card.number, "%s", opts[OPT_CARD].value);
        r->card.exp_month = 12;
        r->card.exp_year = 2030;
    } else {
        snprintf(r->method, sizeof r->method, "wallet");
        snprintf(r->wallet_id, sizeof r->wallet_id, "%s", opts[OPT_WALLET].value);
    }
    return true;
}

static int authorize(const cli_opt *opts) {
    gw_request_t request;
    if (!request_from(opts, &request)) return 2;
    gw_t *gw = NULL;
    gw_config_error_t error;
    gw_options_t options = {opts[OPT_CHANNELS].value, 1};
    if (gw_start(&gw, &options, &error) != PC_OK) {
        fprintf(stderr, "%s line %u: %s\n", opts[OPT_CHANNELS].value, error.line, error.message);
        return 1;
    }
    gw_result_t result;
    pc_status status = gw_call_wait(gw, &request, NULL, NULL, &result);
    if (status == PC_OK) {
        json_t *out = gw_result_json(&result);
        json_dumpf(out, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(out);
    } else {
        fprintf(stderr, "paycore channels authorize: %s\n", pc_status_code(status));
    }
    gw_stop(gw);
    return status == PC_OK && result.outcome == GW_OUTCOME_APPROVED ? 0 : 1;
}

int cli_channels(int argc, char **argv) {
    cli_opt opts[OPT_COUNT];
    channels_opts(opts);
    const char *usage = "usage: paycore channels check|authorize --channels FILE [options]\n\n"
                        "check: validate a channels file (exit 1 with the line of a mistake).\n"
                        "authorize: one routed authorization through the channels, printed as JSON\n"
                        "(exit 0 when approved).";
    if (argc < 2 || cli_wants_help(argc, argv)) {
        cli_args_usage(argc < 2 ? stderr : stdout, usage, opts, OPT_COUNT);
        return argc < 2 ? 2 : 0;
    }
    cli_rest rest;
    if (!cli_args_parse("channels", argc - 1, argv + 1, opts, OPT_COUNT, &rest) || rest.positional_count > 0) {
        return 2;
    }
    if (opts[OPT_CHANNELS].value == NULL) {
        fprintf(stderr, "paycore channels: --channels FILE is required\n");
        return 2;
    }
    obs_log_open(NULL, OBS_LEVEL_WARN);
    if (strcmp(argv[1], "check") == 0) return check(opts);
    if (strcmp(argv[1], "authorize") == 0) return authorize(opts);
    fprintf(stderr, "paycore channels: unknown action '%s'\n", argv[1]);
    return 2;
}
