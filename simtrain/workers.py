"""Ray rollout workers: each actor holds a copy of the simulator (and the task agent sharing
its base weights) and produces dialogues with the batched engine.

The learner pushes new weights after every optimizer step with a version number; every
dialogue records the version that produced it (``meta["policy_version"]``). A worker that
dies is replaced, given the current weights, and its share of the batch is regenerated.
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

import os
import shutil
import tempfile
import uuid
from typing import Sequence

from simtrain.dialogue import Dialogue
from simtrain.reporting import Reporter
from simtrain.rollout import RolloutJob
from simtrain import models
from simtrain.config import RunConfig
from simtrain.rollout import build_engine


def lora_config(train_cfg):
    from peft import LoraConfig

    return LoraConfig(r=train_cfg.lora_r, lora_alpha=train_cfg.lora_alpha, lora_dropout=train_cfg.lora_dropout,
                      target_modules=train_cfg.lora_target_modules, task_type="CAUSAL_LM")


def trainable_state(model) -> dict:
    """The weights the learner trains: the LoRA tensors, or the whole state dict."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class HFPolicy:
    """The ``hf`` engine's policy: the simulator as a (peft) model in the worker's memory."""

    def __init__(self, cfg, num_threads: int):
        import torch

        torch.set_num_threads(max(1, num_threads))
        lm = models.load_with_adapter(cfg.simulator.name, cfg.simulator.adapter, dtype=cfg.simulator.dtype,
                                      trust_remote_code=cfg.simulator.trust_remote_code, device="cpu"
                                      if not torch.cuda.is_available() else None)
        if cfg.train.lora and not hasattr(lm.model, "peft_config"):
            from peft import get_peft_model

            lm.model = get_peft_model(lm.model, lora_config(cfg.train))
            lm.model.eval()
        self.lm = lm
        self.engine = build_engine(cfg, simulator=lm)

    def keys(self) -> set[str]:
        return set(trainable_state(self.lm.model))

    def load(self, state: dict, version: int) -> None:
        if hasattr(self.lm.model, "peft_config"):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.lm.model, state)
        else:
            self.lm.model.load_state_dict(state)

    def sequence_logprobs(self, ids: list[int]) -> list[float]:
        return sequence_logprobs(self.lm.model, ids)


class VLLMPolicy:
    """The ``vllm`` engine's policy: a LoRA adapter that the worker's vLLM engine serves. Each
    push is written as an adapter folder (peft's layout) and loaded under a new LoRA id; the
    base weights, adapter off, still serve a task agent that shares them."""

    def __init__(self, cfg, workdir: str):
        from peft import get_peft_model_state_dict

        self.template = adapter_template(cfg)  # the adapter's layout (keys, peft config), no weights
        self.peft_config = self.template.peft_config["default"]
        self.engine = build_engine(cfg, max_lora_rank=self.peft_config.r)
        self.sim = self.engine.sim
        self._keys = set(get_peft_model_state_dict(self.template))
        self.workdir = workdir
        self.folder: str | None = None
        if cfg.simulator.adapter:  # a run started from an adapter rolls out with it from step 0
            self.sim.set_adapter(cfg.simulator.adapter, 0)

    def keys(self) -> set[str]:
        return self._keys

    def load(self, state: dict, version: int) -> None:
        from safetensors.torch import save_file

        folder = os.path.join(self.workdir, f"policy-v{version}")
        self.peft_config.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(folder, "adapter_model.safetensors"))
        self.sim.set_adapter(folder, version)
        if self.folder and self.folder != folder:  # the engine now asks for the new id only
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = folder

    def sequence_logprobs(self, ids: list[int]) -> list[float]:
        return self.sim.sequence_logprobs(ids)


