/* api/routes_read.c: the GET routes of accounts and transfers. Reads go through the
 * request's store reader and never wait for the writer. Lists are
 * {"data":[...],"has_more":bool}. A merchant sees its own accounts and the transfers
 * touching them; anything else is 404 not_found, exactly as a missing object, also
 * when named as a list's starting_after. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/core.h"

const char *const api_list_params[] = {"limit", "starting_after", NULL};
const char *const api_list_range_params[] = {"limit", "starting_after", "from", "to", "order", NULL};

static bool parse_u64(const char *text, uint64_t *out) {
    if (text == NULL || text[0] < '0' || text[0] > '9') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = value;
    return true;
}

/* A timestamp bound: 0..INT64_MAX ('from', inclusive) or 1..INT64_MAX ('to',
 * exclusive: 0 would select nothing, and means "no bound" inside). */
static bool parse_time_ns(const char *text, uint64_t low, uint64_t *out) {
    return parse_u64(text, out) && *out >= low && *out <= (uint64_t)INT64_MAX;
}

static const char *request_arg(void *ctx, const char *name) {
    return api_query(ctx, name);
}

const char *api_list_query_parse_with(api_arg_lookup_fn lookup, void *ctx, store_query_t *query) {
    memset(query, 0, sizeof(*query));
    query->limit = 10;
    const char *limit = lookup(ctx, "limit");
    uint64_t value;
    const char *bad = NULL;
    if (limit != NULL) {
        if (!parse_u64(limit, &value) || value < 1 || value > API_LIST_LIMIT_MAX) bad = "limit";
        else query->limit = (uint32_t)value;
    }
    query->starting_after = lookup(ctx, "starting_after");
    if (query->starting_after != NULL && !pc_id_valid(query->starting_after)) bad = "starting_after";
    const char *from = lookup(ctx, "from");
    const char *to = lookup(ctx, "to");
    if (from != NULL && !parse_time_ns(from, 0, &query->from_ns)) bad = "from";
    if (to != NULL && !parse_time_ns(to, 1, &query->to_ns)) bad = "to";
    const char *order = lookup(ctx, "order");
    if (order != NULL && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) bad = "order";
    query->descending = order != NULL && strcmp(order, "desc") == 0;
    return bad;
}

/* true when 'bad' (a parameter's name) is NULL, else a 400 replied naming it. */
static bool query_good(api_request_t *req, const char *bad) {
    if (bad == NULL) return true;
    char message[96];
    snprintf(message, sizeof message, "invalid query parameter '%s'", bad);
    api_reply_error(req, PC_QUERY_INVALID, bad, message);
    return false;
}

bool api_list_query(api_request_t *req, store_query_t *query, bool time_range) {
    if (!api_query_only(req, time_range ? api_list_range_params : api_list_params)) return false;
    return query_good(req, api_list_query_parse_with(request_arg, req, query));
}

/* The reader, or a 503 replied. */
static store_reader_t *reader_or_reply(api_request_t *req) {
    store_reader_t *reader = api_reader(req);
    if (reader == NULL) api_reply_error(req, PC_STORE_READ_FAILED, NULL, NULL);
    return reader;
}

static void reply_list(api_request_t *req, pc_status status, json_t *data, bool has_more) {
    if (status != PC_OK) {
        json_decref(data);
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:o,s:b}", "data", data, "has_more", has_more));
}

/* An account the caller may see: true and *out filled, or a 404 replied. */
static bool visible_account(api_request_t *req, const char *id, store_account_t *out) {
    store_reader_t *reader = reader_or_reply(req);
    if (reader == NULL) return false;
    pc_status status = pc_id_valid(id) ? store_read_account(reader, id, out) : PC_NOT_FOUND;
    if (status == PC_OK && !api_account_visible(req, id)) {
        store_account_free(out);
        status = PC_NOT_FOUND;
    }
    if (status != PC_OK) api_reply_error(req, status, NULL, NULL);
    return status == PC_OK;
}

void api_route_account_get(api_request_t *req) {
    store_account_t account;
    if (!api_query_only(req, (const char *const[]){NULL})) return;
    if (!visible_account(req, api_param(req, 0), &account)) return;
    api_reply_json(req, 200, codec_account_json(&account.account));
    store_account_free(&account);
}

static void account_row(const ledger_account_t *account, void *ctx) {
    json_array_append_new(ctx, codec_account_json(account));
}

const char *const api_accounts_list_params[] = {"limit", "starting_after", "cursor", NULL};

