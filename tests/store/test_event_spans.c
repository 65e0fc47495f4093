/* Goal: a merchant's events found through event_owner_spans (schema version 17,
 * sqlite_event_spans.c) list exactly as the index by owner listed them: every listing
 * (ascending, descending, after/before at the spans' edges, type and object filters,
 * limits, has_more, paging), the single event with an owner, after random
 * transactions of one owner or of many interleaved (more than a span keeps open,
 * gaps longer than a span bridges, events of no owner, further owners), some rolled
 * back; retention's deletes leave no span without its owner's events and drop none
 * that still has one. The spans: one owner's never overlap, each begins and ends at
 * an event of its owner, and between two of them holds at most
 * STORE_EVENT_SPAN_GAP_MAX rows of others; a transaction of one owner is one span.
 * Method: the answers computed here from the events the test committed (its model),
 * compared with store_events_list / store_events_get; the spans read from the file;
 * the listing's plan read from EXPLAIN QUERY PLAN (no sort, spans by key). */
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/ledger.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "store/store_events.h"
#include "store_start.h"
#include "test.h"

static char dir[256], db_path[300];

#define OWNERS 12       /* more than STORE_EVENT_SPANS_OPEN_MAX */
#define EVENTS_MAX 6000
#define OBJECTS 5

static const char *const owner_names[OWNERS] = {"key_a", "key_b", "key_c", "key_d", "key_e", "key_f",
                                                "key_g", "key_h", "key_i", "key_j", "key_k", "key_l"};
static const char *const types[] = {"payment.created", "payment.captured", "transfer.created"};

typedef struct {
    uint64_t seq;
    int owner;   /* index in owner_names, -1: none */
    int further; /* a second owner in event_owners, -1: none */
    int type;
    int object;
    bool purged;
} model_event_t;

