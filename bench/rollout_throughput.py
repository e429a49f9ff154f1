"""Rollout throughput: the batched lockstep engine against a one-dialogue-at-a-time loop and
against the ceiling (one batched ``generate`` call of the same total size), side by side in
one run on the same model, personas and sampling budget.

With vLLM importable (``make vllm-venv``; run it with ``.venv-vllm/bin/python``), the same run
adds the ``vllm`` engine's rows beside them, on the same jobs and sampling. First an engine
without LoRA support, as ``weight_sync: merged`` runs it: streaming (each dialogue's next line
starts when its last one ends; prefix caching), the same engine in lockstep turns
(``continuous=False``), its own ceiling (one vLLM ``generate`` call, same prompts, same tokens
per sequence), and a LoRA adapter merged into its weights (``vllm_merged_push_s`` is the merge
and the in-place load). Then an engine with LoRA support, as ``weight_sync: lora`` runs it: on
the base weights (what it serves a task agent that shares them, and the policy before the first
push), and with the adapter loaded. Each timed vLLM run starts from an empty prefix cache; the
streaming run and the call are timed ``--repeats`` times in turn and the median pair is
reported (``vllm_fraction_of_call_each`` lists all of them).

Prints one JSON line. Token counts include both speakers' generated tokens (the agent is the
same model, so its tokens cost the same); ``batched_sim_tok_s`` counts the simulator's alone.
The ceiling starts from the same simulator prompts and generates, in one call, as many tokens
per sequence as the engine generated per dialogue; it pays no second view (the agent's prompt),
no re-reading of the other speaker's lines, and no waiting on the longest line of each turn.

    python bench/rollout_throughput.py [--dialogues 16] [--utterances 6] [--max-new-tokens 32] [--repeats 3] [--compiled] [--vllm auto|on|off]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import warnings  # noqa: E402

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--dialogues", type=int, default=16)
    ap.add_argument("--utterances", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved (vllm streaming, one vLLM call) pairs; the median pair is reported")
    ap.add_argument("--compiled", action="store_true",
                    help="vllm rows with torch.compile (rollout.vllm.enforce_eager: false; starts in ~140 s)")
    ap.add_argument("--vllm", choices=["auto", "on", "off"], default="auto",
                    help="add the vllm engine's rows (auto: when vLLM is importable)")
    args = ap.parse_args()

    import torch

    from simtrain.envs.agents import HFAgent
    from simtrain.envs.personas import load_personas
    from simtrain.envs.tasks import get_task
    from simtrain import models
    from simtrain.generation import HFGenerator, SamplingConfig
    from simtrain.envs.tasks import opening_line
    from simtrain.dialogue import Turn
    from simtrain.generation import ChatFormat
    from simtrain.rollout import RolloutEngine, RolloutJob, simulator_messages

    lm = models.load(args.model, device="cpu")
    gen = HFGenerator(lm.model, lm.tokenizer)
    sampling = SamplingConfig(temperature=0.8, max_new_tokens=args.max_new_tokens)
    personas = (load_personas("therapy") * 4)[: args.dialogues]
    jobs = [RolloutJob(get_task("therapy"), p, f"d{i}") for i, p in enumerate(personas)]

    def run(batch_size: int, generator=gen, continuous: bool = True):
        eng = RolloutEngine(generator, HFAgent(generator, sampling), sampling, seed=0, num_utterances=args.utterances,
                            batch_size=batch_size, continuous=continuous)
        t0 = time.perf_counter()
        ds = eng.run(jobs)
        dt = time.perf_counter() - t0
        sim = sum(sum(d.env_mask) for d in ds)
        agent = sum(len(lm.tokenizer(t.text, add_special_tokens=False)["input_ids"]) + 1
                    for d in ds for t in d.turns[1:] if t.speaker == "agent")
        return dt, sim, sim + agent

    run(args.dialogues)  # warm-up (allocator, kernels)
    t_b, sim_b, all_b = run(args.dialogues)
    t_s, sim_s, all_s = run(1)

    # Ceiling: ONE generate call of the same total size: the same simulator prompts, and as
    # many new tokens per sequence as the engine generated per dialogue (both speakers), no early stop.
    per_seq = max(1, round(all_b / args.dialogues))
    fmt = ChatFormat(lm.tokenizer)
    prompts = [fmt.prompt_ids(simulator_messages(j.task, j.persona, [Turn("agent", opening_line(j.task, j.persona))]))
               for j in jobs]
    width = max(map(len, prompts))
    pad = lm.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    att = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        lm.model.generate(input_ids=ids, attention_mask=att, do_sample=True, temperature=0.8, top_p=0.95,
                          max_new_tokens=per_seq, min_new_tokens=per_seq, pad_token_id=pad)
    t_c = time.perf_counter() - t0
    ceiling = per_seq * args.dialogues / t_c

    batched, sequential = all_b / t_b, all_s / t_s
    rows = {}
    if args.vllm == "on" or (args.vllm == "auto" and vllm_importable()):
        # After the hf rows: vLLM's CPU build pins this process's threads to cores when it starts.
        rows = vllm_rows(args, lm, prompts, run, batched)
    print(json.dumps({
        "model": args.model, "dialogues": args.dialogues, "utterances": args.utterances,
        "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(),
        "batched_tok_s": round(batched, 1), "sequential_tok_s": round(sequential, 1),
        "ceiling_tok_s": round(ceiling, 1), "batched_sim_tok_s": round(sim_b / t_b, 1),
        "speedup_vs_sequential": round(batched / sequential, 2),
        "fraction_of_ceiling": round(batched / ceiling, 3),
        "batched_s": round(t_b, 1), "sequential_s": round(t_s, 1), "ceiling_s": round(t_c, 1), **rows,
    }))


def vllm_importable() -> bool:
    from simtrain.vllm_generation import VLLMNotInstalled, import_vllm

    try:
        import_vllm()
        return True
    except VLLMNotInstalled:
        return False


def vllm_rows(args, lm, prompts, run, hf_batched: float) -> dict:
    """The vllm engine on the same jobs (``run`` with a VLLMGenerator), its one-call ceiling and
    a LoRA adapter merged into its weights; then an engine with LoRA support, on the base
    weights and serving the adapter."""
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from vllm import SamplingParams

    from simtrain import models
    from simtrain.vllm_generation import VLLMConfig, VLLMGenerator
    from simtrain.workers import merged_weights

    # No LoRA support in this engine: with it, every step runs vLLM's LoRA kernels (on the
    # logits too) even with no adapter loaded, about 8% of the base rows' tokens/s on this CPU.
    # The hf rows run the bare model; so does this engine, as weight_sync: merged serves it.
    def start_engine(max_lora_rank: int | None = None) -> VLLMGenerator:
        return VLLMGenerator(str(models.resolve(args.model)), lm.tokenizer, VLLMConfig(enforce_eager=not args.compiled),
                             max_lora_rank=max_lora_rank)

    t0 = time.perf_counter()
    vsim = start_engine()
    start = time.perf_counter() - t0
    run(args.dialogues, vsim)  # warm-up

    # Every timed run starts from an empty prefix cache: otherwise it would find the earlier
    # runs' identical dialogues there (same seed), which no training step does (each policy
    # version is a new LoRA id or new weights, and its dialogues are new).
    def cold(engine, *a, **kw):
        engine.llm.reset_prefix_cache()
        return run(*a, generator=engine, **kw)

    # The streaming engine and its ceiling, interleaved `repeats` times: one pair moves by
    # several percent from run to run on a shared 2-core machine, so the median pair is reported.
    pairs = []
    vsim.prompt_tokens = vsim.cached_tokens = 0
    for _ in range(args.repeats):
        t_v, sim_v, all_v = cold(vsim, args.dialogues)  # streaming, the vllm default
        per_seq = max(1, round(all_v / args.dialogues))
        params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=per_seq, min_tokens=per_seq, ignore_eos=True,
                                seed=0, detokenize=False)
        vsim.llm.reset_prefix_cache()
        t0 = time.perf_counter()
        outs = vsim.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        t_call = time.perf_counter() - t0
        call_prefill = sum(len(o.prompt_token_ids) - (o.num_cached_tokens or 0) for o in outs)
        pairs.append((all_v / t_v, per_seq * args.dialogues / t_call, sim_v / t_v))
    fractions = sorted(e / c for e, c, _ in pairs)
    engine, call, sim_rate = sorted(pairs, key=lambda x: x[0] / x[1])[len(pairs) // 2]  # the median pair
    cache_hit = vsim.cached_tokens / max(1, vsim.prompt_tokens)  # of the streaming runs' prompt tokens
    # What the stream computes beyond the call: the streaming runs' prompt tokens not found
    # cached, per run (on this CPU a prefilled token costs about 1.4 ms; README, throughput).
    stream_prefill = (vsim.prompt_tokens - vsim.cached_tokens) / args.repeats
    t_ls, _, all_ls = cold(vsim, args.dialogues, continuous=False)  # lockstep turns, as the hf engine

    # A trained policy: LoRA r=16 on all linear layers, lora_B off zero (so it is not the identity).
    peft_model = get_peft_model(lm.model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    folder = tempfile.mkdtemp()
    peft_model.save_pretrained(folder)

    # The adapter merged into the weights and loaded in place (weight_sync: merged): no LoRA
    # kernels run. The agent shares this engine, so it plays the merged weights too; its lines
    # cost what the base's do.
    t0 = time.perf_counter()
    vsim.load_weights(merged_weights(models.checkpoint_files(args.model), get_peft_model_state_dict(peft_model),
                                     peft_model.peft_config["default"]))
    push = time.perf_counter() - t0
    run(args.dialogues, vsim)  # warm-up
    t_m, _, all_m = cold(vsim, args.dialogues)
    vsim.close()

    # weight_sync: lora: an engine with LoRA support, first on the base weights, then serving
    # the adapter as the policy (the agent keeps the base weights, as in training).
    vlora = start_engine(max_lora_rank=16)
    run(args.dialogues, vlora)  # warm-up
    t_lb, _, all_lb = cold(vlora, args.dialogues)
    vlora.set_adapter(folder, 1)
    run(args.dialogues, vlora)  # warm-up (loads the adapter)
    t_l, _, all_l = cold(vlora, args.dialogues)
    vlora.close()
    return {"vllm_tok_s": round(engine, 1), "vllm_sim_tok_s": round(sim_rate, 1),
            "vllm_lockstep_tok_s": round(all_ls / t_ls, 1),
            "vllm_call_tok_s": round(call, 1), "vllm_lora_tok_s": round(all_l / t_l, 1),
            "vllm_lora_engine_base_tok_s": round(all_lb / t_lb, 1),
            "vllm_merged_tok_s": round(all_m / t_m, 1), "vllm_merged_push_s": round(push, 2),
            "vllm_vs_hf_batched": round(engine / hf_batched, 2), "vllm_fraction_of_call": round(engine / call, 3),
            "vllm_fraction_of_call_each": [round(f, 3) for f in fractions], "vllm_prefix_cache_hit": round(cache_hit, 3),
            "vllm_prefill_tokens": round(stream_prefill), "vllm_generated_tokens": all_v,
            "vllm_call_prefill_tokens": call_prefill, "vllm_call_generated_tokens": per_seq * args.dialogues,
            "vllm_start_s": round(start, 1), "vllm_compiled": args.compiled}


if __name__ == "__main__":
    main()
