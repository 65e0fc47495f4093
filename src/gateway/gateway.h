/* gateway/gateway.h: the payment gateway, paycore's side of the outside world. It
 * routes a payment operation to a channel (card network, wallet, bank), calls it over
 * HTTP with libcurl multi on the gateway's own thread(s), maps the channel's answer to
 * an outcome, resolves unknown outcomes by status inquiry, retries on the next channel
 * when that is safe, and keeps a circuit breaker per channel.
 *
 * Calls are asynchronous: gw_submit() only queues (or, with persist_on_submit, routes
 * and hands the first attempt to 'persist' before it returns). The gateway thread routes, calls
 * 'persist' before each attempt, waits for gw_attempt_persisted(), makes the HTTP call
 * and finally calls 'done' with the result. Nothing here blocks the caller's thread,
 * and nothing here moves ledger money.
 *
 * Money safety (no payment is charged twice):
 * - each attempt has its own idempotency key toward its channel, handed to 'persist'
 *   before the call; the caller makes it durable and only then lets the call go;
 * - a hard or soft decline, an approval, a challenge or a pending answer ends the call;
 * - only "retryable" (the channel says it did not apply the request) moves on to the
 *   next channel; "unknown" (timeout, dropped connection, garbage) first asks the same
 *   channel for the status by that key, and moves on only when the channel answers
 *   that it never applied it. An unresolved unknown ends the call as UNKNOWN: the
 *   caller asks again later (GW_OP_STATUS with the stored key), never retries blindly.
 *
 * Threads: gw_submit, gw_route, gw_reload, gw_channels_json and gw_metrics_append are
 * safe from any thread. 'persist' and 'done' run on a gateway thread and must not
 * block (queue a writer command, resume a connection); with 'persist_on_submit' the
 * first attempt is routed and persisted on the submitting thread, inside gw_submit. */
#ifndef PAYCORE_GATEWAY_H
#define PAYCORE_GATEWAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/limits.h"
#include "paycore/status.h"

typedef enum {
    GW_KIND_CARD = 0,   /* acquirer + network + issuer: ISO 8583 response codes */
    GW_KIND_WALLET = 1, /* stored-value accounts, instant answer */
    GW_KIND_BANK = 2,   /* transfers and payouts, answered later by a signed callback */
    GW_KIND_COUNT
} gw_kind;

typedef enum {
    GW_OP_AUTHORIZE = 0, /* routed: a new payment (card auth, wallet payment, bank debit) */
    GW_OP_CAPTURE = 1,   /* on 'channel', 'channel_ref' = the authorization's id */
    GW_OP_VOID = 2,      /* on 'channel', 'channel_ref' = the authorization's id */
    GW_OP_REFUND = 3,    /* on 'channel', 'channel_ref' = the authorization's/payment's id */
    GW_OP_PAYOUT = 4,    /* routed: money out to a bank account */
    GW_OP_STATUS = 5,    /* on 'channel': the answer stored under 'status_key' */
    GW_OP_CHALLENGE = 6, /* on 'channel': complete a 3-D Secure challenge */
    GW_OP_COUNT
} gw_op;

/* What a channel's answer means for the payment. docs/channels.md has each channel's
 * table from response code to outcome. */
typedef enum {
    GW_OUTCOME_APPROVED = 0,     /* applied */
    GW_OUTCOME_PENDING = 1,      /* accepted; the final answer comes by callback (bank) */
    GW_OUTCOME_CHALLENGE = 2,    /* 3-D Secure: complete 'challenge_id' (GW_OP_CHALLENGE) */
    GW_OUTCOME_SOFT_DECLINE = 3, /* declined; the same payment may pass later */
    GW_OUTCOME_HARD_DECLINE = 4, /* declined; never retry */
    GW_OUTCOME_RETRYABLE = 5,    /* not applied; another channel may take it */
    GW_OUTCOME_UNKNOWN = 6,      /* may have been applied: resolve by status inquiry */
    GW_OUTCOME_COUNT
} gw_outcome;

typedef enum {
    GW_STRATEGY_PRIORITY = 0,     /* the first eligible channel of a ranked list */
    GW_STRATEGY_WEIGHTED = 1,     /* random split by weight */
    GW_STRATEGY_SUCCESS_RATE = 2, /* best recent success rate; a share explores */
    GW_STRATEGY_DIRECT = 3,       /* follow-ups: the channel named in the request */
    GW_STRATEGY_COUNT
} gw_strategy;

