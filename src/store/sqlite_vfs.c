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
 * xTruncate, xFileControl and xClose, and when it would pass STORE_WALBUF_BYTES_MAX. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"
#include "store/sqlite_vfs.h"

#define WALBUF_VFS_NAME "paycore-walbuf"
#define WALBUF_FAULT_VFS_NAME "paycore-walbuf-fault"
#define WAL_FRAME_HEADER_BYTES 24
#define WALBUF_INITIAL_BYTES (32u * 1024u)

typedef struct {
    sqlite3_file base;        /* pMethods: ours */
    bool is_wal;
    bool commit_pending;      /* a commit frame's header was written: its page goes out at once */
    uint8_t *bytes;
    size_t used_bytes;
    size_t capacity_bytes;
    sqlite3_int64 start;      /* file offset of bytes[0] */
    sqlite3_int64 last_end;   /* where the last write SQLite asked for ended */
    sqlite3_file real[];      /* the wrapped file, szOsFile bytes */
} walbuf_file;

typedef struct {
    sqlite3_vfs vfs;
    sqlite3_vfs *below;
} walbuf_vfs;

static walbuf_vfs walbuf_plain;
static walbuf_vfs walbuf_over_fault;
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
        int rc = buffer_flush(f);
        if (rc != SQLITE_OK) return rc;
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
    int rc = buffer_flush(f);
    int closed = f->real->pMethods->xClose(f->real);
    free(f->bytes);
    f->bytes = NULL;
    f->capacity_bytes = 0;
    return rc != SQLITE_OK ? rc : closed;
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

#define FORWARD(name, params, args) \
    static int walbuf_##name params { return real_of(file)->pMethods->x##name args; }
FORWARD(Lock, (sqlite3_file *file, int level), (real_of(file), level))
FORWARD(Unlock, (sqlite3_file *file, int level), (real_of(file), level))
FORWARD(CheckReservedLock, (sqlite3_file *file, int *out), (real_of(file), out))
FORWARD(SectorSize, (sqlite3_file *file), (real_of(file)))
FORWARD(DeviceCharacteristics, (sqlite3_file *file), (real_of(file)))
FORWARD(ShmMap, (sqlite3_file *file, int region, int bytes, int extend, void volatile **out),
        (real_of(file), region, bytes, extend, out))
FORWARD(ShmLock, (sqlite3_file *file, int offset, int n, int flags), (real_of(file), offset, n, flags))
FORWARD(ShmUnmap, (sqlite3_file *file, int delete_flag), (real_of(file), delete_flag))
FORWARD(Fetch, (sqlite3_file *file, sqlite3_int64 offset, int bytes, void **out),
        (real_of(file), offset, bytes, out))
FORWARD(Unfetch, (sqlite3_file *file, sqlite3_int64 offset, void *page), (real_of(file), offset, page))
#undef FORWARD

static void walbuf_shm_barrier(sqlite3_file *file) { real_of(file)->pMethods->xShmBarrier(real_of(file)); }

static void methods_build(void) {
    for (int version = 1; version <= 3; version++) {
        walbuf_methods[version] = (sqlite3_io_methods){
            .iVersion = version,
            .xClose = walbuf_close, .xRead = walbuf_Read, .xWrite = walbuf_write,
            .xTruncate = walbuf_Truncate, .xSync = walbuf_Sync, .xFileSize = walbuf_FileSize,
            .xLock = walbuf_Lock, .xUnlock = walbuf_Unlock, .xCheckReservedLock = walbuf_CheckReservedLock,
            .xFileControl = walbuf_FileControl, .xSectorSize = walbuf_SectorSize,
            .xDeviceCharacteristics = walbuf_DeviceCharacteristics, .xShmMap = walbuf_ShmMap,
            .xShmLock = walbuf_ShmLock, .xShmBarrier = walbuf_shm_barrier, .xShmUnmap = walbuf_ShmUnmap,
            .xFetch = walbuf_Fetch, .xUnfetch = walbuf_Unfetch,
        };
    }
}

static sqlite3_vfs *below_of(sqlite3_vfs *vfs) { return ((walbuf_vfs *)vfs)->below; }

static int walbuf_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    walbuf_file *f = (walbuf_file *)file;
    memset(f, 0, sizeof(*f));
    sqlite3_vfs *below = below_of(vfs);
    int rc = below->xOpen(below, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || f->real->pMethods == NULL) {
        f->base.pMethods = NULL;
        return rc;
    }
    int version = f->real->pMethods->iVersion;
    f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->base.pMethods = &walbuf_methods[version < 1 ? 1 : version > 3 ? 3 : version];
    return SQLITE_OK;
}

#define VFS_FORWARD(name, params, args) \
    static int walbuf_vfs_##name params { return below_of(vfs)->x##name args; }
VFS_FORWARD(Delete, (sqlite3_vfs *vfs, const char *name, int sync_dir), (below_of(vfs), name, sync_dir))
VFS_FORWARD(Access, (sqlite3_vfs *vfs, const char *name, int flags, int *out), (below_of(vfs), name, flags, out))
VFS_FORWARD(FullPathname, (sqlite3_vfs *vfs, const char *name, int bytes, char *out),
            (below_of(vfs), name, bytes, out))
VFS_FORWARD(Randomness, (sqlite3_vfs *vfs, int bytes, char *out), (below_of(vfs), bytes, out))
VFS_FORWARD(Sleep, (sqlite3_vfs *vfs, int us), (below_of(vfs), us))
VFS_FORWARD(CurrentTimeInt64, (sqlite3_vfs *vfs, sqlite3_int64 *out), (below_of(vfs), out))
VFS_FORWARD(GetLastError, (sqlite3_vfs *vfs, int bytes, char *out), (below_of(vfs), bytes, out))
#undef VFS_FORWARD

static void layer_register(walbuf_vfs *layer, const char *name, const char *below_name) {
    layer->below = sqlite3_vfs_find(below_name);
    PC_ASSERT(layer->below != NULL);
    layer->vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(walbuf_file) + layer->below->szOsFile,
        .mxPathname = layer->below->mxPathname,
        .zName = name,
        .xOpen = walbuf_open, .xDelete = walbuf_vfs_Delete, .xAccess = walbuf_vfs_Access,
        .xFullPathname = walbuf_vfs_FullPathname, .xRandomness = walbuf_vfs_Randomness,
        .xSleep = walbuf_vfs_Sleep, .xCurrentTimeInt64 = walbuf_vfs_CurrentTimeInt64,
        .xGetLastError = walbuf_vfs_GetLastError,
    };
    PC_ASSERT(sqlite3_vfs_register(&layer->vfs, 0) == SQLITE_OK);
}

static void plain_register(void) {
    methods_build();
    layer_register(&walbuf_plain, WALBUF_VFS_NAME, NULL);
}

static void over_fault_register(void) {
    layer_register(&walbuf_over_fault, WALBUF_FAULT_VFS_NAME, store_sqlite_fault_vfs());
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
