#!/usr/bin/env bash
# An example multi-tenant app: one SQLite database per tenant, opened under
# the mount like any local file. `ferry mount` starts it through `exec`
# once the mount is ready. Arguments: MOUNT FERRY CONFIG.
set -euo pipefail
mnt=$1 ferry=$2 config=$3

mkdir -p "$mnt/acme"
sqlite3 "$mnt/acme/orders.db" >/dev/null <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT, qty INTEGER);
SQL
for i in $(seq 1 50); do
	sqlite3 "$mnt/acme/orders.db" "INSERT INTO orders(item, qty) VALUES ('widget-$i', $i)"
done

for t in tenant-1 tenant-2; do
	sqlite3 "$mnt/$t.db" >/dev/null <<'SQL'
PRAGMA journal_mode=DELETE;
CREATE TABLE visits(id INTEGER PRIMARY KEY, at TEXT DEFAULT CURRENT_TIMESTAMP);
INSERT INTO visits DEFAULT VALUES;
SQL
done
echo "scratch data, not replicated" >"$mnt/notes.txt"

echo "acme/orders.db rows: $(sqlite3 "$mnt/acme/orders.db" 'SELECT count(*) FROM orders')"
echo "position of acme/orders.db (TXID/checksum): $(cat "$mnt/.ferry/pos/acme/orders.db")"

# Uploads are batched once a second; wait until the bucket has caught up.
for _ in $(seq 1 50); do
	if "$ferry" status -config "$config" | awk '$1 ~ /\.db$/ && $NF != "0" {lag=1} END {exit lag}'; then
		break
	fi
	sleep 0.2
done
echo
"$ferry" status -config "$config"
