/* ledger/ledger.h: the double-entry ledger, pure logic. Accounts live in memory in a
 * hash table; transfers are applied in order, one result per event, with
 * TigerBeetle's semantics (linked chains, two-phase transfers, balancing transfers,
 * limits) and string ids. No I/O: committed transfers are found through a
 * ledger_source_t the caller provides (the store), and every change of a batch is
 * listed in ledger_changes_t for the caller to persist.
 *
 * Threads: one thread (the writer) owns a ledger_t; nothing here locks.
 * Batches: ledger_batch_begin, then any number of create_* / expire calls, then
 * exactly one of ledger_batch_commit (the store committed) or ledger_batch_rollback
 * (it did not: every in-memory change since begin is undone). */
#ifndef PAYCORE_LEDGER_H
#define PAYCORE_LEDGER_H

#include <stdbool.h>
#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"

enum {
    LEDGER_ACCOUNT_LINKED = 1u << 0,
    LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS = 1u << 1,
    LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS = 1u << 2,
    LEDGER_ACCOUNT_HISTORY = 1u << 3,
    LEDGER_ACCOUNT_CLOSED = 1u << 4,
    LEDGER_ACCOUNT_FLAGS_CLIENT = 0x1f,
};

enum {
    LEDGER_TRANSFER_LINKED = 1u << 0,
    LEDGER_TRANSFER_PENDING = 1u << 1,
    LEDGER_TRANSFER_POST_PENDING = 1u << 2,
    LEDGER_TRANSFER_VOID_PENDING = 1u << 3,
    LEDGER_TRANSFER_BALANCING_DEBIT = 1u << 4,
    LEDGER_TRANSFER_BALANCING_CREDIT = 1u << 5,
    LEDGER_TRANSFER_FLAGS_CLIENT = 0x3f,
    /* Set by the ledger alone: a void it made because the pending transfer timed out. */
    LEDGER_TRANSFER_EXPIRY = 1u << 8,
};

/* The state of a pending transfer (flags & LEDGER_TRANSFER_PENDING). */
typedef enum {
    LEDGER_PENDING_NONE = 0, /* not a pending transfer */
    LEDGER_PENDING_OPEN = 1,
    LEDGER_PENDING_POSTED = 2,
    LEDGER_PENDING_VOIDED = 3,
    LEDGER_PENDING_EXPIRED = 4,
} ledger_pending_state;

typedef struct {
    int64_t debits_pending;
    int64_t debits_posted;
    int64_t credits_pending;
    int64_t credits_posted;
} ledger_balances_t;

typedef struct {
    char id[PC_ID_SIZE];
    char currency[4];        /* ISO 4217, NUL-terminated */
    uint16_t code;           /* the account's type, chosen by the client */
    uint16_t flags;          /* LEDGER_ACCOUNT_* */
    ledger_balances_t balances;
    uint64_t timestamp_ns;   /* assigned by the ledger at creation */
    const char *metadata_json; /* compact JSON object or NULL. Events: borrowed from the
                                  caller. Accounts in the table: owned by the ledger. */
} ledger_account_t;

/* A transfer: as an event (what the client asked) and as a record (what was committed).
 * Events leave fields empty ("" / 0) where a post or void inherits them from the
 * pending transfer; records always carry the resolved values. */
typedef struct {
    char id[PC_ID_SIZE];
    char debit_account_id[PC_ID_SIZE];
    char credit_account_id[PC_ID_SIZE];
    char pending_id[PC_ID_SIZE];   /* "" unless post_pending / void_pending */
    int64_t amount;                /* minor units. Records: the amount moved (posted,
                                      voided or reserved) */
    char currency[4];
    uint16_t code;
    uint16_t flags;                /* LEDGER_TRANSFER_* */
    uint32_t timeout_s;            /* pending only; 0 = never expires */
    uint64_t timestamp_ns;         /* records only: assigned by the ledger */
    const char *metadata_json;     /* compact JSON object or NULL; borrowed */
} ledger_transfer_t;

/* What the store knows of a transfer id. */
typedef struct {
    ledger_transfer_t transfer;      /* valid when failure == PC_OK */
    pc_status failure;               /* PC_OK: a committed transfer. Otherwise the id was
                                        burned by a transfer that failed with this code. */
    ledger_pending_state pending_state;
} ledger_transfer_record_t;

/* How the ledger reaches committed transfers. Called on the writer thread only. */
typedef struct {
    /* Finds 'id'. PC_OK and *out filled (strings in 'out' stay valid until the next
     * call); PC_NOT_FOUND; or a store error, which fails the event that asked. */
    pc_status (*transfer_find)(void *ctx, const char *id, ledger_transfer_record_t *out);
    void *ctx;
} ledger_source_t;

