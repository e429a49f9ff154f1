"""The offline judge: its generated training data, and the trained default judge itself, loaded
the way users load it (the default config), on blatant contradictions and clean lines."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from simtrain.rewards import judge_data
from simtrain.rewards.line_to_line import LineToLine
from simtrain.rewards.prompt_to_line import PromptToLine
from simtrain.dialogue import Dialogue, Turn

CHECKSET = Path(__file__).resolve().parent.parent / "rewards" / "data" / "checkset.jsonl"


STOP = set("i i'm me my a an the and or but so to of in on at for with is am are was be it it's that this i've "
           "i'd i'll don't do not no never just all any you your we our he she his her they them has have had".split())


def content_words(text):
    return {w for w in re.findall(r"[a-z']+", text.lower()) if w not in STOP and len(w) > 2}


def near_copy(a, b, share=0.6):
    """Shares at least three content words and most of them: a paraphrase, not a shared topic."""
    wa, wb = content_words(a), content_words(b)
    return len(wa & wb) >= 3 and len(wa & wb) / len(wa | wb) >= share


def near_copies(texts, checked, share=0.6):
    """Every (text, checked line) pair that is a `near_copy`. The same answer as testing all
    pairs, through an index of content words: all pairs took 50 s, a tenth of the suite."""
    words = {c: content_words(c) for c in checked}
    index = {}
    for c, ws in words.items():
        for w in ws:
            index.setdefault(w, []).append(c)
    out = []
    for t in texts:
        shared = Counter(c for w in content_words(t) for c in index.get(w, ()))
        out += [(t, c) for c, k in shared.items() if k >= 3 and near_copy(t, c, share)]
    return out


def test_generated_pairs_are_deterministic_balanced_and_never_from_the_check_set():
    a, b = judge_data.generate(900, 3, 2, True), judge_data.generate(900, 3, 2, True)
    assert a == b and a != judge_data.generate(900, 4, 2, True)
    counts = {l: sum(p.label == l for p in a) for l in judge_data.LABELS}
    assert all(c > 900 * 0.15 for c in counts.values()), counts
    # The judge is measured on the check set's held-out and fresh parts: no training line or
    # premise may copy or closely paraphrase a line or description sentence of either.
    records = [json.loads(l) for l in CHECKSET.read_text().splitlines()]
    assert {r["meta"]["split"] for r in records} == {"tune", "heldout", "fresh"}
    records = [r for r in records if r["meta"]["split"] != "tune"]
    lines = {t["text"] for r in records for t in r["turns"]}
    descriptions = {s for r in records for s in judge_data.sentences(r["persona"]["description"])}
    texts = {p.hypothesis for p in a} | {p.premise for p in a}
    more = Path(judge_data.WRITTEN).with_name("judge_train_more.jsonl")  # not in the recipe, but kept for one
    texts |= {x for p in judge_data.written_pairs() + judge_data.written_pairs(more) for x in (p.premise, p.hypothesis)}
    copies = near_copies(texts, lines)
    # persona descriptions share stock phrases ("a visual learner who likes diagrams"): looser
    copies += near_copies(texts, descriptions, share=0.75)
    assert not copies, copies[:5]


def test_written_neutral_keeps_a_fraction_of_the_hand_written_neutral_pairs_only():
    """The fast recipe drops most hand-written neutral pairs (the bulk of the training time) and
    keeps every contradiction and entailment."""
    full, thin = judge_data.generate(0, 0, 1, False), judge_data.generate(0, 0, 1, False, written_neutral=0.3)
    count = lambda pairs, label: sum(p.label == label for p in pairs)  # noqa: E731
    for label in (judge_data.CONTRADICTION, judge_data.ENTAILMENT):
        assert count(thin, label) == count(full, label) > 1000
    assert 0.25 < count(thin, judge_data.NEUTRAL) / count(full, judge_data.NEUTRAL) < 0.35
    assert set(thin) <= set(full)


def test_judge_version_follows_its_training_data(tmp_path, monkeypatch):
    """A cached judge is reused only while its recipe, code and training data are unchanged. The
    check set is training data only when its tuning part is trained on, so growing it leaves the
    default judge (trained without it) valid, and invalidates one trained with it."""
    from simtrain.rewards.train_judge import JudgeTrainConfig

    default, with_tune = JudgeTrainConfig(), JudgeTrainConfig(tune_part=True)
    before = default.version(), with_tune.version()
    grown = tmp_path / "checkset.jsonl"
    grown.write_text(CHECKSET.read_text() + CHECKSET.read_text().splitlines()[0] + "\n")
    monkeypatch.setattr(judge_data, "CHECKSET", grown)
    assert default.version() == before[0] and with_tune.version() != before[1]
    assert JudgeTrainConfig(epochs=2).version() != before[0]


def test_sentences_split_descriptions_and_keep_lines_whole():
    assert judge_data.sentences("Ana is 40. She bakes! Does she? \"Yes.\"") == ["Ana is 40.", "She bakes!", "Does she?", "\"Yes.\""]
    assert judge_data.sentences("Mr. Li is 3.5 feet tall.") == ["Mr. Li is 3.5 feet tall."]


def test_first_person_restatement_and_written_pairs():
    assert judge_data.first_person("She lives with her parents in Perth.", "Lucy Tan") == \
        "I live with my parents in Perth."
    assert judge_data.first_person("Lucy is a 24-year-old accountant.", "Lucy Tan") == "I am a 24-year-old accountant."
    assert judge_data.first_person("The lesson is on fractions.", "Lucy Tan") is None
    written = judge_data.written_pairs()
    assert len(written) > 10000 and {p.label for p in written} == set(judge_data.LABELS)
    tune = judge_data.tune_pairs()
    assert ("She is vegetarian.", "Nothing beats a big grilled steak after a session.", "contradiction") in \
        {(p.premise, p.hypothesis, p.label) for p in tune}
    # each hand-written persona line that contradicts names a real sentence of its description
    assert ("Tomasz is a 52-year-old crane operator at the Gdansk shipyard.",
            "I've been a dentist for twenty years, so I'm used to nervous people.", "contradiction") in \
        {(p.premise, p.hypothesis, p.label) for p in written}
    # ... and a clean line agrees with the sentence it is about: entailment there, neutral elsewhere
    about = {(p.premise, p.label) for p in written if p.hypothesis == "Ten hours up in the cab, the wind was shaking the whole crane."}
    assert ("Tomasz is a 52-year-old crane operator at the Gdansk shipyard.", "entailment") in about
    assert ("He is blunt and impatient.", "neutral") in about


PERSONA = {"id": "p1", "name": "Ana", "facts": {},
           "description": "Ana is a 40-year-old baker in Porto. She is married to Rui and has two sons. "
                          "She is shy and hates crowds."}


def dialogue(*lines):
    turns = []
    for line in lines:
        turns += [Turn("agent", "Tell me more."), Turn("simulator", line)]
    return Dialogue("d", "chitchat", PERSONA, turns)


@pytest.fixture(scope="session")
def default_judge():
    """The judge a default config builds: trains minilm-contra into the cache on first use."""
    from simtrain.rewards.judges import make_judge
    from simtrain.config import RunConfig

    cfg = RunConfig()
    assert (cfg.judge.backend, cfg.judge.resolved_model()) == ("nli", "minilm-contra")
    return make_judge(cfg.judge)


def test_default_judge_flags_blatant_contradictions_and_passes_clean_lines(default_judge):
    clean = ["Rui and the boys are still asleep when I start.", "The oven was playing up again this morning.",
             "The flour delivery came late.", "I'd rather stay home than go to a festival."]
    blatant = ["I've never been married.", "I don't have any kids.", "I live in Oslo.",
               "I work as an accountant in a big office."]
    [r] = PromptToLine(default_judge, calibrate=False).score([dialogue(*clean, *blatant)])
    assert r.lines[:4] == [1.0] * 4, r.details["p_contradiction"]
    assert r.lines[4:] == [0.0] * 4, r.details["p_contradiction"]


@pytest.mark.xfail(strict=True, reason="known limit of minilm-contra (README, Judge quality): a consistent "
                   "line on the same topic as a description sentence often reads as a contradiction")
def test_default_judge_passes_consistent_lines_on_the_descriptions_own_topics(default_judge):
    d = dialogue("Big parties make me nervous, honestly.", "Porto is lovely in the spring.",
                 "I've been baking bread since I was a girl.")
    [r] = PromptToLine(default_judge, calibrate=False).score([d])
    assert r.lines == [1.0, 1.0, 1.0], r.details["p_contradiction"]


def test_default_judge_finds_self_contradictions(default_judge):
    d = dialogue("My sister Ines comes round every Sunday.", "I walk the dog before work.",
                 "I have no brothers or sisters.")
    [r] = LineToLine(default_judge).score([d])
    assert r.lines[1] == 1.0 and r.lines[2] < 1.0, r.details["p_contradiction"]
    assert r.details["conflicts"][0]["conflicts_with_turns"] == [1]


def test_default_judge_finds_self_contradictions_that_need_an_inference(default_judge):
    """A sister, so not an only child: the model alone misses this (P = 0.27, README); the
    default judge's family fact check catches it."""
    d = dialogue("My sister Ines comes round every Sunday.", "I walk the dog before work.",
                 "I'm an only child, there's nobody like that.")
    [r] = LineToLine(default_judge).score([d])
    assert r.lines[1] == 1.0 and r.lines[2] < 1.0, r.details["p_contradiction"]


