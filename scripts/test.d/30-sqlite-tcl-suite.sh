#!/usr/bin/env bash
# Runs test files from SQLite's own TCL test suite inside a Ferry mount, as
# an unprivileged user, and the same files on plain disk as the baseline.
# Fails if any file fails more through the mount than on plain disk.
#
# Needs the testfixture built by scripts/setup.d/30-sqlite-testfixture.sh.
# FERRY_SQLITE_SUITE_TESTS overrides the list of test files (names without
# .test); FERRY_SQLITE_SUITE_TIMEOUT is the limit per file and place, in
# seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

cache="${FERRY_SQLITE_SRC_CACHE:-/var/cache/ferry/sqlite-src}"
if [ ! -f "$cache/testfixture.path" ] || [ ! -f "$cache/src.path" ]; then
	echo "sqlite suite: no testfixture in $cache; run scripts/setup.d/30-sqlite-testfixture.sh" >&2
	exit 1
fi
testfixture=$(cat "$cache/testfixture.path")
src=$(cat "$cache/src.path")
tests=${FERRY_SQLITE_SUITE_TESTS:-"wal wal2 pager1 lock journal1 walthread extraquick"}
limit=${FERRY_SQLITE_SUITE_TIMEOUT:-1200}
user=ferrysuite

id "$user" >/dev/null 2>&1 ||
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"

