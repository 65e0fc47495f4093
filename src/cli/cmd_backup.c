/* cli/cmd_backup.c: `paycore backup --db FILE --out FILE`: an online copy of a running
 * server's database that `paycore verify` accepts: the ledger file (one consistent
 * snapshot, store_backup), the risk decisions file beside it when there is one, and the
 * public key that verifies the checkpoints. The secret keys (signing, vault, webhook)
 * are copied only with --with-key. The copy is verified before the command reports
 * success.
 * With --store URL the ledger is a PostgreSQL database: OUT is its pg_dump (custom
 * format, store_backup_postgres) and --db names the node's own files, copied as above;
 * the dump verifies once restored (pg_restore into a new database).
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

/* The node's risk decisions file (a SQLite file beside --db) when there is one. */
static bool backup_risk(const char *db, const char *out) {
    char risk_db[PC_PATH_BYTES_MAX], risk_out[PC_PATH_BYTES_MAX];
    if (!path_with(risk_db, db, "-risk.db") || !path_with(risk_out, out, "-risk.db")) return false;
    if (access(risk_db, F_OK) != 0) return true;
    uint64_t pages = 0;
    char detail[512];
    pc_status status = store_backup(risk_db, risk_out, &pages, detail, sizeof detail);
    if (status != PC_OK) {
        fprintf(stderr, "paycore backup: risk decisions: %s: %s\n", pc_status_code(status), detail);
        return false;
    }
    printf("backup ok out=%s pages=%llu\n", risk_out, (unsigned long long)pages);
    return true;
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
    return backup_risk(db, out);
}

/* The key files beside the database: the public key always; with --with-key the
 * secrets too: the signing key, the keys that seal card data (the vault) and webhook
 * secrets, the id index's hash key and the risk decision ids' key, without which a
 * restored node refuses to start. A secret file that does not exist (an older database) is skipped. */
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
        {"-risk.db.id-key", 0600, true, false},
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

/* The PostgreSQL store at 'url' into the dump 'out'. */
static bool backup_postgres(const char *url, const char *out, const char *pg_bin, store_dump_info_t *dumped) {
    store_dump_info_t info;
    char detail[512];
    uint64_t start_ns = pc_mono_ns();
    pc_status status = store_backup_postgres(url, out, pg_bin, &info, detail, sizeof detail);
    if (status != PC_OK) {
        fprintf(stderr, "paycore backup: %s: %s\n", pc_status_code(status), detail);
        return false;
    }
    char head_hex[2 * JOURNAL_HASH_BYTES + 1];
    journal_hex(info.head_hash, JOURNAL_HASH_BYTES, head_hex);
    printf("backup ok out=%s format=pg_dump_custom bytes=%llu elapsed_ms=%llu head_seq=%llu head_hash=%s\n", out,
           (unsigned long long)info.bytes, (unsigned long long)((pc_mono_ns() - start_ns) / 1000000u),
           (unsigned long long)info.head_seq, head_hex);
    *dumped = info;
    return true;
}

/* paycore verify of the copy at 'location' (a file, or the database a dump was restored
 * into) with the public key beside 'out'; 'want_head' (optional): the head it must have. */
static bool verify_copy(const char *location, const char *out, const uint8_t *want_head) {
    char pubkey[PC_PATH_BYTES_MAX];
    if (!path_with(pubkey, out, ".key.pub")) return false;
    journal_report_t *report = calloc(1, sizeof(*report));
    if (report == NULL) return false;
    pc_status status = store_verify(location, pubkey, report);
    char line[2 * JOURNAL_REPORT_TEXT_BYTES];
    if (status == PC_OK || status == PC_JOURNAL_MISMATCH) printf("%s\n", journal_report_line(report, line, sizeof line));
    else printf("verify error: %s: %s\n", pc_status_code(status), report->error_detail);
    bool same_head = want_head == NULL || memcmp(report->head_hash, want_head, JOURNAL_HASH_BYTES) == 0;
    if (status == PC_OK && !same_head) fprintf(stderr, "paycore backup: the restored copy's head is not the dump's\n");
    free(report);
    return status == PC_OK && same_head;
}

/* --verify-into: the dump restored into that empty database, then verified there. */
static bool verify_dump(const char *out, const char *into, const char *pg_bin, const store_dump_info_t *dumped) {
    char detail[512];
    pc_status status = store_restore_postgres(out, into, pg_bin, detail, sizeof detail);
    if (status != PC_OK) {
        fprintf(stderr, "paycore backup: --verify-into: %s: %s\n", pc_status_code(status), detail);
        return false;
    }
    return verify_copy(into, out, dumped->head_hash);
}

