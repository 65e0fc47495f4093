/* api/ops_verify.c: the journal verification state an operator watches. Every
 * verification the server runs (POST /v1/verify, and every --verify-interval-s on a
 * thread of its own) records its outcome here; /v1/stats shows it and /metrics exports
 * it (paycore_journal_verify_*), which the JournalVerificationFailed alert reads.
 * A verification reads one consistent snapshot on its own read-only connection: the
 * writer keeps committing meanwhile. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "api/api_ops.h"
#include "core/core.h"
#include "obs/obs.h"

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    api_ops_verify_state_t state;
    bool stop;
    bool started;
    pthread_t thread;
    char *location;    /* the store: a SQLite file or a postgres:// URL */
    char *db_path;     /* the node's files: <db_path>.key.pub */
} verifier = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

void api_ops_verify_record(pc_status status, const journal_report_t *report, uint64_t duration_ns) {
    bool ok = status == PC_OK && report->ok;
    pthread_mutex_lock(&verifier.mutex);
    api_ops_verify_state_t *state = &verifier.state;
    state->known = true;
    state->ok = ok;
    state->status = status;
    state->at_s = pc_wall_ns() / 1000000000ull;
    state->duration_ms = duration_ns / 1000000u;
    state->report = *report;
    if (ok) {
        state->runs_ok++;
        state->last_ok_at_s = state->at_s;
    } else if (status == PC_JOURNAL_MISMATCH) {
        state->runs_failed++;
    } else {
        state->runs_error++;
    }
    pthread_mutex_unlock(&verifier.mutex);
}

void api_ops_verify_state(api_ops_verify_state_t *out) {
    pthread_mutex_lock(&verifier.mutex);
    *out = verifier.state;
    pthread_mutex_unlock(&verifier.mutex);
}

/* One verification of the server's own store, against its own public key. */
static void verify_once(const char *location, const char *db_path) {
    char pubkey_path[4096];
    snprintf(pubkey_path, sizeof pubkey_path, "%s.key.pub", db_path);
    journal_report_t *report = calloc(1, sizeof(*report));
    if (report == NULL) return;
    uint64_t start_ns = pc_mono_ns();
    pc_status status = store_verify(location, access(pubkey_path, R_OK) == 0 ? pubkey_path : NULL, report);
    api_ops_verify_record(status, report, pc_mono_ns() - start_ns);
    char line[2 * JOURNAL_REPORT_TEXT_BYTES];
    if (status == PC_OK || status == PC_JOURNAL_MISMATCH) journal_report_line(report, line, sizeof line);
    else snprintf(line, sizeof line, "verify error: %s: %s", pc_status_code(status), report->error_detail);
    obs_logf(status == PC_OK ? OBS_LEVEL_INFO : OBS_LEVEL_ERROR, "periodic %s", line);
    free(report);
}

static void *verifier_run(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-verify"); /* per-thread CPU in top, perf */
    (void)arg;
    pthread_mutex_lock(&verifier.mutex);
    while (!verifier.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += verifier.state.interval_s;
        int waited = 0;
        while (!verifier.stop && waited != ETIMEDOUT) {
            waited = pthread_cond_timedwait(&verifier.wake, &verifier.mutex, &until);
        }
        if (verifier.stop) break;
        verifier.state.running = true;
        pthread_mutex_unlock(&verifier.mutex);
        verify_once(verifier.location, verifier.db_path);
        pthread_mutex_lock(&verifier.mutex);
        verifier.state.running = false;
    }
    pthread_mutex_unlock(&verifier.mutex);
    return NULL;
}

pc_status api_ops_verify_start(const char *location, const char *db_path, uint32_t interval_s) {
    pthread_mutex_lock(&verifier.mutex);
    memset(&verifier.state, 0, sizeof verifier.state);
    verifier.state.interval_s = interval_s;
    verifier.stop = false;
    pthread_mutex_unlock(&verifier.mutex);
    if (interval_s == 0) return PC_OK;
    verifier.location = pc_strdup(location);
    verifier.db_path = pc_strdup(db_path);
    if (verifier.location == NULL || verifier.db_path == NULL) return PC_NO_MEMORY;
    if (pthread_create(&verifier.thread, NULL, verifier_run, NULL) != 0) return PC_INTERNAL;
    verifier.started = true;
    return PC_OK;
}

void api_ops_verify_stop(void) {
    if (verifier.started) {
        pthread_mutex_lock(&verifier.mutex);
        verifier.stop = true;
        pthread_cond_signal(&verifier.wake);
        pthread_mutex_unlock(&verifier.mutex);
        pthread_join(verifier.thread, NULL); /* a verification in progress finishes first */
        verifier.started = false;
    }
    free(verifier.location);
    free(verifier.db_path);
    verifier.location = verifier.db_path = NULL;
}

/* ---------------------------------------------------------------- metrics */

/* The operations metrics are a few fixed lines: rendered into one block, appended once. */
#define OPS_METRICS_BYTES_MAX 2048

static int render_metrics(char *out, size_t room, const api_ops_verify_state_t *s, uint32_t queue_max) {
    int n = snprintf(out, room,
        "# HELP paycore_writer_queue_capacity Events the writer queue holds before answering 503 "
        "writer_queue_full (--queue-max).\n"
        "# TYPE paycore_writer_queue_capacity gauge\npaycore_writer_queue_capacity %u\n"
        "# HELP paycore_journal_verify_runs_total Journal verifications by result: ok, failed (a "
        "discrepancy), error (could not run).\n"
        "# TYPE paycore_journal_verify_runs_total counter\n"
        "paycore_journal_verify_runs_total{result=\"ok\"} %llu\n"
        "paycore_journal_verify_runs_total{result=\"failed\"} %llu\n"
        "paycore_journal_verify_runs_total{result=\"error\"} %llu\n"
        "# HELP paycore_journal_verify_interval_seconds Seconds between periodic verifications (0: "
        "only on request).\n"
        "# TYPE paycore_journal_verify_interval_seconds gauge\npaycore_journal_verify_interval_seconds %u\n",
        queue_max, (unsigned long long)s->runs_ok, (unsigned long long)s->runs_failed,
        (unsigned long long)s->runs_error, s->interval_s);
    if (!s->known || n < 0 || (size_t)n >= room) return n; /* none ran yet: no "last" figures */
    return n + snprintf(out + n, room - (size_t)n,
        "# HELP paycore_journal_verify_last_ok 1 when the last verification passed, 0 when it failed "
        "or could not run.\n"
        "# TYPE paycore_journal_verify_last_ok gauge\npaycore_journal_verify_last_ok %d\n"
        "# HELP paycore_journal_verify_last_run_timestamp_seconds When the last verification finished.\n"
        "# TYPE paycore_journal_verify_last_run_timestamp_seconds gauge\n"
        "paycore_journal_verify_last_run_timestamp_seconds %llu\n",
        s->ok ? 1 : 0, (unsigned long long)s->at_s);
}

char *api_ops_metrics_append(char *text, size_t *bytes, const api_server_t *server) {
    if (text == NULL) return NULL;
    api_ops_verify_state_t state;
    api_ops_verify_state(&state);
    char block[OPS_METRICS_BYTES_MAX];
    int n = render_metrics(block, sizeof block, &state, server->config.queue_events_max);
    PC_ASSERT(n > 0 && (size_t)n < sizeof block);
    char *grown = realloc(text, *bytes + (size_t)n + 1);
    if (grown == NULL) return text; /* as api_risk_metrics_append: the text so far */
    memcpy(grown + *bytes, block, (size_t)n + 1);
    *bytes += (size_t)n;
    return grown;
}
