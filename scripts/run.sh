#!/bin/sh
# scripts/run.sh BIN DB LISTEN: `make run`. Creates the database with demo data on the
# first start (printing the admin key once), then serves on LISTEN with the demo
# channel simulators beside it (serve --demo).
set -eu
umask 077 # the first-start file holds the admin key; everything paycore writes is 0600
bin="$1"
db="$2"
listen="$3"
if [ ! -f "$db" ]; then
    "$bin" init --db "$db" --demo | tee "$db.first-start.txt"
    echo "paycore: the admin key above is shown once (also saved in $db.first-start.txt)."
    echo "paycore: try: curl -H \"Authorization: Bearer <admin_key>\" http://$listen/v1/accounts"
fi
exec "$bin" serve --db "$db" --listen "$listen" --demo
