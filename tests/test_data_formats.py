import json

import pytest

from simtrain.envs.personas import PersonaFormatError, load_personas
from simtrain.envs.tasks import TASKS, get_task
from simtrain.config import ConfigError, load_config
from simtrain.dialogue import Dialogue, DialogueFormatError, Turn, read_dialogues, write_dialogues


@pytest.mark.parametrize("task", sorted(TASKS))
def test_builtin_persona_sets_are_complete(task):
    everyone = load_personas(task)
    assert len(everyone) >= 30
    train, ev = load_personas(task, "train"), load_personas(task, "eval")
    assert len(train) + len(ev) == len(everyone) and len(ev) >= 6
    assert not {p.id for p in train} & {p.id for p in ev}
    for p in everyone:
        assert p.description and p.facts and len(p.probes) >= 3
        assert all(pr.answer in pr.choices for pr in p.probes)
        # every template placeholder of the task is filled from the persona's facts
        assert "{" not in get_task(task).agent_system(p) + get_task(task).simulator_system(p)


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_persona_errors_name_file_record_and_field(tmp_path):
    good = {"id": "a", "description": "A person."}
    path = write(tmp_path, "p.jsonl", [json.dumps(good), json.dumps({"id": "b"})])
    with pytest.raises(PersonaFormatError, match=r"p\.jsonl:2: field 'description'"):
        load_personas(path)
    bad_probe = dict(good, probes=[{"question": "Q?", "answer": "x", "choices": ["y", "z"]}])
    with pytest.raises(PersonaFormatError, match=r"p2\.jsonl:1: field 'probes\[0\]\.answer'"):
        load_personas(write(tmp_path, "p2.jsonl", [json.dumps(bad_probe)]))
    with pytest.raises(PersonaFormatError, match=r"p3\.jsonl:2: invalid JSON"):
        load_personas(write(tmp_path, "p3.jsonl", [json.dumps(good), "{oops"]))
    with pytest.raises(PersonaFormatError, match="duplicate persona id"):
        load_personas(write(tmp_path, "p4.jsonl", [json.dumps(good), json.dumps(good)]))
    with pytest.raises(PersonaFormatError, match="field 'split'"):
        load_personas(write(tmp_path, "p5.jsonl", [json.dumps(dict(good, split="test"))]))


def test_personas_from_csv_and_datasets(tmp_path):
    import datasets

    path = write(tmp_path, "p.csv", [
        "id,description,facts,probes",
        'x1,"Ana, 40, a baker.","{""job"": ""baker""}","[{""question"": ""Job?"", ""answer"": ""baker""}]"',
        "x2,,{},[]",
    ])
    with pytest.raises(PersonaFormatError, match=r"p\.csv:3: field 'description'"):
        load_personas(path)
    path.write_text(path.read_text().splitlines()[0] + "\n" + path.read_text().splitlines()[1] + "\n")
    [p] = load_personas(path)
    assert p.facts == {"job": "baker"} and p.probes[0].answer == "baker"
    ds = datasets.Dataset.from_list([{"id": "d1", "description": "Someone.", "split": "eval"}])
    assert [p.id for p in load_personas(ds, split="eval")] == ["d1"]


