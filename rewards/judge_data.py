"""Training pairs for the trained consistency judge, generated from templates, with no download.

Every example is (premise, hypothesis, label) with NLI labels: ``contradiction``, ``entailment``,
``neutral``. Premises are what the judge compares a line against: a sentence of a persona
description (third person) for prompt-to-line, or an earlier simulator line (first person) for
line-to-line. Hypotheses are first-person simulator lines.

Two sources:

* **Facets** below: a persona attribute with opposite poles (shy vs. outgoing, married vs.
  single, a named job vs. another job...). A line from the other pole contradicts, a line from
  the same pole is entailed, a line about another facet is neutral.
* **The built-in personas** (``envs/data``): their description sentences as premises, and lines
  built from their structured facts (age, job, place) or from another persona's facts (a
  contradiction when the sentence states that fact).

* **The tuning part of the check set** (``rewards/data/checkset.jsonl``, ``meta.split == "tune"``):
  hand-labelled simulator lines, each inconsistent one annotated with the description sentences
  it contradicts (``contradicts_sentences``) or the earlier lines (``conflicts_with``).

Nothing here reads the check set's held-out part: that is what the judge is measured on (a test
checks that no training text copies or closely paraphrases it). The generator is seeded, so the
same command always yields the same data.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from simtrain.rewards.sentences import sentences  # noqa: F401  (judge_data.sentences is the name tests and plug-ins used)

CONTRADICTION, ENTAILMENT, NEUTRAL = "contradiction", "entailment", "neutral"
LABELS = (CONTRADICTION, ENTAILMENT, NEUTRAL)


@dataclass(frozen=True)
class Pair:
    premise: str
    hypothesis: str
    label: str


# --- facets: two poles, each with third-person descriptions and first-person lines -------------
# "{n}" is the persona's first name. Lines are written the way simulators talk.
POLES: list[tuple[dict, dict]] = [
    ({"third": ["{n} is shy and quiet in groups.", "{n} is introverted and avoids crowds.",
                "{n} is timid and hates being the centre of attention."],
      "first": ["I'm not great with crowds, I'd rather stay home.", "Big groups make me nervous, honestly.",
                "I usually keep quiet when there are lots of people around.", "Parties? I avoid them if I can."]},
     {"third": ["{n} is outgoing and loves big parties.", "{n} is the life of every party.",
                "{n} is extroverted and loves meeting strangers."],
      "first": ["Nightclubs, festivals, the louder the better!", "I go dancing with people I've just met most weekends.",
                "I love being the centre of attention.", "Give me a microphone and a full room any day."]}),
    ({"third": ["{n} is anxious and worries constantly.", "{n} is stressed and on edge.",
                "{n} is a chronic worrier who can't relax."],
      "first": ["I can't stop worrying about everything.", "My mind races at night, I'm always on edge.",
                "Honestly I'm stressed all the time.", "I get knots in my stomach over the smallest things."]},
     {"third": ["{n} is laid-back and never worries.", "{n} is calm and carefree.",
                "{n} is relaxed about everything."],
      "first": ["I never stress about anything, honestly.", "Worry? Not me, I'm totally relaxed.",
                "I sleep like a baby, nothing bothers me.", "I just go with the flow, life's easy."]}),
    ({"third": ["{n} is grieving and sad since the loss.", "{n} is heartbroken and tearful.",
                "{n} is depressed and struggling to get out of bed."],
      "first": ["Most days I can barely get out of bed.", "I still cry every night, it hasn't got easier.",
                "Everything feels heavy and grey lately.", "I miss them so much it hurts."]},
     {"third": ["{n} is cheerful and upbeat.", "{n} is happy and full of energy.",
                "{n} is bubbly and optimistic."],
      "first": ["I'm on top of the world these days!", "Life's great, I'm happier than I've ever been.",
                "It's all behind me now, I'm having a blast.", "I wake up every day buzzing with energy!"]}),
    ({"third": ["{n} keeps people at arm's length.", "{n} is private and gives short answers.",
                "{n} avoids talking about feelings."],
      "first": ["I'd rather not get into that.", "I don't really talk about personal stuff.",
                "Can we skip that? It's private.", "I keep things to myself, always have."]},
     {"third": ["{n} is open and loves to share personal stories.", "{n} overshares with everyone.",
                "{n} talks freely about feelings."],
      "first": ["Ask me about it, I'll happily go through every detail with anyone.", "I'll tell anyone who asks, I'm an open book.",
                "I share everything, I've got no secrets.", "Ask me anything, I love talking about my feelings."]}),
    ({"third": ["{n} is an early riser, up at dawn every day.", "{n} wakes at five every morning.",
                "{n} is a morning person."],
      "first": ["My alarm goes off at half five and I love it.", "I'm always in bed by nine and up at dawn.",
                "By ten I'm asleep on the sofa.", "Early mornings are when I get everything done."]},
     {"third": ["{n} is a night owl who sleeps late.", "{n} stays up gaming until three.",
                "{n} hates mornings."],
      "first": ["Mornings are torture, I'm never up before eleven.", "I'm up until three most nights.",
                "Don't talk to me before noon.", "I do my best thinking after midnight."]}),
    ({"third": ["{n} is a keen reader who always has a book on the go.", "{n} loves novels.",
                "{n} runs a book club."],
      "first": ["I've always got a novel on the go.", "I read every night before bed.",
                "Books are my favourite thing in the world.", "I finished three novels this month."]},
     {"third": ["{n} hates reading.", "{n} has never finished a book.", "{n} finds books boring."],
      "first": ["Novels send me straight to sleep, I never finish one.", "I skip the reading and look at the pictures.",
                "I haven't opened a book since school.", "Reading puts me to sleep."]}),
    ({"third": ["{n} is a hard-working student who cares about grades.", "{n} is a perfectionist about marks.",
                "{n} studies for hours every day."],
      "first": ["I study every night, my grades matter a lot to me.", "I panic if I get anything below an A.",
                "I always do my homework the day it's set.", "I've never missed a deadline."]},
     {"third": ["{n} doesn't care about school.", "{n} does the bare minimum in class.",
                "{n} skips homework."],
      "first": ["Marks don't matter to me, I scrape by.", "Homework? I just copy it on the bus.",
                "School's pointless, I only go because I have to.", "I never study, it's not my thing."]}),
    ({"third": ["{n} learns hands-on and likes experiments.", "{n} learns by doing and building things.",
                "{n} needs to touch and try things to learn."],
      "first": ["I have to try it myself before it clicks.", "Let me build it, that's how I learn.",
                "Experiments are the only part of science I like.", "Give me something to take apart and I'll get it."]},
     {"third": ["{n} prefers reading the textbook to doing experiments.", "{n} learns from written notes.",
                "{n} dislikes practical work."],
      "first": ["Lab work is messy, let me read the chapter instead.", "I'd rather use the textbook than try it.",
                "I copy everything into my notebook or it's gone.", "Practical work is a waste of time for me."]}),
    ({"third": ["{n} is a visual learner who needs diagrams.", "{n} remembers things as pictures.",
                "{n} needs to see a drawing to understand."],
      "first": ["Can you draw it? I need to see it.", "Diagrams help me loads.",
                "If I can see a picture I get it straight away.", "I remember things as pictures."]},
     {"third": ["{n} learns by listening.", "{n} understands things best when they are explained aloud.",
                "{n} finds diagrams confusing."],
      "first": ["Just explain it out loud, pictures confuse me.", "Pictures just muddle me, say it out loud.",
                "I learn by listening, not looking.", "Talk me through it, don't draw it."]}),
    ({"third": ["{n} is confident in maths.", "{n} finds maths easy.", "{n} is top of the class in maths."],
      "first": ["Maths has always been easy for me.", "Numbers have always come easily to me.",
                "I'm the best in my class at maths.", "Equations are fun, I get them straight away."]},
     {"third": ["{n} struggles with maths.", "{n} has low confidence in maths.", "{n} is behind in maths."],
      "first": ["I'm rubbish at maths, always have been.", "Numbers just don't make sense to me.",
                "I'm in the maths support group.", "Maths makes me panic."]}),
    ({"third": ["{n} is sober and has not had a drink in years.", "{n} is in recovery from alcohol.",
                "{n} doesn't drink alcohol."],
      "first": ["I haven't touched a drink in years.", "I stay away from pubs now, I'm sober.",
                "I only drink tea these days.", "Alcohol's not part of my life any more."]},
     {"third": ["{n} drinks most nights.", "{n} loves a pint at the pub.", "{n} relaxes with beer every evening."],
      "first": ["Couple of cans in front of the telly every night, that's my routine.", "Friday nights are for the pub.",
                "A few beers every evening helps me unwind.", "I'm at the pub most nights."]}),
    ({"third": ["{n} loves travelling and has visited thirty countries.", "{n} travels abroad every year.",
                "{n} is always planning the next trip."],
      "first": ["I'm off to Peru next month, I travel every chance I get.", "I've been to over thirty countries.",
                "I get restless if I stay in one place too long.", "Travelling is my whole life."]},
     {"third": ["{n} has never left home town.", "{n} hates travelling.", "{n} is a homebody."],
      "first": ["Same street since birth, holidays abroad aren't for me.", "Planes terrify me, I stay put.",
                "I've never been abroad.", "I like being at home, I never go anywhere."]}),
    ({"third": ["{n} loves cooking.", "{n} is a keen home cook.", "{n} bakes every weekend."],
      "first": ["I cook dinner from scratch every night.", "Baking is my happy place.",
                "I love trying new recipes.", "The kitchen is my favourite room."]},
     {"third": ["{n} can't cook.", "{n} lives on takeaways.", "{n} never cooks."],
      "first": ["I can't even boil an egg.", "I live on takeaways, I never cook.",
                "Cooking? I burn everything.", "I've never made a meal in my life."]}),
    ({"third": ["{n} plays the guitar.", "{n} is a musician who plays piano.", "{n} sings in a band."],
      "first": ["I practise guitar every evening.", "I've played piano since I was six.",
                "Music is my life, I gig most weekends.", "I sing with my band on Fridays."]},
     {"third": ["{n} has no musical ability.", "{n} has never played an instrument.", "{n} is tone-deaf."],
      "first": ["I couldn't play a tune on anything to save my life.", "I can't sing a note.",
                "Music's not my thing, I don't play anything.", "I'm completely tone-deaf."]}),
    ({"third": ["{n} is a keen gardener.", "{n} spends hours in the garden.", "{n} grows vegetables."],
      "first": ["I'm out in the vegetable patch every morning.", "I've gardened for thirty years.",
                "My tomatoes are the best on the street.", "The garden keeps me sane."]},
     {"third": ["{n} has no interest in gardening.", "{n} kills every plant.", "{n} has no garden."],
      "first": ["I've never grown anything, plants die on me.", "I bought my first plant pot in spring, I'm a total beginner.",
                "I don't have a garden, just a balcony.", "Gardening bores me."]}),
    ({"third": ["{n} is vegetarian.", "{n} has not eaten meat for years.", "{n} is vegan."],
      "first": ["I haven't eaten meat in ten years.", "I'm vegetarian, so no burgers for me.",
                "Veggie food all the way.", "I don't touch meat."]},
     {"third": ["{n} loves steak.", "{n} is a big meat eater.", "{n} runs barbecues every weekend."],
      "first": ["Nothing beats a rare steak.", "I'm a proper carnivore.",
                "I barbecue ribs every Sunday.", "A burger a day keeps me happy."]}),
    ({"third": ["{n} is a horror film fanatic.", "{n} watches scary films every weekend.", "{n} is a horror fan."],
      "first": ["The scarier the film, the better.", "I watch a horror film every Friday.",
                "Slasher films are my favourite.", "I love a good fright."]},
     {"third": ["{n} hates horror films.", "{n} is scared of scary films.", "{n} avoids horror."],
      "first": ["One scary trailer and I'm sleeping with the light on.", "Scary films? No thanks.",
                "I can't handle anything frightening.", "I hide behind a cushion at the first jump scare."]}),
    ({"third": ["{n} is a football fan.", "{n} never misses a match.", "{n} loves sport."],
      "first": ["I never miss a match on a Saturday.", "Football is my religion.",
                "I've had a season ticket for twenty years.", "Sport is all I watch."]},
     {"third": ["{n} hates sport.", "{n} has no interest in football.", "{n} finds sport boring."],
      "first": ["I can't stand football.", "Sport bores me to tears.",
                "I've never watched a match in my life.", "I don't care who wins, it's just a game."]}),
    ({"third": ["{n} is patient and calm with others.", "{n} is gentle and soft-spoken.", "{n} rarely gets angry."],
      "first": ["I never raise my voice.", "I'm patient, I can wait.",
                "It takes a lot to make me angry.", "I stay calm whatever happens."]},
     {"third": ["{n} is short-tempered.", "{n} loses temper easily.", "{n} is irritable and snappy."],
      "first": ["I lose my temper over nothing.", "I snap at people all the time.",
                "I've got a short fuse.", "Everything winds me up."]}),
    ({"third": ["{n} feels lonely and has few friends.", "{n} is isolated.", "{n} has nobody to talk to."],
      "first": ["I don't really have anyone to talk to.", "Friends? Not really, nobody calls.",
                "Most weekends I don't see a soul.", "I'm new in town and haven't met a soul."]},
     {"third": ["{n} has a big circle of friends.", "{n} is popular with lots of friends.",
                "{n} sees friends every day."],
      "first": ["My mates and I meet up every weekend.", "I've got loads of friends, my phone never stops.",
                "I'm out with friends most nights.", "My study group meets every day."]}),
]

# --- named facts: a value, lines that state it, and lines that deny it -------------------------
JOBS = ["nurse", "accountant", "bus driver", "software developer", "primary school teacher", "plumber",
        "electrician", "pharmacist", "chef", "taxi driver", "police officer", "postman", "lawyer",
        "hairdresser", "farmer", "librarian", "mechanic", "dentist", "architect", "journalist",
        "warehouse worker", "shop owner", "social worker", "graphic designer", "firefighter", "baker",
        "tailor", "ferry engineer", "IT technician", "vet", "cleaner", "bartender", "photographer", "pilot"]
CITIES = ["Phoenix", "Leeds", "Toronto", "Lagos", "Berlin", "Krakow", "Lisbon", "Manchester", "Dublin",
          "Seoul", "Madrid", "Glasgow", "Chicago", "Melbourne", "Nairobi", "Mumbai", "Montreal", "Lyon",
          "Hackney", "Bristol", "Porto", "Ankara", "Denver", "Boston", "Oslo", "Cardiff", "Accra"]
NAMES = ["Ana", "Jack", "Grace", "Ron", "Chloe", "Ada", "Diego", "Kelly", "Derek", "Awa", "Carmen",
         "Youssef", "Lina", "Kuba", "Pablo", "Abena", "Ivan", "Mei", "Tom", "Sara", "Omar", "Rosa"]
PETS = ["dog", "cat", "rabbit", "parrot"]
FILLERS = ["", "", "", "Honestly, ", "Well, ", "Eh, ", "Oh, ", "Yeah. ", "Not really. ", "Hmm. ", "To be honest, "]
TAILS = ["", "", "", " Anyway.", " It's fine.", " Why do you ask?", " That's just how it is.", " You know?"]

AGE_WORDS = {7: "seven", 8: "eight", 10: "ten", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen",
             16: "sixteen", 17: "seventeen", 19: "nineteen", 20: "twenty", 25: "twenty-five", 30: "thirty",
             40: "forty", 45: "forty-five", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty"}


def _stage_lines(age: int) -> list[str]:
    """First-person lines that only a person of this age group would say."""
    if age < 12:
        return ["I'm in fourth grade.", "My mum walks me to primary school.", "I'm not allowed to stay up past eight."]
    if age < 18:
        return ["I'm in tenth grade.", "I'm in year ten.", "I'm only a teenager.", "My parents set my curfew."]
    if age < 25:
        return ["I'm in my second year at uni.", "I just started college.", "I'm a student, so money's tight."]
    if age < 65:
        return ["I've been working full time for years.", "My mortgage takes half my pay.", "I've got a career now."]
    return ["I'm retired now.", "My grandchildren visit on Sundays.", "I've been retired for years."]


@dataclass
class Fact:
    """A third-person statement and first-person lines it entails, contradicts, or leaves open."""

    third: str
    entailed: list[str]
    contradicting: list[str]
    neutral: list[str] = field(default_factory=list)


RELATIVES = ["brother", "sister", "son", "daughter", "mum", "dad", "best friend", "neighbour", "cousin", "boss"]


def _facts(rng: random.Random) -> list[Fact]:
    """Named facts about one invented person (job, age, home, origin, partner, child, sibling, pet, household)."""
    n = rng.choice(NAMES)
    out = []
    job, other = rng.sample(JOBS, 2)
    out.append((f"{n} works as a {job}.",
                [f"I've been a {job} for {rng.randint(2, 30)} years.", f"I work as a {job}.", f"Being a {job} is exhausting."],
                [f"I work as a {other}.", f"I've been a {other} for {rng.randint(2, 30)} years.",
                 f"I've never worked as a {job}.", "I'm out of work at the moment.",
                 "I've been unemployed for years."]))
    age = rng.randint(8, 85)
    far = rng.choice([a for a in range(7, 90) if abs(a - age) >= 10])
    age_lines = [f"I'm {age}.", f"I just turned {age}.", f"At {age}, I should know better."]
    if age in AGE_WORDS:
        age_lines.append(f"I'm {AGE_WORDS[age]}, you know.")
    bad = [f"I'm {far}.", f"I just turned {far}.", f"At {far}, I should know better."]
    if far in AGE_WORDS:
        bad.append(f"Being {AGE_WORDS[far]}, I've seen it all before.")
    if (far < 18) != (age < 18) or (far >= 65) != (age >= 65):
        bad += _stage_lines(far)
    out.append((rng.choice([f"{n} is {age} years old.", f"{n} is a {age}-year-old."]), age_lines + _stage_lines(age), bad))
    city, other_city = rng.sample(CITIES, 2)
    origin = rng.choice([c for c in CITIES if c not in (city, other_city)])
    out.append((f"{n} lives in {city}.",
                [f"I live in {city}.", f"Here in {city} it rains a lot.", f"{city} is home."],
                [f"I live in {other_city}.", f"I've never been to {city}.", f"I've lived in {other_city} all my life."]))
    out.append((f"{n} moved to {city} from {origin}.",
                [f"I grew up in {origin}.", f"I moved to {city} a few years ago.", f"I still miss {origin}."],
                [f"{city} born and bred, I've stayed put my whole life.", f"I've never been to {origin}.",
                 f"I've never left {city}."]))
    partner, other_p = rng.sample(NAMES, 2)
    out.append((f"{n} is married to {partner}.",
                [f"My spouse {partner} says I work too much.", f"{partner} and I have been married for years.",
                 f"I'm married, {partner} keeps me sane."],
                ["No partner, never had one.", "I've never been married.", "I'm single, no partner.",
                 "I'm not married, I live on my own."]))
    kid = rng.choice(NAMES)
    out.append((f"{n} has a {rng.choice(['daughter', 'son'])} called {kid}.",
                [f"{kid} is my youngest.", f"My kid {kid} keeps me busy.", "Being a parent is hard work."],
                ["I don't have any kids.", "I have no children.", "It's just me, no children."]))
    sib = rng.choice(NAMES)
    out.append((f"{n} is close to a sibling, {sib}.",
                [f"My sibling {sib} comes by on Sundays.", f"{sib} is the only one in my family I talk to."],
                ["I don't have any siblings.", "I'm an only child.", f"{sib}? There's no {sib} in my family."]))
    pet = rng.choice(PETS)
    pname = rng.choice(NAMES)
    out.append((f"{n} has a {pet} called {pname}.",
                [f"I walk {pname} every day.", f"My {pet} {pname} keeps me company.", f"{pname} is my {pet}."],
                ["Our flat has never had so much as a goldfish.", "I don't have a pet.", "We're not allowed pets."]))
    out.append((f"{n} lives with {rng.choice(['a partner', 'family', 'two flatmates', 'parents'])}.",
                ["I'm never alone at home.", "Our house is always busy."],
                ["Nobody else lives at my place, it's just me.", "It's only me at home, so I come and go as I like."]))
    facts = [Fact(*f) for f in out]
    # Hard neutrals: a line about *someone else's* age, job or home says nothing about the speaker's.
    rel = rng.choice(RELATIVES)
    other_age = rng.choice([a for a in range(3, 90) if abs(a - age) >= 5])
    other_job = rng.choice([j for j in JOBS if j != job])
    other_city = rng.choice([c for c in CITIES if c not in (city, origin)])
    facts[0].neutral.extend([f"My {rel} works as a {other_job}.", f"My {rel} wants me to become a {other_job}.",
                             f"A {other_job} came round yesterday to fix things."])
    facts[1].neutral.extend([f"My {rel} is {other_age}.", f"My {rel}'s {other_age} now and far too cool for me.",
                             f"He's {other_age}, so he thinks it's all a game."])
    facts[2].neutral.extend([f"My {rel} lives in {other_city}.", f"We went to {other_city} on holiday.",
                             f"My {rel} just moved to {other_city}."])
    return facts



def _dress(line: str, rng: random.Random) -> str:
    """Add the filler words simulators use, so the judge does not key on clean sentence starts."""
    filler = rng.choice(FILLERS)
    first = re.split(r"[\s,.'?]", line, maxsplit=1)[0]
    if filler.endswith(", ") and first != "I" and first not in NAMES + CITIES:
        line = line[0].lower() + line[1:]
    return (filler + line + rng.choice(TAILS)).strip()


def _first_person(third: str) -> str:
    """A crude third->first person rewrite, used to build line-to-line premises from facts."""
    s = re.sub(r"^\w+ is ", "I'm ", third)
    s = re.sub(r"^\w+ (\w+)s ", r"I \1 ", s)
    return s


def facet_pairs(rng: random.Random, n: int) -> list[Pair]:
    """n pairs from the facets and named facts, about a third each label."""
    out: list[Pair] = []
    while len(out) < n:
        name = rng.choice(NAMES)
        kind = rng.random()
        if kind < 0.5:  # a trait with poles
            a, b = rng.sample([0, 1], 2)
            pair = rng.choice(POLES)
            pa, pb = pair[a], pair[b]
            # premise: third person (prompt-to-line) or first person (line-to-line)
            premise = rng.choice(pa["third"]).format(n=name) if rng.random() < 0.6 else rng.choice(pa["first"])
            label = rng.choice(LABELS)
            if label == CONTRADICTION:
                hyp = rng.choice(pb["first"])
            elif label == ENTAILMENT:
                hyp = rng.choice([s for s in pa["first"] if s != premise])
            else:
                other = rng.choice([p for p in POLES if p is not pair])
                hyp = rng.choice(rng.choice(other)["first"])
        else:  # a named fact
            facts = _facts(rng)
            k = rng.randrange(len(facts))
            f = facts[k]
            premise = f.third if rng.random() < 0.6 else _first_person(f.third)
            label = rng.choice(LABELS)
            if label == CONTRADICTION:
                hyp = rng.choice(f.contradicting)
            elif label == ENTAILMENT:
                hyp = rng.choice(f.entailed)
            elif f.neutral and rng.random() < 0.5:
                hyp = rng.choice(f.neutral)
            else:
                j = rng.choice([i for i in range(len(facts)) if i != k])
                hyp = rng.choice(facts[j].entailed + [rng.choice(rng.choice(rng.choice(POLES))["first"])])
        out.append(Pair(premise, _dress(hyp, rng), label))
    return out


OTHERS = {"age": "is {v}", "job": "works as a {v}", "location": "lives in {v}"}


def _head(fact: str) -> str:
    """A fact's first part: "Leeds, England" -> "Leeds"."""
    return fact.split(",")[0].strip()


