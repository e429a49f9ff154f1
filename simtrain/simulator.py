"""`UserSimulator`: drive a trained (or any) simulator from Python.

    from simtrain import UserSimulator
    sim = UserSimulator.from_pretrained("exported/", task="therapy", persona="therapy-025")
    sim.reply([{"speaker": "agent", "text": "Hello, what brings you here?"}])

Works with an exported directory (its ``simulator.json`` says how it was prompted), a run
folder or checkpoint (a LoRA adapter on its base model), or any HF chat model name/path
(the untrained baseline).
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

import json
from pathlib import Path
from typing import Any, Sequence

from simtrain.envs.personas import Persona, load_personas
from simtrain.envs.tasks import SHORT_REPLY, Task, get_task
from simtrain.dialogue import Turn
from simtrain.generation import ChatFormat, HFGenerator, SamplingConfig
from simtrain.rollout import simulator_messages
from simtrain import models
from dataclasses import replace


def resolve_persona(persona: Persona | dict | str, task: str) -> Persona:
    if isinstance(persona, Persona):
        return persona
    if isinstance(persona, dict):
        return Persona.from_dict(persona, "persona argument")
    for p in load_personas(task):
        if p.id == persona:
            return p
    if len(persona.split()) > 3:  # a free-text description
        return Persona(id="custom", description=persona)
    raise KeyError(f"no persona {persona!r} in the {task} set")


class UserSimulator:
    def __init__(self, lm, task: Task, persona: Persona, sampling: SamplingConfig | None = None,
                 reminder: str = SHORT_REPLY, end_of_turn: str | None = None, seed: int | None = None):
        self.lm = lm
        self.task = task
        self.persona = persona
        self.sampling = sampling or SamplingConfig(temperature=0.7, max_new_tokens=64)
        self.seed = seed  # None: a fresh draw each reply
        self.reminder = reminder
        self.gen = HFGenerator(lm.model, lm.tokenizer)
        self.fmt = ChatFormat(lm.tokenizer, end_of_turn)

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, persona: Persona | dict | str | None = None,
                        task: str = "therapy", **kwargs: Any) -> "UserSimulator":

        path = Path(path_or_name)
        settings: dict = {}
        if (path / "simulator.json").exists():
            settings = json.loads((path / "simulator.json").read_text())
        lm = models.load_simulator(str(path_or_name))
        task_obj = get_task(task)
        tmpl = settings.get("tasks", {}).get(task, {}).get("simulator_prompt")
        if tmpl:

            task_obj = replace(task_obj, simulator_prompt=tmpl)
        if persona is None:
            persona = load_personas(task, split="eval")[0]
        s = settings.get("sampling", {})
        sampling = SamplingConfig(temperature=s.get("temperature", 0.7), top_p=s.get("top_p", 0.95),
                                  max_new_tokens=s.get("max_new_tokens", 64))
        return cls(lm, task_obj, resolve_persona(persona, task), sampling=kwargs.pop("sampling", sampling),
                   reminder=settings.get("reminder", SHORT_REPLY), end_of_turn=settings.get("end_of_turn"), **kwargs)

    def reply(self, history: Sequence[dict | Turn | tuple[str, str]]) -> str:
        """The simulator's next line after ``history`` (agent and simulator turns, oldest first)."""
        import torch

        turns = [h if isinstance(h, Turn) else Turn(*h) if isinstance(h, tuple) else Turn(h["speaker"], h["text"])
                 for h in history]
        if self.seed is not None:
            torch.manual_seed(self.seed)
        prompt = self.fmt.prompt_ids(simulator_messages(self.task, self.persona, turns, self.reminder))
        return self.gen.generate([prompt], self.sampling, use_adapter=True)[0].text
