"""Training through the real TRL GRPOTrainer with real Ray rollout actors on a tiny model."""

import json
from pathlib import Path

import pytest

from simtrain.config import load_config

ROOT = Path(__file__).parent.parent


def smoke(tmp_path, **overrides):
    return load_config(ROOT / "configs" / "smoke.yaml", {"output_dir": str(tmp_path / "run"), **overrides})


def read_metrics(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from simtrain.workers import init_ray

    init_ray()
    yield
    ray.shutdown()


def learner_policy(cfg, std: float = 0.5):
    """What the learner trains: the config's simulator with LoRA, its lora_B moved off zero (normal
    noise of ``std``) so its log-probs differ from a fresh worker's."""
    import torch
    from peft import get_peft_model

    from simtrain import models
    from simtrain.workers import lora_config

    lm = models.load(cfg.simulator.name, device="cpu")
    model = get_peft_model(lm.model, lora_config(cfg.train))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, std)
    return model.eval(), lm.tokenizer


def test_worker_pool_pushes_real_weights_and_recovers_a_killed_worker(tmp_path, ray_session):
    import ray

    from simtrain.rollout import make_jobs
    from simtrain.workers import WorkerPool, sequence_logprobs, trainable_state

    cfg = smoke(tmp_path, **{"train.num_rollout_workers": 2})
    model, tok = learner_policy(cfg)
    ids = tok("I have been sleeping badly since the move.")["input_ids"]
    learner = sequence_logprobs(model, ids)
    pool = WorkerPool(cfg, 2, timeout_s=300)
    try:
        before = ray.get(pool.workers[0].sequence_logprobs.remote(ids), timeout=300)
        assert max(abs(a - b) for a, b in zip(before, learner)) > 1e-3  # the push has something to change
        pool.push(trainable_state(model), 5)
        assert [i["version"] for i in pool.info()] == [5, 5]
        for w in pool.workers:  # every worker now computes what the learner computes
            after = ray.get(w.sequence_logprobs.remote(ids), timeout=300)
            assert max(abs(a - b) for a, b in zip(after, learner)) < 1e-5

        ray.kill(ray.get_actor(pool.actor_name(1)))
        jobs = make_jobs(cfg) * 2
        ds = pool.rollout(jobs, seed=0)
        assert pool.restarts == 1
        assert [d.id for d in ds] == [j.id for j in jobs]  # the dead worker's share was regenerated
        assert {d.meta["policy_version"] for d in ds} == {5}  # and the new worker got the current weights
        assert {d.meta["worker"] for d in ds} == {0, 1}
        restarted = ray.get(pool.workers[1].sequence_logprobs.remote(ids), timeout=300)
        assert max(abs(a - b) for a, b in zip(restarted, learner)) < 1e-5

        # a push whose keys do not match the workers' fails loudly, and changes nothing
        state = trainable_state(model)
        with pytest.raises(Exception, match="missing keys"):
            pool.push({k: v for k, v in list(state.items())[1:]}, 6)
        with pytest.raises(Exception, match="unexpected keys"):
            pool.push({**state, "base_model.model.lm_head.lora_A.weight": next(iter(state.values()))}, 6)
        with pytest.raises(Exception, match="missing keys"):
            pool.push({}, 6)
        assert {i["version"] for i in pool.info()} == {5}
    finally:
        pool.shutdown()


def test_a_hung_worker_times_out_into_the_restart_path(tmp_path, ray_session):
    """A worker that stops answering (here: SIGSTOP, a real hang) is given up on after
    ``worker_timeout_s``, restarted, and its share played again; the restart cap counts per
    call, so two hangs in two steps pass a cap of 1."""
    import os
    import signal

    from simtrain.rollout import make_jobs
    from simtrain.workers import WorkerPool

    cfg = smoke(tmp_path, **{"train.num_rollout_workers": 1})
    # 15 s: well over a restarted tiny worker's start plus its rollout (about 5 s here), and each
    # hang costs the whole timeout
    pool = WorkerPool(cfg, 1, timeout_s=15, max_restarts=1)
    try:
        jobs = make_jobs(cfg)
        for k in range(2):
            os.kill(pool.info()[0]["pid"], signal.SIGSTOP)
            ds = pool.rollout(jobs, seed=0)
            assert [d.id for d in ds] == [j.id for j in jobs]
            assert pool.restarts == k + 1
    finally:
        pool.shutdown()


