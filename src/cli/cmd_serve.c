/* cli/cmd_serve.c: `paycore serve`, the HTTP/JSON server. Signals are blocked in
 * every thread and taken here with sigwait: SIGTERM/SIGINT drain and exit 0, SIGHUP
 * reopens the log file. The writer raises SIGUSR2 when the database failed to write
 * (store.h): the server then drains and exits 1, to be restarted from the file.
 *
 * Start order, so that a start that fails names its cause and leaves no file
 * behind: bind the listen address, open the database (lock, checks, signing key),
 * start the risk engine (its files), then serve. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/api_gateway.h"
#include "api/api_payments.h"
#include "api/api_risk.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/serve_demo.h"
#include "obs/obs.h"

enum { OPT_LISTEN, OPT_DB, OPT_THREADS, OPT_BODY_MAX, OPT_QUEUE_MAX, OPT_LOG_LEVEL,
       OPT_LOG_FILE, OPT_RATE, OPT_BURST, OPT_TIMEOUT, OPT_REQUEST_TIMEOUT, OPT_METRICS_AUTH, OPT_ROUTES, OPT_RISK_MODEL,
       OPT_RISK_RULES, OPT_RISK_RULES_ONLY, OPT_RISK_REVIEW, OPT_RISK_DECLINE, OPT_DEMO, OPT_CHANNELS,
       OPT_GATEWAY_THREADS, OPT_VAULT_KEY, OPT_AUTH_WINDOW, OPT_RECOVERY_MS, OPT_RECOVERY_GRACE_MS, OPT_THREE_DS,
       OPT_COUNT };

static void serve_opts(cli_opt opts[OPT_COUNT]) {
    cli_opt defaults[OPT_COUNT] = {
        {"listen", "PAYCORE_LISTEN", false, "127.0.0.1:8080", "address:port to listen on (port 0: any free port)"},
        {"db", "PAYCORE_DB", false, "./paycore.db", "database file (create it with paycore init)"},
        {"threads", "PAYCORE_THREADS", false, NULL, "HTTP threads (default: CPU count)"},
        {"body-max", "PAYCORE_BODY_MAX", false, "4m", "largest request body in bytes (k/m suffix); over it: 413"},
        {"queue-max", "PAYCORE_QUEUE_MAX", false, "65536", "events waiting for the writer; over it: 503 writer_queue_full"},
        {"log-level", "PAYCORE_LOG_LEVEL", false, "info", "debug|info|warn|error"},
        {"log-file", "PAYCORE_LOG_FILE", false, NULL, "log to this file instead of stderr (SIGHUP reopens it)"},
        {"rate-limit", "PAYCORE_RATE_LIMIT", false, "0", "requests per second per API key (0: unlimited); over it: 429"},
        {"rate-burst", "PAYCORE_RATE_BURST", false, "0", "token bucket size per key (0: the rate)"},
        {"timeout-s", "PAYCORE_TIMEOUT_S", false, "30", "close connections idle or stalled this long"},
        {"request-timeout-ms", "PAYCORE_REQUEST_TIMEOUT_MS", false, "30000", "answer 503 request_timeout after waiting this long for the writer (0: never)"},
        {"metrics-auth", "PAYCORE_METRICS_AUTH", true, NULL, "require an API key for /metrics"},
        {"routes", NULL, true, NULL, "print the route table (METHOD PATH WHO: none, or the key scopes that may call it) and exit"},
        {"risk-model", "PAYCORE_RISK_MODEL", false, NULL, "risk model (paycore risk train); missing or corrupt: error at start"},
        {"risk-rules", "PAYCORE_RISK_RULES", false, NULL, "risk rules file (docs/risk.md); SIGHUP or POST /v1/admin/reload reloads"},
        {"risk-rules-only", "PAYCORE_RISK_RULES_ONLY", true, NULL, "score with rules only (no model; /healthz says rules_only)"},
        {"risk-review-threshold", "PAYCORE_RISK_REVIEW_THRESHOLD", false, NULL, "model score at or above: review (default 0.30)"},
        {"risk-decline-threshold", "PAYCORE_RISK_DECLINE_THRESHOLD", false, NULL, "model score at or above: decline (default 0.85)"},
        {"demo", "PAYCORE_DEMO", true, NULL, "also run the card, wallet and bank simulators (docs/channels.md), stopped with the server"},
        {"channels", "PAYCORE_CHANNELS", false, NULL, "payment channels and routing (JSON, docs/channels.md); SIGHUP or POST /v1/admin/reload reloads"},
        {"gateway-threads", "PAYCORE_GATEWAY_THREADS", false, "1", "gateway threads calling channels (each runs a curl multi)"},
        {"vault-key", "PAYCORE_VAULT_KEY", false, NULL, "card vault key-encryption key file (hex, 0600; default <db>.vault-key, made when the database has no card key yet)"},
        {"authorization-window-s", "PAYCORE_AUTHORIZATION_WINDOW_S", false, NULL, "how long an authorization hold lasts before it expires (default 7 days)"},
        {"payments-recovery-ms", "PAYCORE_PAYMENTS_RECOVERY_MS", false, NULL, "interval of the payments' recovery and expiry passes (default 2000)"},
        {"payments-recovery-grace-ms", "PAYCORE_PAYMENTS_RECOVERY_GRACE_MS", false, NULL, "a pending channel attempt younger than this is not yet asked about (default 15000)"},
        {"three-ds-prefixes", "PAYCORE_THREE_DS_PREFIXES", false, NULL, "card prefixes enrolled in 3-D Secure, comma separated (default: the card simulator's 4000002760)"},
    };
    memcpy(opts, defaults, sizeof defaults);
}

/* Fills 'config' from the options; false after printing the bad one. */
static bool serve_config(const cli_opt *opts, api_config_t *config, obs_level *level) {
    uint64_t value;
    api_config_default(config);
    config->listen = opts[OPT_LISTEN].value;
    config->db_path = opts[OPT_DB].value;
    struct { int opt; uint64_t max; } numbers[] = {
        {OPT_THREADS, 256}, {OPT_BODY_MAX, 1ull << 30}, {OPT_QUEUE_MAX, WRITER_QUEUE_DEPTH_MAX},
        {OPT_RATE, 10000000}, {OPT_BURST, 10000000}, {OPT_TIMEOUT, 3600},
        {OPT_REQUEST_TIMEOUT, 3600000}};
    uint64_t parsed[OPT_COUNT] = {0};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        const cli_opt *opt = &opts[numbers[i].opt];
        if (opt->value == NULL) continue;
        if (!cli_parse_u64(opt->value, &value) || value > numbers[i].max) {
            fprintf(stderr, "paycore serve: bad --%s '%s'\n", opt->name, opt->value);
            return false;
        }
        parsed[numbers[i].opt] = value;
    }
    if (opts[OPT_THREADS].value != NULL && parsed[OPT_THREADS] > 0) config->threads = (uint32_t)parsed[OPT_THREADS];
    if (parsed[OPT_BODY_MAX] > 0) config->body_bytes_max = parsed[OPT_BODY_MAX];
    if (parsed[OPT_QUEUE_MAX] > 0) config->queue_events_max = (uint32_t)parsed[OPT_QUEUE_MAX];
    config->rate_per_s = (uint32_t)parsed[OPT_RATE];
    config->rate_burst = (uint32_t)parsed[OPT_BURST];
    if (parsed[OPT_TIMEOUT] > 0) config->connection_timeout_s = (uint32_t)parsed[OPT_TIMEOUT];
    config->request_timeout_ms = (uint32_t)parsed[OPT_REQUEST_TIMEOUT];
    config->metrics_auth = opts[OPT_METRICS_AUTH].value != NULL && strcmp(opts[OPT_METRICS_AUTH].value, "0") != 0;
    if (!obs_log_level_parse(opts[OPT_LOG_LEVEL].value, level)) {
        fprintf(stderr, "paycore serve: bad --log-level '%s'\n", opts[OPT_LOG_LEVEL].value);
        return false;
    }
    return true;
}

