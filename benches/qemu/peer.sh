#!/usr/bin/env bash
# owlet against onnxruntime's own aarch64 build, under qemu-aarch64: guest
# instructions per CLIP graph run (one image, one text) and per BLIP-2 decoder step
# (one token), fp32 and int8, one thread, on an emulated Pi 4 (cortex-a72) and Pi 5
# (cortex-a76). Instructions, not time: qemu repeats them exactly where it cannot
# time a board.
#
#   benches/qemu/peer.sh [CPU ...]        default: cortex-a72 cortex-a76
#   OWLET_BUNDLE=DIR (default target/bench-models/clip-vit-b32, from
#   `models/export.py clip DIR --random vit-b32`): the fp32 CLIP bundle.
#   PYTHON (default python3): one with onnxruntime, for quantize_dynamic.
#   OWLET_BLIP2_BUNDLE (default target/bench-models/blip2-opt125m, from
#   `models/export.py blip2 DIR --random opt-125m`): the BLIP-2 bundle (its decoder).
#   OWLET_PRECISIONS (default "fp32 int8"), OWLET_GRAPHS (default "vision text
#   decoder"): a part of the table (each count takes minutes under qemu).
#
# The same graphs on both sides: owlet runs the bundle's vision.onnx and text.onnx
# (runtime/examples/graph_runs), onnxruntime 1.31.1 runs the same files
# (benches/qemu/ort-graph-runs, the `ort` crate loading the linux-arm64
# libonnxruntime.so that the npm package onnxruntime-node ships). int8: owlet-quantize's
# bundle against onnxruntime's quantize_dynamic of the same fp32 graphs (per channel,
# as benches/ort_int8.py makes them for the x86 tables). Each figure is
# (count of 3 runs - count of 1 run) / 2: start-up and loading drop out.
#
# Under qemu-user /proc/cpuinfo is the host's, which onnxruntime's CPU detection
# cannot read as an ARM one (it crashes at load): each onnxruntime run gets a
# board's cpuinfo bind-mounted over it in a mount namespace of its own (unshare -m:
# needs root or sudo). Its instruction-set choices still come from qemu's -cpu
# (HWCAP), as on the board. owlet is told the same way (TRACT_CPU_*), as in
# scripts/cross.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -gt 0 ]; then CPUS=("$@"); else CPUS=(cortex-a72 cortex-a76); fi
BUNDLE=${OWLET_BUNDLE:-target/bench-models/clip-vit-b32}
read -r -a PRECISIONS <<<"${OWLET_PRECISIONS:-fp32 int8}"
BLIP2=${OWLET_BLIP2_BUNDLE:-target/bench-models/blip2-opt125m}
read -r -a GRAPHS <<<"${OWLET_GRAPHS:-vision text decoder}"
PYTHON=${PYTHON:-python3}
ORT_VERSION=1.31.1
WORK=target/arm-peer
ORT_LIB=$WORK/onnxruntime-node-$ORT_VERSION/package/bin/napi-v6/linux/arm64/libonnxruntime.so.1
OWLET_RUNS=target/cross/aarch64-unknown-linux-gnu/release/examples/graph_runs
ORT_RUNS=target/ort-graph-runs/aarch64-unknown-linux-gnu/release/ort-graph-runs
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

[ -f "$BUNDLE/owlet.toml" ] || { echo "peer.sh: no bundle at $BUNDLE (models/export.py clip $BUNDLE --random vit-b32)" >&2; exit 2; }
[ -x "$OWLET_RUNS" ] || { echo "peer.sh: no $OWLET_RUNS (scripts/cross test builds it)" >&2; exit 2; }
mkdir -p "$WORK"
. benches/qemu/qemu-common.sh
build_qemu_plugin

# onnxruntime's aarch64 library, from the npm package (its tarball, no install).
if [ ! -f "$ORT_LIB" ]; then
  (cd "$WORK" && npm pack -q "onnxruntime-node@$ORT_VERSION" >/dev/null &&
    mkdir -p "onnxruntime-node-$ORT_VERSION" &&
    tar -C "onnxruntime-node-$ORT_VERSION" -xzf "onnxruntime-node-$ORT_VERSION.tgz" \
      package/bin/napi-v6/linux/arm64/libonnxruntime.so.1)
fi
# Its harness, cross-compiled as scripts/cross does (Debian's cargo has the target).
CARGO_TARGET_DIR=$PWD/target/ort-graph-runs RUSTC=/usr/bin/rustc /usr/bin/cargo build -q --release \
  --manifest-path benches/qemu/ort-graph-runs/Cargo.toml --target aarch64-unknown-linux-gnu