static model_event_t model[EVENTS_MAX];
static uint32_t model_count;

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t draw(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static void object_name(int object, char *out, size_t out_bytes) { snprintf(out, out_bytes, "obj_%d", object); }

/* ---- writing ---- */

/* The owner of the next event of a transaction of this kind. */
static int owner_draw(int kind, int single, uint32_t at) {
    switch (kind) {
    case 0: return single;                                  /* one owner */
    case 1: return draw(6) == 0 ? -1 : (int)draw(OWNERS);   /* many, interleaved, some of none */
    case 2: return at % 24 < 2 ? single : (int)draw(3) + 9; /* one owner, with long gaps */
    default: return (int)(at % OWNERS);                     /* round robin past the open spans */
    }
}

static void event_write(store_events_writer_t *writer, model_event_t *m) {
    char object[16];
    object_name(m->object, object, sizeof object);
    const char *owners[2];
    uint32_t owner_count = 0;
    if (m->owner >= 0) owners[owner_count++] = owner_names[m->owner];
    if (m->owner >= 0 && m->further >= 0) owners[owner_count++] = owner_names[m->further];
    store_event_t e = {.seq = m->seq, .type = types[m->type], .object_id = object, .object_seq = 1,
                       .body = "{}", .body_bytes = 2, .owners = owners, .owner_count = owner_count};
    ASSERT_STATUS(store_events_insert(writer, &e), PC_OK);
}

/* One transaction of 1..60 events; committed (into the model) or rolled back. */
static void transaction_run(store_t *store) {
    store_tx_t *tx;
    store_events_writer_t *writer;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    ASSERT_STATUS(store_events_writer_begin(tx, &writer), PC_OK);
    int kind = (int)draw(4), single = (int)draw(OWNERS);
    uint32_t count = 1 + draw(kind == 2 ? 80 : 60);
    ASSERT_TRUE(model_count + count <= EVENTS_MAX);
    for (uint32_t i = 0; i < count; i++) {
        model_event_t *m = &model[model_count + i];
        ASSERT_STATUS(store_events_seq_next(writer, 0, &m->seq), PC_OK);
        m->owner = owner_draw(kind, single, i);
        m->further = m->owner >= 0 && draw(10) == 0 ? (int)draw(OWNERS) : -1;
        if (m->further == m->owner) m->further = -1; /* kept on the row only */
        m->type = (int)draw(3);
        m->object = (int)draw(OBJECTS);
        m->purged = false;
        event_write(writer, m);
    }
    if (draw(7) == 0) {
        store_tx_rollback(tx);
    } else {
        ASSERT_STATUS(store_tx_commit(tx), PC_OK);
        model_count += count;
    }
    store_events_writer_end(writer);
}

/* ---- the answers from the model ---- */

static bool model_sees(const model_event_t *m, int owner) {
    return !m->purged && (owner < 0 || m->owner == owner || m->further == owner);
}

static bool model_matches(const model_event_t *m, const store_events_query_t *q, int owner) {
    if (!model_sees(m, owner) || m->seq <= q->after_seq) return false;
    if (q->before_seq != 0 && m->seq >= q->before_seq) return false;
    if (q->type != NULL && strcmp(types[m->type], q->type) != 0) return false;
    if (q->object_id != NULL) {
        char object[16];
        object_name(m->object, object, sizeof object);
        if (strcmp(object, q->object_id) != 0) return false;
    }
    return true;
}

/* The seqs the listing should give (up to limit) and whether more follow. */
static uint32_t model_list(const store_events_query_t *q, int owner, uint64_t *seqs, bool *has_more) {
    uint32_t count = 0;
    *has_more = false;
    for (uint32_t k = 0; k < model_count; k++) {
        uint32_t i = q->descending ? model_count - 1 - k : k;
        if (!model_matches(&model[i], q, owner)) continue;
        if (count == q->limit) {
            *has_more = true;
            break;
        }
        seqs[count++] = model[i].seq;
    }
    return count;
}

typedef struct {
    uint64_t *seqs;
    uint32_t count, capacity;
} listed_t;

static void listed_add(const store_event_t *event, void *ctx) {
    listed_t *l = ctx;
    ASSERT_TRUE(l->count < l->capacity);
    l->seqs[l->count++] = event->seq;
}

static uint64_t want[EVENTS_MAX], got[EVENTS_MAX];

static void list_check(store_reader_t *reader, const store_events_query_t *q, int owner) {
    bool want_more, got_more;
    uint32_t want_count = model_list(q, owner, want, &want_more);
    listed_t l = {got, 0, EVENTS_MAX};
    ASSERT_STATUS(store_events_list(reader, q, listed_add, &l, &got_more), PC_OK);
    if (l.count != want_count || got_more != want_more ||
        memcmp(want, got, want_count * sizeof want[0]) != 0) {
        TEST_FAIL("owner %s desc %d after %llu before %llu type %s object %s limit %u: %u rows (more %d),"
                  " want %u (more %d)", q->owner ? q->owner : "-", q->descending,
                  (unsigned long long)q->after_seq, (unsigned long long)q->before_seq, q->type ? q->type : "-",
                  q->object_id ? q->object_id : "-", q->limit, l.count, got_more, want_count, want_more);
    }
}

/* Cursors at and beside the spans' edges, and a few anywhere. */
static uint32_t cursors_read(sqlite3 *db, uint64_t *cursors, uint32_t capacity) {
    sqlite3_stmt *stmt;
    uint32_t count = 0;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT first_seq, last_seq FROM event_owner_spans ORDER BY random()", -1,
                                 &stmt, NULL), SQLITE_OK);
    while (count + 6 <= capacity && sqlite3_step(stmt) == SQLITE_ROW) {
        for (int c = 0; c < 2; c++) {
            uint64_t edge = (uint64_t)sqlite3_column_int64(stmt, c);
            cursors[count++] = edge - 1;
            cursors[count++] = edge;
            cursors[count++] = edge + 1;
        }
    }
    sqlite3_finalize(stmt);
    cursors[0] = 0;
    return count;
}

static sqlite3 *file_open(void) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    return db;
}

