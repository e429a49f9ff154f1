"""Score dialogues with every configured reward and summarise the results.

This is the one place that turns a config's ``judge`` and ``rewards`` sections into scores:
``simtrain score``, ``simtrain eval`` and training all come through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from simtrain.rewards.base import mean
from simtrain.rewards.guards import guard_metrics
from simtrain.rewards.judges import Judge, make_judge
from simtrain.rewards.registry import RewardSpec, build_all, composite, find
from simtrain.dialogue import Dialogue
from simtrain.reporting import Reporter

CONSISTENCY = ("prompt_to_line", "line_to_line", "qa")


def specs_from_config(cfg) -> list[RewardSpec]:
    specs = []
    for r in cfg.rewards:
        args = dict(r.args)
        if r.name in ("prompt_to_line", "line_to_line", "qa"):
            args.setdefault("threshold", cfg.judge.threshold)
        if r.name in ("prompt_to_line",):
            args.setdefault("calibrate", cfg.judge.resolved_calibrate())
        if r.name == "qa":
            args.setdefault("when", cfg.judge.qa_when)
        specs.append(r.model_copy(update={"args": args}))
    return specs


def second_judge_config(cfg):
    """The config the Goodhart check scores with: ``cfg``'s consistency rewards (their args
    kept), judged by ``cfg.check.judge``; the role rules in prompt-to-line only with
    ``check.role``, so by default the second opinion shares nothing with the reward."""
    rewards = [r.model_copy(update={"args": {**r.args, "role": cfg.check.role}}) if r.name == "prompt_to_line" else r
               for r in cfg.rewards if r.name in CONSISTENCY]
    return cfg.model_copy(update={"judge": cfg.check.judge, "rewards": rewards})


@dataclass
class Scorer:
    """Rewards bound to a judge. ``score`` annotates dialogues in place and returns per-reward values."""

    rewards: list
    weights: list[float]
    judge: Judge | None = None
    reporter: Reporter = field(default_factory=Reporter)
    names: list[str] = field(init=False)

    def __post_init__(self):
        self.names = [r.__name__ for r in self.rewards]

    @classmethod
    def from_config(cls, cfg, judge: Judge | None = None, default_cache: str | None = None,
                    reporter: Reporter | None = None) -> "Scorer":
        specs = specs_from_config(cfg)
        # Any reward class that declares needs_judge gets the judge, plug-ins included.
        if judge is None and any(getattr(find(s), "needs_judge", False) for s in specs):
            judge = make_judge(cfg.judge, default_cache=default_cache)
        fns, weights = build_all(specs, judge)
        return cls(fns, weights, judge, reporter or Reporter())

    def score(self, dialogues: Sequence[Dialogue], annotate: bool = True,
              graded: bool = False) -> dict[str, list[float | None]]:
        """Per-reward values per dialogue: the thresholded verdict scores, or with ``graded`` the
        training values (1 - P(problem), see :mod:`simtrain.rewards.base`). Annotation always
        records both: ``meta["scores"]`` (verdicts) and ``meta["graded"]``."""
        values: dict[str, list[float | None]] = {}
        with self.reporter.progress(len(self.names), f"scoring {len(dialogues)} dialogues (rewards)") as advance:
            for name, fn in zip(self.names, self.rewards):
                self._score_one(name, fn, dialogues, values, annotate, graded)
                advance(1)
        values["composite"] = composite([values[n] for n in self.names], self.weights)
        if annotate:
            for d, v in zip(dialogues, values["composite"]):
                d.meta["graded" if graded else "scores"]["composite"] = v
        return values

    def _score_one(self, name, fn, dialogues, values, annotate, graded) -> None:
        metric = getattr(fn, "metric", None)
        if metric is None:  # a plug-in: one value per dialogue
            values[name] = fn(prompts=[None] * len(dialogues), completions=[None] * len(dialogues),
                              dialogues=list(dialogues))
            if annotate:
                for d, v in zip(dialogues, values[name]):
                    d.meta.setdefault("scores", {})[name] = v
                    d.meta.setdefault("graded", {})[name] = v
            return
        results = metric.score(dialogues)  # a Metric: keep per-line detail too
        values[name] = [r.reward if graded else r.score for r in results]
        if annotate:
            for d, r in zip(dialogues, results):
                d.meta.setdefault("scores", {})[name] = r.score
                d.meta.setdefault("graded", {})[name] = r.reward
                d.meta.setdefault("details", {})[name] = dict(r.details)
                for t, s in zip(d.simulator_indices(), r.lines):
                    d.turns[t].extra.setdefault("scores", {})[name] = s

def summarize(dialogues: Sequence[Dialogue], values: dict[str, list[float | None]]) -> dict:
    """Means per reward, per-turn consistency curves (the drift), and guard statistics."""
    out = {"n_dialogues": len(dialogues), "means": {k: mean(v) for k, v in values.items()}}
    curves: dict[str, list[float | None]] = {}
    for name in CONSISTENCY:
        per_index: dict[int, list[float]] = {}
        for d in dialogues:
            for k, t in enumerate(d.simulator_indices()):
                s = d.turns[t].extra.get("scores", {}).get(name)
                if s is not None:
                    per_index.setdefault(k, []).append(s)
        if per_index:
            curves[name] = [mean(per_index.get(k, [])) for k in range(max(per_index) + 1)]
    out["drift"] = curves
    out["guards"] = guard_metrics(dialogues)
    return out
