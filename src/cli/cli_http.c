/* cli/cli_http.c: see cli_http.h. Tables: an object prints as "field  value" lines,
 * a list ({"data":[...]}) as columns of its rows' scalar fields. */
#include "cli/cli_http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "paycore/limits.h"

/* 0 past CLI_REPLY_BYTES_MAX or without memory: curl ends the transfer (a write error). */
static size_t on_data(char *data, size_t size, size_t count, void *ctx) {
    size_t bytes = size * count;
    return pc_bytes_append(ctx, data, bytes) ? bytes : 0;
}

bool cli_http_call(const cli_http_t *http, const char *method, const char *path,
                   const char *body, cli_reply_t *reply) {
    memset(reply, 0, sizeof(*reply));
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(reply->error, sizeof reply->error, "cannot start libcurl");
        return false;
    }
    char url[2048], auth[512], idem[512];
    snprintf(url, sizeof url, "%s%s", http->url, path);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    if (http->key != NULL && http->key[0] != '\0') {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", http->key);
        headers = curl_slist_append(headers, auth);
    }
    if (http->idempotency_key != NULL) {
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", http->idempotency_key);
        headers = curl_slist_append(headers, idem);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    pc_bytes_t answer;
    pc_bytes_init(&answer, CLI_REPLY_BYTES_MAX);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, http->timeout_s > 0 ? http->timeout_s : 60L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
    } else {
        snprintf(reply->error, sizeof reply->error, "%.120s: %.120s", url, curl_easy_strerror(rc));
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    pc_bytes_rewind(&answer, answer.bytes); /* what came before a cut is kept: rc says it was cut */
    reply->body = pc_bytes_take(&answer, &reply->body_bytes);
    return rc == CURLE_OK;
}

void cli_reply_free(cli_reply_t *reply) {
    free(reply->body);
    reply->body = NULL;
}

/* A scalar as text (strings bare, arrays of strings joined with ','). */
static void scalar_text(const json_t *value, char *out, size_t out_bytes) {
    out[0] = '\0';
    if (json_is_string(value)) {
        snprintf(out, out_bytes, "%s", json_string_value(value));
    } else if (json_is_array(value)) {
        size_t index, used = 0;
        json_t *item;
        json_array_foreach(value, index, item) {
            if (!json_is_string(item) || used + 2 >= out_bytes) continue;
            int n = snprintf(out + used, out_bytes - used, "%s%s", index ? "," : "", json_string_value(item));
            if (n > 0) used += (size_t)n;
        }
        if (used == 0) snprintf(out, out_bytes, "-");
    } else {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(out, out_bytes, "%s", text ? text : "");
        free(text);
    }
}

static void print_object(const json_t *object) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        char text[1024];
        scalar_text(value, text, sizeof text);
        printf("%-18s %s\n", key, text);
    }
}

static bool column_wanted(const json_t *value) {
    return !json_is_object(value);
}

static void print_rows(const json_t *rows, bool has_more) {
    json_t *first = json_array_get(rows, 0);
    if (!json_is_object(first)) {
        printf("(none)\n");
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(first, key, value) {
        if (column_wanted(value)) printf("%-20s ", key);
    }
    printf("\n");
    size_t index;
    json_t *row;
    json_array_foreach(rows, index, row) {
        json_object_foreach(first, key, value) {
            if (!column_wanted(value)) continue;
            char text[256];
            json_t *cell = json_object_get(row, key);
            scalar_text(cell ? cell : json_null(), text, sizeof text);
            printf("%-20s ", text);
        }
        printf("\n");
    }
    if (has_more) printf("(more: use --starting-after with the last id)\n");
}

int cli_reply_print(const cli_reply_t *reply, bool as_json) {
    json_t *root = json_loadb(reply->body, reply->body_bytes, 0, NULL);
    bool ok = reply->status >= 200 && reply->status < 300;
    if (!ok) {
        json_t *error = json_object_get(root, "error");
        const char *code = json_string_value(json_object_get(error, "code"));
        const char *message = json_string_value(json_object_get(error, "message"));
        const char *field = json_string_value(json_object_get(error, "field"));
        if (as_json) printf("%s\n", reply->body);
        fprintf(stderr, "paycore: %s: %s%s%s%s (HTTP %ld)\n", code ? code : "http_error",
                message ? message : "request failed", field ? " [" : "", field ? field : "",
                field ? "]" : "", reply->status);
    } else if (as_json || root == NULL) {
        printf("%s\n", reply->body);
    } else if (json_is_array(json_object_get(root, "data"))) {
        print_rows(json_object_get(root, "data"), json_is_true(json_object_get(root, "has_more")));
    } else if (json_is_array(json_object_get(root, "results"))) {
        print_rows(json_object_get(root, "results"), false);
    } else {
        print_object(root);
    }
    json_decref(root);
    return ok ? 0 : 1;
}
