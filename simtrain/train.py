"""`simtrain train`: multi-turn RL of the simulator with TRL's GRPOTrainer.

The data flow of one optimizer step, in order:

1. TRL hands ``rollout_func`` the step's prompts (one key per persona, already repeated
   ``num_generations`` times, so each persona's dialogues form one GRPO group);
2. the Ray rollout workers play those dialogues against the task agent with the current
   policy weights and return token ids, the simulator-only ``env_mask`` and log-probs;
3. the same ``rollout_func`` scores them once (one :class:`~simtrain.rewards.scoring.Scorer`)
   with graded values (1 - P(problem) per line): the three consistency metrics and the
   guards; the reward functions TRL calls only read their column, and TRL weights them;
4. GRPOTrainer updates the policy (LoRA by default) on the simulator's tokens only;
5. a callback pushes the new weights to the workers with the step number as version, and
   logs per-step metrics to wandb (offline by default) and ``metrics.jsonl``.
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from simtrain.rewards.base import mean
from simtrain.rewards.scoring import CONSISTENCY, Scorer, second_judge_config, summarize
from simtrain.dialogue import Dialogue
from simtrain.reporting import Reporter
from simtrain.rollout import RolloutJob
from simtrain import models
from simtrain.rollout import build_engine
from simtrain.evaluate import reduction
from simtrain.rollout import make_jobs
from simtrain.config import load_config
from simtrain.workers import (GPUUnavailable, WorkerPool, check_gpus, init_ray, lora_config, reserve_learner_gpus,
                              sequence_logprobs, trainable_state)
import shutil


@dataclass
class StepTimes:
    """Seconds spent in each phase of the current step (filled as the step runs)."""

    start: float = 0.0
    rollout: float = 0.0
    scoring: float = 0.0
    update: float = 0.0  # the rest of the step: log-probs, loss, backward, optimizer, weight push
    sim_tokens: int = 0


@dataclass
class StepBatch:
    """The current step's dialogues and their graded rewards: written by the rollout function,
    read by the step's log (TRL hands the reward functions their own copy, per dialogue)."""

    dialogues: list[Dialogue] = field(default_factory=list)
    graded: dict[str, list[float | None]] = field(default_factory=dict)
    logprob_gap: dict[str, float] = field(default_factory=dict)  # engine vs learner (logprob_gap)


# --- 1. rollout and 2. score ----------------------------------------------------------------


def make_rollout_func(run_rollout, scorer: Scorer, jobs_by_key: dict[str, RolloutJob], base_seed: int | None,
                      group_size: int, batch: StepBatch, times: StepTimes, gap_temperature: float | None = None):
    """The ``rollout_func`` TRL calls: one dialogue per prompt received, in order (TRL has
    already repeated each prompt ``num_generations`` times, so a group is consecutive).

    It plays the step's dialogues and scores them, once, right here, so the step reads
    rollout -> score in one place; the reward functions TRL calls afterwards only read their
    column (``reward_functions``)."""

    def rollout_func(prompts: list, trainer) -> dict:
        step = trainer.state.global_step
        jobs = [RolloutJob(jobs_by_key[key].task, jobs_by_key[key].persona, f"{key}/step{step}/g{j}", {"step": step})
                for j, key in enumerate(prompts)]
        t0 = time.perf_counter()
        dialogues = run_rollout(jobs, None if base_seed is None else base_seed + 1000 * step, trainer)
        times.rollout, t0 = time.perf_counter() - t0, time.perf_counter()
        times.sim_tokens = sum(sum(d.env_mask) for d in dialogues)
        if gap_temperature is not None:
            batch.logprob_gap = logprob_gap(trainer.model, dialogues, gap_temperature)

        graded = scorer.score(dialogues, graded=True)  # 1 - P(problem) per line, averaged per dialogue
        times.scoring = time.perf_counter() - t0
        batch.dialogues, batch.graded = dialogues, graded
        columns = {name: fill_group_gaps(graded[name], group_size) for name in scorer.names}
        return {
            "prompt_ids": [d.prompt_ids for d in dialogues],
            "completion_ids": [d.completion_ids for d in dialogues],
            "logprobs": [d.logprobs for d in dialogues],
            "env_mask": [d.env_mask for d in dialogues],
            # an extra field: TRL passes it, one entry per dialogue, to every reward function
            "graded": [{name: col[i] for name, col in columns.items()} for i in range(len(dialogues))],
        }

    return rollout_func


