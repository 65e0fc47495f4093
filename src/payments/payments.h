/* payments/payments.h: payments over the ledger. Merchants and their chart of
 * accounts, payment intents (authorize, 3-D Secure, capture, cancel, expiry, refunds),
 * customer wallets (pay, top up, withdraw), payouts, fees, risk inline.
 *
 * It knows the ledger through the writer (every step is one writer command whose
 * transfers and rows commit in one transaction), the channels through the gateway
 * (gateway.h), the risk engine through risk.h and the card vault through vault.h; it
 * never speaks SQL (store_payments.h holds its rows). docs/accounting.md gives the
 * chart of accounts and the transfers of every step; src/payments/README.md the
 * threads and the way an operation travels.
 *
 * Money safety:
 * - a channel attempt is durable (the operation, its state and the channel's
 *   idempotency key) before the channel is called: the gateway's persist callback
 *   writes it through the writer and only then lets the call go;
 * - an approval is booked with transfer ids made from the operation's id, so booking
 *   the same answer twice (a retry, recovery after a crash) answers "exists" and moves
 *   nothing twice;
 * - an outcome the gateway could not learn stays "pending" and is resolved by status
 *   inquiry at start and periodically, never by guessing;
 * - one operation at a time per payment, payout or wallet withdrawal: a second one
 *   meanwhile is refused (payment_operation_in_progress), never interleaved.
 *
 * Threads: every function here may be called from any thread. Operations are
 * asynchronous: they return at once and call the reply's 'done' exactly once (perhaps
 * before returning), from an API, gateway or writer thread. Reads are synchronous. */
#ifndef PAYCORE_PAYMENTS_H
#define PAYCORE_PAYMENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gateway/gateway.h"
#include "paycore/limits.h"
#include "paycore/status.h"
#include "risk/risk.h"
#include "store/idem_index.h"
#include "store/store.h"
#include "writer/writer.h"

/* ---- the state table (state.c; docs/payments.md prints the same table) ---- */
typedef enum {
    PAY_STATE_CREATED = 0,          /* being authorized, or the outcome waits for recovery */
    PAY_STATE_REQUIRES_ACTION,      /* 3-D Secure: confirm with the challenge code */
    PAY_STATE_IN_REVIEW,            /* risk said review: the review queue decides */
    PAY_STATE_AUTHORIZED,
    PAY_STATE_PARTIALLY_CAPTURED,
    PAY_STATE_CAPTURED,
    PAY_STATE_PARTIALLY_REFUNDED,
    PAY_STATE_REFUNDED,
    PAY_STATE_CANCELED,
    PAY_STATE_DECLINED,
    PAY_STATE_FAILED,
    PAY_STATE_EXPIRED,
    PAY_STATE_COUNT
} pay_state;

/* What happens to a payment: a request (capture ...) or an outcome (authorized ...). */
typedef enum {
    PAY_EV_RISK_DECLINE = 0,        /* risk declined: nothing moves */
    PAY_EV_RISK_REVIEW,             /* waits in the review queue */
    PAY_EV_REVIEW_APPROVE,          /* the review queue approved: authorization resumes */
    PAY_EV_REVIEW_DECLINE,
    PAY_EV_AUTHORIZED,              /* the channel approved: the hold is booked */
    PAY_EV_AUTHORIZED_CAPTURED,     /* approved and captured at once (capture_method automatic, wallets, bank) */
    PAY_EV_CHALLENGE,               /* 3-D Secure step-up required */
    PAY_EV_DECLINED,                /* the channel declined (or the ledger refused a wallet) */
    PAY_EV_FAILED,                  /* no channel took it, or it never reached one */
    PAY_EV_CONFIRM,                 /* request: complete 3-D Secure */
    PAY_EV_CAPTURE,                 /* request: capture all or part */
    PAY_EV_CAPTURED_PARTIAL,        /* outcome: some of the authorization is left */
    PAY_EV_CAPTURED_FULL,           /* outcome: nothing is left to capture */
    PAY_EV_CANCEL,                  /* request: void the hold at the channel and in the ledger */
    PAY_EV_EXPIRE,                  /* the hold's window ended */
    PAY_EV_REFUND,                  /* request: refund all or part */
    PAY_EV_REFUNDED_PARTIAL,
    PAY_EV_REFUNDED_FULL,
    PAY_EV_COUNT
} pay_event;

