/* payments/merchants.c: merchants, their chart of accounts and their keys.
 * Creating a merchant creates its ledger accounts for every currency it takes (four
 * of its own per currency, and the system's fee and withdrawal accounts of that
 * currency) in the same writer command as its row. A merchant never changes once
 * created, so the runtime caches it. A merchant API key is bound to one merchant: it
 * acts for that merchant only, and anything of another reads as missing. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "payments/pay_internal.h"

#define MERCHANT_ACCOUNTS_PER_CURRENCY 6
#define MERCHANT_ACCOUNTS_MAX (PAY_CURRENCIES_MAX * MERCHANT_ACCOUNTS_PER_CURRENCY)

static const pay_account_kind merchant_kinds[4] = {PAY_ACCOUNT_MERCHANT_AVAILABLE, PAY_ACCOUNT_MERCHANT_PENDING,
                                                   PAY_ACCOUNT_MERCHANT_REFUNDS, PAY_ACCOUNT_MERCHANT_PAYOUTS};
static const char *const merchant_kind_names[4] = {"available", "pending", "refunds", "payouts"};

bool pay_merchant_takes(const pay_merchant_t *merchant, const char *currency) {
    for (uint32_t i = 0; i < merchant->currency_count; i++) {
        if (strcmp(merchant->currencies[i], currency) == 0) return true;
    }
    return false;
}

pay_price_t pay_merchant_price(const pay_merchant_t *merchant, const char *channel) {
    pay_price_t fallback = {0, 0};
    for (uint32_t i = 0; i < merchant->price_count; i++) {
        if (strcmp(merchant->prices[i].channel, channel) == 0) return merchant->prices[i].price;
        if (strcmp(merchant->prices[i].channel, "default") == 0) fallback = merchant->prices[i].price;
    }
    return fallback;
}

/* ---- the merchant from its document ---- */

static pc_status merchant_from_doc(const char *doc, pay_merchant_t **out) {
    json_t *root = json_loads(doc, 0, NULL);
    pay_merchant_t *m = calloc(1, sizeof *m);
    if (root == NULL || m == NULL) {
        json_decref(root);
        free(m);
        return root == NULL ? PC_STORE_CORRUPT : PC_NO_MEMORY;
    }
    snprintf(m->id, sizeof m->id, "%s", json_string_value(json_object_get(root, "id")));
    snprintf(m->country, sizeof m->country, "%s", json_string_value(json_object_get(root, "country")));
    snprintf(m->default_currency, sizeof m->default_currency, "%s",
             json_string_value(json_object_get(root, "default_currency")));
    m->mcc = (uint16_t)json_integer_value(json_object_get(root, "mcc"));
    m->created_ns = (uint64_t)json_integer_value(json_object_get(root, "created"));
    size_t index;
    json_t *value;
    json_array_foreach(json_object_get(root, "currencies"), index, value) {
        if (m->currency_count < PAY_CURRENCIES_MAX) {
            snprintf(m->currencies[m->currency_count++], 4, "%s", json_string_value(value));
        }
    }
    const char *channel;
    json_object_foreach(json_object_get(root, "pricing"), channel, value) {
        if (m->price_count == PAY_PRICES_MAX) break;
        pay_channel_price_t *p = &m->prices[m->price_count++];
        pc_str_copy(p->channel, sizeof p->channel, channel);
        p->price.bps = (uint32_t)json_integer_value(json_object_get(value, "bps"));
        p->price.fixed_minor = json_integer_value(json_object_get(value, "fixed_minor"));
    }
    json_decref(root);
    m->doc = pc_strdup(doc);
    if (m->doc == NULL) {
        free(m);
        return PC_NO_MEMORY;
    }
    *out = m;
    return PC_OK;
}

pc_status pay_merchant_find(pay_t *pay, store_reader_t *reader, const char *merchant_id,
                            const pay_merchant_t **out) {
    pthread_mutex_lock(&pay->sets_mutex);
    const pay_merchant_t *cached = pay_map_get(&pay->merchants, merchant_id);
    pthread_mutex_unlock(&pay->sets_mutex);
    if (cached != NULL) {
        *out = cached;
        return PC_OK;
    }
    store_pay_object_t object;
    pc_status status = store_pay_object_get(reader, merchant_id, &object);
    if (status != PC_OK) return status;
    pay_merchant_t *m = NULL;
    status = strcmp(object.kind, "merchant") == 0 ? merchant_from_doc(object.doc, &m) : PC_NOT_FOUND;
    store_pay_object_free(&object);
    if (status != PC_OK) return status;
    pthread_mutex_lock(&pay->sets_mutex);
    const pay_merchant_t *raced = pay_map_get(&pay->merchants, merchant_id);
    if (raced == NULL && pay_map_put(&pay->merchants, merchant_id, m, NULL) == PC_OK) {
        raced = m;
        m = NULL;
    }
    pthread_mutex_unlock(&pay->sets_mutex);
    if (m != NULL) {
        free(m->doc);
        free(m);
    }
    if (raced == NULL) return PC_NO_MEMORY;
    *out = raced;
    return PC_OK;
}