def logprob_gap(model, dialogues: Sequence[Dialogue], temperature: float) -> dict[str, float]:
    """How far the rollout engine's log-probs are from the learner's on the simulator's tokens
    (mean and max absolute difference). TRL recomputes the log-probs it trains on, so a gap
    does not bias the loss, but it says how off-policy the rollouts are: about 1e-5 for the
    ``hf`` engine, more for ``vllm`` (other kernels; with ``top_p < 1`` vLLM reports the
    truncated distribution's log-probs, see ``vllm_generation``)."""
    import torch

    gaps = []
    was_training = model.training
    model.eval()
    try:
        for d in dialogues:
            if not any(d.env_mask or []):
                continue
            lp = torch.tensor(sequence_logprobs(model, d.prompt_ids + d.completion_ids, temperature))
            mask = torch.tensor(d.env_mask, dtype=torch.bool)
            gaps.append((lp[len(d.prompt_ids) - 1:][mask] - torch.tensor(d.logprobs)[mask]).abs())
    finally:
        model.train(was_training)
    if not gaps:
        return {}
    g = torch.cat(gaps)
    return {"rollout/logprob_gap_mean": float(g.mean()), "rollout/logprob_gap_max": float(g.max())}


def reward_functions(names: Sequence[str]) -> list:
    """TRL reward functions, plain ones: each returns its column of the graded rewards that the
    rollout function attached to the batch. TRL weights and sums them."""

    def column(name: str):
        def reward(completions=None, graded=None, **kw) -> list[float | None]:
            return [g[name] for g in graded]

        reward.__name__ = name
        return reward

    return [column(n) for n in names]


