"""Does training reduce drift? Train with a CPU config, then play base and trained against the
same held-out personas (every eval persona of the task, several dialogues each, the same seed),
pair the dialogues by id (persona, index, seed), and report each metric's relative
inconsistency reduction with a 95% paired bootstrap interval, scored twice: by the training
judge (the reward) and by a second judge that was not the reward (the Goodhart check).
Prints one JSON line; writes the eval report and every dialogue under ``--out``.

    python bench/train_drift.py [--preset demo|long] [--config C] [--steps N] [--seeds K] [--out DIR]

Presets (2 CPU cores, the embedded SmolLM2-135M simulator, therapy):
  demo  the `make demo` config as it is (about 20 minutes with the eval);
  long  the same config trained for 60 steps, second-judge check every 10 (about 75 minutes);
  voice 30 steps with guard_voice (weight 1) and a KL term (beta 0.04) (about 50 minutes).

Targets (issue 13): reduction >= 30% on prompt-to-line (role included) and line-to-line with the
interval's lower bound above 0; mean line length >= 50% of base, distinct-2 >= 80% of base; the
second judge agrees in direction.
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

PRESETS = {
    "demo": {},
    "long": {"train.max_steps": 60, "train.save_steps": 20, "check.every": 10},
    # the long run gamed the judge with stage directions and German: the voice guard as a full
    # reward and a KL term against the base model, for half as many steps
    "voice": {"train.max_steps": 30, "train.save_steps": 10, "check.every": 10, "train.beta": 0.04,
              "+rewards": [{"name": "guard_voice", "weight": 1.0}]},  # added to the config's rewards
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--steps", type=int, default=None, help="override train.max_steps")
    ap.add_argument("--seeds", type=int, default=6, help="eval dialogues per held-out persona")
    ap.add_argument("--utterances", type=int, default=8, help="eval utterances per dialogue (8: 4 simulator lines)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip-train", action="store_true", help="evaluate the run already in --out")
    args = ap.parse_args()

    from simtrain.config import load_config
    from simtrain.evaluate import evaluate
    from simtrain.reporting import RichReporter
    from simtrain.rewards.scoring import CONSISTENCY
    from simtrain.train import train

    out_dir = args.out or f"runs/bench-drift-{args.preset}"
    preset = dict(PRESETS[args.preset])
    extra_rewards = preset.pop("+rewards", [])
    overrides = {"output_dir": out_dir, "train.wandb": False, **preset}
    if args.steps:
        overrides["train.max_steps"] = args.steps
    cfg = load_config(args.config, overrides)
    if extra_rewards:
        cfg = load_config(args.config, {**overrides, "rewards": [r.model_dump(exclude_none=True) for r in cfg.rewards]
                                        + extra_rewards})
    reporter = RichReporter()  # step lines and progress on stderr; the JSON line alone on stdout
    train_s, rows = None, []
    if not args.skip_train:
        shutil.rmtree(out_dir, ignore_errors=True)
        t0 = time.perf_counter()
        train(cfg, reporter=reporter)
        train_s = time.perf_counter() - t0
    metrics = os.path.join(out_dir, "metrics.jsonl")
    rows = [json.loads(l) for l in open(metrics)] if os.path.exists(metrics) else []
    split = {k: round(sum(r.get(f"time/{k}_s", 0.0) for r in rows), 1) for k in ("rollout", "scoring", "update")}

    eval_cfg = cfg.model_copy(update={
        "rollout": cfg.rollout.model_copy(update={"dialogues_per_persona": args.seeds, "num_utterances": args.utterances}),
        "check": cfg.check.model_copy(update={"enabled": True})})
    t0 = time.perf_counter()
    report = evaluate(eval_cfg, [cfg.simulator.name, os.path.join(out_dir, "final")], os.path.join(out_dir, "eval"),
                      reporter=reporter)
    eval_s = time.perf_counter() - t0
    base, trained = (report["results"][s]["all"] for s in report["simulators"])
    r3 = lambda x: round(x, 3) if isinstance(x, float) else x  # noqa: E731

    def judged(judge: str) -> dict:
        return {m: {"pairs": p["n_pairs"], "base": r3(p["base"]), "trained": r3(p["other"]),
                    "reduction": r3(p["reduction"]), "ci95": [r3(x) for x in p["ci95"]] if p["ci95"] else None}
                for m, p in report["paired"][judge].items()}

    ratio = lambda k: r3(trained["guards"][k] / base["guards"][k]) if base["guards"].get(k) else None  # noqa: E731
    out = {
        "preset": args.preset, "config": args.config, "steps": rows[-1]["step"] if rows else None,
        "eval_dialogues_per_model": base["n_dialogues"], "sim_lines_per_dialogue": args.utterances // 2,
        "reward_judge": report.get("judge", {}).get("id"), "second_judge": report["second_judge"]["id"],
        "reward_judge_results": judged("reward"), "second_judge_results": judged("second"),
        "direction_agrees": {m: _sign(report["paired"]["reward"][m]["reduction"]) == _sign(report["paired"]["second"][m]["reduction"])
                             for m in CONSISTENCY if m in report["paired"]["second"]},
        "guards_base": {k: r3(v) for k, v in base["guards"].items()},
        "guards_trained": {k: r3(v) for k, v in trained["guards"].items()},
        "line_length_ratio": ratio("mean_line_words"), "distinct2_ratio": ratio("distinct_2"),
        "train_time_split_s": split, "train_s": None if train_s is None else round(train_s, 1), "eval_s": round(eval_s, 1),
        "first_step_reward": r3(rows[0].get("reward")) if rows else None,
        "last_step_reward": r3(rows[-1].get("reward")) if rows else None,
        "check_warnings": rows[-1].get("check/warnings") if rows else None,
    }
    line = json.dumps(out)
    with open(os.path.join(out_dir, "bench.json"), "w") as fh:
        fh.write(line + "\n")
    print(line)


def _sign(x) -> int:
    if isinstance(x, str):  # "worse (base had no flagged line)"
        return -1
    return 0 if x is None or abs(x) < 1e-9 else (1 if x > 0 else -1)


if __name__ == "__main__":
    main()
