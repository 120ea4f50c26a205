#!/usr/bin/env python3
"""Writes multiple-choice.bin from multiple-choice.txt in llama-perplexity's --multiple-choice
layout: u32 task count, one u32 byte offset per task, then per task the question (u32 length +
bytes), mc1 (u32 answer count, each answer as a string, one i32 label per answer; 1 = correct)
and mc2 (the same layout; llama.cpp reads it and ignores it; written empty here). Little-endian.

The text: tasks separated by blank lines; the first line is the question, the others answers,
the correct answer marked with a leading "* "."""
import pathlib, struct, sys

here = pathlib.Path(__file__).parent
blocks = [b.strip("\n").split("\n") for b in (here / "multiple-choice.txt").read_text().split("\n\n")]


def string(s):
    b = s.encode()
    return struct.pack("<I", len(b)) + b


tasks = []
for lines in blocks:
    question, answers = lines[0], lines[1:]
    labels = [1 if a.startswith("* ") else 0 for a in answers]
    answers = [a[2:] if a.startswith("* ") else a for a in answers]
    body = string(question) + struct.pack("<I", len(answers))
    body += b"".join(string(a) for a in answers) + struct.pack(f"<{len(labels)}i", *labels)
    body += struct.pack("<I", 0)
    tasks.append(body)
header = 4 + 4 * len(tasks)
out, pos = [], header
for t in tasks:
    out.append(pos)
    pos += len(t)
data = struct.pack("<I", len(tasks)) + struct.pack(f"<{len(tasks)}I", *out) + b"".join(tasks)
(here / "multiple-choice.bin").write_bytes(data)
print(f"{len(tasks)} tasks, {len(data)} bytes", file=sys.stderr)