def test_two_step_training_run_then_resume(tmp_path, ray_session, monkeypatch):
    import ray
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from simtrain.train import train

    # Spy on the loss (the real one runs) to check that env_mask reaches it.
    seen = []
    original = GRPOTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append({k: v.detach().clone() for k, v in inputs.items() if k in ("completion_mask", "tool_mask", "completion_ids")})
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "compute_loss", spy)

    class KillWorkerAfterStep1(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1:
                name = next(n["name"] if isinstance(n, dict) else n for n in ray.util.list_named_actors()
                            if (n["name"] if isinstance(n, dict) else n).endswith("-worker-0"))
                ray.kill(ray.get_actor(name))

    cfg = smoke(tmp_path)
    result = train(cfg, callbacks=[KillWorkerAfterStep1()])
    assert result.global_step == 2
    rows = read_metrics(result.run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward", "loss", "consistency/prompt_to_line", "consistency/line_to_line", "reduction/prompt_to_line",
                "drift/prompt_to_line/line_1", "guards/mean_line_words", "guards/distinct_2",
                "guards/question_only_rate", "time/rollout_s", "time/scoring_s", "time/update_s",
                "time/sim_tokens_per_s", "rewards/prompt_to_line/mean", "rewards/guard_repetition/mean",
                "graded/prompt_to_line", "graded/line_to_line", "spread/prompt_to_line", "zero_spread/prompt_to_line"):
        assert key in rows[0], key
    assert 0 <= rows[0]["zero_spread/prompt_to_line"] <= 1 and rows[0]["spread/prompt_to_line"] >= 0
    # TRL's reward is the graded value (1 - P(problem)), not the thresholded verdict
    assert rows[0]["rewards/prompt_to_line/mean"] == pytest.approx(rows[0]["graded/prompt_to_line"], abs=1e-6)
    # weights reach the workers after every step: step 1 ran version 0, step 2 version 1
    assert [r["rollout/policy_version"] for r in rows] == [0, 1]
    # the rollouts are on-policy: the workers' log-probs are the learner's (hf engine, float32)
    assert all(r["rollout/logprob_gap_max"] < 1e-3 for r in rows), [r["rollout/logprob_gap_max"] for r in rows]
    # the worker killed after step 1 was restarted and step 2 still ran
    assert rows[1]["rollout/worker_restarts"] == 1

    # LoRA weights changed (lora_B starts at zero)
    from safetensors.torch import load_file

    adapter = load_file(str(result.final_dir / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())

    # env_mask reached the loss: tool_mask x completion_mask is 1 exactly on simulator tokens
    assert seen and all("tool_mask" in s for s in seen)
    dialogues_mask_total = sum(int((s["completion_mask"] * s["tool_mask"]).sum()) for s in seen)
    assert 0 < dialogues_mask_total < sum(int(s["completion_mask"].sum()) for s in seen)

    # checkpoints hold what resume needs
    ckpt = result.run_dir / "checkpoint-2"
    for f in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (ckpt / f).exists(), f
    assert any(ckpt.glob("rng_state*.pth"))
    assert result.wandb_dir is not None and Path(result.wandb_dir).exists()

    resumed = train(resume=result.run_dir, overrides={"train.max_steps": 3})
    assert resumed.global_step == 3
    rows = read_metrics(result.run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["rollout/policy_version"] == 2  # the resumed checkpoint's weights went to the workers


def test_train_attaches_to_an_existing_ray_cluster(tmp_path, ray_session):
    """`simtrain train --ray-address` joins a running cluster (here: this test's local Ray)."""
    import os
    import subprocess
    import sys

    import ray

    address = ray.get_runtime_context().gcs_address
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "simtrain.cli", "train", "-c", str(ROOT / "configs" / "smoke.yaml"),
                        "--ray-address", address, "--set", f"output_dir={run}", "--set", "train.max_steps=1",
                        "--set", "train.wandb=false"], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "trained 1 steps" in r.stdout
    assert [row["step"] for row in read_metrics(run)] == [1]


def test_a_dialogue_without_a_value_takes_its_groups_mean_and_spread_is_per_group():
    from simtrain.train import fill_group_gaps, group_spread

    assert fill_group_gaps([1.0, None, 0.0, 0.5, None, None], 3) == [1.0, 0.5, 0.0, 0.5, 0.5, 0.5]
    assert fill_group_gaps([None, None], 2) == [None, None]  # nothing to borrow: TRL skips it
    spread, zero = group_spread([0.2, 0.2, 0.2, 0.0, 1.0, 0.5], 3)
    assert zero == 0.5 and spread == pytest.approx((0 + (((0.5 ** 2) * 2 + 0) / 3) ** 0.5) / 2)


def test_training_from_an_existing_adapter_trains_that_adapter(tmp_path):
    """peft loads an adapter frozen; continuing a run from ``simulator.adapter`` must train it."""
    from peft import get_peft_model

    from simtrain import models
    from simtrain.workers import lora_config

    cfg = smoke(tmp_path)
    lm = models.load(models.TINY, device="cpu")
    get_peft_model(lm.model, lora_config(cfg.train)).save_pretrained(str(tmp_path / "adapter"))
    frozen = models.load_with_adapter(models.TINY, str(tmp_path / "adapter"), device="cpu")
    assert not any(p.requires_grad for p in frozen.model.parameters())
    policy = models.load_with_adapter(models.TINY, str(tmp_path / "adapter"), device="cpu", trainable=True)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_the_rollout_function_scores_each_step_once_and_rewards_only_read_their_column():
    """Scoring happens in the rollout function, before TRL calls any reward; the reward
    functions are plain column readers, so their call order (and count) changes nothing."""
    from types import SimpleNamespace

    from simtrain.dialogue import Dialogue, Turn
    from simtrain.envs.personas import load_personas
    from simtrain.envs.tasks import get_task
    from simtrain.rewards.registry import RewardSpec, build_all
    from simtrain.rewards.scoring import Scorer
    from simtrain.rollout import RolloutJob
    from simtrain.train import StepBatch, StepTimes, make_rollout_func, reward_functions

    persona, task = load_personas("therapy")[0], get_task("therapy")
    lines = ["I feel tired all the time.", "Why?", "I feel tired all the time. I feel tired all the time.", "Work."]
    calls = []

    def played(jobs, seed, trainer):  # the dialogues a rollout returns: the data this test scores
        calls.append(seed)
        return [Dialogue(j.id, "therapy", persona, [Turn("agent", "How are you?"), Turn("simulator", lines[i])],
                         prompt_ids=[1], completion_ids=[2, 3], env_mask=[1, 1], logprobs=[-0.1, -0.2])
                for i, j in enumerate(jobs)]

    scorer = Scorer(*build_all([RewardSpec(name="guard_repetition"), RewardSpec(name="guard_questions")]))
    scored = []
    real_score = scorer.score
    scorer.score = lambda ds, **kw: scored.append(len(ds)) or real_score(ds, **kw)
    batch = StepBatch()
    rollout = make_rollout_func(played, scorer, {"k": RolloutJob(task, persona, "k/0")}, 7, 2, batch, StepTimes())
    out = rollout(["k"] * 4, SimpleNamespace(state=SimpleNamespace(global_step=3)))
    assert calls == [3007] and scored == [4]  # one rollout, one scoring, before any reward runs
    assert len(out["graded"]) == 4 and batch.dialogues and set(batch.graded) >= set(scorer.names)
    fns = reward_functions(scorer.names)
    kwargs = {"prompts": ["k"] * 4, "completions": [""] * 4, "graded": out["graded"]}
    first = {f.__name__: f(**kwargs) for f in fns}
    again = {f.__name__: f(**kwargs) for f in reversed(fns)}
    assert first == again and scored == [4]
    assert first[fns[0].__name__] == [batch.graded[fns[0].__name__][i] for i in range(4)]
    assert first["guard_questions"][1] < first["guard_questions"][0]  # "Why?" only asks


def test_micro_batches_accumulate_into_one_optimizer_step_per_rollout(tmp_path, monkeypatch):
    """train.micro_batch_size through the real TRL trainer: the step's 4 dialogues come from one
    rollout call, and the loss runs on micro-batches of 2 before one optimizer step."""
    from trl import GRPOTrainer

    from simtrain.train import grpo_config, train

    cfg = smoke(tmp_path, **{"train.num_generations": 4, "train.micro_batch_size": 2, "train.max_steps": 1,
                             "train.num_rollout_workers": 0, "train.wandb": False})
    args = grpo_config(cfg, tmp_path, [1.0])
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 2)
    sizes = []
    original = GRPOTrainer.compute_loss

    def spy(self, model, inputs, *a, **kw):
        sizes.append(int(inputs["completion_ids"].shape[0]))
        return original(self, model, inputs, *a, **kw)

    monkeypatch.setattr(GRPOTrainer, "compute_loss", spy)
    result = train(cfg)
    assert result.global_step == 1
    assert sizes == [2, 2]
    rows = read_metrics(result.run_dir)
    assert len(rows) == 1 and rows[0]["rollout/policy_version"] == 0
