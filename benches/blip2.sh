#!/usr/bin/env bash
# BLIP-2 decoder benchmark, owlet vs onnxruntime, on a random-weight bundle with an
# OPT-125m-sized decoder (made here by models/export.py; not committed).
#   benches/blip2.sh [--threads N] [--new-tokens N] [--runs N]
# It also makes the bundle's int8 form with owlet-quantize and times it against
# onnxruntime's int8 (quantize_dynamic) of the same graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="$PWD/target/bench-models/blip2-opt125m"
. benches/python-env.sh
bench_python_env
if [ ! -f "$BUNDLE/owlet.toml" ]; then
  python3 models/export.py blip2 "$BUNDLE" --random opt-125m
fi
if [ ! -f "$BUNDLE-int8/owlet.toml" ]; then
  # The workspace build (a -p build would resolve other features and rebuild tract).
  cargo build --release --workspace --bins --tests
  target/release/owlet-quantize "$BUNDLE" "$BUNDLE-int8" --to int8
fi
exec cargo bench -p owlet-runtime --bench blip2 -- --model "$BUNDLE" --int8 "$BUNDLE-int8" --threads "$(nproc)" "$@"
