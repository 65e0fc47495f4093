/* payments/pay_internal.h: what the payments files share (not a contract). */
#ifndef PAYCORE_PAY_INTERNAL_H
#define PAYCORE_PAY_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "core/json_fields.h"
#include "payments/payments.h"
#include "payments/vault.h"
#include "store/store_payments.h"

typedef struct pay_flow pay_flow_t;

/* ---- a string map (map.c): SipHash under a per-process key, chained ---- */
typedef struct pay_map_entry pay_map_entry_t;
struct pay_map_entry {
    pay_map_entry_t *next;
    void *value;
    char key[];
};
typedef struct {
    pay_map_entry_t **buckets;
    uint32_t bucket_count;
    uint32_t count;
    pc_hash_key_t hash_key;
    pay_map_entry_t *spares;          /* removed entries with room for an id, for the next put */
    uint32_t spare_count;             /* ... at most PAY_MAP_SPARES_MAX */
} pay_map_t;
/* 'bucket_count': a power of two (asserted). */
PC_MUST_USE pc_status pay_map_init(pay_map_t *map, uint32_t bucket_count);
void pay_map_free(pay_map_t *map, void (*free_value)(void *value));
void *pay_map_get(const pay_map_t *map, const char *key);
/* Adds or replaces; returns the old value (or NULL). PC_NO_MEMORY leaves it unchanged. */
PC_MUST_USE pc_status pay_map_put(pay_map_t *map, const char *key, void *value, void **old_out);
void *pay_map_remove(pay_map_t *map, const char *key);

/* ---- merchants ---- */
typedef struct {
    char channel[GW_NAME_SIZE];   /* "default" for the fallback price */
    pay_price_t price;
} pay_channel_price_t;

typedef struct {
    char id[PC_ID_SIZE];
    char country[3];
    char default_currency[4];
    char currencies[PAY_CURRENCIES_MAX][4];
    uint32_t currency_count;
    uint16_t mcc;
    pay_channel_price_t prices[PAY_PRICES_MAX];
    uint32_t price_count;
    char *doc;                    /* the stored JSON, as GET shows it */
    uint64_t created_ns;
} pay_merchant_t;

bool pay_merchant_takes(const pay_merchant_t *merchant, const char *currency);
pay_price_t pay_merchant_price(const pay_merchant_t *merchant, const char *channel);
/* The merchant from the cache or the store: PC_OK (borrowed; merchants never change
 * once created), PC_NOT_FOUND or a read error. */
PC_MUST_USE pc_status pay_merchant_find(pay_t *pay, store_reader_t *reader, const char *merchant_id,
                                        const pay_merchant_t **out);
/* The merchant this caller may act for with 'merchant_id' (its bound one for a merchant
 * key; any for admin): PC_OK, or merchant_unknown / merchant_key_unbound. */
PC_MUST_USE pc_status pay_caller_merchant(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                          const char *merchant_id, const pay_merchant_t **out);
/* True when the caller may see objects of 'merchant_id'. */
bool pay_caller_sees(pay_t *pay, const pay_caller_t *caller, const char *merchant_id);

/* ---- payments and operations (model.c) ---- */
typedef enum { PAY_METHOD_CARD = 0, PAY_METHOD_WALLET, PAY_METHOD_BANK, PAY_METHOD_COUNT } pay_method;
const char *pay_method_name(pay_method method);

typedef enum {
    PAY_OP_AUTHORIZE = 0, PAY_OP_CHALLENGE, PAY_OP_CAPTURE, PAY_OP_VOID, PAY_OP_REFUND, PAY_OP_PAYOUT,
    PAY_OP_WITHDRAW, PAY_OP_KIND_COUNT
} pay_op_kind;
const char *pay_op_kind_name(pay_op_kind kind);

typedef struct {
    uint32_t number;
    char channel[GW_NAME_SIZE];
    char idempotency_key[GW_KEY_SIZE];
    gw_op op;
    gw_outcome outcome;
    char response_code[GW_CODE_SIZE];
    bool status_inquired;
    uint64_t created_ns;
} pay_attempt_t;

#define PAY_OP_TRANSFERS_MAX 8

/* One call-out step: its channel attempts, outcome and ledger transfers. Its status
 * is "pending" from the first persisted attempt until the outcome is known (recovery
 * resolves what stays pending), "processing" while a bank's callback is awaited, then
 * "succeeded", "declined", "failed" or "returned". */
typedef struct {
    char id[PC_ID_SIZE];
    pay_op_kind kind;
    char parent_id[PC_ID_SIZE];       /* payment; wallet (withdrawal); merchant (payout) */
    char merchant_id[PC_ID_SIZE];
    char status[16];
    int64_t amount;
    char currency[4];
    bool final_capture;               /* capture: release what is left */
    int64_t fee;                      /* capture: fee charged; refund: fee given back */
    char channel[GW_NAME_SIZE];
    char channel_ref[PC_ID_SIZE];
    char response_code[GW_CODE_SIZE];
    char message[GW_MESSAGE_SIZE];
    char reserve_id[PC_ID_SIZE];      /* refund, payout, withdrawal: the pending reserve */
    char routing_number[GW_BANK_FIELD_SIZE];
    char account_number[GW_BANK_FIELD_SIZE];
    char wallet_id[PC_ID_SIZE];       /* withdrawal */
    pay_attempt_t attempts[GW_ATTEMPTS_MAX];
    uint32_t attempt_count;
    char transfers[PAY_OP_TRANSFERS_MAX][PC_ID_SIZE];
    uint32_t transfer_count;
    uint64_t created_ns;
    uint64_t updated_ns;
    uint32_t version;
    char status_stored[16];           /* as last stored (events: did it change?) */
    bool row;                         /* kept in a row of its own (read from or written to one);
                                         a card payment's steps have none (pay_flow_write_op) */
} pay_op_t;

/* An immutable text shared by counted references: a payment's copies (a dry run's, the
 * recent payments') share their entries' texts, on any thread. */
typedef struct {
    atomic_uint refs;
    uint32_t bytes;
    char text[];
} pay_text_t;
/* A new text of 'bytes' bytes (and a NUL) with one reference; NULL: no memory. */
pay_text_t *pay_text_new(const char *text, size_t bytes);
/* Takes the text (malloc'ed, freed here) as a counted one; NULL when 'text' is or no memory. */
pay_text_t *pay_text_adopt(char *text);
pay_text_t *pay_text_hold(pay_text_t *text);  /* another reference (NULL: nothing) */
void pay_text_drop(pay_text_t *text);         /* one reference less (NULL: nothing) */

