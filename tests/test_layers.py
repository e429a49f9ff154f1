"""The package shape: one import name, and layers that import only downward (README, Architecture)."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
SOURCES = {"simtrain": ROOT / "simtrain", "simtrain.rewards": ROOT / "rewards", "simtrain.envs": ROOT / "envs"}

# Lowest first. A module may import its own layer and those below, never one above.
LAYERS = [
    ("core", {"simtrain.dialogue", "simtrain.reporting"}),
    ("envs", {"simtrain.envs", "simtrain.envs.personas", "simtrain.envs.tasks"}),
    ("lm", {"simtrain.models", "simtrain.generation", "simtrain.vllm_generation", "simtrain.openai_client"}),
    ("rewards", {"simtrain.rewards", "simtrain.rewards.*"}),
    ("rollout", {"simtrain.rollout", "simtrain.workers", "simtrain.envs.agents", "simtrain.config"}),
    ("user-facing", {"simtrain", "simtrain.train", "simtrain.evaluate", "simtrain.export", "simtrain.chat",
                     "simtrain.cli", "simtrain.simulator"}),
]


def layer_of(module: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if module in members or any(m.endswith(".*") and module.startswith(m[:-1]) for m in members):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and README's Architecture)")


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in SOURCES.items():
        for f in folder.glob("*.py"):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """Project modules ``path`` imports, function-local imports included; ``from simtrain
    import models`` counts as importing ``simtrain.models``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "simtrain"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "simtrain":
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
    return found


def test_every_module_imports_only_its_own_layer_or_below():
    mods = modules()
    bad = []
    for name, path in sorted(mods.items()):
        for target in sorted(imports(path, set(mods))):
            if target != name and layer_of(target) > layer_of(name):
                bad.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check itself can fail: a core module that imports training is caught."""
    f = tmp_path / "dialogue.py"
    f.write_text("def f():\n    from simtrain import train\n")
    assert imports(f, set(modules())) == {"simtrain.train"}
    assert layer_of("simtrain.train") > layer_of("simtrain.dialogue")


def test_the_built_wheel_installs_only_the_simtrain_package(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("simtrain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"simtrain"}, top
    assert "simtrain/rewards/role.py" in names and "simtrain/envs/personas.py" in names
    assert any(n.startswith("simtrain/envs/data/") and n.endswith(".jsonl") for n in names)  # personas ship
    assert any(n.startswith("simtrain/rewards/data/") and n.endswith(".jsonl") for n in names)  # judge data ships
    # the default judge's trained weights ship, so an installed simtrain never trains it first
    assert {"simtrain/rewards/data/judge/minilm-contra.safetensors",
            "simtrain/rewards/data/judge/minilm-contra.json"} <= set(names)
