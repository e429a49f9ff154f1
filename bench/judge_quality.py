"""Judge quality on the project's hand-labelled check set (rewards/data/checkset.jsonl).

For each judge variant: balanced accuracy (at the judge's own decision rule, threshold 0.5)
and ROC AUC per metric on the held-out part, plus judge queries and seconds per dialogue.
Prints one JSON line. Variants:

* ``hf-smollm2-naive``: the embedded SmolLM2 asked "is it consistent?" (the naive baseline);
* ``hf-smollm2-calibrated``: the same, relative to the same question about a neutral line;
* ``nli-minilm-contra``: the trained MiniLM cross-encoder (``simtrain judge-train``), one
  sentence of the persona / one earlier line at a time, with the fact-check rules of
  ``rewards/fact_checks.py`` (the default judge);
* ``nli-minilm-contra-nofacts``: the same without the fact-check rules (the model alone);
* ``nli-minilm-contra-whole``: the model alone given the whole description / history at once;
* ``openai``: an OpenAI-compatible judge, when SIMTRAIN_JUDGE_URL (and SIMTRAIN_JUDGE_MODEL) are set.

Splits of the check set: ``heldout`` (the default; written by the developer, never tuned on),
``fresh`` (written later by LLM assistants from a brief, never read for tuning), ``tune``.

    python bench/judge_quality.py [--split heldout|fresh|tune|all] [--judges a,b] [--nli-model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import warnings  # noqa: E402

from role_check import wilson  # noqa: E402  (bench/ is on the path when a script here runs)

warnings.filterwarnings("ignore")

CHECKSET = os.path.join(os.path.dirname(__file__), "..", "rewards", "data", "checkset.jsonl")


def roc_auc(scores: list[float], positives: list[bool]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def balanced_accuracy(pred: list[bool], positives: list[bool]) -> float | None:
    tp = sum(p and y for p, y in zip(pred, positives))
    tn = sum((not p) and (not y) for p, y in zip(pred, positives))
    npos, nneg = sum(positives), len(positives) - sum(positives)
    if not npos or not nneg:
        return None
    return 0.5 * (tp / npos + tn / nneg)


def evaluate_judge(judge, dialogues, calibrate: bool, threshold: float = 0.5) -> dict:
    from simtrain.rewards.line_to_line import LineToLine
    from simtrain.rewards.prompt_to_line import PromptToLine

    out = {}
    t0, q0 = judge.stats.seconds, judge.stats.queries
    p2l = PromptToLine(judge, threshold=threshold, calibrate=calibrate).line_probs(dialogues)
    scores, labels, kinds = [], [], []
    for d, probs in zip(dialogues, p2l):
        for t, p in zip(d.simulator_indices(), probs):
            if p is not None:
                scores.append(p)
                labels.append(d.turns[t].extra["labels"]["prompt_to_line"] == 0)
                kinds.append(d.turns[t].extra.get("contradicts_kind"))
    out["prompt_to_line"] = _metrics(scores, labels, threshold)
    # The fresh part's persona contradictions carry a kind: "behaviour" (temperament, mood,
    # social or learning style) or "fact". Recall per kind shows whether the judge sees both.
    for kind in sorted({k for k in kinds if k}):
        flagged = [s >= threshold for s, k in zip(scores, kinds) if k == kind]
        out["prompt_to_line"].setdefault("recall_by_kind", {})[kind] = {
            "n": len(flagged), "flagged": sum(flagged), "recall": round(sum(flagged) / len(flagged), 3),
            "recall_95ci": wilson(sum(flagged), len(flagged))}
    l2l = LineToLine(judge, threshold=threshold, calibrate=calibrate).score(dialogues)
    scores, labels = [], []
    for d, r in zip(dialogues, l2l):
        for k, t in enumerate(d.simulator_indices()):
            p = r.details["p_contradiction"][k]
            if k > 0 and p is not None:
                scores.append(p)
                labels.append(d.turns[t].extra["labels"]["line_to_line"] == 0)
    out["line_to_line"] = _metrics(scores, labels, threshold)
    out["queries_per_dialogue"] = round((judge.stats.queries - q0) / len(dialogues), 2)
    out["seconds_per_dialogue"] = round((judge.stats.seconds - t0) / len(dialogues), 3)
    return out


def _metrics(scores, labels, threshold):
    r = lambda x: None if x is None else round(x, 3)  # noqa: E731
    return {"balanced_accuracy": r(balanced_accuracy([s >= threshold for s in scores], labels)),
            "roc_auc": r(roc_auc(scores, labels)), "n": len(labels), "n_inconsistent": sum(labels),
            "flagged_rate": r(sum(s >= threshold for s in scores) / len(scores)) if scores else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="heldout", choices=["heldout", "fresh", "tune", "all"])
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N dialogues (quick runs).")
    ap.add_argument("--judges", default="hf-smollm2-naive,hf-smollm2-calibrated,nli-minilm-contra,"
                                        "nli-minilm-contra-nofacts,nli-minilm-contra-whole",
                    help="Comma-separated variants to run (see the module docstring).")
    ap.add_argument("--nli-model", default="minilm-contra", help="NLI model for the nli-* variants (a path to try others).")
    args = ap.parse_args()
    wanted = args.judges.split(",")
    known = ("hf-smollm2-naive", "hf-smollm2-calibrated", "nli-minilm-contra", "nli-minilm-contra-nofacts",
             "nli-minilm-contra-whole")
    if set(wanted) - set(known):
        ap.error(f"unknown judge variant(s) {sorted(set(wanted) - set(known))}; choose from {', '.join(known)}")

    from simtrain.rewards.judges import HFJudge, JudgeCache, NLIJudge, OpenAIJudge
    from simtrain.dialogue import read_dialogues
    from simtrain.openai_client import EndpointConfig

    dialogues = [d for d in read_dialogues(CHECKSET) if args.split == "all" or d.meta.get("split") == args.split]
    dialogues = dialogues[: args.limit] if args.limit else dialogues
    result = {"split": args.split, "dialogues": len(dialogues),
              "labelled_lines": sum(len(d.simulator_lines()) for d in dialogues), "judges": {}}
    t0 = time.perf_counter()
    lm = None
    for name in wanted:
        if name.startswith("hf-smollm2"):
            judge = HFJudge("smollm2", batch_size=8, loaded=lm, cache=JudgeCache())
            lm = judge.lm
            result["judges"][name] = evaluate_judge(judge, dialogues, calibrate=name.endswith("calibrated"))
        elif name.startswith("nli-minilm-contra"):
            judge = NLIJudge(args.nli_model, batch_size=32, decompose=not name.endswith("whole"),
                             fact_checks=name == "nli-minilm-contra")
            result["judges"][name] = evaluate_judge(judge, dialogues, calibrate=False)
    if os.environ.get("SIMTRAIN_JUDGE_URL"):
        ep = EndpointConfig(base_url=os.environ["SIMTRAIN_JUDGE_URL"], model=os.environ.get("SIMTRAIN_JUDGE_MODEL", "default"))
        result["judges"]["openai"] = evaluate_judge(OpenAIJudge(ep), dialogues, calibrate=False)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
