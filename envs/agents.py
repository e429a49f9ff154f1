"""Task agents: the therapist, teacher or chat partner that the simulator talks with.

An agent answers a batch of :class:`AgentView` objects (the task, the persona, the turns so far
and the same conversation as OpenAI-style messages, the agent being the "assistant") with one
line each; ``start(n)`` opens a batch of ``n`` dialogues, whose views every ``respond`` call
then gets in the same order (:class:`Agent`). Three kinds:

* :class:`HFAgent` runs a local model through a :class:`~simtrain.generation.Generator` (the
  ``hf`` or the ``vllm`` engine's);
  when it shares the simulator's generator it uses the base weights with the adapter disabled.
  It keeps each dialogue's view as tokens with its KV cache across a batch's turns, so a turn
  runs only the new tokens through the model.
* :class:`OpenAIAgent` calls any OpenAI-compatible endpoint concurrently.
* :class:`QuestionBankAgent` asks the task's bank of questions in order: sensible turns at no
  generation cost, so a small simulator on a CPU is not answering a 135M agent's nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from simtrain.envs.personas import Persona
from simtrain.envs.tasks import Task, fill_for
from simtrain.generation import BatchContext, ChatFormat, Generation, Generator, LineRequest, SamplingConfig
from simtrain.openai_client import EndpointConfig, EndpointError, chat_completions


@dataclass
class AgentView:
    """What an agent sees of one dialogue when it is its turn."""

    task: Task
    persona: Persona
    agent_lines: int  # lines the agent has said so far (its opening included)
    messages: list[dict]  # the conversation in the agent's view (system prompt first)


class Agent(Protocol):
    """What the engine asks of a task agent, and all it asks (this module has three).

    ``start(n)`` opens a batch of ``n`` dialogues; every ``respond`` call until the next
    ``start`` gets one view per dialogue of that batch, in the same order, and returns one line
    each. An agent may keep state across a batch's calls (the local model keeps its KV cache).

    The streaming engine (``vllm``: each dialogue moves on as soon as its line ends) asks for
    one dialogue at a time instead: ``turn(i, view, stream)`` returns dialogue ``i``'s line, or
    a :class:`~simtrain.generation.LineRequest` for ``stream`` (the engine's generator) to run
    beside the simulator's lines, whose result then goes to ``take(i, view, line)``."""

    def start(self, n: int) -> None: ...

    def respond(self, views: list[AgentView]) -> list[str]: ...

    def turn(self, i: int, view: AgentView, stream: Generator, seed: int) -> str | LineRequest: ...

    def take(self, i: int, view: AgentView, line: Generation) -> str: ...

    def streams_on(self, generator: Generator) -> bool: ...


class _Answers:
    """``turn``/``take`` for an agent whose lines need no generator of the engine's: the line
    is ``respond``'s for that one view (the agent keeps no per-dialogue state)."""

    def turn(self, i: int, view: AgentView, stream: Generator, seed: int) -> str | LineRequest:
        return self.respond([view])[0]

    def take(self, i: int, view: AgentView, line: Generation) -> str:
        raise TypeError(f"{type(self).__name__} never hands the engine a request")

    def streams_on(self, generator: Generator) -> bool:
        return True  # it needs no generator of the engine's


class QuestionBankAgent(_Answers):
    """Asks ``task.questions`` in order (the k-th agent line is question k, wrapping round).
    Fills the persona's placeholders (e.g. ``{topic}``) like every other task template."""

    def start(self, n: int) -> None:
        pass  # stateless: the k-th line depends only on the view

    def respond(self, views: list[AgentView]) -> list[str]:
        out = []
        for v in views:
            if not v.task.questions:
                raise ValueError(f"agent.kind 'bank': task {v.task.name!r} has no question bank (Task.questions)")
            out.append(fill_for(v.task.questions[(v.agent_lines - 1) % len(v.task.questions)], v.persona))
        return out


class HFAgent:
    def __init__(self, generator: Generator, sampling: SamplingConfig, use_adapter: bool = False):
        self.generator = generator
        self.sampling = sampling
        self.use_adapter = use_adapter
        self.fmt = ChatFormat(generator.tok)
        self.start(0)

    def start(self, n: int) -> None:
        self._ctx = BatchContext(self.generator.tok.pad_token_id, n)
        self._ids: list[list[int] | None] = [None] * n  # each dialogue's view as tokens
        self._fed = [0] * n  # of those, already in the KV cache
        self._seen = [0] * n  # messages of the view covered by _ids (the agent's own line included)

    def respond(self, views: list[AgentView]) -> list[str]:
        if len(views) != len(self._ids):
            raise ValueError(f"HFAgent: {len(views)} views for a batch of {len(self._ids)}; call start(n) first")
        for i, v in enumerate(views):
            self._extend_view(i, v)
        self._ctx.extend([ids[fed:] for ids, fed in zip(self._ids, self._fed)])
        gens = self.generator.generate_in_context(self._ctx, self.sampling, use_adapter=self.use_adapter)
        for i, (v, g) in enumerate(zip(views, gens)):
            # the cache holds the generated tokens, not an end-of-turn added after a cut line:
            # that one is fed with the next turn
            self._fed[i] = len(self._ids[i]) + len(g.token_ids)
            self.take(i, v, g)
        return [g.text for g in gens]

    def turn(self, i: int, view: AgentView, stream: Generator, seed: int) -> str | LineRequest:
        if not self.streams_on(stream):  # its own model: not something the engine's stream can run
            raise ValueError("HFAgent on a model of its own cannot join the streaming engine; it runs in lockstep")
        return LineRequest(("agent", i), list(self._extend_view(i, view)), self.sampling, seed,
                           use_adapter=self.use_adapter)

    def take(self, i: int, view: AgentView, line: Generation) -> str:
        self._ids[i] += line.token_ids
        if not line.stopped:  # close the turn the way the template would
            self._ids[i].append(self.fmt.end_of_turn_id)
        self._seen[i] = len(view.messages) + 1
        return line.text

    def streams_on(self, generator: Generator) -> bool:
        """Whether ``turn`` can hand its lines to ``generator``'s stream (it shares the model)."""
        return generator is self.generator

    def _extend_view(self, i: int, v: AgentView) -> list[int]:
        """Dialogue ``i``'s view as tokens, grown by the other side's new line."""
        if self._ids[i] is None:
            self._ids[i] = self.fmt.prompt_ids(v.messages)
        elif len(v.messages) == self._seen[i] + 1:  # the other side's new line, as a user turn
            self._ids[i] += self.fmt.next_turn_ids(v.messages[:-1], v.messages[-1])
        else:
            raise ValueError(f"HFAgent: view {i} has {len(v.messages)} messages, expected {self._seen[i] + 1} "
                             "(one new line since the agent spoke)")
        return self._ids[i]


class OpenAIAgent(_Answers):
    def __init__(self, endpoint: EndpointConfig, sampling: SamplingConfig, seed: int | None = None):
        self.endpoint = endpoint
        self.sampling = sampling
        self.seed = seed  # sent with each request, for servers that honour it

    def start(self, n: int) -> None:
        pass  # each request carries the whole conversation

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
