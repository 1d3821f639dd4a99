"""The prompt of a turn: who Florent is and who it talks with, then the history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

IDENTITY = (
    "You are Florent, the builder-chat assistant of the RakerOne platform. "
    "Help the person you are talking with, clearly and concisely."
)


def build_prompt(
    conversation: Any, history: Sequence[Any], *, now: datetime
) -> list[dict[str, str]]:
    """The chat messages sent to the model: the system message, then the history
    (oldest first, already cut to the budget), starting with the person."""
    system = system_message(conversation.user_display, conversation.timezone, now)
    return [
        {"role": "system", "content": system},
        *({"role": m.role, "content": m.content} for m in starting_with_the_person(history)),
    ]


def starting_with_the_person(history: Sequence[Any]) -> Sequence[Any]:
    """A reply left without the message it answered is dropped: the history starts with
    the person, as some models' chat templates insist (the last message is always kept)."""
    start = 0
    while start < len(history) - 1 and history[start].role != "user":
        start += 1
    return history[start:]


def system_message(user_display: str | None, timezone: str | None, now: datetime) -> str:
    lines = [IDENTITY]
    if user_display and user_display.strip():
        lines.append(f"You are talking with {user_display.strip()}.")
    zone = known_zone(timezone)
    if zone is None:
        lines.append(
            f"Their time zone is not known; it is now {now.astimezone(UTC):%A %d %B %Y, %H:%M} UTC."
        )
    else:
        local = now.astimezone(zone)
        lines.append(
            f"Their local time is {local:%A %d %B %Y, %H:%M} ({timezone}, {utc_offset(local)})."
        )
    return "\n".join(lines)


def known_zone(name: str | None) -> tzinfo | None:
    """The IANA time zone of that name, or None (no name, or one this machine does not know)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # unknown key, a malformed key, a directory
        return None


def utc_offset(local: datetime) -> str:
    offset = local.utcoffset() or timedelta()
    sign, minutes = ("-" if offset < timedelta() else "+"), abs(offset) // timedelta(minutes=1)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def title_from_message(content: str, max_length: int) -> str | None:
    """A title for a conversation: its first message's first non-blank line, trimmed."""
    for line in content.split("\n"):
        title = line.strip()[:max_length].rstrip()
        if title:
            return title
    return None
