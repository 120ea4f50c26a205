#!/usr/bin/env bash
# The test command: install what the tests need (cached), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release --all-targets -- --test-threads=2