/* An operation's entry in its payment: its compact text, kept from when it was made. */
typedef struct {
    char id[PC_ID_SIZE];
    pay_text_t *text;
    uint32_t held_in;                 /* the payment version whose record holds it whole;
                                         0 when it changed since (the next record holds it) */
} pay_entry_t;

typedef struct {
    char id[PC_ID_SIZE];
    char merchant_id[PC_ID_SIZE];
    pay_state state;
    pay_state state_stored;           /* as last stored (events and stats: did it change?) */
    uint32_t version;
    uint64_t created_ns;
    uint64_t updated_ns;
    int64_t amount;
    char currency[4];
    bool capture_automatic;
    pay_method method;
    bool top_up;                      /* a wallet top-up: the money goes to 'wallet_id' */
    char wallet_id[PC_ID_SIZE];       /* method wallet: the payer's; top-up: the destination */
    struct {
        char token[PC_ID_SIZE];
        char bin[7];
        char last4[5];
        uint32_t exp_month;
        uint32_t exp_year;
        char fingerprint[65];
        bool three_d_secure;          /* enrolled: risk review steps up instead of queueing */
    } card;
    char routing_number[GW_BANK_FIELD_SIZE];
    char account_number[GW_BANK_FIELD_SIZE];
    struct {
        char id[PC_ID_SIZE];
        char country[3];
        char device_id[PC_ID_SIZE];
        char ip[48];
    } payer;
    char description[API_STRING_BYTES_MAX + 1];
    json_t *metadata;                 /* owned; NULL when none */
    struct {
        uint64_t decision_id;
        char outcome[16];             /* "approve", "review", "decline", "" when not scored */
        json_t *detail;               /* owned: score and reasons */
    } risk;
    json_t *routing;                  /* owned: the gateway's decision, NULL before routing
                                         or when held as 'routing_text' only */
    char channel[GW_NAME_SIZE];
    char channel_ref[PC_ID_SIZE];
    char challenge_id[PC_ID_SIZE];
    int64_t authorized;
    int64_t captured;
    int64_t refunded;
    int64_t fees;
    int64_t fees_reversed;
    char hold_id[PC_ID_SIZE];         /* the open hold ("" when none) */
    int64_t hold_amount;
    uint64_t hold_deadline_ns;
    char pending_op[PC_ID_SIZE];      /* an operation whose outcome is awaited */
    struct {
        char code[GW_CODE_SIZE + 8];
        char message[GW_MESSAGE_SIZE];
        char source[16];              /* "risk", "channel", "ledger", "gateway" */
    } decline;
    pay_entry_t *entries;             /* owned: every op's entry, in order */
    uint32_t entry_count;
    uint32_t entry_room;
    char (*transfers)[PC_ID_SIZE];    /* owned: every ledger transfer id */
    uint32_t transfer_count;
    uint32_t transfer_room;
    bool live;                        /* made by pay_payment_init (a zeroed one is not) */
    bool parts_lost;                  /* an entry or a transfer could not be kept (memory):
                                         the payment is not rendered again */
    pay_text_t *fixed_text;           /* the text of the members set when the payment is
                                         made (its method, payer, description, metadata,
                                         risk), once rendered; NULL before */
    uint32_t fixed_held_in;           /* the version whose record holds the fixed members
                                         whole (a later record names it instead: schema
                                         version 14); 0: the next record holds them */
    uint32_t routing_held_in;         /* the same for the routing; 0 once it is set anew */
    pay_text_t *routing_text;         /* '"routing":…' of 'routing_of' ... */
    json_t *routing_of;               /* ... the routing it was rendered from (held); with
                                         'routing' NULL, the text is the routing itself */
} pay_payment_t;

void pay_payment_init(pay_payment_t *payment);
void pay_payment_clear(pay_payment_t *payment);
/* Clears and frees a malloc'ed payment (NULL: nothing). */
void pay_payment_free(pay_payment_t *payment);
/* A deep copy (json parts included). */
PC_MUST_USE pc_status pay_payment_copy(pay_payment_t *dst, const pay_payment_t *src);
/* A copy for a dry run (pay_flow_submit_staged): the arrays a command changes are
 * copied one level (a command replaces or appends their elements, never changes one
 * in place), the parts it never changes (metadata, risk, routing) are shared. */
PC_MUST_USE pc_status pay_payment_copy_for_dry_run(pay_payment_t *dst, const pay_payment_t *src);
/* The stored and shown form (new reference). */
json_t *pay_payment_json(const pay_payment_t *payment);
/* Clears what the stored form does not carry, so the payment equals its read. */
void pay_payment_as_stored(pay_payment_t *payment);
PC_MUST_USE pc_status pay_payment_from_json(const json_t *doc, pay_payment_t *out);
PC_MUST_USE pc_status pay_payment_read(store_reader_t *reader, const char *id, pay_payment_t *out);
/* The document of a payment row at 'version' (its own version: object->version): the
 * row's doc when it has one (rows written before schema version 6), else its version
 * record with each operation entry taken from the record that holds it whole.
 * '*op_versions_out' (or NULL) receives each entry's pay_entry_t.held_in (an array). */
PC_MUST_USE pc_status pay_payment_doc(store_reader_t *reader, const store_pay_object_t *object, uint32_t version,
                                      json_t **doc_out, json_t **op_versions_out);
json_t *pay_op_json(const pay_op_t *op);
PC_MUST_USE pc_status pay_op_from_json(const json_t *doc, pay_op_t *out);
PC_MUST_USE pc_status pay_op_read(store_reader_t *reader, const char *id, pay_op_t *out);
/* The op's entry in a payment's operations as an object (new reference; NULL: no
 * memory); what pay_op_entry_text writes. */
json_t *pay_op_entry(const pay_op_t *op);
/* The entry's compact text as a counted text (NULL: a text jansson refuses, or memory). */
pay_text_t *pay_op_entry_text(const pay_op_t *op);
/* Adds or replaces the op's entry in payment->entries ('text' stolen; NULL: nothing). */
void pay_payment_entry_put(pay_payment_t *payment, const pay_op_t *op, pay_text_t *text);
void pay_payment_transfer_add(pay_payment_t *payment, const char *transfer_id);

