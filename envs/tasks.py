"""Tasks: the scenario, who the simulator plays, and the task agent it talks with.

A task is data, not code: add one by creating a :class:`Task` and registering it in ``TASKS``
(or pass your own ``Task`` object to the rollout engine). Prompt templates are filled with the
persona's ``facts`` plus ``name`` and ``description``; unknown placeholders stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from simtrain.envs.personas import Persona

SHORT_REPLY = "Reply in character, in 2 sentences or less."


@dataclass(frozen=True)
class Task:
    name: str
    scenario: str
    simulator_role: str  # "patient", "student", ...
    agent_role: str  # "therapist", "teacher", ...
    agent_prompt: str  # the task agent's system prompt (template)
    agent_opening: str  # the agent's fixed first line; "" lets the agent generate it
    # What agent.kind 'bank' asks, in order, after the opening: open questions that make the
    # simulator talk about its persona (so the consistency metrics have something to check).
    questions: tuple[str, ...] = ()
    simulator_prompt: str = (
        "You are role-playing a {role} in this scenario: {scenario}\n"
        "You are this person:\n{description}\n"
        "Stay in character as this person for the whole conversation: never say you are an AI, "
        "never switch roles, and never contradict your background or what you said before. "
        "Speak naturally, like a real person, in 2 sentences or less."
    )

    def simulator_system(self, persona: Persona) -> str:
        return fill_for(self.simulator_prompt, persona, role=self.simulator_role, scenario=fill_for(self.scenario, persona))

    def agent_system(self, persona: Persona) -> str:
        return fill_for(self.agent_prompt, persona, role=self.agent_role, scenario=fill_for(self.scenario, persona))


class _Keep(dict):
    def __missing__(self, key: str) -> str:  # leave unknown placeholders untouched
        return "{" + key + "}"


def fill_for(template: str, persona: Persona, **extra: str) -> str:
    values = _Keep(persona.facts)
    values.update(name=persona.display_name, description=persona.description, **extra)
    return template.format_map(values)


TASKS: dict[str, Task] = {
    "chitchat": Task(
        name="chitchat",
        scenario="Two people who just met are having a relaxed, open-ended conversation.",
        simulator_role="person in a casual conversation",
        agent_role="friendly conversation partner",
        agent_prompt=(
            "You are a friendly person chatting with someone you just met. Ask about their life, "
            "share small things about yourself, and keep the conversation going. "
            "Reply in 2 sentences or less."
        ),
        agent_opening="Hi! I don't think we've met. Tell me a bit about yourself?",
        questions=(
            "What do you do for a living?",
            "Where did you grow up, and where do you live now?",
            "Who do you spend most of your time with?",
            "What do you usually do on a weekend?",
            "What's something you're looking forward to?",
            "What's been on your mind lately?",
            "What kind of food do you like?",
            "How did you end up where you are today?",
        ),
    ),
    "education": Task(
        name="education",
        scenario="A student is in a one-on-one tutoring session with a teacher about {topic}.",
        simulator_role="student",
        agent_role="teacher",
        agent_prompt=(
            "You are a patient teacher tutoring a student one-on-one about {topic}. Explain one "
            "idea at a time, check understanding with questions, and correct misconceptions "
            "gently. Reply in 2 sentences or less."
        ),
        agent_opening="Hi! Today we're going to work on {topic}. What do you already know about it?",
        questions=(
            "Which part of {topic} do you find hardest?",
            "How do you usually study for this class?",
            "Can you walk me through how you would start a problem like this?",
            "How did your last test on {topic} go?",
            "What would help you feel more confident about {topic}?",
            "How do you feel about school in general right now?",
            "What do you want to be able to do by the end of the term?",
            "Is there anything outside school that makes studying hard?",
        ),
    ),
    "therapy": Task(
        name="therapy",
        scenario="A patient is in a counselling session with a therapist.",
        simulator_role="patient",
        agent_role="therapist",
        agent_prompt=(
            "You are a warm, gently probing therapist. Listen carefully, reflect what the patient "
            "says, and ask one open question at a time about their feelings and experiences. "
            "Reply in 2 sentences or less."
        ),
        agent_opening="Hello, thank you for coming in today. What brings you here?",
        questions=(
            "How long have you been feeling this way?",
            "Can you tell me a little about your work or your days?",
            "Who do you have around you at home?",
            "How have you been sleeping?",
            "What usually helps when things get hard?",
            "How do the people close to you see what you're going through?",
            "What would you like to be different a few months from now?",
            "Is there something you haven't told anyone about this?",
        ),
    ),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"Unknown task {name!r}; built-in tasks: {', '.join(sorted(TASKS))}") from None


def opening_line(task: Task, persona: Persona) -> str:
    return fill_for(task.agent_opening, persona)
