"""Does training reduce drift? Train with a CPU config, then evaluate base against trained on
the eval split with the same judge. Prints one JSON line: per-metric base and trained scores,
relative inconsistency reduction, guard metrics for both, and the wall-time split of training.

    python bench/train_drift.py [--config configs/therapy.yaml] [--steps N] [--out runs/bench-drift]

Goal from the project's issue: >= 55% relative inconsistency reduction while mean line length
stays >= 50% of base and distinct-2 >= 80% of base.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
import warnings  # noqa: E402

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/therapy.yaml")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default="runs/bench-drift")
    args = ap.parse_args()

    from simtrain.rewards.scoring import CONSISTENCY
    from simtrain.config import load_config
    from simtrain.evaluate import evaluate
    from simtrain.train import train

    overrides = {"output_dir": args.out, "train.wandb": False}
    if args.steps:
        overrides["train.max_steps"] = args.steps
    cfg = load_config(args.config, overrides)
    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.perf_counter()
    result = train(cfg)
    train_s = time.perf_counter() - t0
    rows = [json.loads(l) for l in result.metrics_path.read_text().splitlines()]
    split = {k: round(sum(r.get(f"time/{k}_s", 0.0) for r in rows), 1) for k in ("rollout", "scoring", "update")}

    t0 = time.perf_counter()
    report = evaluate(cfg, [cfg.simulator.name, str(result.run_dir)], os.path.join(args.out, "eval"))
    eval_s = time.perf_counter() - t0
    base, trained = (report["results"][s]["all"] for s in report["simulators"])
    r3 = lambda x: None if x is None else round(x, 3)  # noqa: E731
    out = {
        "config": args.config, "steps": result.global_step,
        "eval_dialogues": base["n_dialogues"],
        "base": {m: r3(base["means"].get(m)) for m in CONSISTENCY},
        "trained": {m: r3(trained["means"].get(m)) for m in CONSISTENCY},
        "reduction": {m: r3(v) for m, v in report["reduction"]["all"].items()},
        "guards_base": {k: r3(v) for k, v in base["guards"].items()},
        "guards_trained": {k: r3(v) for k, v in trained["guards"].items()},
        "line_length_ratio": r3(trained["guards"]["mean_line_words"] / base["guards"]["mean_line_words"])
        if base["guards"]["mean_line_words"] else None,
        "distinct2_ratio": r3(trained["guards"]["distinct_2"] / base["guards"]["distinct_2"])
        if base["guards"]["distinct_2"] else None,
        "train_time_split_s": split, "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
        "first_step_reward": r3(rows[0].get("reward")), "last_step_reward": r3(rows[-1].get("reward")),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
