"""The rollout contract every engine keeps (the ``hf`` engine in test_rollout.py, the ``vllm``
engine in test_vllm_engine.py): what the trainer relies on in each recorded dialogue."""

import torch


def check_mask_is_the_simulator_lines(d, tok, n_lines: int) -> None:
    """``env_mask`` is 1 exactly on the simulator's tokens: its contiguous spans decode to the
    simulator's lines, in order, and what it hides holds the agent's lines."""
    assert len(d.completion_ids) == len(d.env_mask) == len(d.logprobs)
    spans, cur = [], []
    for tid, m in zip(d.completion_ids, d.env_mask):
        if m:
            cur.append(tid)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    sim_lines = d.simulator_lines()
    assert len(spans) == len(sim_lines) == n_lines
    for span, text in zip(spans, sim_lines):
        assert tok.decode(span, skip_special_tokens=True).strip() == text
    unmasked = tok.decode([t for t, m in zip(d.completion_ids, d.env_mask) if not m])
    first_sim = next(i for i, t in enumerate(d.turns) if t.speaker == "simulator")
    for t in d.turns[first_sim:]:
        if t.speaker == "agent":
            assert t.text in unmasked
    assert all(lp == 0.0 for lp, m in zip(d.logprobs, d.env_mask) if not m)


def fresh_logprob_gap(d, model, temperature: float) -> float:
    """Largest gap, over the simulator's tokens, between the recorded log-probs and a fresh
    forward pass of ``model`` over the whole dialogue (log_softmax(logits / temperature))."""
    ids = torch.tensor([d.prompt_ids + d.completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float() / temperature
    lp = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
    fresh = lp[len(d.prompt_ids) - 1:]
    mask = torch.tensor(d.env_mask, dtype=torch.bool)
    assert mask.sum() > 0
    return float((fresh[mask] - torch.tensor(d.logprobs)[mask]).abs().max())
