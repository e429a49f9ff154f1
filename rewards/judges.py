"""Judges: one small interface, several backends, one cache.

A judge answers :class:`Query` objects. Every query is multiple choice; a yes/no question has
the options YES and NO, listed problem-answer first (``rewards.prompts`` phrases them). The answer
is a probability for each option, read directly from the judge model's next-token
distribution where possible, so there is no free text to mis-parse. A query the backend could
not answer (a failed request, an unreadable reply) comes back as ``None``: it is counted in
``judge.stats`` and logged, never turned silently into a 0 or a 1.

Backends:
* ``hf``: any local transformers causal LM (default: the embedded SmolLM2), batched forward passes.
* ``openai``: any OpenAI-compatible endpoint; log-probs when the server returns them, a strict
  one-word answer format otherwise.
* ``nli``: a sentence-transformers CrossEncoder NLI model (contradiction / entailment / neutral).
"""

from __future__ import annotations

# Heavy libraries (torch, transformers, trl, peft, ray, wandb, datasets, matplotlib) are imported
# inside the functions that use them: `import simtrain` and the CLI stay fast (0.1 s), and a run
# never loads what it does not use. The project's own modules are imported here, at the top.

import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from simtrain.rewards import fact_checks
from simtrain import models
from simtrain.openai_client import EndpointError, chat_completions
from simtrain.rewards import judge_weights, train_judge
from simtrain.rewards.sentences import sentences
from simtrain.openai_client import EndpointConfig

logger = logging.getLogger("simtrain.judges")

YES_NO = ("YES", "NO")
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Query:
    """One question for a judge.

    ``prompt`` is what LLM judges read. ``premise``/``hypotheses`` are what NLI judges read:
    for a yes/no query one hypothesis whose contradiction probability is P(option 0); for a
    multiple-choice query one hypothesis per option.
    """

    prompt: str
    options: tuple[str, ...] = YES_NO
    premise: str = ""
    hypotheses: tuple[str, ...] = ()
    # For a multiple-choice query: the NLI label that picks the option. "entailment": the option
    # that follows from the premise; "contradiction": the option (read as the earlier statement)
    # that the premise (the new line) contradicts.
    nli_label: str = "entailment"
    # The premise is the speaker's own earlier lines (line-to-line), not a persona description:
    # the fact-check rules read it in the first person.
    premise_is_said: bool = False

    @property
    def is_yes_no(self) -> bool:
        return set(self.options) == set(YES_NO)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.options if self.is_yes_no else tuple(LETTERS[: len(self.options)])

    def key(self, judge_id: str) -> str:
        raw = json.dumps([judge_id, self.prompt, self.options, self.premise, self.hypotheses, self.nli_label,
                          self.premise_is_said])
        return hashlib.sha1(raw.encode()).hexdigest()


Answer = tuple[float, ...]  # one probability per option, summing to 1


@dataclass
class JudgeStats:
    queries: int = 0  # sent to the backend (cache misses)
    cache_hits: int = 0
    failed: int = 0  # unanswerable / unreadable
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class JudgeCache:
    """Answers by (judge, query). In memory, and appended to a JSONL file when ``path`` is set,
    so a rerun (or a resumed training run) never pays for the same judgement twice."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._data: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        if self.path and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    k, v = json.loads(line)
                    self._data[k] = v
                except (ValueError, TypeError):
                    continue  # a torn last line from an interrupted run

    def get(self, key: str) -> Answer | None:
        v = self._data.get(key)
        return tuple(v) if v is not None else None

    def put(self, items: dict[str, Answer]) -> None:
        with self._lock:
            self._data.update({k: list(v) for k, v in items.items()})
            if self.path and items:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    for k, v in items.items():
                        fh.write(json.dumps([k, list(v)]) + "\n")

    def __len__(self) -> int:
        return len(self._data)


class Judge:
    """Base class: caching, stats and failure accounting around a backend's ``_ask``."""

    name = "judge"

    def __init__(self, cache: JudgeCache | None = None):
        self.cache = cache if cache is not None else JudgeCache()
        self.stats = JudgeStats()

    @property
    def id(self) -> str:
        return self.name

    def ask(self, queries: Sequence[Query]) -> list[Answer | None]:
        keys = [q.key(self.id) for q in queries]
        out: list[Answer | None] = [self.cache.get(k) for k in keys]
        todo = [i for i, a in enumerate(out) if a is None]
        self.stats.cache_hits += len(queries) - len(todo)
        if todo:
            # Ask each distinct query once, even when a batch repeats it.
            unique: dict[str, int] = {}
            for i in todo:
                unique.setdefault(keys[i], i)
            t0 = time.perf_counter()
            answers = self._ask([queries[i] for i in unique.values()])
            self.stats.seconds += time.perf_counter() - t0
            self.stats.queries += len(unique)
            fresh = {}
            for k, a in zip(unique, answers):
                if a is None:
                    self.stats.failed += 1
                else:
                    fresh[k] = a
            if len(fresh) < len(unique):
                logger.warning("%s: %d of %d judgements failed or were unreadable",
                               self.name, len(unique) - len(fresh), len(unique))
            self.cache.put(fresh)
            for i in todo:
                out[i] = fresh.get(keys[i])
        return out

    def p_problem(self, queries: Sequence[Query]) -> list[float | None]:
        """Probability of each yes/no query's first option: by convention, the problem answer."""
        return [a[0] if a is not None else None for a in self.ask(queries)]

    def _ask(self, queries: list[Query]) -> list[Answer | None]:  # pragma: no cover - abstract
        raise NotImplementedError


