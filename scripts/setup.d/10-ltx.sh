#!/usr/bin/env bash
# The superfly/ltx command-line tool, used by the ltx package's
# interoperability tests to verify, apply and checksum files Ferry writes.
set -euo pipefail
bin="$(go env GOPATH)/bin/ltx"
if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q 'v0.5.3'; then
	exit 0
fi
GOFLAGS= go install -ldflags "-X main.Version=v0.5.3" github.com/superfly/ltx/cmd/ltx@v0.5.3
