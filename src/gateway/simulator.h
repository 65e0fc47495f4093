/* gateway/simulator.h: the channel simulators (card, wallet, bank), each an HTTP/JSON
 * server speaking the protocol of docs/channels.md, with its own SQLite record of
 * everything it accepted (the outside truth paycore is tested and reconciled against).
 * `paycore simulator <kind>` runs one in its own process; sim_demo_start() starts the
 * three as child processes for `paycore serve --demo`.
 * The simulators know nothing of paycore's ledger, store or API: they are the outside. */
#ifndef PAYCORE_GATEWAY_SIMULATOR_H
#define PAYCORE_GATEWAY_SIMULATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "paycore/status.h"

typedef enum {
    SIM_KIND_CARD = 0,
    SIM_KIND_WALLET = 1,
    SIM_KIND_BANK = 2,
} sim_kind;

#define SIM_KIND_COUNT 3

/* "card", "wallet", "bank". */
const char *sim_kind_name(sim_kind kind);
/* false when 'name' is not a kind. */
bool sim_kind_parse(const char *name, sim_kind *out);

typedef struct {
    sim_kind kind;
    const char *listen;          /* "127.0.0.1:0": port 0 picks a free port */
    const char *db_path;         /* the record; created mode 0600 */
    const char *config_path;     /* JSON config or NULL */
    const char *data_path;       /* cardholders / accounts or NULL */
    const char *report_dir;      /* settlement CSVs; NULL: the db's directory */
    const char *api_key;         /* overrides the config's; NULL keeps it */
    const char *callback_secret; /* bank: overrides the config's */
    bool seed_set;               /* true: 'seed' overrides the config's */
    uint64_t seed;
    bool http_mhd;               /* serve on libmicrohttpd (sim_loop.c), not paycore's HTTP engine (src/http) */
} sim_options_t;

typedef struct sim sim_t;

/* Loads the config and data, opens the record, starts the listener and the worker
 * thread. On failure returns an error and writes why into 'error' (for the operator:
 * a config's line number, an SQLite message); nothing is left running. */
pc_status sim_start(const sim_options_t *options, sim_t **out, char *error, size_t error_bytes)
    __attribute__((warn_unused_result));
uint16_t sim_port(const sim_t *sim);
/* Stops accepting, releases requests held by simulated timeouts, waits for the
 * rest, stops the worker, closes the record. NULL is a no-op. */
void sim_stop(sim_t *sim);

/* ---- the demo: three simulator child processes ---- */

typedef struct {
    pid_t pid;            /* 0: not running */
    uint16_t port;
    char url[64];         /* "http://127.0.0.1:PORT" */
} sim_child_t;

typedef struct {
    sim_child_t children[SIM_KIND_COUNT]; /* indexed by sim_kind */
    char callback_secret[65];             /* bank callbacks are signed with it */
} sim_demo_t;

/* Starts `<paycore_bin> simulator <kind>` for the three kinds on free loopback ports,
 * records under 'dir' (created 0700 when missing), and waits until each has printed
 * its listening= line. On failure stops any that started. */
pc_status sim_demo_start(const char *paycore_bin, const char *dir, sim_demo_t *demo,
                         char *error, size_t error_bytes) __attribute__((warn_unused_result));
/* SIGTERM to each child, then waits for it. */
void sim_demo_stop(sim_demo_t *demo);

#endif