def persona_pairs(rng: random.Random, personas: list[dict], n: int) -> list[Pair]:
    """Pairs whose premise is a real description sentence and whose line states a fact of this
    persona (entailment if the sentence states it, else neutral) or a swapped fact of another
    persona (contradiction if the sentence states the original)."""
    out: list[Pair] = []
    templates = {"age": ["I'm {v}.", "I'm {v} years old.", "At {v}, I thought I'd have it figured out.",
                         "Since I was a kid, but I'm {v} now.", "Not bad for {v}, right?"],
                 "job": ["I work as a {v}.", "My job? I'm a {v}.", "Twenty years as a {v} and I'm still tired.",
                         "Early shift tomorrow, that's life as a {v}.", "I've been a {v} since I left school.",
                         "Being a {v} pays the bills."],
                 "location": ["I live in {v}.", "Home is {v}.", "Here in {v} the weather is awful.",
                              "I can see half of {v} from my window.", "{v} wears me out some days.",
                              "I've lived in {v} for years."]}
    while len(out) < n:
        p = rng.choice(personas)
        key = rng.choice([k for k in templates if k in p["facts"]])
        value = _head(p["facts"][key])
        sents = [s for s in sentences(p["description"]) if value.lower() in s.lower()]
        if not sents:
            continue
        others = [_head(q["facts"][key]) for q in personas if key in q["facts"]]
        others = [o for o in others if o.lower() != value.lower()]
        if key == "age":
            others = [o for o in others if o.isdigit() and value.isdigit() and abs(int(o) - int(value)) >= 8]
        if not others:
            continue
        stating = rng.choice(sents)
        tmpl = rng.choice(templates[key])
        if rng.random() < 0.5:
            out.append(Pair(stating, _dress(tmpl.format(v=rng.choice(others)), rng), CONTRADICTION))
        else:
            out.append(Pair(stating, _dress(tmpl.format(v=value), rng), ENTAILMENT))
        rest = [s for s in sentences(p["description"]) if value.lower() not in s.lower()]
        if rest and len(out) < n:
            out.append(Pair(rng.choice(rest), _dress(tmpl.format(v=rng.choice(others + [value])), rng), NEUTRAL))
        if len(out) < n:  # a fact-dense sentence vs. a line about something else, or someone else
            other_person = f"My {rng.choice(RELATIVES)} {OTHERS[key].format(v=rng.choice(others))}."
            hyp = other_person if rng.random() < 0.5 else rng.choice(rng.choice(rng.choice(POLES))["first"])
            out.append(Pair(stating, _dress(hyp, rng), NEUTRAL))
    return out


