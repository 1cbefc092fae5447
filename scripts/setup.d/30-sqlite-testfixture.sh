#!/usr/bin/env bash
# Builds SQLite's `testfixture` (the TCL interpreter SQLite's own test suite
# runs in) from Debian's sqlite3 source package, so that the suite can be
# run inside a Ferry mount by scripts/test.d/30-sqlite-tcl-suite.sh.
#
# The source and the binary are kept under FERRY_SQLITE_SRC_CACHE
# (default /var/cache/ferry/sqlite-src). The script does nothing when the
# built testfixture is already there.
set -euo pipefail

cache="${FERRY_SQLITE_SRC_CACHE:-/var/cache/ferry/sqlite-src}"
stamp="$cache/testfixture.path"

if [ -f "$stamp" ] && [ -x "$(cat "$stamp")" ]; then
	echo "testfixture: $(cat "$stamp") (cached)"
	exit 0
fi

# Enable source repositories. Debian 12 keeps them in deb822 form in
# debian.sources; older images use a one-line-per-repository sources.list.
enable_deb_src() {
	local changed=0 f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		grep -q 'deb.debian.org\|debian-security\|snapshot.debian.org' "$f" || continue
		if grep -qE '^Types:[[:space:]]*deb[[:space:]]*$' "$f"; then
			sed -i -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb deb-src/' "$f"
			changed=1
		fi
	done
	f=/etc/apt/sources.list
	if [ -f "$f" ] && grep -qE '^deb[[:space:]]' "$f" && ! grep -qE '^deb-src[[:space:]]' "$f"; then
		grep -E '^deb[[:space:]]' "$f" | sed -E 's/^deb([[:space:]])/deb-src\1/' >>"$f"
		changed=1
	fi
	return $changed
}

need_update=0
enable_deb_src || need_update=1
pkgs=()
for p in tcl-dev build-essential dpkg-dev; do
	dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ] || [ $need_update = 1 ] || ! ls "$cache"/sqlite3-*/configure >/dev/null 2>&1; then
	apt-get update -qq
fi
if [ ${#pkgs[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
fi

mkdir -p "$cache"
cd "$cache"
if ! ls -d sqlite3-*/ >/dev/null 2>&1; then
	# --download-only then dpkg-source avoids needing the source package's
	# build-dependencies, which the test fixture does not use.
	apt-get source -qq --download-only sqlite3
	dpkg-source --no-check -x sqlite3_*.dsc >/dev/null
fi
src="$(cd "$(ls -d sqlite3-*/ | head -n1)" && pwd)"

mkdir -p "$src/build-testfixture"
cd "$src/build-testfixture"
start=$(date +%s)
if [ ! -f Makefile ]; then
	"$src/configure" --with-tcl=/usr/lib/tcl8.6 >configure.log 2>&1 ||
		{ tail -n 40 configure.log; exit 1; }
fi
make -j"$(nproc)" testfixture >make.log 2>&1 || { tail -n 60 make.log; exit 1; }
echo "testfixture: built in $(($(date +%s) - start))s"

# The suite's files are found relative to the source directory.
echo "$src" >"$cache/src.path"
echo "$src/build-testfixture/testfixture" >"$stamp"
echo "testfixture: $(cat "$stamp")"
