#!/usr/bin/env python3
"""Helper for scripts/paper-table.sh (stdlib only).

  paper_table.py sets SCORE_JSON K_LIST SEED N_RANDOM
      Prints `method<TAB>k<TAB>blocks` for one model, from ONE `gguf-prune score --remove KMAX
      --metric iterative --json` run: its unpruned scores give one-shot BI (the k lowest-BI
      blocks) and angular distance (the contiguous run of k with the lowest distance), and its
      iterative pick order gives iterative BI for every k <= KMAX (the greedy choice at step j
      depends only on the j-1 blocks already removed, so the KMAX order's prefixes are the
      smaller sets). The first and last block are never chosen, as in the tool's default.
      tail = the k blocks just before the final block. random = N_RANDOM sets of k blocks drawn
      from 1..n-2 with Python's random.Random seeded by "SEED:k:i" (reproducible).

  paper_table.py table OUT_MD K_SPEC...
      K_SPEC is `label=RESULTS_TSV,SETS_TSV,K_LIST` per model; writes the markdown tables.
      With task accuracies in RESULTS_TSV (tool = hellaswag, winogrande or multiple-choice;
      value = accuracy as a fraction), a task table follows each model's: accuracy in percent
      and the share of the unpruned model's retained; kinds not in $TASK_KINDS (the ones given
      a file) read "not measured".
"""
import json
import os
import random
import statistics
import sys


def blocks(s):
    return ",".join(str(b) for b in sorted(s))


def sets(score_json, k_list, seed, n_random):
    with open(score_json) as f:
        j = json.load(f)
    n = len(j["layers"])
    inner = range(1, n - 1)
    sel = j["selection"]
    bi = [l["bi"] for l in j["layers"]]
    angular = sel["scores"]["angular"]
    iterative = sel["order"]
    out = []
    for k in k_list:
        order = sorted((b for b in inner if bi[b] is not None), key=lambda b: bi[b])
        out.append(("bi", k, order[:k]))
        if len(iterative) >= k:
            out.append(("iterative", k, iterative[:k]))
        row = angular[k - 1] if k - 1 < len(angular) else []
        runs = [(a, l) for l, a in enumerate(row)
                if a is not None and l >= 1 and l + k <= n - 1]
        if runs:
            _, l = min(runs)
            out.append(("angular", k, list(range(l, l + k))))
        out.append(("tail", k, list(range(n - 1 - k, n - 1))))
        for i in range(n_random):
            rng = random.Random(f"{seed}:{k}:{i}")
            out.append((f"random{i + 1}", k, rng.sample(list(inner), k)))
    for method, k, s in out:
        print(f"{method}\t{k}\t{blocks(s)}")


def read_tsv(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 3:
                    rows.append(parts)
    except FileNotFoundError:
        pass
    return rows


def fmt(x):
    if x is None:
        return "–"
    if x >= 1e5:
        return f"{x:.2e}"
    if x >= 1000:
        return f"{x:.0f}"
    return f"{x:.1f}"


ROWS = ["default", "bi", "iterative", "angular", "tail", "random"]
NAMES = {
    "default": "**default** (`--remove k`)",
    "bi": "one-shot BI",
    "iterative": "iterative BI",
    "angular": "angular distance",
    "tail": "tail (k before the final block)",
    "random": "random (median of 5)",
}


TASK_KINDS = [("hellaswag", "HellaSwag"), ("winogrande", "WinoGrande"),
              ("multiple-choice", "multiple-choice")]


def task_cell(res, kind, bl, base, measured):
    """Accuracy in percent and the share of the unpruned model's retained."""
    if kind not in measured:
        return "not measured"
    acc = res.get((kind, bl))
    if acc is None or acc != acc:
        return "–"
    if bl == "" or not base:
        return f"{100 * acc:.1f}%"
    return f"{100 * acc:.1f}% ({100 * acc / base:.0f}% kept)"


def task_table(res, chosen, ks):
    """Rows: the unpruned model, then each method and k; columns: the task kinds."""
    measured = os.environ.get("TASK_KINDS", "").split()
    lines = ["Task accuracy (our `eval`, llama-perplexity's scoring; in brackets the share of the "
             "unpruned model's accuracy kept):", "",
             "| model | " + " | ".join(name for _, name in TASK_KINDS) + " |",
             "|---|" + "---|" * len(TASK_KINDS)]
    base = {kind: res.get((kind, "")) for kind, _ in TASK_KINDS}
    rows = [("unpruned", "")]
    for row in ROWS[:-1]:
        for k in ks:
            bl = chosen.get((row, k))
            if bl is not None:
                rows.append((f"{row}, k = {k}", bl))
    for name, bl in rows:
        lines.append(f"| {name} | " + " | ".join(
            task_cell(res, kind, bl, base[kind], measured) for kind, _ in TASK_KINDS) + " |")
    return lines


def table(out_md, specs):
    parts = []
    for spec in specs:
        label, rest = spec.split("=", 1)
        results_tsv, sets_tsv, k_list = rest.split(",", 2)
        ks = [int(k) for k in k_list.split()]
        # results: tool, blocks ("" = unpruned), ppl
        res = {}
        for tool, bl, ppl in read_tsv(results_tsv):
            try:
                res[(tool, bl)] = float(ppl)
            except ValueError:
                res[(tool, bl)] = float("nan")
        chosen = {}
        for method, k, bl in read_tsv(sets_tsv):
            chosen[(method, int(k))] = bl
        base_l, base_o = res.get(("llama", "")), res.get(("ours", ""))
        lines = [f"**{label}** (unpruned: {fmt(base_l)} / {fmt(base_o)})", "",
                 "| method | " + " | ".join(f"k = {k}" for k in ks) + " |",
                 "|---|" + "---|" * len(ks)]
        for row in ROWS:
            cells = []
            for k in ks:
                if row == "random":
                    rl = [res.get(("llama", chosen.get((f"random{i}", k)))) for i in range(1, 6)]
                    ro = [res.get(("ours", chosen.get((f"random{i}", k)))) for i in range(1, 6)]
                    rl = [x for x in rl if x is not None]
                    ro = [x for x in ro if x is not None]
                    ml = statistics.median(rl) if len(rl) == 5 else None
                    mo = statistics.median(ro) if len(ro) == 5 else None
                    cell = f"{fmt(ml)} / {fmt(mo)}"
                    if rl and len(rl) < 5:
                        cell += f" ({len(rl)}/5 run)"
                else:
                    bl = chosen.get((row, k))
                    cell = f"{fmt(res.get(('llama', bl)))} / {fmt(res.get(('ours', bl)))}"
                cells.append(cell)
            lines.append(f"| {NAMES[row]} | " + " | ".join(cells) + " |")
        lines += ["", "Blocks removed:", "",
                  "| method | " + " | ".join(f"k = {k}" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for row in ROWS[:-1] + [f"random{i}" for i in range(1, 6)]:
            lines.append(f"| {row} | " + " | ".join(
                chosen.get((row, k), "–").replace(",", " ") for k in ks) + " |")
        lines += [""] + task_table(res, chosen, ks)
        parts.append("\n".join(lines))
    text = "\n\n".join(parts) + "\n"
    with open(out_md, "w") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "sets" and len(sys.argv) == 6:
        sets(sys.argv[2], [int(k) for k in sys.argv[3].split()], sys.argv[4], int(sys.argv[5]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