/* ---- texts written straight into a buffer (render.c) ---- */
/* A text being written: in the caller's buffer while it fits, then on the heap. */
typedef struct {
    char *text;
    size_t bytes;
    size_t room;
    bool heap;
    bool failed;                      /* no memory, or a text it cannot write */
} pay_out_t;
#define PAY_OUT_INIT(buffer) {.text = (buffer), .room = sizeof(buffer)}
/* Makes room for 'bytes' more (and a NUL) on the heap; false (out failed): no memory. */
bool pay_out_grow(pay_out_t *out, size_t bytes);
/* Appends 'piece'. Inline: most pieces are literals of a few bytes, whose copy the
 * compiler turns into a store or two (a payment's texts take ~180 pieces a render). */
static inline void pay_out_add(pay_out_t *out, const char *piece, size_t bytes) {
    if (out->failed) return;
    if (out->bytes + bytes + 1 > out->room && !pay_out_grow(out, bytes)) return;
    memcpy(out->text + out->bytes, piece, bytes);
    out->bytes += bytes;
}
/* The text written (one exact malloc), or NULL when it failed; 'out' is done with. */
char *pay_out_take(pay_out_t *out);
pay_text_t *pay_out_take_text(pay_out_t *out); /* the same as a counted text */
/* A text jansson dumps with nothing but '"' and '\\' escaped (printable ASCII). */
bool pay_text_plain(const char *text);
/* The key of a record's reference to the entry a record of that version holds whole. */
#define PAY_RECORD_REF_KEY "$version"
/* A record's members in place of the fixed members and of the routing that a record of
 * that version holds whole ({…,"$fixed":1,"$routing":2,…}, schema version 14). */
#define PAY_RECORD_FIXED_KEY "$fixed"
#define PAY_RECORD_ROUTING_KEY "$routing"
/* The compact texts of pay_op_json(op) and of pay_op_entry(op), written directly
 * (malloc'ed); NULL when a text in them is not plain printable ASCII (then json_dumps
 * the object) or on no memory. */
char *pay_render_op(const pay_op_t *op);
char *pay_render_op_entry(const pay_op_t *op);
pay_text_t *pay_render_op_entry_text(const pay_op_t *op); /* the same as a counted text */
/* The members payment_json_fixed(p) dumps, less its braces (malloc'ed), written
 * directly (metadata and the risk detail dumped by jansson); NULL as above. */
char *pay_render_fixed(const pay_payment_t *p);
/* The payment's routing: the gateway's decision, held as its text when it renders
 * directly (no jansson tree), else as gw_decision_json's object. */
void pay_payment_routing_set(pay_payment_t *p, const gw_decision_t *decision);
/* '"routing":…', the member of a payment that holds the gateway's decision, byte for
 * byte json_dumps of gw_decision_json's object under that key, written directly (a
 * counted text); NULL when a name in it is not plain printable ASCII or on no memory
 * (then the decision goes through jansson). */
pay_text_t *pay_render_routing(const gw_decision_t *d);
/* The operations array into the document ('full') and into the record, where an entry
 * a record holds whole is a reference {"id", "$version"} to it. */
void pay_render_ops(const pay_payment_t *p, pay_out_t *full, pay_out_t *record);
/* The payment's document (json_dumps of pay_payment_json, byte for byte) and its record
 * (malloc'ed), its fixed members' and routing's texts given: false when a text in the
 * other members is not plain (then jansson dumps them) or on no memory. */
bool pay_render_payment(const pay_payment_t *p, const char *fixed, const char *routing, char **doc_out,
                        char **record_out);
/* 'value' in decimal as "%lld" writes it; returns its length. */
#define PAY_INT_TEXT_SIZE 24 /* "-9223372036854775808" and its NUL */
size_t pay_int_text(char out[PAY_INT_TEXT_SIZE], int64_t value);
pay_attempt_t *pay_op_attempt_put(pay_op_t *op, const gw_attempt_t *attempt);
void pay_op_attempts_from_result(pay_op_t *op, const gw_result_t *result);

/* Inside the command that makes flow->reply final, before the caller's in_tx: when the
 * reply is the version of the flow's payment this command wrote and the caller's key's
 * stored reply names that payment (key_in_tx, now or in a committed command), the
 * answer is to be kept on the payment's row (pay_flow_row_put writes it) and the reply
 * is marked 'kept': the key's reply is not rewritten. */
void pay_flow_answer_keep(pay_flow_t *flow);
/* At the end of a command that wrote its flow's payment: the payment's row (the
 * listing's columns of the version written last), once, with the answer kept by
 * pay_flow_answer_keep (the first final answer stays). */
PC_MUST_USE pc_status pay_flow_row_put(pay_flow_t *flow, store_tx_t *tx);

/* A listing's callback: each object's document (a payment's rendered from its
 * records) appended to 'data'. */
typedef struct {
    json_t *data;
    store_reader_t *reader;
    pc_status status;                 /* the first failure to render one */
} pay_list_t;
void pay_list_append(const store_pay_object_t *object, void *ctx /* pay_list_t */);
/* A command's writes rendered before it is queued (pay_flow_submit_staged): the
 * payment's next version (its document and record) and its op's next row. The writer
 * stores these texts instead of rendering them when the version they are of is the
 * one it writes; anything else is rendered on the writer as before. */
typedef struct {
    uint32_t version;                 /* the payment version of 'doc' and 'record'; 0: none */
    uint64_t created_ns;
    uint64_t updated_ns;
    char *doc;
    char *record;
    uint8_t *record_packed;           /* 'record' in the store's form, made with it off the
                                         writer (store_pay_version_pack); NULL: none */
    size_t record_packed_bytes;
    uint32_t op_version;              /* the op version of 'op_text'; 0: none */
    uint64_t op_created_ns;
    uint64_t op_updated_ns;
    char *op_text;
    pay_text_t *op_entry_text;        /* the op's entry in the payment (pay_op_entry_text) at ... */
    uint32_t op_entry_version;        /* ... this op version (0: none) */
    pay_payment_t *payment;           /* the payment 'doc' renders (malloc'ed; shares parts as
                                         pay_payment_copy_for_dry_run): once the writer stored
                                         'doc' and committed, the payment as committed */
    bool taken;                       /* the writer stored 'doc' in this run of the command */
} pay_staged_t;
void pay_staged_clear(pay_staged_t *staged);
/* The staged record in 'store''s form (store_pay_version_pack), made on this thread so
 * that the writer binds bytes; left without it when the store cannot (the writer makes
 * it then). */
