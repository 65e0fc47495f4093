/* gateway/call.c: the life of one operation, on its gateway thread:
 *
 *   route -> [next channel: permit, build, persist, send] -> answer
 *     approved / pending / challenge / declined ......... done
 *     retryable (not applied) ........................... next channel
 *     unknown (timeout, dropped, garbage) -> status inquiry by the attempt's key
 *        found: the stored first answer decides ......... done (or next if it was retryable)
 *        not found (the channel never applied it) ....... next channel
 *        no answer after status_attempts ................ done, UNKNOWN (caller asks later)
 *
 * Moving on to another channel is only ever done when the previous one said it did
 * not apply the request: that is what keeps a payment from being charged twice. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "gateway/gw_internal.h"
#include "obs/obs.h"

static void next_attempt(gw_call_t *call);

static gw_channel_cfg_t *current_channel(gw_call_t *call) {
    PC_ASSERT(call->channel_index >= 0);
    return &call->config->channels[call->channel_index];
}

static gw_attempt_t *current_attempt(gw_call_t *call) {
    PC_ASSERT(call->result.attempt_count > 0);
    return &call->result.attempts[call->result.attempt_count - 1];
}

static bool is_inquiry(const gw_call_t *call) {
    return call->phase == GW_CALL_STATUS_SENDING || call->req.op == GW_OP_STATUS;
}

/* ---------------------------------------------------------------- finishing */

static void finish_answer(gw_call_t *call, const gw_answer_t *a) {
    gw_result_t *r = &call->result;
    r->status = a->status;
    r->outcome = a->outcome;
    gw_copy_str(r->detail, sizeof r->detail, a->detail);
    gw_copy_str(r->response_code, sizeof r->response_code, a->code);
    gw_copy_str(r->message, sizeof r->message, a->message);
    gw_copy_str(r->channel_ref, sizeof r->channel_ref, a->ref);
    gw_copy_str(r->approval_code, sizeof r->approval_code, a->approval_code);
    gw_copy_str(r->challenge_id, sizeof r->challenge_id, a->challenge_id);
    r->amount_minor = a->amount_minor;
    r->total_minor = a->total_minor;
    if (r->attempt_count > 0) {
        const gw_attempt_t *at = current_attempt(call);
        gw_copy_str(r->channel, sizeof r->channel, at->channel);
        gw_copy_str(r->idempotency_key, sizeof r->idempotency_key, at->idempotency_key);
    }
    gw_thread_finish(call->thread, call);
}

/* Ends without a (new) channel answer: nothing was applied by this operation. */
static void finish_error(gw_call_t *call, pc_status status, gw_outcome outcome, const char *detail) {
    gw_answer_t a = call->answer;
    if (call->result.attempt_count == 0 || status != PC_OK) {
        memset(&a, 0, sizeof a);
        a.status = status;
        a.outcome = outcome;
        gw_copy_str(a.detail, sizeof a.detail, detail);
    }
    finish_answer(call, &a);
}

/* ---------------------------------------------------------------- attempts */

/* "gwk_" + 32 hex: the wall clock in ms (12 hex), then 80 random bits. Keys made later
 * sort later, so a channel that files attempts by key (the simulators' records) appends
 * them instead of inserting each in a random place; the random part keeps them unique. */
static void attempt_key(char out[GW_KEY_SIZE]) {
    uint8_t raw[16];
    uint64_t now_ms = pc_wall_ns() / 1000000u;
    for (int i = 0; i < 6; i++) raw[i] = (uint8_t)(now_ms >> (8 * (5 - i)));
    gw_random(raw + 6, sizeof raw - 6);
    memcpy(out, "gwk_", 4);
    sodium_bin2hex(out + 4, GW_KEY_SIZE - 4, raw, sizeof raw);
}

static bool direct(const gw_call_t *call) {
    return call->result.decision.strategy == GW_STRATEGY_DIRECT;
}

