"""`simtrain export`: turn a run (or one checkpoint) into something others can use.

Writes a standalone HF model directory (LoRA merged into the base, safetensors, tokenizer with
its chat template, generation config), or the adapter alone; a model card ``README.md``; and
``simulator.json`` with the prompt templates and settings the simulator was trained with.
The export is written to a temporary folder, proven by loading it and generating a line, and
only then renamed into place.
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

import json
import shutil
import tempfile
from pathlib import Path

from simtrain.reporting import Reporter
from simtrain.envs.tasks import get_task
from simtrain.evaluate import fmt_score as fmt
from simtrain import models
from simtrain.config import load_config
from simtrain.models import find_adapter
from simtrain.simulator import UserSimulator


class ExportError(RuntimeError):
    pass


def _run_dir_of(source: Path) -> Path | None:
    for p in (source, *source.parents):
        if (p / "config.yaml").exists():
            return p
    return None


def simulator_settings(cfg) -> dict:

    tasks = {}
    for name in cfg.data.tasks:
        t = get_task(name)
        tasks[name] = {"scenario": t.scenario, "simulator_role": t.simulator_role, "simulator_prompt": t.simulator_prompt,
                       "agent_role": t.agent_role}
    s = cfg.rollout.sampling
    return {"format": "simtrain-simulator/1", "base_model": cfg.simulator.name, "tasks": tasks,
            "reminder": cfg.rollout.reminder, "end_of_turn": cfg.rollout.end_of_turn,
            "first_speaker": cfg.rollout.first_speaker, "num_utterances": cfg.rollout.num_utterances,
            "sampling": {"temperature": s.temperature, "top_p": s.top_p, "max_new_tokens": s.max_new_tokens},
            "persona_fields": ["id", "name", "description", "facts", "probes"]}


def consistency_report(run_dir: Path) -> dict:
    """Base against trained consistency from the run's eval report, or its training metrics."""
    report: dict = {}
    eval_json = run_dir / "eval" / "report.json"
    if eval_json.exists():
        data = json.loads(eval_json.read_text())
        sims = data["simulators"]
        report["eval"] = {s: data["results"][s]["all"]["means"] for s in sims}
        report["eval_labels"] = sims
        if "reduction" in data:
            report["reduction"] = data["reduction"].get("all")
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        rows = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
        if rows:
            keys = [k for k in rows[0] if k.startswith("consistency/")]
            report["training"] = {"first_step": {k: rows[0].get(k) for k in keys},
                                  "last_step": {k: rows[-1].get(k) for k in keys}, "steps": rows[-1]["step"]}
    return report


def model_card(cfg, report: dict, adapter_only: bool) -> str:

    lines = [
        "---", "library_name: " + ("peft" if adapter_only else "transformers"), "tags: [simtrain, user-simulator, grpo]",
        "---", "", f"# {cfg.name}: a consistent user simulator trained with simtrain", "",
        f"Base model: `{cfg.simulator.name}`. Tasks: {', '.join(cfg.data.tasks)}. "
        "Trained with multi-turn GRPO (TRL) against a task agent, rewarded for prompt-to-line, "
        "line-to-line and Q&A consistency with its persona.", "",
        "## How to drive it", "",
        "The simulator is prompted with a persona description in the system message; the task "
        "agent's lines come as user messages, each followed by a short-reply reminder. "
        "`simulator.json` holds the exact templates.", "", "```python",
        "from simtrain import UserSimulator",
        f"sim = UserSimulator.from_pretrained(\"<this folder>\", task=\"{cfg.data.tasks[0]}\", persona=\"<persona id or description>\")",
        "print(sim.reply([{\"speaker\": \"agent\", \"text\": \"Hello, what brings you here?\"}]))", "```", "",
        "## Consistency", ""]
    if "eval" in report:
        metrics = list(report["eval"][report["eval_labels"][0]])
        lines += ["| metric | " + " | ".join(report["eval_labels"]) + " |", "|---|" + "---|" * len(report["eval_labels"])]
        for m in metrics:
            lines.append(f"| {m} | " + " | ".join(fmt(report['eval'][s].get(m)) for s in report["eval_labels"]) + " |")
        if report.get("reduction"):
            lines += ["", "Relative inconsistency reduction: " +
                      ", ".join(f"{m} {fmt(v)}" for m, v in report["reduction"].items())]
    if "training" in report:
        tr = report["training"]
        lines += ["", f"During training ({tr['steps']} steps), on training rollouts:", "",
                  "| metric | first step | last step |", "|---|---|---|"]
        for k in tr["first_step"]:
            lines.append(f"| {k.split('/', 1)[1]} | {fmt(tr['first_step'][k])} | {fmt(tr['last_step'][k])} |")
    if not report:
        lines.append("No consistency report was found in the run folder.")
    lines += ["", "## Training config", "", "```yaml", cfg.to_yaml().rstrip(), "```", ""]
    return "\n".join(lines)


def export(source: str | Path, out: str | Path, adapter_only: bool = False, force: bool = False,
           push_to_hub: str | None = None, reporter: Reporter | None = None) -> Path:

    reporter = reporter or Reporter()
    source, out = Path(source), Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} exists; pass --force to overwrite it")
    adapter = find_adapter(source)
    if adapter is None:
        raise ExportError(f"no trained adapter found in {source} (expected a run folder, final/ or checkpoint-N/)")
    run_dir = _run_dir_of(adapter)
    if run_dir is None:
        raise ExportError(f"no config.yaml found above {adapter}; is it a simtrain run?")
    cfg = load_config(run_dir / "config.yaml")
    settings = simulator_settings(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        reporter.log(f"loading {adapter}")
        lm = models.load_simulator(str(adapter), device="cpu")
        if adapter_only:
            lm.model.save_pretrained(tmp)
        else:
            merged = lm.model.merge_and_unload()
            merged.save_pretrained(tmp, safe_serialization=True)
            merged.generation_config.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        (tmp / "simulator.json").write_text(json.dumps(settings, indent=2))
        (tmp / "README.md").write_text(model_card(cfg, consistency_report(run_dir), adapter_only))
        # Prove it: load what we wrote, the way a user would, and generate a line.
        sim = UserSimulator.from_pretrained(tmp, task=cfg.data.tasks[0], seed=0)
        line = sim.reply([{"speaker": "agent", "text": "Hello, how are you today?"}])
        if not isinstance(line, str) or not line.strip():  # an empty line is a failed export too
            raise ExportError("the exported model did not generate a line")
        reporter.log(f"verified: the export generates \"{line[:60]}\"")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if push_to_hub:
        from huggingface_hub import HfApi

        try:
            HfApi().upload_folder(folder_path=str(out), repo_id=push_to_hub, repo_type="model")
        except Exception as err:  # network, auth: the local export stands
            raise ExportError(f"exported to {out}, but pushing to {push_to_hub} failed: {err}") from None
    return out
