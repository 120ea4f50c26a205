#!/usr/bin/env bash
# Locate (or fetch) wikitext-2-raw, the text the README's tables and the bench / paper-table /
# heal-table scripts measure on, and print its folder (holding wiki.test.raw and wiki.valid.raw).
# The tests never need it: they use the project's own texts.
#
# Looked for, in order, each file checked by its sha256:
#   1. $WIKITEXT_DIR                       (a folder you give)
#   2. ../shared/data/wikitext-2-raw       (beside the checkout, where that exists)
#   3. $CACHE/data/wikitext-2-raw          (an earlier download)
#   4. the official wikitext-2-raw-v1.zip, the archive llama.cpp's scripts/get-wikitext-2.sh
#      fetches (override with WIKITEXT_URL), unpacked into $CACHE/data
#
#   data="$(bash scripts/fetch-data.sh)"; ls "$data/wiki.test.raw"
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${GGUF_PRUNE_CACHE:-$HOME/.cache/gguf-prune}"
URL="${WIKITEXT_URL:-https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip}"
PY="${PYTHON:-python3}"
TEST_SHA=173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08
VALID_SHA=4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7

sha() { sha256sum "$1" | cut -d' ' -f1; }
good() {
  [ -f "$1/wiki.test.raw" ] && [ -f "$1/wiki.valid.raw" ] &&
    [ "$(sha "$1/wiki.test.raw")" = "$TEST_SHA" ] && [ "$(sha "$1/wiki.valid.raw")" = "$VALID_SHA" ]
}

if [ -n "${WIKITEXT_DIR:-}" ]; then
  if good "$WIKITEXT_DIR"; then echo "$WIKITEXT_DIR"; exit 0; fi
  echo "fetch-data: WIKITEXT_DIR=$WIKITEXT_DIR does not hold wiki.test.raw and wiki.valid.raw of wikitext-2-raw-v1 (sha256 mismatch or missing)" >&2
  exit 1
fi
for d in "$here/../shared/data/wikitext-2-raw" "$CACHE/data/wikitext-2-raw"; do
  if good "$d"; then (cd "$d" && pwd); exit 0; fi
done

dest="$CACHE/data"
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-data: downloading wikitext-2-raw-v1.zip (4.5 MB)..." >&2
if ! "$PY" - "$URL" "$tmp/w.zip" <<'PYEOF' >&2
import sys, urllib.request, shutil
try:
    with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
        shutil.copyfileobj(r, f)
except Exception as e:
    sys.exit(f"fetch-data: {e}")
PYEOF
then
  echo "fetch-data: cannot download $URL; put wiki.test.raw and wiki.valid.raw of wikitext-2-raw-v1 in a folder and run again with WIKITEXT_DIR=that-folder" >&2
  exit 1
fi
"$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$tmp/w.zip" "$tmp/x"
rm -rf "$dest/wikitext-2-raw.part"
mkdir -p "$dest/wikitext-2-raw.part"
for f in wiki.test.raw wiki.valid.raw; do
  cp "$tmp/x/wikitext-2-raw/$f" "$dest/wikitext-2-raw.part/$f"
done
if ! good "$dest/wikitext-2-raw.part"; then
  rm -rf "$dest/wikitext-2-raw.part"
  echo "fetch-data: the downloaded archive's files do not have the expected sha256; put the right files in a folder and run again with WIKITEXT_DIR=that-folder" >&2
  exit 1
fi
rm -rf "$dest/wikitext-2-raw"
mv "$dest/wikitext-2-raw.part" "$dest/wikitext-2-raw"
echo "$dest/wikitext-2-raw"
