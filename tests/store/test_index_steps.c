/* Goal: the indexer writes a memtable into the index file in steps of about
 * STORE_INDEX_STEP_FRAMES pages, each checkpointed at once, so that no flush of the
 * index file is long (a long one holds the writer's commit fsync behind it), and the
 * steps lose nothing: every entry is found, the file says how far it goes.
 * Method: an index of its own (no main file) takes three memtables of random keys
 * (each memtable once was one transaction: by the third, thousands of pages, as many
 * frames in the WAL before its checkpoint); after each flush, the WAL file holds at
 * most a few steps' frames (it restarts after each checkpoint, so its size is the
 * largest step's), there were several steps, and a sample of keys and one account's
 * transfers read back exact. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "store/sqlite_internal.h"
#include "test.h"

#define ENTRIES_PER_FLUSH 65536u /* each memtable flushed by the test: the steps are what it checks */
#define FLUSHES 3
#define ENTRIES (ENTRIES_PER_FLUSH * FLUSHES)
#define ADD_ENTRIES 1000 /* one add, as a batch of the writer's */
#define ACCOUNTS 1000
#define WAL_FRAME_BYTES (4096 + 24)
#define WAL_HEADER_BYTES 32
#define WAL_STEPS_MAX 3 /* a step may pass its frames while the pages a pair writes grow */

static store_index_entry_t entries[ENTRIES];

static void entries_make(void) {
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i < ENTRIES; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        uint64_t key = (state >> 1) | 1; /* 63 bits, non-zero: as store_index_key */
        entries[i] = (store_index_entry_t){key, i + 1u, 1u + i % ACCOUNTS, 1u + (i * 7u + 3u) % ACCOUNTS};
    }
}

typedef struct {
    uint64_t ts_wanted;
    bool found;
} find_ctx;

static pc_status on_found(void *ctx_opaque, uint64_t ts) {
    find_ctx *ctx = ctx_opaque;
    if (ts != ctx->ts_wanted) return PC_NOT_FOUND; /* another entry's key: keep looking */
    ctx->found = true;
    return PC_OK;
}

static void add_flushed(store_index_t *index, uint32_t from, uint32_t to) {
    char detail[256];
    for (uint32_t i = from; i < to; i += ADD_ENTRIES) {
        uint32_t count = to - i < ADD_ENTRIES ? to - i : ADD_ENTRIES;
        ASSERT_STATUS(store_index_room_wait(index, detail, sizeof detail), PC_OK);
        store_index_add(index, entries + i, count);
    }
    store_index_flush(index);
}

static long long file_bytes(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void check_found(store_index_t *index, uint32_t through) {
    sqlite3 *reader = store_index_reader_open(index);
    ASSERT_TRUE(reader != NULL);
    for (uint32_t i = 0; i < through; i += 97) {
        find_ctx ctx = {.ts_wanted = entries[i].ts};
        ASSERT_STATUS(store_index_find(index, reader, entries[i].key, on_found, &ctx), PC_OK);
        ASSERT_TRUE(ctx.found);
    }
    static uint64_t ts[ENTRIES];
    uint32_t count = 0, wanted = 0;
    for (uint32_t i = 0; i < through; i++) wanted += entries[i].debit_no == 5 || entries[i].credit_no == 5;
    ASSERT_STATUS(store_index_account(index, reader, 5, 0, UINT64_MAX, false, ENTRIES, ts, &count), PC_OK);
    ASSERT_EQ(count, wanted);
    sqlite3_close(reader);
}

static void test_memtable_written_in_steps(void) {
    char dir[] = "/tmp/paycore-index-steps-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char main_path[128], wal_path[160];
    snprintf(main_path, sizeof main_path, "%s/m.db", dir);
    snprintf(wal_path, sizeof wal_path, "%s-index-wal", main_path);
    pc_hash_key_t id_key = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
    store_index_config_t config = {.main_path = main_path, .main_instance_id = 7, .main_last_ts = UINT64_MAX,
                                   .id_key = &id_key};
    store_index_t *index;
    ASSERT_STATUS(store_index_open(&index, &config), PC_OK);
    entries_make();
    uint64_t steps_before = store_index_step_count(index);
    for (uint32_t flush = 1; flush <= FLUSHES; flush++) {
        add_flushed(index, (flush - 1) * ENTRIES_PER_FLUSH, flush * ENTRIES_PER_FLUSH);
        ASSERT_EQ(store_index_indexed_through_ts(index), flush * ENTRIES_PER_FLUSH);
        long long wal_bytes = file_bytes(wal_path);
        fprintf(stderr, "flush %u: steps %llu, WAL %lld bytes (%lld frames)\n", flush,
                (unsigned long long)(store_index_step_count(index) - steps_before), wal_bytes,
                (wal_bytes - WAL_HEADER_BYTES) / WAL_FRAME_BYTES);
        ASSERT_TRUE(wal_bytes <= WAL_HEADER_BYTES + (long long)WAL_STEPS_MAX * STORE_INDEX_STEP_FRAMES * WAL_FRAME_BYTES);
        check_found(index, flush * ENTRIES_PER_FLUSH);
    }
    ASSERT_TRUE(store_index_step_count(index) - steps_before >= 2u * FLUSHES); /* ids, accounts, meta: steps each */
    store_index_close(index);
    test_dir_remove(dir);
}

int main(void) {
    TEST_RUN(test_memtable_written_in_steps);
    return test_finish();
}
