#!/usr/bin/env bash
# Build the llama.cpp reference tools from the PyPI source package of llama-cpp-python,
# cached under $CACHE/llama.cpp-0.3.36/. Installs cmake from Debian if it is missing.
# On success prints nothing; the binaries are in $CACHE/llama.cpp-0.3.36/bin.
set -euo pipefail
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
VERSION=0.3.36
ROOT="$CACHE/llama.cpp-$VERSION"
BIN="$ROOT/bin"
TOOLS="llama-perplexity llama-quantize llama-tokenize llama-imatrix llama-completion llama-bench llama-gguf-split"
PY="${PYTHON:-python3}"

all_built() { for t in $TOOLS; do [ -x "$BIN/$t" ] || return 1; done; }
all_built && exit 0

if ! command -v cmake >/dev/null 2>&1; then
  echo "installing cmake from Debian..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq cmake >&2
fi

mkdir -p "$ROOT"
if [ ! -d "$ROOT/src/vendor/llama.cpp" ]; then
  echo "fetching llama-cpp-python==$VERSION source from PyPI..." >&2
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --no-deps --no-binary llama-cpp-python -d "$tmp" "llama-cpp-python==$VERSION"
  rm -rf "$ROOT/src.part"; mkdir -p "$ROOT/src.part"
  tar -xzf "$tmp"/llama_cpp_python-$VERSION.tar.gz -C "$ROOT/src.part" --strip-components=1
  rm -rf "$tmp" "$ROOT/src"; mv "$ROOT/src.part" "$ROOT/src"
fi

echo "building llama.cpp reference tools (a few minutes)..." >&2
cmake -S "$ROOT/src/vendor/llama.cpp" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$ROOT/build" -j"$(nproc)" --target $TOOLS >&2
mkdir -p "$BIN"
for t in $TOOLS; do cp "$ROOT/build/bin/$t" "$BIN/$t"; done
all_built
