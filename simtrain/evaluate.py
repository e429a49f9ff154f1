"""`simtrain eval`: roll out the eval split with one or two simulators, score, and report.

Writes ``report.json``, ``report.md`` and ``drift.png`` (consistency against turn index, one
panel per metric) into the output folder. With two simulators, the report gives the relative
inconsistency reduction per metric and task: (inc_A - inc_B) / inc_A, inc = 1 - score, and
over all tasks a 95% paired bootstrap interval (dialogues paired by id: same persona, same
dialogue index, same seed). With ``check.enabled`` a second judge scores the same dialogues and
its reduction stands beside the first (the Goodhart check). ``rollout.engine`` picks the engine
that plays the simulators (:func:`simulator_engines`).
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

import gc
import json
from pathlib import Path
from typing import Sequence

import random

from simtrain.rewards.base import mean
from simtrain.rewards.scoring import CONSISTENCY, Scorer, second_judge_config, summarize
from simtrain.dialogue import write_dialogues
from simtrain.reporting import Reporter
from simtrain import models
from simtrain.rollout import build_engine, make_jobs


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


def paired_reduction(a: dict[str, float | None], b: dict[str, float | None], n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """Reduction of B against A over the dialogue ids both judged, with a 95% percentile
    bootstrap interval that resamples the pairs (so persona and seed effects cancel)."""
    ids = sorted(k for k in a if k in b and a[k] is not None and b[k] is not None)
    out = {"n_pairs": len(ids), "base": mean([a[k] for k in ids]), "other": mean([b[k] for k in ids])}
    out["reduction"] = reduction(out["base"], out["other"])
    rng = random.Random(seed)
    boots = []
    for _ in range(n_boot if ids else 0):
        pick = [rng.choice(ids) for _ in ids]
        r = reduction(mean([a[k] for k in pick]), mean([b[k] for k in pick]))
        if isinstance(r, float):  # a resample whose base has no flagged line has no ratio
            boots.append(r)
    boots.sort()
    out["ci95"] = [boots[int(0.025 * len(boots))], boots[min(len(boots) - 1, int(0.975 * len(boots)))]] if boots else None
    out["boot_valid"] = len(boots)
    return out


def by_id(dialogues, values: dict[str, list[float | None]]) -> dict[str, dict[str, float | None]]:
    return {m: {d.id: v for d, v in zip(dialogues, values[m])} for m in values}


def evaluate(cfg, simulators: Sequence[str], out_dir: str | Path, reporter: Reporter | None = None) -> dict:
    """Roll out the eval split once per simulator (model name, path, or adapter dir) and score."""

    reporter = reporter or Reporter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(cfg, split="eval")
    scorer = second = None
    report: dict = {"simulators": list(simulators), "tasks": list(cfg.data.tasks), "results": {}}
    per: dict[str, dict] = {}  # label -> judge ("reward" / "second") -> metric -> {dialogue id: value}
    for label, engine in simulator_engines(cfg, simulators, reporter):
        reporter.log(f"[{label}] rolling out {len(jobs)} eval dialogues")
        dialogues = engine.run(jobs, record_tokens=False)
        report.setdefault("generators", {})[label] = type(engine.sim).__name__  # which engine played it
        if scorer is None:
            scorer = Scorer.from_config(cfg, default_cache=str(out / "judge_cache.jsonl"), reporter=reporter)
        reporter.log(f"[{label}] scoring")
        values = scorer.score(dialogues)
        per[label] = {"reward": by_id(dialogues, values)}
        if cfg.check.enabled:
            if second is None:
                second = Scorer.from_config(second_judge_config(cfg), default_cache=str(out / "judge_cache.jsonl"),
                                            reporter=reporter)
            reporter.log(f"[{label}] scoring with the second judge ({second.judge.id})")
            v2 = second.score(dialogues, annotate=False)
            per[label]["second"] = by_id(dialogues, v2)
            report.setdefault("second_judge", {"id": second.judge.id, "results": {}})["results"][label] = {
                m: mean(v2[m]) for m in v2 if m in CONSISTENCY}
        write_dialogues(dialogues, out / f"dialogues_{_slug(label)}.jsonl")
        per_task = {}
        for task in cfg.data.tasks:
            idx = [i for i, d in enumerate(dialogues) if d.task == task]
            sub = [dialogues[i] for i in idx]
            per_task[task] = summarize(sub, {k: [v[i] for i in idx] for k, v in values.items()})
        report["results"][label] = {"all": summarize(dialogues, values), "tasks": per_task}
    if len(simulators) == 2:
        a, b = (report["results"][s] for s in simulators)
        report["reduction"] = {
            task: {m: reduction(a["tasks"][task]["means"].get(m), b["tasks"][task]["means"].get(m)) for m in CONSISTENCY}
            for task in cfg.data.tasks}
        report["reduction"]["all"] = {m: reduction(a["all"]["means"].get(m), b["all"]["means"].get(m)) for m in CONSISTENCY}
        pa, pb = (per[s] for s in simulators)
        report["paired"] = {judge: {m: paired_reduction(pa[judge][m], pb[judge][m], seed=cfg.rollout.seed or 0)
                                    for m in CONSISTENCY if m in pa[judge]}
                            for judge in pa}
    if scorer is not None and scorer.judge is not None:
        report["judge"] = {"id": scorer.judge.id, **scorer.judge.stats.as_dict()}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    plot_drift(report, out / "drift.png")
    return report


def simulator_engines(cfg, labels: Sequence[str], reporter: Reporter):
    """Each label's rollout engine, one label at a time.

    ``rollout.engine: hf``: the label's model, loaded with its adapter. ``vllm``: one engine per
    base model, kept across the labels that share it (starting one takes seconds to minutes)
    and switched to each label's adapter, or to no adapter for the base itself."""
    if cfg.rollout.engine != "vllm":
        for label in labels:
            lm = models.load_simulator(label, dtype=cfg.simulator.dtype,
                                       trust_remote_code=cfg.simulator.trust_remote_code)
            yield label, build_engine(cfg, simulator=lm, reporter=reporter)
            del lm  # before the next label's model loads
        return
    parts = {label: models.simulator_parts(label) for label in labels}
    ranks = [json.loads((a / "adapter_config.json").read_text())["r"] for _, a in parts.values() if a]
    base = engine = None
    for version, label in enumerate(labels):
        name, adapter = parts[label]
        if name != base:
            # One engine at a time: each one takes rollout.vllm.gpu_memory_utilization of the GPU.
            engine = None
            gc.collect()
            sim = cfg.simulator.model_copy(update={"name": name, "adapter": None})
            engine = build_engine(cfg.model_copy(update={"simulator": sim}), reporter=reporter,
                                  max_lora_rank=max(ranks, default=None))
            base = name
        engine.sim.set_adapter(str(adapter) if adapter else None, version)  # a new LoRA id per label
        yield label, engine


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
        lines += ["", "Paired over dialogues (same persona, index and seed), 95% bootstrap interval:", "",
                  "| judge | metric | pairs | base | other | reduction | 95% interval |", "|---|---|---|---|---|---|---|"]
        for judge, rows in report.get("paired", {}).items():
            for m, r in rows.items():
                ci = "n/a" if r["ci95"] is None else f"[{r['ci95'][0]:+.0%}, {r['ci95'][1]:+.0%}]"
                lines.append(f"| {judge} | {m} | {r['n_pairs']} | {fmt_score(r['base'])} | {fmt_score(r['other'])} | "
                             f"{fmt_score(r['reduction'], '+.0%')} | {ci} |")
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
