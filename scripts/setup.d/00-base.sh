#!/usr/bin/env bash
# Debian packages every suite needs: FUSE, the SQLite CLI and Python's sqlite3.
set -euo pipefail
need=()
for p in fuse3 sqlite3 python3 gcc; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v staticcheck >/dev/null 2>&1 || go install honnef.co/go/tools/cmd/staticcheck@latest
