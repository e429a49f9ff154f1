"""The `simtrain` command end to end on the smoke config (tiny random model, real code paths)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")


def simtrain(*args, input=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    return subprocess.run([sys.executable, "-m", "simtrain.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env, input=input, cwd=ROOT)


def test_rollout_score_eval_commands(tmp_path):
    from simtrain.dialogue import read_dialogues

    out = tmp_path / "d.jsonl"
    r = simtrain("rollout", "-c", SMOKE, "--out", str(out), "--show", "--set", "data.tasks=[therapy,education]")
    assert r.returncode == 0, r.stderr
    ds = read_dialogues(out)  # valid interchange JSONL
    assert len(ds) == 4 and {d.task for d in ds} == {"therapy", "education"}
    assert "== therapy/therapy-001/0 [therapy]" in r.stdout

    scored = tmp_path / "s.jsonl"
    r = simtrain("score", "-d", str(out), "-o", str(scored), "-c", SMOKE)
    assert r.returncode == 0, r.stderr
    assert "prompt_to_line:" in r.stdout and "judge hf:tiny-random:" in r.stdout
    d = read_dialogues(scored)[0]
    assert {"prompt_to_line", "line_to_line", "qa", "composite"} <= set(d.meta["scores"])
    assert "prompt_to_line" in d.turns[1].extra["scores"]

    rep = tmp_path / "eval"
    r = simtrain("eval", "-c", SMOKE, "--model", "tiny-random", "--compare", "tiny-random", "--out", str(rep),
                 "--set", "data.max_personas=2")
    assert r.returncode == 0, r.stderr
    report = json.loads((rep / "report.json").read_text())
    assert set(report["reduction"]["therapy"]) == {"prompt_to_line", "line_to_line", "qa"}
    assert report["generators"] == {"tiny-random": "HFGenerator"}  # rollout.engine hf (vllm: test_vllm_engine)
    assert (rep / "drift.png").stat().st_size > 1000 and "Relative inconsistency reduction" in (rep / "report.md").read_text()
    assert "therapy:" in r.stdout


def test_bad_inputs_fail_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout:\n  num_utterancs: 3\n")
    r = simtrain("rollout", "-c", str(bad))
    assert r.returncode == 2 and "did you mean 'rollout.num_utterances'" in r.stderr
    d = tmp_path / "d.jsonl"
    d.write_text('{"id": "x", "task": "therapy", "persona": {"id": "p", "description": "D"}, "turns": [{"speaker": "bot", "text": "hi"}]}\n')
    r = simtrain("score", "-d", str(d), "-c", SMOKE)
    assert r.returncode == 2 and "d.jsonl:1: field 'turns[0].speaker'" in r.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(d.read_text().replace('"bot"', '"simulator"'))
    r = simtrain("score", "-d", str(good), "-c", SMOKE, "--set", "rewards=[{path: 'nope:f'}]")
    assert r.returncode == 2 and "reward path 'nope:f': cannot import module 'nope'" in r.stderr
    r = simtrain("train", "--resume", str(tmp_path))
    assert r.returncode == 2 and "not a simtrain run folder" in r.stderr


def test_reduction_from_a_clean_base_reads_as_words_not_minus_infinity():
    from simtrain.evaluate import WORSE_FROM_ZERO, fmt_score, reduction

    assert reduction(0.8, 0.9) == pytest.approx(0.5)
    assert reduction(1.0, 1.0) == 0.0
    assert reduction(1.0, 0.9) == WORSE_FROM_ZERO
    assert fmt_score(reduction(1.0, 0.9), "+.1%") == "worse (base had no flagged line)"
    assert reduction(None, 0.9) is None


def test_terminal_messages_are_plain_text(capsys):
    """A simulator label that is an absolute path once crashed `simtrain eval` on the terminal:
    rich read "[/tmp/run] rolling out" as a closing markup tag."""
    from simtrain.reporting import RichReporter

    reporter = RichReporter()
    reporter.log("[/tmp/run/final] rolling out 8 eval dialogues [bold]")
    with reporter.progress(2, "[/tmp/run] scoring") as step:
        step(2)
    err = capsys.readouterr().err
    assert "[/tmp/run/final] rolling out 8 eval dialogues [bold]" in err and "[/tmp/run] scoring" in err
