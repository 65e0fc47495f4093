/* cli/cmd_webhook.c: `paycore webhook verify`, a receiver's check of a delivery: the
 * Paycore-Signature header against the raw body under the endpoint's secret
 * (constant-time compare, 300 s tolerance by default). Exit 0 when valid, 1 when not,
 * 2 on a usage error. The secret may come from PAYCORE_WEBHOOK_SECRET instead of the
 * command line (which other users of the machine can see in ps). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "core/bytes.h"
#include "events/events.h"

enum { OPT_SECRET, OPT_HEADER, OPT_BODY_FILE, OPT_TOLERANCE, OPT_NOW, OPT_COUNT };

#define BODY_BYTES_MAX ((64u << 20) - 1) /* a body of 64 MiB or more is refused */

/* Reads all of 'path' ("-": stdin) into a malloc'ed buffer; NULL on error, with why in
 * 'why' (the errno text of the step that failed, or the limit that was passed). */
static char *file_read(const char *path, size_t *bytes_out, const char **why) {
    FILE *file = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (file == NULL) {
        *why = strerror(errno);
        return NULL;
    }
    pc_bytes_t text;
    pc_bytes_init(&text, BODY_BYTES_MAX);
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, file)) > 0 && pc_bytes_append(&text, chunk, got)) continue;
    int read_errno = ferror(file) ? errno : 0;
    if (file != stdin) fclose(file);
    if (read_errno != 0 || pc_bytes_failed(&text)) {
        *why = read_errno != 0 ? strerror(read_errno)
               : text.failure == PC_BYTES_TOO_LARGE ? "the body is 64 MiB or larger"
                                                    : "out of memory";
        pc_bytes_free(&text);
        return NULL;
    }
    char *body = pc_bytes_take(&text, bytes_out);
    if (body == NULL) *why = "out of memory";
    return body;
}

static int verify(const cli_opt *opts) {
    const char *secret = opts[OPT_SECRET].value, *header = opts[OPT_HEADER].value;
    uint64_t tolerance_s = 0, now_s = (uint64_t)time(NULL);
    if (secret == NULL || header == NULL || opts[OPT_BODY_FILE].value == NULL ||
        !cli_parse_u64(opts[OPT_TOLERANCE].value, &tolerance_s) ||
        (opts[OPT_NOW].value != NULL && !cli_parse_u64(opts[OPT_NOW].value, &now_s))) {
        fprintf(stderr, "paycore webhook verify: --secret (or PAYCORE_WEBHOOK_SECRET), --header and --body-file"
                        " are required; --tolerance-s and --now are whole seconds\n");
        return 2;
    }
    if (strncasecmp(header, "Paycore-Signature:", 18) == 0) header += 18; /* a whole header line */
    while (*header == ' ') header++;
    size_t body_bytes = 0;
    const char *why = NULL;
    char *body = file_read(opts[OPT_BODY_FILE].value, &body_bytes, &why);
    if (body == NULL) {
        fprintf(stderr, "paycore webhook verify: cannot read '%s': %s\n", opts[OPT_BODY_FILE].value, why);
        return 2;
    }
    pc_status status = events_signature_verify(secret, header, body, body_bytes, now_s, tolerance_s);
    free(body);
    if (status != PC_OK) {
        printf("invalid: %s: %s\n", pc_status_code(status), pc_status_message(status));
        return 1;
    }
    printf("valid\n");
    return 0;
}

int cli_webhook(int argc, char **argv) {
    cli_opt opts[OPT_COUNT] = {
        {"secret", "PAYCORE_WEBHOOK_SECRET", false, NULL, "the endpoint's secret (whsec_...)"},
        {"header", NULL, false, NULL, "the Paycore-Signature header's value (t=...,v1=...)"},
        {"body-file", NULL, false, NULL, "the raw request body as received ('-': stdin)"},
        {"tolerance-s", NULL, false, "300", "refuse a signature older or newer than this"},
        {"now", NULL, false, NULL, "check as of this unix time (default: now)"},
    };
    const char *usage = "usage: paycore webhook verify --secret S --header H --body-file F\n\n"
                        "Checks a webhook delivery's Paycore-Signature. Exit 0: valid; 1: invalid.";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, OPT_COUNT);
        return 0;
    }
    cli_rest rest;
    if (argc < 2 || strcmp(argv[1], "verify") != 0) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if (!cli_args_parse("webhook verify", argc - 1, argv + 1, opts, OPT_COUNT, &rest) || rest.positional_count > 0) {
        return 2;
    }
    return verify(opts);
}
