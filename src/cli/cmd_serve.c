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
#include "api/api_ops.h"
#include "api/api_payments.h"
#include "api/api_risk.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/serve_demo.h"
#include "obs/obs.h"
#include "store/store.h"

enum { OPT_LISTEN, OPT_DB, OPT_THREADS, OPT_BODY_MAX, OPT_QUEUE_MAX, OPT_LOG_LEVEL,
       OPT_LOG_FILE, OPT_RATE, OPT_BURST, OPT_TIMEOUT, OPT_REQUEST_TIMEOUT, OPT_METRICS_AUTH, OPT_ROUTES, OPT_RISK_MODEL,
       OPT_RISK_RULES, OPT_RISK_RULES_ONLY, OPT_RISK_REVIEW, OPT_RISK_DECLINE, OPT_EVENTS_AMQP,
       OPT_EVENTS_EXCHANGE, OPT_EVENTS_RETENTION, OPT_EVENTS_RETRY_BASE, OPT_EVENTS_RETRY_MAX,
       OPT_EVENTS_DISABLE_AFTER, OPT_EVENTS_TIMEOUT, OPT_WEBHOOK_PRIVATE_OK, OPT_NO_EVENTS, OPT_DEMO, OPT_CHANNELS,
       OPT_GATEWAY_THREADS, OPT_PER_IP, OPT_IDEM_RETENTION, OPT_IDEM_MAX, OPT_IDEM_KEY_MAX, OPT_IDEM_INDEX_MAX,
       OPT_WEB_DIR, OPT_VERIFY_INTERVAL, OPT_VAULT_KEY, OPT_AUTH_WINDOW,
       OPT_RECOVERY_MS, OPT_RECOVERY_GRACE_MS, OPT_BANK_INQUIRY_MS, OPT_THREE_DS, OPT_STORE, OPT_STANDBY, OPT_STORE_WAIT, OPT_SHARDS, OPT_ADVERTISE,
       OPT_STANDBY_FORWARD_READS, OPT_HTTP_ENGINE, OPT_HTTP_MHD, OPT_COUNT };

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
        {"timeout-s", "PAYCORE_TIMEOUT_S", false, "30", "a request must arrive whole within this many seconds of its connection being ready for it, and a reply leave within it; idle connections close after it too"},
        {"request-timeout-ms", "PAYCORE_REQUEST_TIMEOUT_MS", false, "30000", "answer 503 request_timeout after waiting this long for the writer (0: never)"},
        {"metrics-auth", "PAYCORE_METRICS_AUTH", true, NULL, "require an admin or read_only key for /metrics (a merchant key: 403)"},
        {"routes", NULL, true, NULL, "print the route table (METHOD PATH WHO: none, or the key scopes that may call it) and exit"},
        {"risk-model", "PAYCORE_RISK_MODEL", false, NULL, "risk model (paycore risk train); missing or corrupt: error at start"},
        {"risk-rules", "PAYCORE_RISK_RULES", false, NULL, "risk rules file (docs/risk.md); SIGHUP or POST /v1/admin/reload reloads"},
        {"risk-rules-only", "PAYCORE_RISK_RULES_ONLY", true, NULL, "score with rules only (no model; /healthz says rules_only)"},
        {"risk-review-threshold", "PAYCORE_RISK_REVIEW_THRESHOLD", false, NULL, "model score at or above: review (default 0.30)"},
        {"risk-decline-threshold", "PAYCORE_RISK_DECLINE_THRESHOLD", false, NULL, "model score at or above: decline (default 0.85)"},
        {"events-amqp", "PAYCORE_EVENTS_AMQP", false, NULL, "publish every event to RabbitMQ: amqp://user:pass@host:5672/vhost"},
        {"events-amqp-exchange", "PAYCORE_EVENTS_AMQP_EXCHANGE", false, "paycore.events", "the topic exchange (routing key = event type)"},
        {"events-retention-s", "PAYCORE_EVENTS_RETENTION_S", false, "2592000", "purge delivered events older than this (0: keep all)"},
        {"events-retry-base-ms", "PAYCORE_EVENTS_RETRY_BASE_MS", false, "1000", "first webhook retry after about this; doubles per attempt (1 h at most)"},
        {"events-retry-max-s", "PAYCORE_EVENTS_RETRY_MAX_S", false, "259200", "dead-letter a webhook delivery after retrying this long"},
        {"events-disable-after-s", "PAYCORE_EVENTS_DISABLE_AFTER_S", false, "432000", "disable an endpoint failing this long"},
        {"events-webhook-timeout-ms", "PAYCORE_EVENTS_WEBHOOK_TIMEOUT_MS", false, "10000", "one webhook attempt, connect to last byte"},
        {"webhook-private-ok", "PAYCORE_WEBHOOK_PRIVATE_OK", true, NULL, "let webhook endpoints reach loopback, private and link-local addresses (local development; by default such URLs are refused and never connected to)"},
        {"no-events", "PAYCORE_NO_EVENTS", true, NULL, "write no events and deliver none (a benchmark's baseline)"},
        {"demo", "PAYCORE_DEMO", true, NULL, "also run the card, wallet and bank simulators (docs/channels.md), stopped with the server"},
        {"channels", "PAYCORE_CHANNELS", false, NULL, "payment channels and routing (JSON, docs/channels.md); SIGHUP or POST /v1/admin/reload reloads"},
        {"gateway-threads", "PAYCORE_GATEWAY_THREADS", false, "1", "gateway threads calling channels (each runs a curl multi)"},
        {"connections-per-ip-max", "PAYCORE_CONNECTIONS_PER_IP_MAX", false, "1024", "connections one client address may hold (0: no limit; raise it behind a proxy)"},
        {"idempotency-retention-h", "PAYCORE_IDEMPOTENCY_RETENTION_H", false, "24", "keep stored Idempotency-Key replies this many hours (at least 24)"},
        {"idempotency-max-bytes", "PAYCORE_IDEMPOTENCY_MAX_BYTES", false, "8g", "room for stored Idempotency-Key replies, all keys (k/m/g; a payment takes ~260 bytes: 8g holds 24 h of ~380 payments/s); past it: 503 idempotency_storage_full"},
        {"idempotency-key-max-bytes", "PAYCORE_IDEMPOTENCY_KEY_MAX_BYTES", false, "256m", "one API key's fair share of that room (k/m/g), enforced once the room is 75% full: past both, that key's new replies get 503 idempotency_storage_full"},
        {"idempotency-index-max-keys", "PAYCORE_IDEMPOTENCY_INDEX_MAX_KEYS", false, PC_LIMIT_TEXT(API_IDEM_INDEX_KEYS_DEFAULT), "stored Idempotency-Keys held in the in-memory index (16-32 bytes each) that spares a new key its store read; past it every key is looked up in the store"},
        {"web-dir", "PAYCORE_WEB_DIR", false, NULL, "the built dashboard served at /dashboard (default: beside the binary)"},
        {"verify-interval-s", "PAYCORE_VERIFY_INTERVAL_S", false, "0", "verify the journal this often in the background (0: only on POST /v1/verify)"},
        {"vault-key", "PAYCORE_VAULT_KEY", false, NULL, "card vault key-encryption key file (hex, 0600; default <db>.vault-key, made when the database has no card key yet)"},
        {"authorization-window-s", "PAYCORE_AUTHORIZATION_WINDOW_S", false, NULL, "how long an authorization hold lasts before it expires (default 7 days)"},
        {"payments-recovery-ms", "PAYCORE_PAYMENTS_RECOVERY_MS", false, NULL, "interval of the payments' recovery and expiry passes (default 2000)"},
        {"payments-recovery-grace-ms", "PAYCORE_PAYMENTS_RECOVERY_GRACE_MS", false, NULL, "a pending channel attempt younger than this is not yet asked about (default 15000)"},
        {"payments-bank-inquiry-ms", "PAYCORE_PAYMENTS_BANK_INQUIRY_MS", false, NULL, "a payout, withdrawal or bank collection waiting for its bank callback longer than this is asked about (default 900000)"},
        {"three-ds-prefixes", "PAYCORE_THREE_DS_PREFIXES", false, NULL, "card prefixes enrolled in 3-D Secure, comma separated (default: the card simulator's 4000002760)"},
        {"store", "PAYCORE_STORE", false, NULL, "a PostgreSQL store instead of the SQLite file: postgres://user@host/db (paycore init --store first); --db then names the node's own files (signing key, risk files)"},
        {"standby", "PAYCORE_STANDBY", true, NULL, "with --store or --shards: while another paycore is the writer, wait and take over when it is gone (instead of refusing with store_in_use); with --shards, forward every request to the set's writer meanwhile"},
        {"store-wait-s", "PAYCORE_STORE_WAIT_S", false, PC_LIMIT_TEXT(STORE_WRITABLE_WAIT_S_DEFAULT), "with a --store URL asking for a writable server (target_session_attrs=read-write: Patroni), wait this long for one at start (a primary being elected) before refusing (0: no wait)"},
        {"shards", "PAYCORE_SHARDS", false, NULL, "serve a set of PostgreSQL shards: postgres:// URLs separated by commas, in the order paycore init --shards was given (docs/scaleout.md); --db then names the node's own files"},
        {"advertise", "PAYCORE_ADVERTISE", false, NULL, "with --shards: the address other nodes of the set forward requests to once this node writes the set, http://HOST:PORT (default: http://<--listen address>)"},
        {"standby-forward-reads", "PAYCORE_STANDBY_FORWARD_READS", true, NULL, "with --shards --standby: forward account and transfer reads to the writer too, instead of answering them from the shards (docs/scaleout.md §7; a baseline for bench_forward)"},
        {"http-engine", "PAYCORE_HTTP_ENGINE", true, NULL, "serve on paycore's own HTTP engine (src/http): the default, kept for the scripts that name it"},
        {"http-mhd", "PAYCORE_HTTP_MHD", true, NULL, "serve on libmicrohttpd instead of paycore's own HTTP engine (a standby of a set of shards forwards on the engine until it takes over)"},
    };
    memcpy(opts, defaults, sizeof defaults);
}

