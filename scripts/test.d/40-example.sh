#!/usr/bin/env bash
# Runs the Dockerfile's `go build` steps as a plain script (docker is not
# needed), then starts `ferry mount` on the built binaries with the example
# app behind the proxy, as the image would, and drives it with curl: a
# tenant's counter, /health and /metrics.
set -euo pipefail
cd "$(dirname "$0")/../.."

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ferry-example.XXXXXX")
mkdir -p "$work/out" "$work/mnt" "$work/data"
mount_pid=
cleanup() {
	if [ -n "$mount_pid" ] && kill -0 "$mount_pid" 2>/dev/null; then
		kill -TERM "$mount_pid"
		wait "$mount_pid" || true
	fi
	if grep -q " $work/mnt " /proc/self/mountinfo; then
		umount -l "$work/mnt" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# The build steps, exactly as the Dockerfile has them, with /out here.
builds=$(sed -n 's/^RUN \(go build .*\)$/\1/p' Dockerfile)
[ -n "$builds" ] || { echo "no 'RUN go build' steps in the Dockerfile" >&2; exit 1; }
while IFS= read -r step; do
	echo "+ $step"
	eval "${step//\/out\//$work/out/}"
done <<<"$builds"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
app_port=$(free_port) proxy_port=$(free_port) metrics_port=$(free_port)
cat >"$work/ferry.yml" <<YAML
fuse:
  dir: $work/mnt
data:
  dir: $work/data
exec: "exec $work/out/counter -listen 127.0.0.1:$app_port -db-dir $work/mnt"
bucket:
  upload-interval: 100ms
proxy:
  addr: "127.0.0.1:$proxy_port"
  target: "127.0.0.1:$app_port"
  routes:
    - {path: "/t/{tenant}", db: "{tenant}.db"}
  health-path: /health
metrics:
  addr: "127.0.0.1:$metrics_port"
YAML
"$work/out/ferry" mount -config "$work/ferry.yml" >"$work/mount.log" 2>&1 &
mount_pid=$!
proxy="http://127.0.0.1:$proxy_port"
for _ in $(seq 1 100); do
	curl -fs "$proxy/" >/dev/null 2>&1 && break
	kill -0 "$mount_pid" 2>/dev/null || { cat "$work/mount.log" >&2; exit 1; }
	sleep 0.1
done

fail() { echo "FAIL: $*" >&2; cat "$work/mount.log" >&2; exit 1; }
curl -fs -X POST "$proxy/t/acme" >/dev/null || fail "POST /t/acme"
[ "$(curl -fs -X POST "$proxy/t/acme")" = 2 ] || fail "second POST did not count 2"
[ "$(curl -fs "$proxy/t/acme")" = 2 ] || fail "GET /t/acme is not 2"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$proxy/t/..%2Fx")" = 400 ] || fail "a hostile tenant was not refused"
[ -f "$work/mnt/acme.db" ] || fail "no acme.db in the mount"
curl -fs "$proxy/health" | grep -q '"ok"' || fail "/health on the proxy"
curl -fs "http://127.0.0.1:$metrics_port/metrics" | grep -q '^ferry_db_commits_total{db="acme.db"} [1-9]' || fail "/metrics lacks acme.db's commits"
echo "example app: ok"
