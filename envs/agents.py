"""Task agents: the therapist, teacher or chat partner that the simulator talks with.

An agent answers a batch of conversations (OpenAI-style message lists, the agent being the
"assistant") with one line each. Two kinds:

* :class:`HFAgent` runs a local model through an :class:`~simtrain.generation.HFGenerator`;
  when it shares the simulator's generator it uses the base weights with the adapter disabled.
* :class:`OpenAIAgent` calls any OpenAI-compatible endpoint concurrently.
"""

from __future__ import annotations

from simtrain.generation import ChatFormat, HFGenerator, SamplingConfig
from simtrain.openai_client import EndpointConfig, EndpointError, chat_completions


class HFAgent:
    def __init__(self, generator: HFGenerator, sampling: SamplingConfig, use_adapter: bool = False):
        self.generator = generator
        self.sampling = sampling
        self.use_adapter = use_adapter
        self.fmt = ChatFormat(generator.tok)

    def respond(self, conversations: list[list[dict]]) -> list[str]:
        prompts = [self.fmt.prompt_ids(c) for c in conversations]
        gens = self.generator.generate(prompts, self.sampling, use_adapter=self.use_adapter)
        return [g.text for g in gens]


class OpenAIAgent:
    def __init__(self, endpoint: EndpointConfig, sampling: SamplingConfig):
        self.endpoint = endpoint
        self.sampling = sampling

    def respond(self, conversations: list[list[dict]]) -> list[str]:
        s = self.sampling
        bodies = [{"messages": c, "max_tokens": s.max_new_tokens, "temperature": s.temperature,
                   "top_p": s.top_p} | ({"seed": s.seed} if s.seed is not None else {})
                  for c in conversations]
        results = chat_completions(self.endpoint, bodies)
        failed = [r for r in results if isinstance(r, EndpointError)]
        if failed:
            raise EndpointError(f"task agent: {len(failed)} of {len(results)} requests failed; first: {failed[0]}")
        return [(r["choices"][0]["message"].get("content") or "").strip() for r in results]
