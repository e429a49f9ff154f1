"""The typed run config: one YAML file describes a whole run.

Every section is a pydantic model that forbids unknown keys, so a typo in a YAML file fails
loudly with the offending key, the section it is in, and the closest valid name.
Field descriptions below are the config reference (README's table is generated from them).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from simtrain.openai_client import EndpointConfig  # the agent.endpoint / judge.endpoint sections
from simtrain.generation import SamplingConfig  # the rollout.sampling / agent.sampling sections
from simtrain.vllm_generation import VLLMConfig  # the rollout.vllm section (vllm itself is imported only when used)
from simtrain.rewards.judges import JudgeConfig  # defined beside the judges it builds; the `judge` section
from simtrain.rewards.registry import DEFAULT_REWARDS, RewardSpec  # the `rewards` list entries


class ConfigError(ValueError):
    """A config file could not be read or validated; the message says where and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = Field("smollm2", description="'smollm2' (embedded), 'tiny-random', a local path or a hub id.")
    adapter: str | None = Field(None, description="Path of a peft LoRA adapter to load on top of the model.")
    dtype: str = Field("float32", description="Torch dtype of the weights (float32 on CPU; bfloat16 on GPU).")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own code. Off unless you trust it.")


class AgentConfig(_Section):
    kind: Literal["hf", "openai", "bank"] = Field("hf", description="'hf': a local model; 'openai': an OpenAI-compatible endpoint; 'bank': the task's fixed questions in order (no generation).")
    model: str | None = Field(None, description="Local agent model (kind 'hf'); empty: the simulator's base model, sharing its weights.")
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig, description="The server for kind 'openai' (base_url and model required).")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="The agent's sampling settings.")


