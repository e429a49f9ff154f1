"""`simtrain train`: multi-turn RL of the simulator with TRL's GRPOTrainer.

The data flow of one optimizer step, in order:

1. TRL hands ``rollout_func`` the step's prompts (one key per persona, already repeated
   ``num_generations`` times, so each persona's dialogues form one GRPO group);
2. the Ray rollout workers play those dialogues against the task agent with the current
   policy weights and return token ids, the simulator-only ``env_mask`` and log-probs;
3. the reward functions (one :class:`~rewards.scoring.Scorer` shared by all of them) score the
   dialogues once: the three consistency metrics and the guards, weighted in TRL;
4. GRPOTrainer updates the policy (LoRA by default) on the simulator's tokens only;
5. a callback pushes the new weights to the workers with the step number as version, and
   logs per-step metrics to wandb (offline by default) and ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from simtrain.rewards.base import mean
from simtrain.rewards.scoring import CONSISTENCY, Scorer, summarize
from simtrain.dialogue import Dialogue
from simtrain.reporting import Reporter
from simtrain.rollout import RolloutJob


@dataclass
class StepTimes:
    """Seconds spent in each phase of the current step (filled as the step runs)."""

    start: float = 0.0
    rollout: float = 0.0
    scoring: float = 0.0
    update: float = 0.0  # the rest of the step: log-probs, loss, backward, optimizer, weight push
    sim_tokens: int = 0


class StepRewards:
    """TRL reward functions backed by one Scorer: the first reward called in a step scores the
    whole batch once; each function then returns its own column. It also logs the step's
    consistency, drift curve, guard statistics and reduction against the step-0 baseline."""

    def __init__(self, scorer: Scorer, times: StepTimes, baseline_path: Path, log_dialogues: int = 4):
        self.scorer = scorer
        self.times = times
        self.baseline_path = baseline_path
        self.baseline = json.loads(baseline_path.read_text()) if baseline_path.exists() else None
        self.log_dialogues = log_dialogues
        self._key: tuple | None = None
        self._values: dict = {}
        self.last_dialogues: list[Dialogue] = []

    def functions(self) -> list:
        return [self._column(name) for name in self.scorer.names]

    def _column(self, name: str):
        def reward(prompts=None, completions=None, dialogues=None, log_metric=None, log_extra=None, **kw):
            self._ensure(dialogues, log_metric, log_extra)
            return self._values[name]

        reward.__name__ = name
        return reward

    def _ensure(self, dialogues: Sequence[Dialogue], log_metric, log_extra) -> None:
        key = tuple(id(d) for d in dialogues)
        if key == self._key:
            return
        t0 = time.perf_counter()
        self._values = self.scorer.score(dialogues)
        self.times.scoring = time.perf_counter() - t0
        self._key = key
        self.last_dialogues = list(dialogues)
        summary = summarize(dialogues, self._values)
        if self.baseline is None:  # the first scored step is the baseline for "reduction"
            self.baseline = {m: summary["means"].get(m) for m in CONSISTENCY}
            self.baseline_path.write_text(json.dumps(self.baseline))
        if log_metric is None:
            return
        from simtrain.evaluate import reduction

        for m in CONSISTENCY:
            v = summary["means"].get(m)
            if v is not None:
                log_metric(f"consistency/{m}", v)
                red = reduction(self.baseline.get(m), v)
                if red is not None and red != float("-inf"):
                    log_metric(f"reduction/{m}", red)
            for k, c in enumerate(summary["drift"].get(m, [])):
                if c is not None:
                    log_metric(f"drift/{m}/line_{k + 1}", c)
        for g, v in summary["guards"].items():
            if v is not None:
                log_metric(f"guards/{g}", v)
        versions = [d.meta.get("policy_version") for d in dialogues if d.meta.get("policy_version") is not None]
        if versions:
            log_metric("rollout/policy_version", mean(versions))
        if log_extra is not None:
            log_extra("persona", [d.persona.get("id") for d in dialogues])
            log_extra("verdicts", [json.dumps({n: [t.extra.get("scores", {}).get(n) for t in d.turns if t.speaker == "simulator"]
                                               for n in CONSISTENCY}) for d in dialogues])


def make_rollout_func(run_rollout, jobs_by_key: dict[str, RolloutJob], base_seed: int | None, times: StepTimes):
    """The ``rollout_func`` TRL calls: one dialogue per prompt received, in order."""

    def rollout_func(prompts: list, trainer) -> dict:
        step = trainer.state.global_step
        jobs = []
        for j, key in enumerate(prompts):
            job = jobs_by_key[key]
            jobs.append(RolloutJob(job.task, job.persona, f"{key}/step{step}/g{j}", {"step": step}))
        t0 = time.perf_counter()
        dialogues = run_rollout(jobs, None if base_seed is None else base_seed + 1000 * step)
        times.rollout = time.perf_counter() - t0
        times.sim_tokens = sum(sum(d.env_mask) for d in dialogues)
        return {
            "prompt_ids": [d.prompt_ids for d in dialogues],
            "completion_ids": [d.completion_ids for d in dialogues],
            "logprobs": [d.logprobs for d in dialogues],
            "env_mask": [d.env_mask for d in dialogues],
            "dialogues": dialogues,
        }

    return rollout_func


def _callbacks(pool, times: StepTimes, metrics_path: Path, rewards: StepRewards, reporter: Reporter):
    from transformers import TrainerCallback

    from simtrain.workers import trainable_state

    class SimtrainCallback(TrainerCallback):
        """Weight sync to the workers, step timing, metrics.jsonl, wandb dialogue table."""

        def on_train_begin(self, args, state, control, model=None, **kw):
            if pool is not None:  # after a resume the checkpoint weights are loaded by now
                pool.push(trainable_state(model), state.global_step)

        def on_step_begin(self, args, state, control, **kw):
            times.start = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            if pool is not None:
                pool.push(trainable_state(model), state.global_step)
            total = time.perf_counter() - times.start
            times.update = max(0.0, total - times.rollout - times.scoring)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs is None or ("loss" not in logs and "reward" not in logs):  # e.g. the final summary
                return
            logs["time/rollout_s"] = round(times.rollout, 3)
            logs["time/scoring_s"] = round(times.scoring, 3)
            logs["time/update_s"] = round(times.update, 3)
            logs["time/sim_tokens_per_s"] = round(times.sim_tokens / times.rollout, 2) if times.rollout else 0.0
            if pool is not None:
                logs["rollout/worker_restarts"] = pool.restarts
            with metrics_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")
            reporter.log(f"step {state.global_step}: reward {logs.get('reward', float('nan')):.3f} "
                         + " ".join(f"{m} {logs[f'consistency/{m}']:.3f}" for m in CONSISTENCY
                                    if f"consistency/{m}" in logs)
                         + f" | rollout {times.rollout:.1f}s scoring {times.scoring:.1f}s")
            self._table(state)

        def _table(self, state):
            try:
                import wandb
            except ImportError:
                return
            if wandb.run is None or not rewards.last_dialogues:
                return
            table = wandb.Table(columns=["step", "dialogue", "persona", "line", "text", *CONSISTENCY])
            for d in rewards.last_dialogues[: rewards.log_dialogues]:
                for k, t in enumerate(x for x in d.turns if x.speaker == "simulator"):
                    s = t.extra.get("scores", {})
                    table.add_data(state.global_step, d.id, d.persona.get("id"), k + 1, t.text, *(s.get(m) for m in CONSISTENCY))
            wandb.log({"dialogues": table}, commit=False)

    return [SimtrainCallback()]


def _trainer_class():
    """GRPOTrainer whose checkpoints appear atomically: each is written to a staging folder and
    renamed into place, so a run killed mid-save never leaves a half checkpoint that
    ``--resume`` would pick up."""
    import shutil

    from transformers.trainer_utils import rotate_checkpoints
    from trl import GRPOTrainer

    class AtomicCheckpointGRPOTrainer(GRPOTrainer):
        _staging: Path | None = None
        _simtrain_base: str = ""

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


def train(cfg=None, resume: str | Path | None = None, reporter: Reporter | None = None,
          overrides: dict | None = None, callbacks: Sequence = ()) -> TrainResult:
    """Train the simulator as ``cfg`` says. With ``resume``, continue the run in that folder
    from its last checkpoint, with the folder's saved config plus ``overrides`` (for example a
    higher ``train.max_steps``). ``callbacks`` are extra transformers ``TrainerCallback``s."""
    import torch
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from transformers import PrinterCallback
    from trl import GRPOConfig

    from simtrain import models
    from simtrain.config import load_config
    from simtrain.rollout import build_engine, make_jobs
    from simtrain.workers import WorkerPool, lora_config

    reporter = reporter or Reporter()
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
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    os.environ.setdefault("WANDB_MODE", cfg.train.wandb_mode or "offline")
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    os.environ.setdefault("WANDB_PROJECT", cfg.train.wandb_project)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    t = cfg.train

    # Data: one row per persona; the prompt is a key the rollout function maps back to a job.
    jobs = make_jobs(cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"dialogues_per_persona": 1})}),
                     split="train")
    if not jobs:
        raise ValueError("the config selects no training personas")
    jobs_by_key = {j.id.rsplit("/", 1)[0]: j for j in jobs}
    dataset = Dataset.from_list([{"prompt": k} for k in jobs_by_key])

    policy = models.load_with_adapter(cfg.simulator.name, cfg.simulator.adapter, dtype=cfg.simulator.dtype,
                                      trust_remote_code=cfg.simulator.trust_remote_code)
    times = StepTimes()
    pool = None
    if t.num_rollout_workers > 0:
        reporter.log(f"starting {t.num_rollout_workers} Ray rollout worker(s)")
        pool = WorkerPool(cfg, t.num_rollout_workers, reporter, max_restarts=t.worker_max_restarts)
        run_rollout = pool.rollout
    else:
        engine_holder: dict = {}

        def run_rollout(batch, seed):  # in-process: the trainer's own model generates
            model = trainer.model
            if "engine" not in engine_holder:
                engine_holder["engine"] = build_engine(cfg, simulator=models.LoadedModel(cfg.simulator.name, model,
                                                                                          policy.tokenizer))
            engine = engine_holder["engine"]
            engine.sampling.seed = seed
            was_training = model.training
            model.eval()
            try:
                ds = engine.run(batch)
            finally:
                model.train(was_training)
            for d in ds:
                d.meta["policy_version"] = trainer.state.global_step
            return ds

    scorer = Scorer.from_config(cfg, default_cache=str(run_dir / "judge_cache.jsonl"))
    rewards = StepRewards(scorer, times, run_dir / "baseline.json", t.log_dialogues)
    weights = scorer.weights

    batch = t.personas_per_step * t.num_generations
    s = cfg.rollout.sampling
    args = GRPOConfig(
        output_dir=str(run_dir),
        max_steps=t.max_steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_generations=t.num_generations,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=0,
        loss_type=t.loss_type,
        beta=t.beta,
        epsilon=t.epsilon,
        scale_rewards=t.scale_rewards,
        multi_objective_aggregation=t.multi_objective_aggregation,
        reward_weights=weights,
        temperature=s.temperature if s.temperature > 0 else 1.0,  # must match the sampler for log-probs
        max_completion_length=cfg.rollout.num_utterances * max(s.max_new_tokens, cfg.agent.sampling.max_new_tokens) * 2 + 256,
        max_grad_norm=t.max_grad_norm,
        logging_steps=1,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=["wandb"] if t.wandb else [],
        run_name=cfg.name,
        seed=t.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=cfg.simulator.dtype == "bfloat16",
        log_completions=bool(t.wandb and t.log_dialogues),
        num_completions_to_print=0,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = _trainer_class()(
        model=policy.model,
        reward_funcs=rewards.functions(),
        args=args,
        train_dataset=dataset,
        processing_class=policy.tokenizer,
        peft_config=lora_config(t) if t.lora and not cfg.simulator.adapter else None,
        rollout_func=make_rollout_func(run_rollout, jobs_by_key, cfg.rollout.seed, times),
    )
    trainer._simtrain_base = cfg.simulator.name
    trainer.remove_callback(PrinterCallback)  # our reporter prints a one-line summary per step
    for cb in callbacks:
        trainer.add_callback(cb)
    for cb in _callbacks(pool, times, run_dir / "metrics.jsonl", rewards, reporter):
        trainer.add_callback(cb)
        # Run first, so the time/* fields we add in on_log reach wandb too.
        trainer.callback_handler.callbacks.remove(cb)
        trainer.callback_handler.callbacks.insert(0, cb)
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
