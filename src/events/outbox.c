/* events/outbox.c: events written inside the writer's batch transaction. The batch
 * hook turns what the ledger changed into events (account.created, transfer.created,
 * transfer.posted/voided/expired); events_emit is the same path for other
 * subsystems. Both run on the writer thread: an event commits or rolls back with its
 * change, and nothing here waits on anything but the store.
 *
 * Per-object sequence: a ledger object is created once (seq 1) and a pending transfer
 * resolves once (seq 2: posted, voided or expired), so the ledger's numbers need no
 * lookup. Owners: the merchant keys granted the account(s) at the time of the change,
 * found once per account per batch in the writer's grants (held in memory for its
 * ownership checks), without a query. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "events/events_internal.h"

/* Events written on this (writer) thread since the last batch finished: counted into
 * the metrics only once the batch committed. */
static _Thread_local uint64_t pending_written[EVENTS_TYPE_COUNT];

static pc_status insert_row(store_events_writer_t *writer, const char *body, size_t body_bytes, events_type type,
                            const char *object_id, uint32_t object_seq, uint64_t seq,
                            const char *const *owners, uint32_t owner_count) {
    store_event_t row = {.seq = seq, .type = events_type_name(type), .object_id = object_id,
                         .object_seq = object_seq, .body = body, .body_bytes = body_bytes,
                         .owners = owners, .owner_count = owner_count};
    pc_status status = store_events_insert(writer, &row);
    if (status == PC_OK) pending_written[type]++;
    return status;
}

static pc_status insert(store_events_writer_t *writer, events_buf_t *body, events_type type,
                        const char *object_id, uint32_t object_seq, uint64_t seq,
                        const char *const *owners, uint32_t owner_count) {
    if (body->failed) return PC_NO_MEMORY;
    if (body->bytes > EVENTS_BODY_BYTES_MAX) return PC_LIMIT_REACHED;
    return insert_row(writer, body->text, body->bytes, type, object_id, object_seq, seq, owners, owner_count);
}

/* The reference stored instead of the event it renders as (an event too large to
 * deliver is refused as it always was): its size is counted, not rendered. */
static pc_status insert_ref(store_events_writer_t *writer, const events_emit_t *event, size_t object_bytes,
                            uint64_t seq, const char *const *owners, uint32_t owner_count) {
    const char *ref = event->object_ref;
    size_t ref_bytes = strlen(ref);
    size_t whole_bytes = events_envelope_bytes(seq, event->type, strlen(event->object_id), event->object_seq,
                                               object_bytes);
    if (whole_bytes > EVENTS_BODY_BYTES_MAX) return PC_LIMIT_REACHED;
    if (ref_bytes < 2 || ref_bytes > EVENTS_REF_BYTES_MAX || ref[0] != EVENTS_REF_PREFIX) return PC_INVALID_ARGUMENT;
    return insert_row(writer, ref, ref_bytes, event->type, event->object_id, event->object_seq, seq, owners,
                      owner_count);
}

/* The merchant keys granted 'account_id' (at most EVENTS_OWNERS_MAX, in id order) into
 * 'owners': on the writer's batch borrowed from its grants in memory (no query, no
 * copy; they stay until the batch ends), else read from the store into 'storage'. */
static pc_status account_owners(store_events_writer_t *writer, const char *account_id, const char **owners,
                                char (*storage)[PC_ID_SIZE], uint32_t *count) {
    if (writer_batch_account_owners(account_id, owners, EVENTS_OWNERS_MAX, count)) return PC_OK;
    pc_status status = store_events_account_owners(writer, account_id, storage, EVENTS_OWNERS_MAX, count);
    for (uint32_t i = 0; i < *count; i++) owners[i] = storage[i];
    return status;
}

/* An emitter's owners, and with owners_account_id the merchant keys granted that
 * account, without repeats, into 'owners' (EVENTS_OWNERS_MAX; borrowed from the event,
 * the writer's grants or 'storage'). */
