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
from pathlib import Path
from typing import Any, Iterable

# The types live in the bottom layer (a Dialogue carries its Persona); re-exported here, where
# plug-in code that loads personas looks for them.
from simtrain.dialogue import Persona, PersonaFormatError, Probe

__all__ = ["Persona", "PersonaFormatError", "Probe", "load_personas", "DATA_DIR"]

DATA_DIR = Path(__file__).parent / "data"


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