/* Routed calls respect the breaker; follow-ups must reach the channel that holds the
 * original whatever its breaker says. */
static bool take_permit(gw_call_t *call, gw_channel_cfg_t *ch) {
    call->probe = false;
    if (direct(call)) {
        gw_chstate_begin(ch->state);
    } else if (!gw_breaker_acquire(ch->state, &ch->breaker, gw_now_ms(), &call->probe)) {
        return false;
    }
    call->permit = true;
    return true;
}

static void drop_permit(gw_call_t *call) {
    if (!call->permit) return;
    gw_breaker_release(current_channel(call)->state, call->probe);
    call->permit = false;
    call->probe = false;
}

static gw_attempt_t *begin_attempt(gw_call_t *call, uint32_t index) {
    gw_result_t *r = &call->result;
    PC_ASSERT(r->attempt_count < GW_ATTEMPTS_MAX);
    gw_channel_cfg_t *ch = &call->config->channels[index];
    if (r->attempt_count > 0) gw_chstate_count_retry(ch->state);
    gw_attempt_t *at = &r->attempts[r->attempt_count++];
    memset(at, 0, sizeof *at);
    at->number = r->attempt_count;
    gw_copy_str(at->channel, sizeof at->channel, ch->name);
    at->kind = ch->kind;
    at->op = call->req.op;
    at->outcome = GW_OUTCOME_UNKNOWN;
    if (call->req.op == GW_OP_STATUS) gw_copy_str(at->idempotency_key, GW_KEY_SIZE, call->req.status_key);
    else attempt_key(at->idempotency_key);
    return at;
}

static void send_attempt(gw_call_t *call) {
    gw_attempt_t *at = current_attempt(call);
    const char *key = call->req.op == GW_OP_STATUS ? NULL : at->idempotency_key;
    call->phase = GW_CALL_SENDING;
    if (!gw_thread_send(call->thread, call, current_channel(call), &call->http, key)) {
        drop_permit(call);
        at->outcome = GW_OUTCOME_RETRYABLE;
        finish_error(call, PC_NO_MEMORY, GW_OUTCOME_RETRYABLE, "the call could not be set up; not sent");
    }
}

/* Builds the next channel's call and hands the attempt to 'persist'. */
static bool try_channel(gw_call_t *call, uint32_t index) {
    gw_channel_cfg_t *ch = &call->config->channels[index];
    call->channel_index = (int32_t)index;
    if (!take_permit(call, ch)) return false; /* its breaker opened since routing */
    memset(&call->http, 0, sizeof call->http);
    gw_build_fn build = gw_connector_op(gw_connector(ch->kind), call->req.op);
    pc_status status = build(ch, &call->req, &call->http);
    if (status != PC_OK) {
        drop_permit(call);
        gw_body_free(&call->http);
        finish_error(call, status, GW_OUTCOME_RETRYABLE, "the request could not be built; not sent");
        return true;
    }
    gw_attempt_t *at = begin_attempt(call, index);
    if (call->callbacks.persist == NULL || call->req.op == GW_OP_STATUS) {
        send_attempt(call);
        return true;
    }
    call->phase = GW_CALL_PERSISTING;
    gw_thread_note_pass_end(call->thread, call);
    call->callbacks.persist(call->callbacks.ctx, call, at);
    return true;
}

static void next_attempt(gw_call_t *call) {
    const gw_decision_t *d = &call->result.decision;
    while (call->order_next < d->order_count && call->result.attempt_count < call->config->attempts_max) {
        if (try_channel(call, d->order[call->order_next++])) return;
    }
    if (call->result.attempt_count == 0) {
        finish_error(call, PC_GATEWAY_NO_CHANNEL, GW_OUTCOME_RETRYABLE,
                     "every routed channel's breaker opened before the call");
        return;
    }
    finish_answer(call, &call->answer); /* retryable: nothing was applied anywhere */
}

