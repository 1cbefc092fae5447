#!/usr/bin/env bash
# Runs the local cluster's walkthrough (scripts/cluster.sh): three nodes,
# versitygw and the Fly proxy emulator, driven with curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER_CHECK=1 exec scripts/cluster.sh
