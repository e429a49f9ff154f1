"""Rollout throughput: the batched lockstep engine against a one-dialogue-at-a-time loop and
against the ceiling (one batched ``generate`` call of the same total size), side by side in
one run on the same model, personas and sampling budget.

Prints one JSON line. Token counts include both speakers' generated tokens (the agent is the
same model, so its tokens cost the same); ``batched_sim_tok_s`` counts the simulator's alone.
The ceiling starts from the same simulator prompts and generates, in one call, as many tokens
per sequence as the engine generated per dialogue; it pays no second view (the agent's prompt),
no re-reading of the other speaker's lines, and no waiting on the longest line of each turn.

    python bench/rollout_throughput.py [--dialogues 16] [--utterances 6] [--max-new-tokens 32]
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

    def run(batch_size: int):
        eng = RolloutEngine(gen, HFAgent(gen, sampling), sampling, seed=0, num_utterances=args.utterances,
                            batch_size=batch_size)
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
    print(json.dumps({
        "model": args.model, "dialogues": args.dialogues, "utterances": args.utterances,
        "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(),
        "batched_tok_s": round(batched, 1), "sequential_tok_s": round(sequential, 1),
        "ceiling_tok_s": round(ceiling, 1), "batched_sim_tok_s": round(sim_b / t_b, 1),
        "speedup_vs_sequential": round(batched / sequential, 2),
        "fraction_of_ceiling": round(batched / ceiling, 3),
        "batched_s": round(t_b, 1), "sequential_s": round(t_s, 1), "ceiling_s": round(t_c, 1),
    }))


if __name__ == "__main__":
    main()
