"""Task agents: the therapist, teacher or chat partner that the simulator talks with.

An agent answers a batch of :class:`AgentView` objects (the task, the persona, the turns so far
and the same conversation as OpenAI-style messages, the agent being the "assistant") with one
line each. Three kinds:

* :class:`HFAgent` runs a local model through an :class:`~simtrain.generation.HFGenerator`;
  when it shares the simulator's generator it uses the base weights with the adapter disabled.
* :class:`OpenAIAgent` calls any OpenAI-compatible endpoint concurrently.
* :class:`QuestionBankAgent` asks the task's bank of questions in order: sensible turns at no
  generation cost, so a small simulator on a CPU is not answering a 135M agent's nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass

from simtrain.envs.personas import Persona
from simtrain.envs.tasks import Task, fill_for
from simtrain.generation import ChatFormat, HFGenerator, SamplingConfig
from simtrain.openai_client import EndpointConfig, EndpointError, chat_completions


@dataclass
class AgentView:
    """What an agent sees of one dialogue when it is its turn."""

    task: Task
    persona: Persona
    agent_lines: int  # lines the agent has said so far (its opening included)
    messages: list[dict]  # the conversation in the agent's view (system prompt first)


class QuestionBankAgent:
    """Asks ``task.questions`` in order (the k-th agent line is question k, wrapping round).
    Fills the persona's placeholders (e.g. ``{topic}``) like every other task template."""

    def respond(self, views: list[AgentView]) -> list[str]:
        out = []
        for v in views:
            if not v.task.questions:
                raise ValueError(f"agent.kind 'bank': task {v.task.name!r} has no question bank (Task.questions)")
            out.append(fill_for(v.task.questions[(v.agent_lines - 1) % len(v.task.questions)], v.persona))
        return out


class HFAgent:
    def __init__(self, generator: HFGenerator, sampling: SamplingConfig, use_adapter: bool = False):
        self.generator = generator
        self.sampling = sampling
        self.use_adapter = use_adapter
        self.fmt = ChatFormat(generator.tok)

    def respond(self, views: list[AgentView]) -> list[str]:
        prompts = [self.fmt.prompt_ids(v.messages) for v in views]
        gens = self.generator.generate(prompts, self.sampling, use_adapter=self.use_adapter)
        return [g.text for g in gens]


class OpenAIAgent:
    def __init__(self, endpoint: EndpointConfig, sampling: SamplingConfig, seed: int | None = None):
        self.endpoint = endpoint
        self.sampling = sampling
        self.seed = seed  # sent with each request, for servers that honour it

    def respond(self, views: list[AgentView]) -> list[str]:
        s = self.sampling
        bodies = [{"messages": v.messages, "max_tokens": s.max_new_tokens, "temperature": s.temperature,
                   "top_p": s.top_p} | ({"seed": self.seed} if self.seed is not None else {})
                  for v in views]
        results = chat_completions(self.endpoint, bodies)
        failed = [r for r in results if isinstance(r, EndpointError)]
        if failed:
            raise EndpointError(f"task agent: {len(failed)} of {len(results)} requests failed; first: {failed[0]}")
        return [(r["choices"][0]["message"].get("content") or "").strip() for r in results]
