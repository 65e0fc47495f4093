/* bench/bench_scaleout.c: durable transfers per second on the PostgreSQL store, with
 * pgbench's TPC-B against the same PostgreSQL in the same run as the baseline,
 * interleaved (pgbench, paycore, pgbench, paycore ...). One line, ratio last:
 *   scaleout shards=1 cross_pct=0 mode=batch per_s=… baseline=pgbench_tpcb baseline_per_s=… ratio=…
 * paycore's figure: commands of 8189 transfers between random accounts through the
 * writer (one PostgreSQL transaction, COPY, per batch), four commands in flight so
 * that the writer's pipeline overlaps two batches (writer.c), over the wall time from
 * the first submit to the last commit; then the same writer one batch at a time
 * (writer_config_t.no_pipeline, a database of its own) in the same rounds:
 *   scaleout_pipeline shards=1 per_s=… one_at_a_time_per_s=… staged_pct=… ratio=…
 * and what that ratio is made of (the CPU and cores each side used: scaleout_ratio_parts,
 * below). pgbench: TPC-B (-c 8 -j 2, scale 8), the tps without connection time.
 * The cluster is a throwaway one (initdb in a temp dir, a Unix socket only, fsync on),
 * started and removed here; run as root, its commands run as the 'postgres' user.
 * Shards (the same cluster, one database a shard, shard.h): for 2 and 3 shards at 0,
 * 10 and 50 % cross-shard transfers, four commands of BENCH_BATCH transfers in flight
 * per shard, as the single store's figure keeps (each shard's writer runs its own and
 * pipelines two batches; the shards' load shape below); a command holding a transfer
 * across shards is one global transaction (two-phase commit; global transactions run
 * one at a time), so at 10 % every command is global:
 *   scaleout shards=N cross_pct=P mode=batch per_s=… baseline=pgbench_tpcb baseline_per_s=… ratio=…
 * The 0 % figures of 1, 2 and 3 shards run interleaved, with what each shard did and
 * the CPU a transfer cost (scaleout_scaling lines, "scaling with shards" below;
 * --scaling prints those alone, three rounds of 5 s); after each figure, what each
 * shard's writer committed and its backends' CPU (scaleout_shard_writer);
 * and the cost of one transfer across shards against a local one, 64 commands of one
 * transfer in flight (local ones share their shard's group commit, global ones run
 * one after another):
 *   scaleout_cross_cost shards=2 local_per_s=… cross_per_s=… ratio=…
 *   scaleout_cross_syncs shards=2 local_syncs_per_transfer=… cross_syncs_per_transfer=…
 * mode=http: `paycore serve --shards` (1, 2, 3 databases) driven by `paycore load`
 * (64 keep-alive connections, one transfer a POST, --cross-pct), its transfers_per_s,
 * with pgbench before each:
 *   scaleout shards=N cross_pct=P mode=http per_s=… baseline=pgbench_tpcb baseline_per_s=… ratio=…
 * shards=1 has no cross-shard transfers: only its cross_pct=0 lines. --quick prints
 * the shards=1 mode=batch lines only; --http the mode=http lines only, one 3 s round;
 * --cross the mode=batch lines at 10 and 50 % and scaleout_cross_cost only, one 5 s round.
 * After each scaleout line, the CPU each process used while paycore ran (so that the
 * scaling with shards can be read on a machine of few cores), and the per-shard figure:
 *   scaleout_cpu shards=N cross_pct=P mode=M process=paycore|loadgen|postgres cpu_ms=…
 *     wall_ms=… cores=… per_transfer_us=… (postgres: backends_cpu_ms=…)
 *   scaleout_shard shards=N cross_pct=P mode=M per_s=… per_shard_per_s=… cpu_per_transfer_us=…
 * Where the time goes (log_min_duration_statement): the COPY of a batch's transfers
 * (their timestamp key and id hash index) and of its accounts' rows (account_transfers,
 * schema v10), and the prefetch of its ids.
 * PAYCORE_BENCH_PG_OPTIONS adds server settings ("-c log_min_duration_statement=0"),
 * PAYCORE_BENCH_PG_LOG=FILE keeps the server's log.
 * --quick: one round of 3 s figures; --full: three rounds of 10 s. */
#include <dirent.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "shard/shard.h"
#include "store/store.h"
#include "store/store_shard.h"
#include "writer/writer.h"

#define BENCH_ACCOUNTS 10000
#define BENCH_BATCH 8189

static char pg_bin[256] = "/usr/lib/postgresql/15/bin";
static char cluster_dir[256];
static bool as_postgres;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Runs a PostgreSQL tool with 'args' (no shell metacharacters: temp paths, numbers). */
static int pg_tool(const char *tool, const char *args, char *output, size_t output_bytes) {
    char command[2048];
    snprintf(command, sizeof command, "%s%s/%s %s 2>&1", as_postgres ? "runuser -u postgres -- " : "", pg_bin,
             tool, args);
    FILE *pipe = popen(command, "r");
    if (pipe == NULL) return -1;
    size_t used = 0;
    if (output != NULL && output_bytes > 0) output[0] = '\0';
    char line[512];
    while (fgets(line, sizeof line, pipe) != NULL) {
        size_t length = strlen(line);
        if (output != NULL && used + length + 1 < output_bytes) {
            memcpy(output + used, line, length + 1);
            used += length;
        }
    }
    return pclose(pipe);
}

static bool cluster_start(void) {
    snprintf(cluster_dir, sizeof cluster_dir, "/tmp/paycore-bench-pg-XXXXXX");
    if (mkdtemp(cluster_dir) == NULL) return false;
    as_postgres = geteuid() == 0;
    if (as_postgres && system("id postgres >/dev/null 2>&1") != 0) return false;
    if (as_postgres) {
        char command[512];
        snprintf(command, sizeof command, "chown postgres %s", cluster_dir);
        if (system(command) != 0) return false;
    }
    char args[1024], output[4096];
    snprintf(args, sizeof args, "-D %s/data -A trust -U paycore --locale=C -E UTF8 --no-sync", cluster_dir);
    if (pg_tool("initdb", args, output, sizeof output) != 0) {
        fprintf(stderr, "bench_scaleout: initdb failed: %s\n", output);
        return false;
    }
    /* PAYCORE_BENCH_PG_OPTIONS: more server settings, e.g. "-c log_min_duration_statement=0" to see
     * where a batch's time goes (PAYCORE_BENCH_PG_LOG=FILE keeps the server's log) */
    const char *more = getenv("PAYCORE_BENCH_PG_OPTIONS");
    snprintf(args, sizeof args, "-D %s/data -l %s/server.log -w -t 120 -o \"-c listen_addresses='' -c"
             " unix_socket_directories='%s' -c fsync=on -c max_prepared_transactions=64 %s\" start", cluster_dir,
             cluster_dir, cluster_dir, more != NULL ? more : "");
    if (pg_tool("pg_ctl", args, output, sizeof output) != 0) {
        fprintf(stderr, "bench_scaleout: pg_ctl start failed: %s\n", output);
        return false;
    }
    snprintf(args, sizeof args, "-h %s -U paycore paycore", cluster_dir);
    int paycore_db = pg_tool("createdb", args, NULL, 0);
    snprintf(args, sizeof args, "-h %s -U paycore paycore_one", cluster_dir);
    if (pg_tool("createdb", args, NULL, 0) != 0) paycore_db = 1;
    for (int n = 1; n <= 3; n++) {
        for (int i = 0; i < n; i++) {
            snprintf(args, sizeof args, "-h %s -U paycore s%d_%d", cluster_dir, n, i);
            if (pg_tool("createdb", args, NULL, 0) != 0) return false;
            snprintf(args, sizeof args, "-h %s -U paycore h%d_%d", cluster_dir, n, i);
            if (pg_tool("createdb", args, NULL, 0) != 0) return false;
        }
    }
    snprintf(args, sizeof args, "-h %s -U paycore tpcb", cluster_dir);
    if (paycore_db != 0 || pg_tool("createdb", args, NULL, 0) != 0) return false;
    snprintf(args, sizeof args, "-h %s -U paycore -i -q -s 8 tpcb", cluster_dir);
    return pg_tool("pgbench", args, output, sizeof output) == 0;
}

static void cluster_stop(void) {
    char args[512], command[1200];
    snprintf(args, sizeof args, "-D %s/data -m fast -w stop", cluster_dir);
    (void)pg_tool("pg_ctl", args, NULL, 0);
    const char *keep_log = getenv("PAYCORE_BENCH_PG_LOG");
    if (keep_log != NULL) {
        snprintf(command, sizeof command, "cp %s/server.log '%s'", cluster_dir, keep_log);
        if (system(command) != 0) fprintf(stderr, "bench_scaleout: could not copy the server log\n");
    }
    snprintf(command, sizeof command, "rm -rf %s", cluster_dir);
    if (system(command) != 0) fprintf(stderr, "bench_scaleout: could not remove %s\n", cluster_dir);
}

