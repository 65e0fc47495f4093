/* store/sqlite_backup.c: an online copy of a SQLite store (`paycore backup`). The copy
 * is one consistent snapshot: the SQLite backup API copies every page in a single step
 * on a read-only connection, inside one read transaction. In WAL mode a reader never
 * blocks the writer, so a running server keeps committing meanwhile (its WAL cannot be
 * checkpointed past the snapshot until the copy ends: it grows for that long).
 * The copy is written to "<out>.tmp" (0600), made durable, then renamed: a crash
 * never leaves a half-written file under the final name. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

static pc_status fail(char *detail, size_t detail_bytes, pc_status status, const char *what,
                      const char *why) {
    snprintf(detail, detail_bytes, "%s: %s", what, why);
    return status;
}

/* fsync of 'path' and of the directory that holds it (the rename). */
static bool sync_path(const char *path, bool directory) {
    char copy[PC_PATH_BYTES_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(directory ? dirname(copy) : path, O_RDONLY | (directory ? O_DIRECTORY : 0));
    if (fd < 0) return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Creates 'tmp' as an empty 0600 file (the copy's mode, whatever the umask). */
static bool create_private(const char *tmp) {
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return false;
    close(fd);
    return true;
}

/* One step copies every page: chunked steps would restart whenever the writer
 * commits in between, which under load would be forever. */
static pc_status copy_pages(sqlite3 *source, sqlite3 *target, uint64_t *pages_out, char *detail,
                            size_t detail_bytes) {
    sqlite3_backup *backup = sqlite3_backup_init(target, "main", source, "main");
    if (backup == NULL) return fail(detail, detail_bytes, PC_IO, "backup init", sqlite3_errmsg(target));
    int rc = sqlite3_backup_step(backup, -1);
    *pages_out = (uint64_t)sqlite3_backup_pagecount(backup);
    int finish_rc = sqlite3_backup_finish(backup);
    if (rc != SQLITE_DONE || finish_rc != SQLITE_OK) {
        return fail(detail, detail_bytes, rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? PC_STORE_BUSY : PC_IO,
                    "backup step", sqlite3_errstr(rc != SQLITE_DONE ? rc : finish_rc));
    }
    return PC_OK;
}

static pc_status backup_into(const char *db_path, const char *tmp, uint64_t *pages_out,
                             char *detail, size_t detail_bytes) {
    sqlite3 *source = NULL, *target = NULL;
    pc_status status = PC_OK;
    if (sqlite3_open_v2(db_path, &source, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        status = fail(detail, detail_bytes, PC_STORE_OPEN_FAILED, db_path, sqlite3_errmsg(source));
    } else if (sqlite3_busy_timeout(source, 10000) != SQLITE_OK ||
               sqlite3_exec(source, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        status = fail(detail, detail_bytes, PC_STORE_READ_FAILED, db_path, sqlite3_errmsg(source));
    } else if (!create_private(tmp)) {
        status = fail(detail, detail_bytes, PC_IO, tmp, strerror(errno));
    } else if (sqlite3_open_v2(tmp, &target, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        status = fail(detail, detail_bytes, PC_IO, tmp, sqlite3_errmsg(target));
    } else {
        status = copy_pages(source, target, pages_out, detail, detail_bytes);
    }
    /* one self-contained file: no -wal beside it (the server turns WAL back on at start) */
    if (status == PC_OK && sqlite3_exec(target, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        status = fail(detail, detail_bytes, PC_IO, tmp, sqlite3_errmsg(target));
    }
    /* closing the target checkpoints whatever it wrote into its own WAL back into it */
    if (target != NULL && sqlite3_close(target) != SQLITE_OK && status == PC_OK) {
        status = fail(detail, detail_bytes, PC_IO, tmp, "close failed");
    }
    sqlite3_close(source);
    return status;
}

pc_status store_backup(const char *db_path, const char *out_path, uint64_t *pages_out,
                       char *detail, size_t detail_bytes) {
    char tmp[PC_PATH_BYTES_MAX];
    detail[0] = '\0';
    *pages_out = 0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", out_path) >= (int)sizeof tmp) {
        return fail(detail, detail_bytes, PC_INVALID_ARGUMENT, out_path, "path too long");
    }
    struct stat st;
    if (stat(db_path, &st) != 0) return fail(detail, detail_bytes, PC_STORE_OPEN_FAILED, db_path, strerror(errno));
    pc_status status = backup_into(db_path, tmp, pages_out, detail, detail_bytes);
    if (status == PC_OK && !sync_path(tmp, false)) status = fail(detail, detail_bytes, PC_IO, tmp, strerror(errno));
    if (status == PC_OK && rename(tmp, out_path) != 0) status = fail(detail, detail_bytes, PC_IO, out_path, strerror(errno));
    if (status == PC_OK && !sync_path(out_path, true)) status = fail(detail, detail_bytes, PC_IO, out_path, strerror(errno));
    if (status != PC_OK) unlink(tmp);
    return status;
}
