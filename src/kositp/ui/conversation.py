"""One chat's history and the message list each request sends.

The page keeps its own history instead of re-reading what the browser shows, so what the model
sees is exactly the text the user typed and the text the model produced. A turn enters the history
only when it produced a reply (complete, or cut short by the stop button): a failed request leaves
no dangling user message behind, which would break templates that need user/assistant to alternate.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Conversation:
    """User/assistant messages of one chat, oldest first."""

    max_history_messages: int = 40
    messages: list[dict[str, str]] = field(default_factory=list)

    def request_messages(self, user_text: str, system_prompt: str = "") -> list[dict[str, str]]:
        """What to send for a new user message: system prompt, the most recent history, the new message.

        History is cut at a user message so the request never starts with an assistant turn.
        """
        history = self.messages[-self.max_history_messages :] if self.max_history_messages else []
        while history and history[0]["role"] != "user":
            history = history[1:]
        out: list[dict[str, str]] = []
        if system_prompt.strip():
            out.append({"role": "system", "content": system_prompt.strip()})
        out.extend(history)
        out.append({"role": "user", "content": user_text})
        return out

    def add_turn(self, user_text: str, reply: str) -> None:
        """Record a finished (or stopped) exchange."""
        self.messages.append({"role": "user", "content": user_text})
        self.messages.append({"role": "assistant", "content": reply})

    def clear(self) -> None:
        self.messages.clear()

    def __len__(self) -> int:
        return len(self.messages) // 2
