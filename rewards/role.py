"""Role check: does a simulator line speak as the task agent or as an assistant?

A small instruct model playing a patient drifts into the role it was tuned for: it offers help
("How can I assist you?"), plays the therapist ("How does that make you feel?"), narrates the
persona in the third person ("Maria feels tired."), says it is an AI, or writes chat
scaffolding ("User: ..."). The reference work's prompt-to-line judge counts such lines as
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
    r"|(is there )?anything (else )?i can (help|do|assist)|i'?m (here|happy|glad) to (help|assist|support|listen)"
    r"|i am (here|happy|glad) to (help|assist|support|listen)|let me know (if|how) (i|you)"
    r"|feel free to (ask|reach out|share)|i('?d| would) be (happy|glad) to help"
    r"|how can i be of (help|assistance|service)|(i'?m|i am) here for you)\b", _I)

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
    r"\b((that'?s a |what a )?(great|good|excellent) question|let me explain|let'?s (start|begin) with"
    r"|do you (understand|have any questions)|does that make sense\?|can you (tell|show) me what you (know|understand)"
    r"|good (job|work)|well done|class,|students,|today we'?(re| are| will) (going to )?(learn|cover|work))\b", _I)

# 3. Says it is an AI.
SAYS_AI = re.compile(
    r"\b(as an ai|i'?m an ai|i am an ai|(an? )?(ai|artificial intelligence) (language )?(model|assistant)"
    r"|language model|i'?m (just )?a (chat ?bot|virtual assistant|computer program|digital assistant)"
    r"|i am (just )?a (chat ?bot|virtual assistant|computer program|digital assistant)|i don'?t have (personal )?(feelings|experiences|a body))\b", _I)

# 4. Chat scaffolding: a role label at the start of the line or of any line in it.
SCAFFOLDING = re.compile(
    r"(^|\n)\s*(\*\*)?(user|assistant|system|human|ai|bot|patient|therapist|student|teacher|tutor|counsell?or|doctor)"
    r"(\*\*)?\s*:|<\|?(im_start|im_end|endoftext|user|assistant)\|?>", _I)


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


def role_problems(line: str, name: str = "", task: str = "") -> list[str]:
    """What makes ``line`` leave the simulator's role, as short reasons ([] when nothing).

    ``name`` is the persona's name (for the third-person rule); ``task`` picks the agent whose
    moves count (therapist moves in therapy, teacher moves in education; both elsewhere)."""
    found = []
    if OFFERS_HELP.search(line):
        found.append("offers help")
    plays = [PLAYS_THERAPIST] if task == "therapy" else [PLAYS_TEACHER] if task == "education" else [PLAYS_THERAPIST, PLAYS_TEACHER]
    if any(p.search(line) for p in plays):
        found.append("plays the task agent")
    if _third_person(line, name):
        found.append("third person")
    if SAYS_AI.search(line):
        found.append("says it is an AI")
    if SCAFFOLDING.search(line):
        found.append("chat scaffolding")
    return found
