/* store/sqlite_file.c: what the SQLite backend checks and holds outside SQLite.
 *
 * - The kind of file at a path, read from its 100-byte header before SQLite opens
 *   it: a damaged (truncated) paycore file is told from a foreign one, and both from
 *   a missing one. Only called before the store's first connection opens: closing
 *   any descriptor of a database file drops the POSIX locks SQLite holds on it.
 * - The writer's lock: '<db>.lock', held with flock(LOCK_EX) for the store's
 *   lifetime and holding the owner's pid, so that a second writer on the same file
 *   is refused at start with the pid of the first. flock locks are not the POSIX
 *   record locks SQLite uses: the two never interfere.
 * - File modes: everything paycore writes is its owner's alone (0600). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/sqlite_internal.h"

#define SQLITE_HEADER_BYTES 100
#define SQLITE_MAGIC "SQLite format 3"          /* and a NUL: 16 bytes */

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads up to SQLITE_HEADER_BYTES; -1 and errno on error. */
static ssize_t header_read(const char *path, uint8_t header[SQLITE_HEADER_BYTES], off_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    ssize_t got = fstat(fd, &st) == 0 ? pread(fd, header, SQLITE_HEADER_BYTES, 0) : -1;
    int saved = errno;
    close(fd);
    errno = saved;
    *size = st.st_size;
    return got;
}

/* A header that SQLite wrote: the page count is valid when the change counter equals
 * the version-valid-for number (SQLite's own rule). */
static store_file_kind header_kind(const uint8_t *h, off_t size, int application_id) {
    if (memcmp(h, SQLITE_MAGIC, sizeof(SQLITE_MAGIC)) != 0) return STORE_FILE_FOREIGN;
    uint32_t app = be32(h + 68);
    if (app != 0 && app != (uint32_t)application_id) return STORE_FILE_FOREIGN;
    uint32_t page_bytes = (uint32_t)h[16] << 8 | h[17];
    if (page_bytes == 1) page_bytes = 65536;
    uint32_t page_count = be32(h + 28);
    bool count_valid = page_count > 0 && be32(h + 24) == be32(h + 92);
    if (count_valid && (uint64_t)size < (uint64_t)page_count * page_bytes) return STORE_FILE_TRUNCATED;
    return STORE_FILE_PAYCORE;
}

store_file_kind store_sqlite_file_kind(const char *path, char *detail, size_t detail_bytes) {
    uint8_t header[SQLITE_HEADER_BYTES];
    off_t size = 0;
    ssize_t got = header_read(path, header, &size);
    if (got < 0) {
        snprintf(detail, detail_bytes, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? STORE_FILE_MISSING : STORE_FILE_UNREADABLE;
    }
    if (got == 0) return STORE_FILE_EMPTY;
    if (got < SQLITE_HEADER_BYTES) {
        /* Shorter than any SQLite file: the start of one cut short, or something else. */
        bool sqlite_start = memcmp(header, SQLITE_MAGIC, (size_t)got < sizeof(SQLITE_MAGIC) ? (size_t)got : sizeof(SQLITE_MAGIC)) == 0;
        snprintf(detail, detail_bytes, "%s: %zd bytes%s", path, got, sqlite_start ? ", a truncated database" : "");
        return sqlite_start ? STORE_FILE_TRUNCATED : STORE_FILE_FOREIGN;
    }
    store_file_kind kind = header_kind(header, size, store_sqlite_application_id());
    if (kind == STORE_FILE_TRUNCATED) {
        uint32_t page_bytes = (uint32_t)header[16] << 8 | header[17];
        snprintf(detail, detail_bytes, "%s: truncated: %lld bytes, its header says %u pages of %u bytes",
                 path, (long long)size, be32(header + 28), page_bytes == 1 ? 65536 : page_bytes);
    } else if (kind == STORE_FILE_FOREIGN) {
        snprintf(detail, detail_bytes, "%s: not a paycore database", path);
    }
    return kind;
}

/* ---- the writer's lock ---- */

static void lock_path(const char *db_path, char out[PC_PATH_BYTES_MAX]) {
    snprintf(out, PC_PATH_BYTES_MAX, "%s.lock", db_path);
}

/* The pid the holder wrote; 0 when it cannot be read (yet). */
static long lock_holder_pid(int fd) {
    for (int attempt = 0; attempt < STORE_LOCK_PID_READ_ATTEMPTS_MAX; attempt++) {
        char text[32] = {0};
        ssize_t got = pread(fd, text, sizeof(text) - 1, 0);
        char *end = NULL;
        long pid = got > 0 ? strtol(text, &end, 10) : 0;
        if (pid > 0 && end != NULL && *end == '\n') return pid;
        struct timespec pause = {0, STORE_LOCK_PID_READ_PAUSE_NS};
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* True when 'fd' is still the file at 'path' (not unlinked by a holder that left). */
static bool lock_is_current(int fd, const char *path) {
    struct stat held, named;
    return fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_dev == named.st_dev &&
           held.st_ino == named.st_ino;
}

static pc_status lock_refused(int fd, char *detail, size_t detail_bytes) {
    long pid = lock_holder_pid(fd);
    if (pid > 0) snprintf(detail, detail_bytes, "database in use by pid %ld", pid);
    else snprintf(detail, detail_bytes, "database in use by another process");
    close(fd);
    return PC_STORE_IN_USE;
}

static pc_status lock_pid_write(int fd, char *detail, size_t detail_bytes) {
    char text[32];
    int bytes = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)bytes, 0) != bytes) {
        snprintf(detail, detail_bytes, "writing the lock file: %s", strerror(errno));
        return PC_IO;
    }
    return PC_OK;
}

pc_status store_sqlite_lock_take(const char *db_path, int *fd_out, char *detail, size_t detail_bytes) {
    char path[PC_PATH_BYTES_MAX];
    lock_path(db_path, path);
    for (int attempt = 0; attempt < STORE_LOCK_TAKE_ATTEMPTS_MAX; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            bool read_only = errno == EACCES || errno == EROFS || errno == EPERM;
            snprintf(detail, detail_bytes, "%s: %s", path, strerror(errno));
            return read_only ? PC_STORE_READ_ONLY : PC_IO;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK) return lock_refused(fd, detail, detail_bytes);
            snprintf(detail, detail_bytes, "%s: flock: %s", path, strerror(errno));
            close(fd);
            return PC_IO;
        }
        if (!lock_is_current(fd, path)) { /* the previous holder removed it as we opened */
            close(fd);
            continue;
        }
        pc_status status = lock_pid_write(fd, detail, detail_bytes);
        if (status != PC_OK) {
            store_sqlite_lock_release(db_path, fd);
            return status;
        }
        *fd_out = fd;
        return PC_OK;
    }
    snprintf(detail, detail_bytes, "%s: replaced %d times while taking it", path, STORE_LOCK_TAKE_ATTEMPTS_MAX);
    return PC_STORE_IN_USE;
}

/* Removes the file while still holding it: whoever opened it meanwhile sees that it
 * is no longer the file at the path and takes a new one. */
void store_sqlite_lock_release(const char *db_path, int fd) {
    if (fd < 0) return;
    char path[PC_PATH_BYTES_MAX];
    lock_path(db_path, path);
    unlink(path);
    close(fd);
}

/* ---- modes ---- */

bool store_sqlite_mode_tighten(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0) return false;
    return chmod(path, st.st_mode & 0700) == 0;
}
