"""The fast dumpers say exactly what the marshmallow schemas say."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from marshmallow import Schema, fields

from florent import conversations
from florent.auth import Caller
from florent.schemas import (
    ConversationDetailSchema,
    ConversationPageSchema,
    ConversationResponseSchema,
    MessageCreatedSchema,
    Timestamp,
    compile_dump,
    format_timestamp,
)

from .factories import append_message, create_conversation


def test_compiled_dumps_equal_marshmallow_dumps_on_real_rows(app, client, alice):
    empty = create_conversation(client, alice, title="Empty")
    full = create_conversation(client, alice, title="Full")
    append_message(client, alice, full["_id"], "one")
    append_message(client, alice, full["_id"], "two")
    caller = Caller("org_01ACME", "user_01ALICE")

    with app.app_context():
        page = conversations.list_conversations(caller, limit=30, after=None)
        conversation, messages = conversations.get_conversation(caller, full["_id"])
        lonely, none = conversations.get_conversation(caller, empty["_id"])
        cases = [
            (ConversationPageSchema(), {"conversations": page.conversations, "next_cursor": "abc"}),
            (ConversationPageSchema(), {"conversations": [], "next_cursor": None}),
            (ConversationDetailSchema(), {"conversation": conversation, "messages": messages}),
            (ConversationDetailSchema(), {"conversation": lonely, "messages": none}),
            (ConversationResponseSchema(), {"conversation": conversation}),
            (MessageCreatedSchema(), {"message": messages[0], "conversation": conversation}),
        ]
        for schema, data in cases:
            assert compile_dump(schema)(data) == schema.dump(data)


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


def test_timestamps_match_isoformat_cut_to_milliseconds():
    """format_timestamp takes a faster road than isoformat(); it must end at the same place."""
    spread = random.Random(20261127)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for n in range(20_000):
        value = epoch + timedelta(microseconds=spread.randrange(10**17))
        value = value.replace(
            microsecond=[0, 1000 * spread.randrange(1000), value.microsecond][n % 3]
        )
        expected = value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert format_timestamp(value) == expected


def test_a_field_type_the_planner_does_not_know_is_refused():
    class Odd(Schema):
        when = fields.DateTime()

    with pytest.raises(TypeError, match="DateTime"):
        compile_dump(Odd())
