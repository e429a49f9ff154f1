"""The `simtrain` command line. Thin by design: parse, call a library function, print."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
import yaml

from simtrain.chat import ChatSession
from simtrain.config import ConfigError, load_config, reference_markdown
from simtrain.dialogue import DialogueFormatError, read_dialogues, transcript, write_dialogues
from simtrain.envs.personas import PersonaFormatError, load_personas
from simtrain.evaluate import evaluate, fmt_score
from simtrain.export import ExportError, export as run_export
from simtrain.reporting import RichReporter
from simtrain.rewards import judge_weights, train_judge
from simtrain.rewards.scoring import Scorer, summarize
from simtrain.rollout import build_engine, make_jobs
from simtrain.train import train as run_train

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train LLM user simulators to stay in character.")


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    warnings.filterwarnings("ignore")


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _overrides(pairs: list[str]) -> dict:
    """``--set rollout.num_utterances=4`` pairs -> dict with YAML-parsed values."""

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML run config (see configs/).")
SetOpt = typer.Option(None, "--set", help="Override a config key, e.g. --set rollout.num_utterances=4 (repeatable).")


@app.command()
def rollout(
    config: Optional[Path] = ConfigOpt,
    out: Path = typer.Option(Path("dialogues.jsonl"), "--out", "-o", help="Interchange JSONL to write."),
    split: Optional[str] = typer.Option(None, help="Persona split: train or eval (default: from config)."),
    show: bool = typer.Option(False, "--show", help="Also print readable transcripts."),
    set_: list[str] = SetOpt,
):
    """Run simulator-vs-agent dialogues and write them as interchange JSONL."""
    _quiet_libraries()

    reporter = RichReporter()
    try:
        cfg = load_config(config, _overrides(set_))
        jobs = make_jobs(cfg, split)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as err:
        _fail(err)
    if not jobs:
        _fail(ValueError("the config selects no personas"))
    reporter.log(f"{len(jobs)} dialogues x {cfg.rollout.num_utterances} utterances, simulator {cfg.simulator.name}")
    engine = build_engine(cfg, reporter=reporter)
    dialogues = engine.run(jobs, record_tokens=False)
    write_dialogues(dialogues, out)
    if show:
        for d in dialogues:
            typer.echo(transcript(d) + "\n")
    reporter.log(f"wrote {len(dialogues)} dialogues to {out}")


@app.command()
def score(
    dialogues: Path = typer.Option(..., "--dialogues", "-d", help="Interchange JSONL to score."),
    out: Path = typer.Option(Path("scored.jsonl"), "--out", "-o", help="Where to write the scored dialogues."),
    config: Optional[Path] = ConfigOpt,
    judge: Optional[str] = typer.Option(None, help="Judge backend: hf, openai or nli (overrides config)."),
    judge_model: Optional[str] = typer.Option(None, help="Judge model (overrides config): the served model's name with --judge openai."),
    judge_url: Optional[str] = typer.Option(None, help="Endpoint base URL for the openai judge."),
    set_: list[str] = SetOpt,
):
    """Add per-line and per-dialogue scores for every reward to interchange dialogues."""
    _quiet_libraries()

    reporter = RichReporter()
    overrides = _overrides(set_)
    for key, value in (("judge.backend", judge), ("judge.endpoint.base_url", judge_url)):
        if value:
            overrides[key] = value
    try:
        cfg = load_config(config, overrides)
        if judge_model:  # the served model's name for an openai judge, the local model otherwise
            if cfg.judge.backend == "openai":
                cfg.judge.endpoint.model = judge_model
            else:
                cfg.judge.model = judge_model
        items = read_dialogues(dialogues)
        scorer = Scorer.from_config(cfg, reporter=reporter)
    except (ConfigError, DialogueFormatError, ValueError, FileNotFoundError) as err:
        _fail(err)
    reporter.log(f"scoring {len(items)} dialogues with {', '.join(scorer.names)}")
    values = scorer.score(items)
    write_dialogues(items, out)
    summary = summarize(items, values)
    for name, v in summary["means"].items():
        typer.echo(f"{name:>18}: {fmt_score(v)}")
    if scorer.judge is not None:
        st = scorer.judge.stats
        typer.echo(f"judge {scorer.judge.id}: {st.queries} queries, {st.cache_hits} cached, {st.failed} failed, "
                   f"{st.seconds:.1f} s")
    reporter.log(f"wrote {out}")


@app.command("eval")
def eval_(
    config: Optional[Path] = ConfigOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Simulator A: model name, path or adapter dir (default: config's)."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Simulator B, compared against A."),
    out: Path = typer.Option(Path("runs/eval"), "--out", "-o", help="Folder for report.json, report.md, drift.png."),
    set_: list[str] = SetOpt,
):
    """Roll out the eval split with one or two simulators, score it, and write a report."""
    _quiet_libraries()

    try:
        cfg = load_config(config, _overrides(set_))
    except ConfigError as err:
        _fail(err)
    sims = [model or cfg.simulator.name] + ([compare] if compare else [])
    report = evaluate(cfg, sims, out, reporter=RichReporter())
    typer.echo((out / "report.md").read_text())
    if "reduction" in report:
        for task, red in report["reduction"].items():
            typer.echo(f"{task}: " + ", ".join(f"{m} {fmt_score(v, '+.1%')}" for m, v in red.items()))


@app.command()
def train(
    config: Optional[Path] = ConfigOpt,
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its last checkpoint."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Attach to a Ray cluster (default: RAY_ADDRESS or a local Ray)."),
    set_: list[str] = SetOpt,
):
    """Train the simulator with multi-turn GRPO on the consistency rewards."""
    _quiet_libraries()

    overrides = _overrides(set_)
    if ray_address:
        overrides["train.ray_address"] = ray_address
    try:
        cfg = load_config(config, overrides) if not resume else None
        result = run_train(cfg, resume=resume, reporter=RichReporter(), overrides=overrides)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        _fail(err)
    typer.echo(f"trained {result.global_step} steps; adapter: {result.final_dir}")
    typer.echo(f"metrics: {result.metrics_path}")
    if result.wandb_dir:
        typer.echo(f"wandb offline run: {result.wandb_dir}  (sync with: wandb sync {result.wandb_dir})")


@app.command()
def export(
    source: Path = typer.Argument(..., help="Run folder or checkpoint folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create."),
    adapter_only: bool = typer.Option(False, "--adapter-only", help="Write the LoRA adapter alone, not a merged model."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Also upload to this hub repo (needs network and a token)."),
):
    """Export a trained simulator: merged model (or adapter), model card, simulator.json."""
    _quiet_libraries()

    try:
        path = run_export(source, out, adapter_only=adapter_only, force=force, push_to_hub=push_to_hub,
                          reporter=RichReporter())
    except (ExportError, FileNotFoundError) as err:
        _fail(err)
    typer.echo(f"exported to {path}")


@app.command()
def chat(
    model: str = typer.Argument(..., help="Exported folder, run folder, checkpoint, or any HF chat model."),
    task: str = typer.Option("therapy", help="Task: chitchat, education or therapy."),
    persona: Optional[str] = typer.Option(None, help="Persona id from the task's set (default: its first eval persona)."),
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = typer.Option(None, help="Sampling seed (fixed seed: reproducible replies)."),
):
    """Talk to a simulator: you play the task agent, it answers in character.
    Commands: /score (consistency so far), /quit."""
    _quiet_libraries()

    try:
        session = ChatSession(model, task=task, persona=persona, config=config, seed=seed)
    except (KeyError, FileNotFoundError, ValueError) as err:
        _fail(err)
    p = session.sim.persona
    typer.echo(f"You are the {session.sim.task.agent_role}. The simulator plays {p.name or p.id}: {p.description}")
    typer.echo("Type a line and press enter. /score shows consistency so far, /quit ends.")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/score":
            for name, value in session.score().items():
                typer.echo(f"  {name}: {fmt_score(value)}")
            continue
        typer.echo(f"{p.name or 'simulator'}: {session.say(line)}")


@app.command("judge-train")
def judge_train(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default: the cache folder 'minilm-contra' resolves to)."),
    examples: Optional[int] = typer.Option(None, help="Generated (premise, line) pairs (default: the minilm-contra recipe's)."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the training pairs."),
    seed: Optional[int] = typer.Option(None, help="Seed for the data generator and the trainer."),
    tune_part: bool = typer.Option(False, "--tune-part", help="Train on the check set's tuning part too (it then no longer validates the judge)."),
    force: bool = typer.Option(False, "--force", help="Retrain even if the folder already holds a trained judge."),
    ship: bool = typer.Option(False, "--ship", help="Retrain the default judge and write its weights to the shipped files (rewards/data/judge/)."),
):
    """Train the offline consistency judge (MiniLM cross-encoder) from shipped weights and generated data.

    Without options, the default judge is unpacked from the weights the repository ships, when
    they are the current recipe's (seconds); --force trains it here instead.
    """
    _quiet_libraries()


    changes = {k: v for k, v in (("examples", examples), ("epochs", epochs), ("seed", seed)) if v is not None}
    if tune_part:
        changes["tune_part"] = True
    if ship and (changes or out):
        _fail("--ship writes the default recipe's judge; it takes no --out, --examples, --epochs, --seed or --tune-part")
    cfg = replace(train_judge.JudgeTrainConfig(), **changes)
    target = out or train_judge.default_dir(cfg)
    if (target / train_judge.MARKER).exists() and not (force or ship):
        typer.echo(f"already trained: {target} (use --force to retrain)")
        return
    try:
        if not (force or ship or changes or out):  # the default judge, as its first use gets it
            path = judge_weights.ensure()
            if "unpacked_from" in json.loads((path / train_judge.MARKER).read_text()):
                typer.echo(f"judge unpacked from the shipped weights to {path} (--force trains it here instead)")
                return
        else:
            path = train_judge.train(target, cfg)
        if ship:
            typer.echo(f"shipped weights written to {judge_weights.ship(path)}")
    except (RuntimeError, FileExistsError, ValueError) as err:
        _fail(err)
    typer.echo(f"judge written to {path}")
    if out or changes:
        typer.echo(f"use it with: judge.backend=nli, judge.model={path}")


@app.command()
def config(
    what: str = typer.Argument("defaults", help="'defaults': the default config as YAML; 'reference': the key table."),
    path: Optional[Path] = typer.Option(None, "--config", "-c", help="Show this config (validated, defaults filled in)."),
):
    """Print the default config, a config with its defaults filled in, or the config reference."""

    if what == "reference":
        typer.echo(reference_markdown())
        return
    if what != "defaults":
        _fail(ValueError(f"unknown argument {what!r}: use 'defaults' or 'reference'"))
    try:
        typer.echo(load_config(path).to_yaml())
    except ConfigError as err:
        _fail(err)


@app.command()
def validate(path: Path = typer.Argument(..., help="Interchange JSONL or persona file (.jsonl/.csv).")):
    """Check a dialogue or persona file and report the first problem clearly."""

    try:
        first = next((json.loads(l) for l in path.open(encoding="utf-8") if l.strip()), {}) \
            if path.suffix == ".jsonl" else {}
        if "turns" in first:
            n = len(read_dialogues(path))
            typer.echo(f"ok: {n} dialogues")
        else:
            n = len(load_personas(path))
            typer.echo(f"ok: {n} personas")
    except (DialogueFormatError, PersonaFormatError, FileNotFoundError, json.JSONDecodeError) as err:
        _fail(err)


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    sys.exit(main())
