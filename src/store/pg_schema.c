/* store/pg_schema.c: the PostgreSQL schema, one migration a version, as on SQLite
 * (sqlite_schema.c): the same tables and columns, in PostgreSQL's types. A database
 * says it is paycore's by paycore_meta.format = 'paycore' and records its version in
 * paycore_meta.schema_version; a database with tables but no such row is not
 * paycore's, a newer version is refused. Unlike the SQLite file there is no id index
 * beside the database: transfers.id has a hash index of the server's, and an
 * account's transfers are listed by account_transfers (version 10). Text sorts by bytes (COLLATE "C"), as on
 * SQLite, so that lists page in the same order on both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

static const char schema_v1[] =
    "CREATE TABLE paycore_meta(key text COLLATE \"C\" PRIMARY KEY, value text COLLATE \"C\" NOT NULL);"
    "CREATE TABLE accounts("
    "  no integer PRIMARY KEY,"                 /* index in the ledger's table, from 0 */
    "  id text COLLATE \"C\" NOT NULL UNIQUE,"
    "  currency text COLLATE \"C\" NOT NULL,"
    "  code integer NOT NULL,"
    "  flags integer NOT NULL,"
    "  debits_pending bigint NOT NULL,"
    "  debits_posted bigint NOT NULL,"
    "  credits_pending bigint NOT NULL,"
    "  credits_posted bigint NOT NULL,"
    "  timestamp bigint NOT NULL,"
    "  metadata text COLLATE \"C\","
    "  batch_seq bigint NOT NULL,"
    "  row_hash bytea NOT NULL);"
    "CREATE TABLE transfers("
    "  timestamp bigint PRIMARY KEY,"           /* unique, strictly increasing */
    "  id text COLLATE \"C\" NOT NULL UNIQUE,"
    "  debit_account_id text COLLATE \"C\" NOT NULL,"
    "  credit_account_id text COLLATE \"C\" NOT NULL,"
    "  amount bigint NOT NULL,"
    "  currency text COLLATE \"C\" NOT NULL,"
    "  code integer NOT NULL,"
    "  flags integer NOT NULL,"
    "  pending_id text COLLATE \"C\","
    "  timeout_s bigint NOT NULL,"
    "  metadata text COLLATE \"C\","
    "  pending_state integer NOT NULL DEFAULT 0,"
    "  batch_seq bigint NOT NULL,"
    "  row_hash bytea NOT NULL);"
    "CREATE INDEX transfers_open_pending ON transfers(pending_state) WHERE pending_state = 1;"
    "CREATE INDEX transfers_debit ON transfers(debit_account_id, timestamp);"
    "CREATE INDEX transfers_credit ON transfers(credit_account_id, timestamp);"
    "CREATE TABLE transfer_failures("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  result text COLLATE \"C\" NOT NULL,"
    "  timestamp bigint NOT NULL,"
    "  batch_seq bigint NOT NULL,"
    "  row_hash bytea NOT NULL);"
    "CREATE TABLE balance_history("
    "  account_id text COLLATE \"C\" NOT NULL,"
    "  timestamp bigint NOT NULL,"
    "  transfer_id text COLLATE \"C\" NOT NULL,"
    "  debits_pending bigint NOT NULL,"
    "  debits_posted bigint NOT NULL,"
    "  credits_pending bigint NOT NULL,"
    "  credits_posted bigint NOT NULL,"
    "  PRIMARY KEY(account_id, timestamp));"
    "CREATE TABLE journal("
    "  seq bigint PRIMARY KEY,"
    "  timestamp_first bigint NOT NULL,"
    "  timestamp_last bigint NOT NULL,"
    "  account_count bigint NOT NULL,"
    "  transfer_count bigint NOT NULL,"
    "  failure_count bigint NOT NULL,"
    "  content_hash bytea NOT NULL,"
    "  prev_hash bytea NOT NULL,"
    "  hash bytea NOT NULL,"
    "  committed_ns bigint NOT NULL);"
    "CREATE TABLE journal_checkpoints("
    "  seq bigint PRIMARY KEY,"
    "  hash bytea NOT NULL,"
    "  public_key bytea NOT NULL,"
    "  signature bytea NOT NULL);"
    "CREATE TABLE api_keys("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  key_hash bytea NOT NULL UNIQUE,"
    "  scope text COLLATE \"C\" NOT NULL,"
    "  name text COLLATE \"C\" NOT NULL,"
    "  created_ns bigint NOT NULL,"
    "  revoked_ns bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE account_grants("
    "  key_id text COLLATE \"C\" NOT NULL,"
    "  account_id text COLLATE \"C\" NOT NULL,"
    "  PRIMARY KEY(key_id, account_id));"
    "CREATE TABLE idempotency_keys("
    "  key_id text COLLATE \"C\" NOT NULL,"
    "  idempotency_key text COLLATE \"C\" NOT NULL,"
    "  request_hash bytea NOT NULL,"
    "  status integer NOT NULL,"
    "  body text COLLATE \"C\" NOT NULL,"
    "  created_ns bigint NOT NULL,"
    "  row_bytes bigint NOT NULL,"
    "  PRIMARY KEY(key_id, idempotency_key));"
    "CREATE INDEX idempotency_keys_created ON idempotency_keys(created_ns, row_bytes);"
    "INSERT INTO paycore_meta VALUES('format', 'paycore'),"
    "  ('instance_id', (floor(random() * 9007199254740991) + 1)::bigint::text),"
    "  ('accounts_as_of_seq', '0');";