const char *pay_state_name(pay_state state);
bool pay_state_parse(const char *name, pay_state *out);
const char *pay_event_name(pay_event event);
/* The table: true and *to set when 'event' may happen in 'from'. */
bool pay_transition(pay_state from, pay_event event, pay_state *to);
/* True for states nothing leaves (refunded, canceled, declined, failed, expired). */
bool pay_state_final(pay_state state);
/* `paycore docs payment-states`: the table as markdown. */
void pay_states_markdown(FILE *out);

/* ---- fees (fees.c): basis points + fixed minor units, half-even on the minor unit ---- */
typedef struct {
    uint32_t bps;           /* 0..10000 */
    int64_t fixed_minor;    /* 0..PAY_FEE_FIXED_MINOR_MAX, in the payment's currency */
} pay_price_t;

/* n / d rounded to the nearest integer, ties to even; n >= 0, d > 0. */
int64_t pay_div_half_even(__int128 n, __int128 d);
/* The fee on a captured total: half_even(total * bps / 10000) + fixed (0 for 0). */
int64_t pay_fee_total(const pay_price_t *price, int64_t captured_minor);
/* The fee of one capture of 'amount_minor' after 'captured_before_minor' was captured and
 * 'fees_before_minor' charged: the cumulative fee minus what was charged, never more
 * than the capture itself (the rest then follows with the next capture), never below 0.
 * Partial captures therefore add up to pay_fee_total of their sum. */
int64_t pay_fee_capture(const pay_price_t *price, int64_t captured_before_minor, int64_t fees_before_minor,
                        int64_t amount_minor);
/* The fee given back with a refund, in proportion: half_even(fees * refunded / captured)
 * cumulative, minus what earlier refunds gave back. A full refund gives back every fee. */
int64_t pay_fee_reversal(int64_t fees_minor, int64_t captured_minor, int64_t refunded_before_minor,
                         int64_t reversed_before_minor, int64_t amount_minor);

/* ---- the chart of accounts (accounts.c; docs/accounting.md) ---- */
typedef enum {
    PAY_ACCOUNT_MERCHANT_AVAILABLE = 0, /* mer:<merchant>:<cur>:available */
    PAY_ACCOUNT_MERCHANT_PENDING,       /* mer:<merchant>:<cur>:pending */
    PAY_ACCOUNT_MERCHANT_REFUNDS,       /* mer:<merchant>:<cur>:refunds */
    PAY_ACCOUNT_MERCHANT_PAYOUTS,       /* mer:<merchant>:<cur>:payouts (in transit) */
    PAY_ACCOUNT_CHANNEL_RECEIVABLE,     /* chn:<channel>:<cur>:receivable */
    PAY_ACCOUNT_FEE_REVENUE,            /* sys:<cur>:fee_revenue */
    PAY_ACCOUNT_WITHDRAWALS,            /* sys:<cur>:withdrawals (wallet withdrawals in transit) */
    PAY_ACCOUNT_FX,                     /* sys:<cur>:fx */
    PAY_ACCOUNT_WALLET,                 /* wal:<wallet> */
    PAY_ACCOUNT_KIND_COUNT
} pay_account_kind;

/* The ledger code of each kind of account (1001 ...) and of each kind of transfer. */
uint16_t pay_account_code(pay_account_kind kind);
enum {
    PAY_TRANSFER_HOLD = 1,          /* authorization hold (pending) */
    PAY_TRANSFER_CAPTURE = 2,       /* the hold posted, or a capture without a hold */
    PAY_TRANSFER_REHOLD = 3,        /* what is left of the hold after a partial capture */
    PAY_TRANSFER_NET = 4,           /* capture, less fees, to the merchant's available balance */
    PAY_TRANSFER_FEE = 5,
    PAY_TRANSFER_REFUND_RESERVE = 6,
    PAY_TRANSFER_REFUND = 7,
    PAY_TRANSFER_FEE_REVERSAL = 8,
    PAY_TRANSFER_PAYOUT_RESERVE = 9,
    PAY_TRANSFER_PAYOUT = 10,
    PAY_TRANSFER_WALLET_PAYMENT = 11,
    PAY_TRANSFER_TOP_UP = 12,
    PAY_TRANSFER_WITHDRAWAL_RESERVE = 13,
    PAY_TRANSFER_WITHDRAWAL = 14,
    PAY_TRANSFER_RELEASE = 15,      /* void of a hold or reserve */
    PAY_TRANSFER_WALLET_REFUND = 16,
};
/* "mer:m_1:EUR:available" ...; 'owner' is the merchant, channel or wallet id (NULL for
 * the system's accounts). False when the id would not fit (ids are bounded so it does). */