/* Waits for signals until SIGTERM, SIGINT or SIGUSR2 (the writer failed). */
static void serve_wait(const sigset_t *signals) {
    for (;;) {
        int signal_number = 0;
        if (sigwait(signals, &signal_number) != 0) continue;
        if (signal_number == SIGHUP) {
            api_risk_reload();
            (void)api_gateway_reload(NULL, 0); /* logs a refusal with its line */
            bool reopened = obs_log_reopen();
            obs_log(reopened ? OBS_LEVEL_INFO : OBS_LEVEL_ERROR,
                    reopened ? "log reopened" : "log reopen failed", NULL);
            continue;
        }
        if (signal_number != SIGUSR2) obs_logf(OBS_LEVEL_INFO, "signal %d: draining", signal_number);
        return;
    }
}

/* Writer thread: the store failed for good; wake serve_wait. */
static void serve_writer_failed(void *ctx) {
    (void)ctx;
    kill(getpid(), SIGUSR2);
}

/* The gateway: --channels FILE, or with --demo alone the demo's channels file (the
 * bound port is known: the bank's callbacks name it). */
static pc_status serve_gateway_start(api_server_t *server, const api_config_t *config, const cli_opt *opts,
                                     const sim_demo_t *demo) {
    uint64_t threads = 1;
    if (!cli_parse_u64(opts[OPT_GATEWAY_THREADS].value, &threads) || threads == 0 || threads > GW_THREADS_MAX) {
        obs_logf(OBS_LEVEL_ERROR, "bad --gateway-threads '%s' (1..%d)", opts[OPT_GATEWAY_THREADS].value,
                 GW_THREADS_MAX);
        return PC_INVALID_ARGUMENT;
    }
    const char *path = opts[OPT_CHANNELS].value;
    char demo_path[4096];
    if (path == NULL && demo->children[SIM_KIND_CARD].pid > 0) {
        if (!serve_demo_channels(config->db_path, demo, api_server_port(server), demo_path, sizeof demo_path)) {
            return PC_IO;
        }
        path = demo_path;
    }
    return api_gateway_start(path, (uint32_t)threads);
}

