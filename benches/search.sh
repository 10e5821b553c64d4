#!/usr/bin/env bash
# Search over the frame history: owlet's history.db (f32, f16, int8), the
# entries.log index it replaced and a numpy brute force over the same 1M 512-d
# vectors, one thread each, same machine, one run. Needs python3 (numpy goes in a venv) and
# ~8 GB of free memory and disk (in target/bench-search, removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
# numpy in a venv of its own (target/bench-venv), made on first use.
venv=target/bench-venv
if ! "$venv/bin/python3" -c "import numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "numpy>=2,<3"
fi
PATH="$PWD/$venv/bin:$PATH" cargo bench -p owlet-history --bench search -- --n "${N:-1000000}" --queries "${QUERIES:-20}"