def test_dialogue_round_trip_and_clear_errors(tmp_path):
    d = Dialogue("x", "therapy", {"id": "p", "description": "D", "probes": []},
                 [Turn("agent", "hi"), Turn("simulator", "hello", {"labels": {"prompt_to_line": 1}})], {"k": 1})
    path = write_dialogues([d], tmp_path / "d.jsonl")
    [back] = read_dialogues(path)
    assert back.to_dict() == d.to_dict()
    rec = d.to_dict()
    rec["turns"][1]["speaker"] = "user"
    path.write_text(json.dumps(d.to_dict()) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(DialogueFormatError, match=r"d\.jsonl:2: field 'turns\[1\]\.speaker'"):
        read_dialogues(path)
    path.write_text('{"id": "x"}\n')
    with pytest.raises(DialogueFormatError, match=r"d\.jsonl:1: field 'task': missing"):
        read_dialogues(path)


def test_dialogue_carries_a_typed_persona_and_keeps_unknown_keys(tmp_path):
    """The persona stays a Persona from loading to scoring (no dict round trip), and a key another
    tool wrote survives a read and a write."""
    from simtrain.dialogue import Persona, Probe

    rec = {"id": "x", "task": "therapy", "turns": [{"speaker": "simulator", "text": "hi"}],
           "persona": {"id": "p", "description": "D.", "facts": {"name": "Ann"}, "source": "other-tool",
                       "probes": [{"question": "Job?", "answer": "baker", "choices": ["baker", "nurse"]}]}}
    d = Dialogue.from_dict(rec)
    assert isinstance(d.persona, Persona) and d.persona.probes == [Probe("Job?", "baker", ["baker", "nurse"])]
    assert d.persona.display_name == "Ann" and d.persona.extra == {"source": "other-tool"}
    [back] = read_dialogues(write_dialogues([d], tmp_path / "d.jsonl"))
    assert back == d and back.to_dict()["persona"]["source"] == "other-tool"
    rec["persona"]["probes"][0]["answer"] = "pilot"
    with pytest.raises(DialogueFormatError, match=r"field 'persona\.probes\[0\]\.answer'"):
        Dialogue.from_dict(rec)
    with pytest.raises(DialogueFormatError, match=r"field 'persona\.description'"):
        Dialogue("y", "therapy", {"id": "p"})


def test_config_typos_are_caught_with_a_suggestion(tmp_path):
    path = write(tmp_path, "c.yaml", ["rollout:", "  num_utterance: 4"])
    with pytest.raises(ConfigError, match=r"rollout\.num_utterance: unknown key \(did you mean 'rollout\.num_utterances'\?\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    cfg = load_config(overrides={"rollout.num_utterances": 4, "data.tasks": ["education"]})
    assert cfg.rollout.num_utterances == 4 and cfg.data.tasks == ["education"]
    assert load_config(write(tmp_path, "rt.yaml", cfg.to_yaml().splitlines())) == cfg


def test_shipped_configs_are_valid():
    from pathlib import Path

    for path in sorted(Path(__file__).parent.parent.glob("configs/*.yaml")):
        load_config(path)


def test_readme_config_reference_matches_the_code():
    from pathlib import Path

    from simtrain.config import reference_markdown

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert reference_markdown() in readme, "README's config reference is stale: paste `simtrain config reference`"


def test_one_config_object_per_concern_used_as_it_is(tiny, tmp_path):
    """The judge, sampling and reward sections are the very objects the judge and engine take: no
    second spec type with its own defaults to drift (they once disagreed: hf vs nli)."""
    from simtrain.generation import SamplingConfig
    from simtrain.rewards.judges import JudgeConfig, NLIJudge, make_judge
    from simtrain.rollout import build_engine

    cfg = load_config(overrides={"simulator.name": "tiny-random", "rollout.seed": 5,
                                 "rollout.sampling.temperature": 0.3})
    assert type(cfg.judge) is JudgeConfig and type(cfg.check.judge) is JudgeConfig
    assert type(cfg.rollout.sampling) is SamplingConfig and type(cfg.agent.sampling) is SamplingConfig
    eng = build_engine(cfg, simulator=tiny)
    assert eng.sampling is cfg.rollout.sampling and eng.agent.sampling is cfg.agent.sampling and eng.seed == 5
    # the judge section's defaults are the ones make_judge applies
    judge = make_judge(JudgeConfig(), default_cache=str(tmp_path / "c.jsonl"))  # nli, minilm-contra
    assert isinstance(judge, NLIJudge)
    with pytest.raises(ValueError, match="judge.endpoint.model is not set"):
        make_judge(JudgeConfig(backend="openai", endpoint={"base_url": "http://127.0.0.1:1/v1"}))
    with pytest.raises(ValueError, match="agent.endpoint.base_url is not set"):
        build_engine(load_config(overrides={"simulator.name": "tiny-random", "agent.kind": "openai"}), simulator=tiny)
    # the endpoint sections are the client's own EndpointConfig, with one set of defaults
    from simtrain.openai_client import EndpointConfig

    assert type(cfg.agent.endpoint) is EndpointConfig and type(cfg.judge.endpoint) is EndpointConfig
    assert cfg.agent.endpoint == cfg.judge.endpoint == EndpointConfig()
    # the rewards list holds the registry's own RewardSpec, with the registry's defaults
    from simtrain.rewards.registry import DEFAULT_REWARDS, RewardSpec

    assert all(type(r) is RewardSpec for r in cfg.rewards) and cfg.rewards == DEFAULT_REWARDS
    assert cfg.rewards[0] is not DEFAULT_REWARDS[0]  # a copy: editing a run's list leaves the defaults alone
    with pytest.raises(ValueError, match="exactly one of 'name' or 'path'"):
        load_config(overrides={"rewards": [{"name": "qa", "path": "m:f"}]})
