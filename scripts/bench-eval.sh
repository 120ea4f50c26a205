#!/usr/bin/env bash
# Time `gguf-prune eval` against `llama-perplexity` on the same model, text, context, chunks and
# threads, one right after the other, and print both perplexities and the speed ratio.
#
#   scripts/bench-eval.sh [MODEL] [TEXT]
#   env: CHUNKS (20), CTX (512), THREADS (2), GGUF_PRUNE (default: target/release/gguf-prune)
#
# Defaults: SmolLM2 Q4_1 from the cache and wikitext-2 wiki.test.raw (scripts/fetch-data.sh). Compare the two columns of
# one run only: other load on the machine moves both.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
CHUNKS="${CHUNKS:-20}"
CTX="${CTX:-512}"
THREADS="${THREADS:-2}"

bash "$here/setup.sh" >&2
model="${1:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
text="${2:-}"
if [ -z "$text" ]; then
    text="$(bash "$here/fetch-data.sh")/wiki.test.raw"
fi
[ -f "$text" ] || { echo "bench-eval: no text file (give one as the second argument)" >&2; exit 1; }
perplexity="$CACHE/llama.cpp-0.3.36/bin/llama-perplexity"
gp="${GGUF_PRUNE:-$repo/target/release/gguf-prune}"
if [ -z "${GGUF_PRUNE:-}" ]; then
    (cd "$repo" && cargo build --release --quiet)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

echo "model $(basename "$model"), text $(basename "$text"), -c $CTX, --chunks $CHUNKS, $THREADS threads" >&2

t0=$(now)
"$perplexity" -m "$model" -f "$text" -c "$CTX" -b "$CTX" --chunks "$CHUNKS" -t "$THREADS" >"$work/llama.txt" 2>&1 \
    || { cat "$work/llama.txt" >&2; echo "bench-eval: llama-perplexity failed" >&2; exit 1; }
t1=$(now)
"$gp" eval "$model" --text "$text" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" --json >"$work/ours.json" 2>"$work/ours.err" \
    || { cat "$work/ours.err" >&2; echo "bench-eval: gguf-prune eval failed" >&2; exit 1; }
t2=$(now)

llama_ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$work/llama.txt")
ours_ppl=$(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["ppl"])' "$work/ours.json")
tokens=$((CTX * CHUNKS))
python3 - "$t0" "$t1" "$t2" "$llama_ppl" "$ours_ppl" "$tokens" <<'PYEOF'
import sys
t0, t1, t2 = map(float, sys.argv[1:4])
llama_ppl, ours_ppl, tokens = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
ll, ou = t1 - t0, t2 - t1
print(f"{'':18}{'PPL':>10}{'seconds':>10}{'tok/s':>10}")
print(f"{'llama-perplexity':18}{llama_ppl:10.4f}{ll:10.2f}{tokens / ll:10.0f}")
print(f"{'gguf-prune eval':18}{ours_ppl:10.4f}{ou:10.2f}{tokens / ou:10.0f}")
print(f"time ratio gguf-prune / llama.cpp: {ou / ll:.2f}x; PPL difference {100 * (ours_ppl / llama_ppl - 1):+.3f}%")
PYEOF