class VLLMMergedPolicy:
    """The ``vllm`` engine's policy with ``rollout.vllm.weight_sync: merged``: each push is
    merged into the base weights here (W + scale * B @ A for every adapted linear layer; with
    ``train.lora: false`` the pushed state is the full weights already) and loaded into the
    engine in place. The engine runs no LoRA kernels, and serves no base weights any more."""

    def __init__(self, cfg):
        self.files = models.checkpoint_files(cfg.simulator.name)
        self.lora = None  # the peft config of the adapter being merged; None: full weights
        if cfg.train.lora:
            from peft import get_peft_model_state_dict

            template = adapter_template(cfg)
            self.lora = template.peft_config["default"]
            self._keys = set(get_peft_model_state_dict(template))
            unmergeable = {"use_dora": self.lora.use_dora, "rank_pattern": self.lora.rank_pattern,
                           "alpha_pattern": self.lora.alpha_pattern, "modules_to_save": self.lora.modules_to_save}
            if any(unmergeable.values()):
                raise ValueError(f"weight_sync 'merged' merges plain LoRA only; this adapter sets "
                                 f"{[k for k, v in unmergeable.items() if v]} (use weight_sync 'lora')")
        else:
            self._keys = set(meta_model(cfg).state_dict())
        # Started after the checks above, which refuse a run in a moment instead of after the
        # engine's start-up.
        self.engine = build_engine(cfg)
        self.sim = self.engine.sim
        if cfg.simulator.adapter:  # a run started from an adapter rolls out with it from step 0
            from safetensors.torch import load_file

            self.load(load_file(os.path.join(cfg.simulator.adapter, "adapter_model.safetensors")), 0)

    def keys(self) -> set[str]:
        return self._keys

    def load(self, state: dict, version: int) -> None:
        self.sim.load_weights(merged_weights(self.files, state, self.lora) if self.lora else state.items())

    def sequence_logprobs(self, ids: list[int]) -> list[float]:
        return self.sim.sequence_logprobs(ids)


def merged_weights(files: list[str], state: dict, lora) -> list:
    """The base checkpoint's tensors with a LoRA adapter's update merged in, named as in the
    checkpoint. ``state`` holds peft's keys (``base_model.model.<module>.lora_A.weight``);
    the base is read from ``files`` (memory-mapped safetensors) at each push, so no second copy
    of the model stays in memory between pushes."""
    import math

    from safetensors import safe_open

    scale = lora.lora_alpha / (math.sqrt(lora.r) if lora.use_rslora else lora.r)
    pairs: dict[str, list] = {}  # checkpoint weight name -> [A, B]
    for key, tensor in state.items():
        module, _, which = key.removeprefix("base_model.model.").rpartition(".lora_")
        pairs.setdefault(f"{module}.weight", [None, None])["AB".index(which[0])] = tensor
    out = []
    for path in files:
        with safe_open(path, "pt") as f:
            for name in f.keys():
                w = f.get_tensor(name)
                if name in pairs:
                    a, b = pairs.pop(name)
                    w = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
                out.append((name, w))
    if pairs:  # an adapter key whose base weight is not in the checkpoint: nothing to merge it into
        raise ValueError(f"{len(pairs)} adapted weights are not in the base checkpoint: {sorted(pairs)[:3]}")
    return out