class RolloutConfig(_Section):
    engine: Literal["hf", "vllm"] = Field("hf", description="'hf': transformers generate with a KV cache per batch (tests, tiny models); 'vllm': a vLLM engine in each Ray rollout worker (continuous batching, prefix caching; needs num_rollout_workers >= 1).")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="The vLLM engine (engine 'vllm').")
    num_utterances: int = Field(8, ge=1, description="Utterances per dialogue, both speakers counted (the agent's opening too).")
    first_speaker: Literal["agent", "simulator"] = Field("agent", description="Who speaks first.")
    dialogues_per_persona: int = Field(1, ge=1, description="Dialogues per persona (the GRPO group size in training).")
    batch_size: int = Field(16, ge=1, description="Dialogues run in lockstep per batch ('hf'); dialogues in flight at once when streaming ('vllm').")
    continuous: bool = Field(True, description="'vllm' engine: stream the dialogues (each one's next line starts as soon as its last line ends, its agent's lines too where the agent is the bank, an endpoint or the shared base model); false: lockstep turns, as 'hf'.")
    reminder: str = Field("Reply in character, in 2 sentences or less.",
                          description="Reminder appended to each agent line in the simulator's view; '' disables.")
    end_of_turn: str | None = Field(None, description="Token that ends a chat message; default: the tokenizer's eos token.")
    seed: int | None = Field(0, description="Seed for sampling; a fixed seed reproduces the dialogues.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="The simulator's sampling settings.")


class DataConfig(_Section):
    tasks: list[str] = Field(default_factory=lambda: ["therapy"], description="Built-in tasks to run: chitchat, education, therapy.")
    personas: dict[str, str] = Field(default_factory=dict, description="Per-task persona file (.jsonl/.csv) replacing the built-in set.")
    split: Literal["train", "eval"] = Field("train", description="Which part of the fixed persona split to use.")
    max_personas: int | None = Field(None, ge=1, description="Use at most this many personas per task (the first ones).")


def _default_rewards() -> list[RewardSpec]:
    return [r.model_copy(deep=True) for r in DEFAULT_REWARDS]


class TrainConfig(_Section):
    max_steps: int = Field(20, ge=1, description="Optimizer steps.")
    num_generations: int = Field(4, ge=2, description="Dialogues per persona per step: one GRPO group.")
    personas_per_step: int = Field(1, ge=1, description="Persona groups per optimizer step (batch = this x num_generations).")
    learning_rate: float = Field(2e-5, gt=0, description="AdamW learning rate.")
    lr_scheduler_type: str = Field("constant", description="transformers scheduler name.")
    loss_type: str = Field("dapo", description="GRPOTrainer objective: grpo, dr_grpo, dapo, bnpo, cispo, sapo, luspo, vespo.")
    beta: float = Field(0.0, ge=0, description="KL coefficient against the reference (base) model; 0 disables the KL term.")
    scale_rewards: str = Field("group", description="Reward scaling: group, batch or none.")
    multi_objective_aggregation: str = Field("sum_then_normalize", description="sum_then_normalize or normalize_then_sum (GDPO).")
    epsilon: float = Field(0.2, gt=0, description="PPO-style clipping range.")
    lora: bool = Field(True, description="Train a LoRA adapter (peft); false trains all weights.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: list[str] | str = Field("all-linear", description="Modules LoRA adapts.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    save_steps: int = Field(10, ge=1, description="Checkpoint every N steps (and at the end).")
    save_total_limit: int | None = Field(3, description="Keep at most this many checkpoints.")
    micro_batch_size: int | None = Field(None, ge=1, description="Dialogues per forward/backward pass; the step's batch (personas_per_step x num_generations) must be a multiple of it, and gradients accumulate over batch / micro_batch_size passes. Empty: the whole batch in one pass.")
    learner_gpus: float = Field(0.0, ge=0, description="GPUs the learner reserves in Ray on the node where `simtrain train` runs, so no rollout worker lands on them (the learner then trains on them, and fails if it cannot get them); 0: the learner reserves none.")
    num_rollout_workers: int = Field(1, ge=0, description="Ray rollout actors; 0 runs rollouts in the learner process.")
    worker_gpus: float = Field(0.0, ge=0, description="GPUs each rollout actor reserves in Ray (fractions share one GPU); 0: CPU workers.")
    worker_max_restarts: int = Field(3, ge=0, description="Times a dead or hung rollout worker is restarted within one step before training fails.")
    worker_timeout_s: float = Field(1800.0, gt=0, description="Longest wait for a worker's rollout or weight push; past it the worker counts as hung and is restarted.")
    check_logprobs: bool = Field(True, description="Each step the learner recomputes the simulator tokens' log-probs and logs their gap to the rollout engine's (rollout/logprob_gap_mean, _max); one extra forward pass of the batch.")
    trl: dict[str, Any] = Field(default_factory=dict, description="TRL GRPOConfig options passed through as they are (they override simtrain's).")
    ray_address: str | None = Field(None, description="Ray cluster to attach to (or RAY_ADDRESS); default: start a local Ray.")
    wandb: bool = Field(True, description="Log to wandb (offline unless WANDB_MODE says otherwise).")
    wandb_mode: str | None = Field(None, description="wandb mode: offline (default), online or disabled.")
    wandb_project: str = Field("simtrain", description="wandb project.")
    log_dialogues: int = Field(4, ge=0, description="Sample dialogues per logging step in the wandb table.")
    seed: int = Field(0, description="Seed for the trainer (data order, initialisation).")


class CheckConfig(_Section):
    """The Goodhart check: a second judge, one that is not the reward, scores the same metrics.
    Training plays a fixed probe set (the first eval personas, a fixed seed) every ``every``
    steps and warns when the reward rises while the second judge's scores fall; ``simtrain
    eval`` reports the second judge beside the first."""

    enabled: bool = Field(False, description="Run the second-judge check (training) and report it (eval).")
    judge: JudgeConfig = Field(default_factory=lambda: JudgeConfig(backend="hf"), description="The second judge.")
    every: int = Field(5, ge=1, description="Training: check every this many steps (and after the last).")
    probe_personas: int = Field(4, ge=1, description="Training: eval personas per task in the fixed probe set.")
    role: bool = Field(False, description="Apply the rule-based role check in the second judge's prompt-to-line too (off: the judge's verdicts alone, independent of the reward's rules).")


class RunConfig(_Section):
    """A whole run. Sections: simulator, agent, data, rollout (and later judge, rewards, train)."""

    name: str = Field("run", description="Run name; also the default output folder under runs/.")
    output_dir: str | None = Field(None, description="Where run outputs go; default runs/<name>.")
    simulator: ModelConfig = Field(default_factory=ModelConfig, description="The simulator model.")
    agent: AgentConfig = Field(default_factory=AgentConfig, description="The task agent.")
    data: DataConfig = Field(default_factory=DataConfig, description="Tasks and personas.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Dialogue generation.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="The consistency judge.")
    rewards: list[RewardSpec] = Field(default_factory=_default_rewards, description="Rewards and their weights.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="RL training.")
    check: CheckConfig = Field(default_factory=CheckConfig, description="The second judge (Goodhart check).")

    @model_validator(mode="after")
    def _engine_fits(self) -> "RunConfig":
        t = self.train
        batch = t.personas_per_step * t.num_generations
        if t.micro_batch_size and batch % t.micro_batch_size:
            raise ValueError(f"train.micro_batch_size ({t.micro_batch_size}) must divide the step's batch, "
                             f"personas_per_step x num_generations = {batch}")
        if self.rollout.engine == "vllm":
            # The vLLM engine lives in the Ray workers and receives each policy version as a
            # LoRA adapter (one engine then serves the policy and the base-weight agent), or as
            # weights loaded in place (then it serves the policy only).
            if self.train.num_rollout_workers < 1:
                raise ValueError("rollout.engine 'vllm' runs in Ray rollout workers: set train.num_rollout_workers >= 1")
            merged = self.rollout.vllm.weight_sync == "merged"
            if not self.train.lora and not merged:
                raise ValueError("rollout.vllm.weight_sync 'lora' sends each policy version as a LoRA adapter: set "
                                 "train.lora: true, or weight_sync: merged to load the full weights in place")
            if merged and self.agent.kind == "hf" and self.agent.model in (None, self.simulator.name):
                raise ValueError("rollout.vllm.weight_sync 'merged' replaces the base weights that the task agent "
                                 "would share with the simulator: set agent.kind to bank or openai, agent.model to "
                                 "another model, or weight_sync: lora")
            if self.rollout.vllm.tensor_parallel_size > max(1.0, self.train.worker_gpus):
                raise ValueError(f"rollout.vllm.tensor_parallel_size {self.rollout.vllm.tensor_parallel_size} spans more "
                                 f"GPUs than each rollout worker reserves (train.worker_gpus {self.train.worker_gpus:g})")
            if self.simulator.name == "tiny-random":
                raise ValueError("rollout.engine 'vllm' needs a model directory; 'tiny-random' exists only in memory "
                                 "(use smollm2)")
        return self

    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _section_model(root: type[BaseModel], loc: tuple) -> type[BaseModel]:
    model = root
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return model


def _explain(err: ValidationError, source: str) -> str:
    lines = [f"Invalid config {source}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            parent = _section_model(RunConfig, loc[:-1])
            near = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1)
            hint = f" (did you mean {'.'.join(map(str, loc[:-1] + (near[0],)))!r}?)" if near else ""
            lines.append(f"  {where}: unknown key{hint}")
        elif not loc:  # a rule across sections (RunConfig's own validator): its message says it all
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults when ``path`` is None) and apply overrides
    given as dotted keys, e.g. ``{"rollout.num_utterances": 4}``."""
    data: dict[str, Any] = {}
    source = str(path) if path else "(defaults)"
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"Config file not found: {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"Config file {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"Config file {path}: expected a mapping at the top level")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_explain(err, source)) from None


def reference_markdown() -> str:
    """The config reference table (README's "Config reference" is this, verbatim)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], instance: BaseModel, prefix: str) -> None:
        # Defaults are read from a default instance: a nested section's factory may differ
        # from its class defaults (check.judge is an hf judge).
        for name, f in model.model_fields.items():
            ann = f.annotation
            key = f"{prefix}{name}"
            default = getattr(instance, name)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, default, key + ".")
                continue
            if isinstance(default, list) and default and isinstance(default[0], BaseModel):
                default = [{k: v for k, v in d.model_dump().items() if v not in (None, {}, 1.0)} for d in default]
            shown = "" if default is None else f"`{default}`"
            rows.append(f"| `{key}` | {shown.replace('|', '/')} | {f.description or ''} |")

    walk(RunConfig, RunConfig(), "")
    return "\n".join(rows)