int cli_backup(int argc, char **argv) {
    cli_opt opts[] = {
        {"db", "PAYCORE_DB", false, "./paycore.db", "the database to copy (the server may be running); with --store the node's own files"},
        {"out", NULL, false, NULL, "the copy to write (must not be the database itself)"},
        {"store", "PAYCORE_STORE", false, NULL, "a PostgreSQL store to copy instead: postgres://user@host/db (OUT is then a pg_dump)"},
        {"pg-bin", "PAYCORE_PG_BIN", false, NULL, "with --store: the directory of pg_dump and pg_restore (default: PATH)"},
        {"verify-into", NULL, false, NULL, "with --store: restore the dump into this empty database (postgres:// URL) and verify it there"},
        {"with-key", NULL, true, NULL, "also copy the secret keys (FILE.key, .vault-key, .webhook-key, .idkey, -risk.db.id-key; 0600)"},
        {"no-verify", NULL, true, NULL, "skip verifying the copy (not recommended)"},
    };
    enum { N = 7 };
    const char *usage =
        "usage: paycore backup --db FILE --out FILE [--store URL [--verify-into URL]] [--with-key] [--no-verify]\n\n"
        "Copies a paycore database while the server runs: one consistent snapshot (SQLite's\n"
        "backup API on a read-only connection; the writer keeps committing), the risk\n"
        "decisions beside it (FILE-risk.db) and the public key that verifies it\n"
        "(FILE.key.pub); then verifies the copy as paycore verify does. With --with-key\n"
        "also the secrets a restored node needs: the signing key, the card vault's key, the\n"
        "webhook secrets' key and the id index's key (keep them apart, in a secret store).\n"
        "prints 'backup ok out=FILE pages=N elapsed_ms=N' and the verify line; exit 0 only\n"
        "when the copy verifies.\n"
        "With --store URL: OUT is a pg_dump of the PostgreSQL store in its custom format\n"
        "(pg_restore reads it), every table in one snapshot taken while the writer runs;\n"
        "prints 'backup ok out=FILE format=pg_dump_custom bytes=N elapsed_ms=N head_seq=N\n"
        "head_hash=H' (the journal head in the dump), then copies the node's files of --db\n"
        "as above. The dump verifies once restored: --verify-into URL restores it into that\n"
        "empty database with pg_restore and verifies it there (the head must be the dump's).\n"
        "Restore: see docs/operations.md.";
    if (cli_wants_help(argc, argv)) {
        cli_args_usage(stdout, usage, opts, N);
        return 0;
    }
    cli_rest rest;
    if (!cli_args_parse("backup", argc, argv, opts, N, &rest) || rest.positional_count > 0) return 2;
    const char *db = cli_opt_get(opts, N, "db"), *out = cli_opt_get(opts, N, "out");
    const char *url = cli_opt_get(opts, N, "store");
    if (out == NULL || out[0] == '\0' || strcmp(out, db) == 0) {
        fprintf(stderr, "paycore backup: --out FILE is required and must differ from --db\n");
        return 2;
    }
    if (url != NULL && !store_location_is_url(url)) {
        fprintf(stderr, "paycore backup: --store wants a postgres:// URL (a SQLite file is --db FILE)\n");
        return 2;
    }
    const char *into = cli_opt_get(opts, N, "verify-into");
    if (into != NULL && (url == NULL || !store_location_is_url(into) || strcmp(into, url) == 0)) {
        fprintf(stderr, "paycore backup: --verify-into wants --store and another postgres:// URL (an empty database)\n");
        return 2;
    }
    bool with_key = cli_opt_get(opts, N, "with-key") != NULL;
    if (url != NULL) {
        const char *pg_bin = cli_opt_get(opts, N, "pg-bin");
        store_dump_info_t dumped;
        bool ok = backup_postgres(url, out, pg_bin, &dumped) && backup_risk(db, out) && backup_keys(db, out, with_key);
        if (ok && into != NULL) ok = verify_dump(out, into, pg_bin, &dumped);
        return ok ? 0 : 1;
    }
    if (!backup_databases(db, out) || !backup_keys(db, out, with_key)) return 1;
    if (cli_opt_get(opts, N, "no-verify") != NULL) return 0;
    return verify_copy(out, out, NULL) ? 0 : 1;
}