/* Version 2: the events outbox and its delivery state (sqlite_events.c's tables). */
static const char schema_v2[] =
    "CREATE TABLE events("
    "  seq bigint PRIMARY KEY,"                 /* id and creation time (ns), increasing */
    "  type text COLLATE \"C\" NOT NULL,"
    "  object_id text COLLATE \"C\" NOT NULL,"
    "  object_seq bigint NOT NULL,"
    "  body text NOT NULL);"
    "CREATE INDEX events_by_type ON events(type, seq);"
    "CREATE INDEX events_by_object ON events(object_id, seq);"
    "CREATE TABLE event_owners("
    "  owner text COLLATE \"C\" NOT NULL,"
    "  seq bigint NOT NULL,"
    "  PRIMARY KEY(owner, seq));"
    "CREATE INDEX event_owners_by_seq ON event_owners(seq);"
    "CREATE TABLE event_destinations("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  kind text NOT NULL,"
    "  merchant_id text COLLATE \"C\" NOT NULL,"
    "  url text NOT NULL,"
    "  types text NOT NULL,"
    "  secret_box bytea,"
    "  previous_box bytea,"
    "  previous_until_ns bigint NOT NULL DEFAULT 0,"
    "  cursor_seq bigint NOT NULL,"
    "  cursor_epoch bigint NOT NULL DEFAULT 0,"
    "  created_ns bigint NOT NULL,"
    "  failing_since_ns bigint NOT NULL DEFAULT 0,"
    "  disabled_ns bigint NOT NULL DEFAULT 0,"
    "  disabled_reason text NOT NULL DEFAULT '');"
    "CREATE TABLE event_deliveries("
    "  destination_id text COLLATE \"C\" NOT NULL,"
    "  seq bigint NOT NULL,"
    "  state integer NOT NULL,"
    "  attempts integer NOT NULL,"
    "  first_attempt_ns bigint NOT NULL,"
    "  next_attempt_ns bigint NOT NULL,"
    "  updated_ns bigint NOT NULL,"
    "  last_error text NOT NULL,"
    "  PRIMARY KEY(destination_id, seq));"
    "CREATE INDEX event_deliveries_by_seq ON event_deliveries(seq);"
    "CREATE INDEX account_grants_by_account ON account_grants(account_id, key_id);";