bool pay_account_id(char out[PC_ID_SIZE], pay_account_kind kind, const char *owner, const char *currency);
/* The account as a ledger event (code, flags: merchant available and wallets may not
 * go below zero). */
void pay_account_event(ledger_account_t *out, pay_account_kind kind, const char *owner, const char *currency);

/* ---- cards (card.c) ---- */
bool pay_card_luhn_valid(const char *digits);
/* PC_OK, card_number_invalid, card_expiry_invalid, card_expired (before the month of
 * 'now_s', UTC) or card_cvc_invalid ('cvc' may be NULL). */
PC_MUST_USE pc_status pay_card_check(const char *number, int64_t exp_month, int64_t exp_year, const char *cvc,
                                     int64_t now_s, const char **field_out);

/* ---- the runtime ---- */
typedef struct vault vault_t;
typedef struct pay pay_t;

typedef struct {
    writer_t *writer;               /* borrowed: every change goes through it */
    store_t *store;                 /* borrowed: the payments' readers */
    gw_t *gateway;                  /* borrowed; NULL: card and bank payments fail (no channel) */
    risk_engine_t *risk;            /* borrowed; NULL: every payment is approved by risk */
    vault_t *vault;                 /* borrowed; NULL: card payments are refused */
    uint32_t authorization_window_s;/* a hold's life when the channel gives none (default 7 days) */
    uint32_t recovery_interval_ms;  /* recovery and expiry passes (default PAY_RECOVERY_MS_DEFAULT) */
    uint32_t recovery_grace_ms;     /* an attempt younger than this may still be on its way:
                                       a "not found" is trusted only after it (default: 15 s) */
    uint32_t bank_inquiry_ms;       /* an operation waiting for its bank callback longer than
                                       this is asked about (default PAY_BANK_INQUIRY_MS_DEFAULT) */
    struct events *events;          /* borrowed; NULL: no events (emit.c writes them into the
                                       outbox with each change) */
    const char *three_ds_prefixes;  /* comma list of card prefixes enrolled in 3-D Secure
                                       (risk review steps up instead of queueing); NULL: the
                                       card simulator's range */
    idem_index_t *idem_index;       /* borrowed; NULL: none. The keys payments were created
                                       under are added to it (loaded at start, and as each
                                       payment's lookup of its key is written) */
    bool (*start_continue)(void *ctx); /* asked during the start's load of those keys:
                                          false (a stop asked) ends the start with
                                          PC_SHUTTING_DOWN; NULL: always go on */
} pay_config_t;

void pay_config_default(pay_config_t *config);
/* Adds the Idempotency-Keys of the payments' own key lookups (kept for payments made
 * before a payment's key lived in the API's reply row) to the scan's index: at start,
 * and when the index is rebuilt from the store (store/idem_index.h). The scan's go_on
 * saying stop ends it: PC_SHUTTING_DOWN. */
PC_MUST_USE pc_status pay_idem_lookups_index(store_reader_t *reader, idem_index_scan_t *scan);
/* Starts the recovery thread (which first resolves what a previous run left pending)
 * and hooks the gateway's update listener (bank callbacks). */
PC_MUST_USE pc_status pay_start(pay_t **out, const pay_config_t *config);
/* Refuses new operations (shutting_down), stops the recovery thread and waits for every
 * running operation to end (each is bounded by the gateway's timeouts). Reads still
 * work. Call before gw_stop and writer_stop; again is harmless. */
void pay_quiesce(pay_t *pay);
/* pay_quiesce, then frees: call once no thread can reach 'pay' any more (the HTTP
 * server has stopped). */
void pay_stop(pay_t *pay);

/* Who asks: every request names its API key; a merchant key is bound to one merchant. */
typedef struct {
    const char *key_id;                 /* the API key (Idempotency-Keys are scoped by it) */
    bool admin;                         /* an admin key: any merchant */
    const char *idempotency_key;        /* NULL when the request has none */
    const uint8_t *request_hash;        /* 32 bytes: the request's fingerprint (with a key) */
    bool idempotency_key_new;           /* no row of the key is stored (the index of keys said
                                           so): no payment was made under it, none is read */
} pay_caller_t;