def test_judge_train_command_writes_a_loadable_judge_and_reuses_the_cached_one(default_judge, tmp_path):
    """The documented command, end to end on a sliver of an epoch: an NLI model the nli backend
    loads, its recipe recorded; and the default folder is found, not retrained."""
    import subprocess
    import sys

    from simtrain.rewards.judges import NLIJudge

    cli = [sys.executable, "-m", "simtrain.cli", "judge-train"]
    out = tmp_path / "judge"
    r = subprocess.run(cli + ["--out", str(out), "--epochs", "0.01", "--seed", "1"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "simtrain_judge.json").read_text())
    assert meta["config"]["seed"] == 1 and meta["pairs"] > 5000
    # the recipe freezes the word embeddings: they are still the shipped ones, the classifier moved
    from transformers import AutoModel

    from simtrain.rewards.train_judge import JudgeTrainConfig, base_model_dir

    assert JudgeTrainConfig().freeze_embeddings
    shipped = AutoModel.from_pretrained(base_model_dir()).get_input_embeddings().weight
    trained = AutoModel.from_pretrained(out).get_input_embeddings().weight
    assert shipped.shape == trained.shape and bool((shipped == trained).all())
    assert not list(tmp_path.glob("judge.*-*"))  # staging / old folders renamed or removed, nothing left behind
    judge = NLIJudge(str(out))
    assert judge.p_problem([judge_query("Ana lives in Porto.", "I live in Oslo.")])[0] is not None

    r = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "already trained" in r.stdout, r.stdout + r.stderr
    # a folder that is not a judge is never overwritten
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    r = subprocess.run(cli + ["--out", str(tmp_path / "notes"), "--force"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "is not a trained judge" in r.stderr
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def judge_query(premise, line):
    from simtrain.rewards.judges import Query

    return Query("", premise=premise, hypotheses=(line,))


def test_the_shipped_judge_weights_are_the_current_recipes():
    """A changed recipe (config, generator, trainer code or data) needs new shipped weights, or
    every fresh clone trains the judge for minutes before its first test."""
    from simtrain.rewards import judge_weights
    from simtrain.rewards.train_judge import JudgeTrainConfig

    assert judge_weights.shipped_version() == JudgeTrainConfig().version(), (
        "rewards/data/judge/ holds weights of another judge recipe: run `make ship-judge` and commit them")


def test_the_shipped_judge_unpacks_to_its_recorded_verdicts_and_a_damaged_file_is_refused(tmp_path, monkeypatch):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from simtrain.rewards import judge_weights
    from simtrain.rewards.judges import NLIJudge
    from simtrain.rewards.train_judge import MARKER

    out = judge_weights.unpack(tmp_path / "judge")
    record = json.loads((out / MARKER).read_text())
    assert record["version"] == judge_weights.shipped_version() and "unpacked_from" in record
    assert not list(tmp_path.glob("judge.*"))  # no staging folder left behind
    judge = NLIJudge(str(out))
    [p] = judge.p_problem([judge_query("Ana is married to Rui.", "I've never been married.")])
    assert p > 0.5
    with pytest.raises(ValueError, match="not a judge trained here"):
        judge_weights.ship(out)  # re-shipping rounded weights would lose the full-precision record

    weights = load_file(str(judge_weights.WEIGHTS))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    shutil.copy(judge_weights.RECORD, damaged / "minilm-contra.json")
    monkeypatch.setattr(judge_weights, "WEIGHTS", damaged / "minilm-contra.safetensors")
    monkeypatch.setattr(judge_weights, "RECORD", damaged / "minilm-contra.json")
    head = next(k for k in weights if k.startswith("classifier.") and k.endswith("weight"))
    save_file({k: v for k, v in weights.items() if k != head}, str(judge_weights.WEIGHTS))
    with pytest.raises(RuntimeError, match="does not fit"):
        judge_weights.unpack(tmp_path / "j2")
    save_file({**weights, head: weights[head][torch.tensor([1, 0, 2])]}, str(judge_weights.WEIGHTS))  # labels swapped
    with pytest.raises(RuntimeError, match="probe pairs"):
        judge_weights.unpack(tmp_path / "j3")
    assert not (tmp_path / "j3").exists()
