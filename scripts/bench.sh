#!/usr/bin/env bash
# Mounts Ferry on a temporary directory, runs `ferry bench` inside the mount
# against a plain directory on the same disk, and unmounts. Arguments are
# passed on to `ferry bench` (for example -duration 10s or -json).
#
#	sudo scripts/bench.sh [-duration 5s] [-json]
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ferry-bench.XXXXXX")
mkdir -p "$work/mnt" "$work/data" "$work/plain"
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

go build -o "$work/ferry" ./cmd/ferry
cat >"$work/ferry.yml" <<YAML
fuse:
  dir: $work/mnt
data:
  dir: $work/data
YAML
"$work/ferry" mount -config "$work/ferry.yml" >"$work/mount.log" 2>&1 &
mount_pid=$!
for _ in $(seq 1 200); do
	grep -q " $work/mnt " /proc/self/mountinfo && break
	kill -0 "$mount_pid" 2>/dev/null || { cat "$work/mount.log" >&2; exit 1; }
	sleep 0.1
done
grep -q " $work/mnt " /proc/self/mountinfo || { echo "ferry mount did not mount $work/mnt" >&2; cat "$work/mount.log" >&2; exit 1; }

mkdir "$work/mnt/bench"
"$work/ferry" bench -baseline "$work/plain" "$@" "$work/mnt/bench"
