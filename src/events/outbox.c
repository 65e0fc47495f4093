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

static pc_status insert(store_events_writer_t *writer, events_buf_t *body, events_type type,
                        const char *object_id, uint32_t object_seq, uint64_t seq,
                        const char *const *owners, uint32_t owner_count) {
    if (body->failed) return PC_NO_MEMORY;
    if (body->bytes > EVENTS_BODY_BYTES_MAX) return PC_LIMIT_REACHED;
    store_event_t row = {.seq = seq, .type = events_type_name(type), .object_id = object_id,
                         .object_seq = object_seq, .body = body->text, .body_bytes = body->bytes,
                         .owners = owners, .owner_count = owner_count};
    pc_status status = store_events_insert(writer, &row);
    if (status == PC_OK) pending_written[type]++;
    return status;
}

/* The reference stored instead of the event whose envelope without its object is in
 * 'body' (an event too large to deliver is refused as it always was). */
static pc_status body_as_ref(events_buf_t *body, size_t object_bytes, const char *ref) {
    size_t ref_bytes = strlen(ref);
    if (body->failed) return PC_NO_MEMORY;
    if (body->bytes + object_bytes > EVENTS_BODY_BYTES_MAX) return PC_LIMIT_REACHED;
    if (ref_bytes < 2 || ref_bytes > EVENTS_REF_BYTES_MAX || ref[0] != EVENTS_REF_PREFIX) return PC_INVALID_ARGUMENT;
    body->bytes = 0;
    events_buf_append(body, ref, ref_bytes);
    return PC_OK;
}

/* The merchant keys granted 'account_id' (at most EVENTS_OWNERS_MAX, in id order):
 * from the writer's grants in memory on its batch (no query), else from the store. */
static pc_status account_owners(store_events_writer_t *writer, const char *account_id,
                                char (*owners)[PC_ID_SIZE], uint32_t *count) {
    const char *held[EVENTS_OWNERS_MAX];
    if (!writer_batch_account_owners(account_id, held, EVENTS_OWNERS_MAX, count)) {
        return store_events_account_owners(writer, account_id, owners, EVENTS_OWNERS_MAX, count);
    }
    for (uint32_t i = 0; i < *count; i++) {
        if (!pc_id_copy(owners[i], held[i])) return PC_ID_INVALID;
    }
    return PC_OK;
}

/* An emitter's owners, and with owners_account_id the merchant keys granted that
 * account, without repeats, into 'owners' (EVENTS_OWNERS_MAX). */