/* Tenancy: the accounts a caller may reach. Given to a create call, it is asked about
 * every account an event names (its debit and credit accounts, a pending transfer's
 * accounts, the holder of an existing id). An account it refuses fails exactly as a
 * missing one would (account_not_found, pending_transfer_not_found); an id held by an
 * account or transfer the caller cannot reach answers id_taken and nothing else of
 * it. A transfer is reachable when either of its accounts is; a new transfer needs
 * both. NULL (the admin's case) reaches every account. */
typedef struct {
    /* 'account_index' is the account's table index, 'account_id' its id. */
    bool (*reachable)(const void *ctx, uint32_t account_index, const char *account_id);
    const void *ctx;
} ledger_reach_t;

/* The field of an event a refusal is about, when the code alone does not say. */
typedef enum {
    LEDGER_FIELD_NONE = 0,
    LEDGER_FIELD_DEBIT_ACCOUNT_ID,   /* account_not_found: the debit account */
    LEDGER_FIELD_CREDIT_ACCOUNT_ID,  /* account_not_found: the credit account */
    LEDGER_FIELD_PENDING_ID,         /* pending_transfer_not_found */
} ledger_field;

typedef struct {
    pc_status status;            /* PC_OK (created), PC_EXISTS, or the refusing code */
    ledger_field field;          /* refused: the field it is about, or LEDGER_FIELD_NONE */
    uint64_t timestamp_ns;       /* created: the new transfer's; exists: the original's */
    ledger_balances_t debit_balances;  /* created: the two accounts after this transfer */
    ledger_balances_t credit_balances;
    int64_t amount;              /* created: the amount actually moved (balancing, post) */
    /* created: the transfer as stored (a post or void inherits these from its pending
     * transfer when the event leaves them empty) */
    char debit_account_id[PC_ID_SIZE];
    char credit_account_id[PC_ID_SIZE];
    char currency[4];
    uint16_t code;
} ledger_transfer_result_t;

typedef struct {
    pc_status status;            /* PC_OK (created), PC_EXISTS, or the refusing code */
    uint64_t timestamp_ns;
} ledger_account_result_t;

/* One balance-history row: an account with the history flag, after a transfer. */
typedef struct {
    uint32_t account_index;
    uint64_t transfer_timestamp_ns;
    char transfer_id[PC_ID_SIZE];
    ledger_balances_t balances;
} ledger_history_t;

/* A pending transfer's state changed (posted, voided or expired) in this batch. */
typedef struct {
    char pending_id[PC_ID_SIZE];
    uint64_t pending_timestamp_ns;   /* the pending transfer's own timestamp (its row) */
    ledger_pending_state state;
} ledger_pending_change_t;

/* A transfer id burned by a transient failure (id_already_failed from now on). */
typedef struct {
    char id[PC_ID_SIZE];
    pc_status failure;
    uint64_t timestamp_ns;
} ledger_failure_t;

/* Everything a batch changed, for the store to persist in one transaction. Owned by
 * the ledger; valid until the next ledger_batch_begin. Listed in apply order. */
typedef struct {
    const uint32_t *accounts_created;    /* table indices */
    uint32_t accounts_created_count;
    const uint32_t *accounts_touched;    /* balances changed (includes created ones) */
    uint32_t accounts_touched_count;
    const ledger_transfer_t *transfers;  /* committed records, timestamp order */
    const uint32_t *transfer_accounts;   /* per transfer: debit then credit table index */
    uint32_t transfers_count;
    const ledger_pending_change_t *pending_changes;
    uint32_t pending_changes_count;
    const ledger_failure_t *failures;
    uint32_t failures_count;
    const ledger_history_t *history;
    uint32_t history_count;
    uint64_t timestamp_first_ns;         /* 0 when the batch made nothing */
    uint64_t timestamp_last_ns;
} ledger_changes_t;

typedef struct ledger ledger_t;

PC_MUST_USE pc_status ledger_open(ledger_t **out);
void ledger_close(ledger_t *ledger);

/* Loading at start, before any batch: accounts in index order, open pending
 * transfers, and the last timestamp ever assigned (timestamps keep increasing). */
PC_MUST_USE pc_status ledger_load_account(ledger_t *ledger, const ledger_account_t *account);
PC_MUST_USE pc_status ledger_load_pending(ledger_t *ledger, const ledger_transfer_t *pending);
void ledger_load_clock(ledger_t *ledger, uint64_t timestamp_last_ns);
/* Replays a committed transfer's effect on balances at load (the store keeps account
 * rows as of a balance snapshot and re-derives the rest). 'pending_amount' is the amount a
 * post/void/expiry releases. Overflow means a corrupt store: PC_STORE_READ_FAILED. */