/* An answer: an object (body, or its text) or an error (status, field, message). */
typedef struct {
    pc_status status;                   /* PC_OK: 'body' or 'text' holds the object */
    int http_status;                    /* 200, 201, 202 or the error's */
    json_t *body;                       /* borrowed for the callback; NULL when 'text' */
    const char *text;                   /* the object as compact JSON, rendered once by the
                                           command that stored it (borrowed) */
    size_t text_bytes;
    char ref_id[PC_ID_SIZE];            /* "" or: the object is this payment at version
                                           'ref_version', whose record is stored */
    uint32_t ref_version;
    bool kept;                          /* the answer is kept on the payment's row, which the
                                           key's stored reply "@payment:<id>" names (written
                                           by key_in_tx): in_tx stores nothing more */
    char field[128];                    /* error: the field at fault, "" when none */
    char message[192];                  /* error: "" = the code's message */
    char state[24];                     /* payment_state_conflict: the current state */
} pay_reply_t;

typedef struct {
    /* Optional. On the writer thread, inside the transaction that makes the answer
     * final: store it (an Idempotency-Key's reply). An error fails the batch. */
    pc_status (*in_tx)(void *ctx, store_tx_t *tx, const pay_reply_t *reply);
    /* Exactly once, after the commit, with the answer (or the commit's error). */
    void (*done)(void *ctx, const pay_reply_t *reply);
    /* Optional. On the writer thread, in the transaction that first writes a payment made
     * under the caller's Idempotency-Key: store the key's reply as a reference to that
     * payment (pay_reply_ref_format_current). Its final answer is then kept on the
     * payment's row (pay_reply_t.kept), not stored again by in_tx. So one row serves a
     * retry from the first write on and the replay after the answer; without this hook
     * the payments layer writes a lookup of its own for the key. An error fails the batch. */
    pc_status (*key_in_tx)(void *ctx, store_tx_t *tx, const char *payment_id);
    /* Optional: that transaction committed. */
    void (*key_committed)(void *ctx);
    void *ctx;
} pay_reply_fn_t;

/* An Idempotency-Key's reply that is a stored payment version is kept as a reference
 * ("@payment:<id>:<version>", PAY_REPLY_REF_BYTES_MAX at most) and rendered again on a
 * replay, byte for byte the first answer. False when 'reply' is no such answer. */
#define PAY_REPLY_REF_BYTES_MAX (PC_ID_SIZE + 24)
bool pay_reply_ref_format(const pay_reply_t *reply, char out[PAY_REPLY_REF_BYTES_MAX]);
/* True when 'stored' is such a reference (either form). */
bool pay_reply_ref_is(const char *stored, size_t bytes);
/* A reference to a payment ("@payment:<id>", no version): the reply of the key that
 * made it. Rendered as the final answer its row keeps (store_pay_object_t.answer_*),
 * byte for byte and with its status; before that answer (the channel call runs, or the
 * server stopped before it) as the payment now: 202 while an operation is pending,
 * else 200. */
bool pay_reply_ref_format_current(const char *payment_id, char out[PAY_REPLY_REF_BYTES_MAX]);
bool pay_reply_ref_is_current(const char *stored, size_t bytes);
PC_MUST_USE pc_status pay_reply_ref_render_current(store_reader_t *reader, const char *stored, size_t bytes,
                                                   char **text_out, size_t *bytes_out, int *http_status_out);
/* The reference's payment version as compact JSON (*text_out malloc'ed): PC_OK,
 * PC_STORE_CORRUPT (not a reference, or its record is missing) or a read error. */
PC_MUST_USE pc_status pay_reply_ref_render(store_reader_t *reader, const char *stored, size_t bytes, char **text_out,
                                           size_t *bytes_out);

/* The merchant a key is bound to ("" when none). */
void pay_key_merchant(pay_t *pay, const char *key_id, char merchant_out[PC_ID_SIZE]);

