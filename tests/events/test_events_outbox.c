/* Goal: an event exists if and only if its change committed, with the object as it
 * was after the change and a gap-free sequence per object; other subsystems emit
 * through the same transaction; merchants are recorded as the event's owners.
 * Method: a real SQLite file and writer with the events hook; a commit made to fail
 * (fault_commit_at) must leave no event; pending transfers posted, voided and expired
 * (also created and posted in one batch) give created (seq 1) then the resolution
 * (seq 2) with the pending transfer's own fields; an emitting command whose batch
 * fails leaves nothing; ids, signatures (a vector computed with Python's hmac) and
 * backoff bounds are checked on their own; stored references that name no transfer of
 * their own type read as corrupt rows. */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "payments/payments.h"
#include "store/store_api.h"
#include "store/store_events.h"
#include "test.h"
#include "writer/writer.h"

static char dir[256], db_path[300], key_path[300];
static bool rig_events_off; /* the next rig runs with --no-events */

typedef struct {
    store_t *store;
    events_t *events;
    writer_t *writer;
} rig;

static void rig_start(rig *r, const char *name, uint32_t fault_commit_at) {
    snprintf(dir, sizeof dir, "/tmp/paycore-events-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/%s.db", dir, name);
    snprintf(key_path, sizeof key_path, "%s/%s.db.key", dir, name);
    store_options_t options = {.create = true, .fault_commit_at = fault_commit_at};
    ASSERT_STATUS(store_open(&r->store, db_path, &options), PC_OK);
    events_config_t config;
    events_config_default(&config);
    config.db_path = db_path;
    config.retention_s = 0; /* no retention rounds: every commit here is the test's own */
    config.enabled = !rig_events_off;
    ASSERT_STATUS(events_open(&r->events, r->store, &config), PC_OK);
    writer_config_t writer_config = {.batch_hook = events_batch_hook(r->events)};
    ASSERT_STATUS(writer_start(&r->writer, r->store, key_path, &writer_config), PC_OK);
    ASSERT_STATUS(events_start(r->events, r->writer), PC_OK);
}

static void rig_stop(rig *r) {
    events_stop(r->events);
    writer_stop(r->writer);
    events_close(r->events);
    store_close(r->store);
}

static void accounts(rig *r, const char *a, const char *b) {
    ledger_account_t list[2] = {0};
    snprintf(list[0].id, sizeof list[0].id, "%s", a);
    snprintf(list[1].id, sizeof list[1].id, "%s", b);
    memcpy(list[0].currency, "USD", 4);
    memcpy(list[1].currency, "USD", 4);
    list[0].metadata_json = "{\"k\":\"v\"}";
    ledger_account_result_t results[2];
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 2, .accounts = list,
                        .account_results = results};
    ASSERT_STATUS(writer_submit_wait(r->writer, &cmd), PC_OK);
    ASSERT_STATUS(results[0].status, PC_OK);
}

static ledger_transfer_t transfer_make(const char *id, const char *pending_id, int64_t amount, uint16_t flags) {
    ledger_transfer_t t = {0};
    snprintf(t.id, sizeof t.id, "%s", id);
    if (pending_id == NULL) {
        snprintf(t.debit_account_id, sizeof t.debit_account_id, "a");
        snprintf(t.credit_account_id, sizeof t.credit_account_id, "b");
        memcpy(t.currency, "USD", 4);
        t.code = 7;
    } else {
        snprintf(t.pending_id, sizeof t.pending_id, "%s", pending_id);
    }
    t.amount = amount;
    t.flags = flags;
    return t;
}

static pc_status transfers(rig *r, ledger_transfer_t *list, uint32_t count) {
    ledger_transfer_result_t results[8];
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = count, .transfers = list,
                        .transfer_results = results};
    pc_status status = writer_submit_wait(r->writer, &cmd);
    for (uint32_t i = 0; status == PC_OK && i < count; i++) ASSERT_STATUS(results[i].status, PC_OK);
    return status;
}

/* ---- reading events back ---- */

typedef struct {
    json_t *events;            /* array of parsed bodies */
} collected;