/* pgbench TPC-B for 'seconds': its tps without the connection time, 0 on failure. */
static double pgbench_tps(int seconds) {
    char args[512], output[8192];
    snprintf(args, sizeof args, "-h %s -U paycore -n -c 8 -j 2 -T %d tpcb", cluster_dir, seconds);
    if (pg_tool("pgbench", args, output, sizeof output) != 0) {
        fprintf(stderr, "bench_scaleout: pgbench failed: %s\n", output);
        return 0;
    }
    const char *tps = strstr(output, "tps = ");
    return tps != NULL ? strtod(tps + 6, NULL) : 0;
}

static void account_id(char *out, size_t bytes, uint32_t i) { snprintf(out, bytes, "acct-%06u", i); }

/* ---- CPU each process used ----
 * paycore: in mode=batch the bench process's threads but the main one (the writers,
 * the coordinator), in mode=http the serve process; loadgen: the main thread (it
 * makes and submits the commands) or the paycore load process; postgres: the
 * postmaster and all its processes (backends, WAL writer, checkpointer; exited ones
 * through the postmaster's children time), with the live backends of paycore's
 * databases on their own (backends_cpu_ms). */

typedef struct {
    uint64_t wall_ns;
    uint64_t paycore_ns;
    uint64_t loadgen_ns;
    uint64_t postgres_ns;
    uint64_t backends_ns;   /* of postgres_ns: live connections to paycore's databases */
    uint64_t machine_ns;    /* every core's busy time, other work on the machine included */
} cpu_sample_t;

static pid_t serve_pid;     /* mode=http: the paycore serve process (0: mode=batch) */

static uint64_t clock_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Busy CPU of every core since boot (/proc/stat's first line: all but idle and iowait). */
static uint64_t machine_busy_ns(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    int got = f != NULL ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                                 &v[4], &v[5], &v[6], &v[7]) : 0;
    if (f != NULL) fclose(f);
    if (got < 5) return 0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return busy * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

/* utime + stime (+ cutime + cstime when 'children') of /proc/<pid>/stat, in ns; its
 * parent pid into *ppid. 0 when it is gone. */
static uint64_t proc_cpu_ns(pid_t pid, bool children, pid_t *ppid) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strrchr(text, ')'); /* the command may hold spaces */
    if (p == NULL) return 0;
    /* fields after the command: state ppid ... (utime is field 14 of the line) */
    unsigned long long v[15] = {0};
    int got = sscanf(p + 2, "%*c %llu %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &v[0], &v[1],
                     &v[2], &v[3], &v[4]);
    if (got != 5) return 0;
    if (ppid != NULL) *ppid = (pid_t)v[0];
    unsigned long long ticks = v[1] + v[2] + (children ? v[3] + v[4] : 0);
    return ticks * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

/* The start of /proc/<pid>/cmdline (a backend's title: "postgres: paycore <db> [local]
 * ..."); false when it is gone. */
static bool proc_cmdline(pid_t pid, char *text, size_t bytes) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    size_t n = fread(text, 1, bytes - 1, f);
    fclose(f);
    text[n] = '\0';
    return true;
}

/* Whether 'pid' is a backend of one of paycore's databases (not pgbench's). */
static bool paycore_backend(pid_t pid) {
    char text[256];
    return proc_cmdline(pid, text, sizeof text) && strncmp(text, "postgres: paycore ", 18) == 0 &&
           strncmp(text + 18, "tpcb ", 5) != 0;
}

static pid_t postmaster_pid(void) {
    char path[300];
    snprintf(path, sizeof path, "%s/data/postmaster.pid", cluster_dir);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f != NULL && fscanf(f, "%d", &pid) != 1) pid = 0;
    if (f != NULL) fclose(f);
    return (pid_t)pid;
}

static void postgres_cpu(cpu_sample_t *sample) {
    pid_t master = postmaster_pid();
    sample->postgres_ns = master > 0 ? proc_cpu_ns(master, true, NULL) : 0;
    DIR *proc = master > 0 ? opendir("/proc") : NULL;
    struct dirent *entry;
    while (proc != NULL && (entry = readdir(proc)) != NULL) {
        pid_t pid = (pid_t)atoi(entry->d_name), ppid = 0;
        if (pid <= 0) continue;
        uint64_t ns = proc_cpu_ns(pid, false, &ppid);
        if (ppid != master) continue;
        sample->postgres_ns += ns;
        if (paycore_backend(pid)) sample->backends_ns += ns;
    }
    if (proc != NULL) closedir(proc);
}

/* Call from the main thread (the load generator of mode=batch). */
static cpu_sample_t cpu_sample(void) {
    cpu_sample_t sample = {.wall_ns = pc_mono_ns()};
    if (serve_pid > 0) {
        struct rusage children;
        getrusage(RUSAGE_CHILDREN, &children); /* paycore load, once waited for */
        sample.paycore_ns = proc_cpu_ns(serve_pid, false, NULL);
        sample.loadgen_ns = (uint64_t)(children.ru_utime.tv_sec + children.ru_stime.tv_sec) * 1000000000u +
                            (uint64_t)(children.ru_utime.tv_usec + children.ru_stime.tv_usec) * 1000u;
    } else {
        sample.loadgen_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        sample.paycore_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - sample.loadgen_ns;
    }
    postgres_cpu(&sample);
    sample.machine_ns = machine_busy_ns();
    return sample;
}

/* Adds the CPU used since 'start' into 'sum' (rounds add up). */
static void cpu_add(cpu_sample_t *sum, const cpu_sample_t *start) {
    cpu_sample_t now = cpu_sample();
    sum->wall_ns += now.wall_ns - start->wall_ns;
    sum->paycore_ns += now.paycore_ns - start->paycore_ns;
    sum->loadgen_ns += now.loadgen_ns - start->loadgen_ns;
    sum->postgres_ns += now.postgres_ns - start->postgres_ns;
    sum->backends_ns += now.backends_ns - start->backends_ns;
    sum->machine_ns += now.machine_ns - start->machine_ns;
}

static void cpu_line(uint32_t shards, uint32_t cross_pct, const char *mode, const char *process, uint64_t cpu_ns,
                     const cpu_sample_t *sum, uint64_t transfers, const char *extra) {
    double wall_ms = (double)sum->wall_ns / 1e6, cpu_ms = (double)cpu_ns / 1e6;
    printf("scaleout_cpu shards=%u cross_pct=%u mode=%s process=%s cpu_ms=%.0f wall_ms=%.0f cores=%.2f"
           " per_transfer_us=%.2f%s\n", shards, cross_pct, mode, process, cpu_ms, wall_ms,
           wall_ms > 0 ? cpu_ms / wall_ms : 0, transfers > 0 ? cpu_ms * 1e3 / (double)transfers : 0, extra);
}

/* The scaleout_cpu lines of one figure, and the per-shard one:
 *   scaleout_cpu shards=N cross_pct=P mode=M process=paycore|loadgen|postgres cpu_ms=… wall_ms=…
 *     cores=… per_transfer_us=… [backends_cpu_ms=…]
 *   scaleout_shard shards=N cross_pct=P mode=M per_s=… per_shard_per_s=… cpu_per_transfer_us=… */
static void cpu_report(uint32_t shards, uint32_t cross_pct, const char *mode, const cpu_sample_t *sum,
                       uint64_t transfers, double per_s) {
    char backends[64];
    snprintf(backends, sizeof backends, " backends_cpu_ms=%.0f", (double)sum->backends_ns / 1e6);
    cpu_line(shards, cross_pct, mode, "paycore", sum->paycore_ns, sum, transfers, "");
    cpu_line(shards, cross_pct, mode, "loadgen", sum->loadgen_ns, sum, transfers, "");
    cpu_line(shards, cross_pct, mode, "postgres", sum->postgres_ns, sum, transfers, backends);
    uint64_t all_ns = sum->paycore_ns + sum->loadgen_ns + sum->postgres_ns;
    printf("scaleout_shard shards=%u cross_pct=%u mode=%s per_s=%.0f per_shard_per_s=%.0f cpu_per_transfer_us=%.2f\n",
           shards, cross_pct, mode, per_s, per_s / shards, transfers > 0 ? (double)all_ns / 1e3 / (double)transfers : 0);
}