static pc_status emit_owners(store_events_writer_t *writer, const events_emit_t *event, const char **owners,
                             char (*storage)[PC_ID_SIZE], uint32_t *count) {
    *count = 0;
    for (uint32_t i = 0; i < event->owner_count; i++) {
        if (!pc_id_valid(event->owners[i])) return PC_ID_INVALID;
        owners[(*count)++] = event->owners[i];
    }
    if (event->owners_account_id == NULL) return PC_OK;
    const char *granted[EVENTS_OWNERS_MAX];
    uint32_t granted_count = 0;
    pc_status status = account_owners(writer, event->owners_account_id, granted, storage, &granted_count);
    for (uint32_t i = 0; status == PC_OK && i < granted_count && *count < EVENTS_OWNERS_MAX; i++) {
        bool seen = false;
        for (uint32_t j = 0; j < *count && !seen; j++) seen = strcmp(owners[j], granted[i]) == 0;
        if (!seen) owners[(*count)++] = granted[i];
    }
    return status;
}

/* The hook's statements, prepared at the first use and kept (writer thread): the
 * batch hook and events_emit share them. */
static pc_status outbox_writer(events_t *events, store_tx_t *tx, store_events_writer_t **out) {
    if (events->outbox == NULL) {
        pc_status status = store_events_writer_begin(tx, &events->outbox);
        if (status != PC_OK) return status;
    }
    *out = events->outbox;
    return PC_OK;
}

pc_status events_emit(events_t *events, store_tx_t *tx, const events_emit_t *event,
                      char id_out[EVENTS_ID_SIZE]) {
    PC_ASSERT((unsigned)event->type < EVENTS_TYPE_COUNT);
    PC_ASSERT(event->object_seq >= 1 && event->owner_count <= EVENTS_OWNERS_MAX);
    if (id_out != NULL) id_out[0] = '\0';
    if (events == NULL || !events->config.enabled) return PC_OK;
    if (!pc_id_valid(event->object_id)) return PC_ID_INVALID;
    /* Emitters hand JSON they rendered: check it is one object before it reaches every
     * receiver (the ledger's own events skip this: they are rendered here; so do
     * emitters whose text jansson rendered from an object). */
    size_t object_bytes = strlen(event->object_json);
    if (!event->object_json_dumped) {
        json_t *parsed = json_loadb(event->object_json, object_bytes, JSON_REJECT_DUPLICATES, NULL);
        bool object = json_is_object(parsed);
        json_decref(parsed);
        if (!object) return PC_INVALID_ARGUMENT;
    }
    store_events_writer_t *writer;
    pc_status status = outbox_writer(events, tx, &writer);
    char owner_ids[EVENTS_OWNERS_MAX][PC_ID_SIZE]; /* owners read from the store */
    const char *owners[EVENTS_OWNERS_MAX];
    uint32_t owner_count = 0;
    if (status == PC_OK) status = emit_owners(writer, event, owners, owner_ids, &owner_count);
    uint64_t seq = 0;
    if (status == PC_OK) status = store_events_seq_next(writer, pc_wall_ns(), &seq);
    if (status == PC_OK && event->object_ref != NULL) {
        status = insert_ref(writer, event, object_bytes, seq, owners, owner_count);
    } else if (status == PC_OK) {
        events_buf_t body = {0};
        events_render_envelope(&body, seq, event->type, event->object_id, event->object_seq, event->object_json,
                               object_bytes, NULL, 0);
        status = insert(writer, &body, event->type, event->object_id, event->object_seq, seq, owners,
                        owner_count);
        events_buf_free(&body);
    }
    if (status == PC_OK && id_out != NULL) events_id_format(seq, id_out);
    return status;
}

/* ---- the ledger's events ---- */

/* Owners of the accounts one batch touched, by ledger index (a batch touches the same
 * accounts again and again: a bank account funding many). The table holds 16 bytes a
 * slot and the lists (~600 bytes each) are made only for the accounts met: a table of
 * whole lists sized for every account a batch could name was ~256 KiB a batch, mapped
 * and faulted in anew each time. */
typedef struct {
    uint32_t count;
    const char *owners[EVENTS_OWNERS_MAX];     /* borrowed: the writer's grants or 'storage' */
    char storage[EVENTS_OWNERS_MAX][PC_ID_SIZE]; /* owners read from the store */
} owner_list;

#define OWNER_BLOCK_LISTS 16

/* Lists in blocks that never move: transfer_owners keeps pointers into one side's list
 * while it looks up the other's. */
