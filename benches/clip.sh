#!/usr/bin/env bash
# CLIP benchmark, owlet vs onnxruntime, on a random-weight bundle with the real
# ViT-B/32 dimensions (made here by models/export.py; ~600 MB, not committed).
#   benches/clip.sh [--threads N] [--iters N] [--batches 1,8]
# It also makes the bundle's int8 form with owlet-quantize and times it against
# onnxruntime's int8 (quantize_dynamic) of the same graphs, and its fp16 form, timed
# against owlet's fp32.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="$PWD/target/bench-models/clip-vit-b32"
. benches/python-env.sh
bench_python_env
if [ ! -f "$BUNDLE/owlet.toml" ]; then
  python3 models/export.py clip "$BUNDLE" --random vit-b32
fi
if [ ! -f "$BUNDLE-int8/owlet.toml" ]; then
  # The workspace build (a -p build would resolve other features and rebuild tract).
  cargo build --release --workspace --bins --tests
  target/release/owlet-quantize "$BUNDLE" "$BUNDLE-int8" --to int8
fi
if [ ! -f "$BUNDLE-fp16/owlet.toml" ]; then
  cargo build --release --workspace --bins --tests
  target/release/owlet-quantize "$BUNDLE" "$BUNDLE-fp16" --to fp16
fi
exec cargo bench -p owlet-runtime --bench clip -- --model "$BUNDLE" --int8 "$BUNDLE-int8" --fp16 "$BUNDLE-fp16" --threads "$(nproc)" "$@"
