"""A chat session with a simulator: the person at the keyboard plays the task agent.

`simtrain chat` is a thin loop over :class:`ChatSession`; tests and notebooks drive it directly.
"""

from __future__ import annotations

from pathlib import Path

from simtrain.dialogue import Dialogue, Turn
from simtrain.simulator import UserSimulator
from simtrain.rewards.scoring import CONSISTENCY, Scorer
from simtrain.config import load_config


class ChatSession:
    def __init__(self, model: str, task: str = "therapy", persona: str | None = None,
                 config: str | Path | None = None, seed: int | None = None):
        self.sim = UserSimulator.from_pretrained(model, persona=persona, task=task, seed=seed)
        self.turns: list[Turn] = []
        self.config = config
        self._scorer = None

    def say(self, agent_line: str) -> str:
        """Add the agent's line, return the simulator's reply."""
        self.turns.append(Turn("agent", agent_line))
        reply = self.sim.reply(self.turns)
        self.turns.append(Turn("simulator", reply))
        return reply

    def dialogue(self) -> Dialogue:
        return Dialogue("chat", self.sim.task.name, self.sim.persona, list(self.turns))

    def score(self) -> dict[str, float | None]:
        """Consistency of the conversation so far (the three metrics and the composite)."""

        if self._scorer is None:
            cfg = load_config(self.config)
            cfg = cfg.model_copy(update={"rewards": [r for r in cfg.rewards if r.name in CONSISTENCY]})
            self._scorer = Scorer.from_config(cfg)
        values = self._scorer.score([self.dialogue()], annotate=False)
        return {k: v[0] for k, v in values.items()}