static pc_status emit_owners(store_events_writer_t *writer, const events_emit_t *event,
                             char (*owners)[PC_ID_SIZE], uint32_t *count) {
    *count = 0;
    for (uint32_t i = 0; i < event->owner_count; i++) {
        if (!pc_id_copy(owners[(*count)++], event->owners[i])) return PC_ID_INVALID;
    }
    if (event->owners_account_id == NULL) return PC_OK;
    char granted[EVENTS_OWNERS_MAX][PC_ID_SIZE];
    uint32_t granted_count = 0;
    pc_status status = account_owners(writer, event->owners_account_id, granted, &granted_count);
    for (uint32_t i = 0; status == PC_OK && i < granted_count && *count < EVENTS_OWNERS_MAX; i++) {
        bool seen = false;
        for (uint32_t j = 0; j < *count && !seen; j++) seen = strcmp(owners[j], granted[i]) == 0;
        if (!seen) (void)pc_id_copy(owners[(*count)++], granted[i]);
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
    char owner_ids[EVENTS_OWNERS_MAX][PC_ID_SIZE];
    const char *owners[EVENTS_OWNERS_MAX];
    uint32_t owner_count = 0;
    if (status == PC_OK) status = emit_owners(writer, event, owner_ids, &owner_count);
    for (uint32_t i = 0; i < owner_count; i++) owners[i] = owner_ids[i];
    uint64_t seq = 0;
    if (status == PC_OK) status = store_events_seq_next(writer, pc_wall_ns(), &seq);
    events_buf_t body = {0};
    if (status == PC_OK) {
        bool ref = event->object_ref != NULL; /* the envelope alone, for its size */
        events_render_envelope(&body, seq, event->type, event->object_id, event->object_seq,
                               ref ? "" : event->object_json, ref ? 0 : object_bytes, NULL, 0);
        if (ref) status = body_as_ref(&body, object_bytes, event->object_ref);
    }
    if (status == PC_OK) {
        status = insert(writer, &body, event->type, event->object_id, event->object_seq, seq, owners,
                        owner_count);
    }
    if (status == PC_OK && id_out != NULL) events_id_format(seq, id_out);
    events_buf_free(&body);
    return status;
}

/* ---- the ledger's events ---- */

/* Owners of the accounts one batch touched, by ledger index (a batch touches the same
 * accounts again and again: a bank account funding many). */
typedef struct {
    uint32_t account_index;      /* UINT32_MAX: empty slot */
    uint32_t count;
    char owners[EVENTS_OWNERS_MAX][PC_ID_SIZE];
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
    uint32_t *batch_ids;         /* this batch's transfers by id hash (built on demand) */
    uint32_t batch_ids_mask;
    uint64_t now_ns;
} outbox_batch;

static pc_status owners_of(outbox_batch *b, uint32_t account_index, const owner_slot **out) {
    uint32_t at = (uint32_t)(pc_hash64(&account_index, sizeof account_index) & b->slot_mask);
    while (b->slots[at].account_index != UINT32_MAX && b->slots[at].account_index != account_index) {
        at = (at + 1) & b->slot_mask;
    }
    owner_slot *slot = &b->slots[at];
    if (slot->account_index == UINT32_MAX) {
        const ledger_account_t *account = ledger_account_at(b->ledger, account_index);
        PC_ASSERT(account != NULL);
        pc_status status = account_owners(b->writer, account->id, slot->owners, &slot->count);
        if (status != PC_OK) return status;
        slot->account_index = account_index;
    }
    *out = slot;
    return PC_OK;
}

/* The owners of both sides, without repeats. */
static pc_status transfer_owners(outbox_batch *b, uint32_t transfer_index, const char **owners,
                                 uint32_t *count) {
    *count = 0;
    for (uint32_t side = 0; side < 2; side++) {
        const owner_slot *slot;
        pc_status status = owners_of(b, b->changes->transfer_accounts[2 * transfer_index + side], &slot);
        if (status != PC_OK) return status;
        for (uint32_t i = 0; i < slot->count && *count < EVENTS_OWNERS_MAX; i++) {
            bool seen = false;
            for (uint32_t j = 0; j < *count && !seen; j++) seen = strcmp(owners[j], slot->owners[i]) == 0;
            if (!seen) owners[(*count)++] = slot->owners[i];
        }
    }
    return PC_OK;
}

static pc_status emit_built(outbox_batch *b, events_type type, const char *object_id, uint32_t object_seq,
                            const char *const *owners, uint32_t owner_count) {
    uint64_t seq;
    pc_status status = store_events_seq_next(b->writer, b->now_ns, &seq);
    if (status != PC_OK) return status;
    b->body.bytes = 0;
    events_render_envelope(&b->body, seq, type, object_id, object_seq, b->object.text, b->object.bytes,
                           b->extra.bytes ? b->extra.text : NULL, b->extra.bytes);
    return insert(b->writer, &b->body, type, object_id, object_seq, seq, owners, owner_count);
}

static pc_status emit_account(outbox_batch *b, uint32_t account_index) {
    ledger_account_t account = *ledger_account_at(b->ledger, account_index);
    memset(&account.balances, 0, sizeof account.balances); /* as created, before this batch's transfers */
    b->object.bytes = 0;
    b->extra.bytes = 0;
    events_render_account(&b->object, &account);
    const owner_slot *slot;
    pc_status status = owners_of(b, account_index, &slot);
    if (status != PC_OK) return status;
    const char *owners[EVENTS_OWNERS_MAX];
    for (uint32_t i = 0; i < slot->count; i++) owners[i] = slot->owners[i];
    return emit_built(b, EVENTS_TYPE_ACCOUNT_CREATED, account.id, 1, owners, slot->count);
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

/* Renders the pending transfer 'pending_id' in its new state into b->object. */
static pc_status render_pending(outbox_batch *b, const char *pending_id, ledger_pending_state state) {
    ledger_transfer_record_t record;
    pc_status status = b->source->transfer_find(b->source->ctx, pending_id, &record);
    const ledger_transfer_t *pending = NULL;
    if (status == PC_OK && record.failure == PC_OK) pending = &record.transfer;
    else if (status == PC_OK || status == PC_NOT_FOUND) pending = batch_find(b, pending_id);
    else return status;
    if (pending == NULL) return PC_INTERNAL; /* the ledger resolved a transfer nobody holds */
    b->object.bytes = 0;
    events_render_transfer(&b->object, pending, state);
    return PC_OK;
}

static pc_status emit_transfer(outbox_batch *b, uint32_t index) {
    const ledger_transfer_t *t = &b->changes->transfers[index];
    const char *owners[EVENTS_OWNERS_MAX];
    uint32_t owner_count;
    pc_status status = transfer_owners(b, index, owners, &owner_count);
    if (status != PC_OK) return status;
    b->extra.bytes = 0;
    if (!(t->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING))) {
        b->object.bytes = 0;
        bool pending = (t->flags & LEDGER_TRANSFER_PENDING) != 0;
        events_render_transfer(&b->object, t, pending ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE);
        return emit_built(b, EVENTS_TYPE_TRANSFER_CREATED, t->id, 1, owners, owner_count);
    }
    events_type type = EVENTS_TYPE_TRANSFER_VOIDED;
    ledger_pending_state state = LEDGER_PENDING_VOIDED;
    if (t->flags & LEDGER_TRANSFER_POST_PENDING) {
        type = EVENTS_TYPE_TRANSFER_POSTED;
        state = LEDGER_PENDING_POSTED;
    } else if (t->flags & LEDGER_TRANSFER_EXPIRY) {
        type = EVENTS_TYPE_TRANSFER_EXPIRED;
        state = LEDGER_PENDING_EXPIRED;
    }
    status = render_pending(b, t->pending_id, state);
    if (status != PC_OK) return status;
    events_buf_append(&b->extra, "\"resolving_transfer\":", 21);
    events_render_transfer(&b->extra, t, LEDGER_PENDING_NONE);
    return emit_built(b, type, t->pending_id, 2, owners, owner_count);
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
    free(b->batch_ids);
}

static pc_status hook_in_transaction(void *ctx, store_tx_t *tx, const ledger_t *ledger,
                                     const ledger_changes_t *changes, const ledger_source_t *source) {
    if (changes->accounts_created_count == 0 && changes->transfers_count == 0) return PC_OK;
    outbox_batch b;
    pc_status status = batch_init(&b, ledger, changes, source) ? PC_OK : PC_NO_MEMORY;
    if (status == PC_OK) status = outbox_writer(ctx, tx, &b.writer);
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

static void hook_finished(void *ctx, pc_status commit_status) {
    events_t *events = ctx;
    for (uint32_t i = 0; i < EVENTS_TYPE_COUNT; i++) {
        if (pending_written[i] == 0) continue;
        if (commit_status == PC_OK) atomic_fetch_add(&events->written[i], pending_written[i]);
        else atomic_fetch_add(&events->written_failed, pending_written[i]);
        pending_written[i] = 0;
    }
    /* the next transaction reads max(seq) again: this one may have rolled back */
    if (events->outbox != NULL) store_events_writer_reset(events->outbox);
    if (commit_status == PC_OK) events_wake(events, false);
}

writer_batch_hook_t events_batch_hook(events_t *events) {
    writer_batch_hook_t hook = {0};
    if (events == NULL || !events->config.enabled) return hook;
    hook.in_transaction = hook_in_transaction;
    hook.finished = hook_finished;
    hook.ctx = events;
    return hook;
}
