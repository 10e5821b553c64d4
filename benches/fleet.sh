#!/usr/bin/env bash
# Fleet search at scale (issue 29): 6, 24 and 48 search-only bridges on one
# mosquitto, each with a preloaded history of 2000 frames and one inference
# thread; latency, each device's search time, PUBLISH packets and bytes per query,
# and a model for 500 devices. Needs mosquitto and ~4 GB of free memory.
# DEVICES=6,24,48 QUERIES=100 FRAMES=2000 [BROKER_NODELAY=1] benches/fleet.sh
# (BROKER_NODELAY=1: mosquitto with set_tcp_nodelay true; its default is false)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p owlet-cli -p owlet-bridge --bins
export OWLET_BIN="$PWD/target/release/owlet" OWLET_BRIDGE_BIN="$PWD/target/release/owlet-bridge"
cargo bench -p owlet-bridge --bench fleet -- \
  --devices "${DEVICES:-6,24,48}" --queries "${QUERIES:-100}" --frames "${FRAMES:-2000}" ${BROKER_NODELAY:+--broker-nodelay}
