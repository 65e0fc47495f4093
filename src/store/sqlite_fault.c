/* store/sqlite_fault.c: I/O faults for tests, injected where SQLite meets the
 * operating system. "paycore-fault" is a SQLite VFS that wraps the platform's own
 * (unix): every call goes through to the real file, except the one a test armed,
 * which fails the way a bad disk fails (fsync: SQLITE_IOERR_FSYNC after the frames
 * were written; a write: SQLITE_FULL; a read: SQLITE_IOERR_READ). A store opened
 * with options.fault_vfs uses it for its writer connection; nothing else does.
 *
 * Counters are per process and count calls from the moment a fault is armed, over
 * every file of every connection on this VFS: syncs and writes of write-ahead logs
 * (each COMMIT syncs the WAL once), reads of any file. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"

#define FAULT_VFS_NAME "paycore-fault"

typedef struct {
    sqlite3_file base;     /* pMethods: ours */
    bool is_wal;
    sqlite3_file real[];   /* the wrapped file, szOsFile bytes */
} fault_file;

typedef struct {
    uint32_t remaining;    /* calls to let through before failing; UINT32_MAX: disarmed */
    uint32_t failing;      /* calls still to fail once triggered (STORE_FAULT_FOREVER) */
    uint64_t fired_count;
} fault_slot;

static pthread_mutex_t fault_mutex = PTHREAD_MUTEX_INITIALIZER;
static fault_slot fault_slots[STORE_FAULT_KIND_COUNT];
static sqlite3_vfs fault_vfs;
static sqlite3_vfs *real_vfs;
static sqlite3_io_methods fault_methods[4]; /* by the wrapped file's iVersion, 1..3 */

/* True when this call of 'kind' must fail. */
static bool fault_due(store_fault_kind kind) {
    pthread_mutex_lock(&fault_mutex);
    fault_slot *slot = &fault_slots[kind];
    bool due = false;
    if (slot->remaining == 0 && slot->failing > 0) {
        due = true;
        if (slot->failing != STORE_FAULT_FOREVER) slot->failing--;
    } else if (slot->remaining != UINT32_MAX && slot->remaining > 0) {
        slot->remaining--;
        due = false;
    }
    if (due) slot->fired_count++;
    pthread_mutex_unlock(&fault_mutex);
    return due;
}

void store_fault_arm(store_fault_kind kind, uint32_t calls_before, uint32_t fail_count) {
    PC_ASSERT(kind < STORE_FAULT_KIND_COUNT);
    PC_ASSERT(calls_before != UINT32_MAX && fail_count > 0);
    pthread_mutex_lock(&fault_mutex);
    fault_slots[kind] = (fault_slot){.remaining = calls_before, .failing = fail_count};
    pthread_mutex_unlock(&fault_mutex);
}

void store_fault_disarm_all(void) {
    pthread_mutex_lock(&fault_mutex);
    for (int i = 0; i < STORE_FAULT_KIND_COUNT; i++) fault_slots[i] = (fault_slot){.remaining = UINT32_MAX};
    pthread_mutex_unlock(&fault_mutex);
}

uint64_t store_fault_fired(store_fault_kind kind) {
    pthread_mutex_lock(&fault_mutex);
    uint64_t fired = fault_slots[kind].fired_count;
    pthread_mutex_unlock(&fault_mutex);
    return fired;
}

/* ---- io methods: the real file's, with three of them checked first ---- */

static sqlite3_file *real_of(sqlite3_file *file) { return ((fault_file *)file)->real; }

static int fault_close(sqlite3_file *file) { return real_of(file)->pMethods->xClose(real_of(file)); }

static int fault_read(sqlite3_file *file, void *buffer, int bytes, sqlite3_int64 offset) {
    if (fault_due(STORE_FAULT_READ)) return SQLITE_IOERR_READ;
    return real_of(file)->pMethods->xRead(real_of(file), buffer, bytes, offset);
}

static int fault_write(sqlite3_file *file, const void *buffer, int bytes, sqlite3_int64 offset) {
    if (((fault_file *)file)->is_wal && fault_due(STORE_FAULT_WAL_WRITE)) return SQLITE_FULL;
    return real_of(file)->pMethods->xWrite(real_of(file), buffer, bytes, offset);
}

static int fault_sync(sqlite3_file *file, int flags) {
    /* The frames are written (and may survive): only the sync reports failure. */
    if (((fault_file *)file)->is_wal && fault_due(STORE_FAULT_WAL_SYNC)) return SQLITE_IOERR_FSYNC;
    return real_of(file)->pMethods->xSync(real_of(file), flags);
}

