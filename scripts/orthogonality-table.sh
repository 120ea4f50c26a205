#!/usr/bin/env bash
# Layer removal and quantization compose: the analogue of ShortGPT's Table 5 for the two real
# models, as one markdown table on stdout (progress on stderr).
#
#   scripts/orthogonality-table.sh [threads]
#
# For each model, from an F16 source made with llama-quantize (SmolLM2's F16 is an upcast of the
# published Q4_1 file, gemma3's of its Q4_K_M: the "source" is that F16, and every KL divergence
# is measured against it):
#   1. `gguf-prune SRC --remove K --imatrix-out IM`: the default selection picks K blocks
#      (K = 4 for SmolLM2, 2 for gemma3) and, in the same calibration pass (built-in text), the
#      importance matrix IM is collected. That F16 output is the "pruned only" row; the chosen
#      layers are reused (--layers) for every other pruned row.
#   2. quantized only: llama-quantize SRC Q4_K_M, without and with `--imatrix IM`.
#   3. prune-then-quantize: `gguf-prune SRC --layers L --quantize Q4_K_M`, with --no-imatrix and
#      with --imatrix IM (the mix chosen at the pruned depth, IM renumbered).
#   4. quantize-then-prune: `gguf-prune Q --layers L` on each file of step 2.
# Perplexity and KL divergence by llama-perplexity on wiki.test.raw, -c 512, 10 chunks, the KL
# base written by llama-perplexity from the F16 source. Needs python3 (to read --json).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
bash scripts/fetch-models.sh >&2
bash scripts/build-llama.sh >&2
cargo build --release -q
OURS="$PWD/target/release/gguf-prune"
BIN="$CACHE/llama.cpp-0.3.36/bin"
TEXT="$(bash scripts/fetch-data.sh)/wiki.test.raw"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CHUNKS=10
CTX=512
TYPE=Q4_K_M

# ppl_kl FILE BASE -> "PPL KL top1%"
ppl_kl() {
  local log="$WORK/ppl.log"
  "$BIN/llama-perplexity" -m "$1" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" \
    --kl-divergence-base "$2" --kl-divergence >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  local ppl kl top
  ppl=$(grep -m1 '^Mean PPL(Q)' "$log" | awk -F: '{print $2}' | awk '{print $1}')
  kl=$(grep -m1 '^Mean    KLD' "$log" | awk -F: '{print $2}' | awk '{print $1}')
  top=$(grep -m1 '^Same top p' "$log" | awk -F: '{print $2}' | awk '{print $1}')
  echo "$ppl $kl $top"
}

mib() { echo "$(( $(stat -c %s "$1") / 1048576 ))"; }

row() { # model case imatrix file base
  local r; r=$(ppl_kl "$4" "$5")
  set -- "$1" "$2" "$3" "$4" $r
  printf '| %s | %s | %s | %s | %.2f | %.4f | %.2f |\n' "$1" "$2" "$3" "$(mib "$4")" "$5" "$6" "$7"
}

echo "| model | case | imatrix | MiB | PPL | KL vs F16 | same top-1 % |"
echo "|---|---|---|---:|---:|---:|---:|"
for spec in "SmolLM2-135M:SmolLM2-135M-Instruct.Q4_1.gguf:4" "gemma-3-270m:gemma-3-270m-q4_k_m.gguf:2"; do
  IFS=: read -r NAME FILE K <<<"$spec"
  echo "== $NAME" >&2
  SRC="$WORK/$NAME.F16.gguf"
  "$BIN/llama-quantize" --allow-requantize "$CACHE/models/$FILE" "$SRC" F16 "$THREADS" >/dev/null 2>&1
  BASE="$WORK/$NAME.kld"
  "$BIN/llama-perplexity" -m "$SRC" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" \
    --kl-divergence-base "$BASE" >"$WORK/base.log" 2>&1 || { cat "$WORK/base.log" >&2; exit 1; }
  IM="$WORK/$NAME.imatrix.gguf"
  "$OURS" "$SRC" --remove "$K" --imatrix-out "$IM" -t "$THREADS" -o "$WORK/pruned.F16.gguf" --json \
    >"$WORK/select.json"
  LAYERS=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["removed"])))' "$WORK/select.json")
  echo "   removing $LAYERS" >&2
  "$BIN/llama-quantize" "$SRC" "$WORK/q.gguf" "$TYPE" "$THREADS" >/dev/null 2>&1
  "$BIN/llama-quantize" --imatrix "$IM" "$SRC" "$WORK/qi.gguf" "$TYPE" "$THREADS" >/dev/null 2>&1
  "$OURS" "$SRC" --layers "$LAYERS" --quantize "$TYPE" --no-imatrix -o "$WORK/pq.gguf" >/dev/null 2>&1
  "$OURS" "$SRC" --layers "$LAYERS" --quantize "$TYPE" --imatrix "$IM" -o "$WORK/pqi.gguf" >/dev/null 2>&1
  "$OURS" "$WORK/q.gguf" --layers "$LAYERS" -o "$WORK/qp.gguf" >/dev/null 2>&1
  "$OURS" "$WORK/qi.gguf" --layers "$LAYERS" -o "$WORK/qpi.gguf" >/dev/null 2>&1
  row "$NAME" "source (F16)" "-" "$SRC" "$BASE"
  row "$NAME" "quantized only ($TYPE)" "no" "$WORK/q.gguf" "$BASE"
  row "$NAME" "quantized only ($TYPE)" "ours" "$WORK/qi.gguf" "$BASE"
  row "$NAME" "pruned only (-$K: $LAYERS)" "-" "$WORK/pruned.F16.gguf" "$BASE"
  row "$NAME" "prune, then quantize" "no" "$WORK/pq.gguf" "$BASE"
  row "$NAME" "prune, then quantize" "ours" "$WORK/pqi.gguf" "$BASE"
  row "$NAME" "quantize, then prune" "no" "$WORK/qp.gguf" "$BASE"
  row "$NAME" "quantize, then prune" "ours" "$WORK/qpi.gguf" "$BASE"
  rm -f "$WORK"/*.gguf "$BASE"
done
