"""Every judge prompt in one place, so they can be read, compared and tuned together.

Conventions: yes/no questions ask whether a line is *consistent* (small models answer that
better than "does it contradict?": measured on the check set's tuning part), and the query's
first option is the problem answer, so ``Query.options = ("NO", "YES")`` and
``judge.p_problem`` is P(NO). Multiple-choice options are lettered A, B, C, ...
"""

PROBLEM_FIRST = ("NO", "YES")  # options for "is it consistent?" questions: NO is the problem

PROMPT_TO_LINE = """You are checking a role-play. Scenario: {scenario}
The actor plays the {role}:
{persona}

The actor said: "{line}"

Could this person say this line without contradicting their description? Answer YES or NO."""

LINE_TO_LINE = """Earlier lines by {speaker}:
{history}

New line by {speaker}: "{line}"

Is the new line consistent with what {speaker} said earlier? Answer YES or NO."""

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

FACT_CHECK = """Here is everything {speaker} has said in a conversation so far:
{history}

Fact about {speaker}: {question} {answer}
Is everything {speaker} said consistent with this fact? Answer YES or NO."""

NOT_MENTIONED = "Not mentioned"

# For the NLI backend, which takes (premise, hypothesis) pairs instead of a prompt.
NLI_QA_HYPOTHESIS = "{question} {answer}"
