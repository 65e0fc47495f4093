/* store/pg_backup.c: an online copy of a PostgreSQL store (`paycore backup --store URL`)
 * with PostgreSQL's own pg_dump, in its custom format: one compressed file that
 * pg_restore reads (plain SQL is for psql, not pg_restore; the directory format is
 * several files; tar cannot be restored in parallel: custom is the one single-file
 * format that pg_restore restores selectively and with --jobs).
 * Consistency: this process opens a REPEATABLE READ transaction, reads the journal
 * head in it and exports its snapshot; pg_dump dumps every table in that same snapshot
 * (--snapshot), so the copy is exactly the database as of that head. pg_dump's locks
 * (ACCESS SHARE) never block the writer's inserts and updates: the server keeps
 * committing. The file is written as "<out>.tmp" (0600), made durable, read back by
 * `pg_restore --list`, then renamed. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/pg_internal.h"
#include "store/store.h"

extern char **environ;

static pc_status dump_fail(char *detail, size_t detail_bytes, pc_status status, const char *what,
                           const char *why) {
    snprintf(detail, detail_bytes, "%s: %s", what, why);
    return status;
}

/* Appends "keyword='value' " with conninfo's quoting (backslash before ' and \). */
static bool conninfo_append(char **text, size_t *used, const char *keyword, const char *value) {
    size_t room = *used + strlen(keyword) + 2 * strlen(value) + 5;
    char *grown = realloc(*text, room);
    if (grown == NULL) return false;
    *text = grown;
    *used += (size_t)sprintf(grown + *used, "%s='", keyword);
    for (const char *c = value; *c != '\0'; c++) {
        if (*c == '\'' || *c == '\\') grown[(*used)++] = '\\';
        grown[(*used)++] = *c;
    }
    *used += (size_t)sprintf(grown + *used, "' ");
    return true;
}

/* The URL as keyword='value' pairs without its password: a command line is visible to
 * every local user (ps), so the password goes to pg_dump in its environment
 * (PGPASSWORD, *password, malloc'ed) instead. NULL when out of memory. */
static char *conninfo_without_password(const char *url, char **password) {
    PQconninfoOption *options = PQconninfoParse(url, NULL);
    if (options == NULL) return NULL;
    char *text = pc_strdup("application_name='paycore-backup' ");
    size_t used = text != NULL ? strlen(text) : 0;
    for (PQconninfoOption *o = options; text != NULL && o->keyword != NULL; o++) {
        if (o->val == NULL || strcmp(o->keyword, "application_name") == 0) continue;
        if (strcmp(o->keyword, "password") == 0) {
            *password = pc_strdup(o->val);
            continue;
        }
        if (!conninfo_append(&text, &used, o->keyword, o->val)) {
            free(text);
            text = NULL;
        }
    }
    PQconninfoFree(options);
    return text;
}

/* The environment for a tool: ours, with PGPASSWORD replaced when 'password' is given. */
static char **tool_environment(const char *password, char **password_entry) {
    size_t count = 0;
    while (environ[count] != NULL) count++;
    char **env = calloc(count + 2, sizeof(char *));
    if (env == NULL) return NULL;
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (password == NULL || strncmp(environ[i], "PGPASSWORD=", 11) != 0) env[used++] = environ[i];
    }
    if (password != NULL) {
        size_t bytes = strlen(password) + 12;
        *password_entry = malloc(bytes);
        if (*password_entry == NULL) {
            free(env);
            return NULL;
        }
        snprintf(*password_entry, bytes, "PGPASSWORD=%s", password);
        env[used++] = *password_entry;
    }
    return env;
}

/* Runs 'argv' (argv[0] a tool of 'pg_bin', or found on PATH without it) with its
 * stdout on 'stdout_fd', its stderr on ours (the tool's own message); waits for it. */