# The int8 forms: owlet-quantize's bundles, onnxruntime's quantize_dynamic of the
# same fp32 graphs.
ORT_INT8=$WORK/$(basename "$BUNDLE")-ort-int8
BLIP2_ORT_INT8=$WORK/$(basename "$BLIP2")-ort-int8
if [[ " ${PRECISIONS[*]} " == *" int8 "* ]]; then
  for b in "$BUNDLE" "$BLIP2"; do
    if [ ! -f "$b-int8/owlet.toml" ]; then
      # The workspace build (a -p build would resolve other features and rebuild tract).
      [ -x target/release/owlet-quantize ] || cargo build -q --release --workspace --bins --tests
      target/release/owlet-quantize "$b" "$b-int8" --to int8 >/dev/null
    fi
  done
  (cd benches && "$PYTHON" -c "import sys; from ort_int8 import int8_graphs; int8_graphs(sys.argv[1], ['vision', 'text'], sys.argv[2]); int8_graphs(sys.argv[3], ['decoder'], sys.argv[4])" \
    "../$BUNDLE" "../$ORT_INT8" "../$BLIP2" "../$BLIP2_ORT_INT8")
fi

count_owlet() {  # CPU BUNDLE GRAPH RUNS
  as_board "$1" "$OWLET_RUNS" "$2" "$3" "$4" 2>&1 >/dev/null | tee "$LOG-owlet-$4" |
    sed -n 's/guest instructions: //p'
}

count_ort() {  # CPU MODEL [SYMBOL=SIZE ...] RUNS
  # A board's /proc/cpuinfo: MIDR part 0xd08 (A72) or 0xd0b (A76), its features.
  local cpuinfo part features
  cpuinfo=$(mktemp)
  if [ "$1" = cortex-a72 ]; then
    part=0xd08 features="fp asimd evtstrm crc32 cpuid"
  else
    part=0xd0b features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
  fi
  for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: %s\nCPU revision\t: 1\n\n' \
      "$i" "$features" "$part"
  done >"$cpuinfo"
  as_root unshare -m sh -c 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"' sh "$cpuinfo" \
    qemu-aarch64 -cpu "$1" -plugin "$QEMU_PLUGIN" -d plugin "$ORT_RUNS" "$ORT_LIB" "$2" "${@: -1}" "${@:3:$#-3}" 2>&1 >/dev/null |
    tee "$LOG-ort-${*: -1}" | sed -n 's/guest instructions: //p'
  rm -f "$cpuinfo"
}

per_run() {  # COUNTER ARGS... (without RUNS): (count(3) - count(1)) / 2
  local c1 c3
  c1=$("$@" 1)
  c3=$("$@" 3)
  [ -n "$c1" ] && [ -n "$c3" ] || { echo "peer.sh: $*: a run failed" >&2; exit 1; }
  echo $(((c3 - c1) / 2))
}

echo "$(basename "$BUNDLE"), one thread, $(qemu-aarch64 --version | head -1), onnxruntime $ORT_VERSION (npm linux-arm64)"
echo "| CPU | graph | precision | owlet | onnxruntime | owlet / onnxruntime |"
echo "|---|---|---|---|---|---|"
for cpu in "${CPUS[@]}"; do
  for precision in "${PRECISIONS[@]}"; do
    for graph in "${GRAPHS[@]}"; do
      # The decoder step at owlet's prefix: 32 queries and 5 prompt tokens ("a photo
      # of" after BOS) before it, the two counted steps at 37 and 38 (38 here).
      ort_sizes=()
      if [ "$graph" = decoder ]; then
        b=$BLIP2 ort_int8=$BLIP2_ORT_INT8 ort_sizes=(seq=1 past=37 total=38)
      else
        b=$BUNDLE ort_int8=$ORT_INT8
      fi
      if [ $precision = fp32 ]; then
        owlet_bundle=$b ort_model=$b/$graph.onnx
      else
        owlet_bundle=$b-int8 ort_model=$ort_int8/$graph.onnx
      fi
      # The plugin's whole output of each count, for the instruction classes below.
      LOG=$WORK/log-$cpu-$graph-$precision
      o=$(per_run count_owlet "$cpu" "$owlet_bundle" "$graph")
      r=$(per_run count_ort "$cpu" "$ort_model" "${ort_sizes[@]}")
      awk -v c="$cpu" -v g="$graph" -v p="$precision" -v o="$o" -v r="$r" \
        'BEGIN {printf "| %s | %s | %s | %.1f M | %.1f M | %.3f |\n", c, g, p, o / 1e6, r / 1e6, o / r}'
    done
  done
done

# Which code ran: each side's multiply instructions by class (insn_count.c decodes
# them), in the one-run count of the int8 image: `sdot` where the CPU has dotprod,
# the widening smull/smlal/sadalp path where it does not. Whole processes (loading
# and the warm-up included), so compare kinds, not totals.
for cpu in "${CPUS[@]}"; do
  for side in owlet ort; do
    log=$WORK/log-$cpu-vision-int8-$side-1
    [ -f "$log" ] || continue
    echo "$cpu, int8 image, $side: $(sed -n 's/^class //p' "$log" | grep -v ': 0$' | paste -sd ';' | sed 's/;/; /g')"
  done
done