typedef enum {
    GW_BREAKER_CLOSED = 0,
    GW_BREAKER_OPEN = 1,      /* skipped by routing until the cool-down ends */
    GW_BREAKER_HALF_OPEN = 2, /* a limited number of probe calls decide */
    GW_BREAKER_STATE_COUNT
} gw_breaker_state;

/* Why a configured channel is, or is not, a candidate for one payment. */
typedef enum {
    GW_WHY_ELIGIBLE = 0,
    GW_WHY_OP = 1,           /* its kind cannot do this operation */
    GW_WHY_METHOD = 2,
    GW_WHY_CURRENCY = 3,
    GW_WHY_COUNTRY = 4,
    GW_WHY_AMOUNT = 5,       /* outside [amount_min_minor, amount_max_minor] */
    GW_WHY_BREAKER_OPEN = 6, /* open, or half-open with every probe slot taken */
    GW_WHY_NOT_ROUTED = 7,   /* eligible, but neither the strategy nor the fallback lists it */
    GW_WHY_COUNT
} gw_why;

/* `paycore serve --demo`: writes (mode 0600) a channels file for the three demo
 * simulators: card (card payments, the only card channel), wallet, bank (payouts and
 * collections) whose callbacks go to '<paycore_url>/v1/channels/bank/callbacks'
 * signed with 'bank_callback_secret'. */
PC_MUST_USE pc_status gw_demo_config_write(const char *path, const char *card_url, const char *wallet_url,
                                           const char *bank_url, const char *bank_callback_secret,
                                           const char *paycore_url);

/* ---- one operation ---- */
typedef struct {
    gw_op op;
    char reference[PC_ID_SIZE];   /* the payment's id; sent as merchant_ref / reference */
    char method[GW_METHOD_SIZE];  /* "card", "wallet", "bank_transfer" (routed ops) */
    int64_t amount_minor;         /* > 0; capture/refund: that amount; challenge: the auth's */
    char currency[4];             /* ISO 4217 */
    char country[3];              /* ISO 3166-1 alpha-2 of the payer, "" = any */
    bool capture;                 /* authorize: capture at once */
    struct {
        char number[GW_CARD_NUMBER_SIZE]; /* never logged */
        uint32_t exp_month;
        uint32_t exp_year;
        char cvc[5];
    } card;
    char wallet_id[PC_ID_SIZE];
    struct {
        char routing_number[GW_BANK_FIELD_SIZE];
        char account_number[GW_BANK_FIELD_SIZE];
    } bank;
    /* Follow-ups go to this channel (routed ops leave it empty). */
    char channel[GW_NAME_SIZE];
    char channel_ref[PC_ID_SIZE];     /* the channel's id of the original ("auth_…") */
    char challenge_id[PC_ID_SIZE];    /* GW_OP_CHALLENGE */
    char challenge_code[16];          /* GW_OP_CHALLENGE */
    char status_key[GW_KEY_SIZE];     /* GW_OP_STATUS: the attempt's idempotency key */
    gw_op status_op;                  /* GW_OP_STATUS: the operation that key was for */
} gw_request_t;

/* One call to a channel. Handed to 'persist' before the call (outcome still
 * GW_OUTCOME_UNKNOWN), and listed in the result afterwards. */
typedef struct {
    uint32_t number;                       /* 1, 2, ... within this operation */
    char channel[GW_NAME_SIZE];
    gw_kind kind;
    gw_op op;
    char idempotency_key[GW_KEY_SIZE];     /* random, unique: store it before the call */
    /* after the call: */
    gw_outcome outcome;
    char response_code[GW_CODE_SIZE];      /* the channel's code, or "timeout", "http_500", ... */
    bool status_inquired;                  /* the outcome was unknown: the channel was asked */
    bool status_found;                     /* ... and it had applied the request */
    uint32_t latency_us;
} gw_attempt_t;

typedef struct {
    char name[GW_NAME_SIZE];
    gw_why why;
    bool fallback;                 /* listed in the fallback list */
    uint32_t weight;               /* weighted strategy */
    int32_t success_rate_permille; /* success-rate strategy; -1 = too few calls yet */
} gw_candidate_t;

/* How a payment was routed: stored with the payment. */
typedef struct {
    gw_strategy strategy;
    uint32_t candidate_count;                     /* every configured channel */
    gw_candidate_t candidates[GW_CHANNELS_MAX];
    uint32_t order_count;                         /* channels to try, in order */
    uint8_t order[GW_CHANNELS_MAX];               /* indexes into candidates */
    char chosen[GW_NAME_SIZE];                    /* order[0]'s name, "" when none */
    char why[GW_WHY_SIZE];                        /* "weighted: card_a (70 of 100)" */
    uint64_t config_version;
} gw_decision_t;

