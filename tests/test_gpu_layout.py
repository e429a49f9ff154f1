"""The GPU layout, checked by construction on a CPU machine: a local Ray told it has 4 GPUs does
the same bookkeeping as on a GPU node (which GPU ids each actor gets), so the test sees where
every role would land; nothing here touches CUDA."""

from pathlib import Path

import pytest

from simtrain.config import ConfigError, load_config

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def ray_with_4_gpus():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def cfg(tmp_path, **overrides):
    return load_config(ROOT / "configs" / "smoke.yaml", {"output_dir": str(tmp_path / "run"), **overrides})


def test_learner_and_each_worker_get_their_own_gpus(tmp_path, ray_with_4_gpus, monkeypatch):
    import ray

    from simtrain.workers import WorkerPool, reserve_learner_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # restored after the test
    c = cfg(tmp_path, **{"train.learner_gpus": 1, "train.num_rollout_workers": 3, "train.worker_gpus": 1})
    lease, learner = reserve_learner_gpus(c)
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(learner) and len(learner) == 1
    pool = WorkerPool(c, 3, timeout_s=300)
    try:
        workers = [i["gpus"] for i in pool.info()]
        assert all(len(g) == 1 for g in workers)
        every = learner + [g for w in workers for g in w]
        assert sorted(every) == ["0", "1", "2", "3"]  # four roles, four GPUs, none shared
    finally:
        pool.shutdown()
        ray.kill(lease)


def test_a_run_that_asks_for_more_gpus_than_ray_has_fails_before_starting(tmp_path, ray_with_4_gpus):
    from simtrain.workers import GPUUnavailable, WorkerPool

    c = cfg(tmp_path, **{"train.learner_gpus": 1, "train.num_rollout_workers": 2, "train.worker_gpus": 2})
    with pytest.raises(GPUUnavailable, match=r"asks for 5 GPUs .* the Ray cluster has 4"):
        WorkerPool(c, 2, timeout_s=30)


def test_a_learner_given_gpus_that_torch_cannot_see_fails_instead_of_training_on_the_cpu(tmp_path, ray_with_4_gpus,
                                                                                            monkeypatch):
    import torch

    from simtrain.train import train
    from simtrain.workers import GPUUnavailable

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(GPUUnavailable, match="torch sees no CUDA device"):
        train(cfg(tmp_path, **{"train.learner_gpus": 1}))


def test_micro_batches_must_divide_the_step_batch():
    with pytest.raises(ConfigError, match=r"micro_batch_size \(3\) must divide .* = 4"):
        load_config(None, {"train.num_generations": 4, "train.micro_batch_size": 3})


def test_the_vllm_weight_sync_is_refused_where_it_cannot_serve_the_run():
    vllm = {"simulator.name": "smollm2", "rollout.engine": "vllm"}
    # merged weights leave no base weights for a task agent that shares the simulator's model
    with pytest.raises(ConfigError, match="replaces the base weights"):
        load_config(None, {**vllm, "rollout.vllm.weight_sync": "merged"})
    # full weights cannot travel as a LoRA adapter
    with pytest.raises(ConfigError, match="set train.lora: true, or weight_sync: merged"):
        load_config(None, {**vllm, "train.lora": False, "agent.kind": "bank"})
    for sync, lora in (("merged", True), ("merged", False), ("lora", True)):
        load_config(None, {**vllm, "rollout.vllm.weight_sync": sync, "train.lora": lora, "agent.kind": "bank"})
    load_config(None, {**vllm, "rollout.vllm.weight_sync": "merged", "agent.model": "tiny-random"})