/* ---- merchants (merchants.c) ---- */
void pay_merchant_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply);
PC_MUST_USE pc_status pay_merchant_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                       const char *merchant_id, pay_reply_t *out);
typedef struct {
    const char *merchant_id;      /* filter, or NULL */
    const char *status;           /* filter, or NULL */
    uint64_t created_from_ns;
    uint64_t created_to_ns;
    const char *starting_after;
    bool descending;
    uint32_t limit;
} pay_list_query_t;
PC_MUST_USE pc_status pay_merchants_list(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                         const pay_list_query_t *query, pay_reply_t *out);
/* Binding a new merchant key (the API creates the key): inside the key's transaction,
 * the binding row; 'accounts_out' gets the merchant's ledger accounts to grant the key
 * (up to 'accounts_max'). After the commit, pay_key_bound makes it known. */
PC_MUST_USE pc_status pay_key_bind_in_tx(pay_t *pay, store_tx_t *tx, const char *key_id, const char *merchant_id);
PC_MUST_USE pc_status pay_merchant_accounts(pay_t *pay, store_reader_t *reader, const char *merchant_id,
                                            char (*accounts_out)[PC_ID_SIZE], uint32_t accounts_max,
                                            uint32_t *count_out);
void pay_key_bound(pay_t *pay, const char *key_id, const char *merchant_id);

/* ---- payment intents (intent.c, capture.c, refund.c) ---- */
void pay_payment_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply);

/* The body of POST /v1/payments as the API's fast path reads it (api/codec_fast.c):
 * its texts plain printable ASCII, each member at most once, 'has' naming those given.
 * A card payment without metadata, the common request, needs no JSON tree. */
enum {
    PAY_PLAIN_MERCHANT_ID = 1u << 0, PAY_PLAIN_AMOUNT = 1u << 1, PAY_PLAIN_CURRENCY = 1u << 2,
    PAY_PLAIN_CAPTURE_METHOD = 1u << 3, PAY_PLAIN_METHOD = 1u << 4, PAY_PLAIN_METHOD_TYPE = 1u << 5,
    PAY_PLAIN_CARD = 1u << 6, PAY_PLAIN_CARD_NUMBER = 1u << 7, PAY_PLAIN_CARD_EXP_MONTH = 1u << 8,
    PAY_PLAIN_CARD_EXP_YEAR = 1u << 9, PAY_PLAIN_CARD_CVC = 1u << 10, PAY_PLAIN_PAYER = 1u << 11,
    PAY_PLAIN_PAYER_ID = 1u << 12, PAY_PLAIN_PAYER_COUNTRY = 1u << 13, PAY_PLAIN_PAYER_DEVICE_ID = 1u << 14,
    PAY_PLAIN_PAYER_IP = 1u << 15, PAY_PLAIN_PAYER_AGE_DAYS = 1u << 16, PAY_PLAIN_DESCRIPTION = 1u << 17,
};
typedef struct {
    uint32_t has;                            /* PAY_PLAIN_* of the members given */
    char merchant_id[PC_ID_BYTES_MAX + 1];
    int64_t amount;
    char currency[4];
    char capture_method[17];
    char method_type[33];
    char card_number[GW_CARD_NUMBER_SIZE];   /* wiped by the caller after use */
    int64_t card_exp_month;
    int64_t card_exp_year;
    char card_cvc[5];                        /* wiped by the caller after use */
    char payer_id[PC_ID_BYTES_MAX + 1];
    char payer_country[3];
    char payer_device_id[PC_ID_BYTES_MAX + 1];
    char payer_ip[46];
    int64_t payer_age_days;
    char description[API_STRING_BYTES_MAX + 1];
} pay_plain_payment_t;
/* True when pay_payment_create would accept every field of 'body' as it is (then
 * pay_payment_create_plain does what it would); false: anything else, which
 * pay_payment_create over the parsed body decides and names. */
bool pay_plain_payment_valid(const pay_plain_payment_t *body);
/* pay_payment_create for a body pay_plain_payment_valid accepted. */
void pay_payment_create_plain(pay_t *pay, const pay_caller_t *caller, const pay_plain_payment_t *body,
                              const pay_reply_fn_t *reply);
void pay_payment_confirm(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                         const pay_reply_fn_t *reply);
void pay_payment_capture(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                         const pay_reply_fn_t *reply);
void pay_payment_cancel(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                        const pay_reply_fn_t *reply);
void pay_refund_create(pay_t *pay, const pay_caller_t *caller, const char *payment_id, const json_t *body,
                       const pay_reply_fn_t *reply);
