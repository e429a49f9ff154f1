"""Precision and recall of the role check (``simtrain.rewards.role``) on labelled lines from real
rollouts of the embedded simulator.

    python bench/role_check.py export DIALOGUES.jsonl [...] --out lines.jsonl   # lines to label
    python bench/role_check.py measure [--labels rewards/data/role_labels.jsonl] [--part P]

``export`` writes one row per simulator line (id, task, persona name and description, the
agent's line before it, the text), for labellers who see a brief
(``rewards/data/role_labels_brief.md``) and never the rules. ``measure`` prints one JSON line:
per part, precision and recall of "leaves its role" with 95% Wilson intervals, the confusion
counts, and recall per labelled category.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def wilson(k: int, n: int) -> list[float] | None:
    if n == 0:
        return None
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 3), round(centre + half, 3)]


def export(paths: list[str], out: str) -> None:
    from simtrain.dialogue import read_dialogues

    seen, rows = set(), []
    for path in paths:
        for d in read_dialogues(path):
            previous = ""
            for t in d.turns:
                if t.speaker != "simulator":
                    previous = t.text
                    continue
                key = (d.persona.id, t.text.strip())
                if key in seen or not t.text.strip():  # identical base dialogues recur across runs
                    continue
                seen.add(key)
                rows.append({"id": f"{os.path.basename(path)}:{d.id}:{len(rows)}", "task": d.task,
                             "persona_name": d.persona.name, "persona": d.persona.description,
                             "agent_before": previous, "text": t.text})
    with open(out, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    print(json.dumps({"lines": len(rows), "out": out}))


def measure(labels: str, part: str | None) -> None:
    from simtrain.rewards.role import role_problems

    rows = [json.loads(l) for l in open(labels, encoding="utf-8") if l.strip()]
    out = {}
    for p in sorted({r["part"] for r in rows}) if part is None else [part]:
        sub = [r for r in rows if r["part"] == p]
        tp = fp = fn = tn = 0
        by_cat: dict[str, list[int]] = {}
        for r in sub:
            flagged = bool(role_problems(r["text"], r["persona_name"], r["task"], r.get("agent_before", "")))
            gold = bool(r["leaves_role"])
            tp += flagged and gold
            fp += flagged and not gold
            fn += gold and not flagged
            tn += not flagged and not gold
            if gold:
                by_cat.setdefault(r.get("category") or "other", []).append(int(flagged))
        out[p] = {"lines": len(sub), "leaves_role": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                  "precision": round(tp / (tp + fp), 3) if tp + fp else None, "precision_ci95": wilson(tp, tp + fp),
                  "recall": round(tp / (tp + fn), 3) if tp + fn else None, "recall_ci95": wilson(tp, tp + fn),
                  "recall_by_category": {c: f"{sum(v)}/{len(v)}" for c, v in sorted(by_cat.items())}}
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("dialogues", nargs="+")
    e.add_argument("--out", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--labels", default=os.path.join(os.path.dirname(__file__), "..", "rewards", "data", "role_labels.jsonl"))
    m.add_argument("--part", default=None)
    args = ap.parse_args()
    if args.cmd == "export":
        export(args.dialogues, args.out)
    else:
        measure(args.labels, args.part)


if __name__ == "__main__":
    main()