_SWAPS = {"he": "I", "she": "I", "his": "my", "her": "my", "him": "me", "himself": "myself",
          "herself": "myself", "is": "am", "has": "have", "was": "was", "does": "do"}


def first_person(sentence: str, name: str) -> str | None:
    """A rough first-person restatement of a description sentence ("She loves X" -> "I love X"),
    or None when the sentence is not about the persona. Rough is enough: the pair teaches that
    saying what the description says, in other words, is not a contradiction."""
    first = name.split()[0]
    text = re.sub(rf"^{re.escape(name)}\b|^{re.escape(first)}\b", "She", sentence)
    words = text.split()
    if not words or words[0].lower() not in ("he", "she", "his", "her", "in", "at", "this", "as"):
        return None
    out, subject_next = [], False
    for i, w in enumerate(words):
        core = w.strip(",.;:!?")
        low = core.lower()
        verb = low in ("is", "has", "was", "does")
        if low == "her":  # possessive ("her parents" -> "my parents") unless it ends a clause ("with her.")
            nxt = words[i + 1].lower() if i + 1 < len(words) else ""
            low = "him" if core != w or nxt in ("", "and", "or", "to", "with", "for", "about") else "his"
        if low in _SWAPS and (subject_next or not verb):
            rep = _SWAPS[low]
            rep = rep if rep == "I" or not core[0].isupper() else rep.capitalize()
            w = w.replace(core, rep)
            subject_next = rep == "I"
        elif subject_next and re.fullmatch(r"[a-z]+s", core) and not core.endswith("ss"):
            stem = core[:-2] if core.endswith(("shes", "ches", "xes")) else core[:-1]
            w = w.replace(core, stem)
            subject_next = False
        else:
            subject_next = False
        out.append(w)
    return " ".join(out)


