/* store/sqlite_vfs.h: the SQLite VFS paycore's writing connections open their
 * databases with (sqlite3_open_v2's last argument).
 *
 * "paycore-walbuf" wraps the platform's own VFS (unix). It changes nothing but how a
 * transaction's frames reach the write-ahead log: SQLite writes each frame as two
 * pwrite calls (its 24-byte header, then the page); this layer gathers the appends of
 * one transaction in memory and writes them with one pwrite, at the latest when the
 * transaction's commit frame is complete, so before the WAL's fsync (synchronous=FULL)
 * and before SQLite publishes the commit in the wal-index (any mode): COMMIT still
 * returns only after the frames were written (and, with FULL, synced), and other
 * connections never see a frame that is not in the file. Every other file, and every
 * other call, goes straight through. */
#ifndef PAYCORE_STORE_SQLITE_VFS_H
#define PAYCORE_STORE_SQLITE_VFS_H

#include <stdbool.h>
#include <stdint.h>

/* Registers the layer once (over the default VFS) and returns its name. */
const char *store_sqlite_walbuf_vfs(void);

/* The same layer over the test fault VFS (store_fault_arm): faults still happen at
 * the system call, below the buffering, so a faulted fsync still follows the frames'
 * write as it did before. */
const char *store_sqlite_walbuf_fault_vfs(void);

/* Counters over every file of this process on either layer, for tests and benches:
 * WAL writes SQLite asked for, and the writes that reached the VFS below. */
typedef struct {
    uint64_t wal_writes_asked;
    uint64_t wal_writes_done;
} store_walbuf_counts;
store_walbuf_counts store_sqlite_walbuf_counts(void);

#endif
