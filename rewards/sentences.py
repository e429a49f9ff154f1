"""Sentence splitting: the unit the judge compares, one description sentence at a time.

Its own module because two jobs need it: the runtime judge (``judges.py``) and the training-data
generator (``judge_data.py``). A change here changes what the judge is trained on, so the judge's
cache version (``train_judge.JudgeTrainConfig.version``) includes this file.
"""

from __future__ import annotations

import re

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


_ABBREV = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Prof|Jr|Sr|vs|etc)\.$")


def sentences(text: str) -> list[str]:
    """Split a description or a line into sentences (the judge compares one at a time)."""
    out: list[str] = []
    for piece in (p.strip() for p in _SENT.split(text.strip())):
        if out and _ABBREV.search(out[-1]):
            out[-1] += " " + piece  # "Mr. Li" is one sentence
        elif piece:
            out.append(piece)
    return out
