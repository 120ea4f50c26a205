#!/usr/bin/env bash
# Checks that no module of the library uses a module of a higher layer (ARCHITECTURE.md's table):
# every `crate::NAME` a file under src/ mentions must be of the file's own layer or a lower one.
# Prints each violation (file, line, the module used) and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PYEOF'
import pathlib, re, sys

# Layers, lowest first; a module may use its own layer and the ones before it.
LAYERS = [
    ["error", "interrupt", "output", "limits", "gguf"],
    ["kernels"],
    ["blocks", "arch"],
    ["tokenizer"],
    ["forward", "verify"],
    ["calibration", "eval", "tasks", "score"],
    ["prune", "heal", "quant"],
    ["inspect", "jobs"],
]
rank = {m: i for i, names in enumerate(LAYERS) for m in names}
bad = 0
for path in sorted(pathlib.Path("src").rglob("*.rs")):
    rel = path.relative_to("src").as_posix()
    top = rel.split("/")[0].removesuffix(".rs")
    if top in ("main", "lib", "cli"):
        continue
    own = rank.get(top)
    if own is None:
        print(f"{rel}: module {top!r} is in no layer of scripts/layers.sh"); bad += 1; continue
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("//"):
            continue
        for used in re.findall(r"crate::([a-z_]+)", line):
            r = rank.get(used)
            if r is None:
                print(f"{rel}:{n}: uses crate::{used}, which is in no layer"); bad += 1
            elif r > own:
                print(f"{rel}:{n}: {top} (layer {own}) uses crate::{used} (layer {r})"); bad += 1
print(f"layers: {bad} violation(s)")
sys.exit(1 if bad else 0)
PYEOF
