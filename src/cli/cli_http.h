/* cli/cli_http.h: the CLI's HTTP client (libcurl): one request, the reply's status and
 * body, and printing replies as a table or raw JSON. */
#ifndef PAYCORE_CLI_HTTP_H
#define PAYCORE_CLI_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *url;              /* "http://127.0.0.1:8080" */
    const char *key;              /* API key or NULL */
    const char *idempotency_key;  /* or NULL */
    long timeout_s;
} cli_http_t;

typedef struct {
    long status;                  /* 0: no answer (connection failed) */
    char *body;                   /* malloc'ed, NUL-terminated */
    size_t body_bytes;
    char error[256];              /* curl's message when status is 0 */
} cli_reply_t;

/* 'body' may be NULL. Returns false when no HTTP answer came (reply->error says why). */
bool cli_http_call(const cli_http_t *http, const char *method, const char *path,
                   const char *body, cli_reply_t *reply);
void cli_reply_free(cli_reply_t *reply);
/* Prints a reply: raw JSON with 'as_json', else a table; errors go to stderr as
 * "paycore: <code>: <message> [field]". Returns the exit status (0 on 2xx, else 1). */
int cli_reply_print(const cli_reply_t *reply, bool as_json);

#endif