typedef struct owner_block {
    struct owner_block *next;
    uint32_t used;
    owner_list lists[OWNER_BLOCK_LISTS];
} owner_block;

typedef struct {
    uint32_t account_index;      /* UINT32_MAX: empty slot */
    owner_list *list;
} owner_slot;

typedef struct {
    const ledger_t *ledger;
    const ledger_changes_t *changes;
    const ledger_source_t *source;
    store_events_writer_t *writer;
    events_buf_t object;         /* one object's JSON */
    events_buf_t extra;          /* data members after the object */
    events_buf_t body;           /* the event */
    owner_slot *slots;           /* open addressing by account index */
    uint32_t slot_mask;
    owner_block *blocks;         /* the slots' lists, the newest block first */
    uint32_t *batch_ids;         /* this batch's transfers by id hash (built on demand) */
    uint32_t batch_ids_mask;
    uint32_t pending_change_next;  /* changes->pending_changes: the next resolution's */
    uint64_t now_ns;
    events_ledger_sink sink;     /* not NULL: events go there, not into the outbox */
    void *sink_ctx;
} outbox_batch;

static owner_list *owner_list_new(outbox_batch *b) {
    if (b->blocks == NULL || b->blocks->used == OWNER_BLOCK_LISTS) {
        owner_block *block = malloc(sizeof(*block));
        if (block == NULL) return NULL;
        block->next = b->blocks;
        block->used = 0;
        b->blocks = block;
    }
    return &b->blocks->lists[b->blocks->used++];
}

static pc_status owners_of(outbox_batch *b, uint32_t account_index, const owner_list **out) {
    uint32_t at = (uint32_t)(pc_hash64(&account_index, sizeof account_index) & b->slot_mask);
    while (b->slots[at].account_index != UINT32_MAX && b->slots[at].account_index != account_index) {
        at = (at + 1) & b->slot_mask;
    }
    owner_slot *slot = &b->slots[at];
    if (slot->account_index == UINT32_MAX) {
        const ledger_account_t *account = ledger_account_at(b->ledger, account_index);
        PC_ASSERT(account != NULL);
        owner_list *list = owner_list_new(b);
        if (list == NULL) return PC_NO_MEMORY;
        pc_status status = account_owners(b->writer, account->id, list->owners, list->storage, &list->count);
        if (status != PC_OK) return status;
        slot->account_index = account_index;
        slot->list = list;
    }
    *out = slot->list;
    return PC_OK;
}

/* The owners of both sides, without repeats. */
static pc_status transfer_owners(outbox_batch *b, uint32_t transfer_index, const char **owners,
                                 uint32_t *count) {
    *count = 0;
    for (uint32_t side = 0; side < 2; side++) {
        const owner_list *list;
        pc_status status = owners_of(b, b->changes->transfer_accounts[2 * transfer_index + side], &list);
        if (status != PC_OK) return status;
        for (uint32_t i = 0; i < list->count && *count < EVENTS_OWNERS_MAX; i++) {
            bool seen = false;
            for (uint32_t j = 0; j < *count && !seen; j++) seen = strcmp(owners[j], list->owners[i]) == 0;
            if (!seen) owners[(*count)++] = list->owners[i];
        }
    }
    return PC_OK;
}

/* One ledger event rendered into the outbox (the batch's buffers reused). */
static pc_status ledger_insert(store_events_writer_t *writer, const events_ledger_event_t *e, uint64_t now_ns,
                               events_buf_t *object, events_buf_t *extra, events_buf_t *body) {
    uint64_t seq;
    pc_status status = store_events_seq_next(writer, now_ns, &seq);
    if (status != PC_OK) return status;
    object->bytes = extra->bytes = body->bytes = 0;
    const char *object_id = e->account.id;
    uint32_t object_seq = 1;
    if (e->type == EVENTS_TYPE_ACCOUNT_CREATED) {
        events_render_account(object, &e->account);
    } else {
        events_render_transfer(object, &e->transfer, e->state);
        object_id = e->transfer.id;
        if (e->resolved) {
            events_buf_append(extra, "\"resolving_transfer\":", 21);
            events_render_transfer(extra, &e->resolving, LEDGER_PENDING_NONE);
            object_seq = 2;
        }
    }
    events_render_envelope(body, seq, e->type, object_id, object_seq, object->text, object->bytes,
                           extra->bytes ? extra->text : NULL, extra->bytes);
    return insert(writer, body, e->type, object_id, object_seq, seq, e->owners, e->owner_count);
}

