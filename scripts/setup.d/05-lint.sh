#!/usr/bin/env bash
# staticcheck, which the test script runs over every package. The module
# proxy serves it by its module version (v0.8.2 is staticcheck 2026.2.2).
set -euo pipefail
export PATH="$PATH:$(go env GOPATH)/bin"
want=v0.8.2
if command -v staticcheck >/dev/null 2>&1 && staticcheck -version 2>/dev/null | grep -q "(${want#v})"; then
	exit 0
fi
GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$want"