def _softmax(xs: list[float]) -> Answer:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return tuple(v / s for v in e)


def _variants(label: str) -> list[str]:
    forms = {label, label.lower(), label.capitalize()}
    return sorted(forms | {" " + f for f in forms})


class HFJudge(Judge):
    """A local causal LM; the verdict is the next-token distribution over the option labels."""

    name = "hf"

    def __init__(self, model: str = "smollm2", batch_size: int = 8, loaded=None,
                 cache: JudgeCache | None = None, trust_remote_code: bool = False):
        super().__init__(cache)

        self.model_name = model
        self.lm = loaded or models.load(model, trust_remote_code=trust_remote_code)
        self.batch_size = batch_size
        self._label_ids: dict[str, list[int]] = {}

    @property
    def id(self) -> str:
        return f"hf:{self.model_name}"

    def label_ids(self, label: str) -> list[int]:
        """Token ids that spell the label as one token ("YES", " Yes", "yes", ...)."""
        if label not in self._label_ids:
            ids = set()
            for form in _variants(label):
                enc = self.lm.tokenizer(form, add_special_tokens=False)["input_ids"]
                if len(enc) == 1:
                    ids.add(enc[0])
            if not ids:
                raise ValueError(f"the judge tokenizer has no single token for {label!r}")
            self._label_ids[label] = sorted(ids)
        return self._label_ids[label]

    def render(self, q: Query) -> list[int]:
        tok = self.lm.tokenizer
        text = tok.apply_chat_template([{"role": "user", "content": q.prompt}], tokenize=False,
                                       add_generation_prompt=True)
        return tok(text, add_special_tokens=False)["input_ids"]

    def _ask(self, queries: list[Query]) -> list[Answer | None]:
        import torch

        model, tok = self.lm.model, self.lm.tokenizer
        device = next(model.parameters()).device
        out: list[Answer | None] = []
        # Sort by length so batches pad little; restore order at the end.
        order = sorted(range(len(queries)), key=lambda i: len(queries[i].prompt))
        results: dict[int, Answer] = {}
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            seqs = [self.render(queries[i]) for i in idx]
            width = max(map(len, seqs))
            ids = torch.tensor([[tok.pad_token_id] * (width - len(s)) + s for s in seqs], device=device)
            att = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=att, logits_to_keep=1).logits[:, -1].float()
            logp = torch.log_softmax(logits, -1)
            for row, i in enumerate(idx):
                scores = [torch.logsumexp(logp[row, self.label_ids(l)], 0).item() for l in queries[i].labels]
                results[i] = _softmax(scores)
        for i in range(len(queries)):
            out.append(results.get(i))
        return out


