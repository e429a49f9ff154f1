"""Personas: who the simulator plays.

A persona has a free-text ``description`` (what the simulator's system prompt carries),
structured ``facts``, and ``probes``: multiple-choice questions about the persona with a
ground-truth answer, used by the Q&A reward. Personas load from the built-in sets
(``envs/data/<task>.jsonl``), from the user's JSONL or CSV files, or from a ``datasets`` dataset.
A malformed record raises :class:`PersonaFormatError` naming the file, the record and the field.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

DATA_DIR = Path(__file__).parent / "data"


class PersonaFormatError(ValueError):
    """A persona record is malformed; the message names the source, the record and the field."""


@dataclass
class Probe:
    question: str
    answer: str
    choices: list[str] = field(default_factory=list)  # empty: free-form answer


@dataclass
class Persona:
    id: str
    description: str
    name: str = ""
    split: str = "train"
    facts: dict[str, str] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, rec: Any, where: str) -> "Persona":
        def bad(name: str, why: str) -> PersonaFormatError:
            return PersonaFormatError(f"{where}: field {name!r}: {why}")

        if not isinstance(rec, dict):
            raise PersonaFormatError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in ("id", "description"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise bad(key, "missing or not a non-empty string")
        split = rec.get("split") or "train"
        if split not in ("train", "eval"):
            raise bad("split", f"must be 'train' or 'eval', got {split!r}")
        def structured(name: str, kind: type, default):
            value = rec.get(name) or default
            if isinstance(value, str):  # CSV cells carry JSON text
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise bad(name, "not valid JSON") from None
            if not isinstance(value, kind):
                raise bad(name, f"expected {'an object of strings' if kind is dict else 'a list'}")
            return value

        facts = structured("facts", dict, {})
        probes_raw = structured("probes", list, [])
        probes = []
        for j, p in enumerate(probes_raw):
            if not isinstance(p, dict) or not isinstance(p.get("question"), str) \
                    or not isinstance(p.get("answer"), str):
                raise bad(f"probes[{j}]", "expected {'question': str, 'answer': str, 'choices': [str]}")
            choices = p.get("choices") or []
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise bad(f"probes[{j}].choices", "expected a list of strings")
            if choices and p["answer"] not in choices:
                raise bad(f"probes[{j}].answer", f"{p['answer']!r} is not one of its choices")
            probes.append(Probe(p["question"], p["answer"], list(choices)))
        return cls(
            id=rec["id"], description=rec["description"].strip(), name=str(rec.get("name") or ""),
            split=split, facts={str(k): str(v) for k, v in facts.items()}, probes=probes,
        )


def _records_from_file(path: Path) -> Iterable[tuple[str, Any]]:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh), 2):  # line 1 is the header
                yield f"{path}:{i}", row
        return
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield f"{path}:{i}", json.loads(line)
                except json.JSONDecodeError as err:
                    raise PersonaFormatError(f"{path}:{i}: invalid JSON ({err.msg})") from None


def load_personas(source: str | Path | Any, split: str | None = None) -> list[Persona]:
    """Load personas from a built-in task name, a .jsonl/.csv path, or a ``datasets`` Dataset.

    ``split`` ("train" or "eval") keeps only that part of the fixed split.
    """
    if hasattr(source, "column_names"):  # a datasets.Dataset
        records = ((f"dataset row {i}", dict(r)) for i, r in enumerate(source))
    else:
        path = Path(source)
        if not path.exists() and (DATA_DIR / f"{source}.jsonl").exists():
            path = DATA_DIR / f"{source}.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"No persona file or built-in persona set named {str(source)!r}")
        records = _records_from_file(path)
    personas, seen = [], set()
    for where, rec in records:
        p = Persona.from_dict(rec, where)
        if p.id in seen:
            raise PersonaFormatError(f"{where}: field 'id': duplicate persona id {p.id!r}")
        seen.add(p.id)
        personas.append(p)
    if split is not None:
        personas = [p for p in personas if p.split == split]
    return personas
