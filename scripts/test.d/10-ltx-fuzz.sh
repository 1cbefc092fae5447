#!/usr/bin/env bash
# Fuzzes the LTX decoder and page reader for a bounded time, starting from
# the seed corpus in ltx/testdata/fuzz/FuzzDecoder.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test -run '^$' -fuzz '^FuzzDecoder$' -fuzztime 30s ./ltx
