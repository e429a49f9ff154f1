"""Narrow fact checks, read by rules: the speaker's age, school year and the place they say they
are in, taken from a premise (a description sentence or an earlier line) and from a line, and
compared.

Why: the trained MiniLM judge knows too little about the world to see that "here in Shizuoka"
contradicts "lives in Sapporo", or that "I'm thirty now" contradicts "an 18-year-old": it learnt
those from the names and numbers it was trained on, and misses new ones (P(contradiction) 0.04
and 0.31 on the tuning part). A rule reads such a fact only when it is stated about the speaker
in a fixed form ("I'm thirty", "here in Oslo", "a sixth grader"), so it fires rarely and is
rarely wrong; `NLIJudge` takes the larger of its own probability and the rule's verdict.
README gives how often the rules fire and how often they are right on the hand-written pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
             "thirteenth").split()
_NUM = (r"(\d{1,3}|(?:" + "|".join(_TENS) + r")(?:[- ](?:" + "|".join(_UNITS[1:10]) + r"))?|"
        + "|".join(sorted(_UNITS, key=len, reverse=True)) + ")")
_ORD = r"(\d{1,2}(?:st|nd|rd|th)|" + "|".join(_ORDINALS) + ")"
# Capitalised words, up to three ("San Jose", "New York City").
_PLACE = r"((?:[A-Z][\w'-]+)(?:\s+[A-Z][\w'-]+){0,2})"


def number(word: str) -> int | None:
    """'42' -> 42, 'thirty-two' -> 32, 'eight' -> 8, '5th'/'fifth' -> 5; None if not a number."""
    w = word.lower().strip()
    if m := re.fullmatch(r"(\d+)(?:st|nd|rd|th)?", w):
        return int(m.group(1))
    if w in _ORDINALS:
        return _ORDINALS.index(w) + 1
    if w in _UNITS:
        return _UNITS.index(w)
    parts = re.split(r"[- ]", w)
    if parts[0] in _TENS and len(parts) <= 2:
        unit = _UNITS.index(parts[1]) if len(parts) == 2 and parts[1] in _UNITS[1:10] else 0
        return 20 + 10 * _TENS.index(parts[0]) + unit
    return None


# Third-person facts (a description sentence) count only when the sentence's capitalised subject
# ("Maria", "She") has them, so "Her son is a 12-year-old" is not read as the persona's age.
_SUBJECT = r"^(?:[A-Z][\w'-]*\s){1,3}is "
_AGE3 = [re.compile(_SUBJECT + r"(?:an? )?" + _NUM + r"[- ]years?[- ]old\b"),
         re.compile(_SUBJECT + _NUM + r"(?:,| and\b| years\b)")]
_AGE1 = [re.compile(r"\bI(?:'m| am) (?:an? )?" + _NUM + r"[- ]years?[- ]old\b"),
         re.compile(r"\bI(?:'m| am) (?:only |just |already )?" + _NUM
                    + r"(?= now\b| this year\b|[,.!?;]|$| and\b| so\b| but\b)"),
         re.compile(r"\bI (?:just|recently) turned " + _NUM + r"\b")]  # not "the summer I turned 19"
# The speaker's school year: "a sixth grader", "a Year 7 pupil", "I'm in grade 5".
_GRADE3 = [re.compile(_SUBJECT + r"(?:an? )?(?:\S+ )?(?:\S+ )?" + _ORD + r"[- ]grader\b"),
           re.compile(_SUBJECT + r"(?:an? |in )?(?:\S+ )?(?:\S+ )?Year " + _NUM + r"\b")]
_GRADE1 = [re.compile(r"\bI(?:'m| am) (?:an? |in )?" + _ORD + r"[- ]grader?\b"),
           re.compile(r"\bI(?:'m| am) in (?:the )?" + _ORD + r" grade\b"),
           re.compile(r"\bI(?:'m| am) in (?:Year|grade) " + _NUM + r"\b")]
# A school year the speaker says they were already in ("we did that in Year 10 last term").
_PAST_GRADE = re.compile(r"\b(?:I|[Ww]e) (?:did|learned|learnt|had|studied|covered|was|were)\b[^.!?]{0,40}?\bin "
                         r"(?:(?:Year|grade) " + _NUM + r"|" + _ORD + r" grade)\b")
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|[Mm]y|me|[Ww]e|[Oo]ur)\b")
# Where the speaker is now: "here in Oslo", "I still live in Dallas".
_HERE = re.compile(r"\b(?:here in|I (?:still |now )?live in|I(?:'m| am) (?:living|based) in|"
                   r"I(?:'ve| have) (?:lived|been living) in) (?:the )?" + _PLACE)
# Where the description places the persona: "Maria is a nurse in Phoenix", "He lives in a small
# Vermont town", in the subject's own clause (not "..., and their children live in London").
_THERE = re.compile(r"^(?:[A-Z][\w'-]*\s){1,3}(?:is|lives|works)\b[^,;]*?\bin (?:an? |the )?"
                    r"(?:(?:small|little|big|quiet|rural|coastal) )*" + _PLACE)
# Capitalised words after "in" that are not places; containers a city is in ("here in Arizona"
# for a persona in Phoenix) are skipped too, since the rule cannot tell a region from its city.
_NOT_PLACES = set("""january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday year grade english spanish french german maths math
science history art music biology chemistry physics geography spring summer autumn fall winter christmas
easter ramadan i my our his her their god church school""".split())
_REGIONS = set("""america usa us uk britain england scotland wales ireland europe asia africa canada australia
india china japan mexico brazil germany france italy spain portugal nigeria kenya egypt pakistan korea
philippines vietnam indonesia turkey russia poland netherlands sweden norway denmark finland greece
alabama alaska arizona arkansas california colorado connecticut delaware florida georgia hawaii idaho
illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts michigan minnesota
mississippi missouri montana nebraska nevada ohio oklahoma oregon pennsylvania tennessee texas utah
vermont virginia washington wisconsin wyoming carolina dakota jersey hampshire york mexico ontario
quebec bavaria the states city town country north south east west""".split())
# Family: which relatives the speaker has ("my sister Ines", "raising two sons", "married to
# Tom") or says they do not have ("I'm an only child", "I don't have kids"). A relative counts
# under each name that covers it: a sister is a sister and a sibling.
_KIN = {"son": "child", "sons": "child", "daughter": "child", "daughters": "child", "kids": "child",
        "children": "child", "grandchildren": "child", "sister": "sister", "sisters": "sister",
        "brother": "brother", "brothers": "brother", "siblings": "sibling", "twin": "sibling",
        "wife": "spouse", "husband": "spouse"}
_COVERS = {"sister": {"sister", "sibling"}, "brother": {"brother", "sibling"}, "spouse": {"spouse", "married"}}
_KIN_WORD = r"(sons?|daughters?|kids|children|grandchildren|sisters?|brothers?|siblings|twin|wife|husband)\b(?!-in-law)"
_NOT_NONE = r"(?!no\b|any\b|not\b)"
_HAS1 = [re.compile(r"\b(?:[Mm]y|[Oo]ur) (?:\w+ )?" + _KIN_WORD.replace("wife|husband", "(?<=y )wife|(?<=y )husband"))]
_HAS3 = [re.compile(r"\b(?:his|her|their) (?:\w+ )?" + _KIN_WORD),
         re.compile(r"\b(?:has|have|raising|raises|raised) " + _NOT_NONE + r"(?:\w+ ){0,2}?" + _KIN_WORD),
         re.compile(r"\b(?:eldest|oldest|youngest|middle) (?:child )?of (?:\w+ )?(siblings|children|kids)\b")]
_MARRIED1 = re.compile(r"\bI(?:'m| am) (?:happily )?married\b")
_MARRIED3 = re.compile(r"\b(?:is|been) (?:happily )?married\b|\bmarried to\b")
_WAS_MARRIED = re.compile(r"\b(?:divorced|widowed|widow|widower|separated|ex-wife|ex-husband|late wife|late husband)\b")
_DENIES1 = [(re.compile(r"\bI (?:don't|do not|didn't|never) (?:have|had) (?:any )?(?:kids|children)\b|\bI have no "
                        r"(?:kids|children)\b|\bno kids of my own\b|\bI'm not a (?:mum|mom|dad|parent|mother|father)\b|"
                        r"\bI(?:'ve| have) never had (?:kids|children)\b"), {"child"}),
            (re.compile(r"\bI(?:'m| am) an only child\b|\bI (?:don't|do not) have (?:any )?(?:siblings|brothers or "
                        r"sisters)\b|\bI have no (?:siblings|brothers or sisters)\b"), {"sibling", "sister", "brother"}),
            (re.compile(r"\bI (?:don't|do not) have (?:a|any) sisters?\b"), {"sister"}),
            (re.compile(r"\bI (?:don't|do not) have (?:a|any) brothers?\b"), {"brother"}),
            (re.compile(r"\bI(?:'m| am) (?:not married|single|unmarried)\b|\bI (?:don't|do not) have a "
                        r"(?:wife|husband)\b"), {"spouse"}),
            (re.compile(r"\bI(?:'ve| have)? never (?:been |got |gotten )?married\b"), {"spouse", "married"})]
_DENIES3 = [(re.compile(r"\b(?:has|have) no (?:kids|children)\b|\bchildless\b"), {"child"}),
            (re.compile(r"\bis an only child\b|\b(?:has|have) no (?:siblings|brothers or sisters)\b"),
             {"sibling", "sister", "brother"}),
            (re.compile(r"\bis (?:single|unmarried|not married)\b"), {"spouse"}),
            (re.compile(r"\b(?:has )?never (?:been )?married\b"), {"spouse", "married"})]
# Birth order: "the eldest of three", "I'm the youngest".
_ORDER1 = re.compile(r"\bI(?:'m| am| was) the (eldest|oldest|youngest|middle)\b")
_ORDER3 = re.compile(r"\b(?:is|was) the (eldest|oldest|youngest|middle)\b|\b(eldest|oldest|youngest|middle) "
                     r"(?:child|of)\b")


def _order(text: str, first: bool) -> frozenset[str]:
    found = (next(g for g in m.groups() if g) for m in (_ORDER1 if first else _ORDER3).finditer(text))
    return frozenset("eldest" if o == "oldest" else o for o in found)


def _kin(text: str, first: bool) -> tuple[frozenset[str], frozenset[str]]:
    """(relatives the text says the speaker has, relatives it says they do not have)."""
    has: set[str] = set()
    for p in _HAS1 if first else _HAS3:
        for m in p.finditer(text):
            kind = _KIN[next(g for g in m.groups() if g).lower()]
            has |= _COVERS.get(kind, {kind})
    if (_MARRIED1 if first else _MARRIED3).search(text):
        has |= {"spouse", "married"}
    if _WAS_MARRIED.search(text):
        has.add("married")
    denies = {kind for p, kinds in (_DENIES1 if first else _DENIES3) if p.search(text) for kind in kinds}
    return frozenset(has - denies), frozenset(denies)


# Diet: a vegetarian or vegan speaker who eats meat. A line counts only where the speaker says
# they eat or relish it ("I had a bacon roll", "Nothing beats a grilled steak"), in a sentence
# with no negation, no one else who might eat it and no meat substitute.
_DIET = re.compile(r"\b(?:is|am|I'm|been|went|turned|became|become|stays?) (?:an? )?(?:strict |strictly |fully )?"
                   r"(vegetarian|vegan|pescatarian)\b|\b(?:doesn't|does not|don't|do not|never) eats? (meat)\b", re.I)
_MEAT_WORDS = (r"(steaks?|bacon|burgers?|hamburgers?|chicken|pork|beef|lamb|ham|sausages?|salami|pepperoni|ribs|"
               r"brisket|meatballs?|kebabs?|veal|venison|chorizo|prosciutto|fish|salmon|tuna|prawns?|shrimps?|"
               r"cheese|milk|eggs?|butter|honey)\b")
_EATS = re.compile(r"(?:\bI(?:'ve|'d| have| had| just| always| usually| often| really)* (?:eat|ate|had|love|grilled|"
                   r"cooked|ordered|devoured|crave|fancy|got|get|live on)\b|\b(?:nothing beats|can't beat|give me)\b)"
                   r"[^.!?]*?\b" + _MEAT_WORDS, re.I)
_FISH, _ANIMAL = {"fish", "salmon", "tuna", "prawn", "prawns", "shrimp", "shrimps"}, {"cheese", "milk", "egg", "eggs",
                                                                                       "butter", "honey"}
_NOT_EATING = re.compile(r"n't\b|\b(?:not|never|no|without|instead|except|avoid|gave up|quit|used to|miss|"
                         r"he|she|they|his|her|their|husband|wife|kids|son|daughter|family|friends?|dad|mum|"
                         r"mom|partner|brother|sister|roommate|guests|customers|everyone|vegetarian|vegan|veggie|"
                         r"plant-based|tofu|fake|meatless|impossible|oat|soy|almond|cashew|coconut|pescatarian)\b", re.I)


def _diet(text: str) -> str | None:
    m = _DIET.search(text)
    return None if not m else "vegetarian" if m.group(2) else m.group(1).lower()


def _eats(line: str) -> set[str]:
    """Animal foods a line says the speaker eats, in sentences with no one else and no negation."""
    out: set[str] = set()
    for sent in re.split(r"(?<=[.!?])\s+", line):
        if not _NOT_EATING.search(sent):
            out |= {m.lower() for m in _EATS.findall(sent)}
    return out


@dataclass(frozen=True)
class SpeakerFacts:
    """What a text states, in a fixed form, about its speaker (or its persona)."""

    ages: frozenset[int]
    grades: frozenset[int]
    past_grades: frozenset[int]
    here: frozenset[str]  # places the speaker says they are in now
    places: frozenset[str]  # places the text puts its persona in (description form)
    order: frozenset[str]  # the speaker's place among siblings: "eldest", "youngest", "middle"
    kin: frozenset[str]  # relatives the speaker has ("child", "sibling", "sister", "spouse", "married"...)
    no_kin: frozenset[str]  # relatives the speaker says they do not have


def _numbers(patterns, text: str) -> frozenset[int]:
    found = (number(next(g for g in m.groups() if g)) for p in patterns for m in p.finditer(text))
    return frozenset(n for n in found if n is not None)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _is_place(phrase: str) -> bool:
    return phrase.split()[0].lower() not in _NOT_PLACES and not phrase.isupper()  # "the ER", "the NHS"


def read(text: str, first_person: bool | None = None) -> SpeakerFacts:
    """The speaker facts a text states in the forms above: a first-person text (a line) in the
    first-person forms, any other (a description sentence) in the third-person forms.
    ``first_person=None`` tells them apart by the pronouns the text uses."""
    first = bool(_FIRST_PERSON.search(text)) if first_person is None else first_person
    kin, no_kin = _kin(text, first)
    return SpeakerFacts(
        ages=frozenset(a for a in _numbers(_AGE1 if first else _AGE3, text) if a >= 5),  # "I'm two days in"
        grades=_numbers(_GRADE1 if first else _GRADE3, text),
        past_grades=_numbers([_PAST_GRADE], text) if first else frozenset(),
        here=frozenset(p for p in _HERE.findall(text) if _is_place(p)) if first else frozenset(),
        places=frozenset() if first else frozenset(p for p in _THERE.findall(text) if _is_place(p)),
        order=_order(text, first), kin=kin, no_kin=no_kin)


def conflict(premise: str, line: str) -> str | None:
    """Why ``line`` contradicts ``premise`` on a speaker fact, or None. Only facts both state
    are compared: a premise that says nothing about age never conflicts on age."""
    a, b = read(premise), read(line, first_person=True)
    if a.ages and b.ages and all(abs(x - y) > 1 for x in a.ages for y in b.ages):
        return f"age {sorted(b.ages)} vs {sorted(a.ages)}"
    if a.grades and b.grades and not a.grades & b.grades:
        return f"school year {sorted(b.grades)} vs {sorted(a.grades)}"
    if a.grades and b.past_grades and min(b.past_grades) > max(a.grades):
        return f"already in school year {sorted(b.past_grades)} vs {sorted(a.grades)}"
    if (diet := _diet(premise)) and not _diet(line):
        eaten = _eats(line) - (_FISH | _ANIMAL if diet == "pescatarian" else _ANIMAL if diet == "vegetarian" else set())
        if eaten:
            return f"diet: {diet} eats {sorted(eaten)}"
    if a.order and b.order and not a.order & b.order:
        return f"birth order {sorted(b.order)} vs {sorted(a.order)}"
    if denied := (a.kin & b.no_kin) | (a.no_kin & b.kin):
        return f"family: {sorted(denied)}"
    # A premise that places the speaker in a region ("a small Vermont town") says nothing the
    # rule can check: the line's "here in Burlington" may well be inside it.
    known = {p for p in a.places | a.here if not _words(p) & _REGIONS}
    for place in b.here:
        parts = _words(place)
        if known and not _words(premise) & parts and not parts & _REGIONS:
            return f"here in {place} vs {sorted(known)}"
    return None