/* Version 3: payments, their lookups and the card vault (sqlite_payments.c's tables). */
static const char schema_v3[] =
    "CREATE TABLE pay_objects("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  kind text COLLATE \"C\" NOT NULL,"
    "  merchant_id text COLLATE \"C\" NOT NULL,"
    "  parent_id text COLLATE \"C\" NOT NULL,"
    "  status text COLLATE \"C\" NOT NULL,"
    "  created_ns bigint NOT NULL,"
    "  updated_ns bigint NOT NULL,"
    "  version bigint NOT NULL,"
    "  doc text NOT NULL);"
    "CREATE INDEX pay_objects_merchant ON pay_objects(kind, merchant_id, created_ns, id);"
    "CREATE INDEX pay_objects_kind ON pay_objects(kind, created_ns, id);"
    "CREATE INDEX pay_objects_parent ON pay_objects(parent_id, created_ns, id) WHERE parent_id <> '';"
    "CREATE INDEX pay_objects_pending ON pay_objects(kind, created_ns) WHERE status = 'pending';"
    "CREATE TABLE pay_lookups("
    "  name text COLLATE \"C\" PRIMARY KEY,"
    "  object_id text COLLATE \"C\" NOT NULL,"
    "  extra bytea);"
    "CREATE TABLE vault_keys("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  kind text NOT NULL,"
    "  kek_id text NOT NULL,"
    "  wrapped bytea NOT NULL,"
    "  created_ns bigint NOT NULL);"
    "CREATE TABLE vault_cards("
    "  token text COLLATE \"C\" PRIMARY KEY,"
    "  data_key_id text NOT NULL,"
    "  nonce bytea NOT NULL,"
    "  ciphertext bytea NOT NULL,"
    "  bin text NOT NULL,"
    "  last4 text NOT NULL,"
    "  exp_month integer NOT NULL,"
    "  exp_year integer NOT NULL,"
    "  fingerprint text NOT NULL,"
    "  created_ns bigint NOT NULL);";

/* Version 4: a record per version of a payment, appended and never rewritten
 * (sqlite_payments.c's pay_versions; the row's doc is then ""). */
static const char schema_pay_versions[] =
    "CREATE TABLE pay_versions("
    "  object_id text COLLATE \"C\" NOT NULL,"
    "  version bigint NOT NULL,"
    "  doc text NOT NULL,"
    "  PRIMARY KEY(object_id, version));";

/* Version 5 (after payments' version 4): shards (src/shard/, docs/scaleout.md §6). The
 * shard map (the same rows on every shard of a set: its count, each shard's index and
 * instance id, and which one this database is), the shard each account was placed on
 * at its creation (written in the batch that creates it), and the coordinator log
 * of the global transactions this shard coordinates (intent, decision, done). */
static const char schema_shards[] =
    "CREATE TABLE shard_map("
    "  shard_index integer PRIMARY KEY,"
    "  instance_id text COLLATE \"C\" NOT NULL,"
    "  shard_count integer NOT NULL,"
    "  self boolean NOT NULL);"
    "CREATE TABLE shard_accounts("
    "  account_id text COLLATE \"C\" PRIMARY KEY,"
    "  shard_index integer NOT NULL,"
    "  shard_count integer NOT NULL);"
    "CREATE TABLE coordinator_log("
    "  gtid text COLLATE \"C\" PRIMARY KEY,"
    "  shards integer[] NOT NULL,"
    "  legs text NOT NULL,"
    "  decision text CHECK (decision IN ('commit', 'abort')),"
    "  intent_ns bigint NOT NULL,"
    "  decided_ns bigint,"
    "  done_ns bigint);"
    "CREATE INDEX coordinator_log_open ON coordinator_log(intent_ns) WHERE done_ns IS NULL;";

