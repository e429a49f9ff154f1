"""Export a trained run, reload it in plain transformers and through UserSimulator, chat with it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simtrain.config import load_config

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from simtrain.train import train

    out = tmp_path_factory.mktemp("run") / "run"
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {"output_dir": str(out), "train.max_steps": 1,
                                                        "train.num_rollout_workers": 0, "train.wandb": False})
    train(cfg)
    return out


def test_export_round_trip_card_and_overwrite_guard(run_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simtrain import UserSimulator
    from simtrain.export import ExportError, export

    out = export(run_dir, tmp_path / "sim")
    for f in ("model.safetensors", "config.json", "tokenizer_config.json", "generation_config.json",
              "simulator.json", "README.md"):
        assert (out / f).exists(), f
    # plain transformers loads it, chat template included
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    # same greedy outputs as the checkpoint it came from
    history = [{"speaker": "agent", "text": "Hello, what brings you here today?"}]
    greedy = dict(task="therapy", persona="therapy-025")
    a = UserSimulator.from_pretrained(run_dir, **greedy)
    b = UserSimulator.from_pretrained(out, **greedy)
    for sim in (a, b):
        sim.sampling.temperature = 0
    assert a.reply(history) == b.reply(history)
    ids = torch.tensor([a.fmt.prompt_ids([{"role": "user", "content": "hi"}])])
    with torch.no_grad():
        merged_logits = model(ids).logits
        adapter_logits = a.lm.model(ids).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)

    card = (out / "README.md").read_text()
    for needle in ("Base model: `tiny-random`", "therapy", "## Consistency", "prompt_to_line", "## Training config",
                   "num_generations", "UserSimulator.from_pretrained"):
        assert needle in card, needle
    settings = json.loads((out / "simulator.json").read_text())
    assert "{description}" in settings["tasks"]["therapy"]["simulator_prompt"]

    with pytest.raises(ExportError, match="exists; pass --force"):
        export(run_dir, out)
    assert export(run_dir, out, force=True) == out
    adapter = export(run_dir / "checkpoint-1", tmp_path / "adapter", adapter_only=True)
    assert (adapter / "adapter_config.json").exists() and not (adapter / "model.safetensors").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-random"


def test_export_errors_are_clear(tmp_path):
    from simtrain.export import ExportError, export

    with pytest.raises(ExportError, match="no trained adapter found"):
        export(tmp_path, tmp_path / "out")


def test_chat_through_stdin(run_dir, tmp_path):
    from simtrain.export import export

    out = export(run_dir, tmp_path / "sim")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("judge: {backend: hf, model: tiny-random}\n")
    proc = subprocess.run([sys.executable, "-m", "simtrain.cli", "chat", str(out), "--task", "therapy",
                           "--persona", "therapy-025", "--seed", "0", "--config", str(cfg)],
                          input="Hello, what brings you here?\nHow did that feel?\n/score\n/quit\n",
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("You are the therapist. The simulator plays")
    assert sum(l.startswith("Stefan Brandt: ") for l in lines) == 2  # one reply per agent line
    scores = [l.strip() for l in lines if l.startswith("  ")]
    assert [s.split(":")[0] for s in scores] == ["prompt_to_line", "line_to_line", "qa", "composite"]
