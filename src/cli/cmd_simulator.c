/* cli/cmd_simulator.c: `paycore simulator card|wallet|bank`, one channel simulator in
 * this process (docs/channels.md). Prints `listening=HOST:PORT` once it listens, so
 * that tests and `serve --demo` can use port 0. SIGTERM/SIGINT stop it (exit 0). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "gateway/simulator.h"
#include "obs/obs.h"

enum { OPT_LISTEN, OPT_DB, OPT_CONFIG, OPT_DATA, OPT_SEED, OPT_API_KEY, OPT_CALLBACK_SECRET, OPT_REPORT_DIR,
       OPT_PORT_FILE, OPT_LOG_LEVEL, OPT_HTTP_ENGINE, OPT_HTTP_MHD, OPT_COUNT };

static void simulator_opts(cli_opt opts[OPT_COUNT]) {
    cli_opt defaults[OPT_COUNT] = {
        {"listen", NULL, false, "127.0.0.1:0", "address:port to listen on (port 0: any free port)"},
        {"db", NULL, false, NULL, "the simulator's SQLite record (default ./sim-<kind>.db)"},
        {"config", NULL, false, NULL, "JSON config: api_key, seed, faults, ... (docs/channels.md)"},
        {"data", NULL, false, NULL, "cardholders (card) or accounts (wallet, bank) to start with"},
        {"seed", NULL, false, NULL, "seed of every random choice (overrides the config's; default 1)"},
        {"api-key", "PAYCORE_SIM_API_KEY", false, NULL, "require Authorization: Bearer KEY"},
        {"callback-secret", "PAYCORE_SIM_CALLBACK_SECRET", false, NULL, "bank: HMAC key of callback signatures"},
        {"report-dir", NULL, false, NULL, "where settlement CSVs go (default: the db's directory)"},
        {"port-file", NULL, false, NULL, "write the bound port there once listening"},
        {"log-level", NULL, false, "info", "debug|info|warn|error"},
        {"http-engine", "PAYCORE_SIM_HTTP_ENGINE", true, NULL, "serve on paycore's own HTTP engine (src/http): the default, kept for scripts"},
        {"http-mhd", "PAYCORE_SIM_HTTP_MHD", true, NULL, "serve on libmicrohttpd instead of paycore's own HTTP engine (wins over --http-engine)"},
    };
    memcpy(opts, defaults, sizeof defaults);
}

/* A flag given, or its variable set to anything but "0". */
static bool flag_set(const cli_opt *opt) {
    return opt->value != NULL && strcmp(opt->value, "0") != 0;
}

/* Fills 'options' from the parsed flags; false after printing the bad one. */
static bool simulator_options(const cli_opt *opts, sim_kind kind, char *db_default, size_t db_bytes,
                              sim_options_t *options) {
    memset(options, 0, sizeof(*options));
    options->kind = kind;
    options->listen = opts[OPT_LISTEN].value;
    snprintf(db_default, db_bytes, "./sim-%s.db", sim_kind_name(kind));
    options->db_path = opts[OPT_DB].value ? opts[OPT_DB].value : db_default;
    options->config_path = opts[OPT_CONFIG].value;
    options->data_path = opts[OPT_DATA].value;
    options->report_dir = opts[OPT_REPORT_DIR].value;
    options->api_key = opts[OPT_API_KEY].value;
    options->callback_secret = opts[OPT_CALLBACK_SECRET].value;
    /* --http-engine (the default) changes nothing; --http-mhd alone selects libmicrohttpd */
    options->http_mhd = flag_set(&opts[OPT_HTTP_MHD]);
    if (opts[OPT_SEED].value != NULL) {
        char *end = NULL;
        options->seed = strtoull(opts[OPT_SEED].value, &end, 10);
        if (opts[OPT_SEED].value[0] < '0' || opts[OPT_SEED].value[0] > '9' || *end != '\0') {
            fprintf(stderr, "paycore simulator: bad --seed '%s'\n", opts[OPT_SEED].value);
            return false;
        }
        options->seed_set = true;
    }
    return true;
}

static bool port_file_write(const char *path, uint16_t port) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    char text[16];
    int bytes = snprintf(text, sizeof text, "%u\n", (unsigned)port);
    bool ok = write(fd, text, (size_t)bytes) == bytes;
    return close(fd) == 0 && ok;
}

/* Prints the listening= line scripts wait for (the host part of --listen); the log
 * line names the transport, so that an operator sees which server answers. */
static void announce(const sim_options_t *options, uint16_t port) {
    const char *colon = strrchr(options->listen, ':');
    int host_bytes = colon ? (int)(colon - options->listen) : 0;
    printf("listening=%.*s:%u\n", host_bytes, options->listen, (unsigned)port);
    fflush(stdout);
    char fields[96];
    snprintf(fields, sizeof fields, "\"port\":%u,\"http\":\"%s\"", (unsigned)port,
             options->http_mhd ? "libmicrohttpd" : "engine");
    obs_log_notice("simulator listening", fields);
}

static int simulator_run(const cli_opt *opts, const sim_options_t *options) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL); /* every thread started below inherits it */
    signal(SIGPIPE, SIG_IGN);
    sim_t *sim = NULL;
    char error[512] = "";
    pc_status status = sim_start(options, &sim, error, sizeof error);
    if (status != PC_OK) {
        fprintf(stderr, "paycore simulator: %s\n", error);
        return status == PC_INVALID_ARGUMENT ? 2 : 1;
    }
    if (opts[OPT_PORT_FILE].value != NULL && !port_file_write(opts[OPT_PORT_FILE].value, sim_port(sim))) {
        fprintf(stderr, "paycore simulator: cannot write --port-file %s\n", opts[OPT_PORT_FILE].value);
        sim_stop(sim);
        return 1;
    }
    announce(options, sim_port(sim));
    int signal_number = 0;
    while (sigwait(&signals, &signal_number) != 0) {
    }
    obs_logf(OBS_LEVEL_INFO, "signal %d: stopping", signal_number);
    sim_stop(sim);
    obs_log_notice("simulator stopped", NULL);
    return 0;
}

int cli_simulator(int argc, char **argv) {
    cli_opt opts[OPT_COUNT];
    simulator_opts(opts);
    const char *usage = "usage: paycore simulator card|wallet|bank [options]\n\nRuns one payment channel "
                        "simulator (HTTP/JSON, docs/channels.md) with its own SQLite record.";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, OPT_COUNT);
        return 0;
    }
    cli_rest rest;
    sim_kind kind;
    if (!cli_args_parse("simulator", argc, argv, opts, OPT_COUNT, &rest)) return 2;
    if (rest.positional_count != 1 || !sim_kind_parse(rest.positional[0], &kind)) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    obs_level level;
    if (!obs_log_level_parse(opts[OPT_LOG_LEVEL].value, &level)) {
        fprintf(stderr, "paycore simulator: bad --log-level '%s'\n", opts[OPT_LOG_LEVEL].value);
        return 2;
    }
    char db_default[32];
    sim_options_t options;
    if (!simulator_options(opts, kind, db_default, sizeof db_default, &options)) return 2;
    if (!obs_log_open(NULL, level)) return 1;
    int code = simulator_run(opts, &options);
    obs_log_close();
    return code;
}