static void collect(const store_event_t *event, void *ctx) {
    json_error_t error;
    json_t *body = json_loadb(event->body, event->body_bytes, 0, &error);
    if (body == NULL) TEST_FAIL("event %llu is not JSON: %s", (unsigned long long)event->seq, error.text);
    char id[EVENTS_ID_SIZE];
    events_id_format(event->seq, id);
    ASSERT_STR_EQ(json_string_value(json_object_get(body, "id")), id);
    ASSERT_STR_EQ(json_string_value(json_object_get(body, "type")), event->type);
    ASSERT_STR_EQ(json_string_value(json_object_get(body, "object_id")), event->object_id);
    ASSERT_EQ(json_integer_value(json_object_get(body, "object_seq")), event->object_seq);
    json_array_append_new(((collected *)ctx)->events, body);
}

static json_t *events_all(rig *r, const char *owner) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(r->store, &reader), PC_OK);
    collected c = {json_array()};
    store_events_query_t query = {.limit = 100, .owner = owner};
    bool has_more;
    ASSERT_STATUS(events_list(reader, &query, collect, &c, &has_more), PC_OK); /* references rendered */
    ASSERT_FALSE(has_more);
    store_reader_close(reader);
    return c.events;
}

/* The bodies as stored, in order, joined by newlines. */
static void stored_body(const store_event_t *event, void *ctx) {
    char *joined = ctx;
    size_t used = strlen(joined);
    ASSERT_TRUE(used + event->body_bytes + 2 < 8192);
    memcpy(joined + used, event->body, event->body_bytes);
    joined[used + event->body_bytes] = '\n';
    joined[used + event->body_bytes + 1] = '\0';
}

static void events_stored(rig *r, char joined[8192]) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(r->store, &reader), PC_OK);
    store_events_query_t query = {.limit = 100};
    bool has_more;
    joined[0] = '\0';
    ASSERT_STATUS(store_events_list(reader, &query, stored_body, joined, &has_more), PC_OK);
    store_reader_close(reader);
}

static uint64_t transfer_timestamp_ns(rig *r, const char *id) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(r->store, &reader), PC_OK);
    store_transfer_t t;
    ASSERT_STATUS(store_read_transfer(reader, id, &t), PC_OK);
    uint64_t timestamp_ns = t.transfer.timestamp_ns;
    store_transfer_free(&t);
    store_reader_close(reader);
    return timestamp_ns;
}

/* "type:object_id:object_seq" of every event, in order. */
static void events_summary(json_t *events, char *out, size_t out_bytes) {
    size_t used = 0;
    out[0] = '\0';
    size_t index;
    json_t *event;
    json_array_foreach(events, index, event) {
        used += (size_t)snprintf(out + used, out_bytes - used, "%s%s:%s:%lld", index ? " " : "",
                                 json_string_value(json_object_get(event, "type")),
                                 json_string_value(json_object_get(event, "object_id")),
                                 (long long)json_integer_value(json_object_get(event, "object_seq")));
    }
}

static json_t *event_object(json_t *event) {
    return json_object_get(json_object_get(event, "data"), "object");
}

/* ---- tests ---- */

static void test_atomic_with_commit(void) {
    rig r;
    rig_start(&r, "atomic", 2); /* commit 1: accounts; 2: t1 fails; 3: t2 */
    accounts(&r, "a", "b");
    ledger_transfer_t t1 = transfer_make("t1", NULL, 10, 0);
    ASSERT_STATUS(transfers(&r, &t1, 1), PC_STORE_COMMIT_FAILED);
    ledger_transfer_t t2 = transfer_make("t2", NULL, 20, 0);
    ASSERT_STATUS(transfers(&r, &t2, 1), PC_OK);
    json_t *events = events_all(&r, NULL);
    char summary[512];
    events_summary(events, summary, sizeof summary);
    ASSERT_STR_EQ(summary, "account.created:a:1 account.created:b:1 transfer.created:t2:1");
    json_t *account = event_object(json_array_get(events, 0));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(account, "metadata"), "k")), "v");
    ASSERT_EQ(json_integer_value(json_object_get(account, "credits_posted")), 0);
    json_t *t = event_object(json_array_get(events, 2));
    ASSERT_EQ(json_integer_value(json_object_get(t, "amount")), 20);
    ASSERT_STR_EQ(json_string_value(json_object_get(t, "debit_account_id")), "a");
    json_decref(events);
    rig_stop(&r);
}

