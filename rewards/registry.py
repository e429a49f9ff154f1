"""Pluggable rewards. A reward is found three ways, in this order:

1. the registry: built-ins and anything decorated with ``@register_reward("name")``;
2. a dotted path ``"package.module:function"`` given as ``path`` in the config;
3. the ``simtrain.rewards`` entry-point group of installed packages (by name).

A plain reward function has TRL's signature ``f(prompts, completions, **kwargs) -> list[float |
None]``; simtrain passes the dialogue objects as ``dialogues=`` in kwargs. A registered class is
instantiated with ``judge=`` and the spec's ``args`` (that is how the judge-based metrics get
their judge).
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from simtrain.rewards.guards import MinLength, NoPersonaCopy, NoQuestionOnly, NoRepetition, SpeaksAsPersona
from simtrain.rewards.line_to_line import LineToLine
from simtrain.rewards.prompt_to_line import PromptToLine
from simtrain.rewards.qa import QA
import functools

ENTRY_POINT_GROUP = "simtrain.rewards"
_REGISTRY: dict[str, Any] = {}


class RewardError(ValueError):
    """A reward could not be found, built, or returned the wrong thing; names the reward."""


def register_reward(name: str):
    """Decorator: make a reward function (or Metric class) available by ``name`` in configs.
    A name is taken once: registering a different object under a built-in's or another
    plug-in's name is an error, not a silent replacement (re-importing the same module is fine)."""

    def deco(obj):
        _builtins()
        old = _REGISTRY.get(name)
        same = old is obj or (old is not None and (getattr(old, "__module__", None), getattr(old, "__qualname__", None))
                              == (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)))
        if old is not None and not same:
            raise RewardError(f"reward name {name!r} is already registered ({getattr(old, '__module__', '?')}."
                              f"{getattr(old, '__qualname__', old)}); pick another name")
        _REGISTRY[name] = obj
        return obj

    return deco


def _builtins() -> None:
    if _REGISTRY.get("_loaded"):
        return

    for cls in (PromptToLine, LineToLine, QA, NoRepetition, NoQuestionOnly, NoPersonaCopy, MinLength, SpeaksAsPersona):
        _REGISTRY.setdefault(cls.name, cls)
    _REGISTRY["_loaded"] = True


def available() -> list[str]:
    _builtins()
    names = {k for k in _REGISTRY if not k.startswith("_")}
    names |= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


class RewardSpec(BaseModel):
    """One entry of the run config's ``rewards`` list, used as it is by :func:`build`. It lives
    here, not in ``simtrain.config``, so that this layer takes it without importing upward."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str | None = Field(None, description="A registered reward: prompt_to_line, line_to_line, qa, guard_* or a plug-in's name.")
    path: str | None = Field(None, description="Or a dotted 'package.module:function' path.")
    weight: float = Field(1.0, description="Weight in the composite reward.")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the reward.")

    def model_post_init(self, _ctx) -> None:
        if bool(self.name) == bool(self.path):
            raise ValueError("each reward needs exactly one of 'name' or 'path'")

    @property
    def label(self) -> str:
        return self.name or self.path or "?"


def _import_path(path: str) -> Any:
    if ":" not in path:
        raise RewardError(f"reward path {path!r}: expected 'package.module:function'")
    mod, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(mod)
    except ImportError as err:
        raise RewardError(f"reward path {path!r}: cannot import module {mod!r} ({err})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardError(f"reward path {path!r}: module {mod!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def find(spec: RewardSpec) -> Any:
    _builtins()
    if spec.path:
        return _import_path(spec.path)
    if spec.name in _REGISTRY:
        return _REGISTRY[spec.name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec.name:
            try:
                return ep.load()
            except Exception as err:  # a broken plug-in should say which one
                raise RewardError(f"reward {spec.name!r}: entry point {ep.value!r} failed to load: {err}") from None
    raise RewardError(f"unknown reward {spec.name!r}; available: {', '.join(available())}")


def build(spec: RewardSpec, judge=None) -> Callable:
    """Return a callable reward checked to return one value per dialogue."""
    obj = find(spec)
    if inspect.isclass(obj):
        try:
            fn = obj(judge=judge, **spec.args)
        except TypeError as err:
            raise RewardError(f"reward {spec.label!r}: bad args {spec.args}: {err}") from None
    elif callable(obj):
        fn = obj
        if spec.args:

            fn = functools.partial(obj, **spec.args)
    else:
        raise RewardError(f"reward {spec.label!r} is not callable")
    return _Checked(spec.label, fn)


class _Checked:
    """Wraps a reward so a wrong number or type of values fails loudly, naming the reward."""

    def __init__(self, label: str, fn: Callable):
        self.label = label
        self.fn = fn
        self.__name__ = label.replace(":", ".")
        self.metric = fn if hasattr(fn, "score") else None

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        n = len(kwargs.get("dialogues") or completions or prompts or [])
        values = self.fn(prompts=prompts, completions=completions, **kwargs)
        if not isinstance(values, (list, tuple)) or len(values) != n:
            got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            raise RewardError(f"reward {self.label!r} returned {got} values for {n} dialogues")
        for v in values:
            if v is not None and not isinstance(v, (int, float)):
                raise RewardError(f"reward {self.label!r} returned a {type(v).__name__}, expected float or None")
        return [None if v is None else float(v) for v in values]


def build_all(specs: Sequence[RewardSpec], judge=None) -> tuple[list[Callable], list[float]]:
    """Reward callables and their weights (TRL's ``reward_funcs`` and ``reward_weights``)."""
    fns = [build(s, judge) for s in specs]
    return fns, [float(s.weight) for s in specs]


def composite(values: Sequence[Sequence[float | None]], weights: Sequence[float]) -> list[float | None]:
    """Weighted sum per dialogue, skipping rewards that returned None (as TRL does)."""
    out = []
    for col in zip(*values):
        pairs = [(v, w) for v, w in zip(col, weights) if v is not None]
        out.append(sum(v * w for v, w in pairs) if pairs else None)
    return out


DEFAULT_REWARDS = [
    RewardSpec(name="prompt_to_line", weight=1.0),
    RewardSpec(name="line_to_line", weight=1.0),
    RewardSpec(name="qa", weight=0.5),
    RewardSpec(name="guard_repetition", weight=0.25),
    RewardSpec(name="guard_questions", weight=0.25),
    RewardSpec(name="guard_copy", weight=0.25),
    RewardSpec(name="guard_length", weight=0.25),
]
