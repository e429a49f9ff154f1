"""Every judge prompt in one place, so they can be read, compared and tuned together.

Conventions: a yes/no question is phrased so that YES means "there is a problem"
(a contradiction); multiple-choice options are lettered A, B, C, ...
"""

PROMPT_TO_LINE = """You are checking whether a role-play actor stayed in character.
Scenario: {scenario}
The actor plays the {role}. Character background:
{persona}

The actor said: "{line}"

Does this line contradict the character background (a different fact about their life, or a personality or mood clearly unlike the character)? Adding new details that fit the background is NOT a contradiction.
Answer YES or NO."""

LINE_TO_LINE = """You are checking whether a speaker contradicts themself.
Earlier lines by {speaker}:
{history}

New line by {speaker}: "{line}"

Does the new line clearly contradict any of the earlier lines (a different fact, or the opposite of what they said)? New information that fits is NOT a contradiction.
Answer YES or NO."""

LINE_TO_LINE_WHICH = """Earlier lines by {speaker}:
{history}

New line by {speaker}: "{line}"

Which earlier line does the new line contradict most clearly?
{options}
Answer with the letter only."""

QA = """Here is everything {speaker} has said in a conversation so far:
{history}

Based ONLY on what {speaker} said, answer this question about {speaker}.
{question}
{options}
Answer with the letter only."""

NOT_MENTIONED = "Not mentioned"

# For the NLI backend, which takes (premise, hypothesis) pairs instead of a prompt.
NLI_QA_HYPOTHESIS = "{question} {answer}"
