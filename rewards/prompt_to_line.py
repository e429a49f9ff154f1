"""Prompt-to-line consistency: does each simulator line contradict the persona, or leave its role?

One judge query per line (the line alone, no history), all dialogues in one batch. With
``role=True`` (default) a line that speaks as the task agent or an assistant
(:mod:`simtrain.rewards.role`) has P(problem) = 1, as in the reference work's prompt-to-line
judge. Dialogue score = fraction of lines judged consistent; graded = mean of 1 - P(problem).
"""

from __future__ import annotations

from typing import Sequence

from simtrain.rewards import prompts
from simtrain.rewards.base import (NEUTRAL_LINE, Metric, MetricResult, calibrated, mean, persona_text, speaker_name,
                                   task_context)
from simtrain.rewards.judges import Query
from simtrain.rewards.role import role_problems
from simtrain.dialogue import Dialogue


def query(d: Dialogue, line: str) -> Query:
    scenario, role = task_context(d)
    persona = persona_text(d)
    return Query(prompts.PROMPT_TO_LINE.format(scenario=scenario, role=role, persona=persona, line=line),
                 options=prompts.PROBLEM_FIRST, premise=persona, hypotheses=(line,))


class PromptToLine(Metric):
    """Args: judge; threshold on P(contradiction); calibrate: compare each line with a neutral
    line ("Okay.") for the same persona, which cancels a judge's bias towards YES or NO;
    role: count a line that leaves the simulator's role as inconsistent."""

    name = "prompt_to_line"

    def __init__(self, judge=None, threshold: float = 0.5, calibrate: bool = True, role: bool = True):
        super().__init__(judge, threshold)
        self.calibrate = calibrate
        self.role = role

    def line_probs(self, dialogues: Sequence[Dialogue]) -> list[list[float | None]]:
        """P(line contradicts persona) for every simulator line, calibrated if configured."""
        qs, spans = [], []
        for d in dialogues:
            lines = d.simulator_lines()
            spans.append((len(qs), len(lines)))
            qs += [query(d, l) for l in lines]
            if self.calibrate:
                qs.append(query(d, NEUTRAL_LINE))
        ps = self.judge.p_problem(qs)
        out = []
        for start, n in spans:
            ref = ps[start + n] if self.calibrate else None
            out.append([calibrated(p, ref) for p in ps[start:start + n]])
        return out

    def score(self, dialogues: Sequence[Dialogue]) -> list[MetricResult]:
        results = []
        for d, probs in zip(dialogues, self.line_probs(dialogues)):
            role = [role_problems(l, speaker_name(d), d.task, before) if self.role else []
                    for l, before in zip(d.simulator_lines(), d.agent_lines_before())]
            p_problem = [1.0 if r else p for p, r in zip(probs, role)]
            lines = [None if p is None else float(p < self.threshold) for p in p_problem]
            results.append(MetricResult(mean(lines), lines, {"p_contradiction": probs, "role": role},
                                        graded=mean([None if p is None else 1.0 - p for p in p_problem])))
        return results