static pc_status emit_built(outbox_batch *b, const events_ledger_event_t *e) {
    if (b->sink != NULL) return b->sink(b->sink_ctx, e);
    return ledger_insert(b->writer, e, b->now_ns, &b->object, &b->extra, &b->body);
}

pc_status events_ledger_insert(store_events_writer_t *outbox, const events_ledger_event_t *event, uint64_t now_ns) {
    events_buf_t object = {0}, extra = {0}, body = {0};
    pc_status status = ledger_insert(outbox, event, now_ns, &object, &extra, &body);
    events_buf_free(&object);
    events_buf_free(&extra);
    events_buf_free(&body);
    return status;
}

static pc_status emit_account(outbox_batch *b, uint32_t account_index) {
    events_ledger_event_t e = {.type = EVENTS_TYPE_ACCOUNT_CREATED,
                               .account = *ledger_account_at(b->ledger, account_index)};
    memset(&e.account.balances, 0, sizeof e.account.balances); /* as created, before this batch's transfers */
    const owner_list *list;
    pc_status status = owners_of(b, account_index, &list);
    if (status != PC_OK) return status;
    for (uint32_t i = 0; i < list->count; i++) e.owners[i] = list->owners[i];
    e.owner_count = list->count;
    return emit_built(b, &e);
}

/* ---- finding a pending transfer: this batch first, then the store ---- */

static uint32_t id_slot(const char *id, uint32_t mask) {
    return (uint32_t)(pc_hash64(id, strlen(id)) & mask);
}

static bool batch_ids_build(outbox_batch *b) {
    uint32_t capacity = 16;
    while (capacity < 2 * b->changes->transfers_count) capacity *= 2;
    b->batch_ids = malloc(sizeof(uint32_t) * capacity);
    if (b->batch_ids == NULL) return false;
    memset(b->batch_ids, 0xff, sizeof(uint32_t) * capacity);
    b->batch_ids_mask = capacity - 1;
    for (uint32_t i = 0; i < b->changes->transfers_count; i++) {
        uint32_t at = id_slot(b->changes->transfers[i].id, b->batch_ids_mask);
        while (b->batch_ids[at] != UINT32_MAX) at = (at + 1) & b->batch_ids_mask;
        b->batch_ids[at] = i;
    }
    return true;
}

static const ledger_transfer_t *batch_find(outbox_batch *b, const char *id) {
    if (b->batch_ids == NULL && !batch_ids_build(b)) return NULL;
    for (uint32_t at = id_slot(id, b->batch_ids_mask); b->batch_ids[at] != UINT32_MAX;
         at = (at + 1) & b->batch_ids_mask) {
        const ledger_transfer_t *t = &b->changes->transfers[b->batch_ids[at]];
        if (strcmp(t->id, id) == 0) return t;
    }
    return NULL;
}

/* The pending transfer 'pending_id' (this batch's or a committed one). */
static pc_status find_pending(outbox_batch *b, const char *pending_id, ledger_transfer_t *out) {
    ledger_transfer_record_t record;
    pc_status status = b->source->transfer_find(b->source->ctx, pending_id, &record);
    const ledger_transfer_t *pending = NULL;
    if (status == PC_OK && record.failure == PC_OK) pending = &record.transfer;
    else if (status == PC_OK || status == PC_NOT_FOUND) pending = batch_find(b, pending_id);
    else return status;
    if (pending == NULL) return PC_INTERNAL; /* the ledger resolved a transfer nobody holds */
    *out = *pending;
    return PC_OK;
}

/* A transfer event stored as a reference to the transfers it names (events.h): the
 * row's object_id is the transfer (created) or the pending one (resolved), the
 * reference names the resolving transfer. Rendered when read (model.c), byte for byte
 * the body ledger_insert would store; the pending transfer is not looked up here. */
