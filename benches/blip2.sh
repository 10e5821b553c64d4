#!/usr/bin/env bash
# BLIP-2 decoder benchmark, owlet vs onnxruntime, on a random-weight bundle with an
# OPT-125m-sized decoder (made here by models/export.py; not committed).
#   benches/blip2.sh [--threads N] [--new-tokens N] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="$PWD/target/bench-models/blip2-opt125m"
if [ ! -f "$BUNDLE/owlet.toml" ]; then
  pip install -q -r models/requirements.txt
  python3 models/export.py blip2 "$BUNDLE" --random opt-125m
fi
exec cargo bench -p owlet-runtime --bench blip2 -- --model "$BUNDLE" --threads "$(nproc)" "$@"