class OpenAIJudge(Judge):
    """An OpenAI-compatible endpoint. Uses the first token's log-probs when returned;
    otherwise accepts only a reply whose first word is exactly one of the labels."""

    name = "openai"

    def __init__(self, endpoint, cache: JudgeCache | None = None, max_tokens: int = 4):
        super().__init__(cache)
        self.endpoint = endpoint
        self.max_tokens = max_tokens

    @property
    def id(self) -> str:
        return f"openai:{self.endpoint.base_url}:{self.endpoint.model}"

    def _ask(self, queries: list[Query]) -> list[Answer | None]:

        bodies = [{"messages": [{"role": "user", "content": q.prompt + "\nReply with one word: "
                                 + " or ".join(q.labels) + "."}],
                   "max_tokens": self.max_tokens, "temperature": 0, "logprobs": True, "top_logprobs": 10}
                  for q in queries]
        answers: list[Answer | None] = []
        for q, r in zip(queries, chat_completions(self.endpoint, bodies)):
            if isinstance(r, EndpointError):
                logger.warning("openai judge: %s", r)
                answers.append(None)
                continue
            answers.append(self._read(q, r["choices"][0]))
        return answers

    @staticmethod
    def _read(q: Query, choice: dict) -> Answer | None:
        labels = [l.upper() for l in q.labels]
        try:
            first = choice["logprobs"]["content"][0]["top_logprobs"]
            mass = [0.0] * len(labels)
            for entry in first:
                t = entry["token"].strip().upper()
                if t in labels:
                    mass[labels.index(t)] += math.exp(entry["logprob"])
            if sum(mass) > 0:
                return tuple(m / sum(mass) for m in mass)
        except (KeyError, IndexError, TypeError):
            pass
        text = (choice.get("message", {}).get("content") or "").strip()
        word = text.split()[0].strip(".,:;!\"')(").upper() if text else ""
        if word in labels:
            return tuple(1.0 if l == word else 0.0 for l in labels)
        return None


class NLIJudge(Judge):
    """A sentence-transformers CrossEncoder trained for NLI (contradiction / entailment / neutral).

    ``model`` is a path or hub id, or ``minilm-contra``: simtrain's own offline judge, trained
    from shipped weights and generated data by ``simtrain judge-train`` (its trained weights ship
    too: ``rewards.judge_weights`` unpacks them on first use).

    With ``decompose`` (the default) a yes/no query's premise is split into sentences (and lines),
    each is compared with the line on its own, and P(contradiction) is the largest of them: a
    small cross-encoder judges one sentence against one line far better than a whole persona
    description against it, and one contradicted sentence is enough to make a line inconsistent.

    With ``fact_checks`` (the default) each (sentence, line) pair judged for contradiction also
    goes through the rules of `rewards.fact_checks` (the speaker's age, school year, where they are
    now, family, birth order, diet); a pair the rules find in conflict gets P(contradiction) of at
    least ``FACT_CONFLICT_P``.
    """

    FACT_CONFLICT_P = 0.95  # a rule's verdict: near-certain, yet below a confident model's

    name = "nli"

    def __init__(self, model: str, cache: JudgeCache | None = None, batch_size: int = 16, decompose: bool = True,
                 fact_checks: bool = True):
        super().__init__(cache)
        from sentence_transformers import CrossEncoder


        self.model_name = model
        path = model
        if model == train_judge.NAME:
            path = str(judge_weights.ensure())
            self.model_name = Path(path).name  # carries the recipe's version: a retrained judge never reuses cached verdicts
        elif (Path(path) / train_judge.MARKER).exists():  # a judge from `simtrain judge-train --out`
            version = json.loads((Path(path) / train_judge.MARKER).read_text()).get("version", "")
            self.model_name = f"{model}@{version}"
        self.model = CrossEncoder(path, trust_remote_code=False)
        labels = {v.lower(): int(k) for k, v in self.model.model.config.id2label.items()}
        try:
            self.contra, self.entail = labels["contradiction"], labels["entailment"]
        except KeyError:
            raise ValueError(f"{model} is not an NLI model: its labels are {sorted(labels)}") from None
        self.batch_size = batch_size
        self.decompose = decompose
        self.fact_checks = fact_checks

    @property
    def id(self) -> str:
        return (f"nli:{self.model_name}" + ("" if self.decompose else ":whole")
                + (f":facts-{fact_checks.VERSION}" if self.fact_checks else ""))

    def _split(self, text: str) -> list[str]:
        """Sentences (and lines) of a premise, or the text whole without ``decompose``."""

        if not self.decompose:
            return [text]
        return [s for part in text.split("\n") for s in sentences(part)] or [text]

    def _groups(self, q: Query) -> tuple[int, list[list[tuple[str, str]]]]:
        """The (premise, hypothesis) pairs to score for a query, grouped: one group for a yes/no
        query, one per option otherwise. A group scores as its largest probability of ``column``."""
        if q.is_yes_no:
            line = (q.hypotheses or (q.prompt,))[0]
            return self.contra, [[(s, line) for s in self._split(q.premise)]]
        if q.nli_label == "contradiction":  # options are earlier statements: each goes first, as trained
            return self.contra, [[(s, q.premise) for s in self._split(h)] for h in q.hypotheses]
        return self.entail, [[(q.premise, h)] for h in q.hypotheses]

    def _ask(self, queries: list[Query]) -> list[Answer | None]:
        import numpy as np

        plans = [self._groups(q) for q in queries]
        pairs = [pair for _, groups in plans for group in groups for pair in group]
        probs = np.asarray(self.model.predict(pairs, batch_size=self.batch_size, apply_softmax=True,
                                              show_progress_bar=False))
        out: list[Answer | None] = []
        at = 0
        for q, (column, groups) in zip(queries, plans):
            scores = []
            for group in groups:
                if self.fact_checks and column == self.contra:
                    for k, (premise, line) in enumerate(group):
                        if fact_checks.conflict(premise, line, premise_is_said=q.premise_is_said):
                            probs[at + k, column] = max(probs[at + k, column], self.FACT_CONFLICT_P)
                scores.append(float(probs[at:at + len(group), column].max()))
                at += len(group)
            if q.is_yes_no:  # option 0 is the problem answer: P(contradiction), worst sentence
                out.append((scores[0], 1.0 - scores[0]))
            else:  # each option's score under the query's NLI label, normalised
                e = [x + 1e-9 for x in scores]
                out.append(tuple(x / sum(e) for x in e))
        return out


