"""The batched multi-turn rollout engine.

With the ``hf`` engine dialogues run in lockstep: at each utterance, the simulator lines of
every dialogue in the batch come from ONE batched ``generate`` call, then the agent lines from
one call. With the ``vllm`` engine they stream (``continuous``): every line is its own request,
and a line that ends starts its dialogue's next one at once, so no dialogue waits for another's
longer line. For training, each dialogue records (in the simulator's chat template):

* ``prompt_ids``: system prompt + everything before the simulator's first line;
* ``completion_ids``: the whole multi-turn continuation after that prompt;
* ``env_mask``: 1 exactly on tokens the simulator generated, 0 on agent text and template
  scaffolding (so the trainer's loss ignores what the simulator did not say);
* ``logprobs``: the simulator's log-prob of each completion token (0.0 where the mask is 0).

The continuation is grown token by token (never re-tokenised), so the recorded ids are exactly
what the model saw and generated. Each speaker's view of the batch keeps its KV cache across
turns (a :class:`~simtrain.generation.BatchContext`), so a turn runs only its new tokens through
the model; the history is never prefilled twice.
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

from dataclasses import dataclass, field
from typing import Sequence

from simtrain.envs.personas import Persona
from simtrain.envs.agents import AgentView
from simtrain.envs.tasks import SHORT_REPLY, Task, opening_line
from simtrain.dialogue import Dialogue, Turn
from simtrain.generation import (BatchContext, ChatFormat, Generation, Generator, HFGenerator, LineRequest,
                                 LineStream, SamplingConfig)
from simtrain.vllm_generation import VLLMGenerator
from simtrain.reporting import Reporter
from simtrain.envs.personas import load_personas
from simtrain.envs.tasks import get_task
from simtrain.envs.agents import Agent, HFAgent, OpenAIAgent, QuestionBankAgent
from simtrain import models


@dataclass
class RolloutJob:
    """One dialogue to run: a task, a persona and an id."""

    task: Task
    persona: Persona
    id: str
    meta: dict = field(default_factory=dict)


@dataclass
class _State:
    job: RolloutJob
    turns: list[Turn] = field(default_factory=list)
    prompt_ids: list[int] | None = None
    completion: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    sim_fed: int = 0  # tokens of prompt_ids + completion already in the simulator's KV context


def simulator_messages(task: Task, persona: Persona, turns: list[Turn], reminder: str = SHORT_REPLY) -> list[dict]:
    """The conversation as the simulator sees it: agent lines are the "user"."""
    messages = [{"role": "system", "content": task.simulator_system(persona)}]
    if not turns or turns[0].speaker == "simulator":
        messages.append({"role": "user", "content": "(Start the conversation.)"})
    for t in turns:
        if t.speaker == "agent":
            messages.append({"role": "user", "content": t.text + (f"\n\n({reminder})" if reminder else "")})
        else:
            messages.append({"role": "assistant", "content": t.text})
    return messages


def agent_messages(task: Task, persona: Persona, turns: list[Turn]) -> list[dict]:
    """The conversation as the task agent sees it: simulator lines are the "user"."""
    messages = [{"role": "system", "content": task.agent_system(persona)}]
    if not turns or turns[0].speaker == "agent":
        messages.append({"role": "user", "content": f"(The {task.simulator_role} has joined. Begin.)"})
    for t in turns:
        messages.append({"role": "assistant" if t.speaker == "agent" else "user", "content": t.text})
    return messages


class RolloutEngine:
    """Runs batches of simulator-vs-agent dialogues.

    Args:
        simulator: the simulator's generator (``HFGenerator`` with an optional peft adapter, or
            ``VLLMGenerator``).
        agent: the task agent (``envs.agents.HFAgent`` or ``OpenAIAgent``).
        sampling: simulator sampling settings.
        seed: seeds torch before each run, so a fixed seed reproduces the dialogues; None does not seed.
        num_utterances: utterances per dialogue, both speakers counted (the agent's opening too).
        first_speaker: "agent" (default) or "simulator".
        reminder: short-reply reminder appended to each agent line in the simulator's view
            (as in the reference setup); "" turns it off.
        batch_size: dialogues per lockstep batch; dialogues in flight at once when streaming.
        continuous: stream where the generator can (``vllm``) and the agent can join it: each
            dialogue's next line starts as soon as its last one ends, instead of every dialogue
            of a batch waiting for the batch's longest line each turn.
    """

    def __init__(self, simulator: Generator, agent: Agent, sampling: SamplingConfig | None = None,
                 num_utterances: int = 8, first_speaker: str = "agent", reminder: str = SHORT_REPLY,
                 batch_size: int = 16, end_of_turn: str | None = None, reporter: Reporter | None = None,
                 seed: int | None = 0, continuous: bool = True):
        if first_speaker not in ("agent", "simulator"):
            raise ValueError(f"first_speaker must be 'agent' or 'simulator', got {first_speaker!r}")
        if num_utterances < 1:
            raise ValueError("num_utterances must be at least 1")
        self.sim = simulator
        self.agent = agent
        self.sampling = sampling or SamplingConfig()
        self.seed = seed  # seeds torch before each run: a fixed seed reproduces the dialogues
        self.num_utterances = num_utterances
        self.first_speaker = first_speaker
        self.reminder = reminder
        self.batch_size = max(1, batch_size)
        self.continuous = continuous
        self.fmt = ChatFormat(simulator.tok, end_of_turn)
        self.reporter = reporter or Reporter()

    def streams(self) -> bool:
        """Whether runs stream (each dialogue's next line starts as soon as its last one ends):
        when asked for, and the simulator's generator and the agent both can."""
        return self.continuous and isinstance(self.sim, LineStream) and self.agent.streams_on(self.sim)

    def run(self, jobs: Sequence[RolloutJob], record_tokens: bool = True) -> list[Dialogue]:
        """Run all jobs, ``batch_size`` at a time, and return one Dialogue per job, in order."""
        import torch

        if self.seed is not None:
            torch.manual_seed(self.seed)
        with self.reporter.progress(len(jobs) * self.num_utterances, "rollout (utterances)") as advance:
            if self.streams():
                return self._run_streaming(list(jobs), record_tokens, advance)
            out: list[Dialogue] = []
            for i in range(0, len(jobs), self.batch_size):
                out.extend(self._run_batch(list(jobs[i:i + self.batch_size]), record_tokens, advance))
        return out

    def _speaker(self, index: int) -> str:
        other = "simulator" if self.first_speaker == "agent" else "agent"
        return self.first_speaker if index % 2 == 0 else other

    def _run_batch(self, jobs: list[RolloutJob], record_tokens: bool, advance) -> list[Dialogue]:
        states = [_State(job) for job in jobs]
        self._sim_ctx = BatchContext(self.sim.tok.pad_token_id, len(states))
        self.agent.start(len(states))
        for u in range(self.num_utterances):
            if self._speaker(u) == "simulator":
                self._simulator_step(states, record_tokens)
            else:
                self._agent_step(states, u, record_tokens)
            advance(len(states))
        return [self._finish(s, record_tokens) for s in states]

    def _simulator_step(self, states: list[_State], record_tokens: bool) -> None:
        self._sim_ctx.extend([self._simulator_ids(s)[s.sim_fed:] for s in states])
        gens = self.sim.generate_in_context(self._sim_ctx, self.sampling, use_adapter=True, want_logprobs=record_tokens)
        for s, g in zip(states, gens):
            # the context holds the generated tokens, not an end-of-turn added after a cut line:
            # that one is fed with the next turn
            s.sim_fed = len(s.prompt_ids) + len(s.completion) + len(g.token_ids)
            self._add_simulator_line(s, g, record_tokens)

    def _agent_step(self, states: list[_State], u: int, record_tokens: bool) -> None:
        opening = [opening_line(s.job.task, s.job.persona) if u == 0 else "" for s in states]
        texts = opening if all(opening) else self.agent.respond([self._agent_view(s) for s in states])
        for s, text in zip(states, texts):
            self._add_agent_line(s, text)

    def _run_streaming(self, jobs: list[RolloutJob], record_tokens: bool, advance) -> list[Dialogue]:
        """All jobs through the simulator's stream, ``batch_size`` dialogues in flight: a line
        that ends starts its dialogue's next one at once (the agent's, when the agent runs on
        the same engine), and a dialogue that ends lets the next job in. Each line's seed comes
        from its dialogue's seed and its place in the dialogue, so which line ends first does
        not change what is sampled."""
        import itertools

        import torch

        states = [_State(job) for job in jobs]
        seeds = torch.randint(0, 2**31 - 1, (len(jobs),)).tolist()  # torch is seeded by run()
        waiting = iter(range(len(states)))  # dialogues not started yet
        self.agent.start(len(states))

        def line_seed(i: int, u: int) -> int:
            return (seeds[i] * 1_000_003 + u) % (2**31 - 1)

        def last_line(u: int) -> bool:
            """Whether utterance ``u``'s speaker has no later line (the engine may drop its view)."""
            return all(self._speaker(k) != self._speaker(u) for k in range(u + 1, self.num_utterances))

        def play(i: int) -> list[LineRequest]:
            """Play dialogue ``i`` up to its next generated line and return that request; a
            finished dialogue starts the next waiting one instead."""
            s = states[i]
            while len(s.turns) < self.num_utterances:
                u = len(s.turns)
                if self._speaker(u) == "simulator":
                    return [LineRequest(("simulator", i), self._simulator_ids(s), self.sampling, line_seed(i, u),
                                        use_adapter=True, want_logprobs=record_tokens, last=last_line(u))]
                if u == 0:
                    line = opening_line(s.job.task, s.job.persona)
                else:
                    line = self.agent.turn(i, self._agent_view(s), self.sim, line_seed(i, u))
                    if isinstance(line, LineRequest):
                        line.last = last_line(u)
                        return [line]
                self._add_agent_line(s, line)
                advance(1)
            following = next(waiting, None)
            return [] if following is None else play(following)

        def then(key, line: Generation) -> list[LineRequest]:
            speaker, i = key
            s = states[i]
            if speaker == "simulator":
                self._add_simulator_line(s, line, record_tokens)
            else:
                self._add_agent_line(s, self.agent.take(i, self._agent_view(s), line))
            advance(1)
            return play(i)

        self.sim.stream([r for i in itertools.islice(waiting, self.batch_size) for r in play(i)], then)
        return [self._finish(s, record_tokens) for s in states]

    # --- one dialogue's state, shared by the lockstep and the streaming runs ---------------

    def _simulator_ids(self, s: _State) -> list[int]:
        """The simulator's whole token sequence for ``s`` so far (its prompt made on first use)."""
        if s.prompt_ids is None:
            s.prompt_ids = self.fmt.prompt_ids(simulator_messages(s.job.task, s.job.persona, s.turns, self.reminder))
        return s.prompt_ids + s.completion

    def _add_simulator_line(self, s: _State, g: Generation, record_tokens: bool) -> None:
        s.completion += g.token_ids
        s.mask += [1] * len(g.token_ids)
        s.logprobs += g.logprobs if record_tokens else [0.0] * len(g.token_ids)
        if not g.stopped:  # close the turn the way the template would; not the model's token
            s.completion.append(self.fmt.end_of_turn_id)
            s.mask.append(0)
            s.logprobs.append(0.0)
        s.turns.append(Turn("simulator", g.text))

    def _agent_view(self, s: _State) -> AgentView:
        return AgentView(s.job.task, s.job.persona, sum(t.speaker == "agent" for t in s.turns),
                         agent_messages(s.job.task, s.job.persona, s.turns))

    def _add_agent_line(self, s: _State, text: str) -> None:
        if s.prompt_ids is not None:  # the simulator has spoken: extend its continuation
            before = simulator_messages(s.job.task, s.job.persona, s.turns, self.reminder)
            new = {"role": "user", "content": text + (f"\n\n({self.reminder})" if self.reminder else "")}
            ids = self.fmt.next_turn_ids(before, new)
            s.completion += ids
            s.mask += [0] * len(ids)
            s.logprobs += [0.0] * len(ids)
        s.turns.append(Turn("agent", text))

    def _finish(self, s: _State, record_tokens: bool) -> Dialogue:
        d = Dialogue(id=s.job.id, task=s.job.task.name, persona=s.job.persona, turns=s.turns,
                     meta=dict(s.job.meta))
        if record_tokens and s.prompt_ids is not None:
            # Trailing agent tokens carry no training signal; keep them (masked) for the record.
            d.prompt_ids, d.completion_ids = s.prompt_ids, s.completion
            d.env_mask, d.logprobs = s.mask, s.logprobs
        return d


# --- building an engine from a RunConfig -------------------------------------------------


def make_jobs(cfg, split: str | None = None) -> list[RolloutJob]:
    """One job per (task, persona, repeat) from the config's data section."""

    jobs = []
    for task_name in cfg.data.tasks:
        task = get_task(task_name)
        personas = load_personas(cfg.data.personas.get(task_name, task_name), split=split or cfg.data.split)
        if cfg.data.max_personas:
            personas = personas[: cfg.data.max_personas]
        for p in personas:
            for r in range(cfg.rollout.dialogues_per_persona):
                jobs.append(RolloutJob(task, p, f"{task_name}/{p.id}/{r}", {"repeat": r}))
    return jobs


def build_engine(cfg, simulator=None, reporter: Reporter | None = None,
                 max_lora_rank: int | None = None) -> RolloutEngine:
    """Build the engine a RunConfig describes.

    ``simulator`` may be an already loaded ``LoadedModel`` (the learner's policy, eval's model):
    it is run with the ``hf`` engine. Otherwise ``rollout.engine`` decides: ``hf`` loads the
    model from config, ``vllm`` starts a vLLM engine on the model's directory, with LoRA
    adapters up to ``max_lora_rank`` (None: base weights only)."""

    if simulator is None and cfg.rollout.engine == "vllm":
        sim_gen = VLLMGenerator(models.resolve(cfg.simulator.name), models.load_tokenizer(cfg.simulator.name),
                                cfg.rollout.vllm, dtype=cfg.simulator.dtype, max_lora_rank=max_lora_rank,
                                trust_remote_code=cfg.simulator.trust_remote_code)
    else:
        if simulator is None:
            simulator = models.load_with_adapter(cfg.simulator.name, cfg.simulator.adapter, dtype=cfg.simulator.dtype,
                                                 trust_remote_code=cfg.simulator.trust_remote_code)
        sim_gen = HFGenerator(simulator.model, simulator.tokenizer)
    a = cfg.agent
    if a.kind == "bank":
        agent = QuestionBankAgent()
    elif a.kind == "openai":
        agent = OpenAIAgent(a.endpoint.require("agent.endpoint"), a.sampling, seed=cfg.rollout.seed)
    elif a.model in (None, cfg.simulator.name):
        agent = HFAgent(sim_gen, a.sampling, use_adapter=False)  # shared base weights
    else:
        other = models.load(a.model, dtype=cfg.simulator.dtype, trust_remote_code=cfg.simulator.trust_remote_code)
        agent = HFAgent(HFGenerator(other.model, other.tokenizer), a.sampling)
    r = cfg.rollout
    return RolloutEngine(sim_gen, agent, r.sampling, seed=r.seed, num_utterances=r.num_utterances,
                         first_speaker=r.first_speaker, reminder=r.reminder, batch_size=r.batch_size,
                         end_of_turn=r.end_of_turn, reporter=reporter, continuous=r.continuous)