void pay_staged_pack(pay_staged_t *staged, store_t *store);

/* Writes a new version of a payment / op (version +1, updated now) into 'tx': a
 * payment's version record (its row follows at the end of the command:
 * pay_flow_row_put), an op's row. The payment's document, rendered once, goes to
 * '*doc_out' (malloc'ed; NULL on failure) for its event. 'tx' NULL: a dry run
 * (pay_flow_submit_staged): nothing is written, the texts are rendered into 'staged'.
 * Otherwise 'staged' texts of the version written are used instead of rendering. */
PC_MUST_USE pc_status pay_payment_put(store_tx_t *tx, pay_payment_t *payment, pay_staged_t *staged,
                                      char **doc_out);
/* 'in_payment': the op's entry goes into its payment's record in the same command
 * (the op of a payment): the op's row then keeps its listing columns only, and
 * pay_op_read takes the op from the payment's record. 'row': false for an op of a
 * payment that needs no row (pay_flow_write_op): its version advances, nothing of it
 * is written but the entry in its payment's record. */
PC_MUST_USE pc_status pay_op_put(store_tx_t *tx, pay_op_t *op, pay_staged_t *staged, bool in_payment, bool row);
/* The op 'op_id' of payment 'payment_id' from the payment's latest record (an op
 * without a row: store_pay_object_t.pending_op); PC_NOT_FOUND when there is no such
 * payment, PC_STORE_CORRUPT when its record holds no such op. */
PC_MUST_USE pc_status pay_op_read_in(store_reader_t *reader, const char *payment_id, const char *op_id,
                                     pay_op_t *out);

/* Copies an id (both PC_ID_SIZE buffers, possibly inside one struct). */
static inline void pay_id_copy(char dst[PC_ID_SIZE], const char *src) {
    size_t n = strnlen(src, PC_ID_SIZE - 1);
    memmove(dst, src, n);
    dst[n] = '\0';
}
/* Records a transfer id in the op (and the payment's list). */
void pay_op_transfer_add(pay_flow_t *flow, const char *transfer_id);
/* Ids: "<prefix><24 hex>": the creation time (microseconds) then random bits. */
void pay_id_new(const char *prefix, char out[PC_ID_SIZE]);
/* "<op id>:<suffix>", a transfer id of an op. */
void pay_transfer_id(char out[PC_ID_SIZE], const char *op_id, const char *suffix);

/* ---- the runtime (runtime.c) ---- */
/* Where a card authorization's or capture's time goes on the server (stats.c,
 * /metrics paycore_payment_path_seconds): the flow's path cut at each hand-over, each
 * cut adding the time since the one before to its segment. */
typedef enum {
    PAY_PATH_API = 0,        /* the request's thread: checks, vault, risk, until the gateway has it */
    PAY_PATH_GATEWAY_IN,     /* until the attempt is routed (a first one: on the submitter's thread) */
    PAY_PATH_PERSIST_STAGE,  /* the attempt's command: a stage thread's queue, its dry run */
    PAY_PATH_PERSIST_QUEUE,  /* ... in the writer's queue (behind the batch being written) */
    PAY_PATH_PERSIST_COMMIT, /* ... its batch: applied, written, COMMIT (fsync), completed */
    PAY_PATH_CALL,           /* the attempt durable until the channel's answer is back */
    PAY_PATH_APPLY_STAGE,    /* the answer waiting for a stage thread */
    PAY_PATH_BOOK_STAGE,     /* its booking worked out and rendered */
    PAY_PATH_BOOK_QUEUE,     /* ... in the writer's queue */
    PAY_PATH_BOOK_COMMIT,    /* ... its batch */
    PAY_PATH_ANSWER,         /* committed until answered: a stage thread's queue */
    PAY_PATH_TOTAL,          /* the flow made until answered: the sum of the above */
    PAY_PATH_SEGMENTS
} pay_path_segment;
#define PAY_PATH_OPS 2          /* authorize, capture */
#define PAY_PATH_BUCKETS 17     /* <= 16 us * 2^i for i < 16, then the rest */
typedef struct {                  /* a segment's count: the sum of its buckets */
    _Atomic uint64_t sum_ns[PAY_PATH_OPS][PAY_PATH_SEGMENTS];
    _Atomic uint64_t buckets[PAY_PATH_OPS][PAY_PATH_SEGMENTS][PAY_PATH_BUCKETS];
} pay_path_stats_t;
/* Ends the flow's current segment as 'segment' (any thread: the flow's own step). */
void pay_path_cut(pay_flow_t *flow, pay_path_segment segment);
/* The same at 'at_ns' (pc_mono_ns, not before the last cut): a time seen elsewhere. */
void pay_path_cut_at(pay_flow_t *flow, pay_path_segment segment, uint64_t at_ns);
/* The flow's path into the figures: card authorizations and captures that called out. */
void pay_path_count(pay_flow_t *flow);

/* The payments figures (stats.c): counts of committed changes since start. */
typedef struct {
    pthread_mutex_t mutex;
    pay_stats_t counts;
    pay_map_t merchants;              /* merchant id -> its own figures (pay_merchant_stats_t *) */
    bool merchants_ready;             /* the map could be made */
    uint32_t merchant_count;          /* at most PAY_STATS_MERCHANTS_MAX */
} pay_stats_state_t;