const char *api_accounts_list_parse_with(api_arg_lookup_fn lookup, void *ctx, store_query_t *query) {
    const char *bad = api_list_query_parse_with(lookup, ctx, query);
    query->cursor = lookup(ctx, "cursor");
    if (bad == NULL && query->cursor != NULL &&
        (query->starting_after != NULL || query->cursor[0] == '\0' || strlen(query->cursor) >= STORE_CURSOR_TEXT_SIZE)) {
        bad = "cursor";
    }
    return bad;
}


static bool accounts_list_query(api_request_t *req, store_query_t *query) {
    if (!api_query_only(req, api_accounts_list_params)) return false;
    if (!query_good(req, api_accounts_list_parse_with(request_arg, req, query))) return false;
    query->cursor_owner = req->has_caller ? req->caller.id : "";
    return true;
}

/* An admin or read_only key lists every account in creation order; a merchant key its
 * own, through its grants, in id order. "next_cursor" when the store gives one. */
void api_route_accounts_list(api_request_t *req) {
    store_query_t query;
    if (!accounts_list_query(req, &query)) return;
    store_reader_t *reader = reader_or_reply(req);
    if (reader == NULL) return;
    char next_cursor[STORE_CURSOR_TEXT_SIZE] = "";
    query.next_cursor = next_cursor;
    json_t *data = json_array();
    bool has_more = false;
    const char *owner = api_request_owner(req);
    pc_status status = owner != NULL
                           ? store_list_accounts_granted(reader, owner, &query, account_row, data, &has_more)
                           : store_list_accounts(reader, &query, account_row, data, &has_more);
    if (status != PC_OK || next_cursor[0] == '\0') {
        reply_list(req, status, data, has_more);
        return;
    }
    api_reply_json(req, 200, json_pack("{s:o,s:b,s:s}", "data", data, "has_more", has_more, "next_cursor", next_cursor));
}

/* A transfer named as starting_after must be one the caller may see: a foreign one
 * answers exactly as a missing one does (404 not_found). false: replied. */
static bool cursor_visible(api_request_t *req, const store_query_t *query) {
    if (query->starting_after == NULL || api_request_owner(req) == NULL) return true;
    store_transfer_t cursor;
    pc_status status = store_read_transfer(api_reader(req), query->starting_after, &cursor);
    if (status == PC_OK) {
        bool visible = api_account_visible(req, cursor.transfer.debit_account_id) ||
                       api_account_visible(req, cursor.transfer.credit_account_id);
        store_transfer_free(&cursor);
        status = visible ? PC_OK : PC_NOT_FOUND;
    }
    if (status != PC_OK) api_reply_error(req, status, NULL, NULL);
    return status == PC_OK;
}

static void transfer_row(const ledger_transfer_t *transfer, ledger_pending_state state, void *ctx) {
    json_array_append_new(ctx, codec_transfer_json(transfer, state));
}

void api_route_account_transfers(api_request_t *req) {
    store_query_t query;
    store_account_t account;
    if (!api_list_query(req, &query, true)) return;
    if (!visible_account(req, api_param(req, 0), &account)) return;
    store_account_free(&account);
    if (!cursor_visible(req, &query)) return;
    json_t *data = json_array();
    bool has_more = false;
    pc_status status = store_list_account_transfers(api_reader(req), api_param(req, 0), &query,
                                                    transfer_row, data, &has_more);
    reply_list(req, status, data, has_more);
}

static void history_row(const ledger_history_t *row, void *ctx) {
    json_array_append_new(ctx, codec_history_json(row));
}

void api_route_account_balances(api_request_t *req) {
    store_query_t query;
    store_account_t account;
    if (!api_list_query(req, &query, true)) return;
    if (!visible_account(req, api_param(req, 0), &account)) return;
    store_account_free(&account);
    if (!cursor_visible(req, &query)) return;
    json_t *data = json_array();
    bool has_more = false;
    pc_status status = store_list_history(api_reader(req), api_param(req, 0), &query,
                                          history_row, data, &has_more);
    reply_list(req, status, data, has_more);
}

void api_route_transfer_get(api_request_t *req) {
    if (!api_query_only(req, (const char *const[]){NULL})) return;
    store_reader_t *reader = reader_or_reply(req);
    if (reader == NULL) return;
    const char *id = api_param(req, 0);
    store_transfer_t transfer;
    pc_status status = pc_id_valid(id) ? store_read_transfer(reader, id, &transfer) : PC_NOT_FOUND;
    if (status == PC_OK && !api_account_visible(req, transfer.transfer.debit_account_id) &&
        !api_account_visible(req, transfer.transfer.credit_account_id)) {
        store_transfer_free(&transfer);
        status = PC_NOT_FOUND;
    }
    if (status != PC_OK) {
        api_reply_error(req, status, NULL, NULL);
        return;
    }
    api_reply_json(req, 200, codec_transfer_json(&transfer.transfer, transfer.pending_state));
    store_transfer_free(&transfer);
}
