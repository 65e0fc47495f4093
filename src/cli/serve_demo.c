/* cli/serve_demo.c: see serve_demo.h. The simulators run this same binary
 * (/proc/self/exe) as `paycore simulator <kind>`. */
#include "cli/serve_demo.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gateway/gateway.h"
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

bool serve_demo_channels(const char *db_path, const sim_demo_t *demo, uint16_t port, char *path_out,
                         size_t path_bytes) {
    char paycore_url[64];
    snprintf(path_out, path_bytes, "%s.sims/channels.json", db_path);
    snprintf(paycore_url, sizeof paycore_url, "http://127.0.0.1:%u", (unsigned)port);
    pc_status status = gw_demo_config_write(path_out, demo->children[SIM_KIND_CARD].url,
                                            demo->children[SIM_KIND_WALLET].url,
                                            demo->children[SIM_KIND_BANK].url, demo->callback_secret,
                                            paycore_url);
    if (status != PC_OK) {
        obs_logf(OBS_LEVEL_ERROR, "demo: cannot write %s: %s", path_out, pc_status_code(status));
        return false;
    }
    return true;
}
