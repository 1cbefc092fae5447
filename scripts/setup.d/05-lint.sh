#!/usr/bin/env bash
# staticcheck, which the test script runs over every package.
set -euo pipefail
export PATH="$PATH:$(go env GOPATH)/bin"
command -v staticcheck >/dev/null 2>&1 || go install honnef.co/go/tools/cmd/staticcheck@2025.1.1