static bool flag_set(const cli_opt *opt) {
    return opt->value != NULL && strcmp(opt->value, "0") != 0;
}

/* The events options ('parsed' holds the numbers, already range-checked). */
static bool serve_events_config(const cli_opt *opts, const uint64_t *parsed, events_config_t *events) {
    events->enabled = !flag_set(&opts[OPT_NO_EVENTS]);
    events->amqp_url = opts[OPT_EVENTS_AMQP].value;
    events->amqp_exchange = opts[OPT_EVENTS_EXCHANGE].value;
    events->retention_s = parsed[OPT_EVENTS_RETENTION];
    if (parsed[OPT_EVENTS_RETRY_BASE] > 0) events->retry_base_ms = (uint32_t)parsed[OPT_EVENTS_RETRY_BASE];
    if (parsed[OPT_EVENTS_RETRY_MAX] > 0) events->retry_max_s = parsed[OPT_EVENTS_RETRY_MAX];
    if (parsed[OPT_EVENTS_DISABLE_AFTER] > 0) events->disable_after_s = parsed[OPT_EVENTS_DISABLE_AFTER];
    if (parsed[OPT_EVENTS_TIMEOUT] > 0) events->webhook_timeout_ms = (uint32_t)parsed[OPT_EVENTS_TIMEOUT];
    events->webhook_private_ok = flag_set(&opts[OPT_WEBHOOK_PRIVATE_OK]);
    if (events->amqp_url != NULL && events_amqp_url_check(events->amqp_url) != PC_OK) {
        fprintf(stderr, "paycore serve: bad --events-amqp: want amqp://user:pass@host:port/vhost\n");
        return false;
    }
    if (events->amqp_exchange == NULL || events->amqp_exchange[0] == '\0' || strlen(events->amqp_exchange) > 127) {
        fprintf(stderr, "paycore serve: bad --events-amqp-exchange\n");
        return false;
    }
    return true;
}

