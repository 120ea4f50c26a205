#!/usr/bin/env bash
# Times `gguf-prune score` against `llama-imatrix` on the same model, text, context and threads:
# both run 10 windows of 512 tokens of wiki.valid.raw (5120 tokens). Prints wall time and peak
# memory (/usr/bin/time -v) side by side, and our/llama ratios. Goals: <= 1.0x time, <= 0.5x
# memory on gemma3. Not a test: timings on a shared machine vary; run it on a quiet one.
#
# Usage: scripts/bench-score.sh [MODEL.gguf ...]   (default: both cached test models)
# Env: THREADS (default 2), GGUF_PRUNE_CACHE (default ~/.cache/gguf-prune)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
threads="${THREADS:-2}"
bash "$here/scripts/fetch-models.sh" >/dev/null
bash "$here/scripts/build-llama.sh" >/dev/null
bin="$cache/llama.cpp-0.3.36/bin"
text="$(bash "$here/scripts/fetch-data.sh")/wiki.valid.raw"
(cd "$here" && cargo build --release --quiet)
ours="$here/target/release/gguf-prune"

if [ "$#" -eq 0 ]; then
  set -- "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/models/gemma-3-270m-q4_k_m.gguf"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# measure NAME CMD...: runs CMD under /usr/bin/time -v; prints "seconds kilobytes".
measure() {
  local log="$tmp/$1.time"; shift
  /usr/bin/time -v "$@" >"$tmp/out" 2>"$log" || { cat "$log" >&2; exit 1; }
  local wall rss
  wall="$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}' | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')"
  rss="$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')"
  echo "$wall $rss"
}

printf '%-36s %10s %10s %10s %10s %7s %7s\n' model "ours s" "imatrix s" "ours MiB" "imat MiB" time mem
for model in "$@"; do
  read -r ot om < <(measure ours "$ours" score "$model" --calib "$text" --ctx 512 --max-tokens 5120 -t "$threads" --json)
  read -r lt lm < <(measure imatrix "$bin/llama-imatrix" -m "$model" -f "$text" -c 512 --chunks 10 -t "$threads" -o "$tmp/imatrix.gguf")
  awk -v m="$(basename "$model")" -v ot="$ot" -v lt="$lt" -v om="$om" -v lm="$lm" 'BEGIN {
    printf "%-36s %10.2f %10.2f %10.1f %10.1f %6.2fx %6.2fx\n", m, ot, lt, om / 1024, lm / 1024, ot / lt, om / lm }'
done
