"""The planned dumpers (florent/dumping.py) say exactly what marshmallow's Schema.dump
says, on every output schema of the API; and they refuse what they cannot plan."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from marshmallow import Schema, fields, post_dump, pre_dump
from sqlalchemy import select

import florent.assistant.schemas
import florent.conversations.schemas
from florent.auth import Caller
from florent.conversations import messages, service
from florent.conversations.schemas import Timestamp
from florent.database import one_statement
from florent.dumping import OutputSchema, planned

from .factories import append_message, create_conversation


def output_schemas() -> list[type[Schema]]:
    found, todo = [], [OutputSchema]
    while todo:
        for subclass in todo.pop().__subclasses__():
            found.append(subclass)
            todo.append(subclass)
    modules = {florent.conversations.schemas.__name__, florent.assistant.schemas.__name__}
    return [schema for schema in found if schema.__module__ in modules]


def test_every_output_schema_is_found():
    names = {schema.Meta.title for schema in output_schemas()}
    assert {"FlorentConversation", "FlorentConversationList", "FlorentTurn"} <= names
    assert len(names) == len(output_schemas()) >= 12


TIMES = [
    datetime(2026, 11, 27, 4, 40, 14, 123456, tzinfo=UTC),
    datetime(2026, 11, 27, 5, 40, 14, tzinfo=timezone(timedelta(hours=1))),
]


def samples(field: fields.Field, depth: int = 0) -> list[Any]:
    """Values a field may be given, None included where the field allows it."""
    if isinstance(field, fields.Nested):
        values = objects(field.schema, depth + 1)[:3]
    elif isinstance(field, fields.List):
        inner = samples(field.inner, depth)
        values = [[], inner[:2], inner[1:4]]
    elif isinstance(field, Timestamp):
        values = TIMES
    elif isinstance(field, fields.Integer):
        values = [0, 7, 10_000]
    elif isinstance(field, fields.Boolean):
        values = [True, False]
    elif isinstance(field, fields.String):
        values = ["", "plain", "é 🙂 \n\t"]
    else:
        values = [{"path": ["title"], "code": "too_long"}, "anything", 3]
    return [*values, None] if field.allow_none else values


def objects(schema: Schema, depth: int = 0) -> list[Any]:
    """Objects to dump with `schema`: as dicts, as attribute objects, and missing a key."""
    if depth > 3:
        return []
    columns = {
        field.attribute or name: samples(field, depth) for name, field in schema.fields.items()
    }
    rows = [
        {attribute: values[n % len(values)] for attribute, values in columns.items()}
        for n in range(3)
    ]
    partial = {key: value for key, value in itertools.islice(rows[0].items(), 1, None)}
    return [*rows, *(SimpleNamespace(**row) for row in rows), partial]


@pytest.mark.parametrize("schema_class", output_schemas(), ids=lambda s: s.Meta.title)
def test_planned_dumps_equal_marshmallow_dumps(schema_class):
    schema = schema_class()
    dump = planned(schema)
    for obj in objects(schema):
        assert dump(obj) == schema.dump(obj), obj


def test_planned_dumps_equal_marshmallow_dumps_on_real_rows(app, client, alice):
    conversation = create_conversation(client, alice, title="Real")
    append_message(client, alice, conversation["_id"], "one")
    caller = Caller("org_01ACME", "user_01ALICE")
    with app.app_context():
        page = service.list_conversations(caller, limit=30, after=None)
        row, newest = messages.get_conversation(caller, conversation["_id"], messages_limit=10)
        with one_statement() as connection:
            partial_row = connection.execute(select(*service.CONVERSATION[:4])).first()
    cases = [
        (florent.conversations.schemas.ConversationPageSchema(), {"conversations": page.rows}),
        (
            florent.conversations.schemas.ConversationDetailSchema(),
            {"conversation": row, "messages": newest.rows, "older_cursor": "abc"},
        ),
        (
            florent.assistant.schemas.TurnSchema(),
            {"messages": newest.rows * 2, "conversation": row},
        ),
        (
            florent.assistant.schemas.ReplyStoppedSchema(),
            {"message": None, "conversation": row},
        ),
        # A row without some of the schema's columns: marshmallow leaves their keys out.
        (florent.conversations.schemas.ConversationSchema(), partial_row),
    ]
    for schema, data in cases:
        assert planned(schema)(data) == schema.dump(data)


def test_what_cannot_be_planned_is_refused():
    class WithHook(OutputSchema):
        name = fields.String()

        @post_dump
        def shout(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return {key: value.upper() for key, value in data.items()}

    class WithPreHook(OutputSchema):
        name = fields.String()

        @pre_dump
        def prepare(self, data: Any, **kwargs: Any) -> Any:
            return data

    class WithMethod(OutputSchema):
        name = fields.Method("get_name")

        def get_name(self, obj: Any) -> str:
            return "x"

    class WithDefault(OutputSchema):
        name = fields.String(dump_default="nobody")

    class WithDateTime(OutputSchema):
        when = fields.DateTime()

    class Plain(Schema):  # reads obj[key] first, as marshmallow does by default
        name = fields.String()

    class WithNumberAsString(OutputSchema):
        count = fields.Integer(as_string=True)

    for schema in (WithHook, WithPreHook, WithMethod, WithDefault, WithDateTime, Plain):
        with pytest.raises(TypeError):
            planned(schema())
    with pytest.raises(TypeError):
        planned(WithNumberAsString())
    with pytest.raises(TypeError):
        planned(florent.conversations.schemas.MessageSchema(many=True))