void gw_call_start(gw_call_t *call, uint64_t *rng) {
    pc_status status = gw_route_decide(call->config, &call->req, gw_now_ms(), rng, &call->result.decision);
    if (status != PC_OK) {
        finish_error(call, status, GW_OUTCOME_RETRYABLE, call->result.decision.why);
        return;
    }
    next_attempt(call);
}

void gw_call_persisted(gw_call_t *call) {
    PC_ASSERT(call->phase == GW_CALL_PERSISTING);
    if (call->persist_status == PC_OK) {
        send_attempt(call);
        return;
    }
    drop_permit(call);
    gw_body_free(&call->http);
    current_attempt(call)->outcome = GW_OUTCOME_RETRYABLE;
    finish_error(call, call->persist_status, GW_OUTCOME_RETRYABLE,
                 "the attempt could not be stored; the channel was not called");
}

/* ---------------------------------------------------------------- status inquiry */

static void schedule_inquiry(gw_call_t *call, uint32_t delay_ms) {
    call->phase = GW_CALL_STATUS_WAIT;
    gw_thread_add_timer(call->thread, call, gw_now_ms() + delay_ms);
}

/* The inquiry got no usable answer: ask again later, or end UNKNOWN (unresolved). */
static void inquiry_failed(gw_call_t *call, const gw_answer_t *a) {
    if (++call->status_tries < call->config->status_attempts) {
        schedule_inquiry(call, call->config->status_interval_ms);
        return;
    }
    gw_answer_t unresolved = call->answer;
    snprintf(unresolved.detail, sizeof unresolved.detail, "%.70s; status unresolved after %u inquiries: %.60s",
             call->answer.detail, call->status_tries, a->detail);
    finish_answer(call, &unresolved);
}

void gw_call_timer(gw_call_t *call) {
    PC_ASSERT(call->phase == GW_CALL_STATUS_WAIT);
    gw_channel_cfg_t *ch = current_channel(call);
    gw_request_t inquiry = call->req;
    gw_copy_str(inquiry.status_key, GW_KEY_SIZE, current_attempt(call)->idempotency_key);
    memset(&call->http, 0, sizeof call->http);
    (void)gw_build_status(ch, &inquiry, &call->http);
    gw_chstate_begin(ch->state);
    call->permit = true;
    call->probe = false;
    call->phase = GW_CALL_STATUS_SENDING;
    if (!gw_thread_send(call->thread, call, ch, &call->http, NULL)) {
        drop_permit(call);
        gw_answer_t failed = {.found = -1, .status = PC_NO_MEMORY};
        gw_copy_str(failed.detail, sizeof failed.detail, "the status inquiry could not be set up");
        inquiry_failed(call, &failed);
    }
}

/* The answer to a status inquiry (ours after an unknown outcome, or a caller's
 * GW_OP_STATUS). */
static void on_inquiry(gw_call_t *call, const gw_answer_t *a) {
    gw_attempt_t *at = current_attempt(call);
    bool asked_by_caller = call->req.op == GW_OP_STATUS;
    at->status_inquired = !asked_by_caller;
    if (a->found < 0) {
        gw_answer_t unanswered = *a;
        unanswered.outcome = GW_OUTCOME_UNKNOWN; /* no answer says nothing of the original */
        if (asked_by_caller) finish_answer(call, &unanswered);
        else inquiry_failed(call, a);
        return;
    }
    if (asked_by_caller) {
        call->result.status_found = a->found > 0;
        at->outcome = a->outcome;
        gw_copy_str(at->response_code, sizeof at->response_code, a->code);
        finish_answer(call, a);
        return;
    }
    if (a->found == 0) { /* never applied: as if the channel had said "retryable" */
        call->answer.outcome = GW_OUTCOME_RETRYABLE;
        at->outcome = GW_OUTCOME_RETRYABLE;
        next_attempt(call);
        return;
    }
    at->status_found = true;
    at->outcome = a->outcome;
    gw_copy_str(at->response_code, sizeof at->response_code, a->code);
    call->answer = *a;
    if (a->outcome == GW_OUTCOME_RETRYABLE) next_attempt(call); /* applied as "not done" */
    else finish_answer(call, a); /* includes UNKNOWN: applied, unreadable: never elsewhere */
}

