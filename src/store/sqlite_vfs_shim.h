/* store/sqlite_vfs_shim.h: what paycore's SQLite VFS layers (sqlite_fault.c,
 * sqlite_vfs.c) share: a file and a VFS that forward every call to the layer below,
 * in which a layer replaces only the calls it changes. */
#ifndef PAYCORE_STORE_SQLITE_VFS_SHIM_H
#define PAYCORE_STORE_SQLITE_VFS_SHIM_H

#include <sqlite3.h>

/* A layer's file begins with this; the file below lives in the layer's own storage
 * (szOsFile bytes of the VFS below, after the layer's fields). */
typedef struct {
    sqlite3_file base; /* pMethods: the layer's */
    sqlite3_file *below;
} vfs_shim_file;

typedef struct {
    sqlite3_vfs vfs;
    sqlite3_vfs *below;
} vfs_shim;

/* methods[1..3]: one table per io-methods version (the file below decides which one
 * SQLite may call); each call forwards unless 'replaced' has it. */
void vfs_shim_methods_build(sqlite3_io_methods methods[4], const sqlite3_io_methods *replaced);

/* Registers 'shim' as 'name' over the VFS named 'below_name' (NULL: the default);
 * 'layer_file_bytes' is the layer's file struct without the file below. */
void vfs_shim_register(vfs_shim *shim, const char *name, const char *below_name, int layer_file_bytes,
                       int (*open)(sqlite3_vfs *, const char *, sqlite3_file *, int, int *));

/* Opens the file below into 'below_storage' and points 'file' at it with the table
 * of 'methods' its version calls for. */
int vfs_shim_open(sqlite3_vfs *vfs, const char *name, vfs_shim_file *file, sqlite3_file *below_storage, int flags,
                  int *out_flags, const sqlite3_io_methods methods[4]);

#endif