struct pay {
    pay_config_t config;
    /* Four locks, each over the sets that one kind of step uses: the API, stage, gateway
     * and writer threads take them some 20 times a payment between them, and meet on one
     * only when they use the same sets (one lock for all made a futex call of contention
     * every few payments: perf record -e syscalls:sys_enter_futex, bench_payments). None
     * is taken while another is held; each lies a hundred bytes or more from the next. */
    pthread_mutex_t busy_mutex;       /* guards 'busy' and 'busy_released_ns' */
    pay_map_t busy;                   /* ids with an operation running */
    uint64_t busy_released_ns[PAY_BUSY_STAMPS]; /* the last release of any id hashed to each
                                         (monotonic): pay_busy_take_since */
    pthread_mutex_t sets_mutex;       /* guards the next four maps */
    pay_map_t key_merchants;          /* API key id -> merchant id (malloc'ed string) */
    pay_map_t merchants;              /* merchant id -> pay_merchant_t* */
    pay_map_t accounts_known;         /* ledger account ids known to exist */
    pay_map_t holds;                  /* payment id -> deadline (the value is the number): expiry */
    pthread_mutex_t recent_mutex;     /* guards 'recent', 'committed' and their rings */
    pay_map_t recent;                 /* payment id -> pay_payment_t* as last committed */
    char (*recent_ring)[PC_ID_SIZE];  /* their ids in the order put: the oldest goes first */
    uint32_t recent_next;             /* the ring's slot the next put takes */
    pay_map_t committed;              /* payment id -> the version its last write committed
                                         (the value is the number): writer completions */
    char (*committed_ring)[PC_ID_SIZE]; /* their ids in the order noted: the oldest goes */
    uint32_t committed_next;
    pthread_mutex_t mutex;            /* guards the flows, 'stopping' and the recovery's wake */
    uint32_t flows;                   /* operations running */
    pay_flow_t *flows_free;           /* ended flows kept zeroed for reuse (staging.next) ... */
    uint32_t flows_free_count;        /* ... at most PAY_FLOWS_FREE_MAX */
    pthread_cond_t flows_idle;
    bool stopping;
    pthread_mutex_t readers_mutex;
    store_reader_t *readers[64];
    uint32_t reader_count;
    pthread_t recovery_thread;
    bool recovery_started;
    pthread_cond_t recovery_wake;
    bool recovery_requested;
    uint64_t recovery_passes;          /* guarded by mutex */
    uint32_t recovery_last_resolved;
    char three_ds_prefixes[8][20];
    uint32_t three_ds_prefix_count;
    pay_stats_state_t stats;          /* stats.c: its own mutex */
    pay_path_stats_t path;            /* stats.c: atomics */
    struct pay_stage {                /* stage.c: threads running commands' dry runs */
        pthread_mutex_t mutex;        /* guards the queue and 'stopping' */
        sem_t wake;                   /* posted for an idle thread; waited on without the mutex
                                         (a condition variable's wait takes it back marked
                                         contended: a futex call at every unlock after) */
        pay_flow_t *head;             /* flows waiting for their dry run (FIFO) */
        pay_flow_t *tail;
        uint32_t queued;              /* flows in the queue */
        uint32_t idle;                /* threads waiting for one, none posted for yet */
        atomic_uint waking;           /* queuers signalling 'wake' after letting the mutex go:
                                         pay_stage_stop waits for them before destroying it */
        bool stopping;
        pthread_t threads[PAY_STAGE_THREADS];
        uint32_t thread_count;        /* 0: every dry run runs on its caller's thread */
        _Atomic uint64_t carried;     /* gateway results applied on the gateway's thread
                                         (pay_stage_carry) */
        bool started;                 /* pay_stage_start ran (pay_stage_stop undoes it) */
    } stage;
};

store_reader_t *pay_reader_acquire(pay_t *pay);
void pay_reader_release(pay_t *pay, store_reader_t *reader);
/* Takes 'id' for one operation: false when one runs already. */
bool pay_busy_take(pay_t *pay, const char *id);
void pay_busy_release(pay_t *pay, const char *id);
/* pay_busy_take, also false when an operation on 'id' (or on an id sharing its stamp)
 * ended at or after 'since_ns' (pc_mono_ns): the recovery takes what it listed from the
 * store only if no flow of ours ended on it since, so it never holds, even for the read
 * that would tell it so, the mark of an operation a client just saw answered. */
bool pay_busy_take_since(pay_t *pay, const char *id, uint64_t since_ns);
bool pay_busy(pay_t *pay, const char *id);
bool pay_account_known(pay_t *pay, const char *account_id);
void pay_account_mark_known(pay_t *pay, const char *account_id);
void pay_hold_track(pay_t *pay, const char *payment_id, uint64_t deadline_ns);
void pay_hold_untrack(pay_t *pay, const char *payment_id);
bool pay_card_three_ds(const pay_t *pay, const char *number);
/* Recent payments (runtime.c): a payment as a flow committed it, kept so the next
 * operation on it skips reading and parsing its records. An entry is used only for
 * the version the store's row has: a write that did not come through here shows as
 * another version. Put takes 'payment' (its parts too) and frees it when refused. */
void pay_recent_put(pay_t *pay, pay_payment_t *payment);
/* The payment 'id' at 'version' moved into 'out' (true), removing it; false: none
 * (an entry of another version is dropped). */
bool pay_recent_take(pay_t *pay, const char *id, uint32_t version, pay_payment_t *out);
/* The version of payment 'id' its latest write committed, noted by the writer's
 * completion of every command that wrote it (in commit order); 0: the write failed or
 * its outcome is not known (forgotten: the next load reads the row). Bounded: the
 * oldest ids go first. */
void pay_committed_note(pay_t *pay, const char *id, uint32_t version);
/* The recent payment 'id' moved into 'out' when it is the version last committed
 * (pay_committed_note): no read of the row needed; false otherwise. */
bool pay_recent_take_current(pay_t *pay, const char *id, pay_payment_t *out);
/* The committed payment 'id' for an operation that holds its busy mark: the recent one
 * when it is the version last committed, or when the row's version matches; else read
 * from the store. */
PC_MUST_USE pc_status pay_payment_load(pay_t *pay, store_reader_t *reader, const char *id, pay_payment_t *out);

/* ---- replies ---- */
void pay_reply_error(pay_reply_t *out, pc_status status, const char *field, const char *message);
void pay_reply_object(pay_reply_t *out, int http_status, json_t *body /* stolen */);
void pay_reply_state_conflict(pay_reply_t *out, pay_state state, const char *what);

/* ---- stats (stats.c): payment changes counted after their commit ---- */
/* What one payment write changes in the figures (set inside the tx, counted on commit). */
typedef struct {
    bool pending;
    bool created;                     /* the payment's first row */
    bool changed;                     /* its state differs from the stored row's */
    pay_state from;
    pay_state to;
    char decline_code[GW_CODE_SIZE + 8];
    char merchant_id[PC_ID_SIZE];
} pay_stats_change_t;
void pay_stats_init(pay_t *pay);
void pay_stats_free(pay_t *pay);
/* The change 'flow' wrote committed: count it (the writer thread). */
void pay_stats_count(pay_t *pay, const pay_stats_change_t *change);