/* A standby waits for the writer's lock until SIGTERM or SIGINT arrives (blocked in
 * every thread: pending until serve_wait would take it). */
static bool serve_standby_continue(void *ctx) {
    (void)ctx;
    sigset_t pending;
    if (sigpending(&pending) != 0) return true;
    return !sigismember(&pending, SIGTERM) && !sigismember(&pending, SIGINT);
}

/* What serve's options say, checked before anything opens. */
typedef struct {
    api_config_t api;
    obs_level level;
    api_payments_options_t payments; /* the durations (0: the default) and paths */
} serve_config_t;

/* Whole units from 1 to 'max', digits only (k, m and g are byte sizes elsewhere: a
 * duration of "1m" would read as 1,048,576 ms). */
static bool duration_parse(const char *text, uint64_t max, uint64_t *out) {
    size_t digits = strspn(text, "0123456789");
    if (digits == 0 || digits > 19 || text[digits] != '\0') return false;
    *out = strtoull(text, NULL, 10);
    return *out >= 1 && *out <= max;
}

/* Checked before anything is opened: a bad one is refused with one line, nothing changed. */
static bool serve_payments_config(const cli_opt *opts, const api_config_t *config, api_payments_options_t *out) {
    *out = (api_payments_options_t){.db_path = config->db_path, .vault_key_path = opts[OPT_VAULT_KEY].value,
                                    .three_ds_prefixes = opts[OPT_THREE_DS].value};
    const struct { int opt; uint64_t max; uint32_t *value; } durations[] = {
        {OPT_AUTH_WINDOW, LEDGER_TIMEOUT_S_MAX, &out->authorization_window_s},
        {OPT_RECOVERY_MS, 3600000, &out->recovery_interval_ms},
        {OPT_RECOVERY_GRACE_MS, 3600000, &out->recovery_grace_ms},
        {OPT_BANK_INQUIRY_MS, PAY_BANK_INQUIRY_MS_MAX, &out->bank_inquiry_ms}};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        const cli_opt *opt = &opts[durations[i].opt];
        uint64_t value = 0;
        if (opt->value != NULL && !duration_parse(opt->value, durations[i].max, &value)) {
            fprintf(stderr, "paycore serve: bad --%s '%s' (a whole number from 1 to %llu)\n", opt->name, opt->value,
                    (unsigned long long)durations[i].max);
            return false;
        }
        *durations[i].value = (uint32_t)value;
    }
    return true;
}