class LocalRollout:
    """Rollouts in the learner process (``train.num_rollout_workers: 0``): the trainer's own
    model generates, in eval mode, with the engine built on first use."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.engine = None

    def __call__(self, jobs, seed, trainer) -> list[Dialogue]:

        model = trainer.model
        if self.engine is None:
            self.engine = build_engine(self.cfg, simulator=models.LoadedModel(self.cfg.simulator.name, model,
                                                                             trainer.processing_class))
        self.engine.seed = seed
        was_training = model.training
        model.eval()
        try:
            dialogues = self.engine.run(jobs)
        finally:
            model.train(was_training)
        for d in dialogues:
            d.meta["policy_version"] = trainer.state.global_step
        return dialogues


def fill_group_gaps(values: Sequence[float | None], group_size: int) -> list[float | None]:
    """A dialogue a reward could not judge (e.g. no Q&A probe addressed) takes its group's mean
    for that reward, so it gets no advantage from it either way. TRL would sum a None as 0,
    which punishes the dialogue for something it was never judged on."""
    out = list(values)
    for g in range(0, len(out), group_size):
        group = [v for v in out[g:g + group_size] if v is not None]
        if group:
            m = sum(group) / len(group)
            out[g:g + group_size] = [m if v is None else v for v in out[g:g + group_size]]
    return out


def group_spread(values: Sequence[float | None], group_size: int) -> tuple[float | None, float | None]:
    """(mean within-group standard deviation, fraction of groups with zero spread). A group with
    zero spread in every reward carries no GRPO advantage: the step learns nothing from it."""
    stds = []
    for g in range(0, len(values), group_size):
        group = [v for v in values[g:g + group_size] if v is not None]
        if len(group) >= 2:
            m = sum(group) / len(group)
            stds.append((sum((v - m) ** 2 for v in group) / len(group)) ** 0.5)
    if not stds:
        return None, None
    return sum(stds) / len(stds), sum(s < 1e-6 for s in stds) / len(stds)


# --- 4. log -------------------------------------------------------------------------------


def step_metrics(dialogues: Sequence[Dialogue], graded: dict[str, list[float | None]], group_size: int,
                 baseline: dict | None) -> dict[str, float]:
    """The step's metrics: consistency verdicts (as reports count them) and the graded reward
    per metric, each reward's within-group spread and zero-spread fraction, the drift curve
    (verdicts per line index), guard statistics, reduction against the first step."""

    verdicts = {n: [d.meta.get("scores", {}).get(n) for d in dialogues] for n in graded if n != "composite"}
    summary = summarize(dialogues, verdicts)
    out: dict[str, float] = {}
    for m in CONSISTENCY:
        v = summary["means"].get(m)
        if v is None:
            continue
        out[f"consistency/{m}"] = v
        red = reduction((baseline or {}).get(m, v), v)  # the first step is its own baseline
        if isinstance(red, float):  # wandb charts numbers; "worse from zero" stays out
            out[f"reduction/{m}"] = red
        for k, c in enumerate(summary["drift"].get(m, [])):
            if c is not None:
                out[f"drift/{m}/line_{k + 1}"] = c
    for name, values in graded.items():
        if name == "composite":
            continue
        if (g := mean(values)) is not None:
            out[f"graded/{name}"] = g
        spread, zero = group_spread(values, group_size)
        if spread is not None:
            out[f"spread/{name}"] = spread
            out[f"zero_spread/{name}"] = zero
    for g, v in summary["guards"].items():
        if v is not None:
            out[f"guards/{g}"] = v
    versions = [d.meta.get("policy_version") for d in dialogues if d.meta.get("policy_version") is not None]
    if versions:
        out["rollout/policy_version"] = mean(versions)
    return out


class SecondJudgeCheck:
    """The Goodhart check during training. Every ``check.every`` steps (and at the last) the
    current policy plays a fixed probe set (the first ``check.probe_personas`` eval personas of
    each task, one dialogue each, the run's seed), and a second judge that is not the reward
    scores it. When the mean reward since the last check rose while the second judge's mean
    consistency fell, it warns: the policy may be learning the reward judge's blind spots."""

    def __init__(self, cfg, run_rollout, reporter: Reporter, cache_path: str):

        probe_cfg = cfg.model_copy(update={
            "data": cfg.data.model_copy(update={"max_personas": cfg.check.probe_personas}),
            "rollout": cfg.rollout.model_copy(update={"dialogues_per_persona": 1})})
        self.jobs = [RolloutJob(j.task, j.persona, f"check/{j.id}", {"check": True})
                     for j in make_jobs(probe_cfg, split="eval")]
        self.every, self.last_step, self.seed = cfg.check.every, cfg.train.max_steps, cfg.rollout.seed
        self.run_rollout, self.reporter = run_rollout, reporter
        self.scorer = Scorer.from_config(second_judge_config(cfg), default_cache=cache_path, reporter=reporter)
        self.rewards: list[float] = []  # logged rewards since the last check
        self.previous: tuple[float, float] | None = None  # (mean reward, second-judge consistency)
        self.warnings = 0

    def maybe_run(self, step: int, reward: float | None, trainer) -> dict:
        if reward is not None:
            self.rewards.append(reward)
        if step % self.every and step != self.last_step:
            return {}
        dialogues = self.run_rollout(self.jobs, self.seed, trainer)
        values = self.scorer.score(dialogues, annotate=False)
        out = {f"check/{m}": v for m in CONSISTENCY if (v := mean(values.get(m, []))) is not None}
        consistency, reward_mean = mean(list(out.values())), mean(self.rewards)
        self.rewards = []
        if consistency is None or reward_mean is None:
            return out
        out["check/consistency"] = consistency
        if self.previous and reward_mean > self.previous[0] and consistency < self.previous[1]:
            self.warnings += 1
            self.reporter.log(f"WARNING step {step}: the reward rose ({self.previous[0]:.3f} -> {reward_mean:.3f}) "
                              f"while the second judge ({self.scorer.judge.id}) fell ({self.previous[1]:.3f} -> "
                              f"{consistency:.3f}) on the {len(self.jobs)} probe dialogues")
        out["check/warnings"] = self.warnings
        self.previous = (reward_mean, consistency)
        return out


class StepLog:
    """What a logged step adds to TRL's logs (through the trainer's ``log``, so wandb and every
    callback see it), and the step's line in ``metrics.jsonl`` and on the reporter."""

    def __init__(self, run_dir: Path, batch: StepBatch, group_size: int, times: StepTimes, reporter: Reporter,
                 pool=None, check=None, log_dialogues: int = 4):
        self.metrics_path = run_dir / "metrics.jsonl"
        self.baseline_path = run_dir / "baseline.json"
        self.baseline = json.loads(self.baseline_path.read_text()) if self.baseline_path.exists() else None
        self.batch, self.group_size = batch, group_size
        self.times, self.reporter, self.pool, self.check = times, reporter, pool, check
        self.log_dialogues = log_dialogues

    def extras(self, step: int, trainer) -> dict:
        out = step_metrics(self.batch.dialogues, self.batch.graded, self.group_size, self.baseline)
        if self.baseline is None:  # the first step is the baseline for "reduction"
            self.baseline = {m: out.get(f"consistency/{m}") for m in CONSISTENCY}
            self.baseline_path.write_text(json.dumps(self.baseline))
        t = self.times
        out.update({"time/rollout_s": round(t.rollout, 3), "time/scoring_s": round(t.scoring, 3),
                    "time/update_s": round(t.update, 3),
                    "time/sim_tokens_per_s": round(t.sim_tokens / t.rollout, 2) if t.rollout else 0.0})
        out.update(self.batch.logprob_gap)
        if self.pool is not None:
            out["rollout/worker_restarts"] = self.pool.restarts
        if self.check is not None:
            # TRL adds its own "reward" to the logs after this hook, so the step's reward is read
            # from the scored batch: the composite of the graded values.
            out.update(self.check.maybe_run(step, mean(self.batch.graded.get("composite", [])), trainer))
        return out

    def write(self, step: int, logs: dict) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **logs}) + "\n")
        self.reporter.log(f"step {step}: reward {logs.get('reward', float('nan')):.3f} "
                          + " ".join(f"{m} {logs[f'consistency/{m}']:.3f}" for m in CONSISTENCY
                                     if f"consistency/{m}" in logs)
                          + " | zero-spread groups " + " ".join(
                              f"{m} {logs[f'zero_spread/{m}']:.0%}" for m in CONSISTENCY if f"zero_spread/{m}" in logs)
                          + f" | rollout {self.times.rollout:.1f}s scoring {self.times.scoring:.1f}s")
        self._table(step)

    def _table(self, step: int) -> None:
        try:
            import wandb
        except ImportError:
            return
        if wandb.run is None or not self.batch.dialogues:
            return
        table = wandb.Table(columns=["step", "dialogue", "persona", "line", "text", *CONSISTENCY])
        for d in self.batch.dialogues[: self.log_dialogues]:
            for k, t in enumerate(x for x in d.turns if x.speaker == "simulator"):
                s = t.extra.get("scores", {})
                table.add_data(step, d.id, d.persona.id, k + 1, t.text, *(s.get(m) for m in CONSISTENCY))
        wandb.log({"dialogues": table}, commit=False)