def restatement_pairs(rng: random.Random, personas: list[dict], n: int) -> list[Pair]:
    """A description sentence vs. the same content said in the first person (entailment), and
    now and then vs. another sentence of the same description said in the first person (neutral)."""
    out: list[Pair] = []
    while len(out) < n:
        p = rng.choice(personas)
        sents = sentences(p["description"])
        said = [(s, first_person(s, p.get("name", ""))) for s in sents]
        said = [(s, f) for s, f in said if f]
        if len(said) < 2:
            continue
        (s, f), (_, g) = rng.sample(said, 2)
        out.append(Pair(s, _dress(f, rng), ENTAILMENT))
        if rng.random() < 1 / 3:  # mostly entailments: same topic, no contradiction
            out.append(Pair(s, _dress(g, rng), NEUTRAL))
    return out[:n]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def builtin_personas() -> list[dict]:
    root = Path(__file__).resolve().parent.parent / "envs" / "data"
    return [rec for f in sorted(root.glob("*.jsonl")) for rec in _jsonl(f)]


WRITTEN = Path(__file__).resolve().parent / "data" / "judge_train.jsonl"


def written_pairs(path: Path = WRITTEN) -> list[Pair]:
    """Hand-written training examples (``rewards/data/judge_train.jsonl``; invented people, none
    from the check set), in the judge's own unit: one premise sentence or earlier line vs. one line.

    Two record kinds: ``{"persona": description, "lines": [[line, k, about]]}`` where ``k`` is the
    index of the description sentence the line contradicts (``null``: contradicts none; a list:
    several), and ``{"said": [earlier lines], "lines": [[line, [indices it contradicts], about]]}``.
    A clean line's optional ``about`` names the sentence(s) or earlier line(s) it is about and
    agrees with (restates, elaborates, adds compatible detail); those pairs are labelled
    entailment. Without them nearly every pair that shares a topic is a contradiction, and the
    judge learns "same topic" as "contradiction" (measured: it flagged plain restatements).
    """
    return _written(_jsonl(path))


