"""simtrain: train LLM user simulators to stay in character with multi-turn RL."""

__version__ = "0.1.0"
__all__ = ["UserSimulator", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import simtrain` stays fast and torch-free until a model is needed.
    if name == "UserSimulator":
        from simtrain.simulator import UserSimulator

        return UserSimulator
    raise AttributeError(f"module 'simtrain' has no attribute {name!r}")