static pc_status run_tool(const char *pg_bin, char **argv, int stdout_fd, const char *password,
                          char *detail, size_t detail_bytes) {
    char path[PC_PATH_BYTES_MAX];
    if (pg_bin != NULL && pg_bin[0] != '\0') snprintf(path, sizeof path, "%s/%s", pg_bin, argv[0]);
    else snprintf(path, sizeof path, "%s", argv[0]);
    char *password_entry = NULL;
    char **env = tool_environment(password, &password_entry);
    if (env == NULL) return dump_fail(detail, detail_bytes, PC_NO_MEMORY, path, "out of memory");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, path, &actions, NULL, argv, env);
    posix_spawn_file_actions_destroy(&actions);
    free(env);
    free(password_entry);
    if (rc != 0) return dump_fail(detail, detail_bytes, PC_STORE_READ_FAILED, path, strerror(rc));
    int wait_status = 0;
    while (waitpid(pid, &wait_status, 0) < 0) {
        if (errno != EINTR) return dump_fail(detail, detail_bytes, PC_STORE_READ_FAILED, path, strerror(errno));
    }
    if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return PC_OK;
    char why[64];
    if (WIFEXITED(wait_status)) snprintf(why, sizeof why, "exited %d (its message is above)", WEXITSTATUS(wait_status));
    else snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(wait_status));
    return dump_fail(detail, detail_bytes, PC_STORE_READ_FAILED, path, why);
}

/* Begins the snapshot's transaction on 'conn', checks the database is paycore's,
 * exports the snapshot's name into 'snapshot' and reads the journal head in it. */
static pc_status snapshot_open(PGconn *conn, char *snapshot, size_t snapshot_bytes, store_dump_info_t *info,
                               char *detail, size_t detail_bytes) {
    char line[400];
    if (!pg_exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")) {
        return dump_fail(detail, detail_bytes, PC_STORE_READ_FAILED, "begin", pg_error_line(conn, line, sizeof line));
    }
    PGresult *r = pg_query(conn, "SELECT pg_export_snapshot(), to_regclass('paycore_meta') IS NOT NULL", 0, NULL);
    if (r == NULL) return dump_fail(detail, detail_bytes, PC_STORE_READ_FAILED, "export snapshot", pg_error_line(conn, line, sizeof line));
    pg_text_copy(snapshot, snapshot_bytes, r, 0, 0);
    bool paycore = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    if (!paycore) return dump_fail(detail, detail_bytes, PC_STORE_NOT_PAYCORE, "the database", "is not paycore's (no paycore_meta table)");
    r = pg_query(conn, "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1", 0, NULL);
    if (r == NULL) return dump_fail(detail, detail_bytes, PC_STORE_READ_FAILED, "journal head", pg_error_line(conn, line, sizeof line));
    bool ok = PQntuples(r) == 0 || pg_bytea(r, 0, 1, info->head_hash, JOURNAL_HASH_BYTES);
    if (PQntuples(r) > 0) info->head_seq = (uint64_t)pg_int(r, 0, 0);
    PQclear(r);
    return ok ? PC_OK : dump_fail(detail, detail_bytes, PC_STORE_CORRUPT, "journal head", "hash is not 32 bytes");
}

/* pg_dump of the whole database in 'snapshot', in custom format, onto 'fd'. */
static pc_status dump_into(const char *url, const char *pg_bin, const char *snapshot, int fd, char *detail,
                           size_t detail_bytes) {
    char *password = NULL;
    char *conninfo = conninfo_without_password(url, &password);
    if (conninfo == NULL) return dump_fail(detail, detail_bytes, PC_NO_MEMORY, "conninfo", "out of memory");
    size_t dbname_bytes = strlen(conninfo) + 16, snapshot_bytes = strlen(snapshot) + 16;
    char *dbname_arg = malloc(dbname_bytes), *snapshot_arg = malloc(snapshot_bytes);
    pc_status status = PC_NO_MEMORY;
    if (dbname_arg != NULL && snapshot_arg != NULL) {
        snprintf(dbname_arg, dbname_bytes, "--dbname=%s", conninfo);
        snprintf(snapshot_arg, snapshot_bytes, "--snapshot=%s", snapshot);
        char *argv[] = {"pg_dump", "--format=custom", "--no-password", snapshot_arg, dbname_arg, NULL};
        status = run_tool(pg_bin, argv, fd, password, detail, detail_bytes);
    }
    free(dbname_arg);
    free(snapshot_arg);
    free(conninfo);
    free(password);
    return status;
}

/* `pg_restore --list FILE`: the archive is complete enough for pg_restore to read. */
static pc_status archive_readable(const char *pg_bin, const char *path, char *detail, size_t detail_bytes) {
    int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd < 0) return dump_fail(detail, detail_bytes, PC_IO, "/dev/null", strerror(errno));
    char *argv[] = {"pg_restore", "--list", (char *)path, NULL};
    pc_status status = run_tool(pg_bin, argv, null_fd, NULL, detail, detail_bytes);
    close(null_fd);
    return status;
}