static void test_pending_resolutions(void) {
    rig r;
    rig_start(&r, "pending", 0);
    accounts(&r, "a", "b");
    ledger_transfer_t p[] = {transfer_make("p1", NULL, 100, LEDGER_TRANSFER_PENDING),
                             transfer_make("p2", NULL, 200, LEDGER_TRANSFER_PENDING)};
    p[0].metadata_json = "{\"order\":\"o-1\"}";
    ASSERT_STATUS(transfers(&r, p, 2), PC_OK);
    ledger_transfer_t resolve[] = {transfer_make("post1", "p1", 60, LEDGER_TRANSFER_POST_PENDING),
                                   transfer_make("void2", "p2", 0, LEDGER_TRANSFER_VOID_PENDING)};
    ASSERT_STATUS(transfers(&r, resolve, 2), PC_OK);
    /* created and posted in one batch: the pending transfer is found in the batch */
    ledger_transfer_t same[] = {transfer_make("p3", NULL, 30, LEDGER_TRANSFER_PENDING),
                                transfer_make("post3", "p3", 30, LEDGER_TRANSFER_POST_PENDING)};
    ASSERT_STATUS(transfers(&r, same, 2), PC_OK);
    ledger_transfer_t expiring = transfer_make("p4", NULL, 40, LEDGER_TRANSFER_PENDING);
    expiring.timeout_s = 1;
    ASSERT_STATUS(transfers(&r, &expiring, 1), PC_OK);
    char summary[1024];
    for (int waited_ms = 0; waited_ms < 30000; waited_ms += 50) { /* the writer's timer expires it */
        json_t *events = events_all(&r, NULL);
        events_summary(events, summary, sizeof summary);
        json_decref(events);
        if (strstr(summary, "transfer.expired") != NULL) break;
        usleep(50000);
    }
    ASSERT_STR_EQ(summary, "account.created:a:1 account.created:b:1 transfer.created:p1:1 transfer.created:p2:1"
                           " transfer.posted:p1:2 transfer.voided:p2:2 transfer.created:p3:1 transfer.posted:p3:2"
                           " transfer.created:p4:1 transfer.expired:p4:2");
    json_t *events = events_all(&r, NULL);
    json_t *posted = json_array_get(events, 4);
    json_t *object = event_object(posted);
    ASSERT_STR_EQ(json_string_value(json_object_get(object, "id")), "p1");
    ASSERT_EQ(json_integer_value(json_object_get(object, "amount")), 100); /* the hold, not the post */
    ASSERT_STR_EQ(json_string_value(json_object_get(object, "pending_state")), "posted");
    json_t *resolving = json_object_get(json_object_get(posted, "data"), "resolving_transfer");
    ASSERT_STR_EQ(json_string_value(json_object_get(resolving, "id")), "post1");
    ASSERT_EQ(json_integer_value(json_object_get(resolving, "amount")), 60);
    ASSERT_STR_EQ(json_string_value(json_object_get(event_object(json_array_get(events, 2)), "pending_state")), "pending");
    ASSERT_STR_EQ(json_string_value(json_object_get(event_object(json_array_get(events, 7)), "pending_state")), "posted");
    json_t *expired = event_object(json_array_get(events, 9));
    ASSERT_STR_EQ(json_string_value(json_object_get(expired, "pending_state")), "expired");
    ASSERT_EQ(json_integer_value(json_object_get(expired, "timeout_s")), 1);
    /* stored as references to the transfers, rendered byte for byte as they were
     * stored whole: the posted event's data, as text */
    char stored[8192];
    events_stored(&r, stored);
    char refs[512];
    snprintf(refs, sizeof refs, "\n@transfer:%llu\n@transfer:%llu\n@transfer:%llu:%llu:post1\n",
             (unsigned long long)transfer_timestamp_ns(&r, "p1"), (unsigned long long)transfer_timestamp_ns(&r, "p2"),
             (unsigned long long)transfer_timestamp_ns(&r, "p1"), (unsigned long long)transfer_timestamp_ns(&r, "post1"));
    ASSERT_TRUE(strstr(stored, refs) != NULL);
    char *data = json_dumps(json_object_get(posted, "data"), JSON_COMPACT);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "{\"object\":{\"id\":\"p1\",\"debit_account_id\":\"a\",\"credit_account_id\":\"b\",\"amount\":100,"
             "\"currency\":\"USD\",\"code\":7,\"flags\":[\"pending\"],\"timeout_s\":0,\"metadata\":{\"order\":\"o-1\"},"
             "\"timestamp\":%llu,\"pending_state\":\"posted\"},\"resolving_transfer\":{\"id\":\"post1\","
             "\"debit_account_id\":\"a\",\"credit_account_id\":\"b\",\"amount\":60,\"currency\":\"USD\","
             "\"code\":7,\"flags\":[\"post_pending\"],\"pending_id\":\"p1\",\"timeout_s\":0,\"metadata\":{},"
             "\"timestamp\":%llu}}",
             (unsigned long long)transfer_timestamp_ns(&r, "p1"), (unsigned long long)transfer_timestamp_ns(&r, "post1"));
    ASSERT_STR_EQ(data, expected);
    free(data);
    /* ids increase with creation time */
    for (size_t i = 1; i < json_array_size(events); i++) {
        ASSERT_TRUE(strcmp(json_string_value(json_object_get(json_array_get(events, i - 1), "id")),
                           json_string_value(json_object_get(json_array_get(events, i), "id"))) < 0);
    }
    json_decref(events);
    rig_stop(&r);
}

