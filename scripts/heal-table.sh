#!/usr/bin/env bash
# The README's healing table: perplexity of the unpruned, pruned and healed (--heal METHOD)
# files, by llama-perplexity (wiki.test.raw, -c 512, 10 chunks), for every healing method, with
# in-domain calibration (--calib wiki.valid.raw, 10 windows x 512 tokens) and with the built-in
# text (no --calib). Rows: the issue's reference sets (SmolLM2 {3,12-17,25}, gemma3 {8,9}) and,
# unless SETS=ref, one-shot BI (--metric bi) and the default selection at k = 4 and 8 on SmolLM2
# and k = 2 and 4 on gemma3 (layers chosen on the built-in text). Identical files are measured
# once (by hash): auto's file is often one of the single methods'.
#
# Usage: scripts/heal-table.sh [OUT.md]   (prints the table; also writes OUT.md if given)
# Env: THREADS (default 2), GGUF_PRUNE_CACHE (default ~/.cache/gguf-prune), CHUNKS (default 10),
#      METHODS (default "auto lstsq cosine patch comp"), CALIBS (default "valid builtin"),
#      SETS (default "all"; "ref": the reference sets only), MODELS (default "SmolLM2 gemma3")
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
threads="${THREADS:-2}"
chunks="${CHUNKS:-10}"
methods="${METHODS:-auto lstsq cosine patch comp}"
calibs="${CALIBS:-valid builtin}"
sets="${SETS:-all}"
models="${MODELS:-SmolLM2 gemma3}"
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

declare -A measured
ppl() { # file -> perplexity, measured once per distinct file
  local sum
  sum="$(sha256sum "$1" | cut -c1-64)"
  if [ -z "${measured[$sum]:-}" ]; then
    measured[$sum]="$("$ppl_bin" -m "$1" -f "$data/wiki.test.raw" -c 512 --chunks "$chunks" -t "$threads" 2>&1 \
      | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')"
  fi
  echo "${measured[$sum]}"
}

out="| model | selection | k | removed | calibration | method | unpruned | pruned | healed | runs healed | methods written | pass s | fit s |
|---|---|---|---|---|---|---|---|---|---|---|---|---|"
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
  fi
  "$ours" "$model" --layers "$layers" -o "$name.pruned.gguf" --force --json >/dev/null
  [ -n "${base[$label]:-}" ] || base[$label]="$(ppl "$model")"
  local p
  p="$(ppl "$name.pruned.gguf")"
  rm -f "$name.pruned.gguf"
  for calib in $calibs; do
    local calib_args=()
    [ "$calib" = "builtin" ] || calib_args=(--calib "$data/wiki.$calib.raw")
    for method in $methods; do
      local h healed written times
      "$ours" "$model" --layers "$layers" --heal "$method" "${calib_args[@]}" -t "$threads" \
        -o "$name.healed.gguf" --force --json >"$name.heal.json"
      healed="$(jq -r '[.heal.runs[] | select(.healed)] | length' "$name.heal.json")/$(jq -r '.heal.runs | length' "$name.heal.json")"
      written="$(jq -r '[.heal.runs[] | if .healed then .method else "-" end] | join(",")' "$name.heal.json")"
      times="$(jq -r '"\(.heal.pass_seconds | floor) | \(.heal.fit_seconds | floor)"' "$name.heal.json")"
      h="$(ppl "$name.healed.gguf")"
      rm -f "$name.healed.gguf"
      out+="
| $label | $sel | $k | $layers | $calib | $method | ${base[$label]} | $p | $h | $healed | $written | $times |"
      echo "$label $sel k=$k [$layers] $calib $method: unpruned ${base[$label]}, pruned $p, healed $h ($healed runs: $written; pass/fit s: $times)" >&2
    done
  done
}

for m in $models; do
  case "$m" in
    SmolLM2) row "$smol" SmolLM2 set 8 "3,12,13,14,15,16,17,25" ;;
    gemma3) row "$gemma" gemma3 set 2 "8,9" ;;
  esac
done
if [ "$sets" != "ref" ]; then
  for m in $models; do
    case "$m" in
      SmolLM2) ks="4 8"; path="$smol" ;;
      gemma3) ks="2 4"; path="$gemma" ;;
    esac
    for k in $ks; do
      row "$path" "$m" bi "$k" --metric bi
      row "$path" "$m" default "$k"
    done
  done
fi
echo "$out"
[ -z "${1:-}" ] || echo "$out" >"$1"
