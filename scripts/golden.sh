#!/usr/bin/env bash
# Golden outputs: run one gguf-prune binary over a fixed set of jobs on both real models and
# record the sha256 of every file it writes and every JSON report with timings removed, so that a
# restructuring can show its outputs are identical byte for byte.
#
#   bash scripts/golden.sh record BIN DIR     # run BIN, write DIR/sums.txt and DIR/*.json
#   bash scripts/golden.sh compare DIR1 DIR2  # list every item that differs; exit 1 if any does
#
# The jobs (per model): --layers prune, --remove 4, --remove 4 --heal, --layers with --quantize
# Q4_K_M, quantize to Q8_0, Q4_K_M and Q6_K, imatrix, score --json, eval --json (2 chunks, with
# --ref), inspect --json. Calibration uses the built-in text with GOLDEN_TOKENS tokens (default
# 2048, to keep the run short); evaluation uses the project's tests/data/eval.txt. Threads: 2.
# Models come from scripts/fetch-models.sh (cached).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
TOKENS="${GOLDEN_TOKENS:-2048}"
TEXT="$here/../tests/data/eval.txt"

# Drops timing fields ("seconds", "*_seconds") from a JSON document and writes the run's
# scratch folder as "WORK", keys kept in order.
strip_times() {
  python3 -c '
import json, sys
work = sys.argv[1]
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not (k == "seconds" or k.endswith("_seconds"))}
    if isinstance(v, list):
        return [strip(x) for x in v]
    if isinstance(v, str):
        return v.replace(work, "WORK")
    return v
json.dump(strip(json.load(sys.stdin)), sys.stdout, indent=1)
print()' "${work:-/nonexistent}"
}

record() {
  local bin="$1" dir="$2"
  bash "$here/fetch-models.sh"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  local smol="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  local gemma="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
  local calib=(--max-tokens "$TOKENS" -t 2)
  for name in smol gemma; do
    local m layers
    if [ "$name" = smol ]; then m="$smol"; layers=20-23; else m="$gemma"; layers=8,9; fi
    step() { echo "golden: $name $*" >&2; }
    step "--layers $layers"
    "$bin" "$m" --layers "$layers" -o "$work/$name.layers.gguf" --json | strip_times > "$dir/$name.layers.json"
    step "--remove 4"
    "$bin" "$m" --remove 4 "${calib[@]}" -o "$work/$name.remove4.gguf" --json | strip_times > "$dir/$name.remove4.json"
    step "--remove 4 --heal"
    "$bin" "$m" --remove 4 --heal --heal-tokens "$TOKENS" "${calib[@]}" -o "$work/$name.remove4-heal.gguf" --json \
      | strip_times > "$dir/$name.remove4-heal.json"
    step "--layers $layers --quantize Q4_K_M"
    "$bin" "$m" --layers "$layers" --quantize Q4_K_M "${calib[@]}" -o "$work/$name.layers-q4km.gguf" \
      --imatrix-out "$work/$name.layers-q4km.imatrix.gguf" --json | strip_times > "$dir/$name.layers-q4km.json"
    for t in Q8_0 Q4_K_M Q6_K; do
      step "quantize $t"
      "$bin" quantize "$m" "$work/$name.quant-$t.gguf" "$t" -t 2 > /dev/null
    done
    step "imatrix"
    "$bin" imatrix "$m" -o "$work/$name.imatrix.gguf" "${calib[@]}" > /dev/null
    step "score --json"
    "$bin" score "$m" --json "${calib[@]}" | strip_times > "$dir/$name.score.json"
    step "eval --json --ref"
    "$bin" eval "$work/$name.layers.gguf" --ref "$m" --text "$TEXT" -c 512 --chunks 2 -t 2 --json \
      | strip_times > "$dir/$name.eval.json"
    step "inspect --json"
    "$bin" inspect "$m" --json | strip_times > "$dir/$name.inspect.json"
  done
  (cd "$work" && sha256sum -- *.gguf) > "$dir/sums.txt"
  echo "golden: recorded $(wc -l < "$dir/sums.txt") files and $(ls "$dir"/*.json | wc -l) reports in $dir" >&2
}

compare() {
  local a="$1" b="$2" bad=0
  if ! diff -u "$a/sums.txt" "$b/sums.txt"; then bad=1; fi
  for f in "$a"/*.json; do
    local n; n="$(basename "$f")"
    if ! diff -q "$f" "$b/$n" > /dev/null 2>&1; then
      echo "differs: $n"; diff -u "$f" "$b/$n" | head -40 || true; bad=1
    fi
  done
  if [ "$bad" = 0 ]; then echo "golden: identical ($(wc -l < "$a/sums.txt") files, $(ls "$a"/*.json | wc -l) reports)"; fi
  return "$bad"
}

case "${1:-}" in
  record) [ $# = 3 ] || { echo "usage: golden.sh record BIN DIR" >&2; exit 2; }; record "$2" "$3" ;;
  compare) [ $# = 3 ] || { echo "usage: golden.sh compare DIR1 DIR2" >&2; exit 2; }; compare "$2" "$3" ;;
  *) echo "usage: golden.sh record BIN DIR | compare DIR1 DIR2" >&2; exit 2 ;;
esac