/* Version 6: who writes this shard (docs/scaleout.md §7). One row per shard, written by
 * the node that took the shard's writer's lock, on that lock's own connection: the
 * address other nodes forward commands to, an epoch raised at every takeover, and the
 * backend pid holding the lock. A row is live while that pid holds the writer's lock
 * (pg_locks): the row of a writer that died is recognisable without a lease clock. */
static const char schema_writers[] =
    "CREATE TABLE writers("
    "  shard_index integer PRIMARY KEY,"
    "  address text NOT NULL,"
    "  node_id text NOT NULL,"
    "  epoch bigint NOT NULL,"
    "  backend_pid integer NOT NULL,"
    "  taken_ns bigint NOT NULL);";

/* Version 7: events.body may be a reference ("@payment:<id>:<version>", events.h)
 * rendered when read. No table changes, but an older paycore would deliver the
 * reference itself as the event, so it must refuse the database. */
static const char schema_event_refs[] =
    "COMMENT ON COLUMN events.body IS"
    " 'the event JSON, or a reference @<kind>:... rendered when read (src/events/events.h)';";

/* Version 8: an operation's row is listed only by the recovery's pending index: the
 * listings' indexes leave operations out (sqlite_payments.c's version 8). */
static const char schema_pay_listings[] =
    "DROP INDEX pay_objects_parent;"
    "DROP INDEX pay_objects_merchant;"
    "DROP INDEX pay_objects_kind;"
    "CREATE INDEX pay_objects_merchant ON pay_objects(kind, merchant_id, created_ns, id) WHERE kind <> 'op';"
    "CREATE INDEX pay_objects_kind ON pay_objects(kind, created_ns, id) WHERE kind <> 'op';";

/* Version 9: a transfer names its accounts by their numbers (accounts.no, the ledger's
 * index, given at creation and never changed), not their text ids: the two per-account
 * indexes, two of a transfer's four index entries and more than half of its insert
 * cost with text keys, become (integer, timestamp) B-trees, smaller and cheaper to
 * insert, and the row is narrower. Readers join accounts for the ids (pg_internal.h's
 * PG_TRANSFERS_FROM). Accounts keep room on their pages so that a balance snapshot's
 * UPDATE stays on the row's page (HOT: balances are in no index). */
static const char schema_account_numbers[] =
    "ALTER TABLE transfers ADD COLUMN debit_no integer, ADD COLUMN credit_no integer;"
    "UPDATE transfers t SET debit_no = d.no, credit_no = c.no FROM accounts d, accounts c"
    "  WHERE d.id = t.debit_account_id AND c.id = t.credit_account_id;"
    "ALTER TABLE transfers ALTER COLUMN debit_no SET NOT NULL, ALTER COLUMN credit_no SET NOT NULL;"
    "DROP INDEX transfers_debit;"
    "DROP INDEX transfers_credit;"
    "ALTER TABLE transfers DROP COLUMN debit_account_id, DROP COLUMN credit_account_id;"
    "CREATE INDEX transfers_debit ON transfers(debit_no, timestamp);"
    "CREATE INDEX transfers_credit ON transfers(credit_no, timestamp);"
    "ALTER TABLE accounts SET (fillfactor = 80);";

/* Version 10: fewer index entries a transfer (each is a random B-tree insert and a WAL
 * record, most of a batch's time on the server). An account's transfers are listed by
 * account_transfers, one row per account and batch (rows of at most
 * STORE_PG_ACCOUNT_ROW_TIMESTAMPS timestamps, ascending, keyed by the last), instead of
 * two (account number, timestamp) entries per transfer; a page reads the account's
 * rows in order and the transfers by their timestamp key. The id index becomes a hash
 * index: one bucket page an insert instead of a descent of a B-tree of random text
 * keys; ids are unique because the one writer looks every id up before it writes it
 * (the batch prefetch), and verify checks it. The rows of the older versions are
 * listed here the way the writer lists a batch's (64: STORE_PG_ACCOUNT_ROW_TIMESTAMPS). */