/* A stored reference that does not name a transfer of its own type is a corrupt row:
 * never rendered as something else, never a crash. */
static pc_status render_row(rig *r, const char *type, const char *object_id, const char *body) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(r->store, &reader), PC_OK);
    store_event_t row = {.seq = 1, .type = type, .object_id = object_id, .object_seq = 1, .body = body,
                         .body_bytes = strlen(body)};
    char *text = NULL;
    size_t bytes = 0;
    pc_status status = events_body_render(reader, &row, &text, &bytes);
    if (status != PC_OK) ASSERT_TRUE(text == NULL);
    free(text);
    store_reader_close(reader);
    return status;
}

static void test_corrupt_references(void) {
    rig r;
    rig_start(&r, "corrupt", 0);
    accounts(&r, "a", "b");
    ledger_transfer_t hold = transfer_make("p1", NULL, 100, LEDGER_TRANSFER_PENDING);
    ASSERT_STATUS(transfers(&r, &hold, 1), PC_OK);
    ledger_transfer_t post = transfer_make("post1", "p1", 100, LEDGER_TRANSFER_POST_PENDING);
    ASSERT_STATUS(transfers(&r, &post, 1), PC_OK);
    unsigned long long hold_ns = (unsigned long long)transfer_timestamp_ns(&r, "p1");
    unsigned long long post_ns = (unsigned long long)transfer_timestamp_ns(&r, "post1");
    char created[64], posted[128], body[160];
    snprintf(created, sizeof created, "@transfer:%llu", hold_ns);
    snprintf(posted, sizeof posted, "@transfer:%llu:%llu:post1", hold_ns, post_ns);
    ASSERT_STATUS(render_row(&r, "transfer.created", "p1", created), PC_OK);
    ASSERT_STATUS(render_row(&r, "transfer.posted", "p1", posted), PC_OK);
    /* a well-formed reference under a type that is not a transfer's */
    ASSERT_STATUS(render_row(&r, "payment.captured", "p1", posted), PC_STORE_CORRUPT);
    ASSERT_STATUS(render_row(&r, "account.created", "p1", created), PC_STORE_CORRUPT);
    /* the shape of the other type */
    ASSERT_STATUS(render_row(&r, "transfer.created", "p1", posted), PC_STORE_CORRUPT);
    ASSERT_STATUS(render_row(&r, "transfer.posted", "p1", created), PC_STORE_CORRUPT);
    /* no such transfer, another transfer's id, a resolving id that does not match */
    snprintf(body, sizeof body, "@transfer:%llu", hold_ns + 1);
    ASSERT_STATUS(render_row(&r, "transfer.created", "p1", body), PC_STORE_CORRUPT);
    ASSERT_STATUS(render_row(&r, "transfer.created", "post1", created), PC_STORE_CORRUPT);
    snprintf(body, sizeof body, "@transfer:%llu:%llu:void9", hold_ns, post_ns);
    ASSERT_STATUS(render_row(&r, "transfer.posted", "p1", body), PC_STORE_CORRUPT);
    /* malformed numbers */
    ASSERT_STATUS(render_row(&r, "transfer.created", "p1", "@transfer:"), PC_STORE_CORRUPT);
    ASSERT_STATUS(render_row(&r, "transfer.created", "p1", "@transfer:12x"), PC_STORE_CORRUPT);
    ASSERT_STATUS(render_row(&r, "transfer.created", "p1", "@transfer:99999999999999999999999"), PC_STORE_CORRUPT);
    snprintf(body, sizeof body, "@transfer:%llu:%llu:", hold_ns, post_ns);
    ASSERT_STATUS(render_row(&r, "transfer.posted", "p1", body), PC_STORE_CORRUPT);
    rig_stop(&r);
}

/* ---- another subsystem emitting through its command ---- */

