"""The one chat builder: how a prompt and its answers become messages for a chat template. Zephyr's template
(alignment-handbook, the recipes' SFT base) opens with an empty system turn; training, the SFT of the tiny base,
the judges, generation and the exported pairs all build their messages here, so they all see the same text."""

from __future__ import annotations

SYSTEM = ""  # the recipes' system turn: present, and empty


def message(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def opening(turns: list[dict]) -> list[dict]:
    """The system turn, then the conversation's turns."""
    return [message("system", SYSTEM), *turns]


def prompt_messages(prompt: str) -> list[dict]:
    """A single-turn prompt, as training and the judges see it."""
    return opening([message("user", prompt)])


def answer(text: str) -> list[dict]:
    """An answer (chosen, rejected, completion), as TRL's conversational format takes it."""
    return [message("assistant", text)]


def conversation(prompt: str, reply: str) -> list[dict]:
    """A prompt and one answer: what a reward model or a judge scores."""
    return prompt_messages(prompt) + answer(reply)