/* ---- what the ratio is made of ----
 * pgbench TPC-B commits one transaction at a time per client: its tps follows the
 * disk's flush rate and needs little CPU; paycore's batches need the CPU, so on a
 * shared machine the ratio moves with the share of the cores paycore got (cores_used)
 * and with the flush rate, while the CPU a transfer costs moves far less. Both sides
 * measured in the same rounds (the baseline: postgres and the pgbench process):
 *   scaleout_ratio_parts shards=1 per_s=… cpu_per_transfer_us=… cores_used=… machine_cores_busy=…
 *     baseline_per_s=… baseline_cpu_per_txn_us=… baseline_cores_used=… baseline_machine_cores_busy=…
 *     cores=… ratio=… ratio_all_cores=…
 * ratio_all_cores: the ratio had paycore had every core for its CPU a transfer
 * (cores / cpu_per_transfer_us against the same baseline): what the CPU alone allows. */

typedef struct {
    uint64_t wall_ns;
    uint64_t cpu_ns;      /* postgres and pgbench */
    uint64_t machine_ns;
    uint64_t txns;
} baseline_sum_t;

static uint64_t children_cpu_ns(void) {
    struct rusage children;
    getrusage(RUSAGE_CHILDREN, &children);
    return (uint64_t)(children.ru_utime.tv_sec + children.ru_stime.tv_sec) * 1000000000u +
           (uint64_t)(children.ru_utime.tv_usec + children.ru_stime.tv_usec) * 1000u;
}

/* pgbench_tps(), with the CPU it and the server used added into 'sum'. */
static double pgbench_measured(int seconds, baseline_sum_t *sum) {
    cpu_sample_t start = {.wall_ns = pc_mono_ns()}, end = {0};
    postgres_cpu(&start);
    start.machine_ns = machine_busy_ns();
    uint64_t children_ns = children_cpu_ns();
    double tps = pgbench_tps(seconds);
    end.wall_ns = pc_mono_ns();
    postgres_cpu(&end);
    end.machine_ns = machine_busy_ns();
    sum->wall_ns += end.wall_ns - start.wall_ns;
    sum->cpu_ns += end.postgres_ns - start.postgres_ns + children_cpu_ns() - children_ns;
    sum->machine_ns += end.machine_ns - start.machine_ns;
    sum->txns += (uint64_t)(tps * seconds);
    return tps;
}

static void ratio_parts_print(double per_s, const cpu_sample_t *cpu, uint64_t transfers, double baseline_per_s,
                              const baseline_sum_t *baseline) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double cpu_us = transfers > 0 ? (double)(cpu->paycore_ns + cpu->loadgen_ns + cpu->postgres_ns) / 1e3 /
                                        (double)transfers : 0;
    double wall = cpu->wall_ns > 0 ? (double)cpu->wall_ns : 1, base_wall = baseline->wall_ns > 0 ? (double)baseline->wall_ns : 1;
    printf("scaleout_ratio_parts shards=1 per_s=%.0f cpu_per_transfer_us=%.2f cores_used=%.2f machine_cores_busy=%.2f"
           " baseline_per_s=%.0f baseline_cpu_per_txn_us=%.2f baseline_cores_used=%.2f baseline_machine_cores_busy=%.2f"
           " cores=%ld ratio=%.2f ratio_all_cores=%.2f\n", per_s, cpu_us,
           (double)(cpu->paycore_ns + cpu->loadgen_ns + cpu->postgres_ns) / wall, (double)cpu->machine_ns / wall,
           baseline_per_s, baseline->txns > 0 ? (double)baseline->cpu_ns / 1e3 / (double)baseline->txns : 0,
           (double)baseline->cpu_ns / base_wall, (double)baseline->machine_ns / base_wall, cores,
           baseline_per_s > 0 ? per_s / baseline_per_s : 0,
           baseline_per_s > 0 && cpu_us > 0 ? (double)cores * 1e6 / cpu_us / baseline_per_s : 0);
}

/* ---- WAL and waits while paycore ran ----
 * The WAL the cluster wrote, per transfer: what a transfer costs the disk (the commit's
 * fsync, new WAL segments): bytes exactly, from the WAL insert position; records and
 * full-page images from pg_stat_wal, which a backend updates when it goes idle for a
 * second or more (so each sample waits WAL_STATS_SETTLE_MS first, outside the timing):
 *   scaleout_wal shards=1 bytes_per_transfer=… records_per_transfer=… fpi_per_transfer=…
 * and, with PAYCORE_BENCH_WAITS set, what paycore's backends were doing (pg_stat_activity
 * sampled every 5 ms: on the CPU or waiting for it, waiting for a client's next rows, or
 * for a lock, I/O, the WAL), in percent, and each wait seen:
 *   scaleout_waits shards=1 samples=… cpu_pct=… client_pct=… io_pct=… lwlock_pct=… other_pct=…
 *   scaleout_wait shards=1 event=<type>:<event> pct=… */

typedef struct {
    int64_t bytes;
    int64_t records;
    int64_t fpi;
} wal_sample_t;

static PGconn *stats_conn(void) {
    char url[512];
    snprintf(url, sizeof url, "postgresql://paycore@/tpcb?host=%s", cluster_dir);
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

#define WAL_STATS_SETTLE_MS 1500

static wal_sample_t wal_sample(PGconn *conn) {
    wal_sample_t sample = {0};
    if (conn != NULL) usleep(WAL_STATS_SETTLE_MS * 1000);
    PGresult *result = conn != NULL ? PQexec(conn, "SELECT pg_current_wal_insert_lsn() - '0/0', wal_records, wal_fpi"
                                                   " FROM pg_stat_wal") : NULL;
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1) {
        sample.bytes = strtoll(PQgetvalue(result, 0, 0), NULL, 10);
        sample.records = strtoll(PQgetvalue(result, 0, 1), NULL, 10);
        sample.fpi = strtoll(PQgetvalue(result, 0, 2), NULL, 10);
    }
    PQclear(result);
    return sample;
}

static void wal_add(wal_sample_t *sum, const wal_sample_t *start, PGconn *conn) {
    wal_sample_t now = wal_sample(conn);
    sum->bytes += now.bytes - start->bytes;
    sum->records += now.records - start->records;
    sum->fpi += now.fpi - start->fpi;
}

static void wal_line(const wal_sample_t *sum, uint64_t transfers) {
    double n = transfers > 0 ? (double)transfers : 1;
    printf("scaleout_wal shards=1 bytes_per_transfer=%.0f records_per_transfer=%.2f fpi_per_transfer=%.3f\n",
           (double)sum->bytes / n, (double)sum->records / n, (double)sum->fpi / n);
}

enum { WAIT_CPU, WAIT_CLIENT, WAIT_IO, WAIT_LWLOCK, WAIT_OTHER, WAIT_KINDS };

typedef struct {
    pthread_t thread;
    _Atomic bool stop;
    uint64_t counts[WAIT_KINDS];
    char names[16][48];       /* the waits seen, "type:event", and how often */
    uint64_t name_counts[16];
} waits_t;

static void waits_name(waits_t *waits, const char *type, const char *event) {
    char name[48];
    snprintf(name, sizeof name, "%s:%s", type, event);
    for (int i = 0; i < 16; i++) {
        if (waits->names[i][0] == '\0') memcpy(waits->names[i], name, sizeof name);
        if (strcmp(waits->names[i], name) == 0) {
            waits->name_counts[i]++;
            return;
        }
    }
}

static void *waits_run(void *arg) {
    waits_t *waits = arg;
    PGconn *conn = stats_conn();
    while (conn != NULL && !waits->stop) {
        PGresult *result = PQexec(conn, "SELECT coalesce(wait_event_type, ''), coalesce(wait_event, '') FROM"
                                        " pg_stat_activity WHERE datname = 'paycore' AND state = 'active'");
        for (int row = 0; PQresultStatus(result) == PGRES_TUPLES_OK && row < PQntuples(result); row++) {
            const char *type = PQgetvalue(result, row, 0), *event = PQgetvalue(result, row, 1);
            int kind = type[0] == '\0' ? WAIT_CPU
                     : strcmp(type, "Client") == 0 || strcmp(event, "ClientRead") == 0 ? WAIT_CLIENT
                     : strcmp(type, "IO") == 0 ? WAIT_IO
                     : strcmp(type, "LWLock") == 0 ? WAIT_LWLOCK : WAIT_OTHER;
            waits->counts[kind]++;
            if (kind != WAIT_CPU) waits_name(waits, type, event);
        }
        PQclear(result);
        usleep(5000);
    }
    PQfinish(conn);
    return NULL;
}

