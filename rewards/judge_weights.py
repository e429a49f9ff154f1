"""The shipped weights of the default judge, so that nobody trains it before a first test or run.

Training ``minilm-contra`` takes 4.5-10 minutes on 2 cores (``rewards.train_judge``), which every
fresh clone and every ``pip install`` would otherwise pay. The repository ships every tensor the
recipe changes, in float16 (about 22 MB; the word embeddings are frozen by the recipe, so they are
taken from the shipped all-MiniLM-L6-v2 again), beside a record of the recipe version they were
trained by. :func:`ensure` unpacks them into the judge cache in seconds when that version is the
current recipe's, and trains otherwise. ``simtrain judge-train --ship`` (``make ship-judge``)
retrains the default judge and rewrites them; a test fails while they are stale.

This is its own module because ``train_judge.py`` is part of the recipe's version hash: code
that only stores or loads the result must not change the version of what it stores.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from simtrain.rewards import judge_data, train_judge

logger = logging.getLogger("simtrain.judge_weights")

SHIPPED = Path(__file__).parent / "data" / "judge"
WEIGHTS, RECORD = SHIPPED / f"{train_judge.NAME}.safetensors", SHIPPED / f"{train_judge.NAME}.json"
# Pairs whose P(contradiction) under the full-precision judge is recorded beside the weights:
# unpacking must reproduce them, so a wrong key, label order or a precision loss cannot pass silently.
PROBES = (("Ana lives in Porto.", "I live in Oslo."), ("Ana is married to Rui.", "I've never been married."),
          ("Ana has two sons.", "The boys are still asleep."), ("Ana is a baker.", "The oven was playing up again."),
          ("Ana is shy and hates crowds.", "I love being the centre of attention at parties."))
PROBE_TOLERANCE = 2e-3


def shipped_version() -> str | None:
    """The recipe version the shipped weights were trained by (None: none shipped)."""
    return json.loads(RECORD.read_text())["version"] if RECORD.exists() else None


def _base_with_head():
    """all-MiniLM-L6-v2 with the judge's 3-way head, labelled as ``train_judge.train`` labels it."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    label2id = {l: i for i, l in enumerate(judge_data.LABELS)}
    hf_logging.set_verbosity_error()  # "newly initialized classifier": the shipped head replaces it
    return AutoModelForSequenceClassification.from_pretrained(
        train_judge.base_model_dir(), num_labels=len(label2id), id2label={i: l for l, i in label2id.items()},
        label2id=label2id)


def probe(path: Path) -> list[float]:
    """P(contradiction) of the judge in ``path`` on :data:`PROBES`."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(path), trust_remote_code=False)
    contra = {v.lower(): int(k) for k, v in model.model.config.id2label.items()}["contradiction"]
    return [round(float(p[contra]), 5) for p in model.predict(list(PROBES), apply_softmax=True)]


def ship(src: Path) -> Path:
    """Write the judge trained in ``src`` by the current default recipe to the shipped files."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification

    meta = json.loads((Path(src) / train_judge.MARKER).read_text())
    want = train_judge.JudgeTrainConfig().version()
    if meta.get("version") != want or "unpacked_from" in meta:
        raise ValueError(f"{src} is not a judge trained here by the current default recipe {want} "
                         f"(its record: version {meta.get('version')}, unpacked: {'unpacked_from' in meta})")
    trained = AutoModelForSequenceClassification.from_pretrained(src).state_dict()
    base = _base_with_head().state_dict()
    from_base = sorted(k for k, v in base.items() if k in trained and torch.equal(v, trained[k]))
    SHIPPED.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in trained.items() if k not in from_base}, str(WEIGHTS))
    RECORD.write_text(json.dumps({**meta, "shipped": {"dtype": "float16", "from_base": from_base,
                                                      "probes": probe(Path(src))}}, indent=2) + "\n")
    return WEIGHTS


def unpack(out: Path) -> Path:
    """Rebuild the shipped judge as a transformers folder in ``out`` (seconds), atomically, after
    checking that it gives the recorded probe verdicts."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    meta = json.loads(RECORD.read_text())
    model = _base_with_head()
    missing, unexpected = model.load_state_dict({k: v.to(torch.float32) for k, v in load_file(str(WEIGHTS)).items()},
                                                strict=False)
    if unexpected or set(missing) != set(meta["shipped"]["from_base"]):
        raise RuntimeError(f"{WEIGHTS} does not fit all-MiniLM-L6-v2: unexpected {unexpected}, "
                           f"missing {sorted(set(missing) - set(meta['shipped']['from_base']))}")
    out = Path(out).resolve()
    staging = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.eval()
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(train_judge.base_model_dir()).save_pretrained(staging)
    got, want = probe(staging), meta["shipped"]["probes"]
    if max(abs(a - b) for a, b in zip(got, want)) > PROBE_TOLERANCE:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"the unpacked judge gives P(contradiction) {got} on the probe pairs; "
                           f"the shipped record says {want}")
    record = {k: v for k, v in meta.items() if k != "shipped"} | {"unpacked_from": str(WEIGHTS)}
    (staging / train_judge.MARKER).write_text(json.dumps(record, indent=2))
    train_judge._install(staging, out)
    return out


def ensure() -> Path:
    """The cached default judge: unpacked from the shipped weights when they are the current
    recipe's (seconds), otherwise trained (``train_judge.ensure``)."""
    path = train_judge.default_dir()
    if (path / train_judge.MARKER).exists():
        return path
    version = train_judge.JudgeTrainConfig().version()
    if shipped_version() == version:
        logger.info("unpacking the shipped judge into %s", path)
        return unpack(path)
    logger.warning("the shipped judge weights are for recipe %s, the recipe is now %s: training it instead "
                   "(`simtrain judge-train --ship` rewrites the shipped weights)", shipped_version(), version)
    return train_judge.ensure()