/* Fills 'serve' from the options; false after printing the bad one. */
static bool serve_config(const cli_opt *opts, serve_config_t *serve) {
    api_config_t *config = &serve->api;
    uint64_t value;
    api_config_default(config);
    config->listen = opts[OPT_LISTEN].value;
    config->db_path = opts[OPT_DB].value;
    config->store_url = opts[OPT_STORE].value;
    config->store_standby = flag_set(&opts[OPT_STANDBY]);
    config->store_standby_continue = serve_standby_continue;
    if (config->store_standby && config->store_url == NULL && opts[OPT_SHARDS].value == NULL) {
        fprintf(stderr, "paycore serve: --standby needs --store URL or --shards (a SQLite file has one writer by its lock file)\n");
        return false;
    }
    if (flag_set(&opts[OPT_HTTP_ENGINE]) && flag_set(&opts[OPT_HTTP_MHD])) {
        fprintf(stderr, "paycore serve: --http-engine and --http-mhd name two servers: give one\n");
        return false;
    }
    config->http_engine = !flag_set(&opts[OPT_HTTP_MHD]);
    static cli_shards_t shards;
    config->advertise = opts[OPT_ADVERTISE].value;
    config->standby_reads_forwarded = flag_set(&opts[OPT_STANDBY_FORWARD_READS]);
    if (config->advertise != NULL && opts[OPT_SHARDS].value == NULL) {
        fprintf(stderr, "paycore serve: --advertise is for the nodes of a set of shards (--shards)\n");
        return false;
    }
    char why[400];
    if (config->advertise != NULL && !api_forward_address_check(config->advertise, why, sizeof why)) {
        fprintf(stderr, "paycore serve: bad --advertise: %s\n", why);
        return false;
    }
    if (opts[OPT_SHARDS].value != NULL) {
        if (config->store_url != NULL) {
            fprintf(stderr, "paycore serve: --shards replaces --store\n");
            return false;
        }
        if (!cli_shards_parse("serve", opts[OPT_SHARDS].value, &shards)) return false;
        config->shard_urls = shards.urls;
        config->shard_count = shards.count;
    }
    if (config->store_url != NULL && !store_location_is_url(config->store_url)) {
        fprintf(stderr, "paycore serve: --store wants a postgres:// URL (a SQLite file is --db FILE)\n");
        return false;
    }
    struct { int opt; uint64_t max; } numbers[] = {
        {OPT_THREADS, 256}, {OPT_BODY_MAX, 1ull << 30}, {OPT_QUEUE_MAX, WRITER_QUEUE_DEPTH_MAX},
        {OPT_RATE, 10000000}, {OPT_BURST, 10000000}, {OPT_TIMEOUT, 3600},
        {OPT_REQUEST_TIMEOUT, 3600000}, {OPT_PER_IP, API_CONNECTIONS_MAX},
        {OPT_IDEM_RETENTION, 24 * 366 * 10}, {OPT_IDEM_MAX, 1ull << 40}, {OPT_IDEM_KEY_MAX, 1ull << 40},
        {OPT_IDEM_INDEX_MAX, API_IDEM_INDEX_KEYS_MAX},
        {OPT_EVENTS_RETENTION, 100ull * 365 * 24 * 3600},
        {OPT_EVENTS_RETRY_BASE, 3600000}, {OPT_EVENTS_RETRY_MAX, 365ull * 24 * 3600},
        {OPT_EVENTS_DISABLE_AFTER, 365ull * 24 * 3600}, {OPT_EVENTS_TIMEOUT, 600000},
        {OPT_STORE_WAIT, STORE_WRITABLE_WAIT_S_MAX}};
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
    config->store_writable_wait_ms = (uint32_t)parsed[OPT_STORE_WAIT] * 1000u;
    config->connections_per_ip_max = (uint32_t)parsed[OPT_PER_IP];
    if (parsed[OPT_IDEM_RETENTION] < API_IDEM_RETENTION_H_MIN) {
        fprintf(stderr, "paycore serve: --idempotency-retention-h must be at least %d (hours)\n",
                API_IDEM_RETENTION_H_MIN);
        return false;
    }
    config->idempotency_retention_h = (uint32_t)parsed[OPT_IDEM_RETENTION];
    config->idempotency_bytes_max = parsed[OPT_IDEM_MAX];
    config->idempotency_key_bytes_max = parsed[OPT_IDEM_KEY_MAX];
    if (parsed[OPT_IDEM_INDEX_MAX] > 0) config->idempotency_index_keys_max = parsed[OPT_IDEM_INDEX_MAX];
    config->metrics_auth = opts[OPT_METRICS_AUTH].value != NULL && strcmp(opts[OPT_METRICS_AUTH].value, "0") != 0;
    if (!serve_events_config(opts, parsed, &config->events)) return false;
    if (!serve_payments_config(opts, config, &serve->payments)) return false;
    if (!obs_log_level_parse(opts[OPT_LOG_LEVEL].value, &serve->level)) {
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

/* The part of a start that may fail after the database was opened: risk (its files),
 * the demo's simulators (--demo), the gateway, payments, then serving. */
static pc_status serve_start_after_open(api_server_t *server, const serve_config_t *serve, const cli_opt *opts,
                                        sim_demo_t *demo) {
    const api_config_t *config = &serve->api;
    api_risk_options_t risk = {config->db_path, opts[OPT_RISK_MODEL].value, opts[OPT_RISK_RULES].value,
                               opts[OPT_RISK_RULES_ONLY].value != NULL && strcmp(opts[OPT_RISK_RULES_ONLY].value, "0") != 0,
                               opts[OPT_RISK_REVIEW].value, opts[OPT_RISK_DECLINE].value};
    pc_status status = api_risk_start(&risk);
    if (status != PC_OK) return status;
    bool demo_wanted = opts[OPT_DEMO].value != NULL && strcmp(opts[OPT_DEMO].value, "0") != 0;
    if (demo_wanted && !serve_demo_start(config->db_path, demo)) status = PC_IO;
    if (status == PC_OK) status = serve_gateway_start(server, config, opts, demo);
    if (status == PC_OK) status = api_payments_start(server, &serve->payments); /* checked by serve_config */
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
static pc_status serve_start(serve_config_t *serve, const cli_opt *opts, api_server_t **out, sim_demo_t *demo) {
    api_server_t *server = NULL;
    pc_status status = api_server_open(&server, &serve->api);
    if (status == PC_OK) {
        status = serve_start_after_open(server, serve, opts, demo);
        if (status != PC_OK) api_server_stop(server);
    }
    if (status == PC_SHUTTING_DOWN) { /* SIGTERM or SIGINT during the start: nothing failed */
        obs_logf(OBS_LEVEL_INFO, "stopped before serving: a stop was asked during the start");
        return status;
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
    serve_config_t serve;
    api_config_t *config = &serve.api;
    if (!cli_args_parse("serve", argc, argv, opts, OPT_COUNT, &rest) || rest.positional_count > 0 ||
        !serve_config(opts, &serve)) {
        return 2;
    }
    uint64_t verify_interval_s = 0;
    if (!cli_parse_u64(opts[OPT_VERIFY_INTERVAL].value, &verify_interval_s) || verify_interval_s > 30u * 86400u) {
        fprintf(stderr, "paycore serve: bad --verify-interval-s '%s' (0..2592000)\n", opts[OPT_VERIFY_INTERVAL].value);
        return 2;
    }
    if (opts[OPT_ROUTES].value != NULL) {
        api_routes_print(stdout);
        return 0;
    }
    if (!obs_log_open(opts[OPT_LOG_FILE].value, serve.level)) {
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
    config->writer_failed = serve_writer_failed;
    sim_demo_t demo = {0};
    if (api_ops_web_load(opts[OPT_WEB_DIR].value) != PC_OK) {
        obs_log_close();
        return 1;
    }
    api_server_t *server = NULL;
    pc_status started = serve_start(&serve, opts, &server, &demo);
    if (started != PC_OK) {
        api_ops_web_free();
        obs_log_close();
        return started == PC_SHUTTING_DOWN ? 0 : 1; /* a standby stopped while it waited */
    }
    api_ops_options_t ops = {config->db_path, (uint32_t)verify_interval_s};
    if (api_ops_start(server, &ops) != PC_OK) {
        api_server_stop(server);
        api_ops_web_free();
        api_gateway_stop();
        api_risk_stop();
        sim_demo_stop(&demo);
        obs_log_close();
        return 1;
    }
    char fields[160];
    /* the listen address was parsed as IPv4 host:port: safe inside a JSON string */
    snprintf(fields, sizeof fields, "\"listen\":\"%.60s\",\"port\":%u", config->listen,
             (unsigned)api_server_port(server));
    obs_log_notice("listening", fields);
    serve_wait(&signals);
    api_ops_stop();
    pc_status failed = api_server_failed(server);
    api_payments_quiesce(); /* running payments end first: they still write */
    api_server_stop(server); /* frees the payments layer once no request runs (hook) */
    api_ops_web_free(); /* no request reads the dashboard's files any more */
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
