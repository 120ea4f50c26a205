#!/usr/bin/env bash
# Times gemma3 F16 -> Q4_K_M and -> Q8_0 with gguf-prune and with llama-quantize, same thread
# count, side by side in one run, and prints the ratio (ours / llama-quantize).
#   scripts/bench-quant.sh [threads] [repeats]
# Builds gguf-prune in release mode; fetches the models and llama.cpp via the setup scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
REPEATS="${2:-3}"
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
bash scripts/fetch-models.sh >&2
bash scripts/build-llama.sh >&2
cargo build --release -q
OURS=target/release/gguf-prune
LQ="$CACHE/llama.cpp-0.3.36/bin/llama-quantize"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/gemma3.F16.gguf"
"$LQ" --allow-requantize "$CACHE/models/gemma-3-270m-q4_k_m.gguf" "$SRC" F16 "$THREADS" >/dev/null 2>&1

# Best of REPEATS wall-clock seconds for a command.
best() {
  local best=""
  for _ in $(seq "$REPEATS"); do
    rm -f "$WORK/out.gguf"
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    local t; t=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  printf '%.3f' "$best"
}

printf '%-8s %10s %16s %8s   (gemma-3-270m F16 source, %s threads, best of %s)\n' \
  type ours_s llama_quantize_s ratio "$THREADS" "$REPEATS"
for TYPE in Q4_K_M Q8_0; do
  a=$(best "$OURS" quantize "$SRC" "$WORK/out.gguf" "$TYPE" -t "$THREADS")
  b=$(best "$LQ" "$SRC" "$WORK/out.gguf" "$TYPE" "$THREADS")
  printf '%-8s %10s %16s %8.2f\n' "$TYPE" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done
