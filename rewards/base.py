"""What every consistency metric shares: its result type and the TRL reward adapter.

A metric scores whole dialogues. ``metric.score(dialogues)`` gives a :class:`MetricResult`
per dialogue with two readings of the same judgements:

* ``score`` / ``lines``: verdicts thresholded at the judge's rule (a line is consistent or not),
  for reports, eval and README tables;
* ``graded``: 1 - P(problem) per line, averaged over the dialogue, the training reward. A 0/1
  verdict per line gives a 4-line dialogue five possible scores, so most GRPO groups would carry
  no advantage; the graded value moves with every change in the judge's confidence.

``None`` means nothing could be judged. Called as ``metric(prompts, completions, dialogues=...,
**kw)`` a metric is a TRL reward function returning the graded value (or None) per dialogue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from simtrain.dialogue import Dialogue
from simtrain.envs.tasks import TASKS, fill_for


@dataclass
class MetricResult:
    score: float | None  # dialogue verdict score in [0, 1]; None when nothing could be judged
    lines: list[float | None]  # per simulator line (aligned with dialogue.simulator_lines())
    details: dict[str, Any] = field(default_factory=dict)
    graded: float | None = None  # mean 1 - P(problem); None: the metric has only verdicts (then = score)

    @property
    def reward(self) -> float | None:
        """The training value: graded where the metric has it, else the verdict score."""
        return self.score if self.graded is None else self.graded

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "graded": self.reward, "lines": self.lines, **self.details}


def mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def calibrated(p: float | None, reference: float | None) -> float | None:
    """P(problem) relative to the same question about a neutral line: sigmoid(logit p - logit ref).
    0.5 then means "no more suspicious than a line that says nothing"."""
    if p is None or reference is None:
        return p
    return 1 / (1 + math.exp(-(logit(p) - logit(reference))))


NEUTRAL_LINE = "Okay."


def persona_text(d: Dialogue) -> str:
    return d.persona.description


def speaker_name(d: Dialogue) -> str:
    return d.persona.display_name or "the speaker"


def task_context(d: Dialogue) -> tuple[str, str]:
    """(scenario, simulator role) for a dialogue's task; generic for unknown tasks."""
    task = TASKS.get(d.task)
    if task is None:
        return d.meta.get("scenario", "A conversation."), d.meta.get("role", "person")
    return fill_for(task.scenario, d.persona), task.simulator_role


def numbered(lines: Sequence[str]) -> str:
    return "\n".join(f"{i + 1}. \"{l}\"" for i, l in enumerate(lines)) or "(none)"


def lettered(options: Sequence[str]) -> str:
    """Multiple-choice options as the judge reads them: "A. ...", "B. ...", ..."""
    return "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options))


class Metric:
    """Base for the consistency metrics; subclasses implement ``score``."""

    name = "metric"
    needs_judge = True

    def __init__(self, judge=None, threshold: float = 0.5):
        self.judge = judge
        self.threshold = threshold
        self.__name__ = self.name  # TRL logs reward functions by __name__

    def score(self, dialogues: Sequence[Dialogue]) -> list[MetricResult]:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, prompts=None, completions=None, dialogues=None, **kwargs) -> list[float | None]:
        if dialogues is None:
            raise ValueError(f"reward {self.name!r} needs the dialogue objects (kwarg 'dialogues')")
        return [r.reward for r in self.score(dialogues)]