static void waits_line(const waits_t *waits) {
    uint64_t all = 0;
    for (int k = 0; k < WAIT_KINDS; k++) all += waits->counts[k];
    double n = all > 0 ? (double)all / 100 : 1;
    printf("scaleout_waits shards=1 samples=%llu cpu_pct=%.0f client_pct=%.0f io_pct=%.0f lwlock_pct=%.0f"
           " other_pct=%.0f\n", (unsigned long long)all, (double)waits->counts[WAIT_CPU] / n,
           (double)waits->counts[WAIT_CLIENT] / n, (double)waits->counts[WAIT_IO] / n,
           (double)waits->counts[WAIT_LWLOCK] / n, (double)waits->counts[WAIT_OTHER] / n);
    for (int i = 0; i < 16 && waits->names[i][0] != '\0'; i++) {
        printf("scaleout_wait shards=1 event=%s pct=%.1f\n", waits->names[i], (double)waits->name_counts[i] / n);
    }
}

static void accounts_create(writer_t *writer) {
    static ledger_account_t accounts[BENCH_ACCOUNTS];
    static ledger_account_result_t results[BENCH_ACCOUNTS];
    for (uint32_t i = 0; i < BENCH_ACCOUNTS; i++) {
        memset(&accounts[i], 0, sizeof accounts[i]);
        account_id(accounts[i].id, sizeof accounts[i].id, i);
        memcpy(accounts[i].currency, "USD", 4);
        accounts[i].code = 1;
    }
    for (uint32_t first = 0; first < BENCH_ACCOUNTS; first += BENCH_BATCH) {
        uint32_t count = BENCH_ACCOUNTS - first < BENCH_BATCH ? BENCH_ACCOUNTS - first : BENCH_BATCH;
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count, .accounts = accounts + first,
                            .account_results = results + first};
        if (writer_submit_wait(writer, &cmd) != PC_OK) abort();
    }
}

/* Commands of BENCH_BATCH transfers kept in flight: while the writer writes one, the
 * next waits in its queue (the pipeline, writer.c, overlaps two batches), and the load
 * generator makes the one after. */
#define BENCH_INFLIGHT 4

typedef struct {
    writer_cmd_t cmd;
    ledger_transfer_t events[BENCH_BATCH];
    ledger_transfer_result_t results[BENCH_BATCH];
} bench_slot_t;

static bench_slot_t bench_slots[BENCH_INFLIGHT];
static pthread_mutex_t slots_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cond = PTHREAD_COND_INITIALIZER;
static uint32_t slots_free_mask;
static uint64_t slots_committed;
static _Atomic bool slots_failed;

static void slot_done(writer_cmd_t *cmd, pc_status status) {
    bench_slot_t *slot = (bench_slot_t *)cmd;
    uint64_t ok = 0;
    for (uint32_t i = 0; i < cmd->event_count; i++) ok += slot->results[i].status == PC_OK;
    if (status != PC_OK || ok != cmd->event_count) slots_failed = true;
    pthread_mutex_lock(&slots_mutex);
    slots_committed += ok;
    slots_free_mask |= 1u << (slot - bench_slots);
    pthread_cond_signal(&slots_cond);
    pthread_mutex_unlock(&slots_mutex);
}

static void slot_fill(bench_slot_t *slot) {
    for (uint32_t i = 0; i < BENCH_BATCH; i++) {
        ledger_transfer_t *t = &slot->events[i];
        memset(t, 0, sizeof *t);
        uint32_t d = (uint32_t)(rng_next() % BENCH_ACCOUNTS), c = (uint32_t)(rng_next() % BENCH_ACCOUNTS);
        if (c == d) c = (c + 1) % BENCH_ACCOUNTS;
        account_id(t->debit_account_id, sizeof t->debit_account_id, d);
        account_id(t->credit_account_id, sizeof t->credit_account_id, c);
        snprintf(t->id, sizeof t->id, "tr-%016llx", (unsigned long long)rng_next());
        memcpy(t->currency, "USD", 4);
        t->amount = 100;
        t->code = 1;
    }
    slot->cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = BENCH_BATCH,
                               .transfers = slot->events, .transfer_results = slot->results, .done = slot_done};
}

/* Index of a free slot, waiting for one; 'all': waits until every slot is free. */
static int slot_wait(bool all) {
    pthread_mutex_lock(&slots_mutex);
    uint32_t all_mask = (1u << BENCH_INFLIGHT) - 1;
    while (all ? slots_free_mask != all_mask : slots_free_mask == 0) pthread_cond_wait(&slots_cond, &slots_mutex);
    int index = __builtin_ctz(slots_free_mask);
    if (!all) slots_free_mask &= ~(1u << index);
    pthread_mutex_unlock(&slots_mutex);
    return index;
}

/* Durable transfers per second in commands of BENCH_BATCH, BENCH_INFLIGHT in flight,
 * over the wall time from the first submit to the last commit. */
static double paycore_per_s(writer_t *writer, double seconds, uint64_t *transfers) {
    slots_free_mask = (1u << BENCH_INFLIGHT) - 1;
    slots_committed = 0;
    uint64_t start_ns = pc_mono_ns(), end_ns = start_ns + (uint64_t)(seconds * 1e9);
    while (pc_mono_ns() < end_ns && !slots_failed) {
        bench_slot_t *slot = &bench_slots[slot_wait(false)];
        slot_fill(slot);
        if (writer_submit(writer, &slot->cmd) != PC_OK) abort();
    }
    (void)slot_wait(true);
    double elapsed_s = (double)(pc_mono_ns() - start_ns) / 1e9;
    if (slots_failed) {
        fprintf(stderr, "bench_scaleout: a command failed\n");
        abort();
    }
    *transfers += slots_committed;
    return (double)slots_committed / elapsed_s;
}

/* A writer on the PostgreSQL store of 'url' with BENCH_ACCOUNTS accounts. */
static bool paycore_open(const char *url, const char *key_path, bool no_pipeline, store_t **store,
                         writer_t **writer) {
    store_options_t options = {.create = true};
    writer_config_t writer_config = {.batch_events_max = BENCH_BATCH, .no_pipeline = no_pipeline};
    if (store_open(store, url, &options) != PC_OK) return false;
    if (writer_start(writer, *store, key_path, &writer_config) != PC_OK) {
        store_close(*store);
        return false;
    }
    accounts_create(*writer);
    return true;
}

static void paycore_close(store_t *store, writer_t *writer) {
    char currency[4];
    if (!ledger_balanced(writer_ledger(writer), currency)) {
        fprintf(stderr, "bench_scaleout: ledger out of balance in %s\n", currency);
        abort();
    }
    writer_stop(writer);
    store_close(store);
}

/* shards=1: the pipelined writer's figure against pgbench, and against the same
 * writer one batch at a time (no_pipeline, a database of its own), rounds
 * interleaved (pgbench, pipelined, one at a time ...):
 *   scaleout shards=1 cross_pct=0 mode=batch per_s=… baseline=pgbench_tpcb baseline_per_s=… ratio=…
 *   scaleout_pipeline shards=1 per_s=… one_at_a_time_per_s=… staged_pct=… ratio=…
 * (staged_pct: the batches written as a pipeline's staged second part, of all). */