/* Every filter, direction and limit at cursors by the spans' edges. */
static void listings_check(store_t *store, uint32_t cursor_count_max) {
    static const uint32_t limits[] = {1, 2, 3, 7, 16, 40, 200};
    uint64_t cursors[600];
    sqlite3 *db = file_open();
    uint32_t cursor_count = cursors_read(db, cursors, cursor_count_max < 600 ? cursor_count_max : 600);
    sqlite3_close(db);
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    for (int owner = -1; owner <= OWNERS; owner++) { /* OWNERS: a key with no events */
        const char *name = owner < 0 ? NULL : owner == OWNERS ? "key_none" : owner_names[owner];
        for (uint32_t c = 0; c < cursor_count; c++) {
            store_events_query_t q = {.owner = name, .descending = draw(2) == 1, .limit = limits[draw(7)]};
            if (q.descending) q.before_seq = cursors[c];
            else q.after_seq = cursors[c];
            if (draw(4) == 0) q.type = types[draw(3)];
            char object[16];
            if (draw(4) == 0) {
                object_name((int)draw(OBJECTS), object, sizeof object);
                q.object_id = object;
            }
            list_check(reader, &q, owner == OWNERS ? 99 : owner);
        }
    }
    store_reader_close(reader);
}

/* Paging through every owner's events, both ways, gives each event once, in order. */
static void paging_check(store_t *store) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    for (int owner = 0; owner < OWNERS; owner++) {
        for (int descending = 0; descending < 2; descending++) {
            store_events_query_t q = {.owner = owner_names[owner], .descending = descending,
                                      .limit = 1 + draw(30)};
            for (;;) {
                list_check(reader, &q, owner);
                bool more;
                listed_t l = {got, 0, EVENTS_MAX};
                ASSERT_STATUS(store_events_list(reader, &q, listed_add, &l, &more), PC_OK);
                if (!more) break;
                if (descending) q.before_seq = got[l.count - 1];
                else q.after_seq = got[l.count - 1];
            }
        }
    }
    store_reader_close(reader);
}

static void get_found(const store_event_t *event, void *ctx) { *(uint64_t *)ctx = event->seq; }

/* One event by seq with an owner: found iff the owner may see it. */
static void gets_check(store_t *store) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    for (uint32_t n = 0; n < 3000; n++) {
        const model_event_t *m = &model[draw(model_count)];
        int owner = (int)draw(OWNERS);
        uint64_t seq = 0;
        pc_status status = store_events_get(reader, m->seq, owner_names[owner], get_found, &seq);
        if (model_sees(m, owner)) {
            ASSERT_STATUS(status, PC_OK);
            ASSERT_EQ(seq, m->seq);
        } else {
            ASSERT_STATUS(status, PC_NOT_FOUND);
        }
    }
    store_reader_close(reader);
}

/* ---- the spans themselves ---- */

static int owner_index(const char *name) {
    for (int i = 0; i < OWNERS; i++) {
        if (strcmp(owner_names[i], name) == 0) return i;
    }
    TEST_FAIL("span of an unknown owner %s", name);
    return -1;
}

static int64_t model_at(uint64_t seq) {
    uint32_t lo = 0, hi = model_count;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (model[mid].seq < seq) lo = mid + 1;
        else hi = mid;
    }
    return lo < model_count && model[lo].seq == seq ? (int64_t)lo : -1;
}

/* Each span: its ends are its owner's events (retention may have deleted the first
 * ones, not all), at most GAP_MAX rows of others between two of its owner's; one
 * owner's spans in order, not overlapping, together covering every one of its events. */
static void spans_check(void) {
    sqlite3 *db = file_open();
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT owner, first_seq, last_seq FROM event_owner_spans ORDER BY owner,"
                                     " first_seq", -1, &stmt, NULL), SQLITE_OK);
    static uint32_t covered[EVENTS_MAX];
    memset(covered, 0, sizeof covered);
    int previous_owner = -1;
    uint64_t previous_last = 0;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        int owner = owner_index((const char *)sqlite3_column_text(stmt, 0));
        int64_t first = model_at((uint64_t)sqlite3_column_int64(stmt, 1));
        int64_t last = model_at((uint64_t)sqlite3_column_int64(stmt, 2));
        ASSERT_TRUE(first >= 0 && last >= first);
        ASSERT_TRUE(owner != previous_owner || model[first].seq > previous_last);
        previous_owner = owner;
        previous_last = model[last].seq;
        ASSERT_TRUE(model[first].owner == owner && model[last].owner == owner);
        uint32_t others = 0, kept = 0;
        for (int64_t i = first; i <= last; i++) {
            if (model[i].owner == owner) {
                covered[i]++;
                kept += !model[i].purged;
                others = 0;
            } else {
                ASSERT_TRUE(++others <= STORE_EVENT_SPAN_GAP_MAX);
            }
        }
        ASSERT_TRUE(kept > 0); /* retention drops a span with none of its owner's events left */
    }
    sqlite3_finalize(stmt);
    for (uint32_t i = 0; i < model_count; i++) {
        if (model[i].owner >= 0 && !model[i].purged) ASSERT_EQ(covered[i], 1u);
        if (model[i].owner < 0) ASSERT_EQ(covered[i], 0u);
    }
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'events_by_owner'", -1, &stmt,
                                 NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(stmt, 0), 0); /* no index entry per event */
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