static const char schema_account_transfers[] =
    "CREATE TABLE account_transfers("
    "  account_no integer NOT NULL,"
    "  timestamp_last bigint NOT NULL,"
    "  timestamps bigint[] NOT NULL,"
    "  PRIMARY KEY(account_no, timestamp_last));"
    "INSERT INTO account_transfers SELECT account_no, max(ts), array_agg(ts ORDER BY ts) FROM"
    "  (SELECT account_no, ts, batch_seq, (row_number() OVER (PARTITION BY account_no, batch_seq ORDER BY ts) - 1)"
    "   / 64 AS chunk FROM (SELECT debit_no AS account_no, timestamp AS ts, batch_seq FROM transfers UNION ALL"
    "   SELECT credit_no, timestamp, batch_seq FROM transfers) AS sides) AS numbered"
    "  GROUP BY account_no, batch_seq, chunk;"
    "DROP INDEX transfers_debit;"
    "DROP INDEX transfers_credit;"
    "ALTER TABLE transfers DROP CONSTRAINT transfers_id_key;"
    "CREATE INDEX transfers_id ON transfers USING hash(id);";

/* A payment's row keeps the final answer of the request that made it (its version and
 * HTTP status): that request's stored reply names the payment and is not rewritten
 * (sqlite_payments.c's version 9). */
static const char schema_pay_answers[] =
    "ALTER TABLE pay_objects ADD COLUMN answer_version bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN answer_status integer NOT NULL DEFAULT 0;";

/* An event's first owner on its row, indexed by (owner, seq): one index entry an event
 * instead of an owners row and its two; event_owners keeps the further owners. Events
 * written before move their smallest owner onto the row (pg_events.c). */
static const char schema_event_owner[] =
    "ALTER TABLE events ADD COLUMN owner text COLLATE \"C\";"
    "UPDATE events e SET owner = o.owner FROM (SELECT seq, min(owner) AS owner FROM event_owners GROUP BY seq) o"
    "  WHERE o.seq = e.seq;"
    "DELETE FROM event_owners o USING events e WHERE e.seq = o.seq AND e.owner = o.owner;"
    "CREATE INDEX events_by_owner ON events(owner, seq) WHERE owner IS NOT NULL;";

/* A card payment's operations have no rows of their own: the payment's row names the
 * one in flight, found by the recovery through this partial index
 * (sqlite_payments.c's version 11). */
static const char schema_pay_pending_op[] =
    "ALTER TABLE pay_objects ADD COLUMN pending_op text COLLATE \"C\" NOT NULL DEFAULT '';"
    "CREATE INDEX pay_objects_pending_op ON pay_objects(kind, created_ns, id) WHERE pending_op <> '';";

/* The operations waiting for a bank callback (payouts, withdrawals, bank collections
 * "processing"), indexed for the recovery's sweep over them (sqlite_schema.c's version
 * 12): without it the sweep read every row of pay_objects. */
static const char schema_pay_processing[] =
    "CREATE INDEX pay_objects_processing ON pay_objects(kind, created_ns, id) WHERE status = 'processing';";

/* Version 15: a narrower transfer row, the heap tuple most of a transfer's WAL. The
 * columns in the order of their alignment (8-byte, then 4-byte, then texts and the
 * hash), so that no field pads the one before it, and no batch_seq: a transfer's batch
 * is the journal row whose timestamp range holds its timestamp (one ledger clock a
 * store, batches committed in seq order, so each batch's timestamps are above every
 * earlier one's), found by the journal's new timestamp_last index where a reader needs
 * it (verify). 144 bytes a row without metadata become 120. The table is rewritten in
 * timestamp order; its indexes are made again. */