# --- 3. update and push -------------------------------------------------------------------


def _callback(pool, times: StepTimes, step_log: StepLog):
    from transformers import TrainerCallback


    class SimtrainCallback(TrainerCallback):
        """Pushes the weights to the workers after every update; times the step; writes the step's log."""

        def on_train_begin(self, args, state, control, model=None, **kw):
            if pool is not None:  # after a resume the checkpoint weights are loaded by now
                pool.push(trainable_state(model), state.global_step)

        def on_step_begin(self, args, state, control, **kw):
            times.start = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            if pool is not None:
                pool.push(trainable_state(model), state.global_step)
            times.update = max(0.0, time.perf_counter() - times.start - times.rollout - times.scoring)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs is not None and ("loss" in logs or "reward" in logs):  # not the final summary
                step_log.write(state.global_step, logs)

    return SimtrainCallback()


def _trainer_class():
    """GRPOTrainer whose checkpoints appear atomically (each is written to a staging folder and
    renamed into place, so a run killed mid-save never leaves a half checkpoint that
    ``--resume`` would pick up), and whose logs carry simtrain's step metrics."""

    from transformers.trainer_utils import rotate_checkpoints
    from trl import GRPOTrainer

    class AtomicCheckpointGRPOTrainer(GRPOTrainer):
        _staging: Path | None = None
        _simtrain_base: str = ""
        _step_log: StepLog | None = None

        def log(self, logs, *args, **kwargs):  # the public hook: what we add reaches every callback
            if self._step_log is not None and ("loss" in logs or "reward" in logs):
                logs.update(self._step_log.extras(self.state.global_step, self))
            super().log(logs, *args, **kwargs)

        def _get_output_dir(self, trial):  # transformers asks this where checkpoint-N goes
            return str(self._staging) if self._staging else super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial):
            run_dir = Path(self.args.output_dir)
            name = f"checkpoint-{self.state.global_step}"
            self._staging = run_dir / ".staging"
            shutil.rmtree(self._staging, ignore_errors=True)
            try:
                super()._save_checkpoint(model, trial)
            finally:
                staging, self._staging = self._staging, None
            if (run_dir / name).exists():
                shutil.rmtree(run_dir / name)
            set_adapter_base(staging / name, self._simtrain_base)
            os.replace(staging / name, run_dir / name)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit, use_mtime=False)

    return AtomicCheckpointGRPOTrainer