work=$(mktemp -d /var/tmp/ferry-sqlite-suite.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/mnt" "$work/data" "$work/plain"
# The logs outlive the run when something fails.
logs=$(mktemp -d /var/tmp/ferry-sqlite-suite-logs.XXXXXX)
chown "$user" "$work/plain"

mount_pid=
cleanup() {
	if [ -n "$mount_pid" ] && kill -0 "$mount_pid" 2>/dev/null; then
		kill -TERM "$mount_pid"
		for _ in $(seq 1 100); do
			kill -0 "$mount_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$mount_pid" 2>/dev/null || true
	fi
	if grep -q " $work/mnt " /proc/self/mountinfo; then
		umount -l "$work/mnt" || true
	fi
	rm -rf "$work"
	if [ "${status:-1}" = 0 ]; then
		rm -rf "$logs"
	else
		echo "sqlite suite: logs kept in $logs" >&2
	fi
}
trap cleanup EXIT

go build -o "$work/ferry" ./cmd/ferry
cat >"$work/ferry.yml" <<YAML
fuse:
  dir: $work/mnt
  allow-other: true
data:
  dir: $work/data
YAML
"$work/ferry" mount -config "$work/ferry.yml" >"$logs/mount.log" 2>&1 &
mount_pid=$!
for _ in $(seq 1 200); do
	grep -q " $work/mnt " /proc/self/mountinfo && break
	if ! kill -0 "$mount_pid" 2>/dev/null; then
		echo "sqlite suite: ferry mount exited before mounting:" >&2
		cat "$logs/mount.log" >&2
		exit 1
	fi
	sleep 0.1
done
if ! grep -q " $work/mnt " /proc/self/mountinfo; then
	echo "sqlite suite: ferry mount did not mount $work/mnt within 20s:" >&2
	cat "$logs/mount.log" >&2
	exit 1
fi

# run_one PLACE DIR TEST runs one test file in DIR as the unprivileged user
# and prints "errors tests seconds" ("- - seconds" if it did not finish).
#
# The test file is run from DIR with no arguments: testfixture then puts
# every file it makes in DIR/testdir, the same place --testdir=DIR/testdir
# would. Passing any argument makes 3.40's tester.tcl leave its argument
# loop's variable "a" set at global scope, and wal2.test then stops at
# wal2-13 with "can't set a(0): variable isn't array".
#
# Each file runs in MOUNT/<test>/testdir, two levels below the mount's root:
# pager1-4.4.2 pads its path towards 512 bytes with about 13 nested 32-byte
# directory names, and with one more level its database would lie deeper
# than Ferry's limit of 16 path components (ferry.MaxNameDepth).
run_one() {
	local place=$1 dir=$2 t=$3 log="$logs/$3.$1.log" start rc line
	mkdir -p "$dir/$t"
	chown "$user" "$dir/$t"
	start=$(date +%s)
	rc=0
	timeout --kill-after=10 "$limit" \
		su -s /bin/sh "$user" -c "cd '$dir/$t' && exec '$testfixture' '$src/test/$t.test'" \
		</dev/null >"$log" 2>&1 || rc=$?
	line=$(grep -E '^[0-9]+ errors out of [0-9]+ tests' "$log" | tail -n1 || true)
	if [ -n "$line" ]; then
		echo "$(echo "$line" | awk '{print $1, $5}') $(($(date +%s) - start))"
	else
		echo "- - $(($(date +%s) - start)) rc=$rc"
	fi
}

# failures LOG prints the names of the failed cases in LOG, one per line.
failures() {
	grep -E '^!Failures on these tests:' "$1" | sed 's/^!Failures on these tests://' | tr ' ' '\n' | sed '/^$/d' | sort -u || true
}

# Cases known to fail only in the mount, for a reason that is understood
# and not fixed yet (FERRY_SQLITE_SUITE_KNOWN, space-separated). They are
# named in every run's summary, and any other extra failure still fails
# the suite. There are none at present.
known_mount_failures=${FERRY_SQLITE_SUITE_KNOWN-""}

declare -A plain_res mount_res
status=0
for t in $tests; do
	if [ ! -f "$src/test/$t.test" ]; then
		echo "sqlite suite: no test file $src/test/$t.test" >&2
		status=1
		continue
	fi
	echo "== $t: plain disk"
	plain_res[$t]=$(run_one plain "$work/plain" "$t")
	echo "   ${plain_res[$t]}"
	echo "== $t: ferry mount"
	mount_res[$t]=$(run_one mount "$work/mnt" "$t")
	echo "   ${mount_res[$t]}"
done

if ! kill -0 "$mount_pid" 2>/dev/null; then
	echo "sqlite suite: ferry mount died during the suite:" >&2
	tail -n 50 "$logs/mount.log" >&2
	status=1
fi

printf '\n%-12s %22s %22s  %s\n' "test file" "plain disk" "ferry mount" "verdict"
printf '%-12s %22s %22s  %s\n' "" "errors/tests (time)" "errors/tests (time)" ""
for t in $tests; do
	[ -n "${plain_res[$t]:-}" ] || continue
	read -r pe pn ps _ <<<"${plain_res[$t]}"
	read -r me mn ms _ <<<"${mount_res[$t]}"
	verdict=ok
	if [ "$me" = "-" ] && [ "$pe" != "-" ]; then
		verdict="FAIL: did not finish in the mount"
	elif [ "$me" != "-" ] && [ "$pe" != "-" ] && [ "$me" -gt "$pe" ]; then
		verdict="FAIL: more errors in the mount"
		extra=$(comm -13 <(failures "$logs/$t.plain.log") <(failures "$logs/$t.mount.log"))
		known=0 unknown=0
		for c in $extra; do
			case " $known_mount_failures " in
			*" $c "*) known=$((known + 1)) ;;
			*) unknown=$((unknown + 1)) ;;
			esac
		done
		if [ "$unknown" -eq 0 ] && [ "$me" -le $((pe + known)) ]; then
			verdict="ok, with known mount-only failures: $(echo $extra)"
		fi
	elif [ "$me" = "-" ]; then
		verdict="did not finish on plain disk either"
	fi
	printf '%-12s %22s %22s  %s\n' "$t" "$pe/$pn (${ps}s)" "$me/$mn (${ms}s)" "$verdict"
	if [ "$verdict" != ok ]; then
		case $verdict in FAIL*) status=1 ;; esac
		new=$(comm -13 <(failures "$logs/$t.plain.log") <(failures "$logs/$t.mount.log") | tr '\n' ' ')
		[ -z "$new" ] || echo "    failing only in the mount: $new"
		echo "    errors in the mount (last 20):"
		grep -E '^(! |Error: )|^[^ ]*testfixture: ' "$logs/$t.mount.log" | tail -n 20 | sed 's/^/      /'
		echo "    last tests in the mount:"
		grep -E '\.\.\.' "$logs/$t.mount.log" | tail -n 3 | sed 's/^/      /'
	fi
done
exit $status
