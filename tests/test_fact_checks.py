"""The rule-read fact checks the default judge adds to its model: what they read, when they fire,
when they stay quiet, and how often they are right on the project's hand-written pairs."""

from pathlib import Path

import pytest

from simtrain.rewards import judge_data
from simtrain.rewards.fact_checks import conflict, number, read


def test_numbers_in_digits_and_words():
    assert [number(w) for w in ("42", "thirty-two", "eight", "nineteen", "5th", "sixth", "twenty")] == \
        [42, 32, 8, 19, 5, 6, 20]
    assert number("several") is None


def test_reads_description_sentences_and_lines_in_their_own_person():
    d = read("Tomás is a 14-year-old ninth grader in Valparaíso who plays chess.", said=False)
    assert (d.ages, d.grades, d.places) == ({14}, {9}, {"Valparaíso"})
    line = read("I’m fourteen and I'm in ninth grade, here in Valparaíso.", said=True)  # a curly apostrophe
    assert (line.ages, line.grades, line.here) == ({14}, {9}, {"Valparaíso"})
    assert read("Élodie is twenty-one.", said=False).ages == {21}
    # whose fact: a relative's age is not the persona's; an earlier line is read as the speaker's words
    assert read("Her son is a 12-year-old.", said=False).ages == frozenset()
    assert read("Mum is 45, she works nights.", said=True).ages == frozenset()
    fam = read("My big sister Noor and my husband both work at the port.", said=True)
    assert {"sister", "sibling", "spouse", "married"} <= fam.kin and not fam.no_kin


@pytest.mark.parametrize("premise, line, why", [
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "I'm only thirty-one, I've got my whole life ahead.", "age"),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "Cold again here in Lisbon, the tram was late.", "here in Lisbon"),
    ("Bea is a 9-year-old fourth grader who loves frogs.", "I'm a seventh grader, so this is easy.", "school year"),
    ("Kofi is a 12-year-old Year 7 pupil in Leeds.", "We learned that in Year 9 with Mr Hale.", "already in school year"),
    ("Sana is the oldest of four children.", "I'm the youngest, everyone babies me.", "birth order"),
    ("He is married to Lena and has a daughter.", "I've never been married, it just never happened.", "family"),
    ("She has no children.", "My son starts at the secondary school next week.", "family"),
    ("Dev has been vegetarian since he was fifteen.", "I had a huge bacon sandwich for breakfast.", "diet"),
    ("Dev has been vegetarian since he was fifteen.", "Honestly, nothing beats a lamb kebab at midnight.", "diet"),
])
def test_fires_on_a_stated_fact_the_line_denies(premise, line, why):
    assert (conflict(premise, line) or "").startswith(why)


@pytest.mark.parametrize("earlier, line, why", [
    ("My brother Tariq fixes bikes for a living.", "I'm an only child, so it was always just me.", "family"),
    ("My wife Ines runs the bakery with me.", "I'm single, I live alone above the shop.", "family"),
    ("I'm fifteen, so no, I can't drive yet.", "I'm twenty-two and I drive to work.", "age"),
])
def test_fires_on_what_the_speaker_said_earlier(earlier, line, why):
    assert (conflict(earlier, line, premise_is_said=True) or "").startswith(why)