typedef struct {
    writer_cmd_t cmd;
    events_t *events;
    const char *object_json;
    const char *owners_account_id;
    const char *object_ref;        /* or NULL: stored instead of the event */
    bool fail_after;
    pc_status emit_status;
    char id[EVENTS_ID_SIZE];
} emit_job;

static pc_status emit_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    emit_job *job = (emit_job *)cmd;
    events_emit_t event = {.type = EVENTS_TYPE_PAYMENT_CAPTURED, .object_id = "pay_1", .object_seq = 3,
                           .object_json = job->object_json, .object_json_dumped = job->object_ref != NULL,
                           .object_ref = job->object_ref, .owners = {"key_m"}, .owner_count = 1,
                           .owners_account_id = job->owners_account_id};
    job->emit_status = events_emit(job->events, tx, &event, job->id);
    if (job->emit_status != PC_OK) return job->emit_status;
    return job->fail_after ? PC_INTERNAL : PC_OK; /* the payment's own rows failed */
}

static pc_status emit_account_run(rig *r, const char *object_json, const char *owners_account_id,
                                  bool fail_after) {
    emit_job job = {.cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = emit_in_tx}, .events = r->events,
                    .object_json = object_json, .owners_account_id = owners_account_id,
                    .fail_after = fail_after};
    pc_status status = writer_submit_wait(r->writer, &job.cmd);
    if (job.emit_status != PC_OK) return job.emit_status;
    return status == PC_OK ? PC_OK : PC_STORE_COMMIT_FAILED;
}

static pc_status emit_run(rig *r, const char *object_json, bool fail_after) {
    return emit_account_run(r, object_json, NULL, fail_after);
}

static void test_emit(void) {
    rig r;
    rig_start(&r, "emit", 0);
    ASSERT_STATUS(emit_run(&r, "{\"id\":\"pay_1\",\"status\":\"captured\"}", true), PC_STORE_COMMIT_FAILED);
    ASSERT_STATUS(emit_run(&r, "[1,2]", false), PC_INVALID_ARGUMENT);
    ASSERT_STATUS(emit_run(&r, "{\"id\":", false), PC_INVALID_ARGUMENT);
    json_t *events = events_all(&r, NULL);
    ASSERT_EQ(json_array_size(events), 0);
    json_decref(events);
    ASSERT_STATUS(emit_run(&r, "{\"id\":\"pay_1\",\"status\":\"captured\"}", false), PC_OK);
    events = events_all(&r, "key_m");
    ASSERT_EQ(json_array_size(events), 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(event_object(json_array_get(events, 0)), "status")), "captured");
    ASSERT_EQ(json_integer_value(json_object_get(json_array_get(events, 0), "object_seq")), 3);
    json_decref(events);
    events = events_all(&r, "key_other");
    ASSERT_EQ(json_array_size(events), 0);
    json_decref(events);
    rig_stop(&r);
}

/* Goal: an event stored as a reference is held to EVENTS_BODY_BYTES_MAX as the whole
 * event it stands for (its size counted, not rendered): an object whose event is
 * exactly the limit is stored as its reference, one byte more answers PC_LIMIT_REACHED
 * and stores nothing, and a reference that is not one answers PC_INVALID_ARGUMENT. */
static pc_status emit_ref_run(rig *r, size_t object_bytes, const char *ref) {
    char *object = malloc(object_bytes + 1);
    ASSERT_TRUE(object != NULL && object_bytes >= 8);
    memset(object, 'x', object_bytes);
    memcpy(object, "{\"p\":\"", 6);
    memcpy(object + object_bytes - 2, "\"}", 3);
    emit_job job = {.cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = emit_in_tx}, .events = r->events,
                    .object_json = object, .object_ref = ref};
    pc_status status = writer_submit_wait(r->writer, &job.cmd);
    free(object);
    if (job.emit_status != PC_OK) return job.emit_status;
    return status;
}

