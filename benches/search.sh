#!/usr/bin/env bash
# Index search: owlet (f32, f16, int8) against a numpy brute force over 1M 512-d
# vectors, one thread each, same machine, one run. Needs python3 with numpy and
# ~4 GB of free memory and disk (in target/bench-search, removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p owlet-runtime --bench search -- --n "${N:-1000000}" --queries "${QUERIES:-20}"