PC_MUST_USE pc_status pay_payment_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                      const char *payment_id, pay_reply_t *out);
PC_MUST_USE pc_status pay_payments_list(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                        const pay_list_query_t *query, pay_reply_t *out);
PC_MUST_USE pc_status pay_refund_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                     const char *refund_id, pay_reply_t *out);
/* The review queue decided 'decision_id' (risk_review_decide succeeded): the payment
 * waiting for it resumes (approve) or is canceled. Nothing happens when no payment
 * waits for it. */
void pay_review_decided(pay_t *pay, uint64_t decision_id, bool approve);

/* ---- wallets and payouts (wallets.c, payouts.c) ---- */
void pay_wallet_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply);
PC_MUST_USE pc_status pay_wallet_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                     const char *wallet_id, pay_reply_t *out);
void pay_wallet_top_up(pay_t *pay, const pay_caller_t *caller, const char *wallet_id, const json_t *body,
                       const pay_reply_fn_t *reply);
void pay_wallet_withdraw(pay_t *pay, const pay_caller_t *caller, const char *wallet_id, const json_t *body,
                         const pay_reply_fn_t *reply);
void pay_payout_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply);
PC_MUST_USE pc_status pay_payout_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                                     const char *payout_id, pay_reply_t *out);

/* ---- the outside world ---- */
/* A bank's settled or returned transfer (the gateway's update listener): PC_OK once
 * the payment, payout or withdrawal and its ledger transfers are durable. Blocks the
 * calling thread until then. A result whose attempt key names no operation sent on
 * the callback's channel (an unknown key, a card attempt's key) changes nothing and
 * is acknowledged too, with update->matched false (docs/payments.md). */
PC_MUST_USE pc_status pay_bank_update(pay_t *pay, gw_update_t *update);
/* One recovery and expiry pass now (tests, POST /v1/admin/payments/recover); returns
 * how many operations it resolved. Blocks until they are. */
uint32_t pay_recover_now(pay_t *pay);

/* Frees a reply's body (after a synchronous read). */
void pay_reply_clear(pay_reply_t *reply);

/* ---- operations (stats.c): what the dashboard and /metrics show ----
 * Counted when the change commits (never for a batch that failed), since start. */
typedef struct {
    char code[GW_CODE_SIZE + 8];            /* a payment's decline code ("risk_declined", "05" ...) */
    uint64_t count;
} pay_decline_count_t;

typedef struct {
    uint64_t created;                       /* payments stored for the first time */
    uint64_t entered[PAY_STATE_COUNT];      /* changes into each state; a new payment enters its first */
    uint64_t authorized;                    /* authorizations approved (created, requires_action or
                                               in_review to authorized or captured) */
    pay_decline_count_t declines[PAY_STATS_DECLINE_CODES_MAX]; /* declined or failed, by code */
    uint32_t decline_code_count;
    uint64_t declines_other;                /* codes past PAY_STATS_DECLINE_CODES_MAX */
} pay_stats_t;

/* A copy of the figures ('pay' NULL: all zero). Any thread. */
void pay_stats(pay_t *pay, pay_stats_t *out);

/* One merchant's own figures, for its keys' dashboards: the same totals, and per
 * wall-clock second (the second its change committed) what the rates are made of. */
typedef struct {
    uint64_t second;                        /* 0: nothing counted in this slot */
    uint32_t created;
    uint32_t outcomes[3];                   /* first outcomes: authorized, to review, declined or failed */
} pay_stats_second_t;
typedef struct {
    bool known;                             /* false: the figures were not kept (more than
                                               PAY_STATS_MERCHANTS_MAX merchants had payments) */
    pay_stats_t totals;
    pay_stats_second_t seconds[OBS_STATS_SECONDS]; /* slot: second % OBS_STATS_SECONDS */
} pay_merchant_stats_t;
/* A copy of merchant 'merchant_id''s figures (all zero and known when it has made no
 * payment since start). Any thread. */
void pay_merchant_stats(pay_t *pay, const char *merchant_id, pay_merchant_stats_t *out);
/* A payment's first outcome as counted in pay_stats_second_t.outcomes, from totals. */
void pay_stats_outcomes(const pay_stats_t *stats, uint64_t out[3]);
/* Appends the payments metrics (Prometheus text) to 'text' (malloc'ed, as
 * events_metrics_append): the new text, or the old one unchanged on OOM. */
char *pay_metrics_append(pay_t *pay, char *text, size_t *bytes);

#endif