def _written(records: list[dict]) -> list[Pair]:
    out = []
    for rec in records:
        premises = sentences(rec["persona"]) if "persona" in rec else rec["said"]
        for line, k, *about in rec["lines"]:
            out += _labelled(premises, line, _indices(k), _indices(about[0] if about else None))
    return out


def _labelled(premises: list[str], line: str, bad: list[int], agree: list[int] = (),
              ids: list[int] | None = None) -> list[Pair]:
    """Every premise against ``line``: contradiction for the ``bad`` ids, entailment for the
    ``agree`` ones, neutral for the rest. A premise's id is its index unless ``ids`` are given."""
    return [Pair(s, line, CONTRADICTION if i in bad else ENTAILMENT if i in agree else NEUTRAL)
            for i, s in zip(range(len(premises)) if ids is None else ids, premises)]


def _indices(k: int | list[int] | None) -> list[int]:
    return k if isinstance(k, list) else [] if k is None else [k]


CHECKSET = Path(__file__).resolve().parent / "data" / "checkset.jsonl"


def _tune_records(path: Path = CHECKSET) -> list[dict]:
    return [r for r in _jsonl(path) if r.get("meta", {}).get("split") == "tune"]


def tune_pairs(path: Path = CHECKSET) -> list[Pair]:
    """The check set's tuning part in the judge's unit: every description sentence and every
    earlier simulator line against every simulator line, labelled from the annotations."""
    return _tune(_tune_records(path))