def meta_model(cfg):
    """The simulator's model built on the meta device: its layout and parameter names at no
    memory cost, for a worker whose engine (vLLM) holds the real weights."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(models.resolve(cfg.simulator.name),
                                        trust_remote_code=cfg.simulator.trust_remote_code)
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.simulator.trust_remote_code)


def adapter_template(cfg):
    """The policy's peft model on the meta device (:func:`meta_model`): its adapter keys and
    resolved config (``all-linear`` becomes module names) at no memory cost."""
    from accelerate import init_empty_weights
    from peft import LoraConfig, get_peft_model

    with init_empty_weights():
        lora = LoraConfig.from_pretrained(cfg.simulator.adapter) if cfg.simulator.adapter else lora_config(cfg.train)
        return get_peft_model(meta_model(cfg), lora)


class RolloutWorker:
    """The actor body (wrapped with ``ray.remote`` by :class:`WorkerPool`)."""

    def __init__(self, cfg_dict: dict, worker_id: int, num_threads: int):
        cfg = RunConfig.model_validate(cfg_dict)
        if cfg.rollout.engine == "vllm" and cfg.rollout.vllm.weight_sync == "merged":
            self.policy = VLLMMergedPolicy(cfg)
        elif cfg.rollout.engine == "vllm":
            self.workdir = tempfile.mkdtemp(prefix=f"simtrain-worker{worker_id}-")
            self.policy = VLLMPolicy(cfg, self.workdir)
        else:
            self.policy = HFPolicy(cfg, num_threads)
        self.engine = self.policy.engine
        self.worker_id = worker_id
        self.version = 0

    def set_weights(self, state: dict, version: int) -> int:
        """Load the learner's weights. The keys must match exactly: peft loads non-strictly, so a
        wrong or empty state would otherwise leave the worker on old weights without a word."""
        expected = self.policy.keys()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"weight push to worker {self.worker_id}: {len(missing)} missing keys "
                             f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}")
        self.policy.load(state, version)
        self.version = version
        return version

    def rollout(self, jobs: Sequence[RolloutJob], seed: int | None) -> list[Dialogue]:
        self.engine.seed = seed
        dialogues = self.engine.run(jobs)
        for d in dialogues:
            d.meta["policy_version"] = self.version
            d.meta["worker"] = self.worker_id
        return dialogues

    def info(self) -> dict:
        import ray

        return {"worker": self.worker_id, "version": self.version, "pid": os.getpid(),
                "engine": type(self.engine.sim).__name__, "gpus": [str(i) for i in ray.get_gpu_ids()]}

    def sequence_logprobs(self, ids: list[int]) -> list[float]:
        """Log-prob of each token of ``ids`` after its prefix, as this worker's engine serves the
        policy (checks that a push took effect where the rollouts are generated)."""
        return self.policy.sequence_logprobs(ids)


def sequence_logprobs(model, ids: list[int], temperature: float = 1.0) -> list[float]:
    """Log-prob of each token of ``ids`` after its prefix, under ``model`` sampled at ``temperature``."""
    import torch

    x = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=x).logits[0, :-1].float() / temperature
    return torch.log_softmax(logits, -1).gather(1, x[0, 1:, None])[:, 0].tolist()


def init_ray(address: str | None = None) -> None:
    """Attach to ``address`` / ``RAY_ADDRESS``, or start an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # The learner process stays in this folder; workers import simtrain from the installed package.
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


class GPUUnavailable(RuntimeError):
    """A config asks for GPUs that the Ray cluster (or the learner's node) does not have."""


def check_gpus(cfg) -> None:
    """Fail before any actor starts when the run asks for more GPUs than Ray has: an actor that
    asks for a GPU no node has would wait for one forever (Ray keeps it pending)."""
    import ray

    t = cfg.train
    want = t.learner_gpus + t.num_rollout_workers * t.worker_gpus
    have = ray.cluster_resources().get("GPU", 0.0)
    if want > have + 1e-9:
        raise GPUUnavailable(
            f"the run asks for {want:g} GPUs (train.learner_gpus {t.learner_gpus:g} + train.num_rollout_workers "
            f"{t.num_rollout_workers} x train.worker_gpus {t.worker_gpus:g}) but the Ray cluster has {have:g}. "
            "Start Ray on the GPU node(s) (ray start --head --num-gpus N), or lower those numbers.")


class _GPULease:
    """A placeholder actor that holds the learner's GPUs in Ray's books for the whole run."""

    def gpu_ids(self) -> list:
        import ray

        return [str(i) for i in ray.get_gpu_ids()]


