/* cli/cmd_backup.c: `paycore backup --db FILE --out FILE`: an online copy of a running
 * server's database that `paycore verify` accepts: the ledger file (one consistent
 * snapshot, store_backup), the risk decisions file beside it when there is one, and the
 * public key that verifies the checkpoints. The secret keys (signing, vault, webhook)
 * are copied only with --with-key. The copy is verified before the command reports
 * success.
 * Restore (docs/operations.md): stop, put the files back under the database's name,
 * start. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "core/core.h"
#include "journal/verify.h"
#include "store/store.h"

/* Copies a small file (a key) to 'to' with 'mode', durably. */
static bool copy_file(const char *from, const char *to, mode_t mode) {
    FILE *in = fopen(from, "rb");
    if (in == NULL) return false;
    char bytes[4096];
    size_t count = fread(bytes, 1, sizeof bytes, in);
    bool ok = ferror(in) == 0 && feof(in) != 0;
    fclose(in);
    unlink(to);
    int fd = ok ? open(to, O_WRONLY | O_CREAT | O_EXCL, mode) : -1;
    if (fd < 0) return false;
    ok = write(fd, bytes, count) == (ssize_t)count && fsync(fd) == 0;
    close(fd);
    return ok;
}

/* "<base><suffix>" into 'out'; false when it does not fit. */
static bool path_with(char out[PC_PATH_BYTES_MAX], const char *base, const char *suffix) {
    return snprintf(out, PC_PATH_BYTES_MAX, "%s%s", base, suffix) < PC_PATH_BYTES_MAX;
}

/* The database file itself, then its risk decisions file when one exists. */
static bool backup_databases(const char *db, const char *out) {
    uint64_t pages = 0;
    char detail[512];
    uint64_t start_ns = pc_mono_ns();
    pc_status status = store_backup(db, out, &pages, detail, sizeof detail);
    if (status != PC_OK) {
        fprintf(stderr, "paycore backup: %s: %s\n", pc_status_code(status), detail);
        return false;
    }
    printf("backup ok out=%s pages=%llu elapsed_ms=%llu\n", out, (unsigned long long)pages,
           (unsigned long long)((pc_mono_ns() - start_ns) / 1000000u));
    char risk_db[PC_PATH_BYTES_MAX], risk_out[PC_PATH_BYTES_MAX];
    if (!path_with(risk_db, db, "-risk.db") || !path_with(risk_out, out, "-risk.db")) return false;
    if (access(risk_db, F_OK) != 0) return true;
    status = store_backup(risk_db, risk_out, &pages, detail, sizeof detail);
    if (status != PC_OK) {
        fprintf(stderr, "paycore backup: risk decisions: %s: %s\n", pc_status_code(status), detail);
        return false;
    }
    printf("backup ok out=%s pages=%llu\n", risk_out, (unsigned long long)pages);
    return true;
}

/* The key files beside the database: the public key always; with --with-key the
 * secrets too: the signing key, the keys that seal card data (the vault) and webhook
 * secrets, and the id index's hash key, without which a restored node refuses to
 * start. A secret file that does not exist (an older database) is skipped. */
static bool backup_keys(const char *db, const char *out, bool with_key) {
    static const struct {
        const char *suffix;
        mode_t mode;
        bool secret;
        bool required;
    } files[] = {
        {".key.pub", 0644, false, true},
        {".key", 0600, true, true},
        {".vault-key", 0600, true, false},
        {".webhook-key", 0600, true, false},
        {".idkey", 0600, true, false},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (files[i].secret && !with_key) continue;
        char from[PC_PATH_BYTES_MAX], to[PC_PATH_BYTES_MAX];
        if (!path_with(from, db, files[i].suffix) || !path_with(to, out, files[i].suffix)) return false;
        if (!files[i].required && access(from, F_OK) != 0) continue;
        if (!copy_file(from, to, files[i].mode)) {
            fprintf(stderr, "paycore backup: cannot copy %s to %s: %s\n", from, to, strerror(errno));
            return false;
        }
    }
    return true;
}

static bool verify_copy(const char *out) {
    char pubkey[PC_PATH_BYTES_MAX];
    if (!path_with(pubkey, out, ".key.pub")) return false;
    journal_report_t *report = calloc(1, sizeof(*report));
    if (report == NULL) return false;
    pc_status status = store_verify(out, pubkey, report);
    char line[2 * JOURNAL_REPORT_TEXT_BYTES];
    if (status == PC_OK || status == PC_JOURNAL_MISMATCH) printf("%s\n", journal_report_line(report, line, sizeof line));
    else printf("verify error: %s: %s\n", pc_status_code(status), report->error_detail);
    free(report);
    return status == PC_OK;
}

int cli_backup(int argc, char **argv) {
    cli_opt opts[] = {
        {"db", "PAYCORE_DB", false, "./paycore.db", "the database to copy (the server may be running)"},
        {"out", NULL, false, NULL, "the copy to write (must not be the database itself)"},
        {"with-key", NULL, true, NULL, "also copy the secret keys (FILE.key, .vault-key, .webhook-key, .idkey; 0600)"},
        {"no-verify", NULL, true, NULL, "skip verifying the copy (not recommended)"},
    };
    enum { N = 4 };
    const char *usage =
        "usage: paycore backup --db FILE --out FILE [--with-key] [--no-verify]\n\n"
        "Copies a paycore database while the server runs: one consistent snapshot (SQLite's\n"
        "backup API on a read-only connection; the writer keeps committing), the risk\n"
        "decisions beside it (FILE-risk.db) and the public key that verifies it\n"
        "(FILE.key.pub); then verifies the copy as paycore verify does. With --with-key\n"
        "also the secrets a restored node needs: the signing key, the card vault's key, the\n"
        "webhook secrets' key and the id index's key (keep them apart, in a secret store).\n"
        "prints 'backup ok out=FILE pages=N elapsed_ms=N' and the verify line; exit 0 only\n"
        "when the copy verifies. Restore: see docs/operations.md.";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, N);
        return 0;
    }
    cli_rest rest;
    if (!cli_args_parse("backup", argc, argv, opts, N, &rest) || rest.positional_count > 0) return 2;
    const char *db = cli_opt_get(opts, N, "db"), *out = cli_opt_get(opts, N, "out");
    if (out == NULL || out[0] == '\0' || strcmp(out, db) == 0) {
        fprintf(stderr, "paycore backup: --out FILE is required and must differ from --db\n");
        return 2;
    }
    bool with_key = cli_opt_get(opts, N, "with-key") != NULL;
    if (!backup_databases(db, out) || !backup_keys(db, out, with_key)) return 1;
    if (cli_opt_get(opts, N, "no-verify") != NULL) return 0;
    return verify_copy(out) ? 0 : 1;
}
