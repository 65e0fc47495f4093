/* store/sqlite_vfs.c: "paycore-walbuf", one write per transaction into the WAL
 * (contract in sqlite_vfs.h).
 *
 * SQLite's walFrames (src/wal.c) appends a transaction's frames one after another,
 * each as walWriteOneFrame's two writes: the 24-byte frame header, then the page. The
 * last frame of a commit carries the database size in pages (header bytes 4..7, zero
 * in every other frame). Then come, in this order: walRewriteChecksums (reads and
 * rewrites earlier headers, only when a transaction wrote a page twice), the WAL's
 * xSync (synchronous=FULL), and walIndexWriteHdr, which publishes the commit to other
 * connections. So a buffer written out right after the commit frame's page is on the
 * file before any of these, and its write's error is SQLite's error for that COMMIT,
 * as before.
 *
 * Which writes are buffered: appends that continue the buffer, or start where the
 * last write ended (the next transaction) or at offset 0 (the WAL header, after a
 * restart). Anything else (rewrites of earlier frames) writes the buffer out and then
 * goes straight through, so nothing written after a commit frame waits in memory.
 * The buffer is also written out before the file's xSync, xRead, xFileSize,
 * xTruncate, xFileControl and xClose, and when it would pass STORE_WALBUF_BYTES_MAX.
 * It is dropped when the connection releases the WAL's write lock (the database
 * file's xShmLock; the two files are paired at the WAL's open): what it still holds
 * then are frames of a transaction that rolled back, which another connection's
 * commit may since have overwritten in the file. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"
#include "store/sqlite_vfs.h"
#include "store/sqlite_vfs_shim.h"

#define WALBUF_VFS_NAME "paycore-walbuf"
#define WALBUF_FAULT_VFS_NAME "paycore-walbuf-fault"
#define WAL_FRAME_HEADER_BYTES 24
#define WAL_WRITE_LOCK_SLOT 0 /* wal.c's WAL_WRITE_LOCK: the wal-index lock a writer holds */
#define WALBUF_INITIAL_BYTES (32u * 1024u)

typedef struct walbuf_file walbuf_file;
struct walbuf_file {
    vfs_shim_file shim;
    bool is_wal;
    walbuf_file *wal;         /* a database file's WAL, while open (on this layer) */
    walbuf_file *database;    /* a WAL's database file (on this layer), or NULL */
    bool commit_pending;      /* a commit frame's header was written: its page goes out at once */
    uint8_t *bytes;
    size_t used_bytes;
    size_t capacity_bytes;
    sqlite3_int64 start;      /* file offset of bytes[0] */
    sqlite3_int64 last_end;   /* where the last write SQLite asked for ended */
    sqlite3_file real[];      /* the wrapped file, szOsFile bytes */
};

static vfs_shim walbuf_plain;
static vfs_shim walbuf_over_fault;
static sqlite3_io_methods walbuf_methods[4]; /* by the wrapped file's iVersion, 1..3 */
static _Atomic uint64_t wal_writes_asked;
static _Atomic uint64_t wal_writes_done;

static sqlite3_file *real_of(sqlite3_file *file) { return ((walbuf_file *)file)->real; }

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int write_below(walbuf_file *f, const void *buffer, int bytes, sqlite3_int64 offset) {
    atomic_fetch_add_explicit(&wal_writes_done, 1, memory_order_relaxed);
    return f->real->pMethods->xWrite(f->real, buffer, bytes, offset);
}

/* Writes the buffer out; on failure it is dropped (SQLite fails the transaction and
 * writes its frames again). */
static int buffer_flush(walbuf_file *f) {
    f->commit_pending = false;
    if (f->used_bytes == 0) return SQLITE_OK;
    int rc = write_below(f, f->bytes, (int)f->used_bytes, f->start);
    f->used_bytes = 0;
    return rc;
}

/* The writer's lock is going: what is still buffered are frames of a transaction
 * that did not commit (a commit writes the buffer out with its last frame). Nobody
 * reads them, and written later they would land on frames another connection
 * committed meanwhile: dropped. The next transaction starts where they did. */
static void buffer_drop(walbuf_file *f) {
    f->commit_pending = false;
    if (f->used_bytes == 0) return;
    f->last_end = f->start;
    f->used_bytes = 0;
}