static const char schema_transfer_row[] =
    "CREATE TABLE transfers_v12("
    "  timestamp bigint NOT NULL,"
    "  amount bigint NOT NULL,"
    "  timeout_s bigint NOT NULL,"
    "  debit_no integer NOT NULL,"
    "  credit_no integer NOT NULL,"
    "  code integer NOT NULL,"
    "  flags integer NOT NULL,"
    "  pending_state integer NOT NULL DEFAULT 0,"
    "  id text COLLATE \"C\" NOT NULL,"
    "  currency text COLLATE \"C\" NOT NULL,"
    "  row_hash bytea NOT NULL,"
    "  pending_id text COLLATE \"C\","
    "  metadata text COLLATE \"C\");"
    "INSERT INTO transfers_v12 SELECT timestamp, amount, timeout_s, debit_no, credit_no, code, flags, pending_state,"
    "  id, currency, row_hash, pending_id, metadata FROM transfers ORDER BY timestamp;"
    "DROP TABLE transfers;"
    "ALTER TABLE transfers_v12 RENAME TO transfers;"
    "ALTER TABLE transfers ADD CONSTRAINT transfers_pkey PRIMARY KEY (timestamp);"
    "CREATE INDEX transfers_id ON transfers USING hash(id);"
    "CREATE INDEX transfers_open_pending ON transfers(pending_state) WHERE pending_state = 1;"
    "CREATE INDEX journal_timestamp_last ON journal(timestamp_last);";

/* Version 16: a transfer row without row_hash (17 bytes of each row's WAL and page):
 * the hash is BLAKE2b over the row's own fields, so verify computes it from them and
 * feeds it into the batch's content hash, which the journal seals and the checkpoints
 * sign; a stored copy proved nothing more. A dropped column costs old rows nothing and
 * new rows nothing (their null bitmap exists already: pending_id and metadata).
 * An account_transfers row's array holds the timestamps before its last only, null
 * when there are none (an account touched once in a batch: 29 bytes a row fewer, and
 * no array to build): readers append timestamp_last (PG_ACCOUNT_ROW_TIMESTAMPS). */
static const char schema_transfer_hash[] =
    "ALTER TABLE transfers DROP COLUMN row_hash;"
    "ALTER TABLE account_transfers ALTER COLUMN timestamps DROP NOT NULL;"
    "UPDATE account_transfers SET timestamps = CASE WHEN cardinality(timestamps) = 1 THEN NULL"
    "  ELSE trim_array(timestamps, 1) END WHERE cardinality(timestamps) > 0;";

/* A payment's version record may name the record that holds its fixed members and its
 * routing whole ("$fixed", "$routing": payments/model.c) instead of repeating them (about
 * 660 bytes a record less). No table changes, but a paycore of version 16 would read such
 * a record without those members: it must refuse the database. */
static const char schema_pay_record_parts[] = "SELECT 1;";

/* Index i takes a database from version i to i + 1. Append only. */
static const char *const migrations[] = {
    schema_v1,
    schema_v2,
    schema_v3,
    schema_pay_versions, /* v4 */
    schema_shards, /* v5 */
    schema_writers, /* v6 */
    schema_event_refs, /* v7 */
    schema_pay_listings, /* v8 */
    schema_account_numbers, /* v9 */
    schema_account_transfers, /* v10 */
    schema_pay_answers, /* v11 */
    schema_event_owner, /* v12 */
    schema_pay_pending_op, /* v13 */
    schema_pay_processing, /* v14 */
    schema_transfer_row, /* v15 */
    schema_transfer_hash, /* v16 */
    schema_pay_record_parts, /* v17 */
};

#define PG_SCHEMA_VERSION_LATEST ((int)(sizeof migrations / sizeof migrations[0]))

int pg_schema_version_latest(void) { return PG_SCHEMA_VERSION_LATEST; }