def _tune(records: list[dict]) -> list[Pair]:
    out = []
    for rec in records:
        premises = sentences(rec["persona"]["description"])
        said: list[str] = []
        said_turns: list[int] = []  # conflicts_with names earlier lines by turn index
        for i, t in enumerate(rec["turns"]):
            if t["speaker"] == "simulator":
                out += _labelled(premises, t["text"], t.get("contradicts_sentences", []))
                out += _labelled(said, t["text"], t.get("conflicts_with", []), ids=said_turns)
                said.append(t["text"])
                said_turns.append(i)
    return out


def generate(n: int, seed: int, written_copies: int, tune_part: bool, written_neutral: float = 1.0) -> list[Pair]:
    """The judge's training set (the arguments are `JudgeTrainConfig`'s ``examples``, ``seed``,
    ``written_copies`` and ``tune_part``): ``n`` generated pairs (1/2 facet pairs, 1/4 built-in
    persona facts, 1/4 restated description sentences) plus ``written_copies`` copies of the
    hand-written pairs and of the check set's tuning part (``tune_part=False`` leaves the tuning
    part out, so that it can serve as validation data while the recipe is developed), of whose
    neutral pairs a fraction ``written_neutral`` is kept."""
    rng = random.Random(seed)
    personas = builtin_personas()
    written = _jsonl(WRITTEN)
    tune = _tune_records() if tune_part else []
    # Restated sentences come from every description the judge trains on, so that a line on
    # the same topic as a sentence is not taken for a contradiction just for sharing the topic.
    descriptions = [r["persona"] for r in written if "persona" in r] + [r["persona"]["description"] for r in tune]
    described = personas + [{"name": d.split(" is ")[0], "description": d} for d in descriptions]
    pairs = (facet_pairs(rng, n // 2) + persona_pairs(rng, personas, n // 4)
             + restatement_pairs(rng, described, n - n // 2 - n // 4))
    # Most hand-written pairs are neutral (every other sentence of a description against a line
    # about one of them). ``written_neutral`` keeps that fraction of them, at random: they are
    # most of the training time and, past a point, add little the judge does not already learn.
    kept = [p for p in _written(written) + _tune(tune) if p.label != NEUTRAL or rng.random() < written_neutral]
    pairs += kept * written_copies
    rng.shuffle(pairs)
    return pairs