pc_status pay_caller_merchant(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                              const char *merchant_id, const pay_merchant_t **out) {
    char bound[PC_ID_SIZE] = "";
    if (!caller->admin) {
        pay_key_merchant(pay, caller->key_id, bound);
        if (bound[0] == '\0') return PC_MERCHANT_KEY_UNBOUND;
        if (merchant_id == NULL || merchant_id[0] == '\0') merchant_id = bound;
        if (strcmp(merchant_id, bound) != 0) return PC_MERCHANT_UNKNOWN;
    }
    if (merchant_id == NULL || merchant_id[0] == '\0') return PC_MERCHANT_UNKNOWN;
    pc_status status = pay_merchant_find(pay, reader, merchant_id, out);
    return status == PC_NOT_FOUND ? PC_MERCHANT_UNKNOWN : status;
}

bool pay_caller_sees(pay_t *pay, const pay_caller_t *caller, const char *merchant_id) {
    if (caller->admin) return true;
    char bound[PC_ID_SIZE];
    pay_key_merchant(pay, caller->key_id, bound);
    return bound[0] != '\0' && strcmp(bound, merchant_id) == 0;
}

/* ---- creating ---- */

typedef struct {
    ledger_account_t accounts[MERCHANT_ACCOUNTS_MAX];
    ledger_account_result_t results[MERCHANT_ACCOUNTS_MAX];
    uint32_t account_count;
    char id[PC_ID_SIZE];
    char *doc;
    uint64_t created_ns;
    pc_status refused;           /* an account the ledger refused */
    char refused_account[PC_ID_SIZE];
} merchant_job_t;

static bool time_zone_valid(const char *name) {
    if (strcmp(name, "UTC") == 0) return true;
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '/' || strstr(name, "..") != NULL) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!isalnum((unsigned char)c) && c != '/' && c != '_' && c != '-' && c != '+') return false;
    }
    char path[128];
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", name);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool cutoff_valid(const char *text) {
    return strlen(text) == 5 && isdigit((unsigned char)text[0]) && isdigit((unsigned char)text[1]) &&
           text[2] == ':' && isdigit((unsigned char)text[3]) && isdigit((unsigned char)text[4]) &&
           (text[0] - '0') * 10 + (text[1] - '0') < 24 && (text[3] - '0') * 10 + (text[4] - '0') < 60;
}

static bool parse_currencies(const json_t *body, const char *default_currency, json_t *out,
                             pay_parse_error_t *err) {
    const json_t *list = json_object_get(body, "currencies");
    if (list == NULL || json_is_null(list)) {
        json_array_append_new(out, json_string(default_currency));
        return true;
    }
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > PAY_CURRENCIES_MAX) {
        pay_parse_fail(err, json_is_array(list) ? PC_VALUE_OUT_OF_RANGE : PC_FIELD_TYPE, "", "currencies",
                       "currencies: an array of 1-16 ISO 4217 codes");
        return false;
    }
    size_t index;
    json_t *value;
    bool has_default = false;
    json_array_foreach(list, index, value) {
        char field[32];
        snprintf(field, sizeof field, "currencies[%zu]", index);
        json_t *wrap = json_pack("{s:O}", "c", value);
        char code[4];
        bool ok = pay_parse_currency(wrap, "c", true, "", code, err);
        json_decref(wrap);
        if (!ok) {
            pc_str_copy(err->field, sizeof err->field, field);
            return false;
        }
        for (size_t j = 0; j < json_array_size(out); j++) {
            if (strcmp(json_string_value(json_array_get(out, j)), code) == 0) ok = false;
        }
        if (!ok) {
            pay_parse_fail(err, PC_VALUE_OUT_OF_RANGE, "", field, "a currency is listed twice");
            return false;
        }
        has_default = has_default || strcmp(code, default_currency) == 0;
        json_array_append_new(out, json_string(code));
    }
    if (!has_default) {
        pay_parse_fail(err, PC_CURRENCY_NOT_ACCEPTED, "", "default_currency", "default_currency must be in currencies");
        return false;
    }
    return true;
}