PC_MUST_USE pc_status ledger_load_replay(ledger_t *ledger, const ledger_transfer_t *record,
                                         int64_t pending_amount);

void ledger_batch_begin(ledger_t *ledger, uint64_t now_ns);
/* Creates 'count' accounts (1..LEDGER_BATCH_EVENTS_MAX); one result each. 'reach'
 * (or NULL) limits what the events may reach (ledger_reach_t). */
void ledger_create_accounts(ledger_t *ledger, const ledger_reach_t *reach,
                            const ledger_account_t *events, uint32_t count,
                            ledger_account_result_t *results);
/* Creates 'count' transfers (1..LEDGER_BATCH_EVENTS_MAX); one result each. 'reach'
 * (or NULL) limits what the events may reach (ledger_reach_t). */
void ledger_create_transfers(ledger_t *ledger, const ledger_source_t *source,
                             const ledger_reach_t *reach, const ledger_transfer_t *events,
                             uint32_t count, ledger_transfer_result_t *results);
/* Voids up to 'count_max' pending transfers whose timeout passed at the batch's
 * now_ns; returns how many. */
uint32_t ledger_expire_due(ledger_t *ledger, uint32_t count_max);
/* The next expiry deadline (ns), or 0 when nothing can expire. */
uint64_t ledger_expiry_next_ns(const ledger_t *ledger);
/* Pending transfers with an account whose id begins with 'prefix' are not expired by
 * ledger_expire_due: when one is due, 'held' is told its id (inside the batch) and
 * whoever expires it sends a void_pending event with the expiry flag and an id
 * beginning with LEDGER_EXPIRY_ID_PREFIX. That event is refused with
 * pending_transfer_not_expired before its pending transfer's deadline, and is the
 * only way such a transfer expires. (A set of shards holds its cross-shard legs so,
 * and expires both legs in one global transaction.) 'prefix' NULL: none held. */
#define LEDGER_EXPIRY_ID_PREFIX "~expiry-"
typedef void (*ledger_expiry_held_fn)(void *ctx, const char *pending_id);
void ledger_expiry_hold(ledger_t *ledger, const char *prefix, ledger_expiry_held_fn held, void *ctx);
const ledger_changes_t *ledger_batch_changes(const ledger_t *ledger);
void ledger_batch_commit(ledger_t *ledger);
void ledger_batch_rollback(ledger_t *ledger);
/* A point inside an open batch. A store may write a batch as two transactions, the
 * part before a mark and the part after it, the second one staged while the first
 * commits (writer.c's pipeline); if the second fails alone, the batch is undone back
 * to the mark and committed. */
typedef struct {
    uint32_t undo_count;
    uint32_t transfers_count;
    uint32_t failures_count;
    uint32_t accounts_created_count;
    uint32_t accounts_touched_count;
    uint32_t history_count;
    uint32_t pending_changes_count;
    uint32_t pending_freed_count;
} ledger_mark_t;
void ledger_batch_mark(const ledger_t *ledger, ledger_mark_t *out);
/* What the batch changed after 'mark', into *out (valid until the next change).
 * Its accounts_touched is every account the batch touched: a superset, and
 * rewriting unchanged balances is harmless. */
void ledger_batch_changes_since(const ledger_t *ledger, const ledger_mark_t *mark, ledger_changes_t *out);
/* Undoes everything after 'mark'; the batch stays open. */
void ledger_batch_rollback_to(ledger_t *ledger, const ledger_mark_t *mark);

/* Lookups (writer thread, or any thread while no batch runs). */
const ledger_account_t *ledger_account_find(const ledger_t *ledger, const char *id);
uint32_t ledger_account_count(const ledger_t *ledger);
const ledger_account_t *ledger_account_at(const ledger_t *ledger, uint32_t index);
uint32_t ledger_account_index(const ledger_t *ledger, const ledger_account_t *account);
uint32_t ledger_pending_count(const ledger_t *ledger);
uint64_t ledger_clock_ns(const ledger_t *ledger);

/* Double entry, per currency: sums of debits and credits, pending and posted, over
 * every account. Returns false when any currency is out of balance (and names it). */
bool ledger_balanced(const ledger_t *ledger, char currency_out[4]);

/* Parses flag names ("linked", "pending", ...) and back, for codecs and the CLI. */
bool ledger_account_flag_parse(const char *name, uint16_t *flag);
bool ledger_transfer_flag_parse(const char *name, uint16_t *flag);
const char *ledger_account_flag_name(uint16_t flag);
const char *ledger_transfer_flag_name(uint16_t flag);
const char *ledger_pending_state_name(ledger_pending_state state);

#endif
