import torch

from simtrain.envs.agents import AgentView, HFAgent, OpenAIAgent, QuestionBankAgent
from simtrain.envs.personas import load_personas
from simtrain.envs.tasks import get_task
from simtrain.generation import HFGenerator, SamplingConfig
from simtrain.openai_client import EndpointConfig
from simtrain.rollout import RolloutEngine, RolloutJob, agent_messages

from conftest import chat_reply
from engine_contract import check_mask_is_the_simulator_lines, fresh_logprob_gap


def jobs(n=3):
    out = []
    for i, task in enumerate(["therapy", "education", "chitchat"][:n]):
        p = load_personas(task, split="train")[i]
        out.append(RolloutJob(get_task(task), p, f"{task}-{i}"))
    return out


def engine(lm, **kw):
    gen = HFGenerator(lm.model, lm.tokenizer)
    sampling = kw.pop("sampling", SamplingConfig(temperature=1.0, max_new_tokens=12))
    kw.setdefault("seed", 7)
    return RolloutEngine(gen, HFAgent(gen, SamplingConfig(temperature=1.0, max_new_tokens=10)), sampling, **kw)


def test_speakers_alternate_as_configured(tiny):
    for first, n in (("agent", 5), ("simulator", 4)):
        ds = engine(tiny, num_utterances=n, first_speaker=first).run(jobs(2))
        for d in ds:
            assert len(d.turns) == n
            expected = [first if i % 2 == 0 else ({"agent": "simulator", "simulator": "agent"}[first]) for i in range(n)]
            assert [t.speaker for t in d.turns] == expected
        if first == "agent":  # the task's fixed opening line is the first utterance
            assert ds[0].turns[0].text.startswith("Hello, thank you for coming in")


def test_mask_covers_exactly_the_simulator_tokens(tiny):
    for d in engine(tiny, num_utterances=6).run(jobs(3)):
        check_mask_is_the_simulator_lines(d, tiny.tokenizer, 3)


def test_recorded_logprobs_match_a_fresh_forward_pass(tiny):
    temp = 0.9
    ds = engine(tiny, num_utterances=4,
                sampling=SamplingConfig(temperature=temp, max_new_tokens=10), seed=3).run(jobs(3))
    for d in ds:
        assert fresh_logprob_gap(d, tiny.model, temp) < 2e-3


def test_fixed_seed_reproduces_dialogues(tiny):
    a = engine(tiny, num_utterances=4).run(jobs(3))
    b = engine(tiny, num_utterances=4).run(jobs(3))
    c = engine(tiny, num_utterances=4, sampling=SamplingConfig(temperature=1.0, max_new_tokens=12), seed=8).run(jobs(3))
    assert [d.to_dict() for d in a] == [d.to_dict() for d in b]
    assert [d.completion_ids for d in a] == [d.completion_ids for d in b]
    assert [d.to_dict() for d in a] != [d.to_dict() for d in c]


def test_unfinished_line_is_closed_with_a_masked_end_of_turn(tiny):
    # One token per line: the tiny random model (49k-token vocabulary) does not stop by itself,
    # so every simulator line is cut, and the engine must close it with an end-of-turn token
    # that the loss does not see.
    eng = engine(tiny, num_utterances=2, sampling=SamplingConfig(temperature=1.0, max_new_tokens=1), seed=1)
    d = eng.run(jobs(1))[0]
    eot = eng.fmt.end_of_turn_id
    sim_at = [i for i, m in enumerate(d.env_mask) if m]
    assert len(sim_at) == 1 and d.completion_ids[sim_at[0]] != eot
    assert d.completion_ids[sim_at[0] + 1] == eot and d.env_mask[sim_at[0] + 1] == 0


def test_batch_size_does_not_change_turn_structure(tiny):
    def structure(batch_size):
        ds = engine(tiny, num_utterances=3, batch_size=batch_size).run(jobs(3))
        return [(d.id, [t.speaker for t in d.turns], sum(d.env_mask) > 0, len(d.simulator_lines())) for d in ds]

    one, all_three = structure(1), structure(3)
    assert one == all_three
    assert [s[1] for s in one] == [["agent", "simulator", "agent"]] * 3


def test_openai_endpoint_agent_in_the_loop(tiny, chat_server):
    server = chat_server(lambda body: (200, chat_reply(f"agent reply {len(body['messages'])}"), 0))
    gen = HFGenerator(tiny.model, tiny.tokenizer)
    agent = OpenAIAgent(EndpointConfig(base_url=server.url, model="m"), SamplingConfig(max_new_tokens=8))
    eng = RolloutEngine(gen, agent, SamplingConfig(max_new_tokens=6), seed=0, num_utterances=5)
    d = eng.run(jobs(1))[0]
    assert [t.text for t in d.turns if t.speaker == "agent"][1:] == ["agent reply 4", "agent reply 6"]
    assert server.requests[0]["messages"][0]["role"] == "system"


def test_real_embedded_model_produces_readable_dialogue(smol):
    gen = HFGenerator(smol.model, smol.tokenizer)
    eng = RolloutEngine(gen, HFAgent(gen, SamplingConfig(max_new_tokens=24)),
                        SamplingConfig(temperature=0.7, max_new_tokens=24), seed=0, num_utterances=3)
    d = eng.run(jobs(1))[0]
    assert len(d.turns) == 3
    # a real instruct model mostly writes English words
    words = " ".join(d.simulator_lines()).split()
    assert len(words) >= 3
    assert sum(w.isascii() for w in words) / len(words) > 0.8


