#!/usr/bin/env bash
# Runs every Ferry test. On a fresh Debian machine (as root) it first
# installs what the tests need: each script in scripts/setup.d installs one
# group of tools and is a no-op when they are already present. Each script
# in scripts/test.d then runs one suite that is not a plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Under CI=true a test that cannot mount FUSE or find its tools fails
# instead of skipping. Set it here, so that the test command is as strict
# wherever it runs, whether or not the CI runner sets it.
export CI="${CI:-true}"
export PATH="$PATH:$(go env GOPATH)/bin"
export GOFLAGS="${GOFLAGS:-} -mod=mod"

for s in scripts/setup.d/*.sh; do
	[ -e "$s" ] || continue
	echo "== setup: $s"
	bash "$s"
done

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
staticcheck ./...

echo "== go test"
go test -count=1 -timeout 45m ./...

for t in scripts/test.d/*.sh; do
	[ -e "$t" ] || continue
	echo "== suite: $t"
	bash "$t"
done
