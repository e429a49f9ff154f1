"""The `Dialogue` dataclass and the JSONL interchange format every command reads and writes.

One dialogue per line::

    {"id": str, "task": str,
     "persona": {"id": str, "description": str, "probes": [{"question": str, "answer": str}], ...},
     "turns": [{"speaker": "simulator" | "agent", "text": str, ...}],
     "meta": {...}}

Unknown keys on a turn (for example ``labels`` or ``scores``) and in ``persona``/``meta`` are
kept as they are, so files written by other tools round-trip unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

SPEAKERS = ("simulator", "agent")


class DialogueFormatError(ValueError):
    """A dialogue record is malformed; the message names the file, the line and the field."""


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
    persona: dict[str, Any]
    turns: list[Turn] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # Filled by the rollout engine for training; never serialised.
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    env_mask: list[int] | None = None
    logprobs: list[float] | None = None

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
            "persona": self.persona,
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
        persona = record["persona"]
        for key in ("id", "description"):
            if not isinstance(persona.get(key), str):
                raise bad(f"persona.{key}", "missing or not a string")
        probes = persona.get("probes", [])
        if not isinstance(probes, list):
            raise bad("persona.probes", "expected a list")
        for j, probe in enumerate(probes):
            if not isinstance(probe, dict) or not isinstance(probe.get("question"), str) \
                    or not isinstance(probe.get("answer"), str):
                raise bad(f"persona.probes[{j}]", "expected {'question': str, 'answer': str}")
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
    sim_name = sim_name or d.persona.get("name") or "Simulator"
    agent_name = agent_name or "Agent"
    lines = [f"== {d.id} [{d.task}] persona {d.persona.get('id')} =="]
    for t in d.turns:
        who = sim_name if t.speaker == "simulator" else agent_name
        lines.append(f"{who}: {t.text}")
    return "\n".join(lines)