/* ---------------------------------------------------------------- answers */

static const char *http_label(long http_status) {
    static const struct { long status; const char *label; } labels[] = {
        {400, "http_400"}, {401, "http_401"}, {403, "http_403"}, {404, "http_404"},
        {409, "http_409"}, {422, "http_422"}, {429, "http_429"}, {500, "http_500"},
        {502, "http_502"}, {503, "http_503"}, {504, "http_504"}};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        if (labels[i].status == http_status) return labels[i].label;
    }
    return "http_other";
}

/* The request never left (no connection, or refused): the channel cannot have
 * applied it, safe to try elsewhere. Once it left, a failure may have been applied:
 * unknown. */
static void classify_transport(const gw_call_t *call, CURLcode code, gw_answer_t *a) {
    a->found = -1;
    if (gw_response_too_large(call)) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "too_large",
                       "the answer is larger than %d bytes", GW_RESPONSE_BYTES_MAX);
    } else if (!call->request_left) {
        gw_answer_fail(a, GW_OUTCOME_RETRYABLE, PC_GATEWAY_CHANNEL_UNREACHABLE, "connect_failed",
                       "not sent: %s", curl_easy_strerror(code));
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_CHANNEL_TIMEOUT, "timeout",
                       "no answer in time: %s", curl_easy_strerror(code));
    } else {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_CHANNEL_UNREACHABLE, "connection_closed",
                       "sent, then: %s", curl_easy_strerror(code));
    }
}

/* A non-2xx answer: whether the channel may have applied it decides the outcome. */
static void classify_http_error(long http_status, const gw_obj_t *body, gw_answer_t *a) {
    const char *label = http_label(http_status);
    gw_obj_t error = gw_obj_object(body, "error");
    const char *code = gw_obj_str(&error, "code");
    const char *field = gw_obj_str(&error, "field");
    if (code != NULL) code = gw_printable(code);
    if (field != NULL) field = gw_printable(field);
    /* A reused key means a request under it was applied before: ask what it was. */
    bool key_reused = http_status == 409 && code != NULL && strcmp(code, "idempotency_key_reused") == 0;
    gw_outcome outcome = GW_OUTCOME_UNKNOWN;           /* 5xx, 3xx: may have applied */
    if (http_status == 503 || http_status == 429 || http_status == 401 || http_status == 403) {
        outcome = GW_OUTCOME_RETRYABLE;                /* refused before doing anything */
    } else if (http_status >= 400 && http_status < 500 && !key_reused) {
        outcome = GW_OUTCOME_HARD_DECLINE;             /* refused as invalid: never applied */
    }
    pc_status status = http_status == 503 ? PC_GATEWAY_CHANNEL_UNREACHABLE : PC_GATEWAY_CHANNEL_ERROR;
    gw_answer_fail(a, outcome, status, label, "HTTP %ld%s%s%s%s%s", http_status, code ? " " : "",
                   code ? code : "", field ? " (field " : "", field ? field : "", field ? ")" : "");
}

/* {"found":true,"response":{...}} or 404 {"found":false}. */
static void classify_inquiry(gw_call_t *call, const gw_channel_cfg_t *ch, long http_status,
                             const gw_obj_t *body, gw_answer_t *a) {
    int found = gw_obj_bool(body, "found");
    gw_obj_t response = gw_obj_object(body, "response");
    gw_op op = call->req.op == GW_OP_STATUS ? call->req.status_op : call->req.op;
    if (http_status == 404 && found == 0) {
        a->found = 0;
        a->outcome = GW_OUTCOME_RETRYABLE;
        a->status = PC_OK;
        gw_copy_str(a->code, sizeof a->code, "not_found");
        gw_copy_str(a->detail, sizeof a->detail, "the channel never applied a request with this key");
    } else if (http_status == 200 && found == 1 && gw_obj_valid(&response)) {
        a->found = 1; /* before decoding: a decoder may read a status report otherwise than an answer */
        gw_connector(ch->kind)->decode(ch, &call->req, op, &response, 200, a);
    } else if (http_status >= 200 && http_status < 300) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "bad_answer",
                       "a status answer without found/response");
        a->found = -1;
    } else {
        classify_http_error(http_status, body, a);
        a->found = -1;
    }
}

