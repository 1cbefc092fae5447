#!/usr/bin/env bash
# The S3 server the bucket tests run against (versitygw) and the stock
# Litestream binary that must be able to restore a bucket Ferry wrote.
set -euo pipefail
bin="$(go env GOPATH)/bin"

# installed reports whether binary $1 was built from module $2 at version $3.
installed() {
	local info
	[ -x "$bin/$1" ] || return 1
	info="$(go version -m "$bin/$1" 2>/dev/null)" || return 1
	grep -Eq "^[[:space:]]+mod[[:space:]]+$2[[:space:]]+$3[[:space:]]" <<<"$info"
}

installed versitygw github.com/versity/versitygw v1.8.0 ||
	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
installed litestream github.com/benbjohnson/litestream v0.5.18 ||
	go install github.com/benbjohnson/litestream/cmd/litestream@v0.5.18