def set_adapter_base(folder: Path, base: str) -> None:
    """Record the simtrain model name as the adapter's base, instead of a machine-local cache
    path, so the adapter loads anywhere simtrain runs (``models.load_simulator`` resolves it)."""
    path = Path(folder) / "adapter_config.json"
    if path.exists():
        data = json.loads(path.read_text())
        data["base_model_name_or_path"] = base
        path.write_text(json.dumps(data, indent=2))


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    final_dir: Path
    metrics_path: Path
    wandb_dir: Path | None
    worker_restarts: int


def grpo_config(cfg, run_dir: Path, reward_weights: list[float]):
    """TRL's GRPOConfig for a run: what simtrain decides (batch = personas x generations, the
    sampler's temperature, logging, saving, the device) plus ``train.trl``, TRL's own options
    passed through as they are (they win)."""
    import torch
    from trl import GRPOConfig

    t, s = cfg.train, cfg.rollout.sampling
    batch = t.personas_per_step * t.num_generations
    micro = t.micro_batch_size or batch
    return GRPOConfig(**{
        "output_dir": str(run_dir), "max_steps": t.max_steps, "num_generations": t.num_generations,
        # One optimizer step per rollout: TRL generates per_device_train_batch_size x
        # gradient_accumulation_steps dialogues at once and accumulates over the micro-batches.
        "per_device_train_batch_size": micro, "gradient_accumulation_steps": batch // micro,
        "learning_rate": t.learning_rate, "lr_scheduler_type": t.lr_scheduler_type, "warmup_steps": 0,
        "loss_type": t.loss_type, "beta": t.beta, "epsilon": t.epsilon, "scale_rewards": t.scale_rewards,
        "multi_objective_aggregation": t.multi_objective_aggregation, "reward_weights": reward_weights,
        "temperature": s.temperature if s.temperature > 0 else 1.0,  # must match the sampler for log-probs
        "max_completion_length": cfg.rollout.num_utterances * max(s.max_new_tokens, cfg.agent.sampling.max_new_tokens) * 2 + 256,
        "max_grad_norm": t.max_grad_norm, "logging_steps": 1, "save_strategy": "steps", "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit, "report_to": ["wandb"] if t.wandb else [], "run_name": cfg.name,
        "seed": t.seed, "use_cpu": not torch.cuda.is_available(), "bf16": cfg.simulator.dtype == "bfloat16",
        "log_completions": bool(t.wandb and t.log_dialogues), "num_completions_to_print": 0, "disable_tqdm": True,
        "remove_unused_columns": False, **t.trl})


def reserve_gpus_for_learner(cfg, reporter: Reporter):
    """The learner's own GPUs, reserved in Ray before any worker starts (``train.learner_gpus``).
    A learner that was given GPUs but sees no CUDA device fails here, instead of quietly
    training on the CPU."""
    import torch

    init_ray(cfg.train.ray_address)
    check_gpus(cfg)
    lease, ids = reserve_learner_gpus(cfg)
    if not torch.cuda.is_available():
        import ray

        ray.kill(lease)
        raise GPUUnavailable(f"Ray reserved GPU {','.join(ids)} for the learner, but torch sees no CUDA device "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); install a CUDA "
                             "build of torch, or set train.learner_gpus: 0")
    reporter.log(f"learner: GPU {','.join(ids)} (reserved in Ray; rollout workers get other GPUs)")
    return lease


def prepare_run_dir(cfg, resume, overrides, reporter: Reporter):
    """(config, absolute run folder, checkpoint to resume or None). The folder is made absolute
    before any worker starts: under ``ray job submit`` a relative path would land in Ray's
    temporary working directory."""
    from transformers.trainer_utils import get_last_checkpoint


    checkpoint = None
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"{run_dir} is not a simtrain run folder (no config.yaml)")
        cfg = load_config(run_dir / "config.yaml", {**(overrides or {}), "output_dir": str(run_dir)})
        checkpoint = get_last_checkpoint(str(run_dir))
        if checkpoint is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from")
        reporter.log(f"resuming from {checkpoint}")
    run_dir = cfg.run_dir().resolve()
    cfg = cfg.model_copy(update={"output_dir": str(run_dir)})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    reporter.log(f"run folder: {run_dir}")
    return cfg, run_dir, checkpoint