/* {"default": {"bps": 290, "fixed_minor": 30}, "<channel>": {...}} */
static bool parse_pricing(const json_t *body, json_t *out, pay_parse_error_t *err) {
    static const char *const fields[] = {"bps", "fixed_minor", NULL};
    const json_t *pricing = json_object_get(body, "pricing");
    if (pricing == NULL || json_is_null(pricing)) {
        json_object_set_new(out, "default", json_pack("{s:i,s:i}", "bps", 0, "fixed_minor", 0));
        return true;
    }
    if (!json_is_object(pricing) || json_object_size(pricing) > PAY_PRICES_MAX) {
        pay_parse_fail(err, PC_PRICING_INVALID, "", "pricing", NULL);
        return false;
    }
    const char *channel;
    json_t *price;
    json_object_foreach((json_t *)pricing, channel, price) {
        char place[64];
        snprintf(place, sizeof place, "pricing.%.40s", channel);
        int64_t bps = 0, fixed = 0;
        bool name_ok = strlen(channel) > 0 && strlen(channel) <= GW_NAME_BYTES_MAX && pc_id_valid(channel);
        if (!name_ok || !json_is_object(price)) {
            pay_parse_fail(err, PC_PRICING_INVALID, "", place, NULL);
            return false;
        }
        if (!pay_parse_fields(price, fields, place, err) ||
            !pay_parse_int(price, "bps", true, 0, PAY_FEE_BPS_MAX, place, &bps, err) ||
            !pay_parse_int(price, "fixed_minor", false, 0, PAY_FEE_FIXED_MINOR_MAX, place, &fixed, err)) {
            if (err->status == PC_VALUE_OUT_OF_RANGE) err->status = PC_PRICING_INVALID;
            return false;
        }
        json_object_set_new(out, channel, json_pack("{s:I,s:I}", "bps", (json_int_t)bps, "fixed_minor", (json_int_t)fixed));
    }
    if (json_object_get(out, "default") == NULL) {
        json_object_set_new(out, "default", json_pack("{s:i,s:i}", "bps", 0, "fixed_minor", 0));
    }
    return true;
}

static bool parse_webhooks(const json_t *body, json_t *out, pay_parse_error_t *err) {
    const json_t *list = json_object_get(body, "webhook_urls");
    if (list == NULL || json_is_null(list)) return true;
    if (!json_is_array(list) || json_array_size(list) > PAY_WEBHOOKS_MAX) {
        pay_parse_fail(err, json_is_array(list) ? PC_VALUE_OUT_OF_RANGE : PC_FIELD_TYPE, "", "webhook_urls", NULL);
        return false;
    }
    size_t index;
    json_t *value;
    json_array_foreach(list, index, value) {
        const char *url = json_string_value(value);
        bool ok = url != NULL && strlen(url) <= 2048 &&
                  (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0);
        if (!ok) {
            char field[32];
            snprintf(field, sizeof field, "webhook_urls[%zu]", index);
            pay_parse_fail(err, PC_FIELD_TYPE, "", field, "an http:// or https:// URL of at most 2048 bytes");
            return false;
        }
        json_array_append(out, value);
    }
    return true;
}

static const char *const merchant_fields[] = {"id", "name", "country", "default_currency", "currencies",
                                              "time_zone", "business_day_cutoff", "mcc", "pricing",
                                              "webhook_urls", "metadata", NULL};

