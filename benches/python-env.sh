# Sourced by the benchmark scripts: the Python side of the benchmarks
# (models/export.py, the onnxruntime peer scripts) in a venv of its own,
# target/bench-venv, made on first use and again when models/requirements.txt
# changes; its bin/ goes first on PATH, so `python3` below is the venv's.
# OpenAI's tokenizer (openai-clip, for the CLIP vocabulary) goes in with --no-deps:
# its other requirements (torchvision) are not needed.
bench_python_env() {
  local venv=target/bench-venv want
  want="$(sha256sum models/requirements.txt | cut -c1-16) openai-clip==1.0.1"
  if [ "$(cat "$venv/.owlet-requirements" 2>/dev/null)" != "$want" ]; then
    echo "benches: installing models/requirements.txt into $venv (torch and transformers: a few GB, once)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r models/requirements.txt
    "$venv/bin/pip" install -q --no-deps openai-clip==1.0.1
    echo "$want" > "$venv/.owlet-requirements"
  fi
  export PATH="$PWD/$venv/bin:$PATH"
}