static bool buffer_reserve(walbuf_file *f, size_t bytes) {
    size_t needed = f->used_bytes + bytes;
    if (needed <= f->capacity_bytes) return true;
    if (needed > STORE_WALBUF_BYTES_MAX) return false;
    size_t capacity = f->capacity_bytes ? f->capacity_bytes : WALBUF_INITIAL_BYTES;
    while (capacity < needed) capacity *= 2;
    if (capacity > STORE_WALBUF_BYTES_MAX) capacity = STORE_WALBUF_BYTES_MAX;
    uint8_t *grown = realloc(f->bytes, capacity);
    if (grown == NULL) return false;
    f->bytes = grown;
    f->capacity_bytes = capacity;
    return true;
}

static bool buffer_covers(const walbuf_file *f, int bytes, sqlite3_int64 offset) {
    return f->used_bytes > 0 && offset >= f->start && offset + bytes <= f->start + (sqlite3_int64)f->used_bytes;
}

/* True when the write may join the buffer: it continues it, or (empty) starts the
 * next transaction where the last one ended, or the WAL header after a restart. */
static bool buffer_takes(const walbuf_file *f, int bytes, sqlite3_int64 offset) {
    if (f->used_bytes > 0) return offset == f->start + (sqlite3_int64)f->used_bytes;
    return offset == f->last_end || offset == 0;
}

static bool is_commit_header(const void *buffer, int bytes) {
    return bytes == WAL_FRAME_HEADER_BYTES && be32((const uint8_t *)buffer + 4) != 0;
}

/* After a buffered write: the page that follows a commit frame's header completes
 * the transaction, and the buffer goes out with it. */
static int buffered_done(walbuf_file *f, bool commit_header) {
    if (f->commit_pending) return buffer_flush(f);
    f->commit_pending = commit_header;
    return SQLITE_OK;
}

static int wal_write(walbuf_file *f, const void *buffer, int bytes, sqlite3_int64 offset) {
    atomic_fetch_add_explicit(&wal_writes_asked, 1, memory_order_relaxed);
    bool commit_header = is_commit_header(buffer, bytes);
    if (buffer_covers(f, bytes, offset)) { /* a page written twice in one transaction */
        memcpy(f->bytes + (offset - f->start), buffer, (size_t)bytes);
        return buffered_done(f, commit_header);
    }
    if (!buffer_takes(f, bytes, offset) || !buffer_reserve(f, (size_t)bytes)) {
        /* a commit frame's page that does not fit still goes out at once: with
         * synchronous=NORMAL no xSync follows, and the write lock's release would drop
         * it while the commit is published (a committed frame never written) */
        bool commit_pending = f->commit_pending;
        int rc = buffer_flush(f);
        if (rc != SQLITE_OK) return rc;
        f->commit_pending = commit_pending;
    }
    if (buffer_takes(f, bytes, offset) && buffer_reserve(f, (size_t)bytes)) {
        if (f->used_bytes == 0) f->start = offset;
        memcpy(f->bytes + f->used_bytes, buffer, (size_t)bytes);
        f->used_bytes += (size_t)bytes;
        f->last_end = offset + bytes;
        return buffered_done(f, commit_header);
    }
    int rc = write_below(f, buffer, bytes, offset); /* the buffer is empty */
    if (offset + bytes > f->last_end) f->last_end = offset + bytes;
    f->commit_pending = rc == SQLITE_OK && commit_header; /* its page goes out at once too */
    return rc;
}

/* ---- io methods: the WAL's writes buffered, everything else forwarded ---- */

static int walbuf_write(sqlite3_file *file, const void *buffer, int bytes, sqlite3_int64 offset) {
    walbuf_file *f = (walbuf_file *)file;
    if (!f->is_wal) return f->real->pMethods->xWrite(f->real, buffer, bytes, offset);
    return wal_write(f, buffer, bytes, offset);
}

static int walbuf_close(sqlite3_file *file) {
    walbuf_file *f = (walbuf_file *)file;
    if (f->database != NULL) f->database->wal = NULL;
    if (f->wal != NULL) f->wal->database = NULL;
    int rc = buffer_flush(f);
    int closed = f->real->pMethods->xClose(f->real);
    free(f->bytes);
    f->bytes = NULL;
    f->capacity_bytes = 0;
    return rc != SQLITE_OK ? rc : closed;
}