static void test_emit_ref_limit(void) {
    rig r;
    rig_start(&r, "emit_ref", 0);
    events_buf_t envelope = {0}; /* a seq of today's width: 19 digits, as the one written */
    uint64_t now_ns = pc_wall_ns();
    ASSERT_TRUE(now_ns >= 1000000000000000000ull);
    events_render_envelope(&envelope, now_ns, EVENTS_TYPE_PAYMENT_CAPTURED, "pay_1", 3, "", 0, NULL, 0);
    size_t object_max = EVENTS_BODY_BYTES_MAX - envelope.bytes;
    events_buf_free(&envelope);
    ASSERT_STATUS(emit_ref_run(&r, object_max + 1, "@payment:pay_1:3"), PC_LIMIT_REACHED);
    ASSERT_STATUS(emit_ref_run(&r, 64, "payment:pay_1:3"), PC_INVALID_ARGUMENT);
    ASSERT_STATUS(emit_ref_run(&r, 64, "@"), PC_INVALID_ARGUMENT);
    char stored[8192];
    events_stored(&r, stored);
    ASSERT_STR_EQ(stored, "");
    ASSERT_STATUS(emit_ref_run(&r, object_max, "@payment:pay_1:3"), PC_OK);
    events_stored(&r, stored);
    ASSERT_STR_EQ(stored, "@payment:pay_1:3\n");
    rig_stop(&r);
}

/* Goal: with --no-events an emitter writes nothing and its change still commits. */
static void test_emit_disabled(void) {
    rig r;
    rig_events_off = true;
    rig_start(&r, "emit_off", 0);
    rig_events_off = false;
    ASSERT_STATUS(emit_run(&r, "{\"id\":\"pay_1\",\"status\":\"captured\"}", false), PC_OK);
    json_t *events = events_all(&r, NULL);
    ASSERT_EQ(json_array_size(events), 0);
    json_decref(events);
    rig_stop(&r);
}

/* ---- owners: the merchant keys granted an account ---- */

/* A merchant key 'key_id' made with a grant of 'account_id', as the API makes one: the
 * key's row in the command's transaction, the grant through the writer (its grants in
 * memory and the store's row). */
static pc_status key_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    store_api_key_t key = {.scope = "merchant", .name = "m", .created_ns = 1};
    snprintf(key.id, sizeof key.id, "%s", cmd->grantee_id);
    return store_api_key_insert(tx, &key);
}

static void merchant_key(rig *r, const char *key_id, const char *account_id) {
    const char *accounts[] = {account_id};
    writer_cmd_t grant = {.kind = WRITER_CMD_EXEC, .in_transaction = key_in_tx, .grantee_id = key_id,
                          .grant_account_ids = accounts, .grant_count = 1};
    ASSERT_STATUS(writer_submit_wait(r->writer, &grant), PC_OK);
}

static void test_owners(void) {
    rig r;
    rig_start(&r, "owners", 0);
    merchant_key(&r, "key_m", "m1");
    accounts(&r, "a", "m1");
    accounts(&r, "b", "c");
    ledger_transfer_t t = transfer_make("t1", NULL, 5, 0);
    snprintf(t.credit_account_id, sizeof t.credit_account_id, "m1");
    ASSERT_STATUS(transfers(&r, &t, 1), PC_OK);
    ledger_transfer_t other = transfer_make("t2", NULL, 5, 0);
    ASSERT_STATUS(transfers(&r, &other, 1), PC_OK); /* a -> b: no merchant's */
    json_t *events = events_all(&r, "key_m");
    char summary[256];
    events_summary(events, summary, sizeof summary);
    ASSERT_STR_EQ(summary, "account.created:m1:1 transfer.created:t1:1");
    json_decref(events);
    /* owners named twice (explicitly and by the account's grant) are one owner */
    ASSERT_STATUS(emit_account_run(&r, "{\"id\":\"pay_1\"}", "m1", false), PC_OK);
    events = events_all(&r, "key_m");
    events_summary(events, summary, sizeof summary);
    ASSERT_STR_EQ(summary, "account.created:m1:1 transfer.created:t1:1 payment.captured:pay_1:3");
    json_decref(events);
    rig_stop(&r);
}

/* Goal: an emitter's event is owned by the keys granted the account it names, and by
 * nobody else. Method: key_g granted m2 only; an event naming m2 (no explicit owners)
 * is listed for key_g, not for another key. */
static pc_status emit_granted_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    emit_job *job = (emit_job *)cmd;
    events_emit_t event = {.type = EVENTS_TYPE_REFUND_PENDING, .object_id = "re_1", .object_seq = 1,
                           .object_json = "{\"id\":\"re_1\"}", .owners_account_id = "m2"};
    return events_emit(job->events, tx, &event, job->id);
}