static bool parse_basics(const json_t *body, json_t *doc, char *default_currency, pay_parse_error_t *err) {
    char id[PC_ID_SIZE], country[3];
    const char *name, *zone, *cutoff;
    int64_t mcc = 5999;
    if (!pay_parse_fields(body, merchant_fields, "", err) ||
        !pay_parse_id(body, "id", true, PAY_MERCHANT_ID_BYTES_MAX, "", id, err) ||
        !pay_parse_string(body, "name", true, API_STRING_BYTES_MAX, "", &name, err) ||
        !pay_parse_country(body, "country", true, "", country, err) ||
        !pay_parse_currency(body, "default_currency", true, "", default_currency, err) ||
        !pay_parse_string(body, "time_zone", false, 64, "", &zone, err) ||
        !pay_parse_string(body, "business_day_cutoff", false, 5, "", &cutoff, err) ||
        !pay_parse_int(body, "mcc", false, 0, 9999, "", &mcc, err)) {
        if (err->status == PC_STRING_TOO_LONG && strcmp(err->field, "time_zone") == 0) err->status = PC_TIME_ZONE_INVALID;
        if (err->status == PC_STRING_TOO_LONG && strcmp(err->field, "business_day_cutoff") == 0) {
            err->status = PC_BUSINESS_DAY_CUTOFF_INVALID;
        }
        return false;
    }
    if (zone != NULL && !time_zone_valid(zone)) {
        pay_parse_fail(err, PC_TIME_ZONE_INVALID, "", "time_zone", NULL);
        return false;
    }
    if (cutoff != NULL && !cutoff_valid(cutoff)) {
        pay_parse_fail(err, PC_BUSINESS_DAY_CUTOFF_INVALID, "", "business_day_cutoff", NULL);
        return false;
    }
    json_object_set_new(doc, "id", json_string(id));
    json_object_set_new(doc, "object", json_string("merchant"));
    json_object_set_new(doc, "name", json_string(name));
    json_object_set_new(doc, "country", json_string(country));
    json_object_set_new(doc, "default_currency", json_string(default_currency));
    json_object_set_new(doc, "time_zone", json_string(zone ? zone : "UTC"));
    json_object_set_new(doc, "business_day_cutoff", json_string(cutoff ? cutoff : "00:00"));
    json_object_set_new(doc, "mcc", json_integer(mcc));
    return true;
}

