"""Line-to-line consistency: does a simulator line contradict the simulator's earlier lines?

One yes/no judge query per line with the numbered earlier lines (O(T) queries, not O(T^2)
pairs). For a flagged line with several earlier lines, one more multiple-choice query asks
which earlier line it contradicts, so the report names it. Dialogue score =
1 - conflicts / comparisons, where comparisons counts, for each line, the earlier lines it was
checked against. Graded (the training reward) = mean over lines of 1 - P(contradicts an earlier line).
"""

from __future__ import annotations

from typing import Sequence

from simtrain.rewards import prompts
from simtrain.rewards.base import NEUTRAL_LINE, Metric, MetricResult, calibrated, lettered, mean, numbered, speaker_name
from simtrain.rewards.judges import Query
from simtrain.dialogue import Dialogue


def query(d: Dialogue, earlier: list[str], line: str) -> Query:
    return Query(prompts.LINE_TO_LINE.format(speaker=speaker_name(d), history=numbered(earlier), line=line),
                 options=prompts.PROBLEM_FIRST, premise="\n".join(earlier), hypotheses=(line,), premise_is_said=True)


def which_query(d: Dialogue, earlier: list[str], line: str) -> Query:
    options = tuple(f"line {i + 1}" for i in range(len(earlier)))
    return Query(prompts.LINE_TO_LINE_WHICH.format(speaker=speaker_name(d), history=numbered(earlier), line=line,
                                                   options=lettered(options)),
                 options=options, premise=line, hypotheses=tuple(earlier), nli_label="contradiction",
                 premise_is_said=True)


class LineToLine(Metric):
    name = "line_to_line"

    def __init__(self, judge=None, threshold: float = 0.5, calibrate: bool = False):
        super().__init__(judge, threshold)
        self.calibrate = calibrate

    def score(self, dialogues: Sequence[Dialogue]) -> list[MetricResult]:
        qs, where = [], []  # where[k] = (dialogue index, line index)
        for di, d in enumerate(dialogues):
            lines = d.simulator_lines()
            for t in range(1, len(lines)):
                qs.append(query(d, lines[:t], lines[t]))
                where.append((di, t))
                if self.calibrate:
                    qs.append(query(d, lines[:t], NEUTRAL_LINE))
        ps = self.judge.p_problem(qs)
        step = 2 if self.calibrate else 1
        probs = {w: calibrated(ps[k * step], ps[k * step + 1] if self.calibrate else None) for k, w in enumerate(where)}

        # Ask "which earlier line?" only for flagged lines with more than one candidate.
        flagged = [w for w, p in probs.items() if p is not None and p >= self.threshold]
        asks = [w for w in flagged if w[1] > 1]
        picks = self.judge.ask([which_query(dialogues[di], dialogues[di].simulator_lines()[:t],
                                            dialogues[di].simulator_lines()[t]) for di, t in asks])
        conflicts_with = {w: [0] for w in flagged if w[1] == 1}
        for w, ans in zip(asks, picks):
            conflicts_with[w] = [max(range(len(ans)), key=ans.__getitem__)] if ans is not None else []

        results = []
        for di, d in enumerate(dialogues):
            sim_idx = d.simulator_indices()
            n = len(sim_idx)
            per_line: list[float | None] = [None] * n
            conflicts = comparisons = 0
            details = []
            for t in range(1, n):
                p = probs[(di, t)]
                if p is None:
                    continue
                found = 1 if p >= self.threshold else 0
                conflicts += found
                comparisons += t
                per_line[t] = 1.0 - found / t
                if found:
                    details.append({"line": t, "turn": sim_idx[t],
                                    "conflicts_with_turns": [sim_idx[j] for j in conflicts_with.get((di, t), [])]})
            score = 1.0 - conflicts / comparisons if comparisons else None
            p_line = [probs.get((di, t)) for t in range(n)]
            results.append(MetricResult(score, per_line, {"p_contradiction": p_line, "conflicts": details},
                                        graded=mean([None if p is None else 1.0 - p for p in p_line[1:]])))
        return results