#define FORWARD(name, params, args) \
    static int fault_##name params { return real_of(file)->pMethods->x##name args; }
FORWARD(Truncate, (sqlite3_file *file, sqlite3_int64 size), (real_of(file), size))
FORWARD(FileSize, (sqlite3_file *file, sqlite3_int64 *size), (real_of(file), size))
FORWARD(Lock, (sqlite3_file *file, int level), (real_of(file), level))
FORWARD(Unlock, (sqlite3_file *file, int level), (real_of(file), level))
FORWARD(CheckReservedLock, (sqlite3_file *file, int *out), (real_of(file), out))
FORWARD(FileControl, (sqlite3_file *file, int op, void *arg), (real_of(file), op, arg))
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

static void fault_shm_barrier(sqlite3_file *file) { real_of(file)->pMethods->xShmBarrier(real_of(file)); }

/* The wrapped files' tables differ by kind (database, log, ...): every call forwards
 * to the file's own; ours only mirror their version (what SQLite may call). */
static void methods_build(void) {
    for (int version = 1; version <= 3; version++) {
        fault_methods[version] = (sqlite3_io_methods){
            .iVersion = version,
            .xClose = fault_close, .xRead = fault_read, .xWrite = fault_write,
            .xTruncate = fault_Truncate, .xSync = fault_sync, .xFileSize = fault_FileSize,
            .xLock = fault_Lock, .xUnlock = fault_Unlock, .xCheckReservedLock = fault_CheckReservedLock,
            .xFileControl = fault_FileControl, .xSectorSize = fault_SectorSize,
            .xDeviceCharacteristics = fault_DeviceCharacteristics, .xShmMap = fault_ShmMap,
            .xShmLock = fault_ShmLock, .xShmBarrier = fault_shm_barrier, .xShmUnmap = fault_ShmUnmap,
            .xFetch = fault_Fetch, .xUnfetch = fault_Unfetch,
        };
    }
}

static int fault_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    fault_file *f = (fault_file *)file;
    memset(f, 0, sizeof(*f));
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || f->real->pMethods == NULL) {
        f->base.pMethods = NULL;
        return rc;
    }
    int version = f->real->pMethods->iVersion;
    f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->base.pMethods = &fault_methods[version < 1 ? 1 : version > 3 ? 3 : version];
    return SQLITE_OK;
}

#define VFS_FORWARD(name, params, args) \
    static int fault_vfs_##name params { return real_vfs->x##name args; }
VFS_FORWARD(Delete, (sqlite3_vfs *vfs, const char *name, int sync_dir), (real_vfs, name, sync_dir))
VFS_FORWARD(Access, (sqlite3_vfs *vfs, const char *name, int flags, int *out), (real_vfs, name, flags, out))
VFS_FORWARD(FullPathname, (sqlite3_vfs *vfs, const char *name, int bytes, char *out),
            (real_vfs, name, bytes, out))
VFS_FORWARD(Randomness, (sqlite3_vfs *vfs, int bytes, char *out), (real_vfs, bytes, out))
VFS_FORWARD(Sleep, (sqlite3_vfs *vfs, int us), (real_vfs, us))
VFS_FORWARD(CurrentTimeInt64, (sqlite3_vfs *vfs, sqlite3_int64 *out), (real_vfs, out))
VFS_FORWARD(GetLastError, (sqlite3_vfs *vfs, int bytes, char *out), (real_vfs, bytes, out))
#undef VFS_FORWARD

static void fault_vfs_register(void) {
    real_vfs = sqlite3_vfs_find(NULL);
    PC_ASSERT(real_vfs != NULL);
    fault_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(fault_file) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = FAULT_VFS_NAME,
        .xOpen = fault_open, .xDelete = fault_vfs_Delete, .xAccess = fault_vfs_Access,
        .xFullPathname = fault_vfs_FullPathname, .xRandomness = fault_vfs_Randomness,
        .xSleep = fault_vfs_Sleep, .xCurrentTimeInt64 = fault_vfs_CurrentTimeInt64,
        .xGetLastError = fault_vfs_GetLastError,
    };
    methods_build();
    store_fault_disarm_all();
    PC_ASSERT(sqlite3_vfs_register(&fault_vfs, 0) == SQLITE_OK);
}

static pthread_once_t fault_vfs_once = PTHREAD_ONCE_INIT;

const char *store_sqlite_fault_vfs(void) {
    pthread_once(&fault_vfs_once, fault_vfs_register);
    return FAULT_VFS_NAME;
}
