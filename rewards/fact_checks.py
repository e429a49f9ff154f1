"""Narrow fact checks, read by rules: the speaker's age, school year, where they are now, family,
birth order and diet, taken from a premise (a persona description sentence, or a line the
speaker said earlier) and from a new line, and compared.

Why: the trained MiniLM judge knows too little about the world to see that "here in Shizuoka"
contradicts "lives in Sapporo", or that "I'm thirty now" contradicts "an 18-year-old": it learnt
those from the names and numbers it was trained on, and misses new ones (P(contradiction) 0.04
and 0.31 on the tuning part). A rule reads such a fact only when it is stated about the speaker
in a fixed form ("I'm thirty", "here in Oslo", "a sixth grader"), so it fires rarely; `NLIJudge`
takes the larger of its own probability and the rule's verdict.

A rule that fires on a consistent line punishes a good line during training, so every rule errs
towards silence: a description sentence counts only when its subject is the persona ("Maria is",
"She has", not "Her mother has"); the speaker's own words count only when asserted now (not
after "when", "if", "next year", "used to"... in the same clause, and never inside quotes); a
relative in a sentence about a death or a break-up counts for nothing; regions are never compared
with cities.
README gives how often the rules fire and how often they are right on the hand-written pairs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

# Changes whenever a rule does: part of the judge's id, so cached verdicts never outlive the rules.
VERSION = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:8]

# --- numbers ------------------------------------------------------------------------------------
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
             "thirteenth").split()
_NUM = (r"(\d{1,3}|(?:" + "|".join(_TENS) + r")(?:[- ](?:" + "|".join(_UNITS[1:10]) + r"))?|"
        + "|".join(sorted(_UNITS, key=len, reverse=True)) + ")")
_ORD = r"(\d{1,2}(?:st|nd|rd|th)|" + "|".join(_ORDINALS) + ")"


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


# --- whose fact: the persona as a description sentence's subject, or the speaker asserting now ---
_CAP = r"[A-ZÀ-ÖØ-Þ]"  # a capital, accented ones too ("Élodie")
# A description sentence about the persona starts with its name or pronoun: "Maria Lopez is",
# "She has" (not "Her mother has": the second word is not capitalised).
_SUBJECT = rf"^(?:{_CAP}[\w'-]*\s){{1,3}}"
# ... and its verb comes next, so "Amy's mother has" is not about Amy: a clause about the persona.
_PERSONA = _SUBJECT + r"(?=(?:is|has|was|lives|works|raises|became|went|turned|got|never|doesn't|does|keeps)\b)"
# The rest of the subject's own clause: it stops at a comma, a semicolon or a relative clause, so
# "a nurse who grew up in Lagos" does not place the nurse in Lagos.
_CLAUSE = (r"(?:(?!\b(?:who|whose|where|which|that|while|after|before|since|when|planning|hoping|wants|"
           r"studying|reading|learning|writing|practising|practicing)\b)[^,;])*?")
# Words that make the speaker's statement hypothetical, future, past or someone else's when they
# come earlier in its clause.
_HEDGE = re.compile(r"\b(?:when|whenever|once|until|if|by the time|next|will|would|wish|going to|gonna|used to|"
                    r"not like|as if|pretend|imagine|dream|says|said|say|told|tells)\b|'ll\b", re.I)
# Sentence ends for rules that look at one sentence at a time. Unlike `sentences.sentences` it
# also splits before a lowercase word: simulator lines are loosely written ("Had chicken. my
# brother hates it").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
# A relative in a sentence about a death or a break-up may no longer be there to count.
_GONE = re.compile(r"\b(?:died|dies|passed|late|lost|death|killed|funeral|miscarriage|separated|divorced|split|"
                   r"broke up|estranged|ex)\b", re.I)


def _clean(text: str, said: bool) -> str:
    """Straight apostrophes, no quoted speech; in the speaker's words a lowercase "i" is "I"."""
    text = _QUOTED.sub(" ", text.replace("’", "'"))
    return re.sub(r"\bi(?=\b|')", "I", text) if said else text


def _asserted(text: str, matches) -> list[re.Match]:
    """The matches whose clause, up to the match, has no hedge word."""
    out = []
    for m in matches:
        start = max(text.rfind(c, 0, m.start()) for c in ".,;!?") + 1
        if not _HEDGE.search(text[start:m.start()]):
            out.append(m)
    return out