def reserve_learner_gpus(cfg, timeout_s: float = 120.0):
    """Reserve ``train.learner_gpus`` on this node (where the learner runs) and point this
    process at them (``CUDA_VISIBLE_DEVICES``), so the learner and the rollout workers never
    share a GPU by accident: Ray gives the workers only GPUs the lease does not hold. Call it
    before anything touches CUDA. Returns the lease (kill it at the end) and the GPU ids."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    n = cfg.train.learner_gpus
    node = ray.get_runtime_context().get_node_id()
    on_node = next((x["Resources"].get("GPU", 0.0) for x in ray.nodes() if x["NodeID"] == node), 0.0)
    if on_node < n:
        raise GPUUnavailable(f"train.learner_gpus is {n:g} but this node, where simtrain train runs (under ray job "
                             f"submit: the head node), has {on_node:g} GPUs in Ray. Run the learner on a GPU node, "
                             "or set train.learner_gpus: 0 to train on the CPU.")
    lease = ray.remote(num_cpus=0, num_gpus=n)(_GPULease).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
    ids = ray.get(lease.gpu_ids.remote(), timeout=timeout_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    return lease, ids


class WorkerPool:
    """Rollout actors driven by the learner (the one controller)."""

    def __init__(self, cfg, num_workers: int, reporter: Reporter | None = None, max_restarts: int = 3,
                 timeout_s: float = 1800.0):
        import ray

        init_ray(cfg.train.ray_address)
        check_gpus(cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_rollout_workers": num_workers})}))
        self.cfg_dict = cfg.model_dump(mode="json")
        self.reporter = reporter or Reporter()
        self.max_restarts = max_restarts  # per worker, per call (one rollout or push: one step)
        self.timeout_s = timeout_s  # every wait on a worker ends by then; a hung worker is restarted
        self.restarts = 0
        cpus = int(ray.available_resources().get("CPU", 1))
        self.threads = max(1, cpus // max(1, num_workers))
        # Ray hides GPUs from actors that reserve none, so GPU workers must ask for a share.
        self._remote = ray.remote(num_cpus=0, num_gpus=cfg.train.worker_gpus)(RolloutWorker)
        self.prefix = f"simtrain-{cfg.name}-{uuid.uuid4().hex[:6]}"
        self.generation = [0] * num_workers
        self.workers = [self._start(i) for i in range(num_workers)]
        self.weights_ref = None
        self.version = 0

    def actor_name(self, i: int) -> str:
        """Ray name of worker ``i`` (``ray.get_actor(name)`` finds it, e.g. to inspect or kill it)."""
        g = self.generation[i]
        return f"{self.prefix}-worker-{i}" + (f"-r{g}" if g else "")

    def _start(self, i: int):
        return self._remote.options(name=self.actor_name(i)).remote(self.cfg_dict, i, self.threads)

    def push(self, state: dict, version: int) -> None:
        """Send new weights to every worker; returns when all have them."""
        import ray

        self.weights_ref = ray.put(state)
        self.version = version
        self._call_all(lambda w: w.set_weights.remote(self.weights_ref, version))

    def _call_all(self, make_call) -> list:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        out = []
        for i in range(len(self.workers)):
            for _ in range(self.max_restarts + 1):
                try:
                    out.append(ray.get(make_call(self.workers[i]), timeout=self.timeout_s))
                    break
                except (RayActorError, GetTimeoutError):
                    self._restart(i)
            else:
                raise RuntimeError(f"rollout worker {i} keeps dying; giving up after {self.max_restarts} restarts")
        return out

    def _restart(self, i: int) -> None:
        import ray

        self.restarts += 1  # the total, for the logs; the cap counts per call (see _call_all, rollout)
        self.reporter.log(f"rollout worker {i} died or hung; restarting it (restart {self.restarts})")
        try:
            ray.kill(self.workers[i])
        except Exception:  # already gone
            pass
        self.generation[i] += 1
        self.workers[i] = self._start(i)
        if self.weights_ref is not None:
            ray.get(self.workers[i].set_weights.remote(self.weights_ref, self.version), timeout=self.timeout_s)

    def rollout(self, jobs: Sequence[RolloutJob], seed: int | None) -> list[Dialogue]:
        """Split jobs across workers, regenerate a dead worker's share, return dialogues in order."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        n = len(self.workers)
        shares = [list(range(i, len(jobs), n)) for i in range(n)]

        def submit(i: int):
            return self.workers[i].rollout.remote([jobs[k] for k in shares[i]], None if seed is None else seed + i)

        results: dict[int, Dialogue] = {}
        pending = {i: submit(i) for i in range(n) if shares[i]}
        tries = {i: 0 for i in pending}
        while pending:
            i, ref = next(iter(pending.items()))
            try:
                for k, d in zip(shares[i], ray.get(ref, timeout=self.timeout_s)):
                    results[k] = d
                del pending[i]
            except (RayActorError, GetTimeoutError):
                tries[i] += 1
                if tries[i] > self.max_restarts:
                    raise RuntimeError(f"rollout worker {i} died {tries[i]} times in one rollout; giving up") from None
                self._restart(i)
                pending[i] = submit(i)
        return [results[k] for k in range(len(jobs))]

    def info(self) -> list[dict]:
        return self._call_all(lambda w: w.info.remote())

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            try:
                ray.kill(w)
            except Exception:
                pass
        self.workers = []
