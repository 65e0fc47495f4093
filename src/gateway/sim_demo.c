/* gateway/sim_demo.c: the three simulators of the demo as child processes of
 * `paycore serve --demo`, each on a free loopback port with its own listener and
 * record. A child learns its port by binding port 0 and says it on stdout
 * (listening=HOST:PORT); it dies with its parent (PR_SET_PDEATHSIG), so a killed
 * server leaves no simulator behind. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gateway/simulator.h"
#include "obs/obs.h"
#include "paycore/limits.h"

extern char **environ;

/* environ plus PAYCORE_SIM_CALLBACK_SECRET (kept out of argv: ps shows argv), into
 * 'env' (SIM_DEMO_ENV_MAX + 2 slots). */
static void child_env(char **env, const char *secret, char *secret_entry, size_t entry_bytes) {
    size_t count = 0;
    for (char **e = environ; *e != NULL && count < SIM_DEMO_ENV_MAX; e++) {
        if (strncmp(*e, "PAYCORE_SIM_", 12) != 0) env[count++] = *e;
    }
    snprintf(secret_entry, entry_bytes, "PAYCORE_SIM_CALLBACK_SECRET=%s", secret);
    env[count++] = secret_entry;
    env[count] = NULL;
}

/* In the child (async-signal-safe calls only): unblock what the server blocked, die
 * with the parent (unless it died already), exec. */
static void child_exec(const char *bin, char *const argv[], char *const envp[], int out_fd, pid_t parent) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(0);
    if (dup2(out_fd, STDOUT_FILENO) < 0) _exit(127);
    execve(bin, argv, envp);
    _exit(127);
}

/* Reads the child's "listening=HOST:PORT" line; 0 on timeout or a bad line. */
static uint16_t read_port(int fd, pid_t pid) {
    char line[128];
    size_t bytes = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited_ms >= SIM_DEMO_START_MS) return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, (int)(SIM_DEMO_START_MS - waited_ms));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return 0;
        ssize_t n = read(fd, line + bytes, sizeof line - 1 - bytes);
        if (n <= 0 || waitpid(pid, NULL, WNOHANG) == pid) return 0;
        bytes += (size_t)n;
        line[bytes] = '\0';
        char *newline = strchr(line, '\n');
        if (newline == NULL && bytes < sizeof line - 1) continue;
        const char *colon = strrchr(line, ':');
        if (strncmp(line, "listening=", 10) != 0 || colon == NULL) return 0;
        unsigned long port = strtoul(colon + 1, NULL, 10);
        return port > 0 && port <= 65535 ? (uint16_t)port : 0;
    }
}

/* Forks and execs one simulator; '*out_fd' reads its stdout. */
static bool child_spawn(const char *bin, const char *dir, sim_kind kind, char *const envp[], sim_child_t *child,
                        int *out_fd) {
    char db[1200], kind_name[16];
    snprintf(db, sizeof db, "%s/sim-%s.db", dir, sim_kind_name(kind));
    snprintf(kind_name, sizeof kind_name, "%s", sim_kind_name(kind));
    char *argv[] = {(char *)bin, "simulator", kind_name, "--listen", "127.0.0.1:0", "--db", db,
                    "--report-dir", (char *)dir, "--log-level", "warn", NULL};
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return false;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) child_exec(bin, argv, envp, pipe_fds[1], parent);
    close(pipe_fds[1]);
    if (pid < 0) {
        close(pipe_fds[0]);
        return false;
    }
    child->pid = pid;
    *out_fd = pipe_fds[0];
    return true;
}

/* Starts the three at once (each creates its record: slow on a busy disk), then
 * reads their ports. */
static bool children_start(const char *bin, const char *dir, char *const envp[], sim_demo_t *demo,
                           char *error, size_t error_bytes) {
    int fds[SIM_KIND_COUNT] = {-1, -1, -1};
    bool ok = true;
    for (int kind = 0; kind < SIM_KIND_COUNT && ok; kind++) {
        ok = child_spawn(bin, dir, (sim_kind)kind, envp, &demo->children[kind], &fds[kind]);
        if (!ok) snprintf(error, error_bytes, "cannot start the %s simulator: %s", sim_kind_name((sim_kind)kind), strerror(errno));
    }
    for (int kind = 0; kind < SIM_KIND_COUNT; kind++) {
        if (fds[kind] < 0) continue;
        sim_child_t *child = &demo->children[kind];
        if (ok) child->port = read_port(fds[kind], child->pid);
        close(fds[kind]); /* the child never writes to stdout again */
        snprintf(child->url, sizeof child->url, "http://127.0.0.1:%u", (unsigned)child->port);
        if (ok && child->port == 0) {
            snprintf(error, error_bytes, "the %s simulator did not start (%s)", sim_kind_name((sim_kind)kind), bin);
            ok = false;
        }
    }
    return ok;
}

pc_status sim_demo_start(const char *paycore_bin, const char *dir, sim_demo_t *demo, char *error,
                         size_t error_bytes) {
    memset(demo, 0, sizeof(*demo));
    if (sodium_init() < 0) return PC_INTERNAL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(error, error_bytes, "cannot create %s: %s", dir, strerror(errno));
        return PC_IO;
    }
    unsigned char secret[32];
    randombytes_buf(secret, sizeof secret);
    sodium_bin2hex(demo->callback_secret, sizeof demo->callback_secret, secret, sizeof secret);
    char secret_entry[128];
    char **envp = calloc(SIM_DEMO_ENV_MAX + 2, sizeof(char *));
    if (envp == NULL) return PC_NO_MEMORY;
    child_env(envp, demo->callback_secret, secret_entry, sizeof secret_entry);
    if (!children_start(paycore_bin, dir, envp, demo, error, error_bytes)) {
        sim_demo_stop(demo);
        sodium_memzero(secret_entry, sizeof secret_entry);
        free(envp);
        return PC_IO;
    }
    sodium_memzero(secret_entry, sizeof secret_entry);
    free(envp);
    return PC_OK;
}

/* Waits up to SIM_DEMO_STOP_MS for the child, then kills it. */
static void child_reap(sim_child_t *child) {
    for (int waited_ms = 0; waited_ms < SIM_DEMO_STOP_MS; waited_ms += 10) {
        pid_t done = waitpid(child->pid, NULL, WNOHANG);
        if (done == child->pid || (done < 0 && errno == ECHILD)) {
            child->pid = 0;
            return;
        }
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    obs_logf(OBS_LEVEL_WARN, "simulator %d did not stop: killed", (int)child->pid);
    kill(child->pid, SIGKILL);
    waitpid(child->pid, NULL, 0);
    child->pid = 0;
}

void sim_demo_stop(sim_demo_t *demo) {
    for (int kind = 0; kind < SIM_KIND_COUNT; kind++) {
        if (demo->children[kind].pid > 0) kill(demo->children[kind].pid, SIGTERM);
    }
    for (int kind = 0; kind < SIM_KIND_COUNT; kind++) {
        if (demo->children[kind].pid > 0) child_reap(&demo->children[kind]);
    }
}