static pc_status ledger_insert_ref(outbox_batch *b, const events_ledger_event_t *e, const ledger_transfer_t *t,
                                   uint64_t pending_timestamp_ns) {
    uint64_t seq;
    pc_status status = store_events_seq_next(b->writer, b->now_ns, &seq);
    if (status != PC_OK) return status;
    b->body.bytes = 0;
    events_buf_append(&b->body, EVENTS_TRANSFER_REF ":", sizeof EVENTS_TRANSFER_REF);
    if (e->resolved) {
        events_buf_u64(&b->body, pending_timestamp_ns);
        events_buf_append(&b->body, ":", 1);
    }
    events_buf_u64(&b->body, t->timestamp_ns);
    if (e->resolved) {
        events_buf_append(&b->body, ":", 1);
        events_buf_str(&b->body, t->id);
    }
    const char *object_id = e->resolved ? t->pending_id : t->id;
    return insert(b->writer, &b->body, e->type, object_id, e->resolved ? 2 : 1, seq, e->owners, e->owner_count);
}

static bool transfer_as_ref(const outbox_batch *b) {
    return b->sink == NULL && store_events_ledger_refs(b->writer);
}

/* The timestamp of the pending transfer 't' resolves: the ledger lists each resolution's
 * pending change in the order of the resolving transfers, so the next one is it (checked;
 * false sends the event the long way, the pending transfer looked up). */
static bool pending_timestamp(outbox_batch *b, const ledger_transfer_t *t, uint64_t *timestamp_ns) {
    if (b->pending_change_next >= b->changes->pending_changes_count) return false;
    const ledger_pending_change_t *change = &b->changes->pending_changes[b->pending_change_next];
    if (strcmp(change->pending_id, t->pending_id) != 0) return false;
    b->pending_change_next++;
    *timestamp_ns = change->pending_timestamp_ns;
    return true;
}

static pc_status emit_transfer(outbox_batch *b, uint32_t index) {
    const ledger_transfer_t *t = &b->changes->transfers[index];
    events_ledger_event_t e = {.type = EVENTS_TYPE_TRANSFER_CREATED};
    pc_status status = transfer_owners(b, index, e.owners, &e.owner_count);
    if (status != PC_OK) return status;
    if (!(t->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING))) {
        if (transfer_as_ref(b)) return ledger_insert_ref(b, &e, t, 0);
        e.transfer = *t;
        e.state = (t->flags & LEDGER_TRANSFER_PENDING) != 0 ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE;
        return emit_built(b, &e);
    }
    e.type = events_transfer_resolved_type(t->flags);
    e.state = events_transfer_resolved_state(e.type);
    e.resolved = true;
    uint64_t pending_timestamp_ns;
    if (transfer_as_ref(b) && pending_timestamp(b, t, &pending_timestamp_ns)) {
        return ledger_insert_ref(b, &e, t, pending_timestamp_ns);
    }
    status = find_pending(b, t->pending_id, &e.transfer);
    if (status != PC_OK) return status;
    e.resolving = *t;
    return emit_built(b, &e);
}

static bool batch_init(outbox_batch *b, const ledger_t *ledger, const ledger_changes_t *changes,
                       const ledger_source_t *source) {
    memset(b, 0, sizeof(*b));
    b->ledger = ledger;
    b->changes = changes;
    b->source = source;
    b->now_ns = pc_wall_ns();
    uint32_t capacity = 16;
    uint32_t accounts = changes->accounts_created_count + 2 * changes->transfers_count;
    while (capacity < 2 * accounts) capacity *= 2;
    b->slots = malloc(sizeof(owner_slot) * capacity);
    if (b->slots == NULL) return false;
    for (uint32_t i = 0; i < capacity; i++) b->slots[i].account_index = UINT32_MAX;
    b->slot_mask = capacity - 1;
    return true;
}

static void batch_free(outbox_batch *b) {
    events_buf_free(&b->object);
    events_buf_free(&b->extra);
    events_buf_free(&b->body);
    free(b->slots);
    while (b->blocks != NULL) {
        owner_block *next = b->blocks->next;
        free(b->blocks);
        b->blocks = next;
    }
    free(b->batch_ids);
}

