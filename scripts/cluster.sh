#!/usr/bin/env bash
# Starts a local three-node cluster in one command: versitygw as the S3
# bucket, three `ferry mount` nodes with Raft leases, each running the
# example app (examples/counter) behind its proxy, and a Fly proxy
# emulator in front of them (cmd/flyproxy), which honours
# `fly-replay: instance=` and refuses to replay bodies over 1 MB.
#
#	sudo scripts/cluster.sh          # prints what to try with curl; Ctrl-C stops it
#	CLUSTER_CHECK=1 scripts/cluster.sh   # runs the walkthrough below and exits
#
# Addresses: the emulator and versitygw on $CLUSTER_FRONT, node i on the
# i-th of $CLUSTER_IPS; ports from $CLUSTER_PORT_BASE (proxy), +1 (app),
# +2 (metrics), +3 (Raft), +4 (versitygw).
set -euo pipefail
cd "$(dirname "$0")/.."

front=${CLUSTER_FRONT:-127.0.0.10}
read -r -a ips <<<"${CLUSTER_IPS:-127.0.0.11 127.0.0.12 127.0.0.13}"
base=${CLUSTER_PORT_BASE:-8080}
proxy_port=$base app_port=$((base + 1)) metrics_port=$((base + 2)) raft_port=$((base + 3)) gw_port=$((base + 4))
export PATH="$PATH:$(go env GOPATH)/bin"
command -v versitygw >/dev/null || { echo "versitygw not found: run scripts/setup.d/20-s3.sh" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ferry-cluster.XXXXXX")
pids=()
node_pids=()
cleanup() {
	# A node killed with -9 leaves its app running: stop the apps by the
	# pids their nodes logged.
	local apps
	apps=$(sed -n 's/.*msg="started application" pid=\([0-9]*\).*/\1/p' "$work"/node*/ferry.log 2>/dev/null || true)
	for pid in "${node_pids[@]}" "${pids[@]}" $apps; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	for i in "${!ips[@]}"; do
		if grep -q " $work/node$((i + 1))/mnt " /proc/self/mountinfo; then
			umount -l "$work/node$((i + 1))/mnt" || true
		fi
	done
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building into $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/ferry" ./cmd/ferry
go build -o "$work/bin/counter" ./examples/counter
go build -o "$work/bin/flyproxy" ./cmd/flyproxy
ferry="$work/bin/ferry"

echo "== versitygw on $front:$gw_port"
# Nodes authenticate each other with a shared secret (cluster.secret-env,
# FERRY_CLUSTER_SECRET by default).
export FERRY_CLUSTER_SECRET=${FERRY_CLUSTER_SECRET:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export AWS_ACCESS_KEY_ID=ferrylocal AWS_SECRET_ACCESS_KEY=ferrylocalsecret AWS_REGION=us-east-1
mkdir -p "$work/s3/ferry"
ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
	versitygw --port "$front:$gw_port" --region "$AWS_REGION" --quiet posix "$work/s3" >"$work/versitygw.log" 2>&1 &
pids+=($!)

peers=$(printf '"%s:'"$raft_port"'", ' "${ips[@]}")
peers="[${peers%, }]"
proxy_peers=""
instances=()
for i in "${!ips[@]}"; do
	n=$((i + 1))
	proxy_peers+="    node$n: \"${ips[$i]}:$proxy_port\""$'\n'
	instances+=(-instance "node$n=http://${ips[$i]}:$proxy_port")
done

start_node() {
	local n=$1 ip=${ips[$(($1 - 1))]} dir="$work/node$1"
	mkdir -p "$dir/mnt" "$dir/data"
	cat >"$dir/ferry.yml" <<YAML
fuse:
  dir: $dir/mnt
  allow-other: true
data:
  dir: $dir/data
exec: "exec $work/bin/counter -listen $ip:$app_port -db-dir $dir/mnt"
bucket:
  type: s3
  bucket: ferry
  endpoint: http://$front:$gw_port
  force-path-style: true
  upload-interval: 100ms
  follow-interval: 200ms
cluster:
  id: ferry-local
lease:
  type: raft
  node: node$n
  ttl: 2s
  raft:
    bind: "$ip:$raft_port"
    peers: $peers
    heartbeat-timeout: 500ms
    election-timeout: 500ms
proxy:
  addr: "$ip:$proxy_port"
  target: "$ip:$app_port"
  mode: replay
  routes:
    - {path: "/t/{tenant}", db: "{tenant}.db"}
  health-path: /health
  peers:
$proxy_peers
metrics:
  addr: "$ip:$metrics_port"
YAML
	"$ferry" mount -config "$dir/ferry.yml" >"$dir/ferry.log" 2>&1 &
	node_pids[$n]=$!
}

for i in "${!ips[@]}"; do
	start_node $((i + 1))
done
echo "== Fly proxy emulator on $front:$proxy_port"
"$work/bin/flyproxy" -listen "$front:$proxy_port" "${instances[@]}" >"$work/flyproxy.log" 2>&1 &
pids+=($!)

fly="http://$front:$proxy_port"
for _ in $(seq 1 150); do
	ok=1
	for ip in "${ips[@]}"; do
		curl -fs "http://$ip:$proxy_port/health" >/dev/null 2>&1 || ok=0
	done
	curl -fs "$fly/" >/dev/null 2>&1 || ok=0
	[ $ok = 1 ] && break
	sleep 0.2
done
[ $ok = 1 ] || { echo "the cluster did not come up; logs in $work" >&2; tail -n 20 "$work"/node*/ferry.log >&2; exit 1; }
for _ in $(seq 1 50); do
	"$ferry" status -config "$work/node1/ferry.yml" | grep -q 'leader none' || break
	sleep 0.2
done
"$ferry" status -config "$work/node1/ferry.yml"

if [ -z "${CLUSTER_CHECK:-}" ]; then
	cat <<TXT

The cluster is up. Try:

  curl -X POST $fly/t/acme                                    # any node; the write lands on acme.db's holder
  curl -X POST -H 'Fly-Force-Instance-Id: node3' $fly/t/acme  # replayed to the holder
  curl -c jar -X POST $fly/t/acme; curl -b jar -H 'Fly-Force-Instance-Id: node2' $fly/t/acme
                                                              # read-your-writes on a replica
  curl http://${ips[1]}:$proxy_port/health; curl -s http://${ips[0]}:$metrics_port/metrics | grep ^ferry_db
  $ferry status -config $work/node1/ferry.yml
  kill -9 <pid of a holder's ferry>, then POST again          # failover after lease.ttl (2s)
  $ferry restore -config $work/node1/ferry.yml -o /tmp/acme.db acme.db

Node pids: ${node_pids[*]}. Logs and configs: $work. Ctrl-C stops everything.
TXT
	wait "${pids[0]}"
	exit 0
fi

fail() { echo "FAIL: $*" >&2; tail -n 30 "$work"/node*/ferry.log "$work/flyproxy.log" >&2; exit 1; }
post() { curl -fsS -X POST -H "Fly-Force-Instance-Id: $1" "${@:3}" "$fly/t/$2"; }

echo "== a write lands on node1 and takes acme.db's lease there"
[ "$(post node1 acme)" = 1 ] || fail "first write"
echo "== a write sent to node2 is replayed on node1"
[ "$(post node2 acme)" = 2 ] || fail "replayed write"
echo "== a write sent straight to node3's proxy is forwarded to node1"
[ "$(curl -fsS -X POST "http://${ips[2]}:$proxy_port/t/acme")" = 3 ] || fail "forwarded write"
echo "== a large body sent to node2 is forwarded, not replayed"
head -c 2000000 /dev/zero | post node2 acme --data-binary @- >/dev/null || fail "large body"
echo "== read-your-writes on node3"
[ "$(post node2 acme -c "$work/jar")" = 5 ] || fail "write with cookie"
[ "$(curl -fsS -b "$work/jar" -H 'Fly-Force-Instance-Id: node3' "$fly/t/acme")" = 5 ] || fail "read your write on node3"
sleep 1 # one upload interval and then some: the bucket holds every commit
echo "== failover: node1 dies (app and ferry), node2 takes the lease after its TTL"
app1=$(sed -n 's/.*msg="started application" pid=\([0-9]*\).*/\1/p' "$work/node1/ferry.log")
kill -9 $app1 "${node_pids[1]}"
wait "${node_pids[1]}" 2>/dev/null || true
umount -l "$work/node1/mnt" 2>/dev/null || true
got=
for _ in $(seq 1 30); do
	got=$(post node2 acme 2>/dev/null) && break
	sleep 0.5
done
[ "$got" = 6 ] || fail "write after failover: $got"
echo "== restore from the bucket alone"
"$ferry" restore -config "$work/node3/ferry.yml" -o "$work/restored.db" acme.db >/dev/null
[ "$(sqlite3 "$work/restored.db" 'SELECT n FROM counter')" -ge 5 ] || fail "restored count"
echo "cluster walkthrough: ok"
