/* store/sqlite_vfs_shim.c: forwarding for paycore's SQLite VFS layers (contract in
 * sqlite_vfs_shim.h). */
#include <string.h>

#include "store/sqlite_internal.h"
#include "store/sqlite_vfs_shim.h"

static sqlite3_file *below_of(sqlite3_file *file) { return ((vfs_shim_file *)file)->below; }

#define FORWARD(name, params, args) \
    static int shim_##name params { return below_of(file)->pMethods->x##name args; }
FORWARD(Close, (sqlite3_file *file), (below_of(file)))
FORWARD(Read, (sqlite3_file *file, void *buffer, int bytes, sqlite3_int64 offset),
        (below_of(file), buffer, bytes, offset))
FORWARD(Write, (sqlite3_file *file, const void *buffer, int bytes, sqlite3_int64 offset),
        (below_of(file), buffer, bytes, offset))
FORWARD(Sync, (sqlite3_file *file, int flags), (below_of(file), flags))
FORWARD(Truncate, (sqlite3_file *file, sqlite3_int64 size), (below_of(file), size))
FORWARD(FileSize, (sqlite3_file *file, sqlite3_int64 *size), (below_of(file), size))
FORWARD(Lock, (sqlite3_file *file, int level), (below_of(file), level))
FORWARD(Unlock, (sqlite3_file *file, int level), (below_of(file), level))
FORWARD(CheckReservedLock, (sqlite3_file *file, int *out), (below_of(file), out))
FORWARD(FileControl, (sqlite3_file *file, int op, void *arg), (below_of(file), op, arg))
FORWARD(SectorSize, (sqlite3_file *file), (below_of(file)))
FORWARD(DeviceCharacteristics, (sqlite3_file *file), (below_of(file)))
FORWARD(ShmMap, (sqlite3_file *file, int region, int bytes, int extend, void volatile **out),
        (below_of(file), region, bytes, extend, out))
FORWARD(ShmLock, (sqlite3_file *file, int offset, int n, int flags), (below_of(file), offset, n, flags))
FORWARD(ShmUnmap, (sqlite3_file *file, int delete_flag), (below_of(file), delete_flag))
FORWARD(Fetch, (sqlite3_file *file, sqlite3_int64 offset, int bytes, void **out),
        (below_of(file), offset, bytes, out))
FORWARD(Unfetch, (sqlite3_file *file, sqlite3_int64 offset, void *page), (below_of(file), offset, page))
#undef FORWARD

static void shim_ShmBarrier(sqlite3_file *file) { below_of(file)->pMethods->xShmBarrier(below_of(file)); }

#define PICK(name) (replaced->x##name ? replaced->x##name : shim_##name)

void vfs_shim_methods_build(sqlite3_io_methods methods[4], const sqlite3_io_methods *replaced) {
    for (int version = 1; version <= 3; version++) {
        methods[version] = (sqlite3_io_methods){
            .iVersion = version,
            .xClose = PICK(Close), .xRead = PICK(Read), .xWrite = PICK(Write), .xTruncate = PICK(Truncate),
            .xSync = PICK(Sync), .xFileSize = PICK(FileSize), .xLock = PICK(Lock), .xUnlock = PICK(Unlock),
            .xCheckReservedLock = PICK(CheckReservedLock), .xFileControl = PICK(FileControl),
            .xSectorSize = PICK(SectorSize), .xDeviceCharacteristics = PICK(DeviceCharacteristics),
            .xShmMap = PICK(ShmMap), .xShmLock = PICK(ShmLock), .xShmBarrier = PICK(ShmBarrier),
            .xShmUnmap = PICK(ShmUnmap), .xFetch = PICK(Fetch), .xUnfetch = PICK(Unfetch),
        };
    }
}
#undef PICK

int vfs_shim_open(sqlite3_vfs *vfs, const char *name, vfs_shim_file *file, sqlite3_file *below_storage, int flags,
                  int *out_flags, const sqlite3_io_methods methods[4]) {
    sqlite3_vfs *below = ((vfs_shim *)vfs)->below;
    file->base.pMethods = NULL;
    file->below = below_storage;
    int rc = below->xOpen(below, name, below_storage, flags, out_flags);
    if (rc != SQLITE_OK || below_storage->pMethods == NULL) return rc;
    int version = below_storage->pMethods->iVersion;
    file->base.pMethods = &methods[version < 1 ? 1 : version > 3 ? 3 : version];
    return SQLITE_OK;
}

static sqlite3_vfs *vfs_below(sqlite3_vfs *vfs) { return ((vfs_shim *)vfs)->below; }

#define VFS_FORWARD(name, params, args) \
    static int shim_vfs_##name params { return vfs_below(vfs)->x##name args; }
VFS_FORWARD(Delete, (sqlite3_vfs *vfs, const char *name, int sync_dir), (vfs_below(vfs), name, sync_dir))
VFS_FORWARD(Access, (sqlite3_vfs *vfs, const char *name, int flags, int *out), (vfs_below(vfs), name, flags, out))
VFS_FORWARD(FullPathname, (sqlite3_vfs *vfs, const char *name, int bytes, char *out),
            (vfs_below(vfs), name, bytes, out))
VFS_FORWARD(Randomness, (sqlite3_vfs *vfs, int bytes, char *out), (vfs_below(vfs), bytes, out))
VFS_FORWARD(Sleep, (sqlite3_vfs *vfs, int us), (vfs_below(vfs), us))
VFS_FORWARD(CurrentTimeInt64, (sqlite3_vfs *vfs, sqlite3_int64 *out), (vfs_below(vfs), out))
VFS_FORWARD(GetLastError, (sqlite3_vfs *vfs, int bytes, char *out), (vfs_below(vfs), bytes, out))
#undef VFS_FORWARD

void vfs_shim_register(vfs_shim *shim, const char *name, const char *below_name, int layer_file_bytes,
                       int (*open)(sqlite3_vfs *, const char *, sqlite3_file *, int, int *)) {
    shim->below = sqlite3_vfs_find(below_name);
    PC_ASSERT(shim->below != NULL);
    shim->vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = layer_file_bytes + shim->below->szOsFile,
        .mxPathname = shim->below->mxPathname,
        .zName = name,
        .xOpen = open, .xDelete = shim_vfs_Delete, .xAccess = shim_vfs_Access,
        .xFullPathname = shim_vfs_FullPathname, .xRandomness = shim_vfs_Randomness,
        .xSleep = shim_vfs_Sleep, .xCurrentTimeInt64 = shim_vfs_CurrentTimeInt64,
        .xGetLastError = shim_vfs_GetLastError,
    };
    PC_ASSERT(sqlite3_vfs_register(&shim->vfs, 0) == SQLITE_OK);
}
