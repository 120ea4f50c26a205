#!/usr/bin/env bash
# The README's healing table: perplexity of the unpruned, pruned and healed (--heal) files, by
# llama-perplexity (wiki.test.raw, -c 512, 10 chunks), for one-shot BI (--metric bi) and the
# default selection, at k = 4 and 8 on SmolLM2 and k = 2 and 4 on gemma3. Layers are chosen on
# the built-in calibration text; healing fits on 10 windows x 512 tokens of wiki.valid.raw.
# Also the issue's reference sets: SmolLM2 {3,12-17,25} and gemma3 {8,9}.
#
# Usage: scripts/heal-table.sh [OUT.md]   (prints the table; also writes OUT.md if given)
# Env: THREADS (default 2), GGUF_PRUNE_CACHE (default ~/.cache/gguf-prune), CHUNKS (default 10)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
threads="${THREADS:-2}"
chunks="${CHUNKS:-10}"
bash "$here/scripts/fetch-models.sh" >/dev/null
bash "$here/scripts/build-llama.sh" >/dev/null
ppl_bin="$cache/llama.cpp-0.3.36/bin/llama-perplexity"
data="$(bash "$here/scripts/fetch-data.sh")"
(cd "$here" && cargo build --release --quiet)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$here/target/release/gguf-prune" "$tmp/gguf-prune"
ours="$tmp/gguf-prune"
smol="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
gemma="$cache/models/gemma-3-270m-q4_k_m.gguf"

ppl() {
  "$ppl_bin" -m "$1" -f "$data/wiki.test.raw" -c 512 --chunks "$chunks" -t "$threads" 2>&1 \
    | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}

out="| model | selection | k | removed | unpruned | pruned | healed | runs healed |
|---|---|---|---|---|---|---|---|"
declare -A base
row() { # model_path label selection k [metric args...]
  local model="$1" label="$2" sel="$3" k="$4"; shift 4
  local name="$tmp/$label-$sel-$k"
  local layers
  if [ "$sel" = "set" ]; then
    layers="$1"
  else
    "$ours" "$model" --remove "$k" "$@" -t "$threads" -o "$name.pruned.gguf" --force --json >"$name.json"
    layers="$(jq -r '.removed | map(tostring) | join(",")' "$name.json")"
    rm -f "$name.pruned.gguf"
  fi
  "$ours" "$model" --layers "$layers" -o "$name.pruned.gguf" --force --json >/dev/null
  "$ours" "$model" --layers "$layers" --heal --calib "$data/wiki.valid.raw" -t "$threads" \
    -o "$name.healed.gguf" --force --json >"$name.heal.json"
  local healed
  healed="$(jq -r '[.heal.runs[] | select(.healed)] | length' "$name.heal.json")/$(jq -r '.heal.runs | length' "$name.heal.json")"
  [ -n "${base[$label]:-}" ] || base[$label]="$(ppl "$model")"
  local p h
  p="$(ppl "$name.pruned.gguf")"
  h="$(ppl "$name.healed.gguf")"
  rm -f "$name.pruned.gguf" "$name.healed.gguf"
  out+="
| $label | $sel | $k | $layers | ${base[$label]} | $p | $h | $healed |"
  echo "$label $sel k=$k [$layers]: unpruned ${base[$label]}, pruned $p, healed $h ($healed runs)" >&2
}

row "$smol" SmolLM2 set 8 "3,12,13,14,15,16,17,25"
row "$gemma" gemma3 set 2 "8,9"
for k in 4 8; do
  row "$smol" SmolLM2 bi "$k" --metric bi
  row "$smol" SmolLM2 default "$k"
done
for k in 2 4; do
  row "$gemma" gemma3 bi "$k" --metric bi
  row "$gemma" gemma3 default "$k"
done
echo "$out"
[ -z "${1:-}" ] || echo "$out" >"$1"