static void test_emit_account_owners(void) {
    rig r;
    rig_start(&r, "emit_owners", 0);
    merchant_key(&r, "key_g", "m2");
    accounts(&r, "m2", "c");
    emit_job job = {.cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = emit_granted_in_tx}, .events = r.events};
    ASSERT_STATUS(writer_submit_wait(r.writer, &job.cmd), PC_OK);
    ASSERT_TRUE(strncmp(job.id, "evt_", 4) == 0);
    json_t *events = events_all(&r, "key_g");
    char summary[256];
    events_summary(events, summary, sizeof summary);
    ASSERT_STR_EQ(summary, "account.created:m2:1 refund.pending:re_1:1");
    json_decref(events);
    events = events_all(&r, "key_m");
    ASSERT_EQ(json_array_size(events), 0);
    json_decref(events);
    rig_stop(&r);
}

/* ---- types ---- */

/* Goal: every payment state has its event type (payments name the type after the
 * state reached), in the states' order (payments/emit.c finds it by the state's
 * place), and the endpoint patterns select what they say. */
static void test_types(void) {
    for (int state = 0; state < PAY_STATE_COUNT; state++) {
        char name[64];
        events_type type;
        snprintf(name, sizeof name, "payment.%s", pay_state_name((pay_state)state));
        if (!events_type_parse(name, &type)) TEST_FAIL("no event type %s", name);
        ASSERT_STR_EQ(events_type_name(type), name);
        ASSERT_EQ(type, EVENTS_TYPE_PAYMENT_CREATED + state); /* payments find it by the state's place */
    }
    uint64_t mask, all;
    ASSERT_TRUE(events_type_pattern_mask("*", &all));
    ASSERT_TRUE(events_type_pattern_mask("refund.*", &mask));
    ASSERT_EQ(__builtin_popcountll(mask), 5);
    for (uint32_t i = 0; i < EVENTS_TYPE_COUNT; i++) {
        bool refund = strncmp(events_type_name((events_type)i), "refund.", 7) == 0;
        ASSERT_EQ(((mask >> i) & 1) != 0, refund);
        ASSERT_TRUE((all >> i) & 1);
    }
    ASSERT_TRUE(!events_type_pattern_mask("refund", &mask));
    ASSERT_TRUE(!events_type_pattern_mask("refunds.*", &mask));
    ASSERT_TRUE(!events_type_pattern_mask(".*", &mask));
    ASSERT_STATUS(events_types_mask("transfer.posted,payout.*", &mask), PC_OK);
    ASSERT_EQ(__builtin_popcountll(mask), 1 + 7);
    ASSERT_STATUS(events_types_mask("transfer.posted,nope.*", &mask), PC_EVENT_TYPE_UNKNOWN);
}

/* ---- ids, signatures, backoff ---- */

static void test_ids(void) {
    char id[EVENTS_ID_SIZE];
    uint64_t seq;
    events_id_format(0x18ec79383974bc75ull, id);
    ASSERT_STR_EQ(id, "evt_18ec79383974bc75");
    ASSERT_TRUE(events_id_parse(id, &seq));
    ASSERT_EQ(seq, 0x18ec79383974bc75ull);
    const char *bad[] = {"evt_18EC79383974BC75", "evt_18ec79383974bc7", "evt_18ec79383974bc75x", "evt_0000000000000000",
                         "evt_8000000000000000", "xyz_18ec79383974bc75", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) ASSERT_FALSE(events_id_parse(bad[i], &seq));
    events_type type;
    ASSERT_TRUE(events_type_parse("transfer.expired", &type));
    ASSERT_STR_EQ(events_type_name(type), "transfer.expired");
    ASSERT_FALSE(events_type_parse("transfer.deleted", &type));
}

