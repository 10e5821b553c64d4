#!/usr/bin/env bash
# CLIP benchmark, owlet vs onnxruntime, on a random-weight bundle with the real
# ViT-B/32 dimensions (made here by models/export.py; ~600 MB, not committed).
#   benches/clip.sh [--threads N] [--iters N] [--batches 1,8]
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="$PWD/target/bench-models/clip-vit-b32"
if [ ! -f "$BUNDLE/owlet.toml" ]; then
  pip install -q -r models/requirements.txt
  python3 models/export.py clip "$BUNDLE" --random vit-b32
fi
exec cargo bench -p owlet-runtime --bench clip -- --model "$BUNDLE" --threads "$(nproc)" "$@"
