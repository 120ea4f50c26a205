#!/usr/bin/env bash
# Times `gguf-prune MODEL --layers L -o OUT` against `llama-quantize --prune-layers L MODEL OUT
# COPY` and `cp MODEL OUT`, side by side in one run, on both real models (SmolLM2 without
# layers 20-23, gemma3 without 8,9), and measures each command's peak RSS.
#
#   scripts/bench-prune.sh            # RUNS=10 timed runs each, after 2 warm-up runs
#   RUNS=30 scripts/bench-prune.sh
#
# Prints a table: mean wall time (hyperfine), ratios ours / llama-quantize and ours / cp, and
# peak RSS (GNU time's "maximum resident set size", the largest of 3 runs; it counts pages of
# memory-mapped inputs that were touched, as the kernel does). Goal: no slower than
# llama-quantize on both models (ratio <= 1.0), peak RSS under 64 MiB. cp is the floor: it
# copies the whole file in the kernel, while gguf-prune also reads every output byte back and
# compares it with its source before putting the file in place. Outputs go to a temporary folder on the same disk as $BENCH_DIR (default
# $TMPDIR or /tmp) and are removed at the end. Installs hyperfine and GNU time from Debian if
# they are missing. Numbers depend on the page cache and on other load: compare within a run.
set -euo pipefail

RUNS="${RUNS:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"

need=()
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

bash "$ROOT/scripts/fetch-models.sh" >&2
bash "$ROOT/scripts/build-llama.sh" >&2
(cd "$ROOT" && cargo build --release --quiet --bin gguf-prune)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OURS="$TARGET_DIR/release/gguf-prune"
LQ="$CACHE/llama.cpp-0.3.36/bin/llama-quantize"

WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/gguf-prune-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# peak_rss_kib CMD...: the largest maximum RSS of 3 runs, in KiB.
peak_rss_kib() {
  local best=0 kib
  for _ in 1 2 3; do
    rm -f "$WORK/out.gguf"
    /usr/bin/time -f '%M' -o "$WORK/rss" "$@" >/dev/null 2>&1
    kib="$(tail -n1 "$WORK/rss")"
    [ "$kib" -gt "$best" ] && best="$kib"
  done
  echo "$best"
}

results="$WORK/results.tsv"
: >"$results"

bench() {
  local name="$1" model="$2" layers="$3"
  local out="$WORK/out.gguf"
  echo "== $name: removing layers $layers from $(basename "$model") ($(du -h "$model" | cut -f1))" >&2
  hyperfine -N --style basic --warmup 2 --runs "$RUNS" \
    --prepare "rm -f $out" \
    --export-json "$WORK/$name.json" \
    -n gguf-prune "$OURS $model --layers $layers -o $out" \
    -n gguf-prune-no-verify "$OURS $model --layers $layers -o $out --no-verify" \
    -n llama-quantize "$LQ --prune-layers $layers $model $out COPY" \
    -n cp "cp $model $out" >&2
  local rss_ours rss_lq rss_cp
  rss_ours="$(peak_rss_kib "$OURS" "$model" --layers "$layers" -o "$out")"
  rss_lq="$(peak_rss_kib "$LQ" --prune-layers "$layers" "$model" "$out" COPY)"
  rss_cp="$(peak_rss_kib cp "$model" "$out")"
  python3 - "$WORK/$name.json" "$name" "$rss_ours" "$rss_lq" "$rss_cp" >>"$results" <<'EOF'
import json, sys
path, name, rss_ours, rss_lq, rss_cp = sys.argv[1:]
runs = {r["command"]: r for r in json.load(open(path))["results"]}
def m(c): return runs[c]["mean"]
def s(c): return runs[c]["stddev"] or 0.0
print("\t".join(str(x) for x in [
    name, m("gguf-prune"), s("gguf-prune"), m("llama-quantize"), s("llama-quantize"),
    m("cp"), s("cp"), rss_ours, rss_lq, rss_cp, m("gguf-prune-no-verify")]))
EOF
}

bench smollm2 "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" 20,21,22,23
bench gemma3 "$CACHE/models/gemma-3-270m-q4_k_m.gguf" 8,9

python3 - "$results" "$RUNS" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"\nmean wall time of {sys.argv[2]} runs each (± stddev), peak RSS (largest of 3 runs)\n")
print(f"{'model':8} {'gguf-prune':>16} {'llama-quantize':>16} {'cp':>16} {'vs lq':>7} {'vs cp':>7}"
      f" {'RSS ours':>10} {'RSS lq':>10} {'RSS cp':>10}")
ok = True
for r in rows:
    name = r[0]
    mo, so, ml, sl, mc, sc = map(float, r[1:7])
    ro, rl, rc = (int(x) / 1024 for x in r[7:10])
    mn = float(r[10])
    ok &= mo <= ml and ro < 64
    print(f"{name:8} {mo:8.3f}±{so:5.3f} s {ml:8.3f}±{sl:5.3f} s {mc:8.3f}±{sc:5.3f} s"
          f" {mo/ml:6.2f}x {mo/mc:6.2f}x {ro:7.1f} MiB {rl:6.1f} MiB {rc:6.1f} MiB"
          f"   --no-verify {mn:.3f} s: {mn/ml:.2f}x lq, {mn/mc:.2f}x cp")
print("\ngoal (<= 1.0x llama-quantize on both models, peak RSS < 64 MiB):",
      "met" if ok else "NOT met")
EOF