class JudgeConfig(BaseModel):
    """The run config's ``judge`` section (and ``check.judge``), used as it is by `make_judge`.
    It lives here, not in ``simtrain.config``, so that this layer can take it without importing
    upward; the config imports it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    backend: Literal["hf", "openai", "nli"] = Field("nli", description="Judge backend: nli (cross-encoder; the default is simtrain's trained offline judge), hf (local causal LM), openai (endpoint).")
    model: str | None = Field(None, description="Local judge model (hf, nli): a path / hub id or simtrain name (nli: default 'minilm-contra'; hf: default 'smollm2').")
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig, description="The server for backend 'openai' (base_url and model required).")
    batch_size: int = Field(8, ge=1, description="Queries per forward pass (hf, nli).")
    threshold: float = Field(0.5, gt=0, lt=1, description="P(contradiction) at or above which a line is judged inconsistent.")
    calibrate: bool | None = Field(None, description="Prompt-to-line: compare each verdict with the same question about a neutral line (cancels a yes/no bias). Default: on for hf, off otherwise.")
    qa_when: str = Field("half", description="When Q&A probes are asked: 'end', 'half' (half-way and end) or 'each' line.")
    cache_path: str | None = Field(None, description="JSONL file caching judgements across runs; default: <run dir>/judge_cache.jsonl.")
    fact_checks: bool = Field(True, description="nli: also compare the speaker's age, school year, place, family, birth order and diet, read by rules (rewards/fact_checks.py).")

    def resolved_model(self) -> str:
        if self.model:
            return self.model
        if self.backend == "openai":
            return self.endpoint.require("judge.endpoint").model
        return {"nli": "minilm-contra", "hf": "smollm2"}[self.backend]

    def resolved_calibrate(self) -> bool:
        return self.backend == "hf" if self.calibrate is None else self.calibrate


def make_judge(spec: JudgeConfig, loaded=None, default_cache: str | None = None) -> Judge:
    """Build the judge a ``judge`` config section describes. ``default_cache`` is the judgement
    cache used when the section names none (training passes the run folder's)."""
    cache = JudgeCache(spec.cache_path or default_cache)
    model = spec.resolved_model()
    if spec.backend == "hf":
        return HFJudge(model, batch_size=spec.batch_size, loaded=loaded, cache=cache)
    if spec.backend == "openai":
        return OpenAIJudge(spec.endpoint.require("judge.endpoint"), cache=cache)
    if spec.backend == "nli":
        return NLIJudge(model, cache=cache, batch_size=spec.batch_size, fact_checks=spec.fact_checks)
    raise ValueError(f"unknown judge backend {spec.backend!r}; choose hf, openai or nli")