pc_status pg_schema_read(PGconn *conn, int *version, int64_t *other_tables, char *detail, size_t detail_bytes) {
    char line[400];
    PGresult *result = pg_query(conn,
                                "SELECT to_regclass('paycore_meta') IS NOT NULL, (SELECT count(*) FROM"
                                " pg_tables WHERE schemaname = current_schema())", 0, NULL);
    if (result == NULL) {
        snprintf(detail, detail_bytes, "reading the schema: %s", pg_error_line(conn, line, sizeof line));
        return PC_STORE_READ_FAILED;
    }
    bool has_meta = strcmp(PQgetvalue(result, 0, 0), "t") == 0;
    *other_tables = pg_int(result, 0, 1);
    PQclear(result);
    *version = -1;
    if (!has_meta) return PC_OK;
    result = pg_query(conn, "SELECT (SELECT value FROM paycore_meta WHERE key = 'format'),"
                            " (SELECT value FROM paycore_meta WHERE key = 'schema_version')", 0, NULL);
    if (result == NULL) {
        snprintf(detail, detail_bytes, "reading paycore_meta: %s", pg_error_line(conn, line, sizeof line));
        return PC_STORE_READ_FAILED;
    }
    bool paycore = !PQgetisnull(result, 0, 0) && strcmp(PQgetvalue(result, 0, 0), "paycore") == 0;
    *version = paycore && !PQgetisnull(result, 0, 1) ? (int)pg_int(result, 0, 1) : -2;
    PQclear(result);
    return PC_OK;
}

static pc_status migrate(PGconn *conn, int version_from, char *detail, size_t detail_bytes) {
    char line[400];
    bool ok = pg_exec_ok(conn, "BEGIN");
    for (int v = version_from; ok && v < PG_SCHEMA_VERSION_LATEST; v++) ok = pg_exec_ok(conn, migrations[v]);
    if (ok) {
        char sql[160];
        snprintf(sql, sizeof sql, "INSERT INTO paycore_meta VALUES('schema_version', '%d') ON CONFLICT (key)"
                 " DO UPDATE SET value = excluded.value", PG_SCHEMA_VERSION_LATEST);
        ok = pg_exec_ok(conn, sql) && pg_exec_ok(conn, "COMMIT");
    }
    if (!ok) {
        snprintf(detail, detail_bytes, "migration to version %d: %s", PG_SCHEMA_VERSION_LATEST,
                 pg_error_line(conn, line, sizeof line));
        (void)pg_exec_ok(conn, "ROLLBACK");
        return PC_STORE_OPEN_FAILED;
    }
    if (version_from > 0) {
        fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"database migrated\",\"from\":%d,\"to\":%d}\n",
                version_from, PG_SCHEMA_VERSION_LATEST);
    }
    return PC_OK;
}

pc_status pg_schema_prepare(PGconn *conn, bool create, char *detail, size_t detail_bytes) {
    int version;
    int64_t other_tables;
    pc_status status = pg_schema_read(conn, &version, &other_tables, detail, detail_bytes);
    if (status != PC_OK) return status;
    if (version == -1 && other_tables > 0) {
        snprintf(detail, detail_bytes, "the database has %lld tables but no paycore_meta: not paycore's (give"
                 " paycore a database of its own)", (long long)other_tables);
        return PC_STORE_NOT_PAYCORE;
    }
    if (version == -2) {
        snprintf(detail, detail_bytes, "paycore_meta has no format 'paycore' and schema_version: not paycore's");
        return PC_STORE_NOT_PAYCORE;
    }
    if (version > PG_SCHEMA_VERSION_LATEST) {
        snprintf(detail, detail_bytes, "schema version %d is newer than this paycore (%d): run a newer paycore",
                 version, PG_SCHEMA_VERSION_LATEST);
        return PC_STORE_VERSION_UNSUPPORTED;
    }
    if (version == -1 && !create) {
        snprintf(detail, detail_bytes, "the database is empty: run paycore init --store URL first");
        return PC_STORE_NOT_PAYCORE;
    }
    if (version == PG_SCHEMA_VERSION_LATEST) return PC_OK;
    return migrate(conn, version < 0 ? 0 : version, detail, detail_bytes);
}