static int bench(int rounds, int seconds) {
    char url[512], key_path[512], url_one[512], key_one[512];
    snprintf(url, sizeof url, "postgresql://paycore@/paycore?host=%s", cluster_dir);
    snprintf(key_path, sizeof key_path, "%s/node.key", cluster_dir);
    snprintf(url_one, sizeof url_one, "postgresql://paycore@/paycore_one?host=%s", cluster_dir);
    snprintf(key_one, sizeof key_one, "%s/node-one.key", cluster_dir);
    store_t *store = NULL, *store_one = NULL;
    writer_t *writer = NULL, *writer_one = NULL;
    if (!paycore_open(url, key_path, false, &store, &writer) ||
        !paycore_open(url_one, key_one, true, &store_one, &writer_one)) {
        fprintf(stderr, "bench_scaleout: cannot open the PostgreSQL store\n");
        return 1;
    }
    double paycore_sum = 0, one_sum = 0, baseline_sum = 0;
    cpu_sample_t cpu = {0};
    uint64_t transfers = 0, one_transfers = 0;
    /* the sampler's queries cost the server CPU of their own: asked for only */
    bool sample_waits = getenv("PAYCORE_BENCH_WAITS") != NULL;
    PGconn *stats = stats_conn();
    wal_sample_t wal = {0};
    static waits_t waits;
    baseline_sum_t baseline_cpu = {0};
    for (int round = 0; round < rounds; round++) {
        baseline_sum += pgbench_measured(seconds, &baseline_cpu);
        wal_sample_t wal_start = wal_sample(stats); /* it waits for the stats: outside the CPU's window */
        cpu_sample_t start = cpu_sample();
        waits.stop = false;
        bool sampling = sample_waits && pthread_create(&waits.thread, NULL, waits_run, &waits) == 0;
        paycore_sum += paycore_per_s(writer, seconds, &transfers);
        cpu_add(&cpu, &start);
        waits.stop = true;
        if (sampling) pthread_join(waits.thread, NULL);
        wal_add(&wal, &wal_start, stats);
        one_sum += paycore_per_s(writer_one, seconds, &one_transfers);
    }
    PQfinish(stats);
    writer_stats_t writer_counts;
    writer_stats(writer, &writer_counts);
    paycore_close(store, writer);
    paycore_close(store_one, writer_one);
    double per_s = paycore_sum / rounds, baseline_per_s = baseline_sum / rounds;
    printf("scaleout shards=1 cross_pct=0 mode=batch per_s=%.0f baseline=pgbench_tpcb baseline_per_s=%.0f"
           " ratio=%.2f\n", per_s, baseline_per_s, baseline_per_s > 0 ? per_s / baseline_per_s : 0);
    cpu_report(1, 0, "batch", &cpu, transfers, per_s);
    wal_line(&wal, transfers);
    ratio_parts_print(per_s, &cpu, transfers, baseline_per_s, &baseline_cpu);
    if (sample_waits) waits_line(&waits);
    double staged_pct = writer_counts.batches_committed > 0
                            ? 100.0 * (double)writer_counts.batches_staged / (double)writer_counts.batches_committed : 0;
    printf("scaleout_pipeline shards=1 per_s=%.0f one_at_a_time_per_s=%.0f staged_pct=%.0f ratio=%.2f\n", per_s,
           one_sum / rounds, staged_pct, one_sum > 0 ? paycore_sum / one_sum : 0);
    fflush(stdout);
    return baseline_per_s > 0 ? 0 : 1;
}

/* ---- shards ---- */

#define BENCH_SHARDS_MAX 3

typedef struct {
    uint32_t count;
    char (*ids)[PC_ID_SIZE];
} shard_accounts_t;

/* placed[n][s]: the bench's accounts that a set of n shards places on shard s (the
 * sets of 1, 2 and 3 shards are open at once, so that their figures interleave). */
static shard_accounts_t placed[BENCH_SHARDS_MAX + 1][BENCH_SHARDS_MAX];

static void placement(uint32_t shards) {
    shard_accounts_t *on = placed[shards];
    for (uint32_t s = 0; s < shards; s++) {
        free(on[s].ids);
        on[s].ids = calloc(BENCH_ACCOUNTS, PC_ID_SIZE);
        on[s].count = 0;
        if (on[s].ids == NULL) abort();
    }
    for (uint32_t i = 0; i < BENCH_ACCOUNTS; i++) {
        char id[PC_ID_SIZE];
        account_id(id, sizeof id, i);
        shard_accounts_t *to = &on[store_shard_of(id, shards)];
        memcpy(to->ids[to->count++], id, PC_ID_SIZE);
    }
}

static void placement_free(void) {
    for (uint32_t n = 0; n <= BENCH_SHARDS_MAX; n++) {
        for (uint32_t s = 0; s < BENCH_SHARDS_MAX; s++) {
            free(placed[n][s].ids);
            placed[n][s].ids = NULL;
        }
    }
}

static const char *random_on(uint32_t shards, uint32_t shard) {
    const shard_accounts_t *on = &placed[shards][shard];
    return on->ids[rng_next() % on->count];
}

/* A transfer on shard 'debit_shard'; across shards with probability cross_pct. */
static void transfer_make(ledger_transfer_t *t, uint32_t shards, uint32_t debit_shard, uint32_t cross_pct) {
    memset(t, 0, sizeof *t);
    uint32_t credit_shard = debit_shard;
    if (shards > 1 && rng_next() % 100 < cross_pct) credit_shard = (debit_shard + 1 + rng_next() % (shards - 1)) % shards;
    snprintf(t->debit_account_id, sizeof t->debit_account_id, "%s", random_on(shards, debit_shard));
    do {
        snprintf(t->credit_account_id, sizeof t->credit_account_id, "%s", random_on(shards, credit_shard));
    } while (strcmp(t->debit_account_id, t->credit_account_id) == 0);
    snprintf(t->id, sizeof t->id, "tr-%016llx", (unsigned long long)rng_next());
    memcpy(t->currency, "USD", 4);
    t->amount = 100;
    t->code = 1;
}

/* ---- the shards' load shape ----
 * 'inflight' commands of 'per_cmd' transfers are kept in flight for the whole window:
 * the load generator makes and submits the next command of a slot as soon as the
 * slot's last one committed (no rounds waited for whole). Slot j's transfers start on
 * shard j % shards, so with inflight = BENCH_INFLIGHT * shards each shard's writer has
 * BENCH_INFLIGHT commands in flight, as the single store's figure has: while it writes
 * one, the next waits in its queue and it pipelines two batches (writer.c). */

typedef struct bench_load bench_load_t;

typedef struct {
    writer_cmd_t cmd; /* first: job_done casts */
    ledger_transfer_t *events;
    ledger_transfer_result_t *results;
    uint32_t shard;   /* where its transfers start */
    bench_load_t *load;
} bench_job_t;

struct bench_load {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bench_job_t *jobs;
    uint32_t *free_slots;  /* a stack of the slots whose command is done */
    uint32_t free_count;
    uint64_t committed;
};

static _Atomic bool job_failed; /* a command failed: the run stops, the cluster is removed */

static void slot_free(bench_load_t *load, uint32_t slot, uint64_t committed) {
    pthread_mutex_lock(&load->mutex);
    load->committed += committed;
    load->free_slots[load->free_count++] = slot;
    pthread_cond_signal(&load->cond);
    pthread_mutex_unlock(&load->mutex);
}

static void job_done(writer_cmd_t *cmd, pc_status status) {
    bench_job_t *job = (bench_job_t *)cmd;
    if (status != PC_OK) {
        fprintf(stderr, "bench_scaleout: a command failed: %s\n", pc_status_code(status));
        job_failed = true;
    }
    uint64_t ok = 0;
    for (uint32_t i = 0; i < cmd->event_count; i++) ok += job->results[i].status == PC_OK;
    slot_free(job->load, (uint32_t)(job - job->load->jobs), ok);
}

/* The index of a slot whose command is done, waiting for one. */
static uint32_t slot_take(bench_load_t *load) {
    pthread_mutex_lock(&load->mutex);
    while (load->free_count == 0) pthread_cond_wait(&load->cond, &load->mutex);
    uint32_t slot = load->free_slots[--load->free_count];
    pthread_mutex_unlock(&load->mutex);
    return slot;
}

static void job_submit(shard_set_t *set, bench_job_t *job, uint32_t shards, uint32_t cross_pct, uint32_t per_cmd) {
    for (uint32_t i = 0; i < per_cmd; i++) transfer_make(&job->events[i], shards, job->shard, cross_pct);
    job->cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = per_cmd, .transfers = job->events,
                              .transfer_results = job->results, .done = job_done};
    if (shard_submit(set, &job->cmd) != PC_OK) {
        job_failed = true;
        slot_free(job->load, (uint32_t)(job - job->load->jobs), 0);
    }
}

