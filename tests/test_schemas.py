"""Marshmallow shapes every response: rows dump to the contract's fields and formats."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from florent.auth import Caller
from florent.conversations import messages as conversation_messages
from florent.conversations import service
from florent.conversations.schemas import (
    Timestamp,
    dump_conversation_detail,
    dump_conversation_page,
    format_timestamp,
)

from .factories import CONVERSATION_FIELDS, append_message, create_conversation

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_rows_dump_to_every_field_of_the_contract(app, client, alice):
    full = create_conversation(client, alice, title="Full")
    create_conversation(client, alice, title="Empty")
    append_message(client, alice, full["_id"], "one")
    caller = Caller("org_01ACME", "user_01ALICE")

    with app.app_context():
        page = service.list_conversations(caller, limit=30, after=None)
        conversation, messages = conversation_messages.get_conversation(
            caller, full["_id"], messages_limit=10
        )
    listed = dump_conversation_page({"conversations": page.rows, "next_cursor": None})
    detail = dump_conversation_detail(
        {"conversation": conversation, "messages": messages.rows, "older_cursor": None}
    )

    assert [list(c) for c in listed["conversations"]] == [CONVERSATION_FIELDS] * 2
    empty = listed["conversations"][1]
    assert (empty["messageCount"], empty["lastMessageAt"]) == (0, None)
    assert list(detail) == ["conversation", "messages", "olderMessagesCursor"]
    (message,) = detail["messages"]
    assert list(message) == ["_id", "conversationId", "role", "content", "status", "createdAt"]
    assert TIMESTAMP.fullmatch(message["createdAt"])
    assert detail["conversation"]["lastMessageAt"] == message["createdAt"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 27, 4, 40, 14, 123456, tzinfo=UTC), "2026-11-27T04:40:14.123Z"),
        (datetime(2026, 11, 27, 4, 40, 14, tzinfo=UTC), "2026-11-27T04:40:14.000Z"),
        (
            datetime(2026, 11, 27, 5, 40, 14, 5000, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-27T04:40:14.005Z",
        ),
    ],
)
def test_timestamps_are_utc_with_milliseconds_and_z(value, expected):
    assert format_timestamp(value) == expected
    assert Timestamp().serialize("t", {"t": value}) == expected