def test_agent_shares_the_base_weights_with_the_adapter_disabled(tiny, persona):
    """One set of weights in memory: the simulator runs with its LoRA, the agent without it."""
    import copy

    from peft import LoraConfig, get_peft_model

    base = copy.deepcopy(tiny.model)
    torch.manual_seed(0)  # the random (non-zero) LoRA init
    peft_model = get_peft_model(copy.deepcopy(tiny.model), LoraConfig(r=4, target_modules="all-linear",
                                                                     init_lora_weights=False))
    gen = HFGenerator(peft_model, tiny.tokenizer)
    greedy = SamplingConfig(temperature=0, max_new_tokens=6)
    conv = [[{"role": "system", "content": "You are a therapist."}, {"role": "user", "content": "I feel tired."}]]
    view = [AgentView(get_task("therapy"), persona, 0, conv[0])]
    agent, base_agent = HFAgent(gen, greedy), HFAgent(HFGenerator(base, tiny.tokenizer), greedy)
    agent.start(1)
    base_agent.start(1)
    agent_line, base_line = agent.respond(view), base_agent.respond(view)
    prompt = HFAgent(gen, greedy).fmt.prompt_ids(conv[0])
    with_adapter = gen.generate([prompt], greedy, use_adapter=True)[0].token_ids
    without = gen.generate([prompt], greedy, use_adapter=False)[0].token_ids
    assert agent_line == base_line  # the agent is the base model
    assert with_adapter != without  # and the adapter really changes the simulator


def test_local_agent_cached_turns_equal_a_fresh_generation(tiny):
    """The HF agent grows each view's tokens and KV cache turn by turn; its greedy line at a later
    turn equals what a fresh, uncached call on the whole conversation gives."""
    gen = HFGenerator(tiny.model, tiny.tokenizer)
    greedy = SamplingConfig(temperature=0, max_new_tokens=6)
    js = jobs(2)
    eng = RolloutEngine(gen, HFAgent(gen, greedy), greedy, num_utterances=6, seed=0, batch_size=2)
    for job, d in zip(js, eng.run(js, record_tokens=False)):
        for k in (2, 4):  # the agent's generated lines (turn 0 is the task's fixed opening)
            fresh = HFAgent(gen, greedy)
            fresh.start(1)
            view = AgentView(job.task, job.persona, k // 2, agent_messages(job.task, job.persona, d.turns[:k]))
            assert fresh.respond([view]) == [d.turns[k].text]


def test_the_engine_asks_an_agent_only_start_and_respond(tiny):
    """Any object with start(n) and respond(views) is a task agent: the engine reaches into nothing else."""
    class Echo:
        def start(self, n):
            self.n = n

        def respond(self, views):
            assert len(views) == self.n
            return [f"You said {v.messages[-1]['content'][:10]!r}; line {v.agent_lines}" for v in views]

    gen = HFGenerator(tiny.model, tiny.tokenizer)
    eng = RolloutEngine(gen, Echo(), SamplingConfig(max_new_tokens=4), num_utterances=4, batch_size=3, seed=0)
    ds = eng.run(jobs(3), record_tokens=False)
    assert [[t.speaker for t in d.turns] for d in ds] == [["agent", "simulator"] * 2] * 3
    assert all(d.turns[2].text.startswith("You said ") and d.turns[2].text.endswith("line 1") for d in ds)


def test_question_bank_agent_asks_the_tasks_questions_in_order(tiny):
    """agent.kind 'bank': after the fixed opening, the k-th agent line is the task's question k
    with the persona's placeholders filled; the simulator still generates every one of its lines."""
    gen = HFGenerator(tiny.model, tiny.tokenizer)
    eng = RolloutEngine(gen, QuestionBankAgent(), SamplingConfig(temperature=1.0, max_new_tokens=6), seed=1,
                        num_utterances=7)
    [therapy, education] = eng.run(jobs(2))
    for d, task in ((therapy, get_task("therapy")), (education, get_task("education"))):
        agent = [t.text for t in d.turns if t.speaker == "agent"]
        persona = load_personas(task.name, split="train")[0 if task.name == "therapy" else 1]
        assert agent[1:] == [q.replace("{topic}", persona.facts.get("topic", "{topic}")) for q in task.questions[:3]]
        assert len(d.simulator_lines()) == 3 and sum(d.env_mask) > 0
    assert "{topic}" not in " ".join(t.text for t in education.turns)


def test_after_a_cut_line_both_views_feed_its_end_of_turn_with_the_next_turn(tiny):
    """A line cut at max_new_tokens is closed with an end-of-turn the model did not generate;
    it must reach the KV context with the next turn. Each speaker's context is then exactly a
    prefix of its view's tokens (once it was skipped, and every later token sat one place off)."""
    gen = HFGenerator(tiny.model, tiny.tokenizer)
    agent = HFAgent(gen, SamplingConfig(temperature=1.0, max_new_tokens=2))
    eng = RolloutEngine(gen, agent, SamplingConfig(temperature=1.0, max_new_tokens=2), seed=1, num_utterances=6)
    ds = eng.run(jobs(2))
    assert all(not t.text or len(t.text) < 40 for d in ds for t in d.turns[1:])  # 2-token lines: cut
    eot = tiny.tokenizer.convert_tokens_to_ids(tiny.tokenizer.eos_token)
    for i, d in enumerate(ds):
        sim_fed = [t for t, m in zip(eng._sim_ctx.rows[i], eng._sim_ctx.mask[i]) if m]
        assert sim_fed == (d.prompt_ids + d.completion_ids)[:len(sim_fed)]
        assert sim_fed.count(eot) >= 4  # system, the closed simulator lines and the agent turns
        agent_fed = [t for t, m in zip(agent._ctx.rows[i], agent._ctx.mask[i]) if m]
        assert agent_fed == agent._ids[i][:len(agent_fed)]