typedef struct {
    /* PC_OK: 'outcome' is a channel's clean answer. Otherwise the gateway's reason:
     * gateway_no_channel, gateway_channel_timeout, gateway_channel_unreachable,
     * gateway_channel_error, gateway_bad_response, or the persist callback's error. */
    pc_status status;
    gw_outcome outcome;
    char detail[GW_MESSAGE_SIZE];          /* why, for logs; never card data */
    /* the final attempt's channel and answer */
    char channel[GW_NAME_SIZE];
    char channel_ref[PC_ID_SIZE];          /* "auth_…", "wp_…", "bt_…" */
    char idempotency_key[GW_KEY_SIZE];
    char response_code[GW_CODE_SIZE];
    char message[GW_MESSAGE_SIZE];
    char approval_code[16];
    char challenge_id[PC_ID_SIZE];
    int64_t amount_minor;                  /* the amount the channel answered */
    int64_t total_minor;                   /* captured_total / refunded_total when given */
    bool status_found;                     /* GW_OP_STATUS: the channel knows the key */
    gw_decision_t decision;
    uint32_t attempt_count;
    gw_attempt_t attempts[GW_ATTEMPTS_MAX];
} gw_result_t;

typedef struct gw gw_t;
typedef struct gw_call gw_call_t;

/* Runs on a gateway thread before each attempt's call. The caller makes 'attempt'
 * durable (with its payment) and then calls gw_attempt_persisted(call, status) exactly
 * once, from any thread, inside this callback or later. Only after PC_OK is the
 * channel called; any other status ends the operation with that status. */
typedef void (*gw_persist_fn)(void *ctx, gw_call_t *call, const gw_attempt_t *attempt);
/* Runs once on a gateway thread with the final result ('result' is borrowed). */
typedef void (*gw_done_fn)(void *ctx, const gw_result_t *result);

/* Runs on a gateway thread after a pass over its ready work in which this call's
 * 'persist' or 'done' ran, once per pass whatever the number of calls, before the
 * thread waits again. A caller whose callbacks hand work to other threads queues it
 * in the callbacks and wakes those threads here: one wake-up per pass, not per call. */
typedef void (*gw_pass_end_fn)(void);

typedef struct {
    gw_persist_fn persist; /* NULL: nothing to persist (tools, benchmarks) */
    gw_done_fn done;       /* required */
    void *ctx;
    gw_pass_end_fn pass_end; /* optional */
    /* The first attempt is routed, built and handed to 'persist' on the thread calling
     * gw_submit, before it returns (later attempts and 'done' stay on the gateway
     * thread). The call then reaches its gateway thread once, when persisted, instead
     * of once to be routed and again to be sent. The caller must not hold what its
     * 'persist' takes, and must not touch its context after 'persist' ran. */
    bool persist_on_submit;
} gw_callbacks_t;

typedef struct {
    const char *config_path;   /* the channels file (JSON, docs/channels.md) */
    uint32_t threads;          /* gateway threads, each with its own curl multi; 0 = 1 */
} gw_options_t;

/* A refused configuration: where and why. line 0 = not tied to a line. */
typedef struct {
    uint32_t line;
    char message[GW_MESSAGE_SIZE];
} gw_config_error_t;

/* Loads the file and starts the threads. PC_GATEWAY_CONFIG_INVALID fills 'error'. */
PC_MUST_USE pc_status gw_start(gw_t **out, const gw_options_t *options, gw_config_error_t *error);
/* Refuses new operations, lets the running ones finish (each is bounded by its
 * channels' timeouts and status inquiries), joins the threads, frees. Every 'persist'
 * must get its gw_attempt_persisted first: stop the gateway before what answers them. */
void gw_stop(gw_t *gw);
/* Loads the file again (the same path). A bad file is refused with its line and the
 * running configuration stays. Channel state (breakers, windows, metrics) survives
 * for every channel whose name stays. */
PC_MUST_USE pc_status gw_reload(gw_t *gw, gw_config_error_t *error);
/* Checks a channels file without starting anything (paycore channels check). */
PC_MUST_USE pc_status gw_config_check(const char *path, gw_config_error_t *error);

/* Queues one operation. PC_OK: 'done' will be called exactly once. Anything else
 * (gateway_request_invalid, shutting_down): nothing was queued, no callback runs. */