/* On the database file: releasing the WAL's write lock ends the transaction that
 * held it, committed or not. */
static int walbuf_ShmLock(sqlite3_file *file, int offset, int n, int flags) {
    walbuf_file *f = (walbuf_file *)file;
    bool write_unlock = (flags & SQLITE_SHM_UNLOCK) && offset <= WAL_WRITE_LOCK_SLOT && offset + n > WAL_WRITE_LOCK_SLOT;
    if (write_unlock && f->wal != NULL) buffer_drop(f->wal);
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

/* Calls that see the file's contents or size, or make them durable: the buffer first. */
#define FLUSH_FIRST(name, params, args) \
    static int walbuf_##name params { \
        int rc = buffer_flush((walbuf_file *)file); \
        return rc != SQLITE_OK ? rc : real_of(file)->pMethods->x##name args; \
    }
FLUSH_FIRST(Read, (sqlite3_file *file, void *buffer, int bytes, sqlite3_int64 offset),
            (real_of(file), buffer, bytes, offset))
FLUSH_FIRST(Sync, (sqlite3_file *file, int flags), (real_of(file), flags))
FLUSH_FIRST(Truncate, (sqlite3_file *file, sqlite3_int64 size), (real_of(file), size))
FLUSH_FIRST(FileSize, (sqlite3_file *file, sqlite3_int64 *size), (real_of(file), size))
FLUSH_FIRST(FileControl, (sqlite3_file *file, int op, void *arg), (real_of(file), op, arg))
#undef FLUSH_FIRST

static bool is_walbuf_file(const sqlite3_file *file) {
    for (int v = 1; v <= 3; v++) {
        if (file->pMethods == &walbuf_methods[v]) return true;
    }
    return false;
}

static int walbuf_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    walbuf_file *f = (walbuf_file *)file;
    memset(f, 0, sizeof(*f));
    f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = vfs_shim_open(vfs, name, &f->shim, f->real, flags, out_flags, walbuf_methods);
    if (rc != SQLITE_OK || !f->is_wal) return rc;
    walbuf_file *database = (walbuf_file *)sqlite3_database_file_object(name);
    if (database != NULL && is_walbuf_file(&database->shim.base)) {
        f->database = database;
        database->wal = f;
    }
    return rc;
}

static void plain_register(void) {
    vfs_shim_methods_build(walbuf_methods, &(sqlite3_io_methods){
        .xClose = walbuf_close, .xRead = walbuf_Read, .xWrite = walbuf_write, .xTruncate = walbuf_Truncate,
        .xSync = walbuf_Sync, .xFileSize = walbuf_FileSize, .xFileControl = walbuf_FileControl,
        .xShmLock = walbuf_ShmLock});
    vfs_shim_register(&walbuf_plain, WALBUF_VFS_NAME, NULL, (int)sizeof(walbuf_file), walbuf_open);
}

static void over_fault_register(void) {
    vfs_shim_register(&walbuf_over_fault, WALBUF_FAULT_VFS_NAME, store_sqlite_fault_vfs(), (int)sizeof(walbuf_file),
                      walbuf_open);
}

static pthread_once_t plain_once = PTHREAD_ONCE_INIT;
static pthread_once_t over_fault_once = PTHREAD_ONCE_INIT;

const char *store_sqlite_walbuf_vfs(void) {
    pthread_once(&plain_once, plain_register);
    return WALBUF_VFS_NAME;
}

const char *store_sqlite_walbuf_fault_vfs(void) {
    pthread_once(&plain_once, plain_register); /* builds the methods both share */
    pthread_once(&over_fault_once, over_fault_register);
    return WALBUF_FAULT_VFS_NAME;
}

store_walbuf_counts store_sqlite_walbuf_counts(void) {
    return (store_walbuf_counts){
        .wal_writes_asked = atomic_load_explicit(&wal_writes_asked, memory_order_relaxed),
        .wal_writes_done = atomic_load_explicit(&wal_writes_done, memory_order_relaxed),
    };
}
