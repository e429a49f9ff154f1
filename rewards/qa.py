"""Q&A consistency (global drift): do the simulator's lines still answer questions about the
persona correctly?

The persona's probes (questions with a ground-truth answer and, ideally, choices) are asked
after chosen points of the dialogue, "based only on what the simulator said so far". A probe
with choices gets one multiple-choice query (its choices plus "Not mentioned"); a probe without
choices gets one yes/no query ("is what they said consistent with this fact?"). Answers of "Not mentioned"
are not counted either way: a probe the simulator has not addressed is left out, never scored 0.
Dialogue score = correct / answered; graded = mean over answered probes of P(correct answer),
renormalised without "Not mentioned".

Cost: probes x checkpoints queries per dialogue (default checkpoints: half-way and the end),
all batched, against 5 + 10*T judge calls in the reference implementation.
"""

from __future__ import annotations

from typing import Sequence

from simtrain.rewards import prompts
from simtrain.rewards.base import Metric, MetricResult, lettered, mean, numbered, speaker_name
from simtrain.rewards.judges import Query
from simtrain.dialogue import Dialogue, Probe

def checkpoints(n_lines: int, when: str | list[int]) -> list[int]:
    """Numbers of simulator lines after which probes are asked."""
    if n_lines == 0:
        return []
    if when == "end":
        return [n_lines]
    if when == "each":
        return list(range(1, n_lines + 1))
    if when == "half":
        return sorted({max(1, n_lines // 2), n_lines})
    return sorted({k for k in when if 1 <= k <= n_lines})


def probe_query(d: Dialogue, said: list[str], probe: Probe) -> Query:
    speaker, history = speaker_name(d), numbered(said)
    choices = list(probe.choices)
    if not choices:
        return Query(prompts.FACT_CHECK.format(speaker=speaker, history=history, question=probe.question,
                                               answer=probe.answer),
                     options=prompts.PROBLEM_FIRST, premise="\n".join(said),
                     hypotheses=(f"{probe.question} {probe.answer}",))
    options = tuple(choices + [prompts.NOT_MENTIONED])
    hyps = tuple(prompts.NLI_QA_HYPOTHESIS.format(question=probe.question, answer=o) for o in options)
    return Query(prompts.QA.format(speaker=speaker, history=history, question=probe.question, options=lettered(options)),
                 options=options, premise="\n".join(said), hypotheses=hyps)


def judged(probe: Probe, q: Query, answer, threshold: float = 0.5) -> tuple[bool, float] | None:
    """(correct, P(correct)) for a counted answer; None for "Not mentioned" or a failed judgement.
    A yes/no probe is correct when P(inconsistent) is below ``threshold``."""
    if answer is None:
        return None
    if q.is_yes_no:
        return answer[0] < threshold, 1.0 - answer[0]  # the problem answer is option 0
    pick = q.options[max(range(len(answer)), key=answer.__getitem__)]
    if pick == prompts.NOT_MENTIONED:
        return None
    said = [p for o, p in zip(q.options, answer) if o != prompts.NOT_MENTIONED]
    p_right = sum(p for o, p in zip(q.options, answer) if o == probe.answer)
    return pick == probe.answer, p_right / sum(said) if sum(said) > 0 else 0.0


class QA(Metric):
    name = "qa"

    def __init__(self, judge=None, threshold: float = 0.5, when: str | list[int] = "half", max_probes: int = 5):
        super().__init__(judge, threshold)
        self.when = when
        self.max_probes = max_probes

    def score(self, dialogues: Sequence[Dialogue]) -> list[MetricResult]:
        qs, where = [], []
        for di, d in enumerate(dialogues):
            lines = d.simulator_lines()
            for k in checkpoints(len(lines), self.when):
                for probe in d.persona.probes[: self.max_probes]:
                    qs.append(probe_query(d, lines[:k], probe))
                    where.append((di, k, probe))
        answers = self.judge.ask(qs)
        per: dict[tuple[int, int], list[tuple[bool, float]]] = {}
        for (di, k, probe), q, a in zip(where, qs, answers):
            j = judged(probe, q, a, self.threshold)
            if j is not None:
                per.setdefault((di, k), []).append(j)
        results = []
        for di, d in enumerate(dialogues):
            n = len(d.simulator_lines())
            lines: list[float | None] = [None] * n
            counted = []
            for k in checkpoints(n, self.when):
                got = per.get((di, k), [])
                counted += got
                lines[k - 1] = mean([float(c) for c, _ in got])
            results.append(MetricResult(mean([float(c) for c, _ in counted]), lines,
                                        {"answered": len(counted), "asked": sum(1 for w in where if w[0] == di)},
                                        graded=mean([p for _, p in counted])))
        return results
