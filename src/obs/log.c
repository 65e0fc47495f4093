/* obs/log.c: JSON log lines. One mutex serializes whole lines so that threads never
 * interleave; the message is escaped by jansson. The file (when not stderr) is
 * reopened on request so that log rotation works with SIGHUP. */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "obs/obs.h"

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;           /* NULL: stderr */
static char *log_path;           /* owned; NULL for stderr */
static obs_level log_level_min = OBS_LEVEL_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool obs_log_level_parse(const char *name, obs_level *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (obs_level)i;
            return true;
        }
    }
    return false;
}

bool obs_log_open(const char *path, obs_level level_min) {
    pthread_mutex_lock(&log_mutex);
    log_level_min = level_min;
    bool ok = true;
    if (path != NULL) {
        FILE *file = fopen(path, "a");
        if (file == NULL) {
            ok = false;
        } else {
            setvbuf(file, NULL, _IOLBF, 0);
            log_file = file;
            free(log_path);
            log_path = pc_strdup(path);
        }
    }
    pthread_mutex_unlock(&log_mutex);
    return ok;
}

bool obs_log_reopen(void) {
    pthread_mutex_lock(&log_mutex);
    bool ok = true;
    if (log_path != NULL) {
        FILE *file = fopen(log_path, "a");
        if (file == NULL) {
            ok = false; /* keep writing to the old file rather than lose lines */
        } else {
            setvbuf(file, NULL, _IOLBF, 0);
            fclose(log_file);
            log_file = file;
        }
    }
    pthread_mutex_unlock(&log_mutex);
    return ok;
}

void obs_log_close(void) {
    pthread_mutex_lock(&log_mutex);
    if (log_file != NULL) fclose(log_file);
    log_file = NULL;
    free(log_path);
    log_path = NULL;
    pthread_mutex_unlock(&log_mutex);
}

bool obs_log_enabled(obs_level level) {
    return level >= log_level_min;
}

/* "2026-11-23T15:04:05.123456Z" */
static void log_time(char out[40]) {
    uint64_t now_ns = pc_wall_ns();
    time_t seconds = (time_t)(now_ns / 1000000000ull);
    struct tm tm_utc;
    gmtime_r(&seconds, &tm_utc);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm_utc);
    snprintf(out + n, 40 - n, ".%06uZ", (unsigned)((now_ns / 1000u) % 1000000u));
}

static void log_write(obs_level level, const char *msg, const char *fields_json) {
    char time_text[40];
    log_time(time_text);
    json_t *msg_json = json_string(msg != NULL ? msg : "");
    char *msg_text = msg_json ? json_dumps(msg_json, JSON_ENCODE_ANY) : NULL;
    json_decref(msg_json);
    pthread_mutex_lock(&log_mutex);
    FILE *out = log_file != NULL ? log_file : stderr;
    fprintf(out, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":%s%s%s}\n", time_text,
            level_names[level], msg_text ? msg_text : "\"\"",
            fields_json && fields_json[0] ? "," : "", fields_json ? fields_json : "");
    fflush(out);
    pthread_mutex_unlock(&log_mutex);
    free(msg_text);
}

void obs_log(obs_level level, const char *msg, const char *fields_json) {
    if (!obs_log_enabled(level)) return;
    log_write(level, msg, fields_json);
}

void obs_log_notice(const char *msg, const char *fields_json) {
    log_write(OBS_LEVEL_INFO, msg, fields_json);
}

void obs_logf(obs_level level, const char *format, ...) {
    if (!obs_log_enabled(level)) return;
    char text[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    log_write(level, text, NULL);
}

void obs_log_request(const char *request_id, const char *method, const char *route,
                     int http_status, const char *code, uint64_t latency_ns, const char *key_id) {
    obs_level level = http_status >= 500 ? OBS_LEVEL_WARN : OBS_LEVEL_INFO;
    if (!obs_log_enabled(level)) return;
    /* route patterns, methods, ids and codes are plain ASCII from our own tables or
     * validated ids: no escaping needed, and never a secret. */
    char fields[512];
    snprintf(fields, sizeof fields,
             "\"request_id\":\"%s\",\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,"
             "\"code\":\"%s\",\"latency_ms\":%.3f,\"key_id\":\"%s\"",
             request_id, method, route, http_status, code ? code : "",
             (double)latency_ns / 1e6, key_id ? key_id : "");
    log_write(level, "request", fields);
}
