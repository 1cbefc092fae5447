#!/usr/bin/env bash
# Debian packages that both the demo and the tests need: FUSE, the SQLite
# CLI, Python's sqlite3 and a C compiler for the Go SQLite driver.
set -euo pipefail
need=()
for p in fuse3 sqlite3 python3 gcc; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