/* The merchant's normalized document (without "accounts" and "created"), or NULL. */
static json_t *merchant_parse(const json_t *body, pay_parse_error_t *err) {
    json_t *doc = json_object();
    char currency[4];
    json_t *currencies = json_array(), *pricing = json_object(), *webhooks = json_array();
    json_t *metadata = NULL;
    bool ok = parse_basics(body, doc, currency, err) && parse_currencies(body, currency, currencies, err) &&
              parse_pricing(body, pricing, err) && parse_webhooks(body, webhooks, err) &&
              pay_parse_metadata(body, "metadata", "", &metadata, err);
    json_object_set_new(doc, "currencies", currencies);
    json_object_set_new(doc, "pricing", pricing);
    json_object_set_new(doc, "webhook_urls", webhooks);
    json_object_set_new(doc, "metadata", metadata ? metadata : json_object());
    if (!ok) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static void merchant_accounts_add(merchant_job_t *job, json_t *doc) {
    json_t *accounts = json_object();
    size_t index;
    json_t *value;
    json_array_foreach(json_object_get(doc, "currencies"), index, value) {
        const char *currency = json_string_value(value);
        json_t *ids = json_object();
        for (int k = 0; k < 4; k++) {
            ledger_account_t *a = &job->accounts[job->account_count++];
            pay_account_event(a, merchant_kinds[k], job->id, currency);
            json_object_set_new(ids, merchant_kind_names[k], json_string(a->id));
        }
        pay_account_event(&job->accounts[job->account_count++], PAY_ACCOUNT_FEE_REVENUE, NULL, currency);
        pay_account_event(&job->accounts[job->account_count++], PAY_ACCOUNT_WITHDRAWALS, NULL, currency);
        json_object_set_new(accounts, currency, ids);
    }
    json_object_set_new(doc, "accounts", accounts);
}

static pc_status merchant_in_tx(pay_flow_t *flow, store_tx_t *tx) {
    merchant_job_t *job = flow->extra;
    for (uint32_t i = 0; i < job->account_count; i++) {
        pc_status s = job->results[i].status;
        if (s != PC_OK && s != PC_EXISTS) {
            job->refused = s;
            pc_str_copy(job->refused_account, sizeof job->refused_account, job->accounts[i].id);
            return PC_OK; /* nothing written: answered as refused */
        }
    }
    store_pay_object_t object = {.created_ns = job->created_ns, .updated_ns = job->created_ns, .version = 1};
    pc_str_copy(object.id, sizeof object.id, job->id);
    pc_str_copy(object.kind, sizeof object.kind, "merchant");
    pc_str_copy(object.status, sizeof object.status, "active");
    object.doc = job->doc;
    object.doc_bytes = strlen(job->doc);
    pc_status status = store_pay_object_put(tx, &object);
    if (status == PC_OK) {
        json_t *body = json_loads(job->doc, 0, NULL);
        pay_flow_answer(flow, 201, body);
    }
    return status;
}

static void merchant_then(pay_flow_t *flow, pc_status status) {
    merchant_job_t *job = flow->extra;
    if (status == PC_OK && job->refused != PC_OK) {
        char message[192];
        snprintf(message, sizeof message, "the ledger refused account %s: %s", job->refused_account,
                 pc_status_code(job->refused));
        pay_reply_error(&flow->reply, job->refused, "id", message);
    } else if (status != PC_OK) {
        pay_reply_error(&flow->reply, status, NULL, NULL);
    } else {
        for (uint32_t i = 0; i < job->account_count; i++) pay_account_mark_known(flow->pay, job->accounts[i].id);
    }
    free(job->doc);
    job->doc = NULL;
    pay_flow_finish(flow);
}

/* The same merchant again (an idempotent retry): its stored document, else 409. */
static bool merchant_existing(pay_flow_t *flow, store_reader_t *reader, const char *id, const json_t *doc) {
    const pay_merchant_t *existing;
    pc_status status = pay_merchant_find(flow->pay, reader, id, &existing);
    if (status == PC_NOT_FOUND) return false;
    if (status != PC_OK) {
        pay_reply_error(&flow->reply, status, NULL, NULL);
        return true;
    }
    json_t *stored = json_loads(existing->doc, 0, NULL);
    json_t *compare = json_deep_copy(stored);
    json_object_del(compare, "accounts");
    json_object_del(compare, "created");
    if (json_equal(compare, doc)) pay_reply_object(&flow->reply, 200, stored);
    else {
        json_decref(stored);
        pay_reply_error(&flow->reply, PC_MERCHANT_EXISTS, "id", NULL);
    }
    json_decref(compare);
    return true;
}

void pay_merchant_create(pay_t *pay, const pay_caller_t *caller, const json_t *body, const pay_reply_fn_t *reply) {
    pay_flow_t *flow = pay_flow_new(pay, caller, reply);
    if (flow == NULL) return;
    pay_parse_error_t err = {0};
    json_t *doc = merchant_parse(body, &err);
    if (doc == NULL) {
        pay_reply_parse_error(&flow->reply, &err);
        pay_flow_finish(flow);
        return;
    }
    merchant_job_t *job = calloc(1, sizeof *job);
    const char *id = json_string_value(json_object_get(doc, "id"));
    char lock[PC_ID_SIZE];
    snprintf(lock, sizeof lock, "merchant:%s", id);
    store_reader_t *reader = pay_reader_acquire(pay);
    bool answered = reader == NULL || job == NULL;
    if (answered) pay_reply_error(&flow->reply, job ? PC_STORE_READ_FAILED : PC_NO_MEMORY, NULL, NULL);
    if (!answered && !pay_busy_take(pay, lock)) {
        pay_reply_error(&flow->reply, PC_PAYMENT_OPERATION_IN_PROGRESS, "id", "this merchant is being created");
        answered = true;
    }
    if (!answered) {
        pc_str_copy(flow->lock_id, sizeof flow->lock_id, lock);
        answered = merchant_existing(flow, reader, id, doc);
    }
    pay_reader_release(pay, reader);
    if (answered) {
        json_decref(doc);
        free(job);
        pay_flow_finish(flow);
        return;
    }
    flow->extra = job;
    pc_str_copy(job->id, sizeof job->id, id);
    job->created_ns = pc_wall_ns();
    merchant_accounts_add(job, doc);
    json_object_set_new(doc, "created", json_integer((json_int_t)job->created_ns));
    job->doc = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    flow->account_events = job->accounts;
    flow->account_event_results = job->results;
    pay_flow_submit(flow, WRITER_CMD_CREATE_ACCOUNTS, job->account_count, merchant_in_tx, merchant_then);
}

/* ---- reading ---- */

static json_t *merchant_balances(store_reader_t *reader, const json_t *doc) {
    json_t *balances = json_object();
    const char *currency;
    json_t *ids;
    json_object_foreach(json_object_get(doc, "accounts"), currency, ids) {
        json_t *one = json_object();
        const char *kind;
        json_t *account_id;
        json_object_foreach(ids, kind, account_id) {
            store_account_t account;
            if (store_read_account(reader, json_string_value(account_id), &account) != PC_OK) continue;
            const ledger_balances_t *b = &account.account.balances;
            json_object_set_new(one, kind, json_pack("{s:I,s:I}", "posted", (json_int_t)(b->credits_posted - b->debits_posted),
                                                     "pending", (json_int_t)(b->credits_pending - b->debits_pending)));
            store_account_free(&account);
        }
        json_object_set_new(balances, currency, one);
    }
    return balances;
}

static json_t *merchant_shown(store_reader_t *reader, const pay_merchant_t *m) {
    json_t *doc = json_loads(m->doc, 0, NULL);
    if (doc != NULL) json_object_set_new(doc, "balances", merchant_balances(reader, doc));
    return doc;
}

pc_status pay_merchant_get(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader, const char *merchant_id,
                           pay_reply_t *out) {
    const pay_merchant_t *m = NULL;
    pc_status status = pay_caller_sees(pay, caller, merchant_id) ? pay_merchant_find(pay, reader, merchant_id, &m)
                                                                 : PC_NOT_FOUND;
    if (status == PC_NOT_FOUND) status = PC_MERCHANT_NOT_FOUND;
    if (status != PC_OK) {
        pay_reply_error(out, status, NULL, NULL);
        return status;
    }
    pay_reply_object(out, 200, merchant_shown(reader, m));
    return out->status;
}

void pay_list_append(const store_pay_object_t *object, void *ctx) {
    pay_list_t *list = ctx;
    json_t *doc = NULL;
    pc_status status = PC_OK;
    if (strcmp(object->kind, "payment") == 0) status = pay_payment_doc(list->reader, object, object->version, &doc, NULL);
    else doc = json_loadb(object->doc, object->doc_bytes, 0, NULL);
    if (doc != NULL) json_array_append_new(list->data, doc);
    else if (list->status == PC_OK) list->status = status != PC_OK ? status : PC_STORE_CORRUPT;
}

pc_status pay_merchants_list(pay_t *pay, const pay_caller_t *caller, store_reader_t *reader,
                             const pay_list_query_t *query, pay_reply_t *out) {
    json_t *data = json_array();
    bool has_more = false;
    pc_status status = PC_OK;
    if (caller->admin) {
        store_pay_query_t q = {.kind = "merchant", .starting_after = query->starting_after,
                               .created_from_ns = query->created_from_ns, .created_to_ns = query->created_to_ns,
                               .descending = query->descending, .limit = query->limit};
        pay_list_t list = {.data = data, .reader = reader, .status = PC_OK};
        status = store_pay_objects_list(reader, &q, pay_list_append, &list, &has_more);
        if (status == PC_OK) status = list.status;
    } else {
        char bound[PC_ID_SIZE];
        pay_key_merchant(pay, caller->key_id, bound);
        const pay_merchant_t *m;
        if (bound[0] != '\0' && query->starting_after == NULL && pay_merchant_find(pay, reader, bound, &m) == PC_OK) {
            json_array_append_new(data, json_loads(m->doc, 0, NULL));
        }
    }
    if (status != PC_OK) {
        json_decref(data);
        pay_reply_error(out, status == PC_NOT_FOUND ? PC_QUERY_INVALID : status,
                        status == PC_NOT_FOUND ? "starting_after" : NULL, NULL);
        return out->status;
    }
    pay_reply_object(out, 200, json_pack("{s:o,s:b}", "data", data, "has_more", has_more));
    return out->status;
}

/* ---- keys ---- */

pc_status pay_key_bind_in_tx(pay_t *pay, store_tx_t *tx, const char *key_id, const char *merchant_id) {
    (void)pay;
    char name[PC_ID_SIZE + 8];
    snprintf(name, sizeof name, "key:%s", key_id);
    pc_status status = store_pay_lookup_put(tx, name, merchant_id, NULL, 0);
    return status == PC_EXISTS ? PC_OK : status;
}

pc_status pay_merchant_accounts(pay_t *pay, store_reader_t *reader, const char *merchant_id,
                                char (*accounts_out)[PC_ID_SIZE], uint32_t accounts_max, uint32_t *count_out) {
    const pay_merchant_t *m;
    *count_out = 0;
    pc_status status = pay_merchant_find(pay, reader, merchant_id, &m);
    if (status != PC_OK) return status == PC_NOT_FOUND ? PC_MERCHANT_NOT_FOUND : status;
    for (uint32_t c = 0; c < m->currency_count; c++) {
        for (int k = 0; k < 4 && *count_out < accounts_max; k++) {
            (void)pay_account_id(accounts_out[(*count_out)++], merchant_kinds[k], m->id, m->currencies[c]);
        }
    }
    return PC_OK;
}
