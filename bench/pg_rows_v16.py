#!/usr/bin/env python3
"""bench/pg_rows_v16.py: what PostgreSQL schema version 16's rows cost the server against
version 15's, per transfer: the backend's CPU (its utime + stime, /proc/self/stat read
by the backend itself, 10 ms ticks) and the WAL bytes (the insert position). Tables
shaped like account_transfers (v15: the array ends with the key; v16: the timestamps
before the key, null for one) and transfers (v15: with row_hash; v16: without), in a
throwaway cluster (tests/store/pgcluster.py); batches of 8,189 random transfers over
10,000 accounts (bench_scaleout's shape) inserted with INSERT ... SELECT in key order,
old and new alternated batch by batch. One line a table:
  kind|cpu_us_per_transfer|wal_bytes_per_transfer|rows_per_transfer|batches

  python3 bench/pg_rows_v16.py [BATCHES]   (default 30)
"""
import os
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "store"))
import pgcluster  # noqa: E402

BATCHES = int(sys.argv[1]) if len(sys.argv) > 1 else 30
c = pgcluster.Cluster()
try:
    c.sql("postgres", "CREATE DATABASE m")
    setup = """
CREATE TABLE at_old(account_no integer NOT NULL, timestamp_last bigint NOT NULL, timestamps bigint[] NOT NULL,
  PRIMARY KEY(account_no, timestamp_last));
CREATE TABLE at_new(account_no integer NOT NULL, timestamp_last bigint NOT NULL, timestamps bigint[],
  PRIMARY KEY(account_no, timestamp_last));
CREATE TABLE tr_old(timestamp bigint NOT NULL, amount bigint NOT NULL, timeout_s bigint NOT NULL, debit_no integer NOT NULL,
  credit_no integer NOT NULL, code integer NOT NULL, flags integer NOT NULL, pending_state integer NOT NULL DEFAULT 0,
  id text COLLATE "C" NOT NULL, currency text COLLATE "C" NOT NULL, row_hash bytea NOT NULL, pending_id text COLLATE "C",
  metadata text COLLATE "C", PRIMARY KEY(timestamp));
CREATE INDEX tr_old_id ON tr_old USING hash(id);
CREATE TABLE tr_new(LIKE tr_old INCLUDING ALL);
ALTER TABLE tr_new DROP COLUMN row_hash;
CREATE TABLE src AS SELECT b, i, (b * 100000 + i)::bigint AS ts, (random() * 9999)::int AS d, (random() * 9999)::int AS c,
  'tr-' || md5(b::text || '-' || i::text) AS id, decode(md5(i::text), 'hex') AS h
  FROM generate_series(1, %d) b, generate_series(1, 8189) i;
CREATE TABLE sides AS SELECT b, acct, array_agg(ts ORDER BY ts) AS arr FROM
  (SELECT b, d AS acct, ts FROM src UNION ALL SELECT b, c, ts FROM src) s GROUP BY b, acct;
CREATE INDEX ON src(b); CREATE INDEX ON sides(b);
CREATE FUNCTION cpu_ns() RETURNS bigint LANGUAGE sql AS $$
  SELECT (split_part(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ', 12)::bigint +
          split_part(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ', 13)::bigint) * 10000000 $$;
CREATE TABLE res(kind text, cpu_ns bigint, wal bigint, rows bigint);
""" % BATCHES
    c.sql("m", setup)
    body = []
    for b in range(1, BATCHES + 1):
        for kind, ins in [
            ("at_old", "INSERT INTO at_old SELECT acct, arr[cardinality(arr)], arr FROM sides WHERE b = %d ORDER BY acct" % b),
            ("at_new", "INSERT INTO at_new SELECT acct, arr[cardinality(arr)], CASE WHEN cardinality(arr) = 1 THEN NULL"
                       " ELSE trim_array(arr, 1) END FROM sides WHERE b = %d ORDER BY acct" % b),
            ("tr_old", "INSERT INTO tr_old SELECT ts, 100, 0, d, c, 1, 0, 0, id, 'USD', h, NULL, NULL FROM src WHERE b = %d"
                       " ORDER BY ts" % b),
            ("tr_new", "INSERT INTO tr_new SELECT ts, 100, 0, d, c, 1, 0, 0, id, 'USD', NULL, NULL FROM src WHERE b = %d"
                       " ORDER BY ts" % b),
        ]:
            # the same read of the source for both: cached; the CPU of the insert dominates
            body.append("SELECT cpu_ns() AS c0, pg_current_wal_insert_lsn() AS w0 \\gset\n%s;\n"
                        "INSERT INTO res SELECT '%s', cpu_ns() - :c0, pg_current_wal_insert_lsn() - :'w0'::pg_lsn,"
                        " (SELECT count(*) FROM sides WHERE b = %d);" % (ins, kind, b))
    script = os.path.join(c.dir, "run.sql")
    with open(script, "w") as f:
        f.write("\n".join(body) + "\n")
    os.chmod(script, 0o644)
    c.run("psql", "-h", c.dir, "-U", "paycore", "-d", "m", "-v", "ON_ERROR_STOP=1", "-qAt", "-f", script)
    print(c.sql("m", "SELECT kind, round(sum(cpu_ns)::numeric / 1e3 / (CASE WHEN kind LIKE 'tr%' THEN 8189 * count(*)"
                     " ELSE 8189 * count(*) END), 3) AS cpu_us_per_transfer, round(sum(wal)::numeric / (8189 * count(*)), 1)"
                     " AS wal_bytes_per_transfer, round(sum(rows)::numeric / (8189 * count(*)), 3) AS rows_per_transfer,"
                     " count(*) AS batches FROM res WHERE kind IS NOT NULL GROUP BY kind ORDER BY kind"))
finally:
    c.close()
