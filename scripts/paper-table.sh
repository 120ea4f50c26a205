#!/usr/bin/env bash
# The ShortGPT claim, measured on the two cached models: perplexity after removing k blocks chosen
# by the tool's default (`--remove k`), one-shot BI, iterative BI, angular distance, the tail
# (the k blocks just before the final block) and random sets (median of 5), for k = 2 4 6 8 on
# SmolLM2-135M and k = 2 3 4 on gemma-3-270m. Each pruned file is scored by llama-perplexity
# (wiki.test.raw, -c 512, --chunks $CHUNKS) and by our `gguf-prune eval` on the same text.
#
# Each model is scored ONCE (`gguf-prune score --remove KMAX --metric iterative --json`, built-in
# calibration text, default settings): its unpruned scores give the BI order and the angular
# distance of every run length, and its iterative pick order gives iterative BI for every
# k <= KMAX (prefixes; see scripts/paper_table.py). The default needs one `--remove k` run per k
# (it compares candidate sets on held-back calibration windows for that k).
# Random sets are drawn from blocks 1..n-2 (never the first or the last block, which the tool
# never removes either) with a fixed seed: Python's random.Random("SEED:k:i"), i = 0..4.
#
# Results are cached in $WORK (one TSV line per measurement), so an interrupted run resumes, and
# the table is re-rendered into $OUT and README.md (between their table markers) after every
# phase; cells not yet measured show "–". Cells read "llama-perplexity PPL / our eval PPL".
#
# Env: WIKI (wiki.test.raw or its directory; default: what scripts/fetch-data.sh finds), CHUNKS (10), EVAL_CHUNKS (our eval's chunks, default $CHUNKS),
#      EVAL_RANDOM (1: also run our eval on the random sets; default 0), THREADS (2), SEED (2024),
#      MODELS ("smollm2 gemma3"; run one per process to use both cores on a loaded machine),
#      WORK (target/paper-table/cCHUNKS-eEVAL_CHUNKS), OUT (docs/paper-table.md),
#      RENDER_ONLY (1: only re-render the table from the cache).
#      Task accuracy (optional): HELLASWAG, WINOGRANDE, MULTIPLE_CHOICE (files in llama-perplexity's
#      --hellaswag / --winogrande / --multiple-choice formats; see the README's "Task accuracy"),
#      TASKS (their --tasks N; default: llama-perplexity's). Each set file is measured by our
#      `eval --hellaswag ...` (llama-perplexity's scoring) and shown in a task table with the
#      share of the unpruned model's accuracy retained; kinds without a file show "not
#      measured". The cache keys on the kind only: use another WORK after changing a task file.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
CHUNKS="${CHUNKS:-10}"
EVAL_CHUNKS="${EVAL_CHUNKS:-$CHUNKS}"
EVAL_RANDOM="${EVAL_RANDOM:-0}"
THREADS="${THREADS:-2}"
SEED="${SEED:-2024}"
MODELS="${MODELS:-smollm2 gemma3}"
WORK="${WORK:-$here/target/paper-table/c$CHUNKS-e$EVAL_CHUNKS}"
OUT="${OUT:-$here/docs/paper-table.md}"
helper="$here/scripts/paper_table.py"
TASKS="${TASKS:-}"
# The task kinds given a file ("kind=path" words), for the measurements and the renderer.
task_specs=""
[ -n "${HELLASWAG:-}" ] && task_specs+=" hellaswag=$HELLASWAG"
[ -n "${WINOGRANDE:-}" ] && task_specs+=" winogrande=$WINOGRANDE"
[ -n "${MULTIPLE_CHOICE:-}" ] && task_specs+=" multiple-choice=$MULTIPLE_CHOICE"
export TASK_KINDS="$(for s in $task_specs; do printf '%s ' "${s%%=*}"; done)"
mkdir -p "$WORK" "$(dirname "$OUT")"

wiki="${WIKI:-}"
[ -n "$wiki" ] || wiki="$(bash "$here/scripts/fetch-data.sh")"
[ -d "$wiki" ] && wiki="$wiki/wiki.test.raw"
[ -f "$wiki" ] || { echo "wiki.test.raw not found (set WIKI)" >&2; exit 1; }

bin="$cache/llama.cpp-0.3.36/bin"
ours="$here/target/release/gguf-prune"
if [ "${RENDER_ONLY:-0}" != 1 ]; then
  bash "$here/scripts/fetch-models.sh" >/dev/null
  bash "$here/scripts/build-llama.sh" >/dev/null
  (cd "$here" && cargo build --release --quiet)
