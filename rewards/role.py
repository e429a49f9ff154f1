"""Role check: does a simulator line speak as the task agent or as an assistant?

A small instruct model playing a patient drifts into the role it was tuned for: it offers help
("How can I assist you?"), plays the therapist ("How does that make you feel?", or the
therapist's own question said back), talks like an assistant or a host ("Sorry for any
confusion", "Thank you for coming in today"), narrates the persona in the third person
("Maria feels tired.", "(glances at Maria)"), says it is an AI, writes chat scaffolding
("User: ..."), or writes about the dialogue instead of speaking in it ("Here's a possible
re-write", "(Cut to ...)"). The reference work's prompt-to-line judge counts such lines as
inconsistent with the persona; an NLI judge comparing facts cannot see them. These rules can,
in microseconds per line, so prompt-to-line applies them to every line (``role=True``).

:func:`role_problems` names what it found; precision and recall on labelled lines from real
SmolLM2 rollouts are in README ("Role check") and ``bench/judge_quality.py --role``.
"""

from __future__ import annotations

import re

_I = re.IGNORECASE

# 1. Offers help or asks how it can assist: an assistant's, not a patient's, line.
OFFERS_HELP = re.compile(
    r"\b(how (can|may|could) i (help|assist|support)|what can i (do|help) (for|with)"
    r"|(is there )?anything (else )?i can (help|do|assist)|i'?m (always )?(here|happy|glad) to (help|assist|support|listen)|glad to be of (help|service|assistance)"
    r"|i am (here|happy|glad) to (help|assist|support|listen)|let me know (if|how) (i|you)"
    r"|feel free to (ask|reach out|share)|i('?d| would) be (happy|glad) to help"
    r"|how can i be of (help|assistance|service)|(i'?m|i am) here for you)\b", _I)

# 1b. An assistant's or a host's stock phrases, whatever the task: the agent's greeting turned
#     back on it ("Thank you for coming in today"), consoling the agent ("Sorry for your loss"),
#     apologising for "any confusion", praising the question.
AGENT_TALK = re.compile(
    r"\b(thank you (so much )?for (coming|joining|stopping by)|(so |really )?glad (that )?you could|glad to have you|how have you been|hope you'?re (doing )?well"
    r"|check in (and|to) see how you"
    r"|what'?s on your mind|(that'?s a |what a )(great|good|excellent|wonderful|fantastic) question"
    r"|sorry for (any|the) (confusion|misunderstanding|inconvenience)|sorry (for|about) your (loss|troubles?|pain)"
    r"|sorry (for|about) what you'?re going through|i'?m sure i can help|i can help you)\b", _I)

# 2. Plays the task agent: the therapist's or teacher's moves, addressed to the other person.
PLAYS_THERAPIST = re.compile(
    r"\b(how does (that|this|it) make you feel|what brings you (here|in)|tell me (more )?about (your|how you)"
    r"|it'?s (completely |totally |perfectly )?(normal|okay|ok|natural|understandable) (to|that you) feel"
    r"|your feelings are valid|i hear (you|that you)|that must be (so |really |very )?(hard|difficult|tough) for you"
    r"|have you (tried|considered) (talking|seeing|speaking|reaching)"
    r"|(let'?s|we can) (work|explore|talk) (on|through|about) (this|that|it|your) together"
    r"|how are you (feeling|doing) (today|now|about (that|this|it))"
    r"|what would you like to (talk|focus|work) (about|on)"
    r"|you'?re not alone|take (a )?care of yourself|be kind to yourself|you deserve (to|support))\b", _I)
PLAYS_TEACHER = re.compile(
    r"\b(let me explain|let'?s (start|begin) with"
    r"|do you (understand|have any questions)|does that make sense\?|can you (tell|show) me what you (know|understand)"
    r"|good (job|work)|well done|class,|students,|today we'?(re| are| will) (going to )?(learn|cover|work))\b", _I)

# 3. Says it is an AI.
SAYS_AI = re.compile(
    r"\b(as an ai|i'?m an ai|i am an ai|(an? )?(ai|artificial intelligence) (language )?(model|assistant)"
    r"|language model|i'?m (just )?a (chat ?bot|virtual assistant|computer program|digital assistant)"
    r"|i am (just )?a (chat ?bot|virtual assistant|computer program|digital assistant)|chat ?bot|i'?m not (an? )?(ai|robot|bot)|i don'?t have (personal )?(feelings|experiences|a body))\b", _I)

# 4. Chat scaffolding: a role label at the start of the line or of any line in it.
SCAFFOLDING = re.compile(
    r"(^|\n)\s*(\*\*)?(user|assistant|system|human|ai|bot|patient|therapist|student|teacher|tutor|counsell?or|doctor|sender|receiver|recipient|tester|narrator|speaker|response|reply|[abq])"
    r"(\*\*)?\s*:|<\|?(im_start|im_end|endoftext|user|assistant)\|?>", _I)