@pytest.mark.parametrize("premise, line", [
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "I'm sixty-seven, and my knees know it."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "I drove the number 44 for thirty years."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "It's been raining here in Glasgow all week."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "We spent a week in Lisbon last spring."),  # a trip
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "I'm here in Rome on holiday with my wife."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "Quiet day here in the ward, the nurses are kind."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "It's cosy here in Dr. Mills' office."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "My granddaughter is 12 and cleverer than me."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "I got my licence the summer I turned nineteen."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", "When I'm seventy, I'm buying a boat."),
    ("Omar is a 67-year-old retired bus driver in Glasgow.", 'My grandson yells "I\'m 16, leave me alone!" all day.'),
    ("Zainab is a nurse who grew up in Lagos.", "It's grey here in Manchester today."),  # where she grew up
    ("Ruth lives in a small Maine fishing town.", "Foggy again here in Stonington this morning."),  # a region
    ("Ruth is a 50-year-old nurse in Dallas.", "It's hot here in Texas, always is."),  # the city's state
    ("She is divorced and raising two sons.", "I'm single these days, and honestly it suits me."),
    ("She is divorced and raising two sons.", "I don't have any brothers or sisters."),  # not in the premise
    ("She is divorced and raising two sons.", "I have no kids at home anymore, they both left."),
    ("She is divorced and raising two sons.", "I'm single-handedly running the house."),
    ("Her sister-in-law helps with the shop.", "I'm an only child."),
    ("He is a widower.", "I'm not married any more, not since Ada died."),
    ("He lost his wife June to cancer two years ago.", "I'm not married any more."),
    ("Her parents divorced when she was 12.", "I've never been married."),  # someone else's marriage
    ("Amy's mother has three sisters.", "I don't have any sisters."),
    ("He has run the pub for years, and Maureen moved in with her sister.", "I'm an only child."),
    ("She separated from her husband Jonas in spring.", "I'm single now, and it's strange."),
    ("She hopes to have children one day.", "I don't have kids yet."),
    ("He has twin sons.", "I'm an only child, so it's new to me."),
    ("She has four children, the eldest of whom is at university.", "I'm the youngest of six."),
    ("Bea is a 9-year-old fourth grader who loves frogs.", "Next year in fifth grade we get lockers."),
    ("Bea is a 9-year-old fourth grader who loves frogs.", "When I'm in seventh grade I'll do science club."),
    ("Bea is a 9-year-old fourth grader who loves frogs.", "I was the youngest in my class last year."),
    ("Dev has been vegetarian since he was fifteen.", "My brother eats steak every night, I stick to lentils."),
    ("Dev has been vegetarian since he was fifteen.", "I had the veggie burger, it was fine."),
    ("Dev has been vegetarian since he was fifteen.", "I had a halloumi burger at the fair."),
    ("Dev has been vegetarian since he was fifteen.", "I had chicken pox twice as a kid."),
    ("Dev has been vegetarian since he was fifteen.", "I love Chicken Run, it's a classic."),
    ("Her daughter is vegetarian.", "I had a bacon sandwich at work."),  # the daughter's diet
    ("Mia is vegan.", "I love oat milk in my tea."),
    ("Mia is vegan.", "The fish market smells awful in summer."),
])
def test_stays_quiet_on_consistent_or_unreadable_lines(premise, line):
    assert conflict(premise, line) is None


@pytest.mark.parametrize("earlier, line", [
    ("Mum is 45, she works nights.", "I'm sixteen, so I'm home alone a lot."),  # Mum's age, not mine
    ("Grandma lives in Leeds.", "Cold again here in Bristol."),
    ("My daughter is vegetarian, so we eat a lot of pasta.", "I had a bacon sandwich at work."),
    ("My kids in 5B are a handful.", "I don't have kids of my own."),
])
def test_stays_quiet_on_other_peoples_facts_said_earlier(earlier, line):
    assert conflict(earlier, line, premise_is_said=True) is None


def test_on_the_hand_written_pairs_the_rules_fire_rarely_and_are_almost_always_right():
    """Every hand-written pair (22,465 + 6,873, labelled by their writers): the rules must fire
    on some of the contradictions and nearly never on the others. README gives the counts."""
    data = Path(judge_data.__file__).resolve().parent / "data"
    fired = []
    for path in (data / "judge_train.jsonl", data / "judge_train_more.jsonl"):
        for rec in judge_data._jsonl(path):
            said = "said" in rec  # earlier lines of the speaker, not a persona description
            premises = rec["said"] if said else judge_data.sentences(rec["persona"])
            for line, k, *about in rec["lines"]:
                bad = judge_data._indices(k)
                fired += [i in bad for i, s in enumerate(premises) if conflict(s, line, premise_is_said=said)]
    assert len(fired) >= 80, len(fired)
    assert sum(fired) / len(fired) >= 0.95, (sum(fired), len(fired))
