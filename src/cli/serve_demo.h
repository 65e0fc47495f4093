/* cli/serve_demo.h: `paycore serve --demo`: the three channel simulators beside the
 * server, as child processes on free loopback ports; sim_demo_stop() stops them. */
#ifndef PAYCORE_CLI_SERVE_DEMO_H
#define PAYCORE_CLI_SERVE_DEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/simulator.h"

/* Starts the simulators with their records in "<db_path>.sims/" and logs each one's
 * channel, URL and pid. False (after logging why) when one did not start. */
bool serve_demo_start(const char *db_path, sim_demo_t *demo);
/* Writes the demo's channels file ("<db_path>.sims/channels.json") naming the three
 * simulators, the bank's callbacks going to this server on 'port'; false after
 * logging why. */
bool serve_demo_channels(const char *db_path, const sim_demo_t *demo, uint16_t port, char *path_out,
                         size_t path_bytes);

#endif