fi

model_path() {
  case "$1" in
    smollm2) echo "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
    gemma3) echo "$cache/models/gemma-3-270m-q4_k_m.gguf" ;;
    *) echo "unknown model $1" >&2; exit 1 ;;
  esac
}
k_list() { case "$1" in smollm2) echo "2 4 6 8" ;; gemma3) echo "2 3 4" ;; esac; }
label() {
  case "$1" in
    smollm2) echo "SmolLM2-135M-Instruct Q4_1 (30 blocks)" ;;
    gemma3) echo "gemma-3-270m Q4_K_M (18 blocks)" ;;
  esac
}
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

render() {
  local specs=() key
  for key in smollm2 gemma3; do
    cat "$WORK/$key.sets.tsv" "$WORK/$key.default.tsv" 2>/dev/null > "$WORK/$key.allsets.tsv" || true
    specs+=("$(label $key)=$WORK/$key.results.tsv,$WORK/$key.allsets.tsv,$(k_list $key)")
  done
  local body="$WORK/table.md"
  python3 "$helper" table "$body" "${specs[@]}" >/dev/null
  {
    echo "<!-- table:begin (written by scripts/paper-table.sh; edit outside the markers) -->"
    echo
    echo "wiki.test.raw, llama-perplexity \`-c 512 --chunks $CHUNKS\`, our \`eval -c 512 --chunks $EVAL_CHUNKS\`$( [ "$EVAL_RANDOM" = 1 ] || echo ' (not run on the random sets)'); random seed $SEED. Cells: llama-perplexity PPL / our eval PPL; – = not measured."
    echo
    cat "$body"
    echo "<!-- table:end -->"
  } > "$WORK/block.md"
  [ -f "$OUT" ] && grep -q '<!-- table:begin' "$OUT" \
    || { echo "# ShortGPT's claim, measured"; echo; cat "$WORK/block.md"; } > "$OUT"
  # The same block goes into $OUT and into the README, wherever their markers are.
  local doc
  for doc in "$OUT" "$here/README.md"; do
    grep -q '<!-- table:begin' "$doc" || continue
    python3 - "$doc" "$WORK/block.md" <<'PY'
import re, sys
doc = open(sys.argv[1]).read()
block = open(sys.argv[2]).read().rstrip("\n")
doc = re.sub(r"<!-- table:begin.*?<!-- table:end -->", lambda _: block, doc, flags=re.S)
open(sys.argv[1], "w").write(doc)
PY
  done
}

if [ "${RENDER_ONLY:-0}" = 1 ]; then render; cat "$WORK/table.md"; exit 0; fi

# have KEY TOOL BLOCKS: already measured?
have() { grep -q -P "^\Q$2\E\t\Q$3\E\t" "$WORK/$1.results.tsv" 2>/dev/null; }
record() { printf '%s\t%s\t%s\n' "$2" "$3" "$4" >> "$WORK/$1.results.tsv"; }

# prune_to KEY BLOCKS FILE: the model without BLOCKS ("" = a copy of the path, no pruning).
prune_to() {
  local key=$1 blocks=$2 file=$3
  if [ -z "$blocks" ]; then ln -sf "$(model_path "$key")" "$file"; return; fi
  "$ours" "$(model_path "$key")" --layers "$blocks" -o "$file" --force >/dev/null 2>"$file.log"
}

llama_ppl() {
  "$bin/llama-perplexity" -m "$1" -f "$wiki" -c 512 --chunks "$CHUNKS" -t "$THREADS" 2>&1 \
    | sed -n 's/.*Final estimate: PPL = \([0-9.eE+-]*\).*/\1/p'
}
ours_ppl() {
  "$ours" eval "$1" --text "$wiki" -c 512 --chunks "$EVAL_CHUNKS" -t "$THREADS" --json 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["ppl"])'
}

# ours_task KIND FILE MODEL: our accuracy (a fraction) on a task file, llama-perplexity's scoring.
ours_task() {
  "$ours" eval "$3" "--$1" "$2" ${TASKS:+--tasks "$TASKS"} -t "$THREADS" --json 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["accuracy"])'
}
task_file() { local s; for s in $task_specs; do [ "${s%%=*}" = "$1" ] && echo "${s#*=}"; done; }

