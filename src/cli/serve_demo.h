/* cli/serve_demo.h: `paycore serve --demo`: the three channel simulators beside the
 * server, as child processes on free loopback ports; sim_demo_stop() stops them. */
#ifndef PAYCORE_CLI_SERVE_DEMO_H
#define PAYCORE_CLI_SERVE_DEMO_H

#include <stdbool.h>

#include "gateway/simulator.h"

/* Starts the simulators with their records in "<db_path>.sims/" and logs each one's
 * channel, URL and pid. False (after logging why) when one did not start. */
bool serve_demo_start(const char *db_path, sim_demo_t *demo);

#endif
