#!/usr/bin/env bash
# Guest instructions of one CLIP image embedding under qemu (a repeatable figure to
# track kernels by, where wall time under emulation means little).
#   benches/qemu/count.sh [cortex-a72|cortex-a76] [IMAGE]
#   OWLET_BUNDLE=DIR (default models/clip-test): the CLIP bundle to embed with, e.g.
#   an fp16 one from owlet-quantize, which computes in f16 on the A76 (OWLET_CPU_F16=0:
#   in f32, for the comparison).
# Needs the aarch64 build (scripts/cross build or test). Counts `owlet embed` with
# 1, 2 and 3 copies of the image (one thread) and reports the increments: the cost
# of one more image (decode, preprocess, vision graph, normalise) without the
# start-up and planning every run pays.
set -euo pipefail
cd "$(dirname "$0")/../.."
CPU=${1:-cortex-a72}
IMG=${2:-models/demo-frames/rocket.jpg}
BIN=${OWLET_AARCH64_BIN:-target/cross/aarch64-unknown-linux-gnu/release/owlet}
. benches/qemu/qemu-common.sh
build_qemu_plugin
BUNDLE=${OWLET_BUNDLE:-models/clip-test}
count() {
  local imgs=()
  for _ in $(seq "$1"); do imgs+=("$IMG"); done
  as_board "$CPU" "$BIN" embed -m "$BUNDLE" --threads 1 "${imgs[@]}" 2>&1 >/dev/null |
    sed -n 's/guest instructions: //p'
}
c1=$(count 1); c2=$(count 2); c3=$(count 3)
echo "$CPU, $BUNDLE, $(basename "$IMG"): 1 image $c1, 2 images $c2, 3 images $c3 guest instructions"
echo "one more image: $((c2 - c1)) and $((c3 - c2)) instructions"