def _first_group(m: re.Match) -> str:
    return next(g for g in m.groups() if g)


def _found(pattern: re.Pattern, text: str, said: bool) -> list[re.Match]:
    """The pattern's matches; in the speaker's own words only those asserted now."""
    return _asserted(text, pattern.finditer(text)) if said else list(pattern.finditer(text))


# --- age and school year ---------------------------------------------------------------------------
_AGE3 = [re.compile(_SUBJECT + r"is (?:an? )?" + _NUM + r"[- ]years?[- ]old\b"),
         re.compile(_SUBJECT + r"is " + _NUM + r"(?:,| and\b| years\b|\.)")]
_AGE1 = [re.compile(r"\bI(?:'m| am) (?:an? )?" + _NUM + r"[- ]years?[- ]old\b"),
         re.compile(r"\bI(?:'m| am) (?:only |just |already )?" + _NUM
                    + r"(?= now\b| this year\b|[,.!?;]|$| and\b| so\b| but\b)"),
         re.compile(r"\bI (?:just|recently) turned " + _NUM + r"\b")]  # not "the summer I turned 19"
_GRADE3 = [re.compile(_SUBJECT + r"is (?:an? )?(?:\S+ )?(?:\S+ )?" + _ORD + r"[- ]grader\b"),
           re.compile(_SUBJECT + r"is (?:an? |in )?(?:\S+ )?(?:\S+ )?[Yy]ear " + _NUM + r"\b")]
_GRADE1 = [re.compile(r"\bI(?:'m| am) (?:an? |in )?" + _ORD + r"[- ]grader?\b"),
           re.compile(r"\bI(?:'m| am) in (?:the )?" + _ORD + r" grade\b"),
           re.compile(r"\bI(?:'m| am) in (?:[Yy]ear|grade) " + _NUM + r"\b")]
# A school year the speaker was already in: "we did that in Year 10 last term".
_PAST_GRADE = re.compile(r"\b(?:I|[Ww]e) (?:did|learned|learnt|studied|covered) (?:\w+ ){0,3}?in "
                         r"(?:(?:[Yy]ear|grade) " + _NUM + r"|" + _ORD + r" grade)\b")

# --- where the speaker is now -----------------------------------------------------------------------
_PLACE = rf"((?:{_CAP}[\w'-]+)(?:\s+{_CAP}[\w'-]+){{0,2}})"  # "San Jose", "New York City"
_HERE = re.compile(r"\b(?:here in|I (?:still |now )?live in|I(?:'m| am) (?:living|based) in) (?:the )?" + _PLACE
                   + r"(?!'s| (?:office|room|street|road|avenue|park|hospital|school|station|mall|centre|center|"
                     r"store|shop|library|ward|clinic|class|high|university|college|church|house|flat)\b)")
_THERE = re.compile(_SUBJECT + r"(?:is|lives|works)\b" + _CLAUSE + r"\bin (?:an? |the )?"
                    r"(?:(?:small|little|big|quiet|rural|coastal) )*" + _PLACE)
_AWAY = re.compile(r"\b(?:holiday|visit|visiting|trip|vacation|staying|conference|tour|weekend|away|cruise|"
                   r"basically|practically|pretty much)\b", re.I)
# Capitalised words after "in" that are not places; containers a city is in ("here in Arizona"
# for a persona in Phoenix) are skipped too, since the rule cannot tell a region from its city.
_NOT_PLACES = set("""january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday year grade english spanish french german maths math
science history art music biology chemistry physics geography spring summer autumn fall winter christmas
easter ramadan i my our his her their god church school dr mr mrs ms room ward mount saint st""".split())
_REGIONS = set("""america usa us uk britain england scotland wales ireland europe asia africa canada australia
india china japan mexico brazil germany france italy spain portugal nigeria kenya egypt pakistan korea
philippines vietnam indonesia turkey russia poland netherlands sweden norway denmark finland greece
alabama alaska arizona arkansas california colorado connecticut delaware florida georgia hawaii idaho
illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts michigan minnesota
mississippi missouri montana nebraska nevada ohio oklahoma oregon pennsylvania tennessee texas utah
vermont virginia washington wisconsin wyoming carolina dakota jersey hampshire york ontario quebec
bavaria yorkshire lancashire kent essex cornwall devon the states city town country north south east
west""".split())