/* The payments layer: its vault key and options. */
static pc_status serve_payments_start(api_server_t *server, const api_config_t *config, const cli_opt *opts) {
    api_payments_options_t o = {.db_path = config->db_path, .vault_key_path = opts[OPT_VAULT_KEY].value,
                                .three_ds_prefixes = opts[OPT_THREE_DS].value};
    struct { int opt; uint32_t *slot; uint64_t max; } numbers[] = {
        {OPT_AUTH_WINDOW, &o.authorization_window_s, LEDGER_TIMEOUT_S_MAX},
        {OPT_RECOVERY_MS, &o.recovery_interval_ms, 3600000},
        {OPT_RECOVERY_GRACE_MS, &o.recovery_grace_ms, 3600000}};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        const char *text = opts[numbers[i].opt].value;
        uint64_t value = 0;
        if (text == NULL) continue;
        if (!cli_parse_u64(text, &value) || value == 0 || value > numbers[i].max) {
            obs_logf(OBS_LEVEL_ERROR, "bad --%s '%s'", opts[numbers[i].opt].name, text);
            return PC_INVALID_ARGUMENT;
        }
        *numbers[i].slot = (uint32_t)value;
    }
    return api_payments_start(server, &o);
}

/* The part of a start that may fail after the database was opened: risk (its files),
 * the demo's simulators (--demo), the gateway, payments, then serving. */