/* Durable: the file's bytes, then (after the rename) its directory entry. */
static bool sync_directory_of(const char *path) {
    char copy[PC_PATH_BYTES_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

static pc_status dump_to_file(PGconn *conn, const char *url, const char *pg_bin, const char *tmp,
                              store_dump_info_t *info, char *detail, size_t detail_bytes) {
    char snapshot[128];
    pc_status status = snapshot_open(conn, snapshot, sizeof snapshot, info, detail, detail_bytes);
    if (status != PC_OK) return status;
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return dump_fail(detail, detail_bytes, PC_IO, tmp, strerror(errno));
    status = dump_into(url, pg_bin, snapshot, fd, detail, detail_bytes);
    struct stat st;
    if (status == PC_OK && (fsync(fd) != 0 || fstat(fd, &st) != 0)) status = dump_fail(detail, detail_bytes, PC_IO, tmp, strerror(errno));
    if (status == PC_OK) info->bytes = (uint64_t)st.st_size;
    close(fd);
    return status;
}

pc_status store_backup_postgres(const char *url, const char *out_path, const char *pg_bin, store_dump_info_t *info,
                                char *detail, size_t detail_bytes) {
    memset(info, 0, sizeof *info);
    char tmp[PC_PATH_BYTES_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", out_path) >= (int)sizeof tmp) {
        return dump_fail(detail, detail_bytes, PC_INVALID_ARGUMENT, out_path, "path too long");
    }
    PGconn *conn = NULL;
    pc_status status = pg_connect(url, &conn, detail, detail_bytes);
    if (status != PC_OK) return status;
    status = dump_to_file(conn, url, pg_bin, tmp, info, detail, detail_bytes);
    PQfinish(conn); /* ends the snapshot's transaction, after pg_dump is done with it */
    if (status == PC_OK) status = archive_readable(pg_bin, tmp, detail, detail_bytes);
    if (status == PC_OK && (rename(tmp, out_path) != 0 || !sync_directory_of(out_path))) {
        status = dump_fail(detail, detail_bytes, PC_IO, out_path, strerror(errno));
    }
    if (status != PC_OK) unlink(tmp);
    return status;
}

/* Refuses a target that holds tables already: a restore adds paycore's tables to
 * whatever is there, and into another paycore database it would fail half-way. */
static pc_status target_empty(const char *url, char *detail, size_t detail_bytes) {
    PGconn *conn = NULL;
    pc_status status = pg_connect(url, &conn, detail, detail_bytes);
    if (status != PC_OK) return status;
    char line[400];
    PGresult *r = pg_query(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", 0, NULL);
    if (r == NULL) status = dump_fail(detail, detail_bytes, PC_STORE_READ_FAILED, "tables", pg_error_line(conn, line, sizeof line));
    else if (pg_int(r, 0, 0) != 0) status = dump_fail(detail, detail_bytes, PC_INVALID_ARGUMENT, "the database to restore into", "is not empty");
    if (r != NULL) PQclear(r);
    PQfinish(conn);
    return status;
}

pc_status store_restore_postgres(const char *dump_path, const char *url, const char *pg_bin, char *detail,
                                 size_t detail_bytes) {
    pc_status status = target_empty(url, detail, detail_bytes);
    if (status != PC_OK) return status;
    char *password = NULL;
    char *conninfo = conninfo_without_password(url, &password);
    size_t dbname_bytes = conninfo != NULL ? strlen(conninfo) + 16 : 0;
    char *dbname_arg = conninfo != NULL ? malloc(dbname_bytes) : NULL;
    int null_fd = open("/dev/null", O_WRONLY);
    if (dbname_arg == NULL || null_fd < 0) {
        status = dump_fail(detail, detail_bytes, PC_NO_MEMORY, "pg_restore", "out of memory or no /dev/null");
    } else {
        snprintf(dbname_arg, dbname_bytes, "--dbname=%s", conninfo);
        char *argv[] = {"pg_restore", "--exit-on-error", "--single-transaction", "--no-owner", "--no-password",
                        dbname_arg, (char *)dump_path, NULL};
        status = run_tool(pg_bin, argv, null_fd, password, detail, detail_bytes);
    }
    if (null_fd >= 0) close(null_fd);
    free(dbname_arg);
    free(conninfo);
    free(password);
    return status;
}