pc_status events_ledger_batch(store_events_writer_t **outbox, store_tx_t *tx, const ledger_t *ledger,
                              const ledger_changes_t *changes, const ledger_source_t *source,
                              events_ledger_sink sink, void *sink_ctx) {
    if (changes->accounts_created_count == 0 && changes->transfers_count == 0) return PC_OK;
    outbox_batch b;
    pc_status status = batch_init(&b, ledger, changes, source) ? PC_OK : PC_NO_MEMORY;
    if (status == PC_OK && *outbox == NULL) status = store_events_writer_begin(tx, outbox);
    b.writer = *outbox;
    b.sink = sink;
    b.sink_ctx = sink_ctx;
    if (status == PC_OK) store_events_writer_reset(b.writer); /* max(seq) read again */
    for (uint32_t i = 0; status == PC_OK && i < changes->accounts_created_count; i++) {
        status = emit_account(&b, changes->accounts_created[i]);
    }
    for (uint32_t i = 0; status == PC_OK && i < changes->transfers_count; i++) {
        status = emit_transfer(&b, i);
    }
    batch_free(&b);
    return status;
}

static pc_status hook_in_transaction(void *ctx, store_tx_t *tx, const ledger_t *ledger,
                                     const ledger_changes_t *changes, const ledger_source_t *source) {
    events_t *events = ctx;
    return events_ledger_batch(&events->outbox, tx, ledger, changes, source, NULL, NULL);
}

void events_written_settle(events_t *events, bool count) {
    for (uint32_t i = 0; i < EVENTS_TYPE_COUNT; i++) {
        if (pending_written[i] == 0) continue;
        if (count) atomic_fetch_add(&events->written[i], pending_written[i]);
        else atomic_fetch_add(&events->written_failed, pending_written[i]);
        pending_written[i] = 0;
    }
}

void events_written_drop(void) { memset(pending_written, 0, sizeof pending_written); }

void events_outbox_finished(events_t *events, pc_status commit_status) {
    events_written_settle(events, commit_status == PC_OK);
    /* the next transaction reads max(seq) again: this one may have rolled back */
    if (events->outbox != NULL) store_events_writer_reset(events->outbox);
    if (commit_status == PC_OK) events_wake(events, false);
}

static void hook_finished(void *ctx, pc_status commit_status) { events_outbox_finished(ctx, commit_status); }

/* A row of another store's outbox (a shard's: src/events/shards.c) with a new seq
 * from 'outbox': the same event under the id and time of its place here. The row is
 * a ledger event stored whole, rendered by events_render_envelope. */
pc_status events_row_copy(store_events_writer_t *outbox, const store_event_t *row, uint64_t now_ns) {
    events_type type;
    if (!events_type_parse(row->type, &type)) return PC_STORE_CORRUPT;
    events_buf_t old = {0}, body = {0};
    events_render_envelope(&old, row->seq, type, row->object_id, row->object_seq, "", 0, NULL, 0);
    pc_status status = old.failed ? PC_NO_MEMORY : PC_OK;
    size_t prefix_bytes = old.bytes - 2; /* the envelope before its object; "}}" ends it */
    bool whole = row->body_bytes >= old.bytes && memcmp(row->body, old.text, prefix_bytes) == 0 &&
                 memcmp(row->body + row->body_bytes - 2, "}}", 2) == 0;
    if (status == PC_OK && !whole) status = PC_STORE_CORRUPT; /* not an envelope this paycore renders */
    uint64_t seq = 0;
    if (status == PC_OK) status = store_events_seq_next(outbox, now_ns, &seq);
    if (status == PC_OK) {
        events_render_envelope(&body, seq, type, row->object_id, row->object_seq, row->body + prefix_bytes,
                               row->body_bytes - prefix_bytes - 2, NULL, 0);
        status = insert(outbox, &body, type, row->object_id, row->object_seq, seq, row->owners, row->owner_count);
    }
    events_buf_free(&old);
    events_buf_free(&body);
    return status;
}

writer_batch_hook_t events_batch_hook(events_t *events) {
    writer_batch_hook_t hook = {0};
    if (events == NULL || !events->config.enabled) return hook;
    hook.in_transaction = hook_in_transaction;
    hook.finished = hook_finished;
    hook.ctx = events;
    return hook;
}
