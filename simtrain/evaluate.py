"""`simtrain eval`: roll out the eval split with one or two simulators, score, and report.

Writes ``report.json``, ``report.md`` and ``drift.png`` (consistency against turn index, one
panel per metric) into the output folder. With two simulators, the report gives the relative
inconsistency reduction per metric and task: (inc_A - inc_B) / inc_A, inc = 1 - score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from simtrain.rewards.scoring import CONSISTENCY, Scorer, summarize
from simtrain.dialogue import write_dialogues
from simtrain.reporting import Reporter


WORSE_FROM_ZERO = "worse (base had no flagged line)"


def reduction(score_a: float | None, score_b: float | None) -> float | str | None:
    """Relative inconsistency reduction of B against A; None when either is unjudged. When A
    had no flagged line and B has some, the ratio is minus infinity: say so in words
    (:data:`WORSE_FROM_ZERO`) instead of printing "-inf%" or writing invalid JSON."""
    if score_a is None or score_b is None:
        return None
    inc_a, inc_b = 1 - score_a, 1 - score_b
    if inc_a <= 0:
        return 0.0 if inc_b <= 0 else WORSE_FROM_ZERO
    return (inc_a - inc_b) / inc_a


def evaluate(cfg, simulators: Sequence[str], out_dir: str | Path, reporter: Reporter | None = None) -> dict:
    """Roll out the eval split once per simulator (model name, path, or adapter dir) and score."""
    from simtrain import models
    from simtrain.rollout import build_engine, make_jobs

    reporter = reporter or Reporter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(cfg, split="eval")
    scorer = None
    report: dict = {"simulators": list(simulators), "tasks": list(cfg.data.tasks), "results": {}}
    for label in simulators:
        lm = models.load_simulator(label, dtype=cfg.simulator.dtype, trust_remote_code=cfg.simulator.trust_remote_code)
        reporter.log(f"[{label}] rolling out {len(jobs)} eval dialogues")
        dialogues = build_engine(cfg, simulator=lm, reporter=reporter).run(jobs, record_tokens=False)
        if scorer is None:
            scorer = Scorer.from_config(cfg, default_cache=str(out / "judge_cache.jsonl"), reporter=reporter)
        reporter.log(f"[{label}] scoring")
        values = scorer.score(dialogues)
        write_dialogues(dialogues, out / f"dialogues_{_slug(label)}.jsonl")
        per_task = {}
        for task in cfg.data.tasks:
            idx = [i for i, d in enumerate(dialogues) if d.task == task]
            sub = [dialogues[i] for i in idx]
            per_task[task] = summarize(sub, {k: [v[i] for i in idx] for k, v in values.items()})
        report["results"][label] = {"all": summarize(dialogues, values), "tasks": per_task}
        del lm
    if len(simulators) == 2:
        a, b = (report["results"][s] for s in simulators)
        report["reduction"] = {
            task: {m: reduction(a["tasks"][task]["means"].get(m), b["tasks"][task]["means"].get(m)) for m in CONSISTENCY}
            for task in cfg.data.tasks}
        report["reduction"]["all"] = {m: reduction(a["all"]["means"].get(m), b["all"]["means"].get(m)) for m in CONSISTENCY}
    if scorer is not None and scorer.judge is not None:
        report["judge"] = {"id": scorer.judge.id, **scorer.judge.stats.as_dict()}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    plot_drift(report, out / "drift.png")
    return report


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label.strip("/"))[-60:]


def fmt_score(x: float | str | None, spec: str = ".3f") -> str:
    """A score for people: three decimals, "n/a" when nothing could be judged, a word as it is."""
    return "n/a" if x is None else x if isinstance(x, str) else format(x, spec)


def markdown(report: dict) -> str:
    lines = ["# simtrain evaluation", ""]
    metrics = list(CONSISTENCY) + ["composite"]
    lines += ["| simulator | task | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for label, res in report["results"].items():
        for task, s in list(res["tasks"].items()) + [("all", res["all"])]:
            lines.append(f"| {label} | {task} | " + " | ".join(fmt_score(s["means"].get(m)) for m in metrics) + " |")
    if "reduction" in report:
        a, b = report["simulators"]
        lines += ["", f"Relative inconsistency reduction of `{b}` against `{a}`:", "",
                  "| task | " + " | ".join(CONSISTENCY) + " |", "|---|" + "---|" * len(CONSISTENCY)]
        for task, red in report["reduction"].items():
            lines.append(f"| {task} | " + " | ".join(fmt_score(red.get(m)) for m in CONSISTENCY) + " |")
    lines += ["", "Guard statistics (all tasks):", ""]
    for label, res in report["results"].items():
        g = res["all"]["guards"]
        lines.append(f"- {label}: " + ", ".join(f"{k} {fmt_score(v)}" for k, v in g.items()))
    if "judge" in report:
        j = report["judge"]
        lines += ["", f"Judge `{j['id']}`: {j['queries']} queries, {j['cache_hits']} cache hits, "
                      f"{j['failed']} failed, {j['seconds']:.1f} s."]
    return "\n".join(lines) + "\n"


def plot_drift(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CONSISTENCY), figsize=(5 * len(CONSISTENCY), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], CONSISTENCY):
        for label, res in report["results"].items():
            for task, s in res["tasks"].items():
                curve = s["drift"].get(metric)
                if curve:
                    xs = [i + 1 for i, v in enumerate(curve) if v is not None]
                    ax.plot(xs, [v for v in curve if v is not None], marker="o", label=f"{label} / {task}")
        ax.set_title(metric)
        ax.set_xlabel("simulator line")
        ax.set_ylabel("consistency")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