# --- family and birth order -----------------------------------------------------------------------
# Which relatives the speaker has ("my sister Ines", "raising two sons", "married to Tom") or says
# they do not have ("I'm an only child"). A relative counts under each name that covers it: a
# sister is a sister and a sibling; a spouse means married.
_KIN = {"son": "child", "sons": "child", "daughter": "child", "daughters": "child", "kids": "child",
        "children": "child", "grandchildren": "child", "sister": "sister", "sisters": "sister",
        "brother": "brother", "brothers": "brother", "siblings": "sibling", "wife": "spouse", "husband": "spouse"}
_COVERS = {"sister": {"sister", "sibling"}, "brother": {"brother", "sibling"}, "spouse": {"spouse", "married"}}
_KIN_WORD = (r"(sons?|daughters?|kids|children|grandchildren|sisters?|brothers?|siblings|wife|husband)\b"
             r"(?!-in-law| in law| in (?:class|[Yy]ear|\d)| at school)")
_NOT_MINE = r"(?!(?:future|imaginary|dream|late|ex|former|dead|first|pretend)\b)"
_HAS1 = [re.compile(r"\b(?:[Mm]y|[Oo]ur) " + _NOT_MINE + r"(?:\w+ )?" + _KIN_WORD)]
_HAS3 = [re.compile(r"^(?:He\b[^.]*?\bhis|She\b[^.]*?\bher|They\b[^.]*?\btheir) " + _NOT_MINE + r"(?:\w+ )?" + _KIN_WORD),
         re.compile(_PERSONA + _CLAUSE + r"\b(?:has|is raising|raising|raises|raised) (?!no\b|any\b|not\b)"
                    r"(?:\w+ ){0,2}?" + _KIN_WORD)]
_MARRIED1 = re.compile(r"\bI(?:'m| am) (?:happily )?married\b")
_MARRIED3 = re.compile(_PERSONA + _CLAUSE + r"\b(?:is|has been) (?:happily )?married\b")
_WAS_MARRIED1 = re.compile(r"\bI(?:'m| am| was| got)(?: recently)? (?:divorced|widowed|separated)\b|\bI(?:'m| am) "
                           r"an? (?:widow|widower)\b|\bmy (?:ex-wife|ex-husband|late wife|late husband)\b")
_WAS_MARRIED3 = re.compile(_PERSONA + _CLAUSE + r"\b(?:is|was|got|has been)(?: recently)? (?:divorced|widowed|"
                           r"separated)\b|" + _PERSONA + r"is an? (?:widow|widower)\b|^(?:She|He)\b[^.]*?\b(?:his|her) "
                           r"(?:ex-wife|ex-husband|late wife|late husband)\b")
_DENIES1 = [(re.compile(r"\bI (?:don't|do not|never) have (?:any )?(?:kids|children)\b|\bI have no (?:kids|children)\b|"
                        r"\bno kids of my own\b|\bI(?:'ve| have) never had (?:kids|children)\b"), {"child"}),
            (re.compile(r"\bI(?:'m| am) an only child\b|\bI (?:don't|do not) have (?:any )?(?:siblings|brothers or "
                        r"sisters)\b|\bI have no (?:siblings|brothers or sisters)\b"), {"sibling", "sister", "brother"}),
            (re.compile(r"\bI (?:don't|do not) have (?:a|any) sisters?\b"), {"sister"}),
            (re.compile(r"\bI (?:don't|do not) have (?:a|any) brothers?\b"), {"brother"}),
            (re.compile(r"\bI(?:'m| am) (?:not married|single|unmarried)\b(?!-)|\bI (?:don't|do not) have a "
                        r"(?:wife|husband)\b"), {"spouse"}),
            (re.compile(r"\bI(?:'ve| have)? never (?:been |got |gotten )?married\b"), {"spouse", "married"})]
_DENIES3 = [(re.compile(_PERSONA + _CLAUSE + r"\b(?:has no (?:kids|children)|is childless)\b"), {"child"}),
            (re.compile(_PERSONA + _CLAUSE + r"\b(?:is an only child|has no (?:siblings|brothers or sisters))\b"),
             {"sibling", "sister", "brother"}),
            (re.compile(_PERSONA + _CLAUSE + r"\bis (?:single|unmarried|not married)\b(?!-)"), {"spouse"}),
            (re.compile(_PERSONA + _CLAUSE + r"\b(?:has )?never (?:been )?married\b"), {"spouse", "married"})]
