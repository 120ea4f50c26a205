#!/usr/bin/env bash
# The scale benchmark: gguf-prune against llama.cpp on a synthetic GGUF of a real model shape
# (real tensor shapes and Q4_K_M types, random weights, SmolLM2's tokenizer padded to the
# shape's vocabulary; see examples/synth_model.rs). Only time, memory and bytes read mean
# anything on it. Side by side, same threads and tokens:
#   score     vs llama-imatrix
#   eval      vs llama-perplexity
#   quantize  vs llama-quantize --allow-requantize
#   --layers  vs cp and llama-quantize --prune-layers ... COPY
# For each run: wall seconds, peak RSS (/usr/bin/time -v), the peaks of RssAnon (heap) and
# RssFile (mapped file pages) sampled from /proc/PID/status every 0.2 s, bytes read from storage
# (read_bytes: time's "File system inputs" x 512, mmap faults included) and rchar (bytes through
# read(2)-like calls, last sample). Before each run the model's pages are dropped from the page
# cache (this file only, with dd iflag=nocache), so every tool starts cold; COLD=0 keeps them.
# Not a test: run it on a quiet machine for figures that mean something.
#
# Usage: scripts/bench-scale.sh SHAPE [TOKENS]   (SHAPE: llama3-8b, qwen2.5-14b, llama3-70b;
#                                                 TOKENS default 512)
# Env: THREADS (2), CTX (min(512, TOKENS)), TYPE (synthetic file type, Q4_K_M), QTYPE (quantize
#      target, Q5_K_M: a target equal to the source type would only copy, in both tools),
#      LAYERS (to remove; default three blocks at 2/3 depth), TASKS (which rows, default
#      "score eval quantize layers"), COLD (1), GGUF_PRUNE_CACHE (~/.cache/gguf-prune); the
#      file is cached in $GGUF_PRUNE_CACHE/synthetic.
set -euo pipefail

shape="${1:?usage: scripts/bench-scale.sh SHAPE [TOKENS]}"
tokens="${2:-512}"
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
threads="${THREADS:-2}"
ctx="${CTX:-$((tokens < 512 ? tokens : 512))}"
chunks=$((tokens / ctx))
type="${TYPE:-Q4_K_M}"
qtype="${QTYPE:-Q5_K_M}"
tasks="${TASKS:-score eval quantize layers}"
cold="${COLD:-1}"
bash "$here/scripts/fetch-models.sh" >/dev/null
bash "$here/scripts/build-llama.sh" >/dev/null
bin="$cache/llama.cpp-0.3.36/bin"
text="$(bash "$here/scripts/fetch-data.sh")/wiki.valid.raw"
(cd "$here" && cargo build --release --quiet && cargo build --release --quiet --example synth_model)
ours="$here/target/release/gguf-prune"

model="$cache/synthetic/$shape.$type.gguf"
if [ ! -f "$model" ]; then
  mkdir -p "$cache/synthetic"
  "$here/target/release/examples/synth_model" --shape "$shape" --type "$type" -o "$model"
fi
n_blocks="$("$ours" inspect "$model" | awk '/ blocks, / { print $1; exit }')"
layers="${LAYERS:-$((n_blocks * 2 / 3)),$((n_blocks * 2 / 3 + 1)),$((n_blocks * 2 / 3 + 2))}"

# Outputs as large as the model go beside it, not to a small /tmp.
tmp="$(mktemp -d "$cache/synthetic/bench.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# sample PID: until PID exits, prints its peak RssAnon and RssFile (KiB) and last rchar (bytes).
sample() {
  local pid="$1" anon=0 file=0 rchar=0 k v
  while [ -r "/proc/$pid/status" ]; do
    while read -r k v _; do
      case "$k" in
        RssAnon:) if [ "$v" -gt "$anon" ]; then anon="$v"; fi ;;
        RssFile:) if [ "$v" -gt "$file" ]; then file="$v"; fi ;;
      esac
    done <"/proc/$pid/status" 2>/dev/null || true
    while read -r k v; do
      if [ "$k" = "rchar:" ]; then rchar="$v"; fi
    done <"/proc/$pid/io" 2>/dev/null || true
    sleep 0.2
  done
  echo "$anon $file $rchar"
}