/* ---- flows: one operation on its way (flow.c) ---- */
typedef void (*pay_flow_fn)(pay_flow_t *flow, pc_status status);
typedef pc_status (*pay_flow_tx_fn)(pay_flow_t *flow, store_tx_t *tx);

#define PAY_FLOW_TRANSFERS_MAX 8
#define PAY_FLOW_ACCOUNTS_MAX 8

struct pay_flow {
    pay_t *pay;
    pay_reply_fn_t reply_fn;          /* .done NULL: an internal flow (recovery, expiry) */
    char key_id[PC_ID_SIZE];          /* the caller's API key */
    char idempotency_key[API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
    uint8_t request_hash[32];
    bool has_idempotency;
    bool idempotency_key_new;         /* pay_caller_t's: nothing stored under the key */
    bool key_written;                 /* this command stored the key's reply (key_in_tx) */
    bool key_named;                   /* a committed command stored it: the key's reply names
                                         the payment, whose row keeps the final answer */
    char lock_id[PC_ID_SIZE];         /* the busy id this flow holds ("" none) */
    pay_payment_t payment;
    bool has_payment;
    bool payment_stored;              /* the payment's row exists */
    pay_op_t op;
    bool has_op;
    store_vault_card_t card;          /* a new card to store with the payment */
    bool card_new;
    char challenge_code[16];          /* confirm: never stored */
    char card_number[GW_CARD_NUMBER_SIZE]; /* a new card's number as entered, for its first call
                                         only (not decrypted again): wiped then, never stored */
    gw_request_t request;             /* card data wiped once submitted */
    gw_call_t *call;                  /* while an attempt is persisted */
    struct pay_calling {
        pay_flow_fn on_result;        /* the call's result (call.c) */
        uint32_t reserve_count;       /* transfers[0..n) booked with the first persist */
        bool first_done;
    } calling;
    gw_attempt_t attempt;
    gw_result_t result;
    const pay_merchant_t *merchant;
    /* the current writer command */
    writer_cmd_t cmd;
    ledger_transfer_t transfers[PAY_FLOW_TRANSFERS_MAX];
    ledger_transfer_result_t transfer_results[PAY_FLOW_TRANSFERS_MAX];
    ledger_account_t accounts[PAY_FLOW_ACCOUNTS_MAX];
    ledger_account_result_t account_results[PAY_FLOW_ACCOUNTS_MAX];
    ledger_account_t *account_events;          /* instead of 'accounts' when set (merchants) */
    ledger_account_result_t *account_event_results;
    pay_flow_tx_fn in_tx;
    pay_flow_fn then;
    /* the answer */
    pay_reply_t reply;
    bool reply_ready;                 /* set: the answer is final (stored in the command's tx) */
    pc_status persist_status;         /* persist: what gw_attempt_persisted gets */
    void *extra;                      /* a flow kind's own data (freed with the flow) */
    char *doc_text;                   /* the payment's document as last stored (malloc'ed):
                                         its event's object and the answer, rendered once */
    uint32_t doc_version;
    pay_staged_t staged;              /* the current command's texts, rendered before it */
    bool payment_written;             /* the current command's run wrote the payment */
    uint32_t answer_kept_version;     /* ... and keeps this answer on its row (0: none) */
    int answer_kept_status;
    pay_payment_t *committed;         /* the payment as this flow's last write committed it
                                         (NULL: not known); kept as a recent one at the end */
    pay_payment_t *committed_stale;   /* the one before it, freed when the flow ends */
    bool dry;                         /* a copy running its command's in_tx without a tx */
    bool inquiry;                     /* the result is a status inquiry's (recovery) */
    pay_state state_before;           /* expiry: the state the hold belonged to */
    pay_stats_change_t stats_change;  /* the command's payment write, counted on commit */
    bool hold_changed;                /* the payment's hold moved: track or untrack it */
    bool op_captures;                 /* an authorization captured at once */
    bool booked_without_hold;         /* a capture booked after its hold was gone */
    bool rebook;                      /* booked_in_tx: run booking_fallback next */
    uint32_t booking_count;
    void (*booked)(pay_flow_t *flow); /* inside the tx: move the payment and op */
    void (*booking_fallback)(pay_flow_t *flow);
    pc_status booking_refused;
    /* Runs when the flow ends, after the answer (recovery passes, bank callbacks). */
    void (*on_finish)(void *ctx, pc_status status);
    void *on_finish_ctx;
    struct {                          /* its path's segments so far (pay_path_cut) */
        uint64_t at_ns;               /* the last cut (made: the flow's start) */
        uint64_t made_ns;
        uint64_t ns[PAY_PATH_SEGMENTS];
        bool answered;                /* the channel's answer came: later commands book */
    } path;
    struct {                          /* a step waiting for a stage thread (stage.c) */
        pay_flow_t *next;
        void (*run)(pay_flow_t *flow);
        writer_cmd_kind kind;         /* a staged command's (pay_flow_submit_staged) */
        uint32_t event_count;
        pay_flow_tx_fn in_tx;
        pay_flow_fn then;
    } staging;
};

typedef void (*pay_booking_fn)(pay_flow_t *flow);

/* What an answer (or a status inquiry's) means for the operation. */
typedef enum {
    PAY_OUT_APPROVED, PAY_OUT_PENDING, PAY_OUT_CHALLENGE, PAY_OUT_DECLINED, PAY_OUT_NOTHING, PAY_OUT_UNKNOWN
} pay_outcome;
pay_outcome pay_outcome_of(const pay_flow_t *flow);
/* Books flow->transfers[0..count); 'booked' moves the payment inside the tx;
 * 'fallback' (or NULL) runs instead when the hold was gone. */
void pay_book_submit(pay_flow_t *flow, uint32_t count, pay_booking_fn booked, pay_booking_fn fallback);
/* The gateway's result (call or inquiry) landed in flow->result. */
void pay_op_result(pay_flow_t *flow, pc_status status);
/* Stores the payment as it stands (no ledger change) and answers it (201). */
void pay_payment_commit_final(pay_flow_t *flow);
/* Wallets (wallets.c). */
bool pay_wallet_check(pay_flow_t *flow, store_reader_t *reader);
bool pay_wallet_top_up_target(pay_flow_t *flow, const pay_caller_t *caller, const char *wallet_id);
void pay_wallet_pay(pay_flow_t *flow);
void pay_wallet_refund(pay_flow_t *flow);
uint32_t pay_book_wallet_payment(pay_flow_t *flow, int64_t fee);
uint32_t pay_book_wallet_refund(pay_flow_t *flow, int64_t fee_reversal);
/* Payouts and withdrawals (bank.c): reserve, then the bank; its first answer. */
void pay_bank_op_start(pay_flow_t *flow, pay_account_kind from, const char *from_owner, pay_account_kind to,
                       const char *to_owner, uint16_t code);
void pay_bank_op_apply(pay_flow_t *flow, pay_outcome outcome);
/* Payouts, withdrawals and bank-transfer collections: settled by the bank's callback. */
bool pay_bank_op_waits_callback(const pay_flow_t *flow);
/* A status inquiry's final answer (settled, returned) for such an operation, applied
 * exactly as its callback would be (bank.c); false, nothing done, for any other
 * answer or operation. */
bool pay_bank_inquiry_apply(pay_flow_t *flow);
/* A reserve refused by the ledger before any call: answered with the ledger's code
 * (nothing was stored) and the flow ended; false otherwise. */
bool pay_refused_before_call(pay_flow_t *flow);

/* A new flow for 'caller' (NULL: internal) answering through 'reply' (NULL: none).
 * NULL: too many flows or out of memory (the reply is then made with limit_reached). */
pay_flow_t *pay_flow_new(pay_t *pay, const pay_caller_t *caller, const pay_reply_fn_t *reply);
/* Ends the flow: answers (its reply), releases its lock, frees it. */
void pay_flow_finish(pay_flow_t *flow);
/* Answers an error at once and ends the flow. */
void pay_flow_fail(pay_flow_t *flow, pc_status status, const char *field, const char *message);
/* Queues a writer command: the flow's 'transfers' (count > 0) or 'accounts' (kind
 * CREATE_ACCOUNTS) or none (EXEC); 'in_tx' writes rows after the ledger applied them,
 * then the flow's final answer when reply_ready; 'then' runs after the commit (or with
 * the error). */
void pay_flow_submit(pay_flow_t *flow, writer_cmd_kind kind, uint32_t event_count, pay_flow_tx_fn in_tx,
                     pay_flow_fn then);
/* pay_flow_submit, with the payment's and op's texts rendered here first: 'in_tx' runs
 * dry (tx NULL) on a copy of the flow, as if every transfer of the command committed,
 * so the writer thread only stores what this thread rendered. 'in_tx' must write
 * through pay_flow_write_op / pay_flow_write_payment / pay_tx_* and treat a NULL tx
 * as a dry run. */
void pay_flow_submit_staged(pay_flow_t *flow, writer_cmd_kind kind, uint32_t event_count, pay_flow_tx_fn in_tx,
                            pay_flow_fn then);
/* Marks the calling thread as one of the serial ones (the gateway's callbacks, the
 * writer's completions) until the matching leave: a staged command submitted there
 * has its dry run on a stage thread instead, and a flow finished there is answered and
 * freed on one. Nests. */
void pay_serial_enter(void);
void pay_serial_leave(void);

/* ---- stage threads (stage.c) ---- */
/* Starts the threads (none when they cannot start: callers then run steps themselves). */
void pay_stage_start(pay_t *pay);
/* Stops them once every flow ended (pay_quiesce): the queue is empty. */
void pay_stage_stop(pay_t *pay);
/* Hands the flow to a stage thread, which runs 'run' (the flow is that thread's from
 * now on): false when there is none (then the caller runs it). */
bool pay_stage_queue(pay_flow_t *flow, void (*run)(pay_flow_t *flow));
/* From a gateway callback or a writer completion: what this thread queues stays with
 * it (unseen by the stage threads) until pay_stage_release, the gateway's pass_end
 * hook or the end of the writer's completions (writer_completions_defer), hands it
 * all over with one wake-up. */
void pay_stage_hold(void);
void pay_stage_release(void);
/* Gateway thread, inside a hold: true when the flow's next step is better run right
 * here than queued, counted in 'carried': nothing of this pass is queued yet and every
 * stage thread sleeps (queuing would cost a wake-up), at most PAY_STAGE_CARRY_MAX a
 * pass (a longer pass holds up the channels' answers behind it). */
bool pay_stage_carry(pay_t *pay);

/* The final answer (set before the command that makes it final, or after it). */
void pay_flow_answer(pay_flow_t *flow, int http_status, json_t *body);
/* The payment as the answer (201 for a new one, else 200; 202 while an op is pending). */
void pay_flow_answer_payment(pay_flow_t *flow, int http_status);
/* Inside a transaction: the payment's rows (+ card, lookups of a new one). */
PC_MUST_USE pc_status pay_flow_write_payment(pay_flow_t *flow, store_tx_t *tx);
/* Inside a transaction, after pay_flow_write_op: flow->op's entry in the payment (the
 * one a dry run of this command made, when it is of this op version). */
void pay_flow_op_put(pay_flow_t *flow);

/* ---- calling the gateway (call.c) ---- */
/* Submits flow->request; persist writes the attempt (and, the first time, a new
 * payment and flow->transfers[0..reserve_count): a reserve), done lands in 'on_result'. */
void pay_call_start(pay_flow_t *flow, pay_flow_fn on_result, uint32_t reserve_count);
/* The channel's terms as configured now: its authorization window (the server's
 * --authorization-window-s when it names none) and whether it takes several captures. */
uint32_t pay_channel_window_s(pay_t *pay, const char *channel);
bool pay_channel_partial_captures(pay_t *pay, const char *channel);
/* The status inquiry of the op's last attempt (recovery). */
void pay_call_status(pay_flow_t *flow, pay_flow_fn on_result);

/* ---- steps (book.c): the ledger transfers of each step ---- */
/* Each fills flow->transfers and returns their count (0: nothing to move). */
uint32_t pay_book_hold(pay_flow_t *flow, int64_t amount, uint32_t timeout_s);
uint32_t pay_book_capture(pay_flow_t *flow, uint32_t first, int64_t amount, int64_t fee, bool with_hold,
                          bool release_rest);
uint32_t pay_book_release(pay_flow_t *flow, const char *pending_id, const char *suffix);
uint32_t pay_book_refund_reserve(pay_flow_t *flow, int64_t amount);
uint32_t pay_book_refund(pay_flow_t *flow, int64_t amount, int64_t fee_reversal);
uint32_t pay_book_bank_reserve(pay_flow_t *flow, pay_account_kind from, const char *from_owner,
                               pay_account_kind to, const char *to_owner, int64_t amount, uint16_t code);
uint32_t pay_book_bank_settle(pay_flow_t *flow, pay_account_kind transit, const char *transit_owner,
                              int64_t amount, uint16_t code);
/* The flow's transfers all committed (status OK or EXISTS: booked before). */
bool pay_book_ok(const pay_flow_t *flow, uint32_t count, pc_status *first_failure);
/* The first ledger account a step needs that may be missing: the channel's
 * receivable. Adds it to flow->accounts and returns 1 when not known yet. */
uint32_t pay_book_channel_account(pay_flow_t *flow, const char *channel, const char *currency);

/* ---- the payment steps (intent.c, ops.c) ---- */
/* A new op of the flow's payment (random id with 'prefix', status pending). */
void pay_op_new(pay_flow_t *flow, pay_op_kind kind, const char *prefix, int64_t amount);
/* flow->request for 'gop' on the payment's channel (a follow-up: capture, void ...). */
void pay_request_follow_up(pay_flow_t *flow, gw_op gop);
/* Continues a payment whose authorization may run (new, or resumed after review). */
void pay_authorize_start(pay_flow_t *flow);
/* The outcome of an authorize / challenge / capture / void / refund (a call's result,
 * or recovery's status answer: "not found" after the grace is "nothing") applied to
 * the flow's payment and op. */
void pay_op_apply(pay_flow_t *flow);

/* ---- recovery (recovery.c) ---- */
PC_MUST_USE pc_status pay_recovery_start(pay_t *pay);
void pay_recovery_stop(pay_t *pay);
/* The listing a recovery sweep reads: operations in 'status' ("pending": waiting for
 * their channel's answer; "processing": for a bank's callback) created from
 * 'created_from_ns' on, a batch at a time. A partial index serves each (tests). */
store_pay_query_t pay_recovery_query(const char *status, uint64_t created_from_ns);
/* Loads what recovery and expiry need at start (holds). */
PC_MUST_USE pc_status pay_holds_load(pay_t *pay);

/* ---- events (emit.c): one per stored version, in the same transaction ---- */
/* After pay_payment_put: the payment's event, of the document it stored. */
PC_MUST_USE pc_status pay_event_payment(pay_flow_t *flow, store_tx_t *tx, const char *doc);
/* pay_op_put of flow->op and, for a refund, payout or withdrawal, its event. */
PC_MUST_USE pc_status pay_flow_write_op(pay_flow_t *flow, store_tx_t *tx);

/* ---- parsing (parse.c): every refusal names its field ---- */
/* The generic getters are core's (core/json_fields.h); these names are payments' own. */
typedef pc_field_error_t pay_parse_error_t;
static inline bool pay_parse_fields(const json_t *object, const char *const *allowed, const char *path,
                                    pay_parse_error_t *err) {
    return pc_field_check_known(object, allowed, path, err);
}
static inline bool pay_parse_string(const json_t *object, const char *key, bool required, size_t bytes_max,
                                    const char *path, const char **out, pay_parse_error_t *err) {
    return pc_field_string(object, key, required, bytes_max, path, out, err);
}
static inline bool pay_parse_object(const json_t *object, const char *key, bool required, const char *path,
                                    const json_t **out, pay_parse_error_t *err) {
    return pc_field_object(object, key, required, path, out, err);
}
static inline bool pay_parse_int(const json_t *object, const char *key, bool required, int64_t min, int64_t max,
                                 const char *path, int64_t *out, pay_parse_error_t *err) {
    return pc_field_int(object, key, required, min, max, path, out, err);
}
static inline bool pay_parse_bool(const json_t *object, const char *key, const char *path, bool *out,
                                  pay_parse_error_t *err) {
    return pc_field_bool(object, key, path, out, err);
}
static inline void pay_parse_fail(pay_parse_error_t *err, pc_status status, const char *path, const char *key,
                                  const char *message) {
    pc_field_fail(err, status, path, key, message);
}
bool pay_parse_amount(const json_t *object, const char *key, bool required, const char *path, int64_t *out,
                      pay_parse_error_t *err);
bool pay_parse_currency(const json_t *object, const char *key, bool required, const char *path, char out[4],
                        pay_parse_error_t *err);
/* Two capital letters (ISO 3166-1 alpha-2 form). */
bool pay_country_valid(const char *text);
bool pay_parse_country(const json_t *object, const char *key, bool required, const char *path, char out[3],
                       pay_parse_error_t *err);
bool pay_parse_id(const json_t *object, const char *key, bool required, size_t bytes_max, const char *path,
                  char out[PC_ID_SIZE], pay_parse_error_t *err);
bool pay_parse_metadata(const json_t *object, const char *key, const char *path, json_t **out,
                        pay_parse_error_t *err);
bool pay_parse_bank_account(const json_t *object, const char *key, const char *path, char routing[GW_BANK_FIELD_SIZE],
                            char account[GW_BANK_FIELD_SIZE], pay_parse_error_t *err);
void pay_reply_parse_error(pay_reply_t *out, const pay_parse_error_t *err);

/* The lookup names. */
void pay_lookup_idem(char *out, size_t out_bytes, const char *key_id, const char *idempotency_key);
void pay_lookup_attempt(char *out, size_t out_bytes, const char *idempotency_key);
/* The index of stored Idempotency-Keys (pay_config_t.idem_index): a payment's lookup of
 * its key is being written; at start, every such lookup stored. */
void pay_idem_index_add(pay_t *pay, const char *key_id, const char *idempotency_key);
PC_MUST_USE pc_status pay_idem_index_load(pay_t *pay, store_reader_t *reader);
void pay_lookup_risk(char *out, size_t out_bytes, uint64_t decision_id);

#endif