# Not at home any more is not "no children": "I have no kids at home".
_STILL_HAS = re.compile(r"\b(?:kids|children) (?:at home|here|left|anymore|any more|in the house|living)\b")
_ORDER_END = r"(?= child| of (?:the |us\b|my |our |\w+ (?:kids|children|siblings|of us))|[.,!?]| in (?:my|our|the) family)"
_ORDER1 = re.compile(r"\bI(?:'m| am) the (eldest|oldest|youngest|middle)" + _ORDER_END)
_ORDER3 = re.compile(_PERSONA + _CLAUSE + r"\bis the (eldest|oldest|youngest|middle)" + _ORDER_END)

# --- diet ------------------------------------------------------------------------------------------
# A vegetarian or vegan speaker who says they eat an animal food ("I had a bacon roll", "Nothing
# beats a grilled steak"), in a sentence with no negation, no one else and no meat substitute.
_DIET1 = re.compile(r"\bI(?:'m| am|'ve been| have been| became| went| turned) (?:a |an )?(?:strict |lifelong |fully )?"
                    r"(vegetarian|vegan|pescatarian)\b|\bI (?:don't|do not|never) eat (meat)(?: at all)?[.,!]")
_DIET3 = re.compile(_PERSONA + _CLAUSE + r"\b(?:is|has been|became|went|turned) (?:an? )?(?:\S+ )?(?:strict |strictly |"
                    r"lifelong |fully )?(vegetarian|vegan|pescatarian)\b|" + _PERSONA + _CLAUSE
                    + r"\b(?:doesn't|does not|never) eats? (meat)(?: at all)?[.,!]")
_EATS = re.compile(r"(?:\bI(?:'ve|'d| have| had| just| always| usually| often| really)* (?:eat|ate|had|love|ordered|"
                   r"devoured|crave|live on)|\b(?:[Nn]othing beats|can't beat))\b (?:\w+ ){0,3}?(steaks?|bacon|"
                   r"burgers?|hamburgers?|chicken|pork|beef|lamb|ham|sausages?|salami|pepperoni|ribs|brisket|"
                   r"meatballs?|kebabs?|veal|venison|chorizo|prosciutto|fish|salmon|tuna|prawns?|shrimps?|cheese|"
                   r"milk|eggs?|butter|honey)\b(?!\s*(?:pox|run|street|road|to fry|with|-free))")
_FISH, _ANIMAL = {"fish", "salmon", "tuna", "prawn", "prawns", "shrimp", "shrimps"}, {"cheese", "milk", "egg", "eggs",
                                                                                       "butter", "honey"}
_NOT_EATING = re.compile(r"n't\b|\b(?:not|never|no|without|instead|except|avoid|gave up|quit|used to|miss|he|she|"
                         r"they|his|her|their|husband|wife|kids|son|daughter|family|friends?|dad|mum|mom|partner|"
                         r"brother|sister|roommate|guests|customers|everyone|vegetarian|vegan|veggie|veg|"
                         r"plant-based|plant|tofu|fake|meatless|impossible|beyond|oat|soy|almond|cashew|coconut|"
                         r"bean|halloumi|quorn|mushroom|lentil|seitan|jackfruit|chickpea|free|pescatarian|pet|tank|"
                         r"aquarium|goldfish)\b", re.I)


@dataclass(frozen=True)
class SpeakerFacts:
    """What a text states, in a fixed form, about its speaker (or its persona)."""

    ages: frozenset[int]
    grades: frozenset[int]
    past_grades: frozenset[int]
    here: frozenset[str]  # places the speaker says they are in now
    places: frozenset[str]  # places a description puts its persona in
    order: frozenset[str]  # the speaker's place among siblings: "eldest", "youngest", "middle"
    kin: frozenset[str]  # relatives the speaker has ("child", "sibling", "sister", "spouse", "married"...)
    no_kin: frozenset[str]  # relatives the speaker says they do not have
    diet: str | None  # "vegetarian", "vegan" or "pescatarian"
    eats: frozenset[str]  # animal foods the speaker says they eat