# measure KEY TOOL BLOCKS [FILE]: one cell, cached; FILE if the pruned model already exists.
# TOOL is llama or ours (perplexity), or a task kind (hellaswag, winogrande, multiple-choice).
measure() {
  local key=$1 tool=$2 blocks=$3 file=${4:-}
  have "$key" "$tool" "$blocks" && return 0
  if [ -z "$file" ]; then
    file="$WORK/$key.tmp.gguf"
    rm -f "$file"
    prune_to "$key" "$blocks" "$file" || { log "$key: pruning [$blocks] failed: $(tail -1 "$file.log")"; record "$key" "$tool" "$blocks" nan; return 0; }
  fi
  local t0=$SECONDS ppl
  case "$tool" in
    llama) ppl="$(llama_ppl "$file" || true)" ;;
    ours) ppl="$(ours_ppl "$file" || true)" ;;
    *) ppl="$(ours_task "$tool" "$(task_file "$tool")" "$file" || true)" ;;
  esac
  [ -n "$ppl" ] || ppl=nan
  record "$key" "$tool" "$blocks" "$ppl"
  log "$key $tool [$blocks]: PPL $ppl ($((SECONDS - t0)) s)"
}

set_of() { awk -F'\t' -v m="$2" -v k="$3" '$1 == m && $2 == k { print $3 }' "$WORK/$1.sets.tsv" "$WORK/$1.default.tsv" 2>/dev/null | head -1; }

run_model() {
  local key=$1 model ks kmax k m i
  model="$(model_path "$key")"
  ks="$(k_list "$key")"
  kmax="${ks##* }"
  measure "$key" llama ""
  render

  # One scoring run gives BI, angular and iterative sets.
  if [ ! -s "$WORK/$key.score.json" ]; then
    log "$key: scoring (--remove $kmax --metric iterative)"
    "$ours" score "$model" --remove "$kmax" --metric iterative --json -t "$THREADS" 2>/dev/null > "$WORK/$key.score.json.part"
    mv "$WORK/$key.score.json.part" "$WORK/$key.score.json"
  fi
  python3 "$helper" sets "$WORK/$key.score.json" "$ks" "$SEED" 5 > "$WORK/$key.sets.tsv"

  # The default selection, one run per k; its output file is measured directly.
  for k in $ks; do
    if [ -z "$(set_of "$key" default "$k")" ]; then
      log "$key: default --remove $k"
      local file="$WORK/$key.default$k.gguf"
      "$ours" "$model" --remove "$k" -t "$THREADS" --json -o "$file" --force 2>/dev/null > "$WORK/$key.default$k.json"
      local blocks
      blocks="$(python3 -c 'import json, sys; print(",".join(map(str, sorted(json.load(open(sys.argv[1]))["selection"]["order"]))))' "$WORK/$key.default$k.json")"
      printf 'default\t%s\t%s\n' "$k" "$blocks" >> "$WORK/$key.default.tsv"
      measure "$key" llama "$blocks" "$file"
      rm -f "$file"
      render
    fi
  done
  for m in bi iterative angular tail; do
    for k in $ks; do
      local blocks; blocks="$(set_of "$key" "$m" "$k")"
      [ -n "$blocks" ] && measure "$key" llama "$blocks"
    done
    render
  done
  for k in $ks; do
    for i in 1 2 3 4 5; do measure "$key" llama "$(set_of "$key" "random$i" "$k")"; done
    render
  done
  measure "$key" ours ""
  for k in $ks; do
    for m in default bi iterative angular tail; do
      local blocks; blocks="$(set_of "$key" "$m" "$k")"
      [ -n "$blocks" ] && measure "$key" ours "$blocks"
    done
    render
  done
  if [ "$EVAL_RANDOM" = 1 ]; then
    for k in $ks; do
      for i in 1 2 3 4 5; do measure "$key" ours "$(set_of "$key" "random$i" "$k")"; done
    done
  fi
  # Task accuracy of the unpruned model and of every non-random set, per kind given a file.
  local kind
  for kind in $TASK_KINDS; do
    measure "$key" "$kind" ""
    for k in $ks; do
      for m in default bi iterative angular tail; do
        local blocks; blocks="$(set_of "$key" "$m" "$k")"
        [ -n "$blocks" ] && measure "$key" "$kind" "$blocks"
      done
    done
    render
  done
  rm -f "$WORK/$key.tmp.gguf" "$WORK/$key.tmp.gguf.log"
  render
}

for key in $MODELS; do run_model "$key"; done
cat "$WORK/table.md"
