"""The `Dialogue` dataclass and the JSONL interchange format every command reads and writes.

One dialogue per line::

    {"id": str, "task": str,
     "persona": {"id": str, "description": str, "name": str, "split": "train" | "eval",
                 "facts": {str: str}, "probes": [{"question": str, "answer": str, "choices": [str]}], ...},
     "turns": [{"speaker": "simulator" | "agent", "text": str, ...}],
     "meta": {...}}

Unknown keys on a turn (for example ``labels`` or ``scores``) and in ``persona``/``meta`` are
kept as they are, so files written by other tools keep their data. A persona's optional fields
(``name``, ``split``, ``facts``, ``choices``) are written with their defaults when absent.

This is the bottom layer: ``Persona``, ``Turn`` and ``Dialogue`` import nothing of the project,
so every stage above can pass them along typed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

SPEAKERS = ("simulator", "agent")


class DialogueFormatError(ValueError):
    """A dialogue record is malformed; the message names the file, the line and the field."""


class PersonaFormatError(ValueError):
    """A persona record is malformed; the message names the source, the record and the field."""


PERSONA_FIELDS = ("id", "description", "name", "split", "facts", "probes")


@dataclass
class Probe:
    question: str
    answer: str
    choices: list[str] = field(default_factory=list)  # empty: free-form answer


@dataclass
class Persona:
    """Who the simulator plays: a free-text ``description`` (what its system prompt carries),
    structured ``facts`` (fill the task's templates) and ``probes`` (the Q&A reward's questions)."""

    id: str
    description: str
    name: str = ""
    split: str = "train"
    facts: dict[str, str] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim

    @property
    def display_name(self) -> str:
        return self.name or self.facts.get("name", "")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "name": self.name, "split": self.split,
                "facts": dict(self.facts),
                "probes": [{"question": p.question, "answer": p.answer, "choices": list(p.choices)}
                           for p in self.probes],
                **self.extra}

    @classmethod
    def from_dict(cls, rec: Any, where: str, prefix: str = "") -> "Persona":
        """Validate one record; ``prefix`` ("persona.") names the field inside a dialogue."""
        def bad(name: str, why: str) -> PersonaFormatError:
            return PersonaFormatError(f"{where}: field {prefix + name!r}: {why}")

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
        probes = []
        for j, p in enumerate(structured("probes", list, [])):
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
            extra={k: v for k, v in rec.items() if k not in PERSONA_FIELDS},
        )


@dataclass
class Turn:
    speaker: str
    text: str
    extra: dict[str, Any] = field(default_factory=dict)  # labels, scores, ... (kept verbatim)

    def to_dict(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "text": self.text, **self.extra}


@dataclass
class Dialogue:
    """A multi-turn conversation between the simulator and a task agent.

    The training-only fields (token ids, mask, log-probs) are filled by the rollout engine and
    are not written to the interchange file.
    """

    id: str
    task: str
    persona: Persona
    turns: list[Turn] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # Filled by the rollout engine for training; never serialised.
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    env_mask: list[int] | None = None
    logprobs: list[float] | None = None

    def __post_init__(self):
        if isinstance(self.persona, dict):  # convenience for hand-built dialogues; validated the same way
            try:
                self.persona = Persona.from_dict(self.persona, f"dialogue {self.id!r}", "persona.")
            except PersonaFormatError as err:
                raise DialogueFormatError(str(err)) from None

    def simulator_lines(self) -> list[str]:
        return [t.text for t in self.turns if t.speaker == "simulator"]

    def agent_lines_before(self) -> list[str]:
        """For each simulator line, the other speaker's line just before it ("" when none)."""
        out, previous = [], ""
        for t in self.turns:
            if t.speaker == "simulator":
                out.append(previous)
            else:
                previous = t.text
        return out

    def simulator_indices(self) -> list[int]:
        return [i for i, t in enumerate(self.turns) if t.speaker == "simulator"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "persona": self.persona.to_dict(),
            "turns": [t.to_dict() for t in self.turns],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, record: Any, where: str = "record") -> "Dialogue":
        def bad(fieldname: str, why: str) -> DialogueFormatError:
            return DialogueFormatError(f"{where}: field {fieldname!r}: {why}")

        if not isinstance(record, dict):
            raise DialogueFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
        for key, kind in (("id", str), ("task", str), ("persona", dict), ("turns", list)):
            if key not in record:
                raise bad(key, "missing")
            if not isinstance(record[key], kind):
                raise bad(key, f"expected {kind.__name__}, got {type(record[key]).__name__}")
        try:
            persona = Persona.from_dict(record["persona"], where, "persona.")
        except PersonaFormatError as err:
            raise DialogueFormatError(str(err)) from None
        turns = []
        for j, turn in enumerate(record["turns"]):
            if not isinstance(turn, dict):
                raise bad(f"turns[{j}]", "expected an object")
            if turn.get("speaker") not in SPEAKERS:
                raise bad(f"turns[{j}].speaker", f"must be one of {SPEAKERS}, got {turn.get('speaker')!r}")
            if not isinstance(turn.get("text"), str):
                raise bad(f"turns[{j}].text", "missing or not a string")
            extra = {k: v for k, v in turn.items() if k not in ("speaker", "text")}
            turns.append(Turn(turn["speaker"], turn["text"], extra))
        meta = record.get("meta", {})
        if not isinstance(meta, dict):
            raise bad("meta", "expected an object")
        return cls(id=record["id"], task=record["task"], persona=persona, turns=turns, meta=meta)


def read_dialogues(path: str | Path) -> list[Dialogue]:
    """Read and validate an interchange JSONL file; errors name the file and line number."""
    return list(iter_dialogues(path))


def iter_dialogues(path: str | Path) -> Iterator[Dialogue]:
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DialogueFormatError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
            yield Dialogue.from_dict(record, where)


def write_dialogues(dialogues: Iterable[Dialogue], path: str | Path) -> Path:
    """Write dialogues as interchange JSONL atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for d in dialogues:
            fh.write(json.dumps(d.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def transcript(d: Dialogue, sim_name: str | None = None, agent_name: str | None = None) -> str:
    """A readable transcript for terminals and model cards."""
    sim_name = sim_name or d.persona.display_name or "Simulator"
    agent_name = agent_name or "Agent"
    lines = [f"== {d.id} [{d.task}] persona {d.persona.id} =="]
    for t in d.turns:
        who = sim_name if t.speaker == "simulator" else agent_name
        lines.append(f"{who}: {t.text}")
    return "\n".join(lines)