def _numbers(patterns, text: str, said: bool) -> frozenset[int]:
    found = (number(_first_group(m)) for p in patterns for m in _found(p, text, said))
    return frozenset(n for n in found if n is not None)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _is_place(phrase: str) -> bool:
    return phrase.split()[0].lower() not in _NOT_PLACES and not phrase.isupper()  # "the ER", "the NHS"


def _kin(text: str, said: bool) -> tuple[frozenset[str], frozenset[str]]:
    """(relatives the text says the speaker has, relatives it says they do not have)."""
    has: set[str] = set()
    for sentence in _SENTENCE_END.split(text):
        if _GONE.search(sentence):
            continue  # "his wife June died", "she separated from her husband": nobody sure to count
        for p in _HAS1 if said else _HAS3:
            for m in p.finditer(sentence):
                kind = _KIN[_first_group(m).lower()]
                has |= _COVERS.get(kind, {kind})
        if (_MARRIED1 if said else _MARRIED3).search(sentence):
            has |= {"spouse", "married"}
    if (_WAS_MARRIED1 if said else _WAS_MARRIED3).search(text):
        has.add("married")
    denies: set[str] = set()
    for p, kinds in _DENIES1 if said else _DENIES3:
        if _found(p, text, said):
            denies |= kinds
    if said and _STILL_HAS.search(text):
        denies.discard("child")
    return frozenset(has - denies), frozenset(denies)


def _diet(text: str, said: bool) -> str | None:
    m = (_DIET1 if said else _DIET3).search(text)
    return None if not m else "vegetarian" if _first_group(m) == "meat" else _first_group(m).lower()


def _eats(line: str) -> frozenset[str]:
    """Animal foods a line says the speaker eats, in sentences with no one else and no negation."""
    out: set[str] = set()
    for sentence in _SENTENCE_END.split(line):
        if not _NOT_EATING.search(sentence):
            out |= {m.group(1) for m in _found(_EATS, sentence, said=True)}
    return frozenset(out)


def read(text: str, said: bool) -> SpeakerFacts:
    """The speaker facts a text states in the forms above: the speaker's own words (a line, an
    earlier line: ``said=True``) in the first-person forms, a description sentence in the
    third-person forms."""
    text = _clean(text, said)
    kin, no_kin = _kin(text, said)
    here = frozenset()
    if said and not _AWAY.search(text):
        here = frozenset(m.group(1) for m in _found(_HERE, text, said=True) if _is_place(m.group(1)))
    return SpeakerFacts(
        ages=frozenset(a for a in _numbers(_AGE1 if said else _AGE3, text, said) if a >= 5),  # "I'm two days in"
        grades=_numbers(_GRADE1 if said else _GRADE3, text, said),
        past_grades=_numbers([_PAST_GRADE], text, said) if said else frozenset(),
        here=here,
        places=frozenset() if said else frozenset(p for p in _THERE.findall(text) if _is_place(p)),
        order=frozenset("eldest" if m.group(1) == "oldest" else m.group(1)
                        for m in _found(_ORDER1 if said else _ORDER3, text, said)),
        kin=kin, no_kin=no_kin, diet=_diet(text, said), eats=_eats(text) if said else frozenset())


def conflict(premise: str, line: str, premise_is_said: bool = False) -> str | None:
    """Why ``line`` contradicts ``premise`` on a speaker fact, or None. ``premise`` is a
    description sentence, or (``premise_is_said``) something the speaker said earlier. Only facts
    both state are compared: a premise that says nothing about age never conflicts on age."""
    a, b = read(premise, premise_is_said), read(line, said=True)
    if a.ages and b.ages and all(abs(x - y) > 1 for x in a.ages for y in b.ages):
        return f"age {sorted(b.ages)} vs {sorted(a.ages)}"
    if a.grades and b.grades and not a.grades & b.grades:
        return f"school year {sorted(b.grades)} vs {sorted(a.grades)}"
    if a.grades and b.past_grades and min(b.past_grades) > max(a.grades):
        return f"already in school year {sorted(b.past_grades)} vs {sorted(a.grades)}"
    if a.diet and not b.diet:
        allowed = {"pescatarian": _FISH | _ANIMAL, "vegetarian": _ANIMAL}.get(a.diet, set())
        if eaten := b.eats - allowed:
            return f"diet: {a.diet} eats {sorted(eaten)}"
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