# measure CMD...: runs CMD cold under /usr/bin/time -v with a sampler; prints
# "seconds maxrss_kib anon_kib file_kib read_bytes rchar". Outputs in $tmp are removed after.
measure() {
  if [ "$cold" = 1 ]; then dd if="$model" iflag=nocache count=0 status=none; fi
  /usr/bin/time -v "$@" >"$tmp/stdout" 2>"$tmp/time.log" &
  local timer=$! child=""
  while [ -z "$child" ] && kill -0 "$timer" 2>/dev/null; do
    child="$(pgrep -P "$timer" | head -n1 || true)"
    [ -n "$child" ] || sleep 0.05
  done
  local peaks="0 0 0"
  if [ -n "$child" ]; then peaks="$(sample "$child")"; fi
  wait "$timer" || { tail -n 40 "$tmp/time.log" >&2; echo "bench-scale: failed: $*" >&2; exit 1; }
  rm -f "$tmp"/out*.gguf "$tmp"/imatrix.gguf
  local log="$tmp/time.log" wall rss inputs
  wall="$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}' | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')"
  rss="$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')"
  inputs="$(grep 'File system inputs' "$log" | awk '{print $NF}')"
  echo "$wall $rss $peaks $((inputs * 512))"
}

# row TASK TOOL CMD...: measures CMD and prints one line; the first row of a task is the
# reference its later rows' ratios are taken against.
ref_task="" ref_wall="" ref_rss=""
row() {
  local task="$1" tool="$2"; shift 2
  local wall rss anon file rchar read
  read -r wall rss anon file rchar read < <(measure "$@")
  if [ "$task" != "$ref_task" ]; then ref_task="$task" ref_wall="$wall" ref_rss="$rss"; fi
  awk -v t="$task" -v o="$tool" -v w="$wall" -v r="$rss" -v a="$anon" -v f="$file" \
      -v rb="$read" -v rc="$rchar" -v rw="$ref_wall" -v rr="$ref_rss" 'BEGIN {
    printf "%-9s %-22s %9.1f %9.0f %9.0f %9.0f %8.2f %8.2f %7.2fx %7.2fx\n",
      t, o, w, r / 1024, a / 1024, f / 1024, rb / 2^30, rc / 2^30, w / rw, r / rr }'
}

size="$(stat -c %s "$model")"
printf '%s: %s, %.2f GiB, %s blocks; %s tokens (ctx %s x %s), %s threads, %s start\n' \
  "$shape" "$type" "$(echo "$size / 2^30" | bc -l)" "$n_blocks" "$tokens" "$ctx" "$chunks" \
  "$threads" "$([ "$cold" = 1 ] && echo cold || echo warm)"
printf '%-9s %-22s %9s %9s %9s %9s %8s %8s %8s %8s\n' task tool seconds "RSS MiB" \
  "anon MiB" "file MiB" "read GiB" "rchar GiB" time RSS
want() { [[ " $tasks " == *" $1 "* ]]; }
if want score; then
  row score llama-imatrix "$bin/llama-imatrix" -m "$model" -f "$text" -c "$ctx" \
    --chunks "$chunks" -t "$threads" -o "$tmp/imatrix.gguf"
  row score "gguf-prune score" "$ours" score "$model" --calib "$text" --ctx "$ctx" \
    --max-tokens "$tokens" -t "$threads" --json
fi
if want eval; then
  row eval llama-perplexity "$bin/llama-perplexity" -m "$model" -f "$text" -c "$ctx" -b "$ctx" \
    --chunks "$chunks" -t "$threads"
  row eval "gguf-prune eval" "$ours" eval "$model" --text "$text" -c "$ctx" --chunks "$chunks" \
    -t "$threads" --json
fi
if want quantize; then
  row quantize "llama-quantize $qtype" "$bin/llama-quantize" --allow-requantize "$model" \
    "$tmp/out.gguf" "$qtype" "$threads"
  row quantize "gguf-prune quantize" "$ours" quantize "$model" "$tmp/out.gguf" "$qtype" \
    -t "$threads"
fi
if want layers; then
  row layers cp cp "$model" "$tmp/out.gguf"
  row layers "llama-quantize COPY" "$bin/llama-quantize" --allow-requantize \
    --prune-layers "$layers" "$model" "$tmp/out.gguf" COPY "$threads"
  row layers "gguf-prune --layers" "$ours" "$model" --layers "$layers" -o "$tmp/out.gguf"
fi
echo "ratios: against the first row of each task; layers removed: $layers"