static bool load_open(bench_load_t *load, uint32_t inflight, uint32_t per_cmd, uint32_t shards) {
    *load = (bench_load_t){.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    load->jobs = calloc(inflight, sizeof *load->jobs);
    load->free_slots = calloc(inflight, sizeof *load->free_slots);
    if (load->jobs == NULL || load->free_slots == NULL) return false;
    for (uint32_t j = 0; j < inflight; j++) {
        bench_job_t *job = &load->jobs[j];
        job->events = calloc(per_cmd, sizeof *job->events);
        job->results = calloc(per_cmd, sizeof *job->results);
        if (job->events == NULL || job->results == NULL) return false;
        job->shard = j % shards;
        job->load = load;
        load->free_slots[load->free_count++] = inflight - 1 - j; /* slot 0 taken first */
    }
    return true;
}

static void load_close(bench_load_t *load, uint32_t inflight) {
    for (uint32_t j = 0; load->jobs != NULL && j < inflight; j++) {
        free(load->jobs[j].events);
        free(load->jobs[j].results);
    }
    free(load->jobs);
    free(load->free_slots);
}

/* 'inflight' commands of 'per_cmd' transfers kept in flight for 'seconds' (the load
 * shape above): committed transfers per second, over the wall time from the first
 * submit to the last commit. */
static double shards_per_s(shard_set_t *set, uint32_t shards, uint32_t cross_pct, uint32_t inflight,
                           uint32_t per_cmd, double seconds, uint64_t *transfers) {
    bench_load_t load;
    if (!load_open(&load, inflight, per_cmd, shards)) abort();
    uint64_t submitted = 0;
    uint64_t start_ns = pc_mono_ns(), end_ns = start_ns + (uint64_t)(seconds * 1e9);
    while (pc_mono_ns() < end_ns && !job_failed) {
        job_submit(set, &load.jobs[slot_take(&load)], shards, cross_pct, per_cmd);
        submitted += per_cmd;
    }
    pthread_mutex_lock(&load.mutex);
    while (load.free_count < inflight) pthread_cond_wait(&load.cond, &load.mutex);
    pthread_mutex_unlock(&load.mutex);
    double elapsed_s = (double)(pc_mono_ns() - start_ns) / 1e9;
    load_close(&load, inflight);
    if (job_failed || load.committed * 10 < submitted * 9) {
        fprintf(stderr, "bench_scaleout: only %llu of %llu transfers committed\n",
                (unsigned long long)load.committed, (unsigned long long)submitted);
        return -1;
    }
    *transfers += load.committed;
    return (double)load.committed / elapsed_s;
}

static void shard_accounts_create(shard_set_t *set, uint32_t shards) {
    static ledger_account_t accounts[BENCH_BATCH];
    static ledger_account_result_t results[BENCH_BATCH];
    for (uint32_t s = 0; s < shards; s++) {
        const shard_accounts_t *on = &placed[shards][s];
        for (uint32_t first = 0; first < on->count; first += BENCH_BATCH) {
            uint32_t count = on->count - first < BENCH_BATCH ? on->count - first : BENCH_BATCH;
            for (uint32_t i = 0; i < count; i++) {
                memset(&accounts[i], 0, sizeof accounts[i]);
                memcpy(accounts[i].id, on->ids[first + i], PC_ID_SIZE);
                memcpy(accounts[i].currency, "USD", 4);
                accounts[i].code = 1;
            }
            writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count, .accounts = accounts,
                                .account_results = results};
            if (writer_submit_wait(shard_writer(set, 0), &cmd) != PC_OK) abort();
        }
    }
}

static shard_set_t *shards_open(uint32_t shards) {
    char urls_storage[SHARD_COUNT_MAX][512], key_path[512], detail[800];
    const char *urls[SHARD_COUNT_MAX];
    for (uint32_t i = 0; i < shards; i++) {
        snprintf(urls_storage[i], sizeof urls_storage[i], "postgresql://paycore@/s%u_%u?host=%s", shards, i,
                 cluster_dir);
        urls[i] = urls_storage[i];
    }
    snprintf(key_path, sizeof key_path, "%s/node-s%u.key", cluster_dir, shards);
    shard_set_t *set = NULL;
    shard_options_t options = {.urls = urls, .count = shards, .key_path = key_path,
                               .writer_config = {.batch_events_max = BENCH_BATCH}};
    if (shard_init(urls, shards, detail, sizeof detail) != PC_OK ||
        shard_open(&set, &options, detail, sizeof detail) != PC_OK) {
        fprintf(stderr, "bench_scaleout: shards: %s\n", detail);
        return NULL;
    }
    placement(shards);
    shard_accounts_create(set, shards);
    return set;
}

/* ---- what each shard did while a figure ran ----
 * Each shard's writer (writer_stats: transfers and batches committed, second parts
 * staged by its pipeline), the CPU of the live backends of each shard's database
 * ("postgres: paycore s<N>_<i> ..."), and the whole machine's busy CPU (/proc/stat:
 * every process, other work on the machine included), so that a figure bounded by
 * the machine's cores says so. */

typedef struct {
    uint64_t transfers[BENCH_SHARDS_MAX];
    uint64_t batches[BENCH_SHARDS_MAX];
    uint64_t staged[BENCH_SHARDS_MAX];
    uint64_t backends_ns[BENCH_SHARDS_MAX];
    uint64_t machine_busy_ns;
} shard_sample_t;

/* The shard 'pid' is a backend of, in a set of 'shards'; false for any other process. */
static bool backend_shard(pid_t pid, uint32_t shards, uint32_t *shard) {
    char text[256], prefix[40];
    if (!proc_cmdline(pid, text, sizeof text)) return false;
    for (uint32_t i = 0; i < shards; i++) {
        snprintf(prefix, sizeof prefix, "postgres: paycore s%u_%u ", shards, i);
        if (strncmp(text, prefix, strlen(prefix)) == 0) {
            *shard = i;
            return true;
        }
    }
    return false;
}

static void shard_sample(shard_set_t *set, uint32_t shards, shard_sample_t *out) {
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < shards; i++) {
        writer_stats_t stats;
        writer_stats(shard_writer(set, i), &stats);
        out->transfers[i] = stats.transfers_committed;
        out->batches[i] = stats.batches_committed;
        out->staged[i] = stats.batches_staged;
    }
    pid_t master = postmaster_pid();
    DIR *proc = master > 0 ? opendir("/proc") : NULL;
    struct dirent *entry;
    while (proc != NULL && (entry = readdir(proc)) != NULL) {
        pid_t pid = (pid_t)atoi(entry->d_name), ppid = 0;
        uint32_t shard = 0;
        if (pid <= 0) continue;
        uint64_t ns = proc_cpu_ns(pid, false, &ppid);
        if (ppid == master && backend_shard(pid, shards, &shard)) out->backends_ns[shard] += ns;
    }
    if (proc != NULL) closedir(proc);
    out->machine_busy_ns = machine_busy_ns();
}

/* Adds what happened since 'start' into 'sum'. */
static void shard_sample_add(shard_sample_t *sum, const shard_sample_t *start, shard_set_t *set, uint32_t shards) {
    shard_sample_t now;
    shard_sample(set, shards, &now);
    for (uint32_t i = 0; i < shards; i++) {
        sum->transfers[i] += now.transfers[i] - start->transfers[i];
        sum->batches[i] += now.batches[i] - start->batches[i];
        sum->staged[i] += now.staged[i] - start->staged[i];
        sum->backends_ns[i] += now.backends_ns[i] - start->backends_ns[i];
    }
    sum->machine_busy_ns += now.machine_busy_ns - start->machine_busy_ns;
}

/* One figure of a set (a shard count and a cross-shard share), summed over its rounds. */
typedef struct {
    uint32_t shards;
    uint32_t cross_pct;
    double per_s_sum;
    double baseline_sum;
    int rounds;
    uint64_t transfers;
    cpu_sample_t cpu;
    shard_sample_t by_shard;
} figure_t;

/* One round of 'figure': pgbench, then 'seconds' of the load shape on 'set'. */
static void figure_round(figure_t *figure, shard_set_t *set, int seconds) {
    figure->baseline_sum += pgbench_tps(seconds);
    cpu_sample_t start = cpu_sample();
    shard_sample_t shard_start;
    shard_sample(set, figure->shards, &shard_start);
    figure->per_s_sum += shards_per_s(set, figure->shards, figure->cross_pct, BENCH_INFLIGHT * figure->shards,
                                      BENCH_BATCH, seconds, &figure->transfers);
    cpu_add(&figure->cpu, &start);
    shard_sample_add(&figure->by_shard, &shard_start, set, figure->shards);
    figure->rounds++;
}

/* What each shard's writer committed (a transfer across shards counts on both) and
 * its database's backends' CPU:
 *   scaleout_shard_writer shards=N cross_pct=P shard=I per_s=… batches=… staged=… backends_cpu_ms=…
 *     backends_per_transfer_us=… */
static void shards_each_print(const figure_t *figure) {
    const shard_sample_t *s = &figure->by_shard;
    double wall_s = (double)figure->cpu.wall_ns / 1e9;
    for (uint32_t i = 0; i < figure->shards; i++) {
        printf("scaleout_shard_writer shards=%u cross_pct=%u shard=%u per_s=%.0f batches=%llu staged=%llu"
               " backends_cpu_ms=%.0f backends_per_transfer_us=%.2f\n", figure->shards, figure->cross_pct, i,
               wall_s > 0 ? (double)s->transfers[i] / wall_s : 0, (unsigned long long)s->batches[i],
               (unsigned long long)s->staged[i], (double)s->backends_ns[i] / 1e6,
               s->transfers[i] > 0 ? (double)s->backends_ns[i] / 1e3 / (double)s->transfers[i] : 0);
    }
    fflush(stdout);
}

/* The scaleout line of a figure, its CPU lines and its per-shard lines. */
static void figure_print(const figure_t *figure) {
    double per_s = figure->per_s_sum / figure->rounds, baseline = figure->baseline_sum / figure->rounds;
    printf("scaleout shards=%u cross_pct=%u mode=batch per_s=%.0f baseline=pgbench_tpcb baseline_per_s=%.0f"
           " ratio=%.2f\n", figure->shards, figure->cross_pct, per_s, baseline, baseline > 0 ? per_s / baseline : 0);
    cpu_report(figure->shards, figure->cross_pct, "batch", &figure->cpu, figure->transfers, per_s);
    if (figure->cross_pct > 0) shards_each_print(figure); /* 0 %: with the scaling lines */
    fflush(stdout);
}

