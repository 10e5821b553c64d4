#!/usr/bin/env bash
# Guest instructions of one run of a graph, per emulated CPU: a repeatable figure for
# owlet's ARM kernels, where time under qemu means little.
#
#   benches/qemu/graphs.sh           count and print the table
#   benches/qemu/graphs.sh --check   count and compare with graphs.expected: a figure
#                                    outside its tolerance fails (scripts/cross test
#                                    runs this, so a silent fall-back to generic code
#                                    or a slower kernel fails the build)
#   benches/qemu/graphs.sh --write   count and write graphs.expected (after a change
#                                    that is meant to move the figures; say why in
#                                    the commit)
#   benches/qemu/graphs.sh --bundles only make the int8 test bundles (scripts/test,
#                                    while the native owlet-quantize is there)
#
# Each figure is the instructions of one run of runtime/examples/graph_runs (one
# thread, prepared inputs: no JPEG decoding or tokenizing), the mean of RUNS runs
# that the example marks for the TCG plugin insn_count.c (start-up and planning,
# which vary by millions from process to process, are not in it), for the test
# bundles in fp32 and in int8 (made here with owlet-quantize). Needs the aarch64
# test build (scripts/cross test builds it).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-}
EXPECTED=benches/qemu/graphs.expected
# Run-to-run noise of the marked runs is well under 1% (BENCHMARKS.md); a kernel
# falling back to scalar code moves its graph by far more.
TOLERANCE_PCT=3
RUNS=5
EXAMPLE=target/cross/aarch64-unknown-linux-gnu/release/examples/graph_runs
BUNDLES=target/qemu/bundles
mkdir -p target/qemu "$BUNDLES"

# The int8 forms of the test bundles, made by the x86-64 owlet-quantize (scripts/test
# makes them anew with --bundles, before it prunes the native build, so that they
# are this owlet-quantize's; made here when missing).
for b in clip-test blip2-test; do
  [ "$MODE" != --bundles ] || rm -rf "$BUNDLES/$b-int8"
  if [ ! -f "$BUNDLES/$b-int8/owlet.toml" ]; then
    rm -rf "$BUNDLES/$b-int8"
    # The workspace build (a -p build would resolve other features and rebuild tract).
    [ -x target/release/owlet-quantize ] || cargo build -q --release --workspace --bins --tests
    target/release/owlet-quantize "models/$b" "$BUNDLES/$b-int8" --to int8 >/dev/null
  fi
done
[ "$MODE" = --bundles ] && exit 0
[ -x "$EXAMPLE" ] || { echo "graphs.sh: no $EXAMPLE (run scripts/cross test first)" >&2; exit 2; }
. benches/qemu/qemu-common.sh
build_qemu_plugin

count() {  # count CPU BUNDLE GRAPH: instructions of one run, the mean of RUNS
  as_board "$1" "$EXAMPLE" "$2" "$3" "$RUNS" 2>&1 >/dev/null | sed -n 's/marked instructions: //p' |
    awk -v n="$RUNS" '{printf "%d\n", $1 / n}'
}

# CPU, bundle, graph: what is counted.
CASES=(
  "cortex-a72 models/clip-test vision"
  "cortex-a72 $BUNDLES/clip-test-int8 vision"
  "cortex-a72 models/clip-test text"
  "cortex-a72 $BUNDLES/clip-test-int8 text"
  "cortex-a72 models/blip2-test decoder"
  "cortex-a72 $BUNDLES/blip2-test-int8 decoder"
  "cortex-a76 models/clip-test vision"
  "cortex-a76 $BUNDLES/clip-test-int8 vision"
  "cortex-a76 models/clip-test text"
  "cortex-a76 $BUNDLES/clip-test-int8 text"
  "cortex-a76 models/blip2-test decoder"
  "cortex-a76 $BUNDLES/blip2-test-int8 decoder"
)

results=()
failed=0
for c in "${CASES[@]}"; do
  read -r cpu bundle graph <<<"$c"
  per_run=$(count "$cpu" "$bundle" "$graph")
  [ -n "$per_run" ] || { echo "graphs.sh: $c: the run failed or the plugin printed nothing" >&2; exit 1; }
  name="$cpu $(basename "$bundle") $graph"
  results+=("$name $per_run")
  line="$(printf '%-40s %12d instructions per run' "$name" "$per_run")"
  if [ "$MODE" = --check ]; then
    expected=$(awk -v n="$name" '$1" "$2" "$3 == n {print $4}' "$EXPECTED")
    if [ -z "$expected" ]; then
      echo "$line  (no committed figure: run benches/qemu/graphs.sh --write)"
      failed=1
    else
      pct=$(awk -v a="$per_run" -v e="$expected" 'BEGIN {printf "%+.1f", (a - e) * 100 / e}')
      if awk -v p="$pct" -v t="$TOLERANCE_PCT" 'BEGIN {exit !(p > t || p < -t)}'; then
        echo "$line  FAIL: $pct% from the committed $expected (tolerance ±$TOLERANCE_PCT%)"
        failed=1
      else
        echo "$line  ok: $pct% from $expected"
      fi
    fi
  else
    echo "$line"
  fi
done

if [ "$MODE" = --write ]; then
  {
    echo "# Guest instructions per graph run under qemu-aarch64 (benches/qemu/graphs.sh"
    echo "# --write, $(date -u +%F), $(qemu-aarch64 --version | head -1)). CPU, bundle, graph, count."
    printf '%s\n' "${results[@]}"
  } >"$EXPECTED"
  echo "graphs.sh: wrote $EXPECTED"
fi
exit $failed
