/* cli/serve_demo.c: see serve_demo.h. The simulators run this same binary
 * (/proc/self/exe) as `paycore simulator <kind>`. */
#include "cli/serve_demo.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "obs/obs.h"

bool serve_demo_start(const char *db_path, sim_demo_t *demo) {
    char self[PATH_MAX], dir[PATH_MAX], error[512] = "";
    ssize_t bytes = readlink("/proc/self/exe", self, sizeof self - 1);
    if (bytes <= 0) {
        obs_log(OBS_LEVEL_ERROR, "demo: cannot find the paycore binary (/proc/self/exe)", NULL);
        return false;
    }
    self[bytes] = '\0';
    snprintf(dir, sizeof dir, "%s.sims", db_path);
    if (sim_demo_start(self, dir, demo, error, sizeof error) != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "demo: %s", error);
        return false;
    }
    for (int kind = 0; kind < SIM_KIND_COUNT; kind++) {
        char fields[192];
        snprintf(fields, sizeof fields, "\"channel\":\"%s\",\"url\":\"%s\",\"pid\":%d", sim_kind_name((sim_kind)kind),
                 demo->children[kind].url, (int)demo->children[kind].pid);
        obs_log_notice("demo simulator", fields);
    }
    return true;
}