/* ---- scaling with shards: 1, 2 and 3 shards at 0 % cross-shard, interleaved ----
 * The same load shape on each set (BENCH_INFLIGHT commands in flight per shard), the
 * rounds interleaved (1, 2, 3 shards, 1, 2, 3 ...) so that they share the machine's
 * state. On a machine of few cores every shard's writer and backend share them, so
 * the transfers per second grow with shards only while cores are idle; what shows
 * that the set scales is the CPU a transfer costs staying flat as shards are added
 * (no shard waits for another), with the machine's cores busy. On a machine shared
 * with other work, more shards are also more runnable processes, which get a larger
 * share of its busy cores (cores_used); per_s_per_core_used (a million over
 * cpu_per_transfer_us) does not depend on that share:
 *   scaleout_scaling shards=N cross_pct=0 mode=batch inflight_per_shard=4 per_s=… per_shard_per_s=…
 *     per_s_vs_1=… cpu_per_transfer_us=… cpu_per_transfer_vs_1=… paycore_per_transfer_us=…
 *     postgres_per_transfer_us=… loadgen_per_transfer_us=… cores_used=… per_s_per_core_used=…
 *     machine_cores_busy=… cores=…
 *   scaleout_shard_writer shards=N cross_pct=0 shard=I per_s=… batches=… staged=… backends_cpu_ms=…
 *     backends_per_transfer_us=… (each shard's writer and its database's backends)
 *   scaleout_scaling_bound shards=3 per_s_vs_1=… cpu_per_transfer_vs_1=… machine_cores_busy=… cores=…
 *     verdict=grows|cpu_bound|not_cpu_bound
 * verdict: grows when 3 shards commit at least 1.5x what 1 does; else cpu_bound when
 * the machine's cores were at least 90 % busy and a transfer's CPU stayed within 1.25x
 * of one shard's (it scales, the cores are the limit); else not_cpu_bound (something
 * else limits: the disk, or shards waiting for each other). */

#define SCALING_GROWS 1.5
#define SCALING_MACHINE_BUSY 0.9
#define SCALING_CPU_FLAT 1.25

static double figure_cpu_us(const figure_t *figure, uint64_t ns) {
    return figure->transfers > 0 ? (double)ns / 1e3 / (double)figure->transfers : 0;
}

static double figure_all_cpu_us(const figure_t *figure) {
    return figure_cpu_us(figure, figure->cpu.paycore_ns + figure->cpu.loadgen_ns + figure->cpu.postgres_ns);
}

static double machine_cores_busy(const figure_t *figure) {
    return figure->cpu.wall_ns > 0 ? (double)figure->by_shard.machine_busy_ns / (double)figure->cpu.wall_ns : 0;
}

static void scaling_print(const figure_t *figure, const figure_t *one, long cores) {
    double per_s = figure->per_s_sum / figure->rounds, one_per_s = one->per_s_sum / one->rounds;
    double wall_s = (double)figure->cpu.wall_ns / 1e9, cpu_us = figure_all_cpu_us(figure);
    double all_ns = (double)(figure->cpu.paycore_ns + figure->cpu.loadgen_ns + figure->cpu.postgres_ns);
    printf("scaleout_scaling shards=%u cross_pct=0 mode=batch inflight_per_shard=%d per_s=%.0f per_shard_per_s=%.0f"
           " per_s_vs_1=%.2f cpu_per_transfer_us=%.2f cpu_per_transfer_vs_1=%.2f paycore_per_transfer_us=%.2f"
           " postgres_per_transfer_us=%.2f loadgen_per_transfer_us=%.2f cores_used=%.2f per_s_per_core_used=%.0f"
           " machine_cores_busy=%.2f cores=%ld\n", figure->shards, BENCH_INFLIGHT, per_s, per_s / figure->shards,
           one_per_s > 0 ? per_s / one_per_s : 0, cpu_us, figure_all_cpu_us(one) > 0 ? cpu_us / figure_all_cpu_us(one) : 0,
           figure_cpu_us(figure, figure->cpu.paycore_ns), figure_cpu_us(figure, figure->cpu.postgres_ns),
           figure_cpu_us(figure, figure->cpu.loadgen_ns), wall_s > 0 ? all_ns / 1e9 / wall_s : 0,
           cpu_us > 0 ? 1e6 / cpu_us : 0, machine_cores_busy(figure), cores);
    shards_each_print(figure);
}

static void scaling_bound(const figure_t *most, const figure_t *one, long cores) {
    double grows = one->per_s_sum > 0 ? (most->per_s_sum / most->rounds) / (one->per_s_sum / one->rounds) : 0;
    double cpu = figure_all_cpu_us(one) > 0 ? figure_all_cpu_us(most) / figure_all_cpu_us(one) : 0;
    double busy = machine_cores_busy(most);
    const char *verdict = grows >= SCALING_GROWS ? "grows"
                        : busy >= SCALING_MACHINE_BUSY * (double)cores && cpu <= SCALING_CPU_FLAT ? "cpu_bound"
                                                                                                   : "not_cpu_bound";
    printf("scaleout_scaling_bound shards=%u per_s_vs_1=%.2f cpu_per_transfer_vs_1=%.2f machine_cores_busy=%.2f"
           " cores=%ld verdict=%s\n", most->shards, grows, cpu, busy, cores, verdict);
    fflush(stdout);
}

/* The sets of 1..BENCH_SHARDS_MAX shards (sets[n]); false when one cannot be opened. */
static bool sets_open(shard_set_t *sets[BENCH_SHARDS_MAX + 1]) {
    for (uint32_t n = 1; n <= BENCH_SHARDS_MAX; n++) {
        sets[n] = shards_open(n);
        if (sets[n] == NULL) return false;
    }
    return true;
}

static void sets_close(shard_set_t *sets[BENCH_SHARDS_MAX + 1]) {
    for (uint32_t n = 1; n <= BENCH_SHARDS_MAX; n++) shard_close(sets[n]);
    placement_free();
}

/* 0 % cross-shard on 1, 2 and 3 shards, rounds interleaved; the scaleout lines of 2
 * and 3 shards (1 shard's is the single store's, bench()) and the scaling lines. */
static void bench_scaling(shard_set_t *sets[BENCH_SHARDS_MAX + 1], int rounds, int seconds) {
    figure_t figures[BENCH_SHARDS_MAX + 1];
    memset(figures, 0, sizeof figures);
    for (uint32_t n = 1; n <= BENCH_SHARDS_MAX; n++) figures[n].shards = n;
    for (int round = 0; round < rounds && !job_failed; round++) {
        for (uint32_t n = 1; n <= BENCH_SHARDS_MAX && !job_failed; n++) figure_round(&figures[n], sets[n], seconds);
    }
    if (job_failed) return;
    for (uint32_t n = 2; n <= BENCH_SHARDS_MAX; n++) figure_print(&figures[n]);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (uint32_t n = 1; n <= BENCH_SHARDS_MAX; n++) scaling_print(&figures[n], &figures[1], cores);
    scaling_bound(&figures[BENCH_SHARDS_MAX], &figures[1], cores);
}

/* The WAL's syncs (pg_stat_wal.wal_sync: the waits for the disk, after group
 * commit) so far, settled as wal_sample's are; 0 when not readable. */
static int64_t wal_syncs(PGconn *conn) {
    if (conn == NULL) return 0;
    usleep(WAL_STATS_SETTLE_MS * 1000);
    PGresult *result = PQexec(conn, "SELECT wal_sync FROM pg_stat_wal");
    int64_t syncs = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1
                        ? strtoll(PQgetvalue(result, 0, 0), NULL, 10) : 0;
    PQclear(result);
    return syncs;
}

/* Also the WAL syncs a transfer cost, local and across shards (the cluster's, every
 * database: a figure the machine's load changes less than the rates):
 *   scaleout_cross_syncs shards=2 local_syncs_per_transfer=… cross_syncs_per_transfer=… */
