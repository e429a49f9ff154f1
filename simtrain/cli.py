"""The `simtrain` command line. Thin by design: parse, call a library function, print."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train LLM user simulators to stay in character.")


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _overrides(pairs: list[str]) -> dict:
    """``--set rollout.num_utterances=4`` pairs -> dict with YAML-parsed values."""
    import yaml

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
    from simtrain.config import ConfigError, load_config
    from simtrain.dialogue import transcript, write_dialogues
    from simtrain.reporting import RichReporter
    from simtrain.rollout import build_engine, make_jobs

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
def validate(path: Path = typer.Argument(..., help="Interchange JSONL or persona file (.jsonl/.csv).")):
    """Check a dialogue or persona file and report the first problem clearly."""
    from envs.personas import PersonaFormatError, load_personas
    from simtrain.dialogue import DialogueFormatError, read_dialogues

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