/* A channel's answer is read in place when it is plain JSON (answer.c), by jansson
 * otherwise; only an object is an answer. */
static void classify(gw_call_t *call, CURLcode code, gw_answer_t *a) {
    memset(a, 0, sizeof *a);
    a->found = -1;
    if (code != CURLE_OK) {
        classify_transport(call, code, a);
        return;
    }
    long http_status = call->http_status;
    const gw_channel_cfg_t *ch = current_channel(call);
    gw_doc_t doc;
    gw_obj_t body = gw_doc_load(&doc, call->response.data, call->response.bytes, true);
    bool object = gw_obj_valid(&body);
    if (is_inquiry(call)) {
        if (!object && http_status >= 200 && http_status < 300) {
            gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "invalid_json",
                           "a status answer that is not a JSON object");
        } else {
            classify_inquiry(call, ch, http_status, &body, a);
        }
    } else if (http_status < 200 || http_status >= 300) {
        classify_http_error(http_status, &body, a);
    } else if (!object) {
        gw_answer_fail(a, GW_OUTCOME_UNKNOWN, PC_GATEWAY_BAD_RESPONSE, "invalid_json",
                       "HTTP %ld with a body that is not a JSON object", http_status);
    } else {
        gw_connector(ch->kind)->decode(ch, &call->req, call->req.op, &body, (int)http_status, a);
    }
    gw_doc_free(&doc);
}

static void log_answer(const gw_call_t *call, const gw_attempt_t *at, const gw_answer_t *a) {
    if (a->status == PC_OK) return;
    bool garbage = a->status == PC_GATEWAY_BAD_RESPONSE || a->status == PC_GATEWAY_CHANNEL_ERROR ||
                   strcmp(a->code, "connection_closed") == 0;
    obs_logf(garbage ? OBS_LEVEL_ERROR : OBS_LEVEL_WARN,
             "gateway: %s %s attempt %u on %s%s: %s, outcome %s: %s", call->req.reference,
             gw_op_name(call->req.op), at->number, at->channel,
             call->phase == GW_CALL_STATUS_SENDING ? " (status inquiry)" : "", pc_status_code(a->status),
             gw_outcome_name(a->outcome), a->detail);
}

void gw_call_http_done(gw_call_t *call, int curl_code) {
    uint32_t latency_us = (uint32_t)((pc_mono_ns() - call->started_ns) / 1000u);
    gw_answer_t a;
    classify(call, (CURLcode)curl_code, &a);
    gw_thread_http_release(call->thread, call);
    gw_channel_cfg_t *ch = current_channel(call);
    gw_attempt_t *at = current_attempt(call);
    bool inquiry = is_inquiry(call);
    gw_chstate_record(ch->state, call->config, ch, inquiry ? GW_OP_STATUS : call->req.op, call->probe,
                      &a, latency_us, gw_now_ms());
    call->permit = false;
    call->probe = false;
    log_answer(call, at, &a);
    if (inquiry) {
        on_inquiry(call, &a);
        return;
    }
    at->outcome = a.outcome;
    at->latency_us = latency_us;
    gw_copy_str(at->response_code, sizeof at->response_code, a.code);
    call->answer = a;
    if (a.outcome == GW_OUTCOME_RETRYABLE) next_attempt(call);
    else if (a.outcome == GW_OUTCOME_UNKNOWN) schedule_inquiry(call, call->config->status_delay_ms);
    else finish_answer(call, &a);
}
