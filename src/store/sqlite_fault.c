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
#include "store/sqlite_vfs_shim.h"

#define FAULT_VFS_NAME "paycore-fault"

typedef struct {
    vfs_shim_file shim;
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
static vfs_shim fault_vfs;
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

static int fault_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    fault_file *f = (fault_file *)file;
    memset(f, 0, sizeof(*f));
    f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    return vfs_shim_open(vfs, name, &f->shim, f->real, flags, out_flags, fault_methods);
}

static void fault_vfs_register(void) {
    vfs_shim_methods_build(fault_methods, &(sqlite3_io_methods){
        .xRead = fault_read, .xWrite = fault_write, .xSync = fault_sync});
    store_fault_disarm_all();
    vfs_shim_register(&fault_vfs, FAULT_VFS_NAME, NULL, (int)sizeof(fault_file), fault_open);
}

static pthread_once_t fault_vfs_once = PTHREAD_ONCE_INIT;

const char *store_sqlite_fault_vfs(void) {
    pthread_once(&fault_vfs_once, fault_vfs_register);
    return FAULT_VFS_NAME;
}