static pc_status serve_start_after_open(api_server_t *server, const api_config_t *config, const cli_opt *opts,
                                        sim_demo_t *demo) {
    api_risk_options_t risk = {config->db_path, opts[OPT_RISK_MODEL].value, opts[OPT_RISK_RULES].value,
                               opts[OPT_RISK_RULES_ONLY].value != NULL && strcmp(opts[OPT_RISK_RULES_ONLY].value, "0") != 0,
                               opts[OPT_RISK_REVIEW].value, opts[OPT_RISK_DECLINE].value};
    pc_status status = api_risk_start(&risk);
    if (status != PC_OK) return status;
    bool demo_wanted = opts[OPT_DEMO].value != NULL && strcmp(opts[OPT_DEMO].value, "0") != 0;
    if (demo_wanted && !serve_demo_start(config->db_path, demo)) status = PC_IO;
    if (status == PC_OK) status = serve_gateway_start(server, config, opts, demo);
    if (status == PC_OK) status = serve_payments_start(server, config, opts);
    if (status == PC_OK) status = api_server_listen(server);
    if (status != PC_OK) {
        api_payments_stop();
        api_gateway_stop();
        sim_demo_stop(demo);
        api_risk_stop();
    }
    return status;
}

/* Opens the database (after binding the address), then the rest; on failure logs
 * the cause and leaves nothing running. */
static pc_status serve_start(api_config_t *config, const cli_opt *opts, api_server_t **out, sim_demo_t *demo) {
    api_server_t *server = NULL;
    pc_status status = api_server_open(&server, config);
    if (status == PC_OK) {
        status = serve_start_after_open(server, config, opts, demo);
        if (status != PC_OK) api_server_stop(server);
    }
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "cannot start: %s (%s)", pc_status_code(status), pc_status_message(status));
        return status;
    }
    *out = server;
    return PC_OK;
}

int cli_serve(int argc, char **argv) {
    cli_opt opts[OPT_COUNT];
    serve_opts(opts);
    const char *usage = "usage: paycore serve [options]\n\nRuns the HTTP/JSON API. SIGTERM drains "
                        "the writer queue, commits and exits 0; SIGHUP reopens the log file and\n"
                        "reloads the risk rules and the channels file.";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, OPT_COUNT);
        return 0;
    }
    cli_rest rest;
    api_config_t config;
    obs_level level;
    if (!cli_args_parse("serve", argc, argv, opts, OPT_COUNT, &rest) || rest.positional_count > 0 ||
        !serve_config(opts, &config, &level)) {
        return 2;
    }
    if (opts[OPT_ROUTES].value != NULL) {
        api_routes_print(stdout);
        return 0;
    }
    if (!obs_log_open(opts[OPT_LOG_FILE].value, level)) {
        fprintf(stderr, "paycore serve: cannot open log file '%s'\n", opts[OPT_LOG_FILE].value);
        return 1;
    }
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &signals, NULL); /* every thread started below inherits it */
    signal(SIGPIPE, SIG_IGN);
    config.writer_failed = serve_writer_failed;
    sim_demo_t demo = {0};
    api_server_t *server = NULL;
    if (serve_start(&config, opts, &server, &demo) != PC_OK) {
        obs_log_close();
        return 1;
    }
    char fields[160];
    /* the listen address was parsed as IPv4 host:port: safe inside a JSON string */
    snprintf(fields, sizeof fields, "\"listen\":\"%.60s\",\"port\":%u", config.listen,
             (unsigned)api_server_port(server));
    obs_log_notice("listening", fields);
    serve_wait(&signals);
    pc_status failed = api_server_failed(server);
    api_payments_stop(); /* running payments end first: they still write */
    api_server_stop(server);
    api_gateway_stop();
    api_risk_stop();
    sim_demo_stop(&demo);
    if (failed != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "stopped: %s: the database failed to write; restart paycore serve to reload"
                 " from the file (a COMMIT whose outcome was unknown is then either there or not: clients"
                 " retry with the same ids)", pc_status_code(failed));
        obs_log_close();
        return 1;
    }
    obs_log_notice("stopped", NULL);
    obs_log_close();
    return 0;
}
