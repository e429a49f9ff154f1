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
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A config file could not be read or validated; the message says where and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = Field("smollm2", description="'smollm2' (embedded), 'tiny-random', a local path or a hub id.")
    adapter: str | None = Field(None, description="Path of a peft LoRA adapter to load on top of the model.")
    dtype: str = Field("float32", description="Torch dtype of the weights (float32 on CPU; bfloat16 on GPU).")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own code. Off unless you trust it.")


class SamplingSection(_Section):
    temperature: float = Field(0.8, ge=0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Top-k cut-off; 0 disables it.")
    max_new_tokens: int = Field(48, ge=1, description="Cap on tokens per line.")


class AgentConfig(_Section):
    kind: Literal["hf", "openai"] = Field("hf", description="'hf': a local model; 'openai': an OpenAI-compatible endpoint.")
    model: str | None = Field(None, description="Agent model name; empty: the simulator's base model, sharing its weights.")
    base_url: str | None = Field(None, description="Endpoint base URL for kind 'openai', e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable that holds the endpoint's API key.")
    concurrency: int = Field(8, ge=1, description="Concurrent requests for kind 'openai'.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout for kind 'openai'.")
    sampling: SamplingSection = Field(default_factory=lambda: SamplingSection(temperature=0.7),
                                      description="The agent's sampling settings.")


class RolloutConfig(_Section):
    num_utterances: int = Field(8, ge=1, description="Utterances per dialogue, both speakers counted (the agent's opening too).")
    first_speaker: Literal["agent", "simulator"] = Field("agent", description="Who speaks first.")
    dialogues_per_persona: int = Field(1, ge=1, description="Dialogues per persona (the GRPO group size in training).")
    batch_size: int = Field(16, ge=1, description="Dialogues run in lockstep per batch.")
    reminder: str = Field("Reply in character, in 2 sentences or less.",
                          description="Reminder appended to each agent line in the simulator's view; '' disables.")
    end_of_turn: str | None = Field(None, description="Token that ends a chat message; default: the tokenizer's eos token.")
    seed: int | None = Field(0, description="Seed for sampling; a fixed seed reproduces the dialogues.")
    sampling: SamplingSection = Field(default_factory=SamplingSection, description="The simulator's sampling settings.")


class DataConfig(_Section):
    tasks: list[str] = Field(default_factory=lambda: ["therapy"], description="Built-in tasks to run: chitchat, education, therapy.")
    personas: dict[str, str] = Field(default_factory=dict, description="Per-task persona file (.jsonl/.csv) replacing the built-in set.")
    split: Literal["train", "eval"] = Field("train", description="Which part of the fixed persona split to use.")
    max_personas: int | None = Field(None, ge=1, description="Use at most this many personas per task (the first ones).")


class RunConfig(_Section):
    """A whole run. Sections: simulator, agent, data, rollout (and later judge, rewards, train)."""

    name: str = Field("run", description="Run name; also the default output folder under runs/.")
    output_dir: str | None = Field(None, description="Where run outputs go; default runs/<name>.")
    simulator: ModelConfig = Field(default_factory=ModelConfig, description="The simulator model.")
    agent: AgentConfig = Field(default_factory=AgentConfig, description="The task agent.")
    data: DataConfig = Field(default_factory=DataConfig, description="Tasks and personas.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Dialogue generation.")

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