static void dir_make(void) {
    test_dir_make(dir, sizeof dir, "paycore-eventspans");
    snprintf(db_path, sizeof db_path, "%s/e.db", dir);
}

/* Random transactions, then every listing against the model; again after retention
 * deleted the older part. */
static void test_listings_same(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    model_count = 0;
    for (int t = 0; t < 150; t++) transaction_run(store);
    spans_check();
    listings_check(store, 600);
    paging_check(store);
    gets_check(store);

    store_tx_t *tx;
    uint32_t deleted = 0;
    uint64_t before_ns = model[model_count / 2].seq;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    ASSERT_STATUS(store_events_purge(tx, before_ns, 100000, &deleted), PC_OK);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
    ASSERT_EQ(deleted, model_count / 2);
    for (uint32_t i = 0; i < model_count / 2; i++) model[i].purged = true;
    spans_check();
    listings_check(store, 300);
    paging_check(store);
    test_store_end(store, ledger);
    test_dir_remove(dir);
}

/* A transaction of one owner's events is one span; a rolled back one leaves none. */
static void test_one_owner_one_span(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    for (int rolled_back = 1; rolled_back >= 0; rolled_back--) {
        store_tx_t *tx;
        store_events_writer_t *writer;
        ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
        ASSERT_STATUS(store_events_writer_begin(tx, &writer), PC_OK);
        for (int i = 0; i < 50; i++) {
            model_event_t m = {.owner = 0, .further = -1};
            ASSERT_STATUS(store_events_seq_next(writer, 0, &m.seq), PC_OK);
            event_write(writer, &m);
        }
        if (rolled_back) store_tx_rollback(tx);
        else ASSERT_STATUS(store_tx_commit(tx), PC_OK);
        store_events_writer_end(writer);
    }
    sqlite3 *db = file_open();
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), max(last_seq) - min(first_seq) FROM event_owner_spans", -1,
                                 &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(stmt, 0), 1);
    ASSERT_EQ(sqlite3_column_int(stmt, 1), 49);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    test_store_end(store, ledger);
    test_dir_remove(dir);
}

/* The merchant's arm walks spans by key and each span's events by seq: no sort, in
 * both directions. */
static void test_listing_plan(void) {
    dir_make();
    ledger_t *ledger;
    store_t *store = test_store_start(db_path, &ledger);
    test_store_end(store, ledger);
    sqlite3 *db = file_open();
    for (int descending = 0; descending < 2; descending++) {
        store_events_query_t q = {.owner = "key_a", .descending = descending, .limit = 10};
        char sql[1024], plan[2048] = "";
        store_sqlite_events_list_sql(&q, 0, sql, sizeof sql);
        char explain[1100];
        snprintf(explain, sizeof explain, "EXPLAIN QUERY PLAN %s", sql);
        sqlite3_stmt *stmt;
        ASSERT_EQ(sqlite3_prepare_v2(db, explain, -1, &stmt, NULL), SQLITE_OK);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            size_t used = strlen(plan);
            snprintf(plan + used, sizeof plan - used, "%s\n", (const char *)sqlite3_column_text(stmt, 3));
        }
        sqlite3_finalize(stmt);
        ASSERT_TRUE(strstr(plan, "TEMP B-TREE") == NULL);
        ASSERT_TRUE(strstr(plan, "SEARCH s USING PRIMARY KEY (owner=? AND first_seq>? AND first_seq<?)") != NULL);
        ASSERT_TRUE(strstr(plan, "SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)") != NULL);
    }
    sqlite3_close(db);
    test_dir_remove(dir);
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_listing_plan);
    TEST_RUN(test_one_owner_one_span);
    TEST_RUN(test_listings_same);
    return test_finish();
}