static void test_signatures(void) {
    const char *body = "{\"a\":1}";
    const char *secrets[] = {"whsec_test", "whsec_old"};
    char header[EVENTS_SIGNATURE_HEADER_SIZE];
    events_signature_header(secrets, 1, 1700000000, body, strlen(body), header);
    /* python3: hmac.new(b'whsec_test', b'1700000000.{"a":1}', hashlib.sha256).hexdigest() */
    ASSERT_STR_EQ(header, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    ASSERT_STATUS(events_signature_verify("whsec_test", header, body, strlen(body), 1700000100, 300), PC_OK);
    ASSERT_STATUS(events_signature_verify("whsec_test", header, body, strlen(body), 1700000301, 300), PC_SIGNATURE_EXPIRED);
    ASSERT_STATUS(events_signature_verify("whsec_test", header, body, strlen(body), 1699999699, 300), PC_SIGNATURE_EXPIRED);
    ASSERT_STATUS(events_signature_verify("whsec_other", header, body, strlen(body), 1700000000, 300), PC_SIGNATURE_MISMATCH);
    ASSERT_STATUS(events_signature_verify("whsec_test", header, "{\"a\":2}", 7, 1700000000, 300), PC_SIGNATURE_MISMATCH);
    /* a rotation: both secrets sign, either verifies */
    events_signature_header(secrets, 2, 1700000000, body, strlen(body), header);
    ASSERT_STR_EQ(header, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
                          ",v1=b9d801502bb535e960ee9aeee7a294b082bda5089d79c7db610b85116ce6faa6");
    ASSERT_STATUS(events_signature_verify("whsec_old", header, body, strlen(body), 1700000000, 300), PC_OK);
    ASSERT_STATUS(events_signature_verify("whsec_test", header, body, strlen(body), 1700000000, 300), PC_OK);
    const char *malformed[] = {"", "t=1700000000", "v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789",
                               "t=abc,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789",
                               "t=1700000000,v1=zz877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789",
                               "t=1700000000,v1=3887"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        ASSERT_STATUS(events_signature_verify("whsec_test", malformed[i], body, strlen(body), 1700000000, 300),
                      PC_SIGNATURE_HEADER_INVALID);
    }
}

static void test_backoff(void) {
    events_config_t config;
    events_config_default(&config);
    for (uint32_t attempts = 1; attempts < 40; attempts++) {
        uint64_t full_ms = config.retry_base_ms;
        for (uint32_t i = 1; i < attempts && full_ms < config.retry_cap_ms; i++) full_ms *= 2;
        if (full_ms > config.retry_cap_ms) full_ms = config.retry_cap_ms;
        for (int draw = 0; draw < 50; draw++) {
            uint64_t delay_ms = events_backoff_ms(&config, attempts);
            if (delay_ms < full_ms / 2 || delay_ms > full_ms) {
                TEST_FAIL("attempt %u: %llu ms outside [%llu, %llu]", attempts, (unsigned long long)delay_ms,
                          (unsigned long long)full_ms / 2, (unsigned long long)full_ms);
            }
        }
    }
    /* jitter: draws differ */
    uint64_t first = events_backoff_ms(&config, 10);
    bool differs = false;
    for (int draw = 0; draw < 50 && !differs; draw++) differs = events_backoff_ms(&config, 10) != first;
    ASSERT_TRUE(differs);
}

/* A lost key file while endpoints hold secrets sealed with it stops the start. */
static void test_key_file(void) {
    uint8_t key[EVENTS_KEY_BYTES], again[EVENTS_KEY_BYTES];
    snprintf(dir, sizeof dir, "/tmp/paycore-events-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/k.db", dir);
    ASSERT_STATUS(events_key_load(db_path, false, key), PC_EVENTS_KEY_INVALID);
    ASSERT_STATUS(events_key_load(db_path, true, key), PC_OK);
    ASSERT_STATUS(events_key_load(db_path, false, again), PC_OK);
    ASSERT_EQ(memcmp(key, again, sizeof key), 0);
    uint8_t box[STORE_EVENT_SECRET_BOX_BYTES_MAX];
    uint32_t box_bytes;
    char secret[EVENTS_SECRET_SIZE];
    ASSERT_STATUS(events_secret_seal(key, "we_1", "whsec_abc", box, &box_bytes), PC_OK);
    ASSERT_TRUE(memmem(box, box_bytes, "whsec_abc", 9) == NULL);
    ASSERT_STATUS(events_secret_open(key, "we_1", box, box_bytes, secret), PC_OK);
    ASSERT_STR_EQ(secret, "whsec_abc");
    ASSERT_STATUS(events_secret_open(key, "we_2", box, box_bytes, secret), PC_EVENTS_KEY_INVALID);
    key[0] ^= 1;
    ASSERT_STATUS(events_secret_open(key, "we_1", box, box_bytes, secret), PC_EVENTS_KEY_INVALID);
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_atomic_with_commit);
    TEST_RUN(test_pending_resolutions);
    TEST_RUN(test_corrupt_references);
    TEST_RUN(test_emit);
    TEST_RUN(test_emit_ref_limit);
    TEST_RUN(test_emit_disabled);
    TEST_RUN(test_owners);
    TEST_RUN(test_emit_account_owners);
    TEST_RUN(test_types);
    TEST_RUN(test_ids);
    TEST_RUN(test_signatures);
    TEST_RUN(test_backoff);
    TEST_RUN(test_key_file);
    return test_finish();
}