PC_MUST_USE pc_status gw_submit(gw_t *gw, const gw_request_t *request, const gw_callbacks_t *callbacks);
/* True on a gateway thread (where 'persist' and 'done' run unless persist_on_submit). */
bool gw_on_gateway_thread(void);
/* From 'persist': the attempt is durable (PC_OK) or could not be stored. */
void gw_attempt_persisted(gw_call_t *call, pc_status status);
/* Between these two, gw_attempt_persisted on this thread only notes the call; the
 * release hands every noted call to its gateway thread at once (one lock and at most
 * one wake-up per gateway thread, not one per call): for a writer's batch of
 * completions. Every hold must be released (the gateway waits for those calls). */
void gw_persisted_hold(void);
void gw_persisted_release(void);
/* Tools and tests only: submits and blocks until the result. Never from a gateway,
 * writer or HTTP thread. 'persist' may be NULL. */
PC_MUST_USE pc_status gw_call_wait(gw_t *gw, const gw_request_t *request, gw_persist_fn persist,
                                   void *persist_ctx, gw_result_t *out);

/* What a configured channel allows (its current configuration). */
typedef struct {
    uint32_t authorization_window_s;   /* a hold's life at this channel; 0 = not configured */
    bool partial_captures;             /* several captures of one authorization (default true) */
} gw_channel_terms_t;

/* PC_OK with 'out' filled, or PC_NOT_FOUND for a name no channel has now. */
PC_MUST_USE pc_status gw_channel_terms(gw_t *gw, const char *channel, gw_channel_terms_t *out);

/* The routing decision alone, as a routed operation would get it now (no call made). */
PC_MUST_USE pc_status gw_route(gw_t *gw, const gw_request_t *request, gw_decision_t *out);

/* ---- asynchronous results (bank callbacks) ----
 * A bank answers GW_OUTCOME_PENDING at once and posts the result later to the
 * channel's callback_url (POST /v1/channels/{name}/callbacks on paycore), signed with
 * the channel's callback_secret. The server verifies and decodes it here and hands it
 * to the listener; the channel retries until the listener accepted it. Deliveries
 * repeat: listeners deduplicate by channel_ref + outcome. */
typedef struct {
    char channel[GW_NAME_SIZE];
    char channel_ref[PC_ID_SIZE];        /* "bt_…": the transfer the PENDING answer named */
    char idempotency_key[GW_KEY_SIZE];   /* the attempt's key */
    gw_outcome outcome;                  /* approved (settled), soft or hard decline (returned) */
    char response_code[GW_CODE_SIZE];    /* "settled", or the return code "R01" ... */
    int64_t amount_minor;
    char currency[4];
    char reference[PC_ID_SIZE];
    bool matched;                        /* set by the listener: an operation sent on this
                                          * channel has this attempt key */
} gw_update_t;

/* Runs on the HTTP thread that received the callback; PC_OK acknowledges it (the
 * caller made it durable first, or it matches no operation: 'matched' false),
 * anything else makes the channel deliver it again. */
typedef pc_status (*gw_update_fn)(void *ctx, gw_update_t *update);
void gw_set_update_listener(gw_t *gw, gw_update_fn listener, void *ctx);
/* Verifies 'signature' ("t=<unix s>,v1=<hex HMAC-SHA256 of t.body>", within
 * GW_CALLBACK_SKEW_S of 'now_s') with the channel's callback_secret, decodes 'body'
 * and hands it to the listener. gateway_channel_unknown, gateway_callback_invalid,
 * shutting_down when no listener is set (the channel delivers it again), or the
 * listener's status. */
PC_MUST_USE pc_status gw_callback(gw_t *gw, const char *channel, const char *signature,
                                  const char *body, size_t body_bytes, int64_t now_s,
                                  gw_update_t *out);

/* ---- presenting ---- */
const char *gw_kind_name(gw_kind kind);
const char *gw_op_name(gw_op op);
const char *gw_outcome_name(gw_outcome outcome);
const char *gw_strategy_name(gw_strategy strategy);
const char *gw_breaker_state_name(gw_breaker_state state);
const char *gw_why_name(gw_why why);
/* {"strategy","chosen","why","config_version","candidates":[{"name","eligible","why",...}],
 * "order":[names]}: new reference. */
json_t *gw_decision_json(const gw_decision_t *decision);
/* The result with its attempts and decision: new reference. */
json_t *gw_result_json(const gw_result_t *result);
/* GET /v1/channels: each channel with breaker state, success rate, latency; new reference. */
json_t *gw_channels_json(gw_t *gw);
/* Appends the gateway's Prometheus series to 'text' (malloc'ed, 'bytes' long); returns
 * the new text (the old one is freed) or the old one unchanged on OOM. */
char *gw_metrics_append(gw_t *gw, char *text, size_t *bytes);

#endif