def train(cfg=None, resume: str | Path | None = None, reporter: Reporter | None = None,
          overrides: dict | None = None, callbacks: Sequence = ()) -> TrainResult:
    """Train the simulator as ``cfg`` says. With ``resume``, continue the run in that folder
    from its last checkpoint, with the folder's saved config plus ``overrides`` (for example a
    higher ``train.max_steps``). ``callbacks`` are extra transformers ``TrainerCallback``s.

    One step, in order: rollout and score (``make_rollout_func``) -> update (TRL, with
    ``reward_functions`` reading the scores) -> push (``_callback``) -> log (``StepLog``)."""
    from datasets import Dataset
    from transformers import PrinterCallback


    reporter = reporter or Reporter()
    cfg, run_dir, checkpoint = prepare_run_dir(cfg, resume, overrides, reporter)
    t = cfg.train
    os.environ.setdefault("WANDB_MODE", t.wandb_mode or "offline")
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    os.environ.setdefault("WANDB_PROJECT", t.wandb_project)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    # Data: one row per persona; the prompt is a key the rollout function maps back to a job.
    jobs = make_jobs(cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"dialogues_per_persona": 1})}),
                     split="train")
    if not jobs:
        raise ValueError("the config selects no training personas")
    jobs_by_key = {j.id.rsplit("/", 1)[0]: j for j in jobs}
    dataset = Dataset.from_list([{"prompt": k} for k in jobs_by_key])

    lease = reserve_gpus_for_learner(cfg, reporter) if t.learner_gpus > 0 else None  # before CUDA is touched
    # A given adapter is trained further, so it must load trainable (peft loads it frozen otherwise).
    policy = models.load_with_adapter(cfg.simulator.name, cfg.simulator.adapter, dtype=cfg.simulator.dtype,
                                      trust_remote_code=cfg.simulator.trust_remote_code, trainable=True)
    times = StepTimes()
    pool = None
    if t.num_rollout_workers > 0:
        reporter.log(f"starting {t.num_rollout_workers} Ray rollout worker(s)")
        pool = WorkerPool(cfg, t.num_rollout_workers, reporter, max_restarts=t.worker_max_restarts,
                          timeout_s=t.worker_timeout_s)
        run_rollout = lambda batch, seed, trainer: pool.rollout(batch, seed)  # noqa: E731
    else:
        run_rollout = LocalRollout(cfg)

    scorer = Scorer.from_config(cfg, default_cache=str(run_dir / "judge_cache.jsonl"))
    batch = StepBatch()
    check = (SecondJudgeCheck(cfg, run_rollout, reporter, str(run_dir / "judge_cache.jsonl"))
             if cfg.check.enabled else None)
    step_log = StepLog(run_dir, batch, t.num_generations, times, reporter, pool, check, t.log_dialogues)
    trainer = _trainer_class()(
        model=policy.model,
        reward_funcs=reward_functions(scorer.names),
        args=grpo_config(cfg, run_dir, scorer.weights),
        train_dataset=dataset,
        processing_class=policy.tokenizer,
        peft_config=lora_config(t) if t.lora and not cfg.simulator.adapter else None,
        rollout_func=make_rollout_func(run_rollout, scorer, jobs_by_key, cfg.rollout.seed, t.num_generations,
                                       batch, times, gap_temperature=(cfg.rollout.sampling.temperature or 1.0)
                                       if t.check_logprobs else None),
    )
    trainer._simtrain_base = cfg.simulator.name
    trainer._step_log = step_log
    trainer.remove_callback(PrinterCallback)  # our reporter prints a one-line summary per step
    for cb in (*callbacks, _callback(pool, times, step_log)):
        trainer.add_callback(cb)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
        final = run_dir / "final"
        trainer.save_model(str(final))
        policy.tokenizer.save_pretrained(str(final))
        set_adapter_base(final, cfg.simulator.name)
    finally:
        restarts = pool.restarts if pool else 0
        if pool is not None:
            pool.shutdown()
        if lease is not None:
            import ray

            ray.kill(lease)
    # The newest offline run (a resumed run folder holds one per session); names start with the time.
    wandb_dir = max((run_dir / "wandb").glob("offline-run-*"), default=None)
    try:
        import wandb

        if wandb.run is not None:
            wandb_dir = Path(wandb.run.dir).parent
            wandb.finish()
    except ImportError:
        pass
    return TrainResult(run_dir, trainer.state.global_step, final, run_dir / "metrics.jsonl", wandb_dir, restarts)
