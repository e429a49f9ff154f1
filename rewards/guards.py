"""Guards against reward hacking. No judge: fast, deterministic text checks.

The reference work saw trained patients collapse into short, formulaic restatements of their
persona, and saw lines that only ask questions pass the consistency judge. Each guard scores
a dialogue in [0, 1] (1 = no problem) from per-line flags, and is a reward that training
configs turn on by default.
"""

from __future__ import annotations

import re
from typing import Sequence

from simtrain.rewards.base import Metric, MetricResult, mean
from simtrain.dialogue import Dialogue

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def distinct_n(lines: Sequence[str], n: int = 2) -> float | None:
    """Distinct n-grams / all n-grams over the lines (1.0 = no repetition)."""
    grams = [g for l in lines for g in (tuple(words(l)[i:i + n]) for i in range(len(words(l)) - n + 1))]
    return len(set(grams)) / len(grams) if grams else None


def is_question_only(line: str) -> bool:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", line.strip()) if s.strip()]
    return bool(sentences) and all(s.endswith("?") for s in sentences)


def copies_persona(line: str, persona: str, n: int = 5, max_share: float = 0.5) -> bool:
    """True when over ``max_share`` of the line's n-grams appear verbatim in the persona text."""
    grams = ngrams(words(line), n)
    return bool(grams) and len(grams & ngrams(words(persona), n)) / len(grams) > max_share


def repeats(line: str, earlier: Sequence[str], max_overlap: float = 0.6) -> bool:
    """True when the line shares over ``max_overlap`` of its bigrams with one earlier line."""
    mine = ngrams(words(line), 2)
    if not mine:
        return bool(earlier) and any(words(e) == words(line) for e in earlier)
    return any(len(mine & ngrams(words(e), 2)) / len(mine) > max_overlap for e in earlier)


class _Guard(Metric):
    """A guard takes only its own named options: a misspelt one is a TypeError, which the
    registry reports with the reward's name (the project's unknown-keys rule)."""

    needs_judge = False

    def __init__(self, judge=None, threshold: float = 0.5):
        super().__init__(None, threshold)

    def flag(self, line: str, earlier: list[str], d: Dialogue) -> bool:  # pragma: no cover
        raise NotImplementedError

    def score(self, dialogues: Sequence[Dialogue]) -> list[MetricResult]:
        out = []
        for d in dialogues:
            lines = d.simulator_lines()
            per = [0.0 if self.flag(l, lines[:i], d) else 1.0 for i, l in enumerate(lines)]
            out.append(MetricResult(mean(per), per))
        return out


class NoRepetition(_Guard):
    """Flags a line that repeats an earlier line of the simulator."""

    name = "guard_repetition"

    def __init__(self, judge=None, threshold: float = 0.5, max_overlap: float = 0.6):
        super().__init__(judge, threshold)
        self.max_overlap = max_overlap

    def flag(self, line, earlier, d):
        return repeats(line, earlier, self.max_overlap)


class NoQuestionOnly(_Guard):
    """Flags a line made only of questions (a judge-pleasing dodge)."""

    name = "guard_questions"

    def flag(self, line, earlier, d):
        return is_question_only(line)


class NoPersonaCopy(_Guard):
    """Flags a line that copies the persona description verbatim."""

    name = "guard_copy"

    def __init__(self, judge=None, threshold: float = 0.5, max_share: float = 0.5):
        super().__init__(judge, threshold)
        self.max_share = max_share

    def flag(self, line, earlier, d):
        return copies_persona(line, d.persona.description, max_share=self.max_share)


class MinLength(_Guard):
    """Flags a line with fewer than ``min_words`` words (default 4)."""

    name = "guard_length"

    def __init__(self, judge=None, threshold: float = 0.5, min_words: int = 4):
        super().__init__(judge, threshold)
        self.min_words = min_words

    def flag(self, line, earlier, d):
        return len(words(line)) < self.min_words


class SpeaksAsPersona(_Guard):
    """Flags a line that does not speak as the persona at all: a stage direction or action in
    brackets, or a line in another language. Such lines give an NLI judge nothing to contradict,
    so consistency rewards alone pay for them."""

    name = "guard_voice"

    def flag(self, line, earlier, d):
        return stage_direction(line) or foreign(line)


# An action or stage direction: "(Pauses, glances at the clock)", "*sighs*", "(Sighs, starting
# to speak...)". The trained 135M simulator learned to write these because a cross-encoder finds
# nothing in them to contradict (bench/results/train_drift_long*: 27 of 192 lines, base 0).
_STAGE = re.compile(r"\(\s*[A-Za-z][^()]{2,}\)|\*[A-Za-z][^*]{2,}\*")
# Function words of the languages the 135M model slips into; English has none of them as words.
_FOREIGN = set("ich und der die das wir sich ist nicht du sie wolle heißt mit auf eine ein den dem zu "
               "je suis les des est une avec pour pas que qui "
               "el los las una por para pero como está yo".split())


def stage_direction(line: str) -> bool:
    return bool(_STAGE.search(line))


def foreign(line: str, min_words: int = 2) -> bool:
    """True when at least ``min_words`` of the line's words are German, French or Spanish
    function words (the simulator is asked for English)."""
    return sum(w in _FOREIGN for w in words(line)) >= min_words


def guard_metrics(dialogues: Sequence[Dialogue]) -> dict[str, float | None]:
    """Summary statistics that show collapse: line length, distinct-2, question-only rate."""
    lines = [l for d in dialogues for l in d.simulator_lines()]
    return {
        "mean_line_words": mean([float(len(words(l))) for l in lines]),
        "distinct_2": distinct_n(lines, 2),
        "question_only_rate": mean([float(is_question_only(l)) for l in lines]),
        "stage_direction_rate": mean([float(stage_direction(l)) for l in lines]),
        "foreign_rate": mean([float(foreign(l)) for l in lines]),
    }
