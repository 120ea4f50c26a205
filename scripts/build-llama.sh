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

# CPU features: -march=native, except on CPUs that report AMX. ggml's AMX kernels (compiled in
# by -march=native there) die with SIGILL in llama-perplexity on virtual machines that report AMX
# but do not enable its tile state (seen on this project's CI machines), so on such CPUs the
# native feature set is spelled out without AMX. The choice is stamped beside the binaries, and a
# different one (a cache moved to another CPU) rebuilds.
cpu_options() {
  local flags
  flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  case "$flags" in
    *" amx_tile "*) ;;
    *) echo "-DGGML_NATIVE=ON"; return ;;
  esac
  local opts="-DGGML_NATIVE=OFF"
  has() { case "$flags" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
  for pair in sse4_2:SSE42 avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI \
              avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    if has "${pair%%:*}"; then opts="$opts -DGGML_${pair#*:}=ON"; else opts="$opts -DGGML_${pair#*:}=OFF"; fi
  done
  echo "$opts -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}
CPU_OPTIONS="$(cpu_options)"
STAMP="$BIN/.cpu-options"

all_built() {
  for t in $TOOLS; do [ -x "$BIN/$t" ] || return 1; done
  [ "$(cat "$STAMP" 2>/dev/null)" = "$CPU_OPTIONS" ]
}
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
# shellcheck disable=SC2086
cmake -S "$ROOT/src/vendor/llama.cpp" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
  $CPU_OPTIONS -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$ROOT/build" -j"$(nproc)" --target $TOOLS >&2
mkdir -p "$BIN"
for t in $TOOLS; do cp "$ROOT/build/bin/$t" "$BIN/$t"; done
echo "$CPU_OPTIONS" > "$STAMP"
all_built