static void bench_cross_cost(shard_set_t *set, int rounds, int seconds) {
    double local = 0, cross = 0;
    uint64_t local_transfers = 0, cross_transfers = 0;
    int64_t local_syncs = 0, cross_syncs = 0;
    PGconn *stats = stats_conn();
    for (int round = 0; round < rounds && !job_failed; round++) {
        int64_t at = wal_syncs(stats);
        local += shards_per_s(set, 2, 0, 64, 1, seconds, &local_transfers);
        int64_t mid = wal_syncs(stats);
        cross += shards_per_s(set, 2, 100, 64, 1, seconds, &cross_transfers);
        local_syncs += mid - at;
        cross_syncs += wal_syncs(stats) - mid;
    }
    if (stats != NULL) PQfinish(stats);
    if (job_failed) return;
    printf("scaleout_cross_cost shards=2 local_per_s=%.0f cross_per_s=%.0f ratio=%.2f\n", local / rounds,
           cross / rounds, cross > 0 ? local / cross : 0);
    printf("scaleout_cross_syncs shards=2 local_syncs_per_transfer=%.3f cross_syncs_per_transfer=%.3f\n",
           local_transfers > 0 ? (double)local_syncs / (double)local_transfers : 0,
           cross_transfers > 0 ? (double)cross_syncs / (double)cross_transfers : 0);
    fflush(stdout);
}

/* 'scaling_only': the scaling lines alone (--scaling); 'cross_only': the cross-shard
 * lines and scaleout_cross_cost alone (--cross). */
static int bench_shards(int rounds, int seconds, bool scaling_only, bool cross_only) {
    static const uint32_t pcts[] = {10, 50};
    shard_set_t *sets[BENCH_SHARDS_MAX + 1] = {0};
    if (!sets_open(sets)) {
        sets_close(sets);
        return 1;
    }
    if (!cross_only) bench_scaling(sets, rounds, seconds);
    for (uint32_t shards = 2; !scaling_only && shards <= BENCH_SHARDS_MAX && !job_failed; shards++) {
        for (uint32_t p = 0; p < sizeof pcts / sizeof pcts[0] && !job_failed; p++) {
            figure_t figure = {.shards = shards, .cross_pct = pcts[p]};
            for (int round = 0; round < rounds && !job_failed; round++) figure_round(&figure, sets[shards], seconds);
            if (!job_failed) figure_print(&figure);
        }
        if (shards == 2) bench_cross_cost(sets[2], rounds, seconds);
    }
    sets_close(sets);
    return job_failed ? 1 : 0;
}

/* ---- mode=http: paycore serve --shards driven by paycore load ---- */

static char paycore_bin[1024];

/* Runs 'command' (no shell metacharacters beyond the redirections it holds); its
 * stdout into 'output'. */
static int run_capture(const char *command, char *output, size_t output_bytes) {
    FILE *pipe = popen(command, "r");
    if (pipe == NULL) return -1;
    size_t used = 0;
    output[0] = '\0';
    char line[2048];
    while (fgets(line, sizeof line, pipe) != NULL) {
        size_t length = strlen(line);
        if (used + length + 1 < output_bytes) {
            memcpy(output + used, line, length + 1);
            used += length;
        }
    }
    return pclose(pipe);
}

/* The port 'serve' logged in 'log_path', 0 until it did. */
static unsigned serve_port(const char *log_path) {
    FILE *log = fopen(log_path, "r");
    unsigned port = 0;
    char line[2048];
    while (log != NULL && port == 0 && fgets(line, sizeof line, log) != NULL) {
        const char *at = strstr(line, "\"msg\":\"listening\"");
        const char *p = at != NULL ? strstr(at, "\"port\":") : NULL;
        if (p != NULL) port = (unsigned)strtoul(p + 7, NULL, 10);
    }
    if (log != NULL) fclose(log);
    return port;
}

static int http_set(uint32_t shards, int rounds, int seconds) {
    char urls[2048] = "", command[4096], output[8192], key[256] = "", log_path[600], db_path[600];
    for (uint32_t i = 0; i < shards; i++) {
        size_t used = strlen(urls);
        snprintf(urls + used, sizeof urls - used, "%spostgresql://paycore@/h%u_%u?host=%s", i ? "," : "", shards, i,
                 cluster_dir);
    }
    snprintf(db_path, sizeof db_path, "%s/h%u.db", cluster_dir, shards);
    snprintf(command, sizeof command, "%s init --db %s --shards '%s' 2>/dev/null", paycore_bin, db_path, urls);
    if (run_capture(command, output, sizeof output) != 0 || strncmp(output, "admin_key=", 10) != 0) return 1;
    snprintf(key, sizeof key, "%s", output + 10);
    key[strcspn(key, "\n")] = '\0';
    snprintf(log_path, sizeof log_path, "%s/h%u.log", cluster_dir, shards);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *log = freopen(log_path, "w", stderr);
        (void)log;
        execl(paycore_bin, paycore_bin, "serve", "--db", db_path, "--listen", "127.0.0.1:0", "--no-events",
              "--shards", urls, (char *)NULL);
        _exit(127);
    }
    unsigned port = 0;
    for (int waited = 0; port == 0 && waited < 600; waited++) {
        usleep(100000);
        port = serve_port(log_path);
    }
    int status = port != 0 ? 0 : 1;
    serve_pid = pid;
    static const uint32_t pcts[] = {0, 10, 50};
    for (uint32_t p = 0; status == 0 && p < (shards == 1 ? 1u : 3u); p++) {
        double sum = 0, baseline = 0;
        cpu_sample_t cpu = {0};
        uint64_t transfers = 0;
        for (int round = 0; status == 0 && round < rounds; round++) {
            baseline += pgbench_tps(seconds);
            cpu_sample_t start = cpu_sample();
            snprintf(command, sizeof command, "%s load --url http://127.0.0.1:%u --key %s --concurrency 64"
                     " --duration-s %d --accounts 2000 --shards %u --cross-pct %u 2>&1", paycore_bin, port, key,
                     seconds, shards, pcts[p]);
            (void)run_capture(command, output, sizeof output);
            cpu_add(&cpu, &start);
            const char *count = strstr(output, " transfers=");
            if (count != NULL) transfers += strtoull(count + 11, NULL, 10);
            const char *at = strstr(output, "transfers_per_s="), *errors = strstr(output, " errors=");
            if (at == NULL || errors == NULL || strtoul(errors + 8, NULL, 10) != 0) {
                fprintf(stderr, "bench_scaleout: paycore load: %s\n", output);
                status = 1;
                break;
            }
            sum += strtod(at + 16, NULL);
        }
        if (status != 0) break;
        printf("scaleout shards=%u cross_pct=%u mode=http per_s=%.0f baseline=pgbench_tpcb baseline_per_s=%.0f"
               " ratio=%.2f\n", shards, pcts[p], sum / rounds, baseline / rounds, baseline > 0 ? sum / baseline : 0);
        cpu_report(shards, pcts[p], "http", &cpu, transfers, sum / rounds);
        fflush(stdout);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    serve_pid = 0;
    return status;
}

static int bench_http(int rounds, int seconds) {
    for (uint32_t shards = 1; shards <= 3; shards++) {
        if (http_set(shards, rounds, seconds) != 0) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    bool full = argc > 1 && strcmp(argv[1], "--full") == 0;
    snprintf(paycore_bin, sizeof paycore_bin, "%s", argv[0]);
    char *slash = strrchr(paycore_bin, '/');
    snprintf(slash != NULL ? slash + 1 : paycore_bin, sizeof paycore_bin - (size_t)(slash != NULL ? slash + 1 - paycore_bin : 0),
             "paycore");
    const char *bin = getenv("PAYCORE_PG_BIN");
    if (bin != NULL) snprintf(pg_bin, sizeof pg_bin, "%s", bin);
    char initdb[300];
    snprintf(initdb, sizeof initdb, "%s/initdb", pg_bin);
    if (access(initdb, X_OK) != 0) {
        fprintf(stderr, "bench_scaleout: no PostgreSQL 15 in %s (scripts/deps.sh installs Debian's postgresql;"
                " PAYCORE_PG_BIN names another bin dir)\n", pg_bin);
        return 1;
    }
    umask(077);
    if (!cluster_start()) {
        fprintf(stderr, "bench_scaleout: cannot start a PostgreSQL cluster in %s\n", cluster_dir);
        cluster_stop();
        return 1;
    }
    bool http_only = argc > 1 && strcmp(argv[1], "--http") == 0;
    bool scaling_only = argc > 1 && strcmp(argv[1], "--scaling") == 0;
    bool cross_only = argc > 1 && strcmp(argv[1], "--cross") == 0;
    int status = http_only ? bench_http(1, 3)
               : scaling_only ? bench_shards(3, 5, true, false)
               : cross_only ? bench_shards(1, 5, false, true)
                            : bench(full ? 3 : 1, full ? 10 : 3);
    if (status == 0 && full) status = bench_shards(3, 10, false, false);
    if (status == 0 && full) status = bench_http(3, 10);
    cluster_stop();
    return status;
}