# 5. Writes about the dialogue instead of speaking in it: offers a "re-write", breaks character
#    out loud, cuts to another scene, leaves a template's placeholder.
META = re.compile(
    r"\b(here'?s (a|an|the|my) (possible |revised |new |rewritten )?(re-?write|rewrite|revised version|revision|continuation)"
    r"|(in|out of|break(ing)?) character|re-?write (of|the) (the )?(conversation|dialogue|response))\b"
    r"|\((cut to|switching (back )?to|scene|end of|name of|insert|no (story|dialogue|more))\b|\[(name|insert|your)\b", _I)

_STAGE = re.compile(r"\(([^()]{0,200})\)?")
_OTHER_SIDE = re.compile(r"\bthe (patient|client|therapist|counsell?or|student|teacher|tutor|user)\b", _I)


def _narrates(line: str, name: str) -> bool:
    """A stage direction that names the persona or its counterpart from outside, e.g.
    "(Pauses, glances at Dorothy)" or "(looking at the patient)". First-person directions
    such as "(laughs)" are in role and stay unflagged."""
    parts = [p for p in name.split() if len(p) >= 3]
    for m in _STAGE.finditer(line):
        inner = m.group(1)
        if _OTHER_SIDE.search(inner) or any(re.search(rf"\b{re.escape(p)}\b", inner) for p in parts):
            return True
    return False


def _norm(sentence: str) -> str:
    words = re.findall(r"[a-z']+", sentence.lower())
    while words and words[0] in ("hi", "hello", "hey", "ok", "okay", "so", "well"):
        words = words[1:]
    return " ".join(words)


def _echoes(line: str, agent_before: str) -> bool:
    """The agent's own sentence said back as the simulator's ("How long have you been feeling
    this way?" after the therapist asked it): the small model continuing the agent's turn.
    A sentence in quotes is a quotation, not an echo."""
    said = {_norm(s) for s in re.split(r"(?<=[.!?])\s+|\n+", agent_before)}
    said = {s for s in said if len(s.split()) >= 4}
    for s in re.split(r"(?<=[.!?])\s+|\n+", line):
        if s.strip()[:1] in "\"'\u201c" and s.strip():
            continue
        if _norm(s) in said:
            return True
    return False


def _third_person(line: str, name: str) -> bool:
    """The persona narrated from outside: its first name (or full name) as the subject of a
    sentence, e.g. "Maria is tired." A line that addresses the persona by name is not flagged
    (a simulator never does that), nor is a name after "I'm" / "my name is"."""
    first = name.split()[0] if name.strip() else ""
    if len(first) < 2:
        return False
    subject = re.compile(
        rf"(^|[.!?]\s+|\n)\s*(\*|\()?{re.escape(first)}('s)?(\s+{re.escape(name.split()[-1])})?\s+"
        r"(is|was|has|had|feels|felt|says|said|thinks|thought|sighs|sighed|looks|looked|nods|nodded|smiles|smiled"
        r"|takes|took|pauses|paused|shrugs|shrugged|wants|wanted|seems|seemed|can|could|will|would|does|did|doesn't"
        r"|didn't|isn't|wasn't|hasn't|lives|works|goes|went|gets|got|starts|started|tries|tried|responds|replied|replies"
        r"|explains|explained|admits|admitted|continues|continued|leans|looks)\b", _I)
    return bool(subject.search(line))


def role_problems(line: str, name: str = "", task: str = "", agent_before: str = "") -> list[str]:
    """What makes ``line`` leave the simulator's role, as short reasons ([] when nothing).

    ``name`` is the persona's name (for the third-person rule); ``task`` picks the agent whose
    moves count (therapist moves in therapy, teacher moves in education; both elsewhere);
    ``agent_before`` is the agent's line just before (for the echo rule; empty skips it)."""
    found = []
    if OFFERS_HELP.search(line):
        found.append("offers help")
    plays = [PLAYS_THERAPIST] if task == "therapy" else [PLAYS_TEACHER] if task == "education" else [PLAYS_THERAPIST, PLAYS_TEACHER]
    if any(p.search(line) for p in plays) or AGENT_TALK.search(line) or _echoes(line, agent_before):
        found.append("plays the task agent")
    if _third_person(line, name) or _narrates(line, name):
        found.append("third person")
    if SAYS_AI.search(line):
        found.append("says it is an AI")
    if SCAFFOLDING.search(line):
        found.append("chat scaffolding")
    if META.search(line):
        found.append("writes about the dialogue")
    return found
